"""Worker processes of the data stages (corpus filters, tokenizing/chunking): one place that
bounds how many start and makes them end with the process that started them.

* :func:`effective_workers` — more workers than CPUs only slow a stage down (its output is the
  same for any number), so a request above the CPU count is lowered to it and said so, unless
  ``allow_oversubscribe`` is set.
* :func:`process_pool` — a ``spawn`` pool whose workers get ``SIGTERM`` when their parent dies
  (Linux ``PR_SET_PDEATHSIG``), so killing a run never leaves orphans behind.

Beyond one machine, run a stage per shard under a cluster scheduler (see the cluster-example
configs); this is only the local pool.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from typing import Any, Callable, Sequence

PR_SET_PDEATHSIG = 1


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return max(1, os.cpu_count() or 1)


def effective_workers(requested: int, allow_oversubscribe: bool = False, log: Callable[[str], Any] | None = print,
                      what: str = "workers") -> int:
    """``requested`` bounded by :func:`cpu_count` (unless ``allow_oversubscribe``), with one
    line through ``log`` when it was lowered."""
    if requested < 1:
        raise ValueError(f"{what}: must be >= 1, got {requested}")
    limit = cpu_count()
    if requested <= limit or allow_oversubscribe:
        return requested
    if log is not None:
        log(f"{what}: {requested} requested but {limit} CPU(s) available: using {limit} (the output is the same; "
            "set allow_oversubscribe: true to start more)")
    return limit


def die_with_parent() -> None:
    """In a child process: ask the kernel to send ``SIGTERM`` when the parent exits (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass
        if os.getppid() == 1:  # the parent is already gone
            os._exit(1)


def _init(initializer: Callable[..., Any] | None, initargs: Sequence[Any]) -> None:
    die_with_parent()
    if initializer is not None:
        initializer(*initargs)


def process_pool(processes: int, initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = ()):
    """A ``spawn`` ``multiprocessing.Pool`` whose workers die with this process."""
    return multiprocessing.get_context("spawn").Pool(processes, _init, (initializer, tuple(initargs)))


__all__ = ["cpu_count", "effective_workers", "die_with_parent", "process_pool"]
