"""``RecordStore``: everything gradatlas persists and reads, as one interface whose docstrings are
the contract (in the way Optuna's ``BaseStorage`` states its own).

What it holds: experiments (one per suite), runs (a sweep run per ``gradatlas run``, a trial run
per trial, a tuning run per tuning trial, a study run per study; see ``gradatlas.record`` for
their tags, params, metrics and artifacts), and the artifacts attached to runs. Every run has a
kind (``RunKind``), a status (``RunStatus``), tags, params, metrics (``(key, value, step)``
points) and artifacts (named files under the run).

Who writes: one process per sweep (the driver, then its recorder process while trials train;
never both at once), because a SQLite file does not take concurrent writers. Open the store once
per process (``gradatlas.store.open_store``) and pass it around. Readers (reports, exports,
``gradatlas repro``) may read while a sweep writes.

How to add a backend: subclass ``RecordStore``, implement the abstract methods, and pass
``tests/test_store_conformance.py`` (one test per clause of this contract). The methods that are
not abstract are written in terms of the abstract ones; a backend may override them for speed.
"""

from __future__ import annotations

import abc
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradatlas.record import (
    KIND,
    MAX_REASON_TAG,
    OUTCOME,
    OUTCOME_REASON,
    TRIAL_ID,
    OutcomeLabel,
    RunKind,
    RunStatus,
    SweepRecord,
    TrialRecord,
    sweep_of,
)
from gradatlas.store.drivers import (
    STALE_AFTER_S,
    DriverInfo,
    claimed,
    driver_tags,
    is_alive,
)

Point = tuple[str, float, int]  # (metric key, value, step)
ArtifactContent = str | bytes | Mapping[str, Any] | list[Any]


# -- what goes in ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialWrite:
    """One finished (or interrupted) trial as the store writes it: its record, run name, and the
    trial's own clock times (a worker's, possibly minutes before it is written), in ms.

    ``parent`` and ``tags``: a run other than a sweep's trial (tuning): the run it nests under
    and the tags that say what it is (``gradatlas.kind`` among them), over the trial run's tags.
    ``last_points_only``: each curve metric at its last step only (the synthetic benchmark
    store, whose readers read ``trial.json``, never metric history)."""

    record: TrialRecord
    run_name: str
    start_ms: int | None = None
    end_ms: int | None = None
    interrupted: bool = False
    parent: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    last_points_only: bool = False

    @property
    def kind(self) -> str:
        return self.tags.get(KIND, RunKind.TRIAL)

    @property
    def trial_id(self) -> str:
        return self.record.trial_id

    @property
    def label(self) -> str:
        return self.record.outcome.label


@dataclass(frozen=True)
class FailureWrite:
    """A trial that raised: its record (outcome ``failed``, the error as reason), run name, the
    one-line error, the traceback (the ``error.txt`` artifact) and where it ran."""

    record: TrialRecord
    run_name: str
    error: str
    traceback: str
    worker: str


# -- what comes out --------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredRun:
    """A run as a reader sees it. Times are ms since the epoch; ``metrics`` the latest value per
    key. ``params`` and ``metrics`` are None where the read left them out (``load_trials``'s
    fast path reads tags only); ``get_run`` always fills them."""

    run_id: str
    experiment_id: str = ""
    run_name: str = ""
    status: str = ""
    start_time: int | None = None
    end_time: int | None = None
    artifact_uri: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] | None = None
    metrics: Mapping[str, float] | None = None

    @property
    def kind(self) -> str:
        return self.tags.get(KIND, "")


@dataclass(frozen=True)
class StoredExperiment:
    experiment_id: str
    name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    active: bool = True  # False: deleted (``open_experiment`` restores it)


@dataclass(frozen=True)
class LoadedTrial:
    """One trial as the reports read it: its newest FINISHED run and its record (``trial.json``,
    or, where that is missing or unreadable, rebuilt from the run's tags, ``factor.*`` params
    and metrics: ``rebuilt``, schema 0)."""

    run: StoredRun
    record: TrialRecord
    rebuilt: bool = False


@dataclass(frozen=True)
class TrialLoad:
    """``load_trials``' answer: one ``LoadedTrial`` per trial id, oldest run first, and how many
    older FINISHED runs of the same trials were set aside (re-runs, ``--force``)."""

    trials: list[LoadedTrial]
    set_aside: int = 0

    @property
    def rebuilt(self) -> int:
        return sum(t.rebuilt for t in self.trials)


@dataclass
class UnitReport:
    """What ``record_unit`` did: trial id -> the run written for it, the labels of the writes
    skipped because their trial was recorded already, and the seconds the unit took."""

    run_ids: dict[str, str] = field(default_factory=dict)
    failed_run_ids: dict[str, str] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class LiveStart:
    """One trial's live run to start (``start_live_many``): ``start_live``'s arguments, so a
    fused unit's hundreds of starts travel as one batch."""

    run_name: str
    tags: Mapping[str, str]
    params: Mapping[str, str]
    start_ms: int | None = None


@dataclass
class LiveRun:
    """A trial's RUNNING run, as ``start_live`` made it: its id and, per metric key, the last
    step it holds, so later points (a flush, the record) never repeat a step."""

    run_id: str
    last_step: dict[str, int] = field(default_factory=dict)

    def after(self, points: Sequence[Point]) -> list[Point]:
        """The points past what the run holds; the run then holds them too."""
        new = [(k, v, s) for k, v, s in points if s > self.last_step.get(k, -1)]
        for k, _, s in new:
            self.last_step[k] = max(s, self.last_step.get(k, -1))
        return new


# -- the contract ----------------------------------------------------------------------------------
class RecordStore(abc.ABC):
    """Where gradatlas's records live. See the module docstring for who may write and when."""

    #: The URI this store was opened from (``open_store``), as given (it may hold a password:
    #: print ``gradatlas.store.uri.redact(store.uri)``).
    uri: str

    @property
    def local_dir(self) -> Path | None:
        """The folder of a store kept in a local file (companion files such as the default
        Optuna storage live beside it); None for a server."""
        return None

    # -- experiments -------------------------------------------------------------------------------
    @abc.abstractmethod
    def open_experiment(self, name: str, tags: Mapping[str, str] | None = None) -> str:
        """Create-or-get the experiment ``name`` and return its id.

        Idempotent: a second call with the same name returns the same id and writes nothing
        (``tags`` are written only when the experiment is created; ``set_experiment_tags``
        updates them). A deleted experiment of that name is restored, with its runs. A store in
        a local file keeps the experiment's artifacts beside it (``<local_dir>/artifacts``).
        """

    @abc.abstractmethod
    def get_experiment(
        self, *, name: str | None = None, experiment_id: str | None = None
    ) -> StoredExperiment | None:
        """The experiment of that name (or id), deleted ones included; None if there is none.
        Never creates anything."""

    @abc.abstractmethod
    def experiments(self) -> list[StoredExperiment]:
        """Every active (not deleted) experiment."""

    @abc.abstractmethod
    def set_experiment_tags(self, experiment_id: str, tags: Mapping[str, str]) -> None:
        """Set (overwrite) these tags on the experiment; other tags are left as they are."""

    # -- runs: the primitives ----------------------------------------------------------------------
    @abc.abstractmethod
    def create_run(
        self,
        experiment_id: str,
        *,
        run_name: str,
        tags: Mapping[str, str],
        start_ms: int | None = None,
    ) -> str:
        """A new RUNNING run with these tags, started at ``start_ms`` (default: now); returns its
        id. Not idempotent: each call is a new run (resume decides with ``recorded``)."""

    @abc.abstractmethod
    def log(
        self,
        run_id: str,
        *,
        metrics: Sequence[Point] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Write metrics (each point as given, timestamped now), params and tags to a run, in as
        few round trips as the backend allows: any number of each in one call (a backend with
        per-call caps splits the call itself). Tags overwrite; a param, once written, must be
        written again only with the same value; metric points append."""

    @abc.abstractmethod
    def set_status(self, run_id: str, status: RunStatus, *, end_ms: int | None = None) -> None:
        """Set the run's status. A terminal status (FINISHED, FAILED, KILLED) also sets its end
        time (``end_ms``, default now); RUNNING reopens a closed run (a study run resumed)."""

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Delete the run: no reader (``find_runs``, ``load_trials``) sees it afterwards."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> StoredRun | None:
        """The run with its tags, params and metrics (a deleted run too: only ``find_runs`` and
        ``load_trials`` leave deleted runs out); None when there is no run of that id."""

    @abc.abstractmethod
    def find_runs(
        self,
        experiment_ids: str | Sequence[str],
        *,
        kind: RunKind | str | None = None,
        status: RunStatus | str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> list[StoredRun]:
        """The active runs of these experiments of this kind, in this status, with every tag in
        ``tags`` equal to its value (each criterion only when given), newest start first, at
        most ``limit`` (default: all, however many pages that takes), with tags, params and
        metrics. Raises ``ValueError`` for a tag key or value a query cannot carry safely (a
        quote, a backslash, a backtick): values come from stores and users, never spliced raw.
        """

    @abc.abstractmethod
    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """Every point of one metric of a run, as (step, value), by step (empty: none)."""

    # -- artifacts ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def attach(self, run_id: str, name: str, content: ArtifactContent) -> None:
        """Attach one artifact at ``name`` (a path under the run's artifacts, folders allowed:
        ``report/index.html``): text as UTF-8, bytes as they are (a picture), a dict or list as
        JSON. A second attach to the same name replaces it."""

    @abc.abstractmethod
    def attach_files(self, run_id: str, path: Path, folder: str | None = None) -> None:
        """Attach a local file, or a folder's whole tree, under ``folder`` (default: the run's
        artifact root), keeping the file names. Replaces files of the same names."""

    @abc.abstractmethod
    def artifact_text(self, run: StoredRun | str, name: str) -> str | None:
        """The text of the run's artifact ``name``; None when it is missing or unreadable (never
        raises for that: a reader decides what a missing file means)."""

    @abc.abstractmethod
    def list_artifacts(self, run_id: str, folder: str | None = None) -> list[str]:
        """The paths of the artifacts directly under ``folder`` (default: the root), sorted."""

    # -- trials ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def record_unit(
        self,
        experiment_id: str,
        sweep_run_id: str | None,
        writes: Sequence[TrialWrite],
        failures: Sequence[FailureWrite] = (),
        *,
        live: Mapping[str, LiveRun] | None = None,
        force: bool = False,
    ) -> UnitReport:
        """Record one unit of trials (those that trained together) in one call: the batch is the
        unit, never the trial, so a backend can write it in one round trip.

        Each write becomes one run of its kind (``TrialWrite.kind``), with ``trial_tags`` (a
        trial run names its sweep, ``sweep_run_id``, in ``gradatlas.sweep_run`` and stands flat;
        any other kind nests under ``write.parent``) plus ``write.tags``, ``trial_params``,
        ``trial_metrics`` (metrics of any number: a backend with per-call caps chunks them),
        ``trial.json`` (with ``timing.logging_time_s``, also a metric), start and end at the
        trial's own times, and the status its record says (FINISHED; KILLED for ``killed``).
        A trial with a run in ``live`` (trial id -> ``start_live``'s run) is written into that
        run, with only the points it does not hold yet.

        Idempotent per trial: a write whose trial id already has a FINISHED run of the same kind
        is skipped (its label listed in ``duplicates``; its live run, another attempt's, is
        deleted), unless ``force`` or the write is interrupted. Recording the same unit twice
        therefore writes it once.

        Each failure becomes a FAILED run (params, ``gradatlas.error``, ``error.txt``), in its
        live run when it has one.

        A write that fails for a reason the user must fix (disk full, read-only, locked,
        corrupted, server gone) raises ``StoreWriteError`` with one line saying what to do; the
        runs written before it stay.
        """

    def recorded(
        self, experiment_id: str, trial_ids: Iterable[str], kind: RunKind | str = RunKind.TRIAL
    ) -> set[str]:
        """Which of ``trial_ids`` have a FINISHED run of ``kind`` (what resume and
        ``record_unit`` skip). Raises ``ValueError`` for an id that is not an id (a quote)."""
        return {
            tid
            for tid in trial_ids
            if self.find_runs(
                experiment_id, kind=kind, status=RunStatus.FINISHED, tags={TRIAL_ID: tid}, limit=1
            )
        }

    def finished_trials(self, experiment_id: str) -> dict[str, Mapping[str, str]]:
        """trial id -> tags of its newest FINISHED trial run: what resume skips."""
        done: dict[str, Mapping[str, str]] = {}
        for run in self.find_runs(experiment_id, kind=RunKind.TRIAL, status=RunStatus.FINISHED):
            done.setdefault(run.tags.get(TRIAL_ID, ""), run.tags)
        return done

    def failed_trials(self, experiment_id: str) -> set[str]:
        """Trial ids with a FAILED trial run and no FINISHED one: resume skips them unless asked
        to retry (a trial that raises would raise again; it is reported, not retried forever)."""
        runs = self.find_runs(experiment_id, kind=RunKind.TRIAL, status=RunStatus.FAILED)
        return {r.tags.get(TRIAL_ID, "") for r in runs} - set(self.finished_trials(experiment_id))

    @abc.abstractmethod
    def load_trials(self, experiment_id: str) -> TrialLoad:
        """The experiment's trials as typed records, for the reports: of its active FINISHED
        trial runs (kind ``trial`` only: tuning runs never enter the statistics), the newest per
        trial id, oldest first, each with its ``TrialRecord`` read from ``trial.json`` of any
        schema, or rebuilt from the run (``rebuilt``) where that is missing. The runs carry their
        tags (params and metrics may be None). Read-only; one query plus one artifact read per
        kept run is the budget (a 10,000-trial experiment loads in seconds)."""

    # -- live runs: a trial's run from its start, fed while it trains ------------------------------
    def start_live(
        self,
        experiment_id: str,
        sweep_run_id: str | None,
        *,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        start_ms: int | None,
    ) -> LiveRun:
        """The RUNNING run of a trial that started training: its tags (with its sweep in
        ``gradatlas.sweep_run``) and params as the finished run will have them, from the trial's
        own start time. ``record_unit`` later writes the record into it."""
        from gradatlas.record import SWEEP_RUN

        tags = dict(tags) | ({SWEEP_RUN: sweep_run_id} if sweep_run_id else {})
        run_id = self.create_run(experiment_id, run_name=run_name, tags=tags, start_ms=start_ms)
        self.log(run_id, params=params)
        return LiveRun(run_id)

    def live_points(self, live: LiveRun, points: Sequence[Point]) -> int:
        """Append a flush's points, only those past what the run holds (a repeated flush writes
        nothing), in one ``log``; returns how many were written."""
        new = live.after(points)
        if new:
            self.log(live.run_id, metrics=new)
        return len(new)

    def start_live_many(
        self, experiment_id: str, sweep_run_id: str | None, starts: Sequence[LiveStart]
    ) -> list[LiveRun]:
        """``start_live`` for every start of a batch (the trials of a unit that began training
        together), in one call so a backend can write them in one round trip: at hundreds of
        trials a unit, one round trip per trial makes the store writer the sweep's pace.
        Returns one new ``LiveRun`` per start, in order (not idempotent: each start is a new
        run, as ``start_live``). A backend that writes the batch at once writes all of it or
        none; this default loops, so a failure leaves the runs started before it."""
        return [
            self.start_live(
                experiment_id,
                sweep_run_id,
                run_name=start.run_name,
                tags=start.tags,
                params=start.params,
                start_ms=start.start_ms,
            )
            for start in starts
        ]

    def live_points_many(self, batch: Sequence[tuple[LiveRun, Sequence[Point]]]) -> int:
        """``live_points`` for every (run, points) pair of a flush, in order (a run may appear
        more than once: its later points go through ``LiveRun.after`` after its earlier ones),
        in one call so a backend can write the whole flush in one round trip. Only points past
        what each run holds are written (a repeated flush writes nothing); returns how many
        were. A backend that writes the flush at once writes all of it or none, and leaves the
        runs' step marks as they were when it writes none; this default loops."""
        return sum(self.live_points(live, points) for live, points in batch)

    def kill_live(self, live: LiveRun, reason: str) -> None:
        """A live run whose trial will not report (its unit was cancelled, lost, or the driver is
        gone): KILLED with outcome ``killed`` and ``reason``, so it is rerun on resume; its
        points stay."""
        tags = {OUTCOME: OutcomeLabel.KILLED, OUTCOME_REASON: reason[:MAX_REASON_TAG]}
        self.log(live.run_id, tags=tags)
        self.set_status(live.run_id, RunStatus.KILLED)

    # -- sweeps and their drivers ------------------------------------------------------------------
    def start_sweep(
        self,
        experiment_id: str,
        sweep: SweepRecord,
        *,
        run_name: str,
        artifacts: Mapping[str, ArtifactContent],
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create the sweep run (RUNNING until ``set_status``) with ``sweep.tags()`` and
        ``tags``, and attach ``artifacts`` (name -> content: the suite, its resolved form, the
        environment, the factor levels...). Returns its id."""
        run_id = self.create_run(
            experiment_id, run_name=run_name, tags=sweep.tags() | dict(tags or {})
        )
        for name, content in artifacts.items():
            self.attach(run_id, name, content)
        return run_id

    def heartbeat(self, sweep_run_id: str, pid: int | None = None) -> float:
        """Write the sweep run's driver tags (host, pid, heartbeat now; all three, so a heartbeat
        also claims an unclaimed run); call it every ~30 s, well inside ``STALE_AFTER_S``.
        ``pid``: the driver's, when the caller is not the driver itself (its recorder process).
        Returns the heartbeat written (unix s)."""
        now = time.time()
        self.log(sweep_run_id, tags=driver_tags(pid, now))
        return now

    def claim_sweep(self, sweep_run_id: str) -> DriverInfo:
        """Make this process the sweep run's driver (a heartbeat now); call it right after
        creating the sweep run. Returns what was written."""
        claimed(sweep_run_id)
        beat = self.heartbeat(sweep_run_id)
        return DriverInfo(sweep_run_id, socket.gethostname(), os.getpid(), beat)

    def live_drivers(
        self, experiment_id: str, *, stale_after: float = STALE_AFTER_S
    ) -> list[DriverInfo]:
        """The drivers of the experiment's RUNNING sweep runs that are alive
        (``drivers.is_alive``): another ``gradatlas run`` of this suite is in progress."""
        now = time.time()
        infos = [
            (DriverInfo.of(run.run_id, run.tags), run.start_time)
            for run in self.find_runs(experiment_id, kind=RunKind.SWEEP, status=RunStatus.RUNNING)
        ]
        return [info for info, start in infos if is_alive(info, start, stale_after, now)]

    def close_dead_runs(
        self, experiment_id: str, *, stale_after: float = STALE_AFTER_S
    ) -> tuple[int, int]:
        """Close as KILLED what dead drivers left RUNNING: their sweep runs, and every RUNNING
        trial run whose sweep (``gradatlas.sweep_run``, or the parent of an older run) is not a
        live driver's; such a trial run also gets outcome ``killed``, so it is rerun on resume.
        Idempotent: a second call closes nothing. Returns (sweep runs, trial runs) closed."""
        now = time.time()
        live, dead = set(), []
        for run in self.find_runs(experiment_id, kind=RunKind.SWEEP, status=RunStatus.RUNNING):
            if is_alive(DriverInfo.of(run.run_id, run.tags), run.start_time, stale_after, now):
                live.add(run.run_id)
            else:
                dead.append(run.run_id)
        for run_id in dead:
            self.set_status(run_id, RunStatus.KILLED)
        orphans = [
            run.run_id
            for run in self.find_runs(experiment_id, kind=RunKind.TRIAL, status=RunStatus.RUNNING)
            if sweep_of(run.tags) not in live
        ]
        reason = "left RUNNING by a driver that is gone; closed by a later gradatlas run"
        for run_id in orphans:
            self.log(run_id, tags={OUTCOME: OutcomeLabel.KILLED, OUTCOME_REASON: reason})
            self.set_status(run_id, RunStatus.KILLED)
        return len(dead), len(orphans)

    def close_running(self, experiment_id: str, kinds: Iterable[RunKind | str]) -> int:
        """Close as KILLED every RUNNING run of these kinds (tuning and study runs a dead driver
        left; call it only when ``live_drivers`` found no other driver). Returns how many."""
        runs = [
            run
            for kind in kinds
            for run in self.find_runs(experiment_id, kind=kind, status=RunStatus.RUNNING)
        ]
        for run in runs:
            self.set_status(run.run_id, RunStatus.KILLED)
        return len(runs)


def newest_per_trial(runs: Iterable[StoredRun]) -> tuple[list[StoredRun], int]:
    """Keep the newest run of each trial id (re-runs, ``--force``), oldest first; count the
    rest. A run without a trial id stands for itself."""
    by_trial: dict[str, StoredRun] = {}
    total = 0
    for run in runs:
        total += 1
        key = run.tags.get(TRIAL_ID) or run.run_id
        best = by_trial.get(key)
        if best is None or (run.start_time or 0) > (best.start_time or 0):
            by_trial[key] = run
    kept = sorted(by_trial.values(), key=lambda r: r.start_time or 0)
    return kept, total - len(kept)
