# One-command setup: every target below creates/refreshes .venv itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test course lab venv clean e2e sft-long

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

# Issue 11's long CPU SFT recipe (README: the cpu-long* rows of the measured figures): five legs, each
# training on from the adapter of the one before (configs/sft/cpu-long*.yaml), about 7 h 15 min on 2 cores,
# then the whole test split scored under the answers' grammar (about 15 min; the report in runs/eval/).
# Needs the pretrained tiny model and the IE data in WORKDIR: run `make course` first. Restartable: a
# finished leg (its final adapter written) is skipped, an interrupted one goes on from its newest checkpoint.
WORKDIR ?= $(CURDIR)/runs/course-cpu/workdir
define sft_leg  # $(1): the leg's folder under WORKDIR/sft, $(2): its config, $(3): more overrides
	@if [ -f "$(WORKDIR)/sft/$(1)/final/adapter/adapter_model.safetensors" ]; then \
	  echo "sft-long: $(WORKDIR)/sft/$(1) is finished; skipped"; \
	else $(BIN)/knowlm sft configs/sft/$(2).yaml -o workdir=$(WORKDIR) -o output_dir=sft/$(1) \
	  -o resume_from=latest $(3); fi
endef

sft-long: $(STAMP)
	$(call sft_leg,cpu-long-grouped,cpu-long,-o group_by_length=16)
	$(call sft_leg,cpu-long-stage2,cpu-long-stage2)
	$(call sft_leg,cpu-long-stage3,cpu-long-stage3)
	$(call sft_leg,cpu-long-stage4,cpu-long-stage4)
	$(call sft_leg,cpu-long-stage5,cpu-long-stage5)
	$(BIN)/knowlm eval ie --model $(WORKDIR)/pretrain/cpu-tiny/final \
	  --adapter $(WORKDIR)/sft/cpu-long-stage5/final/adapter --data $(WORKDIR)/ie/test.jsonl \
	  --out runs/eval/cpu-long-stage5-test.json --constrained --styles iepile --tasks NER,RE --batch-size 32

clean:
	rm -rf runs/ .pytest_cache
