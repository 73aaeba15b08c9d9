"""Shared fixtures: small real SentencePiece models trained once per test session on the
embedded sample world (no network, a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data_samples" / "corpus"


def sample_texts(limit_per_source: int = 400) -> dict[str, list[str]]:
    """Raw documents of the sample world by language (zh, en, code), read straight from
    ``data_samples/corpus`` (noise lines that are not valid JSON objects are passed over)."""
    spec = {"zh": ("zh_baike.jsonl", "content"), "en": ("en_wiki.jsonl", "text"), "code": ("code.jsonl", "output")}
    out: dict[str, list[str]] = {}
    for lang, (name, key) in spec.items():
        texts = []
        with open(CORPUS / name, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and isinstance(row.get(key), str) and row[key].strip():
                    texts.append(row[key])
                if len(texts) >= limit_per_source:
                    break
        out[lang] = texts
    return out


@pytest.fixture(scope="session", autouse=True)
def checkpoint_key(tmp_path_factory):
    """Runs in tests (and the notebooks they execute) sign checkpoints with a key of their own,
    never the user's ~/.config/knowlm/checkpoint-key."""
    import os

    key = tmp_path_factory.mktemp("keys") / "checkpoint-key"
    old = os.environ.get("KNOWLM_CHECKPOINT_KEY_FILE")
    os.environ["KNOWLM_CHECKPOINT_KEY_FILE"] = str(key)
    yield key
    if old is None:
        os.environ.pop("KNOWLM_CHECKPOINT_KEY_FILE", None)
    else:
        os.environ["KNOWLM_CHECKPOINT_KEY_FILE"] = old


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``knowlm ARGV`` in this process: (exit code, stdout, stderr)."""
    from knowlm_utils import cli

    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str, command: str = "") -> str:
    """Exit code 2 and exactly one ``knowlm COMMAND: error: …`` line on stderr holding every
    needle, no traceback; returns the line."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    line = lines[0]
    assert line.startswith(f"knowlm {command}") and ": error: " in line, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def build_sample_corpus(out: Path, max_docs_per_source: int) -> Path:
    """The sample world's cleaned corpus (stage 01 on configs/corpus/sample.yaml), first
    ``max_docs_per_source`` records of each source, built into ``out``."""
    from knowlm_utils.corpus import CorpusConfig, build

    build(CorpusConfig.from_yaml(ROOT / "configs" / "corpus" / "sample.yaml",
                                 ["progress=false", f"max_docs_per_source={max_docs_per_source}"]), out)
    return out


@pytest.fixture(scope="session")
def sample_corpus_80(tmp_path_factory) -> Path:
    """A cleaned corpus of 80 records per source (stage 03/04 tests)."""
    return build_sample_corpus(tmp_path_factory.mktemp("corpus") / "corpus", 80)


@pytest.fixture(scope="session")
def sample_docs() -> dict[str, list[str]]:
    return sample_texts()


def train_sample_spm(docs_by_source: dict[str, list[str]], folder: Path, prefix: str = "sp",
                     num_threads: int = 2) -> Path:
    """A 2000-piece BPE SentencePiece model (LLaMA's settings: byte fallback, identity
    normalisation, dummy prefix, split digits) trained on ``docs_by_source`` → ``folder/prefix.model``
    (the training text is removed; ``tests/e2e/e2e_model.py`` builds its tokenizer with this too)."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    text = folder / f"{prefix}-train.txt"
    with open(text, "w", encoding="utf-8") as fh:
        for docs in docs_by_source.values():
            for doc in docs:
                fh.write(doc.replace("\r", " ") + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(folder / prefix), vocab_size=2000, model_type="bpe",
        character_coverage=0.9995, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
        max_sentence_length=100000, num_threads=num_threads, minloglevel=2,
    )
    text.unlink()
    return folder / f"{prefix}.model"


@pytest.fixture(scope="session")
def sp_model_path(tmp_path_factory, sample_docs) -> Path:
    """The session's 2000-piece BPE SentencePiece model (:func:`train_sample_spm`) on zh + en + code
    sample text."""
    return train_sample_spm(sample_docs, tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="module")
def sp(sp_model_path):
    """The session's SentencePiece model, loaded (generation and prediction tests)."""
    from knowlm_utils.spm import load_processor

    return load_processor(sp_model_path)


@pytest.fixture(scope="module")
def model(sp_model_path):
    """A tiny LLaMA (``modeling.tiny_llama``, seed 0) over the session's tokenizer, in eval mode."""
    from knowlm_utils.modeling import tiny_llama

    return tiny_llama(sp_model_path, seed=0).eval()


@pytest.fixture(scope="module")
def model_dir(model, sp_model_path, tmp_path_factory):
    """``model`` saved as safetensors with tokenizer.model and the Hugging Face tokenizer files (what
    ``knowlm eval ie --model`` loads)."""
    import shutil

    from knowlm_utils.tokenizer import write_hf_files

    d = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(d)
    shutil.copy(sp_model_path, d / "tokenizer.model")
    write_hf_files(d)
    return d


# ------------------------------------------------------------------ stage 09 (weights release) ----


def release_config(vocab_size: int = 2000, **overrides):
    """A tiny LLaMA config for the weights-release tests: hidden 32, 2 layers, 4 heads."""
    from transformers import LlamaConfig

    kw = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=4, max_position_embeddings=128, bos_token_id=1, eos_token_id=2)
    kw.update(overrides)
    return LlamaConfig(**kw)


def save_release_model(model, folder: Path, tokenizer_dir: Path | None = None, **save_kwargs) -> Path:
    """``model.save_pretrained(folder)`` (safetensors unless told otherwise) plus the tokenizer files."""
    import shutil

    model.save_pretrained(folder, **save_kwargs)
    if tokenizer_dir is not None:
        for p in Path(tokenizer_dir).iterdir():
            if p.is_file() and (p.name.startswith("tokenizer") or p.name == "special_tokens_map.json"):
                shutil.copyfile(p, folder / p.name)
    return folder


@pytest.fixture(scope="session")
def hf_tokenizer_dir(sp_model_path, tmp_path_factory) -> Path:
    """The session's SentencePiece model as a Hugging Face tokenizer folder (2000 tokens)."""
    import shutil

    from knowlm_utils.tokenizer import write_hf_files

    d = tmp_path_factory.mktemp("hf_tok")
    shutil.copyfile(sp_model_path, d / "tokenizer.model")
    write_hf_files(d)
    return d


@pytest.fixture(scope="session")
def extended_tokenizer_dir(sp_model_path, tmp_path_factory) -> Path:
    """The session tokenizer extended with 10 pieces (Chinese-LLaMA-Alpaca's way: a merged
    tokenizer.model + HF files), 2010 tokens."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    from knowlm_utils import spm
    from knowlm_utils.tokenizer import extend_vocabulary

    proto = spm.load_proto(sp_model_path)
    low = min(p.score for p in proto.pieces)
    for k in range(10):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = f"新词{k}", low - 1 - k, pb.ModelProto.SentencePiece.NORMAL
    root = tmp_path_factory.mktemp("ext_tok")
    (root / "add.model").write_bytes(proto.SerializeToString())
    extend_vocabulary(sp_model_path, root / "add.model", root / "tok")
    return root / "tok"
