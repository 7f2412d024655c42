"""Multilayer perceptron: the canonical setting of the vanishing/exploding-gradient literature."""

from __future__ import annotations

import math

from torch import nn

from gradatlas.models.base import (
    MODELS,
    GradModel,
    Spec,
    build_hidden_blocks,
    check_input_dims,
    check_shape_options,
    initialize,
    resolve_parts,
)


def check_input_shape(input_shape: tuple[int, ...]) -> None:
    """Any input shape works: the MLP flattens it."""
    check_input_dims(input_shape)


@MODELS.register()
def mlp(
    input_shape: tuple[int, ...],
    num_outputs: int,
    depth: int = 4,
    width: int = 64,
    activation: Spec = "relu",
    init: Spec = "kaiming_normal",
    norm: Spec = "none",
    dropout: float = 0.0,
    residual: bool = False,
) -> GradModel:
    """Fully connected net: `depth` hidden layers (linear -> norm -> act -> dropout), linear head.

    Inputs of any shape are flattened. With ``residual`` the first hidden layer is a stem and
    each later one computes h + dropout(act(norm(linear(h)))).
    """
    shape = check_input_dims(input_shape)
    check_shape_options(depth, width, dropout)
    act, ini, nrm = resolve_parts(activation, init, norm)
    blocks = build_hidden_blocks(
        nn.Linear,
        in_features=math.prod(shape),
        spatial_dims=0,
        depth=depth,
        width=width,
        activation=act,
        norm=nrm,
        dropout=dropout,
        residual=residual,
    )
    model = GradModel(
        prepare=nn.Flatten(start_dim=1),
        blocks=blocks,
        pool=nn.Identity(),
        head=nn.Linear(width, num_outputs),
        activation_name=act["name"],
    )
    initialize(model, ini)
    return model
