"""Stage 07: SFT samples with a real SentencePiece-based Hugging Face tokenizer — label masking,
EOS, prompt truncation, drops, stats, record files, mixing and the padding collator."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from knowlm_utils.ie.formats import iepile_instruction
from knowlm_utils.sft.data import (IGNORE_INDEX, SFTCollator, SFTDataOptions, TokenizeStats, build_sft_dataset,
                                   encode_record, mix_records, read_records, tokenize_record)
from knowlm_utils.sft.prompter import PromptSet, Prompter
from knowlm_utils.spm import load_processor

LONG_EN = " ".join(f"Sentence {i} tells about the river and the city of Wuhan." for i in range(60))


@pytest.fixture(scope="module")
def tok(sp_model_path, tmp_path_factory):
    """The session's SentencePiece model as a Hugging Face tokenizer folder (LLaMA-style, BOS added)."""
    from transformers import AutoTokenizer

    from knowlm_utils.tokenizer import write_hf_files

    d = tmp_path_factory.mktemp("sft_tok")
    shutil.copy(sp_model_path, d / "tokenizer.model")
    write_hf_files(d)
    return AutoTokenizer.from_pretrained(str(d))


@pytest.fixture(scope="module")
def prompts():
    return PromptSet()


def rec(style="text", lang="zh", task="NER", instruction="找出文本中的人物和城市。", input="钱锺书生于无锡。",
        output="人物：钱锺书\n城市：无锡", rid=None):
    return {"id": rid or f"{lang}:{style}:{task}", "task": task, "lang": lang, "style": style, "format": "grouped",
            "schema": [], "instruction": instruction, "input": input, "output": output, "source": "test"}


def iepile_rec(text="钱锺书生于无锡。", output='{"人物": ["钱锺书"], "城市": ["无锡"]}'):
    return rec("iepile", "zh", instruction=iepile_instruction("NER", "zh", ["人物", "城市"], text), input="",
               output=output)


RECORDS = {
    "zh_text": rec(),
    "en_text": rec(lang="en", task="RE", instruction="Extract (head, relation, tail) triples.",
                   input="Wuhan lies on the Yangtze.", output="(Wuhan, located on, Yangtze)"),
    "iepile": iepile_rec(),
    "general": rec("alpaca", "en", "GENERAL", "Give a synonym of big.", "", "large"),
}


def split_sample(sample):
    """(prompt ids, answer ids) by the labels."""
    n = sum(1 for label in sample["labels"] if label == IGNORE_INDEX)
    return sample["input_ids"][:n], sample["input_ids"][n:]


# ------------------------------------------------------------------------ label masking ----
@pytest.mark.parametrize("name", list(RECORDS))
def test_labels_mask_exactly_the_prompt(tok, prompts, name):
    r = RECORDS[name]
    opts = SFTDataOptions()
    sample = tokenize_record(tok, prompts, r, opts)
    prompt = prompts.prompt(r)
    expected_prompt = tok(prompt)["input_ids"]  # what inference feeds the model: BOS + prompt
    assert expected_prompt[0] == tok.bos_token_id
    n = len(expected_prompt)
    ids, labels = sample["input_ids"], sample["labels"]
    assert ids[:n] == expected_prompt
    assert labels[:n] == [IGNORE_INDEX] * n and labels[n:] == ids[n:]
    assert IGNORE_INDEX not in labels[n:] and ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
    assert sample["attention_mask"] == [1] * len(ids)
    assert tok.decode(ids[n:], skip_special_tokens=True) == r["output"]
    # the answer is tokenised as the continuation of the prompt: no dummy "▁" in front of it
    assert ids[:-1] == tok(prompt + r["output"])["input_ids"]
    assert prompts.response(r, tok.decode(ids, skip_special_tokens=True)) == r["output"]


def test_templates_picked_per_record(tok, prompts):
    opts = SFTDataOptions()
    picked = {name: encode_record(tok, prompts, r, opts).template for name, r in RECORDS.items()}
    assert picked == {"zh_text": "alpaca_zh", "en_text": "alpaca_en", "iepile": "oneke_chat", "general": "alpaca_en"}
    text = {name: tok.decode(tokenize_record(tok, prompts, r, opts)["input_ids"], skip_special_tokens=True)
            for name, r in RECORDS.items()}
    assert "### 指令:" in text["zh_text"] and "### 回答:" in text["zh_text"]
    assert "### Instruction:" in text["en_text"] and "### Input:" in text["en_text"]
    assert "[INST] <<SYS>>" in text["iepile"] and '"schema": ["人物", "城市"]' in text["iepile"]
    assert "### Input:" not in text["general"]
    swapped = PromptSet({"iepile": "alpaca_zh"})
    assert encode_record(tok, swapped, RECORDS["iepile"], opts).template == "alpaca_zh"


def test_train_on_inputs_labels_the_prompt_too(tok, prompts):
    r = RECORDS["en_text"]
    sample = tokenize_record(tok, prompts, r, SFTDataOptions(train_on_inputs=True))
    assert sample["labels"] == sample["input_ids"]
    assert sample["input_ids"] == tokenize_record(tok, prompts, r, SFTDataOptions())["input_ids"]


def test_empty_answer_still_trains_eos_and_no_eos_means_no_target(tok, prompts):
    r = rec(output="")
    sample = tokenize_record(tok, prompts, r, SFTDataOptions())
    _, answer = split_sample(sample)
    assert answer == [tok.eos_token_id] and sample["labels"][-1] == tok.eos_token_id
    stats = TokenizeStats()
    assert tokenize_record(tok, prompts, r, SFTDataOptions(add_eos=False), stats) is None
    assert stats.dropped == {"no_target": 1} and stats.kept == 0
    assert tokenize_record(tok, prompts, r, SFTDataOptions(add_eos=False, train_on_inputs=True)) is not None
    plain = tokenize_record(tok, prompts, RECORDS["zh_text"], SFTDataOptions(add_eos=False))
    assert tok.eos_token_id not in plain["input_ids"]


# ---------------------------------------------------------------------------- truncation ----
def test_long_input_is_cut_in_the_middle_and_keeps_answer_and_eos(tok, prompts):
    r = rec(lang="en", instruction="List every city named in the text.", input=LONG_EN, output="Wuhan")
    full = encode_record(tok, prompts, r, SFTDataOptions(cutoff_len=4096))
    assert not full.truncated and full.prompt_tokens > 300
    stats = TokenizeStats()
    opts = SFTDataOptions(cutoff_len=160)
    sample = tokenize_record(tok, prompts, r, opts, stats)
    ids = sample["input_ids"]
    assert len(ids) == 160 and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    prompt_ids, answer_ids = split_sample(sample)
    assert tok.decode(answer_ids, skip_special_tokens=True) == "Wuhan"  # the whole answer
    assert answer_ids == full.sample["input_ids"][full.prompt_tokens:]
    text = tok.decode(prompt_ids, skip_special_tokens=True)
    # head (preamble + the whole instruction + headings) and tail (marker) kept; the input's start
    # and end survive, its middle is gone
    assert text.startswith("Here is a task together with the text")
    assert "### Instruction:\nList every city named in the text.\n\n### Input:\nSentence 0 tells" in text
    assert text.endswith("Wuhan.\n\n### Response:\n")
    assert "59 tells about the river" in text and "Sentence 30 tells" not in text
    assert stats.truncated == 1 and stats.kept == 1 and stats.removed_prompt_tokens == full.prompt_tokens - len(prompt_ids)
    assert stats.by_lang["en"]["truncated"] == 1 and stats.by_task["NER"]["truncated"] == 1
    assert prompts.response(r, tok.decode(ids, skip_special_tokens=True)) == "Wuhan"


def test_long_iepile_input_keeps_schema_json_tail_and_marker(tok, prompts):
    text = "钱锺书生于无锡。" * 80
    r = iepile_rec(text=text)
    sample = tokenize_record(tok, prompts, r, SFTDataOptions(cutoff_len=320))
    assert len(sample["input_ids"]) == 320 and sample["input_ids"][-1] == tok.eos_token_id
    prompt_ids, answer_ids = split_sample(sample)
    assert tok.decode(answer_ids, skip_special_tokens=True) == r["output"]
    shown = tok.decode(prompt_ids, skip_special_tokens=True)
    assert shown.startswith("[INST] <<SYS>>") and '"schema": ["人物", "城市"], "input": "钱锺书' in shown
    assert shown.endswith('钱锺书生于无锡。"} [/INST]\n')


def test_cut_instruction_when_even_it_does_not_fit(tok, prompts):
    r = rec(lang="en", instruction=LONG_EN, input="", output="ok", task="GENERAL")
    r["style"] = "alpaca"
    sample = tokenize_record(tok, prompts, r, SFTDataOptions(cutoff_len=96))
    assert len(sample["input_ids"]) == 96 and sample["input_ids"][-1] == tok.eos_token_id
    shown = tok.decode(split_sample(sample)[0], skip_special_tokens=True)
    assert shown.startswith("Here is a task. Carry out") and "### Instruction:\n" in shown
    assert shown.endswith("Wuhan.\n\n### Response:\n")


def test_too_long_answer_is_dropped_and_counted(tok, prompts):
    records = [rec(lang="en", output=LONG_EN, rid="long"), RECORDS["zh_text"], RECORDS["iepile"]]
    stats = TokenizeStats()
    data = build_sft_dataset(records, tok, SFTDataOptions(cutoff_len=200), stats)
    assert len(data) == 2 and stats.records == 3 and stats.kept == 2 and stats.truncated == 1
    assert stats.dropped == {"answer_too_long": 1} and stats.dropped_total == 1
    assert stats.by_lang["en"]["dropped_answer_too_long"] == 1 and stats.by_lang["zh"]["kept"] == 2
    assert all(len(s["input_ids"]) <= 200 and s["input_ids"][-1] == tok.eos_token_id for s in data)
    # an answer that fits alone but not with the template's head and tail is dropped too
    n_answer = encode_record(tok, prompts, records[0], SFTDataOptions(cutoff_len=4096)).answer_tokens
    enc = encode_record(tok, prompts, records[0], SFTDataOptions(cutoff_len=n_answer + 5))
    assert enc.sample is None and enc.reason == "answer_too_long"


def test_stats_report(tok):
    stats = TokenizeStats()
    data = build_sft_dataset(list(RECORDS.values()) * 2, tok, SFTDataOptions(), stats)
    assert len(data) == 8 == stats.kept and stats.truncated == 0 and not stats.dropped
    assert stats.templates == {"alpaca_zh": 2, "alpaca_en": 4, "oneke_chat": 2}
    assert stats.prompt_tokens + stats.answer_tokens == sum(len(s["input_ids"]) for s in data)
    assert stats.answer_tokens == sum(sum(1 for x in s["labels"] if x != IGNORE_INDEX) for s in data)
    assert stats.by_task["GENERAL"]["records"] == 2 and stats.by_lang["zh"]["records"] == 4
    d = stats.to_dict()
    assert json.loads(json.dumps(d)) == d and d["by_task"]["RE"]["kept"] == 2
    assert "records 8: kept 8, truncated 0, dropped none" in stats.summary()


def test_sentencepiece_processor_gives_the_same_samples(tok, sp_model_path):
    sp = load_processor(sp_model_path)
    opts = SFTDataOptions(cutoff_len=160)
    records = list(RECORDS.values()) + [rec(lang="en", input=LONG_EN, output="Wuhan")]
    assert build_sft_dataset(records, sp, opts) == build_sft_dataset(records, tok, opts)


def test_options_are_validated():
    with pytest.raises(ValueError, match="cutoff_len"):
        SFTDataOptions(cutoff_len=4)
    with pytest.raises(ValueError, match="train_on_inputs"):
        SFTDataOptions(train_on_inputs="yes")
    with pytest.raises(ValueError, match="templates"):
        SFTDataOptions(templates={"zh": ""})
    with pytest.raises(ValueError, match="segmentation"):
        SFTDataOptions(segmentation="chars")
    assert SFTDataOptions().to_dict() == {"cutoff_len": 512, "train_on_inputs": False, "add_eos": True, "templates": {},
                                          "segmentation": "tokenizer"}


# ---------------------------------------------------------------------------- records ----
def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), "utf-8")
    return path


def test_read_records(tmp_path):
    write_lines(tmp_path / "train.jsonl", [json.dumps(RECORDS["zh_text"], ensure_ascii=False), "",
                                           json.dumps(RECORDS["iepile"], ensure_ascii=False)])
    write_lines(tmp_path / "valid.jsonl", [json.dumps(RECORDS["en_text"])])
    assert read_records(tmp_path) == [RECORDS["zh_text"], RECORDS["iepile"]]
    assert read_records(tmp_path, "valid") == [RECORDS["en_text"]]
    assert len(read_records([tmp_path, tmp_path / "valid.jsonl"])) == 3
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        read_records(tmp_path, "test")
    bad = {"json": "{oops", "list": "[1]", "key": json.dumps({k: v for k, v in RECORDS["zh_text"].items() if k != "output"}),
           "type": json.dumps({**RECORDS["zh_text"], "input": None})}
    needles = {"json": "invalid JSON", "list": "expected a JSON object", "key": "missing key 'output'",
               "type": "input: expected a string"}
    for name, line in bad.items():
        path = write_lines(tmp_path / f"{name}.jsonl", [json.dumps(RECORDS["en_text"]), line])
        with pytest.raises(ValueError) as exc:
            read_records(path)
        msg = str(exc.value)
        assert "\n" not in msg and msg.startswith(f"{path}:2: ") and needles[name] in msg, msg


def test_mix_records():
    ie = [rec(task=t, rid=f"ie{i}") for i, t in enumerate(["NER", "RE", "EE", "GENERAL"] * 25)]
    general = [{"instruction": f"Say {i}.", "input": "", "output": f"{i}"} for i in range(30)]
    mixed, counts = mix_records(ie, general, 0.5, seed=3, tasks=("NER", "RE", "EE"))
    assert counts["ie"] == 75 and counts["general_wanted"] == 38 and counts["general"] == 30  # capped at what exists
    assert counts["total"] == len(mixed) == 105 and counts["by_task"] == {"EE": 25, "GENERAL": 30, "NER": 25, "RE": 25}
    assert all(r["style"] == "alpaca" and r["lang"] == "en" for r in mixed if r["task"] == "GENERAL")
    again, _ = mix_records(ie, general, 0.5, seed=3, tasks=("NER", "RE", "EE"))
    other, _ = mix_records(ie, general, 0.5, seed=4, tasks=("NER", "RE", "EE"))
    assert again == mixed and [r["id"] for r in other] != [r["id"] for r in mixed]
    capped, c = mix_records(ie, general, 0.25, seed=0, max_records=50)
    assert (c["ie"], c["general"], c["total"]) == (40, 10, 50) and len(capped) == 50
    assert len({r["id"] for r in capped}) == 50
    none, c = mix_records(ie, general, 0.0, seed=0)
    assert c["general"] == 0 and len(none) == 100
    assert [r["id"] for r in mix_records(ie, [RECORDS["general"]], 1.0, seed=0, tasks=["EE"])[0]
            if r["task"] == "GENERAL"] == [RECORDS["general"]["id"]]
    with pytest.raises(ValueError, match="general_ratio"):
        mix_records(ie, general, -1, seed=0)
    with pytest.raises(ValueError, match="general instructions"):
        mix_records(ie, [{"instruction": 1}], 1.0, seed=0)


# --------------------------------------------------------------------------- collator ----
def test_collator_pads_right(tok, prompts):
    samples = [tokenize_record(tok, prompts, r, SFTDataOptions()) for r in RECORDS.values()]
    batch = SFTCollator(pad_id=0)(samples)
    width = max(len(s["input_ids"]) for s in samples)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    for key in batch:
        assert batch[key].dtype == torch.long and tuple(batch[key].shape) == (4, width)
    for i, s in enumerate(samples):
        n = len(s["input_ids"])
        assert batch["input_ids"][i, :n].tolist() == s["input_ids"] and batch["labels"][i, :n].tolist() == s["labels"]
        assert batch["input_ids"][i, n:].eq(0).all() and batch["labels"][i, n:].eq(IGNORE_INDEX).all()
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)
    wide = SFTCollator(pad_id=tok.eos_token_id, pad_to_multiple_of=64)([{"input_ids": [1, 5, 6]}])
    assert wide["input_ids"].shape == (1, 64) and wide["input_ids"][0, 3:].eq(tok.eos_token_id).all()
    assert wide["labels"][0, :3].tolist() == [1, 5, 6] and wide["attention_mask"].sum() == 3
    with pytest.raises(ValueError, match="one length"):
        SFTCollator(0)([{"input_ids": [1, 2], "labels": [1]}])
    with pytest.raises(ValueError, match="pad_id"):
        SFTCollator(-1)


def test_prompter_of_record_matches_training_prompt(tok, prompts):
    """Inference builds the same prompt ids as training: the template's build + BOS."""
    r = RECORDS["iepile"]
    sample = tokenize_record(tok, prompts, r, SFTDataOptions())
    prompt_ids, _ = split_sample(sample)
    assert prompt_ids == tok(Prompter.load("oneke_chat").build(r["instruction"]))["input_ids"]
