"""How SFT and IE prompts become token ids: the tokenizer's own segmentation, or a copy-aligned one.

Extraction copies: the answer repeats names that stand in the sentence. A model copies *token ids*
(an induction head attends to the sentence and writes the id it finds), but a SentencePiece or BPE
tokenizer segments a string by its context, so a name is often spelt with other ids in the answer
than in the sentence: the English word in ``"… and Paris lies …"`` is the word-initial piece
``▁Paris`` but right after ``["`` in a JSON answer it is ``Paris`` (or ``P`` ``aris``); a Chinese
name can merge with its neighbours in the sentence (``阿根廷的`` → ``阿根`` ``廷的``) and stand alone
in the answer. :func:`knowlm_utils.ie.copy_check.name_token_alignment` counts it: on the course's
test records only 44 % of the gold names have the same ids in the answer as in the prompt with the
course tokenizer (LLaMA's own: 71 %, Chinese-LLaMA's: 79 %). Large models learn to re-spell; a
tiny one that has only just learned to copy cannot reach the rest.

``segmentation: copy_aligned`` (:class:`CopyAlignedEncoder`) encodes text unit by unit with the same
vocabulary: every CJK character alone, every run of other letters and digits alone *without* a
dummy-prefix ``▁``, every whitespace character alone (a space is the piece ``▁``), any other
character alone (byte pieces for what the vocabulary lacks). A unit's ids do not depend on its
neighbours, so every name is spelt with the same ids wherever it stands and the copy ceiling is
1.0. The ids decode to the same text with the ordinary decoder (so a model's generations need no
special handling), at about 1.5 × the tokens of the tokenizer's own segmentation. A model trained
this way must be prompted this way: the run's ``prompt_templates.json`` records the segmentation,
and prediction and generation (:class:`knowlm_utils.generation.Codec`) follow it.

``segmentation: characters`` goes one step further: *every* character is a unit, Latin letters
included (``Paris`` → ``P`` ``a`` ``r`` ``i`` ``s``). A name is then spelt from a few dozen letters
instead of thousands of words, the alphabet a small model must learn to copy over (copying forms far
later the larger it is: ``benchmarks/bench_copy_formation.py``, and issue 11's character-level probe
copied after ≈2,000 steps), at about 1.7 × the tokens of ``copy_aligned`` on English text and the
same on Chinese.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

SEGMENTATIONS = ("tokenizer", "copy_aligned", "characters")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: One unit: a CJK character | a run of other word characters | one whitespace character | any other character.
UNIT = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])\w)+|\s|.", re.S)
#: The unit pattern of each segmentation that encodes unit by unit.
UNIT_PATTERNS = {"copy_aligned": UNIT, "characters": re.compile(".", re.S)}


def check_segmentation(name: Any, where: str = "segmentation") -> str:
    """``name`` if it is one of :data:`SEGMENTATIONS`, else a one-line ``ValueError``."""
    if name not in SEGMENTATIONS:
        raise ValueError(f"{where}: {name!r} is not a segmentation; allowed: {', '.join(SEGMENTATIONS)}")
    return name


def units(text: str, segmentation: str = "copy_aligned") -> list[str]:
    """The units :class:`CopyAlignedEncoder` encodes one at a time (they join back to ``text``)."""
    return UNIT_PATTERNS[segmentation].findall(text)


def sentencepiece_model(tokenizer: Any, segmentation: str = "copy_aligned") -> Any:
    """The SentencePiece model behind ``tokenizer``: a processor as is, a folder or ``.model`` path,
    or a Hugging Face tokenizer's ``vocab_file`` (LLaMA tokenizers keep it). ValueError otherwise."""
    from ..spm import is_processor

    if is_processor(tokenizer) or isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    vocab = getattr(tokenizer, "vocab_file", None)
    if isinstance(vocab, str) and vocab.endswith(".model") and Path(vocab).is_file():
        return vocab
    name = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
    raise ValueError(f"segmentation {segmentation}: {name} has no SentencePiece model (tokenizer.model) to "
                     f"encode with; use segmentation: tokenizer")


class CopyAlignedEncoder:
    """Encode text with a SentencePiece vocabulary, unit by unit (see the module docstring);
    ``segmentation`` picks the units (:data:`UNIT_PATTERNS`)."""

    def __init__(self, tokenizer: Any, segmentation: str = "copy_aligned"):
        from ..spm import load_proto, model_file, processor_from_proto

        if segmentation not in UNIT_PATTERNS:
            raise ValueError(f"segmentation {segmentation!r} is not encoded unit by unit; one of "
                             f"{', '.join(UNIT_PATTERNS)}")
        self.segmentation, self.pattern = segmentation, UNIT_PATTERNS[segmentation]
        source = sentencepiece_model(tokenizer, segmentation)
        proto = load_proto(source)
        if not proto.trainer_spec.byte_fallback:
            where = "the processor" if not isinstance(source, (str, os.PathLike)) else str(model_file(source))
            raise ValueError(f"segmentation {segmentation}: {where} has no byte fallback: characters outside its "
                             f"vocabulary would become <unk>; use segmentation: tokenizer")
        proto.normalizer_spec.add_dummy_prefix = False        # a word's ids must not depend on a space before it
        proto.normalizer_spec.remove_extra_whitespaces = False  # a lone space is the piece "▁", not nothing
        self.processor = processor_from_proto(proto)
        self._unit = lru_cache(maxsize=1 << 18)(self._encode_unit)

    def _encode_unit(self, unit: str) -> tuple[int, ...]:
        return tuple(self.processor.encode(unit))

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for unit in self.pattern.findall(text):
            out.extend(self._unit(unit))
        return out

    def decode(self, ids: list[int]) -> str:
        return self.processor.decode(list(ids))


def unit_encoder(tokenizer: Any, segmentation: str) -> CopyAlignedEncoder | None:
    """The unit-by-unit encoder ``segmentation`` needs, or None for the tokenizer's own."""
    if check_segmentation(segmentation) == "tokenizer":
        return None
    return CopyAlignedEncoder(tokenizer, segmentation)


__all__ = ["SEGMENTATIONS", "UNIT", "UNIT_PATTERNS", "CopyAlignedEncoder", "check_segmentation",
           "sentencepiece_model", "unit_encoder", "units"]
