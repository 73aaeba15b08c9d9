"""The course runner: executes ``notebooks/NN_*.ipynb`` in order with papermill, passes
parameters from a YAML config, and writes ``runs/<run-name>/summary.{json,md}``.

Notebooks record results with :func:`record_metrics`; the values travel inside the executed
notebook as an output with mime type ``application/vnd.knowlm.metrics+json`` and the runner
collects them into the summary (no side files, works the same under JupyterLab and papermill).
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
    """Keep a notebook's output to what it prints: transformers and datasets log errors only and
    show no progress bars of their own (weight loading, dataset writing), and their deprecation
    and generation-length notices are not printed. Full logs of training runs go to files."""
    import warnings

    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - a dependency
        pass
    try:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - a dependency
        pass
    import logging

    # bitsandbytes (imported by PEFT) warns on import that an optional CPU kernel package is absent
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(transformers|torch|peft|datasets)\b.*")


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
        print(f"[course] {nb.stem} …", flush=True)
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"parameters": parameters}
        try:
            pm.execute_notebook(str(nb), str(out_nb), parameters=parameters, kernel_name=config.kernel,
                                cwd=str(repo_root()), progress_bar=False,
                                execution_timeout=config.cell_timeout_s)
            entry.update(status="ok", error=None)
        except Exception as exc:  # papermill wraps kernel errors in PapermillExecutionError
            entry.update(status="failed", error=_failure(out_nb, exc))
            failed = nb.stem
        entry["wall_s"] = round(time.perf_counter() - t0, 2)
        entry["metrics"] = collect_metrics(nbformat.read(out_nb, as_version=4)) if out_nb.exists() else {}
        entry["executed"] = str(out_nb)
        summary["notebooks"][nb.stem] = entry
        print(f"[course] {nb.stem}: {entry['status']} in {entry['wall_s']:.1f} s", flush=True)
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
