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

    cfg = SimpleNamespace(max_steps=20_000, fit_schedule_minutes=0.01, fit_reserve_minutes=0.0, fit_calibration_steps=2,
                          fit_refit_steps=0)
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


@pytest.mark.parametrize("refit_steps", [10, 0])
def test_the_end_moves_when_the_pace_changes_after_the_fit(tmp_path, monkeypatch, refit_steps):
    """Fitted at 1 s/step, the run slows to 2 s/step: a refit every 10 steps moves the end (and the
    decay) earlier so that the 600 s are kept; with fit_refit_steps 0 the first fit stands."""
    from types import SimpleNamespace

    from knowlm_utils.train import schedule_fit
    from knowlm_utils.train.trainer import fit_message
    from transformers.trainer_callback import TrainerControl, TrainerState

    clock = {"t": 0.0}
    monkeypatch.setattr(schedule_fit, "time", SimpleNamespace(time=lambda: clock["t"]))
    cfg = SimpleNamespace(max_steps=100_000, fit_schedule_minutes=10.0, fit_reserve_minutes=0.0,
                          fit_calibration_steps=2, fit_refit_steps=refit_steps)
    fitter = schedule_fit.schedule_fit_callback(cfg, tmp_path, started=0.0)
    _, sched = _scheduler("cosine", total=cfg.max_steps)
    state, control = TrainerState(), TrainerControl()
    for step in range(1, 21):
        clock["t"] += 1.0 if step <= 3 else 2.0
        state.global_step = step
        fitter.on_step_end(None, state, control, lr_scheduler=sched)
        if step == 3:  # fitted: 1 s/step after 3 s, 597 s left
            assert fitter.fit["max_steps"] == 600 and sched.lr_lambdas[0].keywords["num_training_steps"] == 600
    record = json.loads((tmp_path / "schedule_fit.json").read_text("utf-8"))
    assert record == json.loads(json.dumps(fitter.fit))
    if refit_steps == 0:
        assert fitter.fit["max_steps"] == 600 and len(fitter.fit["history"]) == 1
        assert "refits" not in fit_message(fitter.fit)
        return
    # step 10 at 17 s: (17 - 1) / 9 s per step, 583 s left -> 327 more; step 20 at 37 s: 36 / 19, 563 s -> 297 more
    assert [h[:2] for h in fitter.fit["history"]] == [[3, 600], [10, 337], [20, 317]]
    assert state.max_steps == 317 and sched.lr_lambdas[0].keywords["num_training_steps"] == 317
    assert fitter.fit["fitted_at_step"] == 20
    assert "(first fit at step 3: max_steps 600; 2 refits)" in fit_message(fitter.fit)
    assert not control.should_training_stop
    clock["t"] = 700.0  # over the budget at the next refit: the run ends there
    state.global_step = 30
    fitter.on_step_end(None, state, control, lr_scheduler=sched)
    assert fitter.fit["max_steps"] == 30 and control.should_training_stop
