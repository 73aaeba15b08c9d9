"""Stage 06 — KG2Instruction: information-extraction instruction data from a knowledge graph
and text (KnowLM README §3.3, the InstructIE paper), plus the standard IE corpora.

Modules, in pipeline order: :mod:`.gold` (the sample world's gold facts), :mod:`.documents`
(mention detection + linking per document, sentences), :mod:`.supervision` (distant
supervision and rule filters), :mod:`.correction` (human correction CSV), :mod:`.evaluation`
(precision/recall against gold, funnel), :mod:`.events` (KG-grounded event sentences),
:mod:`.instructions` (two instruction styles), :mod:`.export` (mixing, JSONL, datasets,
statistics) and :mod:`.pipeline` (``knowlm ie build CONFIG``: all of it, streaming).
"""
