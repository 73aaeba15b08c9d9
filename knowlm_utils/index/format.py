"""The on-disk format of a token index: Megatron-LM's ``MMapIndexedDataset`` layout + a JSON manifest.

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

Everything is int64 arithmetic (Megatron once computed pointers in int32 and broke > 2 GB
files).

This module holds the constants of that layout, path and dtype rules, and the small file
helpers the writer shares with merge and import.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import temp_file_beside

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
# samples / document entries processed per streaming step. The other modules read it as
# ``format.CHUNK_ITEMS`` at call time, so one assignment (the tests' tiny chunks) reaches them all.
CHUNK_ITEMS = 1 << 20


class IndexFormatError(ValueError):
    """An index file is malformed or inconsistent; the message names the file and the problem."""


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages never echo a huge value."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"manifest value of type {type(obj).__name__} is not JSON serialisable: {obj!r}")


def _mkstemp(final: Path, role: str) -> Path:
    fd, tmp = temp_file_beside(final, f".{role}.tmp")
    os.close(fd)
    return tmp
