"""The statistics of the claims audit: exact tests, effect sizes with intervals, Holm, verdicts.

Pure numpy/scipy on plain arrays, so every number the Claims section prints can be recomputed
from this module alone (and the tests check it against scipy and brute force). Two kinds of
metric, two tests:

- **Rates** (a yes/no per trial: converged, exploded, ...), compared stratum by stratum (a
  stratum is one combination of the factors the claim holds equal). The p-value is the *exact
  conditional test for K 2x2 tables*: given every stratum's margins (trials per group, successes
  in all), the count of successes in group A of stratum k is hypergeometric, so their sum T over
  the strata has the convolution of those hypergeometric distributions; p is the tail of T beyond
  the observed sum (for K = 1 this is Fisher's exact test). The effect is the Mantel-Haenszel
  risk difference (A minus B; stratum weights n_A n_B / (n_A + n_B)), with a 95% interval by
  MOVER-Wilson (Zou & Donner 2008; Zou, Huang & Zhang 2009): Wilson score limits for each
  stratum's two rates, recombined for the weighted difference. For one stratum it is Newcombe's
  (1998) hybrid score interval. Chosen over the Sato (1989) / Greenland-Robins Wald variance
  because that variance is zero when every trial of both groups has the same outcome (0% vs 0%
  explosions, 100% vs 0% convergence), common here, and a zero-width interval would "prove"
  equality from two trials.
- **Continuous metrics** (accuracy, steps, ...), as differences A minus B over matched pairs.
  The effect is the mean difference; its 95% interval is a percentile bootstrap of the mean
  (``BOOTSTRAP_RESAMPLES`` resamples of the pairs, seed ``BOOTSTRAP_SEED``), *expanded* for
  small samples (Hesterberg 2015: the percentiles taken at 2 Phi(-sqrt(n/(n-1)) t_{n-1,0.975})
  instead of 5%, which makes the plain percentile interval's too-narrow width at n < 30 honest;
  it is the range of the data at n <= 3). The p-value is the sign-flip permutation test of the
  mean difference: exact (all 2^n sign patterns) for n <= ``EXACT_PAIRS`` pairs, else Monte Carlo
  with ``PERMUTATIONS`` random patterns (seed ``PERMUTATION_SEED``, p = (1 + hits) / (1 + draws),
  never 0).

Holm's step-down adjustment runs over the claims of one audit that have data; ``verdict`` states
the rule that turns adjusted p-values and intervals into supported / refuted / inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
Z95 = float(stats.norm.ppf(0.975))
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20_240_917
EXACT_PAIRS = 16  # 2^16 = 65,536 sign patterns: exact up to here, Monte Carlo above
PERMUTATIONS = 20_000
PERMUTATION_SEED = 20_240_918
_REL_TOL = 1e-7  # ties in a discrete statistic, as scipy.stats.fisher_exact treats them

SUPPORTED, REFUTED, INCONCLUSIVE, NO_DATA = "supported", "refuted", "inconclusive", "no data"
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE, NO_DATA)

VERDICT_RULE = (
    f"Verdicts, at alpha = {ALPHA}. A claim that predicts greater (or less) is supported when "
    "its Holm-adjusted one-sided p-value in the predicted direction is below 0.05, and refuted "
    "when the Holm-adjusted one-sided p-value in the opposite direction is below 0.05 (the data "
    "show the other direction; both cannot happen at once); otherwise it is inconclusive. Holm's "
    "step-down adjustment runs over every directional claim of the audit that has data, once for "
    "the predicted-direction p-values and once for the opposite-direction ones. A claim that "
    "predicts equal (no difference larger than its margin) is supported when the 95% interval "
    "of the effect lies inside (-margin, +margin), refuted when it lies entirely outside it "
    "(the difference surely exceeds the margin), and otherwise inconclusive; its interval is "
    "not adjusted (a 95% interval inside the margin is stricter than a 5% two one-sided test, "
    "which uses the 90% interval), and it takes no part in the Holm family. A claim whose "
    "groups have no matched data gets no verdict but 'no data', with what is missing."
)


# -- rates: the exact conditional test over K 2x2 tables ----------------------------------------
@dataclass(frozen=True)
class ExactResult:
    """The exact conditional test of K 2x2 tables. ``t`` = observed successes in A summed over
    the strata, ``support`` its possible values given the margins, ``pmf`` their probabilities
    under no difference (a common odds ratio of 1)."""

    t: int
    support: np.ndarray
    pmf: np.ndarray
    p_greater: float  # P(T >= t): A has the higher rate
    p_less: float  # P(T <= t): A has the lower rate
    p_two_sided: float  # P(pmf(T) <= pmf(t)), Fisher's rule


def _counts(*arrays: Sequence[int]) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.int64).reshape(-1) for a in arrays]
    if len({a.size for a in out}) != 1:
        raise ValueError("one count per stratum in every array")
    return out


def stratified_exact_test(
    x_a: Sequence[int], n_a: Sequence[int], x_b: Sequence[int], n_b: Sequence[int]
) -> ExactResult:
    """Exact conditional test that the success rate of A differs from B's, stratified: per
    stratum k, ``x_a[k]`` successes of ``n_a[k]`` trials in A and ``x_b[k]`` of ``n_b[k]`` in B.

    Conditioning on every stratum's margins removes each stratum's own baseline rate, so strata
    with very different rates (a depth where everything explodes, one where nothing does) are
    compared only within themselves. Under no difference, x_a[k] is hypergeometric (draw n_a[k]
    of n_a[k] + n_b[k] trials, x_a[k] + x_b[k] of them successes); the null distribution of the
    sum is the convolution of the strata's distributions. A stratum whose trials all share one
    outcome has one possible value and adds nothing but a constant.
    """
    xa, na, xb, nb = _counts(x_a, n_a, x_b, n_b)
    if np.any((xa < 0) | (xb < 0) | (xa > na) | (xb > nb)):
        raise ValueError("successes must lie between 0 and the trials of their group")
    pmf = np.ones(1)
    offset = 0
    for xa_k, na_k, xb_k, nb_k in zip(xa, na, xb, nb, strict=True):
        total, successes = int(na_k + nb_k), int(xa_k + xb_k)
        lo, hi = max(0, successes - int(nb_k)), min(int(na_k), successes)
        values = np.arange(lo, hi + 1)
        pmf = np.convolve(pmf, stats.hypergeom.pmf(values, total, successes, int(na_k)))
        offset += lo
    pmf = pmf / pmf.sum()
    support = np.arange(offset, offset + pmf.size)
    t = int(xa.sum())
    at = pmf[t - offset]
    return ExactResult(
        t=t,
        support=support,
        pmf=pmf,
        p_greater=_clip(pmf[support >= t].sum()),
        p_less=_clip(pmf[support <= t].sum()),
        p_two_sided=_clip(pmf[pmf <= at * (1 + _REL_TOL)].sum()),
    )


def _clip(p: float) -> float:
    return float(min(1.0, max(0.0, p)))


# -- rates: the effect and its interval ---------------------------------------------------------
def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion k/n (n > 0)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RiskDifference:
    """Mantel-Haenszel risk difference A minus B with its 95% MOVER-Wilson interval."""

    effect: float
    lo: float
    hi: float
    weights: np.ndarray  # per stratum, normalised to sum 1


def mh_risk_difference(
    x_a: Sequence[int], n_a: Sequence[int], x_b: Sequence[int], n_b: Sequence[int]
) -> RiskDifference:
    """The Mantel-Haenszel risk difference sum_k w_k (p_A,k - p_B,k) / sum_k w_k, with
    w_k = n_A,k n_B,k / (n_A,k + n_B,k), and its 95% interval by MOVER (method of variance
    estimates recovery): the effect is a linear combination sum_i c_i p_i of 2K independent
    proportions, and each p_i's Wilson limits (l_i, u_i) give

        lower = effect - sqrt(sum_i c_i^2 (p_i - l_i)^2 [c_i > 0] + c_i^2 (u_i - p_i)^2 [c_i < 0])

    and the mirror image for the upper limit (Zou, Huang & Zhang 2009). With one stratum this is
    Newcombe's (1998) method 10. Every stratum needs trials in both groups."""
    xa, na, xb, nb = _counts(x_a, n_a, x_b, n_b)
    if xa.size == 0 or np.any(na < 1) or np.any(nb < 1):
        raise ValueError("every stratum needs at least one trial in each group")
    w = na * nb / (na + nb)
    c = w / w.sum()
    pa, pb = xa / na, xb / nb
    effect = float(np.sum(c * (pa - pb)))
    la, ua = np.array([wilson(int(k), int(n)) for k, n in zip(xa, na, strict=True)]).T
    lb, ub = np.array([wilson(int(k), int(n)) for k, n in zip(xb, nb, strict=True)]).T
    down = math.sqrt(float(np.sum(c**2 * ((pa - la) ** 2 + (ub - pb) ** 2))))
    up = math.sqrt(float(np.sum(c**2 * ((ua - pa) ** 2 + (pb - lb) ** 2))))
    return RiskDifference(effect, max(-1.0, effect - down), min(1.0, effect + up), c)


# -- continuous: paired differences -------------------------------------------------------------
@dataclass(frozen=True)
class PairedResult:
    """The mean of paired differences A minus B, its 95% interval and sign-flip p-values."""

    effect: float
    lo: float
    hi: float
    n: int
    p_greater: float  # the mean difference is positive: A's values are larger
    p_less: float
    p_two_sided: float
    exact: bool  # p from every sign pattern (else Monte Carlo)


def sign_flip_test(diffs: Sequence[float]) -> tuple[float, float, float, bool]:
    """(p_greater, p_less, p_two_sided, exact) of the sign-flip permutation test of the mean.

    Under no difference each pair's difference is as likely to be d as -d (A and B exchangeable
    within the pair), so the observed sum is compared with the sums of every +-d pattern. Exact
    for up to ``EXACT_PAIRS`` pairs (the smallest p possible with n pairs is 2^-n: 4 pairs can
    never reach 0.05); above, ``PERMUTATIONS`` random patterns from ``PERMUTATION_SEED``.
    """
    d = np.asarray(diffs, dtype=float).reshape(-1)
    n = d.size
    if n == 0:
        return math.nan, math.nan, math.nan, True
    observed = d.sum()
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if n <= EXACT_PAIRS:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
        sums = (1 - 2 * patterns) @ d
        return (
            float(np.mean(sums >= observed - tol)),
            float(np.mean(sums <= observed + tol)),
            float(np.mean(np.abs(sums) >= abs(observed) - tol)),
            True,
        )
    rng = np.random.default_rng(PERMUTATION_SEED)
    sums = np.empty(PERMUTATIONS)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, PERMUTATIONS, chunk):
        stop = min(PERMUTATIONS, start + chunk)
        signs = rng.integers(0, 2, size=(stop - start, n)) * 2 - 1
        sums[start:stop] = signs @ d

    def p(hits: np.ndarray) -> float:
        return float((1 + hits.sum()) / (1 + PERMUTATIONS))

    return (
        p(sums >= observed - tol),
        p(sums <= observed + tol),
        p(np.abs(sums) >= abs(observed) - tol),
        False,
    )


def expanded_alpha(n: int, alpha: float = ALPHA) -> float:
    """Hesterberg's (2015) expanded percentile level: the bootstrap percentiles are taken at
    alpha' / 2 and 1 - alpha' / 2 with alpha' = 2 Phi(-sqrt(n / (n - 1)) t_{n-1, 1 - alpha/2}),
    which widens the plain percentile interval by the factor a t interval has over a z one."""
    if n < 2:
        return math.nan
    q = math.sqrt(n / (n - 1)) * float(stats.t.ppf(1 - alpha / 2, n - 1))
    return float(2 * stats.norm.cdf(-q))


def bootstrap_interval(diffs: Sequence[float]) -> tuple[float, float]:
    """95% expanded percentile bootstrap interval of the mean of ``diffs`` (NaN below 2 pairs,
    where resampling cannot show any spread)."""
    d = np.asarray(diffs, dtype=float).reshape(-1)
    n = d.size
    if n < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = np.empty(BOOTSTRAP_RESAMPLES)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, BOOTSTRAP_RESAMPLES, chunk):
        stop = min(BOOTSTRAP_RESAMPLES, start + chunk)
        means[start:stop] = d[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    a = expanded_alpha(n)
    lo, hi = np.quantile(means, [a / 2, 1 - a / 2])
    return float(lo), float(hi)


def paired_difference(diffs: Sequence[float]) -> PairedResult:
    """The mean difference of matched pairs, its bootstrap interval and sign-flip p-values."""
    d = np.asarray(diffs, dtype=float).reshape(-1)
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError("need at least one finite difference")
    lo, hi = bootstrap_interval(d)
    pg, pl, p2, exact = sign_flip_test(d)
    return PairedResult(float(d.mean()), lo, hi, int(d.size), pg, pl, p2, exact)


def equivalence(lo: float, hi: float, margin: float) -> str:
    """Where a 95% interval lies against the equivalence band (-margin, +margin): ``inside``,
    ``outside`` (entirely beyond one side) or ``overlaps`` (including an unknown interval)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "overlaps"
    if -margin < lo and hi < margin:
        return "inside"
    if lo >= margin or hi <= -margin:
        return "outside"
    return "overlaps"


# -- multiplicity and the verdict ---------------------------------------------------------------
def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the given order; NaN entries (claims without a
    p-value) are left out of the family and stay NaN. The smallest of m p-values is multiplied
    by m, the next by m - 1, ..., each kept at least as large as the one before and at most 1."""
    p = np.asarray(p_values, dtype=float).reshape(-1)
    out = np.full(p.size, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def verdict(
    predict: str,
    *,
    p_adjusted: float = math.nan,
    p_opposite_adjusted: float = math.nan,
    lo: float = math.nan,
    hi: float = math.nan,
    margin: float | None = None,
    alpha: float = ALPHA,
) -> str:
    """supported / refuted / inconclusive by ``VERDICT_RULE`` (a claim with data)."""
    if predict == "equal":
        if margin is None:
            raise ValueError("predict: equal needs a margin")
        where = equivalence(lo, hi, margin)
        return {"inside": SUPPORTED, "outside": REFUTED}.get(where, INCONCLUSIVE)
    if predict not in ("greater", "less"):
        raise ValueError(f"predict must be greater, less or equal, not {predict!r}")
    if p_adjusted < alpha:
        return SUPPORTED
    if p_opposite_adjusted < alpha:
        return REFUTED
    return INCONCLUSIVE
