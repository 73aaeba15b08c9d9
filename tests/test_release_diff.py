"""Stage 09 weight diffs: make_diff / recover round trips (bit-exact in fp32 and fp16), KnowLM's
arithmetic and sum check, every refusal (wrong base, corrupted diff, names, shapes, dtypes,
vocabulary, config), resume after a crash, and legacy pytorch_model-*.bin inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import assert_one_line_error, release_config, run_cli, save_release_model
from knowlm_utils.release import output as output_mod
from knowlm_utils.release.diff import make_diff, recover
from knowlm_utils.release.manifest import read_manifest, verify_model
from knowlm_utils.release.tensors import SafetensorsFile

SMALL_SHARDS = "60KB"  # the tiny models (~0.3 MB) come out in several shards


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def load_folder(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def assert_bit_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(bits(a[k]), bits(b[k])), f"{k} differs"


@pytest.fixture(scope="module")
def models(tmp_path_factory, hf_tokenizer_dir):
    """raw (seed 0) and tuned = raw + noise, with planted weights that cross zero (where fp32
    tuned − raw does not round-trip), each saved as safetensors with the tokenizer."""
    from transformers import LlamaForCausalLM

    root = tmp_path_factory.mktemp("diff_models")
    torch.manual_seed(0)
    raw = LlamaForCausalLM(release_config())
    tuned = LlamaForCausalLM(release_config())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for (_, p), (_, q) in zip(tuned.named_parameters(), raw.named_parameters()):
            p.copy_(q + torch.randn(q.shape, generator=g) * 1e-3)
        w = tuned.model.layers[1].mlp.up_proj.weight
        w.view(-1)[:50] = torch.linspace(-1e-9, 1e-9, 50)  # large raw weight → tiny tuned weight
    return {"root": root, "raw": save_release_model(raw, root / "raw", hf_tokenizer_dir),
            "tuned": save_release_model(tuned, root / "tuned", hf_tokenizer_dir)}


@pytest.fixture(scope="module")
def diff32(models):
    out = models["root"] / "diff32"
    result = make_diff(models["raw"], models["tuned"], out, max_shard_size=SMALL_SHARDS, progress=False)
    return out, result


def test_fp32_round_trip_is_bit_exact_and_files_match_the_published_checksums(models, diff32, tmp_path):
    diff, made = diff32
    assert made.shards >= 3 and made.tensors == 21 and made.dtype == "float32"
    raw, tuned = load_file(models["raw"] / "model.safetensors"), load_file(models["tuned"] / "model.safetensors")
    # where fp32 arithmetic alone would lose the tuned value, make_diff stored it exactly
    naive = sum(int((bits(raw[k] + (tuned[k] - raw[k])) != bits(tuned[k])).sum()) for k in tuned)
    assert naive > 0 and made.inexact_elements == made.fixups == naive
    man = read_manifest(diff)
    assert man["kind"] == "diff" and man["diff"]["model.layers.1.mlp.up_proj.weight"]["fixups"] >= 1
    stored = load_folder(diff)
    assert_bit_equal(stored, {k: tuned[k] - raw[k] for k in tuned})  # KnowLM's format: tuned − raw

    got = recover(models["raw"], diff, tmp_path / "zhixi", progress=False)
    assert got.verified == 21 and got.files_match_manifest and got.fixups_applied == naive
    assert_bit_equal(load_folder(tmp_path / "zhixi"), tuned)
    assert json.loads((tmp_path / "zhixi" / "config.json").read_text())["vocab_size"] == 2000
    assert (tmp_path / "zhixi" / "tokenizer.model").read_bytes() == (models["tuned"] / "tokenizer.model").read_bytes()
    sums = (tmp_path / "zhixi" / "SHA256SUMS").read_text()
    for f, sha in man["recovered_files"].items():
        assert f"{sha}  {f}\n" in sums  # the diff published the recovered files' SHA-256 in advance
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=tmp_path / "zhixi", check=True)
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=diff, check=True)
    assert verify_model(tmp_path / "zhixi", progress=False).tensors == 21
    assert verify_model(diff, progress=False).kind == "diff"

    from transformers import LlamaForCausalLM  # the output is a normal Hugging Face model folder

    a = LlamaForCausalLM.from_pretrained(tmp_path / "zhixi").eval()
    b = LlamaForCausalLM.from_pretrained(models["tuned"]).eval()
    ids = torch.tensor([[1, 5, 99, 1500, 7]])
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)


def test_fp16_diff_round_trip_is_bit_exact(models, tmp_path):
    made = make_diff(models["raw"], models["tuned"], tmp_path / "diff16", dtype="fp16", progress=False)
    raw, tuned = load_file(models["raw"] / "model.safetensors"), load_file(models["tuned"] / "model.safetensors")
    half = {k: v.half() for k, v in tuned.items()}
    naive = sum(int((bits(raw[k].half() + (half[k] - raw[k].half())) != bits(half[k])).sum()) for k in half)
    assert made.dtype == "float16" and naive > 100 and made.fixups == naive  # fp16 rounding, all stored exactly
    got = recover(models["raw"], tmp_path / "diff16", tmp_path / "out", progress=False)
    assert got.dtype == "float16" and got.verified == 21 and got.files_match_manifest
    assert_bit_equal(load_folder(tmp_path / "out"), half)


def test_without_fixups_recover_is_knowlms_arithmetic(models, tmp_path):
    made = make_diff(models["raw"], models["tuned"], tmp_path / "plain", exact=False, progress=False)
    assert made.fixups == 0 and made.inexact_elements > 0 and not (tmp_path / "plain" / "fixups").exists()
    got = recover(models["raw"], tmp_path / "plain", tmp_path / "out", progress=False)
    assert got.verified == 21  # the manifest describes what raw + diff gives
    raw, diff = load_file(models["raw"] / "model.safetensors"), load_folder(tmp_path / "plain")
    assert_bit_equal(load_folder(tmp_path / "out"), {k: raw[k] + diff[k] for k in diff})  # KnowLM: tuned = raw + diff


def test_recover_to_fp16_rounds_the_fp32_result_once(models, diff32, tmp_path):
    got = recover(models["raw"], diff32[0], tmp_path / "out16", dtype="fp16", progress=False)
    tuned = load_file(models["tuned"] / "model.safetensors")
    assert got.verified == 21 and not got.files_match_manifest  # verified in fp32, a new layout in fp16
    assert_bit_equal(load_folder(tmp_path / "out16"), {k: v.half() for k, v in tuned.items()})
    cfg = json.loads((tmp_path / "out16" / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "float16"


def test_knowlm_sum_check(models, diff32, tmp_path):
    total = read_manifest(diff32[0])["total_sum"]
    ok = recover(models["raw"], diff32[0], tmp_path / "a", expect_sum=total + 0.001, progress=False)
    assert ok.sum_check.startswith("sum ")
    with pytest.raises(ValueError, match=r"sum to -?\d+\.\d+, expected 50637\.1836 \(±0\.01\)"):
        recover(models["raw"], diff32[0], tmp_path / "b", expect_sum=50637.1836, progress=False)
    assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------- refusals ----


def other_raw(models, tmp_path, seed: int = 7, **cfg) -> Path:
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return save_release_model(LlamaForCausalLM(release_config(**cfg)), tmp_path / f"raw-{seed}")


def test_wrong_base_is_refused_naming_the_tensor(models, diff32, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"tensor \S+\.weight: RAW \(.*\) is not the base this diff was made from"):
        recover(other_raw(models, tmp_path), diff32[0], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    raw = other_raw(models, tmp_path, seed=8)
    capsys.readouterr()
    rc, _, err = run_cli(capsys, "weights", "recover", raw, diff32[0], tmp_path / "out2", "--no-progress")
    assert_one_line_error(rc, err, "is not the base this diff was made from", command="weights")


def test_corrupted_diff_tensor_is_refused_naming_it(models, diff32, tmp_path):
    bad = tmp_path / "diff"
    shutil.copytree(diff32[0], bad)
    name = "model.layers.0.self_attn.k_proj.weight"
    shard = bad / json.loads((bad / "model.safetensors.index.json").read_text())["weight_map"][name]
    offset = SafetensorsFile(shard).offsets[name] + 100
    data = bytearray(shard.read_bytes())
    data[offset] ^= 0x40
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"tensor {name}: DIFF \(.*\) is corrupted"):
        recover(models["raw"], bad, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="files fail SHA256SUMS"):
        from knowlm_utils.release.checksums import verify_checksums

        verify_checksums(bad)


def test_missing_tensor_is_refused_saying_which_side_lacks_it(models, diff32, tmp_path):
    sd = load_file(models["raw"] / "model.safetensors")
    del sd["model.norm.weight"]
    (tmp_path / "raw").mkdir()
    save_file(sd, tmp_path / "raw" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"DIFF \(.*\) has 1 tensor\(s\) RAW lacks: model\.norm\.weight"):
        recover(tmp_path / "raw", diff32[0], tmp_path / "out", progress=False)


def test_vocabulary_mismatch_names_both_sides(models, diff32, tmp_path):
    raw = other_raw(models, tmp_path, vocab_size=2001)
    with pytest.raises(ValueError, match=r"model\.embed_tokens\.weight: RAW \(.*\) has shape \[2001, 32\] but DIFF .* "
                                         r"RAW has 2001 tokens, DIFF has 2000 \(one more: a pad token"):
        recover(raw, diff32[0], tmp_path / "out", progress=False)


def test_config_vocab_size_left_behind_is_refused(models, diff32, tmp_path):
    bad = tmp_path / "diff"
    shutil.copytree(diff32[0], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["vocab_size"] = 32000
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"DIFF \(.*\): config\.json says vocab_size 32000 but its "
                                         r"model\.embed_tokens\.weight has 2000 rows"):
        recover(models["raw"], bad, tmp_path / "out", progress=False)


def test_dtype_mismatch_with_the_manifest_is_refused(models, diff32, tmp_path):
    fp16 = tmp_path / "diff16"
    make_diff(models["raw"], models["tuned"], fp16, dtype="fp16", progress=False)
    shutil.copyfile(diff32[0] / "knowlm-release.json", fp16 / "knowlm-release.json")  # a mixed download
    with pytest.raises(ValueError, match=r"tensor \S+: DIFF \(model-00001-of-00001\.safetensors\) stores float16 but "
                                         r"its manifest says float32"):
        recover(models["raw"], fp16, tmp_path / "out", progress=False)


def test_make_diff_refuses_mismatched_models_and_foreign_output(models, tmp_path):
    with pytest.raises(ValueError, match=r"RAW has 2001 tokens, TUNED has 2000"):
        make_diff(other_raw(models, tmp_path, vocab_size=2001), models["tuned"], tmp_path / "d", progress=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not written by knowlm"):
        make_diff(models["raw"], models["tuned"], mine, progress=False)
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="holds this run's input"):
        make_diff(models["raw"], models["tuned"], models["root"], progress=False)


# ------------------------------------------------------------------------------- resume ----


def test_resume_after_a_crash_skips_verified_shards(models, diff32, tmp_path, monkeypatch):
    out = tmp_path / "zhixi"
    written = []

    def crash_after_two(name):
        written.append(name)
        if len(written) == 2:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(output_mod, "_after_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        recover(models["raw"], diff32[0], out, max_shard_size=SMALL_SHARDS, progress=False)
    assert not out.exists()
    partial = tmp_path / ".zhixi.partial"
    assert len(list(partial.glob("model-*.safetensors"))) == 2
    (partial / ".model-00003.safetensors.abc.tmp").write_bytes(b"half a shard")  # killed mid-write
    monkeypatch.setattr(output_mod, "_after_shard", None)
    # another run holding the lock is refused
    import fcntl

    with open(partial / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="another knowlm run is writing it"):
            recover(models["raw"], diff32[0], out, progress=False)
    got = recover(models["raw"], diff32[0], out, max_shard_size=SMALL_SHARDS, progress=False)
    assert got.resumed_shards == 2 and got.verified == 21 and got.files_match_manifest
    assert not partial.exists() and not list(out.rglob("*.tmp")) and not (out / ".done").exists()
    assert_bit_equal(load_folder(out), load_file(models["tuned"] / "model.safetensors"))


def test_resume_redoes_a_shard_whose_bytes_changed_and_restarts_on_new_inputs(models, tmp_path, monkeypatch):
    out = tmp_path / "diff"
    monkeypatch.setattr(output_mod, "_after_shard", lambda name: (_ for _ in ()).throw(RuntimeError("kill")))
    with pytest.raises(RuntimeError):
        make_diff(models["raw"], models["tuned"], out, max_shard_size=SMALL_SHARDS, progress=False)
    monkeypatch.setattr(output_mod, "_after_shard", None)
    shard = next((tmp_path / ".diff.partial").glob("model-00001-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-4] + b"\0\0\0\0")  # a shard damaged after it was recorded
    again = make_diff(models["raw"], models["tuned"], out, max_shard_size=SMALL_SHARDS, progress=False)
    assert again.resumed_shards == 0
    make_diff(models["raw"], models["tuned"], tmp_path / "ref", max_shard_size=SMALL_SHARDS, progress=False)
    assert_bit_equal(load_folder(out), load_folder(tmp_path / "ref"))
    # a partial run with other options is discarded, not mixed in
    monkeypatch.setattr(output_mod, "_after_shard", lambda name: (_ for _ in ()).throw(RuntimeError("kill")))
    with pytest.raises(RuntimeError):
        make_diff(models["raw"], models["tuned"], tmp_path / "x", max_shard_size=SMALL_SHARDS, progress=False)
    monkeypatch.setattr(output_mod, "_after_shard", None)
    other = make_diff(models["raw"], models["tuned"], tmp_path / "x", dtype="fp16", max_shard_size=SMALL_SHARDS,
                      progress=False)
    assert other.resumed_shards == 0 and other.dtype == "float16"


# --------------------------------------------------------------------------- legacy .bin ----


def save_bin_shards(sd: dict[str, torch.Tensor], folder: Path, n: int, index: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = list(sd)
    wmap = {}
    for i in range(n):
        part = {k: sd[k].clone() for k in names[i::n]}
        fname = f"pytorch_model-{i + 1:05d}-of-{n:05d}.bin"
        torch.save(part, folder / fname)
        wmap.update({k: fname for k in part})
    if index:
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
    return folder


def test_knowlm_style_bin_diff_recovers_like_weight_diff_py(models, tmp_path):
    """A ZhiXi-like release: raw and diff as pickled .bin shards (one without an index), no manifest."""
    raw, tuned = load_file(models["raw"] / "model.safetensors"), load_file(models["tuned"] / "model.safetensors")
    diff = {k: tuned[k] - raw[k] for k in tuned}
    diff["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # older transformers saved this buffer
    raw_bin = save_bin_shards(raw, tmp_path / "raw_bin", 2, index=False)
    diff_bin = save_bin_shards(diff, tmp_path / "diff_bin", 3, index=True)
    shutil.copyfile(models["tuned"] / "config.json", diff_bin / "config.json")
    got = recover(raw_bin, diff_bin, tmp_path / "out", progress=False)
    assert got.verified == 0 and got.skipped == ["model.layers.0.self_attn.rotary_emb.inv_freq"]
    assert_bit_equal(load_folder(tmp_path / "out"), {k: raw[k] + diff[k] for k in raw})
    # and our own diff made from .bin inputs round-trips exactly
    tuned_bin = save_bin_shards(tuned, tmp_path / "tuned_bin", 1, index=False)
    shutil.copyfile(models["tuned"] / "config.json", tuned_bin / "config.json")
    make_diff(raw_bin, tuned_bin, tmp_path / "d", progress=False)
    recover(raw_bin, tmp_path / "d", tmp_path / "r", progress=False)
    assert_bit_equal(load_folder(tmp_path / "r"), tuned)


class NotATensor:
    pass


def test_a_bin_holding_code_is_refused_not_unpickled(models, tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save({"model.norm.weight": torch.ones(32), "payload": NotATensor()}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: not a plain tensor checkpoint \(weights_only load refused"):
        recover(folder, models["raw"], tmp_path / "out", progress=False)


def test_cli_round_trip_verify_and_manifest_of_a_pickled_model(models, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "weights", "make-diff", models["raw"], models["tuned"], tmp_path / "d", "--dtype",
                           "fp16", "--no-progress")
    assert rc == 0, err
    assert "diff of 21 tensors" in out and "float16" in out and "stored exactly in fixups/" in out
    rc, out, err = run_cli(capsys, "weights", "recover", models["raw"], tmp_path / "d", tmp_path / "r", "--no-progress")
    assert rc == 0 and "all 21 tensors match the manifest" in out, err
    rc, out, _ = run_cli(capsys, "weights", "verify", tmp_path / "r", "--no-progress")
    assert rc == 0 and "21 tensors" in out
    rc, _, err = run_cli(capsys, "weights", "recover", models["raw"], tmp_path / "d", tmp_path / "r2", "--dtype", "fp8",
                         "--no-progress")
    assert_one_line_error(rc, err, "unknown dtype 'fp8'", command="weights")
    # a legacy pickle gets canonical tensor hashes, equal to those of the same weights in safetensors
    tuned = load_file(models["tuned"] / "model.safetensors")
    save_bin_shards(tuned, tmp_path / "bin", 2, index=True)
    rc, out, err = run_cli(capsys, "weights", "manifest", tmp_path / "bin", tmp_path / "bin.json", "--no-progress")
    assert rc == 0, err
    from_bin = json.loads((tmp_path / "bin.json").read_text())
    from_st = verify_model(models["tuned"], from_bin, progress=False)  # the safetensors copy matches the pickle's hashes
    assert from_st.tensors == 21 and "files" not in from_bin  # no file hashes of pickles
    tuned["model.norm.weight"][0] += 1
    save_bin_shards(tuned, tmp_path / "bin2", 1, index=False)
    with pytest.raises(ValueError, match=r"tensor model\.norm\.weight \(pytorch_model-00001-of-00001\.bin\) does not "
                                         r"match the manifest"):
        verify_model(tmp_path / "bin2", from_bin, progress=False)


def test_fp16_base_with_an_fp32_diff_like_llama_and_zhixi(models, tmp_path):
    """LLaMA's converted weights are fp16 and ZhiXi's diff fp32: raw is upcast before the add."""
    raw = load_file(models["raw"] / "model.safetensors")
    (tmp_path / "raw16").mkdir()
    save_file({k: v.half() for k, v in raw.items()}, tmp_path / "raw16" / "model.safetensors", metadata={"format": "pt"})
    made = make_diff(tmp_path / "raw16", models["tuned"], tmp_path / "d", progress=False)
    assert made.dtype == "float32"
    got = recover(tmp_path / "raw16", tmp_path / "d", tmp_path / "r", progress=False)
    assert got.verified == 21
    assert_bit_equal(load_folder(tmp_path / "r"), load_file(models["tuned"] / "model.safetensors"))
    with pytest.raises(ValueError, match=r"is not the base this diff was made from .*RAW stores float32, added in float32"):
        recover(models["raw"], tmp_path / "d", tmp_path / "r2", progress=False)  # the fp32 original is another base
