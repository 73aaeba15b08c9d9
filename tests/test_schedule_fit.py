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


def test_the_progress_bar_ends_at_the_fitted_step(tmp_path):
    """Through a Trainer's callback handler: the fit gives ProgressCallback's bar the new total (it said
    the configured max_steps, and an ETA hours too long, for the whole run)."""
    import time
    from types import SimpleNamespace

    from transformers.trainer_callback import (CallbackHandler, DefaultFlowCallback, ProgressCallback, TrainerControl,
                                               TrainerState)

    from knowlm_utils.train.schedule_fit import schedule_fit_callback

    cfg = SimpleNamespace(max_steps=20_000, fit_schedule_minutes=0.01, fit_reserve_minutes=0.0, fit_calibration_steps=2)
    fitter = schedule_fit_callback(cfg, tmp_path, started=time.time())
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler("cosine", opt, num_warmup_steps=0, num_training_steps=cfg.max_steps)
    handler = CallbackHandler([DefaultFlowCallback(), ProgressCallback(), fitter], None, None, None, sched)
    fitter.bind(SimpleNamespace(callback_handler=handler))
    args = SimpleNamespace(max_steps=cfg.max_steps, logging_strategy="no", eval_strategy="no", save_strategy="no",
                           logging_first_step=False, logging_steps=0, eval_delay=0, eval_steps=0, save_steps=0)
    state, control = TrainerState(), TrainerControl()
    state.max_steps = cfg.max_steps
    handler.on_train_begin(args, state, control)
    bar = handler.callbacks[1].training_bar
    assert bar.total == 20_000
    for step in range(1, 6):
        time.sleep(0.05)
        state.global_step = step
        handler.on_step_end(args, state, control)
        if fitter.fit is not None:
            break
    bar.close()
    assert fitter.fit is not None and fitter.fit["max_steps"] < 20_000
    assert bar.total == state.max_steps == fitter.fit["max_steps"]
