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
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
from typing import NoReturn


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


def exit_rank(rc: int) -> NoReturn:
    """End a training process with ``rc``. A run that used ``torch.distributed`` and succeeded
    leaves its process group, flushes its streams and log handlers, and exits at once
    (``os._exit``); any other ends as usual (``sys.exit``)."""
    if rc != 0 or "torch.distributed" not in sys.modules or not leave_process_group():
        sys.exit(rc)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    os._exit(rc)
