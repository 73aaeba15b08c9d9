"""``SHA256SUMS`` / ``MD5SUMS`` lists of a folder, in the format ``sha256sum -c`` / ``md5sum -c`` read
(``<hex>  <path>`` per line, paths relative to the folder: ``cd DIR && sha256sum -c SHA256SUMS``).

    knowlm checksum make DIR [--algo sha256|md5]       write DIR/SHA256SUMS (or MD5SUMS)
    knowlm checksum verify DIR [--list FILE]           check DIR against a list (ours or a published one)

``make`` lists every regular file except hidden ones and pickles (``*.bin``, ``*.pt``, ``*.pth`` …):
a pickle's bytes depend on the torch version that wrote it, so its checksum proves little and
fails often; hash its tensors instead (``knowlm weights manifest``). ``verify`` checks any list,
including a published one of pickles (KnowLM's MD5 of its ``.bin`` shards); the algorithm comes
from the list's name or the length of its hashes.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..fileio import write_text_atomic
from .naming import PICKLE_SUFFIXES, few_names

LIST_NAMES = {"sha256": "SHA256SUMS", "md5": "MD5SUMS"}
_ALGO_BY_LEN = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_CHUNK = 8 << 20


def file_hash(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file, read in 8 MiB chunks."""
    h = hashlib.new(algo)
    buf = memoryview(bytearray(_CHUNK))
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(buf[:n])
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    return file_hash(path, "sha256")


def listed_files(folder: str | os.PathLike, include_pickles: bool = False) -> tuple[list[str], list[str]]:
    """``(files, pickles_left_out)``: relative paths of the regular files under ``folder``, sorted,
    without hidden entries, checksum lists and (unless ``include_pickles``) pickles."""
    root = Path(folder)
    files, pickles = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if name.startswith(".") or name in LIST_NAMES.values() or p.is_symlink() or not p.is_file():
                continue
            if p.suffix in PICKLE_SUFFIXES and not include_pickles:
                pickles.append(rel)
                continue
            if "\n" in rel or "\\" in rel:
                raise ValueError(f"{p}: a file name with a newline or backslash cannot be put in a checksum list")
            files.append(rel)
    return sorted(files), sorted(pickles)


def format_list(hashes: dict[str, str]) -> str:
    return "".join(f"{h}  {rel}\n" for rel, h in sorted(hashes.items()))


@dataclass
class ChecksumList:
    """What :func:`make_checksums` wrote."""

    path: str
    algo: str
    files: int
    bytes: int
    pickles_left_out: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        note = ""
        if self.pickles_left_out:
            note = (f"; {len(self.pickles_left_out)} pickle(s) left out ({few_names(self.pickles_left_out)}): their "
                    "bytes depend on the torch version — `knowlm weights manifest` hashes their tensors")
        return f"wrote {self.path}: {self.files} files, {self.bytes / 1e9:.2f} GB ({self.algo}){note}"


def make_checksums(folder: str | os.PathLike, algo: str = "sha256", out: str | os.PathLike | None = None,
                   include_pickles: bool = False) -> ChecksumList:
    """Write ``folder/SHA256SUMS`` (``algo="md5"``: ``MD5SUMS``; or ``out``) listing every file
    (see :func:`listed_files`); returns what was written."""
    if algo not in LIST_NAMES:
        raise ValueError(f"unknown checksum algorithm {algo!r}; use sha256 or md5")
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    t0 = time.perf_counter()
    files, pickles = listed_files(root, include_pickles)
    hashes = {rel: file_hash(root / rel, algo) for rel in files}
    path = Path(out) if out is not None else root / LIST_NAMES[algo]
    write_text_atomic(path, format_list(hashes))
    return ChecksumList(str(path), algo, len(files), sum((root / f).stat().st_size for f in files), pickles,
                        time.perf_counter() - t0)


def write_checksums(folder: str | os.PathLike, hashes: dict[str, str], algo: str = "sha256") -> Path:
    """Write a list from hashes already computed (``{relative path: hex}``)."""
    path = Path(folder) / LIST_NAMES[algo]
    write_text_atomic(path, format_list(hashes))
    return path


def read_list(path: str | os.PathLike) -> tuple[str, dict[str, str]]:
    """``(algo, {relative path: hex})`` of a ``sha256sum``/``md5sum`` list."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text checksum list") from None
    entries: dict[str, str] = {}
    lengths = set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.fullmatch(r"\\?([0-9a-fA-F]{32,128}) [ *](.+)", line.rstrip("\r"))
        if not m:
            raise ValueError(f"{path}:{n}: not a checksum line (hex digest, two spaces, file): {line[:80]!r}")
        rel = m.group(2).strip()
        rel = rel[2:] if rel.startswith("./") else rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"{path}:{n}: {rel!r} points outside the folder")
        entries[rel] = m.group(1).lower()
        lengths.add(len(m.group(1)))
    if not entries:
        raise ValueError(f"{path}: no checksums in the list")
    if len(lengths) != 1 or lengths.pop() not in _ALGO_BY_LEN:
        raise ValueError(f"{path}: hashes of mixed or unknown lengths")
    algo = _ALGO_BY_LEN[len(next(iter(entries.values())))]
    return algo, entries


@dataclass
class ChecksumReport:
    """What :func:`verify_checksums` found: ``ok`` files matched; ``missing`` were allowed absent."""

    folder: str
    list_file: str
    algo: str
    ok: list[str]
    missing: list[str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        miss = f", {len(self.missing)} listed but not present" if self.missing else ""
        return f"{self.folder}: {len(self.ok)} files OK ({Path(self.list_file).name}, {self.algo}){miss}"


def default_list(folder: Path) -> Path:
    for name in LIST_NAMES.values():
        if (folder / name).is_file():
            return folder / name
    raise ValueError(f"{folder}: no SHA256SUMS or MD5SUMS; pass the list with --list")


def verify_checksums(folder: str | os.PathLike, list_file: str | os.PathLike | None = None, *,
                     allow_missing: bool = False) -> ChecksumReport:
    """Check every file of a checksum list (default ``folder/SHA256SUMS``, else ``MD5SUMS``).
    Raises ``ValueError`` naming the files that differ or are missing (missing ones are only
    reported when ``allow_missing``, e.g. after a partial download)."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    t0 = time.perf_counter()
    lst = Path(list_file) if list_file is not None else default_list(root)
    algo, entries = read_list(lst)
    ok, bad, missing = [], [], []
    for rel, expected in entries.items():
        p = root / rel
        if not p.is_file():
            missing.append(rel)
            continue
        got = file_hash(p, algo)
        if got == expected:
            ok.append(rel)
        else:
            bad.append(f"{rel} ({algo} {got[:12]}…, expected {expected[:12]}…)")
    problems = bad + ([] if allow_missing else [f"{m} (missing)" for m in missing])
    if problems:
        raise ValueError(f"{root}: {len(problems)} of {len(entries)} files fail {lst.name}: {few_names(problems)}")
    return ChecksumReport(str(root), str(lst), algo, ok, missing, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------- CLI ----


def add_cli(subparsers) -> None:
    """``knowlm checksum make|verify DIR``."""
    p = subparsers.add_parser("checksum", help="SHA256SUMS/MD5SUMS of a folder (sha256sum -c / md5sum -c format)",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="checksum_cmd", required=True)
    m = sub.add_parser("make", help="write DIR/SHA256SUMS (or MD5SUMS) of every file (pickles left out)")
    m.add_argument("dir", help="folder to list")
    m.add_argument("--algo", choices=sorted(LIST_NAMES), default="sha256")
    m.add_argument("--output", default=None, help="list file (default DIR/SHA256SUMS or DIR/MD5SUMS)")
    m.add_argument("--include-pickles", action="store_true", help="list .bin/.pt/.pth files too")
    m.set_defaults(func=lambda a: print(make_checksums(a.dir, a.algo, a.output, a.include_pickles).summary()))
    v = sub.add_parser("verify", help="check DIR against a checksum list (exit 2 naming the files that differ)")
    v.add_argument("dir", help="folder the list's paths are relative to")
    v.add_argument("--list", dest="list_file", default=None, help="list file (default DIR/SHA256SUMS, else MD5SUMS)")
    v.add_argument("--allow-missing", action="store_true", help="files listed but absent are not an error")
    v.set_defaults(func=lambda a: print(verify_checksums(a.dir, a.list_file, allow_missing=a.allow_missing).summary()))


__all__ = ["make_checksums", "verify_checksums", "write_checksums", "read_list", "file_hash", "file_sha256",
           "listed_files", "ChecksumList", "ChecksumReport", "add_cli", "LIST_NAMES"]
