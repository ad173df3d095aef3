# Quick start: `make repro` (whole pipeline) and `make test`. Both create .venv when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

# The venv's bin first on PATH: dvc stages run `python`, and `dvc queue` workers spawn `dvc`.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
# pip installs without byte-compiling (--no-compile below): compiling all of torch, dvc and mlflow
# took ~40 of the install's 95 s, and the pipeline imports a small part of them. Python compiles
# what is imported on first use instead (~10 s once), which needs it allowed to write .pyc files.
# On a host that sets PYTHONDONTWRITEBYTECODE=1, run `make repro` or `make test` once before using
# dvc outside make: until then each stage recompiles its imports in memory (~8 s a process).
export PYTHONDONTWRITEBYTECODE :=

.PHONY: venv repro test test-fast bench seeds time-to-accuracy gpu-check ui plots browser-check clean

venv: $(STAMP)

# The install: uv (pinned; pip fetches it into the venv) installs requirements.lock's versions in 41 s
# from an empty cache against pip's 100 s on 2 cores, and in seconds from a warm one, where it
# hard-links its cache into the venv instead of unpacking 5.5 GB again (docs/reproducibility.md). uv reads no pip.conf: a
# package mirror is UV_DEFAULT_INDEX / UV_FIND_LINKS. Where uv cannot be had or fails, pip does it.
UV_VERSION := 0.13.10
PIP := $(VENV)/bin/python -m pip install --quiet --progress-bar off
$(STAMP): pyproject.toml requirements.lock
	@echo "Creating $(VENV) and installing torch, torchvision, dvc, mlflow and the rest (about 5.5 GB;"
	@echo "under a minute with uv on 2 cores, 1-3 minutes with pip; quiet meanwhile). Then: $(MAKECMDGOALS)."
	$(PYTHON) -m venv $(VENV)
	$(PIP) uv==$(UV_VERSION) && $(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python \
	    -c requirements.lock -e '.[dev]' \
	  || { echo "uv could not install: pip instead"; $(PIP) --upgrade pip && $(PIP) --no-compile -c requirements.lock -e '.[dev]'; }
	touch $@

repro: $(STAMP)
	dvc repro

# Two workers, each taking whole files (module fixtures and in-file order kept), slowest first (tests/conftest.py):
# run serially, the suite kept the 2 cores 45% busy (user + sys 1,037 s in 1,147 s), mostly single-threaded
# process start-up and imports.
test: $(STAMP)
	python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not slow"

bench: $(STAMP)
	python bench/bench.py

seeds: $(STAMP)   # the default retrained with train.seed 0, 1, 2 as DVC experiments (~40 min on 2 cores): bench/SEEDS.md
	python bench/seeds.py

time-to-accuracy: $(STAMP)   # RSIS vs Mask R-CNN, same data and CPU budget (~1 hour): bench/TIME_TO_ACCURACY_*.md
	python bench/time_to_accuracy.py --every 3
	python bench/time_to_accuracy.py --dataset leaves --every 3

gpu-check: $(STAMP)   # on a machine with a GPU: bench/gpu_check.py (one line and exit 0 without one)
	$(VENV)/bin/python bench/gpu_check.py

ui: $(STAMP)   # the runs table: the address printed first (MLflow 3 otherwise opens on its GenAI page)
	@echo "MLflow UI, the rsis runs: $$(python -m rsis.tracking 5000)"
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

plots: $(STAMP)   # dvc plots show with Vega inlined (draws offline) -> dvc_plots/index.html
	python -m rsis.plots show

browser-check: $(STAMP)   # the plots page and the MLflow UI in headless Chromium -> bench/browser/ (skips without one)
	python bench/browser_check.py

clean:
	rm -rf data models outputs dvc_plots mlruns mlflow.db mlflow.db.lock
