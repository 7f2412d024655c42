"""Benchmark: build the report of a 1,000- or 10,000-trial experiment; time it, by phase.

    python benchmarks/report_scale.py --trials 1000|10000 [--repeats 3] [--store DIR]
        [--regenerate] [--full-curves] [--json OUT]

The store is written once by ``synth_store.write_store`` (through the runner's own writers from
``gradatlas.record.TrialRecord``s: the record contract) and reused by later runs; 1,000 trials are
``synth_store.GRID`` x 5 seeds, 10,000 are ``GRID_10K`` (the same cross x width x normalization,
2,000 cells) x 5 seeds, the shape of ``suites/atlas.yaml``. Each repeat times

- ``build``: the ``gradatlas report`` command, run as a fresh process exactly as a user runs it
  (imports, the parallel PDF worker and the file writes included), and
- the phases, in another fresh process: ``build_report(parallel=False)`` timed by its own
  phase clock, ``load`` (MLflow -> frames, the plan's state), ``content`` (the document),
  ``html`` and ``pdf`` (each drawn alone, one after the other; the real build draws them at
  the same time on two processes, so its time is about load + content + the larger of the
  two + the imports).

Medians over the repeats are printed and saved, with the CPU seconds of the build (the command
and its PDF worker; on a machine shared with other work the wall time varies with its load, the
CPU time much less) and the load average. The bars are the issue's (1,000 trials in 15 s,
10,000 in 60 s, on a 2-core machine); like every benchmark here it reports, never fails on a
timing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth_store import GRIDS, SEEDS, cells, write_store

BARS_S = {1000: 15.0, 10000: 60.0}
PHASES = ("load", "content", "html", "pdf")


def store_name(trials: int) -> str:
    return f"synthetic-{trials}"


def ensure_store(store: Path, trials: int, regenerate: bool, full_curves: bool) -> str:
    """The store's tracking URI, writing it first when it is missing or incomplete."""
    uri = f"sqlite:///{store / 'mlflow.db'}"
    marker = store / "complete"
    if regenerate and store.exists():
        shutil.rmtree(store)
    if not marker.exists():
        if store.exists():
            shutil.rmtree(store)
        store.mkdir(parents=True)
        grid = GRIDS[trials]
        n = len(cells(grid)) * SEEDS
        print(f"writing a {n}-trial store to {store} (once; reused by later runs) ...", flush=True)
        info = write_store(
            uri,
            name=store_name(trials),
            full_curves=full_curves,
            grid=grid,
        )
        marker.write_text("ok\n")
        print(
            f"  {info['trials']} trials (+{info['set_aside']} older re-runs, "
            f"+{info['killed']} killed) written in {info['write_s']:.1f}s",
            flush=True,
        )
    return uri


def phases(name: str, uri: str) -> dict[str, float]:
    """One in-process build without the PDF worker, timed by phase (imports done first)."""
    # The store (MLflow) and the renderers are imported before the clock starts.
    import gradatlas.reports.html
    import gradatlas.reports.pdf
    import gradatlas.store.mlflow_store  # noqa: F401
    from gradatlas.reports.build import build_report
    from gradatlas.reports.load import load_experiment

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        build_report(name, tracking_uri=uri, out_dir=tmp, parallel=False, timings=times)
    exp = load_experiment(name, uri)  # for the counts only, untimed
    return {**times, "trials": len(exp.trials), "set_aside": exp.set_aside}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_build(name: str, uri: str, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds (the command and its PDF worker together) of one report build."""
    cmd = [sys.executable, "-m", "gradatlas", "report", name, "--tracking-uri", uri]
    cmd += ["--out", str(out)]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(proc.returncode)
    return wall, cpu


def timed_phases(name: str, uri: str) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--phases-of", name, "--tracking-uri", uri]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(proc.returncode)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, choices=sorted(GRIDS), default=1000)
    ap.add_argument("--repeats", type=int, default=3, help="builds timed (medians reported)")
    ap.add_argument("--store", type=Path, help="default: $TMPDIR/gradatlas-bench-report-TRIALS")
    ap.add_argument("--out", type=Path, default=None, help="report folder (default: STORE/report)")
    ap.add_argument("--regenerate", action="store_true", help="rewrite the store first")
    ap.add_argument(
        "--full-curves",
        action="store_true",
        help="log every curve point as a metric, as the runner does (slow to write)",
    )
    ap.add_argument("--json", type=Path, help="also write the numbers to this file")
    ap.add_argument("--phases-of", help=argparse.SUPPRESS)  # child: one timed in-process build
    ap.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phases_of:
        print(json.dumps(phases(args.phases_of, args.tracking_uri)))
        return 0

    store = args.store or Path(tempfile.gettempdir()) / f"gradatlas-bench-report-{args.trials}"
    uri = ensure_store(store, args.trials, args.regenerate, args.full_curves)
    name, out = store_name(args.trials), args.out or store / "report"
    print(f"$ gradatlas report {name} --tracking-uri {uri} --out {out}", flush=True)
    builds, cpus, runs = [], [], []
    for i in range(args.repeats):
        wall, cpu = timed_build(name, uri, out)
        builds.append(wall)
        cpus.append(cpu)
        runs.append(timed_phases(name, uri))
        shown = ", ".join(f"{p} {runs[-1][p]:.2f}s" for p in PHASES)
        print(f"  repeat {i + 1}: build {wall:.2f}s ({cpu:.1f} CPU-s); phases: {shown}", flush=True)
    med = {p: statistics.median(r[p] for r in runs) for p in PHASES}
    build = statistics.median(builds)
    bar = BARS_S[args.trials]
    print(f"trials in report: {runs[0]['trials']} (set aside: {runs[0]['set_aside']})")
    print(
        f"phases, median of {args.repeats} (in-process, imports excluded, html and pdf drawn one "
        "after the other): " + ", ".join(f"{p} {med[p]:.2f}s" for p in PHASES)
    )
    verdict = "under" if build <= bar else "OVER"
    print(
        f"{args.trials:,}-trial report build (gradatlas report, fresh process, "
        f"{os.cpu_count()} CPUs), median of {args.repeats}: {build:.1f}s "
        f"({verdict} the {bar:.0f}s bar); {statistics.median(cpus):.1f} CPU-s with its worker; "
        f"load average now {os.getloadavg()[0]:.1f}"
    )
    if args.json:
        numbers = {
            "benchmark": "report_scale",
            "trials": runs[0]["trials"],
            "set_aside": runs[0]["set_aside"],
            "cells": len(cells(GRIDS[args.trials])),
            "cpus": os.cpu_count(),
            "repeats": args.repeats,
            "build_s": round(build, 2),
            "builds_s": [round(b, 2) for b in builds],
            "build_cpu_s": round(statistics.median(cpus), 2),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "phases_s": {p: round(med[p], 2) for p in PHASES},
            "phases_runs_s": [{p: round(r[p], 2) for p in PHASES} for r in runs],
            "bar_s": bar,
            "command": f"python benchmarks/report_scale.py --trials {args.trials} "
            f"--repeats {args.repeats}",
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
