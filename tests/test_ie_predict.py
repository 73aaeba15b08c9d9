"""knowlm_utils.ie.predict and ``knowlm eval ie`` on a real (tiny, randomly initialised)
LlamaForCausalLM, the session's SentencePiece model and its Hugging Face tokenizer files."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from knowlm_utils.generation import generate_text
from knowlm_utils.ie import eval_cli
from knowlm_utils.ie.predict import DECODING, PromptBuilder, as_prompter, generate_answers, predict_records
from knowlm_utils.modeling import tiny_llama

from conftest import assert_one_line_error, run_cli

# three prompts of clearly different lengths, so a batch of them is padded
PROMPTS = ["北京", "Amsterdam is a city in the Netherlands and", "请找出下面句子中的实体：巴西利亚是巴西的城市，位于高原上。\n答案："]


def simple_prompt(record):
    """A real prompt builder for these tests (stage 07's PromptSet is not needed here)."""
    return record["instruction"] + "\n" + record["input"] + "\n答案："




@pytest.fixture(scope="module")
def hf_tok(model_dir):
    return eval_cli.load_tokenizer(model_dir)


def greedy_ids(model, sp, prompt: str, n: int) -> list[int]:
    """The new ids of one unpadded greedy generation (<s> + the prompt)."""
    ids = torch.tensor([[sp.bos_id(), *sp.encode(prompt)]])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                         eos_token_id=sp.eos_id(), pad_token_id=sp.eos_id())
    return out[0, ids.shape[1]:].tolist()


def test_left_padded_batches_match_unbatched_greedy(model, sp, hf_tok):
    ref = [generate_text(model, sp, p, max_new_tokens=10).text for p in PROMPTS]
    lengths = {len(sp.encode(p)) for p in PROMPTS}
    assert len(lengths) == 3  # really padded
    got = {}
    for name, tok in (("sp", sp), ("hf", hf_tok)):
        side = getattr(tok, "padding_side", None)
        one = [generate_answers(model, tok, [p], max_new_tokens=10, progress=False)[0] for p in PROMPTS]
        batched = generate_answers(model, tok, PROMPTS, max_new_tokens=10, batch_size=3, progress=False)
        pairs = generate_answers(model, tok, PROMPTS, max_new_tokens=10, batch_size=2, progress=False)
        assert one == batched == pairs  # in the prompts' order
        assert getattr(tok, "padding_side", None) == side  # the tokenizer is left as it was
        got[name] = batched
    assert got["sp"] == ref  # the new text only, as generate_text decodes it
    # the HF decoder renders the random model's stray byte pieces its own way: decode the same ids with it
    assert got["hf"] == [hf_tok.decode(greedy_ids(model, sp, p, 10), skip_special_tokens=True) for p in PROMPTS]
    assert all(p not in a for p, a in zip(PROMPTS, ref))


def test_beam_preset_batched_matches_unbatched(model, hf_tok):
    assert DECODING["beam"]["num_beams"] == 4 and DECODING["greedy"]["num_beams"] == 1
    one = [generate_answers(model, hf_tok, [p], max_new_tokens=8, progress=False, **DECODING["beam"])[0]
           for p in PROMPTS]
    batched = generate_answers(model, hf_tok, PROMPTS, max_new_tokens=8, batch_size=3, progress=False,
                               **DECODING["beam"])
    assert one == batched


def test_eos_ends_an_answer_and_sampling_is_seeded(sp_model_path, sp, model):
    eos_model = tiny_llama(sp_model_path, seed=0).eval()
    head = torch.nn.Linear(eos_model.config.hidden_size, eos_model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[sp.eos_id()] = 10.0
    eos_model.lm_head = head
    assert generate_answers(eos_model, sp, PROMPTS, max_new_tokens=5, progress=False) == ["", "", ""]
    a = generate_answers(model, sp, PROMPTS[:2], max_new_tokens=8, temperature=0.7, progress=False, seed=1)
    assert a == generate_answers(model, sp, PROMPTS[:2], max_new_tokens=8, temperature=0.7, progress=False, seed=1)
    with pytest.raises(ValueError, match="batch_size"):
        generate_answers(model, sp, PROMPTS, batch_size=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_answers(model, sp, PROMPTS, max_new_tokens=0)


RECORDS = [
    {"id": "a:NER:text:tuple:0", "task": "NER", "lang": "zh", "style": "text", "format": "tuple", "schema": [],
     "instruction": "找出实体，按(实体,实体类型)回答。", "input": "巴西利亚是巴西的城市。", "output": "(巴西利亚,城市)\n(巴西,国家)",
     "source": "t"},
    {"id": "a:RE:iepile:iepile:0", "task": "RE", "lang": "zh", "style": "iepile", "format": "iepile",
     "schema": ["位于"], "instruction": '{"instruction": "抽取三元组", "schema": ["位于"], "input": "巴西利亚位于巴西。"}',
     "input": "", "output": '{"位于": [{"subject": "巴西利亚", "object": "巴西"}]}', "source": "t"},
    {"id": "a:RE:iepile:iepile:1", "task": "RE", "lang": "zh", "style": "iepile", "format": "iepile",
     "schema": ["首都"], "instruction": '{"instruction": "抽取三元组", "schema": ["首都"], "input": "巴西利亚位于巴西。"}',
     "input": "", "output": '{"首都": []}', "source": "t"},
    {"id": "g", "task": "GENERAL", "lang": "en", "style": "alpaca", "format": "text", "instruction": "Say hi",
     "input": "", "output": "hi"},
]


class NanPrompter:
    """A prompt builder object whose answer is always NAN (whatever the model wrote)."""

    def prompt(self, record):
        return simple_prompt(record)

    def response(self, record, generated):
        return "NAN"


def test_predict_records_with_a_function_or_an_object(model, hf_tok):
    assert isinstance(as_prompter(NanPrompter()), PromptBuilder)
    ie = RECORDS[:3]
    rows = predict_records(ie, model, hf_tok, simple_prompt, max_new_tokens=6, batch_size=2, progress=False)
    assert [r["id"] for r in rows] == [r["id"] for r in ie]
    assert rows[0]["prompt"] == simple_prompt(ie[0]) and rows[0]["answer"] == rows[0]["generation"].strip()
    expected = generate_answers(model, hf_tok, [simple_prompt(r) for r in ie], max_new_tokens=6, progress=False)
    assert [r["generation"] for r in rows] == expected
    rows = predict_records(ie, model, hf_tok, NanPrompter(), max_new_tokens=3, progress=False)
    assert {r["answer"] for r in rows} == {"NAN"}
    with pytest.raises(ValueError, match="unknown decoding"):
        predict_records(ie, model, hf_tok, simple_prompt, decoding="nucleus")
    with pytest.raises(TypeError, match="prompt builder"):
        as_prompter(42)


@pytest.fixture
def eval_command(monkeypatch):
    """``knowlm eval`` registered (cli.py gets the line later) and the tests' prompt builder."""
    from knowlm_utils import cli

    monkeypatch.setitem(cli.COMMANDS, "eval", "ie.eval_cli")
    monkeypatch.setattr(eval_cli, "load_prompter", lambda *folders, templates=None: as_prompter(simple_prompt))


def test_cli_eval_ie_writes_report_and_predictions(model_dir, tmp_path, capsys, eval_command):
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")
    out = tmp_path / "eval" / "report.json"
    rc, stdout, err = run_cli(capsys, "eval", "ie", "--model", model_dir, "--data", data, "--out", out,
                              "--max-new-tokens", "6", "--batch-size", "2", "--no-progress", "--device", "cpu")
    assert rc == 0, err
    report = json.loads(out.read_text("utf-8"))
    assert (report["records"], report["groups"], report["skipped_general"]) == (3, 2, 1)
    assert report["micro"]["fn"] == 3  # gold: 2 entities + 1 triple; a random model finds none of them
    assert report["run"]["decoding"] == "greedy" and report["run"]["num_beams"] == 1
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text("utf-8").splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in RECORDS[:3]]
    assert set(rows[0]) >= {"id", "prompt", "generation", "answer", "items", "unparseable"}
    assert "P " in stdout and str(out) in stdout
    # --tasks and --max-records: the first RE record brings its sentence's other chunk along
    rc, _, err = run_cli(capsys, "eval", "ie", "--model", model_dir, "--data", data, "--out", out, "--tasks", "RE",
                         "--max-records", "1", "--max-new-tokens", "2", "--no-progress", "--decoding", "beam")
    assert rc == 0, err
    report = json.loads(out.read_text("utf-8"))
    assert (report["records"], report["groups"]) == (2, 1) and report["run"]["num_beams"] == 4


def test_cli_eval_ie_errors_are_one_line(model_dir, tmp_path, capsys, eval_command):
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps(RECORDS[0], ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "r.json"
    base = ["eval", "ie", "--model", model_dir, "--data", data, "--out", out, "--no-progress"]
    rc, _, err = run_cli(capsys, *base, "--tasks", "NER,XX")
    assert_one_line_error(rc, err, "--tasks", "XX", command="eval")
    rc, _, err = run_cli(capsys, *base, "--tasks", "EE")
    assert_one_line_error(rc, err, "no EE records", command="eval")
    rc, _, err = run_cli(capsys, *base, "--adapter", tmp_path)
    assert_one_line_error(rc, err, "adapter_model.safetensors", command="eval")
    rc, _, err = run_cli(capsys, "eval", "ie", "--model", tmp_path / "nope", "--data", data, "--out", out)
    assert_one_line_error(rc, err, "not a model folder", command="eval")
    rc, _, err = run_cli(capsys, "eval", "ie", "--model", model_dir, "--data", tmp_path / "missing.jsonl",
                         "--out", out)
    assert_one_line_error(rc, err, "missing.jsonl", command="eval")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "task": "NER"}\n', encoding="utf-8")
    rc, _, err = run_cli(capsys, "eval", "ie", "--model", model_dir, "--data", bad, "--out", out)
    assert_one_line_error(rc, err, "bad.jsonl:1", "missing key", command="eval")
    assert not out.exists()


def test_cli_eval_ie_without_prompt_set_says_so(model_dir, tmp_path, capsys, monkeypatch):
    from knowlm_utils import cli

    monkeypatch.setitem(cli.COMMANDS, "eval", "ie.eval_cli")

    def missing(*folders, templates=None):
        raise ValueError("knowlm_utils.sft.prompter.PromptSet (stage 07's prompts) is not available: test")

    monkeypatch.setattr(eval_cli, "load_prompter", missing)
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps(RECORDS[0], ensure_ascii=False) + "\n", encoding="utf-8")
    rc, _, err = run_cli(capsys, "eval", "ie", "--model", model_dir, "--data", data, "--out", tmp_path / "r.json")
    assert_one_line_error(rc, err, "PromptSet", command="eval")


def test_adapter_is_loaded_with_peft(model, model_dir, tmp_path, hf_tok):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    lora = get_peft_model(tiny_llama(model_dir, seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                                     init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    loaded = eval_cli.load_model(model_dir, tmp_path / "adapter", device="cpu")
    want = generate_answers(lora.eval(), hf_tok, PROMPTS, max_new_tokens=6, progress=False)
    assert generate_answers(loaded, hf_tok, PROMPTS, max_new_tokens=6, progress=False) == want
    assert want != generate_answers(model, hf_tok, PROMPTS, max_new_tokens=6, progress=False)


def test_max_records_keeps_iepile_sentences_whole():
    rows = [{"id": "g0", "task": "GENERAL"}, {"id": "a", "task": "NER", "style": "text"},
            {"id": "g1", "task": "GENERAL"}, {"id": "x:NER:iepile:iepile:0", "task": "NER", "style": "iepile"},
            {"id": "x:NER:iepile:iepile:1", "task": "NER", "style": "iepile"}, {"id": "g2", "task": "GENERAL"},
            {"id": "b", "task": "RE", "style": "text"}]
    ids = [[r["id"] for r in eval_cli.limit_records(rows, n)] for n in (1, 2, 3, None)]
    assert ids[0] == ["g0", "a"]  # GENERAL records before the last IE record taken come along (skipped, counted)
    assert ids[1] == ids[2] == ["g0", "a", "g1", "x:NER:iepile:iepile:0", "x:NER:iepile:iepile:1"]
    assert ids[3] == [r["id"] for r in rows]


def test_limit_per_language_samples_each_language():
    rows = [{"id": f"{lang}{i}", "task": "NER", "style": "text", "lang": lang} for lang in ("zh", "en", "fr")
            for i in range(5)]
    got = [r["id"] for r in eval_cli.limit_per_language(rows, 2)]
    assert got == ["zh0", "zh1", "en0", "en1"]  # the first rows would all be Chinese; "fr" is not asked for
    assert [r["id"] for r in eval_cli.limit_per_language(rows, None, ("en",))] == [f"en{i}" for i in range(5)]


def test_select_records_by_style_and_per_language():
    rows = [{"id": f"{lang}{style}{i}", "task": "NER", "style": style, "lang": lang} for lang in ("zh", "en", "fr")
            for style in ("text", "iepile") for i in range(3)]
    rows.insert(1, {"id": "g", "task": "GENERAL", "style": "alpaca", "lang": "zh"})
    got = [r["id"] for r in eval_cli.select_records(rows, ("iepile",), 2, per_language=True)]
    # every language present, in its order, 2 records each; the GENERAL record before the last zh one stays
    assert got == ["g", "zhiepile0", "zhiepile1", "eniepile0", "eniepile1", "friepile0", "friepile1"]
    assert [r["id"] for r in eval_cli.select_records(rows, None, 2)] == ["zhtext0", "g", "zhtext1"]
    assert len(eval_cli.select_records(rows, ("text", "iepile"), None)) == len(rows)


def test_cli_eval_ie_style_and_language_errors_are_one_line(model_dir, tmp_path, capsys, eval_command):
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")
    base = ("eval", "ie", "--model", model_dir, "--data", data, "--out", tmp_path / "r.json")
    rc, _, err = run_cli(capsys, *base, "--styles", "iepile,prose")
    assert_one_line_error(rc, err, "--styles", "prose", "text, iepile", command="eval")
    rc, _, err = run_cli(capsys, *base, "--per-language")
    assert_one_line_error(rc, err, "--per-language", "--max-records", command="eval")
    rc, _, err = run_cli(capsys, *base, "--styles", "iepile", "--max-records", "1", "--per-language",
                         "--max-new-tokens", "2", "--no-progress", "--device", "cpu")
    assert rc == 0, err
    report = json.loads((tmp_path / "r.json").read_text("utf-8"))
    assert report["run"]["styles"] == ["iepile"] and report["run"]["per_language"] is True
    scored = [json.loads(line)["id"] for line in (tmp_path / "predictions.jsonl").read_text("utf-8").splitlines()]
    assert scored == [r["id"] for r in RECORDS if r.get("style") == "iepile"]  # one sentence: its chunks together
    text_only = tmp_path / "text.jsonl"  # a style the file lacks: nothing to evaluate, said in one line
    text_only.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS if r.get("style") != "iepile"),
                         encoding="utf-8")
    rc, _, err = run_cli(capsys, "eval", "ie", "--model", model_dir, "--data", text_only, "--out", tmp_path / "r.json",
                         "--styles", "iepile")
    assert_one_line_error(rc, err, "no", "of style iepile", command="eval")


def test_cli_eval_ie_output_holds_no_library_notices(model_dir, tmp_path, capsys, eval_command):
    """A RoPE model generates past max_position_embeddings and PEFT loads through deprecated
    transformers calls: neither transformers' generation-length notice nor a FutureWarning reaches
    the command's output (quiet_loading)."""
    import logging
    import warnings

    from peft import LoraConfig, get_peft_model

    short = tmp_path / "short"
    shutil.copytree(model_dir, short)
    config = json.loads((short / "config.json").read_text("utf-8"))
    (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 8}), encoding="utf-8")
    get_peft_model(tiny_llama(model_dir, seed=0), LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(
        tmp_path / "adapter")
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")
    notices: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = notices.append
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc, _, err = run_cli(capsys, "eval", "ie", "--model", short, "--adapter", tmp_path / "adapter", "--data",
                                 data, "--out", tmp_path / "r.json", "--max-new-tokens", "4", "--no-progress",
                                 "--device", "cpu")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert rc == 0, err
    assert not [r.getMessage() for r in notices]
    assert not [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
