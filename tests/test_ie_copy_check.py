"""Where predicted names come from (knowlm_utils.ie.copy_check): hand-made predictions with known bins."""

from __future__ import annotations

from knowlm_utils.ie.annotation import Entity, Relation
from knowlm_utils.ie.copy_check import name_origins, record_text
from knowlm_utils.ie.formats import format_output, iepile_instruction


def ner(rid, text, schema=("城市", "国家")):
    return {"id": rid, "task": "NER", "lang": "zh", "style": "iepile", "format": "iepile", "schema": list(schema),
            "instruction": iepile_instruction("NER", "zh", list(schema), text), "input": "",
            "output": format_output("NER", "iepile", [], "zh", list(schema))}


def test_origins_counted_per_bin():
    recs = [ner("a", "秉坦拉位于土耳其。"), ner("b", "雅典是希腊的首都。"),
            {"id": "c", "task": "RE", "lang": "en", "style": "text", "format": "tuple", "schema": [],
             "instruction": "Extract triples.", "input": "Wuhan lies on the Yangtze.", "output": "NAN"}]
    preds = {
        "a": format_output("NER", "iepile", [Entity("秉坦拉", "城市"), Entity("土耳其", "国家")], "zh", ["城市", "国家"]),
        "b": format_output("NER", "iepile", [Entity("安卡拉", "城市"), Entity("火星国", "国家")], "zh", ["城市", "国家"]),
        "c": format_output("RE", "tuple", [Relation("Wuhan", "located on", "Yangtze")], "en"),
        "missing": "ignored: no such record",
    }
    got = name_origins(recs, preds, train_names=["土耳其", "安卡拉", "Wuhan"])
    assert dict(got.counts) == {"input_only": 2, "input_train": 2, "train_only": 1, "neither": 1}
    assert got.total == 6 and abs(got.copy_rate - 4 / 6) < 1e-12
    assert got.examples["input_only"] == ["秉坦拉", "Yangtze"] and got.examples["train_only"] == ["安卡拉"]
    d = got.to_dict()
    assert d["names"] == 6 and d["neither"] == 1 and d["examples"]["neither"] == ["火星国"]
    assert record_text(recs[0]) == "秉坦拉位于土耳其。" and record_text(recs[2]) == "Wuhan lies on the Yangtze."


def test_no_predictions_no_names():
    got = name_origins([ner("a", "今天下雨。")], {"a": "{}"}, train_names=[])
    assert got.total == 0 and got.copy_rate == 0.0


def test_induction_score_positions_and_errors():
    import pytest
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from knowlm_utils.ie.copy_check import induction_score

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg)
    got = induction_score(model, length=20, sequences=4, low_id=3)
    assert got == induction_score(model, length=20, sequences=4, low_id=3)  # seeded
    assert abs(got["score"] - (got["first"] - got["second"])) < 1e-9
    assert abs(got["score"]) < 0.5 and 4.0 < got["first"] < 8.0  # an untrained model: ≈ ln(300) both times, no copying

    class Oracle(torch.nn.Module):
        """Predicts the second copy perfectly (token t+1 = the one after t's earlier occurrence)."""
        config = cfg
        training = False

        def train(self, mode=True):
            return self

        def forward(self, input_ids):
            b, n = input_ids.shape
            logits = torch.zeros(b, n, cfg.vocab_size)
            half = (n - 1) // 2
            for j in range(half + 1, n - 1):
                logits[torch.arange(b), j, input_ids[:, j + 1]] = 50.0
            return type("Out", (), {"logits": logits})()

    oracle = induction_score(Oracle(), length=20, sequences=4, low_id=3)
    assert oracle["second"] < 1e-6 and oracle["score"] > 5.0
    with pytest.raises(ValueError, match="induction_score"):
        induction_score(model, length=1)
