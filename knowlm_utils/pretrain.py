"""Stage 05 — pretraining a LLaMA on the typed token index with the Hugging Face ``Trainer``
(optionally under DeepSpeed ZeRO), the one entry point for the notebook, ``make course``,
``knowlm pretrain`` and a cluster job (``scripts/pretrain.py``).

What it adds to a plain ``Trainer`` run, and why (the training parts it shares with SFT live in
:mod:`knowlm_utils.train`):

* **Typed batches.** KnowLM mixed Chinese, English and code *per batch*. Each micro batch is
  drawn from the index's type ranges in fixed proportions by
  :class:`~knowlm_utils.train.sampling.ProportionalBatchSampler`, whose batch ``k`` is a pure
  function of ``k``. With ``W`` processes, rank ``r`` takes the sampler's batch ``k·W + r`` at
  micro step ``k`` (:class:`~knowlm_utils.train.sampling.RankBatchSampler`): every rank gets a
  different, deterministic share and every micro batch keeps the proportions. (The Trainer's own
  sampler would shuffle without types.)
* **Exact resume.** The Trainer resumes data by replaying batches (``skip_first_batches``),
  which for a mapped sampler is both slow and, with prefetching, easy to get off by one. Here
  the sampler simply *starts* at ``global_step × grad_accum`` (``ignore_data_skip=True``), so a
  run stopped at step k and resumed gives the same batches, losses and weights as one that never
  stopped (tested to ~1e-6 on CPU).
* **Verified resume.** Resuming unpickles checkpoint files (DeepSpeed uses
  ``torch.load(weights_only=False)``), so every checkpoint is signed when it is saved (a SHA-256
  manifest of its files under the user's HMAC key) and ``resume_from`` is verified first thing,
  before any model or Trainer exists: an unsigned, changed, incomplete or foreign checkpoint stops
  the run with a one-line error naming the file (:mod:`knowlm_utils.train.checkpoints`).
  ``model.init_from`` loads safetensors only, never ``pytorch_model.bin`` (a pickle).
* **Per-type held-out loss** on the valid index (each type's range separately, token-weighted),
  next to a **unigram baseline**: the cross-entropy of add-one-smoothed train-token frequencies
  on the same valid tokens — "has the model learned anything beyond word frequencies?"
  (:mod:`knowlm_utils.train.evaluation`).
* **Two-stage training** as in Chinese-LLaMA-Alpaca: ``embeddings`` (only ``embed_tokens`` and
  ``lm_head`` train: new vocabulary rows learn to fit a frozen model) and ``lora+embeddings``
  (PEFT LoRA on attention/MLP plus full ``embed_tokens``/``lm_head`` via ``modules_to_save``).
* **Vocabulary growth.** ``model.init_from`` with a larger tokenizer (after ``knowlm tokenizer
  extend``) grows ``embed_tokens``/``lm_head``: old rows bit-identical, new rows by
  ``init_embeddings: mean`` (default) or ``subword`` (notebook 02's rule), after checking that the
  new tokenizer keeps the old pieces at the same ids (:func:`grow_embeddings`).
* **DeepSpeed** from a JSON path, an inline dict or a short spec ``{stage: 3}``; on CPU the
  config is adapted (fp32, no pinned memory, see :func:`knowlm_utils.launch.adapt_for_cpu`) and
  ZeRO-3 always gathers 16-bit weights on save, so the final model is a normal HF folder. Under
  ZeRO-3 the model is created already partitioned (``deepspeed.zero.Init``), so a fresh ZeRO-3
  model differs from the same seed's non-ZeRO-3 one (same distribution, other draws).
* Artifacts: ``OUTPUT/checkpoint-N`` (Trainer checkpoints), ``OUTPUT/final`` (safetensors +
  tokenizer files; ``AutoModelForCausalLM.from_pretrained`` loads it), ``OUTPUT/log_history.json``
  (rewritten atomically at every log, for live plots) and ``OUTPUT/metrics.json`` at the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import Overrides, StageConfig, field, stage_command
from .fileio import write_json_atomic
from .train.checkpoints import resolve_resume, save_final
from .train.collate import CausalLMCollator, pad_token
from .train.config import LoraSection, ModelSection, TrainingArgs
from .train.deepspeed import Runtime, resolve_runtime, zero_stage
from .train.evaluation import TypedEvaluator, eval_indices, unigram_counts, unigram_cross_entropy
from .train.lora import STAGES, apply_stage, trainable_parameter_count

EMBEDDING_INITS = ("mean", "subword")
from .train.sampling import RankBatchSampler
from .train.trainer import (LOG_HISTORY, METRICS, is_main_process, last_eval, make_trainer_class, resume_sampler,
                            follow_schedule_fit, session_callbacks, stop_message, stopped_by, training_arguments)


# ============================================================================ config ======
@dataclass
class PretrainConfig(StageConfig, TrainingArgs):
    """Everything a pretraining run needs: the data and model below plus the training loop of
    :class:`~knowlm_utils.train.config.TrainingArgs` (its keys at the top level too). Relative
    paths are taken from ``workdir`` when it is set, else from the folder of the YAML file
    (``base_dir``)."""

    train_index: str = field(help="prefix of the training index (PREFIX.bin/.idx, e.g. index/train)")
    tokenizer: str = field(help="tokenizer folder (tokenizer.model + HF files) the index was encoded with")
    output_dir: str = field(help="checkpoints, final model, log_history.json and metrics.json go here")
    valid_index: str | None = field(None, help="prefix of the held-out index (per-type eval); None: no eval")
    workdir: str | None = field(None, help="base of the relative paths above (the course workdir)")
    model: ModelSection = field(default_factory=ModelSection, help="model shape or checkpoint")
    seq_length: int = field(1024, ge=2, help="longest sample in tokens (at least one input and one target); longer "
                                             "index samples are truncated (counted)")
    proportions: dict[str, float] = field(default_factory=dict, ge=0, help="type -> share of every micro batch; "
                                          "empty: shares proportional to each type's sample count")
    eval_max_samples_per_type: int | None = field(None, ge=1, help="cap the valid samples per type (evenly spaced)")
    unigram_max_tokens: int = field(200_000_000, ge=1, help="count at most this many train tokens for the unigram "
                                                      "baseline (evenly spaced chunks beyond it)")
    stage: str = field("full", choices=STAGES, help="full | embeddings (only embed_tokens + lm_head) | "
                                                    "lora+embeddings")
    lora: LoraSection = field(default_factory=LoraSection, help="LoRA settings for stage lora+embeddings")
    embeddings_lm_head: bool = field(True, help="stage embeddings: train lm_head too (default); false: only "
                                     "embed_tokens, as Chinese-LLaMA-Alpaca's stage 1 (2.97 % of the 7B model)")
    init_embeddings: str = field("mean", choices=EMBEDDING_INITS,
                                 help="new embedding/LM-head rows when the tokenizer is larger than model.init_from's "
                                      "vocabulary (after vocabulary extension): mean (of the old rows) | subword (mean "
                                      "of the rows of the old-tokenizer pieces each new piece's text encodes to, as "
                                      "in notebook 02)")
    init_tokenizer: str | None = field(None, help="the tokenizer model.init_from was trained with (a folder or "
                                       ".model), for init_embeddings: subword and the check that the new tokenizer "
                                       "extends it; None: model.init_from's own tokenizer files")

    def validate(self) -> None:
        super().validate()
        if not self.embeddings_lm_head and self.stage != "embeddings":
            raise ValueError(f"embeddings_lm_head: false only applies to stage embeddings, not {self.stage!r}")
        if self.init_tokenizer and not self.model.init_from:
            raise ValueError("init_tokenizer names the tokenizer of model.init_from, which is not set")
        if self.stage != "full" and not self.model.init_from:
            raise ValueError(f"stage {self.stage!r} trains only part of a model, so it needs model.init_from (a "
                             "pretrained model folder, e.g. the output of a full stage); a frozen random model "
                             "would learn nothing useful")
        if self.proportions and sum(self.proportions.values()) <= 0:
            raise ValueError(f"proportions must be finite numbers >= 0, not all zero; got {self.proportions!r}")


def load_pretrain_config(path: str | os.PathLike, overrides: Overrides = None) -> PretrainConfig:
    """``PretrainConfig`` from YAML (+ ``key=value`` overrides); ``base_dir`` = the YAML's folder."""
    return PretrainConfig.from_yaml(path, overrides)


# ============================================================================ data ========
@dataclass
class _Data:
    """The opened indexes of a run and the valid samples evaluated per type."""

    train: Any
    valid: Any | None
    eval_indices: dict[str, np.ndarray]

    @property
    def has_eval(self) -> bool:
        return bool(self.eval_indices)


def default_proportions(type_ranges: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Each type's share = its share of the samples (what uniform sampling would give)."""
    return {k: float(e - s) for k, (s, e) in type_ranges.items() if e > s}


def _open_index(prefix: Path, key: str):
    from .index import MMapTokenIndex, index_paths

    if not index_paths(prefix)["idx"].is_file():
        raise FileNotFoundError(f"{key}: no token index at {prefix} (.idx/.bin). It is produced by notebook "
                                "04_mmap_token_index or `knowlm preprocess CONFIG.yaml --out WORKDIR/index`; "
                                "check workdir / the path in the config")
    return MMapTokenIndex(prefix)


def _open_data(config: PretrainConfig) -> _Data:
    train = _open_index(config.path(config.train_index), "train_index")
    valid = _open_index(config.path(config.valid_index), "valid_index") if config.valid_index else None
    indices = eval_indices(valid.type_ranges, config.eval_max_samples_per_type) if valid is not None else {}
    return _Data(train, valid, indices)


def _check_index_against_tokenizer(index, tokenizer_dir: Path, vocab_size: int) -> None:
    m = index.manifest or {}
    if m.get("vocab_size") is not None and int(m["vocab_size"]) > vocab_size:
        raise ValueError(f"{index.paths['manifest']}: the index was written with vocab_size {m['vocab_size']}, larger "
                         f"than the model's {vocab_size}: its ids would index past the embedding")
    sha = (m.get("tokenizer") or {}).get("sha256") if isinstance(m.get("tokenizer"), dict) else None
    if sha and (tokenizer_dir / "tokenizer.model").is_file():
        from .spm import sha256

        mine = sha256(tokenizer_dir)
        if mine != sha:
            raise ValueError(f"{index.paths['manifest']} was encoded with a tokenizer whose tokenizer.model has sha256 "
                             f"{sha[:16]}…, but {tokenizer_dir}/tokenizer.model is {mine[:16]}…: train with the "
                             "tokenizer the index was built with")


# ============================================================================ model =======
def build_pretrain_model(config: PretrainConfig, tokenizer_dir: Path, log=print, report: dict | None = None):
    """The model to train: ``model.init_from`` (its vocabulary grown to the tokenizer's when the
    tokenizer is larger, as after Chinese vocabulary extension, with ``init_embeddings``: mean or
    subword, see :func:`grow_embeddings`) or a fresh ``model.preset`` whose vocabulary follows the
    tokenizer. ``report`` (a dict) receives what the growing did."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    from .modeling import build_model, model_config, tokenizer_info

    info = tokenizer_info(tokenizer_dir)
    zero3 = is_deepspeed_zero3_enabled()  # set by TrainingArguments with a ZeRO-3 config
    if zero3:
        import deepspeed

        deepspeed.init_distributed()  # zero.Init needs the process group now (idempotent; the Trainer reuses it)
    if config.model.init_from:
        from transformers import AutoModelForCausalLM

        src = config.path(config.model.init_from)
        check_safetensors_model(src, "model.init_from")
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype="float32", use_safetensors=True,
                                                     trust_remote_code=False, local_files_only=True)
        if info.vocab_size > int(model.config.vocab_size):
            if zero3:
                raise ValueError(
                    f"model.init_from: {src} has {model.config.vocab_size} embedding rows but the tokenizer "
                    f"{tokenizer_dir} has {info.vocab_size} pieces: growing the embeddings needs the whole matrices, "
                    "which ZeRO-3 partitions over the ranks; run this first stage with ZeRO-2 (deepspeed: {stage: 2}, "
                    "as configs/pretrain/chinese-llama-7b-stage1.yaml does): its final/ has the grown vocabulary and "
                    "later runs may use ZeRO-3")
            grown = grow_embeddings(model, tokenizer_dir, config.init_embeddings,
                                    config.path(config.init_tokenizer) if config.init_tokenizer else src,
                                    explicit_old_tokenizer=bool(config.init_tokenizer))
            log(f"model: grew the embeddings of {src} from {grown['old_size']} to the tokenizer's {grown['new_size']} "
                f"rows ({grown['init']} init"
                + (f", {grown['mean_fallback']} rows without subwords took the mean" if grown["init"] == "subword"
                   else "") + ")")
            if report is not None:
                report.update(grown)
        return model, info
    overrides = dict(config.model.overrides)
    overrides.setdefault("max_position_embeddings", max(config.seq_length,
                                                        _shape_positions(config.model.preset)))
    cfg = model_config(config.model.preset, tokenizer_dir,
                       pad_vocab_to_multiple_of=config.model.pad_vocab_to_multiple_of, **overrides)
    if zero3:  # built directly in partitions (deepspeed.zero.Init) by transformers
        import torch
        from transformers import AutoModelForCausalLM

        torch.manual_seed(config.seed)
        return AutoModelForCausalLM.from_config(cfg), info
    return build_model(cfg, seed=config.seed), info


def _sentencepiece_of(path: Path) -> Path | None:
    """The tokenizer.model of a tokenizer folder or a .model path; None when there is none."""
    candidate = path / "tokenizer.model" if path.is_dir() else path
    return candidate if candidate.is_file() else None


def check_extends(old_tokenizer: Path, new_tokenizer: Path, rows: int) -> int:
    """Check that ``new_tokenizer`` keeps ``old_tokenizer``'s pieces at the same ids (it only
    appends), so that the model's first rows still belong to the same pieces; both are
    SentencePiece models (folders or .model files). Returns the number of pieces compared.
    Raises ValueError naming the first id that differs."""
    from .spm import load_processor

    old, new = load_processor(old_tokenizer), load_processor(new_tokenizer)
    n = min(old.get_piece_size(), rows)
    if new.get_piece_size() < n:
        raise ValueError(f"tokenizer {new_tokenizer} has {new.get_piece_size()} pieces, fewer than the {n} of "
                         f"{old_tokenizer}: it does not extend it")
    for i in range(n):
        if old.id_to_piece(i) != new.id_to_piece(i):
            raise ValueError(f"tokenizer {new_tokenizer} does not extend {old_tokenizer}: id {i} is "
                             f"{new.id_to_piece(i)!r} there but {old.id_to_piece(i)!r} in the model's tokenizer, so "
                             "the model's trained rows would belong to other pieces; extend the model's own "
                             "tokenizer (`knowlm tokenizer extend --base ...`) or set init_tokenizer")
    return n


def grow_embeddings(model, tokenizer_dir: Path, init: str, old_tokenizer: Path,
                    explicit_old_tokenizer: bool = False) -> dict[str, Any]:
    """Grow ``model``'s input embeddings and LM head to ``tokenizer_dir``'s vocabulary with
    notebook 02's :func:`knowlm_utils.tokenizer.resize_embeddings`: old rows stay bit-identical,
    new rows get the ``mean`` of the old rows or, with ``subword``, the mean of the rows of the
    old-tokenizer pieces the new piece's text encodes to (``old_tokenizer``: the model's own
    tokenizer, a folder or .model). When the old tokenizer is a SentencePiece model, the new one is
    first checked to extend it (:func:`check_extends`). Returns resize_embeddings' report plus
    ``checked_pieces`` and ``init_tokenizer``."""
    from .tokenizer import resize_embeddings

    if init not in EMBEDDING_INITS:
        raise ValueError(f"init_embeddings must be one of {EMBEDDING_INITS}, got {init!r}")
    old_sp = _sentencepiece_of(old_tokenizer)
    key = "init_tokenizer" if explicit_old_tokenizer else "model.init_from"
    if old_sp is None and (init == "subword" or explicit_old_tokenizer):
        raise FileNotFoundError(f"{key}: no tokenizer.model at {old_tokenizer}: init_embeddings: {init} needs the "
                                "SentencePiece model the initial model was trained with (set init_tokenizer to it)"
                                if init == "subword" else f"{key}: no tokenizer.model at {old_tokenizer}")
    rows = int(model.get_input_embeddings().weight.shape[0])
    checked = check_extends(old_sp, tokenizer_dir, rows) if old_sp is not None else 0
    report = resize_embeddings(model, tokenizer_dir, init=init,
                               base_tokenizer=old_sp if init == "subword" else None)
    return {**report, "checked_pieces": checked, "init_tokenizer": str(old_sp) if old_sp else None}


def check_safetensors_model(src: Path, key: str) -> None:
    """Refuse a model folder that cannot be loaded without unpickling: it needs config.json and
    safetensors weights (``model.safetensors`` or a sharded ``model.safetensors.index.json``);
    ``pytorch_model.bin`` is a pickle (loading it can run code) and is never read.
    Raises FileNotFoundError."""
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{key}: {src} is not a Hugging Face model folder (no config.json)")
    if not ((src / "model.safetensors").is_file() or (src / "model.safetensors.index.json").is_file()):
        pickled = sorted(p.name for p in src.glob("pytorch_model*.bin"))
        raise FileNotFoundError(
            f"{key}: {src} has no safetensors weights (model.safetensors)"
            + (f", only {pickled[0]}, a pickle that knowlm never loads (it can run code); convert it where you "
               "trust it: AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(NEW_DIR)" if pickled else ""))


def _shape_positions(preset: str) -> int:
    from .modeling import get_shape

    return get_shape(preset).max_position_embeddings


@dataclass
class _Model:
    """The model ready to train and what the run reports about it."""

    model: Any
    tokenizer_info: Any
    vocab_size: int
    trains_what: str
    trainable: int
    total: int
    embedding_init: dict[str, Any]


def _prepare_model(config: PretrainConfig, tokenizer_dir: Path, data: _Data) -> _Model:
    """Build the model, check the indexes against it and the tokenizer, and freeze/wrap it for
    the training stage."""
    grown: dict[str, Any] = {}
    model, tok_info = build_pretrain_model(config, tokenizer_dir, log=_print, report=grown)
    vocab_size = int(model.config.vocab_size)  # (ZeRO-3 partitioned tensors have no full shape)
    for index in (data.train, data.valid):
        if index is not None:
            _check_index_against_tokenizer(index, tokenizer_dir, vocab_size)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model, trains_what = apply_stage(model, config.stage, config.lora)
    if config.stage == "embeddings" and not config.embeddings_lm_head:
        if model.get_output_embeddings().weight is model.get_input_embeddings().weight:
            raise ValueError("embeddings_lm_head: false, but this model ties lm_head to embed_tokens (one matrix)")
        for p in model.get_output_embeddings().parameters():
            p.requires_grad = False
        trains_what = "embed_tokens only (stage 1 as Chinese-LLaMA-Alpaca: lm_head and the transformer are frozen)"
    n_trainable, n_total = trainable_parameter_count(model)
    return _Model(model, tok_info, vocab_size, trains_what, n_trainable, n_total, grown)


# ============================================================================ main ========
def _print(msg: str) -> None:
    if is_main_process():
        print(f"[pretrain] {msg}", flush=True)


def _unigram_baseline(config: PretrainConfig, data: _Data, vocab_size: int) -> tuple[dict[str, float], dict[str, Any]]:
    if not data.has_eval:
        return {}, {}
    counts, info = unigram_counts(data.train, vocab_size, config.unigram_max_tokens,
                                  progress=config.progress and is_main_process())
    return unigram_cross_entropy(counts, data.valid, data.eval_indices), info


def _report_setup(config: PretrainConfig, rt: Runtime, world: int, m: _Model, counts_per_batch: dict, pad: str,
                  unigram: dict[str, float]) -> None:
    _print(f"device {rt.device} ({rt.precision}), {world} process(es), DeepSpeed "
           f"{'ZeRO-' + str(zero_stage(rt.ds_config)) if rt.ds_config else 'off'}")
    for change in rt.ds_changes:
        _print(f"  deepspeed: {change}")
    _print(f"model: {m.total:,} parameters, {m.trainable:,} trainable ({m.trains_what}); vocab {m.vocab_size}")
    _print(f"batch: {config.micro_batch} × {config.grad_accum} accum × {world} proc = "
           f"{config.micro_batch * config.grad_accum * world} sequences of ≤ {config.seq_length} tokens per step; "
           f"proportions {counts_per_batch} per micro batch; pad id {pad}")
    if unigram:
        _print("unigram baseline (nats/token): " + ", ".join(f"{k} {v:.3f}" for k, v in unigram.items()))


def main(config: PretrainConfig | str | os.PathLike, overrides: Overrides = None) -> dict[str, Any]:
    """Run pretraining; returns the metrics written to OUTPUT/metrics.json (on every rank).
    ``config``: a :class:`PretrainConfig` or a YAML path; ``overrides`` apply to either (a copy)."""
    config = PretrainConfig.load(config, overrides)
    t_start = time.time()
    output_dir = config.path(config.output_dir)
    # first of all: a checkpoint to resume from is verified before anything could load it
    resume = resolve_resume(config, output_dir)
    config, fit = follow_schedule_fit(config, output_dir, resume, log=_print)
    rt = resolve_runtime(config)
    from .train.dataset import TokenIndexDataset
    from .train.sampling import ProportionalBatchSampler

    tokenizer_dir = config.path(config.tokenizer)
    data = _open_data(config)
    # TrainingArguments first: with a ZeRO-3 config they make transformers build/load the model
    # already partitioned over the ranks (deepspeed.zero.Init), so 13B never sits whole in one process
    args = training_arguments(config, output_dir, rt.device, rt.precision, rt.ds_config, data.has_eval)
    m = _prepare_model(config, tokenizer_dir, data)
    pad_id, pad_source = pad_token(m.tokenizer_info)
    collator = CausalLMCollator(pad_id, config.seq_length, pad_source)

    proportions = dict(config.proportions) or default_proportions(data.train.type_ranges)
    sampler = ProportionalBatchSampler(data.train.type_ranges, proportions, config.micro_batch, seed=config.seed)
    end_micro = config.max_steps * config.grad_accum

    def batch_sampler_factory(rank: int, world: int, start: int) -> RankBatchSampler:
        return RankBatchSampler(sampler, rank, world, start, end_micro)

    unigram, unigram_info = _unigram_baseline(config, data, m.vocab_size)
    evaluator = TypedEvaluator(TokenIndexDataset(data.valid) if data.valid is not None else None, data.eval_indices,
                               CausalLMCollator(pad_id, config.seq_length, pad_source),
                               config.eval_batch_size, unigram)
    session = session_callbacks(config, output_dir, t_start, fit)
    trainer = make_trainer_class()(model=m.model, args=args, train_dataset=TokenIndexDataset(data.train),
                                   eval_dataset=evaluator.dataset if data.has_eval else None, data_collator=collator,
                                   callbacks=session.callbacks, batch_sampler_factory=batch_sampler_factory,
                                   evaluator=evaluator)
    resume = resume_sampler(trainer, config, output_dir, end_micro, resume, log=_print)

    world = args.world_size
    _report_setup(config, rt, world, m, sampler.counts_per_batch, f"{pad_id} ({pad_source})", unigram)

    if trainer.is_world_process_zero() and rt.ds_config is not None:
        write_json_atomic(output_dir / "deepspeed_config.json", rt.ds_config)
    train_out = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    eval_seconds_in_loop = evaluator.seconds
    config = session.effective_config(config, log=_print)
    ended_by = stopped_by(trainer, config, session.timer)
    final_eval, final = _finish(trainer, config, data.has_eval, tokenizer_dir, output_dir, ended_by)

    tokens_seen = int(trainer.state.num_input_tokens_seen)
    session_tokens = tokens_seen - int(getattr(trainer, "_initial_num_input_tokens_seen", 0) or 0)
    runtime = float(train_out.metrics.get("train_runtime", float("nan")))
    metrics: dict[str, Any] = {
        "final_dir": str(final) if final else None, "output_dir": str(output_dir), "completed": final is not None,
        "global_step": int(trainer.state.global_step), "max_steps": config.max_steps,
        "resumed_from": str(resume) if resume else None, "stopped_by": ended_by, "schedule_fit": session.fitted(),
        "device": rt.device,
        "precision": rt.precision, "world_size": world, "deepspeed_stage": zero_stage(rt.ds_config),
        "stage": config.stage, "parameters": m.total, "trainable_parameters": m.trainable,
        "vocab_size": m.vocab_size, "pad_id": pad_id, "pad_source": pad_source,
        "embedding_init": m.embedding_init or None,  # what growing init_from's vocabulary did (None: not grown)
        "tokens_seen": tokens_seen, "train_runtime_s": runtime,
        "eval_seconds_in_loop": eval_seconds_in_loop,
        # training throughput: this session's real (non-pad) tokens over its run time minus evaluation
        "tokens_per_s": session_tokens / (runtime - eval_seconds_in_loop) if runtime > eval_seconds_in_loop else None,
        "train_loss": train_out.metrics.get("train_loss"),
        "truncated_train_samples_rank0": collator.truncated if config.dataloader_workers == 0 else None,
        "proportions": proportions, "counts_per_batch": sampler.counts_per_batch,
        "unigram": unigram, "unigram_counts": unigram_info, "final_eval": final_eval,
        "wall_s": time.time() - t_start, "config": config.to_dict(),
    }
    if trainer.is_world_process_zero():
        _write_results(trainer, output_dir, metrics, collator.truncated, config.seq_length)
    return metrics


def _finish(trainer, config: PretrainConfig, has_eval: bool, tokenizer_dir: Path,
            output_dir: Path, ended_by: str | None) -> tuple[dict[str, Any], Path | None]:
    """(final eval metrics, OUTPUT/final) after ``train()``: both only when the run reached
    max_steps (a session ended by stop_at_step or stop_after_minutes leaves its checkpoint for
    the next one)."""
    if ended_by is not None:
        _print(stop_message(trainer, config, ended_by, output_dir))
        return {}, None
    final_eval = {}
    if has_eval:  # the loop may just have evaluated at the last step: reuse that instead of a second pass
        final_eval = last_eval(trainer) or trainer.evaluate()
    lora_base = config.path(config.model.init_from) if config.stage == "lora+embeddings" else None
    return final_eval, save_final(trainer, output_dir, tokenizer_dir, lora_base=lora_base)


def _write_results(trainer, output_dir: Path, metrics: dict[str, Any], truncated: int, seq_length: int) -> None:
    """Rank 0: the final log_history.json and metrics.json, and a summary on stdout."""
    write_json_atomic(output_dir / LOG_HISTORY, trainer.state.log_history)
    write_json_atomic(output_dir / METRICS, metrics)
    final, final_eval, unigram = metrics["final_dir"], metrics["final_eval"], metrics["unigram"]
    _print(f"done: step {metrics['global_step']}, {metrics['tokens_seen']:,} tokens, "
           f"{metrics['tokens_per_s'] or 0:,.0f} tokens/s" + (f"; final model → {final}" if final else ""))
    if truncated:
        _print(f"warning: {truncated} training samples (rank 0) were longer than seq_length "
               f"{seq_length} and lost their tail: build the index with the same seq_length")
    if final_eval:
        _print(f"held-out loss {final_eval.get('eval_loss', float('nan')):.4f} vs unigram "
               f"{unigram.get('all', float('nan')):.4f}")


# ============================================================================ launching ===
def pretrain_script() -> Path:
    """``scripts/pretrain.py`` of this checkout (the one entry point every launcher runs)."""
    from .workdir import repo_root

    return repo_root() / "scripts" / "pretrain.py"


def launch_pretrain(config_path: str | os.PathLike, nprocs: int | None = None, launcher: str = "deepspeed",
                    overrides: Sequence[str] | None = None, log_path: str | os.PathLike | None = None,
                    device: str = "auto", echo: bool = True, extensions_dir: str | os.PathLike | None = None,
                    on_output=None, hostfile: str | os.PathLike | None = None, nodes: int | None = None,
                    master_port: int = 29500) -> int:
    """Run ``scripts/pretrain.py CONFIG -o k=v … -o device=D`` under ``deepspeed`` / ``torchrun``,
    streaming its output live (a notebook cell shows the progress; ``echo=False,
    on_output=LaunchProgress(...)`` shows one status line instead) and appending it to
    ``log_path``. Raises ``LaunchError`` (exit code + last lines) on failure. Returns 0.

    ``device="auto"``: the GPUs when torch sees one here, else the CPU (DeepSpeed's CPU
    accelerator; no GPU is made visible). ``nprocs``: processes per node (``None``: one per GPU, 1
    on the CPU). ``hostfile`` (+ ``nodes``): a multi-node GPU run started from this machine with
    one ``deepspeed --hostfile`` command over ssh (see :func:`knowlm_utils.launch.launch_stage`).
    A relative ``workdir=…`` override is taken from the current directory (or the repository
    root), like a notebook's ``workdir`` parameter; in the YAML itself, relative paths are taken
    from the YAML's folder."""
    from .launch import launch_stage

    return launch_stage(pretrain_script(), config_path, nprocs=nprocs, launcher=launcher, overrides=overrides,
                        log_path=log_path, device=device, echo=echo, extensions_dir=extensions_dir,
                        on_output=on_output, hostfile=hostfile, nodes=nodes, master_port=master_port)


# ============================================================================ CLI =========
def build_arg_parser(parser=None):
    """``CONFIG.yaml [-o key=value …] [--print-config]``; ``args.func(args)`` runs :func:`main`."""
    import argparse

    p = parser or argparse.ArgumentParser(prog="pretrain.py", description="KnowLM stage 05: pretrain a LLaMA")
    return stage_command(p, PretrainConfig, "configs/pretrain/", "max_steps=10 -o model.preset=cpu-small",
                         _run_command, out=False)


def _run_command(config: PretrainConfig) -> int:
    main(config)
    return 0


def add_cli(subparsers) -> None:
    """``knowlm pretrain CONFIG.yaml [-o key=value …]`` (one process; use scripts/pretrain.py
    under deepspeed/torchrun for several)."""
    build_arg_parser(subparsers.add_parser("pretrain", help="stage 05: pretrain a LLaMA on the token index (HF "
                                                            "Trainer)"))


__all__ = ["PretrainConfig", "load_pretrain_config", "build_pretrain_model", "check_safetensors_model",
           "EMBEDDING_INITS", "grow_embeddings", "check_extends", "default_proportions", "main", "launch_pretrain", "pretrain_script", "build_arg_parser", "add_cli"]
