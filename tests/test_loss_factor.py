"""Claim C3's factors: the classification loss (``train.loss``) and the logit scale
(``model.logit_scale``), so "softmax explodes" is measured by varying the output, not the init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from gradatlas.errors import UserInputError
from gradatlas.models import build_model
from gradatlas.models.stacked import stack_models
from gradatlas.runners.module import StackedTrialModule, TrialModule, loss_for, one_hot_mse
from gradatlas.runners.outcome import Trace, chance_level, trace_from_json, trace_to_json
from gradatlas.suites import expand_suite
from gradatlas.suites.expand import resolve_model

BASE = {
    "name": "c3",
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "width": 8, "depth": 2},
    "train": {"steps": 12, "batch_size": 32, "lr": 0.05, "eval_every": 6},
    "instrument": {"every": 3, "max_points": 100, "probe_batch": 32},
}


def _trials(**over):
    return expand_suite(BASE | over, source="c3.yaml").trials


def _errors(**over) -> str:
    with pytest.raises(UserInputError) as err:
        _trials(**over)
    return err.value.render()


# -- identity: the defaults are the behaviour before the factors ---------------------------------
# The quickstart suite as it was when the factors were added (its file has changed since).
QUICKSTART_BEFORE = {
    "name": "quickstart",
    "dataset": {"name": "mnist1d", "seed": 0},
    "model": {"family": "mlp", "width": 64},
    "grid": {
        "depth": [3, 20],
        "activation": ["relu", "tanh", "sigmoid"],
        "init": ["kaiming_normal", "xavier_normal", {"name": "normal", "std": 1.0}],
    },
    "seeds": 2,
    "train": {"epochs": 24, "batch_size": 128, "optimizer": "momentum", "lr": 0.02},
    "instrument": {"every": 10, "max_points": 200},
    "outcomes": {"target_accuracy": 0.5, "explode_grad_norm": 1.0e5, "vanish_grad_norm": 1.0e-7,
                 "vanish_ratio": 1.0e-4, "vanish_update_ratio": 1.0e-4, "loss_progress": 0.05,
                 "chance_margin": 0.05},
}  # fmt: skip


def test_existing_trial_ids_are_unchanged():
    """Pinned before the factors existed: defaults are not written, so no id moved."""
    trials = expand_suite(QUICKSTART_BEFORE, source="quickstart.yaml").trials
    assert trials[0].trial_id == "932359a1f350b778"
    assert trials[17].trial_id == "f7d45b57f635bb2d"
    assert trials[-1].trial_id == "8332e85b76051d90"
    config = trials[0].config
    assert "loss" not in config["train"] and "logit_scale" not in config["model"]
    grid = {"optimizer": ["sgd", "rmsprop"], "activation": ["relu", "tanh"],
            "label_smoothing": [0.0, 0.1]}  # fmt: skip
    small = expand_suite(
        {"name": "pinned", "dataset": {"name": "digits"}, "grid": grid, "seeds": 2,
         "model": {"family": "mlp", "width": 16, "depth": 3},
         "train": {"steps": 30, "batch_size": 64, "lr": 0.01}}, source="pinned.yaml"
    ).trials  # fmt: skip
    assert [small[i].trial_id for i in (0, 5, 15)] == [
        "283db19822ebfadf", "6b04064fcee676e2", "fffae13563fb5893"
    ]  # fmt: skip


def test_non_default_levels_are_written_and_round_trip():
    ce, mse = _trials(grid={"loss": ["cross_entropy", "mse"]})
    assert "loss" not in ce.config["train"] and mse.config["train"]["loss"] == "mse"
    assert [ce.factors["loss"], mse.factors["loss"]] == ["ce", "mse"]
    one, ten = _trials(grid={"logit_scale": [1, 10]})
    assert ten.config["model"]["logit_scale"] == 10.0 and ten.factors["logit_scale"] == "logit10"
    assert one.trial_id == _trials()[0].trial_id  # scale 1 is the model as it always was


# -- validation ----------------------------------------------------------------------------------
def test_mse_needs_a_classification_dataset_naming_the_field():
    teacher = {"name": "teacher", "options": {"n_train": 64, "n_val": 32}}
    text = _errors(dataset=teacher, train=BASE["train"] | {"loss": "mse"})
    assert "train.loss" in text and "classification loss" in text and "regression" in text
    text = _errors(dataset=teacher, grid={"loss": ["cross_entropy", "mse"]})
    assert "grid.loss[1]" in text


def test_label_smoothing_with_mse_is_an_error_and_unknown_losses_are_suggested():
    text = _errors(grid={"loss": ["mse"], "label_smoothing": [0.1]})
    assert "grid.label_smoothing[0]" in text and "cross-entropy" in text
    text = _errors(train=BASE["train"] | {"loss": "mes"})
    assert "train.loss" in text and "did you mean 'mse'" in text
    assert "logit scale must be > 0" in _errors(grid={"logit_scale": [0]})


# -- the loss ------------------------------------------------------------------------------------
def test_mse_is_on_raw_logits_against_one_hot_per_element():
    out = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    y = torch.tensor([0, 2])
    # (1^2 + 0 + 1^2) + (0.25 + 0.25 + 0.25) over 6 elements, no softmax anywhere
    expected = (1.0 + 0.0 + 1.0 + 0.25 + 0.25 + 0.25) / 6
    assert float(one_hot_mse(out, y)) == pytest.approx(expected)
    assert loss_for("classification", "mse") is one_hot_mse
    assert loss_for("classification") is F.cross_entropy
    assert loss_for("regression", "mse") is F.mse_loss


def _module(loss: str, scale: float = 1.0, members: int = 1):
    (trial,) = _trials(train=BASE["train"] | {"loss": loss}, model=BASE["model"] | {
        "logit_scale": scale})  # fmt: skip
    spec = trial.spec
    models = []
    for seed in range(members):
        torch.manual_seed(seed)
        models.append(build_model(spec.model, (64,), 10))
    if members == 1:
        return TrialModule(models[0], spec.optim, spec.train, 10, "classification"), models
    stacked = stack_models(models)
    return StackedTrialModule(stacked, spec.optim, spec.train, 10, "classification"), models


def test_evaluation_and_training_use_the_trials_own_loss():
    torch.manual_seed(0)
    x, y = torch.randn(50, 64), torch.randint(0, 10, (50,))
    module, (model,) = _module("mse")
    with torch.no_grad():
        expected = F.mse_loss(model(x), F.one_hot(y, 10).float())
    metrics = module.evaluate(x, y, chunk=16)  # chunks: sums per element, then the mean
    assert float(metrics["loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(metrics["acc"]) == pytest.approx(float((model(x).argmax(-1) == y).double().mean()))
    step_loss = module.training_step((x, y), 0).detach()
    assert float(step_loss) == pytest.approx(float(expected), rel=1e-6)
    # Stacked: each member's loss is its own model's, the same MSE.
    stacked, models = _module("mse", members=2)
    per = stacked.evaluate(x, y)["loss"]
    for k, m in enumerate(models):
        with torch.no_grad():
            want = F.mse_loss(m(x), F.one_hot(y, 10).float())
        assert float(per[k]) == pytest.approx(float(want), rel=1e-5)
    assert torch.allclose(
        stacked.member_loss(stacked.model(x.expand(2, *x.shape)), y.expand(2, 50)), per.float()
    )


# -- chance --------------------------------------------------------------------------------------
def test_each_loss_has_its_own_chance_level():
    assert chance_level(10) == pytest.approx(math.log(10))
    assert chance_level(10, "mse") == pytest.approx(9 / 100)
    assert chance_level(1, "mse") is None and chance_level(None) is None
    # (C - 1) / C^2 is the uniform prediction's MSE against balanced one-hot targets...
    c = 7
    y = torch.arange(c).repeat(30)
    uniform = torch.full((len(y), c), 1.0 / c)
    assert float(one_hot_mse(uniform, y)) == pytest.approx(chance_level(c, "mse"))
    # ...the best constant's (the targets' variance), and near the all-zero output's 1/C.
    assert float(F.one_hot(y, c).float().var(0, unbiased=False).mean()) == pytest.approx(
        chance_level(c, "mse")
    )
    assert float(one_hot_mse(torch.zeros(len(y), c), y)) == pytest.approx(1 / c)
    # A trace without a recorded chance falls back on its own loss's, and keeps it as JSON.
    trace = Trace("classification", 10, np.ones(3), np.ones(3), np.zeros(1), np.ones(1),
                  np.zeros(1), np.zeros(0, int), np.zeros((0, 2)), loss="mse")  # fmt: skip
    assert trace.chance == pytest.approx(0.09)
    again = trace_from_json(trace_to_json(trace))
    assert again.loss == "mse" and again.chance == pytest.approx(0.09)
    old = trace_to_json(trace)
    del old["loss"]  # a trace written before the factor: cross-entropy
    assert trace_from_json(old).chance == pytest.approx(math.log(10))


def test_an_mse_trial_is_judged_against_its_own_chance():
    import pytorch_lightning as pl

    from gradatlas.datasets import load_dataset
    from gradatlas.runners.trial import run_trial, set_threads

    set_threads(1)
    (trial,) = _trials(train=BASE["train"] | {"loss": "mse"})
    r = run_trial(trial, accelerator="cpu")
    assert r.trace["chance_loss"] == pytest.approx(0.09) and r.trace["loss"] == "mse"
    assert r.summary["steps_run"] == 12 and "final_val_acc" in r.summary
    # the probe at init scored the trial's own loss on its probe batch
    spec = trial.spec
    data = load_dataset(spec.dataset.name, spec.dataset.seed, spec.dataset.options)
    pl.seed_everything(spec.seed, verbose=False)
    model = build_model(spec.model, data.input_shape, data.num_outputs)
    x, y = data.x_train[:32], data.y_train[:32]
    with torch.no_grad():
        assert r.profiles["loss"] == pytest.approx(float(one_hot_mse(model(x), y)), rel=1e-6)


# -- the logit scale -----------------------------------------------------------------------------
def test_logit_scale_multiplies_the_output_and_leaves_the_init_alone():
    x = torch.randn(5, 12)
    torch.manual_seed(3)
    plain = build_model(resolve_model({"depth": 2, "width": 8}), (12,), 4)
    torch.manual_seed(3)
    scaled = build_model(resolve_model({"depth": 2, "width": 8, "logit_scale": 7.5}), (12,), 4)
    for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
        assert torch.equal(a, b)  # the same init, bit for bit
    assert plain.logit_scale == 1.0 and scaled.logit_scale == 7.5
    assert torch.allclose(scaled(x), 7.5 * plain(x), rtol=1e-6)


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_a_stacked_model_scales_each_member_like_its_own_model(family):
    shape = (12,) if family == "mlp" else (1, 12)
    spec = resolve_model({"family": family, "depth": 2, "width": 4, "logit_scale": 3.0})
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(spec, shape, 5))
    stacked = stack_models(models)
    assert stacked.logit_scale == 3.0
    x = torch.randn(6, *shape)
    out = stacked(x.expand(3, *x.shape))
    for k, m in enumerate(models):
        assert torch.allclose(out[k], m(x), rtol=1e-5, atol=1e-6)
    models[1].logit_scale = 2.0  # members of one cell share it; a mix is refused
    with pytest.raises(ValueError, match="logit_scale"):
        stack_models(models)
