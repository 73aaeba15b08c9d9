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
    :class:`~knowlm_utils.train.config.LoraSection`); ``modules_to_save`` train in full."""
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.targets), modules_to_save=list(modules_to_save),
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


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


__all__ = ["STAGES", "EMBEDDING_MODULES", "freeze_all_but_embeddings", "wrap_lora", "apply_stage",
           "trainable_parameter_count", "merge_lora"]
