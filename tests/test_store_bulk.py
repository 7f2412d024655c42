"""The bulk path of ``MlflowStore.record_unit`` (``gradatlas.store.sql_bulk``): a unit written in
one transaction must leave what the client's path (``bulk = False``: run by run through
``MlflowClient``) leaves, read back through MLflow's own client, run by run; a unit the bulk path
cannot finish is rolled back whole and written once by the client's path.

What may differ, and why: metric timestamps, and start and end times where the write gives none
(one clock reading per unit instead of one per call); the run ids (random in both); and
``logging_time_s`` (a measured time: the unit's amortized share in bulk, each trial's own in the
client's path). Everything else is compared exactly.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import event

from gradatlas import record as R
from gradatlas.record import (
    OutcomeLabel,
    RecordedOutcome,
    RunKind,
    TrialRecord,
    trial_params,
    trial_tags,
)
from gradatlas.store import FailureWrite, TrialWrite, open_store, sql_bulk
from gradatlas.store.base import LiveStart
from gradatlas.store.mlflow_store import MlflowStore
from tests.conftest import new_store

SWEEP = "0123456789abcdef0123456789abcdef"  # the same sweep run id in both experiments
LOGGING_TIME = "logging_time_s"


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return new_store(tmp_path / "store" / "mlflow.db")


def stores(uri: str) -> tuple[MlflowStore, MlflowStore]:
    """The same store twice: the client's path, and the bulk path."""
    client, bulk = open_store(uri), open_store(uri)
    assert isinstance(client, MlflowStore) and isinstance(bulk, MlflowStore)
    client.bulk = False
    return client, bulk


def records(synth, n: int = 4) -> list[TrialRecord]:
    """Synthetic trials with every curve (the runner's metric history), one with a param
    longer than MLflow takes (6,000 characters: truncated) and over 1,000 metric points."""
    import numpy as np

    rng = np.random.default_rng(0)
    cells = synth.cells()
    out = [synth.record(cells[i * 37 % len(cells)], i, "bulk", rng) for i in range(n)]
    long = out[0]
    steps = list(range(1200))
    curves = dict(long.curves)
    curves["eval"] = dict(curves["eval"]) | {"step": steps, "val_acc": [s / 1200 for s in steps]}
    for key in ("val_loss", "train_acc", "train_loss"):
        curves["eval"].pop(key)
    config = long.config | {"notes": "x" * 7000}
    out[0] = replace(long, config=config, curves=curves)
    assert len(R.trial_metrics(out[0])) > 1000
    return out


def without_logging_time(text: str) -> dict[str, Any]:
    data = json.loads(text)
    assert data["timing"].pop(LOGGING_TIME) > 0
    return data


def snapshot(store: MlflowStore, run_id: str) -> dict[str, Any]:
    """A run as MLflow's client reads it (and its row's columns the client does not show), with
    its id taken out of its artifact location, and without timestamps or ``logging_time_s``."""
    client = store._client
    run = client.get_run(run_id)
    info, data = run.info, run.data
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in data.metrics
    }
    assert len(history[LOGGING_TIME]) == 1 if info.status != "FAILED" else True
    history.pop(LOGGING_TIME, None)
    for points in history.values():
        points.sort()
    artifacts = {}
    for item in client.list_artifacts(run_id):
        text = store.artifact_text(run_id, item.path)
        artifacts[item.path] = without_logging_time(text) if item.path == R.TRIAL_ARTIFACT else text
    db = store.local_dir / "mlflow.db"
    with sqlite3.connect(db) as con:
        row = con.execute(
            "SELECT name, source_type, source_name, entry_point_name, user_id, source_version,"
            " lifecycle_stage, deleted_time FROM runs WHERE run_uuid = ?",
            (run_id,),
        ).fetchone()
        latest = con.execute(
            "SELECT key, value, step, is_nan FROM latest_metrics WHERE run_uuid = ? AND key != ?"
            " ORDER BY key",
            (run_id, LOGGING_TIME),
        ).fetchall()
    inputs = sorted(
        (
            d.dataset.name,
            d.dataset.digest,
            d.dataset.source_type,
            d.dataset.source,
            d.dataset.schema,
            d.dataset.profile,
            sorted((t.key, t.value) for t in d.tags),
        )
        for d in run.inputs.dataset_inputs
    )
    out = {
        "row": row,
        "run_name": info.run_name,
        "status": info.status,
        "lifecycle_stage": info.lifecycle_stage,
        "artifact_uri": info.artifact_uri.replace(run_id, "RUN"),
        "tags": dict(data.tags),
        "params": dict(data.params),
        "metrics": {k: v for k, v in data.metrics.items() if k != LOGGING_TIME},
        "latest": latest,
        "history": history,
        "artifacts": artifacts,
        "inputs": inputs,
    }
    if info.status != "FAILED":  # a failure starts and ends when it is written
        out["times"] = (info.start_time, info.end_time)
    else:
        assert info.end_time >= info.start_time
    return out


def write_unit(store: MlflowStore, exp: str, recs: list[TrialRecord], start: int) -> dict[str, Any]:
    """One unit of every kind of write the recorder makes, written twice (the second time all
    duplicates, one of them with a live run of its own); returns what each call reported."""
    running = lambda rec: replace(rec, outcome=RecordedOutcome(OutcomeLabel.RUNNING, "", {}))  # noqa: E731
    lives = {}
    for rec in recs[2:4]:  # live runs, with some points already
        lives[rec.trial_id] = store.start_live(
            exp,
            SWEEP,
            run_name=f"{rec.cell}-s{rec.seed}",
            tags=trial_tags(running(rec)),
            params=trial_params(rec),
            start_ms=start - 1000,
        )
        store.live_points(lives[rec.trial_id], R.trial_metrics(rec)[:30])
    failed = replace(recs[3], outcome=RecordedOutcome(OutcomeLabel.FAILED, "boom", {}))
    killed = replace(recs[1], trial_id="f" * 16, outcome=RecordedOutcome("killed", "stop", {}))
    tuning = TrialWrite(
        recs[1],
        "tune-0",
        start_ms=start + 10,
        end_ms=start + 20,
        parent="study-run",
        tags={R.KIND: RunKind.TUNING, R.STUDY: "s/a"},
    )
    writes = [
        TrialWrite(rec, f"{rec.cell}-s{rec.seed}", start_ms=start + i, end_ms=start + 50_000 + i)
        for i, rec in enumerate(recs[:3])
    ]
    writes += [
        TrialWrite(recs[0], "again", start_ms=start, end_ms=start + 1),  # a duplicate in the unit
        TrialWrite(killed, "killed", start_ms=start + 5, end_ms=start + 6, interrupted=True),
        tuning,
    ]
    failures = [
        FailureWrite(failed, "failed-live", "ValueError: boom", "Traceback: boom", "host:1"),
        FailureWrite(recs[4 % len(recs)], "failed", "OSError: x", "Traceback: x", "host:2"),
    ]
    first = store.record_unit(exp, SWEEP, writes, failures, live=lives)
    again_live = store.start_live(
        exp, SWEEP, run_name="retry", tags=trial_tags(recs[0]), params={}, start_ms=None
    )
    second = store.record_unit(exp, SWEEP, writes[:3], live={recs[0].trial_id: again_live})
    return {"first": first, "second": second, "retry_run": again_live.run_id}


def runs_by_identity(store: MlflowStore, exp: str) -> dict[tuple[str, str, str, str], str]:
    runs = store._client.search_runs([exp], max_results=1000)
    out = {}
    for run in runs:
        tags = run.data.tags
        key = (tags.get(R.KIND, ""), tags.get(R.TRIAL_ID, ""), run.info.status, run.info.run_name)
        assert key not in out, key
        out[key] = run.info.run_id
    return out


def test_bulk_unit_matches_the_client_path(uri: str, synth):
    """Every run of a unit (finished, killed, tuning, live, failed, failed live, a duplicate in
    the unit, a later duplicate with a live run of its own) reads back the same through MLflow's
    client from both paths: tags (MLflow's own too), params (a long one truncated), the row,
    latest metrics, every metric point, trial.json and error.txt, the dataset input; and
    ``load_trials`` gives the same records."""
    client, bulk = stores(uri)
    recs = records(synth, 5)
    exps, reports = {}, {}
    start = int(time.time() * 1000) - 100_000
    for name, store in (("client", client), ("bulk", bulk)):
        exps[name] = store.open_experiment(name)
        reports[name] = write_unit(store, exps[name], recs, start)
    assert bulk.bulk_fallbacks == [] and client.bulk_fallbacks == []
    for name in ("first", "second"):
        a, b = reports["client"][name], reports["bulk"][name]
        assert a.duplicates == b.duplicates and set(a.run_ids) == set(b.run_ids)
        assert set(a.failed_run_ids) == set(b.failed_run_ids)
    assert reports["bulk"]["second"].duplicates == [r.outcome.label for r in recs[:3]]
    for name, store in (("client", client), ("bulk", bulk)):  # the retry's live run is deleted
        assert store._client.get_run(reports[name]["retry_run"]).info.lifecycle_stage == "deleted"

    old, new = runs_by_identity(client, exps["client"]), runs_by_identity(bulk, exps["bulk"])
    assert set(old) == set(new) and len(old) == 7
    for key in old:
        assert snapshot(client, old[key]) == snapshot(bulk, new[key]), key
    long = bulk._client.get_run(reports["bulk"]["first"].run_ids[recs[0].trial_id])
    assert len(long.data.params["notes"]) == 6000  # MLflow's cap, truncated the same way

    loads = {n: s.load_trials(exps[n]) for n, s in (("client", client), ("bulk", bulk))}
    assert loads["client"].set_aside == loads["bulk"].set_aside
    assert [
        (t.record.trial_id, without_logging_time(t.record.to_json()), t.rebuilt)
        for t in loads["client"].trials
    ] == [
        (t.record.trial_id, without_logging_time(t.record.to_json()), t.rebuilt)
        for t in loads["bulk"].trials
    ]
    assert len(loads["bulk"].trials) == 3
    finished = {
        n: sorted(
            (
                (r.tags[R.TRIAL_ID], r.status, r.start_time, r.end_time, r.run_name),
                dict(r.tags),
            )
            for r in s.finished_trial_runs(exps[n])
        )
        for n, s in (("client", client), ("bulk", bulk))
    }
    assert finished["client"] == finished["bulk"]
    db = bulk.local_dir / "mlflow.db"
    with sqlite3.connect(db) as con:  # one dataset row per experiment, reused by every run
        per_exp = dict(con.execute("SELECT experiment_id, count(*) FROM datasets GROUP BY 1"))
    assert per_exp == {int(exps["client"]): 1, int(exps["bulk"]): 1}


def test_logging_time_is_the_units_share(uri: str, synth):
    """Bulk: ``logging_time_s`` (metric and trial.json) is the unit's time divided by its runs,
    the same for every run, and within the time the call took."""
    _, bulk = stores(uri)
    exp = bulk.open_experiment("e")
    recs = records(synth, 3)
    report = bulk.record_unit(exp, SWEEP, [TrialWrite(r, r.cell) for r in recs])
    shares = set()
    for rid in report.run_ids.values():
        run = bulk.get_run(rid)
        record = json.loads(bulk.artifact_text(run, R.TRIAL_ARTIFACT))
        assert record["timing"][LOGGING_TIME] == run.metrics[LOGGING_TIME]
        shares.add(run.metrics[LOGGING_TIME])
    (share,) = shares
    assert 0 < share * len(recs) <= report.seconds


def _injected(*_: Any, **__: Any) -> None:
    raise sqlalchemy.exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("injected"))


@pytest.mark.parametrize("where", ["_inputs", "close", "attach"])
def test_a_failed_bulk_write_is_rolled_back_and_written_once(
    uri: str, synth, monkeypatch, where: str
):
    """A database error in the middle of the bulk write (after the rows, after the artifact
    files): nothing of it stays, the client's path writes the unit, one run per trial, every
    point once, a live run's points whole (its step marks restored)."""
    _, bulk = stores(uri)
    exp = bulk.open_experiment("e")
    recs = records(synth, 3)
    live = bulk.start_live(
        exp, SWEEP, run_name="live", tags=trial_tags(recs[2]), params=trial_params(recs[2]),
        start_ms=None,
    )  # fmt: skip
    bulk.live_points(live, R.trial_metrics(recs[2])[:20])
    monkeypatch.setattr(sql_bulk.UnitWriter, where, _injected)
    writes = [TrialWrite(r, r.cell) for r in recs]
    report = bulk.record_unit(exp, SWEEP, writes, live={recs[2].trial_id: live})
    assert len(bulk.bulk_fallbacks) == 1 and "injected" in bulk.bulk_fallbacks[0]
    assert report.run_ids[recs[2].trial_id] == live.run_id
    runs = bulk.find_runs(exp, kind=RunKind.TRIAL)
    assert sorted(r.tags[R.TRIAL_ID] for r in runs) == sorted(r.trial_id for r in recs)
    for rec in recs:
        run = bulk.get_run(report.run_ids[rec.trial_id])
        assert run.status == "FINISHED"
        expected = [(s, v) for k, v, s in R.trial_metrics(rec) if k == "val_acc"]
        assert bulk.metric_history(run.run_id, "val_acc") == sorted(expected)
        assert TrialRecord.from_json(bulk.artifact_text(run, R.TRIAL_ARTIFACT)).trial_id
    again = bulk.record_unit(exp, SWEEP, writes)  # recorded once: all duplicates now
    assert len(again.duplicates) == 3 and not again.run_ids


def test_a_unit_is_one_transaction_and_recorded_one_query(uri: str, synth):
    """The bulk path commits once per unit, with as many statements for 12 trials as for 3
    (about a dozen);
    ``recorded`` asks once for any number of ids."""
    _, bulk = stores(uri)
    exp = bulk.open_experiment("e")
    engine = bulk._sql_store().engine
    seen = {"commit": 0, "statements": 0}

    def commit(*_: Any) -> None:
        seen["commit"] += 1

    def statement(conn, cursor, sql: str, *_: Any) -> None:
        if not sql.lstrip().upper().startswith("PRAGMA"):
            seen["statements"] += 1

    event.listen(engine, "commit", commit)
    event.listen(engine, "before_cursor_execute", statement)
    try:
        counts = []  # after a first unit, which makes the dataset row the others reuse
        for n, offset in ((1, 0), (3, 1), (12, 4)):
            seen.update(commit=0, statements=0)
            recs = records(synth, n + offset)[offset:]
            report = bulk.record_unit(exp, SWEEP, [TrialWrite(r, r.cell) for r in recs])
            assert len(report.run_ids) == n and seen["commit"] == 1
            counts.append(seen["statements"])
        assert counts[1] == counts[2]
        seen.update(statements=0)
        ids = [f"{i:016x}" for i in range(300)] + [recs[0].trial_id]
        assert bulk.recorded(exp, ids) == {recs[0].trial_id}
        assert seen["statements"] == 1
    finally:
        event.remove(engine, "commit", commit)
        event.remove(engine, "before_cursor_execute", statement)
    with pytest.raises(ValueError):
        bulk.recorded(exp, ["x' or '1'='1"])


def test_artifacts_that_are_not_local_go_through_the_client(uri: str):
    """An experiment whose artifacts are not a local folder: the bulk path declines before it
    writes anything (``Fallback``)."""
    _, bulk = stores(uri)
    exp = bulk._client.create_experiment("remote", artifact_location="s3://bucket/prefix")
    with pytest.raises(sql_bulk.Fallback), sql_bulk.unit_session(bulk._sql_store(), exp):
        pass
    assert sql_bulk.sql_tracking_store(object()) is None


# -- live runs: a unit's starts and a flush's points in one transaction each ----------------------
def running(rec: TrialRecord) -> TrialRecord:
    return replace(rec, outcome=RecordedOutcome(OutcomeLabel.RUNNING, "", {}))


def live_starts(recs: list[TrialRecord], start: int) -> list[LiveStart]:
    """One start per trial as ``runners.live.start_message`` makes it (the first trial's param
    over MLflow's cap: truncated), each from its own start time."""
    return [
        LiveStart(f"{rec.cell}-s{rec.seed}", trial_tags(running(rec)), trial_params(rec), start + i)
        for i, rec in enumerate(recs)
    ]


def live_snapshot(store: MlflowStore, run_id: str) -> dict[str, Any]:
    """A live run as MLflow's client reads it (with the row's columns it does not show), its id
    taken out of its artifact location, without metric timestamps."""
    client = store._client
    run = client.get_run(run_id)
    info, data = run.info, run.data
    history = {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        for key in data.metrics
    }
    with sqlite3.connect(store.local_dir / "mlflow.db") as con:
        row = con.execute(
            "SELECT name, source_type, source_name, entry_point_name, user_id, source_version,"
            " lifecycle_stage, deleted_time, end_time FROM runs WHERE run_uuid = ?",
            (run_id,),
        ).fetchone()
        latest = con.execute(
            "SELECT key, value, step, is_nan FROM latest_metrics WHERE run_uuid = ? ORDER BY key",
            (run_id,),
        ).fetchall()
    return {
        "row": row,
        "run_name": info.run_name,
        "status": info.status,
        "start_time": info.start_time,
        "artifact_uri": info.artifact_uri.replace(run_id, "RUN"),
        "tags": dict(data.tags),
        "params": dict(data.params),
        "metrics": dict(data.metrics),
        "latest": latest,
        "history": history,
    }


def metric_rows(store: MlflowStore) -> int:
    with sqlite3.connect(store.local_dir / "mlflow.db") as con:
        return con.execute("SELECT count(*) FROM metrics").fetchone()[0]


def test_live_many_matches_the_loop(uri: str, synth):
    """Starting a unit's live runs and flushing their points in one transaction each
    (``start_live_many``, ``live_points_many`` on the bulk path) leaves what ``start_live`` and
    ``live_points`` through the client leave, run by run: row, tags, params (a long one
    truncated), RUNNING from the trial's start time, metric history and latest values; a
    repeated flush writes nothing; the records written into those runs afterwards are the same
    final runs."""
    client, bulk = stores(uri)
    recs = records(synth, 5)
    start = int(time.time() * 1000) - 100_000
    exps, lives, counts = {}, {}, {}
    for name, store in (("client", client), ("bulk", bulk)):
        exps[name] = exp = store.open_experiment(name)
        lives[name] = store.start_live_many(exp, SWEEP, live_starts(recs, start))
        curves = [R.trial_metrics(rec) for rec in recs]
        # two flushes, the second overlapping the first (only its new steps count), one run
        # twice in a flush, one run without points
        first = [(live, pts[:40]) for live, pts in zip(lives[name][:4], curves[:4], strict=True)]
        second = [(live, pts[:90]) for live, pts in zip(lives[name][:3], curves[:3], strict=True)]
        second.append((lives[name][0], curves[0][:120]))
        counts[name] = [store.live_points_many(first), store.live_points_many(second)]
        rows = metric_rows(store)
        counts[name].append(store.live_points_many(second))  # repeated: nothing new
        assert metric_rows(store) == rows
    assert bulk.bulk_fallbacks == [] and client.bulk_fallbacks == []
    assert counts["client"] == counts["bulk"] and counts["bulk"][2] == 0 and counts["bulk"][0]
    for a, b in zip(lives["client"], lives["bulk"], strict=True):
        assert a.last_step == b.last_step
        one, other = live_snapshot(client, a.run_id), live_snapshot(bulk, b.run_id)
        assert one == other
        assert one["status"] == "RUNNING" and one["tags"][R.SWEEP_RUN] == SWEEP
    long = bulk._client.get_run(lives["bulk"][0].run_id)
    assert len(long.data.params["notes"]) == 6000  # MLflow's cap, truncated the same way
    assert [live_snapshot(bulk, r.run_id)["start_time"] for r in lives["bulk"]] == [
        start + i for i in range(len(recs))
    ]

    # the records into those live runs: the same final runs (each path's record_unit)
    writes = [
        TrialWrite(rec, f"{rec.cell}-s{rec.seed}", start_ms=start + i, end_ms=start + 50_000 + i)
        for i, rec in enumerate(recs)
    ]
    for name, store in (("client", client), ("bulk", bulk)):
        live = {rec.trial_id: run for rec, run in zip(recs, lives[name], strict=True)}
        report = store.record_unit(exps[name], SWEEP, writes, live=live)
        assert report.run_ids == {tid: run.run_id for tid, run in live.items()}
    assert bulk.bulk_fallbacks == []
    old, new = runs_by_identity(client, exps["client"]), runs_by_identity(bulk, exps["bulk"])
    assert set(old) == set(new) and len(old) == len(recs)
    for key in old:
        assert snapshot(client, old[key]) == snapshot(bulk, new[key]), key


def test_live_many_is_one_transaction_per_batch(uri: str, synth):
    """The bulk path commits once for a batch of starts and once for a flush, whatever their
    size; a start without a start time starts now; an empty batch writes nothing."""
    _, bulk = stores(uri)
    exp = bulk.open_experiment("e")
    recs = records(synth, 6)
    engine = bulk._sql_store().engine
    commits = []

    def commit(*_: Any) -> None:
        commits.append(1)

    event.listen(engine, "commit", commit)
    try:
        before = int(time.time() * 1000)
        starts = [replace(s, start_ms=None) for s in live_starts(recs, 0)]
        runs = bulk.start_live_many(exp, None, starts)
        assert len(commits) == 1 and len(runs) == len(recs)
        flush = [(run, R.trial_metrics(rec)[:50]) for run, rec in zip(runs, recs, strict=True)]
        assert bulk.live_points_many(flush) == 50 * len(recs)
        assert len(commits) == 2
        assert bulk.live_points_many(flush) == 0 and bulk.live_points_many([]) == 0
        assert bulk.start_live_many(exp, None, []) == [] and len(commits) == 2
    finally:
        event.remove(engine, "commit", commit)
    assert bulk.bulk_fallbacks == []
    for run in runs:
        got = bulk.get_run(run.run_id)
        assert got.status == "RUNNING" and before <= got.start_time <= int(time.time() * 1000)
        assert R.SWEEP_RUN not in got.tags  # no sweep given


def _fail_once(monkeypatch, name: str) -> list[int]:
    """``UnitWriter.<name>`` raises a database error on its first call (after the rows before it
    were inserted, uncommitted), then works."""
    real = getattr(sql_bulk.UnitWriter, name)
    calls = []

    def flaky(self, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            _injected()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(sql_bulk.UnitWriter, name, flaky)
    return calls


@pytest.mark.parametrize("where", ["close", "log_metrics"])
def test_a_failed_live_batch_is_rolled_back_and_written_once(
    uri: str, synth, monkeypatch, where: str
):
    """A database error in the middle of a batch of starts (after the run rows, before the
    commit) or of a flush (after the metric rows): nothing of it stays, the client's path writes
    it, so every run exists once and every point once, and the runs' step marks are those of
    the points written (a repeated flush writes nothing)."""
    _, bulk = stores(uri)
    exp = bulk.open_experiment("e")
    recs = records(synth, 4)
    calls = _fail_once(monkeypatch, "close")
    runs = bulk.start_live_many(exp, SWEEP, live_starts(recs, int(time.time() * 1000)))
    assert calls and len(bulk.bulk_fallbacks) == 1 and "injected" in bulk.bulk_fallbacks[0]
    found = bulk.find_runs(exp, kind=RunKind.TRIAL)
    assert sorted(r.run_id for r in found) == sorted(r.run_id for r in runs)
    assert sorted(r.tags[R.TRIAL_ID] for r in found) == sorted(r.trial_id for r in recs)

    monkeypatch.undo()
    curves = [R.trial_metrics(rec)[:60] for rec in recs]
    bulk.live_points_many([(runs[0], curves[0][:20])])  # held before: its marks restored
    calls = _fail_once(monkeypatch, where)
    flush = list(zip(runs, curves, strict=True))
    assert bulk.live_points_many(flush) == 60 * len(recs) - 20
    assert calls and len(bulk.bulk_fallbacks) == 2 and "injected" in bulk.bulk_fallbacks[1]
    assert bulk.live_points_many(flush) == 0
    for run, pts in zip(runs, curves, strict=True):
        for key in {k for k, _, _ in pts}:
            expected = sorted((s, v) for k, v, s in pts if k == key)
            assert bulk.metric_history(run.run_id, key) == expected, key
        assert run.last_step == {k: max(s for kk, _, s in pts if kk == k) for k, _, _ in pts}
    assert metric_rows(bulk) == 60 * len(recs)


def test_a_deleted_live_run_falls_back_to_the_client(uri: str, synth):
    """A flush naming a run deleted meanwhile: the bulk path declines (``Fallback``) before it
    writes, and the client's path says what MLflow says about it."""
    _, bulk = stores(uri)
    exp = bulk.open_experiment("e")
    recs = records(synth, 2)
    runs = bulk.start_live_many(exp, SWEEP, live_starts(recs, int(time.time() * 1000)))
    bulk.delete_run(runs[1].run_id)
    flush = [(run, R.trial_metrics(rec)[:10]) for run, rec in zip(runs, recs, strict=True)]
    with pytest.raises(Exception, match=r"(?i)deleted|active"):
        bulk.live_points_many(flush)
    assert bulk.bulk_fallbacks and "not active" in bulk.bulk_fallbacks[-1]


def test_write_live_groups_a_call_into_one_start_and_one_flush(uri: str, synth):
    """``runners.recorder.write_live``: one ``start_live_many`` for the starts of a call and one
    ``live_points_many`` for its points, writing what the message-by-message loop would: a
    second start of a trial and a start of a trial with a run are ignored, points of a trial
    started nowhere are dropped, points of a trial started in the same call land in its run."""
    from gradatlas.runners.live import POINTS, START
    from gradatlas.runners.recorder import write_live

    _, bulk = stores(uri)
    exp = bulk.open_experiment("e")
    recs = records(synth, 3)
    starts = live_starts(recs, int(time.time() * 1000))
    calls: list[str] = []
    for name in ("start_live_many", "live_points_many"):
        real = getattr(bulk, name)
        setattr(bulk, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))

    def start(i: int) -> dict[str, Any]:
        s = starts[i]
        return {"t": START, "trial_id": recs[i].trial_id, "run_name": s.run_name,
                "tags": s.tags, "params": s.params, "start_ms": s.start_ms}  # fmt: skip

    def points(i: int, n: int, tid: str | None = None) -> dict[str, Any]:
        pts = R.trial_metrics(recs[i])[:n]
        return {"t": POINTS, "trial_id": tid or recs[i].trial_id, "points": pts}

    live: dict[str, Any] = {}
    write_live(bulk, exp, SWEEP, [start(0), points(0, 10), start(1), points(2, 5), start(0)], live)
    assert calls == ["start_live_many", "live_points_many"] and set(live) == {
        recs[0].trial_id,
        recs[1].trial_id,
    }
    first = live[recs[0].trial_id].run_id
    write_live(bulk, exp, SWEEP, [start(0), start(2), points(0, 20), points(2, 5)], live)
    assert live[recs[0].trial_id].run_id == first
    assert len(bulk.find_runs(exp, kind=RunKind.TRIAL)) == 3
    assert sum(len(bulk.metric_history(first, k)) for k in {k for k, _, _ in
               R.trial_metrics(recs[0])[:20]}) == 20  # fmt: skip
    assert metric_rows(bulk) == 20 + 5
    assert bulk.bulk_fallbacks == []
