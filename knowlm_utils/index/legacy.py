"""Importing KnowLM's own ``pretrain/preprocess.py`` output: :func:`import_knowlm_legacy`.

KnowLM's pickled ``.dis``/``.tmp`` side files are never read: unpickling runs arbitrary code.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import format as fmt
from .format import IndexFormatError, dtype_for_vocab, index_paths
from .writer import MMapTokenIndexWriter


def import_knowlm_legacy(bin_path: str | os.PathLike, idx_path: str | os.PathLike, out_prefix: str | os.PathLike,
                         vocab_size: int = 65536, type: str = "default", progress: bool = False) -> dict:
    """Convert KnowLM's own ``pretrain/preprocess.py`` output into this format.

    KnowLM's ``.bin`` is raw uint16 ids; its ``.idx`` is N uint64 start positions counted in
    TOKENS followed by N uint16 lengths (no header, N = size / 10), and it has no document index
    — so every sample becomes its own document (recorded in the manifest). KnowLM writes its
    samples back to back (each starts where the previous one ended; text its chunker extends
    backward is stored again in the next sample), and its own reader asserts exactly that.

    Nothing is written before both files are checked, streaming over the ``.idx``: sizes (a
    multiple of 10 / of 2), every sample within the ``.bin``, samples back to back from token 0
    and ending exactly at the end of the ``.bin`` — so an ``.idx`` cut short (whose lengths then
    start inside the starts) or a ``.bin`` from another run is refused with a one-line error
    naming the file and the sizes, never imported as garbage. Token ids are checked against
    ``vocab_size`` while copying (the output is removed on error). Zero-length samples are
    skipped and counted. KnowLM's pickled ``.dis``/``.tmp`` files are never read (unpickling
    runs arbitrary code).
    """
    bin_path, idx_path = Path(bin_path), Path(idx_path)
    for p in (bin_path, idx_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    if not isinstance(type, str) or not type:
        raise ValueError(f"type must be a non-empty string, got {type!r}")
    dtype_for_vocab(vocab_size)  # a valid vocab_size, before reading anything
    out = index_paths(out_prefix)
    for p in out.values():
        if p.exists() and any(os.path.samefile(p, q) for q in (bin_path, idx_path)):
            raise ValueError(f"the output {p} is also an input; import into a new prefix (the KnowLM files would "
                             "be replaced)")
    idx_size, bin_size = idx_path.stat().st_size, bin_path.stat().st_size
    if bin_size % 2:
        raise IndexFormatError(f"{bin_path}: {bin_size} bytes is not a multiple of 2 (KnowLM's .bin holds uint16 ids)")
    n, total = idx_size // 10, bin_size // 2
    idx_mm = np.memmap(idx_path, np.uint8, "r") if idx_size else np.zeros(0, np.uint8)
    if idx_size % 10:
        hint = _size_hint(idx_mm, -1, total)
        raise IndexFormatError(f"{idx_path}: {idx_size} bytes is not a multiple of 10 (KnowLM's .idx holds N × "
                               f"uint64 starts + N × uint16 lengths{'; ' + hint if hint else ''}): the file is "
                               "truncated or is not a KnowLM .idx")
    bin_tokens = np.memmap(bin_path, "<u2", "r") if bin_size else np.zeros(0, "<u2")
    _check_layout(idx_mm, bin_path, idx_path)
    starts, lengths = idx_mm[:8 * n].view("<u8"), idx_mm[8 * n:].view("<u2")
    skipped = 0
    with MMapTokenIndexWriter(out_prefix, vocab_size, progress=progress) as writer:
        for a in range(0, n, fmt.CHUNK_ITEMS):
            st = starts[a:a + fmt.CHUNK_ITEMS]
            ln = lengths[a:a + fmt.CHUNK_ITEMS].astype(np.int64)
            keep = ln > 0
            skipped += int((~keep).sum())
            st, ln, numbers = st[keep].astype(np.int64), ln[keep], np.flatnonzero(keep) + a
            # bounded pieces of about 16 M tokens; samples lie back to back (checked above), so
            # a piece's ids are one contiguous slice of the .bin
            ends = np.cumsum(ln)
            c = 0
            while c < len(ln):
                stop = max(c + 1, int(np.searchsorted(ends, (ends[c - 1] if c else 0) + (16 << 20), side="right")))
                pst, pln = st[c:stop], ln[c:stop]
                ids = bin_tokens[int(pst[0]):int(pst[0]) + int(pln.sum())]
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


def _check_layout(idx_mm: np.ndarray, bin_path: Path, idx_path: Path) -> None:
    """KnowLM's layout, streamed chunk by chunk over the ``.idx``: every sample inside the
    ``.bin``, each starting where the previous one ended (from token 0), the last ending at the
    end of the ``.bin``. The first violation is a one-line :class:`IndexFormatError`."""
    idx_size, bin_size = len(idx_mm), bin_path.stat().st_size
    n, total = idx_size // 10, bin_size // 2
    starts, lengths = idx_mm[:8 * n].view("<u8"), idx_mm[8 * n:].view("<u2")
    end = 0  # where the next sample must start
    for a in range(0, n, fmt.CHUNK_ITEMS):
        st = starts[a:a + fmt.CHUNK_ITEMS]
        ln = lengths[a:a + fmt.CHUNK_ITEMS].astype(np.int64)
        outside = (st > np.uint64(total)) | (st.astype(np.int64, copy=False) > total - ln)
        st = st.astype(np.int64)  # exact wherever not outside
        expect = np.empty_like(st)
        expect[0] = end
        expect[1:] = (st + ln)[:-1]
        bad = outside | (st != expect)
        if bad.any():
            k = int(np.argmax(bad))
            s0, l0 = int(starts[a + k]), int(ln[k])
            if outside[k]:
                what = f"sample {a + k} spans tokens [{s0}, {s0 + l0}) but {bin_path.name} holds {total} tokens"
            else:
                what = (f"sample {a + k} starts at token {s0}, but " + (f"sample {a + k - 1} ends at token "
                        f"{int(expect[k])}" if a + k else "the first sample starts at token 0")
                        + " (KnowLM writes samples back to back)")
            hint = _size_hint(idx_mm, n, total)
            raise IndexFormatError(f"{idx_path}: {idx_size} bytes = {n} samples{' (' + hint + ')' if hint else ''}; "
                                   f"{what}: the .idx is truncated, padded or does not belong to {bin_path} "
                                   f"({bin_size} bytes)")
        end = int(st[-1] + ln[-1])
    if end != total:
        raise IndexFormatError(f"{bin_path}: {bin_size} bytes, but the {n} samples of {idx_path.name} "
                               f"({idx_size} bytes) end at token {end}, i.e. a {2 * end}-byte .bin: one of the two files is truncated, "
                               "or they do not belong together")


def _size_hint(idx_mm: np.ndarray, n: int, total: int) -> str:
    """On the error path only: how many leading uint64 values of the ``.idx`` read as sample
    starts (0, never decreasing, within the ``.bin``). When an ``.idx`` is cut short, the run goes
    on past the N = size / 10 the size implies (the lengths then begin inside the starts), so it
    tells the size the file should have."""
    values = idx_mm[:len(idx_mm) // 8 * 8].view("<u8")
    run, prev = 0, 0
    for a in range(0, len(values), fmt.CHUNK_ITEMS):
        v = values[a:a + fmt.CHUNK_ITEMS]
        ok = (v <= np.uint64(total)) & (v >= np.uint64(prev)) & np.append(True, v[1:] >= v[:-1])
        if a == 0 and v.size:
            ok[0] = v[0] == 0
        if not ok.all():
            run = a + int(np.argmin(ok))
            break
        run, prev = a + v.size, int(v[-1])
    if run == n or run == 0:
        return ""
    return f"expected {10 * run} bytes: its first {run} uint64 values read as sample starts"
