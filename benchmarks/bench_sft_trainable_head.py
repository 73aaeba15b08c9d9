#!/usr/bin/env python
"""LoRA with a frozen output head vs LoRA + embeddings/lm_head trained in full, on the course's
SFT data: same config, same steps, same seed; only ``full_embeddings`` differs.

Why it matters: LoRA adapts the attention/MLP projections, but the final RMSNorm and ``lm_head``
stay as pretraining left them. A briefly pretrained model's head cannot make confident
predictions, so the answer loss stalls far above what the data allows. Prints the held-out answer
loss (per task) of both runs and their ratio, measured in this one run:

    python benchmarks/bench_sft_trainable_head.py --workdir runs/course-cpu/workdir [--steps 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/course-cpu/workdir")
    p.add_argument("--config", default=str(ROOT / "configs" / "sft" / "cpu-course.yaml"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("-o", "--override", action="append", default=[], help="more config overrides")
    args = p.parse_args()

    from knowlm_utils.course import quiet_libraries
    from knowlm_utils.sft import train as sft

    quiet_libraries()
    wd = Path(args.workdir).resolve()
    rows = {}
    for mode in ("never", "always"):
        t0 = time.perf_counter()
        m = sft.main(args.config, [f"workdir={wd}", f"output_dir=bench/sft-head-{mode}", f"max_steps={args.steps}",
                                   f"full_embeddings={mode}", "save_steps=null", "eval_steps=null",
                                   "eval_on_start=false", "progress=false", *args.override])
        rows[mode] = (m["final_eval"], m["trainable_parameters"], time.perf_counter() - t0)
    print(f"{args.steps} steps of {args.config} each (seed and data identical)")
    print(f"{'lm_head/embeddings':>20} {'trainable':>10} {'eval loss':>9} {'NER':>7} {'RE':>7} {'time s':>7}")
    for mode, (ev, trainable, secs) in rows.items():
        print(f"{'frozen' if mode == 'never' else 'trained in full':>20} {trainable:>10,} {ev['eval_loss']:>9.3f} "
              f"{ev.get('eval_loss_NER', float('nan')):>7.3f} {ev.get('eval_loss_RE', float('nan')):>7.3f} {secs:>7.0f}")
    frozen, full = rows["never"][0]["eval_loss"], rows["always"][0]["eval_loss"]
    print(f"held-out answer loss, frozen head / trained head: {frozen / full:.2f}x")


if __name__ == "__main__":
    main()
