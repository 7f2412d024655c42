"""The numbers a report prints: outcome rates with Wilson intervals, means with t intervals,
per-cell and per-level tables, and median/IQR bands of curves across trials.

Wilson intervals rather than the normal approximation because cells have few seeds and rates are
often exactly 0 or 1, where the normal interval collapses to a point and claims certainty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from gradatlas.record import OUTCOMES, OutcomeLabel
from gradatlas.reports.load import Experiment

Z95 = 1.959963984540054  # two-sided 95% normal quantile
ACC_BOUNDS = (0.0, 1.0)


def wilson(k: Any, n: Any, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes in n trials (vectorised; NaN where n == 0)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        lo, hi = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    # Exact ends: floating point leaves 1e-17 where the interval touches 0 or 1.
    lo = np.where(k == 0, 0.0, lo)
    hi = np.where(k == n, 1.0, hi)
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


def mean_ci(
    values: Sequence[float] | np.ndarray, bounds: tuple[float, float] | None = None
) -> tuple[float, float, float, int]:
    """Mean and two-sided 95% Student-t interval of the finite values (NaN bounds below n=2),
    clipped to ``bounds`` when the quantity has them (an accuracy is never above 1)."""
    from scipy import stats as sps

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(x.mean())
    if n < 2:
        return mean, float("nan"), float("nan"), 1
    half = float(sps.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n))
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return mean, lo, hi, n


def sort_by_levels(
    df: pd.DataFrame, exp: Experiment, factors: Sequence[str] | None = None
) -> pd.DataFrame:
    """Rows ordered by the factors' level order (grid order, numbers by value)."""
    factors = list(exp.factors if factors is None else factors)
    cols = [exp.fcol(f) for f in factors if exp.fcol(f) in df]
    if not cols:
        return df
    keys = {exp.fcol(f): {lv: i for i, lv in enumerate(exp.levels[f])} for f in factors}
    return df.sort_values(cols, key=lambda s: s.map(keys[s.name]), kind="stable")


def outcome_counts(trials: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """``n`` and one count column per outcome label for each group."""
    counts = pd.crosstab([trials[c] for c in by], trials["outcome"])
    for label in OUTCOMES:
        if label not in counts:
            counts[label] = 0
    counts = counts[list(OUTCOMES) + [c for c in counts if c not in OUTCOMES]]
    counts["n"] = counts.sum(axis=1)
    return counts.reset_index()


def cell_table(exp: Experiment) -> pd.DataFrame:
    """One row per cell: its factor levels, trial count, outcome counts, accuracy over seeds
    (mean, 95% interval) and steps to target over the seeds that reached it."""
    t = exp.trials
    fcols = [exp.fcol(f) for f in exp.factors]
    counts = outcome_counts(t, ["cell_id"])
    first = t.groupby("cell_id", sort=False).first()[["cell", *fcols]].reset_index()
    table = first.merge(counts, on="cell_id")
    acc_key = accuracy_key(exp)
    extra = []
    for cell_id, group in t.groupby("cell_id", sort=False):
        mean, lo, hi, n_acc = (
            mean_ci(group[acc_key], ACC_BOUNDS) if acc_key else (np.nan,) * 3 + (0,)
        )
        steps = group["steps_to_target"].dropna()
        extra.append(
            {
                "cell_id": cell_id,
                "seeds": group["seed"].nunique(),
                "acc_mean": mean,
                "acc_lo": lo,
                "acc_hi": hi,
                "acc_n": n_acc,
                "steps_median": float(steps.median()) if len(steps) else np.nan,
                "steps_min": float(steps.min()) if len(steps) else np.nan,
                "steps_max": float(steps.max()) if len(steps) else np.nan,
                "n_target": len(steps),
            }
        )
    table = table.merge(pd.DataFrame(extra), on="cell_id")
    return sort_by_levels(table, exp).reset_index(drop=True)


# The accuracy a report quotes, best first: the test split, scored once after training, then
# (for records made before there was a test split) the final validation accuracy.
ACCURACY_KEYS = {"test_acc": "test accuracy", "final_val_acc": "final validation accuracy"}


def accuracy_key(exp: Experiment) -> str | None:
    """The first of ``ACCURACY_KEYS`` some trial recorded; None when none did (regression)."""
    for key in ACCURACY_KEYS:
        if key in exp.trials and exp.trials[key].notna().any():
            return key
    return None


def accuracy_name(key: str | None) -> str:
    """What ``accuracy_key``'s column is, in words."""
    return ACCURACY_KEYS.get(key or "", "accuracy")


def level_effects(exp: Experiment) -> pd.DataFrame:
    """Marginal effect of each factor level: rates and mean accuracy pooled over every trial at
    that level (seeds and all other factors' levels), the view that shows which factor matters."""
    rows = []
    acc_key = accuracy_key(exp)
    for f in exp.factors:
        col = exp.fcol(f)
        for level in exp.levels[f]:
            g = exp.trials[exp.trials[col] == level]
            n = len(g)
            conv = int((g["outcome"] == OutcomeLabel.CONVERGED).sum())
            expl = int((g["outcome"] == OutcomeLabel.EXPLODED).sum())
            (clo,), (chi,) = (np.atleast_1d(a) for a in wilson(conv, n))
            (elo,), (ehi,) = (np.atleast_1d(a) for a in wilson(expl, n))
            mean, lo, hi, n_acc = (
                mean_ci(g[acc_key], ACC_BOUNDS) if acc_key else (np.nan,) * 3 + (0,)
            )
            rows.append(
                {
                    "factor": f,
                    "level": level,
                    "n": n,
                    "converged": conv,
                    "conv_rate": conv / n if n else np.nan,
                    "conv_lo": clo,
                    "conv_hi": chi,
                    "exploded": expl,
                    "expl_rate": expl / n if n else np.nan,
                    "expl_lo": elo,
                    "expl_hi": ehi,
                    "acc_mean": mean,
                    "acc_lo": lo,
                    "acc_hi": hi,
                    "acc_n": n_acc,
                }
            )
    return pd.DataFrame(rows)


def factor_ranges(effects: pd.DataFrame) -> pd.DataFrame:
    """Per factor, the spread (max - min over its levels) of each marginal quantity, sorted so
    the factor that moves the convergence rate most comes first."""
    if effects.empty:
        return pd.DataFrame(columns=["factor", "levels", "conv_range", "expl_range", "acc_range"])
    g = effects.groupby("factor", sort=False)
    out = pd.DataFrame(
        {
            "levels": g["level"].count(),
            "conv_range": g["conv_rate"].max() - g["conv_rate"].min(),
            "expl_range": g["expl_rate"].max() - g["expl_rate"].min(),
            "acc_range": g["acc_mean"].max() - g["acc_mean"].min(),
        }
    ).reset_index()
    return out.sort_values(["conv_range", "expl_range", "acc_range"], ascending=False).reset_index(
        drop=True
    )


def heat_table(
    exp: Experiment, rows: str | None, cols: str, facets: Sequence[str], outcome: str
) -> pd.DataFrame:
    """k and n of ``outcome`` for each (facet levels, row level, column level) combination."""
    t = exp.trials
    by = [exp.fcol(f) for f in [*facets, *([rows] if rows else []), cols]]
    g = t.assign(_hit=(t["outcome"] == outcome).astype(int)).groupby(by, sort=False)["_hit"]
    return g.agg(k="sum", n="count").reset_index()


# -- curves --------------------------------------------------------------------------------------
def band(
    curves: Sequence[tuple[Sequence[float], Sequence[float | None]]], points: int = 160
) -> dict[str, np.ndarray] | None:
    """Median and interquartile band of several curves on a common step grid.

    Each curve is interpolated on the grid only inside its own step range (an exploded trial
    stops early and must not be extended), so the statistic at a step uses the trials that got
    there; ``count`` says how many did. None values (non-finite in the record) are dropped.
    """
    cleaned = []
    for steps, values in curves:
        s = np.asarray(steps, dtype=float)
        v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
        ok = np.isfinite(s) & np.isfinite(v)
        if ok.any():
            cleaned.append((s[ok], v[ok]))
    if not cleaned:
        return None
    all_steps = np.unique(np.concatenate([s for s, _ in cleaned]))
    grid = (
        all_steps if all_steps.size <= points else np.linspace(all_steps[0], all_steps[-1], points)
    )
    stack = np.full((len(cleaned), grid.size), np.nan)
    for i, (s, v) in enumerate(cleaned):
        inside = (grid >= s[0]) & (grid <= s[-1])
        stack[i, inside] = np.interp(grid[inside], s, v)
    count = np.isfinite(stack).sum(axis=0)
    keep = count > 0
    stack, grid, count = stack[:, keep], grid[keep], count[keep]
    q25, med, q75 = nanquantiles(stack, (0.25, 0.5, 0.75))
    return {"step": grid, "median": med, "q25": q25, "q75": q75, "count": count}


def nanquantiles(arr: np.ndarray, qs: Sequence[float]) -> list[np.ndarray]:
    """Column quantiles ignoring NaN (linear interpolation, as ``np.nanpercentile``), in one
    sort: ``nanpercentile`` loops over columns in Python and dominated the report's build time.
    Columns without a finite value give NaN."""
    s = np.sort(arr, axis=0)  # NaN sorts last
    count = np.isfinite(arr).sum(axis=0)
    cols = np.arange(arr.shape[1])
    out = []
    for q in qs:
        pos = q * np.maximum(count - 1, 0)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        a, b = s[lo, cols], s[hi, cols]
        with np.errstate(invalid="ignore"):
            v = a + (b - a) * (pos - lo)
        out.append(np.where(count > 0, v, np.nan))
    return out


def layer_profile(values_list: Sequence[Sequence[float | None]]) -> dict[str, np.ndarray] | None:
    """Median and IQR per layer index across trials with the same number of layers."""
    rows = [[np.nan if v is None else v for v in vals] for vals in values_list if vals]
    if not rows:
        return None
    width = max(len(r) for r in rows)
    arr = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        arr[i, : len(r)] = r
    if not np.isfinite(arr).any():
        return None
    q25, med, q75 = nanquantiles(arr, (0.25, 0.5, 0.75))
    return {"index": np.arange(width), "median": med, "q25": q25, "q75": q75}
