"""Tuning with Optuna: real Optuna SQLite studies, real MLflow SQLite stores, tiny real trials.

What is checked, from the stores themselves: the studies' best values land in the evaluation
trials' configs; a seeded sampler asks the same values twice; a median pruner stops a lagging
run early (fewer steps than its budget, recorded as pruned); a driver killed mid-tuning resumes
without training any finished tuning run again and ends with exactly ``trials`` finished study
trials; the ``tune`` block's mistakes are named by field; the report section renders.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from gradatlas.errors import SuiteErrors, UserInputError
from gradatlas.runners.executor import EarlyStop, InProcessExecutor, MemberRules
from gradatlas.runners.sweep import run_suite
from gradatlas.runners.trial import run_trial, set_threads
from gradatlas.runners.tuning.plan import tuning_plan
from gradatlas.runners.tuning.pruning import COMPLETE, PRUNED_STATE, Finished, thresholds
from gradatlas.suites import expand_suite
from gradatlas.suites.schema import TunePruner
from tests.conftest import cli_env, new_store

TUNED = {
    "name": "tuned",
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "width": 16, "depth": 2},
    "grid": {"optimizer": ["sgd", "adam"]},
    "seeds": 1,
    "train": {"steps": 30, "batch_size": 64, "eval_every": 10},
    "instrument": {"every": 5, "max_points": 50, "probe_batch": 64},
    "tune": {
        "params": {"lr": {"low": 1e-4, "high": 1.0, "log": True}},
        "per": ["optimizer"],
        "trials": 4,
        "steps": 20,
        "pruner": {"name": "none"},
    },
}


def suite_of(data: dict, name: str = "tuned", **tune) -> object:
    data = json.loads(json.dumps(data))
    data["tune"].update(tune)
    data["name"] = name  # each test its own experiment and studies, in one shared store
    return expand_suite(data, source="tuned.yaml")


def uris(root: Path) -> tuple[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'optuna.db'}"


def run(suite, root: Path):
    set_threads(1)
    mlflow_uri, optuna_uri = uris(root)
    summary = run_suite(
        suite,
        mlflow_uri,
        executor=InProcessExecutor(accelerator="cpu", threads=1),
        stream=io.StringIO(),
        optuna_storage=optuna_uri,
    )
    return summary, mlflow_uri, optuna_uri


def mlflow_runs(uri: str, name: str) -> list:
    from mlflow.tracking import MlflowClient

    from gradatlas.store import open_store

    open_store(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], max_results=5000) if exp else []


def studies(optuna_uri: str) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=optuna_uri)
        for s in optuna.get_all_study_summaries(optuna_uri)
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One MLflow and one Optuna store for the module (a new MLflow store costs seconds)."""
    root = tmp_path_factory.mktemp("stores")
    new_store(root / "mlflow.db")
    return root


@pytest.fixture(scope="module")
def tuned_store(root: Path):
    """One tuned sweep: 2 studies (sgd, adam) x 4 trials, then 2 evaluation trials."""
    summary, mlflow_uri, optuna_uri = run(suite_of(TUNED), root)
    return summary, mlflow_uri, optuna_uri


# -- the engine ------------------------------------------------------------------------------------
def test_best_values_land_in_the_evaluation_trials(tuned_store) -> None:
    summary, mlflow_uri, optuna_uri = tuned_store
    assert summary.tuning.complete and not summary.interrupted
    found = {k: v for k, v in studies(optuna_uri).items() if k.startswith("tuned/")}
    assert set(found) == {"tuned/sgd", "tuned/adam"}
    runs = mlflow_runs(mlflow_uri, "tuned")
    kinds = Counter(r.data.tags["gradatlas.kind"] for r in runs)
    assert kinds == {"tuning": 8, "study": 2, "trial": 2, "sweep": 1}
    by_id = {r.info.run_id: r for r in runs}
    for r in runs:
        tags = r.data.tags
        if tags["gradatlas.kind"] == "trial":
            study = found[f"tuned/{r.data.params['factor.optimizer']}"]
            assert float(r.data.params["optim.lr"]) == study.best_params["lr"]
            assert r.data.params["train.steps"] == "30"  # the suite's budget, not tune.steps
        if tags["gradatlas.kind"] == "tuning":  # nested: tuning run -> study run -> sweep run
            parent = by_id[tags["mlflow.parentRunId"]]
            assert parent.data.tags["gradatlas.kind"] == "study"
            assert parent.data.tags["gradatlas.study"] == tags["gradatlas.study"]
            assert (
                by_id[parent.data.tags["mlflow.parentRunId"]].data.tags["gradatlas.kind"] == "sweep"
            )
            assert r.data.params["train.steps"] == "20"
            assert r.data.params["seed"] == "10000"
            assert json.loads(tags["gradatlas.tuning.params"])["lr"] == float(
                r.data.params["optim.lr"]
            )
        if tags["gradatlas.kind"] == "study":
            assert r.info.status == "FINISHED"
            best = json.loads(tags["gradatlas.tuning.best"])
            assert best == found[tags["gradatlas.study"]].best_params
    for study in found.values():
        assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 4}


def test_seeded_sampler_asks_the_same_values(tuned_store, root: Path) -> None:
    _, _, optuna_uri = tuned_store
    suite = suite_of(TUNED, name="again")  # another experiment: nothing recorded to reuse
    run(dataclasses.replace(suite, trials=suite.trials[:1]), root)  # the sgd study alone
    found = studies(optuna_uri)
    a = [t.params["lr"] for t in found["tuned/sgd"].trials]
    assert [t.params["lr"] for t in found["again/sgd"].trials] == a
    assert "again/adam" not in found
    # The groups' samplers are seeded apart: the two studies do not ask the same values.
    assert [t.params for t in found["tuned/sgd"].trials] != [
        t.params for t in found["tuned/adam"].trials
    ]


def test_a_rerun_of_a_tuned_suite_trains_nothing(tuned_store) -> None:
    _, mlflow_uri, optuna_uri = tuned_store
    set_threads(1)
    summary = run_suite(
        suite_of(TUNED),
        mlflow_uri,
        executor=InProcessExecutor(accelerator="cpu", threads=1),
        stream=io.StringIO(),
        optuna_storage=optuna_uri,
    )
    assert summary.ran == 0 and summary.tuning.trained == 0
    assert summary.skipped == 2


def test_median_pruner_stops_a_lagging_run_early(root: Path) -> None:
    import optuna

    suite = suite_of(
        TUNED,
        name="pruned",
        trials=2,
        pruner={"name": "median", "startup_trials": 1, "warmup_steps": 0},
    )
    suite = dataclasses.replace(suite, trials=suite.trials[:1])  # the sgd cell alone
    mlflow_uri, optuna_uri = uris(root)
    # A constructed case: a good learning rate first, then one far too small to learn.
    study = optuna.create_study(study_name="pruned/sgd", storage=optuna_uri, direction="maximize")
    study.enqueue_trial({"lr": 0.5})
    study.enqueue_trial({"lr": 1e-4})
    summary, _, _ = run(suite, root)
    assert summary.tuning.complete
    states = [t.state.name for t in studies(optuna_uri)["pruned/sgd"].trials]
    assert states == ["COMPLETE", "PRUNED"]
    tuning = {
        float(r.data.params["optim.lr"]): r
        for r in mlflow_runs(mlflow_uri, "pruned")
        if r.data.tags["gradatlas.kind"] == "tuning"
    }
    slow = tuning[1e-4]
    assert slow.data.tags["gradatlas.outcome"] == "pruned"
    assert slow.data.metrics["steps_run"] == 10 < 20  # stopped at the first eval step
    assert slow.data.tags["gradatlas.tuning.stopped_at"] == "10"
    assert tuning[0.5].data.metrics["steps_run"] == 20


def test_early_stop_rule_ends_the_fit_where_it_says() -> None:
    set_threads(1)
    suite = suite_of(TUNED)
    rule = EarlyStop("val_acc", True, {10: 0.999})  # nothing reaches 99.9% after 10 steps
    result = run_trial(suite.trials[0], accelerator="cpu", early_stop=MemberRules((rule,)))
    assert result.extra["early_stop_step"] == 10
    assert result.summary["steps_run"] == 10


def test_thresholds_follow_the_pruner() -> None:
    finished = [
        Finished(COMPLETE, {"s": {0: 0.1, 10: 0.2, 20: 0.5, 30: 0.6}}),
        Finished(COMPLETE, {"s": {0: 0.1, 10: 0.4, 20: 0.7, 30: 0.8}}),
        Finished(PRUNED_STATE, {"s": {0: 0.1, 10: 0.1}}),
    ]
    median = TunePruner(name="median", startup_trials=2, warmup_steps=15)
    # From the warm-up on, the median of the completed trials; never at the budget's last step.
    assert thresholds(median, True, finished, "s") == {20: pytest.approx(0.6)}
    assert thresholds(TunePruner(name="median", startup_trials=3), True, finished, "s") == {}
    halving = TunePruner(name="successive_halving", min_steps=10, eta=2)
    # Rung 10: 3 finished + this one -> keep the top 2: the 2nd best of (0.2, 0.4, 0.1).
    # Rung 20: 2 reached it -> keep the top 1 of 3: the best (0.7).
    assert thresholds(halving, True, finished, "s") == {10: 0.2, 20: 0.7}
    assert thresholds(halving, False, finished, "s") == {10: 0.2, 20: 0.5}
    assert thresholds(TunePruner(name="none"), True, finished, "s") == {}
    assert EarlyStop("val_acc", True, {10: 0.5}).worse(10, {"val_acc": 0.4})
    assert not EarlyStop("val_loss", False, {10: 0.5}).worse(10, {"val_loss": 0.4})
    assert EarlyStop("val_loss", False, {10: 0.5}).worse(10, {"val_loss": math.nan})


# -- resume after a kill --------------------------------------------------------------------------
@pytest.mark.e2e  # two CLI drivers, the first SIGKILLed mid-tuning
def test_killed_tuning_resumes_without_retraining(root: Path, tmp_path: Path) -> None:
    data = json.loads(json.dumps(TUNED))
    data["name"] = "killed"
    data["grid"] = {"optimizer": ["sgd"]}
    data["tune"].update(trials=6, steps=30, per=[])
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(data))
    mlflow_uri, optuna_uri = uris(root)
    args = [sys.executable, "-m", "gradatlas", "run", str(path), "--threads", "1"]
    args += ["--tracking-uri", mlflow_uri, "--optuna-storage", optuna_uri]

    def finished_tuning() -> list:
        try:
            runs = mlflow_runs(mlflow_uri, "killed")
        except Exception:  # the store may be mid-creation
            return []
        return [
            r
            for r in runs
            if r.data.tags.get("gradatlas.kind") == "tuning" and r.info.status == "FINISHED"
        ]

    with open(tmp_path / "first.err", "w") as err:
        proc = subprocess.Popen(
            args, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while len(finished_tuning()) < 2 and proc.poll() is None:
                assert time.monotonic() < deadline, "no tuning run was recorded"
                time.sleep(0.2)
            assert proc.poll() is None, "tuning finished before it could be killed"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # driver, recorder: the whole group
            proc.wait()
    before = {r.data.tags["gradatlas.trial_id"]: r.info.run_id for r in finished_tuning()}
    assert 2 <= len(before) < 6

    again = subprocess.run(
        args, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    after = finished_tuning()
    counts = Counter(r.data.tags["gradatlas.trial_id"] for r in after)
    assert set(counts.values()) == {1}, counts  # no finished tuning run was trained twice
    assert {tid: rid for tid, rid in ((r.data.tags["gradatlas.trial_id"], r.info.run_id)
            for r in after) if tid in before} == before  # fmt: skip
    trained = int(re.search(r"Tuning: (\d+) tuning runs trained", again.stdout).group(1))
    assert trained == len(after) - len(before)
    told = re.search(r"(\d+) told from their MLflow records", again.stdout)
    print(  # the evidence, for `pytest -s` and the closing notes
        f"killed with {len(before)} tuning runs recorded; the rerun trained {trained}, told "
        f"{told.group(1) if told else 0} from records; {len(after)} tuning runs, each trial id "
        "FINISHED once"
    )
    study = studies(optuna_uri)["killed/all"]
    states = Counter(t.state.name for t in study.trials)
    assert states["COMPLETE"] + states["PRUNED"] == 6
    assert not [r for r in mlflow_runs(mlflow_uri, "killed") if r.info.status == "RUNNING"]
    # The evaluation trial ran at the study's best value.
    trial = next(
        r for r in mlflow_runs(mlflow_uri, "killed") if r.data.tags["gradatlas.kind"] == "trial"
    )
    assert float(trial.data.params["optim.lr"]) == study.best_params["lr"]


# -- validation ------------------------------------------------------------------------------------
def fields(data: dict) -> dict[str, str]:
    with pytest.raises(SuiteErrors) as info:
        expand_suite(data, source="s.yaml")
    return {e.field: e.message for e in info.value.errors}


def with_tune(**tune) -> dict:
    data = json.loads(json.dumps(TUNED))
    data["tune"] = {"params": {"lr": {"low": 1e-4, "high": 1.0, "log": True}}, **tune}
    return data


def test_tune_block_errors_name_their_field() -> None:
    errors = fields(with_tune(params={"momentom": {"low": 0.1, "high": 0.9}}))
    assert "did you mean 'momentum'" in errors["tune.params.momentom"]
    errors = fields(with_tune(per=["depth", "actvation"]))
    assert "not a factor this suite varies" in errors["tune.per[0]"]
    assert "unknown factor" in errors["tune.per[1]"]
    errors = fields(with_tune(params={"lr": {"low": 1.0, "high": 0.1}}))
    assert "must be below high" in next(v for k, v in errors.items() if k.startswith("tune"))
    errors = fields(with_tune(params={"dropout": {"low": 0.1, "high": 1.5}}))
    assert "[0, 1)" in errors["tune.params.dropout.high"]
    errors = fields(with_tune(max_stable_lr={"low": 1.0, "high": 0.5}))
    assert "must be below high" in errors["tune.max_stable_lr.low"]
    errors = fields(with_tune(where={"optimizer": "rmsprop"}))
    assert "not one of" in errors["tune.where.optimizer"]
    data = with_tune()
    data["grid"]["lr"] = [0.01, 0.1]
    assert "grid factor" in fields(data)["tune.params.lr"]


def test_an_option_no_optimizer_of_the_plan_takes_is_refused() -> None:
    data = with_tune(params={"momentum": {"low": 0.5, "high": 0.99}})
    data["grid"] = {"depth": [2, 3]}  # sgd only: it has no momentum
    with pytest.raises(UserInputError) as info:
        tuning_plan(expand_suite(data, source="s.yaml"))
    assert "tune.params.momentum" in info.value.render()
    assert "no optimizer of the tuned cells takes 'momentum'" in info.value.render()
    data["grid"] = {"optimizer": ["sgd", "momentum"]}
    plan = tuning_plan(expand_suite(data, source="s.yaml"))
    assert [g.params for g in plan.groups] == [("momentum",)]  # one study, momentum's cells


def test_where_leaves_other_cells_as_written() -> None:
    suite = expand_suite(with_tune(per=["optimizer"], where={"optimizer": "adam"}), source="s")
    plan = tuning_plan(suite)
    assert [g.label for g in plan.groups] == ["adam"]
    from gradatlas.runners.tuning.plan import evaluation_trials

    tuned = evaluation_trials(suite, plan, {"adam": {"lr": 0.0123}})
    assert [t.spec.optim.lr for t in tuned] == [suite.trials[0].spec.optim.lr, 0.0123]
    assert tuned[0].trial_id == suite.trials[0].trial_id  # untouched: the same trial


# -- the report section ----------------------------------------------------------------------------
def test_tuning_section_renders(tuned_store) -> None:
    from gradatlas.reports import tuning
    from gradatlas.reports.context import make_context
    from gradatlas.reports.html import render_html
    from gradatlas.reports.load import load_experiment
    from gradatlas.reports.sections import document_for

    _, mlflow_uri, optuna_uri = tuned_store
    ctx = make_context(load_experiment("tuned", mlflow_uri))
    assert len(ctx.exp.trials) == 2  # tuning runs stay out of the trial statistics
    html = render_html(document_for(ctx, [tuning.Tuning()]))
    assert 'data-table="tuning-chosen"' in html
    for name, study in studies(optuna_uri).items():
        if not name.startswith("tuned/"):
            continue
        best = json.dumps(study.best_params, sort_keys=True)
        assert f'data-study="{name}"' in html
        assert f'data-best="{best.replace(chr(34), "&quot;")}"' in html
    assert "tuning-sensitivity" in html


def test_untuned_suite_gets_one_note() -> None:
    from gradatlas.reports import tuning
    from gradatlas.reports.document import Para

    blocks = tuning.tuning_blocks(None, None)
    assert len(blocks) == 1 and isinstance(blocks[0], Para) and blocks[0].note
