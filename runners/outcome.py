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
   layer's bias alone brings an over-confident initial loss down to chance) while the first layer's
   gradient norm was negligible: its median over training below ``vanish_grad_norm``, or its
   median ratio to the last layer's below ``vanish_ratio``.
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
        first = float(np.median(trace.layer_grad_norm[:, 0]))
        last = np.maximum(trace.layer_grad_norm[:, -1], np.finfo(np.float64).tiny)
        ratio = float(np.median(trace.layer_grad_norm[:, 0] / last))
        if first < t["vanish_grad_norm"] or ratio < t["vanish_ratio"]:
            return Outcome(
                "vanished",
                f"loss {final:.4g} stayed near its reference {initial:.4g} while the first layer's "
                f"median grad norm was {first:.3g} (threshold {t['vanish_grad_norm']:g}), "
                f"{ratio:.3g} of the last layer's (threshold {t['vanish_ratio']:g})",
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
