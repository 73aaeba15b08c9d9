"""Hugging Face Hub downloads and uploads of released weights, verified.

    knowlm hub download REPO_ID DIR [--include PATTERN ...] [--revision REV] [--cache-dir DIR]
    knowlm hub upload DIR REPO_ID [--revision BRANCH] [--private] [--message TEXT]

``download`` wraps ``huggingface_hub.snapshot_download`` (resumable, ``--include`` glob patterns
such as ``"*.json" "model-00001-*"``) and then checks what arrived: against the folder's
``knowlm-release.json`` (the SHA-256 of every weights file) when it has one, else against its
``SHA256SUMS``/``MD5SUMS``. It works without a network: with ``HF_HUB_OFFLINE=1`` (or when the
Hub cannot be reached) the files come from the local Hugging Face cache, and REPO_ID may also be
a local folder. A repository that is neither online nor cached gets a one-line explanation.

``upload`` verifies the folder the same way first, then creates the repository if needed and
uploads the folder (hidden files — the project's markers — are left out).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..fileio import OUTPUT_MARKER, check_output_dir, write_output_marker
from .checksums import LIST_NAMES, file_sha256, verify_checksums
from .naming import MANIFEST_NAME, few_names


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set now, or when huggingface_hub was imported."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if env is not None:
        return env.strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The Hugging Face hub cache: ``cache_dir``, else ``$HF_HUB_CACHE``, ``$HF_HOME/hub``, or
    huggingface_hub's default (read now, so tests and notebooks can point it elsewhere)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@dataclass
class DownloadResult:
    """What :func:`download` brought into ``local_dir`` and how it was checked."""

    repo_id: str
    revision: str | None
    local_dir: str
    source: str  # "hub", "cache" or "folder"
    files: int
    bytes: int
    verified: str | None  # "manifest", "SHA256SUMS", "MD5SUMS" or None
    verified_files: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        check = (f"{self.verified_files} file(s) verified against {self.verified}" if self.verified
                 else "nothing to verify against (no knowlm-release.json or SHA256SUMS)")
        return (f"{self.repo_id}{'@' + self.revision if self.revision else ''} → {self.local_dir}: {self.files} files, "
                f"{self.bytes / 1e9:.2f} GB from the {self.source}; {check}")


def _selected(root: Path, include: Sequence[str] | None) -> list[str]:
    from huggingface_hub.utils import filter_repo_objects

    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    return list(filter_repo_objects(files, allow_patterns=list(include) if include else None))


def _copy_into(src_root: Path, files: list[str], dst: Path) -> None:
    """Copy ``files`` (following the cache's symlinks), each atomically; existing files with the
    same size are kept (a resumed copy)."""
    for rel in files:
        src, target = (src_root / rel).resolve(), dst / rel
        if target.is_file() and target.stat().st_size == src.stat().st_size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.copy.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)


def _check_local_dir(local_dir: Path, overwrite: bool) -> Path:
    """A download may go into a new or empty folder, one the project wrote, or one a previous
    ``snapshot_download(local_dir=...)`` filled (it keeps ``.cache/huggingface``); files are
    added, never a folder removed."""
    out = check_output_dir(local_dir, overwrite=True)  # the file / root / home / cwd checks
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        ours = (out / OUTPUT_MARKER).is_file() or (out / ".cache" / "huggingface").is_dir()
        if not ours:
            raise ValueError(f"{out} already holds files knowlm did not download; choose a new folder, or pass "
                             "--overwrite to download into it (files of the same name are replaced)")
    return out


def verify_folder(folder: str | os.PathLike, *, partial: bool = False) -> tuple[str | None, int]:
    """Check ``folder`` against its manifest's file hashes and its SHA256SUMS/MD5SUMS (each one
    present). ``partial``: files listed but absent (an ``--include`` download) are not an error.
    Returns ``(what it was checked against, files checked)`` — e.g. ``("manifest+SHA256SUMS", 9)``."""
    from .manifest import read_manifest

    folder = Path(folder)
    used, checked = [], set()
    man = read_manifest(folder)
    if man is not None and man.get("files"):
        missing = []
        for rel, sha in man["files"].items():
            p = folder / rel
            if not p.is_file():
                missing.append(rel)
                continue
            if file_sha256(p) != sha:
                raise ValueError(f"{p}: SHA-256 differs from {MANIFEST_NAME} — corrupted or incomplete; download it again")
            checked.add(rel)
        if missing and not partial:
            raise ValueError(f"{folder}: {len(missing)} file(s) listed in {MANIFEST_NAME} are missing ({few_names(missing)})")
        used.append("manifest")
    for name in LIST_NAMES.values():
        if (folder / name).is_file():
            report = verify_checksums(folder, folder / name, allow_missing=partial)
            checked.update(report.ok)
            used.append(name)
            break
    return ("+".join(used) or None), len(checked)


def download(repo_id: str, local_dir: str | os.PathLike, *, include: Sequence[str] | None = None,
             revision: str | None = None, cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
             verify: bool = True, overwrite: bool = False, progress: bool = True) -> DownloadResult:
    """Bring ``repo_id`` (a Hub model id, or a local folder) into ``local_dir`` and verify it.

    Online: ``snapshot_download(repo_id, revision=..., allow_patterns=include, local_dir=...)``
    (resumes partial downloads). Offline (``offline=True``, ``HF_HUB_OFFLINE=1``, or the Hub
    unreachable): the cached snapshot in ``cache_dir`` (default the HF cache) is copied. Then
    :func:`verify_folder` (files left out by ``include`` are not an error)."""
    t0 = time.perf_counter()
    dst = _check_local_dir(Path(local_dir), overwrite)
    offline = hub_offline() if offline is None else offline
    source_path = Path(repo_id).expanduser()
    if source_path.is_dir():
        if dst == source_path.resolve():
            raise ValueError(f"{local_dir} is the source folder itself")
        files = _selected(source_path, include)
        dst.mkdir(parents=True, exist_ok=True)
        _copy_into(source_path, files, dst)
        source = "folder"
    else:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        cache = hub_cache_dir(cache_dir)
        patterns = list(include) if include else None
        rev = revision or "main"
        try:
            if offline:
                snap = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True,
                                              allow_patterns=patterns))
                files = _selected(snap, include)
                if not files:
                    raise ValueError(f"{repo_id}@{rev}: the cached snapshot has no files matching {patterns}")
                dst.mkdir(parents=True, exist_ok=True)
                _copy_into(snap, files, dst)
                source = "cache"
            else:
                kwargs: dict[str, Any] = {}
                if not progress:
                    from huggingface_hub.utils import tqdm as hf_tqdm

                    class _Quiet(hf_tqdm):  # type: ignore[misc, valid-type]
                        def __init__(self, *a, **k):
                            k["disable"] = True
                            super().__init__(*a, **k)

                    kwargs["tqdm_class"] = _Quiet
                snapshot_download(repo_id, revision=revision, cache_dir=cache, local_dir=dst, allow_patterns=patterns,
                                  **kwargs)
                files = _selected(dst, None)
                source = "hub"
        except LocalEntryNotFoundError:
            why = ("the Hub is offline (HF_HUB_OFFLINE=1)" if offline else "the Hub cannot be reached")
            raise ValueError(f"{repo_id}@{rev} is not in the local Hugging Face cache ({cache}) and {why}: download it once "
                             "on a connected machine (knowlm hub download), point --cache-dir at a cache that has it, "
                             "or pass a local folder as REPO_ID") from None
        except ValueError:
            raise
        except Exception as exc:  # HTTP, repository-not-found, gated …: one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"{repo_id}@{rev}: download failed ({type(exc).__name__}: {first[:200]})") from None
    verified, n = (None, 0)
    if verify:
        verified, n = verify_folder(dst, partial=bool(include))
    write_output_marker(dst, "knowlm hub download")
    files_now = _selected(dst, None)
    return DownloadResult(repo_id, revision, str(dst), source, len(files_now),
                          sum((dst / f).stat().st_size for f in files_now), verified, n, time.perf_counter() - t0)


@dataclass
class UploadResult:
    """What :func:`upload` sent."""

    repo_id: str
    revision: str | None
    folder: str
    files: int
    bytes: int
    verified: str | None
    commit: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"uploaded {self.files} files ({self.bytes / 1e9:.2f} GB) of {self.folder} to {self.repo_id}"
                f"{'@' + self.revision if self.revision else ''}"
                f"{' (verified against ' + self.verified + ')' if self.verified else ''}: {self.commit}")


def upload(folder: str | os.PathLike, repo_id: str, *, revision: str | None = None, private: bool = False,
           message: str | None = None, verify: bool = True) -> UploadResult:
    """Verify ``folder`` (:func:`verify_folder`), create ``repo_id`` if needed and upload the
    folder's files (hidden files left out) in one commit."""
    t0 = time.perf_counter()
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    verified = verify_folder(root)[0] if verify else None
    if hub_offline():
        raise ValueError(f"cannot upload to {repo_id}: the Hub is offline (HF_HUB_OFFLINE=1); unset it on a connected machine")
    files = _selected(root, None)
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(root), repo_id=repo_id, revision=revision, repo_type="model",
                                 commit_message=message or f"Upload {root.name} (knowlm hub upload)",
                                 ignore_patterns=[".*", "**/.*"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"upload to {repo_id} failed ({type(exc).__name__}: {first[:200]})") from None
    commit = getattr(info, "commit_url", None) or str(info)
    return UploadResult(repo_id, revision, str(root), len(files), sum((root / f).stat().st_size for f in files),
                        verified, commit, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------- CLI ----


def add_cli(subparsers) -> None:
    """``knowlm hub download|upload``."""
    p = subparsers.add_parser("hub", help="download/upload released weights (Hugging Face Hub), verified",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="hub_cmd", required=True)
    d = sub.add_parser("download", help="snapshot_download REPO_ID into DIR (or copy from the cache offline), then verify")
    d.add_argument("repo_id", help="Hub model id (org/name) or a local folder")
    d.add_argument("dir", help="folder to download into")
    d.add_argument("--include", nargs="+", default=None, metavar="PATTERN", help="only files matching these globs")
    d.add_argument("--revision", default=None, help="branch, tag or commit (default main)")
    d.add_argument("--cache-dir", default=None, help="Hugging Face hub cache (default $HF_HUB_CACHE or ~/.cache/huggingface/hub)")
    d.add_argument("--offline", action="store_true", default=None, help="use the local cache only (as HF_HUB_OFFLINE=1)")
    d.add_argument("--no-verify", dest="verify", action="store_false", help="skip checking the files")
    d.add_argument("--overwrite", action="store_true", help="write into a non-empty folder knowlm did not write")
    d.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    d.set_defaults(func=lambda a: print(download(a.repo_id, a.dir, include=a.include, revision=a.revision,
                                                 cache_dir=a.cache_dir, offline=a.offline, verify=a.verify,
                                                 overwrite=a.overwrite, progress=a.progress).summary()))
    u = sub.add_parser("upload", help="verify DIR, then upload it to REPO_ID (created if missing)")
    u.add_argument("dir", help="folder to upload (e.g. a diff written by knowlm weights make-diff)")
    u.add_argument("repo_id", help="Hub model id (org/name)")
    u.add_argument("--revision", default=None, help="branch to commit to (default main)")
    u.add_argument("--private", action="store_true", help="create the repository private")
    u.add_argument("--message", default=None, help="commit message")
    u.add_argument("--no-verify", dest="verify", action="store_false", help="skip checking the files first")
    u.set_defaults(func=lambda a: print(upload(a.dir, a.repo_id, revision=a.revision, private=a.private,
                                               message=a.message, verify=a.verify).summary()))


__all__ = ["download", "upload", "verify_folder", "hub_offline", "hub_cache_dir", "DownloadResult", "UploadResult",
           "add_cli"]
