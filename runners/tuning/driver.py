"""The tuning driver: a tuning phase as work for the sweep's one dispatch loop.

``TuningPhase`` is the ``runners.executor.Work`` of a tuning phase: it asks the searches for
jobs (round robin over the searches that want one), turns a job's runs into work units with
their pruning rules, and takes the returned units back: each run's value goes to its job, its
record to the recorder, and a job whose runs are all back is told to its study only once the
recorder has written them (so a study never holds a finished trial whose runs a kill could
still lose). ``runners.executor.dispatch`` drives it exactly as it drives a sweep's evaluation
trials, on the same executor.

Why the telling order is kept here, in one place: a study's seeded sampler asks its next values
from the trials it has been told, so the same results told in the same order give the same
values on every run. A run whose record already exists (same trial id, FINISHED) is not
trained again: its recorded value is told instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import deque
from typing import TYPE_CHECKING, Any

from gradatlas.record import (
    OUTCOME,
    OUTCOME_REASON,
    PRUNED,
    TUNING_NUMBER,
    TUNING_STOPPED,
    RecordedOutcome,
)
from gradatlas.runners.executor import UnitResult, WorkUnit, dispatch, make_units
from gradatlas.runners.tuning.search import Job, RunValue, StudySearch, run_value
from gradatlas.store import StoreWriteError

if TYPE_CHECKING:
    from gradatlas.runners.tuning.tuner import Tuner, TuningSummary


def run_tuning(
    tuner: Tuner,
    *,
    tracking_uri: str,
    sweep_id: str,
    executor: Any,
    signals: Any,
    batch_seeds: int | str = 1,
) -> TuningSummary:
    """Train what ``tuner``'s studies and searches still need on ``executor``, record it, and
    close the study runs. A stop (Ctrl-C, SIGTERM) fails the trials in flight and enqueues them
    again."""
    from gradatlas.runners.recorder import Recorder

    tuner.parallel = max(1, int(getattr(executor, "workers", 1)))
    tuner.open_study_runs(sweep_id)
    try:
        recorder = Recorder(tracking_uri, tuner.records.experiment_id, sweep_id, False)
        phase = TuningPhase(tuner, recorder, signals, batch_seeds)
        try:
            dispatch(executor, phase, signals.event)
        finally:
            with signals.writing():
                phase.confirm(recorder.close())
    except BaseException:
        tuner.abandon()
        # The store may be what failed: the error that ended the phase is the one to show.
        with contextlib.suppress(Exception), signals.writing():
            tuner.close_study_runs()
        raise
    tuner.abandon()
    with signals.writing():
        tuner.close_study_runs()
    tuner.summary.problems = tuner.problems()
    return tuner.summary


class TuningPhase:
    """The jobs of one tuning phase, as units for ``dispatch`` and results back to jobs."""

    def __init__(self, tuner: Tuner, recorder: Any, signals: Any, batch_seeds: int | str):
        self.tuner, self.recorder, self.signals = tuner, recorder, signals
        self.batch_seeds = batch_seeds
        self.plan, self.summary, self.stream = tuner.plan, tuner.summary, tuner.stream
        self.waiting: dict[str, deque[Job]] = {}  # trial id in flight -> the jobs waiting for it
        self.pending: deque[WorkUnit] = deque()  # units of asked jobs, not yet handed out
        self.unwritten: deque[list[Job]] = deque()  # per unit handed to the recorder: jobs it ends
        self.turn = 0

    # -- runners.executor.Work -------------------------------------------------------------
    def next_unit(self) -> WorkUnit | None:
        while not self.pending:
            if self.signals.event.is_set() or not self._start_job():
                return None
        return self.pending.popleft()

    def take(self, result: UnitResult) -> bool:
        self._take_unit(result)
        self.confirm(self.recorder.reports())
        return True

    def wait(self) -> bool:
        if not self.unwritten:
            return False  # nothing in flight and no search wants more: done
        self.confirm(self.recorder.reports(wait=0.5))  # a study waits for its writes
        return True

    # -- jobs ------------------------------------------------------------------------------
    def _start_job(self) -> bool:
        """Ask the next search that wants work (round robin); False when none does."""
        sources = [s for s in self.tuner.sources() if s.wants()]
        if not sources:
            return False
        source = sources[self.turn % len(sources)]
        self.turn += 1
        job = source.ask()
        todo = []
        for tid in job.trial_ids:
            if tid in self.tuner.recorded:
                job.done[tid] = self.tuner.recorded[tid]
                job.reused += 1
            else:
                todo.append(next(t for _, t in job.runs if t.trial_id == tid))
        self.summary.reused += job.reused
        if not todo:
            self._finish(job)
            return True
        for tid in (t.trial_id for t in todo):
            self.waiting.setdefault(tid, deque()).append(job)
        for unit in make_units(todo, self.batch_seeds):
            rules = {
                t.trial_id: job.rules[t.trial_id] for t in unit.trials if t.trial_id in job.rules
            }
            self.pending.append(dataclasses.replace(unit, early_stop=rules))
        return True

    def confirm(self, reports: list[dict[str, Any]]) -> None:
        """The recorder's reports, one per unit handed to it, in order: the jobs that unit
        completed are told to their study now that their runs are in MLflow, so a study never
        holds a finished trial whose runs a kill could still lose."""
        _check_reports(reports, self.summary)
        for _ in reports:
            if self.unwritten:
                for job in self.unwritten.popleft():
                    self._finish(job)

    def _take_unit(self, result: UnitResult) -> None:
        from gradatlas.runners.tracking import TrialWrite

        writes = []
        finished: list[Job] = []
        for r in result.results:
            if r.interrupted:
                continue  # a stopped run is no result: its trial is enqueued again
            queue = self.waiting.get(r.trial.trial_id)
            if not queue:
                continue
            job = queue.popleft()
            value = run_value(r)
            job.done[value.trial_id] = value
            self.tuner.recorded[value.trial_id] = value
            self.summary.trained += 1
            writes.append(self._write(TrialWrite.of(r), job, value))
            finished.append(job)
        for failure in result.failures:
            queue = self.waiting.get(failure.trial.trial_id)
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
                queue = self.waiting.get(t.trial_id)
                if queue:
                    job = queue.popleft()
                    job.lost = True
                    finished.append(job)
            self.stream.write(f"lost: a tuning unit ({result.lost})\n")
        complete = [j for j in dict.fromkeys(finished) if j.complete and not j.taken]
        for job in complete:
            job.taken = True  # told once: now, or when the recorder has written its runs
        if writes:
            with self.signals.writing():
                self.recorder.put(dataclasses.replace(result, failures=[]), writes=writes)
            self.unwritten.append(complete)
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
        study = search if isinstance(search, StudySearch) else self.tuner.search_of(search.group)
        return dataclasses.replace(
            write,
            record=record,
            run_name=f"{prefix}-{write.run_name}",
            parent=study.run_id,
            tags=tags,
        )

    def _finish(self, job: Job) -> None:
        """Tell ``job`` to its search, and say what it scored."""
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


def _check_reports(reports: list[dict[str, Any]], summary: TuningSummary) -> None:
    """The recorder's reports: a write error ends the sweep (``StoreWriteError``)."""
    for report in reports:
        summary.duplicates += len(report.get("duplicates", ()))
        if report.get("error"):
            if report.get("write_error"):
                raise StoreWriteError(report["error"])
            raise RuntimeError(f"the recorder process failed: {report['error']}")
