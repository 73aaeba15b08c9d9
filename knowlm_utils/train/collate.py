"""Batching token samples for a causal LM: :class:`CausalLMCollator` and the pad-id choice
(:func:`pad_token`)."""

from __future__ import annotations

from typing import Any, Sequence


class CausalLMCollator:
    """Pads a list of ``{"input_ids": LongTensor}`` to the longest sample (right padding).

    ``labels`` = ``input_ids`` with padding set to -100 (ignored by the loss); ``attention_mask``
    is 1 on real tokens. The pad id never reaches the loss or attention, so any id works; we use
    the tokenizer's pad id when it has one, else EOS, else 0 (``pad_source`` says which).
    Samples longer than ``max_length`` are truncated and counted in ``truncated``.
    """

    def __init__(self, pad_id: int, max_length: int, pad_source: str = ""):
        self.pad_id, self.max_length, self.pad_source = int(pad_id), int(max_length), pad_source
        self.truncated = 0

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = []
        for f in features:
            ids = torch.as_tensor(f["input_ids"], dtype=torch.long)
            if ids.ndim != 1 or ids.numel() == 0:
                raise ValueError(f"collator: each sample must be a non-empty 1-D id tensor, got shape {tuple(ids.shape)}")
            if ids.numel() > self.max_length:
                ids = ids[: self.max_length]
                self.truncated += 1
            rows.append(ids)
        width = max(r.numel() for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : r.numel()] = r
            mask[i, : r.numel()] = 1
        labels = input_ids.masked_fill(mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def pad_token(tokenizer_info) -> tuple[int, str]:
    """(pad id, where it came from): tokenizer pad, else EOS, else 0."""
    if tokenizer_info.pad_token_id is not None:
        return int(tokenizer_info.pad_token_id), "tokenizer pad token"
    if tokenizer_info.eos_token_id is not None:
        return int(tokenizer_info.eos_token_id), "EOS (the tokenizer has no pad token)"
    return 0, "id 0 (the tokenizer has neither pad nor EOS)"


__all__ = ["CausalLMCollator", "pad_token"]
