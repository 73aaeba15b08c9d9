"""Time and peak memory of one release operation, measured in a fresh Python process: streamed
(this package) or in memory (KnowLM's ``weight_diff.py`` and PEFT's ``merge_and_unload``: whole
models loaded, state dicts added, ``save_pretrained``). Notebook 09 plots it; the benchmark
``benchmarks/bench_release.py`` runs it on 0.5 B and 1 B models.

    python -m knowlm_utils.release.memory OP IMPL '{"raw": ..., "tuned"|"diff"|"adapter": ..., "out": ...}'

prints one JSON line: ``seconds`` (the operation, imports excluded), ``peak_rss_mb`` (``VmHWM``:
the process's own peak), ``start_rss_mb`` (after imports, before the operation).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OPERATIONS = ("make-diff", "recover", "merge-lora")
IMPLEMENTATIONS = ("streamed", "in-memory")
_INPUT = {"make-diff": "tuned", "recover": "diff", "merge-lora": "adapter"}


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_kb() -> int:
    """This process's peak RSS: ``VmHWM`` of /proc/self/status. (``getrusage().ru_maxrss`` would
    also count the parent's RSS at the fork that started this interpreter: Linux keeps the old
    memory map's peak across ``exec``.)"""
    return _status_kb("VmHWM")


def run_operation(op: str, impl: str, args: dict[str, str]) -> dict[str, float]:
    """Run ``op`` (one of :data:`OPERATIONS`) the ``impl`` way in this process: ``args`` has
    ``raw``, ``out`` and ``tuned`` / ``diff`` / ``adapter`` (and optionally ``block_bytes``: the
    streamed way's block size). Returns ``seconds`` (for the in-memory
    way also ``seconds_synced``: until its unsynced writes reached the disk; ours fsyncs)."""
    import torch

    if op not in OPERATIONS or impl not in IMPLEMENTATIONS:
        raise ValueError(f"operation {op!r} / {impl!r}: expected one of {OPERATIONS} / {IMPLEMENTATIONS}")
    if impl == "streamed":
        from .diff import make_diff, recover  # imported before the clock starts
        from .merge import merge_lora

        kw = {"block_bytes": int(args["block_bytes"])} if args.get("block_bytes") else {}
        t0 = time.perf_counter()
        if op == "make-diff":
            make_diff(args["raw"], args["tuned"], args["out"], progress=False, **kw)
        elif op == "recover":
            recover(args["raw"], args["diff"], args["out"], progress=False, **kw)
        else:
            merge_lora(args["raw"], args["adapter"], args["out"], check_tokenizer=False, progress=False, **kw)
        return {"seconds": time.perf_counter() - t0}
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    t0 = time.perf_counter()
    if op in ("make-diff", "recover"):  # KnowLM's weight_diff.py: both models whole, one add
        first = LlamaForCausalLM.from_pretrained(args["raw"], dtype=torch.float32)
        second = LlamaForCausalLM.from_pretrained(args[_INPUT[op]], dtype=torch.float32)
        sd_raw, sd = first.state_dict(), second.state_dict()
        with torch.no_grad():
            for key in sd:
                sd[key].add_(-sd_raw[key] if op == "make-diff" else sd_raw[key])
        second.save_pretrained(args["out"])
    else:
        model = LlamaForCausalLM.from_pretrained(args["raw"], dtype=torch.float32)
        model = PeftModel.from_pretrained(model, args["adapter"]).merge_and_unload()
        model.save_pretrained(args["out"])
    op_s = time.perf_counter() - t0
    os.sync()
    return {"seconds": op_s, "seconds_synced": time.perf_counter() - t0}


def measure(op: str, impl: str, args: dict[str, Any]) -> dict[str, float]:
    """:func:`run_operation` in a fresh interpreter: its seconds, its own peak RSS (MB) and its RSS
    before the operation (``start_rss_mb``: Python, torch and transformers imported)."""
    plain = {k: str(v) for k, v in args.items()}
    if op in _INPUT and _INPUT[op] not in plain:
        raise ValueError(f"{op}: args need {_INPUT[op]!r} (got {sorted(plain)})")
    cmd = [sys.executable, "-m", __name__, op, impl, json.dumps(plain)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{op} ({impl}) failed: {tail}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**{k: v for k, v in res.items() if not k.endswith("_kb")}, "peak_rss_mb": res["peak_kb"] / 1024,
            "start_rss_mb": res["start_kb"] / 1024}


def _child(op: str, impl: str, args_json: str) -> None:
    import torch  # noqa: F401 - imported before the start RSS is read, as the operation needs it
    import transformers  # noqa: F401

    if impl == "in-memory":
        import peft  # noqa: F401
    start = _status_kb("VmRSS")
    res = run_operation(op, impl, json.loads(args_json))
    print(json.dumps({**res, "peak_kb": peak_rss_kb(), "start_kb": start}))


if __name__ == "__main__":
    _child(*sys.argv[1:4])
