"""Merging LoRA adapters into a base model, streamed shard by shard (Chinese-LLaMA-Alpaca style).

``merge_lora(base, [adapter, ...], out)`` writes ``W + (B @ A) · scaling`` for every LoRA target
and the adapters' ``modules_to_save`` tensors (the extended embeddings and LM head) in place of the
base's, one base tensor at a time: memory is one tensor plus the adapter's small A/B matrices,
never the whole model. Several adapters are applied in order (a later one sees the earlier ones
merged, as ``PeftModel(...).merge_and_unload()`` one after another would), and the arithmetic is
PEFT's own (A and B in fp32, the delta added to the base weight in its dtype), so the merged
tensors are bit-identical to PEFT's merge.

The vocabulary follows the adapters: when an adapter's ``modules_to_save`` carries embeddings with
more rows (a vocabulary extended for Chinese), the output takes them, ``config.json``'s
``vocab_size`` is updated, and the tokenizer shipped with the last adapter that has one is
copied. Mismatches are refused with both sides named: an adapter that extends
``embed_tokens`` but not ``lm_head``, LoRA matrices whose shape does not fit, a tokenizer whose
size is not the merged vocabulary (49,953 vs 49,954 with a pad token), a base whose
``config.json`` disagrees with its own embeddings.

:func:`verify_merge` then checks that the merged model's logits equal the base + adapter logits
(PEFT, unmerged) on a few prompts — it loads both models whole, so it is a separate step.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..fileio import write_json_atomic
from .diff import _dtypes, _write_sums, check_config_vocab
from .manifest import block_sum, new_manifest, tensor_entry, tensor_hasher, write_manifest
from .output import TOKENIZER_FILES, ReleaseOutput, fingerprint_files
from .shards import DEFAULT_SHARD_BYTES, ShardPlan, ShardWriter, plan_shards, write_index
from .tensors import (IGNORABLE, VOCAB_TENSORS, BlockBuffer, ModelFiles, TensorSpec, as_bytes, dtype_name,
                      parse_dtype, parse_size, read_config, row_blocks, torch_threads)

BLOCK_BYTES = 64 << 20
PREFIX = "base_model.model."
EMBED, HEAD = VOCAB_TENSORS
DEFAULT_PROMPTS = ("知识图谱是一种用图结构表示知识的方法。",
                   "Extract the entities: Hangzhou is a city in Zhejiang.",
                   "def add(a, b):\n    return")


# ------------------------------------------------------------------------------ adapters ----


@dataclass
class LoraTarget:
    """One LoRA-adapted weight: the adapter keys of A and B and the scaling PEFT uses."""

    weight: str
    a_key: str
    b_key: str
    scaling: float
    embedding: bool = False
    bias_key: str | None = None


class LoraAdapter:
    """A PEFT LoRA adapter folder (``adapter_config.json`` + ``adapter_model.safetensors`` or a
    legacy ``adapter_model.bin``): which base tensors it adapts (:attr:`lora`) and which it
    replaces (:attr:`replaces`, from ``modules_to_save``)."""

    def __init__(self, path: str | os.PathLike, label: str = "ADAPTER"):
        self.path = Path(path)
        self.label = label
        cfg_path = self.path / "adapter_config.json"
        if not cfg_path.is_file():
            raise ValueError(f"{label} ({self.path}): no adapter_config.json — not a PEFT adapter folder")
        try:
            self.config = json.loads(cfg_path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{cfg_path}: not valid JSON") from None
        c = self.config
        if c.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"{label} ({self.path}): peft_type {c.get('peft_type')!r} — only LoRA adapters are merged")
        for key, what in (("use_dora", "DoRA"), ("trainable_token_indices", "trainable token indices"),
                          ("layer_replication", "layer replication"),
                          ("fan_in_fan_out", "fan_in_fan_out (GPT-2 Conv1D) layers")):
            if c.get(key):
                raise ValueError(f"{label} ({self.path}): uses {what}, which this streamed merge does not support; "
                                 "merge it with PEFT's merge_and_unload")
        weights = [f for f in ("adapter_model.safetensors", "adapter_model.bin") if (self.path / f).is_file()]
        if not weights:
            raise ValueError(f"{label} ({self.path}): no adapter_model.safetensors or adapter_model.bin")
        self.files = ModelFiles(self.path / weights[0], label)
        self.lora: dict[str, LoraTarget] = {}
        self.replaces: dict[str, str] = {}
        parts: dict[str, dict[str, str]] = {}
        aliases: dict[str, str] = {}
        for key in self.files.names:
            if not key.startswith(PREFIX):
                raise ValueError(f"{label} ({self.path}): unexpected tensor {key} (PEFT keys start with {PREFIX!r})")
            name = key[len(PREFIX):]
            m = re.fullmatch(r"(.+)\.(lora_A\.weight|lora_B\.weight|lora_B\.bias|lora_embedding_A|lora_embedding_B)", name)
            if m:
                parts.setdefault(m.group(1), {})[m.group(2)] = key
            elif "lora_" in name or "magnitude" in name:
                raise ValueError(f"{label} ({self.path}): tensor {key} is not a LoRA A/B matrix this merge understands")
            elif ".original_module." in name:
                continue  # the base's own copy, saved beside a resized modules_to_save layer; never merged
            elif ".base_layer." in name:
                # the full weight under a LoRA layer, saved when PEFT saves embedding layers (a resized
                # vocabulary, a LoRA on lm_head): loading puts it in place of the base's, then the LoRA adds
                self.replaces[name.replace(".base_layer.", ".")] = key
            elif ".modules_to_save." in name:
                alias = re.sub(r"\.modules_to_save\.(?:[^.]+\.)?(?=[^.]+$)", ".", name)
                aliases[alias] = key
            else:
                self.replaces[name] = key
        for name, key in aliases.items():
            self.replaces.setdefault(name, key)  # PEFT's own ``X.weight`` wins when both are saved
        for module, got in parts.items():
            emb = "lora_embedding_A" in got or "lora_embedding_B" in got
            a, b = (got.get("lora_embedding_A"), got.get("lora_embedding_B")) if emb else (got.get("lora_A.weight"),
                                                                                             got.get("lora_B.weight"))
            if a is None or b is None:
                raise ValueError(f"{label} ({self.path}): {module} has only one of its LoRA A/B matrices")
            r = self.files.spec(a).shape[0 if not emb else 0]
            self.lora[f"{module}.weight"] = LoraTarget(f"{module}.weight", a, b, self._scaling(module, r), emb,
                                                       got.get("lora_B.bias"))

    def _scaling(self, module: str, r: int) -> float:
        c = self.config
        rank = _pattern(c.get("rank_pattern") or {}, module, c.get("r", r))
        alpha = _pattern(c.get("alpha_pattern") or {}, module, c.get("lora_alpha", rank))
        if rank != r:
            raise ValueError(f"{self.label} ({self.path}): adapter_config says r={rank} for {module} but its lora_A "
                             f"has {r} rows")
        return alpha / math.sqrt(rank) if c.get("use_rslora") else alpha / rank

    def vocab_rows(self) -> dict[str, int]:
        """Rows of the vocabulary tensors this adapter replaces."""
        return {n: self.files.spec(self.replaces[n]).shape[0] for n in VOCAB_TENSORS if n in self.replaces}

    def read(self, key: str) -> torch.Tensor:
        return self.files.read(key)

    def has_tokenizer(self) -> bool:
        return any((self.path / f).is_file() for f in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"))

    def close(self) -> None:
        self.files.close()


def _pattern(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's rank/alpha pattern lookup: the first key matching the end of the module name."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def lora_delta(adapter: LoraAdapter, target: LoraTarget) -> torch.Tensor:
    """``(B @ A) · scaling`` in fp32, as PEFT computes it (``.T`` for an embedding LoRA)."""
    a = adapter.read(target.a_key).float()
    b = adapter.read(target.b_key).float()
    d = b @ a
    if target.embedding:
        d = d.T
    return d * target.scaling


# -------------------------------------------------------------------------------- merge ----


@dataclass
class MergeResult:
    """What :func:`merge_lora` wrote."""

    out: str
    tensors: int
    shards: int
    bytes: int
    dtype: str
    adapters: list[dict[str, Any]]
    lora_merged: int
    replaced: int
    vocab_size_before: int | None
    vocab_size_after: int | None
    tokenizer_from: str | None
    tokenizer_size: int | None
    resumed_shards: int
    logits: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        vocab = (f"; vocabulary {self.vocab_size_before} → {self.vocab_size_after}"
                 if self.vocab_size_before != self.vocab_size_after else "")
        logits = (f"; logits equal base+adapter within {self.logits['max_abs_diff']:.2e}" if self.logits else "")
        resumed = f", {self.resumed_shards} shard(s) reused from an interrupted run" if self.resumed_shards else ""
        return (f"merged {len(self.adapters)} adapter(s) ({self.lora_merged} LoRA weights, {self.replaced} replaced "
                f"from modules_to_save) into {self.tensors} tensors, {self.bytes / 1e9:.2f} GB {self.dtype} → {self.out} "
                f"in {self.seconds:.1f} s{vocab}{logits}{resumed}")


def tokenizer_size(folder: str | os.PathLike) -> int | None:
    """``len(AutoTokenizer.from_pretrained(folder))`` (local files, no remote code), or ``None``
    when the folder has no tokenizer."""
    folder = Path(folder)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # a broken tokenizer folder: say so in one line
        first = (str(exc).splitlines() or [""])[0][:150]
        raise ValueError(f"{folder}: cannot load its tokenizer ({type(exc).__name__}: {first})") from None
    return len(tok)


def _plan_vocab(base: ModelFiles, adapters: list[LoraAdapter],
                names: list[str]) -> tuple[dict[str, tuple[tuple[int, ...], str]], dict[str, int]]:
    """Rows (and where they come from) of the vocabulary tensors after each adapter; refuses
    embeddings and LM head of different sizes and LoRA/replacement shapes that do not fit."""
    shapes = {n: (base.spec(n).shape, "BASE") for n in names}
    for ad in adapters:
        for name, key in ad.replaces.items():
            if name not in shapes:
                raise ValueError(f"{ad.label} ({ad.path}): modules_to_save tensor {name} is not in the base model")
            new = ad.files.spec(key).shape
            old, src = shapes[name]
            if name in VOCAB_TENSORS:
                if new[1:] != old[1:]:
                    raise ValueError(f"tensor {name}: {ad.label} ({ad.path}) has shape {list(new)}, {src} has {list(old)}")
            elif new != old:
                raise ValueError(f"tensor {name}: {ad.label} ({ad.path}) modules_to_save has shape {list(new)} but "
                                 f"{src} has {list(old)}")
            shapes[name] = (new, ad.label)
        present = [n for n in VOCAB_TENSORS if n in shapes]
        if len(present) == 2 and shapes[EMBED][0][0] != shapes[HEAD][0][0]:
            (e, es), (h, hs) = shapes[EMBED], shapes[HEAD]
            raise ValueError(f"after {ad.label} ({ad.path}): {EMBED} has {e[0]} rows (from {es}) but {HEAD} has {h[0]} "
                             f"(from {hs}) — an adapter that changes the vocabulary must carry both in modules_to_save")
        for name, t in ad.lora.items():
            if name not in shapes:
                raise ValueError(f"{ad.label} ({ad.path}): LoRA target {name} is not in the base model")
            shape, src = shapes[name]
            a, b = ad.files.spec(t.a_key).shape, ad.files.spec(t.b_key).shape
            want = (b[0], a[1]) if not t.embedding else (a[1], b[0])
            if tuple(shape) != want:
                raise ValueError(f"tensor {name}: {ad.label} ({ad.path}) LoRA A {list(a)} / B {list(b)} make a "
                                 f"{list(want)} update but the weight is {list(shape)} (from {src})"
                                 + (" — vocabulary sizes differ" if name in VOCAB_TENSORS else ""))
    return shapes, {n: shapes[n][0][0] for n in VOCAB_TENSORS if n in shapes}


def merge_lora(base: str | os.PathLike, adapters: str | os.PathLike | Sequence[str | os.PathLike],
               out: str | os.PathLike, *, dtype: str | None = None, check_tokenizer: bool = True, verify_logits: bool = False,
               max_shard_size: int | str = DEFAULT_SHARD_BYTES, block_bytes: int = BLOCK_BYTES, overwrite: bool = False,
               progress: bool = True) -> MergeResult:
    """Merge one or more LoRA adapters (in order) into ``base``, writing ``out`` (sharded
    safetensors + index, config with the merged ``vocab_size``, tokenizer, manifest, SHA256SUMS).

    ``dtype``: the merged model's dtype (default the base's; the base is loaded in it before
    merging, as ``from_pretrained(dtype=...)`` + PEFT would). ``check_tokenizer``: refuse a
    tokenizer whose size differs from the merged vocabulary. ``verify_logits``: afterwards run
    :func:`verify_merge` (loads base, adapters and merged model whole). ``base`` may be
    safetensors or legacy ``pytorch_model-*.bin``; adapters ``adapter_model.safetensors`` or
    ``.bin``. Resumes an interrupted run into the same ``out``."""
    t0 = time.perf_counter()
    paths = [adapters] if isinstance(adapters, (str, os.PathLike)) else list(adapters)
    if not paths:
        raise ValueError("merge_lora needs at least one adapter")
    max_bytes = parse_size(max_shard_size)
    ads = [LoraAdapter(p, f"ADAPTER{i + 1}" if len(paths) > 1 else "ADAPTER") for i, p in enumerate(paths)]
    try:
        with ModelFiles(base, "BASE") as B:
            names = [n for n in B.names if not IGNORABLE.fullmatch(n)]
            skipped = [n for n in B.names if IGNORABLE.fullmatch(n)]
            v_before = check_config_vocab(B.folder, "BASE", B)
            shapes, vocab = _plan_vocab(B, ads, names)
            v_after = vocab.get(EMBED, v_before)
            tok_src = next((a.path for a in reversed(ads) if a.has_tokenizer()), B.folder)
            tok_size = tokenizer_size(tok_src) if check_tokenizer else None
            if check_tokenizer and tok_size is not None and v_after is not None and tok_size != v_after:
                emb_src = shapes[EMBED][1] if EMBED in shapes else "BASE"
                raise ValueError(f"the tokenizer ({tok_src}) has {tok_size} tokens but the merged {EMBED} has {v_after} rows "
                                 f"(from {emb_src})" + (" — one token apart: a pad token added on one side?"
                                                        if abs(tok_size - v_after) == 1 else "")
                                 + "; pass the matching tokenizer, or check_tokenizer=False (--no-tokenizer-check) "
                                 "for a vocabulary padded on purpose")
            out_dtype = parse_dtype(dtype) if dtype is not None else None
            specs = [TensorSpec(n, out_dtype or B.spec(n).dtype, tuple(shapes[n][0])) for n in names]
            plans = plan_shards(specs, max_bytes)
            fp = {"op": "merge-lora", "base": fingerprint_files(B.files),
                  "adapters": [fingerprint_files([a.files.path, a.path / "adapter_config.json"]) for a in ads],
                  "dtype": dtype, "max_shard_bytes": max_bytes}
            with ReleaseOutput(out, producer="knowlm weights merge-lora", fingerprint=fp, overwrite=overwrite,
                               protected=[B.path, *[a.path for a in ads]]) as o, \
                    ThreadPoolExecutor(1) as pool, ThreadPoolExecutor(1) as matmul:

                bufs = [BlockBuffer()]

                def produce(plan: ShardPlan, advance) -> dict[str, Any]:
                    tensors = {}
                    order = [s.name for s in plan.tensors]
                    pending = {}  # the next tensor's LoRA deltas are computed while this one is written

                    def prefetch(i: int) -> None:
                        if i < len(order) and order[i] not in pending:
                            pending[order[i]] = matmul.submit(_deltas, order[i], ads)

                    with ShardWriter(o.work / plan.file, plan) as w:
                        for i, spec in enumerate(plan.tensors):
                            prefetch(i)
                            prefetch(i + 1)
                            deltas = pending.pop(spec.name).result()
                            h, total = tensor_hasher(spec), 0.0
                            for block in _merged_blocks(spec, B, ads, block_bytes, bufs, deltas):
                                job = pool.submit(h.update, as_bytes(block))
                                total += block_sum(block)
                                w.write(spec.name, block)
                                job.result()
                                advance(block.numel() * block.element_size())
                            del deltas
                            tensors[spec.name] = tensor_entry(spec, h.hexdigest(), total)
                    return {"files": {plan.file: w.sha256}, "tensors": tensors}

                with torch_threads(1):
                    records = o.run(plans, produce, progress=progress, desc="merge-lora")
                tensors, files = {}, {}
                for plan in plans:
                    tensors.update(records[plan.file]["tensors"])
                    files.update(records[plan.file]["files"])
                write_index(o.work, plans)
                o.copy_side_files(B.folder, names=("config.json", "generation_config.json"))
                o.copy_side_files(tok_src, names=TOKENIZER_FILES)
                _write_config(o.work, v_after, out_dtype)
                man = new_manifest("model", "knowlm weights merge-lora")
                man["tensors"] = {n: tensors[n] for n in names}
                man["shards"] = [p.to_dict() for p in plans]
                man["files"] = files
                man["total_sum"] = sum(e["sum"] for e in man["tensors"].values())
                man["vocab_size"] = v_after
                man["adapters"] = [str(a.path) for a in ads]
                write_manifest(o.work, man)
                _write_sums(o.work, files)
                resumed = len(o.resumed)
                o.finish()
        info = [{"path": str(a.path), "lora_tensors": len(a.lora), "replaced": sorted(a.replaces),
                 "r": a.config.get("r"), "lora_alpha": a.config.get("lora_alpha")} for a in ads]
        result = MergeResult(str(o.out), len(names), len(plans), sum(p.nbytes for p in plans), _dtypes(specs), info,
                             sum(len(a.lora) for a in ads), sum(len(a.replaces) for a in ads), v_before, v_after,
                             str(tok_src), tok_size, resumed, None, skipped)
    finally:
        for a in ads:
            a.close()
    if verify_logits:
        result.logits = verify_merge(base, paths, out, dtype=dtype).to_dict()
    result.seconds = time.perf_counter() - t0
    return result


def _first_source(name: str, ads: list[LoraAdapter]) -> int:
    """Index of the last adapter that replaces ``name`` whole (modules_to_save, base_layer); -1: the base."""
    return max((i for i, a in enumerate(ads) if name in a.replaces), default=-1)


def _deltas(name: str, ads: list[LoraAdapter]) -> list[torch.Tensor]:
    """The fp32 LoRA deltas merged into ``name``, in order: the replacing adapter's own and later ones."""
    after = [a for a in ads[max(_first_source(name, ads), 0):] if name in a.lora]
    if any(a.lora[name].bias_key for a in after):
        raise ValueError(f"tensor {name}: LoRA bias (lora_bias=True) is merged into the bias tensor, not the weight; "
                         "this streamed merge does not support it yet")
    return [lora_delta(a, a.lora[name]) for a in after]


def _merged_blocks(spec: TensorSpec, B: ModelFiles, ads: list[LoraAdapter], block_bytes: int,
                   bufs: list[BlockBuffer] | None = None, deltas: list[torch.Tensor] | None = None):
    """Blocks of rows of the merged tensor ``spec.name`` in ``spec.dtype`` (views of ``bufs``,
    valid until the next block, when given). ``deltas``: :func:`_deltas`, when already computed."""
    name, dt = spec.name, spec.dtype
    start_at = _first_source(name, ads)
    deltas = _deltas(name, ads) if deltas is None else deltas
    files, key = (B, name) if start_at < 0 else (ads[start_at].files, ads[start_at].replaces[name])
    src = files.spec(key)
    bufs = bufs or [BlockBuffer()]
    for a, b in row_blocks(spec, block_bytes):
        w = files.read(key, a, b, bufs[0].view(src, a, b))
        if w.dtype != dt:
            w = w.to(dt)
        for d in deltas:  # PEFT: weight += (B @ A) · scaling, the delta in fp32
            if dt == torch.float32:
                w.add_(d[a:b])  # w is our buffer (or a fresh cast): in place, the same op as PEFT's +=
            else:
                w = (w.float() + d[a:b]).to(dt)
        yield w


def _write_config(folder: Path, vocab: int | None, dtype: torch.dtype | None) -> None:
    cfg = read_config(folder)
    if cfg is None:
        return
    if vocab is not None:
        if "vocab_size" in cfg or "text_config" not in cfg:
            cfg["vocab_size"] = vocab
        else:
            cfg["text_config"]["vocab_size"] = vocab
    if dtype is not None:
        for key in ("torch_dtype", "dtype"):
            if key in cfg:
                cfg[key] = dtype_name(dtype)
    write_json_atomic(folder / "config.json", cfg)


# ------------------------------------------------------------------------------- logits ----


@dataclass
class LogitCheck:
    """Merged vs base + adapter (PEFT, unmerged) logits on ``prompts``."""

    prompts: int
    tokens: int
    max_abs_diff: float
    max_abs_logit: float
    tolerance: float
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_merge(base: str | os.PathLike, adapters: str | os.PathLike | Sequence[str | os.PathLike],
                 merged: str | os.PathLike, *, prompts: Sequence[str] = DEFAULT_PROMPTS, dtype: str | None = None,
                 rtol: float | None = None, raise_on_mismatch: bool = True) -> LogitCheck:
    """Compare the merged model's logits with base + adapters run by PEFT (earlier adapters merged,
    the last one live) on ``prompts`` (tokenized with the merged folder's tokenizer) plus a
    sequence of the vocabulary's last ids (rows an extended vocabulary added). The tolerance is
    ``rtol × max(1, max |logit|)`` with ``rtol`` 1e-4 in fp32, 1e-2 in fp16, 5e-2 in bf16 by
    default: merging changes the order of float operations, never more. Loads every model whole."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    paths = [adapters] if isinstance(adapters, (str, os.PathLike)) else list(adapters)
    dt = parse_dtype(dtype) if dtype is not None else "auto"
    with ModelFiles(base) as files:
        kind = files.kind
    ref = AutoModelForCausalLM.from_pretrained(str(base), dtype=dt, local_files_only=True, trust_remote_code=False,
                                               use_safetensors=kind == "safetensors").eval()
    for i, p in enumerate(paths):
        ad = LoraAdapter(p)
        rows = ad.vocab_rows().get(EMBED)
        ad.close()
        if rows is not None and rows != ref.get_input_embeddings().weight.shape[0]:
            ref.resize_token_embeddings(rows, mean_resizing=False)
        ref = PeftModel.from_pretrained(ref, str(p), local_files_only=True).eval()
        if i < len(paths) - 1:
            ref = ref.merge_and_unload()
    new = AutoModelForCausalLM.from_pretrained(str(merged), dtype=dt, local_files_only=True, trust_remote_code=False,
                                               use_safetensors=True).eval()
    vocab = new.get_input_embeddings().weight.shape[0]
    seqs = []
    tok_dir = Path(merged)
    if tokenizer_size(tok_dir) is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True, trust_remote_code=False)
        seqs = [tok(p)["input_ids"] for p in prompts]
    seqs.append(list(range(max(0, vocab - 16), vocab)))
    worst, scale, ntok = 0.0, 0.0, 0
    with torch.no_grad():
        for ids in seqs:
            x = torch.tensor([ids])
            a = ref(input_ids=x).logits.float()
            b = new(input_ids=x).logits.float()
            worst = max(worst, float((a - b).abs().max()))
            scale = max(scale, float(a.abs().max()))
            ntok += len(ids)
    if rtol is None:
        rtol = {torch.float16: 1e-2, torch.bfloat16: 5e-2}.get(new.dtype, 1e-4)
    tol = rtol * max(1.0, scale)
    check = LogitCheck(len(seqs), ntok, worst, scale, tol, worst <= tol)
    if raise_on_mismatch and not check.ok:
        raise ValueError(f"the merged model's logits differ from base + adapter by {worst:.3g} (tolerance {tol:.3g}) — "
                         f"the merge is wrong for {merged}")
    return check


__all__ = ["merge_lora", "verify_merge", "MergeResult", "LogitCheck", "LoraAdapter", "lora_delta", "tokenizer_size",
           "DEFAULT_PROMPTS"]
