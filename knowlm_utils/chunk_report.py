"""Stage 03 as a command — ``knowlm chunk CONFIG.yaml``: chunk a cleaned corpus with both
strategies and write ``chunking/report.json`` (packing efficiency, overlap, samples per
document, length histograms, a seq_length sweep and the measured speed).

Notebook 03 teaches the same steps one by one; this is the batch version a cluster job (or a
learner comparing tokenizers) runs, on the same :class:`~knowlm_utils.chunking.DocumentChunker`
and :func:`~knowlm_utils.chunking.chunking_report`. Nothing is written to the token index:
that is stage 04 (``knowlm preprocess``), which uses the same chunker.

The stage writes one file, ``OUTPUT_DIR/report.json``, atomically; nothing else in the folder is
touched, so any folder may be given (it is checked before the work starts).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .chunking import STRATEGIES, DocumentChunker, chunking_report
from .config import Overrides, StageConfig, field, stage_command
from .corpus import iter_cleaned_documents
from .fileio import write_json_atomic
from .spm import model_file, sha256

REPORT_FILE = "report.json"


@dataclass
class ChunkConfig(StageConfig):
    """Stage 03: sentence splitting and greedy chunking measured on a cleaned corpus."""

    corpus_dir: str = field(help="a cleaned corpus built by stage 01 (`knowlm corpus build`)")
    tokenizer: str = field(help="SentencePiece model: a tokenizer folder holding tokenizer.model, or the file")
    output_dir: str = field("chunking", help="gets report.json (written atomically; nothing else in the folder is "
                                             "touched)")
    seq_length: int = field(1024, ge=4, help="maximum tokens per sample, BOS/EOS included (KnowLM: 1024)")
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES), choices=STRATEGIES,
                                  help="strategies to compare at seq_length")
    sweep_seq_lengths: list[int] = field(default_factory=list, ge=4, help="further budgets to measure both "
                                         "strategies at (packing efficiency vs overlap); empty: none")
    add_bos: bool = field(True, help="BOS at the start of every document (only there)")
    add_eos: bool = field(True, help="EOS at the end of every document (only there)")
    max_docs_per_source: int | None = field(None, ge=0, help="read at most this many documents per source")
    verify: bool = field(True, help="check every sample at seq_length against a direct encoding of its text")
    progress: bool = field(True, help="show a progress bar")

    def validate(self) -> None:
        if not self.strategies:
            raise ValueError("strategies: give at least one of " + ", ".join(STRATEGIES))


def _chunk_all(docs: list[dict], chunker: DocumentChunker, verify: bool, bar) -> list[list]:
    results = []
    for doc in docs:
        samples = chunker.chunk(doc["text"], doc["lang"])
        if verify:
            chunker.verify(doc["text"], samples)
        results.append(samples)
        bar.update(1)
    return results


def build(config: ChunkConfig) -> dict[str, Any]:
    """Chunk every document with each strategy (verified), sweep the budgets, write and return
    the report."""
    model = model_file(config.path(config.tokenizer))
    check_report_folder(config.path(config.output_dir))
    docs = list(iter_cleaned_documents(config.path(config.corpus_dir),
                                       max_docs_per_source=config.max_docs_per_source))
    if not docs:
        raise ValueError(f"{config.path(config.corpus_dir)}: no documents to chunk")
    chars = sum(len(d["text"]) for d in docs)
    # (budget, strategy) pairs to run: the main comparison first, then the sweep's other budgets
    runs = [(config.seq_length, st) for st in config.strategies]
    runs += [(n, st) for n in config.sweep_seq_lengths for st in STRATEGIES if (n, st) not in runs]
    reports: dict[str, Any] = {}
    by_run, speed = {}, {}
    with tqdm(total=len(docs) * len(runs), unit="doc", desc="chunk", disable=not config.progress) as bar:
        for seq_length, strategy in runs:
            chunker = DocumentChunker(model, seq_length, strategy, config.add_bos, config.add_eos)
            main_run = seq_length == config.seq_length and strategy in config.strategies
            t0 = time.perf_counter()
            by_run[seq_length, strategy] = chunking_report(
                _chunk_all(docs, chunker, config.verify and main_run, bar), seq_length)
            if main_run:
                reports[strategy] = by_run[seq_length, strategy]
                speed[strategy] = round(chars / (time.perf_counter() - t0) / 1e6, 3)
    sweep = [{"seq_length": n, "strategy": st, **{k: by_run[n, st][k] for k in (
        "samples", "packing_efficiency", "unique_packing_efficiency", "overlap_fraction")}}
        for n in config.sweep_seq_lengths for st in STRATEGIES]
    return write_report(config.path(config.output_dir) / REPORT_FILE, model, docs, reports, sweep, speed,
                        verified=config.verify, config=config.to_dict())


def check_report_folder(out: str | os.PathLike) -> None:
    """Fail before any work, with one line, when ``OUT/report.json`` cannot be written: ``OUT``
    (or the nearest existing folder above it) is a file, or ``report.json`` is a folder."""
    out = Path(out).expanduser().absolute()
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"{p} is a file, not a folder; choose another output folder for {REPORT_FILE}")
            break
    if (out / REPORT_FILE).is_dir():
        raise ValueError(f"{out / REPORT_FILE} is a folder; choose another output folder")


def write_report(path: str | os.PathLike, model: str | os.PathLike, docs: list[dict], reports: dict[str, Any],
                 sweep: list[dict[str, Any]], mchars_per_s: dict[str, float], verified: bool,
                 config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``chunking/report.json`` atomically (also what notebook 03 calls with the results it
    computed step by step); returns the report."""
    model = model_file(model)
    report = {"tokenizer": str(model), "tokenizer_sha256": sha256(model),
              "seq_length": next(iter(reports.values()))["seq_length"] if reports else None,
              "documents": len(docs), "chars": sum(len(d["text"]) for d in docs), "strategies": reports,
              "sweep": sweep, "mchars_per_s": mchars_per_s, "verified": verified, "config": config}
    write_json_atomic(path, report)
    return report


def main(config: ChunkConfig | str | os.PathLike, overrides: Overrides = None) -> dict[str, Any]:
    """Entry point shared by the CLI, scripts and notebooks: a config object or a YAML path,
    plus ``key=value`` overrides (``output_dir=...`` picks the output folder)."""
    return build(ChunkConfig.load(config, overrides))


def add_cli(subparsers) -> None:
    """``knowlm chunk CONFIG.yaml [--out DIR]``."""
    stage_command(subparsers.add_parser("chunk", help="stage 03: chunk a corpus with both strategies, write "
                                                      "report.json"),
                  ChunkConfig, "configs/chunk/sample.yaml", "seq_length=256", _cli_chunk)


def _cli_chunk(config: ChunkConfig) -> int:
    r = build(config)
    print(f"{r['documents']} documents, {r['chars'] / 1e6:.2f} M characters, seq_length {r['seq_length']}"
          + (" (every sample verified)" if r["verified"] else ""))
    for name, s in r["strategies"].items():
        print(f"  {name:8s} {s['samples']} samples, packing efficiency {s['packing_efficiency']:.3f}, overlap "
              f"{s['overlap_fraction']:.1%}, {r['mchars_per_s'][name]} M chars/s")
    for row in r["sweep"]:
        print(f"  sweep {row['seq_length']:>5} {row['strategy']:8s} samples {row['samples']}, packing efficiency "
              f"{row['packing_efficiency']:.3f}, overlap {row['overlap_fraction']:.1%}")
    print(f"wrote {config.path(config.output_dir) / REPORT_FILE}")
    return 0


__all__ = ["ChunkConfig", "build", "check_report_folder", "write_report", "main", "add_cli", "REPORT_FILE"]
