"""A resumable, atomic output folder of safetensors shards.

The folder is assembled in ``.OUT.partial`` next to ``OUT`` and swapped in whole at the end
(:func:`~knowlm_utils.fileio.replace_dir`), so ``OUT`` is either the previous result or the new
complete one, never half of each. Each finished shard is renamed into the partial folder and
then recorded in ``.done/SHARD.json`` with the SHA-256 of its file(s) and what the operation
computed about its tensors. A run that was killed leaves the partial folder behind; the next run
with the same inputs and options (same :func:`fingerprint`) re-hashes each recorded shard and
skips it when its bytes still match, so only the shard being written when the kill came is
redone. Different inputs or options discard the partial folder (the project wrote it) and start
again. A lock file stops two runs from writing the same output at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm import tqdm

from ..fileio import (OUTPUT_MARKER, check_output_dir, read_json, remove_stale_temp, replace_dir, write_json_atomic,
                      write_output_marker)
from .checksums import file_sha256
from .shards import ShardPlan

PARTIAL_MARKER = ".knowlm-partial.json"
DONE_DIR = ".done"
LOCK_NAME = ".lock"
# files copied next to the weights (model config, generation defaults, tokenizer); never code
SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json",
              "vocab.json", "merges.txt")
TOKENIZER_FILES = tuple(f for f in SIDE_FILES if f not in ("config.json", "generation_config.json"))

# test hook: called with the shard's file name after each shard is recorded (a test raises here
# to simulate a crash between shards)
_after_shard: Callable[[str], None] | None = None


def fingerprint_files(paths: Iterable[str | os.PathLike]) -> list[list[Any]]:
    """``[[path, size, mtime_ns], ...]``: enough to notice an input changed between runs."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return out


class ReleaseOutput:
    """``with ReleaseOutput(out, producer=..., fingerprint=..., protected=[inputs]) as o:`` then
    :meth:`run` the shards, write the side files into :attr:`work`, and :meth:`finish`."""

    def __init__(self, out: str | os.PathLike, *, producer: str, fingerprint: dict[str, Any], overwrite: bool = False,
                 protected: Iterable[str | os.PathLike] = ()):
        self.out = check_output_dir(out, overwrite=overwrite, protected=list(protected))
        self.producer = producer
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from JSON
        self.work = self.out.parent / f".{self.out.name}.partial"
        self.resumed: list[str] = []
        self._lock_fh = None
        self.finished = False

    # -- setup ---------------------------------------------------------------------------------
    def __enter__(self) -> "ReleaseOutput":
        remove_stale_temp(self.out)
        if self.work.is_symlink() or (self.work.exists() and not self.work.is_dir()):
            raise ValueError(f"{self.work} is in the way (not a folder knowlm left); remove it")
        if self.work.is_dir():
            ours = (self.work / PARTIAL_MARKER).is_file() or (self.work / OUTPUT_MARKER).is_file()
            if not ours:
                raise ValueError(f"{self.work} exists and was not written by knowlm; move it away to write {self.out}")
        self.work.mkdir(parents=True, exist_ok=True)
        self._lock()
        marker = self.work / PARTIAL_MARKER
        previous = read_json(marker) if marker.is_file() else None
        if previous is None or previous.get("fingerprint") != self.fingerprint:
            self._clear()
            write_json_atomic(marker, {"producer": self.producer, "fingerprint": self.fingerprint,
                                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        for p in self.work.rglob("*.tmp"):  # what a killed writer left
            p.unlink(missing_ok=True)
        (self.work / DONE_DIR).mkdir(exist_ok=True)
        return self

    def _lock(self) -> None:
        self._lock_fh = open(self.work / LOCK_NAME, "a")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            self._lock_fh = None
            raise ValueError(f"{self.out}: another knowlm run is writing it now ({self.work / LOCK_NAME} is locked)") from None

    def _clear(self) -> None:
        for entry in self.work.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def __exit__(self, *exc) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    # -- shards --------------------------------------------------------------------------------
    def record_path(self, plan: ShardPlan) -> Path:
        return self.work / DONE_DIR / f"{plan.file}.json"

    def done(self, plan: ShardPlan) -> dict[str, Any] | None:
        """The record of a shard finished by an earlier run whose files still hash the same."""
        rec_path = self.record_path(plan)
        if not rec_path.is_file():
            return None
        try:
            rec = read_json(rec_path)
            files = rec["files"]
            for rel, sha in files.items():
                p = self.work / rel
                if not p.is_file() or file_sha256(p) != sha:
                    return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return rec

    def run(self, plans: list[ShardPlan], produce: Callable[[ShardPlan, Callable[[int], None]], dict[str, Any]], *,
            progress: bool = True, desc: str = "write") -> dict[str, dict[str, Any]]:
        """For each shard: reuse a verified earlier record, or call ``produce(plan, advance)``,
        which writes the shard's files into :attr:`work` and returns its record (with ``"files":
        {relative path: sha256}``); ``advance(nbytes)`` moves the progress bar. Returns the records
        by shard file name."""
        records: dict[str, dict[str, Any]] = {}
        with tqdm(total=sum(p.nbytes for p in plans), unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
            for plan in plans:
                rec = self.done(plan)
                if rec is not None:
                    self.resumed.append(plan.file)
                    bar.update(plan.nbytes)
                else:
                    self.record_path(plan).unlink(missing_ok=True)
                    rec = produce(plan, bar.update)
                    write_json_atomic(self.record_path(plan), rec)
                records[plan.file] = rec
                if _after_shard is not None:
                    _after_shard(plan.file)
        return records

    # -- finishing -----------------------------------------------------------------------------
    def copy_side_files(self, *sources: str | os.PathLike | None, names: Iterable[str] = SIDE_FILES) -> list[str]:
        """Copy each of ``names`` from the first source folder that has it; returns the copied names."""
        copied = []
        for name in names:
            for src in sources:
                if src is None:
                    continue
                p = Path(src) / name
                if p.is_file():  # a regular file, or a link to one (a Hugging Face cache snapshot)
                    tmp = self.work / f".{name}.copy.tmp"
                    shutil.copyfile(p, tmp)
                    os.replace(tmp, self.work / name)
                    copied.append(name)
                    break
        return copied

    def finish(self) -> Path:
        """Mark the folder as the project's, drop the resume records and swap it onto ``out``."""
        write_output_marker(self.work, self.producer)
        shutil.rmtree(self.work / DONE_DIR, ignore_errors=True)
        (self.work / PARTIAL_MARKER).unlink(missing_ok=True)
        (self.work / LOCK_NAME).unlink(missing_ok=True)
        replace_dir(self.work, self.out)
        self.finished = True
        return self.out


__all__ = ["ReleaseOutput", "fingerprint_files", "SIDE_FILES", "TOKENIZER_FILES", "PARTIAL_MARKER"]
