# One-command setup: every target below creates/refreshes .venv itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test course lab venv clean

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

clean:
	rm -rf runs/ .pytest_cache
