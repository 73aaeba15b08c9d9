"""Committed notebooks are clean (stripped, one parameters cell, short cells) and follow the course
form: "You will learn" first, "Try this" last (every exercise checkable), a "Real scale" box."""

import re
from pathlib import Path

import nbformat
import pytest

from knowlm_utils.course import discover

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


# ------------------------------------------------------------------ teaching form (issue 15) ----
def _headings(nb, level: int) -> list[tuple[int, str]]:
    """(cell index, heading text) of every markdown heading of exactly ``level``."""
    prefix = "#" * level + " "
    return [(i, line[len(prefix):].strip()) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
            for line in c.source.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_you_will_learn(path):
    first = nbformat.read(path, as_version=4).cells[0].source
    assert "**You will learn**" in first, "the first cell says what the learner will learn"
    points = re.findall(r"^\d+\. ", first.split("**You will learn**", 1)[1], re.M)
    assert 3 <= len(points) <= 5, f"'You will learn' lists 3-5 points, found {len(points)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_ends_with_try_this_and_each_exercise_can_be_checked(path):
    nb = nbformat.read(path, as_version=4)
    sections = _headings(nb, 2)
    assert sections and sections[-1][1] == "Try this", f"the last section must be '## Try this', is {sections[-1:]}"
    start = sections[-1][0]
    exercises = [(i, h) for i, h in _headings(nb, 3) if i >= start and h.startswith("Try this")]
    if exercises:  # one sub-section per exercise: a collapsed "Solution" heading and a cell that asserts
        bounds = [i for i, _ in exercises] + [len(nb.cells)]
        for (i, name), end in zip(exercises, bounds[1:]):
            cells = nb.cells[i:end]
            solutions = [c for c in cells if c.cell_type == "markdown" and c.source.startswith("#### Solution")]
            assert solutions, f"{name}: no '#### Solution' heading"
            assert all(c.metadata.get("jp-MarkdownHeadingCollapsed") for c in solutions), f"{name}: solution not collapsed"
            assert any(c.cell_type == "code" and "assert " in c.source for c in cells), f"{name}: no check (assert)"
        count = len(exercises)
    else:          # a numbered list, each item with its *Check:*
        text = nb.cells[start].source.split("## Try this", 1)[1].split("**Next:**")[0]
        items = re.split(r"^\d+\. ", text, flags=re.M)[1:]
        assert all("Check" in item for item in items), "every exercise says how to check it"
        count = len(items)
    assert 2 <= count <= 5, f"{count} exercises"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_real_scale_box(path):
    nb = nbformat.read(path, as_version=4)
    assert any("Real scale" in c.source for c in nb.cells if c.cell_type == "markdown"), \
        "each stage says what it costs at KnowLM's scale"
