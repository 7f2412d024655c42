"""A finished tuned suite reads as finished: the report's plan status and `gradatlas run` agree.

The plan status re-expands the suite a sweep archived; a tuned cell's trials are not the suite's
cells as written but those cells at their study's best values (and, with ``second_best``, at its
second-best too). Counted at the untuned values, a complete `make claims` opened its report with
"UNFINISHED: 312 of 472 planned trials finished; 160 pending" while `gradatlas run` answered that
every trial was recorded. Here a tiny tuned suite (3 cells, 2 of them tuned, a few steps) runs
through the CLI as a user runs it; its report must say nothing is missing, and a second run must
say everything is recorded, training nothing.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from tests.conftest import new_store, run_cli

pytestmark = pytest.mark.e2e


def tiny_suite(second_best: bool) -> dict:
    tune = {
        "params": {"lr": {"low": 1e-3, "high": 0.5, "log": True}},
        "per": ["optimizer"],
        "where": {"width": 16},  # sgd at width 8 runs as written
        "trials": 3,
        "steps": 10,
        "pruner": {"name": "none"},
        "sampler": {"name": "random", "seed": 0},
    }
    if second_best:
        tune["second_best"] = True
    return {
        "name": "tuned-status",
        "dataset": {"name": "digits"},
        "model": {"family": "mlp", "depth": 2},
        "grid": {"optimizer": ["sgd", "adam"], "width": [8, 16]},
        "exclude": [{"optimizer": "adam", "width": 8}],
        "seeds": 1,
        "train": {"steps": 20, "batch_size": 64, "eval_every": 10},
        "instrument": {"every": 5, "max_points": 50, "probe_batch": 64},
        "tune": tune,
    }


@pytest.mark.parametrize("second_best", [False, True], ids=["best", "second-best"])
def test_a_finished_tuned_suite_reports_finished_and_reruns_nothing(
    tmp_path: Path, second_best: bool
) -> None:
    from gradatlas.reports.load import load_experiment
    from gradatlas.reports.plan_status import Progress, read_plan_status
    from gradatlas.reports.sections import build_document
    from gradatlas.runners.executor import InProcessExecutor
    from gradatlas.runners.sweep import run_suite
    from gradatlas.runners.trial import set_threads
    from gradatlas.suites import load_suite

    path = tmp_path / "tuned-status.yaml"
    path.write_text(yaml.safe_dump(tiny_suite(second_best)), encoding="utf-8")
    store = tmp_path / "runs"  # where `gradatlas run` in tmp_path puts both stores
    uri = new_store(store / "mlflow.db")
    set_threads(1)
    summary = run_suite(
        load_suite(str(path)),
        uri,
        executor=InProcessExecutor(accelerator="cpu", threads=1),
        stream=io.StringIO(),
        optuna_storage=f"sqlite:///{store / 'optuna.db'}",
    )
    trials = len(summary.suite.trials)  # the tuned suite as it ran
    assert summary.tuning.complete and not summary.failures and summary.ran == trials

    exp = load_experiment("tuned-status", uri)
    status = read_plan_status(exp.store, exp)
    # 3 cells at 1 seed; with second_best each tuned cell also runs at its second-best lr
    # (where its study found one distinct enough), so at most 2 trials more.
    assert status is not None and status.complete, status.banner()
    assert status.finished == status.planned == trials, status.banner()
    assert status.planned == 3 if not second_best else 3 <= status.planned <= 5
    assert "re-expanded at the tuned values" in status.source, status.source
    assert status.outside == 0 and not status.unfinished
    doc = build_document(exp, plan=status)
    assert "UNFINISHED" not in doc.subtitle
    assert Progress.title not in [s.title for s in doc.sections]

    # As a user reruns it: the CLI, in the folder whose runs/ holds both stores.
    again = run_cli("run", str(path), cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"All {status.planned} trials of 'tuned-status' are already recorded" in again.stderr
