#!/usr/bin/env python
"""SFT throughput with the output head and softmax on the answer positions only
(``answer_logits_only: true``, the default) against the Trainer's own loss over every position.

Why it matters: the prompt's labels are −100, yet a causal LM computes logits (batch × sequence
× vocabulary) and a log-softmax for every position. On the course model the head is the largest
matrix (5,889 × 256 against 256 × 688 for an MLP projection) and about three quarters of the
positions of an IE record are prompt or padding, so most of that work is thrown away; at 13B the
full logits are the largest activation of a micro batch. Same config, same seed, same data; the
two runs alternate (A B A B) so that a machine's drift hits both. Prints tokens/s of each and
their ratio, and the training losses side by side, measured in this one run:

    python benchmarks/bench_sft_answer_logits.py --workdir runs/course-cpu/workdir [--steps 60]
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/course-cpu/workdir")
    p.add_argument("--config", default=str(ROOT / "configs" / "sft" / "cpu-long.yaml"))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=2, help="A/B legs of each setting")
    p.add_argument("-o", "--override", action="append", default=[], help="more config overrides")
    args = p.parse_args()

    from knowlm_utils.course import quiet_libraries
    from knowlm_utils.sft import train as sft

    quiet_libraries()
    wd = Path(args.workdir).resolve()
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for leg in range(args.rounds):
        for fast in (False, True):
            m = sft.main(args.config, [f"workdir={wd}", f"output_dir=bench/sft-answer-logits-{fast}-{leg}",
                                       f"max_steps={args.steps}", f"answer_logits_only={str(fast).lower()}",
                                       "max_train_records=4000", "save_steps=null", "eval_steps=null",
                                       "eval_on_start=false", "progress=false", *args.override])
            runs[fast].append(m)
            print(f"leg {leg + 1}: answer_logits_only={str(fast).lower():5} {m['tokens_per_s']:>8,.0f} tokens/s, "
                  f"train loss {m['train_loss']:.4f}", flush=True)
    mean = {fast: sum(m["tokens_per_s"] for m in rows) / len(rows) for fast, rows in runs.items()}
    print(f"{args.steps} steps × {args.rounds} legs of {Path(args.config).name} each (seed and data identical)")
    print(f"{'loss over':>18} {'tokens/s':>9} {'train loss':>10}")
    for fast, label in ((False, "every position"), (True, "answer positions")):
        print(f"{label:>18} {mean[fast]:>9,.0f} {runs[fast][0]['train_loss']:>10.4f}")
    print(f"answer-only / every position: {mean[True] / mean[False]:.2f}x tokens/s")


if __name__ == "__main__":
    main()
