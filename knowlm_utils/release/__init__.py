"""Stage 09: releasing and recovering weights — KnowLM's weight diffs and Chinese-LLaMA-Alpaca's
LoRA merge, streamed so that memory does not grow with the model, and verified tensor by tensor.

==================  ==========================================================================
module              what it is
==================  ==========================================================================
``tensors``         reading a model folder lazily: sharded/single safetensors (byte-range reads),
                    legacy ``pytorch_model-*.bin`` (``torch.load(weights_only=True)``), blocks of rows
``shards``          writing sharded safetensors block by block (byte-identical to the library's)
``output``          the resumable, atomic output folder (``.OUT.partial``, one record per shard)
``manifest``        canonical tensor hashes (name, dtype, shape, bytes) and ``knowlm-release.json``
``checksums``       ``SHA256SUMS``/``MD5SUMS`` lists (``sha256sum -c`` format); ``knowlm checksum``
``diff``            :func:`make_diff` / :func:`recover` (tuned = raw + diff, KnowLM's arithmetic)
``merge``           :func:`merge_lora` (several adapters, extended vocabulary), :func:`verify_merge`
``gguf_export``     :func:`export_gguf` / :func:`check_gguf` (llama.cpp's format, read back)
``hub``             :func:`download` / :func:`upload` over ``huggingface_hub``; ``knowlm hub``
``cli``             ``knowlm weights make-diff|recover|merge-lora|export-gguf|verify|manifest``
``memory``          time and peak RSS of one operation in a fresh process, streamed or in memory
``naming``          torch-free helpers the CLI modules share
==================  ==========================================================================

Every function returns a small dataclass (``.summary()`` one line, ``.to_dict()``) for notebooks.
The names below are imported on first use, so ``knowlm --help`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "make_diff": "diff", "recover": "diff", "DiffResult": "diff", "RecoverResult": "diff",
    "merge_lora": "merge", "verify_merge": "merge", "MergeResult": "merge", "LogitCheck": "merge",
    "export_gguf": "gguf_export", "check_gguf": "gguf_export", "GGUFResult": "gguf_export", "GGUFCheck": "gguf_export",
    "download": "hub", "upload": "hub", "verify_folder": "hub", "DownloadResult": "hub", "UploadResult": "hub",
    "make_checksums": "checksums", "verify_checksums": "checksums",
    "make_manifest": "manifest", "verify_model": "manifest", "read_manifest": "manifest", "hash_tensor": "manifest",
    "ModelFiles": "tensors", "measure": "memory",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
