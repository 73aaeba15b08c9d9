"""knowlm_utils.generation without a model: parameters and presets, the stop-string filter, the
incremental decoder on real tokenizers, prompt templates, case files and the outcome table."""

from __future__ import annotations

import csv
import json

import pytest

from generation_helpers import byte_ids
from knowlm_utils.generate_cli import format_table, read_cases, write_table
from knowlm_utils.generation import (PRESETS, REPLACEMENT, Codec, GenerationParams, IncrementalDecoder, StopFilter,
                                     build_prompt, detect_language, preset, resolve_params)


# ------------------------------------------------------------------------------ parameters ----
def test_presets_follow_knowlms_decoding_advice():
    ie, beam, creative = PRESETS["ie"], PRESETS["ie-beam"], PRESETS["creative"]
    assert not ie.do_sample and ie.num_beams == 1 and ie.max_new_tokens == 256  # greedy, and not vLLM's 16
    assert not beam.do_sample and beam.num_beams == 4
    assert creative.do_sample and creative.temperature > 0.5 and creative.top_p > 0.9 and creative.top_k >= 40
    assert ie.ignored() == beam.ignored() == creative.ignored() == []
    p = preset("creative")
    p.stop.append("x")
    assert PRESETS["creative"].stop == []  # a copy


@pytest.mark.parametrize("changes, needle", [
    ({"top_p": 3}, "top_p: must be <= 1, got 3"),
    ({"temperature": -1}, "temperature: must be > 0"),
    ({"num_beams": 0}, "num_beams: must be >= 1"),
    ({"max_new_tokens": 0}, "max_new_tokens: must be >= 1"),
    ({"max_new_tokens": "10"}, "max_new_tokens: expected an integer"),
    ({"do_sample": "yes"}, "do_sample: expected true or false"),
    ({"toppp": 0.5}, "unknown key(s) ['toppp']"),
    ({"do_sample": True, "num_beams": 4}, "num_beams=4 with do_sample"),
    ({"min_new_tokens": 9, "max_new_tokens": 8}, "min_new_tokens (9) must be <= max_new_tokens (8)"),
    ({"stop": ["ok", ""]}, "stop[1]: a stop string must have 1 to 256 characters"),
    ({"stop": [str(i) for i in range(17)]}, "at most 16 stop strings"),
    ({"presence_penalty": 2.5}, "presence_penalty: must be <= 2"),
    ({"preset": "poetry"}, "unknown preset 'poetry'; allowed: ie, ie-beam, creative"),
])
def test_bad_parameters_are_one_line_value_errors(changes, needle):
    with pytest.raises(ValueError) as exc:
        GenerationParams.from_mapping(changes)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_resolve_params_from_presets_mappings_and_overrides():
    p = resolve_params("creative", temperature=0.3, top_p=None)  # None: not given
    assert p.do_sample and p.temperature == 0.3 and p.top_p == 0.95
    assert resolve_params({"preset": "ie-beam", "max_new_tokens": 9}).num_beams == 4
    assert resolve_params({"stop": "###"}).stop == ["###"]
    assert resolve_params(None) == GenerationParams()
    assert p.replace(preset="ie") == PRESETS["ie"]
    assert "sample(t=0.3" in p.summary() and PRESETS["ie-beam"].summary().startswith("beams=4")


def test_sampling_parameters_on_greedy_are_reported():
    greedy = GenerationParams(temperature=0.7, top_p=0.9)
    (msg,) = greedy.ignored()
    assert msg.startswith("temperature=0.7, top_p=0.9 ignored: greedy decoding")
    assert "beam search" in GenerationParams(num_beams=2, top_k=5).ignored()[0]
    assert GenerationParams(do_sample=True, temperature=0.7, top_p=0.9).ignored() == []


def test_hf_kwargs_are_explicit(sp):
    codec = Codec(sp)
    kw = GenerationParams(temperature=0.7).hf_kwargs(12, codec)
    assert kw["do_sample"] is False and "temperature" not in kw and kw["max_new_tokens"] == 12
    assert kw["eos_token_id"] == sp.eos_id() and kw["pad_token_id"] == sp.eos_id()
    kw = preset("creative").hf_kwargs(12, codec)
    assert (kw["temperature"], kw["top_k"], kw["top_p"]) == (0.8, 50, 0.95)
    kw = GenerationParams(do_sample=True).hf_kwargs(5, codec)  # unset: neutral values, not the model's defaults
    assert (kw["temperature"], kw["top_k"], kw["top_p"]) == (1.0, 0, 1.0)


# ----------------------------------------------------------------------------- stop filter ----
def test_stop_filter_holds_back_a_possible_stop_string():
    f = StopFilter(["###", "\nEND"])
    out = [f.feed(c) for c in ["Hel", "lo #", "# wor", "ld\nE", "N", "D more"]]
    assert out == ["Hel", "lo ", "## wor", "ld", "", ""]
    assert f.stopped and f.text == "Hello ## world"
    g = StopFilter(["###"])
    assert [g.feed("a#"), g.feed("#"), g.flush()] == ["a", "", "##"]  # never completed: released at the end
    assert StopFilter([]).feed("x#") == "x#"


# ----------------------------------------------------------------------- incremental decode ----
@pytest.mark.parametrize("kind", ["sp", "hf"])
def test_incremental_decoder_never_splits_a_character(kind, sp, hf_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = sp if kind == "sp" else AutoTokenizer.from_pretrained(hf_tokenizer_dir, local_files_only=True)
    codec = Codec(tok)
    text = "Ab 北京，龘 ok"
    ids = sp.encode("Ab 北京，") + byte_ids(sp, "龘") + sp.encode("ok")  # "▁ok" inside a text: " ok"
    dec = IncrementalDecoder(codec)
    chunks = [dec.add([i]) for i in ids] + [dec.flush()]
    assert all(not c.endswith(REPLACEMENT) for c in chunks)
    assert "".join(chunks) == dec.text == codec.decode(ids) == text
    cut = sp.encode("北京") + byte_ids(sp, "北") + byte_ids(sp, "龘")[:2]  # the budget ran out inside 龘
    assert codec.decode(cut).endswith(REPLACEMENT)  # what a plain decode shows
    dec = IncrementalDecoder(codec)
    assert dec.add(cut[:-2]) == "北京北" and dec.add(cut[-2:]) == "" and dec.flush() == ""
    dec = IncrementalDecoder(codec)  # all at once (beam search): the complete 北 stays, the cut 龘 goes
    assert dec.add(cut) == "" and dec.flush() == "北京北" and dec.text == "北京北"


def test_detect_language_and_build_prompt():
    assert detect_language("巴西利亚在哪里？") == "zh" and detect_language("Where is Brasília?") == "en"
    zh, prompter = build_prompt("找出实体", "巴西利亚是巴西的首都。")
    assert zh.startswith("下面给出一项任务以及与它相关的文本") and zh.endswith("### 回答:\n")
    assert "巴西利亚是巴西的首都。" in zh
    assert prompter.name == "alpaca_zh" and prompter.response("答案\n") == "答案"
    en, p = build_prompt("Name the capital of Brazil.")
    assert "### Instruction:" in en and "### Input:" not in en and p.name == "alpaca_en"
    assert build_prompt("Say hi", template="zh")[1].name == "alpaca_zh"
    assert build_prompt("Say hi", "there", template="none") == ("Say hi\nthere", None)
    assert build_prompt("x", template="alpaca_en")[1].name == "alpaca_en"
    for bad in ("../secret.json", "/etc/passwd", "klingon"):
        with pytest.raises(ValueError, match=r"template .*unknown; allowed: auto, none"):
            build_prompt("x", template=bad)
    with pytest.raises(ValueError, match="instruction: required"):
        build_prompt("  ")


# ------------------------------------------------------------------------------ case files ----
CASES_YAML = """\
preset: creative
parameters: {max_new_tokens: 12, seed: 3}
template: none
cases:
  - id: capital
    instruction: 中国的首都是哪里？
  - id: ner
    instruction: 找出实体
    input: 巴西利亚是巴西的首都。
    template: auto
    preset: ie-beam
    parameters: {max_new_tokens: 5}
  - prompt: Amsterdam is a city in
    parameters: {stop: "\\n"}
"""


def test_read_cases_yaml_precedence(tmp_path):
    path = tmp_path / "cases.yaml"
    path.write_text(CASES_YAML, encoding="utf-8")
    a, b, c = read_cases(path, base=GenerationParams(max_new_tokens=99, repetition_penalty=1.3))
    assert (a.id, a.template, a.instruction) == ("capital", "none", "中国的首都是哪里？")
    assert a.params.do_sample and a.params.max_new_tokens == 12 and a.params.seed == 3  # file over command line
    assert (b.params.num_beams, b.params.max_new_tokens, b.params.do_sample, b.template) == (4, 5, False, "auto")
    assert b.input == "巴西利亚是巴西的首都。"
    assert (c.id, c.prompt, c.params.stop, c.params.max_new_tokens) == ("3", "Amsterdam is a city in", ["\n"], 12)


def test_read_cases_jsonl_and_errors(tmp_path):
    ok = tmp_path / "cases.jsonl"
    ok.write_text('{"id": "a", "prompt": "北京是"}\n\n{"instruction": "Say hi", "parameters": {"num_beams": 2}}\n',
                  encoding="utf-8")
    a, b = read_cases(ok, base="ie")
    assert a.prompt == "北京是" and b.id == "2" and b.params.num_beams == 2  # ids default to the case's number
    bad = {
        '{"id": "a", "prompt": "x"}\n{"oops"\n': "cases.jsonl:2: invalid JSON",
        '{"id": "a", "prompt": "x", "instruction": "y"}\n': "case 1 (a): give exactly one of prompt",
        '{"id": "a", "prompt": "x", "parameters": {"top_p": 2}}\n': "case 1 (a): parameters: top_p: must be <= 1",
        '{"id": "a", "prompt": "x", "preset": "poem"}\n': "case 1 (a): unknown preset 'poem'",
        '{"id": "a", "prompt": "x", "colour": "red"}\n': "case 1 (a): unknown key 'colour'",
        '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n': "case id 'a' is used twice",
        '{"id": "a", "prompt": "x", "input": "y"}\n': "input goes with an instruction",
        '{"id": "a", "instruction": ""}\n': "instruction: must not be empty",
        "\n": "no cases",
    }
    for text, needle in bad.items():
        ok.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError) as exc:
            read_cases(ok)
        assert needle in str(exc.value) and "\n" not in str(exc.value), (text, str(exc.value))
    other = tmp_path / "cases.txt"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\.yaml, \.yml or \.jsonl"):
        read_cases(other)
    yml = tmp_path / "c.yaml"
    yml.write_text("parameters: {top_k: -3}\ncases: [x]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="parameters: top_k: must be >= 0"):
        read_cases(yml)


ROWS = [
    {"id": "a", "kind": "prompt", "template": None, "prompt_text": "北京是", "output": "中国的首都。",
     "finish_reason": "eos", "finished": True, "new_tokens": 4, "prompt_tokens": 3, "seconds": 0.5, "decoding": "greedy", "warnings": []},
    {"id": "b", "kind": "instruction", "template": "auto", "prompt_text": "Say hi", "output": "hi | there\nand on",
     "finish_reason": "length", "finished": False, "new_tokens": 8, "prompt_tokens": 30, "seconds": 1.25,
     "decoding": "greedy", "warnings": []},
    {"id": "c", "kind": "prompt", "template": None, "prompt_text": "x", "output": "y", "finish_reason": "stop",
     "finished": True, "new_tokens": 2, "prompt_tokens": 2, "seconds": 0.1, "decoding": "greedy", "warnings": []},
]


def test_table_marks_finished_and_length_limited(tmp_path):
    table = format_table(ROWS)
    lines = table.splitlines()
    assert lines[2].startswith("| a | finished | 4 |") and lines[4].startswith("| c | finished (stop) | 2 |")
    assert "| b | LENGTH-LIMITED | 8 | 1.25 | hi \\| there⏎and on |" == lines[3]
    assert lines[-1] == "3 cases: 2 finished, 1 length-limited (hit max_new_tokens)"
    rows = list(csv.DictReader(open(write_table(ROWS, tmp_path / "t.csv"), encoding="utf-8")))
    assert [(r["id"], r["finish_reason"], r["finished"]) for r in rows] == [("a", "eos", "True"), ("b", "length", "False"),
                                                                            ("c", "stop", "True")]
    assert rows[1]["output"] == "hi | there\nand on"  # whole text in CSV
    back = [json.loads(line) for line in open(write_table(ROWS, tmp_path / "t.jsonl"), encoding="utf-8")]
    assert back == ROWS
    assert "hi \\| there⏎and on" in write_table(ROWS, tmp_path / "t.md").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match=r"\.jsonl, \.csv or \.md"):
        write_table(ROWS, tmp_path / "t.xlsx")
