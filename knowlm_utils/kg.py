"""The sample world's knowledge graph (``data_samples/kg/``): loading and validation.

Entities (``entities/*.jsonl``) and facts (``triples/*.jsonl``) follow ``schema.yaml``. The
corpus generator writes documents from it, and the IE stages measure models against it.
Validation errors name the file and line.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ID_RE = re.compile(r"^([a-z]+)/[a-z0-9_]+$")
ENTITY_KEYS = ("id", "type", "name_zh", "name_en", "aliases_zh", "aliases_en", "desc_zh", "desc_en", "attrs")


class KGError(ValueError):
    """The knowledge graph is inconsistent; the message lists every problem with file:line."""


@dataclass
class KnowledgeGraph:
    schema: dict
    entities: dict[str, dict]
    triples: list[dict]
    by_head: dict[str, list[dict]] = field(default_factory=dict)
    by_tail: dict[str, list[dict]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        heads, tails = defaultdict(list), defaultdict(list)
        for tr in self.triples:
            heads[tr["head"]].append(tr)
            tails[tr["tail"]].append(tr)
        self.by_head, self.by_tail = dict(heads), dict(tails)

    def of_type(self, etype: str) -> list[dict]:
        return [e for e in self.entities.values() if e["type"] == etype]

    def facts(self, entity_id: str) -> list[dict]:
        """Every fact the entity takes part in, as head first, then as tail."""
        return self.by_head.get(entity_id, []) + self.by_tail.get(entity_id, [])

    def name(self, entity_id: str, lang: str) -> str:
        return self.entities[entity_id][f"name_{lang}"]


def _read_jsonl(path: Path, problems: list[str]) -> list[tuple[str, dict]]:
    rows = []
    for i, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path.name}:{i}", json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{i}: invalid JSON ({exc.msg})")
    return rows


def load_kg(root: str | Path) -> KnowledgeGraph:
    """Load and validate; raises :class:`KGError` listing all problems."""
    root = Path(root)
    schema = yaml.safe_load((root / "schema.yaml").read_text("utf-8"))
    problems: list[str] = []
    entities: dict[str, dict] = {}
    where: dict[str, str] = {}
    for path in sorted((root / "entities").glob("*.jsonl")):
        for loc, ent in _read_jsonl(path, problems):
            missing = [k for k in ENTITY_KEYS if k not in ent]
            m = ID_RE.match(str(ent.get("id", "")))
            if missing:
                problems.append(f"{loc}: missing keys {missing}")
            elif not m or m.group(1) != ent["type"]:
                problems.append(f"{loc}: bad id {ent['id']!r} (want '<type>/<slug>' with type {ent['type']!r})")
            elif ent["type"] not in schema["entity_types"]:
                problems.append(f"{loc}: unknown entity type {ent['type']!r}")
            elif ent["id"] in entities:
                problems.append(f"{loc}: duplicate id {ent['id']!r} (first at {where[ent['id']]})")
            elif not ent["name_zh"] or not ent["name_en"]:
                problems.append(f"{loc}: {ent['id']} needs both name_zh and name_en")
            else:
                entities[ent["id"]] = ent
                where[ent["id"]] = loc
    triples, seen = [], set()
    rels = schema["relation_types"]
    for path in sorted((root / "triples").glob("*.jsonl")):
        for loc, tr in _read_jsonl(path, problems):
            h, r, t = tr.get("head"), tr.get("relation"), tr.get("tail")
            if r not in rels:
                problems.append(f"{loc}: unknown relation {r!r}")
                continue
            bad = [x for x in (h, t) if x not in entities]
            if bad:
                problems.append(f"{loc}: unknown entity id(s) {bad}")
                continue
            if entities[h]["type"] not in rels[r]["head"] or entities[t]["type"] not in rels[r]["tail"]:
                problems.append(f"{loc}: {r} does not allow {entities[h]['type']} → {entities[t]['type']}")
                continue
            if (h, r, t) in seen:
                problems.append(f"{loc}: duplicate fact {h} {r} {t}")
                continue
            seen.add((h, r, t))
            triples.append({"head": h, "relation": r, "tail": t})
    if problems:
        raise KGError(f"{len(problems)} problem(s) in {root}:\n" + "\n".join(problems[:50]))
    return KnowledgeGraph(schema, entities, triples)
