"""Stage 03 — sentences and greedy chunking: a document → training samples of at most
``seq_length`` tokens made of whole sentences (KnowLM README §3.1: complete sentences, as few
segments as possible, each as long as possible).

The pieces, in the order a document meets them:

1. :func:`split_sentences` — rule-based splitters per source language (``zh``, ``en``,
   ``code``, ``mixed``; ``en_pysbd`` as a slower reference). They return character spans that
   tile the text exactly. Whitespace after a terminator starts the NEXT sentence: SentencePiece
   glues a space to the following word ("▁The"), so a cut before the space is a cut between
   two tokens.
2. :class:`DocumentChunker` — encodes the whole document ONCE with SentencePiece, finds the
   character offset where every token ends (:meth:`DocumentChunker.token_char_ends`), and cuts
   the token array at those sentence boundaries that fall between two tokens (sentences whose
   boundary a token straddles are merged into one *unit*). Encoding sentence by sentence, as
   KnowLM does, is slower and adds a spurious dummy-prefix "▁" token at every sentence start.
   Units longer than the budget are cut at token boundaries — the only place a sentence is cut.
3. :func:`greedy_chunk` — groups consecutive units into samples: ``disjoint`` fills forward;
   ``knowlm`` (KnowLM's greedy) then also extends each sample backward into the preceding
   sentences while it still fits, so samples are longer but may overlap.
4. :func:`verify_samples` — checks that every sample's ids equal a direct encoding of its text
   (see its docstring for why that is the right definition), and :func:`chunking_report`
   summarises packing efficiency and overlap.

A :class:`DocumentChunker` is cheap to build from a model path, so a multiprocessing pool
builds one per worker (stage 04 does).
"""

from __future__ import annotations

import bisect
import os
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import spm

SplitFn = Callable[[str], list[tuple[int, int]]]
STRATEGIES = ("knowlm", "disjoint")

# ------------------------------------------------------------------------ splitting --------
_ZH_TERMINATORS = "。！？；!?;"
_ZH_CLOSERS = "”’」』）】》〉)]}\"'"
_EN_CLOSERS = "\"'”’)]}»"
_ZH_END = re.compile(f"[{re.escape(_ZH_TERMINATORS)}]+[{re.escape(_ZH_CLOSERS)}]*")
# an English terminator run (+ closing quotes/brackets) followed by whitespace and a character
# (group 3) that is not an ASCII lowercase letter (those never start a sentence here)
_EN_END = re.compile(f"([.!?…]+)([{re.escape(_EN_CLOSERS)}]*)(?=\\s+([^\\sa-z]))")

# words that never end a sentence when followed by '.' (titles, Latin abbreviations)
EN_NEVER_FINAL = frozenset(
    "mr mrs ms mx dr prof st mt ft gen col maj capt lt sgt cpl cmdr adm rev hon sen rep gov pres supt "
    "messrs mme mlle e.g i.e cf vs viz".split())
# abbreviations that do not end a sentence when a number follows ("No. 5", "Fig. 3", "pp. 10")
EN_NUMBER_ABBREVIATIONS = frozenset("no nos nr fig figs vol vols p pp art ch chap sec eq op pt".split())
_OPENERS = "(\"'“‘[{«"


# Character classes for the vectorised rules: one byte per code point (1.1 MB, built once per
# process). Python's str.isspace() holds for no code point above U+3000 (tested), so the table
# is filled from the first 0x3001 code points.
_CLS_ZH_TERM, _CLS_ZH_CLOSE, _CLS_SPACE, _CLS_NEWLINE = 1, 2, 4, 8
_CLASSES: list[np.ndarray] = []


def _class_table() -> np.ndarray:
    if not _CLASSES:
        table = np.zeros(0x110000, dtype=np.uint8)
        table[[ord(c) for c in _ZH_TERMINATORS]] |= _CLS_ZH_TERM
        table[[ord(c) for c in _ZH_CLOSERS]] |= _CLS_ZH_CLOSE
        table[[c for c in range(0x3001) if chr(c).isspace()]] |= _CLS_SPACE
        table[ord("\n")] |= _CLS_NEWLINE
        _CLASSES.append(table)
    return _CLASSES[0]


def _code_points(text: str) -> np.ndarray:
    """The text as a uint32 array of code points (lone surrogates kept)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _classes(text: str) -> np.ndarray:
    return _class_table()[_code_points(text)]


def _content_end(text: str) -> int:
    """Boundaries at or after this point would leave a whitespace-only last sentence."""
    return len(text.rstrip())


def _nonspace(cls: np.ndarray) -> np.ndarray:
    """Positions of the characters that are not whitespace."""
    return np.flatnonzero((cls & _CLS_SPACE) == 0)


def _content_end_cls(nonspace: np.ndarray) -> int:
    """:func:`_content_end` from :func:`_nonspace` (one past the last non-whitespace character)."""
    return int(nonspace[-1]) + 1 if nonspace.size else 0


def _newline_boundaries(text: str) -> list[int]:
    """Start of every whitespace run that holds a newline."""
    cls = _classes(text)
    return _newline_boundaries_cls(cls, _nonspace(cls)).tolist()


def _newline_boundaries_cls(cls: np.ndarray, nonspace: np.ndarray) -> np.ndarray:
    """The run holding a newline starts after the last non-whitespace character before it."""
    newlines = np.flatnonzero(cls & _CLS_NEWLINE)
    if not newlines.size:
        return newlines
    if not nonspace.size:  # all whitespace: one run from 0
        return np.zeros(1, dtype=np.int64)
    k = np.searchsorted(nonspace, newlines)
    starts = np.where(k > 0, nonspace[np.maximum(k - 1, 0)] + 1, 0)
    return starts[np.concatenate(([True], starts[1:] != starts[:-1]))]  # sorted; one per run


def _zh_boundaries(text: str) -> list[int]:
    return _zh_boundaries_cls(_classes(text)).tolist()


def _zh_boundaries_cls(cls: np.ndarray) -> np.ndarray:
    """Ends of the matches of ``_ZH_END`` (a terminator run plus the closers right after it),
    computed on the terminator/closer positions only: a closer belongs to a match when the
    nearest character before it that is not a closer is a terminator; a match ends where the
    next character does not continue it (a terminator continues with a terminator or a closer,
    a closer only with a closer)."""
    pos = np.flatnonzero(cls & (_CLS_ZH_TERM | _CLS_ZH_CLOSE))
    if not pos.size:
        return pos
    c = cls[pos]
    term = (c & _CLS_ZH_TERM) != 0
    if not term.any():
        return np.zeros(0, dtype=np.int64)
    close = ~term
    adjacent = np.zeros(len(pos), dtype=bool)           # the previous listed position is pos - 1
    adjacent[1:] = pos[1:] == pos[:-1] + 1
    # a closer is in a match when, going back over adjacent closers, a terminator comes first
    first_of_block = ~(close & adjacent)                 # where such a backward walk stops
    idx = np.arange(len(pos))
    anchor = np.maximum.accumulate(np.where(first_of_block, idx, 0))
    in_match = term | (close & adjacent & term[anchor])
    nxt_adjacent = np.zeros(len(pos), dtype=bool)
    nxt_adjacent[:-1] = adjacent[1:]
    nxt_term = np.zeros(len(pos), dtype=bool)
    nxt_term[:-1] = term[1:]
    continues = nxt_adjacent & (term | ~nxt_term)        # T → T/C, C → C
    return pos[in_match & ~continues] + 1


def _en_boundaries(text: str) -> list[int]:
    """Rules (written for speed; compared with pysbd in the tests):

    - a boundary needs ``.``, ``!``, ``?`` or ``…`` (plus closing quotes/brackets) followed by
      whitespace, so ``3.14``, ``JD.com`` and ``e.g.,`` never split;
    - no split when the next word starts lowercase (``"Really?" she asked``; ``etc. and``);
    - an ellipsis splits only before an uppercase letter (``Wait... What`` vs ``said... and``);
    - no split after a title or Latin abbreviation (:data:`EN_NEVER_FINAL`: Dr. Mr. St. e.g.
      i.e. …), after ``No.``/``Fig.``/``pp.`` before a number, after an initial
      (``John F. Kennedy``), or after a list number at the start of a line (``1. First``).
      Sentence-final abbreviations (``etc.``, ``Inc.``, ``U.S.``, ``D.C.``, ``a.m.``/``p.m.``)
      split before a capitalised word, like ordinary words.
    """
    out: list[int] = []
    for m in _EN_END.finditer(text):
        term, closers, nxt = m.groups()
        if nxt.islower():
            continue
        if term == ".":
            if not closers:
                s = m.start()
                tail = text[s - 7 if s > 7 else 0:s].split()
                word = tail[-1] if tail and not text[s - 1].isspace() else ""
                if len(word) < 7:  # longer: an ordinary word (no abbreviation is that long)
                    bare = word.lstrip(_OPENERS)
                    low = bare.lower()
                    if low in EN_NEVER_FINAL or (low in EN_NUMBER_ABBREVIATIONS and nxt.isdigit()):
                        continue
                    if len(bare) == 1 and bare.isupper():
                        continue  # an initial
                    if bare.isdigit() and len(bare) <= 3:
                        at = s - len(word)
                        if at == 0 or text[at - 1] == "\n":
                            continue  # "1. First step" at the start of a line
        elif not term.strip(".…") and ("…" in term or len(term) >= 3) and not nxt.isupper():
            continue  # an ellipsis ("..." or "…") before anything but a capital
        out.append(m.end())
    return out


def _merge(text: str, *lists: list[int]) -> list[int]:
    """Sorted unique interior boundaries, none leaving a whitespace-only last sentence."""
    end = _content_end(text)
    merged = sorted(set().union(*lists)) if len(lists) > 1 else lists[0]
    return [b for b in merged if 0 < b < end]


def _merge_cls(nonspace: np.ndarray, *arrays: np.ndarray) -> np.ndarray:
    """:func:`_merge` on arrays (sorted unique, 0 < b < content end)."""
    if len(arrays) == 1:
        merged = arrays[0]
    else:
        merged = np.sort(np.concatenate(arrays))
        if merged.size > 1:
            merged = merged[np.concatenate(([True], merged[1:] != merged[:-1]))]
    end = _content_end_cls(nonspace)
    lo, hi = np.searchsorted(merged, 1), np.searchsorted(merged, end)
    return np.asarray(merged[lo:hi], dtype=np.int64)


def _boundary_array(text: str, lang: str) -> np.ndarray:
    """Interior boundaries of a built-in splitter as an int64 array (the chunker's fast path)."""
    if lang not in ("zh", "code", "en", "mixed"):
        return np.asarray(_BUILTIN_BOUNDARIES[lang](text), dtype=np.int64)
    cls = _classes(text)
    nonspace = _nonspace(cls)
    newlines = _newline_boundaries_cls(cls, nonspace)
    if lang == "zh":
        return _merge_cls(nonspace, _zh_boundaries_cls(cls), newlines)
    if lang == "code":
        return _merge_cls(nonspace, newlines)
    en = np.asarray(_en_boundaries(text), np.int64)
    if lang == "en":
        return _merge_cls(nonspace, en, newlines)
    return _merge_cls(nonspace, _zh_boundaries_cls(cls), en, newlines)


def zh_boundaries(text: str) -> list[int]:
    """Chinese: after 。！？；!?; (and any closing quotes/brackets after them) and before every
    whitespace run that holds a newline."""
    return _boundary_array(text, "zh").tolist()


def en_boundaries(text: str) -> list[int]:
    """English: the rules of :func:`_en_boundaries` plus newlines."""
    return _boundary_array(text, "en").tolist()


def code_boundaries(text: str) -> list[int]:
    """Code: one line per sentence (the newline and the next line's indentation start it)."""
    return _boundary_array(text, "code").tolist()


def mixed_boundaries(text: str) -> list[int]:
    """Mixed Chinese/English web text: the zh and the en rules together."""
    return _boundary_array(text, "mixed").tolist()


def spans_from_boundaries(text: str, boundaries: Sequence[int]) -> list[tuple[int, int]]:
    """Interior boundaries → spans that tile ``text`` (``[]`` for an empty text)."""
    if not text:
        return []
    cuts = [0, *boundaries, len(text)]
    return [(cuts[i], cuts[i + 1]) for i in range(len(cuts) - 1)]


def check_tiling(text: str, spans: Sequence[tuple[int, int]], who: str = "splitter") -> None:
    """Raise ValueError unless ``spans`` tile ``text``: first start 0, last end len(text),
    each end equal to the next start, none empty."""
    if not text:
        if spans:
            raise ValueError(f"{who}: returned {len(spans)} span(s) for an empty text")
        return
    prev = 0
    for k, span in enumerate(spans):
        if len(span) != 2:
            raise ValueError(f"{who}: span {k} is {span!r}, expected (start, end)")
        s, e = int(span[0]), int(span[1])
        if s != prev or e <= s:
            raise ValueError(f"{who}: span {k} is ({s}, {e}) after end {prev}; spans must tile the text "
                             "without gaps, overlaps or empty spans")
        prev = e
    if prev != len(text):
        raise ValueError(f"{who}: spans end at {prev}, the text has {len(text)} characters")


_PYSBD: dict[str, Any] = {}


def en_pysbd_boundaries(text: str) -> list[int]:
    """English with pysbd (a reference: accurate on many edge cases, about 100x slower than
    the regex rules). Whitespace between sentences goes to the next one, as in the rules."""
    if "seg" not in _PYSBD:
        import pysbd

        _PYSBD["seg"] = pysbd.Segmenter(language="en", clean=False)
    cuts, pos = [], 0
    for sent in _PYSBD["seg"].segment(text):
        content = sent.strip()
        if not content:
            continue
        at = text.find(content, pos)
        if at < 0:
            raise ValueError(f"pysbd returned a sentence not found in the text after offset {pos}: {content[:60]!r}")
        pos = at + len(content)
        cuts.append(pos)
    return _merge(text, cuts[:-1], _newline_boundaries(text))


def _spans_fn(boundaries: Callable[[str], list[int]]) -> SplitFn:
    def split(text: str) -> list[tuple[int, int]]:
        return spans_from_boundaries(text, boundaries(text))
    split.__name__ = boundaries.__name__.replace("_boundaries", "_spans")
    split.__doc__ = boundaries.__doc__
    return split


# built-in splitters; DocumentChunker uses their boundary functions directly (no span lists)
_BUILTIN_BOUNDARIES: dict[str, Callable[[str], list[int]]] = {
    "zh": zh_boundaries, "en": en_boundaries, "code": code_boundaries, "mixed": mixed_boundaries,
    "en_pysbd": en_pysbd_boundaries,
}
SPLITTERS: dict[str, SplitFn] = {lang: _spans_fn(fn) for lang, fn in _BUILTIN_BOUNDARIES.items()}
_BUILTIN_SPLITTERS = {lang: SPLITTERS[lang] for lang in _BUILTIN_BOUNDARIES}


def register_splitter(lang: str, fn: SplitFn) -> None:
    """Add (or replace) the splitter for a source language. ``fn(text)`` returns character
    spans that tile the text; they are checked on every call."""
    if not isinstance(lang, str) or not lang:
        raise ValueError(f"language name must be a non-empty string, got {lang!r}")
    if not callable(fn):
        raise TypeError(f"splitter for {lang!r} must be callable, got {type(fn).__name__}")
    SPLITTERS[lang] = fn


def _splitter(lang: str) -> SplitFn:
    try:
        return SPLITTERS[lang]
    except KeyError:
        raise ValueError(f"no sentence splitter for language {lang!r}; known: {sorted(SPLITTERS)} "
                         "(add one with register_splitter)") from None


def sentence_boundaries(text: str, lang: str) -> list[int]:
    """Interior sentence boundaries (character offsets, increasing, 0 < b < len(text))."""
    fn = _splitter(lang)
    if _BUILTIN_SPLITTERS.get(lang) is fn:
        return _BUILTIN_BOUNDARIES[lang](text)
    spans = fn(text)
    check_tiling(text, spans, f"splitter {lang!r}")
    return [int(e) for _, e in spans[:-1]]


def _sentence_boundary_array(text: str, lang: str) -> np.ndarray:
    """:func:`sentence_boundaries` as an int64 array (built-in splitters without lists)."""
    fn = _splitter(lang)
    if _BUILTIN_SPLITTERS.get(lang) is fn:
        return _boundary_array(text, lang)
    return np.asarray(sentence_boundaries(text, lang), dtype=np.int64)


def split_sentences(text: str, lang: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``; they tile it exactly
    (first start 0, last end ``len(text)``, each end the next start, none empty)."""
    fn = _splitter(lang)
    spans = fn(text)
    if _BUILTIN_SPLITTERS.get(lang) is not fn:
        check_tiling(text, spans, f"splitter {lang!r}")
    return [(int(s), int(e)) for s, e in spans]


# ------------------------------------------------------------------------ greedy ----------
def _check_budget(seq_length: int, bos: bool, eos: bool) -> None:
    if isinstance(seq_length, bool) or not isinstance(seq_length, (int, np.integer)):
        raise TypeError(f"seq_length must be an int, got {type(seq_length).__name__}")
    if seq_length < 2:
        raise ValueError(f"seq_length must be >= 2, got {seq_length}")
    if seq_length < 1 + int(bos) + int(eos):
        raise ValueError(f"seq_length {seq_length} is too small: a sample needs room for BOS ({int(bos)}) + "
                         f"EOS ({int(eos)}) + at least one token")


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown chunking strategy {strategy!r}; known: {list(STRATEGIES)}")


def greedy_chunk(lengths: Sequence[int], seq_length: int, strategy: str = "knowlm",
                 bos: bool = True, eos: bool = True) -> list[tuple[int, int]]:
    """Group consecutive units (sentences) of a document into samples; returns ``[(start,
    end)]`` unit ranges. ``lengths[i]`` is unit i's token count; BOS (if ``bos``) costs 1 in a
    sample that starts at unit 0, EOS (if ``eos``) 1 in a sample that ends at the last unit.

    ``disjoint``: start at the first uncovered unit and add units while they fit. The samples
    tile the document, and their number is the minimum possible (the classic "greedy stays
    ahead" argument; and no cover with overlapping samples can be smaller, since shrinking
    overlapping samples to a tiling keeps them within budget).

    ``knowlm`` (KnowLM's ``dsmt_encode``): the same forward fill, then the sample is extended
    BACKWARD into preceding units while it still fits. The k-th sample therefore ends where the
    k-th disjoint sample ends and is the longest window ending there that fits; the count stays
    minimal; consecutive samples may overlap (never three at once, see the tests).

    A unit that alone exceeds the budget is an error: split long sentences first
    (:class:`DocumentChunker` does, at token boundaries).
    """
    _check_strategy(strategy)
    _check_budget(seq_length, bos, eos)
    raw = lengths.tolist() if isinstance(lengths, np.ndarray) else [int(x) for x in lengths]
    cost = list(raw)
    n = len(cost)
    if n == 0:
        return []
    if min(cost) < 0:
        i = min(range(n), key=cost.__getitem__)
        raise ValueError(f"unit {i} of {n} has a negative length {cost[i]}")
    cost[0] += int(bos)
    cost[-1] += int(eos)
    if max(cost) > seq_length:
        i = max(range(n), key=cost.__getitem__)
        raise ValueError(f"unit {i} of {n} needs {cost[i]} tokens (BOS/EOS included) > seq_length {seq_length}; "
                         "split long units at token boundaries first (DocumentChunker does)")
    return _greedy(raw, seq_length, strategy == "knowlm", bos, eos)


def _greedy(lengths: "list[int] | np.ndarray", seq_length: int, backward: bool, bos: bool,
            eos: bool) -> list[tuple[int, int]]:
    """The loop of :func:`greedy_chunk` without argument checks (units must fit, lengths >= 0).

    Each step is a binary search on the running totals: a sample starting at unit i ends at the
    last j with ``total[j] - total[i] <= seq_length`` and (``knowlm``) is extended back to the
    first s with ``total[j] - total[s] <= seq_length`` — the same as adding units one by one
    (lengths are never negative), with Python work per sample instead of per unit."""
    n = len(lengths)
    if n == 0:
        return []
    cum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=cum[1:])
    if eos:
        cum[n] += 1
    if bos:
        cum[1:] += 1
    c = cum.tolist()
    out = []
    i = 0
    bisect_right, bisect_left = bisect.bisect_right, bisect.bisect_left
    while i < n:
        j = bisect_right(c, c[i] + seq_length, i + 1) - 1
        s = bisect_left(c, c[j] - seq_length, 0, i) if backward else i
        out.append((s, j))
        i = j
    return out


# ------------------------------------------------------------------------ samples ---------
@dataclass(frozen=True, eq=False)  # eq on numpy ids would be ambiguous; samples compare by identity
class Sample:
    """One training sample of a document.

    ``ids``: int32 token ids (read-only), BOS/EOS included where present;
    ``char_start``/``char_end``: the span of the document text it covers;
    ``token_start``/``token_end``: its range in the document's one-pass encoding (BOS/EOS
    excluded; -1 when unknown) — used to count overlap.
    """

    ids: np.ndarray
    char_start: int
    char_end: int
    bos: bool
    eos: bool
    token_start: int = -1
    token_end: int = -1

    def __len__(self) -> int:
        return len(self.ids)


class SampleVerificationError(AssertionError):
    """A sample's ids differ from a direct encoding of its text (the message names it)."""


_BIG = 1 << 32  # length given to ids the offset tables cannot place (<unk>, control; partial bytes)


def _char_byte_starts(text: str) -> np.ndarray:
    """``starts[i]`` = UTF-8 byte offset of character i; ``starts[len(text)]`` = byte length."""
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    blen = 1 + (cp >= 0x80).astype(np.int64) + (cp >= 0x800) + (cp >= 0x10000)
    starts = np.zeros(len(cp) + 1, dtype=np.int64)
    np.cumsum(blen, out=starts[1:])
    return starts


def _bytes_to_chars(ends: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
    """UTF-8 byte offsets → character offsets (-1 stays -1; an offset inside a character → -1)."""
    if starts is None:  # ASCII text: the same numbers
        return ends
    pos = np.minimum(np.searchsorted(starts, np.maximum(ends, 0)), len(starts) - 1)
    return np.where((ends >= 0) & (starts[pos] == ends), pos, -1)


class DocumentChunker:
    """Document text → :class:`Sample` list with one SentencePiece encoding per document.

    ``chunk(text, lang)`` splits sentences with :func:`sentence_boundaries`, encodes ``text``
    once, maps token ends to character offsets, keeps the sentence boundaries that fall between
    two tokens, cuts over-long units at token boundaries and groups units with
    :func:`greedy_chunk`. Construction only loads the model and builds per-id character and
    byte length tables (a fraction of a second for a 32k vocabulary; each worker builds its own).
    """

    def __init__(self, model: "str | os.PathLike | Any", seq_length: int, strategy: str = "knowlm",
                 add_bos: bool = True, add_eos: bool = True):
        _check_strategy(strategy)
        _check_budget(seq_length, add_bos, add_eos)
        self.sp = spm.load_processor(model)
        self.seq_length = int(seq_length)
        self.strategy = strategy
        self.add_bos, self.add_eos = bool(add_bos), bool(add_eos)
        self.bos_id, self.eos_id = self.sp.bos_id(), self.sp.eos_id()
        if (add_bos and self.bos_id < 0) or (add_eos and self.eos_id < 0):
            raise ValueError(f"the tokenizer has no {'BOS' if add_bos and self.bos_id < 0 else 'EOS'} id; "
                             "pass add_bos/add_eos=False or use a model with one")
        proto = spm.load_proto(self.sp)
        norm = proto.normalizer_spec
        if norm.remove_extra_whitespaces:
            raise ValueError("the tokenizer removes extra whitespace (normalizer_spec.remove_extra_whitespaces); "
                             "a sample that starts mid-document could then not equal the encoding of its text. "
                             "Train with remove_extra_whitespaces=False (LLaMA's setting).")
        self.add_dummy_prefix = bool(norm.add_dummy_prefix)
        # the length-table fast paths are exact only when normalisation leaves the text unchanged
        self.fast_offsets = norm.name == "identity" and not norm.precompiled_charsmap \
            and not proto.trainer_spec.treat_whitespace_as_suffix
        # per id: characters and UTF-8 bytes of the text a piece stands for (_BIG: cannot be placed)
        n = self.sp.get_piece_size()
        self.char_lengths = np.full(n, _BIG, dtype=np.int64)
        self.byte_lengths = np.full(n, _BIG, dtype=np.int64)
        self._is_byte = np.zeros(n, dtype=bool)
        self._is_continuation = np.zeros(n, dtype=bool)  # byte pieces 0x80-0xBF: inside a character
        # one pass over the parsed model (piece types: 1 normal, 2 unknown, 3 control, 4 user
        # defined, 5 unused, 6 byte) instead of five processor calls per id
        if len(proto.pieces) != n:  # pragma: no cover - a processor and its proto always agree
            raise ValueError(f"the model proto has {len(proto.pieces)} pieces, the processor {n}")
        for i, sp_piece in enumerate(proto.pieces):
            kind = sp_piece.type
            if kind == 6:
                self.byte_lengths[i] = 1
                self._is_byte[i] = True
                value = int(sp_piece.piece[3:5], 16)
                if value < 0x80 or 0xC0 <= value <= 0xF7:
                    self.char_lengths[i] = 1  # an ASCII character (<0x0A>) or the first byte of one
                elif value <= 0xBF:
                    self.char_lengths[i] = 0
                    self._is_continuation[i] = True
            elif kind in (1, 4):
                piece = sp_piece.piece
                self.char_lengths[i] = len(piece)
                self.byte_lengths[i] = len(piece.replace("▁", " ").encode("utf-8"))
        try:
            self.sp.encode("a", out_type="numpy")
            self._numpy_ids = True
        except (ValueError, TypeError):  # older sentencepiece
            self._numpy_ids = False
        self.path_counts: Counter = Counter()  # documents per offsets path (see token_char_ends)

    # -------------------------------------------------------------- token offsets ----
    def _encode_ids(self, text: str) -> np.ndarray:
        """int32 ids, read-only (samples hold views of them)."""
        if self._numpy_ids:
            ids = self.sp.encode(text, out_type="numpy")
        else:
            ids = np.asarray(self.sp.encode(text), dtype=np.int32)
        ids.flags.writeable = False
        return ids

    def token_char_ends(self, text: str, path: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
        """Encode ``text`` once; returns ``(ids, char_ends, path_used)``: ``char_ends[k]`` is the
        character offset where token k ends, or -1 when it ends inside a character (a leading
        byte of a byte-fallback character: no cut there).

        Three ways to find the offsets, fastest first. ``"auto"`` starts with ``"chars"`` when
        the model's normalisation is the identity (LLaMA's; else ``"proto"``) and falls through
        to the next way whenever the total does not add up; :attr:`path_counts` counts the way
        each document took. All three give identical arrays (tested).

        - ``"chars"``: a per-id table of how many characters a piece stands for ("▁" is the one
          space it replaced), summed with numpy, minus the dummy prefix. A byte piece counts 1
          if it starts a character (``<0x0A>``, ``<0xE4>``) and 0 if it continues one, and a
          token followed by a continuation byte ends inside a character (-1). An <unk> (its
          length is unknown) breaks the total → ``"bytes"``.
        - ``"bytes"``: the same with UTF-8 byte lengths (a byte piece ``<0xNN>`` is one byte),
          then byte offsets → character offsets (kept as an independent cross-check; it fails
          where ``"chars"`` does, and on a literal "▁" in the text: 3 bytes counted as 1).
        - ``"proto"``: the offsets SentencePiece reports in ``encode(out_type="proto")`` (one
          Python object per token: the slowest).
        """
        if path not in ("auto", "chars", "bytes", "proto"):
            raise ValueError(f"path must be 'auto', 'chars', 'bytes' or 'proto', got {path!r}")
        want = ("chars" if self.fast_offsets else "proto") if path == "auto" else path
        dummy = int(self.add_dummy_prefix)
        ids = None
        if want in ("chars", "bytes"):
            ids = self._encode_ids(text)
            if len(ids) == 0:
                return ids, np.zeros(0, np.int64), want
        if want == "chars":
            ends = self.char_lengths[ids].cumsum()
            if int(ends[-1]) - len(text) == dummy:
                if dummy:
                    ends -= dummy
                inside = self._is_continuation[ids]  # a token followed by a continuation byte
                if inside.any():                     # ends inside a character
                    ends[:-1][inside[1:]] = -1
                self.path_counts["chars"] += 1
                return ids, ends, "chars"
            want = "bytes"
        if want == "bytes":
            ends = self.byte_lengths[ids].cumsum()
            starts = None if text.isascii() else _char_byte_starts(text)
            n_bytes = len(text) if starts is None else int(starts[-1])
            if int(ends[-1]) - n_bytes == dummy:
                self.path_counts["bytes"] += 1
                return ids, _bytes_to_chars(ends - dummy if dummy else ends, starts), "bytes"
        self.path_counts["proto"] += 1
        try:
            proto = self.sp.encode(text, out_type="proto")
        except ValueError:  # sentencepiece < 0.2.1 calls it immutable_proto
            proto = self.sp.encode(text, out_type="immutable_proto")
        pieces = proto.pieces
        ids = np.fromiter((p.id for p in pieces), dtype=np.int32, count=len(pieces))
        ends = np.fromiter((p.end for p in pieces), dtype=np.int64, count=len(pieces))
        if len(ids):  # the proto gives the leading bytes of a character zero width at its start
            ends[self._is_byte[ids] & (np.diff(ends, prepend=-1) == 0)] = -1
        return ids, _bytes_to_chars(ends, None if text.isascii() else _char_byte_starts(text)), "proto"

    @property
    def fallbacks(self) -> int:
        """Documents whose offsets needed the slow proto path."""
        return self.path_counts["proto"]

    # -------------------------------------------------------------- units ------------
    def units(self, text: str, lang: str) -> tuple[np.ndarray, list[int], list[int]]:
        """``(ids, token_cuts, char_cuts)``: unit u is tokens ``token_cuts[u]:token_cuts[u+1]``
        and text ``char_cuts[u]:char_cuts[u+1]``. Units are sentences (merged where a token
        straddles their boundary) and pieces of over-long sentences."""
        ids, token_cuts, char_cuts = self._units(text, lang, *self.token_char_ends(text))
        return ids, token_cuts.tolist(), char_cuts.tolist()

    def _units(self, text: str, lang: str, ids: np.ndarray, char_ends: np.ndarray, used: str = ""):
        """The units as int64 arrays, planned with array operations: the boundaries are looked
        up in the (non-decreasing) token ends with one ``searchsorted``; only over-long units
        are cut in a Python loop."""
        n_tok = len(ids)
        if n_tok == 0:
            _splitter(lang)
            return ids, np.zeros(1, np.int64), np.zeros(1, np.int64)
        bounds = _sentence_boundary_array(text, lang)
        if bounds.size:
            # non-decreasing ends (a -1 inside a character becomes the character's start, so
            # the first token ending at a character boundary is the one that really ends there)
            search = char_ends if char_ends.min() >= 0 else np.maximum.accumulate(char_ends)
            k = np.searchsorted(search, bounds, side="left")
            inside = k < n_tok
            k, bounds = k[inside], bounds[inside]
            hit = search[k] == bounds  # a token ends exactly at the boundary
            k, bounds = k[hit], bounds[hit]
        else:
            k = bounds
        token_cuts = np.empty(len(k) + 2, dtype=np.int64)
        token_cuts[0], token_cuts[1:-1], token_cuts[-1] = 0, k + 1, n_tok
        char_cuts = np.empty(len(k) + 2, dtype=np.int64)
        char_cuts[0], char_cuts[1:-1], char_cuts[-1] = 0, bounds, len(text)
        cost = np.diff(token_cuts)
        cost[0] += self.add_bos
        cost[-1] += self.add_eos
        if cost.max() > self.seq_length:
            token_cuts, char_cuts = self._split_long(token_cuts, char_cuts, char_ends, n_tok)
        return ids, token_cuts, char_cuts

    def _split_long(self, token_cuts: np.ndarray, char_cuts: np.ndarray, ce: np.ndarray, n_tok: int):
        """Cut units that exceed the budget into pieces at token boundaries that are also
        character boundaries; each piece as long as fits (BOS/EOS counted where they go)."""
        L, bos, eos = self.seq_length, self.add_bos, self.add_eos
        starts, ends = token_cuts[:-1], token_cuts[1:]
        need = (ends - starts) + (bos & (starts == 0)) + (eos & (ends == n_tok)) > L
        at, new_tc, new_cc = [], [], []
        for u in np.flatnonzero(need).tolist():
            pos, tb, cpos = int(token_cuts[u]), int(token_cuts[u + 1]), int(char_cuts[u])
            last = tb == n_tok
            while True:
                cap = L - int(bos and pos == 0)
                if tb - pos <= cap - int(eos and last):
                    break
                c = min(pos + cap, tb - 1)
                while c > pos and not ce[c - 1] > cpos:  # -1 (inside a character) fails too
                    c -= 1
                if c == pos:
                    raise ValueError(f"seq_length {L} cannot hold the tokens of one character at character "
                                     f"{cpos} (a byte-fallback character needs up to 4 tokens)")
                pos, cpos = c, int(ce[c - 1])
                at.append(u + 1)
                new_tc.append(pos)
                new_cc.append(cpos)
        return np.insert(token_cuts, at, new_tc), np.insert(char_cuts, at, new_cc)

    # -------------------------------------------------------------- samples ----------
    def _plan(self, text: str, lang: str):
        """``(ids, token_cuts, char_cuts, groups)`` or ``(ids, None, None, None)`` when the
        whole document fits one sample (no need to find sentences)."""
        ids, char_ends, used = self.token_char_ends(text)
        if len(ids) + self.add_bos + self.add_eos <= self.seq_length:
            return ids, None, None, None
        ids, token_cuts, char_cuts = self._units(text, lang, ids, char_ends, used)
        groups = _greedy(np.diff(token_cuts), self.seq_length, self.strategy == "knowlm", self.add_bos,
                         self.add_eos)
        return ids, token_cuts, char_cuts, groups

    def chunk(self, text: str, lang: str) -> list[Sample]:
        """Samples of ``text`` (``[]`` for an empty text), in document order."""
        _splitter(lang)  # reject an unknown language whatever the text
        if not text:
            return []
        ids, token_cuts, char_cuts, groups = self._plan(text, lang)
        if groups is None:
            n_ids = len(ids)
            ids = self._with_bos_eos(ids, self.add_bos, self.add_eos)
            return [Sample(ids, 0, len(text), self.add_bos, self.add_eos, 0, n_ids)] if len(ids) else []
        n_units = len(token_cuts) - 1
        tc, cc = token_cuts.tolist(), char_cuts.tolist()
        out = []
        for s, e in groups:
            ts, te = tc[s], tc[e]
            bos = self.add_bos and s == 0
            eos = self.add_eos and e == n_units
            out.append(Sample(self._with_bos_eos(ids[ts:te], bos, eos), cc[s], cc[e], bos, eos, ts, te))
        return out

    def chunk_flat(self, text: str, lang: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples of :meth:`chunk` as flat arrays, cheap to send between processes:
        ``(ids, lengths, flags)`` = all sample ids back to back (int32, BOS/EOS included), the
        token count of each sample and its flags (1 = BOS, 2 = EOS)."""
        _splitter(lang)
        if not text:
            return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.uint8)
        ids, token_cuts, char_cuts, groups = self._plan(text, lang)
        bos_id, eos_id = self.bos_id, self.eos_id
        if groups is None:
            n = len(ids)
            if n == 0:
                return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.uint8)
            b, e = self.add_bos, self.add_eos
            flat = np.empty(n + b + e, dtype=np.int32)
            flat[b:b + n] = ids
            if b:
                flat[0] = bos_id
            if e:
                flat[-1] = eos_id
            return flat, np.array([len(flat)], np.int64), np.array([b | (2 * e)], np.uint8)
        n_units = len(token_cuts) - 1
        tc = token_cuts.tolist()
        spans = [(tc[s], tc[e], self.add_bos and s == 0, self.add_eos and e == n_units) for s, e in groups]
        lengths = np.array([te - ts + b + e for ts, te, b, e in spans], dtype=np.int64)
        flags = np.array([int(b) | (2 * int(e)) for _, _, b, e in spans], dtype=np.uint8)
        flat = np.empty(int(lengths.sum()), dtype=np.int32)
        p = 0
        for ts, te, b, e in spans:
            if b:
                flat[p] = bos_id
                p += 1
            flat[p:p + te - ts] = ids[ts:te]
            p += te - ts
            if e:
                flat[p] = eos_id
                p += 1
        return flat, lengths, flags

    def _with_bos_eos(self, ids: np.ndarray, bos: bool, eos: bool) -> np.ndarray:
        """``ids`` (a read-only view of the document's ids) with BOS/EOS around it, read-only."""
        if not (bos or eos) or not len(ids):
            return ids
        out = np.empty(len(ids) + bos + eos, dtype=np.int32)
        out[bos:bos + len(ids)] = ids
        if bos:
            out[0] = self.bos_id
        if eos:
            out[-1] = self.eos_id
        out.flags.writeable = False
        return out

    def verify(self, text: str, samples: list[Sample]) -> None:
        """:func:`verify_samples` with this chunker's model and budget."""
        verify_samples(self, text, samples, seq_length=self.seq_length)


# ------------------------------------------------------------------------ verification ----
class _Verifier:
    def __init__(self, model):
        self.sp = spm.load_processor(model)
        self.sp_continue = spm.without_dummy_prefix(self.sp)


_VERIFIERS: "OrderedDict[Any, _Verifier]" = OrderedDict()


def _verifier(model) -> _Verifier:
    if isinstance(model, DocumentChunker):
        v = getattr(model, "_verifier", None)
        if v is None:
            v = model._verifier = _Verifier(model.sp)
        return v
    key = str(Path(model).resolve()) if isinstance(model, (str, os.PathLike)) else id(model)
    if key not in _VERIFIERS:
        _VERIFIERS[key] = _Verifier(model)  # holds the processor, so id() is not reused
        while len(_VERIFIERS) > 4:
            _VERIFIERS.popitem(last=False)
    return _VERIFIERS[key]


def verify_samples(model, text: str, samples: list[Sample], seq_length: int | None = None) -> None:
    """Check every sample against a direct encoding of its text; raise
    :class:`SampleVerificationError` (an AssertionError) or ValueError naming the sample.

    The definition: a sample that starts at the document start must equal
    ``sp.encode(text[char_start:char_end])`` — the dummy prefix "▁" included, exactly as LLaMA
    encodes a document — and a sample that starts mid-document must equal the encoding of its
    text with the dummy prefix switched off (a second processor from the same ModelProto with
    ``normalizer_spec.add_dummy_prefix = False``), plus BOS/EOS where flagged. Why this is the
    right definition: the model should see, in every sample, the tokens it would see for that
    stretch of the document in a one-pass encoding — a mid-document text has no dummy prefix
    (its leading space, if any, is real text and already part of its first token), so encoding
    it with the prefix would invent a "▁" the document never had; and equality with an
    independent encoding of the sample's own text proves that no token was cut in half and no
    merge across the cut was lost. (SentencePiece's whitespace pre-tokenisation and its BPE
    merges are local, which is why a cut at a token boundary of the one-pass encoding passes
    this check; the check is what makes sure, for any model.)

    Also checked: BOS only at the document start, EOS only at its end, samples in order and
    covering the whole text without gaps, and (if given) no sample longer than ``seq_length``.
    """
    v = _verifier(model)
    if seq_length is None and isinstance(model, DocumentChunker):
        seq_length = model.seq_length
    bos_id, eos_id = v.sp.bos_id(), v.sp.eos_id()
    if not text:
        if samples:
            raise ValueError(f"{len(samples)} sample(s) for an empty text")
        return
    if not samples:
        raise ValueError(f"no samples for a text of {len(text)} characters")
    covered = 0
    for k, smp in enumerate(samples):
        where = f"sample {k} of {len(samples)} (chars {smp.char_start}:{smp.char_end})"
        if not 0 <= smp.char_start < smp.char_end <= len(text):
            raise ValueError(f"{where}: span outside the text of {len(text)} characters or empty")
        if smp.char_start > covered:
            raise ValueError(f"{where}: characters {covered}:{smp.char_start} are in no sample")
        if k and smp.char_start <= samples[k - 1].char_start:
            raise ValueError(f"{where}: samples are not in document order")
        covered = max(covered, smp.char_end)
        if smp.bos and smp.char_start != 0:
            raise SampleVerificationError(f"{where}: BOS on a sample that does not start the document")
        if smp.eos and smp.char_end != len(text):
            raise SampleVerificationError(f"{where}: EOS on a sample that does not end the document")
        if seq_length is not None and len(smp.ids) > seq_length:
            raise SampleVerificationError(f"{where}: {len(smp.ids)} tokens > seq_length {seq_length}")
        sp = v.sp if smp.char_start == 0 else v.sp_continue
        expected = ([bos_id] if smp.bos else []) + sp.encode(text[smp.char_start:smp.char_end]) + \
            ([eos_id] if smp.eos else [])
        got = np.asarray(smp.ids).tolist()
        if got != expected:
            i = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            pieces = lambda xs: [v.sp.id_to_piece(int(x)) for x in xs[max(0, i - 2):i + 3]]  # noqa: E731
            raise SampleVerificationError(
                f"{where}: ids differ from a direct encoding of its text at token {i} "
                f"({len(got)} vs {len(expected)} tokens): got {pieces(got)}, expected {pieces(expected)}")
    if covered != len(text):
        raise ValueError(f"characters {covered}:{len(text)} are in no sample")


# ------------------------------------------------------------------------ report ----------
def chunking_report(samples_per_doc: Iterable[list[Sample]], seq_length: int, bins: int = 16) -> dict:
    """Summary of chunked documents (streams; keeps one int per sample):

    ``samples``, ``documents`` (``empty_documents`` of them without samples), ``tokens`` (all
    sample tokens, BOS/EOS included), ``packing_efficiency`` = tokens / (samples × seq_length),
    ``overlap_tokens`` (tokens that appear in more than one sample of their document: the
    price of the ``knowlm`` strategy's backward extension), ``overlap_fraction`` =
    overlap_tokens / tokens, ``unique_packing_efficiency`` = (tokens − overlap_tokens) /
    (samples × seq_length) (the share of the budget filled with text not seen elsewhere),
    ``full_samples`` (exactly seq_length long), ``samples_per_doc`` (histogram ``{count:
    documents}`` and mean) and ``length_histogram`` (``bins`` equal bins over 0..seq_length).
    """
    lengths: list[int] = []
    per_doc: Counter = Counter()
    documents = empty = overlap = 0
    for samples in samples_per_doc:
        documents += 1
        per_doc[len(samples)] += 1
        empty += not samples
        prev_end = None
        for smp in samples:
            lengths.append(len(smp.ids))
            if smp.token_start < 0 or smp.token_end < 0:
                raise ValueError("samples without token ranges (token_start/token_end): cannot count overlap")
            if prev_end is not None and smp.token_start < prev_end:
                overlap += prev_end - smp.token_start
            prev_end = smp.token_end if prev_end is None else max(prev_end, smp.token_end)
    arr = np.asarray(lengths, dtype=np.int64)
    tokens = int(arr.sum())
    counts, edges = np.histogram(arr, bins=bins, range=(0, seq_length))
    n = len(arr)
    return {
        "seq_length": int(seq_length),
        "documents": documents,
        "empty_documents": empty,
        "samples": n,
        "tokens": tokens,
        "unique_tokens": tokens - overlap,
        "packing_efficiency": tokens / (n * seq_length) if n else 0.0,
        "unique_packing_efficiency": (tokens - overlap) / (n * seq_length) if n else 0.0,
        "overlap_tokens": overlap,
        "overlap_fraction": overlap / tokens if tokens else 0.0,
        "full_samples": int(np.count_nonzero(arr == seq_length)),
        "mean_sample_tokens": float(arr.mean()) if n else 0.0,
        "samples_per_doc": {"mean": n / documents if documents else 0.0,
                            "histogram": {str(k): per_doc[k] for k in sorted(per_doc)}},
        "length_histogram": {"bin_edges": [float(x) for x in edges], "counts": [int(c) for c in counts]},
    }


# ------------------------------------------------------------------------ baseline --------
def encode_per_sentence(sp, text: str, lang: str, seq_length: int) -> list[list[int]]:
    """KnowLM's way (``dsmt_encode``), kept as a reference for comparisons: encode every
    sentence separately (so each gets its own dummy-prefix "▁"), BOS on the first and EOS on
    the last, cut over-long sentences, greedy-merge with backward extension, Python lists."""
    spans = split_sentences(text, lang)
    pieces: list[list[int]] = []
    for k, (s, e) in enumerate(spans):
        ids = sp.encode(text[s:e])
        if k == 0:
            ids = [sp.bos_id()] + ids
        if k == len(spans) - 1:
            ids = ids + [sp.eos_id()]
        pieces.extend(ids[i:i + seq_length] for i in range(0, len(ids), seq_length))
    samples = []
    for s, e in greedy_chunk([len(p) for p in pieces], seq_length, "knowlm", bos=False, eos=False):
        sample: list[int] = []
        for p in pieces[s:e]:
            sample.extend(p)
        samples.append(sample)
    return samples


# ------------------------------------------------------------------------ picture ---------
def plot_chunk_plan(lengths: Sequence[int], plans: dict[str, list[tuple[int, int]]], seq_length: int,
                    bos: bool = True, eos: bool = True, ax=None, label_units: bool = True):
    """Draw a document's units as a row of boxes along the token axis (BOS/EOS counted in the
    first/last unit, labelled e.g. "40+BOS" and "14+EOS") and, for each strategy in ``plans``, one
    bar per sample over the units it holds, labelled with its tokens. Samples alternate between two
    lanes so that an overlap with the previous sample is visible. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    cost = [int(x) for x in lengths]
    cost[0] += int(bos)
    cost[-1] += int(eos)
    x = np.concatenate([[0], np.cumsum(cost)])
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 0.8 + 0.9 * (len(plans) + 1)))
    for i, c in enumerate(cost):
        ax.barh(0, c, left=x[i], height=0.6, color="0.85", edgecolor="0.3")
        if label_units and c >= 0.03 * x[-1]:
            extra = "+".join(t for t, on in (("BOS", bos and i == 0), ("EOS", eos and i == len(cost) - 1)) if on)
            ax.text(x[i] + c / 2, 0, f"{lengths[i]}+{extra}" if extra else str(c), ha="center", va="center",
                    fontsize=7)
    ticks, names = [0], ["units"]
    for row, (name, plan) in enumerate(plans.items(), start=1):
        for k, (s, e) in enumerate(plan):
            y = -row - 0.22 * (1 if k % 2 else -1)
            ax.barh(y, x[e] - x[s], left=x[s], height=0.4, color=f"C{k % 10}", alpha=0.85, edgecolor="0.2")
            ax.text((x[s] + x[e]) / 2, y, f"{x[e] - x[s]}", ha="center", va="center", fontsize=7)
        ticks.append(-row)
        names.append(f"{name} ({len(plan)})")
    ax.set_yticks(ticks, names)
    ax.set_xlabel(f"token position in the document (seq_length {seq_length}; bar labels: tokens)")
    ax.set_xlim(0, x[-1])
    return ax
