"""Where a model's extracted names come from: copied from the input, or recalled from training?

A fine-tuned extractor should *copy* spans from the sentence it reads. A small model trained on
instructions about a few hundred entities can instead learn the names themselves and answer with
names it was trained on, right or wrong — F1 alone does not tell the two apart. This module sorts
every name of every parsed prediction (NER entity, RE head and tail, EE argument) into four bins:

``input_only``   occurs in the sentence and was never an SFT training answer — only copying explains it;
``input_train``  occurs in the sentence and was a training answer;
``train_only``   not in the sentence, a training answer — recalled from memory (always wrong here);
``neither``      in neither — invented.

``copy_rate`` is the share of names found in the input. Notebook 08 uses it to show whether the
LoRA model copies; :mod:`knowlm_utils.sft.names` changes training data so that it must.

:func:`induction_score` measures the mechanism copying needs, independent of any task: a sequence of
random tokens shown twice is cheap to predict the second time only for a model with *induction heads*
(attend to the token after the previous occurrence of the current token, copy it). The score is the
mean loss of the first copy minus that of the second, in nats: ≈ 0 means the model cannot copy from
its context at all; a model that copies predicts the second copy almost perfectly (several nats).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .evaluate import parse_prediction

ORIGINS = ("input_only", "input_train", "train_only", "neither")


def record_text(record: Mapping[str, Any]) -> str:
    """The sentence a record asks about: ``input``, or for the IEPile style the ``input`` inside the
    instruction's JSON."""
    if record.get("style") == "iepile" or record.get("format") == "iepile":
        try:
            inst = json.loads(record["instruction"])
            if isinstance(inst, dict) and isinstance(inst.get("input"), str):
                return inst["input"]
        except (ValueError, TypeError, KeyError):
            pass
    return str(record.get("input", ""))


def item_names(task: str, item: Any) -> list[str]:
    """The spans of an item that name things: NER text, RE head and tail, EE argument texts."""
    if task == "NER":
        return [item.text]
    if task == "RE":
        return [item.head, item.tail]
    return [a.text for a in item.arguments]


@dataclass
class NameOrigins:
    """Counts of predicted names per origin (``ORIGINS``) and up to ``max_examples`` of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def copy_rate(self) -> float:
        """Share of predicted names that occur in the sentence (0 when there are none)."""
        found = self.counts["input_only"] + self.counts["input_train"]
        return found / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.total, "copy_rate": self.copy_rate,
                **{k: int(self.counts[k]) for k in ORIGINS}, "examples": self.examples}


def name_origins(records: Iterable[Mapping[str, Any]], predictions: Mapping[str, str],
                 train_names: Iterable[str], max_examples: int = 3) -> NameOrigins:
    """Sort the names of ``predictions`` (record id → answer text) by origin; ``train_names``: every
    name of the SFT train answers (:func:`knowlm_utils.sft.names.answer_names`). Records without a
    prediction are skipped; each distinct name counts once per record."""
    train = set(train_names)
    out = NameOrigins()
    for record in records:
        answer = predictions.get(record["id"])
        if answer is None:
            continue
        text = record_text(record)
        names = {n for it in parse_prediction(record, answer).items for n in item_names(record["task"], it) if n}
        for name in sorted(names):
            origin = ("input_" + ("train" if name in train else "only")) if name in text else \
                ("train_only" if name in train else "neither")
            out.counts[origin] += 1
            ex = out.examples.setdefault(origin, [])
            if len(ex) < max_examples and name not in ex:
                ex.append(name)
    return out


def induction_score(model: Any, length: int = 40, sequences: int = 16, low_id: int = 100,
                    high_id: int | None = None, seed: int = 0) -> dict[str, float]:
    """Loss (nats/token) on a random token sequence and on its repetition right after it, and their
    difference (``score``). Token ids are drawn from ``[low_id, high_id)`` (default: up to the
    model's vocabulary size) with ``seed``; BOS (id 1) starts every sequence; the first token of each
    copy is not scored (nothing predicts it)."""
    import torch

    vocab = int(model.config.vocab_size)
    high = vocab if high_id is None else min(int(high_id), vocab)
    if length < 2 or sequences < 1 or not 0 <= low_id < high - 1:
        raise ValueError(f"induction_score: need length >= 2, sequences >= 1 and 0 <= low_id < high_id - 1 "
                         f"(got length {length}, sequences {sequences}, ids [{low_id}, {high}))")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(low_id, high, (sequences, length), generator=gen)
    ids = torch.cat([torch.ones(sequences, 1, dtype=torch.long), x, x], 1)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    model.train(was_training)
    nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]  # nll[:, j] predicts ids[:, j+1]
    first = nll[:, 1:length].mean().item()            # tokens 2..L of the first copy
    second = nll[:, length + 1:].mean().item()        # tokens 2..L of the second copy
    return {"first": first, "second": second, "score": first - second}


__all__ = ["induction_score", "ORIGINS", "NameOrigins", "name_origins", "record_text", "item_names"]
