"""The Convergence and Gradient profiles sections: how training went (curves, steps to target)
and what the gradients looked like (per-layer profiles at initialization, saturation, gradient
norm over training).

Everything is drawn from the curves and profiles in each trial's ``trial.json``; the statistic is
always a median with an interquartile band across the trials a line stands for, because a few
exploded or vanished trials would drag a mean anywhere.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from gradatlas.identity import canonical_json
from gradatlas.record import OUTCOMES, OutcomeLabel
from gradatlas.reports import figures, stats
from gradatlas.reports.context import ReportContext
from gradatlas.reports.document import Block, Figure, Para
from gradatlas.reports.fmt import join_and, plural
from gradatlas.reports.load import Experiment

BOUNDED_NOTE = "saturation applies to bounded activations (sigmoid/tanh family)"
# One line style per outcome in the convergence curves (colour is the level of the curves'
# factor): trials with different outcomes never share a band.
OUTCOME_STYLES = {
    "converged": "-",
    "unconverged": "--",
    "stalled": (0, (3, 1, 1, 1, 1, 1)),
    "vanished": ":",
    "exploded": "-.",
}
MAX_LINE_FACTORS = 2  # colour and line style: a third would make the profile panels unreadable


def _trials(exp: Experiment, mask: Any = None) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(trials row as a dict, its trial record) for the rows selected by ``mask`` (a boolean
    array over ``exp.trials``' rows); the row dicts are shared: read them, never change them."""
    rows = exp.rows()
    picks = range(len(rows)) if mask is None else np.flatnonzero(np.asarray(mask, dtype=bool))
    for i in picks:
        row = rows[i]
        yield row, exp.records.get(row["run_id"], {})


def _is_classification(ctx: ReportContext) -> bool:
    return ctx.accuracy_key is not None or any(
        r.get("task") == "classification" for r in ctx.exp.records.values()
    )


# -- convergence ---------------------------------------------------------------------------------
class Convergence:
    """Loss and accuracy curves per level of one factor, then steps to target: how fast things
    train, beside whether they do."""

    title = "Convergence"

    def build(self, ctx: ReportContext) -> list[Block]:
        blocks: list[Block] = [Para(note, note=True) for note in ctx.curves.notes]
        has_curves = any(
            (r.get("curves") or {}).get("train", {}).get("step") for r in ctx.exp.records.values()
        )
        if not has_curves:
            blocks.append(Para("Skipped: no trial record holds training curves.", note=True))
        else:
            blocks.append(_curve_figure(ctx))
            if ctx.named_cells:
                blocks.append(_named_cells_figure(ctx))
        blocks += _steps_blocks(ctx)
        return blocks


def _curve_figure(ctx: ReportContext) -> Figure:
    exp, factor, facet = ctx.exp, ctx.curves.factor, ctx.curves.facet
    th = ctx.thresholds
    classification = _is_classification(ctx)
    line_levels = exp.levels[factor] if factor else ["all trials"]
    colours = figures.palette(len(line_levels))
    facet_levels: list[str | None] = list(exp.levels[facet]) if facet else [None]
    eval_key, eval_label = (
        ("val_acc", "validation accuracy") if classification else ("val_loss", "validation loss")
    )
    target = (
        (th.get("target_accuracy"), "target")
        if classification
        else (th.get("target_loss"), "target")
    )
    grid: list[list[figures.CurvePanel]] = []
    styles: dict[str, Any] = {}
    outcomes_seen: dict[str, None] = {}
    for fl in facet_levels:
        suffix = f" · {facet} = {fl}" if facet else ""
        loss_lines, eval_lines = [], []
        skip: list[str] = []
        for level, colour in zip(line_levels, colours, strict=True):
            mask = np.ones(len(exp.trials), dtype=bool)
            if factor:
                mask &= (exp.trials[exp.fcol(factor)] == level).to_numpy()
            if facet:
                mask &= (exp.trials[exp.fcol(facet)] == fl).to_numpy()
            train: dict[str, list[Any]] = defaultdict(list)
            ev: dict[str, list[Any]] = defaultdict(list)
            for row, rec in _trials(exp, mask):
                curves = rec.get("curves") or {}
                tr, e = curves.get("train") or {}, curves.get("eval") or {}
                if tr.get("step"):
                    train[row["outcome"]].append((tr["step"], tr.get("loss") or []))
                if e.get("step") and e.get(eval_key):
                    ev[row["outcome"]].append((e["step"], e[eval_key]))
            for outcome in _outcome_order(train.keys() | ev.keys()):
                label = f"{level} · {outcome}"
                outcomes_seen.setdefault(outcome, None)
                styles[label] = OUTCOME_STYLES.get(outcome, (0, (1, 1)))
                if outcome == OutcomeLabel.EXPLODED:
                    skip.append(label)
                b = stats.band(train.get(outcome, []))
                if b is not None:
                    loss_lines.append((label, colour, b))
                b = stats.band(ev.get(outcome, []))
                if b is not None:
                    eval_lines.append((label, colour, b))
        hline = (target[0], target[1]) if target[0] is not None else None
        grid.append(
            [
                figures.CurvePanel(
                    f"training loss{suffix}",
                    "loss (log)",
                    True,
                    loss_lines,
                    styles=styles,
                    ylim_skip=tuple(skip),
                ),
                figures.CurvePanel(
                    f"{eval_label}{suffix}",
                    eval_label,
                    not classification,
                    eval_lines,
                    hline=hline,
                    styles=styles,
                ),
            ]
        )
    over = [f for f in ctx.varying if f not in (factor, facet)]
    pooled = f" and over {join_and(over)}" if over else ""
    shown = [lv for lv in line_levels if any(k.startswith(f"{lv} · ") for k in styles)]
    legend, legend_cols = legend_rows(
        [(lv, colours[line_levels.index(lv)], "-") for lv in shown],
        [(o, "#555555", OUTCOME_STYLES.get(o, (0, (1, 1)))) for o in outcomes_seen],
    )
    return Figure(
        name="convergence",
        draw=partial(
            figures.curve_grid,
            panels=grid,
            legend_title=f"colour: {factor or 'all trials'} · line style: outcome",
            legend=legend,
            legend_cols=legend_cols,
        ),
        size=figures.curves_size(len(grid)),
        caption=(
            f"Training loss and {eval_label} against step, one line per {factor or 'suite'} "
            "level (colour) and outcome (line style): median and interquartile band across the "
            f"seeds{pooled} that had that outcome, so converged, vanished and exploded trials "
            "never share a band"
            + (f"; one row per {facet} level" if facet else "")
            + ". Exploded trials stop at the explosion (a triangle marks where; their losses are "
            "left out of the y range)."
        ),
    )


LEGEND_COLS = 6


def legend_rows(*groups: list[tuple[str, Any, Any]]) -> tuple[list[tuple[str, Any, Any]], int]:
    """Legend entries laid out so each group starts a row of its own (the curves' levels on
    one, the outcomes' line styles below), and the column count to draw them with: matplotlib
    fills a legend column by column, so the rows are padded with gaps and read off by column."""
    cols = max(1, min(LEGEND_COLS, max((len(g) for g in groups), default=1)))
    gap = ("", "none", "-")
    rows = []
    for g in groups:
        for i in range(0, max(len(g), 1), cols):
            chunk = g[i : i + cols]
            rows.append(chunk + [gap] * (cols - len(chunk)))
    return [rows[r][c] for c in range(cols) for r in range(len(rows))], cols


def _outcome_order(outcomes: Any) -> list[str]:
    """Outcomes in the report's order (verdicts first, then any other label)."""
    known = [o for o in OUTCOMES if o in outcomes]
    return known + sorted(o for o in outcomes if o not in OUTCOMES)


def _named_cells_figure(ctx: ReportContext) -> Figure:
    """One row per cell named with ``--cell``: every seed's own curves, coloured by outcome."""
    exp = ctx.exp
    classification = _is_classification(ctx)
    eval_key, eval_label = (
        ("val_acc", "validation accuracy") if classification else ("val_loss", "validation loss")
    )
    grid: list[list[figures.CurvePanel]] = []
    seen: dict[str, None] = {}
    for cell_id in ctx.named_cells:
        mask = (exp.trials["cell_id"] == cell_id).to_numpy()
        loss_lines, eval_lines = [], []
        name, counts = cell_id, Counter()
        for row, rec in _trials(exp, mask):
            name = row["cell"] or cell_id
            outcome = row["outcome"]
            counts[outcome] += 1
            seen.setdefault(outcome, None)
            colour = figures.OUTCOME_COLORS.get(outcome, "#555555")
            curves = rec.get("curves") or {}
            tr, e = curves.get("train") or {}, curves.get("eval") or {}
            b = stats.band([(tr["step"], tr.get("loss") or [])]) if tr.get("step") else None
            if b is not None:
                loss_lines.append((outcome, colour, b))
            b = (
                stats.band([(e["step"], e[eval_key])])
                if e.get("step") and e.get(eval_key)
                else None
            )
            if b is not None:
                eval_lines.append((outcome, colour, b))
        mix = ", ".join(f"{counts[o]} {o}" for o in _outcome_order(counts))
        grid.append(
            [
                figures.CurvePanel(
                    f"{name} ({mix}): training loss", "loss (log)", True, loss_lines
                ),
                figures.CurvePanel(
                    f"{name}: {eval_label}", eval_label, not classification, eval_lines
                ),
            ]
        )
    legend = [(o, figures.OUTCOME_COLORS.get(o, "#555555"), "-") for o in _outcome_order(seen)]
    return Figure(
        name="named-cells",
        draw=partial(figures.curve_grid, panels=grid, legend_title="outcome", legend=legend),
        size=figures.curves_size(len(grid)),
        caption=(
            f"The {plural(len(grid), 'cell')} named with `--cell`, one row each: training loss "
            f"and {eval_label} of every seed (one line per seed, coloured by its outcome)."
        ),
    )


def _target_text(ctx: ReportContext) -> str:
    th = ctx.thresholds
    if _is_classification(ctx) and th.get("target_accuracy") is not None:
        return f"val. acc ≥ {th['target_accuracy']:g}"
    if th.get("target_loss") is not None:
        return f"val. loss ≤ {th['target_loss']:g}"
    return "target"


def _steps_blocks(ctx: ReportContext) -> list[Block]:
    exp, t = ctx.exp, ctx.exp.trials
    reached = t["steps_to_target"].notna()
    if not reached.any():
        return [Para("No steps-to-target distribution: no trial reached the target.", note=True)]
    panels = []
    for f in ctx.varying or [None]:
        col = exp.fcol(f) if f else None
        levels = exp.levels[f] if f else ["all trials"]
        values, counts = {}, {}
        for lv in levels:
            m = (t[col] == lv) if col else np.ones(len(t), dtype=bool)
            values[lv] = t.loc[m & reached, "steps_to_target"].to_numpy(dtype=float)
            counts[lv] = (int((m & reached).sum()), int(m.sum()))
        panels.append(figures.StepsPanel(f or "all trials", levels, values, counts))
    target = _target_text(ctx)
    return [
        Figure(
            name="steps-to-target",
            draw=partial(figures.steps_to_target, panels=panels, target_text=target),
            size=figures.steps_size([len(p.levels) for p in panels]),
            caption=(
                f"Steps to the target ({target}) of the {int(reached.sum())} trials that "
                "reached it, per level of each factor (box: quartiles; dots: trials). In brackets: "
                "trials at that level that reached the target / all trials at that level."
            ),
        )
    ]


# -- gradient profiles ---------------------------------------------------------------------------
LayerGroups = dict[int, list[tuple[dict[str, Any], dict[str, Any]]]]


def _layer_groups(exp: Experiment) -> LayerGroups:
    """Trials grouped by the number of weight layers their initialization profile has: profiles
    of different lengths cannot share an axis, and the length is what the data says about depth
    whatever the suite calls it."""
    groups: LayerGroups = defaultdict(list)
    for row, rec in _trials(exp):
        prof = (rec.get("profiles") or {}).get("init") or {}
        n = len(prof.get("grad_norm") or [])
        if n:
            groups[n].append((row, rec))
    return dict(sorted(groups.items()))


def _layer_factors(ctx: ReportContext, groups: LayerGroups) -> list[str]:
    """Varying factors with one level in every layer group: those the layer count stands for
    (a depth factor), named in the panel titles instead of drawn as lines."""
    if len(groups) < 2:
        return []

    def one_level(f: str, members: list[Any]) -> bool:
        return len({row[ctx.exp.fcol(f)] for row, _ in members}) == 1

    return [f for f in ctx.varying if all(one_level(f, m) for m in groups.values())]


def _model_factors(ctx: ReportContext) -> list[str]:
    """Varying factors that change the model a trial builds (its resolved ``config["model"]``):
    the only ones that can change a profile taken at initialization. A factor counts when, with
    the other factors held fixed, its levels build different models (not merely a different mix
    of them, as when a fixed setting changed between sweeps)."""
    exp = ctx.exp
    rows = []
    for row, rec in _trials(exp):
        model = (rec.get("config") or {}).get("model")
        if model is not None:
            rows.append((row, canonical_json(model)))
    found = []
    for f in ctx.varying:
        others = [exp.fcol(g) for g in exp.factors if g != f]
        by_rest: dict[tuple[Any, ...], dict[Any, set[str]]] = defaultdict(lambda: defaultdict(set))
        for row, model in rows:
            by_rest[tuple(row[c] for c in others)][row[exp.fcol(f)]].add(model)
        if any(len({frozenset(m) for m in lv.values()}) > 1 for lv in by_rest.values()):
            found.append(f)
    return found


@dataclass(frozen=True)
class ProfileLayout:
    """How every profile figure of a report is laid out: one panel per layer count (titled with
    the factors that count stands for), lines per level of ``lines`` (colour, then style)."""

    groups: LayerGroups
    panel_factors: list[str]
    lines: list[str]


def profile_layout(ctx: ReportContext) -> ProfileLayout:
    """Panels from the profiles' lengths; lines per factor that changes the model, less those
    the panels already separate (the curves' factor when none is left)."""
    groups = _layer_groups(ctx.exp)
    model = _model_factors(ctx)
    # A factor that sets the layer count changes the model; one that only happens to line up
    # with it (an unfinished sweep) is not named in the panel titles.
    panel_factors = [f for f in _layer_factors(ctx, groups) if f in model]
    lines = [f for f in model if f not in panel_factors][:MAX_LINE_FACTORS]
    if not lines and ctx.curves.factor:
        lines = [ctx.curves.factor]
    return ProfileLayout(groups, panel_factors, lines)


def _group_title(ctx: ReportContext, layout: ProfileLayout, n_layers: int) -> str:
    named = []
    for f in layout.panel_factors:
        levels = {row[ctx.exp.fcol(f)] for row, _ in layout.groups[n_layers]}
        named.append(f"{f} {', '.join(sorted(levels, key=ctx.levels[f].index))}")
    return " · ".join([*named, plural(n_layers, "weight layer")])


def _profile_panels(
    ctx: ReportContext, layout: ProfileLayout, quantity: str, labels: tuple[str, str], log: bool
) -> list[figures.ProfilePanel]:
    exp, key_factors = ctx.exp, layout.lines
    ylabel, xlabel = labels
    acts = exp.levels.get(key_factors[0], [""]) if key_factors else [""]
    others = exp.levels.get(key_factors[1], [""]) if len(key_factors) > 1 else [""]
    colours = dict(zip(acts, figures.palette(len(acts)), strict=True))
    panels = []
    for n_layers, members in layout.groups.items():
        by_line: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for row, rec in members:
            a = row[exp.fcol(key_factors[0])] if key_factors else ""
            o = row[exp.fcol(key_factors[1])] if len(key_factors) > 1 else ""
            vals = ((rec.get("profiles") or {}).get("init") or {}).get(quantity) or []
            if any(v is not None for v in vals):
                by_line[(a, o)].append(vals)
        lines = []
        for a in acts:
            for j, o in enumerate(others):
                prof = stats.layer_profile(by_line.get((a, o), []))
                if prof is None:
                    continue
                label = " · ".join(x for x in (a, o) if x) or "all trials"
                lines.append(
                    figures.ProfileLine(
                        label,
                        colours[a],
                        figures.LINESTYLES[j % len(figures.LINESTYLES)],
                        figures.MARKERS[j % len(figures.MARKERS)],
                        prof,
                    )
                )
        if lines:
            panels.append(
                figures.ProfilePanel(
                    _group_title(ctx, layout, n_layers),
                    ylabel,
                    xlabel,
                    log,
                    lines,
                    ylim=None if log else (-0.03, 1.03),
                )
            )
    return panels


# Per-site profiles that apply to one activation family each; a suite may have neither:
# (record key, y label, figure name, caption, note when no trial has it or None to stay silent).
SITE_PROFILES = [
    (
        "saturation",
        "saturated fraction",
        "saturation",
        "Share of unit outputs in the flat tails of a bounded activation, per hidden layer at "
        "initialization (median over seeds and other factors).",
        f"No saturation profile: {BOUNDED_NOTE}, and this suite has none.",
    ),
    (
        "dead",
        "dead fraction",
        "dead-units",
        "ReLU family: share of units inactive on every probe example, per hidden layer at "
        "initialization (median over seeds and other factors).",
        None,
    ),
]


class GradientProfiles:
    """The mechanism behind the outcomes: per-layer gradient norm and saturation at
    initialization, and the gradient norm over training of one cell per outcome."""

    title = "Gradient profiles"

    def build(self, ctx: ReportContext) -> list[Block]:
        layout = profile_layout(ctx)
        keys = layout.lines
        legend = " · ".join(keys)
        line_text = f"one line per {' x '.join(keys)}" if keys else "one line for all trials"
        labels = ("gradient norm (log)", "weight layer (0 = input side)")
        grad = _profile_panels(ctx, layout, "grad_norm", labels, True)
        if not grad:
            return [Para("Skipped: no trial record holds an initialization profile.", note=True)]
        cols = min(3, len(grad))
        blocks: list[Block] = [
            Figure(
                name="init-grad-profile",
                draw=partial(figures.profile_grid, panels=grad, cols=cols, legend_title=legend),
                size=figures.profiles_size(len(grad), cols),
                caption=(
                    "Gradient norm of each weight layer at initialization (probe batch), "
                    f"{line_text}; median over seeds and other factors with interquartile band. "
                    "The picture of Glorot & Bengio (2010) and He et al. (2015): flat is healthy, "
                    "a slope toward the input is vanishing, a slope away from it exploding."
                ),
            )
        ]
        for key, ylabel, name, caption, missing in SITE_PROFILES:
            labels = (ylabel, "activation site (0 = input side)")
            panels = _profile_panels(ctx, layout, key, labels, False)
            if panels:
                cols = min(3, len(panels))
                blocks.append(
                    Figure(
                        name=name,
                        draw=partial(
                            figures.profile_grid, panels=panels, cols=cols, legend_title=legend
                        ),
                        size=figures.profiles_size(len(panels), cols),
                        caption=caption,
                    )
                )
            elif missing:
                blocks.append(Para(missing, note=True))
        blocks += _norms_over_training(ctx)
        return blocks


def representative_cells(cells: pd.DataFrame, limit: int = 5) -> list[tuple[str, str, int, int]]:
    """For each outcome that occurred, the cell where it was most frequent: (cell id, outcome,
    k, n), from the per-cell table. A handful of cells that show every regime, instead of a
    spaghetti of all of them."""
    table = cells
    chosen: list[tuple[str, str, int, int]] = []
    for o in OUTCOMES:
        if table[o].sum() == 0:
            continue
        rate = table[o] / table["n"]
        order = rate.sort_values(ascending=False, kind="stable").index
        for i in order:
            cid = table.at[i, "cell_id"]
            if rate[i] > 0 and cid not in {c for c, *_ in chosen}:
                chosen.append((cid, o, int(table.at[i, o]), int(table.at[i, "n"])))
                break
    return chosen[:limit]


def _norms_over_training(ctx: ReportContext) -> list[Block]:
    exp = ctx.exp
    lines = []
    styles = iter(figures.LINESTYLES * 3)
    for cell_id, outcome, k, n in representative_cells(ctx.cells):
        # Only the seeds with that outcome: a band never mixes outcomes.
        mask = ((exp.trials["cell_id"] == cell_id) & (exp.trials["outcome"] == outcome)).to_numpy()
        glob, first = [], []
        label = ""
        for row, rec in _trials(exp, mask):
            label = row["cell"] or cell_id
            curves = rec.get("curves") or {}
            tr, layers = curves.get("train") or {}, curves.get("layers") or {}
            if tr.get("step"):
                glob.append((tr["step"], tr.get("grad_norm") or []))
            if layers.get("step") and layers.get("grad_norm"):
                first.append(
                    (layers["step"], [row0[0] if row0 else None for row0 in layers["grad_norm"]])
                )
        gb, fb = stats.band(glob), stats.band(first)
        if gb is None and fb is None:
            continue
        lines.append(
            figures.NormLine(
                f"{label}: {outcome} {k}/{n}", figures.OUTCOME_COLORS[outcome], next(styles), gb, fb
            )
        )
    if not lines:
        return [Para("No gradient-norm curves: no trial record holds them.", note=True)]
    th = ctx.thresholds
    return [
        Figure(
            name="grad-norm-training",
            draw=partial(
                figures.norms_over_training,
                lines=lines,
                explode_at=th.get("explode_grad_norm"),
                vanish_at=th.get("vanish_grad_norm"),
            ),
            size=(figures.WIDTH, 3.0 + 0.18 * ((len(lines) + 1) // 2)),
            caption=(
                "Gradient norm over training for selected cells: for each outcome, the cell "
                "where it was most frequent (median over its seeds with that outcome, "
                "interquartile band). Dotted "
                "lines: the explosion threshold (global norm) and the vanishing threshold (first "
                "layer)."
            ),
        )
    ]
