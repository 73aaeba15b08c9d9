"""How a training process ends: the one exit path of ``scripts/pretrain.py`` and ``scripts/sft.py``,
whether they run alone or as one rank of a ``deepspeed`` / ``torchrun`` launch.

After a successful run every rank waits for the others, closes the process group
(:func:`leave_process_group`), writes out what it buffered and leaves without the interpreter's
teardown (:func:`exit_rank`). That teardown is where a finished run died, once in about 50
two-rank DeepSpeed launches on CPU (core dump of the aborted rank): ``destroy_process_group``
does not stop Gloo's worker threads, and one of them released the last ``barrier`` work —
which holds the run's last all-gather, with tensors owned by Python — while ``Py_FinalizeEx``
was running; freeing those tensors needs the GIL, Python ends a thread that asks for it then
(``pthread_exit``), and the forced unwind through a C++ destructor is ``terminate called without
an active exception``: SIGABRT, exit code -6, and the launcher kills the other ranks — after
every file had been written (pytorch/pytorch#179291 describes the same race). Nothing of ours
runs in that teardown: checkpoints, metrics and weights are written atomically and closed
before the run returns.

A failed rank skips all of this: it must not wait in a barrier for ranks that will never reach it.

Every rank, failed or not, also removes the shared-memory segment that DeepSpeed's CPU
communication op created for it (:func:`release_shared_memory`): under the ``deepspeed`` launcher
on one machine each rank creates ``/dev/shm/deepspeed_allreduce_buffer_<uid>_<addr>_<port>_<rank>``
(69 MB) and DeepSpeed never unlinks it, so every launch left 69 MB per rank of RAM behind — 330
segments, 22 GB, after a few hundred test launches on a 24 GB machine, until a run was killed for
memory.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

#: DeepSpeed's name for a rank's shared-memory all-reduce buffer (csrc/cpu/comm/shm.cpp)
DEEPSPEED_SHM_PREFIX = "deepspeed_allreduce_buffer"


def enable_crash_traces() -> None:
    """Print every thread's Python stack to stderr if the process dies of a fatal signal
    (SIGSEGV, SIGABRT, …) — the launcher's log then says where a rank was, not only its exit code."""
    if not faulthandler.is_enabled():
        try:
            faulthandler.enable(file=sys.__stderr__ or sys.stderr, all_threads=True)
        except (AttributeError, ValueError, OSError):  # no usable stderr (a closed or unnamed stream)
            pass


def leave_process_group() -> bool:
    """Under a launcher, after a successful run: wait for every rank, then close every process
    group, so that no rank exits while another still talks to it. Returns whether there was one."""
    torch_dist = sys.modules.get("torch.distributed")
    if torch_dist is None or not torch_dist.is_available() or not torch_dist.is_initialized():
        return False
    try:
        torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()
    return True


def deepspeed_shm_name(env: dict[str, str] | None = None) -> str | None:
    """The shared-memory segment DeepSpeed's CPU communication op creates for this rank (None
    when it creates none: not under the ``deepspeed`` launcher, which sets LOCAL_SIZE, or ranks
    spread over several machines)."""
    env = os.environ if env is None else env
    size, local = env.get("WORLD_SIZE", ""), env.get("LOCAL_SIZE", "")
    if not (size.isdigit() and local.isdigit() and int(size) >= 1 and size == local) or not env.get("RANK", "").isdigit():
        return None
    return f"{DEEPSPEED_SHM_PREFIX}_{os.getuid()}_{env.get('MASTER_ADDR', '')}_{env.get('MASTER_PORT', '')}_{env['RANK']}"


def release_shared_memory(shm_dir: str | os.PathLike = "/dev/shm", env: dict[str, str] | None = None) -> bool:
    """Remove this rank's DeepSpeed shared-memory segment (see the module docstring) once no
    rank needs it; the other ranks keep their mappings. ``env``: another rank's environment
    (default this process's). Returns whether one was removed."""
    name = deepspeed_shm_name(env)
    if name is None:
        return False
    try:
        (Path(shm_dir) / name).unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:  # never fail a finished run over it; say what is left
        print(f"note: could not remove {Path(shm_dir) / name} ({exc.strerror}); delete it to free its memory",
              file=sys.stderr)
        return False
    return True


def release_launch_shared_memory(env: dict[str, str], nprocs: int, shm_dir: str | os.PathLike = "/dev/shm") -> int:
    """After a one-machine ``deepspeed`` launch with ``env`` (its MASTER_ADDR/MASTER_PORT) and
    ``nprocs`` ranks ended, however it ended: remove the segments of ranks that could not
    (killed by the launcher when another rank failed). Returns how many were left."""
    n = str(nprocs)
    return sum(release_shared_memory(shm_dir, {**env, "WORLD_SIZE": n, "LOCAL_SIZE": n, "RANK": str(rank)})
               for rank in range(nprocs))


def run_rank(main: Callable[[], int]) -> NoReturn:
    """Run a training entry point's ``main`` and end the process (:func:`exit_rank`); an
    exception escapes as usual (a traceback), after this rank's shared memory is released."""
    enable_crash_traces()
    try:
        rc = main()
    except BaseException:
        release_shared_memory()
        raise
    exit_rank(rc)


def exit_rank(rc: int) -> NoReturn:
    """End a training process with ``rc``. A run that used ``torch.distributed`` and succeeded
    leaves its process group, flushes its streams and log handlers, and exits at once
    (``os._exit``); any other ends as usual (``sys.exit``). Either way this rank's DeepSpeed
    shared memory is released."""
    if rc != 0 or "torch.distributed" not in sys.modules or not leave_process_group():
        release_shared_memory()
        sys.exit(rc)
    release_shared_memory()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    os._exit(rc)
