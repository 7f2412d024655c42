"""The claims audit's evaluation: each declared claim measured on its trials, with a verdict.

Pure (no rendering): ``gradatlas verdicts``, the report's Claims section and ``gradatlas
calibrate`` (through ``claimstats``) read the same numbers from here.

A claim says "metric(A) predict metric(B)". Its trials are those that pass ``where``; group A
passes ``a`` as well, group B ``b`` (an arm may also select seeds: ``seeds: even | odd | [..]``,
which is how an A/A control is written). The groups are compared only where they can be compared
fairly: a *stratum* is one combination of levels of every factor the claim does not name in
``a`` or ``b`` (the other factors held equal), and only strata with trials in both groups
count; the rest are dropped and said.

The seed is the unit of replication: every cell of a suite runs the same seed list, so the
trials of one seed share the data order and the init stream across strata and arms and are not
independent evidence. ``claimstats.analyse`` therefore summarises each seed across the strata
(paired design) or each seed's stratum-centred mean (arms on disjoint seeds) and tests over
seeds; ``claimstats.decide`` puts every directional claim's two-sided p-value and every
homogeneity test in one Holm family (``RULE_TEXT``).

Failed trials are not dropped silently (no survivorship): a rate counts every labelled trial;
a continuous metric whose value is missing or not finite (an exploded trial has no test
accuracy) enters by intention to treat where the metric has a natural value for a failure
(``ITT``: chance accuracy, the worst loss seen), and the complete-case analysis (failures left
out) is given beside it where the two verdicts differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from gradatlas.errors import UserInputError
from gradatlas.record import OUTCOMES, OutcomeLabel
from gradatlas.reports import claimstats as cs
from gradatlas.reports.fmt import join_and, plural
from gradatlas.reports.load import TUNE_RANK, Experiment, second_best
from gradatlas.suites.claims import (
    LOSS_CURVE,
    METRICS,
    SEEDS,
    Metric,
    filter_labels,
    level_number,
    seed_filter,
)


@dataclass
class Stratum:
    """One matched stratum's evidence: the groups' mean value there and their trial counts."""

    label: str
    a: float
    b: float
    n_a: int
    n_b: int


@dataclass
class ClaimResult:
    """One claim, measured and judged. ``effect`` is A minus B (a risk difference for rates, a
    mean difference for continuous metrics, in log10 for ``log10`` metrics), strata weighted
    equally, with its 95% interval ``lo``..``hi`` (the seed-level test inverted); ``p`` the
    two-sided p-value over seeds (equal claims: TOST's against the margin), ``p_adjusted``
    Holm's (NaN for claims without data)."""

    id: str
    text: str
    source: str
    metric: str
    predict: str
    margin: float | None
    groups: str  # "A: init = kaiming_normal; B: init = xavier_normal; within depth = d20"
    control: bool = False
    a_text: str = ""
    b_text: str = ""
    kind: str = ""
    unit: str = ""
    verdict: str = cs.NO_DATA
    reason: str = ""  # why there is no verdict (no data)
    test: str = ""
    design: str = ""  # "paired" (arms share seeds) or "unpaired" (disjoint seeds)
    effect: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    p: float = math.nan
    p_adjusted: float = math.nan
    homogeneity_p: float = math.nan
    homogeneity_p_adjusted: float = math.nan
    mde: float = math.nan  # minimum detectable |effect| at 80% power
    meaningful: float = math.nan  # the effect size "underpowered" is judged against
    underpowered: bool = False
    # seeds for 80% power at the meaningful effect (MDE scales as 1/sqrt(seeds)); NaN: unknown
    seeds_needed: float = math.nan
    n_a: int = 0  # trials of A in matched strata
    n_b: int = 0
    n_seeds: int = 0
    strata: int = 0
    missing: int = 0  # trials in matched strata without a finite value of the metric
    itt: str = ""  # how failed trials entered (continuous metrics), "" when none failed
    complete_case: dict[str, Any] | None = None  # the analysis without them, when it differs
    holds_in: list[str] = field(default_factory=list)  # depends: strata
    reversed_in: list[str] = field(default_factory=list)
    scope: str = ""
    scope_detail: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was dropped, and why
    evidence: list[Stratum] = field(default_factory=list)
    dataset: str = ""  # the dataset this row is about; "" when the claim ran on one, "all" overall
    # the claim judged on each dataset alone (filled on the overall row when the claim's trials span
    # several datasets); the overall verdict is theirs when they agree, 'depends on dataset' if not
    per_dataset: dict[str, ClaimResult] = field(default_factory=dict)
    robustness: ClaimResult | None = None  # the claim re-judged at each tuned arm's second-best lr

    @property
    def has_data(self) -> bool:
        return self.verdict != cs.NO_DATA

    @property
    def pairs(self) -> int:  # the old name of the replication count
        return self.n_seeds


class NoData(Exception):
    """A claim that cannot be measured; the message says what is missing."""


@dataclass
class _Measured:
    result: ClaimResult
    data: cs.ClaimData | None = None
    complete_case: cs.ClaimData | None = None  # only where ITT filled some values
    strata: list[str] = field(default_factory=list)
    run_ids: set[str] = field(default_factory=set)  # the trials the data was measured on


# -- which claims ---------------------------------------------------------------------------------
def declared_claims(exp: Experiment) -> list[dict[str, Any]]:
    """The ``claims`` of the newest sweep that recorded its resolved suite (sweeps are newest
    first), as dicts; [] when none did or it declares none."""
    suite = resolved_suite(exp)
    claims = (suite or {}).get("claims") or []
    return [c for c in claims if isinstance(c, Mapping)]


def resolved_suite(exp: Experiment) -> dict[str, Any] | None:
    """The resolved suite of the newest sweep that recorded one."""
    for sweep in exp.sweeps:
        if sweep.resolved is not None:
            return sweep.resolved
    return None


# -- the audit ------------------------------------------------------------------------------------
DATASET = "dataset"  # the grid factor a suite replicates its claims over


def evaluate_claims(
    exp: Experiment, claims: Sequence[Mapping[str, Any]], **kw: Any
) -> list[ClaimResult]:
    """Every claim measured and judged, one result per claim.

    On one dataset the claims form one family (``judge_family``). A suite that varies
    ``dataset`` is judged per dataset, each a family of its own, and each claim's result is
    the overall row (``dataset = "all"``): the pooled effect (dataset as a stratum) with the
    datasets' common verdict, or ``depends on dataset`` when they differ; ``per_dataset``
    holds each dataset's own result. Trials run at a study's second-best value (``tune_rank``
    2) are left out of these and judged as the ``robustness`` family. ``kw`` goes to
    ``claimstats.analyse`` (resamples, permutations)."""
    primary, second = _by_rank(exp)
    results = _judge_replicated(primary, claims, kw)
    if second is not None:
        robust = _judge_replicated(second, claims, kw)
        tuned = _tuned_claims(primary, claims)
        results = [
            replace(r, robustness=rb) if t and rb.has_data else r
            for r, rb, t in zip(results, robust, tuned, strict=True)
        ]
    return results


def _by_rank(exp: Experiment) -> tuple[Experiment, Experiment | None]:
    """The experiment without its second-best trials, and the one where they take the place of
    the best (None when there are none)."""
    t = exp.trials
    second = second_best(t)
    if not second.any():
        return exp, None
    # in the robustness set a cell with second-best trials keeps only those (its best-value
    # trials, tagged or recorded before the tag existed, leave)
    # (twins share the cell label, not the cell id: their lr differs)
    replaced = t["cell"].isin(set(t.loc[second, "cell"])) & ~second
    return replace(exp, trials=t[~second]), replace(exp, trials=t[~replaced])


def _tuned_claims(exp: Experiment, claims: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Whether each claim's trials include tuned ones (``tune_rank`` 1)."""
    rank = pd.to_numeric(exp.trials[TUNE_RANK], errors="coerce").fillna(0)
    tuned_runs = set(exp.trials.loc[rank == 1, "run_id"])
    out = []
    for claim in claims:
        m = measure(exp, claim)
        out.append(m.data is not None and bool(tuned_runs & m.run_ids))
    return out


def _datasets(exp: Experiment) -> list[str]:
    if DATASET not in exp.factors:
        return []
    return [str(d) for d in exp.trials[exp.fcol(DATASET)].dropna().unique()]


def _judge_replicated(
    exp: Experiment, claims: Sequence[Mapping[str, Any]], kw: dict[str, Any]
) -> list[ClaimResult]:
    datasets = _datasets(exp)
    if len(datasets) < 2:
        return [
            replace(r, dataset=datasets[0] if datasets else "")
            for r in judge_family(exp, claims, kw)
        ]
    pooled = judge_family(exp, claims, kw)
    col = exp.fcol(DATASET)
    per = {
        d: judge_family(replace(exp, trials=exp.trials[exp.trials[col] == d]), claims, kw)
        for d in datasets
    }
    out = []
    for i, r in enumerate(pooled):
        mine = {d: replace(per[d][i], dataset=d) for d in datasets if per[d][i].has_data}
        out.append(_overall(r, mine))
    return out


def _overall(pooled: ClaimResult, per: dict[str, ClaimResult]) -> ClaimResult:
    """The overall row: the pooled numbers; the datasets' common verdict (intersection-union:
    its adjusted p is the largest of theirs), or ``depends on dataset``."""
    if not per:
        return replace(pooled, dataset="all")
    verdicts = {r.verdict for r in per.values()}
    verdict = verdicts.pop() if len(verdicts) == 1 else cs.DEPENDS_ON_DATASET
    p_adjusted = max(r.p_adjusted for r in per.values())
    return replace(
        pooled,
        dataset="all",
        verdict=verdict if pooled.has_data else pooled.verdict,
        p_adjusted=p_adjusted,
        per_dataset=per,
        underpowered=any(r.underpowered for r in per.values()) and verdict == cs.INCONCLUSIVE,
        notes=[
            *pooled.notes,
            "effect and interval pooled over "
            + join_and(list(per))
            + " (dataset as a stratum); verdict: "
            + "; ".join(f"{d} {r.verdict}" for d, r in per.items()),
        ],
    )


def judge_family(
    exp: Experiment, claims: Sequence[Mapping[str, Any]], kw: dict[str, Any]
) -> list[ClaimResult]:
    """Measure every claim, judge them as one family (``claimstats.decide``) and attach each
    one's scope."""
    measured = [measure(exp, claim) for claim in claims]
    family = sum(1 for m in measured if m.data is not None and not m.result.control)
    datas = [m.data for m in measured]
    analyses = _analyse(datas, kw)
    decisions = cs.decide([d or _EMPTY for d in datas], analyses)
    results = []
    for m, a, dec in zip(measured, analyses, decisions, strict=True):
        r = m.result
        if a is not None:
            r = replace(
                r,
                verdict=dec.verdict,
                design=a.design,
                effect=a.effect,
                lo=a.lo,
                hi=a.hi,
                p=_raw_p(r.predict, dec.verdict, a),
                p_adjusted=dec.p_adjusted,
                homogeneity_p=a.homogeneity_p,
                homogeneity_p_adjusted=dec.homogeneity_p_adjusted,
                mde=a.mde,
                meaningful=a.meaningful,
                seeds_needed=_seeds_needed(a.n_seeds, a.mde, a.meaningful, family),
                underpowered=dec.underpowered,
                n_a=a.n_a,
                n_b=a.n_b,
                n_seeds=a.n_seeds,
                strata=a.strata,
                holds_in=[m.strata[j] for j in dec.holds_in],
                reversed_in=[m.strata[j] for j in dec.reversed_in],
                notes=[*r.notes, _left_out_note(a)] if dec.left_out else r.notes,
                test=_test_text(a.design, r.kind),
            )
        results.append(r)
    results = _complete_case(measured, results, kw)
    scope = _scopes(exp, claims)
    return [replace(r, **s) if s else r for r, s in zip(results, scope, strict=True)]


_EMPTY = cs.ClaimData(
    "continuous", "greater", None, np.empty(0), np.empty(0, bool), np.empty(0, int), np.empty(0)
)


def _analyse(datas: list[cs.ClaimData | None], kw: dict[str, Any]) -> list[Any]:
    """``claimstats.analyse_family`` over claims some of which have no data (None)."""
    return cs.analyse_family([d if d is not None else _EMPTY for d in datas], **kw)


def _complete_case(
    measured: list[_Measured], results: list[ClaimResult], kw: dict[str, Any]
) -> list[ClaimResult]:
    """The family judged again with every ITT-filled claim on its complete cases; a claim whose
    verdict changes gets both (``complete_case``) and a note."""
    if not any(m.complete_case is not None for m in measured):
        return results
    datas = [m.complete_case if m.complete_case is not None else m.data for m in measured]
    analyses = _analyse(datas, kw)
    decisions = cs.decide([d if d is not None else _EMPTY for d in datas], analyses)
    out = []
    for m, r, a, dec in zip(measured, results, analyses, decisions, strict=True):
        if m.complete_case is not None and a is not None:
            cc = {
                "verdict": dec.verdict,
                "effect": a.effect,
                "ci_low": a.lo,
                "ci_high": a.hi,
                "p_adjusted": dec.p_adjusted,
                "n_seeds": a.n_seeds,
            }
            if dec.verdict != r.verdict:
                note = (
                    f"without the failed trials (complete cases) the verdict would be "
                    f"{dec.verdict} (effect {a.effect:+.3g}, 95% [{a.lo:.3g}, {a.hi:.3g}])"
                )
                r = replace(r, complete_case=cc, notes=[*r.notes, note])
            else:
                r = replace(r, complete_case=cc)
        out.append(r)
    return out


def _scopes(exp: Experiment, claims: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each claim's scope (dataset, model, budget, how learning rates were set), from
    ``claimscope`` when it can say; {} where it cannot."""
    try:
        from gradatlas.reports.claimscope import claim_scope
    except ImportError:  # pragma: no cover - claimscope is part of the package
        return [{} for _ in claims]
    suite = resolved_suite(exp) or {}
    out = []
    for claim in claims:
        try:
            detail = claim_scope(suite, claim, exp.trials)
        except Exception as exc:  # a scope it cannot read must not hide a verdict
            detail = {"text": f"scope unknown ({exc})"}
        out.append({"scope": str(detail.get("text", "")), "scope_detail": dict(detail)})
    return out


def _seeds_needed(n_seeds: int, mde: float, meaningful: float, family: int = 1) -> float:
    """Seeds per arm for 80% power at the meaningful effect, from the MDE at ``n_seeds`` (which
    shrinks as 1/sqrt(seeds)), and never fewer than the sign-flip test needs to reach Holm's
    first threshold in a family of ``family`` claims at all (2 / 2^n <= alpha / family); NaN
    where the MDE is infinite or unknown."""
    if not (n_seeds and math.isfinite(mde) and math.isfinite(meaningful) and meaningful > 0):
        return math.nan
    floor = math.ceil(math.log2(2 * max(family, 1) / cs.ALPHA))
    return float(max(math.ceil(n_seeds * (mde / meaningful) ** 2), floor))


def _raw_p(predict: str, verdict: str, a: cs.SeedAnalysis) -> float:
    """The raw p of the test that decides: the effect's, or an equal claim's equivalence (TOST)
    test, or its beyond-the-margin test when that refuted it."""
    if predict != "equal":
        return a.p_two_sided
    return a.p_beyond_margin if verdict == cs.REFUTED else a.p_equivalence


def _left_out_note(a: cs.SeedAnalysis) -> str:
    return (
        f"left out of the Holm family (Tarone): these data's smallest attainable p-value "
        f"({a.attainable_p:.2g}) cannot reach the family's threshold, so the claim could not be "
        "decided either way and its adjusted p is shown as 1"
    )


def _test_text(design: str, kind: str) -> str:
    if design == "paired":
        what = "per-seed A-B difference averaged over strata; two-sided sign-flip test over seeds"
    else:
        what = "per-seed stratum-centred means; two-sided permutation of seeds between the arms"
    interval = "interval by inverting that test" + (
        " joined with the MOVER-Wilson interval" if kind == "rate" else ""
    )
    return f"{what}; {interval}; homogeneity: seed rows centred and sign-flipped"


# -- one claim ------------------------------------------------------------------------------------
def measure(exp: Experiment, claim: Mapping[str, Any]) -> _Measured:
    """One claim's data (``claimstats.ClaimData``), or verdict ``no data`` with the reason."""
    a, b, where = (dict(claim.get(k) or {}) for k in ("a", "b", "where"))
    by, over, within = dict(claim.get("by") or {}), claim.get("over"), claim.get("within")
    margin = claim.get("margin")
    seeds = {"a": a.pop(SEEDS, None), "b": b.pop(SEEDS, None)}
    written = {k: _as_written(v) for k, v in (("a", a), ("b", b), ("where", where))}
    result = ClaimResult(
        id=str(claim.get("id", "?")),
        text=str(claim.get("text", "")),
        source=str(claim.get("source", "")),
        metric=str(claim.get("metric", "")),
        predict=str(claim.get("predict", "")),
        margin=float(margin) if margin is not None else None,
        groups=_groups_text(written, seeds),
        control=bool(claim.get("control", False)),
    )
    try:
        metric = METRICS.get(result.metric)
        if metric is None:
            raise NoData(f"unknown metric {result.metric!r} (metrics: {', '.join(METRICS)})")
        labels = {k: _labels(exp, k, v) for k, v in (("a", a), ("b", b), ("where", where))}
        shape = _Shape(
            by=_labels(exp, "by", by) if by else {},
            over=str(over) if over is not None else None,
            within=float(within) if within is not None else math.nan,
        )
        if shape.over is not None and shape.over not in exp.factors:
            raise NoData(f"over names {shape.over}, which these trials do not vary")
        result = replace(
            result,
            kind=metric.kind if shape.plain else "continuous",
            unit=shape.unit(metric),
            a_text=_filter_text(labels["a"], seeds["a"]),
            b_text=_filter_text(labels["b"], seeds["b"]),
            groups=_groups_text(labels, seeds) + shape.text(metric),
        )
        frame, notes = _groups(exp, metric, labels, seeds, shape)
        return _as_data(exp, result, metric, frame, notes, shape)
    except NoData as exc:
        return _Measured(replace(result, verdict=cs.NO_DATA, reason=str(exc)))


def seed_mask(seeds: pd.Series, selector: Any) -> pd.Series:
    """Trials whose seed an arm's ``seeds`` selects (``suites.claims.seed_filter``: even, odd or
    a list); every trial when the arm selects none."""
    if selector is None:
        return pd.Series(True, index=seeds.index)
    try:
        select = seed_filter(selector)
    except UserInputError as exc:
        raise NoData(f"seeds: {exc.message}") from None
    return seeds.map(select).astype(bool)


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


def _seeds_text(selector: Any) -> str:
    if selector is None:
        return ""
    if isinstance(selector, list | tuple):
        return "seeds " + ", ".join(str(s) for s in selector)
    return f"{selector} seeds"


def verdict_rows(results: Sequence[ClaimResult], exp: Experiment) -> list[dict[str, Any]]:
    """The machine-readable verdicts (``gradatlas verdicts --json``, ``verdicts.json``): per
    claim, one row per dataset (``dataset``: its name) and then the overall row (``dataset``:
    ``"all"``, the one to quote); on one dataset the two agree."""
    from gradatlas.reports.claimscope import verdict_rows as rows

    flat: list[ClaimResult] = []
    for r in results:
        if r.per_dataset:
            flat += list(r.per_dataset.values())
        elif r.dataset not in ("", "all"):
            flat.append(r)
        flat.append(replace(r, dataset="all"))
    return rows(flat, exp)


def _filter_text(filters: dict[str, list[str]], seeds: Any = None) -> str:
    parts = [f"{f} = {' or '.join(v)}" for f, v in filters.items()]
    if seeds is not None:
        parts.append(_seeds_text(seeds))
    return "; ".join(parts) or "all trials"


def _groups_text(labels: dict[str, dict[str, list[str]]], seeds: dict[str, Any]) -> str:
    text = f"A: {_filter_text(labels['a'], seeds['a'])}; B: {_filter_text(labels['b'], seeds['b'])}"
    return text + (f"; within {_filter_text(labels['where'])}" if labels["where"] else "")


def _mask(t: pd.DataFrame, exp: Experiment, filters: dict[str, list[str]]) -> pd.Series:
    mask = pd.Series(True, index=t.index)
    for f, labels in filters.items():
        mask &= t[exp.fcol(f)].isin(labels)
    return mask


@dataclass(frozen=True)
class _Shape:
    """What a claim compares beyond a plain A-B difference of the metric: an interaction
    (``by``: the A-B effect at the first level minus at the second) or a curve (``over``: per
    arm and seed, the width in decades of the range of that factor whose metric lies within
    ``within`` of the curve's best)."""

    by: dict[str, list[str]]
    over: str | None
    within: float

    @property
    def plain(self) -> bool:
        return not self.by and self.over is None

    @property
    def by_factor(self) -> str | None:
        return next(iter(self.by), None)

    def unit(self, metric: Metric) -> str:
        if self.over is not None:
            return f"decades of {self.over}"
        if self.by:
            return f"{metric.unit}, difference of differences"
        return metric.unit

    def empty_reason(self) -> str:
        if self.over is not None:
            return f"no arm and seed has a curve over two or more levels of {self.over}"
        return f"no seed and stratum has A and B at both levels of {self.by_factor}"

    def text(self, metric: Metric) -> str:
        if self.over is not None:
            return (
                f"; compared: the width (decades) of the {self.over} range whose {metric.name} "
                f"lies within {self.within:g} of each curve's best"
            )
        if self.by:
            f = self.by_factor
            first, second = self.by[f]  # type: ignore[index]
            return f"; compared: the A-B effect at {f} = {first} minus at {f} = {second}"
        return ""


def _groups(
    exp: Experiment,
    metric: Metric,
    labels: dict[str, dict[str, list[str]]],
    seeds: dict[str, Any],
    shape: _Shape | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """The trials of A and B with the metric's value (NaN: none) and their stratum, matched
    strata only (plus ``by``'s level and ``over``'s number when the claim has them). NoData
    says which filter matched nothing, or that nothing matched."""
    shape = shape or _Shape({}, None, math.nan)
    t = exp.trials
    inside = _mask(t, exp, labels["where"]) & _mask(t, exp, shape.by)
    if metric.kind == "rate":  # a trial without a verdict (a probe) is no yes/no
        inside &= t["outcome"].isin(OUTCOMES)
    if labels["where"] and not inside.any():
        raise NoData(f"where ({_filter_text(labels['where'])}) matches no trial")
    in_a = inside & _mask(t, exp, labels["a"]) & seed_mask(t["seed"], seeds["a"])
    in_b = inside & _mask(t, exp, labels["b"]) & seed_mask(t["seed"], seeds["b"])
    scope = f" within {_filter_text(labels['where'])}" if labels["where"] else ""
    for name, mask in (("a", in_a), ("b", in_b)):
        if not mask.any():
            levels = "; ".join(
                f"{f} has {', '.join(exp.levels[f])}" for f in labels[name] if f in exp.levels
            )
            raise NoData(
                f"group {name.upper()} ({_filter_text(labels[name], seeds[name])}) matches no "
                f"trial{scope}" + (f" (the trials' levels: {levels})" if levels else "")
            )
    if (in_a & in_b).any():
        raise NoData("a and b select the same trials (they must differ in some factor or seeds)")
    chosen = t[in_a | in_b]
    values = trial_values(exp, chosen, metric)
    named = set(labels["a"]) | set(labels["b"]) | set(shape.by) | {shape.over}
    # the factors held equal; one with a single level among these trials names no stratum
    other = [f for f in exp.factors if f not in named and chosen[exp.fcol(f)].nunique() > 1]
    frame = pd.DataFrame(
        {
            "value": values,
            "group": np.where(in_a[chosen.index], "a", "b"),
            "seed": chosen["seed"],
            "stratum": _strata(exp, chosen, other),
            "run_id": chosen["run_id"],
        },
        index=chosen.index,
    )
    if shape.by:
        frame["by"] = chosen[exp.fcol(shape.by_factor)]  # type: ignore[arg-type]
    if shape.over is not None:
        frame["over"] = chosen[exp.fcol(shape.over)].map(level_number).astype(float)
    notes: list[str] = []
    frame = frame.dropna(subset=["seed"])
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


# -- metric values, and the failed trials ---------------------------------------------------------
ITT_CHANCE = "chance"  # a failed trial scores chance accuracy
ITT_WORST = "worst"  # a failed trial scores the worst value seen among the claim's trials
ITT: dict[str, str] = {
    "test_acc": ITT_CHANCE,
    "test_loss": ITT_WORST,
    "final_train_loss": ITT_WORST,
}


def _as_data(
    exp: Experiment,
    result: ClaimResult,
    metric: Metric,
    frame: pd.DataFrame,
    notes: list[str],
    shape: _Shape | None = None,
) -> _Measured:
    """The matched frame as ``ClaimData``: failed trials filled by ``ITT`` (with the complete
    cases kept for the second analysis) or, for a metric without a natural failure value, left
    out and counted; an interaction or curve claim's trials then reshaped to one value per arm,
    seed and stratum (``_reshape``)."""
    shape = shape or _Shape({}, None, math.nan)
    run_ids = set(frame["run_id"])
    missing = frame["value"].isna()
    n_missing = int(missing.sum())
    itt = ""
    complete = None
    how = None
    complete_frame = frame
    if n_missing:
        counts = frame[missing].groupby("group").size()
        parts = [f"{int(counts.get(g, 0))} of {g.upper()}" for g in ("a", "b") if counts.get(g)]
        how = ITT.get(metric.name) if metric.kind == "continuous" else None
        if how is not None:
            complete_frame = _reshape(frame[~missing], shape)
            fill = _itt_value(exp, frame, how, metric)
            frame = frame.assign(value=frame["value"].fillna(fill))
            itt = (
                f"{plural(n_missing, 'trial')} ({join_and(parts)}) had no finite "
                f"{metric.name} (they failed) and enter as "
                + ("chance accuracy" if how == ITT_CHANCE else "the worst value seen")
                + f" ({fill:.4g}), intention to treat"
            )
        else:
            notes.append(
                f"{plural(n_missing, 'trial')} ({join_and(parts)}) had no finite value of "
                f"{metric.name} and were left out (the metric has no value for a failure)"
            )
            frame = frame[~missing]
    for g in ("a", "b"):
        if not (frame["group"] == g).any():
            raise NoData(f"no trial of group {g.upper()} has a value of {metric.name}")
    frame = _reshape(frame, shape)
    if frame.empty:
        raise NoData(shape.empty_reason() if not shape.plain else "no matched values")
    strata = list(dict.fromkeys(frame["stratum"]))
    data = _claim_data(result, frame, strata)
    if n_missing and how is not None:
        complete = _claim_data(result, complete_frame, strata) if len(complete_frame) else None
    evidence = []
    for j, s in enumerate(strata):
        sel = data.stratum == j
        va, vb = data.value[sel & data.arm], data.value[sel & ~data.arm]
        evidence.append(
            Stratum(
                s,
                float(va.mean()) if va.size else math.nan,
                float(vb.mean()) if vb.size else math.nan,
                int(va.size),
                int(vb.size),
            )
        )
    result = replace(
        result, verdict=cs.INCONCLUSIVE, notes=notes, missing=n_missing, itt=itt, evidence=evidence
    )
    if complete is not None and (not complete.arm.any() or complete.arm.all()):
        complete = None
    return _Measured(result, data, complete, strata, run_ids)


def _reshape(frame: pd.DataFrame, shape: _Shape) -> pd.DataFrame:
    """A plain claim's trials as they are; an interaction's as one row per seed, stratum and
    arm, where arm A holds the A-B difference of means at ``by``'s first level and arm B the
    one at its second (so the paired analysis of A-B is the difference of differences); a
    curve's as one row per arm, seed and stratum holding the curve's width in decades."""
    if shape.by:
        first, second = shape.by[shape.by_factor]  # type: ignore[index]
        means = frame.groupby(["seed", "stratum", "by", "group"])["value"].mean().unstack("group")
        if not {"a", "b"} <= set(means.columns):
            return frame.iloc[0:0]
        diff = (means["a"] - means["b"]).unstack("by")
        if first not in diff or second not in diff:
            return frame.iloc[0:0]
        diff = diff[[first, second]].dropna().reset_index()
        arms = [
            diff.assign(value=diff[level], group=g) for level, g in ((first, "a"), (second, "b"))
        ]
        out = pd.concat(arms, ignore_index=True)[["value", "group", "seed", "stratum"]]
        return out.assign(run_id="")
    if shape.over is not None:
        # each level stands for the mean spacing of the grid's levels in decades (half a decade
        # for 1e-5, 3e-5, 1e-4, ...: log10(3) and log10(10/3) alternate)
        grid = np.unique(np.log10(frame["over"][frame["over"] > 0]))
        step = float((grid[-1] - grid[0]) / (grid.size - 1)) if grid.size > 1 else math.nan
        rows = []
        for (group, seed, stratum), g in frame.groupby(["group", "seed", "stratum"]):
            curve = g.groupby("over")["value"].mean()
            if len(curve) < 2 or not np.isfinite(curve).any():
                continue
            near = curve >= curve.max() - shape.within
            rows.append((float(near.sum()) * step, group, seed, stratum))
        return pd.DataFrame(rows, columns=["value", "group", "seed", "stratum"]).assign(run_id="")
    return frame


def _claim_data(result: ClaimResult, frame: pd.DataFrame, strata: list[str]) -> cs.ClaimData:
    code = {s: j for j, s in enumerate(strata)}
    return cs.ClaimData(
        kind=result.kind,
        predict=result.predict,
        margin=result.margin,
        value=frame["value"].to_numpy(dtype=float),
        arm=(frame["group"] == "a").to_numpy(),
        stratum=frame["stratum"].map(code).to_numpy(dtype=int),
        seed=frame["seed"].to_numpy(dtype=np.int64),
        id=result.id,
        control=result.control,
    )


def _itt_value(exp: Experiment, frame: pd.DataFrame, how: str, metric: Metric) -> float:
    """A failed trial's value: chance accuracy, or the worst loss seen (at least chance's)."""
    classes = [(exp.records.get(r) or {}).get("num_classes") for r in frame["run_id"].tolist()]
    known = [int(c) for c in classes if c]
    if how == ITT_CHANCE:
        return 1.0 / max(known) if known else 0.0
    finite = frame["value"][np.isfinite(frame["value"].astype(float))]
    worst = float(finite.max()) if len(finite) else math.nan
    chance_loss = math.log(max(known)) if known else math.nan
    return float(np.nanmax([worst, chance_loss]))


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
    out = steps.where(t["outcome"] == OutcomeLabel.CONVERGED)
    missed = t["outcome"].isin(OUTCOMES) & (t["outcome"] != OutcomeLabel.CONVERGED)
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


def claim_data(exp: Experiment, claims: Sequence[Mapping[str, Any]]) -> list[cs.ClaimData]:
    """The real audit's claims as ``ClaimData`` (those with data), for ``calibrate``'s
    relabelling of the recorded audit."""
    return [m.data for m in (measure(exp, c) for c in claims) if m.data is not None]


__all__ = [
    "ClaimResult",
    "NoData",
    "Stratum",
    "claim_data",
    "declared_claims",
    "evaluate_claims",
    "loss_roughness",
    "measure",
    "resolved_suite",
    "seed_mask",
    "trial_values",
    "verdict_rows",
]
