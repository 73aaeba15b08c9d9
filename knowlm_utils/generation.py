"""Text generation with a causal LM: the one decoding path behind notebook 05's sample
continuations, ``knowlm generate`` (:mod:`knowlm_utils.generate_cli`: single prompts, case files,
``--interactive``), ``knowlm serve`` (:mod:`knowlm_utils.serve`) and a notebook playground.

* **Models**: a base model, a base model plus a PEFT (LoRA) adapter, or a merged model, from local
  safetensors only (:func:`load_model`); ``load_in_8bit=True`` quantises the linear layers with
  bitsandbytes (LLM.int8(); bitsandbytes 0.50 runs it on CPU too).
* **Tokenizers** (:class:`Codec`): a SentencePiece processor / ``.model`` file (``<s>`` put in front
  *by id*, as every training document started) or a transformers tokenizer (BOS as its settings
  say). ``</s>`` ends a generation.
* **Parameters** (:class:`GenerationParams`, validated with one-line ``ValueError`` messages) and
  **presets** (:data:`PRESETS`): ``ie`` (greedy) and ``ie-beam`` (4 beams) for information
  extraction, ``creative`` (sampling with temperature, top-k and top-p), as KnowLM's README advises
  (creative tasks: higher top-k/top-p/temperature; IE: beam search or low values). Sampling
  parameters act only when ``do_sample`` is on: KnowLM's scripts never set ``do_sample``, so their
  temperature and top-p were silently ignored; here a greedy run that is given a temperature, top-k
  or top-p says so with a :class:`GenerationWarning` (and in :attr:`Generation.warnings`).
* **Stopping**: at ``</s>``, at any of ``stop`` (strings; the text ends right before the first
  one), at ``max_new_tokens`` (the model's context length caps it, with a warning) or when a
  ``cancel`` event is set. :attr:`Generation.finish_reason` says which: ``eos``, ``stop``,
  ``length`` or ``cancelled``; a *finished* output is ``eos`` or ``stop``.
* **Streaming**: ``on_text(chunk)`` receives the text as it grows (:func:`generate`), or iterate
  over :func:`stream`. Chunks never end inside a multi-byte character (a byte-fallback tokenizer
  spells a rare Chinese character as 3 byte tokens: the chunk waits for the third), never hold the
  start of a stop string, and join to exactly :attr:`Generation.text`. When the token budget runs
  out in the middle of a character, the incomplete bytes are dropped, so an output never ends with
  the replacement character U+FFFD (KnowLM's FAQ on the "�" at the end of truncated output).

Greedy decoding and beam search are deterministic. Sampling is seeded (``seed``, default 0) right
before each generation, so it is reproducible on the same machine and library versions; other
hardware or kernels may still change the draws (KnowLM's FAQ on nondeterminism).
:class:`Generator` bundles a model, its tokenizer and its prompt templates (stage 07's
``PromptSet``) behind a lock, for the CLI, the HTTP server and a widget UI.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from . import spm
from .config import Section, field, from_dict

REPLACEMENT = "\ufffd"
FINISH_REASONS = ("eos", "stop", "length", "cancelled")
TEMPLATE_AUTO, TEMPLATE_NONE = "auto", "none"


class GenerationWarning(UserWarning):
    """A setting had no effect (a sampling parameter while greedy) or was reduced (the token budget)."""


# ==================================================================================== results ==
class Continuation(NamedTuple):
    """What the model wrote after a prompt (the prompt itself is not part of ``text``)."""

    text: str          # the new tokens decoded, ``</s>`` left out
    finished: bool     # the model emitted ``</s>`` (it ended the document) before max_new_tokens
    new_tokens: int    # tokens generated, the ``</s>`` included


@dataclasses.dataclass(frozen=True)
class Generation:
    """One generation: the new text and why it ended."""

    text: str                      # the new text (decoded new tokens, cut before a stop string)
    finish_reason: str             # eos | stop | length | cancelled
    new_tokens: int                # tokens generated (an ending </s> included)
    prompt_tokens: int             # tokens of the prompt (BOS included)
    seconds: float                 # wall time of the generation
    warnings: tuple[str, ...] = ()  # settings that had no effect or were reduced

    @property
    def finished(self) -> bool:
        """The model ended the text itself (``</s>``) or a stop string did; not cut by the budget."""
        return self.finish_reason in ("eos", "stop")

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "warnings": list(self.warnings), "finished": self.finished}


# ================================================================================= parameters ==
_SAMPLING_KEYS = ("temperature", "top_k", "top_p")


@dataclasses.dataclass
class GenerationParams(Section):
    """Decoding settings of one generation (checked on construction: one-line ``ValueError``)."""

    max_new_tokens: int = field(256, ge=1, help="most tokens to generate (the model's context length caps it)")
    min_new_tokens: int = field(0, ge=0, help="</s> is forbidden before this many new tokens (benchmarks)")
    do_sample: bool = field(False, help="sample the next token (temperature/top_k/top_p act only then); "
                                        "false: greedy or beam search")
    temperature: float | None = field(None, gt=0, le=100, help="sampling temperature (null: 1.0 when sampling)")
    top_k: int | None = field(None, ge=0, help="sample among the k most likely tokens (0 or null: no limit)")
    top_p: float | None = field(None, gt=0, le=1, help="nucleus sampling: the smallest set with this much "
                                                       "probability (null: 1.0)")
    num_beams: int = field(1, ge=1, le=16, help="beam search width (greedy decoding only; no streaming "
                                                "token by token)")
    repetition_penalty: float = field(1.0, gt=0, le=10, help="CTRL's repetition penalty on tokens already "
                                                             "seen (1.0: none)")
    presence_penalty: float = field(0.0, ge=-2, le=2, help="OpenAI-style: subtracted once from the logit of "
                                                           "every token already generated")
    frequency_penalty: float = field(0.0, ge=-2, le=2, help="OpenAI-style: subtracted per earlier occurrence "
                                                            "of a generated token")
    stop: list[str] = field(default_factory=list, help="stop strings: the text ends before the first one found")
    seed: int | None = field(0, ge=0, help="torch seed set right before sampling (null: leave the RNG alone)")
    use_cache: bool = field(True, help="reuse past keys/values (the KV cache); false recomputes the whole "
                                       "sequence every step")

    def validate(self) -> None:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) must be <= max_new_tokens "
                             f"({self.max_new_tokens})")
        if self.do_sample and self.num_beams > 1:
            raise ValueError(f"num_beams={self.num_beams} with do_sample: beam search is greedy here; "
                             "choose sampling (num_beams=1) or beams (do_sample=false)")
        if len(self.stop) > 16:
            raise ValueError(f"stop: at most 16 stop strings, got {len(self.stop)}")
        for i, s in enumerate(self.stop):
            if not s or len(s) > 256:
                raise ValueError(f"stop[{i}]: a stop string must have 1 to 256 characters, got {len(s)}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None = None, where: str = "parameters",
                     base: "GenerationParams | str | None" = None) -> "GenerationParams":
        """``base`` (params or a preset name; default: the defaults) with the keys of ``data``
        changed; ``data`` may name a ``preset`` that replaces ``base`` first. Unknown keys, wrong
        types and values out of range raise a one-line ``ValueError`` naming ``where`` and the key."""
        data = dict(data or {})
        if "preset" in data:
            base = data.pop("preset")
            if not isinstance(base, str):
                raise ValueError(f"{where}: preset: expected a preset name ({', '.join(PRESETS)}), got {base!r}")
        start = preset(base) if isinstance(base, str) else (base or cls())
        merged = {**start.to_dict(), **data}
        if isinstance(merged.get("stop"), str):
            merged["stop"] = [merged["stop"]]
        return from_dict(cls, merged, where=where)

    def replace(self, **changes: Any) -> "GenerationParams":
        """A validated copy with ``changes`` (``preset=NAME`` starts from that preset)."""
        return GenerationParams.from_mapping(changes, where="parameters", base=self)

    def ignored(self) -> list[str]:
        """Messages for the settings that have no effect: sampling parameters while greedy."""
        if self.do_sample:
            return []
        set_ = [f"{k}={getattr(self, k)}" for k in _SAMPLING_KEYS if getattr(self, k) is not None]
        if not set_:
            return []
        how = "beam search" if self.num_beams > 1 else "greedy decoding"
        return [f"{', '.join(set_)} ignored: {how} (do_sample is off); turn sampling on (do_sample=true, "
                "preset creative, or a temperature > 0 in the HTTP API) for them to act"]

    def summary(self) -> str:
        """``greedy``, ``beams=4``, ``sample(t=0.8, top_k=50, top_p=0.95)`` plus what differs from the defaults."""
        if self.do_sample:
            mode = (f"sample(t={self.temperature or 1.0:g}, top_k={self.top_k or 0}, "
                    f"top_p={1.0 if self.top_p is None else self.top_p:g}, seed={self.seed})")
        else:
            mode = f"beams={self.num_beams}" if self.num_beams > 1 else "greedy"
        extra = [f"{k}={getattr(self, k)}" for k in ("repetition_penalty", "presence_penalty", "frequency_penalty")
                 if getattr(self, k) != GenerationParams.__dataclass_fields__[k].default]
        extra += [f"stop={self.stop!r}"] if self.stop else []
        extra += [] if self.use_cache else ["no KV cache"]
        return ", ".join([mode, f"max_new_tokens={self.max_new_tokens}", *extra])

    def hf_kwargs(self, max_new_tokens: int, codec: "Codec") -> dict[str, Any]:
        """Keyword arguments of ``model.generate`` (every decoding choice explicit, so a model's
        saved ``generation_config`` cannot change them)."""
        kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=self.do_sample, num_beams=self.num_beams,
                                  use_cache=self.use_cache, repetition_penalty=self.repetition_penalty,
                                  eos_token_id=codec.eos, pad_token_id=codec.pad)
        if self.min_new_tokens:
            kw["min_new_tokens"] = min(self.min_new_tokens, max_new_tokens)
        if self.do_sample:
            kw.update(temperature=self.temperature or 1.0, top_k=self.top_k or 0,
                      top_p=1.0 if self.top_p is None else self.top_p)
        return kw


#: decoding presets (KnowLM: IE wants beam search or low temperature; creative writing higher values)
PRESETS: dict[str, GenerationParams] = {
    "ie": GenerationParams(),
    "ie-beam": GenerationParams(num_beams=4),
    "creative": GenerationParams(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1),
}
PRESET_HELP = {
    "ie": "greedy decoding: deterministic, the most likely token each step (extraction, short answers)",
    "ie-beam": "beam search with 4 beams: the likeliest whole answer among 4 kept hypotheses (slower)",
    "creative": "sampling: temperature 0.8, top_k 50, top_p 0.95, repetition_penalty 1.1 (seeded)",
}


def preset(name: str) -> GenerationParams:
    """A copy of preset ``name``; an unknown name raises a one-line ``ValueError``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], stop=list(PRESETS[name].stop))


def resolve_params(params: GenerationParams | str | Mapping[str, Any] | None = None,
                   **overrides: Any) -> GenerationParams:
    """Params from params, a preset name or a mapping (``{"preset": ..., "top_p": ...}``), with
    ``overrides`` applied (``None`` values are left out: "not given")."""
    if params is None:
        base = GenerationParams()
    elif isinstance(params, GenerationParams):
        base = params
    elif isinstance(params, str):
        base = preset(params)
    elif isinstance(params, Mapping):
        base = GenerationParams.from_mapping(params)
    else:
        raise TypeError(f"params: expected GenerationParams, a preset name or a mapping, got {type(params).__name__}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return base.replace(**given) if given else base


# ================================================================================= tokenizers ==
class Codec:
    """Encode a prompt to ids (BOS included) and decode new ids, for a SentencePiece processor /
    ``.model`` file / tokenizer folder, or a transformers tokenizer. The tokenizer is never changed.
    ``segmentation``: ``"tokenizer"`` (its own, the default), ``"copy_aligned"`` or ``"characters"`` for a model
    trained with it (:mod:`knowlm_utils.sft.segmentation`; a run's ``PromptSet.segmentation`` says which)."""

    def __init__(self, tokenizer: Any, segmentation: str | None = None):
        from .sft.segmentation import check_segmentation, unit_encoder

        if isinstance(tokenizer, Codec):  # a copy; segmentation None keeps the codec's
            self.__dict__.update(tokenizer.__dict__)
            if segmentation is not None and check_segmentation(segmentation) != self.segmentation:
                self.segmentation = segmentation
                self.aligned = unit_encoder(self.sp if self.sp is not None else self.hf, segmentation)
            return
        self.segmentation = segmentation = check_segmentation(segmentation or "tokenizer")
        if isinstance(tokenizer, (str, bytes)) or hasattr(tokenizer, "__fspath__") or spm.is_processor(tokenizer):
            self.sp, self.hf = spm.load_processor(tokenizer), None
            self.bos, self.eos, pad = self.sp.bos_id(), self.sp.eos_id(), self.sp.pad_id()
            if self.bos < 0 or self.eos < 0:
                raise ValueError("generation needs a tokenizer with <s> and </s> ids (BOS starts the prompt, EOS "
                                 "ends a continuation)")
            self.pad = pad if pad >= 0 else self.eos
            self.special = {i for i in (self.bos, self.eos, pad) if i >= 0}
        else:
            self.sp, self.hf = None, tokenizer
            self.eos = tokenizer.eos_token_id
            if self.eos is None:
                raise ValueError("generation needs a tokenizer with an </s> (eos) token")
            self.bos = tokenizer.bos_token_id
            self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
            self.special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        self.aligned = unit_encoder(self.sp if self.sp is not None else self.hf, segmentation)

    def encode(self, prompt: str) -> list[int]:
        if self.aligned is not None:
            return ([self.bos] if self.bos is not None else []) + self.aligned.encode(prompt)
        if self.sp is not None:
            return [self.bos, *self.sp.encode(prompt)]
        return list(self.hf(prompt)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` up to the first ``</s>``, special tokens left out."""
        ids = list(ids)
        if self.eos in ids:  # a finished sequence is padded after its </s>
            ids = ids[:ids.index(self.eos)]
        if self.sp is not None:
            return self.sp.decode([i for i in ids if i not in self.special])
        return self.hf.decode(ids, skip_special_tokens=True)

    def count(self, text: str) -> int:
        """Tokens of ``text`` as a prompt (BOS included)."""
        return len(self.encode(text))


class IncrementalDecoder:
    """Decode token ids as they arrive into text chunks that join to the decoding of all of them.

    Each step decodes a small window (the ids since the previous chunk's start) and emits what it
    adds, so a SentencePiece leading space is kept and the cost per step stays small. A chunk that
    would end with U+FFFD (a multi-byte character whose byte tokens have not all arrived) waits;
    :meth:`flush` drops an incomplete character at the very end."""

    def __init__(self, codec: Codec):
        self.codec, self.ids, self.prefix, self.read, self.text = codec, [], 0, 0, ""

    def _delta(self, end: int) -> str:
        before = self.codec.decode(self.ids[self.prefix:self.read])
        now = self.codec.decode(self.ids[self.prefix:end])
        if now.startswith(before):
            return now[len(before):]
        return self.codec.decode(self.ids[self.read:end])  # a decoder whose output is not prefix-stable

    def _take(self, delta: str, end: int) -> str:
        self.prefix, self.read = self.read, end
        self.text += delta
        return delta

    def add(self, ids: Iterable[int]) -> str:
        self.ids.extend(ids)
        delta = self._delta(len(self.ids))
        if not delta or delta.endswith(REPLACEMENT):
            return ""
        return self._take(delta, len(self.ids))

    def flush(self) -> str:
        """The rest, without the bytes of a character cut off by the end (at most 3 byte tokens)."""
        end = len(self.ids)
        if end == self.read:
            return ""
        delta = self._delta(end)
        if delta.endswith(REPLACEMENT):
            shorter = [self._delta(cut) for cut in range(end - 1, max(self.read, end - 4) - 1, -1)]
            delta = next((d for d in shorter if not d.endswith(REPLACEMENT)), delta.rstrip(REPLACEMENT))
        return self._take(delta, end)


class StopFilter:
    """Text chunks in, text chunks out, ending before the first stop string; the start of a
    possible stop string is held back until it is known not to be one."""

    def __init__(self, stops: Sequence[str] = ()):
        self.stops = [s for s in stops if s]
        self.longest = max((len(s) for s in self.stops), default=0)
        self.text, self.sent, self.stopped = "", 0, False

    def feed(self, chunk: str) -> str:
        if self.stopped or not chunk:
            return ""
        self.text += chunk
        if not self.stops:
            return self.flush()
        start = max(0, self.sent - self.longest + 1)
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            cut = min(hits)
            self.text, self.stopped = self.text[:cut], True
            return self._send(cut)
        hold = max((k for s in self.stops for k in range(1, min(len(s), len(self.text) + 1))
                    if self.text.endswith(s[:k])), default=0)
        return self._send(len(self.text) - hold)

    def flush(self) -> str:
        return self._send(len(self.text))

    def _send(self, upto: int) -> str:
        out = self.text[self.sent:upto] if upto > self.sent else ""
        self.sent = max(self.sent, upto)
        return out


class _Watcher:
    """A stopping criterion of ``model.generate`` that decodes the new tokens step by step: it
    streams text, ends at a stop string and honours a cancel event."""

    def __init__(self, codec: Codec, stops: Sequence[str], prompt_len: int,
                 on_text: Callable[[str], Any] | None, cancel: threading.Event | None):
        self.codec, self.prompt_len, self.on_text, self.cancel = codec, prompt_len, on_text, cancel
        self.decoder, self.filter = IncrementalDecoder(codec), StopFilter(stops)
        self.seen, self.ended, self.cancelled = 0, False, False

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        done = self.consume(input_ids[0, self.prompt_len:].tolist())
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    def consume(self, new_ids: Sequence[int]) -> bool:
        """Take the ids beyond those seen; True when generation should stop."""
        if not self.ended and not self.filter.stopped:
            fresh = list(new_ids[self.seen:])
            self.seen = len(new_ids)
            if self.codec.eos in fresh:
                fresh, self.ended = fresh[:fresh.index(self.codec.eos)], True
            if fresh:
                self._emit(self.filter.feed(self.decoder.add(fresh)))
        if self.filter.stopped:
            return True
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
        return self.cancelled

    def finish(self, new_ids: Sequence[int]) -> str:
        self.consume(new_ids)
        if not self.filter.stopped:
            self._emit(self.filter.feed(self.decoder.flush()))
            self._emit(self.filter.flush())
        return self.filter.text

    def _emit(self, text: str) -> None:
        if text and self.on_text is not None:
            self.on_text(text)


class _PresenceFrequencyPenalty:
    """OpenAI's penalties: logit -= presence·[count > 0] + frequency·count, counting the tokens
    generated so far (not the prompt's)."""

    def __init__(self, prompt_len: int, presence: float, frequency: float):
        self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        new = input_ids[:, self.prompt_len:]
        if new.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, new, torch.ones_like(new, dtype=scores.dtype))
        return scores - self.presence * (counts > 0).to(scores.dtype) - self.frequency * counts


def context_limit(model: Any) -> int | None:
    """The model's context length (``max_position_embeddings``), None when it does not say."""
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


# ======================================================================================= core ==
def generate(model: Any, tokenizer: Any, prompt: str, params: GenerationParams | str | Mapping[str, Any] | None = None,
             *, on_text: Callable[[str], Any] | None = None, cancel: threading.Event | None = None,
             emit_warnings: bool = True, **overrides: Any) -> Generation:
    """Continue ``prompt`` (raw text: build instruction prompts with :func:`build_prompt`).

    ``params``: :class:`GenerationParams`, a preset name or a mapping; ``overrides`` change single
    parameters (``max_new_tokens=32``). ``on_text(chunk)`` is called with each new piece of text
    (greedy/sampling: token by token; beam search: once at the end). Setting ``cancel`` stops the
    generation after the current token (``finish_reason`` ``cancelled``; beam search runs to its end).
    Settings without effect are reported as :class:`GenerationWarning` (unless ``emit_warnings``
    is false) and always in :attr:`Generation.warnings`.
    ``model``: a causal LM or a model folder; ``tokenizer``: see :class:`Codec`.
    Not thread-safe on one model (seeding uses torch's global RNG): :class:`Generator` serialises.
    """
    import torch

    p = resolve_params(params, **overrides)
    if not isinstance(prompt, str):
        raise ValueError(f"prompt: expected a string, got {type(prompt).__name__}")
    if isinstance(model, (str, os.PathLike)):
        model = load_causal_lm(model)
    codec = Codec(tokenizer)
    ids = codec.encode(prompt)
    notes = p.ignored()
    max_new, limit = p.max_new_tokens, context_limit(model)
    if limit is not None:
        if len(ids) >= limit:
            raise ValueError(f"the prompt is {len(ids)} tokens but the model's context is {limit} positions: "
                             "no room for an answer; shorten the prompt")
        if len(ids) + max_new > limit:
            max_new = limit - len(ids)
            notes.append(f"max_new_tokens {p.max_new_tokens} reduced to {max_new}: the prompt is {len(ids)} tokens "
                         f"and the model's context {limit} positions")
    for note in notes if emit_warnings else ():
        warnings.warn(note, GenerationWarning, stacklevel=2)
    from transformers import LogitsProcessorList, StoppingCriteriaList

    watcher = _Watcher(codec, p.stop, len(ids), on_text, cancel)
    extra: dict[str, Any] = {}
    if p.num_beams == 1:  # beam search: the stop strings are applied to the best beam afterwards
        extra["stopping_criteria"] = StoppingCriteriaList([watcher])
    if p.presence_penalty or p.frequency_penalty:
        extra["logits_processor"] = LogitsProcessorList(
            [_PresenceFrequencyPenalty(len(ids), p.presence_penalty, p.frequency_penalty)])
    device = getattr(model, "device", None) or torch.device("cpu")
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    t0 = time.perf_counter()
    if p.do_sample and p.seed is not None:
        torch.manual_seed(p.seed)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             **p.hf_kwargs(max_new, codec), **extra)
    new = out[0, len(ids):].tolist()
    if codec.eos in new:
        new = new[:new.index(codec.eos) + 1]
    text = watcher.finish(new)
    if watcher.filter.stopped:
        reason = "stop"
    elif new and new[-1] == codec.eos:
        reason = "eos"
    elif watcher.cancelled and len(new) < max_new:
        reason = "cancelled"
    else:
        reason = "length"
    return Generation(text, reason, len(new), len(ids), time.perf_counter() - t0, tuple(notes))


class TextStream:
    """Iterate over the text chunks of one generation running in a background thread (one thread
    per stream, joined when the stream ends or is closed). After the loop, :attr:`result` holds
    the :class:`Generation`; an error in the generation is raised by the iteration.
    ``cancel()`` (or leaving the loop early: ``close()``) stops the generation."""

    _END = object()

    def __init__(self, run: Callable[[Callable[[str], None], threading.Event], Generation]):
        self._queue: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self.result: Generation | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(run,), name="knowlm-stream", daemon=True)
        self._thread.start()

    def _work(self, run) -> None:
        try:
            self.result = run(self._queue.put, self._cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self.error = exc
        finally:
            self._queue.put(self._END)

    def __iter__(self) -> Iterator[str]:
        try:
            while (item := self._queue.get()) is not self._END:
                yield item
        finally:
            self.close()
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self._cancel.set()
        self._thread.join()

    @property
    def text(self) -> str:
        return "" if self.result is None else self.result.text


def stream(model: Any, tokenizer: Any, prompt: str, params: GenerationParams | str | Mapping[str, Any] | None = None,
           **overrides: Any) -> TextStream:
    """:func:`generate` as an iterator of text chunks: ``for chunk in stream(...): print(chunk, end="")``."""
    p = resolve_params(params, **overrides)  # bad parameters fail here, not in the thread
    return TextStream(lambda put, cancel: generate(model, tokenizer, prompt, p, on_text=put, cancel=cancel))


def generate_text(model: Any, tokenizer: Any, prompt: str, *, max_new_tokens: int = 64, do_sample: bool = False,
                  temperature: float = 1.0, top_k: int = 50, seed: int | None = 0) -> Continuation:
    """Continue ``prompt``; returns a :class:`Continuation` ``(text, finished, new_tokens)``.

    ``model``: a causal LM (``LlamaForCausalLM`` …) or a model folder (loaded with
    :func:`load_causal_lm`: load once and pass the model when generating many times).
    ``tokenizer``: a ``SentencePieceProcessor``, a tokenizer folder or a ``.model`` file.
    Greedy decoding by default; ``do_sample=True`` samples with ``temperature`` among the
    ``top_k`` most likely tokens. ``seed`` (``None``: leave it alone) seeds torch's global RNG
    right before generating, so a sampled continuation is reproducible. (:func:`generate` has
    every parameter, stop strings and streaming.)
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    sampling = dict(temperature=temperature, top_k=top_k) if do_sample else {}
    g = generate(model, tokenizer, prompt, GenerationParams(max_new_tokens=max_new_tokens, do_sample=do_sample,
                                                            seed=seed, **sampling))
    return Continuation(g.text, g.finish_reason == "eos", g.new_tokens)


# ==================================================================================== prompts ==
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def detect_language(text: str) -> str:
    """``zh`` when ``text`` holds a CJK character or punctuation, else ``en`` (picks a template)."""
    return "zh" if _CJK.search(text or "") else "en"


def template_names(prompts: Any = None) -> list[str]:
    """The ``template`` values :func:`build_prompt` accepts with these prompt templates."""
    from .sft.prompter import available_templates

    keys = sorted(getattr(prompts, "mapping", {}) or {"zh": 1, "en": 1})
    values = sorted(set(getattr(prompts, "mapping", {}).values()) | set(available_templates()))
    return [TEMPLATE_AUTO, TEMPLATE_NONE, *keys, *[v for v in values if v not in keys]]


def build_prompt(instruction: str, input: str = "", template: str = TEMPLATE_AUTO,  # noqa: A002 - KnowLM's name
                 prompts: Any = None) -> tuple[str, Any]:
    """``(prompt, prompter)`` for an instruction and an optional input, KnowLM's web demo fields.

    ``template``: ``auto`` (the run's template for the text's language, :func:`detect_language`),
    ``none`` (no template: the instruction, a newline and the input; ``prompter`` is None), a key of
    the run's mapping (``zh``, ``en``, ``iepile`` …) or a template name (``alpaca_en``, or one the
    run saved). Never a path: a name from a request cannot read files. ``prompts``: a stage-07
    ``PromptSet`` (default: the shipped defaults)."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("instruction: required, a non-empty string")
    if not isinstance(input, str):
        raise ValueError(f"input: expected a string, got {type(input).__name__}")
    if template == TEMPLATE_NONE:
        return (f"{instruction}\n{input}" if input else instruction), None
    from .sft.prompter import PromptSet, available_templates

    prompts = prompts if prompts is not None else PromptSet()
    if template == TEMPLATE_AUTO:
        name = prompts.template_for({"lang": detect_language(instruction + input)})
    elif template in prompts.mapping:
        name = prompts.mapping[template]
    elif template in prompts.mapping.values() or template in available_templates():
        name = template
    else:
        raise ValueError(f"template {template!r}: unknown; allowed: {', '.join(template_names(prompts))}")
    prompter = prompts.get(name)
    return prompter.build(instruction, input), prompter


# ==================================================================================== loading ==
def load_causal_lm(model_dir: str | os.PathLike, dtype: Any = "float32", *, load_in_8bit: bool = False,
                   device: str = "cpu"):
    """``AutoModelForCausalLM`` from a Hugging Face model folder (e.g. a run's ``final/``), in
    eval mode; ``dtype`` is a torch dtype or its name. Safetensors only (never a pickle), local
    files only, no remote code. ``load_in_8bit``: LLM.int8() linear layers through bitsandbytes,
    placed on ``device`` (the other weights in ``dtype``; float16 suits int8 matmuls)."""
    import torch
    from transformers import AutoModelForCausalLM

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    kw: dict[str, Any] = {}
    if load_in_8bit:
        try:
            import bitsandbytes  # noqa: F401 - fail here with our message when it is unusable
            from transformers import BitsAndBytesConfig
        except Exception as exc:  # noqa: BLE001 - any import failure means: no 8-bit here
            raise ValueError(f"8-bit loading needs bitsandbytes with a backend for {device}: "
                             f"{type(exc).__name__}: {exc}") from None
        import logging

        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)  # a float32→float16 note per matmul
        kw.update(quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map={"": device})
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, use_safetensors=True, local_files_only=True,
                                                     trust_remote_code=False, **kw)
    except (RuntimeError, ImportError) as exc:
        if not load_in_8bit:
            raise
        raise ValueError(f"8-bit loading failed on {device}: {' '.join(str(exc).split())[:300]}") from None
    return model.eval()


def load_model(model_dir: str | os.PathLike, adapter: str | os.PathLike | None = None, dtype: str | None = None,
               device: str = "auto", load_in_8bit: bool = False) -> Any:
    """The causal LM (local safetensors only), with a PEFT adapter on top when given: a base model,
    base + adapter, or a merged model. ``dtype`` default: float32 (float16 with ``load_in_8bit``);
    ``device``: ``auto`` (cuda when available), ``cpu``, ``cuda:1`` …"""
    import torch

    if not Path(model_dir).is_dir():
        raise ValueError(f"--model {model_dir}: not a model folder")
    dtype = dtype or ("float16" if load_in_8bit else "float32")
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise ValueError(f"--dtype: unknown torch dtype {dtype!r}")
    if adapter is not None:
        a = Path(adapter)
        if not (a / "adapter_config.json").is_file() or not (a / "adapter_model.safetensors").is_file():
            raise ValueError(f"--adapter {a}: not a PEFT adapter folder with adapter_config.json and "
                             "adapter_model.safetensors (pickled adapters are not loaded)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_causal_lm(model_dir, dtype=dtype, load_in_8bit=load_in_8bit, device=device)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(a), local_files_only=True).eval()
    return model if load_in_8bit else model.to(device)


def load_tokenizer(path: str | os.PathLike) -> Any:
    """A transformers tokenizer when the folder has its files, else the SentencePiece model."""
    p = Path(path)
    if p.is_dir() and ((p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file()):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(p), local_files_only=True, trust_remote_code=False)
    return spm.load_processor(p)


def quiet_loading() -> None:
    """No progress bar for loading weights, no notice about an optional bitsandbytes kernel
    package, and none of transformers' or PEFT's deprecation and generation-length notices
    (RoPE models generate past ``max_position_embeddings``): a command's output is what it prints
    (and an error stays one line). See :func:`knowlm_utils.quiet.quiet_library_notices`."""
    from .quiet import quiet_library_notices

    quiet_library_notices()


class Generator:
    """A model, its tokenizer and prompt templates, with default parameters: what the CLI, the
    HTTP server and a notebook UI share. One generation at a time (a lock), so callers in several
    threads are served in turn and a seeded sample does not depend on what runs beside it."""

    def __init__(self, model: Any, tokenizer: Any, prompts: Any = None,
                 params: GenerationParams | str | Mapping[str, Any] | None = None, name: str = "model"):
        self.model, self.tokenizer = model, tokenizer
        self.codec = Codec(tokenizer, getattr(prompts, "segmentation", "tokenizer"))  # as the run was trained
        self._prompts, self.name = prompts, name
        self.params = resolve_params(params)
        self.context = context_limit(model)
        self.lock = threading.Lock()

    @classmethod
    def load(cls, model: str | os.PathLike, adapter: str | os.PathLike | None = None,
             tokenizer: str | os.PathLike | None = None, templates: Any = None, *,
             load_in_8bit: bool = False, dtype: str | None = None, device: str = "auto",
             params: GenerationParams | str | Mapping[str, Any] | None = None) -> "Generator":
        """Load a model folder (+ ``adapter``), its tokenizer (default: the model folder) and the
        prompt templates saved with the run (``templates``: a ``prompt_templates.json`` or a loaded
        ``PromptSet``; default: the one beside the adapter or model, else the shipped defaults)."""
        from .sft.prompter import PromptSet

        if not Path(model).is_dir():
            raise ValueError(f"--model {model}: not a model folder")
        if isinstance(templates, PromptSet):
            prompts = templates
        else:
            prompts = PromptSet.load(templates) if templates is not None else PromptSet.for_run(adapter, model)
        tok = load_tokenizer(tokenizer or model)
        m = load_model(model, adapter, dtype=dtype, device=device, load_in_8bit=load_in_8bit)
        name = Path(model).name if adapter is None else f"{Path(model).name}+{Path(adapter).name}"
        return cls(m, tok, prompts, params, name=name)

    @property
    def prompts(self) -> Any:
        if self._prompts is None:
            from .sft.prompter import PromptSet

            self._prompts = PromptSet()
        return self._prompts

    def resolve(self, params: GenerationParams | str | Mapping[str, Any] | None = None,
                **overrides: Any) -> GenerationParams:
        """``params`` (default: this generator's) with ``overrides``."""
        return resolve_params(self.params if params is None else params, **overrides)

    def prompt_for(self, instruction: str, input: str = "", template: str = TEMPLATE_AUTO) -> tuple[str, Any]:  # noqa: A002
        return build_prompt(instruction, input, template, self.prompts)

    def complete(self, prompt: str, params: GenerationParams | str | Mapping[str, Any] | None = None, *,
                 on_text: Callable[[str], Any] | None = None, cancel: threading.Event | None = None,
                 emit_warnings: bool = True, **overrides: Any) -> Generation:
        """Continue a raw prompt (see :func:`generate`)."""
        p = self.resolve(params, **overrides)
        with self.lock:
            return generate(self.model, self.codec, prompt, p, on_text=on_text, cancel=cancel,
                            emit_warnings=emit_warnings)

    def instruct(self, instruction: str, input: str = "", template: str = TEMPLATE_AUTO,  # noqa: A002
                 params: GenerationParams | str | Mapping[str, Any] | None = None, *,
                 on_text: Callable[[str], Any] | None = None, cancel: threading.Event | None = None,
                 emit_warnings: bool = True, **overrides: Any) -> Generation:
        """Answer an instruction (+ input) through the prompt template; ``text`` is the answer
        (the template's ``response``: stripped). Streamed chunks are the raw new text."""
        prompt, prompter = self.prompt_for(instruction, input, template)
        g = self.complete(prompt, params, on_text=on_text, cancel=cancel, emit_warnings=emit_warnings, **overrides)
        return dataclasses.replace(g, text=prompter.response(g.text)) if prompter is not None else g

    def stream(self, prompt: str, params: GenerationParams | str | Mapping[str, Any] | None = None,
               **overrides: Any) -> TextStream:
        """:meth:`complete` as an iterator of chunks (see :class:`TextStream`)."""
        p = self.resolve(params, **overrides)
        return TextStream(lambda put, cancel: self.complete(prompt, p, on_text=put, cancel=cancel))

    def stream_instruction(self, instruction: str, input: str = "", template: str = TEMPLATE_AUTO,  # noqa: A002
                           params: GenerationParams | str | Mapping[str, Any] | None = None,
                           **overrides: Any) -> TextStream:
        p = self.resolve(params, **overrides)
        self.prompt_for(instruction, input, template)  # a bad template fails here, not in the thread
        return TextStream(lambda put, cancel: self.instruct(instruction, input, template, p, on_text=put,
                                                            cancel=cancel))


__all__ = ["Continuation", "Generation", "GenerationParams", "GenerationWarning", "PRESETS", "PRESET_HELP", "Codec",
           "IncrementalDecoder", "StopFilter", "TextStream", "Generator", "FINISH_REASONS", "REPLACEMENT",
           "TEMPLATE_AUTO", "TEMPLATE_NONE", "preset", "resolve_params", "generate", "stream", "generate_text",
           "detect_language", "build_prompt", "template_names", "context_limit", "load_causal_lm", "load_model",
           "load_tokenizer", "quiet_loading"]
