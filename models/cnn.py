"""Plain convolutional stack: the same trainability questions with weight sharing and locality.

No pooling or striding between layers, so depth is the only thing that changes along a sweep; a
global average pool and a linear head read out the last feature map.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Ge, Le
from pydantic import AfterValidator

from gradatlas.models.families import MODELS, check_input_dims, dense_parameters

if TYPE_CHECKING:
    from gradatlas.models.base import GradModel


def _odd(kernel_size: int) -> int:
    """Odd sizes only: 'same' padding is then symmetric (even kernels make PyTorch pad a copy of
    every input and shift the feature map by half a pixel)."""
    if kernel_size % 2 == 0:
        raise ValueError(f"must be odd, so 'same' padding is symmetric (got {kernel_size})")
    return kernel_size


KernelSize = Annotated[int, Ge(1), Le(99), AfterValidator(_odd)]


def _parameters(spec: Any, input_shape: tuple[int, ...], num_outputs: int) -> int:
    kernel = spec.options.get("kernel_size", 3) ** max(1, len(input_shape) - 1)
    return dense_parameters(input_shape[0], spec.width, spec.depth, num_outputs, kernel)


@MODELS.register(spatial_input=True, parameters=_parameters, batched="grouped_conv", title="CNN")
def cnn(
    spec: Any, input_shape: tuple[int, ...], num_outputs: int, kernel_size: KernelSize = 3
) -> GradModel:
    """Conv net: `depth` convs (conv -> norm -> act -> dropout), global average pool, linear head.

    Convs are same-padded with `width` channels; Conv1d for (C, L) inputs, Conv2d for (C, H, W).

    With ``residual`` the first conv is a stem and each later one computes
    h + dropout(act(norm(conv(h)))).
    """
    from functools import partial

    from torch import nn

    from gradatlas.models.base import GlobalAvgPool, GradModel, build_hidden_blocks, initialize

    shape = check_input_dims(input_shape)
    spatial_dims = len(shape) - 1
    conv_type = {1: nn.Conv1d, 2: nn.Conv2d}[spatial_dims]
    conv = partial(conv_type, kernel_size=kernel_size, padding="same")
    blocks = build_hidden_blocks(conv, in_features=shape[0], spatial_dims=spatial_dims, spec=spec)
    model = GradModel(
        prepare=nn.Identity(),
        blocks=blocks,
        pool=GlobalAvgPool(),
        head=nn.Linear(spec.width, num_outputs),
        activation_name=spec.activation.name,
    )
    initialize(model, spec.init)
    return model
