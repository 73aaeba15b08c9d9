"""Output nobody intended: the rules of ``course.unexpected_output`` on hand-made notebooks, the
runner reporting it (and starting kernels over encrypted sockets), and — with
``KNOWLM_EXECUTED_RUN=runs/<name>`` — every executed notebook of a finished course run
(``make test`` checks its own smoke run in test_notebooks.py)."""

import json
import os
from pathlib import Path

import nbformat
import pytest

from knowlm_utils import course
from knowlm_utils.course import CourseConfig, unexpected_output


def _stream(name, text):
    return nbformat.v4.new_output("stream", name=name, text=text)


def _executed(*outputs_per_cell):
    nb = nbformat.v4.new_notebook()
    for outputs in outputs_per_cell:
        cell = nbformat.v4.new_code_cell("x")
        cell.outputs = list(outputs)
        nb.cells.append(cell)
    return nb


def test_stderr_warnings_progress_bars_widgets_and_floods_are_reported():
    widget = nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                                                          "text/plain": "Loading weights:   0%|  | 0/39"})
    nb = _executed(
        [_stream("stdout", "built in 3.2 s\nrecords 10 = kept 9 + filtered 1\n"                # intended: nothing
                           "missing input x: MissingArtifactError names notebook 04; 7 warnings planted\n")],
        [_stream("stderr", "\rcorpus:zh:  50%|█████     | 1/2\rcorpus:zh: 100%|██████████| 2/2\n")],
        [_stream("stdout", "[2026-01-01 00:00:00,000] [WARNING] [runner.py:214] Unable to find hostfile\n")],
        [_stream("stdout", "Failed to load CPU gemm_4bit_forward from kernels-community\n\x1b[A\n"
                           "/x/y.py:3: FutureWarning: `foo` is deprecated\nValueError: boom\n")],
        [_stream("stdout", "  7%|▋         | 10/150 [00:10<01:40,  1.40it/s]\r")],
        [widget],
        [_stream("stdout", f"line {k}\n") for k in range(course.MAX_STREAM_OUTPUTS + 1)],
    )
    found = unexpected_output(nb, "05_x.ipynb")
    cells = [int(line.split(":")[0].split()[1]) for line in found]
    assert 0 not in cells and {1, 2, 3, 4, 5, 6} <= set(cells)
    assert any("corpus:zh: 100%" in line for line in found) and any("widget: Loading weights" in line for line in found)
    assert any("separate stream outputs" in line for line in found)
    assert sum(line.startswith("cell 3: ") for line in found) == 4   # Failed to …, escape, FutureWarning, ValueError
    assert found[0].startswith("cell 1: ")


def test_the_allow_list_is_per_notebook():
    nb = _executed([_stream("stderr", "expected note from a library\n"), _stream("stderr", "something else\n")])
    allow = [("03", r"^expected note", "the notebook shows it on purpose")]
    assert unexpected_output(nb, "03_x.ipynb", allow) == ["cell 0: something else"]
    assert len(unexpected_output(nb, "04_x.ipynb", allow)) == 2
    assert unexpected_output(nb, "04_x.ipynb", [("*", r".", "everything")]) == []


def test_runner_reports_unexpected_output_in_the_summary(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("workdir = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), params,
                nbformat.v4.new_code_cell("import sys\nprint('fine')\nprint('a stray note', file=sys.stderr)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbs / "00_noisy.ipynb")
    cfg = CourseConfig(run_name="r", runs_dir=str(tmp_path / "runs"), notebooks_dir=str(nbs))
    assert course.main(cfg) == 0   # noise is reported, not a failure of the run
    entry = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())["notebooks"]["00_noisy"]
    assert entry["unexpected_output"] == ["cell 2: a stray note"]
    assert "a stray note" in (tmp_path / "runs" / "r" / "summary.md").read_text()


def test_the_kernel_process_writes_to_its_log_not_to_the_runners_terminal(tmp_path, capfd):
    """What reaches the kernel's own descriptors (its log lines; a library writing to fd 2) goes to
    runs/<run>/NN_topic.kernel.log; the cells' output still goes to the notebook; a failure names the log."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name, last in [("00_fd", "print('in the notebook')"), ("01_quiet", "print('only here')"),
                       ("02_dies", "os._exit(3)")]:
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("workdir = ''")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(f"import os\nos.write(2, b'raw fd2 of {name}\\n')\n{last}"
                                                      if name != "01_quiet" else last)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbs / f"{name}.ipynb")
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "00_fd.kernel.log").write_text("left from an earlier run\n")
    cfg = CourseConfig(run_name="r", runs_dir=str(tmp_path / "runs"), notebooks_dir=str(nbs))
    assert course.main(cfg) == 1
    out, err = capfd.readouterr()
    assert "raw fd2" not in out + err
    log = (run / "00_fd.kernel.log").read_text()
    assert "raw fd2 of 00_fd\n" in log and "earlier run" not in log  # this run's, started afresh
    assert "raw fd2 of 02_dies" in (run / "02_dies.kernel.log").read_text()
    summary = json.loads((run / "summary.json").read_text())["notebooks"]
    assert summary["00_fd"]["status"] == "ok" and summary["00_fd"]["kernel_log"] == str(run / "00_fd.kernel.log")
    assert summary["00_fd"]["unexpected_output"] == []
    quiet = run / "01_quiet.kernel.log"  # none, unless ipykernel logged the interrupt before its shutdown
    assert summary["01_quiet"]["kernel_log"] == (str(quiet) if quiet.exists() else None)
    assert not quiet.exists() or "raw fd2" not in quiet.read_text() and quiet.stat().st_size
    executed = nbformat.read(run / "00_fd.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "in the notebook\n"
    assert summary["02_dies"]["status"] == "failed"
    assert summary["02_dies"]["error"].endswith(f"(the kernel's own output: {run / '02_dies.kernel.log'})")


def test_kernels_talk_over_encrypted_or_local_sockets():
    import zmq

    km = course.kernel_manager_class()(kernel_name="python3")
    if zmq.has("curve"):
        assert km.transport == "tcp" and km.transport_encryption == "auto"
    else:
        assert km.transport == "ipc"


_RUN = os.environ.get("KNOWLM_EXECUTED_RUN")
_EXECUTED = sorted(Path(_RUN).glob("[0-9][0-9]_*.ipynb")) if _RUN else []


@pytest.mark.skipif(not _RUN, reason="set KNOWLM_EXECUTED_RUN=runs/<name> to check a finished course run")
@pytest.mark.parametrize("path", _EXECUTED, ids=lambda p: p.name)
def test_executed_notebook_shows_only_intended_output(path):
    found = unexpected_output(nbformat.read(path, as_version=4), path.name)
    assert not found, f"{path.name}: {len(found)} line(s) of unexpected output:\n" + "\n".join(found[:20])


def test_launch_progress_shows_one_status_line_from_the_launch_output(tmp_path, capsys):
    import sys

    from knowlm_utils.launch import run_launcher

    child = ("import sys\n"
             "print('[WARNING] no hostfile')\n"
             "sys.stdout.write('unigram counts: 100%|##########| 1/1 [00:00<00:00]\\r\\n')\n"
             "for k in (1, 2, 3):\n"
             "    sys.stdout.write(f' {k * 33}%|###       | {k}/3 [00:0{k}<00:0{3 - k}, 1.0it/s]\\r')\n"
             "print(\"{'loss': '7.25', 'epoch': '1'}\")\n"
             "print(\"{'eval_loss': '6.5', 'epoch': '1'}\")\n"
             "sys.stdout.write('100%|##########| 1/1 [00:00<00:00]\\r')\n")
    log = tmp_path / "run.log"
    progress = course.LaunchProgress(log, label="pretraining", every_s=0)
    assert run_launcher([sys.executable, "-c", child], log_path=log, echo=False, on_output=progress) == 0
    progress.close()
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"pretraining: step 3/3 · 00:03 elapsed · train loss 7.250 · held-out loss 6.500 · full log: {log}"
    assert not any("WARNING" in line for line in out)       # the launcher's chatter stays in the log
    assert "[WARNING] no hostfile" in log.read_text()
