"""Load and validate the sample-world knowledge graph (``data_samples/kg/``).

Layout (see ``schema.yaml``): ``entities/*.jsonl`` (one entity per line) and
``triples/*.jsonl`` (one fact per line). :func:`load_kg` reads everything, never stops at the
first problem, and returns a :class:`KG` together with every :class:`Problem` found, each
located as ``file:line``. :func:`validate` adds the graph-level checks (dangling ids,
head/tail types, coverage) and :meth:`KG.raise_if_invalid` turns them into one readable error.

Iteration over a :class:`KG` is always sorted (entities by id, facts by head/relation/tail),
so everything generated from it is deterministic.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ID_RE = re.compile(r"^([a-z_]+)/([a-z0-9_]+)$")
ENTITY_KEYS = ("id", "type", "name_zh", "name_en", "aliases_zh", "aliases_en", "desc_zh", "desc_en", "attrs")
REQUIRED_KEYS = ("id", "type", "name_zh", "name_en")
TRIPLE_KEYS = ("head", "relation", "tail")


class KGError(ValueError):
    """The knowledge graph has problems; the message lists them with file:line."""


@dataclass(frozen=True)
class Problem:
    where: str          # "entities/geo.jsonl:12" (relative to the KG folder)
    message: str
    level: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        return f"{self.where}: {self.level}: {self.message}"


@dataclass
class Entity:
    id: str
    type: str
    name_zh: str
    name_en: str
    aliases_zh: list[str] = field(default_factory=list)
    aliases_en: list[str] = field(default_factory=list)
    desc_zh: str = ""
    desc_en: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    where: str = ""     # file:line it was read from

    @property
    def slug(self) -> str:
        return self.id.split("/", 1)[1]

    def name(self, lang: str) -> str:
        return self.name_zh if lang == "zh" else self.name_en

    def desc(self, lang: str) -> str:
        return self.desc_zh if lang == "zh" else self.desc_en

    def aliases(self, lang: str) -> list[str]:
        return self.aliases_zh if lang == "zh" else self.aliases_en


@dataclass(frozen=True, order=True)
class Triple:
    head: str
    relation: str
    tail: str
    where: str = field(default="", compare=False)


@dataclass
class Schema:
    entity_types: dict[str, dict[str, str]]
    relation_types: dict[str, dict[str, Any]]

    def label(self, type_: str, lang: str) -> str:
        return self.entity_types[type_][lang]

    def relation_label(self, relation: str, lang: str) -> str:
        return self.relation_types[relation][lang]


def load_schema(path: str | Path) -> Schema:
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    ents, rels = data.get("entity_types"), data.get("relation_types")
    if not isinstance(ents, dict) or not isinstance(rels, dict):
        raise KGError(f"{path}: needs mappings 'entity_types' and 'relation_types'")
    for name, spec in rels.items():
        for key in ("head", "tail", "zh", "en"):
            if key not in spec:
                raise KGError(f"{path}: relation {name!r} lacks {key!r}")
        unknown = sorted((set(spec["head"]) | set(spec["tail"])) - set(ents))
        if unknown:
            raise KGError(f"{path}: relation {name!r} names unknown entity type(s) {unknown}")
    return Schema(entity_types=dict(ents), relation_types=dict(rels))


class KG:
    """Entities, facts and the indexes the generators need (all sorted)."""

    def __init__(self, schema: Schema, entities: dict[str, Entity], triples: list[Triple],
                 problems: list[Problem] | None = None, root: Path | None = None):
        self.schema = schema
        self.entities = dict(sorted(entities.items()))
        self.triples = sorted(set(triples))
        self.problems: list[Problem] = list(problems or [])
        self.root = root
        self.out_facts: dict[str, list[Triple]] = defaultdict(list)
        self.in_facts: dict[str, list[Triple]] = defaultdict(list)
        for t in self.triples:
            self.out_facts[t.head].append(t)
            self.in_facts[t.tail].append(t)

    # -- lookups ---------------------------------------------------------------------------
    def __getitem__(self, entity_id: str) -> Entity:
        return self.entities[entity_id]

    def __contains__(self, entity_id: str) -> bool:
        return entity_id in self.entities

    def __len__(self) -> int:
        return len(self.entities)

    def of_type(self, type_: str) -> list[Entity]:
        return [e for e in self.entities.values() if e.type == type_]

    def facts(self, entity_id: str) -> list[Triple]:
        """Every fact mentioning the entity, as head or as tail (sorted, no repeats)."""
        return sorted(set(self.out_facts.get(entity_id, [])) | set(self.in_facts.get(entity_id, [])))

    def objects(self, head: str, relation: str) -> list[Entity]:
        return [self.entities[t.tail] for t in self.out_facts.get(head, []) if t.relation == relation]

    def subjects(self, tail: str, relation: str) -> list[Entity]:
        return [self.entities[t.head] for t in self.in_facts.get(tail, []) if t.relation == relation]

    def relations_used(self) -> list[str]:
        return sorted({t.relation for t in self.triples})

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    def raise_if_invalid(self) -> None:
        errs = self.errors
        if errs:
            shown = "\n  ".join(str(p) for p in errs[:200])
            more = f"\n  ... and {len(errs) - 200} more" if len(errs) > 200 else ""
            raise KGError(f"knowledge graph {self.root}: {len(errs)} problem(s):\n  {shown}{more}")

    def summary(self) -> dict[str, Any]:
        by_type: dict[str, int] = defaultdict(int)
        for e in self.entities.values():
            by_type[e.type] += 1
        by_rel: dict[str, int] = defaultdict(int)
        for t in self.triples:
            by_rel[t.relation] += 1
        return {"entities": len(self.entities), "triples": len(self.triples),
                "entity_types": dict(sorted(by_type.items())), "relations": dict(sorted(by_rel.items())),
                "errors": len(self.errors), "warnings": len(self.problems) - len(self.errors)}


# ----------------------------------------------------------------------------- loading ----
def _read_jsonl(path: Path, rel: str, problems: list[Problem]):
    """Yield (where, obj) for every parseable JSON object line; report the others."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            where = f"{rel}:{n}"
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                problems.append(Problem(where, f"invalid UTF-8 at byte {exc.start}"))
                continue
            except json.JSONDecodeError as exc:
                problems.append(Problem(where, f"invalid JSON (column {exc.colno}: {exc.msg})"))
                continue
            if not isinstance(obj, dict):
                problems.append(Problem(where, f"expected a JSON object, got {type(obj).__name__}"))
                continue
            yield where, obj


def _check_entity(obj: dict, where: str, schema: Schema, problems: list[Problem]) -> Entity | None:
    missing = [k for k in REQUIRED_KEYS if not isinstance(obj.get(k), str) or not obj.get(k).strip()]
    if missing:
        problems.append(Problem(where, f"entity {obj.get('id', '?')!r}: missing or empty {missing}"))
        return None
    unknown = sorted(set(obj) - set(ENTITY_KEYS))
    if unknown:
        problems.append(Problem(where, f"entity {obj['id']!r}: unknown key(s) {unknown}", "warning"))
    eid, etype = obj["id"], obj["type"]
    m = ID_RE.match(eid)
    if not m:
        problems.append(Problem(where, f"id {eid!r} must look like '<type>/<lowercase_slug>'"))
        return None
    if etype not in schema.entity_types:
        problems.append(Problem(where, f"entity {eid!r}: unknown type {etype!r}"))
        return None
    if m.group(1) != etype:
        problems.append(Problem(where, f"entity {eid!r}: id prefix {m.group(1)!r} differs from type {etype!r}"))
    for key in ("aliases_zh", "aliases_en"):
        val = obj.get(key, [])
        if not isinstance(val, list) or not all(isinstance(a, str) and a.strip() for a in val):
            problems.append(Problem(where, f"entity {eid!r}: {key} must be a list of non-empty strings"))
            obj[key] = []
    for key in ("desc_zh", "desc_en"):
        val = obj.get(key, "")
        if not isinstance(val, str):
            problems.append(Problem(where, f"entity {eid!r}: {key} must be a string"))
            obj[key] = ""
        elif not val.strip():
            problems.append(Problem(where, f"entity {eid!r}: empty {key}", "warning"))
    attrs = obj.get("attrs", {})
    if not isinstance(attrs, dict):
        problems.append(Problem(where, f"entity {eid!r}: attrs must be a mapping"))
        attrs = {}
    for k, v in attrs.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            problems.append(Problem(where, f"entity {eid!r}: attrs.{k} must be a number or a short string"))
    attrs = {k: v for k, v in attrs.items() if not isinstance(v, bool) and isinstance(v, (int, float, str))}
    return Entity(id=eid, type=etype, name_zh=obj["name_zh"].strip(), name_en=obj["name_en"].strip(),
                  aliases_zh=list(obj.get("aliases_zh", [])), aliases_en=list(obj.get("aliases_en", [])),
                  desc_zh=obj.get("desc_zh", "").strip(), desc_en=obj.get("desc_en", "").strip(),
                  attrs=dict(sorted(attrs.items())), where=where)


def load_kg(kg_dir: str | Path) -> KG:
    """Read schema, entities and triples; every problem is recorded (see :func:`validate`)."""
    root = Path(kg_dir)
    schema = load_schema(root / "schema.yaml")
    problems: list[Problem] = []
    entities: dict[str, Entity] = {}
    ent_files = sorted((root / "entities").glob("*.jsonl"))
    tri_files = sorted((root / "triples").glob("*.jsonl"))
    if not ent_files:
        problems.append(Problem(f"{root}/entities", "no entities/*.jsonl file"))
    for path in ent_files:
        rel = path.relative_to(root).as_posix()
        for where, obj in _read_jsonl(path, rel, problems):
            ent = _check_entity(obj, where, schema, problems)
            if ent is None:
                continue
            if ent.id in entities:
                problems.append(Problem(where, f"duplicate entity id {ent.id!r} (first at {entities[ent.id].where})"))
                continue
            entities[ent.id] = ent
    triples: list[Triple] = []
    seen: dict[tuple[str, str, str], str] = {}
    for path in tri_files:
        rel = path.relative_to(root).as_posix()
        for where, obj in _read_jsonl(path, rel, problems):
            if not all(isinstance(obj.get(k), str) and obj.get(k) for k in TRIPLE_KEYS):
                problems.append(Problem(where, f"triple needs string fields {list(TRIPLE_KEYS)}, got {obj}"))
                continue
            key = (obj["head"], obj["relation"], obj["tail"])
            if key in seen:
                problems.append(Problem(where, f"duplicate fact {key} (first at {seen[key]})", "warning"))
                continue
            seen[key] = where
            triples.append(Triple(*key, where=where))
    kg = KG(schema, entities, [], problems, root)
    kg.triples = triples  # validated (and filtered) below
    return validate(kg)


def validate(kg: KG, min_entities: int = 0) -> KG:
    """Graph-level checks; invalid facts are dropped from the graph (and reported)."""
    schema, problems = kg.schema, kg.problems
    good: list[Triple] = []
    for t in kg.triples:
        rel = schema.relation_types.get(t.relation)
        bad = False
        if rel is None:
            problems.append(Problem(t.where, f"unknown relation {t.relation!r}"))
            continue
        for role, eid in (("head", t.head), ("tail", t.tail)):
            ent = kg.entities.get(eid)
            if ent is None:
                problems.append(Problem(t.where, f"{role} {eid!r} of {t.relation} is not a known entity id"))
                bad = True
            elif ent.type not in rel[role]:
                problems.append(Problem(t.where, f"{t.relation}: {role} {eid!r} has type {ent.type!r}; "
                                                 f"allowed: {rel[role]}"))
                bad = True
        if t.head == t.tail:
            problems.append(Problem(t.where, f"{t.relation}: head equals tail ({t.head!r})"))
            bad = True
        if not bad:
            good.append(t)
    names: dict[tuple[str, str], str] = {}
    for e in kg.entities.values():
        for lang in ("zh", "en"):
            key = (lang, e.name(lang))
            if key in names:
                problems.append(Problem(e.where, f"{e.id!r} has the same name_{lang} {e.name(lang)!r} as "
                                                 f"{names[key]!r}", "warning"))
            else:
                names[key] = e.id
    if len(kg.entities) < min_entities:
        problems.append(Problem(str(kg.root), f"only {len(kg.entities)} entities (< {min_entities})"))
    return KG(kg.schema, kg.entities, good, problems, kg.root)


__all__ = ["Entity", "Triple", "Schema", "KG", "KGError", "Problem", "load_kg", "load_schema", "validate"]
