"""Stage 04 storage — a memory-mapped token index in Megatron-LM's ``MMapIndexedDataset`` layout.

An index is three files next to each other:

* ``PREFIX.bin``  — the token ids of every sample, back to back, no header;
* ``PREFIX.idx``  — Megatron's header + sample lengths + byte pointers + document index, so the
  files load unchanged in Megatron-LM, NeMo and GPT-NeoX;
* ``PREFIX.manifest.json`` — what KnowLM kept in pickled ``.dis``/``.tmp`` files, as readable
  JSON: counts, dtype, vocab size, and the *type ranges* (``zh``/``en``/``code`` …) that the
  pretraining sampler mixes per batch.

``.idx`` layout (little-endian), offsets in bytes::

    0   magic  b"MMIDIDX\\x00\\x00"          9 bytes
    9   version uint64 = 1
    17  dtype code uint8 (1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f64, 7 f32, 8 u16)
    18  N  uint64   number of samples ("sequences")
    26  D  uint64   document-index entries (= documents + 1)
    34  N × int32   sample lengths (tokens)
        N × int64   sample pointers (byte offsets into .bin)
        D × int64   document index: 0, first sample of document 1, ..., N

Design choices, and the Megatron bugs they avoid:

* Everything is int64 arithmetic (Megatron once computed pointers in int32 and broke > 2 GB
  files).
* The writer streams with constant memory: tokens go to a temp ``.bin``, lengths and document
  ends to temp side files; the ``.idx`` is assembled at the end by streaming those files
  (pointers = running byte offsets, chunk by chunk with a carry).
* Writes are atomic: all files are written under temp names in the destination folder and
  renamed at the end — ``.bin``, then the manifest, then the ``.idx`` LAST. The ``.idx`` is the
  commit marker: a killed run leaves no ``.idx`` and therefore nothing that opens (only hidden
  ``.PREFIX.*.tmp`` files, safe to delete).
* Merging keeps the document index valid (Megatron's merge tool once broke it) and keeps each
  type in one contiguous range.
* The reader memory-maps both files read-only and never copies the arrays: opening a
  5 M-sample index costs kilobytes of RAM, not the hundreds of MB that Python lists take.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import mmap
import numbers
import operator
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from .fileio import write_json_atomic

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, N, D  (34 bytes)
DTYPE_OF_CODE: dict[int, np.dtype] = {
    1: np.dtype(np.uint8), 2: np.dtype(np.int8), 3: np.dtype(np.int16), 4: np.dtype(np.int32),
    5: np.dtype(np.int64), 6: np.dtype(np.float64), 7: np.dtype(np.float32), 8: np.dtype(np.uint16),
}
CODE_OF_DTYPE = {dt: code for code, dt in DTYPE_OF_CODE.items()}
FORMAT_NAME = "knowlm-mmap-token-index"
FORMAT_VERSION = 1
RESERVED_MANIFEST_KEYS = ("format", "format_version", "layout", "dtype", "vocab_size", "num_samples",
                          "num_documents", "num_tokens", "types")
CHUNK_ITEMS = 1 << 20          # samples / document entries processed per streaming step
COPY_BYTES = 64 << 20          # bytes copied per step when merging


class IndexFormatError(ValueError):
    """An index file is malformed or inconsistent; the message names the file and the problem."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (``vocab_size <= 65536``, e.g. LLaMA's 32000 or a 55k
    Chinese-extended vocabulary), else int32 — halving the corpus on disk when possible."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    if vocab_size <= 1 << 31:
        return np.dtype(np.int32)
    raise ValueError(f"vocab_size {vocab_size} does not fit an int32 token id")


def index_paths(prefix: str | os.PathLike) -> dict[str, Path]:
    """``{"bin", "idx", "manifest"}`` paths of an index prefix."""
    p = str(_prefix(prefix))
    return {"bin": Path(p + ".bin"), "idx": Path(p + ".idx"), "manifest": Path(p + ".manifest.json")}


def _prefix(prefix: str | os.PathLike) -> Path:
    """Accept ``PREFIX`` or, for convenience, ``PREFIX.bin`` / ``PREFIX.idx`` of an existing index."""
    s = os.fspath(prefix)
    for suffix in (".bin", ".idx", ".manifest.json"):
        if s.endswith(suffix) and not os.path.exists(s + ".idx") and os.path.exists(s[: -len(suffix)] + ".idx"):
            return Path(s[: -len(suffix)])
    return Path(s)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"manifest value of type {type(obj).__name__} is not JSON serialisable: {obj!r}")


def _mkstemp(final: Path, role: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".{role}.tmp", dir=final.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


# ============================================================================ writer ======
class MMapTokenIndexWriter:
    """Streams documents into ``PREFIX.{bin,idx,manifest.json}`` with constant memory.

    ``add_document(samples, type)`` appends one document (its samples, each a 1-D array of
    token ids). Documents of one type must be contiguous, so each type is one sample range.
    ``finalize()`` assembles the ``.idx`` and commits atomically; ``abort()`` (or an exception
    inside ``with``) removes the temp files and leaves nothing under the final names. A clean
    exit from ``with`` finalizes if ``finalize`` was not called.

    ``vocab_size`` bounds the ids (checked for every document); ``None`` is allowed only with an
    explicit ``dtype`` (merging files whose vocabulary is unknown).
    """

    def __init__(self, prefix: str | os.PathLike, vocab_size: int | None, dtype: np.dtype | None = None,
                 progress: bool = False):
        self.prefix = Path(os.fspath(prefix))
        if dtype is None:
            if vocab_size is None:
                raise ValueError("give vocab_size (or an explicit dtype)")
            dtype = dtype_for_vocab(vocab_size)
        dtype = np.dtype(dtype)
        if dtype not in CODE_OF_DTYPE or dtype.kind not in "iu":
            raise ValueError(f"dtype {dtype} cannot hold token ids; use one of "
                             f"{sorted(str(d) for d in CODE_OF_DTYPE if d.kind in 'iu')}")
        if vocab_size is not None:
            dtype_for_vocab(vocab_size)  # validates the value
            if vocab_size - 1 > np.iinfo(dtype).max:
                raise ValueError(f"vocab_size {vocab_size} has ids up to {vocab_size - 1}, which do not fit "
                                 f"{dtype} (max {np.iinfo(dtype).max}); use dtype_for_vocab({vocab_size})")
        self.vocab_size = None if vocab_size is None else int(vocab_size)
        self.dtype = dtype
        self._limit = self.vocab_size if self.vocab_size is not None else int(np.iinfo(dtype).max) + 1
        self.paths = index_paths(self.prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._tmp: dict[str, Path] = {}
        self._fh: dict[str, Any] = {}
        self._state = "open"
        try:
            for role in ("bin", "sizes", "docs"):
                self._tmp[role] = _mkstemp(self.paths["bin"], role)
                self._fh[role] = open(self._tmp[role], "wb", buffering=1 << 20)
        except BaseException:
            self.abort()
            raise
        self.num_samples = 0
        self.num_documents = 0
        self.num_tokens = 0
        self._types: dict[str, dict[str, Any]] = {}
        self._current_type: str | None = None
        self._bar = tqdm(unit="tok", unit_scale=True, desc=f"index {self.prefix.name}", disable=not progress)

    # ------------------------------------------------------------------ context manager ----
    def __enter__(self) -> "MMapTokenIndexWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.finalize()

    # ------------------------------------------------------------------ appending ----------
    def add_document(self, samples: Sequence[np.ndarray], type: str = "default") -> None:
        """Append one document made of ``samples`` (1-D integer arrays of token ids)."""
        self._check_open()
        if isinstance(samples, np.ndarray) and samples.ndim == 1:
            raise TypeError(f"{self.prefix}: document {self.num_documents}: add_document takes a sequence of samples "
                            "(1-D arrays), got a single 1-D array; wrap it in a list")
        arrays = []
        for k, s in enumerate(samples):
            a = np.asarray(s)
            if a.ndim != 1 or a.dtype.kind not in "iu":
                raise ValueError(f"{self.prefix}: document {self.num_documents}, sample {k}: expected a 1-D integer "
                                 f"array of token ids, got shape {a.shape} dtype {a.dtype}")
            arrays.append(a)
        if not arrays:
            raise ValueError(f"{self.prefix}: document {self.num_documents} has no samples (skip and count empty "
                             "documents before writing)")
        flat = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        self.add_documents_flat(flat, np.fromiter((len(a) for a in arrays), np.int64, len(arrays)),
                                np.array([len(arrays)], np.int64), type=type)

    def add_documents_flat(self, tokens: np.ndarray, sample_sizes: np.ndarray, samples_per_document: np.ndarray,
                           type: str = "default") -> None:
        """Append many documents of one type at once (vectorised; no per-sample Python work):
        ``tokens`` = all their ids back to back, ``sample_sizes[k]`` = tokens of sample k,
        ``samples_per_document[j]`` = samples of document j."""
        self._check_open()
        tokens = np.asarray(tokens)
        sizes = np.asarray(sample_sizes, dtype=np.int64)
        per_doc = np.asarray(samples_per_document, dtype=np.int64)
        d0 = self.num_documents
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise ValueError(f"{self.prefix}: documents {d0}+: tokens must be a 1-D integer array, got shape "
                             f"{tokens.shape} dtype {tokens.dtype}")
        if sizes.ndim != 1 or per_doc.ndim != 1:
            raise ValueError(f"{self.prefix}: sample_sizes and samples_per_document must be 1-D")
        if per_doc.size and per_doc.min() < 1:
            j = int(np.argmax(per_doc < 1))
            raise ValueError(f"{self.prefix}: document {d0 + j} has no samples (skip and count empty documents "
                             "before writing)")
        if int(per_doc.sum()) != sizes.size:
            raise ValueError(f"{self.prefix}: samples_per_document sums to {int(per_doc.sum())} but there are "
                             f"{sizes.size} sample sizes")
        doc_ends = np.cumsum(per_doc)
        if sizes.size and (sizes.min() < 1 or sizes.max() > np.iinfo(np.int32).max):
            k = int(np.argmax((sizes < 1) | (sizes > np.iinfo(np.int32).max)))
            raise ValueError(f"{self.prefix}: {self._where(doc_ends, d0, k)} has {int(sizes[k])} tokens; a sample "
                             f"needs 1 to {np.iinfo(np.int32).max} tokens")
        if int(sizes.sum()) != tokens.size:
            raise ValueError(f"{self.prefix}: sample sizes sum to {int(sizes.sum())} but {tokens.size} tokens were given")
        if tokens.size:
            lo, hi = int(tokens.min()), int(tokens.max())
            if lo < 0 or hi >= self._limit:
                p = int(np.argmax((tokens < 0) | (tokens >= self._limit)))
                k = int(np.searchsorted(np.cumsum(sizes), p, side="right"))
                what = f"vocab_size {self.vocab_size}" if self.vocab_size is not None else f"dtype {self.dtype}"
                raise ValueError(f"{self.prefix}: {self._where(doc_ends, d0, k)}: token id {int(tokens[p])} is out of "
                                 f"range [0, {self._limit}) ({what})")
        self._switch_type(type)
        self._append(tokens.astype(self.dtype, copy=False), sizes, doc_ends)

    @staticmethod
    def _where(doc_ends: np.ndarray, d0: int, k: int) -> str:
        j = int(np.searchsorted(doc_ends, k, side="right"))
        first = int(doc_ends[j - 1]) if j else 0
        return f"document {d0 + j}, sample {k - first}"

    def _switch_type(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.prefix}: type must be a non-empty string, got {name!r}")
        if name == self._current_type:
            return
        if name in self._types:
            raise ValueError(f"{self.prefix}: documents of one type must be contiguous, but type {name!r} reappears "
                             f"at document {self.num_documents} after type {self._current_type!r}; write each type's "
                             "documents together (or write one index per type and merge_indexes(..., typed=True))")
        self._types[name] = {"samples": [self.num_samples] * 2, "documents": [self.num_documents] * 2, "tokens": 0}
        self._current_type = name

    def _append(self, tokens: np.ndarray, sizes: np.ndarray, doc_ends_rel: np.ndarray) -> None:
        """Write token ids, sample sizes and document ends (relative to the current sample count)."""
        self._fh["bin"].write(memoryview(np.ascontiguousarray(tokens, dtype=self.dtype.newbyteorder("<"))).cast("B"))
        self._append_meta(sizes, doc_ends_rel, int(tokens.size))

    def _append_meta(self, sizes: np.ndarray, doc_ends_rel: np.ndarray, n_tokens: int) -> None:
        self._fh["sizes"].write(np.asarray(sizes, dtype="<i4").tobytes())
        self._fh["docs"].write((np.asarray(doc_ends_rel, dtype="<i8") + self.num_samples).tobytes())
        self.num_samples += int(len(sizes))
        self.num_documents += int(len(doc_ends_rel))
        self.num_tokens += n_tokens
        t = self._types[self._current_type]
        t["samples"][1] = self.num_samples
        t["documents"][1] = self.num_documents
        t["tokens"] += n_tokens
        self._bar.update(n_tokens)

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"{self.prefix}: the writer is {self._state}")

    # ------------------------------------------------------------------ committing ---------
    def finalize(self, manifest_extra: dict | None = None) -> dict:
        """Assemble the ``.idx`` by streaming the side files, then commit: ``.bin``, manifest,
        ``.idx`` (last). Returns the manifest written."""
        self._check_open()
        extra = dict(manifest_extra or {})
        clash = sorted(set(extra) & set(RESERVED_MANIFEST_KEYS))
        if clash:
            raise ValueError(f"{self.prefix}: manifest_extra may not set the writer's own keys {clash}")
        committed: list[Path] = []
        try:
            for fh in self._fh.values():
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
            self._tmp["idx"] = _mkstemp(self.paths["idx"], "idx")
            self._assemble_idx(self._tmp["idx"])
            manifest = {
                "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "layout": "megatron-mmidx-v1",
                "dtype": self.dtype.name, "vocab_size": self.vocab_size, "num_samples": self.num_samples,
                "num_documents": self.num_documents, "num_tokens": self.num_tokens,
                "types": {k: dict(v) for k, v in self._types.items()}, **extra,
            }
            # numpy scalars/arrays become plain JSON; anything else unserialisable fails HERE,
            # before any file is committed
            manifest = json.loads(json.dumps(manifest, default=_json_default))
            # the old .idx (if any) is the old commit marker: remove it first so that a crash
            # below never pairs an old .idx with a new .bin
            if self.paths["idx"].exists():
                os.unlink(self.paths["idx"])
            os.replace(self._tmp.pop("bin"), self.paths["bin"])
            committed.append(self.paths["bin"])
            write_json_atomic(self.paths["manifest"], manifest)
            committed.append(self.paths["manifest"])
            os.replace(self._tmp.pop("idx"), self.paths["idx"])
            _fsync_dir(self.paths["idx"].parent)
        except BaseException:
            for p in committed:
                p.unlink(missing_ok=True)
            self.abort()
            raise
        self._remove_temps()
        self._bar.close()
        self._state = "finalized"
        return manifest

    def _assemble_idx(self, path: Path) -> None:
        n, d = self.num_samples, self.num_documents + 1
        itemsize = self.dtype.itemsize
        with open(path, "wb", buffering=1 << 20) as out:
            out.write(HEADER.pack(MAGIC, VERSION, CODE_OF_DTYPE[self.dtype], n, d))
            with open(self._tmp["sizes"], "rb") as fh:  # sizes: copied as they are
                while chunk := fh.read(4 * CHUNK_ITEMS):
                    out.write(chunk)
            carry = 0
            with open(self._tmp["sizes"], "rb") as fh:  # pointers: running byte offsets
                while (sizes := np.fromfile(fh, dtype="<i4", count=CHUNK_ITEMS)).size:
                    nbytes = sizes.astype(np.int64) * itemsize
                    pointers = np.empty_like(nbytes)
                    pointers[0] = carry
                    np.cumsum(nbytes[:-1], out=pointers[1:])
                    pointers[1:] += carry
                    carry += int(nbytes.sum())
                    out.write(pointers.astype("<i8", copy=False).tobytes())
            out.write(np.zeros(1, "<i8").tobytes())  # document index starts at sample 0
            with open(self._tmp["docs"], "rb") as fh:
                while chunk := fh.read(8 * CHUNK_ITEMS):
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if carry != self.num_tokens * itemsize:  # pragma: no cover - internal consistency
            raise RuntimeError(f"{self.prefix}: pointer total {carry} != {self.num_tokens} tokens × {itemsize}")

    def _remove_temps(self) -> None:
        for fh in self._fh.values():
            if not fh.closed:
                fh.close()
        for p in self._tmp.values():
            p.unlink(missing_ok=True)
        self._tmp.clear()

    def abort(self) -> None:
        """Drop everything written so far (no-op after ``finalize``)."""
        if self._state == "finalized":
            return
        self._remove_temps()
        if hasattr(self, "_bar"):
            self._bar.close()
        self._state = "aborted"


# ============================================================================ reader ======
def read_manifest(prefix: str | os.PathLike) -> dict | None:
    """The index's JSON manifest, or ``None`` when it has none (e.g. a Megatron-built index)."""
    path = index_paths(prefix)["manifest"]
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise IndexFormatError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise IndexFormatError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    return manifest


class MMapTokenIndex:
    """Read-only, memory-mapped view of ``PREFIX.{bin,idx}`` (+ manifest when present).

    ``index[i]`` is a zero-copy numpy view of sample ``i``'s token ids; ``sizes``,
    ``pointers`` and ``doc_idx`` are views of the ``.idx`` file. Nothing is copied into RAM,
    so opening is instant and memory stays small whatever the corpus size.

    ``validate="full"`` (default) also checks, chunk by chunk, that samples lie back to back in
    the ``.bin`` and that the document index is monotone — a linear pass over the ``.idx``
    (about 0.1 s per 10 M samples); ``"quick"`` checks only the header, file lengths, the
    document-index ends and the manifest (for very large indexes opened often).
    """

    def __init__(self, prefix: str | os.PathLike, validate: str = "full"):
        if validate not in ("full", "quick"):
            raise ValueError(f"validate must be 'full' or 'quick', got {validate!r}")
        self.prefix = _prefix(prefix)
        self._validate = validate
        self.paths = index_paths(self.prefix)
        idx_path, bin_path = self.paths["idx"], self.paths["bin"]
        for p in (idx_path, bin_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: no such file (an index is committed by writing its .idx last, so "
                                        "an interrupted write leaves no index)")
        idx_size = idx_path.stat().st_size
        if idx_size < HEADER.size:
            raise IndexFormatError(f"{idx_path}: truncated: {idx_size} bytes, shorter than the {HEADER.size}-byte header")
        with open(idx_path, "rb") as fh:
            self._idx_mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        magic, version, code, n, d = HEADER.unpack_from(self._idx_mm, 0)
        if magic != MAGIC:
            raise IndexFormatError(f"{idx_path}: bad magic {magic!r} (expected {MAGIC!r}): not an MMIDIDX index file")
        if version != VERSION:
            raise IndexFormatError(f"{idx_path}: unsupported version {version} (expected {VERSION})")
        if code not in DTYPE_OF_CODE:
            raise IndexFormatError(f"{idx_path}: unknown dtype code {code} (known: {sorted(DTYPE_OF_CODE)})")
        expected = HEADER.size + 12 * n + 8 * d
        if idx_size != expected:
            raise IndexFormatError(f"{idx_path}: {idx_size} bytes, but a header of {n} samples and {d} document-index "
                                   f"entries needs exactly {expected} (34 + 12×N + 8×D): the file is truncated or corrupt")
        if d < 1:
            raise IndexFormatError(f"{idx_path}: the document index is empty (it must hold at least the entry 0)")
        self.dtype: np.dtype = DTYPE_OF_CODE[code]
        self._itemsize = self.dtype.itemsize
        self.sizes: np.ndarray = np.frombuffer(self._idx_mm, "<i4", n, HEADER.size)
        self.pointers: np.ndarray = np.frombuffer(self._idx_mm, "<i8", n, HEADER.size + 4 * n)
        self.doc_idx: np.ndarray = np.frombuffer(self._idx_mm, "<i8", d, HEADER.size + 12 * n)
        if int(self.doc_idx[0]) != 0 or int(self.doc_idx[-1]) != n:
            raise IndexFormatError(f"{idx_path}: the document index must start at 0 and end at N={n}, "
                                   f"got {int(self.doc_idx[0])} … {int(self.doc_idx[-1])}")
        bin_size = bin_path.stat().st_size
        end = int(self.pointers[-1]) + int(self.sizes[-1]) * self._itemsize if n else 0
        if bin_size != end:
            raise IndexFormatError(f"{bin_path}: {bin_size} bytes, but {idx_path.name} says its samples end at byte "
                                   f"{end}: the .bin is truncated or belongs to another index")
        if bin_size % self._itemsize:
            raise IndexFormatError(f"{bin_path}: {bin_size} bytes is not a multiple of {self._itemsize} ({self.dtype})")
        if bin_size:
            with open(bin_path, "rb") as fh:
                self._bin_mm: mmap.mmap | None = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            self._tokens = np.frombuffer(self._bin_mm, self.dtype.newbyteorder("<"))
        else:
            self._bin_mm = None
            self._tokens = np.zeros(0, self.dtype)
        self.num_tokens = bin_size // self._itemsize
        self.num_documents = d - 1
        if validate == "full":
            self._validate_full()
        self.manifest: dict | None = read_manifest(self.prefix)
        self.type_ranges: dict[str, tuple[int, int]] = self._check_manifest() if self.manifest is not None \
            else {"default": (0, n)}

    # ------------------------------------------------------------------ validation ---------
    def _validate_full(self) -> None:
        idx_path = self.paths["idx"]
        carry = 0
        for a in range(0, len(self), CHUNK_ITEMS):
            sizes = self.sizes[a:a + CHUNK_ITEMS].astype(np.int64)
            if sizes.min() < 0:
                k = a + int(np.argmax(sizes < 0))
                raise IndexFormatError(f"{idx_path}: sample {k} has negative length {int(self.sizes[k])}")
            nbytes = sizes * self._itemsize
            expect = np.empty_like(nbytes)
            expect[0] = carry
            np.cumsum(nbytes[:-1], out=expect[1:])
            expect[1:] += carry
            got = self.pointers[a:a + CHUNK_ITEMS]
            if not np.array_equal(got, expect):
                k = int(np.argmax(got != expect))
                raise IndexFormatError(f"{idx_path}: sample {a + k} points to byte {int(got[k])} of the .bin, expected "
                                       f"{int(expect[k])} (samples are stored back to back)")
            carry += int(nbytes.sum())
        prev = 0
        for a in range(0, len(self.doc_idx), CHUNK_ITEMS):
            chunk = self.doc_idx[a:a + CHUNK_ITEMS]
            steps = np.diff(chunk, prepend=prev)
            if steps.min() < 0:
                j = a + int(np.argmax(steps < 0))
                raise IndexFormatError(f"{idx_path}: the document index decreases at entry {j} "
                                       f"({int(self.doc_idx[j - 1])} -> {int(self.doc_idx[j])})")
            prev = int(chunk[-1])

    def _byte_at(self, sample: int) -> int:
        return int(self.pointers[sample]) if sample < len(self) else self.num_tokens * self._itemsize

    def _check_manifest(self) -> dict[str, tuple[int, int]]:
        m, path = self.manifest, self.paths["manifest"]
        actual = {"num_samples": len(self), "num_documents": self.num_documents, "num_tokens": self.num_tokens,
                  "dtype": self.dtype.name}
        for key, value in actual.items():
            if key in m and m[key] != value:
                raise IndexFormatError(f"{path}: {key} is {m[key]!r} but {self.paths['idx'].name}/"
                                       f"{self.paths['bin'].name} hold {value!r}: the manifest belongs to another "
                                       "index (or a file was replaced)")
        types = m.get("types")
        if types is None:
            return {"default": (0, len(self))}
        if not isinstance(types, dict):
            raise IndexFormatError(f"{path}: 'types' must be an object")
        ranges: dict[str, tuple[int, int]] = {}
        expect_start = 0
        for name, t in types.items():
            try:
                s, e = (int(x) for x in t["samples"])
                ds, de = (int(x) for x in t["documents"])
            except (KeyError, TypeError, ValueError) as exc:
                raise IndexFormatError(f"{path}: type {name!r} needs 'samples' and 'documents' as [start, end]") from exc
            if s != expect_start or not s <= e <= len(self) or not 0 <= ds <= de <= self.num_documents:
                raise IndexFormatError(f"{path}: type {name!r} covers samples [{s}, {e}) / documents [{ds}, {de}); "
                                       f"types must tile samples [0, {len(self)}) in order")
            if int(self.doc_idx[ds]) != s or int(self.doc_idx[de]) != e:
                raise IndexFormatError(f"{path}: type {name!r}: documents [{ds}, {de}) span samples "
                                       f"[{int(self.doc_idx[ds])}, {int(self.doc_idx[de])}), not [{s}, {e})")
            tokens = (self._byte_at(e) - self._byte_at(s)) // self._itemsize
            if "tokens" in t and int(t["tokens"]) != tokens:
                raise IndexFormatError(f"{path}: type {name!r} says {t['tokens']} tokens, the index holds {tokens}")
            ranges[name] = (s, e)
            expect_start = e
        if expect_start != len(self):
            raise IndexFormatError(f"{path}: types cover samples [0, {expect_start}) of {len(self)}")
        return ranges

    # ------------------------------------------------------------------ access -------------
    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> np.ndarray:
        try:
            k = operator.index(i)
        except TypeError:
            raise TypeError(f"sample index must be an integer, got {type(i).__name__}") from None
        n = len(self.sizes)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(f"sample {i} out of range for {self.prefix} ({n} samples: valid {-n} … {n - 1})")
        start = int(self.pointers[k]) // self._itemsize
        return self._tokens[start:start + int(self.sizes[k])]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def document(self, j: int) -> list[np.ndarray]:
        """The samples of document ``j`` (negative ``j`` allowed)."""
        k = operator.index(j)
        if k < 0:
            k += self.num_documents
        if not 0 <= k < self.num_documents:
            raise IndexError(f"document {j} out of range for {self.prefix} ({self.num_documents} documents)")
        return [self[i] for i in range(int(self.doc_idx[k]), int(self.doc_idx[k + 1]))]

    def document_of(self, i: int) -> int:
        """The document that sample ``i`` belongs to (negative ``i`` allowed)."""
        k = operator.index(i)
        if not -len(self) <= k < len(self):
            raise IndexError(f"sample {i} out of range for {self.prefix} ({len(self)} samples)")
        return int(np.searchsorted(self.doc_idx, k % len(self), side="right")) - 1

    def __repr__(self) -> str:
        return (f"MMapTokenIndex({str(self.prefix)!r}: {len(self)} samples, {self.num_documents} documents, "
                f"{self.num_tokens} tokens, {self.dtype})")

    def __getstate__(self) -> dict:  # DataLoader workers reopen the files instead of pickling maps
        return {"prefix": str(self.prefix)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["prefix"], validate="quick")


# ============================================================================ merge =======
def _segments(index: MMapTokenIndex, rename: str | None) -> list[tuple[str, int, int, int, int]]:
    """[(type, first sample, end sample, first document, end document)] of one input."""
    n = len(index)
    if rename is not None:
        if len([r for r in index.type_ranges.values() if r[1] > r[0]]) > 1:
            raise ValueError(f"{index.prefix} holds several types {list(index.type_ranges)}; it cannot be renamed to "
                             f"the single type {rename!r}")
        return [(rename, 0, n, 0, index.num_documents)] if n else []
    if index.manifest is None or index.manifest.get("types") is None:
        return [("default", 0, n, 0, index.num_documents)] if n else []
    return [(name, *t["samples"], *t["documents"]) for name, t in index.manifest["types"].items()]


def merge_indexes(prefixes: Sequence[str | os.PathLike], out_prefix: str | os.PathLike, typed: bool = False,
                  types: Sequence[str] | None = None, progress: bool = False) -> dict:
    """Merge indexes into ``out_prefix`` by streaming (constant memory, atomic). Returns the manifest.

    * ``typed=False`` — concatenate in input order (e.g. shards of one type). Each input's types
      are kept; a type that would end up in two separate ranges is an error (use ``typed=True``).
    * ``typed=True`` — combine typed datasets (zh, en, code …): the output holds one contiguous
      range per type, in order of first appearance; SAME-NAMED types from several inputs are
      merged into that one range (input order within it).
    * ``types`` — optional type name for each input (``len(types) == len(prefixes)``), e.g. for
      Megatron-built or legacy indexes that have no manifest; each such input must hold one type.

    The document index stays valid (document boundaries are re-based, never lost), the dtype
    must match across inputs, and vocab sizes / tokenizer hashes from the manifests must agree.
    """
    prefixes = [Path(os.fspath(p)) for p in prefixes]
    if not prefixes:
        raise ValueError("merge_indexes needs at least one input prefix")
    if types is not None and len(types) != len(prefixes):
        raise ValueError(f"types names one type per input: got {len(types)} names for {len(prefixes)} inputs")
    out_prefix = Path(os.fspath(out_prefix))
    inputs = [MMapTokenIndex(p) for p in prefixes]
    out_real = os.path.realpath(out_prefix)
    for index in inputs:
        if os.path.realpath(index.prefix) == out_real:
            raise ValueError(f"the output {out_prefix} is also an input; write the merge to a new prefix")
    dtypes = {index.dtype for index in inputs}
    if len(dtypes) > 1:
        detail = ", ".join(f"{ix.prefix} is {ix.dtype}" for ix in inputs)
        raise ValueError(f"cannot merge indexes of different dtypes ({detail}); they were written with different "
                         "vocabulary sizes — re-tokenize with one tokenizer")
    vocab = _agree(inputs, lambda m: m.get("vocab_size"), "vocab_size")
    _agree(inputs, lambda m: (m.get("tokenizer") or {}).get("sha256") if isinstance(m.get("tokenizer"), dict)
           else None, "tokenizer sha256")

    plan: list[tuple[str, MMapTokenIndex, int, int, int, int]] = []
    for k, index in enumerate(inputs):
        for name, s, e, ds, de in _segments(index, None if types is None else types[k]):
            plan.append((name, index, s, e, ds, de))
    if typed:
        order = list(dict.fromkeys(seg[0] for seg in plan))
        plan = [seg for name in order for seg in plan if seg[0] == name]
    else:
        seen, last = set(), None
        for seg in plan:
            if seg[0] != last and seg[0] in seen:
                raise ValueError(f"concatenating in input order would split type {seg[0]!r} into two ranges "
                                 f"(again in {seg[1].prefix}); use typed=True (--typed) to group each type")
            seen.add(seg[0])
            last = seg[0]

    extra = {"merge": {"typed": bool(typed), "inputs": [
        {"prefix": str(ix.prefix), "num_samples": len(ix), "num_documents": ix.num_documents,
         "num_tokens": ix.num_tokens, "type_ranges": {k: list(v) for k, v in ix.type_ranges.items()},
         "manifest": {k: v for k, v in (ix.manifest or {}).items() if k not in RESERVED_MANIFEST_KEYS}}
        for ix in inputs]}}
    extra.update(_common_keys(inputs))
    total = sum(ix.num_tokens for ix in inputs)
    writer = MMapTokenIndexWriter(out_prefix, vocab, dtype=inputs[0].dtype, progress=False)
    with tqdm(total=total, unit="tok", unit_scale=True, desc=f"merge -> {out_prefix.name}", disable=not progress) as bar:
        try:
            for name, index, s, e, ds, de in plan:
                writer._switch_type(name)
                _copy_range(writer, index, s, e, ds, de, bar)
            return writer.finalize(extra)
        except BaseException:
            writer.abort()
            raise


def _agree(inputs: list[MMapTokenIndex], get, what: str):
    values = {str(ix.prefix): get(ix.manifest) for ix in inputs if ix.manifest is not None}
    distinct = {v for v in values.values() if v is not None}
    if len(distinct) > 1:
        raise ValueError(f"cannot merge indexes with different {what}: "
                         + ", ".join(f"{p}: {v}" for p, v in values.items()))
    return distinct.pop() if distinct else None


def _common_keys(inputs: list[MMapTokenIndex]) -> dict:
    """Manifest entries (tokenizer, seq_length, strategy …) equal in every input carry over."""
    manifests = [ix.manifest for ix in inputs]
    if any(m is None for m in manifests):
        return {}
    common = {}
    for key, value in manifests[0].items():
        if key in RESERVED_MANIFEST_KEYS or key == "merge":
            continue
        if all(key in m and m[key] == value for m in manifests[1:]):
            common[key] = value
    return common


def _copy_range(writer: MMapTokenIndexWriter, index: MMapTokenIndex, s: int, e: int, ds: int, de: int, bar) -> None:
    """Append samples [s, e) / documents [ds, de) of ``index``: bytes are copied in bounded
    pieces straight from the map, sizes and re-based document ends chunk by chunk."""
    if e <= s:
        return
    a, b = index._byte_at(s), index._byte_at(e)
    with memoryview(index._bin_mm if index._bin_mm is not None else b"") as view:
        for p in range(a, b, COPY_BYTES):
            with view[p:min(b, p + COPY_BYTES)] as piece:
                writer._fh["bin"].write(piece)
            bar.update((min(b, p + COPY_BYTES) - p) // writer.dtype.itemsize)
    # sizes and document ends go to independent side files: write them in separate passes
    base = writer.num_samples
    n_tokens = (b - a) // writer.dtype.itemsize
    doc_pos = ds
    for c in range(s, e, CHUNK_ITEMS):
        sizes = index.sizes[c:min(e, c + CHUNK_ITEMS)]
        hi = int(np.searchsorted(index.doc_idx, min(e, c + CHUNK_ITEMS), side="right")) - 1
        hi = min(max(hi, doc_pos), de)
        ends = index.doc_idx[doc_pos + 1:hi + 1] - s - (writer.num_samples - base)
        writer._append_meta(sizes, ends, 0)
        doc_pos = hi
    if doc_pos != de:  # pragma: no cover - guarded by the manifest check
        raise RuntimeError(f"{index.prefix}: document range [{ds}, {de}) does not end at sample {e}")
    writer.num_tokens += n_tokens
    writer._types[writer._current_type]["tokens"] += n_tokens


# ============================================================================ legacy ======
def import_knowlm_legacy(bin_path: str | os.PathLike, idx_path: str | os.PathLike, out_prefix: str | os.PathLike,
                         vocab_size: int = 65536, type: str = "default", progress: bool = False) -> dict:
    """Convert KnowLM's own ``pretrain/preprocess.py`` output into this format.

    KnowLM's ``.bin`` is raw uint16 ids; its ``.idx`` is N uint64 start positions counted in
    TOKENS followed by N uint16 lengths (no header, N = size / 10), and it has no document index
    — so every sample becomes its own document (recorded in the manifest). KnowLM's samples may
    overlap (its chunker extends samples backward); they are copied out one by one, so the new
    ``.bin`` can be larger than the old. Zero-length samples are skipped and counted. KnowLM's
    pickled ``.dis``/``.tmp`` files are never read (unpickling runs arbitrary code).
    """
    bin_path, idx_path = Path(bin_path), Path(idx_path)
    for p in (bin_path, idx_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    idx_size, bin_size = idx_path.stat().st_size, bin_path.stat().st_size
    if idx_size % 10:
        raise IndexFormatError(f"{idx_path}: {idx_size} bytes is not a multiple of 10 (KnowLM's .idx holds N × uint64 "
                               "starts + N × uint16 lengths)")
    if bin_size % 2:
        raise IndexFormatError(f"{bin_path}: {bin_size} bytes is not a multiple of 2 (KnowLM's .bin holds uint16 ids)")
    n, total = idx_size // 10, bin_size // 2
    idx_mm = np.memmap(idx_path, np.uint8, "r") if idx_size else np.zeros(0, np.uint8)
    bin_tokens = np.memmap(bin_path, "<u2", "r") if bin_size else np.zeros(0, "<u2")
    starts = idx_mm[:8 * n].view("<u8")
    lengths = idx_mm[8 * n:].view("<u2")
    skipped = 0
    with MMapTokenIndexWriter(out_prefix, vocab_size, progress=progress) as writer:
        for a in range(0, n, CHUNK_ITEMS):
            st = starts[a:a + CHUNK_ITEMS]
            ln = lengths[a:a + CHUNK_ITEMS].astype(np.int64)
            bad = (st > np.uint64(total)) | (st.astype(np.int64, copy=False) > total - ln)
            if bad.any():
                k = int(np.argmax(bad))
                raise IndexFormatError(f"{idx_path}: sample {a + k} spans tokens [{int(st[k])}, {int(st[k]) + int(ln[k])}) "
                                       f"but {bin_path} holds {total} tokens")
            keep = ln > 0
            skipped += int((~keep).sum())
            st, ln, numbers = st[keep].astype(np.int64), ln[keep], np.flatnonzero(keep) + a
            # bounded pieces of about 16 M tokens: gather ids with one vectorised index
            ends = np.cumsum(ln)
            c = 0
            while c < len(ln):
                stop = max(c + 1, int(np.searchsorted(ends, (ends[c - 1] if c else 0) + (16 << 20), side="right")))
                pst, pln = st[c:stop], ln[c:stop]
                offsets = np.cumsum(pln) - pln
                gather = np.repeat(pst - offsets, pln) + np.arange(int(pln.sum()), dtype=np.int64)
                ids = bin_tokens[gather]
                if ids.size and int(ids.max()) >= vocab_size:
                    p = int(np.argmax(ids >= vocab_size))
                    k = int(numbers[c + int(np.searchsorted(np.cumsum(pln), p, side="right"))])
                    raise IndexFormatError(f"{bin_path}: sample {k} (per {idx_path.name}) holds token id {int(ids[p])} "
                                           f">= vocab_size {vocab_size}")
                writer.add_documents_flat(ids, pln, np.ones(len(pln), np.int64), type=type)
                c = stop
        manifest = writer.finalize({"source": {
            "format": "knowlm-legacy", "bin": str(bin_path), "idx": str(idx_path), "legacy_samples": n,
            "legacy_bin_tokens": total, "skipped_empty_samples": skipped,
            "documents": "KnowLM's .idx has no document index: each sample is its own document",
        }})
    return manifest


# ============================================================================ torch =======
class _TokenIndexDatasetImpl:
    """``dataset[i] -> {"input_ids": LongTensor}`` over an index (or its prefix); ``type_of(i)``
    names the type range that sample ``i`` lies in. (Public as ``TokenIndexDataset``, a
    ``torch.utils.data.Dataset``.)"""

    def __init__(self, index: MMapTokenIndex | str | os.PathLike):
        self.index = index if isinstance(index, MMapTokenIndex) else MMapTokenIndex(index)
        self.type_ranges = self.index.type_ranges
        self._starts = [r[0] for r in self.type_ranges.values()]
        self._names = list(self.type_ranges)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        return {"input_ids": torch.from_numpy(self.index[i].astype(np.int64))}

    def type_of(self, i: int) -> str:
        n = len(self.index)
        k = operator.index(i)
        if not -n <= k < n:
            raise IndexError(f"sample {i} out of range ({n} samples)")
        k %= n
        return self._names[bisect.bisect_right(self._starts, k) - 1]


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a cheap, well-mixed 64-bit hash of each element."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class FeistelPermutation:
    """A seeded pseudo-random permutation of ``range(n)`` evaluated pointwise in O(1) memory
    (a 4-round Feistel network on the next even power of two, cycle-walked into ``[0, n)``).

    Why not ``rng.permutation(n)``: a type of a billion samples would need 8 GB per epoch per
    rank, and resuming would need it rebuilt. Here ``perm(positions)`` costs O(len(positions)).
    """

    def __init__(self, n: int, key: Sequence[int]):
        if n < 1:
            raise ValueError("a permutation needs n >= 1")
        self.n = int(n)
        bits = max(2, (self.n - 1).bit_length())
        self.half = np.uint64((bits + 1) // 2)
        self.mask = np.uint64((1 << int(self.half)) - 1)
        self.keys = np.random.SeedSequence(list(key)).generate_state(4, np.uint64)

    def _round_trip(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix64(right ^ k) & self.mask)
        return (left << self.half) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        y = self._round_trip(np.asarray(positions, dtype=np.uint64))
        out = y >= np.uint64(self.n)
        while out.any():
            y[out] = self._round_trip(y[out])
            out = y >= np.uint64(self.n)
        return y.astype(np.int64)


def largest_remainder_counts(proportions: dict[str, float], total: int) -> dict[str, int]:
    """Integer counts proportional to ``proportions`` that sum exactly to ``total``: floors of
    the quotas, then +1 to the largest remainders (ties: the earlier type). Deterministic."""
    names = list(proportions)
    s = sum(float(v) for v in proportions.values())
    quotas = [float(proportions[k]) / s * total for k in names]
    counts = [math.floor(q + 1e-9) for q in quotas]
    by_remainder = sorted(range(len(names)), key=lambda i: (-round(quotas[i] - counts[i], 9), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return dict(zip(names, counts))


class _ProportionalBatchSamplerImpl:
    """Batches of sample indices drawn from typed ranges in fixed proportions (KnowLM's
    per-batch mixing of zh / en / code). (Public as ``ProportionalBatchSampler``, a
    ``torch.utils.data.Sampler[list[int]]``.)

    * every batch holds ``counts_per_batch[t]`` samples of type ``t`` (largest-remainder
      rounding of ``proportions × batch_size``, summing exactly to ``batch_size``), grouped by
      type in the order of ``proportions``;
    * within a type, samples follow a seeded permutation per epoch of that type; when a type
      is exhausted its next epoch starts (types run through epochs independently);
    * batch ``k`` is a pure function of (ranges, proportions, batch_size, seed, k):
      ``start_step=k`` resumes exactly where an uninterrupted run was, in O(1) — nothing is
      replayed. ``num_steps`` is the END step of the run (exclusive), so a resumed sampler yields
      steps ``start_step … num_steps-1`` and ``len()`` is ``num_steps - start_step``; without
      it the sampler is endless.
    """

    def __init__(self, type_ranges: dict[str, tuple[int, int]], proportions: dict[str, float], batch_size: int,
                 seed: int = 0, start_step: int = 0, num_steps: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if start_step < 0 or (num_steps is not None and num_steps < start_step):
            raise ValueError(f"need 0 <= start_step <= num_steps, got start_step={start_step}, num_steps={num_steps}")
        unknown = sorted(set(proportions) - set(type_ranges))
        if unknown:
            raise ValueError(f"proportions name type(s) {unknown} that are not in the index; it has {sorted(type_ranges)}")
        bad = {k: v for k, v in proportions.items()
               if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0}
        if bad or not proportions or sum(proportions.values()) <= 0:
            raise ValueError(f"proportions must be finite, >= 0 and not all zero, got {dict(proportions)}")
        self.type_ranges = {k: (int(v[0]), int(v[1])) for k, v in type_ranges.items()}
        self.proportions = dict(proportions)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.num_steps = None if num_steps is None else int(num_steps)
        self.counts_per_batch = largest_remainder_counts(self.proportions, self.batch_size)
        for name, c in self.counts_per_batch.items():
            s, e = self.type_ranges[name]
            if self.proportions[name] > 0 and c == 0:
                raise ValueError(f"type {name!r} (proportion {self.proportions[name]}) rounds to 0 of {batch_size} "
                                 "samples per batch and would never be seen; raise batch_size or its proportion")
            if c and e <= s:
                raise ValueError(f"type {name!r} has no samples (range [{s}, {e})) but a proportion > 0")
        self._perm_cache: dict[tuple[str, int], FeistelPermutation] = {}

    def _perm(self, name: str, epoch: int) -> FeistelPermutation:
        key = (name, epoch)
        perm = self._perm_cache.get(key)
        if perm is None:
            s, e = self.type_ranges[name]
            if len(self._perm_cache) > 64:
                self._perm_cache.clear()
            perm = self._perm_cache[key] = FeistelPermutation(e - s, (self.seed, zlib.crc32(name.encode()), epoch))
        return perm

    def batch_at(self, step: int) -> list[int]:
        """The batch of step ``step`` (any step, in O(batch_size))."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        batch: list[int] = []
        for name, c in self.counts_per_batch.items():
            if not c:
                continue
            s, e = self.type_ranges[name]
            n = e - s
            pos = np.arange(step * c, step * c + c, dtype=np.int64)
            epochs, offsets = pos // n, pos % n
            picked = np.empty(c, np.int64)
            for ep in np.unique(epochs):
                sel = epochs == ep
                picked[sel] = s + self._perm(name, int(ep))(offsets[sel])
            batch.extend(picked.tolist())
        return batch

    def epoch_of(self, name: str, step: int) -> int:
        """The epoch of type ``name`` that batch ``step`` starts in."""
        s, e = self.type_ranges[name]
        return step * self.counts_per_batch[name] // (e - s)

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.num_steps is None or step < self.num_steps:
            yield self.batch_at(step)
            step += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("an endless ProportionalBatchSampler (num_steps=None) has no length")
        return self.num_steps - self.start_step


_TORCH_CLASSES = {"TokenIndexDataset": _TokenIndexDatasetImpl, "ProportionalBatchSampler": _ProportionalBatchSamplerImpl}


def __getattr__(name: str):
    """``TokenIndexDataset`` / ``ProportionalBatchSampler`` subclass torch's Dataset / Sampler,
    but importing torch costs ~1.5 s and ~200 MB, which every ``knowlm`` command (and every
    process that only writes or reads an index) would pay. So they are created on first use
    (PEP 562); ``from knowlm_utils.indexed import TokenIndexDataset`` and pickling work as usual."""
    impl = _TORCH_CLASSES.get(name)
    if impl is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import torch.utils.data

    base = torch.utils.data.Dataset if name == "TokenIndexDataset" else torch.utils.data.Sampler
    cls = type(name, (impl, base), {"__module__": __name__, "__qualname__": name, "__doc__": impl.__doc__})
    globals()[name] = cls
    return cls


# ============================================================================ synthetic ===
def write_synthetic_index(prefix: str | os.PathLike, num_samples: int, sample_len: int = 64,
                          vocab_size: int = 32000, samples_per_doc: int = 4, types: Sequence[str] = ("default",),
                          seed: int = 0, chunk_samples: int = 1 << 16, progress: bool = False) -> dict:
    """A random index for benchmarks and tests (lengths 1 … ``sample_len``), written through the
    real writer in constant memory; ``types`` are equal consecutive ranges."""
    rng = np.random.default_rng(seed)
    per_type = [num_samples // len(types) + (i < num_samples % len(types)) for i in range(len(types))]
    with MMapTokenIndexWriter(prefix, vocab_size, progress=progress) as writer:
        for name, count in zip(types, per_type):
            done = 0
            while done < count:
                k = min(chunk_samples, count - done)
                sizes = rng.integers(1, sample_len + 1, k)
                docs = np.full(k // samples_per_doc, samples_per_doc, np.int64)
                if k % samples_per_doc:
                    docs = np.append(docs, k % samples_per_doc)
                tokens = rng.integers(0, vocab_size, int(sizes.sum()), dtype=np.int64)
                writer.add_documents_flat(tokens, sizes, docs, type=name)
                done += k
        return writer.finalize({"synthetic": {"seed": seed, "sample_len": sample_len}})


# ============================================================================ CLI =========
def _load_sentencepiece(path: str):
    import sentencepiece as spm

    p = Path(path)
    model = p / "tokenizer.model" if p.is_dir() else p
    if not model.is_file():
        raise FileNotFoundError(f"{model}: no SentencePiece model (give a tokenizer folder or a .model file)")
    return spm.SentencePieceProcessor(model_file=str(model))


def _human(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""  # pragma: no cover


def inspect_index(prefix: str | os.PathLike, n: int = 5, tokenizer: str | None = None) -> str:
    """A readable summary: header facts, manifest, type ranges and the first ``n`` samples."""
    index = MMapTokenIndex(prefix)
    lines = [f"index     {index.prefix}",
             f"layout    Megatron MMIDIDX v{VERSION}, dtype {index.dtype} (code {CODE_OF_DTYPE[index.dtype]})",
             "files     " + ", ".join(f"{p.name} {_human(p.stat().st_size)}" for p in index.paths.values() if p.exists()),
             f"samples   {len(index):,}   documents {index.num_documents:,}   tokens {index.num_tokens:,}"]
    if len(index):
        sizes = index.sizes
        lines.append(f"lengths   min {int(sizes.min())}  mean {float(sizes.mean(dtype=np.float64)):.1f}  "
                     f"max {int(sizes.max())}")
    m = index.manifest
    if m is None:
        lines.append("manifest  none (not written by knowlm_utils; one type 'default')")
    else:
        facts = {k: m[k] for k in ("vocab_size", "split", "seq_length", "strategy") if k in m}
        tok = m.get("tokenizer")
        if isinstance(tok, dict) and tok.get("sha256"):
            facts["tokenizer_sha256"] = str(tok["sha256"])[:16]
        for k in ("merge", "source", "synthetic"):
            if k in m:
                facts[k] = "yes"
        lines.append("manifest  " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    lines.append("types")
    for name, (s, e) in index.type_ranges.items():
        t = (m or {}).get("types", {}).get(name, {})
        docs = t.get("documents", [0, index.num_documents])
        tokens = (index._byte_at(e) - index._byte_at(s)) // index.dtype.itemsize
        lines.append(f"  {name:<10} samples [{s}, {e})  documents [{docs[0]}, {docs[1]})  tokens {tokens:,}")
    sp = _load_sentencepiece(tokenizer) if tokenizer else None
    dataset = _TokenIndexDatasetImpl(index)
    for i in range(min(n, len(index))):
        ids = index[i].tolist()
        lines.append(f"sample {i} (type {dataset.type_of(i)}, document {index.document_of(i)}, {len(ids)} tokens)")
        if sp is not None:
            text = sp.decode([int(t) for t in ids])
            lines.append("  " + (text if len(text) <= 300 else text[:300] + " …").replace("\n", "\\n"))
        else:
            lines.append("  " + " ".join(map(str, ids[:40])) + (" …" if len(ids) > 40 else ""))
    return "\n".join(lines)


def add_cli(subparsers) -> None:
    """``knowlm index inspect|merge|import-knowlm``."""
    p = subparsers.add_parser("index", help="stage 04: inspect, merge or import memory-mapped token indexes")
    sub = p.add_subparsers(dest="index_cmd", required=True)
    i = sub.add_parser("inspect", help="header facts, manifest, type ranges and the first samples")
    i.add_argument("prefix", help="index prefix (PREFIX.bin / PREFIX.idx)")
    i.add_argument("-n", type=int, default=5, help="samples to show (default 5)")
    i.add_argument("--tokenizer", help="decode samples with this SentencePiece model (folder or .model file)")
    i.set_defaults(func=_cli_inspect)
    m = sub.add_parser("merge", help="merge indexes (streaming, atomic)")
    m.add_argument("out_prefix")
    m.add_argument("in_prefixes", nargs="+", metavar="IN_PREFIX")
    m.add_argument("--typed", action="store_true", help="one contiguous range per type (same-named types merged)")
    m.add_argument("--types", help="comma-separated type name for each input (inputs without a manifest)")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=_cli_merge)
    k = sub.add_parser("import-knowlm", help="convert KnowLM's pretrain/preprocess.py .bin/.idx")
    k.add_argument("--bin", required=True, help="KnowLM .bin (uint16 ids)")
    k.add_argument("--idx", required=True, help="KnowLM .idx (uint64 starts + uint16 lengths)")
    k.add_argument("--out", required=True, help="output prefix")
    k.add_argument("--vocab-size", type=int, default=65536)
    k.add_argument("--type", default="default", help="type name of the imported samples")
    k.add_argument("--no-progress", action="store_true")
    k.set_defaults(func=_cli_import)


def _summary(manifest: dict) -> str:
    types = ", ".join(f"{k} {v['samples']}" for k, v in manifest["types"].items()) or "-"
    return (f"{manifest['num_samples']} samples, {manifest['num_documents']} documents, {manifest['num_tokens']} tokens "
            f"({manifest['dtype']}); types: {types}")


def _cli_inspect(args: argparse.Namespace) -> int:
    print(inspect_index(args.prefix, args.n, args.tokenizer))
    return 0


def _cli_merge(args: argparse.Namespace) -> int:
    types = [t.strip() for t in args.types.split(",")] if args.types else None
    manifest = merge_indexes(args.in_prefixes, args.out_prefix, typed=args.typed, types=types,
                             progress=not args.no_progress)
    print(f"merged {len(args.in_prefixes)} indexes -> {args.out_prefix}: {_summary(manifest)}")
    return 0


def _cli_import(args: argparse.Namespace) -> int:
    manifest = import_knowlm_legacy(args.bin, args.idx, args.out, args.vocab_size, args.type,
                                    progress=not args.no_progress)
    skipped = manifest["source"]["skipped_empty_samples"]
    print(f"imported {args.bin} -> {args.out}: {_summary(manifest)}; skipped empty samples: {skipped}")
    return 0
