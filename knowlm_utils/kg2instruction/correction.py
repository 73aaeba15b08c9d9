"""Human correction of the filtered candidates, as a CSV round trip (stage 06, step 5).

KG2Instruction has people correct what the rules let through. Here the kept candidates go to a
CSV that a spreadsheet opens (UTF-8 with a byte-order mark, so Excel shows Chinese correctly),
one row per candidate, with its sentence, the triple as the instruction will say it and an
``action`` column prefilled ``keep``. The reviewer writes ``drop`` or ``fix`` (and the fixed
relation and/or head/tail text), and :func:`apply_corrections` reads it back.

Nothing is dropped silently: an unknown id or action, a bad fix, a duplicated id or a missing
column raises ``ValueError`` with one line ``"<path>:<line>: <what>"``; candidates without a
row are kept unchanged and counted. :func:`simulate_corrections` plays the reviewer on the
sample world (it knows the gold) so the notebook can show what a correction round buys.

Columns (:data:`COLUMNS`): ``id``, ``sentence``, ``head_text``, ``relation`` (the IE relation's
name in the document's language), ``tail_text``, ``head_id``, ``tail_id`` (the entities of
``head_text``/``tail_text``), ``action``, ``fixed_relation``, ``fixed_head_text``,
``fixed_tail_text``, ``note``. A fix:

* ``fixed_relation`` — an IE relation, by its key or its zh or en name (either language);
* ``fixed_head_text`` / ``fixed_tail_text`` — must occur in the sentence. Writing the current
  tail text as the head and the head text as the tail swaps the two entities (a reversed
  triple); otherwise the entity stays and only its surface changes (``北京`` → ``北京市``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..fileio import write_bytes_atomic
from ..kg import KnowledgeGraph
from .documents import Document
from .supervision import DEFAULT_IE_SCHEMA, Candidate, find_relation, load_ie_schema, relation_label

COLUMNS = ("id", "sentence", "head_text", "relation", "tail_text", "head_id", "tail_id", "action",
           "fixed_relation", "fixed_head_text", "fixed_tail_text", "note")
REQUIRED = tuple(c for c in COLUMNS if c != "note")
ACTIONS = ("keep", "drop", "fix")
FIXED = ("fixed_relation", "fixed_head_text", "fixed_tail_text")
HUMAN = "human"
LangOf = Callable[[str], str] | Mapping[str, str]


def _schema(ie_schema: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return ie_schema if ie_schema is not None else load_ie_schema(DEFAULT_IE_SCHEMA)


def _sentence_text(documents_by_id: Mapping[str, Document], c: Candidate) -> str:
    doc = documents_by_id.get(c.doc_id)
    if doc is None or not 0 <= c.sentence_index < len(doc.sentences):
        raise ValueError(f"candidate {c.id}: its document/sentence is not in documents_by_id")
    return doc.sentences[c.sentence_index].text.strip()


def _relation_cell(c: Candidate, ie_schema: Mapping[str, Any], lang: str) -> str:
    if c.ie_relation is None:
        return c.relation
    return relation_label(ie_schema, c.ie_relation, lang)


# ====================================================================== export ====
def correction_rows(candidates: Iterable[Candidate], documents_by_id: Mapping[str, Document],
                    ie_schema: Mapping[str, Any] | None = None) -> Iterable[dict[str, str]]:
    """The CSV rows of the kept candidates (dropped ones are not for review), in order."""
    ie_schema = _schema(ie_schema)
    for c in candidates:
        if not c.kept:
            continue
        lang = documents_by_id[c.doc_id].lang if c.doc_id in documents_by_id else "zh"
        yield {"id": c.id, "sentence": " ".join(_sentence_text(documents_by_id, c).split()),
               "head_text": c.head_text, "relation": _relation_cell(c, ie_schema, lang), "tail_text": c.tail_text,
               "head_id": c.head, "tail_id": c.tail, "action": "keep", "fixed_relation": "", "fixed_head_text": "",
               "fixed_tail_text": "", "note": ""}


def write_rows(rows: Iterable[Mapping[str, str]], path: str | Path, columns: Sequence[str] = COLUMNS) -> int:
    """Write rows as a UTF-8-with-BOM CSV, atomically; returns the number of rows."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\r\n", extrasaction="ignore")
    w.writeheader()
    n = 0
    for r in rows:
        w.writerow({k: r.get(k, "") for k in columns})
        n += 1
    write_bytes_atomic(path, buf.getvalue().encode("utf-8-sig"))
    return n


def export_corrections(candidates: Iterable[Candidate], documents_by_id: Mapping[str, Document],
                       path: str | Path, ie_schema: Mapping[str, Any] | None = None) -> int:
    """Write the kept candidates to a correction CSV (``action`` prefilled ``keep``), atomically.
    ``ie_schema`` names the relations (default: the sample world's ``ie_schema.yaml``). Sentences
    are written on one line (whitespace runs become one space). Returns the number of rows."""
    return write_rows(correction_rows(candidates, documents_by_id, ie_schema), path)


# ====================================================================== reading ====
@dataclass
class CSVRow:
    line: int
    values: dict[str, str]


def read_correction_csv(path: str | Path) -> tuple[list[str], list[CSVRow]]:
    """``(header, rows)`` of a correction CSV (BOM optional), each row with the line it starts
    on. Blank lines are skipped; a missing column, a row with the wrong number of fields or an
    empty/duplicated id raises ``ValueError("<path>:<line>: …")``."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ValueError(f"{path}:0: cannot read ({exc.strerror or exc})") from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}:1: empty file (expected the header {','.join(COLUMNS)})") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}:1: unreadable CSV ({exc})") from None
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ValueError(f"{path}:1: missing column(s) {missing} (expected {', '.join(COLUMNS)})")
        dup = sorted({h for h in header if header.count(h) > 1 and h})
        if dup:
            raise ValueError(f"{path}:1: column(s) {dup} appear more than once")
        rows: list[CSVRow] = []
        first_line: dict[str, int] = {}
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}:{start}: unreadable CSV ({' '.join(str(exc).split())})") from None
            if not fields or all(not f.strip() for f in fields) and len(fields) == 1:
                continue  # a blank line
            if len(fields) != len(header):
                raise ValueError(f"{path}:{start}: expected {len(header)} fields, got {len(fields)}")
            values = dict(zip(header, fields))
            rid = values["id"].strip()
            if not rid:
                raise ValueError(f"{path}:{start}: empty id")
            if rid in first_line:
                raise ValueError(f"{path}:{start}: duplicate id {rid!r} (first on line {first_line[rid]})")
            first_line[rid] = start
            values["id"] = rid
            rows.append(CSVRow(start, values))
    return header, rows


# ====================================================================== applying ====
@dataclass
class CorrectionStats:
    rows: int = 0
    kept: int = 0               # rows with action keep
    dropped: int = 0            # rows with action drop
    fixed: int = 0              # fix rows that changed the candidate
    unchanged_rows: int = 0     # fix rows whose values equal the candidate's (nothing to change)
    missing: int = 0            # kept candidates without a row: kept unchanged
    already_dropped: int = 0    # rows about candidates a rule had dropped: left as they were
    changes: list[str] = field(default_factory=list)   # the first few fixes, readable
    max_changes: int = 20

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "max_changes"}


@dataclass
class Corrections:
    """A parsed correction CSV; :meth:`apply` to candidates (one document at a time if need be),
    then :meth:`unused` lists the rows no candidate took."""

    path: Path
    rows: dict[str, CSVRow]
    ie_schema: Mapping[str, Any]
    used: set[str] = field(default_factory=set)

    def where(self, row: CSVRow) -> str:
        return f"{self.path}:{row.line}"

    def unused(self) -> list[CSVRow]:
        return [r for rid, r in self.rows.items() if rid not in self.used]

    def apply(self, candidates: Iterable[Candidate], lang_of: LangOf | None = None,
              documents_by_id: Mapping[str, Document] | None = None, kg: KnowledgeGraph | None = None,
              stats: CorrectionStats | None = None) -> tuple[list[Candidate], CorrectionStats]:
        """Corrected copies of ``candidates`` (same order). ``lang_of``: document id → language
        (a mapping or a function), for the readable change log. ``documents_by_id``: when given,
        fixed texts are checked against the real sentence (else the CSV's ``sentence``). ``kg``:
        the entities' types come from it (else from their ids, ``<type>/<slug>``); a fixed relation must
        allow them."""
        st = stats if stats is not None else CorrectionStats()
        out: list[Candidate] = []
        for c in candidates:
            c = dataclasses.replace(c)
            row = self.rows.get(c.id)
            if row is None:
                st.missing += c.kept
                out.append(c)
                continue
            self.used.add(c.id)
            st.rows += 1
            action = _action(row, self.where(row))
            if not c.kept:
                st.already_dropped += 1
                out.append(c)
                continue
            if action == "keep":
                st.kept += 1
            elif action == "drop":
                st.dropped += 1
                c.dropped_by, c.drop_reason = HUMAN, row.values.get("note", "").strip() or "reviewer"
            else:
                before = (c.head, c.ie_relation, c.tail, c.head_text, c.tail_text)
                self._fix(c, row, documents_by_id, kg)
                if (c.head, c.ie_relation, c.tail, c.head_text, c.tail_text) == before:
                    st.unchanged_rows += 1
                else:
                    st.fixed += 1
                    if len(st.changes) < st.max_changes:
                        lang = _lang(lang_of, c.doc_id)
                        old = relation_label(self.ie_schema, before[1], lang) if before[1] else c.relation
                        st.changes.append(f"{c.id}: ({before[3]}, {old}, {before[4]}) → ({c.head_text}, "
                                          f"{relation_label(self.ie_schema, c.ie_relation, lang)}, {c.tail_text})")
            out.append(c)
        return out, st

    def _fix(self, c: Candidate, row: CSVRow, documents_by_id: Mapping[str, Document] | None,
             kg: KnowledgeGraph | None) -> None:
        where, v = self.where(row), row.values
        rel_text = v["fixed_relation"].strip()
        if rel_text:
            name = find_relation(self.ie_schema, rel_text)
            if name is None:
                raise ValueError(f"{where}: unknown relation {rel_text!r} in fixed_relation (an IE relation's key, "
                                 f"zh or en name, e.g. {_examples(self.ie_schema)})")
        elif c.ie_relation is None:
            raise ValueError(f"{where}: candidate {c.id} has no IE relation; give fixed_relation")
        else:
            name = c.ie_relation
        if documents_by_id is not None and c.doc_id in documents_by_id:
            sentence = _sentence_text(documents_by_id, c)
        else:
            sentence = v["sentence"]
        texts = {}
        for side in ("head", "tail"):
            t = v[f"fixed_{side}_text"].strip()
            if t and t not in sentence and " ".join(t.split()) not in " ".join(sentence.split()):
                raise ValueError(f"{where}: fixed_{side}_text {t!r} does not occur in the sentence")
            texts[side] = t or getattr(c, f"{side}_text")
        head, tail = c.head, c.tail
        hconf, tconf = c.head_confidence, c.tail_confidence
        if texts["head"] == c.tail_text and texts["tail"] == c.head_text and c.head_text != c.tail_text:
            head, tail, hconf, tconf = tail, head, tconf, hconf
        spec = self.ie_schema["relations"][name]
        ht, tt = _type(head, kg), _type(tail, kg)
        if ht not in spec["head"] or tt not in spec["tail"]:
            raise ValueError(f"{where}: relation {name!r} does not allow {ht} → {tt} "
                             f"(head {spec['head']}, tail {spec['tail']})")
        c.head, c.tail, c.head_confidence, c.tail_confidence = head, tail, hconf, tconf
        c.head_text, c.tail_text = texts["head"], texts["tail"]
        c.ie_relation, c.relation, c.reversed = name, spec["kg_relation"], spec["reverse"]


def _type(entity_id: str, kg: KnowledgeGraph | None) -> str:
    """An entity's type: from the KG when given, else from its id (``<type>/<slug>``, the KG's rule)."""
    if kg is not None and entity_id in kg.entities:
        return kg.entities[entity_id]["type"]
    return entity_id.split("/", 1)[0]


def _examples(ie_schema: Mapping[str, Any]) -> str:
    rels = list(ie_schema["relations"].items())[:3]
    return ", ".join(f"{spec['zh']}/{spec['en']}" for _, spec in rels) + (" …" if len(ie_schema["relations"]) > 3 else "")


def _lang(lang_of: LangOf | None, doc_id: str) -> str:
    if lang_of is None:
        return "zh"
    if isinstance(lang_of, Mapping):
        return lang_of.get(doc_id, "zh")
    return lang_of(doc_id)


def _action(row: CSVRow, where: str) -> str:
    raw = row.values["action"]
    action = "".join(raw.split()).casefold()
    if not action:
        raise ValueError(f"{where}: empty action (write keep, drop or fix)")
    if action not in ACTIONS:
        raise ValueError(f"{where}: unknown action {raw.strip()!r} (write keep, drop or fix)")
    filled = [k for k in FIXED if row.values[k].strip()]
    if action == "fix" and not filled:
        raise ValueError(f"{where}: action fix but fixed_relation, fixed_head_text and fixed_tail_text are empty")
    if action != "fix" and filled:
        raise ValueError(f"{where}: {', '.join(filled)} filled in but the action is {action!r} (write fix to apply "
                         "it, or clear the column)")
    return action


def load_corrections(path: str | Path, ie_schema: Mapping[str, Any]) -> Corrections:
    """Read and check a correction CSV (columns, ids, actions, relation names) without any
    candidate; errors are ``ValueError("<path>:<line>: …")``."""
    path = Path(path)
    _, rows = read_correction_csv(path)
    corr = Corrections(path, {r.values["id"]: r for r in rows}, ie_schema)
    for r in rows:
        _action(r, corr.where(r))
        rel = r.values["fixed_relation"].strip()
        if rel and find_relation(ie_schema, rel) is None:
            raise ValueError(f"{corr.where(r)}: unknown relation {rel!r} in fixed_relation (an IE relation's key, "
                             f"zh or en name, e.g. {_examples(ie_schema)})")
    return corr


def apply_corrections(candidates: Iterable[Candidate], path: str | Path, ie_schema: Mapping[str, Any],
                      lang_of: LangOf | None = None, documents_by_id: Mapping[str, Document] | None = None,
                      kg: KnowledgeGraph | None = None) -> tuple[list[Candidate], CorrectionStats]:
    """Apply a reviewed correction CSV: ``keep`` leaves a candidate, ``drop`` marks it
    ``dropped_by="human"`` (``drop_reason``: the note), ``fix`` changes its relation and/or head
    and tail (see the module docstring). Actions are case-insensitive and may carry spaces.
    Returns corrected copies (same order) and the counts. A row whose id no candidate has
    raises, as does every other problem: ``ValueError("<path>:<line>: <what>")``."""
    corr = load_corrections(path, ie_schema)
    cands = list(candidates)
    known = {c.id for c in cands}
    for r in corr.rows.values():
        if r.values["id"] not in known:
            raise ValueError(f"{corr.where(r)}: unknown id {r.values['id']!r} (no such candidate)")
    return corr.apply(cands, lang_of, documents_by_id, kg)


# ====================================================================== simulation ====
def _kg_triple(values: Mapping[str, str], ie_schema: Mapping[str, Any]) -> tuple[str, str, str] | None:
    name = find_relation(ie_schema, values["relation"])
    if name is None:
        return None
    spec = ie_schema["relations"][name]
    h, t = values["head_id"], values["tail_id"]
    return (t, spec["kg_relation"], h) if spec["reverse"] else (h, spec["kg_relation"], t)


def _split_id(cid: str) -> tuple[str, int]:
    doc_id, sent, _k = cid.rsplit(":", 2)
    return doc_id, int(sent)


def simulate_corrections(path: str | Path, documents_by_id: Mapping[str, Document], n_drop: int, n_fix: int,
                         seed: int = 0, ie_schema: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
    """Play the reviewer on the sample world: rewrite the exported CSV at ``path`` (atomically)
    with ``n_fix`` wrong rows fixed — rows whose triple is not in the sentence's gold while the
    gold relates the same two entities otherwise (the fix names that relation, in the document's
    language, and swaps head/tail text when the right relation reads the other way; rows whose
    right triple no other row of the sentence holds are fixed first — elsewhere the fix only
    duplicates a row, worth what a drop is) — and
    ``n_drop`` other wrong rows marked ``drop``. Only rows of annotated sentences are touched;
    fewer are changed when fewer qualify. Returns one dict per changed row (``id``, ``action``,
    ``fixed_relation``, ``fixed_head_text``, ``fixed_tail_text``, ``note``)."""
    ie_schema = _schema(ie_schema)
    header, rows = read_correction_csv(path)
    rng = random.Random(seed)
    wrong, fixable = [], []
    present: dict[str, set[tuple[str, str, str]]] = {}   # sentence → the triples its rows already hold
    for r in rows:
        triple = _kg_triple(r.values, ie_schema)
        if triple is not None and r.values["id"].count(":") >= 2:
            present.setdefault(r.values["id"].rsplit(":", 1)[0], set()).add(triple)
    for r in rows:
        v = r.values
        try:
            doc_id, idx = _split_id(v["id"])
        except ValueError:
            continue
        doc = documents_by_id.get(doc_id)
        if doc is None or not 0 <= idx < len(doc.sentences) or doc.sentences[idx].gold is None:
            continue
        triple = _kg_triple(v, ie_schema)
        gold = doc.sentences[idx].gold
        if triple is None or triple in gold:
            continue
        pair = {v["head_id"], v["tail_id"]}
        fix = None
        for gh, gr, gt in sorted(gold):
            if {gh, gt} != pair:
                continue
            for name, spec in ie_schema["relations"].items():
                if spec["kg_relation"] != gr:
                    continue
                ih, it = (gt, gh) if spec["reverse"] else (gh, gt)
                if ih.split("/", 1)[0] in spec["head"] and it.split("/", 1)[0] in spec["tail"]:
                    fix = {"fixed_relation": spec[doc.lang],
                           "_new": (gh, gr, gt) not in present.get(v["id"].rsplit(":", 1)[0], ())}
                    if ih != v["head_id"]:
                        fix["fixed_head_text"], fix["fixed_tail_text"] = v["tail_text"], v["head_text"]
                    break
            if fix:
                break
        (fixable if fix else wrong).append((r, fix))
    changed: list[dict[str, str]] = []
    # rows whose right triple no other row states first (those fixes add a true fact), then the rest
    fresh = [x for x in fixable if x[1]["_new"]]
    picked_fix = rng.sample(fresh, min(n_fix, len(fresh)))
    dup = [x for x in fixable if not x[1]["_new"]]
    picked_fix += rng.sample(dup, min(n_fix - len(picked_fix), len(dup)))
    for _, fix in fixable:
        del fix["_new"]
    fixed_ids = {r.values["id"] for r, _ in picked_fix}
    rest = wrong + [x for x in fixable if x[0].values["id"] not in fixed_ids]
    rest.sort(key=lambda x: x[0].line)
    picked_drop = rng.sample(rest, min(n_drop, len(rest)))
    for r, fix in picked_fix:
        r.values.update({"action": "fix", **fix, "note": "simulated: the gold states another relation"})
        changed.append({"id": r.values["id"], "action": "fix", **{k: r.values[k] for k in FIXED},
                        "note": r.values["note"]})
    for r, _ in picked_drop:
        r.values.update({"action": "drop", "note": "simulated: the sentence does not state it"})
        changed.append({"id": r.values["id"], "action": "drop", **{k: r.values[k] for k in FIXED},
                        "note": r.values["note"]})
    write_rows((r.values for r in rows), path, header)
    changed.sort(key=lambda d: d["id"])
    return changed


__all__ = ["COLUMNS", "ACTIONS", "HUMAN", "correction_rows", "write_rows", "export_corrections", "CSVRow",
           "read_correction_csv", "CorrectionStats", "Corrections", "load_corrections", "apply_corrections",
           "simulate_corrections"]
