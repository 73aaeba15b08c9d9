"""Stage 09 LoRA merge and GGUF export: streamed merges bit-identical to PEFT's merge_and_unload
(fp32, fp16, two adapters in order), the vocabulary resized from an adapter's modules_to_save with
config.vocab_size updated, logits equal to base + adapter, every vocabulary/shape refusal, legacy
.bin inputs, and GGUF written with the gguf package and read back tensor by tensor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import assert_one_line_error, release_config, run_cli, save_release_model
from knowlm_utils.release.gguf_export import check_gguf, export_gguf
from knowlm_utils.release.merge import merge_lora, verify_merge


def load_folder(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def make_adapter(base: Path, out: Path, *, seed: int, vocab: int | None = None, tokenizer: Path | None = None,
                 modules_to_save=None, **lora) -> Path:
    """A real PEFT LoRA adapter on ``base`` with non-zero B (as after training)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM.from_pretrained(base)
    if vocab is not None:
        model.resize_token_embeddings(vocab, mean_resizing=False)
    cfg = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    cfg.update(lora)
    peft = get_peft_model(model, LoraConfig(modules_to_save=modules_to_save, **cfg))
    peft.save_pretrained(out)
    if tokenizer is not None:
        for p in tokenizer.iterdir():
            if p.is_file() and not p.name.startswith("."):
                shutil.copyfile(p, out / p.name)
    return out


def peft_reference(base: Path, adapters: list[Path], dtype=torch.float32, vocab: int | None = None):
    """What Chinese-LLaMA-Alpaca's merge does with PEFT: resize, then merge_and_unload each adapter."""
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(base, dtype=dtype)
    if vocab is not None:
        model.resize_token_embeddings(vocab, mean_resizing=False)
    for a in adapters:
        model = PeftModel.from_pretrained(model, a).merge_and_unload()
    return model.state_dict()


@pytest.fixture(scope="module")
def lora_setup(tmp_path_factory, hf_tokenizer_dir, extended_tokenizer_dir):
    """A base (2000 tokens) and two adapters: a Chinese-vocabulary one that extends to 2010 tokens
    (embed_tokens + lm_head in modules_to_save, its tokenizer beside it) and an instruction one
    (rsLoRA, an alpha pattern, MLP targets)."""
    from transformers import LlamaForCausalLM

    root = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    base = save_release_model(LlamaForCausalLM(release_config()), root / "base", hf_tokenizer_dir)
    zh = make_adapter(base, root / "zh", seed=1, vocab=2010, tokenizer=extended_tokenizer_dir,
                      modules_to_save=["embed_tokens", "lm_head"])
    # the second adapter is trained on the merged (2010-token) model, as in Chinese-Alpaca-Plus
    from peft import PeftModel

    m = LlamaForCausalLM.from_pretrained(base)
    m.resize_token_embeddings(2010, mean_resizing=False)
    PeftModel.from_pretrained(m, zh).merge_and_unload().save_pretrained(root / "merged_ref")
    sft = make_adapter(root / "merged_ref", root / "sft", seed=2, r=8, lora_alpha=16, use_rslora=True,
                       target_modules=["q_proj", "k_proj", "down_proj"], alpha_pattern={"down_proj": 4})
    return {"root": root, "base": base, "zh": zh, "sft": sft}


def test_two_adapters_merge_bit_identical_to_peft_with_the_vocabulary_extended(lora_setup, tmp_path):
    s = lora_setup
    r = merge_lora(s["base"], [s["zh"], s["sft"]], tmp_path / "out", max_shard_size="60KB", progress=False)
    assert r.shards >= 3 and r.lora_merged == 4 + 6 and r.replaced == 2
    assert (r.vocab_size_before, r.vocab_size_after, r.tokenizer_size) == (2000, 2010, 2010)
    ref = peft_reference(s["base"], [s["zh"], s["sft"]], vocab=2010)
    got = load_folder(tmp_path / "out")
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref), [k for k in ref if not torch.equal(got[k], ref[k])]
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["vocab_size"] == 2010  # not left at the base's 2000
    assert (tmp_path / "out" / "tokenizer.model").read_bytes() == (s["zh"] / "tokenizer.model").read_bytes()
    check = verify_merge(s["base"], [s["zh"], s["sft"]], tmp_path / "out")
    assert check.ok and check.prompts == 4 and check.max_abs_diff <= check.tolerance


def test_fp16_merge_and_logit_check(lora_setup, tmp_path):
    s = lora_setup
    r = merge_lora(s["base"], s["zh"], tmp_path / "out", dtype="fp16", verify_logits=True, progress=False)
    assert r.dtype == "float16" and r.logits["ok"]
    ref = peft_reference(s["base"], [s["zh"]], dtype=torch.float16, vocab=2010)
    got = load_folder(tmp_path / "out")
    assert all(got[k].dtype == torch.float16 and torch.equal(got[k], ref[k]) for k in ref)


def test_legacy_bin_base_and_adapter_merge_like_safetensors(lora_setup, tmp_path):
    from transformers import LlamaForCausalLM

    s = lora_setup
    base_bin = tmp_path / "base_bin"
    base_bin.mkdir()
    sd = LlamaForCausalLM.from_pretrained(s["base"]).state_dict()
    names = list(sd)
    for i in range(2):  # Chinese-LLaMA-Alpaca era shards, no index
        torch.save({k: sd[k].clone() for k in names[i::2]}, base_bin / f"pytorch_model-{i + 1:05d}-of-00002.bin")
    for f in [*s["base"].glob("tokenizer*"), s["base"] / "config.json"]:
        shutil.copyfile(f, base_bin / f.name)
    assert list(base_bin.glob("pytorch_model*.bin")) and not list(base_bin.glob("*.safetensors"))
    zh_bin = tmp_path / "zh_bin"
    shutil.copytree(s["zh"], zh_bin)
    torch.save(load_file(zh_bin / "adapter_model.safetensors"), zh_bin / "adapter_model.bin")
    (zh_bin / "adapter_model.safetensors").unlink()
    merge_lora(base_bin, zh_bin, tmp_path / "from_bin", progress=False)
    merge_lora(s["base"], s["zh"], tmp_path / "from_st", progress=False)
    a, b = load_folder(tmp_path / "from_bin"), load_folder(tmp_path / "from_st")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_vocabulary_mismatches_are_refused_naming_each_side(lora_setup, tmp_path, extended_tokenizer_dir, capsys):
    s = lora_setup
    half = tmp_path / "half"  # an adapter carrying the extended embeddings but not the LM head
    shutil.copytree(s["zh"], half)
    sd = load_file(half / "adapter_model.safetensors")
    save_file({k: v for k, v in sd.items() if "lm_head" not in k}, half / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=r"after ADAPTER \(.*half\): model\.embed_tokens\.weight has 2010 rows \(from "
                                         r"ADAPTER\) but lm_head\.weight has 2000 \(from BASE\)"):
        merge_lora(s["base"], half, tmp_path / "o1", progress=False)
    # Chinese-Alpaca's 49954 vs 49953: a tokenizer with a pad token the embeddings do not have
    from transformers import AutoTokenizer

    padded = tmp_path / "padded"
    shutil.copytree(s["zh"], padded)
    tok = AutoTokenizer.from_pretrained(extended_tokenizer_dir)
    tok.add_special_tokens({"pad_token": "[PAD]"})
    tok.save_pretrained(padded)
    with pytest.raises(ValueError, match=r"the tokenizer \(.*padded\) has 2011 tokens but the merged "
                                         r"model\.embed_tokens\.weight has 2010 rows \(from ADAPTER\) — one token apart"):
        merge_lora(s["base"], padded, tmp_path / "o2", progress=False)
    # a base whose config was not updated after its embeddings were resized
    stale = tmp_path / "stale"
    shutil.copytree(s["base"], stale)
    cfg = json.loads((stale / "config.json").read_text())
    cfg["vocab_size"] = 32000
    (stale / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    rc, _, err = run_cli(capsys, "weights", "merge-lora", stale, s["zh"], tmp_path / "o3", "--no-progress")
    assert_one_line_error(rc, err, "BASE (", "config.json says vocab_size 32000 but its model.embed_tokens.weight has "
                          "2000 rows", command="weights")
    # an adapter with a LoRA on the LM head of the 2000-token base, put after the vocabulary adapter
    wide = make_adapter(s["base"], tmp_path / "wide", seed=4, target_modules=["lm_head"])
    with pytest.raises(ValueError, match=r"after ADAPTER2 \(.*wide\): model\.embed_tokens\.weight has 2010 rows \(from "
                                         r"ADAPTER1\) but lm_head\.weight has 2000 \(from ADAPTER2\)"):
        merge_lora(s["base"], [s["zh"], wide], tmp_path / "o4", progress=False, check_tokenizer=False)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


def test_lm_head_lora_shape_mismatch_names_the_source(lora_setup, tmp_path):
    s = lora_setup
    head = make_adapter(s["base"], tmp_path / "head", seed=5, target_modules=["lm_head"])
    sd = load_file(head / "adapter_model.safetensors")  # keep only the LoRA matrices (older PEFT saved no more)
    save_file({k: v for k, v in sd.items() if "lora_" in k}, head / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=r"tensor lm_head\.weight: ADAPTER2 \(.*head\) LoRA A \[4, 32\] / B \[2000, 4\] "
                                         r"make a \[2000, 32\] update but the weight is \[2010, 32\] \(from ADAPTER1\)"):
        merge_lora(s["base"], [s["zh"], head], tmp_path / "o", progress=False)


# ---------------------------------------------------------------------------------- GGUF ----


def hf_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """transformers' Meta → HF rotary permutation (convert_llama_weights_to_hf), written independently."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def test_gguf_export_reads_back_with_gguf(lora_setup, tmp_path):
    import gguf

    s = lora_setup
    merged = tmp_path / "merged"
    merge_lora(s["base"], [s["zh"], s["sft"]], merged, progress=False)
    res = export_gguf(merged, tmp_path / "m-f16.gguf", progress=False)
    assert res.check["ok"] and res.check["checked"] == 21 and res.vocab_tokens == 2010
    reader = gguf.GGUFReader(str(tmp_path / "m-f16.gguf"))
    t = {x.name: x for x in reader.tensors}
    hf = load_folder(merged)
    assert t["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert t["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    q = np.asarray(t["blk.1.attn_q.weight"].data)
    assert np.array_equal(hf_permute(q, 4), hf["model.layers.1.self_attn.q_proj.weight"].half().numpy())
    assert np.array_equal(np.asarray(t["token_embd.weight"].data), hf["model.embed_tokens.weight"].half().numpy())
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == 2010 and tokens[2009] == "新词9" and reader.fields["llama.vocab_size"].contents() == 2010
    f32 = export_gguf(merged, tmp_path / "m-f32.gguf", dtype="f32", progress=False)
    assert f32.check["ok"]
    r32 = {x.name: x for x in gguf.GGUFReader(str(tmp_path / "m-f32.gguf")).tensors}
    assert np.array_equal(np.asarray(r32["output.weight"].data), hf["lm_head.weight"].numpy())
    # a damaged file is caught by the read-back check, naming the tensor
    data = bytearray((tmp_path / "m-f32.gguf").read_bytes())
    data[r32["output.weight"].data_offset + 8] ^= 0x01
    (tmp_path / "bad.gguf").write_bytes(bytes(data))
    bad = check_gguf(tmp_path / "bad.gguf", merged, dtype="f32")
    assert not bad.ok and bad.mismatches == ["output.weight (lm_head.weight): data differs"]
    with pytest.raises(ValueError, match="already exists"):
        export_gguf(merged, tmp_path / "m-f32.gguf", progress=False)


def test_merge_cli_with_gguf(lora_setup, tmp_path, capsys):
    s = lora_setup
    rc, out, err = run_cli(capsys, "weights", "merge-lora", s["base"], s["zh"], s["sft"], tmp_path / "m",
                           "--gguf", tmp_path / "m.gguf", "--no-progress")
    assert rc == 0, err
    assert "merged 2 adapter(s)" in out and "vocabulary 2000 → 2010" in out and "21/21 tensors identical" in out


def test_lora_on_the_lm_head_merges_like_peft(lora_setup, tmp_path):
    """PEFT saves the full lm_head (``base_layer``) beside a LoRA on it; loading puts it in place, then adds the LoRA."""
    s = lora_setup
    head = make_adapter(s["base"], tmp_path / "head", seed=6, target_modules=["lm_head", "o_proj"])
    merge_lora(s["base"], head, tmp_path / "out", progress=False)
    ref = peft_reference(s["base"], [head])
    got = load_folder(tmp_path / "out")
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
