"""Instruction synthesis for KG2Instruction: IE annotations → instruction-tuning records.

Two styles, as in KnowLM's KG2Instruction (InstructIE) and IEPile (OneKE):

* ``text`` — a natural-language instruction drawn from ``instruction_templates.yaml`` (about 20 per
  task × language, a quarter of them "open": no label list), with an output-format description from
  ``format_descriptions.yaml`` for one of the text formats (tuple, labeled, grouped, dict). Schema
  templates list the labels present in the text plus ``schema_negatives`` absent ones (hard negatives
  first), shuffled; the answer is ``format_output`` of the items, ``NAN`` when there is none.
* ``iepile`` — the schema is the present labels, confusable labels that are absent (hard negatives)
  and some random absent labels, in label-set order, cut into chunks by ``split_schema``; each chunk
  is one record whose ``instruction`` is the IEPile JSON string ``{instruction, schema, input}`` (the
  text lives there; ``input`` is empty; the instruction one of the phrasings of
  ``iepile_instructions.yaml``, drawn per record) and whose answer is the JSON object keyed by the chunk.

Paraphrase hold-out: ``held_out_phrasings`` instruction phrasings per task × language (text style:
that many schema templates and that many open ones; IEPile style: among all but the first
phrasing) are chosen once with the seed and never used in ordinary records; records made with
``paraphrase=True`` (the paraphrase split of stage 06) use only those. :meth:`InstructionSynthesizer.held_out`
lists them.

Every record has the keys :data:`RECORD_KEYS` (plus ``split`` when ``source_split`` is given). Choices
are made by a random generator seeded from ``(seed, annotation id, task, style)``, so the records of one
annotation never depend on which annotations came before it.

Label sets and hard negatives come from an IE schema mapping (the form of ``ie_schema.yaml``)::

    {"entity_types": {kg_type: {"zh": str, "en": str}},
     "relations": {name: {"kg_relation": str, "reverse": bool, "zh": str, "en": str,
                          "head": [kg types], "tail": [kg types]}},
     "events": {name: {"zh": str, "en": str, "roles": {role: {"zh": str, "en": str}}}}}
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from ..fileio import read_yaml_file
from ..config import Section, field
from ..ie.annotation import LANGS, TASKS, Annotation, Argument, Entity, Event, Relation
from ..ie.formats import TEXT_FORMATS, format_output, iepile_instruction, split_schema

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "kg2instruction"
TEMPLATES_FILE = DATA_DIR / "instruction_templates.yaml"
FORMATS_FILE = DATA_DIR / "format_descriptions.yaml"
IEPILE_FILE = DATA_DIR / "iepile_instructions.yaml"
STYLES = ("text", "iepile")
RECORD_KEYS = ("id", "task", "lang", "style", "format", "schema", "instruction", "input", "output", "source")
PLACEHOLDERS = ("schema", "format")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_SCHEMA_SEPARATOR = {"zh": "、", "en": ", "}

# The items whose formatted form each format description must quote (see format_example).
_ELLIPSIS = "…"
_PLACEHOLDER_ITEMS: dict[tuple[str, str], dict[str, list[Any]]] = {}


def _placeholders() -> None:
    e = _ELLIPSIS
    for lang, words in (("zh", {"ent": "实体", "etype": "实体类型", "head": "头实体", "rel": "关系", "tail": "尾实体",
                                "trigger": "触发词", "evtype": "事件类型", "arg": "论元", "role": "角色"}),
                        ("en", {"ent": "entity", "etype": "type", "head": "head", "rel": "relation", "tail": "tail",
                                "trigger": "trigger", "evtype": "event type", "arg": "argument", "role": "role"})):
        w = words
        two_args = (Argument(w["role"] + "1", w["arg"] + "1"), Argument(w["role"] + "2", w["arg"] + "2"))
        _PLACEHOLDER_ITEMS["NER", lang] = {
            "tuple": [Entity(w["ent"], w["etype"])], "labeled": [Entity(e, e)], "dict": [Entity(e, e)],
            "grouped": [Entity(w["ent"] + "1", w["etype"]), Entity(w["ent"] + "2", w["etype"])]}
        _PLACEHOLDER_ITEMS["RE", lang] = {
            "tuple": [Relation(w["head"], w["rel"], w["tail"])], "labeled": [Relation(e, e, e)],
            "dict": [Relation(e, e, e)],
            "grouped": [Relation(w["head"] + "1", w["rel"], w["tail"] + "1"),
                        Relation(w["head"] + "2", w["rel"], w["tail"] + "2")]}
        _PLACEHOLDER_ITEMS["EE", lang] = {
            "tuple": [Event(w["trigger"], w["evtype"], two_args)], "grouped": [Event(w["trigger"], w["evtype"], two_args)],
            "labeled": [Event(e, e, (Argument(e, e),))], "dict": [Event(e, e, (Argument(e, e),))]}


_placeholders()


def format_example(task: str, lang: str, fmt: str) -> str:
    """The answer shape a format description must quote: ``format_output`` of placeholder items,
    e.g. ``(头实体,关系,尾实体)`` for zh RE tuple, ``(trigger,event type,argument1#role1;argument2#role2)``
    for en EE tuple."""
    return format_output(task, fmt, _PLACEHOLDER_ITEMS[task, lang][fmt], lang)


# ====================================================================== template files ====
@dataclass(frozen=True)
class Template:
    """One instruction template; ``open`` when it has no ``{schema}``."""

    text: str
    open: bool

    def fill(self, schema_text: str, format_text: str) -> str:
        text = self.text.replace("{schema}", schema_text)
        if "{format}" in text:
            return text.replace("{format}", format_text)
        text = text.rstrip()
        return text + ("" if not text or not text[-1].isascii() else " ") + format_text


@dataclass(frozen=True)
class Templates:
    """The instruction templates, the format descriptions and the IEPile-style phrasings, all
    validated (``iepile`` defaults to the packaged ``iepile_instructions.yaml``)."""

    instructions: dict[tuple[str, str], tuple[Template, ...]]
    formats: dict[tuple[str, str], dict[str, str]]
    iepile: dict[tuple[str, str], tuple[str, ...]] = dataclasses.field(default_factory=lambda: _packaged_iepile())

    def counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """``{(task, lang): {"schema": n, "open": m}}``."""
        return {key: {"schema": sum(not t.open for t in ts), "open": sum(t.open for t in ts)}
                for key, ts in self.instructions.items()}


def _task_lang_map(data: Any, path: Path) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping of tasks {list(TASKS)}")
    for task in TASKS:
        if not isinstance(data.get(task), dict):
            raise ValueError(f"{path}: key {task}: missing or not a mapping of languages")
        for lang in LANGS:
            if lang not in data[task]:
                raise ValueError(f"{path}: key {task}.{lang}: missing")
    extra = [k for k in data if k not in TASKS]
    if extra:
        raise ValueError(f"{path}: key {extra[0]}: unknown task (allowed: {', '.join(TASKS)})")


def _task_lang_entries(path: Path):
    """``(task, lang, "TASK.lang", value)`` of a data file keyed by task, then language (checked)."""
    data = read_yaml_file(path)
    _task_lang_map(data, path)
    for task in TASKS:
        for lang in LANGS:
            yield task, lang, f"{task}.{lang}", data[task][lang]


def _load_instruction_file(path: Path) -> dict[tuple[str, str], tuple[Template, ...]]:
    out = {}
    for task, lang, key, items in _task_lang_entries(path):
        if not isinstance(items, list) or not items:
            raise ValueError(f"{path}: key {key}: must be a non-empty list of templates")
        templates = []
        for i, text in enumerate(items):
            where = f"{key}[{i}]"
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{path}: key {where}: a template must be a non-empty string")
            names = _PLACEHOLDER_RE.findall(text)
            bad = [n for n in names if n not in PLACEHOLDERS]
            if bad:
                raise ValueError(f"{path}: key {where}: unknown placeholder {{{bad[0]}}} (allowed: "
                                 f"{{schema}}, {{format}})")
            if any(names.count(n) > 1 for n in PLACEHOLDERS):
                raise ValueError(f"{path}: key {where}: a placeholder appears more than once")
            if "{" in _PLACEHOLDER_RE.sub("", text) or "}" in _PLACEHOLDER_RE.sub("", text):
                raise ValueError(f"{path}: key {where}: unbalanced brace")
            templates.append(Template(text, open="schema" not in names))
        if all(t.open for t in templates) or not any(t.open for t in templates):
            raise ValueError(f"{path}: key {key}: needs at least one schema template (with {{schema}}) and "
                             "one open template (without it)")
        out[task, lang] = tuple(templates)
    return out


def _load_format_file(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    out = {}
    for task, lang, key, entry in _task_lang_entries(path):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: key {key}: must be a mapping of formats {list(TEXT_FORMATS)}")
        for fmt in entry:
            if fmt not in TEXT_FORMATS:
                raise ValueError(f"{path}: key {key}.{fmt}: unknown format (allowed: {', '.join(TEXT_FORMATS)})")
        for fmt in TEXT_FORMATS:
            text = entry.get(fmt)
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{path}: key {key}.{fmt}: missing or not a string")
            example = format_example(task, lang, fmt)
            if example not in text:
                raise ValueError(f"{path}: key {key}.{fmt}: must quote the answer shape {example!r} that "
                                 "format_output writes")
            if "NAN" not in text:
                raise ValueError(f"{path}: key {key}.{fmt}: must say that NAN means nothing was found")
        out[task, lang] = dict(entry)
    return out


_IEPILE_KEYS = ("schema", "input", "JSON")


def _load_iepile_file(path: Path) -> dict[tuple[str, str], tuple[str, ...]]:
    out = {}
    for task, lang, key, items in _task_lang_entries(path):
        if not isinstance(items, list) or not items:
            raise ValueError(f"{path}: key {key}: must be a non-empty list of phrasings")
        for i, text in enumerate(items):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{path}: key {key}[{i}]: a phrasing must be a non-empty string")
            missing = [w for w in _IEPILE_KEYS if w not in text]
            if missing:
                raise ValueError(f"{path}: key {key}[{i}]: must mention {', '.join(_IEPILE_KEYS)} (the JSON keys "
                                 f"the record holds and the answer format); {missing[0]!r} is missing")
            if text in items[:i]:
                raise ValueError(f"{path}: key {key}[{i}]: repeats an earlier phrasing")
        out[task, lang] = tuple(items)
    return out


@functools.lru_cache(maxsize=1)
def _packaged_iepile() -> dict[tuple[str, str], tuple[str, ...]]:
    return _load_iepile_file(IEPILE_FILE)


def load_templates(path: str | Path | None = None, formats_path: str | Path | None = None,
                   iepile_path: str | Path | None = None) -> Templates:
    """Load and validate the instruction templates (``path``, default the packaged
    ``instruction_templates.yaml``), format descriptions (``formats_path``, default the packaged
    ``format_descriptions.yaml``) and IEPile-style phrasings (``iepile_path``, default the packaged
    ``iepile_instructions.yaml``). Every task × language must be present, templates may use only
    ``{schema}`` and ``{format}``, and each task × language needs a schema and an open template;
    every format description must quote :func:`format_example`; every IEPile phrasing must mention
    ``schema``, ``input`` and ``JSON``. A bad file raises a one-line ``ValueError`` naming the file
    and the key."""
    return Templates(_load_instruction_file(Path(path) if path is not None else TEMPLATES_FILE),
                     _load_format_file(Path(formats_path) if formats_path is not None else FORMATS_FILE),
                     _load_iepile_file(Path(iepile_path)) if iepile_path is not None else _packaged_iepile())


@functools.lru_cache(maxsize=1)
def default_templates() -> Templates:
    """The packaged templates, loaded once per process (what a synthesizer uses by default)."""
    return load_templates()


def _default_iepile(task: str, lang: str) -> str:
    """The phrasing :func:`iepile_instruction` writes when given none."""
    return json.loads(iepile_instruction(task, lang, [], ""))["instruction"]


# ====================================================================== label sets ====
def label_sets_from_schema(ie_schema: Mapping[str, Any]) -> dict[tuple[str, str], list[str]]:
    """``{(task, lang): [labels]}``: entity type names (NER), relation names (RE) and event type
    names (EE) in each language, in the schema's order, without duplicates."""
    sections = {"NER": "entity_types", "RE": "relations", "EE": "events"}
    out = {}
    for task, section in sections.items():
        entries = ie_schema.get(section) or {}
        for lang in LANGS:
            out[task, lang] = list(dict.fromkeys(_name(entry, lang, f"{section}.{key}")
                                                 for key, entry in entries.items()))
    return out


def _name(entry: Any, lang: str, where: str) -> str:
    if not isinstance(entry, Mapping) or not isinstance(entry.get(lang), str) or not entry[lang]:
        raise ValueError(f"IE schema: {where} needs a non-empty {lang!r} name")
    return entry[lang]


def _pairs(keys: Sequence[str], related: Any) -> dict[str, list[str]]:
    """For every key, the other keys that ``related(a, b)`` says are confusable, in key order."""
    return {a: [b for b in keys if b != a and related(a, b)] for a in keys}


def confusable_labels(ie_schema: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, list[str]]]:
    """Hard negatives: ``{(task, lang): {label: [confusable labels]}}`` in schema order.

    * RE — relation B is confusable with A when their head-type sets or their tail-type sets
      overlap: B could be read into a sentence about the same subject or the same object. The list
      is ordered by strength: first relations whose heads *and* tails overlap (they could hold
      between the same entity pair: 位于 / 首都 for city → country), then those sharing a tail type
      (位于 / 总部位于 / 出生地 all reach a city), then those sharing a head type (出生地 / 国籍 /
      毕业院校 all start at a person).
    * NER — entity types X and Y are confusable when they fill the same slot of some relation (both
      in its head list, or both in its tail list): mentions that occur in the same position of the
      same kind of sentence (城市 / 国家 / 省级行政区 as the tail of 位于).
    * EE — event types are confusable when they have an argument role of the same name (in that
      language): 出生 and 成立 both have a 时间.
    """
    relations = ie_schema.get("relations") or {}
    entity_types = ie_schema.get("entity_types") or {}
    events = ie_schema.get("events") or {}
    rel_slots = {name: (set(r.get("head") or ()), set(r.get("tail") or ())) for name, r in relations.items()}

    def strength(a: str, b: str) -> int:
        heads, tails = bool(rel_slots[a][0] & rel_slots[b][0]), bool(rel_slots[a][1] & rel_slots[b][1])
        return 3 if heads and tails else 2 if tails else 1 if heads else 0

    rel_pairs = {a: sorted(others, key=lambda b: -strength(a, b))
                 for a, others in _pairs(list(relations), lambda a, b: strength(a, b) > 0).items()}
    slots = [set(r.get("head") or ()) for r in relations.values()] + [set(r.get("tail") or ())
                                                                      for r in relations.values()]
    type_pairs = _pairs(list(entity_types), lambda a, b: any(a in s and b in s for s in slots))
    out: dict[tuple[str, str], dict[str, list[str]]] = {}
    for lang in LANGS:
        def roles(ev: Any) -> set[str]:
            return {_name(role, lang, "events.roles") for role in (ev.get("roles") or {}).values()}

        ev_roles = {name: roles(ev) for name, ev in events.items()}
        ev_pairs = _pairs(list(events), lambda a, b: bool(ev_roles[a] & ev_roles[b]))
        for task, entries, pairs in (("NER", entity_types, type_pairs), ("RE", relations, rel_pairs),
                                     ("EE", events, ev_pairs)):
            names = {key: _name(entry, lang, key) for key, entry in entries.items()}
            table: dict[str, list[str]] = {}
            for key, others in pairs.items():
                merged = table.setdefault(names[key], [])
                merged += [names[o] for o in others if names[o] != names[key] and names[o] not in merged]
            out[task, lang] = table
    return out


# ====================================================================== options ====
@dataclass
class InstructionOptions(Section):
    """How instruction records are synthesized from IE annotations (embeddable in a stage config)."""

    styles: list[str] = field(default_factory=lambda: list(STYLES), choices=STYLES,
                              help="instruction styles to write: 'text' (KG2Instruction natural-language "
                                   "templates) and/or 'iepile' (IEPile/OneKE JSON instruction with schema chunks)")
    text_formats: list[str] = field(default_factory=lambda: list(TEXT_FORMATS), choices=TEXT_FORMATS,
                                    help="answer formats the text style may use")
    formats_per_sample: int = field(1, ge=1, le=len(TEXT_FORMATS),
                                    help="text-style records per annotation and task, each in a different "
                                         "format drawn from text_formats (capped at their number)")
    open_fraction: float | None = field(None, ge=0, le=1,
                                        help="probability of an open template (no label list); null: draw "
                                             "uniformly over all templates (about a quarter are open)")
    schema_negatives: int = field(2, ge=0, help="text style: labels absent from the text added to the listed "
                                                "schema (confusable ones first, drawn among the 2n strongest)")
    hard_negatives: int = field(2, ge=0, help="iepile style: confusable labels absent from the text added to "
                                              "each annotation's schema before splitting it into chunks (drawn "
                                              "among the 2n strongest, see confusable_labels)")
    random_negatives: int = field(4, ge=0, help="iepile style: further absent labels drawn at random from the "
                                                "label set and added to the schema")
    split_num_ner: int = field(6, ge=1, help="iepile style: NER labels per schema chunk (one record per chunk)")
    split_num_re: int = field(4, ge=1, help="iepile style: relations per schema chunk")
    split_num_ee: int = field(4, ge=1, help="iepile style: event types per schema chunk")
    empty_keep: float = field(0.3, ge=0, le=1, help="probability that an annotation without any item of the "
                                                    "task still gives (negative, NAN / all-empty) records")
    seed: int = field(42, help="seed of every random choice (per record: with the annotation id and task)")
    held_out_phrasings: int = field(1, ge=0, le=3, help="paraphrase split: instruction phrasings per task × "
                                    "language kept out of ordinary records and used only there (text style: this "
                                    "many schema and this many open templates; iepile style: among all but the "
                                    "first phrasing); chosen with seed. 0: none (stage 06 also uses 0 when it "
                                    "writes no paraphrase split)")

    def validate(self) -> None:
        for name in ("styles", "text_formats"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name}: needs at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: duplicate values in {values}")

    def split_num(self, task: str) -> int:
        return {"NER": self.split_num_ner, "RE": self.split_num_re, "EE": self.split_num_ee}[task]


# ====================================================================== synthesis ====
def task_items(ann: Annotation, task: str) -> list[Any]:
    """The items of one task: entities (NER), relations (RE) or events (EE)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    return list({"NER": ann.entities, "RE": ann.relations, "EE": ann.events}[task])


def item_label(task: str, item: Any) -> str:
    """The label an item is listed under: entity type, relation name, event type."""
    return item.type if task in ("NER", "EE") else item.relation


def schema_text(labels: Sequence[str], lang: str) -> str:
    """Labels joined with ``、`` (zh) or ``, `` (en); a JSON list when a label holds the separator."""
    sep = _SCHEMA_SEPARATOR[lang]
    if any(sep.strip() in label for label in labels):
        return json.dumps(list(labels), ensure_ascii=False)
    return sep.join(labels)


class InstructionSynthesizer:
    """Turns annotations into instruction records (see the module docstring).

    ``label_sets[(task, lang)]``: every label of that task in that language, in order (from
    :func:`label_sets_from_schema`); ``confusable[(task, lang)][label]``: its hard negatives (from
    :func:`confusable_labels`). Labels present in an annotation but missing from the label set are
    still used (appended after the label-set order)."""

    def __init__(self, label_sets: Mapping[tuple[str, str], Sequence[str]],
                 options: InstructionOptions | None = None, templates: Templates | None = None,
                 confusable: Mapping[tuple[str, str], Mapping[str, Sequence[str]]] | None = None):
        self.label_sets = {key: list(dict.fromkeys(v)) for key, v in label_sets.items()}
        self.options = options if options is not None else InstructionOptions()
        self.templates = templates if templates is not None else default_templates()
        self.confusable = {key: {k: list(v) for k, v in table.items()} for key, table in (confusable or {}).items()}
        self._held: dict[tuple[str, str, str], frozenset[int]] = {}
        self._pools: dict[tuple[str, str, str, bool], tuple[Any, ...]] = {}
        self._choose_held_out()

    def _choose_held_out(self) -> None:
        """The held-out phrasings, once: ``held_out_phrasings`` per task × language (text: per
        kind, schema and open), drawn with the seed; at least one of each stays for ordinary records."""
        n = self.options.held_out_phrasings
        for (task, lang), templates in self.templates.instructions.items():
            held: set[int] = set()
            for kind in (False, True):
                idx = [i for i, t in enumerate(templates) if t.open == kind]
                if n and "text" in self.options.styles and n >= len(idx):
                    raise ValueError(f"instructions.held_out_phrasings: {n} would leave no "
                                     f"{'open' if kind else 'schema'} template of {task}.{lang} for ordinary "
                                     f"records (it has {len(idx)})")
                rng = random.Random(f"{self.options.seed}:held_out:text:{task}:{lang}:{int(kind)}")
                held |= set(rng.sample(idx, min(n, max(0, len(idx) - 1))))
            self._held["text", task, lang] = frozenset(held)
        for (task, lang), phrasings in self.templates.iepile.items():
            if n and "iepile" in self.options.styles and n >= len(phrasings):
                raise ValueError(f"instructions.held_out_phrasings: {n} needs more than {n} IEPile phrasings of "
                                 f"{task}.{lang} (it has {len(phrasings)}; the first is never held out)")
            rng = random.Random(f"{self.options.seed}:held_out:iepile:{task}:{lang}")
            self._held["iepile", task, lang] = frozenset(rng.sample(range(1, len(phrasings)),
                                                                    min(n, len(phrasings) - 1)))

    def _pool(self, style: str, task: str, lang: str, paraphrase: bool) -> tuple[Any, ...]:
        """The phrasings a record may use: the held-out ones (paraphrase) or the others. With no
        held-out phrasing, a paraphrase record uses the ordinary ones."""
        key = (style, task, lang, paraphrase)
        if key not in self._pools:
            if style == "text":
                every: tuple[Any, ...] = self.templates.instructions[task, lang]
            else:
                every = self.templates.iepile.get((task, lang)) or (_default_iepile(task, lang),)
            held = self._held.get((style, task, lang), frozenset())
            chosen = tuple(x for i, x in enumerate(every) if (i in held) == paraphrase)
            self._pools[key] = chosen if chosen else every
        return self._pools[key]

    def held_out(self) -> dict[str, dict[str, list[str]]]:
        """``{style: {"TASK.lang": [held-out phrasings]}}`` (text style: the template texts)."""
        out: dict[str, dict[str, list[str]]] = {}
        for (style, task, lang), held in sorted(self._held.items()):
            if held and style in self.options.styles:
                pool = self._pool(style, task, lang, True)
                out.setdefault(style, {})[f"{task}.{lang}"] = [t.text if style == "text" else t for t in pool]
        return out

    @classmethod
    def from_schema(cls, ie_schema: Mapping[str, Any], options: InstructionOptions | None = None,
                    templates: Templates | None = None) -> "InstructionSynthesizer":
        """Label sets and hard negatives both taken from an IE schema mapping."""
        return cls(label_sets_from_schema(ie_schema), options, templates, confusable_labels(ie_schema))

    # ------------------------------------------------------------------ helpers --
    def _rng(self, ann: Annotation, task: str, what: str) -> random.Random:
        return random.Random(f"{self.options.seed}:{ann.id}:{task}:{what}")

    def _labels(self, task: str, lang: str) -> list[str]:
        return self.label_sets.get((task, lang), [])

    def _hard(self, task: str, lang: str, present: Sequence[str]) -> list[str]:
        """Confusable absent labels of the present ones, strongest first (taken in turns from
        each present label's list)."""
        table = self.confusable.get((task, lang), {})
        labels = set(self._labels(task, lang))
        lists = [[c for c in table.get(label, ()) if c not in present and c in labels] for label in present]
        out: list[str] = []
        for rank in range(max(map(len, lists), default=0)):
            for lst in lists:
                if rank < len(lst) and lst[rank] not in out:
                    out.append(lst[rank])
        return out

    @staticmethod
    def _pick_hard(rng: random.Random, hard: list[str], n: int) -> list[str]:
        """``n`` of the ``2n`` strongest hard negatives, at random (variety without weak ones)."""
        return rng.sample(hard[:2 * n], min(n, len(hard)))

    def _record(self, ann: Annotation, task: str, style: str, fmt: str, k: int, schema: list[str],
                instruction: str, input_text: str, output: str, split: str | None) -> dict[str, Any]:
        rec = {"id": f"{ann.id}:{task}:{style}:{fmt}:{k}", "task": task, "lang": ann.lang, "style": style,
               "format": fmt, "schema": list(schema), "instruction": instruction, "input": input_text,
               "output": output, "source": ann.source or ann.id}
        if split is not None:
            rec["split"] = split
        return rec

    # ------------------------------------------------------------------ the two styles --
    def text_records(self, ann: Annotation, task: str, source_split: str | None = None,
                     paraphrase: bool = False) -> list[dict[str, Any]]:
        """KG2Instruction text-style records of one annotation and task (``paraphrase``: with the
        held-out templates only)."""
        opts, lang = self.options, ann.lang
        items = task_items(ann, task)
        present = list(dict.fromkeys(item_label(task, it) for it in items))
        rng = self._rng(ann, task, "text")
        fmts = rng.sample(opts.text_formats, min(opts.formats_per_sample, len(opts.text_formats)))
        every = self.templates.instructions[task, lang]
        held_out = paraphrase and bool(self._held.get(("text", task, lang)))
        templates = self._pool("text", task, lang, held_out)
        by_kind = {kind: [t for t in templates if t.open == kind] for kind in (False, True)}
        if not by_kind[False] or not by_kind[True]:  # a held-out set of one kind only: use the whole list
            templates, held_out = every, False
            by_kind = {kind: [t for t in templates if t.open == kind] for kind in (False, True)}
        open_share = sum(t.open for t in every) / len(every)
        records = []
        for k, fmt in enumerate(fmts):
            if opts.open_fraction is None and not held_out:
                template = rng.choice(templates)
            elif opts.open_fraction is None:  # as many open templates as a uniform draw over all gives
                template = rng.choice(by_kind[rng.random() < open_share])
            else:
                template = rng.choice(by_kind[rng.random() < opts.open_fraction])
            absent = [x for x in self._labels(task, lang) if x not in present]
            negatives: list[str] = []
            if not template.open:
                negatives = self._pick_hard(rng, self._hard(task, lang, present), opts.schema_negatives)
                rest = [x for x in absent if x not in negatives]
                negatives += rng.sample(rest, min(opts.schema_negatives - len(negatives), len(rest)))
                if not present and not negatives and absent:
                    negatives = [rng.choice(absent)]
                if not present and not negatives:
                    template = rng.choice(by_kind[True])
            if template.open:
                schema: list[str] = []
                output = format_output(task, fmt, items, lang)
            else:
                schema = present + negatives
                rng.shuffle(schema)
                output = format_output(task, fmt, [it for it in items if item_label(task, it) in schema], lang, schema)
            instruction = template.fill(schema_text(schema, lang), self.templates.formats[task, lang][fmt])
            records.append(self._record(ann, task, "text", fmt, k, schema, instruction, ann.text, output,
                                        source_split))
        return records

    def iepile_schema(self, ann: Annotation, task: str) -> list[str]:
        """The whole IEPile schema of one annotation and task before splitting: present labels,
        up to ``hard_negatives`` confusable absent ones and ``random_negatives`` random absent ones,
        in label-set order (present labels outside the label set last)."""
        opts, lang = self.options, ann.lang
        present = list(dict.fromkeys(item_label(task, it) for it in task_items(ann, task)))
        rng = self._rng(ann, task, "iepile")
        hard = self._hard(task, lang, present)
        chosen = set(present) | set(self._pick_hard(rng, hard, opts.hard_negatives))
        rest = [x for x in self._labels(task, lang) if x not in chosen]
        chosen |= set(rng.sample(rest, min(opts.random_negatives, len(rest))))
        ordered = [x for x in self._labels(task, lang) if x in chosen]
        return ordered + [x for x in present if x not in ordered]

    def iepile_records(self, ann: Annotation, task: str, source_split: str | None = None,
                       paraphrase: bool = False) -> list[dict[str, Any]]:
        """IEPile-style records of one annotation and task: one per schema chunk, each with a
        phrasing drawn for it (``paraphrase``: among the held-out ones only)."""
        items = task_items(ann, task)
        phrasings = self._pool("iepile", task, ann.lang, paraphrase)
        records = []
        for k, chunk in enumerate(split_schema(self.iepile_schema(ann, task), self.options.split_num(task))):
            inside = [it for it in items if item_label(task, it) in chunk]
            try:
                output = format_output(task, "iepile", inside, ann.lang, schema=chunk)
            except ValueError as exc:
                raise ValueError(f"annotation {ann.id} ({ann.source}): {exc}") from None
            phrasing = random.Random(f"{self.options.seed}:{ann.id}:{task}:iepile-phrasing:{k}").choice(phrasings)
            instruction = iepile_instruction(task, ann.lang, chunk, ann.text, phrasing)
            records.append(self._record(ann, task, "iepile", "iepile", k, chunk, instruction, "", output,
                                        source_split))
        return records

    def keeps_empty(self, ann: Annotation, task: str) -> bool:
        """Whether an annotation without items of ``task`` still gives records (``empty_keep``)."""
        return self._rng(ann, task, "empty").random() < self.options.empty_keep

    def records(self, ann: Annotation, task: str, source_split: str | None = None,
                paraphrase: bool = False) -> list[dict[str, Any]]:
        """Every record of one annotation and task, in the styles of the options. An annotation
        with no item of the task gives negative records only with probability ``empty_keep``.
        With ``source_split`` the records also get a ``split`` key; with ``paraphrase`` they use
        the held-out instruction phrasings only."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
        if ann.lang not in LANGS:
            raise ValueError(f"annotation {ann.id}: unknown lang {ann.lang!r}; allowed: {', '.join(LANGS)}")
        if not task_items(ann, task) and not self.keeps_empty(ann, task):
            return []
        out = []
        for style in self.options.styles:
            out += (self.text_records if style == "text" else self.iepile_records)(ann, task, source_split,
                                                                                    paraphrase)
        return out

    def synthesize(self, annotations: Iterable[Annotation], tasks: Sequence[str] = TASKS,
                   source_split: str | None = None, paraphrase: bool = False) -> list[dict[str, Any]]:
        """The records of many annotations for the given tasks (pass only the tasks a source is
        annotated for: a NER corpus has no relation gold, so RE negatives from it would be wrong)."""
        return [rec for ann in annotations for task in tasks
                for rec in self.records(ann, task, source_split, paraphrase)]


__all__ = ["STYLES", "RECORD_KEYS", "TEMPLATES_FILE", "FORMATS_FILE", "IEPILE_FILE", "Template", "Templates",
           "load_templates", "default_templates",
           "format_example", "label_sets_from_schema", "confusable_labels", "InstructionOptions",
           "InstructionSynthesizer", "task_items", "item_label", "schema_text"]
