"""Hidden-layer activations, by name.

Each builder returns a fresh ``nn.Module`` (never a shared instance or a bare function), so every
hidden layer owns its activation and instrumentation can hook each layer separately.

The family tables below tell instrumentation which failure mode to look for: saturating
activations (sigmoid, tanh, softsign) fail by units stuck in their flat tails; the ReLU family
fails by dead units that never activate.
"""

from __future__ import annotations

from torch import nn

from gradatlas.registry import Registry

ACTIVATIONS: Registry = Registry("activation")


@ACTIVATIONS.register()
def sigmoid() -> nn.Module:
    """Logistic sigmoid: bounded in (0, 1), saturates, not zero-centred (the classic vanisher)."""
    return nn.Sigmoid()


@ACTIVATIONS.register()
def tanh() -> nn.Module:
    """Hyperbolic tangent: bounded in (-1, 1), zero-centred, saturates."""
    return nn.Tanh()


@ACTIVATIONS.register()
def relu() -> nn.Module:
    """Rectified linear unit max(0, x): unbounded above, can die."""
    return nn.ReLU()


@ACTIVATIONS.register()
def leaky_relu(negative_slope: float = 0.01) -> nn.Module:
    """Leaky ReLU: a small slope for x < 0 keeps gradients flowing through 'dead' units."""
    return nn.LeakyReLU(negative_slope=negative_slope)


@ACTIVATIONS.register()
def elu(alpha: float = 1.0) -> nn.Module:
    """Exponential linear unit: smooth, saturates to -alpha for x < 0."""
    return nn.ELU(alpha=alpha)


@ACTIVATIONS.register()
def selu() -> nn.Module:
    """Scaled ELU: self-normalizing with lecun_normal init (Klambauer et al. 2017)."""
    return nn.SELU()


@ACTIVATIONS.register()
def gelu() -> nn.Module:
    """Gaussian error linear unit x·Φ(x) (exact form), as in transformers."""
    return nn.GELU()


@ACTIVATIONS.register()
def silu() -> nn.Module:
    """Sigmoid linear unit x·σ(x), a.k.a. swish."""
    return nn.SiLU()


@ACTIVATIONS.register()
def softsign() -> nn.Module:
    """Softsign x / (1 + |x|): bounded like tanh but with polynomial, slower saturation."""
    return nn.Softsign()


@ACTIVATIONS.register()
def identity() -> nn.Module:
    """No nonlinearity: a deep linear network, the baseline for signal propagation."""
    return nn.Identity()


# Bounded activations whose failure mode is saturation, with their output range (the tails of
# this range are where gradients vanish).
_SATURATING: dict[str, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
}

# Activations that are (near) zero for negative inputs: their failure mode is dead units.
_RELU_FAMILY: frozenset[str] = frozenset({"relu", "leaky_relu", "elu", "selu", "gelu", "silu"})


def is_saturating(name: str) -> bool:
    """Whether ``name`` is a bounded, saturating activation (report saturation, not dead units)."""
    ACTIVATIONS.check_name(name)
    return name in _SATURATING


def is_relu_family(name: str) -> bool:
    """Whether ``name`` belongs to the ReLU family (report dead units, not saturation)."""
    ACTIVATIONS.check_name(name)
    return name in _RELU_FAMILY


def output_bounds(name: str) -> tuple[float, float] | None:
    """The output range of a saturating activation (None for unbounded ones), so saturation can
    be measured as the fraction of outputs near either end."""
    ACTIVATIONS.check_name(name)
    return _SATURATING.get(name)
