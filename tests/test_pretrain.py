"""Stage 05 pretraining: config, missing inputs, exact resume, two-stage freezing, and a
2-process ZeRO-3 run through the real ``deepspeed`` launcher on CPU. Everything runs a real
LlamaForCausalLM (a 2-layer, 64-wide one) on a real SentencePiece tokenizer and a real mmap token
index built here. The shared training parts (collator, rank-sliced batches, per-type eval and the
unigram baseline, DeepSpeed specs) are tested in test_train_*.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from knowlm_utils import cli
from knowlm_utils.config import ConfigError
from knowlm_utils.index import MMapTokenIndex, MMapTokenIndexWriter
from knowlm_utils.modeling import build_model, count_parameters, model_config
from knowlm_utils.pretrain import PretrainConfig, launch_pretrain, load_pretrain_config, main
from knowlm_utils.tokenizer import write_hf_files
from knowlm_utils.train.checkpoints import KEY_ENV, MANIFEST, latest_checkpoint, verify_checkpoint
from knowlm_utils.train.collate import CausalLMCollator
from knowlm_utils.train.deepspeed import resolve_deepspeed
from knowlm_utils.train.evaluation import TypedEvaluator, eval_indices
from knowlm_utils.train.sampling import ProportionalBatchSampler
from knowlm_utils.train.trainer import read_history

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
              "max_position_embeddings": 64}
SEQ = 64
TYPES = ("zh", "en", "code")


# ----------------------------------------------------------------------------- fixtures ----
@pytest.fixture(scope="module", autouse=True)
def checkpoint_key_file(tmp_path_factory):
    """Checkpoints are signed with a per-user key (default ~/.config/knowlm/checkpoint-key); the
    tests sign with their own (launched processes inherit the variable)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, str(tmp_path_factory.mktemp("checkpoint_key") / "checkpoint-key"))
        yield


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
    for overrides, message in [(["stage=lora"], "stage: must be one of"),
                               (["micro_batch=0"], "micro_batch: must be >= 1"),
                               (["stage=embeddings", "model.init_from=null"], "needs model.init_from"),
                               (["precision=fp8"], "precision: must be one of"),
                               (["proportions={zh: -1}"], r"proportions\.zh: must be >= 0"),
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
    assert proc.returncode == 2 and "micro_batch: must be >= 1, got -1" in proc.stderr


# ----------------------------------------------------------------------------- training ----
def test_resumed_run_reproduces_the_uninterrupted_one(world, tmp_path):
    full_out, split_out = tmp_path / "full", tmp_path / "split"
    kw = dict(max_steps=10, grad_accum=2, warmup_steps=2, eval_steps=5, eval_max_samples_per_type=3)
    full = main(tiny_config(world, full_out, **kw))
    first = main(tiny_config(world, split_out, stop_at_step=5, **kw))
    assert not first["completed"] and first["final_dir"] is None and not (split_out / "final").exists()
    assert latest_checkpoint(split_out).name == "checkpoint-5"
    # the checkpoint is signed: its manifest lists every file the Trainer wrote, and verifies
    manifest = json.loads((split_out / "checkpoint-5" / MANIFEST).read_text("utf-8"))
    written = {p.name for p in (split_out / "checkpoint-5").iterdir()} - {MANIFEST}
    assert set(manifest["files"]) == written and manifest["version"] == 1
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "model.safetensors", "trainer_state.json"} <= written
    assert verify_checkpoint(split_out / "checkpoint-5") == manifest
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


def test_stop_after_minutes_saves_where_the_time_ran_out(world, tmp_path, capsys):
    out = tmp_path / "timed"
    first = main(tiny_config(world, out, max_steps=4, stop_after_minutes=0.0001))  # gone by the first step's end
    assert first["stopped_by"] == "stop_after_minutes" and first["global_step"] == 1 and first["final_dir"] is None
    assert latest_checkpoint(out).name == "checkpoint-1" and verify_checkpoint(out / "checkpoint-1")
    assert "stopped at step 1 of 4 (stop_after_minutes)" in capsys.readouterr().out
    second = main(tiny_config(world, out, max_steps=4, resume_from="latest"))
    assert second["completed"] and second["stopped_by"] is None and second["global_step"] == 4


def _lrs(output_dir: Path) -> dict[int, float]:
    history = json.loads((output_dir / "log_history.json").read_text("utf-8"))
    return {h["step"]: h["learning_rate"] for h in history if "learning_rate" in h}


def test_fit_schedule_minutes_sizes_the_run_to_the_time_and_a_resume_follows_the_fit(world, tmp_path, capsys):
    """After 3 measured steps the run fits max_steps to 12 s (less than the configured 100,000)
    and the cosine decays to 0 at that step; a run interrupted after the fit resumes on the same
    curve and completes at the same step."""
    from transformers import get_scheduler

    from knowlm_utils.train.schedule_fit import SCHEDULE_FIT

    kw = dict(max_steps=100_000, fit_schedule_minutes=0.2, fit_calibration_steps=3, valid_index=None)
    out = tmp_path / "fit"
    # interrupted at step 6, after the fit at step 4 (step 1 is not measured)
    first = main(tiny_config(world, out, stop_at_step=6, **kw))
    fit = json.loads((out / SCHEDULE_FIT).read_text("utf-8"))
    assert fit["fitted_at_step"] == 4 and fit["configured_max_steps"] == 100_000 and 6 < fit["max_steps"] < 100_000
    # the end step is where the measured pace uses up the budget
    budget_steps = (12 - fit["elapsed_s"]) / fit["seconds_per_step"]
    assert fit["max_steps"] - fit["fitted_at_step"] == int(budget_steps)
    assert first["stopped_by"] == "stop_at_step" and first["schedule_fit"] == fit
    assert f"of {fit['max_steps']} (stop_at_step)" in capsys.readouterr().out

    second = main(tiny_config(world, out, resume_from="latest", **kw))
    n = fit["max_steps"]
    assert second["completed"] and second["stopped_by"] is None and second["global_step"] == n == second["max_steps"]
    assert second["schedule_fit"] == fit and "schedule: max_steps" in capsys.readouterr().out
    # the learning rates are the configured curve up to the fit, then the fitted one, down to 0 at the end
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
    long_curve = get_scheduler("cosine", opt, num_warmup_steps=1, num_training_steps=100_000).lr_lambdas[0]
    fitted = get_scheduler("cosine", opt, num_warmup_steps=1, num_training_steps=n).lr_lambdas[0]
    lrs = _lrs(out)  # the rate logged at step s is the one step s used, set after step s - 1
    assert all(abs(lrs[s] - 3e-3 * long_curve(s - 1)) < 1e-12 for s in range(1, 6))  # fitted after step 4
    assert all(abs(lrs[s] - 3e-3 * fitted(s - 1)) < 1e-12 for s in range(6, n + 1))
    assert lrs[n] < 3e-3 * 1e-3 and fitted(n) == 0.0  # the decay ends with the run

    # a fresh run fits again; a schedule that does not decay cannot be fitted
    with pytest.raises(ValueError, match="fit_schedule_minutes needs a schedule that decays to an end step"):
        tiny_config(world, tmp_path / "const", lr_scheduler="constant_with_warmup", **kw)
    with pytest.raises(ValueError, match=r"fit_reserve_minutes \(0.5\) must be less than fit_schedule_minutes"):
        tiny_config(world, tmp_path / "res", fit_reserve_minutes=0.5, **kw)


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

    from knowlm_utils.train.dataset import TokenIndexDataset

    out = tmp_path / "ds"
    tiny_config(world, out, deepspeed={"stage": 3}, max_steps=3, eval_max_samples_per_type=5)
    log = tmp_path / "ds.log"
    shm = set(Path("/dev/shm").glob("deepspeed_allreduce_buffer_*"))
    assert launch_pretrain(tmp_path / "ds.yaml", nprocs=2, launcher="deepspeed", overrides=["seed=7"], log_path=log,
                           echo=False) == 0
    # DeepSpeed's CPU all-reduce made a 69 MB shared-memory segment per rank and never unlinks it:
    # the ranks removed theirs on the way out (knowlm_utils.train.ranks)
    assert "deepspeed_shm_comm_op built successfully" in log.read_text("utf-8")
    assert set(Path("/dev/shm").glob("deepspeed_allreduce_buffer_*")) <= shm
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
    # launched with device="auto": no GPU here, so the CPU, passed to the config as well
    assert text.splitlines()[0].endswith("-o seed=7 -o device=cpu") and "device cpu (fp32)" in text
