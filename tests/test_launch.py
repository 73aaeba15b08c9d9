"""Stage 05 foundations (knowlm_utils.launch): DeepSpeed configs (checked by DeepSpeed's own
parser), hostfiles, launcher argv lists, Slurm scripts, and the streaming launcher runner run on
real subprocesses. No training here."""

import itertools
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from knowlm_utils import cli
from knowlm_utils.launch import (LaunchError, adapt_for_cpu, auto_fields, deepspeed_argv, deepspeed_config,
                                 hostfile_text, knowlm_13b_deepspeed_config, knowlm_13b_training_args,
                                 in_process_env, launch_env, local_launch, parse_with_deepspeed,
                                 read_deepspeed_config, read_hostfile, resolve_auto, run_launcher, slurm_script,
                                 torchrun_argv, trainer_device_args, write_deepspeed_config, write_hostfile)

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def _valid(stage, off_opt, off_par, precision, device):
    return not ((off_par and stage != 3) or (off_opt and stage == 0)
                or (device == "cpu" and precision in ("fp16", "bf16")))


COMBOS = list(itertools.product((0, 1, 2, 3), (False, True), (False, True), PRECISIONS, ("cpu", "cuda")))


def test_config_matrix_structure_and_invalid_combinations():
    n_valid = 0
    for stage, off_opt, off_par, precision, device in COMBOS:
        kw = dict(offload_optimizer=off_opt, offload_params=off_par, precision=precision, device=device)
        if not _valid(stage, off_opt, off_par, precision, device):
            with pytest.raises(ValueError) as err:
                deepspeed_config(stage, **kw)
            msg = str(err.value)
            assert ("needs ZeRO stage 3" in msg or "needs ZeRO stage 1, 2 or 3" in msg or "needs a GPU" in msg), msg
            continue
        n_valid += 1
        cfg = deepspeed_config(stage, **kw)
        zero = cfg["zero_optimization"]
        assert zero["stage"] == stage
        assert ("offload_optimizer" in zero) == off_opt and ("offload_param" in zero) == off_par
        assert zero.get("stage3_gather_16bit_weights_on_model_save") is (True if stage == 3 else None)
        pins = [zero[k]["pin_memory"] for k in ("offload_optimizer", "offload_param") if k in zero]
        assert all(p == (device == "cuda") for p in pins)
        if device == "cpu":  # CPU always trains in fp32
            assert cfg["fp16"] == {"enabled": False} and cfg["bf16"] == {"enabled": False}
        elif precision == "auto":
            assert cfg["fp16"]["enabled"] == cfg["bf16"]["enabled"] == "auto"
        else:
            assert cfg["fp16"]["enabled"] == (precision == "fp16") and cfg["bf16"]["enabled"] == (precision == "bf16")
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                    "optimizer.params.lr", "optimizer.params.betas", "optimizer.params.weight_decay"):
            assert key in auto_fields(cfg)
    assert n_valid == 9 * 6  # offload layouts (1+2+2+4 over stages 0-3) × precision/device (2 cpu + 4 cuda)
    with pytest.raises(ValueError, match="ZeRO stage must be"):
        deepspeed_config(4)
    with pytest.raises(ValueError, match="pin_memory=True needs CUDA"):
        deepspeed_config(3, offload_optimizer=True, device="cpu", pin_memory=True)


def test_every_valid_config_parses_with_deepspeed():
    """DeepSpeed's own DeepSpeedConfig (pydantic; no distributed init) accepts every generated
    config once its "auto" values are filled the way the Trainer fills them."""
    for stage, off_opt, off_par, precision, device in COMBOS:
        if not _valid(stage, off_opt, off_par, precision, device):
            continue
        for scheduler in (None, "WarmupDecayLR"):
            cfg = deepspeed_config(stage, offload_optimizer=off_opt, offload_params=off_par, precision=precision,
                                   device=device, scheduler=scheduler)
            resolved = resolve_auto(cfg, micro_batch=4, grad_accum=2, hidden_size=256, lr=3e-4, warmup_steps=10,
                                    total_steps=200, fp16=precision == "fp16", bf16=precision == "bf16")
            assert auto_fields(resolved) == []
            ds = parse_with_deepspeed(resolved)
            assert ds.train_batch_size == 8 and ds.gradient_accumulation_steps == 2
            assert ds.zero_config.stage == stage
            assert (ds.zero_config.offload_param is not None) == off_par
            assert (ds.zero_config.offload_optimizer is not None) == off_opt
            assert ds.optimizer_params["lr"] == 3e-4
            if scheduler:
                assert ds.scheduler_params["total_num_steps"] == 200 and ds.scheduler_params["warmup_max_lr"] == 3e-4
            if stage == 3:
                assert ds.zero_config.gather_16bit_weights_on_model_save


def test_knowlm_13b_preset_matches_the_published_config():
    cfg = knowlm_13b_deepspeed_config()
    zero = cfg["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert zero["offload_param"] == {"device": "cpu", "pin_memory": True}
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert cfg["fp16"]["enabled"] is True and cfg["fp16"]["loss_scale"] == 0  # dynamic loss scaling
    assert cfg["optimizer"] == {"type": "AdamW", "params": {"lr": 1.5e-5, "betas": [0.9, 0.95], "eps": 1e-8,
                                                            "weight_decay": 0.1}}
    # the Trainer fills the batch sizes: 20 per GPU × 3 accumulation × 24 GPUs = 1440
    args = knowlm_13b_training_args()
    assert (args["learning_rate"], args["adam_beta1"], args["adam_beta2"], args["weight_decay"]) == (
        cfg["optimizer"]["params"]["lr"], *cfg["optimizer"]["params"]["betas"], cfg["optimizer"]["params"]["weight_decay"])
    filled = resolve_auto(cfg, micro_batch=args["per_device_train_batch_size"],
                          grad_accum=args["gradient_accumulation_steps"], world_size=24, hidden_size=5120)
    assert filled["train_batch_size"] == 1440 and filled["train_micro_batch_size_per_gpu"] == 20
    assert filled["zero_optimization"]["reduce_bucket_size"] == 5120 * 5120
    assert filled["zero_optimization"]["stage3_param_persistence_threshold"] == 51200
    # the config has no gradient_accumulation_steps: DeepSpeed derives it (world size 1 here)
    ds = parse_with_deepspeed(resolve_auto(cfg, micro_batch=20, grad_accum=3, world_size=1, hidden_size=5120))
    assert ds.gradient_accumulation_steps == 3 and ds.zero_config.offload_param.pin_memory
    with pytest.raises(ValueError, match=r"cannot fill 'auto' .*pass hidden_size"):
        resolve_auto(cfg, micro_batch=20)
    with pytest.raises(ValueError, match="resolve 'auto' values first"):
        parse_with_deepspeed(cfg)
    # the CPU version of the same config: fp32, nothing pinned, and the changes are listed
    cpu_cfg, changes = adapt_for_cpu(cfg)
    assert cpu_cfg["fp16"] == {"enabled": False} and not cpu_cfg["zero_optimization"]["offload_param"]["pin_memory"]
    assert len(changes) == 4 and cfg["fp16"]["enabled"] is True  # the original is untouched
    parse_with_deepspeed(resolve_auto(cpu_cfg, micro_batch=2, hidden_size=256))


def test_json_round_trip_and_atomic_write(tmp_path):
    path = tmp_path / "ds" / "zero3.json"
    cfg = deepspeed_config(3, offload_optimizer=True, offload_params=True, precision="bf16", scheduler="WarmupLR")
    write_deepspeed_config(path, cfg)
    assert read_deepspeed_config(path) == cfg
    with pytest.raises(TypeError):
        write_deepspeed_config(path, {"bad": object()})
    assert read_deepspeed_config(path) == cfg  # the failed write left the file as it was
    assert [p.name for p in path.parent.iterdir()] == ["zero3.json"]  # no temp files left
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "train_batch_size": 8,\n}\n')
    with pytest.raises(ValueError, match=r"broken.json: invalid JSON at line 3"):
        read_deepspeed_config(broken)


@pytest.mark.parametrize("name, make", [
    ("cpu-zero2.json", lambda: deepspeed_config(2, device="cpu")),
    ("cpu-zero3-offload.json", lambda: deepspeed_config(3, offload_optimizer=True, offload_params=True, device="cpu")),
    ("gpu-zero3-offload.json", lambda: deepspeed_config(3, offload_optimizer=True, offload_params=True, device="cuda")),
])
def test_shipped_config_files_are_what_the_builder_generates(name, make):
    assert read_deepspeed_config(ROOT / "configs" / "deepspeed" / name) == make()


def test_hostfile_round_trip_and_errors(tmp_path):
    hosts = {"10.0.0.1": 8, "10.0.0.2": 8, "node-3.cluster": 8}
    path = write_hostfile(tmp_path / "host.txt", hosts)
    assert path.read_text() == "10.0.0.1 slots=8\n10.0.0.2 slots=8\nnode-3.cluster slots=8\n"
    assert read_hostfile(path) == hosts
    for bad in ({"bad host": 8}, {"a;rm -rf /": 1}, {"": 2}):
        with pytest.raises(ValueError, match="invalid host name"):
            hostfile_text(bad)
    with pytest.raises(ValueError, match="slots must be a positive integer"):
        hostfile_text({"a": 0})
    with pytest.raises(ValueError, match="at least one host"):
        hostfile_text({})
    broken = tmp_path / "broken.txt"
    broken.write_text("# cluster\nhost1 slots=8\nhost2 8\n")
    with pytest.raises(ValueError, match=r"broken.txt:3: expected 'host slots=N'"):
        read_hostfile(broken)


def test_deepspeed_and_torchrun_argv():
    single = deepspeed_argv("train.py", ["--lr", 1e-4], num_gpus=2)
    assert Path(single[0]).name == "deepspeed" and single[1:] == ["--num_gpus", "2", "train.py", "--lr", "0.0001"]
    multi = deepspeed_argv("train.py", ["--x"], hostfile="host.txt", master_addr="10.0.0.1", master_port=29600,
                           num_nodes=3, num_gpus=8)
    assert multi[1:] == ["--hostfile", "host.txt", "--num_nodes", "3", "--num_gpus", "8", "--master_addr",
                         "10.0.0.1", "--master_port", "29600", "train.py", "--x"]
    local = deepspeed_argv("train.py", hostfile="hf", local=True, master_port=1234)
    assert local[1:] == ["--hostfile", "hf", "--no_ssh", "--node_rank", "0", "--master_addr", "127.0.0.1",
                         "--master_port", "1234", "train.py"]
    with pytest.raises(ValueError, match="no_ssh needs node_rank"):
        deepspeed_argv("t.py", no_ssh=True)
    with pytest.raises(ValueError, match="local=True is for a hostfile"):
        deepspeed_argv("t.py", local=True)
    with pytest.raises(TypeError, match="not one string"):
        deepspeed_argv("t.py", "--lr 1e-4")
    one = torchrun_argv("train.py", ["--a", "b c"], nproc_per_node=2)
    assert Path(one[0]).name == "torchrun"
    assert one[1:] == ["--nnodes", "1", "--nproc_per_node", "2", "--standalone", "--max_restarts", "0",
                       "train.py", "--a", "b c"]
    many = torchrun_argv("train.py", nproc_per_node=8, nnodes=3, rdzv_endpoint="10.0.0.1:29500", rdzv_id="job7")
    assert many[1:] == ["--nnodes", "3", "--nproc_per_node", "8", "--rdzv_backend", "c10d", "--rdzv_endpoint",
                        "10.0.0.1:29500", "--rdzv_id", "job7", "--max_restarts", "0", "train.py"]
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        torchrun_argv("t.py", nproc_per_node=8, nnodes=2)


def test_real_deepspeed_launcher_accepts_the_local_hostfile_command(tmp_path, capsys):
    """The deepspeed 0.19.8 launcher itself runs our argv (hostfile on this machine, so
    --no_ssh; no training, the script only reports what it received)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import os, sys\nprint('probe', os.environ['RANK'], os.environ['WORLD_SIZE'], "
                     "os.environ['MASTER_PORT'], sys.argv[1:], flush=True)\n")
    env = launch_env("cpu", extensions_dir=tmp_path / "ext")
    hostfile = write_hostfile(tmp_path / "hostfile", {"localhost": 1})
    argv = deepspeed_argv(probe, ["--note", "a b"], hostfile=hostfile, local=True, master_port=env["MASTER_PORT"])
    assert run_launcher(argv, env, echo=False, log_path=tmp_path / "ds.log") == 0
    log = (tmp_path / "ds.log").read_text()
    assert f"probe 0 1 {env['MASTER_PORT']} ['--local_rank=0', '--note', 'a b']" in log


NASTY_ARGS = ["--output_dir", "/data/my run", "--note", "it's $HOME; rm -rf / `x`"]


def _bash_ok(text: str, tmp_path: Path) -> None:
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_slurm_script_torchrun(tmp_path):
    text = slurm_script("pretrain.py", NASTY_ARGS, nodes=3, gpus_per_node=8, time_limit="3-00:00:00",
                        partition="gpu", env={"NCCL_DEBUG": "WARN"}, setup=["source /opt/venv/bin/activate"])
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in ("--nodes=3", "--ntasks-per-node=1", "--gpus-per-node=8", "--time=3-00:00:00", "--partition=gpu"):
        assert f"#SBATCH {directive}" in lines
    assert 'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in lines
    assert "export NCCL_DEBUG=WARN" in lines
    srun = next(line for line in lines if line.startswith("srun "))
    argv = shlex.split(srun)
    assert argv[:2] == ["srun", "--kill-on-bad-exit=1"] and argv[2] == "torchrun"
    assert argv[argv.index("--nnodes") + 1] == "3" and argv[argv.index("--nproc_per_node") + 1] == "8"
    assert argv[argv.index("--rdzv_endpoint") + 1] == "$MASTER_ADDR:$MASTER_PORT"  # expanded by bash, quoted
    assert argv[-5:] == ["pretrain.py", *NASTY_ARGS]  # user strings survive quoting exactly
    _bash_ok(text, tmp_path)


def test_slurm_script_deepspeed_expands_node_rank_on_each_node(tmp_path):
    text = slurm_script("pretrain.py", NASTY_ARGS, nodes=3, gpus_per_node=8, launcher="deepspeed")
    lines = text.splitlines()
    assert any(line.startswith("scontrol show hostnames") and "slots=8" in line for line in lines)
    srun = shlex.split(next(line for line in lines if line.startswith("srun ")))
    assert srun[2:4] == ["bash", "-c"] and len(srun) == 5
    inner = srun[4]
    # single-quoted for the batch shell, so $SLURM_NODEID is expanded by each node's bash -c
    assert '--node_rank "$SLURM_NODEID"' in inner
    inner_argv = shlex.split(inner)
    assert inner_argv[:2] == ["exec", "deepspeed"] and "--no_ssh" in inner_argv
    assert inner_argv[-5:] == ["pretrain.py", *NASTY_ARGS]
    _bash_ok(text, tmp_path)
    # the inner command, run by a real bash with the node's variables, yields the right argv
    probe = subprocess.run(["bash", "-c", inner.replace("exec deepspeed", "exec printf '%s\\n'")], text=True,
                           capture_output=True, check=True,
                           env={"SLURM_NODEID": "2", "HOSTFILE": "hf", "MASTER_ADDR": "n1", "MASTER_PORT": "29500"})
    got = probe.stdout.splitlines()
    assert got[got.index("--node_rank") + 1] == "2" and got[got.index("--master_addr") + 1] == "n1"
    assert got[-5:] == ["pretrain.py", *NASTY_ARGS]


def test_slurm_script_rejects_unsafe_values():
    with pytest.raises(ValueError, match="job_name"):
        slurm_script("t.py", nodes=1, gpus_per_node=1, job_name="x\n#SBATCH --nodes=99")
    with pytest.raises(ValueError, match="time"):
        slurm_script("t.py", nodes=1, gpus_per_node=1, time_limit="1:00; reboot")
    with pytest.raises(ValueError, match="invalid environment variable name"):
        slurm_script("t.py", nodes=1, gpus_per_node=1, env={"A B": "1"})


def test_launch_env(tmp_path):
    cpu = launch_env("cpu", extensions_dir=tmp_path / "ext")
    assert cpu["DS_ACCELERATOR"] == "cpu" and cpu["CUDA_VISIBLE_DEVICES"] == ""
    assert Path(cpu["TORCH_EXTENSIONS_DIR"]).is_dir() and cpu["PYTHONUNBUFFERED"] == "1"
    port = int(cpu["MASTER_PORT"])
    with socket.socket() as s:  # the chosen port is really free
        s.bind(("127.0.0.1", port))
    gpu = launch_env("cuda", extensions_dir=tmp_path / "ext", master_port=29501)
    assert "DS_ACCELERATOR" not in gpu and gpu["MASTER_PORT"] == "29501"
    assert trainer_device_args("cpu") == {"use_cpu": True} and trainer_device_args("cuda") == {}
    one = in_process_env()
    assert (one["RANK"], one["LOCAL_RANK"], one["WORLD_SIZE"], one["MASTER_ADDR"]) == ("0", "0", "1", "127.0.0.1")
    with pytest.raises(ValueError):
        launch_env("tpu")
    argv, env = local_launch("train.py", ["--x", "1"], nprocs=2, extensions_dir=tmp_path / "ext")
    assert argv[1:] == ["--num_gpus", "2", "--master_port", env["MASTER_PORT"], "train.py", "--x", "1"]
    assert env["DS_ACCELERATOR"] == "cpu"
    argv, env = local_launch("train.py", nprocs=2, launcher="torchrun", extensions_dir=tmp_path / "ext")
    assert Path(argv[0]).name == "torchrun" and "--standalone" in argv and argv[-1] == "train.py"


def test_run_launcher_streams_live_to_console_and_log(tmp_path, capsys):
    """The child prints a line, then waits until that line is in the log before finishing:
    it can only succeed if the runner streams (and flushes) each line as it arrives."""
    log = tmp_path / "logs" / "run.log"
    child = textwrap.dedent(f"""
        import os, sys, time
        print("first line 知识", flush=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists({str(log)!r}) and "first line" in open({str(log)!r}, encoding="utf-8").read():
                print("saw it live; env", os.environ["KNOWLM_PROBE"]); sys.exit(0)
            time.sleep(0.05)
        sys.exit(3)
    """)
    rc = run_launcher([sys.executable, "-c", child], env={"KNOWLM_PROBE": "42"}, log_path=log)
    assert rc == 0
    out = capsys.readouterr().out
    assert "first line 知识\n" in out and "saw it live; env 42\n" in out
    text = log.read_text(encoding="utf-8")
    assert text.startswith("$ ") and "first line 知识" in text and "saw it live" in text


def test_run_launcher_collapses_progress_bar_redraws_in_log_and_tail(tmp_path, capsys):
    """A tqdm-style bar redraws one line with \\r: echoed verbatim (the cell overwrites it),
    but the log and the error tail keep only the bar's final state."""
    child = ("import sys, time\n"
             "for i in range(1, 51):\n"
             "    sys.stdout.write(f'\\rstep {i}/50'); sys.stdout.flush()\n"
             "sys.stdout.write('\\n'); print('loss 1.23'); sys.stdout.write('eta 0s\\r'); sys.exit(1)")
    with pytest.raises(LaunchError) as err:
        run_launcher([sys.executable, "-c", child], log_path=tmp_path / "bar.log")
    echoed = capsys.readouterr().out
    assert "\rstep 1/50\rstep 2/50" in echoed and echoed.count("\r") >= 50
    log = (tmp_path / "bar.log").read_text()
    assert log.splitlines()[-3:] == ["step 50/50", "loss 1.23", "eta 0s"] and "step 49/50" not in log
    assert err.value.tail == ["step 50/50\n", "loss 1.23\n", "eta 0s\n"]


def test_interrupting_run_launcher_stops_the_whole_process_group(capsys):
    """Interrupting the kernel (KeyboardInterrupt) must not leave workers behind: the child
    and the grandchild it spawned are both terminated."""
    child = ("import os, subprocess, sys, time\n"
             "g = subprocess.Popen(['sleep', '60'])\n"
             "print('pids', os.getpid(), g.pid, flush=True)\n"
             "time.sleep(60)")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_launcher([sys.executable, "-c", child])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    pids = [int(x) for x in capsys.readouterr().out.split("pids", 1)[1].split()[:2]]
    deadline = time.time() + 10
    alive = pids
    while alive and time.time() < deadline:
        alive = [p for p in pids if _alive(p)]
        time.sleep(0.1)
    assert alive == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its reaper counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_run_launcher_failure_gives_short_error_with_tail(tmp_path, capsys):
    child = "import sys\nfor i in range(1, 101): print(f'line {i}')\nsys.exit(3)"
    with pytest.raises(LaunchError) as err:
        run_launcher([sys.executable, "-c", child], log_path=tmp_path / "fail.log", echo=False)
    e = err.value
    assert e.returncode == 3 and len(e.tail) == 40
    msg = str(e)
    assert msg.startswith("python") and "exited with code 3" in msg and "fail.log" in msg
    assert "line 100" in msg and "line 61\n" in msg and "line 60\n" not in msg
    assert capsys.readouterr().out == ""  # echo=False
    assert "line 1\n" in (tmp_path / "fail.log").read_text()  # the log keeps everything
    with pytest.raises(LaunchError, match="command not found"):
        run_launcher(["/nonexistent/deepspeed", "x.py"], echo=False)
    with pytest.raises(TypeError, match="argv list"):
        run_launcher("echo hi")


def test_cli_wrappers(tmp_path, capsys):
    out = tmp_path / "ds.json"
    assert cli.main(["launch", "deepspeed-config", "--stage", "3", "--offload-optimizer", "--offload-params",
                     "--precision", "fp16", "--out", str(out)]) == 0
    assert read_deepspeed_config(out) == deepspeed_config(3, offload_optimizer=True, offload_params=True,
                                                          precision="fp16")
    assert cli.main(["launch", "deepspeed-config", "--knowlm-13b", "--out", str(out)]) == 0
    assert read_deepspeed_config(out) == knowlm_13b_deepspeed_config()
    capsys.readouterr()
    assert cli.main(["launch", "deepspeed-config", "--stage", "2", "--offload-params"]) == 2
    assert "needs ZeRO stage 3" in capsys.readouterr().err
    assert cli.main(["launch", "deepspeed-config", "--stage", "1", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["zero_optimization"] == {"stage": 1}
    host = tmp_path / "host.txt"
    assert cli.main(["launch", "hostfile", "--host", "10.0.0.1=8", "--host", "10.0.0.2=8", "--out", str(host)]) == 0
    assert read_hostfile(host) == {"10.0.0.1": 8, "10.0.0.2": 8}
    assert cli.main(["launch", "hostfile", "--host", "10.0.0.1"]) == 2
    job = tmp_path / "job.sbatch"
    assert cli.main(["launch", "slurm", "--nodes", "3", "--gpus-per-node", "8", "--out", str(job),
                     "pretrain.py", "--", "--deepspeed", "configs/deepspeed/knowlm-13b-zero3-offload-fp16.json"]) == 0
    srun = shlex.split(next(line for line in job.read_text().splitlines() if line.startswith("srun ")))
    assert srun[-3:] == ["pretrain.py", "--deepspeed", "configs/deepspeed/knowlm-13b-zero3-offload-fp16.json"]


# ------------------------------------------------------------ multi-node launch (ssh / Slurm) ----
def test_hostfile_launch_command_is_what_deepspeed_runs(tmp_path):
    """The one-command multi-node launch (first node, ssh to the others), read back by the
    deepspeed 0.19.8 launcher's own argument parser and resource logic."""
    from deepspeed.launcher import runner

    from knowlm_utils.launch import hostfile_launch, launch_plan

    hostfile = write_hostfile(tmp_path / "hostfile", {"10.0.0.1": 8, "10.0.0.2": 8, "10.0.0.3": 8})
    argv, env = hostfile_launch("scripts/pretrain.py", ["cfg.yaml", "-o", "device=cuda"], hostfile, nodes=2, nprocs=4,
                                master_port=29511, extensions_dir=tmp_path / "ext")
    assert Path(argv[0]).name == "deepspeed"
    args = runner.parse_args(argv[1:])
    assert (args.hostfile, args.num_nodes, args.num_gpus) == (str(hostfile.resolve()), 2, 4)
    assert (args.master_addr, args.master_port) == ("10.0.0.1", 29511)
    assert (args.user_script, args.user_args) == ("scripts/pretrain.py", ["cfg.yaml", "-o", "device=cuda"])
    pool = runner.parse_resource_filter(runner.fetch_hostfile(args.hostfile))
    active = runner.apply_num_nodes_and_gpus(pool, args.num_nodes, args.num_gpus)
    assert dict(active) == {"10.0.0.1": [0, 1, 2, 3], "10.0.0.2": [0, 1, 2, 3]}
    assert env["MASTER_ADDR"] == "10.0.0.1" and env["MASTER_PORT"] == "29511" and "DS_ACCELERATOR" not in env
    # all hosts, their slots: no --num_gpus limit
    argv, _ = hostfile_launch("t.py", [], hostfile, extensions_dir=tmp_path / "ext")
    assert runner.parse_args(argv[1:]).num_nodes == 3 and "--num_gpus" not in argv
    local = write_hostfile(tmp_path / "local", {"localhost": 8, "10.0.0.2": 8})
    with pytest.raises(ValueError, match="first host 'localhost' is the master"):
        hostfile_launch("t.py", [], local)
    with pytest.raises(ValueError, match="lists 3 host"):
        hostfile_launch("t.py", [], hostfile, nodes=4)
    # the plan a notebook resolves: no GPU is visible here, so 'auto' is the CPU, one process
    plan = launch_plan("auto", None)
    assert (plan.device, plan.nprocs, plan.nodes, plan.world_size) == ("cpu", 1, 1, 1)
    assert launch_plan("cpu", 2).world_size == 2
    with pytest.raises(ValueError, match="need a hostfile"):
        launch_plan("cpu", 1, nodes=2)
    with pytest.raises(ValueError, match="no GPU"):
        launch_plan("auto", None, hostfile)
    with pytest.raises(ValueError, match="device must be"):
        launch_plan("tpu")


FAKE_SLURM = {  # stand-ins for the cluster's srun/scontrol (no Slurm here): they record their calls
    "srun": """#!/bin/bash
echo "srun $*" >> "$FAKE_LOG"
touch "$FAKE_DIR/started"
for _ in $(seq 300); do [ -e "$FAKE_DIR/stop" ] && exit "$(cat "$FAKE_DIR/stop")"; sleep 0.1; done
exit 99
""",
    "scontrol": """#!/bin/bash
echo "scontrol $*" >> "$FAKE_LOG"
if [ "$1" = show ]; then printf 'node1\\nnode2\\nnode3\\n'; fi
if [ "$1" = requeue ]; then echo 143 > "$FAKE_DIR/stop"; fi   # Slurm ends the running step
""",
}


def _run_sbatch(text: str, tmp_path: Path, *, signal_usr1: bool, restart_count: int = 0, exit_code: int = 0):
    """Run the generated script with bash and the stand-in commands; optionally deliver the
    USR1 that Slurm sends before the time limit. Returns (exit status, recorded calls)."""
    fake = tmp_path / f"fake-{signal_usr1}-{restart_count}"
    (fake / "bin").mkdir(parents=True)
    for name, body in FAKE_SLURM.items():
        (fake / "bin" / name).write_text(body)
        (fake / "bin" / name).chmod(0o755)
    log = fake / "calls.log"
    env = {**os.environ, "PATH": f"{fake / 'bin'}:{os.environ['PATH']}", "FAKE_LOG": str(log), "FAKE_DIR": str(fake),
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "node[1-3]", "SLURM_RESTART_COUNT": str(restart_count)}
    script = fake / "job.sbatch"
    script.write_text(text)
    proc = subprocess.Popen(["bash", str(script)], env=env, cwd=fake, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 20
    while not (fake / "started").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (fake / "started").exists(), proc.communicate()[0]
    if signal_usr1:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
    if not (fake / "stop").exists():
        (fake / "stop").write_text(str(exit_code))
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, log.read_text().splitlines(), out


def test_pretrain_sbatch_requeues_and_resumes(tmp_path):
    from knowlm_utils.launch import pretrain_sbatch

    out_dir = tmp_path / "run"
    text = pretrain_sbatch("configs/pretrain/knowlm-13b.yaml", nodes=3, gpus_per_node=8, mem="480G",
                           overrides=["eval_steps=1000", f"output_dir={out_dir}"], setup=["echo setup ran"],
                           time_limit="2-00:00:00")
    _bash_ok(text, tmp_path)
    lines = text.splitlines()
    for directive in ("--nodes=3", "--gpus-per-node=8", "--mem=480G", "--requeue", "--signal=B:USR1@600",
                      "--open-mode=append"):
        assert f"#SBATCH {directive}" in lines
    srun = next(line for line in lines if line.startswith("srun "))
    assert srun.endswith(" &")
    inner = shlex.split(shlex.split(srun[:-2])[4])
    cfg = str(ROOT / "configs/pretrain/knowlm-13b.yaml")
    assert inner[-12:] == [str(ROOT / "scripts/pretrain.py"), cfg, "-o", "device=cuda", "-o", "eval_steps=1000", "-o",
                           f"output_dir={out_dir}", "-o", "stop_after_minutes=2860", "-o", "resume_from=latest"]
    assert inner[inner.index("--num_nodes") + 1] == "3" and "--no_ssh" in inner
    # run it: USR1 before the time limit → the job requeues itself (same id) and exits with srun's status
    rc, calls, out = _run_sbatch(text, tmp_path, signal_usr1=True)
    assert "scontrol requeue 4242" in calls and rc == 143, out
    assert out.startswith("setup ran\n")
    assert any(c.startswith("srun --kill-on-bad-exit=1 bash -c") and "resume_from=latest" in c for c in calls)
    assert "hostfile-4242" in os.listdir(tmp_path / "fake-True-0")
    assert (tmp_path / "fake-True-0" / "hostfile-4242").read_text() == "node1 slots=8\nnode2 slots=8\nnode3 slots=8\n"
    # a session that stopped itself (stop_after_minutes: 2 days less 20 minutes) requeues; a finished run does not
    out_dir.mkdir()
    (out_dir / "metrics.json").write_text('{\n  "completed": false,\n  "stopped_by": "stop_after_minutes"\n}\n')
    rc, calls, out = _run_sbatch(text, tmp_path, signal_usr1=False, restart_count=1, exit_code=0)
    assert rc == 0 and "scontrol requeue 4242" in calls and "stopped before max_steps" in out
    (out_dir / "metrics.json").write_text('{\n  "completed": true,\n  "stopped_by": null\n}\n')
    rc, calls, _ = _run_sbatch(text, tmp_path, signal_usr1=False, exit_code=0)
    assert rc == 0 and not any(c.startswith("scontrol requeue") for c in calls)
    rc, calls, _ = _run_sbatch(text, tmp_path, signal_usr1=False, restart_count=2, exit_code=1)  # failed: no requeue
    assert rc == 1 and not any(c.startswith("scontrol requeue") for c in calls)
    rc, calls, out = _run_sbatch(text, tmp_path, signal_usr1=True, restart_count=20, exit_code=0)
    assert not any(c.startswith("scontrol requeue") for c in calls) and "not requeueing" in out
    # torchrun per node, no requeue: the plain srun line of slurm_script
    plain = pretrain_sbatch("configs/pretrain/knowlm-13b.yaml", nodes=2, gpus_per_node=4, launcher="torchrun",
                            requeue=False, mem=None, setup=[])
    _bash_ok(plain, tmp_path)
    assert "--requeue" not in plain and "--mem" not in plain and "stop_after_minutes" not in plain
    srun = shlex.split(next(line for line in plain.splitlines() if line.startswith("srun ")))
    assert srun[2] == "torchrun" and srun[-2:] == ["-o", "resume_from=latest"]


def test_pretrain_sbatch_refuses_bad_input(tmp_path, capsys):
    from knowlm_utils.launch import pretrain_sbatch

    cfg = "configs/pretrain/knowlm-13b.yaml"
    with pytest.raises(ValueError, match="save_steps is not set"):
        pretrain_sbatch(cfg, nodes=1, gpus_per_node=8, overrides=["save_steps=null"])
    with pytest.raises(ValueError, match="sets device=cuda and resume_from=latest itself"):
        pretrain_sbatch(cfg, nodes=1, gpus_per_node=8, overrides=["resume_from=null"])
    with pytest.raises(ValueError, match="mem='lots'"):
        pretrain_sbatch(cfg, nodes=1, gpus_per_node=8, mem="lots")
    job = tmp_path / "job.sbatch"
    assert cli.main(["launch", "sbatch", cfg, "--nodes", "3", "--gpus-per-node", "8", "-o", "eval_steps=100",
                     "--out", str(job)]) == 0
    assert "#SBATCH --mem=0" in job.read_text() and "eval_steps=100" in job.read_text()
    capsys.readouterr()
    assert cli.main(["launch", "sbatch", cfg, "--nodes", "3", "--gpus-per-node", "8", "-o", "micro_bach=2"]) == 2
    assert "unknown key(s) ['micro_bach']" in capsys.readouterr().err


def test_slurm_time_limits_and_the_stop_before_them():
    from knowlm_utils.launch import pretrain_sbatch, slurm_time_minutes

    assert [slurm_time_minutes(t) for t in ("30", "30:30", "48:00:00", "2-00", "1-02:30", "1-00:00:30")] == \
        [30, 30.5, 2880, 2880, 1590, 1440.5]
    with pytest.raises(ValueError, match="slurm time='1h'"):
        slurm_time_minutes("1h")
    with pytest.raises(ValueError, match="too short to stop 1200 s before the limit"):
        pretrain_sbatch("configs/pretrain/knowlm-13b.yaml", nodes=1, gpus_per_node=8, time_limit="00:20:00", setup=[])
    own = pretrain_sbatch("configs/pretrain/knowlm-13b.yaml", nodes=1, gpus_per_node=8, time_limit="00:20:00",
                          overrides=["stop_after_minutes=15"], setup=[])  # the user's own limit is kept
    assert "stop_after_minutes=15 " in own and own.count("stop_after_minutes=") == 1
