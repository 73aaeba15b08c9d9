"""knowlm_utils.train.deepspeed: a DeepSpeed spec (short spec, full dict, None) resolved for CPU."""

from __future__ import annotations

import json
from pathlib import Path

from knowlm_utils.train.deepspeed import resolve_deepspeed

ROOT = Path(__file__).resolve().parents[1]


def test_deepspeed_specs_resolve_for_cpu(tmp_path):
    short, changes = resolve_deepspeed({"stage": 3}, "cpu")
    zero = short["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert "optimizer" not in short  # the Trainer's torch AdamW: no cpu_adam to compile
    assert short["fp16"] == {"enabled": False} and changes == []
    offload, _ = resolve_deepspeed({"stage": 2, "offload_optimizer": True}, "cpu")
    assert offload["optimizer"]["type"] == "AdamW"  # offload needs DeepSpeed's own CPU Adam
    cluster = json.loads((ROOT / "configs" / "deepspeed" / "knowlm-13b-zero3-offload-fp16.json").read_text("utf-8"))
    cpu, changes = resolve_deepspeed({**cluster, "zero_optimization": {**cluster["zero_optimization"],
                                      "stage3_gather_16bit_weights_on_model_save": False}}, "cpu")
    assert cpu["fp16"] == {"enabled": False} and cpu["zero_optimization"]["offload_param"]["pin_memory"] is False
    assert cpu["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert any("fp16" in c for c in changes) and any("gather_16bit" in c for c in changes)
    assert resolve_deepspeed(None, "cpu") == (None, [])
