# gradatlas: two commands from a fresh clone — `make bench` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUITE  ?= quickstart
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help venv bench test test-fast lint format ui report perf clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The venv is (re)installed whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)  ## create .venv and install gradatlas into it

bench: $(STAMP)  ## run the default suite (SUITE=quickstart) on MNIST-1D, then build its report
	$(BIN)/gradatlas run $(SUITE)
	$(BIN)/gradatlas report $(SUITE)

test: $(STAMP)  ## run the whole test suite (end-to-end tests included)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)  ## the tests without the long end-to-end ones
	$(BIN)/python -m pytest -q -m 'not e2e'

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## ruff format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ui: $(STAMP)  ## the MLflow UI on the local store, at http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/runs/mlflow.db} --host 127.0.0.1 --port 5000

report: $(STAMP)  ## build the report for SUITE from MLflow
	$(BIN)/gradatlas report $(SUITE)

perf: $(STAMP)  ## benchmarks: runner overhead vs plain PyTorch, MLflow share, report build time
	$(BIN)/python benchmarks/run_all.py

clean:  ## remove the local MLflow store and reports (keeps .venv)
	rm -rf runs
