"""Heuristic document filters for the pretraining corpus (KnowLM removes harmful content and
noise heuristically before dedup; see 001 §3.1).

Rules run in a fixed order and the first match names the reason a document is removed, so
every removed document is counted under exactly one rule:

====================  =====================================================================
``empty``             blank after rendering the source template
``too_short``         fewer than ``min_chars`` non-whitespace characters
``too_long``          more than ``max_chars`` characters (scraped dumps, one-line pages)
``mojibake``          wrong-decoding artefacts: ftfy's "badness" sequences (UTF-8 read as
                      latin-1/cp1252), U+FFFD replacement characters, 锟斤拷/烫烫烫 runs
``blocklist``         a harmful-content phrase from ``data/filters/blocklist_{zh,en}.txt``
``boilerplate``       most lines are navigation / spam lines (``boilerplate_{zh,en}.txt``)
``repetition``        the same sentence repeated, or text that compresses suspiciously well
``symbol_ratio``      mostly symbols (ASCII art, base64 junk, emoji spam)
====================  =====================================================================

Mojibake detection uses ``ftfy`` (maintained, the reference tool for this) instead of a
hand-written list of byte patterns. Lists (blocklist, boilerplate) are data files shipped in
the package; a config may point at its own files instead.
"""

from __future__ import annotations

import re
import re._constants as _C  # regex analysis for the exact shortcuts below (Python 3.11's re)
import re._parser as _parser
import zlib
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from re._casefix import _EXTRA_CASES
from typing import Any, Iterator

import _sre
import numpy as np
from ftfy import badness, fix_encoding

from .config import Section, field

RULES = ("empty", "too_short", "too_long", "mojibake", "blocklist", "boilerplate", "repetition", "symbol_ratio")
MAX_LIST_BYTES = 64 * 2**20  # a phrase/regex list larger than this is refused (it is read whole)
_PACKAGE_LIST = re.compile(r"package:\w[\w.-]*")  # a file name in knowlm_utils/data/filters/, no folders


@dataclass
class FilterConfig(Section):
    min_chars: int = field(30, ge=0, help="documents with fewer non-whitespace characters are removed (too_short)")
    max_chars: int = field(100_000, ge=1, help="documents with more characters are removed (too_long)")
    mojibake_max_ratio: float = field(
        0.01, ge=0, help="max (ftfy badness + U+FFFD + 锟斤拷-run characters) per non-space character")
    mojibake_action: str = field("drop", choices=("drop", "fix"), help="'drop' removes mojibake documents; 'fix' first tries "
                                              "ftfy.fix_encoding and keeps the document when that repairs it")
    blocklist_files: list[str] = field(
        default_factory=lambda: ["package:blocklist_zh.txt", "package:blocklist_en.txt"],
        help="phrase lists, one per line; 'package:NAME' is a file in knowlm_utils/data/filters/")
    boilerplate_files: list[str] = field(
        default_factory=lambda: ["package:boilerplate_zh.txt", "package:boilerplate_en.txt"],
        help="line regexes (case-insensitive); 'package:NAME' as above")
    boilerplate_max_line_fraction: float = field(
        0.5, gt=0, le=1, help="remove when at least this fraction of non-empty lines is boilerplate")
    boilerplate_max_line_chars: int = field(
        80, ge=1, help="a line with one boilerplate match counts as boilerplate only up to this length; "
                 "two matches count up to 4x this length, three or more at any length")
    repetition_max_dup_fraction: float = field(
        0.3, ge=0, le=1, help="max fraction of characters in sentences that repeat an earlier sentence")
    repetition_min_compress_ratio: float = field(
        0.12, ge=0, help="min zlib compressed/raw byte ratio for texts of >= 500 bytes (lower = repetitive)")
    symbol_max_ratio: float = field(0.3, ge=0, le=1, help="max fraction of symbol characters (not letters, digits, "
                                               "whitespace or common punctuation)")
    rules: list[str] = field(default_factory=lambda: list(RULES),
                             help=f"rules to apply, in this order; any of {list(RULES)}")

    def validate(self) -> None:
        unknown = [r for r in self.rules if r not in RULES]
        if unknown:
            raise ValueError(f"rules: unknown filter rule(s) {unknown}; known: {list(RULES)}")
        for key in ("blocklist_files", "boilerplate_files"):
            for i, spec in enumerate(getattr(self, key)):
                if spec.startswith("package:") and not _PACKAGE_LIST.fullmatch(spec):
                    raise ValueError(f"{key}[{i}]: {spec[:80]!r} must be 'package:NAME' with a plain file name of "
                                     "knowlm_utils/data/filters/ (or a path to your own file)")


def read_list_file(spec: str, base_dir: Path | None = None) -> list[str]:
    """Non-comment lines of a list file ('package:NAME' = knowlm_utils/data/filters/NAME).
    A missing, unreadable, oversized (> 64 MiB), non-regular or non-UTF-8 file raises
    ``ValueError`` naming it."""
    try:
        if spec.startswith("package:"):
            res = resources.files("knowlm_utils").joinpath("data/filters", spec[len("package:"):])
            if not res.is_file():
                raise ValueError(f"filter list {spec!r}: no such file in knowlm_utils/data/filters/")
            text = res.read_text("utf-8")
        else:
            path = Path(spec).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            if not path.is_file():  # also keeps /dev/zero, FIFOs and folders out
                raise ValueError(f"filter list {path}: not found or not a regular file")
            if path.stat().st_size > MAX_LIST_BYTES:
                raise ValueError(f"filter list {path}: larger than {MAX_LIST_BYTES >> 20} MiB")
            text = path.read_text("utf-8")
    except OSError as exc:
        raise ValueError(f"filter list {spec!r}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"filter list {spec!r}: not UTF-8 (byte {exc.start})") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_SENTENCE_SPLIT = re.compile(r"(?<=[。！？!?；;\n])|(?<=\.)\s+")
_GARBAGE_RUN = re.compile(r"(?:锟斤拷|烫烫烫|屯屯屯)+")
_COMMON_PUNCT = "，。！？；：、“”‘’（）《》【】—…·,.!?;:'\"()\\-\\[\\]"
# a symbol: not whitespace, not a word character (letters, digits, CJK, '_'), not common punctuation
_SYMBOL = re.compile(f"[^\\w\\s{_COMMON_PUNCT}]|_")
_SPACE = re.compile(r"\s+")

# ----------------------------------------------------------------------------------------------
# Speed (issue 14): the rules above were first written as regex scans (findall/search over every
# character, ≈1 M chars/s). They now give the same numbers from one numpy pass over the code
# points (a class table says, per code point, "whitespace", "symbol", "can start ftfy badness",
# "garbage"), plus regexes that run only where they can match:
#
# * ftfy's badness regex is run only around the characters every one of its matches must contain
#   (found by parsing the regex), in windows as wide as its longest match;
# * a blocklist phrase's regex runs only when the text, case-folded the way ``re``'s IGNORECASE
#   compares characters, holds every word of the phrase; the boilerplate regex only on lines that
#   hold one of the literal strings each of its matches must contain (found by parsing the
#   compiled regex); a numpy look-up of hashed character pairs rules out most texts first;
# * sentences are cut with str.replace/str.split instead of a look-behind regex;
# * only zlib (the compression-ratio test of the repetition rule) still reads every document whole.
#
# Each shortcut is exact (a regex is skipped only where it provably cannot match), and
# tests/test_cleaning_equivalence.py compares every decision and ratio with the original code
# (tests/cleaning_reference.py). Any regex the analysis does not understand simply runs whole.

_N_CODEPOINTS = 0x110000
_CASED_LIMIT = 0x20000  # no cased code point at or above (checked by the equivalence test)
_SPACE_BIT, _SYMBOL_BIT, _BADNESS_BIT, _GARBAGE_BIT = 1, 2, 4, 8
_GARBAGE_CHARS = "锟烫屯"  # first characters of _GARBAGE_RUN's alternatives
_SENTENCE_ENDS = "。！？!?；;\n"
_DOT_SPACE = re.compile(r"\.(?=\s)")
_MAX_LANGUAGE = 64  # largest finite set of strings tracked when analysing a regex
_PAIR_BITS, _PAIR_MULT = 18, (0x9E3779B1, 0x85EBCA77)  # hashed character pairs (see _Keys)
_WITH_BIT = {bit: [i for i in range(16) if i & bit] for bit in (_SPACE_BIT, _SYMBOL_BIT, _BADNESS_BIT, _GARBAGE_BIT)}


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _all_codepoints() -> str:
    return np.arange(_N_CODEPOINTS, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")


def _op_tree(items) -> Iterator[tuple[Any, Any]]:
    """Every (op, av) of a parsed regex, nested ones included."""
    for op, av in items:
        yield op, av
        if op is _C.SUBPATTERN:
            yield from _op_tree(av[-1])
        elif op is _C.ATOMIC_GROUP:
            yield from _op_tree(av)
        elif op is _C.BRANCH:
            for alt in av[1]:
                yield from _op_tree(alt)
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT):
            yield from _op_tree(av[2])
        elif op in (_C.ASSERT, _C.ASSERT_NOT):
            yield from _op_tree(av[1])
        elif op is _C.GROUPREF_EXISTS:
            yield from _op_tree(av[1])
            if av[2] is not None:
                yield from _op_tree(av[2])


def _class_chars(av, limit: int) -> set[str] | None:
    """The characters of a parsed [...] class, or None (negated, \\d/\\w/\\s, or > limit)."""
    chars: set[str] = set()
    for op, a in av:
        if op is _C.LITERAL:
            chars.add(chr(a))
        elif op is _C.RANGE and a[1] - a[0] < limit:
            chars.update(map(chr, range(a[0], a[1] + 1)))
        else:
            return None
        if len(chars) > limit:
            return None
    return chars


def _item_language(op, av) -> set[str] | None:
    """All the strings one parsed regex item can match, when that is a small finite set."""
    if op is _C.LITERAL:
        return {chr(av)}
    if op is _C.IN:
        return _class_chars(av, 16)
    if op in (_C.AT, _C.ASSERT, _C.ASSERT_NOT):
        return {""}  # zero-width: consumes nothing
    if op is _C.SUBPATTERN:
        return _language(av[-1])
    if op is _C.ATOMIC_GROUP:
        return _language(av)
    if op is _C.BRANCH:
        out: set[str] = set()
        for alt in av[1]:
            lang = _language(alt)
            if lang is None:
                return None
            out |= lang
        return out if len(out) <= _MAX_LANGUAGE else None
    if op in (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT) and av[1] <= 4:
        lang = _language(av[2])
        if lang is None:
            return None
        out, power = set(), {""}
        for k in range(av[1] + 1):
            if k >= av[0]:
                out |= power
            power = {a + b for a in power for b in lang}
            if len(out) + len(power) > _MAX_LANGUAGE:
                return None
        return out
    return None


def _language(items) -> set[str] | None:
    out = {""}
    for op, av in items:
        lang = _item_language(op, av)
        if lang is None:
            return None
        out = {a + b for a in out for b in lang}
        if len(out) > _MAX_LANGUAGE:
            return None
    return out


def _best(candidates: list[set[str]]) -> set[str] | None:
    good = [c for c in candidates if c and "" not in c]
    return max(good, key=lambda c: (min(map(len, c)), -len(c))) if good else None


def _must_contain(items) -> set[str] | None:
    """A set of strings such that every match of the parsed sequence ``items`` contains one of
    them, or None when no such set is found (the regex then always runs)."""
    candidates: list[set[str]] = []
    run: set[str] = {""}  # what the current stretch of finite items matched: exactly one of these
    for op, av in items:
        lang = _item_language(op, av)
        if lang is not None:
            joined = {a + b for a in run for b in lang}
            if len(joined) <= _MAX_LANGUAGE:
                run = joined
                continue
            candidates.append(run)
            run = lang
            continue
        candidates.append(run)
        run = {""}
        if op is _C.SUBPATTERN:
            inner = _must_contain(av[-1])
        elif op is _C.ATOMIC_GROUP:
            inner = _must_contain(av)
        elif op is _C.BRANCH:
            alts = [_must_contain(alt) for alt in av[1]]
            inner = None if any(a is None for a in alts) else set().union(*alts)
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT) and av[0] >= 1:
            inner = _must_contain(av[2])
        else:
            inner = None
        if inner is not None:
            candidates.append(inner)
    candidates.append(run)
    return _best(candidates)


class _Tables:
    """Per-code-point tables (6 MB), built once per process (a fraction of a second) on first use."""

    def __init__(self):
        everything = _all_codepoints()
        cls = np.zeros(_N_CODEPOINTS, np.uint8)
        for m in _SPACE.finditer(everything):  # exactly re's \s
            cls[m.start():m.end()] |= _SPACE_BIT
        symbol = np.ones(_N_CODEPOINTS, bool)  # _SYMBOL = not [\w\s punctuation], or '_'
        for m in re.finditer(f"[\\w\\s{_COMMON_PUNCT}]+", everything):
            symbol[m.start():m.end()] = False
        symbol[ord("_")] = True
        cls[symbol] |= _SYMBOL_BIT
        for ch in _GARBAGE_CHARS + "\ufffd":
            cls[ord(ch)] |= _GARBAGE_BIT
        self.badness_window = 0
        triggers = _badness_triggers()
        if triggers is not None:
            chars, self.badness_window = triggers
            cls[[ord(c) for c in chars]] |= _BADNESS_BIT
        self.cls = cls
        # case folding as re's IGNORECASE compares characters: simple lower case, then one
        # representative for the classes re adds on top of it (i/ı, s/ſ, µ/μ, ...)
        lower = np.arange(_N_CODEPOINTS, dtype=np.uint32)
        lower[:_CASED_LIMIT] = np.fromiter(map(_sre.unicode_tolower, range(_CASED_LIMIT)), np.uint32, _CASED_LIMIT)
        rep = np.arange(_N_CODEPOINTS, dtype=np.uint32)
        for lo, others in _EXTRA_CASES.items():
            rep[lo] = min(lo, *others)
        self.fold = rep[lower]

    def fold_text(self, cps: np.ndarray) -> str:
        return self.fold[cps].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def fold_str(self, text: str) -> str:
        return self.fold_text(_codepoints(text)) if text else text


def _badness_triggers() -> tuple[set[str], int] | None:
    """Characters one of which is in every match of ftfy's badness regex, and its longest match;
    None when the regex has a form this analysis does not cover (then it always runs whole)."""
    pattern = badness.BADNESS_RE
    try:
        parsed = _parser.parse(pattern.pattern, pattern.flags)
    except Exception:  # noqa: BLE001 — any surprise in a private module: no shortcut
        return None
    if pattern.flags & re.IGNORECASE:
        return None
    lo, hi = parsed.getwidth()
    for op, av in _op_tree(parsed):  # only consumed characters and a start anchor decide a match
        if op in (_C.ASSERT, _C.ASSERT_NOT, _C.GROUPREF, _C.GROUPREF_EXISTS) or (
                op is _C.AT and av not in (_C.AT_BEGINNING, _C.AT_BEGINNING_STRING)):
            return None
    if lo < 1 or hi >= _C.MAXREPEAT or hi > 64 or len(parsed) != 1 or parsed[0][0] is not _C.BRANCH:
        return None
    common = set(map(chr, range(128))) | set(_COMMON_PUNCT) | {chr(c) for c in range(0x3000, 0xA000)}
    chars: set[str] = set()
    for alt in parsed[0][1][1]:  # each alternative: pick its item with the fewest common characters
        sets = [{chr(av)} if op is _C.LITERAL else _class_chars(av, _N_CODEPOINTS) if op is _C.IN else None
                for op, av in alt]
        sets = [s for s in sets if s]
        if not sets:
            return None
        chars |= min(sets, key=lambda s: (len(s & common), len(s)))
    return chars, hi


_TABLES: _Tables | None = None


def _tables() -> _Tables:
    global _TABLES
    if _TABLES is None:
        _TABLES = _Tables()
    return _TABLES


class _Text:
    """One document's shared measurements, computed at most once per ``check``."""

    __slots__ = ("text", "_cps", "_counts", "_folded_cps", "_folded", "_present", "_nonspace")

    def __init__(self, text: str):
        self.text = text
        self._cps = self._counts = self._folded_cps = self._folded = self._present = self._nonspace = None

    @property
    def cps(self) -> np.ndarray:
        if self._cps is None:
            self._cps = _codepoints(self.text)
        return self._cps

    def count(self, bit: int) -> int:
        """How many characters have class ``bit``."""
        if self._counts is None:
            self._counts = np.bincount(_tables().cls[self.cps], minlength=16).tolist()
        return sum(self._counts[i] for i in _WITH_BIT[bit])

    @property
    def nonspace(self) -> int:
        if self._nonspace is None:
            self._nonspace = len(self.text) - self.count(_SPACE_BIT)
        return self._nonspace

    @property
    def folded_cps(self) -> np.ndarray:
        if self._folded_cps is None:
            self._folded_cps = _tables().fold[self.cps]
        return self._folded_cps

    @property
    def folded(self) -> str:
        """The text case-folded as IGNORECASE compares characters (one code point each)."""
        if self._folded is None:
            self._folded = self.folded_cps.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
        return self._folded

    def present_pairs(self, table: np.ndarray) -> set[int]:
        """The hashes of the text's pairs of neighbouring folded characters that are set in
        ``table`` (computed once per text and table)."""
        if self._present is None or self._present[0] is not table:
            f = self.folded_cps
            pairs = _pair_hash(f[:-1], f[1:])
            self._present = (table, set(pairs[table[pairs]].tolist()))
        return self._present[1]


def _pair_hash(a, b):
    """Hash of two code points into _PAIR_BITS bits (numpy arrays of uint32, or ints)."""
    if isinstance(a, int):
        return (((a * _PAIR_MULT[0]) ^ (b * _PAIR_MULT[1])) & 0xFFFFFFFF) >> (32 - _PAIR_BITS)
    return ((a * np.uint32(_PAIR_MULT[0])) ^ (b * np.uint32(_PAIR_MULT[1]))) >> np.uint32(32 - _PAIR_BITS)


class _Keys:
    """Which of some groups of strings a case-folded text may hold in full. Each group is a list of
    strings that must all be there. A numpy pass looks up the hashed pairs of neighbouring
    characters of the text: a group stays a candidate only when every pair of every one of its
    strings is there (never a false "no": a hash collision can only keep a group, and a group of
    one-character strings always stays). The caller confirms candidates on the text itself."""

    def __init__(self, groups: list[list[str]], table: np.ndarray):
        self.groups = groups
        self.table = table  # shared by the key sets of one filter: one lookup per text
        self.needs: list[set[int] | None] = []  # per group: the pair hashes, None = always a candidate
        for strings in groups:
            hashes = {_pair_hash(ord(x), ord(y)) for k in strings for x, y in zip(k, k[1:])}
            self.needs.append(hashes or None)
            if hashes:
                self.table[list(hashes)] = True

    def candidates(self, doc: _Text) -> list[int]:
        present = doc.present_pairs(self.table)
        return [i for i, need in enumerate(self.needs) if need is None or need <= present]


def nonspace_len(text: str) -> int:
    return sum(map(len, text.split()))  # str.split and re's \s agree on whitespace


def _phrase_parts(phrases: list[str]) -> list[tuple[str, str]]:
    """(phrase, regex) pairs, longest phrase first: CJK phrases match as substrings, others on
    word boundaries; the words of a phrase may be separated by any whitespace."""
    parts = []
    for p in sorted(set(phrases), key=len, reverse=True):
        body = r"\s+".join(re.escape(w) for w in p.split())
        parts.append((p, body if _CJK.search(p) else rf"\b{body}\b"))
    return parts


def _phrase_regex(phrases: list[str]) -> re.Pattern | None:
    """One alternation: CJK phrases match as substrings, others on word boundaries."""
    if not phrases:
        return None
    return re.compile("|".join(body for _, body in _phrase_parts(phrases)), re.IGNORECASE)


class _Phrases:
    """``_phrase_regex(phrases).search(text) is not None``, faster: every match of a phrase holds
    each of its words, compared the way IGNORECASE compares characters, so a phrase's own regex
    runs only when the case-folded text holds all of its words."""

    def __init__(self, phrases: list[str], table: np.ndarray):
        tables = _tables()
        self.phrases = []
        for phrase, body in _phrase_parts(phrases):
            words = [tables.fold_str(w) for w in phrase.split()] or [""]  # (split() of a list line: never empty)
            self.phrases.append((words, re.compile(body, re.IGNORECASE)))
        self.keys = _Keys([words for words, _ in self.phrases], table)

    def search(self, doc: _Text) -> bool:
        found = self.keys.candidates(doc)
        if not found:
            return False
        folded = doc.folded
        for i in found:
            words, regex = self.phrases[i]
            if all(w in folded for w in words) and regex.search(doc.text) is not None:
                return True
        return False


def _symbol_ratio(doc: _Text) -> float:
    n = doc.nonspace
    return doc.count(_SYMBOL_BIT) / n if n else 0.0


def symbol_ratio(text: str) -> float:
    return _symbol_ratio(_Text(text))


def _badness(doc: _Text) -> int:
    """``ftfy.badness.badness(text)``, running its regex only near the characters it needs."""
    tables = _tables()
    width = tables.badness_window
    if not width:
        return badness.badness(doc.text)
    if not doc.count(_BADNESS_BIT):
        return 0
    where = np.flatnonzero(tables.cls[doc.cps] & _BADNESS_BIT)
    # a match is at most `width` characters long and holds a trigger t, so it lies in
    # [t - width + 1, t + width); windows that overlap are merged so none cuts a match
    starts = np.maximum(where - (width - 1), 0)
    ends = np.minimum(where + width, len(doc.text))
    breaks = np.flatnonzero(starts[1:] > ends[:-1])
    first = np.concatenate(([0], breaks + 1))
    last = np.concatenate((breaks, [len(where) - 1]))
    findall = badness.BADNESS_RE.findall
    text = doc.text
    return sum(len(findall(text, int(s), int(e))) for s, e in zip(starts[first], ends[last]))


def _mojibake_ratio(doc: _Text) -> float:
    nonspace = doc.nonspace
    if not nonspace:
        return 0.0
    text = doc.text
    garbage = replacement = 0
    if doc.count(_GARBAGE_BIT):
        replacement = text.count("\ufffd")
        if any(ch in text for ch in _GARBAGE_CHARS):
            garbage = sum(len(m) for m in _GARBAGE_RUN.findall(text))
    return (_badness(doc) + replacement + garbage) / nonspace


def mojibake_ratio(text: str) -> float:
    return _mojibake_ratio(_Text(text))


def _sentences(text: str) -> list[str]:
    """The pieces of ``_SENTENCE_SPLIT.split(text)`` up to surrounding whitespace: cut after each
    sentence end and after a '.' followed by whitespace."""
    sep = "\x00"
    if sep in text:
        return _SENTENCE_SPLIT.split(text)
    for ch in _SENTENCE_ENDS:
        if ch in text:
            text = text.replace(ch, ch + sep)
    if "." in text:
        text = _DOT_SPACE.sub("." + sep, text)
    return text.split(sep)


def duplicate_sentence_fraction(text: str) -> float:
    sentences = [s for s in map(str.strip, _sentences(text)) if s]
    total = sum(map(len, sentences))
    if not total:
        return 0.0
    if len(set(sentences)) == len(sentences):
        return 0.0
    # a sentence seen k times adds (k - 1) × its length: every repeat after the first
    dup = sum((k - 1) * len(s) for s, k in Counter(sentences).items() if k > 1 and len(s) >= 5)
    return dup / total


class _Gate:
    """A regex run only when the case-folded text holds a string its every match must contain."""

    def __init__(self, regex: re.Pattern | None, table: np.ndarray):
        self.regex = regex
        self.keys: _Keys | None = None
        self.key_regex: re.Pattern | None = None
        if regex is None:
            return
        try:
            must = _must_contain(_parser.parse(regex.pattern, regex.flags))
        except Exception:  # noqa: BLE001 — any surprise in a private module: no shortcut
            must = None
        if must:
            strings = sorted({_tables().fold_str(s) for s in must}, key=len, reverse=True)
            self.keys = _Keys([[k] for k in strings], table)
            self.key_regex = re.compile("|".join(map(re.escape, strings)))

    def may_match(self, doc: _Text) -> bool:
        if self.regex is None:
            return False
        if self.keys is None:
            return True
        return bool(self.keys.candidates(doc)) and self.key_regex.search(doc.folded) is not None


class DocumentFilter:
    """Applies the configured rules; ``check(text)`` returns the first failing rule or None."""

    def __init__(self, config: FilterConfig | None = None, base_dir: Path | None = None):
        self.config = cfg = config or FilterConfig()
        phrases = [p for f in cfg.blocklist_files for p in read_list_file(f, base_dir)]
        self.blocklist = _phrase_regex(phrases)
        patterns = [p for f in cfg.boilerplate_files for p in read_list_file(f, base_dir)]
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid boilerplate regex {p!r}: {exc}") from exc
        self.boilerplate = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None
        pair_table = np.zeros(1 << _PAIR_BITS, bool)  # filled by both key sets
        self._blocklist_phrases = _Phrases(phrases, pair_table)
        self._boilerplate_gate = _Gate(self.boilerplate, pair_table)
        self._checks = [(rule, getattr(self, f"_{rule}")) for rule in cfg.rules]

    def check(self, text: str, skip: frozenset[str] | set[str] = frozenset()) -> str | None:
        doc = _Text(text)
        for rule, fn in self._checks:
            if rule not in skip and fn(doc):
                return rule
        return None

    def repair(self, text: str) -> str | None:
        """With ``mojibake_action: fix``: the repaired text of a mojibake document, if ftfy
        can undo the wrong decoding completely; otherwise None (the document stays as it is)."""
        cfg = self.config
        if cfg.mojibake_action != "fix" or "mojibake" not in cfg.rules or not self._is_mojibake(text):
            return None
        fixed = fix_encoding(text)
        return fixed if fixed != text and "\ufffd" not in fixed and not self._is_mojibake(fixed) else None

    # -- rules: each takes the document's shared measurements ------------------------------
    def _empty(self, doc: _Text) -> bool:
        return not doc.text or doc.text.isspace()  # = not text.strip()

    def _too_short(self, doc: _Text) -> bool:
        return doc.nonspace < self.config.min_chars

    def _too_long(self, doc: _Text) -> bool:
        return len(doc.text) > self.config.max_chars

    def _mojibake(self, doc: _Text) -> bool:
        return _mojibake_ratio(doc) > self.config.mojibake_max_ratio

    def _blocklist(self, doc: _Text) -> bool:
        return self.blocklist is not None and self._blocklist_phrases.search(doc)

    def _boilerplate(self, doc: _Text) -> bool:
        if self.boilerplate is None:
            return False
        fraction = self.config.boilerplate_max_line_fraction
        if fraction > 0 and not self._boilerplate_gate.may_match(doc):
            return False  # no line can match: no boilerplate line
        lines = doc.text.splitlines()
        keys = self._boilerplate_gate.key_regex
        folded = doc.folded.splitlines() if keys is not None else None
        if folded is None or len(folded) != len(lines):  # (case folding keeps line ends: never)
            folded, keys = lines, None
        limit = self.config.boilerplate_max_line_chars
        findall = self.boilerplate.findall
        n_lines = hits = 0
        for line, folded_line in zip(lines, folded):
            line = line.strip()
            if not line:
                continue
            n_lines += 1
            if keys is not None and keys.search(folded_line) is None:
                continue  # no match possible on this line
            n = len(findall(line))
            if n >= 3 or (n == 2 and len(line) <= 4 * limit) or (n == 1 and len(line) <= limit):
                hits += 1
        return bool(n_lines) and hits / n_lines >= fraction

    def _repetition(self, doc: _Text) -> bool:
        if duplicate_sentence_fraction(doc.text) > self.config.repetition_max_dup_fraction:
            return True
        raw = doc.text.encode("utf-8")
        return len(raw) >= 500 and len(zlib.compress(raw, 6)) / len(raw) < self.config.repetition_min_compress_ratio

    def _symbol_ratio(self, doc: _Text) -> bool:
        return _symbol_ratio(doc) > self.config.symbol_max_ratio

    # the same rules on a plain text (kept for callers of the earlier per-rule methods)
    def _is_empty(self, text: str) -> bool:
        return self._empty(_Text(text))

    def _is_too_short(self, text: str) -> bool:
        return self._too_short(_Text(text))

    def _is_too_long(self, text: str) -> bool:
        return self._too_long(_Text(text))

    def _is_mojibake(self, text: str) -> bool:
        return self._mojibake(_Text(text))

    def _is_blocklist(self, text: str) -> bool:
        return self._blocklist(_Text(text))

    def _is_boilerplate(self, text: str) -> bool:
        return self._boilerplate(_Text(text))

    def _is_repetition(self, text: str) -> bool:
        return self._repetition(_Text(text))

    def _is_symbol_ratio(self, text: str) -> bool:
        return self._symbol_ratio(_Text(text))
