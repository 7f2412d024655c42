"""Batched seeds vs the same seeds alone: the worst relative difference per configuration.

Each case is one cell of a small suite on sklearn digits (3 seeds, 50+ steps, every step's loss
compared); ``runners.parity.compare`` runs the seeds one by one and then as one stacked model.
The same cases are the parity tests (tests/test_batched.py), so the table in docs/perf/ is what
the tests check.

Float32 cases use tanh, a smooth activation: a round-off difference of 1e-7 at step 0 (a
grouped convolution or a batched matmul adds in another order than the plain one) then stays
near round-off. With ReLU, such a difference sometimes moves a pre-activation across the kink,
a unit switches on in one run and not the other, and the runs part by 1e-5..1e-3 within 50
steps: the *same unbatched trial* does that between 1 and 2 torch threads (see the sensitivity
table). Float64 cases use ReLU: at 1e-16 a kink crossing is rare.

    python benchmarks/batched_parity.py --json docs/perf/batched_parity.json \
        --markdown docs/perf/batched_parity.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

BASE = """
name: parity
dataset: {name: digits}
model: {family: mlp, width: 16, depth: 3, activation: tanh}
seeds: 3
train: {steps: 60, batch_size: 64, optimizer: momentum, lr: 0.05, eval_every: 20}
instrument: {every: 5, max_points: 1000, probe_batch: 64}
outcomes: {explode_grad_norm: 1000.0}
"""

OPTIMIZERS = ["sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw"]
OPT_LR = {"rmsprop": 0.003, "adagrad": 0.02, "adam": 0.003, "adamw": 0.003}
CNN = ["model.family=cnn", "model.width=8"]

# name -> (--set overrides, relative tolerance)
CASES: dict[str, tuple[list[str], float]] = {}
for _family, _extra in (("mlp", []), ("cnn", CNN)):
    for _norm in ("none", "batchnorm", "layernorm") + (("groupnorm",) if _family == "cnn" else ()):
        CASES[f"{_family} {_norm}"] = ([*_extra, f"model.norm={_norm}"], 1e-5)
    for _clip in ("{norm: 0.5}", "{value: 0.05}"):
        _kind = _clip.strip("{").split(":")[0]
        CASES[f"{_family} batchnorm clip-{_kind}"] = (
            [*_extra, "model.norm=batchnorm", f"train.grad_clip={_clip}"],
            1e-5,
        )
ADAPTIVE = ("rmsprop", "adagrad", "adam", "adamw")
for _opt in OPTIMIZERS:
    _lr = f"train.lr={OPT_LR.get(_opt, 0.05)}"
    # Adaptive optimizers divide by sqrt(v) + eps: at their default eps an element whose
    # gradient is round-off noise takes a full lr-sized step, so float32 round-off is
    # amplified in the unbatched trial itself (see SENSITIVITY); eps 1e-4 keeps it at
    # round-off, and the float64 cases below check the default eps.
    _level = f"{{name: {_opt}, eps: 1.0e-4}}" if _opt in ADAPTIVE else _opt
    CASES[f"mlp batchnorm {_opt}" + (" eps=1e-4" if _opt in ADAPTIVE else "")] = (
        ["model.norm=batchnorm", f"train.optimizer={_level}", _lr],
        1e-5,
    )
    CASES[f"mlp batchnorm {_opt} float64"] = (
        [
            "model.norm=batchnorm",
            f"train.optimizer={_opt}",
            _lr,
            "train.precision='64'",
            "model.activation=relu",
        ],
        1e-9,
    )
CASES["mlp layernorm adamw decoupled-wd clip-norm"] = (
    [
        "model.norm=layernorm",
        "train.optimizer=adamw",
        "train.lr=0.003",
        "train.weight_decay={value: 0.1, mode: decoupled}",
        "train.grad_clip={norm: 0.5}",
    ],
    1e-5,
)
CASES["mlp momentum decoupled-wd residual no-bias label-smoothing"] = (
    [
        "model.depth=4",
        "model.residual=true",
        "model.bias=false",
        "train.weight_decay={value: 0.01, mode: decoupled}",
        "train.label_smoothing=0.1",
    ],
    1e-5,
)
CASES["teacher regression mlp layernorm adam"] = (
    [
        "dataset={name: teacher, options: {n_train: 512, n_val: 128}}",
        "model.norm=layernorm",
        "train.optimizer=adam",
        "train.lr=0.003",
    ],
    1e-5,
)
for _name, (_ov, _) in list(CASES.items()):
    if _name in ("mlp batchnorm", "cnn batchnorm", "mlp batchnorm clip-norm", "cnn layernorm"):
        CASES[f"{_name} float64 relu"] = (
            [*_ov, "train.precision='64'", "model.activation=relu"],
            1e-9,
        )
# One member explodes at step 2-4, the others go on (seeds 0, 2, 5 explode at lr 4).
CASES["mlp sgd lr=4: 3 of 6 members explode (float64)"] = (
    [
        "train.optimizer=sgd",
        "train.lr=4.0",
        "seeds=6",
        "train.precision='64'",
        "model.activation=relu",
    ],
    1e-9,
)


# Float32 at the adaptive optimizers' default eps: how far the *unbatched* trial moves when only
# its summation order changes (1 vs 2 torch threads), beside the batched difference.
SENSITIVITY = {
    f"mlp batchnorm {opt} float32, default eps": [
        "model.norm=batchnorm",
        f"train.optimizer={opt}",
        f"train.lr={OPT_LR.get(opt, 0.05)}",
    ]
    for opt in ADAPTIVE
} | {
    "mlp batchnorm nesterov float32 relu": [
        "model.norm=batchnorm",
        "train.optimizer=nesterov",
        "model.activation=relu",
    ],
    "cnn layernorm float32 relu": [*CNN, "model.norm=layernorm", "model.activation=relu"],
}


def trials_for(overrides: list[str], directory: Path) -> list:
    from gradatlas.suites import load_suite

    path = directory / "parity.yaml"
    path.write_text(BASE)
    return load_suite(str(path), overrides).trials


def run_case(name: str) -> dict:
    from gradatlas.runners.parity import compare

    overrides, tol = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        trials = trials_for(overrides, Path(tmp))
    t0 = time.perf_counter()
    p = compare(trials)
    return p.row(name, tol) | {"seconds": time.perf_counter() - t0}


def run_sensitivity(name: str) -> dict:
    """The batched difference, and the unbatched trial against itself on 2 threads."""
    from gradatlas.runners.parity import compare, worst_rel
    from gradatlas.runners.trial import run_trial, set_threads

    with tempfile.TemporaryDirectory() as tmp:
        trials = trials_for(SENSITIVITY[name], Path(tmp))
    set_threads(1)
    p = compare(trials)
    one = [run_trial(t, accelerator="cpu") for t in trials]
    set_threads(2)
    two = [run_trial(t, accelerator="cpu") for t in trials]
    set_threads(1)
    threads = max(
        worst_rel(a.curves["train"]["loss"], b.curves["train"]["loss"])
        for a, b in zip(one, two, strict=True)
    )
    return {"case": name, "batched_vs_alone": p.worst_loss_rel, "alone_1_vs_2_threads": threads}


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
    lines = markdown_table(rows)
    sens = [] if args.case else [run_sensitivity(name) for name in SENSITIVITY]
    if sens:
        lines += [
            "",
            "Round-off sensitivity (not batching): the same unbatched trial on 1 vs 2 torch "
            "threads, beside batched vs alone on 1 thread.",
            "",
            "| configuration | batched vs alone | alone, 1 vs 2 threads |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['case']} | {r['batched_vs_alone']:.1e} | {r['alone_1_vs_2_threads']:.1e} |"
            for r in sens
        ]
    table = "\n".join(lines)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"cases": rows, "sensitivity": sens}, indent=1) + "\n")
    if args.markdown:
        head = (
            "# Batched seeds: parity with the unbatched trials\n\n"
            "`python benchmarks/batched_parity.py` (2-core CPU, 1 torch thread). Per-step "
            "training losses and recorded validation losses of every member against the same "
            "seed trained alone.\n\n"
        )
        args.markdown.write_text(head + table + "\n")


if __name__ == "__main__":
    main()
