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

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def sign_flip_test(
    diffs: Sequence[float], permutations: int = PERMUTATIONS
) -> tuple[float, float, float, bool]:
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
    if n <= EXACT_PAIRS:  # every pattern, by doubling (SignFlipSet)
        exact = SignFlipSet(d)
        return exact.greater(), exact.less(), exact.two_sided(), True
    rng = np.random.default_rng(PERMUTATION_SEED)
    sums = np.empty(permutations)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, permutations, chunk):
        stop = min(permutations, start + chunk)
        signs = rng.integers(0, 2, size=(stop - start, n)) * 2 - 1
        sums[start:stop] = signs @ d

    def p(hits: np.ndarray) -> float:
        return float((1 + hits.sum()) / (1 + permutations))

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


def bootstrap_interval(
    diffs: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    """95% expanded percentile bootstrap interval of the mean of ``diffs`` (NaN below 2 pairs,
    where resampling cannot show any spread)."""
    d = np.asarray(diffs, dtype=float).reshape(-1)
    n = d.size
    if n < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = d[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    a = expanded_alpha(n)
    lo, hi = np.quantile(means, [a / 2, 1 - a / 2])
    return float(lo), float(hi)


def paired_difference(
    diffs: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, permutations: int = PERMUTATIONS
) -> PairedResult:
    """The mean difference of matched pairs, its bootstrap interval and sign-flip p-values."""
    d = np.asarray(diffs, dtype=float).reshape(-1)
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError("need at least one finite difference")
    lo, hi = bootstrap_interval(d, resamples)
    pg, pl, p2, exact = sign_flip_test(d, permutations)
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


# ================================================================================================
# The seed-clustered rule: what the verdicts use (one sign-flip test over seeds per family).
# ================================================================================================
DEPENDS = "depends"
# the overall verdict of a claim replicated on several datasets whose verdicts differ
DEPENDS_ON_DATASET = "depends on dataset"
VERDICTS_ALL = (SUPPORTED, REFUTED, DEPENDS, DEPENDS_ON_DATASET, INCONCLUSIVE, NO_DATA)
POWER = 0.8  # the power at which the minimum detectable effect is stated
TWO_SAMPLE_EXACT = 20_000  # enumerate every split of the seeds up to this many, else Monte Carlo
MEANINGFUL_RATE = 0.15  # rates: a difference of 15 points is meaningful (underpowered below)
MEANINGFUL_SD = 0.5  # continuous: half the between-trial SD (Cohen's medium effect)


@dataclass(frozen=True)
class ClaimData:
    """One claim's matched trials in long form, one entry per trial: what both rules read.

    ``stratum`` codes the matched cells (the other factors held equal); ``seed`` is the trial's
    seed. Trials of one seed share the data order and the init stream across strata and arms, so
    the seed, not the trial, is the unit of replication."""

    kind: str  # "rate" (value 0/1) or "continuous"
    predict: str  # "greater" | "less" | "equal"
    margin: float | None
    value: np.ndarray
    arm: np.ndarray  # True = group A
    stratum: np.ndarray  # int codes 0..K-1
    seed: np.ndarray
    id: str = ""
    control: bool = False


@dataclass(frozen=True)
class SeedAnalysis:
    """One claim analysed with the seed as the unit (``analyse``), before the family's Holm."""

    design: str  # "paired" (arms share seeds: per-seed differences) or "unpaired" (disjoint)
    effect: float  # A minus B, strata weighted equally
    lo: float  # 95% interval: cluster bootstrap over seeds (rates: hull with MOVER-Wilson)
    hi: float
    p_two_sided: float  # sign-flip over seeds (paired) or permutation of seeds (unpaired)
    n_seeds: int  # seeds that carry evidence (paired: with both arms; unpaired: both arms')
    n_a: int  # trials
    n_b: int
    strata: int
    homogeneity_p: float  # arm x stratum interaction (NaN: one stratum, or unpaired)
    stratum_effects: tuple[float, ...]  # per stratum, A minus B (paired seeds)
    stratum_p: tuple[float, ...]  # per stratum, two-sided sign-flip over seeds
    mde: float  # minimum detectable |effect| at 80% power, at Holm's strictest level (inf: never)
    meaningful: float  # the effect size called meaningful for "underpowered"
    min_p: float  # the smallest p-value this design can produce (n seeds, any data)
    p_equivalence: float  # equal claims: TOST p, max of the two one-sided tests (else NaN)
    p_beyond_margin: float  # equal claims: p that |effect| > margin (refuted), else NaN
    attainable_p: float  # the smallest p-value these data's permutations can produce
    homogeneity_attainable_p: float  # the smallest p its sign-flip set can give (1: none varies)


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _seed_means(data: ClaimData, arm: bool) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, (seeds, strata) mean value of that arm's trials, NaN where a seed has none)."""
    sel = data.arm == arm
    seeds = np.unique(data.seed[sel])
    k = int(data.stratum.max()) + 1 if data.stratum.size else 0
    total = np.zeros((seeds.size, k))
    count = np.zeros((seeds.size, k))
    rows = np.searchsorted(seeds, data.seed[sel])
    np.add.at(total, (rows, data.stratum[sel]), data.value[sel])
    np.add.at(count, (rows, data.stratum[sel]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return seeds, total / np.where(count > 0, count, np.nan)


class ReferenceSet:
    """A permutation test's reference set, kept so that the null of any shift delta is tested
    in one pass: ``_at(delta)`` gives the statistic over the set, its observed value and the
    tolerance for ties. Exact sets count p = hits / size; Monte Carlo ones (1 + hits) /
    (1 + draws), never 0. The p-values at every delta come from one set, which makes the
    interval (test inversion) and the two one-sided tests of equivalence consistent with the
    test itself."""

    exact: bool
    size: int

    def _at(self, delta: float) -> tuple[np.ndarray, float, float]:
        raise NotImplementedError

    def _p(self, hits: np.ndarray) -> float:
        count = int(np.sum(hits))
        p = count / self.size if self.exact else (1 + count) / (1 + self.size)
        return min(1.0, p)

    def two_sided(self, delta: float = 0.0) -> float:
        if self.size == 0:
            return math.nan
        values, observed, tol = self._at(delta)
        return self._p(np.abs(values) >= abs(observed) - tol)

    def greater(self, delta: float = 0.0) -> float:
        """p of 'the effect is above delta' (small when the data lie above it)."""
        values, observed, tol = self._at(delta)
        return self._p(values >= observed - tol)

    def less(self, delta: float = 0.0) -> float:
        values, observed, tol = self._at(delta)
        return self._p(values <= observed + tol)


class SignFlipSet(ReferenceSet):
    """The sign-flip reference set of per-seed differences ``d``: every sign pattern up to
    ``EXACT_PAIRS`` seeds (built by doubling, 2^n sums in O(2^n)), else ``permutations`` random
    patterns from ``PERMUTATION_SEED`` (p = (1 + hits) / (1 + draws)). The sums are kept as
    S d and S 1, so the test of any shifted null (mean = delta) costs one pass: the p-values
    at every delta come from one set, which makes test inversion (the interval) and the two
    one-sided tests of equivalence consistent with the test itself."""

    def __init__(self, d: np.ndarray, permutations: int = PERMUTATIONS):
        self.d = np.asarray(d, dtype=float)
        n = self.n = self.d.size
        self.exact = n <= EXACT_PAIRS
        if self.exact:
            a, b = np.zeros(1), np.zeros(1)
            for x in self.d:
                a = np.concatenate([a + x, a - x])
                b = np.concatenate([b + 1.0, b - 1.0])
        else:
            rng = np.random.default_rng(PERMUTATION_SEED)
            signs = (rng.integers(0, 2, size=(permutations, n)) * 2 - 1).astype(float)
            a, b = signs @ self.d, signs.sum(axis=1)
        self.a, self.b = a, b
        self.size = a.size if n else 0

    def _at(self, delta: float) -> tuple[np.ndarray, float, float]:
        sums = self.a - delta * self.b
        observed = float(self.d.sum() - delta * self.n)
        tol = 1e-9 * max(1.0, float(np.abs(self.d - delta).sum()))
        return sums, observed, tol

    def smallest_p(self) -> float:
        """The smallest two-sided p-value any data of this size can give."""
        return 2.0 / 2**self.n if self.exact else 1.0 / (1 + self.size)


class TwoSampleSet(ReferenceSet):
    """The permutation reference set of two arms on disjoint seeds (per-seed values ``y_a``,
    ``y_b``): every split of the seeds into arms of the same sizes up to ``TWO_SAMPLE_EXACT``,
    else ``permutations`` random ones; kept as each split's sum of y and count of A's seeds,
    so a shifted null (A - B = delta) is tested in one pass, as ``SignFlipSet``."""

    def __init__(self, y_a: np.ndarray, y_b: np.ndarray, permutations: int = PERMUTATIONS):
        self.y_a, self.y_b = np.asarray(y_a, float), np.asarray(y_b, float)
        self.na, self.nb = self.y_a.size, self.y_b.size
        y = np.concatenate([self.y_a, self.y_b])
        n = y.size
        self.exact = self.na > 0 and self.nb > 0 and math.comb(n, self.na) <= TWO_SAMPLE_EXACT
        if self.na == 0 or self.nb == 0:
            picks = np.zeros((0, self.na), dtype=int)
        elif self.exact:
            picks = np.array(list(itertools.combinations(range(n), self.na)), dtype=int)
        else:
            rng = np.random.default_rng(PERMUTATION_SEED)
            picks = np.argsort(rng.random((permutations, n)), axis=1)[:, : self.na]
        self.sums = y[picks].sum(axis=1) if picks.size else np.zeros(0)
        self.from_a = (picks < self.na).sum(axis=1).astype(float) if picks.size else np.zeros(0)
        self.total = float(y.sum())
        self.n = n
        self.size = self.sums.size

    def _stat(self, sum_a: np.ndarray, delta: float) -> np.ndarray:
        total = self.total - delta * self.na
        return sum_a / self.na - (total - sum_a) / self.nb

    def _at(self, delta: float) -> tuple[np.ndarray, float, float]:
        stats_ = self._stat(self.sums - delta * self.from_a, delta)
        observed = float(self._stat(np.asarray(self.y_a.sum() - delta * self.na), delta))
        tol = 1e-9 * max(1.0, float(np.abs(self.y_a - delta).sum() + np.abs(self.y_b).sum()))
        return stats_, observed, tol

    def smallest_p(self) -> float:
        if self.size == 0:
            return 1.0
        return 2.0 / math.comb(self.n, self.na) if self.exact else 1.0 / (1 + self.sums.size)


def inverted_interval(
    test: SignFlipSet | TwoSampleSet, estimate: float, scale: float, alpha: float = ALPHA
) -> tuple[float, float]:
    """The 1 - alpha confidence interval that inverts ``test``: every shift delta the
    two-sided test does not reject (p > alpha), found by bracketing and bisection on each side
    of the estimate. Infinite on a side where no shift is ever rejected (too few seeds: with 4
    the smallest sign-flip p is 1/8), so an interval is never narrower than its test allows
    (a percentile bootstrap over 4 seeds is, and 'refuted' equivalences at 4 seeds followed)."""
    if not math.isfinite(estimate):
        return math.nan, math.nan
    if test.smallest_p() > alpha:
        return -math.inf, math.inf
    step0 = max(scale, abs(estimate) * 1e-6, 1e-12)

    def bound(sign: float) -> float:
        inside, outside, step = estimate, None, step0
        for _ in range(64):
            candidate = estimate + sign * step
            if test.two_sided(candidate) <= alpha:
                outside = candidate
                break
            inside, step = candidate, step * 2
        if outside is None:
            return sign * math.inf
        for _ in range(32):
            mid = 0.5 * (inside + outside)
            if test.two_sided(mid) <= alpha:
                outside = mid
            else:
                inside = mid
        return 0.5 * (inside + outside)

    return bound(-1.0), bound(1.0)


def sign_flip_p(d: np.ndarray, permutations: int = PERMUTATIONS) -> float:
    """Two-sided sign-flip p-value of the mean of ``d`` (``SignFlipSet``)."""
    return SignFlipSet(d, permutations).two_sided()


def homogeneity_test(d: np.ndarray, permutations: int = PERMUTATIONS) -> float:
    """p-value that the A-B difference is the same in every stratum, from ``d`` (seeds x strata,
    complete rows). Each seed's row is centred on its own mean (c = d - mean over strata), which
    removes any common effect; under homogeneity, and A and B exchangeable apart from that
    shift, a seed's centred row is as likely as its negative, so whole rows are sign-flipped
    (``SignFlipSet``: every pattern up to 16 seeds), keeping whatever a seed shares across
    strata together and each stratum's own variance. The statistic is
    Q = sum_k (sum_s c_sk)^2 / sum_s c_sk^2, unchanged by the flips in its denominator.
    (A within-seed shuffle of the strata, tried first, assumed the strata exchangeable and
    gave 'depends' to 1.4% of one claim's relabelled audits, where strata differ in variance.)
    NaN below 2 strata or 3 seeds."""
    d = np.asarray(d, dtype=float)
    if d.ndim != 2 or d.shape[1] < 2 or d.shape[0] < 3:
        return math.nan
    c = d - d.mean(axis=1, keepdims=True)
    power = (c**2).sum(axis=0)
    keep = power > 1e-24
    if not keep.any():
        return 1.0
    sets = [SignFlipSet(c[:, k], permutations) for k in np.flatnonzero(keep)]
    values = sum(ref.a**2 / w for ref, w in zip(sets, power[keep], strict=True))
    observed = float(sum(c[:, k].sum() ** 2 / power[k] for k in np.flatnonzero(keep)))
    tol = 1e-9 * max(1.0, observed)
    return sets[0]._p(values >= observed - tol)


def _stratum_counts(c: ClaimData) -> tuple[np.ndarray, ...]:
    """Per stratum, the successes and trials of A and of B (rates), and which strata hold both
    arms: the 2x2 tables the stratified tests and the MOVER-Wilson interval read."""
    k = int(c.stratum.max()) + 1
    xa = np.bincount(c.stratum[c.arm], c.value[c.arm], k).round().astype(int)
    na = np.bincount(c.stratum[c.arm], minlength=k)
    xb = np.bincount(c.stratum[~c.arm], c.value[~c.arm], k).round().astype(int)
    nb = np.bincount(c.stratum[~c.arm], minlength=k)
    return xa, na, xb, nb, (na > 0) & (nb > 0)


def _mover_hull(data: ClaimData, lo: float, hi: float) -> tuple[float, float]:
    """Rates: widen the seed interval to the MOVER-Wilson interval of the stratified risk
    difference, which never collapses to a point when every trial shares one outcome (a seed
    bootstrap of 0% vs 0% has zero width and would 'prove' equality from a handful of seeds)."""
    xa, na, xb, nb, ok = _stratum_counts(data)
    if not ok.any():
        return lo, hi
    rd = mh_risk_difference(xa[ok], na[ok], xb[ok], nb[ok])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return rd.lo, rd.hi
    return min(lo, rd.lo), max(hi, rd.hi)


def _binomial_variance(data: ClaimData) -> float:
    """p(1 - p) at the claim's pooled rate, shrunk off 0 and 1 ((x + 1/2) / (n + 1)): the floor
    under a rate claim's per-seed variance when every seed agrees (an observed 0 would make
    any effect look detectable)."""
    pool = (data.value.sum() + 0.5) / (data.value.size + 1)
    return float(pool * (1 - pool))


def minimum_detectable(se: float, df: int, level: float, power: float = POWER) -> float:
    """The smallest |effect| a two-sided test at ``level`` detects with ``power``, for an
    estimate with standard error ``se`` on ``df`` degrees of freedom (t approximation)."""
    if not (math.isfinite(se) and df >= 1):
        return math.inf
    return float((stats.t.ppf(1 - level / 2, df) + stats.t.ppf(power, df)) * se)


def analyse(
    data: ClaimData,
    *,
    family_size: int = 1,
    resamples: int = BOOTSTRAP_RESAMPLES,
    permutations: int = PERMUTATIONS,
    alpha: float = ALPHA,
    intervals: bool = True,
) -> SeedAnalysis:
    """One claim with the seed as the unit of replication.

    Paired design (the arms share seeds, the usual case): each seed's difference A - B per
    stratum, averaged over its strata, is one observation; the p-value is the two-sided
    sign-flip test over seeds. Unpaired design (the arms use disjoint seeds, as an A/A control
    does): each seed's stratum-centred mean is one observation; the p-value permutes which
    seeds are A. The 95% interval inverts the same test (``inverted_interval``), so it excludes
    0 exactly when p < 0.05; equal claims also get TOST's p from the same reference set.
    ``family_size``: the Holm family the claim joins, for the minimum detectable effect at
    Holm's strictest level. ``resamples`` is the old rule's bootstrap size; this rule does not
    resample, and accepts it so that both rules take the same keywords. ``intervals=False``
    skips the interval of a directional claim, which no verdict reads (calibration's speed)."""
    seeds_a, ma = _seed_means(data, True)
    seeds_b, mb = _seed_means(data, False)
    shared, ia, ib = np.intersect1d(seeds_a, seeds_b, return_indices=True)
    n_a, n_b = int(data.arm.sum()), int((~data.arm).sum())
    k = ma.shape[1]
    level = alpha / max(1, family_size)
    sd_all = float(np.std(data.value, ddof=1)) if data.value.size > 1 else math.nan
    meaningful = MEANINGFUL_RATE if data.kind == "rate" else MEANINGFUL_SD * sd_all
    if shared.size:
        d = ma[ia] - mb[ib]  # (seeds, strata), NaN where a seed lacks one arm in a stratum
        keep = np.isfinite(d).any(axis=1)
        d = d[keep]
        per_seed = np.nanmean(d, axis=1)
        n = per_seed.size
        test: SignFlipSet | TwoSampleSet = SignFlipSet(per_seed, permutations)
        p = test.two_sided()
        scale = float(np.std(per_seed)) if n > 1 else 0.0
        complete = d[np.isfinite(d).all(axis=1)]
        hom = homogeneity_test(complete, permutations) if k > 1 else math.nan
        s_eff = tuple(_nanmean(d[:, j]) for j in range(k))
        s_p = tuple(sign_flip_p(d[np.isfinite(d[:, j]), j], permutations) for j in range(k))
        var = float(np.var(per_seed, ddof=1)) if n > 1 else math.nan
        if data.kind == "rate":  # a floor when every seed agrees: the binomial variance
            var = max(var if math.isfinite(var) else 0.0, 2 * _binomial_variance(data) / max(1, k))
        se = math.sqrt(var / n) if n > 1 else math.inf
        min_p = test.smallest_p()
        moving = int(np.sum(np.abs(per_seed) > 1e-12))
        attainable = max(min_p, 2.0 / 2**moving if moving <= 60 else 0.0)
        varying = int(
            np.sum(np.any(np.abs(complete - complete.mean(axis=1, keepdims=True)) > 1e-12, axis=1))
        )
        hom_attainable = 2.0 / 2**varying if 0 < varying <= 60 else (1.0 if not varying else 0.0)
        df = n - 1
        design = "paired"
    else:
        centre = np.nanmean(np.vstack([ma, mb]), axis=0)
        y_a = np.nanmean(ma - centre, axis=1)
        y_b = np.nanmean(mb - centre, axis=1)
        n = y_a.size + y_b.size
        effect = float(y_a.mean() - y_b.mean()) if y_a.size and y_b.size else math.nan
        test = TwoSampleSet(y_a, y_b, permutations)
        p = test.two_sided()
        scale = float(np.std(np.concatenate([y_a, y_b]))) if n > 1 else 0.0
        hom, s_eff, s_p = math.nan, (), ()
        va = float(np.var(y_a, ddof=1)) if y_a.size > 1 else math.nan
        vb = float(np.var(y_b, ddof=1)) if y_b.size > 1 else math.nan
        if data.kind == "rate":
            floor = _binomial_variance(data) / max(1, k)
            va, vb = (
                max(va if math.isfinite(va) else 0, floor),
                max(vb if math.isfinite(vb) else 0, floor),
            )
        se = math.sqrt(va / max(1, y_a.size) + vb / max(1, y_b.size))
        min_p = test.smallest_p()
        spread = np.concatenate([y_a, y_b])
        attainable = min_p if spread.size and np.ptp(spread) > 1e-12 else 1.0
        hom_attainable = 1.0
        df = max(1, n - 2)
        design = "unpaired"
        per_seed = None
    if per_seed is not None:
        effect = float(per_seed.mean()) if per_seed.size else math.nan
    lo, hi = math.nan, math.nan
    if intervals or data.predict == "equal":
        lo, hi = inverted_interval(test, effect, scale, alpha)
    if data.kind == "rate":
        lo, hi = _mover_hull(data, lo, hi)
    p_tost = p_out = math.nan
    if data.predict == "equal" and data.margin is not None:
        # two one-sided tests (Schuirmann 1987): the mean is above -margin and below +margin
        p_tost = max(test.greater(-data.margin), test.less(data.margin))
        # and the other way: the difference lies beyond the margin on one side or the other
        p_out = min(1.0, 2 * min(test.greater(data.margin), test.less(-data.margin)))
    mde = math.inf if min_p > level else minimum_detectable(se, df, level)
    return SeedAnalysis(
        design=design,
        effect=effect,
        lo=lo,
        hi=hi,
        p_two_sided=float(p),
        n_seeds=int(n),
        n_a=n_a,
        n_b=n_b,
        strata=k,
        homogeneity_p=float(hom),
        stratum_effects=s_eff,
        stratum_p=s_p,
        mde=float(mde),
        meaningful=float(meaningful),
        min_p=float(min_p),
        p_equivalence=float(p_tost),
        p_beyond_margin=float(p_out),
        attainable_p=float(min(1.0, attainable)),
        homogeneity_attainable_p=float(hom_attainable),
    )


def _components(c: ClaimData, a: SeedAnalysis) -> tuple[dict[str, float], float]:
    """The p-values a claim's verdict reads (its share of the family is split among them) and
    the smallest p any of them could reach. A homogeneity test that cannot reject (no seed
    varies across strata) takes no share."""
    out: dict[str, float] = {}
    attainable = []
    if c.predict == "equal":
        if math.isfinite(a.p_equivalence):
            out["equivalence"] = a.p_equivalence
            out["beyond"] = a.p_beyond_margin
            attainable.append(a.min_p / 2)  # one-sided tests
    elif math.isfinite(a.p_two_sided):
        out["effect"] = a.p_two_sided
        attainable.append(a.attainable_p)
    if out and math.isfinite(a.homogeneity_p) and a.homogeneity_attainable_p < 1:
        out["homogeneity"] = a.homogeneity_p
        attainable.append(a.homogeneity_attainable_p)
    return out, min(attainable, default=1.0)


def tarone(attainable: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Which hypotheses join the Holm family: Tarone's (1990) trimming for discrete tests, in
    its step-down form (Hommel & Krummenauer 1998). A permutation test whose data can produce
    no p-value below alpha / k (every seed agrees, a stratum without variation) can never be
    rejected; counting it would only raise everyone else's bar. The smallest k such that at
    most k hypotheses can reach alpha / k is found, and those hypotheses form the family."""
    m = len(attainable)
    for k in range(1, m + 1):
        keep = [p <= alpha / k for p in attainable]
        if sum(keep) <= k:
            return keep
    return [True] * m


@dataclass(frozen=True)
class Decision:
    """A claim's verdict under the seed-clustered rule, with what it was read from."""

    verdict: str
    p_adjusted: float  # Holm-adjusted p: two-sided of the pooled effect, or TOST's (equal claims)
    homogeneity_p_adjusted: float  # Holm-adjusted (NaN: not tested)
    holds_in: tuple[int, ...] = ()  # depends: strata where the predicted direction holds
    reversed_in: tuple[int, ...] = ()  # depends: strata where the opposite holds
    underpowered: bool = False  # inconclusive, and the design could not detect a meaningful effect
    left_out: bool = False  # Tarone: its smallest attainable p cannot reach its level (p_adj 1)


def decide(
    claims: Sequence[ClaimData], analyses: Sequence[SeedAnalysis | None], alpha: float = ALPHA
) -> list[Decision]:
    """Verdicts by ``RULE_TEXT['new']`` for one audit (``None``: a claim without data).

    One hypothesis per claim joins the Holm family, its p the smallest of the p-values its
    verdict reads (``_components``: a directional claim's effect; an equal claim's equivalence
    (TOST) and beyond-the-margin tests; and the homogeneity test where one exists) times their
    number (Bonferroni within the claim). Each part is then decided at the level Holm gave the
    claim: the effect supported or refuted by its sign, an equivalence supported or refuted,
    homogeneity rejected ('depends' when the strata also show significant effects of both
    signs). One hypothesis per claim rather than one per part keeps the family, and so the
    bar, smaller.

    Findings and controls are two Holm families, each at ``alpha``: a control (an A/A split of
    the same cells by seed) has half the seeds per arm, and in the findings' family its smallest
    attainable p-value (2 / C(12, 6) = 0.002 with 12 seeds) could never reach alpha / m, so it
    could never fail: a check that cannot fail checks nothing."""
    adjusted: dict[int, dict[str, float]] = {}  # claim -> component -> Holm-adjusted p
    left_out: set[int] = set()
    for controls in (False, True):
        rows = []  # (claim, p_claim, attainable, components)
        for i, (c, a) in enumerate(zip(claims, analyses, strict=True)):
            if a is None or c.control != controls:
                continue
            components, attainable = _components(c, a)
            if not components:
                continue
            j = len(components)  # Bonferroni within the claim
            rows.append((i, min(1.0, j * min(components.values())), min(1.0, j * attainable),
                         components))  # fmt: skip
        keep = tarone([r[2] for r in rows], alpha)
        kept = [r for r, k in zip(rows, keep, strict=True) if k]
        left_out |= {r[0] for r, k in zip(rows, keep, strict=True) if not k}
        m = len(kept)
        previous = 0.0  # Holm's running maximum: a step is reached only if all before it were
        for rank, (i, p_claim, _, components) in enumerate(sorted(kept, key=lambda r: r[1])):
            factor = (m - rank) * len(components)
            adjusted[i] = {
                name: max(previous, min(1.0, factor * p)) for name, p in components.items()
            }
            previous = max(previous, min(1.0, (m - rank) * p_claim))
    out = []
    for i, (c, a) in enumerate(zip(claims, analyses, strict=True)):
        if a is None:
            out.append(Decision(NO_DATA, math.nan, math.nan))
            continue
        parts = adjusted.get(i, {})
        main = "equivalence" if c.predict == "equal" else "effect"
        pa = parts.get(main, 1.0 if i in left_out else math.nan)
        ha = parts.get("homogeneity", math.nan)
        if c.predict == "equal":
            beyond = parts.get("beyond", math.nan)
            verdict = SUPPORTED if pa < alpha else REFUTED if beyond < alpha else INCONCLUSIVE
            if verdict == REFUTED:  # the p shown is the test that decided
                pa = beyond
        elif pa < alpha:
            agrees = (a.effect > 0) == (c.predict == "greater")
            verdict = SUPPORTED if agrees else REFUTED
        else:
            verdict = INCONCLUSIVE
        holds: tuple[int, ...] = ()
        rev: tuple[int, ...] = ()
        if ha < alpha:
            sign = -1.0 if c.predict == "less" else 1.0
            sig = [j for j, p in enumerate(a.stratum_p) if p < alpha]
            holds = tuple(j for j in sig if sign * a.stratum_effects[j] > 0)
            rev = tuple(j for j in sig if sign * a.stratum_effects[j] < 0)
            if holds and rev:
                verdict = DEPENDS
        # a control looks for no effect: "underpowered" would misread it as a finding
        under = verdict == INCONCLUSIVE and not c.control and not a.mde <= a.meaningful
        out.append(Decision(verdict, pa, ha, holds, rev, under, i in left_out))
    return out


def new_rule(
    claims: Sequence[ClaimData],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    permutations: int = PERMUTATIONS,
) -> list[str]:
    """The verdicts of the seed-clustered rule, one per claim (``RULES['new']``)."""
    analyses = analyse_family(
        claims,
        resamples=resamples,
        permutations=permutations,
        intervals=False,  # only equal claims' intervals decide a verdict
    )
    return [d.verdict for d in decide(claims, analyses)]


def family_size(claims: Sequence[ClaimData], control: bool = False) -> int:
    """Hypotheses in a Holm family (findings, or ``control``s), before Tarone's trimming: one
    per claim. A claim with a homogeneity test splits its share in two (``decide``), so its
    effect faces twice the bar: counted here as two, for the minimum detectable effect."""
    group = [c for c in claims if c.control == control]
    multi = sum(int(np.unique(c.stratum).size > 1) for c in group)
    return max(1, len(group) + multi)


def _judgeable(c: ClaimData) -> bool:
    """The claim has trials in both arms (else: no data)."""
    return bool(c.value.size) and bool(c.arm.any()) and not bool(c.arm.all())


def analyse_family(claims: Sequence[ClaimData], **kw: Any) -> list[SeedAnalysis | None]:
    """``analyse`` every claim with data (None for one whose arms are empty)."""
    present = [c for c in claims if c.value.size]
    sizes = {flag: family_size(present, flag) for flag in (False, True)}
    out: list[SeedAnalysis | None] = []
    for c in claims:
        out.append(analyse(c, family_size=sizes[c.control], **kw) if _judgeable(c) else None)
    return out


# -- the per-stratum rule it replaced, kept so that `gradatlas calibrate` can show the difference
def old_rule(
    claims: Sequence[ClaimData],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    permutations: int = PERMUTATIONS,
) -> list[str]:
    """The verdicts of the per-stratum rule the seed-clustered one replaced: trials as
    independent (rates: the exact conditional test over strata; continuous: seed pairs within
    strata, sign-flip and a bootstrap over pairs), one-sided p-values in both directions, each
    direction its own Holm family at alpha. Kept only for calibration."""
    raw: list[tuple[float, float, float, float] | None] = []
    for c in claims:
        if not _judgeable(c):
            raw.append(None)
        elif c.kind == "rate":
            raw.append(_old_rates(c))
        else:
            raw.append(_old_continuous(c, resamples, permutations))
    family = [i for i, r in enumerate(raw) if r is not None and claims[i].predict != "equal"]
    p_adj = holm([raw[i][0] for i in family])  # type: ignore[index]
    q_adj = holm([raw[i][1] for i in family])  # type: ignore[index]
    adj = {i: (float(p), float(q)) for i, p, q in zip(family, p_adj, q_adj, strict=True)}
    out = []
    for i, (c, r) in enumerate(zip(claims, raw, strict=True)):
        if r is None:
            out.append(NO_DATA)
            continue
        p, q = adj.get(i, (math.nan, math.nan))
        out.append(
            verdict(
                c.predict, p_adjusted=p, p_opposite_adjusted=q, lo=r[2], hi=r[3], margin=c.margin
            )
        )
    return out


def _directed_p(predict: str, greater: float, less: float) -> tuple[float, float]:
    if predict == "greater":
        return greater, less
    if predict == "less":
        return less, greater
    return math.nan, math.nan


def _old_rates(c: ClaimData) -> tuple[float, float, float, float]:
    xa, na, xb, nb, ok = _stratum_counts(c)
    exact = stratified_exact_test(xa[ok], na[ok], xb[ok], nb[ok])
    rd = mh_risk_difference(xa[ok], na[ok], xb[ok], nb[ok])
    return (*_directed_p(c.predict, exact.p_greater, exact.p_less), rd.lo, rd.hi)


def _old_continuous(
    c: ClaimData, resamples: int, permutations: int
) -> tuple[float, float, float, float]:
    seeds_a, ma = _seed_means(c, True)
    seeds_b, mb = _seed_means(c, False)
    shared, ia, ib = np.intersect1d(seeds_a, seeds_b, return_indices=True)
    d = (ma[ia] - mb[ib]) if shared.size else np.empty((0, ma.shape[1]))
    strata_a = np.isfinite(ma).any(axis=0)
    strata_b = np.isfinite(mb).any(axis=0)
    matched = strata_a & strata_b
    if d.size and np.all(np.isfinite(d[:, matched]).any(axis=0)):
        diffs = d[:, matched][np.isfinite(d[:, matched])]
    else:  # seeds do not pair: stratum means against stratum means
        diffs = (np.nanmean(ma, axis=0) - np.nanmean(mb, axis=0))[matched]
    r = paired_difference(diffs, resamples, permutations)
    return (*_directed_p(c.predict, r.p_greater, r.p_less), r.lo, r.hi)


RULE_TEXT = {
    "old": "before issue 17: trials as independent (exact conditional test over strata for "
    "rates, seed-by-stratum pairs for continuous metrics), one-sided p in each direction, a "
    "Holm family per direction at alpha = 0.05 each",
    "new": "seeds as the unit (per-seed summaries across strata, sign-flip / permutation over "
    "seeds, intervals by inverting that test), one Holm family at alpha = 0.05 with one "
    "hypothesis per claim (two-sided effect, or TOST and beyond-margin for equal claims, and "
    "homogeneity, Bonferroni-split within the claim; Tarone-trimmed; controls in a family of "
    "their own), direction decided after rejection; 'depends' on a significant arm x stratum "
    "interaction with significant effects of both signs",
}
RULES: dict[str, Any] = {"old": old_rule, "new": new_rule}

VERDICT_RULE_SEED = (
    f"Verdicts, at alpha = {ALPHA}, with the seed as the unit of replication. Every claim is one "
    "hypothesis in one Holm family: that its arms do not differ. Its p-value is the smallest "
    "of the tests its verdict reads, times their number (Bonferroni within the claim): for a "
    "claim that predicts greater or less, the two-sided test of its pooled effect; for one that "
    "predicts equal, the two one-sided tests of equivalence against its margin (TOST, "
    "Schuirmann 1987) and the test that the difference lies beyond the margin; and, for a "
    "claim with two or more strata whose arms share seeds, the test of homogeneity across "
    "strata. Each of these is then decided at the level Holm gave its claim. A directional "
    "claim whose effect is rejected is supported when the effect has the predicted sign and "
    "refuted when it has the opposite one (the direction is decided after the two-sided "
    "rejection; Shaffer 1980); otherwise it is inconclusive. An equal claim is supported when "
    "its equivalence is rejected (the difference lies within the margin: the analogue of an "
    "interval at the Holm level inside the margin, stricter than TOST's usual 90% interval, "
    "because several equivalences in one audit add up their errors), refuted when the "
    "beyond-the-margin test is, inconclusive otherwise. A claim whose homogeneity is rejected "
    "and whose strata show significant effects of both signs (per-stratum sign-flip p < "
    "alpha) gets 'depends', with the strata in which the prediction holds and those in which "
    "it is reversed, not a pooled verdict. A claim whose data cannot produce a p-value small "
    "enough to be rejected (every seed agrees) is left out of the family (Tarone 1990; Hommel "
    "& Krummenauer 1998), so it does not raise the others' bar; its adjusted p is shown as 1. "
    "Controls (A/A splits of the same cells by seed) form a Holm family of their own at the "
    "same alpha: with half the seeds per arm they could never reach the findings' threshold, "
    "and a check that cannot fail checks nothing. An inconclusive claim is marked "
    "underpowered when its minimum detectable effect (80% power, two-sided, at Holm's "
    f"strictest level alpha/m) exceeds a meaningful effect: {MEANINGFUL_RATE:g} for rates "
    f"({100 * MEANINGFUL_RATE:g} points), {MEANINGFUL_SD:g} x the between-trial SD of the "
    "metric for continuous claims; where the sign-flip test over n seeds cannot go below "
    "alpha/m (2/2^n > alpha/m), nothing can be detected and the MDE is infinite. A claim whose "
    "groups have no matched data gets 'no data', with what is missing. A suite that replicates "
    "its claims on several datasets judges each dataset as a family of its own (the rule "
    "above); a claim's overall verdict is the datasets' common verdict when they agree (an "
    "intersection-union test: its p is the largest of theirs) and 'depends on dataset' when "
    "they do not; its effect and interval are pooled over datasets (dataset as a stratum). A "
    "claim whose arms were tuned is judged again on the trials run at each study's "
    "second-best value (a robustness family of its own), shown beside its verdict."
)
