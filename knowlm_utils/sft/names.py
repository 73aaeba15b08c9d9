"""Entity-name substitution for SFT records: make extraction a copying task, not a memory test.

Why
---
Stage 06 writes hundreds of thousands of instructions about the same few hundred knowledge-graph
entities. A small model fine-tuned on them learns the *names* (every answer it gives is a name it
was trained on) instead of learning to copy a span from the input: on test documents about
entities held out of the SFT split it answers with training names (issue 11's copy check: 93 of 95
predicted strings were SFT-train answers, none was an input-only string). A 13B model copies from
the start; a tiny one must be taught. The remedy is an old one in NER data augmentation (mention
replacement): in a share of the records, every entity name in the answer is replaced — in the
answer and everywhere in the input — by a new, plausible name that occurs nowhere else, so the only
way to produce the answer is to read it off the input.

How a new name is made
----------------------
:class:`NamePool` learns from the records' own answers what names are built of, so the new names
use pieces the tokenizer knows: the Chinese characters of Chinese names, syllables of Latin names,
and the *suffixes* that carry the type (``大学``, ``市``, ``公司``; ``University``, ``River``,
``of``): a suffix (or a Latin word) shared by at least ``min_suffix_names`` names is kept, the rest
of the name is drawn anew with the same length. ``北京大学`` may become ``昌宁大学``, ``Yellow River``
``Tavomer River``. Names with digits (dates, amounts) are left alone, and so is the whole record when
a name of its answer does not occur in its input or its answer does not read back with the
format's parser (counted in :class:`SubstitutionStats`).

Deterministic: the record's id and ``seed`` pick the records and the names.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..ie.annotation import Argument, Entity, Event, Relation
from ..ie.copy_check import item_names
from ..ie.formats import FORMATS, format_output, parse_output, read_iepile_instruction

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_DIGIT = re.compile(r"\d")
_VOWELS = "aeiou"
SKIP_REASONS = ("no_names", "name_not_in_input", "unparseable_output", "unsupported_name", "round_trip")


def _has_cjk(s: str) -> bool:
    return bool(_CJK.search(s))


def _syllables(word: str) -> list[str]:
    """Latin word → consonant-cluster + vowel-cluster chunks (``Tavomer`` → ta, vo, mer)."""
    return re.findall(r"[^aeiouy]*[aeiouy]+(?:[^aeiouy]+$)?|[^aeiouy]+$", word.lower())


@dataclass
class NamePool:
    """What names are made of, learned from answer names (see the module docstring)."""

    zh_chars: list[str]
    zh_suffixes: set[str]
    en_syllables: list[str]
    en_keep: set[str]
    min_suffix_names: int = 3
    #: syllables that begin a word: a new word starts with one, so new names begin the way names do
    #: (``Hangzhou`` splits into ha·ngzhou; a word drawn from all syllables began with ``Ng`` 6 % of the
    #: time, and 19 % of the renamed English names began with ``N`` against 5 % of the real ones)
    en_onsets: list[str] = field(default_factory=list)

    @classmethod
    def from_names(cls, names: Iterable[str], min_suffix_names: int = 3) -> "NamePool":
        names = sorted(set(n for n in names if n and not _DIGIT.search(n)))
        zh = [n for n in names if _has_cjk(n)]
        en = [n for n in names if not _has_cjk(n) and _LATIN_WORD.search(n)]
        suffix_names: Counter[str] = Counter()
        for n in zh:
            for k in (1, 2, 3):
                if len(n) > k:
                    suffix_names[n[-k:]] += 1
        zh_suffixes = {s for s, c in suffix_names.items() if c >= min_suffix_names}
        chars = sorted({ch for n in zh for ch in n if _CJK.match(ch)})
        word_names: Counter[str] = Counter()
        syll: set[str] = set()
        onsets: set[str] = set()
        for n in en:
            words = set(_LATIN_WORD.findall(n))
            word_names.update(words)
            for w in words:
                pieces = [s for s in _syllables(w) if s]
                syll.update(pieces)
                onsets.update(pieces[:1])
        en_keep = {w for w, c in word_names.items() if c >= min_suffix_names}
        return cls(chars, zh_suffixes, sorted(syll), en_keep, min_suffix_names, sorted(onsets))

    def usable(self) -> bool:
        return len(self.zh_chars) >= 20 or len(self.en_syllables) >= 20

    def _zh(self, name: str, rng: random.Random) -> str | None:
        if len(self.zh_chars) < 20:
            return None
        suffix = next((name[-k:] for k in (3, 2, 1) if len(name) > k and name[-k:] in self.zh_suffixes), "")
        body = name[: len(name) - len(suffix)]
        if not all(_CJK.match(ch) for ch in body):
            return None
        return "".join(rng.choice(self.zh_chars) for _ in body) + suffix

    def _en_word(self, word: str, rng: random.Random) -> str:
        n = max(1, min(4, len(_syllables(word)) or 1))
        new = rng.choice(self.en_onsets or self.en_syllables) + "".join(
            rng.choice(self.en_syllables) for _ in range(n - 1))
        if word[:1].isupper():
            new = new[:1].upper() + new[1:]
        if word.isupper() and len(word) > 1:
            new = new.upper()
        return new

    def _en(self, name: str, rng: random.Random) -> str | None:
        if len(self.en_syllables) < 20:
            return None
        words = _LATIN_WORD.findall(name)
        if not words or all(w in self.en_keep for w in words):
            # a name made only of common words (``New City``): draw its first word anew
            return _LATIN_WORD.sub(lambda m: self._en_word(m.group(), rng), name, count=1) if words else None
        return _LATIN_WORD.sub(lambda m: m.group() if m.group() in self.en_keep else self._en_word(m.group(), rng),
                               name)

    def fake(self, name: str, rng: random.Random) -> str | None:
        """A new name of the same kind as ``name``, or None when it is not a name this pool can make
        (digits, scripts other than Chinese and Latin, a pool too small)."""
        if not name.strip() or _DIGIT.search(name):
            return None
        return self._zh(name, rng) if _has_cjk(name) else self._en(name, rng)


@dataclass
class SubstitutionStats:
    """What :func:`substitute_names` did: records changed, names replaced, records left as they
    were and why (``SKIP_REASONS``)."""

    considered: int = 0
    substituted: int = 0
    names: int = 0
    skipped: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"considered": self.considered, "substituted": self.substituted, "names": self.names,
                "skipped": dict(sorted(self.skipped.items()))}


def _rename(task: str, item: Any, mapping: Mapping[str, str]) -> Any:
    m = lambda s: mapping.get(s, s)  # noqa: E731
    if task == "NER":
        return Entity(m(item.text), item.type)
    if task == "RE":
        return Relation(m(item.head), item.relation, m(item.tail))
    return Event(item.trigger, item.type, tuple(Argument(a.role, m(a.text)) for a in item.arguments))


def _schema(record: Mapping[str, Any]) -> list[Any] | None:
    inst = read_iepile_instruction(record)
    return inst["schema"] if inst else None


def _pattern(names: Sequence[str]) -> re.Pattern[str]:
    """One alternation, longest first; Latin names only match as whole words."""
    parts = []
    for n in sorted(names, key=len, reverse=True):
        p = re.escape(n)
        if n[:1].isascii() and n[:1].isalnum():
            p = r"(?<![A-Za-z0-9])" + p
        if n[-1:].isascii() and n[-1:].isalnum():
            p += r"(?![A-Za-z0-9])"
        parts.append(p)
    return re.compile("|".join(parts))


def substitute_record(record: Mapping[str, Any], pool: NamePool, rng: random.Random,
                      stats: SubstitutionStats | None = None) -> dict[str, Any] | None:
    """``record`` with every answer name replaced (answer and input), or None with the reason
    counted in ``stats`` when it cannot be done safely."""
    stats = stats if stats is not None else SubstitutionStats()
    task, fmt = record.get("task"), record.get("format") or ("iepile" if record.get("style") == "iepile" else None)
    if task not in ("NER", "RE", "EE") or fmt not in FORMATS.get(task, ()):
        return None
    stats.considered += 1
    lang = record.get("lang") if record.get("lang") in ("zh", "en") else "zh"
    inst = read_iepile_instruction(record) if fmt == "iepile" else None
    if fmt == "iepile" and inst is None:
        stats.skipped["unparseable_output"] += 1
        return None
    # IEPile keeps the sentence inside the instruction's JSON; the other styles in ``input``
    text = inst["input"] if inst is not None else record["input"]
    schema = inst["schema"] if inst is not None else None
    parsed = parse_output(task, fmt, record["output"], lang, schema)
    if parsed.unparsed or parsed.ignored:
        stats.skipped["unparseable_output"] += 1
        return None
    if format_output(task, fmt, parsed.items, lang, schema) != record["output"]:
        stats.skipped["round_trip"] += 1
        return None
    names = sorted({n for it in parsed.items for n in item_names(task, it) if n})
    if not names:
        stats.skipped["no_names"] += 1
        return None
    pattern = _pattern(names)
    found = set(m.group() for m in pattern.finditer(text))
    if any(n not in found for n in names):
        stats.skipped["name_not_in_input"] += 1
        return None
    mapping: dict[str, str] = {}
    used = set()
    for n in names:
        new = None
        for _ in range(8):  # a name that is new to this text and to this record
            cand = pool.fake(n, rng)
            if cand is None:
                break
            if cand != n and cand not in used and cand not in text and not any(cand in m or m in cand for m in names):
                new = cand
                break
        if new is None:
            stats.skipped["unsupported_name"] += 1
            return None
        mapping[n] = new
        used.add(new)
    new_text = pattern.sub(lambda m: mapping[m.group()], text)
    new_items = [_rename(task, it, mapping) for it in parsed.items]
    out = dict(record)
    if inst is not None:
        out["instruction"] = json.dumps({**inst, "input": new_text}, ensure_ascii=False)
    else:
        out["input"] = new_text
    out["output"] = format_output(task, fmt, new_items, lang, schema)
    out["names_substituted"] = len(mapping)
    stats.substituted += 1
    stats.names += len(mapping)
    return out


def answer_names(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every name in the answers of ``records`` (those whose answer parses)."""
    out = []
    for r in records:
        task = r.get("task")
        fmt = r.get("format") or ("iepile" if r.get("style") == "iepile" else None)
        if task not in ("NER", "RE", "EE") or fmt not in FORMATS.get(task, ()):
            continue
        lang = r.get("lang") if r.get("lang") in ("zh", "en") else "zh"
        parsed = parse_output(task, fmt, r["output"], lang, _schema(r) if fmt == "iepile" else None)
        out += [n for it in parsed.items for n in item_names(task, it) if n]
    return out


def substitute_names(records: Sequence[Mapping[str, Any]], fraction: float, seed: int = 0,
                     pool: NamePool | None = None) -> tuple[list[dict[str, Any]], SubstitutionStats]:
    """``records`` with ``fraction`` of the IE ones (chosen by id and seed) given new names; the
    others unchanged, order kept. The pool defaults to one learned from the records' answers."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"name_substitution: must be a number in [0, 1], got {fraction!r}")
    stats = SubstitutionStats()
    if fraction == 0:
        return [dict(r) for r in records], stats
    pool = pool or NamePool.from_names(answer_names(records))
    out = []
    for r in records:
        rng = random.Random(f"{seed}:names:{r.get('id')}")
        new = substitute_record(r, pool, rng, stats) if rng.random() < fraction else None
        out.append(new if new is not None else dict(r))
    return out, stats


__all__ = ["NamePool", "SubstitutionStats", "SKIP_REASONS", "substitute_record", "substitute_names", "answer_names"]
