"""The claims audit: each claim a suite declares, measured on its trials, with a verdict.

A claim says "metric(A) predict metric(B)". Its trials are those that pass ``where``; group A
passes ``a`` as well, group B ``b``. The groups are compared only where they can be compared
fairly: a *stratum* is one combination of levels of every factor the claim does not name in
``a`` or ``b`` (the other factors held equal), and only strata with trials in both groups
count; the rest are dropped and said. Rates are tested stratum by stratum with the exact
conditional test; continuous metrics as paired differences, paired by seed within a stratum
(or stratum means against stratum means, when seeds do not pair). The statistics are
``claimstats``; the metrics are ``gradatlas.suites.claims.METRICS``. Every number comes from the
trial records; a claim whose groups have no matched trials says what is missing, never guesses.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure as MplFigure

from gradatlas.record import OUTCOMES
from gradatlas.reports import claimstats as cs
from gradatlas.reports import figures
from gradatlas.reports.context import ReportContext
from gradatlas.reports.document import (
    Block,
    Cell,
    Column,
    Figure,
    Heading,
    KeyValues,
    Para,
    Table,
)
from gradatlas.reports.fmt import join_and, plural
from gradatlas.reports.load import Experiment
from gradatlas.suites.claims import LOSS_CURVE, METRICS, Metric, filter_labels

VERDICT_COLORS = {
    cs.SUPPORTED: figures.OUTCOME_COLORS["converged"],
    cs.REFUTED: figures.OUTCOME_COLORS["exploded"],
    cs.INCONCLUSIVE: figures.OUTCOME_COLORS["unconverged"],
    cs.NO_DATA: figures.OUTCOME_COLORS["stalled"],
}
SHORT_TEXT = 30  # characters of a claim's text in the table (the full text is listed below it)
SHORT_SOURCE = 16
PANEL_COLS = 4


@dataclass
class Stratum:
    """One matched stratum's evidence: the groups' value there (a rate, or the mean of the
    paired values) and how many trials (rates) or pairs (continuous) it holds."""

    label: str
    a: float
    b: float
    n_a: int
    n_b: int


@dataclass
class ClaimResult:
    """One claim, measured. ``effect`` is A minus B (a risk difference for rates, a mean
    difference for continuous metrics, in log10 for ``log10`` metrics) with its 95% interval
    ``lo``..``hi``; ``p`` the one-sided p-value in the predicted direction, ``p_opposite`` in the
    other, and their Holm-adjusted values (NaN for equal claims and claims without data)."""

    id: str
    text: str
    source: str
    metric: str
    predict: str
    margin: float | None
    groups: str  # "init = kaiming_normal vs init = xavier_normal, within depth = d20"
    a_text: str = ""
    b_text: str = ""
    kind: str = ""
    unit: str = ""
    verdict: str = cs.NO_DATA
    reason: str = ""  # why there is no verdict (no data)
    test: str = ""
    effect: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    p: float = math.nan
    p_opposite: float = math.nan
    p_two_sided: float = math.nan
    p_adjusted: float = math.nan
    p_opposite_adjusted: float = math.nan
    n_a: int = 0  # trials of A in matched strata (continuous: those in pairs)
    n_b: int = 0
    pairs: int = 0
    strata: int = 0
    pairing: str = ""  # continuous: "seed" or "stratum means"
    notes: list[str] = field(default_factory=list)  # what was dropped, and why
    evidence: list[Stratum] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return self.verdict != cs.NO_DATA


class NoData(Exception):
    """A claim that cannot be measured; the message says what is missing."""


# -- which claims ---------------------------------------------------------------------------------
def declared_claims(exp: Experiment) -> list[dict[str, Any]]:
    """The ``claims`` of the newest sweep that recorded its resolved suite (sweeps are newest
    first), as dicts; [] when none did or it declares none."""
    for sweep in exp.sweeps:
        if sweep.resolved is not None:
            claims = sweep.resolved.get("claims") or []
            return [c for c in claims if isinstance(c, Mapping)]
    return []


def evaluate_claims(exp: Experiment, claims: Sequence[Mapping[str, Any]]) -> list[ClaimResult]:
    """Measure every claim, adjust the directional ones' p-values together (Holm) and give each
    its verdict (``claimstats.VERDICT_RULE``)."""
    results = [measure(exp, claim) for claim in claims]
    family = [i for i, r in enumerate(results) if r.has_data and r.predict != "equal"]
    p_adj = cs.holm([results[i].p for i in family])
    q_adj = cs.holm([results[i].p_opposite for i in family])
    for i, pa, qa in zip(family, p_adj, q_adj, strict=True):
        results[i] = replace(results[i], p_adjusted=float(pa), p_opposite_adjusted=float(qa))
    for i, r in enumerate(results):
        if r.has_data:
            results[i] = replace(
                r,
                verdict=cs.verdict(
                    r.predict,
                    p_adjusted=r.p_adjusted,
                    p_opposite_adjusted=r.p_opposite_adjusted,
                    lo=r.lo,
                    hi=r.hi,
                    margin=r.margin,
                ),
            )
    return results


# -- one claim ------------------------------------------------------------------------------------
def measure(exp: Experiment, claim: Mapping[str, Any]) -> ClaimResult:
    """One claim's effect, interval and raw p-values (verdict ``inconclusive`` until
    ``evaluate_claims`` adjusts), or verdict ``no data`` with the reason."""
    a, b, where = (dict(claim.get(k) or {}) for k in ("a", "b", "where"))
    margin = claim.get("margin")
    written = {k: _as_written(v) for k, v in (("a", a), ("b", b), ("where", where))}
    result = ClaimResult(
        id=str(claim.get("id", "?")),
        text=str(claim.get("text", "")),
        source=str(claim.get("source", "")),
        metric=str(claim.get("metric", "")),
        predict=str(claim.get("predict", "")),
        margin=float(margin) if margin is not None else None,
        groups=_groups_text(written),
    )
    try:
        metric = METRICS.get(result.metric)
        if metric is None:
            raise NoData(f"unknown metric {result.metric!r} (metrics: {', '.join(METRICS)})")
        labels = {k: _labels(exp, k, v) for k, v in (("a", a), ("b", b), ("where", where))}
        result = replace(
            result,
            kind=metric.kind,
            unit=metric.unit,
            a_text=_filter_text(labels["a"]),
            b_text=_filter_text(labels["b"]),
            groups=_groups_text(labels),
        )
        if metric.kind == "rate":
            return _rates(exp, result, metric, labels)
        return _continuous(exp, result, metric, labels)
    except NoData as exc:
        return replace(result, verdict=cs.NO_DATA, reason=str(exc))


def _labels(exp: Experiment, block: str, filters: dict[str, Any]) -> dict[str, list[str]]:
    """A filter block as factor -> labels; NoData when it names a factor the trials lack."""
    for factor in filters:
        if factor not in exp.factors:
            known = ", ".join(exp.factors) or "none"
            raise NoData(f"{block} names {factor}, which these trials do not vary ({known})")
    labels, errors = filter_labels(filters, exp.levels, in_plan=False)
    if errors:
        raise NoData(f"{block}.{errors[0].render()}")
    return labels


def _as_written(filters: dict[str, Any]) -> dict[str, list[str]]:
    """A filter block as the suite wrote it, for saying what a claim without data asked for."""
    return {
        str(f): [str(x) for x in (v if isinstance(v, list) else [v])] for f, v in filters.items()
    }


def _filter_text(filters: dict[str, list[str]]) -> str:
    return "; ".join(f"{f} = {' or '.join(v)}" for f, v in filters.items()) or "all trials"


def _groups_text(labels: dict[str, dict[str, list[str]]]) -> str:
    text = f"A: {_filter_text(labels['a'])}; B: {_filter_text(labels['b'])}"
    return text + (f"; within {_filter_text(labels['where'])}" if labels["where"] else "")


def _mask(t: pd.DataFrame, exp: Experiment, filters: dict[str, list[str]]) -> pd.Series:
    mask = pd.Series(True, index=t.index)
    for f, labels in filters.items():
        mask &= t[exp.fcol(f)].isin(labels)
    return mask


def _groups(
    exp: Experiment, metric: Metric, labels: dict[str, dict[str, list[str]]]
) -> tuple[pd.DataFrame, list[str]]:
    """The trials of A and B with the metric's value and their stratum, matched strata only.
    NoData says which filter matched nothing, or that nothing matched."""
    t = exp.trials
    inside = _mask(t, exp, labels["where"])
    if labels["where"] and not inside.any():
        raise NoData(f"where ({_filter_text(labels['where'])}) matches no trial")
    in_a = inside & _mask(t, exp, labels["a"])
    in_b = inside & _mask(t, exp, labels["b"])
    scope = f" within {_filter_text(labels['where'])}" if labels["where"] else ""
    for name, mask in (("a", in_a), ("b", in_b)):
        if not mask.any():
            levels = "; ".join(
                f"{f} has {', '.join(exp.levels[f])}" for f in labels[name] if f in exp.levels
            )
            raise NoData(
                f"group {name.upper()} ({_filter_text(labels[name])}) matches no trial{scope} "
                f"(the trials' levels: {levels})"
            )
    if (in_a & in_b).any():
        raise NoData("a and b select the same trials (they must differ in some factor)")
    chosen = t[in_a | in_b]
    values = trial_values(exp, chosen, metric)
    named = set(labels["a"]) | set(labels["b"])
    other = [f for f in exp.factors if f not in named]
    frame = pd.DataFrame(
        {
            "value": values,
            "group": np.where(in_a[chosen.index], "a", "b"),
            "seed": chosen["seed"],
            "stratum": _strata(exp, chosen, other),
        },
        index=chosen.index,
    )
    notes = []
    missing = frame["value"].isna()
    if missing.any():
        counts = frame[missing].groupby("group").size()
        parts = [f"{int(counts.get(g, 0))} of {g.upper()}" for g in ("a", "b") if counts.get(g)]
        notes.append(
            f"{plural(int(missing.sum()), 'trial')} ({join_and(parts)}) had no value of "
            f"{metric.name} and were left out"
        )
        frame = frame[~missing]
    for g in ("a", "b"):
        if not (frame["group"] == g).any():
            raise NoData(f"no trial of group {g.upper()} has a value of {metric.name}")
    in_both = set(frame.loc[frame["group"] == "a", "stratum"]) & set(
        frame.loc[frame["group"] == "b", "stratum"]
    )
    if not in_both:
        raise NoData(
            "no stratum has trials in both groups: A and B share no combination of "
            f"{join_and(other) if other else 'levels'} (so nothing is compared with the other "
            "factors held equal)"
        )
    unmatched = frame[~frame["stratum"].isin(in_both)]
    if len(unmatched):
        per = unmatched.groupby("group")["stratum"].nunique()
        parts = [f"{int(per.get(g, 0))} of {g.upper()}" for g in ("a", "b") if per.get(g)]
        notes.append(
            f"{plural(int(per.sum()), 'stratum', 'strata')} ({join_and(parts)}) had no partner "
            f"in the other group and {'was' if per.sum() == 1 else 'were'} dropped "
            f"({plural(len(unmatched), 'trial')})"
        )
    return frame[frame["stratum"].isin(in_both)], notes


def _strata(exp: Experiment, t: pd.DataFrame, other: list[str]) -> pd.Series:
    if not other:
        return pd.Series("all trials", index=t.index)
    parts = [f + "=" + t[exp.fcol(f)].astype(str) for f in other]
    out = parts[0]
    for p in parts[1:]:
        out = out + " · " + p
    return out


# -- metric values --------------------------------------------------------------------------------
def trial_values(exp: Experiment, t: pd.DataFrame, metric: Metric) -> pd.Series:
    """The metric's value for each trial of ``t`` (NaN where it has none): 1/0 for a rate (NaN
    for a trial without a verdict, a probe), the summary column, log10 of it for ``log10``
    metrics, the restricted steps to target, or the loss curve's roughness."""
    if metric.kind == "rate":
        has_verdict = t["outcome"].isin(OUTCOMES)
        hit = t["outcome"].isin(metric.outcomes).astype(float)
        return hit.where(has_verdict)
    if metric.reads == LOSS_CURVE:
        return pd.Series(
            [loss_roughness(exp.records.get(r, {})) for r in t["run_id"]], index=t.index
        )
    if metric.reads not in t.columns:
        raise NoData(f"these trials recorded no {metric.reads}")
    values = pd.to_numeric(t[metric.reads], errors="coerce").astype(float)
    if metric.name == "steps_to_target":
        return _restricted_steps(t, values)
    if metric.log10:
        values = np.log10(values.where(values > 0))
    return values.where(np.isfinite(values))


def _restricted_steps(t: pd.DataFrame, steps: pd.Series) -> pd.Series:
    """Steps to target, where a trial with a verdict other than converged counts as one step
    more than the longest run among these trials: never reaching the target is slowest."""
    ran = pd.to_numeric(t["steps_run"], errors="coerce") if "steps_run" in t else None
    if ran is None or not np.isfinite(ran).any():
        raise NoData("these trials recorded no steps_run (needed to count a trial that missed)")
    budget = float(np.nanmax(ran.to_numpy(dtype=float)))
    out = steps.where(t["outcome"] == "converged")
    missed = t["outcome"].isin(OUTCOMES) & (t["outcome"] != "converged")
    return out.mask(missed, budget + 1)


def loss_roughness(record: Mapping[str, Any]) -> float:
    """The median absolute second difference of log training loss along the recorded curve:
    0 for a loss that decays geometrically (a straight line in log), large for one that jumps
    up and down between points. NaN with fewer than three finite positive points."""
    loss = ((record.get("curves") or {}).get("train") or {}).get("loss") or []
    values = np.array([v for v in loss if isinstance(v, int | float)], dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size < 3:
        return math.nan
    return float(np.median(np.abs(np.diff(np.log(values), n=2))))


# -- the two kinds of test ------------------------------------------------------------------------
def _rates(
    exp: Experiment, result: ClaimResult, metric: Metric, labels: dict[str, dict[str, list[str]]]
) -> ClaimResult:
    frame, notes = _groups(exp, metric, labels)
    counts = frame.groupby(["stratum", "group"])["value"].agg(["sum", "count"]).unstack("group")
    strata = list(dict.fromkeys(frame["stratum"]))
    counts = counts.reindex(strata)
    x_a = counts[("sum", "a")].astype(int).to_numpy()
    n_a = counts[("count", "a")].astype(int).to_numpy()
    x_b = counts[("sum", "b")].astype(int).to_numpy()
    n_b = counts[("count", "b")].astype(int).to_numpy()
    exact = cs.stratified_exact_test(x_a, n_a, x_b, n_b)
    rd = cs.mh_risk_difference(x_a, n_a, x_b, n_b)
    p, q = _directed(result.predict, exact.p_greater, exact.p_less)
    return replace(
        result,
        verdict=cs.INCONCLUSIVE,
        test="exact conditional test over the strata's 2x2 tables; Mantel-Haenszel risk "
        "difference, MOVER-Wilson interval",
        effect=rd.effect,
        lo=rd.lo,
        hi=rd.hi,
        p=p,
        p_opposite=q,
        p_two_sided=exact.p_two_sided,
        n_a=int(n_a.sum()),
        n_b=int(n_b.sum()),
        strata=len(strata),
        notes=notes,
        evidence=[
            Stratum(s, xa / na, xb / nb, int(na), int(nb))
            for s, xa, na, xb, nb in zip(strata, x_a, n_a, x_b, n_b, strict=True)
        ],
    )


def _continuous(
    exp: Experiment, result: ClaimResult, metric: Metric, labels: dict[str, dict[str, list[str]]]
) -> ClaimResult:
    """Pairs by seed within each stratum when every matched stratum shares a seed between the
    groups (a group's trials at one seed, several when a or b lists several levels, are
    averaged); otherwise one pair per stratum, its A mean against its B mean."""
    frame, notes = _groups(exp, metric, labels)
    strata = list(dict.fromkeys(frame["stratum"]))
    seeded = frame.dropna(subset=["seed"])
    per_seed = seeded.groupby(["stratum", "seed", "group"])["value"].mean().unstack("group")
    paired = per_seed.dropna()
    by_seed = len(paired) > 0 and set(paired.index.get_level_values("stratum")) == set(strata)
    evidence = []
    if by_seed:
        diffs = (paired["a"] - paired["b"]).to_numpy(dtype=float)
        unpaired = len(per_seed) - len(paired)
        if unpaired:
            notes.append(
                f"{plural(unpaired, 'seed')} of some strata ran in one group only and "
                f"{'was' if unpaired == 1 else 'were'} left unpaired"
            )
        used = frame.set_index(["stratum", "seed"]).index.isin(paired.index)
        n_a = int(((frame["group"] == "a") & used).sum())
        n_b = int(((frame["group"] == "b") & used).sum())
        for s in strata:
            rows = paired.xs(s, level="stratum")
            evidence.append(Stratum(s, rows["a"].mean(), rows["b"].mean(), len(rows), len(rows)))
        pairing = "seed"
    else:
        means = frame.groupby(["stratum", "group"])["value"].agg(["mean", "count"])
        means = means.unstack("group").reindex(strata)
        diffs = (means[("mean", "a")] - means[("mean", "b")]).to_numpy(dtype=float)
        n_a, n_b = int(means[("count", "a")].sum()), int(means[("count", "b")].sum())
        notes.append("seeds do not pair across the groups, so stratum means are paired")
        for s in strata:
            r = means.loc[s]
            evidence.append(
                Stratum(s, r[("mean", "a")], r[("mean", "b")], int(r[("count", "a")]), 1)
            )
        pairing = "stratum means"
    stats_ = cs.paired_difference(diffs)
    p, q = _directed(result.predict, stats_.p_greater, stats_.p_less)
    flips = "exact" if stats_.exact else f"Monte Carlo, {cs.PERMUTATIONS:,} draws"
    return replace(
        result,
        verdict=cs.INCONCLUSIVE,
        test=f"paired differences: sign-flip permutation test ({flips}); expanded percentile "
        "bootstrap interval",
        effect=stats_.effect,
        lo=stats_.lo,
        hi=stats_.hi,
        p=p,
        p_opposite=q,
        p_two_sided=stats_.p_two_sided,
        n_a=n_a,
        n_b=n_b,
        pairs=stats_.n,
        strata=len(strata),
        pairing=pairing,
        notes=notes,
        evidence=evidence,
    )


def _directed(predict: str, p_greater: float, p_less: float) -> tuple[float, float]:
    """(p in the predicted direction, p in the opposite one); equal claims have neither."""
    if predict == "greater":
        return p_greater, p_less
    if predict == "less":
        return p_less, p_greater
    return math.nan, math.nan


# -- the section ----------------------------------------------------------------------------------
class Claims:
    """The claims the suite declares, each with its verdict, effect, interval, p-value and n,
    the evidence per stratum, and the rule and tests behind the verdicts."""

    title = "Claims"

    def applies(self, ctx: ReportContext) -> bool:
        """Only a suite that declares claims has a claims audit."""
        return bool(declared_claims(ctx.exp))

    def build(self, ctx: ReportContext) -> list[Block]:
        claims = declared_claims(ctx.exp)
        if not claims:
            return [
                Para(
                    "This experiment declares no claims (a suite's `claims:` block puts "
                    "statements to the test here), so there is nothing to audit.",
                    note=True,
                )
            ]
        return claims_blocks(evaluate_claims(ctx.exp, claims))


def claims_blocks(results: list[ClaimResult]) -> list[Block]:
    counts = {v: sum(r.verdict == v for r in results) for v in cs.VERDICTS}
    parts = [f"{counts[v]} {v}" for v in cs.VERDICTS if counts[v]]
    blocks: list[Block] = [
        Para(
            f"The suite puts {plural(len(results), 'claim')} to the test: {join_and(parts)}. "
            "Each compares a metric between two groups of trials, matched on every other "
            "factor; the rule and the tests are stated below the table."
        ),
        claims_table(results),
    ]
    blocks += [
        Para(f"{r.id}: no data. {_sentence(r.reason)}", note=True)
        for r in results
        if not r.has_data
    ]
    with_data = [r for r in results if r.has_data and r.evidence]
    if with_data:
        rows = math.ceil(len(with_data) / PANEL_COLS)
        blocks.append(
            Figure(
                name="claims-evidence",
                draw=partial(evidence_panels, results=with_data),
                size=(figures.WIDTH, 0.35 + 1.95 * rows),
                caption="The evidence per claim: each dot is one matched stratum (the other "
                "factors held equal), its value in group B across and in group A up; dot size "
                "grows with the trials (rates) or pairs (continuous) in it. Above the diagonal, "
                "A is higher. Equal claims shade the band within their margin.",
            )
        )
    blocks.append(KeyValues([(r.id, _details(r)) for r in results]))
    blocks.append(Heading("How the claims are judged"))
    blocks.append(Para(methods_text()))
    blocks.append(Para(cs.VERDICT_RULE))
    return blocks


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""


def claims_table(results: list[ClaimResult]) -> Table:
    rows, attrs = [], []
    for r in results:
        colour = VERDICT_COLORS[r.verdict]
        rows.append(
            [
                Cell(r.id),
                Cell(_short(r.text)),
                Cell(_short(r.source, SHORT_SOURCE) or "–"),
                Cell(f"{r.metric} {_predict_symbol(r.predict)}"),
                Cell(r.verdict, {"verdict": r.verdict}, (*to_rgb(colour), 0.35)),
                Cell(effect_text(r)),
                Cell(p_text(r)),
                Cell(n_text(r)),
            ]
        )
        attrs.append(
            {
                "claim": r.id,
                "verdict": r.verdict,
                "effect": _g(r.effect),
                "lo": _g(r.lo),
                "hi": _g(r.hi),
                "p": _g(r.p),
                "p-adjusted": _g(r.p_adjusted),
                "p-opposite-adjusted": _g(r.p_opposite_adjusted),
                "n-a": r.n_a,
                "n-b": r.n_b,
                "pairs": r.pairs,
                "strata": r.strata,
            }
        )
    return Table(
        [
            Column("id", weight=0.5),
            Column("claim", weight=2.6),
            Column("source", weight=1.2),
            Column("metric", weight=1.4),
            Column("verdict", weight=0.9),
            Column("effect A − B [95%]", "right", 1.6),
            Column("p Holm (raw)", "right", 1.1),
            Column("n", "right", 1.3),
        ],
        rows,
        name="claims",
        row_attrs=attrs,
        caption="One row per claim: the effect is A minus B (rates: risk difference in "
        "percentage points), with its 95% interval; p is one-sided in the predicted direction, "
        "Holm-adjusted over the directional claims (raw in parentheses); equal claims are "
        "judged by their interval against the margin. n: trials per group (rates) or pairs, "
        "and matched strata.",
    )


def _g(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6g}"


def _short(text: str, limit: int = SHORT_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _predict_symbol(predict: str) -> str:
    return {"greater": ">", "less": "<", "equal": "≈"}.get(predict, predict)


def _num(x: float, signed: bool = False) -> str:
    """Three significant digits (whole numbers above 100), a real minus sign."""
    if not math.isfinite(x):
        return "–"
    text = f"{x:+.0f}" if abs(x) >= 100 else f"{x:+.3g}"
    text = text if signed else text.lstrip("+")
    return text.replace("-", "−")


def effect_text(r: ClaimResult) -> str:
    """ "+12.5 pp [3.0, 22.1]" (rates: percentage points) or "+0.031 [0.01, 0.05]" (in the
    metric's own unit, which the claim's details name)."""
    if not r.has_data:
        return "–"
    unit = " pp" if r.kind == "rate" else ""
    text = f"{_effect_num(r, r.effect, True)}{unit}"
    if math.isfinite(r.lo) and math.isfinite(r.hi):
        text += f" [{_effect_num(r, r.lo)}, {_effect_num(r, r.hi)}]"
    return text


def _effect_num(r: ClaimResult, x: float, signed: bool = False) -> str:
    if r.kind != "rate":
        return _num(x, signed)
    return (f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}").replace("-", "−")


def p_value(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def p_text(r: ClaimResult) -> str:
    if not r.has_data:
        return "–"
    if r.predict == "equal":
        return f"interval vs ±{_margin_text(r)}"
    return f"{p_value(r.p_adjusted)} ({p_value(r.p)})"


def n_text(r: ClaimResult) -> str:
    if not r.has_data:
        return "–"
    strata = plural(r.strata, "stratum", "strata")
    if r.kind == "rate":
        return f"{r.n_a}/{r.n_b} trials, {strata}"
    what = "pair" if r.pairing == "seed" else "stratum pair"
    return f"{plural(r.pairs, what)}, {strata}"


def _margin_text(r: ClaimResult) -> str:
    m = r.margin or 0.0
    return f"{100 * m:g} pp" if r.kind == "rate" else f"{m:g}"


def _details(r: ClaimResult) -> str:
    """The claim in full: its text and source, what it predicts of which groups, the metric
    (with its unit), and what was dropped or is missing."""
    metric = METRICS.get(r.metric)
    words = {"greater": "greater than", "less": "less than", "equal": "equal to"}
    parts = [_sentence(" ".join(r.text.split()))]
    if r.source:
        parts.append(_sentence(f"Source: {r.source}"))
    margin = f" (within ±{_margin_text(r)})" if r.predict == "equal" and r.margin else ""
    parts.append(
        f"Predicts {r.metric} of A {words.get(r.predict, r.predict)} B{margin}; {r.groups}."
    )
    if metric is not None:
        parts.append(f"{r.metric} ({metric.unit}): {metric.description}.")
    if not r.has_data:
        parts.append(f"No data: {r.reason}.")
    parts += [_sentence(n) for n in r.notes]
    return " ".join(parts)


def methods_text() -> str:
    return (
        "How each claim is measured. The trials that pass the claim's where filter form group A "
        "(those that also pass a) and group B (those that pass b). A stratum is one "
        "combination of levels of every factor that a and b do not name; only strata with "
        "trials in both groups are compared (matched), the others are dropped and counted. "
        "Rates (a yes/no per trial) use the exact conditional test for K 2x2 tables: given "
        "each stratum's margins, A's successes are hypergeometric per stratum and their sum "
        "follows the convolution of those distributions, whose tails give the one-sided "
        "p-values (Fisher's exact test when there is one stratum). The effect is the "
        "Mantel-Haenszel risk difference with a 95% MOVER-Wilson interval (Zou, Huang & Zhang "
        "2009; Newcombe's hybrid score interval for one stratum). Continuous metrics are "
        "paired by seed within each stratum when every matched stratum shares seeds between "
        "the groups (else stratum mean against stratum mean); the effect is the mean "
        "difference A - B, its 95% interval an expanded percentile bootstrap (Hesterberg 2015) "
        f"of {cs.BOOTSTRAP_RESAMPLES:,} resamples of the pairs with seed "
        f"{cs.BOOTSTRAP_SEED}, and p the sign-flip permutation test of the mean difference, "
        f"exact up to {cs.EXACT_PAIRS} pairs (so 4 or fewer pairs can never reach p < 0.05), "
        f"Monte Carlo with {cs.PERMUTATIONS:,} draws (seed {cs.PERMUTATION_SEED}) above. "
        "Metrics marked log10 compare log10 values (the effect is a log10 ratio); a margin "
        "is in the effect's unit (rates: a difference of rates, 0.1 = 10 points). "
        "steps_to_target counts a trial that never reached the target as one step more than "
        "the longest run among the claim's trials. Multiple claims: Holm's step-down "
        f"adjustment over the directional claims with data, alpha = {cs.ALPHA}."
    )


# -- the evidence chart ---------------------------------------------------------------------------
def evidence_panels(fig: MplFigure, results: list[ClaimResult]) -> None:
    """One small panel per claim: group B's value across, group A's up, one dot per matched
    stratum (area by its trials or pairs), the diagonal where A = B, the margin band of equal
    claims, and the effect with its interval written in the corner."""
    n = len(results)
    cols = min(PANEL_COLS, n)
    rows = math.ceil(n / cols)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False))
    for ax, r in zip(axes.flat, results, strict=False):
        colour = VERDICT_COLORS[r.verdict]
        xs = np.array([s.b for s in r.evidence], dtype=float)
        ys = np.array([s.a for s in r.evidence], dtype=float)
        size = np.array([s.n_a + s.n_b for s in r.evidence], dtype=float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        if r.kind == "rate":
            lo, hi = -0.05, 1.05
        else:
            both = np.concatenate([xs[ok], ys[ok]])
            lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
            pad = 0.12 * (hi - lo) if hi > lo else max(abs(hi) * 0.1, 0.5)
            lo, hi = lo - pad, hi + pad
        line = np.array([lo, hi])
        if r.predict == "equal" and r.margin:
            ax.fill_between(line, line - r.margin, line + r.margin, color=colour, alpha=0.15, lw=0)
        ax.plot(line, line, color="#777777", linewidth=0.8, linestyle=":")
        ax.scatter(
            xs[ok],
            ys[ok],
            s=10 + 40 * size[ok] / max(size.max(), 1),
            color=colour,
            alpha=0.75,
            edgecolor="white",
            linewidth=0.4,
            zorder=3,
        )
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        if r.kind == "rate":
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_formatter(mpl.ticker.PercentFormatter(1.0, decimals=0))
                axis.set_major_locator(mpl.ticker.FixedLocator([0, 0.5, 1]))
        else:
            ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(3))
            ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(3))
        ax.tick_params(labelsize=6, pad=1)
        ax.set_title(f"{r.id}: {r.verdict}", color=colour, fontsize=7, fontweight="bold", pad=12)
        ax.annotate(
            f"{r.metric}  {effect_text(r)}",
            (0.5, 1.0),
            xycoords="axes fraction",
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=5.5,
            color="#444444",
        )
        log = " (log10)" if _is_log(r) else ""
        ax.set_xlabel(_wrap(f"B: {r.b_text}{log}"), fontsize=6)
        ax.set_ylabel(_wrap(f"A: {r.a_text}{log}"), fontsize=6)
    for ax in axes.flat[n:]:
        ax.set_visible(False)


def _is_log(r: ClaimResult) -> bool:
    metric = METRICS.get(r.metric)
    return bool(metric and metric.log10)


def _wrap(text: str, width: int = 30) -> str:
    lines = textwrap.wrap(text, width) or [""]
    return "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")


__all__ = [
    "ClaimResult",
    "Claims",
    "NoData",
    "Stratum",
    "declared_claims",
    "evaluate_claims",
    "loss_roughness",
    "measure",
    "trial_values",
]
