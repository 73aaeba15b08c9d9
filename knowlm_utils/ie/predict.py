"""Answers of a causal LM to IE instruction records (stage 08): batched generation for
:mod:`knowlm_utils.ie.evaluate`.

* :func:`generate_answers` — prompts → the text generated after each prompt, in batches with LEFT
  padding (every prompt then ends at the same position, so the new tokens of a batch start in one
  column). Greedy by default; :data:`DECODING` holds the presets ``greedy`` and ``beam`` (KnowLM's
  README recommends beam search or a low temperature for IE, since sampling makes extractions
  unstable). A ``temperature`` > 0 samples with it.
* :func:`predict_records` — records → rows ``{id, prompt, generation, answer}`` through a *prompt
  builder*: any object with ``prompt(record) -> str`` and ``response(record, generated) -> str``
  (:class:`PromptBuilder`; stage 07's ``knowlm_utils.sft.prompter.PromptSet`` is one) or a plain
  function ``record -> prompt`` (the answer is then the generated text, stripped).

Tokenizers: a transformers tokenizer (its ``bos`` is added as its settings say) or a SentencePiece
processor / ``.model`` file (``<s>`` put in front by id), both through :class:`knowlm_utils.generation.Codec`.
Padding is done here, on the ids: the tokenizer object is never changed (its ``padding_side`` and
``pad_token`` stay as they were). The pad id is the tokenizer's pad id, else ``</s>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from ..generation import Codec

#: decoding presets: keyword arguments of :func:`generate_answers`
DECODING: dict[str, dict[str, Any]] = {
    "greedy": {"num_beams": 1, "temperature": None},
    "beam": {"num_beams": 4, "temperature": None},
}


@runtime_checkable
class PromptBuilder(Protocol):
    """What turns a record into the model's prompt and the model's generation into the answer."""

    def prompt(self, record: Mapping[str, Any]) -> str: ...

    def response(self, record: Mapping[str, Any], generated: str) -> str: ...


@dataclass(frozen=True)
class FunctionPrompter:
    """A :class:`PromptBuilder` from a function ``record -> prompt``; the answer is the stripped
    generation."""

    fn: Callable[[Mapping[str, Any]], str]

    def prompt(self, record: Mapping[str, Any]) -> str:
        return self.fn(record)

    def response(self, record: Mapping[str, Any], generated: str) -> str:
        return generated.strip()


def as_prompter(obj: Any) -> PromptBuilder:
    """``obj`` itself when it has ``prompt`` and ``response``, a :class:`FunctionPrompter` for a function."""
    if callable(getattr(obj, "prompt", None)) and callable(getattr(obj, "response", None)):
        return obj
    if callable(obj):
        return FunctionPrompter(obj)
    raise TypeError(f"a prompt builder needs prompt(record) and response(record, generated) methods, "
                    f"not {type(obj).__name__}")


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 128,
                     batch_size: int = 8, num_beams: int = 1, temperature: float | None = None,
                     progress: bool = True, seed: int | None = 0, segmentation: str | None = None,
                     constraints: Sequence[Any] | None = None) -> list[str]:
    """The text each prompt's continuation adds (the prompt's tokens are not decoded; special
    tokens skipped; generation stops at ``</s>``), in the order of ``prompts``. ``segmentation``:
    how prompts are encoded (:class:`~knowlm_utils.generation.Codec`; None: the tokenizer's own).

    Batches of ``batch_size`` prompts (sorted by length so that a batch pads little), padded on the
    LEFT with an attention mask. Greedy when ``temperature`` is None or 0 (``num_beams`` > 1: beam
    search); a positive ``temperature`` samples (seeded with ``seed`` first, None: leave the RNG
    alone). ``progress``: a tqdm bar over batches. ``constraints``: one per prompt, None or an object
    with ``allowed(generated_ids) -> ids`` (:class:`~knowlm_utils.ie.constrained.AnswerConstraint`);
    each step of a constrained prompt may only pick among those ids (Hugging Face's
    ``prefix_allowed_tokens_fn``), every step of the others among all ids.
    """
    import torch
    from tqdm.auto import tqdm

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if temperature is not None and temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    prompts = list(prompts)
    if constraints is not None and len(constraints) != len(prompts):
        raise ValueError(f"constraints: {len(constraints)} for {len(prompts)} prompts")
    codec = Codec(tokenizer, segmentation)
    encoded = [codec.encode(p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    sampling = temperature is not None and temperature > 0
    options: dict[str, Any] = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, eos_token_id=codec.eos,
                                   pad_token_id=codec.pad, do_sample=sampling)
    if sampling:
        options.update(temperature=float(temperature))
    if sampling and seed is not None:
        torch.manual_seed(seed)
    device = getattr(model, "device", torch.device("cpu"))
    answers: list[str] = [""] * len(prompts)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), codec.pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            seq = encoded[i]
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        extra = {}
        if constraints is not None and any(constraints[i] is not None for i in batch):
            extra["prefix_allowed_tokens_fn"] = _allowed_fn([constraints[i] for i in batch], width, model)
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **options, **extra)
        for row, i in enumerate(batch):
            answers[i] = codec.decode(out[row, width:].tolist())
    return answers


def _allowed_fn(constraints: Sequence[Any], width: int, model: Any) -> Callable[[int, Any], list[int]]:
    """``prefix_allowed_tokens_fn`` for one batch: row ``b``'s constraint sees the ids after the prompt
    (``width`` columns); a row without one may take any id."""
    everything = list(range(model.get_output_embeddings().weight.shape[0]))

    def allowed(b: int, input_ids: Any) -> list[int]:
        c = constraints[b]
        return everything if c is None else c.allowed(input_ids[width:].tolist())

    return allowed


def predict_records(records: Iterable[Mapping[str, Any]], model: Any, tokenizer: Any, prompter: Any, *,
                    max_new_tokens: int = 128, batch_size: int = 8, decoding: str = "greedy",
                    progress: bool = True, constrained: bool = False) -> list[dict[str, Any]]:
    """Rows ``{"id", "prompt", "generation", "answer", "constrained"}`` for ``records``: the prompt the
    builder made, the raw generated text, the answer the builder read from it (what is scored) and
    whether its decoding was constrained. Prompts are encoded with the builder's ``segmentation``
    when it has one (a run's ``PromptSet``). ``constrained``: IEPile NER/RE records decode under
    their answer grammar (:mod:`knowlm_utils.ie.constrained`: schema keys in order, names that are
    spans of the input, well-formed JSON); other records as usual."""
    if decoding not in DECODING:
        raise ValueError(f"unknown decoding {decoding!r}; allowed: {', '.join(DECODING)}")
    builder = as_prompter(prompter)
    records = list(records)
    prompts = [builder.prompt(r) for r in records]
    constraints = None
    if constrained:
        from .constrained import record_constraints

        constraints = record_constraints(records, tokenizer)
    generated = generate_answers(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                 progress=progress, segmentation=getattr(builder, "segmentation", None),
                                 constraints=constraints, **DECODING[decoding])
    return [{"id": r["id"], "prompt": p, "generation": g, "answer": builder.response(r, g),
             "constrained": constraints is not None and constraints[k] is not None}
            for k, (r, p, g) in enumerate(zip(records, prompts, generated))]


__all__ = ["DECODING", "PromptBuilder", "FunctionPrompter", "as_prompter", "generate_answers", "predict_records"]
