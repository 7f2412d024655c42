"""The command line as a user runs it, in a subprocess: summary, resume, and Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import TINY_SUITE, cli_env, run_cli

pytestmark = pytest.mark.e2e


def test_run_prints_summary_and_second_run_adds_nothing(tiny_suite: Path, tmp_path: Path):
    first = run_cli("run", str(tiny_suite), "--threads", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Running 8 of 8 trials of 'tiny'" in first.stderr
    assert "[8/8]" in first.stderr and "ETA" in first.stderr
    assert "Outcomes per cell (tiny):" in first.stdout
    assert f"MLflow store: sqlite:///{tmp_path / 'runs' / 'mlflow.db'}" in first.stdout
    assert "gradatlas ui tiny" in first.stdout and "instrumentation" in first.stdout
    assert (
        "gradatlas report tiny" in first.stdout and "workflowType=machine_learning" in first.stdout
    )
    assert (tmp_path / "runs" / "mlflow.db").exists()
    assert any((tmp_path / "runs" / "artifacts").rglob("trial.json"))

    second = run_cli("run", str(tiny_suite), cwd=tmp_path)
    assert second.returncode == 0
    assert "All 8 trials of 'tiny' are already recorded" in second.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    assert len(client.search_runs([exp.experiment_id], "tags.`gradatlas.kind` = 'trial'")) == 8


def test_ctrl_c_marks_the_current_trial_killed_and_resume_finishes(tmp_path: Path):
    slow = TINY_SUITE.format(name="slow").replace("steps: 40", "steps: 1500")
    suite = tmp_path / "slow.yaml"
    suite.write_text(slow)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradatlas", "run", str(suite), "--threads", "1"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait for the first trial to finish, then interrupt the second mid-training.
    deadline = time.time() + 300
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith("[1/8]"):
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, "".join(lines) + err
    assert "killed" in err

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("slow")
    trials = client.search_runs([exp.experiment_id], "tags.`gradatlas.kind` = 'trial'")
    status = sorted((r.info.status, r.data.tags["gradatlas.outcome"] == "killed") for r in trials)
    # Progress is printed when a unit (the seeds of one cell) returns, so the interrupted trials
    # are the next unit's: its two seeds train together (batched), so both are killed, and
    # every trial before them finished.
    killed = [s for s in status if s == ("KILLED", True)]
    assert len(killed) == 2 and len(status) > 2
    assert set(status[: -len(killed)]) == {("FINISHED", False)}
    killed_cells = {r.data.tags["gradatlas.cell_id"] for r in trials if r.info.status == "KILLED"}
    assert len(killed_cells) == 1
    (sweep,) = client.search_runs([exp.experiment_id], "tags.`gradatlas.kind` = 'sweep'")
    assert sweep.info.status == "KILLED"

    resumed = run_cli("run", str(suite), "--limit", "1", "--threads", "1", cwd=tmp_path)
    assert resumed.returncode == 0
    done = len(status) - len(killed)
    assert (
        f"Running 1 of 8 trials of 'slow' ({done} already recorded); --limit leaves {7 - done}"
        in resumed.stderr
    )
