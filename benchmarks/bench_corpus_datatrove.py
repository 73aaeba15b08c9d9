#!/usr/bin/env python
"""The corpus build on datatrove's local executor (N tasks) against the single-machine build
(one process), on a generated corpus with planted duplicates (exact copies, 1 % and 3 %
character edits; knowlm_utils.corpus_datatrove.synthetic):

* wall time and peak RSS (largest process, and the sum over the process tree) of both;
* that the outputs are identical (shards, removed.jsonl, skipped.jsonl, stats.json but wall_s);
* dedup recall on the planted duplicates, per kind (both builds: they must agree);
* memory per million documents of each distributed stage: (peak RSS − RSS at the task's start)
  of each task, per million documents it handled, and the bytes each stage keeps on disk.

Each build runs in its own child process, sampled every 0.1 s with psutil.

Usage: python benchmarks/bench_corpus_datatrove.py [--chars 50000000] [--tasks 2] [--doc-chars 2000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from knowlm_utils.corpus_datatrove import compare_outputs
from knowlm_utils.corpus_datatrove.synthetic import recall, write_planted_corpus

CHILD = r"""
import json, sys
from knowlm_utils.corpus import CorpusConfig, build
from knowlm_utils.corpus_datatrove import build_distributed
def main():
    cfg = CorpusConfig.from_yaml(sys.argv[1])
    mode, out, tasks = sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "single":
        build(cfg, out)
    else:
        build_distributed(cfg, out, tasks=tasks, keep_work=True)
if __name__ == "__main__":
    main()
"""


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd``; wall time, peak RSS of its largest process and of the whole process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    ps = psutil.Process(proc.pid)
    peak = {"max_process": 0, "tree": 0}
    cpu: dict[int, float] = {}  # last CPU seconds (user + system) seen of every process of the tree
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                procs = [ps] + ps.children(recursive=True)
                rss = []
                for p in procs:
                    try:
                        rss.append(p.memory_info().rss)
                        t = p.cpu_times()
                        cpu[p.pid] = t.user + t.system
                    except psutil.Error:
                        pass
                peak["max_process"] = max(peak["max_process"], max(rss, default=0))
                peak["tree"] = max(peak["tree"], sum(rss))
            except psutil.Error:
                pass
            done.wait(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    done.set()
    th.join()
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {rc}")
    return {"wall_s": time.perf_counter() - t0, "cpu_s": sum(cpu.values()), **peak}


def stage_memory(work: Path) -> dict[str, dict]:
    """Per stage: the largest task's (peak − start RSS) per million documents, and its documents."""
    out = {}
    for stage in ("scan", "exact", "lsh", "decide"):
        rows = [json.loads(p.read_text()) for p in sorted((work / "logs" / stage / "rss").glob("*.json"))]
        if not rows:
            continue
        per_m = [max(r["peak_rss"] - r["start_rss"], 0) / max(r["docs"], 1) * 1e6 for r in rows]
        out[stage] = {"tasks": len(rows), "docs_per_task_max": max(r["docs"] for r in rows),
                      "peak_rss_mb_max": max(r["peak_rss"] for r in rows) / 2**20,
                      "growth_mb_per_m_docs": max(per_m) / 2**20}
    return out


def disk_bytes(work: Path) -> dict[str, int]:
    def size(p: Path) -> int:
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0
    return {"candidates+fingerprints": size(work / "scan" / "candidates") + size(work / "scan" / "fingerprints"),
            "fingerprints": size(work / "scan" / "fingerprints"), "band signatures": size(work / "scan" / "sigs"),
            "exact keys": size(work / "scan" / "exact"), "candidate pairs": size(work / "dups")}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chars", type=int, default=50_000_000, help="characters of original text (default 50 M)")
    p.add_argument("--doc-chars", type=int, default=2000)
    p.add_argument("--files", type=int, default=16)
    p.add_argument("--dup-fraction", type=float, default=0.2, help="planted copies per original document")
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed)")
    args = p.parse_args(argv)

    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="bench-corpus-datatrove-"))
    try:
        docs = max(10, args.chars // args.doc_chars)
        t0 = time.perf_counter()
        cfg, manifest = write_planted_corpus(tmp / "data", docs=docs, doc_chars=args.doc_chars, files=args.files,
                                             dup_fraction=args.dup_fraction, seed=0)
        cfg.shard_max_docs = 20_000
        cfg_path = tmp / "corpus.yaml"
        import yaml

        d = cfg.to_dict()
        d["sources"][0]["path"] = str(tmp / "data" / "raw" / "*.jsonl")
        cfg_path.write_text(yaml.safe_dump(d, allow_unicode=True), "utf-8")
        raw_chars = sum(len(json.loads(x)["text"]) for f in sorted((tmp / "data" / "raw").glob("*.jsonl"))
                        for x in f.read_text("utf-8").splitlines())
        print(f"generated {docs} originals + {len(manifest)} planted copies, {raw_chars / 1e6:.1f} M characters in "
              f"{args.files} files ({time.perf_counter() - t0:.0f} s)")
        child = [sys.executable, "-c", CHILD, str(cfg_path)]
        single = run_measured(child + ["single", str(tmp / "single"), "1"])
        dist = run_measured(child + ["datatrove", str(tmp / "dist"), str(args.tasks)])
        cmp = compare_outputs(tmp / "single", tmp / "dist")
        same_files, same_stats = not cmp["different"], cmp["stats_equal"]
        s2 = json.loads((tmp / "dist" / "stats.json").read_text("utf-8"))
        print(f"\noutputs identical: shards/removed/skipped {same_files}, stats.json (but wall_s) {same_stats}")
        t = s2["totals"]
        print(f"records {t['records']}: kept {t['kept']}, filtered {t['filtered']}, duplicates {t['duplicates']} "
              f"(by rule {s2['sources']['planted']['by_rule']})")
        print(f"\n{'build':28s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MB (largest process)':>30s} "
              f"{'(process tree)':>15s}")
        for name, m in (("single machine, 1 process", single), (f"datatrove local, {args.tasks} tasks", dist)):
            print(f"{name:28s} {m['wall_s']:8.1f} {m['cpu_s']:8.1f} {m['max_process'] / 2**20:30.0f} "
                  f"{m['tree'] / 2**20:15.0f}")
        print(f"ratio datatrove/single: wall {dist['wall_s'] / single['wall_s']:.2f}x, "
              f"CPU {dist['cpu_s'] / single['cpu_s']:.2f}x, "
              f"largest process {dist['max_process'] / single['max_process']:.2f}x")
        r1, r2 = (recall([json.loads(x) for x in (tmp / run / "removed.jsonl").read_text("utf-8").splitlines()],
                         manifest) for run in ("single", "dist"))
        print("\ndedup recall on the planted duplicates (share removed as duplicates):")
        for kind in r1:
            n = sum(m["kind"] == kind for m in manifest)
            print(f"  {kind:6s} {n:6d} planted: single {r1[kind]:.3f}  datatrove {r2[kind]:.3f}")
        work = tmp / "dist.datatrove-work"
        mem = stage_memory(work)
        print("\nmemory of each distributed stage (largest task; growth = peak − RSS at the task's start):")
        for stage, m in mem.items():
            print(f"  {stage:7s} {m['tasks']:3d} tasks, ≤ {m['docs_per_task_max']:8d} docs/task, peak "
                  f"{m['peak_rss_mb_max']:7.0f} MB, growth {m['growth_mb_per_m_docs']:8.0f} MB per million documents")
        n_docs = t["records"]
        print("\nwork-folder bytes per document (all ranks):")
        for k, v in disk_bytes(work).items():
            print(f"  {k:24s} {v / max(n_docs, 1):8.0f} B/doc  ({v / 2**20:.0f} MB)")
        print(json.dumps({"chars": raw_chars, "documents": n_docs, "single": single, "datatrove": dist,
                          "identical": same_files and same_stats, "recall_single": r1, "recall_datatrove": r2,
                          "stage_memory": mem}, default=float))
        if not (same_files and same_stats):
            raise SystemExit("the datatrove build differs from the single-machine build")
    finally:
        if not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
