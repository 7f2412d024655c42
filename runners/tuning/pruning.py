"""The pruning policy: from a study's finished trials, the thresholds a new trial's runs must
reach at each eval step, or stop there.

Separate, and pure, because the workers never read the study: when a study trial is asked
(``search.StudySearch.ask``), the pruner becomes a plain ``EarlyStop`` rule per run (eval step
-> threshold), which travels with the work unit and is applied on the worker
(``runners.executor.MemberRules``). Nothing here touches Optuna or a store, so the policy is
tested on hand-made curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradatlas.runners.executor import EarlyStop
from gradatlas.suites import Trial
from gradatlas.suites.schema import TunePruner

COMPLETE, PRUNED_STATE = "complete", "pruned"


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


def early_stops(
    pruner: TunePruner,
    metric: str,
    maximize: bool,
    finished: Sequence[Finished],
    runs: Sequence[tuple[str, Trial]],
) -> dict[str, EarlyStop]:
    """Trial id -> the rule that may stop it, for the runs (slot, trial) of one new study
    trial; a run with no threshold at any step has no rule (it trains its whole budget)."""
    rules = {}
    for key, run in runs:
        limits = thresholds(pruner, maximize, finished, key)
        if limits:
            rules[run.trial_id] = EarlyStop(metric, maximize, limits)
    return rules
