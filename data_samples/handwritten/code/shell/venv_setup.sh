#!/usr/bin/env bash
# Create a Python virtual environment once and install pinned requirements.
set -euo pipefail
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --upgrade pip
.venv/bin/python -m pip install -r requirements.txt
echo "ready: source .venv/bin/activate"
