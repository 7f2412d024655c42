"""Each init against its paper's formula: the std a sweep claims is the std the weights have."""

from __future__ import annotations

import math

import pytest
import torch

from gradatlas.errors import UserInputError
from gradatlas.models import INITS, expected_std
from gradatlas.models.inits import fans

# A dense square layer, a wide rectangular one and a conv kernel (fans include the 5x5 field).
SHAPES = [(1000, 1000), (300, 2000), (64, 64, 5, 5)]
WITH_FORMULA = [name for name in INITS if name != "torch_default"]


def _initialized(name: str, shape: tuple[int, ...], seed: int = 0, **options) -> torch.Tensor:
    torch.manual_seed(seed)
    weight = torch.empty(shape)
    INITS.build(name, weight, **options)
    return weight


def test_every_init_but_torch_default_has_a_formula():
    assert set(WITH_FORMULA) == {n for n in INITS if expected_std(n, (10, 10)) is not None}
    assert expected_std("torch_default", (10, 10)) is None


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", WITH_FORMULA)
def test_empirical_std_matches_formula(name, shape):
    weight = _initialized(name, shape)
    want = expected_std(name, shape)
    assert weight.std().item() == pytest.approx(want, rel=0.03)


@pytest.mark.parametrize("name", WITH_FORMULA)
def test_gain_multiplies_std(name):
    shape = (64, 64, 5, 5)
    weight = _initialized(name, shape, gain=2.5)
    want = expected_std(name, shape, gain=2.5)
    assert want == pytest.approx(2.5 * expected_std(name, shape))
    assert weight.std().item() == pytest.approx(want, rel=0.03)


def test_gain_multiplies_torch_default():
    layer_a, layer_b = torch.nn.Linear(300, 200), torch.nn.Linear(300, 200)
    layer_b.load_state_dict(layer_a.state_dict())
    INITS.build("torch_default", layer_b.weight, gain=3.0)
    assert torch.allclose(layer_b.weight, 3.0 * layer_a.weight)


def test_formulas_are_the_papers():
    fan_in, fan_out = 300, 200
    shape = (fan_out, fan_in)
    assert expected_std("xavier_normal", shape) == pytest.approx(math.sqrt(2 / 500))
    assert expected_std("kaiming_normal", shape) == pytest.approx(math.sqrt(2 / fan_in))
    assert expected_std("lecun_normal", shape) == pytest.approx(math.sqrt(1 / fan_in))
    assert expected_std("glorot_standard", shape) == pytest.approx(1 / math.sqrt(3 * fan_in))
    assert expected_std("normal", shape, std=0.2) == pytest.approx(0.2)


def test_conv_fans_include_receptive_field():
    assert fans((64, 32, 5, 5)) == (32 * 25, 64 * 25)
    assert fans((16, 3, 7)) == (3 * 7, 16 * 7)
    assert fans((10, 20)) == (20, 10)


@pytest.mark.parametrize("name", ["kaiming_normal", "kaiming_uniform"])
def test_kaiming_fan_out_mode(name):
    shape = (300, 2000)  # fan_in 2000, fan_out 300: the two modes differ by sqrt(2000/300)
    fan_in_std = expected_std(name, shape, mode="fan_in")
    fan_out_std = expected_std(name, shape, mode="fan_out")
    assert fan_out_std == pytest.approx(math.sqrt(2 / 300))
    assert fan_out_std / fan_in_std == pytest.approx(math.sqrt(2000 / 300))
    weight = _initialized(name, shape, mode="fan_out")
    assert weight.std().item() == pytest.approx(fan_out_std, rel=0.03)


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_orthogonal_rows_are_orthonormal(gain):
    weight = _initialized("orthogonal", (256, 256), gain=gain)
    assert torch.allclose(weight @ weight.T, gain**2 * torch.eye(256), atol=1e-4)
    wide = _initialized("orthogonal", (64, 64, 3, 3), gain=gain).flatten(1)  # rows <= cols
    assert torch.allclose(wide @ wide.T, gain**2 * torch.eye(64), atol=1e-4)


def test_uniform_inits_respect_their_bounds():
    shape = (200, 300)
    glorot = _initialized("glorot_standard", shape)
    assert glorot.abs().max() <= 1 / math.sqrt(300)
    assert glorot.abs().max() > 0.95 / math.sqrt(300)
    xavier = _initialized("xavier_uniform", shape)
    assert xavier.abs().max() <= math.sqrt(6 / 500)


def test_normal_mean_and_std_options():
    weight = _initialized("normal", (1000, 1000), std=1.0, mean=0.5, gain=2.0)
    assert weight.mean().item() == pytest.approx(0.5, abs=0.01)
    assert weight.std().item() == pytest.approx(2.0, rel=0.03)


def test_inits_do_not_track_gradients():
    weight = torch.nn.Parameter(torch.empty(20, 30))
    for name in INITS:
        INITS.build(name, weight)
    assert weight.grad_fn is None and weight.requires_grad


def test_option_checking():
    assert INITS.check_options("kaiming_normal", {}) == {"gain": 1.0, "mode": "fan_in"}
    with pytest.raises(UserInputError, match="fan_in"):
        INITS.check_options("kaiming_normal", {"mode": "fan_avg"})
    with pytest.raises(UserInputError, match="did you mean 'std'"):
        INITS.check_options("normal", {"stdev": 1.0})


# -- the bias variance every init takes (sigma_b^2) ---------------------------------------------
def _model(init: dict, width: int = 512, depth: int = 3, seed: int = 0) -> torch.nn.Module:
    from gradatlas.models import build_model
    from gradatlas.suites.expand import resolve_model

    torch.manual_seed(seed)
    spec = resolve_model({"family": "mlp", "depth": depth, "width": width, "init": init})
    return build_model(spec, (40,), 10)


def _biases(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([layer.bias.detach().flatten() for _, layer in model.weight_layers()])


def test_bias_var_draws_every_bias_from_n_0_sigma_b2():
    sb2 = 0.05
    biases = _biases(_model({"name": "lecun_normal", "gain": 1.2, "bias_var": sb2}))
    assert (
        biases.numel() == 3 * 512 + 10
    )  # the head's bias too: mean field's sigma_b^2 is every layer's
    # 1546 draws: the sample variance is within ~3.6% (1 sd) of sigma_b^2
    assert biases.var().item() == pytest.approx(sb2, rel=0.15)
    assert biases.mean().item() == pytest.approx(0.0, abs=4 * math.sqrt(sb2 / biases.numel()))


def test_bias_var_leaves_the_weights_to_their_scheme():
    model = _model({"name": "lecun_normal", "gain": 1.5, "bias_var": 0.3}, width=1000)
    hidden = model.weight_layers()[1][1].weight
    want = expected_std("lecun_normal", (1000, 1000), gain=1.5)
    assert hidden.std().item() == pytest.approx(want, rel=0.03)


def test_without_bias_var_biases_are_zero_and_the_draws_unchanged():
    """Absent or 0, the option changes nothing: zero biases, no extra RNG draws (the weights
    of every layer are the same tensors), and the same resolved init (the same trial id)."""
    plain = _model({"name": "xavier_normal"}, width=64)
    zero = _model({"name": "xavier_normal", "bias_var": 0.0}, width=64)
    assert torch.count_nonzero(_biases(plain)) == 0
    for (_, a), (_, b) in zip(plain.weight_layers(), zero.weight_layers(), strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert INITS.check_options("xavier_normal", {"bias_var": 0}) == INITS.check_options(
        "xavier_normal", {}
    )


def test_bias_var_enters_the_resolved_config_only_when_set():
    from gradatlas.suites.expand import resolve_model
    from gradatlas.suites.levels import init, label_init

    plain = resolve_model({"family": "mlp", "init": "lecun_normal"}).to_config()
    assert plain["init"] == {"name": "lecun_normal", "gain": 1.0}
    zero = resolve_model({"family": "mlp", "init": {"name": "lecun_normal", "bias_var": 0}})
    assert zero.to_config() == plain
    set_ = resolve_model({"family": "mlp", "init": {"name": "lecun_normal", "bias_var": 0.05}})
    assert set_.to_config()["init"] == {"name": "lecun_normal", "gain": 1.0, "bias_var": 0.05}
    assert label_init(init({"name": "lecun_normal", "gain": 1.5, "bias_var": 0.05})) == (
        "lecun_normal(bias_var=0.05,gain=1.5)"
    )
    assert label_init(init({"name": "lecun_normal", "bias_var": 0})) == "lecun_normal"


def test_bias_var_is_an_option_of_every_init_and_checked_like_one():
    for name in INITS:
        assert INITS.options(name)["bias_var"].default == 0.0  # gradatlas ls inits shows it
    with pytest.raises(UserInputError, match="greater than or equal to 0") as exc:
        INITS.check_options("normal", {"bias_var": -0.1})
    assert exc.value.field == "bias_var"
    with pytest.raises(UserInputError, match="did you mean 'bias_var'"):
        INITS.check_options("normal", {"bias_variance": 0.1})
    with pytest.raises(UserInputError, match="boolean"):
        INITS.check_options("normal", {"bias_var": True})


def test_torch_default_keeps_pytorchs_biases_unless_bias_var_is_set():
    kept = _biases(_model({"name": "torch_default"}, width=64))
    assert torch.count_nonzero(kept) == kept.numel()  # PyTorch's U(-1/sqrt(fan_in), ...)
    drawn = _biases(_model({"name": "torch_default", "bias_var": 0.5}, width=256))
    assert drawn.var().item() == pytest.approx(0.5, rel=0.2)
