"""The ``knowlm`` command: one subcommand per pipeline stage, each a thin wrapper over the
stage module's ``main(config, overrides=None)`` / functions (the same code the notebooks call).

    knowlm corpus build|evaluate     stage 01  knowlm_utils.corpus (--executor: knowlm_utils.corpus_datatrove)
    knowlm tokenizer train|extend    stage 02  knowlm_utils.tokenizer
    knowlm chunk                     stage 03  knowlm_utils.chunk_report
    knowlm preprocess                stage 04  knowlm_utils.preprocess
    knowlm index inspect|merge|…     stage 04  knowlm_utils.index
    knowlm launch …                  stage 05  knowlm_utils.launch (DeepSpeed configs, hostfiles, Slurm)
    knowlm pretrain                  stage 05  knowlm_utils.pretrain
    knowlm ie build                  stage 06  knowlm_utils.kg2instruction.pipeline
    knowlm sft                       stage 07  knowlm_utils.sft.train (LoRA instruction tuning)
    knowlm eval ie                   stage 08  knowlm_utils.ie.eval_cli (P/R/F1 of generated answers)
    knowlm weights make-diff|recover stage 09  knowlm_utils.release.cli (weight diffs, LoRA merge, GGUF)
    knowlm checksum make|verify      stage 09  knowlm_utils.release.checksums (SHA256SUMS / MD5SUMS)
    knowlm hub download|upload       stage 09  knowlm_utils.release.hub (Hugging Face Hub, verified)
    knowlm generate                  stage 10  knowlm_utils.generate_cli (prompts, case files, --interactive)
    knowlm serve                     stage 10  knowlm_utils.serve (HTTP API: /generate, OpenAI /v1)
    knowlm course run                          knowlm_utils.course (papermill)

Config-driven commands take ``CONFIG.yaml``, ``-o key=value`` and ``--print-config``, and
their ``--help`` lists every config field.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .config import ConfigError

# command -> module that registers it through ``add_cli(subparsers)``, in pipeline order
COMMANDS: dict[str, str] = {
    "corpus": "corpus", "tokenizer": "tokenizer", "chunk": "chunk_report", "preprocess": "preprocess",
    "index": "index", "launch": "launch", "pretrain": "pretrain", "ie": "kg2instruction.pipeline", "sft": "sft.train", "eval": "ie.eval_cli",
    "weights": "release.cli", "checksum": "release.checksums", "hub": "release.hub",
    "generate": "generate_cli", "serve": "serve", "course": "course",
}
# configs/<folder>/*.yaml -> "module:ConfigClass" (a test loads every YAML with its class)
CONFIG_CLASSES: dict[str, str] = {
    "corpus": "corpus:CorpusConfig", "tokenizer": "tokenizer:TokenizerConfig", "chunk": "chunk_report:ChunkConfig",
    "preprocess": "preprocess:PreprocessConfig", "pretrain": "pretrain:PretrainConfig", "ie": "kg2instruction.pipeline:KG2InstructionConfig",
    "sft": "sft.train:SFTConfig", "course": "course:CourseConfig",
}


def config_class(folder: str) -> type:
    """The config class of the YAMLs in ``configs/<folder>/``."""
    if folder not in CONFIG_CLASSES:
        raise KeyError(f"configs/{folder}/ has no config class; known: {sorted(CONFIG_CLASSES)}")
    module, name = CONFIG_CLASSES[folder].split(":")
    return getattr(importlib.import_module(f"knowlm_utils.{module}"), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knowlm", description="KnowLM Course pipeline: one command per stage "
                                     "(CONFIG.yaml, -o key=value, --print-config; --help lists every field).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n\n")[1].splitlines()))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(f"knowlm_utils.{module}").add_cli(sub)
    # `knowlm corpus build --executor local|slurm|ray --tasks N`: the datatrove path (issue 16)
    from .corpus_datatrove.cli import extend_corpus_build
    extend_corpus_build(sub.choices["corpus"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, OSError) as exc:  # bad input or an unusable path: one line, no traceback
        print(f"knowlm {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in str(exc.args):
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def console_main() -> None:
    """The ``knowlm`` console script: :func:`main`, ended like a training rank (a run that used
    ``torch.distributed`` leaves its process group and skips the interpreter's teardown, see
    :mod:`knowlm_utils.train.ranks`). Tests and notebooks call :func:`main`, which only returns."""
    from .train.ranks import run_rank

    run_rank(main)


if __name__ == "__main__":
    console_main()
