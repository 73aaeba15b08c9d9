"""Stage 01 on datatrove's executors (knowlm_utils.corpus_datatrove): the distributed build keeps
exactly what the single-machine build keeps — same shards, stats, removed.jsonl, skipped.jsonl —
on the sample world and on a generated corpus with planted duplicates; Slurm scripts; errors."""

import json
from pathlib import Path

import pytest

from knowlm_utils import cli
from knowlm_utils.corpus import BadLineError, build, load_corpus_config
from knowlm_utils.corpus_datatrove import SlurmOptions, build_distributed
from knowlm_utils.corpus_datatrove.plan import load_plan, make_plan, write_plan
from knowlm_utils.corpus_datatrove.synthetic import EDIT_KINDS, recall, write_planted_corpus
from knowlm_utils.dedup import DedupConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "corpus" / "sample.yaml"


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a built corpus except the marker (it records the build time)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".knowlm-output.json"}


def _assert_same_corpus(single: Path, dist: Path, s1: dict, s2: dict) -> None:
    f1, f2 = _files(single), _files(dist)
    assert sorted(f1) == sorted(f2)
    for name in f1:
        if name != "stats.json":
            assert f1[name] == f2[name], name
    s1, s2 = dict(s1), dict(s2)
    assert s1.pop("wall_s") >= 0 and s2.pop("wall_s") >= 0
    s1["config"], s2["config"] = dict(s1["config"]), dict(s2["config"])
    s1["config"].pop("output_dir"), s2["config"].pop("output_dir")  # --out of the CLI run
    assert s1 == s2
    assert json.loads(f2["stats.json"])["totals"] == s2["totals"]


def test_sample_world_two_local_tasks_equal_the_single_machine_build(tmp_path, capsys):
    cfg = load_corpus_config(SAMPLE, ["progress=false"])
    s1 = build(cfg, tmp_path / "single")
    rc = cli.main(["corpus", "build", str(SAMPLE), "--out", str(tmp_path / "dist"), "--no-progress",
                   "--executor", "local", "--tasks", "2", "--keep-work"])
    assert rc == 0
    printed = capsys.readouterr()
    assert "local executor, 2 tasks" in printed.out and printed.err == ""
    s2 = json.loads((tmp_path / "dist" / "stats.json").read_text("utf-8"))
    _assert_same_corpus(tmp_path / "single", tmp_path / "dist", s1, s2)
    # every rule fired and was counted the same; both ranks read files
    fired = set(s2["sources"]["web_mixed"]["by_rule"]) | set(s2["sources"]["zh_baike"]["by_rule"])
    assert {"exact_duplicate", "near_duplicate", "mojibake", "too_long"} <= fired
    assert s2["totals"]["skipped"] > 0 and s2["totals"]["duplicates"] > 0
    plan = load_plan(tmp_path / "dist.datatrove-work")
    assert plan.tasks == 2 and all(b > a for a, b in plan.ranks)
    for stage in ("scan", "exact", "lsh", "decide", "merge"):  # datatrove's completion markers
        n = len(list((tmp_path / "dist.datatrove-work" / "logs" / stage / "completions").iterdir()))
        assert n == {"scan": 2, "exact": 2, "lsh": plan.bands}.get(stage, 1)


def test_planted_duplicates_match_single_machine_decisions_with_uneven_ranks(tmp_path):
    cfg, manifest = write_planted_corpus(tmp_path / "w", docs=240, doc_chars=500, files=4, seed=3)
    s1 = build(cfg, tmp_path / "single")
    s2 = build_distributed(cfg, tmp_path / "dist", tasks=5, workers=2)  # 5 ranks on 4 files: one rank is empty
    _assert_same_corpus(tmp_path / "single", tmp_path / "dist", s1, s2)
    assert not (tmp_path / "dist.datatrove-work").exists()  # removed after success
    removed = [json.loads(x) for x in (tmp_path / "dist" / "removed.jsonl").read_text("utf-8").splitlines()]
    dups = {r["id"]: r for r in removed if "dup_of" in r}
    # the planted copies cross files (and ranks); exact copies are all caught, and every removal
    # names a kept document that precedes it
    crossing = [m for m in manifest if m["copy"].split(":")[1] != m["of"].split(":")[1]]
    assert crossing and all(m["copy"] in dups for m in manifest if m["kind"] == "exact")
    assert recall(removed, manifest)["exact"] == 1.0 and recall(removed, manifest)["edit1"] >= 0.8
    assert set(EDIT_KINDS) == {m["kind"] for m in manifest}
    kept_ids = {json.loads(x)["id"] for p in (tmp_path / "dist" / "planted").glob("part-*.jsonl")
                for x in p.read_text("utf-8").splitlines()}
    assert all(r["dup_of"] in kept_ids for r in dups.values())


def test_exact_only_dedup_and_a_record_limit_spanning_files(tmp_path):
    cfg, _ = write_planted_corpus(tmp_path / "w", docs=120, doc_chars=300, files=3, seed=5)
    cfg.dedup = DedupConfig(near=False)
    cfg.max_docs_per_source = 70  # the files hold ~52 records each: the limit ends inside the second
    s1 = build(cfg, tmp_path / "single")
    s2 = build_distributed(cfg, tmp_path / "dist", tasks=3, workers=2)
    _assert_same_corpus(tmp_path / "single", tmp_path / "dist", s1, s2)
    st = s2["sources"]["planted"]
    assert st["records"] == 70 and "near_duplicate" not in st["by_rule"] and st["by_rule"]["exact_duplicate"] > 0
    assert list(st["lines_read"].values())[-1] == 70 - 52  # third file: not read, as on one machine
    assert len(st["lines_read"]) == 2


def test_bad_line_fail_stops_with_file_and_line(tmp_path):
    raw = tmp_path / "a.jsonl"
    raw.write_bytes(b'{"text": "' + "长江是中国第一长河。".encode() * 5 + b'"}\n{"text": broken\n')
    cfg = load_corpus_config(SAMPLE, ["progress=false"])
    cfg.sources = cfg.sources[:1]
    cfg.sources[0].path, cfg.sources[0].template, cfg.base_dir = str(raw), "{text}", str(tmp_path)
    cfg.bad_lines = "fail"
    with pytest.raises(BadLineError, match=r"a\.jsonl:2: invalid_json"):
        build_distributed(cfg, tmp_path / "out", tasks=1)
    assert not (tmp_path / "out").exists()


def test_slurm_dry_run_writes_chained_job_arrays_without_submitting(tmp_path, capsys):
    cfg = load_corpus_config(SAMPLE, ["progress=false"])
    opts = SlurmOptions(partition="big", time="2:00:00", env_command="source /shared/knowlm/.venv/bin/activate",
                        mem_per_cpu_gb=3, decide_mem_gb=48)
    jobs = build_distributed(cfg, tmp_path / "out", executor="slurm", tasks=4, slurm=opts, dry_run=True,
                             work_dir=tmp_path / "work")
    plan = load_plan(tmp_path / "work")
    assert [j["stage"] for j in jobs] == ["scan", "exact", "lsh", "decide", "merge"]
    assert [j["tasks"] for j in jobs] == [4, 4, plan.bands, 1, 1] and plan.bands * plan.rows <= 128
    for j, prev in zip(jobs, [None, "scan", "exact", "lsh", "decide"]):
        s = j["script"]
        assert s.startswith("#!/bin/bash\n")
        assert f"#SBATCH --array=0-{j['tasks'] - 1}\n" in s and "#SBATCH --partition=big\n" in s
        assert "#SBATCH --time=2:00:00\n" in s and f"#SBATCH --job-name=knowlm-corpus-{j['stage']}\n" in s
        assert f"#SBATCH --mem-per-cpu={48 if j['stage'] == 'decide' else 3}G\n" in s
        assert "source /shared/knowlm/.venv/bin/activate" in s
        assert f"launch_pickled_pipeline {tmp_path / 'work' / 'logs' / j['stage'] / 'executor.pik'}" in s
        assert j["sbatch_args"][1:] == ([f"--dependency=afterok:<job id of {prev}>"] if prev else [])
    assert not (tmp_path / "out").exists()  # nothing ran
    rc = cli.main(["corpus", "build", str(SAMPLE), "--out", str(tmp_path / "out"), "--executor", "slurm",
                   "--tasks", "4", "--dry-run", "--work-dir", str(tmp_path / "work2"), "--slurm-partition", "big"])
    assert rc == 0 and capsys.readouterr().out.count("#!/bin/bash") == 5


def test_work_folder_of_another_run_is_refused(tmp_path):
    cfg = load_corpus_config(SAMPLE, ["progress=false"])
    write_plan(make_plan(cfg, tmp_path / "out", tmp_path / "work", 2))
    write_plan(make_plan(cfg, tmp_path / "out", tmp_path / "work", 2))  # the same run: resumed
    cfg.dedup.threshold = 0.9
    with pytest.raises(ValueError, match="work folder holds a distributed build of another config"):
        write_plan(make_plan(cfg, tmp_path / "out", tmp_path / "work", 2))


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["corpus", "build", str(SAMPLE), "--out", str(tmp_path / "o"), "--tasks", "3"]) == 2
    assert "--tasks only apply with --executor" in capsys.readouterr().err
    assert cli.main(["corpus", "build", str(SAMPLE), "--out", str(tmp_path / "o"), "--executor", "local",
                     "--tasks", "2", "--rank-offset", "2"]) == 2
    assert "must lie within 0..1" in capsys.readouterr().err
    try:
        import ray  # noqa: F401
    except ImportError:
        assert cli.main(["corpus", "build", str(SAMPLE), "--out", str(tmp_path / "o"), "--executor", "ray"]) == 2
        err = capsys.readouterr().err
        assert "needs Ray" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_rank_sharded_preprocessing_on_the_local_executor_merges_to_single_machine_bytes(
        tmp_path, sample_corpus_80, sp_model_path):
    from knowlm_utils.corpus_datatrove.preprocess_steps import preprocess_distributed
    from knowlm_utils.preprocess import PreprocessConfig
    from knowlm_utils.preprocess import build as preprocess

    def cfg(out):
        return PreprocessConfig(corpus_dir=str(sample_corpus_80), tokenizer=str(sp_model_path), output_dir=str(out),
                                seq_length=64, types={"zh": ["zh_baike", "zh_wiki"], "en": ["en_wiki"],
                                                      "code": ["code"], "mixed": ["web_mixed"]},
                                valid_percent=10.0, progress=False)

    preprocess(cfg(tmp_path / "one"))
    preprocess_distributed(cfg(tmp_path / "two"), world=2, workers=2)
    for split in ("train", "valid"):
        for ext in ("bin", "idx"):
            a, b = tmp_path / "one" / f"{split}.{ext}", tmp_path / "two" / f"{split}.{ext}"
            assert a.read_bytes() == b.read_bytes() and a.stat().st_size > 0, f"{split}.{ext}"
    assert sorted(p.name for p in tmp_path.iterdir() if ".rank-" in p.name) == [
        "two.rank-00000-of-00002", "two.rank-00001-of-00002"]
