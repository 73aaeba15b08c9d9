"""The Hugging Face ``Trainer`` as the course runs it.

* :func:`resolve_device`, :func:`resolve_precision` — ``auto`` made concrete, impossible
  combinations rejected;
* :func:`training_arguments` — ``TrainingArguments`` from a :class:`~.config.TrainingArgs`;
* :func:`make_trainer_class` — a ``Trainer`` whose train batches come from a batch-sampler
  factory (rank-sliced, resumable by *starting* at a micro step instead of replaying batches)
  and whose ``evaluate`` is a given evaluator;
* callbacks: :func:`log_history_callback` (``OUTPUT/log_history.json`` at every log, for live
  plots), :func:`stop_callback` (end a session at a step with a checkpoint),
  :func:`time_limit_callback` (end it after so many minutes, every rank at the same step),
  :func:`checkpoint_manifest_callback` (sign every checkpoint so that a resume can verify it);
  :func:`read_history` reads the log back.

transformers and torch are imported inside the functions (importing them costs seconds).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fileio import read_json, write_json_atomic

LOG_HISTORY = "log_history.json"
METRICS = "metrics.json"


def is_main_process() -> bool:
    """Rank 0 (or no launcher at all), from the launcher's ``RANK`` variable."""
    return int(os.environ.get("RANK", "0")) == 0


# ============================================================================ device ======
def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda`` for a config's ``device`` (``auto``: cuda when torch sees a GPU)."""
    if device != "auto":
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("device: cuda, but torch sees no CUDA GPU (use device: cpu or auto)")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """``fp32``, ``fp16`` or ``bf16`` for a config's ``precision`` on ``device``."""
    if device == "cpu":
        if precision in ("fp16", "bf16"):
            raise ValueError(f"precision {precision!r} needs a GPU; on CPU the course trains in fp32 "
                             "(precision: auto or fp32)")
        return "fp32"
    if precision != "auto":
        return precision
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


# ============================================================================ arguments ===
def training_arguments(config, output_dir: Path, device: str, precision: str, ds_config: dict | None,
                       has_eval: bool):
    """``TrainingArguments`` for a run configured by ``config`` (a
    :class:`~knowlm_utils.train.config.TrainingArgs`). ``ignore_data_skip=True``: the sampler
    itself restarts at the checkpoint's step, the Trainer must not also skip batches."""
    from transformers import TrainingArguments

    from ..launch import trainer_device_args

    warmup = config.warmup_steps if config.warmup_steps is not None else round(config.warmup_ratio * config.max_steps)
    scheduler, scheduler_kwargs = config.lr_scheduler, {}
    if config.min_lr_ratio > 0 and scheduler == "cosine":
        scheduler, scheduler_kwargs = "cosine_with_min_lr", {"min_lr_rate": config.min_lr_ratio}
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=config.max_steps, per_device_train_batch_size=config.micro_batch,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.lr, lr_scheduler_type=scheduler,
        lr_scheduler_kwargs=scheduler_kwargs, warmup_steps=warmup, weight_decay=config.weight_decay,
        adam_beta1=config.betas[0], adam_beta2=config.betas[1], adam_epsilon=config.eps,
        max_grad_norm=config.max_grad_norm, fp16=precision == "fp16", bf16=precision == "bf16",
        logging_steps=config.logging_steps, logging_first_step=True,
        eval_strategy="steps" if has_eval and config.eval_steps else "no", eval_steps=config.eval_steps,
        eval_on_start=has_eval and config.eval_on_start,
        save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit, seed=config.seed, data_seed=config.seed,
        ignore_data_skip=True, report_to=[], disable_tqdm=not config.progress,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=config.dataloader_workers,
        remove_unused_columns=False, deepspeed=ds_config,
        ddp_backend="gloo" if device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        **trainer_device_args(device),
    )


# ============================================================================ trainer =====
class AnswerPositions:
    """A forward pre-hook for the output head: while ``mask`` (bool, batch × sequence) is set,
    the head sees only the hidden states at those positions (``[N, hidden]``), so it computes
    ``N`` rows of logits instead of ``batch × sequence``."""

    def __init__(self):
        self.mask = None

    def __call__(self, module, args):
        if self.mask is None:
            return None
        return (args[0][self.mask], *args[1:])


def answer_only_loss(trainer, model, inputs, positions: AnswerPositions, num_items_in_batch=None):
    """The causal-LM loss of ``inputs`` computed from the answer positions only: logits where
    the *next* label is not −100 (``positions`` hooked on the output head), cross-entropy summed
    over them and divided as the Trainer's own path divides — by ``num_items_in_batch`` (the
    answer tokens of the whole accumulated batch, all ranks) and scaled back by the number of
    processes, else a mean over this micro batch. The same number as ``model(**inputs).loss``
    without the prompt's logits: the head and the softmax are most of a small model's step and
    of a 13B model's activation memory."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    keep = labels[:, 1:] != -100
    positions.mask = F.pad(keep, (0, 1), value=False)  # position t predicts token t + 1
    try:
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
    finally:
        positions.mask = None
    loss = F.cross_entropy(outputs.logits.float(), labels[:, 1:][keep], reduction="sum")
    if num_items_in_batch is None:
        return loss / keep.sum().clamp(min=1)
    loss = loss / torch.as_tensor(num_items_in_batch, device=loss.device)
    if trainer.args.average_tokens_across_devices:  # the Trainer's own path scales so (transformers 5.x)
        loss = loss * (trainer.accelerator.num_processes // trainer.get_tp_size() if trainer.args.n_gpu <= 1
                       else trainer.args.n_gpu)
    return loss


def make_trainer_class():
    """The Trainer subclass, built lazily (importing transformers costs seconds). Its extra
    keyword arguments: ``batch_sampler_factory(rank, world_size, start_micro_step)`` → this
    rank's batch sampler, ``evaluator(model, args, prefix)`` → eval metrics, and
    ``answer_logits_only`` (SFT: the training loss from the answer positions' logits only,
    :func:`answer_only_loss`). Set ``trainer.start_micro_step`` before ``train()`` to resume the
    data where a checkpoint stopped."""
    from transformers import Trainer

    class KnowLMTrainer(Trainer):
        """``Trainer`` with a rank-sliced, exactly resumable batch sampler and its own evaluator."""

        def __init__(self, *args, batch_sampler_factory, evaluator, answer_logits_only: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            for cb in self.callback_handler.callbacks:  # callbacks that act on the trainer (the schedule fit)
                if callable(getattr(cb, "bind", None)):
                    cb.bind(self)
            self._batch_sampler_factory = batch_sampler_factory
            self._evaluator = evaluator
            self.start_micro_step = 0
            self._answer_positions = None
            if answer_logits_only:
                self._answer_positions = AnswerPositions()
                self.model.get_output_embeddings().register_forward_pre_hook(self._answer_positions)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self._answer_positions is None or return_outputs or not model.training or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            return answer_only_loss(self, model, inputs, self._answer_positions, num_items_in_batch)

        def get_train_dataloader(self):
            from torch.utils.data import DataLoader

            sampler = self._batch_sampler_factory(self.args.process_index, self.args.world_size, self.start_micro_step)
            return DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                              num_workers=self.args.dataloader_num_workers, pin_memory=False)

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
            metrics = self._evaluator(self.model, self.args, metric_key_prefix)
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return KnowLMTrainer


def resume_sampler(trainer, config, output_dir: Path, end_micro: int, resume: Path | None, log=print) -> Path | None:
    """Point the trainer's sampler at the (verified) checkpoint's step; returns the checkpoint
    (None: from scratch). Raises ``ValueError`` when the checkpoint already reached max_steps."""
    from .checkpoints import checkpoint_step

    if resume is not None:
        step = checkpoint_step(resume)
        trainer.start_micro_step = step * config.grad_accum
        log(f"resuming from {resume} at step {step} (data sampler restarts at micro batch "
            f"{trainer.start_micro_step})")
    elif config.resume_from == "latest":
        log(f"resume_from: latest, but {output_dir} has no checkpoint yet: starting from scratch")
    if trainer.start_micro_step >= end_micro:
        raise ValueError(f"checkpoint {resume} is at step {trainer.start_micro_step // config.grad_accum}, already "
                         f"max_steps={config.max_steps}: raise max_steps to train further")
    return resume


def last_eval(trainer) -> dict[str, Any]:
    """The ``eval_*`` metrics logged at the trainer's current step ({} if it did not evaluate
    there): a run that just evaluated at its last step need not evaluate again."""
    last = [h for h in trainer.state.log_history if "eval_loss" in h]
    if last and last[-1].get("step") == trainer.state.global_step:
        return {k: v for k, v in last[-1].items() if k.startswith("eval_")}
    return {}


# ============================================================================ callbacks ===
def stop_callback(stop_at_step: int):
    """A callback that ends the session at ``stop_at_step`` and makes the Trainer save a
    checkpoint there."""
    from transformers import TrainerCallback

    class StopAtStep(TrainerCallback):
        """Ends the session at ``stop_at_step`` and makes the Trainer save a checkpoint there."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= stop_at_step:
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopAtStep()


def _any_rank(flag: bool) -> bool:
    """``flag`` of any process (MAX all-reduce; the flag itself without a process group), so that
    every rank takes the same decision at the same step."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def time_limit_callback(minutes: float, started: float | None = None):
    """A callback that ends the session with a checkpoint once ``minutes`` have passed since
    ``started`` (a ``time.time()``; default: when training begins) — Megatron-LM's
    ``--exit-duration-in-mins`` for a job whose scheduler allows so much wall time. The step
    that crosses the limit finishes, every rank stops after the same step, and the run
    continues with ``resume_from: latest``. Its ``stopped_at`` is that step (None: not hit)."""
    from transformers import TrainerCallback

    class StopAfterMinutes(TrainerCallback):
        """Ends the session with a checkpoint after ``minutes`` of wall time."""

        def __init__(self):
            self.started, self.stopped_at = started, None

        def on_train_begin(self, args, state, control, **kwargs):
            if self.started is None:
                self.started = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            if _any_rank(time.time() - self.started >= minutes * 60):
                self.stopped_at = state.global_step
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopAfterMinutes()


@dataclass
class Session:
    """The callbacks of one training session and the ends it may come to."""

    callbacks: list
    timer: Any = None  #: the stop_after_minutes callback (None: no time limit)
    fitter: Any = None  #: the fit_schedule_minutes callback (None: no fit, or the run follows ``fit``)
    fit: dict[str, Any] | None = None  #: the fit an interrupted run made, which this one follows

    def fitted(self) -> dict[str, Any] | None:
        """The schedule fit in force after training (None: the configured max_steps)."""
        return self.fit or (self.fitter.fit if self.fitter is not None else None)

    def effective_config(self, config, log=None):
        """``config`` with the fitted ``max_steps``: a run that reached it completed. ``log``
        receives :func:`fit_message` when this session made the fit."""
        if log is not None and self.fitter is not None and self.fitter.fit is not None:
            log(fit_message(self.fitter.fit))
        fit = self.fitted()
        return config if fit is None else config.with_overrides({"max_steps": fit["max_steps"]})


def session_callbacks(config, output_dir: Path, started: float, fit: dict[str, Any] | None = None) -> Session:
    """The callbacks of every training session: the live log, signed checkpoints, the ends a
    config asks for (``stop_at_step``, ``stop_after_minutes`` counted from ``started``) and the
    ``fit_schedule_minutes`` fit (unless the run follows ``fit``, an interrupted run's)."""
    from .schedule_fit import schedule_fit_callback

    session = Session([log_history_callback(output_dir), checkpoint_manifest_callback()], fit=fit)
    if config.stop_at_step is not None and config.stop_at_step < config.max_steps:
        session.callbacks.append(stop_callback(config.stop_at_step))
    if config.stop_after_minutes is not None:
        session.timer = time_limit_callback(config.stop_after_minutes, started)
        session.callbacks.append(session.timer)
    if config.fit_schedule_minutes is not None and fit is None:
        session.fitter = schedule_fit_callback(config, output_dir, started)
        session.callbacks.append(session.fitter)
    return session


def follow_schedule_fit(config, output_dir: Path, resume: Path | None, log=print):
    """(config, fit): a run resumed after its schedule was fitted takes the fitted ``max_steps``
    (``OUTPUT/schedule_fit.json``); any other run keeps its config (fit None)."""
    from .schedule_fit import SCHEDULE_FIT, read_schedule_fit

    fit = read_schedule_fit(config, output_dir, resume)
    if fit is None:
        return config, None
    log(f"schedule: max_steps {fit['max_steps']} (fitted to fit_schedule_minutes at step {fit.get('fitted_at_step')}; "
        f"{output_dir / SCHEDULE_FIT})")
    return config.with_overrides({"max_steps": fit["max_steps"]}), fit


def fit_message(fit: dict[str, Any]) -> str:
    """What a run whose schedule was fitted tells its user."""
    history = fit.get("history") or []
    first = (f" (first fit at step {history[0][0]}: max_steps {history[0][1]}; {len(history) - 1} refits)"
             if len(history) > 1 else "")
    return (f"schedule fitted at step {fit['fitted_at_step']}: {fit['seconds_per_step']:.3g} s/step → max_steps "
            f"{fit['max_steps']} of {fit['configured_max_steps']} in {fit['minutes']:g} min{first}")


def stopped_by(trainer, config, timer) -> str | None:
    """Why a session ended before ``max_steps``: ``stop_after_minutes`` or ``stop_at_step``
    (None: it reached max_steps)."""
    if trainer.state.global_step >= config.max_steps:
        return None
    if timer is not None and timer.stopped_at == trainer.state.global_step:
        return "stop_after_minutes"
    return "stop_at_step"


def stop_message(trainer, config, ended_by: str, output_dir: Path) -> str:
    """What a session ended by ``stop_at_step``/``stop_after_minutes`` tells its user."""
    from .checkpoints import latest_checkpoint

    return (f"stopped at step {trainer.state.global_step} of {config.max_steps} ({ended_by}); checkpoint: "
            f"{latest_checkpoint(output_dir)}; continue with resume_from: latest")


def checkpoint_manifest_callback():
    """A callback that signs every checkpoint the Trainer saves
    (:func:`~knowlm_utils.train.checkpoints.write_manifest`: SHA-256 of every file of
    ``checkpoint-N/``, HMAC under the user's key), so that ``resume_from`` can verify it before
    anything in it is unpickled. ``on_save`` runs after the Trainer wrote the checkpoint; with
    several processes all of them wait there until every rank wrote its part, then rank 0
    writes the manifest. Reads the files only: training numbers do not change."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    from .checkpoints import write_manifest

    class CheckpointManifestWriter(TrainerCallback):
        """Signs OUTPUT/checkpoint-N (rank 0, after every rank saved) with knowlm-checkpoint.json."""

        def on_save(self, args, state, control, **kwargs):
            import torch.distributed as dist

            several = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
            if several:
                dist.barrier()  # rng_state_R.pth and ZeRO shards of the other ranks are on disk
            if state.is_world_process_zero:
                write_manifest(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if several:
                dist.barrier()  # no rank runs ahead (or exits) before the checkpoint is signed

    return CheckpointManifestWriter()


def log_history_callback(output_dir: Path):
    """A callback that rewrites ``output_dir/log_history.json`` atomically at every log (rank 0)."""
    from transformers import TrainerCallback

    class LogHistoryWriter(TrainerCallback):
        """Rewrites OUTPUT/log_history.json atomically at every log (rank 0), for live plots."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero:
                write_json_atomic(output_dir / LOG_HISTORY, state.log_history)

    return LogHistoryWriter()


def read_history(output_dir: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """OUTPUT/log_history.json split into ``train`` rows (step, loss, learning_rate, grad_norm,
    num_input_tokens_seen …) and ``eval`` rows (step, eval_loss, eval_loss_<type>,
    eval_unigram_loss_<type> …), for plotting during or after a run."""
    path = Path(output_dir) / LOG_HISTORY
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no log history yet (written at the first logging step)")
    rows = read_json(path)
    return {"train": [r for r in rows if "loss" in r], "eval": [r for r in rows if "eval_loss" in r]}


__all__ = ["LOG_HISTORY", "METRICS", "is_main_process", "resolve_device", "resolve_precision", "training_arguments",
           "AnswerPositions", "answer_only_loss", "make_trainer_class", "resume_sampler", "last_eval", "stop_callback",
           "time_limit_callback", "Session", "session_callbacks", "follow_schedule_fit", "fit_message", "stopped_by",
           "stop_message", "checkpoint_manifest_callback", "log_history_callback", "read_history"]
