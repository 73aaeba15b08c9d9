#!/usr/bin/env python
"""Throughput of `knowlm corpus build` on the sample world with 1 vs N worker processes.

Prints documents/s and MB/s for each setting and the ratio to the single-process baseline,
measured in this one run. Usage: python benchmarks/bench_corpus_workers.py [--workers 2] [--repeat 3]
"""

import argparse
import tempfile
import time
from pathlib import Path

from knowlm_utils.corpus import build, load_corpus_config
from knowlm_utils.workdir import repo_root


def run(workers: int, repeat: int) -> tuple[float, dict]:
    cfg = load_corpus_config(repo_root() / "configs" / "corpus" / "sample.yaml", ["progress=false", f"workers={workers}"])
    best, stats = float("inf"), {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            stats = build(cfg, Path(tmp) / "out")
            best = min(best, time.perf_counter() - t0)
    return best, stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    base, stats = run(1, args.repeat)
    mb = stats["totals"]["chars_in"] / 1e6
    docs = stats["totals"]["records"]
    print(f"{'workers':>8} {'best s':>8} {'docs/s':>9} {'Mchars/s':>9} {'speed-up':>9}")
    print(f"{1:>8} {base:8.2f} {docs / base:9.0f} {mb / base:9.2f} {1.0:9.2f}")
    t, _ = run(args.workers, args.repeat)
    print(f"{args.workers:>8} {t:8.2f} {docs / t:9.0f} {mb / t:9.2f} {base / t:9.2f}")


if __name__ == "__main__":
    main()
