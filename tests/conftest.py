"""Shared fixtures: tiny real suites that train in well under a second per trial."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
