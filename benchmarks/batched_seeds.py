"""Batched seeds: seeds per second at K = 1, 2, 4, 8, 16 against one trial after another.

For six quickstart cells at depth 3 and at depth 20 (MNIST-1D, MLP width 64, SGD+momentum,
batch 128) this times, everything included (``run_suite`` into a SQLite store: Trainer,
instruments, probes, outcome, the MLflow record of every member):
- ``sequential``: the same K seeds one by one (``batch_seeds=1``), today's path;
- ``batched K``: K seeds as one stacked model (``batch_seeds=K``), and the same training
  without any record (``run_trials``) to show what MLflow costs;
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

from gradatlas.runners.trial import pick_device, run_trials, set_threads
from gradatlas.suites import load_suite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner_overhead import plain_loop

SUITE = """
name: batched
dataset: {name: mnist1d}
model: {family: mlp, width: 64}
grid:
  depth: [3, 20]
  activation: [relu, tanh, sigmoid]
  init: [kaiming_normal, xavier_normal]
seeds: SEEDS
train: {epochs: EPOCHS, batch_size: 128, optimizer: momentum, lr: 0.02}
instrument: {every: 10, max_points: 200}
outcomes: {target_accuracy: 0.99}   # no early stop: every seed runs its whole budget
# (the quickstart's cells less the N(0, 1) init, whose explosions would end trials early)
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

    from gradatlas.models import build_model
    from gradatlas.models.stacked import stack_models

    trials = _suite(depth, k, 1, "kernels").trials
    trials = [t for t in trials if t.cell_id == trials[0].cell_id]  # one cell's K seeds
    spec = trials[0].spec
    models = []
    for t in trials:
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


ONE_CELL: list[str] = []  # --one-cell: relu x He only (short GPU sessions)


def _suite(depth: int, seeds: int, epochs: int, name: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batched.yaml"
        text = SUITE.replace("SEEDS", str(seeds)).replace("EPOCHS", str(epochs))
        path.write_text(text.replace("name: batched", f"name: {name}"))
        return load_suite(str(path), [f"grid.depth=[{depth}]", *ONE_CELL])


def sweep_seconds(
    uri: str, depth: int, k: int, batch: int, epochs: int, tag: str, accelerator: str
) -> float:
    """``run_suite`` of six cells x K seeds into the store, as a user runs it: everything in,
    the recorder process's start-up (~2 s, once per sweep) too."""
    import io

    from gradatlas.runners.executor import InProcessExecutor
    from gradatlas.runners.sweep import run_suite

    suite = _suite(depth, k, epochs, f"b-{tag}")
    executor = InProcessExecutor(accelerator=accelerator)
    t0 = time.perf_counter()
    summary = run_suite(
        suite,
        uri,
        executor=executor,
        accelerator=accelerator,
        batch_seeds=batch,
        stream=io.StringIO(),
    )
    wall = time.perf_counter() - t0
    assert summary.ran == len(suite.trials), summary
    return wall


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", default="1,2,4,8,16", help="comma-separated K values")
    ap.add_argument("--depths", default="3,20")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--one-cell", action="store_true", help="relu x He only (GPU sessions)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    if args.one_cell:
        ONE_CELL[:] = ["grid.activation=[relu]", "grid.init=[kaiming_normal]"]
    set_threads(args.threads)
    ks = [int(k) for k in args.ks.split(",")]
    device = pick_device(args.accelerator)
    rows, kernels = [], []
    runs = iter(range(10**6))
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        for depth in (int(d) for d in args.depths.split(",")):
            sweep_seconds(
                uri, depth, 1, 1, args.epochs, f"warm{depth}", args.accelerator
            )  # store, caches, kernels

            def timed(k: int, batch: int, depth=depth) -> float:
                return statistics.median(
                    sweep_seconds(
                        uri, depth, k, batch, args.epochs, f"{next(runs)}", args.accelerator
                    )
                    for _ in range(args.repeats)
                )

            trials = _suite(depth, max(ks), args.epochs, "plain").trials
            cells: dict[str, list] = {}
            for t in trials:
                cells.setdefault(t.cell_id, []).append(t)
            n_cells = len(cells)
            plain = statistics.mean(  # one seed of each cell in a bare loop, per seed
                statistics.median(plain_loop(c[0], device)[0] for _ in range(args.repeats))
                for c in cells.values()
            )
            for k in ks:
                seeds = n_cells * k
                seq = timed(k, 1) / seeds  # the same seeds one by one: today's path, per seed
                wall = timed(k, k)
                t0 = time.perf_counter()
                for c in cells.values():
                    run_trials(c[:k], accelerator=args.accelerator)
                train = time.perf_counter() - t0
                rows.append(
                    {
                        "cell": f"d{depth}",
                        "K": k,
                        "device": str(device),
                        "epochs": args.epochs,
                        "seeds": seeds,
                        "wall_s": round(wall, 3),
                        "seeds_per_s": round(seeds / wall, 3),
                        "speedup_vs_sequential": round(seq * seeds / wall, 2),
                        "cost_per_seed_vs_plain": round(wall / seeds / plain, 2),
                        "train_only_per_seed_vs_plain": round(train / seeds / plain, 2),
                        "sequential_s_per_seed": round(seq, 3),
                        "plain_s": round(plain, 3),
                    }
                )
                print(rows[-1], flush=True)
            kernels.append({"cell": f"d{depth}", "K": 8, **linear_kernels(depth, 8, device)})
    lines = [
        f"Batched seeds on {device} ({args.threads} torch thread(s)), {args.epochs} epochs of "
        f"MNIST-1D (batch 128), median of {args.repeats}. Sweep wall: `run_suite` of "
        f"{'1 cell (relu x He)' if args.one_cell else '6 cells'} "
        "(activation relu/tanh/sigmoid x init He/Xavier) x K seeds (batch_seeds=K) into a "
        "SQLite store, everything included (Trainer, instruments, probes, outcome, MLflow, "
        "the recorder's start-up). Sequential: the same seeds one by one (batch_seeds=1). "
        "Plain loop: one seed per cell, bare PyTorch, no instruments, no record (mean).",
        "",
        "| depth | K | seeds | sweep wall (s) | seeds/s | speedup vs sequential "
        "| cost per seed vs plain loop | same, training only (no MLflow) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['cell']} | {r['K']} | {r['seeds']} | {r['wall_s']:.2f} | {r['seeds_per_s']:.2f} "
        f"| {r['speedup_vs_sequential']:.2f}x | {r['cost_per_seed_vs_plain']:.2f}x "
        f"| {r['train_only_per_seed_vs_plain']:.2f}x |"
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
