"""Stage 07 — LoRA instruction tuning (SFT) of the pretrained model on stage 06's records.

One entry point, :func:`main` (``knowlm sft CONFIG.yaml``, ``scripts/sft.py``, the notebook),
run as a plain process or under ``deepspeed``/``torchrun`` like pretraining (the same
``launch_pretrain``-style helper, :func:`launch_sft`). It reuses the training package:

* records (``<data_dir>/{train,valid}.jsonl``) → prompts (:mod:`.prompter`) → token ids with the
  prompt masked and the answer always ending in EOS (:mod:`.data`);
* every micro batch drawn from the record groups in fixed proportions — IE vs general by
  ``general_ratio`` (KnowLM mixed IE, general, CoT and code instructions), and copy records by
  ``copy_ratio`` (:mod:`.copy_task`: the model writes its input back, so every answer token is a
  copy target), and the IE part split among tasks by ``task_shares`` when set — by the same exactly
  resumable sampler as pretraining (:class:`~knowlm_utils.train.sampling.ProportionalBatchSampler`);
* held-out loss on the answer tokens per task (:class:`~knowlm_utils.train.evaluation.TypedEvaluator`);
* PEFT LoRA (KnowLM: r 16, α 32, dropout 0.05 on q/k/v/o/gate/up/down); when the tokenizer is
  larger than the model's vocabulary (Chinese vocabulary extension), embeddings are resized and
  ``embed_tokens``/``lm_head`` train in full (``modules_to_save``, Chinese-LLaMA-Alpaca's rule);
* signed checkpoints, exact resume, and ``OUTPUT/final``: the merged model plus ``adapter/`` (a
  standard PEFT ``adapter_model.safetensors``, checked non-empty).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Overrides, StageConfig, field, stage_command
from ..fileio import write_json_atomic
from ..train.config import LoraSection, TrainingArgs
from .data import SFTDataOptions


@dataclass
class SFTConfig(StageConfig, TrainingArgs):
    """Stage 07: LoRA instruction tuning on stage 06's IE records mixed with general ones."""

    base_model: str = field(help="the pretrained HF model folder (safetensors), e.g. WORKDIR/pretrain/cpu-tiny/final")
    data_dir: str = field(help="stage 06 output: train.jsonl and valid.jsonl of instruction records")
    output_dir: str = field(help="checkpoints, final/ (merged model + adapter/), metrics.json go here")
    tokenizer: str | None = field(None, help="tokenizer folder (default: the base model's folder)")
    workdir: str | None = field(None, help="base of the relative paths above (the course workdir)")
    data: SFTDataOptions = field(default_factory=SFTDataOptions, help="prompting and tokenisation")
    tasks: list[str] = field(default_factory=lambda: ["NER", "RE", "EE"], choices=("NER", "RE", "EE"),
                             help="IE tasks to train on")
    styles: list[str] = field(default_factory=lambda: ["text", "iepile"], choices=("text", "iepile"),
                              help="instruction styles to train on")
    langs: list[str] = field(default_factory=lambda: ["zh", "en"], choices=("zh", "en"), help="languages")
    general_ratio: float = field(0.2, ge=0, lt=1, help="share of every micro batch taken from the general "
                                 "(Alpaca) records; 0: IE only")
    max_train_records: int | None = field(None, ge=1, help="read at most this many IE train records (evenly "
                                          "spaced; course presets)")
    empty_answer_share: float | None = field(None, ge=0, lt=1, help="at most this share of each task's IE train "
                                             "records (per language and style) may have an answer with nothing in "
                                             "it (IEPile's negative schema chunks: 51 % of the RE records); the "
                                             "surplus is dropped before max_train_records, evenly spaced, and "
                                             "counted (knowlm_utils.sft.empty_answers; measured no gain at 0.25, README); "
                                             "null: keep all")
    max_eval_records: int | None = field(200, ge=1, help="held-out records per task for the eval loss")
    lora: LoraSection = field(default_factory=lambda: LoraSection(r=16, alpha=32, dropout=0.05),
                              help="LoRA settings (KnowLM: r 16, alpha 32, dropout 0.05, all projections)")
    gradient_checkpointing: bool = field(False, help="recompute activations in the backward pass (13B: on)")
    name_substitution: float = field(0.0, ge=0, le=1, help="share of the IE train records whose entity names "
                                     "are replaced (answer and input) by new names built from the answers' "
                                     "characters/syllables, so the model learns to copy names instead of "
                                     "memorising them (knowlm_utils.sft.names); 0: off")
    schema_shuffle: float = field(0.0, ge=0, le=1, help="share of the IEPile train records whose schema order "
                                  "is shuffled (instruction and answer keys alike), so the model reads each key "
                                  "instead of learning where a type usually stands (knowlm_utils.sft.schema_order); "
                                  "0: off")
    copy_ratio: float = field(0.0, ge=0, lt=1, help="share of every micro batch taken from copy records (the IE "
                              "train sentences, name-substituted, to be written back verbatim: every answer "
                              "token is a copy target; knowlm_utils.sft.copy_task); 0: off")
    copy_group: int = field(4, ge=1, help="sentences joined into one copy record")
    task_shares: dict[str, float] = field(default_factory=dict, ge=0, help="task -> weight of its records in the IE "
                                          "part of every micro batch (e.g. {NER: 2, RE: 1}: two NER records for each "
                                          "RE one, each task a sampler group of its own); every task of tasks needs "
                                          "a weight; empty: one IE group, each task as often as it has records")
    group_by_length: int = field(0, ge=0, help="deal the samples of every N consecutive micro batches out again by "
                                 "length, each type sorted on its own, so a micro batch pads less (type counts per "
                                 "batch, the samples seen and exact resume unchanged; knowlm_utils.train.sampling."
                                 "LengthGroupedBatches, Hugging Face's group_by_length); 0 or 1: off")
    init_adapter: str | None = field(None, help="start the LoRA weights (and full embeddings) from this adapter "
                                     "folder — a run's final/adapter or checkpoint-N, safetensors only — with a fresh "
                                     "optimizer and schedule: continue a trained adapter on other data or settings "
                                     "(resume_from instead continues one run; a resumed checkpoint wins)")
    answer_logits_only: bool = field(True, help="training loss from the answer positions' logits only (prompt "
                                     "labels are -100): the same loss without the output head and softmax over the "
                                     "prompt (benchmarks/bench_sft_answer_logits.py); false: the Trainer's own path")
    full_embeddings: str = field("auto", choices=("auto", "always", "never"),
                                 help="train embed_tokens/lm_head in full: auto = when the tokenizer is larger "
                                      "than the model's vocabulary (extended vocabulary)")

    def validate(self) -> None:
        super().validate()
        if self.general_ratio + self.copy_ratio >= 1:
            raise ValueError(f"general_ratio + copy_ratio must be < 1 (IE records need a share), got "
                             f"{self.general_ratio} + {self.copy_ratio}")
        if self.task_shares:
            unknown = sorted(set(self.task_shares) - set(self.tasks))
            if unknown:
                raise ValueError(f"task_shares: {unknown} not in tasks {self.tasks}")
            missing = [t for t in self.tasks if t not in self.task_shares]
            if missing:
                raise ValueError(f"task_shares: no weight for task(s) {missing} (give every task of tasks a weight, "
                                 "0 to leave it out of the batches)")
            if sum(self.task_shares.values()) <= 0:
                raise ValueError(f"task_shares: the weights must not all be 0, got {self.task_shares}")


def load_sft_config(path: str | os.PathLike, overrides: Overrides = None) -> SFTConfig:
    """``SFTConfig.from_yaml``: relative paths in the file are taken from its folder."""
    return SFTConfig.from_yaml(path, overrides)


def _print(msg: str) -> None:
    from ..train.trainer import is_main_process

    if is_main_process():
        print(f"[sft] {msg}", flush=True)


def select_records(records, config: SFTConfig, empty_stats: list | None = None) -> tuple[list[dict], list[dict]]:
    """(IE records of the configured tasks/styles/langs, general records) of one split; the IE
    ones' empty answers capped at ``empty_answer_share`` (the counts appended to ``empty_stats``), then
    thinned to ``max_train_records`` evenly spaced (every task keeps its share)."""
    ie, general = [], []
    for r in records:
        if r["task"] == "GENERAL":
            if r["lang"] in config.langs:
                general.append(r)
        elif r["task"] in config.tasks and r["style"] in config.styles and r["lang"] in config.langs:
            ie.append(r)
    if config.empty_answer_share is not None:
        from .empty_answers import cap_empty_answers

        ie, stats = cap_empty_answers(ie, config.empty_answer_share)
        if empty_stats is not None:
            empty_stats.append(stats)
    if config.max_train_records is not None and len(ie) > config.max_train_records:
        step = len(ie) / config.max_train_records
        ie = [ie[int(i * step)] for i in range(config.max_train_records)]
    return ie, general


def _eval_records(records, config: SFTConfig) -> dict[str, list[dict]]:
    """Held-out IE records per task, at most ``max_eval_records`` each (evenly spaced)."""
    by_task: dict[str, list[dict]] = {}
    for r in records:
        if r["task"] in config.tasks and r["style"] in config.styles and r["lang"] in config.langs:
            by_task.setdefault(r["task"], []).append(r)
    cap = config.max_eval_records
    for task, rows in by_task.items():
        if cap is not None and len(rows) > cap:
            step = len(rows) / cap
            by_task[task] = [rows[int(i * step)] for i in range(cap)]
    return by_task


def adapter_tensor_count(adapter_dir: str | os.PathLike) -> tuple[int, int]:
    """(tensors, of which LoRA B matrices with a non-zero entry) of ``adapter_model.safetensors``.
    A trained adapter has both > 0; an empty or untrained one (B starts at zero) does not —
    published adapters of 443 bytes held no tensors at all."""
    from safetensors import safe_open

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_model.safetensors")
    n = trained = 0
    with safe_open(str(path), framework="pt") as fh:
        for key in fh.keys():
            n += 1
            if "lora_B" in key and bool(fh.get_tensor(key).abs().sum() > 0):
                trained += 1
    return n, trained


@dataclass
class _Data:
    train: list[dict]                      # tokenized: IE records first, then general ones
    type_ranges: dict[str, tuple[int, int]]
    proportions: dict[str, float]
    eval: list[dict]
    eval_ranges: dict[str, tuple[int, int]]
    stats: dict[str, Any]


def _tokenized(records: list[dict], tokenizer, options, stats) -> list[dict]:
    from .data import build_sft_dataset

    return list(build_sft_dataset(records, tokenizer, options, stats))


def prepare_data(config: SFTConfig, tokenizer) -> _Data:
    """Read, select, prompt and tokenize the train and valid records (see the module docstring)."""
    from .data import TokenizeStats, read_records

    data_dir = config.path(config.data_dir)
    empty_stats: list = []
    ie, general = select_records(read_records(data_dir, "train"), config, empty_stats)
    if empty_stats:
        _print(f"empty answers (at most {config.empty_answer_share:.0%} per task): {empty_stats[0].summary()}")
    if not ie:
        raise ValueError(f"{data_dir}/train.jsonl has no records of tasks {config.tasks}, styles {config.styles}, "
                         f"languages {config.langs}")
    from .names import substitute_names

    ie, substituted = substitute_names(ie, config.name_substitution, seed=config.seed)
    if config.name_substitution:
        _print(f"names: {substituted.substituted} of {len(ie)} IE records got new entity names "
               f"({substituted.names} names; left as they were: {dict(substituted.skipped) or 'none'})")
    from .schema_order import shuffle_schemas

    ie, shuffled = shuffle_schemas(ie, config.schema_shuffle, seed=config.seed)
    if config.schema_shuffle:
        _print(f"schema order: {shuffled.shuffled} of {shuffled.considered} IEPile records shuffled "
               f"(left as they were: {dict(shuffled.skipped) or 'none'})")
    st_ie, st_gen, st_copy, st_eval = TokenizeStats(), TokenizeStats(), TokenizeStats(), TokenizeStats()
    ranges, proportions, train = {}, {}, []
    if config.task_shares:  # one sampler group per task, sharing the IE part of the batch by weight
        for task in config.tasks:
            rows = [r for r in ie if r["task"] == task]
            start = len(train)
            if config.task_shares[task] > 0 and rows:
                train += _tokenized(rows, tokenizer, config.data, st_ie)
            if len(train) > start:
                ranges[f"IE:{task}"] = (start, len(train))
                proportions[f"IE:{task}"] = float(config.task_shares[task])
        if not ranges:
            raise ValueError(f"task_shares {config.task_shares}: no task with a weight > 0 has train records")
        weight = sum(proportions.values())  # over the tasks that have records: one without gives its share back
        proportions = {k: v / weight for k, v in proportions.items()}
    else:
        train = _tokenized(ie, tokenizer, config.data, st_ie)
        ranges, proportions = {"IE": (0, len(train))}, {"IE": 1.0}
    ie_groups = list(proportions)
    extra = {"GENERAL": (config.general_ratio, general, st_gen)}
    if config.copy_ratio > 0:
        from .copy_task import copy_records

        copies = copy_records(ie, config.copy_group)
        _print(f"copy records: {len(copies)} ({config.copy_group} train sentences each), {config.copy_ratio:.0%} "
               "of every micro batch")
        extra["COPY"] = (config.copy_ratio, copies, st_copy)
    for group, (ratio, rows, st) in extra.items():
        start = len(train)
        if ratio > 0 and rows:
            train += _tokenized(rows, tokenizer, config.data, st)
        if len(train) > start:
            ranges[group] = (start, len(train))
            proportions[group] = ratio
    ie_share = 1.0 - sum(proportions[g] for g in proportions if g not in ie_groups)
    for g in ie_groups:  # the IE groups share what general and copy records leave
        proportions[g] *= ie_share
    evals, eval_ranges = [], {}
    valid = data_dir / "valid.jsonl"
    if valid.is_file():
        for task, rows in sorted(_eval_records(read_records(data_dir, "valid"), config).items()):
            start = len(evals)
            evals += _tokenized(rows, tokenizer, config.data, st_eval)
            if len(evals) > start:
                eval_ranges[task] = (start, len(evals))
    stats = {"train_ie": st_ie.to_dict(), "train_general": st_gen.to_dict(), "train_copy": st_copy.to_dict(),
             "eval": st_eval.to_dict(), "records": {"ie": len(ie), "general": len(general),
                                                    "copy": ranges.get("COPY", (0, 0))[1] - ranges.get("COPY", (0, 0))[0]}, "name_substitution": substituted.to_dict(),
             "schema_shuffle": shuffled.to_dict(),
             "empty_answers": empty_stats[0].to_dict() if empty_stats else None}
    return _Data(train, ranges, proportions, evals, eval_ranges, stats)


def build_sft_model(config: SFTConfig, tokenizer_dir: Path, vocab_size: int):
    """The base model (safetensors only), embeddings grown to the tokenizer's vocabulary when it
    is larger, wrapped with LoRA; returns (model, what trains, full embeddings?)."""
    from transformers import AutoModelForCausalLM

    from ..pretrain import check_safetensors_model
    from ..train.lora import EMBEDDING_MODULES, wrap_lora

    src = config.path(config.base_model)
    check_safetensors_model(src, "base_model")
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype="float32", use_safetensors=True,
                                                 trust_remote_code=False, local_files_only=True)
    grown = vocab_size > int(model.config.vocab_size)
    if grown:
        _print(f"model: embeddings of {src} grown from {model.config.vocab_size} to the tokenizer's {vocab_size} rows")
        model.resize_token_embeddings(vocab_size, mean_resizing=True)
    if config.data.cutoff_len > int(model.config.max_position_embeddings):
        # RoPE has no position table: longer samples work; the config's limit only warns in generate()
        _print(f"model: max_position_embeddings {model.config.max_position_embeddings} → cutoff_len "
               f"{config.data.cutoff_len}")
        model.config.max_position_embeddings = config.data.cutoff_len
    full = config.full_embeddings == "always" or (config.full_embeddings == "auto" and grown)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model = wrap_lora(model, config.lora, EMBEDDING_MODULES if full else ())
    what = f"LoRA r={config.lora.r} alpha={config.lora.alpha} on {list(config.lora.targets)}" + \
        (" + full embed_tokens/lm_head" if full else "")
    return model, what, full


def main(config: SFTConfig | str | os.PathLike, overrides: Overrides = None) -> dict[str, Any]:
    """Run SFT; returns the metrics written to OUTPUT/metrics.json. ``config``: an
    :class:`SFTConfig` or a YAML path; ``overrides`` apply to either (a copy)."""
    from transformers import AutoTokenizer

    from ..train.checkpoints import resolve_resume, save_final
    from ..train.deepspeed import resolve_runtime, zero_stage
    from ..train.evaluation import TypedEvaluator, eval_indices
    from ..train.lora import trainable_parameter_count
    from ..train.sampling import LengthGroupedBatches, ProportionalBatchSampler, RankBatchSampler, padding_share
    from ..train.trainer import (LOG_HISTORY, METRICS, last_eval, make_trainer_class, resume_sampler,
                                 follow_schedule_fit, session_callbacks, stop_message, stopped_by, training_arguments)
    from .data import SFTCollator
    from .prompter import PromptSet

    config = SFTConfig.load(config, overrides)
    t_start = time.time()
    output_dir = config.path(config.output_dir)
    resume = resolve_resume(config, output_dir)  # verified before anything could load it
    config, fit = follow_schedule_fit(config, output_dir, resume, log=_print)
    from ..pretrain import check_safetensors_model

    check_safetensors_model(config.path(config.base_model), "base_model")  # before any loading
    init_adapter = config.path(config.init_adapter) if config.init_adapter else None
    if init_adapter is not None:
        from ..train.lora import read_adapter_config

        read_adapter_config(init_adapter)  # a wrong path fails now, not after the data are tokenized
    rt = resolve_runtime(config)
    if init_adapter is not None and zero_stage(rt.ds_config) == 3:
        raise ValueError("init_adapter with DeepSpeed ZeRO-3: the model's weights are partitioned before the adapter "
                         "could be checked and copied in; use ZeRO stage 2 (KnowLM-13B's SFT preset) or merge the "
                         "adapter into base_model (knowlm weights merge-lora)")
    tokenizer_dir = config.path(config.tokenizer or config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True, trust_remote_code=False)
    data = prepare_data(config, tokenizer)
    prompts = PromptSet(config.data.templates, segmentation=config.data.segmentation)
    if int(os.environ.get("RANK", "0")) == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        prompts.save(output_dir)  # checkpoints find it one folder up; knowlm eval ie prompts the same way
    args = training_arguments(config, output_dir, rt.device, rt.precision, rt.ds_config, bool(data.eval))
    model, what, full = build_sft_model(config, tokenizer_dir, len(tokenizer))
    if init_adapter is not None and resume is None:
        from ..train.lora import EMBEDDING_MODULES, load_adapter_weights

        n = load_adapter_weights(model, init_adapter, config.lora, EMBEDDING_MODULES if full else ())
        _print(f"model: {n} adapter tensors loaded from {init_adapter} (fresh optimizer and schedule)")
    elif init_adapter is not None:
        _print(f"init_adapter {init_adapter} not loaded: the checkpoint {resume} already holds the weights")
    trainable, total = trainable_parameter_count(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collator = SFTCollator(pad_id)
    sampler = ProportionalBatchSampler(data.type_ranges, data.proportions, config.micro_batch, seed=config.seed)
    end_micro = config.max_steps * config.grad_accum
    lengths = [len(sample["input_ids"]) for sample in data.train]
    batches = sampler
    if config.group_by_length > 1:
        batches = LengthGroupedBatches(sampler, lengths, config.group_by_length, seed=config.seed)
    planned = range(min(end_micro * args.world_size, 4096))
    padding = {"share": padding_share(batches, lengths, planned), "micro_batches": len(planned),
               "ungrouped_share": padding_share(sampler, lengths, planned) if batches is not sampler else None}

    def batch_sampler_factory(rank: int, world: int, start: int) -> RankBatchSampler:
        return RankBatchSampler(batches, rank, world, start, end_micro)

    evaluator = TypedEvaluator(data.eval, eval_indices(data.eval_ranges, None), collator, config.eval_batch_size, {})
    session = session_callbacks(config, output_dir, t_start, fit)
    trainer = make_trainer_class()(model=model, args=args, train_dataset=data.train,
                                   eval_dataset=data.eval or None, data_collator=collator, callbacks=session.callbacks,
                                   batch_sampler_factory=batch_sampler_factory, evaluator=evaluator,
                                   answer_logits_only=config.answer_logits_only)
    resume = resume_sampler(trainer, config, output_dir, end_micro, resume, log=_print)
    _print(f"device {rt.device} ({rt.precision}), DeepSpeed {'ZeRO-' + str(zero_stage(rt.ds_config)) if rt.ds_config else 'off'}")
    _print(f"model: {total:,} parameters, {trainable:,} trainable ({what})")
    _print(f"data: {len(data.train)} train samples {data.type_ranges}, proportions {sampler.counts_per_batch} per "
           f"micro batch; {len(data.eval)} eval samples {sorted(data.eval_ranges)}")
    _print(f"batches: padding {padding['share']:.1%} of the tokens computed (first {len(planned):,} micro batches"
           + (f"; {padding['ungrouped_share']:.1%} without group_by_length {config.group_by_length})"
              if padding["ungrouped_share"] is not None else ")"))
    train_out = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    eval_seconds_in_loop = evaluator.seconds  # the final evaluation below is not part of train_runtime
    final_eval, final = {}, None
    config = session.effective_config(config, log=_print)
    ended_by = stopped_by(trainer, config, session.timer)
    if ended_by is not None:
        _print(stop_message(trainer, config, ended_by, output_dir))
    else:
        if data.eval:
            final_eval = last_eval(trainer) or trainer.evaluate()
        final = save_final(trainer, output_dir, tokenizer_dir, lora_base=config.path(config.base_model))
    adapter = None
    if final is not None and trainer.is_world_process_zero():
        n, trained = adapter_tensor_count(final / "adapter")
        if n == 0 or trained == 0:
            raise RuntimeError(f"{final / 'adapter'}: the saved adapter is empty or untrained ({n} tensors, "
                               f"{trained} non-zero LoRA B matrices)")
        for folder in (final, final / "adapter"):
            prompts.save(folder)
        adapter = {"tensors": n, "trained_lora_b": trained,
                   "bytes": (final / "adapter" / "adapter_model.safetensors").stat().st_size}
    runtime = float(train_out.metrics.get("train_runtime", float("nan")))
    tokens = int(trainer.state.num_input_tokens_seen)
    session_tokens = tokens - int(getattr(trainer, "_initial_num_input_tokens_seen", 0) or 0)
    spent = runtime - eval_seconds_in_loop
    metrics: dict[str, Any] = {
        "final_dir": str(final) if final else None, "output_dir": str(output_dir), "completed": final is not None,
        "global_step": int(trainer.state.global_step), "max_steps": config.max_steps,
        "resumed_from": str(resume) if resume else None, "stopped_by": ended_by, "schedule_fit": session.fitted(),
        "init_adapter": str(init_adapter) if init_adapter is not None and resume is None else None,
        "device": rt.device, "precision": rt.precision,
        "world_size": args.world_size, "deepspeed_stage": zero_stage(rt.ds_config),
        "parameters": total, "trainable_parameters": trainable, "trains": what, "full_embeddings": full,
        "vocab_size": len(tokenizer), "tokens_seen": tokens, "train_runtime_s": runtime,
        "tokens_per_s": session_tokens / spent if spent > 0 else None, "train_loss": train_out.metrics.get("train_loss"),
        "proportions": data.proportions, "counts_per_batch": sampler.counts_per_batch, "data": data.stats,
        "padding": padding, "final_eval": final_eval, "adapter": adapter, "wall_s": time.time() - t_start,
        "config": config.to_dict(),
    }
    if trainer.is_world_process_zero():
        write_json_atomic(output_dir / LOG_HISTORY, trainer.state.log_history)
        write_json_atomic(output_dir / METRICS, metrics)
        _print(f"done: step {metrics['global_step']}, {tokens:,} tokens, {metrics['tokens_per_s'] or 0:,.0f} tokens/s"
               + (f"; final → {final}" if final else ""))
    return metrics


# ----------------------------------------------------------------------------- CLI --------
def add_cli(subparsers) -> None:
    """``knowlm sft CONFIG.yaml [-o key=value]``."""
    stage_command(subparsers.add_parser("sft", help="stage 07: LoRA instruction tuning on the IE records"),
                  SFTConfig, "configs/sft/cpu-course.yaml", "max_steps=50", lambda cfg: 0 if main(cfg) else 1,
                  out=False)


def sft_script() -> Path:
    """``scripts/sft.py`` of this checkout (the one entry point every launcher runs)."""
    from ..workdir import repo_root

    return repo_root() / "scripts" / "sft.py"


def launch_sft(config_path: str | os.PathLike, nprocs: int = 1, launcher: str = "deepspeed",
               overrides: list[str] | None = None, log_path: str | os.PathLike | None = None,
               device: str = "cpu", echo: bool = True) -> int:
    """``scripts/sft.py CONFIG -o k=v …`` under ``deepspeed``/``torchrun`` with ``nprocs``
    processes, exactly as pretraining is launched (:func:`knowlm_utils.launch.launch_stage`)."""
    from ..launch import launch_stage

    return launch_stage(sft_script(), config_path, nprocs=nprocs, launcher=launcher, overrides=overrides,
                        log_path=log_path, device=device, echo=echo)
