"""Run a suite: expand, skip what is done, run the rest one trial at a time, record each.

"Expand the suite", "run one trial" and "record one trial" stay separate functions; this module
only sequences them, shows progress and handles Ctrl-C. The first Ctrl-C stops the current trial
at the next step (recorded as KILLED, so a resume reruns it) and ends the sweep; nothing that
finished is lost, because each trial is recorded the moment it ends.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from gradatlas.record import OUTCOME, OUTCOME_ORDER, final_label
from gradatlas.suites import Suite


@dataclass
class SweepSummary:
    experiment_id: str
    tracking_uri: str
    planned: int
    skipped: int
    ran: int = 0
    interrupted: bool = False
    counts: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    fit_s: float = 0.0
    instrument_s: float = 0.0
    logging_s: float = 0.0
    trial_s: float = 0.0


def _fmt_time(seconds: float) -> str:
    seconds = round(seconds)
    return (
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60:02d}:{seconds % 60:02d}"
    )


class Progress:
    """One line per trial: done/total, elapsed, ETA, outcome counts so far."""

    def __init__(self, total: int, stream: TextIO = sys.stderr):
        self.total, self.stream = total, stream
        self.done = 0
        self.counts: Counter = Counter()
        self.start = time.perf_counter()

    def update(self, name: str, outcome: str, seconds: float) -> None:
        self.done += 1
        self.counts[outcome] += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        counts = " ".join(f"{k} {self.counts[k]}" for k in OUTCOME_ORDER if self.counts[k])
        line = (
            f"[{self.done}/{self.total}] {_fmt_time(elapsed)} elapsed, ETA {_fmt_time(eta)} | "
            f"{counts} | {name}: {outcome} ({seconds:.1f}s)"
        )
        self.stream.write(line + "\n")
        self.stream.flush()


class _StopOnSigint:
    """First Ctrl-C: ask the running trial to stop (Lightning would otherwise catch it and
    exit the process). Second Ctrl-C: the default behaviour, immediately."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous = None

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self.event

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.event.set()
        sys.stderr.write("\nInterrupted: stopping the current trial (Ctrl-C again to abort)\n")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_suite(
    suite: Suite,
    tracking_uri: str,
    *,
    force: bool = False,
    accelerator: str = "auto",
    limit: int | None = None,
    stream: TextIO = sys.stderr,
) -> SweepSummary:
    from gradatlas.runners.tracking import Tracker
    from gradatlas.runners.trial import run_trial

    tracker = Tracker(tracking_uri)  # creates the store once, before any trial runs
    exp_id = tracker.ensure_experiment(suite.name)
    done = {} if force else tracker.finished_trials(exp_id)
    pending = [t for t in suite.trials if t.trial_id not in done]
    todo = pending[:limit] if limit is not None else pending
    summary = SweepSummary(
        exp_id, tracking_uri, len(suite.trials), len(suite.trials) - len(pending)
    )
    if not todo:
        stream.write(
            f"All {len(suite.trials)} trials of '{suite.name}' are already recorded "
            "(use --force to rerun).\n"
        )
        return summary
    stream.write(
        f"Running {len(todo)} of {len(suite.trials)} trials of '{suite.name}'"
        + (f" ({summary.skipped} already recorded)" if summary.skipped else "")
        + (
            f"; --limit leaves {len(pending) - len(todo)} for later"
            if len(todo) < len(pending)
            else ""
        )
        + "\n"
    )
    sweep_id = tracker.start_sweep(exp_id, suite, len(suite.trials), len(todo))
    progress = Progress(len(todo), stream)
    t0 = time.perf_counter()
    status = "FINISHED"
    try:
        with _StopOnSigint() as stop:
            for trial in todo:
                t_trial = time.perf_counter()
                result = run_trial(trial, accelerator=accelerator, stop=stop)
                t_log = time.perf_counter()
                tracker.record_trial(exp_id, sweep_id, result)
                summary.logging_s += time.perf_counter() - t_log
                summary.fit_s += result.timing["fit_time_s"]
                summary.instrument_s += result.timing["instrument_time_s"]
                summary.trial_s += result.timing["wall_time_s"]
                label = final_label(result.outcome.label, result.interrupted)
                summary.ran += 1
                progress.update(trial.run_name, label, time.perf_counter() - t_trial)
                if result.interrupted:
                    summary.interrupted = True
                    status = "KILLED"
                    break
    except BaseException:
        status = "KILLED"
        summary.interrupted = True
        raise
    finally:
        tracker.end_sweep(sweep_id, status)
        summary.wall_s = time.perf_counter() - t0
    return summary


def outcome_table(tracking_uri: str, suite: Suite) -> tuple[list[str], list[tuple[str, Counter]]]:
    """Outcome counts per cell over every finished trial of this suite's current plan."""
    from gradatlas.runners.tracking import Tracker

    tracker = Tracker(tracking_uri)
    exp_id = tracker.ensure_experiment(suite.name)
    finished = tracker.finished_trials(exp_id)
    cells: dict[str, Counter] = {}
    for trial in suite.trials:
        counter = cells.setdefault(trial.cell, Counter())
        tags = finished.get(trial.trial_id)
        counter[tags[OUTCOME] if tags else "pending"] += 1
    columns = [k for k in (*OUTCOME_ORDER, "pending") if any(c[k] for c in cells.values())]
    return columns, list(cells.items())
