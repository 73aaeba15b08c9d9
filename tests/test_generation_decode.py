"""knowlm_utils.generation on real tiny LLaMA models: a random one (conftest) and scripted ones
(generation_helpers) whose output is known in advance; real PEFT adapters and real bitsandbytes
8-bit layers on CPU; ``knowlm generate`` in-process."""

from __future__ import annotations

import io
import json
import threading
import warnings

import pytest
import torch

from conftest import assert_one_line_error, run_cli, save_release_model
from generation_helpers import byte_ids, scripted_llama
from knowlm_utils.generation import (REPLACEMENT, Generation, GenerationParams, GenerationWarning, Generator,
                                     _PresenceFrequencyPenalty, generate, generate_text, stream)

PROMPT = "Amsterdam is a city in"


@pytest.fixture(scope="module")
def hf_tok(hf_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_tokenizer_dir, local_files_only=True)


@pytest.fixture(scope="module")
def bei(sp, sp_model_path):
    """A model writing 北 (three byte tokens) over and over."""
    return scripted_llama(sp_model_path, byte_ids(sp, "北"))


@pytest.fixture(scope="module")
def model_dir(model, hf_tokenizer_dir, tmp_path_factory):
    return save_release_model(model, tmp_path_factory.mktemp("gen_model") / "m", hf_tokenizer_dir)


def collect(model, tok, prompt, **kw) -> tuple[Generation, list[str]]:
    chunks: list[str] = []
    return generate(model, tok, prompt, on_text=chunks.append, **kw), chunks


# ----------------------------------------------------------------------- stops and streaming ----
@pytest.mark.parametrize("kind", ["sp", "hf"])
def test_stop_strings_end_the_text_and_are_never_streamed(kind, model, sp, hf_tok):
    tok = sp if kind == "sp" else hf_tok
    full, chunks = collect(model, tok, PROMPT, max_new_tokens=24)
    assert full.finish_reason == "length" and full.new_tokens == 24 and "".join(chunks) == full.text
    assert len(chunks) > 5  # token by token
    start = next(i for i in range(4, len(full.text) - 3) if full.text[i:i + 3].strip() and
                 full.text.find(full.text[i:i + 3]) == i)
    stop = full.text[start:start + 3]
    got, chunks = collect(model, tok, PROMPT, max_new_tokens=24, stop=["never there", stop])
    assert got.text == full.text[:start] and got.finish_reason == "stop" and got.finished
    assert "".join(chunks) == got.text and not any(stop in c for c in chunks)
    assert got.new_tokens < 24  # generation really stopped early


@pytest.mark.parametrize("kind", ["sp", "hf"])
def test_no_replacement_character_at_the_end_of_truncated_chinese(kind, bei, sp, hf_tok):
    tok = sp if kind == "sp" else hf_tok
    for n in range(1, 8):
        g, chunks = collect(bei, tok, "北京", max_new_tokens=n)
        assert g.new_tokens == n and g.finish_reason == "length"
        assert g.text == "北" * (n // 3), (n, g.text)  # a character cut by the budget is dropped, never "�"
        assert "".join(chunks) == g.text and not any(c.endswith(REPLACEMENT) for c in chunks)
    ids = torch.tensor([[sp.bos_id(), *sp.encode("北京")]])
    raw = bei.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
                       pad_token_id=sp.eos_id())[0, ids.shape[1]:].tolist()
    assert sp.decode(raw) == "北" + REPLACEMENT  # what a plain decode of the same tokens ends with
    beams = generate(bei, tok, "北京", max_new_tokens=5, num_beams=2)
    assert beams.text == "北"


def test_greedy_ignores_sampling_parameters_with_a_warning(model, sp):
    plain = generate(model, sp, PROMPT, max_new_tokens=10)
    with pytest.warns(GenerationWarning, match=r"temperature=0\.7, top_p=0\.9 ignored: greedy decoding"):
        told = generate(model, sp, PROMPT, max_new_tokens=10, temperature=0.7, top_p=0.9)
    assert told.text == plain.text and told.warnings and not plain.warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sampling on: no warning
        sampled = generate(model, sp, PROMPT, max_new_tokens=10, do_sample=True, temperature=0.7, top_p=0.9)
    assert sampled.text != plain.text
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the notebook's temperature 0 means greedy: nothing to report
        assert generate_text(model, sp, PROMPT, max_new_tokens=10, temperature=0.0).text == plain.text


def test_sampling_is_seeded_and_presets_apply(model, sp):
    a = generate(model, sp, PROMPT, "creative", max_new_tokens=12, seed=5)
    assert generate(model, sp, PROMPT, "creative", max_new_tokens=12, seed=5).text == a.text
    assert generate(model, sp, PROMPT, "creative", max_new_tokens=12, seed=6).text != a.text


def test_eos_finishes_and_the_budget_limits(sp, sp_model_path):
    a, b = sp.encode("北京")[-1], sp.encode("Amsterdam")[-1]
    writer = scripted_llama(sp_model_path, [a, b, sp.eos_id()], loop=False)
    g = generate(writer, sp, PROMPT, max_new_tokens=10)
    assert (g.finish_reason, g.finished, g.new_tokens, g.text) == ("eos", True, 3, sp.decode([a, b]))
    g = generate(writer, sp, PROMPT, max_new_tokens=2)
    assert (g.finish_reason, g.finished, g.new_tokens) == ("length", False, 2)
    assert tuple(generate_text(writer, sp, PROMPT, max_new_tokens=10)) == (sp.decode([a, b]), True, 3)


def test_kv_cache_and_beams(model, sp):
    cached = generate(model, sp, PROMPT, max_new_tokens=12)
    uncached = generate(model, sp, PROMPT, max_new_tokens=12, use_cache=False)
    assert uncached.text == cached.text and uncached.new_tokens == cached.new_tokens
    beams, chunks = collect(model, sp, PROMPT, max_new_tokens=8, num_beams=4)
    ids = torch.tensor([[sp.bos_id(), *sp.encode(PROMPT)]])
    ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, num_beams=4, do_sample=False,
                         eos_token_id=sp.eos_id(), pad_token_id=sp.eos_id())[0, ids.shape[1]:].tolist()
    assert beams.text == sp.decode([t for t in ref if t != sp.eos_id()]).rstrip(REPLACEMENT)
    assert chunks == ([beams.text] if beams.text else [])  # beam search: one piece at the end


def test_cancel_stops_after_the_current_token(bei, sp):
    cancel = threading.Event()
    seen: list[str] = []

    def on_text(chunk: str) -> None:
        seen.append(chunk)
        if len(seen) == 2:
            cancel.set()

    g = generate(bei, sp, "北京", max_new_tokens=200, on_text=on_text, cancel=cancel)
    assert g.finish_reason == "cancelled" and not g.finished and g.new_tokens == 6 and g.text == "北北"


def test_the_context_length_caps_the_budget(sp, sp_model_path):
    short = scripted_llama(sp_model_path, byte_ids(sp, "北"), max_positions=16)
    n_prompt = 1 + len(sp.encode("北京"))
    with pytest.warns(GenerationWarning, match=rf"max_new_tokens 100 reduced to {16 - n_prompt}"):
        g = generate(short, sp, "北京", max_new_tokens=100)
    assert g.new_tokens == 16 - n_prompt and g.finish_reason == "length"
    with pytest.raises(ValueError, match="the prompt is .* tokens but the model's context is 16 positions"):
        generate(short, sp, "北京" * 20, max_new_tokens=5)


def test_presence_and_frequency_penalties(sp, sp_model_path):
    proc = _PresenceFrequencyPenalty(2, presence=0.5, frequency=1.0)
    out = proc(torch.tensor([[9, 9, 5, 5, 7]]), torch.zeros(1, 10))  # the prompt's 9s do not count
    assert out[0, 5].item() == -2.5 and out[0, 7].item() == -1.5 and out[0, 9].item() == 0.0
    loop = scripted_llama(sp_model_path, byte_ids(sp, "北"), strength=0.5)  # winning logit 4 = two penalties
    plain = generate(loop, sp, "北京", max_new_tokens=12)
    penalised = generate(loop, sp, "北京", max_new_tokens=12, frequency_penalty=2.0)
    assert plain.text == "北" * 4 and penalised.text != plain.text


def test_stream_iterator_and_generator(model, sp, hf_tok):
    s = stream(model, sp, PROMPT, max_new_tokens=10)
    chunks = list(s)
    assert "".join(chunks) == s.text == generate(model, sp, PROMPT, max_new_tokens=10).text
    gen = Generator(model, hf_tok, params=GenerationParams(max_new_tokens=10))
    s = gen.stream(PROMPT)
    assert "".join(s) == s.result.text
    g = gen.instruct("Name a city.", template="en")
    assert g.prompt_tokens > 20 and g.text == g.text.strip()
    stopped = gen.stream(PROMPT, max_new_tokens=200)
    for _ in stopped:  # leave early: the generation is cancelled and the thread joined
        break
    assert stopped.result.finish_reason in ("cancelled", "eos") and stopped.result.new_tokens < 200
    with pytest.raises(ValueError, match="top_p"):
        gen.stream(PROMPT, top_p=5)


# ------------------------------------------------------------------------- models on disk ----
def test_base_plus_adapter_equals_the_merged_model(model_dir, tmp_path, hf_tokenizer_dir):
    from peft import LoraConfig, get_peft_model

    from knowlm_utils.generation import load_causal_lm

    torch.manual_seed(1)
    lora = get_peft_model(load_causal_lm(model_dir), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                                init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    merged = save_release_model(lora.merge_and_unload(), tmp_path / "merged", hf_tokenizer_dir)
    base = Generator.load(model_dir, device="cpu")
    with_adapter = Generator.load(model_dir, tmp_path / "adapter", device="cpu")
    from peft import PeftModel

    assert isinstance(with_adapter.model, PeftModel) and with_adapter.name == "m+adapter"
    a, m, b = (g.complete(PROMPT, max_new_tokens=10).text
               for g in (with_adapter, Generator.load(merged, device="cpu"), base))
    assert a == m and a != b


def test_8bit_on_cpu(model_dir):
    """bitsandbytes LLM.int8() layers really run on this CPU (bitsandbytes 0.50)."""
    import bitsandbytes as bnb

    q = Generator.load(model_dir, load_in_8bit=True, device="cpu")
    int8 = [m for m in q.model.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    assert len(int8) == 7 and int8[0].weight.dtype == torch.int8  # q, k, v, o, gate, up, down
    g = q.complete(PROMPT, max_new_tokens=8)
    assert g.new_tokens == 8 and g.text and REPLACEMENT not in g.text[-1:]
    full = Generator.load(model_dir, device="cpu")
    assert q.model.get_memory_footprint() < full.model.get_memory_footprint()


# ------------------------------------------------------------------------------------ CLI ----
@pytest.fixture(scope="module")
def writer_dir(sp, sp_model_path, hf_tokenizer_dir, tmp_path_factory):
    """A model folder whose model writes 北京 then </s> after any prompt (:func:`writer_tokens` new tokens)."""
    script = [*sp.encode("北京"), sp.eos_id()]
    m = scripted_llama(sp_model_path, script, loop=False)
    return save_release_model(m, tmp_path_factory.mktemp("writer") / "writer", hf_tokenizer_dir)


def writer_tokens(sp) -> int:
    return len(sp.encode("北京")) + 1


def test_cli_prompt_instruction_and_json(writer_dir, capsys):
    rc, out, err = run_cli(capsys, "generate", "--model", writer_dir, "--prompt", "Amsterdam", "--json")
    got = json.loads(out)
    assert rc == 0 and got["text"].endswith("京") and got["finish_reason"] == "eos" and got["finished"]
    rc, out, err = run_cli(capsys, "generate", "--model", writer_dir, "--instruction", "首都？", "--input", "中国",
                           "--top-p", "0.9", "--max-new-tokens", "1")
    assert rc == 0 and "LENGTH-LIMITED" in err and "1 new tokens" in err
    assert "knowlm generate: warning: top_p=0.9 ignored: greedy decoding" in err


def test_cli_cases_table(writer_dir, sp, tmp_path, capsys):
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - {id: done, prompt: Amsterdam}\n  - {id: cut, instruction: 首都？, "
                     "parameters: {max_new_tokens: 1}}\n  - {id: beams, prompt: Paris, preset: ie-beam}\n",
                     encoding="utf-8")
    rc, out, err = run_cli(capsys, "generate", "--model", writer_dir, "--cases", cases, "--out", tmp_path / "t.csv")
    assert rc == 0, err
    assert f"| done | finished | {writer_tokens(sp)} |" in out and "| cut | LENGTH-LIMITED | 1 |" in out
    assert "3 cases: 2 finished, 1 length-limited" in out
    rows = (tmp_path / "t.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("id,kind,template,finish_reason,finished") and rows[2].startswith("cut,instruction,auto,"
                                                                                                 "length,False")


def test_cli_interactive(writer_dir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("/set max_new_tokens=1\n首都？\n/preset ie\n/template none\n"
                                                 "Amsterdam\n/bogus\n/quit\nnot read\n"))
    rc, out, err = run_cli(capsys, "generate", "--model", writer_dir, "--interactive")
    assert rc == 0
    assert out.count("\n") == 2 and out.splitlines()[1].endswith("京")
    assert "LENGTH-LIMITED" in err and "finished (</s>)" in err and "error: unknown command /bogus" in err


def test_cli_errors_are_one_line(writer_dir, tmp_path, capsys):
    def check(*argv, needles):
        rc, _, err = run_cli(capsys, "generate", *argv)
        assert_one_line_error(rc, err, *needles, command="generate")

    check("--model", tmp_path / "nope", "--prompt", "x", needles=["not a model folder"])
    check("--model", writer_dir, "--prompt", "x", "--top-p", "7", needles=["top_p: must be <= 1, got 7.0"])
    check("--model", writer_dir, "--prompt", "x", "-p", "colour=red", needles=["unknown key(s) ['colour']"])
    check("--model", writer_dir, "--prompt", "x", "--input", "y", needles=["--input goes with --instruction"])
    check("--model", writer_dir, "--instruction", "x", "--template", "../x.json", needles=["template '../x.json'"])
    check("--model", writer_dir, "--prompt", "x", "--adapter", tmp_path, needles=["adapter_model.safetensors"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q", "prompt": "x", "parameters": {"num_beams": 99}}\n', encoding="utf-8")
    check("--model", writer_dir, "--cases", bad, needles=["bad.jsonl: case 1 (q): parameters: num_beams: must be <= 16"])
