#!/usr/bin/env python
"""The one pretraining entry point: ``python scripts/pretrain.py CONFIG.yaml [-o key=value …]``.

Runs as a plain process (one CPU/GPU, or DeepSpeed in-process) and under a launcher:
``deepspeed --num_gpus N scripts/pretrain.py CONFIG.yaml …`` or
``torchrun --nproc_per_node N scripts/pretrain.py CONFIG.yaml …`` — the launcher sets
RANK/WORLD_SIZE/LOCAL_RANK; deepspeed also passes ``--local_rank=N``, accepted and ignored here.
All the work is :func:`knowlm_utils.pretrain.main`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from knowlm_utils.config import ConfigError  # noqa: E402
from knowlm_utils.pretrain import build_arg_parser  # noqa: E402
from knowlm_utils.train.ranks import run_rank  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = build_arg_parser()
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help="set by the deepspeed launcher")
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as exc:  # bad input: a short message; other errors keep their traceback
        print(f"pretrain.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    run_rank(main)  # after success every rank leaves the process group together (knowlm_utils.train.ranks)
