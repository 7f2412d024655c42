"""The CPU cost of a stacked group of trials: fixed, per member, per step, per layer.

``app.cost.estimate_units_cpu`` prices a plan the way it will run (``execution.fuse``,
``execution.batch_seeds``): as stacked groups, not as trials alone. This times what one group
costs, ``runners.executor.run_unit`` on one unit of K trials of one shape (training only, in
this process, one torch thread: what a worker does; recording is ``runner_overhead.py``'s): an
MNIST-1D MLP of width 64 (ReLU, He init, SGD with momentum, batch 128, evaluated every epoch of
25 steps) at depths 3, 10 and 20 with K = 1, 4, 16 and 64 members (K seeds of one cell, one
stacked model; 128 at depth 3), each at 20 and 80 steps so that what a group pays once
separates from what it pays per step, and some of the same groups with dropout 0.1 (each member
draws its masks from its own random stream, one member at a time). It fits ``app.cost``'s CPU
model

    seconds = CPU_GROUP_S + K x (CPU_MEMBER_S + depth x CPU_MEMBER_LAYER_S)
              + steps x (CPU_STEP_S + depth x CPU_LAYER_STEP_S
                         + K x (CPU_MEMBER_STEP_S + depth x CPU_MEMBER_LAYER_STEP_S)
                         + K_dropout x depth x CPU_DROPOUT_LAYER_STEP_S)

by non-negative least squares on relative error. Two heavier nets (a width-256 MLP, a width-32
CNN) give ``CPU_EFFECTIVE_FLOPS``: a member's arithmetic per step is the larger of
``depth x CPU_MEMBER_LAYER_STEP_S`` and its FLOPs at that rate. It prints the constants and the
worst relative residual, and predicts the workloads ``benchmarks/fused.py`` measured
(``--check``, default ``docs/perf/fused_cpu.json``: the quickstart and an atlas slice, one by
one, seeds batched and fused) from their trials as ``app.cost.cpu_groups`` groups them. The
constants are then copied into ``gradatlas/app/cost.py`` by hand. About 4 minutes on a 2-core
CPU.

    python benchmarks/fused_cost.py --json docs/perf/fused_cost_cpu.json \
        --markdown docs/perf/fused_cost_cpu.md
    python benchmarks/fused_cost.py --accelerator gpu --repeats 1 --json $OUT/fused_cost_gpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
MEASURED = HERE.parent / "docs" / "perf" / "fused_cpu.json"

BASE = {
    "name": "fused-cost",
    "description": "one stacked group for benchmarks/fused_cost.py",
    "dataset": {"name": "mnist1d", "seed": 0},
    "model": {"family": "mlp", "width": 64, "activation": "relu", "init": "kaiming_normal"},
    "train": {"batch_size": 128, "optimizer": "momentum", "lr": 0.01},
    "instrument": {"every": 10, "max_points": 200},
    "outcomes": {"target_accuracy": 0.99},
}
DEPTHS = (3, 10, 20)
MEMBERS = (1, 4, 16, 64)
# Evaluated every 25 steps (an epoch of MNIST-1D), so evaluations grow with steps as in a budget.
STEPS = (20, 80)
WIDE = [(3, 128)]  # (depth, K) beyond 64 members: an atlas shape stacks 180
DROPOUT = [(d, k) for d in (10, 20) for k in (1, 16, 64)]  # (depth, K) also with dropout 0.1
# (family, width, depth, K): more arithmetic per layer than width 64, timed to measure
# CPU_EFFECTIVE_FLOPS (not fitted by the least squares: the model takes the larger of the
# per-layer terms and FLOPs / CPU_EFFECTIVE_FLOPS for a member's arithmetic).
HEAVY = [("mlp", 256, 10, 4), ("cnn", 32, 3, 4)]
MODEL = (
    "seconds = CPU_GROUP_S + K (CPU_MEMBER_S + depth CPU_MEMBER_LAYER_S) "
    "+ steps (CPU_STEP_S + depth CPU_LAYER_STEP_S + K (CPU_MEMBER_STEP_S + max(depth "
    "CPU_MEMBER_LAYER_STEP_S, FLOPs per step / CPU_EFFECTIVE_FLOPS)) "
    "+ K_dropout depth CPU_DROPOUT_LAYER_STEP_S)"
)
# a config: (family, width, depth, K, steps, dropout)
Config = tuple[str, int, int, int, int, float]


class _Stopped(BaseException):  # not Exception: run_unit would record it as a failure
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise _Stopped


def group_trials(config: Config, repeat: int = 0) -> list:
    """K seeds of one cell: one shape. ``repeat`` moves an unreachable target by a hair, so
    each repeat is a new shape and pays what a worker pays per shape (the packing probe)."""
    from gradatlas.suites import load_suite

    family, width, depth, members, steps, dropout = config
    suite = dict(BASE, seeds=members, grid={"depth": [depth]})
    suite["outcomes"] = {"target_accuracy": 0.99 - 1e-4 * repeat}
    suite["model"] = dict(BASE["model"], family=family, width=width, dropout=dropout)
    suite["train"] = dict(BASE["train"], steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fused_cost.yaml"
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        return load_suite(str(path)).trials


def time_group(trials: list, accelerator: str) -> tuple[float, int]:
    """Seconds of ``run_unit`` on the trials as one fused unit, and the group size it used."""
    from gradatlas.runners.executor import make_units, run_unit

    (unit,) = make_units(trials, batch_seeds="auto", fuse=True)
    if accelerator == "gpu":
        import torch

        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = run_unit(unit, accelerator=accelerator, threads=1)
    if accelerator == "gpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if out.failures:
        raise RuntimeError(out.failures[0].error)
    return seconds, int(max(r.timing["batch_seeds"] for r in out.results))


def nonnegative_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0: refit without the most negative term until
    none is negative (numpy only: a bare GPU machine may have no scipy)."""
    active = list(range(a.shape[1]))
    while True:
        coef = np.linalg.lstsq(a[:, active], b, rcond=None)[0]
        if (coef >= 0).all():
            break
        active.pop(int(np.argmin(coef)))
    out = np.zeros(a.shape[1])
    out[active] = coef
    return out


def fit(rows: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """The linear terms by non-negative least squares on relative error (each row divided by
    its measured time) over the width-64 MLPs; then ``CPU_EFFECTIVE_FLOPS`` from the heavy
    groups: one member's FLOPs per step over the time per step and member that the fitted
    terms leave to its arithmetic (the lowest rate of the heavy groups: an estimate errs long
    rather than short)."""
    from gradatlas.app.cost import CPU_TERMS, cpu_terms

    ref = [r for r in rows if (r["family"], r["width"]) == ("mlp", 64)]
    a = np.array(
        [cpu_terms(r["steps"], r["depth"], r["members"], r["dropout_members"]) for r in ref]
    )
    y = np.array([r["seconds"] for r in ref])
    coef = nonnegative_lstsq(a / y[:, None], np.ones_like(y))
    c = dict(zip(CPU_TERMS, coef.tolist(), strict=True))
    rates = {}
    for (family, width, depth, k), (lo, hi) in heavy_pairs(rows).items():
        per_step = (hi["seconds"] - lo["seconds"]) / (hi["steps"] - lo["steps"])
        group = c["CPU_STEP_S"] + depth * c["CPU_LAYER_STEP_S"]
        arithmetic = (per_step - group) / k - c["CPU_MEMBER_STEP_S"]
        if arithmetic > 0:
            rates[f"{family} width {width} depth {depth} K={k}"] = hi["flops_per_step"] / arithmetic
    c["CPU_EFFECTIVE_FLOPS"] = min(rates.values()) if rates else 0.0  # 0: no FLOPs term
    return c, rates


def heavy_pairs(rows: list[dict]) -> dict[tuple, tuple[dict, dict]]:
    """The heavy groups timed at both step counts: (family, width, depth, K) -> (short, long)."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        if (r["family"], r["width"]) != ("mlp", 64):
            by.setdefault((r["family"], r["width"], r["depth"], r["members"]), []).append(r)
    return {
        key: (min(rs, key=lambda r: r["steps"]), max(rs, key=lambda r: r["steps"]))
        for key, rs in by.items()
        if len({r["steps"] for r in rs}) > 1
    }


def residuals(rows: list[dict], constants: dict[str, float]) -> None:
    """Each row's fitted time and relative residual under the whole model."""
    from gradatlas.app.cost import group_cpu_seconds

    for r in rows:
        r["fit_s"] = group_cpu_seconds(
            r["steps"], r["depth"], r["members"], r["dropout_members"], r["flops_per_step"],
            constants,
        )  # fmt: skip
        r["residual"] = r["fit_s"] / r["seconds"] - 1


def explodes_at_once(trial) -> bool:
    """The quickstart's trials that explode at their first step (README: N(0, 1) explodes ReLU
    nets at both depths and tanh nets at depth 20, 3 of 3 seeds each); none in the slice."""
    m = trial.spec.model
    if m.init.name != "normal" or m.init.options.get("std") != 1.0:
        return False
    return m.activation.name == "relu" or (m.activation.name == "tanh" and m.depth == 20)


def predict(path: Path, constants: dict[str, float]) -> list[dict]:
    """The workloads of a ``benchmarks/fused.py`` JSON predicted group by group from their
    trials, as ``app.cost.cpu_groups`` groups them, with the fitted constants: with every trial
    to its full budget (what ``app.cost`` estimates), and with the groups whose members all
    explode at once stopping after one step (a group that goes on still carries its exploded
    members: the stacked step computes them)."""
    from gradatlas.app.cost import cpu_groups

    sys.path.insert(0, str(HERE))
    from fused import MODES, workload

    measured = json.loads(path.read_text())
    out = []
    for name in dict.fromkeys(r["workload"] for r in measured["rows"]):
        trials = workload(name, measured["meta"].get("epochs_override"))
        for row in (r for r in measured["rows"] if r["workload"] == name):
            batch, fuse = MODES[row["mode"]]
            full = early = 0.0
            for g in cpu_groups(trials, fuse=fuse, batch_seeds=batch):
                full += g.seconds(constants)
                if all(explodes_at_once(t) for t in g.trials):
                    g = dataclasses.replace(g, steps=1)
                early += g.seconds(constants)
            out.append(
                {
                    "source": str(path.relative_to(HERE.parent))
                    if path.is_relative_to(HERE.parent)
                    else str(path),
                    "workload": name,
                    "mode": row["mode"],
                    "measured_s": row["seconds"],
                    "predicted_s": float(full),
                    "predicted_early_stop_s": float(early),
                    "error": float(full / row["seconds"] - 1),
                    "error_early_stop": float(early / row["seconds"] - 1),
                }
            )
    return out


def check_summary(predicted: list[dict]) -> str:
    """The worst prediction error, and how much the same measurement moved between runs."""
    early = max(predicted, key=lambda c: abs(c["error_early_stop"]))
    full = max(abs(c["error"]) for c in predicted)
    text = (
        f"Worst error: {100 * early['error_early_stop']:+.0f}% ({early['workload']} "
        f"{early['mode']} in `{early['source']}`) with the groups that explode at once "
        f"stopping there, as the measured runs did; {100 * full:.0f}% counting every trial to "
        "its full budget, as `app.cost` estimates."
    )
    runs: dict[tuple[str, str], list[dict]] = {}
    for c in predicted:
        runs.setdefault((c["workload"], c["mode"]), []).append(c)
    spread = [
        (max(x["measured_s"] for x in cs) / min(x["measured_s"] for x in cs) - 1, cs)
        for cs in runs.values()
        if len(cs) > 1
    ]
    if spread:
        most, cs = max(spread, key=lambda t: t[0])
        seen = " vs ".join(f"{x['measured_s']:.1f} s" for x in cs)
        text += (
            f" The measurements themselves moved by up to {100 * most:.0f}% between runs of "
            f"the same benchmark on this shared machine ({cs[0]['workload']} {cs[0]['mode']}: "
            f"{seen})."
        )
    return text


def measure(accelerator: str, repeats: int) -> tuple[list[dict], float, bool]:
    """Every group timed (the minimum of ``repeats`` passes): rows, seconds, stopped early."""
    from gradatlas.app.cost import trial_cost

    configs: list[Config] = [
        ("mlp", 64, d, k, s, 0.0) for d in DEPTHS for k in MEMBERS for s in STEPS
    ]
    configs += [("mlp", 64, d, k, s, 0.0) for d, k in WIDE for s in STEPS]
    configs += [("mlp", 64, d, k, s, 0.1) for d, k in DROPOUT for s in STEPS]
    configs += [(f, w, d, k, s, 0.0) for f, w, d, k in HEAVY for s in STEPS]
    time_group(group_trials(("mlp", 64, 3, 2, 5, 0.1), repeat=-1), accelerator)  # warm-up
    times: dict[Config, list[float]] = {c: [] for c in configs}
    sizes: dict[Config, int] = {}
    t_start = time.perf_counter()
    # `timeout` (a GPU session's) ends the timing, not the run: what was timed is still fitted.
    signal.signal(signal.SIGTERM, _stop)
    stopped = False
    try:
        for repeat in range(repeats):  # whole passes: a burst of load hits one of many
            for c in configs:
                seconds, sizes[c] = time_group(group_trials(c, repeat=repeat), accelerator)
                times[c].append(seconds)
    except _Stopped:
        stopped = True
        print("stopped by SIGTERM: fitting what was timed", file=sys.stderr)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    bench_s = time.perf_counter() - t_start
    rows = []
    for (f, w, d, k, s, p), seen in ((c, t) for c, t in times.items() if t):
        if sizes[(f, w, d, k, s, p)] != k:
            raise SystemExit(
                f"{f} {w}x{d}, K={k}: trained as groups of {sizes[(f, w, d, k, s, p)]}"
            )
        steps, flops, _ = trial_cost(group_trials((f, w, d, k, s, p))[0].spec)
        rows.append(
            {"family": f, "width": w, "depth": d, "members": k, "steps": s, "dropout": p,
             "dropout_members": k if p else 0, "flops_per_step": flops / steps,
             "seconds": min(seen), "all_seconds": seen}
        )  # fmt: skip
    return rows, bench_s, stopped


def main() -> None:
    import torch

    from gradatlas.runners.trial import set_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--repeats", type=int, default=2, help="the minimum over this many passes")
    ap.add_argument(
        "--check",
        type=Path,
        action="append",
        help="a benchmarks/fused.py JSON to predict (default on a CPU: docs/perf/fused_cpu.json)",
    )
    ap.add_argument(
        "--rows", type=Path, help="refit the timings of an earlier --json instead of timing"
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    set_threads(1)
    if args.rows:  # refit earlier timings: no training
        earlier = json.loads(args.rows.read_text())
        rows = [{k: v for k, v in r.items() if k not in ("fit_s", "residual")}
                for r in earlier["rows"]]  # fmt: skip
        bench_s, stopped = earlier["meta"]["benchmark_s"], earlier["meta"]["stopped_early"]
        args.repeats = earlier["meta"]["repeats"]
    else:
        rows, bench_s, stopped = measure(args.accelerator, args.repeats)
    constants, rates = fit(rows)
    residuals(rows, constants)
    worst = max(abs(r["residual"]) for r in rows)
    ref = [abs(r["residual"]) for r in rows if (r["family"], r["width"]) == ("mlp", 64)]
    heavy = [abs(r["residual"]) for r in rows if (r["family"], r["width"]) != ("mlp", 64)]
    checks = args.check or ([MEASURED] if args.accelerator == "cpu" else [])
    predicted = [c for path in checks for c in predict(path, constants)]
    device = torch.cuda.get_device_name(0) if args.accelerator == "gpu" else platform.processor()
    meta = {
        "accelerator": args.accelerator,
        "device": device or platform.machine(),
        "torch": torch.__version__,
        "threads": 1,
        "repeats": args.repeats,
        "benchmark_s": bench_s,
        "stopped_early": stopped,
        "model": MODEL,
    }
    table = [
        "| net | depth | K | dropout | steps | seconds (min) | fit | residual |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['family']} {r['width']} | {r['depth']} | {r['members']} | {r['dropout']:g} "
            f"| {r['steps']} "
            f"| {r['seconds']:.3f} | {r['fit_s']:.3f} | {100 * r['residual']:+.1f}% |"
        )
    fitted = ["| constant | fitted |", "|---|---|"]
    fitted += [
        f"| `{name}` | {value / 1e9:.3g} GFLOP/s |"
        if name == "CPU_EFFECTIVE_FLOPS"
        else f"| `{name}` | {value * 1e3:.4g} ms |"
        for name, value in constants.items()
    ]
    check = []
    if predicted:
        check = [
            "| measured in | workload | mode | measured s | predicted s (full budget) | error "
            "| predicted s (exploding groups stop) | error |",
            "|---|---|---|---|---|---|---|---|",
        ]
        check += [
            f"| `{c['source']}` | {c['workload']} | {c['mode']} | {c['measured_s']:.1f} "
            f"| {c['predicted_s']:.1f} | {100 * c['error']:+.0f}% "
            f"| {c['predicted_early_stop_s']:.1f} | {100 * c['error_early_stop']:+.0f}% |"
            for c in predicted
        ]
        check += ["", check_summary(predicted)]
    summary = (
        f"Worst relative residual: {100 * max(ref, default=0):.1f}% over the {len(ref)} "
        "width-64 MLP groups the least squares fitted"
    )
    if heavy:
        summary += f", {100 * max(heavy):.1f}% over the {len(heavy)} heavier groups"
    if rates:
        summary += "; the rate of the heavier groups' arithmetic: " + ", ".join(
            f"{name} {rate / 1e9:.0f} GFLOP/s" for name, rate in rates.items()
        )
    print("\n".join([*table, "", *fitted, "", summary, "", *check]))
    print(f"benchmark: {bench_s:.0f} s")
    result = {
        "meta": meta,
        "constants_s": constants,
        "worst_residual": worst,
        "effective_flops_by_group": rates,
        "rows": rows,
        "checks": predicted,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        head = (
            f"# The cost of a stacked group of trials ({args.accelerator})\n\n"
            f"`python benchmarks/fused_cost.py {' '.join(sys.argv[1:])}` on "
            f"{meta['device']} (1 torch thread, training only, in one process; the minimum of "
            f"{args.repeats} passes, {bench_s:.0f} s"
            + (f"; the timings of an earlier run, refitted from `{args.rows}`" if args.rows else "")
            + "). One unit of K seeds of one cell (MNIST-1D, "
            "MLP width 64, ReLU, He init, momentum, batch 128, evaluated every 25 steps), timed "
            "through `runners.executor.run_unit`, fitted by non-negative least squares on "
            f"relative error:\n\n    {MODEL}\n\n"
            "Beyond a fixed cost per group and a per-step cost with a per-member part: "
            "`CPU_MEMBER_LAYER_S`, because each member's init probe and its evaluations at "
            "step 0 and on the test split run once per member through every layer, and "
            "`CPU_DROPOUT_LAYER_STEP_S`, because each member with dropout draws its masks on "
            "its own random stream, one member at a time, in every layer at every step (the "
            "slice's fused units spend about a quarter of their time there, by "
            "docs/perf/fused_cpu.md's profile). A width-256 MLP and a width-32 CNN (not in the "
            "least squares) give `CPU_EFFECTIVE_FLOPS`, the rate of a heavier member's "
            "arithmetic (the lower of the two): `app.cost` takes the larger of "
            "`depth x CPU_MEMBER_LAYER_STEP_S` and a member's FLOPs per step at that rate, so "
            "wider and conv nets are not priced as width-64 MLPs. Their fixed cost (the "
            "evaluations at step 0 and on the test split, as heavy as the net) is not scaled, "
            "so their short groups come out low; over a real budget the steps dominate. The "
            "model counts every trial to its full budget; the check below also gives the "
            "prediction with the groups whose members all explode at their first step stopping "
            "there (the quickstart's N(0, 1) cells when each trains alone or as its seeds).\n\n"
        )
        body = [*fitted, "", summary + ".", "", *table]
        if check:
            body += ["", "## Predicted against measured", "", *check]
        args.markdown.write_text(head + "\n".join(body) + "\n")


if __name__ == "__main__":
    main()
