"""Fused trials vs the same trials alone: the worst relative difference per configuration.

Each case is one *shape* on sklearn digits whose members differ in everything fusion lets them
differ in (``runners.batching.MEMBER_FIELDS``): seed, init, learning rate, schedule, the
optimizer's own options, weight decay (coupled and decoupled), dropout p, clipping bound and
label smoothing. ``runners.parity.compare`` runs every member alone, then all of them as one
stacked model (``run_trials``), and compares per-step training losses and recorded validation
losses; init is compared bit for bit, and the outcome labels and explosion steps must agree.
The same cases are the fused parity tests (tests/test_fused.py), so the table in docs/perf/ is
what the tests check.

Tolerances are those of batched seeds (benchmarks/batched_parity.py, which explains them):
1e-5 relative in float32 (tanh; adaptive optimizers at eps 1e-4) and 1e-9 in float64 (ReLU).

    python benchmarks/fused_parity.py --json docs/perf/fused_parity.json \
        --markdown docs/perf/fused_parity.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

OPTIMIZERS = ["sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw"]
ADAPTIVE = ("rmsprop", "adagrad", "adam", "adamw")

# The optimizer's own options, two settings per optimizer (the members must differ in them).
OPTIONS: dict[str, list[dict]] = {
    "sgd": [{}, {}],
    "momentum": [{"momentum": 0.9}, {"momentum": 0.5}],
    "nesterov": [{"momentum": 0.9}, {"momentum": 0.7}],
    "rmsprop": [{"alpha": 0.99, "momentum": 0.0}, {"alpha": 0.9, "momentum": 0.5}],
    "adagrad": [{}, {}],
    "adam": [{"beta1": 0.9, "beta2": 0.999}, {"beta1": 0.8, "beta2": 0.99}],
    "adamw": [{"beta1": 0.9, "beta2": 0.999}, {"beta1": 0.8, "beta2": 0.99}],
}
LR = {"rmsprop": (0.003, 0.001), "adagrad": (0.02, 0.05), "adam": (0.003, 0.001)}
LR["adamw"] = LR["adam"]


def _members(optimizer: str, float64: bool, clip: str = "norm") -> list[dict]:
    """Three cells of one shape that differ in every member field, as one-point grids."""
    lr_a, lr_b = LR.get(optimizer, (0.05, 0.1))
    eps = {} if float64 or optimizer not in ADAPTIVE else {"eps": 1.0e-4}
    opts = OPTIONS[optimizer]
    bounds = (0.5, 2.0, 1.0) if clip == "norm" else (0.05, 0.2, 0.1)
    decoupled = 0.1 if optimizer == "adamw" else 0.01
    return [
        {
            "optimizer": [{"name": optimizer, **opts[0], **eps}],
            "lr": [lr_a],
            "init": ["kaiming_normal"],
            "weight_decay": [0.0],
            "dropout": [0.0],
            "grad_clip": [{clip: bounds[0]}],
            "label_smoothing": [0.0],
            "schedule": ["constant"],
        },
        {
            "optimizer": [{"name": optimizer, **opts[1], **eps}],
            "lr": [lr_b],
            "init": ["xavier_normal"],
            "weight_decay": [1.0e-3],
            "dropout": [0.2],
            "grad_clip": [{clip: bounds[1]}],
            "label_smoothing": [0.1],
            "schedule": ["cosine"],
        },
        {
            "optimizer": [{"name": optimizer, **opts[0], **eps}],
            "lr": [lr_b],
            "init": [{"name": "normal", "std": 0.2}],
            "weight_decay": [{"value": decoupled, "mode": "decoupled"}],
            "dropout": [0.1],
            "grad_clip": [{clip: bounds[2]}],
            "label_smoothing": [0.05],
            "schedule": [{"name": "linear_warmup", "warmup_steps": 10}],
        },
    ]


def suite(name: str, grids: list[dict], **model: object) -> dict:
    """A parity suite: digits, 60 steps, every step's loss kept, 2 seeds per cell."""
    float64 = bool(model.pop("float64", False))
    return {
        "name": "fused-parity",
        "description": name,
        "dataset": {"name": "digits"},
        "model": {"family": "mlp", "width": 16, "depth": 3, "activation": "tanh"} | model,
        "grids": grids,
        "seeds": 2,
        "train": {"steps": 60, "batch_size": 64, "eval_every": 20}
        | ({"precision": "64"} if float64 else {}),
        "instrument": {"every": 5, "max_points": 1000, "probe_batch": 64},
        "outcomes": {"explode_grad_norm": 1000.0},
    }


# name -> (suite, relative tolerance)
CASES: dict[str, tuple[dict, float]] = {}
for _opt in OPTIMIZERS:
    CASES[f"mlp {_opt} mixed"] = (suite(f"{_opt} mixed", _members(_opt, False)), 1e-5)
    CASES[f"mlp {_opt} mixed float64"] = (
        suite(f"{_opt} float64", _members(_opt, True), activation="relu", float64=True),
        1e-9,
    )
CASES["mlp batchnorm momentum mixed, value clipping"] = (
    suite("bn value clip", _members("momentum", False, clip="value"), norm="batchnorm"),
    1e-5,
)
CASES["cnn layernorm adam mixed"] = (
    suite("cnn", _members("adam", False), family="cnn", width=8, norm="layernorm"),
    1e-5,
)
CASES["mlp residual batchnorm nesterov mixed float64"] = (
    suite(
        "residual",
        _members("nesterov", True),
        depth=4,
        residual=True,
        norm="batchnorm",
        activation="relu",
        float64=True,
    ),
    1e-9,
)


def trials_for(name: str, directory: Path) -> list:
    from gradatlas.suites import load_suite

    path = directory / "fused_parity.yaml"
    path.write_text(yaml.safe_dump(CASES[name][0], sort_keys=False))
    return load_suite(str(path)).trials


def run_case(name: str) -> dict:
    from gradatlas.runners.batching import shape_key
    from gradatlas.runners.parity import compare

    tol = CASES[name][1]
    with tempfile.TemporaryDirectory() as tmp:
        trials = trials_for(name, Path(tmp))
    if len({shape_key(t) for t in trials}) != 1:
        raise AssertionError(f"{name}: the members must share one shape")
    t0 = time.perf_counter()
    p = compare(trials)
    row = p.row(name, tol, cells=len({t.cell_id for t in trials}))
    return row | {"seconds": time.perf_counter() - t0}


def main() -> None:
    from gradatlas.runners.parity import markdown_table
    from gradatlas.runners.trial import set_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--case", action="append", help="only these cases (default: all)")
    args = ap.parse_args()
    set_threads(1)
    rows = [run_case(name) for name in (args.case or CASES)]
    table = "\n".join(markdown_table(rows))
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"cases": rows}, indent=1) + "\n")
    if args.markdown:
        head = (
            "# Fused trials: parity with the trials alone\n\n"
            "`python benchmarks/fused_parity.py` (2-core CPU, 1 torch thread). Each case is "
            "one shape whose members differ in seed, init, lr, schedule, optimizer options, "
            "weight decay (coupled and decoupled), dropout p, clipping bound and label "
            "smoothing; per-step training losses and recorded validation losses of every "
            "member against the same trial alone.\n\n"
        )
        args.markdown.write_text(head + table + "\n")


if __name__ == "__main__":
    main()
