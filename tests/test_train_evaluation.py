"""knowlm_utils.train.evaluation: the unigram baseline and the per-type held-out loss, checked
against hand computation and a real (tiny) LlamaForCausalLM."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from knowlm_utils.index import MMapTokenIndex, MMapTokenIndexWriter
from knowlm_utils.modeling import build_model, model_config
from knowlm_utils.train.collate import CausalLMCollator
from knowlm_utils.train.evaluation import TypedEvaluator, eval_indices, unigram_counts, unigram_cross_entropy

TINY_MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
              "max_position_embeddings": 64}


def _hand_index(path: Path, docs_by_type: dict[str, list[list[int]]], vocab: int) -> MMapTokenIndex:
    with MMapTokenIndexWriter(path, vocab) as writer:
        for t, docs in docs_by_type.items():
            for doc in docs:
                writer.add_document([np.asarray(doc, np.int64)], type=t)
    return MMapTokenIndex(path)


def test_unigram_baseline_and_per_type_eval_match_hand_computation(tmp_path):
    vocab = 6
    train = _hand_index(tmp_path / "train", {"a": [[1, 3, 3, 4], [1, 3]], "b": [[1, 5, 5, 5, 2]]}, vocab)
    valid = _hand_index(tmp_path / "valid", {"a": [[1, 3, 4], [1, 5]], "b": [[1, 2, 2, 0]]}, vocab)
    counts, info = unigram_counts(train, vocab)
    # targets = every token but each sample's first: 3 3 4 | 3 | 5 5 5 2
    assert counts.tolist() == [0, 0, 1, 3, 1, 3] and info["exact"] and info["tokens_counted"] == 8
    idx = eval_indices(valid.type_ranges, None)
    ce = unigram_cross_entropy(counts, valid, idx)

    def p(t):  # add-one smoothing over the 6-token vocabulary
        return (counts[t] + 1) / (8 + 6)

    a_targets, b_targets = [3, 4, 5], [2, 2, 0]
    assert ce["a"] == pytest.approx(-sum(math.log(p(t)) for t in a_targets) / 3, rel=1e-12)
    assert ce["b"] == pytest.approx(-sum(math.log(p(t)) for t in b_targets) / 3, rel=1e-12)
    assert ce["all"] == pytest.approx((ce["a"] + ce["b"]) / 2, rel=1e-12)  # 3 targets each
    # capped counting reads evenly spaced chunks and says it is approximate
    capped, capped_info = unigram_counts(train, vocab, max_tokens=4, chunk_tokens=2)
    assert not capped_info["exact"] and capped_info["tokens_counted"] == 4

    model = build_model(model_config("cpu-tiny", vocab, **TINY_MODEL), seed=1)
    from knowlm_utils.train.dataset import TokenIndexDataset

    evaluator = TypedEvaluator(TokenIndexDataset(valid), idx, CausalLMCollator(0, 16), batch_size=2, unigram=ce)

    class Args:
        device, process_index, world_size = torch.device("cpu"), 0, 1

    metrics = evaluator(model, Args())
    expected = {}
    with torch.no_grad():  # one sample at a time, the model's own loss (mean over its targets)
        for t, samples in {"a": [[1, 3, 4], [1, 5]], "b": [[1, 2, 2, 0]]}.items():
            nll = n = 0.0
            for s in samples:
                x = torch.tensor([s])
                nll += float(model(input_ids=x, labels=x).loss) * (len(s) - 1)
                n += len(s) - 1
            expected[t] = (nll, n)
    for t, (nll, n) in expected.items():
        assert metrics[f"eval_loss_{t}"] == pytest.approx(nll / n, rel=1e-5)
        assert metrics[f"eval_ppl_{t}"] == pytest.approx(math.exp(nll / n), rel=1e-5)
        assert metrics[f"eval_unigram_loss_{t}"] == ce[t]
    total = sum(v[0] for v in expected.values()) / sum(v[1] for v in expected.values())
    assert metrics["eval_loss"] == pytest.approx(total, rel=1e-5) and metrics["eval_tokens"] == 6
    assert metrics["eval_unigram_loss"] == ce["all"]
