"""knowlm_utils: the code behind the KnowLM Course notebooks, scripts and `knowlm` CLI.

A module or small package per pipeline stage — ``corpus`` (01), ``tokenizer`` (02), ``chunking``
and ``chunk_report`` (03), ``preprocess`` and ``index`` (04), ``pretrain`` and ``launch`` (05) —
on top of shared parts: ``config`` (``StageConfig``), ``spm``, ``fileio``, ``workdir``, ``modeling``,
``generation`` and ``train`` (the training code every training stage uses). Notebooks, scripts,
the ``knowlm`` CLI and tests call the same ``main(config, overrides=None)`` of each stage.
"""

__version__ = "0.1.0"
