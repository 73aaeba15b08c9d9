"""Which parameters train: the whole model, only the embeddings, or PEFT LoRA adapters (plus
full embeddings), as in Chinese-LLaMA-Alpaca's two-stage training; and merging a LoRA adapter
back into a plain Hugging Face model.

``peft`` is imported only when LoRA is used.
"""

from __future__ import annotations

from pathlib import Path

STAGES = ("full", "embeddings", "lora+embeddings")
EMBEDDING_MODULES = ("embed_tokens", "lm_head")


def freeze_all_but_embeddings(model) -> None:
    """Only ``embed_tokens`` and ``lm_head`` keep ``requires_grad`` (new vocabulary rows learn to
    fit a frozen transformer)."""
    for name, p in model.named_parameters():
        p.requires_grad = any(m in name.split(".") for m in EMBEDDING_MODULES)


def wrap_lora(model, lora, modules_to_save=EMBEDDING_MODULES):
    """``model`` wrapped by PEFT with LoRA adapters as configured by ``lora`` (a
    :class:`~knowlm_utils.train.config.LoraSection`); ``modules_to_save`` train in full. With
    ``lora.integer_mask_dropout`` the adapters' dropout draws its CPU masks as integers
    (:mod:`~knowlm_utils.train.lora_dropout`)."""
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.targets), modules_to_save=list(modules_to_save),
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    if lora.integer_mask_dropout:
        from .lora_dropout import use_integer_mask_dropout

        use_integer_mask_dropout(model)
    return model


def apply_stage(model, stage: str, lora):
    """Freeze/wrap ``model`` for the training ``stage`` (one of :data:`STAGES`); ``lora``: the
    LoRA settings of stage ``lora+embeddings``. Returns the model to train and a short
    description of what trains."""
    if stage == "full":
        return model, "all parameters"
    if stage == "embeddings":
        freeze_all_but_embeddings(model)
        return model, "embed_tokens + lm_head only (stage 1: the new vocabulary learns; the transformer is frozen)"
    if stage != "lora+embeddings":
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    return wrap_lora(model, lora), (f"LoRA r={lora.r} on {list(lora.targets)} + full "
                                    "embed_tokens/lm_head (stage 2)")


def read_adapter_config(adapter_dir: str | Path) -> dict:
    """``adapter_config.json`` of a PEFT LoRA adapter folder (one-line errors when it is not one)."""
    import json

    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json (a PEFT adapter folder: a run's final/adapter "
                                "or one of its checkpoint-N)")
    try:
        cfg = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("peft_type") != "LORA":
        kind = cfg.get("peft_type") if isinstance(cfg, dict) else type(cfg).__name__
        raise ValueError(f"{path}: not a LoRA adapter (peft_type {kind!r})")
    return cfg


def load_adapter_weights(model, adapter_dir: str | Path, lora, modules_to_save=EMBEDDING_MODULES) -> int:
    """Start the LoRA ``model`` (from :func:`wrap_lora` with ``lora``/``modules_to_save``) from an
    adapter trained before: its ``adapter_model.safetensors`` (never a pickle) is checked against
    the model — the same rank, alpha, target and fully trained modules, every tensor present with
    its shape — and copied in. The optimizer and schedule are not part of an adapter: training
    goes on with a fresh AdamW and a new warm-up/cosine (unlike ``resume_from``, which continues
    one run). Returns the number of tensors loaded; a mismatch raises a one-line ``ValueError``
    naming the key or tensor."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    cfg = read_adapter_config(adapter_dir)
    want = {"r": lora.r, "lora_alpha": lora.alpha, "target_modules": sorted(lora.targets),
            "modules_to_save": sorted(modules_to_save)}
    got = {"r": cfg.get("r"), "lora_alpha": cfg.get("lora_alpha"),
           "target_modules": sorted(cfg.get("target_modules") or []),
           "modules_to_save": sorted(cfg.get("modules_to_save") or [])}
    for key in want:
        if want[key] != got[key]:
            raise ValueError(f"{adapter_dir / 'adapter_config.json'}: {key} {got[key]!r}, but this run's model has "
                             f"{want[key]!r}")
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        found = sorted(p.name for p in adapter_dir.glob("adapter_model.*"))
        raise FileNotFoundError(f"{adapter_dir}: no adapter_model.safetensors" +
                                (f" (found {', '.join(found)}: pickled weights are not loaded)" if found else ""))
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{weights}: not a readable safetensors file ({e})") from None
    expected = get_peft_model_state_dict(model)  # the keys PEFT writes (modules_to_save under their own names)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"{weights}: {len(missing)} of the model's {len(expected)} adapter tensors missing, e.g. "
                         f"{missing[0]}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ValueError(f"{weights}: {len(extra)} tensors this run's model does not have, e.g. {extra[0]}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ValueError(f"{weights}: tensor {key} has shape {tuple(state[key].shape)}, the model's "
                             f"{tuple(tensor.shape)} (another base model or vocabulary?)")
    result = set_peft_model_state_dict(model, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ValueError(f"{weights}: PEFT did not place {len(unexpected)} tensors, e.g. {unexpected[0]}")
    return len(state)


def trainable_parameter_count(model) -> tuple[int, int]:
    """(trainable, total) parameters; ZeRO-3 partitioned tensors report their full size in ds_numel."""
    def size(p) -> int:
        return int(getattr(p, "ds_numel", p.numel()))

    return sum(size(p) for p in model.parameters() if p.requires_grad), sum(size(p) for p in model.parameters())


def merge_lora(base_dir: Path, vocab_size: int, adapter_dir: Path, out_dir: Path) -> None:
    """Base model (``base_dir``, embeddings grown to ``vocab_size`` with mean init like in
    training) + adapter → a plain merged model in ``out_dir``. Loads in fp32 on the CPU (for 13B
    that is ~52 GB of host memory)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, use_safetensors=True,
                                                local_files_only=True, trust_remote_code=False)
    if vocab_size > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(vocab_size, mean_resizing=True)
    merged = PeftModel.from_pretrained(base, str(adapter_dir), use_safetensors=True,
                                       local_files_only=True).merge_and_unload()
    merged.save_pretrained(str(out_dir), safe_serialization=True)


__all__ = ["STAGES", "EMBEDDING_MODULES", "freeze_all_but_embeddings", "wrap_lora", "read_adapter_config",
           "load_adapter_weights", "apply_stage",
           "trainable_parameter_count", "merge_lora"]
