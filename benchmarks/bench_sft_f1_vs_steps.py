#!/usr/bin/env python
"""Extraction F1 against SFT training steps: every checkpoint of one `knowlm sft` run scored on
the same test records, next to the prompted base model (step 0, the baseline).

Prints, per checkpoint: step, train loss there, the teacher-forced loss and top-1 accuracy on the
answer tokens that spell gold names (``copy_check.name_token_scores``: they show copying start before
F1 does, the training loss never does), NER/RE F1, micro F1, unparseable answers, and the F1 gain over
the base model, all measured in this one run. ``--constrained`` decodes every checkpoint a second time
under the answers' grammar (``knowlm_utils.ie.constrained``: schema keys in order, names that are spans
of the input) and adds its micro F1, unparseable answers and the ratio constrained / free. Usage:

    python benchmarks/bench_sft_f1_vs_steps.py --workdir runs/course-cpu/workdir \\
        --base pretrain/cpu-tiny/final --run sft/cpu-long [--sentences 48] [--styles iepile] [--steps 4000,7000]
        [--constrained]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def score(records, model, tok, prompts, max_new_tokens: int, batch_size: int, constrained: bool) -> dict:
    from knowlm_utils.ie.copy_check import name_token_scores
    from knowlm_utils.ie.evaluate import evaluate_predictions
    from knowlm_utils.ie.predict import predict_records

    rows = predict_records(records, model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           progress=False)
    report = evaluate_predictions(records, {r["id"]: r["answer"] for r in rows}).to_dict()
    names = name_token_scores(model, records, tok, prompts)
    if constrained:
        rows = predict_records(records, model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                               progress=False, constrained=True)
        report["constrained"] = evaluate_predictions(records, {r["id"]: r["answer"] for r in rows}).to_dict()
    return {**report, "name_nll": names.names("nll"), "name_accuracy": names.names("accuracy")}


def constrained_columns(rep: dict) -> str:
    c, free = rep["constrained"], rep["micro"]["f1"]
    ratio = f"{c['micro']['f1'] / free:.2f}x" if free > 0 else "-"
    return f" {c['micro']['f1']:>14.3f} {c['unparseable']:>5}/{c['records']:<5} {ratio:>16}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/course-cpu/workdir")
    p.add_argument("--base", default="pretrain/cpu-tiny/final", help="base model, relative to the workdir")
    p.add_argument("--run", default="sft/cpu-course", help="SFT output folder, relative to the workdir")
    p.add_argument("--data", default="ie/test.jsonl", help="records, relative to the workdir")
    p.add_argument("--styles", default="iepile")
    p.add_argument("--tasks", default="NER,RE")
    p.add_argument("--sentences", type=int, default=48, help="test sentences, half zh and half en (an IEPile sentence has several records)")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--constrained", action="store_true", help="also decode under the answers' grammar and compare")
    p.add_argument("--steps", default="", help="comma-separated checkpoint steps to score (default: every checkpoint)")
    args = p.parse_args()

    from transformers import AutoTokenizer

    from knowlm_utils.course import quiet_libraries
    from knowlm_utils.ie.eval_cli import load_model, load_prompter, read_records, select_records

    quiet_libraries()
    wd = Path(args.workdir).resolve()
    tasks, styles = tuple(args.tasks.split(",")), tuple(args.styles.split(","))
    # each language alike (the split lists one, then the other); GENERAL records are not scored
    records = [r for r in select_records(read_records(wd / args.data, tasks), styles, args.sentences * 2,
                                         per_language=True) if r["task"] != "GENERAL"]
    tok = AutoTokenizer.from_pretrained(str(wd / args.base), local_files_only=True)
    prompts = load_prompter(wd / args.run)  # the templates the run was trained with
    hist = json.loads((wd / args.run / "log_history.json").read_text("utf-8"))
    loss_at = {h["step"]: h["loss"] for h in hist if "loss" in h}
    ckpts = sorted((wd / args.run).glob("checkpoint-*"), key=lambda c: int(c.name.split("-")[1]))
    if args.steps:
        wanted = {int(s) for s in args.steps.split(",")}
        missing = wanted - {int(c.name.split("-")[1]) for c in ckpts}
        if missing:
            raise SystemExit(f"--steps: no checkpoint-N in {wd / args.run} for step(s) {sorted(missing)}")
        ckpts = [c for c in ckpts if int(c.name.split("-")[1]) in wanted]
    print(f"{len(records)} records ({args.sentences} sentences max), tasks {tasks}, styles {sorted(styles)}; "
          f"{len(ckpts)} checkpoints of {wd / args.run}")
    t0 = time.perf_counter()
    print(f"{'step':>6} {'loss':>6} {'name loss':>9} {'name acc':>8} " + " ".join(f"{t + ' F1':>7}" for t in tasks) +
          f" {'micro F1':>8} {'unparseable':>11} {'F1 gain vs base':>15}" +
          (f" {'constrained F1':>14} {'unparseable':>11} {'constrained/free':>16}" if args.constrained else ""), flush=True)
    rows: list = []

    def show(step: int, loss, rep: dict) -> None:  # one row as soon as it is measured (long runs)
        rows.append((step, loss, rep))
        by, base_f1 = rep["by_task"], rows[0][2]["micro"]["f1"]
        print(f"{step:>6} {'' if loss is None else f'{loss:.3f}':>6} {rep['name_nll']:>9.2f} {rep['name_accuracy']:>8.2f} " +
              " ".join(f"{by.get(t, {}).get('f1', 0.0):>7.3f}" for t in tasks) +
              f" {rep['micro']['f1']:>8.3f} {rep['unparseable']:>5}/{rep['records']:<5} "
              f"{rep['micro']['f1'] - base_f1:>+15.3f}" + (constrained_columns(rep) if args.constrained else ""), flush=True)

    show(0, None, score(records, load_model(wd / args.base), tok, prompts, args.max_new_tokens, args.batch_size,
                        args.constrained))
    for c in ckpts:
        step = int(c.name.split("-")[1])
        show(step, loss_at.get(step), score(records, load_model(wd / args.base, c), tok, prompts,
                                            args.max_new_tokens, args.batch_size, args.constrained))
    print("F1 per task and language:")
    for step, _, rep in rows:
        print(f"{step:>6} " + "  ".join(f"{k} {v['f1']:.3f}" for k, v in sorted(rep["by_task_lang"].items())))
        if args.constrained:
            print(f"{'':>6} " + "  ".join(f"{k} {v['f1']:.3f}" for k, v in
                                          sorted(rep["constrained"]["by_task_lang"].items())) + "  (constrained)")
    print(f"measured in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
