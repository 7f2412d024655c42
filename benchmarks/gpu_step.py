"""Where a fused step's time goes on a GPU: launches, host syncs, and what CUDA graphs would save.

Issue 20's item 4 asks to measure, step by step, whether capturing the stacked training step
(CUDA graphs) or removing per-step host work pays. Before building either into the trainer,
this measures the two quantities that decide it, on the atlas slice's shapes (MNIST-1D MLP
width 64, depth 5 and 20, momentum, no dropout: a captured step cannot swap random streams):

1. ``bare step``: milliseconds per training step of a stacked model of K members (forward, the
   per-member loss, backward, optimizer step; no Lightning, no instruments), eager vs replayed
   as one CUDA graph (``torch.cuda.graphs``). Eager minus graphed is the launch overhead a
   captured step would remove; on a CPU only the eager column exists.
2. ``trial step``: the same unit trained as gradatlas trains it (``runners.trial.run_trials``:
   Lightning, instruments, evaluation), milliseconds per step, and on CUDA the host syncs per
   step counted by ``torch.cuda.set_sync_debug_mode("warn")`` (each sync is a warning), and
   the run's peak GPU memory beside what the packing probe (``runners.packing.measure``)
   predicts for that many members. The trial step minus the bare eager step is what Lightning
   and the instruments add.

    python benchmarks/gpu_step.py --accelerator gpu --json $OUT/gpu_step.json
    python benchmarks/gpu_step.py --accelerator cpu --members 1 8 --steps 20   # a CPU check
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any

SUITE = {
    "name": "gpu-step",
    "dataset": {"name": "mnist1d", "seed": 0},
    "model": {"family": "mlp", "width": 64, "activation": "relu", "norm": "none"},
    "grid": {"depth": [5, 20]},
    "seeds": 1,
    "train": {"steps": 100, "batch_size": 128, "optimizer": "momentum", "lr": 0.01},
    "outcomes": {"target_accuracy": 0.99},  # no early stop: every step runs
}


def trials_of(depth: int, members: int, steps: int, dropout: float = 0.0) -> list[Any]:
    """``members`` trials of one shape (seeds 0..K-1) at ``depth``, each with ``dropout``."""
    import tempfile

    import yaml

    from gradatlas.suites import load_suite

    body = dict(SUITE, seeds=members, grid={"depth": [depth], "dropout": [dropout]})
    body["train"] = dict(SUITE["train"], steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.yaml"
        path.write_text(yaml.safe_dump(body))
        return load_suite(str(path)).trials


def build(trials: list[Any], device: Any) -> tuple[Any, Any, tuple[Any, Any]]:
    """The stacked module, its optimizer and one batch of every member, on ``device``."""
    from gradatlas.runners.loader import StackedBatches, trial_data
    from gradatlas.runners.packing import stacked_module

    specs = [t.spec for t in trials]
    data = trial_data(specs[0]).to(device)
    module, optimizer = stacked_module(specs, data, device, total_steps=100)
    seeds = [s.seed for s in specs]
    batch = next(iter(StackedBatches(data.x_train, data.y_train, specs[0].train.batch_size, seeds)))
    return module, optimizer, batch


def bare_step_ms(trials: list[Any], device: Any, steps: int, graph: bool) -> float:
    """Milliseconds per bare training step, eager or replayed from one captured CUDA graph."""
    import torch

    module, optimizer, batch = build(trials, device)

    def step() -> Any:
        optimizer.zero_grad(set_to_none=False)
        loss = module.training_step(batch, 0)["loss"]
        loss.backward()
        optimizer.step()
        return loss

    cuda = device.type == "cuda"
    if cuda:  # warm up on a side stream, as torch.cuda.graphs requires before a capture
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
    else:
        for _ in range(3):
            step()
    run = step
    if graph:
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            step()
        run = captured.replay
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        run()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps * 1e3


def trial_step(trials: list[Any], accelerator: str) -> dict[str, float]:
    """Milliseconds per step of ``run_trials`` (fit time / steps run), and host syncs per step."""
    import torch

    from gradatlas.runners.trial import run_trials

    run_trials(trials[:2], accelerator=accelerator)  # warm: imports, kernels, the data cache
    cuda = accelerator == "gpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            results = run_trials(trials, accelerator=accelerator)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(0)
    steps = float(results[0].summary["steps_run"])
    fit_s = results[0].timing["fit_time_s"] * len(trials)  # the group's, not a member's share
    syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
    out = {
        "ms_per_step": fit_s / steps * 1e3,
        "host_syncs_per_step": syncs / steps if cuda else float("nan"),
    }
    if cuda:  # the packing probe's prediction against the trial's own peak
        from gradatlas.runners.packing import measure

        out["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        out["probe_predicted_mib"] = (
            measure(trials, torch.device("cuda")).bytes_for(len(trials)) / 2**20
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    import torch

    from gradatlas.runners.trial import pick_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 16, 108])
    parser.add_argument("--depths", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="every member's dropout p: the bare step then swaps each member's random stream "
        "per dropout layer (eager only: a capture cannot swap them)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device = pick_device(args.accelerator)
    rows = []
    for depth in args.depths:
        for k in args.members:
            trials = trials_of(depth, k, args.steps, args.dropout)  # k = 1: a stack of one
            row: dict[str, Any] = {"depth": depth, "members": k, "dropout": args.dropout}
            row["bare_eager_ms"] = round(bare_step_ms(trials, device, args.steps, False), 3)
            if device.type == "cuda" and not args.dropout:
                try:
                    row["bare_graph_ms"] = round(bare_step_ms(trials, device, args.steps, True), 3)
                except Exception as exc:  # what capture refuses is itself a finding
                    row["bare_graph_ms"] = None
                    row["graph_error"] = f"{type(exc).__name__}: {exc}"[:300]
            if k > 1:
                row |= {key: round(v, 3) for key, v in trial_step(trials, args.accelerator).items()}
            print(json.dumps(row), flush=True)
            rows.append(row)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor()
    out = {"device": f"{device.type} {name}".strip(), "steps": args.steps, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
