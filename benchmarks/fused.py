"""Trials per hour, one by one vs batched seeds vs fused trials, with the same labels per trial.

Two workloads (training only, in this process, ``runners.executor.run_unit`` per unit: what a
worker does; recording is measured by ``runner_overhead.py``):

- ``quickstart``: the default suite (54 trials, 18 cells of 3 seeds, 6 shapes);
- ``slice``: an atlas slice, MNIST-1D MLP width 64 at depths 5 and 20, ReLU, no norm, momentum,
  init x 3, weight decay x 3, dropout x 3, 4 seeds: 108 members per shape, 2 epochs.

Modes: ``one-by-one`` (every trial alone: ``--no-batch --no-fuse``), ``seeds`` (a cell's seeds
as one stacked model: ``--no-fuse``), ``fused`` (every trial of a shape as one unit, stacked as
far as the device's memory allows: the default). Every mode must give every trial the same
outcome label; the benchmark fails loudly if not.

    python benchmarks/fused.py --json docs/perf/fused_cpu.json --markdown docs/perf/fused_cpu.md
    python benchmarks/fused.py --accelerator gpu --json $OUT/fused_gpu.json ...
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import yaml

SLICE = {
    "name": "atlas-slice",
    "description": "atlas slice for benchmarks/fused.py",
    "dataset": {"name": "mnist1d", "seed": 0},
    "model": {"family": "mlp", "width": 64, "activation": "relu", "norm": "none"},
    "grid": {
        "depth": [5, 20],
        "init": ["kaiming_normal", "xavier_normal", "lecun_normal"],
        "weight_decay": [0, 1.0e-4, 1.0e-3],
        "dropout": [0.0, 0.1, 0.3],
    },
    "seeds": 4,
    "train": {"epochs": 2, "batch_size": 128, "optimizer": "momentum", "lr": 0.01},
    "instrument": {"every": 10, "max_points": 200},
}

MODES = {  # name -> (batch_seeds, fuse)
    "one-by-one": (1, False),
    "seeds": ("auto", False),
    "fused": ("auto", True),
}


def workload(name: str, epochs: int | None) -> list:
    from gradatlas.suites import load_suite

    overrides = [f"train.epochs={epochs}"] if epochs else []
    if name == "quickstart":
        return load_suite("quickstart", overrides).trials
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slice.yaml"
        path.write_text(yaml.safe_dump(SLICE, sort_keys=False))
        return load_suite(str(path), overrides).trials


def run_mode(trials: list, mode: str, accelerator: str, sample: int = 0) -> dict:
    """One mode over the workload's trials; ``sample`` > 0 times only that many trials, evenly
    spaced over the plan (one-by-one on a GPU is the slow mode a short session cannot afford
    whole): its trials per hour come from them, and its labels are checked on them."""
    from gradatlas.runners.executor import make_units, run_unit

    batch, fuse = MODES[mode]
    if sample and sample < len(trials):
        trials = [trials[round(i * len(trials) / sample)] for i in range(sample)]
    units = make_units(trials, batch_seeds=batch, fuse=fuse)
    labels: dict[str, str] = {}
    groups: list[int] = []
    t0 = time.perf_counter()
    for unit in units:
        out = run_unit(unit, accelerator=accelerator, threads=1)
        if out.failures:
            raise RuntimeError(f"{mode}: {out.failures[0].error}")
        labels |= {r.trial.trial_id: str(r.outcome.label) for r in out.results}
        groups += [int(r.timing["batch_seeds"]) for r in out.results]
    seconds = time.perf_counter() - t0
    return {
        "mode": mode,
        "timed_trials": len(trials),
        "units": len(units),
        "largest_group": max(groups),
        "seconds": seconds,
        "trials_per_hour": len(trials) / seconds * 3600,
        "labels": labels,
    }


def main() -> None:
    import torch

    from gradatlas.runners.trial import set_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--workload", action="append", choices=["quickstart", "slice"])
    ap.add_argument("--mode", action="append", choices=list(MODES))
    ap.add_argument("--epochs", type=int, help="override every workload's budget (a quick run)")
    ap.add_argument(
        "--sample-one-by-one",
        type=int,
        default=0,
        metavar="N",
        help="time N evenly spaced trials for the one-by-one mode, not all (a GPU session)",
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    set_threads(1)
    rows = []
    for name in args.workload or ["quickstart", "slice"]:
        trials = workload(name, args.epochs)
        sample = {"one-by-one": args.sample_one_by_one}
        results = [
            run_mode(trials, mode, args.accelerator, sample.get(mode, 0))
            for mode in args.mode or MODES
        ]
        reference = results[-1]["labels"]  # every trial's (the last mode runs them all)
        for r in results:
            labels = r.pop("labels")
            same = all(reference.get(tid) == label for tid, label in labels.items())
            if not same:
                last = results[-1]["mode"]
                raise SystemExit(f"{name}: {r['mode']} gave other labels than {last}")
            rows.append({"workload": name, "trials": len(trials), "same_labels": same} | r)
    by = {(r["workload"], r["mode"]): r for r in rows}
    device = torch.cuda.get_device_name(0) if args.accelerator == "gpu" else platform.processor()
    lines = [
        "| workload | trials | mode | units | largest stacked model | seconds | trials/hour "
        "| vs one-by-one | vs seeds | same labels |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def speedup(r: dict, base: str) -> str:
        other = by.get((r["workload"], base))
        return f"{r['trials_per_hour'] / other['trials_per_hour']:.2f}x" if other else "-"

    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['trials']} | {r['mode']}"
            + (f" ({r['timed_trials']} timed)" if r["timed_trials"] < r["trials"] else "")
            + f" | {r['units']} "
            f"| {r['largest_group']} | {r['seconds']:.1f} | {r['trials_per_hour']:,.0f} "
            f"| {speedup(r, 'one-by-one')} | {speedup(r, 'seeds')} | {r['same_labels']} |"
        )
    table = "\n".join(lines)
    print(table)
    meta = {
        "accelerator": args.accelerator,
        "device": device or platform.machine(),
        "torch": torch.__version__,
        "threads": 1,
        "epochs_override": args.epochs,
    }
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    if args.markdown:
        head = (
            f"# Fused trials: throughput ({args.accelerator})\n\n"
            f"`python benchmarks/fused.py --accelerator {args.accelerator}` on "
            f"{meta['device']} (1 torch thread, training only, in one process). Every mode "
            "gave every trial the same outcome label.\n\n"
        )
        args.markdown.write_text(head + table + "\n")


if __name__ == "__main__":
    main()
