"""Schema-order shuffling for IEPile-style SFT records: read the key, not its place.

Why
---
Stage 06 writes an IEPile schema in label-set order (``国家`` first whenever it is listed, then
``省级行政区``, ``城市`` …), and the answer lists its keys in the schema's order. A small model then
learns *where* a type usually stands instead of reading the key it is writing: issue 11's
``cpu-long`` model put ``阿根廷`` under the key after ``国家`` again and again, and with the test
schemas merely permuted (same records, same keys) its micro F1 fell from 0.333 to 0.147 (constrained
decoding, 192 records). Shuffling the schema of a share of the train records — the instruction's
``schema`` list and the answer's key order together, so each record stays true — leaves reading the
key as the only rule that always works.

What changes: the ``schema`` field, the ``schema`` inside the instruction's JSON and the order of the
answer's keys; nothing else (same values, same canonical JSON). A record whose answer keys are not
its schema in order, whose instruction is not IEPile JSON, or whose answer does not parse is left as
it was and counted (:class:`ShuffleStats`). Deterministic: the record's id and ``seed`` pick the
records and the orders.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..ie.formats import read_iepile_instruction, schema_key

SKIP_REASONS = ("not_iepile", "one_key", "answer_not_keyed_by_schema")


@dataclass
class ShuffleStats:
    """How many records were considered, shuffled and left as they were (by reason)."""

    considered: int = 0
    shuffled: int = 0
    skipped: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"considered": self.considered, "shuffled": self.shuffled, "skipped": dict(sorted(self.skipped.items()))}


def shuffle_record(record: Mapping[str, Any], rng: random.Random,
                   stats: ShuffleStats | None = None) -> dict[str, Any] | None:
    """``record`` with its schema in a new order (instruction and answer alike), or None with the
    reason counted when it is not an IEPile record whose answer is keyed by its schema."""
    stats = stats if stats is not None else ShuffleStats()
    if record.get("format") != "iepile":
        return None
    stats.considered += 1
    inst = read_iepile_instruction(record)
    try:
        answer = json.loads(record["output"])
    except (ValueError, TypeError, KeyError):
        answer = None
    if inst is None or not isinstance(answer, dict):
        stats.skipped["not_iepile"] += 1
        return None
    schema = inst["schema"]
    keys = [schema_key(s) for s in schema]
    if len(schema) < 2:
        stats.skipped["one_key"] += 1
        return None
    if None in keys or list(answer) != keys:
        stats.skipped["answer_not_keyed_by_schema"] += 1
        return None
    order = list(range(len(schema)))
    while order == sorted(order):  # a real change of order (two keys: the swap)
        rng.shuffle(order)
    new_schema = [schema[i] for i in order]
    inst = {**inst, "schema": new_schema}
    out = dict(record)
    out["instruction"] = json.dumps(inst, ensure_ascii=False)
    out["output"] = json.dumps({keys[i]: answer[keys[i]] for i in order}, ensure_ascii=False)
    if isinstance(record.get("schema"), list) and [schema_key(s) for s in record["schema"]] == keys:
        out["schema"] = new_schema
    stats.shuffled += 1
    return out


def shuffle_schemas(records: Sequence[Mapping[str, Any]], fraction: float,
                    seed: int = 0) -> tuple[list[dict[str, Any]], ShuffleStats]:
    """``records`` with ``fraction`` of the IEPile ones (chosen by id and seed) in a new schema order;
    the others unchanged, order kept."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"schema_shuffle: must be a number in [0, 1], got {fraction!r}")
    stats = ShuffleStats()
    out = []
    for r in records:
        new = None
        if fraction > 0:
            rng = random.Random(f"{seed}:schema:{r.get('id')}")
            if rng.random() < fraction:
                new = shuffle_record(r, rng, stats)
        out.append(new if new is not None else dict(r))
    return out, stats


__all__ = ["SKIP_REASONS", "ShuffleStats", "shuffle_record", "shuffle_schemas"]
