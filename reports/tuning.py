"""The Tuning section: the values each study chose, how sensitive the metric is to them, and the
largest stable learning rate per cell.

Read from MLflow alone, like the rest of the report: the study runs (``gradatlas.kind=study``,
their ``tuning.json``) and the tuning runs (``gradatlas.kind=tuning``), never the Optuna storage,
so a report can be built where the storage is not reachable. Trial readers (``reports.load``)
filter kind ``trial``, so tuning runs never enter the outcome statistics of the other sections.

The sensitivity curve answers "does this optimizer need its learning rate tuned?" (CLAIMS C8:
"Adam adapts its learning rate by itself"): the final validation metric of every tuning run
against the value it trained at, one colour per optimizer; a flat curve over a wide range is an
optimizer that forgives a badly chosen rate.

Tuning that does not pick the winner by accident says its budget and shows what the choice
rests on: per study the best value, its neighbours (the nearest values tried below and above,
with their objectives) and the second-best (the best trial at a distinct value, where the
suite's seeds also ran with ``tune.second_best``): ``tuning_neighbourhood`` returns the same as
data. A study tuned below the suite's budget is named so, and with ``tune.horizon_check`` the
groups tuned again at the full budget compare the two choices (``horizon_frame``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from gradatlas.record import (
    CELL,
    FACTOR_PREFIX,
    OUTCOME,
    PRUNED,
    PURPOSE_HORIZON,
    PURPOSE_STUDY,
    STUDY,
    TRIAL_ID,
    TUNING_ARTIFACT,
    TUNING_GROUP,
    TUNING_NUMBER,
    TUNING_PARAMS,
    TUNING_PURPOSE,
    TUNING_STOPPED,
    OutcomeLabel,
    RunKind,
    RunStatus,
    as_float,
    as_int,
)
from gradatlas.reports import figures
from gradatlas.reports.context import ReportContext
from gradatlas.reports.document import Block, Cell, Column, Figure, Para, Table
from gradatlas.reports.fmt import join_and, num, plural
from gradatlas.store import RecordStore, StoredRun, as_store
from gradatlas.suites.tune import distinct

MAX_PANELS = 6  # sensitivity panels shown; more groups are listed in the table only
HORIZON_AGREE = 2.0  # a horizon check agrees when the two bests lie within this factor
BINS = 8  # the sensitivity line: the median of the complete runs in this many log-spaced bins


@dataclass
class TuningData:
    """Everything the section shows: one dict per study (its ``tuning.json``) and one row per
    tuning run (newest per trial id). ``horizons``: the studies of a horizon check (a group
    tuned again at the full budget), apart from the studies whose values were used."""

    studies: list[dict[str, Any]]
    runs: pd.DataFrame
    stable: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per max-stable-lr cell
    horizons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def objective(self) -> str:
        return next((s.get("objective") for s in self.studies if s.get("objective")), "val_acc")


# -- reading -------------------------------------------------------------------------------------
def load_tuning(store: RecordStore | str, experiment_id: str) -> TuningData | None:
    """The tuning records of one experiment, or None when it has none."""
    store = as_store(store)
    study_runs = store.find_runs(experiment_id, kind=RunKind.STUDY)
    if not study_runs:
        return None
    studies, seen = [], set()
    for run in study_runs:  # newest first: one per study
        name = run.tags.get(STUDY, "")
        if name in seen:
            continue
        seen.add(name)
        info = _read_json(store, run, TUNING_ARTIFACT)
        if info is not None:
            studies.append(info)
    runs = store.find_runs(experiment_id, kind=RunKind.TUNING, status=RunStatus.FINISHED)
    return tuning_data(studies, tuning_frame(runs))


def tuning_data(studies: list[dict[str, Any]], runs: pd.DataFrame) -> TuningData:
    """The section's data from study summaries and the tuning-run frame (kept apart from the
    MLflow read so it can be built in memory)."""
    horizons = [s for s in studies if s.get("purpose") == PURPOSE_HORIZON]
    studies = [s for s in studies if s.get("purpose") != PURPOSE_HORIZON]
    rows = []
    for s in studies:
        for r in s.get("max_stable_lr") or []:
            rows.append({"study": s.get("study"), "group": s.get("group"), **_stable_row(r)})
    return TuningData(
        sorted(studies, key=lambda s: str(s.get("study"))),
        runs,
        pd.DataFrame(rows),
        sorted(horizons, key=lambda s: str(s.get("study"))),
    )


def _stable_row(r: dict[str, Any]) -> dict[str, Any]:
    row = {k: r.get(k) for k in ("cell", "cell_id", "value", "status", "probes", "stable")}
    row |= {FACTOR_PREFIX + f: v for f, v in (r.get("factors") or {}).items()}
    return row


def tuning_frame(runs: list[StoredRun]) -> pd.DataFrame:
    """One row per tuning run (the newest run of each trial id): study, group, purpose, trial
    number, cell, outcome, the step a pruner stopped it at, the values it trained at
    (``param.<name>``), its factor levels and summary metrics."""
    rows, seen = [], set()
    for run in runs:  # newest first
        tags = run.tags
        tid = tags.get(TRIAL_ID) or run.run_id
        if tid in seen:
            continue
        seen.add(tid)
        try:
            values = json.loads(tags.get(TUNING_PARAMS) or "{}")
        except ValueError:
            values = {}
        params = run.params or {}
        row = {
            "run_id": run.run_id,
            "trial_id": tid,
            "study": tags.get(STUDY, ""),
            "group": tags.get(TUNING_GROUP, ""),
            "purpose": tags.get(TUNING_PURPOSE, PURPOSE_STUDY),
            "number": as_int(tags.get(TUNING_NUMBER)),
            "cell": tags.get(CELL, ""),
            "outcome": tags.get(OUTCOME, ""),
            "stopped_at": as_int(tags.get(TUNING_STOPPED)),
            "optimizer": params.get(f"{FACTOR_PREFIX}optimizer") or params.get("optim.name", ""),
        }
        row |= {f"param.{k}": float(v) for k, v in values.items()}
        row |= {k: v for k, v in params.items() if k.startswith(FACTOR_PREFIX)}
        row |= dict(run.metrics or {})
        rows.append(row)
    return pd.DataFrame(rows)


def _read_json(store: RecordStore, run: StoredRun, name: str) -> dict[str, Any] | None:
    """A run's JSON artifact (None: a study run whose driver died before it wrote it)."""
    text = store.artifact_text(run, name)
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# -- the section ---------------------------------------------------------------------------------
class Tuning:
    """Per study, the chosen values and the best objective; the sensitivity curve; the
    largest stable learning rate per cell."""

    title = "Tuning"

    def applies(self, ctx: ReportContext) -> bool:
        """Only a suite with a ``tune`` block was tuned."""
        return _tune_block(ctx) is not None

    def build(self, ctx: ReportContext) -> list[Block]:
        exp = ctx.exp
        data = (
            load_tuning(exp.store, exp.experiment_id)
            if exp.store is not None and exp.experiment_id
            else None
        )
        return tuning_blocks(data, _tune_block(ctx))


def _tune_block(ctx: ReportContext) -> dict[str, Any] | None:
    for sweep in ctx.exp.sweeps:
        if sweep.resolved and sweep.resolved.get("tune"):
            return sweep.resolved["tune"]
    return None


def tuning_blocks(data: TuningData | None, tune: dict[str, Any] | None) -> list[Block]:
    """The section's blocks (a note alone for a suite that was not tuned)."""
    if data is None or not data.studies:
        if tune:
            return [
                Para("This suite has a tune block, but no study has been recorded yet.", note=True)
            ]
        return [
            Para("Not tuned: every trial ran at the hyper-parameters its suite wrote.", note=True)
        ]
    blocks: list[Block] = [Para(_method_text(data, tune)), chosen_table(data)]
    blocks += neighbourhood_blocks(neighbourhood_frame(data))
    blocks += horizon_blocks(data, tune)
    studies = data.runs[data.runs["purpose"] == PURPOSE_STUDY] if len(data.runs) else data.runs
    x = _x_param(data)
    if len(studies) and x is not None and f"param.{x}" in studies:
        blocks.append(sensitivity_figure(data, studies, x))
    elif len(data.runs) == 0:
        blocks.append(
            Para("No tuning run is recorded, so there is no sensitivity curve.", note=True)
        )
    if len(data.stable):
        blocks += stable_blocks(data.stable)
    return blocks


def _method_text(data: TuningData, tune: dict[str, Any] | None) -> str:
    first = data.studies[0]
    objective = data.objective
    params = first.get("params") or {}
    ranges = join_and(
        [
            f"{n} in [{num(p['low'])}, {num(p['high'])}]" + (" (log)" if p.get("log") else "")
            for n, p in params.items()
        ]
    )
    text = (
        f"{plural(len(data.studies), 'Optuna study', 'Optuna studies')} chose {ranges} for "
        f"{'each group of cells' if len(data.studies) > 1 else 'the whole suite'}"
    )
    if tune:
        per = tune.get("per") or []
        sampler, pruner = tune.get("sampler") or {}, tune.get("pruner") or {}
        steps = tune.get("steps")
        text += (
            (f" (one study per {join_and(per)})" if per else "")
            + f": {tune.get('trials')} trials each, every trial training each cell of its group "
            f"on tuning seeds {tune.get('seeds')} (distinct from the evaluation seeds) for "
            + (f"{steps} steps" if steps else "the suite's own budget")
            + f", sampler {sampler.get('name')} (seed {sampler.get('seed')}), pruner "
            f"{pruner.get('name')}"
        )
    text += f". {budget_text(data)}"
    direction = "highest" if objective == "val_acc" else "lowest"
    text += (
        f". A trial's objective is the mean over its runs of the final {objective} on the "
        f"validation split ({direction} wins; an exploded run counts as the worst value); "
        "a pruned run stopped at an evaluation where it was behind the study's earlier trials. "
        "The evaluation trials then ran at each study's best values, which their recorded "
        "configs hold; test accuracy was never looked at while tuning."
    )
    return text


def chosen_table(data: TuningData) -> Table:
    """One row per study: its group, the chosen values, the objective, the trial counts."""
    names = list(dict.fromkeys(n for s in data.studies for n in (s.get("params") or {})))
    columns = [Column("study")]
    columns += [Column(n, "right") for n in names]
    columns += [Column(data.objective, "right"), Column("trials", "right")]
    rows, attrs = [], []
    for s in data.studies:
        best = s.get("best") or {}
        values = best.get("values") or {}
        t = s.get("trials") or {}
        counts = f"{t.get('complete', 0)} + {t.get('pruned', 0)} pruned" + (
            f", {t['failed']} failed" if t.get("failed") else ""
        )
        row = [Cell(s.get("group") or s.get("study", ""))]
        row += [
            Cell(num(values.get(n), 3) if n in values else "–", {"value": values.get(n, "")})
            for n in names
        ]
        row += [
            Cell(num(best.get("objective"), 4), {"objective": best.get("objective", "")}),
            Cell(counts + ("" if s.get("complete") else " (incomplete)")),
        ]
        rows.append(row)
        attrs.append({"study": s.get("study", ""), "best": json.dumps(values, sort_keys=True)})
    return Table(
        columns,
        rows,
        caption="The values each study chose (its best completed trial) and that trial's "
        "objective; trials = completed + pruned (failed ones are asked again).",
        name="tuning-chosen",
        row_attrs=attrs,
    )


def budget_text(data: TuningData) -> str:
    """The tuning budget against the suite's: "Tuned at 300 of 1,200 steps ..." (a short
    budget favours values that learn fast early: short-horizon bias), or "at the suite's own
    budget"."""
    pairs = {(s.get("steps"), s.get("budget_steps")) for s in data.studies}
    if not pairs or any(b is None for _, b in pairs) or any(t is None for t, _ in pairs):
        return (
            "How the tuning budget compares with the suite's own is not known (a study "
            "summarised before budgets were recorded, or epochs on a dataset of unknown size)"
        )
    short = sorted({(t, b) for t, b in pairs if t < b})
    if not short:
        budget = max(b for _, b in pairs)
        return f"Tuned at the suite's own budget ({budget:,} steps): no short-horizon bias"
    text = "Tuned at " + join_and([f"{t:,} of {b:,} steps" for t, b in short])
    text += (
        " (the suite's own budget): a short tuning budget favours values that learn fast early, "
        "which may not be the best at the full length (short-horizon bias); "
    )
    if data.horizons:
        return text + (
            f"{plural(len(data.horizons), 'group was', 'groups were')} tuned again at the full "
            "budget to measure it (below)"
        )
    return text + "not measured here (`tune.horizon_check: N` re-tunes N groups at full length)"


def _x_param(data: TuningData) -> str | None:
    names = list(dict.fromkeys(n for s in data.studies for n in (s.get("params") or {})))
    return "lr" if "lr" in names else (names[0] if names else None)


# -- the sensitivity curve -----------------------------------------------------------------------
@dataclass
class SensitivityPanel:
    title: str
    lines: list[dict[str, Any]]  # label, x, y, state ("complete" | "pruned" | "exploded"), best


def sensitivity_figure(data: TuningData, runs: pd.DataFrame, x: str) -> Figure:
    metric = f"final_{data.objective}"
    groups = [s.get("group") for s in data.studies]
    facet_of = {s.get("group"): _facet(s) for s in data.studies}
    best_of = {
        s.get("group"): ((s.get("best") or {}).get("values") or {}).get(x) for s in data.studies
    }
    facets = list(dict.fromkeys(facet_of[g] for g in groups))[:MAX_PANELS]
    optimizers = sorted(set(runs["optimizer"].fillna("").astype(str)))  # colours as below
    panels = []
    for facet in facets:
        lines = []
        members = runs[runs["group"].map(facet_of) == facet]
        for opt in optimizers:
            sub = members[members["optimizer"].astype(str) == opt]
            if not len(sub):
                continue
            state = np.where(
                sub["outcome"] == OutcomeLabel.EXPLODED,
                "exploded",
                np.where(sub["outcome"] == PRUNED, "pruned", "complete"),
            )
            bests = {best_of.get(g) for g in sub["group"]} - {None}
            lines.append(
                {
                    "label": opt or "(optimizer)",
                    "x": sub[f"param.{x}"].to_numpy(float),
                    "y": (sub[metric] if metric in sub else pd.Series(np.nan, sub.index)).to_numpy(
                        float
                    ),
                    "state": state,
                    "best": sorted(bests),
                }
            )
        panels.append(SensitivityPanel(facet, lines))
    cut = len(set(facet_of.values())) - len(facets)
    log = any((s.get("params") or {}).get(x, {}).get("log") for s in data.studies)
    return Figure(
        name="tuning-sensitivity",
        draw=partial(draw_sensitivity, panels=panels, x=x, metric=data.objective, log_x=log),
        size=(figures.WIDTH, 0.9 + 2.3 * math.ceil(len(panels) / 2)),
        caption=(
            f"Sensitivity: the final {data.objective} of every tuning run against the {x} it "
            f"trained at{' (log scale)' if log else ''}, one colour per optimizer; the line is "
            f"the median of the completed runs in {BINS} bins, hollow markers are pruned runs "
            "(their value where they stopped), crosses exploded runs (drawn at the worst "
            "value), the dotted line the chosen value. A flat line over a wide range means the "
            f"metric barely depends on {x}."
            + (f" {cut} more panels are in the table only." if cut > 0 else "")
        ),
    )


def _facet(study: dict[str, Any]) -> str:
    levels = {k: v for k, v in (study.get("levels") or {}).items() if k != "optimizer"}
    return "  ·  ".join(f"{k} = {v}" for k, v in levels.items()) or "all cells"


def draw_sensitivity(
    fig: Any, panels: list[SensitivityPanel], x: str, metric: str, log_x: bool
) -> None:
    with figures.style():
        labels = list(dict.fromkeys(ln["label"] for p in panels for ln in p.lines))
        colours = dict(zip(labels, figures.palette(max(1, len(labels))), strict=False))
        ncol = min(max(len(labels), 1), 6)
        strip, body = figures.with_legend_row(fig, len(labels), ncol, True)
        rows, cols = math.ceil(len(panels) / 2), min(2, len(panels))
        axes = body.subplots(rows, cols, squeeze=False)
        handles = {}
        for ax, panel in zip(axes.flat, panels, strict=False):
            finite = np.concatenate([ln["y"][np.isfinite(ln["y"])] for ln in panel.lines] or [[]])
            worst = 0.0 if metric == "val_acc" else (float(finite.max()) if finite.size else 1.0)
            for ln in panel.lines:
                colour = colours[ln["label"]]
                xs, ys, state = ln["x"], ln["y"].copy(), ln["state"]
                ys[state == "exploded"] = worst
                done = state == "complete"
                ax.scatter(xs[done], ys[done], s=14, color=colour, alpha=0.8, linewidths=0)
                ax.scatter(
                    xs[state == "pruned"],
                    ys[state == "pruned"],
                    s=14,
                    facecolors="none",
                    edgecolors=colour,
                    linewidths=0.8,
                )
                ax.scatter(
                    xs[state == "exploded"],
                    ys[state == "exploded"],
                    s=18,
                    marker="x",
                    color=colour,
                    linewidths=0.9,
                )
                bx, by = binned_median(xs[done], ys[done], log_x)
                (h,) = ax.plot(bx, by, color=colour, label=ln["label"])
                handles.setdefault(ln["label"], h)
                for b in ln["best"]:
                    ax.axvline(b, color=colour, linestyle=":", linewidth=0.9)
            if log_x:
                ax.set_xscale("log")
            ax.set_title(panel.title)
            ax.set_xlabel(x)
            ax.set_ylabel(f"final {metric}")
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        if handles:
            figures.put_legend(strip, list(handles.values()), list(handles), ncol, "optimizer")


def binned_median(xs: np.ndarray, ys: np.ndarray, log_x: bool) -> tuple[np.ndarray, np.ndarray]:
    """The median of ``ys`` in ``BINS`` equal bins of x (log-spaced when ``log_x``), at each
    non-empty bin's median x: a smoothed line through a scatter of tuning runs."""
    keep = np.isfinite(xs) & np.isfinite(ys) & ((xs > 0) if log_x else True)
    xs, ys = xs[keep], ys[keep]
    if xs.size == 0:
        return xs, ys
    t = np.log10(xs) if log_x else xs
    if t.max() == t.min():
        return np.array([np.median(xs)]), np.array([np.median(ys)])
    edges = np.linspace(t.min(), t.max(), BINS + 1)
    idx = np.clip(np.digitize(t, edges) - 1, 0, BINS - 1)
    bx, by = [], []
    for b in range(BINS):
        sel = idx == b
        if sel.any():
            bx.append(float(np.median(xs[sel])))
            by.append(float(np.median(ys[sel])))
    return np.array(bx), np.array(by)


# -- the largest stable learning rate ------------------------------------------------------------
def stable_blocks(stable: pd.DataFrame) -> list[Block]:
    """The max-stable-lr chart against depth (one line per other factor combination) and
    the per-cell table."""
    factors = [c[len(FACTOR_PREFIX) :] for c in stable.columns if c.startswith(FACTOR_PREFIX)]
    varying = [f for f in factors if stable[FACTOR_PREFIX + f].nunique() > 1]
    x = "depth" if "depth" in varying else (varying[0] if varying else None)
    others = [f for f in varying if f != x]
    blocks: list[Block] = []
    if x is not None:
        lines = []
        for key, sub in stable.groupby(
            [FACTOR_PREFIX + f for f in others] or (lambda _: ""), sort=False
        ):
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(str(k) for k in key if k != "") or "all cells"
            order = _order(sub[FACTOR_PREFIX + x].tolist())
            sub = sub.set_index(FACTOR_PREFIX + x).loc[order].reset_index()
            lines.append(
                {
                    "label": label,
                    "x": order,
                    "value": sub["value"].to_numpy(float),
                    "status": sub["status"].tolist(),
                }
            )
        lines.sort(key=lambda ln: ln["label"])  # the colours of the sensitivity chart
        blocks.append(
            Figure(
                name="tuning-max-stable-lr",
                draw=partial(
                    draw_stable, lines=lines, x=x, order=_order(stable[FACTOR_PREFIX + x].tolist())
                ),
                size=(figures.WIDTH, 2.8),
                caption=(
                    f"The largest learning rate that does not explode, per cell, against {x}"
                    + (f", one line per {join_and(others)}" if others else "")
                    + ": bracketed by decades from the cell's own lr, then bisected on a log "
                    "scale, on the first tuning seed with the tuning budget. A triangle up is "
                    "a lower bound (even the range's top was stable)."
                ),
            )
        )
    rows = [
        [
            Cell(r["cell"] or "(the cell)"),
            Cell(num(r["value"], 3), {"value": r["value"] if r["value"] is not None else ""}),
            Cell(str(r["status"]).replace("_", " ")),
            Cell(num(r["probes"])),
        ]
        for r in stable.to_dict("records")
    ]
    blocks.append(
        Table(
            [
                Column("cell"),
                Column("max stable lr", "right"),
                Column("bracket"),
                Column("probes", "right"),
            ],
            rows,
            caption="Max stable lr per cell: bracketed (the edge lies between it and the next "
            "probe up), at high (no probe in the range exploded), below low (even the lowest "
            "exploded: no value).",
            name="tuning-max-stable-lr",
        )
    )
    return blocks


_NUMBER = re.compile(r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def _order(labels: list[str]) -> list[str]:
    """Level labels by the number in them (d3 < d20), else as given."""
    nums = [_NUMBER.search(str(lb)) for lb in labels]
    if all(nums):
        return [
            lb
            for _, lb in sorted(
                zip(
                    [float(m.group()) for m in nums],
                    labels,  # type: ignore[union-attr]
                    strict=True,
                )
            )
        ]
    return list(dict.fromkeys(labels))


def draw_stable(fig: Any, lines: list[dict[str, Any]], x: str, order: list[str]) -> None:
    """One line per group of cells against ``x``'s levels (markers only when ``x`` has no
    order, such as an optimizer); a triangle marks a lower bound."""
    with figures.style():
        ax = fig.subplots()
        colours = figures.palette(max(1, len(lines)))
        style = "-" if x == "depth" else "none"
        for ln, colour in zip(lines, colours, strict=False):
            pos = np.array([order.index(v) for v in ln["x"]])
            ax.plot(
                pos,
                ln["value"],
                color=colour,
                marker="o",
                markersize=3.5,
                linestyle=style,
                label=ln["label"],
            )
            top = np.array([s == "at_high" for s in ln["status"]])
            if top.any():
                ax.scatter(pos[top], ln["value"][top], marker="^", s=30, color=colour)
        ax.set_xticks(np.arange(len(order)), order)
        ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel("max stable lr (log)")
        if len(lines) > 1:
            ax.legend(frameon=False)


# -- the neighbourhood of the choice, and the horizon check --------------------------------------
NEIGHBOURHOOD_COLUMNS = [
    "study",
    "group",
    "param",
    "log",
    "objective",
    "direction",
    "best",
    "best_objective",
    "below",
    "below_objective",
    "above",
    "above_objective",
    "second",
    "second_objective",
    "second_status",
    "second_ratio",
    "complete",
    "pruned",
    "steps",
    "budget_steps",
    "tried",
]
# second_status: "evaluated" (the suite's seeds ran there, ``tune.second_best``), "not evaluated"
# (reported only), "none distinct" (every completed trial is close to the best), "not recorded"
# (a study summarised before second-bests were).


def tuning_neighbourhood(exp: Any) -> pd.DataFrame:
    """``neighbourhood_frame`` of an experiment (a ``reports.load.Experiment``), read from
    its store; empty (with its columns) for one that was not tuned."""
    data = (
        load_tuning(exp.store, exp.experiment_id)
        if exp.store is not None and exp.experiment_id
        else None
    )
    return neighbourhood_frame(data)


def neighbourhood_frame(data: TuningData | None) -> pd.DataFrame:
    """One row per study and tuned param: the best value and its objective, the nearest
    values tried below and above it (their trials' objectives; NaN where none was tried), the
    second-best (``second_status`` says whether the suite's seeds ran there), the trial counts
    and budgets, and ``tried``: every completed trial's (value, objective), sorted by value
    (the strip the choice was made from). A study with several params: each param's
    neighbours along its own axis (their trials differ in the other params too)."""
    rows = []
    for s in data.studies if data is not None else []:
        best = s.get("best") or {}
        second = s.get("second")
        values = best.get("values") or {}
        tried = [t for t in s.get("tried") or [] if t.get("objective") is not None]
        for name, p in (s.get("params") or {}).items():
            if name not in values:
                continue
            x = float(values[name])
            strip = _strip(tried, name)
            below = [(v, o) for v, o in strip if v < x and not math.isclose(v, x)]
            above = [(v, o) for v, o in strip if v > x and not math.isclose(v, x)]
            rows.append(
                {
                    "study": s.get("study", ""),
                    "group": s.get("group", ""),
                    "param": name,
                    "log": bool(p.get("log")),
                    "objective": s.get("objective", ""),
                    "direction": s.get("direction", ""),
                    "best": x,
                    "best_objective": _float(best.get("objective")),
                    "below": below[-1][0] if below else math.nan,
                    "below_objective": below[-1][1] if below else math.nan,
                    "above": above[0][0] if above else math.nan,
                    "above_objective": above[0][1] if above else math.nan,
                    "second": _float((second or {}).get("values", {}).get(name)),
                    "second_objective": _float((second or {}).get("objective")),
                    "second_status": _second_status(s),
                    "second_ratio": _float(s.get("second_best_ratio")),
                    "complete": len(tried),
                    "pruned": sum(t.get("state") == "pruned" for t in s.get("tried") or []),
                    "steps": s.get("steps"),
                    "budget_steps": s.get("budget_steps"),
                    "tried": strip,
                }
            )
    return pd.DataFrame(rows, columns=NEIGHBOURHOOD_COLUMNS)


def _strip(tried: list[dict[str, Any]], name: str) -> list[tuple[float, float]]:
    """(value, objective) of the completed trials along ``name``, sorted; a value tried more
    than once (a requeued trial) counts once, at its mean objective."""
    by_value: dict[float, list[float]] = {}
    for t in tried:
        v = (t.get("values") or {}).get(name)
        if v is not None:
            by_value.setdefault(float(v), []).append(float(t["objective"]))
    return [(v, float(np.mean(o))) for v, o in sorted(by_value.items())]


def _second_status(study: dict[str, Any]) -> str:
    if "second" not in study:
        return "not recorded"
    if study.get("second") is None:
        return "none distinct"
    return "evaluated" if study.get("second_best_runs") else "not evaluated"


def _float(value: Any) -> float:
    number = as_float(value)
    return math.nan if number is None else number


def neighbourhood_blocks(frame: pd.DataFrame) -> list[Block]:
    """The neighbourhood table, and a note naming the studies without a distinct
    second-best."""
    if not len(frame):
        return []
    multi = frame["study"].nunique() < len(frame)

    def at(value: float, objective: float) -> Cell:
        if not math.isfinite(value):
            return Cell("–", {"value": "", "objective": ""})
        text = f"{num(value, 3)} ({num(objective, 4)})"
        return Cell(
            text, {"value": value, "objective": objective if math.isfinite(objective) else ""}
        )

    rows, attrs = [], []
    for r in frame.to_dict("records"):
        second = at(r["second"], r["second_objective"])
        if not math.isfinite(r["second"]):
            second.text = r["second_status"]
        elif r["second_status"] != "evaluated":
            second.text += f", {r['second_status']}"
        row = [Cell(r["group"] or r["study"])] + ([Cell(r["param"])] if multi else [])
        row += [
            at(r["below"], r["below_objective"]),
            at(r["best"], r["best_objective"]),
            at(r["above"], r["above_objective"]),
            second,
            Cell(f"{r['complete']} + {r['pruned']} pruned"),
        ]
        rows.append(row)
        attrs.append({"study": r["study"], "param": r["param"], "status": r["second_status"]})
    first = frame.iloc[0]
    param = "" if multi else f" {first['param']}"
    columns = [Column("study")] + ([Column("param")] if multi else [])
    columns += [
        Column(f"below{param}", "right"),
        Column(f"best{param}", "right"),
        Column(f"above{param}", "right"),
        Column("second best", "right"),
        Column("tried", "right"),
    ]
    ratios = frame["second_ratio"].dropna().unique().tolist()
    ratio = num(ratios[0]) if len(ratios) == 1 else "2"
    blocks: list[Block] = [
        Table(
            columns,
            rows,
            caption="The neighbourhood of each choice, as tried values with their trial's "
            f"{first['objective']} in brackets: the best, the nearest completed trials below "
            "and above it, and the second-best (the best trial at a distinct value: at least a "
            f"factor {ratio} away on a log scale, 10% of the range on a linear one); "
            "'evaluated': the suite's seeds also ran there (tune_rank 2), so a claim can be "
            "judged again at it. A best with no tried value on one side lies at the edge of "
            "what was searched.",
            name="tuning-neighbourhood",
            row_attrs=attrs,
        )
    ]
    lonely = frame[frame["second_status"] == "none distinct"]["study"].unique().tolist()
    if lonely:
        blocks.append(
            Para(
                f"No distinct second-best in {join_and(lonely)}: every completed trial lies "
                "close to the best, so nothing ran at a second value for its cells.",
                note=True,
            )
        )
    return blocks


def horizon_frame(data: TuningData | None) -> pd.DataFrame:
    """One row per horizon check: the group, the short-budget study's best values and
    objective, the full-budget re-tune's, their steps, and whether the two bests agree (no
    param ``distinct`` by more than a factor ``HORIZON_AGREE``; None while either is
    missing)."""
    columns = [
        "group", "study", "short_steps", "full_steps", "short_best", "short_objective",
        "full_best", "full_objective", "agree", "complete",
    ]  # fmt: skip
    if data is None:
        return pd.DataFrame(columns=columns)
    short = {s.get("group"): s for s in data.studies}
    rows = []
    for h in data.horizons:
        s = short.get(h.get("group")) or {}
        a = (s.get("best") or {}).get("values")
        b = (h.get("best") or {}).get("values")
        params = h.get("params") or {}
        rows.append(
            {
                "group": h.get("group", ""),
                "study": h.get("study", ""),
                "short_steps": s.get("steps"),
                "full_steps": h.get("steps"),
                "short_best": a,
                "short_objective": _float((s.get("best") or {}).get("objective")),
                "full_best": b,
                "full_objective": _float((h.get("best") or {}).get("objective")),
                "agree": None if not a or not b else not distinct(a, b, params, HORIZON_AGREE),
                "complete": bool(h.get("complete")),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def horizon_blocks(data: TuningData, tune: dict[str, Any] | None) -> list[Block]:
    frame = horizon_frame(data)
    if not len(frame):
        return []

    def values(v: Any) -> str:
        return ", ".join(f"{k}={num(x, 3)}" for k, x in v.items()) if v else "–"

    rows = []
    for r in frame.to_dict("records"):
        agree = {True: "yes", False: "no", None: "–"}[r["agree"]]
        rows.append(
            [
                Cell(r["group"]),
                Cell(f"{values(r['short_best'])} ({num(r['short_objective'], 4)})"),
                Cell(f"{values(r['full_best'])} ({num(r['full_objective'], 4)})"),
                Cell(agree + ("" if r["complete"] else " (incomplete)"), {"agree": agree}),
            ]
        )
    steps = frame["short_steps"].dropna().unique().tolist()
    full = frame["full_steps"].dropna().unique().tolist()
    short_title = f"best at {num(steps[0])} steps" if len(steps) == 1 else "best, short budget"
    full_title = f"best at {num(full[0])} steps" if len(full) == 1 else "best, full budget"
    n = int(frame["agree"].eq(True).sum())
    return [
        Table(
            [
                Column("study"),
                Column(short_title, "right"),
                Column(full_title, "right"),
                Column(f"within {HORIZON_AGREE:g}x", "right"),
            ],
            rows,
            caption=f"Short-horizon bias: {plural(len(frame), 'group')} (a seeded choice) "
            "tuned again at the suite's own budget, in a second study with the same sampler "
            f"seed; {n} of {len(frame)} chose the same values within a factor "
            f"{HORIZON_AGREE:g} (objective in brackets). Where they differ, the short budget "
            "picked another value than the full length would have.",
            name="tuning-horizon",
            row_attrs=[{"group": g} for g in frame["group"]],
        )
    ]
