"""``TokenIndexDataset``: a ``torch.utils.data.Dataset`` over a memory-mapped token index.

torch is imported only when ``TokenIndexDataset`` is first used (PEP 562), so importing this
module stays cheap for processes that never build a DataLoader.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..index import MMapTokenIndex
from .lazy_torch import torch_class


class _TokenIndexDatasetImpl:
    """``dataset[i] -> {"input_ids": LongTensor}`` over an index (or its prefix); ``type_of(i)``
    names the type range that sample ``i`` lies in. (Public as ``TokenIndexDataset``, a
    ``torch.utils.data.Dataset``.)"""

    def __init__(self, index: MMapTokenIndex | str | os.PathLike):
        self.index = index if isinstance(index, MMapTokenIndex) else MMapTokenIndex(index)
        self.type_ranges = self.index.type_ranges

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        return {"input_ids": torch.from_numpy(self.index[i].astype(np.int64))}

    def type_of(self, i: int) -> str:
        return self.index.type_of(i)


def __getattr__(name: str):
    """``TokenIndexDataset`` is created on first use (see :mod:`knowlm_utils.train.lazy_torch`)."""
    if name != "TokenIndexDataset":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return torch_class(globals(), name, _TokenIndexDatasetImpl, "Dataset")
