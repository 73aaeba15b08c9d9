#!/usr/bin/env python
"""Generation speed on CPU with the course's tiny pretrained model: tokens/s of greedy decoding
with and without the KV cache, beam search and 8-bit (bitsandbytes LLM.int8()) weights, as
ratios to greedy with the cache. Every run writes exactly ``--tokens`` new tokens (``</s>`` is
held off with ``min_new_tokens``), so the numbers compare like with like; after one warm-up each,
the modes are timed in ``--repeat`` interleaved rounds and the best round is shown (other work on a
shared machine only ever slows a round down; every round's figure is printed too).

    python benchmarks/bench_generation.py [--model runs/course-cpu/workdir/pretrain/cpu-tiny/final]
                                          [--tokens 128] [--repeat 5] [--json runs/bench/generation.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["北京是中国的", "Amsterdam is a city in", "def fibonacci(n):"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "runs/course-cpu/workdir/pretrain/cpu-tiny/final"))
    p.add_argument("--tokens", type=int, default=128, help="new tokens per generation")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the rows here (e.g. runs/bench/generation.json)")
    args = p.parse_args()
    if not Path(args.model).is_dir():
        raise SystemExit(f"{args.model}: no model folder; run the course (notebook 05) first or pass --model")

    import torch

    from knowlm_utils.generation import Generator, GenerationParams, quiet_loading

    quiet_loading()
    fp32 = Generator.load(args.model, device="cpu")
    int8 = Generator.load(args.model, device="cpu", load_in_8bit=True)
    n = args.tokens
    modes = [
        ("greedy, KV cache", fp32, GenerationParams(max_new_tokens=n, min_new_tokens=n)),
        ("greedy, no KV cache", fp32, GenerationParams(max_new_tokens=n, min_new_tokens=n, use_cache=False)),
        ("beam search, 4 beams", fp32, GenerationParams(max_new_tokens=n, min_new_tokens=n, num_beams=4)),
        ("sampling (creative)", fp32, GenerationParams.from_mapping({"preset": "creative", "max_new_tokens": n,
                                                                     "min_new_tokens": n})),
        ("8-bit greedy, KV cache", int8, GenerationParams(max_new_tokens=n, min_new_tokens=n)),
    ]
    for _, gen, params in modes:
        gen.complete(PROMPTS[0], params.replace(max_new_tokens=8, min_new_tokens=8))  # warm-up
    rates: dict[str, list[float]] = {name: [] for name, _, _ in modes}
    for _ in range(args.repeat):  # rounds over all modes: a change of machine load hits every mode alike
        for name, gen, params in modes:
            t0, tokens = time.perf_counter(), 0
            for prompt in PROMPTS:
                tokens += gen.complete(prompt, params).new_tokens
            rates[name].append(tokens / (time.perf_counter() - t0))
    rows = [{"mode": name, "tokens_per_s": max(rates[name]), "runs": [round(r, 1) for r in rates[name]],
             "weights_mib": gen.model.get_memory_footprint() / 2**20} for name, gen, _ in modes]
    base = rows[0]["tokens_per_s"]
    print(f"model {args.model} ({sum(p.numel() for p in fp32.model.parameters()) / 1e6:.1f}M parameters), "
          f"{len(PROMPTS)} prompts x {n} new tokens, best of {args.repeat} rounds, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"| {'mode':<24} | {'tokens/s':>8} | {'x greedy+cache':>14} | {'weights MiB':>11} | runs (tokens/s) |")
    print(f"|{'-' * 26}|{'-' * 10}:|{'-' * 15}:|{'-' * 12}:|{'-' * 17}|")
    for r in rows:
        r["ratio"] = r["tokens_per_s"] / base
        print(f"| {r['mode']:<24} | {r['tokens_per_s']:>8.1f} | {r['ratio']:>14.2f} | {r['weights_mib']:>11.1f} | "
              f"{', '.join(f'{x:.0f}' for x in r['runs']):<15} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": args.model, "tokens": n, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
