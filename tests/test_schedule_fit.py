"""The learning-rate schedule fitted to a time budget (knowlm_utils.train.schedule_fit); the
end-to-end runs (fit, completion, resume) are in test_pretrain.py and test_sft_train.py."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import get_scheduler

from knowlm_utils.train.schedule_fit import fitted_max_steps, read_schedule_fit, refit_schedule


def test_fitted_max_steps_takes_as_many_steps_as_the_time_allows():
    # 60 s used of 600 s at 2 s per step: 270 more steps
    assert fitted_max_steps(10, 2.0, 60.0, 600.0, 10_000) == 280
    assert fitted_max_steps(10, 2.0, 60.0, 600.0, 100) == 100  # never past the configured max_steps
    assert fitted_max_steps(10, 2.0, 700.0, 600.0, 10_000) == 10  # over budget already: end at this step
    assert fitted_max_steps(10, 2.0, 60.0, 61.9, 10_000) == 10  # less than a step left
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="seconds_per_step must be a positive number"):
            fitted_max_steps(10, bad, 0.0, 600.0, 10_000)


def _scheduler(kind: str, total: int = 1000):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    return opt, get_scheduler(kind, opt, num_warmup_steps=2, num_training_steps=total)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_refit_keeps_the_steps_taken_and_ends_the_decay_at_the_new_end(kind):
    opt, sched = _scheduler(kind)
    _, reference = _scheduler(kind, total=40)
    taken = []
    for _ in range(10):
        taken.append(sched.get_last_lr()[0])
        opt.step(); sched.step()
    assert taken[3] > 0.99  # still the 1,000-step curve
    refit_schedule(sched, 40)
    lrs = {}
    for step in range(10, 41):
        lrs[step] = sched.get_last_lr()[0] if step > 10 else None
        opt.step(); sched.step()
    # from the next step on the curve is the 40-step one; at its end step it is 0
    assert all(abs(lrs[s] - reference.lr_lambdas[0](s)) < 1e-12 for s in range(11, 41))
    assert lrs[40] == 0.0 and lrs[20] > 0.2


def test_a_schedule_without_an_end_is_refused_by_name():
    _, constant = _scheduler("constant_with_warmup")
    with pytest.raises(ValueError, match=r"fit_schedule_minutes: the learning-rate schedule LambdaLR has no end step"):
        refit_schedule(constant, 40)
    with pytest.raises(ValueError, match="has no end step"):
        refit_schedule(object(), 40)


class _Cfg:
    fit_schedule_minutes = 5.0


def test_a_resumed_run_reads_the_fit_and_a_bad_record_is_named(tmp_path):
    ckpt = tmp_path / "checkpoint-8"
    assert read_schedule_fit(_Cfg(), tmp_path, ckpt) is None  # nothing fitted yet
    (tmp_path / "schedule_fit.json").write_text(json.dumps({"max_steps": 120, "fitted_at_step": 6}), "utf-8")
    assert read_schedule_fit(_Cfg(), tmp_path, ckpt)["max_steps"] == 120
    assert read_schedule_fit(_Cfg(), tmp_path, None) is None  # a new run fits again
    (tmp_path / "schedule_fit.json").write_text(json.dumps({"max_steps": "120"}), "utf-8")
    with pytest.raises(ValueError, match=r"schedule_fit\.json: max_steps must be a positive integer, got '120'"):
        read_schedule_fit(_Cfg(), tmp_path, ckpt)
