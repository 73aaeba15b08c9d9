"""LoRA dropout with integer-drawn masks (knowlm_utils/train/lora_dropout.py): the same
distribution and gradient as nn.Dropout, and wrap_lora puts it in every LoRA layer."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from knowlm_utils.config import from_dict  # noqa: E402
from knowlm_utils.train.config import LoraSection  # noqa: E402
from knowlm_utils.train.lora import wrap_lora  # noqa: E402
from knowlm_utils.train.lora_dropout import IntegerMaskDropout, use_integer_mask_dropout  # noqa: E402

N = 1_000_003  # not a multiple of 4: the last 64-bit draw is cut


def _drop_fraction(y: torch.Tensor) -> float:
    return float((y == 0).double().mean())


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_drop_rate_and_scale_match_nn_dropout(p):
    torch.manual_seed(0)
    d = IntegerMaskDropout(p).train()
    y = d(torch.ones(N))
    sigma = (p * (1 - p) / N) ** 0.5
    assert abs(d.p_used - p) <= 1 / 65536
    assert abs(_drop_fraction(y) - d.p_used) < 5 * sigma
    kept = y[y != 0]
    assert torch.equal(kept, torch.full_like(kept, 1 / (1 - d.p_used)))  # nn.Dropout's 1/(1-p) scaling
    assert abs(float(y.double().mean()) - 1.0) < 5 * sigma / (1 - p)     # unbiased, as nn.Dropout
    assert abs(_drop_fraction(torch.nn.Dropout(p).train()(torch.ones(N))) - p) < 5 * sigma


def test_every_lane_of_a_64_bit_draw_drops_at_the_same_rate():
    """Each 64-bit draw is cut into four 15-bit integers (the top one has only 63 bits to take
    from): no lane may drop more or less often than the others."""
    torch.manual_seed(1)
    p, n = 0.25, 4 * 250_000
    y = IntegerMaskDropout(p).train()(torch.ones(n)).view(-1, 4)
    sigma = (p * (1 - p) / (n // 4)) ** 0.5
    for lane in range(4):
        assert abs(_drop_fraction(y[:, lane]) - p) < 5 * sigma, lane
    # neighbouring lanes are independent: both dropped as often as p², not more
    both = float(((y[:, 0] == 0) & (y[:, 1] == 0)).double().mean())
    assert abs(both - p * p) < 5 * (p * p * (1 - p * p) / (n // 4)) ** 0.5


def test_gradient_is_the_forward_mask_and_shape_dtype_survive():
    torch.manual_seed(2)
    x = torch.randn(3, 5, 7, requires_grad=True)  # 105 elements
    d = IntegerMaskDropout(0.3).train()
    y = d(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    g = torch.randn_like(y)
    y.backward(g)
    mask = torch.where(y == 0, 0.0, d.scale)
    assert torch.allclose(x.grad, g * mask)
    assert d(torch.ones(4, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_masks_follow_the_torch_seed_and_differ_between_calls():
    d = IntegerMaskDropout(0.5).train()
    torch.manual_seed(3)
    a, b = d(torch.ones(1000)), d(torch.ones(1000))
    torch.manual_seed(3)
    assert torch.equal(d(torch.ones(1000)), a)  # the Trainer's seed and its checkpointed RNG state decide
    assert not torch.equal(a, b)


def test_identity_in_eval_mode_and_at_rate_zero_and_bad_rates_refused():
    x = torch.randn(10)
    assert IntegerMaskDropout(0.5).eval()(x) is x
    assert IntegerMaskDropout(0.0).train()(x) is x
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"dropout p must be in \[0, 1\)"):
            IntegerMaskDropout(bad)


@pytest.mark.parametrize("integer_masks", [True, False])
def test_wrap_lora_puts_it_in_every_lora_layer(model, integer_masks):
    import copy

    lora = from_dict(LoraSection, {"r": 4, "alpha": 8, "dropout": 0.05, "integer_mask_dropout": integer_masks})
    wrapped = wrap_lora(copy.deepcopy(model), lora, ())
    dropouts = [m for layer in wrapped.modules() if isinstance(getattr(layer, "lora_dropout", None),
                                                              torch.nn.ModuleDict)
                for m in layer.lora_dropout.values()]
    assert len(dropouts) == model.config.num_hidden_layers * len(lora.targets)
    expected = IntegerMaskDropout if integer_masks else torch.nn.Dropout
    assert all(type(m) is expected and m.p == 0.05 for m in dropouts)
    # trains: a loss through the dropped inputs reaches every LoRA A matrix
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    wrapped.train()
    ids = torch.randint(3, model.config.vocab_size, (2, 12))
    wrapped(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in wrapped.named_parameters() if "lora_A" in n]
    assert len(grads) == len(dropouts) and all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
                                               for g in grads)


def test_rate_zero_keeps_peft_identity(model):
    import copy

    lora = from_dict(LoraSection, {"r": 4, "alpha": 8, "dropout": 0.0})
    wrapped = wrap_lora(copy.deepcopy(model), lora, ())
    assert use_integer_mask_dropout(wrapped) == 0
    assert not any(isinstance(m, IntegerMaskDropout) for m in wrapped.modules())
