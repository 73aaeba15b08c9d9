"""datatrove pipeline blocks around the project's corpus code.

* :class:`CorpusReader` — the project's readers (:func:`~knowlm_utils.corpus.iter_records`) over
  the files of one rank; every line that cannot become a document is listed with file:line and
  reason (``skipped.jsonl`` rows) and counted, exactly as the single-machine build does;
  ``bad_lines: fail`` stops the task at the first one with the same message.
* :class:`ProjectFilter` — a datatrove ``BaseFilter`` running the project's rules
  (:class:`~knowlm_utils.cleaning.DocumentFilter`, mojibake repair included); the drop reason is
  the rule name, and the exclusion writer (:class:`RemovedRowsWriter`, a datatrove
  ``DiskWriter``) writes the project's ``removed.jsonl`` rows.
* :class:`CandidateWriter` — documents that pass the rules: their output rows, their dedup
  fingerprints (:meth:`~knowlm_utils.dedup.Deduplicator.fingerprint`), the exact-key shards and
  the LSH band signatures in datatrove's MinHash layout (see :mod:`.minhash`).
* :class:`CorpusMerge` — one task joining the per-rank files into the single-machine output.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from ..corpus import PRODUCER as CORPUS_PRODUCER
from ..corpus import BadLineError, CorpusConfig, iter_records
from ..fileio import atomic_open, read_json, replace_dir, temp_dir_beside, write_json_atomic
from .plan import Plan, load_plan


def fingerprint_dtype(num_perm: int) -> np.dtype:
    """One fixed-size record per document that passed the rules (index = its rank-local number):
    where it is (global file index, line), its length, whether it was repaired, the exact key
    and the MinHash values (datasketch's, all < 2**32)."""
    return np.dtype([("g", "<u4"), ("line", "<u8"), ("chars", "<u8"), ("repaired", "u1"), ("key", "u1", (16,)),
                     ("hv", "<u4", (num_perm,))])


def doc_id(source: str, label: str | None, line: int) -> str:
    """The document id of the single-machine build (``source:line`` or ``source:file:line``)."""
    return f"{source}:{line}" if label is None else f"{source}:{label}:{line}"


def _row_bytes(row: dict) -> bytes:
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


# ------------------------------------------------------------------------------ reading ----
class CorpusReader(PipelineStep):
    """Yield the documents of this rank's files (a contiguous run of the plan's global file list)
    in file and line order; skipped lines go to ``scan/skipped/RANK.jsonl`` and per-file counts
    to ``scan/files/RANK.json``."""

    type = "📖 - READER"
    name = "knowlm corpus reader"

    def __init__(self, config: CorpusConfig, work_dir: str):
        super().__init__()
        self.config, self.work_dir = config, work_dir

    def _records_before(self, plan: Plan, g: int, cap: int) -> int:
        """Records of the earlier files of g's source, counted up to ``cap`` (max_docs_per_source
        counts records across a source's files in order, so a rank needs the earlier files'
        counts; reading stops at ``cap``, so this costs at most that many records)."""
        src_index = plan.files[g]["source"]
        src = self.config.sources[src_index]
        count = 0
        for h in range(g):
            if plan.files[h]["source"] != src_index:
                continue
            for _ in iter_records(src, Path(plan.files[h]["path"]), self.config.max_line_bytes):
                count += 1
                if count >= cap:
                    return count
        return count

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        plan = load_plan(self.work_dir)
        if world_size != plan.tasks:
            raise ValueError(f"the scan stage runs with {world_size} tasks but {plan.work_dir}/plan.json was made "
                             f"for {plan.tasks}")
        cfg = self.config
        first, end = plan.ranks[rank]
        per_file: dict[str, dict[str, Any]] = {}
        with atomic_open(plan.skipped(rank), "wb") as skipped_fh:
            for g in range(first, end):
                f = plan.files[g]
                src = cfg.sources[f["source"]]
                allowed = None
                if cfg.max_docs_per_source is not None:
                    before = self._records_before(plan, g, cfg.max_docs_per_source + 1)
                    if before > cfg.max_docs_per_source:
                        per_file[str(g)] = {"records": 0, "skipped": 0, "by_skip": {}, "lines_read": None}
                        continue
                    allowed = cfg.max_docs_per_source - before
                st = per_file[str(g)] = {"records": 0, "skipped": 0, "by_skip": {}, "lines_read": 0}
                by_skip: Counter = Counter()
                for rec in iter_records(src, Path(f["path"]), cfg.max_line_bytes):
                    if allowed is not None and st["records"] >= allowed:
                        break
                    st["records"] += 1
                    st["lines_read"] = rec.line
                    if rec.skip is not None:
                        if cfg.bad_lines == "fail":
                            raise BadLineError(f"{rec.file}:{rec.line}: {rec.skip} ({rec.detail})")
                        st["skipped"] += 1
                        by_skip[rec.skip] += 1
                        self.stat_update(f"skipped_{rec.skip}")
                        skipped_fh.write((json.dumps({"source": src.name, "file": rec.file, "line": rec.line,
                                                      "reason": rec.skip, "detail": rec.detail}) + "\n").encode())
                        continue
                    self.stat_update("documents")
                    yield Document(text=rec.text, id=doc_id(src.name, f["label"], rec.line),
                                   metadata={"g": g, "source_index": f["source"], "file": rec.file,
                                             "line": rec.line, "repaired": False})
                st["by_skip"] = dict(by_skip)
        write_json_atomic(plan.file_stats(rank), per_file, indent=None)


# ------------------------------------------------------------------------------ filtering --
class ProjectFilter(BaseFilter):
    """The project's cleaning rules as a datatrove filter: ``(False, rule)`` for a removed
    document (datatrove counts ``dropped_<rule>``), mojibake repaired first when the config says
    ``mojibake_action: fix`` — the order of the single-machine ``_Analyser``."""

    name = "knowlm cleaning rules"

    def __init__(self, config: CorpusConfig, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer=exclusion_writer)
        self.config = config
        self._filter = None
        self._skip_rules: list[frozenset[str]] = [frozenset(s.skip_filters) for s in config.sources]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._filter is None:
            from ..cleaning import DocumentFilter

            self._filter = DocumentFilter(self.config.filters,
                                          Path(self.config.base_dir) if self.config.base_dir else None)
        skip = self._skip_rules[doc.metadata["source_index"]]
        if "mojibake" not in skip and (fixed := self._filter.repair(doc.text)) is not None:
            doc.text, doc.metadata["repaired"] = fixed, True
        rule = self._filter.check(doc.text, skip)
        return True if rule is None else (False, rule)


class RemovedRowsWriter(DiskWriter):
    """datatrove exclusion writer producing the project's ``removed.jsonl`` rows (id, source,
    file, line, rule, chars, preview), one file per rank."""

    default_output_filename = "${rank}.jsonl"
    name = "knowlm removed rows"

    def __init__(self, output_folder: str, sources: list[str]):
        super().__init__(output_folder, compression=None, mode="wb")
        self.sources = sources

    def _default_adapter(self, document: Document) -> dict:
        md = document.metadata
        return {"id": document.id, "source": self.sources[md["source_index"]], "file": md["file"], "line": md["line"],
                "rule": md["filter_reason"], "chars": len(document.text), "preview": document.text[:80]}

    def _write(self, document: dict, file_handler: IO, _filename: str) -> None:
        file_handler.write(_row_bytes(document))


# ------------------------------------------------------------------------------ candidates -
class CandidateWriter(PipelineStep):
    """Documents that passed the rules: the output row (``scan/candidates``), one fingerprint
    record (``scan/fingerprints``), the exact key in its hash shard and the band signatures in
    datatrove's ``bucket_XXX/RANK.minhash.sig`` layout."""

    type = "💽 - WRITER"
    name = "knowlm candidates + fingerprints"

    def __init__(self, config: CorpusConfig, work_dir: str):
        super().__init__()
        self.config, self.work_dir = config, work_dir

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from ..dedup import Deduplicator
        from .minhash import BandWriter, current_rss, record_rss

        start = current_rss()
        plan = load_plan(self.work_dir)
        d = self.config.dedup
        dedup = Deduplicator(d) if (d.exact or d.near) else None
        dtype = fingerprint_dtype(plan.num_perm if d.near else 0)
        langs = [s.language for s in self.config.sources]
        names = [s.name for s in self.config.sources]
        bands = BandWriter(plan, rank) if d.near else None
        key_files = [plan.exact_keys(k, rank) for k in range(plan.exact_shards)]
        for p in key_files:
            p.parent.mkdir(parents=True, exist_ok=True)
        key_fhs = [open(p, "wb") for p in key_files]
        try:
            with atomic_open(plan.candidates(rank), "wb") as cand_fh, \
                    atomic_open(plan.fingerprints(rank), "wb") as fp_fh:
                rec = np.zeros(1, dtype=dtype)
                for idx, doc in enumerate(data or ()):
                    md = doc.metadata
                    cand_fh.write(_row_bytes({"id": doc.id, "text": doc.text, "source": names[md["source_index"]],
                                              "lang": langs[md["source_index"]], "file": md["file"],
                                              "line": md["line"]}))
                    rec["g"], rec["line"] = md["g"], md["line"]
                    rec["chars"], rec["repaired"] = len(doc.text), md["repaired"]
                    if dedup is not None:
                        key, sig = dedup.fingerprint(doc.text)
                        if key is not None:
                            rec["key"][0] = np.frombuffer(key, dtype=np.uint8)
                            shard = int.from_bytes(key[:8], "little") % plan.exact_shards
                            key_fhs[shard].write(key + struct.pack("<II", rank, idx))
                        if sig is not None:
                            rec["hv"][0] = sig.hashvalues
                            bands.add(sig.hashvalues, idx)
                    fp_fh.write(rec.tobytes())
                    self.stat_update("candidates")
                    yield doc
        finally:
            for fh in key_fhs:
                fh.close()
        if bands is not None:
            bands.finish()
        record_rss(plan, "scan", rank, start, len(np.memmap(plan.fingerprints(rank), dtype=dtype, mode="r"))
                   if plan.fingerprints(rank).stat().st_size else 0)


# ------------------------------------------------------------------------------ merging ----
class _LineShards:
    """``part-NNNNN.jsonl`` shards of ``max_docs`` lines each, written atomically; the folder
    appears with the first document, as with the single-machine writer."""

    def __init__(self, folder: Path, max_docs: int):
        self.folder, self.max_docs = folder, max_docs
        self.files: list[str] = []
        self.count, self.ctx, self.fh = 0, None, None

    def write(self, line: bytes) -> None:
        if self.fh is None or self.count >= self.max_docs:
            self.close()
            path = self.folder / f"part-{len(self.files):05d}.jsonl"
            self.ctx = atomic_open(path, "wb")
            self.fh = self.ctx.__enter__()
            self.files.append(path.name)
            self.count = 0
        self.fh.write(line)
        self.count += 1

    def close(self, exc: BaseException | None = None) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(type(exc) if exc else None, exc, None)
            self.ctx = self.fh = None


class _RankFiles:
    """The scan outputs of one rank, read in step with the global file order."""

    def __init__(self, plan: Plan, rank: int, num_perm: int):
        self.stats = read_json(plan.file_stats(rank))
        self.skipped = open(plan.skipped(rank), "rb")
        removed = plan.removed(rank)
        self.removed = open(removed, "rb") if removed.exists() else None
        self.cands = open(plan.candidates(rank), "rb")
        self.fps = np.memmap(plan.fingerprints(rank), dtype=fingerprint_dtype(num_perm), mode="r") \
            if plan.fingerprints(rank).stat().st_size else np.zeros(0, dtype=fingerprint_dtype(num_perm))
        self.next_fp = 0
        self.decisions: dict[int, tuple[str, str]] = {}
        if plan.decisions(rank).exists():
            with open(plan.decisions(rank), encoding="utf-8") as fh:
                for line in fh:
                    doc, rule, dup_of = json.loads(line)
                    self.decisions[doc] = (rule, dup_of)
        self._peek: tuple[dict, bytes] | None = None

    def removed_rows(self, source: str, file: str) -> Iterator[tuple[dict, bytes]]:
        """The filtered rows of one file (the writer wrote them in document order)."""
        while True:
            if self._peek is None:
                raw = self.removed.readline() if self.removed else b""
                if not raw:
                    return
                self._peek = (json.loads(raw), raw)
            row, raw = self._peek
            if row["source"] != source or row["file"] != file:
                return
            self._peek = None
            yield row, raw

    def close(self) -> None:
        for fh in (self.skipped, self.removed, self.cands):
            if fh is not None:
                fh.close()


class CorpusMerge(PipelineStep):
    """One task: the per-rank files → ``OUTPUT/<source>/part-NNNNN.jsonl``, ``removed.jsonl``,
    ``skipped.jsonl`` and ``stats.json`` exactly as :func:`knowlm_utils.corpus.build` writes them
    (documents, rows and per-rule counts in the same order), assembled in a temporary folder and
    swapped into place."""

    type = "💽 - WRITER"
    name = "knowlm corpus merge"

    def __init__(self, config: CorpusConfig, work_dir: str):
        super().__init__()
        self.config, self.work_dir = config, work_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import shutil
        import time

        from ..corpus import finalize_stats, log_bin, new_source_stats  # the single-machine stats format

        plan = load_plan(self.work_dir)
        cfg = self.config
        out = Path(plan.output_dir)
        num_perm = plan.num_perm if cfg.dedup.near else 0
        files_of = {i: [Path(f["path"]) for f in plan.files if f["source"] == i] for i in range(len(cfg.sources))}
        stats = {src.name: new_source_stats(src, files_of[i]) for i, src in enumerate(cfg.sources)}
        tmp = temp_dir_beside(out)
        writer: _LineShards | None = None
        try:
            with atomic_open(tmp / "removed.jsonl", "wb") as removed_fh, \
                    atomic_open(tmp / "skipped.jsonl", "wb") as skipped_fh:
                rank_files, current_source = None, None
                for g, f in enumerate(plan.files):
                    r = plan.rank_of_file(g)
                    if g == plan.ranks[r][0]:
                        if rank_files is not None:
                            rank_files.close()
                        rank_files = _RankFiles(plan, r, num_perm)
                    src = cfg.sources[f["source"]]
                    if f["source"] != current_source:
                        if writer is not None:
                            writer.close()
                            stats[cfg.sources[current_source].name]["shards"] = writer.files
                        writer, current_source = _LineShards(tmp / src.name, cfg.shard_max_docs), f["source"]
                    self._merge_file(g, f, src.name, stats[src.name], rank_files, writer, removed_fh, skipped_fh,
                                     log_bin)
                if rank_files is not None:
                    rank_files.close()
                if writer is not None:
                    writer.close()
                    stats[cfg.sources[current_source].name]["shards"] = writer.files
            result = finalize_stats(cfg, stats, time.time() - plan.started)
            write_json_atomic(tmp / "stats.json", result)
        except BaseException as exc:
            if writer is not None:
                writer.close(exc)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        replace_dir(tmp, out, producer=CORPUS_PRODUCER)
        self.stat_update("documents_kept", value=result["totals"]["kept"])
        return
        yield  # a generator step (datatrove drains it)

    @staticmethod
    def _merge_file(g, f, source, st, rf: _RankFiles, writer: _LineShards, removed_fh, skipped_fh, log_bin) -> None:
        fs = rf.stats[str(g)]
        path = f["path"]
        if fs["lines_read"] is not None:
            st["lines_read"][path] = fs["lines_read"]
        st["records"] += fs["records"]
        st["skipped"] += fs["skipped"]
        for reason, n in fs["by_skip"].items():
            st["by_skip"][reason] += n
        for _ in range(fs["skipped"]):
            skipped_fh.write(rf.skipped.readline())
        filtered = list(rf.removed_rows(source, path))
        events: list[tuple[int, int, Any]] = [(row["line"], 0, (row, raw)) for row, raw in filtered]
        while rf.next_fp < len(rf.fps) and int(rf.fps[rf.next_fp]["g"]) == g:
            rec = rf.fps[rf.next_fp]
            events.append((int(rec["line"]), 1, (rf.next_fp, int(rec["chars"]), bool(rec["repaired"]),
                                                 rf.cands.readline())))
            rf.next_fp += 1
        events.sort(key=lambda e: e[0])
        for _line, kind, item in events:
            if kind == 0:  # removed by a rule
                row, raw = item
                n = row["chars"]
                st["chars_in"] += n
                st["hist_before"][log_bin(n)] += 1
                st["filtered"] += 1
                st["by_rule"][row["rule"]] += 1
                removed_fh.write(raw)
                continue
            idx, n, repaired, raw = item
            st["chars_in"] += n
            st["hist_before"][log_bin(n)] += 1
            decision = rf.decisions.get(idx)
            if decision is not None:
                rule, dup_of = decision
                doc = json.loads(raw)
                st["duplicates"] += 1
                st["by_rule"][rule] += 1
                removed_fh.write(_row_bytes({"id": doc["id"], "source": doc["source"], "file": doc["file"],
                                             "line": doc["line"], "rule": rule, "chars": n,
                                             "preview": doc["text"][:80], "dup_of": dup_of}))
                continue
            st["kept"] += 1
            st["repaired"] += repaired
            st["chars_kept"] += n
            st["hist_after"][log_bin(n)] += 1
            writer.write(raw)
