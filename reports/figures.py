"""Charts. Each function draws prepared numbers into a matplotlib figure it is given.

Drawing into a given figure (rather than creating one) lets the HTML renderer draw a chart at its
natural size and the PDF renderer draw the same chart into a page; neither touches pyplot's global
state, so building a report never opens a window or leaks figures, whatever the backend.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import matplotlib as mpl

if "matplotlib.pyplot" not in sys.modules:  # headless: never probe for a GUI backend
    mpl.use("Agg")

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LinearSegmentedColormap, PowerNorm, to_rgb
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D

from gradatlas.style import BASE_RC, OUTCOME_COLORS

WIDTH = 7.0  # inches: the PDF text width, so charts look the same in both formats
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 1))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
# Matplotlib 3.10 renamed boxplot's vert=False; 3.11 deprecates the old spelling.
HORIZONTAL = (
    {"orientation": "horizontal"}
    if tuple(int(x) for x in mpl.__version__.split(".")[:2]) >= (3, 10)
    else {"vert": False}
)
RATE_NORM_GAMMA = 0.4  # 5% lands at ~30% of the colour ramp: visibly not white

RC = BASE_RC | {
    "legend.title_fontsize": 7.5,
    "figure.titlesize": 9,
    "svg.fonttype": "none",  # real text in the SVG: smaller, searchable, selectable
    "svg.hashsalt": "gradatlas",  # deterministic ids, so identical inputs give identical files
    "pdf.fonttype": 42,  # TrueType in the PDF: text extracts cleanly
    "axes.titlepad": 4,
    "lines.linewidth": 1.4,
}


@contextmanager
def style() -> Iterator[None]:
    """The report's look, applied only while drawing (rcParams are restored afterwards)."""
    with sns.axes_style("whitegrid"), mpl.rc_context(RC):
        yield


def palette(n: int) -> list[tuple[float, float, float]]:
    """Colour-blind-safe colours for ``n`` lines (husl beyond ten, where it runs out)."""
    return sns.color_palette("colorblind" if n <= 10 else "husl", n)


def rate_cmap(outcome: str) -> LinearSegmentedColormap:
    """White at 0, the outcome's colour at 50%, a dark shade of it at 100%."""
    base = np.array(to_rgb(OUTCOME_COLORS.get(outcome, "#444444")))
    return LinearSegmentedColormap.from_list(
        f"rate_{outcome}", [(1, 1, 1), tuple(base), tuple(base * 0.62)]
    )


def rate_norm() -> PowerNorm:
    """The one colour scale every rate heatmap shares (see ``RATE_NORM_GAMMA``)."""
    return PowerNorm(gamma=RATE_NORM_GAMMA, vmin=0.0, vmax=1.0)


def _grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return math.ceil(n / cols), cols


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def with_legend_row(
    fig: Figure | SubFigure, entries: int, ncol: int, title: bool
) -> tuple[SubFigure, SubFigure]:
    """A strip on top for the legend and the rest for panels, as two subfigures.

    A figure-level "outside" legend is placed against the whole figure, which in the PDF is the
    whole page; a legend in its own subfigure stays with its chart in both formats.
    """
    rows = math.ceil(entries / max(ncol, 1))
    strip = 0.1 + 0.16 * rows + (0.17 if title else 0.0)
    height = fig.bbox.height / fig.dpi
    top, body = fig.subfigures(2, 1, height_ratios=[strip, max(height - strip, 0.5)])
    return top, body


def put_legend(
    strip: SubFigure, handles: Sequence[Any], labels: Sequence[str], ncol: int, title: str = ""
) -> None:
    strip.legend(
        handles,
        labels,
        loc="center",
        ncol=ncol,
        title=title or None,
        frameon=False,
        borderaxespad=0.0,
        handlelength=2.6,
        columnspacing=1.6,
    )


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _decade(value: float, _pos: Any = None) -> str:
    """10⁻³ with Unicode superscripts: reads like mathtext, costs nothing to lay out."""
    if value <= 0:
        return ""
    exp = math.log10(value)
    if abs(exp - round(exp)) > 1e-9:
        return ""
    exp = round(exp)
    return {0: "1", 1: "10"}.get(exp, "10" + str(exp).translate(_SUPERSCRIPT))


def log_y(ax: Any) -> None:
    """Log y axis labelled at decades (thinned to at most ~7 labels); when it spans under two
    decades, the 2x and 5x minor ticks are labelled too, so it never shows a lone "1"."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(mpl.ticker.LogLocator(base=10, numticks=8))
    ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(_decade))

    def minor(value: float, _pos: Any = None) -> str:
        lo, hi = ax.get_ylim()
        if lo <= 0 or hi / lo > 100 or value <= 0:
            return ""
        lead = value / 10 ** math.floor(math.log10(value) + 1e-9)
        return f"{value:g}" if round(lead) in (2, 5) and abs(lead - round(lead)) < 1e-6 else ""

    ax.yaxis.set_minor_formatter(mpl.ticker.FuncFormatter(minor))


# -- outcome rates: heatmaps ---------------------------------------------------------------------
@dataclass
class HeatSpec:
    """What one heatmap figure shows: ``data`` has columns facet, row, col, k, n."""

    data: pd.DataFrame
    outcome: str
    row_title: str
    col_title: str
    row_levels: list[str]
    col_levels: list[str]
    facets: list[str]


def heat_panel_cols(n_cols: int, n_facets: int) -> int:
    """How many facets fit side by side at a readable square width (about 0.42 in)."""
    panel_w = 0.42 * n_cols + 0.15
    return max(1, min(n_facets, int((WIDTH - 1.3) // panel_w)))


def _heat_row_h(spec: HeatSpec) -> float:
    return 0.28 * len(spec.row_levels) + 0.72


def heat_size(spec: HeatSpec) -> tuple[float, float]:
    rows, _ = _grid_shape(len(spec.facets), heat_panel_cols(len(spec.col_levels), len(spec.facets)))
    return WIDTH, 0.5 + rows * _heat_row_h(spec)


def _wrap_title(text: str, width_in: float) -> str:
    """Facet titles ("init = x  ·  optimizer = y") split at the dots when too wide."""
    if len(text) * 0.062 <= width_in:
        return text
    return "\n".join(part.strip() for part in text.split("·"))


def rate_heatmaps(fig: Figure, spec: HeatSpec) -> None:
    """One heatmap per facet, squares annotated with the rate and k/n, one shared colour bar.

    The colour scale is the same in every facet and in both outcome figures, and it is a power
    law so that a square at 5% is visibly tinted while 0% stays white (its k/n in light grey);
    missing combinations (not in the grid, or not run yet) are hatched grey so they never read
    as 0%.
    """
    n_rows, n_cols = _grid_shape(
        len(spec.facets), heat_panel_cols(len(spec.col_levels), len(spec.facets))
    )
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False))
    cmap, norm = rate_cmap(spec.outcome), rate_norm()
    mesh = None
    dense = len(spec.row_levels) * len(spec.col_levels) > 48
    panel_w = (WIDTH - 1.3) / n_cols
    counts = _heat_counts(spec)
    for idx, (ax, facet) in enumerate(zip(axes.flat, spec.facets, strict=False)):
        k, n = counts.get(facet, counts[None])
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = k / n
        ax.set_facecolor("#eeeeee")
        mesh = ax.pcolormesh(
            np.ma.masked_invalid(rate), cmap=cmap, norm=norm, edgecolors="white", linewidth=1.0
        )
        for i in range(rate.shape[0]):
            for j in range(rate.shape[1]):
                _annotate_square(ax, i, j, rate[i, j], k[i, j], n[i, j], norm, dense)
        ax.set_xlim(0, len(spec.col_levels))
        ax.set_ylim(len(spec.row_levels), 0)
        ax.set_xticks(np.arange(len(spec.col_levels)) + 0.5, spec.col_levels)
        ax.set_yticks(np.arange(len(spec.row_levels)) + 0.5, spec.row_levels)
        ax.tick_params(length=0, pad=2)
        _rotate_if_long(ax, spec.col_levels, 0.42)
        ax.grid(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        if facet:
            ax.set_title(_wrap_title(facet, panel_w), fontsize=7.5)
        first_col = idx % n_cols == 0
        last_row = idx // n_cols == n_rows - 1 or idx + n_cols >= len(spec.facets)
        ax.set_ylabel(spec.row_title if first_col else "")
        ax.set_xlabel(spec.col_title if last_row else "")
        if not first_col:
            ax.set_yticklabels([])
    _hide_unused(axes, len(spec.facets))
    if mesh is not None:
        height = fig.bbox.height / fig.dpi
        bar = fig.colorbar(
            mesh,
            ax=axes.ravel().tolist(),
            shrink=min(0.9, 3.0 / height),
            aspect=18,
            pad=0.03,
            anchor=(0.0, 1.0),
        )
        ticks = [0, 0.05, 0.25, 0.5, 1.0]
        bar.set_ticks(ticks, labels=[f"{100 * t:.0f}%" for t in ticks])
        bar.set_label(f"{spec.outcome} rate")
        bar.outline.set_visible(False)
        if bar.solids is not None:  # keep the colour ramp vector (matplotlib rasterizes it)
            bar.solids.set_rasterized(False)
            bar.solids.set_edgecolor("face")  # no hairline seams between the ramp's quads


def _heat_counts(spec: HeatSpec) -> dict[str | None, tuple[np.ndarray, np.ndarray]]:
    """Per facet, k and n summed over the data of each (row, column) square, NaN where it has
    none (what a pivot table reindexed to the levels gives, at a fraction of its cost); the key
    None holds an all-NaN pair of the right shape."""
    at_row = {lv: i for i, lv in enumerate(spec.row_levels)}
    at_col = {lv: j for j, lv in enumerate(spec.col_levels)}
    shape = (len(spec.row_levels), len(spec.col_levels))
    out: dict[str | None, tuple[np.ndarray, np.ndarray]] = {
        None: (np.full(shape, np.nan), np.full(shape, np.nan))
    }
    d = spec.data
    for facet, row, col, k, n in zip(d["facet"], d["row"], d["col"], d["k"], d["n"], strict=True):
        i, j = at_row.get(row), at_col.get(col)
        if i is None or j is None:
            continue
        kk, nn = out.setdefault(facet, (np.full(shape, np.nan), np.full(shape, np.nan)))
        kk[i, j] = k if np.isnan(kk[i, j]) else kk[i, j] + k
        nn[i, j] = n if np.isnan(nn[i, j]) else nn[i, j] + n
    return out


def _annotate_square(
    ax: Any, i: int, j: int, rate: float, k: float, n: float, norm: PowerNorm, dense: bool
) -> None:
    x, y = j + 0.5, i + 0.5
    if not np.isfinite(rate):
        ax.add_patch(
            mpl.patches.Rectangle(
                (j, i), 1, 1, fill=False, hatch="///", edgecolor="#bbbbbb", linewidth=0
            )
        )
        ax.text(x, y, "not run", ha="center", va="center", fontsize=5.5, color="#777777")
        return
    kk, nn = int(k), int(n)
    if kk == 0:
        ax.text(x, y, f"0/{nn}", ha="center", va="center", fontsize=5.5, color="#a8a8a8")
        return
    text = f"{100 * rate:.0f}%" if dense else f"{100 * rate:.0f}%\n{kk}/{nn}"
    ax.text(
        x,
        y,
        text,
        ha="center",
        va="center",
        fontsize=5.5 if dense else 6.3,
        linespacing=1.05,
        color="white" if norm(rate) > 0.62 else "#222222",
        fontweight="bold",
    )


def _rotate_if_long(ax: Any, labels: Sequence[str], inch_per_label: float) -> None:
    """Tilt x labels that would collide: longer than the space their column has."""
    longest = max((len(line) for s in labels for line in s.split("\n")), default=0)
    if longest * 0.055 > inch_per_label:  # ~0.055 in per character at 7 pt
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")


# -- convergence: curves -------------------------------------------------------------------------
@dataclass
class CurvePanel:
    title: str
    ylabel: str
    log: bool
    lines: list[tuple[str, Any, dict[str, np.ndarray]]]  # (label, colour, band)
    hline: tuple[float, str] | None = None
    styles: dict[str, Any] = field(default_factory=dict)  # label -> line style (default solid)
    # Labels left out of the y limits (exploded trials' losses), marked where they end instead.
    ylim_skip: tuple[str, ...] = ()


def curves_size(n_rows: int) -> tuple[float, float]:
    return WIDTH, 0.7 + 1.9 * n_rows


def curve_grid(
    fig: Figure,
    panels: list[list[CurvePanel]],
    legend_title: str,
    legend: Sequence[tuple[str, Any, Any]] | None = None,
    legend_cols: int | None = None,
) -> None:
    """Rows of panels, each line a median with its interquartile band; one legend on top
    (``legend``: its entries as (label, colour, line style) instead of one per line label, in
    ``legend_cols`` columns, filled column by column; a colour of "none" leaves a gap)."""
    n_rows, n_cols = len(panels), max(len(r) for r in panels)
    labels = list(dict.fromkeys(label for row in panels for p in row for label, _, _ in p.lines))
    if legend is not None:
        labels = [label for label, _, _ in legend]
    ncol = legend_cols or min(max(len(labels), 1), 6)
    strip, body = with_legend_row(fig, len(labels), ncol, bool(legend_title))
    axes = body.subplots(n_rows, n_cols, squeeze=False, sharex="col")
    handles: dict[str, Any] = {}
    for r, row in enumerate(panels):
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(row):
                ax.set_visible(False)
                continue
            panel = row[c]
            for label, colour, b in panel.lines:
                style = panel.styles.get(label, "-")
                (h,) = ax.plot(b["step"], b["median"], color=colour, label=label, linestyle=style)
                if (b["count"] > 1).any():
                    ax.fill_between(
                        b["step"], b["q25"], b["q75"], color=colour, alpha=0.18, linewidth=0
                    )
                if len(b["step"]) == 1:  # a single point (exploded at step 0) must still show
                    ax.plot(b["step"], b["median"], "o", color=colour, markersize=3)
                handles.setdefault(label, h)
            if panel.log:
                log_y(ax)
                _robust_ylim(ax, [ln for ln in panel.lines if ln[0] not in panel.ylim_skip])
            for label, colour, b in panel.lines:
                if label in panel.ylim_skip and len(b["step"]):  # where it ended, on the axes
                    top = ax.get_ylim()[1]
                    y = min(float(b["median"][-1]), top) if np.isfinite(b["median"][-1]) else top
                    ax.plot(
                        b["step"][-1], y, "^", color=colour, markersize=4, clip_on=False, zorder=5
                    )
            if panel.hline is not None:
                ax.axhline(panel.hline[0], color="#555555", linestyle=":", linewidth=0.9)
                ax.annotate(
                    panel.hline[1],
                    (1.0, panel.hline[0]),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="bottom",
                    fontsize=6,
                    color="#555555",
                )
            ax.set_title(panel.title)
            ax.set_ylabel(panel.ylabel)
            if r == n_rows - 1 or (r + 1 < n_rows and c >= len(panels[r + 1])):
                ax.set_xlabel("step")
    if legend is not None:
        keys = [Line2D([], [], color=c, linestyle=ls) for _, c, ls in legend]
        put_legend(strip, keys, labels, ncol, legend_title)
    elif handles:
        put_legend(strip, list(handles.values()), list(handles.keys()), ncol, legend_title)


def _robust_ylim(ax: Any, lines: list[tuple[str, Any, dict[str, np.ndarray]]]) -> None:
    """Limits from the medians and the lower quartiles, not the upper band: one exploded trial's
    loss of 1e16 at step 0 would otherwise flatten every other curve to a line."""
    meds = [b["median"] for _, _, b in lines]
    lows = [b["q25"] for _, _, b in lines]
    vals = np.concatenate(meds + lows) if meds else np.array([])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size:
        top = float(np.max(np.concatenate(meds)[np.isfinite(np.concatenate(meds))]))
        ax.set_ylim(float(vals.min()) / 1.5, top * 2.0)


# -- steps to target -----------------------------------------------------------------------------
@dataclass
class StepsPanel:
    factor: str
    levels: list[str]
    values: dict[str, np.ndarray]  # level -> steps_to_target of trials that reached it
    reached: dict[str, tuple[int, int]]  # level -> (reached, trials)


def steps_size(level_counts: Sequence[int]) -> tuple[float, float]:
    return WIDTH, 0.55 + sum(0.24 * n + 0.42 for n in level_counts)


def steps_to_target(fig: Figure, panels: list[StepsPanel], target_text: str) -> None:
    """Per factor, the distribution of steps-to-target of the trials that reached it: one
    horizontal box and the individual trials per level, labelled with how many of the level's
    trials got there. Horizontal, so long level labels never need rotating."""
    counts = [len(p.levels) for p in panels]
    axes = fig.subplots(
        len(panels),
        1,
        squeeze=False,
        sharex=True,
        gridspec_kw={"height_ratios": [c + 0.6 for c in counts]},
    )[:, 0]
    colour = OUTCOME_COLORS["converged"]
    rng = np.random.default_rng(0)
    for ax, p in zip(axes, panels, strict=True):
        data = [p.values.get(lv, np.array([])) for lv in p.levels]
        pos = np.arange(len(p.levels))
        has = [i for i, d in enumerate(data) if len(d)]
        if has:
            ax.boxplot(
                [data[i] for i in has],
                positions=pos[has],
                widths=0.55,
                **HORIZONTAL,
                showfliers=False,
                patch_artist=True,
                boxprops={"facecolor": (*to_rgb(colour), 0.25), "edgecolor": colour},
                medianprops={"color": "#1b4d47"},
                whiskerprops={"color": colour},
                capprops={"color": colour},
            )
            for i in has:
                jitter = rng.uniform(-0.16, 0.16, len(data[i]))
                ax.plot(data[i], pos[i] + jitter, "o", color=colour, markersize=2.2, alpha=0.6)
        labels = []
        for lv in p.levels:
            k, n = p.reached.get(lv, (0, 0))
            labels.append(f"{lv}  ({k}/{n})")
        ax.set_yticks(pos, labels)
        ax.set_ylim(len(p.levels) - 0.5, -0.5)
        ax.set_ylabel(p.factor, fontweight="bold")  # vertical: never read as a level label
        ax.grid(axis="y", visible=False)
    axes[-1].set_xlabel(f"steps to {target_text}")


@dataclass
class ProfileLine:
    label: str
    colour: Any
    linestyle: Any
    marker: str
    profile: dict[str, np.ndarray]


@dataclass
class ProfilePanel:
    title: str
    ylabel: str
    xlabel: str
    log: bool
    lines: list[ProfileLine]
    ylim: tuple[float, float] | None = None


def profiles_size(n_panels: int, cols: int) -> tuple[float, float]:
    rows, _ = _grid_shape(n_panels, cols)
    return WIDTH, 0.9 + 2.3 * rows


def profile_grid(fig: Figure, panels: list[ProfilePanel], cols: int, legend_title: str) -> None:
    """Per-layer curves (median over seeds and other factors, IQR band), one panel per depth."""
    n_rows, n_cols = _grid_shape(len(panels), cols)
    labels = list(dict.fromkeys(line.label for p in panels for line in p.lines))
    ncol = min(max(len(labels), 1), 4)
    strip, body = with_legend_row(fig, len(labels), ncol, bool(legend_title))
    axes = body.subplots(n_rows, n_cols, squeeze=False)
    handles: dict[str, Any] = {}
    for ax, p in zip(axes.flat, panels, strict=False):
        for line in p.lines:
            prof = line.profile
            x, y = prof["index"], prof["median"]
            ok = np.isfinite(y) & ((y > 0) if p.log else True)
            if not ok.any():
                continue
            (h,) = ax.plot(
                x[ok],
                y[ok],
                color=line.colour,
                linestyle=line.linestyle,
                marker=line.marker,
                markersize=2.5,
                linewidth=1.2,
                markevery=max(1, int(ok.sum()) // 12),
            )
            lo, hi = prof["q25"][ok], prof["q75"][ok]
            if np.any(hi > lo):
                ax.fill_between(
                    x[ok],
                    np.maximum(lo, 1e-300) if p.log else lo,
                    hi,
                    color=line.colour,
                    alpha=0.12,
                    linewidth=0,
                )
            handles.setdefault(line.label, h)
        if p.log:
            log_y(ax)
        if p.ylim:
            ax.set_ylim(*p.ylim)
        ax.set_title(p.title)
        ax.set_xlabel(p.xlabel)
        ax.set_ylabel(p.ylabel)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True, nbins=8))
    _hide_unused(axes, len(panels))
    if handles:
        put_legend(strip, list(handles.values()), list(handles.keys()), ncol, legend_title)


# -- factor effects ------------------------------------------------------------------------------
def effects_size(level_counts: Sequence[int]) -> tuple[float, float]:
    return WIDTH, 0.9 + sum(0.22 * n + 0.45 for n in level_counts)


def factor_effects(
    fig: Figure,
    effects: pd.DataFrame,
    factors: list[str],
    levels: dict[str, list[str]],
    accuracy: str | None,
) -> None:
    """Rows: factors; columns: convergence rate, explosion rate, and the accuracy named
    ``accuracy`` (none when None); each level a dot with its 95% interval, on shared axes per
    column so effect sizes compare across factors."""
    metrics = [
        ("conv", "convergence rate", OUTCOME_COLORS["converged"], True),
        ("expl", "explosion rate", OUTCOME_COLORS["exploded"], True),
    ]
    if accuracy is not None:
        metrics.append(("acc", accuracy, "#444444", False))
    counts = [len(levels[f]) for f in factors]
    axes = fig.subplots(
        len(factors),
        len(metrics),
        squeeze=False,
        sharex="col",
        gridspec_kw={"height_ratios": [c + 0.6 for c in counts]},
    )
    for r, f in enumerate(factors):
        d = effects[effects["factor"] == f].set_index("level").reindex(levels[f])
        y = np.arange(len(levels[f]))
        for c, (key, title, colour, is_rate) in enumerate(metrics):
            ax = axes[r, c]
            mid = d[f"{key}_rate" if is_rate else f"{key}_mean"].to_numpy(dtype=float)
            lo, hi = d[f"{key}_lo"].to_numpy(dtype=float), d[f"{key}_hi"].to_numpy(dtype=float)
            err = np.vstack(
                [np.where(np.isfinite(lo), mid - lo, 0), np.where(np.isfinite(hi), hi - mid, 0)]
            )
            ax.errorbar(
                mid, y, xerr=err, fmt="o", color=colour, markersize=3.5, elinewidth=1.2, capsize=2
            )
            ax.set_yticks(y, levels[f] if c == 0 else [""] * len(y))
            ax.set_ylim(len(y) - 0.5, -0.5)
            ax.grid(axis="y", visible=False)
            if is_rate:
                ax.set_xlim(-0.03, 1.03)
                ax.xaxis.set_major_formatter(mpl.ticker.PercentFormatter(1.0, decimals=0))
            if r == 0:
                ax.set_title(title)
            if c == 0:
                ax.set_ylabel(f, fontweight="bold")  # vertical: never read as a level label


# -- gradient norm over training -----------------------------------------------------------------
@dataclass
class NormLine:
    label: str
    colour: Any
    linestyle: Any
    global_norm: dict[str, np.ndarray] | None
    first_layer: dict[str, np.ndarray] | None


def norms_over_training(
    fig: Figure, lines: list[NormLine], explode_at: float | None, vanish_at: float | None
) -> None:
    """Global and first-layer gradient norm against step for a few representative cells."""
    strip, body = with_legend_row(fig, len(lines), 2, False)
    axes = body.subplots(1, 2, squeeze=False)[0]
    panels = [
        ("global gradient norm", "global_norm", explode_at, "explosion threshold"),
        ("first-layer gradient norm", "first_layer", vanish_at, "vanishing threshold"),
    ]
    for ax, (title, attr, hline, hname) in zip(axes, panels, strict=True):
        for line in lines:
            b = getattr(line, attr)
            if b is None:
                continue
            ok = b["median"] > 0
            if not ok.any():
                continue
            ax.plot(
                b["step"][ok],
                b["median"][ok],
                color=line.colour,
                linestyle=line.linestyle,
                label=line.label,
            )
            if ok.sum() == 1:
                ax.plot(b["step"][ok], b["median"][ok], "o", color=line.colour, markersize=3)
            if (b["count"] > 1).any():
                ax.fill_between(
                    b["step"][ok],
                    np.maximum(b["q25"][ok], 1e-300),
                    b["q75"][ok],
                    color=line.colour,
                    alpha=0.15,
                    linewidth=0,
                )
        log_y(ax)
        if hline is not None:
            ax.axhline(hline, color="#555555", linestyle=":", linewidth=0.9)
            ax.annotate(
                hname,
                (1.0, hline),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=6,
                color="#555555",
            )
        ax.set_title(title)
        ax.set_xlabel("step")
    handles = [Line2D([], [], color=ln.colour, linestyle=ln.linestyle) for ln in lines]
    put_legend(strip, handles, [ln.label for ln in lines], 2)
