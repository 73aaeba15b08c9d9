"""Checkpoints and the final model of a training run.

* ``OUTPUT/checkpoint-N`` — the Trainer's checkpoints: :func:`latest_checkpoint`,
  :func:`resolve_resume` (``resume_from: latest`` or a path, verified) and :func:`checkpoint_step`;
* ``OUTPUT/checkpoint-N/knowlm-checkpoint.json`` — the checkpoint's signed manifest
  (:func:`write_manifest` at every save, :func:`verify_checkpoint` before a resume loads anything);
* ``OUTPUT/final`` — :func:`save_final`: weights (safetensors; a LoRA run is merged into a plain
  model, its adapter kept in ``final/adapter``) plus the tokenizer files, so
  ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load it; written
  atomically.

**Why checkpoints are signed.** Resuming unpickles files of the checkpoint: DeepSpeed loads its
``global_stepN/*.pt`` with ``torch.load(weights_only=False)``, and unpickling runs whatever code
the bytes name. So a resume only loads a checkpoint this user's own runs wrote, unchanged: at
every save, rank 0 writes :data:`MANIFEST` (SHA-256 and size of every file, DeepSpeed's included)
signed with HMAC-SHA256 under a per-user secret key (:func:`checkpoint_key_path`, created 0600 on
the first save). Before the Trainer is even built, :func:`verify_checkpoint` checks the
signature, that the folder holds exactly the listed regular files (nothing missing, extra, or a
symlink) and every size and hash; anything else stops the run with a one-line
:class:`CheckpointError` naming the checkpoint and the file, and nothing in it is loaded. A
SHA-256 list alone would not do: whoever crafts a checkpoint can write matching hashes too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..fileio import read_json, replace_dir, write_json_atomic

FINAL_DIR = "final"
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

MANIFEST = "knowlm-checkpoint.json"
MANIFEST_FORMAT = "knowlm-checkpoint"
MANIFEST_VERSION = 1
KEY_ENV = "KNOWLM_CHECKPOINT_KEY_FILE"
_MAX_MANIFEST_BYTES = 64 << 20
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(ConfigError):
    """A checkpoint was refused (unsigned, changed, incomplete or not a checkpoint) before
    anything in it was loaded; the one-line message names the checkpoint and the file. A
    :class:`~knowlm_utils.config.ConfigError`, so ``knowlm pretrain`` and ``scripts/pretrain.py``
    report it in one line with exit code 2."""


def _shown(text: Any) -> str:
    """``text`` safe for a one-line message: control characters (a newline in a hostile file
    name) and undecodable bytes escaped, at most 200 characters."""
    s = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))
    return s if len(s) <= 200 else s[:200] + "…"


# ============================================================================ key ===========
def checkpoint_key_path() -> Path:
    """The per-user secret that signs checkpoint manifests: ``$KNOWLM_CHECKPOINT_KEY_FILE``, else
    ``$XDG_CONFIG_HOME/knowlm/checkpoint-key`` (``~/.config/knowlm/checkpoint-key``). Every
    machine that resumes a run needs the same file (a shared home, or copy it)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CONFIG_HOME") or "~/.config").expanduser() / "knowlm" / "checkpoint-key"


def _read_key(path: Path) -> bytes | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"checkpoint key {_shown(path)} is not a regular file")
    if st.st_mode & 0o022 or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        raise CheckpointError(f"checkpoint key {_shown(path)} is writable by others or not yours: whoever can "
                              "change it can sign checkpoints; chmod 600 it (or remove it to start a new key)")
    try:
        key = bytes.fromhex(path.read_text("ascii").strip())
    except (ValueError, UnicodeDecodeError):
        key = b""
    if len(key) < 32:
        raise CheckpointError(f"checkpoint key {_shown(path)} is not 64+ hex digits; remove it and a new one is "
                              "created at the next save (checkpoints signed with the old key are then refused)")
    return key


def checkpoint_key(create: bool = False) -> bytes:
    """The signing key (:func:`checkpoint_key_path`); ``create``: make a new random one (0600)
    when there is none. Without ``create`` a missing key is a :class:`CheckpointError`."""
    path = checkpoint_key_path()
    key = _read_key(path)
    if key is not None:
        return key
    if not create:
        raise CheckpointError(f"no checkpoint key at {_shown(path)} on this machine (the first save makes it; copy "
                              f"it from the machine that wrote the checkpoint, or set {KEY_ENV})")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-key.", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic create-if-absent: a concurrent first save keeps the other's key
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return _read_key(path)


def _key_id(key: bytes) -> str:
    """A short public fingerprint of a key (names the key in a manifest and in errors)."""
    return hashlib.sha256(b"knowlm-checkpoint-key-id:" + key).hexdigest()[:16]


def _signature(key: bytes, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


# ============================================================================ manifest ======
def _entries(folder: Path) -> list[tuple[str, Path, os.stat_result]]:
    """Every entry under ``folder`` (relative POSIX path, path, lstat), symlinks not followed."""
    out = []
    stack = [(folder, "")]
    while stack:
        d, prefix = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                rel = f"{prefix}{e.name}"
                st = e.stat(follow_symlinks=False)
                out.append((rel, Path(e.path), st))
                if stat.S_ISDIR(st.st_mode):
                    stack.append((Path(e.path), rel + "/"))
    return sorted(out, key=lambda t: t[0])


def _hash_file(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _hash_files(paths: list[Path]) -> list[tuple[str, int]]:
    """(sha256, bytes read) of each path, a few files at a time (hashlib releases the GIL, so a
    ZeRO checkpoint's many shards hash in parallel)."""
    if len(paths) <= 1:
        return [_hash_file(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(paths), os.cpu_count() or 1)) as pool:
        return list(pool.map(_hash_file, paths))


def write_manifest(checkpoint: str | os.PathLike) -> Path:
    """Sign ``checkpoint`` as written by this user: :data:`MANIFEST` with the SHA-256 and size of
    every file in it (recursively, DeepSpeed's ``global_stepN/*`` included), a format version and
    an HMAC under :func:`checkpoint_key` (created if missing), written atomically. Runs at every
    Trainer save (rank 0, after all ranks wrote their parts); call it yourself only on a
    checkpoint you trust, e.g. one from before manifests existed."""
    checkpoint = Path(checkpoint)
    key = checkpoint_key(create=True)
    found: dict[str, Path] = {}
    for rel, path, st in _entries(checkpoint):
        if rel == MANIFEST or stat.S_ISDIR(st.st_mode):
            continue
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"checkpoint {_shown(checkpoint)}: {_shown(rel)} is a symlink or special file; "
                                  "a signed checkpoint holds only regular files")
        found[rel] = path
    files = {rel: {"sha256": digest, "size": size}
             for rel, (digest, size) in zip(found, _hash_files(list(found.values())))}
    body = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "checkpoint": checkpoint.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "key_id": _key_id(key), "files": files}
    write_json_atomic(checkpoint / MANIFEST, {**body, "hmac_sha256": _signature(key, body)})
    return checkpoint / MANIFEST


def _valid_rel(rel: Any) -> bool:
    parts = rel.split("/") if isinstance(rel, str) else []
    return bool(parts) and all(p not in ("", ".", "..") and "\\" not in p and "\0" not in p for p in parts)


def _read_manifest(checkpoint: Path, refuse) -> dict[str, Any]:
    path = checkpoint / MANIFEST
    try:
        st = path.lstat()
    except FileNotFoundError:
        if not (checkpoint / "trainer_state.json").is_file():
            refuse(None, f"is not a Trainer checkpoint written by knowlm (no trainer_state.json, no {MANIFEST})")
        refuse(MANIFEST, "is missing: the checkpoint was not written by knowlm (or by a version before signed "
                         "checkpoints), and its pickled files are never loaded unverified; if you trust it, sign it "
                         "with knowlm_utils.train.checkpoints.write_manifest(PATH)")
    if not stat.S_ISREG(st.st_mode):
        refuse(MANIFEST, "is a symlink or special file")
    if st.st_size > _MAX_MANIFEST_BYTES:
        refuse(MANIFEST, f"is {st.st_size:,} bytes, larger than any manifest knowlm writes")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, absurd nesting
        refuse(MANIFEST, f"is not valid JSON ({_shown(type(exc).__name__)})")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT
            or not isinstance(manifest.get("hmac_sha256"), str) or not isinstance(files, dict)):
        refuse(MANIFEST, f"is not a {MANIFEST_FORMAT} manifest (format, files and hmac_sha256 expected)")
    if manifest.get("version") != MANIFEST_VERSION:
        refuse(MANIFEST, f"has format version {_shown(manifest.get('version'))}; this knowlm reads version "
                         f"{MANIFEST_VERSION}")
    return manifest


def verify_checkpoint(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """Check ``checkpoint`` before anything in it is loaded: its :data:`MANIFEST` exists and is
    signed with this user's :func:`checkpoint_key`; the folder holds exactly the listed files, all
    regular files (no symlink, FIFO or extra folder) with the listed sizes and SHA-256. Returns
    the manifest; otherwise raises :class:`CheckpointError` naming the checkpoint and the first
    bad file (reads only the manifest and the files' bytes — nothing is unpickled)."""
    checkpoint = Path(checkpoint)
    try:
        return _verify(checkpoint)
    except OSError as exc:  # unreadable file or folder (permissions, I/O error)
        name = Path(exc.filename).name if exc.filename else MANIFEST
        raise CheckpointError(f"checkpoint {_shown(checkpoint)} refused, nothing loaded: {_shown(name)} cannot be "
                              f"read ({_shown(exc.strerror or type(exc).__name__)})") from None


def _verify(checkpoint: Path) -> dict[str, Any]:
    def refuse(name: str | None, problem: str):
        if name is None:  # the folder itself
            raise CheckpointError(f"resume_from: {_shown(checkpoint)} {problem}; nothing was loaded")
        raise CheckpointError(f"checkpoint {_shown(checkpoint)} refused, nothing loaded: {_shown(name)} {problem}")

    if not checkpoint.is_dir():
        refuse(None, "does not exist" if not checkpoint.exists() else "is not a folder")
    manifest = _read_manifest(checkpoint, refuse)
    try:
        key = checkpoint_key(create=False)
    except CheckpointError as exc:
        refuse(MANIFEST, f"cannot be checked: {exc}")
    body = {k: v for k, v in manifest.items() if k != "hmac_sha256"}
    signature = manifest["hmac_sha256"]
    try:
        expected = _signature(key, body)
    except (ValueError, RecursionError):  # nesting or values no manifest of ours holds
        expected = ""
    if not (expected and signature.isascii() and hmac.compare_digest(expected, signature)):
        theirs = manifest.get("key_id")
        refuse(MANIFEST, "has no valid signature from this user's checkpoint key "
                         f"({_shown(checkpoint_key_path())}, key id {_key_id(key)}"
                         + (f"; the manifest names key id {_shown(theirs)}" if theirs != _key_id(key) else "")
                         + "): written elsewhere or edited")
    listed: dict[str, dict[str, Any]] = manifest["files"]
    for rel, entry in listed.items():
        if (not _valid_rel(rel) or rel == MANIFEST or not isinstance(entry, dict)
                or not isinstance(entry.get("size"), int) or not _SHA256_RE.match(str(entry.get("sha256")))):
            refuse(MANIFEST, f"has an invalid entry {_shown(rel)}")
    parents = {rel.rsplit("/", 1)[0] for rel in listed if "/" in rel}
    parents |= {p.rsplit("/", i)[0] for p in list(parents) for i in range(1, p.count("/") + 1)}
    present: dict[str, tuple[Path, os.stat_result]] = {}
    for rel, path, st in _entries(checkpoint):
        if rel == MANIFEST:
            continue
        if stat.S_ISDIR(st.st_mode) and rel in parents:
            continue
        if rel not in listed:
            kind = "folder" if stat.S_ISDIR(st.st_mode) else "file"
            refuse(rel, f"is an unexpected {kind}, not listed in {MANIFEST}")
        if not stat.S_ISREG(st.st_mode):
            refuse(rel, "is a symlink or special file, not the regular file the manifest lists")
        present[rel] = (path, st)
    for rel in sorted(listed):
        if rel not in present:
            refuse(rel, f"is missing (listed in {MANIFEST}): the checkpoint is incomplete")
        size = present[rel][1].st_size
        if size != listed[rel]["size"]:
            refuse(rel, f"has {size:,} bytes, the manifest says {listed[rel]['size']:,}: truncated or changed")
    names = sorted(listed)
    for rel, (digest, size) in zip(names, _hash_files([present[rel][0] for rel in names])):
        if digest != listed[rel]["sha256"] or size != listed[rel]["size"]:
            refuse(rel, "differs from its SHA-256 in the manifest: changed since it was saved")
    return manifest


# ============================================================================ resume ========
def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    if not output_dir.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in output_dir.iterdir()
                  if (m := _CHECKPOINT_RE.match(p.name)) and p.is_dir() and not p.is_symlink())


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The ``checkpoint-N`` folder with the largest N (None: none). Not verified: a save that
    was cut short is still the newest, so that resuming says so instead of silently going back."""
    found = _checkpoints(Path(output_dir))
    return found[-1][1] if found else None


def resolve_resume(config, output_dir: Path) -> Path | None:
    """The checkpoint to resume from for ``config.resume_from``, verified
    (:func:`verify_checkpoint`) before anything loads it: None: none; ``latest``: the newest
    ``checkpoint-N`` in ``output_dir`` (None if there is none yet; if it fails verification, the
    error suggests an older one — there is no silent fall-back); else a path, made absolute by
    ``config.path``. Raises :class:`CheckpointError`."""
    if config.resume_from is None:
        return None
    if config.resume_from == "latest":
        try:
            found = _checkpoints(Path(output_dir))
        except OSError as exc:
            raise CheckpointError(f"resume_from: latest: cannot list {_shown(output_dir)} "
                                  f"({_shown(exc.strerror or type(exc).__name__)})") from None
        if not found:
            return None
        newest = found[-1][1]
        try:
            verify_checkpoint(newest)
        except CheckpointError as exc:
            older = f"e.g. -o resume_from={_shown(found[-2][1])}" if len(found) > 1 else "none is left in the folder"
            raise CheckpointError(f"{exc}; resume_from: latest takes the newest checkpoint and never falls back, so "
                                  f"pass an older one explicitly if you want it ({older})") from None
        return newest
    path = config.path(config.resume_from)
    verify_checkpoint(path)
    return path


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a (verified) Trainer checkpoint was written at."""
    return int(read_json(checkpoint / "trainer_state.json")["global_step"])


# ============================================================================ final =========
def copy_tokenizer_files(tokenizer_dir: Path, out_dir: Path) -> None:
    """Copy the tokenizer files that exist (:data:`TOKENIZER_FILES`) next to a saved model."""
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, out_dir / name)
def save_final(trainer, output_dir: Path, tokenizer_dir: Path, lora_base: Path | None = None) -> Path:
    """Write OUTPUT/final atomically: save into a temp folder (every rank takes part — ZeRO-3
    gathers the weights), then rank 0 adds the tokenizer files (and, for a LoRA model, the
    adapter merged into ``lora_base``, the model it was trained on) and renames it into place."""
    final = output_dir / FINAL_DIR
    tmp = output_dir / f".{FINAL_DIR}.tmp"
    if trainer.is_world_process_zero() and tmp.exists():
        shutil.rmtree(tmp)
    trainer.accelerator.wait_for_everyone()
    lora = lora_base is not None
    trainer.save_model(str(tmp / "adapter") if lora else str(tmp))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        if lora:
            from ..modeling import tokenizer_info
            from .lora import merge_lora

            merge_lora(lora_base, tokenizer_info(tokenizer_dir).vocab_size, tmp / "adapter", tmp)
        copy_tokenizer_files(tokenizer_dir, tmp)
        for pickle_file in (tmp / "training_args.bin", tmp / "adapter" / "training_args.bin"):
            pickle_file.unlink(missing_ok=True)  # a pickle; the config is in metrics.json
        replace_dir(tmp, final)
    trainer.accelerator.wait_for_everyone()
    return final


def checkpoint_sizes(checkpoint: str | os.PathLike) -> dict[str, int]:
    """Bytes of a Trainer/DeepSpeed checkpoint folder by kind: ``optimizer states`` (DeepSpeed's
    ``*optim_states.pt``: fp32 master weights and Adam moments, partitioned per rank), ``model
    states`` (``*model_states.pt``: the module's weights under ZeRO-1/2, almost nothing under
    ZeRO-3, whose parameters live in the optimizer partitions), ``model weights``
    (``model.safetensors``, the gathered model) and ``other`` (scheduler, RNG, configs)."""
    sizes = {"optimizer states": 0, "model states": 0, "model weights": 0, "other": 0}
    for path in Path(checkpoint).rglob("*"):
        if not path.is_file():
            continue
        name = path.name
        kind = ("optimizer states" if name.endswith("optim_states.pt") else
                "model states" if name.endswith("model_states.pt") else
                "model weights" if name.startswith("model") and name.endswith(".safetensors") else "other")
        sizes[kind] += path.stat().st_size
    return sizes


__all__ = ["FINAL_DIR", "TOKENIZER_FILES", "MANIFEST", "KEY_ENV", "CheckpointError", "checkpoint_key_path",
           "checkpoint_key", "write_manifest", "verify_checkpoint", "latest_checkpoint", "resolve_resume",
           "checkpoint_step", "copy_tokenizer_files", "save_final", "checkpoint_sizes"]
