"""Write a realistic gradatlas experiment of N trials through the record store, no training.

For the report benchmark: a 1,000-trial store takes hours to make with real runs on a laptop CPU,
but the report's cost depends only on what is in the store. So this writes exactly what the runner
writes (docs/record.md), through the store's own writers (``RecordStore.start_sweep`` and
``record_unit``) from ``gradatlas.record.TrialRecord``s: a sweep run with its four
artifacts; one trial run per trial with the ``gradatlas.*`` tags, the flattened config and
``factor.*`` params, the summary metrics, one metric key per curve and per layer (so MLflow's
per-run metric tables are the same size), and a full ``trial.json`` with curves and init profiles
of the real shapes. Outcomes and curves follow the textbook regimes
(deep sigmoid vanishes, N(0, 1) init explodes deep ReLU nets, ...) with seeded noise.

Curve metrics are logged at their last step only by default: the report never reads metric
history (it reads ``trial.json``), and logging every point would only make generation slow.
``full_curves=True`` logs every point, as the runner does.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradatlas.identity import cell_id, config_hash
from gradatlas.record import (
    FINISHED,
    KILLED_STATUS,
    SUITE,
    RecordedOutcome,
    SweepRecord,
    TrialRecord,
    factor_levels,
    final_label,
    sweep_artifacts,
    utc_now,
)
from gradatlas.runners.tracking import environment
from gradatlas.store import TrialWrite, open_store

GRID = {
    "depth": [3, 6, 10, 20, 40],
    "activation": ["relu", "tanh", "sigmoid", "gelu"],
    "init": [
        "kaiming_normal",
        "xavier_normal",
        "orthogonal",
        {"name": "normal", "std": 1.0},
        {"name": "normal", "std": 0.01},
    ],
    "optimizer": ["momentum", {"name": "adam", "lr": 0.001}],
}
SEEDS = 5  # 5 x 4 x 5 x 2 cells x 5 seeds = 1,000 trials
# The atlas-scale store: the same cross x width x normalization, 2,000 cells x 5 seeds = 10,000
# trials (atlas.yaml's shape: thousands of cells at 5 seeds, not a few cells at many seeds).
GRID_10K = {**GRID, "width": [32, 64, 128, 256, 512], "norm": ["none", "layernorm"]}
GRIDS = {1000: GRID, 10000: GRID_10K}
THRESHOLDS = {
    "target_accuracy": 0.5,
    "target_loss": 0.2,
    "explode_grad_norm": 1.0e5,
    "vanish_grad_norm": 1.0e-7,
    "vanish_ratio": 1.0e-4,
    "loss_progress": 0.05,
    "chance_margin": 0.05,
}
SUITE_YAML = """\
name: {name}
description: >
  Synthetic benchmark store: {factors} on MNIST-1D, {seeds} seeds.
  Written by benchmarks/synth_store.py through MLflow's client (no training).
dataset: {{name: mnist1d, seed: 0}}
model: {{family: mlp, width: 64}}
grid:
  depth: [3, 6, 10, 20, 40]
  activation: [relu, tanh, sigmoid, gelu]
  init: [kaiming_normal, xavier_normal, orthogonal, {{name: normal, std: 1.0}},
         {{name: normal, std: 0.01}}]
  optimizer: [momentum, {{name: adam, lr: 0.001}}]
seeds: {seeds}
train: {{epochs: 24, batch_size: 128, lr: 0.02}}
instrument: {{every: 10, max_points: 200}}
"""
EXTRA_YAML = {
    "width": "  width: [32, 64, 128, 256, 512]\n",
    "norm": "  norm: [none, layernorm]\n",
}
STEPS = 768
BOUNDED = {"sigmoid", "tanh"}


@dataclass
class Cell:
    depth: int
    activation: str
    init: dict[str, Any]
    optimizer: dict[str, Any]
    width: int | None = None  # None: not a factor of this grid (64, as the suite fixes it)
    norm: str | None = None  # None: not a factor of this grid ("none")

    @property
    def factors(self) -> dict[str, str]:
        init = self.init["name"] + (f"(std={self.init['std']:g})" if "std" in self.init else "")
        opt = self.optimizer["name"] + (
            f"(lr={self.optimizer['lr']:g})" if "lr" in self.optimizer else ""
        )
        out = {
            "depth": f"d{self.depth}",
            "activation": self.activation,
            "init": init,
            "optimizer": opt,
        }
        if self.width is not None:
            out["width"] = f"w{self.width}"
        if self.norm is not None:
            out["norm"] = self.norm
        return out

    @property
    def label(self) -> str:
        return "-".join(self.factors.values())


def _named(level: Any) -> dict[str, Any]:
    return dict(level) if isinstance(level, dict) else {"name": level}


def cells(grid: dict[str, list[Any]] = GRID) -> list[Cell]:
    """Every cell of ``grid`` (``GRID`` or ``GRID_10K``), in grid order."""
    out = []
    for combo in itertools.product(*grid.values()):
        level = dict(zip(grid, combo, strict=True))
        out.append(
            Cell(
                level["depth"],
                level["activation"],
                _named(level["init"]),
                _named(level["optimizer"]),
                level.get("width"),
                level.get("norm"),
            )
        )
    return out


def suite_yaml(name: str, seeds: int, grid: dict[str, list[Any]] = GRID) -> str:
    """The suite file the sweep run records, for ``grid``."""
    text = SUITE_YAML.format(name=name, seeds=seeds, factors=" x ".join(grid))
    extra = "".join(EXTRA_YAML[f] for f in grid if f not in GRID)
    return text.replace("seeds:", extra + "seeds:", 1) if extra else text


def config(cell: Cell, seed: int) -> dict[str, Any]:
    """A resolved trial config of the runner's shape (docs/record.md: Identity)."""
    opt = {
        "name": cell.optimizer["name"],
        "momentum": 0.9 if cell.optimizer["name"] == "momentum" else 0.0,
        "lr": cell.optimizer.get("lr", 0.02),
        "weight_decay": 0.0,
        "wd_mode": "coupled",
    }
    return {
        "dataset": {
            "name": "mnist1d",
            "seed": 0,
            "options": {"num_samples": 5000, "train_split": 0.8},
        },
        "model": {
            "family": "mlp",
            "depth": cell.depth,
            "width": cell.width or 64,
            "activation": {"name": cell.activation},
            "init": {**cell.init, **({"gain": 1.0} if cell.init["name"] != "normal" else {})},
            "norm": {"name": cell.norm or "none"},
            "dropout": 0.0,
            "residual": False,
        },
        "optim": opt,
        "train": {
            "epochs": 24,
            "steps": None,
            "batch_size": 128,
            "schedule": {"name": "constant", "warmup_steps": 0},
            "precision": "32",
            "eval_every": 0,
            "grad_clip": {"mode": "none", "max": 0.0},
        },
        "instrument": {"every": 10, "max_points": 200, "probe_batch": 256},
        "outcomes": dict(THRESHOLDS),
        "seed": seed,
    }


def _regime(cell: Cell, rng: np.random.Generator) -> str:
    """Draw an outcome with textbook probabilities for the cell."""
    d, act, init = cell.depth, cell.activation, cell.init
    std = init.get("std")
    p_explode = 0.0
    if std == 1.0:
        p_explode = {"relu": 0.95, "gelu": 0.9, "tanh": 0.6, "sigmoid": 0.05}[act] * min(1, d / 10)
    p_vanish = 0.0
    if act == "sigmoid":
        p_vanish = min(0.95, d / 25)
    if std == 0.01:
        p_vanish = max(p_vanish, min(0.98, d / 8))
    if act == "tanh" and init["name"] == "xavier_normal" and d >= 40:
        p_vanish = max(p_vanish, 0.3)
    if cell.norm == "layernorm":  # normalization tames both, without removing them
        p_explode, p_vanish = 0.5 * p_explode, 0.5 * p_vanish
    u = rng.random()
    if u < p_explode:
        return "exploded"
    if u < p_explode + p_vanish:
        return "vanished"
    good = {
        "kaiming_normal": act in ("relu", "gelu"),
        "orthogonal": True,
        "xavier_normal": act in ("tanh", "sigmoid"),
    }.get(init["name"], False)
    p_conv = (
        (0.9 if good else 0.55)
        * math.exp(-d / 60)
        * (1.1 if cell.optimizer["name"] == "adam" else 1.0)
    )
    u = rng.random()
    if u < p_conv:
        return "converged"
    return "stalled" if u > 0.93 else "unconverged"


def _curves(cell: Cell, outcome: str, rng: np.random.Generator) -> dict[str, Any]:
    n_layers = cell.depth + 1
    stop = int(rng.integers(0, 40)) if outcome == "exploded" else STEPS - 1
    steps = np.unique(np.linspace(0, stop, min(200, stop + 1)).astype(int))
    chance = math.log(10)
    rate = {
        "converged": 1 / 250,
        "unconverged": 1 / 700,
        "stalled": 0.0,
        "vanished": 0.0,
        "exploded": -0.05,
    }[outcome]
    start = chance * (1 + rng.random())
    floor = {"converged": 0.6, "unconverged": 1.3}.get(outcome, chance)
    loss = (
        floor + (start - floor) * np.exp(-rate * steps)
        if rate >= 0
        else start * np.exp(-rate * steps)
    )
    loss = loss * (1 + 0.04 * rng.standard_normal(steps.size))
    g0 = {"exploded": 1e3, "vanished": 1e-9}.get(outcome, 1.0) * math.exp(rng.normal(0, 0.3))
    grad = g0 * (1 + 0.3 * rng.random(steps.size))
    if outcome == "exploded":
        grad = g0 * np.exp(0.4 * steps)
        grad[-1] = 1e7
    e_steps = list(range(0, stop + 1, 32)) or [0]
    acc_end = {"converged": 0.62, "unconverged": 0.4}.get(outcome, 0.11)
    val_acc = [
        0.1 + (acc_end - 0.1) * (1 - math.exp(-s / 200)) + 0.01 * rng.standard_normal()
        for s in e_steps
    ]
    val_loss = [float(np.interp(s, steps, loss)) * 1.05 for s in e_steps]
    l_steps = list(steps[::4])
    ratio = {"vanished": 1e-6, "exploded": 1e3}.get(outcome, 0.5)
    per_layer = [
        [
            float(grad[min(i * 4, steps.size - 1)] * ratio ** ((n_layers - 1 - j) / n_layers))
            for j in range(n_layers)
        ]
        for i in range(len(l_steps))
    ]
    train_loss = [None if not math.isfinite(x) else float(x) for x in loss]
    return {
        "train": {
            "step": steps.tolist(),
            "loss": train_loss,
            "grad_norm": [float(g) for g in grad],
            "lr": [0.02] * steps.size,
        },
        "eval": {
            "step": e_steps,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "train_acc": [a + 0.03 for a in val_acc],
            "train_loss": [v * 0.95 for v in val_loss],
        },
        "layers": {
            "step": [int(s) for s in l_steps],
            "grad_norm": per_layer,
            "update_ratio": [[1e-3] * n_layers for _ in l_steps],
        },
    }


def _profiles(cell: Cell, outcome: str, rng: np.random.Generator) -> dict[str, Any]:
    n_layers, sites, w = cell.depth + 1, cell.depth, cell.width or 64
    std = cell.init.get("std")
    per_layer = {"relu": 1.0, "gelu": 0.95, "tanh": 0.8, "sigmoid": 0.25}[cell.activation]
    if cell.init["name"] in ("kaiming_normal", "orthogonal") or (
        cell.init["name"] == "xavier_normal" and cell.activation == "tanh"
    ):
        per_layer = 1.0 if cell.activation != "sigmoid" else 0.3
    if std == 1.0:
        per_layer *= 5.6
    if std == 0.01:
        per_layer *= 0.06
    grad = [
        float(per_layer ** (n_layers - 1 - j) * math.exp(rng.normal(0, 0.1)))
        for j in range(n_layers)
    ]
    sat = (
        [
            float(min(0.95, (0.8 if std == 1.0 else 0.05) + 0.02 * rng.random()))
            for _ in range(sites)
        ]
        if cell.activation in BOUNDED
        else [None] * sites
    )
    dead = (
        [float(min(1, 0.01 * j * (3 if std == 1.0 else 1) * rng.random())) for j in range(sites)]
        if cell.activation == "relu"
        else [None] * sites
    )
    return {
        "layers": [
            f"{j:02d} linear {40 if j == 0 else w}->{10 if j == n_layers - 1 else w}"
            for j in range(n_layers)
        ],
        "sites": [f"{j:02d} {cell.activation}" for j in range(sites)],
        "loss": 2.4,
        "init": {
            "grad_norm": grad,
            "act_mean": [0.0] * sites,
            "act_std": [0.5] * sites,
            "saturation": sat,
            "dead": dead,
        },
    }


def record(cell: Cell, seed: int, suite: str, rng: np.random.Generator) -> TrialRecord:
    """One trial's record (docs/record.md), with the matching summary metrics."""
    cfg = config(cell, seed)
    outcome = _regime(cell, rng)
    curves = _curves(cell, outcome, rng)
    profiles = _profiles(cell, outcome, rng)
    ev, tr = curves["eval"], curves["train"]
    summary: dict[str, float | None] = {
        "initial_loss": tr["loss"][0],
        "final_train_loss": tr["loss"][-1],
        "final_val_loss": ev["val_loss"][-1],
        "best_val_loss": min(ev["val_loss"]),
        "steps_run": float(tr["step"][-1] + 1),
        "init_grad_norm_first": profiles["init"]["grad_norm"][0],
        "init_grad_norm_last": profiles["init"]["grad_norm"][-1],
        "final_val_acc": ev["val_acc"][-1],
        "best_val_acc": max(ev["val_acc"]),
        "final_train_acc": ev["train_acc"][-1],
        "generalization_gap": 0.03,
        "wall_time_s": 2.0,
        "fit_time_s": 1.8,
        "instrument_time_s": 0.2,
    }
    summary["init_grad_ratio"] = summary["init_grad_norm_first"] / summary["init_grad_norm_last"]
    reason = {"converged": "val accuracy >= 0.5", "exploded": "gradient norm > 1e+05"}.get(
        outcome, f"synthetic {outcome}"
    )
    if outcome == "converged":
        hit = (
            next(s for s, a in zip(ev["step"], ev["val_acc"], strict=True) if a >= 0.5)
            if max(ev["val_acc"]) >= 0.5
            else ev["step"][-1]
        )
        summary["steps_to_target"] = float(hit)
        reason += f" at step {hit}"
    if outcome == "exploded":
        summary["explode_step"] = float(tr["step"][-1])
    return TrialRecord(
        trial_id=config_hash(cfg),
        cell_id=cell_id(cfg),
        cell=cell.label,
        seed=seed,
        suite=suite,
        config=cfg,
        factors=cell.factors,
        outcome=RecordedOutcome(label=outcome, reason=reason, thresholds=cfg["outcomes"]),
        summary=summary,
        task="classification",
        num_classes=10,
        device="cpu",
        curves=curves,
        profiles=profiles,
        timing={"wall_time_s": 2.0, "fit_time_s": 1.8, "instrument_time_s": 0.2},
        finished_at=utc_now(),
    )


def write_store(
    tracking_uri: str,
    *,
    name: str = "synthetic-1000",
    seeds: int = SEEDS,
    reruns: int = 10,
    killed: int = 5,
    full_curves: bool = False,
    seed: int = 0,
    limit: int | None = None,
    grid: dict[str, list[Any]] = GRID,
) -> dict[str, Any]:
    """Create experiment ``name`` with ``len(cells(grid)) * seeds`` trials (+ ``reruns`` older
    duplicate finished runs the report must set aside, + ``killed`` runs it must ignore);
    ``limit`` keeps only the plan's first trials (small stores for tests). Artifacts go beside a
    SQLite store, in ``artifacts/``."""
    store = open_store(tracking_uri)
    exp_id = store.open_experiment(name, tags={SUITE: name})
    sid = store.start_sweep(
        exp_id,
        SweepRecord(name),
        run_name="sweep-synthetic",
        artifacts=sweep_artifacts(
            suite_yaml=suite_yaml(name, seeds, grid),
            resolved={
                "name": name,
                "description": "Synthetic benchmark store written by "
                "benchmarks/synth_store.py (no training).",
                "grid": grid,
                "seeds": seeds,
                "outcomes": THRESHOLDS,
            },
            environment=environment(),
            levels=factor_levels(c.factors for c in cells(grid)),
        ),
    )
    rng = np.random.default_rng(seed)
    plan = [(c, s) for c in cells(grid) for s in range(seeds)][:limit]
    extra = [(plan[i], FINISHED) for i in range(0, len(plan), max(1, len(plan) // max(reruns, 1)))][
        :reruns
    ]
    extra += [
        (plan[i], KILLED_STATUS) for i in range(1, len(plan), max(1, len(plan) // max(killed, 1)))
    ][:killed]
    t0 = time.perf_counter()
    # Duplicates first: they are older than the runs the report must keep.
    jobs = [(c, s, status) for (c, s), status in extra] + [(c, s, FINISHED) for c, s in plan]
    writes = []
    for c, s, status in jobs:
        rec = record(c, s, name, rng)
        if status == KILLED_STATUS:
            label = final_label(rec.outcome.label, interrupted=True)
            rec = replace(rec, outcome=replace(rec.outcome, label=label))
        writes.append(TrialWrite(rec, f"{rec.cell}-s{s}", last_points_only=not full_curves))
    for i in range(0, len(writes), seeds):  # a unit of a cell's seeds, as a sweep records them
        # force: the older re-runs are duplicates on purpose (the report must set them aside)
        store.record_unit(exp_id, sid, writes[i : i + seeds], force=True)
    store.set_status(sid, FINISHED)
    return {
        "experiment_id": exp_id,
        "trials": len(plan),
        "set_aside": len([e for e in extra if e[1] == FINISHED]),
        "killed": len([e for e in extra if e[1] == KILLED_STATUS]),
        "write_s": time.perf_counter() - t0,
    }
