"""Experiment -> Document: the report's sections, in the one order they are shown and numbered.

A section is one object with a ``title`` and ``build(ctx)``, the blocks it shows, given the
``ReportContext`` that every section reads (so they never contradict each other). Its number is
its place in ``SECTIONS`` and nothing else: adding a section is one class and one entry below.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from gradatlas.reports import (
    claims,
    dynamics,
    literature,
    outcomes,
    overview,
    plan_status,
    sensitivity,
    tuning,
)
from gradatlas.reports.context import DEFAULT_HEATMAP_FACTORS, ReportContext, make_context
from gradatlas.reports.document import Block, Document, NumberedSection
from gradatlas.reports.fmt import plural
from gradatlas.reports.load import Experiment
from gradatlas.reports.plan_status import PlanStatus
from gradatlas.reports.steer import Steering

__all__ = ["DEFAULT_HEATMAP_FACTORS", "SECTIONS", "Section", "build_document", "document_for"]


class Section(Protocol):
    """One part of the report: its title, and the blocks it shows for one report's context.

    ``build`` reads the context and decides nothing another section also needs (that belongs
    in ``context.make_context``); a part it cannot show is a ``Para(..., note=True)`` saying why,
    never a silently missing block.
    """

    title: str

    def build(self, ctx: ReportContext) -> list[Block]: ...


def applies(section: Section, ctx: ReportContext) -> bool:
    """Whether a section belongs in this report. A section that only some suites have (claims,
    tuning, a paper's published claim) says so with an ``applies(ctx)`` method; the others are
    in every report. Sections that do not apply are left out, not numbered."""
    check = getattr(section, "applies", None)
    return True if check is None else bool(check(ctx))


SECTIONS: list[Section] = [
    plan_status.Progress(),
    claims.Claims(),
    overview.Overview(),
    outcomes.OutcomeRates(),
    literature.Literature(),
    dynamics.Convergence(),
    tuning.Tuning(),
    dynamics.GradientProfiles(),
    outcomes.FactorEffects(),
    outcomes.Leaderboard(),
    sensitivity.ThresholdSensitivity(),
    overview.Methods(),
]


def build_document(
    exp: Experiment,
    *,
    heatmap_factors: Sequence[str] = DEFAULT_HEATMAP_FACTORS,
    curve_factor: str | None = None,
    built_at: datetime | None = None,
    steering: Steering | None = None,
    plan: PlanStatus | None = None,
) -> Document:
    """The whole report as blocks. ``heatmap_factors`` = (rows, columns) of the outcome
    heatmaps; ``curve_factor`` = the factor with one line per level in the convergence curves
    (default: the heatmaps' column factor); ``steering`` what ``gradatlas report --by --facet
    --where --cell --limit`` asked for; ``plan`` the plan's state (its banner when unfinished)."""
    ctx = make_context(
        exp,
        heatmap_factors=heatmap_factors,
        curve_factor=curve_factor,
        built_at=built_at,
        steering=steering,
        plan=plan,
    )
    return document_for(ctx, SECTIONS)


def document_for(ctx: ReportContext, sections: Sequence[Section]) -> Document:
    """``sections`` built for ``ctx`` and numbered from 1 in the order given."""
    exp = ctx.exp
    shown = [section for section in sections if applies(section, ctx)]
    numbered = [
        NumberedSection(number, section.title, section.build(ctx))
        for number, section in enumerate(shown, start=1)
    ]
    subtitle = (
        f"{plural(len(exp.trials), 'trial')} in {plural(len(ctx.cells), 'cell')} · "
        f"MLflow experiment '{exp.name}' · built {ctx.built_at:%Y-%m-%d %H:%M} UTC"
    )
    if ctx.plan is not None and not ctx.plan.complete:
        subtitle = f"UNFINISHED: {ctx.plan.banner()} · {subtitle}"
    if ctx.steering is not None:
        subtitle += f" · steered: {ctx.steering.command_line()}"
    footer = (
        "Built by gradatlas from the MLflow records alone; every number can be traced to a "
        "run in the experiment above."
    )
    return Document(f"gradatlas report: {exp.name}", subtitle, numbered, footer)
