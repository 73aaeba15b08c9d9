"""Stage 09 building blocks: the streamed safetensors writer (byte-identical to the library),
byte-range reads, folder discovery and its refusals, and the canonical tensor hash."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from knowlm_utils.release.manifest import hash_tensor
from knowlm_utils.release.shards import ShardWriter, file_order, plan_shards
from knowlm_utils.release.tensors import ModelFiles, SafetensorsFile, TensorSpec, parse_size


def mixed_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(37, 8, generator=g),
        "b.half": torch.randn(5, 3, generator=g).half(),
        "a.bf16": torch.randn(7, generator=g).bfloat16(),
        "ids": torch.arange(11, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "名字.weight": torch.randn(2, 2, generator=g).double(),
    }


def write_streamed(tensors, path, block_rows: int = 4):
    specs = [TensorSpec(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()]
    [plan] = plan_shards(specs, 10**9)
    with ShardWriter(path, plan) as w:
        for spec in plan.tensors:
            t = tensors[spec.name]
            if t.dim() == 0 or t.shape[0] == 0:
                w.write(spec.name, t)
                continue
            for a in range(0, t.shape[0], block_rows):
                w.write(spec.name, t[a:a + block_rows])
    return w.sha256


def test_streamed_shard_is_byte_identical_to_safetensors_save_file(tmp_path):
    tensors = mixed_tensors()
    sha = write_streamed(tensors, tmp_path / "ours.safetensors")
    save_file(tensors, tmp_path / "lib.safetensors", metadata={"format": "pt"})
    ours, lib = (tmp_path / "ours.safetensors").read_bytes(), (tmp_path / "lib.safetensors").read_bytes()
    assert ours == lib
    assert sha == hashlib.sha256(ours).hexdigest()
    back = load_file(tmp_path / "ours.safetensors")
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


def test_writer_refuses_out_of_order_or_short_writes_and_leaves_no_file(tmp_path):
    tensors = {"a": torch.zeros(4, 2), "b": torch.ones(3)}
    [plan] = plan_shards([TensorSpec(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()])
    with pytest.raises(RuntimeError, match="expected a, got b"):
        with ShardWriter(tmp_path / "x.safetensors", plan) as w:
            w.write("b", tensors["b"])
    with pytest.raises(RuntimeError, match="closed before a was written"):
        with ShardWriter(tmp_path / "x.safetensors", plan) as w:
            pass
    assert not list(tmp_path.iterdir())


def test_plan_keeps_shards_under_the_limit_in_library_order():
    specs = [TensorSpec(f"t{i}", torch.float32, (10, 10)) for i in range(7)]  # 400 bytes each
    plans = plan_shards(specs, 1000)
    assert [len(p.tensors) for p in plans] == [2, 2, 2, 1]
    assert [p.file for p in plans][0] == "model-00001-of-00004.safetensors"
    mixed = [TensorSpec("z", torch.float16, (1,)), TensorSpec("a", torch.float16, (1,)), TensorSpec("m", torch.int64, (1,))]
    assert [s.name for s in file_order(mixed)] == ["m", "a", "z"]
    assert parse_size("2GB") == 2 * 10**9 and parse_size("1GiB") == 2**30 and parse_size("500MB") == 5 * 10**8
    with pytest.raises(ValueError, match="cannot read size"):
        parse_size("lots")


def test_byte_range_reads_match_and_damaged_files_are_named(tmp_path):
    tensors = mixed_tensors()
    save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt"})
    f = SafetensorsFile(tmp_path / "m.safetensors")
    emb = tensors["model.embed_tokens.weight"]
    assert torch.equal(f.read("model.embed_tokens.weight", 5, 9), emb[5:9])
    assert torch.equal(f.read("scalar"), tensors["scalar"]) and f.read("empty").shape == (0, 4)
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "short.safetensors").write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"short\.safetensors: the file has \d+ bytes but its header describes \d+ — truncated"):
        SafetensorsFile(tmp_path / "short.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(struct.pack("<Q", 5) + b"notjs" + b"\0" * 8)
    with pytest.raises(ValueError, match="junk.safetensors: not a safetensors file"):
        SafetensorsFile(tmp_path / "junk.safetensors")


def test_folder_discovery_and_its_refusals(tmp_path):
    a, b = {"x": torch.zeros(2)}, {"y": torch.ones(2)}
    d = tmp_path / "sharded"
    d.mkdir()
    save_file(a, d / "model-00001-of-00002.safetensors")
    save_file(b, d / "model-00002-of-00002.safetensors")
    index = {"weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with ModelFiles(d) as m:
        assert m.names == ["x", "y"] and m.kind == "safetensors" and torch.equal(m.read("y"), b["y"])
    index["weight_map"]["z"] = "model-00002-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"the shard index does not match the shards: 1 listed but missing \(z\)"):
        ModelFiles(d, "RAW")
    index["weight_map"]["z"] = "model-00003-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"lists shard model-00003-of-00002\.safetensors, which is missing"):
        ModelFiles(d)
    dup = tmp_path / "dup"
    dup.mkdir()
    save_file(a, dup / "one.safetensors")
    save_file(a, dup / "two.safetensors")
    with pytest.raises(ValueError, match="DIFF: tensor x is in both one.safetensors and two.safetensors"):
        ModelFiles(dup, "DIFF")
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "consolidated.00.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="Meta's original consolidated"):
        ModelFiles(meta)
    with pytest.raises(ValueError, match="no such model folder"):
        ModelFiles(tmp_path / "nope")


def test_canonical_hash_is_the_documented_definition():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    header = json.dumps({"dtype": "F32", "name": "w", "shape": [2, 3]}, sort_keys=True, separators=(",", ":"))
    expected = hashlib.sha256(b"knowlm-tensor/1\n" + header.encode() + b"\n" +
                              np.arange(6, dtype="<f4").tobytes()).hexdigest()
    assert hash_tensor("w", t) == expected
    assert hash_tensor("w", t.T.contiguous()) != expected  # shape counts
    assert hash_tensor("v", t) != expected  # name counts
    assert hash_tensor("w", t.double()) != expected  # dtype counts
    assert hash_tensor("w", t.clone()) == expected  # the storage, the pickle, the torch version do not
