"""The tuning plan: which studies a suite's ``tune`` block asks for, which cells each tunes, and
which trials the sweep then evaluates at the studies' values.

Separate from the search because it reads no study and trains nothing: ``gradatlas plan``,
the report's plan status and the driver all derive the same groups, study names, horizon
groups and evaluation trials from the suite alone (plus, for the evaluation trials, the values
the studies found), so a plan is checked, printed and recounted without Optuna or a store.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gradatlas.errors import SuiteErrors
from gradatlas.identity import config_hash
from gradatlas.suites import Suite, Trial
from gradatlas.suites.schema import TuneSection
from gradatlas.suites.tune import (
    applies,
    budget_steps,
    check_tune,
    distinct,
    selected,
    tuned_spec,
    tuned_where,
)

ALL = "all"  # the group label of ``per: []``
FULL = "@full"  # the study name's suffix of a horizon check's re-tune at the suite's budget


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
