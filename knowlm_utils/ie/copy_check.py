"""Where a model's extracted names come from: copied from the input, or recalled from training?

A fine-tuned extractor should *copy* spans from the sentence it reads. A small model trained on
instructions about a few hundred entities can instead learn the names themselves and answer with
names it was trained on, right or wrong — F1 alone does not tell the two apart. This module sorts
every name of every parsed prediction (NER entity, RE head and tail, EE argument) into four bins:

``input_only``   occurs in the sentence and was never an SFT training answer — only copying explains it;
``input_train``  occurs in the sentence and was a training answer;
``train_only``   not in the sentence, a training answer — recalled from memory (always wrong here);
``neither``      in neither — invented.

``copy_rate`` is the share of names found in the input. Notebook 08 uses it to show whether the
LoRA model copies; :mod:`knowlm_utils.sft.names` changes training data so that it must.

:func:`induction_score` measures the mechanism copying needs, independent of any task: a sequence of
random tokens shown twice is cheap to predict the second time only for a model with *induction heads*
(attend to the token after the previous occurrence of the current token, copy it). The score is the
mean loss of the first copy minus that of the second, in nats: ≈ 0 means the model cannot copy from
its context at all; a model that copies predicts the second copy almost perfectly (several nats).

:func:`name_token_alignment` measures what copying can reach with a given tokenizer: copying writes
the *token ids* it attends to, so a gold name is reachable by copying only when its ids in the answer
also occur in the prompt. A SentencePiece/BPE tokenizer often segments the same name differently in
the two places: an English word inside a sentence is the piece ``▁Paris`` but right after ``["`` in the
JSON answer it is ``Paris``, and a Chinese name can be merged with its neighbours in the sentence
(``阿根廷的`` → ``阿根`` ``廷的``) while standing alone in the answer. Each gold name is sorted into
``TOKEN_ALIGNMENT`` bins; the share of ``same_ids`` is the ceiling of a model that only copies.

:func:`name_token_scores` shows *when* copying starts, long before F1 moves: the teacher-forced loss
and top-1 accuracy of the answer tokens that spell gold names (a name's first token and the rest,
per language) next to those of all other answer tokens (JSON keys, brackets, EOS). The SFT loss is
mostly the latter — they are learnt within a few hundred steps — so a falling training loss says
nothing about the names; a model that copies predicts name tokens almost as well as format tokens.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .evaluate import parse_gold, parse_prediction

ORIGINS = ("input_only", "input_train", "train_only", "neither")
#: Bins of :func:`name_token_alignment`, best first.
TOKEN_ALIGNMENT = ("same_ids", "other_segmentation", "space_prefixed", "no_token_span")


def record_text(record: Mapping[str, Any]) -> str:
    """The sentence a record asks about: ``input``, or for the IEPile style the ``input`` inside the
    instruction's JSON."""
    if record.get("style") == "iepile" or record.get("format") == "iepile":
        try:
            inst = json.loads(record["instruction"])
            if isinstance(inst, dict) and isinstance(inst.get("input"), str):
                return inst["input"]
        except (ValueError, TypeError, KeyError):
            pass
    return str(record.get("input", ""))


def item_names(task: str, item: Any) -> list[str]:
    """The spans of an item that name things: NER text, RE head and tail, EE argument texts."""
    if task == "NER":
        return [item.text]
    if task == "RE":
        return [item.head, item.tail]
    return [a.text for a in item.arguments]


@dataclass
class NameOrigins:
    """Counts of predicted names per origin (``ORIGINS``) and up to ``max_examples`` of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def copy_rate(self) -> float:
        """Share of predicted names that occur in the sentence (0 when there are none)."""
        found = self.counts["input_only"] + self.counts["input_train"]
        return found / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.total, "copy_rate": self.copy_rate,
                **{k: int(self.counts[k]) for k in ORIGINS}, "examples": self.examples}


def name_origins(records: Iterable[Mapping[str, Any]], predictions: Mapping[str, str],
                 train_names: Iterable[str], max_examples: int = 3) -> NameOrigins:
    """Sort the names of ``predictions`` (record id → answer text) by origin; ``train_names``: every
    name of the SFT train answers (:func:`knowlm_utils.sft.names.answer_names`). Records without a
    prediction are skipped; each distinct name counts once per record."""
    train = set(train_names)
    out = NameOrigins()
    for record in records:
        answer = predictions.get(record["id"])
        if answer is None:
            continue
        text = record_text(record)
        names = {n for it in parse_prediction(record, answer).items for n in item_names(record["task"], it) if n}
        for name in sorted(names):
            origin = ("input_" + ("train" if name in train else "only")) if name in text else \
                ("train_only" if name in train else "neither")
            out.counts[origin] += 1
            ex = out.examples.setdefault(origin, [])
            if len(ex) < max_examples and name not in ex:
                ex.append(name)
    return out


def induction_score(model: Any, length: int = 40, sequences: int = 16, low_id: int = 100,
                    high_id: int | None = None, seed: int = 0) -> dict[str, float]:
    """Loss (nats/token) on a random token sequence and on its repetition right after it, and their
    difference (``score``). Token ids are drawn from ``[low_id, high_id)`` (default: up to the
    model's vocabulary size) with ``seed``; BOS (id 1) starts every sequence; the first token of each
    copy is not scored (nothing predicts it)."""
    import torch

    vocab = int(model.config.vocab_size)
    high = vocab if high_id is None else min(int(high_id), vocab)
    if length < 2 or sequences < 1 or not 0 <= low_id < high - 1:
        raise ValueError(f"induction_score: need length >= 2, sequences >= 1 and 0 <= low_id < high_id - 1 "
                         f"(got length {length}, sequences {sequences}, ids [{low_id}, {high}))")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(low_id, high, (sequences, length), generator=gen)
    ids = torch.cat([torch.ones(sequences, 1, dtype=torch.long), x, x], 1)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    model.train(was_training)
    nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]  # nll[:, j] predicts ids[:, j+1]
    first = nll[:, 1:length].mean().item()            # tokens 2..L of the first copy
    second = nll[:, length + 1:].mean().item()        # tokens 2..L of the second copy
    return {"first": first, "second": second, "score": first - second}


def _piece_bytes(piece: str) -> bytes:
    """The bytes a SentencePiece piece stands for (``<0xNN>`` byte pieces included), spaces as ``▁``."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece.encode("utf-8")


def _spans(ids: list[int], pieces: list[str], max_tokens: int) -> dict[str, set[tuple[int, ...]]]:
    """Text (spaces as ``▁``) of every run of up to ``max_tokens`` tokens → the id tuples spelling it."""
    out: dict[str, set[tuple[int, ...]]] = {}
    raw = [_piece_bytes(p) for p in pieces]
    for i in range(len(ids)):
        buf = b""
        for j in range(i, min(len(ids), i + max_tokens)):
            buf += raw[j]
            out.setdefault(buf.decode("utf-8", errors="replace"), set()).add(tuple(ids[i:j + 1]))
    return out


def alignment_bin(name: str, in_prompt: Mapping[str, set], in_answer: Mapping[str, set]) -> str:
    """The ``TOKEN_ALIGNMENT`` bin of ``name`` given the token spans (``_spans``) of prompt and answer."""
    spelled = name.replace(" ", "\u2581")
    here = in_prompt.get(spelled, set())
    if in_answer.get(spelled, set()) & here:
        return "same_ids"
    if here:
        return "other_segmentation"
    if "\u2581" + spelled in in_prompt:
        return "space_prefixed"
    return "no_token_span"


@dataclass
class TokenAlignment:
    """Counts of gold names per ``TOKEN_ALIGNMENT`` bin, per ``"lang/task"`` key, with examples."""

    counts: dict[str, Counter] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    skipped_records: int = 0  # dropped by the SFT tokenisation (too long): not measured

    def total(self, key: str | None = None) -> int:
        groups = [self.counts.get(key, Counter())] if key else list(self.counts.values())
        return sum(sum(c.values()) for c in groups)

    def share(self, bin_name: str, key: str | None = None) -> float:
        """Share of names in ``bin_name`` (all keys, or one ``"lang/task"``); 0 when there are none."""
        groups = [self.counts.get(key, Counter())] if key else list(self.counts.values())
        n = self.total(key)
        return sum(c[bin_name] for c in groups) / n if n else 0.0

    @property
    def copy_ceiling(self) -> float:
        """Share of gold names whose answer ids occur in the prompt: the recall of a perfect copier."""
        return self.share("same_ids")

    def to_dict(self) -> dict[str, Any]:
        by_key = {k: {"names": self.total(k), **{b: int(c[b]) for b in TOKEN_ALIGNMENT},
                      "copy_ceiling": self.share("same_ids", k)} for k, c in sorted(self.counts.items())}
        return {"names": self.total(), "copy_ceiling": self.copy_ceiling, "by_lang_task": by_key,
                "skipped_records": self.skipped_records, "examples": self.examples}


def _sft_encoding(tokenizer: Any, prompts: Any, options: Any):
    """(prompts, options, adapter, ids → pieces) for encoding records exactly as SFT does: the
    default templates and options (with the prompts' segmentation) where None is given."""
    from ..sft.data import SFTDataOptions, as_adapter
    from ..sft.prompter import PromptSet

    prompts = prompts if prompts is not None else PromptSet()
    options = options if options is not None else SFTDataOptions(segmentation=prompts.segmentation)
    tok = as_adapter(tokenizer, options.segmentation)
    if tok.kind == "hf":
        to_pieces = tokenizer.convert_ids_to_tokens
    else:
        to_pieces = lambda ids: [tokenizer.id_to_piece(i) for i in ids]  # noqa: E731
    return prompts, options, tok, to_pieces


def _encoded(tok: Any, prompts: Any, record: Mapping[str, Any], options: Any) -> tuple[list[int] | None, int]:
    """(sample ids, index of the first answer token) as SFT encodes ``record``; (None, 0) when SFT drops it."""
    from ..sft.data import encode_record

    enc = encode_record(tok, prompts, record, options)
    if enc.sample is None:
        return None, 0
    ids, labels = enc.sample["input_ids"], enc.sample["labels"]
    return ids, next((i for i, label in enumerate(labels) if label != -100), len(ids))


def name_token_alignment(records: Iterable[Mapping[str, Any]], tokenizer: Any, prompts: Any = None,
                         options: Any = None, max_examples: int = 3, max_name_tokens: int = 24) -> TokenAlignment:
    """Sort every gold name of ``records`` by how the SFT tokenisation writes it in the answer
    against the prompt (bins ``TOKEN_ALIGNMENT``): ``same_ids`` (copyable), ``other_segmentation``
    (the prompt spells it exactly with other ids), ``space_prefixed`` (the prompt has it only as a
    word-initial ``▁`` piece), ``no_token_span`` (a token of the prompt crosses its boundary).

    ``tokenizer``: a Hugging Face tokenizer or SentencePiece processor; ``prompts``: the run's
    :class:`~knowlm_utils.sft.prompter.PromptSet` (default templates when None); ``options``: its
    :class:`~knowlm_utils.sft.data.SFTDataOptions` (cutoff, EOS; default: the defaults with the prompts'
    segmentation). Samples are encoded exactly as SFT
    encodes them (:func:`~knowlm_utils.sft.data.encode_record`); records it drops are counted in
    ``skipped_records``. Each distinct gold name counts once per record."""
    prompts, options, tok, to_pieces = _sft_encoding(tokenizer, prompts, options)
    out = TokenAlignment()
    for record in records:
        gold = {n for it in parse_gold(record) for n in item_names(record["task"], it) if n}
        if not gold:
            continue
        ids, k = _encoded(tok, prompts, record, options)
        if ids is None:
            out.skipped_records += 1
            continue
        prompt_ids, answer_ids = ids[:k], ids[k:]
        in_prompt = _spans(prompt_ids, to_pieces(prompt_ids), max_name_tokens)
        in_answer = _spans(answer_ids, to_pieces(answer_ids), max_name_tokens)
        counts = out.counts.setdefault(f"{record.get('lang', '?')}/{record['task']}", Counter())
        for name in sorted(gold):
            bin_name = alignment_bin(name, in_prompt, in_answer)
            counts[bin_name] += 1
            ex = out.examples.setdefault(bin_name, [])
            if len(ex) < max_examples and name not in ex:
                ex.append(name)
    return out


@dataclass
class NameTokenScores:
    """Summed teacher-forced loss, token count and top-1 hits per group: ``"<lang>/first"`` (a gold
    name's first answer token), ``"<lang>/rest"`` (its other tokens) and ``"format"`` (every other
    answer token, EOS included)."""

    nll: Counter = field(default_factory=Counter)
    tokens: Counter = field(default_factory=Counter)
    correct: Counter = field(default_factory=Counter)
    skipped_records: int = 0  # dropped by the SFT tokenisation (too long): not measured

    def mean_nll(self, group: str) -> float:
        """Mean loss (nats/token) of ``group``; NaN when it has no tokens."""
        return self.nll[group] / self.tokens[group] if self.tokens[group] else float("nan")

    def accuracy(self, group: str) -> float:
        """Share of ``group``'s tokens that are the model's top-1 prediction; NaN when none."""
        return self.correct[group] / self.tokens[group] if self.tokens[group] else float("nan")

    def names(self, what: str = "nll") -> float:
        """Over all name tokens (every language, first and rest): mean loss (``"nll"``) or accuracy."""
        keys = [k for k in self.tokens if k != "format"]
        n = sum(self.tokens[k] for k in keys)
        if not n:
            return float("nan")
        return sum((self.nll if what == "nll" else self.correct)[k] for k in keys) / n

    def to_dict(self) -> dict[str, Any]:
        groups = {k: {"tokens": int(self.tokens[k]), "nll": self.mean_nll(k), "accuracy": self.accuracy(k)}
                  for k in sorted(self.tokens)}
        return {"name_nll": self.names("nll"), "name_accuracy": self.names("accuracy"),
                "format_nll": self.mean_nll("format"), "groups": groups, "skipped_records": self.skipped_records}


def _name_byte_spans(text: bytes, names: Iterable[str]) -> list[tuple[int, int]]:
    """Byte spans of every occurrence of every name in ``text`` (longest names first, no overlaps)."""
    spans: list[tuple[int, int]] = []
    for name in sorted(set(names), key=lambda n: -len(n.encode("utf-8"))):
        b, start = name.encode("utf-8"), 0
        while b and (j := text.find(b, start)) >= 0:
            if not any(x < j + len(b) and j < y for x, y in spans):
                spans.append((j, j + len(b)))
            start = j + 1
    return spans


def name_token_scores(model: Any, records: Iterable[Mapping[str, Any]], tokenizer: Any, prompts: Any = None,
                      options: Any = None) -> NameTokenScores:
    """Teacher-forced loss and top-1 accuracy of ``model`` on the answer tokens of ``records``,
    grouped as :class:`NameTokenScores` describes. Samples are encoded exactly as SFT encodes them
    (``prompts``/``options`` as in :func:`name_token_alignment`); a token belongs to a name when the
    byte where it starts lies inside an occurrence of a gold name in the answer (a token that starts
    a name is its ``first``)."""
    import torch

    prompts, options, tok, to_pieces = _sft_encoding(tokenizer, prompts, options)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = NameTokenScores()
    for record in records:
        ids, k = _encoded(tok, prompts, record, options)
        if ids is None:
            out.skipped_records += 1
            continue
        if k == 0 or k == len(ids):
            continue
        raw = [_piece_bytes(p).replace("\u2581".encode(), b" ") for p in to_pieces(ids[k:])]
        answer = b"".join(raw)
        shift = max(answer.find(str(record.get("output", "")).encode("utf-8")), 0)  # a leading space piece
        gold = [n for it in parse_gold(record) for n in item_names(record["task"], it) if n]
        spans = [(x + shift, y + shift) for x, y in _name_byte_spans(answer[shift:], gold)]
        lang, groups, pos = record.get("lang", "?"), [], 0
        for piece in raw:
            hit = next(((x, y) for x, y in spans if x <= pos < y), None)
            groups.append("format" if hit is None else f"{lang}/{'first' if pos == hit[0] else 'rest'}")
            pos += len(piece)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, k - 1:-1].float()
        target = torch.tensor(ids[k:], device=device)
        nll = -torch.log_softmax(logits, -1).gather(1, target[:, None])[:, 0]
        hits = logits.argmax(-1) == target
        for group, v, h in zip(groups, nll.tolist(), hits.tolist()):
            out.nll[group] += v
            out.tokens[group] += 1
            out.correct[group] += int(h)
    model.train(was_training)
    return out


__all__ = ["induction_score", "NameTokenScores", "name_token_scores", "ORIGINS", "NameOrigins", "name_origins", "record_text", "item_names",
           "TOKEN_ALIGNMENT", "TokenAlignment", "name_token_alignment"]
