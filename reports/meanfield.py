"""Mean-field signal propagation (Poole et al. 2016; Schoenholz et al. 2017), numpy only.

A wide fully connected net with weights ~ N(0, sigma_w^2 / fan_in) and biases ~ N(0, sigma_b^2)
sends an input's squared length ``q`` and two inputs' correlation ``c`` through the layers by
two deterministic maps. Their fixed points and slopes say how deep a net can still be trained:

- length map  q <- sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2, fixed point ``q*``;
- ``chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]``: the slope of the correlation map at c = 1 and the
  per-layer factor of the squared gradient norm. ``chi_1 = 1`` is the order-to-chaos boundary;
- correlation map  c <- (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q*, u1, u2 of variance q*
  and correlation c; fixed point ``c*`` (1 in the ordered phase, below 1 in the chaotic one);
- ``chi_c = sigma_w^2 E[phi'(u1) phi'(u2)]`` at c*; depth scales ``xi_c = -1 / ln chi_c``
  (correlations) and ``xi_q = -1 / ln(chi_1 + sigma_w^2 E[phi''(u) phi(u)])`` (lengths).

Schoenholz et al. (2017) find that nets deeper than about ``6 xi_c`` do not train
(``TRAINABLE_DEPTH_FACTOR``); ``xi_c`` diverges at the boundary, so only critically initialised
nets train at any depth. Their figures use sigma_b^2 = 0.05 (``PAPER_SIGMA_B2``), where the
tanh boundary is at sigma_w^2 ~ 1.76.

Without biases (sigma_b^2 = 0) the ordered side degenerates (``MeanField.phase`` ``vanishing``):
q* = 0, every input's length decays to zero like chi_1^l, and the net runs in tanh's linear
regime, which keeps the correlation between two inputs where it is: c = 1 does not attract,
xi_c is infinite, and the depth scale that limits training there is the gradients' own,
``xi_grad = -1 / ln chi_1`` (the same number as xi_c of the ordered phase proper, where
chi_c = chi_1; the label is what differs).

Expectations are trapezoid sums on a grid that refines with q (see ``_nodes``); fixed points are
found by bisection, not iteration, because iteration slows to a crawl exactly where the answer
matters, at the boundary.

No torch, no scipy: this module is imported by the report, which must build anywhere.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

TRAINABLE_DEPTH_FACTOR = 6.0  # Schoenholz et al. 2017, Fig. 5-6: trainable while depth < 6 xi_c
PAPER_SIGMA_B2 = 0.05  # the bias variance of Schoenholz et al.'s phase diagrams
Q_FLOOR = 1e-12  # a fixed point below this is the trivial q* = 0 (sigma_b = 0, ordered phase)
_BISECT_STEPS = 200
_NOISE = 1e-12  # quadrature round-off: a map value this close to c is c

Fn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Activation:
    """phi and its first two derivatives, vectorised."""

    phi: Fn
    dphi: Fn
    d2phi: Fn


def _sech2(x: np.ndarray) -> np.ndarray:
    return 1.0 / np.cosh(np.clip(x, -350.0, 350.0)) ** 2


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; math.erf per element is exact and fast enough for ~10^4 nodes.
    return np.vectorize(math.erf, otypes=[float])(x)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

# A plain registry: one entry per activation the theory is drawn for. erf is here because its
# Gaussian expectations have closed forms, which is how the tests check the quadrature.
ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation(np.tanh, _sech2, lambda x: -2.0 * np.tanh(x) * _sech2(x)),
    "erf": Activation(
        _erf,
        lambda x: _TWO_OVER_SQRT_PI * np.exp(-(x**2)),
        lambda x: -2.0 * x * _TWO_OVER_SQRT_PI * np.exp(-(x**2)),
    ),
}


@dataclass(frozen=True)
class MeanField:
    """The fixed points and depth scales of one (activation, sigma_w^2, sigma_b^2)."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    q_star: float
    chi_1: float
    c_star: float  # NaN where q* = 0: every correlation is a fixed point there
    chi_c: float
    xi_c: float  # inf at the boundary, and where q* = 0
    xi_q: float
    xi_grad: float  # -1 / ln chi_1: gradients vanish over it (inf from chi_1 = 1 up)

    @property
    def phase(self) -> str:
        """``ordered`` (chi_1 < 1: inputs' correlations go to 1, gradients vanish),
        ``chaotic`` (chi_1 > 1: correlations decay, gradients explode), ``critical``, or
        ``vanishing``: chi_1 < 1 with q* = 0 (sigma_b^2 = 0), where lengths and gradients
        vanish but correlations freeze rather than go to 1 (the module docstring)."""
        if math.isclose(self.chi_1, 1.0, abs_tol=1e-9):
            return "critical"
        if self.chi_1 > 1.0:
            return "chaotic"
        return "vanishing" if self.q_star == 0.0 else "ordered"

    @property
    def scale_name(self) -> str:
        """The depth scale that bounds training here: ``xi_grad`` where q* = 0, else ``xi_c``."""
        return "xi_grad" if self.phase == "vanishing" else "xi_c"

    @property
    def bound_scale(self) -> float:
        """The value of ``scale_name``."""
        return self.xi_grad if self.phase == "vanishing" else self.xi_c

    @property
    def trainable_depth(self) -> float:
        """Schoenholz et al.'s prediction of the deepest trainable net: 6 xi_c (6 xi_grad where
        q* = 0, whose xi_c is infinite though gradients vanish)."""
        return TRAINABLE_DEPTH_FACTOR * self.bound_scale


# -- Gaussian expectations -----------------------------------------------------------------------
# The trapezoid rule on z in [-Z_MAX, Z_MAX]: for an integrand analytic in a strip of half-width d
# its error falls like exp(-2 pi d / h), and phi(sqrt(q) z) for tanh has its nearest pole at
# d = pi / (2 sqrt(q)). So the step shrinks as 1 / sqrt(q); Gauss-Hermite with fixed nodes, whose
# accuracy collapses for the narrow sech^2 integrands of large q (1e-3 at q = 9 with 121 nodes),
# does not. Z_MAX = 9 leaves out a Gaussian mass of 2e-19.
Z_MAX = 9.0
STEP = 0.2  # at most; STEP_Q / sqrt(q) below it: exp(-2 pi d / h) < 1e-15
STEP_Q = 0.25


def _nodes(q: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of E[f(z)], z ~ N(0, 1), fine enough for f(sqrt(q) z)."""
    h = min(STEP, STEP_Q / math.sqrt(max(q, 1e-12)))
    n = 2 * math.ceil(Z_MAX / h) + 1
    z = np.linspace(-Z_MAX, Z_MAX, n)
    w = np.exp(-0.5 * z * z)
    return z, w / w.sum()


def expect(f: Fn, q: float) -> float:
    """E[f(u)], u ~ N(0, q)."""
    z, w = _nodes(q)
    return float(w @ f(math.sqrt(max(q, 0.0)) * z))


def expect_pair(f: Fn, g: Fn, q: float, c: float) -> float:
    """E[f(u1) g(u2)], (u1, u2) centred Gaussian, both of variance q, correlation c."""
    c = min(max(c, -1.0), 1.0)
    s = math.sqrt(max(q, 0.0))
    z, w = _nodes(q)
    u1 = s * z
    # E over z2 first, for each z1: u2 = s (c z1 + sqrt(1 - c^2) z2)
    u2 = s * (c * z[:, None] + math.sqrt(max(1.0 - c * c, 0.0)) * z[None, :])
    inner = g(u2) @ w
    return float(w @ (f(u1) * inner))


# -- the maps and their fixed points -------------------------------------------------------------
def length_map(q: float, sigma_w2: float, sigma_b2: float, activation: str = "tanh") -> float:
    phi = ACTIVATIONS[activation].phi
    return sigma_w2 * expect(lambda u: phi(u) ** 2, q) + sigma_b2


def correlation_map(
    c: float, q_star: float, sigma_w2: float, sigma_b2: float, activation: str = "tanh"
) -> float:
    phi = ACTIVATIONS[activation].phi
    return (sigma_w2 * expect_pair(phi, phi, q_star, c) + sigma_b2) / q_star


def _bisect(f: Callable[[float], float], lo: float, hi: float) -> float:
    """A root of f in [lo, hi] where f(lo) and f(hi) differ in sign: regula falsi with the
    Illinois step (Dowell & Jarratt 1971), which keeps the bracket of bisection, so it cannot
    miss, and converges superlinearly: about 10 evaluations of the maps instead of 50, which
    matters for the correlation map's double sums (the report draws 6 xi_c at 160 points)."""
    flo, fhi = f(lo), f(hi)
    side = 0
    for _ in range(_BISECT_STEPS):
        if flo == fhi:  # flat (noise): fall back to halving
            mid = 0.5 * (lo + hi)
        else:
            mid = (lo * fhi - hi * flo) / (fhi - flo)
            if not lo < mid < hi:
                mid = 0.5 * (lo + hi)
        fmid = f(mid)
        if fmid == 0.0 or hi - lo <= 1e-15 * max(1.0, abs(mid)):
            return mid
        if (fmid > 0) == (flo > 0):
            lo, flo = mid, fmid
            if side == -1:
                fhi /= 2.0
            side = -1
        else:
            hi, fhi = mid, fmid
            if side == 1:
                flo /= 2.0
            side = 1
        if hi - lo <= 1e-15 * max(1.0, abs(mid)):
            return 0.5 * (lo + hi)
    return 0.5 * (lo + hi)


def length_fixed_point(sigma_w2: float, sigma_b2: float, activation: str = "tanh") -> float:
    """q*: the largest fixed point of the length map (0 when sigma_b = 0 in the ordered phase,
    where every input's length decays to zero)."""

    def f(q: float) -> float:
        return length_map(q, sigma_w2, sigma_b2, activation) - q

    # A bounded phi: the map never exceeds sigma_w^2 sup phi^2 + sigma_b^2; grow hi until f < 0.
    hi = max(1.0, 2.0 * (sigma_w2 + sigma_b2))
    while f(hi) > 0:
        hi *= 2.0
    lo = Q_FLOOR
    if f(lo) <= 0:
        return 0.0
    q = _bisect(f, lo, hi)
    return 0.0 if q < Q_FLOOR * 10 else q


def correlation_fixed_point(
    q_star: float, chi_1: float, sigma_w2: float, sigma_b2: float, activation: str = "tanh"
) -> float:
    """c*: 1 in the ordered phase (chi_1 <= 1), else the stable fixed point below 1; NaN where
    q* = 0 (the correlation map is 0/0 there, the identity in the limit: no c is preferred)."""
    if q_star <= 0.0:
        return math.nan
    if chi_1 <= 1.0:
        return 1.0

    def g(c: float) -> float:
        return correlation_map(c, q_star, sigma_w2, sigma_b2, activation) - c

    # At c = 0 the map is (sigma_w^2 E[phi]^2 + sigma_b^2) / q* >= 0 = c, so c* is in [0, 1):
    # exactly 0 for an odd phi with sigma_b = 0 (the quadrature leaves ~1e-16 of noise there).
    # Just below 1 the map falls under the diagonal (its slope at c = 1 is chi_1 > 1); back off
    # from 1 until it does, then bisect.
    if g(0.0) <= _NOISE:
        return 0.0
    hi = 1.0 - 1e-9
    while g(hi) >= 0 and hi > 1.0 - 1e-3:
        hi = 1.0 - 10 * (1.0 - hi)
    return _bisect(g, 0.0, hi)


@functools.lru_cache(maxsize=4096)  # a report asks for the same few sigma_w^2 again and again
def mean_field(sigma_w2: float, sigma_b2: float = 0.0, activation: str = "tanh") -> MeanField:
    """Fixed points, slopes and depth scales of a net with weight variance sigma_w2 / fan_in and
    bias variance sigma_b2."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"no mean-field entry for {activation!r} (known: {', '.join(ACTIVATIONS)})"
        )
    if sigma_w2 <= 0 or sigma_b2 < 0:
        raise ValueError("sigma_w2 must be > 0 and sigma_b2 >= 0")
    act = ACTIVATIONS[activation]
    q_star = length_fixed_point(sigma_w2, sigma_b2, activation)
    chi1 = sigma_w2 * expect(lambda u: act.dphi(u) ** 2, q_star)
    c_star = correlation_fixed_point(q_star, chi1, sigma_w2, sigma_b2, activation)
    if math.isnan(c_star):  # q* = 0: the linearised correlation map is the identity
        chi_c = 1.0
    elif c_star == 1.0:
        chi_c = chi1
    else:
        chi_c = sigma_w2 * expect_pair(act.dphi, act.dphi, q_star, c_star)
    chi_q = chi1 + sigma_w2 * expect(lambda u: act.d2phi(u) * act.phi(u), q_star)
    return MeanField(
        activation=activation,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        q_star=q_star,
        chi_1=chi1,
        c_star=c_star,
        chi_c=chi_c,
        xi_c=depth_scale(chi_c),
        xi_q=depth_scale(chi_q),
        xi_grad=depth_scale(chi1),
    )


def chi_1(sigma_w2: float, sigma_b2: float = 0.0, activation: str = "tanh") -> float:
    """sigma_w^2 E[phi'(sqrt(q*) z)^2]: the boundary's test, without the correlation map."""
    dphi = ACTIVATIONS[activation].dphi
    q_star = length_fixed_point(sigma_w2, sigma_b2, activation)
    return sigma_w2 * expect(lambda u: dphi(u) ** 2, q_star)


def depth_scale(chi: float) -> float:
    """-1 / ln(chi): layers over which a deviation shrinks by e (inf from chi = 1 up: none
    shrinks)."""
    if chi <= 0:
        return 0.0
    log = math.log(chi)
    return math.inf if log > -1e-12 else -1.0 / log


@functools.lru_cache(maxsize=64)
def critical_sigma_w2(sigma_b2: float = 0.0, activation: str = "tanh") -> float:
    """The sigma_w^2 at which chi_1 = 1 for this sigma_b^2 (the order-to-chaos boundary)."""

    def f(sw2: float) -> float:
        return chi_1(sw2, sigma_b2, activation) - 1.0

    lo, hi = 0.5, 2.0
    while f(hi) < 0:
        hi *= 2.0
    while f(lo) > 0:
        lo /= 2.0
    return _bisect(f, lo, hi)


def trainable_depth_curve(
    sigma_w2: np.ndarray | list[float], sigma_b2: float = 0.0, activation: str = "tanh"
) -> np.ndarray:
    """6 xi_c at each sigma_w^2 (inf at the boundary; 6 xi_grad where q* = 0, see
    ``MeanField.trainable_depth``): the curve the phase diagram overlays."""
    return np.array([mean_field(float(s), sigma_b2, activation).trainable_depth for s in sigma_w2])
