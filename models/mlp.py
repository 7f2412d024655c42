"""Multilayer perceptron: the canonical setting of the vanishing/exploding-gradient literature."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradatlas.models.families import MODELS, check_input_dims, dense_parameters, flat_size

if TYPE_CHECKING:
    from gradatlas.models.base import GradModel


def _parameters(spec: Any, input_shape: tuple[int, ...], num_outputs: int) -> int:
    return dense_parameters(flat_size(input_shape), spec.width, spec.depth, num_outputs, 1)


@MODELS.register(spatial_input=False, parameters=_parameters, batched="dense", title="MLP")
def mlp(spec: Any, input_shape: tuple[int, ...], num_outputs: int) -> GradModel:
    """Fully connected net: `depth` hidden layers (linear -> norm -> act -> dropout), linear head.

    Inputs of any shape are flattened. With ``residual`` the first hidden layer is a stem and
    each later one computes h + dropout(act(norm(linear(h)))).
    """
    from torch import nn

    from gradatlas.models.base import GradModel, build_hidden_blocks, initialize

    shape = check_input_dims(input_shape)
    blocks = build_hidden_blocks(nn.Linear, in_features=flat_size(shape), spatial_dims=0, spec=spec)
    model = GradModel(
        prepare=nn.Flatten(start_dim=1),
        blocks=blocks,
        pool=nn.Identity(),
        head=nn.Linear(spec.width, num_outputs),
        activation_name=spec.activation.name,
    )
    initialize(model, spec.init)
    return model
