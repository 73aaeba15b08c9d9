#!/usr/bin/env python
"""SFT seconds per step of two settings of one config, measured in one run:

* ``--compare dropout``: LoRA dropout masks drawn as integers (``lora.integer_mask_dropout:
  true``, the default, ``knowlm_utils/train/lora_dropout.py``) against PEFT's ``nn.Dropout``. A
  profile of a ``cpu-long`` step (torch.profiler, 20 steps) put ``bernoulli_`` — the float mask
  each of the 28 LoRA layers' ``nn.Dropout`` draws — at 22.5 % of the step, second only to the
  matrix products. The integer masks have the same distribution.
* ``--compare length-groups``: micro batches dealt by length within groups of 16
  (``group_by_length: 16``, ``LengthGroupedBatches``) against the sampler's own order. Right
  padding to a micro batch's longest sample made 24 % of what a ``cpu-long`` step computes
  padding; the same samples and type counts per batch, grouped, pad a few per cent.

Same config, seed and data; the two settings alternate (A B A B) so that a machine's drift hits
both, and the first ``--warmup`` steps of each run are not timed. Prints the seconds per step of
each, their ratio, the tokens trained per step and the padding share of each, and both runs'
training losses (the masks or batches differ, so the losses agree in distribution, not to the
digit):

    python benchmarks/bench_sft_step_time.py --compare dropout --workdir runs/course-cpu/workdir [--steps 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPARISONS = {  # name: (baseline label, overrides), (candidate label, overrides)
    "dropout": (("nn.Dropout (bernoulli_)", ["lora.integer_mask_dropout=false"]),
                ("integer masks", ["lora.integer_mask_dropout=true"])),
    "length-groups": (("sampler order", ["group_by_length=0"]),
                      ("grouped by length (16)", ["group_by_length=16"])),
}


def timed_run(config: str, overrides: list[str], warmup: int) -> tuple[float, dict]:
    """(seconds per step after ``warmup`` steps, the run's metrics)."""
    from transformers import TrainerCallback

    from knowlm_utils.sft import train as sft
    from knowlm_utils.train import trainer as trainer_module

    stamps: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    make = trainer_module.make_trainer_class

    def make_timed():
        base = make()

        class Timed(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.add_callback(StepClock())

        return Timed

    trainer_module.make_trainer_class = make_timed
    try:
        metrics = sft.main(config, overrides)
    finally:
        trainer_module.make_trainer_class = make
    return (stamps[-1] - stamps[warmup - 1]) / (len(stamps) - warmup), metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", required=True, choices=sorted(COMPARISONS))
    p.add_argument("--workdir", default="runs/course-cpu/workdir")
    p.add_argument("--config", default=str(ROOT / "configs" / "sft" / "cpu-long.yaml"))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=40, help="steps of each run not timed")
    p.add_argument("--rounds", type=int, default=2, help="A/B legs of each setting")
    p.add_argument("-o", "--override", action="append", default=[], help="more config overrides")
    args = p.parse_args()
    if not 0 < args.warmup < args.steps:
        p.error(f"--warmup must be between 1 and --steps - 1, got {args.warmup}")

    from knowlm_utils.course import quiet_libraries

    quiet_libraries()
    wd = Path(args.workdir).resolve()
    arms = COMPARISONS[args.compare]
    pace: list[list[float]] = [[], []]
    first: list[dict] = [{}, {}]
    for leg in range(args.rounds):
        for a, (label, overrides) in enumerate(arms):
            s, m = timed_run(args.config, [f"workdir={wd}", f"output_dir=bench/sft-step-time-{args.compare}-{a}-{leg}",
                                           f"max_steps={args.steps}", "max_train_records=4000", "save_steps=null",
                                           "eval_steps=null", "eval_on_start=false", "progress=false",
                                           *args.override, *overrides], args.warmup)
            pace[a].append(s)
            first[a] = first[a] or m
            print(f"leg {leg + 1}: {label:>24} {s:.3f} s/step, train loss {m['train_loss']:.4f}", flush=True)
    mean = [sum(v) / len(v) for v in pace]
    print(f"{args.steps} steps × {args.rounds} legs of {Path(args.config).name} each, steps {args.warmup + 1}–"
          f"{args.steps} timed (seed and data identical)")
    print(f"{'':>24} {'s/step':>7} {'tokens/step':>11} {'padding':>8} {'train loss':>10}")
    for a, (label, _) in enumerate(arms):
        m = first[a]
        print(f"{label:>24} {mean[a]:>7.3f} {m['tokens_seen'] / m['global_step']:>11,.0f} "
              f"{m['padding']['share']:>8.1%} {m['train_loss']:>10.4f}")
    print(f"{arms[1][0]} / {arms[0][0]}: {mean[0] / mean[1]:.2f}x steps per second")


if __name__ == "__main__":
    main()
