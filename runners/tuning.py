"""Tuning before evaluation: one Optuna study per group of cells, driven by the sweep's driver.

A suite's ``tune`` block says what to tune (``params``), per what (``per``: the factors whose
levels form the groups; ``[]`` is one group), how much (``trials`` per study, ``steps`` per
run) and how (sampler, pruner, tuning ``seeds``). The life of a tuned sweep:

1. ``tuning_plan``: the plan's cells grouped by their ``per`` levels; one study per group, named
   ``<suite>/<group>``, in the Optuna storage the user names (``--optuna-storage``).
2. ``Tuner.run``: a study trial is every cell of its group, at the sampled values, on each tuning
   seed, for the tuning budget: real ``Trial`` objects (``suites.tune.tuned_spec``) with their
   own trial ids, run by the same executor as everything else (in-process or Ray workers) and
   recorded in MLflow by the same recorder process, as ``gradatlas.kind=tuning`` runs nested
   under the study's run. Its value is the mean over those runs of the final validation metric
   (an exploded run, or one with no finite value, counts as the worst: accuracy 0, loss
   ``WORST_LOSS``). Up to one trial per worker is asked of each study at a time; each is told
   the moment its runs are back.
3. Pruning happens on the workers, which never read the study: before dispatching a trial the
   driver turns the pruner into thresholds per run and eval step (``thresholds``), and a run
   whose validation value at such a step is worse stops there (a real early stop). The study
   trial is then PRUNED, with its intermediate values (the mean over its runs at each eval
   step) reported.
4. ``Tuner.evaluation_trials``: the suite's own trials (its seeds, its budget) at their group's
   best values; the sweep then runs them as any other trials. Their config holds the tuned
   values, so their trial ids are hashes of what actually trained.
5. With ``tune.max_stable_lr``: per cell, the largest learning rate that does not explode
   (``StableLr``), on the first tuning seed with the tuning budget, at the cell's own settings.
6. With ``tune.second_best``: each tuned cell also runs the suite's seeds at its study's
   second-best values (``second_best``: the best completed trial ``suites.tune.distinct`` from
   the best), tagged ``gradatlas.tuning.rank`` 2 (the best's trials: 1). They are ordinary
   trials with their own ids, so resume and plan status treat them as any other.
7. With ``tune.horizon_check: N`` and ``tune.steps`` below the suite's budget: N groups (a
   seeded choice, ``TuningPlan.horizon_groups``) are tuned again at the suite's own budget in
   a second study, ``<suite>/<group>@full`` (same sampler seed, purpose ``horizon``), so the
   report can say whether the short budget picked the same values. Nothing is evaluated at
   them.

Only the driver writes the Optuna storage and (outside the recorder's life) the study runs; a
SQLite file has one writer. Resume after a kill: finished study trials stay; trials a dead
driver left RUNNING are failed and their values enqueued again, once each; and a run whose
tuning record already exists in MLflow (same trial id, FINISHED) is never trained again: its
recorded value is told instead. So a killed tuning run resumes where it stopped, repeating
nothing that finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import sys
import threading
import time
import urllib.parse
import warnings
import zlib
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from gradatlas.errors import SuiteErrors, UserInputError
from gradatlas.identity import config_hash
from gradatlas.record import (
    FINISHED_TUNING,
    KIND,
    KIND_STUDY,
    KIND_TUNING,
    OUTCOME,
    OUTCOME_REASON,
    PARENT_RUN,
    PRUNED,
    PURPOSE_HORIZON,
    PURPOSE_MAX_STABLE_LR,
    PURPOSE_STUDY,
    RUNNING_STUDIES,
    RUNNING_TUNING,
    STUDIES,
    STUDY,
    SUITE,
    TRIAL_ID,
    TUNING_ARTIFACT,
    TUNING_BEST,
    TUNING_COMPLETE,
    TUNING_GROUP,
    TUNING_GROUP_LEVELS,
    TUNING_NUMBER,
    TUNING_PARAMS,
    TUNING_PURPOSE,
    TUNING_RANK,
    TUNING_SECOND,
    TUNING_STOPPED,
    TUNING_STORAGE,
    RecordedOutcome,
    search_all,
)
from gradatlas.runners.executor import EarlyStop, UnitResult, WorkUnit, make_units
from gradatlas.suites import Suite, Trial
from gradatlas.suites.schema import TunePruner, TuneSection
from gradatlas.suites.tune import (
    applies,
    budget_steps,
    check_tune,
    distinct,
    selected,
    tuned_spec,
    tuned_where,
)

WORST_LOSS = 1e6  # an exploded run's loss in a study's mean: finite, and worse than any real one
EXPANSION = 10.0  # max-stable-lr: the bracket grows by decades until a stable and an exploded lr
ALL = "all"  # the group label of ``per: []``
FULL = "@full"  # the study name's suffix of a horizon check's re-tune at the suite's budget
EXPLODED = "exploded"
COMPLETE, PRUNED_STATE = "complete", "pruned"


# -- the plan: groups of cells, and the runs of one study trial -----------------------------------
@dataclass(frozen=True)
class Group:
    """The cells one study tunes: those sharing the ``per`` factors' levels."""

    label: str  # "sgd-d4", or "all"
    levels: dict[str, str]  # per factor -> level label
    cells: tuple[Trial, ...]  # one trial of each cell (its seed is replaced by tuning seeds)
    params: tuple[str, ...]  # the tuned names that land in at least one of its cells


@dataclass(frozen=True)
class TuningPlan:
    suite: str
    tune: TuneSection
    groups: tuple[Group, ...]
    where: dict[str, list[str]] | None = None  # tune.where as labels; None: every cell

    def study_name(self, group: Group, horizon: bool = False) -> str:
        return f"{self.suite}/{group.label}{FULL if horizon else ''}"

    def budget(self, group: Group) -> int | None:
        """The longest own budget (steps) of ``group``'s cells (None: not known)."""
        steps = [budget_steps(c.spec) for c in group.cells]
        return None if not steps or None in steps else max(s for s in steps if s is not None)

    def short(self, group: Group) -> bool:
        """Whether ``group`` is tuned at fewer steps than its cells train for."""
        budget = self.budget(group)
        return self.tune.steps is not None and budget is not None and self.tune.steps < budget

    @property
    def horizon_groups(self) -> tuple[Group, ...]:
        """The groups ``tune.horizon_check`` tunes again at the full budget: a choice seeded by
        the sampler's seed among the groups tuned short, so every machine picks the same."""
        short = [g for g in self.groups if self.short(g)]
        k = min(self.tune.horizon_check, len(short))
        picked = set(random.Random(self.tune.sampler.seed).sample(range(len(short)), k))
        return tuple(g for i, g in enumerate(short) if i in picked)

    @property
    def cells(self) -> int:
        return sum(len(g.cells) for g in self.groups)

    @property
    def runs(self) -> int:
        """Tuning runs the studies take (before pruning; max-stable-lr probes not counted)."""
        return self.tune.trials * self.cells * len(self.tune.seeds)

    def describe(self) -> list[str]:
        """What ``gradatlas plan`` prints about the tuning."""
        t = self.tune
        per = ", ".join(t.per) if t.per else "none: one study for the whole suite"
        if self.where:
            per += "; only the cells where " + ", ".join(
                f"{f} in [{', '.join(v)}]" for f, v in self.where.items()
            )
        params = ", ".join(
            f"{n} [{p.low:g}, {p.high:g}]{' log' if p.log else ''}" for n, p in t.params.items()
        )
        budget = f"{t.steps} steps" if t.steps else "the suite's own budget"
        lines = [
            f"tuning: {len(self.groups)} studies x {t.trials} trials x "
            f"{self.cells // max(1, len(self.groups))} cells x {len(t.seeds)} seeds = "
            f"{self.runs} tuning runs of {budget} (before pruning), then the trials below at "
            "each study's best values",
            f"  params   {params}",
            f"  per      {per}",
            f"  objective {t.objective} (final, mean over the trial's runs; exploded = worst), "
            f"sampler {t.sampler.name} (seed {t.sampler.seed}), pruner {t.pruner.name}, "
            f"tuning seeds {t.seeds}",
        ]
        if t.second_best:
            lines.append(
                "  second best: each tuned cell's seeds also run at its study's second-best "
                f"values (at least {t.second_best_ratio:g}x from the best on a log param, 10% "
                "of the range on a linear one), up to twice the tuned trials below"
            )
        if t.horizon_check:
            groups = self.horizon_groups
            runs = t.trials * sum(len(g.cells) for g in groups) * len(t.seeds)
            lines.append(
                f"  horizon check: {', '.join(g.label for g in groups)} tuned again at the "
                f"suite's own budget ({self.budget(groups[0])} steps), {runs} more tuning runs"
                if groups
                else "  horizon check: none (no group is tuned below the suite's budget)"
            )
        lines += [
            f"  study {self.study_name(g)}: {len(g.cells)} cells, tunes {', '.join(g.params)}"
            for g in self.groups[:20]
        ]
        if len(self.groups) > 20:
            lines.append(f"  ... and {len(self.groups) - 20} more studies")
        if t.max_stable_lr is not None:
            m = t.max_stable_lr
            lines.append(
                f"  max stable lr: per cell ({self.cells}), bracketed in [{m.low:g}, {m.high:g}] "
                f"by decades, then {m.steps} log-bisection steps, on seed {t.seeds[0]}"
            )
        return lines


def tuning_plan(suite: Suite) -> TuningPlan:
    """The groups of ``suite``'s tune block; raises ``SuiteErrors`` for a block that does not
    fit the plan (what ``check_tune`` says given the trials)."""
    from gradatlas.record import factor_levels

    tune = suite.spec.tune
    if tune is None:
        raise ValueError(f"suite {suite.name!r} has no tune block")
    levels = factor_levels(t.factors for t in suite.trials)
    errors = check_tune(tune, levels, suite.trials)
    if errors:
        raise SuiteErrors([e.located(source=suite.source) for e in errors])
    where = tuned_where(tune, levels)
    cells: dict[tuple[str, ...], dict[str, Trial]] = {}
    for trial in suite.trials:
        if not selected(trial, where):
            continue
        key = tuple(trial.factors[f] for f in tune.per)
        cells.setdefault(key, {}).setdefault(trial.cell_id, trial)
    groups = []
    for key, members in cells.items():
        optimizers = {t.spec.optim.optimizer.name for t in members.values()}
        params = tuple(n for n in tune.params if any(applies(n, o) for o in optimizers))
        groups.append(
            Group(
                label="-".join(key) if key else ALL,
                levels=dict(zip(tune.per, key, strict=True)),
                cells=tuple(members.values()),
                params=params,
            )
        )
    return TuningPlan(suite.name, tune, tuple(groups), where)


def slot(cell: Trial, seed: int) -> str:
    """A run's place in every trial of its study: the same cell and tuning seed (what the
    pruner compares across trials)."""
    return f"{cell.cell_id}/{seed}"


def tuning_runs(
    plan: TuningPlan, group: Group, values: Mapping[str, float], full: bool = False
) -> list[tuple[str, Trial]]:
    """(slot, trial) for every cell of ``group`` on every tuning seed, at ``values``, for the
    tuning budget (``full``: the cells' own budget, a horizon check)."""
    steps = None if full else plan.tune.steps
    out = []
    for cell in group.cells:
        for seed in plan.tune.seeds:
            spec = dataclasses.replace(tuned_spec(cell.spec, values, steps), seed=seed)
            out.append((slot(cell, seed), Trial(spec, cell.factors, cell.cell, cell.suite)))
    return out


def evaluation_trials(
    suite: Suite,
    plan: TuningPlan,
    best: Mapping[str, Mapping[str, float]],
    second: Mapping[str, Mapping[str, float] | None] | None = None,
) -> tuple[Trial, ...]:
    """The suite's own trials (its seeds and budget), each at its group's best values; a cell
    ``tune.where`` leaves out runs as written. With ``second`` (group label -> second-best
    values, None where a study has none), the tuned trials again at those, after the rest."""
    return tuple(t for t, _ in ranked_trials(suite, plan, best, second))


def ranked_trials(
    suite: Suite,
    plan: TuningPlan,
    best: Mapping[str, Mapping[str, float]],
    second: Mapping[str, Mapping[str, float] | None] | None = None,
) -> list[tuple[Trial, int | None]]:
    """``evaluation_trials`` with each trial's tune rank: 1 at its study's best values, 2 at
    the second-best, None for a cell that is not tuned. One entry per trial id."""
    per = plan.tune.per
    label = {tuple(g.levels[f] for f in per): g.label for g in plan.groups}
    out: dict[str, tuple[Trial, int | None]] = {}
    seconds = []
    for t in suite.trials:
        if not selected(t, plan.where):
            out.setdefault(t.trial_id, (t, None))
            continue
        group = label[tuple(t.factors[f] for f in per)]
        tuned = Trial(tuned_spec(t.spec, best[group]), t.factors, t.cell, t.suite)
        out.setdefault(tuned.trial_id, (tuned, 1))
        values = (second or {}).get(group)
        if values is not None:
            seconds.append(Trial(tuned_spec(t.spec, values), t.factors, t.cell, t.suite))
    for t in seconds:
        out.setdefault(t.trial_id, (t, 2))
    return list(out.values())


def second_best(
    trials: Sequence[tuple[Mapping[str, float], float, int]],
    best: Mapping[str, float],
    params: Mapping[str, Mapping[str, Any]],
    maximize: bool,
    ratio: float,
) -> tuple[dict[str, float], float, int] | None:
    """(values, objective, number) of the best of ``trials`` (completed: values, objective,
    number) that is ``distinct`` from ``best``; None when every one is close to it. Ties go to
    the earlier trial, so the choice is the same on every read of the study."""
    order = sorted(trials, key=lambda t: ((-t[1] if maximize else t[1]), t[2]))
    for values, objective, number in order:
        if distinct(values, best, params, ratio):
            return dict(values), float(objective), int(number)
    return None


# What a study's trials do not depend on: changing these keeps its studies valid.
NOT_FINGERPRINTED = {"trials", "max_stable_lr", "second_best", "second_best_ratio", "horizon_check"}


def fingerprint(plan: TuningPlan, group: Group, full: bool = False) -> str:
    """What a study was made for: the tune block (but ``trials``, which may grow, and the
    settings of what follows the study) and its cells at the tuning budget (``full``: their
    own). A stored study with another fingerprint is refused: its trials would not compare."""
    # Only what the suite sets: a field added to the schema later leaves old studies valid.
    tune = plan.tune.model_dump(mode="json", exclude=NOT_FINGERPRINTED, exclude_defaults=True)
    steps = None if full else plan.tune.steps
    cells = sorted(tuned_spec(c.spec, {}, steps).cell_id for c in group.cells)
    return config_hash({"tune": tune, "cells": cells})


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


# -- a run's value, and the pruner's thresholds --------------------------------------------------
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


@dataclass
class Finished:
    """One finished study trial as the pruner sees it: its state and each slot's curve."""

    state: str  # COMPLETE | PRUNED_STATE
    slots: dict[str, dict[int, float]]


def thresholds(
    pruner: TunePruner, maximize: bool, finished: Sequence[Finished], slot_key: str
) -> dict[int, float]:
    """Eval step -> the value a run in ``slot_key`` must reach there, from the study's finished
    trials (what the pruner implies; no entry: no pruning at that step).

    median (as Optuna's MedianPruner): once ``startup_trials`` trials have completed, from
    ``warmup_steps`` on, the median of the completed trials' values at that step.
    successive_halving: at rungs ``min_steps * eta^k`` (the first eval step at or after each),
    the k-th best value among the finished trials that reached the rung, k = max(n // eta, 1)
    with n counting this run, so only the top 1/eta go on (the first trial always does)."""
    if pruner.name == "none":
        return {}
    # The budget's last step is no place to stop: the run is over there anyway.
    last = max(
        (max(f.slots.get(slot_key, {0: 0})) for f in finished if f.state == COMPLETE), default=None
    )
    limits = _thresholds(pruner, maximize, finished, slot_key)
    return {s: v for s, v in limits.items() if last is None or s < last}


def _thresholds(
    pruner: TunePruner, maximize: bool, finished: Sequence[Finished], slot_key: str
) -> dict[int, float]:
    if pruner.name == "median":
        complete = [f for f in finished if f.state == COMPLETE]
        if len(complete) < max(1, pruner.startup_trials):
            return {}
        by_step: dict[int, list[float]] = {}
        for f in complete:
            for step, value in f.slots.get(slot_key, {}).items():
                if step > 0 and step >= pruner.warmup_steps and math.isfinite(value):
                    by_step.setdefault(step, []).append(value)
        return {s: float(np.median(v)) for s, v in sorted(by_step.items())}
    steps = sorted({s for f in finished for s in f.slots.get(slot_key, {}) if s > 0})
    out: dict[int, float] = {}
    rung = pruner.min_steps
    while steps and rung <= steps[-1]:
        at = next(s for s in steps if s >= rung)
        values = [
            f.slots[slot_key][at]
            for f in finished
            if at in f.slots.get(slot_key, {}) and math.isfinite(f.slots[slot_key][at])
        ]
        k = max((len(values) + 1) // pruner.eta, 1)
        if len(values) >= k:
            out[at] = sorted(values, reverse=maximize)[k - 1]
        rung *= pruner.eta
    return out


# -- the searches: what to train next, and what a result means ------------------------------------
@dataclass(eq=False)  # a job is itself: hashed by identity
class Job:
    """Runs that answer one question: a study trial, or one max-stable-lr probe."""

    search: Any
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
        tuner: Tuner,
        group: Group,
        study: Any,
        run_id: str | None = None,
        horizon: bool = False,
    ):
        from optuna.trial import TrialState

        self.tuner, self.group, self.study, self.horizon = tuner, group, study, horizon
        self.plan = tuner.plan
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
        requeued = {t.user_attrs.get("requeued_from") for t in trials}
        for t in trials:  # a failed trial whose values were asked again was interrupted
            again = t.state == TrialState.FAIL and t.number in requeued
            self.counts["requeued" if again else t.state.name.lower()] += 1
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                state = COMPLETE if t.state == TrialState.COMPLETE else PRUNED_STATE
                self.finished.append(Finished(state, _slots_from_attr(t.user_attrs.get("slots"))))

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
            and len(self.in_flight) < self.tuner.parallel
        )

    def ask(self) -> Job:
        trial = self.study.ask()
        params = self.plan.tune.params
        values = {
            n: trial.suggest_float(n, params[n].low, params[n].high, log=params[n].log)
            for n in self.group.params
        }
        runs = tuning_runs(self.plan, self.group, values, full=self.horizon)
        metric = self.plan.tune.objective
        pruner = self.plan.tune.pruner
        rules = {}
        for key, run in runs:
            limits = thresholds(pruner, self.maximize, self.finished, key)
            if limits:
                rules[run.trial_id] = EarlyStop(metric, self.maximize, limits)
        job = Job(
            self,
            runs,
            values,
            self.tuner.tags(self.group, self.purpose, values, number=trial.number, study=self.name),
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
        slots = {key: self.tuner.curve(job.done[t.trial_id], metric) for key, t in job.runs}
        trial.set_user_attr("slots", {k: sorted(v.items()) for k, v in slots.items()})
        trial.set_user_attr("trial_ids", job.trial_ids)
        for step, value in _mean_curve(slots.values()).items():
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

    def __init__(self, tuner: Tuner, group: Group, cell: Trial):
        settings = tuner.plan.tune.max_stable_lr
        assert settings is not None
        self.tuner, self.group, self.cell, self.settings = tuner, group, cell, settings
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
        seed = self.tuner.plan.tune.seeds[0]
        spec = dataclasses.replace(
            tuned_spec(self.cell.spec, {"lr": lr}, self.tuner.plan.tune.steps), seed=seed
        )
        trial = Trial(spec, self.cell.factors, self.cell.cell, self.cell.suite)
        tags = self.tuner.tags(self.group, PURPOSE_MAX_STABLE_LR, {"lr": lr})
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
        self.tuner.save_stable(self.group, self.result)

    def abandon(self) -> None:
        self.in_flight = None


def requeue(study: Any, number: int, params: Mapping[str, Any]) -> None:
    """Fail study trial ``number`` and enqueue its values again, once: a trial that enqueued
    them already (``requeued_from``) is not enqueued twice, even across kills between the two
    writes (enqueue first, then fail)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if params and not any(t.user_attrs.get("requeued_from") == number for t in trials):
        study.enqueue_trial(dict(params), user_attrs={"requeued_from": number})
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def recover(study: Any) -> int:
    """Trials a dead driver left RUNNING: failed, their values enqueued again (``requeue``).
    Returns how many."""
    from optuna.trial import TrialState

    running = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in running:
        requeue(study, t.number, t.params)
    return len(running)


# -- the driver side -----------------------------------------------------------------------------
@dataclass
class TuningSummary:
    """What a tuning phase did, for the command's closing lines."""

    storage: str
    studies: list[dict[str, Any]] = field(default_factory=list)  # name, best, objective, counts
    stable: list[dict[str, Any]] = field(default_factory=list)  # max-stable-lr results
    trained: int = 0  # tuning runs trained in this invocation
    duplicates: int = 0  # of those, found recorded already when written (another driver)
    reused: int = 0  # runs whose record existed, told without training
    recovered: int = 0  # study trials a dead driver left RUNNING, enqueued again
    complete: bool = False
    problems: list[str] = field(default_factory=list)


class Tuner:
    """Every study of one suite in one storage, with their MLflow runs and records.

    ``open`` (before the sweep run exists) loads or creates the studies, checks each was made
    for this tune block, and recovers what a dead driver left; ``run`` trains what is missing;
    ``evaluation_trials`` are the suite's trials at the studies' best values."""

    def __init__(
        self,
        suite: Suite,
        plan: TuningPlan,
        storage: str,
        client: Any,
        experiment_id: str,
        stream: TextIO = sys.stderr,
    ):
        self.suite, self.plan, self.storage_url = suite, plan, storage
        self.client, self.experiment_id, self.stream = client, experiment_id, stream
        self.parallel = 1
        self.searches: list[StudySearch] = []
        self.stable: dict[str, list[StableLr]] = {}  # group label -> pending cell searches
        self.stable_done: dict[str, dict[str, dict[str, Any]]] = {}  # label -> cell id -> result
        self.recorded: dict[str, RunValue] = {}
        self.study_runs: dict[str, Any] = {}
        self.summary = TuningSummary(redact(storage))

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        suite: Suite,
        storage: str,
        client: Any,
        experiment_id: str,
        stream: TextIO = sys.stderr,
    ) -> Tuner:
        tuner = cls(suite, tuning_plan(suite), storage, client, experiment_id, stream)
        tuner._open_studies()
        tuner._read_records()
        return tuner

    def _open_studies(self) -> None:
        storage = open_storage(self.storage_url)
        for group in self.plan.groups:
            study = self._open_study(storage, group)
            self.searches.append(StudySearch(self, group, study))
            self._open_stable(group, study)
        for group in self.plan.horizon_groups:  # the same sampler seed: comparable first asks
            study = self._open_study(storage, group, horizon=True)
            self.searches.append(StudySearch(self, group, study, horizon=True))

    def _open_study(self, storage: Any, group: Group, horizon: bool = False) -> Any:
        """``group``'s study (``horizon``: its re-tune at the full budget), loaded or created,
        checked against its fingerprint, with what a dead driver left recovered."""
        optuna = _quiet_optuna()
        tune = self.plan.tune
        name = self.plan.study_name(group, horizon)
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            pruner=optuna.pruners.NopPruner(),  # the driver prunes (``thresholds``)
            direction="maximize" if tune.objective == "val_acc" else "minimize",
            load_if_exists=True,
        )
        study.sampler = make_sampler(tune, sampler_seed(self.plan, group), len(study.trials))
        mine = fingerprint(self.plan, group, full=horizon)
        stored = study.user_attrs.get("gradatlas.fingerprint")
        if stored is None:
            study.set_user_attr("gradatlas.fingerprint", mine)
            study.set_user_attr("gradatlas.group", group.levels)
        elif stored != mine:
            raise UserInputError(
                f"the study {name!r} in {redact(self.storage_url)} was made for another "
                "tune block or other cells (its trials would not compare with this suite's); "
                "delete it (optuna delete-study --study-name "
                f"'{name}' --storage URL) or give another --optuna-storage",
                source=self.suite.source,
            )
        self.summary.recovered += recover(study)
        return study

    def _open_stable(self, group: Group, study: Any) -> None:
        settings = self.plan.tune.max_stable_lr
        if settings is None:
            return
        key = config_hash(
            {
                "msl": settings.model_dump(mode="json"),
                "steps": self.plan.tune.steps,
                "seed": self.plan.tune.seeds[0],
            }
        )
        stored = study.user_attrs.get("gradatlas.max_stable_lr") or {}
        done = dict(stored.get("cells", {})) if stored.get("settings") == key else {}
        self.stable_done[group.label] = done
        self._stable_key = key
        self.stable[group.label] = [
            StableLr(self, group, cell) for cell in group.cells if cell.cell_id not in done
        ]

    def save_stable(self, group: Group, result: dict[str, Any]) -> None:
        done = self.stable_done.setdefault(group.label, {})
        done[result["cell_id"]] = result
        study = self._search(group).study
        study.set_user_attr(
            "gradatlas.max_stable_lr", {"settings": self._stable_key, "cells": done}
        )

    def _search(self, group: Group) -> StudySearch:
        """``group``'s own study (not its horizon re-tune)."""
        return next(s for s in self.searches if s.group.label == group.label and not s.horizon)

    @property
    def studies(self) -> list[StudySearch]:
        """The studies whose best values the suite is evaluated at (no horizon re-tune)."""
        return [s for s in self.searches if not s.horizon]

    def _read_records(self) -> None:
        """Every FINISHED tuning run of the experiment: what need not be trained again."""
        for run in search_all(self.client, self.experiment_id, FINISHED_TUNING):
            tags = run.data.tags
            tid = tags.get(TRIAL_ID, "")
            if tid in self.recorded:
                continue  # newest first: keep the newest
            stopped = tags.get(TUNING_STOPPED)
            self.recorded[tid] = RunValue(
                trial_id=tid,
                outcome=tags.get(OUTCOME, ""),
                metrics=dict(run.data.metrics),
                stopped_at=int(stopped) if stopped else None,
                run_id=run.info.run_id,
            )
        for run in search_all(self.client, self.experiment_id, STUDIES):
            self.study_runs.setdefault(run.data.tags.get(STUDY, ""), run)

    def curve(self, value: RunValue, metric: str) -> dict[int, float]:
        """A run's validation curve (read from MLflow for a recorded run, once)."""
        if metric not in value.curves and value.run_id is not None:
            history = self.client.get_metric_history(value.run_id, metric)
            value.curves[metric] = {int(m.step): float(m.value) for m in history}
        return value.curves.get(metric, {})

    # -- state -----------------------------------------------------------------------------
    @property
    def tuned(self) -> bool:
        """Every study has its trials and every max-stable-lr search its answer."""
        return all(s.complete for s in self.searches) and all(
            c.complete for cells in self.stable.values() for c in cells
        )

    @property
    def complete(self) -> bool:
        """Tuned, and every study run says so: nothing is left for a tuning phase to do."""
        return self.tuned and all(
            (run := self.study_runs.get(s.name)) is not None
            and run.info.status == "FINISHED"
            and run.data.tags.get(TUNING_COMPLETE) == "true"
            and run.data.tags.get(TUNING_BEST) == json.dumps((s.best() or ({},))[0], sort_keys=True)
            and (
                not self.plan.tune.second_best
                or run.data.tags.get(TUNING_SECOND) == _second_tag(s.second())
            )
            for s in self.searches
        )

    def best_values(self) -> dict[str, dict[str, float]]:
        out = {}
        for s in self.studies:
            best = s.best()
            if best is None:
                raise UserInputError(
                    f"the study {s.name!r} has no completed trial, so there are no values to "
                    "evaluate at; rerun to tune it further",
                    source=self.suite.source,
                )
            out[s.group.label] = best[0]
        return out

    def second_values(self) -> dict[str, dict[str, float] | None] | None:
        """Group label -> its study's second-best values (None: no distinct one), or None
        when the suite does not ask for them (``tune.second_best``)."""
        if not self.plan.tune.second_best:
            return None
        return {s.group.label: (s.second() or (None,))[0] for s in self.studies}

    def ranked_trials(self) -> list[tuple[Trial, int | None]]:
        return ranked_trials(self.suite, self.plan, self.best_values(), self.second_values())

    def evaluation_trials(self) -> tuple[Trial, ...]:
        return tuple(t for t, _ in self.ranked_trials())

    def evaluation_tags(self) -> dict[str, dict[str, str]]:
        """Trial id -> the tags its trial run gets besides a trial's own: the tune rank of each
        tuned trial (``gradatlas.tuning.rank``, the reports' ``tune_rank``)."""
        return {t.trial_id: {TUNING_RANK: str(r)} for t, r in self.ranked_trials() if r}

    def tags(
        self,
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
            STUDY: study or self.plan.study_name(group),
            TUNING_GROUP: group.label,
            TUNING_GROUP_LEVELS: json.dumps(group.levels, sort_keys=True),
            TUNING_PARAMS: json.dumps(dict(values), sort_keys=True),
            TUNING_PURPOSE: purpose,
        }
        if number is not None:
            tags[TUNING_NUMBER] = str(number)
        return tags

    # -- the study runs (written by the driver while no recorder is alive) ------------------
    def open_study_runs(self, sweep_id: str) -> None:
        """One MLflow run per study, kept across invocations: reopened (RUNNING, under this
        sweep) if it exists, else created."""
        for s in self.searches:
            run = self.study_runs.get(s.name)
            if run is not None:
                self.client.update_run(run.info.run_id, status="RUNNING")
                self.client.set_tag(run.info.run_id, PARENT_RUN, sweep_id)
                s.run_id = run.info.run_id
                continue
            tags = {
                KIND: KIND_STUDY,
                STUDY: s.name,
                SUITE: self.suite.name,
                TUNING_GROUP: s.group.label,
                TUNING_GROUP_LEVELS: json.dumps(s.group.levels, sort_keys=True),
                TUNING_STORAGE: redact(self.storage_url),
                TUNING_PURPOSE: s.purpose,
                PARENT_RUN: sweep_id,
            }
            name = f"study-{s.group.label}{FULL if s.horizon else ''}"
            run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            s.run_id = run.info.run_id

    def study_info(self, s: StudySearch) -> dict[str, Any]:
        """A study's summary: ``tuning.json`` on its run, and the command's closing table."""
        tune = self.plan.tune
        best, second = s.best(), s.second()
        budget = self.plan.budget(s.group)
        stable = [] if s.horizon else self.stable.get(s.group.label, [])
        return {
            "study": s.name,
            "group": s.group.label,
            "purpose": s.purpose,
            "levels": s.group.levels,
            "storage": redact(self.storage_url),
            "objective": tune.objective,
            "direction": "maximize" if s.maximize else "minimize",
            "params": {n: tune.params[n].model_dump() for n in s.group.params},
            "trials": {
                "target": tune.trials,
                "complete": s.counts["complete"],
                "pruned": s.counts["pruned"],
                "failed": s.counts["fail"],
            },
            "steps": budget if s.horizon else (tune.steps or budget),  # per tuning run
            "budget_steps": budget,  # the cells' own (None: not known)
            "best": None
            if best is None
            else {"values": best[0], "objective": best[1], "number": best[2]},
            # The best trial distinct from the best (``second_best``); its trials ran only
            # with ``second_best_runs``.
            "second": None
            if second is None
            else {"values": second[0], "objective": second[1], "number": second[2]},
            "second_best_ratio": tune.second_best_ratio,
            "second_best_runs": tune.second_best and not s.horizon,
            "tried": s.tried(),
            "max_stable_lr": []
            if s.horizon
            else list(self.stable_done.get(s.group.label, {}).values()),
            "complete": s.complete and all(c.complete for c in stable),
        }

    def summarize(self) -> TuningSummary:
        """The summary of the studies as they stand (nothing is written)."""
        self.summary.studies = [self.study_info(s) for s in self.searches]
        self.summary.stable = [r for info in self.summary.studies for r in info["max_stable_lr"]]
        self.summary.complete = self.tuned
        return self.summary

    def close_study_runs(self) -> None:
        """Each study run gets the study's summary (``tuning.json``, the best values as a tag
        and metrics) and ends FINISHED when its study is done, KILLED when not."""
        from mlflow.entities import Metric, RunTag

        self.summarize()
        for s, info in zip(self.searches, self.summary.studies, strict=True):
            if s.run_id is None:
                continue
            rid, now, best = s.run_id, int(time.time() * 1000), info["best"]
            metrics = [
                Metric(f"trials_{k}", v, now, 0) for k, v in info["trials"].items() if k != "target"
            ]
            tags = [RunTag(TUNING_COMPLETE, "true" if info["complete"] else "false")]
            if best is not None:
                metrics.append(Metric("best_objective", best["objective"], now, 0))
                metrics += [Metric(f"best.{k}", v, now, 0) for k, v in best["values"].items()]
                tags.append(RunTag(TUNING_BEST, json.dumps(best["values"], sort_keys=True)))
                tags.append(RunTag(TUNING_SECOND, _second_tag(s.second())))
            if info["second"] is not None:
                metrics.append(Metric("second_objective", info["second"]["objective"], now, 0))
            self.client.log_batch(rid, metrics=metrics, tags=tags)
            self.client.log_dict(rid, info, TUNING_ARTIFACT)
            self.client.set_terminated(rid, status="FINISHED" if info["complete"] else "KILLED")

    # -- the phase -------------------------------------------------------------------------
    def run(
        self,
        *,
        tracking_uri: str,
        sweep_id: str,
        executor: Any,
        signals: Any,
        batch_seeds: int | str = 1,
    ) -> TuningSummary:
        """Train what the studies and searches still need, record it, and close the study
        runs. A stop (Ctrl-C, SIGTERM) fails the trials in flight and enqueues them again."""
        from gradatlas.runners.recorder import Recorder

        self.parallel = max(1, int(getattr(executor, "workers", 1)))
        self.open_study_runs(sweep_id)
        try:
            recorder = Recorder(tracking_uri, self.experiment_id, sweep_id, False)
            self._unwritten: deque[list[Job]] = deque()  # per unit handed over: jobs it ends
            try:
                self._loop(executor, signals.event, recorder, signals, batch_seeds)
            finally:
                with signals.writing():
                    self._confirm(recorder.close())
        except BaseException:
            self._abandon()
            # The store may be what failed: the error that ended the phase is the one to show.
            with contextlib.suppress(Exception), signals.writing():
                self.close_study_runs()
            raise
        self._abandon()
        with signals.writing():
            self.close_study_runs()
        self.summary.problems = [
            f"study {s.name}: {s.failures} tuning trials failed, so it stopped asking (first "
            f"error: {s.first_error}); fix the cause and rerun to resume"
            for s in self.searches
            if s.gave_up
        ] + [
            f"max stable lr of {c.cell.cell or c.cell.run_name}: {c.result.get('error')}"
            for cells in self.stable.values()
            for c in cells
            if c.result and c.result.get("status") == "failed"
        ]
        return self.summary

    def _abandon(self) -> None:
        """What is still in flight when the phase ends (a stop): failed and asked again."""
        for source in self._sources():
            source.abandon()

    def _sources(self) -> list[Any]:
        return [*self.searches, *(c for cells in self.stable.values() for c in cells)]

    def _loop(
        self,
        executor: Any,
        stop: threading.Event,
        recorder: Any,
        signals: Any,
        batch_seeds: int | str,
    ) -> None:
        pool = executor.pool(stop)
        waiting: dict[str, deque[Job]] = {}  # trial id in flight -> the jobs waiting for it
        pending_units: deque[WorkUnit] = deque()
        turn = 0

        def start_job() -> bool:
            """Ask the next search that wants work (round robin); False when none does."""
            nonlocal turn
            sources = [s for s in self._sources() if s.wants()]
            if not sources:
                return False
            source = sources[turn % len(sources)]
            turn += 1
            job = source.ask()
            todo = []
            for tid in job.trial_ids:
                if tid in self.recorded:
                    job.done[tid] = self.recorded[tid]
                    job.reused += 1
                else:
                    todo.append(next(t for _, t in job.runs if t.trial_id == tid))
            self.summary.reused += job.reused
            if not todo:
                self._finish(job)
                return True
            for tid in (t.trial_id for t in todo):
                waiting.setdefault(tid, deque()).append(job)
            for unit in make_units(todo, batch_seeds):
                rules = {
                    t.trial_id: job.rules[t.trial_id]
                    for t in unit.trials
                    if t.trial_id in job.rules
                }
                pending_units.append(dataclasses.replace(unit, early_stop=rules))
            return True

        try:
            while not stop.is_set():
                while pool.busy < pool.capacity and not stop.is_set():
                    if not pending_units and not start_job():
                        break
                    if pending_units:
                        pool.submit(pending_units.popleft())
                if pool.busy == 0 and not pending_units:
                    if not self._unwritten:
                        break  # nothing in flight and no search wants more: done
                    self._confirm(recorder.reports(wait=0.5))  # a study waits for its writes
                    continue
                result = pool.next_done()
                if result is None:
                    break
                self._take_unit(result, waiting, recorder, signals)
                self._confirm(recorder.reports())
        finally:
            pool.cancel()

    def _confirm(self, reports: list[dict[str, Any]]) -> None:
        """The recorder's reports, one per unit handed to it, in order: the jobs that unit
        completed are told to their study now that their runs are in MLflow, so a study never
        holds a finished trial whose runs a kill could still lose."""
        _check_reports(reports, self.summary)
        for _ in reports:
            if self._unwritten:
                for job in self._unwritten.popleft():
                    self._finish(job)

    def _take_unit(
        self, result: UnitResult, waiting: dict[str, deque[Job]], recorder: Any, signals: Any
    ) -> None:
        from gradatlas.runners.tracking import TrialWrite

        writes = []
        finished: list[Job] = []
        for r in result.results:
            if r.interrupted:
                continue  # a stopped run is no result: its trial is enqueued again
            queue = waiting.get(r.trial.trial_id)
            if not queue:
                continue
            job = queue.popleft()
            value = run_value(r)
            job.done[value.trial_id] = value
            self.recorded[value.trial_id] = value
            self.summary.trained += 1
            writes.append(self._write(TrialWrite.of(r), job, value))
            finished.append(job)
        for failure in result.failures:
            queue = waiting.get(failure.trial.trial_id)
            if queue:
                job = queue.popleft()
                job.failed[failure.trial.trial_id] = failure.error
                finished.append(job)
                self.stream.write(
                    f"tuning run {failure.trial.run_name} [{failure.trial.trial_id}] raised: "
                    f"{failure.error}\n"
                )
        if result.lost:
            for t in result.unit.trials:
                queue = waiting.get(t.trial_id)
                if queue:
                    job = queue.popleft()
                    job.lost = True
                    finished.append(job)
            self.stream.write(f"lost: a tuning unit ({result.lost})\n")
        complete = [j for j in dict.fromkeys(finished) if j.complete and not j.taken]
        for job in complete:
            job.taken = True  # told once: now, or when the recorder has written its runs
        if writes:
            with signals.writing():
                recorder.put(dataclasses.replace(result, failures=[]), writes=writes)
            self._unwritten.append(complete)
        else:  # failed or lost: nothing to wait for
            for job in complete:
                self._finish(job)

    def _write(self, write: Any, job: Job, value: RunValue) -> Any:
        """A result's record as a tuning run: its study's tags, under its study's run, named
        for its trial; a run the pruner stopped is labelled ``pruned``."""
        record = write.record
        tags = dict(job.tags)
        if value.stopped_at is not None:
            tags[TUNING_STOPPED] = str(value.stopped_at)
            reason = (
                f"stopped at step {value.stopped_at} by the {self.plan.tune.pruner.name} pruner: "
                f"its {self.plan.tune.objective} was worse than the threshold there"
            )
            record = dataclasses.replace(
                record, outcome=RecordedOutcome(PRUNED, reason, record.outcome.thresholds)
            )
            tags[OUTCOME], tags[OUTCOME_REASON] = PRUNED, reason
        number = tags.get(TUNING_NUMBER)
        prefix = f"tune{number}" if number is not None else f"maxlr{job.values['lr']:.3g}"
        search = job.search
        if isinstance(search, StudySearch) and search.horizon:
            prefix = f"full{number}"
        study = search if isinstance(search, StudySearch) else self._search(search.group)
        return dataclasses.replace(
            write,
            record=record,
            run_name=f"{prefix}-{write.run_name}",
            parent=study.run_id,
            tags=tags,
        )

    def _finish(self, job: Job) -> None:
        job.taken = True
        job.told = True
        what = job.search.take(job)
        search = job.search
        if isinstance(search, StudySearch):
            values = " ".join(f"{k}={v:.3g}" for k, v in job.values.items())
            head = f"[tune {search.name} {search.done_count}/{self.plan.tune.trials}]"
        else:
            values = ""
            head = f"[max-stable-lr {search.cell.cell or search.cell.run_name}]"
        reused = (
            f"; {job.reused} of {len(job.trial_ids)} runs recorded before" if job.reused else ""
        )
        self.stream.write(f"{head} {values}{' ' if values else ''}{what}{reused}\n")
        self.stream.flush()


def _second_tag(second: tuple[dict[str, float], float, int] | None) -> str:
    """A study run's ``TUNING_SECOND`` tag: the second-best values as JSON, or ``null``."""
    return json.dumps(second[0] if second else None, sort_keys=True)


def _check_reports(reports: list[dict[str, Any]], summary: TuningSummary) -> None:
    """The recorder's reports: a write error ends the sweep (``StoreWriteError``)."""
    from gradatlas.runners import store

    for report in reports:
        summary.duplicates += len(report.get("duplicates", ()))
        if report.get("error"):
            if report.get("write_error"):
                raise store.StoreWriteError(report["error"])
            raise RuntimeError(f"the recorder process failed: {report['error']}")


def _slots_from_attr(raw: Any) -> dict[str, dict[int, float]]:
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for key, pairs in raw.items():
        try:
            out[str(key)] = {int(s): float(v) for s, v in pairs}
        except (TypeError, ValueError):
            continue
    return out


def _mean_curve(curves: Any) -> dict[int, float]:
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


# -- storage, and what dead drivers left ---------------------------------------------------------
def default_storage(tracking_uri: str) -> str | None:
    """``sqlite:///<dir of mlflow.db>/optuna.db`` beside a SQLite MLflow store; None for a
    tracking server, where the studies must live where every driver finds them (the user
    names it: ``--optuna-storage``)."""
    from gradatlas.runners.tracking import sqlite_path

    db = sqlite_path(tracking_uri)
    return f"sqlite:///{db.parent / 'optuna.db'}" if db is not None else None


def open_storage(url: str) -> Any:
    """The Optuna storage at ``url`` (the folder of a SQLite file is created)."""
    import optuna

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # a bad URL, a server that does not answer, a missing driver
        raise UserInputError(
            f"cannot open the Optuna storage: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            source=redact(url),
        ) from None


def close_dead_tuning_runs(client: Any, experiment_id: str) -> int:
    """Study and tuning runs left RUNNING by a driver that died, closed as KILLED (call after
    ``store.live_drivers`` found no other driver of this suite alive). Returns how many."""
    runs = [
        *search_all(client, experiment_id, RUNNING_TUNING),
        *search_all(client, experiment_id, RUNNING_STUDIES),
    ]
    for run in runs:
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)


def redact(url: str) -> str:
    """A storage URL without its password (it is printed and written as a tag)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _quiet_optuna() -> Any:
    """Optuna, announcing nothing per trial (a sweep tells thousands)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # ``enqueue_trial(user_attrs=...)`` (how a dead driver's trial is requeued once) is marked
    # experimental by Optuna; the warning is about that API's stability, not about the study.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna
