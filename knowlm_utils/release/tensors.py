"""Reading the tensors of a model folder one tensor — or one block of rows — at a time.

:class:`ModelFiles` finds a folder's weights the way ``transformers`` does, in this order:

1. ``model.safetensors.index.json`` and its shards; ``model.safetensors``; any other
   ``*.safetensors`` files (shards without an index, ``adapter_model.safetensors``);
2. legacy pickles: ``pytorch_model.bin.index.json`` and its shards, ``pytorch_model.bin``,
   ``pytorch_model-*-of-*.bin`` without an index, ``adapter_model.bin``.

A path to a single ``.safetensors``/``.bin`` file works too.

Safetensors files are read with plain ``pread``-style reads at the offsets of the file's header,
into a buffer the size of the block asked for. Memory-mapping (``safe_open``) would be as fast,
but every page of a mapped file that has been touched stays resident and counts in the
process's RSS until the mapping is closed, so the peak would grow with the shard (1 GiB read
through one ``safe_open`` handle = +1 GiB RSS, measured). Legacy ``.bin`` files are zip
pickles: they are opened with ``torch.load(weights_only=True, mmap=True)`` (never unpickling
anything but tensors), one shard at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from .naming import PICKLE_SUFFIXES, few_names

# safetensors dtype codes <-> torch dtypes
ST_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3": torch.float8_e4m3fn, "I16": torch.int16, "U16": torch.uint16, "F16": torch.float16,
    "BF16": torch.bfloat16, "I32": torch.int32, "U32": torch.uint32, "F32": torch.float32, "F64": torch.float64,
    "I64": torch.int64, "U64": torch.uint64,
}
ST_CODES: dict[torch.dtype, str] = {v: k for k, v in ST_DTYPES.items()}
# order safetensors writes dtypes in (descending); see shards.py
ST_ORDER: dict[str, int] = {code: n for n, code in enumerate(ST_DTYPES)}

DTYPE_NAMES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32, "f32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "f16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}

# buffers older checkpoints saved and newer transformers recompute (never weights)
IGNORABLE = re.compile(r".*\.rotary_emb\.inv_freq$")
# tensor names that carry the vocabulary (rows = tokens)
VOCAB_TENSORS = ("model.embed_tokens.weight", "lm_head.weight")


def parse_dtype(value: Any) -> torch.dtype:
    """A torch float dtype from ``"fp16"``, ``"float32"``, ``"bf16"`` … or a ``torch.dtype``."""
    if isinstance(value, torch.dtype):
        return value
    key = str(value).lower().removeprefix("torch.")
    if key not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {value!r}; use fp32, fp16 or bf16")
    return DTYPE_NAMES[key]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def parse_size(value: int | str) -> int:
    """Bytes from ``1073741824``, ``"2GB"``, ``"500MB"``, ``"1GiB"``."""
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"size must be >= 1 byte, got {value}")
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*", str(value).lower())
    if not m:
        raise ValueError(f"cannot read size {value!r}; write e.g. 2GB, 500MB or 1073741824")
    unit = m.group(2).rstrip("b")
    base = 1024 if unit.endswith("i") else 1000
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit.rstrip("i")]
    size = int(float(m.group(1)) * base ** power)
    if size < 1:
        raise ValueError(f"size must be >= 1 byte, got {value!r}")
    return size


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's name, dtype and shape (what a safetensors header records)."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def rows(self) -> int:
        """Number of blocks along the first axis (a 1-D tensor's elements; 1 for a scalar)."""
        return self.shape[0] if self.shape else 1

    @property
    def row_numel(self) -> int:
        return self.numel // self.rows if self.rows else 0

    def with_dtype(self, dtype: torch.dtype) -> "TensorSpec":
        return TensorSpec(self.name, dtype, self.shape)

    def with_rows(self, rows: int) -> "TensorSpec":
        return TensorSpec(self.name, self.dtype, (rows, *self.shape[1:]))


def row_blocks(spec: TensorSpec, block_bytes: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges of at most ``block_bytes`` (at least one row each)."""
    rows = spec.rows
    per_row = max(1, spec.row_numel * spec.dtype.itemsize)
    step = max(1, block_bytes // per_row)
    if rows == 0:
        yield 0, 0
        return
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run the block-wise element work in ``n`` torch threads (restored afterwards). The streamed
    passes are memory-bound and overlap hashing and writing in other threads; a second torch
    thread only adds synchronisation, which costs most on a busy machine (measured: a 64 MiB add
    5 ms with 1 thread vs 8 ms with 2, a sum 1.6 ms vs 7.6 ms, on 2 cores with another job)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def as_bytes(t: torch.Tensor) -> memoryview:
    """The little-endian C-order bytes of ``t`` (no copy when it is contiguous)."""
    t = t.detach().contiguous().reshape(-1)
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.view(torch.uint8).numpy())


# ------------------------------------------------------------------------------ safetensors ----


class SafetensorsFile:
    """One ``.safetensors`` file: its header parsed and checked, tensors read by byte range."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as fh:
                head = fh.read(8)
                if len(head) < 8:
                    raise ValueError(f"{self.path}: not a safetensors file (only {len(head)} bytes)")
                (n,) = struct.unpack("<Q", head)
                if n > min(size - 8, 100_000_000):
                    raise ValueError(f"{self.path}: not a safetensors file (header length {n} exceeds the file)")
                header = json.loads(fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"{self.path}: not a safetensors file (its header is not JSON)") from None
        if not isinstance(header, dict):
            raise ValueError(f"{self.path}: not a safetensors file (its header is not a JSON object)")
        self.metadata = header.pop("__metadata__", None) or {}
        self.data_start = 8 + n
        self._fd: int | None = None
        self.specs: dict[str, TensorSpec] = {}
        self.offsets: dict[str, int] = {}
        end = 0
        for name, entry in sorted(header.items(), key=lambda kv: _offsets(self.path, kv)[0]):
            try:
                dtype = ST_DTYPES[entry["dtype"]]
                shape = tuple(int(s) for s in entry["shape"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{self.path}: tensor {name}: unsupported or malformed header entry {entry!r}") from None
            begin, stop = _offsets(self.path, (name, entry))
            spec = TensorSpec(name, dtype, shape)
            if begin != end or stop - begin != spec.nbytes:
                raise ValueError(f"{self.path}: tensor {name}: byte range [{begin}, {stop}) does not fit its "
                                 f"{entry['dtype']} {list(shape)} ({spec.nbytes} bytes) — a corrupted header")
            end = stop
            self.specs[name] = spec
            self.offsets[name] = self.data_start + begin
        if self.data_start + end != size:
            raise ValueError(f"{self.path}: the file has {size} bytes but its header describes "
                             f"{self.data_start + end} — truncated or corrupted (download it again)")
        self._fd = os.open(self.path, os.O_RDONLY)  # positional reads: safe to share between threads

    def read(self, name: str, start: int = 0, stop: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``start:stop`` of tensor ``name`` (the whole tensor by default), read into ``out``
        (a contiguous tensor of that shape and dtype, e.g. from :class:`BlockBuffer`) or a new one."""
        spec = self.specs[name]
        stop = spec.rows if stop is None else stop
        shape = (stop - start, *spec.shape[1:]) if spec.shape else ()
        if out is None:
            out = torch.empty(shape, dtype=spec.dtype)
        elif tuple(out.shape) != shape or out.dtype != spec.dtype or not out.is_contiguous():
            raise ValueError(f"{self.path}: {name}: buffer of shape {list(out.shape)} {out.dtype} for {list(shape)} {spec.dtype}")
        nbytes = out.numel() * spec.dtype.itemsize
        if nbytes == 0:
            return out
        offset = self.offsets[name] + start * spec.row_numel * spec.dtype.itemsize
        buf = as_bytes(out)
        if self._fd is None:
            raise ValueError(f"{self.path}: read after close")
        got = 0
        while got < nbytes:
            k = os.preadv(self._fd, [buf[got:]], offset + got)
            if not k:
                raise ValueError(f"{self.path}: tensor {name}: file ends early (truncated)")
            got += k
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # a half-built object or interpreter shutdown
            pass


class BlockBuffer:
    """A reusable byte buffer handing out typed views for blocks of rows, so a streamed pass
    allocates (and page-faults) its working memory once instead of once per block."""

    def __init__(self) -> None:
        self._bytes = torch.empty(0, dtype=torch.uint8)

    def view(self, spec: TensorSpec, start: int, stop: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """An uninitialised tensor for rows ``start:stop`` of ``spec`` (in ``dtype``, default its own)."""
        dtype = dtype or spec.dtype
        shape = (stop - start, *spec.shape[1:]) if spec.shape else ()
        n = (stop - start) * spec.row_numel if spec.shape else 1
        nbytes = n * dtype.itemsize
        if self._bytes.numel() < nbytes:
            self._bytes = torch.empty(nbytes, dtype=torch.uint8)
        return self._bytes[:nbytes].view(dtype).reshape(shape)


def _offsets(path: Path, item: tuple[str, Any]) -> tuple[int, int]:
    name, entry = item
    try:
        a, b = (int(x) for x in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: tensor {name}: header entry has no valid data_offsets") from None
    return a, b


# ----------------------------------------------------------------------------- legacy .bin ----


def load_bin(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A legacy ``pytorch_model*.bin`` state dict: ``torch.load(weights_only=True)`` (only tensors
    and plain containers are unpickled; anything else is refused), memory-mapped when the file is
    in the zip format (torch ≥ 1.6)."""
    path = Path(path)
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc) and "zip" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # pre-zip format: read whole
    except OSError:
        raise
    except Exception as exc:  # UnpicklingError and friends: refuse, never retry without weights_only
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a plain tensor checkpoint (weights_only load refused it: {first[:200]})") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ValueError(f"{path}: expected a dict of tensor name -> tensor (a state dict), got {type(obj).__name__}")
    return obj


# --------------------------------------------------------------------------------- folders ----

SAFE_INDEX, BIN_INDEX = "model.safetensors.index.json", "pytorch_model.bin.index.json"


def find_weight_files(path: str | os.PathLike) -> tuple[str, list[Path], dict[str, str] | None]:
    """``(kind, files, weight_map)`` of a model folder or file; kind is ``"safetensors"`` or
    ``"bin"``; ``weight_map`` (tensor -> file name) when an index file lists the shards."""
    p = Path(path)
    if p.is_file():
        if p.suffix == ".safetensors":
            return "safetensors", [p], None
        if p.suffix in (".bin", ".pt", ".pth"):
            return "bin", [p], None
        raise ValueError(f"{p}: not a .safetensors or .bin weights file")
    if not p.is_dir():
        raise ValueError(f"{p}: no such model folder")
    for index, kind in ((SAFE_INDEX, "safetensors"), (BIN_INDEX, "bin")):
        if (p / index).is_file():
            files, wmap = _read_index(p / index)
            if kind == "safetensors" or not list(p.glob("*.safetensors")):
                return kind, files, wmap
    for kind, patterns in (("safetensors", ("model.safetensors", "*.safetensors")),
                           ("bin", ("pytorch_model.bin", "pytorch_model-*-of-*.bin", "adapter_model.bin"))):
        for pattern in patterns:
            files = sorted(f for f in p.glob(pattern) if f.is_file())
            if files:
                return kind, files, None
    if list(p.glob("consolidated.*.pth")):
        raise ValueError(f"{p}: holds Meta's original consolidated.*.pth checkpoint; convert it to the Hugging Face "
                         "layout first (transformers' convert_llama_weights_to_hf.py)")
    raise ValueError(f"{p}: no weights found (no *.safetensors, model.safetensors.index.json, pytorch_model*.bin)")


def _read_index(index: Path) -> tuple[list[Path], dict[str, str]]:
    try:
        data = json.loads(index.read_text("utf-8"))
        wmap = data["weight_map"]
        if not isinstance(wmap, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wmap.items()):
            raise TypeError
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise ValueError(f"{index}: not a valid shard index (expected {{\"weight_map\": {{tensor: file}}}})") from None
    files = []
    for name in dict.fromkeys(wmap.values()):
        f = index.parent / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"{index}: shard {name!r} is not a file name inside the folder")
        if not f.is_file():
            raise ValueError(f"{index}: lists shard {name}, which is missing (incomplete download?)")
        files.append(f)
    return files, wmap


class ModelFiles:
    """The tensors of a model (or adapter) folder, read lazily: ``names``, ``spec(name)``,
    ``read(name, start, stop)`` and ``blocks(name, block_bytes)``. ``label`` names the folder in
    error messages ("RAW", "DIFF" …). Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike, label: str | None = None):
        self.path = Path(path)
        self.label = label or str(self.path)
        self.kind, self.files, wmap = find_weight_files(self.path)
        self.folder = self.path if self.path.is_dir() else self.path.parent
        self._where: dict[str, Path] = {}
        self.specs: dict[str, TensorSpec] = {}
        self._st: dict[Path, SafetensorsFile] = {}
        self._bin_path: Path | None = None
        self._bin: dict[str, torch.Tensor] | None = None
        for f in self.files:
            if self.kind == "safetensors":
                st = SafetensorsFile(f)
                self._st[f] = st
                items = st.specs.items()
            else:
                sd = self._open_bin(f)
                items = ((k, TensorSpec(k, v.dtype, tuple(v.shape))) for k, v in sd.items())
            for name, spec in items:
                if name in self._where:
                    raise ValueError(f"{self.label}: tensor {name} is in both {self._where[name].name} and {f.name}")
                self._where[name] = f
                self.specs[name] = spec
        if wmap is not None:
            listed, found = set(wmap), set(self.specs)
            if listed != found:
                extra, missing = sorted(found - listed), sorted(listed - found)
                raise ValueError(f"{self.label}: the shard index does not match the shards: "
                                 + "; ".join(s for s in (_few("listed but missing", missing),
                                                         _few("present but not listed", extra)) if s))
            for name, fname in wmap.items():
                if self._where[name].name != fname:
                    raise ValueError(f"{self.label}: the index puts {name} in {fname} but it is in {self._where[name].name}")

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    @property
    def total_bytes(self) -> int:
        return sum(s.nbytes for s in self.specs.values())

    def spec(self, name: str) -> TensorSpec:
        return self.specs[name]

    def file_of(self, name: str) -> Path:
        return self._where[name]

    def _open_bin(self, f: Path) -> dict[str, torch.Tensor]:
        if self._bin_path != f:
            self._bin = None  # drop the previous shard's mapping first
            self._bin = load_bin(f)
            self._bin_path = f
        assert self._bin is not None
        return self._bin

    def read(self, name: str, start: int = 0, stop: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``start:stop`` of ``name`` in its stored dtype, into ``out`` when given (see
        :meth:`SafetensorsFile.read`)."""
        if name not in self.specs:
            raise KeyError(f"{self.label}: no tensor {name}")
        f = self._where[name]
        if self.kind == "safetensors":
            return self._st[f].read(name, start, stop, out)
        t = self._open_bin(f)[name]
        t = t if t.dim() == 0 else t[start:stop]
        if out is None:
            return t.clone()
        return out.copy_(t)

    def blocks(self, name: str, block_bytes: int,
               buffer: BlockBuffer | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(start, stop, rows)`` blocks of ``name`` of at most ``block_bytes`` each (views of
        ``buffer``, valid until the next block, when one is given)."""
        spec = self.specs[name]
        for start, stop in row_blocks(spec, block_bytes):
            out = buffer.view(spec, start, stop) if buffer is not None else None
            yield start, stop, self.read(name, start, stop, out)

    def metadata(self) -> dict[str, str]:
        """The ``__metadata__`` of the first safetensors file (empty for .bin)."""
        if self.kind != "safetensors" or not self.files:
            return {}
        return dict(self._st[self.files[0]].metadata)

    def close(self) -> None:
        self._bin = None
        self._bin_path = None
        for st in self._st.values():
            st.close()

    def __enter__(self) -> "ModelFiles":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _few(what: str, names: list[str], k: int = 3) -> str:
    if not names:
        return ""
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return f"{len(names)} {what} ({', '.join(names[:k])}{more})"


def read_config(folder: str | os.PathLike) -> dict[str, Any] | None:
    """``config.json`` of a model folder as a dict (``None`` when there is none)."""
    p = Path(folder) / "config.json"
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{p}: not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object")
    return data


def config_vocab_size(config: dict[str, Any] | None) -> int | None:
    if not config:
        return None
    v = config.get("vocab_size", (config.get("text_config") or {}).get("vocab_size"))
    return int(v) if isinstance(v, int) else None


__all__ = ["ModelFiles", "SafetensorsFile", "BlockBuffer", "torch_threads", "TensorSpec", "load_bin", "find_weight_files",
           "parse_dtype", "dtype_name",
           "parse_size", "row_blocks", "as_bytes", "read_config", "config_vocab_size", "few_names", "ST_DTYPES",
           "ST_CODES", "IGNORABLE", "VOCAB_TENSORS", "PICKLE_SUFFIXES"]
