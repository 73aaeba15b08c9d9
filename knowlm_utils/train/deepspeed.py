"""The DeepSpeed side of a training run: which config (a JSON path, an inline dict or a short
spec ``{stage: 3}``), adapted to the device, and the environment an in-process run needs.

The configs themselves are built and adapted by :mod:`knowlm_utils.launch`
(:func:`~knowlm_utils.launch.deepspeed_config`, :func:`~knowlm_utils.launch.adapt_for_cpu`);
this module only picks and completes them for a run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHORT_SPEC_KEYS = frozenset({"stage", "offload_optimizer", "offload_params", "optimizer", "gather_16bit_on_save"})


def check_spec(spec: Any) -> None:
    """Raise ``ValueError`` unless ``spec`` is None, a path, a full config dict or a short spec
    with known keys only (a config value, checked before anything runs)."""
    if spec is not None and not isinstance(spec, (str, dict)):
        raise ValueError(f"deepspeed must be None, a JSON path or a mapping, got {type(spec).__name__}")
    if isinstance(spec, dict) and "stage" in spec:
        extra = sorted(set(spec) - SHORT_SPEC_KEYS)
        if extra:
            raise ValueError(f"deepspeed short spec: unknown key(s) {extra}; allowed {sorted(SHORT_SPEC_KEYS)} "
                             "(or give a full DeepSpeed config with a zero_optimization section)")


def resolve_deepspeed(spec: Any, device: str, base=None) -> tuple[dict | None, list[str]]:
    """The DeepSpeed config dict for ``spec`` (None, a JSON path, a full dict or a short spec)
    and the list of changes made for this device / for saving a normal HF model.

    A relative JSON path is taken from ``base.base_dir`` (the YAML's folder: a DeepSpeed file is
    config, not data) when ``base`` (a stage config) has one. A short spec ``{stage,
    offload_optimizer, offload_params, optimizer}`` is expanded by
    :func:`knowlm_utils.launch.deepspeed_config`; without ``optimizer`` it leaves the optimizer to
    the Trainer (torch AdamW: nothing to JIT-compile), except with optimizer offload, where
    DeepSpeed needs its own CPU Adam (``optimizer: AdamW``)."""
    from .. import launch

    if spec is None:
        return None, []
    changes: list[str] = []
    if isinstance(spec, str):
        path = Path(spec).expanduser()
        if not path.is_absolute() and base is not None and base.base_dir:
            path = Path(base.base_dir) / path  # a config file: relative to the YAML's folder, not the workdir
        if not path.is_file():
            raise FileNotFoundError(f"DeepSpeed config not found: {path}")
        cfg = launch.read_deepspeed_config(path)
    elif isinstance(spec, dict) and "stage" in spec:
        offload_opt = bool(spec.get("offload_optimizer", False))
        cfg = launch.deepspeed_config(int(spec["stage"]), offload_optimizer=offload_opt,
                                      offload_params=bool(spec.get("offload_params", False)),
                                      device="cpu" if device == "cpu" else "cuda",
                                      optimizer=spec.get("optimizer", "AdamW" if offload_opt else None),
                                      gather_16bit_on_save=bool(spec.get("gather_16bit_on_save", True)))
    elif isinstance(spec, dict):
        cfg = json.loads(json.dumps(spec))  # a deep, JSON-clean copy
    else:
        raise ValueError(f"deepspeed must be None, a path or a mapping, got {type(spec).__name__}")
    if device == "cpu":
        cfg, cpu_changes = launch.adapt_for_cpu(cfg)
        changes += cpu_changes
    zero = cfg.setdefault("zero_optimization", {})
    if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save"):
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        changes.append("zero_optimization.stage3_gather_16bit_weights_on_model_save → true (the final save is a "
                       "normal HF model, not only ZeRO shards)")
    return cfg, changes


def zero_stage(ds_config: dict | None) -> int | None:
    """The ZeRO stage of a resolved config (None without DeepSpeed)."""
    return ds_config["zero_optimization"].get("stage") if ds_config else None


def prepare_environment(device: str) -> None:
    """Environment for DeepSpeed in this process, before ``TrainingArguments`` initialise it:
    the CPU accelerator on CPU, a shared JIT-extension cache, and — in a plain process such as a
    notebook kernel, with no launcher variables — a one-process "distributed" job. Variables
    already set (by a launcher or the user) are kept."""
    from ..launch import DEFAULT_EXTENSIONS_DIR, in_process_env

    if device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(os.path.expanduser(
        os.environ.get("KNOWLM_TORCH_EXTENSIONS_DIR") or DEFAULT_EXTENSIONS_DIR)).resolve()))
    if "RANK" not in os.environ and "LOCAL_RANK" not in os.environ:
        os.environ.update(in_process_env())  # a notebook kernel: a one-process "distributed" job


@dataclass
class Runtime:
    """Where and how a training run computes: device, precision, the DeepSpeed config (None:
    off) and the changes made to it for this device."""

    device: str
    precision: str
    ds_config: dict | None
    ds_changes: list[str]


def resolve_runtime(config) -> Runtime:
    """The run's device, precision and DeepSpeed config for a
    :class:`~knowlm_utils.train.config.TrainingArgs` config; prepares this process's environment
    for DeepSpeed (pretraining and SFT alike)."""
    from .trainer import resolve_device, resolve_precision

    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    ds_config, ds_changes = resolve_deepspeed(config.deepspeed, device, config)
    if ds_config is not None:
        prepare_environment(device)
    return Runtime(device, precision, ds_config, ds_changes)


__all__ = ["SHORT_SPEC_KEYS", "check_spec", "resolve_deepspeed", "zero_stage", "prepare_environment", "Runtime",
           "resolve_runtime"]
