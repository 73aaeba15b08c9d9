"""Every KG2Instruction stage measured against the sample world's gold (stage 06).

* :func:`triple_scores` — precision/recall/F1 of the kept candidates' KG triples against the
  gold facts of each annotated sentence (``Sentence.gold is not None``), or per document
  (``level="document"``: the distinct triples of a document against the union of its annotated
  sentences' facts).
* :func:`funnel` / :func:`plot_funnel` — those scores after every stage of a
  :class:`~.supervision.FilterReport` (and after human correction), with what each rule dropped
  and how many of its drops were true facts: a rule's precision gain and its recall cost side by
  side.
* :func:`linking_scores` — entity linking against the gold mentions: overall, on ambiguous
  mentions and per planted ambiguous alias (``AMBIGUOUS_ALIASES``).
* :func:`to_annotations` / :func:`annotations_with_subjects` — kept candidates and linked
  mentions → :class:`~knowlm_utils.ie.annotation.Annotation` s, the IE data the instructions are
  written from.

Counts (``tp``, ``fp``, ``fn``) add up, so a streaming pipeline can score one document at a time
and sum (:meth:`Scores.__add__`, :func:`sum_funnels`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ..ie.annotation import Annotation, Entity, Relation
from ..ie.evaluate import Counts
from ..ie.linking import AMBIGUOUS_ALIASES
from ..kg import KnowledgeGraph
from .documents import Document
from .gold import Fact
from .supervision import DS_STAGE, Candidate, FilterReport, relation_label, relations_by_kg

LEVELS = ("sentence", "document")
GoldFilter = Callable[[Fact], bool]


@dataclass(frozen=True)
class Scores(Counts):
    """Triple counts and the scores from them (:class:`knowlm_utils.ie.evaluate.Counts`: P/R/F1
    exactly from the counts, 0.0 where undefined), in the funnel's row layout."""

    def __add__(self, other: "Counts") -> "Scores":
        return Scores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": round(self.precision, digits),
                "recall": round(self.recall, digits), "f1": round(self.f1, digits)}


def _docs(documents: Iterable[Document] | Mapping[str, Document]) -> dict[str, Document]:
    if isinstance(documents, Mapping):
        return dict(documents)
    return {d.id: d for d in documents}


def schema_gold_filter(ie_schema: Mapping[str, Any], kg: KnowledgeGraph) -> GoldFilter:
    """A gold filter keeping only the facts the IE schema can express (a mapped relation whose
    head/tail types fit): recall against it measures the pipeline, not the schema's choices."""
    by_kg = relations_by_kg(ie_schema)

    def keep(fact: Fact) -> bool:
        h, r, t = fact
        ht, tt = kg.entities[h]["type"], kg.entities[t]["type"]
        for name in by_kg.get(r, ()):
            spec = ie_schema["relations"][name]
            ih, it = (tt, ht) if spec["reverse"] else (ht, tt)
            if ih in spec["head"] and it in spec["tail"]:
                return True
        return False

    return keep


def _gold(sent_gold: frozenset[Fact], gold_filter: GoldFilter | None) -> set[Fact]:
    return {f for f in sent_gold if gold_filter is None or gold_filter(f)}


def triple_scores(candidates: Iterable[Candidate], documents: Iterable[Document] | Mapping[str, Document],
                  level: str = "sentence", include_dropped: bool = False,
                  gold_filter: GoldFilter | None = None) -> Scores:
    """Kept candidates' ``kg_triple`` s against the gold, on annotated sentences only.

    ``level="sentence"``: per annotated sentence, the distinct triples of the candidates in it
    against its gold facts. ``level="document"``: per document, the distinct triples of the
    candidates in its annotated sentences against the union of their gold facts (a fact stated
    in one sentence and found in another counts). Documents without any annotated sentence and
    candidates of documents not given are left out. ``include_dropped``: score the candidates as
    given, ignoring ``dropped_by`` (the funnel scores each stage's list that way).
    ``gold_filter``: only the gold facts it accepts count (e.g. :func:`schema_gold_filter`).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    docs = _docs(documents)
    pred: dict[Any, set[Fact]] = defaultdict(set)
    for c in candidates:
        if not include_dropped and not c.kept:
            continue
        doc = docs.get(c.doc_id)
        if doc is None or not 0 <= c.sentence_index < len(doc.sentences):
            continue
        if doc.sentences[c.sentence_index].gold is None:
            continue
        key = (c.doc_id, c.sentence_index) if level == "sentence" else c.doc_id
        pred[key].add(c.kg_triple)
    tp_all = fp_all = fn_all = 0
    for doc in docs.values():
        if level == "sentence":
            units = [((doc.id, s.index), _gold(s.gold, gold_filter)) for s in doc.sentences if s.gold is not None]
        else:
            annotated = [s for s in doc.sentences if s.gold is not None]
            if not annotated:
                continue
            units = [(doc.id, set().union(*(_gold(s.gold, gold_filter) for s in annotated)))]
        for key, gold in units:
            p = pred.get(key, set())
            tp = len(p & gold)
            tp_all, fp_all, fn_all = tp_all + tp, fp_all + len(p) - tp, fn_all + len(gold) - tp
    return Scores(tp_all, fp_all, fn_all)


def _is_true(c: Candidate, docs: Mapping[str, Document]) -> bool | None:
    """Whether the candidate's triple is in its sentence's gold; ``None``: not annotated."""
    doc = docs.get(c.doc_id)
    if doc is None or not 0 <= c.sentence_index < len(doc.sentences):
        return None
    gold = doc.sentences[c.sentence_index].gold
    return None if gold is None else c.kg_triple in gold


def funnel(report: FilterReport, documents: Iterable[Document] | Mapping[str, Document],
           human: Sequence[Candidate] | None = None, level: str = "sentence",
           gold_filter: GoldFilter | None = None) -> list[dict[str, Any]]:
    """One row per stage: ``stage``, ``candidates`` kept after it, ``tp``/``fp``/``fn``,
    ``precision``/``recall``/``f1`` (:func:`triple_scores` at ``level``), ``dropped`` by that
    stage and ``dropped_true``: how many of those drops were true facts of their (annotated)
    sentence — the rule's cost. ``human``: the candidates after :func:`~.correction.apply_corrections`
    (their kept ones are the last stage, ``human``)."""
    docs = _docs(documents)
    stages = list(report.stages)
    if human is not None:
        stages.append(("human", [c for c in human if c.kept]))
    rows: list[dict[str, Any]] = []
    prev: list[Candidate] | None = None
    for name, kept in stages:
        sc = triple_scores(kept, docs, level, include_dropped=True, gold_filter=gold_filter)
        if prev is None:
            dropped_list: list[Candidate] = []
        else:
            now = {c.id for c in kept}
            dropped_list = [c for c in prev if c.id not in now]
        row = {"stage": name, "candidates": len(kept), **sc.as_dict(),
               "dropped": len(dropped_list), "dropped_true": sum(_is_true(c, docs) is True for c in dropped_list)}
        if name == "human" and prev is not None:
            before = {c.id: c.kg_triple for c in prev}
            row["fixed"] = sum(1 for c in kept if c.id in before and before[c.id] != c.kg_triple)
        rows.append(row)
        prev = kept
    return rows


def sum_funnels(funnels: Iterable[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Add up funnels of several parts (documents scored one at a time), stage by stage, and
    recompute the scores. Every part must have the same stages in the same order."""
    total: list[dict[str, Any]] | None = None
    for rows in funnels:
        if total is None:
            total = [dict(r) for r in rows]
            continue
        if [r["stage"] for r in rows] != [r["stage"] for r in total]:
            raise ValueError(f"funnels have different stages: {[r['stage'] for r in total]} vs "
                             f"{[r['stage'] for r in rows]}")
        for t, r in zip(total, rows):
            for k, v in r.items():
                if k not in ("stage", "precision", "recall", "f1") and isinstance(v, int):
                    t[k] = t.get(k, 0) + v
    for t in total or []:
        t.update(Scores(t["tp"], t["fp"], t["fn"]).as_dict())
    return total or []


def plot_funnel(rows: Sequence[Mapping[str, Any]], title: str | None = None):
    """Bars: candidates kept after each stage; lines (right axis): precision and recall. Returns
    the matplotlib ``Figure`` (not shown; a notebook displays it when it is the cell's value)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.3 * len(rows)), 4.0), layout="constrained")
    ax = fig.add_subplot()
    names = [r["stage"] for r in rows]
    x = list(range(len(rows)))
    bars = ax.bar(x, [r["candidates"] for r in rows], color="0.8", edgecolor="0.4", label="candidates kept")
    for b, r in zip(bars, rows):
        ax.annotate(f"{r['candidates']:,}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("candidates kept")
    ax2 = ax.twinx()
    ax2.plot(x, [r["precision"] for r in rows], "o-", color="C0", label="precision")
    ax2.plot(x, [r["recall"] for r in rows], "s-", color="C3", label="recall")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("precision / recall")
    handles = [bars] + ax2.get_lines()
    ax.legend(handles, [h.get_label() for h in handles], loc="lower left", fontsize=8)
    ax.set_title(title or "KG2Instruction funnel: candidates and quality after each stage")
    return fig


# ====================================================================== linking ====
@dataclass
class LinkingScores:
    """Entity linking against gold mentions (exact span, right entity)."""

    total: int = 0
    correct: int = 0
    wrong: int = 0            # a mention at that span, linked elsewhere or left unlinked
    missed: int = 0           # no mention detected at that span
    ambiguous_total: int = 0  # gold mentions whose detected surface has >= 2 KG candidates
    ambiguous_correct: int = 0
    by_surface: dict[str, list[int]] = field(default_factory=dict)  # planted alias → [correct, total]

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def ambiguous_accuracy(self) -> float:
        return self.ambiguous_correct / self.ambiguous_total if self.ambiguous_total else 0.0

    def add(self, other: "LinkingScores") -> None:
        """Add another part's counts (documents scored one at a time)."""
        for k in ("total", "correct", "wrong", "missed", "ambiguous_total", "ambiguous_correct"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for surface, (c, n) in other.by_surface.items():
            cell = self.by_surface.setdefault(surface, [0, 0])
            cell[0] += c
            cell[1] += n

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        return {"total": self.total, "correct": self.correct, "wrong": self.wrong, "missed": self.missed,
                "accuracy": round(self.accuracy, digits), "ambiguous_total": self.ambiguous_total,
                "ambiguous_correct": self.ambiguous_correct,
                "ambiguous_accuracy": round(self.ambiguous_accuracy, digits),
                "by_surface": {k: {"correct": c, "total": n, "accuracy": round(c / n, digits) if n else 0.0}
                               for k, (c, n) in sorted(self.by_surface.items())}}


def linking_scores(documents: Iterable[Document] | Mapping[str, Document],
                   ambiguous_surfaces: Mapping[str, Iterable[str]] | Iterable[str] | None = None) -> LinkingScores:
    """Score entity links against the gold mentions of annotated sentences
    (``Sentence.gold_mentions``, document offsets). A gold mention is correct when a link with
    exactly its span has its entity; ``missed`` when no mention has that span. "Ambiguous": the
    detected mention has two or more distinct KG candidates. ``by_surface`` counts the gold
    mentions whose text is one of ``ambiguous_surfaces`` (``{lang: surfaces}`` or a plain list;
    default :data:`~knowlm_utils.ie.linking.AMBIGUOUS_ALIASES`), found or not."""
    if ambiguous_surfaces is None:
        ambiguous_surfaces = AMBIGUOUS_ALIASES
    if isinstance(ambiguous_surfaces, Mapping):
        watch = {lang: set(v) for lang, v in ambiguous_surfaces.items()}
    else:
        surfaces = set(ambiguous_surfaces)
        watch = {"zh": surfaces, "en": surfaces}
    out = LinkingScores()
    for doc in _docs(documents).values():
        by_span = {(ln.mention.start, ln.mention.end): ln for ln in doc.links.links}
        for s in doc.sentences:
            if s.gold is None:
                continue
            for a, b, eid in s.gold_mentions:
                out.total += 1
                ln = by_span.get((a, b))
                ok = ln is not None and ln.entity_id == eid
                if ln is None:
                    out.missed += 1
                elif ok:
                    out.correct += 1
                else:
                    out.wrong += 1
                if ln is not None and len(set(ln.mention.candidates)) >= 2:
                    out.ambiguous_total += 1
                    out.ambiguous_correct += ok
                surface = doc.text[a:b]
                if surface in watch.get(doc.lang, ()):
                    cell = out.by_surface.setdefault(surface, [0, 0])
                    cell[0] += ok
                    cell[1] += 1
    return out


# ====================================================================== annotations ====
def annotations_with_subjects(documents: Iterable[Document] | Mapping[str, Document],
                              candidates: Iterable[Candidate], ie_schema: Mapping[str, Any],
                              require_in_text: bool = True) -> Iterator[tuple[Annotation, str | None]]:
    """``(annotation, subject)`` per sentence with at least one linked entity (annotated or not),
    in document and sentence order. ``subject`` is the entity the document is about
    (``Document.subject``; ``None`` when unknown): split train/valid/test by it so that no test
    sentence comes from a document about an entity a train document is about.

    The annotation: ``id = f"{doc_id}:{sentence_index}"``, ``text`` the sentence (stripped),
    ``source = f"kg2instruction:{doc.source}:{doc.line}"``; ``entities`` the linked mentions as
    ``Entity(surface, type name in the document's language)`` (distinct, in text order; types
    the IE schema leaves out are skipped); ``relations`` the kept candidates of the sentence as
    ``Relation(head_text, IE relation name in the document's language, tail_text)``.
    ``require_in_text`` (default): a relation whose head or tail text does not occur in the
    sentence (a document-scope candidate whose entity is named elsewhere) is left out, so the
    output never names something the input text lacks. A kept candidate without an IE relation
    (the schema rule did not run) raises ``ValueError``.
    """
    by_sentence: dict[tuple[str, int], list[Candidate]] = defaultdict(list)
    for c in candidates:
        if c.kept:
            if c.ie_relation is None:
                raise ValueError(f"candidate {c.id} has no IE relation: run the schema rule "
                                 "(run_filters with FilterOptions.schema on) before to_annotations")
            by_sentence[c.doc_id, c.sentence_index].append(c)
    types = ie_schema["entity_types"]
    for doc in _docs(documents).values():
        lang = doc.lang
        for s in doc.sentences:
            linked = [ln for ln in s.links if ln.entity_id is not None]
            if not linked:
                continue
            text = s.text.strip()
            entities: list[Entity] = []
            for ln in linked:
                kg_type = ln.entity_id.split("/", 1)[0]
                if kg_type not in types:
                    continue
                ent = Entity(ln.mention.surface, types[kg_type][lang])
                if ent not in entities:
                    entities.append(ent)
            relations: list[Relation] = []
            for c in by_sentence.get((doc.id, s.index), ()):
                if require_in_text and (c.head_text not in text or c.tail_text not in text):
                    continue
                rel = Relation(c.head_text, relation_label(ie_schema, c.ie_relation, lang), c.tail_text)
                if rel not in relations:
                    relations.append(rel)
            ann = Annotation(id=f"{doc.id}:{s.index}", text=text, lang=lang, entities=entities,
                             relations=relations, source=f"kg2instruction:{doc.source}:{doc.line}")
            yield ann, doc.subject


def to_annotations(documents: Iterable[Document] | Mapping[str, Document], candidates: Iterable[Candidate],
                   ie_schema: Mapping[str, Any], require_in_text: bool = True) -> Iterator[Annotation]:
    """The annotations of :func:`annotations_with_subjects` without the subjects (use that one
    to split by entity)."""
    for ann, _ in annotations_with_subjects(documents, candidates, ie_schema, require_in_text):
        yield ann


__all__ = ["LEVELS", "Scores", "schema_gold_filter", "triple_scores", "funnel", "sum_funnels", "plot_funnel",
           "LinkingScores", "linking_scores", "annotations_with_subjects", "to_annotations", "DS_STAGE"]
