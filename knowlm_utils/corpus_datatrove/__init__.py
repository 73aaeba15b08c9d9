"""Stage 01 past one machine: ``knowlm corpus build`` on datatrove's executors.

The project's own code decides everything — readers with their skip accounting
(:func:`knowlm_utils.corpus.iter_records`), the cleaning rules
(:class:`knowlm_utils.cleaning.DocumentFilter`) and the dedup fingerprints and decisions
(:class:`knowlm_utils.dedup.Deduplicator`) —, while datatrove provides ranks, sharding by file,
scheduling (``LocalPipelineExecutor`` with ``tasks`` / ``local_tasks`` / ``local_rank_offset``,
``SlurmPipelineExecutor`` job arrays chained with ``depends=``, ``RayPipelineExecutor`` where Ray
is installed), completion markers (a rerun skips finished tasks) and the MinHash bucket stage.

Stages (each a datatrove pipeline; ``N`` = ``--tasks``)::

    scan    N tasks   files → CorpusReader → ProjectFilter (BaseFilter) → CandidateWriter
                      (kept-by-rules rows, fingerprints, exact-key shards, LSH band signatures)
    exact   K tasks   one task per exact-key shard: groups of equal normalised-text hashes
    lsh     b tasks   datatrove's MinhashDedupBuckets, one task per LSH band
    decide  1 task    candidate pairs → components → the project's Deduplicator in document order
    merge   1 task    per-rank files → the same shards, stats.json, removed.jsonl, skipped.jsonl

The output equals the single-machine build's (same kept documents, shard layout, per-rule counts,
``removed.jsonl`` and ``skipped.jsonl``; ``stats.json`` differs only in ``wall_s``): see
``tests/test_corpus_datatrove.py`` and ``benchmarks/bench_corpus_datatrove.py``.
"""

from .run import EXECUTORS, SlurmOptions, build_distributed, compare_outputs, slurm_dry_run

__all__ = ["EXECUTORS", "SlurmOptions", "build_distributed", "compare_outputs", "slurm_dry_run"]
