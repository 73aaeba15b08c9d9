"""Issue 14, part 1: extending a BPE base with a unigram Chinese model, the pair Chinese-LLaMA-Alpaca
merged (LLaMA's BPE tokenizer.model + their unigram chinese_sp.model → 49,953 pieces). Both models
are trained here with real sentencepiece, with the settings of the real files: the base like
LLaMA's (BPE, byte fallback, identity normaliser, split digits), the addition like chinese_sp.model
(unigram, NFKC, no byte fallback, digits not split)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sentencepiece
from sentencepiece import sentencepiece_model_pb2 as pb
from transformers import AutoTokenizer

from knowlm_utils import spm
from knowlm_utils import tokenizer as tk

from conftest import assert_one_line_error, run_cli

NORMAL = pb.ModelProto.SentencePiece.NORMAL
MIXED = ["黄河发源于青藏高原，全长5464千米，1952年起开始治理。The Yellow River is 5,464 km long.",
         "长江 Yangtze（6300 km）流经11个省级行政区；def f(x): return x * 2",
         "  两个前导空格 and trailing  ", "2024年3月15日 version 3.11 发布", "中文English混合123，以及 emoji 😀"]


def _heldout(i: int) -> bool:
    return i % 5 == 0


def _train(texts: list[str], path: Path, **kwargs) -> Path:
    text = path.with_suffix(".txt")
    text.write_text("\n".join(t.replace("\r", " ") for t in texts) + "\n", encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(input=str(text), model_prefix=str(path.with_suffix("")),
                                             num_threads=2, minloglevel=2, max_sentence_length=100000, **kwargs)
    return path


@pytest.fixture(scope="module")
def pair(sample_docs, tmp_path_factory) -> dict:
    """A LLaMA-like BPE base (English + code, a little Chinese) and a chinese_sp-like unigram model,
    trained on the training split of the sample world; the held-out split is written as JSONL."""
    d = tmp_path_factory.mktemp("pair")
    train = {lang: [t for i, t in enumerate(docs) if not _heldout(i)] for lang, docs in sample_docs.items()}
    held = {lang: [t for i, t in enumerate(docs) if _heldout(i)] for lang, docs in sample_docs.items()}
    base = _train(train["en"] + train["code"] + train["zh"][:15], d / "base.model", vocab_size=1200,
                  character_coverage=0.9995, **tk.LLAMA_SETTINGS)
    zh = _train(train["zh"], d / "zh.model", vocab_size=2000, model_type="unigram", character_coverage=0.9995,
                normalization_rule_name="nmt_nfkc")  # sentencepiece's defaults otherwise, as in chinese_sp.model
    with open(d / "heldout.jsonl", "w", encoding="utf-8") as fh:
        for lang, docs in held.items():
            for t in docs:
                fh.write(json.dumps({"text": t, "lang": lang}, ensure_ascii=False) + "\n")
    return {"base": base, "zh": zh, "held": held, "heldout_jsonl": d / "heldout.jsonl"}


@pytest.fixture(scope="module")
def extended(pair, tmp_path_factory):
    """`knowlm tokenizer extend` on the pair, checked on the held-out JSONL; (rc, stdout, report, out)."""
    d = tmp_path_factory.mktemp("ext")
    capsys = _Capture()
    rc, out, err = capsys.cli("tokenizer", "extend", "--base", pair["base"], "--add", pair["zh"], "--out", d / "tok",
                              "--check-text", pair["heldout_jsonl"], "--report", d / "report.json")
    assert rc == 0, err
    return rc, out, json.loads((d / "report.json").read_text("utf-8")), d / "tok"


class _Capture:
    """run_cli for module-scoped fixtures (pytest's capsys is function-scoped)."""

    def cli(self, *argv):
        import contextlib
        import io

        from knowlm_utils import cli

        o, e = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            rc = cli.main([str(a) for a in argv])
        return rc, o.getvalue(), e.getvalue()


def test_the_pair_has_the_real_files_kinds(pair):
    base, zh = spm.load_proto(pair["base"]), spm.load_proto(pair["zh"])
    assert (spm.model_type_name(base), spm.model_type_name(zh)) == ("BPE", "UNIGRAM")
    assert (base.trainer_spec.byte_fallback, zh.trainer_spec.byte_fallback) == (True, False)
    assert (base.normalizer_spec.name, zh.normalizer_spec.name) == ("identity", "nmt_nfkc")
    assert (base.trainer_spec.split_digits, zh.trainer_spec.split_digits) == (True, False)


def test_extend_accepts_bpe_base_with_unigram_addition_and_counts_every_piece(pair, extended):
    rc, out, rep, tok = extended
    base, zh, ext = (spm.load_proto(p) for p in (pair["base"], pair["zh"], tok))
    base_pieces = {p.piece for p in base.pieces}
    zh_normal = [p.piece for p in zh.pieces if p.type == NORMAL]
    assert rep["base_size"] == len(base.pieces) == 1200 and rep["add_size"] == len(zh.pieces) == 2000
    assert rep["add_special"] == 3  # <unk> <s> </s>; chinese_sp.model likewise has no byte pieces
    assert rep["duplicates"] == sum(p in base_pieces for p in zh_normal) > 0
    assert rep["added"] == sum(p not in base_pieces for p in zh_normal) > 0
    assert rep["add_size"] == rep["add_special"] + rep["duplicates"] + rep["added"] + rep["skipped_non_cjk"]
    assert rep["final_size"] == rep["base_size"] + rep["added"] == len(ext.pieces)
    assert [(p.piece, p.score, p.type) for p in ext.pieces[:1200]] == [(p.piece, p.score, p.type) for p in base.pieces]
    assert [p.piece for p in ext.pieces[1200:]] == [p for p in zh_normal if p not in base_pieces]
    assert spm.model_type_name(ext) == "BPE" and ext.normalizer_spec.name == "identity"
    # the type difference is reported, in the report and on the terminal
    assert (rep["base_model_type"], rep["add_model_type"]) == ("BPE", "UNIGRAM")
    assert "UNIGRAM addition" in rep["model_type_note"] and "scores are not used" in rep["model_type_note"]
    assert any("model_type differs" in w for w in rep["warnings"])
    assert f"base BPE 1200 + add UNIGRAM 2000 (special 3, duplicates {rep['duplicates']}) → added " \
           f"{rep['added']} → {rep['final_size']} pieces" in out
    assert "model types differ" in out


def test_added_scores_are_after_the_base_and_distinct(extended):
    ext = spm.load_proto(extended[3])
    scores = np.array([p.score for p in ext.pieces[1200:]], dtype=np.float32)
    assert scores.max() < min(p.score for p in ext.pieces[:1200])
    assert (np.diff(scores) < 0).all()  # strictly decreasing as stored (float32)


def test_report_check_matches_a_direct_encoding(pair, extended):
    """The check in the report is what encoding the held-out text gives, and the HF files agree."""
    _, out, rep, tok = extended
    base, ext = spm.load_processor(pair["base"]), spm.load_processor(tok)
    docs = [t for texts in pair["held"].values() for t in texts]
    check = rep["check"]
    non_cjk = [t for t in docs if not tk.has_cjk(t)]
    assert check["by_name"][str(pair["heldout_jsonl"])]["docs"] == len(docs)
    builtin_non_cjk = [t for t in tk.CHECK_SENTENCES["builtin"] if not tk.has_cjk(t)]
    all_non_cjk = non_cjk + builtin_non_cjk
    assert check["non_cjk"]["docs"] == len(all_non_cjk)
    assert check["non_cjk"]["identical_docs"] == sum(base.encode(t) == ext.encode(t) for t in all_non_cjk)
    assert check["non_cjk"]["extended_tokens"] == sum(len(ext.encode(t)) for t in all_non_cjk)
    assert check["non_cjk_identical"] == (check["non_cjk"]["identical_docs"] == len(all_non_cjk))
    assert check["cjk"]["extended_tokens"] < 0.9 * check["cjk"]["base_tokens"]  # the point of extending
    assert check["hf_identical"] and check["hf_mismatch_docs"] == 0
    assert check["hf_checked_docs"] == len(docs) + len(tk.CHECK_SENTENCES["builtin"])
    assert f"{check['hf_checked_docs']}/{check['hf_checked_docs']} documents" in out


def test_hf_files_encode_mixed_text_like_sentencepiece(extended):
    tok = extended[3]
    sp, hf = spm.load_processor(tok), AutoTokenizer.from_pretrained(str(tok))
    assert len(hf) == sp.get_piece_size() == extended[2]["final_size"]
    for text in MIXED:
        assert hf(text)["input_ids"] == [1] + sp.encode(text), text
    assert tk.hf_mismatches(tok, MIXED) == []


def test_only_cjk_pieces_keeps_english_and_code_ids_identical(pair, extended, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "tokenizer", "extend", "--base", pair["base"], "--add", pair["zh"],
                           "--out", tmp_path / "cjk", "--only-cjk-pieces", "--report", tmp_path / "r.json")
    assert rc == 0, err
    rep, full = json.loads((tmp_path / "r.json").read_text("utf-8")), extended[2]
    ext = spm.load_proto(tmp_path / "cjk")
    assert rep["skipped_non_cjk"] == full["added_without_cjk"] > 0 and rep["added_without_cjk"] == 0
    assert rep["added"] + rep["skipped_non_cjk"] == full["added"]
    assert rep["add_size"] == rep["add_special"] + rep["duplicates"] + rep["added"] + rep["skipped_non_cjk"]
    assert all(tk.has_cjk(p.piece) for p in ext.pieces[rep["base_size"]:])
    base, sp = spm.load_processor(pair["base"]), spm.load_processor(tmp_path / "cjk")
    english = [t for t in pair["held"]["en"] + pair["held"]["code"] if not tk.has_cjk(t)]
    assert len(english) > 50
    english.append("The Yellow River is 5,464 km long (since 1952).")
    assert [sp.encode(t) for t in english] == [base.encode(t) for t in english]
    assert rep["check"]["non_cjk_identical"] and "skipped without CJK" in out
    assert len(sp.encode(pair["held"]["zh"][0])) < 0.8 * len(base.encode(pair["held"]["zh"][0]))


@pytest.mark.filterwarnings("ignore::UserWarning")  # the pair's setting differences, tested above
def test_a_float32_tie_in_the_base_scores_does_not_tie_the_added_merges(pair, tmp_path):
    """LLaMA's "▁" piece scores -1e9; scores just below it collapse in float32 (spacing 64), and
    tied merges made the HF files differ from sentencepiece ("▁3"+"2" vs "▁"+"32")."""
    proto = spm.load_proto(pair["base"])
    ws = next(p for p in proto.pieces if p.piece == "▁")
    ws.score = -1e9
    (tmp_path / "llama_like.model").write_bytes(proto.SerializeToString())
    rep = tk.extend_vocabulary(tmp_path / "llama_like.model", pair["zh"], tmp_path / "o")
    ext = spm.load_proto(tmp_path / "o")
    scores = np.array([p.score for p in ext.pieces[rep.base_size:]], dtype=np.float32)
    assert scores.max() < np.float32(-1e9) and (np.diff(scores) < 0).all()
    assert rep.check["hf_identical"] and tk.hf_mismatches(tmp_path / "o", MIXED + pair["held"]["zh"][:20]) == []


def test_unreachable_pieces_are_never_produced(extended):
    rep, tok = extended[2], extended[3]
    assert tk._unreachable({"ab", "abc"}, ["abc", "ab", "xyz", "q"]) == 1  # "xyz": neither "xy" nor "yz" exists
    ext, plain = spm.load_proto(tok), spm.without_dummy_prefix(tok)
    vocab = {p.piece for p in ext.pieces if p.type == NORMAL}
    added = [(i, p.piece) for i, p in enumerate(ext.pieces) if i >= rep["base_size"]]
    unreachable = [(i, p) for i, p in added if tk._unreachable(vocab, [p])]
    assert len(unreachable) == rep["added_unreachable"]
    for i, piece in unreachable:
        assert i not in plain.encode(piece.replace("▁", " ")), piece


@pytest.mark.parametrize("case", ["unigram_base", "whitespace_suffix", "escape_whitespaces"])
def test_unsound_combinations_are_refused_in_one_line(pair, tmp_path, capsys, case):
    base, add = pair["base"], pair["zh"]
    if case == "unigram_base":
        base, add = pair["zh"], pair["base"]
        needles = ("base model_type is UNIGRAM", "sound only for a BPE base")
    else:
        proto = spm.load_proto(add)
        if case == "whitespace_suffix":
            proto.trainer_spec.treat_whitespace_as_suffix = True
            needles = ("trainer_spec.treat_whitespace_as_suffix differs", "stand for other text")
        else:
            proto.normalizer_spec.escape_whitespaces = False
            needles = ("normalizer_spec.escape_whitespaces differs", "mark whitespace differently")
        add = tmp_path / "odd.model"
        add.write_bytes(proto.SerializeToString())
    rc, _, err = run_cli(capsys, "tokenizer", "extend", "--base", base, "--add", add, "--out", tmp_path / "o")
    assert_one_line_error(rc, err, *needles, command="tokenizer")
    assert not (tmp_path / "o").exists()


def test_bad_check_text_is_a_one_line_error_naming_the_line(pair, tmp_path, capsys):
    bad = tmp_path / "held.jsonl"
    bad.write_text('{"text": "fine"}\n{"title": "no text"}\n', encoding="utf-8")
    rc, _, err = run_cli(capsys, "tokenizer", "extend", "--base", pair["base"], "--add", pair["zh"],
                         "--out", tmp_path / "o", "--check-text", bad)
    assert_one_line_error(rc, err, f"{bad}:2", '"text" string', command="tokenizer")
    assert not (tmp_path / "o").exists()
    plain = tmp_path / "held.txt"
    plain.write_text("first document\nstill first\n\n\nsecond 文档\n\nthird\n", encoding="utf-8")
    docs, stats = tk.read_check_texts(plain, max_chars=30)
    assert docs == ["first document\nstill first", "second 文档"] and stats["docs_not_read"] == 1
