"""Gold annotations of the sample world: which facts each generated sentence states.

The sample-world generator (:mod:`knowlm_utils.sample_world`) writes
``data_samples/corpus/gold_facts.jsonl.gz``: one row per clean document that states KG facts,
``{file, line, lang, subject, statements: [{start, end, facts: [[head, relation, tail]],
mentions: [[start, end, entity id]], template}], unannotated: [[start, end]]}``, offsets in the
document's text as the corpus stage renders it; ``template`` is the id of the sentence template
that wrote the statement (``"zh:located_in:head:2"``; ``null`` for an infobox row; absent in gold
files written before it existed — they load, and stage 06 then writes no paraphrase split).
Every stage of the KG2Instruction pipeline is measured against it. Real corpora have no such
file; the pipeline then runs the same way and simply reports no precision/recall.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

Fact = tuple[str, str, str]          # (head entity id, KG relation, tail entity id)
Span = tuple[int, int, str]          # (start, end, entity id), character offsets in the document


@dataclass(frozen=True)
class GoldStatement:
    start: int
    end: int
    facts: tuple[Fact, ...]
    mentions: tuple[Span, ...]
    template: str | None = None      # the sentence template that wrote it (None: unknown / not templated)

    @property
    def explicit_facts(self) -> tuple[Fact, ...]:
        """The facts whose head and tail are both named in the statement. An infobox row of a
        wiki article (``* 官方语言：汉语``) states facts about the page's subject without naming
        it: those count for the document, not for the sentence."""
        named = {eid for _, _, eid in self.mentions}
        return tuple(f for f in self.facts if f[0] in named and f[2] in named)


@dataclass(frozen=True)
class GoldDocument:
    file: str                        # as written by the generator, e.g. "corpus/zh_baike.jsonl"
    line: int                        # 1-based line of the record in that file
    lang: str
    subject: str | None              # the entity the article/post is about
    statements: tuple[GoldStatement, ...]
    unannotated: tuple[tuple[int, int], ...] = ()   # hand-written spans nobody annotated

    @property
    def key(self) -> tuple[str, int]:
        return gold_key(self.file, self.line)

    @property
    def facts(self) -> frozenset[Fact]:
        return frozenset(f for st in self.statements for f in st.facts)


def gold_key(file: str, line: int) -> tuple[str, int]:
    """How a corpus record finds its gold: the source file's name (not its folder, which differs
    between the generator and wherever the corpus stage read it) and the record's line."""
    return Path(file).name, int(line)


def _statement(raw: dict, where: str) -> GoldStatement:
    try:
        facts = tuple((str(h), str(r), str(t)) for h, r, t in raw["facts"])
        mentions = tuple((int(a), int(b), str(e)) for a, b, e in raw["mentions"])
        start, end = int(raw["start"]), int(raw["end"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: malformed gold statement ({type(exc).__name__}: {exc})") from None
    if not 0 <= start <= end:
        raise ValueError(f"{where}: gold statement has start {start} > end {end}")
    template = raw.get("template")
    if template is not None and (not isinstance(template, str) or not template):
        raise ValueError(f"{where}: gold statement key template: must be a non-empty string or null, "
                         f"got {template!r}")
    return GoldStatement(start, end, facts, mentions, template)


def load_gold(path: str | Path) -> dict[tuple[str, int], GoldDocument]:
    """Read a gold file (``.jsonl`` or ``.jsonl.gz``) into ``{(file name, line): GoldDocument}``.
    A malformed row raises ``ValueError`` naming the file and line."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    out: dict[tuple[str, int], GoldDocument] = {}
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
                doc = GoldDocument(str(row["file"]), int(row["line"]), str(row["lang"]), row.get("subject"),
                                   tuple(_statement(s, where) for s in row["statements"]),
                                   tuple((int(a), int(b)) for a, b in row.get("unannotated", ())))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{where}: malformed gold row ({type(exc).__name__}: {exc})") from None
            out[doc.key] = doc
    return out


def has_template_ids(gold: dict[tuple[str, int], GoldDocument]) -> bool:
    """Whether any statement of the gold names its sentence template (gold files written before
    template ids existed name none)."""
    return any(st.template is not None for doc in gold.values() for st in doc.statements)


def check_alignment(doc: GoldDocument, text: str, names: dict[str, Iterable[str]]) -> bool:
    """True when every gold mention's span in ``text`` reads as one of its entity's names
    (``names[entity id]``): the gold still fits the text (the corpus stage did not rewrite it)."""
    for st in doc.statements:
        if st.end > len(text):
            return False
        for a, b, eid in st.mentions:
            if text[a:b] not in names.get(eid, ()):
                return False
    return True


__all__ = ["Fact", "Span", "GoldStatement", "GoldDocument", "gold_key", "load_gold", "has_template_ids",
           "check_alignment"]
