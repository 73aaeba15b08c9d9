"""Atomic file writes, output-folder safety and small JSON helpers shared by every stage.

* Every artifact is written to a temporary file in the destination folder and renamed into
  place, so a crash never leaves a half-written file under the final name.
* A stage that writes a whole folder assembles it in ``.NAME.building-PID-*`` and swaps it in
  with :func:`replace_dir`, which marks it with :data:`OUTPUT_MARKER`. :func:`check_output_dir`
  refuses to replace a folder without that marker (the user's own data) unless told to
  overwrite, and never replaces the current folder, home, root or a folder holding the run's
  inputs. :func:`remove_stale_temp` clears what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time
import typing
from pathlib import Path
from typing import Any, Iterator


def _usual_mode(path: str | os.PathLike, mode: int) -> None:
    """``mkstemp``/``mkdtemp`` create 0600/0700; give the permissions a plain create would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def temp_file_beside(final: str | os.PathLike, suffix: str = ".tmp") -> tuple[int, Path]:
    """``(fd, path)`` of a new hidden temp file ``.NAME.*SUFFIX`` in ``final``'s folder (same
    file system, so renaming it onto ``final`` is atomic)."""
    final = Path(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    _usual_mode(tmp, 0o666)
    return fd, Path(tmp)


def temp_dir_beside(out: str | os.PathLike) -> Path:
    """A new hidden folder ``.NAME.building-PID-*`` next to ``out``, to assemble a whole output
    folder in before :func:`replace_dir` moves it into place (:func:`remove_stale_temp` cleans
    up after a killed run)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-{os.getpid()}-", dir=out.parent))
    _usual_mode(tmp, 0o777)
    return tmp


OUTPUT_MARKER = ".knowlm-output.json"  # written into every folder the project writes whole


class OutputDirError(ValueError):
    """An output path may not be written or replaced; the message names it and the way out."""


def _is_same_or_inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output_dir(out: str | os.PathLike, *, overwrite: bool = False,
                     protected: typing.Iterable[str | os.PathLike] = (),
                     legacy_names: typing.Iterable[str] = ()) -> Path:
    """Refuse an output folder that replacing would destroy data the project did not write.

    ``out`` may be missing, an empty folder, or a folder holding :data:`OUTPUT_MARKER` (written by
    :func:`replace_dir`, so the project made it). Anything else — a file, a folder with other
    contents — is refused unless ``overwrite`` is set. Never allowed, even with ``overwrite``:
    the file system root, the home folder, the current directory or one of its parents, and a
    folder that holds any of the ``protected`` paths (the run's own inputs and config).
    ``legacy_names`` are regular expressions of the entries a stage wrote before outputs carried
    the marker: an unmarked folder holding only such entries counts as the project's. Returns the
    resolved path."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{out} is a file, not a folder; choose another output folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputDirError(f"{out}: {parent} is a file, so no folder can be made below it")
            break
    cwd = Path.cwd().resolve()
    vital = {Path(out.anchor), Path.home().resolve()}
    if out in vital or _is_same_or_inside(cwd, out):
        raise OutputDirError(f"{out} is the current folder, one of its parents, or a system folder; the "
                             "output folder is replaced whole, so give a new or dedicated folder")
    for p in protected:
        p = Path(p).expanduser().resolve()
        if _is_same_or_inside(p, out):
            raise OutputDirError(f"{out} holds this run's input {p}; the output folder is replaced whole, so "
                                 "give a new or dedicated folder")
    if out.is_dir() and not overwrite and not is_project_output(out, legacy_names) and any(out.iterdir()):
        raise OutputDirError(f"{out} already exists and was not written by knowlm (no {OUTPUT_MARKER} inside); "
                             "it would be replaced whole: choose a new folder, or pass --overwrite "
                             "(-o overwrite=true) to replace it")
    return out


def is_project_output(folder: str | os.PathLike, legacy_names: typing.Iterable[str] = ()) -> bool:
    """True when ``folder`` holds :data:`OUTPUT_MARKER`, or (written before the marker existed)
    only entries whose names fully match one of the ``legacy_names`` patterns, none a link."""
    folder = Path(folder)
    if (folder / OUTPUT_MARKER).is_file():
        return True
    patterns = [re.compile(p) for p in legacy_names]
    if not patterns:
        return False
    entries = list(folder.iterdir())
    return bool(entries) and all(not e.is_symlink() and any(p.fullmatch(e.name) for p in patterns) for e in entries)


def write_output_marker(folder: str | os.PathLike, producer: str) -> None:
    """Mark ``folder`` as written by the project (what :func:`check_output_dir` looks for)."""
    from . import __version__

    write_json_atomic(Path(folder) / OUTPUT_MARKER, {"producer": producer, "knowlm_course_version": __version__,
                                                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def remove_stale_temp(out: str | os.PathLike) -> list[Path]:
    """Clean up after killed runs next to ``out``: first put back a previous ``out`` that a run
    killed inside :func:`replace_dir` left aside (:func:`restore_interrupted_replace`), then
    remove ``.NAME.building-*``, ``.NAME.old-*`` folders and ``.NAME.*.tmp`` files whose writer
    process is gone; returns what was removed. A leftover is stale when its name carries no live
    pid of this machine or it is older than a day."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    restore_interrupted_replace(out)
    removed = []
    for p in out.parent.glob(f".{glob.escape(out.name)}.*"):
        if not (".building-" in p.name or ".old-" in p.name or p.name.endswith(".tmp")):
            continue
        pid = _pid_in(p.name)
        alive = _pid_alive(pid)
        try:
            young = time.time() - p.lstat().st_mtime < 86400
        except FileNotFoundError:
            continue
        if alive and young:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _pid_in(name: str) -> int | None:
    m = re.search(r"\.(?:building|old)-(\d+)(?:-|$)", name)
    return int(m.group(1)) if m else None


def _pid_alive(pid: int | None) -> bool:
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def restore_interrupted_replace(out: str | os.PathLike) -> Path | None:
    """Undo a run killed inside :func:`replace_dir` between its two renames (only possible where
    the atomic exchange is not available): when ``out`` is missing and a ``.NAME.old-PID`` folder
    of a process that is gone exists, the newest one is renamed back. Returns it, else ``None``."""
    out = Path(out)
    if out.exists() or out.is_symlink() or not out.parent.is_dir():
        return None
    olds = [p for p in out.parent.glob(f".{glob.escape(out.name)}.old-*")
            if re.fullmatch(rf"\.{re.escape(out.name)}\.old-\d+", p.name) and p.is_dir() and not p.is_symlink()
            and not _pid_alive(_pid_in(p.name))]
    if not olds:
        return None
    newest = max(olds, key=lambda p: p.stat().st_mtime)
    newest.rename(out)
    return newest


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(tmp: str | os.PathLike, out: str | os.PathLike, producer: str | None = None) -> None:
    """Move the finished folder ``tmp`` onto ``out``. An existing ``out`` is swapped with ``tmp``
    in one atomic step where the system can (so a kill at any moment leaves the old folder or
    the new one, never neither), else renamed aside first — :func:`remove_stale_temp` puts it
    back if a kill came in between —; the old content is removed last. With ``producer``,
    ``tmp`` is first marked as written by the project (:data:`OUTPUT_MARKER`). Call
    :func:`check_output_dir` before building ``tmp``."""
    tmp, out = Path(tmp), Path(out)
    if producer is not None:
        write_output_marker(tmp, producer)
    if out.exists() and out.is_dir() and not out.is_symlink() and _exchange(tmp, out):
        fsync_dir(out.parent)
        shutil.rmtree(tmp, ignore_errors=True)  # now the old content
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temp file next to ``path``; on success rename it onto ``path``.

    On an exception the temp file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=indent, sort_keys=False)
        fh.write("\n")


def write_jsonl_atomic(path: str | os.PathLike, rows) -> int:
    """Write an iterable of dicts as JSON Lines; returns the number of rows written."""
    n = 0
    with atomic_open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_yaml_file(path: str | os.PathLike) -> Any:
    """A YAML data file (``yaml.safe_load``: no tags, nothing executed); an unreadable or invalid
    file raises a one-line ``ValueError`` naming it."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML ({' '.join(str(exc).split())[:200]})") from None


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """Every non-blank line of a JSON Lines file this project wrote, parsed."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
