"""The numbers the literature section sets beside a paper's: estimates with 95% intervals, the
rules that call them in agreement, and the fit of the deepest trainable net.

Pure functions of arrays (no Experiment, no MLflow), so tests feed them synthetic data and the
command line or a notebook can call them. Every interval is deterministic: the bootstrap draws
from a fixed seed, and the depth fit is a profile likelihood on a fixed grid.

- ``rate_estimate``: a share of trials with its Wilson interval (few seeds, rates at 0 or 1).
- ``ratio_estimate``: mean(A) / mean(B) of two groups of trials, percentile bootstrap resampling
  each group's trials (seeds) on its own.
- ``growth_estimate``: the per-layer factor g of a quantity that grows like g^depth, from a least
  squares line of its log on depth over independent trials, with the t interval of the slope.
- ``fit_trainable_depth``: the depth at which the trained rate falls through 50%, from a logistic
  in log depth, with a profile-likelihood interval (``DepthFit``).
- ``Rule``: when a paper's number and ours agree, stated so the report can print it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gradatlas.reports.stats import wilson

RESAMPLES = 4000
BOOTSTRAP_SEED = 20_250_417
CHI2_95 = 3.841458820694124  # chi-square(1) 95% quantile: the profile-likelihood cut-off


@dataclass(frozen=True)
class Estimate:
    """A measured number with its 95% interval and what it stands on (``basis``: "5/6 trials").
    ``lo``/``hi`` are NaN when the data cannot show a spread (one trial)."""

    value: float
    lo: float
    hi: float
    basis: str

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) or math.isfinite(self.hi)


@dataclass(frozen=True)
class Rule:
    """When the paper's number and ours agree.

    ``inside``: the paper's value lies in our 95% interval (the quantity is the same, so the
    number itself must match). ``side``: our whole interval lies on the same side of
    ``reference`` (the no-effect value: 1 for a ratio, 50% for a trained rate) as the paper's
    value: the analogue shows the paper's effect, in its direction, beyond chance, while its
    size is not expected to carry over from the paper's data and scale to ours.
    """

    kind: Literal["inside", "side"]
    reference: float = math.nan

    def agrees(self, paper: float, ours: Estimate) -> bool:
        return self.judge(paper, ours)[0]

    def judge(self, paper: float, ours: Estimate) -> tuple[bool, str]:
        """Whether they agree, and why not when they do not: no interval, the interval misses
        the paper's value (``inside``), straddles the reference or lies on its other side."""
        if not ours.has_interval or not math.isfinite(ours.value):
            return False, "no interval"
        if self.kind == "inside":
            if ours.lo <= paper <= ours.hi:
                return True, ""
            return False, "outside our CI"
        ref = f"{self.reference:g}"
        if (paper > self.reference and ours.lo > self.reference) or (
            paper < self.reference and ours.hi < self.reference
        ):
            return True, ""
        if ours.lo <= self.reference <= ours.hi:
            return False, f"our CI straddles {ref}"
        return False, f"other side of {ref}"

    @property
    def text(self) -> str:
        if self.kind == "inside":
            return "paper's value inside our 95% CI"
        return f"our 95% CI on the paper's side of {self.reference:g}"


INSIDE = Rule("inside")


def side(reference: float) -> Rule:
    """The ``side`` rule about ``reference``."""
    return Rule("side", reference)


# -- estimates -----------------------------------------------------------------------------------
def rate_estimate(hits: Sequence[bool]) -> Estimate:
    """The share of true values, with its Wilson 95% interval."""
    x = np.asarray(hits, dtype=bool)
    n, k = int(x.size), int(x.sum())
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, "no trials")
    lo, hi = wilson(k, n)
    return Estimate(k / n, float(lo), float(hi), f"{k}/{n} trials")


def ratio_estimate(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) / mean(b) over the finite values, with a 95% percentile bootstrap interval that
    resamples each group on its own (the trials of two cells are independent nets)."""
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
    basis = f"n = {xa.size} vs {xb.size} trials"
    if xa.size == 0 or xb.size == 0 or xb.mean() == 0:
        return Estimate(math.nan, math.nan, math.nan, basis)
    value = float(xa.mean() / xb.mean())
    if xa.size < 2 or xb.size < 2:
        return Estimate(value, math.nan, math.nan, basis)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    ma = xa[rng.integers(0, xa.size, size=(RESAMPLES, xa.size))].mean(axis=1)
    mb = xb[rng.integers(0, xb.size, size=(RESAMPLES, xb.size))].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = ma / mb
    lo, hi = np.nanquantile(ratios, [0.025, 0.975])
    return Estimate(value, float(lo), float(hi), basis)


def growth_estimate(
    depths: Sequence[float], values: Sequence[float], power: float = 1.0
) -> Estimate:
    """g^power per layer where ``values`` ~ C g^depth: exp(power x slope) of the least squares line
    of ln(value) on depth, with the slope's Student-t 95% interval (each trial an independent
    net, so its residuals are independent). Non-positive or non-finite values are left out."""
    from scipy import stats as sps

    d = np.asarray(depths, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = np.isfinite(d) & np.isfinite(v) & (v > 0)
    d, y = d[keep], np.log(v[keep])
    n = int(d.size)
    basis = f"{n} trials, depths {_span(d)}"
    if n < 3 or np.ptp(d) == 0:
        return Estimate(math.nan, math.nan, math.nan, basis)
    slope, intercept = np.polyfit(d, y, 1)
    resid = y - (slope * d + intercept)
    se = math.sqrt(float(resid @ resid) / (n - 2) / float(((d - d.mean()) ** 2).sum()))
    half = float(sps.t.ppf(0.975, n - 2)) * se
    return Estimate(
        math.exp(power * slope),
        math.exp(power * (slope - half)),
        math.exp(power * (slope + half)),
        basis,
    )


def _span(d: np.ndarray) -> str:
    return f"{d.min():g}-{d.max():g}" if d.size else "none"


# -- the deepest trainable net -------------------------------------------------------------------
# The model: P(trained | depth d) = 1 / (1 + exp(s (ln d - ln L))), s > 0: trainability falls
# through 50% at L = L_max, over a width of about 1/s in ln depth. ``SLOPES`` bounds s: 64 is
# a step between neighbouring depths of any grid (their ratio 1.1 or more), and data that a step
# separates cannot locate L_max more finely than the grid does, which the interval then shows.
SLOPES = np.geomspace(0.25, 64.0, 81)
_L_POINTS = 1201
_L_MARGIN = 1.5  # the ln L grid runs this far (in ln depth) beyond the depths tried


@dataclass(frozen=True)
class DepthFit:
    """The fitted L_max with its 95% profile-likelihood interval. ``censored``: ``above`` when
    the nets trained at every depth tried (L_max is beyond the grid; ``hi`` is inf), ``below``
    when they trained at none (``lo`` is 0), else empty."""

    l_max: float
    lo: float
    hi: float
    slope: float
    n: int
    depths: tuple[float, ...]
    censored: Literal["", "above", "below"]

    @property
    def text(self) -> str:
        if self.censored == "above":
            return f"> {self.depths[-1]:g}"
        if self.censored == "below":
            return f"< {self.depths[0]:g}"
        return f"{self.l_max:.3g}"

    @property
    def interval(self) -> str:
        return f"[{self.lo:.3g}, {'∞' if math.isinf(self.hi) else f'{self.hi:.3g}'}]"


def _log_likelihood(ln_l: np.ndarray, ln_d: np.ndarray, k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log P(data | ln L, s) for every ln L (rows) and s in SLOPES (columns), from ``k`` of
    ``n`` trials trained at each depth (binomial, without the constant)."""
    z = SLOPES[None, :, None] * (ln_l[:, None, None] - ln_d[None, None, :])  # L x S x depths
    # log sigmoid(z) = -log(1 + e^-z), log(1 - sigmoid(z)) = -log(1 + e^z), without overflow
    return -(k * np.logaddexp(0.0, -z) + (n - k) * np.logaddexp(0.0, z)).sum(axis=2)


def fit_trainable_depth(depths: Sequence[float], trained: Sequence[bool]) -> DepthFit | None:
    """L_max: the depth at which the trained rate falls through 50%, by maximum likelihood of
    the logistic in log depth above, with the 95% profile-likelihood interval (the L whose best
    fit over s is within CHI2_95 / 2 of the best overall). None without two depths to compare."""
    d = np.asarray(depths, dtype=float)
    y = np.asarray(trained, dtype=bool)
    if d.size == 0 or np.unique(d).size < 2 or np.any(d <= 0):
        return None
    grid, at = np.unique(d, return_inverse=True)
    n = np.bincount(at).astype(float)
    k = np.bincount(at, weights=y.astype(float))
    ln_d = np.log(grid)
    ln_l = np.linspace(ln_d[0] - _L_MARGIN, ln_d[-1] + _L_MARGIN, _L_POINTS)
    ll = _log_likelihood(ln_l, ln_d, k, n)
    profile = ll.max(axis=1)
    best = int(np.argmax(profile))
    inside = np.flatnonzero(2.0 * (profile[best] - profile) <= CHI2_95)
    # An interval that reaches an end of the ln L grid is open on that side: the data cannot
    # tell L_max from any larger (smaller) depth.
    lo = 0.0 if inside[0] == 0 else float(np.exp(ln_l[inside[0]]))
    hi = math.inf if inside[-1] == ln_l.size - 1 else float(np.exp(ln_l[inside[-1]]))
    censored: Literal["", "above", "below"] = ""
    if y.all():
        censored = "above"
    elif not y.any():
        censored = "below"
    return DepthFit(
        l_max=float(np.exp(ln_l[best])),
        lo=lo,
        hi=hi,
        slope=float(SLOPES[int(np.argmax(ll[best]))]),
        n=int(d.size),
        depths=tuple(float(x) for x in grid),
        censored=censored,
    )


__all__ = [
    "INSIDE",
    "DepthFit",
    "Estimate",
    "Rule",
    "fit_trainable_depth",
    "growth_estimate",
    "rate_estimate",
    "ratio_estimate",
    "side",
]
