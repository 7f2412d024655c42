"""How much of the plan the report covers: finished, pending, failed and still-RUNNING trials.

A report is built from finished trial runs only, so without this a store with 4 of 36 trials
done, or with runs left RUNNING by a sweep that was killed, would read as a complete result. The
plan is the newest sweep run's ``suite.resolved.json`` re-expanded with ``suites.expand`` (the
same pure expansion ``gradatlas run`` used, so the same trial ids), else that sweep's
``gradatlas.planned_trials`` tag (a count only). The unfinished trial runs (RUNNING, FAILED,
KILLED) are read from the store with one ``find_runs`` each; the finished ones are the
experiment's own.

A trial is *finished* when it has a FINISHED run; otherwise its newest run decides: *running*
(RUNNING: training now, or left so by a driver that died), *failed* (FAILED: it raised; rerun with
``--retry-failed``) or *killed* (KILLED: interrupted, run again on resume). *Pending* is every
planned trial that is neither finished, failed nor running (killed ones included).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gradatlas.record import (
    CELL,
    DRIVER_HEARTBEAT,
    ERROR,
    FACTOR_PREFIX,
    PLANNED_TRIALS,
    PURPOSE_STUDY,
    SEED,
    TRIAL_ID,
    TUNING_BEST,
    TUNING_COMPLETE,
    TUNING_GROUP,
    TUNING_PURPOSE,
    TUNING_SECOND,
    OutcomeLabel,
    RunKind,
    RunStatus,
    as_float,
    as_int,
)
from gradatlas.reports.document import Cell as C
from gradatlas.reports.document import Column, Para, Pre, Table
from gradatlas.reports.fmt import join_and, plural
from gradatlas.reports.load import Experiment
from gradatlas.store import RecordStore, StoredRun

log = logging.getLogger(__name__)
# The states of a trial without a finished run, in the order the table lists them.
UNFINISHED = (RunStatus.RUNNING, RunStatus.FAILED, RunStatus.KILLED)
TIME = "%Y-%m-%d %H:%M"
PLANNED_TAG_SOURCE = f"the newest sweep run's {PLANNED_TRIALS} tag (a count only)"


@dataclass(frozen=True)
class Unfinished:
    """One planned trial without a finished run, as its newest run (if any) left it."""

    trial_id: str
    cell: str
    seed: int | None
    status: str  # a RunStatus of UNFINISHED, or "pending" (no run yet)
    started: pd.Timestamp | None = None
    error: str = ""


@dataclass(frozen=True)
class PlanStatus:
    """The plan's trials counted by state. ``planned`` is None when no sweep recorded a plan;
    ``outside`` counts finished trials the newest plan does not hold (an older grid);
    ``scope`` says which part of the plan was counted (a report steered with ``--where``)."""

    planned: int | None
    finished: int
    failed: int
    running: int
    killed: int
    outside: int = 0
    source: str = ""
    scope: str = ""
    sweep_running: bool = False
    heartbeat: pd.Timestamp | None = None
    unfinished: list[Unfinished] = field(default_factory=list)

    @property
    def pending(self) -> int:
        if self.planned is None:
            return 0
        return max(self.planned - self.finished - self.failed - self.running, 0)

    @property
    def complete(self) -> bool:
        return self.pending == 0 and self.failed == 0 and self.running == 0

    def running_since(self) -> str:
        running = [u for u in self.unfinished if u.status == RunStatus.RUNNING]
        starts = sorted(u.started for u in running if u.started is not None)
        if not starts:
            return ""
        a, b = starts[0].strftime(TIME), starts[-1].strftime(TIME)
        return f"started {a} UTC" if a == b else f"started {a} to {b} UTC"

    def banner(self) -> str:
        """ "k of n trials finished; m pending, f failed, r still RUNNING (started ...)"."""
        head = (
            f"{self.finished} of {plural(self.planned, 'planned trial')} finished"
            if self.planned is not None
            else f"{plural(self.finished, 'trial')} finished (the plan's size was not recorded)"
        )
        parts = []
        if self.pending:
            killed = f" ({self.killed} of them killed, to run again)" if self.killed else ""
            parts.append(f"{self.pending} pending{killed}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.running:
            since = self.running_since()
            parts.append(f"{self.running} still RUNNING" + (f" ({since})" if since else ""))
        text = head + (f"; {join_and(parts)}" if parts else "")
        return text + (f" {self.scope}" if self.scope else "")


def read_plan_status(
    store: RecordStore | None, exp: Experiment, where: Mapping[str, set[str]] | None = None
) -> PlanStatus | None:
    """Count ``exp``'s plan by state (only trials whose levels ``where`` admits, when given).
    None when there is nothing to say: no plan recorded and no unfinished run."""
    # An unknown factor is the steering's error to report (steer.steer_experiment), not ours.
    where = {f: levels for f, levels in (where or {}).items() if f in exp.factors}
    finished = set(_matching(exp.trials, exp, where)["trial_id"])
    if store is None:  # records made in memory: no store to count the plan in
        return None
    plan, source = _plan(store, exp)
    if plan is not None:
        plan = {tid: p for tid, p in plan.items() if _admits(p["factors"], where)}
    newest: dict[str, StoredRun] = {}
    for status in UNFINISHED:
        for run in store.find_runs(exp.experiment_id, kind=RunKind.TRIAL, status=status):
            tid = run.tags.get(TRIAL_ID) or run.run_id
            if tid in finished or not _admits(_run_factors(run), where):
                continue
            if plan is not None and tid not in plan:
                continue  # a trial of an older grid: not part of what is left to do
            best = newest.get(tid)
            if best is None or (run.start_time or 0) > (best.start_time or 0):
                newest[tid] = run
    unfinished = [_unfinished(run, tid) for tid, run in newest.items()]
    if plan is not None:
        unfinished += [
            Unfinished(tid, p["cell"], p["seed"], OutcomeLabel.PENDING)
            for tid, p in plan.items()
            if tid not in finished and tid not in newest
        ]
        order = {tid: i for i, tid in enumerate(plan)}
        unfinished.sort(key=lambda u: order.get(u.trial_id, len(order)))
    counts = {s: sum(u.status == s for u in unfinished) for s in UNFINISHED}
    planned = len(plan) if plan is not None else _planned_tag(store, exp, where)
    if planned is None and not (counts[RunStatus.RUNNING] or counts[RunStatus.FAILED]):
        return None
    if not source:
        source = PLANNED_TAG_SOURCE if planned is not None else "not recorded by any sweep run"
    in_plan = len(finished & set(plan)) if plan is not None else len(finished)
    sweep = exp.sweeps[0] if exp.sweeps else None
    running = bool(sweep and sweep.status == RunStatus.RUNNING)
    heartbeat = _heartbeat(store, sweep.run_id) if sweep and running else None
    return PlanStatus(
        planned=planned,
        finished=in_plan,
        failed=counts[RunStatus.FAILED],
        running=counts[RunStatus.RUNNING],
        killed=counts[RunStatus.KILLED],
        outside=len(finished) - in_plan,
        source=source,
        scope=_scope_text(where),
        sweep_running=running,
        heartbeat=heartbeat,
        unfinished=unfinished,
    )


def _admits(factors: Mapping[str, str], where: Mapping[str, set[str]]) -> bool:
    return all(factors.get(f) in levels for f, levels in where.items())


def _matching(trials: pd.DataFrame, exp: Experiment, where: Mapping[str, set[str]]):
    mask = pd.Series(True, index=trials.index)
    for f, levels in where.items():
        mask &= trials[exp.fcol(f)].isin(levels)
    return trials[mask]


def _scope_text(where: Mapping[str, set[str]]) -> str:
    if not where:
        return ""
    return (
        "(counting only the trials with "
        + join_and([f"{f} = {' or '.join(sorted(levels))}" for f, levels in where.items()])
        + ")"
    )


def _plan(store: RecordStore, exp: Experiment) -> tuple[dict[str, dict[str, Any]] | None, str]:
    """trial id -> {factors, cell, seed} of the newest sweep's plan, re-expanded from its
    resolved suite; (None, "") when no sweep archived one or it no longer expands."""
    sweep = next((s for s in exp.sweeps if s.resolved), None)
    if sweep is None:
        return None, ""
    from gradatlas.suites.expand import expand_suite

    try:
        suite = expand_suite(sweep.resolved, source=f"sweep run {sweep.run_id}")
    except Exception as exc:  # a suite an older version resolved may not validate today
        log.info("plan of sweep %s not re-expanded: %s", sweep.run_id, exc)
        return None, ""
    trials, how = suite.trials, "re-expanded"
    if suite.spec.tune is not None:
        trials, how = _tuned(store, exp, suite)
    plan = {t.trial_id: {"factors": t.factors, "cell": t.cell, "seed": t.seed} for t in trials}
    return plan, f"suite.resolved.json of sweep run {sweep.run_id}, {how}"


def _tuned(store: RecordStore, exp: Experiment, suite: Any) -> tuple[Any, str]:
    """A tuned suite's trials as ``gradatlas run`` ran them: each tuned cell at its study's best
    values (the completed study runs' ``TUNING_BEST`` tags) and, with ``tune.second_best``, at
    its second-best (``TUNING_SECOND``; none where a study had no distinct one). Re-expanding
    the suite alone gives the cells at their untuned values, whose trial ids no run has, and
    called every tuned trial pending. Untuned values where a study has not finished (its cells
    are pending). A horizon check's re-tune (purpose ``horizon``) chooses nothing."""
    from gradatlas.runners.tuning.plan import evaluation_trials, tuning_plan

    best, second = {}, {}
    complete = {TUNING_COMPLETE: "true"}
    for run in store.find_runs(exp.experiment_id, kind=RunKind.STUDY, tags=complete):
        tags = run.tags
        if tags.get(TUNING_PURPOSE, PURPOSE_STUDY) != PURPOSE_STUDY:
            continue
        group, values = tags.get(TUNING_GROUP), tags.get(TUNING_BEST)
        if group and values and group not in best:
            best[group] = json.loads(values)
            second[group] = json.loads(tags.get(TUNING_SECOND) or "null")
    try:
        plan = tuning_plan(suite)
        if not all(g.label in best for g in plan.groups):
            return (
                suite.trials,
                "re-expanded (tuning unfinished: tuned cells at their untuned values)",
            )
        ranked = second if suite.spec.tune.second_best else None
        how = "re-expanded at the tuned values" + (
            " (best and second-best)" if ranked is not None else ""
        )
        return evaluation_trials(suite, plan, best, ranked), how
    except Exception as exc:  # a tune block an older version wrote may not plan today
        log.info("tuned plan not rebuilt: %s", exc)
        return suite.trials, "re-expanded"


def _planned_tag(store: RecordStore, exp: Experiment, where: Mapping[str, set[str]]) -> int | None:
    """The newest sweep's planned-trials count, when the plan could not be re-expanded (a count
    of the whole suite, so not usable under ``--where``)."""
    if where or not exp.sweeps:
        return None
    try:
        run = store.get_run(exp.sweeps[0].run_id)
    except Exception:
        return None
    value = run.tags.get(PLANNED_TRIALS) if run is not None else None
    return int(value) if value and value.isdigit() else None


def _heartbeat(store: RecordStore, sweep_run_id: str) -> pd.Timestamp | None:
    try:
        run = store.get_run(sweep_run_id)
    except Exception:
        return None
    beat = as_float(run.tags.get(DRIVER_HEARTBEAT)) if run is not None else None
    return pd.Timestamp(beat, unit="s", tz="UTC") if beat is not None else None


def _run_factors(run: StoredRun) -> dict[str, str]:
    return {
        k[len(FACTOR_PREFIX) :]: v
        for k, v in (run.params or {}).items()
        if k.startswith(FACTOR_PREFIX)
    }


def _unfinished(run: StoredRun, trial_id: str) -> Unfinished:
    tags = run.tags
    start = run.start_time
    return Unfinished(
        trial_id=trial_id,
        cell=tags.get(CELL, ""),
        seed=as_int(tags.get(SEED)),
        status=run.status,
        started=pd.Timestamp(start, unit="ms", tz="UTC") if start else None,
        error=tags.get(ERROR, ""),
    )


# -- the section ---------------------------------------------------------------------------------
UNFINISHED_ROWS = 20  # trials listed; the rest are counted


class Progress:
    """First in the report, and only when the plan is not all finished: how much of it the
    report covers, and which trials are missing and why."""

    title = "Unfinished plan"

    def applies(self, ctx: Any) -> bool:
        return ctx.plan is not None and not ctx.plan.complete

    def build(self, ctx: Any) -> list[Any]:
        plan: PlanStatus | None = ctx.plan
        if plan is None or plan.complete:  # not shown (see applies), but never empty
            return [Para("Every planned trial has a finished run.", note=True)]
        name = ctx.exp.name
        blocks: list[Any] = [
            Para(
                f"{plan.banner()}. Everything below counts only the "
                f"{plural(len(ctx.exp.trials), 'finished trial')} this report shows.",
                note=True,
            )
        ]
        uri = ctx.exp.tracking_uri
        flag = "" if not uri or uri.endswith("runs/mlflow.db") else f" --tracking-uri {uri}"
        todo = []
        if plan.pending:
            todo.append(f"gradatlas run {name}{flag}   # the {plan.pending} pending (and killed)")
        if plan.failed:
            todo.append(
                f"gradatlas run {name}{flag} --retry-failed   # the {plan.failed} failed too"
            )
        if todo:
            blocks.append(Para("To finish the plan, then rebuild this report:"))
            blocks.append(Pre("\n".join(todo)))
        if plan.running:
            blocks.append(
                Para(
                    "A RUNNING trial is training now, or was left RUNNING by a sweep that was "
                    "killed; the next `gradatlas run` closes those of a dead driver as KILLED and "
                    "runs them again."
                )
            )
        if plan.sweep_running:
            beat = (
                f" (its driver's last heartbeat: {plan.heartbeat:{TIME}} UTC)"
                if plan.heartbeat
                else ""
            )
            blocks.append(
                Para(
                    f"The newest sweep run is still RUNNING{beat}: these counts are a snapshot "
                    "taken when the report was built.",
                    note=True,
                )
            )
        if plan.outside:
            blocks.append(
                Para(
                    f"The report also holds {plural(plan.outside, 'finished trial')} that the "
                    "newest plan does not (an older grid or other fixed settings).",
                    note=True,
                )
            )
        rows, listed = _unfinished_rows(plan.unfinished)
        if rows:
            left = len(plan.unfinished) - listed
            blocks.append(
                Table(
                    [
                        Column("state", weight=0.8),
                        Column("cell", weight=2.0),
                        Column("seeds", "right", 0.6),
                        Column("run started (UTC)", weight=1.2),
                        Column("error", weight=2.0),
                    ],
                    rows,
                    name="unfinished",
                    caption="Trials of the plan without a finished run"
                    + (f" ({left} more not listed)" if left else "")
                    + f". Plan: {plan.source or PLANNED_TAG_SOURCE}.",
                )
            )
        return blocks


def _unfinished_rows(unfinished: list[Unfinished]) -> tuple[list[list[C]], int]:
    """Table rows: each run that is RUNNING, FAILED or KILLED, then the pending trials one row
    per cell; at most ``UNFINISHED_ROWS``. Also the number of trials the rows cover."""
    rank = {status: i for i, status in enumerate(UNFINISHED)}
    runs = sorted((u for u in unfinished if u.status in rank), key=lambda u: rank[u.status])
    pending: dict[str, list[Unfinished]] = {}
    for u in unfinished:
        if u.status not in rank:
            pending.setdefault(u.cell or u.trial_id, []).append(u)
    rows, listed = [], 0
    for u in runs[:UNFINISHED_ROWS]:
        started = f"{u.started:{TIME}}" if u.started is not None else "–"
        seed = "–" if u.seed is None else str(u.seed)
        rows.append(
            [C(u.status), C(u.cell or u.trial_id), C(seed), C(started), C(u.error[:80] or "–")]
        )
        listed += 1
    for cell, members in pending.items():
        if len(rows) >= UNFINISHED_ROWS:
            break
        seeds = ", ".join(str(u.seed) for u in members if u.seed is not None) or "–"
        rows.append([C(OutcomeLabel.PENDING), C(cell), C(seeds), C("–"), C("–")])
        listed += len(members)
    return rows, listed
