"""Stage 05 — pretraining a LLaMA on the typed token index with the Hugging Face ``Trainer``
(optionally under DeepSpeed ZeRO), the one entry point for the notebook, ``make course``,
``knowlm pretrain`` and a cluster job (``scripts/pretrain.py``).

What it adds to a plain ``Trainer`` run, and why:

* **Typed batches.** KnowLM mixed Chinese, English and code *per batch*. Each micro batch is
  drawn from the index's type ranges in fixed proportions by
  :class:`~knowlm_utils.indexed.ProportionalBatchSampler`, whose batch ``k`` is a pure function
  of ``k``. With ``W`` processes, rank ``r`` takes the sampler's batch ``k·W + r`` at micro step
  ``k``: every rank gets a different, deterministic share and every micro batch keeps the
  proportions. (The Trainer's own sampler would shuffle without types.)
* **Exact resume.** The Trainer resumes data by replaying batches (``skip_first_batches``),
  which for a mapped sampler is both slow and, with prefetching, easy to get off by one. Here
  the sampler simply *starts* at ``global_step × grad_accum`` (``ignore_data_skip=True``), so a
  run stopped at step k and resumed gives the same batches, losses and weights as one that never
  stopped (tested to ~1e-6 on CPU).
* **Per-type held-out loss** on the valid index (each type's range separately, token-weighted),
  next to a **unigram baseline**: the cross-entropy of add-one-smoothed train-token frequencies
  on the same valid tokens — "has the model learned anything beyond word frequencies?".
* **Two-stage training** as in Chinese-LLaMA-Alpaca: ``embeddings`` (only ``embed_tokens`` and
  ``lm_head`` train: new vocabulary rows learn to fit a frozen model) and ``lora+embeddings``
  (PEFT LoRA on attention/MLP plus full ``embed_tokens``/``lm_head`` via ``modules_to_save``).
* **DeepSpeed** from a JSON path, an inline dict or a short spec ``{stage: 3}``; on CPU the
  config is adapted (fp32, no pinned memory, see :func:`knowlm_utils.launch.adapt_for_cpu`) and
  ZeRO-3 always gathers 16-bit weights on save, so the final model is a normal HF folder. Under
  ZeRO-3 the model is created already partitioned (``deepspeed.zero.Init``), so a fresh ZeRO-3
  model differs from the same seed's non-ZeRO-3 one (same distribution, other draws).
* Artifacts: ``OUTPUT/checkpoint-N`` (Trainer checkpoints), ``OUTPUT/final`` (safetensors +
  tokenizer files; ``AutoModelForCausalLM.from_pretrained`` loads it), ``OUTPUT/log_history.json``
  (rewritten atomically at every log, for live plots) and ``OUTPUT/metrics.json`` at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import ConfigError, add_config_arguments, cli_overrides, field, load_config
from .fileio import read_json, write_json_atomic

STAGES = ("full", "embeddings", "lora+embeddings")
EMBEDDING_MODULES = ("embed_tokens", "lm_head")
DEEPSPEED_SHORT_KEYS = frozenset({"stage", "offload_optimizer", "offload_params", "optimizer", "gather_16bit_on_save"})
FINAL_DIR = "final"
LOG_HISTORY = "log_history.json"
METRICS = "metrics.json"
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


# ============================================================================ config ======
@dataclass
class ModelSection:
    """Which model to train: a named shape initialised from scratch, or an existing checkpoint."""

    preset: str = field("cpu-tiny", help="shape preset of knowlm_utils.modeling.PRESETS (cpu-tiny, llama-13b …)")
    overrides: dict[str, Any] = field(default_factory=dict, help="LlamaConfig overrides, e.g. {num_hidden_layers: 2}")
    pad_vocab_to_multiple_of: int | None = field(None, help="round the vocabulary up (64 for GPU tensor cores)")
    init_from: str | None = field(None, help="a HF model folder to start from instead of a random init (stage 2 "
                                             "continues from stage 1); required for stage embeddings / lora+embeddings")
    gradient_checkpointing: bool = field(False, help="recompute activations in the backward pass (KnowLM-13B: on)")


@dataclass
class LoraSection:
    """LoRA settings of stage ``lora+embeddings`` (Chinese-LLaMA-Alpaca: r 8, alpha 32, dropout 0.05)."""

    r: int = field(8, help="rank of the low-rank update")
    alpha: int = field(32, help="scaling numerator (update scaled by alpha / r)")
    dropout: float = field(0.05, help="dropout on the LoRA input")
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                        "down_proj", "up_proj"],
                               help="module names that get LoRA adapters")


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs; relative paths are taken from ``workdir`` when it is
    set, else from the folder of the YAML file (``base_dir``)."""

    train_index: str = field(help="prefix of the training index (PREFIX.bin/.idx, e.g. index/train)")
    tokenizer: str = field(help="tokenizer folder (tokenizer.model + HF files) the index was encoded with")
    output_dir: str = field(help="checkpoints, final model, log_history.json and metrics.json go here")
    valid_index: str | None = field(None, help="prefix of the held-out index (per-type eval); None: no eval")
    workdir: str | None = field(None, help="base of the relative paths above (the course workdir)")
    model: ModelSection = field(default_factory=ModelSection, help="model shape or checkpoint")
    seq_length: int = field(1024, help="longest sample in tokens; longer index samples are truncated (counted)")
    proportions: dict[str, float] = field(default_factory=dict, help="type -> share of every micro batch; empty: "
                                          "shares proportional to each type's sample count")
    micro_batch: int = field(8, help="sequences per process per forward pass (KnowLM-13B: 20)")
    grad_accum: int = field(1, help="micro batches accumulated per optimizer step (KnowLM-13B: 3)")
    max_steps: int = field(100, help="optimizer steps of the whole run (the end step, also when resuming)")
    lr: float = field(3e-4, help="peak learning rate (KnowLM-13B: 1.5e-5)")
    min_lr_ratio: float = field(0.0, help="cosine decays to lr × this (0: to zero, the Trainer's 'cosine')")
    lr_scheduler: str = field("cosine", help="Trainer scheduler: cosine, linear, constant_with_warmup …")
    warmup_steps: int | None = field(None, help="linear warmup steps; None: warmup_ratio × max_steps")
    warmup_ratio: float = field(0.0, help="warmup as a fraction of max_steps when warmup_steps is None")
    weight_decay: float = field(0.1, help="AdamW weight decay (KnowLM: 0.1)")
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95], help="AdamW betas (KnowLM: 0.9, 0.95)")
    eps: float = field(1e-8, help="AdamW epsilon")
    max_grad_norm: float = field(1.0, help="gradient clipping (0 disables)")
    precision: str = field("auto", help="auto | fp32 | fp16 | bf16 (auto: fp32 on CPU, bf16 on GPUs that have it, "
                                        "else fp16)")
    logging_steps: int = field(10, help="log the training loss every N steps")
    eval_steps: int | None = field(None, help="evaluate every N steps (None: only at the start and the end)")
    eval_on_start: bool = field(True, help="evaluate the untrained model first (the curve starts at ~ln(V))")
    eval_batch: int | None = field(None, help="sequences per eval forward pass (default: micro_batch)")
    eval_max_samples_per_type: int | None = field(None, help="cap the valid samples per type (evenly spaced)")
    unigram_max_tokens: int = field(200_000_000, help="count at most this many train tokens for the unigram "
                                                      "baseline (evenly spaced chunks beyond it)")
    save_steps: int | None = field(None, help="write checkpoint-N every N steps (None: no intermediate checkpoints)")
    save_total_limit: int | None = field(2, help="keep at most this many checkpoints")
    seed: int = field(0, help="model init, data order and dropout seed")
    device: str = field("auto", help="cpu | cuda | auto (cuda when available)")
    deepspeed: Any = field(None, help="None, a DeepSpeed JSON path (relative to the YAML's folder), an inline "
                                      "config dict, or a short spec "
                                      "{stage: 2|3, offload_optimizer, offload_params, optimizer}")
    stage: str = field("full", help="full | embeddings (only embed_tokens + lm_head) | lora+embeddings")
    lora: LoraSection = field(default_factory=LoraSection, help="LoRA settings for stage lora+embeddings")
    resume_from: str | None = field(None, help="None | 'latest' (newest OUTPUT/checkpoint-N, if any) | a checkpoint")
    stop_at_step: int | None = field(None, help="end this session at this step with a checkpoint, without the final "
                                                "save (a time-limited cluster job; the schedule still follows "
                                                "max_steps; rerun with resume_from: latest)")
    dataloader_workers: int = field(0, help="DataLoader worker processes (0: load in the training process)")
    progress: bool = field(True, help="show the Trainer's progress bar")
    base_dir: str | None = field(None, help="folder the YAML file was read from (set by load_pretrain_config)")

    def __post_init__(self) -> None:
        positive = {"seq_length": self.seq_length, "micro_batch": self.micro_batch, "grad_accum": self.grad_accum,
                    "max_steps": self.max_steps, "logging_steps": self.logging_steps}
        for name, value in [*positive.items(), ("eval_steps", self.eval_steps), ("save_steps", self.save_steps),
                            ("eval_batch", self.eval_batch), ("eval_max_samples_per_type", self.eval_max_samples_per_type),
                            ("stop_at_step", self.stop_at_step)]:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.seq_length < 2:
            raise ValueError(f"seq_length must be >= 2 (one input and one target), got {self.seq_length}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.min_lr_ratio < 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1), got {self.min_lr_ratio}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("weight_decay and max_grad_norm must be >= 0")
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be auto, fp32, fp16 or bf16, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage != "full" and not self.model.init_from:
            raise ValueError(f"stage {self.stage!r} trains only part of a model, so it needs model.init_from (a "
                             "pretrained model folder, e.g. the output of a full stage); a frozen random model "
                             "would learn nothing useful")
        bad = {k: v for k, v in self.proportions.items()
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0}
        if bad or (self.proportions and sum(self.proportions.values()) <= 0):
            raise ValueError(f"proportions must be finite numbers >= 0, not all zero; got {self.proportions!r}")
        if self.deepspeed is not None and not isinstance(self.deepspeed, (str, dict)):
            raise ValueError(f"deepspeed must be None, a JSON path or a mapping, got {type(self.deepspeed).__name__}")
        if isinstance(self.deepspeed, dict) and "stage" in self.deepspeed:
            extra = sorted(set(self.deepspeed) - DEEPSPEED_SHORT_KEYS)
            if extra:
                raise ValueError(f"deepspeed short spec: unknown key(s) {extra}; allowed {sorted(DEEPSPEED_SHORT_KEYS)} "
                                 "(or give a full DeepSpeed config with a zero_optimization section)")
        if self.resume_from is not None and not isinstance(self.resume_from, str):
            raise ValueError(f"resume_from must be None, 'latest' or a checkpoint path, got {self.resume_from!r}")

    # ------------------------------------------------------------------ paths --------------
    def path(self, value: str | os.PathLike) -> Path:
        """A config path made absolute: from ``workdir`` when set (itself from ``base_dir``),
        else from ``base_dir``, else from the current directory."""
        p = Path(value).expanduser()
        if p.is_absolute():
            return p
        base = Path(self.base_dir) if self.base_dir else Path.cwd()
        if self.workdir is not None:
            wd = Path(self.workdir).expanduser()
            base = wd if wd.is_absolute() else base / wd
        return (base / p).resolve()


def load_pretrain_config(path: str | os.PathLike, overrides: list[str] | None = None) -> PretrainConfig:
    """``PretrainConfig`` from YAML (+ ``key=value`` overrides); ``base_dir`` = the YAML's folder."""
    cfg = load_config(PretrainConfig, path, overrides)
    if cfg.base_dir is None:
        cfg.base_dir = str(Path(path).resolve().parent)
    return cfg


# ============================================================================ data ========
def default_proportions(type_ranges: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Each type's share = its share of the samples (what uniform sampling would give)."""
    return {k: float(e - s) for k, (s, e) in type_ranges.items() if e > s}


class RankBatchSampler:
    """Micro batches for one rank: at micro step ``k`` rank ``r`` of ``W`` takes
    ``sampler.batch_at(k·W + r)``, for ``k`` in ``[start, end)``. Every rank's batch keeps the
    type proportions and no two ranks share a step. ``start`` > 0 resumes in O(1)."""

    def __init__(self, sampler, rank: int, world_size: int, start: int, end: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if not 0 <= start <= end:
            raise ValueError(f"need 0 <= start <= end, got {start}, {end}")
        self.sampler, self.rank, self.world_size, self.start, self.end = sampler, rank, world_size, start, end

    def batch_at(self, k: int) -> list[int]:
        return self.sampler.batch_at(k * self.world_size + self.rank)

    def __iter__(self):
        for k in range(self.start, self.end):
            yield self.batch_at(k)

    def __len__(self) -> int:
        return self.end - self.start

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls this; batches depend only on the step
        pass


class CausalLMCollator:
    """Pads a list of ``{"input_ids": LongTensor}`` to the longest sample (right padding).

    ``labels`` = ``input_ids`` with padding set to -100 (ignored by the loss); ``attention_mask``
    is 1 on real tokens. The pad id never reaches the loss or attention, so any id works; we use
    the tokenizer's pad id when it has one, else EOS, else 0 (``pad_source`` says which).
    Samples longer than ``max_length`` are truncated and counted in ``truncated``.
    """

    def __init__(self, pad_id: int, max_length: int, pad_source: str = ""):
        self.pad_id, self.max_length, self.pad_source = int(pad_id), int(max_length), pad_source
        self.truncated = 0

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = []
        for f in features:
            ids = torch.as_tensor(f["input_ids"], dtype=torch.long)
            if ids.ndim != 1 or ids.numel() == 0:
                raise ValueError(f"collator: each sample must be a non-empty 1-D id tensor, got shape {tuple(ids.shape)}")
            if ids.numel() > self.max_length:
                ids = ids[: self.max_length]
                self.truncated += 1
            rows.append(ids)
        width = max(r.numel() for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : r.numel()] = r
            mask[i, : r.numel()] = 1
        labels = input_ids.masked_fill(mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def pad_token(tokenizer_info) -> tuple[int, str]:
    """(pad id, where it came from): tokenizer pad, else EOS, else 0."""
    if tokenizer_info.pad_token_id is not None:
        return int(tokenizer_info.pad_token_id), "tokenizer pad token"
    if tokenizer_info.eos_token_id is not None:
        return int(tokenizer_info.eos_token_id), "EOS (the tokenizer has no pad token)"
    return 0, "id 0 (the tokenizer has neither pad nor EOS)"


def eval_indices(type_ranges: dict[str, tuple[int, int]], max_per_type: int | None) -> dict[str, np.ndarray]:
    """Valid sample indices per type: all of them, or ``max_per_type`` evenly spaced ones."""
    out = {}
    for name, (s, e) in type_ranges.items():
        n = e - s
        if n <= 0:
            continue
        if max_per_type is None or n <= max_per_type:
            out[name] = np.arange(s, e, dtype=np.int64)
        else:
            out[name] = s + np.unique(np.linspace(0, n - 1, max_per_type).round().astype(np.int64))
    return out


def _token_view(index) -> np.ndarray:
    """All token ids of an index as one read-only memmap (from its public ``paths``)."""
    if index.num_tokens == 0:
        return np.zeros(0, index.dtype)
    return np.memmap(index.paths["bin"], dtype=index.dtype.newbyteorder("<"), mode="r")


def unigram_counts(index, vocab_size: int, max_tokens: int | None = None, chunk_tokens: int = 1 << 24,
                   progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Counts of the *target* tokens of ``index`` (every token except each sample's first, the
    positions a causal LM predicts), in bounded memory. When the index holds more than
    ``max_tokens`` tokens, evenly spaced chunks totalling ~``max_tokens`` are counted instead
    (all their tokens; the first-token correction is then skipped) and ``info["exact"]`` is False."""
    from tqdm import tqdm

    tokens = _token_view(index)
    n = int(tokens.size)
    counts = np.zeros(vocab_size, np.int64)
    exact = max_tokens is None or n <= max_tokens
    if exact:
        starts = range(0, n, chunk_tokens)
        spans = [(a, min(a + chunk_tokens, n)) for a in starts]
    else:
        k = max(1, math.ceil(max_tokens / chunk_tokens))
        width = min(chunk_tokens, max_tokens)
        spans = [(int(a), int(a) + width) for a in np.linspace(0, n - width, k).round().astype(np.int64)]
    for a, b in tqdm(spans, desc="unigram counts", unit="chunk", disable=not progress):
        chunk = np.asarray(tokens[a:b])
        if chunk.size and int(chunk.max()) >= vocab_size:
            raise ValueError(f"{index.paths['bin']}: token id {int(chunk.max())} >= the model's vocabulary "
                             f"{vocab_size}")
        counts += np.bincount(chunk, minlength=vocab_size)
    if exact and len(index):
        firsts = tokens[(np.asarray(index.pointers) // index.dtype.itemsize)[np.asarray(index.sizes) > 0]]
        counts -= np.bincount(np.asarray(firsts), minlength=vocab_size)
    counted = int(counts.sum())
    return counts, {"exact": exact, "tokens_counted": counted, "index_tokens": n}


def unigram_cross_entropy(counts: np.ndarray, index, indices_by_type: dict[str, np.ndarray]) -> dict[str, float]:
    """Cross-entropy (nats/token) of the add-one-smoothed unigram model
    ``p(t) = (count(t) + 1) / (N + V)`` on the target tokens (all but the first) of the given
    valid samples, per type and overall (token-weighted)."""
    log_p = np.log(counts + 1.0) - math.log(float(counts.sum()) + counts.size)
    out, total_nll, total_n = {}, 0.0, 0
    for name, idx in indices_by_type.items():
        nll, n = 0.0, 0
        for i in idx:
            targets = np.asarray(index[int(i)][1:], dtype=np.int64)
            nll -= float(log_p[targets].sum())
            n += targets.size
        if n:
            out[name] = nll / n
        total_nll, total_n = total_nll + nll, total_n + n
    if total_n:
        out["all"] = total_nll / total_n
    return out


# ============================================================================ deepspeed ===
def resolve_deepspeed(spec: Any, device: str, base: PretrainConfig | None = None) -> tuple[dict | None, list[str]]:
    """The DeepSpeed config dict for ``spec`` (None, a JSON path, a full dict or a short spec)
    and the list of changes made for this device / for saving a normal HF model.

    A short spec ``{stage, offload_optimizer, offload_params, optimizer}`` is expanded by
    :func:`knowlm_utils.launch.deepspeed_config`; without ``optimizer`` it leaves the optimizer to
    the Trainer (torch AdamW: nothing to JIT-compile), except with optimizer offload, where
    DeepSpeed needs its own CPU Adam (``optimizer: AdamW``)."""
    from . import launch

    if spec is None:
        return None, []
    changes: list[str] = []
    if isinstance(spec, str):
        path = Path(spec).expanduser()
        if not path.is_absolute() and base is not None and base.base_dir:
            path = Path(base.base_dir) / path  # a config file: relative to the YAML's folder, not the workdir
        if not path.is_file():
            raise FileNotFoundError(f"DeepSpeed config not found: {path}")
        cfg = launch.read_deepspeed_config(path)
    elif isinstance(spec, dict) and "stage" in spec:
        offload_opt = bool(spec.get("offload_optimizer", False))
        cfg = launch.deepspeed_config(int(spec["stage"]), offload_optimizer=offload_opt,
                                      offload_params=bool(spec.get("offload_params", False)),
                                      device="cpu" if device == "cpu" else "cuda",
                                      optimizer=spec.get("optimizer", "AdamW" if offload_opt else None),
                                      gather_16bit_on_save=bool(spec.get("gather_16bit_on_save", True)))
    elif isinstance(spec, dict):
        cfg = json.loads(json.dumps(spec))  # a deep, JSON-clean copy
    else:
        raise ValueError(f"deepspeed must be None, a path or a mapping, got {type(spec).__name__}")
    if device == "cpu":
        cfg, cpu_changes = launch.adapt_for_cpu(cfg)
        changes += cpu_changes
    zero = cfg.setdefault("zero_optimization", {})
    if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save"):
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        changes.append("zero_optimization.stage3_gather_16bit_weights_on_model_save → true (the final save is a "
                       "normal HF model, not only ZeRO shards)")
    return cfg, changes


# ============================================================================ trainer =====
def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _make_trainer_class():
    """The Trainer subclass, built lazily (importing transformers costs seconds)."""
    import torch
    from transformers import Trainer

    class KnowLMPretrainer(Trainer):
        """``Trainer`` with the typed, rank-sliced, exactly resumable sampler and per-type eval."""

        def __init__(self, *args, batch_sampler_factory, evaluator, **kwargs):
            super().__init__(*args, **kwargs)
            self._batch_sampler_factory = batch_sampler_factory
            self._evaluator = evaluator
            self.start_micro_step = 0

        def get_train_dataloader(self):
            from torch.utils.data import DataLoader

            sampler = self._batch_sampler_factory(self.args.process_index, self.args.world_size, self.start_micro_step)
            return DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                              num_workers=self.args.dataloader_num_workers, pin_memory=False)

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
            metrics = self._evaluator(self.model, self.args, metric_key_prefix)
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return KnowLMPretrainer


class TypedEvaluator:
    """Held-out loss per type: each rank takes every W-th sample of a type, all ranks run the same
    number of forward passes (ZeRO-3 gathers parameters collectively; a rank without samples
    left runs a zero-weight batch), and the (loss sum, token count) pairs are summed over ranks."""

    def __init__(self, dataset, indices_by_type: dict[str, np.ndarray], collator, batch_size: int,
                 unigram: dict[str, float] | None):
        self.dataset, self.indices_by_type, self.collator = dataset, indices_by_type, collator
        self.batch_size, self.unigram = batch_size, unigram or {}
        self.seconds = 0.0  # wall time spent evaluating (subtracted from the training throughput)

    def losses(self, model, device, rank: int = 0, world_size: int = 1) -> dict[str, tuple[float, int]]:
        import torch

        sums = {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for name, idx in self.indices_by_type.items():
                    mine = idx[rank::world_size]
                    per_rank = math.ceil(len(idx) / world_size)
                    n_batches = math.ceil(per_rank / self.batch_size)
                    total = torch.zeros(2, dtype=torch.float64)
                    for b in range(n_batches):
                        part = mine[b * self.batch_size:(b + 1) * self.batch_size]
                        weight = 1.0 if len(part) else 0.0
                        if not len(part):
                            part = idx[:1]
                        batch = self.collator([self.dataset[int(i)] for i in part])
                        batch = {k: v.to(device) for k, v in batch.items()}
                        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                        logits = logits[:, :-1].float()
                        targets = batch["labels"][:, 1:]
                        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                                targets.reshape(-1), ignore_index=-100,
                                                                reduction="sum")
                        total += weight * torch.stack([nll.double().cpu(),
                                                       (targets != -100).sum().double().cpu()])
                    dist = _dist()
                    if dist is not None and world_size > 1:
                        t = total.to(device)
                        dist.all_reduce(t)
                        total = t.cpu()
                    sums[name] = (float(total[0]), int(total[1]))
        finally:
            model.train(was_training)
        return sums

    def __call__(self, model, args, prefix: str = "eval") -> dict[str, float]:
        t0 = time.perf_counter()
        sums = self.losses(model, args.device, args.process_index, args.world_size)
        self.seconds += time.perf_counter() - t0
        metrics: dict[str, float] = {}
        all_nll = sum(s for s, _ in sums.values())
        all_n = sum(n for _, n in sums.values())
        if all_n:
            metrics[f"{prefix}_loss"] = all_nll / all_n
            metrics[f"{prefix}_ppl"] = math.exp(min(all_nll / all_n, 50.0))
        for name, (s, n) in sums.items():
            if n:
                metrics[f"{prefix}_loss_{name}"] = s / n
                metrics[f"{prefix}_ppl_{name}"] = math.exp(min(s / n, 50.0))
        for name, value in self.unigram.items():
            metrics[f"{prefix}_unigram_loss" + ("" if name == "all" else f"_{name}")] = value
        metrics[f"{prefix}_tokens"] = all_n
        return metrics


def _stop_callback(stop_at_step: int):
    from transformers import TrainerCallback

    class StopAtStep(TrainerCallback):
        """Ends the session at ``stop_at_step`` and makes the Trainer save a checkpoint there."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= stop_at_step:
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopAtStep()


def _log_history_callback(output_dir: Path):
    from transformers import TrainerCallback

    class LogHistoryWriter(TrainerCallback):
        """Rewrites OUTPUT/log_history.json atomically at every log (rank 0), for live plots."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero:
                write_json_atomic(output_dir / LOG_HISTORY, state.log_history)

    return LogHistoryWriter()


# ============================================================================ model =======
def _resolve_device(device: str) -> str:
    if device != "auto":
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("device: cuda, but torch sees no CUDA GPU (use device: cpu or auto)")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_precision(precision: str, device: str) -> str:
    if device == "cpu":
        if precision in ("fp16", "bf16"):
            raise ValueError(f"precision {precision!r} needs a GPU; on CPU the course trains in fp32 "
                             "(precision: auto or fp32)")
        return "fp32"
    if precision != "auto":
        return precision
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def build_pretrain_model(config: PretrainConfig, tokenizer_dir: Path, log=print):
    """The model to train: ``model.init_from`` (vocabulary grown to the tokenizer's with mean
    initialisation when the tokenizer is larger, as after Chinese vocabulary extension) or a
    fresh ``model.preset`` whose vocabulary follows the tokenizer."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    from .modeling import build_model, model_config, tokenizer_info

    info = tokenizer_info(tokenizer_dir)
    zero3 = is_deepspeed_zero3_enabled()  # set by TrainingArguments with a ZeRO-3 config
    if zero3:
        import deepspeed

        deepspeed.init_distributed()  # zero.Init needs the process group now (idempotent; the Trainer reuses it)
    if config.model.init_from:
        from transformers import AutoModelForCausalLM

        src = config.path(config.model.init_from)
        if not (src / "config.json").is_file():
            raise FileNotFoundError(f"model.init_from: {src} is not a Hugging Face model folder (no config.json)")
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype="float32", trust_remote_code=False)
        vocab = int(model.config.vocab_size)
        if info.vocab_size > vocab:
            model.resize_token_embeddings(info.vocab_size, mean_resizing=True)
            log(f"model: resized embeddings of {src} from {vocab} to the tokenizer's {info.vocab_size} rows (mean init)")
        return model, info
    overrides = dict(config.model.overrides)
    overrides.setdefault("max_position_embeddings", max(config.seq_length,
                                                        _shape_positions(config.model.preset)))
    cfg = model_config(config.model.preset, tokenizer_dir,
                       pad_vocab_to_multiple_of=config.model.pad_vocab_to_multiple_of, **overrides)
    if zero3:  # built directly in partitions (deepspeed.zero.Init) by transformers
        import torch
        from transformers import AutoModelForCausalLM

        torch.manual_seed(config.seed)
        return AutoModelForCausalLM.from_config(cfg), info
    return build_model(cfg, seed=config.seed), info


def _shape_positions(preset: str) -> int:
    from .modeling import get_shape

    return get_shape(preset).max_position_embeddings


def apply_stage(model, config: PretrainConfig):
    """Freeze/wrap ``model`` for the training stage; returns the model to train and a short
    description of what trains."""
    if config.stage == "full":
        return model, "all parameters"
    if config.stage == "embeddings":
        for name, p in model.named_parameters():
            p.requires_grad = any(m in name.split(".") for m in EMBEDDING_MODULES)
        return model, "embed_tokens + lm_head only (stage 1: the new vocabulary learns; the transformer is frozen)"
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=list(config.lora.targets), modules_to_save=list(EMBEDDING_MODULES),
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg), (f"LoRA r={config.lora.r} on {list(config.lora.targets)} + full "
                                         "embed_tokens/lm_head (stage 2)")


def trainable_parameter_count(model) -> tuple[int, int]:
    """(trainable, total) parameters; ZeRO-3 partitioned tensors report their full size in ds_numel."""
    def size(p) -> int:
        return int(getattr(p, "ds_numel", p.numel()))

    return sum(size(p) for p in model.parameters() if p.requires_grad), sum(size(p) for p in model.parameters())


# ============================================================================ checkpoints =
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The ``checkpoint-N`` folder with the largest N that holds a trainer_state.json."""
    d = Path(output_dir)
    if not d.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in d.iterdir()
             if (m := _CHECKPOINT_RE.match(p.name)) and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def resolve_resume(config: PretrainConfig, output_dir: Path) -> Path | None:
    if config.resume_from is None:
        return None
    if config.resume_from == "latest":
        return latest_checkpoint(output_dir)
    path = config.path(config.resume_from)
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"resume_from: {path} is not a Trainer checkpoint (no trainer_state.json)")
    return path


# ============================================================================ main ========
def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _print(msg: str) -> None:
    if _is_main_process():
        print(f"[pretrain] {msg}", flush=True)


def _open_index(prefix: Path, key: str):
    from .indexed import MMapTokenIndex, index_paths

    if not index_paths(prefix)["idx"].is_file():
        raise FileNotFoundError(f"{key}: no token index at {prefix} (.idx/.bin). It is produced by notebook "
                                "04_mmap_token_index or `knowlm preprocess CONFIG.yaml --out WORKDIR/index`; "
                                "check workdir / the path in the config")
    return MMapTokenIndex(prefix)


def _check_index_against_tokenizer(index, tokenizer_dir: Path, vocab_size: int) -> None:
    m = index.manifest or {}
    if m.get("vocab_size") is not None and int(m["vocab_size"]) > vocab_size:
        raise ValueError(f"{index.paths['manifest']}: the index was written with vocab_size {m['vocab_size']}, larger "
                         f"than the model's {vocab_size}: its ids would index past the embedding")
    sha = (m.get("tokenizer") or {}).get("sha256") if isinstance(m.get("tokenizer"), dict) else None
    if sha and (tokenizer_dir / "tokenizer.model").is_file():
        from .tokenizer import tokenizer_sha256

        mine = tokenizer_sha256(tokenizer_dir)
        if mine != sha:
            raise ValueError(f"{index.paths['manifest']} was encoded with a tokenizer whose tokenizer.model has sha256 "
                             f"{sha[:16]}…, but {tokenizer_dir}/tokenizer.model is {mine[:16]}…: train with the "
                             "tokenizer the index was built with")


def _save_final(trainer, config: PretrainConfig, tokenizer_dir: Path, output_dir: Path) -> Path:
    """Write OUTPUT/final atomically: save into a temp folder (every rank takes part — ZeRO-3
    gathers the weights), then rank 0 adds the tokenizer files (and, for LoRA, the merged model)
    and renames it into place."""
    final = output_dir / FINAL_DIR
    tmp = output_dir / f".{FINAL_DIR}.tmp"
    if trainer.is_world_process_zero() and tmp.exists():
        shutil.rmtree(tmp)
    trainer.accelerator.wait_for_everyone()
    lora = config.stage == "lora+embeddings"
    trainer.save_model(str(tmp / "adapter") if lora else str(tmp))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        if lora:
            _merge_lora(config, tmp / "adapter", tmp)
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copy2(tokenizer_dir / name, tmp / name)
        for pickle_file in (tmp / "training_args.bin", tmp / "adapter" / "training_args.bin"):
            pickle_file.unlink(missing_ok=True)  # a pickle; the config is in metrics.json
        old = output_dir / f".{FINAL_DIR}.old"
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            shutil.rmtree(old)
    trainer.accelerator.wait_for_everyone()
    return final


def _merge_lora(config: PretrainConfig, adapter_dir: Path, out_dir: Path) -> None:
    """Base (``init_from``, resized like in training) + adapter → a plain merged model in out_dir.
    Runs on rank 0 in fp32 on the CPU (for 13B that is ~52 GB of host memory)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from .modeling import tokenizer_info

    base = AutoModelForCausalLM.from_pretrained(str(config.path(config.model.init_from)), dtype=torch.float32)
    vocab = tokenizer_info(config.path(config.tokenizer)).vocab_size
    if vocab > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(vocab, mean_resizing=True)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir), safe_serialization=True)


def training_arguments(config: PretrainConfig, output_dir: Path, device: str, precision: str,
                       ds_config: dict | None, has_eval: bool):
    """``TrainingArguments`` for the run. ``ignore_data_skip=True``: the sampler itself restarts at
    the checkpoint's step, the Trainer must not also skip batches."""
    from transformers import TrainingArguments

    from .launch import trainer_device_args

    warmup = config.warmup_steps if config.warmup_steps is not None else round(config.warmup_ratio * config.max_steps)
    scheduler, scheduler_kwargs = config.lr_scheduler, {}
    if config.min_lr_ratio > 0 and scheduler == "cosine":
        scheduler, scheduler_kwargs = "cosine_with_min_lr", {"min_lr_rate": config.min_lr_ratio}
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=config.max_steps, per_device_train_batch_size=config.micro_batch,
        per_device_eval_batch_size=config.eval_batch or config.micro_batch,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.lr, lr_scheduler_type=scheduler,
        lr_scheduler_kwargs=scheduler_kwargs, warmup_steps=warmup, weight_decay=config.weight_decay,
        adam_beta1=config.betas[0], adam_beta2=config.betas[1], adam_epsilon=config.eps,
        max_grad_norm=config.max_grad_norm, fp16=precision == "fp16", bf16=precision == "bf16",
        logging_steps=config.logging_steps, logging_first_step=True,
        eval_strategy="steps" if has_eval and config.eval_steps else "no", eval_steps=config.eval_steps,
        eval_on_start=has_eval and config.eval_on_start,
        save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit, seed=config.seed, data_seed=config.seed,
        ignore_data_skip=True, report_to=[], disable_tqdm=not config.progress,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=config.dataloader_workers,
        remove_unused_columns=False, deepspeed=ds_config,
        ddp_backend="gloo" if device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        **trainer_device_args(device),
    )


def main(config: PretrainConfig | str | os.PathLike, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run pretraining; returns the metrics written to OUTPUT/metrics.json (on every rank)."""
    if not isinstance(config, PretrainConfig):
        config = load_pretrain_config(config, overrides)
    elif overrides:
        raise ValueError("overrides apply to a YAML path; change the PretrainConfig object directly")
    t_start = time.time()
    device = _resolve_device(config.device)
    precision = _resolve_precision(config.precision, device)
    ds_config, ds_changes = resolve_deepspeed(config.deepspeed, device, config)
    if ds_config is not None:
        from .launch import DEFAULT_EXTENSIONS_DIR, in_process_env

        if device == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(os.path.expanduser(
            os.environ.get("KNOWLM_TORCH_EXTENSIONS_DIR") or DEFAULT_EXTENSIONS_DIR)).resolve()))
        if "RANK" not in os.environ and "LOCAL_RANK" not in os.environ:
            os.environ.update(in_process_env())  # a notebook kernel: a one-process "distributed" job
    from .indexed import ProportionalBatchSampler, TokenIndexDataset

    tokenizer_dir = config.path(config.tokenizer)
    output_dir = config.path(config.output_dir)
    train_index = _open_index(config.path(config.train_index), "train_index")
    valid_index = _open_index(config.path(config.valid_index), "valid_index") if config.valid_index else None
    indices_by_type = (eval_indices(valid_index.type_ranges, config.eval_max_samples_per_type)
                       if valid_index is not None else {})
    has_eval = bool(indices_by_type)
    # TrainingArguments first: with a ZeRO-3 config they make transformers build/load the model
    # already partitioned over the ranks (deepspeed.zero.Init), so 13B never sits whole in one process
    args = training_arguments(config, output_dir, device, precision, ds_config, has_eval)

    model, tok_info = build_pretrain_model(config, tokenizer_dir, log=_print)
    vocab_size = int(model.config.vocab_size)  # (ZeRO-3 partitioned tensors have no full shape)
    for index in (train_index, valid_index):
        if index is not None:
            _check_index_against_tokenizer(index, tokenizer_dir, vocab_size)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model, trains_what = apply_stage(model, config)
    n_trainable, n_total = trainable_parameter_count(model)
    pad_id, pad_source = pad_token(tok_info)
    collator = CausalLMCollator(pad_id, config.seq_length, pad_source)

    proportions = dict(config.proportions) or default_proportions(train_index.type_ranges)
    sampler = ProportionalBatchSampler(train_index.type_ranges, proportions, config.micro_batch, seed=config.seed)
    end_micro = config.max_steps * config.grad_accum

    def batch_sampler_factory(rank: int, world: int, start: int) -> RankBatchSampler:
        return RankBatchSampler(sampler, rank, world, start, end_micro)

    unigram: dict[str, float] = {}
    unigram_info: dict[str, Any] = {}
    if has_eval:
        counts, unigram_info = unigram_counts(train_index, vocab_size, config.unigram_max_tokens,
                                              progress=config.progress and _is_main_process())
        unigram = unigram_cross_entropy(counts, valid_index, indices_by_type)
    evaluator = TypedEvaluator(TokenIndexDataset(valid_index) if valid_index is not None else None, indices_by_type,
                               CausalLMCollator(pad_id, config.seq_length, pad_source),
                               config.eval_batch or config.micro_batch, unigram)
    callbacks = [_log_history_callback(output_dir)]
    if config.stop_at_step is not None and config.stop_at_step < config.max_steps:
        callbacks.append(_stop_callback(config.stop_at_step))
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(model=model, args=args, train_dataset=TokenIndexDataset(train_index),
                          eval_dataset=evaluator.dataset if has_eval else None, data_collator=collator, callbacks=callbacks,
                          batch_sampler_factory=batch_sampler_factory, evaluator=evaluator)

    resume = resolve_resume(config, output_dir)
    if resume is not None:
        state = read_json(resume / "trainer_state.json")
        trainer.start_micro_step = int(state["global_step"]) * config.grad_accum
        _print(f"resuming from {resume} at step {state['global_step']} (data sampler restarts at micro batch "
               f"{trainer.start_micro_step})")
    elif config.resume_from == "latest":
        _print(f"resume_from: latest, but {output_dir} has no checkpoint yet: starting from scratch")
    if trainer.start_micro_step >= end_micro:
        raise ValueError(f"checkpoint {resume} is at step {trainer.start_micro_step // config.grad_accum}, already "
                         f"max_steps={config.max_steps}: raise max_steps to train further")

    world = args.world_size
    _print(f"device {device} ({precision}), {world} process(es), DeepSpeed "
           f"{'ZeRO-' + str(ds_config['zero_optimization'].get('stage')) if ds_config else 'off'}")
    for change in ds_changes:
        _print(f"  deepspeed: {change}")
    _print(f"model: {n_total:,} parameters, {n_trainable:,} trainable ({trains_what}); vocab {vocab_size}")
    _print(f"batch: {config.micro_batch} × {config.grad_accum} accum × {world} proc = "
           f"{config.micro_batch * config.grad_accum * world} sequences of ≤ {config.seq_length} tokens per step; "
           f"proportions {sampler.counts_per_batch} per micro batch; pad id {pad_id} ({pad_source})")
    if unigram:
        _print("unigram baseline (nats/token): " + ", ".join(f"{k} {v:.3f}" for k, v in unigram.items()))

    if trainer.is_world_process_zero() and ds_config is not None:
        write_json_atomic(output_dir / "deepspeed_config.json", ds_config)
    train_out = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    eval_seconds_in_loop = evaluator.seconds
    completed = trainer.state.global_step >= config.max_steps
    final_eval, final = {}, None
    if completed and has_eval:  # the loop may just have evaluated at the last step: reuse that instead of a second pass
        last = [h for h in trainer.state.log_history if "eval_loss" in h]
        if last and last[-1].get("step") == trainer.state.global_step:
            final_eval = {k: v for k, v in last[-1].items() if k.startswith("eval_")}
        else:
            final_eval = trainer.evaluate()
    if completed:
        final = _save_final(trainer, config, tokenizer_dir, output_dir)
    else:
        _print(f"stopped at step {trainer.state.global_step} of {config.max_steps} (stop_at_step); checkpoint: "
               f"{latest_checkpoint(output_dir)}; continue with resume_from: latest")

    tokens_seen = int(trainer.state.num_input_tokens_seen)
    session_tokens = tokens_seen - int(getattr(trainer, "_initial_num_input_tokens_seen", 0) or 0)
    runtime = float(train_out.metrics.get("train_runtime", float("nan")))
    metrics: dict[str, Any] = {
        "final_dir": str(final) if final else None, "output_dir": str(output_dir), "completed": completed,
        "global_step": int(trainer.state.global_step), "max_steps": config.max_steps,
        "resumed_from": str(resume) if resume else None, "device": device, "precision": precision,
        "world_size": world, "deepspeed_stage": ds_config["zero_optimization"].get("stage") if ds_config else None,
        "stage": config.stage, "parameters": n_total, "trainable_parameters": n_trainable,
        "vocab_size": vocab_size, "pad_id": pad_id, "pad_source": pad_source,
        "tokens_seen": tokens_seen, "train_runtime_s": runtime,
        "eval_seconds_in_loop": eval_seconds_in_loop,
        # training throughput: this session's real (non-pad) tokens over its run time minus evaluation
        "tokens_per_s": session_tokens / (runtime - eval_seconds_in_loop) if runtime > eval_seconds_in_loop else None,
        "train_loss": train_out.metrics.get("train_loss"),
        "truncated_train_samples_rank0": collator.truncated if config.dataloader_workers == 0 else None,
        "proportions": proportions, "counts_per_batch": sampler.counts_per_batch,
        "unigram": unigram, "unigram_counts": unigram_info, "final_eval": final_eval,
        "wall_s": time.time() - t_start, "config": dataclasses.asdict(config),
    }
    if trainer.is_world_process_zero():
        write_json_atomic(output_dir / LOG_HISTORY, trainer.state.log_history)
        write_json_atomic(output_dir / METRICS, metrics)
        _print(f"done: step {metrics['global_step']}, {tokens_seen:,} tokens, "
               f"{metrics['tokens_per_s'] or 0:,.0f} tokens/s" + (f"; final model → {final}" if final else ""))
        if collator.truncated:
            _print(f"warning: {collator.truncated} training samples (rank 0) were longer than seq_length "
                   f"{config.seq_length} and lost their tail: build the index with the same seq_length")
        if final_eval:
            _print(f"held-out loss {final_eval.get('eval_loss', float('nan')):.4f} vs unigram "
                   f"{unigram.get('all', float('nan')):.4f}")
    return metrics


def read_history(output_dir: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """OUTPUT/log_history.json split into ``train`` rows (step, loss, learning_rate, grad_norm,
    num_input_tokens_seen …) and ``eval`` rows (step, eval_loss, eval_loss_<type>,
    eval_unigram_loss_<type> …), for plotting during or after a run."""
    path = Path(output_dir) / LOG_HISTORY
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no log history yet (written at the first logging step)")
    rows = read_json(path)
    return {"train": [r for r in rows if "loss" in r], "eval": [r for r in rows if "eval_loss" in r]}


# ============================================================================ launching ===
def pretrain_script() -> Path:
    """``scripts/pretrain.py`` of this checkout (the one entry point every launcher runs)."""
    from .workdir import repo_root

    return repo_root() / "scripts" / "pretrain.py"


def launch_pretrain(config_path: str | os.PathLike, nprocs: int = 1, launcher: str = "deepspeed",
                    overrides: Sequence[str] | None = None, log_path: str | os.PathLike | None = None,
                    device: str = "cpu", echo: bool = True, extensions_dir: str | os.PathLike | None = None) -> int:
    """Run ``scripts/pretrain.py CONFIG -o k=v …`` under ``deepspeed`` / ``torchrun`` with
    ``nprocs`` processes on this machine, streaming its output live (a notebook cell shows the
    progress) and appending it to ``log_path``. Raises ``LaunchError`` (exit code + last lines)
    on failure. Returns 0. A relative ``workdir=…`` override is taken from the current directory
    (or the repository root), like a notebook's ``workdir`` parameter; in the YAML itself,
    relative paths are taken from the YAML's folder."""
    from .launch import local_launch, run_launcher
    from .workdir import resolve_path

    config_file = resolve_path(config_path)  # from the cwd if it is there, else from the repository root
    if not config_file.is_file():
        raise FileNotFoundError(f"pretraining config not found: {config_path} (looked at {config_file})")
    script_args: list[str] = [str(config_file)]
    for item in overrides or []:
        key, sep, value = str(item).partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key=value")
        if key.strip() == "workdir" and value and not Path(value).expanduser().is_absolute():
            item = f"workdir={resolve_path(value)}"  # a notebook's workdir, not one relative to the YAML
        script_args += ["-o", str(item)]
    argv, env = local_launch(pretrain_script(), script_args, nprocs=nprocs, device=device, launcher=launcher,
                             extensions_dir=extensions_dir)
    if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # share the cores, do not oversubscribe them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nprocs))
    return run_launcher(argv, env, log_path=log_path, echo=echo, cwd=str(pretrain_script().parent.parent))


def build_arg_parser(parser=None):
    import argparse

    p = parser or argparse.ArgumentParser(prog="pretrain.py", description="KnowLM stage 05: pretrain a LLaMA")
    add_config_arguments(p, "configs/pretrain/", "max_steps=10 -o model.preset=cpu-small", out=False)
    return p


def run_from_args(args) -> int:
    overrides = cli_overrides(args)
    main(args.config, overrides)
    return 0


def add_cli(subparsers) -> None:
    """``knowlm pretrain CONFIG.yaml [-o key=value …]`` (one process; use scripts/pretrain.py
    under deepspeed/torchrun for several)."""
    p = subparsers.add_parser("pretrain", help="stage 05: pretrain a LLaMA on the token index (HF Trainer)")
    build_arg_parser(p)
    p.set_defaults(func=run_from_args)


__all__ = ["PretrainConfig", "ModelSection", "LoraSection", "load_pretrain_config", "main", "launch_pretrain",
           "CausalLMCollator", "RankBatchSampler", "TypedEvaluator", "unigram_counts", "unigram_cross_entropy",
           "resolve_deepspeed", "apply_stage", "latest_checkpoint", "eval_indices", "read_history", "training_arguments",
           "ConfigError"]
