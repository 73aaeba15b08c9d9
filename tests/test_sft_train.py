"""Stage 07 training: a few real LoRA steps on a tiny LLaMA, resume, the adapter file."""

import json
import shutil
from pathlib import Path

import pytest

from knowlm_utils.kg2instruction import pipeline
from knowlm_utils.sft import train as sft

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base_model(sp_model_path, tmp_path_factory) -> Path:
    """A tiny LLaMA saved as a HF folder with its SentencePiece tokenizer (what notebook 05 leaves)."""
    from knowlm_utils.modeling import tiny_llama
    from knowlm_utils.tokenizer import write_hf_files

    d = tmp_path_factory.mktemp("base") / "final"
    d.mkdir()
    shutil.copy(sp_model_path, d / "tokenizer.model")
    write_hf_files(d)
    tiny_llama(d, hidden_size=32).save_pretrained(d, safe_serialization=True)
    return d


@pytest.fixture(scope="module")
def ie_dir(sample_corpus_80, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ie") / "ie"
    pipeline.main(ROOT / "configs" / "ie" / "sample.yaml",
                  [f"corpus_dir={sample_corpus_80}", f"output_dir={out}", "progress=false", "max_docs_per_source=20",
                   "hf_dataset=false"])
    return out


def _cfg(base_model, ie_dir, out, *extra):
    return [f"workdir={out.parent}", f"base_model={base_model}", f"data_dir={ie_dir}", f"output_dir={out}",
            "progress=false", *extra]


SMOKE = ROOT / "configs" / "sft" / "cpu-smoke.yaml"


def test_a_few_lora_steps_save_a_trained_adapter_that_reloads_equal(base_model, ie_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    m = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "run"))
    assert m["completed"] and m["global_step"] == 6
    assert m["adapter"]["tensors"] > 0 and m["adapter"]["trained_lora_b"] > 0
    assert m["tokens_per_s"] > 0 and m["data"]["records"]["ie"] > 0
    final = Path(m["final_dir"])
    assert (final / "adapter" / "adapter_model.safetensors").stat().st_size > 1000
    assert not list(final.rglob("*.bin"))  # no pickles shipped
    from knowlm_utils.ie.eval_cli import load_prompter
    from knowlm_utils.sft.prompter import PROMPTS_FILE

    trained_with = json.loads((tmp_path / "run" / PROMPTS_FILE).read_text("utf-8"))["mapping"]
    assert trained_with["iepile"] == sft.SFTConfig.load(SMOKE).data.templates.get("iepile", "oneke_chat")
    for folder in (final, final / "adapter"):  # evaluation prompts as training did
        assert load_prompter(folder).mapping == trained_with
    ids = torch.tensor([[1, 100, 200, 300, 400]])
    merged = AutoModelForCausalLM.from_pretrained(final, use_safetensors=True, local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(base_model, use_safetensors=True, local_files_only=True)
    with_adapter = PeftModel.from_pretrained(base, final / "adapter", local_files_only=True)
    with torch.no_grad():
        a, b = merged(ids).logits, with_adapter(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base_model, use_safetensors=True, local_files_only=True)(ids).logits
    assert torch.allclose(a, b, atol=1e-5)  # merged == base + adapter
    assert not torch.allclose(a, plain, atol=1e-4)  # and the adapter changed something


def test_resume_continues_the_same_run(base_model, ie_dir, tmp_path):
    whole = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "whole"))
    first = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "split", "stop_at_step=3"))
    assert not first["completed"] and first["global_step"] == 3
    second = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "split", "resume_from=latest"))
    assert second["completed"] and second["resumed_from"]
    losses = lambda out: [h["loss"] for h in json.loads((out / "log_history.json").read_text()) if "loss" in h]
    assert losses(tmp_path / "split")[-1] == pytest.approx(losses(tmp_path / "whole")[-1], rel=1e-4)
    assert whole["completed"]
    # a finished run extended: resume its last checkpoint with a larger max_steps (cpu-long's second leg)
    longer = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "whole", "resume_from=latest", "max_steps=10",
                                  "lr_scheduler=cosine", "warmup_steps=0"))
    assert longer["completed"] and longer["global_step"] == 10 and Path(longer["resumed_from"]).name == "checkpoint-6"
    lrs = {h["step"]: h["learning_rate"] for h in json.loads((tmp_path / "whole" / "log_history.json").read_text())
           if "learning_rate" in h}
    assert lrs[8] > lrs[6] and lrs[10] < lrs[8]  # a new cosine over 10 steps from step 6, not the old one's end


def test_group_by_length_pads_less_and_reports_it(base_model, ie_dir, tmp_path, capsys):
    plain = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "plain"))
    grouped = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "grouped", "group_by_length=6"))
    assert plain["padding"]["ungrouped_share"] is None and grouped["completed"]
    assert grouped["padding"]["ungrouped_share"] == pytest.approx(plain["padding"]["share"])
    assert grouped["padding"]["share"] < plain["padding"]["share"]
    assert grouped["padding"]["micro_batches"] == grouped["global_step"] == 6
    assert plain["tokens_seen"] == grouped["tokens_seen"]  # the same samples, dealt by length
    out = capsys.readouterr().out
    assert f"batches: padding {grouped['padding']['share']:.1%} of the tokens computed (first 6 micro batches; " \
           f"{plain['padding']['share']:.1%} without group_by_length 6)" in out


def test_selection_and_errors(base_model, ie_dir, tmp_path):
    cfg = sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "x", "tasks=[EE]", "styles=[text]",
                                         "langs=[en]"))
    ie, general = sft.select_records([{"task": "EE", "style": "text", "lang": "en"},
                                      {"task": "RE", "style": "text", "lang": "en"},
                                      {"task": "GENERAL", "style": "alpaca", "lang": "en"},
                                      {"task": "GENERAL", "style": "alpaca", "lang": "zh"}], cfg)
    assert [r["task"] for r in ie] == ["EE"] and len(general) == 1
    with pytest.raises(FileNotFoundError, match="no config.json"):
        sft.main(SMOKE, _cfg(tmp_path, ie_dir, tmp_path / "y"))


def test_schema_shuffle_reorders_the_iepile_records_it_trains_on(base_model, ie_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_model), local_files_only=True)
    plain = sft.prepare_data(sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "a", "styles=[iepile]",
                                                             "general_ratio=0")), tok)
    shuffled = sft.prepare_data(sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "b", "styles=[iepile]",
                                                                "general_ratio=0", "schema_shuffle=1.0")), tok)
    st = shuffled.stats["schema_shuffle"]
    assert st["shuffled"] > 0 and st["considered"] == st["shuffled"] + sum(st["skipped"].values())
    assert plain.stats["schema_shuffle"]["shuffled"] == 0 and len(plain.train) == len(shuffled.train)
    changed = sum(a["input_ids"] != b["input_ids"] for a, b in zip(plain.train, shuffled.train))
    assert changed == st["shuffled"]  # exactly the shuffled records read differently
    with pytest.raises(ValueError, match="schema_shuffle"):
        sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "c", "schema_shuffle=2"))


def test_empty_answer_share_caps_the_all_empty_answers_before_thinning(base_model, ie_dir, tmp_path, capsys):
    from transformers import AutoTokenizer

    from knowlm_utils.ie.evaluate import parse_gold
    from knowlm_utils.sft.data import read_records

    tok = AutoTokenizer.from_pretrained(str(base_model), local_files_only=True)
    args = ("styles=[iepile]", "tasks=[RE]", "general_ratio=0", "max_train_records=null")
    plain = sft.prepare_data(sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "a", *args)), tok)
    capped = sft.prepare_data(sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "b", *args,
                                                              "empty_answer_share=0.2")), tok)
    train = read_records(ie_dir, "train")
    rows = sft.select_records(train, sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "c", *args)))[0]
    n_empty = sum(not parse_gold(r) for r in rows)
    assert plain.stats["empty_answers"] is None and n_empty > len(rows) // 3  # the real mix: many empty chunks
    st = capped.stats["empty_answers"]
    kept_empty = sum(g["kept_empty"] for g in st["by_group"].values())
    answered = sum(g["answered"] for g in st["by_group"].values())
    assert answered == len(rows) - n_empty and kept_empty <= 0.25 * answered and st["dropped"] == n_empty - kept_empty
    assert len(capped.train) == len(plain.train) - st["dropped"]
    assert "empty answers (at most 20% per task): kept RE/" in capsys.readouterr().out
    # the cap comes before max_train_records: the thinned 64 hold the capped mix
    thin = sft.select_records(train, sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "d", *args[:3],
                                                                    "empty_answer_share=0.2")))[0]
    assert len(thin) == 64 and sum(not parse_gold(r) for r in thin) <= 0.25 * 64 < n_empty / len(rows) * 64
    with pytest.raises(ValueError, match="empty_answer_share"):
        sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "e", "empty_answer_share=1"))


def test_copy_records_take_their_share_of_every_batch(base_model, ie_dir, tmp_path):
    from transformers import AutoTokenizer

    cfg = sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "c", "copy_ratio=0.25", "copy_group=2"))
    tok = AutoTokenizer.from_pretrained(str(base_model), local_files_only=True)
    data = sft.prepare_data(cfg, tok)
    start, end = data.type_ranges["COPY"]
    assert end > start and data.stats["records"]["copy"] == end - start
    assert data.proportions == pytest.approx({"IE": 0.5, "GENERAL": 0.25, "COPY": 0.25})
    for sample in data.train[start:end]:
        answer = [t for t, label in zip(sample["input_ids"], sample["labels"]) if label != -100]
        prompt = tok.decode(sample["input_ids"][:len(sample["input_ids"]) - len(answer)])
        text = tok.decode(answer[:-1]).strip()
        assert answer[-1] == tok.eos_token_id and len(text) > 10 and text in prompt  # the answer is the input
    m = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "run", "copy_ratio=0.25", "max_steps=2"))
    assert m["completed"] and m["counts_per_batch"] == {"IE": 2, "GENERAL": 1, "COPY": 1}
    with pytest.raises(ValueError, match=r"general_ratio \+ copy_ratio must be < 1"):
        sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "d", "copy_ratio=0.75"))


def test_task_shares_split_the_ie_part_of_every_batch_by_task(base_model, ie_dir, tmp_path):
    from transformers import AutoTokenizer

    shares = "task_shares={NER: 2, RE: 1}"
    every = ("max_train_records=null", "name_substitution=0")  # the same records whatever the tasks
    cfg = sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "s", shares, *every))
    tok = AutoTokenizer.from_pretrained(str(base_model), local_files_only=True)
    data = sft.prepare_data(cfg, tok)
    plain = sft.prepare_data(sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "p", *every)), tok)
    assert set(data.type_ranges) == {"IE:NER", "IE:RE", "GENERAL"}
    assert data.proportions == pytest.approx({"IE:NER": 0.5, "IE:RE": 0.25, "GENERAL": 0.25})
    for task in ("NER", "RE"):  # each group holds exactly its task's samples: none lost, none moved
        start, end = data.type_ranges[f"IE:{task}"]
        alone = sft.prepare_data(sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / task, *every,
                                                                f"tasks=[{task}]")), tok)
        a_start, a_end = alone.type_ranges["IE"]
        assert end > start and sorted(tuple(x["input_ids"]) for x in data.train[start:end]) == \
            sorted(tuple(x["input_ids"]) for x in alone.train[a_start:a_end])
    n_ie = sum(e - s for k, (s, e) in data.type_ranges.items() if k.startswith("IE:"))
    assert n_ie == plain.type_ranges["IE"][1] - plain.type_ranges["IE"][0]
    m = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "run", shares, "micro_batch=8", "max_steps=2"))
    assert m["completed"] and m["counts_per_batch"] == {"IE:NER": 4, "IE:RE": 2, "GENERAL": 2}
    for bad, msg in (("task_shares={NER: 1}", r"no weight for task\(s\) \['RE'\]"),
                     ("task_shares={NER: 1, RE: 1, EE: 1}", r"\['EE'\] not in tasks"),
                     ("task_shares={NER: 0, RE: 0}", "must not all be 0"),
                     ("task_shares={NER: -1, RE: 1}", "task_shares")):
        with pytest.raises(ValueError, match=msg):
            sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "bad", bad))


def test_init_adapter_starts_from_a_trained_adapter_with_a_fresh_schedule(base_model, ie_dir, tmp_path):
    first = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "first"))
    adapter = Path(first["final_dir"]) / "adapter"
    second = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "second", f"init_adapter={adapter}",
                                  "eval_on_start=true", "max_steps=2", "name_substitution=1.0"))
    assert second["completed"] and second["init_adapter"] == str(adapter) and second["global_step"] == 2
    history = json.loads((tmp_path / "second" / "log_history.json").read_text())
    start = next(h for h in history if "eval_loss" in h and h["step"] == 0)
    # the second run's untrained step 0 is the first run's end: the weights came over, all of them
    assert start["eval_loss"] == pytest.approx(first["final_eval"]["eval_loss"], rel=1e-5)
    plain = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "plain", "eval_on_start=true", "max_steps=1"))
    untrained = json.loads((tmp_path / "plain" / "log_history.json").read_text())
    assert start["eval_loss"] < next(h for h in untrained if "eval_loss" in h)["eval_loss"]  # ≠ a fresh adapter
    assert plain["init_adapter"] is None


def test_init_adapter_refuses_what_does_not_fit(base_model, ie_dir, tmp_path):
    first = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "first", "max_steps=1"))
    adapter = Path(first["final_dir"]) / "adapter"
    with pytest.raises(ValueError, match=r"adapter_config.json: r 4, but this run's model has 8"):
        sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "r8", f"init_adapter={adapter}", "lora.r=8"))
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "none", f"init_adapter={tmp_path}"))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(adapter / "adapter_config.json", pickled)
    (pickled / "adapter_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="pickled weights are not loaded"):
        sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "pk", f"init_adapter={pickled}"))
    from safetensors.torch import load_file, save_file

    state = load_file(adapter / "adapter_model.safetensors")
    key = next(k for k in sorted(state) if "lora_A" in k)
    state[key] = state[key][:, :-1].contiguous()
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(adapter / "adapter_config.json", cut)
    save_file(state, cut / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=rf"tensor {key} has shape"):
        sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "c", f"init_adapter={cut}"))


def test_stop_after_minutes_ends_the_session_with_a_checkpoint_and_resume_finishes(base_model, ie_dir, tmp_path):
    out = tmp_path / "timed"
    # 6 ms: the limit has passed when the first step ends (data preparation counts: a Slurm job's clock)
    first = sft.main(SMOKE, _cfg(base_model, ie_dir, out, "stop_after_minutes=0.0001"))
    assert first["stopped_by"] == "stop_after_minutes" and first["global_step"] == 1 and not first["completed"]
    assert (out / "checkpoint-1" / "adapter_model.safetensors").is_file() and not (out / "final").exists()
    second = sft.main(SMOKE, _cfg(base_model, ie_dir, out, "resume_from=latest", "stop_after_minutes=60"))
    assert second["completed"] and second["stopped_by"] is None and second["global_step"] == 6
    assert Path(second["resumed_from"]).name == "checkpoint-1"
    with pytest.raises(ValueError, match="stop_after_minutes: must be > 0"):
        sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, out, "stop_after_minutes=0"))



def test_fit_schedule_minutes_completes_the_sft_run_where_the_time_ends(base_model, ie_dir, tmp_path, capsys):
    """60 ms from the stage's start are gone by the fit (data preparation counts): the run ends at
    the fitting step as a completed run, final adapter saved, with the fit in its metrics."""
    out = tmp_path / "fit"
    m = sft.main(SMOKE, _cfg(base_model, ie_dir, out, "fit_schedule_minutes=0.001", "fit_calibration_steps=2"))
    fit = json.loads((out / "schedule_fit.json").read_text("utf-8"))
    assert fit["fitted_at_step"] == 3 and fit["max_steps"] == 3 and fit["configured_max_steps"] == 6
    assert m["completed"] and m["stopped_by"] is None and m["global_step"] == m["max_steps"] == 3
    assert m["schedule_fit"] == fit and (out / "final" / "adapter" / "adapter_model.safetensors").is_file()
    assert "schedule fitted at step 3" in capsys.readouterr().out


def test_answer_only_logits_give_the_same_loss_and_gradients(base_model, ie_dir, tmp_path):
    """The head and the softmax see the answer positions only: the loss and every parameter's
    gradient are those of ``model(**batch).loss`` (one batch, one process: to rounding)."""
    import torch
    from transformers import AutoTokenizer

    from knowlm_utils.sft.data import SFTCollator
    from knowlm_utils.train.trainer import AnswerPositions, answer_only_loss

    cfg = sft.SFTConfig.load(SMOKE, _cfg(base_model, ie_dir, tmp_path / "g"))
    tok = AutoTokenizer.from_pretrained(str(base_model), local_files_only=True)
    data = sft.prepare_data(cfg, tok)
    batch = SFTCollator(tok.pad_token_id or 0)(data.train[:4])
    assert (batch["labels"] == -100).float().mean() > 0.5  # mostly prompt and padding: what the head skips
    torch.manual_seed(0)
    model, _, _ = sft.build_sft_model(cfg, base_model, len(tok))
    with torch.no_grad():  # LoRA B starts at zero: make every adapter matrix receive a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.train()
    positions = AnswerPositions()
    model.get_output_embeddings().register_forward_pre_hook(positions)

    def loss_and_grads(fast: bool):
        model.zero_grad()
        loss = answer_only_loss(None, model, batch, positions) if fast else model(**batch).loss
        loss.backward()
        return float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    (fast_loss, fast), (plain_loss, plain) = loss_and_grads(True), loss_and_grads(False)
    assert fast_loss == pytest.approx(plain_loss, rel=1e-6)
    assert fast.keys() == plain.keys() and len(fast) >= 16  # LoRA A and B of 7 projections + embeddings, head
    for name in plain:
        assert torch.allclose(fast[name], plain[name], rtol=1e-4, atol=1e-7), name
    assert positions.mask is None  # cleared: evaluation and generation see every position


def test_answer_only_logits_train_like_the_trainers_own_path(base_model, ie_dir, tmp_path):
    """Through the Trainer, with gradient accumulation (num_items_in_batch normalisation): the
    same losses step by step (CPU kernels are not bit-reproducible run to run, hence rel 1e-4)."""
    kw = ("max_steps=4", "grad_accum=2", "logging_steps=1", "eval_on_start=true", "eval_steps=4")
    fast = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "fast", *kw))
    plain = sft.main(SMOKE, _cfg(base_model, ie_dir, tmp_path / "plain", "answer_logits_only=false", *kw))
    assert fast["config"]["answer_logits_only"] and not plain["config"]["answer_logits_only"]
    rows = lambda out, key: [(h["step"], h[key]) for h in json.loads((out / "log_history.json").read_text())  # noqa: E731
                             if key in h]
    for key in ("loss", "eval_loss"):
        a, b = rows(tmp_path / "fast", key), rows(tmp_path / "plain", key)
        assert [s for s, _ in a] == [s for s, _ in b] and len(a) >= 2
        for (step, x), (_, y) in zip(a, b):
            assert x == pytest.approx(y, rel=1e-4), (key, step)
    assert fast["tokens_seen"] == plain["tokens_seen"]
