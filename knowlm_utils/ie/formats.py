"""Output formats of the IE instructions: one formatter and one tolerant parser per task × format.

Two styles (``FORMATS`` lists the names per task; ``lang`` only picks the labels a formatter writes,
parsers accept the labels of both languages):

KG2Instruction text style — one item per line, an empty answer is ``NAN``:

- ``tuple``:   NER ``(黄河,河流)`` · RE ``(北京,位于,中国)`` · EE ``(生于,出生,1990年#时间;北京#地点)``
- ``labeled``: NER ``实体是黄河,实体类型是河流`` (en ``entity is 黄河, entity type is 河流``) ·
  RE ``头实体是北京,关系是位于,尾实体是中国`` (en ``head is …, relation is …, tail is …``) ·
  EE ``事件触发词是生于,事件类型是出生,论元1是1990年,论元角色1是时间`` (en ``event trigger is …,
  event type is …, argument1 is …, role1 is …``)
- ``grouped``: NER ``河流：黄河,长江`` (one line per type) · RE ``位于：北京,中国;上海,中国`` (one line per
  relation) · EE ``出生：生于;时间：1990年;地点：北京`` (one line per event); en writes ``: ``
- ``dict``:    NER ``{'entity':'黄河','type':'河流'}`` · RE ``{'head':'北京','relation':'位于','tail':'中国'}`` ·
  EE ``{'trigger':'生于','type':'出生','arguments':[{'argument':'1990年','role':'时间'}]}``

EE arguments are written argument first, then role (``论元#角色``), as the instruction text says.
An event without arguments is ``(生于,出生,NAN)``; a missing trigger is written ``""`` (and ``NAN`` in
the trigger field parses as ``""``, as in IEPile).

IEPile/OneKE JSON style (``iepile``): a JSON object keyed by the schema in its order, every schema type
present (``[]`` when nothing was found): ``{"人物": ["张三"], "地点": []}``,
``{"位于": [{"subject": "北京", "object": "中国"}]}``,
``{"出生": [{"trigger": "生于", "arguments": {"时间": "1990年", "地点": "北京"}}]}`` (a role with several
arguments holds a list). ``iepile_instruction`` writes the instruction side, ``split_schema`` the chunks.

Round trip: ``parse_output(t, f, format_output(t, f, x)).items == canonical_items(t, f, x)``, which is
``x`` without duplicates (first kept) — regrouped by type for ``grouped`` NER/RE (types in order of first
appearance) and ordered by the schema for ``iepile`` (EE arguments grouped by role there).

Quoting rules (text formats). A value is written bare unless it (a) is empty, (b) has leading or trailing
whitespace, (c) contains one of ``( ) [ ] { } , ; : # 、 ' "``, a full-width ``（ ） 【 】 ［ ］ ｛ ｝ ， ； ：
＃``, ``\\n`` or ``\\r``, or (d) equals, ignoring case, an empty marker (``NAN``, ``None``, ``null``, ``无``)
or an answer prefix word (``答案``, ``Answer`` …). Such a value is written in double quotes with backslash
escapes for ``\\`` ``"`` newline, carriage return and tab: ``("Washington, D.C.",城市)``. The dict format
always quotes, with single quotes and the same escapes. A quote opens a quoted value only when a
matching closing quote on the same line is followed by a separator or the end of the line, so a bare
``O'Brien`` from a model stays a plain value. IEPile: JSON strings represent everything, but an empty or
``NAN``-like entity, subject, object, argument or role means "nothing" there, so ``format_output`` raises
a ValueError naming such a value.

Tolerance (what models emit): a leading ``答案：``/``Answer:``, text after the answer (lines that are
not items are kept in ``ParseResult.ignored``), full-width punctuation and mixed brackets (``（…)``),
extra spaces, ``NAN``/``nan``/``无``/``None`` as empty, several items on one line, single or double
quotes, JSON with single quotes or trailing commas (a small parser, never ``eval``), duplicates (first
kept). Fragments that look like items but cannot be read go to ``ParseResult.unparsed``; ``.ok`` is True
when there are none. ``strict=True`` raises a ValueError naming the first unparsed or ignored fragment.
An item with a bare ``NAN``/empty field (``(NAN,NAN)``) says "nothing" and is skipped without a count.
With ``schema`` given, ``grouped`` lines and ``iepile`` keys of types outside it are ignored; without
it, an explanation line of the form ``说明：…`` reads as a ``grouped`` item (pass the schema).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .annotation import LANGS, TASKS, Argument, Entity, Event, Relation

TEXT_FORMATS = ("tuple", "labeled", "grouped", "dict")
FORMATS: dict[str, tuple[str, ...]] = {task: TEXT_FORMATS + ("iepile",) for task in TASKS}
DEFAULT_SPLIT_NUM = {"NER": 6, "RE": 4, "EE": 4}
NAN = "NAN"

Item = Entity | Relation | Event

# ------------------------------------------------------------------ the table of formats --
_ITEM_CLASS = {"NER": Entity, "RE": Relation, "EE": Event}
#: scalar fields per task; index 1 is always the type (the key of ``grouped`` and ``iepile``)
_FIELDS = {"NER": ("text", "type"), "RE": ("head", "relation", "tail"), "EE": ("trigger", "type")}
#: labels of the ``labeled`` format, zh then en (parsers also accept the aliases)
_LABELS = {"NER": (("实体", "entity"), ("实体类型", "entity type")),
           "RE": (("头实体", "head"), ("关系", "relation"), ("尾实体", "tail")),
           "EE": (("事件触发词", "event trigger"), ("事件类型", "event type"))}
_LABEL_ALIASES = {("RE", 0): ("subject", "主体"), ("RE", 2): ("object", "客体"), ("EE", 0): ("trigger",),
                  ("EE", 1): ("event type",)}
_ARG_LABELS = (("论元", "argument"), ("论元角色", "role"))
#: keys of the ``dict`` format and the aliases a parser accepts
_DICT_KEYS = {"NER": ("entity", "type"), "RE": ("head", "relation", "tail"), "EE": ("trigger", "type")}
_DICT_ALIASES = {"entity": ("entity", "text", "name"), "type": ("type", "entity_type", "event_type"),
                 "head": ("head", "subject"), "relation": ("relation", "predicate"), "tail": ("tail", "object"),
                 "trigger": ("trigger", "event_trigger"), "argument": ("argument", "text", "name"),
                 "role": ("role",)}
_IEPILE_PAIR = ("subject", "object")

# ------------------------------------------------------------------ characters and quoting --
_EMPTY_WORDS = {"", "nan", "none", "null", "无"}
_PREFIX_WORDS = ("答案", "回答", "输出", "结果", "answer", "output", "result")
_RESERVED = _EMPTY_WORDS | set(_PREFIX_WORDS)
_SQ = "'"
_QUOTES = _SQ + '"'
_STRUCTURAL = set("()[]{},;:#、（）【】［］｛｝，；：＃")
_SPECIAL = _STRUCTURAL | set(_QUOTES) | {"\n", "\r"}
_PREFIX_RE = re.compile(r"^\s*(?:%s)\s*[:：]\s*" % "|".join(_PREFIX_WORDS), re.IGNORECASE)
_LINE_RE = re.compile(r"\r\n|\r|\n")
_COMMA, _SEMI, _COLON, _HASH = ",，", ";；", ":：", "#＃"
_OPEN_PAREN, _CLOSE_PAREN, _OPEN_BRACE, _CLOSE_BRACE = "(（", ")）", "{｛", "}｝"
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "/": "/"}
_MAX_DEPTH = 32


def _is_empty(value: str) -> bool:
    return value.strip().lower() in _EMPTY_WORDS


def _needs_quote(value: str) -> bool:
    return (value != value.strip() or value.lower() in _RESERVED or any(c in _SPECIAL for c in value))


def _quoted(value: str, quote: str = '"') -> str:
    body = (value.replace("\\", "\\\\").replace(quote, "\\" + quote)
            .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return quote + body + quote


def _q(value: str) -> str:
    """A value of a text format: bare when that is unambiguous, else double-quoted."""
    return _quoted(value) if _needs_quote(value) else value


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\" or i + 1 == len(body):
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        width = {"x": 2, "u": 4, "U": 8}.get(nxt)
        if width and re.fullmatch(r"[0-9a-fA-F]{%d}" % width, body[i + 2:i + 2 + width]):
            out.append(chr(min(int(body[i + 2:i + 2 + width], 16), 0x10FFFF)))
            i += 2 + width
        else:
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
    text = "".join(out)
    try:  # JSON writes characters beyond the BMP as surrogate pairs
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeError:
        return text


def _string_end(s: str, i: int) -> int | None:
    """If ``s[i]`` opens a quoted string, the index after its closing quote: the first unescaped
    same quote on the line that is followed (after spaces) by a separator or the end; else None."""
    quote, j = s[i], i + 1
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c in "\r\n":
            return None
        if c == quote:
            k = j + 1
            while k < len(s) and s[k] in " \t":
                k += 1
            if k == len(s) or s[k] in _STRUCTURAL or s[k] in "\r\n":
                return j + 1
        j += 1
    return None


class _Quotes:
    """Finds quoted strings in one text; once a quote character failed to open a string, later ones
    of that character on the same line fail too, so scanning stays linear."""

    def __init__(self, s: str):
        self.s, self.failed = s, {q: -1 for q in _QUOTES}

    def end(self, i: int) -> int | None:
        c = self.s[i]
        if c not in _QUOTES or i < self.failed[c]:
            return None
        end = _string_end(self.s, i)
        if end is None:
            newline = _LINE_RE.search(self.s, i)
            self.failed[c] = newline.start() if newline else len(self.s)
        return end


def _split(s: str, seps: str, maxsplit: int = -1) -> list[str]:
    """Split at top-level separator characters, never inside a quoted string."""
    parts, start, i, quotes = [], 0, 0, _Quotes(s)
    while i < len(s):
        c = s[i]
        if (end := quotes.end(i)) is not None:
            i = end
            continue
        if c in seps and maxsplit != 0:
            parts.append(s[start:i])
            start, maxsplit = i + 1, maxsplit - 1
        i += 1
    parts.append(s[start:])
    return parts


def _value(piece: str) -> str | None:
    """A field's value: a quoted string decoded, a bare one stripped; None for an empty marker."""
    piece = piece.strip()
    if piece and piece[0] in _QUOTES and _string_end(piece, 0) == len(piece):
        return _unescape(piece[1:-1])
    return None if _is_empty(piece) else piece


def _groups(line: str, opens: str, closes: str) -> tuple[list[str], list[str], list[str]]:
    """Top-level bracketed groups of a line (brackets may be mixed ASCII/full-width): their inner
    texts, the unclosed remainder if any, and the text outside the groups."""
    groups, outside, depth, start, last = [], [], 0, 0, 0
    i, quotes = 0, _Quotes(line)
    while i < len(line):
        c = line[i]
        if depth and (end := quotes.end(i)) is not None:
            i = end
            continue
        if c in opens:
            if depth == 0:
                outside.append(line[last:i])
                start = i
            depth += 1
        elif c in closes and depth:
            depth -= 1
            if depth == 0:
                groups.append(line[start + 1:i])
                last = i + 1
        i += 1
    unclosed = [line[start:]] if depth else []
    if not depth:
        outside.append(line[last:])
    return groups, unclosed, outside


# ------------------------------------------------------------------ a small literal parser --
class _LiteralError(ValueError):
    pass


class _Literal:
    """JSON plus what models write instead: single quotes, trailing commas, full-width ``，：｛｝``,
    bare words (``null``/``None`` → None, others → their text). Never evaluates anything."""

    _OPEN = {"{": "}", "｛": "}", "[": "]", "［": "]", "【": "]", "(": ")", "（": ")"}
    _CLOSE_EQ = {"}": "}｝", "]": "]］】", ")": ")）"}

    def __init__(self, text: str):
        self.s = text

    def _ws(self, i: int) -> int:
        while i < len(self.s) and self.s[i].isspace():
            i += 1
        return i

    def parse(self, i: int = 0, depth: int = 0) -> tuple[Any, int]:
        if depth > _MAX_DEPTH:
            raise _LiteralError("nested too deeply")
        i = self._ws(i)
        if i >= len(self.s):
            raise _LiteralError("unexpected end")
        c = self.s[i]
        if c in self._OPEN:
            return self._container(i + 1, self._OPEN[c], c in "{｛", depth)
        if c in _QUOTES:
            end = _string_end(self.s, i)
            if end is None:
                raise _LiteralError(f"unterminated string at {i}")
            return _unescape(self.s[i + 1:end - 1]), end
        j = i
        while j < len(self.s) and self.s[j] not in _STRUCTURAL and self.s[j] not in "\r\n":
            j += 1
        word = self.s[i:j].strip()
        if not word:
            raise _LiteralError(f"unexpected {c!r} at {i}")
        return (None if word.lower() in _EMPTY_WORDS else word), j

    def _container(self, i: int, close: str, is_obj: bool, depth: int) -> tuple[Any, int]:
        out: Any = {} if is_obj else []
        while True:
            i = self._ws(i)
            if i < len(self.s) and self.s[i] in self._CLOSE_EQ[close]:
                return out, i + 1
            if is_obj:
                key, i = self.parse(i, depth + 1)
                i = self._ws(i)
                if i >= len(self.s) or self.s[i] not in _COLON or not isinstance(key, str):
                    raise _LiteralError(f"expected a string key and ':' at {i}")
                out[key], i = self.parse(i + 1, depth + 1)
            else:
                value, i = self.parse(i, depth + 1)
                out.append(value)
            i = self._ws(i)
            if i < len(self.s) and self.s[i] in _COMMA:
                i += 1
            elif i >= len(self.s) or self.s[i] not in self._CLOSE_EQ[close]:
                raise _LiteralError(f"expected ',' or {close!r} at {i}")


def _literal(text: str) -> Any:
    value, end = _Literal(text).parse()
    if text[end:].strip():
        raise _LiteralError(f"trailing text at {end}")
    return value


# ------------------------------------------------------------------ items and records --
def _check(task: str, fmt: str | None = None) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    if fmt is not None and fmt not in FORMATS[task]:
        raise ValueError(f"unknown format {fmt!r} for {task}; allowed: {', '.join(FORMATS[task])}")


def _fields(task: str, item: Item) -> tuple[str, ...]:
    return tuple(getattr(item, name) for name in _FIELDS[task])


def _make(task: str, fields: Sequence[str | None], args: Iterable[tuple[str, str]] = ()) -> Item | None:
    """The item of these fields, or None when a required field is empty (``NAN``): such an item
    says "nothing here" and is skipped. An empty EE trigger is allowed (trigger-less events)."""
    if task == "EE":
        fields = ("" if fields[0] is None else fields[0], fields[1])
    if any(f is None for f in fields):
        return None
    if task == "EE":
        return Event(fields[0], fields[1], tuple(Argument(role, text) for text, role in args))
    return _ITEM_CLASS[task](*fields)


def _dedup(items: Iterable[Item]) -> list[Item]:
    return list(dict.fromkeys(items))


def schema_key(entry: Any) -> str | None:
    """The answer key of a schema entry: the entry itself, or a dict entry's ``event_type`` (else
    ``type``); None when there is no type name."""
    key = entry.get("event_type", entry.get("type")) if isinstance(entry, dict) else entry
    return key if isinstance(key, str) else None


def _schema_keys(task: str, schema: Sequence[Any] | None, items: Sequence[Item]) -> list[str]:
    if schema is None:
        return list(dict.fromkeys(_fields(task, it)[1] for it in items))
    keys = []
    for s in schema:
        key = schema_key(s)
        if key is None:
            raise ValueError(f"schema entry {s!r} is not a type name")
        keys.append(key)
    return keys


def canonical_items(task: str, fmt: str, items: Iterable[Item], schema: Sequence[Any] | None = None) -> list[Item]:
    """What ``parse_output(task, fmt, format_output(task, fmt, items))`` gives back: the items
    without duplicates, regrouped the way the format writes them."""
    _check(task, fmt)
    items = list(items)
    for it in items:
        if not isinstance(it, _ITEM_CLASS[task]):
            raise ValueError(f"{task} formats write {_ITEM_CLASS[task].__name__} items, not {it!r}")
    items = _dedup(items)
    if fmt == "grouped" and task != "EE":
        first = {k: n for n, k in reversed(list(enumerate(_fields(task, it)[1] for it in items)))}
        items.sort(key=lambda it: first[_fields(task, it)[1]])
    elif fmt == "iepile":
        keys = _schema_keys(task, schema, items)
        for it in items:
            if _fields(task, it)[1] not in keys:
                raise ValueError(f"type {_fields(task, it)[1]!r} of {it!r} is not in the schema {keys!r}")
        items.sort(key=lambda it: keys.index(_fields(task, it)[1]))
        if task == "EE":
            items = _dedup(Event(ev.trigger, ev.type, _by_role(ev.arguments)) for ev in items)
    return items


def _by_role(arguments: Sequence[Argument]) -> tuple[Argument, ...]:
    roles = list(dict.fromkeys(a.role for a in arguments))
    return tuple(sorted(arguments, key=lambda a: roles.index(a.role)))


# ------------------------------------------------------------------ formatters --
def _label(task: str, index: int, lang: str) -> str:
    return _LABELS[task][index][LANGS.index(lang)]


def _labeled(label: str, value: str, lang: str) -> str:
    return f"{label}是{_q(value)}" if lang == "zh" else f"{label} is {_q(value)}"


def _write_tuple(task: str, it: Item, lang: str) -> str:
    parts = [_q(f) for f in _fields(task, it)]
    if task == "EE":
        parts.append(";".join(f"{_q(a.text)}#{_q(a.role)}" for a in it.arguments) or NAN)
    return "(" + ",".join(parts) + ")"


def _write_labeled(task: str, it: Item, lang: str) -> str:
    parts = [_labeled(_label(task, n, lang), f, lang) for n, f in enumerate(_fields(task, it))]
    if task == "EE":
        arg_label, role_label = (pair[LANGS.index(lang)] for pair in _ARG_LABELS)
        for n, a in enumerate(it.arguments, 1):
            parts += [_labeled(f"{arg_label}{n}", a.text, lang), _labeled(f"{role_label}{n}", a.role, lang)]
    return ("," if lang == "zh" else ", ").join(parts)


def _write_dict(task: str, it: Item, lang: str) -> str:
    parts = [f"'{k}':{_quoted(v, _SQ)}" for k, v in zip(_DICT_KEYS[task], _fields(task, it))]
    if task == "EE":
        args = ",".join(f"{{'argument':{_quoted(a.text, _SQ)},'role':{_quoted(a.role, _SQ)}}}" for a in it.arguments)
        parts.append(f"'arguments':[{args}]")
    return "{" + ",".join(parts) + "}"


def _write_grouped(task: str, items: list[Item], lang: str) -> list[str]:
    colon = "：" if lang == "zh" else ": "
    if task == "EE":
        return [colon.join([_q(ev.type), ";".join([_q(ev.trigger)] + [f"{_q(a.role)}{colon}{_q(a.text)}"
                                                                       for a in ev.arguments])])
                for ev in items]
    lines: dict[str, list[str]] = {}
    for it in items:
        f = _fields(task, it)
        lines.setdefault(f[1], []).append(_q(f[0]) if task == "NER" else f"{_q(f[0])},{_q(f[2])}")
    sep = "," if task == "NER" else ";"
    return [f"{_q(key)}{colon}{sep.join(members)}" for key, members in lines.items()]


def _iepile_value(what: str, value: str) -> str:
    if _is_empty(value):
        raise ValueError(f"the iepile format cannot represent the {what} {value!r} (it reads as empty)")
    return value


def _write_iepile(task: str, items: list[Item], schema: Sequence[Any] | None) -> str:
    out: dict[str, list[Any]] = {key: [] for key in _schema_keys(task, schema, items)}
    for it in items:
        if task == "NER":
            out[it.type].append(_iepile_value("entity", it.text))
        elif task == "RE":
            out[it.relation].append({_IEPILE_PAIR[0]: _iepile_value("subject", it.head),
                                     _IEPILE_PAIR[1]: _iepile_value("object", it.tail)})
        else:
            if it.trigger != "" and _is_empty(it.trigger):
                raise ValueError(f"the iepile format cannot represent the trigger {it.trigger!r} (it reads as empty)")
            args: dict[str, list[str]] = {}
            for a in it.arguments:
                args.setdefault(_iepile_value("role", a.role), []).append(_iepile_value("argument", a.text))
            out[it.type].append({"trigger": it.trigger or NAN,
                                 "arguments": {r: v[0] if len(v) == 1 else v for r, v in args.items()}})
    return json.dumps(out, ensure_ascii=False)


_LINE_WRITERS = {"tuple": _write_tuple, "labeled": _write_labeled, "dict": _write_dict}


def format_output(task: str, fmt: str, items: Iterable[Item], lang: str = "zh",
                  schema: Sequence[Any] | None = None) -> str:
    """The answer text of ``items`` in one output format (see the module docstring)."""
    if lang not in LANGS:
        raise ValueError(f"unknown lang {lang!r}; allowed: {', '.join(LANGS)}")
    items = canonical_items(task, fmt, items, schema)
    if fmt == "iepile":
        return _write_iepile(task, items, schema)
    if not items:
        return NAN
    if fmt == "grouped":
        return "\n".join(_write_grouped(task, items, lang))
    return "\n".join(_LINE_WRITERS[fmt](task, it, lang) for it in items)


# ------------------------------------------------------------------ parsers --
@dataclass
class ParseResult:
    """Items read from a model's answer; ``unparsed``: fragments that looked like items but could not
    be read; ``ignored``: text around the answer that is not an item (an explanation line)."""

    items: list[Item] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unparsed

    def add(self, item: Item | None) -> None:
        if item is not None:
            self.items.append(item)


def _label_re(alternatives: Iterable[str], numbered: bool = False) -> re.Pattern[str]:
    alts = sorted(set(alternatives), key=len, reverse=True)
    body = "|".join(re.escape(a).replace(r"\ ", r"\s*") for a in alts)
    return re.compile(r"^\s*(?:%s)\s*%s(?:是|is(?![a-z])|[:：=])\s*" % (body, r"(\d+)\s*" if numbered else ""),
                      re.IGNORECASE)


_LABEL_RES = {task: [_label_re(labels + _LABEL_ALIASES.get((task, n), ())) for n, labels in enumerate(fields)]
              for task, fields in _LABELS.items()}
_NUMBERED_RES = (("role", _label_re(_ARG_LABELS[1] + ("角色", "argument role"), True)),
                 ("arg", _label_re(_ARG_LABELS[0], True)))


def _args_field(piece: str, bad: list[str]) -> list[tuple[str, str]]:
    """``论元#角色;论元#角色`` (or ``NAN``) → [(argument, role)], empty halves skipped."""
    if _value(piece) is None:
        return []
    args = []
    for part in _split(piece, _SEMI):
        halves = _split(part, _HASH)
        if len(halves) != 2:
            if part.strip() and _value(part) is not None:
                bad.append(part.strip())
            continue
        text, role = _value(halves[0]), _value(halves[1])
        if text is not None and role is not None:
            args.append((text, role))
    return args


def _bracketed_groups(line: str, opening: Any, closing: Any, res: ParseResult, strip: str) -> list:
    """The bracketed groups of ``line``; unclosed ones go to ``res.unparsed``, other text that
    is not empty or a separator to ``res.ignored``."""
    groups, unclosed, outside = _groups(line, opening, closing)
    res.unparsed += unclosed
    rest = "".join(outside).strip(strip)
    if rest and _value(rest) is not None:
        res.ignored.append(rest)
    return groups


def _parse_tuple_line(task: str, line: str, res: ParseResult, schema: Any) -> None:
    groups = _bracketed_groups(line, _OPEN_PAREN, _CLOSE_PAREN, res, " \t,;，；[]【】")
    width = len(_FIELDS[task])
    for group in groups:
        parts = _split(group, _COMMA)
        if task == "EE" and len(parts) == width:
            parts.append(NAN)
        if len(parts) != width + (task == "EE"):
            res.unparsed.append(f"({group})")
            continue
        bad: list[str] = []
        args = _args_field(parts[-1], bad) if task == "EE" else ()
        res.unparsed += bad
        res.add(_make(task, [_value(p) for p in parts[:width]], args))


def _parse_labeled_line(task: str, line: str, res: ParseResult, schema: Any) -> None:
    for segment in _split(line, _SEMI):
        if not segment.strip():
            continue
        values: dict[Any, str | None] = {}
        good = True
        for piece in _split(segment, _COMMA):
            for n, rx in enumerate(_LABEL_RES[task]):
                if m := rx.match(piece):
                    values[n] = _value(piece[m.end():])
                    break
            else:
                for kind, rx in (_NUMBERED_RES if task == "EE" else ()):
                    if m := rx.match(piece):
                        values[kind, int(m.group(1))] = _value(piece[m.end():])
                        break
                else:
                    good = False
        if not values:
            res.ignored.append(segment.strip())
            continue
        numbers = sorted({k[1] for k in values if isinstance(k, tuple)})
        if not good or any(n not in values for n in range(len(_FIELDS[task]))) or \
                any(("arg", k) not in values or ("role", k) not in values for k in numbers):
            res.unparsed.append(segment.strip())
            continue
        args = [(values["arg", k], values["role", k]) for k in numbers]
        res.add(_make(task, [values[n] for n in range(len(_FIELDS[task]))],
                      [(a, r) for a, r in args if a is not None and r is not None]))


def _parse_grouped_line(task: str, line: str, res: ParseResult, schema: Any) -> None:
    head_rest = _split(line, _COLON, maxsplit=1)
    if len(head_rest) != 2:
        res.ignored.append(line.strip())
        return
    key, rest = _value(head_rest[0]), head_rest[1]
    if schema is not None and key not in _schema_keys(task, schema, []):
        res.ignored.append(line.strip())
        return
    if task == "NER":
        for member in _split(rest, _COMMA + _SEMI + "、"):
            res.add(_make(task, [_value(member), key]))
    elif task == "RE":
        for member in _split(rest, _SEMI):
            pair = _split(member, _COMMA)
            if len(pair) == 2:
                res.add(_make(task, [_value(pair[0]), key, _value(pair[1])]))
            elif _value(member) is not None:
                res.unparsed.append(member.strip())
    else:
        trigger, *arg_parts = _split(rest, _SEMI)
        args = []
        for part in arg_parts:
            role_text = _split(part, _COLON, maxsplit=1)
            if len(role_text) != 2:
                res.unparsed.append(part.strip())
                continue
            role, text = _value(role_text[0]), _value(role_text[1])
            if role is not None and text is not None:
                args.append((text, role))
        res.add(_make(task, [_value(trigger), key], args))


def _dict_get(d: dict[str, Any], name: str) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in d.items()}
    for alias in _DICT_ALIASES[name]:
        if alias in lowered:
            return lowered[alias]
    raise KeyError(name)


def _str_or_none(value: Any) -> str | None:
    """A value of the dict format: a string as written (quoted, so ``'NAN'`` is literal); None for a
    bare ``null``/``NAN``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _dict_item(task: str, d: Any) -> Item | None:
    if not isinstance(d, dict):
        raise TypeError("not an object")
    values = [_str_or_none(_dict_get(d, name)) for name in _DICT_KEYS[task]]
    args: list[tuple[str, str]] = []
    if task == "EE":
        raw = d.get("arguments", [])
        pairs = raw.items() if isinstance(raw, dict) else [(_dict_get(a, "role"), _dict_get(a, "argument"))
                                                              for a in raw]
        for role, text in pairs:
            role, text = _str_or_none(role), _str_or_none(text)
            if role is not None and text is not None:
                args.append((text, role))
    return _make(task, values, args)


def _parse_dict_line(task: str, line: str, res: ParseResult, schema: Any) -> None:
    groups = _bracketed_groups(line, _OPEN_BRACE, _CLOSE_BRACE, res, " \t,;，；[]【】()")
    for group in groups:
        try:
            res.add(_dict_item(task, _literal("{" + group + "}")))
        except (ValueError, KeyError, TypeError, AttributeError):
            res.unparsed.append("{" + group + "}")


_LINE_PARSERS = {"tuple": _parse_tuple_line, "labeled": _parse_labeled_line, "grouped": _parse_grouped_line,
                 "dict": _parse_dict_line}


def _parse_iepile(task: str, text: str, res: ParseResult, schema: Any) -> None:
    start = min((i for i in (text.find("{"), text.find("｛")) if i >= 0), default=-1)
    if start < 0:
        if _value(text) is not None:
            res.unparsed.append(text.strip())
        return
    if text[:start].strip():
        res.ignored.append(text[:start].strip())
    try:
        obj, end = _Literal(text).parse(start)
    except _LiteralError:
        res.unparsed.append(text[start:].strip())
        return
    if text[end:].strip():
        res.ignored.append(text[end:].strip())
    keys = None if schema is None else _schema_keys(task, schema, [])
    if not isinstance(obj, dict):
        res.unparsed.append(text[start:end])
        return
    for key, found in obj.items():
        if keys is not None and key not in keys:
            res.ignored.append(json.dumps({key: found}, ensure_ascii=False))
            continue
        for element in (found if isinstance(found, list) else [found]):
            try:
                res.add(_iepile_item(task, key, element))
            except (ValueError, KeyError, TypeError, AttributeError):
                res.unparsed.append(json.dumps({key: [element]}, ensure_ascii=False))


def _iepile_item(task: str, key: str, element: Any) -> Item | None:
    def clean(value: Any) -> str | None:
        return None if value is None or (isinstance(value, str) and _is_empty(value)) else _str_or_none(value)

    if task == "NER":
        return _make(task, [clean(element), key])
    if task == "RE":
        return _make(task, [clean(element[_IEPILE_PAIR[0]]), key, clean(element[_IEPILE_PAIR[1]])])
    args = []
    for role, found in element.get("arguments", {}).items():
        for text in (found if isinstance(found, list) else [found]):
            if clean(role) is not None and clean(text) is not None:
                args.append((clean(text), role))
    return _make(task, [clean(element.get("trigger")), key], args)


def parse_output(task: str, fmt: str, text: str, lang: str = "zh", schema: Sequence[Any] | None = None,
                 strict: bool = False) -> ParseResult:
    """Read a model's answer in one output format back into items (see the module docstring)."""
    _check(task, fmt)
    if lang not in LANGS:
        raise ValueError(f"unknown lang {lang!r}; allowed: {', '.join(LANGS)}")
    res = ParseResult()
    text = _PREFIX_RE.sub("", text, count=1)
    if fmt == "iepile":
        _parse_iepile(task, text, res, schema)
    else:
        for line in _LINE_RE.split(text):
            if _value(line) is not None:
                _LINE_PARSERS[fmt](task, line, res, schema)
    res.items = _dedup(res.items)
    if strict and (res.unparsed or res.ignored):
        bad = (res.unparsed or res.ignored)[0]
        raise ValueError(f"{task} {fmt} answer: cannot parse {bad[:200]!r}")
    return res


# ------------------------------------------------------------------ IEPile instructions --
_IEPILE_INSTRUCTIONS = {
    ("NER", "zh"): "请找出input中属于schema所列类型的全部实体，按schema的顺序输出JSON，某类型没有实体时给出空列表。",
    ("RE", "zh"): "请找出input中属于schema所列关系的全部三元组，按schema的顺序输出JSON，每个三元组写成subject和object，"
                  "某关系不存在时给出空列表。",
    ("EE", "zh"): "请找出input中属于schema所列类型的全部事件及其触发词和论元，按schema的顺序输出JSON，"
                  "某事件类型不存在时给出空列表。",
    ("NER", "en"): "Find every entity of the types listed in schema in the input and answer with JSON keyed by "
                   "the schema in its order; give an empty list for a type with no entity.",
    ("RE", "en"): "Find every triple of the relations listed in schema in the input and answer with JSON keyed by "
                  "the schema in its order, each triple as subject and object; give an empty list for a relation "
                  "that does not occur.",
    ("EE", "en"): "Find every event of the types listed in schema in the input, with trigger and arguments, and "
                  "answer with JSON keyed by the schema in its order; give an empty list for an absent type.",
}


def iepile_instruction(task: str, lang: str, schema: Sequence[Any], text: str,
                       instruction_text: str | None = None) -> str:
    """The ``instruction`` field of an IEPile-style record: a JSON string of
    ``{"instruction", "schema", "input"}`` (a default instruction per task and language)."""
    _check(task)
    if lang not in LANGS:
        raise ValueError(f"unknown lang {lang!r}; allowed: {', '.join(LANGS)}")
    instruction = _IEPILE_INSTRUCTIONS[task, lang] if instruction_text is None else instruction_text
    return json.dumps({"instruction": instruction, "schema": list(schema), "input": text}, ensure_ascii=False)


def read_iepile_instruction(record: Any) -> dict[str, Any] | None:
    """The JSON object of an IEPile-style record's ``instruction`` (``{instruction, schema, input}``,
    as :func:`iepile_instruction` writes it) when it has a ``schema`` list and an ``input`` string, else None."""
    try:
        inst = json.loads(record["instruction"])
    except (ValueError, TypeError, KeyError):
        return None
    ok = isinstance(inst, dict) and isinstance(inst.get("schema"), list) and isinstance(inst.get("input"), str)
    return inst if ok else None


def split_schema(schema: Sequence[Any], split_num: int | None = None, task: str | None = None) -> list[list[Any]]:
    """Chunks of ``split_num`` schema entries in order (default by task: NER 6, RE/EE 4); a remainder
    smaller than half a chunk joins the last chunk, a larger one is a chunk of its own."""
    if split_num is None:
        if task is None:
            raise ValueError("split_schema needs split_num or task")
        _check(task)
        split_num = DEFAULT_SPLIT_NUM[task]
    if isinstance(split_num, bool) or not isinstance(split_num, int) or split_num < 1:
        raise ValueError(f"split_num must be a positive integer, not {split_num!r}")
    schema = list(schema)
    chunks = [schema[i:i + split_num] for i in range(0, len(schema), split_num)]
    if len(chunks) > 1 and 2 * len(chunks[-1]) < split_num:
        chunks[-2].extend(chunks.pop())
    return chunks


__all__ = ["FORMATS", "TEXT_FORMATS", "DEFAULT_SPLIT_NUM", "NAN", "ParseResult", "canonical_items",
           "format_output", "parse_output", "iepile_instruction", "read_iepile_instruction", "schema_key", "split_schema"]
