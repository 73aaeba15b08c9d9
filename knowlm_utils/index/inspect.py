"""Looking into token indexes: :func:`inspect_index`, :func:`describe_sample` and the
``knowlm index inspect|merge|import-knowlm`` command."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from .. import spm
from .format import CODE_OF_DTYPE, VERSION
from .legacy import import_knowlm_legacy
from .merge import merge_indexes
from .reader import MMapTokenIndex


def _human(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""  # pragma: no cover


def describe_sample(index: MMapTokenIndex, i: int, tokenizer: Any = None) -> str:
    """Two lines about sample ``i``: its type, document and length, then its text decoded with
    ``tokenizer`` (a SentencePiece folder, ``.model`` file or processor; cut at 300 characters,
    newlines shown as ``\\n``) or, without one, its first 40 token ids."""
    ids = index[i].tolist()
    lines = [f"sample {i} (type {index.type_of(i)}, document {index.document_of(i)}, {len(ids)} tokens)"]
    if tokenizer is not None:
        text = spm.load_processor(tokenizer).decode([int(t) for t in ids])
        lines.append("  " + (text if len(text) <= 300 else text[:300] + " …").replace("\n", "\\n"))
    else:
        lines.append("  " + " ".join(map(str, ids[:40])) + (" …" if len(ids) > 40 else ""))
    return "\n".join(lines)


def inspect_index(prefix: str | os.PathLike, n: int = 5, tokenizer: str | None = None) -> str:
    """A readable summary: header facts, manifest, type ranges and the first ``n`` samples."""
    index = MMapTokenIndex(prefix)
    lines = [f"index     {index.prefix}",
             f"layout    Megatron MMIDIDX v{VERSION}, dtype {index.dtype} (code {CODE_OF_DTYPE[index.dtype]})",
             "files     " + ", ".join(f"{p.name} {_human(p.stat().st_size)}" for p in index.paths.values() if p.exists()),
             f"samples   {len(index):,}   documents {index.num_documents:,}   tokens {index.num_tokens:,}"]
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
    lines.extend(describe_sample(index, i, sp) for i in range(min(n, len(index))))
    return "\n".join(lines)


def add_cli(subparsers) -> None:
    """``knowlm index inspect|merge|import-knowlm``."""
    p = subparsers.add_parser("index", help="stage 04: inspect, merge or import memory-mapped token indexes")
    sub = p.add_subparsers(dest="index_cmd", required=True)
    i = sub.add_parser("inspect", help="header facts, manifest, type ranges and the first samples")
    i.add_argument("prefix", help="index prefix (PREFIX.bin / PREFIX.idx)")
    i.add_argument("-n", type=int, default=5, help="samples to show (default 5)")
    i.add_argument("--tokenizer", help="decode samples with this SentencePiece model (folder or .model file)")
    i.set_defaults(func=_cli_inspect)
    m = sub.add_parser("merge", help="merge indexes (streaming, atomic)")
    m.add_argument("out_prefix")
    m.add_argument("in_prefixes", nargs="+", metavar="IN_PREFIX")
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


def _summary(manifest: dict) -> str:
    types = ", ".join(f"{k} {v['samples']}" for k, v in manifest["types"].items()) or "-"
    return (f"{manifest['num_samples']} samples, {manifest['num_documents']} documents, {manifest['num_tokens']} tokens "
            f"({manifest['dtype']}); types: {types}")


def _cli_inspect(args: argparse.Namespace) -> int:
    print(inspect_index(args.prefix, args.n, args.tokenizer))
    return 0


def _cli_merge(args: argparse.Namespace) -> int:
    types = [t.strip() for t in args.types.split(",")] if args.types else None
    manifest = merge_indexes(args.in_prefixes, args.out_prefix, typed=args.typed, types=types,
                             progress=not args.no_progress)
    print(f"merged {len(args.in_prefixes)} indexes -> {args.out_prefix}: {_summary(manifest)}")
    return 0


def _cli_import(args: argparse.Namespace) -> int:
    manifest = import_knowlm_legacy(args.bin, args.idx, args.out, args.vocab_size, args.type,
                                    progress=not args.no_progress)
    skipped = manifest["source"]["skipped_empty_samples"]
    print(f"imported {args.bin} -> {args.out}: {_summary(manifest)}; skipped empty samples: {skipped}")
    return 0
