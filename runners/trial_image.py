"""One small PNG per trial, for its MLflow run: what the trial looked like, without a click.

``trial_png(record)`` draws two panels from a ``TrialRecord`` alone (``trial.json``):

- left: the per-layer gradient norm at initialization (``profiles.init.grad_norm``) against the
  weight-layer index, log y axis (vanishing and exploding gradients are straight lines there);
- right: the loss curves against the step, log y axis: the training loss
  (``curves.train.loss``) and the validation loss (``curves.eval.val_loss``), with the explosion
  step marked for an exploded trial.

The title is the trial's cell, seed and outcome (coloured as in the report). Every record draws:
non-finite values (an exploded trial's NaN/inf, written as ``null``) are left out of the lines
and counted in the panel; a probe-only trial (``train.steps`` 0) says it has no training curve; an
old record without profiles says it has none. About 800 x 320 px and a few tens of milliseconds:
no pyplot (no global state, no GUI backend), fixed margins (no ``tight_layout``), 100 dpi.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from gradatlas.record import KILLED, PROBE, TrialRecord
from gradatlas.style import BASE_RC
from gradatlas.style import OUTCOME_COLORS as VERDICT_COLORS

ARTIFACT = "trial.png"  # its artifact name on the trial run (at the root)
SIZE_IN = (8.0, 3.2)  # inches; at DPI: 800 x 320 px
DPI = 100
# The report's outcome colours (gradatlas/style.py: no report stack imported in the recorder),
# and the two labels a picture can have that the report never colours.
OUTCOME_COLORS = VERDICT_COLORS | {PROBE: "#6c757d", KILLED: "#444444"}
TRAIN_COLOR, VAL_COLOR, BAD_COLOR = "#1f77b4", "#e07b00", OUTCOME_COLORS["exploded"]
RC = BASE_RC | {
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.3,
}
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
# A fixed title height: matplotlib otherwise measures every tick label to place it.
TITLE = {"loc": "left", "y": 1.01}
NOTE = {"ha": "center", "va": "center", "color": "#666666", "fontsize": 8}


def trial_png(record: TrialRecord) -> bytes:
    """The trial's picture as PNG bytes (about 800 x 320 px): the per-layer gradient norm at
    initialization and the loss curves, both on log y axes, titled cell, seed and outcome."""
    with mpl.rc_context(RC):
        fig = Figure(figsize=SIZE_IN, dpi=DPI)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.075, right=0.985, bottom=0.15, top=0.83, wspace=0.22)
        left, right = fig.subplots(1, 2)
        _profile_panel(left, record.profiles)
        _loss_panel(right, record.curves, record.summary, record.outcome.label)
        _title(fig, record)
        buf = io.BytesIO()
        # zlib level 1: a third of level 6's encoding time, for a file ~10% larger
        fig.savefig(
            buf,
            format="png",
            dpi=DPI,
            metadata={"Software": None},
            pil_kwargs={"compress_level": 1},
        )
    return buf.getvalue()


def _title(fig: Figure, record: TrialRecord) -> None:
    label = record.outcome.label or "no outcome"
    cell = record.cell or record.trial_id or "trial"
    seed = "" if record.seed is None else f"  seed {record.seed}"
    fig.text(0.075, 0.95, f"{cell}{seed}", ha="left", va="center", fontsize=10, weight="bold")
    fig.text(
        0.985,
        0.95,
        label,
        ha="right",
        va="center",
        fontsize=10,
        weight="bold",
        color=OUTCOME_COLORS.get(label, "#444444"),
    )


def _profile_panel(ax: Any, profiles: Any) -> None:
    ax.set_title("gradient norm per layer at init", **TITLE)
    ax.set_xlabel("weight layer (0 = first)")
    init = profiles.get("init") if isinstance(profiles, dict) else None
    norms = _floats(init.get("grad_norm") if isinstance(init, dict) else None)
    if not norms:
        _empty(ax, "no init profile in this record")
        return
    xs = list(range(len(norms)))
    ok = [v for v in norms if _positive(v)]
    bad = [x for x, v in zip(xs, norms, strict=True) if not _positive(v)]
    if ok:  # NaN breaks the line: a layer without a value is a gap, not an interpolation
        ys = [v if _positive(v) else math.nan for v in norms]
        ax.plot(xs, ys, color="#333333", marker="o", markersize=3)
        _log_y(ax, ok)
    else:
        _empty(ax, "no finite positive gradient norm")
    ax.set_xlim(-0.5, len(norms) - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    if bad:  # marked along the top: where the norm was inf, NaN or 0
        top = ax.get_xaxis_transform()
        ax.plot(bad, [0.97] * len(bad), "x", color=BAD_COLOR, markersize=4, transform=top)
        _note(ax, f"x: {len(bad)} of {len(norms)} non-finite or 0")


def _loss_panel(ax: Any, curves: Any, summary: Any, outcome: str) -> None:
    ax.set_title("loss", **TITLE)
    ax.set_xlabel("step")
    curves = curves if isinstance(curves, dict) else {}
    train = curves.get("train") if isinstance(curves.get("train"), dict) else {}
    ev = curves.get("eval") if isinstance(curves.get("eval"), dict) else {}
    series = [
        ("train", TRAIN_COLOR, train.get("step"), train.get("loss")),
        ("val", VAL_COLOR, ev.get("step"), ev.get("val_loss")),
    ]
    drawn: list[float] = []
    last_step, bad, total = 0.0, 0, 0
    for name, colour, steps, values in series:
        pts = [(s, v) for s, v in zip(_floats(steps), _floats(values), strict=False)]
        pts = [(s, v) for s, v in pts if math.isfinite(s)]
        total += len(pts)
        good = [v for _, v in pts if _positive(v)]
        bad += len(pts) - len(good)
        if not good:
            continue
        last_step = max(last_step, max(s for s, v in pts if _positive(v)))
        ax.plot(
            [s for s, _ in pts],
            [v if _positive(v) else math.nan for _, v in pts],
            color=colour,
            label=name,
            marker="o" if len(good) < 3 else None,
            markersize=3.5,
        )
        drawn += good
    if not total:
        _empty(ax, "probe only: no training" if outcome == PROBE else "no loss curve recorded")
        return
    if drawn:
        _log_y(ax, drawn)
        ax.legend(loc="upper right", frameon=False)
        ax.set_xlim(-0.02 * last_step - 0.5, 1.02 * last_step + 0.5)
        if last_step < 1:
            ax.set_xticks([0])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    else:
        _empty(ax, "no finite loss value")
    notes = []
    explode = summary.get("explode_step") if isinstance(summary, dict) else None
    if isinstance(explode, int | float) and math.isfinite(explode):
        ax.axvline(explode, color=BAD_COLOR, linestyle="--", linewidth=1)
        notes.append(f"exploded at step {int(explode)}")
    if bad:
        notes.append(f"{bad} non-finite points left out")
    if notes:
        _note(ax, "; ".join(notes))


def _log_y(ax: Any, values: list[float]) -> None:
    """Log y axis labelled at decades (at most ~7); when the data span under two decades, the
    2x and 5x ticks are labelled too (never a lone label), and a single value gets a decade's
    room around it."""
    ax.set_yscale("log")
    lo, hi = min(values), max(values)
    if hi / lo < 1.5:
        ax.set_ylim(lo / 3, hi * 3)
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=7))
    ax.yaxis.set_major_formatter(FuncFormatter(_label))
    if hi / lo < 100:
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0), numticks=12))
        ax.yaxis.set_minor_formatter(FuncFormatter(_label))
    else:  # no minor ticks: on 10+ decades they are ~100 tick objects, half the drawing time
        ax.yaxis.set_minor_locator(NullLocator())


def _label(value: float, _pos: Any = None) -> str:
    """0.5, 2, 100, or 5\u00d710\u207b\u2076 (unicode superscripts: mathtext parsing was ~1/4
    of the drawing time)."""
    if not value > 0:
        return ""
    e = math.floor(math.log10(value) + 1e-9)
    if -1 <= e <= 2:
        return f"{value:.3g}"
    lead = round(value / 10**e, 2)
    power = "10" + str(e).translate(SUPERSCRIPT)
    return power if lead == 1 else f"{lead:g}\u00d7{power}"


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, **NOTE)
    ax.set_xticks([])
    ax.set_yticks([])


def _note(ax: Any, text: str) -> None:
    """A red note right of the panel title (never over the data)."""
    ax.set_title(text, loc="right", y=1.01, color=BAD_COLOR, fontsize=7.5)


def _floats(values: Any) -> list[float]:
    """A JSON list as floats: ``null`` (a non-finite value in trial.json) and junk become NaN."""
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        return []
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0
