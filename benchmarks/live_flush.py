"""What live trial runs cost (runners.live): the worker's share of trial time, and the writes.

For quickstart trials (a shallow and a deep ReLU net, 600 steps, 24 evaluations) this times
``run_trial`` three ways, median of ``--repeats``:
- ``off``: no live run (``execution.live_every_s: 0``);
- ``default``: ``live_every_s`` 10 (the default): a quickstart trial is shorter than that, so it
  sends its start message only;
- ``every eval``: a flush at every evaluation (24 per trial): the worst case the knob allows.
The worker's own cost is ``timing.live_time_s`` (gathering points, sending); the writes
(``RecordStore.start_live``, one ``log`` per flush, the record into the live run) run in the
recorder process during a sweep, off the worker's path, and are timed here into a fresh SQLite
store. The benchmark measures and prints; it never fails on a timing.

Usage: python benchmarks/live_flush.py [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gradatlas.runners.live import LiveSink
from gradatlas.runners.recorder import write_live
from gradatlas.runners.tracking import TrialWrite, suite_experiment, write_unit
from gradatlas.runners.trial import run_trial, set_threads
from gradatlas.store import RecordStore, open_store
from gradatlas.suites import load_suite

SUITE = """
name: live-perf
dataset: {name: mnist1d}
model: {family: mlp, width: 64, activation: relu, init: kaiming_normal}
grid:
  depth: [3, 20]
train: {epochs: 24, batch_size: 128, optimizer: momentum, lr: 0.02}
instrument: {every: 10, max_points: 200}
"""
MODES = {"off": None, "default": 10.0, "every eval": 1e-9}


def write_cost(store: RecordStore, exp: str, messages: list[dict], result) -> tuple[float, float]:
    """(seconds to write the live messages, seconds to write the record into the live run)."""
    t0 = time.perf_counter()
    live: dict = {}
    write_live(store, exp, None, messages, live)  # as the recorder writes them
    t1 = time.perf_counter()
    write_unit(store, exp, None, [TrialWrite.of(result)], live=live)
    return t1 - t0, time.perf_counter() - t1


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    set_threads(1)  # as a sweep's worker trains: one torch thread

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "live.yaml"
        path.write_text(SUITE)
        suite = load_suite(str(path))
        store = open_store(f"sqlite:///{tmp}/mlflow.db")
        exp = suite_experiment(store, "live-perf")
        run_trial(suite.trials[0], accelerator="cpu")  # warm-up: data, kernels
        first = {}  # the first trial of each depth
        for t in suite.trials:
            first.setdefault(t.factors["depth"], t)
        for trial in first.values():
            for mode, every in MODES.items():
                wall, live_s, flushes, points, writes, record = [], [], [], [], [], []
                for _ in range(args.repeats):
                    messages: list[dict] = []
                    sink = None if every is None else LiveSink(messages.extend, every)
                    result = run_trial(trial, accelerator="cpu", live=sink)
                    wall.append(result.timing["wall_time_s"])
                    live_s.append(result.timing.get("live_time_s", 0.0))
                    flushes.append(sink.flushes if sink else 0)
                    points.append(sum(len(m.get("points", ())) for m in messages))
                    if sink is not None:
                        w, r = write_cost(store, exp, messages, result)
                        writes.append(w)
                        record.append(r)
                med = statistics.median
                rows.append(
                    {
                        "trial": trial.run_name,
                        "mode": mode,
                        "live_every_s": every,
                        "wall_s": round(med(wall), 3),
                        "live_s": round(med(live_s), 4),
                        "live_share": round(med(live_s) / med(wall), 4),
                        "flushes": med(flushes),
                        "points": med(points),
                        "live_writes_s": round(med(writes), 4) if writes else None,
                        "record_write_s": round(med(record), 4) if record else None,
                    }
                )

    print(f"live runs (cpu, 1 torch thread, median of {args.repeats}):")
    print(
        f"  {'trial':<28} {'mode':<11} {'wall':>7} {'live':>8} {'share':>7} {'flushes':>7} "
        f"{'points':>6} {'writes*':>8}"
    )
    for r in rows:
        writes = "" if r["live_writes_s"] is None else f"{r['live_writes_s']:.3f}s"
        print(
            f"  {r['trial']:<28} {r['mode']:<11} {r['wall_s']:>6.2f}s {r['live_s']:>7.4f}s "
            f"{100 * r['live_share']:>6.2f}% {r['flushes']:>7.0f} {r['points']:>6.0f} "
            f"{writes:>8}"
        )
    print("  * the live writes run in the recorder process during a sweep, not in the trial")
    out = {"benchmark": "live_flush", "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
