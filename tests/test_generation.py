"""knowlm_utils.generation on a real (tiny, randomly initialised) LlamaForCausalLM and the
session's real SentencePiece model."""

from __future__ import annotations

import pytest
import torch

from knowlm_utils.generation import Continuation, generate_text
from knowlm_utils.modeling import tiny_llama

PROMPTS = ["北京是中国的", "Amsterdam is a city in", "Write a Python function that"]



def argmax_loop(model, sp, prompt: str, n: int) -> list[int]:
    """Greedy decoding by hand: the whole sequence through the model for every new token."""
    ids, new = [sp.bos_id(), *sp.encode(prompt)], []
    with torch.no_grad():
        for _ in range(n):
            new.append(int(model(torch.tensor([ids + new])).logits[0, -1].argmax()))
            if new[-1] == sp.eos_id():
                break
    return new


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_is_a_deterministic_argmax_loop(model, sp, prompt):
    got = generate_text(model, sp, prompt, max_new_tokens=8)
    expected = argmax_loop(model, sp, prompt, 8)
    assert isinstance(got, Continuation)
    assert got.text == sp.decode([t for t in expected if t != sp.eos_id()])  # the continuation only
    assert got.new_tokens == len(expected) and got.finished == (expected[-1] == sp.eos_id())
    assert prompt not in got.text
    assert generate_text(model, sp, prompt, max_new_tokens=8, seed=123) == got  # greedy ignores the seed


def test_max_new_tokens_is_respected(model, sp):
    lengths = [generate_text(model, sp, PROMPTS[1], max_new_tokens=n).new_tokens for n in (1, 3, 10)]
    assert lengths == [1, 3, 10]  # this random model never emits </s> this early (checked by the loop)
    assert argmax_loop(model, sp, PROMPTS[1], 10)[:3] == argmax_loop(model, sp, PROMPTS[1], 3)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        generate_text(model, sp, PROMPTS[1], max_new_tokens=0)


def test_eos_finishes_a_continuation(sp_model_path, sp):
    """A model whose LM head always prefers </s>: one new token, finished, empty text."""
    model = tiny_llama(sp_model_path, seed=0).eval()
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[sp.eos_id()] = 10.0
    model.lm_head = head
    assert tuple(generate_text(model, sp, PROMPTS[0], max_new_tokens=5)) == ("", True, 1)


def test_sampling_is_reproducible_with_a_seed(model, sp):
    kw = dict(max_new_tokens=12, do_sample=True, temperature=0.7)
    a = generate_text(model, sp, PROMPTS[0], seed=0, **kw)
    assert generate_text(model, sp, PROMPTS[0], seed=0, **kw) == a and a.new_tokens == 12
    assert generate_text(model, sp, PROMPTS[0], seed=1, **kw) != a  # 12 draws over ~2000 near-uniform tokens


def test_model_and_tokenizer_folders(model, sp, sp_model_path, tmp_path):
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "tokenizer.model").write_bytes(sp_model_path.read_bytes())
    from_folder = generate_text(tmp_path / "m", tmp_path / "m", PROMPTS[2], max_new_tokens=6)
    assert from_folder == generate_text(model, sp_model_path, PROMPTS[2], max_new_tokens=6)
