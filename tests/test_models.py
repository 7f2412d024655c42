"""Models, activations, norms and model-config validation."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

from gradatlas.errors import UserInputError
from gradatlas.models import (
    ACTIVATIONS,
    MODELS,
    NORMS,
    check_model_input,
    estimate_parameters,
    is_relu_family,
    is_saturating,
    output_bounds,
)
from gradatlas.models import build_model as build_from_spec
from gradatlas.suites.expand import resolve_model


def build_model(block: dict, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """A model block as a suite writes it, resolved like validation does, then built."""
    return build_from_spec(resolve_model(block), input_shape, num_outputs)


def check_model_config(block: dict) -> dict:
    return resolve_model(block).to_config()


def check_input_shape(block: dict, input_shape: tuple[int, ...]) -> None:
    check_model_input(resolve_model(block), input_shape)


NUM_OUTPUTS = 7

# (family, one example's shape, the conv class expected or None for the MLP)
SHAPES = [
    ("mlp", (20,), None),
    ("mlp", (1, 8, 8), None),
    ("cnn", (2, 24), nn.Conv1d),
    ("cnn", (3, 8, 8), nn.Conv2d),
]


def _forward(model: nn.Module, input_shape: tuple[int, ...], batch: int = 4) -> torch.Tensor:
    return model(torch.randn(batch, *input_shape))


# -- activations -------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_builds_and_runs(name):
    a, b = ACTIVATIONS.build(name), ACTIVATIONS.build(name)
    assert isinstance(a, nn.Module) and a is not b
    x = torch.linspace(-5, 5, 101)
    y = a(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_activation_options():
    leaky = ACTIVATIONS.build("leaky_relu", negative_slope=0.2)
    assert leaky(torch.tensor([-1.0])).item() == pytest.approx(-0.2)
    assert ACTIVATIONS.build("elu", alpha=2.0)(torch.tensor([-100.0])).item() == pytest.approx(-2)


def test_activation_families_cover_every_activation():
    for name in ACTIVATIONS:
        families = [is_saturating(name), is_relu_family(name), name == "identity"]
        assert sum(families) == 1, name
    assert {n for n in ACTIVATIONS if is_saturating(n)} == {"sigmoid", "tanh", "softsign"}
    assert output_bounds("sigmoid") == (0.0, 1.0) and output_bounds("relu") is None
    with pytest.raises(UserInputError):
        is_saturating("tahn")


# -- norms -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "spatial_dims", "cls"),
    [
        ("none", 0, nn.Identity),
        ("batchnorm", 0, nn.BatchNorm1d),
        ("batchnorm", 1, nn.BatchNorm1d),
        ("batchnorm", 2, nn.BatchNorm2d),
        ("layernorm", 0, nn.LayerNorm),
        ("layernorm", 2, nn.GroupNorm),
        ("groupnorm", 1, nn.GroupNorm),
    ],
)
def test_norm_layer_per_family(name, spatial_dims, cls):
    assert type(NORMS.build(name, 16, spatial_dims)) is cls


def test_layernorm_on_conv_is_one_group():
    assert NORMS.build("layernorm", 16, 2).num_groups == 1


@pytest.mark.parametrize(("groups", "channels", "want"), [(8, 64, 8), (8, 12, 6), (8, 4, 4)])
def test_groupnorm_groups_fit_channels(groups, channels, want):
    assert NORMS.build("groupnorm", channels, 2, groups=groups).num_groups == want


def test_groupnorm_rejects_mlp():
    with pytest.raises(UserInputError, match="convolutional models only"):
        NORMS.build("groupnorm", 16, 0)
    with pytest.raises(UserInputError, match="convolutional models only") as err:
        check_model_config({"family": "mlp", "norm": "groupnorm"})
    assert err.value.field == "norm"
    with pytest.raises(UserInputError, match="convolutional models only"):
        build_model({"family": "mlp", "norm": {"name": "groupnorm"}}, (20,), NUM_OUTPUTS)


# -- models ------------------------------------------------------------------------------
VARIANTS = [
    (family, shape, conv, norm, residual)
    for (family, shape, conv), norm, residual in itertools.product(
        SHAPES, list(NORMS), [False, True]
    )
    if not (family == "mlp" and norm == "groupnorm")
]


@pytest.mark.parametrize(
    ("family", "shape", "conv", "norm", "residual"),
    VARIANTS,
    ids=[f"{f}-{'x'.join(map(str, s))}-{n}{'-res' if r else ''}" for f, s, _, n, r in VARIANTS],
)
def test_model_variants_build_and_forward(family, shape, conv, norm, residual):
    depth = 3
    cfg = {"family": family, "depth": depth, "width": 16, "norm": norm, "residual": residual}
    model = build_model(cfg, shape, NUM_OUTPUTS)
    out = _forward(model, shape)
    assert out.shape == (4, NUM_OUTPUTS) and torch.isfinite(out).all()

    layers = model.weight_layers()
    sites = model.activation_sites()
    assert len(layers) == depth + 1 and len(sites) == depth
    assert len({id(m) for _, m in sites}) == depth  # one hookable module per layer
    assert layers[-1][1] is model.head
    assert layers[-1][0] == f"03 head 16->{NUM_OUTPUTS}"
    if conv is None:
        assert layers[0][0] == f"00 linear {math.prod(shape)}->16"
        assert all(type(m) is nn.Linear for _, m in layers)
    else:
        kind = conv.__name__.lower()
        assert [n for n, _ in layers[:2]] == [f"00 {kind} {shape[0]}->16", f"01 {kind} 16->16"]
        assert all(type(m) is conv for _, m in layers[:-1])
    assert model.activation_name == "relu"


def test_mlp_flattens_any_input_shape():
    model = build_model({"family": "mlp", "depth": 2, "width": 8}, (1, 8, 8), 3)
    assert model.weight_layers()[0][0] == "00 linear 64->8"


def test_activation_sites_follow_the_configured_activation():
    cfg = {"family": "mlp", "depth": 2, "activation": {"name": "leaky_relu", "negative_slope": 0.3}}
    model = build_model(cfg, (10,), 2)
    assert model.activation_name == "leaky_relu"
    assert all(m.negative_slope == 0.3 for _, m in model.activation_sites())


def test_activation_hooks_see_every_layer():
    model = build_model({"family": "cnn", "depth": 4, "width": 8}, (1, 8, 8), 3)
    seen: list[tuple[int, ...]] = []
    for _, site in model.activation_sites():
        site.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    _forward(model, (1, 8, 8), batch=2)
    assert seen == [(2, 8, 8, 8)] * 4


def test_conv_kernel_size_and_same_padding():
    model = build_model({"family": "cnn", "depth": 2, "width": 8, "kernel_size": 5}, (2, 30), 3)
    conv = model.weight_layers()[0][1]
    assert conv.kernel_size == (5,) and conv.padding == "same"


def test_weight_index_width_grows_with_depth():
    model = build_model({"family": "mlp", "depth": 120, "width": 4}, (4,), 2)
    names = [n for n, _ in model.weight_layers()]
    assert names[0] == "000 linear 4->4" and names[-1] == "120 head 4->2"
    assert names == sorted(names)


def test_cnn_rejects_flat_inputs():
    with pytest.raises(UserInputError, match="spatial inputs") as err:
        build_model({"family": "cnn"}, (40,), 10)
    assert err.value.field == "model.family"
    with pytest.raises(UserInputError, match="spatial inputs"):
        check_input_shape({"family": "cnn"}, (40,))
    check_input_shape({"family": "mlp"}, (40,))


@pytest.mark.parametrize("residual", [False, True])
def test_dropout_placement(residual):
    cfg = {"family": "mlp", "depth": 4, "dropout": 0.5, "residual": residual}
    drops = [m for m in build_model(cfg, (10,), 2).modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == (3 if residual else 4)  # the residual stem has no dropout
    assert all(d.p == 0.5 for d in drops)
    plain = build_model({"family": "mlp", "depth": 4}, (10,), 2)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_residual_blocks_add_their_input():
    model = build_model({"family": "mlp", "depth": 3, "width": 8, "residual": True}, (5,), 2)
    stem, *rest = model.blocks
    assert not stem.residual and all(b.residual for b in rest)
    for block in rest:  # a zero branch makes a residual block the identity
        nn.init.zeros_(block.layer.weight)
    x = torch.randn(6, 5)
    assert torch.allclose(model(x), model.head(stem(x)))


# -- initialization ----------------------------------------------------------------------
def test_every_weight_layer_gets_the_init_and_zero_bias():
    cfg = {"family": "mlp", "depth": 3, "width": 200, "init": {"name": "normal", "std": 0.5}}
    model = build_model(cfg, (300,), 100)
    for name, layer in model.weight_layers():
        assert layer.weight.std().item() == pytest.approx(0.5, rel=0.05), name
        assert torch.count_nonzero(layer.bias) == 0, name


def test_torch_default_keeps_torch_biases():
    torch.manual_seed(0)
    model = build_model({"family": "mlp", "depth": 2, "init": "torch_default"}, (10,), 2)
    assert all(torch.count_nonzero(layer.bias) > 0 for _, layer in model.weight_layers())


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm", "groupnorm"])
def test_norm_layers_start_as_identity_affine(norm):
    model = build_model({"family": "cnn", "depth": 2, "width": 16, "norm": norm}, (3, 8, 8), 2)
    norms = [b.norm for b in model.blocks]
    assert all(torch.all(n.weight == 1) and torch.all(n.bias == 0) for n in norms)


def _activation_stds(init: str) -> list[float]:
    torch.manual_seed(0)
    cfg = {"family": "mlp", "depth": 30, "width": 256, "activation": "relu", "init": init}
    model = build_model(cfg, (256,), 10)
    stds: list[float] = []
    for _, site in model.activation_sites():
        site.register_forward_hook(lambda _m, _i, out: stds.append(out.std().item()))
    with torch.no_grad():
        model(torch.randn(1024, 256))
    return stds


def test_he_init_keeps_deep_relu_signal_xavier_shrinks_it():
    """He et al. (2015): with ReLU, Var = 2/fan_in preserves the forward signal through depth,
    while Xavier's Var = 1/fan_in (square layers) halves its second moment at every layer."""
    he = _activation_stds("kaiming_normal")
    xavier = _activation_stds("xavier_normal")
    assert 0.5 < he[-1] / he[0] < 2.0
    assert xavier[-1] / xavier[0] < 1e-3
    assert xavier[-1] / xavier[0] == pytest.approx(2 ** (-29 / 2), rel=0.5)


# -- config validation ---------------------------------------------------------------------
def test_check_model_config_fills_defaults():
    assert check_model_config({"family": "mlp"}) == {
        "family": "mlp",
        "depth": 4,
        "width": 64,
        "activation": {"name": "relu"},
        "init": {"name": "kaiming_normal", "gain": 1.0, "mode": "fan_in"},
        "norm": {"name": "none"},
        "dropout": 0.0,
        "residual": False,
    }
    resolved = check_model_config({"family": "cnn", "norm": "groupnorm"})
    assert resolved["kernel_size"] == 3 and resolved["norm"] == {"name": "groupnorm", "groups": 8}


def test_resolved_config_is_canonical():
    a = {"family": "mlp", "init": {"std": 1, "name": "normal"}, "activation": "tanh", "dropout": 0}
    b = {
        "dropout": 0.0,
        "activation": {"name": "tanh"},
        "init": {"name": "normal", "std": 1.0, "mean": 0.0, "gain": 1.0},
        "family": "mlp",
    }
    ra, rb = check_model_config(a), check_model_config(b)
    assert json.dumps(ra) == json.dumps(rb)  # same key order too, not only equal
    assert check_model_config(ra) == ra  # a fixed point
    assert isinstance(ra["dropout"], float) and isinstance(ra["init"]["std"], float)


def test_check_model_config_builds_nothing(monkeypatch):
    def boom(*_args, **_kwargs):
        raise AssertionError("a registry builder ran during validation")

    for registry in (MODELS, ACTIVATIONS, NORMS):
        monkeypatch.setattr(registry, "build", boom)
        monkeypatch.setattr(registry, "get", boom)
    check_model_config({"family": "cnn", "norm": "layernorm", "activation": "gelu"})


@pytest.mark.parametrize(
    ("cfg", "field", "message"),
    [
        ({"family": "mlp", "activation": "rleu"}, "activation", "did you mean 'relu'"),
        ({"family": "mlp", "init": "xavier_nromal"}, "init", "did you mean 'xavier_normal'"),
        ({"family": "mlp", "norm": "batchnrom"}, "norm", "did you mean 'batchnorm'"),
        ({"family": "mpl"}, "family", "did you mean 'mlp'"),
        ({"family": "mlp", "init": {"name": "normal", "std": "big"}}, "init.std", "number"),
        (
            {"family": "mlp", "init": {"name": "normal", "std": -1}},
            "init.std",
            "greater than or equal to 0",
        ),
        ({"family": "mlp", "init": {"name": "normal", "sdt": 1}}, "init.sdt", "'std'"),
        ({"family": "mlp", "init": {"std": 1}}, "init.name", "needs a 'name'"),
        ({"family": "mlp", "init": {"name": "kaiming_normal", "mode": "x"}}, "init.mode", "fan"),
        (
            {"family": "mlp", "activation": {"name": "elu", "alpha": "a"}},
            "activation.alpha",
            "number",
        ),
        (
            {"family": "cnn", "norm": {"name": "groupnorm", "groups": 0}},
            "norm.groups",
            "greater than or equal to 1",
        ),
        ({"family": "mlp", "depth": 0}, "depth", "positive integer"),
        ({"family": "mlp", "depth": True}, "depth", "integer"),
        ({"family": "mlp", "width": 0}, "width", "positive integer"),
        ({"family": "mlp", "dropout": 1.0}, "dropout", r"\[0, 1\)"),
        ({"family": "mlp", "dropout": -0.1}, "dropout", r"\[0, 1\)"),
        ({"family": "cnn", "kernel_size": 0}, "kernel_size", "greater than or equal to 1"),
        ({"family": "cnn", "kernel_size": 4}, "kernel_size", "odd"),
        ({"family": "mlp", "kernel_size": 3}, "kernel_size", "unknown field"),
        ({"family": "mlp", "dept": 3}, "dept", "did you mean 'depth'"),
    ],
)
def test_check_model_config_errors(cfg, field, message):
    with pytest.raises(UserInputError, match=message) as err:
        check_model_config(cfg)
    assert err.value.field == field


def test_bias_false_builds_hidden_layers_without_biases():
    for family, shape in (("mlp", (10,)), ("cnn", (2, 12))):
        model = build_model({"family": family, "depth": 3, "width": 8, "bias": False}, shape, 2)
        layers = model.weight_layers()
        assert all(layer.bias is None for _, layer in layers[:-1])
        assert layers[-1][1].bias is not None  # the head keeps its bias
        assert _forward(model, shape).shape == (4, 2)


# -- a family's traits, on its registration -----------------------------------------------------
@pytest.mark.parametrize(("family", "shape", "conv"), SHAPES)
def test_every_family_declares_its_traits_and_they_hold(family, shape, conv):
    """Spatial input, parameter count, batched form and title are the registration's, and each
    says what the built model does."""
    from gradatlas.models import family_title, weight_positions
    from gradatlas.models.stacked import STACKED_FORMS, stack_models

    meta = MODELS.entry(family).meta
    assert set(MODELS.required) <= set(meta)
    assert meta["spatial_input"] == (conv is not None)  # takes positions, weights at each
    assert weight_positions(family, shape) == (math.prod(shape[1:]) if conv else 1)
    assert family_title(family) == meta["title"] and meta["title"]
    spec = resolve_model({"family": family, "depth": 3, "width": 8, "norm": "batchnorm"})
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build_from_spec(spec, shape, NUM_OUTPUTS).eval())
    # With a norm of two affine vectors per layer the estimate is the exact count.
    built = sum(p.numel() for p in models[0].parameters())
    assert estimate_parameters(spec, shape, NUM_OUTPUTS) == built
    # The batched form names a stacked form whose members compute the models they came from.
    assert meta["batched"] in STACKED_FORMS
    stacked = stack_models(models).eval()
    x = torch.randn(2, 5, *shape)
    with torch.no_grad():
        out = stacked(x)
        for k, model in enumerate(models):
            torch.testing.assert_close(out[k], model(x[k]), rtol=1e-5, atol=1e-6)


def test_a_family_registered_without_its_traits_fails_at_registration():
    from gradatlas.registry import Registry

    reg = Registry("model", fixed=3, required=MODELS.required)
    with pytest.raises(ValueError, match="'bare' registered without batched, title"):

        @reg.register("bare", spatial_input=False, parameters=lambda *a: 0)
        def bare(spec, input_shape, num_outputs):
            """No batched form, no title."""


def test_no_family_name_is_tested_outside_models():
    """What a family is lives on its registration: no module outside ``models/`` compares or
    looks up a family by its name (a string literal equal to a registered family's name)."""
    import ast
    from pathlib import Path

    root, families = Path(__file__).resolve().parents[1], set(MODELS)
    found = [
        f"{path.relative_to(root)}:{node.lineno}: {node.value!r}"
        for folder in ("gradatlas", "suites", "runners", "reports")
        for path in sorted((root / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in families
    ]
    assert not found, "use the registration's traits instead:\n" + "\n".join(found)
