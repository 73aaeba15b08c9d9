#!/usr/bin/env python
"""The same wall time spent two ways: a long cosine cut by the clock (``stop_after_minutes``)
against a cosine fitted to the clock (``fit_schedule_minutes``). Same config, seed, data and
minutes; only how the time limit meets the schedule differs.

Why it matters: issue 11's GPU runs had a session of device time, not a step count. Sized for
more steps than fit, the schedule is cut while the learning rate is still high; fitted, the rate
decays to its end when the time does. Prints, for both end states, the steps taken, the last
learning rate, the teacher-forced loss and top-1 accuracy on the answer tokens that spell gold
names (``copy_check.name_token_scores``) and on the other answer tokens, NER/RE F1 on the same
test records, and the fitted/cut ratios, measured in this one run:

    python benchmarks/bench_schedule_fit.py --workdir runs/course-cpu/workdir [--minutes 8] [--max-steps 6000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def last_learning_rate(config, max_steps: int, steps: int, output_dir: Path) -> float:
    """The learning rate the run's last step used: its Trainer schedule (as training built it)
    with ``max_steps`` (the fitted one for a fitted run), at step ``steps``."""
    import torch
    from transformers import get_scheduler

    from knowlm_utils.train.trainer import training_arguments

    a = training_arguments(config, output_dir, "cpu", "fp32", None, False)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    sched = get_scheduler(a.lr_scheduler_type, opt, num_warmup_steps=a.warmup_steps, num_training_steps=max_steps,
                          scheduler_specific_kwargs=a.lr_scheduler_kwargs)
    return config.lr * sched.lr_lambdas[0](steps - 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/course-cpu/workdir")
    p.add_argument("--config", default=str(ROOT / "configs" / "sft" / "cpu-long.yaml"))
    p.add_argument("--minutes", type=float, default=8.0, help="wall time of each run, from its stage's start")
    p.add_argument("--max-steps", type=int, default=6000, help="the cut run's schedule (and the fit's cap)")
    p.add_argument("--sentences", type=int, default=24, help="test sentences scored, half zh and half en")
    p.add_argument("--out", default="bench/schedule_fit", help="run folders, relative to the workdir")
    p.add_argument("-o", "--override", action="append", default=[], help="more config overrides")
    args = p.parse_args()

    from transformers import AutoTokenizer

    from knowlm_utils.course import quiet_libraries
    from knowlm_utils.ie.copy_check import name_token_scores
    from knowlm_utils.ie.eval_cli import load_model, load_prompter, read_records, select_records
    from knowlm_utils.ie.evaluate import evaluate_predictions
    from knowlm_utils.ie.predict import predict_records
    from knowlm_utils.sft import train as sft

    quiet_libraries()
    wd = Path(args.workdir).resolve()
    common = [f"workdir={wd}", f"max_steps={args.max_steps}", "save_steps=null", "eval_steps=null",
              "eval_on_start=false", "progress=false", *args.override]
    runs = {"cut": [f"stop_after_minutes={args.minutes}"], "fitted": [f"fit_schedule_minutes={args.minutes}"]}
    ends: dict[str, dict] = {}
    for name, extra in runs.items():
        out = wd / args.out / name
        t0 = time.time()
        m = sft.main(args.config, [*common, f"output_dir={out}", *extra])
        adapter = out / "final" / "adapter" if m["completed"] else out / f"checkpoint-{m['global_step']}"
        ends[name] = {"steps": m["global_step"], "wall_s": time.time() - t0, "adapter": adapter,
                      "last_lr": last_learning_rate(sft.SFTConfig.load(args.config, [*common, *extra]),
                                                    m["max_steps"], m["global_step"], out)}
        print(f"{name}: {m['global_step']} steps in {ends[name]['wall_s']:.0f} s, stopped_by {m['stopped_by']}, "
              f"schedule_fit {m.get('schedule_fit')}", flush=True)

    cfg = sft.SFTConfig.load(args.config, [f"workdir={wd}", *args.override])
    base = cfg.path(cfg.base_model)
    records = [r for r in select_records(read_records(cfg.path(cfg.data_dir) / "test.jsonl", tuple(cfg.tasks)),
                                         tuple(cfg.styles), args.sentences * 2, per_language=True)
               if r["task"] != "GENERAL"]
    tok = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    prompts = load_prompter(wd / args.out / "fitted")
    for name, end in ends.items():
        model = load_model(base, end["adapter"], device="cpu")
        rows = predict_records(records, model, tok, prompts, max_new_tokens=96, batch_size=8, progress=False)
        report = evaluate_predictions(records, {r["id"]: r["answer"] for r in rows}).to_dict()
        names = name_token_scores(model, records, tok, prompts)
        end.update(name_nll=names.names("nll"), name_acc=names.names("accuracy"), other_nll=names.mean_nll("format"),
                   f1={t: report["by_task"].get(t, {}).get("f1", 0.0) for t in cfg.tasks},
                   micro=report["micro"]["f1"], unparseable=report["unparseable"])
    print(f"\n{len(records)} test records; {args.minutes:g} min each\n"
          f"{'':8} {'steps':>6} {'last lr':>9} {'name loss':>9} {'name acc':>8} {'other loss':>10} "
          + " ".join(f"{t + ' F1':>7}" for t in cfg.tasks) + f" {'micro F1':>8} {'unparseable':>11}")
    for name, e in ends.items():
        print(f"{name:8} {e['steps']:>6} {e['last_lr']:>9.2e} {e['name_nll']:>9.3f} {e['name_acc']:>8.3f} "
              f"{e['other_nll']:>10.3f} " + " ".join(f"{e['f1'][t]:>7.3f}" for t in cfg.tasks)
              + f" {e['micro']:>8.3f} {e['unparseable']:>11}")
    f, c = ends["fitted"], ends["cut"]
    print(f"fitted/cut: name loss {f['name_nll'] / c['name_nll']:.3f}×, other answer tokens' loss "
          f"{f['other_nll'] / c['other_nll']:.3f}×, micro F1 {f['micro']:.3f} vs {c['micro']:.3f}")


if __name__ == "__main__":
    main()
