"""Optimizers and learning-rate schedules, as registries of small builders.

Every optimizer builder takes ``(params, lr, weight_decay)`` from the framework and its own
hyper-parameters as options, so a suite level ``{name: adam, lr: 1e-3, beta2: 0.99}`` is checked
against the builder's signature (types and ranges). ``weight_decay`` here is *coupled* L2 (added
to the gradient, as ``torch.optim.SGD(weight_decay=...)`` does); the decoupled (AdamW-style) form
is applied by the training module itself for every optimizer except those registered
``decoupled=True`` (``adamw``), where torch does it natively.

Each optimizer's registration carries ``default_lr``: the learning rate a level gets when neither
the level, the grid nor ``train.lr`` sets one, the values practitioners start from, so
``optimizer: [sgd, adam]`` is a fair first comparison.

This module lives beside the registry (not in the runners) because validating a suite reads its
names, options and metadata; torch is imported inside the builders only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from gradatlas.bounds import NonNegativeInt, Positive, PositiveInt, Probability, Unit
from gradatlas.registry import Registry

if TYPE_CHECKING:
    import torch

Params = Iterable[Any]  # torch.nn.Parameter
OPTIMIZERS: Registry = Registry("optimizer", fixed=3)


def default_lr(name: str) -> float:
    return float(OPTIMIZERS.meta(name, "default_lr"))


def natively_decoupled(name: str) -> bool:
    """Whether torch applies this optimizer's weight decay decoupled itself (AdamW)."""
    return bool(OPTIMIZERS.meta(name, "decoupled", False))


@OPTIMIZERS.register("sgd", default_lr=0.1)
def sgd(params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Plain stochastic gradient descent, no momentum."""
    import torch

    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("momentum", default_lr=0.01)
def momentum(
    params: Params, lr: float, weight_decay: float, momentum: Unit = 0.9
) -> torch.optim.Optimizer:
    """SGD with heavy-ball momentum (Polyak)."""
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("nesterov", default_lr=0.01)
def nesterov(
    params: Params, lr: float, weight_decay: float, momentum: Unit = 0.9
) -> torch.optim.Optimizer:
    """SGD with Nesterov accelerated gradient (look-ahead momentum)."""
    import torch

    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay
    )


@OPTIMIZERS.register("rmsprop", default_lr=1e-3)
def rmsprop(
    params: Params,
    lr: float,
    weight_decay: float,
    alpha: Probability = 0.99,
    eps: Positive = 1e-8,
    momentum: Unit = 0.0,
) -> torch.optim.Optimizer:
    """RMSprop: steps scaled by a running RMS of the gradient."""
    import torch

    return torch.optim.RMSprop(
        params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay
    )


@OPTIMIZERS.register("adagrad", default_lr=1e-2)
def adagrad(
    params: Params, lr: float, weight_decay: float, eps: Positive = 1e-10
) -> torch.optim.Optimizer:
    """Adagrad: per-parameter steps shrinking with the accumulated squared gradient."""
    import torch

    return torch.optim.Adagrad(params, lr=lr, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adam", default_lr=1e-3)
def adam(
    params: Params,
    lr: float,
    weight_decay: float,
    beta1: Unit = 0.9,
    beta2: Unit = 0.999,
    eps: Positive = 1e-8,
) -> torch.optim.Optimizer:
    """Adam with coupled L2 (weight decay added to the gradient before the moments)."""
    import torch

    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw", default_lr=1e-3, decoupled=True)
def adamw(
    params: Params,
    lr: float,
    weight_decay: float,
    beta1: Unit = 0.9,
    beta2: Unit = 0.999,
    eps: Positive = 1e-8,
) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""
    import torch

    return torch.optim.AdamW(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay
    )


def build_optimizer(params: Params, optim: Any) -> torch.optim.Optimizer:
    """From a resolved ``OptimSpec``. Decoupled decay for optimizers torch does not decouple
    itself is applied by the training module, so the optimizer then gets ``weight_decay=0``."""
    coupled = optim.weight_decay.mode == "coupled" or natively_decoupled(optim.optimizer.name)
    wd = optim.weight_decay.value if coupled else 0.0
    return OPTIMIZERS.build(optim.optimizer.name, params, optim.lr, wd, **optim.optimizer.options)


# -- schedules: builders return a multiplier of the base lr as a function of the step ----------
Schedule = Callable[[int], float]
SCHEDULES: Registry = Registry("schedule", fixed=1)


def _with_warmup(fn: Schedule, warmup_steps: int) -> Schedule:
    if warmup_steps <= 0:
        return fn
    return lambda step: min(1.0, (step + 1) / warmup_steps) * fn(step)


@SCHEDULES.register("constant")
def constant(total_steps: int, warmup_steps: NonNegativeInt = 0) -> Schedule:
    """The base learning rate throughout (after an optional linear warm-up)."""
    return _with_warmup(lambda step: 1.0, warmup_steps)


@SCHEDULES.register("step")
def step(
    total_steps: int,
    step_size: PositiveInt = 1000,
    gamma: Positive = 0.1,
    warmup_steps: NonNegativeInt = 0,
) -> Schedule:
    """Multiply the rate by ``gamma`` every ``step_size`` optimizer steps."""
    return _with_warmup(lambda s: gamma ** (s // max(1, step_size)), warmup_steps)


@SCHEDULES.register("cosine")
def cosine(
    total_steps: int, min_ratio: Probability = 0.0, warmup_steps: NonNegativeInt = 0
) -> Schedule:
    """Cosine decay from the base rate to ``min_ratio`` times it over the run."""

    def fn(s: int) -> float:
        progress = min(1.0, s / max(1, total_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return _with_warmup(fn, warmup_steps)


@SCHEDULES.register("linear_warmup")
def linear_warmup(total_steps: int, warmup_steps: NonNegativeInt = 100) -> Schedule:
    """Linear warm-up from ~0 to the base rate over ``warmup_steps``, constant after."""
    return _with_warmup(lambda s: 1.0, warmup_steps)
