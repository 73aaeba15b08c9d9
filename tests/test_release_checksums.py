"""Stage 09 checksum lists: SHA256SUMS/MD5SUMS that sha256sum -c / md5sum -c accept, pickles left
out of lists we make, published lists (KnowLM's MD5 of .bin shards) verified, failures named."""

from __future__ import annotations

import subprocess

import pytest
import torch
from safetensors.torch import save_file

from conftest import assert_one_line_error, run_cli
from knowlm_utils.release.checksums import file_hash, make_checksums, read_list, verify_checksums


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "release"
    (d / "fixups").mkdir(parents=True)
    save_file({"w": torch.arange(10.0)}, d / "model-00001-of-00001.safetensors")
    save_file({"w.index": torch.arange(3)}, d / "fixups" / "model-00001-of-00001.safetensors")
    (d / "config.json").write_text('{"vocab_size": 10}\n')
    (d / ".knowlm-output.json").write_text("{}")
    torch.save({"w": torch.zeros(2)}, d / "pytorch_model.bin")
    return d


def test_lists_are_read_by_sha256sum_and_md5sum_and_leave_pickles_out(folder):
    made = make_checksums(folder)
    assert made.files == 3 and made.pickles_left_out == ["pytorch_model.bin"]
    text = (folder / "SHA256SUMS").read_text()
    assert text.splitlines()[0].endswith("  config.json") and "fixups/model-00001-of-00001.safetensors" in text
    assert ".knowlm-output.json" not in text and "pytorch_model.bin" not in text
    assert "their bytes depend on the torch version" in made.summary()
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=folder, check=True)
    make_checksums(folder, "md5")
    subprocess.run(["md5sum", "--quiet", "-c", "MD5SUMS"], cwd=folder, check=True)
    assert verify_checksums(folder).algo == "sha256" and len(verify_checksums(folder).ok) == 3


def test_verify_names_changed_and_missing_files(folder, capsys):
    make_checksums(folder)
    (folder / "config.json").write_text('{"vocab_size": 32000}\n')
    (folder / "fixups" / "model-00001-of-00001.safetensors").unlink()
    with pytest.raises(ValueError, match=r"2 of 3 files fail SHA256SUMS: config\.json \(sha256 \w+…, expected \w+…\), "
                                         r"fixups/model-00001-of-00001\.safetensors \(missing\)"):
        verify_checksums(folder)
    rc, _, err = run_cli(capsys, "checksum", "verify", folder)
    assert_one_line_error(rc, err, "config.json", "(missing)", command="checksum")
    with pytest.raises(ValueError, match=r"1 of 3 files fail SHA256SUMS: config\.json"):
        verify_checksums(folder, allow_missing=True)  # a missing file may be allowed, a changed one never


def test_a_published_md5_list_of_pickles_is_verified(folder, tmp_path, capsys):
    """KnowLM publishes MD5 of its .bin shards; verify checks such a list as given."""
    published = tmp_path / "zhixi-md5.txt"
    published.write_text(f"{file_hash(folder / 'pytorch_model.bin', 'md5')}  pytorch_model.bin\n")
    assert read_list(published)[0] == "md5"
    rc, out, err = run_cli(capsys, "checksum", "verify", folder, "--list", published)
    assert rc == 0 and "1 files OK (zhixi-md5.txt, md5)" in out
    published.write_text("not a checksum line\n")
    rc, _, err = run_cli(capsys, "checksum", "verify", folder, "--list", published)
    assert_one_line_error(rc, err, "zhixi-md5.txt:1: not a checksum line (hex digest, two spaces, file)", command="checksum")
    published.write_text(f"{'0' * 64}  ../outside.txt\n")
    with pytest.raises(ValueError, match="points outside the folder"):
        verify_checksums(folder, published)


def test_cli_make(folder, capsys):
    rc, out, _ = run_cli(capsys, "checksum", "make", folder, "--algo", "md5")
    assert rc == 0 and "MD5SUMS: 3 files" in out and (folder / "MD5SUMS").is_file()
    rc, _, err = run_cli(capsys, "checksum", "make", folder / "nope")
    assert_one_line_error(rc, err, "nope: not a folder", command="checksum")
