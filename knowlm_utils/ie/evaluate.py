"""Scoring information extraction by instruction-tuned models (stage 08): precision, recall and F1
of the items a model writes against the gold answer of each stage-06 instruction record.

Units counted (a :class:`Counts` ``tp``/``fp``/``fn``; P/R/F1 computed from the counts, never from
rounded values):

- NER — entity level: ``(text, type)``;
- RE — triple level: ``(head, relation, tail)``;
- EE — trigger level ``(trigger, event type)`` and, separately, argument level
  ``(event type, role, argument text)`` (an argument counts wherever its event type matches, so a
  right argument survives a wrong trigger span).

``match="set"`` compares distinct units (a unit written twice counts once); ``match="multiset"``
counts repetitions (two gold events of one type sharing an argument give two argument units, and a
unit predicted twice where gold has it once is one tp and one fp).

**Normalisation** (``normalize=True``, the default): before comparing, every string field of both
sides (mention texts, types, relations, roles) goes through :func:`normalize_text` — Unicode NFKC
(full-width letters, digits and punctuation become half-width: ``Ｂｅｉｊｉｎｇ``→``Beijing``,
``（``→``(``), leading/trailing whitespace stripped, inner whitespace runs collapsed to one space.
Case is kept. ``normalize=False`` compares the exact strings.

**Empty answers.** Undefined ratios are 0.0: a :class:`Counts` with ``tp=fp=fn=0`` has P=R=F1=0.0
and means "nothing measured" (read the counts). A record whose gold is empty and whose answer is
empty is a correct "nothing here": it adds ``0/0/0`` to the tables (so it neither helps nor hurts the
micro averages) and is counted in the report's ``empty_gold`` section; any item predicted for it is
a false positive.

**IEPile chunks.** Stage 06 splits one sentence's IEPile schema into several records
(``<annotation id>:<task>:iepile:iepile:<k>``). :func:`regroup` merges the chunks of one sentence
before scoring: gold = the union of the chunks' gold items, prediction = the union of each chunk's
predicted items restricted to that chunk's schema, so the sentence counts once. Text-style records
(``<annotation id>:<task>:text:<fmt>:<k>``) are prompts of their own and each counts once.

**Parsing.** Gold answers are parsed strictly (a gold that does not parse is a bug: ValueError
naming the record id); model answers tolerantly (:func:`~.formats.parse_output`). An answer is
*unparseable* when the parser left a fragment it could not read (``ParseResult.unparsed``), or when it
found no item although the answer held text other than an empty marker (``NAN``, an empty IEPile
object). IEPile answers are parsed with the chunk's schema (keys outside it are ignored, as in
IEPile); text-style answers without it, so an item of a type the instruction did not ask for is a
false positive in every text format alike. Records of task ``GENERAL`` are skipped and counted.

**Error analysis** (:func:`error_table`): each false positive/negative unit of a sentence is
classified, pairing a spurious unit with a missed one when they differ in one way only:
NER ``wrong type`` (same text, other type) → ``wrong boundary`` (same type, texts overlap) →
``missed`` / ``spurious``; RE ``wrong relation`` (same head and tail) → ``wrong boundary`` (same
relation, head and tail each equal or overlapping, not both equal) → ``missed`` / ``spurious``; EE
(triggers) ``wrong type`` → ``wrong boundary`` → ``missed`` / ``spurious``. Two texts *overlap* when one
contains the other or the end of one is the start of the other over at least half of the shorter
one. A paired error counts once and uses one fp and one fn, so per task
``fp = spurious + paired`` and ``fn = missed + paired``.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from .annotation import TASKS, Entity, Event, Relation
from .formats import ParseResult, format_output, parse_output, schema_key

MATCHES = ("set", "multiset")
#: the units of each task: the first is the task's main level (what ``micro`` pools)
LEVELS = {"NER": ("entity",), "RE": ("triple",), "EE": ("trigger", "argument")}
GENERAL = "GENERAL"
ERROR_KINDS = {"NER": ("wrong type", "wrong boundary", "missed", "spurious"),
               "RE": ("wrong relation", "wrong boundary", "missed", "spurious"),
               "EE": ("wrong type", "wrong boundary", "missed", "spurious")}
_IEPILE_ID = re.compile(r"^(?P<key>.+:(?:NER|RE|EE):iepile):iepile:(?P<k>\d+)$")
_EMPTY_ANSWERS = {"", "nan", "none", "null", "无"}
_SPACES = re.compile(r"\s+")

Item = Entity | Relation | Event
Unit = tuple[str, ...]


# ------------------------------------------------------------------ counts --
@dataclass(frozen=True)
class Counts:
    """True positives, false positives, false negatives; P/R/F1 from these (0.0 where undefined)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        # 2PR/(P+R) = 2tp/(2tp+fp+fn): exact from the counts
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0

    def __add__(self, other: "Counts") -> "Counts":
        if not isinstance(other, Counts):
            return NotImplemented
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def __radd__(self, other: Any) -> "Counts":  # sum(counts) starts from 0
        if other == 0:
            return self
        return NotImplemented

    def to_dict(self) -> dict[str, Any]:
        return {"p": self.precision, "r": self.recall, "f1": self.f1, "tp": self.tp, "fp": self.fp, "fn": self.fn}


# ------------------------------------------------------------------ units --
def normalize_text(text: str) -> str:
    """NFKC (full-width → half-width), strip, collapse whitespace runs to one space."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def _norm(normalize: bool) -> Callable[[str], str]:
    return normalize_text if normalize else (lambda s: s)


def _level(task: str, level: str | None) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    if level is None:
        return LEVELS[task][0]
    if level not in LEVELS[task]:
        raise ValueError(f"unknown level {level!r} for {task}; allowed: {', '.join(LEVELS[task])}")
    return level


def item_units(task: str, items: Iterable[Item], level: str | None = None, normalize: bool = True) -> list[Unit]:
    """The units scored for ``items`` (duplicates kept): NER ``(text, type)``, RE ``(head, relation,
    tail)``, EE trigger ``(trigger, type)`` or argument ``(type, role, text)``."""
    level, n = _level(task, level), _norm(normalize)
    out: list[Unit] = []
    for it in items:
        if level == "entity":
            out.append((n(it.text), n(it.type)))
        elif level == "triple":
            out.append((n(it.head), n(it.relation), n(it.tail)))
        elif level == "trigger":
            out.append((n(it.trigger), n(it.type)))
        else:
            out += [(n(it.type), n(a.role), n(a.text)) for a in it.arguments]
    return out


def _match_units(gold: Sequence[Unit], pred: Sequence[Unit], match: str) -> tuple[Counter, Counter, Counter]:
    """(matched, spurious, missed) unit counters."""
    if match not in MATCHES:
        raise ValueError(f"unknown match {match!r}; allowed: {', '.join(MATCHES)}")
    g, p = Counter(gold), Counter(pred)
    if match == "set":
        g, p = Counter(set(g)), Counter(set(p))
    both = g & p
    return both, p - both, g - both


def score_units(gold: Sequence[Unit], pred: Sequence[Unit], match: str = "set") -> Counts:
    both, spurious, missed = _match_units(gold, pred, match)
    return Counts(sum(both.values()), sum(spurious.values()), sum(missed.values()))


def score_items(task: str, gold_items: Iterable[Item], pred_items: Iterable[Item], match: str = "set",
                level: str | None = None, normalize: bool = True) -> Counts:
    """Counts of one comparison: NER entities, RE triples, EE triggers (``level="argument"``: EE
    arguments). ``match``: ``"set"`` (distinct units) or ``"multiset"`` (repetitions count)."""
    return score_units(item_units(task, gold_items, level, normalize),
                       item_units(task, pred_items, level, normalize), match)


def _breakdown(units_gold: Sequence[Unit], units_pred: Sequence[Unit], match: str,
               key: Callable[[Unit], str]) -> dict[str, Counts]:
    """Counts per ``key(unit)`` (the unit's type, relation, role …)."""
    both, spurious, missed = _match_units(units_gold, units_pred, match)
    out: dict[str, Counts] = {}
    for counter, make in ((both, lambda n: Counts(n, 0, 0)), (spurious, lambda n: Counts(0, n, 0)),
                          (missed, lambda n: Counts(0, 0, n))):
        for unit, n in counter.items():
            out[key(unit)] = out.get(key(unit), Counts()) + make(n)
    return out


# ------------------------------------------------------------------ records --
def _schema_types(schema: Any) -> list[str] | None:
    if not schema:
        return None
    return [schema_key(s) for s in schema]


@dataclass
class Group:
    """The records scored as one unit: a text-style record alone, or the IEPile chunk records of one
    sentence and task (``key`` = ``<annotation id>:<task>:iepile``)."""

    key: str
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first(self) -> dict[str, Any]:
        return self.records[0]

    @property
    def task(self) -> str:
        return self.first["task"]

    @property
    def lang(self) -> str:
        return self.first["lang"]

    @property
    def style(self) -> str:
        return self.first["style"]

    @property
    def format(self) -> str:
        return self.first["format"]


def regroup(records: Iterable[Mapping[str, Any]]) -> list[Group]:
    """Records → scoring groups, in order of first appearance: IEPile chunk records
    (``<annotation id>:<task>:iepile:iepile:<k>``) of one sentence and task are merged; every other
    record is a group of its own."""
    groups: dict[str, Group] = {}
    for rec in records:
        rid = str(rec["id"])
        m = _IEPILE_ID.match(rid) if rec.get("style") == "iepile" else None
        key = m.group("key") if m else rid
        if key in groups and not m:
            raise ValueError(f"record id {rid!r} occurs twice")
        group = groups.setdefault(key, Group(key))
        if m and any(r["id"] == rid for r in group.records):
            raise ValueError(f"record id {rid!r} occurs twice")
        group.records.append(dict(rec))
    return list(groups.values())


def parse_gold(record: Mapping[str, Any]) -> list[Item]:
    """The gold items of a record (strict: a gold answer that does not parse is a ValueError naming
    the record)."""
    try:
        return parse_output(record["task"], record["format"], record["output"], record["lang"],
                            _schema_types(record.get("schema")), strict=True).items
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"record {record.get('id')!r}: gold output does not parse: {exc}") from None


def parse_prediction(record: Mapping[str, Any], answer: str) -> ParseResult:
    """A model's answer to ``record`` read tolerantly; IEPile answers restricted to the record's
    schema (keys outside it go to ``ignored``)."""
    schema = _schema_types(record.get("schema")) if record["format"] == "iepile" else None
    res = parse_output(record["task"], record["format"], answer, record["lang"], schema)
    if schema is not None:  # the parser already drops other keys; keep the rule explicit
        kept = [it for it in res.items if _type_of(it) in schema]
        res.ignored += [repr(it) for it in res.items if _type_of(it) not in schema]
        res.items = kept
    return res


def is_unparseable(answer: str, res: ParseResult) -> bool:
    """A fragment could not be read, or nothing was found in an answer that is not an empty marker."""
    if res.unparsed:
        return True
    return not res.items and answer.strip().lower() not in _EMPTY_ANSWERS and bool(res.ignored)


def _type_of(item: Item) -> str:
    return item.relation if isinstance(item, Relation) else item.type


def items_to_json(items: Iterable[Item]) -> list[dict[str, Any]]:
    """Items as JSON-able dicts (for ``predictions.jsonl``)."""
    out = []
    for it in items:
        if isinstance(it, Entity):
            out.append({"text": it.text, "type": it.type})
        elif isinstance(it, Relation):
            out.append({"head": it.head, "relation": it.relation, "tail": it.tail})
        else:
            out.append({"trigger": it.trigger, "type": it.type,
                        "arguments": [{"role": a.role, "text": a.text} for a in it.arguments]})
    return out


@dataclass
class _Scored:
    """One group: gold and predicted items, each with the record id it came from."""

    group: Group
    gold: list[tuple[str, Item]]
    pred: list[tuple[str, Item]]
    unparseable: int


def _score_groups(records: Iterable[Mapping[str, Any]], predictions: Mapping[str, str]
                  ) -> tuple[list[_Scored], int, int]:
    """(scored groups, skipped GENERAL records, unparseable answers by (task, format) in the groups)."""
    ie, skipped = [], 0
    for rec in records:
        if rec.get("task") == GENERAL:
            skipped += 1
            continue
        if rec.get("task") not in TASKS:
            raise ValueError(f"record {rec.get('id')!r}: unknown task {rec.get('task')!r}")
        ie.append(rec)
    scored = []
    for group in regroup(ie):
        gold, pred, bad = [], [], 0
        for rec in group.records:
            rid = rec["id"]
            if rid not in predictions:
                raise ValueError(f"no prediction for record {rid!r}")
            answer = predictions[rid]
            if not isinstance(answer, str):
                raise ValueError(f"prediction for record {rid!r} is not a string: {type(answer).__name__}")
            gold += [(rid, it) for it in parse_gold(rec)]
            res = parse_prediction(rec, answer)
            bad += is_unparseable(answer, res)
            pred += [(rid, it) for it in res.items]
        scored.append(_Scored(group, gold, pred, bad))
    return scored, skipped, sum(len(s.group.records) for s in scored)


# ------------------------------------------------------------------ report --
def _table(d: Mapping[str, Counts]) -> dict[str, dict[str, Any]]:
    return {k: d[k].to_dict() for k in sorted(d)}


def _add(table: dict[str, Counts], key: str, c: Counts) -> None:
    table[key] = table.get(key, Counts()) + c


@dataclass
class EvalReport:
    """Micro P/R/F1 overall (the main unit of each task pooled: entities, triples, triggers; EE
    arguments are reported under ``by_task["EE-argument"]`` only) and broken down."""

    micro: Counts = field(default_factory=Counts)
    by_task: dict[str, Counts] = field(default_factory=dict)
    by_task_lang: dict[str, Counts] = field(default_factory=dict)
    by_style: dict[str, Counts] = field(default_factory=dict)
    by_format: dict[str, Counts] = field(default_factory=dict)
    by_relation: dict[str, Counts] = field(default_factory=dict)
    by_entity_type: dict[str, Counts] = field(default_factory=dict)
    by_event: dict[str, dict[str, Any]] = field(default_factory=dict)
    unparseable: int = 0
    unparseable_by_task: dict[str, int] = field(default_factory=dict)
    unparseable_by_format: dict[str, int] = field(default_factory=dict)
    records: int = 0
    groups: int = 0
    skipped_general: int = 0
    empty_gold: dict[str, int] = field(default_factory=lambda: {"groups": 0, "predicted_empty": 0})
    match: str = "set"
    normalize: bool = True
    errors: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "micro": self.micro.to_dict(),
            "by_task": _table(self.by_task),
            "by_task_lang": _table(self.by_task_lang),
            "by_style": _table(self.by_style),
            "by_format": _table(self.by_format),
            "by_relation": _table(self.by_relation),
            "by_entity_type": _table(self.by_entity_type),
            "by_event": {t: {"trigger": e["trigger"].to_dict(), "argument": e["argument"].to_dict(),
                             "roles": _table(e["roles"])} for t, e in sorted(self.by_event.items())},
            "unparseable": self.unparseable,
            "unparseable_by_task": dict(sorted(self.unparseable_by_task.items())),
            "unparseable_by_format": dict(sorted(self.unparseable_by_format.items())),
            "records": self.records,
            "groups": self.groups,
            "skipped_general": self.skipped_general,
            "empty_gold": dict(self.empty_gold),
            "match": self.match,
            "normalize": self.normalize,
            "errors": self.errors,
        }


def evaluate_predictions(records: Iterable[Mapping[str, Any]], predictions: Mapping[str, str], match: str = "set",
                         normalize: bool = True, max_examples: int = 5) -> EvalReport:
    """Score ``predictions`` (record id → the model's answer text) against the records' gold
    outputs; every IE record needs a prediction (GENERAL records are skipped and counted)."""
    if match not in MATCHES:
        raise ValueError(f"unknown match {match!r}; allowed: {', '.join(MATCHES)}")
    records = list(records)
    scored, skipped, n_records = _score_groups(records, predictions)
    rep = EvalReport(records=n_records, groups=len(scored), skipped_general=skipped, match=match,
                     normalize=normalize)
    for s in scored:
        g = s.group
        task = g.task
        gold = [it for _, it in s.gold]
        pred = [it for _, it in s.pred]
        if s.unparseable:
            rep.unparseable += s.unparseable
            rep.unparseable_by_task[task] = rep.unparseable_by_task.get(task, 0) + s.unparseable
            fkey = f"{task}/{g.format}"
            rep.unparseable_by_format[fkey] = rep.unparseable_by_format.get(fkey, 0) + s.unparseable
        if not gold:
            rep.empty_gold["groups"] += 1
            rep.empty_gold["predicted_empty"] += not pred
        gu, pu = item_units(task, gold, None, normalize), item_units(task, pred, None, normalize)
        main = score_units(gu, pu, match)
        rep.micro += main
        _add(rep.by_task, task, main)
        _add(rep.by_task_lang, f"{task}/{g.lang}", main)
        _add(rep.by_style, g.style, main)
        _add(rep.by_format, g.format, main)
        if task == "NER":
            for k, c in _breakdown(gu, pu, match, lambda u: u[1]).items():
                _add(rep.by_entity_type, k, c)
        elif task == "RE":
            for k, c in _breakdown(gu, pu, match, lambda u: u[1]).items():
                _add(rep.by_relation, k, c)
        else:
            ga, pa = item_units(task, gold, "argument", normalize), item_units(task, pred, "argument", normalize)
            arg = score_units(ga, pa, match)
            _add(rep.by_task, "EE-argument", arg)
            _add(rep.by_task_lang, f"EE-argument/{g.lang}", arg)
            for k, c in _breakdown(gu, pu, match, lambda u: u[1]).items():
                _event(rep, k)["trigger"] += c
            for k, c in _breakdown(ga, pa, match, lambda u: u[0]).items():
                _event(rep, k)["argument"] += c
            for k, c in _breakdown(ga, pa, match, lambda u: u[0] + "\x00" + u[1]).items():
                etype, role = k.split("\x00", 1)
                _add(_event(rep, etype)["roles"], role, c)
    rep.errors = _errors(scored, max_examples, normalize)
    return rep


def _event(rep: EvalReport, etype: str) -> dict[str, Any]:
    return rep.by_event.setdefault(etype, {"trigger": Counts(), "argument": Counts(), "roles": {}})


# ------------------------------------------------------------------ error analysis --
def _overlaps(a: str, b: str) -> bool:
    """Different texts where one contains the other, or the end of one is the start of the other
    over at least half of the shorter one."""
    if a == b or not a or not b:
        return False
    if a in b or b in a:
        return True
    need = max(1, (min(len(a), len(b)) + 1) // 2)
    for x, y in ((a, b), (b, a)):
        for k in range(min(len(x), len(y)) - 1, need - 1, -1):
            if x[-k:] == y[:k]:
                return True
    return False


def _same_or_overlap(a: str, b: str) -> bool:
    return a == b or _overlaps(a, b)


#: per task: (kind, test(spurious unit, missed unit)) in priority order; units as in item_units
_PAIR_RULES: dict[str, list[tuple[str, Callable[[Unit, Unit], bool]]]] = {
    "NER": [("wrong type", lambda p, g: p[0] == g[0] and p[1] != g[1]),
            ("wrong boundary", lambda p, g: p[1] == g[1] and _overlaps(p[0], g[0]))],
    "RE": [("wrong relation", lambda p, g: p[0] == g[0] and p[2] == g[2] and p[1] != g[1]),
           ("wrong boundary", lambda p, g: p[1] == g[1] and _same_or_overlap(p[0], g[0])
            and _same_or_overlap(p[2], g[2]) and (p[0], p[2]) != (g[0], g[2]))],
    "EE": [("wrong type", lambda p, g: p[0] == g[0] and p[1] != g[1]),
           ("wrong boundary", lambda p, g: p[1] == g[1] and _overlaps(p[0], g[0]))],
}


def _show(task: str, item: Item | None) -> str | None:
    if item is None:
        return None
    return format_output(task, "tuple", [item])


def _errors(scored: Sequence[_Scored], max_examples: int, normalize: bool) -> dict[str, Any]:
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for s in scored:
        task = s.group.task
        table = tables.setdefault(task, {kind: {"count": 0, "examples": []} for kind in ERROR_KINDS[task]})
        gold: dict[Unit, tuple[str, Item]] = {}
        pred: dict[Unit, tuple[str, Item]] = {}
        for side, found in ((gold, s.gold), (pred, s.pred)):
            for rid, it in found:  # first occurrence kept, in order
                side.setdefault(item_units(task, [it], None, normalize)[0], (rid, it))
        missed = [u for u in gold if u not in pred]
        spurious = [u for u in pred if u not in gold]

        def note(kind: str, g: Unit | None, p: Unit | None) -> None:
            entry = table[kind]
            entry["count"] += 1
            if len(entry["examples"]) < max_examples:
                rid = (pred[p] if p is not None else gold[g])[0]
                entry["examples"].append({"id": rid, "gold": _show(task, gold[g][1] if g is not None else None),
                                          "predicted": _show(task, pred[p][1] if p is not None else None)})

        for kind, test in _PAIR_RULES[task]:
            for p in list(spurious):
                g = next((g for g in missed if test(p, g)), None)
                if g is not None:
                    note(kind, g, p)
                    spurious.remove(p)
                    missed.remove(g)
        for g in missed:
            note("missed", g, None)
        for p in spurious:
            note("spurious", None, p)
    return tables


def error_table(records: Iterable[Mapping[str, Any]], predictions: Mapping[str, str], max_examples: int = 5,
                normalize: bool = True) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {kind: {"count": n, "examples": [{"id", "gold", "predicted"}, …]}}}`` over the main
    units (set semantics, IEPile chunks regrouped); kinds in the module docstring. ``gold`` and
    ``predicted`` are the units in the ``tuple`` format (None for a missed/spurious side); ``id`` is
    the record the predicted unit (else the gold one) came from."""
    scored, _, _ = _score_groups(list(records), predictions)
    return _errors(scored, max_examples, normalize)


__all__ = ["MATCHES", "LEVELS", "ERROR_KINDS", "Counts", "Group", "EvalReport", "normalize_text", "item_units",
           "score_units", "score_items", "regroup", "parse_gold", "parse_prediction", "is_unparseable",
           "items_to_json", "evaluate_predictions", "error_table"]
