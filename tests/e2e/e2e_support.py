"""Fixtures of the browser tests (``make e2e``): the scripted model, JupyterLab and Voilà servers on
free 127.0.0.1 ports, and Debian's chromium driven by Playwright (``executable_path``: Playwright
never downloads a browser here).

The tests live in ``browser_e2e.py``, a name pytest's default ``test_*.py`` pattern does not match,
and this folder has no conftest.py: ``make test`` (``pytest tests``) neither collects nor imports
anything here; ``make e2e`` names the file, which imports these fixtures. Jupyter runs
with its own config, data and runtime folders under the test's temporary folder (no user settings,
no news pop-up) and a ``python3`` kernelspec that runs this virtual environment's Python."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCREENSHOTS = ROOT / "runs" / "e2e"
BIN = Path(sys.executable).parent
TOKEN = "knowlm-e2e"


def chromium_path() -> str:
    """The system chromium binary (Debian's ``chromium`` package; ``CHROMIUM`` overrides)."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError("no chromium found: run scripts/ensure_chromium.sh (apt-get install -y chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    from e2e_model import build

    return build(tmp_path_factory.mktemp("e2e-model") / "scripted-llama")


@pytest.fixture(scope="session")
def jupyter_env(tmp_path_factory, model_dir) -> dict[str, str]:
    """Environment of the servers: isolated Jupyter folders, the venv's python3 kernelspec."""
    home = tmp_path_factory.mktemp("jupyter")
    data, config = home / "data", home / "config"
    spec = data / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python", "metadata": {"debugger": False}}))
    settings = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    notebook = config / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True)   # every cell in the page (off-screen cells are otherwise not rendered)
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(JUPYTER_DATA_DIR=str(data), JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_PLATFORM_DIRS="1", JUPYTER_PREFER_ENV_PATH="0", KNOWLM_PLAYGROUND_MODEL=str(model_dir), PYTHONWARNINGS="ignore",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DS_ACCELERATOR="cpu")
    return env


@pytest.fixture(scope="session")
def app_dir(tmp_path_factory) -> Path:
    """A folder holding a copy of the app notebook (the browser may save it; the repository's stays as committed)."""
    d = tmp_path_factory.mktemp("app")
    shutil.copyfile(HERE / "playground_app.ipynb", d / "playground_app.ipynb")
    return d


class Server:
    """A server process in its own process group, its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path, ready_path: str, port: int):
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}"
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 600   # minutes on a loaded machine; seconds otherwise
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {self.proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}{ready_path}", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{argv[0]} did not answer on {self.url} within 600 s:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # the server shuts its kernels down
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._fh.close()


@pytest.fixture(scope="session")
def lab(jupyter_env, app_dir, tmp_path_factory):
    port = free_port()
    argv = [str(BIN / "jupyter-lab"), "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
            "--port-retries=0", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={app_dir}",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    server = Server(argv, jupyter_env, app_dir, tmp_path_factory.mktemp("logs") / "lab.log",
                    f"/api/status?token={TOKEN}", port)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def voila(jupyter_env, app_dir, tmp_path_factory):
    port = free_port()
    argv = [str(BIN / "voila"), str(app_dir / "playground_app.ipynb"), "--no-browser", "--Voila.ip=127.0.0.1",
            f"--port={port}", "--Voila.port_retries=0", f"--token={TOKEN}", "--show_tracebacks=True"]
    server = Server(argv, jupyter_env, app_dir, tmp_path_factory.mktemp("logs") / "voila.log",
                    f"/voila/static/voila.js?token={TOKEN}", port)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(300_000)
    # no network: requests beyond the local server (Voilà's CDN icon font) fail at once instead of waiting
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("http://127.0.0.1:")
               else route.abort())
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
