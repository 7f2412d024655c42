"""Experiment -> Document: the seven sections, in order, with the choices they share.

The choices made once here (which factors the heatmaps use, which factor the curves split by) are
passed to every section that depends on them, so the report never contradicts itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from gradatlas.reports import dynamics, outcomes, overview
from gradatlas.reports.document import Document
from gradatlas.reports.fmt import plural
from gradatlas.reports.load import Experiment

DEFAULT_HEATMAP_FACTORS = ("depth", "activation")


def build_document(
    exp: Experiment,
    *,
    heatmap_factors: Sequence[str] = DEFAULT_HEATMAP_FACTORS,
    curve_factor: str | None = None,
    built_at: datetime | None = None,
) -> Document:
    """The whole report as blocks. ``heatmap_factors`` = (rows, columns) of the outcome
    heatmaps; ``curve_factor`` = the factor with one line per level in the convergence curves
    (default: the heatmaps' column factor)."""
    built_at = built_at or datetime.now(UTC)
    heat = outcomes.choose_heat(exp, tuple(heatmap_factors))
    factor, facet, notes = dynamics.choose_curve_factor(exp, curve_factor, heat)
    sections = [
        overview.header(exp, built_at),
        outcomes.outcome_rates(exp, heat),
        dynamics.convergence(exp, factor, facet, notes),
        dynamics.gradients(exp, factor),
        outcomes.factor_effects(exp),
        outcomes.leaderboard(exp),
        overview.methods(exp),
    ]
    cells = exp.trials["cell_id"].nunique()
    subtitle = (
        f"{plural(len(exp.trials), 'trial')} in {plural(cells, 'cell')} · "
        f"MLflow experiment '{exp.name}' · built {built_at:%Y-%m-%d %H:%M} UTC"
    )
    footer = (
        "Built by gradatlas from the MLflow records alone; every number can be traced to a "
        "run in the experiment above."
    )
    return Document(f"gradatlas report: {exp.name}", subtitle, sections, footer)
