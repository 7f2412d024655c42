"""Recording 1,000 trials into a fresh SQLite store: run by run through MLflow's client vs one
transaction per unit (``MlflowStore.record_unit``'s bulk path), in units of 100 and of 1,000.

The trials are ``synth_store``'s (the 1,000-trial grid, every curve logged as the runner logs it:
``trial_metrics`` thins each training and per-layer curve to 50 points and keeps the validation
curves whole, about 400 metric points a trial), written through ``record_unit`` only (no
pictures: ``runners.tracking.write_unit`` draws ``trial.png`` after it). A row's time is the sum
of its ``record_unit`` calls, divided by the trials: amortized ms per trial, the median of its
repeats (each on a fresh store, copied from one migrated store). ``load_trials`` must then give
every trial back. ``record ms`` is the part of each trial's time that is the record's own work,
not the store's (``trial_metrics`` and ``TrialRecord.to_json``), measured apart.

    python benchmarks/record_bulk.py --json docs/perf/record_bulk_cpu.json \\
        --markdown docs/perf/record_bulk_cpu.md

The client's path costs the same per trial whatever the unit (every run is its own round trips),
and minutes per 1,000 trials: ``--client-repeats`` (default 1) keeps its share of the run short.

``--live``: the recorder's live runs instead (``runners.recorder.write_live``): a fused unit of
1,000 trials starting (``start_live`` per trial vs one ``start_live_many``) and two flushes of
``--live-points`` steps of ``--live-curves`` curves per trial (``live_points`` per trial vs one
``live_points_many``; the second flush also updates every latest value), each timed alone, ms
per trial. Its table goes under "Live runs" in the same files (the rest is kept):

    python benchmarks/record_bulk.py --live --json docs/perf/record_bulk_cpu.json \\
        --markdown docs/perf/record_bulk_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gradatlas.record import (
    OutcomeLabel,
    RecordedOutcome,
    trial_metrics,
    trial_params,
    trial_tags,
)
from gradatlas.store import TrialWrite, open_store
from gradatlas.store.base import LiveStart

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synth_store

GOAL_MS = 5.0  # issue 20, item 5: amortized recording <= 5 ms a trial at 1,000 trials
LIVE_HEADING = "## Live runs"
LIVE_CURVES = ("train_loss", "grad_norm", "val_loss", "val_acc", "train_acc", "lr")


def make_writes(trials: int) -> list[TrialWrite]:
    """``trials`` synthetic trials of the 1,000-trial grid (cells x seeds, in plan order), each
    with its own start and end times, every curve point the runner would log."""
    rng = np.random.default_rng(0)
    plan = [(c, s) for c in synth_store.cells() for s in range(synth_store.SEEDS)][:trials]
    start = int(time.time() * 1000) - 3_600_000
    writes = []
    for i, (cell, seed) in enumerate(plan):
        rec = synth_store.record(cell, seed, "record-bulk", rng)
        writes.append(
            TrialWrite(rec, f"{rec.cell}-s{seed}", start_ms=start + i, end_ms=start + i + 2000)
        )
    return writes


def record_ms(writes: list[TrialWrite]) -> float:
    """The record's own work per trial (what either path pays before the store sees a row)."""
    t0 = time.perf_counter()
    for w in writes:
        trial_metrics(w.record)
        w.record.to_json()
    return (time.perf_counter() - t0) / len(writes) * 1000


def one_run(template: Path, writes: list[TrialWrite], unit: int, bulk: bool) -> dict[str, Any]:
    """Write every trial in units of ``unit`` into a fresh copy of ``template``; then read them
    back with ``load_trials``."""
    with tempfile.TemporaryDirectory(prefix="record-bulk-") as tmp:
        db = Path(tmp) / "mlflow.db"
        shutil.copyfile(template, db)
        store = open_store(f"sqlite:///{db}")
        store.bulk = bulk
        exp = store.open_experiment("record-bulk")
        t0 = time.perf_counter()
        for i in range(0, len(writes), unit):
            report = store.record_unit(exp, None, writes[i : i + unit])
            assert len(report.run_ids) == len(writes[i : i + unit]), "a trial was not written"
        seconds = time.perf_counter() - t0
        if bulk and store.bulk_fallbacks:
            raise SystemExit(f"the bulk path fell back: {store.bulk_fallbacks[0]}")
        t1 = time.perf_counter()
        loaded = store.load_trials(exp)
        load_s = time.perf_counter() - t1
        size_mb = db.stat().st_size / 1e6
    if len(loaded.trials) != len(writes) or loaded.rebuilt:
        raise SystemExit(f"load_trials gave {len(loaded.trials)} trials, not {len(writes)}")
    return {"seconds": seconds, "load_s": load_s, "loaded": len(loaded.trials), "db_mb": size_mb}


def live_starts(writes: list[TrialWrite]) -> list[LiveStart]:
    """The trials' starts as ``runners.live.start_message`` makes them (outcome ``running``)."""
    running = RecordedOutcome(OutcomeLabel.RUNNING, "training", {})
    out = []
    for w in writes:
        rec = replace(w.record, outcome=running)
        out.append(LiveStart(w.run_name, trial_tags(rec), trial_params(rec), w.start_ms))
    return out


def live_flush(trial: int, flush: int, steps: int, curves: int) -> list[tuple[str, float, int]]:
    """A flush's points for one trial: ``steps`` new steps of ``curves`` curves."""
    first = flush * steps
    return [
        (key, 1.0 / (1 + s + trial + c), s)
        for s in range(first, first + steps)
        for c, key in enumerate(LIVE_CURVES[:curves])
    ]


def live_run(
    template: Path, starts: list[LiveStart], many: bool, steps: int, curves: int
) -> dict[str, float]:
    """Start every live run, then two flushes, into a fresh copy of ``template``: each phase's
    seconds (the loop: one ``start_live`` / ``live_points`` per trial; ``many``: one call)."""
    with tempfile.TemporaryDirectory(prefix="record-bulk-live-") as tmp:
        db = Path(tmp) / "mlflow.db"
        shutil.copyfile(template, db)
        store = open_store(f"sqlite:///{db}")
        exp = store.open_experiment("record-bulk-live")
        sweep = "0" * 32
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        if many:
            runs = store.start_live_many(exp, sweep, starts)
        else:
            runs = [
                store.start_live(
                    exp, sweep, run_name=s.run_name, tags=s.tags, params=s.params,
                    start_ms=s.start_ms,
                )
                for s in starts
            ]  # fmt: skip
        out["start"] = time.perf_counter() - t0
        for flush in (0, 1):
            batch = [(run, live_flush(i, flush, steps, curves)) for i, run in enumerate(runs)]
            t0 = time.perf_counter()
            if many:
                written = store.live_points_many(batch)
            else:
                written = sum(store.live_points(run, pts) for run, pts in batch)
            out[f"flush{flush + 1}"] = time.perf_counter() - t0
            if written != len(runs) * steps * curves:
                raise SystemExit(f"flush {flush + 1} wrote {written} points")
        if store.bulk_fallbacks:
            raise SystemExit(f"the bulk path fell back: {store.bulk_fallbacks[0]}")
        if len(store.find_runs(exp, status="RUNNING")) != len(starts):
            raise SystemExit("not every live run is there")
    return out


def live_main(args: argparse.Namespace, meta: dict[str, Any]) -> None:
    """The ``--live`` section: loop vs many, ms per trial for each phase."""
    starts = live_starts(make_writes(args.trials))
    rows = []
    with tempfile.TemporaryDirectory(prefix="record-bulk-template-") as tmp:
        template = Path(tmp) / "mlflow.db"
        open_store(f"sqlite:///{template}")
        for mode in ("loop", "many"):
            repeats = args.repeats if mode == "many" else args.client_repeats
            runs = [
                live_run(template, starts, mode == "many", args.live_points, args.live_curves)
                for _ in range(repeats)
            ]
            for phase in ("start", "flush1", "flush2"):
                each = [r[phase] / len(starts) * 1000 for r in runs]
                row = {
                    "mode": mode,
                    "phase": phase,
                    "trials": len(starts),
                    "points_per_trial": 0
                    if phase == "start"
                    else args.live_points * args.live_curves,
                    "repeats": repeats,
                    "ms_per_trial": statistics.median(each),
                    "ms_per_trial_each": [round(x, 3) for x in each],
                    "seconds": statistics.median(r[phase] for r in runs),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    loop = {r["phase"]: r for r in rows if r["mode"] == "loop"}
    names = {
        "start": "start (create_run + params)",
        "flush1": "flush 1 (new metrics)",
        "flush2": "flush 2 (latest values updated)",
    }
    lines = [
        "| phase | path | trials | points per trial | repeats | ms per trial (median) "
        "| each repeat | s per call | vs loop |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speed = loop[r["phase"]]["ms_per_trial"] / r["ms_per_trial"]
        each = ", ".join(f"{x:.2f}" for x in r["ms_per_trial_each"])
        lines.append(
            f"| {names[r['phase']]} | {r['mode']} | {r['trials']} | {r['points_per_trial']} "
            f"| {r['repeats']} | {r['ms_per_trial']:.2f} | {each} | {r['seconds']:.2f} "
            f"| {speed:.1f}x |"
        )
    table = "\n".join(lines)
    print(table)
    meta = meta | {
        "live_points_per_curve": args.live_points,
        "live_curves": args.live_curves,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        data = json.loads(args.json.read_text()) if args.json.is_file() else {}
        data["live"] = {"meta": meta, "rows": rows}
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    if args.markdown:
        old = args.markdown.read_text() if args.markdown.is_file() else ""
        head = old.split(f"\n{LIVE_HEADING}", 1)[0].rstrip("\n")
        section = (
            f"{LIVE_HEADING}: a fused unit of {len(starts):,} trials, loop vs one call (cpu)\n\n"
            f"`{meta['command']}` on {meta['machine']} ({meta['cpus']} cores), SQLite store, "
            f"load average {meta['loadavg_at_start']} at the start. The recorder's live runs "
            "(`runners.recorder.write_live`): `loop` is one `start_live` / `live_points` per "
            "trial (MLflow's client: two transactions a start, one a flush), `many` one "
            "`start_live_many` / `live_points_many` per call (`MlflowStore`'s bulk path: one "
            "transaction). A flush is "
            f"{args.live_points} steps of {args.live_curves} curves a trial; the second flush "
            "also updates every latest value. Each phase is timed alone, on a fresh store.\n\n"
        )
        args.markdown.write_text((head + "\n\n" if head else "") + section + table + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--unit", type=int, action="append", help="trials per unit (100, 1000)")
    ap.add_argument("--mode", action="append", choices=["client", "bulk"])
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each bulk row")
    ap.add_argument("--client-repeats", type=int, default=1, help="repeats of each client row")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--live", action="store_true", help="the live-run section instead")
    ap.add_argument("--live-points", type=int, default=50, help="steps per curve in a flush")
    ap.add_argument("--live-curves", type=int, default=4, help=f"curves, of {len(LIVE_CURVES)}")
    args = ap.parse_args()
    if args.live:
        live_main(args, run_meta(args.trials))
        return
    units = args.unit or [100, 1000]
    modes = args.mode or ["client", "bulk"]

    writes = make_writes(args.trials)
    points = statistics.mean(len(trial_metrics(w.record)) for w in writes)
    own_ms = record_ms(writes)
    rows = []
    with tempfile.TemporaryDirectory(prefix="record-bulk-template-") as tmp:
        template = Path(tmp) / "mlflow.db"
        open_store(f"sqlite:///{template}")  # MLflow's migrations, once
        for mode in modes:
            for unit in units:
                repeats = args.repeats if mode == "bulk" else args.client_repeats
                runs = [one_run(template, writes, unit, mode == "bulk") for _ in range(repeats)]
                per_trial = [r["seconds"] / len(writes) * 1000 for r in runs]
                row = {
                    "mode": mode,
                    "unit": unit,
                    "trials": len(writes),
                    "repeats": repeats,
                    "ms_per_trial": statistics.median(per_trial),
                    "ms_per_trial_each": [round(x, 3) for x in per_trial],
                    "seconds": statistics.median(r["seconds"] for r in runs),
                    "load_trials": runs[0]["loaded"],
                    "load_s": statistics.median(r["load_s"] for r in runs),
                    "db_mb": runs[0]["db_mb"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    client = {r["unit"]: r for r in rows if r["mode"] == "client"}
    lines = [
        "| path | trials per unit | trials | repeats | ms per trial (median) | each repeat "
        "| vs client | record ms | load_trials | load s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = client.get(r["unit"])
        speed = f"{base['ms_per_trial'] / r['ms_per_trial']:.1f}x" if base else "-"
        each = ", ".join(f"{x:.2f}" for x in r["ms_per_trial_each"])
        lines.append(
            f"| {r['mode']} | {r['unit']} | {r['trials']} | {r['repeats']} "
            f"| {r['ms_per_trial']:.2f} | {each} | {speed} | {own_ms:.2f} "
            f"| {r['load_trials']} | {r['load_s']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    meta = run_meta(len(writes)) | {
        "metric_points_per_trial": round(points, 1),
        "record_ms_per_trial": round(own_ms, 3),
        "goal_ms_per_trial": GOAL_MS,
    }
    if args.json:  # what else the file holds (the ``--live`` section) is kept
        old = json.loads(args.json.read_text()) if args.json.is_file() else {}
        data = old | {"meta": meta, "rows": rows}
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    if args.markdown:
        head = (
            "# Recording 1,000 trials: run by run vs one transaction per unit (cpu)\n\n"
            f"`{meta['command']}` on {meta['machine']}, SQLite store, "
            f"{points:.0f} metric points a trial.\n\n"
        )
        old = args.markdown.read_text() if args.markdown.is_file() else ""
        tail = old[old.index(f"\n{LIVE_HEADING}") :] if f"\n{LIVE_HEADING}" in old else ""
        args.markdown.write_text(head + table + "\n" + tail)


def run_meta(trials: int) -> dict[str, Any]:
    """The machine and the command, for either section."""
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "trials": trials,
        "command": " ".join(["python", "benchmarks/record_bulk.py", *sys.argv[1:]]),
    }


if __name__ == "__main__":
    main()
