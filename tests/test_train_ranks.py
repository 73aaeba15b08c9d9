"""How a training process ends (knowlm_utils.train.ranks): run in child processes, since a
successful distributed run leaves through os._exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import atexit, logging, sys
sys.path.insert(0, {root!r})
from knowlm_utils.train.ranks import enable_crash_traces, exit_rank
enable_crash_traces()
atexit.register(lambda: print("teardown ran", flush=True))
logging.basicConfig(filename={log!r}, level=logging.INFO)
logging.getLogger("run").info("the last log line")
if {distributed}:
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:{port}", rank=0, world_size=1)
    for name in ("barrier", "destroy_process_group"):
        real = getattr(dist, name)
        def traced(*a, _real=real, _name=name, **k):
            sys.stdout.write(_name + " ")
            return _real(*a, **k)
        setattr(dist, name, traced)
sys.stdout.write("buffered, no newline")  # stdout is a pipe: block-buffered, lost unless flushed
exit_rank({rc})
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path: Path, *, distributed: bool, rc: int):
    log = tmp_path / "run.log"
    code = textwrap.dedent(CHILD).format(root=str(ROOT), log=str(log), distributed=distributed, port=_free_port(), rc=rc)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": ""})
    return proc, log.read_text("utf-8")


def test_a_successful_distributed_rank_leaves_the_group_flushes_and_skips_teardown(tmp_path):
    proc, log = _run(tmp_path, distributed=True, rc=0)
    assert proc.returncode == 0, proc.stderr
    # every rank waits for the others, then closes the group; what it buffered still comes out
    assert proc.stdout.startswith("buffered, no newline") and "barrier destroy_process_group" in proc.stdout
    assert "teardown ran" not in proc.stdout  # the interpreter's teardown (and atexit) is skipped
    assert "the last log line" in log  # log handlers were flushed before leaving


def test_a_failed_distributed_rank_does_not_wait_for_the_others(tmp_path):
    proc, log = _run(tmp_path, distributed=True, rc=3)
    assert proc.returncode == 3
    assert "barrier" not in proc.stdout and "destroy_process_group" not in proc.stdout
    assert "buffered, no newline" in proc.stdout and "teardown ran" in proc.stdout  # an ordinary exit
    assert "the last log line" in log


def test_a_run_without_a_process_group_exits_as_usual(tmp_path):
    proc, _ = _run(tmp_path, distributed=False, rc=0)
    assert proc.returncode == 0 and "teardown ran" in proc.stdout and "buffered, no newline" in proc.stdout
    assert "torch" not in proc.stderr


def test_a_fatal_signal_prints_the_python_stack(tmp_path):
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from knowlm_utils.train.ranks import enable_crash_traces\n"
            "enable_crash_traces()\n"
            "def where_it_died():\n    import os, signal; os.kill(os.getpid(), signal.SIGABRT)\n"
            "where_it_died()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -6
    assert "Fatal Python error: Aborted" in proc.stderr and "where_it_died" in proc.stderr


# ------------------------------------------------------------ DeepSpeed's shared memory ---
DS_ENV = {"WORLD_SIZE": "2", "LOCAL_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517"}


def test_the_deepspeed_segment_is_named_as_deepspeed_names_it():
    from knowlm_utils.train.ranks import deepspeed_shm_name

    assert deepspeed_shm_name(DS_ENV) == f"deepspeed_allreduce_buffer_{os.getuid()}_127.0.0.1_29517_1"
    assert deepspeed_shm_name({k: v for k, v in DS_ENV.items() if k != "LOCAL_SIZE"}) is None  # torchrun: none made
    assert deepspeed_shm_name({**DS_ENV, "WORLD_SIZE": "4"}) is None  # ranks on several machines: none made
    assert deepspeed_shm_name({}) is None


def test_release_removes_this_ranks_segment_only(tmp_path, monkeypatch):
    from knowlm_utils.train.ranks import deepspeed_shm_name, release_shared_memory

    for key, value in DS_ENV.items():
        monkeypatch.setenv(key, value)
    mine = tmp_path / deepspeed_shm_name()
    others = [tmp_path / mine.name.replace("_1", "_0"), tmp_path / mine.name.replace("29517", "29518")]
    for f in (mine, *others):
        f.write_bytes(b"x")
    assert release_shared_memory(tmp_path) and not mine.exists() and all(f.exists() for f in others)
    assert not release_shared_memory(tmp_path)  # nothing left to release
    monkeypatch.delenv("LOCAL_SIZE")
    others[0].rename(mine)
    assert not release_shared_memory(tmp_path) and mine.exists()  # not a deepspeed-launcher run: untouched


def test_the_launcher_side_removes_what_killed_ranks_left(tmp_path):
    from knowlm_utils.train.ranks import deepspeed_shm_name, release_launch_shared_memory

    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517", "PATH": "/usr/bin"}
    left = [tmp_path / deepspeed_shm_name({**DS_ENV, "RANK": str(r)}) for r in (0, 1)]
    left[1].write_bytes(b"x")  # rank 0 cleaned up, rank 1 was killed
    unrelated = tmp_path / deepspeed_shm_name({**DS_ENV, "MASTER_PORT": "1", "RANK": "1"})
    unrelated.write_bytes(b"x")
    assert release_launch_shared_memory(env, 2, tmp_path) == 1
    assert not any(f.exists() for f in left) and unrelated.exists()
