"""Stage 05 foundations: DeepSpeed configs, launch commands (deepspeed / torchrun / Slurm) and a
launcher runner that streams output live into a notebook cell.

Why this module exists: distributed training fails in ways that are hard to read — a config
key DeepSpeed ignores, an ``"auto"`` the Trainer cannot fill, a shell string with an unquoted
path, a launcher that needs ssh to reach ``localhost``. Here every config is built by a
function that rejects impossible combinations with a clear message, every command is an argv
list (never a string for a shell to interpret), and the runner shows the output as it comes
and, on failure, raises one short error with the exit code and the last lines.

The same functions serve both worlds: ``device="cpu"`` (DeepSpeed's CPU accelerator over gloo,
fp32, no ssh) on a laptop, ``device="cuda"`` with KnowLM's 13B ZeRO-3 config on 3 × 8 GPUs.
"""

from __future__ import annotations

import argparse
import collections
import copy
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from .fileio import write_json_atomic, write_text_atomic

Precision = Literal["auto", "fp32", "fp16", "bf16"]
Device = Literal["cpu", "cuda"]
AUTO = "auto"
SCHEDULERS = (None, "WarmupLR", "WarmupDecayLR")
DEFAULT_EXTENSIONS_DIR = "~/.cache/knowlm/torch_extensions"


class LaunchError(RuntimeError):
    """A launched command failed; carries the exit code and the last lines of its output."""

    def __init__(self, argv: Sequence[str], returncode: int, tail: Sequence[str], log_path: str | None = None):
        self.argv = list(argv)
        self.returncode = returncode
        self.tail = list(tail)
        self.log_path = log_path
        where = f"; full log: {log_path}" if log_path else ""
        last = "".join(self.tail).rstrip("\n") or "(no output)"
        super().__init__(f"{Path(self.argv[0]).name} exited with code {returncode}{where}\n"
                         f"--- last {len(self.tail)} lines ---\n{last}")


# --------------------------------------------------------------------------------------------
# DeepSpeed configs
# --------------------------------------------------------------------------------------------


def deepspeed_config(stage: int, *, offload_optimizer: bool = False, offload_params: bool = False,
                     precision: Precision = "auto", device: Device = "cuda",
                     micro_batch: int | str = AUTO, grad_accum: int | str = AUTO, train_batch: int | str = AUTO,
                     optimizer: str | None = "AdamW", lr: float | str = AUTO, betas: Sequence[float] | str = AUTO,
                     eps: float | str = AUTO, weight_decay: float | str = AUTO,
                     scheduler: str | None = None, warmup_steps: int | str = AUTO, total_steps: int | str = AUTO,
                     gradient_clipping: float | str = AUTO, gather_16bit_on_save: bool = True,
                     pin_memory: bool | None = None, overlap_comm: bool = True,
                     steps_per_print: int = 100) -> dict[str, Any]:
    """A DeepSpeed config dict for ZeRO stage 0-3.

    ``"auto"`` values are filled by the transformers Trainer from ``TrainingArguments``
    (per_device_train_batch_size, gradient_accumulation_steps, learning_rate, adam_beta1/2,
    adam_epsilon, weight_decay, max_grad_norm, warmup, --fp16/--bf16); use ``resolve_auto``
    when launching without the Trainer. ``scheduler=None`` leaves the schedule to the Trainer
    (``--lr_scheduler_type cosine`` as KnowLM did).

    Rules enforced here because DeepSpeed itself does not: parameter offload exists only in
    ZeRO-3 (DeepSpeed silently ignores it at stage 2); optimizer offload needs stage ≥ 1;
    ``device="cpu"`` trains in fp32 (its ``"auto"`` precision resolves to fp32, explicit
    fp16/bf16 is refused) and does not pin memory (pinned host memory is a CUDA feature).
    """
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32', 'fp16' or 'bf16', got {precision!r}")
    if offload_params and stage != 3:
        raise ValueError(f"offload_params (ZeRO-Infinity parameter offload) needs ZeRO stage 3, got stage {stage}; "
                         "use stage=3 or offload only the optimizer")
    if offload_optimizer and stage == 0:
        raise ValueError("offload_optimizer needs ZeRO stage 1, 2 or 3 (stage 0 does not partition the optimizer)")
    if device == "cpu" and precision in ("fp16", "bf16"):
        raise ValueError(f"precision {precision!r} needs a GPU: DeepSpeed's CPU accelerator trains in fp32 here; "
                         "use precision='fp32' (or 'auto') with device='cpu', or device='cuda'")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
    if precision == "auto" and device == "cpu":
        precision = "fp32"
    pin = (device == "cuda") if pin_memory is None else bool(pin_memory)
    if pin and device == "cpu":
        raise ValueError("pin_memory=True needs CUDA; leave it None on device='cpu'")

    cfg: dict[str, Any] = {
        "train_batch_size": train_batch,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": gradient_clipping,
        "steps_per_print": steps_per_print,
        "wall_clock_breakdown": False,
    }
    if precision == "auto":
        cfg["fp16"] = {"enabled": AUTO, "loss_scale": 0, "initial_scale_power": 16, "loss_scale_window": 1000,
                       "hysteresis": 2, "min_loss_scale": 1}
        cfg["bf16"] = {"enabled": AUTO}
    else:
        cfg["fp16"] = {"enabled": precision == "fp16"}
        cfg["bf16"] = {"enabled": precision == "bf16"}
        if precision == "fp16":  # dynamic loss scaling (loss_scale 0)
            cfg["fp16"].update(loss_scale=0, initial_scale_power=16, loss_scale_window=1000, hysteresis=2,
                               min_loss_scale=1)

    zero: dict[str, Any] = {"stage": stage}
    if stage >= 1:
        if offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
        if stage >= 2:
            zero.update(overlap_comm=overlap_comm and device == "cuda", contiguous_gradients=True,
                        reduce_bucket_size=AUTO)
        if stage == 3:
            if offload_params:
                zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
            zero.update(stage3_prefetch_bucket_size=AUTO, stage3_param_persistence_threshold=AUTO,
                        stage3_gather_16bit_weights_on_model_save=bool(gather_16bit_on_save))
    cfg["zero_optimization"] = zero

    if optimizer is not None:
        cfg["optimizer"] = {"type": optimizer, "params": {
            "lr": lr, "betas": list(betas) if not isinstance(betas, str) else betas,
            "eps": eps, "weight_decay": weight_decay}}
    if scheduler is not None:
        params: dict[str, Any] = {"warmup_min_lr": AUTO, "warmup_max_lr": lr if lr != AUTO else AUTO,
                                  "warmup_num_steps": warmup_steps}
        if scheduler == "WarmupDecayLR":
            params["total_num_steps"] = total_steps
        cfg["scheduler"] = {"type": scheduler, "params": params}
    return cfg


DEEPSPEED_CONFIG_DIR = Path("configs") / "deepspeed"   # relative to the repository root
KNOWLM_13B_DEEPSPEED_JSON = "knowlm-13b-zero3-offload-fp16.json"


def shipped_deepspeed_config(name: str) -> dict[str, Any]:
    """A DeepSpeed JSON shipped in ``configs/deepspeed/`` (the files are the single source)."""
    from .workdir import repo_root

    path = repo_root() / DEEPSPEED_CONFIG_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such DeepSpeed config (shipped ones: "
                                f"{sorted(p.name for p in path.parent.glob('*.json'))})")
    return read_deepspeed_config(path)


def knowlm_13b_deepspeed_config() -> dict[str, Any]:
    """KnowLM/ZhiXi's pretraining config for LLaMA-13B on 3 × 8 V100-32GB, value for value, read
    from ``configs/deepspeed/knowlm-13b-zero3-offload-fp16.json``: ZeRO-3 with optimizer AND
    parameters offloaded to pinned CPU memory, fp16 with dynamic loss scaling starting at 2^32,
    AdamW lr 1.5e-5 betas (0.9, 0.95) eps 1e-8 weight decay 0.1, 16-bit weights gathered on save
    (so a normal HF checkpoint is written, not only ZeRO shards). Batch sizes are "auto": the
    launch passed --per_device_train_batch_size 20 --gradient_accumulation_steps 3 (global 1440)
    with --lr_scheduler_type cosine --warmup_steps 300 (``knowlm_13b_training_args``). The zeros
    are as published: ``stage3_max_live_parameters: 0`` and ``stage3_max_reuse_distance: 0``
    release every gathered parameter right after use (least GPU memory, most re-gathering).
    """
    return shipped_deepspeed_config(KNOWLM_13B_DEEPSPEED_JSON)


def knowlm_13b_training_args() -> dict[str, Any]:
    """The TrainingArguments KnowLM launched the 13B pretraining with (3 nodes × 8 GPUs); with
    ``knowlm_13b_deepspeed_config`` they fix every "auto": 20 × 3 × 24 = 1440 sequences of 1024
    tokens per optimizer step."""
    return {
        "per_device_train_batch_size": 20, "gradient_accumulation_steps": 3, "model_max_length": 1024,
        "learning_rate": 1.5e-5, "warmup_steps": 300, "lr_scheduler_type": "cosine",
        "adam_beta1": 0.9, "adam_beta2": 0.95, "weight_decay": 0.1, "fp16": True, "gradient_checkpointing": True,
        "num_train_epochs": 1, "save_strategy": "steps", "save_steps": 100, "save_total_limit": 1,
        "logging_steps": 1, "log_on_each_node": False,
    }


def adapt_for_cpu(cfg: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``cfg`` that DeepSpeed's CPU accelerator can run, and the list of changes made
    (so a notebook can show exactly how the laptop run differs from the cluster one): fp16/bf16
    disabled (fp32), pinned memory off, communication overlap off."""
    out = copy.deepcopy(cfg)
    changes: list[str] = []
    for key in ("fp16", "bf16"):
        if key in out and out[key].get("enabled") not in (False, None):
            out[key] = {"enabled": False}
            changes.append(f"{key}.enabled → false (CPU trains in fp32)")
    zero = out.get("zero_optimization", {})
    for sub in ("offload_optimizer", "offload_param"):
        if zero.get(sub, {}).get("pin_memory"):
            zero[sub]["pin_memory"] = False
            changes.append(f"zero_optimization.{sub}.pin_memory → false (pinned memory is a CUDA feature)")
    if zero.get("overlap_comm"):
        zero["overlap_comm"] = False
        changes.append("zero_optimization.overlap_comm → false (no CUDA streams to overlap on)")
    return out, changes


def _auto_paths(obj: Any, prefix: str = "") -> list[str]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _auto_paths(v, f"{prefix}{k}.")]
    return [prefix[:-1]] if obj == AUTO else []


def auto_fields(cfg: dict[str, Any]) -> list[str]:
    """Dotted paths of every ``"auto"`` value left in ``cfg``."""
    return _auto_paths(cfg)


def resolve_auto(cfg: dict[str, Any], *, micro_batch: int, grad_accum: int = 1, world_size: int = 1,
                 lr: float = 1e-4, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, max_grad_norm: float = 1.0, hidden_size: int | None = None,
                 warmup_steps: int = 1, total_steps: int | None = None, fp16: bool = False,
                 bf16: bool = False) -> dict[str, Any]:
    """Fill every ``"auto"`` the way the transformers Trainer does (train_batch_size =
    world_size × micro_batch × grad_accum, bucket sizes from the hidden size, …) — for
    launching DeepSpeed without the Trainer and for checking a config with DeepSpeed's own
    parser. An ``"auto"`` that cannot be filled from the arguments is an error naming it."""
    out = copy.deepcopy(cfg)
    values: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": world_size * micro_batch * grad_accum,
        "gradient_clipping": max_grad_norm,
        "optimizer.params.lr": lr,
        "optimizer.params.betas": list(betas),
        "optimizer.params.eps": eps,
        "optimizer.params.weight_decay": weight_decay,
        "scheduler.params.warmup_min_lr": 0,
        "scheduler.params.warmup_max_lr": lr,
        "scheduler.params.warmup_num_steps": max(1, warmup_steps),
        "fp16.enabled": fp16,
        "bf16.enabled": bf16,
    }
    if total_steps is not None:
        values["scheduler.params.total_num_steps"] = total_steps
    if hidden_size is not None:
        values["zero_optimization.reduce_bucket_size"] = hidden_size * hidden_size
        values["zero_optimization.stage3_prefetch_bucket_size"] = int(0.9 * hidden_size * hidden_size)
        values["zero_optimization.stage3_param_persistence_threshold"] = 10 * hidden_size
    missing = []
    for path in auto_fields(out):
        if path not in values:
            missing.append(path)
            continue
        node = out
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = values[path]
    if missing:
        needs = sorted({"hidden_size" if ("bucket" in m or "persistence" in m) else
                        "total_steps" if "total_num_steps" in m else m for m in missing})
        raise ValueError(f"cannot fill 'auto' for {missing}: pass {', '.join(needs)} "
                         "(or put numbers in the config)")
    return out


def parse_with_deepspeed(cfg: dict[str, Any]):
    """Parse ``cfg`` with DeepSpeed's own ``DeepSpeedConfig`` (pydantic-validated: unknown keys
    and inconsistent batch sizes raise) without initialising distributed training. The config
    must not contain ``"auto"`` (see ``resolve_auto``). Outside a distributed job DeepSpeed
    assumes world size 1, so resolve with ``world_size=1`` for this check."""
    left = auto_fields(cfg)
    if left:
        raise ValueError(f"resolve 'auto' values first (resolve_auto): {left}")
    from deepspeed.runtime.config import DeepSpeedConfig

    return DeepSpeedConfig(copy.deepcopy(cfg))


def write_deepspeed_config(path: str | os.PathLike, cfg: dict[str, Any]) -> Path:
    """Write ``cfg`` as JSON atomically (temp file + rename); returns the path."""
    json.dumps(cfg)  # fail before touching the file if it is not JSON-serialisable
    write_json_atomic(path, cfg)
    return Path(path)


def read_deepspeed_config(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a DeepSpeed config must be a JSON object, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def launch_env(device: Device, *, extensions_dir: str | os.PathLike | None = None,
               master_port: int | None = None, master_addr: str = "127.0.0.1") -> dict[str, str]:
    """The environment variables a launch needs on ``device`` (only the additions; the runner
    merges them over ``os.environ``).

    Both devices: TORCH_EXTENSIONS_DIR (DeepSpeed JIT-compiles its ops once, ≈1-2 min, then
    reuses the cache; default ~/.cache/knowlm/torch_extensions or $KNOWLM_TORCH_EXTENSIONS_DIR),
    PYTHONUNBUFFERED=1 (so output streams line by line), MASTER_ADDR/MASTER_PORT (a free port).
    CPU: DS_ACCELERATOR=cpu (DeepSpeed's CPU accelerator, gloo backend) and no visible GPUs.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    ext = extensions_dir or os.environ.get("KNOWLM_TORCH_EXTENSIONS_DIR") or DEFAULT_EXTENSIONS_DIR
    ext_path = Path(os.path.expanduser(str(ext))).resolve()
    ext_path.mkdir(parents=True, exist_ok=True)
    env = {
        "TORCH_EXTENSIONS_DIR": str(ext_path),
        "PYTHONUNBUFFERED": "1",
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port or free_port()),
    }
    if device == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def in_process_env(master_port: int | None = None) -> dict[str, str]:
    """Variables that let the Trainer + DeepSpeed run inside this very process (a notebook
    kernel) as a one-process "distributed" job, without a launcher: without them DeepSpeed
    falls back to MPI discovery and fails with ``No module named 'mpi4py'``."""
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(master_port or free_port()),
            "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}


def trainer_device_args(device: Device) -> dict[str, Any]:
    """TrainingArguments a device needs. On CPU ``use_cpu=True``: otherwise, with several
    processes, the Trainer computes world size differently from DeepSpeed and fails with
    ``train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step * world_size``."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return {"use_cpu": True} if device == "cpu" else {}


# --------------------------------------------------------------------------------------------
# Hostfiles and launch commands (argv lists, never shell strings)
# --------------------------------------------------------------------------------------------

_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


def _check_host(host: str) -> str:
    if not isinstance(host, str) or not _HOST_RE.match(host):
        raise ValueError(f"invalid host name {host!r}: use a host name or IP address "
                         "(letters, digits, '.', '-', '_', ':')")
    return host


def hostfile_text(hosts: dict[str, int]) -> str:
    """MPI-style hostfile lines ``host slots=N`` (KnowLM: ``IP slots=8``), first host = master."""
    if not hosts:
        raise ValueError("hostfile needs at least one host")
    lines = []
    for host, slots in hosts.items():
        _check_host(host)
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"host {host!r}: slots must be a positive integer, got {slots!r}")
        lines.append(f"{host} slots={slots}")
    return "\n".join(lines) + "\n"


def write_hostfile(path: str | os.PathLike, hosts: dict[str, int]) -> Path:
    """Write a DeepSpeed/MPI hostfile atomically; returns its path."""
    write_text_atomic(path, hostfile_text(hosts))
    return Path(path)


def read_hostfile(path: str | os.PathLike) -> dict[str, int]:
    """Parse a hostfile (comments and blank lines allowed); errors name the line."""
    hosts: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for n, raw in enumerate(fh, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.fullmatch(r"(\S+)\s+slots\s*=\s*(\d+)", line)
            if not m:
                raise ValueError(f"{path}:{n}: expected 'host slots=N', got {raw.rstrip()!r}")
            host = _check_host(m.group(1))
            if host in hosts:
                raise ValueError(f"{path}:{n}: host {host!r} listed twice")
            hosts[host] = int(m.group(2))
    if not hosts:
        raise ValueError(f"{path}: no hosts")
    return hosts


def _executable(name: str) -> str:
    """``name`` from this interpreter's bin folder (a notebook kernel's PATH may not include the
    venv), else from PATH, else the bare name (the runner then reports it missing)."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name) or name


def _script_args(script_args: Iterable[Any] | None) -> list[str]:
    if isinstance(script_args, (str, bytes)):
        raise TypeError("script_args must be a list of arguments, not one string (no shell parsing here)")
    return [str(a) for a in (script_args or [])]


def deepspeed_argv(script: str | os.PathLike, script_args: Sequence[Any] | None = None, *,
                   num_gpus: int | None = None, num_nodes: int | None = None,
                   hostfile: str | os.PathLike | None = None, master_addr: str | None = None,
                   master_port: int | None = None, local: bool = False, node_rank: int | None = None,
                   no_ssh: bool = False, module: bool = False) -> list[str]:
    """``deepspeed`` launcher command.

    * one node: ``deepspeed --num_gpus N script.py args…`` (no hostfile; on CPU ``N`` is the
      number of processes);
    * several nodes from a hostfile: ``deepspeed --hostfile H --master_addr A --master_port P
      [--num_nodes n] [--num_gpus g] script.py args…`` (the launcher ssh-es to the other hosts);
    * a hostfile on this machine (``local=True``): adds ``--no_ssh --node_rank 0 --master_addr
      127.0.0.1`` because ``localhost`` in a hostfile otherwise needs an ssh server;
    * one process per node started by a scheduler (``no_ssh=True, node_rank=k``).
    """
    argv = [_executable("deepspeed")]
    if hostfile is not None:
        argv += ["--hostfile", str(hostfile)]
    if local:
        if hostfile is None:
            raise ValueError("local=True is for a hostfile on this machine; without a hostfile just use num_gpus")
        no_ssh, node_rank, master_addr = True, 0 if node_rank is None else node_rank, master_addr or "127.0.0.1"
    if no_ssh:
        if node_rank is None:
            raise ValueError("no_ssh needs node_rank (each node starts its own launcher)")
        argv += ["--no_ssh", "--node_rank", str(int(node_rank))]
    elif node_rank is not None:
        raise ValueError("node_rank is only meaningful with no_ssh=True")
    if num_nodes is not None:
        argv += ["--num_nodes", str(int(num_nodes))]
    if num_gpus is not None:
        if int(num_gpus) < 1:
            raise ValueError(f"num_gpus must be ≥ 1, got {num_gpus}")
        argv += ["--num_gpus", str(int(num_gpus))]
    if master_addr is not None:
        argv += ["--master_addr", _check_host(master_addr)]
    if master_port is not None:
        argv += ["--master_port", str(int(master_port))]
    if module:
        argv.append("--module")
    return argv + [str(script)] + _script_args(script_args)


def torchrun_argv(script: str | os.PathLike, script_args: Sequence[Any] | None = None, *,
                  nproc_per_node: int, nnodes: int = 1, rdzv_endpoint: str | None = None,
                  rdzv_id: str = "knowlm", rdzv_backend: str = "c10d", max_restarts: int = 0) -> list[str]:
    """``torchrun`` command. One node uses ``--standalone`` (a private rendezvous on a free
    port); several nodes use a c10d rendezvous at ``rdzv_endpoint`` (``host:port`` of node 0),
    and the same command is run on every node — no node rank needed."""
    if nproc_per_node < 1 or nnodes < 1:
        raise ValueError("nproc_per_node and nnodes must be ≥ 1")
    argv = [_executable("torchrun"), "--nnodes", str(int(nnodes)), "--nproc_per_node", str(int(nproc_per_node))]
    if nnodes == 1 and rdzv_endpoint is None:
        argv.append("--standalone")
    else:
        if not rdzv_endpoint:
            raise ValueError("several nodes need rdzv_endpoint='host:port' of the first node")
        argv += ["--rdzv_backend", rdzv_backend, "--rdzv_endpoint", rdzv_endpoint, "--rdzv_id", str(rdzv_id)]
    argv += ["--max_restarts", str(int(max_restarts))]
    return argv + [str(script)] + _script_args(script_args)


def local_launch(script: str | os.PathLike, script_args: Sequence[Any] | None = None, *, nprocs: int = 1,
                 device: Device = "cpu", launcher: Literal["deepspeed", "torchrun"] = "deepspeed",
                 extensions_dir: str | os.PathLike | None = None) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` for a run on this machine with ``nprocs`` processes (GPUs, or CPU
    processes): no hostfile, so no ssh; deepspeed's master port is the free port chosen for
    ``env`` (torchrun ``--standalone`` picks its own). Pass both to ``run_launcher``."""
    env = launch_env(device, extensions_dir=extensions_dir)
    if launcher == "deepspeed":
        argv = deepspeed_argv(script, script_args, num_gpus=nprocs, master_port=int(env["MASTER_PORT"]))
    elif launcher == "torchrun":
        argv = torchrun_argv(script, script_args, nproc_per_node=nprocs)  # --standalone: own free port
    else:
        raise ValueError(f"launcher must be 'deepspeed' or 'torchrun', got {launcher!r}")
    return argv, env


def resolve_device(device: str) -> Device:
    """``"auto"``: ``"cuda"`` when torch sees a GPU in this process, else ``"cpu"``; ``"cpu"`` and
    ``"cuda"`` are returned as given."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() and torch.cuda.device_count() > 0 else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return device  # type: ignore[return-value]


@dataclass(frozen=True)
class LaunchPlan:
    """Where a launch runs: the device, processes per node, nodes (and their hostfile)."""

    device: Device
    nprocs: int
    nodes: int
    hostfile: Path | None

    @property
    def world_size(self) -> int:
        return self.nprocs * self.nodes


def launch_plan(device: str = "auto", nprocs: int | None = None, hostfile: str | os.PathLike | None = None,
                nodes: int | None = None) -> LaunchPlan:
    """Resolve a launch's parameters (a notebook's ``device``/``nprocs``/``hostfile``/``nodes``).

    ``device="auto"`` picks ``cuda`` when torch sees a GPU here. ``nprocs`` (processes per node)
    ``None``: 1 on the CPU, one per visible GPU, or — with a hostfile — the first host's slots.
    ``hostfile`` (``host slots=N`` lines, first = master): a multi-node GPU run that the
    ``deepspeed`` launcher starts from this machine over ssh; ``nodes`` uses its first ``nodes``
    hosts (``None``: all). Every host is assumed to have the same number of GPUs."""
    dev = resolve_device(device)
    if nprocs is not None and (isinstance(nprocs, bool) or int(nprocs) < 1):
        raise ValueError(f"nprocs must be ≥ 1 (or None), got {nprocs!r}")
    if hostfile is None:
        if nodes not in (None, 1):
            raise ValueError(f"nodes={nodes}: several nodes need a hostfile (one 'host slots=N' line per node)")
        if nprocs is None:
            import torch

            nprocs = torch.cuda.device_count() if dev == "cuda" else 1
        return LaunchPlan(dev, int(nprocs), 1, None)
    if dev != "cuda":
        raise ValueError("a hostfile launch starts GPU processes on other machines over ssh; this machine has no "
                         "GPU (device resolved to 'cpu'): run it from a GPU node, or leave hostfile None")
    hosts = read_hostfile(hostfile)
    if nodes is not None and not 1 <= int(nodes) <= len(hosts):
        raise ValueError(f"nodes={nodes}: {hostfile} lists {len(hosts)} host(s)")
    first = next(iter(hosts.values()))
    if nprocs is not None and int(nprocs) > first:
        raise ValueError(f"nprocs={nprocs} is more than the {first} slots of the first host in {hostfile}")
    return LaunchPlan(dev, int(nprocs or first), int(nodes or len(hosts)), Path(hostfile).resolve())


def hostfile_launch(script: str | os.PathLike, script_args: Sequence[Any] | None, hostfile: str | os.PathLike, *,
                    nodes: int | None = None, nprocs: int | None = None, master_port: int = 29500,
                    extensions_dir: str | os.PathLike | None = None) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` of a multi-node GPU run started from the first host of ``hostfile`` with
    one command: ``deepspeed --hostfile H --num_nodes N --num_gpus G --master_addr FIRST
    --master_port P script args…``. The launcher reaches every host over passwordless ssh (pdsh)
    and starts ``G`` processes there; every host needs the same paths (a shared file system and
    the same virtual environment). ``nodes``/``nprocs`` ``None``: all hosts / the first host's
    slots. The master is the hostfile's first host, which must be a name the others can reach
    (not ``localhost``)."""
    hosts = read_hostfile(hostfile)
    master = next(iter(hosts))
    if master == "localhost" or master.startswith("127."):
        raise ValueError(f"{hostfile}: the first host {master!r} is the master every node connects to; use its "
                         "network name or address (for one machine, launch without a hostfile)")
    plan_nodes = int(nodes) if nodes is not None else len(hosts)
    if not 1 <= plan_nodes <= len(hosts):
        raise ValueError(f"nodes={nodes}: {hostfile} lists {len(hosts)} host(s)")
    argv = deepspeed_argv(script, script_args, hostfile=Path(hostfile).resolve(), num_nodes=plan_nodes,
                          num_gpus=nprocs, master_addr=master, master_port=int(master_port))
    env = launch_env("cuda", extensions_dir=extensions_dir, master_port=int(master_port), master_addr=master)
    return argv, env


_SBATCH_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:%/@+=,-]+$")


def _sbatch_value(name: str, value: Any) -> str:
    text = str(value)
    if not _SBATCH_VALUE_RE.match(text):
        raise ValueError(f"slurm {name}={text!r}: only letters, digits and _.:%/@+=,- are allowed in #SBATCH values")
    return text


_MEM_RE = re.compile(r"^\d+[KMGT]?$")
_SLURM_TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def slurm_time_minutes(time_limit: str) -> float:
    """Minutes of a Slurm ``--time`` value: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``,
    ``D-HH:MM`` or ``D-HH:MM:SS``."""
    m = _SLURM_TIME_RE.match(str(time_limit))
    if not m:
        raise ValueError(f"slurm time={time_limit!r}: expected MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
    days, a, b, c = m.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        return int(days) * 1440 + int(a) * 60 + int(b or 0) + int(c or 0) / 60
    if c is not None:  # HH:MM:SS
        return int(a) * 60 + int(b) + int(c) / 60
    return int(a) + int(b or 0) / 60  # MM or MM:SS


def slurm_script(script: str | os.PathLike, script_args: Sequence[Any] | None = None, *, nodes: int,
                 gpus_per_node: int, time_limit: str = "72:00:00", job_name: str = "knowlm-pretrain",
                 launcher: Literal["torchrun", "deepspeed"] = "torchrun", partition: str | None = None,
                 cpus_per_task: int | None = None, output: str = "slurm-%x-%j.out", master_port: int = 29500,
                 env: dict[str, str] | None = None, setup: Sequence[str] = (), mem: str | None = None,
                 requeue: bool = False, requeue_signal_s: int = 600, max_restarts: int = 20,
                 done_file: str | None = None) -> str:
    """An ``sbatch`` script running one launcher per node (``--ntasks-per-node=1``).

    The master is the first host of the allocation (``scontrol show hostnames``). With
    ``torchrun`` every node runs the same command against a c10d rendezvous on the master.
    With ``deepspeed`` a hostfile of the allocation is written and each node starts its own
    launcher with ``--no_ssh --node_rank $SLURM_NODEID`` (no pdsh/ssh between nodes needed);
    that command runs under ``bash -c`` so ``$SLURM_NODEID`` is expanded on each node.
    The hostfile is written to the submit directory, which every node must see (a shared file
    system, as Slurm clusters have). Every user-supplied string is shell-quoted; #SBATCH values
    are validated.

    ``mem``: host memory per node (``--mem``; ``"0"`` = all of the node's memory, what ZeRO-3
    offload wants). ``requeue=True`` makes a chain of jobs out of one submission: Slurm sends the
    batch shell ``USR1`` ``requeue_signal_s`` seconds before the time limit (``--signal=B:USR1@…``),
    the trap requeues the job (``scontrol requeue``, same job id, ``--open-mode=append`` keeps one
    log), and the next run resumes from the newest checkpoint — pass ``resume_from=latest`` in
    ``script_args`` (:func:`pretrain_sbatch` does). A job that finishes or fails is not requeued;
    after ``max_restarts`` requeues the chain stops. Work since the last checkpoint is redone, so
    keep ``save_steps`` well inside the time limit — or let the run end itself first:
    ``done_file`` (with ``requeue``) is a JSON file the run writes at the end of every session
    (the stage's ``metrics.json``); a session that exits cleanly without ``"completed": true``
    in it (``stop_after_minutes`` ended it, with a checkpoint) requeues the job too.
    ``setup`` lines (e.g. ``source /path/venv/bin/activate``) are inserted verbatim: they are
    the caller's own shell code.
    """
    if nodes < 1 or gpus_per_node < 1:
        raise ValueError("nodes and gpus_per_node must be ≥ 1")
    if launcher not in ("torchrun", "deepspeed"):
        raise ValueError(f"launcher must be 'torchrun' or 'deepspeed', got {launcher!r}")
    if mem is not None and not _MEM_RE.match(str(mem)):
        raise ValueError(f"slurm mem={mem!r}: expected a size such as 500G, 480000M or 0 (all of the node's memory)")
    if requeue and (int(requeue_signal_s) < 1 or int(max_restarts) < 1):
        raise ValueError("requeue_signal_s and max_restarts must be ≥ 1")
    q = shlex.quote
    args = _script_args(script_args)
    head = ["#!/bin/bash",
            f"#SBATCH --job-name={_sbatch_value('job_name', job_name)}",
            f"#SBATCH --nodes={int(nodes)}",
            "#SBATCH --ntasks-per-node=1",
            f"#SBATCH --gpus-per-node={int(gpus_per_node)}",
            f"#SBATCH --time={_sbatch_value('time', time_limit)}",
            f"#SBATCH --output={_sbatch_value('output', output)}"]
    if mem is not None:
        head.append(f"#SBATCH --mem={mem}")
    if partition:
        head.append(f"#SBATCH --partition={_sbatch_value('partition', partition)}")
    if cpus_per_task:
        head.append(f"#SBATCH --cpus-per-task={int(cpus_per_task)}")
    if requeue:
        head += ["#SBATCH --requeue", f"#SBATCH --signal=B:USR1@{int(requeue_signal_s)}", "#SBATCH --open-mode=append"]
    body = ["set -euo pipefail", *setup]
    for key, value in (env or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"invalid environment variable name {key!r}")
        body.append(f"export {key}={q(str(value))}")
    body += ['export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
             f"export MASTER_PORT={int(master_port)}",
             'echo "master $MASTER_ADDR:$MASTER_PORT, nodes: $SLURM_JOB_NODELIST, restart ${SLURM_RESTART_COUNT:-0}"']
    if launcher == "torchrun":
        cmd = ["torchrun", "--nnodes", str(int(nodes)), "--nproc_per_node", str(int(gpus_per_node)),
               "--rdzv_backend", "c10d", "--rdzv_id", "$SLURM_JOB_ID", "--rdzv_endpoint", "$MASTER_ADDR:$MASTER_PORT"]
        line = " ".join(q(c) if not c.startswith("$") else f'"{c}"' for c in cmd)
        srun = f"srun --kill-on-bad-exit=1 {line} {shlex.join([str(script), *args])}"
    else:
        body += ['HOSTFILE="hostfile-$SLURM_JOB_ID"',
                 f'scontrol show hostnames "$SLURM_JOB_NODELIST" | sed "s/$/ slots={int(gpus_per_node)}/" > "$HOSTFILE"']
        inner = ("exec deepspeed --hostfile \"$HOSTFILE\" --no_ssh --node_rank \"$SLURM_NODEID\" "
                 "--master_addr \"$MASTER_ADDR\" --master_port \"$MASTER_PORT\" "
                 f"--num_nodes {int(nodes)} --num_gpus {int(gpus_per_node)} {shlex.join([str(script), *args])}")
        body.append("export HOSTFILE")
        srun = f"srun --kill-on-bad-exit=1 bash -c {q(inner)}"
    if not requeue:
        body.append(srun)
    else:
        # srun runs in the background so that the trap runs as soon as USR1 arrives (bash runs traps
        # only between commands, and `wait` is interruptible); the script exits with srun's status
        body += [
            "requeue_job() {",
            f'  if [ "${{SLURM_RESTART_COUNT:-0}}" -ge {int(max_restarts)} ]; then',
            f'    echo "time limit near, but already restarted {int(max_restarts)} times: not requeueing"',
            "  else",
            '    echo "time limit near: requeueing job $SLURM_JOB_ID; the next run resumes from the newest checkpoint"',
            '    scontrol requeue "$SLURM_JOB_ID"',
            "  fi",
            "}",
            "trap requeue_job USR1",
            f"{srun} &",
            "SRUN_PID=$!",
            "set +e",
            'wait "$SRUN_PID"; STATUS=$?',
            'while [ "$STATUS" -gt 128 ] && kill -0 "$SRUN_PID" 2>/dev/null; do  # woken by the trap: keep waiting',
            '  wait "$SRUN_PID"; STATUS=$?',
            "done",
        ]
        if done_file is not None:
            body += [
                f'if [ "$STATUS" -eq 0 ] && ! grep -qs \'"completed": true\' {q(str(done_file))}; then',
                '  echo "the session saved a checkpoint and stopped before max_steps (stop_after_minutes)"',
                "  requeue_job",
                "fi",
            ]
        body.append('exit "$STATUS"')
    return "\n".join(head + [""] + body) + "\n"


def pretrain_sbatch(config_path: str | os.PathLike, *, nodes: int, gpus_per_node: int,
                    launcher: Literal["torchrun", "deepspeed"] = "deepspeed", overrides: Sequence[str] = (),
                    time_limit: str = "72:00:00", mem: str | None = "0", requeue: bool = True,
                    requeue_signal_s: int = 600, max_restarts: int = 20, job_name: str = "knowlm-pretrain",
                    partition: str | None = None, cpus_per_task: int | None = None,
                    output: str = "slurm-%x-%j.out", master_port: int = 29500,
                    setup: Sequence[str] | None = None, env: dict[str, str] | None = None) -> str:
    """The sbatch script of a pretraining run of ``config_path`` on ``nodes`` × ``gpus_per_node``
    GPUs (:func:`slurm_script`): every node runs ``scripts/pretrain.py CONFIG -o device=cuda
    [-o OVERRIDE …] -o resume_from=latest`` under ``launcher``, so a requeued (or resubmitted) job
    continues from the newest checkpoint. With ``requeue`` the run also gets
    ``stop_after_minutes`` (unless the overrides set it): the time limit less twice
    ``requeue_signal_s``, so that it saves and exits by itself before Slurm's signal — no work
    since the last ``save_steps`` checkpoint is lost — and the job requeues when that session's
    ``metrics.json`` does not say completed; the signal stays the fallback for a save that
    overruns. The config and overrides are loaded and validated here
    first (a typo fails now, not after hours in the queue); ``requeue`` needs ``save_steps``.
    Paths are made absolute (this checkout's script and config: the nodes must see the same
    paths). ``setup`` defaults to activating this Python's virtual environment when it runs in one."""
    from .config import parse_overrides
    from .pretrain import PretrainConfig, pretrain_script
    from .workdir import resolve_path

    config_file = resolve_path(config_path)
    if not config_file.is_file():
        raise FileNotFoundError(f"config not found: {config_path} (looked at {config_file})")
    items = [str(o) for o in overrides]
    for item, (parts, _value) in zip(items, parse_overrides(items)):
        if parts in (["device"], ["resume_from"]):
            raise ValueError(f"override {item!r}: a Slurm GPU job sets device=cuda and resume_from=latest itself")
    items = ["device=cuda", *items, "resume_from=latest"]
    cfg = PretrainConfig.load(config_file, items)
    if requeue and cfg.stop_after_minutes is None:
        stop = slurm_time_minutes(time_limit) - 2 * int(requeue_signal_s) / 60
        if stop < 1:
            raise ValueError(f"slurm time={time_limit}: too short to stop {2 * int(requeue_signal_s)} s before the "
                             "limit (stop_after_minutes); lower requeue_signal_s or raise the time limit")
        items.insert(-1, f"stop_after_minutes={stop:g}")
        cfg = PretrainConfig.load(config_file, items)
    if requeue and cfg.save_steps is None:
        raise ValueError(f"{config_file}: save_steps is not set, so a requeued job would have no checkpoint to resume "
                         "from: set save_steps (or requeue=False)")
    if setup is None:
        activate = Path(sys.prefix) / "bin" / "activate"
        in_venv = sys.prefix != sys.base_prefix and activate.is_file()
        setup = [f"source {shlex.quote(str(activate))}"] if in_venv else []
    script_args: list[str] = [str(config_file)]
    for item in items:
        script_args += ["-o", item]
    return slurm_script(pretrain_script(), script_args, nodes=nodes, gpus_per_node=gpus_per_node,
                        time_limit=time_limit, job_name=job_name, launcher=launcher, partition=partition,
                        cpus_per_task=cpus_per_task, output=output, master_port=master_port, env=env,
                        setup=list(setup), mem=mem, requeue=requeue, requeue_signal_s=requeue_signal_s,
                        max_restarts=max_restarts,
                        done_file=str(cfg.path(cfg.output_dir) / "metrics.json") if requeue else None)


# --------------------------------------------------------------------------------------------
# Running a launcher
# --------------------------------------------------------------------------------------------


def run_launcher(argv: Sequence[str], env: dict[str, str] | None = None, log_path: str | os.PathLike | None = None,
                 echo: bool = True, cwd: str | os.PathLike | None = None, tail_lines: int = 40,
                 on_output: Callable[[str], None] | None = None) -> int:
    """Run ``argv`` (no shell), printing its output (stdout and stderr) as it arrives — a
    Jupyter cell shows it live — and appending it to ``log_path``. ``env`` is merged over
    ``os.environ``.

    Progress bars redraw a line with ``\r``: those segments are echoed as they come (the
    notebook/terminal overwrites the line), while the log and the error tail keep only each
    line's final state, so a 10,000-step bar is one line there, not 10,000.

    ``on_output`` receives every segment as it arrives (a line ending in ``\n`` or a progress
    redraw ending in ``\r``), echoed or not: a notebook passes
    :class:`knowlm_utils.course.LaunchProgress` with ``echo=False`` to show one live status line
    while the full output goes to the log only.

    Returns 0 on success; a non-zero exit raises ``LaunchError`` carrying the exit code and the
    last ``tail_lines`` lines. Ctrl-C / interrupting the kernel terminates the whole process
    group the command started (launchers spawn one worker per device). The log is written as
    it streams, not atomically, so it can be followed during a run and survives a crash.
    """
    if isinstance(argv, (str, bytes)):
        raise TypeError("run_launcher takes an argv list, not a shell string")
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError("empty command")
    if cwd is not None and not Path(cwd).is_dir():
        raise FileNotFoundError(f"working directory not found: {cwd}")
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    log_name = str(log_path) if log_path is not None else None
    log = None
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8", buffering=1)
        log.write(f"$ {shlex.join(argv)}\n")

    def keep(line: str) -> None:  # a finished line: to the log and the tail
        if log is not None:
            log.write(line)
        tail.append(line)

    try:
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=full_env, cwd=cwd, start_new_session=True)
        except FileNotFoundError as exc:
            raise LaunchError(argv, 127, [f"command not found: {argv[0]} ({exc.strerror}); is the venv's bin "
                                          "folder on PATH?\n"], log_name) from exc
        try:
            assert proc.stdout is not None
            # newline="": split on \n, \r\n and \r, handing the endings back untranslated;
            # read1 underneath returns whatever the pipe has, so segments arrive live
            stream = io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace", newline="")
            redraw = ""  # the latest \r-terminated state of the current line
            for segment in stream:
                if echo:
                    print(segment, end="", flush=True)
                if on_output is not None:
                    on_output(segment)
                if segment.endswith("\r"):
                    redraw = segment[:-1]
                else:
                    keep(segment if segment.strip("\r\n") or not redraw else redraw + "\n")
                    redraw = ""
            if redraw:
                keep(redraw + "\n")
            rc = proc.wait()
        except BaseException:  # KeyboardInterrupt in a notebook: stop the whole launch
            _terminate_group(proc)
            raise
    finally:
        if log is not None:
            log.close()
    if rc != 0:
        raise LaunchError(argv, rc, list(tail), log_name)
    return rc


def _terminate_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it is still alive."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_cli(subparsers) -> None:
    """``knowlm launch deepspeed-config|hostfile|slurm|sbatch``."""
    p = subparsers.add_parser("launch", help="stage 05: DeepSpeed configs, hostfiles and Slurm scripts")
    sub = p.add_subparsers(dest="launch_cmd", required=True)

    d = sub.add_parser("deepspeed-config", help="write a DeepSpeed JSON config")
    d.add_argument("--stage", type=int, default=3, choices=(0, 1, 2, 3), help="ZeRO stage")
    d.add_argument("--offload-optimizer", action="store_true", help="optimizer state in CPU memory")
    d.add_argument("--offload-params", action="store_true", help="parameters in CPU memory (stage 3 only)")
    d.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    d.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    d.add_argument("--scheduler", default=None, choices=("WarmupLR", "WarmupDecayLR"),
                   help="DeepSpeed scheduler (default: none, the Trainer's --lr_scheduler_type)")
    d.add_argument("--knowlm-13b", action="store_true", help="KnowLM's exact 13B config (other options ignored)")
    d.add_argument("--out", help="output JSON (default: print)")
    d.set_defaults(func=_cli_deepspeed_config)

    h = sub.add_parser("hostfile", help="write a 'host slots=N' hostfile")
    h.add_argument("--host", action="append", required=True, metavar="HOST=SLOTS",
                   help="a host and its device count, e.g. --host 10.0.0.1=8 (repeatable; first = master)")
    h.add_argument("--out", help="output file (default: print)")
    h.set_defaults(func=_cli_hostfile)

    s = sub.add_parser("slurm", help="write an sbatch script running the launcher on every node")
    s.add_argument("--nodes", type=int, required=True)
    s.add_argument("--gpus-per-node", type=int, required=True)
    s.add_argument("--time", default="72:00:00", help="wall-clock limit (HH:MM:SS or D-HH:MM:SS)")
    s.add_argument("--job-name", default="knowlm-pretrain")
    s.add_argument("--partition")
    s.add_argument("--cpus-per-task", type=int)
    s.add_argument("--launcher", default="torchrun", choices=("torchrun", "deepspeed"))
    s.add_argument("--master-port", type=int, default=29500)
    s.add_argument("--setup", action="append", default=[], help="shell line run first, e.g. 'source venv/bin/activate'")
    s.add_argument("--out", help="output .sbatch file (default: print)")
    s.add_argument("script", help="training script run on every node")
    s.add_argument("script_args", nargs=argparse.REMAINDER, help="its arguments (put them after --)")
    s.set_defaults(func=_cli_slurm)

    b = sub.add_parser("sbatch", help="write the sbatch script of a pretraining run: one launcher per node, --mem, "
                                      "requeue before the time limit and resume_from=latest (a chain of jobs)")
    b.add_argument("config", help="pretraining YAML (configs/pretrain/...), validated now")
    b.add_argument("--nodes", type=int, required=True)
    b.add_argument("--gpus-per-node", type=int, required=True)
    b.add_argument("--launcher", default="deepspeed", choices=("deepspeed", "torchrun"),
                   help="run per node by srun (deepspeed --no_ssh --node_rank, or torchrun c10d)")
    b.add_argument("--mem", default="0", help="host memory per node, e.g. 500G (default 0: all of the node's; ZeRO-3 "
                                              "offload keeps the model states there)")
    b.add_argument("--time", default="72:00:00", help="wall-clock limit of one job (HH:MM:SS or D-HH:MM:SS); with "
                                                     "requeue the run stops itself with a checkpoint twice "
                                                     "--requeue-signal-s before it (stop_after_minutes)")
    b.add_argument("--no-requeue", dest="requeue", action="store_false",
                   help="no requeue chain (the job ends at its time limit; resubmit to resume)")
    b.add_argument("--requeue-signal-s", type=int, default=600, help="requeue this many seconds before the limit")
    b.add_argument("--max-restarts", type=int, default=20, help="stop requeueing after this many restarts")
    b.add_argument("--job-name", default="knowlm-pretrain")
    b.add_argument("--partition")
    b.add_argument("--cpus-per-task", type=int)
    b.add_argument("--master-port", type=int, default=29500)
    b.add_argument("--setup", action="append", default=None,
                   help="shell line run first (default: activate this virtual environment)")
    b.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="config override passed to every node (repeatable)")
    b.add_argument("--out", help="output .sbatch file (default: print)")
    b.set_defaults(func=_cli_sbatch)


def _emit(text: str, out: str | None) -> None:
    if out:
        write_text_atomic(out, text)
        print(f"wrote {out}")
    else:
        print(text, end="")


def _cli_deepspeed_config(args) -> int:
    if args.knowlm_13b:
        cfg = knowlm_13b_deepspeed_config()
    else:
        cfg = deepspeed_config(args.stage, offload_optimizer=args.offload_optimizer, offload_params=args.offload_params,
                               precision=args.precision, device=args.device, scheduler=args.scheduler)
    _emit(json.dumps(cfg, indent=2) + "\n", args.out)
    return 0


def _cli_hostfile(args) -> int:
    hosts: dict[str, int] = {}
    for item in args.host:
        host, sep, slots = item.rpartition("=")
        if not sep or not slots.isdigit():
            raise ValueError(f"--host {item!r}: expected HOST=SLOTS, e.g. 10.0.0.1=8")
        if host in hosts:
            raise ValueError(f"--host {host!r} given twice")
        hosts[host] = int(slots)
    _emit(hostfile_text(hosts), args.out)
    return 0


def _cli_slurm(args) -> int:
    script_args = list(args.script_args)
    if script_args[:1] == ["--"]:
        script_args = script_args[1:]
    text = slurm_script(args.script, script_args, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                        time_limit=args.time, job_name=args.job_name, launcher=args.launcher,
                        partition=args.partition, cpus_per_task=args.cpus_per_task,
                        master_port=args.master_port, setup=args.setup)
    _emit(text, args.out)
    return 0


def _cli_sbatch(args) -> int:
    text = pretrain_sbatch(args.config, nodes=args.nodes, gpus_per_node=args.gpus_per_node, launcher=args.launcher,
                           overrides=args.override, time_limit=args.time, mem=args.mem, requeue=args.requeue,
                           requeue_signal_s=args.requeue_signal_s, max_restarts=args.max_restarts,
                           job_name=args.job_name, partition=args.partition, cpus_per_task=args.cpus_per_task,
                           master_port=args.master_port, setup=args.setup)
    _emit(text, args.out)
    return 0


def launch_stage(script: str | os.PathLike, config_path: str | os.PathLike, nprocs: int | None = 1,
                 launcher: str = "deepspeed", overrides: Sequence[str] | None = None,
                 log_path: str | os.PathLike | None = None, device: str = "auto", echo: bool = True,
                 extensions_dir: str | os.PathLike | None = None,
                 on_output: Callable[[str], None] | None = None, hostfile: str | os.PathLike | None = None,
                 nodes: int | None = None, master_port: int = 29500) -> int:
    """Run a training entry point (``scripts/pretrain.py``, ``scripts/sft.py``) as ``SCRIPT CONFIG
    -o k=v … -o device=D`` under ``deepspeed`` / ``torchrun``, streaming its output live (a
    notebook cell shows the progress) and appending it to ``log_path``. Raises ``LaunchError``
    (exit code + last lines) on failure. Returns 0.

    Where it runs (:func:`launch_plan`): ``device="auto"`` uses the GPUs when torch sees one here,
    else the CPU; the resolved device is passed to the config too (``-o device=…``, so a CPU YAML
    runs on a GPU node and the other way round). Without ``hostfile``: ``nprocs`` processes on
    this machine (``None``: one per GPU, 1 on the CPU). With ``hostfile``: a multi-node GPU run
    started from this machine (its first host) by the ``deepspeed`` launcher over ssh
    (:func:`hostfile_launch`), ``nodes`` hosts × ``nprocs`` GPUs (``None``: all / the slots).

    A relative ``workdir=…`` override is taken from the current directory (or the repository
    root), like a notebook's ``workdir`` parameter; in the YAML itself, relative paths are taken
    from the YAML's folder."""
    from .config import parse_overrides
    from .workdir import resolve_path

    config_file = resolve_path(config_path)  # from the cwd if it is there, else from the repository root
    if not config_file.is_file():
        raise FileNotFoundError(f"config not found: {config_path} (looked at {config_file})")
    plan = launch_plan(device, nprocs, hostfile, nodes)
    script_args: list[str] = [str(config_file)]
    for item, (parts, value) in zip(overrides or [], parse_overrides(overrides)):
        if parts == ["workdir"] and isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            item = f"workdir={resolve_path(value)}"  # a notebook's workdir, not one relative to the YAML
        if parts == ["device"] and value not in (plan.device, "auto"):
            raise ValueError(f"override {item!r}, but this launch runs on {plan.device!r} (device={device!r}): "
                             f"pass device={value!r} to the launch instead")
        if parts == ["device"]:
            continue  # the launch's own device= follows
        script_args += ["-o", str(item)]
    script_args += ["-o", f"device={plan.device}"]
    if plan.hostfile is not None:
        if launcher != "deepspeed":
            raise ValueError(f"launcher {launcher!r} cannot start other machines from a hostfile: use 'deepspeed' "
                             "(ssh), or run one torchrun per node (`knowlm launch sbatch … --launcher torchrun`)")
        argv, env = hostfile_launch(Path(script), script_args, plan.hostfile, nodes=plan.nodes,
                                    nprocs=plan.nprocs, master_port=master_port, extensions_dir=extensions_dir)
    else:
        argv, env = local_launch(Path(script), script_args, nprocs=plan.nprocs, device=plan.device,
                                 launcher=launcher, extensions_dir=extensions_dir)
    if plan.device == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # share the cores, do not oversubscribe them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // plan.nprocs))
    try:
        return run_launcher(argv, env, log_path=log_path, echo=echo, cwd=str(Path(script).resolve().parent.parent),
                            on_output=on_output)
    finally:
        if plan.hostfile is None and launcher == "deepspeed":  # ranks killed by the launcher leave theirs
            from .train.ranks import release_launch_shared_memory

            release_launch_shared_memory(env, plan.nprocs)
