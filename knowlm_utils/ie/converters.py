"""Converters from standard information-extraction corpora into :class:`~.annotation.Annotation`.

Five source formats, each read as a stream (one record in memory at a time, never a list of the
file), each with a small sample in ``data_samples/ie_formats/``:

=================  ======  =====================================================================
``fmt``            lang    source format
=================  ======  =====================================================================
``conll2003``      en      CoNLL-2003 NER: ``token POS chunk NER`` per line, blank line between
                           sentences, ``-DOCSTART-`` lines, IOB1 tags (``I-`` may start an
                           entity; ``B-`` only splits two adjacent entities of one type)
``peoples_daily``  zh      People's Daily NER: ``char tag`` per line, character-level BIO, blank
                           line between sentences
``duie``           zh      DuIE 2.0 JSON lines: ``{"text", "spo_list": [{"predicate", "subject",
                           "subject_type", "object", "object_type"}]}``
``duee``           zh      DuEE 1.0 JSON lines: ``{"id", "text", "event_list": [{"event_type",
                           "trigger", "trigger_start_index", "arguments": [{"role", "argument",
                           "argument_start_index"}]}]}``
``iepile``         zh/en   IEPile ``sample.json`` records: ``{"text", "entity": [{"entity",
                           "entity_type"}]}``, ``{"text", "relation": [{"head", "relation",
                           "tail"[, "head_type", "tail_type"]}]}`` or ``{"text", "event":
                           [{"event_type", "event_trigger", "arguments": [{"argument", "role"}]}]}``
=================  ======  =====================================================================

Every record becomes one :class:`Annotation` with ``id = "<file stem>:<line>"`` and
``source = "<fmt>:<file name>:<line>"``, where ``<line>`` is the first line of the record (of the
sentence, for the BIO formats). Entity types of the BIO formats are mapped to readable names by
:data:`CONLL2003_TYPES` and :data:`PEOPLES_DAILY_TYPES` (``type_map=None`` keeps the raw tags).
Exact duplicates (the same entity, triple or event twice in one record) are kept once, in order of
first appearance.

Bad input is never lost silently. With ``errors="raise"`` (the default) the first malformed record
raises :class:`ConversionError` (a ``ValueError``) whose message is one line,
``FILE:LINE: REASON: what is wrong``; with ``errors="skip"`` the record is skipped and counted in
the :class:`ConversionStats` passed as ``stats=`` (reason → count, with the first few
``file:line`` of each). A UTF-8 BOM at the start of the file is dropped, ``\\r\\n`` line ends are
fine, and a last sentence without a trailing blank line is still converted. The real corpora are
never downloaded by this code; point a reader at your copy.

Usage::

    stats = ConversionStats()
    for ann in read_annotations("train.jsonl", "duie", errors="skip", stats=stats):
        ...
    print(stats)   # "1000 records read, 998 converted, 2 skipped: span_not_in_text 2 (first at train.jsonl:17)"
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping, Union

from .annotation import Annotation, Argument, Entity, Event, Relation

Source = Union[str, "os.PathLike[str]", IO[bytes]]

#: CoNLL-2003 tag types → readable English names (``type_map=None`` keeps ``PER`` …).
CONLL2003_TYPES: dict[str, str] = {"PER": "person", "LOC": "location", "ORG": "organization",
                                   "MISC": "miscellaneous"}
#: People's Daily (MSRA-style) tag types → Chinese names (``type_map=None`` keeps ``PER`` …).
PEOPLES_DAILY_TYPES: dict[str, str] = {"PER": "人物", "LOC": "地点", "ORG": "机构"}

ERRORS = ("raise", "skip")
SCHEMES = ("iob1", "bio")
UTF8_BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_LINE_BYTES = 16 * 2**20
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class ConversionError(ValueError):
    """One malformed record: ``FILE:LINE: REASON: detail`` on one line."""

    def __init__(self, where: str, reason: str, detail: str):
        self.where, self.reason, self.detail = where, reason, detail
        super().__init__(f"{where}: {reason}: {detail}")


@dataclass
class ConversionStats:
    """What a reader did: records read, converted, skipped by reason (with the first
    ``max_examples`` ``file:line`` of each reason), and records without any annotation field
    (``unlabeled``: converted with no structures, e.g. a test split). Pass one instance as
    ``stats=`` to any reader; it fills while you iterate and may be shared by several files."""

    records: int = 0
    converted: int = 0
    unlabeled: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 5

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        seen = self.examples.setdefault(reason, [])
        if len(seen) < self.max_examples:
            seen.append(where)

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "converted": self.converted, "unlabeled": self.unlabeled,
                "skipped": dict(self.skipped), "examples": {k: list(v) for k, v in self.examples.items()}}

    def __str__(self) -> str:
        parts = ", ".join(f"{r} {n} (first at {self.examples[r][0]})" for r, n in sorted(self.skipped.items()))
        return (f"{self.records} records read, {self.converted} converted, {self.total_skipped} skipped"
                + (f": {parts}" if parts else "") + (f"; {self.unlabeled} unlabeled" if self.unlabeled else ""))


class _Bad(Exception):
    """A malformed record inside a reader (turned into a ConversionError or a counted skip)."""

    def __init__(self, reason: str, detail: str, line: int | None = None):
        super().__init__(reason)
        self.reason, self.detail, self.line = reason, detail, line


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)  # repr escapes newlines: messages stay on one line
    return text if len(text) <= limit else text[: limit - 5] + " …" + text[-3:]


# ------------------------------------------------------------------------------ file input ---
class _Input:
    """One input file or binary stream, read line by line with line numbers."""

    def __init__(self, source: Source, fmt: str, max_line_bytes: int):
        self.source, self.fmt, self.max_line_bytes = source, fmt, max_line_bytes
        if isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
        else:
            self.path = str(getattr(source, "name", "<stream>"))
        self.name = Path(self.path).name
        self.stem = Path(self.path).stem

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"

    def lines(self) -> Iterator[tuple[int, str | None, str]]:
        """Yield ``(line_no, text, problem)``: ``text`` without its line end, or ``None`` with
        the reason (``line_too_long``, ``invalid_utf8``) in ``problem``."""
        if isinstance(self.source, (str, os.PathLike)):
            try:
                fh = open(self.path, "rb")
            except OSError as exc:
                raise ConversionError(self.path, "unreadable_file", exc.strerror or str(exc)) from None
            with fh:
                yield from self._lines(fh)
        else:
            yield from self._lines(self.source)

    def _lines(self, fh: IO[bytes]) -> Iterator[tuple[int, str | None, str]]:
        limit = self.max_line_bytes + 2  # room for "\r\n"
        line_no = 0
        while True:
            raw = fh.readline(limit)
            if not raw:
                return
            line_no += 1
            if isinstance(raw, str):  # a text-mode stream: already decoded
                raw = raw.encode("utf-8", "surrogatepass")
            if len(raw) >= limit and not raw.endswith(b"\n"):
                while True:  # drain the rest of the over-long line without holding it
                    more = fh.readline(limit)
                    if not more or more.endswith(b"\n" if isinstance(more, bytes) else "\n"):
                        break
                yield line_no, None, f"line_too_long: longer than {self.max_line_bytes} bytes"
                continue
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if raw.startswith(UTF8_BOM) and (line_no == 1 or self.fmt in _JSON_FORMATS):
                raw = raw[len(UTF8_BOM):]  # no JSON line can start with one: files joined with cat
            try:
                yield line_no, raw.decode("utf-8"), ""
            except UnicodeDecodeError as exc:
                yield line_no, None, (f"invalid_utf8: byte {raw[exc.start]:#04x} at byte {exc.start + 1} "
                                      "is not valid UTF-8")


def _check_args(errors: str, stats: ConversionStats | None) -> ConversionStats:
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {', '.join(ERRORS)}, not {_short(errors)}")
    if stats is not None and not isinstance(stats, ConversionStats):
        raise ValueError(f"stats must be a ConversionStats, not {type(stats).__name__}")
    return stats if stats is not None else ConversionStats()


def _fail(inp: _Input, bad: _Bad, first_line: int, errors: str, stats: ConversionStats) -> None:
    where = inp.where(bad.line if bad.line is not None else first_line)
    if errors == "raise":
        raise ConversionError(where, bad.reason, bad.detail)
    stats.skip(bad.reason, where)


def _make(inp: _Input, line: int, text: str, lang: str, entities=(), relations=(), events=()) -> Annotation:
    return Annotation(id=f"{inp.stem}:{line}", text=text, lang=lang,
                      entities=list(dict.fromkeys(entities)), relations=list(dict.fromkeys(relations)),
                      events=list(dict.fromkeys(events)), source=f"{inp.fmt}:{inp.name}:{line}")


# ------------------------------------------------------------------------------ BIO formats ---
def _read_bio(inp: _Input, *, n_columns: int, joiner: str, lang: str, type_map: Mapping[str, str] | None,
              scheme: str, errors: str, stats: ConversionStats, docstart: bool) -> Iterator[Annotation]:
    tokens: list[str] = []
    spans: list[list] = []  # [start, end, raw_type]
    first_line = 0
    bad: _Bad | None = None
    current: list | None = None

    def finish() -> Annotation | None:
        nonlocal tokens, spans, bad, current
        stats.records += 1
        ann = None
        if bad is not None:
            _fail(inp, bad, first_line, errors, stats)
        else:
            ents = [Entity(joiner.join(tokens[s:e]), type_map[t] if type_map is not None else t) for s, e, t in spans]
            ann = _make(inp, first_line, joiner.join(tokens), lang, ents)
            stats.converted += 1
        tokens, spans, bad, current = [], [], None, None
        return ann

    def tag_error(line_no: int, reason: str, detail: str) -> None:
        nonlocal bad
        if bad is None:
            bad = _Bad(reason, detail, line_no)

    for line_no, text, problem in inp.lines():
        if text is None:
            if not tokens and bad is None:
                first_line = line_no
            reason, _, detail = problem.partition(": ")
            tag_error(line_no, reason, detail)
            tokens.append("")  # keeps the sentence open until its blank line
            continue
        cols = text.split()
        if not cols:  # blank line: end of sentence
            if tokens or bad is not None:
                ann = finish()
                if ann is not None:
                    yield ann
            continue
        if docstart and cols[0] == "-DOCSTART-":  # document boundary, also ends an open sentence
            if tokens or bad is not None:
                ann = finish()
                if ann is not None:
                    yield ann
            continue
        if not tokens and bad is None:
            first_line = line_no
        index = len(tokens)
        tokens.append(cols[0])
        if bad is not None:
            continue  # the sentence is already lost; read on to its end
        if len(cols) != n_columns:
            tag_error(line_no, "wrong_column_count",
                      f"expected {n_columns} columns separated by whitespace, got {len(cols)}: {_short(text)}")
            continue
        tag = cols[-1]
        if tag == "O":
            current = None
            continue
        prefix, sep, typ = tag.partition("-")
        if not sep or not prefix or not typ:
            tag_error(line_no, "bad_tag", f"tag {_short(tag)} is not O, B-TYPE or I-TYPE")
            continue
        if prefix not in ("B", "I"):
            tag_error(line_no, "unknown_tag_prefix", f"tag {_short(tag)}: prefix {_short(prefix)} is not B or I "
                                                     f"(scheme {scheme})")
            continue
        if type_map is not None and typ not in type_map:
            tag_error(line_no, "unknown_entity_type",
                      f"tag {_short(tag)}: type {_short(typ)} is not in the type map "
                      f"({', '.join(sorted(type_map))}); pass type_map=None to keep raw types")
            continue
        if prefix == "I" and current is not None and current[2] == typ:
            current[1] = index + 1
            continue
        if prefix == "I" and scheme == "bio":
            if current is not None:
                tag_error(line_no, "i_tag_type_mismatch",
                          f"tag {_short(tag)} continues an entity of type {_short(current[2])}")
            else:
                tag_error(line_no, "i_tag_without_begin", f"tag {_short(tag)} follows O or starts the sentence")
            continue
        current = [index, index + 1, typ]  # B-, or IOB1's I- after O / after another type
        spans.append(current)
    if tokens or bad is not None:  # a last sentence without its trailing blank line
        ann = finish()
        if ann is not None:
            yield ann


def read_conll2003(path: Source, *, type_map: Mapping[str, str] | None = CONLL2003_TYPES, scheme: str = "iob1",
                   errors: str = "raise", stats: ConversionStats | None = None,
                   max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Annotation]:
    """English NER from CoNLL-2003 (``token POS chunk NER``, 4 columns). ``scheme="iob1"`` (the
    original CoNLL-2003 tagging, also reads BIO2): ``I-X`` after ``O`` or after another type
    starts an entity. ``scheme="bio"``: ``I-X`` must continue an ``X`` entity (else an error)."""
    stats = _check_args(errors, stats)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {_short(scheme)}")
    return _read_bio(_Input(path, "conll2003", max_line_bytes), n_columns=4, joiner=" ", lang="en",
                     type_map=type_map, scheme=scheme, errors=errors, stats=stats, docstart=True)


def read_peoples_daily(path: Source, *, type_map: Mapping[str, str] | None = PEOPLES_DAILY_TYPES,
                       scheme: str = "bio", errors: str = "raise", stats: ConversionStats | None = None,
                       max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Annotation]:
    """Chinese NER from the People's Daily corpus (``char tag`` per line, 2 columns,
    character-level BIO: ``I-X`` must continue an ``X`` entity unless ``scheme="iob1"``);
    text and entity texts are the characters joined without spaces."""
    stats = _check_args(errors, stats)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {_short(scheme)}")
    return _read_bio(_Input(path, "peoples_daily", max_line_bytes), n_columns=2, joiner="", lang="zh",
                     type_map=type_map, scheme=scheme, errors=errors, stats=stats, docstart=False)


# ----------------------------------------------------------------------------- JSON formats ---
_JSON_FORMATS = ("duie", "duee", "iepile")


def _str(obj: Mapping, key: str, where: str, *, check_text: str | None = None) -> str:
    """``obj[key]`` as a non-empty string (``where`` names the object in messages); with
    ``check_text``, the string must occur in that text."""
    if key not in obj:
        raise _Bad("missing_field", f"{where}: no field {_short(key)}")
    value = obj[key]
    if not isinstance(value, str):
        raise _Bad("wrong_type", f"{where}: field {_short(key)} is {type(value).__name__}, not str")
    if not value.strip():
        raise _Bad("empty_field", f"{where}: field {_short(key)} is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Bad("invalid_text", f"{where}: field {_short(key)} has a lone surrogate U+{ord(value[exc.start]):04X} "
                                   f"(a \\u escape that is not a valid pair)") from None
    if check_text is not None and value not in check_text:
        raise _Bad("span_not_in_text", f"{where}: {key} {_short(value)} does not occur in the text")
    return value


def _list(obj: Mapping, key: str, where: str) -> list | None:
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if not isinstance(value, list):
        raise _Bad("wrong_type", f"{where}field {_short(key)} is {type(value).__name__}, not a list")
    return value


def _obj(value: Any, where: str) -> Mapping:
    if not isinstance(value, dict):
        raise _Bad("wrong_type", f"{where} is {type(value).__name__}, not an object")
    return value


def _span(text: str, value: str, index: Any, where: str, key: str) -> None:
    if isinstance(index, bool) or not isinstance(index, int):
        raise _Bad("wrong_type", f"{where}: field {_short(key)} is {type(index).__name__}, not int")
    if index < 0 or text[index:index + len(value)] != value:
        found = text[index:index + len(value)] if 0 <= index < len(text) else "<outside the text>"
        raise _Bad("span_mismatch", f"{where}: {_short(value)} is not at {key} {index} "
                                    f"(the text there is {_short(found)})")


def _read_json(inp: _Input, convert: Callable[[_Input, int, dict], Annotation | None], errors: str,
               stats: ConversionStats) -> Iterator[Annotation]:
    for line_no, text, problem in inp.lines():
        if text is not None and not text.strip():
            continue  # blank lines are not records
        stats.records += 1
        try:
            if text is None:
                reason, _, detail = problem.partition(": ")
                raise _Bad(reason, detail)
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _Bad("invalid_json", f"{exc.msg} at column {exc.colno}") from None
            except (ValueError, RecursionError) as exc:  # 5000-digit numbers, 100k-deep nesting
                raise _Bad("invalid_json", _short(str(exc) or type(exc).__name__, 120)) from None
            if not isinstance(obj, dict):
                raise _Bad("not_an_object", f"the line is a JSON {type(obj).__name__}, not an object")
            ann = convert(inp, line_no, obj)
        except _Bad as bad:
            _fail(inp, bad, line_no, errors, stats)
            continue
        if not (ann.entities or ann.relations or ann.events) and _unlabeled(inp.fmt, obj):
            stats.unlabeled += 1
        stats.converted += 1
        yield ann


def _unlabeled(fmt: str, obj: Mapping) -> bool:
    keys = {"duie": ("spo_list",), "duee": ("event_list",), "iepile": ("entity", "relation", "event")}[fmt]
    return not any(k in obj for k in keys)


def _text(obj: Mapping) -> str:
    return _str(obj, "text", "record")


def _duie(inp: _Input, line: int, obj: dict) -> Annotation:
    text = _text(obj)
    entities, relations = [], []
    for i, spo in enumerate(_list(obj, "spo_list", "") or []):
        where = f"spo_list[{i}]"
        spo = _obj(spo, where)
        predicate = _str(spo, "predicate", where)
        subject = _str(spo, "subject", where, check_text=text)
        subject_type = _str(spo, "subject_type", where)
        obj_value, obj_type = spo.get("object"), spo.get("object_type")
        if "object" not in spo:
            raise _Bad("missing_field", f"{where}: no field 'object'")
        if "object_type" not in spo:
            raise _Bad("missing_field", f"{where}: no field 'object_type'")
        # DuIE 2.0 writes {"@value": ...} (plus slots such as "inWork" for n-ary predicates);
        # DuIE 1.0 and many derived sets write plain strings.
        values = {"@value": obj_value} if isinstance(obj_value, str) else dict(_obj(obj_value, f"{where}.object"))
        types = {"@value": obj_type} if isinstance(obj_type, str) else dict(_obj(obj_type, f"{where}.object_type"))
        if "@value" not in values:
            raise _Bad("missing_field", f"{where}.object: no field '@value'")
        entities.append(Entity(subject, subject_type))
        for slot in ["@value", *sorted(k for k in values if k != "@value")]:
            value = _str(values, slot, f"{where}.object", check_text=text)
            if slot not in types:
                raise _Bad("missing_field", f"{where}.object_type: no type for slot {_short(slot)}")
            entities.append(Entity(value, _str(types, slot, f"{where}.object_type")))
            relations.append(Relation(subject, predicate if slot == "@value" else f"{predicate}@{slot}", value))
    return _make(inp, line, text, "zh", entities, relations)


def _duee(inp: _Input, line: int, obj: dict) -> Annotation:
    text = _text(obj)
    events = []
    for i, ev in enumerate(_list(obj, "event_list", "") or []):
        where = f"event_list[{i}]"
        ev = _obj(ev, where)
        event_type = _str(ev, "event_type", where)
        trigger = _str(ev, "trigger", where, check_text=text)
        if "trigger_start_index" in ev:
            _span(text, trigger, ev["trigger_start_index"], where, "trigger_start_index")
        args = []
        for j, arg in enumerate(_list(ev, "arguments", f"{where}: ") or []):
            awhere = f"{where}.arguments[{j}]"
            arg = _obj(arg, awhere)
            role = _str(arg, "role", awhere)
            value = _str(arg, "argument", awhere, check_text=text)
            if "argument_start_index" in arg:
                _span(text, value, arg["argument_start_index"], awhere, "argument_start_index")
            args.append(Argument(role, value))
        events.append(Event(trigger, event_type, tuple(args)))
    return _make(inp, line, text, "zh", events=events)


def _iepile(inp: _Input, line: int, obj: dict, lang: str | None = None) -> Annotation:
    text = _text(obj)
    entities, relations, events = [], [], []
    for i, ent in enumerate(_list(obj, "entity", "") or []):
        where = f"entity[{i}]"
        ent = _obj(ent, where)
        entities.append(Entity(_str(ent, "entity", where, check_text=text), _str(ent, "entity_type", where)))
    for i, rel in enumerate(_list(obj, "relation", "") or []):
        where = f"relation[{i}]"
        rel = _obj(rel, where)
        head = _str(rel, "head", where, check_text=text)
        relation = _str(rel, "relation", where)
        tail = _str(rel, "tail", where, check_text=text)
        relations.append(Relation(head, relation, tail))
        if "head_type" in rel:  # the SPO task's typed variant
            entities.append(Entity(head, _str(rel, "head_type", where)))
        if "tail_type" in rel:
            entities.append(Entity(tail, _str(rel, "tail_type", where)))
    for i, ev in enumerate(_list(obj, "event", "") or []):
        where = f"event[{i}]"
        ev = _obj(ev, where)
        event_type = _str(ev, "event_type", where)
        trigger = _str(ev, "event_trigger", where, check_text=text)
        args = []
        for j, arg in enumerate(_list(ev, "arguments", f"{where}: ") or []):
            awhere = f"{where}.arguments[{j}]"
            arg = _obj(arg, awhere)
            args.append(Argument(_str(arg, "role", awhere), _str(arg, "argument", awhere, check_text=text)))
        events.append(Event(trigger, event_type, tuple(args)))
    return _make(inp, line, text, lang or ("zh" if _CJK.search(text) else "en"), entities, relations, events)


def read_duie(path: Source, *, errors: str = "raise", stats: ConversionStats | None = None,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Annotation]:
    """Chinese RE from DuIE JSON lines: one :class:`Relation` per ``spo_list`` item (an n-ary
    DuIE 2.0 object such as ``{"@value": "角色", "inWork": "影片"}`` gives one relation per slot,
    ``predicate@slot`` for the extra ones), subjects and objects as typed entities. Every subject
    and object must occur in the text."""
    stats = _check_args(errors, stats)
    return _read_json(_Input(path, "duie", max_line_bytes), _duie, errors, stats)


def read_duee(path: Source, *, errors: str = "raise", stats: ConversionStats | None = None,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Annotation]:
    """Chinese EE from DuEE 1.0 JSON lines: one :class:`Event` per ``event_list`` item; the
    trigger and each argument must be at their ``*_start_index`` (when given), else an error."""
    stats = _check_args(errors, stats)
    return _read_json(_Input(path, "duee", max_line_bytes), _duee, errors, stats)


def read_iepile(path: Source, *, lang: str | None = None, errors: str = "raise",
                stats: ConversionStats | None = None,
                max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Annotation]:
    """IEPile ``sample.json`` records (NER ``entity``, RE/SPO ``relation``, EE/EET/EEA
    ``event``; several keys in one record are all read). ``lang`` is detected per record (zh if
    the text has a CJK ideograph, else en) unless given. Every span must occur in the text."""
    stats = _check_args(errors, stats)
    if lang is not None and lang not in ("zh", "en"):
        raise ValueError(f"lang must be zh, en or None, not {_short(lang)}")
    return _read_json(_Input(path, "iepile", max_line_bytes),
                      lambda inp, line, obj: _iepile(inp, line, obj, lang), errors, stats)


#: Format name → reader; every reader takes ``(path, *, errors=, stats=, max_line_bytes=)``.
FORMATS: dict[str, Callable[..., Iterator[Annotation]]] = {
    "conll2003": read_conll2003,
    "peoples_daily": read_peoples_daily,
    "duie": read_duie,
    "duee": read_duee,
    "iepile": read_iepile,
}


def read_annotations(path: Source, fmt: str, *, errors: str = "raise", stats: ConversionStats | None = None,
                     **options: Any) -> Iterator[Annotation]:
    """Stream the annotations of one file in format ``fmt`` (a key of :data:`FORMATS`);
    ``options`` go to that reader (``type_map``, ``scheme``, ``lang``, ``max_line_bytes``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown IE format {_short(fmt)}; known formats: {', '.join(FORMATS)}")
    return FORMATS[fmt](path, errors=errors, stats=stats, **options)


__all__ = ["CONLL2003_TYPES", "PEOPLES_DAILY_TYPES", "FORMATS", "ConversionError", "ConversionStats",
           "read_annotations", "read_conll2003", "read_peoples_daily", "read_duie", "read_duee", "read_iepile"]
