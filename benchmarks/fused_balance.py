"""Fused units on several workers: whole units vs units split for balance (``batching.balanced``).

Fusion leaves few, unequal units: the atlas slice of ``benchmarks/fused.py`` is two, a depth-5
shape and a depth-20 shape with about twice its work, so on two workers one worker idles once
its unit is done. ``balanced`` cuts units larger than half a worker's share into pieces.
This runs the slice as a user would (``runners.sweep.run_suite``: training, the driver's MLflow
record) on one Ray instance of ``--workers`` CPU workers, into a fresh SQLite store per mode,
and compares wall time and every trial's outcome label.

- ``whole``: the units as fusion makes them (``balanced`` replaced by the identity: the
  behaviour before it existed);
- ``balanced``: the sweep as it runs now.

    python benchmarks/fused_balance.py --json docs/perf/fused_balance_cpu.json \
        --markdown docs/perf/fused_balance_cpu.md
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fused import SLICE  # the same slice as the fused-trials benchmark


def run_mode(suite_path: Path, store_dir: Path, executor, mode: str) -> dict:
    import gradatlas
    from gradatlas.runners import sweep
    from gradatlas.runners.batching import balanced
    from gradatlas.suites import load_suite

    suite = load_suite(str(suite_path))
    uri = f"sqlite:///{store_dir / (mode + '.db')}"
    sweep.balanced = balanced if mode == "balanced" else (lambda units, workers: list(units))
    try:
        t0 = time.perf_counter()
        sweep.run_suite(suite, uri, executor=executor, stream=io.StringIO())
        wall = time.perf_counter() - t0
    finally:
        sweep.balanced = balanced
    frame = gradatlas.results(str(suite_path), tracking_uri=uri)
    labels = dict(zip(frame["trial_id"], frame["outcome"].astype(str), strict=True))
    return {"mode": mode, "seconds": round(wall, 2), "trials": len(labels), "labels": labels}


def main(argv: list[str] | None = None) -> dict:
    import yaml

    from gradatlas.runners.batching import balanced, trial_work
    from gradatlas.runners.executor import RayExecutor, make_units, plan_workers
    from gradatlas.suites import load_suite

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode (min is quoted)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "atlas-slice.yaml"
        body = dict(SLICE, train=dict(SLICE["train"], epochs=args.epochs))
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        trials = load_suite(str(path)).trials
        whole = make_units(trials, "auto", fuse=True)
        split = balanced(whole, args.workers)
        executor = RayExecutor(
            plan_workers(args.workers, accelerator="cpu", gpus_per_worker=None, threads=1),
            accelerator="cpu",
        )
        runs: dict[str, list[dict]] = {"whole": [], "balanced": []}
        try:
            for r in range(args.repeats):
                for mode in ("whole", "balanced"):
                    store = Path(tmp) / f"{mode}-{r}"
                    store.mkdir()
                    runs[mode].append(run_mode(path, store, executor, mode))
                    print(mode, runs[mode][-1]["seconds"], "s", flush=True)
        finally:
            executor.close()
    labels = [run["labels"] for mode in runs.values() for run in mode]
    same = all(lb == labels[0] for lb in labels)
    if not same:
        raise SystemExit("the modes gave different outcome labels: splitting changed results")

    def unit_works(units) -> list[float]:
        return [round(sum(trial_work(t) for t in u.trials) / 1e3, 1) for u in units]

    best = {mode: min(r["seconds"] for r in rs) for mode, rs in runs.items()}
    out = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "workers": args.workers,
        "trials": len(trials),
        "epochs": args.epochs,
        "units_whole": [len(u.trials) for u in whole],
        "units_balanced": [len(u.trials) for u in split],
        "work_whole_k": unit_works(whole),
        "work_balanced_k": unit_works(split),
        "seconds": {mode: [r["seconds"] for r in rs] for mode, rs in runs.items()},
        "best_seconds": best,
        "speedup": round(best["whole"] / best["balanced"], 2),
        "same_labels": same,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(out))
    return out


def markdown(out: dict) -> str:
    return (
        f"# Fused units on {out['workers']} workers: whole vs balanced (cpu)\n\n"
        "`python benchmarks/fused_balance.py` on "
        f"{out['machine']}: the atlas slice ({out['trials']} trials, {out['epochs']} epochs) "
        f"through `run_suite` on {out['workers']} Ray CPU workers (1 torch thread each), "
        "training and the MLflow record, each mode into a fresh SQLite store; the time is the "
        "best of the runs, Ray's start-up excluded (one instance serves every run).\n\n"
        "| mode | units (trials each) | work per unit (relative, thousands) | runs (s) "
        "| best (s) |\n"
        "|---|---|---|---|---|\n"
        f"| whole | {out['units_whole']} | {out['work_whole_k']} | "
        f"{out['seconds']['whole']} | {out['best_seconds']['whole']} |\n"
        f"| balanced | {out['units_balanced']} | {out['work_balanced_k']} | "
        f"{out['seconds']['balanced']} | {out['best_seconds']['balanced']} |\n\n"
        f"Balanced is {out['speedup']}x faster; every run gave every trial the same outcome "
        f"label: {out['same_labels']}.\n"
    )


if __name__ == "__main__":
    main()
