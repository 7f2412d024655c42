"""What a trial asks of a device, counted at torch's dispatcher: kernels and host reads.

On a GPU a small network's step is launch-bound: it costs about (kernels launched) x (a few
microseconds of host work each), and every read of a device value on the host (``.item()``,
``float(t)``, ``.tolist()``, ``.cpu()``) waits until the queue drains. Both are properties of
the code, not of the device: the same Python issues the same aten ops on a CPU and on CUDA. So
they can be counted on any machine, and a change that adds a kernel per member per step, or a
sync per step, shows up here before it shows up on a GPU bill.

Counted while ``runners.trial.run_trials`` trains one stacked group of K members, with a
``TorchDispatchMode`` (aten ops: *compute* ops launch a kernel on a GPU; *views* and
allocations do not) and a ``TorchFunctionMode`` (host reads: the tensor methods above), each
attributed by where it happens:

- ``setup``: building, initializing and probing each member, before training (per member);
- ``step``: the training steps, amortized over the steps run (the instrument's periodic
  per-layer records included: they are part of what a step costs on average);
- ``check``: the instrument's explosion check, the one deliberate host read while training
  (every step on a CPU, where it is free; every ``instrument.every`` steps on an accelerator);
- ``fit``: Lightning's once-per-fit work around the steps (it moves the model to the device
  and, at teardown, back to the CPU);
- ``epoch``: each member's shuffled batch order, drawn on the host once an epoch;
- ``eval``: the evaluations (every ``eval_every`` steps, plus the test split at the end);
- ``record``: moving the instrument's record to host memory after training (per member).

The counts are of dispatcher calls. One ``_foreach_*`` op is counted once (on CUDA it launches
one kernel per chunk of tensors), and a composite op is counted as the ops it decomposes into.

    python benchmarks/step_anatomy.py --json docs/perf/step_anatomy_cpu.json \\
        --markdown docs/perf/step_anatomy_cpu.md
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

# The atlas slice's shape (benchmarks/fused.py): MNIST-1D MLP width 64, relu, momentum.
BASE = {
    "name": "step-anatomy",
    "dataset": {"name": "mnist1d", "seed": 0},
    "model": {"family": "mlp", "width": 64, "activation": "relu", "norm": "none"},
    "train": {"steps": 40, "batch_size": 128, "optimizer": "momentum", "lr": 0.01},
    "instrument": {"every": 10},
    "outcomes": {"target_accuracy": 0.99},  # no early stop: every step runs
}

# name -> grid (the members are the grid's cells x seeds; ``members`` sets the seeds)
CASES: dict[str, dict[str, Any]] = {
    "plain": {},
    "dropout 0.1": {"dropout": [0.1]},
    "mixed lr x clip": {"lr": [0.01, 0.1], "grad_clip": [1.0, 5.0]},
}

# Host reads: the tensor methods that bring a value to the host (on CUDA, a sync). ``numpy``
# is not one of them: on a GPU it only follows a ``cpu``, which is counted.
HOST_READS = frozenset(
    {"item", "tolist", "cpu", "__float__", "__int__", "__bool__", "__index__", "__array__"}
)
# Allocations: no kernel on a GPU (the caching allocator hands out memory).
ALLOCATIONS = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"})


REPO = Path(__file__).resolve().parents[1]


@functools.cache
def _fit_line() -> int:
    """The line of ``run_trials`` that calls ``fit``: before it is set-up, after it the record."""
    import inspect

    from gradatlas.runners.trial import run_trials

    lines, first = inspect.getsourcelines(run_trials)
    return first + next(i for i, line in enumerate(lines) if line.strip().startswith("fit("))


def phase_of(frame: Any) -> str:
    """Which part of the trial the innermost gradatlas frame on the stack belongs to."""
    in_step = False
    while frame is not None:
        code = frame.f_code
        name, path = code.co_name, code.co_filename
        if name == "_check_explosion" and path.endswith("instrument.py"):
            return "check"
        if name == "evaluate" and path.endswith(("module.py", "trial.py")):
            return "eval"
        if name == "__iter__" and path.endswith("loader.py"):
            return "epoch"  # each member's batch order, drawn once an epoch
        if name == "arrays" and path.endswith("instrument.py"):
            return "record"
        if name == "on_train_start" and path.endswith("instrument.py"):
            return "eval"  # the evaluation at step 0 (and the instrument's buffers)
        if name == "advance" and path.endswith("training_epoch_loop.py"):
            in_step = True  # one training step (batch, forward, backward, optimizer, hooks)
        if name == "fit" and path.endswith("callbacks.py"):
            # an inner frame (check, eval) has already answered; outside a step: Lightning's
            # once-per-fit work (moving the model to the device and back, its loops' set-up)
            return "step" if in_step else "fit"
        if name == "run_trials" and path.endswith("trial.py"):
            return "setup" if frame.f_lineno < _fit_line() else "record"
        frame = frame.f_back
    return "setup"


class Counts:
    """Ops and host reads per phase, and each host read's source line."""

    def __init__(self) -> None:
        self.ops: collections.Counter[tuple[str, str]] = collections.Counter()
        self.reads: collections.Counter[str] = collections.Counter()
        self.read_sites: collections.Counter[tuple[str, str]] = collections.Counter()

    def op(self, func: Any) -> None:
        if func.is_view or func.overloadpacket.__name__ == "detach":
            kind = "view"
        elif func.overloadpacket.__name__ in ALLOCATIONS:
            kind = "alloc"
        elif func.overloadpacket.__name__ == "_local_scalar_dense":
            return  # the dispatcher's half of a host read, counted as the read
        else:
            kind = "compute"
        self.ops[(phase_of(sys._getframe(2)), kind)] += 1

    def read(self, name: str) -> None:
        frame = sys._getframe(2)
        phase = phase_of(frame)
        self.reads[phase] += 1
        while frame is not None and not _ours(frame.f_code.co_filename):
            frame = frame.f_back
        site = f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}" if frame else "?"
        self.read_sites[(phase, f"{site} {name}")] += 1


def _ours(path: str) -> bool:
    """A gradatlas source file (not the venv's packages, not this benchmark)."""
    return path.startswith(str(REPO)) and "/.venv/" not in path and "/benchmarks/" not in path


def counting(counts: Counts) -> tuple[Any, Any]:
    """The two modes that feed ``counts``: enter both around the work."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            counts.op(func)
            return func(*args, **(kwargs or {}))

    class Reads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            if name in HOST_READS:
                counts.read(name)
            return func(*args, **(kwargs or {}))

    return Reads(), Ops()


def trials_of(
    grid: dict[str, Any], depth: int, members: int, steps: int | None = None
) -> list[Any]:
    """The members of one stacked group: the grid's cells at ``depth``, seeds to make up
    ``members`` (which must be a multiple of the number of cells), ``steps`` (default BASE's)."""
    from gradatlas.suites import load_suite

    cells = _cells(grid)
    if members % cells:
        raise ValueError(f"{members} members is not a multiple of the grid's {cells} cells")
    body = dict(BASE, seeds=members // cells, grid=dict(grid, depth=[depth]))
    if steps is not None:
        body["train"] = dict(BASE["train"], steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.yaml"
        path.write_text(yaml.safe_dump(body))
        return load_suite(str(path)).trials


def anatomy(trials: list[Any], accelerator: str = "cpu") -> dict[str, Any]:
    """Counts for one stacked group trained by ``run_trials`` on ``accelerator``."""
    from gradatlas.runners.loader import trial_data
    from gradatlas.runners.trial import run_trials

    trial_data(trials[0].spec)  # the dataset, built once per process: not a member's set-up
    counts = Counts()
    reads, ops = counting(counts)
    with reads, ops:
        results = run_trials(trials, accelerator=accelerator)
    k = len(trials)
    steps = int(results[0].summary["steps_run"])
    every = trials[0].spec.instrument.every

    def ops_of(phase: str, kind: str = "compute") -> int:
        return counts.ops[(phase, kind)]

    return {
        "members": k,
        "steps": steps,
        "step_compute_ops": round(ops_of("step") / steps, 1),
        "step_views": round(ops_of("step", "view") / steps, 1),
        "step_host_reads": round(counts.reads["step"] / steps, 3),
        "check_host_reads": counts.reads["check"],
        "accelerator_checks_per_step": round(1 / every, 3),
        "fit_compute_ops": ops_of("fit"),
        "fit_host_reads": counts.reads["fit"],
        "eval_compute_ops": ops_of("eval"),
        "eval_host_reads": counts.reads["eval"],
        "setup_compute_ops_per_member": round(ops_of("setup") / k, 1),
        "setup_host_reads_per_member": round(counts.reads["setup"] / k, 1),
        "record_host_reads_per_member": round(counts.reads["record"] / k, 1),
        "record_host_reads": counts.reads["record"],
        "read_sites": {f"{p}: {s}": v for (p, s), v in sorted(counts.read_sites.items())},
    }


def markdown(out: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """The table for docs/perf; ``before``: an earlier run's JSON, whose host reads are shown
    beside these for the rows both have."""
    earlier = {(r["case"], r["depth"], r["members"]): r for r in (before or {}).get("rows", [])}

    def was(row: dict[str, Any], key: str, scale: int = 1) -> str:
        old = earlier.get((row["case"], row["depth"], row["members"]))
        return "" if old is None else f" (was {round(old[key] * scale, 0 if scale > 1 else 1):g})"

    lines = [
        "# What a trial asks of a device: kernels and host reads (counted on "
        f"{out.get('accelerator', 'cpu').upper()})",
        "",
        f"`python benchmarks/step_anatomy.py` at {out['commit']} (torch {out['torch']}): one "
        "stacked group of K members trained by `runners.trial.run_trials` (MNIST-1D MLP width "
        f"64, relu, momentum, {BASE['train']['steps']} steps of batch 128, per-layer records "
        f"every {BASE['instrument']['every']} steps), counted at torch's dispatcher. A GPU runs "
        "the same aten ops: *compute ops* launch a kernel there (views and allocations do not), "
        "and a *host read* (`.item()`, `float(t)`, `.tolist()`, `.cpu()`) is a sync. The one "
        "difference: on CUDA `F.dropout` is one fused kernel where the CPU counts three "
        "(`bernoulli_`, `div_`, `mul`).",
        "",
        "| case | depth | K | compute ops / step | host reads / step | set-up: compute ops "
        "/ member | set-up: host reads / member | record: host reads / group |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        k = r["members"]
        record = r.get("record_host_reads", round(r["record_host_reads_per_member"] * k))
        lines.append(
            f"| {r['case']} | {r['depth']} | {k} | {r['step_compute_ops']:g} | "
            f"{r['step_host_reads']:g}{was(r, 'step_host_reads')} | "
            f"{r['setup_compute_ops_per_member']:g} | "
            f"{r['setup_host_reads_per_member']:g}{was(r, 'setup_host_reads_per_member')} | "
            f"{record}{was(r, 'record_host_reads_per_member', k)} |"
        )
    if before:
        lines += ["", f"*was*: the same count at {before['commit']}."]
    lines += [
        "",
        "Not in the table, the same in every row: the explosion check reads one value a step "
        "on a CPU (where it is free) and one every `instrument.every` steps elsewhere; "
        "Lightning's own set-up and teardown of a fit read a few values and move the model "
        "back to the CPU, once per fit; each member's batch order is a host `randperm` once an "
        "epoch; the evaluations read nothing.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import subprocess

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="cpu", help="cpu, or gpu: the real CUDA path")
    parser.add_argument("--depths", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--before", type=Path, help="an earlier run's JSON, shown beside")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for case in args.cases:
        for depth in args.depths:
            for k in args.members:
                if k % max(1, _cells(CASES[case])):
                    continue
                row = {"case": case, "depth": depth} | anatomy(
                    trials_of(CASES[case], depth, k), args.accelerator
                )
                print(json.dumps({key: v for key, v in row.items() if key != "read_sites"}))
                rows.append(row)
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = {
        "commit": commit or "unknown",
        "torch": torch.__version__,
        "accelerator": args.accelerator,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.markdown:
        before = json.loads(args.before.read_text()) if args.before else None
        args.markdown.write_text(markdown(out, before))
    return out


def _cells(grid: dict[str, Any]) -> int:
    n = 1
    for values in grid.values():
        n *= len(values)
    return n


if __name__ == "__main__":
    main()
