"""The course runner: executes ``notebooks/NN_*.ipynb`` in order with papermill, passes
parameters from a YAML config, and writes ``runs/<run-name>/summary.{json,md}``.

Notebooks record results with :func:`record_metrics`; the values travel inside the executed
notebook as an output with mime type ``application/vnd.knowlm.metrics+json`` and the runner
collects them into the summary (no side files, works the same under JupyterLab and papermill).

A learner's first screens should hold what the course means to show. The runner therefore starts
kernels over encrypted sockets (no "Kernel is running over TCP without encryption" per notebook),
sends each kernel process's own stdout/stderr to ``runs/<run-name>/NN_topic.kernel.log`` instead of
the terminal, and checks every executed notebook for output nobody intended (:func:`unexpected_output`: stderr
lines, warnings, raw progress bars, saved progress widgets), minus the allow-list
:data:`EXPECTED_OUTPUT`; what is left is reported per notebook in the summary (``make test``
fails on it).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from .config import ConfigError, StageConfig, field, parse_overrides
from .fileio import read_json, write_json_atomic, write_text_atomic
from .workdir import repo_root

METRICS_MIME = "application/vnd.knowlm.metrics+json"
_NB_NAME = re.compile(r"^(\d{2})_[A-Za-z0-9_]+\.ipynb$")


def _jsonable(value: Any, key: str) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy / torch scalars
    if isinstance(value, float) and value != value:
        return None  # NaN is not JSON
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, key) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(f"metric {key!r}: {type(value).__name__} is not JSON-serialisable; pass numbers, strings, "
                    "lists or dicts")


def record_metrics(**metrics: Any) -> None:
    """Record named metrics from a notebook cell (shown as text, collected by the runner)."""
    data = {k: _jsonable(v, k) for k, v in metrics.items()}
    text = "\n".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in data.items())
    try:
        from IPython import get_ipython
        from IPython.display import display
        in_ipython = get_ipython() is not None
    except ImportError:  # pragma: no cover - IPython is a dependency
        in_ipython = False
    if in_ipython:
        display({METRICS_MIME: data, "text/plain": "metrics\n" + text}, raw=True)
    else:
        print("metrics\n" + text)


def quiet_libraries() -> None:
    """Keep a notebook's output to what it prints (:func:`knowlm_utils.quiet.quiet_library_notices`:
    no library notices, no weight-loading bars; full logs of training runs go to files). Pandas
    tables show a ``$`` in text as a dollar sign (JupyterLab would otherwise typeset the text
    between two of them as maths)."""
    from .quiet import quiet_library_notices

    try:
        import pandas as pd

        pd.set_option("display.html.use_mathjax", False)
    except ImportError:  # pragma: no cover - a dependency
        pass
    quiet_library_notices()


class LaunchProgress:
    """One live status line for a launched training run (``launch_pretrain(..., echo=False,
    on_output=LaunchProgress(log_path))``): the step of the Trainer's progress bar, elapsed and
    remaining time, the latest training and held-out loss, and where the full log is. Under
    IPython the line is one display that is updated in place (an executed notebook keeps its last
    state); elsewhere it is printed every ``every_s`` seconds."""

    # the Trainer's bar has no description ("unigram counts: 100%|…| 1/1" is another bar)
    _BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[([0-9:]+)<([0-9:?]+)")
    _LOSS = re.compile(r"'(eval_loss|loss)': '?([0-9.]+(?:e[-+]?\d+)?)")

    def __init__(self, log_path: str | os.PathLike | None = None, label: str = "training", every_s: float = 1.0):
        self.log_path, self.label, self.every_s = log_path, label, every_s
        self.step = self.total = None
        self.elapsed = self.left = ""
        self.loss: dict[str, float] = {}
        self._last = 0.0
        self._handle = None
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None:
                self._handle = display({"text/plain": self.text()}, raw=True, display_id=True)
        except ImportError:  # pragma: no cover - IPython is a dependency
            pass

    def text(self) -> str:
        parts = [self.label]
        if self.step is not None:
            parts[0] += f": step {self.step}/{self.total}"
            running = self.step < self.total and self.left and "?" not in self.left
            parts.append(f"{self.elapsed} elapsed" + (f", ~{self.left} left" if running else ""))
        else:
            parts[0] += ": starting"
        if "loss" in self.loss:
            parts.append(f"train loss {self.loss['loss']:.3f}")
        if "eval_loss" in self.loss:
            parts.append(f"held-out loss {self.loss['eval_loss']:.3f}")
        if self.log_path is not None:
            parts.append(f"full log: {self.log_path}")
        return " · ".join(parts)

    def __call__(self, segment: str) -> None:
        bar = self._BAR.search(segment)
        if bar and (self.total is None or int(bar.group(2)) >= self.total):  # not an evaluation's short bar
            self.step, self.total = int(bar.group(1)), int(bar.group(2))
            self.elapsed, self.left = bar.group(3), bar.group(4)
        for key, value in self._LOSS.findall(segment):
            self.loss[key] = float(value)
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._show()

    def _show(self) -> None:
        if self._handle is not None:
            self._handle.update({"text/plain": self.text()}, raw=True)
        else:
            print(self.text(), flush=True)

    def close(self) -> None:
        """Show the final state (call after the launch returned)."""
        self._show()


# --------------------------------------------------------------------------------------------
# Output nobody intended
# --------------------------------------------------------------------------------------------

#: Lines an executed notebook may show although they match :func:`unexpected_output`'s rules:
#: (notebook number or ``*``, regular expression searched in the line, why it is expected). Empty:
#: notebooks 00-05 print no warning, stderr line or raw progress bar on purpose. Add an entry only
#: for output a notebook shows to teach something, never to hide a library's noise (silence that at
#: its source: ``quiet_libraries``, ``echo=False`` + a log file, ``progress=False``).
EXPECTED_OUTPUT: list[tuple[str, str, str]] = []

# stdout lines that look like warnings, tracebacks, terminal control codes or raw progress bars
_NOISY_STDOUT = re.compile(
    r"\bWARN(ING)?\b"                      # logging: "[WARNING]", "WARNING:"
    r"|\b\w*Warning: "                     # warnings.warn: "UserWarning: …"
    r"|^\w*(Error|Exception): "            # an exception message at the start of a line
    r"|Traceback \(most recent call last\)"
    r"|Failed to "
    r"|\x1b\["                             # terminal escape codes ("[A" of nested progress bars)
    r"|\d+%\|[^|]*\|")                      # a tqdm progress bar
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
MAX_STREAM_OUTPUTS = 30   # a cell with more separate stream outputs floods the page


def unexpected_output(nb, notebook: str = "", allow: list[tuple[str, str, str]] | None = None) -> list[str]:
    """Output of an executed notebook that the course did not intend, as ``"cell N: text"``
    lines (N = index of the cell in the source notebook; papermill's injected cells are not
    counted): every non-blank line written to **stderr**
    (JupyterLab shows stderr as a pink, error-looking block), **stdout** lines that look like
    warnings, tracebacks, terminal escape codes or raw progress bars, saved **widget** views (a
    progress bar that stays on the page at its last state), and cells with more than
    ``MAX_STREAM_OUTPUTS`` separate stream outputs. Lines matching an ``allow`` entry
    (default :data:`EXPECTED_OUTPUT`) for this ``notebook`` (its number, e.g. "05") are left out."""
    allow = EXPECTED_OUTPUT if allow is None else allow
    rules = [re.compile(rx) for nn, rx, _ in allow if nn in ("*", notebook[:2])]
    found: list[str] = []

    def report(i: int, line: str) -> None:
        line = line.rstrip()
        if line.strip() and not any(r.search(line) for r in rules):
            found.append(f"cell {i}: {line[:300]}")

    added_by_papermill = {"injected-parameters", "papermill-error-cell-tag"}
    cells = [c for c in nb.get("cells", []) if not added_by_papermill & set(c.get("metadata", {}).get("tags", []))]
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        outputs = cell.get("outputs", [])
        streams = [o for o in outputs if o.get("output_type") == "stream"]
        if len(streams) > MAX_STREAM_OUTPUTS:
            report(i, f"{len(streams)} separate stream outputs (show one status line; keep the rest in a log file)")
        for out in outputs:
            if out.get("output_type") == "stream":
                text = out.get("text", "")
                text = "".join(text) if isinstance(text, list) else text
                for line in re.split(r"\r\n|\r|\n", text):
                    if out.get("name") == "stderr" or _NOISY_STDOUT.search(line):
                        report(i, line)
            elif _WIDGET_MIME in out.get("data", {}):
                shown = out["data"].get("text/plain", "")
                report(i, "widget: " + ("".join(shown) if isinstance(shown, list) else shown))
    return found


def plot_course_map(stages: list[str], built: list[bool], per_row: int = 5, ax=None):
    """The course's stages as boxes on a path that runs left to right along the top row and back
    right to left along the next, so every arrow joins neighbours (no arrow crosses a box). Built
    stages are filled, planned ones dashed and grey. Returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    rows = (len(stages) + per_row - 1) // per_row
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 1.6 * rows + 0.6))
    ax.set_axis_off()
    ax.set_xlim(0, per_row)
    ax.set_ylim(-0.45, rows)

    def place(i: int) -> tuple[float, float]:
        row, col = divmod(i, per_row)
        return (col if row % 2 == 0 else per_row - 1 - col) + 0.08, rows - 1 - row + 0.15

    for i, (name, done) in enumerate(zip(stages, built)):
        x, y = place(i)
        ax.add_patch(FancyBboxPatch((x, y), 0.8, 0.65, boxstyle="round,pad=0.02",
                                    fc=f"C{i % 10}" if done else "white", alpha=0.35 if done else 1.0,
                                    ec="black" if done else "grey", ls="-" if done else "--"))
        ax.text(x + 0.4, y + 0.33, name + ("" if done else "\n(planned)"), ha="center", va="center", fontsize=9,
                color="black" if done else "grey")
        if i + 1 < len(stages):
            (x2, y2) = place(i + 1)
            if y2 == y:  # same row: from the facing side of this box to the next one
                start, end = ((x + 0.82, y + 0.33), (x2 - 0.02, y + 0.33)) if x2 > x else \
                             ((x - 0.02, y + 0.33), (x2 + 0.82, y + 0.33))
            else:        # down to the row below, at the end of the row
                start, end = (x + 0.4, y - 0.02), (x2 + 0.4, y2 + 0.67)
            ax.annotate("", end, start, arrowprops={"arrowstyle": "->", "color": "black" if built[i + 1] else "grey"})
    ax.text(0.08, -0.35, "filled: built (notebook present) · dashed: planned", fontsize=8, color="grey")
    return ax


def collect_metrics(nb) -> dict[str, Any]:
    """Merge every metrics bundle of an executed notebook, in cell order."""
    merged: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = out.get("data", {})
            if METRICS_MIME in data:
                value = data[METRICS_MIME]
                merged.update(json.loads(value) if isinstance(value, str) else value)
    return merged


@dataclass
class CourseConfig(StageConfig):
    """The papermill course run (`make course`); its paths are relative to the repository root."""

    run_name: str = field("course-cpu", help="runs/<run_name>/ holds executed notebooks and the summary")
    runs_dir: str = field("runs", help="parent folder of all runs (relative to the repository root)")
    notebooks_dir: str = field("notebooks", help="folder with NN_topic.ipynb notebooks")
    workdir: str | None = field(None, help="shared working directory; default runs/<run_name>/workdir")
    kernel: str = field("python3", help="Jupyter kernel name")
    globals: dict[str, Any] = field(default_factory=dict, help="parameters passed to every notebook")
    notebooks: dict[str, dict[str, Any]] = field(default_factory=dict, help="per-notebook parameters, keyed 'NN' "
                                                                            "or the notebook stem")
    smoke: dict[str, dict[str, Any]] = field(default_factory=dict, help="per-notebook parameters merged on top "
                                                                        "with --smoke")
    cell_timeout_s: int | None = field(None, ge=1, help="papermill execution timeout per cell (None: no limit)")

    def path(self, value: str | os.PathLike) -> Path:
        """Course paths are taken from the repository root (the runner works from any cwd)."""
        return _abs(value)


class CourseError(RuntimeError):
    """A notebook failed; the message names notebook, cell and error."""


def _abs(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


def discover(notebooks_dir: Path) -> list[Path]:
    return sorted(p for p in notebooks_dir.glob("*.ipynb") if _NB_NAME.match(p.name))


def _select(nbs: list[Path], only: list[str] | None, start: str | None) -> list[Path]:
    def key(p: Path) -> str:
        return p.name[:2]
    if only:
        wanted = {o.strip()[:2].zfill(2) for o in only if o.strip()}
        missing = wanted - {key(p) for p in nbs}
        if missing:
            raise ConfigError(f"--only names notebooks that do not exist: {sorted(missing)}")
        return [p for p in nbs if key(p) in wanted]
    if start:
        return [p for p in nbs if key(p) >= start.strip()[:2].zfill(2)]
    return nbs


def parse_params(items: list[str] | None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``key=value`` → global; ``NN.key=value`` → notebook NN. Values parsed with yaml.safe_load
    (the same parser as every ``-o`` override; never evaluated)."""
    glob_p: dict[str, Any] = {}
    per_nb: dict[str, dict[str, Any]] = {}
    for parts, value in parse_overrides(items):
        if len(parts) == 2 and re.fullmatch(r"\d{2}", parts[0]) and parts[1].isidentifier():
            per_nb.setdefault(parts[0], {})[parts[1]] = value
        else:
            glob_p[".".join(parts)] = value
    return glob_p, per_nb


def _section(table: dict, nb: Path) -> dict:
    """Parameters for ``nb`` from a table keyed 'NN' (YAML may read 01 as the int 1) or the stem."""
    out: dict = {}
    for key, value in (table or {}).items():
        k = str(key).zfill(2) if isinstance(key, int) else str(key)
        if k in (nb.name[:2], nb.stem):
            out.update(value or {})
    return out


def _failure(nb_path: Path, exc: Exception) -> str:
    """Name the failing cell (index and first line) from the partially executed notebook."""
    cell_desc = "unknown cell"
    try:
        import nbformat
        nb = nbformat.read(nb_path, as_version=4)
        skip_tags = {"injected-parameters", "papermill-error-cell-tag"}  # cells papermill added
        original = [c for c in nb.cells if not skip_tags & set(c.metadata.get("tags", []))]
        for i, c in enumerate(original):
            if c.cell_type != "code":
                continue
            if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
                first = (c.source.strip().splitlines() or [""])[0]
                cell_desc = f"cell {i} of the source notebook ({first[:80]!r})"
                break
    except Exception:  # the message must still be produced
        pass
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    return f"{nb_path.name}: {cell_desc}: {ename}: {evalue}"


def kernel_manager_class(log_path: str | os.PathLike | None = None):
    """The kernel manager the runner starts notebooks with: CurveZMQ-encrypted sockets when pyzmq
    supports them (the kernelspec of ipykernel declares support), otherwise local IPC sockets.
    Either way ipykernel has no reason to print "Kernel is running over TCP without encryption"
    for every notebook, and no other program on the machine can read the kernel's traffic.
    ``log_path``: where the kernel process's own stdout and stderr go (appended): its log lines
    (jupyter_client interrupts a kernel before shutting it down, which ipykernel may log as
    "KeyboardInterrupt caught in kernel") and whatever writes to its file descriptors directly;
    the cells' output still reaches the notebook. None: the runner's terminal."""
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    curve = bool(zmq.has("curve"))

    class CourseKernelManager(AsyncKernelManager):
        @default("transport_encryption")
        def _course_encryption(self):
            return "auto" if curve else "disabled"

        @default("transport")
        def _course_transport(self):
            return "tcp" if curve else "ipc"

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            if log_path is None:
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            with open(log_path, "ab") as log:  # the kernel holds its own copy of the descriptor
                return await super()._async_launch_kernel(kernel_cmd, **{**kw, "stdout": log, "stderr": log})

    return CourseKernelManager


def main(config: CourseConfig | str | os.PathLike, only: list[str] | None = None, start: str | None = None,
         smoke: bool = False, params: list[str] | None = None) -> int:
    """Run the course; returns 0 when every selected notebook succeeded, else 1."""
    import nbformat
    import papermill as pm

    config = CourseConfig.load(config if isinstance(config, CourseConfig) else _abs(config))
    run_dir = config.path(config.runs_dir) / config.run_name
    workdir = config.path(config.workdir) if config.workdir else run_dir / "workdir"
    run_dir.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    nbs = _select(discover(config.path(config.notebooks_dir)), only, start)
    if not nbs:
        raise ConfigError(f"no notebooks NN_topic.ipynb found in {config.path(config.notebooks_dir)}")
    cli_global, cli_nb = parse_params(params)
    summary_path = run_dir / "summary.json"
    summary = read_json(summary_path) if summary_path.exists() else {"notebooks": {}}
    summary.update({"run_name": config.run_name, "smoke": smoke, "workdir": str(workdir)})
    t_all = time.perf_counter()
    failed = None
    for nb in nbs:
        if failed is not None:
            summary["notebooks"][nb.stem] = {"status": "not-run", "wall_s": None, "metrics": {},
                                             "error": f"not run: {failed} failed"}
            continue
        parameters = {**config.globals, "workdir": str(workdir), **_section(config.notebooks, nb)}
        if smoke:
            parameters.update(_section(config.smoke, nb))
        parameters.update(cli_global)
        parameters.update(cli_nb.get(nb.name[:2], {}))
        out_nb = run_dir / nb.name
        kernel_log = run_dir / f"{nb.stem}.kernel.log"
        kernel_log.unlink(missing_ok=True)  # the previous run's, in this run's own folder
        print(f"[course] {nb.stem} …", flush=True)
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"parameters": parameters}
        try:
            pm.execute_notebook(str(nb), str(out_nb), parameters=parameters, kernel_name=config.kernel,
                                cwd=str(repo_root()), progress_bar=False, execution_timeout=config.cell_timeout_s,
                                kernel_manager_class=kernel_manager_class(kernel_log))
            entry.update(status="ok", error=None)
        except Exception as exc:  # papermill wraps kernel errors in PapermillExecutionError
            entry.update(status="failed", error=_failure(out_nb, exc))
            failed = nb.stem
        entry["wall_s"] = round(time.perf_counter() - t0, 2)
        executed = nbformat.read(out_nb, as_version=4) if out_nb.exists() else None
        entry["metrics"] = collect_metrics(executed) if executed is not None else {}
        entry["unexpected_output"] = unexpected_output(executed, nb.name) if executed is not None else []
        entry["executed"] = str(out_nb)
        if kernel_log.is_file() and not kernel_log.stat().st_size:
            kernel_log.unlink()  # a quiet kernel leaves no empty file behind
        entry["kernel_log"] = str(kernel_log) if kernel_log.is_file() else None
        if failed == nb.stem and entry["kernel_log"]:
            entry["error"] += f" (the kernel's own output: {kernel_log})"
        summary["notebooks"][nb.stem] = entry
        print(f"[course] {nb.stem}: {entry['status']} in {entry['wall_s']:.1f} s", flush=True)
        if entry["unexpected_output"]:
            print(f"[course] {nb.stem}: {len(entry['unexpected_output'])} line(s) of unexpected output, first: "
                  f"{entry['unexpected_output'][0]}", file=sys.stderr, flush=True)
        if failed:
            print(f"[course] FAILED {entry['error']}", file=sys.stderr, flush=True)
    summary["notebooks"] = dict(sorted(summary["notebooks"].items()))
    summary["wall_s"] = round(time.perf_counter() - t_all, 2)
    write_json_atomic(summary_path, summary)
    write_text_atomic(run_dir / "summary.md", render_summary_md(summary))
    print(f"[course] summary: {summary_path}")
    return 1 if failed else 0


def render_summary_md(summary: dict[str, Any]) -> str:
    lines = [f"# Course run `{summary['run_name']}`", "",
             f"smoke: {summary['smoke']} · workdir: `{summary['workdir']}` · wall time of this invocation: "
             f"{summary.get('wall_s', 0):.1f} s", "",
             "| notebook | status | wall s | metrics |", "|---|---|---|---|"]
    for name, e in summary["notebooks"].items():
        metrics = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in e.get("metrics", {}).items()
                            if not isinstance(v, (dict, list)))
        wall = "" if e.get("wall_s") is None else f"{e['wall_s']:.1f}"
        lines.append(f"| {name} | {e['status']} | {wall} | {metrics} |")
    errors = [(n, e["error"]) for n, e in summary["notebooks"].items() if e.get("status") == "failed"]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {err}" for _, err in errors]
    noise = [(n, e["unexpected_output"]) for n, e in summary["notebooks"].items() if e.get("unexpected_output")]
    if noise:
        lines += ["", "## Unexpected output (stderr, warnings, raw progress bars; see course.EXPECTED_OUTPUT)", ""]
        lines += [f"- {n}: `{line}`" for n, found in noise for line in found[:10]]
    return "\n".join(lines) + "\n"


def add_arguments(p) -> None:
    p.add_argument("--config", default="configs/course/cpu.yaml", help="course YAML")
    p.add_argument("--only", help="comma-separated notebook numbers, e.g. 01 or 00,01")
    p.add_argument("--from", dest="start", help="start at this notebook number")
    p.add_argument("--smoke", action="store_true", help="merge the config's smoke section (smallest parameters)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="[NN.]KEY=VALUE",
                   help="parameter override (repeatable); NN.key targets one notebook")
    p.add_argument("--run-name", help="override run_name")


def run_from_args(args) -> int:
    cfg = CourseConfig.from_yaml(_abs(args.config))
    if args.run_name:
        cfg.run_name = args.run_name
    only = args.only.split(",") if args.only else None
    return main(cfg, only=only, start=args.start, smoke=args.smoke, params=args.param)


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("course", help="run the course notebooks with papermill")
    sub = p.add_subparsers(dest="course_cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks in order and write runs/<run-name>/summary.{json,md}")
    add_arguments(r)
    r.set_defaults(func=run_from_args)
