"""Rank-sharded preprocessing (stage 04) on datatrove's executors: one task per rank runs
:func:`knowlm_utils.preprocess.preprocess_rank` (its contiguous share of every source, into
``OUTPUT_DIR.rank-RRRRR-of-NNNNN``), then one task joins the ranks with
:func:`knowlm_utils.preprocess.merge_ranks` (``knowlm index merge``) into the bytes of a
``world: 1`` run. The same two stages as the shell chain of the README's Slurm path, for
``local`` hosts (and ``slurm`` through datatrove's job arrays)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from ..preprocess import PreprocessConfig


class PreprocessRank(PipelineStep):
    type = "🔢 - TOKENIZE"
    name = "knowlm preprocess rank"

    def __init__(self, config: PreprocessConfig):
        super().__init__()
        self.config = config

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from ..preprocess import preprocess_rank

        preprocess_rank(self.config, rank, world_size)
        return
        yield


class MergePreprocessRanks(PipelineStep):
    type = "💽 - WRITER"
    name = "knowlm index merge"

    def __init__(self, config: PreprocessConfig, world: int):
        super().__init__()
        self.config, self.world = config, world

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from ..preprocess import merge_ranks, rank_output_dir

        out = Path(self.config.path(self.config.output_dir))
        merge_ranks([rank_output_dir(out, r, self.world) for r in range(self.world)], out)
        return
        yield


def preprocess_distributed(config: PreprocessConfig, world: int, *, executor: str = "local",
                           workers: int | None = None, logging_dir: str | Path | None = None,
                           slurm: Any = None, dry_run: bool = False) -> Any:
    """Preprocess with ``world`` ranks then merge, chained with ``depends=``. ``local`` returns
    None when done (the merged index is in ``output_dir``); ``slurm`` submits (or with
    ``dry_run`` returns the scripts, as :func:`~knowlm_utils.corpus_datatrove.run.slurm_dry_run`)."""
    from .run import SlurmOptions, _quiet_local_class, _quiet_loguru, slurm_dry_run

    if world < 1:
        raise ValueError(f"world must be at least 1, got {world}")
    out = Path(config.path(config.output_dir))
    logs = Path(logging_dir) if logging_dir else out.with_name(out.name + ".datatrove-logs")
    pipes = {"preprocess": ([PreprocessRank(config)], world), "merge": ([MergePreprocessRanks(config, world)], 1)}
    if executor == "local":
        cls, prev = _quiet_local_class(), None
        for stage, (pipe, n) in pipes.items():
            prev = cls(pipe, tasks=n, workers=max(1, min(n, workers or n)), logging_dir=str(logs / stage),
                       depends=prev)
        with _quiet_loguru(True):
            prev.run()
        return None
    if executor == "slurm":
        from datatrove.executor.slurm import SlurmPipelineExecutor

        opts, execs, prev = slurm or SlurmOptions(job_name="knowlm-preprocess"), {}, None
        for stage, (pipe, n) in pipes.items():
            prev = execs[stage] = SlurmPipelineExecutor(
                pipe, tasks=n, time=opts.time, partition=opts.partition, cpus_per_task=opts.cpus_per_task,
                mem_per_cpu_gb=opts.mem_per_cpu_gb, job_name=f"{opts.job_name}-{stage}", env_command=opts.env_command,
                qos=opts.qos or "", sbatch_args=dict(opts.sbatch_args), logging_dir=str(logs / stage),
                slurm_logs_folder=str(logs / "slurm_logs" / stage), depends=prev, mail_user=None)
        if dry_run:
            return slurm_dry_run(execs)
        with _quiet_loguru(True):
            prev.run()
        return [{"stage": s, "tasks": e.tasks, "job_id": e.job_id} for s, e in execs.items()]
    raise ValueError(f"executor must be 'local' or 'slurm', got {executor!r}")


__all__ = ["PreprocessRank", "MergePreprocessRanks", "preprocess_distributed"]
