"""Stage 05 foundations (knowlm_utils.modeling): shapes, configs from real tokenizers, exact
parameter counts checked against real transformers models, FLOP/MFU arithmetic."""

import dataclasses
import shutil

import pytest
import sentencepiece as spm
import torch

from knowlm_utils.modeling import (KNOWLM_13B_RUN, PRESETS, ModelShape, build_model,
                                   count_model_parameters, count_parameters, estimate_throughput,
                                   flops_per_token, llama_intermediate_size, meta_model, mfu, model_config,
                                   padded_vocab_size, tiny_llama, tokenizer_info)


@pytest.fixture(scope="module")
def sp_dir(sp_model_path, tmp_path_factory):
    """A folder holding only ``tokenizer.model`` (how LLaMA ships its tokenizer)."""
    d = tmp_path_factory.mktemp("sp_dir")
    shutil.copy(sp_model_path, d / "tokenizer.model")
    return d


@pytest.fixture(scope="module")
def hf_tokenizer_dir(sp_dir, tmp_path_factory):
    """A transformers tokenizer folder made from the session's SentencePiece model."""
    from transformers import LlamaTokenizer

    tok = LlamaTokenizer.from_pretrained(str(sp_dir), add_bos_token=True)
    out = tmp_path_factory.mktemp("hf_tok")
    tok.save_pretrained(str(out))
    return out


def test_intermediate_size_rule_reproduces_llama_widths():
    assert llama_intermediate_size(4096) == PRESETS["llama-7b"].intermediate_size == 11008
    assert llama_intermediate_size(5120) == PRESETS["llama-13b"].intermediate_size == 13824
    assert llama_intermediate_size(256, multiple_of=16) == PRESETS["cpu-tiny"].intermediate_size == 688
    assert llama_intermediate_size(512, multiple_of=16) == PRESETS["cpu-small"].intermediate_size


def test_published_llama_sizes_without_allocating():
    """6.74B and 13.0B for the 32000-piece vocabulary; the meta-device model (no storage)
    agrees with the formula parameter for parameter."""
    c7, c13 = model_config("llama-7b", 32000), model_config("llama-13b", 32000)
    n7, n13 = count_parameters(c7), count_parameters(c13)
    assert round(n7.total / 1e9, 2) == 6.74
    assert round(n13.total / 1e9, 1) == 13.0
    # the embedding/head share is exactly 2·V·h
    assert n13.total - n13.non_embedding == 2 * 32000 * 5120
    m = meta_model(c13)
    assert all(p.device.type == "meta" for p in m.parameters())
    assert count_model_parameters(m) == n13.total
    by_kind = {"embed_tokens": 0, "self_attn": 0, "mlp": 0, "norm": 0, "lm_head": 0}
    for name, p in m.named_parameters():
        kind = next(k for k in by_kind if k in name)
        by_kind[kind] += p.numel()
    assert by_kind == {"embed_tokens": n13.embeddings, "self_attn": n13.attention, "mlp": n13.mlp,
                       "norm": n13.norms, "lm_head": n13.lm_head}


def test_tiny_preset_builds_a_real_model_with_the_counted_parameters(sp_model_path):
    config = model_config("cpu-tiny", 2500)
    model = build_model(config, seed=0)
    assert count_model_parameters(model) == count_parameters(config).total
    assert 4.3e6 < count_parameters(config).total < 4.5e6  # the "4.4M" of STACK-NOTES
    # same seed → same weights; different seed → different
    again = build_model(config, seed=0)
    other = build_model(config, seed=1)
    w = model.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(w, again.model.layers[0].self_attn.q_proj.weight)
    assert not torch.equal(w, other.model.layers[0].self_attn.q_proj.weight)
    # it is a working causal LM: a forward pass gives a loss near ln(V) at initialisation
    ids = torch.randint(3, 2500, (2, 16), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (2, 16, 2500)
    assert abs(out.loss.item() - torch.log(torch.tensor(2500.0)).item()) < 0.5
    assert build_model(config, seed=0, dtype="bfloat16").model.embed_tokens.weight.dtype == torch.bfloat16


def test_tiny_llama_is_the_micro_preset(sp_model_path):
    model = tiny_llama(sp_model_path, hidden_size=32)
    c = model.config
    assert (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads) == (32, 64, 1, 4)
    assert c.vocab_size == 2000 and not c.tie_word_embeddings and tiny_llama(2000).config.hidden_size == 64
    assert count_model_parameters(model) == count_parameters(c).total
    # the recipe notebook 02 used to spell out: same config and seed → bit-identical weights
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    plain = LlamaForCausalLM(LlamaConfig(vocab_size=2000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False))
    mine, theirs = model.state_dict(), plain.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not torch.equal(mine["lm_head.weight"], tiny_llama(2000, hidden_size=32, seed=1).state_dict()["lm_head.weight"])


def test_tied_embeddings_and_gqa_counts_match_real_models():
    config = model_config(ModelShape("gqa-tied", 128, 2, 8, 352, num_key_value_heads=2, tie_word_embeddings=True), 1000)
    model = build_model(config)
    pc = count_parameters(config)
    assert pc.lm_head == 0 and count_model_parameters(model) == pc.total
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    config_b = model_config("cpu-tiny", 1000, attention_bias=True, mlp_bias=True)
    assert count_model_parameters(build_model(config_b)) == count_parameters(config_b).total


def test_config_from_sentencepiece_model_processor_and_hf_dir(sp_model_path, sp_dir, hf_tokenizer_dir):
    sp = spm.SentencePieceProcessor(model_file=str(sp_model_path))
    expected = (sp.get_piece_size(), sp.bos_id(), sp.eos_id())
    for source in (sp_model_path, str(sp_model_path), sp, sp_dir, hf_tokenizer_dir):
        info = tokenizer_info(source)
        assert (info.vocab_size, info.bos_token_id, info.eos_token_id) == expected, source
        assert info.pad_token_id is None  # LLaMA has no pad token; the collator decides
    config = model_config("cpu-tiny", hf_tokenizer_dir, max_position_embeddings=256)
    assert (config.vocab_size, config.bos_token_id, config.eos_token_id) == expected
    assert config.max_position_embeddings == 256 and config.hidden_size == 256
    assert config.rope_parameters["rope_theta"] == 10000.0 and config.rms_norm_eps == 1e-6
    # the HF tokenizer's ids are valid rows of the built embedding
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_tokenizer_dir))
    ids = tok("知识图谱 knowledge graph")["input_ids"]
    assert ids[0] == config.bos_token_id and max(ids) < config.vocab_size


def test_extended_vocabulary_and_padding(sp_model_path, tmp_path):
    assert padded_vocab_size(49953, 64) == 49984 and padded_vocab_size(49984, 64) == 49984
    assert padded_vocab_size(49953, None) == 49953
    config = model_config("llama-7b", 49953)
    assert config.vocab_size == 49953
    padded = model_config("llama-7b", 49953, pad_vocab_to_multiple_of=64)
    assert padded.vocab_size == 49984
    assert count_parameters(padded).total - count_parameters(config).total == 2 * 31 * 4096
    # a real extended SentencePiece model: vocab follows the tokenizer
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    proto = sp_pb2.ModelProto()
    proto.ParseFromString(sp_model_path.read_bytes())
    for word in ("知识图谱", "抽取", "智析"):
        piece = proto.pieces.add()
        piece.piece, piece.score = word, 0.0
    extended = tmp_path / "extended.model"
    extended.write_bytes(proto.SerializeToString())
    base_size = spm.SentencePieceProcessor(model_file=str(sp_model_path)).get_piece_size()
    assert model_config("cpu-tiny", extended).vocab_size == base_size + 3


def test_bad_inputs_give_clear_errors(tmp_path, sp_model_path):
    with pytest.raises(ValueError, match="unknown model shape 'llama-70b'"):
        model_config("llama-70b", 32000)
    with pytest.raises(ValueError, match=r"unknown LlamaConfig override\(s\) \['hidden_sise'\]"):
        model_config("cpu-tiny", 2500, hidden_sise=10)
    with pytest.raises(ValueError, match="smaller than the tokenizer's 2000"):
        model_config("cpu-tiny", sp_model_path, vocab_size=1000)
    with pytest.raises(ValueError, match="pad_token_id=5000 is outside"):
        model_config("cpu-tiny", 2500, pad_token_id=5000)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        tokenizer_info(tmp_path)
    bogus = tmp_path / "bogus.model"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bogus.model is not a SentencePiece model"):
        tokenizer_info(bogus)
    with pytest.raises(ValueError, match="not divisible"):
        ModelShape("bad", 100, 2, 3, 256)


def test_flops_formula_on_a_hand_computed_shape():
    """h=64, L=2, V=100, i=128, 4 heads, s=32: N_matmul = 2·(4·64²+3·64·128) + 100·64."""
    config = model_config(ModelShape("hand", 64, 2, 4, 128), 100)
    n = 2 * (4 * 64 * 64 + 3 * 64 * 128) + 100 * 64
    assert flops_per_token(config, 32) == 6 * n + 12 * 2 * 64 * 32
    assert flops_per_token(config, 32, recompute=True) == 8 * n + 16 * 2 * 64 * 32
    assert mfu(1000.0, config, 32, peak_flops=1e9, num_devices=2) == pytest.approx(1000 * (6 * n + 12 * 2 * 64 * 32) / 2e9)
    with pytest.raises(ValueError):
        flops_per_token(config, 0)


def test_knowlm_13b_throughput_and_mfu():
    est = estimate_throughput()
    run = KNOWLM_13B_RUN
    assert run.devices == 24 and run.global_batch == 1440
    assert est.tokens_per_step == 1440 * 1024
    assert est.tokens_per_s == pytest.approx(1440 * 1024 / 260) and round(est.tokens_per_s) == 5671
    assert est.tokens_per_s_per_device == pytest.approx(est.tokens_per_s / 24)
    config = model_config("llama-13b", 32000)
    assert est.flops_per_token == flops_per_token(config, 1024)
    # ≈ 6 × 13B: within the size of the embedding + attention terms of 6·N_total
    assert 0.95 < est.flops_per_token / (6 * count_parameters(config).total) < 1.05
    assert est.mfu == pytest.approx(est.tokens_per_s * est.flops_per_token / (24 * 125e12))
    assert 0.14 < est.mfu < 0.16 and est.hfu > est.mfu
    assert est.days_for(est.tokens_per_s * 86400) == pytest.approx(1.0)
    # halving the step time doubles the MFU
    fast = estimate_throughput(dataclasses.replace(run, step_seconds=130.0))
    assert fast.mfu == pytest.approx(2 * est.mfu)


def test_zero3_offload_memory_matches_deepspeeds_estimator():
    """The host-RAM figure notebook 05 quotes is DeepSpeed's own estimate (offload of optimizer and
    parameters, zero_init): 18 bytes per parameter × 1.5 over the nodes; the GPU keeps the largest layer."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    from knowlm_utils.modeling import zero3_offload_memory

    config = model_config("llama-13b", 32000)
    pc = count_parameters(config)
    cpu, gpu, _ = estimate_zero3_model_states_mem_needs(pc.total, pc.embeddings, num_gpus_per_node=8, num_nodes=3)
    mem = zero3_offload_memory(config, nodes=3)
    assert mem.host_bytes_per_node == pytest.approx(cpu, abs=1) and mem.gpu_bytes_per_device == gpu
    assert 110e9 < mem.host_bytes_per_node < 120e9   # ≈ 117 GB on each of KnowLM's three nodes

