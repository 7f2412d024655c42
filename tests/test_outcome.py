"""Each outcome rule, on traces built by hand: the verdict follows from the numbers; then the
vanishing rule on the textbook trials it exists for, trained for real."""

from __future__ import annotations

import numpy as np
import pytest

from gradatlas.runners.outcome import Trace, classify
from gradatlas.suites.schema import OutcomeSection

T = OutcomeSection().model_dump() | {"target_accuracy": 0.6}


def trace(
    loss,
    grad=None,
    val_acc=None,
    val_loss=None,
    layers=None,
    task="classification",
    updates=None,
    lr=None,
):
    """``updates``: per-record |dw| / |w| rows like ``layers``; ``lr``: one rate for every
    record, or one per record."""
    n = len(loss)
    grad = np.ones(n) if grad is None else np.asarray(grad, float)
    val_acc = np.asarray(val_acc if val_acc is not None else [0.1, 0.2, 0.3], float)
    val_loss = np.asarray(val_loss if val_loss is not None else [2.3] * len(val_acc), float)
    layers = np.asarray(layers if layers is not None else [[1.0, 1.0]] * 3, float)
    updates = None if updates is None else np.asarray(updates, float)
    if lr is not None:
        lr = np.broadcast_to(np.asarray(lr, float), (len(layers),)).copy()
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
        layer_update_ratio=updates,
        layer_lr=lr,
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


# -- rule 3 beyond the two ends: uniformly small gradients, tiny learning rates, dead units --------
FLAT = [2.35, 2.31, 2.303, 2.303, 2.303]  # at chance throughout
CHANCE = [0.1, 0.1, 0.11]  # val accuracy: no better than chance either
# The Xavier d30 ReLU net as measured (mnist1d, momentum lr 0.02): every hidden layer's gradient
# near 3e-7, the head's 2e-3 (so 1.6e-4 of it: above vanish_ratio), updates of 2e-9 per step.
UNIFORM = [[3.5e-7, 3.8e-7, 2.1e-3]] * 4
UNIFORM_UPDATES = [[2.1e-9, 2.2e-9, 1.9e-5]] * 4


def test_uniformly_small_gradients_vanish_by_their_update_ratio():
    out = classify(trace(FLAT, layers=UNIFORM, updates=UNIFORM_UPDATES, lr=0.02), T)
    assert out.label == "vanished", out.reason
    assert "(update ratio below threshold)" in out.reason
    # The figures behind the label, with their thresholds.
    for figure in ("3.5e-07", "0.000167 of the last layer's", "2.1e-09 at lr 0.02", "1.05e-07 per"):
        assert figure in out.reason, out.reason
    for threshold in ("(threshold 1e-07)", "(threshold 0.0001)"):
        assert threshold in out.reason
    # Both ends of the net are above the other two tests: without the updates it was stalled.
    assert classify(trace(FLAT, layers=UNIFORM, val_acc=CHANCE), T).label == "stalled"


def test_a_tiny_learning_rate_is_not_a_vanished_gradient():
    # Healthy gradients, lr 1e-6: the layers barely move (update ratio 4e-7, below what the
    # vanishing net above shows per step) but per unit lr the update is 0.4, a learning layer's.
    healthy = [[0.73, 0.9, 1.9]] * 4
    updates = [[4.3e-7, 5e-7, 4e-6]] * 4
    out = classify(trace(FLAT, layers=healthy, updates=updates, lr=1e-6, val_acc=CHANCE), T)
    assert out.label == "stalled", out.reason


def test_a_healthy_slow_learner_is_not_vanished():
    # The loss fell 3.5% (within loss_progress of its reference), val accuracy rose past chance
    # + margin, the first layer moved 3.6e-5 per step at lr 1e-3: learning, slowly.
    slow = [2.35, 2.30, 2.27, 2.24, 2.22]
    t = trace(slow, layers=[[0.41, 0.47]] * 4, updates=[[3.6e-5, 1e-4]] * 4, lr=1e-3)
    t.val_acc = np.asarray([0.1, 0.14, 0.18])
    out = classify(t, T)
    assert out.label == "unconverged", out.reason


def test_update_test_reads_only_records_with_a_learning_rate():
    # A warm-up from lr 0 and a non-finite record are skipped, not divided by.
    updates = [[0.0, 1e-5], [np.nan, 1e-5], [2e-9, 1e-5], [2e-9, 1e-5]]
    out = classify(trace(FLAT, layers=UNIFORM, updates=updates, lr=[0.0, 0.02, 0.02, 0.02]), T)
    assert out.label == "vanished" and "1e-07 per unit lr" in out.reason, out.reason
    # Not recorded: the test is skipped and the reason says so.
    out = classify(trace(FLAT, layers=[[1e-9, 1e-3]] * 3), T)
    assert out.label == "vanished" and "update ratio not recorded" in out.reason


def test_exact_zero_gradients_are_dead_units():
    # A ReLU net that collapsed mid-training: healthy records, then exactly zero in every layer.
    layers = [[0.7, 1.4, 2.2]] * 4 + [[0.0, 0.0, 0.0]] * 6
    updates = [[3e-2, 6e-2, 2e-1]] * 4 + [[1e-6, 1e-6, 1e-6]] * 6  # momentum still coasting
    out = classify(trace(FLAT, layers=layers, updates=updates, lr=0.5), T)
    assert out.label == "dead"
    assert out.reason.startswith("dead units: the first layer's gradient was exactly 0 at 5 of 5")
    assert "the first 3 of 3 weight layers'" in out.reason
    assert "made no lasting progress" in out.reason
    # Dead from the start, only the first layer (the layers above it still get gradients).
    out = classify(trace(FLAT, layers=[[0.0, 0.3, 0.5]] * 6), T)
    assert out.label == "dead"
    assert out.reason.startswith("dead units:") and "the first 1 of 3" in out.reason


def test_exact_zeros_below_a_fading_gradient_are_an_underflow_not_dead_units():
    # A very deep net whose gradient fades geometrically: the first layers' underflow to 0, the
    # next is 1e-30 of the last layer's. Multiplicative vanishing, not dead units.
    out = classify(trace(FLAT, layers=[[0.0, 0.0, 1e-30, 1e-12, 1.0]] * 6), T)
    assert out.label == "vanished", out.reason
    assert "below the float range" in out.reason


def test_a_few_zero_records_are_not_dead_units():
    layers = [[1e-9, 1e-3]] * 6 + [[0.0, 1e-3]] * 2  # 2 of 4 in the second half: not most
    out = classify(trace(FLAT, layers=layers), T)
    assert out.label == "vanished" and not out.reason.startswith("dead units")


def test_dead_units_need_the_loss_to_have_stayed_flat():
    learned = [2.9, 2.0, 1.5, 1.2, 1.0]
    t = trace(learned, layers=[[0.0, 0.3]] * 6, val_acc=[0.1, 0.2, 0.4])
    assert classify(t, T).label == "unconverged"


# -- thresholds: one set of defaults, documented as they are ---------------------------------------
def test_readme_example_outcomes_are_the_schema_defaults():
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    (example,) = [b for b in blocks if "\noutcomes:" in b]
    documented = yaml.safe_load(example)["outcomes"]
    assert documented == OutcomeSection().model_dump()  # every threshold, at its default


def test_records_written_before_a_threshold_existed_still_load():
    from gradatlas.suites import load_suite
    from gradatlas.suites.spec import TrialSpec

    trial = load_suite("quickstart").trials[0]
    old = trial.config | {"outcomes": dict(trial.config["outcomes"])}
    del old["outcomes"]["vanish_update_ratio"]
    spec = TrialSpec.from_config(old)
    assert spec.outcomes.vanish_update_ratio == OutcomeSection().vanish_update_ratio
    assert spec.model == trial.spec.model and spec.outcomes.vanish_ratio == 1e-4


# -- the textbook trials, trained (mnist1d, SGD momentum lr 0.02, batch 128, 200 steps) ----------
DEAD_INIT = {"name": "normal", "std": 0.01, "mean": -0.05}  # layers past the first: all ReLUs off
TEXTBOOK = {  # name: (depth, width, activation, init, expected label)
    # He et al. 2015: 30 ReLU layers under Xavier init do not learn; under He init they do.
    "relu-d30-xavier": (30, 64, "relu", "xavier_normal", "vanished"),
    "relu-d30-he": (30, 64, "relu", "kaiming_normal", "unconverged"),
    # Glorot & Bengio 2010: deep sigmoid nets vanish under either init, normalized or standard.
    "sigmoid-8x128-xavier": (8, 128, "sigmoid", "xavier_normal", "vanished"),
    "sigmoid-8x128-standard": (8, 128, "sigmoid", "glorot_standard", "vanished"),
    "relu-d3-dead": (3, 64, "relu", DEAD_INIT, "dead"),
    # N(0, 1) init: the forward signal explodes (initial loss ~1750, 760 x chance); every unit
    # then dies. Exploded (rule 1 comes first), at step 0.
    "relu-d3-normal1": (3, 64, "relu", {"name": "normal", "std": 1.0}, "exploded"),
}


@pytest.mark.parametrize("name", list(TEXTBOOK))
def test_textbook_trials(name):
    from gradatlas.runners.trial import run_trial, set_threads
    from gradatlas.suites.expand import expand_suite

    set_threads(1)
    depth, width, activation, init, label = TEXTBOOK[name]
    suite = {
        "name": name,
        "dataset": {"name": "mnist1d", "seed": 0},
        "model": {"family": "mlp", "depth": depth, "width": width, "activation": activation}
        | {"init": init},
        "train": {"steps": 200, "batch_size": 128, "optimizer": "momentum", "lr": 0.02},
        "instrument": {"every": 10},
    }
    (trial,) = expand_suite(suite, source="test").trials
    out = run_trial(trial, accelerator="cpu").outcome
    assert out.label == label, out.reason
    if name == "relu-d30-xavier":  # caught by the update ratio alone, as the rule intends
        assert "(update ratio below threshold)" in out.reason, out.reason
    if name == "relu-d3-dead":
        assert out.reason.startswith("dead units:"), out.reason
    if name == "relu-d3-normal1":
        assert out.explode_step == 0 and "forward signal exploded" in out.reason, out.reason


# -- exploded as applied, diverged, dead: each label on hand-built traces ------------------------
def test_a_forward_signal_exploded_at_init_is_exploded_at_step_0():
    # A ReLU net under N(0, 1) init starts near 700 x chance: its logits are huge.
    out = classify(trace([1748.0, 1748.0, 1748.0], layers=[[0.0, 0.0]] * 3), T)
    assert (out.label, out.explode_step) == ("exploded", 0)
    assert "forward signal exploded" in out.reason and "50 x chance 2.303" in out.reason
    # Saturated bounded nets start a few times above chance: not an explosion.
    assert classify(trace([12.5, 6.0, 2.3]), T).label != "exploded"


def test_a_loss_leaving_its_starting_scale_is_exploded():
    out = classify(trace([2.3, 2.4, 300.0, 2.3]), T)
    assert (out.label, out.explode_step) == ("exploded", 2)
    assert "100 x its start scale" in out.reason


def test_clipping_rescues_a_trial_whose_raw_norm_is_huge():
    t = trace([2.5, 2.45, 2.4, 2.38], grad=[1.0, 1.0, 1.0, 1.0])
    t.step_grad_norm_raw = np.asarray([3.5e6, 2e6, 1e6, 5e5])  # clipped to norm 1
    assert classify(t, T).label != "exploded"
    # Without clipping, the raw norm is the applied one: exploded at step 0.
    t2 = trace([2.5, 2.45, 2.4, 2.38], grad=[3.5e6, 2e6, 1e6, 5e5])
    out = classify(t2, T)
    assert (out.label, out.explode_step) == ("exploded", 0) and "(no clipping)" in out.reason
    # A clipped norm above the threshold still explodes, and the reason gives both norms.
    t.step_grad_norm = np.asarray([1.0, 2e5, 1.0, 1.0])
    out = classify(t, T)
    assert out.explode_step == 1 and "as applied (after clipping)" in out.reason
    assert "raw 2e+06 before clipping" in out.reason


def test_a_finite_loss_that_ends_above_its_start_diverged():
    out = classify(trace([2.3, 2.6, 4.0, 5.0, 5.0], val_acc=[0.1, 0.15, 0.12]), T)
    assert out.label == "diverged", out.reason
    assert "(1 + 0.5) x its start scale 2.303" in out.reason
    # Within the rise: not diverged (here: stalled).
    assert classify(trace([2.3, 2.5, 3.0, 3.2, 3.2], val_acc=CHANCE), T).label == "stalled"


def test_converged_wins_over_a_later_divergence_and_says_so():
    out = classify(trace([2.3, 1.0, 5.0, 6.0, 6.0], val_acc=[0.1, 0.7, 0.2]), T)
    assert out.label == "converged"
    assert "the loss then rose to 6" in out.reason


def test_dead_units_win_over_divergence():
    layers = [[0.7, 1.4]] * 3 + [[0.0, 0.0]] * 4
    out = classify(trace([2.3, 2.0, 4.0, 5.0, 5.0], layers=layers), T)
    assert out.label == "dead", out.reason


def test_a_threshold_a_record_predates_is_off():
    old = {k: v for k, v in T.items() if k not in ("explode_init_loss_factor", "diverge_rise")}
    old.pop("explode_loss_factor")
    assert classify(trace([1748.0, 1748.0, 1748.0]), old).label != "exploded"
    assert classify(trace([2.3, 2.6, 4.0, 5.0, 5.0]), old).label != "diverged"


@pytest.mark.parametrize(
    ("loss", "grad"),
    [
        ([1748.0, 1748.0, 1748.0, 1748.0], [1.0, 1.0, 1.0, 1.0]),  # init
        ([2.3, 2.2, 2.4, 400.0], [1.0, 1.0, 1.0, 1.0]),  # growth
        ([2.3, 2.2, 2.1, 2.0], [1.0, 1.0, 2e5, 1.0]),  # gradient norm
        ([2.3, 2.2, 2.1, 2.0], [1.0, 1.0, 1.0, 1.0]),  # healthy
    ],
)
def test_instrument_and_rule_agree_on_the_loss_tests(loss, grad):
    from types import SimpleNamespace as NS

    import torch

    from gradatlas.runners.instrument import GradientInstrument

    inst = object.__new__(GradientInstrument)
    inst.step_loss = torch.tensor([loss], dtype=torch.float32)
    inst.step_grad_norm = torch.tensor([grad], dtype=torch.float32)
    inst.explode_grad_norm, inst.grad_overflow_skipped = T["explode_grad_norm"], False
    inst.thresholds, inst.chance_loss = T, float(np.log(10))
    inst._checked_upto, inst.members, inst.alive = 0, 1, [True]
    stop = None
    for step in range(0, len(loss), 2):  # an accelerator: a window of two steps per check
        inst._check_explosion(NS(should_stop=False), NS(freeze=lambda m: None), step + 1)
        if inst.exploded:
            stop = step + 1
            break
    out = classify(trace(loss, grad=grad), T)
    first = out.explode_step if out.label == "exploded" else None
    assert (stop is None) == (first is None)
    if first is not None:
        assert first <= stop < first + 2


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_the_applied_norm_is_what_each_members_clipping_leaves(mode):
    import torch

    from gradatlas.runners.instrument import GradientInstrument

    torch.manual_seed(0)
    grads = [torch.randn(3, 20, 10) * torch.tensor([1e3, 1.0, 1e-3]).view(3, 1, 1)]
    inst = object.__new__(GradientInstrument)
    inst.members, inst.dtype, inst.clip_mode, inst.clip_max = 3, torch.float64, mode, 0.5
    inst.split = lambda t: list(t.unbind(0))
    raw = inst._member_norms(grads).norm(dim=1)
    applied = inst._applied_norm(raw, grads)
    for k in range(3):
        g = grads[0][k].clone().requires_grad_(False)
        p = torch.nn.Parameter(torch.zeros_like(g))
        p.grad = g
        if mode == "norm":
            torch.nn.utils.clip_grad_norm_([p], 0.5)
        else:
            torch.nn.utils.clip_grad_value_([p], 0.5)
        assert float(applied[k]) == pytest.approx(float(p.grad.norm()), rel=1e-5)


def test_a_clipped_deep_batchnorm_relu_net_trains_its_budget():
    """Depth 80, batchnorm, ReLU, He init, SGD: the raw gradient norm is ~3e6 at step 0. Clipped
    to norm 1 it trains its 200 steps and gets the label its loss earns; unclipped it explodes
    at step 0 (the update as applied is that large)."""
    from gradatlas.runners.trial import run_trial, set_threads
    from gradatlas.suites.expand import expand_suite

    set_threads(1)
    suite = {
        "name": "bn-d80",
        "dataset": {"name": "mnist1d", "seed": 0},
        "model": {"family": "mlp", "depth": 80, "width": 32, "activation": "relu"}
        | {"init": "kaiming_normal", "norm": "batchnorm"},
        "train": {"steps": 200, "batch_size": 128, "optimizer": "sgd", "lr": 0.1},
        "instrument": {"every": 10},
        "grid": {"grad_clip": [1.0, None]},
    }
    clipped, free = expand_suite(suite, source="test").trials
    r = run_trial(clipped, accelerator="cpu")
    assert r.summary["steps_run"] == 200
    assert r.outcome.label == "stalled", r.outcome.reason  # 2.65 -> 2.57: no progress
    assert r.summary["max_grad_norm"] > 1e5 >= r.summary["max_grad_norm_applied"]
    assert len(r.trace["step_loss"]) == 200 and len(r.trace["step_grad_norm_raw"]) == 200
    assert "grad_norm_applied" in r.curves["train"]
    out = run_trial(free, accelerator="cpu").outcome
    assert (out.label, out.explode_step) == ("exploded", 0), out.reason
