"""What a plan will cost on a GPU, estimated from the resolved trials before anything runs.

``gradatlas plan`` prints it, so a suite sized for a cluster says its bill (in GPU-hours) and
its wall time before a single trial is launched. Per trial:

    steps    = train.steps, else epochs x ceil(train examples / batch size)
               (train examples: the trial's dataset's train split, or its train_subset;
               the split sizes are on the dataset's registration, ``datasets.split_sizes``)
    flops    = 6 x P x batch x steps            (forward + backward, Kaplan et al.'s 6N rule)
             + 2 x P x evaluated examples       (the val split and as many train examples,
                                                 once per epoch or every eval_every steps)
    P        = the family's parameter estimate (``estimate_parameters``), times the number of
               positions for a conv net (every weight is applied at every position: same
               padding, no pooling before the head)
    seconds  = FIXED_S + steps x (STEP_S + depth x LAYER_STEP_S) + flops / EFFECTIVE_FLOPS

The constants are for one H200-class GPU, one trial at a time, fp32. Small nets are
launch-bound (each layer costs a few kernel launches per step however little it computes), so
the per-step terms dominate everywhere but in deep conv nets on 32x32 images. The estimate is an
upper bound on time: it assumes every trial runs its whole budget, while exploded trials stop at
the step they explode. It prices every trial as if it trained alone: with ``execution.fuse:
auto`` trials of one shape train as one stacked model, which on a GPU should cost less, by an
amount not yet measured there, so for fused runs it is an upper bound.

The CPU estimate (``estimate_units_cpu``; ``gradatlas plan``'s CPU line and ``--workers
auto``'s choice) does price stacking: it groups the trials as the sweep will (fused shapes, or
a cell's seeds) and costs each group by a model fitted on this project's 2-core CPU
(``benchmarks/fused_cost.py``). Nothing here imports torch; a 43,200-trial plan is costed in
well under a second (the CPU estimate's grouping hashes every trial's shape: seconds at 86,400).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradatlas.suites import Trial

# -- the time model's constants, from our own measurements on an H200 (docs/perf/) -------------
# runner_overhead_h200.json times width-64 MLPs on MNIST-1D for 320 steps (trial + MLflow
# record: 1.10 s at depth 3, 2.18 s at depth 20); quickstart_h200.txt runs the same nets for
# 768 steps (24 epochs of 32 steps: about 2.12 s per depth-3 trial and 4.43 s per depth-20
# trial, from its elapsed column). The two lengths separate the per-step cost from the fixed
# cost: 2.27 ms/step at depth 3 and 5.02 ms/step at depth 20, i.e. 1.8 ms + 0.16 ms per layer,
# and 0.4-0.6 s per trial on top (Lightning's Trainer, the init probe, the MLflow record). The
# model then reproduces all four measurements within 12%, and the quickstart's 102 s within 1%
# once its four exploded trials (0.1 s each) are counted as stopping early.
FIXED_S = 0.5
STEP_S = 1.8e-3
LAYER_STEP_S = 0.16e-3
# Throughput on the arithmetic itself. docs/perf/ has no compute-bound run to measure it from,
# so this is an assumption: about three quarters of the H200's 67 TFLOP/s fp32 peak, a
# conservative figure for fp32 convs with their elementwise (norm, activation, dropout) traffic.
EFFECTIVE_FLOPS = 50e12
GPU = "H200-class GPU"


# -- the estimate ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostEstimate:
    """The cost of a list of trials on one GPU running one trial at a time."""

    trials: int
    steps: int  # training steps, all trials together
    flops: float  # all trials together
    gpu_seconds: float
    assumptions: str

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600

    @property
    def mean_seconds(self) -> float:
        """Mean GPU-seconds per trial (0 for an empty plan)."""
        return self.gpu_seconds / self.trials if self.trials else 0.0

    def wall_hours(self, gpus: int) -> float:
        """Wall time on ``gpus`` GPUs, ignoring the last trials' tail."""
        return self.gpu_hours / max(1, gpus)


ASSUMPTIONS = (
    f"{GPU}, fp32, one trial at a time, every trial runs its full budget: {FIXED_S:g} s fixed "
    f"+ ({STEP_S * 1e3:g} ms + {LAYER_STEP_S * 1e3:g} ms x depth) per step "
    f"+ FLOPs at {EFFECTIVE_FLOPS / 1e12:g} TFLOP/s"
)


def trial_cost(spec: Any) -> tuple[int, float, float]:
    """(steps, FLOPs, GPU-seconds) of one resolved trial (a ``TrialSpec``)."""
    from gradatlas.datasets import describe, split_sizes
    from gradatlas.models import estimate_parameters, weight_positions

    ds, model, train = spec.dataset, spec.model, spec.train
    _, shape, outputs = describe(ds.name, ds.options)
    n_train, n_val = split_sizes(ds.name, ds.options)
    n_train = train.train_subset or n_train  # a training subset (0: the whole split)
    batch = min(train.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / batch)
    steps = train.steps or (train.epochs or 0) * steps_per_epoch
    weights = estimate_parameters(model, shape, outputs) * weight_positions(model.family, shape)
    evaluations = math.ceil(steps / (train.eval_every or steps_per_epoch))
    evaluated = evaluations * (n_val + min(n_val, n_train))
    flops = 6.0 * weights * batch * steps + 2.0 * weights * evaluated
    seconds = FIXED_S + steps * (STEP_S + model.depth * LAYER_STEP_S) + flops / EFFECTIVE_FLOPS
    return steps, flops, seconds


def _cost_key(spec: Any) -> tuple[Any, ...]:
    """Everything ``trial_cost`` reads: trials that agree on it cost the same (the seeds of a
    cell, and cells differing only in activation, init, optimizer, ...), so it is costed once.
    Cheaper than the cell id, which hashes the whole config."""
    ds, model, train = spec.dataset, spec.model, spec.train
    return (
        ds.name,
        tuple(sorted(ds.options.items())),
        model.family,
        model.depth,
        model.width,
        tuple(sorted(model.options.items())),
        train.steps,
        train.epochs,
        train.batch_size,
        train.eval_every,
        train.train_subset,
    )


def estimate_cost(trials: Iterable[Trial]) -> CostEstimate:
    """The cost of running ``trials`` (``gradatlas.suites.Trial``) by the module's time model."""
    costs: dict[tuple[Any, ...], tuple[int, float, float]] = {}
    count, steps, flops, seconds = 0, 0, 0.0, 0.0
    for trial in trials:
        key = _cost_key(trial.spec)
        if key not in costs:
            costs[key] = trial_cost(trial.spec)
        s, f, t = costs[key]
        count, steps, flops, seconds = count + 1, steps + s, flops + f, seconds + t
    return CostEstimate(count, steps, flops, seconds, ASSUMPTIONS)


def _hours(hours: float) -> str:
    if hours >= 100:
        return f"{hours:,.0f}"
    if hours >= 1:
        return f"{hours:.1f}"
    return f"{hours:.2g}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"


def format_cost(est: CostEstimate, gpus: int = 8) -> str:
    """One line for ``gradatlas plan``: GPU-hours, seconds per trial, the assumptions, and the
    wall time on ``gpus`` GPUs (one 8-GPU node by default). Fused trials (``execution.fuse``)
    share a stacked model's steps, so for them it is an upper bound: how much lower has not
    been measured on a GPU yet (``benchmarks/fused_cost.py`` in ``benchmarks/gpu_check.sh``)."""
    return (
        f"estimated cost: {_hours(est.gpu_hours)} GPU-hours (≈ {_duration(est.mean_seconds)} "
        f"per trial; {est.assumptions}); on {gpus} GPUs ≈ "
        f"{_duration(est.wall_hours(gpus) * 3600)} wall; an upper bound for fused trials "
        "(not yet measured on a GPU)"
    )


# -- CPU work: the plan's CPU line, and ``--workers auto``'s choice between this process and Ray --
# Trials train as stacked groups (``runners.batching``): with ``execution.fuse: auto`` every
# trial of a shape is a member of one group of up to MAX_AUTO members, without it a cell's
# seeds are one group, and ``batch_seeds: 1`` (or a family with no stacked form, or 16-mixed)
# leaves every trial alone, a group of one. What a group of K members, DROP of them with
# dropout, costs on one CPU core (one torch thread):
#
#   seconds = CPU_GROUP_S + K x (CPU_MEMBER_S + depth x CPU_MEMBER_LAYER_S)
#             + steps x (CPU_STEP_S + depth x CPU_LAYER_STEP_S
#                        + K x (CPU_MEMBER_STEP_S + ARITHMETIC)
#                        + DROP x depth x CPU_DROPOUT_LAYER_STEP_S)
#   ARITHMETIC = max(depth x CPU_MEMBER_LAYER_STEP_S, FLOPs per step / CPU_EFFECTIVE_FLOPS)
#
# Fitted (non-negative least squares on relative error) to 38 groups timed through
# ``runners.executor.run_unit`` on the 2-core development CPU: MNIST-1D MLPs of width 64 at
# depths 3, 10 and 20, K = 1, 4, 16, 64 (and 128) members, 20 and 80 steps, with and without
# dropout; CPU_EFFECTIVE_FLOPS from a width-256 MLP and a width-32 CNN (docs/perf/
# fused_cost_cpu.json and .md, from ``python benchmarks/fused_cost.py --check
# docs/perf/fused_cpu.json --check docs/perf/fused_cpu_rerun.json --json
# docs/perf/fused_cost_cpu.json --markdown docs/perf/fused_cost_cpu.md``). Worst residual 15% on
# the width-64 MLPs (38% on the heavier nets' 20-step groups, whose fixed evaluations are as
# heavy as the net; 7-14% at 80 steps). It predicts the measured quickstart and atlas slice,
# fused, seeds batched and one by one, within 26% (fused within 17%), about as much as two
# runs of the same measurement differ on that machine (24%).
# Per step, a trial alone costs CPU_STEP_S + CPU_MEMBER_STEP_S + depth x (CPU_LAYER_STEP_S +
# CPU_MEMBER_LAYER_STEP_S), a member of a large group only CPU_MEMBER_STEP_S + depth x
# CPU_MEMBER_LAYER_STEP_S: the Lightning loop, the instrument and the optimizer's per-tensor
# work are paid once per group. Each member's build, init probe and evaluations at step 0 and on
# the test split are paid per member and per layer; dropout draws each member's masks on its own
# random stream, so it is paid per member and per layer as if alone. Not modelled: norms,
# activations other than ReLU (measured within 10% of it), larger evaluation splits.
CPU_GROUP_S = 18e-3
CPU_MEMBER_S = 0.67e-3
CPU_MEMBER_LAYER_S = 1.14e-3
CPU_STEP_S = 1.13e-3
CPU_LAYER_STEP_S = 0.043e-3
CPU_MEMBER_STEP_S = 0.10e-3
CPU_MEMBER_LAYER_STEP_S = 0.081e-3
CPU_DROPOUT_LAYER_STEP_S = 0.114e-3
# Nets with more arithmetic per layer than a width-64 MLP (wider nets, conv nets) cost a
# member's FLOPs at this rate instead, where that is more than the per-layer terms say.
CPU_EFFECTIVE_FLOPS = 53e9
# The terms above in the order ``cpu_terms`` returns their factors (the benchmark fits them).
CPU_TERMS = (
    "CPU_GROUP_S",
    "CPU_MEMBER_S",
    "CPU_MEMBER_LAYER_S",
    "CPU_STEP_S",
    "CPU_LAYER_STEP_S",
    "CPU_MEMBER_STEP_S",
    "CPU_MEMBER_LAYER_STEP_S",
    "CPU_DROPOUT_LAYER_STEP_S",
)
# What Ray costs before it pays: a 24-trial, 200-step suite took 17.4 s in this process and
# 23.5 s on 2 Ray workers (issue 20's measurement), so start-up, worker imports and the first
# units' dispatch cost about 23.5 - 17.4 / 2 = 14.8 s.
RAY_STARTUP_S = 15.0


def cpu_terms(steps: int, depth: int, members: int, dropout_members: int) -> tuple[float, ...]:
    """What each of ``CPU_TERMS`` is multiplied by for one stacked group."""
    return (
        1.0,
        float(members),
        float(members * depth),
        float(steps),
        float(steps * depth),
        float(steps * members),
        float(steps * members * depth),
        float(steps * dropout_members * depth),
    )


def cpu_constants() -> dict[str, float]:
    """The CPU model's constants by name (``CPU_TERMS`` and ``CPU_EFFECTIVE_FLOPS``)."""
    return {name: globals()[name] for name in (*CPU_TERMS, "CPU_EFFECTIVE_FLOPS")}


def group_cpu_seconds(
    steps: int,
    depth: int,
    members: int,
    dropout_members: int = 0,
    flops_per_step: float = 0.0,
    constants: dict[str, float] | None = None,
) -> float:
    """Estimated CPU seconds (one torch thread) of one stacked group of ``members`` trials of one
    shape, ``dropout_members`` of them with dropout, training ``steps`` steps of
    ``flops_per_step`` each (one member's, evaluations included: ``trial_cost``'s FLOPs / steps).
    ``constants``: other values of ``cpu_constants()`` (the benchmark's fresh fit)."""
    c = constants or cpu_constants()
    arithmetic = depth * c["CPU_MEMBER_LAYER_STEP_S"]
    if c["CPU_EFFECTIVE_FLOPS"] > 0:
        arithmetic = max(arithmetic, flops_per_step / c["CPU_EFFECTIVE_FLOPS"])
    per_step = (
        c["CPU_STEP_S"]
        + depth * c["CPU_LAYER_STEP_S"]
        + members * (c["CPU_MEMBER_STEP_S"] + arithmetic)
        + dropout_members * depth * c["CPU_DROPOUT_LAYER_STEP_S"]
    )
    fixed = c["CPU_GROUP_S"] + members * (c["CPU_MEMBER_S"] + depth * c["CPU_MEMBER_LAYER_S"])
    return fixed + steps * per_step


@dataclass(frozen=True)
class CpuGroup:
    """Trials of one shape that train together as one stacked model (or one trial alone)."""

    trials: tuple[Any, ...]
    steps: int
    depth: int
    dropout_members: int
    flops_per_step: float  # one member's, evaluations included

    def seconds(self, constants: dict[str, float] | None = None) -> float:
        return group_cpu_seconds(
            self.steps,
            self.depth,
            len(self.trials),
            self.dropout_members,
            self.flops_per_step,
            constants,
        )


def cpu_groups(
    trials: Iterable[Trial],
    *,
    fuse: bool,
    batch_seeds: int | str = "auto",
    units: Sequence[Any] | None = None,
) -> list[CpuGroup]:
    """The stacked groups ``trials`` would train as: the work units ``make_units`` makes (one
    per shape fused, else one per cell), each cut as a worker's ``seed_groups`` cuts it, with
    ``auto`` taken as ``MAX_AUTO`` members (the worker's memory decides, and an MLP's members
    are small; the driver cannot know the worker's device). ``units``: those ``make_units``
    already made of ``trials`` with this ``fuse`` (grouping by shape hashes every trial: seconds
    at 86,400 trials), else they are made here."""
    from gradatlas.runners.batching import MAX_AUTO, cut, group_size
    from gradatlas.runners.executor import make_units

    groups: list[CpuGroup] = []
    costs: dict[tuple[Any, ...], tuple[int, float, float]] = {}
    if units is None:
        units = make_units(trials, batch_seeds, fuse=fuse)
    for unit in units:
        members = unit.trials
        size = group_size(members, batch_seeds, lambda: MAX_AUTO)
        spec = members[0].spec
        key = _cost_key(spec)
        if key not in costs:
            costs[key] = trial_cost(spec)
        steps, flops, _ = costs[key]
        per_step = flops / steps if steps else 0.0
        for group in cut(members, size):
            dropout = sum(1 for t in group if t.spec.model.dropout > 0)
            groups.append(CpuGroup(tuple(group), steps, spec.model.depth, dropout, per_step))
    return groups


def estimate_units_cpu(
    trials: Iterable[Trial],
    fuse: bool,
    batch_seeds: int | str = "auto",
    units: Sequence[Any] | None = None,
) -> float:
    """Estimated CPU seconds (one torch thread) to train ``trials`` one group after another in
    one process, grouped as ``execution.fuse`` (``fuse``) and ``execution.batch_seeds`` would
    group them (``units``: as ``cpu_groups``). Every trial runs its full budget: an upper bound
    where trials explode early."""
    groups = cpu_groups(trials, fuse=fuse, batch_seeds=batch_seeds, units=units)
    return sum(g.seconds() for g in groups)


def cpu_seconds(
    trials: Iterable[Trial], fuse: bool = True, batch_seeds: int | str = "auto"
) -> float:
    """Estimated CPU seconds to train ``trials`` one after another in one process, as the
    suite's execution settings group them (``estimate_units_cpu``): what ``--workers auto``
    weighs against Ray's start-up."""
    return estimate_units_cpu(trials, fuse=fuse, batch_seeds=batch_seeds)


def _cpu_time(seconds: float) -> str:
    return _duration(seconds) if seconds < 7200 else f"{_hours(seconds / 3600)} h"


def format_cpu(
    trials: Sequence[Trial],
    workers: int,
    fuse: bool,
    batch_seeds: int | str,
    fused_units: Sequence[Any] | None = None,
) -> str:
    """One line for ``gradatlas plan``: the CPU estimate fused and one cell at a time, and the
    wall time on ``workers`` Ray workers of one thread each, as the suite would run
    (``fused_units``: the trials' units by shape, if already made)."""
    fused = estimate_units_cpu(trials, fuse=True, batch_seeds=batch_seeds, units=fused_units)
    cells = estimate_units_cpu(trials, fuse=False, batch_seeds=batch_seeds)
    work = fused if fuse else cells
    if workers > 1 and worth_ray(work, workers):
        where = f"on {workers} workers ≈ {_cpu_time(RAY_STARTUP_S + work / workers)} wall"
    else:
        where = f"{_cpu_time(work)} in one process (too little to pay for Ray's start-up)"
    return (
        f"on this CPU (1 thread per worker, every trial to its full budget): "
        f"≈ {_cpu_time(fused)} fused, {_cpu_time(cells)} one cell at a time; "
        f"as this suite runs (execution.fuse: {'auto' if fuse else 'off'}) {where}"
    )


def worth_ray(work_s: float, workers: int) -> bool:
    """Whether ``workers`` Ray workers finish ``work_s`` seconds of work sooner than this
    process: ``RAY_STARTUP_S + work / workers < work``."""
    return workers > 1 and RAY_STARTUP_S + work_s / workers < work_s
