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
the step they explode. Nothing here imports torch; a 43,200-trial plan is costed in well under a
second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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
    wall time on ``gpus`` GPUs (one 8-GPU node by default)."""
    return (
        f"estimated cost: {_hours(est.gpu_hours)} GPU-hours (≈ {_duration(est.mean_seconds)} "
        f"per trial; {est.assumptions}); on {gpus} GPUs ≈ "
        f"{_duration(est.wall_hours(gpus) * 3600)} wall"
    )


# -- CPU work, for ``--workers auto``'s choice between this process and Ray ---------------------
# Measured on the 2-core CI-class CPU (one torch thread per worker, seeds batched): the
# quickstart's trials cost 2.36 ms per step at depth 3 and 5.65 ms at depth 20 (wall_time_s per
# trial / steps run, fresh clone at e85116e), i.e. about 1.9 ms + 0.19 ms x depth, plus a tenth
# of a second per trial (build, init probe, Trainer).
CPU_FIXED_S = 0.1
CPU_STEP_S = 1.9e-3
CPU_LAYER_STEP_S = 0.19e-3
# What Ray costs before it pays: a 24-trial, 200-step suite took 17.4 s in this process and
# 23.5 s on 2 Ray workers (issue 20's measurement), so start-up, worker imports and the first
# units' dispatch cost about 23.5 - 17.4 / 2 = 14.8 s.
RAY_STARTUP_S = 15.0


def cpu_seconds(trials: Iterable[Trial]) -> float:
    """Estimated CPU seconds to train ``trials`` one after another in one process."""
    total = 0.0
    costs: dict[tuple[Any, ...], float] = {}
    for trial in trials:
        key = _cost_key(trial.spec)
        if key not in costs:
            steps, _, _ = trial_cost(trial.spec)
            depth = trial.spec.model.depth
            costs[key] = CPU_FIXED_S + steps * (CPU_STEP_S + depth * CPU_LAYER_STEP_S)
        total += costs[key]
    return total


def worth_ray(work_s: float, workers: int) -> bool:
    """Whether ``workers`` Ray workers finish ``work_s`` seconds of work sooner than this
    process: ``RAY_STARTUP_S + work / workers < work``."""
    return workers > 1 and RAY_STARTUP_S + work_s / workers < work_s
