"""KG-grounded event sentences: exact event-extraction (EE) gold in both languages from KG facts.

The sample knowledge graph holds facts, not events, but some facts plus an attribute are an
event: ``person born_in city`` + the person's ``birth_year`` is a birth, ``company founded_by
person`` + ``founded`` a founding, ``product developed_by company`` + ``launched`` a product
launch. ``event_templates.yaml`` (packaged in ``knowlm_utils/data/kg2instruction/``) says which
fact and attribute make which event, the role labels in zh and en, and sentence templates with
``{role}`` placeholders and one ``[trigger]`` marker. :func:`event_annotations` fills them and
yields :class:`~knowlm_utils.ie.annotation.Annotation` objects whose gold is exact by
construction: the trigger is the marked word and every argument is a span of the sentence.
``combined`` templates put two linked events in one sentence (born … and founded …).

Facts are grouped by their head entity, so the founders of one company are several arguments of
one role (``founder``) of one event, joined in the text as ``A和B`` / ``A and B``. Years are
written ``1964年`` (zh) and ``1964`` (en), in the text and as the time argument alike.

:func:`event_schema` gives the ``events`` section of the IE schema mapping (see
:mod:`.instructions`), so the label sets and hard negatives include these event types.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ..fileio import read_yaml_file
from ..ie.annotation import LANGS, Annotation, Argument, Event
from ..kg import KnowledgeGraph

EVENT_TEMPLATES_FILE = Path(__file__).resolve().parent.parent / "data" / "kg2instruction" / "event_templates.yaml"
SOURCE = "kg2instruction:event_templates"
_MARKER_RE = re.compile(r"\[([^\[\]{}]+)\]")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_KEY_RE = re.compile(r"^[a-z_][a-z0-9_]*$")

Ref = tuple[str, Any]   # ("entity", entity id) or ("year", value)


@dataclass(frozen=True)
class EventTemplate:
    """One sentence template: its text without markers, the marked triggers in order, and the
    placeholders it uses."""

    text: str
    triggers: tuple[str, ...]
    placeholders: frozenset[str]

    def fill(self, values: Mapping[str, str]) -> str:
        return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], self.text)


@dataclass(frozen=True)
class EventSpec:
    """An event type: labels, roles and the KG fact + attribute it is made of."""

    name: str
    labels: dict[str, str]
    roles: dict[str, dict[str, str]]
    relation: str
    head_role: str
    tail_role: str
    attr: str
    attr_role: str
    templates: dict[str, tuple[EventTemplate, ...]]


@dataclass(frozen=True)
class CombinedSpec:
    """Two events in one sentence; ``same`` links a role of the first to a role of the second."""

    name: str
    events: tuple[str, str]
    same: tuple[str, str]
    templates: dict[str, tuple[EventTemplate, ...]]


@dataclass(frozen=True)
class EventTemplates:
    events: dict[str, EventSpec]
    combined: dict[str, CombinedSpec] = field(default_factory=dict)
    time_format: dict[str, str] = field(default_factory=lambda: {"zh": "{year}年", "en": "{year}"})
    joiners: dict[str, tuple[str, str]] = field(default_factory=lambda: {"zh": ("、", "和"),
                                                                           "en": (", ", " and ")})


# ====================================================================== loading ====
def _err(path: Path, key: str, message: str) -> ValueError:
    return ValueError(f"{path}: key {key}: {message}")


def _mapping(value: Any, path: Path, key: str) -> dict:
    if not isinstance(value, dict):
        raise _err(path, key, f"must be a mapping, got {type(value).__name__}")
    return value


def _text(value: Any, path: Path, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _err(path, key, "must be a non-empty string")
    return value


def _labels(entry: Any, path: Path, key: str) -> dict[str, str]:
    entry = _mapping(entry, path, key)
    return {lang: _text(entry.get(lang), path, f"{key}.{lang}") for lang in LANGS}


def _parse_template(raw: Any, allowed: set[str], n_triggers: int, path: Path, key: str) -> EventTemplate:
    raw = _text(raw, path, key)
    triggers = tuple(m.strip() for m in _MARKER_RE.findall(raw))
    if len(triggers) != n_triggers or not all(triggers):
        raise _err(path, key, f"needs exactly {n_triggers} [trigger] marker(s), found {len(triggers)}")
    text = _MARKER_RE.sub(lambda m: m.group(1).strip(), raw)
    if "[" in text or "]" in text:
        raise _err(path, key, "unbalanced or nested [ ] marker")
    names = _PLACEHOLDER_RE.findall(text)
    bad = [n for n in names if n not in allowed]
    if bad:
        raise _err(path, key, f"unknown placeholder {{{bad[0]}}} (allowed: {', '.join(sorted(allowed))})")
    if "{" in _PLACEHOLDER_RE.sub("", text) or "}" in _PLACEHOLDER_RE.sub("", text):
        raise _err(path, key, "unbalanced brace")
    return EventTemplate(text, triggers, frozenset(names))


def _templates(entry: Any, allowed: set[str], n_triggers: int, path: Path, key: str) -> dict[str, tuple]:
    entry = _mapping(entry, path, key)
    out = {}
    for lang in LANGS:
        items = entry.get(lang)
        if not isinstance(items, list) or not items:
            raise _err(path, f"{key}.{lang}", "must be a non-empty list of templates")
        out[lang] = tuple(_parse_template(t, allowed, n_triggers, path, f"{key}.{lang}[{i}]")
                          for i, t in enumerate(items))
    return out


def load_event_templates(path: str | Path | None = None) -> EventTemplates:
    """Load and validate ``event_templates.yaml`` (default: the packaged one). A bad file raises a
    one-line ``ValueError`` naming the file and the key."""
    path = Path(path) if path is not None else EVENT_TEMPLATES_FILE
    data = _mapping(read_yaml_file(path), path, "(top level)")
    unknown = [k for k in data if k not in ("events", "combined", "time_format", "joiners")]
    if unknown:
        raise _err(path, str(unknown[0]), "unknown key (allowed: events, combined, time_format, joiners)")
    time_format = _labels(data.get("time_format", {"zh": "{year}年", "en": "{year}"}), path, "time_format")
    for lang, fmt in time_format.items():
        if _PLACEHOLDER_RE.findall(fmt) != ["year"]:
            raise _err(path, f"time_format.{lang}", "must contain {year} once and no other placeholder")
    joiners = {}
    for lang in LANGS:
        entry = _mapping(_mapping(data.get("joiners", {"zh": {"last": "和", "other": "、"},
                                                       "en": {"last": " and ", "other": ", "}}),
                                  path, "joiners").get(lang), path, f"joiners.{lang}")
        joiners[lang] = (_text(entry.get("other"), path, f"joiners.{lang}.other"),
                         _text(entry.get("last"), path, f"joiners.{lang}.last"))
    events: dict[str, EventSpec] = {}
    raw_events = _mapping(data.get("events"), path, "events")
    if not raw_events:
        raise _err(path, "events", "needs at least one event")
    for name, entry in raw_events.items():
        key = f"events.{name}"
        if not isinstance(name, str) or not _KEY_RE.match(name):
            raise _err(path, key, "an event name must be lowercase letters, digits and underscores")
        entry = _mapping(entry, path, key)
        labels = _labels({lang: entry.get(lang) for lang in LANGS}, path, key)
        roles_raw = _mapping(entry.get("roles"), path, f"{key}.roles")
        if not roles_raw:
            raise _err(path, f"{key}.roles", "needs at least one role")
        roles = {}
        for role, role_labels in roles_raw.items():
            if not isinstance(role, str) or not _KEY_RE.match(role):
                raise _err(path, f"{key}.roles.{role}", "a role key must be lowercase letters and underscores")
            roles[role] = _labels(role_labels, path, f"{key}.roles.{role}")
        kg = _mapping(entry.get("kg"), path, f"{key}.kg")
        spec_kg = {k: _text(kg.get(k), path, f"{key}.kg.{k}")
                   for k in ("relation", "head", "tail", "attr", "attr_role")}
        for k in ("head", "tail", "attr_role"):
            if spec_kg[k] not in roles:
                raise _err(path, f"{key}.kg.{k}", f"{spec_kg[k]!r} is not one of the roles {list(roles)}")
        if len({spec_kg["head"], spec_kg["tail"], spec_kg["attr_role"]}) != 3:
            raise _err(path, f"{key}.kg", "head, tail and attr_role must be three different roles")
        events[name] = EventSpec(name, labels, roles, spec_kg["relation"], spec_kg["head"], spec_kg["tail"],
                                 spec_kg["attr"], spec_kg["attr_role"],
                                 _templates(entry.get("templates"), set(roles), 1, path, f"{key}.templates"))
    combined: dict[str, CombinedSpec] = {}
    for name, entry in _mapping(data.get("combined") or {}, path, "combined").items():
        key = f"combined.{name}"
        entry = _mapping(entry, path, key)
        pair = entry.get("events")
        if not isinstance(pair, list) or len(pair) != 2 or any(e not in events for e in pair) or pair[0] == pair[1]:
            raise _err(path, f"{key}.events", f"must list two different events of {list(events)}")
        same = _mapping(entry.get("same"), path, f"{key}.same")
        if len(same) != 1:
            raise _err(path, f"{key}.same", "must link exactly one role of the first event to one of the second")
        (left, right), = same.items()
        for ref, event in ((left, pair[0]), (right, pair[1])):
            ev, _, role = str(ref).partition(".")
            if ev != event or role not in events[event].roles:
                raise _err(path, f"{key}.same", f"{ref!r} must be '{event}.<role>' with a role of {event}")
        allowed = {f"{e}.{r}" for e in pair for r in events[e].roles}
        combined[name] = CombinedSpec(name, (pair[0], pair[1]), (str(left).partition(".")[2],
                                                                 str(right).partition(".")[2]),
                                      _templates(entry.get("templates"), allowed, 2, path, f"{key}.templates"))
    return EventTemplates(events, combined, time_format, joiners)


def _resolve(templates: EventTemplates | str | Path | None) -> EventTemplates:
    return templates if isinstance(templates, EventTemplates) else load_event_templates(templates)


def event_schema(templates: EventTemplates | str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The ``events`` section of the IE schema mapping: ``{name: {"zh", "en", "roles": {role:
    {"zh", "en"}}}}``."""
    t = _resolve(templates)
    return {name: {**spec.labels, "roles": {role: dict(labels) for role, labels in spec.roles.items()}}
            for name, spec in t.events.items()}


# ====================================================================== generation ====
@dataclass
class _Instance:
    key: str                          # the head entity id
    args: dict[str, list[Ref]]        # role -> refs, in KG order


def _instances(kg: KnowledgeGraph, spec: EventSpec) -> list[_Instance]:
    if spec.relation not in (kg.schema.get("relation_types") or {}):
        raise ValueError(f"event {spec.name}: relation {spec.relation!r} is not in the KG schema")
    grouped: dict[str, list[str]] = {}
    for tr in kg.triples:
        if tr["relation"] == spec.relation and tr["tail"] not in grouped.setdefault(tr["head"], []):
            grouped[tr["head"]].append(tr["tail"])
    out = []
    for head, tails in grouped.items():
        year = (kg.entities[head].get("attrs") or {}).get(spec.attr)
        if year is None or isinstance(year, bool) or str(year).strip() == "":
            continue
        out.append(_Instance(head, {spec.head_role: [("entity", head)], spec.tail_role: [("entity", t) for t in tails],
                                    spec.attr_role: [("year", year)]}))
    return out


class _Renderer:
    def __init__(self, kg: KnowledgeGraph, templates: EventTemplates, lang: str):
        self.kg, self.t, self.lang = kg, templates, lang

    def ref(self, ref: Ref) -> str:
        kind, value = ref
        if kind == "year":
            return self.t.time_format[self.lang].replace("{year}", str(value))
        return self.kg.name(value, self.lang)

    def joined(self, refs: Sequence[Ref]) -> str:
        names = [self.ref(r) for r in refs]
        other, last = self.t.joiners[self.lang]
        return names[0] if len(names) == 1 else other.join(names[:-1]) + last + names[-1]

    def event(self, spec: EventSpec, inst: _Instance, trigger: str, used: set[str]) -> Event:
        args = tuple(Argument(spec.roles[role][self.lang], self.ref(ref))
                     for role in spec.roles if role in used for ref in inst.args.get(role, ()))
        return Event(trigger, spec.labels[self.lang], args)


def _picks(seed: int, name: str, key: str, lang: str, n_templates: int, count: int) -> list[int]:
    rng = random.Random(f"{seed}:{name}:{key}:{lang}")
    return sorted(rng.sample(range(n_templates), min(count, n_templates)))


def event_annotations(kg: KnowledgeGraph, templates: EventTemplates | str | Path | None = None, seed: int = 0,
                      lang: Sequence[str] | str = ("zh", "en"), per_fact: int = 2, combined: bool = True,
                      per_combination: int = 1) -> Iterator[Annotation]:
    """Event sentences with exact gold, deterministic for a given ``seed``.

    For every eligible fact group (a head entity with facts of the event's relation and the
    attribute) and language, ``per_fact`` different templates (seeded choice); for every linked
    pair of a ``combined`` entry, ``per_combination`` two-event sentences. Ids look like
    ``kg_event:birth:person/ma_yun:zh:0`` and ``kg_event:birth+founding:person/ma_yun+company/alibaba:en:0``;
    the source is ``kg2instruction:event_templates``."""
    t = _resolve(templates)
    langs = (lang,) if isinstance(lang, str) else tuple(lang)
    for code in langs:
        if code not in LANGS:
            raise ValueError(f"unknown lang {code!r}; allowed: {', '.join(LANGS)}")
    if per_fact < 0 or per_combination < 0:
        raise ValueError("per_fact and per_combination must be >= 0")
    instances = {name: _instances(kg, spec) for name, spec in t.events.items()}
    for name, spec in t.events.items():
        for inst in instances[name]:
            for code in langs:
                r = _Renderer(kg, t, code)
                options = spec.templates[code]
                for k, i in enumerate(_picks(seed, name, inst.key, code, len(options), per_fact)):
                    tpl = options[i]
                    text = tpl.fill({role: r.joined(inst.args[role]) for role in tpl.placeholders})
                    yield Annotation(id=f"kg_event:{name}:{inst.key}:{code}:{k}", text=text, lang=code,
                                     events=[r.event(spec, inst, tpl.triggers[0], set(tpl.placeholders))],
                                     source=SOURCE)
    if not combined:
        return
    for name, comb in t.combined.items():
        first, second = (t.events[e] for e in comb.events)
        left_role, right_role = comb.same
        for a in instances[first.name]:
            for b in instances[second.name]:
                shared = [ref for ref in a.args[left_role] if ref in b.args[right_role]]
                if not shared:
                    continue
                a2 = _Instance(a.key, {**a.args, left_role: shared})
                b2 = _Instance(b.key, {**b.args, right_role: shared})
                key = f"{a.key}+{b.key}"
                for code in langs:
                    r = _Renderer(kg, t, code)
                    options = comb.templates[code]
                    for k, i in enumerate(_picks(seed, name, key, code, len(options), per_combination)):
                        tpl = options[i]
                        values = {}
                        for ph in tpl.placeholders:
                            ev, _, role = ph.partition(".")
                            values[ph] = r.joined((a2 if ev == first.name else b2).args[role])
                        used_a = {ph.partition(".")[2] for ph in tpl.placeholders if ph.startswith(first.name + ".")}
                        used_b = {ph.partition(".")[2] for ph in tpl.placeholders if ph.startswith(second.name + ".")}
                        if left_role in used_a:
                            used_b.add(right_role)
                        if right_role in used_b:
                            used_a.add(left_role)
                        yield Annotation(id=f"kg_event:{name}:{key}:{code}:{k}", text=tpl.fill(values), lang=code,
                                         events=[r.event(first, a2, tpl.triggers[0], used_a),
                                                 r.event(second, b2, tpl.triggers[1], used_b)],
                                         source=SOURCE)


__all__ = ["EVENT_TEMPLATES_FILE", "SOURCE", "EventTemplate", "EventSpec", "CombinedSpec", "EventTemplates",
           "load_event_templates", "event_schema", "event_annotations"]
