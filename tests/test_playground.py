"""knowlm_utils.playground: the plain functions, then the widgets driven from Python (values set,
buttons clicked, results read from the widgets) on a real transformers LLaMA and the session's
real SentencePiece model. The scripted LLaMA (generation_helpers) writes a known answer, so the
table can be checked against the parser; the random tiny LLaMA checks the IEPile path end to end."""

from __future__ import annotations

import json

import pytest

from generation_helpers import scripted_llama
from knowlm_utils import playground as pgm
from knowlm_utils.generation import Generator, PRESETS
from knowlm_utils.ie.annotation import Entity
from knowlm_utils.ie.formats import format_output, parse_output
from knowlm_utils.kg2instruction.instructions import default_templates

ANSWER = "城市：北京,上海"        # grouped NER, every token different (the scripted model needs that)
TEXT = "北京和上海都是中国的城市。"


def answer_ids(sp, text: str = ANSWER) -> list[int]:
    ids = sp.encode(text)
    return ids[1:] if sp.id_to_piece(ids[0]) == "▁" else ids  # the dummy prefix of a new text


@pytest.fixture(scope="module")
def scripted(sp_model_path, sp):
    """A Generator whose greedy answer is ANSWER and then </s>."""
    model = scripted_llama(sp_model_path, [*answer_ids(sp), sp.eos_id()], loop=False)
    return Generator(model, sp_model_path)


@pytest.fixture(scope="module")
def looping(sp_model_path, sp):
    """A Generator that writes ANSWER's tokens again and again (never </s>)."""
    return Generator(scripted_llama(sp_model_path, answer_ids(sp), loop=True), sp_model_path)


def ner_playground(gen, **kw):
    pg = pgm.Playground(gen, style="text", fmt="grouped", background=False, **kw)
    pg.set(task="NER", lang="zh")
    pg.set(schema="城市\n国家", input=TEXT)
    return pg


# ------------------------------------------------------------------------------ plain functions --
def test_parse_schema_lines_commas_and_event_roles():
    s = pgm.parse_schema("NER", "城市\n国家、河流\n\n person , city ")
    assert s.labels == ("城市", "国家", "河流", "person", "city") and s.roles == {}
    ee = pgm.parse_schema("EE", "出生: 时间, 地点\n任职：人物，公司\n地震")
    assert ee.labels == ("出生", "任职", "地震")
    assert ee.roles == {"出生": ("时间", "地点"), "任职": ("人物", "公司"), "地震": ()}


@pytest.mark.parametrize("task, text, needle", [
    ("NER", "城市\n城市", "schema line 2: '城市' is listed twice"),
    ("NER", "  \n", "no entity type given"),
    ("RE", "位于,,首都", "schema line 1: an empty label"),
    ("EE", "出生: 时间,,地点", "schema line 1: an empty role"),
    ("EE", "出生: 时间, 时间", "a role repeats"),
    ("free", "x", "a schema belongs to NER, RE or EE"),
])
def test_parse_schema_errors_name_the_line(task, text, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        pgm.parse_schema(task, text)


def test_iepile_instruction_holds_schema_and_text():
    schema = pgm.parse_schema("RE", "首都\n位于")
    instruction, input_text = pgm.build_instruction("RE", "zh", "iepile", schema, TEXT)
    data = json.loads(instruction)
    assert input_text == "" and data["schema"] == ["首都", "位于"] and data["input"] == TEXT
    assert "schema" in data["instruction"] and "JSON" in data["instruction"]


@pytest.mark.parametrize("task, lang, fmt", [("NER", "zh", "grouped"), ("RE", "en", "tuple"), ("EE", "zh", "dict")])
def test_text_style_uses_notebook_06_templates(task, lang, fmt):
    labels = {"NER": "城市\n国家", "RE": "capital\nlocated in", "EE": "出生: 时间"}[task]
    schema = pgm.parse_schema(task, labels)
    phrasings = pgm.schema_phrasings(task, lang)
    assert len(phrasings) >= 5 and all("{schema}" in p for p in phrasings)
    instruction, input_text = pgm.build_instruction(task, lang, "text", schema, TEXT, fmt, phrasing=2)
    templates = [t for t in default_templates().instructions[task, lang] if not t.open]
    sep = "、" if lang == "zh" else ", "
    assert instruction == templates[2].fill(sep.join(schema.labels), default_templates().formats[task, lang][fmt])
    assert input_text == TEXT


@pytest.mark.parametrize("kw, needle", [
    (dict(style="html"), "style 'html'"), (dict(fmt="iepile", style="text"), "output format 'iepile'"),
    (dict(phrasing=99, style="text"), "phrasing 99"), (dict(text="  "), "input: the text to analyse is empty"),
])
def test_build_instruction_errors(kw, needle):
    args = dict(task="NER", lang="zh", style="iepile", schema=pgm.parse_schema("NER", "城市"), text=TEXT)
    args.update(kw)
    with pytest.raises(ValueError, match=needle):
        pgm.build_instruction(**args)


def test_params_pass_sampling_sliders_only_when_sampling():
    base = dict(max_new_tokens=20, temperature=0.7, top_k=40, top_p=0.9, num_beams=1)
    greedy = pgm.params_from_controls("ie", do_sample=False, **base)
    assert (greedy.temperature, greedy.top_k, greedy.top_p) == (None, None, None) and greedy.ignored() == []
    sampled = pgm.params_from_controls("ie", do_sample=True, **base)
    assert (sampled.do_sample, sampled.temperature, sampled.top_k, sampled.top_p) == (True, 0.7, 40, 0.9)
    assert pgm.params_from_controls("ie", do_sample=False, stop="\\n| END", **base).stop == ["\n", " END"]


@pytest.mark.parametrize("kw, needle", [
    (dict(do_sample=True, temperature=0.0), "temperature"), (dict(do_sample=True, top_p=0.0), "top_p"),
    (dict(do_sample=True, num_beams=4), "num_beams=4 with do_sample"), (dict(max_new_tokens=0), "max_new_tokens"),
])
def test_impossible_parameters_are_one_line_errors(kw, needle):
    values = dict(max_new_tokens=20, do_sample=False, temperature=1.0, top_k=0, top_p=1.0, num_beams=1)
    values.update(kw)
    with pytest.raises(ValueError, match=needle) as err:
        pgm.params_from_controls("ie", **values)
    assert "\n" not in str(err.value)


def test_presets_fill_the_controls():
    for name, p in PRESETS.items():
        c = pgm.controls_for_preset(name)
        again = pgm.params_from_controls(name, max_new_tokens=p.max_new_tokens, **c)
        assert again == p, name  # showing a preset and reading it back gives the preset


@pytest.mark.parametrize("task, fmt", [("NER", "tuple"), ("RE", "grouped"), ("EE", "iepile"), ("RE", "iepile")])
def test_rows_are_the_parsers_items(task, fmt):
    from knowlm_utils.ie.annotation import Argument, Event, Relation

    items = {"NER": [Entity("北京", "城市"), Entity("中国", "国家")],
             "RE": [Relation("北京", "首都", "中国"), Relation("上海", "位于", "中国")],
             "EE": [Event("生于", "出生", (Argument("时间", "1990年"), Argument("地点", "北京")))]}[task]
    labels = sorted({getattr(it, "type", None) or it.relation for it in items})
    answer = format_output(task, fmt, items, "zh", labels)
    style = "iepile" if fmt == "iepile" else "text"
    columns, rows, res = pgm.answer_rows(task, style, fmt, answer, "zh", pgm.Schema(task, tuple(labels)))
    assert res.ok and len(rows) == len(items) == len(res.items)
    assert rows == [pgm.item_row(task, it) for it in parse_output(task, fmt, answer, "zh", labels).items]
    assert len(columns) == len(rows[0])
    if task == "EE":
        assert rows[0] == ("生于", "出生", "1990年#时间; 北京#地点")


def test_rows_html_escapes_every_cell():
    out = pgm.rows_html(("entity", "type"), [("<b>A&B</b>", "x")])
    assert "<td>&lt;b&gt;A&amp;B&lt;/b&gt;</td>" in out and out.count("<tr>") == 2
    assert "no items" in pgm.rows_html(("a",), [])


# ------------------------------------------------------------------------------ the widgets --
def test_generate_shows_the_parsed_table(scripted):
    pg = ner_playground(scripted)
    assert TEXT not in pg.instruction.value and "城市、国家" in pg.instruction.value  # text style: schema inside
    pg.generate_button.click()
    expected = scripted.instruct(pg.instruction.value, TEXT, "zh", pg.params())
    assert expected.text == ANSWER and expected.finish_reason == "eos"
    rows = [pgm.item_row("NER", it) for it in parse_output("NER", "grouped", expected.text, "zh", ["城市", "国家"]).items]
    assert pg.rows == rows == [("北京", "城市"), ("上海", "城市")]
    assert pg.table.value == pgm.rows_html(("entity", "type"), rows)
    assert pg.output.value == ANSWER
    state = pgm.describe(pg)
    assert state["message"].startswith("eos: ") and "tokens/s" in state["message"] and state["runs"] == 1
    assert "knowlm-msg-info" in pg.message.value
    assert pg.history[0]["rows"] == 2 and pg.history[0]["finish"] == "eos" and "greedy" in pg.history[0]["decoding"]
    assert "<td>eos</td>" in pg.history_box.value
    assert not pg.generate_button.disabled and pg.stop_button.disabled


def test_output_streams_through_the_textarea(scripted):
    pg = ner_playground(scripted)
    seen: list[str] = []
    pg.output.observe(lambda ch: seen.append(ch["new"]), names="value")
    pg.generate_button.click()
    grown = [v for v in seen if v]
    assert len(grown) >= 3, grown                        # several updates while generating
    assert all(ANSWER.startswith(v) for v in grown) and grown[-1] == ANSWER


def test_background_generation_and_wait(scripted):
    pg = ner_playground(scripted)
    pg.background = True
    assert pg.generate() is True
    assert pg.wait(60)
    assert pg.rows == [("北京", "城市"), ("上海", "城市")] and len(pg.history) == 1


def test_stop_string_and_length_limit(scripted):
    pg = ner_playground(scripted)
    pg.set(stop=",")
    pg.generate_button.click()
    assert pg.output.value == "城市：北京" and pg.rows == [("北京", "城市")] and pg.history[-1]["finish"] == "stop"
    pg.set(stop="", max_new_tokens=4)
    pg.generate_button.click()
    assert pg.history[-1]["finish"] == "length" and "cut by max tokens" in pgm.describe(pg)["message"]
    assert pg.output.value == ANSWER[:len(pg.output.value)] and len(pg.output.value) < len(ANSWER)


def test_stop_button_cancels(looping):
    pg = ner_playground(looping)
    pg.set(max_new_tokens=200)
    pg.output.observe(lambda ch: pg.cancel() if ch["new"] else None, names="value")  # Stop after the first text
    pg.generate_button.click()
    assert pg.history[-1]["finish"] == "cancelled" and pg.history[-1]["tokens"] < 200


@pytest.mark.parametrize("change, needle", [
    (dict(task="free", instruction="   "), "instruction: required"),
    (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(num_beams=3, do_sample=True), "num_beams=3 with do_sample"),
    (dict(schema="城市\n城市"), "'城市' is listed twice"),
    (dict(template="no-such-template"), "template 'no-such-template': unknown"),
])
def test_bad_values_show_a_message_and_generate_nothing(scripted, change, needle):
    pg = ner_playground(scripted)
    if "template" in change:
        pg.template.options = [*pg.template.options, "no-such-template"]
    pg.set(**change)
    pg.generate_button.click()             # no exception
    state = pgm.describe(pg)
    assert needle in state["message"] and "knowlm-msg-error" in pg.message.value
    assert "Traceback" not in pg.message.value and state["runs"] == 0 and pg.output.value == "" and pg.rows == []


def test_a_failing_generation_is_one_message_line(sp_model_path, sp):
    short = Generator(scripted_llama(sp_model_path, [*answer_ids(sp), sp.eos_id()], loop=False, max_positions=16),
                      sp_model_path)
    pg = ner_playground(short)             # the prompt is longer than 16 positions
    pg.generate_button.click()
    msg = pgm.describe(pg)["message"]
    assert msg.startswith("generation failed: ValueError: the prompt is ") and "context is 16" in msg
    assert pg.history == [] and not pg.generate_button.disabled


def test_iepile_style_on_a_random_llama(model, sp_model_path):
    """The course's style end to end: the JSON instruction, the IEPile prompt template, the table
    equal to the parser's reading of whatever the (untrained) model wrote."""
    gen = Generator(model, sp_model_path)
    pg = pgm.Playground(gen, background=False, max_new_tokens=12)
    pg.set(task="RE", lang="zh")
    pg.set(schema="首都\n位于", input=TEXT)
    assert json.loads(pg.instruction.value)["input"] == TEXT and pg.fmt.disabled
    pg.generate_button.click()
    g = gen.instruct(pg.instruction.value, "", "iepile", pg.params())
    assert pg.output.value == g.text and pg.history[-1]["tokens"] == g.new_tokens == 12
    assert pg.rows == [pgm.item_row("RE", it) for it in parse_output("RE", "iepile", g.text, "zh", ["首都", "位于"]).items]
    prompt, prompter = gen.prompt_for(pg.instruction.value, "", "iepile")
    assert prompter.name == "oneke_chat" and prompt.startswith("[INST]")


def test_presets_and_sampling_controls(scripted):
    pg = ner_playground(scripted)
    assert pg.temperature.disabled and not pg.do_sample.value
    pg.set(preset="creative")
    assert pg.do_sample.value and not pg.temperature.disabled
    assert (pg.temperature.value, pg.top_k.value, pg.top_p.value) == (0.8, 50, 0.95)
    assert pg.params() == PRESETS["creative"].replace(max_new_tokens=pg.max_new_tokens.value)
    pg.set(preset="ie-beam")
    assert pg.num_beams.value == 4 and pg.temperature.disabled and pg.params().num_beams == 4


@pytest.mark.parametrize("index", range(len(pgm.EXAMPLES)))
def test_examples_load_and_build_an_instruction(scripted, index):
    ex = pgm.EXAMPLES[index]
    pg = pgm.Playground(scripted, background=False)
    pg.example.value = index
    assert (pg.task.value, pg.lang.value, pg.input.value) == (ex["task"], ex["lang"], ex["input"])
    if ex["task"] == "free":
        assert pg.instruction.value == ex["instruction"] and pg.preset.value == ex["preset"]
    else:
        assert pg.schema.value == ex["schema"]
        data = json.loads(pg.instruction.value)
        assert data["input"] == ex["input"] and data["schema"] == list(pgm.parse_schema(ex["task"], ex["schema"]).labels)
    assert pgm.describe(pg)["message"] == ""


def test_task_and_language_switch_their_default_schema(scripted):
    pg = pgm.Playground(scripted, background=False)
    pg.set(task="RE")
    assert pg.schema.value == pgm.DEFAULT_SCHEMA["RE", "zh"]
    pg.set(lang="en", input="Berlin is the capital of Germany.")
    assert json.loads(pg.instruction.value)["schema"] == list(pgm.parse_schema("RE", pgm.DEFAULT_SCHEMA["RE", "en"]).labels)
    pg.set(style="text")
    assert not pg.fmt.disabled and pg.instruction.value.startswith(pgm.schema_phrasings("RE", "en")[0].split("{")[0])
