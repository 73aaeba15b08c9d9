"""The course's shared working directory: every artifact's fixed name and its producer.

All notebooks (and the CLI) read and write inside one ``workdir``. This module is the one
place that names what lives there, so a reader can find any artifact's producer from its
name, and a notebook whose inputs are missing says which notebook makes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Artifact:
    path: str          # relative to the workdir
    producer: str      # notebook that writes it (CLI equivalent in `cli`)
    cli: str           # the same step from the command line
    description: str


ARTIFACTS: dict[str, Artifact] = {
    "corpus": Artifact(
        "corpus", "01_corpus_construction", "knowlm corpus build CONFIG.yaml --out WORKDIR/corpus",
        "cleaned JSONL shards per source (<source>/part-NNNNN.jsonl), stats.json, removed.jsonl, skipped.jsonl",
    ),
    "corpus_stats": Artifact(
        "corpus/stats.json", "01_corpus_construction", "knowlm corpus build CONFIG.yaml --out WORKDIR/corpus",
        "per-source document accounting, per-rule counts and length histograms",
    ),
    "tokenizer_base": Artifact(
        "tokenizer/base", "02_tokenizer_and_vocabulary", "knowlm tokenizer train CONFIG.yaml --out WORKDIR/tokenizer",
        "the LLaMA-like base tokenizer (mostly English + code): tokenizer.model + Hugging Face files",
    ),
    "tokenizer_zh": Artifact(
        "tokenizer/zh", "02_tokenizer_and_vocabulary", "knowlm tokenizer train CONFIG.yaml --out WORKDIR/tokenizer",
        "the Chinese SentencePiece tokenizer whose pieces extend the base vocabulary",
    ),
    "tokenizer_extended": Artifact(
        "tokenizer/extended", "02_tokenizer_and_vocabulary",
        "knowlm tokenizer extend --base BASE.model --add ZH.model --out WORKDIR/tokenizer/extended",
        "base + missing Chinese pieces (Chinese-LLaMA-Alpaca vocabulary extension): tokenizer.model + HF files",
    ),
    "tokenizer_report": Artifact(
        "tokenizer/report.json", "02_tokenizer_and_vocabulary", "knowlm tokenizer train CONFIG.yaml --out WORKDIR/tokenizer",
        "vocabulary sizes and tokens per character on held-out zh/en/code text, base vs extended",
    ),
    "chunking_report": Artifact(
        "chunking/report.json", "03_sentences_and_chunking", "knowlm chunk CONFIG.yaml --out WORKDIR/chunking",
        "samples per document, length histograms, packing efficiency and overlap for knowlm vs disjoint",
    ),
    "token_index": Artifact(
        "index", "04_mmap_token_index", "knowlm preprocess CONFIG.yaml --out WORKDIR/index",
        "train.{bin,idx,manifest.json} and valid.{bin,idx,manifest.json}: Megatron-layout token index with typed ranges",
    ),
    "pretrain_cpu_tiny": Artifact(
        "pretrain/cpu-tiny", "05_pretraining",
        "python scripts/pretrain.py configs/pretrain/cpu-tiny.yaml -o workdir=WORKDIR",
        "the course's pretraining run: final/ (HF model + tokenizer), checkpoint-N/, metrics.json, "
        "log_history.json, deepspeed_config.json, launch.log",
    ),
    "ie_instructions": Artifact(
        "ie", "06_kg2instruction", "knowlm ie build configs/ie/sample.yaml --out WORKDIR/ie",
        "IE instruction data: {train,valid,test}.jsonl, paraphrase.jsonl (test sentences in held-out wordings), "
        "annotations.jsonl, candidates.csv (for review), "
        "hf_dataset/, report.json (per-stage precision/recall, linking accuracy, split sizes)",
    ),
    "sft_cpu_course": Artifact(
        "sft/cpu-course", "07_lora_sft", "knowlm sft configs/sft/cpu-course.yaml -o workdir=WORKDIR",
        "the course's LoRA SFT run: final/ (merged model + adapter/), checkpoint-N/ (adapters), metrics.json, "
        "log_history.json, launch.log",
    ),
    "release": Artifact(
        "release", "09_release_and_recovery", "knowlm weights make-diff|recover|merge-lora|export-gguf …",
        "notebook 09's scratch folder: diff/ (tuned − raw, manifest, SHA256SUMS), recovered/, merged/, model.gguf",
    ),
}


class MissingArtifactError(FileNotFoundError):
    """An input artifact is absent; the message names the notebook that produces it."""


def repo_root() -> Path:
    """The checkout root (the folder holding pyproject.toml above this package)."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd()


def resolve_path(path: str | os.PathLike) -> Path:
    """Absolute paths stay; a relative path is taken from the cwd if it exists there,
    else from the repository root (so notebooks work from notebooks/ and from the root)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (repo_root() / p).resolve()


def artifact_path(workdir: str | os.PathLike, name: str) -> Path:
    if name not in ARTIFACTS:
        raise KeyError(f"unknown artifact {name!r}; known: {sorted(ARTIFACTS)}")
    return Path(workdir) / ARTIFACTS[name].path


def require(workdir: str | os.PathLike, name: str) -> Path:
    """Return the artifact's path, or raise an error naming the notebook that produces it."""
    path = artifact_path(workdir, name)
    if not path.exists():
        art = ARTIFACTS[name]
        raise MissingArtifactError(
            f"missing input {path} ({art.description}). It is produced by notebook "
            f"{art.producer} (or `{art.cli}`); run that first with the same workdir."
        )
    return path
