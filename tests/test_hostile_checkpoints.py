"""Hostile and broken checkpoints (issue 9): resuming never unpickles bytes this user's runs did
not write, and a checkpoint with a missing, truncated, changed or extra file stops the run.

Every checkpoint here comes from a real tiny run (the fixtures of test_pretrain.py) and is then
broken in a copy: pickle payloads that would create a marker file when unpickled (the test checks
that they would, and that they did not), deleted optimizer/scheduler states, a truncated
model.safetensors, a flipped byte, missing/forged/edited manifests, extra files, symlinks, a FIFO,
folders that are not checkpoints, ``resume_from: latest`` over a broken newest checkpoint, an
``init_from`` folder holding only ``pytorch_model.bin``, and a DeepSpeed ZeRO-2 checkpoint written
by two processes under the real launcher. Each refusal is checked for exit code 2 (``knowlm
pretrain``), one line on stderr naming the file, no traceback, the payload not run and the
checkpoint folder byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_pretrain import TINY_MODEL, tiny_config, world  # noqa: F401  (world: a fixture)

from knowlm_utils import cli
from knowlm_utils.modeling import build_model, model_config
from knowlm_utils.pretrain import build_pretrain_model, launch_pretrain
from knowlm_utils.train.checkpoints import (KEY_ENV, MANIFEST, CheckpointError, latest_checkpoint, verify_checkpoint,
                                            write_manifest)

ROOT = Path(__file__).resolve().parents[1]
RUN_KW = dict(max_steps=4, save_steps=1, valid_index=None)  # checkpoint-1 and checkpoint-2, then stopped


class Payload:
    """Unpickled, it creates ``marker`` (``open(marker, "w")``): proof that bytes ran as code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_payload(path: Path, marker: Path) -> None:
    """Replace ``path`` by a torch file whose unpickling creates ``marker`` (looks like an optimizer state)."""
    torch.save({"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}], "x": Payload(marker)}, path)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: (kind, size, sha256, mtime) — to prove nothing changed."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        if p.is_symlink():
            out[str(p.relative_to(folder))] = ("link", os.readlink(p), st.st_mtime_ns)
        elif p.is_file():
            out[str(p.relative_to(folder))] = ("file", st.st_size, hashlib.sha256(p.read_bytes()).hexdigest(),
                                               st.st_mtime_ns)
        else:
            out[str(p.relative_to(folder))] = ("other", st.st_mode, st.st_mtime_ns)
    return out


# ----------------------------------------------------------------------------- fixtures ----
@pytest.fixture(scope="module", autouse=True)
def checkpoint_key_file(tmp_path_factory):
    """This user's signing key for the module (launched processes inherit the variable)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, str(tmp_path_factory.mktemp("checkpoint_key") / "checkpoint-key"))
        yield


@pytest.fixture(scope="module")
def pristine(world, tmp_path_factory) -> Path:  # noqa: F811
    """OUTPUT of a real tiny run stopped at step 2 with checkpoint-1 and checkpoint-2 (signed)."""
    from knowlm_utils.pretrain import main

    out = tmp_path_factory.mktemp("pristine") / "run"
    metrics = main(tiny_config(world, out, stop_at_step=2, **RUN_KW))
    assert metrics["global_step"] == 2 and not metrics["completed"]
    for n in (1, 2):
        verify_checkpoint(out / f"checkpoint-{n}")
    return out


@pytest.fixture
def run(world, pristine, tmp_path) -> Path:  # noqa: F811
    """A fresh copy of the pristine run (to break) and its YAML at ``tmp_path/run.yaml``."""
    out = tmp_path / "run"
    shutil.copytree(pristine, out, symlinks=True)
    tiny_config(world, out, **RUN_KW)
    return out


def resume(out: Path, capsys, resume_from: str | Path, *needles: str, marker: Path | None = None) -> str:
    """``knowlm pretrain RUN.yaml -o resume_from=…`` must be refused: exit 2, one line on stderr
    holding every needle, no traceback, the payload not run, OUTPUT unchanged. Returns the line."""
    before = snapshot(out)
    capsys.readouterr()
    rc = cli.main(["pretrain", str(out.parent / f"{out.name}.yaml"), "-o", f"resume_from={resume_from}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("knowlm pretrain: error: ") and "nothing" in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if marker is not None:
        assert not marker.exists(), "the pickle payload ran"
    assert snapshot(out) == before  # nothing written, rotated or deleted
    return lines[0]


# ----------------------------------------------------------------------------- payloads ----
def test_pickle_payload_in_optimizer_pt_is_never_loaded(run, capsys, tmp_path):
    ckpt = run / "checkpoint-2"
    marker, proof = tmp_path / "PWNED", tmp_path / "payload-is-live"
    plant_payload(ckpt / "optimizer.pt", marker)
    # the payload is real: unpickling a copy with weights_only=False (what DeepSpeed does) runs it
    shutil.copy(ckpt / "optimizer.pt", tmp_path / "copy.pt")
    plant_payload(tmp_path / "copy.pt", proof)
    torch.load(tmp_path / "copy.pt", weights_only=False)
    assert proof.exists()
    resume(run, capsys, ckpt, str(ckpt), "optimizer.pt", marker=marker)


def test_payload_with_a_forged_manifest_is_refused(run, capsys, tmp_path, monkeypatch):
    """Whoever crafts a checkpoint can also write matching SHA-256s: only this user's key signs."""
    ckpt = run / "checkpoint-2"
    marker = tmp_path / "PWNED"
    plant_payload(ckpt / "optimizer.pt", marker)
    with monkeypatch.context() as m:  # the attacker signs with a key of their own
        m.setenv(KEY_ENV, str(tmp_path / "attacker-key"))
        write_manifest(ckpt)
    line = resume(run, capsys, ckpt, MANIFEST, "signature", "key id", marker=marker)
    assert "optimizer.pt" not in line  # refused on the signature, before any file is even read


def test_payload_with_an_edited_manifest_is_refused(run, capsys, tmp_path):
    ckpt = run / "checkpoint-2"
    marker = tmp_path / "PWNED"
    plant_payload(ckpt / "optimizer.pt", marker)
    manifest = json.loads((ckpt / MANIFEST).read_text("utf-8"))
    data = (ckpt / "optimizer.pt").read_bytes()
    manifest["files"]["optimizer.pt"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (ckpt / MANIFEST).write_text(json.dumps(manifest), "utf-8")
    resume(run, capsys, ckpt, MANIFEST, "signature", marker=marker)
    del manifest["hmac_sha256"]
    (ckpt / MANIFEST).write_text(json.dumps(manifest), "utf-8")
    resume(run, capsys, ckpt, MANIFEST, "hmac_sha256", marker=marker)


def test_payload_file_added_under_a_hostile_name(run, capsys, tmp_path):
    ckpt = run / "checkpoint-2"
    marker = tmp_path / "PWNED"
    plant_payload(ckpt / "pytorch_model\n.bin", marker)
    line = resume(run, capsys, ckpt, "unexpected file", r"pytorch_model\n.bin", marker=marker)
    assert "\n" not in line


def test_symlink_and_fifo_in_a_checkpoint_are_refused_without_reading_them(run, capsys, tmp_path):
    ckpt = run / "checkpoint-2"
    marker = tmp_path / "PWNED"
    plant_payload(tmp_path / "outside.pt", marker)
    (ckpt / "optimizer.pt").unlink()
    (ckpt / "optimizer.pt").symlink_to(tmp_path / "outside.pt")
    resume(run, capsys, ckpt, "optimizer.pt", "symlink", marker=marker)
    if hasattr(os, "mkfifo"):  # opening a FIFO would block forever: it must not even be opened
        older = run / "checkpoint-1"
        os.mkfifo(older / "extra.fifo")
        resume(run, capsys, older, "extra.fifo", "unexpected")
        (older / "extra.fifo").unlink()
        (older / "rng_state.pth").unlink()
        os.mkfifo(older / "rng_state.pth")
        resume(run, capsys, older, "rng_state.pth", "special file")


# ----------------------------------------------------------------------------- broken ------
@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"])
def test_deleted_checkpoint_part_stops_the_run(run, capsys, name):
    ckpt = run / "checkpoint-2"
    (ckpt / name).unlink()
    resume(run, capsys, ckpt, f"{name} is missing", "incomplete", str(ckpt))
    assert (run / "checkpoint-2").is_dir() and (run / "checkpoint-1").is_dir()  # nothing rotated away


def test_truncated_or_flipped_files_stop_the_run(run, capsys):
    ckpt = run / "checkpoint-2"
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    resume(run, capsys, ckpt, "model.safetensors", "truncated")
    weights.write_bytes(data)
    rng = ckpt / "rng_state.pth"
    raw = bytearray(rng.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other bytes
    rng.write_bytes(bytes(raw))
    resume(run, capsys, ckpt, "rng_state.pth", "differs from its SHA-256")


def test_checkpoint_from_elsewhere_without_manifest(run, capsys):
    ckpt = run / "checkpoint-2"
    (ckpt / MANIFEST).unlink()
    resume(run, capsys, ckpt, MANIFEST, "is missing", "write_manifest")
    # a manifest that is not even JSON, or nested beyond reason, is one line too
    (ckpt / MANIFEST).write_text("[" * 100_000, "utf-8")
    resume(run, capsys, ckpt, MANIFEST, "not valid JSON")
    (ckpt / MANIFEST).write_text(json.dumps({"format": "knowlm-checkpoint", "version": 99, "files": {},
                                             "hmac_sha256": "0" * 64}), "utf-8")
    resume(run, capsys, ckpt, MANIFEST, "version 99")


def test_folder_that_is_not_a_checkpoint(run, capsys, world):  # noqa: F811
    resume(run, capsys, world["tokenizer"], "is not a Trainer checkpoint", str(world["tokenizer"]))
    resume(run, capsys, run / "checkpoint-99", "does not exist")
    resume(run, capsys, run.parent / "run.yaml", "is not a folder")


def test_no_key_on_this_machine(run, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "no-such-key"))
    resume(run, capsys, run / "checkpoint-2", "no checkpoint key", "no-such-key", str(run / "checkpoint-2"))


def test_latest_never_falls_back_to_an_older_checkpoint(run, capsys):
    (run / "checkpoint-2" / "scheduler.pt").unlink()
    line = resume(run, capsys, "latest", "checkpoint-2", "scheduler.pt is missing",
                  f"resume_from={run / 'checkpoint-1'}")
    assert "never falls back" in line
    # the older one the message suggests is intact and verifies; the broken newest is still there
    verify_checkpoint(run / "checkpoint-1")
    assert latest_checkpoint(run) == run / "checkpoint-2"


def test_the_plain_script_refuses_in_one_line_too(run, tmp_path):
    marker = tmp_path / "PWNED"
    plant_payload(run / "checkpoint-2" / "scheduler.pt", marker)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "pretrain.py"), str(run.parent / "run.yaml"),
                           "-o", f"resume_from={run / 'checkpoint-2'}"], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("pretrain.py: error: checkpoint") and "scheduler.pt" in lines[-1]
    assert not marker.exists()


# ----------------------------------------------------------------------------- init_from ---
def test_init_from_loads_safetensors_only(world, tmp_path, capsys):  # noqa: F811
    marker = tmp_path / "PWNED"
    model = build_model(model_config("cpu-tiny", world["tokenizer"], **TINY_MODEL), seed=1)
    pickled = tmp_path / "pickled"
    model.save_pretrained(pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": Payload(marker)}, pickled / "pytorch_model.bin")
    cfg_out = tmp_path / "out"
    tiny_config(world, cfg_out, stage="embeddings", model={"init_from": str(pickled)}, max_steps=1, valid_index=None)
    capsys.readouterr()
    rc = cli.main(["pretrain", str(tmp_path / "out.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "model.init_from" in err and "pytorch_model.bin" in err and "never loads" in err
    assert not marker.exists() and not cfg_out.exists()

    # next to real safetensors weights, a pytorch_model.bin is ignored, never unpickled
    both = tmp_path / "both"
    model.save_pretrained(both)
    shutil.copy(pickled / "pytorch_model.bin", both / "pytorch_model.bin")
    cfg = tiny_config(world, tmp_path / "out2", stage="embeddings", model={"init_from": str(both)}, valid_index=None)
    loaded, _ = build_pretrain_model(cfg, world["tokenizer"], log=lambda *_: None)
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert not marker.exists()


# ----------------------------------------------------------------------------- DeepSpeed ---
def test_deepspeed_zero2_checkpoint_two_processes(world, tmp_path, capsys):  # noqa: F811
    """Two ranks under the real launcher write a ZeRO-2 checkpoint; rank 0 signs it once all
    ranks saved (global_step2/*, rng_state_0/1, latest). A payload in DeepSpeed's
    mp_rank_00_model_states.pt (loaded with weights_only=False) is refused; the intact one resumes."""
    out = tmp_path / "ds"
    kw = dict(deepspeed={"stage": 2}, max_steps=3, valid_index=None)
    tiny_config(world, out, stop_at_step=2, **kw)
    assert launch_pretrain(tmp_path / "ds.yaml", nprocs=2, launcher="deepspeed", log_path=tmp_path / "ds1.log",
                           echo=False) == 0
    ckpt = out / "checkpoint-2"
    manifest = verify_checkpoint(ckpt)
    files = set(manifest["files"])
    assert {"latest", "rng_state_0.pth", "rng_state_1.pth", "global_step2/mp_rank_00_model_states.pt",
            "global_step2/zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "global_step2/zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= files
    assert files == {str(p.relative_to(ckpt)) for p in ckpt.rglob("*") if p.is_file()} - {MANIFEST}

    hostile = tmp_path / "hostile"
    shutil.copytree(out, hostile, symlinks=True)
    tiny_config(world, hostile, **kw)
    marker = tmp_path / "PWNED"
    states = hostile / "checkpoint-2" / "global_step2" / "mp_rank_00_model_states.pt"
    torch.save({"module": {}, "x": Payload(marker)}, states)
    resume(hostile, capsys, "latest", "global_step2/mp_rank_00_model_states.pt", marker=marker)

    # the intact checkpoint resumes under the launcher and finishes the run
    tiny_config(world, out, resume_from="latest", **kw)
    assert launch_pretrain(tmp_path / "ds.yaml", nprocs=2, launcher="deepspeed", log_path=tmp_path / "ds2.log",
                           echo=False) == 0
    metrics = json.loads((out / "metrics.json").read_text("utf-8"))
    assert metrics["completed"] and metrics["resumed_from"].endswith("checkpoint-2") and metrics["global_step"] == 3
    assert verify_checkpoint(ckpt) == manifest and (out / "final" / "model.safetensors").is_file()


def test_verify_checkpoint_raises_a_config_error(run):
    """The error type both entry points turn into one line and exit code 2."""
    from knowlm_utils.config import ConfigError

    (run / "checkpoint-1" / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint-1 refused, nothing loaded: optimizer\.pt is missing"):
        verify_checkpoint(run / "checkpoint-1")
    assert issubclass(CheckpointError, ConfigError)
