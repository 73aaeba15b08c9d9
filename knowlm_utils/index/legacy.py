"""Importing KnowLM's own ``pretrain/preprocess.py`` output: :func:`import_knowlm_legacy`.

KnowLM's pickled ``.dis``/``.tmp`` side files are never read: unpickling runs arbitrary code.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import format as fmt
from .format import IndexFormatError
from .writer import MMapTokenIndexWriter


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
        for a in range(0, n, fmt.CHUNK_ITEMS):
            st = starts[a:a + fmt.CHUNK_ITEMS]
            ln = lengths[a:a + fmt.CHUNK_ITEMS].astype(np.int64)
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
