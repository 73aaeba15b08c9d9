"""Stage 09 hub: downloads from a local Hugging Face cache fixture with HF_HUB_OFFLINE=1 (no test
touches the network), --include patterns, verification against the manifest, the offline-and-not-
cached message, a local folder as source, and upload (verified first; HfApi stubbed)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import assert_one_line_error, release_config, run_cli, save_release_model
from knowlm_utils.release.diff import make_diff, recover
from knowlm_utils.release.hub import download, upload

REPO = "zjunlp-course/tiny-diff"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A raw model and a diff folder made from it (what would be published)."""
    from transformers import LlamaForCausalLM

    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    raw = LlamaForCausalLM(release_config(vocab_size=500))
    tuned = LlamaForCausalLM(release_config(vocab_size=500))
    save_release_model(raw, root / "raw")
    save_release_model(tuned, root / "tuned")
    make_diff(root / "raw", root / "tuned", root / "diff", max_shard_size="60KB", progress=False)
    return root


def cache_repo(cache: Path, repo_id: str, folder: Path, commit: str = COMMIT) -> Path:
    """Lay ``folder`` out as huggingface_hub caches a repository: blobs by hash, a snapshot of
    symlinks, refs/main -> commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        blob = repo / "blobs" / hashlib.sha256(p.read_bytes()).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        shutil.copyfile(p, blob)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snap


def test_offline_download_from_the_cache_is_verified_and_recovers(release, tmp_path):
    cache = tmp_path / "hf-cache"
    cache_repo(cache, REPO, release / "diff")
    got = download(REPO, tmp_path / "zhixi-diff", cache_dir=cache, progress=False)
    assert got.source == "cache" and got.verified == "manifest+SHA256SUMS"
    listed = (release / "diff" / "SHA256SUMS").read_text().splitlines()
    assert got.verified_files == len(listed) == got.files - 1  # every file but SHA256SUMS itself
    assert not any(p.is_symlink() for p in (tmp_path / "zhixi-diff").rglob("*"))  # real files, not cache links
    rec = recover(release / "raw", tmp_path / "zhixi-diff", tmp_path / "zhixi", progress=False)
    assert rec.verified == 21 and rec.files_match_manifest
    again = download(REPO, tmp_path / "zhixi-diff", cache_dir=cache, progress=False)  # a re-run resumes, no error
    assert again.verified_files == len(listed)


def test_include_patterns_and_the_environment_cache(release, tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    cache_repo(cache, REPO, release / "diff")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    got = download(REPO, tmp_path / "part", include=["*.json", "model-00001-*"], progress=False)
    names = sorted(p.name for p in (tmp_path / "part").iterdir() if not p.name.startswith("."))
    shards = sorted(p.name for p in (release / "diff").glob("model-*.safetensors"))
    assert shards[0] in names and shards[1] not in names and "fixups" not in names and "SHA256SUMS" not in names
    assert got.verified == "manifest" and got.verified_files == 1


def test_offline_and_not_cached_says_so(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"zjunlp/zhixi-13b-diff@main is not in the local Hugging Face cache \(.*empty\) "
                                         r"and the Hub is offline \(HF_HUB_OFFLINE=1\)"):
        download("zjunlp/zhixi-13b-diff", tmp_path / "d", cache_dir=tmp_path / "empty", progress=False)
    rc, _, err = run_cli(capsys, "hub", "download", "zjunlp/zhixi-13b-diff", tmp_path / "d2", "--cache-dir",
                         tmp_path / "empty", "--no-progress")
    assert_one_line_error(rc, err, "is not in the local Hugging Face cache", "HF_HUB_OFFLINE=1", command="hub")


def test_a_corrupted_cached_file_is_caught(release, tmp_path):
    cache = tmp_path / "hf-cache"
    snap = cache_repo(cache, REPO, release / "diff")
    second = sorted(p.name for p in (release / "diff").glob("model-*.safetensors"))[1]
    blob = (snap / second).resolve()
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{second}: SHA-256 differs from knowlm-release\.json"):
        download(REPO, tmp_path / "d", cache_dir=cache, progress=False)


def test_a_local_folder_works_as_the_source_and_foreign_folders_are_kept(release, tmp_path, capsys):
    got = download(str(release / "diff"), tmp_path / "copy", progress=False)
    assert got.source == "folder" and got.verified == "manifest+SHA256SUMS"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    rc, _, err = run_cli(capsys, "hub", "download", release / "diff", mine, "--no-progress")
    assert_one_line_error(rc, err, "already holds files knowlm did not download", command="hub")


def test_upload_verifies_first_and_sends_the_folder(release, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)) or "https://hub/commit/1")
    with pytest.raises(ValueError, match=r"the Hub is offline \(HF_HUB_OFFLINE=1\)"):
        upload(release / "diff", REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    bad = tmp_path / "bad"
    shutil.copytree(release / "diff", bad)
    (bad / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"1 of \d+ files fail SHA256SUMS: config\.json"):
        upload(bad, REPO)
    assert calls == []
    res = upload(release / "diff", REPO, private=True)
    assert [c[0] for c in calls] == ["create", "upload"] and calls[0][2]["private"] is True
    kw = calls[1][1]
    assert kw["folder_path"] == str(release / "diff") and kw["ignore_patterns"] == [".*", "**/.*"]
    assert res.verified == "manifest+SHA256SUMS" and res.commit == "https://hub/commit/1"
