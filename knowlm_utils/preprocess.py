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
from .corpus import cleaned_sources, is_heldout, iter_cleaned_documents
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
    max_docs_per_source: int | None = field(None, ge=0, help="read at most this many documents per source "
                                                             "(smoke runs)")
    verify: bool = field(False, help="check every sample against a direct encoding of its text (slow)")
    progress: bool = field(True, help="show a progress bar")

    def validate(self) -> None:
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
                 verify: bool) -> None:
    global _CHUNKER
    from .chunking import DocumentChunker

    _CHUNKER = (DocumentChunker(model_path, seq_length, strategy, add_bos, add_eos), verify, model_path)


def _chunk_batch(batch: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Chunk a batch of (text, lang): returns (all ids, sample lengths, samples per document,
    per-sample flags: 1 = BOS, 2 = EOS) — flat arrays, cheap to send between processes."""
    from .chunking import verify_samples

    chunker, verify, model_path = _CHUNKER
    ids, lengths, counts, flags = [], [], [], []
    for text, lang in batch:
        samples = chunker.chunk(text, lang)
        if verify:
            verify_samples(chunker.sp if hasattr(chunker, "sp") else model_path, text, samples)
        counts.append(len(samples))
        for s in samples:
            ids.append(s.ids)
            lengths.append(len(s.ids))
            flags.append(int(s.bos) | (2 * int(s.eos)))
    flat = np.concatenate(ids).astype(np.int32, copy=False) if ids else np.zeros(0, np.int32)
    return flat, np.asarray(lengths, np.int64), np.asarray(counts, np.int64), np.asarray(flags, np.uint8)


# ------------------------------------------------------------------------ main side --------
def _batches(config: PreprocessConfig, plan) -> Iterator[tuple[str, str, list[dict], list[tuple[str, str]]]]:
    corpus_dir = config.path(config.corpus_dir)
    for type_name, source, lang in plan:
        meta, batch = [], []
        for doc in iter_cleaned_documents(corpus_dir, [source], max_docs_per_source=config.max_docs_per_source):
            split = "valid" if is_heldout(str(doc.get("id", "")), config.valid_percent) else "train"
            meta.append({"split": split, "chars": len(doc["text"])})
            batch.append((doc["text"], lang))
            if len(batch) >= config.batch_docs:
                yield type_name, source, meta, batch
                meta, batch = [], []
        if batch:
            yield type_name, source, meta, batch


def _new_counts() -> dict[str, int]:
    return {"documents": 0, "samples": 0, "tokens": 0, "chars": 0, "empty_documents": 0,
            "samples_with_bos": 0, "samples_with_eos": 0, "single_sample_documents": 0}


def build(config: PreprocessConfig, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run the stage; returns ``{"train": manifest, "valid": manifest, "wall_s": ...}``.

    ``train`` and ``valid`` are written into a new hidden folder beside the output folder and
    swapped in together at the end (see the module docstring)."""
    from .index import MMapTokenIndexWriter
    from . import spm

    out = Path(output_dir) if output_dir else config.path(config.output_dir)
    model_path = config.path(config.tokenizer)
    sp = spm.load_processor(model_path)
    model_file = spm.model_file(model_path)
    out = out.expanduser().resolve()
    restore_interrupted_replace(out)
    protected = [config.path(config.corpus_dir), model_file] + ([config.base_dir] if config.base_dir else [])
    out = check_output_dir(out, overwrite=config.overwrite, protected=protected, legacy_names=LEGACY_ENTRIES)
    remove_stale_temp(out)
    plan = plan_types(config)
    workers = effective_workers(config.workers, config.allow_oversubscribe)
    t0 = time.perf_counter()
    counts = {s: collections.defaultdict(_new_counts) for s in SPLITS}
    init_args = (str(model_file), config.seq_length, config.strategy, config.add_bos, config.add_eos, config.verify)
    pool = None
    total_docs = _planned_documents(config, plan)
    tmp = temp_dir_beside(out)
    writers: dict[str, Any] = {}
    bar = tqdm(total=total_docs, unit="doc", desc="preprocess", disable=not config.progress)
    try:
        writers = {s: MMapTokenIndexWriter(tmp / s, sp.vocab_size()) for s in SPLITS}
        if workers > 1:
            pool = process_pool(workers, _init_worker, init_args)
        else:
            _init_worker(*init_args)
        for type_name, source, meta, result in _ordered_results(config, plan, pool, workers):
            _write_batch(writers, counts, type_name, source, meta, result)
            bar.update(len(meta))
        wall = time.perf_counter() - t0
        manifests = {}
        for split, writer in writers.items():
            manifests[split] = writer.finalize(_manifest_extra(config, split, sp, model_file,
                                                               spm.sha256(model_file), counts[split], wall))
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
    return {**manifests, "wall_s": round(time.perf_counter() - t0, 3)}


def _planned_documents(config: PreprocessConfig, plan) -> int | None:
    """Documents to process, from the corpus's stats.json (no pass over terabytes to count)."""
    sources = cleaned_sources(config.path(config.corpus_dir))
    counts = [sources[n].get("documents") for _, n, _ in plan]
    if any(c is None for c in counts):
        return None
    cap = config.max_docs_per_source
    return sum(c if cap is None else min(c, cap) for c in counts)


def _ordered_results(config: PreprocessConfig, plan, pool, workers: int) -> Iterator:
    """Yield (type, source, meta, chunked arrays) in corpus order with a bounded window of
    batches in flight (``imap`` would read the whole corpus ahead into its task queue)."""
    if pool is None:
        for type_name, source, meta, batch in _batches(config, plan):
            yield type_name, source, meta, _chunk_batch(batch)
        return
    window: collections.deque = collections.deque()
    limit = 2 * workers + 2
    for type_name, source, meta, batch in _batches(config, plan):
        window.append((type_name, source, meta, pool.apply_async(_chunk_batch, (batch,))))
        while len(window) >= limit:
            t, s, m, res = window.popleft()
            yield t, s, m, res.get()
    while window:
        t, s, m, res = window.popleft()
        yield t, s, m, res.get()


def _write_batch(writers, counts, type_name: str, source: str, meta: list[dict], result) -> None:
    flat, lengths, per_doc, flags = result
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    k = 0
    for m, n in zip(meta, per_doc):
        n = int(n)
        samples = [flat[bounds[i]:bounds[i + 1]] for i in range(k, k + n)]
        doc_flags = flags[k:k + n]
        k += n
        c = counts[m["split"]][source]
        c["type"] = type_name
        c["documents"] += 1
        c["chars"] += m["chars"]
        if n == 0:
            c["empty_documents"] += 1   # counted, never silently dropped
            continue
        writers[m["split"]].add_document(samples, type=type_name)
        c["samples"] += n
        c["tokens"] += int(sum(len(s) for s in samples))
        c["samples_with_bos"] += int(np.count_nonzero(doc_flags & 1))
        c["samples_with_eos"] += int(np.count_nonzero(doc_flags & 2))
        c["single_sample_documents"] += int(n == 1)


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


def main(config: PreprocessConfig | str | os.PathLike, overrides: Overrides = None) -> dict[str, Any]:
    """Entry point shared by the CLI, scripts and notebooks: a config object or a YAML path,
    plus ``key=value`` overrides (``output_dir=...`` picks the output folder)."""
    return build(PreprocessConfig.load(config, overrides))


# ----------------------------------------------------------------------------- CLI --------
def add_cli(subparsers) -> None:
    """``knowlm preprocess CONFIG.yaml --out DIR``."""
    p = stage_command(subparsers.add_parser("preprocess", help="stage 04: cleaned corpus -> chunked mmap token index"),
                      PreprocessConfig, "configs/preprocess/sample.yaml", "seq_length=2048", _cli_preprocess,
                      shortcuts={"--workers": ("workers", int, "worker processes")})
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
    print(f"wrote {config.path(config.output_dir)}/{{train,valid}}.{{bin,idx,manifest.json}} in "
          f"{result['wall_s']:.1f} s")
    return 0
