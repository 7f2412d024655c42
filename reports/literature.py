"""The "Published claim vs measured" section: a literature suite's paper, next to its numbers.

A suite is a literature suite when its name is in ``PAPERS`` (or starts with one followed by
``-``, as the GPU profiles name theirs: ``he2015-mnist``); the suite file needs no extra key.
Other suites' reports leave the section out (``applies``).
For such a suite the section states the published claim and its citation, then what was
measured: each declared claim's two groups with their pooled values (the verdict, matched cell
by cell with its test, is the Claims section's), and the per-cell numbers the paper is about.
Two papers get more: Schoenholz et al. (2017) the measured phase diagram over sigma_w^2 x depth
with the mean-field trainable depth 6 xi_c drawn over it (``meanfield``), and Yang et al.
(2019) the per-layer growth of the gradient ratio at init fitted on depth.

Everything is read from the experiment (the trial table, the records' configs, the newest
sweep's resolved suite), never from the suite file on disk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from gradatlas.reports import figures, meanfield
from gradatlas.reports.context import ReportContext
from gradatlas.reports.document import Block, Cell, Column, Figure, Para, Table
from gradatlas.reports.fmt import join_and, num, pct, plural
from gradatlas.reports.load import Experiment
from gradatlas.suites.claims import METRICS, OUTCOME, filter_labels


@dataclass(frozen=True)
class Paper:
    """One reproduced paper: what it claims, and which per-cell numbers show it."""

    suite: str
    citation: str
    claim: str
    metrics: tuple[str, ...]  # summary columns shown per cell, beside the outcomes
    phase_diagram: bool = False  # Schoenholz: sigma_w^2 x depth with 6 xi_c overlaid
    depth_growth: bool = False  # Yang: per-layer growth of init_grad_ratio


PAPERS: dict[str, Paper] = {
    p.suite: p
    for p in [
        Paper(
            "glorot-bengio",
            "Glorot & Bengio (2010), Understanding the difficulty of training deep feedforward "
            "neural networks",
            "With the standard init U[-1/sqrt(n), 1/sqrt(n)], the top hidden layer of a 5-layer "
            "sigmoid net saturates and the net never escapes that regime; tanh trains, and "
            "trains better with the normalized init Var = 2/(fan_in + fan_out).",
            ("test_acc", "final_train_loss", "init_grad_ratio"),
        ),
        Paper(
            "he2015",
            "He et al. (2015), Delving Deep into Rectifiers",
            "A 30-layer plain ReLU net stalls under Xavier init and converges under He init "
            "(Var = 2/fan_in); at 22 layers both converge, He's init earlier.",
            ("test_acc", "steps_to_target", "init_grad_ratio"),
        ),
        Paper(
            "ioffe-szegedy",
            "Ioffe & Szegedy (2015), Batch Normalization",
            "Batch normalization makes a 3 x 100 sigmoid net on MNIST train faster and reach a "
            "higher test accuracy, and allows higher learning rates.",
            ("test_acc", "final_train_loss", "steps_to_target"),
        ),
        Paper(
            "yang2019",
            "Yang et al. (2019), A Mean Field Theory of Batch Normalization",
            "In fully connected nets with batch normalization the gradient at initialization "
            "grows exponentially with depth, whatever the activation and the weight variance; "
            "vanilla BN nets deeper than about 50 layers did not train.",
            ("init_grad_ratio", "init_grad_norm_first", "init_grad_norm_last"),
            depth_growth=True,
        ),
        Paper(
            "schoenholz2017",
            "Schoenholz et al. (2017), Deep Information Propagation",
            "Random tanh nets have an order-to-chaos boundary (chi_1 = 1); the correlation "
            "depth scale xi_c diverges on it, and nets train only while depth < ~6 xi_c.",
            ("test_acc", "init_grad_ratio"),
            phase_diagram=True,
        ),
    ]
}


# -- which suite this is -------------------------------------------------------------------------
def suite_block(exp: Experiment) -> dict[str, Any]:
    """The newest sweep's resolved suite (``SuiteSpec.model_dump()``); {} when none recorded."""
    dated = [s for s in exp.sweeps if s.resolved]
    dated.sort(key=lambda s: (s.start_time is not None, s.start_time or 0))
    return dict(dated[-1].resolved) if dated else {}


def suite_name(exp: Experiment) -> str:
    return str(suite_block(exp).get("name") or exp.name)


def paper_for(name: str) -> Paper | None:
    """The paper a suite of this name reproduces: exact name, else the longest ``key-`` prefix."""
    if name in PAPERS:
        return PAPERS[name]
    keys = [k for k in PAPERS if name.startswith(k + "-")]
    return PAPERS[max(keys, key=len)] if keys else None


# -- numbers -------------------------------------------------------------------------------------
def group_value(trials: pd.DataFrame, metric: str, detail: bool = True) -> str:
    """A metric over some trials as the tables print it: rates as a percentage, log-scale
    metrics as a geometric mean, the rest as a mean (steps to target over the trials that
    reached it). ``detail`` adds what the number stands on (k/n, n, how many reached)."""
    spec = METRICS.get(metric)
    n = len(trials)
    if n == 0:
        return "no trials"
    if spec is not None and spec.kind == "rate" and spec.reads == OUTCOME:
        k = int(trials["outcome"].isin(spec.outcomes).sum())
        return f"{pct(k / n)} ({k}/{n})" if detail else pct(k / n)
    column = spec.reads if spec is not None else metric
    if column not in trials:
        return "not recorded"
    values = pd.to_numeric(trials[column], errors="coerce").dropna()
    if spec is not None and spec.log10:
        values = values[values > 0]
        value = float(np.exp(np.log(values).mean())) if len(values) else math.nan
        extra = f"geo. mean, n={len(values)}"
    else:
        value = float(values.mean()) if len(values) else math.nan
        extra = f"{len(values)}/{n} reached" if metric == "steps_to_target" else f"n={len(values)}"
    return f"{num(value)} ({extra})" if detail else num(value)


def select(exp: Experiment, filters: Mapping[str, list[str]]) -> pd.DataFrame:
    """The trials whose levels are in ``filters`` (factor -> labels) for every factor named."""
    t = exp.trials
    mask = pd.Series(True, index=t.index)
    for factor, labels in filters.items():
        mask &= t[exp.fcol(factor)].isin(labels)
    return t[mask]


def claims_table(exp: Experiment, claims: list[Mapping[str, Any]]) -> Table:
    """Each declared claim: its text and source, and metric(A) and metric(B) as measured."""
    rows, row_attrs = [], []
    for claim in claims:
        groups = {}
        for block in ("a", "b", "where"):
            labels, problems = filter_labels(claim.get(block) or {}, exp.levels, in_plan=False)
            groups[block] = None if problems else labels
        metric = str(claim.get("metric", ""))
        if groups["a"] is None or groups["b"] is None or groups["where"] is None:
            a_text = b_text = "levels not in these trials"
        else:
            a_text = group_value(select(exp, {**groups["where"], **groups["a"]}), metric)
            b_text = group_value(select(exp, {**groups["where"], **groups["b"]}), metric)
        predict = {"greater": ">", "less": "<", "equal": "≈"}.get(claim.get("predict", ""), "?")
        rows.append(
            [
                Cell(str(claim.get("id", ""))),
                Cell(f"{claim.get('text', '')} ({claim.get('source', '') or 'no source'})"),
                Cell(f"{metric}: A {predict} B"),
                Cell(f"A = {_describe(claim.get('a'))}: {a_text}"),
                Cell(f"B = {_describe(claim.get('b'))}: {b_text}"),
            ]
        )
        row_attrs.append({"claim": claim.get("id", ""), "metric": metric})
    return Table(
        [
            Column("id", weight=0.8),
            Column("published claim", weight=2.6),
            Column("test", weight=1.2),
            Column("measured A", weight=1.6),
            Column("measured B", weight=1.6),
        ],
        rows,
        name="literature-claims",
        row_attrs=row_attrs,
        caption="The suite's claims and what was measured, pooled over each group's trials "
        "(within `where`). The Claims section matches the groups cell by cell and gives the "
        "test and the verdict.",
    )


def _describe(filters: Any) -> str:
    if not isinstance(filters, Mapping) or not filters:
        return "all"
    parts = []
    for factor, level in filters.items():
        levels = level if isinstance(level, list) else [level]
        parts.append(f"{factor} {'/'.join(_level_text(v) for v in levels)}")
    return ", ".join(parts)


def _level_text(level: Any) -> str:
    if isinstance(level, Mapping):
        options = ",".join(f"{k}={v}" for k, v in level.items() if k != "name")
        return f"{level.get('name', '?')}({options})" if options else str(level.get("name"))
    return str(level)


def cell_table(ctx: ReportContext, paper: Paper) -> Table:
    """Per cell: its levels, seeds, outcomes, and the paper's metrics."""
    exp, t = ctx.exp, ctx.exp.trials
    metrics = [m for m in paper.metrics if m in t]
    columns = [Column(f) for f in exp.factors] + [
        Column("n", "right", 0.4),
        Column("outcomes", weight=1.6),
        *(Column(m, "right", 1.2) for m in metrics),
    ]
    rows, row_attrs = [], []
    for _, cell in ctx.cells.iterrows():
        trials = t[t["cell_id"] == cell["cell_id"]]
        counts = trials["outcome"].value_counts()
        mix = " · ".join(f"{int(k)} {o}" for o, k in counts.items())
        row = [Cell(str(cell[exp.fcol(f)])) for f in exp.factors]
        row += [Cell(str(len(trials))), Cell(mix)]
        row += [Cell(group_value(trials, m, detail=False)) for m in metrics]
        rows.append(row)
        row_attrs.append({"cell-id": cell["cell_id"]})
    return Table(
        columns,
        rows,
        name="literature-cells",
        row_attrs=row_attrs,
        caption="Measured per cell: outcomes over its seeds and the means of the numbers the "
        "paper is about (init_grad_ratio as a geometric mean; steps_to_target over the seeds "
        "that reached the target).",
    )


# -- Schoenholz et al.: the phase diagram --------------------------------------------------------
def weight_variance(init: Mapping[str, Any], width: int) -> float | None:
    """sigma_w^2 (Var(W) x fan_in) of a hidden square layer of ``width`` units under ``init``
    (a resolved init config: name and options); None for a scheme with no closed form."""
    gain = float(init.get("gain", 1.0))
    match init.get("name"):
        case "lecun_normal" | "xavier_normal" | "xavier_uniform" | "orthogonal":
            return gain**2  # xavier on square layers: 2 / (n + n) = 1 / n
        case "kaiming_normal" | "kaiming_uniform":
            return 2.0 * gain**2
        case "glorot_standard" | "torch_default":
            return gain**2 / 3.0  # U[-1/sqrt(n), 1/sqrt(n)]
        case "normal":
            return (gain * float(init.get("std", 0.01))) ** 2 * width
    return None


# What "trains" means on the phase diagram: the net learned (the outcome rules' converged or
# unconverged), i.e. it neither stalled at chance, nor vanished, nor exploded. Schoenholz et al.'s
# bound is on trainability; reaching a validation target also asks the net to generalize, which
# deep in the chaotic phase it does badly even where it fits the training set.
TRAINED = ("converged", "unconverged")


@dataclass(frozen=True)
class PhasePoint:
    """One measured (sigma_w^2, depth) cell: seeds, how many trained and converged, and the
    mean final training and test accuracies (NaN when not recorded)."""

    sigma_w2: float
    depth: int
    n: int
    trained: int
    converged: int
    train_acc: float
    test_acc: float


def phase_points(exp: Experiment) -> tuple[list[PhasePoint], str | None, str]:
    """The measured (sigma_w^2, depth) cells, the activation, and why there are none if so."""
    rows = []
    activations = set()
    for _, trial in exp.trials.iterrows():
        config = (exp.records.get(trial["run_id"]) or {}).get("config") or {}
        model = config.get("model") or {}
        init = model.get("init")
        if not isinstance(init, Mapping) or "depth" not in model:
            continue
        sw2 = weight_variance(init, int(model.get("width", 0) or 0))
        if sw2 is None:
            continue
        act = model.get("activation")
        activations.add(act.get("name") if isinstance(act, Mapping) else act)
        rows.append(
            {
                "sw2": round(sw2, 9),
                "depth": int(model["depth"]),
                "trained": trial["outcome"] in TRAINED,
                "converged": trial["outcome"] == "converged",
                "train_acc": trial.get("final_train_acc", np.nan),
                "test_acc": trial.get("test_acc", np.nan),
            }
        )
    if not rows:
        return [], None, "no trial records a model depth and an init with a known sigma_w^2"
    if len(activations) != 1:
        return [], None, f"the trials mix activations ({', '.join(map(str, activations))})"
    df = pd.DataFrame(rows)
    points = [
        PhasePoint(
            float(sw2),
            int(depth),
            len(g),
            int(g["trained"].sum()),
            int(g["converged"].sum()),
            float(pd.to_numeric(g["train_acc"], errors="coerce").mean()),
            float(pd.to_numeric(g["test_acc"], errors="coerce").mean()),
        )
        for (sw2, depth), g in df.groupby(["sw2", "depth"])
    ]
    return points, str(activations.pop()), ""


def _edges(values: list[float]) -> np.ndarray:
    """Cell edges on a log axis: geometric midpoints, and as far again beyond the ends."""
    v = np.log(np.asarray(sorted(values), dtype=float))
    if len(v) == 1:
        return np.exp(np.array([v[0] - 0.5, v[0] + 0.5]))
    mid = (v[1:] + v[:-1]) / 2
    return np.exp(np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]]))


def colour_measure(points: list[PhasePoint]) -> tuple[str, Any]:
    """What the squares are coloured by: the mean final training accuracy (the paper's
    picture is of trainability), else test accuracy, else the trained rate."""
    if all(math.isfinite(p.train_acc) for p in points):
        return "mean final training accuracy", lambda p: p.train_acc
    if all(math.isfinite(p.test_acc) for p in points):
        return "mean test accuracy", lambda p: p.test_acc
    return "trained rate", lambda p: p.trained / p.n


def draw_phase_diagram(fig: MplFigure, points: list[PhasePoint], activation: str) -> None:
    """Measured colour per (sigma_w^2, depth) square, the curve 6 xi_c and the boundary."""
    import matplotlib as mpl

    sws = sorted({p.sigma_w2 for p in points})
    depths = sorted({p.depth for p in points})
    label, value = colour_measure(points)
    grid = np.full((len(depths), len(sws)), np.nan)
    for p in points:
        grid[depths.index(p.depth), sws.index(p.sigma_w2)] = value(p)
    ax = fig.subplots()
    xe, ye = _edges(sws), _edges([float(d) for d in depths])
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(grid), cmap=mpl.colormaps["viridis"],
                         vmin=0.0, vmax=1.0, edgecolors="white", linewidth=0.8)  # fmt: skip
    for p in points:
        dark = grid[depths.index(p.depth), sws.index(p.sigma_w2)] < 0.6
        ax.text(p.sigma_w2, p.depth, f"{p.trained}/{p.n}", ha="center", va="center",
                fontsize=6.5, color="white" if dark else "black")  # fmt: skip
    dense = np.geomspace(xe[0], xe[-1], 400)
    curve = meanfield.trainable_depth_curve(dense, 0.0, activation)
    curve = np.where(np.isfinite(curve), curve, 1e9)  # off the top at the boundary
    ax.plot(dense, curve, color="#c8324a", lw=1.8, label="mean field: 6 ξ_c (σ_b² = 0)")
    crit = meanfield.critical_sigma_w2(0.0, activation)
    ax.axvline(crit, color="#c8324a", lw=0.9, ls=":", label=f"order-to-chaos: σ_w² = {crit:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.set_xticks(sws, [num(s, 4) for s in sws])
    ax.set_yticks(depths, [str(d) for d in depths])
    ax.minorticks_off()
    ax.grid(False)
    ax.set_xlabel("σ_w² (weight variance x fan_in)")
    ax.set_ylabel("depth (hidden layers)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7, frameon=False)
    fig.colorbar(mesh, ax=ax, fraction=0.05, pad=0.02).set_label(label)


def _inf(x: float) -> str:
    return "∞" if math.isinf(x) else num(x)


def phase_blocks(exp: Experiment) -> list[Block]:
    points, activation, why = phase_points(exp)
    if not points or activation is None:
        return [Para(f"No phase diagram: {why}.", note=True)]
    if activation not in meanfield.ACTIVATIONS:
        return [
            Para(
                "No mean-field overlay: the theory here covers "
                f"{join_and(list(meanfield.ACTIVATIONS))}, and these trials use {activation}.",
                note=True,
            )
        ]
    label, _ = colour_measure(points)
    blocks: list[Block] = [
        Figure(
            name="literature-phase",
            draw=partial(draw_phase_diagram, points=points, activation=activation),
            size=(figures.WIDTH, 3.6),
            caption=f"Measured phase diagram: each square one (σ_w², depth) cell, coloured by "
            f"its {label}, with trained/seeds written in it (trained: converged or "
            "unconverged, i.e. neither stalled, vanished nor exploded). The red curve is the "
            "mean-field prediction of the deepest trainable net, 6 ξ_c, for σ_b² = 0 "
            "(gradatlas starts biases at zero); it runs off the top at the order-to-chaos "
            "boundary (dotted), where ξ_c diverges.",
        )
    ]
    rows, agree = [], 0
    for p in sorted(points, key=lambda p: (p.sigma_w2, p.depth)):
        mf = meanfield.mean_field(p.sigma_w2, 0.0, activation)
        predicted = p.depth < mf.trainable_depth
        agree += predicted == (p.trained / p.n >= 0.5)
        rows.append(
            [
                Cell(num(p.sigma_w2, 4)),
                Cell(str(p.depth)),
                Cell(mf.phase),
                Cell(num(mf.chi_1, 4)),
                Cell(_inf(mf.xi_c)),
                Cell(_inf(mf.trainable_depth)),
                Cell("trains" if predicted else "does not"),
                Cell(f"{p.trained}/{p.n}"),
                Cell(f"{p.converged}/{p.n}"),
                Cell(num(p.train_acc) if math.isfinite(p.train_acc) else "–"),
                Cell(num(p.test_acc) if math.isfinite(p.test_acc) else "–"),
            ]
        )
    blocks.append(
        Para(
            f"The prediction (trains while depth < 6 ξ_c) and the measurement (at least half the "
            f"seeds trained) agree in {agree} of {plural(len(points), 'cell')}."
        )
    )
    blocks.append(
        Table(
            [
                Column("σ_w²", "right", 0.6),
                Column("depth", "right", 0.6),
                Column("phase", weight=0.8),
                Column("χ_1", "right", 0.7),
                Column("ξ_c", "right", 0.7),
                Column("6 ξ_c", "right", 0.7),
                Column("predicted", weight=0.9),
                Column("trained", "right", 0.7),
                Column("converged", "right", 0.8),
                Column("train acc", "right", 0.7),
                Column("test acc", "right", 0.7),
            ],
            rows,
            name="literature-meanfield",
            caption=f"Mean-field numbers per cell ({activation}, σ_b² = 0; "
            "`gradatlas.reports.meanfield`) beside what was measured.",
        )
    )
    return blocks


# -- Yang et al.: growth of the gradient ratio with depth ----------------------------------------
def growth_table(exp: Experiment) -> Table | Para:
    """Per combination of the factors other than depth: the fitted per-layer growth factor of
    init_grad_ratio (10 ** slope of log10 ratio on depth)."""
    t = exp.trials
    if "depth" not in exp.factors or "init_grad_ratio" not in t:
        return Para("No growth fit: the suite does not vary depth or record init_grad_ratio.",
                    note=True)  # fmt: skip
    others = [f for f in exp.factors if f != "depth"]
    depth = t[exp.fcol("depth")].str.lstrip("d").astype(float)
    ratio = pd.to_numeric(t["init_grad_ratio"], errors="coerce")
    data = pd.DataFrame({"depth": depth, "log": np.log10(ratio.where(ratio > 0))})
    for f in others:
        data[f] = t[exp.fcol(f)]
    rows = []
    groups = data.groupby(others, sort=False) if others else [((), data)]
    for key, g in groups:
        g = g.dropna()
        if g["depth"].nunique() < 2:
            continue
        slope = float(np.polyfit(g["depth"], g["log"], 1)[0])
        key = key if isinstance(key, tuple) else (key,)
        rows.append(
            [Cell(str(k)) for k in key]
            + [Cell(num(10**slope, 4)), Cell(num(10 ** (slope * 50), 3)), Cell(str(len(g)))]
        )
    return Table(
        [Column(f) for f in others]
        + [
            Column("growth per layer", "right"),
            Column("implied at 50 layers", "right"),
            Column("trials", "right", 0.5),
        ],
        rows,
        name="literature-growth",
        caption="First-to-last gradient norm ratio at init, fitted as ratio ∝ g^depth by least "
        "squares on log10: g > 1 is exponential growth with depth (Yang et al.'s prediction "
        "with BN), g ≈ 1 a depth-independent ratio.",
    )


# -- the section ---------------------------------------------------------------------------------
class Literature:
    """The published claim of a literature suite beside what its trials measured."""

    title = "Published claim vs measured"

    def applies(self, ctx: ReportContext) -> bool:
        """Only a literature suite's report has this section."""
        return paper_for(suite_name(ctx.exp)) is not None

    def build(self, ctx: ReportContext) -> list[Block]:
        exp = ctx.exp
        name = suite_name(exp)
        paper = paper_for(name)
        if paper is None:
            return [
                Para(
                    f"Suite {name!r} is not a literature suite (those are "
                    f"{join_and(sorted(PAPERS))}), so there is no published claim to set beside "
                    "its numbers.",
                    note=True,
                )
            ]
        blocks: list[Block] = [Para(f"{paper.citation}. Published claim: {paper.claim}")]
        description = str(suite_block(exp).get("description") or "").strip()
        if description:
            blocks.append(Para(f"The suite: {description}"))
        claims = suite_block(exp).get("claims") or []
        if claims:
            blocks.append(claims_table(exp, list(claims)))
        else:
            blocks.append(Para("The recorded suite declares no claims.", note=True))
        blocks.append(cell_table(ctx, paper))
        if paper.depth_growth:
            blocks.append(growth_table(exp))
        if paper.phase_diagram:
            blocks += phase_blocks(exp)
        return blocks
