"""LoRA's input dropout with masks drawn as integers: :class:`IntegerMaskDropout`, and
:func:`use_integer_mask_dropout`, which puts it in place of the ``nn.Dropout`` modules PEFT
creates for LoRA layers.

Why: on a CPU, ``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``, one float per
element from the CPU generator, and on the course model that was the largest single cost of an
SFT step after the matrix products — 22.5 % of a ``cpu-long`` step in a profile (28 dropouts per
step: LoRA on 7 projections × 4 layers, each drawing its own mask). Drawing 64-bit integers with
``random_``, cutting each into four 15-bit ones and comparing those with ``round(p × 32768)``
costs a fraction of that for the same distribution: every element is zeroed independently with
probability ``round(p × 32768) / 32768`` (within 1/65,536 of ``p``) and the others are scaled by
``1 / (1 − p_used)``, exactly as ``nn.Dropout`` does. ``benchmarks/bench_sft_step_time.py
--compare dropout`` measures the step time against PEFT's own dropout. On CUDA tensors the
module calls torch's fused dropout, which is already fast there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_LEVELS = 32768  # random_() on int16 draws uniformly from 0 … 32767


class IntegerMaskDropout(torch.nn.Module):
    """``nn.Dropout(p)`` with its CPU mask drawn as 15-bit integers (see the module's text).
    ``p`` is the configured rate; ``p_used`` the rate actually applied (a multiple of 1/32,768)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.threshold = round(self.p * _LEVELS)
        self.p_used = self.threshold / _LEVELS
        self.scale = 1.0 / (1.0 - self.p_used)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        return x * self.mask(x.shape, x.dtype)

    def mask(self, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """A CPU dropout mask of ``shape``: 0 with probability ``p_used``, else ``scale``. One
        64-bit draw (63 random bits) gives four 15-bit integers."""
        n = shape.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()
        draws = words.view(torch.int16)[:n].view(shape) & (_LEVELS - 1)
        return (draws >= self.threshold).to(dtype).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}, p_used={self.p_used:.6f}"


def use_integer_mask_dropout(model) -> int:
    """Replace the ``nn.Dropout`` of every PEFT LoRA layer in ``model`` (``lora_dropout[adapter]``)
    by an :class:`IntegerMaskDropout` of the same rate; returns how many were replaced (LoRA
    dropout 0 makes PEFT use ``nn.Identity``, which stays)."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, layer in dropouts.items():
            if type(layer) is torch.nn.Dropout:
                dropouts[name] = IntegerMaskDropout(layer.p)
                replaced += 1
    return replaced


__all__ = ["IntegerMaskDropout", "use_integer_mask_dropout"]
