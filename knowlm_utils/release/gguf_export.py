"""Export a LLaMA model folder to GGUF (llama.cpp's file format) and check it with gguf's reader.

``export_gguf(model_dir, "model-f16.gguf")`` writes the ``llama`` architecture with the
``gguf`` package (the writer llama.cpp's own converter uses), one tensor at a time:

* tensor names mapped by gguf's table (``model.layers.0.self_attn.q_proj.weight`` →
  ``blk.0.attn_q.weight``, ``lm_head.weight`` → ``output.weight`` …);
* ``q_proj``/``k_proj`` rows put back in the interleaved rotary order llama.cpp expects
  (Hugging Face's conversion of Meta's checkpoints split each head's rotary pairs into halves);
* 2-D weights in f16 or f32, 1-D norm weights always f32 (as llama.cpp stores them);
* hyper-parameters from ``config.json`` and, when the folder has a SentencePiece
  ``tokenizer.model``, its pieces, scores and types plus added tokens, padded with ``[PADn]``
  entries up to the embedding rows (an extended vocabulary keeps its ids).

:func:`check_gguf` reads the file back with ``gguf.GGUFReader`` and compares every tensor's type,
shape and bytes with what the export should have written, plus the vocabulary size and layer count.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..fileio import fsync_dir, temp_file_beside
from .tensors import IGNORABLE, ModelFiles, read_config

GGUF_DTYPES = {"f16": torch.float16, "f32": torch.float32}


def _hparams(cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
    if cfg is None:
        raise ValueError(f"{folder}: no config.json (GGUF needs the model's hyper-parameters)")
    arch = (cfg.get("architectures") or ["?"])[0]
    if cfg.get("model_type") not in (None, "llama") and "Llama" not in arch:
        raise ValueError(f"{folder}: model_type {cfg.get('model_type')!r} — this export writes LLaMA models only")
    try:
        h = {k: int(cfg[k]) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                      "vocab_size")}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{folder}/config.json: missing or invalid {exc}") from None
    h["num_key_value_heads"] = int(cfg.get("num_key_value_heads") or h["num_attention_heads"])
    h["head_dim"] = int(cfg.get("head_dim") or h["hidden_size"] // h["num_attention_heads"])
    h["max_position_embeddings"] = int(cfg.get("max_position_embeddings", 2048))
    h["rms_norm_eps"] = float(cfg.get("rms_norm_eps", 1e-6))
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    h["rope_theta"] = float(cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0)
    return h


def gguf_tensor(name: str, t: torch.Tensor, h: dict[str, Any], dtype: torch.dtype) -> np.ndarray:
    """The array the export writes for HF tensor ``name``: q/k rows interleaved for llama.cpp's
    rotary layout, 1-D tensors in f32, everything else in ``dtype``."""
    if name.endswith("self_attn.q_proj.weight"):
        t = interleave_rotary(t, h["num_attention_heads"])
    elif name.endswith("self_attn.k_proj.weight"):
        t = interleave_rotary(t, h["num_key_value_heads"])
    t = t.to(torch.float32 if t.dim() <= 1 else dtype).contiguous()
    return t.numpy()


def interleave_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Hugging Face's rotary layout (per head: all first halves, then all second halves) back to
    Meta's/llama.cpp's (pairs side by side)."""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _names(model: ModelFiles, n_layers: int) -> dict[str, str]:
    import gguf

    table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    out = {}
    for name in model.names:
        if IGNORABLE.fullmatch(name):
            continue
        mapped = table.get_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise ValueError(f"{model.path}: tensor {name} has no GGUF name for the llama architecture")
        out[name] = mapped
    return out


def _vocab(folder: Path, rows: int, cfg: dict[str, Any]) -> dict[str, Any] | None:
    """Tokens, scores, types and special ids from ``tokenizer.model`` (+ added tokens)."""
    sp_file = folder / "tokenizer.model"
    if not sp_file.is_file():
        return None
    from ..spm import load_proto

    proto = load_proto(sp_file)
    tokens = [p.piece for p in proto.pieces]
    scores = [float(p.score) for p in proto.pieces]
    types = [int(p.type) for p in proto.pieces]
    added: dict[int, dict[str, Any]] = {}  # tokens the HF files add after the SentencePiece pieces
    tj, tc = folder / "tokenizer.json", folder / "tokenizer_config.json"
    if tj.is_file():
        for entry in json.loads(tj.read_text("utf-8")).get("added_tokens") or []:
            added[int(entry["id"])] = entry
    if tc.is_file():
        for k, entry in (json.loads(tc.read_text("utf-8")).get("added_tokens_decoder") or {}).items():
            added.setdefault(int(k), entry)
    for i in sorted(added):
        if i < len(tokens):
            continue
        while len(tokens) < i:
            tokens.append(f"[PAD{len(tokens)}]"), scores.append(-1000.0), types.append(4)
        entry = added[i]
        tokens.append(entry["content"]), scores.append(-1000.0), types.append(3 if entry.get("special") else 4)
    if len(tokens) > rows:
        raise ValueError(f"{folder}: the tokenizer has {len(tokens)} tokens but the embeddings only {rows} rows")
    while len(tokens) < rows:
        tokens.append(f"[PAD{len(tokens)}]"), scores.append(-1000.0), types.append(4)
    ts = proto.trainer_spec
    ids = {"bos": ts.bos_id, "eos": ts.eos_id, "unk": ts.unk_id, "pad": ts.pad_id}
    for key in ids:
        if isinstance(cfg.get(f"{key}_token_id"), int):
            ids[key] = cfg[f"{key}_token_id"]
    return {"tokens": tokens, "scores": scores, "types": types,
            "ids": {k: v for k, v in ids.items() if v is not None and v >= 0}}


@dataclass
class GGUFCheck:
    """What :func:`check_gguf` compared."""

    path: str
    tensors: int
    checked: int
    mismatches: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.checked == self.tensors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class GGUFResult:
    """What :func:`export_gguf` wrote."""

    out: str
    tensors: int
    bytes: int
    dtype: str
    vocab_tokens: int | None
    check: dict[str, Any] | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        check = (f"; read back with gguf.GGUFReader: {self.check['checked']}/{self.check['tensors']} tensors identical"
                 if self.check else "")
        vocab = f", tokenizer of {self.vocab_tokens} tokens" if self.vocab_tokens else ", no tokenizer.model (weights only)"
        return (f"wrote {self.out}: {self.tensors} tensors, {self.bytes / 1e9:.2f} GB ({self.dtype}){vocab} in "
                f"{self.seconds:.1f} s{check}")


def export_gguf(model_dir: str | os.PathLike, out_file: str | os.PathLike, *, dtype: str = "f16", verify: bool = True,
                overwrite: bool = False, progress: bool = True) -> GGUFResult:
    """Write ``model_dir`` (a LLaMA folder: safetensors or ``.bin``) as one GGUF file (atomically:
    a temp file renamed into place). ``dtype``: ``"f16"`` or ``"f32"`` for 2-D weights.
    ``verify``: read it back (:func:`check_gguf`) and refuse on any difference."""
    import gguf

    t0 = time.perf_counter()
    if dtype not in GGUF_DTYPES:
        raise ValueError(f"GGUF dtype must be one of {sorted(GGUF_DTYPES)}, got {dtype!r}")
    tdtype = GGUF_DTYPES[dtype]
    out = Path(out_file)
    if out.is_dir():
        raise ValueError(f"{out} is a folder; give the .gguf file's name")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite (overwrite=True) to replace it")
    folder = Path(model_dir)
    cfg = read_config(folder)
    h = _hparams(cfg, folder)
    with ModelFiles(folder, "MODEL") as model:
        names = _names(model, h["num_hidden_layers"])
        rows = model.spec("model.embed_tokens.weight").shape[0]
        if rows != h["vocab_size"]:
            raise ValueError(f"{folder}: config.json says vocab_size {h['vocab_size']} but model.embed_tokens.weight has "
                             f"{rows} rows")
        vocab = _vocab(folder, rows, cfg)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file_beside(out)
        os.close(fd)
        try:
            w = gguf.GGUFWriter(tmp, "llama")
            w.add_name(folder.resolve().name)
            w.add_context_length(h["max_position_embeddings"])
            w.add_embedding_length(h["hidden_size"])
            w.add_block_count(h["num_hidden_layers"])
            w.add_feed_forward_length(h["intermediate_size"])
            w.add_head_count(h["num_attention_heads"])
            w.add_head_count_kv(h["num_key_value_heads"])
            w.add_rope_dimension_count(h["head_dim"])
            w.add_rope_freq_base(h["rope_theta"])
            w.add_layer_norm_rms_eps(h["rms_norm_eps"])
            w.add_vocab_size(rows)
            w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
            if vocab is not None:
                w.add_tokenizer_model("llama")
                w.add_token_list(vocab["tokens"])
                w.add_token_scores(vocab["scores"])
                w.add_token_types(vocab["types"])
                for key, fn in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id), ("unk", w.add_unk_token_id),
                                ("pad", w.add_pad_token_id)):
                    if key in vocab["ids"]:
                        fn(vocab["ids"][key])
            nbytes = 0
            for name, gname in names.items():
                spec = model.spec(name)
                item = 4 if len(spec.shape) <= 1 or tdtype == torch.float32 else 2
                np_dtype = np.float32 if item == 4 else np.float16
                w.add_tensor_info(gname, spec.shape, np.dtype(np_dtype), spec.numel * item)
                nbytes += spec.numel * item
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            with tqdm(total=nbytes, unit="B", unit_scale=True, desc="gguf", disable=not progress) as bar:
                for name in names:
                    arr = gguf_tensor(name, model.read(name), h, tdtype)
                    w.write_tensor_data(arr)
                    bar.update(arr.nbytes)
            w.close()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, out)
            fsync_dir(out.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    check = None
    if verify:
        c = check_gguf(out, folder, dtype=dtype)
        if not c.ok:
            raise ValueError(f"{out}: read back with gguf.GGUFReader, {len(c.mismatches)} tensor(s) differ: "
                             f"{'; '.join(c.mismatches[:3])}")
        check = c.to_dict()
    return GGUFResult(str(out), len(names), nbytes, dtype, len(vocab["tokens"]) if vocab else None, check,
                      time.perf_counter() - t0)


def check_gguf(gguf_file: str | os.PathLike, model_dir: str | os.PathLike, *, dtype: str = "f16") -> GGUFCheck:
    """Read ``gguf_file`` with ``gguf.GGUFReader`` and compare every tensor (type, shape, bytes)
    with what :func:`export_gguf` writes for ``model_dir``; also the architecture, layer count
    and vocabulary size. Returns a :class:`GGUFCheck` (``ok`` when all match)."""
    import gguf

    folder = Path(model_dir)
    h = _hparams(read_config(folder), folder)
    tdtype = GGUF_DTYPES[dtype]
    try:
        reader = gguf.GGUFReader(str(gguf_file))
    except (ValueError, OSError) as exc:
        raise ValueError(f"{gguf_file}: gguf cannot read it ({exc})") from None
    tensors = {t.name: t for t in reader.tensors}

    def field_value(key: str) -> Any:
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    meta = {"architecture": field_value("general.architecture"), "block_count": field_value("llama.block_count"),
            "vocab_size": field_value("llama.vocab_size"), "tokens": len(field_value("tokenizer.ggml.tokens") or [])}
    mismatches = []
    if meta["architecture"] != "llama":
        mismatches.append(f"general.architecture is {meta['architecture']!r}")
    if meta["block_count"] != h["num_hidden_layers"]:
        mismatches.append(f"llama.block_count is {meta['block_count']}, config has {h['num_hidden_layers']}")
    checked = 0
    with ModelFiles(folder, "MODEL") as model:
        names = _names(model, h["num_hidden_layers"])
        if meta["vocab_size"] != model.spec("model.embed_tokens.weight").shape[0]:
            mismatches.append(f"llama.vocab_size is {meta['vocab_size']}")
        extra = sorted(set(tensors) - set(names.values()))
        if extra:
            mismatches.append(f"unexpected tensor(s) {extra[:3]}")
        for name, gname in names.items():
            rt = tensors.get(gname)
            if rt is None:
                mismatches.append(f"{gname} ({name}) missing")
                continue
            want = gguf_tensor(name, model.read(name), h, tdtype)
            want_type = gguf.GGMLQuantizationType.F32 if want.dtype == np.float32 else gguf.GGMLQuantizationType.F16
            got = np.asarray(rt.data)
            if rt.tensor_type != want_type:
                mismatches.append(f"{gname}: type {rt.tensor_type.name}, expected {want_type.name}")
            elif tuple(int(x) for x in reversed(rt.shape)) != tuple(want.shape):
                mismatches.append(f"{gname}: shape {list(reversed(rt.shape.tolist()))}, expected {list(want.shape)}")
            elif not np.array_equal(got.reshape(-1).view(np.uint8), want.reshape(-1).view(np.uint8)):
                mismatches.append(f"{gname} ({name}): data differs")
            else:
                checked += 1
    return GGUFCheck(str(gguf_file), len(names), checked, mismatches, meta)


__all__ = ["export_gguf", "check_gguf", "GGUFResult", "GGUFCheck", "interleave_rotary", "gguf_tensor"]
