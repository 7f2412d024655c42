"""Optimizers and learning-rate schedules, as registries of small builders.

Every optimizer builder takes ``(params, lr, weight_decay)`` from the framework and its own
hyper-parameters as options, so a suite level ``{name: adam, lr: 1e-3, beta2: 0.99}`` is checked
against the builder's signature. ``weight_decay`` here is *coupled* L2 (added to the gradient, as
``torch.optim.SGD(weight_decay=...)`` does); the decoupled (AdamW-style) form is applied by the
training module itself for every optimizer except ``adamw``, where torch does it natively.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from gradatlas.registry import Registry

Params = Iterable[torch.nn.Parameter]
OPTIMIZERS: Registry = Registry("optimizer", fixed=3)

# The learning rate a level gets when neither the level, the grid nor train.lr sets one:
# the values practitioners start from, so `optimizer: [sgd, adam]` is a fair first comparison.
DEFAULT_LR: dict[str, float] = {
    "sgd": 0.1,
    "momentum": 0.01,
    "nesterov": 0.01,
    "rmsprop": 1e-3,
    "adagrad": 1e-2,
    "adam": 1e-3,
    "adamw": 1e-3,
}

# Optimizers whose weight decay torch already applies decoupled.
NATIVELY_DECOUPLED = {"adamw"}


@OPTIMIZERS.register("sgd")
def sgd(params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Plain stochastic gradient descent, no momentum."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("momentum")
def momentum(
    params: Params, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD with heavy-ball momentum (Polyak)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("nesterov")
def nesterov(
    params: Params, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD with Nesterov accelerated gradient (look-ahead momentum)."""
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay
    )


@OPTIMIZERS.register("rmsprop")
def rmsprop(
    params: Params,
    lr: float,
    weight_decay: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    momentum: float = 0.0,
) -> torch.optim.Optimizer:
    """RMSprop: steps scaled by a running RMS of the gradient."""
    return torch.optim.RMSprop(
        params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay
    )


@OPTIMIZERS.register("adagrad")
def adagrad(
    params: Params, lr: float, weight_decay: float, eps: float = 1e-10
) -> torch.optim.Optimizer:
    """Adagrad: per-parameter steps shrinking with the accumulated squared gradient."""
    return torch.optim.Adagrad(params, lr=lr, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def adam(
    params: Params,
    lr: float,
    weight_decay: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """Adam with coupled L2 (weight decay added to the gradient before the moments)."""
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(
    params: Params,
    lr: float,
    weight_decay: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""
    return torch.optim.AdamW(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay
    )


def build_optimizer(params: Params, optim_cfg: dict) -> torch.optim.Optimizer:
    """From the resolved ``optim`` block. Decoupled decay for non-AdamW optimizers is applied
    by the training module, so the optimizer itself then gets ``weight_decay=0``."""
    options = {
        k: v for k, v in optim_cfg.items() if k not in ("name", "lr", "weight_decay", "wd_mode")
    }
    coupled = optim_cfg["wd_mode"] == "coupled" or optim_cfg["name"] in NATIVELY_DECOUPLED
    wd = optim_cfg["weight_decay"] if coupled else 0.0
    return OPTIMIZERS.build(optim_cfg["name"], params, optim_cfg["lr"], wd, **options)


# -- schedules: builders return a multiplier of the base lr as a function of the step ----------
Schedule = Callable[[int], float]
SCHEDULES: Registry = Registry("schedule", fixed=1)


def _with_warmup(fn: Schedule, warmup_steps: int) -> Schedule:
    if warmup_steps <= 0:
        return fn
    return lambda step: min(1.0, (step + 1) / warmup_steps) * fn(step)


@SCHEDULES.register("constant")
def constant(total_steps: int, warmup_steps: int = 0) -> Schedule:
    """The base learning rate throughout (after an optional linear warm-up)."""
    return _with_warmup(lambda step: 1.0, warmup_steps)


@SCHEDULES.register("step")
def step(total_steps: int, step_size: int = 1000, gamma: float = 0.1, warmup_steps: int = 0):
    """Multiply the rate by ``gamma`` every ``step_size`` optimizer steps."""
    return _with_warmup(lambda s: gamma ** (s // max(1, step_size)), warmup_steps)


@SCHEDULES.register("cosine")
def cosine(total_steps: int, min_ratio: float = 0.0, warmup_steps: int = 0) -> Schedule:
    """Cosine decay from the base rate to ``min_ratio`` times it over the run."""

    def fn(s: int) -> float:
        progress = min(1.0, s / max(1, total_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return _with_warmup(fn, warmup_steps)


@SCHEDULES.register("linear_warmup")
def linear_warmup(total_steps: int, warmup_steps: int = 100) -> Schedule:
    """Linear warm-up from ~0 to the base rate over ``warmup_steps``, constant after."""
    return _with_warmup(lambda s: 1.0, warmup_steps)
