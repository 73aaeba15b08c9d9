#!/usr/bin/env python
"""Run the course notebooks in order with papermill (thin wrapper over knowlm_utils.course).

    python scripts/run_course.py --config configs/course/cpu.yaml [--only 01] [--from 03]
                                 [--smoke] [-p key=value] [-p 01.key=value] [--run-name NAME]
"""

import argparse
import sys

from knowlm_utils.config import ConfigError
from knowlm_utils.course import add_arguments, run_from_args


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except ConfigError as exc:
        print(f"run_course: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
