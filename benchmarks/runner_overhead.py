"""How much does gradatlas cost over a plain PyTorch loop, and where does the time go?

For a few representative trials (shallow and deep MLPs on MNIST-1D) this times:
- ``plain``: the same model, data, optimizer and number of steps in a bare PyTorch loop
  (minibatches by index from tensors, no Lightning, no instrumentation, no evaluation);
- ``fit``: ``trainer.fit`` inside ``run_trial`` (Lightning + the instrument callback);
- ``instrument``: the time spent inside the instrument callback (per-step norms, per-layer
  records, evaluations);
- ``trial``: the whole ``run_trial`` (data from the in-process cache, model build, probe, fit,
  outcome);
- ``mlflow``: recording the trial (``runners.tracking.write_unit``: its run, ``trial.json``, its
  dataset and picture) into a fresh SQLite store.

Usage: python benchmarks/runner_overhead.py [--repeats 3] [--json OUT] [--accelerator cpu|gpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from gradatlas.datasets import load_dataset
from gradatlas.models import build_model
from gradatlas.optim import build_optimizer
from gradatlas.runners.loader import TensorBatches
from gradatlas.runners.module import loss_for
from gradatlas.runners.tracking import TrialWrite, suite_experiment, write_unit
from gradatlas.runners.trial import pick_device, run_trial
from gradatlas.store import open_store
from gradatlas.suites import load_suite

SUITE = """
name: perf
dataset: {name: mnist1d}
model: {family: mlp, width: 64, activation: relu, init: kaiming_normal}
grid:
  depth: [3, 20]
train: {epochs: 10, batch_size: 128, optimizer: momentum, lr: 0.02}
instrument: {every: 10, max_points: 200}
"""


def plain_loop(trial, device: torch.device) -> tuple[float, int]:
    """The baseline: what a researcher would write by hand, minus any measurement."""
    spec = trial.spec
    data = load_dataset(spec.dataset.name, spec.dataset.seed, spec.dataset.options).to(device)
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, data.input_shape, data.num_outputs).to(device)
    opt = build_optimizer(model.parameters(), spec.optim)
    loss_fn = loss_for(data.task)
    loader = TensorBatches(data.x_train, data.y_train, spec.train.batch_size, spec.seed)
    steps = spec.train.epochs * len(loader)
    done = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    while done < steps:
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            done += 1
            if done == steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, steps


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = pick_device(args.accelerator)

    with tempfile.TemporaryDirectory() as tmp:
        suite_path = Path(tmp) / "perf.yaml"
        suite_path.write_text(SUITE)
        suite = load_suite(str(suite_path))
        store = open_store(f"sqlite:///{tmp}/mlflow.db")
        exp = suite_experiment(store, "perf")

        def record(result) -> None:  # forced: each repeat is a new run of the same trial
            write_unit(store, exp, None, [TrialWrite.of(result)], force=True)

        # Warm-up: dataset generation/cache, torch kernels, MLflow schema creation.
        record(run_trial(suite.trials[0], accelerator=args.accelerator))
        plain_loop(suite.trials[0], device)

        rows = []
        for trial in suite.trials:
            samples: dict[str, list[float]] = {
                k: [] for k in ("plain", "fit", "instrument", "trial", "mlflow")
            }
            for _ in range(args.repeats):
                plain_s, steps = plain_loop(trial, device)
                result = run_trial(trial, accelerator=args.accelerator)
                t0 = time.perf_counter()
                record(result)
                samples["mlflow"].append(time.perf_counter() - t0)
                samples["plain"].append(plain_s)
                samples["fit"].append(result.timing["fit_time_s"])
                samples["instrument"].append(result.timing["instrument_time_s"])
                samples["trial"].append(result.timing["wall_time_s"])
            med = {k: statistics.median(v) for k, v in samples.items()}
            total = med["trial"] + med["mlflow"]
            rows.append(
                {
                    "trial": trial.run_name,
                    "steps": steps,
                    "device": str(device),
                    **{f"{k}_s": round(v, 4) for k, v in med.items()},
                    "plain_ms_per_step": round(1000 * med["plain"] / steps, 3),
                    "gradatlas_ms_per_step": round(1000 * med["fit"] / steps, 3),
                    "overhead_vs_plain": round(total / med["plain"] - 1, 3),
                    "overhead_per_trial_s": round(total - med["plain"], 3),
                    "instrument_share": round(med["instrument"] / total, 3),
                    "mlflow_share": round(med["mlflow"] / total, 3),
                }
            )

    print(f"runner overhead ({device}, median of {args.repeats}):")
    print(
        f"  {'trial':<26} {'steps':>5} {'plain':>7} {'trial+log':>9} {'overhead':>9} "
        f"{'per trial':>9} {'instr':>6} {'mlflow':>6}"
    )
    for r in rows:
        print(
            f"  {r['trial']:<26} {r['steps']:>5} {r['plain_s']:>6.2f}s "
            f"{r['trial_s'] + r['mlflow_s']:>8.2f}s {100 * r['overhead_vs_plain']:>8.0f}% "
            f"{r['overhead_per_trial_s']:>8.2f}s {100 * r['instrument_share']:>5.1f}% "
            f"{100 * r['mlflow_share']:>5.1f}%"
        )
    out = {"benchmark": "runner_overhead", "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
