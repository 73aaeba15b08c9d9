"""A frozen copy of the sentence splitters and the chunk planner as they were before the
planning was vectorised (commit 8d7226b: per-token Python lists, bisect, one loop step per
unit). tests/test_chunking_equivalence.py checks that the current DocumentChunker produces
exactly the same samples. Do not "improve" this file: it is the reference."""

from __future__ import annotations

import bisect
import itertools
import operator
import re

import numpy as np

from knowlm_utils.chunking import _en_boundaries  # unchanged English rules (per-match Python)

_ZH_TERMINATORS = "。！？；!?;"
_ZH_CLOSERS = "”’」』）】》〉)]}\"'"
_ZH_END = re.compile(f"[{re.escape(_ZH_TERMINATORS)}]+[{re.escape(_ZH_CLOSERS)}]*")


def newline_boundaries(text: str) -> list[int]:
    out: list[int] = []
    p = text.find("\n")
    while p >= 0:
        q = p
        while q and text[q - 1].isspace():
            q -= 1
        if not out or out[-1] != q:
            out.append(q)
        p = text.find("\n", p + 1)
    return out


def zh_matches(text: str) -> list[int]:
    return [m.end() for m in _ZH_END.finditer(text)]


def merge(text: str, *lists: list[int]) -> list[int]:
    end = len(text.rstrip())
    merged = sorted(set().union(*lists)) if len(lists) > 1 else lists[0]
    return [b for b in merged if 0 < b < end]


BOUNDARIES = {
    "zh": lambda t: merge(t, zh_matches(t), newline_boundaries(t)),
    "en": lambda t: merge(t, _en_boundaries(t), newline_boundaries(t)),
    "code": lambda t: merge(t, newline_boundaries(t)),
    "mixed": lambda t: merge(t, zh_matches(t), _en_boundaries(t), newline_boundaries(t)),
}


def greedy(lengths: list[int], seq_length: int, backward: bool, bos: bool, eos: bool) -> list[tuple[int, int]]:
    cost = list(lengths)
    n = len(cost)
    cost[0] += int(bos)
    cost[-1] += int(eos)
    out = []
    i = 0
    while i < n:
        total, j = cost[i], i + 1
        while j < n and total + cost[j] <= seq_length:
            total += cost[j]
            j += 1
        s = i
        if backward:
            while s > 0 and total + cost[s - 1] <= seq_length:
                s -= 1
                total += cost[s]
        out.append((s, j))
        i = j
    return out


def units(chunker, text: str, lang: str, ids, char_ends):
    bounds = BOUNDARIES[lang](text)
    n_tok = len(ids)
    if n_tok == 0:
        return ids, [0], [0]
    ce = char_ends.tolist()
    token_cuts, char_cuts = [0], [0]
    if bounds:
        search = ce if ce[0] >= 0 and min(ce) >= 0 else list(itertools.accumulate(ce, max))
        k = 0
        for b in bounds:
            k = bisect.bisect_left(search, b, k)
            if k == n_tok:
                break
            if search[k] == b:
                token_cuts.append(k + 1)
                char_cuts.append(b)
    token_cuts.append(n_tok)
    char_cuts.append(len(text))
    if max(map(operator.sub, token_cuts[1:], token_cuts)) + chunker.add_bos + chunker.add_eos > chunker.seq_length:
        cost = list(map(operator.sub, token_cuts[1:], token_cuts))
        cost[0] += chunker.add_bos
        cost[-1] += chunker.add_eos
        if max(cost) > chunker.seq_length:
            token_cuts, char_cuts = split_long(chunker, token_cuts, char_cuts, ce, n_tok)
    return ids, token_cuts, char_cuts


def split_long(chunker, token_cuts, char_cuts, ce, n_tok):
    L, bos, eos = chunker.seq_length, chunker.add_bos, chunker.add_eos
    tc, cc = [0], [0]
    for u in range(len(token_cuts) - 1):
        pos, tb, cpos, cb = token_cuts[u], token_cuts[u + 1], char_cuts[u], char_cuts[u + 1]
        last = tb == n_tok
        while True:
            cap = L - int(bos and pos == 0)
            if tb - pos <= cap - int(eos and last):
                break
            c = min(pos + cap, tb - 1)
            while c > pos and not ce[c - 1] > cpos:
                c -= 1
            if c == pos:
                raise ValueError(f"seq_length {L} cannot hold the tokens of one character at character {cpos}")
            tc.append(c)
            cc.append(ce[c - 1])
            pos, cpos = c, ce[c - 1]
        tc.append(tb)
        cc.append(cb)
    return tc, cc


def chunk(chunker, text: str, lang: str) -> list[tuple[list[int], int, int, bool, bool, int, int]]:
    """The old ``DocumentChunker.chunk`` as plain tuples ``(ids, char_start, char_end, bos, eos,
    token_start, token_end)`` (the token offsets come from the chunker, which is unchanged)."""
    if not text:
        return []
    ids, char_ends, _ = chunker.token_char_ends(text)
    bos_id, eos_id = chunker.bos_id, chunker.eos_id

    def wrap(x, b, e):
        x = x.tolist()
        if not x:
            return x
        return ([bos_id] if b else []) + x + ([eos_id] if e else [])

    if len(ids) + chunker.add_bos + chunker.add_eos <= chunker.seq_length:
        out = wrap(ids, chunker.add_bos, chunker.add_eos)
        return [(out, 0, len(text), chunker.add_bos, chunker.add_eos, 0, len(char_ends))] if out else []
    ids, token_cuts, char_cuts = units(chunker, text, lang, ids, char_ends)
    n_units = len(token_cuts) - 1
    lengths = list(map(operator.sub, token_cuts[1:], token_cuts))
    groups = greedy(lengths, chunker.seq_length, chunker.strategy == "knowlm", chunker.add_bos, chunker.add_eos)
    out = []
    for s, e in groups:
        ts, te = token_cuts[s], token_cuts[e]
        b = chunker.add_bos and s == 0
        e_ = chunker.add_eos and e == n_units
        out.append((wrap(ids[ts:te], b, e_), char_cuts[s], char_cuts[e], b, e_, ts, te))
    return out
