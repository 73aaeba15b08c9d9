"""Launch a corpus build on a datatrove executor: ``local`` (ranks in processes of this host; with
``local_tasks`` / ``rank_offset`` several hosts sharing the work folder each run their ranks),
``slurm`` (one sbatch job array per stage, chained with ``depends=``) or ``ray`` (when Ray is
installed). See the package docstring for the stages."""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..corpus import CorpusConfig, check_readable, prepare_output, source_files
from ..fileio import read_json
from .plan import PLAN_FILE, Plan, make_plan, write_plan

EXECUTORS = ("local", "slurm", "ray")
STAGES = ("scan", "exact", "lsh", "decide", "merge")


@dataclass
class SlurmOptions:
    """sbatch settings of the Slurm path (one job array per stage)."""
    partition: str = "cpu"
    time: str = "24:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 4
    decide_mem_gb: int = 64     # the one-task decide stage holds the candidate graph (see README)
    job_name: str = "knowlm-corpus"
    env_command: str | None = None  # e.g. "source /shared/knowlm/.venv/bin/activate"
    qos: str | None = None
    sbatch_args: dict[str, Any] = field(default_factory=dict)


def _stage_tasks(plan: Plan, config: CorpusConfig) -> dict[str, int]:
    d = config.dedup
    tasks = {"scan": plan.tasks}
    if d.exact:
        tasks["exact"] = plan.exact_shards
    if d.near:
        tasks["lsh"] = plan.bands
    if d.exact or d.near:
        tasks["decide"] = 1
    tasks["merge"] = 1
    return tasks


def pipelines(plan: Plan, config: CorpusConfig) -> dict[str, list]:
    """The datatrove pipeline of each stage that this config needs, in order."""
    from .blocks import CandidateWriter, CorpusMerge, CorpusReader, ProjectFilter, RemovedRowsWriter
    from .minhash import DedupDecide, ExactDupPairs, LshBuckets

    wd = plan.work_dir
    removed = RemovedRowsWriter(str(plan.path("scan", "removed")), [s.name for s in config.sources])
    out = {"scan": [CorpusReader(config, wd), ProjectFilter(config, exclusion_writer=removed),
                    CandidateWriter(config, wd)],
           "exact": [ExactDupPairs(wd)], "lsh": [LshBuckets(plan, config)], "decide": [DedupDecide(config, wd)],
           "merge": [CorpusMerge(config, wd)]}
    return {stage: out[stage] for stage in _stage_tasks(plan, config)}


def _quiet_local_class():
    from datatrove.executor.local import LocalPipelineExecutor

    class QuietLocalExecutor(LocalPipelineExecutor):
        """datatrove's local executor whose task logs go to the log files only (no console
        lines in the CLI summary or a notebook); errors still propagate."""

        def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
            with contextlib.redirect_stderr(io.StringIO()):
                return super()._run_for_rank(rank, local_rank, node_rank)

    return QuietLocalExecutor


def _preload_forkserver() -> None:
    """datatrove's local executor starts its processes from a fork server; let the server import
    datatrove and the pipeline blocks once, so each task process starts in milliseconds instead of
    importing them again (no effect when the server is already running)."""
    import multiprocess.forkserver as fs

    fs.set_forkserver_preload(["__main__", "knowlm_utils.corpus_datatrove.blocks",
                               "knowlm_utils.corpus_datatrove.minhash",
                               "datatrove.executor.local", "datasketch", "scipy.sparse.csgraph"])


def local_executors(plan: Plan, config: CorpusConfig, local_tasks: int, rank_offset: int, workers: int):
    """Executors chained with ``depends=``: the scan stage runs ranks ``[rank_offset,
    rank_offset + local_tasks)``; the later stages run on the host with ``rank_offset == 0`` once
    every scan rank (of every host) has its completion marker."""
    cls = _quiet_local_class()
    tasks = _stage_tasks(plan, config)
    execs, prev = {}, None
    for stage, pipe in pipelines(plan, config).items():
        n = tasks[stage]
        kw = {"local_tasks": local_tasks, "local_rank_offset": rank_offset} if stage == "scan" else {}
        prev = execs[stage] = cls(pipe, tasks=n, workers=max(1, min(n, workers)), logging_dir=str(plan.logs(stage)),
                                  depends=prev, **kw)
    return execs


def slurm_executors(plan: Plan, config: CorpusConfig, opts: SlurmOptions):
    from datatrove.executor.slurm import SlurmPipelineExecutor

    tasks = _stage_tasks(plan, config)
    execs, prev = {}, None
    for stage, pipe in pipelines(plan, config).items():
        mem = opts.decide_mem_gb if stage in ("decide",) else opts.mem_per_cpu_gb
        prev = execs[stage] = SlurmPipelineExecutor(
            pipe, tasks=tasks[stage], time=opts.time, partition=opts.partition, cpus_per_task=opts.cpus_per_task,
            mem_per_cpu_gb=mem, job_name=f"{opts.job_name}-{stage}", env_command=opts.env_command,
            qos=opts.qos or "", sbatch_args=dict(opts.sbatch_args), logging_dir=str(plan.logs(stage)),
            slurm_logs_folder=str(plan.path("slurm_logs", stage)), depends=prev, mail_user=None)
    return execs


def slurm_dry_run(execs: dict) -> list[dict[str, Any]]:
    """What the Slurm path would submit, without calling sbatch: per stage the sbatch script
    (datatrove's own template) and the sbatch arguments, the dependency on the previous stage
    written as ``afterok:<job id of STAGE>`` (datatrove fills in the real id when it submits)."""
    out, prev = [], None
    for stage, ex in execs.items():
        script = ex.get_launch_file_contents(
            ex.get_sbatch_args(min(ex.tasks, ex.max_array_size)),
            f"srun -l -n {ex.nodes_per_task} launch_pickled_pipeline {ex.logging_dir.resolve_paths('executor.pik')}")
        args = ["--export=ALL,RUN_OFFSET=0"] + ([f"--dependency=afterok:<job id of {prev}>"] if prev else [])
        out.append({"stage": stage, "tasks": ex.tasks, "sbatch_args": args, "script": script})
        prev = stage
    return out


@contextlib.contextmanager
def _quiet_loguru(quiet: bool):
    """datatrove logs through loguru to stderr; keep the console to the command's own lines
    (every task still writes its full log under WORK/logs/STAGE/logs/)."""
    if not quiet:
        yield
        return
    from loguru import logger

    logger.remove()
    try:
        yield
    finally:
        logger.remove()
        logger.add(sys.stderr, level="WARNING")


def build_distributed(config: CorpusConfig, output_dir: str | Path | None = None, *, executor: str = "local",
                      tasks: int = 2, local_tasks: int | None = None, rank_offset: int = 0,
                      workers: int | None = None, work_dir: str | Path | None = None, keep_work: bool = False,
                      slurm: SlurmOptions | None = None, dry_run: bool = False,
                      quiet: bool = True) -> dict[str, Any] | list[dict[str, Any]] | None:
    """Build the corpus with datatrove; the output equals :func:`knowlm_utils.corpus.build`'s.

    Returns the stats dict when this call ran the last stage (local executor on the host with
    ``rank_offset == 0``, Ray), ``None`` on a host that only ran its scan ranks, after submitting
    to Slurm the job id of each stage (``[{"stage", "tasks", "job_id"}]``: chain the next stage
    on the last one with ``sbatch --dependency=afterok:ID``), and with ``dry_run`` (Slurm) the
    list of what would be submitted.
    The work folder (default ``OUTPUT.datatrove-work`` beside the output) holds the per-rank
    files and datatrove's logs and completion markers: run the same command again after a failure
    and finished tasks are skipped. It is removed after a successful local build unless
    ``keep_work``.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"--executor: {executor!r} is not one of {list(EXECUTORS)}")
    if tasks < 1:
        raise ValueError(f"--tasks: must be at least 1, got {tasks}")
    local_tasks = tasks if local_tasks is None else local_tasks
    if local_tasks < 1 or rank_offset < 0 or rank_offset + local_tasks > tasks:
        raise ValueError(f"--rank-offset {rank_offset} --local-tasks {local_tasks}: the ranks must lie within "
                         f"0..{tasks - 1} (--tasks {tasks})")
    if executor != "local" and (local_tasks != tasks or rank_offset):
        raise ValueError("--rank-offset/--local-tasks are for --executor local (several hosts sharing the work folder)")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("--executor ray needs Ray (pip install 'ray[default]'); it is not a dependency of "
                             "this project") from None
    out = Path(output_dir) if output_dir else Path(config.path(config.output_dir))
    files = {src.name: source_files(src, config.base_dir) for src in config.sources}
    out = prepare_output(config, out, files)
    for src in config.sources:
        for path in files[src.name]:
            check_readable(src, path)
    work = Path(work_dir).expanduser().resolve() if work_dir else out.with_name(out.name + ".datatrove-work")
    if work == out or out in work.parents:
        raise ValueError(f"--work-dir {work} may not be the output folder or inside it")
    plan = make_plan(config, out, work, tasks)
    write_plan(plan)
    if executor == "slurm":
        execs = slurm_executors(plan, config, slurm or SlurmOptions())
        if dry_run:
            return slurm_dry_run(execs)
        if shutil.which("sbatch") is None:
            raise ValueError("sbatch not found: run --executor slurm on a Slurm login node (or --dry-run to see "
                             "the job scripts)")
        with _quiet_loguru(quiet):
            list(execs.values())[-1].run()  # depends= submits the earlier stages first
        return [{"stage": stage, "tasks": ex.tasks, "job_id": ex.job_id if ex.job_id is not None else
                 ex.depends_job_id} for stage, ex in execs.items()]
    if dry_run:
        raise ValueError("--dry-run is for --executor slurm")
    if executor == "ray":
        from datatrove.executor.ray import RayPipelineExecutor

        stage_tasks, prev = _stage_tasks(plan, config), None
        for stage, pipe in pipelines(plan, config).items():
            prev = RayPipelineExecutor(pipe, tasks=stage_tasks[stage], logging_dir=str(plan.logs(stage)), depends=prev)
        with _quiet_loguru(quiet):
            prev.run()
    else:
        _preload_forkserver()
        execs = local_executors(plan, config, local_tasks, rank_offset, workers or local_tasks)
        with _quiet_loguru(quiet):
            if rank_offset == 0:
                list(execs.values())[-1].run()  # depends= runs (or waits for) the earlier stages
            else:
                execs["scan"].run()
                return None
    stats = read_json(out / "stats.json")
    if not keep_work and (work / PLAN_FILE).is_file():
        shutil.rmtree(work)
    return stats


def compare_outputs(a: str | Path, b: str | Path) -> dict[str, Any]:
    """Compare two built corpora: ``{"files": n, "different": [paths], "stats_equal": bool}`` —
    every shard, ``removed.jsonl`` and ``skipped.jsonl`` byte for byte, ``stats.json`` as data
    without ``wall_s`` and the config's ``output_dir`` (the marker file records a time: skipped)."""
    a, b = Path(a), Path(b)

    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file() and p.name not in (".knowlm-output.json", "stats.json")}

    def stats(folder: Path) -> dict[str, Any]:
        s = read_json(folder / "stats.json")
        s.pop("wall_s", None)
        s["config"].pop("output_dir", None)
        return s

    fa, fb = files(a), files(b)
    different = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
    return {"files": len(fa), "different": different, "stats_equal": stats(a) == stats(b)}


__all__ = ["EXECUTORS", "STAGES", "SlurmOptions", "build_distributed", "compare_outputs", "local_executors",
           "slurm_executors", "slurm_dry_run", "pipelines"]
