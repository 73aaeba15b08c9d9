"""Stage 05 foundations: LLaMA model shapes, configs built from a tokenizer, exact parameter
counts, and FLOP/throughput arithmetic for MFU estimates.

Why this module exists: the course trains a 4.4M-parameter LLaMA on a laptop CPU and the
practitioner trains KnowLM's 13B on a cluster with *the same code*. The only difference is the
named shape (``cpu-tiny`` vs ``llama-13b``) and the tokenizer. Everything that can be known
without allocating a model (parameter count, FLOPs per token, tokens/s → MFU) is computed
analytically here, so a notebook can reason about 13B on a machine that could never hold it.

Parameter count of a LLaMA decoder (no biases, untied head unless ``tie_word_embeddings``)::

    embeddings   V·h
    attention    L · (h·(n_heads·d) + 2·h·(n_kv·d) + (n_heads·d)·h)       d = head_dim
    mlp          L · 3·h·i                                               (gate, up, down)
    norms        L · 2·h + h                                             (2 RMSNorms/layer + final)
    lm_head      V·h   (0 when tied to the embeddings)

With V=32000 this gives 6,738,415,616 for LLaMA-7B and 13,015,864,320 for LLaMA-13B (the
published "6.7B" and "13.0B").
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import spm
from .config import field

# --------------------------------------------------------------------------------------------
# Named shapes
# --------------------------------------------------------------------------------------------


def llama_intermediate_size(hidden_size: int, multiple_of: int = 256, ffn_dim_multiplier: float = 1.0) -> int:
    """LLaMA's SwiGLU width: 2/3 of 4·h (so the 3 SwiGLU matrices cost what 2 classic 4·h ones
    would), rounded up to ``multiple_of``. 4096 → 11008 and 5120 → 13824 with 256; the tiny
    shape uses 16 (256 → 688)."""
    width = int(ffn_dim_multiplier * int(2 * 4 * hidden_size / 3))
    return multiple_of * math.ceil(width / multiple_of)


@dataclass(frozen=True)
class ModelShape:
    """A LLaMA architecture without its vocabulary (that comes from the tokenizer)."""

    name: str = field(help="preset name, e.g. 'cpu-tiny' or 'llama-13b'")
    hidden_size: int = field(help="model width h (embedding and residual stream size)")
    num_hidden_layers: int = field(help="number of decoder blocks L")
    num_attention_heads: int = field(help="query heads; head_dim = hidden_size / heads")
    intermediate_size: int = field(help="SwiGLU MLP width i (see llama_intermediate_size)")
    num_key_value_heads: int | None = field(None, help="K/V heads for grouped-query attention; None = same as query heads (LLaMA-1)")
    max_position_embeddings: int = field(2048, help="longest sequence RoPE is configured for (LLaMA-1: 2048)")
    rms_norm_eps: float = field(1e-6, help="RMSNorm epsilon (LLaMA-1: 1e-6)")
    rope_theta: float = field(10000.0, help="RoPE base frequency (LLaMA-1: 10000)")
    tie_word_embeddings: bool = field(False, help="share the input embedding with the LM head (LLaMA: no)")
    description: str = field("", help="what the shape is for")

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"shape {self.name!r}: hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        kv = self.num_key_value_heads or self.num_attention_heads
        if self.num_attention_heads % kv:
            raise ValueError(f"shape {self.name!r}: num_attention_heads {self.num_attention_heads} is not a "
                             f"multiple of num_key_value_heads {kv}")


PRESETS: dict[str, ModelShape] = {
    s.name: s
    for s in (
        ModelShape("cpu-tiny", 256, 4, 4, 688, max_position_embeddings=1024,
                   description="≈4.4M parameters with a 2.5k vocabulary; trains in minutes on 2 CPU cores"),
        ModelShape("cpu-small", 512, 8, 8, 1376, max_position_embeddings=1024,
                   description="≈28M parameters with a 2.5k vocabulary; a longer CPU run (tens of minutes)"),
        ModelShape("llama-7b", 4096, 32, 32, 11008,
                   description="LLaMA-1 7B (6.74B parameters with the 32000-piece vocabulary)"),
        ModelShape("llama-13b", 5120, 40, 40, 13824,
                   description="LLaMA-1 13B, the base of KnowLM/ZhiXi (13.0B with 32000 pieces)"),
        ModelShape("micro", 64, 1, 4, 128,
                   description="a 1-layer toy that builds in milliseconds: demonstrations and tests "
                               "(embedding resizing, generation); see tiny_llama"),
    )
}


def get_shape(name: str | ModelShape) -> ModelShape:
    if isinstance(name, ModelShape):
        return name
    if name not in PRESETS:
        raise ValueError(f"unknown model shape {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]


# --------------------------------------------------------------------------------------------
# Vocabulary / special ids from a tokenizer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerInfo:
    """What the model config needs to know about a tokenizer."""

    vocab_size: int
    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None
    source: str


def _info_from_sentencepiece(sp, source: str) -> TokenizerInfo:
    def opt(i: int) -> int | None:
        return None if i < 0 else int(i)

    return TokenizerInfo(int(sp.get_piece_size()), opt(sp.bos_id()), opt(sp.eos_id()), opt(sp.pad_id()), source)


def _info_from_hf(tok, source: str) -> TokenizerInfo:
    # len() counts added tokens too (an extended vocabulary may live partly in added_tokens)
    return TokenizerInfo(len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, source)


def tokenizer_info(tokenizer: Any) -> TokenizerInfo:
    """Vocabulary size and BOS/EOS/PAD ids from any tokenizer the course produces.

    Accepts an ``int`` (a bare vocabulary size; LLaMA's ids BOS=1, EOS=2, no PAD), a
    SentencePiece ``.model`` file, a folder holding either a transformers tokenizer
    (tokenizer.json / tokenizer_config.json) or just ``tokenizer.model``, a
    ``sentencepiece.SentencePieceProcessor`` or a transformers tokenizer object.
    """
    if isinstance(tokenizer, bool):
        raise TypeError("tokenizer must be a vocabulary size, a path or a tokenizer object, not a bool")
    if isinstance(tokenizer, int):
        if tokenizer <= 2:
            raise ValueError(f"vocabulary size must be > 2 (BOS=1, EOS=2 are reserved), got {tokenizer}")
        return TokenizerInfo(tokenizer, 1, 2, None, f"vocab_size={tokenizer}")
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer)
        if path.is_dir():
            if (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
                return _info_from_hf(tok, str(path))
            if not (path / spm.MODEL_FILE).is_file():
                raise FileNotFoundError(f"{path}: no tokenizer.json, tokenizer_config.json or tokenizer.model in this folder")
        elif not path.is_file():
            raise FileNotFoundError(f"tokenizer not found: {path}")
        return _info_from_sentencepiece(spm.load_processor(path), str(spm.model_file(path)))
    if hasattr(tokenizer, "get_piece_size") and hasattr(tokenizer, "bos_id"):
        return _info_from_sentencepiece(tokenizer, type(tokenizer).__name__)
    if hasattr(tokenizer, "bos_token_id") and hasattr(tokenizer, "__len__"):
        return _info_from_hf(tokenizer, getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    raise TypeError(f"cannot read a vocabulary from {type(tokenizer).__name__}; pass a size, a path, a "
                    "SentencePieceProcessor or a transformers tokenizer")


def padded_vocab_size(vocab_size: int, multiple_of: int | None) -> int:
    """Round ``vocab_size`` up to a multiple (64 makes the embedding/LM-head matmuls tensor-core
    friendly on GPUs; the extra rows are never produced by the tokenizer and only learn to be
    unlikely). ``None`` or 1 leaves it unchanged."""
    if not multiple_of or multiple_of == 1:
        return vocab_size
    if multiple_of < 1:
        raise ValueError(f"pad_vocab_to_multiple_of must be positive, got {multiple_of}")
    return multiple_of * math.ceil(vocab_size / multiple_of)


_LLAMA_KEYS: frozenset[str] | None = None


def _llama_config_keys() -> frozenset[str]:
    global _LLAMA_KEYS
    if _LLAMA_KEYS is None:
        from transformers import LlamaConfig

        _LLAMA_KEYS = frozenset(p for p in inspect.signature(LlamaConfig.__init__).parameters if p != "self")
    return _LLAMA_KEYS


def model_config(shape: str | ModelShape, tokenizer: Any, *, pad_vocab_to_multiple_of: int | None = None,
                 **overrides: Any):
    """A ``transformers.LlamaConfig`` for a named shape whose vocabulary follows ``tokenizer``.

    ``tokenizer`` is anything ``tokenizer_info`` accepts; an extended vocabulary (e.g. the
    49,953 pieces of Chinese-LLaMA) simply gives a larger ``vocab_size``. Set
    ``pad_vocab_to_multiple_of=64`` to round it up for GPU efficiency (49953 → 49984).
    ``overrides`` are LlamaConfig arguments (``max_position_embeddings=512``,
    ``rope_theta=...``, ``pad_token_id=0`` …); unknown names are an error, never ignored.
    """
    from transformers import LlamaConfig

    s = get_shape(shape)
    info = tokenizer_info(tokenizer)
    allowed = _llama_config_keys() | {"rope_theta"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"unknown LlamaConfig override(s) {unknown}")
    rope_theta = float(overrides.pop("rope_theta", s.rope_theta))
    kwargs: dict[str, Any] = dict(
        vocab_size=padded_vocab_size(info.vocab_size, pad_vocab_to_multiple_of),
        hidden_size=s.hidden_size, num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads, intermediate_size=s.intermediate_size,
        num_key_value_heads=s.num_key_value_heads or s.num_attention_heads,
        max_position_embeddings=s.max_position_embeddings, rms_norm_eps=s.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=s.tie_word_embeddings, hidden_act="silu",
        bos_token_id=info.bos_token_id, eos_token_id=info.eos_token_id, pad_token_id=info.pad_token_id,
    )
    kwargs.update(overrides)
    if kwargs["vocab_size"] < info.vocab_size:
        raise ValueError(f"vocab_size {kwargs['vocab_size']} is smaller than the tokenizer's {info.vocab_size} "
                         f"({info.source}): ids ≥ {kwargs['vocab_size']} would index past the embedding")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        v = kwargs[key]
        if v is not None and not 0 <= v < kwargs["vocab_size"]:
            raise ValueError(f"{key}={v} is outside the vocabulary [0, {kwargs['vocab_size']})")
    return LlamaConfig(**kwargs)


# --------------------------------------------------------------------------------------------
# Models and parameter counts
# --------------------------------------------------------------------------------------------


def build_model(config, seed: int = 0, dtype: Any = None):
    """A freshly initialised ``LlamaForCausalLM`` (real transformers), reproducible from
    ``seed``. ``dtype`` is a torch dtype or its name ("float32", "bfloat16"); default fp32
    (what CPUs train in)."""
    import torch
    from transformers import LlamaForCausalLM

    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown torch dtype {dtype!r}")
        dtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if dtype is not None:
        model = model.to(dtype)
    return model


def tiny_llama(tokenizer: Any, hidden_size: int | None = None, seed: int = 0):
    """A freshly initialised ``micro``-preset LLaMA (1 layer, 4 heads, MLP width 2·h) whose
    vocabulary follows ``tokenizer`` (anything :func:`tokenizer_info` accepts, e.g. a size).
    ``hidden_size`` rescales its width (default 64); same arguments → same weights."""
    shape = PRESETS["micro"]
    if hidden_size is not None:
        shape = dataclasses.replace(shape, hidden_size=hidden_size, intermediate_size=2 * hidden_size)
    return build_model(model_config(shape, tokenizer), seed=seed)


def meta_model(config):
    """The model built on ``torch.device("meta")``: every tensor has a shape but no storage,
    so even 13B costs no memory. Used to cross-check ``count_parameters``."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        return LlamaForCausalLM(config)


@dataclass(frozen=True)
class ParameterCount:
    """Parameters of a LLaMA by component (see the module docstring for the formulas)."""

    embeddings: int
    attention: int
    mlp: int
    norms: int
    lm_head: int

    @property
    def total(self) -> int:
        return self.embeddings + self.attention + self.mlp + self.norms + self.lm_head

    @property
    def non_embedding(self) -> int:
        """Everything but the input embedding and the LM head (the "N" of scaling laws)."""
        return self.attention + self.mlp + self.norms

    def as_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "total": self.total, "non_embedding": self.non_embedding}


def _dims(config) -> tuple[int, int, int, int, int, int, int]:
    h, L, V, i = config.hidden_size, config.num_hidden_layers, config.vocab_size, config.intermediate_size
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    d = getattr(config, "head_dim", None) or h // heads
    return h, L, V, i, heads, kv, d


def count_parameters(config) -> ParameterCount:
    """Exact parameter count of ``LlamaForCausalLM(config)`` without building it."""
    h, L, V, i, heads, kv, d = _dims(config)
    attn = h * heads * d + 2 * h * kv * d + heads * d * h
    if getattr(config, "attention_bias", False):
        attn += heads * d + 2 * kv * d + h
    mlp = 3 * h * i + ((2 * i + h) if getattr(config, "mlp_bias", False) else 0)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return ParameterCount(embeddings=V * h, attention=L * attn, mlp=L * mlp, norms=L * 2 * h + h,
                          lm_head=0 if tied else V * h)


def count_model_parameters(model) -> int:
    """Parameters actually held by a model (``parameters()`` yields a tied tensor once)."""
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# FLOPs, throughput, MFU
# --------------------------------------------------------------------------------------------


def flops_per_token(config, seq_length: int, recompute: bool = False) -> float:
    """Training FLOPs per token (forward + backward), the PaLM-paper accounting::

        6·N + 12·L·(n_heads·d)·s

    ``N`` = parameters that take part in a matmul (attention + MLP + LM head; the input
    embedding is a lookup and norms are element-wise). Each multiply-add is 2 FLOPs; the
    backward pass costs twice the forward, hence 6. The second term is the attention
    scores QKᵀ and the weighted sum over V (2·2·s·h per layer forward, ×3 for backward),
    counted without halving for the causal mask. ``recompute=True`` adds one more forward
    pass (activation/gradient checkpointing): 8·N + 16·L·h·s — hardware FLOPs, for HFU.
    """
    if seq_length <= 0:
        raise ValueError(f"seq_length must be positive, got {seq_length}")
    h, L, V, i, heads, kv, d = _dims(config)
    pc = count_parameters(config)
    n_matmul = pc.attention + pc.mlp + V * h
    passes = 4 if recompute else 3  # forward = 1 unit, backward = 2 units, recompute = +1
    return 2 * passes * n_matmul + 4 * passes * L * heads * d * seq_length


def mfu(tokens_per_s: float, config, seq_length: int, peak_flops: float, num_devices: int = 1,
        recompute: bool = False) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the peak of ``num_devices``
    devices of ``peak_flops`` each (a fraction, not a percent). With ``recompute=True`` this is
    the hardware FLOPs utilisation (HFU), which also credits checkpointing's extra forward."""
    if peak_flops <= 0 or num_devices <= 0:
        raise ValueError("peak_flops and num_devices must be positive")
    return tokens_per_s * flops_per_token(config, seq_length, recompute) / (peak_flops * num_devices)


V100_FP16_TENSOR_PEAK = 125e12  # FLOP/s, V100 SXM2 tensor cores (the PCIe card is 112 TFLOPS)


@dataclass(frozen=True)
class PublishedRun:
    """A training run as its authors reported it (the inputs of a throughput estimate)."""

    name: str = field(help="who/what")
    shape: str = field(help="model shape preset")
    vocab_size: int = field(help="vocabulary size of the trained model")
    nodes: int = field(help="machines")
    devices_per_node: int = field(help="accelerators per machine")
    micro_batch: int = field(help="sequences per device per forward pass")
    grad_accum: int = field(help="micro batches accumulated per optimizer step")
    seq_length: int = field(help="tokens per sequence")
    step_seconds: float = field(help="reported wall time of one optimizer step")
    peak_flops_per_device: float = field(help="dense peak FLOP/s of one device in the training precision")
    gradient_checkpointing: bool = field(True, help="activations recomputed in the backward pass")

    @property
    def devices(self) -> int:
        return self.nodes * self.devices_per_node

    @property
    def global_batch(self) -> int:
        return self.devices * self.micro_batch * self.grad_accum


# KnowLM/ZhiXi full pretraining of LLaMA-13B: 3 nodes × 8 V100-32GB, micro batch 20, gradient
# accumulation 3 (global batch 1440), seq 1024, ≈260 s per step, fp16, ZeRO-3 + CPU offload.
KNOWLM_13B_RUN = PublishedRun("KnowLM-13B pretraining", "llama-13b", 32000, nodes=3, devices_per_node=8,
                              micro_batch=20, grad_accum=3, seq_length=1024, step_seconds=260.0,
                              peak_flops_per_device=V100_FP16_TENSOR_PEAK, gradient_checkpointing=True)


@dataclass(frozen=True)
class ThroughputEstimate:
    run: PublishedRun
    tokens_per_step: int
    tokens_per_s: float
    tokens_per_s_per_device: float
    flops_per_token: float
    mfu: float
    hfu: float

    def days_for(self, tokens: float) -> float:
        """Wall-clock days to train on ``tokens`` tokens at this throughput."""
        return tokens / self.tokens_per_s / 86400


def estimate_throughput(run: PublishedRun = KNOWLM_13B_RUN) -> ThroughputEstimate:
    """Tokens/s, MFU and HFU implied by a published run (KnowLM-13B by default:
    1440 × 1024 tokens per 260 s ≈ 5,671 tokens/s over 24 V100s)."""
    config = model_config(run.shape, run.vocab_size)
    tokens_per_step = run.global_batch * run.seq_length
    tps = tokens_per_step / run.step_seconds
    args = (config, run.seq_length, run.peak_flops_per_device, run.devices)
    return ThroughputEstimate(
        run=run, tokens_per_step=tokens_per_step, tokens_per_s=tps, tokens_per_s_per_device=tps / run.devices,
        flops_per_token=flops_per_token(config, run.seq_length), mfu=mfu(tps, *args),
        hfu=mfu(tps, *args, recompute=run.gradient_checkpointing),
    )


@dataclass(frozen=True)
class OffloadMemory:
    """Memory for the model states of ZeRO-3 with optimizer **and** parameter offload."""

    host_bytes_per_node: float     # pinned CPU RAM on each node
    gpu_bytes_per_device: float    # the largest layer, gathered for its forward/backward
    bytes_per_parameter: int       # held in host RAM, summed over the nodes (before the buffer factor)


def zero3_offload_memory(config, nodes: int, buffer_factor: float = 1.5) -> OffloadMemory:
    """Host RAM per node and GPU memory per device that the model states need under ZeRO-3 with
    ``offload_optimizer`` and ``offload_param`` (KnowLM's 13B config), computed the way
    DeepSpeed's ``estimate_zero3_model_states_mem_needs`` does (with ``zero_init``, its default):
    the nodes' host RAM together holds 18 bytes per parameter — fp16 parameters (2), fp32
    gradients handed to the CPU optimizer (4), fp32 master weights (4), Adam's two moments (4 + 4)
    — times a buffer factor (1.5), split over the nodes; each GPU holds only the largest layer
    (here the embedding or LM-head matrix) in fp32 while it is computed. Activations, the
    communication buckets and the CUDA context come on top of the GPU figure."""
    pc = count_parameters(config)
    largest = max(pc.embeddings, pc.lm_head)
    return OffloadMemory(host_bytes_per_node=pc.total * 18 / nodes * buffer_factor,
                         gpu_bytes_per_device=4 * largest, bytes_per_parameter=18)

