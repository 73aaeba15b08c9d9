#!/usr/bin/env python
"""Throughput of `knowlm corpus build` with 1 and 2 worker processes: the build table of
benchmarks/bench_corpus.py (filters only, + exact dedup, + near dedup; identical output for every
worker count, checked), on a small generated corpus. Kept for its name; bench_corpus.py is the
full benchmark (filters against the original implementation, dedup alone, sizes up to 80 M chars).

Usage: python benchmarks/bench_corpus_workers.py [--workers 1,2] [--chars 4000000]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_corpus  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--chars", type=int, default=4_000_000)
    args = p.parse_args()
    bench_corpus.main(["--chars", str(args.chars), "--workers", args.workers, "--sections", "build"])


if __name__ == "__main__":
    main()
