"""Run a suite: check the store, skip what is done, run the rest on an executor, record each.

"Expand the suite", "run one unit of trials" (``runners.executor``) and "record one unit"
(``gradatlas.store``, through ``runners.tracking``) stay separate; this module only sequences them
on the driver, which alone writes the store, shows progress, and handles signals:

- the first Ctrl-C or SIGTERM (what ``timeout``, Slurm and Kubernetes send) stops the trial in
  progress at its next step (in-process: recorded KILLED, rerun on resume) or cancels the units
  in flight (Ray: they stay pending) and ends the sweep; the command then exits 130 (Ctrl-C) or
  143 (SIGTERM), never 0;
- a second Ctrl-C aborts at once, but never in the middle of a store write (so SQLite is not
  left locked, and the sweep run is still closed as KILLED).

Nothing that finished is lost, because each trial is recorded the moment its unit returns, and
nothing is recorded twice: each trial id is checked against the store right before recording
(a unit Ray retried after it had finished, or another driver, may have recorded it already).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from gradatlas.errors import UserInputError
from gradatlas.record import (
    FAILED_OUTCOME,
    OUTCOME,
    OUTCOME_ORDER,
    TODO_TRIALS,
    OutcomeLabel,
    RunKind,
    RunStatus,
    final_label,
)
from gradatlas.runners.batching import balanced, longest_first
from gradatlas.runners.executor import (
    InProcessExecutor,
    UnitResult,
    WorkUnit,
    dispatch,
    make_units,
)
from gradatlas.runners.recorder import Recorder
from gradatlas.store import RecordStore, StoreWriteError, open_store, redact
from gradatlas.suites import Suite


class Interrupted(KeyboardInterrupt):
    """An abort by signal; ``exit_code`` is what the shell expects (130 Ctrl-C, 143 SIGTERM),
    so a scheduler never takes a stopped sweep for a finished one."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + int(signum)


def raise_interrupted(signum: int, frame: Any) -> None:
    """A signal handler for start-up (before the sweep's own): abort with one line."""
    raise Interrupted(signum)


@dataclass
class SweepSummary:
    experiment_id: str
    tracking_uri: str
    planned: int
    skipped: int
    executor: str = ""
    ran: int = 0
    interrupted: bool = False
    signal_name: str = ""  # "SIGINT" | "SIGTERM" when a signal stopped the sweep
    counts: Counter = field(default_factory=Counter)
    failures: list[Any] = field(default_factory=list)  # executor.TrialFailure
    lost_units: int = 0
    duplicates: int = 0  # results not recorded because the trial was already recorded
    closed_stale: tuple[int, int] = (0, 0)
    write_error: str = ""
    wall_s: float = 0.0
    fit_s: float = 0.0
    instrument_s: float = 0.0
    logging_s: float = 0.0
    trial_s: float = 0.0
    suite: Any = None  # the suite whose trials were run (a tuned suite: at the best values)
    tuning: Any = None  # runners.tuning.tuner.TuningSummary of a suite with a tune block


def _fmt_time(seconds: float) -> str:
    seconds = round(seconds)
    return (
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60:02d}:{seconds % 60:02d}"
    )


class Progress:
    """One line per trial: done/total, elapsed, ETA from the measured rate, throughput per
    worker, outcome counts so far, and where the trial ran."""

    def __init__(self, total: int, workers: int = 1, stream: TextIO = sys.stderr):
        self.total, self.workers, self.stream = total, workers, stream
        self.done = 0
        self.counts: Counter = Counter()
        self.start = time.perf_counter()

    def update(self, name: str, outcome: str, seconds: float, where: str = "") -> None:
        self.done += 1
        self.counts[outcome] += 1
        elapsed = time.perf_counter() - self.start
        rate = self.done / max(elapsed, 1e-9)  # trials per second, all workers together
        eta = (self.total - self.done) / rate
        counts = " ".join(f"{k} {self.counts[k]}" for k in OUTCOME_ORDER if self.counts[k])
        speed = ""
        if self.workers > 1:
            speed = f" | {self.workers} workers, {60 * rate / self.workers:.1f} trials/min each"
        line = (
            f"[{self.done}/{self.total}] {_fmt_time(elapsed)} elapsed, ETA {_fmt_time(eta)}"
            f"{speed} | {counts} | {name}: {outcome} ({seconds:.1f}s"
            + (f" on {where}" if where and self.workers > 1 else "")
            + ")"
        )
        self.stream.write(line + "\n")
        self.stream.flush()


class StopOnSignals:
    """First Ctrl-C or SIGTERM: set ``event`` (the running trial stops at its next step; no
    new unit starts). Second Ctrl-C (or SIGTERM): abort with ``KeyboardInterrupt``, but never
    inside ``writing()`` (a store write): then right after it."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.event = threading.Event()
        self.signal_name = ""
        self.stream = stream
        self._abort = 0  # the signal number of a second signal, once one came
        self._in_write = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.event.is_set():
            self._abort = signum
            if not self._in_write:
                raise Interrupted(signum)
            return
        self.signal_name = name
        self.event.set()
        what = "Ctrl-C again to abort" if signum == signal.SIGINT else "SIGTERM again to abort"
        self.stream.write(f"\n{name}: stopping after the current trial's next step ({what})\n")
        self.stream.flush()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """A store write that a second signal must not cut in half."""
        self._in_write += 1
        try:
            yield
        finally:
            self._in_write -= 1
            if self._abort and not self._in_write:
                raise Interrupted(self._abort)

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def pending_trials(
    suite: Suite, done: set[str], failed: set[str], limit: int | None
) -> tuple[list[Any], int]:
    """The trials still to run (finished ones, and failed ones unless retried, are skipped):
    with ``limit``, that many spread over the grid (``suites.spread``: every level of every
    factor early, one seed per cell before a second), in plan order, rather than the first
    cells of the grid. Returns (todo, pending count)."""
    from gradatlas.suites.spread import spread

    pending = [t for t in suite.trials if t.trial_id not in done and t.trial_id not in failed]
    if limit is None or limit >= len(pending):
        return pending, len(pending)
    return spread(pending, limit), len(pending)


def run_suite(
    suite: Suite,
    store: RecordStore | str,
    *,
    force: bool = False,
    retry_failed: bool = False,
    accelerator: str = "auto",
    limit: int | None = None,
    executor: Any = None,
    stream: TextIO = sys.stderr,
    batch_seeds: int | str | None = None,
    optuna_storage: str | None = None,
    fuse: bool | None = None,
) -> SweepSummary:
    """Run what is pending of ``suite`` on ``executor`` (default: in this process) and record
    it in ``store`` (a store this process opened, or a URI to open as the writer).
    ``batch_seeds`` and ``fuse`` (default: the suite's ``execution`` block) say how many
    trials train together and whether cells of one shape share units (``runners.batching``).
    Raises ``UserInputError`` (exit 2) for a store that cannot be used or another live driver
    of this suite, before any trial trains.

    A suite with a ``tune`` block is tuned first (``runners.tuning``; studies in
    ``optuna_storage``, default beside a SQLite MLflow store) and its trials then run at each
    group's best values; ``limit`` and ``force`` apply to those trials, never to tuning runs.
    ``summary.suite`` is the suite whose trials were run (the tuned one)."""
    from gradatlas.runners.tracking import start_sweep, suite_experiment

    if not isinstance(store, RecordStore):
        store = open_store(store)  # probes and creates the store once, before anything runs
    exp_id = suite_experiment(store, suite.name)
    closed = store.close_dead_runs(exp_id)
    others = store.live_drivers(exp_id)
    if others:
        raise UserInputError(
            f"another gradatlas run of '{suite.name}' is driving this store: "
            + "; ".join(d.describe() for d in others)
            + ". Wait for it to finish or stop it; two drivers of one suite would run the same "
            "trials twice",
            source=redact(store.uri),
        )
    tuner = _open_tuner(suite, store, optuna_storage, exp_id, stream)
    if tuner is not None and tuner.tuned:
        suite = dataclasses.replace(suite, trials=tuner.evaluation_trials())
    summary = SweepSummary(exp_id, store.uri, len(suite.trials), 0, suite=suite)
    summary.closed_stale = closed
    if closed != (0, 0):
        stream.write(
            f"Closed {closed[0]} sweep and {closed[1]} trial runs left RUNNING by a driver "
            "that died (now KILLED; their trials run again)\n"
        )
    tuning = tuner is not None and not tuner.complete
    todo, pending, skipped_failed = _pending(suite, store, exp_id, force, retry_failed, limit)
    summary.skipped = len(suite.trials) - pending
    if not todo and not tuning:
        if tuner is not None:
            summary.tuning = tuner.summarize()
        stream.write(
            f"All {len(suite.trials)} trials of '{suite.name}' are already recorded"
            + (
                f" ({skipped_failed} as failed; --retry-failed runs them again)"
                if skipped_failed
                else ""
            )
            + " (use --force to rerun).\n"
        )
        return summary
    executor = executor or InProcessExecutor(accelerator=accelerator)
    summary.executor = executor.description
    if tuning:
        stream.write(
            f"Tuning '{suite.name}': {len(tuner.searches)} studies in {tuner.summary.storage}"
            + (
                f" ({tuner.summary.recovered} trials left running by a dead driver asked again)"
                if tuner.summary.recovered
                else ""
            )
            + f"\n  on {executor.description}\n"
        )
    else:
        _say_running(stream, suite, todo, pending, summary.skipped, skipped_failed, executor)
    sweep_id = start_sweep(store, exp_id, suite, len(suite.trials), None if tuning else len(todo))
    store.claim_sweep(sweep_id)  # host, pid, heartbeat: whose sweep this is
    t0 = time.perf_counter()
    status = RunStatus.FINISHED
    signals = StopOnSignals(stream)
    batch = batch_seeds or suite.spec.execution.batch_seeds
    fused = fuse if fuse is not None else suite.spec.execution.fuse == "auto"
    try:
        with signals:
            if tuning:
                from gradatlas.runners.tuning.driver import run_tuning

                summary.tuning = run_tuning(
                    tuner,
                    tracking_uri=store.uri,
                    sweep_id=sweep_id,
                    executor=executor,
                    signals=signals,
                    batch_seeds=batch,
                )
                if signals.event.is_set() or not tuner.tuned:
                    summary.interrupted = signals.event.is_set()
                    todo = []  # no evaluation on values a study has not settled
                else:
                    suite = dataclasses.replace(suite, trials=tuner.evaluation_trials())
                    summary.suite = suite
                    todo, pending, skipped_failed = _pending(
                        suite, store, exp_id, force, retry_failed, limit
                    )
                    summary.skipped = len(suite.trials) - pending
                    if todo:
                        _say_running(
                            stream,
                            suite,
                            todo,
                            pending,
                            summary.skipped,
                            skipped_failed,
                            executor,
                        )
            if todo:
                _evaluate(
                    suite,
                    todo,
                    store.uri,
                    exp_id,
                    sweep_id,
                    force,
                    executor,
                    signals,
                    summary,
                    stream,
                    batch,
                    fused,
                    tags=tuner.evaluation_tags() if tuner is not None else None,
                )
            if signals.event.is_set():
                summary.interrupted = True
    except StoreWriteError as exc:
        summary.write_error = str(exc)
        status = RunStatus.KILLED
    except BaseException:
        status = RunStatus.KILLED
        summary.interrupted = True
        raise
    finally:
        executor.close()
        summary.signal_name = signals.signal_name
        if summary.interrupted:
            status = RunStatus.KILLED
        with contextlib.suppress(Exception):  # the store may be the thing that failed
            if tuning and not summary.interrupted and not summary.write_error:
                store.log(sweep_id, tags={TODO_TRIALS: str(len(todo))})
            store.set_status(sweep_id, status)
        summary.wall_s = time.perf_counter() - t0
    return summary


def _open_tuner(
    suite: Suite,
    store: RecordStore,
    optuna_storage: str | None,
    exp_id: str,
    stream: TextIO,
) -> Any:
    """The suite's studies, opened (None for a suite without a tune block); what dead drivers
    left RUNNING in them and in the store is closed first (no other driver is alive by now)."""
    if suite.spec.tune is None:
        return None
    from gradatlas.runners.tuning.storage import default_storage
    from gradatlas.runners.tuning.tuner import Tuner

    storage = optuna_storage or default_storage(store.local_dir)
    if storage is None:
        raise UserInputError(
            "this suite has a tune block and the MLflow store is a server: name the Optuna "
            "storage every driver of this suite shares with --optuna-storage (e.g. "
            "postgresql://HOST/optuna or sqlite:////shared/optuna.db)",
            source=suite.source,
        )
    store.close_running(exp_id, (RunKind.TUNING, RunKind.STUDY))
    return Tuner.open(suite, storage, store, exp_id, stream)


def _pending(
    suite: Suite,
    store: RecordStore,
    exp_id: str,
    force: bool,
    retry_failed: bool,
    limit: int | None,
) -> tuple[list[Any], int, int]:
    """(the trials to run now, how many are pending, how many are skipped as failed)."""
    done = set() if force else set(store.finished_trials(exp_id))
    failed = set() if (force or retry_failed) else store.failed_trials(exp_id)
    todo, pending = pending_trials(suite, done, failed, limit)
    skipped_failed = len(
        [t for t in suite.trials if t.trial_id in failed and t.trial_id not in done]
    )
    return todo, pending, skipped_failed


def _say_running(
    stream: TextIO,
    suite: Suite,
    todo: list[Any],
    pending: int,
    skipped: int,
    skipped_failed: int,
    executor: Any,
) -> None:
    stream.write(
        f"Running {len(todo)} of {len(suite.trials)} trials of '{suite.name}'"
        + (f" ({skipped} already recorded)" if skipped else "")
        + (
            f"; {skipped_failed} failed before (--retry-failed reruns them)"
            if skipped_failed
            else ""
        )
        + (f"; --limit leaves {pending - len(todo)} for later" if len(todo) < pending else "")
        + f"\n  on {executor.description}\n"
    )


def _evaluate(
    suite: Suite,
    todo: list[Any],
    tracking_uri: str,
    exp_id: str,
    sweep_id: str,
    force: bool,
    executor: Any,
    signals: StopOnSignals,
    summary: SweepSummary,
    stream: TextIO,
    batch_seeds: int | str,
    fuse: bool,
    tags: Mapping[str, dict[str, str]] | None = None,
) -> None:
    """The trials, unit by unit as the executor returns them, each recorded at once.
    ``tags``: trial id -> tags its run gets besides a trial's own (a tuned trial's rank)."""
    progress = Progress(len(todo), executor.workers, stream)
    # From here until it closes, only the recorder process writes the store.
    recorder = Recorder(tracking_uri, exp_id, sweep_id, force)
    try:
        every = suite.spec.execution.live_every_s
        units = [
            dataclasses.replace(u, live_every_s=every) for u in make_units(todo, batch_seeds, fuse)
        ]
        if executor.workers > 1:  # in one process the order changes nothing but the progress
            units = longest_first(balanced(units, executor.workers))
        work = _Evaluation(units, recorder, tags, signals, summary, progress, stream)
        dispatch(executor, work, signals.event, live=recorder.live if every else None)
    finally:
        with signals.writing():  # a second signal waits until the queue is written
            _reconcile(recorder.close(), summary)


class _Evaluation:
    """The evaluation trials as ``runners.executor.Work``: their units in plan order, each
    returned unit handed to the recorder, counted and shown."""

    def __init__(
        self,
        units: list[WorkUnit],
        recorder: Recorder,
        tags: Mapping[str, dict[str, str]] | None,
        signals: StopOnSignals,
        summary: SweepSummary,
        progress: Progress,
        stream: TextIO,
    ):
        self.units = deque(units)
        self.recorder, self.tags, self.signals = recorder, tags, signals
        self.summary, self.progress, self.stream = summary, progress, stream

    def next_unit(self) -> WorkUnit | None:
        return self.units.popleft() if self.units else None

    def take(self, unit: UnitResult) -> bool:
        from gradatlas.runners.tracking import TrialWrite

        writes = None
        if self.tags:
            writes = [TrialWrite.of(r) for r in unit.results]
            writes = [dataclasses.replace(w, tags=self.tags.get(w.trial_id, {})) for w in writes]
        with self.signals.writing():  # a second signal never cuts a unit in half
            self.recorder.put(unit, writes=writes)  # written while the next unit trains
        stopping = self.signals.event.is_set()
        _account(unit, self.summary, self.progress, self.stream, stopping=stopping)
        _reconcile(self.recorder.reports(), self.summary)
        return not self.summary.interrupted

    def wait(self) -> bool:
        return False  # every unit was known from the start: none is in flight, so all are back


def _account(
    unit: Any, summary: SweepSummary, progress: Progress, stream: TextIO, stopping: bool = False
) -> None:
    """Count and show a returned unit (the recorder writes it; ``_reconcile`` corrects the
    counts for trials it found already recorded). ``stopping``: the user stopped the sweep, so
    a unit that did not return was cancelled, not lost (its trials stay pending all the same)."""
    if unit.lost and stopping:
        summary.interrupted = True
    elif unit.lost:
        summary.lost_units += 1
        stream.write(
            f"lost: a unit of {len(unit.unit.trials)} trials ({unit.lost}); they "
            "stay pending, rerun the same command to resume\n"
        )
    for result in unit.results:
        label = final_label(result.outcome.label, result.interrupted)
        summary.fit_s += result.timing["fit_time_s"]
        summary.instrument_s += result.timing["instrument_time_s"]
        summary.trial_s += result.timing["wall_time_s"]
        summary.ran += 1
        summary.counts[label] += 1
        progress.update(result.trial.run_name, label, result.timing["wall_time_s"], unit.worker)
        if result.interrupted:
            summary.interrupted = True
    for failure in unit.failures:
        summary.failures.append(failure)
        summary.counts[FAILED_OUTCOME] += 1
        progress.update(failure.trial.run_name, FAILED_OUTCOME, 0.0, failure.worker)


def _reconcile(reports: list[dict[str, Any]], summary: SweepSummary) -> None:
    """Fold the recorder's reports in; a write error ends the sweep (``StoreWriteError``)."""
    for report in reports:
        summary.logging_s += report.get("logging_s", 0.0)
        for label in report.get("duplicates", ()):  # a retried unit, another driver
            summary.duplicates += 1
            summary.ran -= 1
            summary.counts[label] -= 1
            if summary.counts[label] <= 0:
                del summary.counts[label]
        if report.get("error"):
            if report.get("write_error"):
                raise StoreWriteError(report["error"])
            raise RuntimeError(f"the recorder process failed: {report['error']}")


def outcome_table(
    store: RecordStore | str, suite: Suite
) -> tuple[list[str], list[tuple[str, Counter]]]:
    """Outcome counts per cell over every finished (or failed) trial of this suite's plan."""
    from gradatlas.runners.tracking import suite_experiment
    from gradatlas.store import as_store

    store = as_store(store)
    exp_id = suite_experiment(store, suite.name)
    finished = store.finished_trials(exp_id)
    failed = store.failed_trials(exp_id)
    cells: dict[str, Counter] = {}
    for trial in suite.trials:
        counter = cells.setdefault(trial.cell, Counter())
        tags = finished.get(trial.trial_id)
        if tags:
            counter[tags[OUTCOME]] += 1
        else:
            counter[FAILED_OUTCOME if trial.trial_id in failed else OutcomeLabel.PENDING] += 1
    order = (*OUTCOME_ORDER, FAILED_OUTCOME, OutcomeLabel.PENDING)
    columns = [k for k in order if any(c[k] for c in cells.values())]
    return columns, list(cells.items())
