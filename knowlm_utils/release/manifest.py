"""Canonical tensor hashes and the release manifest (``knowlm-release.json``).

Why not hash files: a ``pytorch_model-*.bin`` is a pickle whose bytes depend on the torch
version that wrote it, the shard layout and the order of the state dict, so a published MD5 of a
recovered or merged model fails for reasons that have nothing to do with the weights — the most
common complaint about released weight diffs. A tensor's hash here depends on the tensor only::

    sha256( b"knowlm-tensor/1\\n"
          + JSON {"dtype": "F32", "name": NAME, "shape": [..]} (sorted keys, no spaces) + b"\\n"
          + its elements' bytes, C order, little-endian )

(dtype codes are safetensors'). Anyone can recompute it with numpy; it is streamed block by
block (:func:`tensor_hasher`), so hashing a tensor never needs a second copy of it.

The manifest, written into every folder ``knowlm weights`` produces::

    {"format": "knowlm-release", "version": 1, "kind": "model" | "diff", "producer": ...,
     "tensors": {NAME: {"dtype", "shape", "sha256", "sum"}},   # the model (for a diff: the tuned model)
     "shards":  [{"file", "tensors": [NAME, ...]}],            # the model's shard layout
     "files":   {FILE: sha256},                                # this folder's safetensors files
     # kind "diff" only:
     "diff":    {NAME: {"inexact", "fixups", "fixups_file"}},  # elements stored exactly in fixups/
     "recovered_files": {FILE: sha256},                        # what `recover` writes, byte for byte
     "vocab_size", "total_sum", "inexact_elements", "hash": <the definition above>}
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..fileio import write_json_atomic
from .naming import MANIFEST_NAME
from .tensors import ST_CODES, ModelFiles, TensorSpec, as_bytes, few_names, parse_dtype

FORMAT, VERSION = "knowlm-release", 1
HASH_DEFINITION = ('sha256(b"knowlm-tensor/1\\n" + json({"dtype","name","shape"}, sorted keys, compact) + b"\\n" + '
                   "little-endian C-order bytes)")
BLOCK_BYTES = 64 << 20


def tensor_hasher(spec: TensorSpec):
    """A ``hashlib.sha256`` primed with ``spec``'s name, dtype and shape; feed it the tensor's bytes
    (:func:`~knowlm_utils.release.tensors.as_bytes`) block by block, in order."""
    h = hashlib.sha256(b"knowlm-tensor/1\n")
    meta = {"dtype": ST_CODES[spec.dtype], "name": spec.name, "shape": list(spec.shape)}
    h.update(json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n")
    return h


def hash_tensor(name: str, tensor: torch.Tensor) -> str:
    """The canonical SHA-256 of one tensor (see the module docstring)."""
    h = tensor_hasher(TensorSpec(name, tensor.dtype, tuple(tensor.shape)))
    h.update(as_bytes(tensor))
    return h.hexdigest()


def block_sum(block: torch.Tensor) -> float:
    """Sum of a block's elements as a Python float (fp32 accumulation for half types)."""
    if not block.is_floating_point():
        return float(block.sum())
    if block.dtype in (torch.float16, torch.bfloat16):
        return float(torch.sum(block, dtype=torch.float32))
    return float(block.sum())


def tensor_entry(spec: TensorSpec, sha256: str, total: float | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"dtype": str(spec.dtype).removeprefix("torch."), "shape": list(spec.shape), "sha256": sha256}
    if total is not None:
        entry["sum"] = total
    return entry


def spec_of(name: str, entry: dict[str, Any]) -> TensorSpec:
    return TensorSpec(name, parse_dtype(entry["dtype"]), tuple(int(s) for s in entry["shape"]))


def new_manifest(kind: str, producer: str) -> dict[str, Any]:
    from .. import __version__

    return {"format": FORMAT, "version": VERSION, "kind": kind, "producer": producer,
            "knowlm_course_version": __version__, "torch_version": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "hash": HASH_DEFINITION}


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of ``folder`` (``None`` when it has none); a malformed one is an error."""
    path = Path(folder) / MANIFEST_NAME if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{path}: not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest")
    if data.get("version") != VERSION:
        raise ValueError(f"{path}: manifest version {data.get('version')!r} is not supported (this code reads {VERSION})")
    if data.get("kind") not in ("model", "diff") or not isinstance(data.get("tensors"), dict):
        raise ValueError(f"{path}: manifest has no valid 'kind' and 'tensors'")
    for name, entry in data["tensors"].items():
        try:
            spec_of(name, entry)
            str(entry["sha256"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: manifest entry of tensor {name} is malformed") from None
    return data


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    path = Path(folder) / MANIFEST_NAME
    write_json_atomic(path, manifest)
    return path


@dataclass
class VerifyReport:
    """What :func:`verify_model` checked: ``tensors`` hashed and found equal to the manifest."""

    folder: str
    kind: str
    tensors: int
    bytes: int
    seconds: float
    total_sum: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        what = "files of a diff of" if self.kind == "diff" else ""
        return (f"{self.folder}: the {what} {self.tensors} tensors ({self.bytes / 1e9:.2f} GB) match the manifest "
                f"in {self.seconds:.1f} s").replace("the  ", "")


def hash_model(model: ModelFiles, names: list[str] | None = None, *, block_bytes: int = BLOCK_BYTES,
               progress: bool = True) -> dict[str, tuple[str, float]]:
    """``{name: (sha256, sum)}`` of the tensors of ``model`` (all by default), streamed."""
    from .tensors import BlockBuffer

    names = model.names if names is None else names
    buf = BlockBuffer()
    out = {}
    with tqdm(total=sum(model.spec(n).nbytes for n in names), unit="B", unit_scale=True, desc="hash",
              disable=not progress) as bar:
        for name in names:
            spec = model.spec(name)
            h, total = tensor_hasher(spec), 0.0
            for _, _, block in model.blocks(name, block_bytes, buf):
                h.update(as_bytes(block))
                total += block_sum(block)
                bar.update(block.numel() * block.element_size())
            out[name] = (h.hexdigest(), total)
    return out


def make_manifest(model_dir: str | os.PathLike, out_file: str | os.PathLike | None = None, *,
                  progress: bool = True) -> dict[str, Any]:
    """A ``kind: model`` manifest of any model folder (safetensors or legacy ``.bin``): every
    tensor's canonical hash and sum, the safetensors files' SHA-256 (pickles are left out: their
    bytes depend on the torch version). Written to ``out_file`` when given; returned."""
    from .checksums import file_sha256

    with ModelFiles(model_dir, "MODEL") as model:
        hashes = hash_model(model, progress=progress)
        man = new_manifest("model", "knowlm weights manifest")
        man["tensors"] = {n: tensor_entry(model.spec(n), h, s) for n, (h, s) in hashes.items()}
        man["total_sum"] = sum(s for _, s in hashes.values())
        if model.kind == "safetensors" and model.folder == Path(model_dir):
            man["files"] = {f.name: file_sha256(f) for f in model.files}
    if out_file is not None:
        write_json_atomic(out_file, man)
    return man


def verify_model(model_dir: str | os.PathLike, manifest: dict[str, Any] | str | os.PathLike | None = None, *,
                 block_bytes: int = BLOCK_BYTES, progress: bool = True) -> VerifyReport:
    """Hash every tensor of ``model_dir`` and compare with its manifest (``model_dir``'s own
    ``knowlm-release.json`` unless given as a dict or a path). Raises ``ValueError`` naming the
    first tensor that differs, is missing or is not in the manifest. A diff folder is checked
    file by file against the SHA-256 its manifest lists (shards and fixups)."""
    from .checksums import file_sha256

    t0 = time.perf_counter()
    if manifest is None or not isinstance(manifest, dict):
        src = model_dir if manifest is None else manifest
        manifest = read_manifest(src)
        if manifest is None:
            raise ValueError(f"{model_dir}: no {MANIFEST_NAME} to verify against")
    kind = manifest["kind"]
    if kind == "diff":
        nbytes = 0
        for rel, sha in manifest.get("files", {}).items():
            p = Path(model_dir) / rel
            if not p.is_file():
                raise ValueError(f"{model_dir}: {rel} is missing (the manifest lists it)")
            if file_sha256(p) != sha:
                raise ValueError(f"{model_dir}: {rel} does not match the manifest (SHA-256) — corrupted or not this release")
            nbytes += p.stat().st_size
        return VerifyReport(str(model_dir), kind, len(manifest.get("diff", {})), nbytes, time.perf_counter() - t0)
    with ModelFiles(model_dir, str(model_dir)) as model:
        expected = {n: e["sha256"] for n, e in manifest["tensors"].items()}
        have = set(model.names)
        missing = sorted(set(expected) - have)
        extra = sorted(have - set(expected))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} tensor(s) the manifest lists ({few_names(missing)})")
            if extra:
                parts.append(f"{len(extra)} tensor(s) the manifest does not list ({few_names(extra)})")
            raise ValueError(f"{model_dir}: " + "; ".join(parts))
        hashes = hash_model(model, list(expected), block_bytes=block_bytes, progress=progress)
        for name, (h, _) in hashes.items():
            if h != expected[name]:
                raise ValueError(f"{model_dir}: tensor {name} ({model.file_of(name).name}) does not match the manifest "
                                 f"(sha256 {h[:12]}…, expected {expected[name][:12]}…) — corrupted or not this release")
        total = sum(s for _, s in hashes.values())
        nbytes = model.total_bytes
    return VerifyReport(str(model_dir), kind, len(hashes), nbytes, time.perf_counter() - t0, total)


__all__ = ["MANIFEST_NAME", "tensor_hasher", "hash_tensor", "block_sum", "read_manifest", "write_manifest",
           "make_manifest", "verify_model", "hash_model", "VerifyReport", "new_manifest", "tensor_entry", "spec_of"]
