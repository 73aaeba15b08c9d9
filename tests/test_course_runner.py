"""The papermill course runner (knowlm_utils.course) on tiny real notebooks."""

import json

import nbformat
import pytest

from knowlm_utils import course
from knowlm_utils.course import CourseConfig


def _nb(path, body, params="x = 1"):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), p] + [nbformat.v4.new_code_cell(b) for b in body]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def course_dir(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    rec = "from knowlm_utils.course import record_metrics\n"
    _nb(nbs / "00_first.ipynb", [rec + "record_metrics(x=x, where=workdir, arr=[1, 2])"], "x = 1\nworkdir = ''")
    _nb(nbs / "01_second.ipynb", [rec + "record_metrics(got=str(value))", "import numpy as np\nrecord_metrics(f=np.float32(0.5))"],
        "value = 'default'\nworkdir = ''")
    _nb(nbs / "02_breaks.ipynb", ["y = 2", "raise ValueError('planted failure')"], "workdir = ''")
    _nb(nbs / "03_after.ipynb", ["record_metrics(never=1)"], "workdir = ''")
    return tmp_path, CourseConfig(run_name="r", runs_dir=str(tmp_path / "runs"), notebooks_dir=str(nbs),
                                  notebooks={"01": {"value": "from-config"}}, smoke={"01": {"value": "smoke"}})


def _summary(tmp_path):
    return json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())


def test_parameters_metrics_and_summary(course_dir):
    tmp_path, cfg = course_dir
    assert course.main(cfg, only=["00", "01"], params=["00.x=41", "other=ignored"]) == 0
    s = _summary(tmp_path)["notebooks"]
    assert s["00_first"]["metrics"] == {"x": 41, "where": str(tmp_path / "runs" / "r" / "workdir"), "arr": [1, 2]}
    assert s["01_second"]["metrics"] == {"got": "from-config", "f": 0.5}
    assert set(s) == {"00_first", "01_second"}
    md = (tmp_path / "runs" / "r" / "summary.md").read_text()
    assert "| 00_first | ok |" in md and "x=41" in md
    assert (tmp_path / "runs" / "r" / "01_second.ipynb").exists()


def test_smoke_section_and_safe_parsing(course_dir):
    tmp_path, cfg = course_dir
    assert course.main(cfg, only=["01"], smoke=True) == 0
    assert _summary(tmp_path)["notebooks"]["01_second"]["metrics"]["got"] == "smoke"
    assert course.main(cfg, only=["01"], params=["01.value=__import__('os').getcwd()"]) == 0
    assert _summary(tmp_path)["notebooks"]["01_second"]["metrics"]["got"] == "__import__('os').getcwd()"


def test_failure_stops_names_cell_and_keeps_partial(course_dir, capsys):
    tmp_path, cfg = course_dir
    assert course.main(cfg, start="01") == 1
    s = _summary(tmp_path)["notebooks"]
    assert s["01_second"]["status"] == "ok"
    err = s["02_breaks"]["error"]
    assert s["02_breaks"]["status"] == "failed"
    assert "02_breaks.ipynb" in err and "cell 3" in err and "raise ValueError" in err and "planted failure" in err
    assert s["03_after"]["status"] == "not-run" and "00_first" not in s
    partial = nbformat.read(tmp_path / "runs" / "r" / "02_breaks.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in partial.cells for o in c.get("outputs", []))
    assert "FAILED 02_breaks.ipynb" in capsys.readouterr().err


def test_only_unknown_and_bad_param(course_dir):
    _, cfg = course_dir
    with pytest.raises(course.ConfigError, match="do not exist"):
        course.main(cfg, only=["07"])
    with pytest.raises(course.ConfigError, match="key=value"):
        course.parse_params(["novalue"])


def test_record_metrics_rejects_objects():
    with pytest.raises(TypeError, match="'bad'.*not JSON-serialisable"):
        course.record_metrics(bad=object())
