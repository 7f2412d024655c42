"""What the sections of one report share, decided once: the ``ReportContext``.

Every choice more than one section depends on (which factors the heatmaps use, which factor the
curves split by, which thresholds applied) is made here, once, so no two sections can disagree;
and the per-cell table, the costliest shared number, is computed once instead of per section.
Sections only read the context; none of them chooses anything another one also needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from gradatlas.reports import stats
from gradatlas.reports.fmt import join_and
from gradatlas.reports.load import Experiment, second_best

if TYPE_CHECKING:
    from gradatlas.reports.plan_status import PlanStatus
    from gradatlas.reports.steer import Steering

# The heatmaps' default axes, as the README documents them; a suite without them gets others.
DEFAULT_HEATMAP_FACTORS = ("depth", "activation")
MAX_FACETS = 12  # more small multiples than this are unreadable; extra factors are pooled
MAX_CURVE_FACETS = 6


@dataclass(frozen=True)
class HeatChoice:
    """Which factors the outcome heatmaps put on rows, columns and facets, and why."""

    rows: str | None
    cols: str
    facets: list[str]
    pooled: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CurveChoice:
    """The factor drawn as one line per level in the curves, the one drawn as one row of panels
    per level, and the notes that say where a request could not be honoured."""

    factor: str | None
    facet: str | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReportContext:
    """Everything the sections of one report read: the experiment and what was decided for it.

    ``cells`` is ``stats.cell_table(exp)`` (one row per cell, in level order); ``varying`` the
    factors with at least two levels (the only ones that can show an effect); ``thresholds``
    those of the newest trial (Methods lists every set when they differ).
    """

    exp: Experiment
    built_at: datetime
    cells: pd.DataFrame
    varying: list[str]
    heat: HeatChoice | None
    curves: CurveChoice
    thresholds: dict[str, Any]
    accuracy_key: str | None
    steering: Steering | None = None  # the report's --by/--facet/--where/--cell/--limit
    steering_text: str = ""  # what the report says it was steered by ("" when it was not)
    named_cells: list[str] = field(default_factory=list)  # cell ids named with --cell
    plan: PlanStatus | None = None  # the plan's finished/pending/failed/RUNNING counts
    # ``exp`` with the trials run at a tuning study's second-best value (``tune_rank`` 2): the
    # claims' robustness family reads them; every other section shows ``exp``, without them,
    # so a cell's rates are those at its tuned value. None: same as ``exp``.
    with_second_best: Experiment | None = None

    @property
    def claims_exp(self) -> Experiment:
        """The experiment the claims audit reads (second-best trials included)."""
        return self.with_second_best if self.with_second_best is not None else self.exp

    @property
    def levels(self) -> dict[str, list[str]]:
        """Each factor's level labels, in the order the report shows them."""
        return self.exp.levels


def make_context(
    exp: Experiment,
    *,
    heatmap_factors: Sequence[str] = DEFAULT_HEATMAP_FACTORS,
    curve_factor: str | None = None,
    built_at: datetime | None = None,
    steering: Steering | None = None,
    plan: PlanStatus | None = None,
) -> ReportContext:
    """Decide everything once. ``heatmap_factors`` = (rows, columns) wanted for the heatmaps;
    ``curve_factor`` = the factor with one line per level in the curves (default: the heatmaps'
    column factor). ``steering`` (``gradatlas report --by/--facet/--where/--cell/--limit``)
    restricts the experiment to the trials it selects, puts ``--by`` on the heatmaps' columns
    and the curves' colours and ``--facet`` on both panel splits; ``plan`` is the plan's state
    (``plan_status.read_plan_status``), shown when something is not finished."""
    full = exp
    named: list[str] = []
    text = ""
    if steering is not None and steering.active:
        from gradatlas.reports.steer import steer_experiment, steering_text

        exp, named = steer_experiment(exp, steering)
        text = steering_text(steering, full, exp)
    by = steering.by if steering else None
    facet = steering.facet if steering else None
    with_second = exp
    exp = without_second_best(exp)
    var = varying_factors(exp)
    wanted = tuple(heatmap_factors)
    if by:  # --by on the columns; the rows: the first default axis left, else the largest
        wanted = (next((f for f in wanted if f not in (by, facet) and f in var), ""), by)
        wanted = tuple(f for f in wanted if f)
    heat = choose_heat(exp, var, wanted, facet=facet)
    if by and heat is not None and heat.rows == by:  # the row axis was filled first
        heat = replace(heat, rows=heat.cols, cols=by)
    return ReportContext(
        exp=exp,
        built_at=built_at or datetime.now(UTC),
        cells=stats.cell_table(exp),
        varying=var,
        heat=heat,
        curves=choose_curves(exp, var, by or curve_factor, heat, facet=facet),
        thresholds=newest_thresholds(exp),
        accuracy_key=stats.accuracy_key(exp),
        steering=steering if steering is not None and steering.active else None,
        steering_text=text,
        named_cells=named,
        plan=plan,
        with_second_best=with_second if with_second is not exp else None,
    )


def without_second_best(exp: Experiment) -> Experiment:
    """``exp`` without the trials run at a study's second-best value (itself when none)."""
    second = second_best(exp.trials)
    return replace(exp, trials=exp.trials[~second]) if second.any() else exp


def varying_factors(exp: Experiment) -> list[str]:
    """Factors with at least two levels in the data: the only ones that can show an effect."""
    return [f for f in exp.factors if len(exp.levels[f]) >= 2]


def newest_thresholds(exp: Experiment) -> dict[str, Any]:
    """The thresholds of the newest trial that recorded them."""
    for record in reversed(list(exp.records.values())):
        th = (record.get("outcome") or {}).get("thresholds")
        if th:
            return th
    return {}


def choose_heat(
    exp: Experiment, var: list[str], wanted: tuple[str, ...], facet: str | None = None
) -> HeatChoice | None:
    """The requested pair where the suite varies it; otherwise the factors with most levels.
    The remaining factors become facets while the panels stay readable, then are pooled.
    ``facet`` (``--facet``) is never an axis and always the first facet, however many levels."""
    if facet in var and any(f != facet for f in var):
        wanted = tuple(f for f in wanted if f != facet)
        var = [f for f in var if f != facet]
    else:
        facet = None
    present = [f for f in dict.fromkeys(wanted) if f in var]
    notes = []
    missing = [f for f in dict.fromkeys(wanted) if f not in var]
    fill = sorted((f for f in var if f not in present), key=lambda f: -len(exp.levels[f]))
    chosen = (present + fill)[:2]
    if missing and var:
        used = [f for f in chosen if f not in present]
        notes.append(
            f"The heatmaps were asked for {' x '.join(wanted)}, but "
            f"{join_and(missing)} {'is' if len(missing) == 1 else 'are'} not a varying factor "
            f"of this suite" + (f"; they use {join_and(used)} instead." if used else ".")
        )
    if not chosen:
        return None
    rows, cols = (chosen[0], chosen[1]) if len(chosen) == 2 else (None, chosen[0])
    rest = [f for f in var if f not in chosen]
    facets, pooled, count = ([facet], [], len(exp.levels[facet])) if facet else ([], [], 1)
    for f in rest:
        if count * len(exp.levels[f]) <= MAX_FACETS:
            facets.append(f)
            count *= len(exp.levels[f])
        else:
            pooled.append(f)
    if pooled:
        notes.append(
            f"Faceting by every remaining factor would need more than {MAX_FACETS} panels; the "
            f"heatmaps pool over {join_and(pooled)} (each square counts all its trials)."
        )
    return HeatChoice(rows, cols, facets, pooled, notes)


def choose_curves(
    exp: Experiment,
    var: list[str],
    requested: str | None,
    heat: HeatChoice | None,
    facet: str | None = None,
) -> CurveChoice:
    """Lines per level of the requested factor (default: the heatmaps' column factor), panels
    per level of the heatmaps' row factor: the curves then read like the heatmaps above them.
    A requested ``facet`` (``--facet``) gives the rows of panels instead, up to ``MAX_FACETS``."""
    notes = []
    factor = None
    if requested:
        if requested in var:
            factor = requested
        else:
            notes.append(
                f"Curves were asked per level of {requested}, which is not a varying "
                "factor of this suite."
            )
    if factor is None:
        factor = heat.cols if heat else (var[0] if var else None)
        if requested and factor:
            notes[-1] += f" They are drawn per {factor} instead."
    if facet in var and facet != factor:
        if len(exp.levels[facet]) > MAX_FACETS:
            notes.append(f"{facet} has more than {MAX_FACETS} levels; curves pool over it.")
            facet = None
        return CurveChoice(factor, facet, notes)
    facet = heat.rows if heat and heat.rows and heat.rows != factor else None
    if facet and len(exp.levels[facet]) > MAX_CURVE_FACETS:
        notes.append(f"{facet} has more than {MAX_CURVE_FACETS} levels; curves pool over it.")
        facet = None
    return CurveChoice(factor, facet, notes)
