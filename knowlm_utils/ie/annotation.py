"""The one in-memory form of information-extraction (IE) data: a text with its entities,
relations and events. Every source becomes an :class:`Annotation` (the KG2Instruction pipeline,
converters from CoNLL-2003 / People's Daily / DuIE / DuEE / IEPile), and every output format is
written from and parsed back into its parts, so ``parse(format(x)) == x`` can be tested.

Relations use one key pair everywhere: ``head``/``tail`` here; the IEPile/OneKE JSON style's
``subject``/``object`` is only a spelling of the same two fields in that format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TASKS = ("NER", "RE", "EE")
LANGS = ("zh", "en")


@dataclass(frozen=True, order=True)
class Entity:
    """A mention and its type, e.g. ``Entity("黄河", "河流")``."""

    text: str
    type: str


@dataclass(frozen=True, order=True)
class Relation:
    """A triple over mentions: ``Relation("北京", "位于", "中国")``."""

    head: str
    relation: str
    tail: str


@dataclass(frozen=True, order=True)
class Argument:
    """An event argument: its role and its text span."""

    role: str
    text: str


@dataclass(frozen=True, order=True)
class Event:
    """An event: trigger word, event type and arguments (in a fixed order)."""

    trigger: str
    type: str
    arguments: tuple[Argument, ...] = ()


@dataclass
class Annotation:
    """One text with its gold (or predicted) structures; ``source`` says where it came from
    (``conll2003:train.txt:12``, ``kg2instruction:zh_wiki:4`` …)."""

    id: str
    text: str
    lang: str
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "lang": self.lang,
                "entities": [{"text": e.text, "type": e.type} for e in self.entities],
                "relations": [{"head": r.head, "relation": r.relation, "tail": r.tail} for r in self.relations],
                "events": [{"trigger": ev.trigger, "type": ev.type,
                            "arguments": [{"role": a.role, "text": a.text} for a in ev.arguments]}
                           for ev in self.events],
                "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Annotation":
        return cls(id=str(d["id"]), text=d["text"], lang=d["lang"],
                   entities=[Entity(e["text"], e["type"]) for e in d.get("entities", [])],
                   relations=[Relation(r["head"], r["relation"], r["tail"]) for r in d.get("relations", [])],
                   events=[Event(ev["trigger"], ev["type"], tuple(Argument(a["role"], a["text"])
                                                                   for a in ev.get("arguments", [])))
                           for ev in d.get("events", [])],
                   source=d.get("source", ""))


__all__ = ["TASKS", "LANGS", "Entity", "Relation", "Argument", "Event", "Annotation"]
