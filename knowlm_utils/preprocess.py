"""Stage 04 — preprocessing: cleaned corpus shards → sentences → greedy chunks → token ids →
a memory-mapped token index (``train`` and ``valid``) with typed ranges and a JSON manifest.

One call, :func:`main`, serves the notebook, ``knowlm preprocess CONFIG.yaml`` and a cluster
job. It streams: documents are read lazily, tokenized and chunked in worker processes in
batches, and written in corpus order by one :class:`~knowlm_utils.index.MMapTokenIndexWriter`
per split. At most ``2 × workers + 2`` batches are in flight, so memory stays constant whatever
the corpus size (the pool never reads ahead of the writer), and the output is byte-identical
for any number of workers.

Types: every source belongs to one *type* (by default its language: zh, en, code, mixed).
Types are written as contiguous ranges, recorded in the manifest, so the pretraining sampler
can draw each batch from the types in fixed proportions (KnowLM's per-batch mixing).

Output: ``train.*`` and ``valid.*`` are committed as ONE unit. Both are written into a new
hidden folder beside ``output_dir`` (``.NAME.building-PID-*``), which then replaces
``output_dir`` whole (:func:`~knowlm_utils.fileio.replace_dir`, marked with
``.knowlm-output.json``). A run killed at any point leaves either the previous index (train and
valid) or the new one, never a mix; killed between ``replace_dir``'s two renames, the previous
folder waits beside as ``.NAME.old-PID`` and the next run puts it back first
(:func:`~knowlm_utils.fileio.restore_interrupted_replace`; where the system can swap two folders
atomically there is no such moment); the next run removes the leftovers. Because the folder is
replaced whole, ``output_dir`` must be new, empty or written by knowlm (``overwrite`` /
``--overwrite`` for any other folder), and never the current folder or one holding the corpus,
the tokenizer or the config.
"""

from __future__ import annotations

import collections
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from . import __version__
from .config import Overrides, StageConfig, field, stage_command
from .corpus import cleaned_sources, is_heldout
from .fileio import check_output_dir, remove_stale_temp, replace_dir, restore_interrupted_replace, temp_dir_beside
from .workers import effective_workers, process_pool

SPLITS = ("train", "valid")
# an index folder written before outputs carried the ownership marker (notebook 04 also put its
# all/legacy/imported demos there): still recognised as written by knowlm
LEGACY_ENTRIES = (r"(train|valid|all|legacy|imported)\.(bin|idx|manifest\.json)",)


@dataclass
class PreprocessConfig(StageConfig):
    """Stage 04: cleaned corpus → sentences → greedy chunks → train/valid mmap token index."""

    corpus_dir: str = field(help="a cleaned corpus built by stage 01 (`knowlm corpus build`)")
    tokenizer: str = field(help="SentencePiece model: a tokenizer folder holding tokenizer.model, or the "
                                ".model file itself (e.g. a real LLaMA tokenizer.model)")
    output_dir: str = field("index", help="where train.{bin,idx,manifest.json} and valid.* are written (the "
                                          "folder is replaced whole, train and valid together)")
    overwrite: bool = field(False, help="replace output_dir even if knowlm did not write it (no .knowlm-output.json "
                                        "inside); never a file, the current folder or one holding the inputs")
    seq_length: int = field(1024, ge=2, help="maximum tokens per sample, BOS/EOS included (KnowLM: 1024)")
    strategy: str = field("knowlm", choices=("knowlm", "disjoint"),
                          help="'knowlm' (greedy, extends samples backward; may overlap) or 'disjoint' (forward "
                               "fill only)")
    add_bos: bool = field(True, help="BOS at the start of every document (only there)")
    add_eos: bool = field(True, help="EOS at the end of every document (only there)")
    types: dict[str, list[str]] = field(default_factory=dict, help="type name -> source names, written in "
                                        "this order; empty: one type per source language, in corpus order")
    languages: dict[str, str] = field(default_factory=dict, help="source -> splitter language override "
                                      "(default: the source's language from the corpus stats)")
    valid_percent: float = field(1.0, ge=0, lt=100, help="percent of documents held out into valid.* (same "
                                 "stable hash as the tokenizer's held-out set; 0 writes an empty valid index)")
    workers: int = field(1, ge=1, help="tokenizer/chunker processes, at most the CPU count unless "
                                       "allow_oversubscribe; output is identical for any number")
    allow_oversubscribe: bool = field(False, help="start all `workers` even when there are fewer CPUs")
    batch_docs: int = field(64, ge=1, help="documents per task sent to a worker")
    rank: int = field(0, ge=0, help="this process's share of the corpus when `world` > 1: documents "
                                    "[rank*n/world, (rank+1)*n/world) of every source (n = its document count)")
    world: int = field(1, ge=1, help="number of ranks (machines or cluster tasks) sharing the corpus; with "
                                     "world > 1 the output goes to OUTPUT_DIR.rank-RRRRR-of-NNNNN and `knowlm index "
                                     "merge OUT OUTPUT_DIR.rank-*` joins the ranks into the bytes of a world-1 run")
    max_docs_per_source: int | None = field(None, ge=0, help="read at most this many documents per source "
                                                             "(smoke runs)")
    verify: bool = field(False, help="check every sample against a direct encoding of its text (slow)")
    progress: bool = field(True, help="show a progress bar")

    def validate(self) -> None:
        if self.rank >= self.world:
            raise ValueError(f"rank {self.rank} is out of range for world {self.world} (ranks are 0..{self.world - 1})")
        if self.seq_length < 2 + int(self.add_bos) + int(self.add_eos):
            raise ValueError(f"seq_length {self.seq_length} is too small for BOS/EOS and one token of text")
        seen: dict[str, str] = {}
        for t, names in self.types.items():
            for n in names:
                if n in seen:
                    raise ValueError(f"types: source {n!r} is listed under two types: {seen[n]!r} and {t!r}")
                seen[n] = t


def load_preprocess_config(path: str | os.PathLike, overrides: Overrides = None) -> PreprocessConfig:
    """``PreprocessConfig.from_yaml``: relative paths in the file are taken from its folder."""
    return PreprocessConfig.from_yaml(path, overrides)


def plan_types(config: PreprocessConfig) -> list[tuple[str, str, str]]:
    """``[(type, source, splitter language)]`` in writing order; every corpus source is
    assigned (a corpus source missing from an explicit ``types`` table is an error, so no
    source is dropped by a typo)."""
    sources = cleaned_sources(config.path(config.corpus_dir))
    unknown = sorted({n for names in config.types.values() for n in names} - set(sources))
    if unknown:
        raise ValueError(f"types name source(s) {unknown} that the corpus does not have; it has {sorted(sources)}")
    if config.types:
        missing = sorted(set(sources) - {n for names in config.types.values() for n in names})
        if missing:
            raise ValueError(f"corpus source(s) {missing} are in no type; add them to `types` "
                             f"(types: {sorted(config.types)})")
        order = [(t, n) for t, names in config.types.items() for n in names]
    else:
        by_lang: dict[str, list[str]] = collections.defaultdict(list)
        for n, info in sources.items():
            by_lang[info["language"]].append(n)
        order = [(lang, n) for lang, names in by_lang.items() for n in names]
    return [(t, n, config.languages.get(n, sources[n]["language"])) for t, n in order]


# ------------------------------------------------------------------------ worker side ------
_CHUNKER = None


def _init_worker(model_path: str, seq_length: int, strategy: str, add_bos: bool, add_eos: bool,
                 verify: bool, valid_percent: float = 0.0) -> None:
    global _CHUNKER
    from .chunking import DocumentChunker

    _CHUNKER = (DocumentChunker(model_path, seq_length, strategy, add_bos, add_eos), verify, model_path,
                valid_percent)


def _chunk_task(task: tuple) -> tuple[str, str, int, dict[str, tuple]]:
    """One batch of raw shard lines → per split ``(tokens, sample sizes, samples per document,
    counts)``, ready for :meth:`~knowlm_utils.index.MMapTokenIndexWriter.add_documents_flat`.

    The worker parses the JSON (an error names the shard and line), decides the split and
    chunks, so the main process only reads bytes and writes arrays."""
    import json

    from .chunking import verify_samples

    type_name, source, lang, shard, first_line, lines = task
    chunker, verify, model_path, valid_percent = _CHUNKER
    parts: dict[str, tuple[list, list, list]] = {s: ([], [], []) for s in SPLITS}
    counts = {s: _new_counts() for s in SPLITS}
    for k, raw in enumerate(lines):
        line_no = first_line + k
        try:
            row = json.loads(raw)
        except UnicodeDecodeError:
            raise ValueError(f"{shard}:{line_no}: not valid UTF-8") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{shard}:{line_no}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ValueError(f"{shard}:{line_no}: expected an object with a string 'text'")
        text = row["text"]
        split = "valid" if is_heldout(str(row.get("id", "")), valid_percent) else "train"
        if verify:
            samples = chunker.chunk(text, lang)
            verify_samples(chunker, text, samples)
            if samples:
                flat = np.concatenate([smp.ids for smp in samples]).astype(np.int32, copy=False)
                lengths = np.array([len(smp.ids) for smp in samples], np.int64)
                flags = np.array([int(smp.bos) | 2 * int(smp.eos) for smp in samples], np.uint8)
            else:
                flat, lengths, flags = np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.uint8)
        else:
            flat, lengths, flags = chunker.chunk_flat(text, lang)
        c = counts[split]
        c["documents"] += 1
        c["chars"] += len(text)
        n = len(lengths)
        if n == 0:
            c["empty_documents"] += 1   # counted, never silently dropped
            continue
        ids, sizes, per_doc = parts[split]
        ids.append(flat)
        sizes.append(lengths)
        per_doc.append(n)
        c["samples"] += n
        c["tokens"] += int(flat.size)
        c["samples_with_bos"] += int(np.count_nonzero(flags & 1))
        c["samples_with_eos"] += int(np.count_nonzero(flags & 2))
        c["single_sample_documents"] += int(n == 1)
    out = {}
    for split, (ids, sizes, per_doc) in parts.items():
        if per_doc:
            out[split] = (np.concatenate(ids), np.concatenate(sizes), np.asarray(per_doc, np.int64), counts[split])
        else:
            out[split] = (None, None, None, counts[split])
    return type_name, source, len(lines), out


# ------------------------------------------------------------------------ main side --------
def _line_count(path: Path) -> int:
    """Lines of a shard, from its bytes (no decoding): what ``for line in file`` yields."""
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(16 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def rank_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """Documents ``[lo, hi)`` of a source of ``n`` documents that ``rank`` of ``world`` takes:
    contiguous, in order, balanced to one document; the last rank also takes anything past
    ``n`` (a source whose stats undercount), so the ranks always cover the whole source."""
    lo, hi = rank * n // world, (rank + 1) * n // world
    return lo, (hi if rank < world - 1 else 1 << 62)


def _source_documents(config: PreprocessConfig, info: dict) -> int:
    """Documents of a source as every rank counts them: stats.json's count, else the lines of
    its shards; capped by ``max_docs_per_source``."""
    n = info.get("documents")
    if not isinstance(n, int) or n < 0:
        n = sum(_line_count(p) for p in info["shards"])
    return n if config.max_docs_per_source is None else min(n, config.max_docs_per_source)


def _rank_ranges(config: PreprocessConfig, plan, sources: dict) -> dict[str, tuple[int, int]]:
    """``{source: (lo, hi)}`` of this rank. A TYPE's documents (its sources one after the other)
    are split into ``world`` contiguous ranges, so that joining the ranks type by type gives the
    single run's order. Documents past a source's counted end (stats that undercount) go to the
    rank that holds the source's last counted document, so no document is lost or reordered."""
    if config.world == 1:
        return {n: (0, 1 << 62) for _, n, _ in plan}
    by_type: dict[str, list[str]] = collections.defaultdict(list)
    for t, n, _ in plan:
        by_type[t].append(n)
    out = {}
    for t, names in by_type.items():
        counts = [_source_documents(config, sources[n]) for n in names]
        total = sum(counts)
        lo, hi = rank_range(total, config.rank, config.world)
        off = 0
        for n, c in zip(names, counts):
            tail = min(off + c - 1 if c else off, max(total - 1, 0))
            owns_tail = lo <= tail < hi
            out[n] = (min(max(lo - off, 0), c), 1 << 62 if owns_tail else min(max(hi - off, 0), c))
            off += c
    return out


def _tasks(config: PreprocessConfig, plan, ranges: dict[str, tuple[int, int]]) -> Iterator[tuple]:
    """Batches of raw shard lines in corpus order: ``(type, source, lang, shard, first line,
    [lines])``. Only this rank's document range of each source is read; shards wholly before
    it are passed over by counting their lines."""
    sources = cleaned_sources(config.path(config.corpus_dir))
    cap = config.max_docs_per_source
    for type_name, source, lang in plan:
        lo, hi = ranges[source]
        if cap is not None:
            hi = min(hi, cap)
        pos = 0  # documents of the source before the current line
        for shard in sources[source]["shards"]:
            if pos >= hi:
                break
            if lo > pos:
                n = _line_count(shard)
                if pos + n <= lo:
                    pos += n
                    continue
            batch, first = [], None
            with open(shard, "rb") as fh:
                for line_no, line in enumerate(fh, 1):
                    if pos >= hi:
                        break
                    pos += 1
                    if pos <= lo:
                        continue
                    if first is None:
                        first = line_no
                    batch.append(line)
                    if len(batch) >= config.batch_docs:
                        yield type_name, source, lang, str(shard), first, batch
                        batch, first = [], None
            if batch:
                yield type_name, source, lang, str(shard), first, batch


def _new_counts() -> dict[str, int]:
    return {"documents": 0, "samples": 0, "tokens": 0, "chars": 0, "empty_documents": 0,
            "samples_with_bos": 0, "samples_with_eos": 0, "single_sample_documents": 0}


def rank_output_dir(output_dir: str | os.PathLike, rank: int, world: int) -> Path:
    """Where rank ``rank`` of ``world`` writes: ``OUTPUT_DIR`` itself for ``world == 1``, else
    the sibling folder ``OUTPUT_DIR.rank-RRRRR-of-NNNNN``."""
    out = Path(output_dir)
    return out if world == 1 else out.with_name(f"{out.name}.rank-{rank:05d}-of-{world:05d}")


def preprocess_rank(config: PreprocessConfig, rank: int, world: int,
                    output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run rank ``rank`` of ``world`` (its contiguous share of every source, see
    :func:`rank_range`) into ``output_dir`` (default: :func:`rank_output_dir`). Deterministic
    for any ``world``; :func:`merge_ranks` (``knowlm index merge``) joins the ``world`` outputs
    into the same ``.bin``/``.idx`` bytes as a ``world=1`` run. The API for cluster executors."""
    if (config.rank, config.world) != (rank, world):
        config = PreprocessConfig.load(config, [f"rank={rank}", f"world={world}"])
    return build(config, output_dir)


def build(config: PreprocessConfig, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run the stage; returns ``{"train": manifest, "valid": manifest, "wall_s": ...}``.

    ``train`` and ``valid`` are written into a new hidden folder beside the output folder and
    swapped in together at the end (see the module docstring). With ``config.world > 1`` only
    this rank's share is processed, into :func:`rank_output_dir` unless ``output_dir`` is given.

    The main process only reads raw lines and writes arrays; JSON parsing, the held-out split,
    tokenizing and chunking run in the workers (in this process for ``workers: 1``), with a
    bounded window of batches in flight, so reading, chunking and writing overlap."""
    from .index import MMapTokenIndexWriter
    from . import spm

    out = Path(output_dir) if output_dir else rank_output_dir(config.path(config.output_dir), config.rank,
                                                              config.world)
    model_path = config.path(config.tokenizer)
    sp = spm.load_processor(model_path)
    model_file = spm.model_file(model_path)
    out = out.expanduser().resolve()
    restore_interrupted_replace(out)
    protected = [config.path(config.corpus_dir), model_file] + ([config.base_dir] if config.base_dir else [])
    out = check_output_dir(out, overwrite=config.overwrite, protected=protected, legacy_names=LEGACY_ENTRIES)
    remove_stale_temp(out)
    plan = plan_types(config)
    sources = cleaned_sources(config.path(config.corpus_dir))
    ranges = _rank_ranges(config, plan, sources)
    workers = effective_workers(config.workers, config.allow_oversubscribe)
    t0 = time.perf_counter()
    counts = {s: collections.defaultdict(_new_counts) for s in SPLITS}
    init_args = (str(model_file), config.seq_length, config.strategy, config.add_bos, config.add_eos, config.verify,
                 config.valid_percent)
    pool = None
    total_docs = _planned_documents(config, plan) if config.world == 1 else None
    tmp = temp_dir_beside(out)
    writers: dict[str, Any] = {}
    bar = tqdm(total=total_docs, unit="doc", desc="preprocess", disable=not config.progress)
    try:
        writers = {s: MMapTokenIndexWriter(tmp / s, sp.vocab_size()) for s in SPLITS}
        if workers > 1:
            pool = process_pool(workers, _init_worker, init_args)
        else:
            _init_worker(*init_args)
        for type_name, source, n_docs, result in _ordered_results(config, plan, ranges, pool, workers):
            _write_batch(writers, counts, type_name, source, result)
            bar.update(n_docs)
        wall = time.perf_counter() - t0
        rank_info = None if config.world == 1 else {
            "rank": config.rank, "world": config.world, "plan": [[t, n] for t, n, _ in plan],
            "documents": {n: [lo, lo + sum(counts[s][n]["documents"] for s in SPLITS if n in counts[s])]
                          for n, (lo, hi) in ranges.items()}}
        manifests = {}
        for split, writer in writers.items():
            extra = _manifest_extra(config, split, sp, model_file, spm.sha256(model_file), counts[split], wall)
            if rank_info is not None:
                extra["rank"] = rank_info
            manifests[split] = writer.finalize(extra)
        if pool is not None:
            pool.terminate()
            pool = None
        replace_dir(tmp, out, producer="knowlm preprocess")  # train + valid: one commit
    except BaseException:
        for writer in writers.values():
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        restore_interrupted_replace(out)  # replace_dir failed after moving the old folder aside
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    return {**manifests, "wall_s": round(time.perf_counter() - t0, 3), "output_dir": str(out)}


def _planned_documents(config: PreprocessConfig, plan) -> int | None:
    """Documents to process, from the corpus's stats.json (no pass over terabytes to count)."""
    sources = cleaned_sources(config.path(config.corpus_dir))
    counts = [sources[n].get("documents") for _, n, _ in plan]
    if any(c is None for c in counts):
        return None
    cap = config.max_docs_per_source
    return sum(c if cap is None else min(c, cap) for c in counts)


def _ordered_results(config: PreprocessConfig, plan, ranges, pool, workers: int) -> Iterator:
    """Yield chunked batches in corpus order with a bounded window of batches in flight
    (``imap`` would read the whole corpus ahead into its task queue)."""
    if pool is None:
        for task in _tasks(config, plan, ranges):
            yield _chunk_task(task)
        return
    window: collections.deque = collections.deque()
    limit = 2 * workers + 2
    for task in _tasks(config, plan, ranges):
        window.append(pool.apply_async(_chunk_task, (task,)))
        while len(window) >= limit:
            yield window.popleft().get()
    while window:
        yield window.popleft().get()


def _write_batch(writers, counts, type_name: str, source: str, result: dict[str, tuple]) -> None:
    for split, (flat, sizes, per_doc, batch_counts) in result.items():
        if not batch_counts["documents"]:
            continue
        c = counts[split][source]
        c["type"] = type_name
        for k, v in batch_counts.items():
            c[k] += v
        if per_doc is not None:  # documents without samples are counted above, never written
            writers[split].add_documents_flat(flat, sizes, per_doc, type=type_name)


def _manifest_extra(config, split, sp, model_file: Path, sha: str, counts, wall: float) -> dict[str, Any]:
    sources = {name: dict(c) for name, c in counts.items()}
    totals = {k: sum(c[k] for c in sources.values()) for k in _new_counts()}
    return {
        "split": split,
        "tokenizer": {"path": str(model_file), "sha256": sha, "vocab_size": sp.vocab_size(),
                      "bos_id": sp.bos_id(), "eos_id": sp.eos_id()},
        "seq_length": config.seq_length,
        "strategy": config.strategy,
        "valid_percent": config.valid_percent,
        "sources": sources,
        "bos_eos": {k: totals[k] for k in ("documents", "samples_with_bos", "samples_with_eos",
                                           "single_sample_documents", "empty_documents")},
        "chars": totals["chars"],
        "created": {"args": config.to_dict(), "knowlm_course_version": __version__,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_s": round(wall, 3)},
    }


def _rank_manifest(folder: Path) -> dict[str, Any]:
    from .index import read_manifest

    path = folder / "train.manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not the output of `knowlm preprocess`")
    m = read_manifest(folder / "train")
    if isinstance(m, dict) and "rank" not in m and isinstance(m.get("sources"), dict) and "merge" not in m:
        # a world-1 run (no rank entry): rank 0 of 1, its plan read back from the per-source counts
        valid = read_manifest(folder / "valid") or {}
        names = dict.fromkeys([*m["sources"], *valid.get("sources", {})])
        types = {**{n: c.get("type") for n, c in valid.get("sources", {}).items()},
                 **{n: c.get("type") for n, c in m["sources"].items()}}
        return {**m, "rank": {"rank": 0, "world": 1, "plan": [[types[n], n] for n in names]}}
    if not isinstance(m, dict) or not isinstance(m.get("rank"), dict):
        raise ValueError(f"{folder}: not the output of a rank (`knowlm preprocess --rank R --world N` with N > 1); "
                         "merge index prefixes instead (knowlm index merge OUT PREFIX...)")
    return m


def merge_ranks(rank_dirs: list[str | os.PathLike], output_dir: str | os.PathLike, progress: bool = False,
                overwrite: bool = False) -> dict[str, Any]:
    """Join the outputs of ``knowlm preprocess --rank r --world N`` (all N folders, in any order)
    into ``output_dir``: ``train`` and ``valid`` hold the same ``.bin``/``.idx`` bytes as one
    ``world: 1`` run over the same documents, and the manifests the same counts (plus a
    ``merge`` entry naming the inputs). Every input is verified first; the folder is committed
    as one unit, like a preprocess output. Returns ``{"train": manifest, "valid": manifest}``."""
    from .index import merge_indexes

    dirs = [Path(d).expanduser().resolve() for d in rank_dirs]
    if not dirs:
        raise ValueError("merge_ranks needs the output folders of the ranks")
    manifests = [_rank_manifest(d) for d in dirs]
    world = manifests[0]["rank"]["world"]
    by_rank: dict[int, tuple[Path, dict]] = {}
    for d, m in zip(dirs, manifests):
        info = m["rank"]
        if info.get("world") != world:
            raise ValueError(f"{d}: rank {info.get('rank')} of world {info.get('world')}, but {dirs[0]} is of world "
                             f"{world}; merge the ranks of one run")
        if info.get("rank") in by_rank:
            raise ValueError(f"rank {info.get('rank')} is given twice: {by_rank[info['rank']][0]} and {d}")
        by_rank[info["rank"]] = (d, m)
    missing = sorted(set(range(world)) - set(by_rank))
    if missing:
        raise ValueError(f"ranks {missing} of world {world} are missing; pass all {world} rank folders")
    ordered = [by_rank[r] for r in range(world)]
    first = ordered[0][1]
    same = ("seq_length", "strategy", "valid_percent")
    for d, m in ordered[1:]:
        for key in same:
            if m.get(key) != first.get(key):
                raise ValueError(f"{d}: {key} {m.get(key)!r} differs from rank 0's {first.get(key)!r}")
        if m["rank"].get("plan") != first["rank"].get("plan"):
            raise ValueError(f"{d}: its types/sources differ from rank 0's; merge the ranks of one run")
    plan = [tuple(x) for x in first["rank"]["plan"]]
    type_order = list(dict.fromkeys(t for t, _ in plan))
    out = Path(output_dir).expanduser().resolve()
    restore_interrupted_replace(out)
    out = check_output_dir(out, overwrite=overwrite, protected=dirs, legacy_names=LEGACY_ENTRIES)
    remove_stale_temp(out)
    tmp = temp_dir_beside(out)
    result: dict[str, Any] = {}
    try:
        for split in SPLITS:
            split_manifests = [_rank_split_manifest(d, split) for d, _ in ordered]
            sources: dict[str, dict[str, Any]] = {}
            for _, n in plan:  # the single run's order: corpus order of the sources with documents here
                parts = [m["sources"][n] for m in split_manifests if n in m.get("sources", {})]
                if parts:
                    sources[n] = {"type": parts[0]["type"],
                                  **{k: sum(int(c[k]) for c in parts) for k in _new_counts()}}
            totals = {k: sum(c[k] for c in sources.values()) for k in _new_counts()}
            created = dict(first.get("created", {}))
            created.update({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "knowlm_course_version": __version__,
                            "merged_ranks": [str(d) for d, _ in ordered]})
            extra = {"split": split, "tokenizer": first.get("tokenizer"), "seq_length": first.get("seq_length"),
                     "strategy": first.get("strategy"), "valid_percent": first.get("valid_percent"),
                     "sources": sources,
                     "bos_eos": {k: totals[k] for k in ("documents", "samples_with_bos", "samples_with_eos",
                                                        "single_sample_documents", "empty_documents")},
                     "chars": totals["chars"], "created": created}
            result[split] = merge_indexes([d / split for d, _ in ordered], tmp / split, typed=True,
                                          type_order=type_order, manifest_extra=extra, progress=progress)
        replace_dir(tmp, out, producer="knowlm index merge (preprocess ranks)")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        restore_interrupted_replace(out)
        raise
    return result


def _rank_split_manifest(folder: Path, split: str) -> dict[str, Any]:
    from .index import read_manifest

    m = read_manifest(folder / split)
    if not isinstance(m, dict) or not isinstance(m.get("sources"), dict):
        raise ValueError(f"{folder / split}.manifest.json: no per-source counts; not a preprocess output")
    return m


def main(config: PreprocessConfig | str | os.PathLike, overrides: Overrides = None) -> dict[str, Any]:
    """Entry point shared by the CLI, scripts and notebooks: a config object or a YAML path,
    plus ``key=value`` overrides (``output_dir=...`` picks the output folder)."""
    return build(PreprocessConfig.load(config, overrides))


# ----------------------------------------------------------------------------- CLI --------
def add_cli(subparsers) -> None:
    """``knowlm preprocess CONFIG.yaml --out DIR``."""
    p = stage_command(subparsers.add_parser("preprocess", help="stage 04: cleaned corpus -> chunked mmap token index"),
                      PreprocessConfig, "configs/preprocess/sample.yaml", "seq_length=2048", _cli_preprocess,
                      shortcuts={"--workers": ("workers", int, "worker processes"),
                                 "--rank": ("rank", int, "this rank (0..world-1); see --world"),
                                 "--world": ("world", int, "ranks sharing the corpus: each writes "
                                             "OUTPUT_DIR.rank-RRRRR-of-NNNNN; join them with `knowlm index merge "
                                             "OUT OUTPUT_DIR.rank-*` (same bytes as one run)")})
    p.add_argument("--overwrite", action="store_const", const="true", dest="config_shortcut_overwrite",
                   help="replace the output folder even if knowlm did not write it (= -o overwrite=true)")


def _cli_preprocess(config: PreprocessConfig) -> int:
    result = build(config)
    for split in SPLITS:
        m = result[split]
        print(f"{split}: {m['num_documents']} documents -> {m['num_samples']} samples, {m['num_tokens']} tokens "
              f"({m['dtype']})")
        for name, t in m.get("types", {}).items():
            (a, b) = t["samples"]
            print(f"  {name:8s} {b - a:8d} samples [{a}, {b})  {t['tokens']:12,d} tokens")
    print(f"wrote {result['output_dir']}/{{train,valid}}.{{bin,idx,manifest.json}} in {result['wall_s']:.1f} s"
          + (f" (rank {config.rank} of {config.world}; join the ranks with `knowlm index merge OUT "
             f"{rank_output_dir(config.path(config.output_dir), 0, config.world).name.replace('rank-00000', 'rank-*')}`)"
             if config.world > 1 else ""))
    return 0
