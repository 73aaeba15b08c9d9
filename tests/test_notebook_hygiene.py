"""Committed notebooks are clean and every YAML in the repo loads into its typed config."""

from pathlib import Path

import nbformat
import pytest
import yaml

from knowlm_utils.config import load_config
from knowlm_utils.course import CourseConfig, discover
from knowlm_utils.corpus import load_corpus_config
from knowlm_utils.preprocess import load_preprocess_config
from knowlm_utils.pretrain import load_pretrain_config, resolve_deepspeed
from knowlm_utils.tokenizer import load_tokenizer_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = discover(ROOT / "notebooks")


def test_there_are_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS][:2] == ["00", "01"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs (nbstripout)"
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown"
    lines = sorted(len(c.source.splitlines()) for c in code)
    assert lines[len(lines) // 2] <= 10, "median code cell must stay short"


def test_every_yaml_loads():
    for path in sorted(ROOT.glob("configs/**/*.yaml")):
        if path.name.startswith("course-"):
            load_config(CourseConfig, path)
        elif path.name.startswith("corpus-"):
            load_corpus_config(path)
        elif path.name.startswith("tokenizer-"):
            load_tokenizer_config(path)
        elif path.name.startswith("preprocess-"):
            load_preprocess_config(path)
        elif path.parent.name == "pretrain":
            cfg = load_pretrain_config(path)
            resolve_deepspeed(cfg.deepspeed, "cpu" if cfg.device == "cpu" else "cuda", cfg)  # file exists, expands
        else:
            yaml.safe_load(path.read_text("utf-8"))
    for path in [ROOT / "environment.yml", *ROOT.glob("data_samples/**/*.yaml")]:
        assert yaml.safe_load(path.read_text("utf-8"))
