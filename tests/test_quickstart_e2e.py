"""The default suite, for real: `gradatlas run quickstart` shows all three regimes.

This is the promise `make bench` makes, so it is tested as a user runs it: through the CLI, into a
fresh SQLite store, then checked from MLflow alone. Every regime the suite's description claims
is checked here, cell by cell, by its outcome counts over the seeds.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

CELLS, SEEDS = 18, 3
TRIALS = CELLS * SEEDS


def test_quickstart_covers_converged_vanished_exploded_and_resumes(tmp_path: Path):
    plan = run_cli("plan", "quickstart", "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    planned = {json.loads(line)["trial_id"] for line in plan.stdout.splitlines()}
    assert len(planned) == TRIALS

    run = run_cli("run", "quickstart", "--threads", "1", cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("quickstart")
    query = "tags.`gradatlas.kind` = 'trial' and attributes.status = 'FINISHED'"
    runs = client.search_runs([exp.experiment_id], query, max_results=1000)
    assert {r.data.tags["gradatlas.trial_id"] for r in runs} == planned and len(runs) == TRIALS
    outcomes = Counter(r.data.tags["gradatlas.outcome"] for r in runs)
    assert {"converged", "vanished", "exploded"} <= set(outcomes), outcomes

    # What the literature predicts, cell by cell: each regime the description claims, counted
    # over the cell's seeds (robust across seeds and machines: the budget sits epochs away from
    # where each of these cells reaches, or would reach, the target).
    by_cell: dict[str, Counter[str]] = {}
    for r in runs:
        by_cell.setdefault(r.data.tags["gradatlas.cell"], Counter())[
            r.data.tags["gradatlas.outcome"]
        ] += 1
    assert len(by_cell) == CELLS and all(sum(c.values()) == SEEDS for c in by_cell.values())
    # Vanishing (Glorot & Bengio 2010): deep sigmoid nets, under He and Xavier init alike.
    assert by_cell["d20-sigmoid-xavier_normal"] == {"vanished": SEEDS}
    assert by_cell["d20-sigmoid-kaiming_normal"]["vanished"] >= 2, by_cell
    # Exploding: a width-blind N(0, 1) init, deep or shallow ReLU and deep tanh.
    for cell in ("d3-relu-normal(std=1)", "d20-relu-normal(std=1)", "d20-tanh-normal(std=1)"):
        assert by_cell[cell] == {"exploded": SEEDS}, (cell, by_cell[cell])
    # He init keeps deep ReLU nets trainable (He et al. 2015): most seeds converge at depth 20,
    # where under Xavier init none does; both converge at depth 3.
    assert by_cell["d20-relu-kaiming_normal"]["converged"] >= 2, by_cell
    assert by_cell["d20-relu-xavier_normal"]["converged"] == 0, by_cell
    assert by_cell["d3-relu-kaiming_normal"] == {"converged": SEEDS}

    again = run_cli("run", "quickstart", cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and "already recorded" in again.stderr
    assert len(client.search_runs([exp.experiment_id], query, max_results=1000)) == TRIALS
