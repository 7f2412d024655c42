"""A real sweep into a real SQLite MLflow store: the record, resume, --force."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace as NS

from mlflow.tracking import MlflowClient

from gradatlas import record as R
from gradatlas.record import TrialRecord
from gradatlas.runners.sweep import outcome_table, run_suite
from gradatlas.runners.tracking import TrialWrite, suite_experiment, write_unit
from gradatlas.store import open_store
from gradatlas.suites import load_suite
from tests.conftest import new_store


def _trial_runs(client: MlflowClient, exp_id: str, status: str = "FINISHED"):
    return client.search_runs(
        [exp_id],
        filter_string=f"tags.`gradatlas.kind` = 'trial' and attributes.status = '{status}'",
        max_results=1000,
    )


def _read(client: MlflowClient, run_id: str, name: str, tmp: Path) -> str:
    return Path(client.download_artifacts(run_id, name, str(tmp))).read_text()


def test_sweep_records_every_trial_and_resumes(tiny_suite: Path, tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    suite = load_suite(str(tiny_suite))
    first = run_suite(suite, uri)
    assert (first.planned, first.ran, first.skipped) == (8, 8, 0)

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("tiny")
    runs = _trial_runs(client, exp.experiment_id)
    assert len(runs) == 8
    assert {r.data.tags["gradatlas.trial_id"] for r in runs} == {t.trial_id for t in suite.trials}

    run = next(r for r in runs if r.info.run_name == "d12-sigmoid-s1")
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["gradatlas.outcome"] in {
        "converged",
        "unconverged",
        "stalled",
        "vanished",
        "exploded",
    }
    assert tags["gradatlas.cell"] == "d12-sigmoid" and tags["gradatlas.seed"] == "1"
    # How it ran, said on the run: another thread count changes the curves, not the trial id.
    threads = tags[R.TORCH_THREADS]
    assert threads == str(int(metrics["torch_threads"])) and int(threads) >= 1
    # The experiment opens in MLflow's training view, with the suite's factor table as its note.
    assert exp.tags[R.EXPERIMENT_KIND] == R.EXPERIMENT_KIND_TRAINING
    assert "| depth | d2, d12 |" in exp.tags[R.EXPERIMENT_NOTE]
    # Trial runs stand flat in the UI (no parent to collapse them under) and name their sweep.
    sweep_id = tags[R.SWEEP_RUN]
    assert R.PARENT_RUN not in tags
    assert tags[R.RUN_NOTE].startswith(f"**{tags[R.OUTCOME]}**: ")
    # What the runs table and the run page show without clicks: the dataset and the picture.
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "digits" and dataset.tags[0].value == "train"
    # Every run gets its picture, though the recorder draws them only when no unit waits.
    for each in runs:
        assert "trial.png" in {a.path for a in client.list_artifacts(each.info.run_id)}
    png = Path(client.download_artifacts(run.info.run_id, "trial.png", str(tmp_path)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The saved views the report's link opens: trials flat, factor columns, cell order.
    view = json.loads(exp.tags["mlflow.sharedViewState.gradatlas-trials"])
    state = json.loads(view["state"])
    assert state["searchFilter"] == "tags.`gradatlas.kind` = 'trial'"
    assert "params.`factor.depth`" in state["selectedColumns"]
    assert params["model.depth"] == "12" and params["model.activation.name"] == "sigmoid"
    assert params["factor.depth"] == "d12" and params["optim.lr"] == "0.1"
    assert {"initial_loss", "final_val_acc", "steps_run", "init_grad_ratio"} <= set(metrics)
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert 10 <= len(history) <= 50 and history[0].step == 0
    # Per-layer curves as metrics: the first and last weight layer only (all are in trial.json).
    assert client.get_metric_history(run.info.run_id, "layer_grad_norm/00")
    assert client.get_metric_history(run.info.run_id, "layer_grad_norm/12")
    assert not client.get_metric_history(run.info.run_id, "layer_grad_norm/05")

    # The whole record as one artifact, in the layout gradatlas.record reads and writes.
    text = _read(client, run.info.run_id, "trial.json", tmp_path)
    record = json.loads(text)
    assert TrialRecord.from_json(record).to_json() == text
    assert list(record) == list(TrialRecord().to_dict()) and record["schema"] == R.SCHEMA
    assert record["trial_id"] == tags["gradatlas.trial_id"]
    assert record["outcome"]["label"] == tags["gradatlas.outcome"]
    assert record["outcome"]["thresholds"]["target_accuracy"] == 0.3
    assert len(record["profiles"]["init"]["grad_norm"]) == 13
    assert record["timing"]["logging_time_s"] > 0
    assert (
        tags[R.DEVICE] == record["device"]
        and tags[R.OUTCOME_REASON] == (record["outcome"]["reason"])
    )
    # The run spans the trial, not just the time its record took to write.
    info = run.info
    assert info.end_time - info.start_time >= 1000 * record["timing"]["wall_time_s"] - 2

    # The sweep run archives the suite and the environment.
    arts = {a.path for a in client.list_artifacts(sweep_id)}
    assert {"suite.yaml", "suite.resolved.json", "environment.json", "factor_levels.json"} <= arts
    levels = client.download_artifacts(sweep_id, "factor_levels.json", str(tmp_path))
    assert json.loads(Path(levels).read_text()) == {
        "depth": ["d2", "d12"],
        "activation": ["relu", "sigmoid"],
    }
    assert record["finished_at"].endswith("+00:00")
    sweep = client.get_run(sweep_id)
    assert sweep.info.status == "FINISHED"
    assert R.SweepRecord.from_tags(sweep.data.tags) == R.SweepRecord("tiny", planned=8, todo=8)

    # Resume: nothing left to do, no new runs, not even an empty sweep run.
    n_runs = len(client.search_runs([exp.experiment_id], max_results=1000))
    again = run_suite(load_suite(str(tiny_suite)), uri)
    assert (again.ran, again.skipped) == (0, 8)
    assert len(client.search_runs([exp.experiment_id], max_results=1000)) == n_runs

    columns, rows = outcome_table(uri, suite)
    assert sum(sum(c.values()) for _, c in rows) == 8 and "pending" not in columns

    # --force reruns everything as new runs; the old ones stay.
    forced = run_suite(load_suite(str(tiny_suite)), uri, force=True, limit=2)
    assert (forced.ran, forced.skipped) == (2, 0)
    assert len(_trial_runs(client, exp.experiment_id)) == 10


def test_partial_sweep_resumes_where_it_stopped(tiny_suite: Path, tmp_path: Path):
    uri = new_store(tmp_path / "mlflow.db")
    assert run_suite(load_suite(str(tiny_suite)), uri, limit=3).ran == 3
    rest = run_suite(load_suite(str(tiny_suite)), uri)
    assert (rest.ran, rest.skipped) == (5, 3)
    columns, _rows = outcome_table(uri, load_suite(str(tiny_suite)))
    assert "pending" not in columns


def test_an_interrupted_trial_is_recorded_killed(tiny_suite: Path, tmp_path: Path):
    """The record of a result the user interrupted: outcome ``killed``, status KILLED, and the
    run is not one resume counts as done."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trial = load_suite(str(tiny_suite)).trials[0]
    curves = {
        "train": {"step": [0, 1], "loss": [2.3, 2.2], "grad_norm": [1.0, 1.0], "lr": [0.1, 0.1]},
        "eval": {"step": [0], "val_loss": [2.3]},
        "layers": {"step": [0], "grad_norm": [[1.0]], "update_ratio": [[0.1]]},
    }
    result = NS(
        trial=trial,
        outcome=NS(label="unconverged", reason="learned, but not enough"),
        task="classification",
        num_classes=10,
        summary={"initial_loss": 2.3, "final_val_loss": float("nan")},
        curves=curves,
        profiles={},
        timing={"wall_time_s": 3.0, "fit_time_s": 2.0, "instrument_time_s": 0.1},
        device="cpu",
        interrupted=True,
    )
    store = open_store(uri)
    exp_id = suite_experiment(store, "tiny")
    report = write_unit(store, exp_id, None, [TrialWrite.of(result)])
    rid = report.run_ids[trial.trial_id]
    client = MlflowClient(tracking_uri=uri)  # read back independently of the store
    run = client.get_run(rid)
    assert run.info.status == "KILLED" and run.data.tags[R.OUTCOME] == R.KILLED
    assert R.PARENT_RUN not in run.data.tags
    assert run.info.end_time - run.info.start_time >= 3000 - 2
    rec = TrialRecord.from_json(_read(client, rid, "trial.json", tmp_path))
    assert rec.outcome.label == "killed" and rec.outcome.reason == "learned, but not enough"
    assert rec.summary["final_val_loss"] is None and "final_val_loss" not in run.data.metrics
    assert store.finished_trials(exp_id) == {}
