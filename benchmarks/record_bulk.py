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
from pathlib import Path
from typing import Any

import numpy as np

from gradatlas.record import trial_metrics
from gradatlas.store import TrialWrite, open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synth_store

GOAL_MS = 5.0  # issue 20, item 5: amortized recording <= 5 ms a trial at 1,000 trials


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--unit", type=int, action="append", help="trials per unit (100, 1000)")
    ap.add_argument("--mode", action="append", choices=["client", "bulk"])
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each bulk row")
    ap.add_argument("--client-repeats", type=int, default=1, help="repeats of each client row")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
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
    meta = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "trials": len(writes),
        "metric_points_per_trial": round(points, 1),
        "record_ms_per_trial": round(own_ms, 3),
        "goal_ms_per_trial": GOAL_MS,
        "command": " ".join(["python", "benchmarks/record_bulk.py", *sys.argv[1:]]),
    }
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    if args.markdown:
        head = (
            "# Recording 1,000 trials: run by run vs one transaction per unit (cpu)\n\n"
            f"`{meta['command']}` on {meta['machine']}, SQLite store, "
            f"{points:.0f} metric points a trial.\n\n"
        )
        args.markdown.write_text(head + table + "\n")


if __name__ == "__main__":
    main()
