"""Stacked trials (batched seeds, fused cells) against the same trials run one by one: how
close, per member.

Used by the parity tests and ``benchmarks/batched_parity.py`` (whose table goes into
docs/perf/), and useful by hand when a new model option gets a stacked form: if the worst
relative difference of a member's per-step losses is at float round-off, batching changed
how the trials ran and not what they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from gradatlas.datasets import load_dataset
from gradatlas.models import build_model
from gradatlas.models.stacked import rng_state, stack_models, unstack_weights
from gradatlas.suites import Trial


@dataclass(frozen=True)
class Parity:
    """One cell's seeds, batched vs alone."""

    members: int
    steps: int  # steps compared (of the shortest member)
    worst_loss_rel: float  # worst |batched - alone| / |alone| over members and steps
    worst_eval_rel: float  # the same for the recorded validation losses
    init_identical: bool  # every member's initial weights equal bit for bit
    labels_alone: tuple[str, ...]
    labels_batched: tuple[str, ...]
    explode_steps_alone: tuple[float | None, ...]
    explode_steps_batched: tuple[float | None, ...]

    @property
    def same_outcomes(self) -> bool:
        return (
            self.labels_alone == self.labels_batched
            and self.explode_steps_alone == self.explode_steps_batched
        )

    def row(self, case: str, tolerance: float, **extra: Any) -> dict[str, Any]:
        """One row of a parity benchmark's table and JSON (``benchmarks/*_parity.py``)."""
        return {
            "case": case,
            "members": self.members,
            **extra,
            "steps": self.steps,
            "worst_loss_rel": self.worst_loss_rel,
            "worst_eval_rel": self.worst_eval_rel,
            "tolerance": tolerance,
            "init_identical": self.init_identical,
            "same_outcomes": self.same_outcomes,
            "labels": list(self.labels_batched),
        }


def markdown_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The parity rows as a markdown table; rows with ``cells`` (fused units) show
    ``members (cells)``."""
    cells = bool(rows) and "cells" in rows[0]
    lines = [
        f"| configuration | {'members (cells)' if cells else 'members'} | steps "
        "| worst rel. diff, loss | worst rel. diff, val loss | tolerance | init bitwise "
        "| same outcomes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        members = f"{r['members']} ({r['cells']})" if cells else f"{r['members']}"
        lines.append(
            f"| {r['case']} | {members} | {r['steps']} | {r['worst_loss_rel']:.1e} "
            f"| {r['worst_eval_rel']:.1e} | {r['tolerance']:.0e} | {r['init_identical']} "
            f"| {r['same_outcomes']} |"
        )
    return lines


def worst_rel(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    """Worst relative difference of two curves (inf if they stop or go non-finite apart)."""
    return _rel(a, b)[0]


def _rel(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[float, int]:
    n = min(len(a), len(b))
    x = np.asarray(a[:n], dtype=float)
    y = np.asarray(b[:n], dtype=float)
    both = np.isfinite(x) & np.isfinite(y)
    if len(a) != len(b) or not np.array_equal(np.isfinite(x), np.isfinite(y)):
        return float("inf"), n  # a member stopped at another step, or went non-finite elsewhere
    if not both.any():
        return 0.0, n
    rel = np.abs(x[both] - y[both]) / np.maximum(np.abs(x[both]), 1e-30)
    return float(rel.max()), n


def init_identical(trials: Sequence[Trial]) -> bool:
    """Whether the stacked model's member k starts with trial k's weights, bit for bit."""
    spec = trials[0].spec
    data = load_dataset(spec.dataset.name, spec.dataset.seed, spec.dataset.options)
    models = []
    for t in trials:
        pl.seed_everything(t.spec.seed, workers=False, verbose=False)
        models.append(build_model(t.spec.model, data.input_shape, data.num_outputs))
    streams = [rng_state(torch.device("cpu"))] * len(models)  # weights only: no draws made
    stacked = unstack_weights(stack_models(models, rng_states=streams))
    return all(
        torch.equal(w, m.weight)
        for member, model in zip(stacked, models, strict=True)
        for w, (_, m) in zip(member, model.weight_layers(), strict=True)
    )


def compare(trials: Sequence[Trial], accelerator: str = "cpu") -> Parity:
    """Run ``trials`` (of one shape) alone and stacked; set ``instrument.max_points``
    at least to the steps, so every step's loss is compared."""
    from gradatlas.runners.trial import run_trial, run_trials

    alone = [run_trial(t, accelerator=accelerator) for t in trials]
    batched = run_trials(trials, accelerator=accelerator)
    loss_rel, eval_rel, steps = 0.0, 0.0, None
    for a, b in zip(alone, batched, strict=True):
        rel, n = _rel(a.curves["train"]["loss"], b.curves["train"]["loss"])
        loss_rel, steps = max(loss_rel, rel), n if steps is None else min(steps, n)
        eval_rel = max(
            eval_rel, _rel(a.curves["eval"]["val_loss"], b.curves["eval"]["val_loss"])[0]
        )
    return Parity(
        members=len(trials),
        steps=steps or 0,
        worst_loss_rel=loss_rel,
        worst_eval_rel=eval_rel,
        init_identical=init_identical(trials),
        labels_alone=tuple(r.outcome.label for r in alone),
        labels_batched=tuple(r.outcome.label for r in batched),
        explode_steps_alone=tuple(r.summary.get("explode_step") for r in alone),
        explode_steps_batched=tuple(r.summary.get("explode_step") for r in batched),
    )
