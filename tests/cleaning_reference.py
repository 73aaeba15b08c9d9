"""Frozen reference: the filter rules of ``knowlm_utils/cleaning.py`` as they were before the
speed-up of issue 14 part 4, kept verbatim (only this docstring and the relative import changed)
so that tests/test_cleaning_equivalence.py and benchmarks/bench_corpus.py can compare every
decision, per-rule count and ratio of the fast implementation with the original one.
Do not edit: it is the baseline, not code the project runs.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ftfy import badness, fix_encoding

from knowlm_utils.config import Section, field

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


def nonspace_len(text: str) -> int:
    return len(text) - sum(len(m) for m in _SPACE.findall(text))


def _phrase_regex(phrases: list[str]) -> re.Pattern | None:
    """One alternation: CJK phrases match as substrings, others on word boundaries."""
    if not phrases:
        return None
    parts = []
    for p in sorted(set(phrases), key=len, reverse=True):
        body = r"\s+".join(re.escape(w) for w in p.split())
        parts.append(body if _CJK.search(p) else rf"\b{body}\b")
    return re.compile("|".join(parts), re.IGNORECASE)


def symbol_ratio(text: str) -> float:
    n = nonspace_len(text)
    return len(_SYMBOL.findall(text)) / n if n else 0.0


def mojibake_ratio(text: str) -> float:
    nonspace = nonspace_len(text)
    if not nonspace:
        return 0.0
    garbage = sum(len(m) for m in _GARBAGE_RUN.findall(text))
    return (badness.badness(text) + text.count("\ufffd") + garbage) / nonspace


def duplicate_sentence_fraction(text: str) -> float:
    seen: set[str] = set()
    dup = total = 0
    for sent in _SENTENCE_SPLIT.split(text):
        s = sent.strip()
        if not s:
            continue
        total += len(s)
        if len(s) >= 5 and s in seen:
            dup += len(s)
        seen.add(s)
    return dup / total if total else 0.0


class DocumentFilter:
    """Applies the configured rules; ``check(text)`` returns the first failing rule or None."""

    def __init__(self, config: FilterConfig | None = None, base_dir: Path | None = None):
        self.config = cfg = config or FilterConfig()
        self.blocklist = _phrase_regex([p for f in cfg.blocklist_files for p in read_list_file(f, base_dir)])
        patterns = [p for f in cfg.boilerplate_files for p in read_list_file(f, base_dir)]
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid boilerplate regex {p!r}: {exc}") from exc
        self.boilerplate = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None
        self._checks = [(rule, getattr(self, f"_is_{rule}")) for rule in cfg.rules]

    def check(self, text: str, skip: frozenset[str] | set[str] = frozenset()) -> str | None:
        for rule, fn in self._checks:
            if rule not in skip and fn(text):
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

    # -- rules -----------------------------------------------------------------------------
    def _is_empty(self, text: str) -> bool:
        return not text.strip()

    def _is_too_short(self, text: str) -> bool:
        return nonspace_len(text) < self.config.min_chars

    def _is_too_long(self, text: str) -> bool:
        return len(text) > self.config.max_chars

    def _is_mojibake(self, text: str) -> bool:
        return mojibake_ratio(text) > self.config.mojibake_max_ratio

    def _is_blocklist(self, text: str) -> bool:
        return bool(self.blocklist and self.blocklist.search(text))

    def _is_boilerplate(self, text: str) -> bool:
        if self.boilerplate is None:
            return False
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not lines:
            return False
        limit = self.config.boilerplate_max_line_chars
        hits = 0
        for ln in lines:
            n = len(self.boilerplate.findall(ln))
            if n >= 3 or (n == 2 and len(ln) <= 4 * limit) or (n == 1 and len(ln) <= limit):
                hits += 1
        return hits / len(lines) >= self.config.boilerplate_max_line_fraction

    def _is_repetition(self, text: str) -> bool:
        if duplicate_sentence_fraction(text) > self.config.repetition_max_dup_fraction:
            return True
        raw = text.encode("utf-8")
        return len(raw) >= 500 and len(zlib.compress(raw, 6)) / len(raw) < self.config.repetition_min_compress_ratio

    def _is_symbol_ratio(self, text: str) -> bool:
        return symbol_ratio(text) > self.config.symbol_max_ratio
