"""Writing a token index: :class:`MMapTokenIndexWriter`.

* The writer streams with constant memory: tokens go to a temp ``.bin``, lengths and document
  ends to temp side files; the ``.idx`` is assembled at the end by streaming those files
  (pointers = running byte offsets, chunk by chunk with a carry).
* Writes are atomic: all files are written under temp names in the destination folder and
  renamed at the end — ``.bin``, then the manifest, then the ``.idx`` LAST. The ``.idx`` is the
  commit marker: a killed run leaves no ``.idx`` and therefore nothing that opens (only hidden
  ``.PREFIX.*.tmp`` files, safe to delete).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from ..fileio import fsync_dir, write_json_atomic
from . import format as fmt
from .format import (CODE_OF_DTYPE, FORMAT_NAME, FORMAT_VERSION, HEADER, MAGIC, RESERVED_MANIFEST_KEYS, VERSION,
                     _json_default, _mkstemp, dtype_for_vocab, index_paths)


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
            fsync_dir(self.paths["idx"].parent)
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
                while chunk := fh.read(4 * fmt.CHUNK_ITEMS):
                    out.write(chunk)
            carry = 0
            with open(self._tmp["sizes"], "rb") as fh:  # pointers: running byte offsets
                while (sizes := np.fromfile(fh, dtype="<i4", count=fmt.CHUNK_ITEMS)).size:
                    nbytes = sizes.astype(np.int64) * itemsize
                    pointers = np.empty_like(nbytes)
                    pointers[0] = carry
                    np.cumsum(nbytes[:-1], out=pointers[1:])
                    pointers[1:] += carry
                    carry += int(nbytes.sum())
                    out.write(pointers.astype("<i8", copy=False).tobytes())
            out.write(np.zeros(1, "<i8").tobytes())  # document index starts at sample 0
            with open(self._tmp["docs"], "rb") as fh:
                while chunk := fh.read(8 * fmt.CHUNK_ITEMS):
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
