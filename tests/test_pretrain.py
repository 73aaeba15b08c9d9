"""Stage 05 pretraining: config, collator, typed rank-sliced batches, per-type eval and the
unigram baseline, exact resume, two-stage freezing, and a 2-process ZeRO-3 run through the real
``deepspeed`` launcher on CPU. Everything runs a real LlamaForCausalLM (a 2-layer, 64-wide one)
on a real SentencePiece tokenizer and a real mmap token index built here."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from knowlm_utils import cli
from knowlm_utils.config import ConfigError
from knowlm_utils.indexed import MMapTokenIndex, MMapTokenIndexWriter, ProportionalBatchSampler
from knowlm_utils.modeling import TokenizerInfo, build_model, count_parameters, model_config
from knowlm_utils.pretrain import (CausalLMCollator, PretrainConfig, RankBatchSampler, TypedEvaluator, eval_indices,
                                   latest_checkpoint, launch_pretrain, load_pretrain_config, main, pad_token,
                                   read_history, resolve_deepspeed, unigram_counts, unigram_cross_entropy)
from knowlm_utils.tokenizer import write_hf_files

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
              "max_position_embeddings": 64}
SEQ = 64
TYPES = ("zh", "en", "code")


# ----------------------------------------------------------------------------- fixtures ----
@pytest.fixture(scope="module")
def world(tmp_path_factory, sp_model_path, sample_docs) -> dict[str, Path]:
    """A tokenizer folder (tokenizer.model + HF files) and train/valid indexes of 64-token
    samples with types zh/en/code, encoded with it (BOS/EOS at document ends)."""
    import sentencepiece as spm

    root = tmp_path_factory.mktemp("pretrain_world")
    tok = root / "tokenizer"
    tok.mkdir()
    shutil.copy(sp_model_path, tok / "tokenizer.model")
    write_hf_files(tok)
    sp = spm.SentencePieceProcessor(model_file=str(sp_model_path))
    splits = {"train": slice(0, 30), "valid": slice(30, 34)}
    for split, docs_slice in splits.items():
        with MMapTokenIndexWriter(root / "index" / split, sp.get_piece_size()) as writer:
            for t in TYPES:
                for text in sample_docs[t][docs_slice]:
                    ids = [sp.bos_id(), *sp.encode(text[:600]), sp.eos_id()]
                    samples = [np.asarray(ids[a:a + SEQ], np.int64) for a in range(0, len(ids), SEQ)]
                    writer.add_document(samples, type=t)
    return {"root": root, "tokenizer": tok, "train": root / "index" / "train", "valid": root / "index" / "valid"}


def tiny_config(world, out: Path, **kw) -> PretrainConfig:
    base = dict(train_index=str(world["train"]), valid_index=str(world["valid"]), tokenizer=str(world["tokenizer"]),
                output_dir=str(out), model={"preset": "cpu-tiny", "overrides": dict(TINY_MODEL)}, seq_length=SEQ,
                proportions={t: 1 for t in TYPES}, micro_batch=3, max_steps=4, lr=3e-3, warmup_steps=1,
                logging_steps=1, eval_steps=None, eval_on_start=False, save_steps=None, device="cpu",
                progress=False)
    base.update(kw)
    path = out.parent / f"{out.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(base), "utf-8")
    return load_pretrain_config(path)


def losses_by_step(output_dir: Path) -> dict[int, float]:
    history = json.loads((output_dir / "log_history.json").read_text("utf-8"))
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# ----------------------------------------------------------------------------- config ------
def test_config_yaml_paths_and_validation_errors(tmp_path):
    cfg_path = tmp_path / "conf" / "p.yaml"
    cfg_path.parent.mkdir()
    cfg_path.write_text(yaml.safe_dump({
        "workdir": "../wd", "train_index": "index/train", "tokenizer": "tok", "output_dir": "/abs/out",
        "model": {"preset": "cpu-tiny", "overrides": {"num_hidden_layers": 2}}, "deepspeed": "ds.json"}), "utf-8")
    cfg = load_pretrain_config(cfg_path, ["micro_batch=5", "model.init_from=ckpt"])
    assert cfg.micro_batch == 5 and cfg.model.overrides == {"num_hidden_layers": 2}
    assert cfg.path(cfg.train_index) == (tmp_path / "wd" / "index" / "train").resolve()
    assert cfg.path(cfg.output_dir) == Path("/abs/out")
    assert cfg.path(cfg.model.init_from) == (tmp_path / "wd" / "ckpt").resolve()
    # a DeepSpeed file is config, not data: it is found next to the YAML, not in the workdir
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "conf" / "ds.json")):
        resolve_deepspeed(cfg.deepspeed, "cpu", cfg)

    with pytest.raises(ConfigError, match=r"p\.yaml.*unknown key\(s\) \['micro_bach'\]"):
        load_pretrain_config(cfg_path, ["micro_bach=4"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['layers'\]"):
        load_pretrain_config(cfg_path, ["model.layers=4"])
    for overrides, message in [(["stage=lora"], "stage must be one of"),
                               (["micro_batch=0"], "micro_batch must be a positive"),
                               (["stage=embeddings", "model.init_from=null"], "needs model.init_from"),
                               (["precision=fp8"], "precision must be"),
                               (["proportions={zh: -1}"], "proportions must be finite"),
                               (["deepspeed={stage: 3, offload: true}"], r"unknown key\(s\) \['offload'\]"),
                               (["betas=[0.9]"], "betas must be two numbers")]:
        with pytest.raises(ConfigError, match=message):
            load_pretrain_config(cfg_path, overrides)


def test_missing_inputs_name_their_producer(world, tmp_path):
    with pytest.raises(FileNotFoundError, match="no token index at .*nowhere.*04_mmap_token_index"):
        main(tiny_config(world, tmp_path / "out", train_index=str(tmp_path / "nowhere")))
    with pytest.raises(FileNotFoundError, match=r"init_from: .*\(no config.json\)"):
        main(tiny_config(world, tmp_path / "out", stage="embeddings", model={"init_from": str(tmp_path)}))
    # the entry point as a plain process: bad input is a short message and exit code 2
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "pretrain.py"), str(tmp_path / "out.yaml"),
                           "-o", "micro_batch=-1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "micro_batch must be a positive integer" in proc.stderr


def test_deepspeed_specs_resolve_for_cpu(tmp_path):
    short, changes = resolve_deepspeed({"stage": 3}, "cpu")
    zero = short["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert "optimizer" not in short  # the Trainer's torch AdamW: no cpu_adam to compile
    assert short["fp16"] == {"enabled": False} and changes == []
    offload, _ = resolve_deepspeed({"stage": 2, "offload_optimizer": True}, "cpu")
    assert offload["optimizer"]["type"] == "AdamW"  # offload needs DeepSpeed's own CPU Adam
    cluster = json.loads((ROOT / "configs" / "deepspeed" / "knowlm-13b-zero3-offload-fp16.json").read_text("utf-8"))
    cpu, changes = resolve_deepspeed({**cluster, "zero_optimization": {**cluster["zero_optimization"],
                                      "stage3_gather_16bit_weights_on_model_save": False}}, "cpu")
    assert cpu["fp16"] == {"enabled": False} and cpu["zero_optimization"]["offload_param"]["pin_memory"] is False
    assert cpu["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert any("fp16" in c for c in changes) and any("gather_16bit" in c for c in changes)
    assert resolve_deepspeed(None, "cpu") == (None, [])


# ----------------------------------------------------------------------------- data --------
def test_collator_pads_to_longest_masks_labels_and_counts_truncation():
    collator = CausalLMCollator(pad_id=2, max_length=5, pad_source="EOS")
    batch = collator([{"input_ids": torch.tensor([1, 7, 8])}, {"input_ids": torch.tensor([1, 9, 9, 9, 9, 9, 4])},
                      {"input_ids": torch.tensor([5])}])
    assert batch["input_ids"].tolist() == [[1, 7, 8, 2, 2], [1, 9, 9, 9, 9], [5, 2, 2, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[1, 7, 8, -100, -100], [1, 9, 9, 9, 9], [5, -100, -100, -100, -100]]
    assert collator.truncated == 1
    # a pad id that equals a real token (EOS) is still a label where it is real text
    eos_text = collator([{"input_ids": torch.tensor([1, 2])}, {"input_ids": torch.tensor([1, 3, 3])}])
    assert eos_text["labels"].tolist() == [[1, 2, -100], [1, 3, 3]]
    with pytest.raises(ValueError, match="non-empty 1-D"):
        collator([{"input_ids": torch.tensor([], dtype=torch.long)}])
    assert pad_token(TokenizerInfo(10, 1, 2, 0, "t")) == (0, "tokenizer pad token")
    assert pad_token(TokenizerInfo(10, 1, 2, None, "t"))[0] == 2
    assert pad_token(TokenizerInfo(10, None, None, None, "t"))[0] == 0


def test_rank_batch_sampler_gives_each_rank_a_different_proportional_share():
    ranges = {"zh": (0, 50), "en": (50, 80), "code": (80, 90)}
    base = ProportionalBatchSampler(ranges, {"zh": 2, "en": 1, "code": 1}, batch_size=4, seed=3)
    ranks = [list(RankBatchSampler(base, r, 2, 0, 6)) for r in range(2)]
    for k in range(6):
        a, b = ranks[0][k], ranks[1][k]
        assert a == base.batch_at(2 * k) and b == base.batch_at(2 * k + 1)
        for batch in (a, b):  # every rank's micro batch keeps the proportions
            kinds = Counter("zh" if i < 50 else "en" if i < 80 else "code" for i in batch)
            assert kinds == {"zh": 2, "en": 1, "code": 1}
    # one process sees, in order, exactly what the two ranks see interleaved
    single = list(RankBatchSampler(base, 0, 1, 0, 12))
    assert single == [ranks[k % 2][k // 2] for k in range(12)]
    resumed = RankBatchSampler(base, 1, 2, 4, 6)
    assert list(resumed) == ranks[1][4:] and len(resumed) == 2
    with pytest.raises(ValueError, match="rank 2 outside world size 2"):
        RankBatchSampler(base, 2, 2, 0, 1)


def _hand_index(path: Path, docs_by_type: dict[str, list[list[int]]], vocab: int) -> MMapTokenIndex:
    with MMapTokenIndexWriter(path, vocab) as writer:
        for t, docs in docs_by_type.items():
            for doc in docs:
                writer.add_document([np.asarray(doc, np.int64)], type=t)
    return MMapTokenIndex(path)


def test_unigram_baseline_and_per_type_eval_match_hand_computation(tmp_path):
    vocab = 6
    train = _hand_index(tmp_path / "train", {"a": [[1, 3, 3, 4], [1, 3]], "b": [[1, 5, 5, 5, 2]]}, vocab)
    valid = _hand_index(tmp_path / "valid", {"a": [[1, 3, 4], [1, 5]], "b": [[1, 2, 2, 0]]}, vocab)
    counts, info = unigram_counts(train, vocab)
    # targets = every token but each sample's first: 3 3 4 | 3 | 5 5 5 2
    assert counts.tolist() == [0, 0, 1, 3, 1, 3] and info["exact"] and info["tokens_counted"] == 8
    idx = eval_indices(valid.type_ranges, None)
    ce = unigram_cross_entropy(counts, valid, idx)

    def p(t):  # add-one smoothing over the 6-token vocabulary
        return (counts[t] + 1) / (8 + 6)

    a_targets, b_targets = [3, 4, 5], [2, 2, 0]
    assert ce["a"] == pytest.approx(-sum(math.log(p(t)) for t in a_targets) / 3, rel=1e-12)
    assert ce["b"] == pytest.approx(-sum(math.log(p(t)) for t in b_targets) / 3, rel=1e-12)
    assert ce["all"] == pytest.approx((ce["a"] + ce["b"]) / 2, rel=1e-12)  # 3 targets each
    # capped counting reads evenly spaced chunks and says it is approximate
    capped, capped_info = unigram_counts(train, vocab, max_tokens=4, chunk_tokens=2)
    assert not capped_info["exact"] and capped_info["tokens_counted"] == 4

    model = build_model(model_config("cpu-tiny", vocab, **TINY_MODEL), seed=1)
    from knowlm_utils.indexed import TokenIndexDataset

    evaluator = TypedEvaluator(TokenIndexDataset(valid), idx, CausalLMCollator(0, 16), batch_size=2, unigram=ce)

    class Args:
        device, process_index, world_size = torch.device("cpu"), 0, 1

    metrics = evaluator(model, Args())
    expected = {}
    with torch.no_grad():  # one sample at a time, the model's own loss (mean over its targets)
        for t, samples in {"a": [[1, 3, 4], [1, 5]], "b": [[1, 2, 2, 0]]}.items():
            nll = n = 0.0
            for s in samples:
                x = torch.tensor([s])
                nll += float(model(input_ids=x, labels=x).loss) * (len(s) - 1)
                n += len(s) - 1
            expected[t] = (nll, n)
    for t, (nll, n) in expected.items():
        assert metrics[f"eval_loss_{t}"] == pytest.approx(nll / n, rel=1e-5)
        assert metrics[f"eval_ppl_{t}"] == pytest.approx(math.exp(nll / n), rel=1e-5)
        assert metrics[f"eval_unigram_loss_{t}"] == ce[t]
    total = sum(v[0] for v in expected.values()) / sum(v[1] for v in expected.values())
    assert metrics["eval_loss"] == pytest.approx(total, rel=1e-5) and metrics["eval_tokens"] == 6
    assert metrics["eval_unigram_loss"] == ce["all"]


# ----------------------------------------------------------------------------- training ----
def test_resumed_run_reproduces_the_uninterrupted_one(world, tmp_path):
    full_out, split_out = tmp_path / "full", tmp_path / "split"
    kw = dict(max_steps=10, grad_accum=2, warmup_steps=2, eval_steps=5, eval_max_samples_per_type=3)
    full = main(tiny_config(world, full_out, **kw))
    first = main(tiny_config(world, split_out, stop_at_step=5, **kw))
    assert not first["completed"] and first["final_dir"] is None and not (split_out / "final").exists()
    assert latest_checkpoint(split_out).name == "checkpoint-5"
    second = main(tiny_config(world, split_out, resume_from="latest", **kw))
    assert second["completed"] and second["resumed_from"].endswith("checkpoint-5")

    a, b = losses_by_step(full_out), losses_by_step(split_out)
    assert sorted(a) == list(range(1, 11)) and sorted(b) == sorted(a)
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-6), step
    assert a[10] < a[1]  # and it learned something
    assert second["tokens_seen"] == full["tokens_seen"]
    assert second["final_eval"]["eval_loss"] == pytest.approx(full["final_eval"]["eval_loss"], rel=1e-6)
    wa, wb = state_dict(full_out / "final"), state_dict(split_out / "final")
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
    # the token count is exactly what the typed sampler drew (1 process, 10 steps × 2 micro batches)
    train = MMapTokenIndex(world["train"])
    sampler = ProportionalBatchSampler(train.type_ranges, {t: 1 for t in TYPES}, 3, seed=0)
    drawn = sum(min(int(train.sizes[i]), SEQ) for k in range(20) for i in sampler.batch_at(k))
    assert full["tokens_seen"] == drawn
    metrics = json.loads((full_out / "metrics.json").read_text("utf-8"))
    assert metrics["final_eval"]["eval_loss"] < metrics["final_eval"]["eval_unigram_loss"] + 3  # finite, sane
    history = read_history(full_out)
    assert [h["step"] for h in history["train"]] == list(range(1, 11))
    evals = history["eval"]
    assert [h["step"] for h in evals] == [5, 10] and all(f"eval_loss_{t}" in evals[0] for t in TYPES)


def test_two_stage_training_changes_only_the_right_parameters(world, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    base_dir = tmp_path / "base"
    vocab = 2000
    build_model(model_config("cpu-tiny", world["tokenizer"], **TINY_MODEL), seed=5).save_pretrained(base_dir)
    base = state_dict(base_dir)
    assert base["model.embed_tokens.weight"].shape[0] == vocab

    # stage 1 through the CLI: only the embeddings and the LM head move
    out1 = tmp_path / "stage1"
    tiny_config(world, out1, stage="embeddings", model={"init_from": str(base_dir)}, max_steps=2, valid_index=None)
    assert cli.main(["pretrain", str(tmp_path / "stage1.yaml"), "--no-progress"]) == 0
    s1 = state_dict(out1 / "final")
    for name, w in base.items():
        moved = not torch.equal(w, s1[name])
        assert moved == (name in ("model.embed_tokens.weight", "lm_head.weight")), name
    m1 = json.loads((out1 / "metrics.json").read_text("utf-8"))
    assert m1["trainable_parameters"] == 2 * vocab * 64

    # stage 2: LoRA on q/v + full embeddings/head; the saved model is merged and loads as a plain model
    out2 = tmp_path / "stage2"
    m2 = main(tiny_config(world, out2, stage="lora+embeddings", model={"init_from": str(out1 / "final")},
                          lora={"r": 4, "alpha": 8, "dropout": 0.0, "targets": ["q_proj", "v_proj"]}, max_steps=2,
                          valid_index=None))
    s2 = state_dict(out2 / "final")
    assert set(s2) == set(s1)
    for name, w in s1.items():
        should_move = any(k in name for k in ("embed_tokens", "lm_head", "q_proj", "v_proj"))
        assert (not torch.equal(w, s2[name])) == should_move, name
    lora_params = 2 * 2 * (64 * 4 + 4 * 64)  # 2 layers × (q, v) × (A + B)
    assert m2["trainable_parameters"] == 2 * vocab * 64 + lora_params
    assert (out2 / "final" / "adapter" / "adapter_config.json").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(out2 / "final")
    assert type(loaded).__name__ == "LlamaForCausalLM"


def test_two_process_zero3_run_through_the_deepspeed_launcher(world, tmp_path):
    from transformers import AutoModelForCausalLM

    from knowlm_utils.indexed import TokenIndexDataset

    out = tmp_path / "ds"
    tiny_config(world, out, deepspeed={"stage": 3}, max_steps=3, eval_max_samples_per_type=5)
    log = tmp_path / "ds.log"
    assert launch_pretrain(tmp_path / "ds.yaml", nprocs=2, launcher="deepspeed", overrides=["seed=7"], log_path=log,
                           echo=False) == 0
    metrics = json.loads((out / "metrics.json").read_text("utf-8"))
    assert metrics["world_size"] == 2 and metrics["deepspeed_stage"] == 3 and metrics["config"]["seed"] == 7
    # counted from the partitioned ZeRO-3 parameters (their full sizes), it matches the analytic count
    assert metrics["parameters"] == count_parameters(model_config("cpu-tiny", world["tokenizer"], **TINY_MODEL)).total
    ds_cfg = json.loads((out / "deepspeed_config.json").read_text("utf-8"))
    assert ds_cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    # rank r took the sampler's batches k·2 + r: the tokens seen are exactly those of batches 0 … 5
    train = MMapTokenIndex(world["train"])
    sampler = ProportionalBatchSampler(train.type_ranges, {t: 1 for t in TYPES}, 3, seed=7)
    assert metrics["tokens_seen"] == sum(min(int(train.sizes[i]), SEQ) for k in range(6) for i in sampler.batch_at(k))
    # the gathered ZeRO-3 save is a normal HF model: reloaded, it gives the held-out loss logged in the run
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    valid = MMapTokenIndex(world["valid"])
    evaluator = TypedEvaluator(TokenIndexDataset(valid), eval_indices(valid.type_ranges, 5),
                               CausalLMCollator(2, SEQ), batch_size=3, unigram=None)

    class Args:
        device, process_index, world_size = torch.device("cpu"), 0, 1

    assert evaluator(model, Args())["eval_loss"] == pytest.approx(metrics["final_eval"]["eval_loss"], rel=1e-4)
    text = log.read_text("utf-8")
    assert "2 process(es), DeepSpeed ZeRO-3" in text and "final model" in text
