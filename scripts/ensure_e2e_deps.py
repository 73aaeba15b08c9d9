"""Install the pinned ``e2e`` extra of pyproject.toml (Playwright, Voilà) into the running
environment when a pin is missing or differs (``make e2e`` runs this with .venv's Python).
Playwright's Python package only: the browser is Debian's chromium (scripts/ensure_chromium.sh)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def missing() -> list[str]:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["e2e"]
    out = []
    for pin in pins:
        name, _, version = re.split(r"\s*(==)\s*", pin, maxsplit=1)
        try:
            if metadata.version(name) != version:
                out.append(pin)
        except metadata.PackageNotFoundError:
            out.append(pin)
    return out


if __name__ == "__main__":
    todo = missing()
    if todo:
        print(f"ensure_e2e_deps: installing {' '.join(todo)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *todo], check=True)
