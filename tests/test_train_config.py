"""knowlm_utils.train.config + trainer.training_arguments: the training-loop fields any stage
config inherits (flat YAML keys, checked on load) and the TrainingArguments made from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from knowlm_utils.config import ConfigError, StageConfig, field
from knowlm_utils.train.config import LoraSection, TrainingArgs
from knowlm_utils.train.trainer import training_arguments


@dataclass
class OtherStageConfig(StageConfig, TrainingArgs):
    """A stage other than pretraining (as SFT will be): its own required field + the shared loop."""

    data: str = field(help="training data")
    lora: LoraSection = field(default_factory=LoraSection, help="LoRA settings")


def test_training_fields_are_flat_keys_of_any_stage_config(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump({"data": "d.jsonl", "max_steps": 7, "min_lr_ratio": 0.1, "lora": {"r": 4}}), "utf-8")
    cfg = OtherStageConfig.from_yaml(path, ["grad_accum=3", "deepspeed={stage: 2}"])
    assert (cfg.max_steps, cfg.grad_accum, cfg.lora.r, cfg.deepspeed) == (7, 3, 4, {"stage": 2})
    assert cfg.eval_batch_size == cfg.micro_batch == 8 and cfg.path(cfg.data) == tmp_path / "d.jsonl"
    for overrides, message in [(["micro_batch=0"], "micro_batch: must be >= 1"),
                               (["betas=[0.9]"], "betas must be two numbers"),
                               (["betas=[0.9, 1.5]"], r"betas\[1\]: must be < 1"),
                               (["deepspeed={stage: 3, offload: true}"], r"unknown key\(s\) \['offload'\]"),
                               (["device=tpu"], "device: must be one of")]:
        with pytest.raises(ConfigError, match=message):
            OtherStageConfig.from_yaml(path, overrides)

    args = training_arguments(cfg, Path(tmp_path / "out"), "cpu", "fp32", None, has_eval=False)
    assert (args.max_steps, args.gradient_accumulation_steps, args.per_device_train_batch_size) == (7, 3, 8)
    assert args.lr_scheduler_type.value == "cosine_with_min_lr" and args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert args.ignore_data_skip and args.eval_strategy.value == "no" and args.save_strategy.value == "no"


def _time_limit_rank(rank: int, port: int, results) -> None:
    import os

    import torch.distributed as dist

    from knowlm_utils.train.schedule_fit import _slowest
    from knowlm_utils.train.trainer import _any_rank

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        results[rank] = (_any_rank(rank == 0), _any_rank(False), tuple(_slowest(rank + 1.0, 10.0 * rank)))
    finally:
        dist.destroy_process_group()


def test_a_time_limit_reached_on_one_rank_stops_every_rank():
    """stop_after_minutes: the ranks' clocks differ, the decision must not (or one rank waits
    for the others in the next all-reduce for ever); fit_schedule_minutes fits every rank's
    schedule to the slowest rank's pace."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_time_limit_rank, args=(port, results), nprocs=2, join=True)
    assert dict(results) == {0: (True, False, (2.0, 10.0)), 1: (True, False, (2.0, 10.0))}
