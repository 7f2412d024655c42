"""The outcome of a trial, computed from what happened, by declared rules.

Each label names a mechanism. Rules, applied in this order; the first that holds is the outcome
(thresholds come from the suite's ``outcomes`` block and are printed in every report). "Chance"
is the loss of a constant prediction, in the trial's own loss (``chance_level``): for
classification the uniform prediction's, ln(classes) under cross-entropy and (C - 1) / C^2 per
output under ``mse`` (raw logits against one-hot targets); the targets' variance for regression
(their mean). The "reference" loss is the smaller of the
step-0 loss and chance (fitting the output layer's bias alone brings an over-confident initial
loss down to chance); the "start scale" the larger of the two (so a lucky start below chance does
not make an ordinary rise to chance a divergence). The "final" loss is the mean training loss over
the last 10% of steps run.

1. ``exploded``: the first step at which any of these holds is ``explode_step``; the trial (or
   batched member) stops there:

   - the training loss is not finite, or a validation loss is not finite;
   - the forward signal exploded at initialization: the step-0 loss is above
     ``explode_init_loss_factor`` x chance (logits that large: a dead-ReLU net under N(0, 1)
     init starts near 750 x chance; saturated sigmoid or tanh nets under the same init, whose
     outputs are bounded, near 2-8 x);
   - the loss left its starting scale: a training loss above ``explode_loss_factor`` x the start
     scale;
   - the global gradient norm AS APPLIED is not finite or is above ``explode_grad_norm``: after
     clipping where the trial clips (norm clipping: raw x min(1, max / (raw + 1e-6)), as
     ``torch.nn.utils.clip_grad_norm_`` and the batched module apply it per member; value
     clipping: the norm of the clamped gradient), the raw norm where it does not. So a clipped
     trial whose loss stays finite and bounded is not exploded, however large its raw norm;
     the raw (pre-clip) norm is still recorded and charted.

   Under ``16-mixed`` precision a non-finite gradient norm is the loss scaler's overflow signal
   (torch's GradScaler skips that step and lowers the scale), not an explosion, so there only
   the loss and finite gradient norms count. Exploded comes first because an explosion ends the
   trial: nothing after it was trained.
2. ``converged``: the target was reached at an evaluation: validation accuracy >=
   ``target_accuracy`` (classification) or validation loss <= ``target_loss`` (regression).
   The first such step is ``steps_to_target``. It comes before ``dead`` and ``diverged``
   because the label answers "did it train to the target within the budget", and a trial that
   reached it did; if the loss rose or the units died afterwards, the reason says so.
3. ``dead``: the units died: the first layer's gradient was exactly zero at most layer records
   of the second half of training (no unit passes any gradient back: a ReLU net whose units all
   died from a negative bias, or collapsed after too large a step, mid-training, hence the
   second half) and the loss made no lasting progress (final loss above ``(1 -
   loss_progress)`` x the reference). Exact zeros are also what a gradient fading below the
   float range looks like in a net of extreme depth: when the first layer with a non-zero
   gradient is itself below ``vanish_ratio`` of the last layer's, the zeros are an underflow
   and the trial is judged by rule 5 (``vanished``) instead. Dead comes before ``diverged``:
   it names the mechanism, and a net whose output no longer depends on its input can end at
   any loss.
4. ``diverged``: finite, but the loss ended well above where it started: final loss above
   ``(1 + diverge_rise)`` x the start scale (training made the fit worse, without a
   non-finite value or a loss beyond ``explode_loss_factor``).
5. ``vanished``: the loss stayed near its starting level (final loss above ``(1 -
   loss_progress)`` x the reference; rule 4 bounds it from above) while the first layer's
   gradient was tiny but non-zero (the textbook multiplicative vanishing), by any of three
   measures, each a median over the layer records of training:

   - its norm below ``vanish_grad_norm``;
   - its ratio to the last layer's below ``vanish_ratio`` (a gradient that fades toward the
     input);
   - its update-to-weight ratio ``|dw| / |w|`` per step, divided by the learning rate at that
     step, below ``vanish_update_ratio`` (gradients uniformly small, which the two above can
     miss: a 30-layer ReLU net under Xavier init has every hidden layer's gradient near 3e-7,
     above ``vanish_grad_norm``, and a head just small enough to keep the ratio above
     ``vanish_ratio``).
     Dividing by the learning rate makes this the gradient's measure, not the learning
     rate's: a layer that barely moves because the learning rate is tiny has healthy
     gradients and is ``stalled``, not ``vanished``. For SGD it is ``|g| / |w|``; momentum
     scales it by up to ``1 / (1 - momentum)``; Adam's normalised steps keep it large, as they
     should (Adam's update does not vanish with the gradient). Weight decay adds its own
     shrinkage to ``|dw|`` (about ``weight_decay / (1 - momentum)``), so above about
     ``vanish_update_ratio x (1 - momentum)`` it can hide a vanished gradient from this test.

   The per-layer gradient norms read here are the raw (pre-clip) ones. The reason carries the
   figures and thresholds behind the label.
6. ``stalled``: no progress past chance: best validation accuracy below ``1/classes +
   chance_margin`` (classification), or best validation loss above ``(1 - loss_progress)`` x the
   initial validation loss (regression).
7. ``unconverged``: it learned (beyond chance) but did not reach the target within the budget.

A threshold missing from the thresholds given (a record judged before it existed) switches its
test off. Every trial record keeps the series these rules read at full resolution (its
``trace``), so ``reports.sensitivity`` can judge every trial again under other thresholds
without rerunning it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradatlas.record import OUTCOMES as OUTCOMES  # re-exported; the names live in the record
from gradatlas.record import OutcomeLabel


@dataclass
class Trace:
    """What a trial did, as plain arrays (non-finite values kept as they were)."""

    task: str  # "classification" or "regression"
    num_classes: int | None
    step_loss: np.ndarray  # one per optimizer step run, step 0 first
    step_grad_norm: np.ndarray  # the global gradient norm as applied (after clipping, if any)
    eval_steps: np.ndarray  # steps at which validation ran (0 = before training)
    val_loss: np.ndarray
    val_acc: np.ndarray | None
    layer_steps: np.ndarray
    layer_grad_norm: np.ndarray  # (records, weight layers), layer 0 = first; raw (pre-clip)
    grad_overflow_skipped: bool = False  # 16-mixed: inf/nan grads are skipped steps
    # (records, weight layers): |dw| / |w| of the step at each record (None: not recorded)
    layer_update_ratio: np.ndarray | None = None
    # (records,): the learning rate of that step (None: not recorded; the update test is skipped)
    layer_lr: np.ndarray | None = None
    # the raw (pre-clip) global gradient norm per step; None: no clipping (the same as applied)
    step_grad_norm_raw: np.ndarray | None = None
    # the loss of a constant prediction; None: ``chance_level`` of the task and loss where known
    chance_loss: float | None = None
    # the classification loss trained on (``TrainSpec.loss``): what chance means for it
    loss: str = "cross_entropy"

    @property
    def chance(self) -> float | None:
        """Chance level (see the module docstring), or None where it is not known."""
        if self.chance_loss is not None and math.isfinite(self.chance_loss):
            return float(self.chance_loss)
        if self.task == "classification":
            return chance_level(self.num_classes, self.loss)
        return None

    @property
    def clipped(self) -> bool:
        return self.step_grad_norm_raw is not None


def chance_level(num_classes: int | None, loss: str = "cross_entropy") -> float | None:
    """Chance for a classification loss: the loss of the uniform prediction, every class 1/C
    (None for fewer than two classes).

    - ``cross_entropy``: -ln(1/C) = ln C.
    - ``mse`` (raw outputs against one-hot targets, averaged over the C outputs as the loss
      is): the output 1/C misses the true class by 1 - 1/C and each of the C - 1 others by
      1/C, so ((C - 1)^2 / C^2 + (C - 1) / C^2) / C = (C - 1) / C^2 per element. With balanced
      classes this is also the best constant prediction's loss, the one-hot targets' variance
      p (1 - p) at p = 1/C: the same meaning chance has for regression (the targets' variance).
      A net whose outputs are all near zero (small logits at init) scores 1/C, which is
      C / (C - 1) x chance: near chance, never far above it, so ``explode_init_loss_factor`` x
      chance keeps its meaning.
    """
    if not num_classes or num_classes < 2:
        return None
    if loss == "mse":
        return (num_classes - 1) / num_classes**2
    return math.log(num_classes)


@dataclass
class Outcome:
    label: str
    reason: str
    steps_to_target: int | None = None
    explode_step: int | None = None


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _isfinite(x: Any) -> Any:
    # A torch tensor has its own isfinite (and may live on a GPU); numpy arrays use np.isfinite.
    return x.isfinite() if hasattr(x, "isfinite") else np.isfinite(x)


def _at_step0(loss: Any, first_step: int) -> Any:
    """A bool mask like ``loss`` (steps last, the first column being ``first_step``) that is
    True in step 0's column only."""
    n = loss.shape[-1]
    if hasattr(loss, "isfinite"):  # torch, on the loss's device
        import torch

        return torch.arange(first_step, first_step + n, device=loss.device) == 0
    return np.arange(first_step, first_step + n) == 0


def explosion_mask(
    loss: Any,
    grad_norm: Any,
    threshold: float,
    grad_overflow_skipped: bool = False,
    *,
    start: Any = None,
    chance: float | None = None,
    init_loss_factor: float | None = None,
    loss_factor: float | None = None,
    first_step: int = 0,
) -> Any:
    """Rule 1, step by step: True at each step whose training loss is not finite, or whose
    gradient norm as applied (``grad_norm``) exceeds ``threshold`` or (unless
    ``grad_overflow_skipped``, see the module docstring) is not finite; with ``start`` (the
    step-0 loss, broadcastable against ``loss``), also where the loss exceeds ``loss_factor`` x
    the start scale (the larger of ``start`` and ``chance``), and, at step 0, where it exceeds
    ``init_loss_factor`` x ``chance``. ``loss`` and ``grad_norm`` have steps last, the first
    being ``first_step``. Elementwise on numpy arrays or on torch tensors, wherever they live:
    the outcome rule and the instrument's early stop are this one test."""
    finite_gn = _isfinite(grad_norm)
    bad = ~_isfinite(loss) | (finite_gn & (grad_norm > threshold))
    if not grad_overflow_skipped:
        bad = bad | ~finite_gn
    if init_loss_factor is not None and chance is not None:
        bad = bad | ((loss > init_loss_factor * chance) & _at_step0(loss, first_step))
    if loss_factor is not None and start is not None:
        scale = start if chance is None else _maximum(start, chance)
        bad = bad | (loss > loss_factor * scale)
    return bad


def _maximum(x: Any, floor: float) -> Any:
    if hasattr(x, "clamp_min"):
        return x.clamp_min(floor)
    return np.maximum(x, floor)


def explosion_step(
    loss: np.ndarray,
    grad_norm: np.ndarray,
    threshold: float,
    grad_overflow_skipped: bool = False,
    **rule: Any,
) -> int | None:
    """The first step ``explosion_mask`` flags, or None."""
    with np.errstate(invalid="ignore"):
        return _first(explosion_mask(loss, grad_norm, threshold, grad_overflow_skipped, **rule))


def explosion_rule(thresholds: Mapping[str, Any], chance: float | None) -> dict[str, Any]:
    """The keyword arguments of ``explosion_mask`` beyond the gradient threshold, from a
    thresholds dict (a missing threshold switches its test off)."""
    return {
        "chance": chance,
        "init_loss_factor": thresholds.get("explode_init_loss_factor"),
        "loss_factor": thresholds.get("explode_loss_factor"),
    }


def _exploded(trace: Trace, t: Mapping[str, Any]) -> Outcome | None:
    loss, gn = trace.step_loss, trace.step_grad_norm
    chance = trace.chance
    start = float(loss[0]) if loss.size else None
    rule = explosion_rule(t, chance)
    first_bad = explosion_step(
        loss, gn, t["explode_grad_norm"], trace.grad_overflow_skipped, start=start, **rule
    )
    bad_eval = _first(~np.isfinite(trace.val_loss))
    eval_step = int(trace.eval_steps[bad_eval]) if bad_eval is not None else None
    if first_bad is None and eval_step is None:
        return None
    if first_bad is None or (eval_step is not None and eval_step < first_bad):
        return Outcome(
            OutcomeLabel.EXPLODED,
            f"validation loss not finite at step {eval_step}",
            explode_step=eval_step,
        )
    step = first_bad
    value, g = loss[step], gn[step]
    applied = "as applied (after clipping)" if trace.clipped else "(no clipping)"
    raw = (
        f", raw {trace.step_grad_norm_raw[step]:.3g} before clipping"
        if trace.clipped and step < trace.step_grad_norm_raw.size
        else ""
    )
    init_f, loss_f = rule["init_loss_factor"], rule["loss_factor"]
    if not np.isfinite(value):
        why = f"training loss {value} at step {step}"
    elif step == 0 and init_f is not None and chance is not None and value > init_f * chance:
        why = (
            f"the forward signal exploded: initial loss {value:.4g} > {init_f:g} x chance "
            f"{chance:.4g}"
        )
    elif (
        loss_f is not None
        and start is not None
        and value > loss_f * (start if chance is None else max(start, chance))
    ):
        scale = start if chance is None else max(start, chance)
        why = f"training loss {value:.4g} > {loss_f:g} x its start scale {scale:.4g} at step {step}"
    elif not np.isfinite(g):
        why = f"gradient norm {g} {applied} at step {step}"
    else:
        why = f"gradient norm {g:.3g} {applied} > {t['explode_grad_norm']:g} at step {step}{raw}"
    return Outcome(OutcomeLabel.EXPLODED, why, explode_step=step)


def classify(trace: Trace, thresholds: Mapping[str, Any]) -> Outcome:
    t = thresholds
    loss = trace.step_loss
    # 1. exploded
    exploded = _exploded(trace, t)
    if exploded is not None:
        return exploded

    chance = trace.chance
    start = float(loss[0]) if loss.size else float("nan")
    reference = min(start, chance) if chance is not None else start
    scale = max(start, chance) if chance is not None else start
    tail = loss[-max(1, loss.size // 10) :] if loss.size else loss
    final = float(np.mean(tail)) if tail.size else float("nan")
    near_initial = final > reference * (1 - t["loss_progress"])
    rise = t.get("diverge_rise")
    diverged = rise is not None and final > scale * (1 + rise)
    f = first_layer(trace) if trace.layer_grad_norm.size else None
    dead = f is not None and f.dead and not _underflow(f, t)

    # 2. converged
    if trace.task == "classification" and trace.val_acc is not None:
        hit = _first(trace.val_acc >= t["target_accuracy"])
        best = float(np.max(trace.val_acc)) if trace.val_acc.size else float("nan")
        target_text = f"val accuracy >= {t['target_accuracy']:g}"
    else:
        hit = _first(trace.val_loss <= t["target_loss"])
        best = float(np.min(trace.val_loss)) if trace.val_loss.size else float("nan")
        target_text = f"val loss <= {t['target_loss']:g}"
    if hit is not None:
        step = int(trace.eval_steps[hit])
        later = []
        if diverged:
            later.append(f"the loss then rose to {final:.4g} (start scale {scale:.4g})")
        if dead and near_initial:
            later.append("the first layer's gradient was then exactly 0 (dead units)")
        note = f"; after it, {' and '.join(later)}" if later else ""
        return Outcome(
            OutcomeLabel.CONVERGED, f"{target_text} at step {step}{note}", steps_to_target=step
        )

    # 3. dead
    if dead and near_initial and f is not None:
        return Outcome(
            OutcomeLabel.DEAD,
            f"{_dead_reason(trace, f, t)}; loss {final:.4g} made no lasting progress below its "
            f"reference {reference:.4g}",
        )

    # 4. diverged
    if diverged:
        return Outcome(
            OutcomeLabel.DIVERGED,
            f"final loss {final:.4g} > (1 + {rise:g}) x its start scale {scale:.4g} "
            f"(step-0 loss {start:.4g})",
        )

    # 5. vanished
    if near_initial and f is not None:
        vanished = _vanished(trace, f, t)
        if vanished is not None:
            return Outcome(
                OutcomeLabel.VANISHED,
                f"{vanished}; loss {final:.4g} stayed near its reference {reference:.4g}",
            )

    # 6. stalled, 7. unconverged
    if trace.task == "classification" and trace.val_acc is not None:
        chance_acc = 1.0 / (trace.num_classes or 1)
        if best < chance_acc + t["chance_margin"]:
            return Outcome(
                OutcomeLabel.STALLED,
                f"best val accuracy {best:.3f} < chance {chance_acc:.3f} + {t['chance_margin']:g}",
            )
    else:
        val_start = float(trace.val_loss[0]) if trace.val_loss.size else float("nan")
        if best > val_start * (1 - t["loss_progress"]):
            return Outcome(
                OutcomeLabel.STALLED,
                f"best val loss {best:.4g} not below {1 - t['loss_progress']:g} x initial "
                f"{val_start:.4g}",
            )
    return Outcome(
        OutcomeLabel.UNCONVERGED, f"learned, but best was {best:.4g}; target {target_text}"
    )


@dataclass(frozen=True)
class FirstLayer:
    """What rules 3 and 5 read of the first layer's gradient: medians over the layer records."""

    grad_norm: float
    ratio: float  # to the last layer's
    update_ratio: float | None  # |dw| / |w| per step (None: not recorded)
    update_per_lr: float | None  # the same divided by the step's learning rate
    lr: float | None  # median learning rate at the records
    zero_records: int  # records of the second half at which its gradient is exactly 0
    half_records: int  # records in the second half
    zero_layers: int  # leading layers whose gradient is exactly 0 at most of those records
    # the first layer past those: its median gradient over the second half, as a share of the
    # last layer's (None: every layer's gradient is zero)
    next_ratio: float | None = None

    @property
    def dead(self) -> bool:
        return self.half_records > 0 and 2 * self.zero_records > self.half_records


def first_layer(trace: Trace) -> FirstLayer:
    """The figures behind rules 3 and 5, from a trace with at least one layer record."""
    g = trace.layer_grad_norm
    last = np.maximum(g[:, -1], np.finfo(np.float64).tiny)
    upd = per_lr = lr = None
    if trace.layer_update_ratio is not None and trace.layer_lr is not None:
        u, rates = trace.layer_update_ratio[:, 0], np.asarray(trace.layer_lr, dtype=float)
        ok = np.isfinite(u) & np.isfinite(rates) & (rates > 0)
        if ok.any():
            upd = float(np.median(u[ok]))
            per_lr = float(np.median(u[ok] / rates[ok]))
            lr = float(np.median(rates[ok]))
    half = g[g.shape[0] // 2 :]
    zero = np.sum(half == 0, axis=0)
    dead_layers = 2 * zero > half.shape[0]
    zero_layers = int(np.argmin(dead_layers)) if not dead_layers.all() else g.shape[1]
    next_ratio = None
    if zero_layers < g.shape[1]:
        half_last = np.maximum(half[:, -1], np.finfo(np.float64).tiny)
        next_ratio = float(np.median(half[:, zero_layers] / half_last))
    return FirstLayer(
        grad_norm=float(np.median(g[:, 0])),
        ratio=float(np.median(g[:, 0] / last)),
        update_ratio=upd,
        update_per_lr=per_lr,
        lr=lr,
        zero_records=int(zero[0]),
        half_records=int(half.shape[0]),
        zero_layers=zero_layers,
        next_ratio=next_ratio,
    )


def _underflow(f: FirstLayer, t: Mapping[str, Any]) -> bool:
    """Exact zeros that are a fading gradient below the float range, not dead units: the first
    layer with a non-zero gradient is itself a vanishing one (rule 3's exception)."""
    return f.next_ratio is not None and f.zero_layers > 0 and f.next_ratio < t["vanish_ratio"]


def _figures(f: FirstLayer, t: Mapping[str, Any]) -> str:
    if f.update_per_lr is None:
        update = "update ratio not recorded"
    else:
        update = (
            f"update ratio {f.update_ratio:.3g} at lr {f.lr:.3g}, {f.update_per_lr:.3g} per unit "
            f"lr (threshold {t['vanish_update_ratio']:g})"
        )
    return (
        f"median grad norm {f.grad_norm:.3g} (threshold {t['vanish_grad_norm']:g}), "
        f"{f.ratio:.3g} of the last layer's (threshold {t['vanish_ratio']:g}), {update}"
    )


def _dead_reason(trace: Trace, f: FirstLayer, t: Mapping[str, Any]) -> str:
    layers = trace.layer_grad_norm.shape[1]
    return (
        f"dead units: the first layer's gradient was exactly 0 at {f.zero_records} of "
        f"{f.half_records} records of the second half of training (so were the first "
        f"{f.zero_layers} of {layers} weight layers')"
    )


def _vanished(trace: Trace, f: FirstLayer, t: Mapping[str, Any]) -> str | None:
    """Rule 5's gradient half: why the first layer's gradient is negligible, or None."""
    tests = [
        ("grad norm", f.grad_norm < t["vanish_grad_norm"]),
        ("ratio to last", f.ratio < t["vanish_ratio"]),
        (
            "update ratio",
            f.update_per_lr is not None and f.update_per_lr < t["vanish_update_ratio"],
        ),
    ]
    below = [name for name, hit in tests if hit]
    if f.dead and _underflow(f, t):
        below = below or ["underflow"]
        return (
            f"the first layer's gradient vanished below the float range (exactly 0 at "
            f"{f.zero_records} of {f.half_records} records of the second half; the first non-zero "
            f"layer's is {f.next_ratio:.3g} of the last layer's): {_figures(f, t)}"
        )
    if not below:
        return None
    return (
        f"the first layer's gradient vanished ({', '.join(below)} below threshold): "
        f"{_figures(f, t)}"
    )


# -- the trace as the record keeps it (trial.json ``trace``) --------------------------------------
def _list(values: Any) -> list[float | None]:
    """Floats as JSON keeps them: non-finite ones as None."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=float).ravel()]


def _array(values: Any) -> np.ndarray:
    """The inverse of ``_list`` (None -> NaN)."""
    return np.asarray([np.nan if v is None else v for v in values or []], dtype=float)


def trace_to_json(trace: Trace, **extra: Any) -> dict[str, Any]:
    """The record's ``trace``: everything ``classify`` reads, at full resolution, as plain data
    (non-finite values as None); ``extra`` adds keys (``max_steps``: the budget)."""
    g = trace.layer_grad_norm
    out: dict[str, Any] = {
        "task": trace.task,
        "num_classes": trace.num_classes,
        "chance_loss": trace.chance_loss,
        "loss": trace.loss,
        "grad_overflow_skipped": trace.grad_overflow_skipped,
        "step_loss": _list(trace.step_loss),
        "step_grad_norm": _list(trace.step_grad_norm),
        "step_grad_norm_raw": None
        if trace.step_grad_norm_raw is None
        else _list(trace.step_grad_norm_raw),
        "eval_steps": [int(s) for s in trace.eval_steps],
        "val_loss": _list(trace.val_loss),
        "val_acc": None if trace.val_acc is None else _list(trace.val_acc),
        "layer_steps": [int(s) for s in trace.layer_steps],
        "layer_grad_norm": [_list(row) for row in g],
        "layer_update_ratio": None
        if trace.layer_update_ratio is None
        else [_list(row) for row in trace.layer_update_ratio],
        "layer_lr": None if trace.layer_lr is None else _list(trace.layer_lr),
    }
    return out | extra


def trace_from_json(data: Any) -> Trace | None:
    """A ``Trace`` from a record's ``trace`` (None when the record has none: written before
    traces were kept, or a probe-only trial)."""
    if not isinstance(data, Mapping) or not data.get("step_loss"):
        return None

    def rows(key: str) -> np.ndarray | None:
        value = data.get(key)
        if value is None:
            return None
        layers = len(value[0]) if value and isinstance(value[0], list) else 0
        return (
            np.asarray([[np.nan if v is None else v for v in r] for r in value], dtype=float)
            if value
            else np.zeros((0, layers))
        )

    def series(key: str) -> np.ndarray | None:
        value = data.get(key)
        return None if value is None else _array(value)

    return Trace(
        task=str(data.get("task") or "classification"),
        num_classes=data.get("num_classes"),
        step_loss=series("step_loss"),
        step_grad_norm=series("step_grad_norm"),
        eval_steps=np.asarray(data.get("eval_steps") or [], dtype=np.int64),
        val_loss=series("val_loss") if data.get("val_loss") is not None else np.zeros(0),
        val_acc=series("val_acc"),
        layer_steps=np.asarray(data.get("layer_steps") or [], dtype=np.int64),
        layer_grad_norm=rows("layer_grad_norm")
        if data.get("layer_grad_norm")
        else np.zeros((0, 0)),
        grad_overflow_skipped=bool(data.get("grad_overflow_skipped")),
        layer_update_ratio=rows("layer_update_ratio"),
        layer_lr=series("layer_lr"),
        step_grad_norm_raw=series("step_grad_norm_raw"),
        chance_loss=data.get("chance_loss"),
        loss=str(data.get("loss") or "cross_entropy"),  # older traces: cross-entropy
    )
