"""Hidden-layer activations, by name.

Each builder returns a fresh ``nn.Module`` (never a shared instance or a bare function), so every
hidden layer owns its activation and instrumentation can hook each layer separately.

Each registration says which failure mode instrumentation should look for: saturating
activations (``bounds=``: sigmoid, tanh, softsign) fail by units stuck in the flat tails of that
output range; the ReLU family (``relu_family=True``) fails by dead units that never activate.

torch is imported inside the builders, so validating a suite never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradatlas.bounds import NonNegative
from gradatlas.registry import Registry

if TYPE_CHECKING:
    from torch import nn

ACTIVATIONS: Registry = Registry("activation")


def _nn() -> Any:
    """torch.nn, imported on first build."""
    from torch import nn

    return nn


@ACTIVATIONS.register(bounds=(0.0, 1.0))
def sigmoid() -> nn.Module:
    """Logistic sigmoid: bounded in (0, 1), saturates, not zero-centred (the classic vanisher)."""
    return _nn().Sigmoid()


@ACTIVATIONS.register(bounds=(-1.0, 1.0))
def tanh() -> nn.Module:
    """Hyperbolic tangent: bounded in (-1, 1), zero-centred, saturates."""
    return _nn().Tanh()


@ACTIVATIONS.register(relu_family=True)
def relu() -> nn.Module:
    """Rectified linear unit max(0, x): unbounded above, can die."""
    return _nn().ReLU()


@ACTIVATIONS.register(relu_family=True)
def leaky_relu(negative_slope: NonNegative = 0.01) -> nn.Module:
    """Leaky ReLU: a small slope for x < 0 keeps gradients flowing through 'dead' units."""
    return _nn().LeakyReLU(negative_slope=negative_slope)


@ACTIVATIONS.register(relu_family=True)
def elu(alpha: NonNegative = 1.0) -> nn.Module:
    """Exponential linear unit: smooth, saturates to -alpha for x < 0."""
    return _nn().ELU(alpha=alpha)


@ACTIVATIONS.register(relu_family=True)
def selu() -> nn.Module:
    """Scaled ELU: self-normalizing with lecun_normal init (Klambauer et al. 2017)."""
    return _nn().SELU()


@ACTIVATIONS.register(relu_family=True)
def gelu() -> nn.Module:
    """Gaussian error linear unit x·Φ(x) (exact form), as in transformers."""
    return _nn().GELU()


@ACTIVATIONS.register(relu_family=True)
def silu() -> nn.Module:
    """Sigmoid linear unit x·σ(x), a.k.a. swish."""
    return _nn().SiLU()


@ACTIVATIONS.register(bounds=(-1.0, 1.0))
def softsign() -> nn.Module:
    """Softsign x / (1 + |x|): bounded like tanh but with polynomial, slower saturation."""
    return _nn().Softsign()


@ACTIVATIONS.register()
def identity() -> nn.Module:
    """No nonlinearity: a deep linear network, the baseline for signal propagation."""
    return _nn().Identity()


def is_saturating(name: str) -> bool:
    """Whether ``name`` is a bounded, saturating activation (report saturation, not dead units)."""
    return ACTIVATIONS.meta(name, "bounds") is not None


def is_relu_family(name: str) -> bool:
    """Whether ``name`` belongs to the ReLU family (report dead units, not saturation)."""
    return bool(ACTIVATIONS.meta(name, "relu_family", False))


def output_bounds(name: str) -> tuple[float, float] | None:
    """The output range of a saturating activation (None for unbounded ones), so saturation can
    be measured as the fraction of outputs near either end."""
    return ACTIVATIONS.meta(name, "bounds")
