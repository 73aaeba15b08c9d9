"""Stage 07 — instruction tuning (SFT) of the tiny LLaMA on the stage-06 IE records plus general
Alpaca instructions.

* :mod:`.prompter` — prompt templates (``knowlm_utils/data/prompts/*.json``), which template a
  record uses, response extraction from generated text.
* :mod:`.data` — reading and mixing records, tokenisation with exact prompt/answer label masking
  (the answer always ends with EOS; long prompts are cut in the middle, never the answer), the
  padding collator.
* :mod:`.segmentation` — the ``copy_aligned`` segmentation: a name gets the same token ids in the
  sentence and in the answer, so a model can copy it.
* :mod:`.names`, :mod:`.copy_task`, :mod:`.schema_order`, :mod:`.empty_answers` — what the train
  records become before tokenisation: renamed entities, copy records, shuffled schemas, a cap on
  answers with nothing in them.

Nothing heavy is imported here (torch and transformers are imported where they are used).
"""
