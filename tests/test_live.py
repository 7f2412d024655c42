"""Live trial runs (runners.live): a trial's run exists RUNNING from its start, receives its
curves while it trains, ends with its record in the same run, and ends KILLED on a stop.

Real training, a real SQLite MLflow store, real Ray and real signals; no test depends on wall
time (waits poll the store for an event, with generous limits only against hangs).
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from gradatlas.record import KILLED, OUTCOME, RUNNING_OUTCOME, TRIAL_ID
from gradatlas.runners.executor import InProcessExecutor
from gradatlas.runners.live import POINTS, START
from gradatlas.runners.recorder import write_live
from gradatlas.runners.sweep import run_suite
from gradatlas.store import LiveRun, open_store
from gradatlas.suites import load_suite
from tests.conftest import new_store
from tests.test_execution import _cli, _guarantee, _runs, _wait_for

LIVE = """
name: {name}
dataset: {{name: digits}}
model: {{family: mlp, width: 16}}
grid: {{depth: [2, 3]}}
seeds: 2
train: {{steps: {steps}, batch_size: 64, lr: 0.1, eval_every: 20}}
instrument: {{every: 5, max_points: 50, probe_batch: 64}}
execution: {{live_every_s: {every}, batch_seeds: 1}}
"""


def _suite(tmp_path: Path, name: str, steps: int, every: float) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(LIVE.format(name=name, steps=steps, every=every))
    return path


def _trial_runs(uri: str, name: str) -> list:
    return [r for r in _runs(uri, name) if r.data.tags.get("gradatlas.kind") == "trial"]


def test_live_after_keeps_only_points_past_what_the_run_holds():
    run = LiveRun("r")
    assert run.after([("a", 1.0, 0), ("a", 2.0, 5), ("b", 3.0, 0)]) == [
        ("a", 1.0, 0),
        ("a", 2.0, 5),
        ("b", 3.0, 0),
    ]
    # The record at the end repeats steps 0 and 5 and adds 9: only 9 is new.
    assert run.after([("a", 1.0, 0), ("a", 2.0, 5), ("a", 4.0, 9)]) == [("a", 4.0, 9)]
    assert run.last_step == {"a": 9, "b": 0}


def test_a_flushed_trial_is_one_run_with_every_point_once(tmp_path):
    """Flushing at every evaluation: each trial is one FINISHED run (the live run, closed by its
    record), its evaluation history has each step once and all of them, its Duration is the
    trial's, and the trial says what being live cost it."""
    path = _suite(tmp_path, "flushed", steps=60, every=1e-6)
    uri = new_store(tmp_path / "mlflow.db")
    suite = load_suite(str(path))
    summary = run_suite(suite, uri, executor=InProcessExecutor(threads=1))
    assert summary.ran == 4 and not summary.failures
    _guarantee(uri, path)
    runs = _trial_runs(uri, "flushed")
    assert len(runs) == 4
    store = open_store(uri, create=False)
    for run in runs:
        steps = [step for step, _ in store.metric_history(run.info.run_id, "val_loss")]
        assert steps == [0, 20, 40, 60]
        metrics = run.data.metrics
        assert 0 < metrics["live_time_s"] < metrics["wall_time_s"]
        duration_s = (run.info.end_time - run.info.start_time) / 1000
        assert duration_s == pytest.approx(metrics["wall_time_s"], abs=1.0)
        assert run.data.tags[OUTCOME] != RUNNING_OUTCOME


def test_a_retried_start_reuses_the_live_run(tmp_path):
    """A unit retried after its worker died starts its trials again: the recorder keeps one
    run per trial and appends only the points past what it holds."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    store = open_store(uri)
    exp = store.open_experiment("retry")
    start = {
        "t": START,
        "trial_id": "abc",
        "run_name": "t-abc",
        "start_ms": 1_700_000_000_000,
        "tags": {"gradatlas.kind": "trial", TRIAL_ID: "abc", OUTCOME: RUNNING_OUTCOME},
        "params": {"train.lr": "0.1"},
    }
    points = {
        "t": POINTS,
        "trial_id": "abc",
        "points": [("val_loss", 2.0, 0), ("val_loss", 1.5, 20)],
    }
    live: dict = {}
    write_live(store, exp, None, [start, points], live)
    write_live(store, exp, None, [start, points], live)  # the retry: same start, same points
    runs = store.find_runs(exp)
    assert len(runs) == 1 and runs[0].status == "RUNNING"
    assert store.metric_history(runs[0].run_id, "val_loss") == [(0, 2.0), (20, 1.5)]


@pytest.mark.e2e
def test_live_runs_on_ray_are_running_while_they_train_and_killed_on_sigint(tmp_path):
    """`gradatlas run --workers 2` on Ray: a trial's run is RUNNING with curve points while it
    trains; Ctrl-C ends the sweep with no run left RUNNING (the trials in training end KILLED,
    outcome killed, with the points they had), and the rerun finishes every trial once."""
    path = _suite(tmp_path, "liveray", steps=3000, every=0.05)
    uri = f"sqlite:///{tmp_path}/mlflow.db"

    def running_with_points():
        for run in _trial_runs(uri, "liveray"):
            if run.info.status == "RUNNING" and "val_loss" in run.data.metrics:
                return run.info.run_id
        return None

    args = ("run", str(path), "--workers", "2", "--tracking-uri", uri)
    with _cli(*args, cwd=tmp_path) as proc:
        live_id = _wait_for(running_with_points, "a RUNNING trial run with live points")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    runs = _trial_runs(uri, "liveray")
    assert not [r for r in runs if r.info.status == "RUNNING"], err[-3000:]
    stopped = next(r for r in runs if r.info.run_id == live_id)
    assert stopped.info.status == "KILLED" and stopped.data.tags[OUTCOME] == KILLED
    assert "val_loss" in stopped.data.metrics  # what it had when stopped stays
    again = _cli("run", str(path), "--workers", "2", "--tracking-uri", uri, cwd=tmp_path)
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    statuses = _guarantee(uri, path)
    assert statuses["KILLED"] >= 1
    per_id = Counter(r.data.tags[TRIAL_ID] for r in _trial_runs(uri, "liveray"))
    assert max(per_id.values()) <= 2  # one stopped attempt at most, besides the finished run
