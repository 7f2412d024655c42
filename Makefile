# gradatlas: two commands from a fresh clone — `make bench` and `make test` (`make test-all`: every
# test, the long end-to-end ones included; CI runs it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUITE  ?= quickstart
WORKERS ?= auto
TEST_WORKERS ?= 2
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help venv bench test test-all test-e2e lint format ui report perf full claims literature clean calibrate

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The venv is (re)installed whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)  ## create .venv and install gradatlas into it

bench: $(STAMP)  ## run the default suite (SUITE=quickstart) on MNIST-1D, then build its report
	$(BIN)/gradatlas run $(SUITE) --workers $(WORKERS)
	$(BIN)/gradatlas report $(SUITE)

# `make test` and `make test-e2e` together are `make test-all`: the e2e marker splits the suite.
# The quick check runs on two pytest-xdist workers, one per core of a 2-core machine, a test file
# per worker at a time (--dist loadfile: a module's shared servers and stores stay in one process).
test: $(STAMP)  ## the quick check: every test but the long end-to-end ones (-m 'not e2e'), on 2 workers
	$(BIN)/python -m pytest -q -m 'not e2e' -n $(TEST_WORKERS) --dist loadfile

test-all: $(STAMP)  ## every test, the long end-to-end ones included (what CI runs)
	$(BIN)/python -m pytest -q

test-e2e: $(STAMP)  ## only the long end-to-end tests (real multi-process sweeps, Ray, servers)
	$(BIN)/python -m pytest -q -m e2e

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## ruff format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ui: $(STAMP)  ## the MLflow UI on the local store, at http://127.0.0.1:5000
	$(BIN)/gradatlas ui

claims: $(STAMP)  ## the seed article's claims C1-C13 audited on MNIST-1D and digits (tuning included), with report and verdicts
	$(BIN)/gradatlas run claims --workers $(WORKERS)
	$(BIN)/gradatlas report claims
	$(BIN)/gradatlas verdicts claims

calibrate: $(STAMP)  ## simulate null audits through the verdict code: FWER [95% CI] and power, old vs new rule (runs/calibration)
	$(BIN)/gradatlas calibrate

LITERATURE := glorot-bengio he2015 ioffe-szegedy yang2019 schoenholz2017
literature: $(STAMP)  ## the literature suites (Glorot, He, Ioffe, Yang, Schoenholz), each with its report
	@set -e; for suite in $(LITERATURE); do \
	  $(BIN)/gradatlas run $$suite --workers $(WORKERS); $(BIN)/gradatlas report $$suite; \
	done

report: $(STAMP)  ## build the report for SUITE from MLflow
	$(BIN)/gradatlas report $(SUITE)

perf: $(STAMP)  ## benchmarks: runner overhead vs plain PyTorch, MLflow share, batched seeds and fused trials (parity, kernels and host reads per step, throughput, the CPU cost of a stacked group, units split across workers), the record at 1k trials, report build at 1k and 10k trials
	$(BIN)/python benchmarks/run_all.py

# `make full`: suites/atlas.yaml on every dataset x model, one MLflow experiment each
# (atlas-<dataset>-<family>); rerunning resumes. Trials go to --workers auto, or to the Ray
# cluster at RAY_ADDRESS. `make full SCALE=smoke`: one small slice of the same cross on MNIST-1D
# (64 trials; about a minute on a 2-core CPU), with a target the 8-epoch budget can reach.
SCALE  ?= full
ATLAS  := mnist:mlp fashion_mnist:mlp cifar10:mlp mnist:cnn fashion_mnist:cnn cifar10:cnn
SMOKE  := --set name=atlas-smoke --set dataset.name=mnist1d --set seeds=2 --set train.epochs=8 \
          --set outcomes.target_accuracy=0.4 --set 'grid.depth=[2, 20]' \
          --set 'grid.activation=[relu, sigmoid]' \
          --set 'grid.init=[kaiming_normal, {name: normal, std: 1.0}]' \
          --set 'grid.norm=[none, batchnorm]' --set 'grid.residual=[false]' \
          --set 'grid.weight_decay=[0]' \
          --set 'grid.dropout=[0.0]' \
          --set 'grid.optimizer=[{name: sgd, lr: 0.1}, {name: adam, lr: 1.0e-3}]'
WHERE  = --workers auto $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS))

full: $(STAMP)  ## the full atlas: 6 dataset x model sweeps (SCALE=smoke: a slice on MNIST-1D)
ifeq ($(SCALE),smoke)
	$(BIN)/gradatlas run atlas $(SMOKE) $(WHERE)
	$(BIN)/gradatlas report atlas-smoke
else ifeq ($(SCALE),full)
	@set -e; for combo in $(ATLAS); do \
	  ds=$${combo%%:*}; family=$${combo##*:}; \
	  echo "== atlas-$$ds-$$family"; \
	  $(BIN)/gradatlas run atlas --set name=atlas-$$ds-$$family --set dataset.name=$$ds \
	    --set model.family=$$family $(WHERE); \
	  $(BIN)/gradatlas report atlas-$$ds-$$family; \
	done
else
	$(error SCALE must be full or smoke, not '$(SCALE)')
endif

clean:  ## remove the local MLflow store and reports (keeps .venv)
	rm -rf runs
