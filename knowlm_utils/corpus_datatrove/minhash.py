"""Global exact and near dedup across ranks, with the single-machine decisions.

The single-machine :class:`~knowlm_utils.dedup.Deduplicator` keeps the first document of each
group and removes a later one when its normalised-text hash equals a kept one's
(``exact_duplicate``) or when an LSH candidate among the kept documents has an estimated Jaccard
similarity ≥ ``dedup.threshold`` (``near_duplicate``). Its signatures are datasketch MinHashes of
the character ``dedup.ngram``-gram shingles of :func:`~knowlm_utils.dedup.shingles`, banded as
datasketch's ``MinHashLSH(threshold, num_perm)`` bands them. Here:

1. **scan** (one task per rank): the same signatures (``Deduplicator.fingerprint``); each band
   (its ``r`` values + the rank-local document number) goes to datatrove's
   ``bucket_XXX/RANK.minhash.sig`` files, sorted — the layout of datatrove's MinHash stage 1 —;
   each exact key goes to ``exact/SHARD/RANK.keys``, sharded by the key's hash.
2. **lsh** (one task per band): datatrove's ``MinhashDedupBuckets`` unchanged: documents whose band
   values are equal become candidate pairs (the candidates datasketch's LSH would return).
   **exact** (one task per key shard): documents with equal keys become pairs.
3. **decide** (one task): pairs → connected components (a document in no pair has no candidate,
   so it is kept, as on one machine); the components' documents are fed, in document order, to
   the project's ``Deduplicator.check_fingerprint`` with their stored signatures: each candidate
   is verified with the estimated Jaccard of the full signature, against the documents *kept*
   so far, so chains (B near A, C near B but not A) end as on one machine. Components do not
   interact, so the deduplicator is restarted between batches of components to bound memory.

Unlike datatrove's stage 3 (which clusters candidates without verifying them and keeps one
document per cluster), nothing is removed without a verified similarity.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
from datatrove.utils.hashing import HashConfig

from ..corpus import CorpusConfig
from ..fileio import atomic_open, write_json_atomic
from .blocks import doc_id, fingerprint_dtype
from .plan import Plan, load_plan

MAX_BAND_VALUE = 2**32 - 2  # datatrove reads a bucket up to (excluding) 2**32-1: clamp (only adds candidates)
DECIDE_BATCH = 100_000  # documents per Deduplicator (≈ 4.5 KB each), restarted at a component boundary


def sig_folder(plan: Plan) -> Path:
    return plan.path("scan", "sigs")


def minhash_config(plan: Plan, config: CorpusConfig) -> MinhashConfig:
    """datatrove's MinHash layout for the project's banding: ``b`` buckets of ``r`` 32-bit values."""
    return MinhashConfig(n_grams=config.dedup.ngram, num_buckets=plan.bands, hashes_per_bucket=plan.rows,
                         seed=config.dedup.seed, hash_config=HashConfig(precision=32, hash_fc="xxhash"))


def band_dtype(rows: int) -> np.dtype:
    return np.dtype([(f"field{i + 1}", "<u4") for i in range(rows)] + [(f"field{rows + 1}", "<u4")])


def record_rss(plan: Plan, stage: str, rank: int, start_rss: int, docs: int) -> None:
    """Peak RSS of the task (for the memory figures of the benchmark and the README)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    write_json_atomic(plan.path("logs", stage, "rss", f"{rank:05d}.json"),
                      {"start_rss": start_rss, "peak_rss": peak, "docs": docs}, indent=None)


def current_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class BandWriter:
    """Band signatures of one rank: appended unsorted while the rank streams, then each bucket
    file is sorted in turn (memory: one bucket, ``4 (r + 1)`` bytes per document)."""

    CHUNK = 4096

    def __init__(self, plan: Plan, rank: int):
        self.plan, self.rank = plan, rank
        self.b, self.r = plan.bands, plan.rows
        self.paths = [sig_folder(plan) / f"bucket_{i:03d}" / f"{rank:05d}.minhash.sig" for i in range(self.b)]
        for p in self.paths:
            p.parent.mkdir(parents=True, exist_ok=True)
        self.raw = [open(p.with_suffix(".unsorted"), "wb") for p in self.paths]
        self.buf = np.zeros((self.CHUNK, self.b, self.r + 1), dtype="<u4")
        self.n = 0

    def add(self, hashvalues: np.ndarray, idx: int) -> None:
        bands = np.minimum(hashvalues[: self.b * self.r], MAX_BAND_VALUE).reshape(self.b, self.r)
        self.buf[self.n, :, : self.r] = bands
        self.buf[self.n, :, self.r] = idx
        self.n += 1
        if self.n == self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        for i, fh in enumerate(self.raw):
            fh.write(np.ascontiguousarray(self.buf[: self.n, i, :]).tobytes())
        self.n = 0

    def finish(self) -> None:
        self._flush()
        dtype = band_dtype(self.r)
        for fh, path in zip(self.raw, self.paths):
            fh.close()
            raw = path.with_suffix(".unsorted")
            records = np.fromfile(raw, dtype=dtype)
            records.sort(order=dtype.names)
            with atomic_open(path, "wb") as out:
                out.write(records.tobytes())
            raw.unlink()


class LshBuckets(MinhashDedupBuckets):
    """datatrove's MinHash stage 2 (candidate pairs per band), recording the task's peak RSS."""

    def __init__(self, plan: Plan, config: CorpusConfig):
        super().__init__(input_folder=str(sig_folder(plan)), output_folder=str(plan.path("dups", "lsh")),
                         config=minhash_config(plan, config))
        self.work_dir = plan.work_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
        start = current_rss()
        super().run(data, rank, world_size)
        plan = load_plan(self.work_dir)
        docs = sum(p.stat().st_size for p in (sig_folder(plan) / f"bucket_{rank:03d}").glob("*.minhash.sig"))
        record_rss(plan, "lsh", rank, start, docs // band_dtype(plan.rows).itemsize)


class ExactDupPairs(PipelineStep):
    """One task per exact-key shard: every rank's keys of the shard, sorted; documents with equal
    keys are written as pairs (datatrove's ``.dups`` format: rank, doc, rank, doc)."""

    type = "🫂 - DEDUP"
    name = "knowlm exact-key shard"
    DTYPE = np.dtype([("k0", "<u8"), ("k1", "<u8"), ("rank", "<u4"), ("doc", "<u4")])

    def __init__(self, work_dir: str):
        super().__init__()
        self.work_dir = work_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        start = current_rss()
        plan = load_plan(self.work_dir)
        shard_dir = plan.exact_keys(rank, 0).parent
        parts = [np.fromfile(p, dtype=self.DTYPE) for p in sorted(shard_dir.glob("*.keys"))]
        keys = np.concatenate(parts) if parts else np.zeros(0, dtype=self.DTYPE)
        keys.sort(order=["k0", "k1", "rank", "doc"])
        same = (keys["k0"][1:] == keys["k0"][:-1]) & (keys["k1"][1:] == keys["k1"][:-1])
        a, b = keys[:-1][same], keys[1:][same]
        pairs = np.stack([a["rank"], a["doc"], b["rank"], b["doc"]], axis=1).astype("<u4")
        with atomic_open(plan.path("dups", "exact", f"{rank:05d}.dups"), "wb") as fh:
            fh.write(pairs.tobytes())
        self.stat_update("exact_pairs", value=len(pairs))
        record_rss(plan, "exact", rank, start, len(keys))
        return
        yield


class DedupDecide(PipelineStep):
    """One task: candidate pairs → components → the project's Deduplicator, in document order
    (see the module docstring). Writes ``decide/RANK.jsonl`` rows ``[doc, rule, dup_of]``."""

    type = "🫂 - DEDUP"
    name = "knowlm dedup decisions"

    def __init__(self, config: CorpusConfig, work_dir: str):
        super().__init__()
        self.config, self.work_dir = config, work_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from datasketch import LeanMinHash
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        from ..dedup import Deduplicator

        start = current_rss()
        plan = load_plan(self.work_dir)
        cfg = self.config.dedup
        pair_files = sorted(plan.path("dups").glob("*/*.dups"))
        pairs = [np.fromfile(p, dtype="<u4").reshape(-1, 4) for p in pair_files]
        pairs = np.concatenate(pairs) if pairs else np.zeros((0, 4), dtype="<u4")
        sentinel = 2**32 - 1  # datatrove's marker for a match against an index (none here)
        pairs = pairs[(pairs[:, 0] != sentinel) & (pairs[:, 2] != sentinel)]
        a = (pairs[:, 0].astype(np.uint64) << np.uint64(32)) | pairs[:, 1].astype(np.uint64)
        b = (pairs[:, 2].astype(np.uint64) << np.uint64(32)) | pairs[:, 3].astype(np.uint64)
        nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        decisions: dict[int, list] = {r: [] for r in range(plan.tasks)}
        if len(nodes):
            n = len(nodes)
            graph = coo_matrix((np.ones(len(a), dtype=np.int8), (inverse[: len(a)], inverse[len(a):])), shape=(n, n))
            _, label = connected_components(graph, directed=False)
            node_rank = (nodes >> np.uint64(32)).astype(np.int64)
            node_doc = (nodes & np.uint64(0xFFFFFFFF)).astype(np.int64)
            dtype = fingerprint_dtype(plan.num_perm if cfg.near else 0)
            recs = np.zeros(n, dtype=dtype)
            for r in np.unique(node_rank):
                sel = np.nonzero(node_rank == r)[0]
                fps = np.memmap(plan.fingerprints(int(r)), dtype=dtype, mode="r")
                recs[sel] = fps[node_doc[sel]]
                del fps
            # document order, then components contiguous (each in document order)
            pos = np.empty(n, dtype=np.int64)
            pos[np.lexsort((recs["line"], recs["g"]))] = np.arange(n)
            first = np.full(label.max() + 1, n, dtype=np.int64)
            np.minimum.at(first, label, pos)
            order = np.lexsort((pos, first[label]))
            names = [s.name for s in self.config.sources]
            dedup, held = Deduplicator(cfg), 0
            scheme = dedup.signature("scheme of the signatures").scheme if cfg.near else None
            for k, i in enumerate(order):
                if held >= DECIDE_BATCH and label[i] != label[order[k - 1]]:
                    dedup, held = Deduplicator(cfg), 0
                rec = recs[i]
                f = plan.files[int(rec["g"])]
                did = doc_id(names[f["source"]], f["label"], int(rec["line"]))
                key = rec["key"].tobytes() if cfg.exact else None
                sig = (LeanMinHash(seed=cfg.seed, hashvalues=rec["hv"].astype(np.uint64), scheme=scheme)
                       if cfg.near else None)
                found = dedup.check_fingerprint(did, key, sig)
                held += 1
                if found is not None:
                    decisions[int(node_rank[i])].append([int(node_doc[i]), found[0], found[1]])
            self.stat_update("components", value=int(label.max()) + 1)
        for r, rows in decisions.items():
            rows.sort()
            with atomic_open(plan.decisions(r), "w") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.stat_update("removed", value=len(rows))
        record_rss(plan, "decide", rank, start, len(nodes))
        return
        yield


__all__ = ["BandWriter", "LshBuckets", "ExactDupPairs", "DedupDecide", "minhash_config"]
