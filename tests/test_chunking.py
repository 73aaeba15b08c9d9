"""Stage 03: sentence splitters, greedy chunking (property tests against brute force), the
one-pass DocumentChunker with its offsets, verification and the chunking report."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowlm_utils.chunking import (SPLITTERS, DocumentChunker, Sample, SampleVerificationError, check_tiling,
                                   chunking_report, encode_per_sentence, en_boundaries, en_pysbd_boundaries,
                                   greedy_chunk, register_splitter, spans_from_boundaries, split_sentences,
                                   verify_samples)

CJK = re.compile(r"[\u4e00-\u9fff]")
BUILTIN = ("zh", "en", "code", "mixed")


def sentences(text: str, lang: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text, lang)]


# ------------------------------------------------------------------------ splitters -------
def test_zh_keeps_terminators_and_closing_quotes_with_the_sentence():
    text = "他说：“你好！”然后走了。第二句？是的；第三句!结束\n新的一段。  下一句"
    assert sentences(text, "zh") == ["他说：“你好！”", "然后走了。", "第二句？", "是的；", "第三句!",
                                     "结束", "\n新的一段。", "  下一句"]


def test_en_rules_on_tricky_text():
    text = ("Dr. Smith met Mr. Jones at St. Paul's. They talked until 5 p.m. Then they left. "
            "The value of pi is 3.14 approx. and e.g. Paris, i.e. France, is fine. John F. Kennedy "
            "spoke. He said... and then left. Wait... What happened? Nothing! See No. 5 and Fig. 3 "
            "now. She said \"Hello.\" Then she left. (This is odd.) Next one. Apple Inc. The company "
            "moved to Washington, D.C. in 1990.\n1. First step.\nSecond line")
    assert sentences(text, "en") == [
        "Dr. Smith met Mr. Jones at St. Paul's.", " They talked until 5 p.m.", " Then they left.",
        " The value of pi is 3.14 approx. and e.g. Paris, i.e. France, is fine.", " John F. Kennedy spoke.",
        " He said... and then left.", " Wait...", " What happened?", " Nothing!",
        " See No. 5 and Fig. 3 now.", " She said \"Hello.\"", " Then she left.", " (This is odd.)",
        " Next one.", " Apple Inc.", " The company moved to Washington, D.C. in 1990.", "\n1. First step.",
        "\nSecond line"]
    assert sentences("Apple Inc.. Steve Jobs founded it. Wow!!! 5 came.", "en") == [
        "Apple Inc..", " Steve Jobs founded it.", " Wow!!!", " 5 came."]


def test_code_splits_by_lines_and_whitespace_starts_the_next_line():
    text = "def f(x):   \n    return x. Upper\n\n\nprint(f(1))\n"
    assert sentences(text, "code") == ["def f(x):", "   \n    return x. Upper", "\n\n\nprint(f(1))\n"]


def test_mixed_uses_zh_and_en_rules():
    text = "今天天气很好。It is sunny, e.g. warm. 我们去公园吧！OK"
    assert sentences(text, "mixed") == ["今天天气很好。", "It is sunny, e.g. warm.", " 我们去公园吧！", "OK"]


def test_edge_texts():
    for lang in BUILTIN:
        assert split_sentences("", lang) == []
        assert split_sentences("   ", lang) == [(0, 3)]
        assert split_sentences("\n\nA.\n\n", lang) == [(0, 6)]  # no whitespace-only sentence


ALPHABET = list("ab Zx1.。！？；!?;…\"'”）)\n\t 中文") + ["Dr.", "e.g.", "U.S.", "3.14", "..."]


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.sampled_from(ALPHABET), max_size=40), lang=st.sampled_from(BUILTIN))
def test_splitters_tile_the_text(parts, lang):
    text = "".join(parts)
    spans = split_sentences(text, lang)
    check_tiling(text, spans)
    for s, e in spans[:-1]:
        assert not text[e - 1].isspace(), "whitespace after a boundary must start the next sentence"
    assert "".join(text[s:e] for s, e in spans) == text


def test_rules_agree_with_pysbd_on_english_sample_text(sample_docs):
    docs = [d for d in sample_docs["en"] if not CJK.search(d)][:40]
    assert len(docs) >= 20
    ours = [set(en_boundaries(d)) for d in docs]
    ref = [set(en_pysbd_boundaries(d)) for d in docs]
    agree = sum(len(a & b) for a, b in zip(ours, ref))
    n_ours, n_ref = sum(map(len, ours)), sum(map(len, ref))
    assert n_ref > 500
    assert agree / n_ref >= 0.99 and agree / n_ours >= 0.99, (agree, n_ours, n_ref)
    common = "Dr. Smith arrived at 5 p.m. on Monday. He paid $2.50. Was it late? Yes! Mr. Lee agreed."
    assert en_boundaries(common) == en_pysbd_boundaries(common)


def test_unknown_language_and_custom_splitters():
    with pytest.raises(ValueError, match=r"no sentence splitter for language 'xx'.*'code'.*'en'.*'zh'"):
        split_sentences("text", "xx")
    register_splitter("test_words", lambda t: spans_from_boundaries(t, [m.start() for m in re.finditer(" +", t)]))
    try:
        assert sentences("one two three", "test_words") == ["one", " two", " three"]
        register_splitter("test_bad", lambda t: [(0, 2)])
        with pytest.raises(ValueError, match="splitter 'test_bad': spans end at 2"):
            split_sentences("abcd", "test_bad")
        with pytest.raises(TypeError, match="callable"):
            register_splitter("test_x", "not a function")
    finally:
        for k in ("test_words", "test_bad"):
            SPLITTERS.pop(k, None)


# ------------------------------------------------------------------------ greedy ----------
def _costs(lengths, bos, eos):
    c = list(lengths)
    c[0] += bos
    c[-1] += eos
    return c


def _fits(costs, s, e, L):
    return sum(costs[s:e]) <= L


def _brute_min_samples(costs, L):
    """Fewest windows (overlaps allowed) covering every unit, by BFS over the covered prefix."""
    n = len(costs)
    frontier, steps, seen = {0}, 0, {0}
    while n not in frontier:
        steps += 1
        nxt = set()
        for p in frontier:
            for s in range(p + 1):
                for e in range(p + 1, n + 1):
                    if _fits(costs, s, e, L) and e not in seen:
                        nxt.add(e)
        seen |= nxt
        frontier = nxt
        assert frontier, "infeasible input"
    return steps


@st.composite
def chunk_inputs(draw):
    bos, eos = draw(st.booleans()), draw(st.booleans())
    L = draw(st.integers(max(2, 1 + bos + eos), 12))
    n = draw(st.integers(1, 8))
    lengths = [draw(st.integers(0 if 0 < i < n - 1 else 1, L)) for i in range(n)]
    lengths[0] = min(lengths[0], L - bos - (eos if n == 1 else 0))
    lengths[-1] = min(lengths[-1], L - eos - (bos if n == 1 else 0))
    return lengths, L, bos, eos


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_inputs())
def test_greedy_matches_brute_force(args):
    """Proved on every drawn input: (1) both strategies give the minimum number of samples
    that any cover by fitting windows can have; (2) no sample exceeds seq_length with BOS/EOS;
    (3) every unit is covered and disjoint samples tile the units in order; (4) the k-th knowlm
    sample ends where the k-th disjoint one ends and starts at the SMALLEST start for which a
    window ending there fits (so it contains the disjoint sample and is the longest fitting
    window with that end — it is longer exactly when an extension was possible), and it cannot
    be extended by a whole unit on either side; (5) knowlm samples start strictly increasing and
    only neighbours overlap."""
    lengths, L, bos, eos = args
    costs = _costs(lengths, bos, eos)
    n = len(lengths)
    best = _brute_min_samples(costs, L)
    dis = greedy_chunk(lengths, L, "disjoint", bos, eos)
    kno = greedy_chunk(lengths, L, "knowlm", bos, eos)
    assert len(dis) == len(kno) == best
    assert [s for s, _ in dis] == [0] + [e for _, e in dis[:-1]] and dis[-1][1] == n
    for (ks, ke), (ds, de) in zip(kno, dis):
        assert _fits(costs, ks, ke, L) and _fits(costs, ds, de, L)
        assert ke == de and ks <= ds
        assert ks == min(s for s in range(ke) if _fits(costs, s, ke, L))
        assert ks == 0 or not _fits(costs, ks - 1, ke, L)
        assert ke == n or not _fits(costs, ks, ke + 1, L)
    covered = set()
    for s, e in kno:
        covered |= set(range(s, e))
    assert covered == set(range(n))
    for (s0, e0), (s1, e1), in zip(kno, kno[1:]):
        assert s0 < s1 and e0 < e1
    for (s0, e0), (s2, e2) in zip(kno, kno[2:]):
        assert e0 <= s2


def test_greedy_worked_example():
    # units of 3, 4, 2, 5, 1 tokens, budget 8, BOS + EOS
    assert greedy_chunk([3, 4, 2, 5, 1], 8, "disjoint") == [(0, 2), (2, 4), (4, 5)]
    assert greedy_chunk([3, 4, 2, 5, 1], 8, "knowlm") == [(0, 2), (2, 4), (3, 5)]
    assert greedy_chunk([], 8) == []


def test_greedy_argument_errors():
    with pytest.raises(ValueError, match="seq_length must be >= 2"):
        greedy_chunk([1], 1, bos=False, eos=False)
    with pytest.raises(ValueError, match=r"seq_length 2 is too small.*BOS \(1\) \+ EOS \(1\)"):
        greedy_chunk([1], 2)
    with pytest.raises(ValueError, match=r"unknown chunking strategy 'best'; known: \['knowlm', 'disjoint'\]"):
        greedy_chunk([1], 8, "best")
    with pytest.raises(ValueError, match=r"unit 1 of 3 needs 9 tokens \(BOS/EOS included\) > seq_length 8"):
        greedy_chunk([1, 9, 1], 8)
    with pytest.raises(ValueError, match="unit 0 of 2 has a negative length -1"):
        greedy_chunk([-1, 2], 8)
    with pytest.raises(TypeError, match="seq_length must be an int"):
        greedy_chunk([1], 8.0)


# ------------------------------------------------------------------------ chunker ---------
@pytest.fixture(scope="module")
def chunker_factory(sp_model_path):
    @functools.lru_cache(maxsize=None)
    def make(seq_length=64, strategy="knowlm", bos=True, eos=True):
        return DocumentChunker(sp_model_path, seq_length, strategy, bos, eos)
    return make


def _corpus(sample_docs, per_lang=150):
    return [(d, lang) for lang, docs in sample_docs.items() for d in docs[:per_lang]]


@pytest.mark.parametrize("strategy", ["knowlm", "disjoint"])
def test_every_sample_equals_a_direct_encoding_on_the_corpus(sample_docs, chunker_factory, strategy):
    ch = chunker_factory(96, strategy)
    total_tokens = 0
    for text, lang in _corpus(sample_docs, 400):
        samples = ch.chunk(text, lang)
        verify_samples(ch.sp, text, samples, seq_length=96)
        assert samples[0].bos and samples[-1].eos
        assert not any(s.bos for s in samples[1:]) and not any(s.eos for s in samples[:-1])
        if strategy == "disjoint":  # a tiling of the one-pass encoding, BOS/EOS once each
            assert sum(len(s.ids) for s in samples) == len(ch.sp.encode(text)) + 2
            assert all(a.char_end == b.char_start for a, b in zip(samples, samples[1:]))
        total_tokens += sum(len(s.ids) for s in samples)
    assert ch.fallbacks == 0 and total_tokens > 100_000


@pytest.mark.parametrize("seq_length", [48, 200])
def test_samples_are_whole_sentences_unless_a_sentence_is_too_long(sample_docs, chunker_factory, seq_length):
    ch = chunker_factory(seq_length, "knowlm")
    edges = inside = 0
    for text, lang in _corpus(sample_docs, 100):
        spans = split_sentences(text, lang)
        ends = [e for _, e in spans]
        for smp in ch.chunk(text, lang):
            for edge in (smp.char_start, smp.char_end):
                edges += 1
                k = int(np.searchsorted(ends, edge))  # the sentence that holds or ends at the edge
                if edge not in (0, ends[k]):
                    inside += 1
                    sent = text[spans[k][0]:spans[k][1]]
                    assert len(ch.sp.encode(sent)) > seq_length - 3, (edge, sent[:60])
    assert edges > 1000 and (inside > 0) == (seq_length == 48)


def test_fast_offsets_equal_proto_offsets(sample_docs, chunker_factory):
    ch = DocumentChunker(chunker_factory().sp, 64)
    extra = ["😀😀 ok 中文😀。x", " leading space. Next one.", "\n\n", " ", "。", "tab\tand  two  spaces", "é" * 5,
             "A literal ▁ in text. Then more."]
    for text in [d for docs in sample_docs.values() for d in docs[:120]] + extra:
        ref = ch.token_char_ends(text, "proto")
        assert ref[2] == "proto"
        for path in ("auto", "chars", "bytes"):
            ids, char_ends, used = ch.token_char_ends(text, path)
            assert np.array_equal(ids, ref[0]) and np.array_equal(char_ends, ref[1]), (path, used, text[:40])
    ids, char_ends, _ = ch.token_char_ends("x😀")
    assert (char_ends == -1).sum() == 3  # three leading bytes of the emoji: no cut inside it
    assert ch.token_char_ends("a ▁ b", "bytes")[2] == "proto"  # the literal "▁" breaks the byte count
    assert ch.path_counts["chars"] > 300


def test_literal_meta_symbol_and_byte_fallback_texts_chunk_correctly(chunker_factory):
    ch = DocumentChunker(chunker_factory().sp, 12)
    for text in ["A literal ▁ in text. Then more words follow here. And more.",
                 "表情😀很好。再来一句😀😀。最后一句话在这里结束。"]:
        samples = ch.chunk(text, "mixed")
        verify_samples(ch, text, samples)
        assert len(samples) > 1
    assert ch.path_counts["chars"] == 2 and ch.fallbacks == 0


@pytest.fixture(scope="module")
def unk_model(tmp_path_factory, sample_docs):
    """A model WITHOUT byte fallback: unseen characters become <unk>."""
    d = tmp_path_factory.mktemp("unk")
    (d / "t.txt").write_text("\n".join(sample_docs["en"][:60]), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(d / "t.txt"), model_prefix=str(d / "m"), vocab_size=300,
                                   model_type="bpe", byte_fallback=False, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False, character_coverage=1.0, minloglevel=2)
    return d / "m.model"


def test_unknown_pieces_use_the_proto_path(unk_model):
    ch = DocumentChunker(unk_model, 12, "knowlm")
    text = "The river flows. 长江很长。 It is long. Ω and ∑ are Greek letters. The end."
    ids, ends, path = ch.token_char_ends(text)
    assert path == "proto" and (ids == ch.sp.unk_id()).any()
    samples = ch.chunk(text, "mixed")
    verify_samples(unk_model, text, samples, seq_length=12)
    assert max(len(s.ids) for s in samples) <= 12


def test_model_that_removes_whitespace_is_refused(tmp_path, sample_docs):
    (tmp_path / "t.txt").write_text("\n".join(sample_docs["en"][:60]), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "t.txt"), model_prefix=str(tmp_path / "m"), vocab_size=300,
                                   model_type="bpe", remove_extra_whitespaces=True, character_coverage=0.999,
                                   hard_vocab_limit=False, minloglevel=2)
    with pytest.raises(ValueError, match="remove_extra_whitespaces"):
        DocumentChunker(tmp_path / "m.model", 64)


def test_missing_or_bad_model_gives_a_clear_error(tmp_path):
    (tmp_path / "notes.model").write_text("these are notes, not a model\n" * 20)
    with pytest.raises(ValueError, match="notes.model is not a SentencePiece model"):
        DocumentChunker(tmp_path / "notes.model", 64)
    with pytest.raises(FileNotFoundError, match="SentencePiece model not found"):
        verify_samples(tmp_path, "text", [])


def test_long_sentences_are_cut_at_token_boundaries_only_there(chunker_factory):
    ch = chunker_factory(16, "disjoint")
    long_zh = "长江" + "，".join(["发源于青藏高原的唐古拉山脉"] * 12) + "。"
    text = "短句。" + long_zh + "😀😀😀😀很好。最后一句。"
    samples = ch.chunk(text, "zh")
    verify_samples(ch, text, samples, seq_length=16)
    pieces = [s for s in samples if 3 <= s.char_start < 3 + len(long_zh)]
    assert len(pieces) >= 3 and all(len(s.ids) == 16 for s in pieces[:-1])  # pieces as long as fits
    assert samples[0].char_end == 3 and samples[1].char_start == 3  # the short first sentence stays whole
    assert samples[-1].char_end == len(text) and text[samples[-1].char_start:].endswith("最后一句。")
    tokens = sum(len(s.ids) for s in samples)
    assert tokens == len(ch.sp.encode(text)) + 2


def test_spurious_dummy_prefix_when_encoding_sentence_by_sentence(chunker_factory):
    ch = chunker_factory(1024, "knowlm")
    text = "阿姆斯特丹是荷兰的首都。城内运河纵横。这座城市以自行车出行闻名。"
    ours = ch.chunk(text, "zh")
    theirs = encode_per_sentence(ch.sp, text, "zh", 1024)
    assert len(ours) == len(theirs) == 1
    def word_starts(ids):
        return sum(ch.sp.id_to_piece(int(i)).startswith("▁") for i in ids)
    assert word_starts(ours[0].ids) == 1  # the document's dummy prefix only
    assert word_starts(theirs[0]) == 3  # one invented "▁" per sentence
    assert list(ours[0].ids) == [ch.sp.bos_id()] + ch.sp.encode(text) + [ch.sp.eos_id()]


def test_verify_names_the_bad_sample(chunker_factory):
    ch = chunker_factory(24, "knowlm")
    text = "The river flows east. It passes many cities. It ends in the sea. " * 3
    samples = ch.chunk(text, "en")
    assert len(samples) >= 3
    bad = list(samples)
    ids = bad[1].ids.copy()
    ids[2] = (ids[2] + 1) % ch.sp.get_piece_size()
    bad[1] = Sample(ids, bad[1].char_start, bad[1].char_end, False, False, bad[1].token_start, bad[1].token_end)
    with pytest.raises(SampleVerificationError, match=r"sample 1 of \d+ \(chars \d+:\d+\): ids differ .* at token 2"):
        verify_samples(ch, text, bad)
    gap = [samples[0]] + samples[2:]
    with pytest.raises(ValueError, match=r"sample 1 .*: characters \d+:\d+ are in no sample"):
        verify_samples(ch, text, gap)
    with pytest.raises(SampleVerificationError, match="tokens > seq_length 8"):
        verify_samples(ch, text, samples, seq_length=8)


def test_chunker_argument_errors(sp_model_path, tmp_path):
    with pytest.raises(ValueError, match="seq_length must be >= 2"):
        DocumentChunker(sp_model_path, 1, add_bos=False, add_eos=False)
    with pytest.raises(ValueError, match="seq_length 2 is too small"):
        DocumentChunker(sp_model_path, 2)
    with pytest.raises(ValueError, match="unknown chunking strategy"):
        DocumentChunker(sp_model_path, 64, "greedy")
    with pytest.raises(FileNotFoundError, match="SentencePiece model not found"):
        DocumentChunker(tmp_path / "missing.model", 64)
    ch = DocumentChunker(sp_model_path.parent / "sp.model", 64)
    with pytest.raises(ValueError, match="no sentence splitter for language 'fr'"):
        ch.chunk("Bonjour.", "fr")
    assert ch.chunk("", "en") == []


# ------------------------------------------------------------------------ report ----------
def test_report_counts_overlap_and_efficiency(sample_docs, chunker_factory):
    docs = _corpus(sample_docs, 60)
    reports = {}
    for strategy in ("knowlm", "disjoint"):
        ch = chunker_factory(64, strategy)
        per_doc = [ch.chunk(t, lang) for t, lang in docs]
        rep = chunking_report(per_doc, 64)
        tokens = sum(len(s.ids) for samples in per_doc for s in samples)
        assert rep["tokens"] == tokens and rep["documents"] == len(docs)
        assert rep["samples"] == sum(map(len, per_doc)) == sum(rep["length_histogram"]["counts"])
        assert rep["packing_efficiency"] == pytest.approx(tokens / (rep["samples"] * 64))
        assert sum(rep["samples_per_doc"]["histogram"].values()) == len(docs)
        assert rep["unique_tokens"] == sum(len(ch.sp.encode(t)) + 2 for t, _ in docs)
        reports[strategy] = rep
    assert reports["disjoint"]["overlap_tokens"] == 0
    assert reports["knowlm"]["overlap_tokens"] > 0
    assert reports["knowlm"]["samples"] == reports["disjoint"]["samples"]
    assert reports["knowlm"]["packing_efficiency"] > reports["disjoint"]["packing_efficiency"]
    assert reports["knowlm"]["unique_packing_efficiency"] == pytest.approx(reports["disjoint"]["packing_efficiency"])
    # hand-made: two samples sharing 3 tokens
    a = Sample(np.arange(6, dtype=np.int32), 0, 10, True, False, 0, 5)
    b = Sample(np.arange(5, dtype=np.int32), 4, 20, False, True, 2, 6)
    rep = chunking_report([[a, b], []], 8)
    assert (rep["overlap_tokens"], rep["tokens"], rep["empty_documents"]) == (3, 11, 1)
    assert rep["overlap_fraction"] == pytest.approx(3 / 11)


def test_a_document_that_fits_is_one_sample_and_one_token_more_splits_it(chunker_factory):
    sp = chunker_factory().sp
    text = "The Nile flows north. It ends in the Mediterranean Sea. Cairo lies on its banks."
    n = len(sp.encode(text))
    fits = DocumentChunker(sp, n + 2).chunk(text, "en")
    assert len(fits) == 1 and (fits[0].char_start, fits[0].char_end, fits[0].bos, fits[0].eos) == (0, len(text), 1, 1)
    assert list(fits[0].ids) == [sp.bos_id()] + sp.encode(text) + [sp.eos_id()]
    for strategy in ("knowlm", "disjoint"):
        ch = DocumentChunker(sp, n + 1, strategy)
        samples = ch.chunk(text, "en")
        verify_samples(ch, text, samples)
        assert len(samples) == 2
