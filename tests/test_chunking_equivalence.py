"""The vectorised planner (sentence boundaries with array operations on code points, token
ends matched with searchsorted, greedy by binary search) against the frozen per-token planner of
tests/chunking_reference.py: the same samples, ids and offsets for every strategy and BOS/EOS
setting, on Chinese, English, code, mixed text, empty lines, very long sentences and unicode
edge cases; and chunk_flat == chunk."""

from __future__ import annotations

import random

import numpy as np
import pytest

import chunking_reference as ref
from knowlm_utils import chunking
from knowlm_utils.chunking import DocumentChunker, greedy_chunk

ODD = ["\u3000", "\u2028", "\x85", "\r\n", "\t", "😀", "🇨🇳", "é", "\u200b", "▁", "\ufeff", "𠀀", "Ω", "\x00"]
ALPHABET = list("ab Zx1.。！？；!?;…\"'”’」』）】》〉)]}\n\t 中文") + ["Dr.", "e.g.", "U.S.", "3.14", "..."] + ODD


def _texts(sample_docs) -> list[tuple[str, str]]:
    rng = random.Random(0)
    out = [(d, lang) for lang, docs in sample_docs.items() for d in docs[:40]]
    zh, en, code = sample_docs["zh"], sample_docs["en"], sample_docs["code"]
    out += [("\n\n".join(zh[:6]), "zh"), (" ".join(en[:5]), "en"), ("\n".join(code[:8]), "code")]
    out += [(zh[i] + " " + en[i] + "\n" + code[i % len(code)], "mixed") for i in range(10)]
    out += [("很长的句子没有标点" * 300, "zh"), ("word " * 900, "en"), ("x" * 3000, "code"),
            ("\n\n\n" + "第一段。\n\n\n\n第二段！" * 50 + "\n\n", "zh"), ("。" * 500, "zh"), ("😀" * 400, "mixed"),
            ("".join(ODD) * 40, "mixed"), ("  \n \n", "zh"), ("a", "en"), ("", "zh")]
    for _ in range(150):
        out.append(("".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 400))),
                    rng.choice(["zh", "en", "code", "mixed"])))
    return out


@pytest.mark.parametrize("strategy,bos,eos,seq_length", [("knowlm", True, True, 24), ("disjoint", True, True, 24),
                                                          ("knowlm", False, True, 16), ("disjoint", True, False, 40),
                                                          ("knowlm", True, True, 200)])
def test_vectorised_planner_equals_the_reference(sp_model_path, sample_docs, strategy, bos, eos, seq_length):
    chunker = DocumentChunker(sp_model_path, seq_length, strategy, bos, eos)
    split_long = 0
    for text, lang in _texts(sample_docs):
        got = chunker.chunk(text, lang)
        want = ref.chunk(chunker, text, lang)
        assert [(s.ids.tolist(), s.char_start, s.char_end, s.bos, s.eos, s.token_start, s.token_end)
                for s in got] == want, (lang, text[:80])
        flat, lengths, flags = chunker.chunk_flat(text, lang)
        assert flat.dtype == np.int32 and lengths.tolist() == [len(s.ids) for s in got]
        assert flat.tolist() == [t for s in got for t in s.ids.tolist()]
        assert flags.tolist() == [int(s.bos) | 2 * int(s.eos) for s in got]
        split_long += any(s.token_end - s.token_start + s.bos + s.eos == seq_length for s in got)
    assert split_long > 0, "the inputs must exercise full samples (long sentences cut at token boundaries)"


def test_vectorised_boundaries_equal_the_reference_rules(sample_docs):
    rng = random.Random(1)
    texts = [d for docs in sample_docs.values() for d in docs[:60]]
    texts += ["".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 60))) for _ in range(3000)]
    for text in texts:
        for lang, fn in ref.BOUNDARIES.items():
            assert chunking._BUILTIN_BOUNDARIES[lang](text) == fn(text), (lang, text)


def test_whitespace_table_covers_every_space_character():
    """The class table is filled from the first 0x3001 code points: no str.isspace() above."""
    assert not [c for c in range(0x3001, 0x110000) if chr(c).isspace()]
    table = chunking._class_table()
    assert [c for c in range(0x3001) if chr(c).isspace()] == np.flatnonzero(table & chunking._CLS_SPACE).tolist()


def test_greedy_by_binary_search_equals_the_unit_by_unit_loop():
    rng = random.Random(2)
    for _ in range(3000):
        L = rng.randrange(3, 30)
        bos, eos = rng.random() < 0.5, rng.random() < 0.5
        n = rng.randrange(1, 25)
        lengths = [rng.choice([0, 1, 1, 2, 3, 5, 8, L // 2, L - 2]) for _ in range(n)]
        cost = list(lengths)
        cost[0] += bos
        cost[-1] += eos
        if max(cost) > L:
            continue
        for strategy in ("knowlm", "disjoint"):
            assert greedy_chunk(lengths, L, strategy, bos, eos) == ref.greedy(lengths, L, strategy == "knowlm", bos, eos)
