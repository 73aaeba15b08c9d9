"""Checkpoints and the final model of a training run.

* ``OUTPUT/checkpoint-N`` — the Trainer's checkpoints: :func:`latest_checkpoint`,
  :func:`resolve_resume` (``resume_from: latest`` or a path) and :func:`checkpoint_step`;
* ``OUTPUT/final`` — :func:`save_final`: weights (safetensors; a LoRA run is merged into a plain
  model, its adapter kept in ``final/adapter``) plus the tokenizer files, so
  ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load it; written
  atomically.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..fileio import read_json, replace_dir

FINAL_DIR = "final"
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The ``checkpoint-N`` folder with the largest N that holds a trainer_state.json."""
    d = Path(output_dir)
    if not d.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in d.iterdir()
             if (m := _CHECKPOINT_RE.match(p.name)) and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def resolve_resume(config, output_dir: Path) -> Path | None:
    """The checkpoint to resume from for ``config.resume_from`` (None: none; ``latest``: the newest
    in ``output_dir``, None if there is none yet; else a path, made absolute by ``config.path``)."""
    if config.resume_from is None:
        return None
    if config.resume_from == "latest":
        return latest_checkpoint(output_dir)
    path = config.path(config.resume_from)
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"resume_from: {path} is not a Trainer checkpoint (no trainer_state.json)")
    return path


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a Trainer checkpoint was written at."""
    return int(read_json(checkpoint / "trainer_state.json")["global_step"])


def copy_tokenizer_files(tokenizer_dir: Path, out_dir: Path) -> None:
    """Copy the tokenizer files that exist (:data:`TOKENIZER_FILES`) next to a saved model."""
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, out_dir / name)


def save_final(trainer, output_dir: Path, tokenizer_dir: Path, lora_base: Path | None = None) -> Path:
    """Write OUTPUT/final atomically: save into a temp folder (every rank takes part — ZeRO-3
    gathers the weights), then rank 0 adds the tokenizer files (and, for a LoRA model, the
    adapter merged into ``lora_base``, the model it was trained on) and renames it into place."""
    final = output_dir / FINAL_DIR
    tmp = output_dir / f".{FINAL_DIR}.tmp"
    if trainer.is_world_process_zero() and tmp.exists():
        shutil.rmtree(tmp)
    trainer.accelerator.wait_for_everyone()
    lora = lora_base is not None
    trainer.save_model(str(tmp / "adapter") if lora else str(tmp))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        if lora:
            from ..modeling import tokenizer_info
            from .lora import merge_lora

            merge_lora(lora_base, tokenizer_info(tokenizer_dir).vocab_size, tmp / "adapter", tmp)
        copy_tokenizer_files(tokenizer_dir, tmp)
        for pickle_file in (tmp / "training_args.bin", tmp / "adapter" / "training_args.bin"):
            pickle_file.unlink(missing_ok=True)  # a pickle; the config is in metrics.json
        replace_dir(tmp, final)
    trainer.accelerator.wait_for_everyone()
    return final


__all__ = ["FINAL_DIR", "TOKENIZER_FILES", "latest_checkpoint", "resolve_resume", "checkpoint_step",
           "copy_tokenizer_files", "save_final"]
