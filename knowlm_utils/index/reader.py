"""Reading a token index: :class:`MMapTokenIndex` and :func:`read_manifest`.

The reader memory-maps both files read-only and never copies the arrays: opening a 5 M-sample
index costs kilobytes of RAM, not the hundreds of MB that Python lists take. It also owns the
manifest's *type ranges* (which sample belongs to ``zh``/``en``/``code`` …).
"""

from __future__ import annotations

import bisect
import json
import mmap
import operator
import os
from typing import Iterator

import numpy as np

from . import format as fmt
from .format import (DTYPE_OF_CODE, FORMAT_NAME, HEADER, MAGIC, VERSION, IndexFormatError, _prefix, _short,
                     index_paths)


def read_manifest(prefix: str | os.PathLike) -> dict | None:
    """The index's JSON manifest, or ``None`` when it has none (e.g. a Megatron-built index)."""
    path = index_paths(prefix)["manifest"]
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, a 5000-digit number, absurd nesting
        raise IndexFormatError(f"{path}: not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(manifest, dict):
        raise IndexFormatError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise IndexFormatError(f"{path}: format is {_short(manifest.get('format'))}, expected {FORMAT_NAME!r}")
    return manifest


class MMapTokenIndex:
    """Read-only, memory-mapped view of ``PREFIX.{bin,idx}`` (+ manifest when present).

    ``index[i]`` is a zero-copy numpy view of sample ``i``'s token ids; ``sizes``,
    ``pointers`` and ``doc_idx`` are views of the ``.idx`` file. Nothing is copied into RAM,
    so opening is instant and memory stays small whatever the corpus size.
    ``type_ranges`` maps each type to its sample range ``[start, end)`` (from the manifest; one
    type ``default`` without one) and ``type_of(i)`` names the type of sample ``i``.

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
        self._type_starts = [r[0] for r in self.type_ranges.values()]
        self._type_names = list(self.type_ranges)

    # ------------------------------------------------------------------ validation ---------
    def _validate_full(self) -> None:
        """One pass over the ``.idx`` arrays: lengths >= 0, pointers = running byte offsets
        from 0 (samples back to back), a document index that never decreases."""
        idx_path = self.paths["idx"]
        # steps of CHUNK_ITEMS / 16 entries (64 Ki: 512 KiB of int64) stay in the CPU cache: about
        # twice as fast as 1 Mi-entry steps on a 5 M-sample index
        step = max(1, fmt.CHUNK_ITEMS // 16)
        carry = 0  # byte offset where the next sample must start
        for a in range(0, len(self), step):
            sizes = self.sizes[a:a + step]
            if sizes.min() < 0:
                k = a + int(np.argmax(sizes < 0))
                raise IndexFormatError(f"{idx_path}: sample {k} has negative length {int(self.sizes[k])}")
            ends = np.cumsum(sizes, dtype=np.int64)  # token ends, then byte ends, of this step's samples
            ends *= self._itemsize
            ends += carry
            got = self.pointers[a:a + step]
            if int(got[0]) != carry or not np.array_equal(got[1:], ends[:-1]):
                expect = np.concatenate(([carry], ends[:-1]))
                k = int(np.argmax(got != expect))
                raise IndexFormatError(f"{idx_path}: sample {a + k} points to byte {int(got[k])} of the .bin, expected "
                                       f"{int(expect[k])} (samples are stored back to back)")
            carry = int(ends[-1])
        prev = 0
        for a in range(0, len(self.doc_idx), step):
            chunk = self.doc_idx[a:a + step]
            if int(chunk[0]) < prev or not (chunk[1:] >= chunk[:-1]).all():
                steps = np.diff(chunk, prepend=prev)
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
                raise IndexFormatError(f"{path}: {key} is {_short(m[key])} but {self.paths['idx'].name}/"
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
                raise IndexFormatError(f"{path}: type {_short(name)} needs 'samples' and 'documents' as "
                                       "[start, end]") from exc
            if s != expect_start or not s <= e <= len(self) or not 0 <= ds <= de <= self.num_documents:
                raise IndexFormatError(f"{path}: type {_short(name)} covers samples [{s}, {e}) / documents "
                                       f"[{ds}, {de}); "
                                       f"types must tile samples [0, {len(self)}) in order")
            if int(self.doc_idx[ds]) != s or int(self.doc_idx[de]) != e:
                raise IndexFormatError(f"{path}: type {_short(name)}: documents [{ds}, {de}) span samples "
                                       f"[{int(self.doc_idx[ds])}, {int(self.doc_idx[de])}), not [{s}, {e})")
            tokens = (self._byte_at(e) - self._byte_at(s)) // self._itemsize
            if "tokens" in t and t["tokens"] != tokens:
                raise IndexFormatError(f"{path}: type {_short(name)} says {_short(t['tokens'])} tokens, the index "
                                       f"holds {tokens}")
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

    def type_of(self, i: int) -> str:
        """The type whose range holds sample ``i`` (negative ``i`` allowed)."""
        n = len(self)
        k = operator.index(i)
        if not -n <= k < n:
            raise IndexError(f"sample {i} out of range ({n} samples)")
        k %= n
        return self._type_names[bisect.bisect_right(self._type_starts, k) - 1]

    def __repr__(self) -> str:
        return (f"MMapTokenIndex({str(self.prefix)!r}: {len(self)} samples, {self.num_documents} documents, "
                f"{self.num_tokens} tokens, {self.dtype})")

    def __getstate__(self) -> dict:  # DataLoader workers reopen the files instead of pickling maps
        return {"prefix": str(self.prefix)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["prefix"], validate="quick")
