"""Documents → linked sentences (steps 1–2 of KG2Instruction, per document).

A corpus record (``{id, text, source, lang, file, line}`` as
:func:`knowlm_utils.corpus.iter_cleaned_documents` yields it) becomes a :class:`Document`:
mentions detected and linked over the whole text (the more of the document the linker sees,
the more neighbour evidence it has), then cut into sentences with the stage-03 splitters, each
sentence holding the links inside it and, when the sample world's gold is given, the facts its
statements state (:mod:`.gold`).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from ..chunking import split_sentences
from ..ie.linking import EntityLinker, Link, LinkResult, document_subject
from ..kg import KnowledgeGraph
from .gold import Fact, GoldDocument, Span, check_alignment, gold_key

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


@dataclass
class Sentence:
    index: int
    start: int                               # offsets in the document's text
    end: int
    text: str
    links: list[Link]                        # links whose mention lies inside the sentence
    gold: frozenset[Fact] | None = None      # facts its statements state naming both entities; None: ungraded
    gold_mentions: tuple[Span, ...] = ()
    templates: frozenset[str] = frozenset()  # ids of the sentence templates of the gold statements in it


@dataclass
class Document:
    id: str
    source: str
    lang: str                                # "zh" or "en" (the linker's language)
    text: str
    file: str
    line: int
    subject: str | None
    sentences: list[Sentence]
    links: LinkResult
    gold: GoldDocument | None = None

    @property
    def canonical(self) -> dict[str, str]:
        """Entity id → its earliest linked surface in the document (KG2Instruction names an
        entity in the instruction data by its first mention)."""
        return self.links.canonical


@dataclass
class PrepareStats:
    documents: int = 0
    annotated: int = 0              # with gold that fits the text
    unannotated: int = 0            # no gold row (real corpora; hand-written or noisy documents)
    gold_misaligned: int = 0        # a gold row whose mentions no longer read as their names
    statements_split: int = 0       # gold statements cut by the sentence splitter
    sentences: int = 0
    skipped_language: int = 0       # records whose text is neither zh nor en (code)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def detect_lang(text: str, declared: str | None = None) -> str | None:
    """``zh``/``en`` as declared, else by the share of CJK characters (mixed web text); ``None``
    for code."""
    if declared in ("zh", "en"):
        return declared
    if declared == "code":
        return None
    letters = sum(ch.isalpha() for ch in text) or 1
    return "zh" if len(_CJK.findall(text)) / letters > 0.3 else "en"


@dataclass
class DocumentPreparer:
    """Turns corpus records into :class:`Document` s; counts what it could not annotate."""

    kg: KnowledgeGraph
    linker: EntityLinker
    gold: dict[tuple[str, int], GoldDocument] | None = None
    stats: PrepareStats = field(default_factory=PrepareStats)

    def __post_init__(self) -> None:
        self._names: dict[str, set[str]] = {}
        for eid, e in self.kg.entities.items():
            self._names[eid] = {e["name_zh"], e["name_en"], *e["aliases_zh"], *e["aliases_en"]}

    def __call__(self, row: dict[str, Any]) -> Document | None:
        text = row["text"]
        gold = None
        if self.gold is not None and row.get("file") is not None and row.get("line") is not None:
            gold = self.gold.get(gold_key(str(row["file"]), int(row["line"])))
        lang = gold.lang if gold else detect_lang(text, row.get("lang"))
        if lang is None:
            self.stats.skipped_language += 1
            return None
        self.stats.documents += 1
        if gold is not None and not check_alignment(gold, text, self._names):
            self.stats.gold_misaligned += 1
            gold = None
        if gold is not None:
            self.stats.annotated += 1
        else:
            self.stats.unannotated += 1
        result = self.linker.link(text, lang)
        subject = gold.subject if gold else document_subject(self.kg, text.split("\n", 1)[0].strip(), text, lang)
        spans = split_sentences(text, lang)
        sentences = self._sentences(text, spans, result.links, gold)
        self.stats.sentences += len(sentences)
        return Document(str(row.get("id", f"{row.get('file')}:{row.get('line')}")), str(row.get("source", "")),
                        lang, text, str(row.get("file", "")), int(row.get("line") or 0), subject, sentences,
                        result, gold)

    def _sentences(self, text: str, spans: list[tuple[int, int]], links: list[Link],
                   gold: GoldDocument | None) -> list[Sentence]:
        out = [Sentence(i, s, e, text[s:e], []) for i, (s, e) in enumerate(spans)]
        starts = [s for s, _ in spans]

        def at(pos: int) -> Sentence:
            return out[max(0, bisect.bisect_right(starts, pos) - 1)]

        for ln in links:
            sent = at(ln.mention.start)
            if ln.mention.end <= sent.end:  # a mention cut by a sentence boundary belongs to neither
                sent.links.append(ln)
        if gold is None:
            return out
        facts: dict[int, set[Fact]] = {s.index: set() for s in out}
        mentions: dict[int, list[Span]] = {s.index: [] for s in out}
        templates: dict[int, set[str]] = {s.index: set() for s in out}
        for st in gold.statements:
            sent = at(st.start)
            if st.end > sent.end and text[sent.end:st.end].strip():
                self.stats.statements_split += 1
            facts[sent.index].update(st.explicit_facts)
            mentions[sent.index].extend(st.mentions)
            if st.template is not None:  # every sentence the statement reaches into uses its template
                for i in range(sent.index, at(max(st.start, st.end - 1)).index + 1):
                    templates[i].add(st.template)
        for s in out:
            s.templates = frozenset(templates[s.index])
            if any(a < s.end and s.start < b for a, b in gold.unannotated):
                continue  # hand-written text: its facts are unknown, leave it ungraded (gold None)
            s.gold = frozenset(facts[s.index])
            s.gold_mentions = tuple(mentions[s.index])
        return out


__all__ = ["Sentence", "Document", "PrepareStats", "DocumentPreparer", "detect_lang"]
