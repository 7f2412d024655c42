"""The tuning package's parts, each on its own, without a sweep: the plan's runs of a study
trial, the pruning policy as a pure function, the Optuna storage's repairs (real SQLite
studies), and a study search asked and told by hand (a real study; run values written out).

The end-to-end behaviour (a tuned sweep, resume after a kill, pruning on real runs) is
``test_tuning.py``'s; here each seam is checked where it is cut.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gradatlas.errors import UserInputError
from gradatlas.record import TUNING_NUMBER, TUNING_PARAMS
from gradatlas.runners.executor import EarlyStop
from gradatlas.runners.tuning import storage
from gradatlas.runners.tuning.plan import Group, TuningPlan, slot, tuning_plan, tuning_runs
from gradatlas.runners.tuning.pruning import COMPLETE, PRUNED_STATE, Finished, early_stops
from gradatlas.runners.tuning.search import RunValue, StudySearch, make_sampler, sampler_seed
from gradatlas.suites import expand_suite
from gradatlas.suites.schema import TunePruner

SUITE = {
    "name": "parts",
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "width": 16},
    "grid": {"depth": [2, 3]},
    "seeds": 1,
    "train": {"steps": 30, "batch_size": 64, "eval_every": 10},
    "tune": {
        "params": {"lr": {"low": 1e-4, "high": 1.0, "log": True}},
        "trials": 3,
        "steps": 20,
        "seeds": [1, 2],
        "pruner": {"name": "median", "startup_trials": 1, "warmup_steps": 0},
    },
}


@pytest.fixture
def plan() -> TuningPlan:
    return tuning_plan(expand_suite(json.loads(json.dumps(SUITE)), source="parts.yaml"))


# -- the plan -------------------------------------------------------------------------------------
def test_a_study_trial_is_every_cell_on_every_tuning_seed(plan: TuningPlan) -> None:
    (group,) = plan.groups  # per: [] is one study
    assert group.label == "all" and plan.study_name(group) == "parts/all"
    assert plan.study_name(group, horizon=True) == "parts/all@full"
    runs = tuning_runs(plan, group, {"lr": 0.05})
    assert [key for key, _ in runs] == [slot(c, s) for c in group.cells for s in (1, 2)]
    assert {(t.spec.seed, t.spec.optim.lr, t.spec.train.steps) for _, t in runs} == {
        (1, 0.05, 20),
        (2, 0.05, 20),
    }
    full = tuning_runs(plan, group, {"lr": 0.05}, full=True)  # a horizon check's runs
    assert {t.spec.train.steps for _, t in full} == {30}
    assert len({t.trial_id for _, t in runs + full}) == 8
    # The same values are the same trial ids: what a resumed study finds its records by.
    again = [t.trial_id for _, t in tuning_runs(plan, group, {"lr": 0.05})]
    assert again == [t.trial_id for _, t in runs]
    assert plan.runs == 3 * 2 * 2 and not plan.horizon_groups  # horizon_check 0


# -- the pruning policy ---------------------------------------------------------------------------
def test_early_stops_give_each_run_its_slots_thresholds(plan: TuningPlan) -> None:
    runs = tuning_runs(plan, plan.groups[0], {"lr": 0.01})
    (a, ta), (b, tb) = runs[:2]
    finished = [
        Finished(COMPLETE, {a: {10: 0.5, 20: 0.8}, b: {10: 0.3, 20: 0.6}}),
        Finished(COMPLETE, {a: {10: 0.7, 20: 0.9}, b: {10: 0.1, 20: 0.5}}),
        Finished(PRUNED_STATE, {a: {10: 0.0}}),  # pruned trials do not move a median
    ]
    median = TunePruner(name="median", startup_trials=2)
    rules = early_stops(median, "val_acc", True, finished, runs[:2])
    # Each run against its own slot's median; never at the budget's last step (20).
    assert rules == {
        ta.trial_id: EarlyStop("val_acc", True, {10: pytest.approx(0.6)}),
        tb.trial_id: EarlyStop("val_acc", True, {10: pytest.approx(0.2)}),
    }
    assert rules[ta.trial_id].worse(10, {"val_acc": 0.55})
    assert not rules[tb.trial_id].worse(10, {"val_acc": 0.55})
    # A run whose slot no finished trial has, or a pruner that waits for more, gets no rule.
    assert early_stops(median, "val_acc", True, finished, runs[2:]) == {}
    waits = TunePruner(name="median", startup_trials=3)
    assert early_stops(waits, "val_acc", True, finished, runs) == {}
    assert early_stops(TunePruner(name="none"), "val_acc", True, finished, runs) == {}


# -- the Optuna storage ---------------------------------------------------------------------------
def _study(tmp_path: Path, name: str = "parts/all") -> Any:
    rdb = storage.open_storage(f"sqlite:///{tmp_path / 'optuna' / 'optuna.db'}")
    return storage.load_study(rdb, name, maximize=True)


def test_recover_requeues_a_dead_drivers_trial_once(tmp_path: Path) -> None:
    from optuna.distributions import FloatDistribution

    study = _study(tmp_path)
    dead = study.ask({"lr": FloatDistribution(1e-4, 1.0, log=True)})  # left RUNNING
    assert storage.recover(study) == 1
    failed, waiting = study.get_trials(deepcopy=False)
    assert failed.number == dead.number and failed.state.name == "FAIL"
    assert waiting.state.name == "WAITING"
    assert waiting.user_attrs[storage.REQUEUED_FROM] == dead.number
    assert waiting.system_attrs["fixed_params"] == dead.params  # asked again at its values
    # A driver killed between the enqueue and the fail repeats both: the values stay queued once.
    storage.requeue(study, dead.number, dead.params)
    assert len(study.get_trials(deepcopy=False)) == 2
    assert storage.recover(study) == 0
    # The next ask takes the queued values.
    assert study.ask().suggest_float("lr", 1e-4, 1.0, log=True) == dead.params["lr"]


def test_a_study_made_for_another_tune_block_is_refused(tmp_path: Path) -> None:
    study = _study(tmp_path)
    url = "postgresql://tuner:secret@db.example:5432/optuna"
    storage.check_fingerprint(study, "abc", {"depth": "d2"}, url, "parts.yaml")
    storage.check_fingerprint(study, "abc", {"depth": "d2"}, url, "parts.yaml")  # the same: fine
    assert study.user_attrs[storage.GROUP] == {"depth": "d2"}
    with pytest.raises(UserInputError) as info:
        storage.check_fingerprint(study, "xyz", {"depth": "d2"}, url, "parts.yaml")
    text = info.value.render()
    assert "parts.yaml" in text and "'parts/all'" in text and "made for another tune block" in text
    assert "secret" not in text and "tuner:***@db.example:5432" in text


def test_default_storage_sits_beside_a_sqlite_store_only(tmp_path: Path) -> None:
    # ``RecordStore.local_dir``: the SQLite file's folder, None for a server (conformance tests)
    assert (
        storage.default_storage(tmp_path / "runs") == f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}"
    )
    assert storage.default_storage(None) is None


# -- the study search -----------------------------------------------------------------------------
class _Tuner:
    """The part of a tuner a search uses (``search.Host``): the plan, how many trials a study
    may have in flight, and the runs' curves (here all in hand)."""

    def __init__(self, plan: TuningPlan):
        self.plan, self.parallel = plan, 1
        self.stable: list[dict[str, Any]] = []

    def curve(self, value: RunValue, metric: str) -> dict[int, float]:
        return value.curves.get(metric, {})

    def save_stable(self, group: Group, result: dict[str, Any]) -> None:
        self.stable.append(result)


def _back(job: Any, accs: list[float], stopped_at: int | None = None) -> None:
    """The job's runs as if trained: final accuracy ``accs[i]``, a curve rising to it."""
    for (_, trial), acc in zip(job.runs, accs, strict=True):
        curve = {10: acc - 0.1} if stopped_at else {10: acc - 0.1, 20: acc}
        metrics = {"final_val_acc": acc}
        job.done[trial.trial_id] = RunValue(
            trial.trial_id, "converged", metrics, {"val_acc": curve}, stopped_at
        )


def test_a_search_asks_tells_prunes_and_abandons(tmp_path: Path, plan: TuningPlan) -> None:
    group = plan.groups[0]
    study = _study(tmp_path)
    study.sampler = make_sampler(plan.tune, sampler_seed(plan, group), len(study.trials))
    search = StudySearch(_Tuner(plan), group, study)
    first = search.ask()
    assert not search.wants()  # one trial in flight per worker
    assert first.rules == {}  # nothing finished yet: nothing to compare with
    assert first.tags[TUNING_NUMBER] == "0"
    assert json.loads(first.tags[TUNING_PARAMS]) == first.values
    _back(first, [0.5, 0.7, 0.6, 0.8])
    assert search.take(first) == "val_acc 0.65"
    told = study.get_trials(deepcopy=False)[0]
    assert told.state.name == "COMPLETE" and told.value == pytest.approx(0.65)
    assert told.intermediate_values == {10: pytest.approx(0.55), 20: pytest.approx(0.65)}

    second = search.ask()  # startup_trials 1: the first trial's curves are the thresholds
    assert [second.rules[t.trial_id].thresholds for _, t in second.runs] == [
        {10: pytest.approx(v)} for v in (0.4, 0.6, 0.5, 0.7)
    ]
    _back(second, [0.2, 0.2, 0.2, 0.2], stopped_at=10)
    assert search.take(second) == "pruned at step 10"
    assert study.get_trials(deepcopy=False)[1].state.name == "PRUNED"

    third = search.ask()
    search.abandon()  # the sweep stopped with it in flight: failed, its values asked again
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    assert states == ["COMPLETE", "PRUNED", "FAIL", "WAITING"]
    reopened = StudySearch(_Tuner(plan), group, study)
    assert reopened.counts == {"complete": 1, "pruned": 1, "requeued": 1, "waiting": 1}
    assert reopened.done_count == 2 and not reopened.complete
    assert reopened.ask().values == third.values  # the requeued values come first
    assert reopened.best() == (first.values, pytest.approx(0.65), 0)
