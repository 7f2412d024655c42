"""``gradatlas.results`` / ``gradatlas.rates`` / ``gradatlas export`` on a real store.

The store is made once by a real tiny sweep on digits (8 trials) plus a ``--force`` rerun of two
of them, so the table must set two older finished runs aside. The table is checked against the
runs read straight from MLflow with ``MlflowClient`` (not through the reports' loader), and the
rates against counts taken from the table by hand and ``reports.stats.wilson``.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gradatlas
from gradatlas.app import results as dataframe
from gradatlas.app.cli import main
from gradatlas.errors import UserInputError
from gradatlas.record import OUTCOME_ORDER, OUTCOMES, RecordedOutcome, TrialRecord
from gradatlas.reports.load import experiment_from_records
from gradatlas.reports.stats import wilson

# Levels written in an order the alphabet disagrees with: "d10" < "d2" and "relu" < "sigmoid" as
# strings, so a table in suite order is visibly not one sorted by label.
SUITE = """\
name: results-test
description: Two depths and two activations on digits, levels in a non-alphabetical order.
dataset: {name: digits}
model: {family: mlp, width: 16}
grid:
  depth: [2, 10]
  activation: [sigmoid, relu]
seeds: 2
train: {steps: 40, batch_size: 64, optimizer: sgd, lr: 0.1, eval_every: 20}
instrument: {every: 5, max_points: 50, probe_batch: 64}
outcomes: {target_accuracy: 0.3}
"""
NAME = "results-test"
SUFFIXES = ("", "_lo", "_hi")  # rate, Wilson low, Wilson high


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """8 real trials in ``ROOT/runs/mlflow.db`` (the CLI's default place when run in ROOT),
    then the first two trials again with ``force``: two older finished runs to set aside."""
    from gradatlas.runners.sweep import run_suite
    from gradatlas.suites import load_suite
    from tests.conftest import new_store

    root = tmp_path_factory.mktemp("results-store")
    suite_path = root / "results-test.yaml"
    suite_path.write_text(SUITE)
    uri = new_store(root / "runs" / "mlflow.db")
    suite = load_suite(str(suite_path))
    run_suite(suite, uri, accelerator="cpu", stream=io.StringIO())
    forced = run_suite(suite, uri, accelerator="cpu", force=True, limit=2, stream=io.StringIO())
    assert forced.ran == 2
    return {
        "uri": uri,
        "root": root,
        "suite": str(suite_path),
        "trial_ids": [t.trial_id for t in suite.trials],
    }


@pytest.fixture(scope="module")
def table(store: dict[str, Any]) -> pd.DataFrame:
    return gradatlas.results(store["suite"], tracking_uri=store["uri"])


def newest_runs(uri: str) -> tuple[dict[str, Any], int]:
    """trial id -> its newest finished trial run, and how many finished trial runs there are,
    straight from MLflow (written against docs/record.md, not through gradatlas's loader)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(NAME)
    runs = client.search_runs(
        [exp.experiment_id],
        "tags.`gradatlas.kind` = 'trial' and attributes.status = 'FINISHED'",
        max_results=1000,
    )
    newest: dict[str, Any] = {}
    for run in runs:
        tid = run.data.tags["gradatlas.trial_id"]
        if tid not in newest or run.info.start_time > newest[tid].info.start_time:
            newest[tid] = run
    return newest, len(runs)


# -- the table -----------------------------------------------------------------------------------
def test_one_row_per_trial_from_its_newest_finished_run(store, table):
    newest, finished = newest_runs(store["uri"])
    assert finished == 10 and len(newest) == 8
    assert len(table) == 8 and table["trial_id"].is_unique
    assert set(table["trial_id"]) == set(store["trial_ids"]) == set(newest)
    for row in table.itertuples():
        run = newest[row.trial_id]
        assert row.run_id == run.info.run_id
        assert row.outcome == run.data.tags["gradatlas.outcome"]
        assert row.cell_id == run.data.tags["gradatlas.cell_id"]
        assert row.seed == int(run.data.tags["gradatlas.seed"])
        assert row.start_time == pd.Timestamp(run.info.start_time, unit="ms", tz="UTC")
        assert row.end_time == pd.Timestamp(run.info.end_time, unit="ms", tz="UTC")
        assert row.test_acc == pytest.approx(run.data.metrics["test_acc"])
        assert row.depth == run.data.params["factor.depth"]
    assert table.attrs == {"experiment": NAME, "tracking_uri": store["uri"], "set_aside": 2}


def test_columns_and_their_types(table):
    cols = list(table.columns)
    assert cols[:6] == ["depth", "activation", "outcome", "reason", "seed", "cell"]
    assert cols[-5:] == ["trial_id", "cell_id", "run_id", "start_time", "end_time"]
    assert {"test_acc", "final_val_acc", "steps_to_target", "initial_loss"} <= set(cols)
    # Factors: ordered categoricals in the suite's order, not the alphabet's.
    assert list(table["depth"].cat.categories) == ["d2", "d10"]
    assert list(table["activation"].cat.categories) == ["sigmoid", "relu"]
    assert table["depth"].cat.ordered and table["activation"].cat.ordered
    assert (table["depth"] < "d10").sum() == 4  # comparisons follow the level order
    # Rows in grid order: depth, then activation, then seed.
    assert list(table["cell"]) == [
        f"{d}-{a}" for d in ("d2", "d10") for a in ("sigmoid", "relu") for _ in (0, 1)
    ]
    assert list(table["seed"]) == [0, 1] * 4 and str(table["seed"].dtype) == "Int64"
    # Outcome: every label of the record contract, in its order, observed or not.
    assert list(table["outcome"].cat.categories) == list(OUTCOME_ORDER)
    assert table["outcome"].cat.ordered and set(table["outcome"]) <= set(OUTCOMES)
    for col in ("start_time", "end_time"):  # the unit (ns, us) is pandas's choice
        dtype = table[col].dtype
        assert isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"
    assert table["test_acc"].dtype == float and table["test_acc"].between(0, 1).all()


def test_the_name_resolves_as_the_report_resolves_it(store, table, monkeypatch):
    """The suite path, the experiment name with $MLFLOW_TRACKING_URI, and the CLI's default
    store (./runs/mlflow.db) all give the same table."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    pd.testing.assert_frame_equal(gradatlas.results(NAME), table)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(store["root"])
    pd.testing.assert_frame_equal(gradatlas.results(NAME), table)


def test_numbered_levels_sort_by_value_without_a_suite_order():
    """Records with no sweep run to give the suite's order: ``d3`` still comes before ``d20``."""
    entries = []
    for i, (depth, outcome) in enumerate(
        [("d20", "exploded"), ("d3", "converged"), ("d20", "vanished"), ("d3", "converged")]
    ):
        record = TrialRecord(
            trial_id=f"t{i}",
            cell_id=depth,
            cell=depth,
            seed=i // 2,
            factors={"depth": depth},
            outcome=RecordedOutcome(label=outcome),
            summary={"test_acc": 0.5},
        )
        entries.append(({"run_id": f"r{i}", "start_time": 1000 + i, "end_time": 2000 + i}, record))
    df = dataframe.results_frame(experiment_from_records(entries, name="mem"))
    assert list(df["depth"].cat.categories) == ["d3", "d20"]
    assert list(df["depth"]) == ["d3", "d3", "d20", "d20"]
    r = gradatlas.rates(df, by="depth")
    assert list(r.index) == ["d3", "d20"]
    assert list(r["converged"]) == [1.0, 0.0] and list(r["exploded"]) == [0.0, 0.5]


# -- rates ---------------------------------------------------------------------------------------
def test_rates_are_counts_over_n_with_wilson_intervals(table):
    r = gradatlas.rates(table, by=["depth", "activation"])
    assert r.index.names == ["depth", "activation"]
    assert list(r.index) == [(d, a) for d in ("d2", "d10") for a in ("sigmoid", "relu")]
    assert list(r.columns) == ["n"] + [f"{o}{s}" for o in OUTCOMES for s in SUFFIXES]
    for (depth, act), row in r.iterrows():
        labels = [
            str(o)
            for d, a, o in zip(table["depth"], table["activation"], table["outcome"], strict=True)
            if (d, a) == (depth, act)
        ]
        assert row["n"] == len(labels) == 2
        for outcome in OUTCOMES:
            k = labels.count(outcome)
            lo, hi = wilson(k, len(labels))
            assert row[outcome] == k / len(labels)
            assert (row[f"{outcome}_lo"], row[f"{outcome}_hi"]) == (float(lo), float(hi))
    np.testing.assert_allclose(r[list(OUTCOMES)].sum(axis=1), 1.0)
    # The README's one-liner shape, and one factor, and all trials at once.
    one = gradatlas.rates(table, by="depth")[["n", "exploded", "exploded_lo", "exploded_hi"]]
    assert list(one.index) == ["d2", "d10"] and list(one["n"]) == [4, 4]
    overall = gradatlas.rates(table, by=[])
    assert list(overall["n"]) == [8]


def test_rates_take_chosen_outcomes_and_refuse_unknown_names(table):
    r = gradatlas.rates(table, by="activation", outcomes=["converged", "probe"])
    assert list(r.columns) == ["n"] + [f"{o}{s}" for o in ("converged", "probe") for s in SUFFIXES]
    assert (r["probe"] == 0).all() and (r["probe_lo"] == 0).all()
    with pytest.raises(ValueError, match="unknown outcome 'explode'"):
        gradatlas.rates(table, by="depth", outcomes=["explode"])
    with pytest.raises(KeyError, match="no column 'width'"):
        gradatlas.rates(table, by=["width"])


# -- export --------------------------------------------------------------------------------------
def test_export_csv_round_trips_and_defaults_to_runs_exports(store, table, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(store["root"])
    assert main(["export", NAME]) == 0
    path = (store["root"] / "runs" / "exports" / f"{NAME}.csv").resolve()
    assert f"8 trials -> {path}" in capsys.readouterr().out
    back = pd.read_csv(path, dtype={c: str for c in ("trial_id", "cell_id", "run_id")})
    assert list(back.columns) == list(table.columns)
    for col in ("depth", "activation", "outcome", "cell", "trial_id", "cell_id", "run_id"):
        assert list(back[col]) == [str(v) for v in table[col]], col
    assert list(back["seed"]) == list(table["seed"])
    np.testing.assert_allclose(back["test_acc"], table["test_acc"])
    assert list(pd.to_datetime(back["start_time"])) == list(table["start_time"])
    assert not list(path.parent.glob("*.tmp"))


def test_export_parquet_keeps_the_categoricals(store, table, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "table.parquet"
    # The format follows the suffix of --out when --format is not given.
    assert main(["export", store["suite"], "--tracking-uri", store["uri"], "--out", str(out)]) == 0
    back = pd.read_parquet(out)
    pd.testing.assert_frame_equal(back, table, check_dtype=True)
    assert list(back["depth"].cat.categories) == ["d2", "d10"] and back["depth"].cat.ordered


def test_export_without_a_parquet_engine_says_which_package(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dataframe, "PARQUET_ENGINES", ("gradatlas_no_such_engine",))
    out = tmp_path / "t.parquet"
    args = ["export", NAME, "--format", "parquet", "--out", str(out), "--tracking-uri"]
    assert main([*args, store["uri"]]) == 2
    assert "needs the pyarrow package" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_export_of_a_bad_name_or_store_exits_2_and_writes_nothing(store, tmp_path, capsys):
    out = tmp_path / "out" / "t.csv"
    code = main(["export", "no-such-suite", "--tracking-uri", store["uri"], "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "error: no MLflow experiment named 'no-such-suite'" in err
    assert "not a suite" in err
    missing = tmp_path / "nowhere" / "mlflow.db"
    code = main(["export", NAME, "--tracking-uri", f"sqlite:///{missing}", "--out", str(out)])
    assert code == 2 and f"no MLflow store at {missing}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no output folder, no store created
    with pytest.raises(UserInputError, match="no MLflow experiment named 'no-such-suite'"):
        gradatlas.results("no-such-suite", tracking_uri=store["uri"])


# -- import cost ---------------------------------------------------------------------------------
def test_import_gradatlas_stays_light_and_the_api_is_the_functions():
    code = (
        "import sys, gradatlas\n"
        "heavy = [m for m in ('pandas', 'mlflow', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert {'results', 'rates'} <= set(dir(gradatlas))\n"
        "import gradatlas.app.results\n"
        "assert callable(gradatlas.results) and callable(gradatlas.rates)\n"
        "assert gradatlas.results is gradatlas.app.results.results\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path.cwd()
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
