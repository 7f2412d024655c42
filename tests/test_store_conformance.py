"""The ``RecordStore`` contract, one test per clause, run against every backend: a SQLite file and
an MLflow tracking server on PostgreSQL (``postgres_mlflow_server``; skipped where PostgreSQL is
not installed, ``.ci/postgres.sh`` installs it). A new backend proves itself by passing this file:
add it to ``BACKENDS`` and to the ``store`` fixture.

The clauses are the docstrings of ``gradatlas.store.base.RecordStore``; each test names the one
it checks. Everything is real: real stores, real runs, real processes for the driver clauses.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from gradatlas import record as R
from gradatlas.record import (
    OutcomeLabel,
    RecordedOutcome,
    RunKind,
    RunStatus,
    SweepRecord,
    TrialRecord,
    trial_params,
    trial_tags,
    utc_now,
)
from gradatlas.store import FailureWrite, RecordStore, TrialWrite, open_store

BACKENDS = ["sqlite", pytest.param("postgres-server", marks=pytest.mark.e2e)]


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory) -> Path:
    """One fresh SQLite store, created once (MLflow's migrations take seconds), copied per test."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    open_store(f"sqlite:///{db}")
    return db


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path: Path, sqlite_template: Path) -> RecordStore:
    if request.param == "sqlite":
        db = tmp_path / "store" / "mlflow.db"
        db.parent.mkdir()
        shutil.copy(sqlite_template, db)
        return open_store(f"sqlite:///{db}")
    return open_store(request.getfixturevalue("postgres_mlflow_server"))


@pytest.fixture
def exp(store: RecordStore) -> str:
    """A fresh experiment (a server is shared by the module's tests: a name of its own)."""
    return store.open_experiment(f"conformance-{uuid.uuid4().hex[:12]}")


def tid(i: int) -> str:
    return f"{i:016x}"


def record(
    trial_id: str,
    *,
    seed: int = 0,
    label: str = OutcomeLabel.CONVERGED,
    steps: int = 20,
    eval_every: int = 10,
    config_keys: int = 3,
) -> TrialRecord:
    """A trial record of the shape the runner writes: ``steps`` points per train curve (two
    curves: 2 x ``steps`` metrics), ``config_keys`` model options (params)."""
    s = list(range(steps))
    return TrialRecord(
        trial_id=trial_id,
        cell_id="c" + trial_id[1:],
        cell="d2-relu",
        seed=seed,
        suite="conformance",
        config={
            "dataset": {"name": "digits", "seed": 0},
            "model": {f"option{i:03d}": i for i in range(config_keys)},
            "seed": seed,
            "outcomes": {"target_accuracy": 0.3},
        },
        factors={"depth": "d2", "activation": "relu"},
        outcome=RecordedOutcome(label, f"why {label}", {"target_accuracy": 0.3}),
        summary={"final_val_acc": 0.5, "steps_run": float(steps)},
        task="classification",
        num_classes=10,
        device="cpu",
        curves={
            "train": {
                "step": s,
                "loss": [2.0 / (1 + x) for x in s],
                "grad_norm": [1.0 + x for x in s],
            },
            "eval": {"step": s[::eval_every], "val_acc": [0.1 + x / 100 for x in s[::eval_every]]},
        },
        profiles={"init": {"grad_norm": [1.0, 0.5]}},
        timing={"wall_time_s": 1.5, "fit_time_s": 1.0},
        finished_at=utc_now(),
        environment={"python": "3.11"},
        batch_members=[],
        trace={},
    )


def write(rec: TrialRecord, **kw) -> TrialWrite:
    return TrialWrite(rec, f"{rec.cell}-s{rec.seed}", **kw)


def start_sweep(store: RecordStore, exp: str) -> str:
    return store.start_sweep(
        exp,
        SweepRecord("conformance", planned=4, todo=4),
        run_name="sweep-conformance",
        artifacts={R.SUITE_YAML_ARTIFACT: "name: conformance\n"},
    )


def without_logging_time(rec: TrialRecord) -> dict:
    data = rec.to_dict()
    data["timing"] = {k: v for k, v in data["timing"].items() if k != "logging_time_s"}
    return data


# -- experiments -----------------------------------------------------------------------------------
def test_open_experiment_is_idempotent(store: RecordStore):
    """open_experiment: create-or-get; a second call returns the same id and writes nothing (tags
    only at creation); set_experiment_tags updates them; get_experiment never creates."""
    name = f"conformance-{uuid.uuid4().hex[:12]}"
    assert store.get_experiment(name=name) is None
    first = store.open_experiment(name, tags={"a": "1"})
    assert store.open_experiment(name, tags={"a": "2"}) == first
    got = store.get_experiment(name=name)
    assert got.experiment_id == first and got.name == name and got.tags["a"] == "1" and got.active
    store.set_experiment_tags(first, {"a": "3", "b": "4"})
    by_id = store.get_experiment(experiment_id=first)
    assert by_id.name == name and by_id.tags["a"] == "3" and by_id.tags["b"] == "4"
    assert first in {e.experiment_id for e in store.experiments()}
    assert store.get_experiment(experiment_id="987654321") is None


def test_local_dir_is_the_files_folder_or_none(store: RecordStore):
    """local_dir: the folder of a store kept in a local file (the default Optuna storage goes
    beside it); None for a server."""
    if store.uri.startswith("sqlite:///"):
        assert store.local_dir == Path(store.uri.removeprefix("sqlite:///")).parent
        assert store.local_dir.is_dir()
    else:
        assert store.local_dir is None


# -- runs: the primitives --------------------------------------------------------------------------
def test_find_runs_filters_and_orders_newest_first(store: RecordStore, exp: str):
    """find_runs: kind, status and tags filter; newest start first; ``limit``; active only; a
    quote in a value is refused, never spliced."""
    now = int(time.time() * 1000)
    old = store.create_run(exp, run_name="old", tags={R.KIND: RunKind.TRIAL}, start_ms=now - 5000)
    new = store.create_run(
        exp, run_name="new", tags={R.KIND: RunKind.TRIAL, "x": "1"}, start_ms=now
    )
    sweep = store.create_run(exp, run_name="s", tags={R.KIND: RunKind.SWEEP}, start_ms=now - 100)
    store.set_status(old, RunStatus.FINISHED)
    assert [r.run_id for r in store.find_runs(exp, kind=RunKind.TRIAL)] == [new, old]
    assert [r.run_id for r in store.find_runs(exp)] == [new, sweep, old]
    assert [r.run_id for r in store.find_runs(exp, status=RunStatus.FINISHED)] == [old]
    assert [r.run_id for r in store.find_runs(exp, tags={"x": "1"})] == [new]
    assert [r.run_id for r in store.find_runs(exp, limit=1)] == [new]
    run = store.find_runs(exp, kind=RunKind.SWEEP)[0]
    assert (run.run_name, run.status, run.kind, run.experiment_id) == ("s", "RUNNING", "sweep", exp)
    store.delete_run(new)
    assert new not in {r.run_id for r in store.find_runs(exp)}
    with pytest.raises(ValueError):
        store.find_runs(exp, tags={R.TRIAL_ID: "x' or '1'='1"})


def test_log_takes_any_number_of_each_in_one_call(store: RecordStore, exp: str):
    """log: metrics, params and tags beyond the backend's per-call caps (MLflow: 1,000 / 100 /
    100) in one call, all written; tags overwrite; metric points append."""
    rid = store.create_run(exp, run_name="big", tags={})
    metrics = [("m", float(s), s) for s in range(1500)] + [(f"k{i}", 1.0, 0) for i in range(20)]
    params = {f"p{i:03d}": str(i) for i in range(150)}
    tags = {f"t{i:03d}": str(i) for i in range(150)}
    store.log(rid, metrics=metrics, params=params, tags=tags)
    store.log(rid, tags={"t000": "again"}, metrics=[("m", -1.0, 1500)])
    run = store.get_run(rid)
    assert dict(run.params) == params
    assert {k: v for k, v in run.tags.items() if k.startswith("t")} == tags | {"t000": "again"}
    assert len(run.metrics) == 21 and run.metrics["m"] == -1.0
    history = store.metric_history(rid, "m")
    assert [s for s, _ in history] == list(range(1501)) and history[3] == (3, 3.0)
    assert store.metric_history(rid, "absent") == []


def test_set_status_ends_and_reopens_a_run(store: RecordStore, exp: str):
    """set_status: a terminal status sets the end time (``end_ms``); RUNNING reopens."""
    start = int(time.time() * 1000) - 60_000
    rid = store.create_run(exp, run_name="r", tags={}, start_ms=start)
    store.set_status(rid, RunStatus.KILLED, end_ms=start + 30_000)
    run = store.get_run(rid)
    assert (run.status, run.start_time, run.end_time) == ("KILLED", start, start + 30_000)
    store.set_status(rid, RunStatus.RUNNING)
    assert store.get_run(rid).status == "RUNNING"
    store.set_status(rid, RunStatus.FINISHED)
    assert store.get_run(rid).status == "FINISHED" and store.get_run(rid).end_time >= start
    assert store.get_run("0" * 32) is None


# -- artifacts -------------------------------------------------------------------------------------
def test_artifacts_round_trip(store: RecordStore, exp: str, tmp_path: Path):
    """attach: text, bytes (a picture) and JSON at any path, replacing; attach_files: a file or
    a folder's tree; artifact_text: None for a missing one; list_artifacts: sorted paths."""
    rid = store.create_run(exp, run_name="a", tags={})
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    store.attach(rid, "notes.txt", "first")
    store.attach(rid, "notes.txt", "second")
    store.attach(rid, "trial.png", png)
    store.attach(rid, "report/data.json", {"rows": [1, 2]})
    store.attach(rid, "rows.json", [{"a": 1}])
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "f.svg").write_text("<svg/>")
    (tmp_path / "index.html").write_text("<html/>")
    store.attach_files(rid, tmp_path / "index.html", "report")
    store.attach_files(rid, tmp_path / "figs", "report/figs")
    assert store.list_artifacts(rid) == ["notes.txt", "report", "rows.json", "trial.png"]
    assert store.list_artifacts(rid, "report") == [
        "report/data.json",
        "report/figs",
        "report/index.html",
    ]
    run = store.get_run(rid)
    assert store.artifact_text(run, "notes.txt") == "second"
    assert store.artifact_text(rid, "report/figs/f.svg") == "<svg/>"
    assert json.loads(store.artifact_text(run, "report/data.json")) == {"rows": [1, 2]}
    assert json.loads(store.artifact_text(run, "rows.json")) == [{"a": 1}]
    assert store.artifact_text(run, "missing.txt") is None


# -- trials ----------------------------------------------------------------------------------------
def test_record_unit_writes_each_trial_as_its_run(store: RecordStore, exp: str):
    """record_unit: one call per unit; each write one run of its kind with the record's tags,
    params, metrics (over 1,000 in the unit: the backend chunks), trial.json, the trial's own
    times and the status its record says."""
    sweep = start_sweep(store, exp)
    # 1,200 validation points a trial (kept whole; training curves are thinned): each run's
    # metrics exceed one MLflow call's cap of 1,000.
    recs = [record(tid(i), seed=i, steps=1200, eval_every=1, config_keys=120) for i in range(2)]
    start = int(time.time() * 1000) - 90_000
    writes = [write(r, start_ms=start, end_ms=start + 60_000) for r in recs]
    assert all(len(R.trial_metrics(r)) > 1000 for r in recs)
    report = store.record_unit(exp, sweep, writes)
    assert set(report.run_ids) == {r.trial_id for r in recs} and not report.duplicates
    for rec in recs:
        run = store.get_run(report.run_ids[rec.trial_id])
        assert (run.status, run.start_time, run.end_time) == ("FINISHED", start, start + 60_000)
        expected = trial_tags(rec, sweep_run=sweep)
        assert {k: run.tags.get(k) for k in expected} == expected
        assert dict(run.params) == trial_params(rec)
        assert [s for s, _ in store.metric_history(run.run_id, "val_acc")] == list(range(1200))
        thinned = [s for k, _, s in R.trial_metrics(rec) if k == "train_loss"]
        assert [s for s, _ in store.metric_history(run.run_id, "train_loss")] == thinned
        assert run.metrics["logging_time_s"] > 0
        back = TrialRecord.from_json(store.artifact_text(run, R.TRIAL_ARTIFACT))
        assert without_logging_time(back) == without_logging_time(rec)
        assert back.timing["logging_time_s"] > 0


def test_record_unit_is_idempotent_per_trial(store: RecordStore, exp: str):
    """record_unit: a trial with a FINISHED run of its kind is skipped (listed as a duplicate);
    the same unit twice is written once; ``force`` writes again; an interrupted write is KILLED
    and never counts as recorded; a tuning run and a trial run of one id are different records."""
    sweep = start_sweep(store, exp)
    unit = [write(record(tid(1))), write(record(tid(2), seed=1))]
    store.record_unit(exp, sweep, unit)
    again = store.record_unit(exp, sweep, unit)
    assert again.duplicates == ["converged", "converged"] and not again.run_ids
    assert len(store.find_runs(exp, kind=RunKind.TRIAL)) == 2
    assert store.recorded(exp, [tid(1), tid(2), tid(3)]) == {tid(1), tid(2)}
    forced = store.record_unit(exp, sweep, unit[:1], force=True)
    assert list(forced.run_ids) == [tid(1)]
    assert len(store.find_runs(exp, kind=RunKind.TRIAL, status=RunStatus.FINISHED)) == 3

    killed = record(tid(3), label=OutcomeLabel.KILLED)
    (rid,) = store.record_unit(exp, sweep, [write(killed, interrupted=True)]).run_ids.values()
    assert store.get_run(rid).status == "KILLED" and tid(3) not in store.recorded(exp, [tid(3)])
    tuning = write(record(tid(1)), parent=sweep, tags={R.KIND: RunKind.TUNING, R.STUDY: "s/a"})
    (trid,) = store.record_unit(exp, sweep, [tuning]).run_ids.values()
    run = store.get_run(trid)
    assert run.kind == "tuning" and run.tags[R.PARENT_RUN] == sweep and R.SWEEP_RUN not in run.tags
    assert store.recorded(exp, [tid(1)], RunKind.TUNING) == {tid(1)}


def test_finished_and_failed_trial_ids(store: RecordStore, exp: str):
    """finished_trials: trial id -> tags of its newest FINISHED run; failed_trials: ids with a
    FAILED run and no FINISHED one; a failure is a FAILED run with its error and traceback."""
    sweep = start_sweep(store, exp)
    failed = record(tid(2), label=OutcomeLabel.FAILED)
    failure = FailureWrite(failed, "d2-relu-s0", "ValueError: boom", "Traceback ...", "host:1")
    report = store.record_unit(exp, sweep, [write(record(tid(1)))], [failure])
    rid = report.failed_run_ids[tid(2)]
    run = store.get_run(rid)
    assert run.status == "FAILED" and run.tags[R.ERROR] == "ValueError: boom"
    assert run.tags[R.DEVICE] == "host:1" and dict(run.params) == trial_params(failed)
    assert store.artifact_text(run, R.ERROR_ARTIFACT) == "Traceback ..."
    done = store.finished_trials(exp)
    assert set(done) == {tid(1)} and done[tid(1)][R.OUTCOME] == "converged"
    assert store.failed_trials(exp) == {tid(2)}
    store.record_unit(exp, sweep, [write(record(tid(2)))])  # retried, and it trained
    assert store.failed_trials(exp) == set() and set(store.finished_trials(exp)) == {tid(1), tid(2)}


def test_load_trials_returns_the_records_written(store: RecordStore, exp: str):
    """load_trials: of the FINISHED trial runs, the newest per trial id (older ones counted as
    set aside), oldest first, each with the TrialRecord that was written; a run without
    trial.json is rebuilt from its tags, params and metrics (schema 0); tuning runs, killed and
    running ones are not trials to report."""
    sweep = start_sweep(store, exp)
    recs = [record(tid(i), seed=i) for i in range(3)]
    store.record_unit(exp, sweep, [write(r) for r in recs])
    newer = replace(recs[0], outcome=RecordedOutcome("exploded", "later", {}))
    time.sleep(0.01)  # a later start time
    store.record_unit(exp, sweep, [write(newer)], force=True)
    store.record_unit(exp, sweep, [write(record(tid(7), label="killed"), interrupted=True)])
    store.record_unit(
        exp, sweep, [write(record(tid(8)), parent=sweep, tags={R.KIND: RunKind.TUNING})]
    )
    bare = record(tid(9))  # a hand-made run: tags, params, a metric, no trial.json
    rid = store.create_run(exp, run_name="bare", tags=trial_tags(bare, sweep_run=sweep))
    store.log(rid, params=trial_params(bare), metrics=[("final_val_acc", 0.5, 0)])
    store.set_status(rid, RunStatus.FINISHED)

    loaded = store.load_trials(exp)
    assert loaded.set_aside == 1 and loaded.rebuilt == 1
    by_id = {t.record.trial_id: t for t in loaded.trials}
    assert set(by_id) == {tid(0), tid(1), tid(2), tid(9)}
    starts = [t.run.start_time for t in loaded.trials]
    assert starts == sorted(starts)
    assert without_logging_time(by_id[tid(0)].record) == without_logging_time(newer)
    for rec in recs[1:]:
        assert without_logging_time(by_id[rec.trial_id].record) == without_logging_time(rec)
        assert by_id[rec.trial_id].run.tags[R.TRIAL_ID] == rec.trial_id
    rebuilt = by_id[tid(9)]
    assert rebuilt.rebuilt and rebuilt.record.schema == 0
    assert rebuilt.record.factors == bare.factors and rebuilt.record.outcome.label == "converged"
    assert rebuilt.record.summary == {"final_val_acc": 0.5}


# -- live runs -------------------------------------------------------------------------------------
def test_live_run_points_once_then_the_record_closes_it(store: RecordStore, exp: str):
    """start_live: a RUNNING run with the trial's tags and params from its own start time;
    live_points: only points past what it holds; record_unit with the live run: the same run,
    FINISHED, every point once; kill_live: KILLED with outcome ``killed``, its points kept."""
    sweep = start_sweep(store, exp)
    rec = record(tid(1), steps=30)
    running = replace(rec, outcome=RecordedOutcome(OutcomeLabel.RUNNING, "training", {}))
    start = int(time.time() * 1000) - 10_000
    live = store.start_live(
        exp,
        sweep,
        run_name="d2-relu-s0",
        tags=trial_tags(running),
        params=trial_params(running),
        start_ms=start,
    )
    run = store.get_run(live.run_id)
    assert run.status == "RUNNING" and run.start_time == start and run.tags[R.SWEEP_RUN] == sweep
    assert run.tags[R.OUTCOME] == "running" and dict(run.params) == trial_params(rec)
    points = [("train_loss", 2.0 / (1 + s), s) for s in range(10)]
    assert store.live_points(live, points) == 10
    assert store.live_points(live, points) == 0  # a repeated flush writes nothing
    report = store.record_unit(exp, sweep, [write(rec)], live={rec.trial_id: live})
    assert report.run_ids == {rec.trial_id: live.run_id}
    assert [r.run_id for r in store.find_runs(exp, kind=RunKind.TRIAL)] == [live.run_id]
    run = store.get_run(live.run_id)
    assert run.status == "FINISHED" and run.tags[R.OUTCOME] == "converged"
    assert [s for s, _ in store.metric_history(live.run_id, "train_loss")] == list(range(30))

    other = store.start_live(
        exp, sweep, run_name="x", tags=trial_tags(running), params={}, start_ms=start
    )
    store.live_points(other, points[:3])
    store.kill_live(other, "the sweep stopped")
    run = store.get_run(other.run_id)
    assert run.status == "KILLED" and run.tags[R.OUTCOME] == "killed"
    assert run.tags[R.OUTCOME_REASON] == "the sweep stopped"
    assert len(store.metric_history(other.run_id, "train_loss")) == 3


def test_a_duplicate_in_a_live_run_deletes_that_run(store: RecordStore, exp: str):
    """record_unit: a write found recorded already whose trial has a live run (another
    attempt's) is skipped and its live run deleted: the trial keeps one run."""
    sweep = start_sweep(store, exp)
    rec = record(tid(1))
    store.record_unit(exp, sweep, [write(rec)])
    live = store.start_live(
        exp, sweep, run_name="again", tags=trial_tags(rec), params={}, start_ms=None
    )
    report = store.record_unit(exp, sweep, [write(rec)], live={rec.trial_id: live})
    assert report.duplicates == ["converged"]
    assert len(store.find_runs(exp, kind=RunKind.TRIAL)) == 1


# -- sweeps and their drivers ----------------------------------------------------------------------
def test_sweep_claim_heartbeat_and_dead_runs(store: RecordStore, exp: str):
    """start_sweep: a RUNNING sweep run with its record's tags and artifacts; claim_sweep and
    heartbeat: driver tags naming this process; live_drivers: ours alive, a dead pid's not;
    close_dead_runs: the dead sweep and its RUNNING trial runs KILLED (outcome ``killed``),
    idempotent; close_running: RUNNING runs of the given kinds KILLED."""
    ours = start_sweep(store, exp)
    run = store.get_run(ours)
    assert run.status == "RUNNING" and R.SweepRecord.from_tags(run.tags) == SweepRecord(
        "conformance", planned=4, todo=4
    )
    assert store.list_artifacts(ours) == [R.SUITE_YAML_ARTIFACT]
    info = store.claim_sweep(ours)
    assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
    assert store.heartbeat(ours) >= info.heartbeat
    tags = store.get_run(ours).tags
    assert tags[R.DRIVER_PID] == str(os.getpid()) and tags[R.DRIVER_HOST] == info.host

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    theirs = start_sweep(store, exp)
    store.heartbeat(theirs, pid=dead.pid)  # written for a driver that is gone
    orphan = store.create_run(
        exp,
        run_name="orphan",
        tags={R.KIND: RunKind.TRIAL, R.SWEEP_RUN: theirs, R.TRIAL_ID: tid(5)},
    )
    mine = store.create_run(
        exp, run_name="mine", tags={R.KIND: RunKind.TRIAL, R.SWEEP_RUN: ours, R.TRIAL_ID: tid(6)}
    )
    assert [d.sweep_run_id for d in store.live_drivers(exp)] == [ours]
    assert store.close_dead_runs(exp) == (1, 1)
    assert store.close_dead_runs(exp) == (0, 0)
    assert store.get_run(theirs).status == "KILLED" and store.get_run(ours).status == "RUNNING"
    closed = store.get_run(orphan)
    assert closed.status == "KILLED" and closed.tags[R.OUTCOME] == "killed"
    assert store.get_run(mine).status == "RUNNING"

    study = store.create_run(exp, run_name="study", tags={R.KIND: RunKind.STUDY})
    assert store.close_running(exp, (RunKind.TUNING, RunKind.STUDY)) == 1
    assert store.get_run(study).status == "KILLED" and store.get_run(ours).status == "RUNNING"
