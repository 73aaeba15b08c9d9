"""Copy records: an auxiliary SFT task whose every answer token is copied from the prompt.

Why
---
Extraction answers are mostly format: in an IEPile JSON answer about 7 % of the tokens spell a name
(``{"国家": [], "城市": ["安卡拉"], …}``), so a micro batch of 8 records holds only a few dozen tokens
that must be *copied* from the sentence; the rest (keys, brackets, EOS) is learnt from memory within
a few hundred steps. A model without a copying circuit gets almost no signal to form one
(``copy_check.name_token_scores`` shows it: the loss on name tokens stays near guessing while the
training loss falls). A copy record shows the model a text and asks for it back verbatim, so every
answer token is a copy target: ``copy_ratio`` of every micro batch are copy records and the copying
signal per step grows by an order of magnitude.

What a copy record is
---------------------
The sentences of the IE train records (after entity-name substitution, so the names in them are new),
taken in order, deduplicated per language and joined ``copy_group`` at a time (a space between English
sentences, nothing between Chinese ones); the instruction is the language's line in
``knowlm_utils/data/sft/copy_instructions.json``; the record is prompted like a general record
(``style: alpaca``, the run's template for its language). Nothing outside the SFT train split is used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..ie.copy_check import record_text

COPY_INSTRUCTIONS_FILE = Path(__file__).resolve().parent.parent / "data" / "sft" / "copy_instructions.json"
COPY_TASK = "COPY"
_JOINERS = {"en": " ", "zh": ""}


def copy_instructions(path: str | Path = COPY_INSTRUCTIONS_FILE) -> dict[str, str]:
    """Language → instruction of a copy record (the data file; ValueError naming it when broken)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the copy instructions: {exc}") from None
    out = {k: v for k, v in data.items() if k != "description"}
    bad = [k for k, v in out.items() if not isinstance(v, str) or not v.strip()]
    if bad or not out:
        raise ValueError(f"{path}: every language needs a non-empty instruction string (bad: {bad or 'none given'})")
    return out


def copy_records(records: Iterable[Mapping[str, Any]], group: int = 4,
                 instructions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Copy records built from the sentences of ``records`` (IE records; ``group`` sentences each,
    see the module docstring). Languages without an instruction are left out (none by default)."""
    if not isinstance(group, int) or isinstance(group, bool) or group < 1:
        raise ValueError(f"copy_group must be an integer >= 1, got {group!r}")
    instructions = dict(instructions) if instructions is not None else copy_instructions()
    texts: dict[str, dict[str, None]] = {}
    for r in records:
        lang, text = r.get("lang"), record_text(r).strip()
        if text and lang in instructions:
            texts.setdefault(lang, {})[text] = None
    out = []
    for lang, seen in texts.items():
        rows = list(seen)
        for i in range(0, len(rows), group):
            body = _JOINERS.get(lang, " ").join(rows[i:i + group])
            out.append({"id": f"copy:{lang}:{i // group}", "task": COPY_TASK, "lang": lang, "style": "alpaca",
                        "format": "text", "schema": [], "instruction": instructions[lang], "input": body,
                        "output": body, "source": "copy_task"})
    return out


__all__ = ["COPY_INSTRUCTIONS_FILE", "COPY_TASK", "copy_instructions", "copy_records"]
