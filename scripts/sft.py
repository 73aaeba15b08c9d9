#!/usr/bin/env python
"""The one SFT entry point: ``python scripts/sft.py CONFIG.yaml [-o key=value …]``.

Runs as a plain process and under a launcher, like ``scripts/pretrain.py``:
``deepspeed --num_gpus N scripts/sft.py CONFIG.yaml`` or ``torchrun --nproc_per_node N …``.
All the work is :func:`knowlm_utils.sft.train.main`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from knowlm_utils.cli import main as knowlm  # noqa: E402
from knowlm_utils.train.ranks import run_rank  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--local_rank", "--local-rank", type=int, default=None)  # set by the deepspeed launcher
    _, rest = pre.parse_known_args(argv)
    return knowlm(["sft", *rest])


if __name__ == "__main__":
    run_rank(main)  # after success every rank leaves the process group together (knowlm_utils.train.ranks)
