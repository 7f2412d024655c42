"""Sections 3 and 4: how training went (curves, steps to target) and what the gradients looked
like (per-layer profiles at initialization, saturation, gradient norm over training).

Everything is drawn from the curves and profiles in each trial's ``trial.json``; the statistic is
always a median with an interquartile band across the trials a line stands for, because a few
exploded or vanished trials would drag a mean anywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np

from gradatlas.reports import figures, stats
from gradatlas.reports.document import Figure, Para, Section
from gradatlas.reports.fmt import join_and, plural
from gradatlas.reports.load import Experiment
from gradatlas.reports.outcomes import HeatChoice, varying
from gradatlas.runners.outcome import OUTCOMES

MAX_CURVE_FACETS = 6
BOUNDED_NOTE = "saturation applies to bounded activations (sigmoid/tanh family)"


def thresholds(exp: Experiment) -> dict[str, Any]:
    """The thresholds of the newest trial (the sets are listed in Methods when they differ)."""
    for record in reversed(list(exp.records.values())):
        th = (record.get("outcome") or {}).get("thresholds")
        if th:
            return th
    return {}


def _trials(exp: Experiment, mask: Any = None) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(trials row as a dict, its trial record) for the rows selected by ``mask``."""
    t = exp.trials if mask is None else exp.trials[mask]
    for row in t.to_dict("records"):
        yield row, exp.records.get(row["run_id"], {})


def _is_classification(exp: Experiment) -> bool:
    return any(r.get("task") == "classification" for r in exp.records.values()) or (
        stats.accuracy_key(exp) is not None
    )


def choose_curve_factor(
    exp: Experiment, requested: str | None, heat: HeatChoice | None
) -> tuple[str | None, str | None, list[str]]:
    """(line factor, facet factor, notes): lines per level of the requested factor (default:
    the heatmaps' column factor), panels per level of the heatmaps' row factor."""
    var = varying(exp)
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
    facet = heat.rows if heat and heat.rows and heat.rows != factor else None
    if facet and len(exp.levels[facet]) > MAX_CURVE_FACETS:
        notes.append(f"{facet} has more than {MAX_CURVE_FACETS} levels; curves pool over it.")
        facet = None
    return factor, facet, notes


# -- section 3 -----------------------------------------------------------------------------------
def convergence(
    exp: Experiment, factor: str | None, facet: str | None, notes: list[str]
) -> Section:
    """Section 3: loss and accuracy curves per level of one factor, then steps to target:
    how fast things train, beside whether they do."""
    sec = Section(3, "Convergence")
    for note in notes:
        sec.blocks.append(Para(note, note=True))
    has_curves = any(
        (r.get("curves") or {}).get("train", {}).get("step") for r in exp.records.values()
    )
    if not has_curves:
        sec.blocks.append(Para("Skipped: no trial record holds training curves.", note=True))
    else:
        sec.blocks.append(_curve_figure(exp, factor, facet))
    sec.blocks += _steps_blocks(exp)
    return sec


def _curve_figure(exp: Experiment, factor: str | None, facet: str | None) -> Figure:
    th = thresholds(exp)
    classification = _is_classification(exp)
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
    for fl in facet_levels:
        suffix = f" · {facet} = {fl}" if facet else ""
        loss_lines, eval_lines = [], []
        for level, colour in zip(line_levels, colours, strict=True):
            mask = np.ones(len(exp.trials), dtype=bool)
            if factor:
                mask &= (exp.trials[exp.fcol(factor)] == level).to_numpy()
            if facet:
                mask &= (exp.trials[exp.fcol(facet)] == fl).to_numpy()
            train, ev = [], []
            for _, rec in _trials(exp, mask):
                curves = rec.get("curves") or {}
                tr, e = curves.get("train") or {}, curves.get("eval") or {}
                if tr.get("step"):
                    train.append((tr["step"], tr.get("loss") or []))
                if e.get("step") and e.get(eval_key):
                    ev.append((e["step"], e[eval_key]))
            b = stats.band(train)
            if b is not None:
                loss_lines.append((level, colour, b))
            b = stats.band(ev)
            if b is not None:
                eval_lines.append((level, colour, b))
        hline = (target[0], target[1]) if target[0] is not None else None
        grid.append(
            [
                figures.CurvePanel(f"training loss{suffix}", "loss (log)", True, loss_lines),
                figures.CurvePanel(
                    f"{eval_label}{suffix}", eval_label, not classification, eval_lines, hline=hline
                ),
            ]
        )
    over = [f for f in varying(exp) if f not in (factor, facet)]
    pooled = f" and over {join_and(over)}" if over else ""
    return Figure(
        name="convergence",
        draw=partial(figures.curve_grid, panels=grid, legend_title=factor or ""),
        size=figures.curves_size(len(grid)),
        caption=(
            f"Training loss and {eval_label} against step: median and interquartile band "
            f"across seeds{pooled}, one line per {factor or 'suite'} level"
            + (f", one row per {facet} level" if facet else "")
            + ". Exploded trials stop at the explosion, so a line may be short."
        ),
    )


def _target_text(exp: Experiment) -> str:
    th = thresholds(exp)
    if _is_classification(exp) and th.get("target_accuracy") is not None:
        return f"val. acc ≥ {th['target_accuracy']:g}"
    if th.get("target_loss") is not None:
        return f"val. loss ≤ {th['target_loss']:g}"
    return "target"


def _steps_blocks(exp: Experiment) -> list[Any]:
    t = exp.trials
    reached = t["steps_to_target"].notna()
    if not reached.any():
        return [Para("No steps-to-target distribution: no trial reached the target.", note=True)]
    var = varying(exp)
    panels = []
    for f in var or [None]:
        col = exp.fcol(f) if f else None
        levels = exp.levels[f] if f else ["all trials"]
        values, counts = {}, {}
        for lv in levels:
            m = (t[col] == lv) if col else np.ones(len(t), dtype=bool)
            values[lv] = t.loc[m & reached, "steps_to_target"].to_numpy(dtype=float)
            counts[lv] = (int((m & reached).sum()), int(m.sum()))
        panels.append(figures.StepsPanel(f or "all trials", levels, values, counts))
    target = _target_text(exp)
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


# -- section 4 -----------------------------------------------------------------------------------
def _line_key_factors(exp: Experiment, fallback: str | None) -> list[str]:
    keys = [f for f in ("activation", "init") if f in varying(exp)]
    if not keys and fallback:
        keys = [fallback]
    return keys


def _depth_groups(exp: Experiment) -> dict[int, list[Any]]:
    """Trials grouped by their number of weight layers (profiles differ in length by depth)."""
    groups: dict[int, list[Any]] = defaultdict(list)
    for row, rec in _trials(exp):
        prof = (rec.get("profiles") or {}).get("init") or {}
        n = len(prof.get("grad_norm") or [])
        if n:
            groups[n].append((row, rec))
    return dict(sorted(groups.items()))


def _group_title(exp: Experiment, n_layers: int, members: list[Any]) -> str:
    if "depth" in exp.factors:
        depths = sorted({r[exp.fcol("depth")] for r, _ in members}, key=exp.levels["depth"].index)
        return f"depth {', '.join(depths)} · {plural(n_layers, 'weight layer')}"
    return plural(n_layers, "weight layer")


def _profile_panels(
    exp: Experiment, key_factors: list[str], quantity: str, ylabel: str, xlabel: str, log: bool
) -> list[figures.ProfilePanel]:
    acts = exp.levels.get(key_factors[0], [""]) if key_factors else [""]
    others = exp.levels.get(key_factors[1], [""]) if len(key_factors) > 1 else [""]
    colours = dict(zip(acts, figures.palette(len(acts)), strict=True))
    panels = []
    for n_layers, members in _depth_groups(exp).items():
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
                    _group_title(exp, n_layers, members),
                    ylabel,
                    xlabel,
                    log,
                    lines,
                    ylim=None if log else (-0.03, 1.03),
                )
            )
    return panels


def gradients(exp: Experiment, fallback_factor: str | None) -> Section:
    """Section 4: the mechanism behind the outcomes: per-layer gradient norm and saturation at
    initialization, and the gradient norm over training of one cell per outcome."""
    sec = Section(4, "Gradient profiles")
    keys = _line_key_factors(exp, fallback_factor)
    legend = " · ".join(keys)
    line_text = f"one line per {' x '.join(keys)}" if keys else "one line for all trials"
    grad = _profile_panels(
        exp, keys, "grad_norm", "gradient norm (log)", "weight layer (0 = input side)", True
    )
    if not grad:
        sec.blocks.append(
            Para("Skipped: no trial record holds an initialization profile.", note=True)
        )
        return sec
    cols = min(3, len(grad))
    sec.blocks.append(
        Figure(
            name="init-grad-profile",
            draw=partial(figures.profile_grid, panels=grad, cols=cols, legend_title=legend),
            size=figures.profiles_size(len(grad), cols),
            caption=(
                "Gradient norm of each weight layer at initialization (probe batch), "
                f"{line_text}; median over seeds and other factors with interquartile band. The "
                "picture of Glorot & Bengio (2010) and He et al. (2015): flat is healthy, a slope "
                "toward the input is vanishing, a slope away from it exploding."
            ),
        )
    )
    # Per-site profiles that apply to one activation family each; a suite may have neither.
    site_profiles = [
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
    for key, ylabel, name, caption, missing in site_profiles:
        panels = _profile_panels(exp, keys, key, ylabel, "activation site (0 = input side)", False)
        if panels:
            cols = min(3, len(panels))
            sec.blocks.append(
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
            sec.blocks.append(Para(missing, note=True))
    sec.blocks += _norms_over_training(exp)
    return sec


def representative_cells(exp: Experiment, limit: int = 5) -> list[tuple[str, str, int, int]]:
    """For each outcome that occurred, the cell where it was most frequent: (cell id, outcome,
    k, n). A handful of cells that show every regime, instead of a spaghetti of all of them."""
    table = stats.cell_table(exp)
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


def _norms_over_training(exp: Experiment) -> list[Any]:
    lines = []
    styles = iter(figures.LINESTYLES * 3)
    for cell_id, outcome, k, n in representative_cells(exp):
        mask = (exp.trials["cell_id"] == cell_id).to_numpy()
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
    th = thresholds(exp)
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
                "where it was most frequent (median over its seeds, interquartile band). Dotted "
                "lines: the explosion threshold (global norm) and the vanishing threshold (first "
                "layer)."
            ),
        )
    ]
