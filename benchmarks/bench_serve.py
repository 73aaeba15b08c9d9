#!/usr/bin/env python
"""Latency of ``knowlm serve`` over HTTP on 127.0.0.1 with the course's SFT model: 50 sequential
``POST /generate`` requests, then 8 clients sending 25 each at once, against ``knowlm serve`` running
in a process of its own. The server runs requests one
at a time from a queue (no batching), so under 8 concurrent clients a request's latency is its
own generation plus the wait behind the others; throughput stays that of one generation stream.

    python benchmarks/bench_serve.py [--model runs/course-cpu/workdir/sft/cpu-course/final]
                                     [--max-tokens 32] [--json runs/bench/serve.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTIONS = [("找出下面句子中的实体", "巴西利亚是巴西的首都。"), ("What is the capital of Brazil?", ""),
                ("抽取句子中的关系三元组", "阿姆斯特丹位于荷兰。"), ("Name three cities.", ""),
                ("写一句话介绍北京。", "")]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def call(url: str, i: int, max_tokens: int) -> tuple[float, int]:
    u = urllib.parse.urlsplit(url)
    instruction, text = INSTRUCTIONS[i % len(INSTRUCTIONS)]
    body = json.dumps({"instruction": instruction, "input": text, "parameters": {"max_tokens": max_tokens}}).encode()
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    conn.request("POST", "/generate", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = json.loads(resp.read())
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {out}")
    return time.perf_counter() - t0, out["num_output_tokens_cf"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "runs/course-cpu/workdir/sft/cpu-course/final"))
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--sequential", type=int, default=50)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--per-client", type=int, default=25)
    p.add_argument("--json", default=None, help="also write the results here (e.g. runs/bench/serve.json)")
    args = p.parse_args()
    if not Path(args.model).is_dir():
        raise SystemExit(f"{args.model}: no model folder; run the course (notebook 07) first or pass --model")

    cmd = [sys.executable, "-m", "knowlm_utils.cli", "serve", "--model", args.model, "--port", "0", "--log-level",
           "warning", "--max-queue", str(max(32, args.clients * 2))]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "KNOWLM_API_KEY": ""})  # its own process: no GIL shared with clients
    results = {}
    try:
        line = server.stdout.readline()
        if " on http://" not in line:
            raise SystemExit(f"the server did not start: {line!r}")
        url = line.split(" on ")[1].split()[0]
        call(url, 0, 4)  # warm-up
        t0 = time.perf_counter()
        seq = [call(url, i, args.max_tokens) for i in range(args.sequential)]
        results["sequential"] = (seq, time.perf_counter() - t0)
        jobs = [c * args.per_client + k for c in range(args.clients) for k in range(args.per_client)]

        def client(c: int) -> list[tuple[float, int]]:
            return [call(url, c * args.per_client + k, args.max_tokens) for k in range(args.per_client)]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            conc = [r for rs in pool.map(client, range(args.clients)) for r in rs]
        results[f"{args.clients}x{args.per_client} concurrent"] = (conc, time.perf_counter() - t0)
        assert len(conc) == len(jobs)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    print(f"model {args.model}, POST /generate, max_tokens {args.max_tokens} (greedy; </s> may end earlier), "
          "server: `knowlm serve` in its own process, 1 worker + FIFO queue")
    print(f"| {'load':<18} | {'requests':>8} | {'p50 ms':>8} | {'p95 ms':>8} | {'mean tokens':>11} | {'req/s':>6} | "
          f"{'tokens/s':>8} |")
    print(f"|{'-' * 20}|{'-' * 9}:|{'-' * 9}:|{'-' * 9}:|{'-' * 12}:|{'-' * 7}:|{'-' * 9}:|")
    rows = []
    for name, (rs, wall) in results.items():
        lat = [r[0] * 1000 for r in rs]
        toks = [r[1] for r in rs]
        row = {"load": name, "requests": len(rs), "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95),
               "mean_tokens": statistics.mean(toks), "req_per_s": len(rs) / wall, "tokens_per_s": sum(toks) / wall}
        rows.append(row)
        print(f"| {name:<18} | {row['requests']:>8} | {row['p50_ms']:>8.0f} | {row['p95_ms']:>8.0f} | "
              f"{row['mean_tokens']:>11.1f} | {row['req_per_s']:>6.2f} | {row['tokens_per_s']:>8.1f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
