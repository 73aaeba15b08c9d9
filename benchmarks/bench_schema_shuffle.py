#!/usr/bin/env python
"""Schema order in SFT: the same run with the IEPile schemas in label-set order (as stage 06 writes
them) and with a share of them shuffled (``schema_shuffle``, knowlm_utils.sft.schema_order).

Both arms start from the same point (``--init-adapter``, else the base model), with the same config,
seed and minutes (``fit_schedule_minutes``: each cosine ends on time), trained side by side with one
thread each so both see the same machine. Each final model is then scored on the same test records
three ways: decoded freely, under the answers' grammar (``--constrained``), and under the grammar with
every record's schema permuted (a seeded new order, the gold answer reordered alike): a model that
reads its keys scores the same on the permuted view, one that learned where a type usually stands does
not. Prints the table and the ratios shuffled / plain, measured in this one run:

    python benchmarks/bench_schema_shuffle.py --workdir runs/course-cpu/workdir \\
        --init-adapter sft/cpu-long/final/adapter [--minutes 50] [--share 0.5] [--sentences 48]
    python benchmarks/bench_schema_shuffle.py --score-only --runs sft/A,sft/B   # score finished runs
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def train_arms(args, wd: Path, outs: list[str]) -> None:
    """Both arms side by side, one thread each (``bench_sft_arms.train_side_by_side``)."""
    from bench_sft_arms import train_side_by_side

    runs = [(out, [f"schema_shuffle={share}"]) for out, share in zip(outs, (0.0, args.share))]
    train_side_by_side(args.config, wd, runs, args.minutes, args.reserve, args.init_adapter, args.override)


def permuted(records: list[dict], seed: int) -> list[dict]:
    """Every record with a new schema order (gold answer reordered alike; one-key schemas as they are)."""
    from knowlm_utils.sft.schema_order import shuffle_record

    out = []
    for r in records:
        new = shuffle_record(r, random.Random(f"{seed}:{r['id']}"))
        out.append(new if new is not None else r)
    return out


def score(run: Path, base: Path, records: list[dict], view: list[dict], tok, batch_size: int) -> dict:
    from bench_sft_arms import load_run

    from knowlm_utils.ie.evaluate import evaluate_predictions
    from knowlm_utils.ie.predict import predict_records

    model, prompts = load_run(run, base)
    out = {}
    for name, recs, constrained in (("free", records, False), ("constrained", records, True),
                                    ("permuted", view, True)):
        rows = predict_records(recs, model, tok, prompts, max_new_tokens=96, batch_size=batch_size, progress=False,
                               constrained=constrained)
        out[name] = evaluate_predictions(recs, {r["id"]: r["answer"] for r in rows}).to_dict()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/course-cpu/workdir")
    p.add_argument("--config", default=str(ROOT / "configs" / "sft" / "cpu-long.yaml"))
    p.add_argument("--base", default="pretrain/cpu-tiny/final", help="base model, relative to the workdir")
    p.add_argument("--init-adapter", default=None, help="adapter both arms start from, relative to the workdir")
    p.add_argument("--minutes", type=float, default=50.0, help="wall time of each arm (they run side by side)")
    p.add_argument("--reserve", type=float, default=2.0, help="fit_reserve_minutes of each arm")
    p.add_argument("--share", type=float, default=0.5, help="schema_shuffle of the shuffled arm")
    p.add_argument("--out", default="bench/schema_shuffle", help="run folders, relative to the workdir")
    p.add_argument("--score-only", action="store_true", help="score finished runs (--runs), train nothing")
    p.add_argument("--runs", default=None, help="with --score-only: PLAIN,SHUFFLED run folders (relative to the workdir)")
    p.add_argument("--data", default="ie/test.jsonl")
    p.add_argument("--sentences", type=int, default=48, help="test sentences of each language")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="seed of the permuted view")
    p.add_argument("-o", "--override", action="append", default=[], help="more config overrides for both arms")
    args = p.parse_args()

    from transformers import AutoTokenizer

    from knowlm_utils.course import quiet_libraries
    from knowlm_utils.ie.eval_cli import read_records, select_records

    wd = Path(args.workdir).resolve()
    outs = args.runs.split(",") if args.runs else [f"{args.out}/plain", f"{args.out}/shuffled"]
    if len(outs) != 2:
        raise SystemExit("--runs: give two run folders, PLAIN,SHUFFLED")
    t0 = time.perf_counter()
    if not args.score_only:
        train_arms(args, wd, outs)
    quiet_libraries()
    records = [r for r in select_records(read_records(wd / args.data, ("NER", "RE")), ("iepile",), args.sentences * 2,
                                         per_language=True)]
    view = permuted(records, args.seed)
    tok = AutoTokenizer.from_pretrained(str(wd / args.base), local_files_only=True)
    rows = []
    arms = ([("start", wd / args.init_adapter)] if args.init_adapter else []) + \
        [("plain", wd / outs[0] / "final"), ("shuffled", wd / outs[1] / "final")]
    print(f"{len(records)} test records; schemas permuted in {sum(a != b for a, b in zip(records, view))} of them")
    print(f"{'arm':>9} {'steps':>6} {'free F1':>8} {'constrained':>11} {'permuted':>9} {'NER':>6} {'RE':>6} "
          f"{'NER perm.':>9} {'RE perm.':>8}", flush=True)
    for name, run in arms:
        metrics = run.parent / "metrics.json"
        steps = json.loads(metrics.read_text("utf-8")).get("global_step") if metrics.is_file() else None
        rep = score(run, wd / args.base, records, view, tok, args.batch_size)
        rows.append((name, rep))
        c, v = rep["constrained"], rep["permuted"]
        print(f"{name:>9} {steps if steps is not None else '-':>6} {rep['free']['micro']['f1']:>8.3f} "
              f"{c['micro']['f1']:>11.3f} {v['micro']['f1']:>9.3f} {c['by_task']['NER']['f1']:>6.3f} "
              f"{c['by_task']['RE']['f1']:>6.3f} {v['by_task']['NER']['f1']:>9.3f} {v['by_task']['RE']['f1']:>8.3f}",
              flush=True)
    plain, shuffled = dict(rows)["plain"], dict(rows)["shuffled"]
    for view_name in ("free", "constrained", "permuted"):
        a, b = plain[view_name]["micro"]["f1"], shuffled[view_name]["micro"]["f1"]
        print(f"shuffled / plain, {view_name}: {b:.3f} / {a:.3f} = " + (f"{b / a:.2f}x" if a > 0 else "-"))
    for name, rep in rows:
        print(f"{name:>9} constrained by language: " +
              "  ".join(f"{k} {v['f1']:.3f}" for k, v in sorted(rep["constrained"]["by_task_lang"].items())))
    print(f"measured in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
