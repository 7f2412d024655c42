"""A paper's headline numbers beside what our scaled-down analogue measured.

A ``Headline`` is one number a paper reports (its value, where it stands in the paper), the
measure that reads the same quantity off our trials (``Rate``, ``Ratio``, ``Growth``: small
objects, each one way of selecting trials and summarising them) and the ``Rule`` that says
whether the two agree. ``literature.PAPERS`` lists each paper's headlines as metadata on its
entry; ``headline_blocks`` renders them as the "paper vs ours" table.

Measures name levels as the suite's grid writes them (``{depth: 30, init: xavier_normal}``),
resolved through the claims' own ``filter_labels``, so a headline and a claim cannot disagree
about which trials a level means. The statistics are ``litstats``'s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from gradatlas.record import OutcomeLabel
from gradatlas.reports import litstats
from gradatlas.reports.document import Block, Cell, Column, Para, Table
from gradatlas.reports.fmt import num, pct, plural
from gradatlas.reports.litstats import Estimate, Rule
from gradatlas.reports.load import Experiment
from gradatlas.suites.claims import METRICS, filter_labels

# What "trained" means wherever the literature section counts it: the outcome rules' converged
# or unconverged, i.e. the net learned, and neither stalled at chance, nor vanished, died,
# diverged or exploded (the claims' trainable_rate).
TRAINED = METRICS["trainable_rate"].outcomes

_NO_DATA = Estimate(math.nan, math.nan, math.nan, "no such trials")


class Measure(Protocol):
    """Reads one number, with its 95% interval, off an experiment's trials."""

    def __call__(self, exp: Experiment) -> Estimate: ...


def select(exp: Experiment, filters: Mapping[str, list[str]]) -> pd.DataFrame:
    """The trials whose levels are in ``filters`` (factor -> labels) for every factor named."""
    t = exp.trials
    mask = pd.Series(True, index=t.index)
    for factor, labels in filters.items():
        mask &= t[exp.fcol(factor)].isin(labels)
    return t[mask]


def trials_at(exp: Experiment, filters: Mapping[str, Any]) -> pd.DataFrame | None:
    """The trials at ``filters`` (factor -> level as the grid writes it, or a list of levels);
    None when a factor is not varied or a level cannot be read."""
    labels, problems = filter_labels(dict(filters), exp.levels, in_plan=False)
    return None if problems else select(exp, labels)


@dataclass(frozen=True)
class Rate:
    """The share of the trials at ``where`` whose outcome is in ``outcomes`` (Wilson CI)."""

    where: Mapping[str, Any]
    outcomes: tuple[str, ...] = TRAINED

    def __call__(self, exp: Experiment) -> Estimate:
        t = trials_at(exp, self.where)
        if t is None or t.empty:
            return _NO_DATA
        return litstats.rate_estimate(t["outcome"].isin(self.outcomes).to_list())


@dataclass(frozen=True)
class Ratio:
    """mean(metric at ``a``) / mean(metric at ``b``), bootstrap CI. ``metric`` is a claims
    metric read as the claims read it (``claimeval.trial_values``: steps to target counts a
    trial that missed as one step more than the longest run among both groups, a lower bound
    on its true steps, so a ratio below 1 is if anything understated). ``complement``: compare
    1 - value (test error from test accuracy)."""

    metric: str
    a: Mapping[str, Any]
    b: Mapping[str, Any]
    complement: bool = False

    def __call__(self, exp: Experiment) -> Estimate:
        from gradatlas.reports.claimeval import NoData, trial_values

        ta, tb = trials_at(exp, self.a), trials_at(exp, self.b)
        if ta is None or tb is None or ta.empty or tb.empty:
            return _NO_DATA
        both = pd.concat([ta, tb])
        try:
            values = trial_values(exp, both, METRICS[self.metric])
        except NoData as exc:
            return Estimate(math.nan, math.nan, math.nan, str(exc))
        if self.complement:
            values = 1.0 - values
        va, vb = values.iloc[: len(ta)], values.iloc[len(ta) :]
        est = litstats.ratio_estimate(va.to_numpy(float), vb.to_numpy(float))
        if self.metric != "steps_to_target":
            return est
        reached = [int((t["outcome"] == OutcomeLabel.CONVERGED).sum()) for t in (ta, tb)]
        note = f"; reached the target: {reached[0]}/{len(ta)} vs {reached[1]}/{len(tb)}"
        if reached[1] < len(tb):
            note += " (a miss counted as the budget + 1: the ratio is an upper bound)"
        return dataclasses.replace(est, basis=est.basis + note)


@dataclass(frozen=True)
class Growth:
    """The per-layer growth factor of ``metric`` (a ratio that grows like g^depth) among the
    trials at ``where`` with depth >= ``min_depth``, raised to ``power`` (2: of the squared
    norm, the quantity mean-field theory tracks)."""

    where: Mapping[str, Any]
    metric: str = "init_grad_ratio"
    power: float = 2.0
    min_depth: int = 1

    def __call__(self, exp: Experiment) -> Estimate:
        t = trials_at(exp, self.where)
        if t is None or t.empty or self.metric not in t or "depth" not in exp.factors:
            return _NO_DATA
        depth = pd.to_numeric(t[exp.fcol("depth")].str.lstrip("d"), errors="coerce")
        keep = depth >= self.min_depth
        values = pd.to_numeric(t[self.metric], errors="coerce")
        return litstats.growth_estimate(
            depth[keep].to_numpy(float), values[keep].to_numpy(float), self.power
        )


@dataclass(frozen=True)
class Headline:
    """One number of the paper, and ours.

    ``quantity`` says what is compared (in our analogue's terms), ``paper`` is the paper's value
    and ``paper_text`` how the paper states it, with ``source`` (figure, table, section).
    ``percent``: shown as a percentage (rates)."""

    quantity: str
    paper: float
    paper_text: str
    source: str
    measure: Measure = field(compare=False)
    rule: Rule
    percent: bool = False

    def show(self, x: float) -> str:
        return pct(x) if self.percent else num(x)


@dataclass(frozen=True)
class Compared:
    """A headline evaluated on an experiment."""

    headline: Headline
    ours: Estimate
    agrees: bool
    why: str  # why not, when they do not agree


def compare(exp: Experiment, headlines: tuple[Headline, ...]) -> list[Compared]:
    out = []
    for h in headlines:
        ours = h.measure(exp)
        out.append(Compared(h, ours, *h.rule.judge(h.paper, ours)))
    return out


def headline_blocks(exp: Experiment, headlines: tuple[Headline, ...]) -> list[Block]:
    """How many of the paper's numbers ours agree with, then the table."""
    compared = compare(exp, headlines)
    agree = sum(c.agrees for c in compared)
    return [
        Para(
            f"Paper vs ours: this analogue agrees with {agree} of the paper's "
            f"{plural(len(compared), 'headline number')} by the rule stated on each row."
        ),
        headline_table(compared),
    ]


def headline_table(compared: list[Compared]) -> Table:
    """The paper's numbers, ours with 95% CIs, and whether they agree by each row's rule."""
    rows, row_attrs = [], []
    for c in compared:
        h, ours = c.headline, c.ours
        ci = f"[{h.show(ours.lo)}, {h.show(ours.hi)}]" if ours.has_interval else "no CI"
        rows.append(
            [
                Cell(h.quantity),
                Cell(f"{h.paper_text} ({h.source})"),
                Cell(f"{h.show(ours.value)} {ci}", attrs={"value": ours.value}),
                Cell(ours.basis),
                Cell(h.rule.text),
                Cell("yes" if c.agrees else f"no: {c.why}"),
            ]
        )
        row_attrs.append({"agrees": "yes" if c.agrees else "no"})
    return Table(
        [
            Column("quantity", weight=1.9),
            Column("paper", weight=2.0),
            Column("ours [95% CI]", "right", 1.3),
            Column("on", weight=1.0),
            Column("agreement rule", weight=1.4),
            Column("agrees", weight=0.8),
        ],
        rows,
        name="literature-headlines",
        row_attrs=row_attrs,
        caption="The paper's headline numbers beside what this scaled-down analogue measured "
        "(95% intervals: Wilson for rates, a bootstrap over each group's seeds for ratios, the "
        "least-squares slope's t interval for growth per layer). Rule 'inside': the paper's "
        "value lies in our interval, for a quantity that should carry over. Rule 'side': our "
        "whole interval lies on the paper's side of the no-effect value, for one whose size "
        "depends on the paper's data and scale (a different dataset, width and budget here); "
        "a 'no' there is also what too few seeds give.",
    )
