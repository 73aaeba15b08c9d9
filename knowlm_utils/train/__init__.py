"""Training parts shared by pretraining (stage 05, :mod:`knowlm_utils.pretrain`) and SFT (stage 07).

Modules (import them directly; this package imports nothing, and none of them but
``lora_dropout``, which ``lora`` imports only when it builds a LoRA model, imports torch or
transformers at import time):

* ``config`` — ``TrainingArgs`` (the training loop: batch, schedule, AdamW, precision, cadence,
  DeepSpeed, resuming; a stage config inherits it), ``ModelSection``, ``LoraSection``;
* ``dataset`` — ``TokenIndexDataset``, a torch ``Dataset`` over a token index;
* ``sampling`` — ``ProportionalBatchSampler`` (typed per-batch mixing), ``RankBatchSampler``
  (one rank's share, resumable in O(1)), ``FeistelPermutation``, ``largest_remainder_counts``;
* ``collate`` — ``CausalLMCollator`` (padding, labels, truncation count), ``pad_token``;
* ``evaluation`` — ``TypedEvaluator`` (held-out loss per type), ``eval_indices``, the unigram
  baseline (``unigram_counts``, ``unigram_cross_entropy``);
* ``trainer`` — ``training_arguments``, ``make_trainer_class``, device/precision resolution,
  log-history and stop callbacks, ``read_history``;
* ``deepspeed`` — ``resolve_deepspeed`` (path / dict / short spec, adapted to the device),
  ``prepare_environment``;
* ``lora`` — which parameters train (``apply_stage``, ``wrap_lora``, ``trainable_parameter_count``)
  and ``merge_lora``;
* ``lora_dropout`` — ``IntegerMaskDropout``, LoRA's dropout with integer-drawn CPU masks (what
  ``wrap_lora`` puts in PEFT's layers);
* ``checkpoints`` — ``latest_checkpoint``, ``resolve_resume``, ``save_final`` (OUTPUT/final with
  the tokenizer files);
* ``lazy_torch`` — torch base classes created on first use (keeps ``dataset``/``sampling`` cheap).
"""
