"""Stage 04 storage — a memory-mapped token index in Megatron-LM's ``MMapIndexedDataset`` layout.

``PREFIX.bin`` (token ids) + ``PREFIX.idx`` (Megatron's index) + ``PREFIX.manifest.json``
(counts and the zh / en / code *type ranges*); the layout is documented in :mod:`.format`.
Modules: ``format`` (layout, constants), ``writer``, ``reader``, ``merge``, ``legacy`` (KnowLM's
own files), ``synthetic`` (random indexes), ``verify`` (the opt-in full scan of every token id
and index entry), ``inspect`` (summaries and the ``knowlm index`` command). The torch
``Dataset`` and batch sampler over an index live in :mod:`knowlm_utils.train`; importing this
package does not import torch.
"""

from .format import (CODE_OF_DTYPE, DTYPE_OF_CODE, FORMAT_NAME, FORMAT_VERSION, HEADER, MAGIC,
                     RESERVED_MANIFEST_KEYS, VERSION, IndexFormatError, dtype_for_vocab, index_paths)
from .inspect import add_cli, describe_sample, inspect_index
from .legacy import import_knowlm_legacy
from .merge import merge_indexes
from .reader import MMapTokenIndex, read_manifest
from .synthetic import write_synthetic_index
from .verify import verify_index
from .writer import MMapTokenIndexWriter

__all__ = ["MAGIC", "VERSION", "HEADER", "DTYPE_OF_CODE", "CODE_OF_DTYPE", "FORMAT_NAME", "FORMAT_VERSION",
           "RESERVED_MANIFEST_KEYS", "IndexFormatError", "dtype_for_vocab", "index_paths", "MMapTokenIndexWriter",
           "MMapTokenIndex", "read_manifest", "merge_indexes", "import_knowlm_legacy", "write_synthetic_index",
           "verify_index", "inspect_index", "describe_sample", "add_cli"]
