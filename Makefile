# One-command setup: every target below creates/refreshes .venv itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test course lab venv clean e2e

# Reinstall only when pyproject.toml changed (the stamp is older than it).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools warns on every editable install ("Editable installation" banner); a first screen stays clean
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/nbstripout --install --attributes .gitattributes >/dev/null 2>&1 || true
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

course: $(STAMP)
	$(BIN)/python scripts/run_course.py --config configs/course/cpu.yaml

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

# Browser tests of the notebook playground (JupyterLab, then Voilà) with Debian's chromium driven by
# Playwright; screenshots in runs/e2e/. Not part of `make test` (tests/e2e/browser_e2e.py is named
# outside pytest's test_*.py pattern).
e2e: $(STAMP)
	$(BIN)/python scripts/ensure_e2e_deps.py
	bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest tests/e2e/browser_e2e.py

clean:
	rm -rf runs/ .pytest_cache
