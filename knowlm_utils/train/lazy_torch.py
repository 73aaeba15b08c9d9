"""Torch base classes on first use (PEP 562): ``TokenIndexDataset`` and
``ProportionalBatchSampler`` subclass torch's ``Dataset`` / ``Sampler``, but importing torch
costs ~1.5 s and ~200 MB, which every process that only reads an index or plans batches would
pay. Their modules define the class body as ``_…Impl`` and create the public class here the
first time it is asked for; ``from … import Name`` and pickling work as usual."""

from __future__ import annotations

from typing import Any


def torch_class(module_globals: dict[str, Any], name: str, impl: type, torch_base: str) -> type:
    """``name`` = ``impl`` + ``torch.utils.data.<torch_base>``, cached in the module's globals."""
    import torch.utils.data

    cls = type(name, (impl, getattr(torch.utils.data, torch_base)),
               {"__module__": module_globals["__name__"], "__qualname__": name, "__doc__": impl.__doc__})
    module_globals[name] = cls
    return cls
