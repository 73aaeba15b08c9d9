"""Stage 02: real SentencePiece models trained on a small cleaned corpus, real transformers
tokenizers and a real (tiny) LlamaForCausalLM."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch
from sentencepiece import sentencepiece_model_pb2 as pb
from transformers import AutoTokenizer

from knowlm_utils import cli, corpus, spm
from knowlm_utils import tokenizer as tk
from knowlm_utils.config import ConfigError, from_dict
from knowlm_utils.modeling import build_model, model_config

from conftest import build_sample_corpus

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = 10.0
EDGE_CASES = ["", " ", "  ", "\n", "a\n\nb\n", "  two leading spaces", "trailing  ", "x  y   z",
              "\tTab\t\tx", "▁odd", "12345 678.90", "2024年3月15日", "emoji 😀🎉 👍🏽", "</s> and <s>",
              "[PAD]", "中文English混合123", "黄河 是\u3000中国", "def f(x):\n    return x ** 2\n", "é ñ ü",
              "\r\n", "\ufeffbom", "𠀀𪚥 rare"]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    return build_sample_corpus(tmp_path_factory.mktemp("corpus") / "corpus", 250)


@pytest.fixture(scope="module")
def stage(small_corpus, tmp_path_factory):
    cfg = tk.TokenizerConfig(corpus_dir=str(small_corpus), heldout_percent=HELDOUT, hf_check_docs=30, progress=False,
                             base=tk.TrainSpec(vocab_size=1500, languages={"en": 1.0, "code": 1.0, "zh": 0.02}),
                             zh=tk.TrainSpec(vocab_size=2500, languages={"zh": 1.0}, character_coverage=0.9995))
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    return tk.build(cfg, out), out


@pytest.fixture(scope="module")
def heldout(small_corpus):
    return tk.heldout_texts(small_corpus, HELDOUT)


def normal_pieces(proto) -> set[str]:
    return {p.piece for p in proto.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL}


# ----------------------------------------------------------------------------- training ----
def test_stage_writes_llama_shaped_tokenizers(stage):
    report, out = stage
    assert sorted(p.name for p in out.iterdir()) == [".knowlm-output.json", "base", "extended", "report.json", "zh"]
    assert not list(out.glob("*/.knowlm-output.json")), "only the stage's own folder is marked"
    assert not list(out.parent.glob(".tokenizer.*")), "temporary folders must be gone"
    for name in ("base", "zh", "extended"):
        proto = spm.load_proto(out / name)
        t, n = proto.trainer_spec, proto.normalizer_spec
        assert (t.model_type, t.byte_fallback, t.split_digits, n.name, n.add_dummy_prefix,
                n.remove_extra_whitespaces) == (pb.TrainerSpec.BPE, True, True, "identity", True, False)
        assert [proto.pieces[i].piece for i in range(3)] == ["<unk>", "<s>", "</s>"]
        assert t.pad_id == -1
        assert report["sha256"][name] == hashlib.sha256((out / name / "tokenizer.model").read_bytes()).hexdigest()
        assert report["sha256"][name] == spm.sha256(out / name)
    v = report["vocab"]
    assert (v["base"], v["zh"]) == (1500, 2500)
    assert v["extended"] == v["base"] + v["added"] and v["zh"] == v["added"] + v["duplicates"] + v["zh_special_skipped"]


def test_training_text_selection(small_corpus, tmp_path):
    train_docs = list(corpus.iter_cleaned_documents(small_corpus, split="train", heldout_percent=HELDOUT))
    spec = tk.TrainSpec(vocab_size=500, languages={"en": 1.0, "zh": 0.5}, max_chars={"en": 20000})
    stats = tk.write_training_text(small_corpus, spec, tmp_path / "t.txt", HELDOUT, progress=False)
    assert set(stats["docs"]) == {"en", "zh"}  # code and mixed are not listed
    longest_en = max(len(d["text"]) for d in train_docs if d["lang"] == "en")
    assert 20000 <= stats["chars"]["en"] < 20000 + longest_en  # the budget stops at the first doc past it
    n_zh = sum(d["lang"] == "zh" for d in train_docs)
    assert 0.3 * n_zh < stats["docs"]["zh"] < 0.7 * n_zh  # about half, by a hash of the id
    assert stats["docs_not_selected"] + sum(stats["docs"].values()) == len(train_docs)
    train_lines = {line for d in train_docs for line in d["text"].split("\n")}
    held_only = {line for d in corpus.iter_cleaned_documents(small_corpus, split="heldout", heldout_percent=HELDOUT)
                 for line in d["text"].split("\n") if line.strip() and line not in train_lines}
    written = set((tmp_path / "t.txt").read_text("utf-8").split("\n"))
    assert held_only and not held_only & written  # held-out text is never trained on


def test_long_lines_are_cut_at_character_boundaries():
    stats = {"lines_cut": 0}
    line = "黄河😀a" * 1000
    parts = list(tk._training_lines(line + "\n\n  \nshort", 1000, stats))
    assert stats["lines_cut"] == 1 and parts[-1] == "short"
    assert "".join(parts[:-1]) == line and all(len(p.encode("utf-8")) <= 1000 for p in parts)


def test_config_validation(small_corpus, tmp_path):
    with pytest.raises(ValueError, match="fraction must be in"):
        tk.TrainSpec(vocab_size=1000, languages={"zh": 1.5})
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(tk.TokenizerConfig, {"base": {"vocab_size": 1000, "vocab": 3}})
    cfg = tk.load_tokenizer_config(ROOT / "configs" / "tokenizer" / "sample.yaml", ["base.vocab_size=4000"])
    assert cfg.base.vocab_size == 4000 and cfg.base_dir == str(ROOT / "configs" / "tokenizer")
    with pytest.raises(ValueError, match="no training text"):
        tk.train_tokenizer(small_corpus, tk.TrainSpec(vocab_size=300, languages={"klingon": 1.0}), tmp_path / "o")
    with pytest.raises(ValueError, match="sentencepiece training .* failed"):
        tk.train_tokenizer(small_corpus, tk.TrainSpec(vocab_size=900_000, languages={"code": 0.1}), tmp_path / "o")
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


# ----------------------------------------------------------------- HF == sentencepiece ----
@pytest.mark.parametrize("name", ["base", "zh", "extended"])
def test_autotokenizer_encodes_like_sentencepiece(stage, heldout, name):
    _, out = stage
    texts = [t for lang in ("zh", "en", "code", "mixed") for t in heldout[lang][:15]] + EDGE_CASES
    assert tk.hf_mismatches(out / name, texts) == []
    hf, sp = AutoTokenizer.from_pretrained(str(out / name)), spm.load_processor(out / name)
    assert len(hf) == sp.get_piece_size()
    for text in EDGE_CASES:
        ids = hf(text)["input_ids"]
        assert ids[0] == sp.bos_id() == 1 and ids[1:] == sp.encode(text)
        assert hf.decode(ids, skip_special_tokens=True) == sp.decode(ids[1:])


def test_report_records_no_hf_mismatch(stage):
    report, _ = stage
    assert set(report["hf_mismatches"]["by_language"]) == {"zh", "en", "code", "mixed"}
    assert all(n == 0 for n in report["hf_mismatches"]["by_language"].values())


def test_plain_llama_tokenizer_drops_the_dummy_prefix_after_leading_space(stage, tmp_path):
    """Without write_hf_files' fixes, transformers 5's LlamaTokenizer differs exactly where the
    docstring says: text starting with a space or "▁", and special-token strings in text."""
    _, out = stage
    d = tmp_path / "plain"
    d.mkdir()
    (d / "tokenizer.model").write_bytes((out / "base" / "tokenizer.model").read_bytes())
    tk.write_hf_files(d, exact=False)
    bad = {m["text"] for m in tk.hf_mismatches(d, EDGE_CASES)}
    assert bad == {t for t in EDGE_CASES if t.startswith((" ", "▁")) or "</s>" in t}


def test_zero_score_extension_is_not_expressible_in_hf(stage, heldout, tmp_path):
    """Chinese-LLaMA-Alpaca's score 0: sentencepiece breaks the many ties by position, HF BPE by
    rank, so the HF files differ on Chinese text; the default after_base scores do not."""
    _, out = stage
    rep = tk.extend_vocabulary(out / "base", out / "zh", tmp_path / "zero", added_score="zero")
    assert rep.final_size == spm.load_processor(out / "extended").get_piece_size()
    assert len(tk.hf_mismatches(tmp_path / "zero", heldout["zh"][:20])) > 0
    assert tk.hf_mismatches(out / "extended", heldout["zh"][:20]) == []


# ----------------------------------------------------------------- vocabulary extension ----
def test_extension_invariants(stage):
    _, out = stage
    base, zh, ext = (spm.load_proto(out / n) for n in ("base", "zh", "extended"))
    n = len(base.pieces)
    assert [(p.piece, p.score, p.type) for p in ext.pieces[:n]] == [(p.piece, p.score, p.type) for p in base.pieces]
    pieces = [p.piece for p in ext.pieces]
    assert len(pieces) == len(set(pieces)), "duplicate pieces"
    added = pieces[n:]
    assert set(added) == normal_pieces(zh) - {p.piece for p in base.pieces}
    assert all(p.type == pb.ModelProto.SentencePiece.NORMAL for p in ext.pieces[n:])
    assert max(p.score for p in ext.pieces[n:]) < min(p.score for p in base.pieces)  # after_base
    sp = spm.load_processor(out / "extended")
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)


def test_extended_tokenizer_shortens_chinese_only(stage):
    report, _ = stage
    tpc = report["tokens_per_char"]
    assert tpc["zh"]["extended"] < 0.7 * tpc["zh"]["base"]
    assert tpc["mixed"]["extended"] < tpc["mixed"]["base"]
    for lang in ("en", "code"):
        assert abs(tpc[lang]["extended"] - tpc[lang]["base"]) <= 0.02 * tpc[lang]["base"]
    texts = ["黄河是中国第二长河。"] * 3
    assert tk.tokens_per_char(stage[1] / "extended", texts) == pytest.approx(
        len(spm.load_processor(stage[1] / "extended").encode(texts[0])) / len(texts[0]))


def test_add_pad_is_a_control_piece_shared_by_sp_and_hf(stage, tmp_path):
    _, out = stage
    rep = tk.extend_vocabulary(out / "base", out / "zh", tmp_path / "pad", add_pad=True)
    sp = spm.load_processor(tmp_path / "pad")
    assert rep.pad_id == rep.final_size - 1 == sp.pad_id() and sp.id_to_piece(rep.pad_id) == "[PAD]"
    assert sp.is_control(rep.pad_id) and rep.pad_id not in sp.encode("a [PAD] b")
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "pad"))
    assert hf.pad_token == "[PAD]" and hf.pad_token_id == rep.pad_id and len(hf) == sp.get_piece_size()
    assert hf("a [PAD] b", add_special_tokens=False)["input_ids"] == sp.encode("a [PAD] b")


def llama_shaped_model(sp_model_path: Path, path: Path, size: int = 32000) -> Path:
    """A 32000-piece model like LLaMA's: a trained model plus synthetic normal pieces."""
    proto = spm.load_proto(sp_model_path)
    low = min(p.score for p in proto.pieces)
    for k in range(size - len(proto.pieces)):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = f"\ue000{k:05d}", low - 1 - k, pb.ModelProto.SentencePiece.NORMAL
    path.write_bytes(proto.SerializeToString())
    return path


def test_cli_extend_on_a_llama_sized_model(stage, sp_model_path, tmp_path, capsys):
    llama = llama_shaped_model(sp_model_path, tmp_path / "llama.model")
    zh_model = stage[1] / "zh" / "tokenizer.model"
    rc = cli.main(["tokenizer", "extend", "--base", str(llama), "--add", str(zh_model), "--out", str(tmp_path / "x")])
    assert rc == 0 and "pieces" in capsys.readouterr().out
    base, zh, ext = spm.load_proto(llama), spm.load_proto(zh_model), spm.load_proto(tmp_path / "x")
    missing = normal_pieces(zh) - {p.piece for p in base.pieces}
    assert len(base.pieces) == 32000 and len(ext.pieces) == 32000 + len(missing)
    assert [(p.piece, p.score, p.type) for p in ext.pieces[:32000]] == [(p.piece, p.score, p.type) for p in base.pieces]
    assert ext.trainer_spec.unk_id == 0 and ext.trainer_spec.bos_id == 1 and ext.trainer_spec.pad_id == -1
    sp, hf = spm.load_processor(tmp_path / "x"), AutoTokenizer.from_pretrained(str(tmp_path / "x"))
    assert sp.get_piece_size() == len(hf) == len(ext.pieces)
    text = "黄河是中国第二长河。The Yellow River, 5464 km."
    assert hf(text)["input_ids"] == [1] + sp.encode(text)


# ------------------------------------------------------------------------- bad input ----
def test_clear_errors_on_bad_models(stage, tmp_path, capsys):
    _, out = stage
    with pytest.raises(FileNotFoundError, match="nope.model"):
        tk.extend_vocabulary(tmp_path / "nope.model", out / "zh", tmp_path / "o")
    text = tmp_path / "notes.txt"
    text.write_text("these are notes, not a model\n" * 20)
    with pytest.raises(ValueError, match="notes.txt is not a SentencePiece model"):
        spm.load_processor(text)
    rc = cli.main(["tokenizer", "extend", "--base", str(text), "--add", str(out / "zh"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "notes.txt is not a SentencePiece model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_incompatible_models(stage, tmp_path):
    """A unigram base is refused (tests/test_tokenizer_extend_bpe_unigram.py covers a unigram
    addition, which is accepted); other setting differences are warnings."""
    _, out = stage
    proto = spm.load_proto(out / "base")
    proto.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    (tmp_path / "uni.model").write_bytes(proto.SerializeToString())
    with pytest.raises(ValueError, match="base model_type is UNIGRAM"):
        tk.extend_vocabulary(tmp_path / "uni.model", out / "zh", tmp_path / "o")
    proto = spm.load_proto(out / "zh")
    proto.trainer_spec.split_digits = False
    (tmp_path / "digits.model").write_bytes(proto.SerializeToString())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = tk.extend_vocabulary(out / "base", tmp_path / "digits.model", tmp_path / "o", hf_files=False)
    assert any("split_digits differs" in str(w.message) for w in caught) and rep.warnings
    assert spm.load_processor(tmp_path / "o").get_piece_size() == rep.final_size


def test_load_processor_and_sha256(stage, tmp_path):
    """knowlm_utils.spm, which every stage loads SentencePiece models with: a folder, the .model
    file or a processor; clear errors for a missing folder and for a model sentencepiece refuses."""
    _, out = stage
    folder, file = out / "base", out / "base" / "tokenizer.model"
    a, b = spm.load_processor(folder), spm.load_processor(file)
    assert a.serialized_model_proto() == b.serialized_model_proto() and spm.load_processor(a) is a
    assert spm.load_proto(a) == spm.load_proto(folder) and spm.model_file(folder) == file
    assert spm.sha256(folder) == spm.sha256(file) == hashlib.sha256(file.read_bytes()).hexdigest()
    with pytest.raises(FileNotFoundError, match="give a tokenizer folder or a .model file"):
        spm.load_processor(tmp_path)
    proto = spm.load_proto(folder)
    proto.pieces[5].piece = proto.pieces[6].piece
    (tmp_path / "dup.model").write_bytes(proto.SerializeToString())
    with pytest.raises(ValueError, match="dup.model is not a usable SentencePiece model.*already defined"):
        spm.load_processor(tmp_path / "dup.model")


# ----------------------------------------------------------------------- model resizing ----
def tiny_llama(vocab: int, tied: bool):
    return build_model(model_config("micro", vocab, tie_word_embeddings=tied), seed=0)


@pytest.mark.parametrize("tied", [True, False])
def test_resize_mean_keeps_old_rows(stage, tied):
    _, out = stage
    base_n, new_n = spm.load_processor(out / "base").get_piece_size(), spm.load_processor(out / "extended").get_piece_size()
    model = tiny_llama(base_n, tied)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    info = tk.resize_embeddings(model, out / "extended", init="mean")
    w_in, w_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert info["tied"] == tied and info["new_rows"] == new_n - base_n == info["mean_fallback"]
    h = model.config.hidden_size
    assert w_in.shape == (new_n, h) and w_out.shape == (new_n, h) and model.config.vocab_size == new_n
    assert torch.equal(w_in[:base_n], old_in) and torch.equal(w_out[:base_n], old_out)
    assert torch.allclose(w_in[base_n:], old_in.mean(0).expand(new_n - base_n, -1))
    assert torch.allclose(w_out[base_n:], old_out.mean(0).expand(new_n - base_n, -1))
    assert (w_in.data_ptr() == w_out.data_ptr()) == tied
    logits = model(torch.tensor([[1, new_n - 1]])).logits
    assert logits.shape == (1, 2, new_n)


def test_resize_subword_init(stage, tmp_path):
    _, out = stage
    tk.extend_vocabulary(out / "base", out / "zh", tmp_path / "pad", add_pad=True)
    base_sp, ext_sp = spm.load_processor(out / "base"), spm.load_processor(tmp_path / "pad")
    base_n, new_n = base_sp.get_piece_size(), ext_sp.get_piece_size()
    model = tiny_llama(base_n, tied=False)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    info = tk.resize_embeddings(model, tmp_path / "pad", init="subword", base_tokenizer=out / "base")
    assert info["mean_fallback"] == 1  # only [PAD]
    sources = tk.subword_sources(ext_sp, base_sp, base_n, new_n)
    w_in, w_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert torch.equal(w_in[:base_n], old_in) and torch.equal(w_out[:base_n], old_out)
    plain = spm.without_dummy_prefix(base_sp)
    for k, ids in enumerate(sources[:-1]):
        assert plain.decode(ids) == ext_sp.id_to_piece(base_n + k).replace("▁", " ")  # same text, base pieces
        assert all(i < base_n for i in ids)
        assert torch.allclose(w_in[base_n + k], old_in[ids].mean(0))
        assert torch.allclose(w_out[base_n + k], old_out[ids].mean(0))
    assert sources[-1] is None and torch.allclose(w_in[-1], old_in.mean(0))
    with pytest.raises(ValueError, match="needs the extended tokenizer"):
        tk.resize_embeddings(tiny_llama(base_n, True), new_n, init="subword")
    with pytest.raises(ValueError, match="smaller than"):
        tk.resize_embeddings(tiny_llama(base_n, True), base_n - 1)


def test_training_is_reproducible(stage, small_corpus, tmp_path):
    """Same corpus + spec → byte-identical tokenizer.model (the sha256 later stages record)."""
    report, out = stage
    spec = tk.TrainSpec(**report["config"]["base"])
    tk.train_tokenizer(small_corpus, spec, tmp_path / "again", HELDOUT, progress=False)
    assert spm.sha256(tmp_path / "again") == spm.sha256(out / "base")


def test_cli_train(small_corpus, tmp_path, capsys):
    cfg = tmp_path / "tok.yaml"
    cfg.write_text(f"corpus_dir: {small_corpus}\nheldout_percent: 10\nhf_check_docs: 5\n"
                   "base: {vocab_size: 1300, languages: {en: 1.0, code: 1.0}}\n"
                   "zh: {vocab_size: 1200, languages: {zh: 1.0}}\n", encoding="utf-8")
    rc = cli.main(["tokenizer", "train", str(cfg), "--out", str(tmp_path / "out"), "--no-progress",
                   "-o", "zh.vocab_size=1700", "-o", "add_pad=true"])
    assert rc == 0 and "tokens/char" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text("utf-8"))
    assert report["vocab"]["zh"] == 1700 and report["vocab"]["base"] == 1300
    pad_id = spm.load_processor(tmp_path / "out" / "extended").pad_id()
    assert report["vocab"]["pad_id"] == report["vocab"]["extended"] - 1 == pad_id
    assert cli.main(["tokenizer", "train", str(cfg), "--out", str(tmp_path / "o2"), "-o", "base.vocab=3"]) == 2


def test_cli_extend_zero_scores_and_pad(stage, sp_model_path, tmp_path):
    """The Chinese-LLaMA-Alpaca variant: every appended piece scored 0, then [PAD] as a control piece."""
    llama = llama_shaped_model(sp_model_path, tmp_path / "llama.model")
    rc = cli.main(["tokenizer", "extend", "--base", str(llama), "--add", str(stage[1] / "zh"), "--out",
                   str(tmp_path / "x"), "--added-score", "zero", "--add-pad"])
    ext = spm.load_proto(tmp_path / "x")
    assert rc == 0 and all(p.score == 0.0 for p in ext.pieces[32000:])
    assert ext.pieces[-1].piece == "[PAD]" and ext.pieces[-1].type == pb.ModelProto.SentencePiece.CONTROL
    assert ext.trainer_spec.pad_id == len(ext.pieces) - 1 == AutoTokenizer.from_pretrained(str(tmp_path / "x")).pad_token_id
