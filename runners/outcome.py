"""The outcome of a trial, computed from what happened, by declared rules.

Rules, applied in this order; the first that holds is the outcome (thresholds come from the
suite's ``outcomes`` block and are printed in every report):

1. ``exploded``: at some step the training loss or the global gradient norm was not finite, or
   the global gradient norm (before clipping) exceeded ``explode_grad_norm``; or a validation
   loss was not finite. The first such step is ``explode_step``; the trial stops there.
   Under ``16-mixed`` precision a non-finite gradient norm is the loss scaler's overflow signal
   (torch's GradScaler skips that step and lowers the scale), not an explosion, so there only
   the loss and finite gradient norms count.
2. ``converged``: the target was reached at an evaluation: validation accuracy >=
   ``target_accuracy`` (classification) or validation loss <= ``target_loss`` (regression).
   The first such step is ``steps_to_target``.
3. ``vanished``: the loss stayed near its starting level (final training loss, the mean of the
   last 10% of steps, above ``(1 - loss_progress)`` x the reference loss: the smaller of the
   step-0 loss and, for classification, the chance loss ln(classes), since fitting the output
   layer's bias alone brings an over-confident initial loss down to chance) while the first
   layer's gradient was negligible, by any of three measures, each a median over the layer
   records of training:

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

   The reason starts with ``dead units:`` when the first layer's gradient is exactly zero at
   most records of the second half of training: no unit passes any gradient back, as in a
   ReLU net whose units all died (a negative bias, or a collapse after too large a learning
   rate; it may happen mid-training, hence the second half), or units saturated to the float
   limit. Exact zeros are also what a gradient below the float range looks like, in a net of
   extreme depth. The reason carries the figures and thresholds behind the label.
4. ``stalled``: no progress past chance: best validation accuracy below ``1/classes +
   chance_margin`` (classification), or best validation loss above ``(1 - loss_progress)`` x the
   initial validation loss (regression).
5. ``unconverged``: it learned (beyond chance) but did not reach the target within the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gradatlas.record import OUTCOMES as OUTCOMES  # re-exported; the names live in the record


@dataclass
class Trace:
    """What a trial did, as plain arrays (non-finite values kept as they were)."""

    task: str  # "classification" or "regression"
    num_classes: int | None
    step_loss: np.ndarray  # one per optimizer step run, step 0 first
    step_grad_norm: np.ndarray
    eval_steps: np.ndarray  # steps at which validation ran (0 = before training)
    val_loss: np.ndarray
    val_acc: np.ndarray | None
    layer_steps: np.ndarray
    layer_grad_norm: np.ndarray  # (records, weight layers), layer 0 = first
    grad_overflow_skipped: bool = False  # 16-mixed: inf/nan grads are skipped steps
    # (records, weight layers): |dw| / |w| of the step at each record (None: not recorded)
    layer_update_ratio: np.ndarray | None = None
    # (records,): the learning rate of that step (None: not recorded; the update test is skipped)
    layer_lr: np.ndarray | None = None


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


def explosion_mask(
    loss: Any, grad_norm: Any, threshold: float, grad_overflow_skipped: bool = False
) -> Any:
    """Rule 1, step by step: True at each step whose training loss is not finite, or whose global
    gradient norm exceeds ``threshold`` or (unless ``grad_overflow_skipped``, see the module
    docstring) is not finite. Elementwise on numpy arrays or on torch tensors of equal length,
    wherever they live: the outcome rule and the instrument's early stop are this one test."""
    finite_gn = _isfinite(grad_norm)
    bad = ~_isfinite(loss) | (finite_gn & (grad_norm > threshold))
    if not grad_overflow_skipped:
        bad = bad | ~finite_gn
    return bad


def explosion_step(
    loss: np.ndarray, grad_norm: np.ndarray, threshold: float, grad_overflow_skipped: bool = False
) -> int | None:
    """The first step ``explosion_mask`` flags, or None."""
    with np.errstate(invalid="ignore"):
        return _first(explosion_mask(loss, grad_norm, threshold, grad_overflow_skipped))


def classify(trace: Trace, thresholds: dict[str, Any]) -> Outcome:
    t = thresholds
    # 1. exploded
    loss, gn = trace.step_loss, trace.step_grad_norm
    first_bad = explosion_step(loss, gn, t["explode_grad_norm"], trace.grad_overflow_skipped)
    bad_eval = _first(~np.isfinite(trace.val_loss))
    if first_bad is not None or bad_eval is not None:
        step = first_bad if first_bad is not None else int(trace.eval_steps[bad_eval])
        if first_bad is not None and not np.isfinite(loss[first_bad]):
            why = f"training loss {loss[first_bad]} at step {step}"
        elif first_bad is not None and not np.isfinite(gn[first_bad]):
            why = f"gradient norm {gn[first_bad]} at step {step}"
        elif first_bad is not None:
            why = f"gradient norm {gn[first_bad]:.3g} > {t['explode_grad_norm']:g} at step {step}"
        else:
            why = f"validation loss not finite at step {step}"
        return Outcome("exploded", why, explode_step=step)

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
        return Outcome("converged", f"{target_text} at step {step}", steps_to_target=step)

    # 3. vanished
    initial = float(loss[0]) if loss.size else float("nan")
    if trace.task == "classification" and trace.num_classes:
        initial = min(initial, float(np.log(trace.num_classes)))
    tail = loss[-max(1, loss.size // 10) :] if loss.size else loss
    final = float(np.mean(tail)) if tail.size else float("nan")
    near_initial = final > initial * (1 - t["loss_progress"])
    if near_initial and trace.layer_grad_norm.size:
        vanished = _vanished(trace, t)
        if vanished is not None:
            return Outcome(
                "vanished", f"{vanished}; loss {final:.4g} stayed near its reference {initial:.4g}"
            )

    # 4. stalled, 5. unconverged
    if trace.task == "classification" and trace.val_acc is not None:
        chance = 1.0 / (trace.num_classes or 1)
        if best < chance + t["chance_margin"]:
            return Outcome(
                "stalled",
                f"best val accuracy {best:.3f} < chance {chance:.3f} + {t['chance_margin']:g}",
            )
    else:
        start = float(trace.val_loss[0]) if trace.val_loss.size else float("nan")
        if best > start * (1 - t["loss_progress"]):
            return Outcome(
                "stalled",
                f"best val loss {best:.4g} not below {1 - t['loss_progress']:g} x initial "
                f"{start:.4g}",
            )
    return Outcome("unconverged", f"learned, but best was {best:.4g}; target {target_text}")


@dataclass(frozen=True)
class FirstLayer:
    """What rule 3 reads of the first layer's gradient: medians over the layer records."""

    grad_norm: float
    ratio: float  # to the last layer's
    update_ratio: float | None  # |dw| / |w| per step (None: not recorded)
    update_per_lr: float | None  # the same divided by the step's learning rate
    lr: float | None  # median learning rate at the records
    zero_records: int  # records of the second half at which its gradient is exactly 0
    half_records: int  # records in the second half
    zero_layers: int  # leading layers whose gradient is exactly 0 at most of those records

    @property
    def dead(self) -> bool:
        return self.half_records > 0 and 2 * self.zero_records > self.half_records


def first_layer(trace: Trace) -> FirstLayer:
    """The figures behind rule 3, from a trace with at least one layer record."""
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
    return FirstLayer(
        grad_norm=float(np.median(g[:, 0])),
        ratio=float(np.median(g[:, 0] / last)),
        update_ratio=upd,
        update_per_lr=per_lr,
        lr=lr,
        zero_records=int(zero[0]),
        half_records=int(half.shape[0]),
        zero_layers=int(np.argmin(dead_layers)) if not dead_layers.all() else g.shape[1],
    )


def _vanished(trace: Trace, t: dict[str, Any]) -> str | None:
    """Rule 3's gradient half: why the first layer's gradient is negligible, or None."""
    f = first_layer(trace)
    tests = [
        ("grad norm", f.grad_norm < t["vanish_grad_norm"]),
        ("ratio to last", f.ratio < t["vanish_ratio"]),
        (
            "update ratio",
            f.update_per_lr is not None and f.update_per_lr < t["vanish_update_ratio"],
        ),
    ]
    below = [name for name, hit in tests if hit]
    if not (f.dead or below):
        return None
    if f.update_per_lr is None:
        update = "update ratio not recorded"
    else:
        update = (
            f"update ratio {f.update_ratio:.3g} at lr {f.lr:.3g}, {f.update_per_lr:.3g} per unit "
            f"lr (threshold {t['vanish_update_ratio']:g})"
        )
    figures = (
        f"median grad norm {f.grad_norm:.3g} (threshold {t['vanish_grad_norm']:g}), "
        f"{f.ratio:.3g} of the last layer's (threshold {t['vanish_ratio']:g}), {update}"
    )
    if f.dead:
        layers = trace.layer_grad_norm.shape[1]
        return (
            f"dead units: the first layer's gradient was exactly 0 at {f.zero_records} of "
            f"{f.half_records} records of the second half of training (so were the first "
            f"{f.zero_layers} of {layers} weight layers'); {figures}"
        )
    return f"the first layer's gradient vanished ({', '.join(below)} below threshold): {figures}"
