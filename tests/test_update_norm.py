"""Claim C7's measure: the step the optimizer applied, ||theta_{t+1} - theta_t||, every step, and
its coefficient of variation over the run (``update_cv``), not the loss's noise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from gradatlas.record import TrialRecord, trial_metrics
from gradatlas.runners.trial import run_trial, run_trials, set_threads, update_cv
from gradatlas.suites import expand_suite
from gradatlas.suites.claims import METRICS, check_claims

BASE = {
    "name": "c7",
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "width": 8, "depth": 2},
    "train": {"steps": 15, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "eval_every": 15},
    "instrument": {"every": 4, "max_points": 100, "probe_batch": 32},
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    set_threads(1)
    yield
    torch.set_num_threads(before)


def _trials(**over):
    return expand_suite(BASE | over, source="c7.yaml").trials


def test_update_cv_by_hand():
    assert update_cv(np.array([2.0, 2.0, 2.0])) == 0.0
    assert update_cv(np.array([1.0, 2.0, 3.0])) == pytest.approx(math.sqrt(2 / 3) / 2)
    # non-finite steps are left out; fewer than 3 finite ones, or no movement at all: NaN
    assert update_cv(np.array([1.0, np.nan, 2.0, np.inf, 3.0])) == pytest.approx(
        math.sqrt(2 / 3) / 2
    )
    assert math.isnan(update_cv(np.array([1.0, np.nan, 1.0])))
    assert math.isnan(update_cv(np.array([0.0, 0.0, 0.0])))


def test_plain_sgd_steps_lr_times_the_gradient():
    """SGD without momentum or decay applies theta_{t+1} - theta_t = -lr g_t: the recorded
    update norm is lr x the recorded (raw, unclipped) gradient norm at every step."""
    (trial,) = _trials()
    r = run_trial(trial, accelerator="cpu")
    train = r.curves["train"]
    update, grad = np.array(train["update_norm"]), np.array(train["grad_norm"])
    assert len(update) == 15 and np.all(update > 0)
    np.testing.assert_allclose(update, 0.05 * grad, rtol=1e-5)
    assert r.summary["update_cv"] == pytest.approx(np.std(update) / np.mean(update), rel=1e-9)
    assert r.summary["max_grad_norm"] == pytest.approx(grad.max(), rel=1e-9)


def test_the_update_is_what_the_optimizer_applied_after_clipping():
    """Clipped to norm 0.01 (far below the raw norm), every SGD step is lr x 0.01 long: the
    update norm follows the clipped gradient, the gradient norm curve stays raw."""
    (trial,) = _trials(train=BASE["train"] | {"grad_clip": 0.01})
    train = run_trial(trial, accelerator="cpu").curves["train"]
    assert min(train["grad_norm"]) > 0.01
    np.testing.assert_allclose(train["update_norm"], 0.05 * 0.01, rtol=1e-4)


def test_stacked_members_record_their_own_update_norms():
    """Batched seeds: each member's update norm is its unbatched trial's (float64)."""
    trials = _trials(seeds=2, train=BASE["train"] | {"optimizer": "rmsprop", "lr": 0.01,
                                                     "precision": "64"})  # fmt: skip
    together = run_trials(trials, accelerator="cpu")
    for trial, member in zip(trials, together, strict=True):
        alone = run_trial(trial, accelerator="cpu")
        np.testing.assert_allclose(
            member.curves["train"]["update_norm"], alone.curves["train"]["update_norm"],
            rtol=1e-9,
        )  # fmt: skip
        assert member.summary["update_cv"] == pytest.approx(alone.summary["update_cv"], rel=1e-9)
    a, b = (t.curves["train"]["update_norm"] for t in together)
    assert a != b


def test_the_record_carries_the_curve_and_old_records_still_load():
    record = TrialRecord(
        summary={"update_cv": 0.25, "max_grad_norm": 3.0},
        curves={"train": {"step": [0, 1], "loss": [2.0, 1.0], "update_norm": [0.1, None]}},
    )
    metrics = trial_metrics(record)
    assert ("update_norm", 0.1, 0) in metrics and ("update_cv", 0.25, 0) in metrics
    assert not [m for m in metrics if m[0] == "update_norm" and m[2] == 1]  # null: no point
    old = TrialRecord.from_json({"schema": 1, "summary": {"initial_loss": 2.3},
                                 "curves": {"train": {"step": [0], "loss": [2.3]}}})  # fmt: skip
    assert "update_cv" not in old.summary
    assert [m[0] for m in trial_metrics(old)] == ["initial_loss", "train_loss"]


def test_claims_can_compare_update_cv_and_max_grad_norm():
    from gradatlas.reports.claimeval import trial_values

    assert METRICS["update_cv"].kind == "continuous" and METRICS["update_cv"].unit == "CV"
    assert METRICS["max_grad_norm"].log10 and METRICS["max_grad_norm"].unit == "log10 norm"
    claim = {
        "id": "C7",
        "claim": "rmsprop steadies the step",
        "metric": "update_cv",
        "a": {"optimizer": "rmsprop"},
        "b": {"optimizer": "sgd"},
        "predict": "less",
    }
    assert check_claims([claim], {"optimizer": ["sgd", "rmsprop"]}, [0, 1]) == []
    # read from the summary column; a record written before the metric (NaN there) has none
    t = pd.DataFrame({"update_cv": [0.5, np.nan], "max_grad_norm": [100.0, 1.0]})
    values = trial_values(None, t, METRICS["update_cv"]).tolist()
    assert values[0] == 0.5 and math.isnan(values[1])
    assert trial_values(None, t, METRICS["max_grad_norm"]).tolist() == [2.0, 0.0]
