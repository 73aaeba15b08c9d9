"""Verifying a whole token index: :func:`verify_index` (``knowlm index verify PREFIX``).

Opening an index (:class:`~.reader.MMapTokenIndex`) checks the header, the file sizes, the
``.idx`` arrays and the manifest's counts and type ranges, but never reads the ``.bin``: a token
id beyond the vocabulary (a flipped byte, a file from another tokenizer, a manifest whose
``vocab_size`` was edited down) only shows up when a model looks it up in its embedding table.
:func:`verify_index` is the opt-in full scan that also reads every token id, in bounded chunks
(constant memory, sequential reads at close to disk speed), so it scales to terabyte indexes.
``merge_indexes`` runs it on every input before writing; ``knowlm index inspect --verify`` and
``knowlm index verify`` expose it.
"""

from __future__ import annotations

import os
import time

import numpy as np
from tqdm import tqdm

from . import format as fmt
from .format import IndexFormatError, _short
from .reader import MMapTokenIndex

# keys every manifest written by this project holds
REQUIRED_MANIFEST_KEYS = ("dtype", "vocab_size", "num_samples", "num_documents", "num_tokens", "types")


def verify_index(prefix: str | os.PathLike, progress: bool = False) -> dict:
    """Check every byte of ``PREFIX.{bin,idx,manifest.json}`` that a reader relies on.

    * ``.idx``: header and sizes; sample lengths >= 0; pointers = running byte offsets from 0
      (samples back to back), ending at the ``.bin`` size; the document index starts at 0, never
      decreases and ends at N;
    * ``.bin``: every token id in ``[0, vocab_size)`` (the manifest's ``vocab_size``; without one,
      the dtype's range, ids >= 0);
    * manifest (when present): every count key present and equal to what the files hold, a
      ``vocab_size`` that fits the dtype, types tiling samples AND documents in order, each with
      its true token count.

    Streams with constant memory whatever the size: the ``.idx`` in steps of entries and the
    ``.bin`` in sequential reads of ``format.CHUNK_ITEMS`` bytes (1 MiB) into one reused buffer
    — a step small enough to stay in the CPU cache, so checking the ids costs little more than
    reading them. Raises :class:`IndexFormatError` with a one-line message naming the file and
    the first bad position/value; returns a summary: counts, largest id, bytes read, seconds
    and throughput.
    """
    t0 = time.perf_counter()
    index = MMapTokenIndex(prefix, validate="quick")  # header, sizes, document-index ends, manifest
    index._validate_full()                             # lengths, pointers, document index: one .idx pass
    t_idx = time.perf_counter() - t0
    vocab = _check_manifest(index)
    max_id = _scan_bin(index, vocab, progress)
    seconds = time.perf_counter() - t0
    bin_bytes, idx_bytes = index.num_tokens * index.dtype.itemsize, index.paths["idx"].stat().st_size
    return {
        "prefix": str(index.prefix), "dtype": index.dtype.name, "vocab_size": vocab,
        "num_samples": len(index), "num_documents": index.num_documents, "num_tokens": index.num_tokens,
        "max_id": max_id,
        "types": {name: list(r) for name, r in index.type_ranges.items()},
        "bin_bytes": bin_bytes, "idx_bytes": idx_bytes, "idx_seconds": t_idx, "seconds": seconds,
        "tokens_per_s": index.num_tokens / seconds if seconds > 0 else float("inf"),
        "bytes_per_s": (bin_bytes + idx_bytes) / seconds if seconds > 0 else float("inf"),
    }


def _check_manifest(index: MMapTokenIndex) -> int | None:
    """The manifest checks the reader leaves lenient (missing keys, vocab_size, document tiling);
    returns the vocabulary bound of the ids (``None`` without one)."""
    if index.dtype.kind not in "iu":
        raise IndexFormatError(f"{index.paths['idx']}: dtype {index.dtype} cannot hold token ids")
    m, path = index.manifest, index.paths["manifest"]
    if m is None:
        return None
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in m]
    if missing:
        raise IndexFormatError(f"{path}: lacks {missing} (every manifest this project writes holds them)")
    for key in ("num_samples", "num_documents", "num_tokens"):  # the reader compared the values; here: types
        if isinstance(m[key], bool) or not isinstance(m[key], int):
            raise IndexFormatError(f"{path}: {key} must be an integer, got {_short(m[key])}")
    vocab = m["vocab_size"]
    if vocab is not None:
        if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
            raise IndexFormatError(f"{path}: vocab_size must be a positive integer or null, got {_short(vocab)}")
        if vocab - 1 > np.iinfo(index.dtype).max:
            raise IndexFormatError(f"{path}: vocab_size {vocab} has ids up to {vocab - 1}, which do not fit the "
                                   f"{index.dtype} ids of {index.paths['idx'].name}")
    if not isinstance(m["types"], dict):
        raise IndexFormatError(f"{path}: 'types' must be an object of type ranges, got {_short(m['types'])}")
    doc_end = 0
    for name, t in m["types"].items():  # sample tiling and doc_idx agreement: checked by the reader
        ds, de = (int(x) for x in t["documents"])
        if ds != doc_end:
            raise IndexFormatError(f"{path}: type {_short(name)} covers documents [{ds}, {de}), but the types "
                                   f"before it end at document {doc_end}: types must tile documents "
                                   f"[0, {index.num_documents}) in order")
        if "tokens" not in t:
            raise IndexFormatError(f"{path}: type {_short(name)} lacks its 'tokens' count")
        doc_end = de
    if doc_end != index.num_documents:
        raise IndexFormatError(f"{path}: types cover documents [0, {doc_end}) of {index.num_documents}")
    return vocab


def _scan_bin(index: MMapTokenIndex, vocab: int | None, progress: bool) -> int | None:
    """Read the ``.bin`` sequentially into one reused buffer; every id must lie in
    ``[0, limit)`` (the minimum is only computed for signed dtypes). Returns the largest id
    (``None`` for an empty index)."""
    path, dtype = index.paths["bin"], index.dtype.newbyteorder("<")
    limit = vocab if vocab is not None else int(np.iinfo(dtype).max) + 1
    signed = dtype.kind == "i"
    total = index.num_tokens
    buf = np.empty(max(1, min(total, fmt.CHUNK_ITEMS // dtype.itemsize)), dtype)
    raw = memoryview(buf).cast("B")
    hi = None
    done = 0
    with open(path, "rb", buffering=0) as fh, \
            tqdm(total=total * dtype.itemsize, unit="B", unit_scale=True, desc=f"verify {index.prefix.name}",
                 leave=False, disable=not progress) as bar:  # leave=False: an error stays the last line
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while done < total:
            count = min(len(buf), total - done)
            want, got = count * dtype.itemsize, 0
            while got < want:
                k = fh.readinto(raw[got:want])
                if not k:
                    raise IndexFormatError(f"{path}: ended at byte {done * dtype.itemsize + got}, but "
                                           f"{index.paths['idx'].name} needs {total * dtype.itemsize} (the file "
                                           "shrank while being verified)")
                got += k
            chunk = buf[:count]
            cmax = int(chunk.max())
            if cmax >= limit or (signed and int(chunk.min()) < 0):
                p = int(np.argmax((chunk >= limit) | (chunk < 0)))
                raise IndexFormatError(_bad_id_message(index, vocab, limit, done + p, int(chunk[p])))
            hi = cmax if hi is None else max(hi, cmax)
            done += count
            bar.update(want)
    return hi


def _bad_id_message(index: MMapTokenIndex, vocab: int | None, limit: int, pos: int, value: int) -> str:
    sample = int(np.searchsorted(index.pointers, pos * index.dtype.itemsize, side="right")) - 1
    document = int(np.searchsorted(index.doc_idx, sample, side="right")) - 1
    bound = (f"vocab_size {vocab} of {index.paths['manifest'].name}" if vocab is not None
             else f"the {index.dtype} range")
    return (f"{index.paths['bin']}: token {pos} (sample {sample}, document {document}) is id {value}, outside "
            f"[0, {limit}) ({bound})")

