#!/usr/bin/env python
"""SFT settings side by side: two or more arms of one `knowlm sft` config, each with its own
overrides, trained at the same time (one thread each, the same minutes, seed and start), then scored
on the same IEPile NER/RE test records — decoded freely and under the answers' grammar — with the
ratio of every arm to the first (the baseline) measured in this one run.

Besides micro F1 per task and language it prints, per arm, how many test records whose gold answer
holds something were answered with nothing at all (every list empty; chunk level, before the
records of a sentence are regrouped for scoring) — the symptom ``empty_answer_share`` addresses.

    python benchmarks/bench_sft_arms.py --workdir runs/course-cpu/workdir \\
        --init-adapter sft/cpu-long/final/adapter --minutes 25 \\
        --arm "plain" --arm "capped empty_answer_share=0.25" [-o lr=1e-3] [--sentences 48]
    python benchmarks/bench_sft_arms.py --score-only --arm "plain" --arm "capped"   # score finished arms

Arms are named by their first word; the rest are `-o KEY=VALUE` overrides of that arm alone. Each
arm's run goes to ``WORKDIR/<--out>/<name>`` and its log beside it (``<name>.log``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Arm:
    name: str
    overrides: list[str]


def parse_arm(text: str) -> Arm:
    """``"NAME KEY=VALUE …"`` → an :class:`Arm` (a one-line error on a bad spec)."""
    words = text.split()
    if not words or "=" in words[0]:
        raise SystemExit(f"--arm {text!r}: start with the arm's name, then KEY=VALUE overrides")
    bad = [w for w in words[1:] if "=" not in w]
    if bad:
        raise SystemExit(f"--arm {text!r}: not KEY=VALUE: {' '.join(bad)}")
    return Arm(words[0], words[1:])


def train_side_by_side(config: str, wd: Path, runs: list[tuple[str, list[str]]], minutes: float, reserve: float,
                       init_adapter: str | None = None, common: list[str] = ()) -> None:
    """Every ``(output_dir, overrides)`` as its own `knowlm sft` process, all at once, one thread each,
    each cosine fitted to ``minutes`` (``fit_schedule_minutes``); logs beside the runs."""
    procs = []
    for out, overrides in runs:
        cmd = [sys.executable, "-m", "knowlm_utils.cli", "sft", config, "-o", f"workdir={wd}",
               "-o", f"output_dir={out}", "-o", f"fit_schedule_minutes={minutes}",
               "-o", f"fit_reserve_minutes={reserve}", "-o", "max_steps=100000", "-o", "progress=false"]
        if init_adapter:
            cmd += ["-o", f"init_adapter={wd / init_adapter}"]
        for o in [*common, *overrides]:
            cmd += ["-o", o]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        (wd / out).parent.mkdir(parents=True, exist_ok=True)
        log = open(wd / f"{out}.log", "w", encoding="utf-8")
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log, out))
    failed = []
    for proc, log, out in procs:
        if proc.wait():
            failed.append(f"{out} (exit {proc.returncode}; see {wd / out}.log)")
        log.close()
    if failed:
        raise SystemExit("knowlm sft failed: " + ", ".join(failed))


def load_run(run: Path, base: Path):
    """(model, prompts) of a finished run's ``final/`` (merged model) or of an adapter folder on ``base``."""
    from knowlm_utils.ie.eval_cli import load_model, load_prompter

    model = load_model(run) if (run / "config.json").is_file() else load_model(base, run)
    return model, load_prompter(run, run.parent)


def answered_nothing(records: list[dict], answers: dict[str, str]) -> tuple[int, int]:
    """(records whose gold answer holds an item, of those answered with no item at all)."""
    from knowlm_utils.ie.evaluate import parse_gold, parse_prediction

    gold_full = [r for r in records if parse_gold(r)]
    return len(gold_full), sum(not parse_prediction(r, answers.get(r["id"], "")).items for r in gold_full)


def score_arm(model, prompts, tok, records: list[dict], batch_size: int) -> dict:
    from knowlm_utils.ie.evaluate import evaluate_predictions
    from knowlm_utils.ie.predict import predict_records

    out = {}
    for name, constrained in (("free", False), ("constrained", True)):
        rows = predict_records(records, model, tok, prompts, max_new_tokens=96, batch_size=batch_size, progress=False,
                               constrained=constrained)
        answers = {r["id"]: r["answer"] for r in rows}
        out[name] = evaluate_predictions(records, answers).to_dict()
        out[name]["answered_nothing"] = {task: answered_nothing([r for r in records if r["task"] == task], answers)
                                         for task in ("NER", "RE")}
    return out


def _ratio(b: float, a: float) -> str:
    return f"{b / a:.2f}x" if a > 0 else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/course-cpu/workdir")
    p.add_argument("--config", default=str(ROOT / "configs" / "sft" / "cpu-long.yaml"))
    p.add_argument("--base", default="pretrain/cpu-tiny/final", help="base model, relative to the workdir")
    p.add_argument("--arm", action="append", default=[], help='"NAME KEY=VALUE …" (two or more; the first is the '
                   "baseline)")
    p.add_argument("--init-adapter", default=None, help="adapter every arm starts from, relative to the workdir")
    p.add_argument("--minutes", type=float, default=25.0, help="wall time of each arm (they run side by side)")
    p.add_argument("--reserve", type=float, default=1.0, help="fit_reserve_minutes of each arm")
    p.add_argument("--out", default="bench/sft_arms", help="run folders, relative to the workdir")
    p.add_argument("--score-only", action="store_true", help="score the arms' finished runs, train nothing")
    p.add_argument("--data", default="ie/test.jsonl")
    p.add_argument("--sentences", type=int, default=48, help="test sentences of each language")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("-o", "--override", action="append", default=[], help="overrides for every arm")
    args = p.parse_args()
    arms = [parse_arm(a) for a in args.arm]
    if len(arms) < 2 or len({a.name for a in arms}) != len(arms):
        raise SystemExit("--arm: give two or more arms with different names")

    from transformers import AutoTokenizer

    from knowlm_utils.course import quiet_libraries
    from knowlm_utils.ie.eval_cli import read_records, select_records

    wd = Path(args.workdir).resolve()
    t0 = time.perf_counter()
    if not args.score_only:
        train_side_by_side(args.config, wd, [(f"{args.out}/{a.name}", a.overrides) for a in arms], args.minutes,
                           args.reserve, args.init_adapter, args.override)
    quiet_libraries()
    records = select_records(read_records(wd / args.data, ("NER", "RE")), ("iepile",), args.sentences * 2,
                             per_language=True)
    tok = AutoTokenizer.from_pretrained(str(wd / args.base), local_files_only=True)
    named = ([("start", wd / args.init_adapter)] if args.init_adapter else []) + \
        [(a.name, wd / args.out / a.name / "final") for a in arms]
    print(f"{len(records)} test records; arms: " + "; ".join(f"{a.name} {' '.join(a.overrides) or '(as configured)'}"
                                                              for a in arms))
    print(f"{'arm':>10} {'steps':>6} {'free F1':>8} {'constr.':>8} {'NER':>6} {'RE':>6} {'RE P':>6} {'RE R':>6} "
          f"{'RE answered nothing':>20}", flush=True)
    reports = {}
    for name, run in named:
        metrics = run.parent / "metrics.json"
        steps = json.loads(metrics.read_text("utf-8")).get("global_step") if metrics.is_file() else None
        model, prompts = load_run(run, wd / args.base)
        rep = reports[name] = score_arm(model, prompts, tok, records, args.batch_size)
        c = rep["constrained"]
        full, nothing = c["answered_nothing"]["RE"]
        print(f"{name:>10} {steps if steps is not None else '-':>6} {rep['free']['micro']['f1']:>8.3f} "
              f"{c['micro']['f1']:>8.3f} {c['by_task']['NER']['f1']:>6.3f} {c['by_task']['RE']['f1']:>6.3f} "
              f"{c['by_task']['RE']['p']:>6.3f} {c['by_task']['RE']['r']:>6.3f} {f'{nothing} of {full}':>20}",
              flush=True)
    first = reports[arms[0].name]
    for a in arms[1:]:
        for view in ("free", "constrained"):
            x, y = reports[a.name][view]["micro"]["f1"], first[view]["micro"]["f1"]
            print(f"{a.name} / {arms[0].name}, {view}: {x:.3f} / {y:.3f} = {_ratio(x, y)}")
    for name, rep in reports.items():
        print(f"{name:>10} constrained by language: " +
              "  ".join(f"{k} {v['f1']:.3f}" for k, v in sorted(rep["constrained"]["by_task_lang"].items())))
    print(f"measured in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
