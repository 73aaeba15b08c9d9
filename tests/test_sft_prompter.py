"""Stage 07: prompt templates (data files), template choice per record, response extraction."""

from __future__ import annotations

import json

import pytest

from knowlm_utils.ie.formats import iepile_instruction
from knowlm_utils.sft.prompter import (DEFAULT_TEMPLATES, PROMPTS_DIR, TEMPLATE_KEYS, PromptSet, Prompter,
                                       available_templates, template_for)

GOOD = {"description": "test", "prompt_input": "Task: {instruction}\nText: {input}\nAnswer:\n",
        "prompt_no_input": "Task: {instruction}\nAnswer:\n", "response_split": "Answer:"}


def record(style="text", lang="zh", instruction="抽取实体。", input="北京是中国的首都。", **kw):
    return {"id": f"r:{style}:{lang}", "task": "NER", "lang": lang, "style": style, "format": "tuple", "schema": [],
            "instruction": instruction, "input": input, "output": "北京", "source": "test", **kw}


# ------------------------------------------------------------------------ shipped files ----
def test_shipped_templates_are_valid_and_documented():
    assert {"alpaca_en", "alpaca_zh", "oneke_chat"} <= set(available_templates())
    for name in ("alpaca_en", "alpaca_zh", "oneke_chat"):
        data = json.loads((PROMPTS_DIR / f"{name}.json").read_text("utf-8"))
        assert sorted(data) == sorted(TEMPLATE_KEYS) and len(data["description"]) > 40
        p = Prompter.load(name)
        assert p.name == name and p.path == PROMPTS_DIR / f"{name}.json"
        for prompt in (p.build("INSTR", "INPUT"), p.build("INSTR")):
            assert prompt.endswith(p.response_split + "\n") and prompt.count(p.response_split) == 1
            assert "INSTR" in prompt and "{" not in prompt.replace("INSTR", "")
        assert "INPUT" in p.build("INSTR", "INPUT") and "INPUT" not in p.build("INSTR")
        assert p.build("INSTR", "") == p.build("INSTR")


def test_template_texts():
    en, zh, chat = (Prompter.load(n) for n in ("alpaca_en", "alpaca_zh", "oneke_chat"))
    assert "### Instruction:\nDo it\n\n### Input:\nsome text\n\n### Response:\n" in en.build("Do it", "some text")
    assert "### Input:" not in en.build("Do it")
    assert "### 指令:\n抽取\n\n### 输入:\n文本\n\n### 回答:\n" in zh.build("抽取", "文本")
    assert (en.response_split, zh.response_split, chat.response_split) == ("### Response:", "### 回答:", "[/INST]")
    js = iepile_instruction("NER", "zh", ["人物", "城市"], "钱锺书生于无锡。")
    prompt = chat.build(js)
    assert prompt.startswith("[INST] <<SYS>>\n") and "<</SYS>>\n\n" + js + " [/INST]\n" in prompt
    assert prompt.endswith("[/INST]\n")


def test_literal_braces_and_braces_in_values(tmp_path):
    path = tmp_path / "braces.json"
    path.write_text(json.dumps({**GOOD, "prompt_no_input": "{{json}} {instruction}\nAnswer:\n"}), "utf-8")
    p = Prompter.load(path)
    assert p.build("say {x} and {}") == "{json} say {x} and {}\nAnswer:\n"
    assert p.head(False) == "{json} " and p.tail(False) == "\nAnswer:\n"
    assert p.tail(True) == "\nAnswer:\n" and p.head(True) == "Task: "


# ------------------------------------------------------------------------ the response ----
def test_response_extraction():
    en, zh, chat = (Prompter.load(n) for n in ("alpaca_en", "alpaca_zh", "oneke_chat"))
    generated = en.build("Name the city.", "Paris is big.") + "  Paris \n"
    assert en.response(generated) == "Paris"
    assert en.response(" Paris\n") == "Paris"  # only the new tokens were decoded: no marker
    assert en.response("### Response: first ### Response: second ") == "second"  # the LAST marker
    assert en.response("### Response:") == ""
    assert zh.response(zh.build("抽取", "北京") + "城市：北京") == "城市：北京"
    assert chat.response(chat.build('{"instruction": "x"}') + '{"城市": ["北京"]}\n') == '{"城市": ["北京"]}'


# --------------------------------------------------------------------- template choice ----
def test_template_for_records():
    assert template_for(record("text", "zh")) == "alpaca_zh"
    assert template_for(record("text", "en")) == "alpaca_en"
    assert template_for(record("iepile", "zh")) == "oneke_chat"
    assert template_for(record("iepile", "en")) == "oneke_chat"
    assert template_for(record("alpaca", "en", task="GENERAL")) == "alpaca_en"
    assert template_for(record("alpaca", "zh", task="GENERAL")) == "alpaca_zh"
    mapping = {"iepile": "alpaca_zh", "text:en": "oneke_chat"}
    assert template_for(record("iepile", "en"), mapping) == "alpaca_zh"
    assert template_for(record("text", "en"), mapping) == "oneke_chat"
    assert template_for(record("text", "zh"), mapping) == "alpaca_zh"
    assert template_for(record("text", "fr"), {"default": "alpaca_en"}) == "alpaca_en"
    assert DEFAULT_TEMPLATES == {"iepile": "oneke_chat", "zh": "alpaca_zh", "en": "alpaca_en"}
    with pytest.raises(ValueError) as exc:
        template_for(record("text", "fr"))
    assert "\n" not in str(exc.value) and "'r:text:fr'" in str(exc.value) and "'fr'" in str(exc.value)


def test_prompt_set_per_record(tmp_path):
    ps = PromptSet()
    assert sorted(ps.prompters) == ["alpaca_en", "alpaca_zh", "oneke_chat"]
    zh = record("text", "zh")
    assert ps.prompt(zh) == Prompter.load("alpaca_zh").build(zh["instruction"], zh["input"])
    js = iepile_instruction("RE", "en", ["founded by"], "Apple was founded by Steve Jobs.")
    ie = record("iepile", "en", instruction=js, input="")
    assert ps.prompt(ie).endswith(js + " [/INST]\n")
    assert ps.response(ie, ps.prompt(ie) + '{"founded by": []}') == '{"founded by": []}'
    general = record("alpaca", "en", instruction="Say hi.", input=None)  # null input = no input
    assert ps.prompt(general).endswith("### Instruction:\nSay hi.\n\n### Response:\n")
    with pytest.raises(ValueError, match="instruction: expected a string"):
        ps.prompt(record(instruction=3))
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps(GOOD), "utf-8")
    ps2 = PromptSet({"zh": str(custom)})
    assert ps2.prompt(zh) == "Task: 抽取实体。\nText: 北京是中国的首都。\nAnswer:\n"
    with pytest.raises(ValueError, match="no such template"):
        PromptSet({"zh": "alpaca_xx"})


def test_saved_templates_travel_with_the_run(tmp_path):
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps(GOOD), "utf-8")
    ps = PromptSet({"iepile": "oneke_compact", "zh": str(custom)})
    run = tmp_path / "run"
    (run / "checkpoint-5").mkdir(parents=True)
    (run / "final" / "adapter").mkdir(parents=True)
    path = ps.save(run)
    custom.unlink()  # the saved file holds the template texts: the original is no longer needed
    ie = record("iepile", "zh", instruction='{"instruction": "x"}', input="")
    for where in (run, run / "checkpoint-5", run / "final" / "adapter", path):
        loaded = PromptSet.load(path) if where == path else PromptSet.for_run(None, where)
        assert loaded.mapping == ps.mapping
        assert loaded.prompt(record()) == "Task: 抽取实体。\nText: 北京是中国的首都。\nAnswer:\n"
        assert loaded.prompt(ie) == '[INST] {"instruction": "x"} [/INST]\n'
    saved = json.loads(path.read_text("utf-8"))
    assert sorted(saved["templates"]) == sorted({"oneke_compact", str(custom), "alpaca_en"})
    # nothing saved anywhere near: the defaults (a base model that never saw SFT)
    assert PromptSet.for_run(tmp_path / "elsewhere").mapping == DEFAULT_TEMPLATES
    (run / "prompt_templates.json").write_text('{"mapping": {}}', "utf-8")
    with pytest.raises(ValueError, match="mapping' and 'templates'"):
        PromptSet.for_run(run / "checkpoint-5")
    bad = {"mapping": {"zh": "mine"}, "templates": {"mine": {**GOOD, "response_split": ""}}}
    (run / "prompt_templates.json").write_text(json.dumps(bad), "utf-8")
    with pytest.raises(ValueError, match=r"prompt_templates\.json: mine: response_split"):
        PromptSet.load(run)


# -------------------------------------------------------------------- bad template files ----
BAD = [
    ("missing", {k: v for k, v in GOOD.items() if k != "response_split"}, "response_split", "missing"),
    ("not_string", {**GOOD, "prompt_input": ["x"]}, "prompt_input", "expected a string"),
    ("unknown_key", {**GOOD, "system": "x"}, "system", "unknown key"),
    ("other_placeholder", {**GOOD, "prompt_input": "{instruction} {schema} {input} Answer:"}, "prompt_input",
     "{schema} is not allowed"),
    ("positional", {**GOOD, "prompt_no_input": "{} {instruction} Answer:"}, "prompt_no_input", "{} is not allowed"),
    ("attribute", {**GOOD, "prompt_no_input": "{instruction.x} Answer:"}, "prompt_no_input", "not allowed"),
    ("conversion", {**GOOD, "prompt_no_input": "{instruction!r} Answer:"}, "prompt_no_input", "{instruction!r}"),
    ("input_in_no_input", {**GOOD, "prompt_no_input": "{instruction} {input} Answer:"}, "prompt_no_input",
     "must not use {input}"),
    ("no_input", {**GOOD, "prompt_input": "{instruction} Answer:"}, "prompt_input", "{input} is missing"),
    ("no_instruction", {**GOOD, "prompt_no_input": "Answer:"}, "prompt_no_input", "{instruction} is missing"),
    ("split_absent", {**GOOD, "prompt_no_input": "{instruction} Reply:\n"}, "prompt_no_input", "must occur"),
    ("split_not_last", {**GOOD, "prompt_input": "{instruction} Answer: {input}"}, "prompt_input", "must occur"),
    ("text_after_split", {**GOOD, "prompt_input": "{instruction} {input} Answer: go"}, "prompt_input",
     "must end with response_split"),
    ("blank_split", {**GOOD, "response_split": "  "}, "response_split", "must not be empty"),
    ("braces", {**GOOD, "prompt_input": "{instruction} {input Answer:"}, "prompt_input", "bad braces"),
]


@pytest.mark.parametrize("name,data,key,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_template_files_fail_in_one_line(tmp_path, name, data, key, needle):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data), "utf-8")
    with pytest.raises(ValueError) as exc:
        Prompter.load(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}: {key}:") and needle in msg, msg


def test_bad_template_file_forms(tmp_path):
    cases = {"broken.json": "{not json", "list.json": "[1, 2]", "empty.json": ""}
    for fname, text in cases.items():
        (tmp_path / fname).write_text(text, "utf-8")
        with pytest.raises(ValueError) as exc:
            Prompter.load(tmp_path / fname)
        msg = str(exc.value)
        assert "\n" not in msg and msg.startswith(str(tmp_path / fname)), msg
    with pytest.raises(ValueError) as exc:
        Prompter.load(tmp_path / "absent.json")
    assert "\n" not in str(exc.value) and "cannot read" in str(exc.value)
    with pytest.raises(ValueError) as exc:
        Prompter.load("alpaca_fr")
    assert "\n" not in str(exc.value) and "alpaca_en" in str(exc.value)
