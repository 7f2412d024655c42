"""Tuning that does not pick the winner by accident: second-best trials, the horizon check and the
neighbourhood of each choice.

What is checked, from the stores themselves (real Optuna and MLflow SQLite stores, tiny real
trials): with ``tune.second_best`` each tuned cell's seeds also run at its study's second-best
value (recomputed here from the Optuna study: the best completed trial at least 2x from the
best), tagged rank 2, its rank-1 twin rank 1; a study without a distinct second-best runs
nothing extra and the report says so; a rerun trains and records nothing; plan status counts
the rank-2 trials and calls the run finished; ``tune_rank`` reaches the report frame; the
neighbourhood data and the horizon check's comparison match the studies; the section renders
them. Plus the pure rules (``distinct``, ``second_best``) and that the new settings leave a
study's fingerprint alone, so turning them on keeps existing studies.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from gradatlas.runners.executor import InProcessExecutor
from gradatlas.runners.sweep import run_suite
from gradatlas.runners.trial import set_threads
from gradatlas.runners.tuning.plan import (
    fingerprint,
    ranked_trials,
    second_best,
    tuning_plan,
)
from gradatlas.suites import expand_suite
from gradatlas.suites.tune import distinct

NAME = "robust"
SUITE = {
    "name": NAME,
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "width": 16, "depth": 2},
    "grid": {"optimizer": ["sgd", "adam"]},
    "seeds": 1,
    "train": {"steps": 20, "batch_size": 64, "eval_every": 10},
    "instrument": {"every": 5, "max_points": 50, "probe_batch": 64},
    "tune": {
        "params": {"lr": {"low": 1e-4, "high": 1.0, "log": True}},
        "per": ["optimizer"],
        "trials": 3,
        "steps": 10,
        "pruner": {"name": "none"},
        "second_best": True,
        "horizon_check": 1,
    },
}
LOG_LR = {"lr": {"low": 1e-4, "high": 1.0, "log": True}}
# Enqueued, so the studies are known: sgd's values spread (a distinct second-best exists, and
# 0.35 is within 2x of 0.5, so it can never be one when 0.5 is the best), adam's all within 2x.
SGD = [0.5, 0.35, 1e-3]
ADAM = [0.01, 0.014, 0.018]


def suite_of(data: dict = SUITE, **tune):
    data = json.loads(json.dumps(data))
    data["tune"].update(tune)
    return expand_suite(data, source="robust.yaml")


def studies(optuna_uri: str) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=optuna_uri)
        for s in optuna.get_all_study_summaries(optuna_uri)
    }


def runs_of(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(NAME)
    return client.search_runs([exp.experiment_id], max_results=5000)


def run(suite, mlflow_uri: str, optuna_uri: str):
    set_threads(1)
    return run_suite(
        suite,
        mlflow_uri,
        executor=InProcessExecutor(accelerator="cpu", threads=1),
        stream=io.StringIO(),
        optuna_storage=optuna_uri,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One tuned sweep with second_best and a horizon check: studies robust/sgd and
    robust/adam (3 enqueued trials each, 10 steps), robust/adam@full (3 trials, 20 steps), then
    the evaluation trials at each best and at sgd's second-best."""
    import optuna

    from tests.conftest import new_store

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = tmp_path_factory.mktemp("robust")
    mlflow_uri, optuna_uri = new_store(root / "mlflow.db"), f"sqlite:///{root / 'optuna.db'}"
    for group, values in (("sgd", SGD), ("adam", ADAM)):
        study = optuna.create_study(
            study_name=f"{NAME}/{group}", storage=optuna_uri, direction="maximize"
        )
        for lr in values:
            study.enqueue_trial({"lr": lr})
    summary = run(suite_of(), mlflow_uri, optuna_uri)
    assert summary.tuning.complete and not summary.interrupted and not summary.failures
    return summary, mlflow_uri, optuna_uri


def expected_second(study) -> float | None:
    """The second-best lr, recomputed from the study: the best completed trial whose lr is at
    least 2x from the best's (ties: the earlier trial)."""
    best = study.best_params["lr"]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    done.sort(key=lambda t: (-t.value, t.number))
    for t in done:
        lr = t.params["lr"]
        if max(lr, best) / min(lr, best) >= 2:
            return lr
    return None


# -- the engine -----------------------------------------------------------------------------------
def test_second_best_trials_run_at_a_distinct_lr(store) -> None:
    _, mlflow_uri, optuna_uri = store
    found = studies(optuna_uri)
    assert {f"{NAME}/sgd", f"{NAME}/adam", f"{NAME}/adam@full"} <= set(found)
    assert sorted(t.params["lr"] for t in found[f"{NAME}/sgd"].trials) == sorted(SGD)
    runs = runs_of(mlflow_uri)
    kinds = Counter(r.data.tags["gradatlas.kind"] for r in runs)
    # 3 + 3 short tuning runs and 3 at full length; 3 studies; sgd at best and second, adam at
    # best only (its trials all lie within 2x of each other).
    assert kinds == {"tuning": 9, "study": 3, "trial": 3, "sweep": 1}
    trials = [r for r in runs if r.data.tags["gradatlas.kind"] == "trial"]
    ranks = {
        (r.data.params["factor.optimizer"], r.data.tags["gradatlas.tuning.rank"]): float(
            r.data.params["optim.lr"]
        )
        for r in trials
    }
    sgd, adam = found[f"{NAME}/sgd"], found[f"{NAME}/adam"]
    assert ranks[("sgd", "1")] == sgd.best_params["lr"]
    assert ranks[("adam", "1")] == adam.best_params["lr"]
    second = expected_second(sgd)
    assert second is not None and ranks[("sgd", "2")] == second
    assert max(second, ranks[("sgd", "1")]) / min(second, ranks[("sgd", "1")]) >= 2
    assert expected_second(adam) is None and ("adam", "2") not in ranks
    for r in trials:
        assert r.data.params["train.steps"] == "20"  # the suite's budget
        assert r.data.params["seed"] == "0"  # the suite's own seed, not a tuning seed
    by_study = {
        r.data.tags["gradatlas.study"]: r for r in runs if r.data.tags["gradatlas.kind"] == "study"
    }
    assert json.loads(by_study[f"{NAME}/sgd"].data.tags["gradatlas.tuning.second"]) == {
        "lr": second
    }
    assert by_study[f"{NAME}/adam"].data.tags["gradatlas.tuning.second"] == "null"
    full = by_study[f"{NAME}/adam@full"]
    assert full.data.tags["gradatlas.tuning.purpose"] == "horizon"
    horizon_runs = [
        r for r in runs if r.data.tags.get("gradatlas.study") == f"{NAME}/adam@full"
        and r.data.tags["gradatlas.kind"] == "tuning"
    ]  # fmt: skip
    assert len(horizon_runs) == 3
    for r in horizon_runs:
        assert r.data.params["train.steps"] == "20"  # the full budget
        assert r.data.tags["gradatlas.tuning.purpose"] == "horizon"
        assert r.data.tags["mlflow.parentRunId"] == full.info.run_id


def test_a_rerun_adds_nothing(store) -> None:
    _, mlflow_uri, optuna_uri = store
    before = sorted(
        r.info.run_id for r in runs_of(mlflow_uri) if r.data.tags["gradatlas.kind"] != "sweep"
    )
    summary = run(suite_of(), mlflow_uri, optuna_uri)
    assert summary.ran == 0 and summary.tuning.trained == 0
    assert summary.skipped == 3
    after = sorted(
        r.info.run_id for r in runs_of(mlflow_uri) if r.data.tags["gradatlas.kind"] != "sweep"
    )
    assert after == before


def test_plan_status_counts_the_rank_two_trials(store) -> None:
    from gradatlas.reports.load import load_experiment
    from gradatlas.reports.plan_status import read_plan_status

    _, mlflow_uri, _ = store
    exp = load_experiment(NAME, mlflow_uri)
    status = read_plan_status(exp.store, exp)
    assert status.planned == 3 and status.finished == 3 and status.complete, status.banner()
    assert "second-best" in status.source


def test_tune_rank_reaches_the_report_frame(store) -> None:
    from gradatlas.reports.load import load_experiment

    _, mlflow_uri, _ = store
    trials = load_experiment(NAME, mlflow_uri).trials
    assert str(trials["tune_rank"].dtype) == "Int64"
    got = Counter(zip(trials["factor.optimizer"], trials["tune_rank"].astype(int), strict=True))
    assert got == {("sgd", 1): 1, ("sgd", 2): 1, ("adam", 1): 1}


def test_untuned_records_have_no_rank() -> None:
    from gradatlas.record import TrialRecord
    from gradatlas.reports.load import experiment_from_records

    meta = {"run_id": "r1", "start_time": 1}
    exp = experiment_from_records([(meta, TrialRecord(trial_id="t", seed=0))], name="x")
    assert exp.trials["tune_rank"].isna().all() and str(exp.trials["tune_rank"].dtype) == "Int64"


# -- the report -----------------------------------------------------------------------------------
def test_neighbourhood_matches_the_studies(store) -> None:
    from gradatlas.reports.load import load_experiment
    from gradatlas.reports.tuning import tuning_neighbourhood

    _, mlflow_uri, optuna_uri = store
    frame = tuning_neighbourhood(load_experiment(NAME, mlflow_uri)).set_index("group")
    assert set(frame.index) == {"sgd", "adam"}  # the horizon re-tune chose nothing
    for group in ("sgd", "adam"):
        study = studies(optuna_uri)[f"{NAME}/{group}"]
        row = frame.loc[group]
        assert row["best"] == study.best_params["lr"]
        assert row["best_objective"] == pytest.approx(study.best_value)
        tried = sorted((t.params["lr"], t.value) for t in study.trials if t.value is not None)
        assert [v for v, _ in row["tried"]] == [v for v, _ in tried]
        assert [o for _, o in row["tried"]] == pytest.approx([o for _, o in tried])
        below = [p for p in tried if p[0] < row["best"]]
        above = [p for p in tried if p[0] > row["best"]]
        if below:
            assert (row["below"], row["below_objective"]) == pytest.approx(below[-1])
        else:
            assert math.isnan(row["below"])
        if above:
            assert (row["above"], row["above_objective"]) == pytest.approx(above[0])
        else:
            assert math.isnan(row["above"])
        assert row["steps"] == 10 and row["budget_steps"] == 20
    assert frame.loc["sgd", "second_status"] == "evaluated"
    assert frame.loc["sgd", "second"] == expected_second(studies(optuna_uri)[f"{NAME}/sgd"])
    assert frame.loc["adam", "second_status"] == "none distinct"
    assert math.isnan(frame.loc["adam", "second"])


def test_section_shows_budget_neighbourhood_and_horizon(store, tmp_path: Path) -> None:
    from gradatlas.reports import tuning
    from gradatlas.reports.context import make_context
    from gradatlas.reports.html import render_html
    from gradatlas.reports.load import load_experiment
    from gradatlas.reports.pdf import render_pdf
    from gradatlas.reports.sections import document_for

    _, mlflow_uri, optuna_uri = store
    exp = load_experiment(NAME, mlflow_uri)
    doc = document_for(make_context(exp), [tuning.Tuning()])
    html = render_html(doc)
    render_pdf(doc, tmp_path / "tuning.pdf")  # the same blocks, drawn
    assert (tmp_path / "tuning.pdf").read_bytes().startswith(b"%PDF")
    assert "Tuned at 10 of 20 steps" in html
    assert 'data-table="tuning-neighbourhood"' in html
    assert 'data-table="tuning-horizon"' in html
    assert f"No distinct second-best in {NAME}/adam" in html
    data = tuning.load_tuning(mlflow_uri, exp.experiment_id)
    horizon = tuning.horizon_frame(data)
    assert list(horizon["group"]) == ["adam"]
    found = studies(optuna_uri)
    short, full = found[f"{NAME}/adam"].best_params, found[f"{NAME}/adam@full"].best_params
    row = horizon.iloc[0]
    assert row["short_best"] == short and row["full_best"] == full
    assert row["short_steps"] == 10 and row["full_steps"] == 20
    ratio = max(short["lr"], full["lr"]) / min(short["lr"], full["lr"])
    assert row["agree"] == (ratio < 2)
    # The horizon re-tune's runs stay out of the sensitivity data of the short studies.
    assert set(data.runs.loc[data.runs["purpose"] == "study", "study"]) == {
        f"{NAME}/sgd",
        f"{NAME}/adam",
    }


def test_neighbourhood_from_summaries_in_memory() -> None:
    from gradatlas.reports.tuning import (
        NEIGHBOURHOOD_COLUMNS,
        neighbourhood_blocks,
        neighbourhood_frame,
        tuning_data,
    )

    def study(group, tried, best, second, runs=True):
        return {
            "study": f"s/{group}",
            "group": group,
            "objective": "val_acc",
            "direction": "maximize",
            "params": LOG_LR,
            "steps": 300,
            "budget_steps": 1200,
            "best": {"values": {"lr": best[0]}, "objective": best[1], "number": 0},
            "second": second and {"values": {"lr": second[0]}, "objective": second[1]},
            "second_best_ratio": 2.0,
            "second_best_runs": runs,
            "tried": [
                {"number": i, "values": {"lr": v}, "objective": o, "state": s}
                for i, (v, o, s) in enumerate(tried)
            ],
        }

    tried = [
        (0.1, 0.8, "complete"),
        (0.01, 0.9, "complete"),
        (0.001, 0.5, "complete"),
        (0.03, None, "pruned"),
        (0.1, 0.7, "complete"),  # asked again: its mean counts
    ]
    data = tuning_data(
        [study("a", tried, (0.01, 0.9), (0.1, 0.75)), study("b", tried[:2], (0.01, 0.9), None)],
        pd.DataFrame(),
    )
    frame = neighbourhood_frame(data).set_index("group")
    a = frame.loc["a"]
    assert (a["below"], a["below_objective"]) == (0.001, 0.5)
    assert (a["above"], a["above_objective"]) == (0.1, pytest.approx(0.75))
    assert (a["complete"], a["pruned"]) == (4, 1)
    assert a["tried"] == [(0.001, 0.5), (0.01, 0.9), (0.1, pytest.approx(0.75))]
    assert a["second_status"] == "evaluated"
    assert frame.loc["b", "second_status"] == "none distinct" and math.isnan(
        frame.loc["b", "below"]
    )
    old = study("c", tried, (0.01, 0.9), None)
    del old["second"]  # a study summarised before second-bests were
    assert neighbourhood_frame(tuning_data([old], pd.DataFrame()))["second_status"][0] == (
        "not recorded"
    )
    assert list(neighbourhood_frame(None).columns) == NEIGHBOURHOOD_COLUMNS
    blocks = neighbourhood_blocks(neighbourhood_frame(data))
    table = blocks[0]
    assert table.name == "tuning-neighbourhood" and len(table.rows) == 2
    assert [c.text for c in table.rows[0][1:4]] == ["0.001 (0.5)", "0.01 (0.9)", "0.1 (0.75)"]
    assert "No distinct second-best in s/b" in blocks[1].text
    from gradatlas.reports.tuning import budget_text

    assert budget_text(data).startswith("Tuned at 300 of 1,200 steps")
    assert "not measured" in budget_text(data)


# -- the rules --------------------------------------------------------------------------------
def test_distinct_is_a_factor_on_log_params_and_a_share_of_the_range_on_linear_ones() -> None:
    assert distinct({"lr": 0.01}, {"lr": 0.02}, LOG_LR)
    assert not distinct({"lr": 0.01}, {"lr": 0.019}, LOG_LR)
    assert distinct({"lr": 0.01}, {"lr": 0.029}, LOG_LR, ratio=2.9)
    assert not distinct({"lr": 0.01}, {"lr": 0.029}, LOG_LR, ratio=3.0)
    lin = {"momentum": {"low": 0.5, "high": 0.99, "log": False}}
    assert distinct({"momentum": 0.9}, {"momentum": 0.85}, lin)  # 0.05 >= 10% of 0.49
    assert not distinct({"momentum": 0.9}, {"momentum": 0.86}, lin)
    both = LOG_LR | lin
    assert distinct({"lr": 0.01, "momentum": 0.9}, {"lr": 0.011, "momentum": 0.6}, both)


def test_second_best_takes_the_best_distinct_trial() -> None:
    done = [({"lr": 0.01}, 0.9, 0), ({"lr": 0.015}, 0.89, 1), ({"lr": 0.1}, 0.7, 2)]
    done += [({"lr": 0.001}, 0.7, 3)]
    assert second_best(done, {"lr": 0.01}, LOG_LR, True, 2.0) == ({"lr": 0.1}, 0.7, 2)  # tie
    assert second_best(done, {"lr": 0.01}, LOG_LR, False, 2.0) == ({"lr": 0.1}, 0.7, 2)
    assert second_best(done[:2], {"lr": 0.01}, LOG_LR, True, 2.0) is None


def test_robustness_settings_keep_the_studies_and_rank_the_trials() -> None:
    plain = tuning_plan(suite_of(second_best=False, horizon_check=0))
    robust = tuning_plan(suite_of(second_best=True, second_best_ratio=3.0, horizon_check=2))
    for a, b in zip(plain.groups, robust.groups, strict=True):
        assert fingerprint(plain, a) == fingerprint(robust, b)  # the studies stay valid
        assert fingerprint(robust, b) != fingerprint(robust, b, full=True)
    assert [g.label for g in robust.horizon_groups] == ["sgd", "adam"]  # min(2, groups)
    assert tuning_plan(suite_of(steps=None, horizon_check=2)).horizon_groups == ()  # not short
    suite = suite_of()
    ranked = ranked_trials(
        suite,
        robust,
        {"sgd": {"lr": 0.1}, "adam": {"lr": 0.01}},
        {"sgd": {"lr": 0.01}, "adam": None},
    )
    got = [(t.factors["optimizer"], t.spec.optim.lr, r) for t, r in ranked]
    assert got == [("sgd", 0.1, 1), ("adam", 0.01, 1), ("sgd", 0.01, 2)]
    assert len({t.trial_id for t, _ in ranked}) == 3
