"""SFT data: stage-06 records → token samples with exact label masking, mixing, padding.

Why not the usual recipe
------------------------
alpaca-lora's ``generate_and_tokenize_prompt`` (which KnowLM's fine-tuning script follows)
tokenises ``prompt + answer`` with ``truncation=True, max_length=cutoff_len`` and appends EOS
**only when the result is shorter than the cutoff**; with ``train_on_inputs=False`` it then masks
``len(tokenize(prompt))`` labels. Two things go wrong:

1. A sample that reaches the cutoff is cut at its *end*: the answer loses its tail and never gets
   EOS, so the model is trained on answers that stop mid-way without learning to stop.
2. A prompt longer than the cutoff leaves nothing of the answer: every label is -100, the sample
   costs a forward/backward pass and teaches nothing (and a batch of such samples gives a NaN loss).

Besides, tokenising the prompt alone to count the masked tokens can disagree by a token with the
tokenisation of ``prompt + answer`` when pieces merge across the boundary.

What :func:`tokenize_record` does instead
------------------------------------------
* The prompt (:class:`~knowlm_utils.sft.prompter.PromptSet` picks the template) is encoded with BOS,
  the answer separately without BOS and with EOS (``add_eos``), so the boundary is exact: labels are
  -100 on exactly the prompt's ids (unless ``train_on_inputs``) and the answer's ids after. The answer
  is encoded as the continuation of the prompt's last character (``enc(c + answer)`` minus
  ``enc(c)``, when that is a prefix), so it gets no spurious SentencePiece dummy-prefix ``▁`` and
  ``prompt ids + answer ids`` equals the tokenisation of the whole text in the usual case.
* When ``prompt + answer`` exceeds ``cutoff_len``, the **prompt** is shortened, never the answer: its
  head (BOS, preamble, the instruction with schema and format description, when they fit) and its
  tail (the template text after the last placeholder, which holds the response marker) are kept and
  tokens are cut out of the middle of what lies between, i.e. the middle of the input text (its start
  and its end survive). Every kept sample therefore ends with the whole answer and EOS.
* When even the answer plus the template's head and tail do not fit, the record is dropped
  (``answer_too_long``); a record whose labels would all be -100 (an empty answer without EOS) is
  dropped (``no_target``). :class:`TokenizeStats` counts all of it, per task and language.

Tokenizers: a Hugging Face tokenizer (``LlamaTokenizer[Fast]`` or the project's exact
``TokenizersBackend`` folder) or a loaded ``sentencepiece.SentencePieceProcessor``; both give the
same ids for the project's tokenizers. torch is imported only by :class:`SFTCollator`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import Section, field
from .prompter import PromptSet, Prompter, _record_str

IGNORE_INDEX = -100
DROP_REASONS = ("answer_too_long", "no_target")
#: Keys :func:`read_records` requires of each record (stage 06 writes these and more).
REQUIRED_KEYS = ("id", "task", "lang", "style", "instruction", "input", "output")


@dataclasses.dataclass
class SFTDataOptions(Section):
    """How records become training samples."""

    cutoff_len: int = field(512, ge=8, help="maximum tokens per sample, prompt + answer + EOS (KnowLM's "
                                            "cutoff_len); longer prompts are cut in the middle, never the answer")
    train_on_inputs: bool = field(False, help="also train on the prompt tokens; false: prompt labels are -100 "
                                              "and only the answer (and its EOS) is learned")
    add_eos: bool = field(True, help="end every answer with EOS, truncated samples included, so the model "
                                     "learns to stop")
    templates: dict[str, str] = field(default_factory=dict, help="record → prompt template overrides, keys "
                                      "'style:lang', style, lang or 'default' (defaults: iepile → oneke_chat, "
                                      "zh → alpaca_zh, en → alpaca_en); values are template names or .json paths")
    segmentation: str = field("tokenizer", help="how text becomes ids: 'tokenizer' (its own segmentation), "
                                                "'copy_aligned' (CJK characters and words one at a time, so a name "
                                                "has the same ids in the sentence and the answer and can be copied; "
                                                "≈1.5x the tokens) or 'characters' (every character alone: names "
                                                "spelt from a small alphabet; ≈1.7x copy_aligned's tokens on English; "
                                                "sft/segmentation.py)")

    def validate(self) -> None:
        from .segmentation import check_segmentation

        check_segmentation(self.segmentation, "segmentation")
        for key, value in self.templates.items():
            if not key or not value:
                raise ValueError(f"templates: {key!r}: expected a non-empty key and template name, got {value!r}")


# ============================================================================ tokenizers ====
class TokenizerAdapter:
    """``encode`` (no special tokens), ``decode``, ``bos_id``/``eos_id`` of a Hugging Face tokenizer
    or a SentencePiece processor."""

    def __init__(self, tokenizer: Any, segmentation: str = "tokenizer"):
        from .segmentation import check_segmentation, unit_encoder

        self.tokenizer = tokenizer
        self.segmentation = check_segmentation(segmentation)
        self._aligned = unit_encoder(tokenizer, segmentation)
        self._context: dict[str, list[int]] = {}
        if hasattr(tokenizer, "eos_token_id") and hasattr(tokenizer, "encode"):
            self.kind = "hf"
            self.bos_id, self.eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id
        else:
            from ..spm import is_processor

            if not is_processor(tokenizer):
                raise TypeError(f"expected a Hugging Face tokenizer or a SentencePieceProcessor, got "
                                f"{type(tokenizer).__name__}")
            self.kind = "spm"
            bos, eos = tokenizer.bos_id(), tokenizer.eos_id()
            self.bos_id, self.eos_id = (bos if bos >= 0 else None), (eos if eos >= 0 else None)

    def encode(self, text: str) -> list[int]:
        if self._aligned is not None:
            return self._aligned.encode(text)
        if self.kind == "hf":
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        return list(self.tokenizer.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        if self.kind == "hf":
            return self.tokenizer.decode(list(ids), skip_special_tokens=True)
        special = {self.bos_id, self.eos_id}
        return self.tokenizer.decode([i for i in ids if i not in special])

    def encode_continuation(self, text: str, before: str) -> list[int]:
        """The ids of ``text`` as it is tokenised right after ``before``'s last character:
        ``enc(c + text)`` minus ``enc(c)`` when that is a prefix (no dummy-prefix ``▁`` in front of
        an answer that follows a newline), else ``enc(text)``."""
        if not text:
            return []
        if self._aligned is not None:  # units are encoded alone: no context to take into account
            return self._aligned.encode(text)
        ctx = before[-1:]
        if not ctx:
            return self.encode(text)
        if ctx not in self._context:
            self._context[ctx] = self.encode(ctx)
        pre = self._context[ctx]
        ids = self.encode(ctx + text)
        if ids[: len(pre)] == pre and len(ids) > len(pre):
            return ids[len(pre):]
        return self.encode(text)


def as_adapter(tokenizer: Any, segmentation: str | None = None) -> TokenizerAdapter:
    """``tokenizer`` as a :class:`TokenizerAdapter` (an adapter is returned as is unless another
    ``segmentation`` is asked for; None: keep the adapter's, or the tokenizer's own)."""
    if isinstance(tokenizer, TokenizerAdapter):
        if segmentation is None or segmentation == tokenizer.segmentation:
            return tokenizer
        return TokenizerAdapter(tokenizer.tokenizer, segmentation)
    return TokenizerAdapter(tokenizer, segmentation or "tokenizer")


# ================================================================================ stats ====
@dataclasses.dataclass
class EncodedRecord:
    """The outcome of one record: ``sample`` (None when dropped, ``reason`` says why)."""

    sample: dict[str, list[int]] | None
    reason: str | None = None
    template: str = ""
    truncated: bool = False
    prompt_tokens: int = 0  # after truncation
    answer_tokens: int = 0  # EOS included
    removed_tokens: int = 0  # cut out of the prompt


@dataclasses.dataclass
class TokenizeStats:
    """Counts of :func:`build_sft_dataset`: records, kept, truncated (prompt shortened), dropped by
    reason, prompt/answer tokens of the kept samples, and the same counts per task and language."""

    records: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: Counter = dataclasses.field(default_factory=Counter)
    prompt_tokens: int = 0
    answer_tokens: int = 0
    removed_prompt_tokens: int = 0
    max_tokens: int = 0
    templates: Counter = dataclasses.field(default_factory=Counter)
    by_task: dict[str, Counter] = dataclasses.field(default_factory=dict)
    by_lang: dict[str, Counter] = dataclasses.field(default_factory=dict)

    def add(self, record: Mapping[str, Any], enc: EncodedRecord) -> None:
        self.records += 1
        groups = [self.by_task.setdefault(str(record.get("task", "?")), Counter()),
                  self.by_lang.setdefault(str(record.get("lang", "?")), Counter())]
        for g in groups:
            g["records"] += 1
        if enc.sample is None:
            self.dropped[enc.reason or "?"] += 1
            for g in groups:
                g["dropped"] += 1
                g[f"dropped_{enc.reason}"] += 1
            return
        self.kept += 1
        self.templates[enc.template] += 1
        self.prompt_tokens += enc.prompt_tokens
        self.answer_tokens += enc.answer_tokens
        self.removed_prompt_tokens += enc.removed_tokens
        self.max_tokens = max(self.max_tokens, enc.prompt_tokens + enc.answer_tokens)
        for g in groups:
            g["kept"] += 1
            g["prompt_tokens"] += enc.prompt_tokens
            g["answer_tokens"] += enc.answer_tokens
            if enc.truncated:
                g["truncated"] += 1
        if enc.truncated:
            self.truncated += 1

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a run's report)."""
        return {"records": self.records, "kept": self.kept, "truncated": self.truncated,
                "dropped": dict(self.dropped), "prompt_tokens": self.prompt_tokens,
                "answer_tokens": self.answer_tokens, "removed_prompt_tokens": self.removed_prompt_tokens,
                "max_tokens": self.max_tokens, "templates": dict(self.templates),
                "by_task": {k: dict(v) for k, v in sorted(self.by_task.items())},
                "by_lang": {k: dict(v) for k, v in sorted(self.by_lang.items())}}

    def summary(self) -> str:
        """A few human-readable lines."""
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        lines = [f"records {self.records}: kept {self.kept}, truncated {self.truncated}, dropped {dropped}",
                 f"tokens: prompt {self.prompt_tokens}, answer {self.answer_tokens} (EOS included), "
                 f"cut from prompts {self.removed_prompt_tokens}, longest sample {self.max_tokens}"]
        for title, groups in (("task", self.by_task), ("lang", self.by_lang)):
            for name, g in sorted(groups.items()):
                lines.append(f"  {title} {name}: records {g['records']}, kept {g['kept']}, "
                             f"truncated {g['truncated']}, dropped {g['dropped']}")
        return "\n".join(lines)


# ========================================================================== tokenising ====
def _smallest(pred, lo: int, hi: int) -> int | None:
    """The smallest n in [lo, hi] with ``pred(n)`` (assumed monotone), None if not even ``pred(hi)``."""
    if lo > hi or not pred(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _tail_tokens(tok: TokenizerAdapter, ids: list[int], tail: str, n_prefix: int) -> int:
    """How many final ids hold the template tail (the response marker and what follows it)."""
    top = len(ids) - n_prefix
    for needle in (tail.rstrip(), tail.strip()):
        if not needle:
            continue
        k = _smallest(lambda n: needle in tok.decode(ids[len(ids) - n:]), 1, top)
        if k is not None:
            return k
    return min(top, len(tok.encode(tail)))


def _head_tokens(tok: TokenizerAdapter, ids: list[int], head: str, n_prefix: int) -> int:
    """How many first ids (BOS included) hold the template head (preamble, first heading)."""
    needle = head.strip()
    if not needle:
        return n_prefix
    h = _smallest(lambda n: needle in tok.decode(ids[:n]), n_prefix, len(ids))
    return h if h is not None else min(len(ids), n_prefix + len(tok.encode(head)))


def _input_offset(prompt: str, instruction: str, input_text: str) -> int:
    """Where the record's input text starts in the prompt (-1 when unknown): ``input`` itself, or
    the ``input`` of an IEPile JSON instruction (as it is escaped inside that JSON)."""
    needles = []
    if input_text:
        needles.append(input_text)
    elif instruction.lstrip().startswith("{"):
        try:
            inner = json.loads(instruction)
        except json.JSONDecodeError:
            inner = None
        if isinstance(inner, dict) and isinstance(inner.get("input"), str) and inner["input"]:
            needles += [json.dumps(inner["input"], ensure_ascii=False)[1:-1],
                        json.dumps(inner["input"])[1:-1]]
    for needle in needles:
        at = prompt.rfind(needle)
        if at >= 0:
            return at
    return -1


def _shorten_prompt(tok: TokenizerAdapter, ids: list[int], budget: int, prompter: Prompter, has_input: bool,
                    prompt: str, instruction: str, input_text: str, n_prefix: int) -> list[int] | None:
    """``ids`` cut to ``budget`` tokens by removing a middle span (see the module docstring), or
    None when the template's head and tail alone do not fit."""
    tail_len = _tail_tokens(tok, ids, prompter.tail(has_input), n_prefix)
    body_len = len(ids) - tail_len
    head_min = min(_head_tokens(tok, ids, prompter.head(has_input), n_prefix), body_len)
    avail = budget - tail_len
    if avail < head_min:
        return None
    protect = head_min
    offset = _input_offset(prompt, instruction, input_text)
    if offset > 0:  # keep the whole instruction block (instruction, schema, headings) when it fits
        protect = max(head_min, min(body_len, n_prefix + len(tok.encode(prompt[:offset]))))
    base = protect if protect <= avail else head_min
    extra = avail - base
    front, back = base + (extra + 1) // 2, extra // 2
    return ids[:front] + ids[body_len - back:body_len] + ids[body_len:]


def encode_record(tokenizer: Any, prompter_set: PromptSet, record: Mapping[str, Any],
                  options: SFTDataOptions) -> EncodedRecord:
    """One record → :class:`EncodedRecord` (the sample, or None and the drop reason)."""
    tok = as_adapter(tokenizer, options.segmentation)
    name = prompter_set.template_for(record)
    prompter = prompter_set.get(name)
    instruction, input_text = prompter_set.fields(record)
    output = _record_str(record, "output")
    prompt = prompter.build(instruction, input_text)
    prefix = [tok.bos_id] if tok.bos_id is not None else []
    prompt_ids = prefix + tok.encode(prompt)
    answer_ids = tok.encode_continuation(output, prompt)
    if options.add_eos:
        if tok.eos_id is None:
            raise ValueError("add_eos: the tokenizer has no EOS token")
        answer_ids.append(tok.eos_id)
    budget = options.cutoff_len - len(answer_ids)
    truncated, removed = False, 0
    if len(prompt_ids) > budget:
        cut = _shorten_prompt(tok, prompt_ids, budget, prompter, bool(input_text), prompt, instruction,
                              input_text, len(prefix))
        if cut is None:
            return EncodedRecord(None, "answer_too_long", name, False, len(prompt_ids), len(answer_ids))
        truncated, removed, prompt_ids = True, len(prompt_ids) - len(cut), cut
    labels = (list(prompt_ids) if options.train_on_inputs else [IGNORE_INDEX] * len(prompt_ids)) + answer_ids
    if all(label == IGNORE_INDEX for label in labels):
        return EncodedRecord(None, "no_target", name, truncated, len(prompt_ids), len(answer_ids), removed)
    input_ids = prompt_ids + answer_ids
    sample = {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}
    return EncodedRecord(sample, None, name, truncated, len(prompt_ids), len(answer_ids), removed)


def tokenize_record(tokenizer: Any, prompter_set: PromptSet, record: Mapping[str, Any], options: SFTDataOptions,
                    stats: TokenizeStats | None = None) -> dict[str, list[int]] | None:
    """``{"input_ids", "attention_mask", "labels"}`` of one record, or None when it is dropped (the
    reason is counted in ``stats``; :func:`encode_record` returns it)."""
    enc = encode_record(tokenizer, prompter_set, record, options)
    if stats is not None:
        stats.add(record, enc)
    return enc.sample


def build_sft_dataset(records: Iterable[Mapping[str, Any]], tokenizer: Any, options: SFTDataOptions | None = None,
                      stats: TokenizeStats | None = None, prompter_set: PromptSet | None = None) -> list[dict[str, list[int]]]:
    """The kept samples of ``records`` (a list: it works as a map-style dataset for torch's
    DataLoader and the HF Trainer with :class:`SFTCollator`); counts go to ``stats``."""
    options = options or SFTDataOptions()
    prompter_set = prompter_set or PromptSet(options.templates)
    stats = stats if stats is not None else TokenizeStats()
    tok = as_adapter(tokenizer, options.segmentation)
    out = []
    for record in records:
        sample = tokenize_record(tok, prompter_set, record, options, stats)
        if sample is not None:
            out.append(sample)
    return out


# ============================================================================ records ====
def _record_files(paths_or_dir: str | os.PathLike | Sequence[str | os.PathLike], split: str) -> list[Path]:
    items = [paths_or_dir] if isinstance(paths_or_dir, (str, os.PathLike)) else list(paths_or_dir)
    files = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            p = p / f"{split}.jsonl"
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such records file (give stage 06's output folder, which holds "
                                    f"<split>.jsonl, or .jsonl files)")
        files.append(p)
    return files


def read_records(paths_or_dir: str | os.PathLike | Sequence[str | os.PathLike], split: str = "train",
                 required: Sequence[str] = REQUIRED_KEYS) -> list[dict]:
    """The records of stage-06 JSONL files: a folder gives ``<folder>/<split>.jsonl``, a file is read
    as is. Blank lines are skipped; bad JSON, a line that is not an object, a missing key of
    ``required`` (default :data:`REQUIRED_KEYS`) or a non-string instruction/input/output raise a
    one-line ``ValueError`` naming ``file:line``."""
    out = []
    for path in _record_files(paths_or_dir, split):
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
                missing = [k for k in required if k not in row]
                if missing:
                    raise ValueError(f"{where}: missing key {missing[0]!r} (records need {', '.join(required)})")
                for key in ("instruction", "input", "output"):
                    if not isinstance(row[key], str):
                        raise ValueError(f"{where}: {key}: expected a string, got {type(row[key]).__name__}")
                out.append(row)
    return out


def _as_record(row: Mapping[str, Any], index: int) -> dict[str, Any]:
    """A general instruction as a record: stage-06 records pass through, plain Alpaca rows
    ``{instruction, input, output}`` are converted like stage 06 does."""
    if all(k in row for k in REQUIRED_KEYS):
        return dict(row)
    from ..kg2instruction.export import general_record, read_general

    read_general([row])  # one-line error for a malformed row
    return general_record(row, index)


def mix_records(ie_records: Iterable[Mapping[str, Any]], general_records: Iterable[Mapping[str, Any]],
                general_ratio: float, seed: int = 0, tasks: Sequence[str] | None = None,
                max_records: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """IE records (only ``tasks`` when given, e.g. ``("NER", "RE", "EE")`` to leave out stage 06's
    own general records) plus ``round(general_ratio × IE)`` general records (stage-06 records or
    plain Alpaca rows), drawn without replacement with ``seed`` and capped at what exists; with
    ``max_records`` the total is capped keeping the ratio. Returns (shuffled records, counts)."""
    if isinstance(general_ratio, bool) or not isinstance(general_ratio, (int, float)) or general_ratio < 0:
        raise ValueError(f"general_ratio: must be a number >= 0, got {general_ratio!r}")
    if max_records is not None and (isinstance(max_records, bool) or not isinstance(max_records, int)
                                    or max_records < 0):
        raise ValueError(f"max_records: must be an integer >= 0 or None, got {max_records!r}")
    wanted_tasks = None if tasks is None else set(tasks)
    ie = [dict(r) for r in ie_records if wanted_tasks is None or r.get("task") in wanted_tasks]
    general = list(general_records) if general_ratio > 0 else []
    n_ie = len(ie)
    if max_records is not None:
        n_ie = min(n_ie, round(max_records / (1 + general_ratio)))
    wanted = round(general_ratio * n_ie)
    n_gen = min(wanted, len(general))
    if max_records is not None:
        n_gen = min(n_gen, max_records - n_ie)
    rng = random.Random(f"{seed}:mix_records")
    ie_pick = sorted(rng.sample(range(len(ie)), n_ie))
    gen_pick = sorted(rng.sample(range(len(general)), n_gen))
    out = [ie[i] for i in ie_pick] + [_as_record(general[j], j) for j in gen_pick]
    rng.shuffle(out)
    counts = {"ie": n_ie, "general": n_gen, "total": len(out), "ie_available": len(ie),
              "general_available": len(general), "general_wanted": wanted,
              "by_task": dict(sorted(Counter(str(r.get("task")) for r in out).items())),
              "by_lang": dict(sorted(Counter(str(r.get("lang")) for r in out).items()))}
    return out, counts


# =========================================================================== collator ====
class SFTCollator:
    """Right-pads a list of samples to the longest: ``input_ids`` with ``pad_id``,
    ``attention_mask`` with 0, ``labels`` with -100; returns ``torch.long`` tensors. A sample
    without ``attention_mask`` gets ones, one without ``labels`` gets its ``input_ids``.
    ``pad_to_multiple_of`` rounds the width up (tensor cores like multiples of 8)."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None):
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0:
            raise ValueError(f"pad_id: expected a token id >= 0, got {pad_id!r}")
        self.pad_id, self.pad_to_multiple_of = pad_id, pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        if not features:
            raise ValueError("SFTCollator: empty batch")
        rows = []
        for i, f in enumerate(features):
            ids = [int(x) for x in f["input_ids"]]
            mask = [int(x) for x in f.get("attention_mask", [1] * len(ids))]
            labels = [int(x) for x in f.get("labels", ids)]
            if not ids or len(mask) != len(ids) or len(labels) != len(ids):
                raise ValueError(f"SFTCollator: sample {i}: input_ids, attention_mask and labels must be non-empty "
                                 f"and of one length, got {len(ids)}, {len(mask)}, {len(labels)}")
            rows.append((ids, mask, labels))
        width = max(len(r[0]) for r in rows)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = -(-width // m) * m
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        labels_t = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for i, (ids, mask, labels) in enumerate(rows):
            n = len(ids)
            input_ids[i, :n] = torch.tensor(ids, dtype=torch.long)
            attention[i, :n] = torch.tensor(mask, dtype=torch.long)
            labels_t[i, :n] = torch.tensor(labels, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels_t}


__all__ = ["IGNORE_INDEX", "DROP_REASONS", "REQUIRED_KEYS", "SFTDataOptions", "TokenizerAdapter", "as_adapter",
           "EncodedRecord", "TokenizeStats", "encode_record", "tokenize_record", "build_sft_dataset",
           "read_records", "mix_records", "SFTCollator"]
