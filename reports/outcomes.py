"""The Outcome rates, Factor effects and Leaderboard sections: the report's numbers.

Rates are always shown with their Wilson interval and the raw k/n behind them (as ``data-*``
attributes in the HTML), so a reader can check any of them against MLflow and a test does.
"""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pandas as pd

from gradatlas.record import OUTCOMES, PROBE
from gradatlas.reports import figures, stats
from gradatlas.reports.context import HeatChoice, ReportContext
from gradatlas.reports.document import Block, Cell, Column, Figure, Para, Table
from gradatlas.reports.fmt import interval, join_and, num, pct, rate_cell
from gradatlas.reports.load import Experiment

LEADERBOARD = 10  # rows per leaderboard
# The outcomes with a rate heatmap, in the order shown: what trains, then the failures.
HEATMAP_OUTCOMES = (
    ("converged", "Convergence"),
    ("exploded", "Explosion"),
    ("vanished", "Vanishing"),
    ("dead", "Dead units"),
    ("diverged", "Divergence"),
)


def _heat_spec(exp: Experiment, choice: HeatChoice, outcome: str) -> figures.HeatSpec:
    data = stats.heat_table(exp, choice.rows, choice.cols, choice.facets, outcome)
    fcols = [exp.fcol(f) for f in choice.facets]
    data["facet"] = (
        data[fcols].apply(
            lambda r: "  ·  ".join(f"{f} = {v}" for f, v in zip(choice.facets, r, strict=True)),
            axis=1,
        )
        if fcols
        else ""
    )
    data["row"] = data[exp.fcol(choice.rows)] if choice.rows else ""
    data["col"] = data[exp.fcol(choice.cols)]
    facet_order = [
        "  ·  ".join(f"{f} = {v}" for f, v in zip(choice.facets, combo, strict=True))
        for combo in itertools.product(*(exp.levels[f] for f in choice.facets))
    ]
    present = set(data["facet"])
    return figures.HeatSpec(
        data=data,
        outcome=outcome,
        row_title=choice.rows or "",
        col_title=choice.cols,
        row_levels=exp.levels[choice.rows] if choice.rows else [""],
        col_levels=exp.levels[choice.cols],
        facets=[f for f in facet_order if f in present] if fcols else [""],
    )


class OutcomeRates:
    """The totals, the convergence, explosion and vanishing heatmaps, the per-cell rate
    table."""

    title = "Outcome rates"

    def build(self, ctx: ReportContext) -> list[Block]:
        exp, choice = ctx.exp, ctx.heat
        t = exp.trials
        counts = t["outcome"].value_counts()
        probes = int(counts.get(PROBE, 0))
        if probes == len(t):
            return [
                Para(
                    f"All {len(t)} trials are probe-only (train.steps: 0): they were measured at "
                    "initialization and never trained, so they have no outcome; their evidence "
                    "is in the gradient profiles.",
                    note=True,
                )
            ]
        parts = [
            f"{int(counts.get(o, 0))} {o} ({pct(counts.get(o, 0) / len(t))})"
            for o in (*OUTCOMES, PROBE)
            if counts.get(o, 0)
        ]
        blocks: list[Block] = [Para(f"Of the {len(t)} trials, {join_and(parts)}.")]
        if ctx.cells["seeds"].max() < 2:
            blocks.append(
                Para(
                    "Each cell has one seed, so every rate below is 0% or 100% and its "
                    "interval is wide: the table records outcomes, not rates.",
                    note=True,
                )
            )
        if choice is None:
            blocks.append(
                Para("No heatmaps: this suite varies no factor (a single cell).", note=True)
            )
        else:
            blocks += [Para(note, note=True) for note in choice.notes]
            blocks += _heatmaps(exp, choice, counts)
        shared = shared_level_cells(exp)
        if shared:
            blocks.append(
                Para(
                    f"{shared} cells share all their factor levels with another cell: the "
                    "suite's fixed settings changed between runs. The table lists them apart (by "
                    "cell id); the heatmaps and factor effects pool them.",
                    note=True,
                )
            )
        blocks.append(cell_rate_table(ctx, with_id=bool(shared)))
        return blocks


def _heatmaps(exp: Experiment, choice: HeatChoice, counts: pd.Series) -> list[Block]:
    """The convergence, explosion and vanishing heatmaps, or a note for an outcome that never
    occurred."""
    blocks: list[Block] = []
    over = f"{choice.rows} x {choice.cols}" if choice.rows else choice.cols
    facet_text = f", one panel per {join_and(choice.facets)} level" if choice.facets else ""
    for outcome, word in HEATMAP_OUTCOMES:
        k = int(counts.get(outcome, 0))
        if k == 0:
            blocks.append(
                Para(
                    f"{word} rate: no trial {outcome}, so its heatmap (all 0%) is omitted.",
                    note=True,
                )
            )
            continue
        spec = _heat_spec(exp, choice, outcome)
        blocks.append(
            Figure(
                name=f"heat-{outcome}",
                draw=partial(figures.rate_heatmaps, spec=spec),
                size=figures.heat_size(spec),
                caption=f"{word} rate over {over}{facet_text}: share of the cell's seeds that "
                f"{outcome}, with k/n. One colour scale for every panel (white is exactly "
                "0%); hatched squares were not run.",
            )
        )
    return blocks


def shared_level_cells(exp: Experiment) -> int:
    """How many cells have the same factor levels as some other cell (different cell ids)."""
    if not exp.factors:
        return 0
    cells = exp.trials.drop_duplicates("cell_id")
    dup = cells.duplicated([exp.fcol(f) for f in exp.factors], keep=False)
    return int(dup.sum())


def cell_rate_table(ctx: ReportContext, with_id: bool = False) -> Table:
    """Per cell: its levels, seeds, and each outcome's rate with Wilson 95% interval."""
    exp, table = ctx.exp, ctx.cells
    cols = [Column(f, weight=1.0) for f in exp.factors] or [Column("cell", weight=2.0)]
    if with_id:
        cols.append(Column("cell id", weight=1.0))
    cols += [Column("seeds", "right", 0.5)] + [Column(o, "right", 1.25) for o in OUTCOMES]
    rows, row_attrs = [], []
    for _, r in table.iterrows():
        cells = [Cell(str(r[exp.fcol(f)])) for f in exp.factors] or [Cell(str(r["cell"]))]
        if with_id:
            cells.append(Cell(str(r["cell_id"])[:8]))
        cells.append(Cell(str(int(r["n"]))))
        cells += [rate_cell(int(r[o]), int(r["n"]), o, figures.OUTCOME_COLORS[o]) for o in OUTCOMES]
        rows.append(cells)
        row_attrs.append({"cell-id": r["cell_id"], "cell": r["cell"]})
    return Table(
        cols,
        rows,
        name="cell-rates",
        row_attrs=row_attrs,
        caption=(
            "Outcome rate per cell: share of seeds, with Wilson 95% interval in brackets "
            "(percentage points)."
        ),
    )


# -- factor effects ------------------------------------------------------------------------------
class FactorEffects:
    """Which factor matters most, from the marginal rates of each level."""

    title = "Factor effects"

    def build(self, ctx: ReportContext) -> list[Block]:
        if not ctx.varying:
            return [
                Para(
                    "Skipped: this suite varies no factor, so there is no effect to compare.",
                    note=True,
                )
            ]
        return _effects_blocks(ctx)


def _effects_blocks(ctx: ReportContext) -> list[Block]:
    exp, var = ctx.exp, ctx.varying
    blocks: list[Block] = []
    effects = stats.level_effects(exp)
    effects = effects[effects["factor"].isin(var)]
    with_acc = ctx.accuracy_key is not None
    if len(var) == 1:
        blocks.append(
            Para(
                f"Only {var[0]} varies, so there is no other factor to compare it "
                "with; its levels' marginal rates are shown.",
                note=True,
            )
        )
    ranges = stats.factor_ranges(effects)
    if len(var) > 1:
        top = ranges.iloc[0]
        blocks.append(
            Para(
                f"Pooling every trial at a level (all seeds, all levels of the other factors), "
                f"{top['factor']} moves the convergence rate most: by {pct(top['conv_range'])} "
                "between its best and worst level."
            )
        )
    blocks.append(
        Figure(
            name="factor-effects",
            draw=partial(
                figures.factor_effects,
                effects=effects,
                factors=var,
                levels=exp.levels,
                accuracy=stats.accuracy_name(ctx.accuracy_key) if with_acc else None,
            ),
            size=figures.effects_size([len(exp.levels[f]) for f in var]),
            caption="Marginal effect of each factor level: convergence and explosion rate (Wilson "
            f"95% interval) and mean {stats.accuracy_name(ctx.accuracy_key)} (t 95% interval), "
            "pooled over seeds and the other factors.",
        )
    )
    rows = [
        [
            Cell(r["factor"]),
            Cell(str(int(r["levels"]))),
            Cell(pct(r["conv_range"])),
            Cell(pct(r["expl_range"])),
            Cell(_acc_range(r["acc_range"])),
        ]
        for _, r in ranges.iterrows()
    ]
    blocks.append(
        Table(
            [
                Column("factor", weight=1.5),
                Column("levels", "right", 0.6),
                Column("convergence-rate range", "right"),
                Column("explosion-rate range", "right"),
                Column("accuracy range", "right"),
            ],
            rows,
            name="factor-ranges",
            caption="How much each factor moves each quantity: largest minus smallest level value.",
        )
    )
    rows, attrs = [], []
    for _, r in effects.iterrows():
        rows.append(
            [
                Cell(r["factor"]),
                Cell(r["level"]),
                Cell(str(int(r["n"]))),
                rate_cell(
                    int(r["converged"]),
                    int(r["n"]),
                    "converged",
                    figures.OUTCOME_COLORS["converged"],
                ),
                rate_cell(
                    int(r["exploded"]), int(r["n"]), "exploded", figures.OUTCOME_COLORS["exploded"]
                ),
                Cell(_acc_text(r) if with_acc else "–"),
            ]
        )
        attrs.append({"factor": r["factor"], "level": r["level"]})
    blocks.append(
        Table(
            [
                Column("factor"),
                Column("level", weight=1.4),
                Column("trials", "right", 0.6),
                Column("converged", "right", 1.2),
                Column("exploded", "right", 1.2),
                Column(stats.accuracy_name(ctx.accuracy_key), "right", 1.3),
            ],
            rows,
            name="level-effects",
            row_attrs=attrs,
            caption="Per level: pooled rates with Wilson 95% intervals; accuracy mean with t 95% "
            "interval.",
        )
    )
    return blocks


def _acc_range(x: float) -> str:
    """In accuracy units, like the accuracies it compares."""
    return "–" if not np.isfinite(x) else f"{x:.3f}"


def _acc_text(r: pd.Series) -> str:
    if not np.isfinite(r["acc_mean"]):
        return "–"
    return f"{r['acc_mean']:.3f} {_acc_interval(r['acc_lo'], r['acc_hi'])}"


def _acc_interval(lo: float, hi: float) -> str:
    return interval(lo, hi, scale=1.0, digits=3)


# -- leaderboard ---------------------------------------------------------------------------------
class Leaderboard:
    """The best cells by accuracy and the fastest by steps to target."""

    title = "Leaderboard"

    def build(self, ctx: ReportContext) -> list[Block]:
        return _leaderboard_blocks(ctx)


def _leaderboard_blocks(ctx: ReportContext) -> list[Block]:
    exp, table = ctx.exp, ctx.cells
    blocks: list[Block] = []
    label_cols = [Column(f) for f in exp.factors] or [Column("cell", weight=2.0)]
    acc_header = f"{stats.accuracy_name(ctx.accuracy_key)} [95%]"

    def labels(r: pd.Series) -> list[Cell]:
        return [Cell(str(r[exp.fcol(f)])) for f in exp.factors] or [Cell(str(r["cell"]))]

    if ctx.accuracy_key is None:
        blocks.append(
            Para(
                "No accuracy leaderboard: these trials recorded no validation "
                "accuracy (a regression suite).",
                note=True,
            )
        )
    else:
        best = (
            table.dropna(subset=["acc_mean"])
            .sort_values("acc_mean", ascending=False, kind="stable")
            .head(LEADERBOARD)
        )
        one_seed = int(best["acc_n"].max()) < 2 if len(best) else True
        if one_seed:
            blocks.append(Para("One seed per cell: accuracies have no interval.", note=True))
        rows = [
            [
                Cell(str(i + 1)),
                *labels(r),
                Cell(
                    f"{r['acc_mean']:.3f} {_acc_interval(r['acc_lo'], r['acc_hi'])}".strip(),
                    {"mean": f"{r['acc_mean']:.6g}"},
                ),
                Cell(str(int(r["acc_n"]))),
                Cell(_outcome_mix(r)),
            ]
            for i, (_, r) in enumerate(best.iterrows())
        ]
        blocks.append(
            Table(
                [
                    Column("#", "right", 0.3),
                    *label_cols,
                    Column(acc_header, "right", 1.6),
                    Column("seeds", "right", 0.5),
                    Column("outcomes", weight=1.6),
                ],
                rows,
                name="best-accuracy",
                caption=f"Best {len(rows)} cells by mean "
                f"{stats.accuracy_name(ctx.accuracy_key)} over seeds (t 95% interval).",
            )
        )
    fast = table[table["n_target"] > 0].assign(share=lambda d: d["n_target"] / d["n"])
    if fast.empty:
        blocks.append(Para("No speed leaderboard: no trial reached the target.", note=True))
        return blocks
    fast = fast.sort_values(["share", "steps_median"], ascending=[False, True], kind="stable").head(
        LEADERBOARD
    )
    rows = [
        [
            Cell(str(i + 1)),
            *labels(r),
            Cell(num(r["steps_median"])),
            Cell(f"{num(r['steps_min'])}–{num(r['steps_max'])}"),
            Cell(f"{int(r['n_target'])}/{int(r['n'])}"),
        ]
        for i, (_, r) in enumerate(fast.iterrows())
    ]
    blocks.append(
        Table(
            [
                Column("#", "right", 0.3),
                *label_cols,
                Column("median steps to target", "right", 1.3),
                Column("range", "right"),
                Column("seeds reaching it", "right"),
            ],
            rows,
            name="fastest",
            caption=f"Fastest {len(rows)} cells: most reliable first (share of seeds reaching the "
            "target), then fewest median steps among the seeds that reached it.",
        )
    )
    return blocks


def _outcome_mix(r: pd.Series) -> str:
    return ", ".join(f"{int(r[o])} {o}" for o in OUTCOMES if r[o]) or "–"
