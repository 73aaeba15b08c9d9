"""A rule-based extractor built from stage 06's parts: the reference next to the models in
notebook 08.

For an instruction record it reads the record's sentence, links its mentions with the
gazetteer and the KG (:class:`~.documents.DocumentPreparer`), proposes the KG facts between the
linked entities (:func:`~.supervision.distant_supervision`) and keeps what the rule filters keep,
then writes the answer in the record's own format and schema — exactly what a model is asked
to produce. It knows the KG, so it is not a fair competitor on entities the KG lacks; it shows
what linking + distant supervision alone achieve on one sentence without its document.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from ..ie.formats import format_output
from ..ie.linking import EntityLinker
from ..kg import KnowledgeGraph
from .documents import DocumentPreparer
from .evaluation import annotations_with_subjects
from .supervision import FilterOptions, distant_supervision, run_filters


def record_text(record: Mapping[str, Any]) -> str:
    """The sentence an instruction record asks about (IEPile: inside the instruction JSON)."""
    if record.get("style") == "iepile":
        return str(json.loads(record["instruction"])["input"])
    return str(record.get("input", ""))


def rule_answers(records: Iterable[Mapping[str, Any]], kg: KnowledgeGraph, ie_schema: Mapping[str, Any],
                 linker: EntityLinker | None = None, filters: FilterOptions | None = None) -> dict[str, str]:
    """``{record id: answer}`` for NER and RE records (other tasks get the empty answer)."""
    prep = DocumentPreparer(kg, linker or EntityLinker(kg), None)
    filters = filters or FilterOptions()
    out: dict[str, str] = {}
    for r in records:
        task, fmt, lang = r["task"], r["format"], r["lang"]
        schema = list(r.get("schema") or []) or None
        items: list = []
        if task in ("NER", "RE"):
            doc = prep({"id": str(r["id"]), "text": record_text(r), "lang": lang, "source": "rules"})
            if doc is not None:
                report = run_filters(distant_supervision(doc, kg), {doc.id: doc}, kg, ie_schema, filters)
                for ann, _ in annotations_with_subjects({doc.id: doc}, report.kept, ie_schema):
                    items += ann.entities if task == "NER" else ann.relations
        if schema is not None:
            key = (lambda it: it.type) if task == "NER" else (lambda it: it.relation)
            items = [it for it in items if key(it) in schema]
        out[str(r["id"])] = format_output(task, fmt, list(dict.fromkeys(items)), lang,
                                          schema=schema) if task in ("NER", "RE") else format_output(
            task, fmt, [], lang, schema=schema)
    return out


__all__ = ["record_text", "rule_answers"]
