"""One place that keeps libraries' own chatter out of a command's or a notebook's output: what
the user sees is what the project prints (its lines, a training run's progress bar and metrics),
and an error stays one line. ``--verbose`` on a stage command skips it."""

from __future__ import annotations

import logging
import os
import sys
import warnings

#: the libraries whose FutureWarning / DeprecationWarning / UserWarning notices are not shown
NOISY_MODULES = r"(transformers|torch|peft|datasets|deepspeed|accelerate)\b.*"


def quiet_library_notices() -> None:
    """transformers and datasets log errors only and draw no bars of their own (weight loading
    and writing, dataset writing; a Trainer's progress bar is the run's own and stays);
    bitsandbytes (imported by PEFT) does not announce that an optional CPU kernel package is
    absent; DeepSpeed does not warn that it found no GPU (on a machine without CUDA the CPU
    accelerator is named before DeepSpeed is imported, as the launcher does for its workers);
    the deprecation notices of :data:`NOISY_MODULES` are not printed. Idempotent."""
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - a dependency
        pass
    try:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - a dependency
        pass
    if "deepspeed" not in sys.modules and "DS_ACCELERATOR" not in os.environ:
        import torch

        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=NOISY_MODULES)
