"""Batched seeds: seeds per second at K = 1, 2, 4, 8, 16 against one trial after another.

For the quickstart's d3 and d20 cells (MNIST-1D, MLP width 64, ReLU, He init, SGD+momentum,
batch 128) this times, everything included (Trainer, instruments, probes, outcome, and the
MLflow record of every member into a SQLite store):
- ``sequential``: one seed alone (``run_trial`` + record), the seeds/s of today's path;
- ``batched K``: K seeds as one stacked model (``run_trials`` + K records);
- ``plain``: one seed in a bare PyTorch loop (no Lightning, no instruments, no evaluation, no
  record), the floor a hand-written script would reach;
and, for the stacked linear layers, one forward+backward at K=8 as ``baddbmm`` (what
``models.stacked`` uses) against ``torch.func.vmap`` over the plain model.

    python benchmarks/batched_seeds.py --json docs/perf/batched_seeds_cpu.json \
        --markdown docs/perf/batched_seeds_cpu.md [--accelerator gpu --ks 1,8,16,32,64]
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

from gradatlas.runners.trial import pick_device, run_trial, run_trials, set_threads
from gradatlas.suites import load_suite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner_overhead import plain_loop  # noqa: E402  (a sibling script, not a package)

SUITE = """
name: batched
dataset: {name: mnist1d}
model: {family: mlp, width: 64, activation: relu, init: kaiming_normal}
grid:
  depth: [3, 20]
seeds: SEEDS
train: {epochs: EPOCHS, batch_size: 128, optimizer: momentum, lr: 0.02}
instrument: {every: 10, max_points: 200}
outcomes: {target_accuracy: 0.99}   # no early stop: every seed runs its whole budget
"""


def _timed(fn, sync: bool) -> float:
    if sync:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def linear_kernels(depth: int, k: int, device: torch.device, repeats: int = 20) -> dict:
    """ms per forward+backward of K stacked MLPs (batch 128): baddbmm vs vmap."""
    from torch.func import functional_call, stack_module_state, vmap

    from gradatlas.models.stacked import stack_models

    trial = _cells(depth_only=depth, seeds=k, epochs=1)[0]
    spec = trial[0].spec
    from gradatlas.models import build_model

    models = []
    for t in trial:
        torch.manual_seed(t.spec.seed)
        models.append(build_model(spec.model, (40,), 10).to(device))
    stacked = stack_models(models)
    x = torch.randn(k, 128, 40, device=device)
    params, buffers = stack_module_state(models)
    base = models[0]

    def call(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    batched_call = vmap(call)

    def run_bmm():
        stacked.zero_grad(set_to_none=True)
        stacked(x).sum().backward()

    def run_vmap():
        for p in params.values():
            p.grad = None
        batched_call(params, buffers, x).sum().backward()

    sync = device.type == "cuda"
    out = {}
    for name, fn in (("baddbmm", run_bmm), ("vmap", run_vmap)):
        fn()  # warm-up
        out[f"{name}_ms"] = 1000 * statistics.median(_timed(fn, sync) for _ in range(repeats))
    return out


def _cells(depth_only: int | None = None, seeds: int = 16, epochs: int = 4) -> list[list]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batched.yaml"
        path.write_text(SUITE.replace("SEEDS", str(seeds)).replace("EPOCHS", str(epochs)))
        suite = load_suite(str(path))
    cells: dict[str, list] = {}
    for t in suite.trials:
        if depth_only is None or t.spec.model.depth == depth_only:
            cells.setdefault(t.cell_id, []).append(t)
    return list(cells.values())


def main(argv: list[str] | None = None) -> dict:
    from gradatlas.runners.tracking import Tracker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", default="1,2,4,8,16", help="comma-separated K values")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    ks = [int(k) for k in args.ks.split(",")]
    device = pick_device(args.accelerator)
    rows, kernels = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db")
        exp = tracker.ensure_experiment("batched")
        for cell in _cells(seeds=max(ks), epochs=args.epochs):
            depth = cell[0].spec.model.depth
            tracker.record_trial(exp, None, run_trial(cell[0], accelerator=args.accelerator))

            def sequential(cell=cell) -> float:
                t0 = time.perf_counter()
                tracker.record_trial(exp, None, run_trial(cell[0], accelerator=args.accelerator))
                return time.perf_counter() - t0

            def batched(k: int, cell=cell) -> float:
                t0 = time.perf_counter()
                for r in run_trials(cell[:k], accelerator=args.accelerator):
                    tracker.record_trial(exp, None, r)
                return time.perf_counter() - t0

            seq = statistics.median(sequential() for _ in range(args.repeats))
            plain = statistics.median(plain_loop(cell[0], device)[0] for _ in range(args.repeats))
            for k in ks:
                wall = statistics.median(batched(k) for _ in range(args.repeats))
                rows.append(
                    {
                        "cell": f"d{depth}",
                        "K": k,
                        "device": str(device),
                        "epochs": args.epochs,
                        "wall_s": round(wall, 3),
                        "seeds_per_s": round(k / wall, 3),
                        "speedup_vs_sequential": round(seq * k / wall, 2),
                        "cost_per_seed_vs_plain": round(wall / k / plain, 2),
                        "sequential_s": round(seq, 3),
                        "plain_s": round(plain, 3),
                    }
                )
                print(rows[-1], flush=True)
            kernels.append(
                {"cell": f"d{depth}", "K": 8, **linear_kernels(depth, 8, device)}
            )
    lines = [
        f"Batched seeds on {device} ({args.threads} torch thread(s)), {args.epochs} epochs of "
        "MNIST-1D (batch 128), median of "
        f"{args.repeats}; every time includes the MLflow record of each member.",
        "",
        "| cell | K | wall (s) | seeds/s | speedup vs sequential | cost per seed vs plain loop |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['cell']} | {r['K']} | {r['wall_s']:.2f} | {r['seeds_per_s']:.2f} "
        f"| {r['speedup_vs_sequential']:.2f}x | {r['cost_per_seed_vs_plain']:.2f}x |"
        for r in rows
    ]
    lines += [
        "",
        "Stacked linear layers, one forward+backward at K=8, batch 128 (ms):",
        "",
        "| cell | baddbmm | vmap |",
        "|---|---|---|",
    ]
    lines += [f"| {r['cell']} | {r['baddbmm_ms']:.2f} | {r['vmap_ms']:.2f} |" for r in kernels]
    table = "\n".join(lines)
    print(table)
    out = {"benchmark": "batched_seeds", "rows": rows, "kernels": kernels}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text("# Batched seeds: throughput\n\n" + table + "\n")
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
