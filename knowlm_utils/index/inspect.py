"""Looking into token indexes: :func:`inspect_index`, :func:`describe_sample` and the
``knowlm index inspect|verify|merge|import-knowlm`` command.

Every error of these commands is one line on stderr and exit code 2 (``knowlm_utils.cli``
prints ``ValueError``/``FileNotFoundError``; other ``OSError`` are turned into ``ValueError``
here, naming the file)."""

from __future__ import annotations

import argparse
import functools
import os
from typing import Any

import numpy as np

from .. import spm
from .format import CODE_OF_DTYPE, VERSION
from .legacy import import_knowlm_legacy
from .merge import merge_indexes
from .reader import MMapTokenIndex
from .verify import verify_index


def _human(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""  # pragma: no cover


def describe_sample(index: MMapTokenIndex, i: int, tokenizer: Any = None, _name: str | None = None) -> str:
    """Two lines about sample ``i``: its type, document and length, then its text decoded with
    ``tokenizer`` (a SentencePiece folder, ``.model`` file or processor; cut at 300 characters,
    newlines shown as ``\\n``) or, without one, its first 40 token ids. An id the tokenizer
    does not have is a ``ValueError`` (a tokenizer other than the index's)."""
    ids = index[i].tolist()
    lines = [f"sample {i} (type {index.type_of(i)}, document {index.document_of(i)}, {len(ids)} tokens)"]
    if tokenizer is not None:
        sp = spm.load_processor(tokenizer)
        pieces = sp.get_piece_size()
        bad = [t for t in ids if not 0 <= t < pieces]
        if bad:
            name = _name or (str(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else "the tokenizer")
            raise ValueError(f"{name}: sample {i} of {index.prefix} holds token id {bad[0]}, but the tokenizer has "
                             f"{pieces} pieces: it is not the tokenizer this index was written with")
        text = sp.decode([int(t) for t in ids])
        lines.append("  " + (text if len(text) <= 300 else text[:300] + " …").replace("\n", "\\n"))
    else:
        lines.append("  " + " ".join(map(str, ids[:40])) + (" …" if len(ids) > 40 else ""))
    return "\n".join(lines)


def inspect_index(prefix: str | os.PathLike, n: int = 5, tokenizer: str | None = None, verify: bool = False,
                  progress: bool = False) -> str:
    """A readable summary: header facts, manifest, type ranges and the first ``n`` samples.
    ``verify=True`` first runs the full :func:`~.verify.verify_index` scan (every token id)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n (samples to show) must be an integer >= 0, got {n!r}")
    summary = verify_index(prefix, progress=progress) if verify else None
    index = MMapTokenIndex(prefix, validate="quick" if verify else "full")  # verify made the .idx pass
    lines = [f"index     {index.prefix}",
             f"layout    Megatron MMIDIDX v{VERSION}, dtype {index.dtype} (code {CODE_OF_DTYPE[index.dtype]})",
             "files     " + ", ".join(f"{p.name} {_human(p.stat().st_size)}" for p in index.paths.values() if p.exists()),
             f"samples   {len(index):,}   documents {index.num_documents:,}   tokens {index.num_tokens:,}"]
    if summary is not None:
        lines.append("verified  " + _verified(summary))
    if len(index):
        sizes = index.sizes
        lines.append(f"lengths   min {int(sizes.min())}  mean {float(sizes.mean(dtype=np.float64)):.1f}  "
                     f"max {int(sizes.max())}")
    m = index.manifest
    if m is None:
        lines.append("manifest  none (not written by knowlm_utils; one type 'default')")
    else:
        facts = {k: m[k] for k in ("vocab_size", "split", "seq_length", "strategy") if k in m}
        tok = m.get("tokenizer")
        if isinstance(tok, dict) and tok.get("sha256"):
            facts["tokenizer_sha256"] = str(tok["sha256"])[:16]
        for k in ("merge", "source", "synthetic"):
            if k in m:
                facts[k] = "yes"
        lines.append("manifest  " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    lines.append("types")
    for name, (s, e) in index.type_ranges.items():
        t = (m or {}).get("types", {}).get(name, {})
        docs = t.get("documents", [0, index.num_documents])
        tokens = (index._byte_at(e) - index._byte_at(s)) // index.dtype.itemsize
        lines.append(f"  {name:<10} samples [{s}, {e})  documents [{docs[0]}, {docs[1]})  tokens {tokens:,}")
    sp = spm.load_processor(tokenizer) if tokenizer else None
    if sp is not None and isinstance((m or {}).get("tokenizer"), dict) and (m or {})["tokenizer"].get("sha256"):
        want, got = str(m["tokenizer"]["sha256"]), spm.sha256(tokenizer)
        if want != got:
            lines.append(f"tokenizer {tokenizer}: sha256 {got[:16]} differs from the manifest's {want[:16]} "
                         "(decoded text may be wrong)")
    lines.extend(describe_sample(index, i, sp, _name=str(tokenizer)) for i in range(min(n, len(index))))
    return "\n".join(lines)


def plot_sample_lengths(index: MMapTokenIndex, seq_length: int, bins: int = 32):
    """One panel per type: the lengths of its samples, split into samples of documents that
    needed several samples (blue) and documents that fit in one sample (orange), stacked. With the
    ``knowlm`` strategy the blue mass sits at ``seq_length``; single-sample documents are as long
    as they are. Returns the axes."""
    import matplotlib.pyplot as plt

    per_doc = np.diff(np.asarray(index.doc_idx, dtype=np.int64))
    multi = np.repeat(per_doc > 1, per_doc)          # per sample: its document needed several samples
    types = list(index.type_ranges.items())
    _, axes = plt.subplots(1, len(types), figsize=(3.2 * len(types), 2.8), sharex=True, squeeze=False)
    for ax, (name, (s, e)) in zip(axes[0], types):
        sizes = np.asarray(index.sizes[s:e])
        ax.hist([sizes[multi[s:e]], sizes[~multi[s:e]]], bins=bins, range=(0, seq_length), stacked=True,
                color=["tab:blue", "tab:orange"], label=["of a multi-sample document", "a whole document"])
        ax.axvline(seq_length, color="grey", ls=":", lw=1)
        ax.set_title(f"{name}: {e - s} samples", fontsize=9)
        ax.set_xlabel("tokens per sample")
    axes[0][0].set_ylabel("samples")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    return axes[0]


def batch_composition(batches, type_ranges: dict[str, tuple[int, int]]):
    """A DataFrame with one row per batch and one column per type: how many of the batch's sample
    indices fall in each type's range."""
    import pandas as pd

    return pd.DataFrame([{t: sum(s <= int(i) < e for i in b) for t, (s, e) in type_ranges.items()} for b in batches])


def plot_batch_compositions(compositions: dict, ylabel: str = "samples in the batch"):
    """Side by side, one stacked bar chart per ``{title: batch_composition(...)}``, same y scale.
    Returns the axes."""
    import matplotlib.pyplot as plt

    _, axes = plt.subplots(1, len(compositions), figsize=(5.5 * len(compositions), 2.9), sharey=True, squeeze=False)
    for ax, (title, comp) in zip(axes[0], compositions.items()):
        comp.plot.bar(stacked=True, ax=ax, width=0.9, legend=False)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_xticks(range(0, len(comp), 5), [str(k) for k in range(0, len(comp), 5)], rotation=0)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return axes[0]


def add_cli(subparsers) -> None:
    """``knowlm index inspect|verify|merge|import-knowlm``."""
    p = subparsers.add_parser("index", help="stage 04: inspect, verify, merge or import memory-mapped token indexes")
    sub = p.add_subparsers(dest="index_cmd", required=True)
    i = sub.add_parser("inspect", help="header facts, manifest, type ranges and the first samples")
    i.add_argument("prefix", help="index prefix (PREFIX.bin / PREFIX.idx)")
    i.add_argument("-n", type=int, default=5, help="samples to show (default 5)")
    i.add_argument("--tokenizer", help="decode samples with this SentencePiece model (folder or .model file)")
    i.add_argument("--verify", action="store_true", help="first verify the whole index (reads every token id; "
                   "see `knowlm index verify`)")
    i.add_argument("--no-progress", action="store_true")
    i.set_defaults(func=_cli_inspect)
    v = sub.add_parser("verify", help="full scan: every id < vocab_size, document/sequence index, manifest counts")
    v.add_argument("prefix", help="index prefix (PREFIX.bin / PREFIX.idx)")
    v.add_argument("--no-progress", action="store_true")
    v.set_defaults(func=_cli_verify)
    m = sub.add_parser("merge", help="merge indexes (verifies every input first; streaming, atomic); given the "
                       "output FOLDERS of `knowlm preprocess --rank R --world N`, joins train and valid of all ranks "
                       "into OUT (a folder) with the same bytes as one run")
    m.add_argument("out_prefix", help="output prefix, or output folder when merging preprocess ranks")
    m.add_argument("in_prefixes", nargs="+", metavar="IN_PREFIX", help="index prefixes, or the rank folders "
                   "OUTPUT_DIR.rank-RRRRR-of-NNNNN (all N, any order)")
    m.add_argument("--typed", action="store_true", help="one contiguous range per type (same-named types merged)")
    m.add_argument("--types", help="comma-separated type name for each input (inputs without a manifest)")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=_cli_merge)
    k = sub.add_parser("import-knowlm", help="convert KnowLM's pretrain/preprocess.py .bin/.idx")
    k.add_argument("--bin", required=True, help="KnowLM .bin (uint16 ids)")
    k.add_argument("--idx", required=True, help="KnowLM .idx (uint64 starts + uint16 lengths)")
    k.add_argument("--out", required=True, help="output prefix")
    k.add_argument("--vocab-size", type=int, default=65536)
    k.add_argument("--type", default="default", help="type name of the imported samples")
    k.add_argument("--no-progress", action="store_true")
    k.set_defaults(func=_cli_import)


def _one_line_errors(func):
    """``OSError`` other than ``FileNotFoundError`` (permission denied, a file where a folder
    should be, disk full …) becomes a ``ValueError`` naming the file, which the CLI prints as
    one line with exit code 2."""
    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except FileNotFoundError:
            raise
        except OSError as exc:
            where = exc.filename if exc.filename is not None else "I/O"
            raise ValueError(f"{where}: {exc.strerror or exc}") from None
    return wrapper


def _summary(manifest: dict) -> str:
    types = ", ".join(f"{k} {v['samples']}" for k, v in manifest["types"].items()) or "-"
    return (f"{manifest['num_samples']} samples, {manifest['num_documents']} documents, {manifest['num_tokens']} tokens "
            f"({manifest['dtype']}); types: {types}")


def _verified(summary: dict) -> str:
    ids = "no ids" if summary["max_id"] is None else f"ids <= {summary['max_id']}"
    bound = f"< vocab_size {summary['vocab_size']}" if summary["vocab_size"] is not None else "(no vocab_size)"
    rate = summary["bytes_per_s"] / 1e9
    return (f"ok: {summary['num_samples']:,} samples, {summary['num_documents']:,} documents, "
            f"{summary['num_tokens']:,} tokens, {ids} {bound}; {_human(summary['bin_bytes'] + summary['idx_bytes'])} "
            f"read in {summary['seconds']:.2f} s ({rate:.2f} GB/s)")


@_one_line_errors
def _cli_inspect(args: argparse.Namespace) -> int:
    print(inspect_index(args.prefix, args.n, args.tokenizer, verify=args.verify, progress=not args.no_progress))
    return 0


@_one_line_errors
def _cli_verify(args: argparse.Namespace) -> int:
    summary = verify_index(args.prefix, progress=not args.no_progress)
    print(f"verified {summary['prefix']}: {_verified(summary)}")
    return 0


@_one_line_errors
def _cli_merge(args: argparse.Namespace) -> int:
    if all(os.path.isdir(p) for p in args.in_prefixes):  # rank folders of `knowlm preprocess --world N`
        from ..preprocess import merge_ranks

        if args.typed or args.types:
            raise ValueError("--typed/--types apply to index prefixes; rank folders are merged in their config's order")
        result = merge_ranks(args.in_prefixes, args.out_prefix, progress=not args.no_progress)
        for split, manifest in result.items():
            print(f"merged {len(args.in_prefixes)} ranks -> {args.out_prefix}/{split}: {_summary(manifest)}")
        return 0
    types = [t.strip() for t in args.types.split(",")] if args.types else None
    manifest = merge_indexes(args.in_prefixes, args.out_prefix, typed=args.typed, types=types,
                             progress=not args.no_progress)
    print(f"merged {len(args.in_prefixes)} indexes -> {args.out_prefix}: {_summary(manifest)}")
    return 0


@_one_line_errors
def _cli_import(args: argparse.Namespace) -> int:
    manifest = import_knowlm_legacy(args.bin, args.idx, args.out, args.vocab_size, args.type,
                                    progress=not args.no_progress)
    skipped = manifest["source"]["skipped_empty_samples"]
    print(f"imported {args.bin} -> {args.out}: {_summary(manifest)}; skipped empty samples: {skipped}")
    return 0
