"""Merging token indexes: :func:`merge_indexes`, streaming, in constant memory and atomically.

Merging keeps the document index valid (Megatron's merge tool once broke it) and keeps each
type in one contiguous range.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from . import format as fmt
from .format import RESERVED_MANIFEST_KEYS, IndexFormatError
from .reader import MMapTokenIndex
from .verify import verify_index
from .writer import MMapTokenIndexWriter

COPY_BYTES = 64 << 20          # bytes copied per step when merging


def _segments(index: MMapTokenIndex, rename: str | None) -> list[tuple[str, int, int, int, int]]:
    """[(type, first sample, end sample, first document, end document)] of one input."""
    n = len(index)
    if rename is not None:
        if len([r for r in index.type_ranges.values() if r[1] > r[0]]) > 1:
            raise ValueError(f"{index.prefix} holds several types {list(index.type_ranges)}; it cannot be renamed to "
                             f"the single type {rename!r}")
        return [(rename, 0, n, 0, index.num_documents)] if n else []
    if index.manifest is None or index.manifest.get("types") is None:
        return [("default", 0, n, 0, index.num_documents)] if n else []
    return [(name, *t["samples"], *t["documents"]) for name, t in index.manifest["types"].items()]


def merge_indexes(prefixes: Sequence[str | os.PathLike], out_prefix: str | os.PathLike, typed: bool = False,
                  types: Sequence[str] | None = None, progress: bool = False, verify: bool = True,
                  type_order: Sequence[str] | None = None, manifest_extra: dict | None = None) -> dict:
    """Merge indexes into ``out_prefix`` by streaming (constant memory, atomic). Returns the manifest.

    * ``typed=False`` — concatenate in input order (e.g. shards of one type). Each input's types
      are kept; a type that would end up in two separate ranges is an error (use ``typed=True``).
    * ``typed=True`` — combine typed datasets (zh, en, code …): the output holds one contiguous
      range per type, in order of first appearance; SAME-NAMED types from several inputs are
      merged into that one range (input order within it).
    * ``types`` — optional type name for each input (``len(types) == len(prefixes)``), e.g. for
      Megatron-built or legacy indexes that have no manifest; each such input must hold one type.

    The document index stays valid (document boundaries are re-based, never lost), the dtype
    must match across inputs, and vocab sizes / tokenizer hashes from the manifests must agree.

    Merge copies token bytes without looking at them, so every input is first checked in full
    with :func:`~.verify.verify_index` (ids below the vocabulary, document and sequence index,
    manifest counts; about one extra sequential read of the inputs): a bad input is refused,
    naming it, before anything is written. ``verify=False`` skips that scan (inputs you have just
    verified yourself); inputs are then only checked as far as opening them does.

    ``type_order`` (with ``typed=True``): the order of the type ranges in the output (types it
    does not name follow in order of first appearance) — e.g. the type order of the config
    that wrote rank-sharded inputs, where rank 0 may lack a type that a later rank has.
    ``manifest_extra``: entries added to the output manifest (over the carried-over ones).
    """
    prefixes = [Path(os.fspath(p)) for p in prefixes]
    if not prefixes:
        raise ValueError("merge_indexes needs at least one input prefix")
    if types is not None and len(types) != len(prefixes):
        raise ValueError(f"types names one type per input: got {len(types)} names for {len(prefixes)} inputs")
    if types is not None and not all(isinstance(t, str) and t for t in types):
        raise ValueError(f"types must be non-empty names, got {list(types)!r}")
    out_prefix = Path(os.fspath(out_prefix))
    inputs = []
    for k, p in enumerate(prefixes):
        try:  # with verify, the full .idx pass runs once, inside verify_index
            inputs.append(MMapTokenIndex(p, validate="quick" if verify else "full"))
        except IndexFormatError as exc:
            raise IndexFormatError(f"refusing to merge: input {k + 1} of {len(prefixes)} is corrupt: {exc}") from None
    out_real = os.path.realpath(out_prefix)
    for index in inputs:
        if os.path.realpath(index.prefix) == out_real:
            raise ValueError(f"the output {out_prefix} is also an input; write the merge to a new prefix")
    summaries: list[dict | None] = [None] * len(inputs)
    if verify:  # every input in full (once however often named), before anything is compared or written
        done: dict[str, dict] = {}
        for k, index in enumerate(inputs):
            key = os.path.realpath(index.prefix)
            try:
                summaries[k] = done[key] if key in done else verify_index(index.prefix, progress=progress)
            except IndexFormatError as exc:
                raise IndexFormatError(f"refusing to merge: input {k + 1} of {len(inputs)} is corrupt: {exc}") from None
            done[key] = summaries[k]
    dtypes = {index.dtype for index in inputs}
    if len(dtypes) > 1:
        detail = ", ".join(f"{ix.prefix} is {ix.dtype}" for ix in inputs)
        raise ValueError(f"cannot merge indexes of different dtypes ({detail}); they were written with different "
                         "vocabulary sizes — re-tokenize with one tokenizer")
    vocab = _agree(inputs, lambda m: m.get("vocab_size"), "vocab_size")
    _agree(inputs, lambda m: (m.get("tokenizer") or {}).get("sha256") if isinstance(m.get("tokenizer"), dict)
           else None, "tokenizer sha256")
    for index, summary in zip(inputs, summaries):
        if vocab is not None and summary is not None and summary["max_id"] is not None and summary["max_id"] >= vocab:
            raise IndexFormatError(f"refusing to merge: {index.paths['bin']} holds token id {summary['max_id']}, "
                                   f"but the other inputs' manifests give vocab_size {vocab}")

    plan: list[tuple[str, MMapTokenIndex, int, int, int, int]] = []
    for k, index in enumerate(inputs):
        for name, s, e, ds, de in _segments(index, None if types is None else types[k]):
            plan.append((name, index, s, e, ds, de))
    if type_order is not None and not typed:
        raise ValueError("type_order orders the type ranges of a typed merge: pass typed=True")
    if typed:
        order = list(dict.fromkeys(seg[0] for seg in plan))
        if type_order is not None:
            rank = {name: k for k, name in enumerate(type_order)}
            order.sort(key=lambda name: rank.get(name, len(rank)))  # stable: the rest keep their order
        plan = [seg for name in order for seg in plan if seg[0] == name]
    else:
        seen, last = set(), None
        for seg in plan:
            if seg[0] != last and seg[0] in seen:
                raise ValueError(f"concatenating in input order would split type {seg[0]!r} into two ranges "
                                 f"(again in {seg[1].prefix}); use typed=True (--typed) to group each type")
            seen.add(seg[0])
            last = seg[0]

    extra = {"merge": {"typed": bool(typed), "inputs": [
        {"prefix": str(ix.prefix), "num_samples": len(ix), "num_documents": ix.num_documents,
         "num_tokens": ix.num_tokens, "type_ranges": {k: list(v) for k, v in ix.type_ranges.items()},
         "manifest": {k: v for k, v in (ix.manifest or {}).items() if k not in RESERVED_MANIFEST_KEYS}}
        for ix in inputs]}}
    extra.update(_common_keys(inputs))
    if manifest_extra:
        clash = sorted(set(manifest_extra) & set(RESERVED_MANIFEST_KEYS))
        if clash:
            raise ValueError(f"manifest_extra may not set the writer's own keys {clash}")
        extra.update(manifest_extra)
    total = sum(ix.num_tokens for ix in inputs)
    writer = MMapTokenIndexWriter(out_prefix, vocab, dtype=inputs[0].dtype, progress=False)
    with tqdm(total=total, unit="tok", unit_scale=True, desc=f"merge -> {out_prefix.name}", disable=not progress) as bar:
        try:
            for name, index, s, e, ds, de in plan:
                writer._switch_type(name)
                _copy_range(writer, index, s, e, ds, de, bar)
            return writer.finalize(extra)
        except BaseException:
            writer.abort()
            raise


def _agree(inputs: list[MMapTokenIndex], get, what: str):
    values = {str(ix.prefix): get(ix.manifest) for ix in inputs if ix.manifest is not None}
    distinct = {v for v in values.values() if v is not None}
    if len(distinct) > 1:
        raise ValueError(f"cannot merge indexes with different {what}: "
                         + ", ".join(f"{p}: {v}" for p, v in values.items()))
    return distinct.pop() if distinct else None


def _common_keys(inputs: list[MMapTokenIndex]) -> dict:
    """Manifest entries (tokenizer, seq_length, strategy …) equal in every input carry over."""
    manifests = [ix.manifest for ix in inputs]
    if any(m is None for m in manifests):
        return {}
    common = {}
    for key, value in manifests[0].items():
        if key in RESERVED_MANIFEST_KEYS or key == "merge":
            continue
        if all(key in m and m[key] == value for m in manifests[1:]):
            common[key] = value
    return common


def _copy_range(writer: MMapTokenIndexWriter, index: MMapTokenIndex, s: int, e: int, ds: int, de: int, bar) -> None:
    """Append samples [s, e) / documents [ds, de) of ``index``: bytes are copied in bounded
    pieces straight from the map, sizes and re-based document ends chunk by chunk."""
    if e <= s:
        return
    a, b = index._byte_at(s), index._byte_at(e)
    with memoryview(index._bin_mm if index._bin_mm is not None else b"") as view:
        for p in range(a, b, COPY_BYTES):
            with view[p:min(b, p + COPY_BYTES)] as piece:
                writer._fh["bin"].write(piece)
            bar.update((min(b, p + COPY_BYTES) - p) // writer.dtype.itemsize)
    # sizes and document ends go to independent side files: write them in separate passes
    base = writer.num_samples
    n_tokens = (b - a) // writer.dtype.itemsize
    doc_pos = ds
    for c in range(s, e, fmt.CHUNK_ITEMS):
        sizes = index.sizes[c:min(e, c + fmt.CHUNK_ITEMS)]
        hi = int(np.searchsorted(index.doc_idx, min(e, c + fmt.CHUNK_ITEMS), side="right")) - 1
        hi = min(max(hi, doc_pos), de)
        ends = index.doc_idx[doc_pos + 1:hi + 1] - s - (writer.num_samples - base)
        writer._append_meta(sizes, ends, 0)
        doc_pos = hi
    if doc_pos != de:  # pragma: no cover - guarded by the manifest check
        raise RuntimeError(f"{index.prefix}: document range [{ds}, {de}) does not end at sample {e}")
    writer.num_tokens += n_tokens
    writer._types[writer._current_type]["tokens"] += n_tokens
