"""Config sections shared by every training stage (pretraining, SFT).

* :class:`ModelSection` — which model: a shape preset from scratch, or a checkpoint;
* :class:`LoraSection` — LoRA adapter settings;
* :class:`TrainingArgs` — the training loop (batch, schedule, AdamW, precision, logging /
  evaluation / checkpoint cadence, DeepSpeed, resuming). A stage's config inherits it, so its
  keys stay at the top level of the stage's YAML::

      @dataclass
      class PretrainConfig(StageConfig, TrainingArgs):
          train_index: str = field(help=...)
          ...

  and :func:`knowlm_utils.train.trainer.training_arguments` turns it into the Trainer's
  ``TrainingArguments``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Section, field
from .deepspeed import check_spec


@dataclass
class ModelSection(Section):
    """Which model to train: a named shape initialised from scratch, or an existing checkpoint."""

    preset: str = field("cpu-tiny", help="shape preset of knowlm_utils.modeling.PRESETS (cpu-tiny, llama-13b …)")
    overrides: dict[str, Any] = field(default_factory=dict, help="LlamaConfig overrides, e.g. {num_hidden_layers: 2}")
    pad_vocab_to_multiple_of: int | None = field(None, ge=1, help="round the vocabulary up (64 for GPU tensor cores)")
    init_from: str | None = field(None, help="a HF model folder to start from instead of a random init (stage 2 "
                                             "continues from stage 1); required for stage embeddings / lora+embeddings")
    gradient_checkpointing: bool = field(False, help="recompute activations in the backward pass (KnowLM-13B: on)")


@dataclass
class LoraSection(Section):
    """LoRA settings (Chinese-LLaMA-Alpaca: r 8, alpha 32, dropout 0.05)."""

    r: int = field(8, ge=1, help="rank of the low-rank update")
    alpha: int = field(32, ge=1, help="scaling numerator (update scaled by alpha / r)")
    dropout: float = field(0.05, ge=0, lt=1, help="dropout on the LoRA input")
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                        "down_proj", "up_proj"],
                               help="module names that get LoRA adapters")
    integer_mask_dropout: bool = field(True, help="draw the LoRA dropout masks on CPU from 64-bit random integers "
                                                  "cut into 15-bit ones: nn.Dropout's distribution at a fraction of "
                                                  "its cost (cpu-long steps about 1.2x faster: benchmarks/"
                                                  "bench_sft_step_time.py --compare dropout); false: PEFT's "
                                                  "nn.Dropout")


@dataclass(kw_only=True)
class TrainingArgs(Section):
    """The training loop of a Hugging Face ``Trainer`` run (all keyword-only, so a stage config
    can add required fields of its own)."""

    micro_batch: int = field(8, ge=1, help="sequences per process per forward pass (KnowLM-13B: 20)")
    grad_accum: int = field(1, ge=1, help="micro batches accumulated per optimizer step (KnowLM-13B: 3)")
    max_steps: int = field(100, ge=1, help="optimizer steps of the whole run (the end step, also when resuming)")
    lr: float = field(3e-4, gt=0, help="peak learning rate (KnowLM-13B: 1.5e-5)")
    min_lr_ratio: float = field(0.0, ge=0, lt=1,
                                help="cosine decays to lr × this (0: to zero, the Trainer's 'cosine')")
    lr_scheduler: str = field("cosine", help="Trainer scheduler: cosine, linear, constant_with_warmup …")
    warmup_steps: int | None = field(None, ge=0, help="linear warmup steps; None: warmup_ratio × max_steps")
    warmup_ratio: float = field(0.0, ge=0, lt=1, help="warmup as a fraction of max_steps when warmup_steps is None")
    weight_decay: float = field(0.1, ge=0, help="AdamW weight decay (KnowLM: 0.1)")
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95], ge=0, lt=1,
                               help="AdamW betas (KnowLM: 0.9, 0.95)")
    eps: float = field(1e-8, gt=0, help="AdamW epsilon")
    max_grad_norm: float = field(1.0, ge=0, help="gradient clipping (0 disables)")
    precision: str = field("auto", choices=("auto", "fp32", "fp16", "bf16"),
                           help="auto: fp32 on CPU, bf16 on GPUs that have it, else fp16")
    logging_steps: int = field(10, ge=1, help="log the training loss every N steps")
    eval_steps: int | None = field(None, ge=1, help="evaluate every N steps (None: only at the start and the end)")
    eval_on_start: bool = field(True, help="evaluate the untrained model first (the curve starts at ~ln(V))")
    eval_batch: int | None = field(None, ge=1, help="sequences per eval forward pass (default: micro_batch)")
    save_steps: int | None = field(None, ge=1, help="write checkpoint-N every N steps (None: no intermediate "
                                                    "checkpoints)")
    save_total_limit: int | None = field(2, ge=1, help="keep at most this many checkpoints")
    seed: int = field(0, help="model init, data order and dropout seed")
    device: str = field("auto", choices=("auto", "cpu", "cuda"), help="auto: cuda when available")
    deepspeed: Any = field(None, help="None, a DeepSpeed JSON path (relative to the YAML's folder), an inline "
                                      "config dict, or a short spec "
                                      "{stage: 2|3, offload_optimizer, offload_params, optimizer}")
    resume_from: str | None = field(None, help="None | 'latest' (newest OUTPUT/checkpoint-N, if any) | a checkpoint")
    stop_at_step: int | None = field(None, ge=1, help="end this session at this step with a checkpoint, without the "
                                                      "final save (a time-limited cluster job; the schedule still "
                                                      "follows max_steps; rerun with resume_from: latest)")
    stop_after_minutes: float | None = field(None, gt=0, help="end this session with a checkpoint after this many "
                                             "minutes since the stage started (Megatron's --exit-duration-in-mins: "
                                             "set it a few minutes under a Slurm job's time limit, then rerun with "
                                             "resume_from: latest; the schedule still follows max_steps)")
    fit_schedule_minutes: float | None = field(None, gt=0, help="fit the run to this much wall time since the stage "
                                               "started: after fit_calibration_steps steps the measured time per step "
                                               "sets max_steps (at most the configured one) so that the learning-rate "
                                               "decay ends when the time is up, and the run completes there; "
                                               "OUTPUT/schedule_fit.json records the fit, which a resumed run follows")
    fit_calibration_steps: int = field(20, ge=1, help="steps measured before fit_schedule_minutes fits the schedule "
                                                      "(the session's first step is not measured)")
    fit_reserve_minutes: float = field(0.0, ge=0, help="minutes of fit_schedule_minutes kept for the final evaluation "
                                                       "and save")
    fit_refit_steps: int = field(500, ge=0, help="after the first fit, fit again every this many steps from the "
                                                 "session's whole pace so far and move the schedule's end to match "
                                                 "(0: fit once)")
    dataloader_workers: int = field(0, ge=0, help="DataLoader worker processes (0: load in the training process)")
    progress: bool = field(True, help="show the Trainer's progress bar")

    def validate(self) -> None:
        super().validate()
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        check_spec(self.deepspeed)
        if self.fit_schedule_minutes is not None:
            from .schedule_fit import FITTABLE

            if self.lr_scheduler not in FITTABLE:
                raise ValueError(f"fit_schedule_minutes needs a schedule that decays to an end step, one of "
                                 f"{list(FITTABLE)}; lr_scheduler is {self.lr_scheduler!r}")
            if self.fit_reserve_minutes >= self.fit_schedule_minutes:
                raise ValueError(f"fit_reserve_minutes ({self.fit_reserve_minutes}) must be less than "
                                 f"fit_schedule_minutes ({self.fit_schedule_minutes})")

    @property
    def eval_batch_size(self) -> int:
        """Sequences per eval forward pass (``eval_batch``, else ``micro_batch``)."""
        return self.eval_batch or self.micro_batch


__all__ = ["ModelSection", "LoraSection", "TrainingArgs"]
