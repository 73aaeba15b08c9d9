#!/usr/bin/env python
"""Rebuild the generated parts of the sample world (data_samples/corpus, data_samples/instructions)
from the knowledge graph, templates and hand-written material — deterministically.

    python scripts/build_sample_world.py            # write into data_samples/
    python scripts/build_sample_world.py --check    # exit 1 if committed files differ from a fresh run
"""

import argparse
import sys

from knowlm_utils.sample_world import SampleWorldConfig, compare, main as build
from knowlm_utils.workdir import resolve_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="data_samples", help="folder with kg/, templates/, handwritten/")
    p.add_argument("--out", help="write here instead of --data-root")
    p.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = p.parse_args(argv)
    cfg = SampleWorldConfig(data_root=str(resolve_path(args.data_root)), out_dir=args.out)
    if args.check:
        diff = compare(cfg)
        for rel in diff:
            print(f"differs from a fresh generation: {rel}")
        print("sample world is up to date" if not diff else f"{len(diff)} file(s) out of date; rerun without --check")
        return 1 if diff else 0
    summary = build(cfg)
    for rel, n in summary["files"].items():
        print(f"{rel:40s} {n / 1e3:9.1f} kB")
    print("planted:", ", ".join(f"{k} {v}" for k, v in sorted(summary["planted"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
