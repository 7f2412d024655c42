"""Each outcome rule, on traces built by hand: the verdict follows from the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from gradatlas.runners.outcome import Trace, classify
from gradatlas.suites.schema import OutcomeSection

T = OutcomeSection().model_dump() | {"target_accuracy": 0.6}


def trace(loss, grad=None, val_acc=None, val_loss=None, layers=None, task="classification"):
    n = len(loss)
    grad = np.ones(n) if grad is None else np.asarray(grad, float)
    val_acc = np.asarray(val_acc if val_acc is not None else [0.1, 0.2, 0.3], float)
    val_loss = np.asarray(val_loss if val_loss is not None else [2.3] * len(val_acc), float)
    layers = np.asarray(layers if layers is not None else [[1.0, 1.0]] * 3, float)
    return Trace(
        task=task,
        num_classes=10 if task == "classification" else None,
        step_loss=np.asarray(loss, float),
        step_grad_norm=grad,
        eval_steps=np.linspace(0, n, len(val_loss)).astype(int),
        val_loss=val_loss,
        val_acc=val_acc if task == "classification" else None,
        layer_steps=np.arange(len(layers)) * 5,
        layer_grad_norm=layers,
    )


def test_nan_loss_is_exploded_at_its_step():
    out = classify(trace([2.3, 5.0, np.nan, np.nan]), T)
    assert (out.label, out.explode_step) == ("exploded", 2)
    assert "training loss nan at step 2" in out.reason


def test_gradient_norm_over_threshold_is_exploded():
    out = classify(trace([2.3, 2.2, 2.1], grad=[1.0, 2e5, 3.0]), T)
    assert (out.label, out.explode_step) == ("exploded", 1)


def test_infinite_gradient_norm_is_exploded_even_if_target_was_reached():
    out = classify(trace([2.3, 1.0, 0.5], grad=[1, 1, np.inf], val_acc=[0.1, 0.9, 0.9]), T)
    assert out.label == "exploded"


def test_converged_records_steps_to_target():
    out = classify(trace([2.3] * 10, val_acc=[0.1, 0.5, 0.65, 0.7]), T)
    assert out.label == "converged"
    assert out.steps_to_target == trace([2.3] * 10, val_acc=[0.1, 0.5, 0.65, 0.7]).eval_steps[2]


def test_vanished_needs_tiny_first_layer_gradient_and_no_progress():
    flat = [2.9, 2.5, 2.31, 2.305, 2.304]  # bias fitting takes it to chance, no further
    tiny = [[1e-12, 0.3]] * 3
    assert classify(trace(flat, layers=tiny), T).label == "vanished"
    # Same tiny gradients but the loss fell well below chance: not vanished.
    assert classify(trace([2.9, 2.0, 1.5, 1.2, 1.0], layers=tiny), T).label != "vanished"
    # No progress but healthy gradients: stalled, not vanished.
    assert classify(trace(flat, layers=[[0.1, 0.3]] * 3, val_acc=[0.1, 0.11]), T).label == (
        "stalled"
    )


def test_vanished_by_absolute_threshold():
    out = classify(trace([2.3] * 5, layers=[[1e-9, 1e-6]] * 3), T)
    assert out.label == "vanished" and "1e-09" in out.reason


def test_stalled_vs_unconverged():
    assert classify(trace([2.3, 2.0, 1.9], val_acc=[0.1, 0.12, 0.14]), T).label == "stalled"
    out = classify(trace([2.3, 2.0, 1.9], val_acc=[0.1, 0.3, 0.45]), T)
    assert out.label == "unconverged" and "0.45" in out.reason


@pytest.mark.parametrize(
    ("val_loss", "label"),
    [
        ([1.0, 0.5, 0.15], "converged"),
        ([1.0, 0.99, 0.98], "stalled"),
        ([1.0, 0.6, 0.5], "unconverged"),
    ],
)
def test_regression_uses_target_loss(val_loss, label):
    t = trace([1.0, 0.9, 0.8], val_loss=val_loss, task="regression")
    assert classify(t, T).label == label


def test_thresholds_come_from_the_suite():
    t = trace([2.3, 2.2], grad=[1.0, 50.0])
    assert classify(t, T).label != "exploded"
    assert classify(t, T | {"explode_grad_norm": 10.0}).label == "exploded"


def test_fp16_overflow_steps_are_not_explosions():
    t = trace([2.3, 2.2, 2.1], grad=[np.inf, 1.0, 1.0])
    assert classify(t, T).label == "exploded"
    t.grad_overflow_skipped = True  # 16-mixed: GradScaler skipped that step
    assert classify(t, T).label != "exploded"
    t.step_loss[2] = np.nan  # a non-finite loss still is an explosion
    assert classify(t, T).label == "exploded"


def test_explosion_rule_is_one_function_on_arrays_and_tensors():
    import torch

    from gradatlas.runners.outcome import explosion_mask, explosion_step

    loss = [2.3, 2.2, 2.1, np.nan]
    grad = [1.0, np.inf, 50.0, 1.0]
    assert explosion_step(np.asarray(loss), np.asarray(grad), 10.0) == 1
    assert explosion_step(np.asarray(loss), np.asarray(grad), 10.0, True) == 2  # inf skipped
    assert explosion_step(np.asarray(loss), np.asarray(grad), 100.0, True) == 3  # nan loss
    assert explosion_step(np.ones(3), np.ones(3), 10.0) is None
    for skipped in (False, True):
        on_numpy = explosion_mask(np.asarray(loss), np.asarray(grad), 10.0, skipped)
        on_torch = explosion_mask(torch.tensor(loss), torch.tensor(grad), 10.0, skipped)
        assert isinstance(on_torch, torch.Tensor)
        assert on_torch.tolist() == on_numpy.tolist()


def test_outcome_names_live_in_the_record():
    from gradatlas import record
    from gradatlas.runners import outcome

    assert outcome.OUTCOMES is record.OUTCOMES
