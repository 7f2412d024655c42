"""The study search: what to train next, and what a result means to the study that asked.

A ``StudySearch`` asks its study's sampler for values, turns them into the runs of one study
trial (a ``Job``: every cell of its group on every tuning seed) with their pruning rules, and
tells the study what the runs scored once they are back. A ``StableLr`` search brackets one
cell's largest stable learning rate the same way, one probe at a time. Separate from the driver
because a search neither runs nor records anything: the driver hands its jobs to the executor
and hands the results back (``take``), so the order in which a study is told its trials, which
fixes what a seeded sampler asks next, is decided in one place, the driver's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gradatlas.record import (
    KIND,
    KIND_TUNING,
    PURPOSE_HORIZON,
    PURPOSE_MAX_STABLE_LR,
    PURPOSE_STUDY,
    STUDY,
    TUNING_GROUP,
    TUNING_GROUP_LEVELS,
    TUNING_NUMBER,
    TUNING_PARAMS,
    TUNING_PURPOSE,
)
from gradatlas.runners.executor import EarlyStop
from gradatlas.runners.tuning.plan import Group, TuningPlan, second_best, slot, tuning_runs
from gradatlas.runners.tuning.pruning import COMPLETE, PRUNED_STATE, Finished, early_stops
from gradatlas.runners.tuning.storage import REQUEUED_FROM, requeue
from gradatlas.suites import Trial
from gradatlas.suites.schema import TuneSection
from gradatlas.suites.tune import tuned_spec

WORST_LOSS = 1e6  # an exploded run's loss in a study's mean: finite, and worse than any real one
EXPANSION = 10.0  # max-stable-lr: the bracket grows by decades until a stable and an exploded lr
EXPLODED = "exploded"
STABLE_ATTR = "gradatlas.max_stable_lr"  # study user attr: the max-stable-lr answers per cell


class Host(Protocol):
    """What a search asks of the tuner that holds it."""

    plan: TuningPlan
    parallel: int  # study trials one study may have in flight (the executor's workers)

    def curve(self, value: RunValue, metric: str) -> dict[int, float]: ...

    def save_stable(self, group: Group, result: dict[str, Any]) -> None: ...


def sampler_seed(plan: TuningPlan, group: Group) -> int:
    """The suite's sampler seed, shifted by a stable hash of the group: groups sample
    differently, and each the same way on every machine and every run."""
    return (plan.tune.sampler.seed + zlib.crc32(group.label.encode())) % 2**32


def make_sampler(tune: TuneSection, seed: int, asked: int) -> Any:
    """The study's sampler. Seeded with ``seed`` plus the trials the study already holds: a
    fresh study samples the same values on every machine, and a resumed one goes on with new
    values instead of repeating its first ones from a restarted generator."""
    import optuna

    if tune.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=(seed + asked) % 2**32)
    # Optuna's 10 random start-up trials would leave a small budget all random.
    return optuna.samplers.TPESampler(
        seed=(seed + asked) % 2**32, n_startup_trials=min(10, max(1, tune.trials // 2))
    )


@dataclass
class RunValue:
    """What the study needs of one finished tuning run, from a fresh result or a record."""

    trial_id: str
    outcome: str
    metrics: dict[str, float]  # summary metrics (final_val_acc, final_val_loss, steps_run, ...)
    curves: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> step -> value
    stopped_at: int | None = None  # the eval step a pruner stopped it at
    run_id: str | None = None  # a recorded run: its curves are read when first needed

    def final(self, metric: str) -> float | None:
        value = self.metrics.get(f"final_{metric}")
        return float(value) if value is not None and math.isfinite(value) else None

    def score(self, metric: str) -> float:
        """This run's share of the objective: its final value, or the worst for an exploded
        run or one without a finite value."""
        value = self.final(metric)
        worst = 0.0 if metric == "val_acc" else WORST_LOSS
        if self.outcome == EXPLODED or value is None:
            return worst
        return min(value, WORST_LOSS) if metric == "val_loss" else value


def run_value(result: Any) -> RunValue:
    """From a ``runners.trial.TrialResult``."""
    ev = result.curves.get("eval") or {}
    steps = ev.get("step") or []
    curves = {
        k: {int(s): float(v) for s, v in zip(steps, vals, strict=True) if v is not None}
        for k, vals in ev.items()
        if k != "step"
    }
    return RunValue(
        trial_id=result.trial.trial_id,
        outcome=result.outcome.label,
        metrics={k: float(v) for k, v in result.summary.items() if v is not None},
        curves=curves,
        stopped_at=result.extra.get("early_stop_step"),
    )


def run_tags(
    plan: TuningPlan,
    group: Group,
    purpose: str,
    values: Mapping[str, float],
    number: int | None = None,
    study: str | None = None,
) -> dict[str, str]:
    """The tags that make a run a tuning run of ``group``'s study (``study``: its name,
    when not the group's own study)."""
    tags = {
        KIND: KIND_TUNING,
        STUDY: study or plan.study_name(group),
        TUNING_GROUP: group.label,
        TUNING_GROUP_LEVELS: json.dumps(group.levels, sort_keys=True),
        TUNING_PARAMS: json.dumps(dict(values), sort_keys=True),
        TUNING_PURPOSE: purpose,
    }
    if number is not None:
        tags[TUNING_NUMBER] = str(number)
    return tags


@dataclass(eq=False)  # a job is itself: hashed by identity
class Job:
    """Runs that answer one question: a study trial, or one max-stable-lr probe."""

    search: StudySearch | StableLr
    runs: list[tuple[str, Trial]]  # (slot, trial)
    values: dict[str, float]
    tags: dict[str, str]
    rules: dict[str, EarlyStop] = field(default_factory=dict)
    optuna_trial: Any = None
    done: dict[str, RunValue] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # trial id -> its error
    lost: bool = False
    reused: int = 0
    taken: bool = False  # complete and handed on to be told
    told: bool = False

    @property
    def trial_ids(self) -> list[str]:
        return list(dict.fromkeys(t.trial_id for _, t in self.runs))

    @property
    def errors(self) -> list[str]:
        return list(self.failed.values())

    @property
    def complete(self) -> bool:
        """Every run is back (or failed), or a worker was lost with some of them."""
        return self.lost or set(self.trial_ids) <= set(self.done) | set(self.failed)


class StudySearch:
    """One group's study: asks trials of the sampler, tells it what they scored. A
    ``horizon`` study re-tunes the group at its cells' own budget (``tune.horizon_check``)."""

    def __init__(
        self,
        host: Host,
        group: Group,
        study: Any,
        run_id: str | None = None,
        horizon: bool = False,
    ):
        from optuna.trial import TrialState

        self.host, self.group, self.study, self.horizon = host, group, study, horizon
        self.plan = host.plan
        self.name = self.plan.study_name(group, horizon)
        self.purpose = PURPOSE_HORIZON if horizon else PURPOSE_STUDY
        self.run_id = run_id  # the study's MLflow run
        self.in_flight: dict[int, Job] = {}
        self.failures = 0  # in this invocation; past max(3, trials) the study stops asking
        self.first_error = ""
        self.maximize = self.plan.tune.objective == "val_acc"
        self.finished: list[Finished] = []
        self.counts: Counter = Counter()
        trials = study.get_trials(deepcopy=False)
        requeued = {t.user_attrs.get(REQUEUED_FROM) for t in trials}
        for t in trials:  # a failed trial whose values were asked again was interrupted
            again = t.state == TrialState.FAIL and t.number in requeued
            self.counts["requeued" if again else t.state.name.lower()] += 1
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                state = COMPLETE if t.state == TrialState.COMPLETE else PRUNED_STATE
                self.finished.append(Finished(state, slots_from_attr(t.user_attrs.get("slots"))))

    @property
    def done_count(self) -> int:
        return len(self.finished)

    @property
    def complete(self) -> bool:
        return self.done_count >= self.plan.tune.trials

    @property
    def gave_up(self) -> bool:
        return self.failures >= max(3, self.plan.tune.trials)

    def wants(self) -> bool:
        return (
            not self.gave_up
            and self.done_count + len(self.in_flight) < self.plan.tune.trials
            and len(self.in_flight) < self.host.parallel
        )

    def ask(self) -> Job:
        trial = self.study.ask()
        params = self.plan.tune.params
        values = {
            n: trial.suggest_float(n, params[n].low, params[n].high, log=params[n].log)
            for n in self.group.params
        }
        runs = tuning_runs(self.plan, self.group, values, full=self.horizon)
        tune = self.plan.tune
        rules = early_stops(tune.pruner, tune.objective, self.maximize, self.finished, runs)
        job = Job(
            self,
            runs,
            values,
            run_tags(self.plan, self.group, self.purpose, values, trial.number, self.name),
            rules,
            optuna_trial=trial,
        )
        self.in_flight[trial.number] = job
        return job

    def take(self, job: Job) -> str:
        """Tell the study what ``job`` scored; returns what happened, for the progress line."""
        from optuna.trial import TrialState

        trial = job.optuna_trial
        del self.in_flight[trial.number]
        metric = self.plan.tune.objective
        if job.lost:
            requeue(self.study, trial.number, job.values)
            self.counts["requeued"] += 1
            return "lost (a worker died); its values are asked again"
        if job.errors:
            self.failures += 1
            self.first_error = self.first_error or job.errors[0]
            trial.set_user_attr("error", job.errors[0][:2000])
            self.study.tell(trial, state=TrialState.FAIL)
            self.counts["fail"] += 1
            return f"failed: {job.errors[0]}"
        values = [job.done[t.trial_id] for _, t in job.runs]
        slots = {key: self.host.curve(job.done[t.trial_id], metric) for key, t in job.runs}
        trial.set_user_attr("slots", {k: sorted(v.items()) for k, v in slots.items()})
        trial.set_user_attr("trial_ids", job.trial_ids)
        for step, value in mean_curve(slots.values()).items():
            trial.report(value, step)
        stopped = [v.stopped_at for v in values if v.stopped_at is not None]
        if stopped:
            self.study.tell(trial, state=TrialState.PRUNED)
            self.finished.append(Finished(PRUNED_STATE, slots))
            self.counts["pruned"] += 1
            return f"pruned at step {min(stopped)}"
        score = float(np.mean([v.score(metric) for v in values]))
        self.study.tell(trial, score)
        self.finished.append(Finished(COMPLETE, slots))
        self.counts["complete"] += 1
        return f"{metric} {score:.4g}"

    def abandon(self) -> None:
        """The sweep stopped: every trial in flight is failed and its values enqueued again."""
        for number, job in list(self.in_flight.items()):
            requeue(self.study, number, job.values)
        self.in_flight.clear()

    def best(self) -> tuple[dict[str, float], float, int] | None:
        """(values, objective, trial number) of the best completed trial, or None."""
        from optuna.trial import TrialState

        if not any(t.state == TrialState.COMPLETE for t in self.study.get_trials(deepcopy=False)):
            return None
        best = self.study.best_trial
        return dict(best.params), float(best.value), int(best.number)

    def completed(self) -> list[tuple[dict[str, float], float, int]]:
        """(values, objective, number) of every completed trial, in trial order."""
        from optuna.trial import TrialState

        return [
            (dict(t.params), float(t.value), int(t.number))
            for t in self.study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE and t.value is not None
        ]

    def second(self) -> tuple[dict[str, float], float, int] | None:
        """(values, objective, number) of the second-best trial (``second_best``), or None."""
        best = self.best()
        if best is None:
            return None
        tune = self.plan.tune
        params = {n: tune.params[n].model_dump() for n in self.group.params}
        return second_best(self.completed(), best[0], params, self.maximize, tune.second_best_ratio)

    def tried(self) -> list[dict[str, Any]]:
        """Every finished trial's values, objective (None: pruned) and state, by trial
        number: the neighbourhood of the best, as the report shows it."""
        from optuna.trial import TrialState

        states = {TrialState.COMPLETE: COMPLETE, TrialState.PRUNED: PRUNED_STATE}
        return [
            {
                "number": int(t.number),
                "values": dict(t.params),
                "objective": float(t.value)
                if t.state == TrialState.COMPLETE and t.value is not None
                else None,
                "state": states[t.state],
            }
            for t in self.study.get_trials(deepcopy=False)
            if t.state in states
        ]


class StableLr:
    """The largest learning rate in [low, high] at which a cell does not explode.

    From the cell's own lr (clamped into the range) the bracket grows by decades (x10 while
    stable, /10 while exploding) until one stable and one exploded lr enclose the edge, then
    ``steps`` bisections on a log scale narrow it. The answer is the largest stable lr tried;
    ``status`` says ``bracketed``, ``at_high`` (even ``high`` is stable) or ``below_low``
    (even ``low`` explodes: no answer). Each probe is a tuning run with its own trial id, so a
    resumed search replays its recorded probes without training them again."""

    def __init__(self, host: Host, group: Group, cell: Trial):
        settings = host.plan.tune.max_stable_lr
        assert settings is not None
        self.host, self.group, self.cell, self.settings = host, group, cell, settings
        self.stable: float | None = None  # largest stable lr so far
        self.unstable: float | None = None  # smallest exploded lr so far
        self.bisections = 0
        self.probes = 0
        self.next: float | None = min(max(cell.spec.optim.lr, settings.low), settings.high)
        self.in_flight: Job | None = None
        self.result: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return self.result is not None

    def wants(self) -> bool:
        return self.result is None and self.in_flight is None and self.next is not None

    def ask(self) -> Job:
        lr = float(self.next)  # type: ignore[arg-type]
        seed = self.host.plan.tune.seeds[0]
        spec = dataclasses.replace(
            tuned_spec(self.cell.spec, {"lr": lr}, self.host.plan.tune.steps), seed=seed
        )
        trial = Trial(spec, self.cell.factors, self.cell.cell, self.cell.suite)
        tags = run_tags(self.host.plan, self.group, PURPOSE_MAX_STABLE_LR, {"lr": lr})
        self.in_flight = Job(self, [(slot(self.cell, seed), trial)], {"lr": lr}, tags)
        return self.in_flight

    def take(self, job: Job) -> str:
        self.in_flight = None
        if job.lost:
            return "lost (a worker died); probed again"
        lr = job.values["lr"]
        self.probes += 1
        if job.errors:
            self._finish("failed", job.errors[0])
            return f"failed: {job.errors[0]}"
        exploded = next(iter(job.done.values())).outcome == EXPLODED
        if exploded:
            self.unstable = lr if self.unstable is None else min(self.unstable, lr)
        else:
            self.stable = lr if self.stable is None else max(self.stable, lr)
        low, high = self.settings.low, self.settings.high
        if self.stable is None:
            if lr <= low:
                self._finish("below_low")
            else:
                self.next = max(lr / EXPANSION, low)
        elif self.unstable is None:
            if lr >= high:
                self._finish("at_high")
            else:
                self.next = min(lr * EXPANSION, high)
        elif self.bisections >= self.settings.steps:
            self._finish("bracketed")
        else:
            self.bisections += 1
            self.next = math.sqrt(self.stable * self.unstable)
        return f"lr {lr:.3g} {'exploded' if exploded else 'stable'}" + (
            f"; max stable lr {self.result['value']:.3g} ({self.result['status']})"
            if self.result and self.result["value"] is not None
            else (f"; {self.result['status']}" if self.result else "")
        )

    def _finish(self, status: str, error: str = "") -> None:
        self.next = None
        self.result = {
            "cell": self.cell.cell,
            "cell_id": self.cell.cell_id,
            "factors": dict(self.cell.factors),
            "value": self.stable if status != "failed" else None,
            "stable": self.stable,
            "unstable": self.unstable,
            "status": status,
            "probes": self.probes,
            **({"error": error} if error else {}),
        }
        self.host.save_stable(self.group, self.result)

    def abandon(self) -> None:
        self.in_flight = None


def slots_from_attr(raw: Any) -> dict[str, dict[int, float]]:
    """A finished study trial's curves per slot, as ``take`` stored them on the trial
    (``slots``: slot -> [[step, value], ...]); an entry that does not parse is left out."""
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for key, pairs in raw.items():
        try:
            out[str(key)] = {int(s): float(v) for s, v in pairs}
        except (TypeError, ValueError):
            continue
    return out


def mean_curve(curves: Any) -> dict[int, float]:
    """The mean over runs at each eval step every run reached (Optuna's intermediate value)."""
    curves = list(curves)
    if not curves:
        return {}
    common = set.intersection(*(set(c) for c in curves))
    out = {}
    for step in sorted(common):
        vals = [c[step] for c in curves]
        if all(math.isfinite(v) for v in vals):
            out[step] = float(np.mean(vals))
    return out
