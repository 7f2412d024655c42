"""The report's Claims section: the audit ``claimeval`` computes, rendered.

Findings and controls in their own tables (a control is an A/A comparison whose verdict must
come out inconclusive: it checks the machinery, it is no finding), the evidence per stratum, each
claim in full with its scope and power, and the rule and tests behind the verdicts, printed from
the code that applies them (``claimstats.VERDICT_RULE_SEED``), with the calibration that measured
that rule (``gradatlas calibrate``) when its output is found.
"""

from __future__ import annotations

import math
import textwrap
from functools import partial
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure as MplFigure

from gradatlas.reports import claimstats as cs
from gradatlas.reports import figures
from gradatlas.reports.claimeval import (
    ClaimResult,
    NoData,
    Stratum,
    declared_claims,
    evaluate_claims,
    loss_roughness,
    measure,
    trial_values,
)
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
from gradatlas.suites.claims import METRICS

VERDICT_COLORS = {
    cs.SUPPORTED: figures.OUTCOME_COLORS["converged"],
    cs.REFUTED: figures.OUTCOME_COLORS["exploded"],
    cs.INCONCLUSIVE: figures.OUTCOME_COLORS["unconverged"],
    cs.NO_DATA: figures.OUTCOME_COLORS["stalled"],
    cs.DEPENDS: figures.OUTCOME_COLORS["vanished"],
    cs.DEPENDS_ON_DATASET: figures.OUTCOME_COLORS["vanished"],
}
SHORT_SOURCE = 16
PANEL_COLS = 4


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
        return claims_blocks(evaluate_claims(ctx.claims_exp, claims), ctx.exp.name)


def claims_blocks(results: list[ClaimResult], experiment: str = "") -> list[Block]:
    findings = [r for r in results if not r.control]
    controls = [r for r in results if r.control]
    counts = {v: sum(r.verdict == v for r in findings) for v in cs.VERDICTS_ALL}
    parts = [f"{counts[v]} {v}" for v in cs.VERDICTS_ALL if counts[v]]
    under = sum(r.underpowered for r in findings)
    blocks: list[Block] = [
        Para(
            f"The suite puts {plural(len(findings), 'claim')} to the test: {join_and(parts)}"
            + (f" ({under} of the inconclusive underpowered)" if under else "")
            + ". Each compares a metric between two groups of trials, matched on every other "
            "factor, with the seed as the unit of replication; the rule and the tests are "
            "stated below the table."
        ),
        claims_table(findings),
    ]
    if controls:
        ok = sum(r.verdict == cs.INCONCLUSIVE for r in controls)
        blocks.append(
            Para(
                f"Controls ({ok} of {len(controls)} inconclusive, as they must be): A/A "
                "comparisons of the same cells, split by seed, put through the same rule in a "
                "Holm family of their own (so that a control can fail). A control that comes "
                "out supported or refuted found an effect where there is none: by chance (each "
                "family errs at most 5% of the time) or because the rule is miscalibrated, which "
                "`gradatlas calibrate` measures. These rows are checks, not findings."
            )
        )
        blocks.append(
            claims_table(
                controls,
                name="claims-controls",
                caption="One row per control, as in the table above; p is Holm-adjusted over "
                "the controls' own family.",
            )
        )
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
                "grows with the trials in it. Above the diagonal, A is higher. Equal claims "
                "shade the band within their margin.",
            )
        )
    blocks.append(KeyValues([(r.id, _details(r)) for r in results]))
    blocks.append(Heading("How the claims are judged"))
    blocks.append(Para(methods_text()))
    blocks.append(Para(cs.VERDICT_RULE_SEED))
    blocks += calibration_blocks(experiment)
    return blocks


def calibration_blocks(experiment: str = "") -> list[Block]:
    """The calibration of the rule (``gradatlas calibrate``): its chart and what it measured,
    the recorded audit relabelled (``calibrate --audit``) where it was, or one line saying how
    to produce them."""
    from gradatlas.reports import calibrate

    path = calibration_path()
    rows = calibrate.load_calibration(path) if path is not None else None
    blocks: list[Block] = []
    if not rows:
        blocks.append(
            Para(
                "Calibration: not measured on this machine yet. `make calibrate` (or "
                "`gradatlas calibrate`) simulates null audits shaped like this one and counts "
                "the wrong verdicts of this rule and of the rule it replaced.",
                note=True,
            )
        )
    else:
        new = [r for r in rows if r.get("rule") == "new" and r.get("familywise_error") is not None]
        worst = max((float(r.get("ci_high") or 0) for r in new), default=math.nan)
        blocks.append(
            Figure(
                name="claims-calibration",
                draw=partial(calibrate.calibration_chart, rows=rows),
                size=(figures.WIDTH, 0.9 + 0.32 * len({r["scenario"] for r in rows})),
                caption=f"Calibration ({path}): in simulated audits with no effect, the share "
                "with at least one wrong verdict (familywise error) per scenario, with its 95% "
                "interval, for the rule these verdicts use (new) and the one it replaced (old); "
                f"the dashed line is alpha = {cs.ALPHA}. Highest upper bound of the new rule: "
                f"{worst:.3f}. The scenarios and power are in calibration.md beside it.",
            )
        )
    relabelled = _relabelled(experiment)
    if relabelled:
        blocks.append(Para(relabelled))
    return blocks


def _relabelled(experiment: str) -> str:
    """One sentence on ``relabel-<experiment>.json`` (``calibrate --audit``), if it exists."""
    import json

    from gradatlas.reports.calibrate import DEFAULT_OUT

    path = DEFAULT_OUT / f"relabel-{experiment}.json"
    if not experiment or not path.is_file():
        return ""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    parts = []
    for family in ("findings", "controls"):
        rules = (data.get(family) or {}).get("rules") or {}
        for rule in ("new", "old"):
            r = rules.get(rule)
            if r:
                parts.append(
                    f"{family}, {rule} rule: {r['false_verdict_rate']:.3f} "
                    f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
                )
    if not parts:
        return ""
    n = (data.get("findings") or data.get("controls") or {}).get("permutations", "?")
    return (
        f"The recorded audit relabelled ({path}): the arms of every claim redrawn at random "
        f"{n} times with each seed's trials kept together, so every difference is chance; the "
        "share of relabelled audits with at least one false verdict, per Holm family: "
        + "; ".join(parts)
        + "."
    )


def calibration_path() -> Any:
    """``runs/calibration/calibration.json`` under the working directory, if it exists."""

    from gradatlas.reports.calibrate import DEFAULT_OUT

    path = DEFAULT_OUT / "calibration.json"
    return path if path.is_file() else None


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""


def claims_table(
    results: list[ClaimResult], name: str = "claims", caption: str | None = None
) -> Table:
    """One row per claim, its text in full (the PDF wraps a cell, never cuts it); with a
    column of each dataset's own verdict beside the overall one when any claim has them."""
    by_dataset = any(r.per_dataset for r in results)
    rows, attrs = [], []
    for r in results:
        colour = VERDICT_COLORS.get(r.verdict, VERDICT_COLORS[cs.DEPENDS])
        word = r.verdict + (" (underpowered)" if r.underpowered else "")
        row = [
            Cell(r.id),
            Cell(" ".join(r.text.split())),
            Cell(f"{r.metric} {_predict_symbol(r.predict)}"),
            Cell(word, {"verdict": r.verdict}, (*to_rgb(colour), 0.35)),
            Cell(_unbroken(effect_text(r))),
            Cell(_unbroken(p_text(r))),
            Cell(_unbroken(mde_text(r))),
            Cell(str(r.n_seeds) if r.has_data else "–"),
        ]
        if by_dataset:
            verdicts = {d: one.verdict for d, one in r.per_dataset.items()}
            row.insert(4, Cell(_per_dataset_text(verdicts), {"verdicts": _attr_pairs(verdicts)}))
        rows.append(row)
        attrs.append(
            {
                "claim": r.id,
                "verdict": r.verdict,
                "control": str(r.control).lower(),
                "effect": _g(r.effect),
                "lo": _g(r.lo),
                "hi": _g(r.hi),
                "p": _g(r.p),
                "p-adjusted": _g(r.p_adjusted),
                "homogeneity-p": _g(r.homogeneity_p),
                "mde": _g(r.mde),
                "n-a": r.n_a,
                "n-b": r.n_b,
                "n-seeds": r.n_seeds,
                "strata": r.strata,
                "missing": r.missing,
            }
        )
    columns = [
        Column("id", weight=0.5),
        Column("claim", weight=2.0),
        Column("metric", weight=1.4),
        Column("verdict", weight=1.0),
        Column("effect A − B [95%]", "right", 1.6),
        Column("p Holm (raw)", "right", 1.0),
        Column("MDE 80%", "right", 0.8),
        Column("seeds", "right", 0.5),
    ]
    caption = (
        caption
        or "One row per claim: the effect is A minus B (rates: risk difference in percentage "
        "points; strata weighted equally), with its 95% interval (the test inverted); p is "
        "two-sided over seeds, Holm-adjusted over one family (raw in parentheses); for equal "
        "claims it is the equivalence test's (TOST) against the margin shown. MDE: the "
        "smallest effect this design detects with 80% power at Holm's strictest level. seeds: "
        "the unit of replication. Homogeneity across strata, trials per group and failed "
        "trials: in the details below."
    )
    if by_dataset:
        columns.insert(4, Column("per dataset", weight=1.4))
        caption += (
            " Per dataset: the claim judged on each dataset's trials alone (– where it ran on "
            "one); the overall verdict is theirs where they agree."
        )
    return Table(columns, rows, name=name, row_attrs=attrs, caption=caption)


def _g(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6g}"


def _unbroken(text: str) -> str:
    """A number and its unit kept on one line where a table cell wraps ("+12.5 pp")."""
    return text.replace(" pp", "\u00a0pp")


def _per_dataset_text(verdicts: dict[str, str]) -> str:
    """ "mnist1d: supported · digits: inconclusive" (each pair kept on one line), or "–"."""
    return " · ".join(f"{d}:\u00a0{v}" for d, v in verdicts.items()) or "–"


def _attr_pairs(verdicts: dict[str, str]) -> str:
    return ";".join(f"{d}={v}" for d, v in verdicts.items())


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
        return f"{p_value(r.p_adjusted)} ({p_value(r.p)}) ±{_margin_text(r)}"
    return f"{p_value(r.p_adjusted)} ({p_value(r.p)})"


def mde_text(r: ClaimResult) -> str:
    if not r.has_data:
        return "–"
    if not math.isfinite(r.mde):
        return "∞"
    return f"{100 * r.mde:.0f} pp" if r.kind == "rate" else _num(r.mde)


def _margin_text(r: ClaimResult) -> str:
    m = r.margin or 0.0
    return f"{100 * m:g} pp" if r.kind == "rate" else f"{m:g}"


def _details(r: ClaimResult) -> str:
    """The claim in full: its text and source, what it predicts of which groups, the metric
    (with its unit), its scope and power, the strata of a 'depends', what failed and how it
    entered, and what was dropped or is missing."""
    metric = METRICS.get(r.metric)
    words = {"greater": "greater than", "less": "less than", "equal": "equal to"}
    parts = [("Control. " if r.control else "") + _sentence(" ".join(r.text.split()))]
    if r.source:
        parts.append(_sentence(f"Source: {r.source}"))
    margin = f" (within ±{_margin_text(r)})" if r.predict == "equal" and r.margin else ""
    parts.append(
        f"Predicts {r.metric} of A {words.get(r.predict, r.predict)} B{margin}; {r.groups}."
    )
    if metric is not None:
        parts.append(f"{r.metric} ({metric.unit}): {metric.description}.")
    if r.scope:
        parts.append(_sentence(f"Scope: {r.scope}"))
    if not r.has_data:
        parts.append(f"No data: {r.reason}.")
    else:
        power = (
            "no effect is detectable at Holm's strictest level with these seeds"
            if not math.isfinite(r.mde)
            else f"detects |effect| >= {mde_text(r)} with 80% power"
        )
        parts.append(
            _sentence(
                f"Design: {r.design}, {r.n_seeds} seeds ({r.n_a} trials in A, {r.n_b} in B, "
                f"{plural(r.strata, 'stratum', 'strata')}); {power}"
                + (
                    " (underpowered: a meaningful effect could have been missed)"
                    if r.underpowered
                    else ""
                )
            )
        )
        if math.isfinite(r.homogeneity_p):
            parts.append(
                f"Homogeneity across strata: p = {p_value(r.homogeneity_p)} "
                f"(Holm {p_value(r.homogeneity_p_adjusted)})."
            )
        if r.verdict == cs.DEPENDS:
            parts.append(
                f"Depends: holds in {join_and(r.holds_in)}; reversed in {join_and(r.reversed_in)}."
            )
        if r.itt:
            parts.append(_sentence(r.itt))
    if r.robustness is not None:
        parts.append(f"At 2nd-best lr: {_robust_text(r.robustness)}.")
    parts += [_sentence(n) for n in r.notes]
    return " ".join(parts)


def _robust_text(r: ClaimResult) -> str:
    """The claim re-judged at the tuned arms' second-best lr: its verdict (effect, p Holm)."""
    if not r.has_data:
        return r.verdict
    return f"{r.verdict} (effect {effect_text(r)}, p {p_value(r.p_adjusted)})"


def methods_text() -> str:
    return (
        "How each claim is measured. The trials that pass the claim's where filter form group A "
        "(those that also pass a) and group B (those that pass b); an arm may also select "
        "seeds (even, odd or a list), which is how an A/A control splits the same cells. A "
        "stratum is one combination of levels of every factor that a and b do not name; only "
        "strata with trials in both groups are compared (matched), the others are dropped and "
        "counted. Every cell runs the same seeds, and trials of one seed share the data order "
        "and the init stream across strata and arms, so the seed is the unit of replication "
        "(Bouthillier et al. 2021; a cluster, not independent trials). When the arms share "
        "seeds, each seed's A - B difference is averaged over its strata (rates: its 0/1 "
        "outcomes), and the p-value is the two-sided sign-flip test over those per-seed "
        f"differences, exact up to {cs.EXACT_PAIRS} seeds, Monte Carlo above (up to "
        f"{cs.PERMUTATIONS:,} patterns, seed {cs.PERMUTATION_SEED}); when the arms use disjoint "
        "seeds, each seed's stratum-centred mean is one observation and the p-value permutes "
        "which seeds are A. The 95% interval inverts the same test (every shift of the mean "
        "it does not reject at 5%), so it excludes 0 exactly when p < 0.05 and is infinite "
        "where the seeds are too few for any rejection; for rates it is joined with the "
        "Mantel-Haenszel risk difference's MOVER-Wilson "
        "interval (Zou, Huang & Zhang 2009), which never collapses to a point when every "
        "trial shares one outcome. Homogeneity (the arm x stratum interaction): each seed's "
        "differences centred on their own mean, whole seeds sign-flipped as above, the "
        "statistic the sum over strata of the squared centred sum over its sum of squares; "
        "exact when A and B differ only by a shift. Metrics marked log10 compare log10 "
        "values; a margin is in the effect's unit (rates: 0.1 = 10 points). Failed trials "
        "are never dropped silently: rates count every labelled trial; test accuracy enters "
        "a failed trial at chance and losses at the worst value seen (intention to treat), "
        "with the complete-case verdict given where it differs; other continuous metrics "
        "count the trials left out. steps_to_target counts a trial that never reached the "
        "target as one step more than the longest run among the claim's trials."
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
        colour = VERDICT_COLORS.get(r.verdict, VERDICT_COLORS[cs.DEPENDS])
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
    """An axis label on as many lines as it takes: wrapped at spaces, never cut."""
    return "\n".join(textwrap.wrap(text, width, break_long_words=False) or [""])


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
