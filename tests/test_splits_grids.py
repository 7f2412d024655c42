"""Three splits and the data seed, sub-grids (``grids:``) and probe-only trials (``steps: 0``)."""

from __future__ import annotations

from typing import Any

import pytest

from gradatlas.errors import SuiteErrors
from gradatlas.record import PROBE
from gradatlas.runners.trial import run_trials, set_threads
from gradatlas.suites.expand import expand_suite


def suite(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "t",
        "dataset": {"name": "digits"},
        "model": {"family": "mlp", "width": 16},
        "train": {"steps": 20, "batch_size": 64},
        "seeds": 1,
    }
    return base | extra


def expand(data: dict[str, Any]) -> Any:
    return expand_suite(data, source="test.yaml")


# -- the data seed ---------------------------------------------------------------------------
def test_seed_default_is_the_datasets_own_and_lands_in_the_config() -> None:
    mnist1d = expand(suite(dataset={"name": "mnist1d", "seed": "default"}))
    assert mnist1d.trials[0].config["dataset"]["seed"] == 42  # mnist1d's generator default
    digits = expand(suite(dataset={"name": "digits", "seed": "default"}))
    assert digits.trials[0].config["dataset"]["seed"] == 0
    explicit = expand(suite(dataset={"name": "mnist1d", "seed": 42}))
    assert explicit.trials[0].trial_id == mnist1d.trials[0].trial_id  # the same data, same id
    with pytest.raises(SuiteErrors, match=r"dataset\.seed"):
        expand(suite(dataset={"name": "digits", "seed": "defualt"}))


def test_a_trial_is_scored_on_the_test_split_after_training() -> None:
    set_threads(1)
    (result,) = run_trials(expand(suite()).trials)
    s = result.summary
    assert 0.0 <= s["test_acc"] <= 1.0 and s["test_loss"] > 0
    assert s["generalization_gap"] == pytest.approx(s["final_train_acc"] - s["test_acc"])
    assert s["test_acc"] != s["final_val_acc"] or s["test_loss"] != s["final_val_loss"]


# -- sub-grids -------------------------------------------------------------------------------
def test_sub_grids_are_a_union_with_shared_cells_run_once() -> None:
    data = suite(
        grids=[
            {"depth": [2, 4], "init": ["kaiming_normal", "xavier_normal"]},
            {"depth": [2], "activation": ["relu", "tanh"]},  # d2-kaiming-relu is in both
        ],
        seeds=2,
    )
    trials = expand(data).trials
    assert len(trials) == (4 + 2 - 1) * 2
    for t in trials:  # every trial is labelled on every factor the plan varies
        assert set(t.factors) == {"depth", "init", "activation"}
    tanh = [t for t in trials if t.factors["activation"] == "tanh"]
    assert {t.factors["init"] for t in tanh} == {"kaiming_normal"}  # the fixed setting
    assert len({t.trial_id for t in trials}) == len(trials)


def test_sub_grid_errors_name_the_sub_grid() -> None:
    with pytest.raises(SuiteErrors) as info:
        expand(suite(grids=[{"depth": [2]}, {"depth": [2, -1]}]))
    assert "test.yaml: grids[1].depth[1]" in str(info.value)
    with pytest.raises(SuiteErrors) as info:
        expand(suite(grids=[{"depht": [2]}]))
    assert "grids[0].depht" in str(info.value)


def test_sub_grids_count_against_the_plan_limit() -> None:
    data = suite(grids=[{"depth": [2, 3, 4]}, {"width": [8, 16, 32]}], seeds=2)
    data["limits"] = {"max_trials": 10}
    with pytest.raises(SuiteErrors, match="6 cells x 2 seeds = 12 trials"):
        expand(data)


def test_grid_and_sub_grids_together() -> None:
    trials = expand(suite(grid={"depth": [2, 3]}, grids=[{"width": [8]}])).trials
    assert sorted(t.cell for t in trials) == sorted(["d2-w16", "d3-w16", "d4-w8"])


# -- probe-only ------------------------------------------------------------------------------
def test_steps_zero_probes_at_init_and_trains_nothing() -> None:
    set_threads(1)
    trials = expand(suite(train={"steps": 0}, grid={"depth": [3]}, seeds=2)).trials
    results = run_trials(trials)
    for r in results:
        assert r.outcome.label == PROBE and r.curves == {}
        assert len(r.profiles["init"]["grad_norm"]) == 4  # 3 hidden layers + the output layer
        assert r.summary["init_grad_ratio"] > 0 and "test_acc" not in r.summary
    assert results[0].profiles != results[1].profiles  # each seed its own init
