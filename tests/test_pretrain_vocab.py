"""Stage 05 with a grown vocabulary ("bring your own LLaMA"): ``model.init_from`` a tiny LLaMA saved
with a small tokenizer, trained with a tokenizer that extends it (``knowlm tokenizer extend`` of a
BPE base with a Chinese model trained here). Both ``init_embeddings`` rules are checked row by row
against the rule computed independently, then a few real training steps run; and the cluster YAMLs
are checked for their published numbers and for one consistent set of paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from knowlm_utils.config import ConfigError
from knowlm_utils.index import MMapTokenIndexWriter
from knowlm_utils.modeling import build_model, count_parameters, model_config
from knowlm_utils.pretrain import build_pretrain_model, load_pretrain_config, main
from knowlm_utils.tokenizer import extend_vocabulary, write_hf_files

ROOT = Path(__file__).resolve().parents[1]
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
        "max_position_embeddings": 64}
SEQ = 64


@pytest.fixture(scope="module")
def grown(tmp_path_factory, sp_model_path, sample_docs) -> dict:
    """base tokenizer (2000-piece BPE) → a tiny LLaMA saved with it; a 2600-piece Chinese BPE
    model trained on the zh samples; the extended tokenizer; a train index encoded with it."""
    import sentencepiece as spm

    root = tmp_path_factory.mktemp("grown")
    zh_text = root / "zh.txt"
    zh_text.write_text("\n".join(d.replace("\r", " ") for d in sample_docs["zh"]), "utf-8")
    spm.SentencePieceTrainer.train(input=str(zh_text), model_prefix=str(root / "zh"), vocab_size=2600,
                                   model_type="bpe", character_coverage=0.9995, byte_fallback=True, split_digits=True,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False,
                                   max_sentence_length=100000, num_threads=1, minloglevel=2)
    report = extend_vocabulary(sp_model_path, root / "zh.model", root / "extended")
    assert report.added > 50
    init = root / "init"
    build_model(model_config("cpu-tiny", sp_model_path, **TINY), seed=3).save_pretrained(init)
    shutil.copyfile(sp_model_path, init / "tokenizer.model")  # a converted checkpoint carries its tokenizer
    write_hf_files(init)
    sp = spm.SentencePieceProcessor(model_file=str(root / "extended" / "tokenizer.model"))
    with MMapTokenIndexWriter(root / "index" / "train", sp.get_piece_size()) as writer:
        for t in ("zh", "en"):
            for text in sample_docs[t][:20]:
                ids = [sp.bos_id(), *sp.encode(text[:500]), sp.eos_id()]
                writer.add_document([np.asarray(ids[a:a + SEQ], np.int64) for a in range(0, len(ids), SEQ)], type=t)
    return {"root": root, "base": sp_model_path, "extended": root / "extended", "init": init,
            "train": root / "index" / "train", "old_size": 2000, "new_size": sp.get_piece_size()}


def config(g, out: Path, **kw):
    data = dict(train_index=str(g["train"]), tokenizer=str(g["extended"]), output_dir=str(out),
                model={"preset": "cpu-tiny", "init_from": str(g["init"])}, seq_length=SEQ,
                proportions={"zh": 1, "en": 1}, micro_batch=2, max_steps=3, lr=1e-3, warmup_steps=1,
                logging_steps=1, eval_on_start=False, device="cpu", progress=False)
    data.update(kw)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return load_pretrain_config(path)


def saved_rows(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    w = load_file(str(folder / "model.safetensors"))
    return {"embed": w["model.embed_tokens.weight"], "head": w["lm_head.weight"]}


def subword_ids(g) -> dict[int, list[int]]:
    """The rule of notebook 02, computed here on its own: each new piece's surface text (▁ read as
    a space) encoded by the base model with its dummy prefix switched off."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(Path(g["base"]).read_bytes())
    proto.normalizer_spec.add_dummy_prefix = False
    base = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    ext = spm.SentencePieceProcessor(model_file=str(g["extended"] / "tokenizer.model"))
    return {i: base.encode(ext.id_to_piece(i).replace("▁", " ")) for i in range(g["old_size"], g["new_size"])}


@pytest.mark.parametrize("init", ["mean", "subword"])
def test_init_from_grows_the_vocabulary_by_the_chosen_rule(grown, tmp_path, init):
    g = grown
    old = saved_rows(g["init"])
    report: dict = {}
    model, info = build_pretrain_model(config(g, tmp_path / "run", init_embeddings=init), g["extended"],
                                       log=lambda m: None, report=report)
    new = {"embed": model.get_input_embeddings().weight.detach(), "head": model.get_output_embeddings().weight.detach()}
    n_old, n_new = g["old_size"], g["new_size"]
    assert info.vocab_size == n_new and model.config.vocab_size == n_new
    assert report["old_size"] == n_old and report["new_size"] == n_new and report["init"] == init
    assert report["checked_pieces"] == n_old  # the extended tokenizer was checked to keep every old piece
    sources = subword_ids(g)
    for name in ("embed", "head"):
        assert tuple(new[name].shape) == (n_new, 64)
        assert torch.equal(new[name][:n_old], old[name])  # trained rows untouched, bit for bit
        mean = old[name].mean(0)
        for i in range(n_old, n_new):
            expected = old[name][sources[i]].mean(0) if init == "subword" and sources[i] else mean
            assert torch.allclose(new[name][i], expected, atol=1e-6), (name, i)
    if init == "subword":  # the rule really differs from the mean: pieces start at different points
        assert report["mean_fallback"] == sum(1 for ids in sources.values() if not ids) < n_new - n_old
        assert len({tuple(r.tolist()) for r in new["embed"][n_old:]}) > (n_new - n_old) // 2
    else:
        assert torch.equal(new["embed"][n_old], new["embed"][n_new - 1])


def test_training_steps_after_growing_both_ways(grown, tmp_path, capsys):
    g = grown
    old = saved_rows(g["init"])
    # subword, every weight trains: the run completes and the final model has the grown vocabulary
    m = main(config(g, tmp_path / "full", init_embeddings="subword"))
    assert m["completed"] and m["global_step"] == 3 and m["vocab_size"] == g["new_size"]
    assert m["embedding_init"]["init"] == "subword" and m["embedding_init"]["new_rows"] == g["new_size"] - g["old_size"]
    assert np.isfinite(m["train_loss"])
    assert saved_rows(tmp_path / "full" / "final")["embed"].shape == (g["new_size"], 64)
    assert "grew the embeddings" in capsys.readouterr().out
    # mean, Chinese-LLaMA stage 1: only embed_tokens trains (lm_head and the transformer frozen)
    m1 = main(config(g, tmp_path / "stage1", init_embeddings="mean", stage="embeddings", embeddings_lm_head=False))
    assert m1["trainable_parameters"] == g["new_size"] * 64
    after = saved_rows(tmp_path / "stage1" / "final")
    assert not torch.equal(after["embed"][:g["old_size"]], old["embed"])  # it trained
    assert torch.equal(after["head"][:g["old_size"]], old["head"])  # frozen: old rows as loaded
    assert torch.equal(after["head"][g["old_size"]], old["head"].mean(0))  # new rows as initialised


def test_growing_refuses_what_would_misplace_rows(grown, tmp_path):
    from sentencepiece import sentencepiece_model_pb2 as pb

    g = grown
    # a tokenizer with as many pieces that does NOT keep the base's ids: two pieces swapped
    proto = pb.ModelProto()
    proto.ParseFromString((g["extended"] / "tokenizer.model").read_bytes())
    proto.pieces[700].piece, proto.pieces[701].piece = proto.pieces[701].piece, proto.pieces[700].piece
    other = tmp_path / "other"
    other.mkdir()
    (other / "tokenizer.model").write_bytes(proto.SerializeToString())
    with pytest.raises(ValueError, match=r"does not extend .* id 700"):
        build_pretrain_model(config(g, tmp_path / "a", tokenizer=str(other)), other, log=lambda m: None)
    # subword needs the initial model's SentencePiece model
    bare = tmp_path / "bare"
    shutil.copytree(g["init"], bare)
    (bare / "tokenizer.model").unlink()
    with pytest.raises(FileNotFoundError, match="init_embeddings: subword needs"):
        build_pretrain_model(config(g, tmp_path / "b", model={"init_from": str(bare)}, init_embeddings="subword"),
                             g["extended"], log=lambda m: None)
    # ... which init_tokenizer can name instead
    report: dict = {}
    build_pretrain_model(config(g, tmp_path / "c", model={"init_from": str(bare)}, init_embeddings="subword",
                                init_tokenizer=str(g["base"])), g["extended"], log=lambda m: None, report=report)
    assert report["init"] == "subword" and report["init_tokenizer"] == str(g["base"])
    for overrides, message in [({"init_embeddings": "random"}, "init_embeddings: must be one of"),
                               ({"embeddings_lm_head": False}, "only applies to stage embeddings"),
                               ({"init_tokenizer": "x", "model": {"init_from": None}}, "init_from, which is not set")]:
        with pytest.raises(ConfigError, match=message):
            config(g, tmp_path / "d", **overrides)


# ------------------------------------------------------------------ the cluster YAMLs ----
def _yaml(rel: str) -> dict:
    return yaml.safe_load((ROOT / rel).read_text("utf-8"))


def test_cluster_yamls_share_one_root_and_layout():
    from knowlm_utils.pretrain import PretrainConfig
    from knowlm_utils.preprocess import PreprocessConfig
    from knowlm_utils.tokenizer import TokenizerConfig

    tok = TokenizerConfig.from_yaml(ROOT / "configs/tokenizer/cluster-example.yaml")
    pre = PreprocessConfig.from_yaml(ROOT / "configs/preprocess/cluster-example.yaml")
    k13 = PretrainConfig.from_yaml(ROOT / "configs/pretrain/knowlm-13b.yaml")
    s1 = PretrainConfig.from_yaml(ROOT / "configs/pretrain/chinese-llama-7b-stage1.yaml")
    s2 = PretrainConfig.from_yaml(ROOT / "configs/pretrain/chinese-llama-7b-stage2.yaml")
    root = Path("/data/knowlm")
    assert {Path(k13.workdir), Path(s1.workdir), Path(s2.workdir)} == {root}
    assert tok.path(tok.corpus_dir) == pre.path(pre.corpus_dir) == root / "corpus_clean"
    assert tok.path(tok.output_dir) == root / "tokenizer"  # gets base/ zh/ extended/
    # 13B: the index preprocessing writes, encoded with the tokenizer the run trains with
    assert k13.path(k13.train_index) == pre.path(pre.output_dir) / "train"
    assert k13.path(k13.valid_index) == pre.path(pre.output_dir) / "valid"
    assert pre.path(pre.tokenizer) == k13.path(k13.tokenizer) / "tokenizer.model"
    assert k13.path(k13.model.init_from) == root / "llama/hf/llama-13b"
    # 7B: the extended tokenizer (`knowlm tokenizer extend ... --out tokenizer-llama-zh`, as the
    # tokenizer YAML's comment says) and stage 2 continuing from stage 1's final model
    ext = root / "tokenizer-llama-zh"
    assert s1.path(s1.tokenizer) == s2.path(s2.tokenizer) == ext
    assert f"--out {ext}" in (ROOT / "configs/tokenizer/cluster-example.yaml").read_text("utf-8")
    assert f"tokenizer={ext}" in (ROOT / "configs/preprocess/cluster-example.yaml").read_text("utf-8")
    assert s1.path(s1.train_index) == s2.path(s2.train_index) == root / "index/llama-zh/train"
    assert s1.path(s1.init_tokenizer) == k13.path(k13.tokenizer)  # LLaMA's own tokenizer
    assert s2.path(s2.model.init_from) == s1.path(s1.output_dir) / "final"


def test_cluster_yamls_carry_the_published_numbers():
    from knowlm_utils.train.sampling import largest_remainder_counts

    k13 = _yaml("configs/pretrain/knowlm-13b.yaml")
    assert k13["micro_batch"] * k13["grad_accum"] * 24 == 1440 and k13["seq_length"] == 1024
    assert k13["max_steps"] == round(7_900_000 / 1440)  # one pass over the 7.9 M samples KnowLM reports
    assert k13["proportions"] == {"zh": 5500, "en": 1500, "code": 900}
    assert largest_remainder_counts(k13["proportions"], k13["micro_batch"]) == {"zh": 14, "en": 4, "code": 2}
    assert k13["stage"] == "full" and k13["resume_from"] == "latest"
    s1, s2 = _yaml("configs/pretrain/chinese-llama-7b-stage1.yaml"), _yaml("configs/pretrain/chinese-llama-7b-stage2.yaml")
    for s, lr, steps in ((s1, 2e-4, 3000), (s2, 1e-4, 6000)):
        assert s["micro_batch"] * s["grad_accum"] * 8 == 1024 and s["seq_length"] == 512
        assert (s["lr"], s["max_steps"]) == (lr, steps)
    # the published trainable shares follow from what each stage trains (49,953-piece LLaMA-7B)
    pc = count_parameters(model_config("llama-7b", 49953))
    assert s1["stage"] == "embeddings" and s1["embeddings_lm_head"] is False
    assert round(100 * pc.embeddings / pc.total, 2) == 2.97
    r, h, layers = s2["lora"]["r"], 4096, 32
    lora = layers * len(s2["lora"]["targets"]) * 2 * h * r  # q/k/v/o are h × h: A (r × h) + B (h × r)
    assert s2["stage"] == "lora+embeddings" and set(s2["lora"]["targets"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert round(100 * (pc.embeddings + pc.lm_head + lora) / (pc.total + lora), 2) == 6.06
