"""Weight diffs, KnowLM style: release ``diff = tuned − raw`` and let users ``recover`` ``tuned = raw + diff``.

KnowLM (ZhiXi-13B) could not redistribute LLaMA, so it published ``tuned − LLaMA`` and a script
that loads both full models and adds the state dicts — ~100 GB of RAM for 13B, and the only check
a sum of all weights against one constant. Here both directions stream one tensor at a time
(large ones in blocks of rows), so memory stays at a few blocks whatever the model size, and:

* the diff carries a manifest (:mod:`.manifest`) with the canonical SHA-256 of every tuned tensor,
  of every diff tensor, and of the files ``recover`` will write; ``recover`` checks each tensor as
  it is produced and refuses — naming the tensor — a wrong base, a corrupted diff, or keys,
  shapes, dtypes or vocabularies that do not match;
* the arithmetic is KnowLM's (``raw`` cast to the diff's dtype, one add in that dtype), so a real
  ZhiXi diff (``pytorch_model-*.bin``, no manifest) recovers exactly as ``weight_diff.py`` would;
  its sum check is available as ``expect_sum``;
* floating point subtraction is not always invertible: where ``raw + (tuned − raw)`` does not give
  ``tuned`` back bit for bit (a weight crossing zero, or fp16 rounding), ``make_diff`` stores the
  element's exact value in ``fixups/`` (indices + values), so the round trip is bit-exact. A tool
  that ignores ``fixups/`` still gets KnowLM's result;
* outputs are sharded safetensors written like the ``safetensors`` library writes them, so the
  recovered files' SHA-256 — published in the diff's manifest — are the same on every machine.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..fileio import write_bytes_atomic, write_json_atomic
from .checksums import file_sha256, write_checksums
from .manifest import (MANIFEST_NAME, block_sum, new_manifest, read_manifest, spec_of, tensor_entry, tensor_hasher,
                       write_manifest)
from .output import SIDE_FILES, ReleaseOutput, fingerprint_files
from .shards import (DEFAULT_SHARD_BYTES, INDEX_NAME, ShardPlan, ShardWriter, header_bytes, plan_from_names,
                     plan_shards, write_index)
from .tensors import (IGNORABLE, VOCAB_TENSORS, BlockBuffer, ModelFiles, SafetensorsFile, TensorSpec, as_bytes,
                      config_vocab_size, dtype_name, few_names, parse_dtype, parse_size, read_config, row_blocks,
                      torch_threads)

BLOCK_BYTES = 64 << 20
FIXUPS_DIR = "fixups"
_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


# ------------------------------------------------------------------------------ results ----


@dataclass
class DiffResult:
    """What :func:`make_diff` wrote. ``inexact_elements``: elements where ``raw + diff`` is not
    bit-identical to the tuned weight (stored exactly in ``fixups/`` when ``exact``)."""

    out: str
    tensors: int
    shards: int
    bytes: int
    dtype: str
    inexact_elements: int
    fixups: int
    total_sum: float
    resumed_shards: int
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        fix = (f"; {self.inexact_elements} element(s) where raw + diff ≠ tuned in {self.dtype} "
               f"({'stored exactly in fixups/' if self.fixups else 'left as KnowLM would'})") if self.inexact_elements else ""
        resumed = f", {self.resumed_shards} shard(s) reused from an interrupted run" if self.resumed_shards else ""
        return (f"diff of {self.tensors} tensors in {self.shards} shard(s), {self.bytes / 1e9:.2f} GB {self.dtype} → "
                f"{self.out} in {self.seconds:.1f} s{resumed}{fix}")


@dataclass
class RecoverResult:
    """What :func:`recover` wrote. ``verified``: tensors whose SHA-256 matched the diff's
    manifest (0 for a diff without one, e.g. KnowLM's); ``files_match_manifest``: the shard files
    are byte-identical to those the manifest publishes."""

    out: str
    tensors: int
    shards: int
    bytes: int
    dtype: str
    verified: int
    fixups_applied: int
    total_sum: float
    sum_check: str | None
    files_match_manifest: bool
    resumed_shards: int
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        check = (f"all {self.verified} tensors match the manifest" if self.verified else
                 "no manifest: tensors not verified")
        if self.files_match_manifest:
            check += ", files byte-identical to the published SHA256SUMS"
        if self.sum_check:
            check += f"; {self.sum_check}"
        resumed = f", {self.resumed_shards} shard(s) reused from an interrupted run" if self.resumed_shards else ""
        return (f"recovered {self.tensors} tensors in {self.shards} shard(s), {self.bytes / 1e9:.2f} GB {self.dtype} → "
                f"{self.out} in {self.seconds:.1f} s ({check}){resumed}")


# ------------------------------------------------------------------------------- checks ----


def _names(model: ModelFiles) -> tuple[list[str], list[str]]:
    keep = [n for n in model.names if not IGNORABLE.fullmatch(n)]
    return keep, [n for n in model.names if IGNORABLE.fullmatch(n)]


def check_same_tensors(a: ModelFiles, b: ModelFiles, a_role: str, b_role: str) -> list[str]:
    """Refuse when ``a`` and ``b`` do not hold the same tensor names with the same shapes, saying
    which side has what (vocabulary rows are called out). Returns the names skipped as buffers."""
    a_names, a_skip = _names(a)
    b_names, b_skip = _names(b)
    only_a, only_b = sorted(set(a_names) - set(b_names)), sorted(set(b_names) - set(a_names))
    if only_a or only_b:
        parts = []
        if only_b:
            parts.append(f"{b_role} ({b.path}) has {len(only_b)} tensor(s) {a_role} lacks: {few_names(only_b)}")
        if only_a:
            parts.append(f"{a_role} ({a.path}) has {len(only_a)} tensor(s) {b_role} lacks: {few_names(only_a)}")
        raise ValueError("tensor names differ: " + "; ".join(parts))
    order = [n for n in VOCAB_TENSORS if n in b_names] + [n for n in b_names if n not in VOCAB_TENSORS]
    for name in order:  # the vocabulary first: its mismatch explains the others
        sa, sb = a.spec(name), b.spec(name)
        if not sa.dtype.is_floating_point or not sb.dtype.is_floating_point:
            bad = a_role if not sa.dtype.is_floating_point else b_role
            raise ValueError(f"tensor {name}: {bad} stores it as {dtype_name((sa if bad == a_role else sb).dtype)}, "
                             "not a floating-point weight")
        if sa.shape != sb.shape:
            raise ValueError(shape_message(name, a_role, a, sa, b_role, b, sb))
    return sorted(set(a_skip) | set(b_skip))


def shape_message(name: str, a_role: str, a: ModelFiles, sa: TensorSpec, b_role: str, b: ModelFiles,
                  sb: TensorSpec) -> str:
    text = (f"tensor {name}: {a_role} ({a.path}) has shape {list(sa.shape)} but {b_role} ({b.path}) has "
            f"{list(sb.shape)}")
    if name in VOCAB_TENSORS and sa.shape[1:] == sb.shape[1:]:
        text += (f" — vocabulary sizes differ: {a_role} has {sa.shape[0]} tokens, {b_role} has {sb.shape[0]}"
                 + (" (one more: a pad token added on one side?)" if abs(sa.shape[0] - sb.shape[0]) == 1 else "")
                 + f"; use the {a_role} the {b_role} was made with")
    return text


def check_config_vocab(folder: Path, role: str, model: ModelFiles) -> int | None:
    """Refuse a folder whose ``config.json`` vocab_size disagrees with its embedding rows."""
    cfg = read_config(folder)
    v = config_vocab_size(cfg)
    rows = model.spec("model.embed_tokens.weight").shape[0] if "model.embed_tokens.weight" in model.specs else None
    if v is not None and rows is not None and v != rows:
        raise ValueError(f"{role} ({folder}): config.json says vocab_size {v} but its model.embed_tokens.weight has "
                         f"{rows} rows — the config was not updated after the vocabulary was resized")
    return rows if rows is not None else v


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(_INT_VIEW[t.element_size()])


def _update(pool: ThreadPoolExecutor, hashers, data: memoryview) -> list:
    return [pool.submit(h.update, data) for h in hashers]


# ---------------------------------------------------------------------------- make_diff ----


def make_diff(raw: str | os.PathLike, tuned: str | os.PathLike, out: str | os.PathLike, *, dtype: str | None = None,
              exact: bool = True, max_shard_size: int | str = DEFAULT_SHARD_BYTES, block_bytes: int = BLOCK_BYTES,
              overwrite: bool = False, progress: bool = True) -> DiffResult:
    """Write ``tuned − raw`` (KnowLM's release format) into ``out`` as sharded safetensors, with
    the config/tokenizer files of ``tuned``, a manifest and ``SHA256SUMS``.

    ``dtype``: the diff's dtype (``"fp16"`` halves the download, as ZhiXi's fp16 diff; default the
    tuned model's). Both models are cast to it before subtracting, and the manifest describes the
    tuned model in that dtype. ``exact``: store the elements where ``raw + diff`` would not give
    the tuned value back in ``fixups/`` (default; ``False`` leaves KnowLM's plain diff). Resumes
    an interrupted run into the same ``out``."""
    t0 = time.perf_counter()
    max_bytes = parse_size(max_shard_size)
    with ModelFiles(raw, "RAW") as R, ModelFiles(tuned, "TUNED") as T:
        skipped = check_same_tensors(R, T, "RAW", "TUNED")
        names = [n for n in T.names if not IGNORABLE.fullmatch(n)]
        cd = {n: parse_dtype(dtype) if dtype is not None else T.spec(n).dtype for n in names}
        check_config_vocab(T.folder, "TUNED", T)
        specs = [T.spec(n).with_dtype(cd[n]) for n in names]
        plans = plan_shards(specs, max_bytes)
        fp = {"op": "make-diff", "raw": fingerprint_files(R.files), "tuned": fingerprint_files(T.files),
              "dtype": dtype, "exact": exact, "max_shard_bytes": max_bytes}
        with ReleaseOutput(out, producer="knowlm weights make-diff", fingerprint=fp, overwrite=overwrite,
                           protected=[R.path, T.path]) as o, ThreadPoolExecutor(2) as pool:

            bufs = [BlockBuffer() for _ in range(4)]

            def produce(plan: ShardPlan, advance) -> dict[str, Any]:
                rec_hash = hashlib.sha256(header_bytes(plan.tensors, {"format": "pt"}))
                tensors, diffs, fixups = {}, {}, {}
                inexact = 0
                with ShardWriter(o.work / plan.file, plan) as w:
                    for spec in plan.tensors:
                        name = spec.name
                        th = tensor_hasher(spec)
                        total, n_bad, idx_parts, val_parts = 0.0, 0, [], []
                        for start, stop in row_blocks(spec, block_bytes):
                            t = T.read(name, start, stop, bufs[0].view(T.spec(name), start, stop)).to(spec.dtype)
                            r = R.read(name, start, stop, bufs[1].view(R.spec(name), start, stop)).to(spec.dtype)
                            d = torch.sub(t, r, out=bufs[2].view(spec, start, stop))
                            rec = torch.add(r, d, out=bufs[3].view(spec, start, stop))
                            bad = torch.ne(_bits(rec), _bits(t)).reshape(-1)
                            if bad.any():
                                pos = bad.nonzero().reshape(-1)
                                n_bad += pos.numel()
                                if exact:
                                    idx_parts.append(pos + start * spec.row_numel)
                                    val_parts.append(t.reshape(-1)[pos].clone())
                                    rec = t
                            rb = as_bytes(rec)
                            jobs = _update(pool, (th, rec_hash), rb)
                            total += block_sum(rec)
                            w.write(name, d)
                            for j in jobs:
                                j.result()
                            advance(d.numel() * d.element_size())
                        tensors[name] = tensor_entry(spec, th.hexdigest(), total)
                        diffs[name] = {"inexact": n_bad, "fixups": n_bad if exact else 0}
                        inexact += n_bad
                        if idx_parts:
                            fixups[f"{name}.index"] = torch.cat(idx_parts).to(torch.int64)
                            fixups[f"{name}.value"] = torch.cat(val_parts)
                files = {plan.file: w.sha256}
                if fixups:
                    from safetensors.torch import save

                    rel = f"{FIXUPS_DIR}/{plan.file}"
                    write_bytes_atomic(o.work / rel, save(fixups, metadata={"format": "pt"}))
                    files[rel] = file_sha256(o.work / rel)
                    for name in {k.rsplit(".", 1)[0] for k in fixups}:
                        diffs[name]["fixups_file"] = rel
                return {"files": files, "tensors": tensors, "diff": diffs, "recovered_sha256": rec_hash.hexdigest(),
                        "inexact": inexact}

            with torch_threads(1):
                records = o.run(plans, produce, progress=progress, desc="make-diff")
            write_index(o.work, plans)
            o.copy_side_files(T.folder)
            man = new_manifest("diff", "knowlm weights make-diff")
            tensors, diffs, files, recovered = {}, {}, {}, {}
            for plan in plans:
                rec = records[plan.file]
                tensors.update(rec["tensors"])
                diffs.update(rec["diff"])
                files.update(rec["files"])
                recovered[plan.file] = rec["recovered_sha256"]
            man["tensors"] = {n: tensors[n] for n in names}
            man["diff"] = {n: diffs[n] for n in names}
            man["shards"] = [p.to_dict() for p in plans]
            man["files"] = files
            man["recovered_files"] = recovered
            man["vocab_size"] = (T.spec("model.embed_tokens.weight").shape[0]
                                 if "model.embed_tokens.weight" in T.specs else None)
            man["total_sum"] = sum(e["sum"] for e in man["tensors"].values())
            man["inexact_elements"] = sum(d["inexact"] for d in diffs.values())
            man["skipped"] = skipped
            write_manifest(o.work, man)
            _write_sums(o.work, files)
            resumed = len(o.resumed)
            o.finish()
    total = sum(p.nbytes for p in plans)
    return DiffResult(str(o.out), len(names), len(plans), total, _dtypes(specs), man["inexact_elements"],
                      sum(d["fixups"] for d in diffs.values()), man["total_sum"], resumed, skipped,
                      time.perf_counter() - t0)


def _dtypes(specs: list[TensorSpec]) -> str:
    return "/".join(sorted({dtype_name(s.dtype) for s in specs}))


def _write_sums(folder: Path, known: dict[str, str]) -> None:
    """SHA256SUMS of the folder: the shard hashes computed while writing, the small files hashed now."""
    from .checksums import listed_files

    files, _ = listed_files(folder)
    write_checksums(folder, {rel: known.get(rel) or file_sha256(folder / rel) for rel in files})


# ------------------------------------------------------------------------------ recover ----


class _Fixups:
    """Exact values ``make_diff`` stored for one tensor: flat indices and values."""

    def __init__(self, folder: Path, rel: str, name: str):
        f = SafetensorsFile(folder / rel)
        try:
            self.index = f.read(f"{name}.index")
            self.value = f.read(f"{name}.value")
        except KeyError:
            raise ValueError(f"DIFF {folder / rel}: no fixups for tensor {name} although the manifest lists them") from None
        finally:
            f.close()

    def apply(self, block: torch.Tensor, first: int) -> int:
        """Set the elements of ``block`` (whose first element is flat index ``first``)."""
        flat = block.reshape(-1)
        lo = int(torch.searchsorted(self.index, first))
        hi = int(torch.searchsorted(self.index, first + flat.numel()))
        if hi > lo:
            flat[self.index[lo:hi] - first] = self.value[lo:hi].to(flat.dtype)
        return hi - lo


def recover(raw: str | os.PathLike, diff: str | os.PathLike, out: str | os.PathLike, *, dtype: str | None = None,
            expect_sum: float | None = None, sum_atol: float = 1e-2, max_shard_size: int | str = DEFAULT_SHARD_BYTES,
            block_bytes: int = BLOCK_BYTES, overwrite: bool = False, progress: bool = True) -> RecoverResult:
    """``tuned = raw + diff`` tensor by tensor into ``out`` (sharded safetensors + index, the
    diff's config and tokenizer files — the raw model's where the diff has none —, a manifest and
    ``SHA256SUMS``).

    ``raw`` is cast to the diff's dtype and added in that dtype (KnowLM's arithmetic; its fp16
    diff is added in fp16). ``dtype`` casts the result (e.g. ``"fp16"`` from an fp32 diff: added
    in fp32, then rounded once). With a manifest, every tensor is verified as it is produced and
    a mismatch stops the run naming the tensor and the likely cause (wrong base or corrupted
    diff). ``expect_sum``: KnowLM's check that all recovered weights sum to a published constant
    (within ``sum_atol``). ``raw`` and ``diff`` may be safetensors or legacy ``.bin`` folders.
    Resumes an interrupted run into the same ``out``."""
    t0 = time.perf_counter()
    max_bytes = parse_size(max_shard_size)
    out_dtype = parse_dtype(dtype) if dtype is not None else None
    diff_folder = Path(diff) if Path(diff).is_dir() else Path(diff).parent
    man = read_manifest(diff_folder)
    if man is not None and man["kind"] != "diff":
        raise ValueError(f"DIFF ({diff}): {MANIFEST_NAME} describes a model, not a diff — is DIFF a recovered model?")
    with ModelFiles(raw, "RAW") as R, ModelFiles(diff, "DIFF") as D:
        skipped = check_same_tensors(R, D, "RAW", "DIFF")
        names = [n for n in D.names if not IGNORABLE.fullmatch(n)]
        check_config_vocab(D.folder, "DIFF", D)
        if man is not None:
            _check_against_manifest(D, names, man, diff_folder)
        cd = {n: D.spec(n).dtype for n in names}
        specs = [D.spec(n).with_dtype(out_dtype or cd[n]) for n in names]
        same_dtype = all(s.dtype == cd[s.name] for s in specs)
        by_name = {s.name: s for s in specs}
        if man is not None and same_dtype and man.get("shards"):
            plans = plan_from_names(by_name, man["shards"])
        else:
            plans = plan_shards(specs, max_bytes)
        fp = {"op": "recover", "raw": fingerprint_files(R.files), "diff": fingerprint_files(D.files),
              "manifest": fingerprint_files([diff_folder / MANIFEST_NAME]) if man else None, "dtype": dtype,
              "max_shard_bytes": max_bytes}
        expected = {n: e["sha256"] for n, e in man["tensors"].items()} if man else {}
        with ReleaseOutput(out, producer="knowlm weights recover", fingerprint=fp, overwrite=overwrite,
                           protected=[R.path, D.path]) as o, ThreadPoolExecutor(2) as pool:

            bufs = [BlockBuffer() for _ in range(3)]

            def produce(plan: ShardPlan, advance) -> dict[str, Any]:
                tensors, n_fix = {}, 0
                with ShardWriter(o.work / plan.file, plan) as w:
                    for spec in plan.tensors:
                        name, c = spec.name, cd[spec.name]
                        cspec = spec.with_dtype(c)
                        th = tensor_hasher(cspec)
                        oh = tensor_hasher(spec) if spec.dtype != c else None
                        fix = None
                        if man is not None and man["diff"][name].get("fixups"):
                            fix = _Fixups(diff_folder, man["diff"][name]["fixups_file"], name)
                        total = 0.0
                        for start, stop in row_blocks(cspec, block_bytes):
                            d = D.read(name, start, stop, bufs[0].view(D.spec(name), start, stop))
                            r = R.read(name, start, stop, bufs[1].view(R.spec(name), start, stop)).to(c)
                            t = torch.add(r, d, out=bufs[2].view(cspec, start, stop))
                            if fix is not None:
                                n_fix += fix.apply(t, start * spec.row_numel)
                            jobs = _update(pool, (th,), as_bytes(t))
                            total += block_sum(t)
                            ob = t if oh is None else t.to(spec.dtype)
                            if oh is not None:
                                jobs += _update(pool, (oh,), as_bytes(ob))
                            w.write(name, ob)
                            for j in jobs:
                                j.result()
                            advance(ob.numel() * ob.element_size())
                        got = th.hexdigest()
                        if man is not None and got != expected[name]:
                            raise ValueError(_diagnose(name, R, D, man, diff_folder, c))
                        tensors[name] = tensor_entry(spec, oh.hexdigest() if oh else got, total)
                return {"files": {plan.file: w.sha256}, "tensors": tensors, "fixups": n_fix}

            with torch_threads(1):
                records = o.run(plans, produce, progress=progress, desc="recover")
            tensors, files = {}, {}
            for plan in plans:
                tensors.update(records[plan.file]["tensors"])
                files.update(records[plan.file]["files"])
            total_sum = sum(tensors[n]["sum"] for n in names)
            sum_check = None
            if expect_sum is not None:
                if not abs(total_sum - expect_sum) <= sum_atol:
                    raise ValueError(f"the recovered weights sum to {total_sum:.4f}, expected {expect_sum} (±{sum_atol}): "
                                     "RAW or DIFF is not the pair this constant was published for")
                sum_check = f"sum {total_sum:.4f} ≈ {expect_sum} (±{sum_atol})"
            files_ok = False
            if man is not None and same_dtype and man.get("recovered_files"):
                bad = [f for f, sha in files.items() if man["recovered_files"].get(f) != sha]
                if bad:
                    raise ValueError(f"recovered shard(s) {few_names(bad)} differ from the SHA-256 the diff's manifest "
                                     "publishes although every tensor matched — a writer bug; please report it")
                files_ok = True
            write_index(o.work, plans)
            o.copy_side_files(D.folder, R.folder)
            if out_dtype is not None:
                _set_config_dtype(o.work, out_dtype)
            out_man = new_manifest("model", "knowlm weights recover")
            out_man["tensors"] = {n: tensors[n] for n in names}
            out_man["shards"] = [p.to_dict() for p in plans]
            out_man["files"] = files
            out_man["total_sum"] = total_sum
            out_man["vocab_size"] = (by_name["model.embed_tokens.weight"].shape[0]
                                     if "model.embed_tokens.weight" in by_name else None)
            write_manifest(o.work, out_man)
            _write_sums(o.work, files)
            resumed = len(o.resumed)
            n_fix = sum(r.get("fixups", 0) for r in records.values())
            o.finish()
    return RecoverResult(str(o.out), len(names), len(plans), sum(p.nbytes for p in plans), _dtypes(specs),
                         len(names) if man is not None else 0, n_fix, total_sum, sum_check, files_ok, resumed, skipped,
                         time.perf_counter() - t0)


def _check_against_manifest(D: ModelFiles, names: list[str], man: dict[str, Any], folder: Path) -> None:
    listed = set(man.get("diff", {}))
    have = set(names)
    if listed != have:
        missing, extra = sorted(listed - have), sorted(have - listed)
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} tensor(s) its manifest lists ({few_names(missing)})")
        if extra:
            parts.append(f"has {len(extra)} tensor(s) its manifest does not list ({few_names(extra)})")
        raise ValueError(f"DIFF ({folder}) " + " and ".join(parts) + " — an incomplete or mixed download")
    for n in names:
        want = spec_of(n, man["tensors"][n])
        got = D.spec(n)
        if want.dtype != got.dtype:
            raise ValueError(f"tensor {n}: DIFF ({D.file_of(n).name}) stores {dtype_name(got.dtype)} but its manifest "
                             f"says {dtype_name(want.dtype)} — files from two different releases (fp16 and fp32 diffs?)")
        if want.shape != got.shape:
            raise ValueError(f"tensor {n}: DIFF ({D.file_of(n).name}) has shape {list(got.shape)} but its manifest says "
                             f"{list(want.shape)}")
    for rel, sha in man.get("files", {}).items():
        if rel.startswith(f"{FIXUPS_DIR}/"):
            p = folder / rel
            if not p.is_file():
                raise ValueError(f"DIFF ({folder}): {rel} is missing (its manifest lists it)")
            if file_sha256(p) != sha:
                raise ValueError(f"DIFF ({folder}): {rel} is corrupted (its SHA-256 differs from the manifest's)")


def _diagnose(name: str, R: ModelFiles, D: ModelFiles, man: dict[str, Any], folder: Path, c: torch.dtype) -> str:
    """Why tensor ``name`` came out wrong: a corrupted diff file, or a wrong base."""
    f = D.file_of(name)
    rel = f.relative_to(folder).as_posix() if f.is_relative_to(folder) else f.name
    published = man.get("files", {}).get(rel)
    if published is not None and file_sha256(f) != published:
        return (f"tensor {name}: DIFF ({f}) is corrupted — the file's SHA-256 differs from the manifest's; download "
                "that shard again (knowlm checksum verify DIFF)")
    return (f"tensor {name}: RAW ({R.file_of(name)}) is not the base this diff was made from — raw + diff does not give "
            f"the tuned tensor the manifest describes (RAW stores {dtype_name(R.spec(name).dtype)}, added in "
            f"{dtype_name(c)}); use the original weights converted to the Hugging Face layout")


def _set_config_dtype(folder: Path, dtype: torch.dtype) -> None:
    p = folder / "config.json"
    cfg = read_config(folder)
    if cfg is None:
        return
    for key in ("torch_dtype", "dtype"):
        if key in cfg:
            cfg[key] = dtype_name(dtype)
    write_json_atomic(p, cfg)


__all__ = ["make_diff", "recover", "DiffResult", "RecoverResult", "check_same_tensors", "check_config_vocab",
           "FIXUPS_DIR", "SIDE_FILES", "INDEX_NAME"]
