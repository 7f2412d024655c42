"""Which trials train together as one stacked model, decided where they will train.

Two execution choices, never part of a trial's identity:

- ``execution.fuse`` (``--no-fuse``): ``auto`` puts every pending trial that shares a *shape*
  (``shape_key``: the same network, data, optimizer family, budget and precision) into one
  work unit, whatever their seeds, inits, learning rates, schedules, optimizer options, weight
  decay, dropout, clipping bounds and label smoothing; ``off`` makes one unit per cell (its
  seeds).
- ``execution.batch_seeds`` (``--batch-seeds`` / ``--no-batch``): how many of a unit's trials
  stack into one model. ``auto`` stacks as many as fit in the worker's share of its device,
  by the shape's memory as the worker measures it (``runners.packing``); an integer K stacks
  at most K.

16-mixed always trains one trial at a time: one GradScaler's loss scale would be shared by the
members, so one member's overflow would skip every member's step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from gradatlas.suites import Trial

BatchSetting = int | str  # "auto" or a positive K
MAX_AUTO = 256  # beyond this the grouped kernels stop getting faster; more seeds wait a turn


def unbatchable(trial: Trial) -> str | None:
    """Why this trial must train on its own, or None."""
    from gradatlas.models import MODELS

    if trial.spec.train.precision == "16-mixed":
        return "16-mixed (one loss scale would couple the seeds)"
    family = trial.spec.model.family
    if MODELS.meta(family, "batched") is None:
        return f"model family {family} has no stacked form (models.stacked)"
    return None


# What may differ between the members of one stacked model: each is a per-member value inside
# the stacked forward pass, loss, clipping and optimizer step (``models.stacked``,
# ``runners.module``, ``runners.member_optim``). Everything else in the config is the shape.
MEMBER_FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("init", "dropout"),
    "train": ("schedule", "label_smoothing"),
}


def shape_key(trial: Trial) -> str:
    """The trials with this key can train as members of one stacked model: their configs agree
    on everything but ``seed``, ``MEMBER_FIELDS``, the optimizer's hyper-parameters (its name
    stays: one update rule per unit) and the clipping bound (its mode stays)."""
    from gradatlas.identity import config_hash

    config = trial.spec.to_config()
    shape: dict[str, Any] = {k: v for k, v in config.items() if k != "seed"}
    for section, fields in MEMBER_FIELDS.items():
        shape[section] = {k: v for k, v in config[section].items() if k not in fields}
    shape["optim"] = {"name": config["optim"]["name"]}
    clip = dict(config["train"].get("grad_clip") or {})
    clip.pop("max", None)
    shape["train"]["grad_clip"] = clip
    return config_hash(shape)


def unit_key(trial: Trial, fuse: bool) -> str:
    """The work unit a pending trial belongs to: its shape's (fusion), else its cell's."""
    if fuse and unbatchable(trial) is None:
        return f"shape:{shape_key(trial)}"
    return trial.cell_id


def free_memory(device: Any) -> int:
    """Bytes free on ``device`` (a torch.device): the GPU's, or this machine's available RAM."""
    if device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def group_size(trials: Sequence[Trial], setting: BatchSetting, auto: Callable[[], int]) -> int:
    """How many of one unit's ``trials`` train together under ``execution.batch_seeds``:
    1 where they cannot stack (``batch_seeds: 1``, a lone trial, ``unbatchable``), K as given,
    and for ``auto`` what ``auto()`` says (a worker measures its device, ``runners.packing``;
    the driver's cost estimate cannot and assumes ``MAX_AUTO``)."""
    if setting == 1 or len(trials) <= 1 or unbatchable(trials[0]):
        return 1
    return auto() if setting == "auto" else int(setting)


def cut(trials: Sequence[Trial], size: int) -> list[list[Trial]]:
    """``trials`` in order, in groups of ``size`` (the last may be smaller)."""
    return [list(trials[i : i + size]) for i in range(0, len(trials), size)]


def seed_groups(trials: Sequence[Trial], setting: BatchSetting, device: Any) -> list[list[Trial]]:
    """The trials of one unit (one cell's seeds, or one shape's trials when fused), in order,
    as groups that train together."""

    def measured() -> int:
        from gradatlas.runners.packing import members_per_group

        return members_per_group(trials, device, MAX_AUTO)

    return cut(trials, group_size(trials, setting, measured))


def trial_work(trial: Trial) -> float:
    """A relative measure of a trial's training work: steps x (depth + a fixed share), the
    shape of the per-step cost measured on CPU and GPU alike (``app.cost``: a fixed per-step
    cost about ten layers' worth). Only ratios matter: it orders units, it prices nothing."""
    from gradatlas.suites.tune import budget_steps

    return float(budget_steps(trial.spec) or 0) * (trial.spec.model.depth + 10)


# The most work one piece of a split unit may hold, as a share of one worker's: a half leaves
# longest-first scheduling enough pieces to even out the workers (at most ~1 piece's worth of
# imbalance), while a GPU's units stay wide (an atlas shape is far below a worker's share).
SPLIT_GRAIN = 0.5


def balanced(units: Sequence[Any], workers: int) -> list[Any]:
    """Units split so that none holds more than its workers' share of the sweep's work.

    Fusion makes few, unequal units: the slice's two shapes are a depth-5 unit and a depth-20
    one with four times its work, and on two workers the depth-5 one finishes early and its
    worker idles while the other trains alone. A unit with more than ``SPLIT_GRAIN`` of one
    worker's share (``total / workers``) is cut into near-equal runs of its trials no larger
    than that (plan order kept, so a cell's seeds stay together where the cut allows); the
    pieces then fill the workers evenly under ``longest_first``. Members train independently,
    so a split changes how trials are packed, never what they compute; on one worker nothing
    is split.
    """
    if workers <= 1 or not units:
        return list(units)
    work = [sum(trial_work(t) for t in u.trials) for u in units]
    piece = SPLIT_GRAIN * sum(work) / workers
    out: list[Any] = []
    for unit, w in zip(units, work, strict=True):
        pieces = min(len(unit.trials), math.ceil(w / piece - 1e-9)) if piece > 0 else 1
        if pieces <= 1:
            out.append(unit)
            continue
        size = math.ceil(len(unit.trials) / pieces)
        for i in range(0, len(unit.trials), size):
            out.append(
                dataclasses.replace(
                    unit, key=f"{unit.key}#{i // size}", trials=unit.trials[i : i + size]
                )
            )
    return out


def longest_first(units: Sequence[Any]) -> list[Any]:
    """Work units with the most work first (ties in plan order): with several workers, the
    last unit to finish is then a short one, not a long one started late (LPT scheduling).
    Fused units are few and unequal (a depth-20 shape next to a depth-3 one), so their order
    decides the sweep's tail."""
    work = {id(u): sum(trial_work(t) for t in u.trials) for u in units}
    return sorted(units, key=lambda u: -work[id(u)])
