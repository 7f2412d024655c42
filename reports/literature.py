"""The "Published claim vs measured" section: a literature suite's paper, next to its numbers.

Every literature suite is a scaled-down analogue of its paper (MNIST-1D, narrow nets, a few
seeds), not a reproduction, and the section says so first, with what was scaled down
(``Paper.analogue``). A suite is a literature suite when its name is in ``PAPERS`` (or starts
with one followed by ``-``, as the GPU profiles name theirs: ``he2015-mnist``); the suite file
needs no extra key. Other suites' reports leave the section out (``applies``).

For such a suite the section states the published claim and its citation, then what was
measured: the paper's headline numbers beside ours with 95% intervals and an agreement rule
(``headlines``), each declared claim's two groups with their pooled values (the verdict, matched
cell by cell with its test, is the Claims section's), and the per-cell numbers the paper is
about. Two papers get more: Schoenholz et al. (2017) the measured phase diagram over sigma_w^2 x
depth with the mean-field trainable depth 6 xi_c drawn over it (``meanfield``, at the trials'
own sigma_b^2), and the deepest trainable net fitted per sigma_w^2 against 6 xi_c
(``litstats.fit_trainable_depth``); Yang et al. (2019) the per-layer growth of the gradient
ratio at init fitted on depth.

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

from gradatlas.errors import UserInputError
from gradatlas.record import OutcomeLabel
from gradatlas.reports import figures, litstats, meanfield
from gradatlas.reports.context import ReportContext
from gradatlas.reports.document import Block, Cell, Column, Figure, Para, Table
from gradatlas.reports.fmt import join_and, num, pct, plural
from gradatlas.reports.headlines import (
    TRAINED,
    Growth,
    Headline,
    Rate,
    Ratio,
    headline_blocks,
    select,
)
from gradatlas.reports.litstats import INSIDE, side
from gradatlas.reports.load import Experiment
from gradatlas.suites.claims import METRICS, OUTCOME, filter_labels


@dataclass(frozen=True)
class Paper:
    """One paper our suite is a scaled-down analogue of: what it claims, what we scaled down,
    its headline numbers and how we measure each, and which per-cell numbers show it."""

    suite: str
    citation: str
    claim: str
    analogue: str  # what differs from the paper: data, width, depth, budget, seeds
    metrics: tuple[str, ...]  # summary columns shown per cell, beside the outcomes
    headlines: tuple[Headline, ...] = ()
    phase_diagram: bool = False  # Schoenholz: sigma_w^2 x depth with 6 xi_c overlaid
    depth_growth: bool = False  # Yang: per-layer growth of init_grad_ratio


HALF = side(0.5)  # a trained rate: on the paper's side of 50%
ONE = side(1.0)  # a ratio: on the paper's side of 1
YANG_RELU_BN = math.pi / (math.pi - 1.0)  # Yang et al. 2019: ReLU + BN, batch size -> infinity

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
            "MNIST-1D instead of Shapeset-3x2, MNIST and CIFAR-10; 5 hidden layers of 256 "
            "units instead of 1000; one learning rate for every cell (the paper tuned one per "
            "cell); 24 epochs; 6 seeds per cell.",
            ("test_acc", "final_train_loss", "init_grad_ratio"),
            headlines=(
                Headline(
                    "test error, sigmoid / tanh (standard init)",
                    2.21 / 1.76,
                    "1.26 (MNIST test error 2.21% vs 1.76%)",
                    "Table 1",
                    Ratio(
                        "test_acc",
                        {"activation": "sigmoid", "init": "glorot_standard"},
                        {"activation": "tanh", "init": "glorot_standard"},
                        complement=True,
                    ),
                    ONE,
                ),
                Headline(
                    "test error, tanh: normalized / standard init",
                    1.64 / 1.76,
                    "0.93 (MNIST test error 1.64% vs 1.76%)",
                    "Table 1",
                    Ratio(
                        "test_acc",
                        {"activation": "tanh", "init": "xavier_uniform"},
                        {"activation": "tanh", "init": "glorot_standard"},
                        complement=True,
                    ),
                    ONE,
                ),
            ),
        ),
        Paper(
            "he2015",
            "He et al. (2015), Delving Deep into Rectifiers",
            "A 30-layer plain ReLU net stalls under Xavier init and converges under He init "
            "(Var = 2/fan_in); at 22 layers both converge, He's init earlier.",
            "MNIST-1D MLPs of width 64 instead of ImageNet conv nets; the paper's depths (22 "
            "and 30) and momentum SGD, one learning rate for both inits; 24 epochs; 6 seeds "
            "per cell (the paper shows one run each).",
            ("test_acc", "steps_to_target", "init_grad_ratio"),
            headlines=(
                Headline(
                    "trained rate, 30 layers, He init",
                    1.0,
                    "converges",
                    "Fig. 3",
                    Rate({"depth": 30, "init": "kaiming_normal"}),
                    HALF,
                    percent=True,
                ),
                Headline(
                    "trained rate, 30 layers, Xavier init",
                    0.0,
                    "stalls (no learning)",
                    "Fig. 3",
                    Rate({"depth": 30, "init": "xavier_normal"}),
                    HALF,
                    percent=True,
                ),
                Headline(
                    "trained rate, 22 layers, Xavier init",
                    1.0,
                    "converges",
                    "Fig. 2",
                    Rate({"depth": 22, "init": "xavier_normal"}),
                    HALF,
                    percent=True,
                ),
            ),
        ),
        Paper(
            "ioffe-szegedy",
            "Ioffe & Szegedy (2015), Batch Normalization",
            "Batch normalization makes a 3 x 100 sigmoid net on MNIST train faster and reach a "
            "higher test accuracy, and allows higher learning rates; BN-Inception matches "
            "Inception's accuracy in 14 times fewer steps.",
            "MNIST-1D instead of MNIST (and of ImageNet, where the paper counts steps); the "
            "paper's 3 x 100 sigmoid MLP and batch of 60; 24 epochs instead of 50,000 steps; "
            "a 10x learning rate where the paper's BN-x5 used 5x; 6 seeds per cell.",
            ("test_acc", "final_train_loss", "steps_to_target"),
            headlines=(
                Headline(
                    "steps to target, BN / no BN at lr 0.05",
                    13.3 / 31.0,
                    "0.43 (BN-Baseline 13.3M vs Inception 31.0M steps to 72.2%)",
                    "Table 2, ImageNet",
                    Ratio(
                        "steps_to_target",
                        {"norm": "batchnorm", "lr": 0.05},
                        {"norm": "none", "lr": 0.05},
                    ),
                    ONE,
                ),
                Headline(
                    "steps to target, BN at lr 0.5 / no BN at lr 0.05",
                    2.1 / 31.0,
                    "0.068 (BN-x5, 5x lr: 2.1M vs 31.0M steps to 72.2%)",
                    "Table 2, ImageNet",
                    Ratio(
                        "steps_to_target",
                        {"norm": "batchnorm", "lr": 0.5},
                        {"norm": "none", "lr": 0.05},
                    ),
                    ONE,
                ),
            ),
        ),
        Paper(
            "yang2019",
            "Yang et al. (2019), A Mean Field Theory of Batch Normalization",
            "In fully connected nets with batch normalization the gradient at initialization "
            "grows exponentially with depth, whatever the activation and the weight variance; "
            "for ReLU the squared gradient norm grows by pi/(pi - 1) ~ 1.47 per layer in the "
            "large-batch limit; vanilla BN nets deeper than about 50 layers did not train.",
            "MNIST-1D instead of MNIST and CIFAR-10; width 256; probe-only (the gradient at "
            "init on one batch of 256, nothing trained); depths 2 to 64; 3 seeds per cell.",
            ("init_grad_ratio", "init_grad_norm_first", "init_grad_norm_last"),
            headlines=(
                Headline(
                    "growth of the squared gradient norm per layer, ReLU + BN",
                    YANG_RELU_BN,
                    "π/(π−1) = 1.467 (ReLU, batch size → ∞)",
                    "the paper's ReLU analysis",
                    Growth({"activation": "relu", "norm": "batchnorm"}, min_depth=8),
                    INSIDE,
                ),
                Headline(
                    "growth of the squared gradient norm per layer, ReLU, no BN",
                    1.0,
                    "1 (He init keeps it flat: BN itself causes the explosion)",
                    "abstract",
                    Growth({"activation": "relu", "norm": "none"}, min_depth=8),
                    INSIDE,
                ),
            ),
            depth_growth=True,
        ),
        Paper(
            "schoenholz2017",
            "Schoenholz et al. (2017), Deep Information Propagation",
            "Random tanh nets have an order-to-chaos boundary (chi_1 = 1; at sigma_b^2 = 0.05 "
            "it lies at sigma_w^2 ~ 1.76); the correlation depth scale xi_c diverges on it, and "
            "nets train only while depth < ~6 xi_c.",
            "MNIST-1D instead of MNIST and CIFAR-10; tanh MLPs of width 64 (the paper's 300 "
            "and up); depths 4 to 64 (the paper's up to 300); 24 epochs of momentum SGD at one "
            "learning rate; 4 seeds per cell; sigma_b^2 = 0.05 as in the paper.",
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
    """The paper a suite of this name is an analogue of: exact name, else the longest ``key-``
    prefix."""
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
    (a resolved init config: name and options), from the init registry's own std formula
    (``inits.expected_std``); None for a scheme with no closed form or no entry."""
    from gradatlas.models.inits import INITS, expected_std

    name = init.get("name")
    options = {k: v for k, v in init.items() if k != "name"}
    if name == "torch_default":  # PyTorch's kaiming_uniform(a=sqrt(5)): Var = 1 / (3 fan_in)
        return float(options.get("gain", 1.0)) ** 2 / 3.0
    if name not in INITS or width < 1:
        return None
    try:
        std = expected_std(str(name), (width, width), **options)
    except UserInputError:  # a record whose options this version no longer takes
        return None
    return None if std is None else std**2 * width


def bias_variance(init: Mapping[str, Any]) -> float:
    """sigma_b^2 of a resolved init config (0 when it sets none: biases start at zero)."""
    from gradatlas.models.inits import BIAS_VAR, bias_options

    return float(bias_options(init)[BIAS_VAR])


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


@dataclass(frozen=True)
class PhaseData:
    """The trials of a phase diagram: one row per trial (``sw2``, ``depth``, ``trained``,
    ``converged``, ``train_acc``, ``test_acc``), their activation and their sigma_b^2.
    "Trained" is the claims' trainable_rate (``headlines.TRAINED``): Schoenholz et al.'s bound
    is on trainability, and reaching a validation target also asks the net to generalize, which
    deep in the chaotic phase it does badly even where it fits the training set."""

    trials: pd.DataFrame
    activation: str
    sigma_b2: float

    @property
    def points(self) -> list[PhasePoint]:
        return [
            PhasePoint(
                float(sw2),
                int(depth),
                len(g),
                int(g["trained"].sum()),
                int(g["converged"].sum()),
                float(pd.to_numeric(g["train_acc"], errors="coerce").mean()),
                float(pd.to_numeric(g["test_acc"], errors="coerce").mean()),
            )
            for (sw2, depth), g in self.trials.groupby(["sw2", "depth"])
        ]


def phase_data(exp: Experiment) -> PhaseData | str:
    """The phase diagram's trials, or why there are none."""
    rows = []
    activations, biases = set(), set()
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
        biases.add(round(bias_variance(init), 12))
        rows.append(
            {
                "sw2": round(sw2, 9),
                "depth": int(model["depth"]),
                "trained": trial["outcome"] in TRAINED,
                "converged": trial["outcome"] == OutcomeLabel.CONVERGED,
                "train_acc": trial.get("final_train_acc", np.nan),
                "test_acc": trial.get("test_acc", np.nan),
            }
        )
    if not rows:
        return "no trial records a model depth and an init with a known sigma_w^2"
    if len(activations) != 1:
        return f"the trials mix activations ({', '.join(map(str, activations))})"
    if len(biases) != 1:
        return f"the trials mix bias variances (sigma_b^2 = {', '.join(map(num, sorted(biases)))})"
    return PhaseData(pd.DataFrame(rows), str(activations.pop()), float(biases.pop()))


def phase_points(exp: Experiment) -> tuple[list[PhasePoint], str | None, str]:
    """The measured (sigma_w^2, depth) cells, the activation, and why there are none if so."""
    data = phase_data(exp)
    if isinstance(data, str):
        return [], None, data
    return data.points, data.activation, ""


@dataclass(frozen=True)
class DepthRow:
    """One sigma_w^2: the mean-field numbers and the fitted deepest trainable net."""

    sigma_w2: float
    theory: meanfield.MeanField
    fit: litstats.DepthFit | None

    @property
    def ratio(self) -> tuple[float, float, float]:
        """L_max / (6 xi) with its interval (NaN where theory puts no bound; an interval open
        above, inf, where the nets trained at every depth tried)."""
        bound = self.theory.trainable_depth
        if self.fit is None or not math.isfinite(bound):
            return math.nan, math.nan, math.nan
        return self.fit.l_max / bound, self.fit.lo / bound, self.fit.hi / bound

    @property
    def ratio_text(self) -> str:
        ratio, lo, hi = self.ratio
        if self.fit is None:
            return "–"
        if not math.isfinite(ratio):
            return "– (6 ξ = ∞)"
        if self.fit.censored == "above":
            return f"≥ {num(lo)}"
        if self.fit.censored == "below":
            return f"≤ {num(hi)}"
        return f"{num(ratio)} [{num(lo)}, {'∞' if math.isinf(hi) else num(hi)}]"

    @property
    def consistent(self) -> bool:
        """The fit's interval contains 6 xi (an interval open above contains an infinite 6 xi;
        one that reaches the deepest net tried contains any 6 xi beyond it)."""
        if self.fit is None:
            return False
        return self.fit.lo <= self.theory.trainable_depth <= self.fit.hi


CONSISTENCY_RULE = (
    "consistent: the 95% interval of the fitted L_max contains the prediction 6 ξ (the ratio's "
    "interval contains 1)"
)


def depth_rows(data: PhaseData) -> list[DepthRow]:
    """Per sigma_w^2: the theory at the trials' sigma_b^2, and L_max fitted on its trials."""
    rows = []
    for sw2, g in data.trials.groupby("sw2"):
        theory = meanfield.mean_field(float(sw2), data.sigma_b2, data.activation)
        fit = litstats.fit_trainable_depth(g["depth"].to_numpy(float), g["trained"].to_list())
        rows.append(DepthRow(float(sw2), theory, fit))
    return rows


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


THEORY = "#c8324a"


def draw_theory(ax: Any, xlim: tuple[float, float], sigma_b2: float, activation: str) -> None:
    """The mean-field overlay: 6 xi_c against sigma_w^2 at ``sigma_b2``, the order-to-chaos
    boundary, and each side of it named. At sigma_b^2 = 0 the ordered side is the degenerate
    q* = 0 phase (``meanfield``): its curve is 6 xi_grad, drawn dashed and named so, since xi_c
    is infinite there."""
    dense = np.geomspace(xlim[0], xlim[1], 160)
    theory = [meanfield.mean_field(float(s), sigma_b2, activation) for s in dense]
    curve = np.array([m.trainable_depth for m in theory])
    curve = np.where(np.isfinite(curve), curve, 1e9)  # off the top at the boundary
    vanishing = np.array([m.phase == "vanishing" for m in theory])
    sb2 = f"σ_b² = {num(sigma_b2)}"
    if vanishing.any():
        ax.plot(dense[vanishing], curve[vanishing], color=THEORY, lw=1.8, ls="--",
                label=f"mean field: 6 ξ_∇ where q* = 0 ({sb2}; ξ_c = ∞ there)")  # fmt: skip
    ax.plot(np.where(vanishing, np.nan, dense), curve, color=THEORY, lw=1.8,
            label=f"mean field: 6 ξ_c ({sb2})")  # fmt: skip
    crit = meanfield.critical_sigma_w2(sigma_b2, activation)
    ax.axvline(crit, color=THEORY, lw=0.9, ls=":", label=f"order-to-chaos: σ_w² = {crit:.3g}")
    left = "q* = 0 (signal vanishes)" if vanishing.any() else "ordered"
    box = {"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1}
    for x, text, ha in ((crit / 1.03, f"← {left}", "right"), (crit * 1.03, "chaotic →", "left")):
        if xlim[0] < x < xlim[1]:  # above the axes, either side of the boundary
            ax.text(x, 1.01, text, transform=ax.get_xaxis_transform(), ha=ha, va="bottom",
                    fontsize=7, color=THEORY, bbox=box)  # fmt: skip


def draw_fits(ax: Any, rows: list[DepthRow], ylim: tuple[float, float]) -> None:
    """The fitted L_max per sigma_w^2 with its 95% interval; an arrow where it is censored."""
    first = True
    for row in rows:
        fit = row.fit
        if fit is None:
            continue
        label = "fitted L_max (95% CI)" if first else None
        first = False
        if fit.censored == "above":
            ax.plot([row.sigma_w2], [ylim[1] / 1.08], marker="^", color="black", ms=6,
                    ls="none", label=label)  # fmt: skip
            continue
        if fit.censored == "below":
            ax.plot([row.sigma_w2], [ylim[0] * 1.08], marker="v", color="black", ms=6,
                    ls="none", label=label)  # fmt: skip
            continue
        lo, hi = max(fit.lo, ylim[0]), min(fit.hi, ylim[1])
        ax.errorbar([row.sigma_w2], [fit.l_max], yerr=[[fit.l_max - lo], [hi - fit.l_max]],
                    fmt="o", color="black", ms=4, capsize=3, lw=1.2, label=label)  # fmt: skip


def draw_phase_diagram(fig: MplFigure, data: PhaseData) -> None:
    """Measured colour per (sigma_w^2, depth) square, the mean-field overlay at the trials'
    sigma_b^2 and the fitted L_max per sigma_w^2."""
    import matplotlib as mpl

    points = data.points
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
        ax.text(p.sigma_w2 / 1.04, p.depth, f"{p.trained}/{p.n}", ha="right", va="center",
                fontsize=6, color="white" if dark else "black")  # fmt: skip
    draw_theory(ax, (xe[0], xe[-1]), data.sigma_b2, data.activation)
    draw_fits(ax, depth_rows(data), (ye[0], ye[-1]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.set_xticks(sws, [num(s, 3) for s in sws], fontsize=7)
    ax.set_yticks(depths, [str(d) for d in depths])
    ax.minorticks_off()
    ax.grid(False)
    ax.set_xlabel("σ_w² (weight variance x fan_in)")
    ax.set_ylabel("depth (hidden layers)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7, frameon=False)
    fig.colorbar(mesh, ax=ax, fraction=0.05, pad=0.02).set_label(label)


def _inf(x: float) -> str:
    return "∞" if math.isinf(x) else num(x)


def _scale_text(m: meanfield.MeanField) -> str:
    return f"{'ξ_∇' if m.scale_name == 'xi_grad' else 'ξ_c'} = {_inf(m.bound_scale)}"


def depth_table(data: PhaseData, rows: list[DepthRow]) -> Table:
    """Per sigma_w^2: the mean-field prediction 6 xi and the fitted L_max, with the ratio."""
    cells, row_attrs = [], []
    for row in rows:
        m, fit = row.theory, row.fit
        ratio = row.ratio[0]
        cells.append(
            [
                Cell(num(row.sigma_w2, 4)),
                Cell(m.phase),
                Cell(num(m.chi_1, 4)),
                Cell(_scale_text(m)),
                Cell(_inf(m.trainable_depth), attrs={"value": m.trainable_depth}),
                Cell(fit.text if fit else "–", attrs={"value": fit.l_max if fit else None}),
                Cell(fit.interval if fit else "–"),
                Cell(row.ratio_text, attrs={"value": ratio}),
                Cell("yes" if row.consistent else "no"),
            ]
        )
        row_attrs.append({"sigma-w2": row.sigma_w2, "consistent": row.consistent})
    return Table(
        [
            Column("σ_w²", "right", 0.55),
            Column("phase", weight=0.75),
            Column("χ_1", "right", 0.6),
            Column("depth scale", weight=0.95),
            Column("6 ξ", "right", 0.55),
            Column("fitted L_max", "right", 0.8),
            Column("95% CI", weight=0.95),
            Column("L_max / 6 ξ [95% CI]", weight=1.3),
            Column("consistent", weight=0.7),
        ],
        cells,
        name="literature-meanfield",
        row_attrs=row_attrs,
        caption=f"The deepest trainable net per σ_w² against mean field ({data.activation}, "
        f"σ_b² = {num(data.sigma_b2)}; `gradatlas.reports.meanfield`). L_max is the depth at "
        "which the trained rate falls through 50%, fitted as a logistic in log depth over "
        "every trial of that σ_w² (maximum likelihood); its 95% interval is the profile "
        "likelihood's, so it is as wide as the depth grid and the seeds leave it. '> D': the "
        "nets trained at every depth tried, up to D. ξ is ξ_c, or ξ_∇ = −1/ln χ_1 where q* = 0 "
        f"(σ_b² = 0, ordered side), whose ξ_c is infinite. {CONSISTENCY_RULE}.",
    )


def phase_blocks(exp: Experiment) -> list[Block]:
    data = phase_data(exp)
    if isinstance(data, str):
        return [Para(f"No phase diagram: {data}.", note=True)]
    if data.activation not in meanfield.ACTIVATIONS:
        return [
            Para(
                "No mean-field overlay: the theory here covers "
                f"{join_and(list(meanfield.ACTIVATIONS))}, and these trials use "
                f"{data.activation}.",
                note=True,
            )
        ]
    points = data.points
    label, _ = colour_measure(points)
    sb2 = num(data.sigma_b2)
    rows = depth_rows(data)
    agree = sum(
        (p.depth < meanfield.mean_field(p.sigma_w2, data.sigma_b2, data.activation)
         .trainable_depth) == (p.trained / p.n >= 0.5)
        for p in points
    )  # fmt: skip
    consistent = sum(r.consistent for r in rows)
    return [
        Figure(
            name="literature-phase",
            draw=partial(draw_phase_diagram, data=data),
            size=(figures.WIDTH, 3.9),
            caption=f"Measured phase diagram: each square one (σ_w², depth) cell, coloured by "
            f"its {label}, with trained/seeds written left of its centre (trained: converged or "
            "unconverged, i.e. neither stalled, vanished nor exploded). The red curve is the "
            f"mean-field prediction of the deepest trainable net, 6 ξ_c, at the trials' own "
            f"σ_b² = {sb2}; it runs off the top at the order-to-chaos boundary (dotted), where "
            "ξ_c diverges. Black: the fitted L_max per σ_w² with its 95% interval (a triangle: "
            "trained at every depth tried, or at none).",
        ),
        Para(
            f"The fitted deepest trainable net agrees with 6 ξ within its 95% interval at "
            f"{consistent} of {plural(len(rows), 'σ_w²', 'σ_w² values')}; cell by cell, the "
            f"prediction (trains while depth < 6 ξ) and the measurement (at least half the seeds "
            f"trained) agree in {agree} of {plural(len(points), 'cell')}."
        ),
        depth_table(data, rows),
    ]


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
        blocks: list[Block] = [
            Para(
                f"A scaled-down analogue of {paper.citation}, not a reproduction: "
                f"{paper.analogue} Published claim: {paper.claim}"
            )
        ]
        description = str(suite_block(exp).get("description") or "").strip()
        if description:
            blocks.append(Para(f"The suite: {description}"))
        if paper.headlines:
            blocks += headline_blocks(exp, paper.headlines)
        claims = suite_block(exp).get("claims") or []
        if claims:
            blocks.append(claims_table(exp, list(claims)))
        else:
            blocks.append(Para("The recorded suite declares no claims.", note=True))
        if paper.phase_diagram:
            blocks += phase_blocks(exp)
        if paper.depth_growth:
            blocks.append(growth_table(exp))
        blocks.append(cell_table(ctx, paper))
        return blocks
