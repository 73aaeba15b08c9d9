"""A cap on IE train records whose answer holds nothing (IEPile's negative schema chunks).

Why
---
Stage 06 splits a long IEPile schema into chunks, and a chunk that names only types or relations
the sentence lacks has an answer with every list empty: 51 % of the IEPile RE train records (28,275
of 55,071), 1 % of the NER ones. A model that cannot yet tell which relation a sentence holds learns
that ``[]`` everywhere is the safest answer: issue 11's ``cpu-long`` model (6,000 steps) answered
all-empty to 170 of the 380 test RE records whose gold answer holds a triple (RE recall 0.26,
precision 0.42), while only 22 of the 392 all-empty gold records got a triple. IEPile samples its
negative schemas for the same reason; here the share of all-empty answers among a task's train
records is capped at ``share``.

What changes: per task, language and style, at most ``share / (1 - share)`` empty-answer records per
record with something in its answer are kept, the kept ones evenly spaced in file order; the rest
are dropped and counted (:class:`EmptyAnswerStats`). The records with an answer are never touched,
and the evaluation split is not filtered (its F1 is measured on the real mix). An answer counts as
empty when the stage-06 parser finds no item in it (``knowlm_utils.ie.evaluate.parse_gold``).

Measured (``benchmarks/bench_sft_arms.py``, README): from the 20,447-step CPU model, 20 minutes side
by side with ``empty_answer_share: 0.25`` against all records, the cap did not help — constrained
micro F1 0.614 against 0.665 on 192 test records, RE precision 0.647 against 0.766, and the RE records
answered with nothing 10 against 11 of 58: by then the model's empty answers are not the mix's prior.
One seed; off (null) in every config.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..ie.evaluate import parse_gold


@dataclass
class EmptyAnswerStats:
    """Empty-answer records seen and kept, per ``task/lang/style``."""

    share: float | None = None
    empty: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    answered: Counter = field(default_factory=Counter)

    @property
    def dropped(self) -> int:
        return sum(self.empty.values()) - sum(self.kept.values())

    def to_dict(self) -> dict[str, Any]:
        keys = sorted(set(self.empty) | set(self.answered))
        return {"share": self.share, "dropped": self.dropped,
                "by_group": {k: {"answered": self.answered[k], "empty": self.empty[k], "kept_empty": self.kept[k]}
                             for k in keys}}

    def summary(self) -> str:
        parts = [f"{k} {self.kept[k]:,} of {self.empty[k]:,}" for k in sorted(self.empty) if self.empty[k]]
        return f"kept {', '.join(parts) or 'none'} (dropped {self.dropped:,})"


def _group(record: Mapping[str, Any]) -> str:
    return f"{record.get('task')}/{record.get('lang')}/{record.get('style')}"


def cap_empty_answers(records: Sequence[Mapping[str, Any]],
                      share: float | None) -> tuple[list[Mapping[str, Any]], EmptyAnswerStats]:
    """``records`` with the empty-answer ones of each task/lang/style thinned to at most ``share`` of
    that group (evenly spaced, order kept); ``share`` None keeps everything (still counted)."""
    if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1):
        raise ValueError(f"empty_answer_share: must be a number in [0, 1) or null, got {share!r}")
    stats = EmptyAnswerStats(share=share)
    empty_flags = []
    for r in records:
        is_empty = not parse_gold(r)
        empty_flags.append(is_empty)
        (stats.empty if is_empty else stats.answered)[_group(r)] += 1
    if share is None:
        stats.kept.update(stats.empty)
        return list(records), stats
    quota = {g: min(n, int(share / (1 - share) * stats.answered[g] + 1e-9)) for g, n in stats.empty.items()}
    seen: Counter = Counter()
    out = []
    for r, is_empty in zip(records, empty_flags):
        if is_empty:
            g = _group(r)
            i, n, k = seen[g], stats.empty[g], quota[g]
            seen[g] += 1
            if (i + 1) * k // n > i * k // n:  # exactly k of the n, evenly spaced
                stats.kept[g] += 1
                out.append(r)
            continue
        out.append(r)
    return out, stats


__all__ = ["EmptyAnswerStats", "cap_empty_answers"]
