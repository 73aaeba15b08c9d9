"""The plan of a distributed corpus build: the resolved input files, which rank reads which, the
LSH band layout and the work-folder layout. Written once by the launcher (``plan.json`` in the
work folder) and read by every task, so all ranks on all hosts agree on one file list."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..corpus import CorpusConfig, file_labels, source_files
from ..fileio import read_json, write_json_atomic

PLAN_FILE = "plan.json"
PRODUCER = "knowlm corpus build --executor"


@dataclass
class Plan:
    work_dir: str
    output_dir: str
    tasks: int                  # ranks of the scan stage
    files: list[dict[str, Any]]  # global file list: {"source": index, "path": str, "label": str | None}
    ranks: list[list[int]]      # [first, end) file indices per rank: contiguous, in global order
    bands: int                  # LSH bands (b) and rows per band (r) of datasketch's MinHashLSH
    rows: int
    exact_shards: int
    num_perm: int
    fingerprint: str            # config + files + tasks: a work folder is only resumed by the same run
    started: float              # time.time() of the launch (wall_s of stats.json counts from it)

    # ---- paths in the work folder -------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return Path(self.work_dir).joinpath(*parts)

    def candidates(self, rank: int) -> Path:
        return self.path("scan", "candidates", f"{rank:05d}.jsonl")

    def fingerprints(self, rank: int) -> Path:
        return self.path("scan", "fingerprints", f"{rank:05d}.bin")

    def skipped(self, rank: int) -> Path:
        return self.path("scan", "skipped", f"{rank:05d}.jsonl")

    def removed(self, rank: int) -> Path:
        return self.path("scan", "removed", f"{rank:05d}.jsonl")  # written by datatrove's DiskWriter

    def file_stats(self, rank: int) -> Path:
        return self.path("scan", "files", f"{rank:05d}.json")

    def exact_keys(self, shard: int, rank: int) -> Path:
        return self.path("scan", "exact", f"{shard:05d}", f"{rank:05d}.keys")

    def decisions(self, rank: int) -> Path:
        return self.path("decide", f"{rank:05d}.jsonl")

    def logs(self, stage: str) -> Path:
        return self.path("logs", stage)

    def rank_of_file(self, g: int) -> int:
        for r, (a, b) in enumerate(self.ranks):
            if a <= g < b:
                return r
        raise IndexError(g)


def band_layout(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) that datasketch's ``MinHashLSH(threshold, num_perm)`` picks — the same
    banding the single-machine :class:`~knowlm_utils.dedup.Deduplicator` queries, so the
    distributed candidates are a superset of its candidates."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return int(lsh.b), int(lsh.r)


def make_plan(config: CorpusConfig, out: Path, work_dir: Path, tasks: int) -> Plan:
    """Resolve every source's files and split them over ``tasks`` ranks (contiguous runs of the
    global file list, so each rank's outputs are in document order)."""
    files: list[dict[str, Any]] = []
    stamp = []
    for i, src in enumerate(config.sources):
        paths = source_files(src, config.base_dir)
        labels = file_labels(paths)  # the same document ids as the single-machine build
        for p in paths:
            files.append({"source": i, "path": str(p), "label": labels[str(p)]})
            st = p.stat()
            stamp.append([str(p), st.st_size, st.st_mtime_ns])
    n = len(files)
    ranks = [[r * n // tasks, (r + 1) * n // tasks] for r in range(tasks)]
    d = config.dedup
    bands, rows = band_layout(d.threshold, d.num_perm) if d.near else (0, 0)
    key = json.dumps({"config": config.to_dict(), "files": stamp, "tasks": tasks, "out": str(out)}, sort_keys=True,
                     default=str)
    return Plan(work_dir=str(work_dir), output_dir=str(out), tasks=tasks, files=files, ranks=ranks, bands=bands,
                rows=rows, exact_shards=max(1, tasks) if d.exact else 0, num_perm=d.num_perm,
                fingerprint=hashlib.sha256(key.encode("utf-8")).hexdigest(), started=time.time())


def write_plan(plan: Plan) -> None:
    """Write ``plan.json``; a work folder holding the plan of another run is refused (its
    completion markers would make datatrove skip tasks whose outputs are stale)."""
    path = Path(plan.work_dir) / PLAN_FILE
    if path.exists():
        old = read_json(path)
        if not isinstance(old, dict) or old.get("fingerprint") != plan.fingerprint:
            raise ValueError(f"{plan.work_dir}: this work folder holds a distributed build of another config, file "
                             "list or task count; delete it or choose another with --work-dir")
    elif Path(plan.work_dir).exists() and any(Path(plan.work_dir).iterdir()):
        raise ValueError(f"{plan.work_dir}: the work folder exists, is not empty and holds no {PLAN_FILE}; "
                         "choose another with --work-dir")
    Path(plan.work_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"producer": PRODUCER, **asdict(plan)})


def load_plan(work_dir: str | os.PathLike) -> Plan:
    data = read_json(Path(work_dir) / PLAN_FILE)
    data.pop("producer", None)
    return Plan(**data)
