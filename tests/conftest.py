"""Shared fixtures: tiny real suites that train in well under a second per trial, fresh MLflow
stores without MLflow's migrations, and one torch thread per test process."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

# One torch thread unless a test asks for more: the tests' nets are tiny, and torch's default (a
# thread per core) spins against the recorder, CLI and Ray processes the tests start beside it
# (on a loaded 2-core machine, CLI sweeps at 2 threads cost 3-4x the CPU time of 1 thread). Set
# before any test module imports torch; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY_SUITE = """
name: {name}
description: A tiny real suite for tests on digits with a shallow and a deep net, two activations.
dataset: {{name: digits}}
model: {{family: mlp, width: 16}}
grid:
  depth: [2, 12]
  activation: [relu, sigmoid]
seeds: 2
train: {{steps: 40, batch_size: 64, optimizer: sgd, lr: 0.1, eval_every: 20}}
instrument: {{every: 5, max_points: 50, probe_batch: 64}}
outcomes: {{target_accuracy: 0.3}}
"""


def write_suite(directory: Path, text: str, filename: str = "suite.yaml") -> Path:
    path = directory / filename
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    """8 trials (2 depths x 2 activations x 2 seeds) on sklearn digits, ~0.3 s each."""
    return write_suite(tmp_path, TINY_SUITE.format(name="tiny"))


@pytest.fixture
def write(tmp_path: Path):
    """Write a suite file from YAML text and return its path."""

    def _write(text: str, filename: str = "suite.yaml") -> Path:
        return write_suite(tmp_path, text, filename)

    return _write


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    """Back to one torch thread before each test: an in-process `gradatlas run` (``cli.main``)
    sets the process's count for its sweep and would leave it to every later test."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@functools.cache
def _empty_store() -> Path:
    """An empty MLflow SQLite store, migrated once per test process (in a temporary folder
    removed at exit): MLflow's schema migrations cost about 1.5 s of CPU per fresh store, a copy
    of the migrated file a few milliseconds."""
    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="gradatlas-empty-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    db = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments(max_results=1)
    return db


def new_store(db: Path) -> str:
    """A fresh, empty MLflow store at ``db`` (parents created), copied from one migrated store;
    returns its ``sqlite:///`` URI. For tests whose subject is not how a store is created (those
    give gradatlas a file that does not exist yet)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_empty_store(), db)
    return f"sqlite:///{db}"


def cli_env() -> dict[str, str]:
    """The environment without MLFLOW_TRACKING_URI, so the CLI uses ./runs as a user's would."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`gradatlas ARGS` in a subprocess, exactly as typed at a shell in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "gradatlas", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
