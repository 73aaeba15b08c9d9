"""A real LlamaForCausalLM whose next token is chosen by a script (generation and serving tests).

The attention and MLP outputs are zeroed, so the residual stream is the current token's
embedding; each script token gets its own embedding direction and the LM head maps direction j
to script token j+1 (any other token, e.g. the prompt's last, to the first). Greedy decoding then
writes the script, exactly and deterministically, through the whole ``transformers`` generation
stack (KV cache, logits processors, stopping criteria, beam search)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def scripted_llama(tokenizer_path: str | Path, script: Sequence[int], loop: bool = True, max_positions: int = 2048,
                   strength: float = 1.0):
    """The micro LLaMA writing ``script`` (token ids, all different) after any prompt that does not
    end with one of them; ``loop``: start again after the last (never ending unless a script
    token is ``</s>``). ``strength``: the winning logit is ``strength·sqrt(hidden)``, the others 0."""
    import torch

    from knowlm_utils.modeling import build_model, model_config

    model = build_model(model_config("micro", tokenizer_path, max_position_embeddings=max_positions), seed=0).eval()
    script = list(script)
    hidden = model.config.hidden_size
    assert len(set(script)) == len(script) and len(script) < hidden
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb.zero_()
        emb[:, 0] = 1.0
        for j, tok in enumerate(script):
            emb[tok].zero_()
            emb[tok, j + 1] = 1.0
        model.model.norm.weight.fill_(1.0)
        head = model.lm_head.weight
        head.zero_()
        head[script[0], 0] = strength
        for j in range(len(script)):
            if j + 1 < len(script) or loop:
                head[script[(j + 1) % len(script)], j + 1] = strength
    return model


def byte_ids(sp, text: str) -> list[int]:
    """The byte-fallback token ids spelling ``text``'s UTF-8 bytes (``<0xE5>`` …)."""
    return [sp.piece_to_id(f"<0x{b:02X}>") for b in text.encode("utf-8")]
