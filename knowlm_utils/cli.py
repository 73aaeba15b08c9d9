"""The ``knowlm`` command: one subcommand per pipeline stage, each a thin wrapper over the
stage module's functions (the same code the notebooks call)."""

from __future__ import annotations

import argparse
import importlib
import sys

from .config import ConfigError

# stage modules that register subcommands through ``add_cli(subparsers)``
STAGE_MODULES = ("course", "corpus", "tokenizer", "preprocess", "indexed", "launch", "pretrain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knowlm", description="KnowLM Course pipeline tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in STAGE_MODULES:
        importlib.import_module(f"knowlm_utils.{name}").add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"knowlm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
