"""Every notebook, in order, through the course runner with its smoke parameters."""

import json
from pathlib import Path

from knowlm_utils import course

ROOT = Path(__file__).resolve().parents[1]


def test_all_notebooks_smoke(tmp_path):
    cfg = course.load_config(course.CourseConfig, ROOT / "configs" / "course-cpu.yaml")
    cfg.runs_dir = str(tmp_path / "runs")
    assert course.main(cfg, smoke=True) == 0
    summary = json.loads((tmp_path / "runs" / cfg.run_name / "summary.json").read_text())
    names = [p.stem for p in course.discover(ROOT / "notebooks")]
    assert list(summary["notebooks"]) == names
    assert all(e["status"] == "ok" for e in summary["notebooks"].values())
    m = summary["notebooks"]["01_corpus_construction"]["metrics"]
    assert m["docs_in"] == m["kept"] + m["filtered"] + m["duplicates"] + m["skipped"]
    assert m["noise_recall"] >= 0.9 and m["blocklist_clean_removed"] == 0
