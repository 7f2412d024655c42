"""One trial's whole life, top to bottom.

resolve config -> build data, model, optimizer -> probe at init -> train under Lightning with the
instrument callback (validation split) and the callbacks that act on its evaluations and on stop
requests (``runners.callbacks``) -> classify the outcome -> score the test split once -> return a
``TrialResult``. A probe-only trial (``train.steps: 0``) stops after the probe.
Recording it (MLflow) is someone else's job (``gradatlas.runners.tracking``), so this function
can run anywhere: in a sweep, in a worker claiming trials from a queue, or in a test.

``run_trials`` lives the same life for several seeds of one cell at once (batched seeds): the
seeds' models are built and probed one by one, stacked into one model with a leading seed
dimension, and trained under one Trainer; each comes back as its own ``TrialResult``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from gradatlas.models import build_model
from gradatlas.models.stacked import rng_state, stack_models
from gradatlas.record import PROBE
from gradatlas.runners.callbacks import (
    EarlyStopRule,
    KeepSignalHandlers,
    LiveFlushCallback,
    PruningCallback,
    StopRequestCallback,
    fit,
)
from gradatlas.runners.instrument import GradientInstrument
from gradatlas.runners.loader import StackedBatches, TensorBatches, trial_data
from gradatlas.runners.module import StackedTrialModule, TrialModule, clip_bounds, loss_for
from gradatlas.runners.outcome import Outcome, Trace, chance_level, classify, trace_to_json
from gradatlas.runners.probe import probe_init
from gradatlas.suites import Trial

PRECISION = {"32": "32-true", "64": "64-true", "16-mixed": "16-mixed", "bf16-mixed": "bf16-mixed"}


@dataclass
class TrialResult:
    trial: Trial
    outcome: Outcome
    task: str
    num_classes: int | None
    summary: dict[str, float]
    curves: dict[str, Any]
    profiles: dict[str, Any]
    timing: dict[str, float]
    device: str
    interrupted: bool = False
    started_at: float = 0.0  # unix seconds on the machine that ran it (MLflow run start/end)
    ended_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)  # worker_environment()
    batch_members: list[str] = field(default_factory=list)  # stacked with (trial ids), or []
    # What the outcome rules read, at full resolution (runners/outcome.py ``trace_to_json``):
    # the record keeps it so the label can be judged again under other thresholds.
    trace: dict[str, Any] = field(default_factory=dict)


@functools.cache
def worker_environment() -> dict[str, Any]:
    """What this worker process trains with: recorded on every trial (a Ray worker on another
    host may differ from the driver whose environment the sweep run archives)."""
    import platform
    import socket

    from gradatlas.runners.tracking import cpu_model, package_versions

    versions = package_versions(
        ("torch", "pytorch-lightning", "numpy", "scipy", "scikit-learn", "mnist1d", "gradatlas")
    )
    cuda = torch.cuda.is_available()
    return {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "cuda": torch.version.cuda if cuda else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        # The CPU and the vector instructions torch's kernels dispatch to (AVX512, AVX2, ...):
        # the same torch build rounds differently on another, and a deep net at a high lr
        # amplifies that round-off until borderline trials change label.
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def quiet_lightning() -> None:
    """Lightning announces devices and tips on every Trainer; a sweep builds hundreds."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def set_threads(threads: int) -> None:
    """torch's intra-op threads for this process (its default, one per logical CPU, makes
    small trials many times slower when several workers share a machine)."""
    torch.set_num_threads(max(1, int(threads)))


def default_threads() -> int:
    """What a single-process sweep uses: every core this process may run on, capped at 4
    (these small networks stop scaling there, and a shared machine keeps some room)."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def pick_device(accelerator: str) -> torch.device:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def run_trial(
    trial: Trial,
    *,
    accelerator: str = "auto",
    stop: threading.Event | None = None,
    early_stop: EarlyStopRule | None = None,
    live: Any = None,
) -> TrialResult:
    """One trial on its own: one model, one Trainer (``live``: a ``runners.live.LiveSink``)."""
    return run_trials(
        [trial], accelerator=accelerator, stop=stop, early_stop=early_stop, live=live
    )[0]


def run_trials(
    trials: Sequence[Trial],
    *,
    accelerator: str = "auto",
    stop: threading.Event | None = None,
    early_stop: EarlyStopRule | None = None,
    live: Any = None,
) -> list[TrialResult]:
    """Trials of one shape under one Trainer: one trial alone, several as one stacked model
    (``models.stacked``) whose member k is trial k exactly as it would have run alone (same
    init, same batches, same dropout masks, its own loss, learning rate, optimizer
    hyper-parameters, clipping and explosion). The members may be the seeds of one cell or,
    fused, any trials that share a shape (``runners.batching.shape_key``). One result per
    trial, in order.
    """
    from gradatlas.runners.batching import shape_key

    t_start, started_at = time.perf_counter(), time.time()
    specs = [t.spec for t in trials]  # resolved and validated by the suites layer: trusted here
    spec = specs[0]  # one shape: what the members share comes from here, the rest per member
    members = len(specs)
    stacked = members > 1
    if len({shape_key(t) for t in trials}) != 1:
        raise ValueError("run_trials trains trials of one shape; got trials of several shapes")
    if stacked and spec.train.precision == "16-mixed":
        raise ValueError("16-mixed trains unbatched: one loss scale would couple the members")
    quiet_lightning()
    device = pick_device(accelerator)

    # Data: the trial's own dataset, built once per process (cached), with its training subset
    # taken (the same for every seed), held on the training device.
    data = trial_data(spec).to(device)
    train = spec.train
    if stacked:
        loader = StackedBatches(
            data.x_train, data.y_train, train.batch_size, [s.seed for s in specs]
        )
    else:
        loader = TensorBatches(data.x_train, data.y_train, train.batch_size, seed=spec.seed)
    steps_per_epoch = len(loader)
    max_steps = train.steps if train.steps is not None else train.epochs * steps_per_epoch
    eval_every = train.eval_every or steps_per_epoch

    # Models: each seeded and built as its own trial (so member k's init is trial k's, bit for
    # bit), probed at init on its own, then stacked.
    loss_fn = loss_for(data.task, train.loss)
    probe_n = spec.instrument.probe_batch
    models, profiles, streams = [], [], []
    for s in specs:
        pl.seed_everything(s.seed, workers=False, verbose=False)
        built = build_model(s.model, data.input_shape, data.num_outputs)
        profiles.append(
            probe_init(built.to(device), data.x_train[:probe_n], data.y_train[:probe_n], loss_fn)
        )
        models.append(built)
        streams.append(rng_state(device))  # where this trial's dropout draws would begin
    if max_steps == 0:
        return _probe_only(trials, profiles, data, device, t_start, started_at)
    if stacked:
        model = stack_models(models, rng_states=streams, device=device)
        module: TrialModule = StackedTrialModule(
            model, spec.optim, train, max_steps, data.task, member_specs=specs
        )
    else:
        model = models[0]
        module = TrialModule(model, spec.optim, train, max_steps, data.task)

    # The generalization gap needs train metrics on as many examples as validation uses.
    n_eval = len(data.x_val)

    def evaluate() -> dict[str, torch.Tensor]:
        val = module.evaluate(data.x_val, data.y_val)
        train = module.evaluate(data.x_train[:n_eval], data.y_train[:n_eval])
        return {f"val_{k}": v for k, v in val.items()} | {f"train_{k}": v for k, v in train.items()}

    clip = train.grad_clip
    chance = chance_loss(data, train.loss)
    instrument = GradientInstrument(
        model,
        max_steps=max_steps,
        every=spec.instrument.every,
        eval_every=eval_every,
        evaluate=evaluate,
        explode_grad_norm=spec.outcomes.explode_grad_norm,
        grad_overflow_skipped=train.precision == "16-mixed",
        clip_mode=clip.mode,
        clip_max=clip_bounds(specs) if clip.mode != "none" else None,
        thresholds=dataclasses.asdict(spec.outcomes),
        chance_loss=chance,
    )
    # The instrument first: the callbacks after it act on the evaluation it has just made.
    callbacks: list[pl.Callback] = [instrument, KeepSignalHandlers()]
    pruning = PruningCallback(instrument, early_stop) if early_stop is not None else None
    stop_request = StopRequestCallback(stop) if stop is not None else None
    if pruning is not None:
        callbacks.append(pruning)
    if live is not None:  # runners.live: the run exists (RUNNING) from here, with its curves
        live.started(
            trials, started_at=started_at, device=str(device), threads=torch.get_num_threads()
        )
        callbacks.append(LiveFlushCallback(instrument, live, spec.instrument.max_points))
    if stop_request is not None:
        callbacks.append(stop_request)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=PRECISION[train.precision],
        max_steps=max_steps,
        max_epochs=-1,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        # Stacked: the module clips each member by its own norm (configure_gradient_clipping).
        gradient_clip_val=clip.max if clip.mode != "none" else None,
        gradient_clip_algorithm=clip.mode if clip.mode != "none" else None,
    )
    t_fit = time.perf_counter()
    with warnings.catch_warnings():
        # Our TensorBatches is not a torch DataLoader, so Lightning's advice about DataLoader
        # workers does not apply: the batches are slices of tensors already on the device.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # --accelerator cpu on a GPU machine is the user's explicit choice (e.g. to compare).
        warnings.filterwarnings("ignore", message="GPU available but not used.*")
        # Lightning 2.6's own _pytree helper uses a torch API deprecated in torch 2.14; nothing
        # in gradatlas calls it, and it says nothing about the trial.
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        fit(trainer, module, loader, stop_request)
    fit_time = time.perf_counter() - t_fit
    # The test split, scored once after training and never looked at before: the accuracies a
    # report quotes were not used to label, tune or stop anything.
    test = {f"test_{k}": v.detach().double().cpu().numpy() for k, v in
            module.evaluate(data.x_test, data.y_test).items()}  # fmt: skip

    judged = []
    clipped = instrument.clip_mode != "none"
    for k in range(members):
        rec = instrument.arrays(k)
        trace = Trace(
            task=data.task,
            num_classes=data.num_classes,
            step_loss=rec["step_loss"],
            step_grad_norm=rec["step_grad_norm"],
            step_grad_norm_raw=rec["step_grad_norm_raw"] if clipped else None,
            chance_loss=chance,
            eval_steps=rec["eval_steps"],
            val_loss=rec["eval"]["val_loss"],
            val_acc=rec["eval"].get("val_acc"),
            layer_steps=rec["layer_steps"],
            layer_grad_norm=rec["layer_grad_norm"],
            layer_update_ratio=rec["update_ratio"],
            layer_lr=np.asarray([v for _, v in rec["lr"]], dtype=np.float64),
            grad_overflow_skipped=instrument.grad_overflow_skipped,
            loss=train.loss,
        )
        outcome = classify(trace, dataclasses.asdict(specs[k].outcomes))
        summary = _summary(rec, outcome, profiles[k], instrument.steps_run[k], clipped)
        summary |= {key: float(values[k]) for key, values in test.items()}
        if "test_acc" in summary and "final_train_acc" in summary:
            summary["generalization_gap"] = summary["final_train_acc"] - summary["test_acc"]
        curves = _curves(rec, spec.instrument.max_points, clipped=clipped)
        judged.append((outcome, summary, curves, trace_to_json(trace, max_steps=max_steps)))

    # Each member's share of the time: batching is how the trials ran, not what they are (the
    # record's batch_seeds and tag say how).
    timing = {
        "wall_time_s": (time.perf_counter() - t_start) / members,
        "fit_time_s": fit_time / members,
        "instrument_time_s": instrument.seconds / members,
        "batch_seeds": float(members),
        # Another thread count changes the curves (~2e-7 relative) but not the trial id: say so.
        "torch_threads": float(torch.get_num_threads()),
    }
    if live is not None:  # what being live cost this trial's worker (share of wall_time_s)
        timing["live_time_s"] = live.seconds / members
    ended_at = time.time()
    stopped_at = pruning.stopped_at if pruning is not None else None
    early_stop_extra = {"early_stop_step": stopped_at} if stopped_at is not None else {}
    results = []
    for trial, (outcome, summary, curves, trace), profile in zip(
        trials, judged, profiles, strict=True
    ):
        results.append(
            TrialResult(
                trial=trial,
                outcome=outcome,
                task=data.task,
                num_classes=data.num_classes,
                summary=summary | timing,
                curves=curves,
                profiles=profile,
                timing=dict(timing),
                device=str(device),
                interrupted=stop_request is not None and stop_request.stopped,
                started_at=started_at,
                ended_at=ended_at,
                extra=early_stop_extra,
                environment=worker_environment(),
                batch_members=[t.trial_id for t in trials] if stacked else [],
                trace=trace,
            )
        )
    return results


def chance_loss(data: Any, loss: str = "cross_entropy") -> float | None:
    """The loss of a constant prediction (the outcome rules' chance level): for classification
    the uniform prediction's in the trial's loss (``outcome.chance_level``: ln(classes) under
    cross-entropy, (C - 1) / C^2 under mse), the training targets' variance (the mean squared
    error of predicting their mean, averaged over outputs as the loss is) for regression."""
    if data.task == "classification":
        return chance_level(data.num_classes, loss)
    y = data.y_train.double()
    return float(((y - y.mean(dim=0)) ** 2).mean())


def _probe_only(
    trials: Sequence[Trial],
    profiles: list[dict[str, Any]],
    data: Any,
    device: torch.device,
    t_start: float,
    started_at: float,
) -> list[TrialResult]:
    """Results of probe-only trials: the init profiles and their summary, no training and no
    verdict (for studies of the gradient at initialisation)."""
    members = len(trials)
    timing = {
        "wall_time_s": (time.perf_counter() - t_start) / members,
        "fit_time_s": 0.0,
        "instrument_time_s": 0.0,
        "batch_seeds": float(members),
    }
    outcome = Outcome(PROBE, "probe-only trial (train.steps: 0): profiles at init, no training")
    ended_at = time.time()
    return [
        TrialResult(
            trial=trial,
            outcome=outcome,
            task=data.task,
            num_classes=data.num_classes,
            summary=_init_summary(profile) | timing,
            curves={},
            profiles=profile,
            timing=dict(timing),
            device=str(device),
            started_at=started_at,
            ended_at=ended_at,
            environment=worker_environment(),
            batch_members=[t.trial_id for t in trials] if members > 1 else [],
        )
        for trial, profile in zip(trials, profiles, strict=True)
    ]


def _init_summary(profiles: dict[str, Any]) -> dict[str, float]:
    """The gradient at init, first and last weight layer, and their ratio."""
    first, last = profiles["init"]["grad_norm"][0], profiles["init"]["grad_norm"][-1]
    out = {
        "init_grad_norm_first": first if first is not None else float("nan"),
        "init_grad_norm_last": last if last is not None else float("nan"),
    }
    out["init_grad_ratio"] = (
        out["init_grad_norm_first"] / out["init_grad_norm_last"]
        if out["init_grad_norm_last"] not in (0.0,) and math.isfinite(out["init_grad_norm_last"])
        else float("nan")
    )
    return out


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def thin(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spaced points, always keeping the first and last
    (the last point of an exploded run is the one that matters)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def _curves(rec: dict[str, Any], max_points: int, clipped: bool = False) -> dict[str, Any]:
    """The thinned curves the record shows (``grad_norm``: raw, before clipping; with clipping,
    also ``grad_norm_applied``; ``update_norm``: the step the optimizer applied,
    ``||theta_{t+1} - theta_t||``). The outcome rules read the full-resolution ``trace``."""
    steps = np.arange(len(rec["step_loss"]))
    keep = thin(len(steps), max_points)
    lr_steps = np.asarray([s for s, _ in rec["lr"]], dtype=np.int64)
    lr_values = np.asarray([v for _, v in rec["lr"]], dtype=float)
    lr_at = (
        np.interp(steps[keep], lr_steps, lr_values) if lr_steps.size else np.full(keep.size, np.nan)
    )
    # Per-layer curves multiply by depth; a quarter of the points still shows their shape.
    layer_keep = thin(len(rec["layer_steps"]), max(10, max_points // 4))
    ev_keep = thin(len(rec["eval_steps"]), max_points)
    return {
        "train": {
            "step": steps[keep].tolist(),
            "loss": _finite_or_none(rec["step_loss"][keep]),
            "grad_norm": _finite_or_none(rec["step_grad_norm_raw"][keep]),
            "update_norm": _finite_or_none(rec["step_update_norm"][keep]),
            "lr": _finite_or_none(lr_at),
        }
        | ({"grad_norm_applied": _finite_or_none(rec["step_grad_norm"][keep])} if clipped else {}),
        "eval": {"step": rec["eval_steps"][ev_keep].tolist()}
        | {k: _finite_or_none(v[ev_keep]) for k, v in rec["eval"].items()},
        "layers": {
            "step": rec["layer_steps"][layer_keep].tolist(),
            "grad_norm": [_finite_or_none(r) for r in rec["layer_grad_norm"][layer_keep]],
            "update_ratio": [_finite_or_none(r) for r in rec["update_ratio"][layer_keep]],
        },
    }


def _finite_max(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


def update_cv(update_norm: np.ndarray) -> float:
    """Coefficient of variation (population std / mean) of the per-step update norm
    ``||theta_{t+1} - theta_t||`` over the whole run: how much the step the optimizer applied
    varies, 0 for a constant step size. Non-finite steps are left out; NaN with fewer than 3
    finite steps, or when no step moved the parameters (mean 0)."""
    finite = update_norm[np.isfinite(update_norm)]
    if finite.size < 3 or not finite.mean() > 0:
        return float("nan")
    return float(finite.std() / finite.mean())


def _last_finite(values: np.ndarray) -> float:
    return float(values[-1]) if values.size else float("nan")


def _summary(
    rec: dict[str, Any], outcome: Outcome, profiles: dict, steps_run: int, clipped: bool = False
) -> dict:
    ev = rec["eval"]
    loss = rec["step_loss"]
    tail = loss[-max(1, loss.size // 10) :] if loss.size else loss
    out: dict[str, float] = {
        "initial_loss": float(loss[0]) if loss.size else float("nan"),
        "final_train_loss": float(np.mean(tail)) if tail.size else float("nan"),
        "final_val_loss": _last_finite(ev["val_loss"]),
        "best_val_loss": float(np.nanmin(ev["val_loss"]))
        if np.isfinite(ev["val_loss"]).any()
        else float("nan"),
        "steps_run": float(steps_run),
        **_init_summary(profiles),
    }
    # Non-finite values are kept (trial.json writes them as null) and counted here, so a
    # failed trial's missing numbers are never mistaken for absent ones.
    raw, applied = rec["step_grad_norm_raw"], rec["step_grad_norm"]
    out["nonfinite_loss_steps"] = float(np.sum(~np.isfinite(loss)))
    out["nonfinite_grad_norm_steps"] = float(np.sum(~np.isfinite(raw)))
    out["nonfinite_val_loss_evals"] = float(np.sum(~np.isfinite(ev["val_loss"])))
    out["max_grad_norm"] = _finite_max(raw)  # raw, before clipping
    out["update_cv"] = update_cv(rec["step_update_norm"])
    if clipped:
        out["max_grad_norm_applied"] = _finite_max(applied)
    if "val_acc" in ev:
        out["final_val_acc"] = _last_finite(ev["val_acc"])
        out["best_val_acc"] = (
            float(np.nanmax(ev["val_acc"])) if ev["val_acc"].size else float("nan")
        )
        out["final_train_acc"] = _last_finite(ev["train_acc"])
        out["generalization_gap"] = out["final_train_acc"] - out["final_val_acc"]
    if outcome.steps_to_target is not None:
        out["steps_to_target"] = float(outcome.steps_to_target)
    if outcome.explode_step is not None:
        out["explode_step"] = float(outcome.explode_step)
    return out
