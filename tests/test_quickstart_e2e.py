"""The default suite, for real: `gradatlas run quickstart` shows all three regimes.

This is the promise `make bench` makes (about two minutes on 2 CPU cores), so it is tested as a
user runs it: through the CLI, into a fresh SQLite store, then checked from MLflow alone.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def test_quickstart_covers_converged_vanished_exploded_and_resumes(tmp_path: Path):
    plan = run_cli("plan", "quickstart", "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    planned = {json.loads(line)["trial_id"] for line in plan.stdout.splitlines()}
    assert len(planned) == 36

    run = run_cli("run", "quickstart", cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("quickstart")
    query = "tags.`gradatlas.kind` = 'trial' and attributes.status = 'FINISHED'"
    runs = client.search_runs([exp.experiment_id], query, max_results=1000)
    assert {r.data.tags["gradatlas.trial_id"] for r in runs} == planned and len(runs) == 36
    outcomes = Counter(r.data.tags["gradatlas.outcome"] for r in runs)
    assert {"converged", "vanished", "exploded"} <= set(outcomes), outcomes

    # What the literature predicts, cell by cell (robust across seeds and machines).
    by_cell: dict[str, set[str]] = {}
    for r in runs:
        by_cell.setdefault(r.data.tags["gradatlas.cell"], set()).add(
            r.data.tags["gradatlas.outcome"]
        )
    assert by_cell["d20-sigmoid-xavier_normal"] == {"vanished"}  # Glorot & Bengio 2010
    assert by_cell["d20-relu-normal(std=1)"] == {"exploded"}  # width-blind init, deep ReLU
    assert by_cell["d3-relu-kaiming_normal"] == {"converged"}

    again = run_cli("run", "quickstart", cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and "already recorded" in again.stderr
    assert len(client.search_runs([exp.experiment_id], query, max_results=1000)) == 36
