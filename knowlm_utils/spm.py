"""SentencePiece files, the one place that finds, parses, loads and fingerprints them.

Every stage that touches a ``tokenizer.model`` (tokenizer training and extension, chunking,
preprocessing, index inspection, model building) goes through these helpers, so a path may
always be a tokenizer *folder* (``DIR/tokenizer.model``) or the ``.model`` file itself, and a
file that is not a SentencePiece model fails with one line naming it.

``sentencepiece`` is imported inside the functions: commands that never tokenize do not pay
for it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

MODEL_FILE = "tokenizer.model"


def model_file(path: str | os.PathLike) -> Path:
    """``DIR/tokenizer.model`` for a tokenizer folder, the path itself for a file."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.is_file():
        raise FileNotFoundError(f"SentencePiece model not found: {p} (give a tokenizer folder or a .model file)")
    return p


def is_processor(obj: Any) -> bool:
    """True for a loaded ``sentencepiece.SentencePieceProcessor``."""
    import sentencepiece

    return isinstance(obj, sentencepiece.SentencePieceProcessor)


def load_proto(model: Any):
    """The ``ModelProto`` of a model given as a folder, a ``.model`` file or a processor.
    Bytes that are not a SentencePiece model raise ``ValueError`` naming the file."""
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    if hasattr(model, "serialized_model_proto"):
        proto.ParseFromString(model.serialized_model_proto())
        return proto
    p = model_file(model)
    try:
        proto.ParseFromString(p.read_bytes())
    except DecodeError as exc:
        raise ValueError(f"{p} is not a SentencePiece model (protobuf: {exc})") from None
    if len(proto.pieces) == 0 or not proto.HasField("trainer_spec"):
        raise ValueError(f"{p} is not a SentencePiece model (no pieces / trainer_spec)")
    return proto


def processor_from_proto(proto):
    """A ``SentencePieceProcessor`` built from a (possibly edited) ``ModelProto``."""
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_proto=proto.SerializeToString())


def load_processor(model: Any):
    """A ``SentencePieceProcessor`` from a folder, a ``.model`` file, or a processor (returned
    as is). The file is parsed first, so a wrong file gets our one-line error, not
    sentencepiece's."""
    if is_processor(model):
        return model
    proto = load_proto(model)
    try:
        return processor_from_proto(proto)
    except RuntimeError as exc:  # parses, but sentencepiece refuses it (e.g. an inconsistent spec)
        raise ValueError(f"{model_file(model)} is not a usable SentencePiece model (sentencepiece: {exc})") from None


def without_dummy_prefix(model: Any):
    """The same model with ``normalizer_spec.add_dummy_prefix = False``: it encodes text that
    continues a document (or a piece's bare surface) without inventing a leading "▁"."""
    proto = load_proto(model)
    proto.normalizer_spec.add_dummy_prefix = False
    return processor_from_proto(proto)


def model_type_name(model: Any) -> str:
    """``"BPE"``, ``"UNIGRAM"``, ``"WORD"`` or ``"CHAR"``: the ``trainer_spec.model_type`` of a
    model (folder, ``.model`` file, processor or ``ModelProto``). An unset field reads as
    sentencepiece's default, UNIGRAM (Chinese-LLaMA-Alpaca's ``chinese_sp.model`` leaves it unset)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = model if isinstance(model, pb.ModelProto) else load_proto(model)
    return pb.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type)


def sha256(path: str | os.PathLike) -> str:
    """sha256 of the ``tokenizer.model`` bytes (streamed): names the vocabulary a token file
    was encoded with."""
    h = hashlib.sha256()
    with open(model_file(path), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["MODEL_FILE", "model_file", "is_processor", "load_proto", "processor_from_proto", "load_processor",
           "without_dummy_prefix", "model_type_name", "sha256"]
