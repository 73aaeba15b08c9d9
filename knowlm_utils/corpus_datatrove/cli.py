"""``knowlm corpus build CFG --executor local|slurm|ray --tasks N [--rank-offset K --local-tasks M]``:
the flags added to the single-machine ``corpus build`` command (without ``--executor`` it runs
exactly as before). datatrove is imported only when ``--executor`` is given."""

from __future__ import annotations

import argparse

def _build_parser(corpus_parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for action in corpus_parser._actions:  # the `build` subcommand of `knowlm corpus`
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict) and "build" in choices:
            return choices["build"]
    raise KeyError("knowlm corpus has no build subcommand")


def extend_corpus_build(corpus_parser: argparse.ArgumentParser) -> None:
    """Add the executor flags to ``knowlm corpus build`` and route to the datatrove path when
    ``--executor`` is given."""
    b = _build_parser(corpus_parser)
    single = b.get_default("func")
    g = b.add_argument_group("distributed build (datatrove; output identical to the single-machine build)")
    g.add_argument("--executor", choices=("local", "slurm", "ray"),
                   help="run on datatrove's executor: local (ranks as processes; with --rank-offset/--local-tasks on "
                        "several hosts sharing the work folder), slurm (sbatch job arrays chained with dependencies) "
                        "or ray (needs Ray installed); default: the single-machine build")
    g.add_argument("--tasks", type=int, default=None, help="ranks of the reading/filtering stage (files are split "
                                                           "between them); default 2")
    g.add_argument("--rank-offset", type=int, default=0, help="local executor on several hosts: first rank run here")
    g.add_argument("--local-tasks", type=int, default=None, help="local executor on several hosts: ranks run here "
                                                                 "(default: all)")
    g.add_argument("--local-workers", type=int, default=None, help="local executor: task processes at once on "
                                                                   "this host (default: --local-tasks)")
    g.add_argument("--work-dir", default=None, help="per-rank files, logs and completion markers (default: "
                                                    "OUTPUT.datatrove-work beside the output); a rerun resumes")
    g.add_argument("--keep-work", action="store_true", help="keep the work folder after a successful build")
    g.add_argument("--dry-run", action="store_true", help="slurm: print the sbatch scripts and arguments of every "
                                                         "stage instead of submitting")
    g.add_argument("--slurm-partition", default="cpu", help="slurm: partition (default cpu)")
    g.add_argument("--slurm-time", default="24:00:00", help="slurm: time limit per task (default 24:00:00)")
    g.add_argument("--slurm-mem-gb", type=int, default=4, help="slurm: memory per CPU in GB (default 4)")
    g.add_argument("--slurm-decide-mem-gb", type=int, default=64, help="slurm: memory of the one-task decide stage "
                                                                       "in GB (default 64; see README)")
    g.add_argument("--slurm-env", default=None, help="slurm: shell command run before each task, e.g. "
                                                     "'source /shared/knowlm/.venv/bin/activate'")

    def handler(args: argparse.Namespace) -> int:
        if args.executor is None:
            given = [f"--{k.replace('_', '-')}" for k in ("tasks", "local_tasks", "work_dir", "local_workers")
                     if getattr(args, k) is not None] + (["--rank-offset"] if args.rank_offset else []) + \
                    (["--dry-run"] if args.dry_run else []) + (["--keep-work"] if args.keep_work else [])
            if given:
                raise ValueError(f"{', '.join(given)} only apply with --executor local|slurm|ray")
            return single(args)
        return _run(args)

    b.set_defaults(func=handler)


def _run(args: argparse.Namespace) -> int:
    from ..config import cli_config
    from .run import SlurmOptions, build_distributed

    config = cli_config(args)
    if config is None:  # --print-config
        return 0
    slurm = SlurmOptions(partition=args.slurm_partition, time=args.slurm_time, mem_per_cpu_gb=args.slurm_mem_gb,
                         decide_mem_gb=args.slurm_decide_mem_gb, env_command=args.slurm_env)
    result = build_distributed(config, executor=args.executor, tasks=args.tasks or 2, local_tasks=args.local_tasks,
                               rank_offset=args.rank_offset, workers=args.local_workers, work_dir=args.work_dir,
                               keep_work=args.keep_work, slurm=slurm, dry_run=args.dry_run)
    if args.dry_run:
        for job in result:
            print(f"# ---- stage {job['stage']} ({job['tasks']} tasks): sbatch {' '.join(job['sbatch_args'])} SCRIPT")
            print(job["script"])
        return 0
    if args.executor == "slurm":
        for job in result:
            print(f"stage {job['stage']}: Slurm job {job['job_id']} ({job['tasks']} tasks)")
        print(f"the last job writes {config.path(config.output_dir)}; chain the next stage with "
              f"sbatch --dependency=afterok:{result[-1]['job_id']}")
        return 0
    if result is None:
        last = args.rank_offset + (args.local_tasks or args.tasks or 2) - 1
        print(f"corpus build (local): ranks {args.rank_offset}..{last} done; the host with --rank-offset 0 runs "
              f"the later stages and writes {config.path(config.output_dir)}")
        return 0
    t = result["totals"]
    print(f"records {t['records']}: kept {t['kept']}, filtered {t['filtered']}, duplicates {t['duplicates']}, "
          f"skipped {t['skipped']} → {config.path(config.output_dir)} ({result['wall_s']:.1f} s, "
          f"{args.executor} executor, {args.tasks or 2} tasks)")
    for name, s in result["sources"].items():
        rules = ", ".join(f"{k} {v}" for k, v in sorted(s["by_rule"].items())) or "-"
        print(f"  {name}: kept {s['kept']}/{s['records']}; removed: {rules}")
    return 0


__all__ = ["extend_corpus_build"]
