"""Continuing a prompt with a causal LM: the one decoding helper later stages build on (sample
continuations after pretraining, SFT answers, information-extraction evaluation, an HTTP API).

The prompt is encoded with SentencePiece and ``<s>`` is put in front *by id*, as every training
document started (:mod:`knowlm_utils.chunking` adds BOS the same way); ``</s>`` ends a
continuation. Decoding is greedy (deterministic) unless ``do_sample=True``.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from . import spm


class Continuation(NamedTuple):
    """What the model wrote after a prompt (the prompt itself is not part of ``text``)."""

    text: str          # the new tokens decoded, ``</s>`` left out
    finished: bool     # the model emitted ``</s>`` (it ended the document) before max_new_tokens
    new_tokens: int    # tokens generated, the ``</s>`` included


def load_causal_lm(model_dir: str | os.PathLike, dtype: Any = "float32"):
    """``AutoModelForCausalLM`` from a Hugging Face model folder (e.g. a run's ``final/``), in
    eval mode; ``dtype`` is a torch dtype or its name. Safetensors only (never a pickle), local
    files only, no remote code."""
    import torch
    from transformers import AutoModelForCausalLM

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, use_safetensors=True, local_files_only=True,
                                                trust_remote_code=False).eval()


def generate_text(model: Any, tokenizer: Any, prompt: str, *, max_new_tokens: int = 64, do_sample: bool = False,
                  temperature: float = 1.0, top_k: int = 50, seed: int | None = 0) -> Continuation:
    """Continue ``prompt``; returns a :class:`Continuation` ``(text, finished, new_tokens)``.

    ``model``: a causal LM (``LlamaForCausalLM`` …) or a model folder (loaded with
    :func:`load_causal_lm`: load once and pass the model when generating many times).
    ``tokenizer``: a ``SentencePieceProcessor``, a tokenizer folder or a ``.model`` file.
    Greedy decoding by default; ``do_sample=True`` samples with ``temperature`` among the
    ``top_k`` most likely tokens. ``seed`` (``None``: leave it alone) seeds torch's global RNG
    right before generating, so a sampled continuation is reproducible.
    """
    import torch

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if isinstance(model, (str, os.PathLike)):
        model = load_causal_lm(model)
    sp = spm.load_processor(tokenizer)
    eos = sp.eos_id()
    if sp.bos_id() < 0 or eos < 0:
        raise ValueError("generate_text needs a tokenizer with <s> and </s> ids (BOS starts the prompt, EOS ends "
                         "a continuation)")
    ids = torch.tensor([[sp.bos_id(), *sp.encode(prompt)]], device=model.device)
    sampling = dict(do_sample=True, temperature=temperature, top_k=top_k) if do_sample else dict(do_sample=False)
    if seed is not None:
        torch.manual_seed(seed)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         eos_token_id=eos, pad_token_id=eos, **sampling)[0, ids.shape[1]:].tolist()
    finished = bool(out) and out[-1] == eos
    return Continuation(sp.decode([t for t in out if t != eos]), finished, len(out))


__all__ = ["Continuation", "generate_text", "load_causal_lm"]
