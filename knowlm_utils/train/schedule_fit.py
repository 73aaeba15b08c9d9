"""A learning-rate schedule fitted to a time budget (``fit_schedule_minutes``).

``stop_after_minutes`` ends a session on time but cuts the schedule wherever it is: a cosine
sized for 8,000 steps and stopped at step 3,000 leaves the model at a high learning rate (the
GPU runs of issue 11 ended so). Here the run measures its own pace instead: after
``fit_calibration_steps`` optimizer steps of this session, the seconds per step (the slowest
rank's) set ``max_steps`` — never above the configured one — so that the decay of the Trainer's
schedule ends when ``fit_schedule_minutes`` (counted from the stage's start, less
``fit_reserve_minutes`` for the final evaluation and save) are spent. The run then ends there as a
completed run. A pace measured over 20 steps is a guess (length-grouped batches differ, evaluations
and checkpoints pause the run, the machine's load changes: a 92-minute CPU leg of issue 11 was
fitted at 0.401 s/step and averaged 0.515), so every ``fit_refit_steps`` steps the fit is made again
from the session's whole pace so far, and the end moves to where the time is up (at most the
configured ``max_steps``); the decay then bends to the new end from the next step on. The fit is
written to ``OUTPUT/schedule_fit.json`` (each fit in its ``history``); a run resumed from a checkpoint
follows the last fit written rather than fitting again.

Warm-up keeps the steps it was given (``warmup_steps``, or ``warmup_ratio`` × the configured
``max_steps``). Only schedules that decay to an end step can be fitted (:data:`FITTABLE`).
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Any

from ..fileio import read_json, write_json_atomic

SCHEDULE_FIT = "schedule_fit.json"
#: Trainer schedules whose shape is set by ``num_training_steps``
FITTABLE = ("linear", "cosine", "cosine_with_restarts", "polynomial", "cosine_with_min_lr",
            "cosine_warmup_with_min_lr")


def fitted_max_steps(step: int, seconds_per_step: float, elapsed_s: float, budget_s: float, max_steps: int) -> int:
    """The end step of a run at ``step`` after ``elapsed_s`` of its ``budget_s``, at
    ``seconds_per_step``: as many more steps as fit, at most ``max_steps``, at least ``step``."""
    if seconds_per_step <= 0 or not math.isfinite(seconds_per_step):
        raise ValueError(f"seconds_per_step must be a positive number, got {seconds_per_step!r}")
    more = max(0, math.floor((budget_s - elapsed_s) / seconds_per_step))
    return max(step, min(max_steps, step + more))


def refit_schedule(lr_scheduler, max_steps: int) -> None:
    """Make the Trainer's ``lr_scheduler`` (a LambdaLR of ``transformers.get_scheduler``) decay to
    ``max_steps``; the steps taken keep their learning rates, and so does the next one (its rate
    was set when the last step ended): the new curve starts with the step after. Raises
    ``ValueError`` for a schedule without an end step."""
    if not hasattr(lr_scheduler, "lr_lambdas") and hasattr(lr_scheduler, "scheduler"):
        lr_scheduler = lr_scheduler.scheduler  # accelerate's AcceleratedScheduler wraps the Trainer's
    lambdas = getattr(lr_scheduler, "lr_lambdas", None)
    if not lambdas or not all(isinstance(f, functools.partial) and "num_training_steps" in f.keywords
                              for f in lambdas):
        raise ValueError(f"fit_schedule_minutes: the learning-rate schedule {type(lr_scheduler).__name__} has no end "
                         f"step to fit (use the Trainer's lr_scheduler: one of {', '.join(FITTABLE)}; not a "
                         "scheduler from the DeepSpeed config)")
    lr_scheduler.lr_lambdas = [functools.partial(f.func, *f.args, **{**f.keywords, "num_training_steps": max_steps})
                               for f in lambdas]


def _slowest(*values: float) -> list[float]:
    """Each value's maximum over the ranks (the values themselves without a process group)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return list(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def read_schedule_fit(config, output_dir: Path, resume: Path | None) -> dict[str, Any] | None:
    """The fit an interrupted run made (``OUTPUT/schedule_fit.json``) when ``config`` asks for
    one and the run resumes from a checkpoint; None otherwise (a new run fits again)."""
    path = Path(output_dir) / SCHEDULE_FIT
    if config.fit_schedule_minutes is None or resume is None or not path.is_file():
        return None
    fit = read_json(path)
    steps = fit.get("max_steps") if isinstance(fit, dict) else None
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{path}: max_steps must be a positive integer, got {steps!r}")
    return fit


def retotal_progress(handler, steps: int) -> None:
    """Give the training progress bar of ``handler``'s callbacks (the Trainer's ``ProgressCallback``)
    the fitted total, so its count and ETA end where the run will."""
    for cb in getattr(handler, "callbacks", ()):
        bar = getattr(cb, "training_bar", None)
        if bar is not None:
            bar.total = steps
            bar.refresh()


def schedule_fit_callback(config, output_dir: Path, started: float):
    """A callback that fits ``max_steps`` and the learning-rate schedule to
    ``config.fit_schedule_minutes`` (see the module docstring). Its ``fit`` is the record written
    to ``OUTPUT/schedule_fit.json`` (None until fitted)."""
    from transformers import TrainerCallback

    class FitScheduleToMinutes(TrainerCallback):
        """Fits max_steps and the schedule's end to the time budget after a few measured steps."""

        def __init__(self):
            self.fit: dict[str, Any] | None = None
            self.first_step: int | None = None
            self.first_time = 0.0
            self.handler = None  # the trainer's callback handler (bind): its progress bar learns the new end

        def bind(self, trainer) -> None:
            self.handler = trainer.callback_handler

        def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
            refit_schedule(lr_scheduler, args.max_steps)  # refuses a schedule it could not fit, before step 1

        def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
            if self.fit is None:
                if self.first_step is None:  # the session's first step carries its start-up cost: not measured
                    self.first_step, self.first_time = state.global_step, time.time()
                    return control
                measured = state.global_step - self.first_step
                if measured < config.fit_calibration_steps and state.global_step < config.max_steps:
                    return control
                self._fit(state, lr_scheduler)
            elif (config.fit_refit_steps and state.global_step % config.fit_refit_steps == 0
                  and state.global_step < self.fit["max_steps"]):
                self._fit(state, lr_scheduler)  # the whole session's pace so far, not the first steps'
            if state.global_step >= self.fit["max_steps"]:
                control.should_training_stop = True
            return control

        def _fit(self, state, lr_scheduler) -> None:
            """Fit the end step to the pace measured since the session's first step (the slowest
            rank's): the schedule, the Trainer's max_steps, the progress bar and the record."""
            now = time.time()
            per_step, elapsed = _slowest((now - self.first_time) / (state.global_step - self.first_step), now - started)
            budget = (config.fit_schedule_minutes - config.fit_reserve_minutes) * 60
            steps = fitted_max_steps(state.global_step, per_step, elapsed, budget, config.max_steps)
            if self.fit is None or steps != self.fit["max_steps"]:
                refit_schedule(lr_scheduler, steps)
                state.max_steps = steps
                retotal_progress(self.handler, steps)
            history = (self.fit or {}).get("history", []) + [[state.global_step, steps, round(per_step, 6)]]
            self.fit = {"max_steps": steps, "configured_max_steps": config.max_steps,
                        "minutes": config.fit_schedule_minutes, "reserve_minutes": config.fit_reserve_minutes,
                        "seconds_per_step": per_step, "fitted_at_step": state.global_step, "elapsed_s": elapsed,
                        "history": history}
            if state.is_world_process_zero:
                write_json_atomic(Path(output_dir) / SCHEDULE_FIT, self.fit)

    return FitScheduleToMinutes()


__all__ = ["SCHEDULE_FIT", "FITTABLE", "fitted_max_steps", "refit_schedule", "read_schedule_fit",
           "retotal_progress", "schedule_fit_callback"]
