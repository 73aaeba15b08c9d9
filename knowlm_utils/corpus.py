"""Stage 01 — corpus construction: declarative sources → streaming readers → cleaning
filters → exact/near dedup → cleaned JSONL shards per source + ``stats.json``.

Accounting invariant (per source and in total), reported in ``stats.json``::

    records read = kept + filtered + duplicates + skipped

* ``skipped``: lines that cannot become a document (invalid UTF-8, invalid JSON — also JSON
  nested too deeply or with a number too long to convert —, missing or non-string template
  field, a text with a lone surrogate ``\\ud800`` escape, ...). Each is listed with file:line in
  ``skipped.jsonl``; with ``bad_lines: fail`` the first one raises :class:`BadLineError` instead.
  One bad line never ends the build.
* ``filtered`` / ``duplicates``: each removed document is listed with file:line, rule and
  (for duplicates) the id of the kept copy in ``removed.jsonl``. Nothing disappears silently.

Reading: ``\\n``, ``\\r\\n`` and a lone ``\\r`` all end a line (line numbers count them all), and
a UTF-8 byte-order mark at the start of a file (for JSONL: of any line) is dropped.

Safety: the output folder is replaced whole, so :func:`build` first checks it with
:func:`~knowlm_utils.fileio.check_output_dir` (never the current folder, home, root or a folder
holding the sources or the config; a non-empty folder only when the project wrote it — the
``.knowlm-output.json`` marker — or with ``overwrite: true`` / ``--overwrite``). Source names are
plain names, so shards always land inside the output folder. An unreadable source file stops
the build with one line naming it, before anything is written.

Paths in a config file are relative to that file. The same :func:`build` runs in notebook 01,
``knowlm corpus build CONFIG.yaml`` and the tests.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
import shutil
import string
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from .cleaning import RULES, DocumentFilter, FilterConfig
from .config import Overrides, Section, StageConfig, field, show_config_fields, stage_command
from .dedup import DedupConfig, Deduplicator
from .fileio import (OUTPUT_MARKER, atomic_open, check_output_dir, remove_stale_temp, replace_dir,
                     temp_dir_beside, write_json_atomic)
from .workers import effective_workers, process_pool

FORMATS = ("jsonl", "jsonl.gz", "txt", "txt.gz")
SKIP_REASONS = ("invalid_utf8", "invalid_json", "not_an_object", "missing_field", "wrong_type",
                "nul_byte", "line_too_long", "corrupt_compressed_stream", "invalid_text")
PRODUCER = "knowlm corpus build"  # recorded in the output folder's marker
# files of the output folder itself: a source may not be named like one of them
OUTPUT_FILES = ("stats.json", "removed.jsonl", "skipped.jsonl")
# a source name becomes a folder inside the output folder: letters, digits, '_', '-', '.' (not first)
SOURCE_NAME = re.compile(r"\w[\w.-]{0,99}")
UTF8_BOM = b"\xef\xbb\xbf"
# log10(characters) bin edges for the length histograms: 1 .. 10^7 in 0.1 steps
LENGTH_BINS = [round(x, 1) for x in np.arange(0.0, 7.05, 0.1)]


class BadLineError(ValueError):
    """Raised with ``bad_lines: fail``; the message names file, line and reason."""


class CorpusError(ValueError):
    """A source file or the output folder cannot be used (unreadable, not UTF-8 named, cannot
    be written); the message names the file. ``knowlm`` prints it as one line."""


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " …" + text[-3:]


def _check_text(key: str, value: str | None) -> None:
    """Refuse a config string that cannot be written as UTF-8 (a lone surrogate from a YAML
    ``"\\ud800"`` escape would otherwise fail only when the first document is written)."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{key}: {_short(value)} holds a lone surrogate {value[exc.start]!r} at character "
                         f"{exc.start}; use valid Unicode text") from None


@dataclass
class SourceConfig(Section):
    name: str = field(help="source name: output folder and the `source` field of every document")
    path: str = field(help="file path or glob (relative to the config file)")
    format: str | None = field(None, choices=FORMATS, help="the file format; default: from the file extension")
    template: str = field("{text}", help="text template over record fields, e.g. '{title}\\n{content}'; "
                                         "for txt sources the line is the field `text`")
    language: str = field("zh", help="zh, en, code or mixed (used by later stages to pick a splitter)")
    skip_filters: list[str] = field(default_factory=list, choices=RULES,
                                    help="filter rules not applied to this source (e.g. symbol_ratio and "
                                         "repetition for code)")

    def validate(self) -> None:
        if not SOURCE_NAME.fullmatch(self.name) or self.name in OUTPUT_FILES:
            raise ValueError(f"name: {_short(self.name)} is not a plain source name; it becomes a folder inside the "
                             "output folder, so use letters, digits, '_', '-' and '.' (not first), at most 100 "
                             f"characters, and none of {list(OUTPUT_FILES)}")
        for key in ("path", "template", "language"):
            _check_text(key, getattr(self, key))
        template_fields(self.template, self.name)


@dataclass
class CorpusConfig(StageConfig):
    """Stage 01: declarative sources → cleaning filters → exact/near dedup → JSONL shards."""

    sources: list[SourceConfig] = field(help="the input sources, processed in this order")
    output_dir: str = field("corpus_out", help="where shards and stats go (relative to the config file)")
    bad_lines: str = field("skip", choices=("skip", "fail"),
                           help="'skip' (count and report) or 'fail' (raise on the first bad line)")
    max_line_bytes: int = field(16 * 2**20, ge=1, help="longer lines are skipped as line_too_long without being "
                                                       "read into memory whole")
    shard_max_docs: int = field(100_000, ge=1, help="documents per output shard")
    max_docs_per_source: int | None = field(None, ge=0, help="read at most this many records per source "
                                                             "(smoke runs)")
    filters: FilterConfig = field(default_factory=FilterConfig, help="cleaning rules and thresholds")
    dedup: DedupConfig = field(default_factory=DedupConfig, help="exact and near-duplicate removal")
    progress: bool = field(True, help="show a progress bar per source")
    workers: int = field(1, ge=1, help="processes that run the filters and compute dedup fingerprints; the "
                                       "dedup decision itself stays in order in the main process, so the "
                                       "output is identical for any number of workers; more than the CPUs "
                                       "available are lowered to that count (see allow_oversubscribe)")
    allow_oversubscribe: bool = field(False, help="start `workers` processes even when that is more than the CPUs "
                                                  "available (default: lowered to the CPU count, said once)")
    overwrite: bool = field(False, help="replace an existing non-empty output folder that knowlm did not write "
                                        "(no .knowlm-output.json inside; its contents are deleted); never allowed "
                                        "for the current folder, home, root or a folder holding the sources or "
                                        "the config. CLI: --overwrite")

    def validate(self) -> None:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"sources: duplicate source name(s) {dup}")
        if not self.sources:
            raise ValueError("sources: at least one source is required")


def load_corpus_config(path: str | os.PathLike, overrides: Overrides = None) -> CorpusConfig:
    """``CorpusConfig.from_yaml``: relative paths in the file are taken from its folder."""
    return CorpusConfig.from_yaml(path, overrides)


def template_fields(template: str, where: str = "template") -> list[str]:
    """Field names of a str.format template; only plain names are allowed (no attribute or
    index access, no conversions), so rendering user templates can never run code."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{where}: invalid template {template!r}: {exc}") from exc
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise ValueError(f"{where}: template field {{{name}}} must be a plain field name")
        names.append(name)
    if not names:
        raise ValueError(f"{where}: template {template!r} names no field")
    return names


# ----------------------------------------------------------------------------- reading ----
@dataclass
class Record:
    """One physical line of a source file: either a document text or a skip reason."""
    file: str
    line: int
    text: str | None = None
    skip: str | None = None
    detail: str = ""
    repaired: bool = False  # text was mojibake and ftfy undid it (mojibake_action: fix)


def source_files(src: SourceConfig, base_dir: str | os.PathLike | None) -> list[Path]:
    pattern = Path(src.path).expanduser()
    if not pattern.is_absolute() and base_dir is not None:
        pattern = Path(base_dir) / pattern
    files = sorted({Path(p).resolve() for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file()})
    if not files:
        raise FileNotFoundError(f"source {src.name!r}: no file matches {pattern}")
    for f in files:  # every document records its file: the name must be writable as UTF-8
        try:
            str(f).encode("utf-8")
        except UnicodeEncodeError:
            raise CorpusError(f"source {src.name!r}: the file name {_short(str(f), 200)} is not valid UTF-8; "
                              "rename the file") from None
    return files


def check_readable(src: SourceConfig, path: Path) -> None:
    """Raise :class:`CorpusError` naming ``path`` when it cannot be opened for reading."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CorpusError(f"source {src.name!r}: cannot read {path}: {exc.strerror or exc}") from None


def file_format(src: SourceConfig, path: Path) -> str:
    if src.format:
        return src.format
    name = path.name.lower()
    for fmt in sorted(FORMATS, key=len, reverse=True):
        if name.endswith("." + fmt):
            return fmt
    raise ValueError(f"source {src.name!r}: cannot tell the format of {path}; set `format`")


def _raw_lines(fh, max_bytes: int, block: int = 1 << 16) -> Iterator[bytes | None]:
    """Yield each line of binary stream ``fh`` without its line end (``\\n``, ``\\r\\n`` or a lone
    ``\\r``, the rule of ``bytes.splitlines``), or ``None`` for a line longer than ``max_bytes`` —
    never holding more than ``max_bytes`` of one line (plus one read block) in memory. A file's
    last line needs no line end; an empty file has no lines."""
    parts: list[bytes] = []  # the current line's pieces, while it is within max_bytes
    size = 0                 # bytes of the current line so far
    after_cr = False         # the last block ended with \r: a \n first in the next one belongs to it
    read = getattr(fh, "read1", fh.read)  # one underlying read: what was decoded before a corrupt
    while True:                           # gzip member is yielded before its error is raised
        data = read(block)
        if not data:
            break
        if after_cr and data.startswith(b"\n"):
            data = data[1:]
        after_cr = data.endswith(b"\r")
        for piece in data.splitlines(keepends=True):
            if piece.endswith((b"\n", b"\r")):  # a complete line (one line end, nothing else inside)
                body = piece.rstrip(b"\r\n")
                size += len(body)
                if size <= max_bytes:
                    yield b"".join(parts) + body if parts else body
                else:
                    yield None
                parts, size = [], 0
            else:  # the block ends inside this line
                size += len(piece)
                if size <= max_bytes:
                    parts.append(piece)
                else:
                    parts = []
    if size:
        yield b"".join(parts) if size <= max_bytes else None


def _parse(raw: bytes, fmt: str, fields: list[str], template: str) -> tuple[str | None, str | None, str]:
    """Return (text, skip_reason, detail) for one line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, "invalid_utf8", f"byte {exc.start}: {exc.reason}"
    if "\x00" in line:
        return None, "nul_byte", f"NUL at column {line.index(chr(0)) + 1}"
    if fmt.startswith("txt"):
        return line, None, ""  # decoded from valid UTF-8: no surrogates
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, "invalid_json", f"column {exc.colno}: {exc.msg}"
    except RecursionError:
        return None, "invalid_json", "nested too deeply to parse"
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        return None, "invalid_json", " ".join(str(exc).split())[:200]
    if not isinstance(obj, dict):
        return None, "not_an_object", f"got {type(obj).__name__}"
    for name in fields:
        if name not in obj:
            return None, "missing_field", f"no field {_short(name)}"
        if not isinstance(obj[name], str):
            return None, "wrong_type", f"field {_short(name)} is {type(obj[name]).__name__}, not str"
        if "\\u" in line:  # only a \u escape can give a lone surrogate, which UTF-8 cannot write
            try:
                obj[name].encode("utf-8")
            except UnicodeEncodeError as exc:
                return None, "invalid_text", (f"field {_short(name)}: lone surrogate U+{ord(obj[name][exc.start]):04X} "
                                              f"at character {exc.start + 1} (a \\u escape that is not a valid pair)")
    return template.format_map({k: obj[k] for k in fields}), None, ""


def iter_records(src: SourceConfig, path: Path, max_line_bytes: int = 16 * 2**20,
                 progress: tqdm | None = None) -> Iterator[Record]:
    """Stream one file of a source as :class:`Record` objects (never raises on bad data; an
    unreadable file raises :class:`CorpusError` naming it)."""
    fmt = file_format(src, path)
    fields = ["text"] if fmt.startswith("txt") else template_fields(src.template, src.name)
    template = "{text}" if fmt.startswith("txt") else src.template
    line_no = 0
    try:
        raw_fh = open(path, "rb")
    except OSError as exc:
        raise CorpusError(f"source {src.name!r}: cannot read {path}: {exc.strerror or exc}") from None
    with raw_fh:
        fh = gzip.GzipFile(fileobj=raw_fh, mode="rb") if fmt.endswith(".gz") else raw_fh
        last_pos = 0
        try:
            for raw in _raw_lines(fh, max_line_bytes):
                line_no += 1
                if progress is not None:
                    pos = raw_fh.tell()
                    progress.update(pos - last_pos)
                    last_pos = pos
                if raw is None:
                    yield Record(str(path), line_no, skip="line_too_long", detail=f"longer than {max_line_bytes} bytes")
                    continue
                if raw.startswith(UTF8_BOM) and (line_no == 1 or not fmt.startswith("txt")):
                    raw = raw[len(UTF8_BOM):]  # no JSON line can start with one: files concatenated with cat
                text, skip, detail = _parse(raw, fmt, fields, template)
                yield Record(str(path), line_no, text=text, skip=skip, detail=detail)
        except (OSError, EOFError, zlib.error) as exc:
            yield Record(str(path), line_no + 1, skip="corrupt_compressed_stream", detail=str(exc))


# ----------------------------------------------------------------------------- building ---
def log_bin(n_chars: int) -> int:
    """The length-histogram bin of a document of ``n_chars`` characters (log10 bins, LENGTH_BINS)."""
    return int(np.searchsorted(LENGTH_BINS, np.log10(max(n_chars, 1)), side="right") - 1)


class _ShardWriter:
    def __init__(self, folder: Path, max_docs: int):
        self.folder, self.max_docs = folder, max_docs
        self.index, self.count, self.fh, self.ctx, self.files = 0, 0, None, None, []

    def write(self, row: dict) -> None:
        if self.fh is None or self.count >= self.max_docs:
            self.close()
            path = self.folder / f"part-{self.index:05d}.jsonl"
            self.ctx = atomic_open(path, "w")
            self.fh = self.ctx.__enter__()
            self.files.append(path.name)
            self.index, self.count = self.index + 1, 0
        self.fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self, exc: BaseException | None = None) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(type(exc) if exc else None, exc, None)
            self.ctx = self.fh = None


def new_source_stats(src: SourceConfig, files: list[Path]) -> dict[str, Any]:
    """The empty counters of one source in ``stats.json`` (shared with the datatrove build)."""
    return {"language": src.language, "files": [str(f) for f in files], "lines_read": {},
            "records": 0, "kept": 0, "filtered": 0, "duplicates": 0, "skipped": 0, "repaired": 0,
            "by_rule": Counter(), "by_skip": Counter(), "chars_in": 0, "chars_kept": 0,
            "hist_before": [0] * len(LENGTH_BINS), "hist_after": [0] * len(LENGTH_BINS), "shards": []}


def _is_unmarked_corpus(out: Path) -> bool:
    """True for a corpus folder written by this stage before outputs carried the marker: only
    ``stats.json`` (with its ``sources``), ``removed.jsonl``, ``skipped.jsonl`` and one folder of
    ``part-NNNNN.jsonl`` shards per source — nothing a user put there, so it may be replaced."""
    stats_path = out / "stats.json"
    try:
        if stats_path.is_symlink() or not stats_path.is_file() or stats_path.stat().st_size > 2**30:
            return False
        with open(stats_path, encoding="utf-8") as fh:
            sources = json.load(fh)["sources"]
        entries = list(out.iterdir())
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return False
    if not isinstance(sources, dict):
        return False
    for p in entries:
        if p.name in OUTPUT_FILES and p.is_file() and not p.is_symlink():
            continue
        if not (p.name in sources and p.is_dir() and not p.is_symlink()):
            return False
        if not all(re.fullmatch(r"part-\d{5}\.jsonl", q.name) and q.is_file() and not q.is_symlink()
                   for q in p.iterdir()):
            return False
    return True


def _list_files(config: CorpusConfig) -> list[Path]:
    """Filter list files named by path (not ``package:``): inputs of the run as well."""
    out = []
    for spec in config.filters.blocklist_files + config.filters.boilerplate_files:
        if not spec.startswith("package:"):
            p = Path(spec).expanduser()
            out.append(p if p.is_absolute() or config.base_dir is None else Path(config.base_dir) / p)
    return out


def prepare_output(config: CorpusConfig, out: Path, files: dict[str, list[Path]]) -> Path:
    """Check the output folder before anything is read or written (see the module's Safety
    note) and clear what a killed earlier run left next to it; returns the resolved folder."""
    protected = [f for fs in files.values() for f in fs] + _list_files(config)
    if config.base_dir:
        protected.append(Path(config.base_dir))  # the config file's folder
    resolved = Path(out).expanduser().resolve()
    legacy = resolved.is_dir() and not (resolved / OUTPUT_MARKER).exists() and _is_unmarked_corpus(resolved)
    out = check_output_dir(out, overwrite=config.overwrite or legacy, protected=protected)
    remove_stale_temp(out)
    return out


def build(config: CorpusConfig, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run the whole stage; returns the stats dict (also written to ``stats.json``).

    Output is assembled in a temporary sibling folder and moved into place at the end, so an
    interrupted run never leaves a half-built corpus under the final name. Before anything is
    read: the output folder is checked (:func:`prepare_output`: it may only replace an empty
    folder, one knowlm wrote, or any other with ``overwrite``) and every source file must be
    readable (else :class:`CorpusError` naming it).
    """
    out = Path(output_dir) if output_dir else config.path(config.output_dir)
    files = {src.name: source_files(src, config.base_dir) for src in config.sources}
    out = prepare_output(config, out, files)
    for src in config.sources:
        for path in files[src.name]:
            check_readable(src, path)
    t0 = time.perf_counter()
    analyser = _Analyser(config)  # also fails fast on unreadable block/boilerplate lists
    dedup = Deduplicator(config.dedup)
    n_workers = effective_workers(config.workers, config.allow_oversubscribe)
    stats: dict[str, Any] = {}
    pool = None
    try:
        tmp = temp_dir_beside(out)
    except OSError as exc:
        raise CorpusError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    try:
        if n_workers > 1:
            pool = process_pool(n_workers, _worker_init, (config,))
        with atomic_open(tmp / "removed.jsonl") as removed_fh, atomic_open(tmp / "skipped.jsonl") as skipped_fh:
            for src in config.sources:
                st = stats[src.name] = new_source_stats(src, files[src.name])
                _build_source(config, src, files[src.name], st, dedup, analyser, pool, tmp, removed_fh, skipped_fh)
        result = finalize_stats(config, stats, time.perf_counter() - t0)
        write_json_atomic(tmp / "stats.json", result)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # e.g. disk full, or a folder made read-only while writing
            where = f"{exc.filename}: " if exc.filename else ""
            raise CorpusError(f"corpus build into {out} failed: {where}{exc.strerror or exc}") from exc
        raise
    finally:
        if pool is not None:
            pool.terminate()
    try:
        replace_dir(tmp, out, producer=PRODUCER)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorpusError(f"cannot move the finished corpus into {out}: {exc.strerror or exc}") from exc
    return result


class _Analyser:
    """Per-document work that needs no global state: filters, then the dedup fingerprint."""

    def __init__(self, config: CorpusConfig):
        self.filter = DocumentFilter(config.filters, Path(config.base_dir) if config.base_dir else None)
        self.dedup = Deduplicator(config.dedup)

    def __call__(self, item: tuple[Record, frozenset[str]]):
        rec, skip_rules = item
        if rec.skip is not None:
            return rec, None, None
        if "mojibake" not in skip_rules and (fixed := self.filter.repair(rec.text)) is not None:
            rec.text, rec.repaired = fixed, True
        rule = self.filter.check(rec.text, skip_rules)
        return rec, rule, (None if rule else self.dedup.fingerprint(rec.text))


_WORKER: _Analyser | None = None


def _worker_init(config: CorpusConfig) -> None:
    global _WORKER
    _WORKER = _Analyser(config)


def _worker_run(item):
    return _WORKER(item)


def _analysed(items: Iterator, analyser: _Analyser, pool) -> Iterator:
    """In order, in this process or spread over the worker pool."""
    return map(analyser, items) if pool is None else pool.imap(_worker_run, items, chunksize=32)


def _limited(config: CorpusConfig, src: SourceConfig, files: list[Path], bar, n_read: dict) -> Iterator:
    """Records of a source (with its skip set), honouring max_docs_per_source."""
    count = 0
    skip_rules = frozenset(src.skip_filters)
    for path in files:
        n_read[str(path)] = 0
        for rec in iter_records(src, path, config.max_line_bytes, bar):
            if config.max_docs_per_source is not None and count >= config.max_docs_per_source:
                return
            count += 1
            n_read[str(path)] = rec.line
            yield rec, skip_rules


def file_labels(files: list[Path]) -> dict[str, str | None]:
    """The file part of document ids: none for a one-file source, else the file name — or,
    when names repeat (a ``**`` glob over folders), the path below the files' common folder,
    so ids stay unique."""
    if len(files) == 1:
        return {str(files[0]): None}
    if len({f.name for f in files}) == len(files):
        return {str(f): f.name for f in files}
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    return {str(f): f.relative_to(root).as_posix() for f in files}


def _build_source(config, src, files, st, dedup, analyser, pool, tmp, removed_fh, skipped_fh) -> None:
    writer = _ShardWriter(tmp / src.name, config.shard_max_docs)
    labels = file_labels(files)
    total_bytes = sum(f.stat().st_size for f in files)
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"corpus:{src.name}",
               disable=not config.progress, mininterval=1.0)
    try:
        for rec, rule, fp in _analysed(_limited(config, src, files, bar, st["lines_read"]), analyser, pool):
            st["records"] += 1
            if rec.skip is not None:
                if config.bad_lines == "fail":
                    raise BadLineError(f"{rec.file}:{rec.line}: {rec.skip} ({rec.detail})")
                st["skipped"] += 1
                st["by_skip"][rec.skip] += 1
                skipped_fh.write(json.dumps({"source": src.name, "file": rec.file, "line": rec.line,
                                             "reason": rec.skip, "detail": rec.detail}) + "\n")
                continue
            _process_doc(src, rec, rule, fp, st, dedup, writer, removed_fh, labels[rec.file])
        writer.close()
    except BaseException as exc:
        writer.close(exc)
        raise
    finally:
        bar.close()
    st["shards"] = writer.files


def _process_doc(src, rec, rule, fp, st, dedup, writer, removed_fh, label: str | None) -> None:
    text = rec.text
    n = len(text)
    st["chars_in"] += n
    st["hist_before"][log_bin(n)] += 1
    doc_id = f"{src.name}:{rec.line}" if label is None else f"{src.name}:{label}:{rec.line}"
    dup_of = None
    if rule is None:
        found = dedup.check_fingerprint(doc_id, *fp)
        if found is not None:
            rule, dup_of = found
    if rule is not None:
        key = "duplicates" if dup_of is not None else "filtered"
        st[key] += 1
        st["by_rule"][rule] += 1
        row = {"id": doc_id, "source": src.name, "file": rec.file, "line": rec.line, "rule": rule,
               "chars": n, "preview": text[:80]}
        if dup_of is not None:
            row["dup_of"] = dup_of
        removed_fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    st["kept"] += 1
    st["repaired"] += rec.repaired
    st["chars_kept"] += n
    st["hist_after"][log_bin(n)] += 1
    writer.write({"id": doc_id, "text": text, "source": src.name, "lang": src.language,
                  "file": rec.file, "line": rec.line})


def finalize_stats(config: CorpusConfig, stats: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """``stats.json`` from the per-source counters: totals, rates and histograms (shared with the
    datatrove build, so both write the same report)."""
    keys = ("records", "kept", "filtered", "duplicates", "skipped", "repaired", "chars_in", "chars_kept")
    totals = {k: sum(s[k] for s in stats.values()) for k in keys}
    for name, s in stats.items():
        s["by_rule"], s["by_skip"] = dict(s["by_rule"]), dict(s["by_skip"])
        if s["records"] != s["kept"] + s["filtered"] + s["duplicates"] + s["skipped"]:
            raise AssertionError(f"accounting mismatch in source {name}: {s}")
    return {"sources": stats, "totals": totals, "length_bins_log10": LENGTH_BINS,
            "rules": list(RULES), "skip_reasons": list(SKIP_REASONS), "wall_s": round(wall_s, 3),
            "config": config.to_dict()}


def main(config: CorpusConfig | str | os.PathLike, overrides: Overrides = None) -> dict[str, Any]:
    """Entry point shared by the CLI, scripts and notebooks: a config object or a YAML path,
    plus ``key=value`` overrides (``output_dir=...`` picks the output folder)."""
    return build(CorpusConfig.load(config, overrides))


# ----------------------------------------------------------------------------- CLI --------
def add_cli(subparsers) -> None:
    """``knowlm corpus build|evaluate``."""
    p = subparsers.add_parser("corpus", help="stage 01: build and measure the cleaned pretraining corpus")
    show_config_fields(p, CorpusConfig)  # the fields of `build`/`train`, shown one level up too
    sub = p.add_subparsers(dest="corpus_cmd", required=True)
    b = stage_command(sub.add_parser("build", help="read sources, clean, dedup, write shards + stats.json"),
                      CorpusConfig, "configs/corpus/sample.yaml", "dedup.threshold=0.9", _cli_build)
    # a flag without a value: collected by cli_overrides as the shortcut overwrite=true
    b.add_argument("--overwrite", action="store_const", const="true", dest="config_shortcut_overwrite",
                   help="replace an existing output folder that knowlm did not write (= -o overwrite=true); never "
                        "the current folder, home, root or a folder holding the sources or the config")
    e = sub.add_parser("evaluate", help="recall/precision of each rule against a noise manifest")
    e.add_argument("corpus_dir")
    e.add_argument("--manifest", required=True, help="e.g. data_samples/corpus/noise_manifest.jsonl")
    e.set_defaults(func=_cli_evaluate)


def _cli_build(config: CorpusConfig) -> int:
    stats = build(config)
    t = stats["totals"]
    print(f"records {t['records']}: kept {t['kept']}, filtered {t['filtered']}, duplicates {t['duplicates']}, "
          f"skipped {t['skipped']} → {config.path(config.output_dir)} ({stats['wall_s']:.1f} s)")
    for name, s in stats["sources"].items():
        rules = ", ".join(f"{k} {v}" for k, v in sorted(s["by_rule"].items())) or "-"
        skips = ", ".join(f"{k} {v}" for k, v in sorted(s["by_skip"].items())) or "-"
        print(f"  {name}: kept {s['kept']}/{s['records']}; removed: {rules}; skipped: {skips}")
    return 0


def _cli_evaluate(args) -> int:
    from .corpus_report import evaluate_against_manifest

    print(evaluate_against_manifest(args.corpus_dir, args.manifest).to_string())
    return 0


# --------------------------------------------------------------------------------------------
# Reading the cleaned corpus (the input of stages 02-04)

def is_heldout(doc_id: str, percent: float) -> bool:
    """Deterministic held-out split: a document is held out when a stable hash of its id
    falls in the first ``percent`` of 10,000 buckets. The same id is held out in every stage
    (tokenizer evaluation in 02, the validation index in 04), on every machine."""
    if percent <= 0:
        return False
    return zlib.crc32(doc_id.encode("utf-8")) % 10000 < round(percent * 100)


def cleaned_sources(corpus_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{source: {"language": ..., "shards": [paths], "documents": kept count}}`` of a corpus
    built by :func:`build`, in build order (read from ``stats.json``, so nothing is scanned)."""
    corpus_dir = Path(corpus_dir)
    stats_path = corpus_dir / "stats.json"
    if not stats_path.is_file():
        raise FileNotFoundError(f"{stats_path} not found: {corpus_dir} is not a corpus built by "
                                "`knowlm corpus build` (notebook 01)")
    try:
        with open(stats_path, encoding="utf-8") as fh:
            stats = json.load(fh)
        sources = stats["sources"]
        out: dict[str, dict[str, Any]] = {}
        for name, st in sources.items():
            shards = st["shards"]
            # names and shard files as build() writes them: a damaged or edited stats.json can
            # never point the later stages at files outside the corpus folder
            if not SOURCE_NAME.fullmatch(name) or name in OUTPUT_FILES or not isinstance(shards, list) or not all(
                    isinstance(s, str) and re.fullmatch(r"part-\d{5}\.jsonl", s) for s in shards):
                raise ValueError(f"source {_short(name)} has an invalid name or shard list")
            out[name] = {"language": st["language"], "shards": [corpus_dir / name / s for s in shards],
                         "documents": st.get("kept")}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"{stats_path}: not the stats of a corpus built by `knowlm corpus build` "
                         f"({type(exc).__name__}: {_short(str(exc), 120)})") from None
    return out


def iter_cleaned_documents(corpus_dir: str | os.PathLike, sources: list[str] | None = None,
                           split: str = "all", heldout_percent: float = 0.0,
                           max_docs_per_source: int | None = None) -> Iterator[dict[str, Any]]:
    """Stream the cleaned documents (``id, text, source, lang, file, line``) of a built corpus.

    ``split``: ``"all"``, ``"train"`` (not held out) or ``"heldout"`` (see :func:`is_heldout`).
    A shard line that is not a JSON object with a string ``text`` raises an error naming the
    shard and line (the corpus stage never writes one, so it means the files were damaged).
    """
    if split not in ("all", "train", "heldout"):
        raise ValueError(f"split must be 'all', 'train' or 'heldout', got {split!r}")
    available = cleaned_sources(corpus_dir)
    unknown = sorted(set(sources or []) - set(available))
    if unknown:
        raise ValueError(f"{corpus_dir}: unknown source(s) {unknown}; the corpus has {sorted(available)}")
    for name, info in available.items():
        if sources is not None and name not in sources:
            continue
        n = 0
        for shard in info["shards"]:
            with open(shard, encoding="utf-8") as fh:
                for line_no, line in enumerate(fh, 1):
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{shard}:{line_no}: not valid JSON ({exc.msg})") from None
                    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                        raise ValueError(f"{shard}:{line_no}: expected an object with a string 'text'")
                    if split != "all" and is_heldout(str(row.get("id", "")), heldout_percent) != (split == "heldout"):
                        continue
                    if max_docs_per_source is not None and n >= max_docs_per_source:
                        break
                    n += 1
                    yield row
            if max_docs_per_source is not None and n >= max_docs_per_source:
                break
