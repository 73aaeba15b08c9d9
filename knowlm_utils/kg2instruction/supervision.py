"""Distant supervision against the KG and the rule filters (stage 06, steps 3–4 of KG2Instruction).

Distant supervision (DS) assumes that a sentence mentioning two entities that are related in the
KG states that relation. It finds many true triples cheaply, and many false ones: "阿姆斯特丹是
荷兰的首都" also yields ``located_in(阿姆斯特丹, 荷兰)``, which the KG holds but the sentence does
not say. The rules after it each remove one kind of error, and every rule counts what it drops
(with examples), so its precision gain and recall cost can be measured stage by stage
(:func:`knowlm_utils.kg2instruction.evaluation.funnel`).

* :func:`load_ie_schema` — the IE schema (``data_samples/kg/ie_schema.yaml``): the relations the
  instructions name, each read off one KG relation (``reverse``: read the fact backwards) with
  head/tail types that may be narrower than the KG's.
* :func:`distant_supervision` — a document's linked sentences → :class:`Candidate` s.
* Rules, in order (:class:`FilterOptions` switches and tunes them):

  1. ``schema`` (:class:`SchemaFilter`) — KG relation → IE relation, swapping head and tail when
     the IE relation is ``reverse``; drops facts of unmapped relations (``unmapped``) and facts
     whose types the IE relation does not allow (``type_constraint``);
  2. ``transitive`` (:class:`TransitiveFilter`) — transitive reduction of ``located_in`` inside a
     sentence: with A→B and B→C (B mentioned) the sentence does not say A→C;
  3. ``min_confidence`` (:class:`MinConfidenceFilter`) — both entity links at least this
     confident;
  4. ``evidence_cues`` (:class:`CueFilter`) — the sentence contains a cue word of the relation
     (``knowlm_utils/data/kg2instruction/relation_cues.yaml``);
  5. ``nli`` (:class:`NLIFilter`, off by default) — an NLI model's entailment probability of a
     verbalised hypothesis given the sentence; the scorer is pluggable
     (:func:`hf_nli_scorer` adapts a user-built ``transformers`` pipeline; nothing is downloaded).

* :func:`run_filters` — all enabled rules; the :class:`FilterReport` keeps every candidate (with
  ``dropped_by``) and the kept list after each stage.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence


from ..fileio import read_yaml_file
from ..config import Section, field
from ..kg import KnowledgeGraph
from .documents import Document, Sentence

LANGS = ("zh", "en")
SCOPES = ("sentence", "document")
FILTER_NAMES = ("schema", "transitive", "min_confidence", "evidence_cues", "nli")
DS_STAGE = "distant_supervision"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IE_SCHEMA = REPO_ROOT / "data_samples" / "kg" / "ie_schema.yaml"


def cues_file() -> Path:
    """The packaged ``relation_cues.yaml`` (cue words and NLI hypotheses per KG relation)."""
    return Path(str(resources.files("knowlm_utils").joinpath("data/kg2instruction/relation_cues.yaml")))


# ====================================================================== IE schema ====
def load_ie_schema(path: str | Path = DEFAULT_IE_SCHEMA, kg_schema: Mapping[str, Any] | KnowledgeGraph | None = None
                   ) -> dict[str, Any]:
    """Read and validate an IE schema; returns ``{"entity_types": …, "relations": …}`` (plus
    ``events`` when present, not checked here) with every relation's ``reverse`` filled in.

    ``kg_schema``: the KG's schema (a mapping, or a :class:`KnowledgeGraph`); by default the
    ``schema.yaml`` beside ``path``. Checked: every ``kg_relation`` and type exists in the KG
    schema, each IE relation's head/tail types (read backwards when ``reverse``) are a subset
    of the KG relation's (an IE schema may narrow, never widen), names are non-empty and unique
    per language. A problem raises ``ValueError("<path>: <key>: <what>")``.
    """
    path = Path(path)
    data = read_yaml_file(path)
    if isinstance(kg_schema, KnowledgeGraph):
        kg_schema = kg_schema.schema
    if kg_schema is None:
        kg_path = path.parent / "schema.yaml"
        if not kg_path.is_file():
            raise ValueError(f"{path}: no KG schema given and no schema.yaml beside it")
        kg_schema = read_yaml_file(kg_path)
    return validate_ie_schema(data, kg_schema, str(path))


def validate_ie_schema(data: Any, kg_schema: Mapping[str, Any], where: str = "IE schema") -> dict[str, Any]:
    """:func:`load_ie_schema`'s checks on already parsed data."""
    def bad(key: str, what: str) -> ValueError:
        return ValueError(f"{where}: {key}: {what}")

    if not isinstance(data, dict):
        raise ValueError(f"{where}: top level must be a mapping with entity_types and relations")
    unknown = sorted(set(data) - {"entity_types", "relations", "events"})
    if unknown:
        raise bad(unknown[0], "unknown section (allowed: entity_types, relations, events)")
    kg_types = set(kg_schema.get("entity_types") or {})
    kg_rels = kg_schema.get("relation_types") or {}
    types = data.get("entity_types")
    if not isinstance(types, dict) or not types:
        raise bad("entity_types", "must be a non-empty mapping of KG type → {zh, en}")
    names: dict[tuple[str, str, str], str] = {}
    for t, spec in types.items():
        if t not in kg_types:
            raise bad(f"entity_types.{t}", f"unknown KG entity type (the KG has {sorted(kg_types)})")
        _check_names(spec, f"entity_types.{t}", bad, names, "entity_types")
    rels = data.get("relations")
    if not isinstance(rels, dict) or not rels:
        raise bad("relations", "must be a non-empty mapping of relation name → spec")
    out_rels: dict[str, dict[str, Any]] = {}
    for name, spec in rels.items():
        key = f"relations.{name}"
        if not isinstance(spec, dict):
            raise bad(key, "must be a mapping with kg_relation, reverse, zh, en, head, tail")
        extra = sorted(set(spec) - {"kg_relation", "reverse", "zh", "en", "head", "tail"})
        if extra:
            raise bad(f"{key}.{extra[0]}", "unknown key (allowed: kg_relation, reverse, zh, en, head, tail)")
        kr = spec.get("kg_relation")
        if kr not in kg_rels:
            raise bad(f"{key}.kg_relation", f"unknown KG relation {kr!r}")
        reverse = spec.get("reverse", False)
        if not isinstance(reverse, bool):
            raise bad(f"{key}.reverse", f"must be true or false, got {reverse!r}")
        _check_names(spec, key, bad, names, "relations")
        allowed = {"head": kg_rels[kr]["tail" if reverse else "head"], "tail": kg_rels[kr]["head" if reverse else "tail"]}
        for side in ("head", "tail"):
            val = spec.get(side)
            if not isinstance(val, list) or not val or not all(isinstance(v, str) for v in val):
                raise bad(f"{key}.{side}", "must be a non-empty list of KG entity types")
            for v in val:
                if v not in kg_types:
                    raise bad(f"{key}.{side}", f"unknown KG entity type {v!r}")
                if v not in allowed[side]:
                    raise bad(f"{key}.{side}", f"type {v!r} is not allowed by KG relation {kr} on that side"
                              f"{' (reverse: true)' if reverse else ''}; allowed {allowed[side]}")
        out_rels[name] = {"kg_relation": kr, "reverse": reverse, "zh": spec["zh"], "en": spec["en"],
                          "head": list(spec["head"]), "tail": list(spec["tail"])}
    out = {"entity_types": {t: {"zh": s["zh"], "en": s["en"]} for t, s in types.items()}, "relations": out_rels}
    if "events" in data:
        out["events"] = data["events"]
    return out


def _check_names(spec: Any, key: str, bad: Callable[[str, str], ValueError],
                 seen: dict[tuple[str, str, str], str], section: str) -> None:
    if not isinstance(spec, dict):
        raise bad(key, "must be a mapping with zh and en names")
    for lang in LANGS:
        val = spec.get(lang)
        if not isinstance(val, str) or not val.strip():
            raise bad(f"{key}.{lang}", "needs a non-empty name")
        first = seen.setdefault((section, lang, val), key)
        if first != key:
            raise bad(f"{key}.{lang}", f"name {val!r} is already used by {first}")


def relations_by_kg(ie_schema: Mapping[str, Any]) -> dict[str, list[str]]:
    """KG relation → the IE relation names that read it, in schema order."""
    out: dict[str, list[str]] = defaultdict(list)
    for name, spec in ie_schema["relations"].items():
        out[spec["kg_relation"]].append(name)
    return dict(out)


def relation_label(ie_schema: Mapping[str, Any], name: str, lang: str) -> str:
    """The IE relation's name in ``lang`` (``zh``/``en``)."""
    return ie_schema["relations"][name][lang]


def entity_type_label(ie_schema: Mapping[str, Any], kg_type: str, lang: str) -> str | None:
    """The entity type's name in ``lang``; ``None`` when the IE schema leaves the type out."""
    spec = ie_schema["entity_types"].get(kg_type)
    return spec[lang] if spec else None


def find_relation(ie_schema: Mapping[str, Any], text: str) -> str | None:
    """The IE relation whose key, zh or en name is ``text`` (case- and whitespace-insensitive for
    English); ``None`` when none is."""
    want = " ".join(text.split()).casefold()
    for name, spec in ie_schema["relations"].items():
        if want in (name.casefold(), spec["zh"].casefold(), " ".join(spec["en"].split()).casefold()):
            return name
    return None


# ====================================================================== candidates ====
@dataclass
class Candidate:
    """One distant-supervision triple in one sentence.

    ``head``/``relation``/``tail`` start as the KG fact (``relation`` is always the KG relation);
    the ``schema`` rule sets ``ie_relation`` and, for a ``reverse`` IE relation, swaps head and
    tail (with their texts and confidences) and sets ``reversed`` — :attr:`kg_triple` gives the
    fact in the KG's direction either way. ``head_text``/``tail_text`` are the surfaces the
    instruction output uses: the entity's earliest mention in the document when that surface
    occurs in the sentence, else its first mention in the sentence (a ``document``-scope entity
    not mentioned in the sentence keeps the earliest surface). Confidences are the entity links'
    (the best of the entity's mentions in the sentence, or in the document when it has none there).
    """

    id: str
    doc_id: str
    sentence_index: int
    scope: str
    head: str
    relation: str
    tail: str
    ie_relation: str | None = None
    head_text: str = ""
    tail_text: str = ""
    head_confidence: float = 1.0
    tail_confidence: float = 1.0
    dropped_by: str | None = None
    drop_reason: str | None = None
    reversed: bool = False

    @property
    def kg_triple(self) -> tuple[str, str, str]:
        """``(head id, KG relation, tail id)`` as the KG stores the fact."""
        return (self.tail, self.relation, self.head) if self.reversed else (self.head, self.relation, self.tail)

    @property
    def kg_texts(self) -> tuple[str, str]:
        """The head and tail surfaces in the KG's direction."""
        return (self.tail_text, self.head_text) if self.reversed else (self.head_text, self.tail_text)

    @property
    def kept(self) -> bool:
        return self.dropped_by is None

    def swap(self) -> None:
        """Exchange head and tail (ids, texts, confidences) and flip :attr:`reversed`."""
        self.head, self.tail = self.tail, self.head
        self.head_text, self.tail_text = self.tail_text, self.head_text
        self.head_confidence, self.tail_confidence = self.tail_confidence, self.head_confidence
        self.reversed = not self.reversed

    def describe(self) -> str:
        rel = self.ie_relation or self.relation
        return f"{self.id} ({self.head_text}, {rel}, {self.tail_text})"


@dataclass
class DSStats:
    """What distant supervision saw."""

    documents: int = 0
    sentences: int = 0
    mentions: int = 0
    unlinked_skipped: int = 0       # mentions without an entity (no candidate / unresolved tie)
    entity_pairs: int = 0           # ordered pairs of distinct linked entities in a sentence
    document_pairs: int = 0         # document scope: pairs that share no sentence
    candidates: int = 0
    sentence_candidates: int = 0
    document_candidates: int = 0

    def add(self, other: "DSStats") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _surface_and_confidence(eid: str, sent: Sentence | None, doc: Document) -> tuple[str, float]:
    canon = doc.canonical.get(eid)
    mine = [ln for ln in sent.links if ln.entity_id == eid] if sent is not None else []
    if not mine:
        conf = max((ln.confidence for s in doc.sentences for ln in s.links if ln.entity_id == eid), default=0.0)
        return canon or eid, conf
    surfaces = [ln.mention.surface for ln in mine]
    return (canon if canon in surfaces else surfaces[0]), max(ln.confidence for ln in mine)


def distant_supervision(doc: Document, kg: KnowledgeGraph, scope: str = "sentence",
                        stats: DSStats | None = None) -> list[Candidate]:
    """Every KG fact between two distinct entities linked in the same sentence becomes a
    candidate (with the KG's head and tail, whichever order the mentions come in); several facts
    between one pair give several candidates. ``scope="document"`` adds, once per document, the
    facts between entities linked in different sentences only: such a candidate (``scope
    "document"``) sits in the sentence where the later of the two entities is first mentioned
    (an infobox row ``* 位于（反向）：北京大学`` names only the tail; the subject is the title).

    Unlinked mentions are skipped (counted in ``stats``). Ids are ``f"{doc.id}:{sentence}:{k}"``,
    ``k`` counting the sentence's candidates from 0 (sentence scope first): the same document
    always gives the same ids.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    st = stats if stats is not None else DSStats()
    st.documents += 1
    out: list[Candidate] = []
    per_sentence: dict[int, list[Candidate]] = defaultdict(list)
    first_sentence: dict[str, int] = {}
    together: set[tuple[str, str]] = set()

    def facts_between(ents: Iterable[str], allowed: set[str]) -> Iterable[dict]:
        for a in ents:
            for tr in kg.by_head.get(a, ()):
                if tr["tail"] in allowed and tr["tail"] != a:
                    yield tr

    for sent in doc.sentences:
        st.sentences += 1
        st.mentions += len(sent.links)
        ents: list[str] = []
        for ln in sent.links:
            if ln.entity_id is None:
                st.unlinked_skipped += 1
            elif ln.entity_id not in ents:
                ents.append(ln.entity_id)
        for e in ents:
            first_sentence.setdefault(e, sent.index)
        st.entity_pairs += len(ents) * (len(ents) - 1)
        present = set(ents)
        for a in ents:
            for b in ents:
                if a != b:
                    together.add((a, b))
        for tr in facts_between(ents, present):
            h, t = tr["head"], tr["tail"]
            c = Candidate("", doc.id, sent.index, "sentence", h, tr["relation"], t)
            c.head_text, c.head_confidence = _surface_and_confidence(h, sent, doc)
            c.tail_text, c.tail_confidence = _surface_and_confidence(t, sent, doc)
            per_sentence[sent.index].append(c)
            st.sentence_candidates += 1
    if scope == "document":
        order = sorted(first_sentence, key=lambda e: first_sentence[e])
        everywhere = set(order)
        by_index = {s.index: s for s in doc.sentences}
        for a in order:
            for b in order:
                if a != b and (a, b) not in together:
                    st.document_pairs += 1
        for tr in facts_between(order, everywhere):
            h, t = tr["head"], tr["tail"]
            if (h, t) in together:
                continue
            where = max(first_sentence[h], first_sentence[t])
            sent = by_index[where]
            c = Candidate("", doc.id, where, "document", h, tr["relation"], t)
            c.head_text, c.head_confidence = _surface_and_confidence(h, sent, doc)
            c.tail_text, c.tail_confidence = _surface_and_confidence(t, sent, doc)
            per_sentence[where].append(c)
            st.document_candidates += 1
    for index in sorted(per_sentence):
        for k, c in enumerate(per_sentence[index]):
            c.id = f"{doc.id}:{index}:{k}"
            out.append(c)
    st.candidates += len(out)
    return out


# ====================================================================== filter plumbing ====
@dataclass
class FilterStats:
    """One rule's counts: candidates it saw, dropped (by reason), and a few examples."""

    name: str
    seen: int = 0
    dropped: int = 0
    by_reason: Counter = dataclasses.field(default_factory=Counter)
    examples: list[str] = dataclasses.field(default_factory=list)
    max_examples: int = 5

    @property
    def kept(self) -> int:
        return self.seen - self.dropped

    def add(self, other: "FilterStats") -> None:
        self.seen += other.seen
        self.dropped += other.dropped
        self.by_reason.update(other.by_reason)
        room = self.max_examples - len(self.examples)
        if room > 0:
            self.examples.extend(other.examples[:room])

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seen": self.seen, "dropped": self.dropped, "kept": self.kept,
                "by_reason": dict(sorted(self.by_reason.items())), "examples": list(self.examples)}


@dataclass
class FilterContext:
    documents_by_id: Mapping[str, Document]
    kg: KnowledgeGraph
    ie_schema: Mapping[str, Any] | None

    def document(self, c: Candidate) -> Document:
        try:
            return self.documents_by_id[c.doc_id]
        except KeyError:
            raise ValueError(f"candidate {c.id}: document {c.doc_id!r} is not in documents_by_id") from None

    def sentence(self, c: Candidate) -> Sentence:
        doc = self.document(c)
        if 0 <= c.sentence_index < len(doc.sentences) and doc.sentences[c.sentence_index].index == c.sentence_index:
            return doc.sentences[c.sentence_index]
        for s in doc.sentences:
            if s.index == c.sentence_index:
                return s
        raise ValueError(f"candidate {c.id}: document {c.doc_id!r} has no sentence {c.sentence_index}")


class Rule:
    """A rule filter: :meth:`apply` takes the kept candidates, marks the ones it drops
    (``dropped_by = name``, ``drop_reason``) and returns the rest; :attr:`stats` counts."""

    name = "rule"

    def __init__(self, max_examples: int = 5):
        self.stats = FilterStats(self.name, max_examples=max_examples)

    def drop(self, c: Candidate, reason: str, ctx: FilterContext | None = None) -> None:
        c.dropped_by, c.drop_reason = self.name, reason
        self.stats.dropped += 1
        self.stats.by_reason[reason] += 1
        if len(self.stats.examples) < self.stats.max_examples:
            text = ""
            if ctx is not None:
                try:
                    text = " | " + ctx.sentence(c).text.strip()
                except ValueError:
                    pass
            self.stats.examples.append(f"{reason}: {c.describe()}{text}")

    def apply(self, candidates: list[Candidate], ctx: FilterContext) -> list[Candidate]:
        self.stats.seen += len(candidates)
        kept = []
        for c in candidates:
            reason = self.check(c, ctx)
            if reason is None:
                kept.append(c)
            else:
                self.drop(c, reason, ctx)
        return kept

    def check(self, c: Candidate, ctx: FilterContext) -> str | None:
        """The reason to drop ``c``, or ``None`` to keep it."""
        raise NotImplementedError


class SchemaFilter(Rule):
    """KG relation → IE relation; ``reverse`` swaps head and tail. Drops ``unmapped`` (no IE
    relation reads the KG relation) and ``type_constraint`` (none of those IE relations allows
    the entities' types). With several IE relations for one KG relation, the first that fits
    the types wins (KG ``capital_of`` → 首都 for a country, 首府 for a province)."""

    name = "schema"

    def __init__(self, ie_schema: Mapping[str, Any], max_examples: int = 5):
        super().__init__(max_examples)
        self.ie_schema = ie_schema
        self.by_kg = relations_by_kg(ie_schema)

    def check(self, c: Candidate, ctx: FilterContext) -> str | None:
        names = self.by_kg.get(c.relation)
        if not names:
            return "unmapped"
        h, _, t = c.kg_triple
        ht, tt = ctx.kg.entities[h]["type"], ctx.kg.entities[t]["type"]
        for name in names:
            spec = self.ie_schema["relations"][name]
            ih, it = (tt, ht) if spec["reverse"] else (ht, tt)
            if ih in spec["head"] and it in spec["tail"]:
                if spec["reverse"] != c.reversed:
                    c.swap()
                c.ie_relation = name
                return None
        return "type_constraint"


class TransitiveFilter(Rule):
    """Transitive reduction of one relation (``located_in``) inside a sentence: when the
    sentence's kept candidates hold A→B and B→C and B is mentioned in the sentence, A→C is
    dropped ("长沙位于湖南省，湖南省属于中国" does not say 长沙 lies in 中国; the KG's
    closure does). All drops are decided on the candidates as they came in, so the order of the
    candidates does not matter."""

    name = "transitive"

    def __init__(self, relation: str = "located_in", max_examples: int = 5):
        super().__init__(max_examples)
        self.relation = relation

    def apply(self, candidates: list[Candidate], ctx: FilterContext) -> list[Candidate]:
        self.stats.seen += len(candidates)
        edges: dict[tuple[str, int], set[tuple[str, str]]] = defaultdict(set)
        for c in candidates:
            if c.relation == self.relation:
                h, _, t = c.kg_triple
                edges[c.doc_id, c.sentence_index].add((h, t))
        drop: set[str] = set()
        for c in candidates:
            if c.relation != self.relation:
                continue
            key = (c.doc_id, c.sentence_index)
            a, _, z = c.kg_triple
            mentioned = {ln.entity_id for ln in ctx.sentence(c).links if ln.entity_id}
            for b in sorted(mentioned - {a, z}):
                if (a, b) in edges[key] and (b, z) in edges[key]:
                    drop.add(c.id)
                    break
        kept = []
        for c in candidates:
            if c.id in drop:
                self.drop(c, "implied", ctx)
            else:
                kept.append(c)
        return kept


class MinConfidenceFilter(Rule):
    """Drops a candidate whose head or tail link confidence is below ``threshold``."""

    name = "min_confidence"

    def __init__(self, threshold: float, max_examples: int = 5):
        super().__init__(max_examples)
        self.threshold = threshold

    def check(self, c: Candidate, ctx: FilterContext) -> str | None:
        if c.head_confidence < self.threshold or c.tail_confidence < self.threshold:
            return "low_confidence"
        return None


def load_relation_cues(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """``{kg relation: {"cues": {lang: [..]}, "hypothesis": {lang: str}}}`` from
    ``relation_cues.yaml`` (default: the packaged one). A malformed entry raises a one-line
    ``ValueError`` naming the file and key."""
    path = Path(path) if path is not None else cues_file()
    data = read_yaml_file(path)
    rels = data.get("relations") if isinstance(data, dict) else None
    if not isinstance(rels, dict):
        raise ValueError(f"{path}: relations: must be a mapping of KG relation → cues/hypothesis")
    out = {}
    for rel, spec in rels.items():
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: relations.{rel}: must be a mapping")
        cues = spec.get("cues") or {}
        hyp = spec.get("hypothesis") or {}
        for lang in cues:
            if lang not in LANGS or not isinstance(cues[lang], list) or \
                    not all(isinstance(x, str) and x.strip() for x in cues[lang]):
                raise ValueError(f"{path}: relations.{rel}.cues.{lang}: must be a list of non-empty strings "
                                 f"(languages {LANGS})")
        for lang in hyp:
            h = hyp[lang]
            if lang not in LANGS or not isinstance(h, str) or "{h}" not in h or "{t}" not in h:
                raise ValueError(f"{path}: relations.{rel}.hypothesis.{lang}: must be a string with {{h}} and {{t}}")
        out[rel] = {"cues": {k: list(v) for k, v in cues.items()}, "hypothesis": dict(hyp)}
    return out


class CueFilter(Rule):
    """Keeps a candidate only when its sentence contains a cue of its KG relation in the
    document's language (zh: substring; en: case-insensitive, from a word boundary). A relation
    without a cue list in that language drops its candidates (``no_cue_list``): the rule is
    meant to be high precision."""

    name = "evidence_cues"

    def __init__(self, cues: Mapping[str, Mapping[str, Any]] | None = None, max_examples: int = 5):
        super().__init__(max_examples)
        cues = load_relation_cues() if cues is None else cues
        self.patterns: dict[tuple[str, str], re.Pattern] = {}
        for rel, spec in cues.items():
            lists = spec.get("cues", spec)
            for lang, words in lists.items():
                if not words:
                    continue
                alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
                self.patterns[rel, lang] = re.compile(alts if lang == "zh" else rf"\b(?:{alts})", re.IGNORECASE)

    def cue_in(self, relation: str, lang: str, text: str) -> str | None:
        """The first cue of ``relation`` found in ``text``, or ``None``."""
        pat = self.patterns.get((relation, lang))
        m = pat.search(text) if pat else None
        return m.group(0) if m else None

    def check(self, c: Candidate, ctx: FilterContext) -> str | None:
        lang = ctx.document(c).lang
        if (c.relation, lang) not in self.patterns:
            return "no_cue_list"
        return None if self.cue_in(c.relation, lang, ctx.sentence(c).text) else "no_cue"


NLIScorer = Callable[[list[tuple[str, str]]], Sequence[float]]


class NLIFilter(Rule):
    """Keeps a candidate when an NLI model finds its hypothesis entailed by the sentence.

    ``scorer(pairs)`` takes ``[(premise, hypothesis), …]`` and returns the entailment
    probability of each (any model: :func:`hf_nli_scorer` wraps a ``transformers`` pipeline).
    The hypothesis verbalises the candidate with its KG relation's template in the document's
    language (``hypothesis`` in ``relation_cues.yaml``; ``{h}``/``{t}`` are the KG head/tail
    surfaces). Candidates are scored ``batch_size`` at a time; score < ``threshold`` drops
    (``not_entailed``); a relation without a template drops (``no_hypothesis``).
    """

    name = "nli"

    def __init__(self, scorer: NLIScorer, threshold: float = 0.5,
                 hypotheses: Mapping[str, Mapping[str, str]] | None = None, batch_size: int = 64,
                 max_examples: int = 5):
        super().__init__(max_examples)
        if hypotheses is None:
            hypotheses = {rel: spec["hypothesis"] for rel, spec in load_relation_cues().items()}
        self.scorer, self.threshold, self.batch_size = scorer, threshold, max(1, int(batch_size))
        self.hypotheses = {rel: dict(spec.get("hypothesis", spec)) for rel, spec in hypotheses.items()}
        self.scores: dict[str, float] = {}

    def hypothesis(self, c: Candidate, lang: str) -> str | None:
        tmpl = self.hypotheses.get(c.relation, {}).get(lang)
        if tmpl is None:
            return None
        h, t = c.kg_texts
        return tmpl.replace("{h}", h).replace("{t}", t)

    def apply(self, candidates: list[Candidate], ctx: FilterContext) -> list[Candidate]:
        self.stats.seen += len(candidates)
        todo: list[tuple[Candidate, str, str]] = []
        kept_ids: set[str] = set()
        for c in candidates:
            hyp = self.hypothesis(c, ctx.document(c).lang)
            if hyp is None:
                self.drop(c, "no_hypothesis", ctx)
            else:
                todo.append((c, ctx.sentence(c).text.strip(), hyp))
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i:i + self.batch_size]
            scores = list(self.scorer([(p, h) for _, p, h in batch]))
            if len(scores) != len(batch):
                raise ValueError(f"NLI scorer returned {len(scores)} scores for {len(batch)} pairs")
            for (c, _, _), s in zip(batch, scores):
                self.scores[c.id] = float(s)
                if float(s) < self.threshold:
                    self.drop(c, "not_entailed", ctx)
                else:
                    kept_ids.add(c.id)
        return [c for c in candidates if c.id in kept_ids]


def hf_nli_scorer(pipe: Callable[..., Any], entailment_label: str = "entailment", batch_size: int = 32) -> NLIScorer:
    """Adapt a ``transformers`` text-classification pipeline over an NLI model, built by the
    user, e.g. ``pipeline("text-classification", model="<an NLI model you have locally>")``
    (nothing is loaded or downloaded here), to an :class:`NLIFilter` scorer.

    Each pair goes in as ``{"text": premise, "text_pair": hypothesis}`` with ``top_k=None`` (all
    labels' scores); the result is the score of the label equal to ``entailment_label``
    (case-insensitive). A model whose labels lack it (e.g. ``LABEL_0``…) raises ``ValueError``
    listing the labels it has: pass the right one.
    """
    want = entailment_label.casefold()

    def score(pairs: list[tuple[str, str]]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(pairs), max(1, batch_size)):
            batch = [{"text": p, "text_pair": h} for p, h in pairs[i:i + batch_size]]
            results = pipe(batch, top_k=None)
            if isinstance(results, dict):
                results = [results]
            if len(batch) == 1 and len(results) > 1 and all(isinstance(r, dict) for r in results):
                results = [results]  # one input: some versions return its label list unwrapped
            if len(results) != len(batch):
                raise ValueError(f"NLI pipeline returned {len(results)} results for {len(batch)} inputs")
            for res in results:
                labels = [res] if isinstance(res, dict) else list(res)
                found = [float(r["score"]) for r in labels if str(r.get("label", "")).casefold() == want]
                if not found:
                    raise ValueError(f"NLI pipeline has no label {entailment_label!r}; its labels are "
                                     f"{sorted({str(r.get('label')) for r in labels})} (pass entailment_label=)")
                out.append(found[0])
        return out

    return score


# ====================================================================== options and run ====
@dataclass
class FilterOptions(Section):
    """The rule filters after distant supervision (run in this order; see the module docstring)."""

    schema: bool = field(True, help="map KG relations to the IE schema's relations (applying reverse); drop "
                                    "unmapped relations and type-constraint violations")
    transitive: bool = field(True, help="transitive reduction of transitive_relation inside a sentence "
                                        "(A→B and B→C mentioned: drop A→C)")
    transitive_relation: str = field("located_in", help="the KG relation the transitive rule reduces")
    min_confidence: bool = field(False, help="drop candidates whose head or tail link is less confident than "
                                 "confidence_threshold. Off by default: on the sample corpus every threshold "
                                 "cost more recall than it gained precision (0.75 after the other rules: P "
                                 "0.9908→0.9909, R 0.9559→0.9502; 256 of its 290 drops were true facts)")
    confidence_threshold: float = field(0.75, ge=0, le=1, help="least entity-link confidence (1.0: the surface "
                                        "has one candidate; neighbour evidence gives 0.75+, the prior less)")
    evidence_cues: bool = field(True, help="the sentence must contain a cue word of the relation "
                                           "(relation_cues.yaml)")
    cues_file: str | None = field(None, help="cue words and NLI hypotheses per KG relation (default: the "
                                             "packaged knowlm_utils/data/kg2instruction/relation_cues.yaml)")
    nli: bool = field(False, help="keep only candidates an NLI model finds entailed (needs a scorer passed to "
                                  "run_filters; no model is ever downloaded)")
    nli_threshold: float = field(0.5, ge=0, le=1, help="least entailment probability the nli rule keeps")
    max_examples: int = field(5, ge=0, help="dropped candidates kept as examples per rule")

    def enabled(self) -> list[str]:
        return [name for name in FILTER_NAMES if getattr(self, name)]


@dataclass
class FilterReport:
    """Every candidate (``dropped_by`` says which rule removed it, ``None``: kept to the end), the
    kept candidates after each stage (``stages[0]`` is distant supervision itself) and each rule's
    :class:`FilterStats`."""

    candidates: list[Candidate]
    stages: list[tuple[str, list[Candidate]]]
    stats: dict[str, FilterStats]

    @property
    def kept(self) -> list[Candidate]:
        return self.stages[-1][1] if self.stages else []

    def summary(self) -> list[dict[str, Any]]:
        """One row per rule: seen, dropped (by reason), kept, examples."""
        return [self.stats[name].as_dict() for name, _ in self.stages[1:]]


def build_rules(options: FilterOptions, ie_schema: Mapping[str, Any] | None,
                nli: NLIFilter | NLIScorer | None = None) -> list[Rule]:
    """The enabled rules of ``options``, in order. ``nli``: an :class:`NLIFilter` or a bare scorer
    (wrapped with ``options.nli_threshold`` and the cue file's hypotheses); required when
    ``options.nli`` is on."""
    cues = load_relation_cues(options.cues_file) if (options.evidence_cues or options.nli) else {}
    rules: list[Rule] = []
    n = options.max_examples
    for name in options.enabled():
        if name == "schema":
            if ie_schema is None:
                raise ValueError("the schema rule needs an ie_schema (load_ie_schema)")
            rules.append(SchemaFilter(ie_schema, n))
        elif name == "transitive":
            rules.append(TransitiveFilter(options.transitive_relation, n))
        elif name == "min_confidence":
            rules.append(MinConfidenceFilter(options.confidence_threshold, n))
        elif name == "evidence_cues":
            rules.append(CueFilter(cues, n))
        elif name == "nli":
            if nli is None:
                raise ValueError("FilterOptions.nli is on but no NLI scorer was given (run_filters(..., nli=...))")
            if not isinstance(nli, NLIFilter):
                nli = NLIFilter(nli, options.nli_threshold,
                                {rel: spec["hypothesis"] for rel, spec in cues.items()}, max_examples=n)
            rules.append(nli)
    return rules


def run_filters(candidates: Iterable[Candidate], documents_by_id: Mapping[str, Document], kg: KnowledgeGraph,
                ie_schema: Mapping[str, Any] | None, options: FilterOptions | None = None,
                nli: NLIFilter | NLIScorer | None = None) -> FilterReport:
    """Run the enabled rules over copies of ``candidates`` (the input objects are not changed).

    Candidates already dropped on the way in stay dropped and are not shown to any rule. The
    report's ``stages`` start with ``("distant_supervision", all kept input candidates)``, then
    one ``(rule name, kept after it)`` per enabled rule."""
    options = options or FilterOptions()
    ctx = FilterContext(documents_by_id, kg, ie_schema)
    all_cands = [dataclasses.replace(c) for c in candidates]
    kept = [c for c in all_cands if c.kept]
    stages: list[tuple[str, list[Candidate]]] = [(DS_STAGE, list(kept))]
    stats: dict[str, FilterStats] = {}
    for rule in build_rules(options, ie_schema, nli):
        kept = rule.apply(kept, ctx)
        stages.append((rule.name, list(kept)))
        stats[rule.name] = rule.stats
    return FilterReport(all_cands, stages, stats)


__all__ = ["DEFAULT_IE_SCHEMA", "FILTER_NAMES", "SCOPES", "cues_file", "load_ie_schema", "validate_ie_schema",
           "relations_by_kg", "relation_label", "entity_type_label", "find_relation", "Candidate", "DSStats",
           "distant_supervision", "FilterStats", "FilterContext", "Rule", "SchemaFilter", "TransitiveFilter",
           "MinConfidenceFilter", "load_relation_cues", "CueFilter", "NLIScorer", "NLIFilter", "hf_nli_scorer",
           "FilterOptions", "FilterReport", "build_rules", "run_filters"]
