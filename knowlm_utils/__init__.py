"""knowlm_utils: the code behind the KnowLM Course notebooks, scripts and `knowlm` CLI.

One module per pipeline stage (corpus, tokenizer, chunking, indexed, pretrain, ...);
notebooks, scripts and tests call the same functions.
"""

__version__ = "0.1.0"
