"""The driver's one store writer, in a process of its own, so recording overlaps training.

Why a process: writing one trial run costs ~50-200 ms of pure-Python SQLAlchemy work on the
default SQLite store. On a thread it would contend for the GIL with Lightning's Python loop
(measured: no gain at depth 3), so with batched seeds the record would cost as much as the
training. In a process of its own it runs on another core while the next unit trains.

Still one writer: the driver writes the sweep run before the recorder starts and closes it
after the recorder has exited; in between, only the recorder writes. Units reach it in the
order they returned, over a pipe; it checks each trial id against the store right before
recording (nothing twice), writes, and reports back what it skipped and any write error.

Records before pictures: each trial's ``trial.png`` (~60 ms to draw, ten times what writing
its record costs on a database store) is drawn only while no unit waits, and the rest at the
end, so at hundreds of trials per fused unit the pictures never hold up a record.

Kill safety: the recorder ignores SIGINT/SIGTERM (the driver decides when to stop) and, when
the driver dies, reads the pipe to its end, writes every unit that arrived and exits, so
nothing that reached it is lost. A unit still in training when the driver died stays pending.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
import traceback
from typing import Any

HEARTBEAT_S = 30.0
CLOSED = "closed"
LIVE = "live"


class Recorder:
    """Driver side: ``put`` a returned unit, ``reports`` what was written, ``close`` to drain."""

    def __init__(self, tracking_uri: str, experiment_id: str, sweep_id: str, force: bool):
        import json
        import os
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        # A fresh interpreter (``python -m``), not multiprocessing: no forked locks or database
        # connections, and no re-run of the driver's main module (multiprocessing's spawn and
        # forkserver re-import it, seconds for a script that imports torch).
        units_r, units_w = os.pipe()
        reports_r, reports_w = os.pipe()
        args = json.dumps(
            [tracking_uri, experiment_id, sweep_id, force, units_r, reports_w, os.getpid()]
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gradatlas.runners.recorder", args],
            pass_fds=(units_r, reports_w),
            stdin=subprocess.DEVNULL,
        )
        os.close(units_r)  # the child's ends: closed here, so each side sees the other's EOF
        os.close(reports_w)
        self._units_w = Connection(units_w, readable=False)
        self._reports_r = Connection(reports_r, writable=False)
        self._closed = False

    def put(self, unit: Any, writes: list[Any] | None = None) -> None:
        """Hand over a returned unit, as plain records (the recorder never imports torch).
        ``writes``: the unit's records already made (tuning runs: their kind, parent and tags),
        instead of one trial run per result."""
        from gradatlas.runners.tracking import TrialWrite
        from gradatlas.store import StoreWriteError

        if writes is None:
            writes = [TrialWrite.of(r) for r in unit.results]
        try:
            self._units_w.send((writes, list(unit.failures)))
        except OSError as exc:  # BrokenPipeError: the recorder died (killed, out of memory)
            code = self._proc.poll()
            raise StoreWriteError(
                f"the recorder process ended (exit status {code}) and cannot write: {exc}"
            ) from exc

    def live(self, messages: list[dict[str, Any]]) -> None:
        """Hand over live-run messages (``runners.live``: a trial started, new curve points);
        they reach the recorder in order with the units. A dead recorder drops them here: the
        next ``put`` says so."""
        with contextlib.suppress(OSError):
            self._units_w.send({LIVE: messages})

    def reports(self, wait: float = 0.0) -> list[dict[str, Any]]:
        """What the recorder reported since the last call (never blocks). ``wait``: seconds to
        wait for a first report when none is there (tuning waits for its runs' writes before
        telling the study); a recorder that ended meanwhile is a ``StoreWriteError``."""
        out = []
        with contextlib.suppress(EOFError, OSError):
            if wait and not self._reports_r.poll(wait) and self._proc.poll() is not None:
                from gradatlas.store import StoreWriteError

                raise StoreWriteError(
                    f"the recorder process ended (exit status {self._proc.poll()}) and cannot write"
                )
            while self._reports_r.poll():
                out.append(self._reports_r.recv())
        return out

    def close(self) -> list[dict[str, Any]]:
        """Send the end, wait until every unit is written; returns the remaining reports."""
        if self._closed:
            return []
        self._closed = True
        with contextlib.suppress(OSError):
            self._units_w.send(None)
            self._units_w.close()
        out = []
        try:
            while True:
                report = self._reports_r.recv()
                if report.get(CLOSED):
                    break
                out.append(report)
        except (EOFError, OSError):
            pass  # the recorder is gone (killed): whatever it wrote is in the store
        code = self._proc.wait()
        self._reports_r.close()
        if code != 0:
            out.append(
                {
                    "error": f"the recorder process ended (exit status {code}); what it wrote "
                    "stays, the rest is pending",
                    "write_error": True,
                }
            )
        return out


def _recorder_main(
    tracking_uri: str,
    experiment_id: str,
    sweep_id: str,
    force: bool,
    units_fd: int,
    reports_fd: int,
    driver_pid: int | None = None,
) -> None:
    from multiprocessing.connection import Connection

    units_r = Connection(units_fd, writable=False)
    reports_w = Connection(reports_fd, readable=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from gradatlas.store import StoreWriteError, classify_write_error, open_store

    store = open_store(tracking_uri, create=False)  # the driver created and checked it
    inbox: queue.Queue = queue.Queue()

    def read() -> None:  # drain the pipe at once, so the driver never waits on a send
        try:
            while (unit := units_r.recv()) is not None:
                inbox.put(unit)
        except (EOFError, OSError):
            pass  # the driver died: write what came, then end
        except Exception:  # a unit cut in half by an abort: everything before it is written
            pass
        inbox.put(None)

    threading.Thread(target=read, daemon=True).start()
    live: dict[str, Any] = {}  # trial id -> its RUNNING run (store.LiveRun)
    pictures: list[tuple[str, Any]] = []  # (run id, record): drawn when no unit waits
    failed = False
    last_beat = time.monotonic()
    while True:
        try:
            # Records first: a picture is drawn only while no unit or message waits.
            unit = inbox.get(timeout=0 if pictures else HEARTBEAT_S / 3)
        except queue.Empty:
            if pictures and not failed:
                _draw(store, pictures.pop(0))
            unit = ...
        if not failed and time.monotonic() - last_beat > HEARTBEAT_S:  # the sweep is alive
            with contextlib.suppress(Exception):
                # The driver's pid, not ours: a second driver is told whom to wait for.
                store.heartbeat(sweep_id, pid=driver_pid)
            last_beat = time.monotonic()
        if unit is None:
            break
        if failed or unit is ...:
            continue
        if isinstance(unit, dict):  # live-run messages: nothing to report unless they fail
            try:
                write_live(store, experiment_id, sweep_id, unit[LIVE], live)
            except Exception as exc:
                failed = True
                why = classify_write_error(exc) or f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(OSError):
                    reports_w.send({"error": why, "write_error": True})
            continue
        report: dict[str, Any] = {"duplicates": [], "logging_s": 0.0}
        try:
            _write_unit(store, experiment_id, sweep_id, unit, force, report, live, pictures)
        except StoreWriteError as exc:
            failed, report["error"], report["write_error"] = True, str(exc), True
        except Exception as exc:
            failed = True
            report["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-4000:]}"
        with contextlib.suppress(OSError):
            reports_w.send(report)
    # Every unit is written; the pictures still owed (a view of records already stored).
    if not failed:
        for picture in pictures:
            _draw(store, picture)
    # Live runs no unit came back for: cancelled by a stop, lost with their worker, or the
    # driver died. Their trials stay pending (rerun on resume); the runs keep their points.
    for run in live.values():
        with contextlib.suppress(Exception):
            store.kill_live(
                run, "the sweep ended before this trial reported (stopped, its worker lost, or "
                "the driver gone); it is rerun on resume",
            )  # fmt: skip
    with contextlib.suppress(OSError):
        reports_w.send({CLOSED: True})


def write_live(store, exp_id, sweep_id, messages, live) -> None:
    """Create the RUNNING runs of trials that started; append flushed points to theirs.

    One store call for all the starts of ``messages`` (``start_live_many``) and one for all
    their points (``live_points_many``), not one per trial: a fused unit of a thousand trials
    sends a thousand starts at once and a thousand flushes every ``live_every_s``, and one
    round trip per trial (~10 ms on SQLite) made the recorder the sweep's pace. What is written
    is what a message-by-message loop would write: a start for a trial that has a run already
    (a retried unit reuses it), or a second start of the same trial, is ignored; points count
    only for a trial started before them (earlier in ``messages`` or in an earlier call), and
    the starts are written before any points, so every run exists when its points come."""
    from gradatlas.runners.live import POINTS, START
    from gradatlas.store.base import LiveStart

    starts: dict[str, LiveStart] = {}
    flush: list[tuple[str, Any]] = []
    for message in messages:
        trial_id = message["trial_id"]
        if message["t"] == START and trial_id not in live and trial_id not in starts:
            starts[trial_id] = LiveStart(
                run_name=message["run_name"],
                tags=message["tags"],
                params=message["params"],
                start_ms=message["start_ms"],
            )
        elif message["t"] == POINTS and (trial_id in live or trial_id in starts):
            flush.append((trial_id, message["points"]))
    if starts:
        runs = store.start_live_many(exp_id, sweep_id, list(starts.values()))
        live.update(zip(starts, runs, strict=True))
    if flush:
        store.live_points_many([(live[trial_id], points) for trial_id, points in flush])


def _draw(store, picture: tuple[str, Any]) -> None:
    """One owed ``trial.png``; a picture that cannot be drawn or stored is left out (the
    record is written already)."""
    from gradatlas.runners.tracking import attach_picture

    with contextlib.suppress(Exception):
        attach_picture(store, *picture)


def _write_unit(store, exp_id, sweep_id, unit, force, report, live=None, pictures=None) -> None:
    """Everything one returned unit leaves in the store, in one ``record_unit``; a failed write
    raises ``StoreWriteError`` with one line. A trial with a live run is written into it
    (tuning runs never have one). ``pictures``: where the unit's owed pictures go (drawn
    inline when None)."""
    from gradatlas.record import KIND_TRIAL
    from gradatlas.runners.tracking import write_unit

    live = {} if live is None else live
    writes, failures = unit
    ids = [w.trial_id for w in writes if w.kind == KIND_TRIAL]
    ids += [f.trial.trial_id for f in failures]
    mine = {tid: live.pop(tid) for tid in ids if tid in live}
    written = write_unit(
        store, exp_id, sweep_id, writes, failures, live=mine, force=force, pictures=pictures
    )
    report["duplicates"] += written.duplicates
    report["logging_s"] += written.seconds


if __name__ == "__main__":
    import json
    import sys

    _recorder_main(*json.loads(sys.argv[1]))
