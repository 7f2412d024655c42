"""What every gradatlas model shares: the hidden block, the model skeleton and its introspection.

A model is ``prepare -> blocks -> pool -> head``. MLP and CNN differ only in the layer type, how
the input is prepared (flattened or not) and how features are pooled before the head, so one
class serves both and instrumentation sees the same ``weight_layers()`` / ``activation_sites()``
interface whatever the family.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from gradatlas.errors import UserInputError
from gradatlas.models.activations import ACTIVATIONS
from gradatlas.models.inits import INITS, check_init_values
from gradatlas.models.norms import NORMS, check_norm_family, check_norm_values
from gradatlas.registry import Registry

MODELS: Registry = Registry("model", fixed=2)

# A factor given by name ("relu") or by name with options ({"name": "normal", "std": 1.0}).
Spec = str | dict[str, Any]

# Range checks per registry kind, for what type annotations cannot say (e.g. std >= 0).
_VALUE_CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "init": check_init_values,
    "norm": check_norm_values,
}


# -- factor specs ------------------------------------------------------------------------------
def resolve_spec(registry: Registry, value: Any, field: str) -> dict[str, Any]:
    """``name`` or ``{name, **options}`` -> ``{"name": ..., **all options}`` with defaults filled,
    so the resolved form is explicit and stable (it is hashed into the trial id).

    Errors are placed under ``field`` (``init.std``, ``activation``) for the suite's messages.
    """
    try:
        name, options = _split_spec(registry, value)
        resolved = registry.check_options(name, options)
        check = _VALUE_CHECKS.get(registry.kind)
        if check is not None:
            check(name, resolved)
    except UserInputError as exc:
        raise exc.located(prefix=field) from None
    # Signature order, whatever order the user wrote: stable and readable in the record.
    return {"name": name, **{key: resolved[key] for key in registry.options(name)}}


def _split_spec(registry: Registry, value: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping):
        if "name" not in value:
            raise UserInputError(
                f"a {registry.kind} given as a mapping needs a 'name' "
                f"(known: {', '.join(registry)})",
                field="name",
            )
        options = {k: v for k, v in value.items() if k != "name"}
        registry.check_name(value["name"])
        return value["name"], options
    raise UserInputError(
        f"expected a {registry.kind} name or a mapping {{name: ..., option: value}}, "
        f"got {type(value).__name__} {value!r}"
    )


# -- shape options ------------------------------------------------------------------------
def check_int_at_least(value: Any, minimum: int, field: str) -> None:
    """Integers only (a YAML ``true`` must not become depth 1) and at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserInputError(f"must be an integer (got {value!r})", field=field)
    if value < minimum:
        raise UserInputError(f"must be >= {minimum} (got {value})", field=field)


def check_dropout(value: float) -> None:
    if not (0.0 <= value < 1.0):
        raise UserInputError(f"must be in [0, 1) (got {value!r})", field="dropout")


# -- the model ---------------------------------------------------------------------------
class HiddenBlock(nn.Module):
    """layer -> norm -> activation -> dropout, optionally added to its input (residual)."""

    def __init__(
        self,
        layer: nn.Module,
        norm: nn.Module,
        act: nn.Module,
        dropout: nn.Module,
        residual: bool,
    ):
        super().__init__()
        self.layer = layer
        self.norm = norm
        self.act = act
        self.dropout = dropout
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.dropout(self.act(self.norm(self.layer(x))))
        return x + y if self.residual else y


class GlobalAvgPool(nn.Module):
    """Mean over every spatial position: (N, C, *spatial) -> (N, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2).mean(dim=2)


class GradModel(nn.Module):
    """A stack of hidden blocks and a linear head, with the introspection instrumentation needs.

    ``weight_layers()`` lists every weighted layer (head included) in forward order, named like
    ``"00 linear 40->64"`` ... ``"20 head 64->10"``: these names label the per-layer profiles and
    curves of the trial record. ``activation_sites()`` lists each hidden layer's own activation
    module, so a forward hook per layer sees that layer's outputs.
    """

    def __init__(
        self,
        prepare: nn.Module,
        blocks: list[HiddenBlock],
        pool: nn.Module,
        head: nn.Linear,
        activation_name: str,
    ):
        super().__init__()
        self.prepare = prepare
        self.blocks = nn.ModuleList(blocks)
        self.pool = pool
        self.head = head
        self.activation_name = activation_name

    def forward(self, x: Tensor) -> Tensor:
        h = self.prepare(x)
        for block in self.blocks:
            h = block(h)
        return self.head(self.pool(h))

    def _index(self, i: int) -> str:
        width = max(2, len(str(len(self.blocks))))
        return f"{i:0{width}d}"

    def weight_layers(self) -> list[tuple[str, nn.Module]]:
        layers: list[tuple[str, nn.Module]] = [
            (f"{self._index(i)} {_describe(b.layer)}", b.layer) for i, b in enumerate(self.blocks)
        ]
        n = len(self.blocks)
        head = self.head
        layers.append((f"{self._index(n)} head {head.in_features}->{head.out_features}", head))
        return layers

    def activation_sites(self) -> list[tuple[str, nn.Module]]:
        return [
            (f"{self._index(i)} {self.activation_name}", b.act) for i, b in enumerate(self.blocks)
        ]


def _describe(layer: nn.Module) -> str:
    if isinstance(layer, nn.Linear):
        return f"linear {layer.in_features}->{layer.out_features}"
    if isinstance(layer, nn.Conv1d | nn.Conv2d):
        kind = type(layer).__name__.lower()
        return f"{kind} {layer.in_channels}->{layer.out_channels}"
    return type(layer).__name__.lower()


# -- assembling a model --------------------------------------------------------------------
def build_hidden_blocks(
    make_layer: Callable[[int, int], nn.Module],
    in_features: int,
    spatial_dims: int,
    depth: int,
    width: int,
    activation: dict[str, Any],
    norm: dict[str, Any],
    dropout: float,
    residual: bool,
) -> list[HiddenBlock]:
    """``depth`` hidden blocks of ``width`` units; with ``residual`` the first is a plain stem
    (linear/conv -> norm -> act, changing the width) and the rest add their output to their input.
    """
    act_name, act_opts = _name_and_options(activation)
    norm_name, norm_opts = _name_and_options(norm)
    check_norm_family(norm_name, spatial_dims)
    blocks = []
    for i in range(depth):
        is_stem = residual and i == 0
        blocks.append(
            HiddenBlock(
                layer=make_layer(in_features if i == 0 else width, width),
                norm=NORMS.build(norm_name, width, spatial_dims, **norm_opts),
                act=ACTIVATIONS.build(act_name, **act_opts),
                dropout=nn.Dropout(dropout) if dropout > 0 and not is_stem else nn.Identity(),
                residual=residual and i > 0,
            )
        )
    return blocks


def initialize(model: GradModel, init: dict[str, Any]) -> None:
    """Apply the configured init to every weight layer (head included) and zero the biases.

    torch_default keeps PyTorch's biases too: it stands for "what you get out of the box".
    Norm layers keep their constructor state (weight 1, bias 0).
    """
    name, options = _name_and_options(init)
    for _, layer in model.weight_layers():
        INITS.build(name, layer.weight, **options)
        bias = getattr(layer, "bias", None)
        if bias is not None and name != "torch_default":
            with torch.no_grad():
                bias.zero_()


def _name_and_options(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return spec["name"], {k: v for k, v in spec.items() if k != "name"}


def resolve_parts(
    activation: Spec, init: Spec, norm: Spec
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Resolve the three factor specs of a model config (names or dicts) to full dicts."""
    return (
        resolve_spec(ACTIVATIONS, activation, "activation"),
        resolve_spec(INITS, init, "init"),
        resolve_spec(NORMS, norm, "norm"),
    )


def check_shape_options(depth: int, width: int, dropout: float) -> None:
    """The ranges shared by every family, checked before any tensor is made."""
    check_int_at_least(depth, 1, "depth")
    check_int_at_least(width, 1, "width")
    check_dropout(dropout)


def check_input_dims(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """A dataset's per-example shape as plain ints (torch.Size and numpy ints are fine); it must
    be non-empty and positive, or the dataset has a bug (not a user error)."""
    try:
        shape = tuple(operator.index(d) for d in input_shape)
    except TypeError:
        shape = ()
    if not shape or any(isinstance(d, bool) or d < 1 for d in shape):
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints, got {input_shape}"
        )
    return shape
