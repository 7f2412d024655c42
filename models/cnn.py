"""Plain convolutional stack: the same trainability questions with weight sharing and locality.

No pooling or striding between layers, so depth is the only thing that changes along a sweep; a
global average pool and a linear head read out the last feature map.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from gradatlas.errors import UserInputError
from gradatlas.models.base import (
    MODELS,
    GlobalAvgPool,
    GradModel,
    Spec,
    build_hidden_blocks,
    check_input_dims,
    check_int_at_least,
    check_shape_options,
    initialize,
    resolve_parts,
)

_CONVS: dict[int, type[nn.Conv1d] | type[nn.Conv2d]] = {1: nn.Conv1d, 2: nn.Conv2d}


def check_input_shape(input_shape: tuple[int, ...]) -> None:
    """(C, L) or (C, H, W) inputs only: a flat dataset has no positions to convolve over."""
    shape = check_input_dims(input_shape)
    if len(shape) == 1:
        raise UserInputError(
            f"cnn needs a dataset with spatial inputs, shaped (C, L) or (C, H, W); this "
            f"dataset's inputs are flat, shape {shape}: use family mlp for it",
            field="model.family",
        )
    if len(shape) > 3:
        raise UserInputError(
            f"cnn supports inputs shaped (C, L) or (C, H, W), not shape {shape}",
            field="model.family",
        )


def check_kernel_size(kernel_size: int) -> None:
    """Odd sizes only: 'same' padding is then symmetric (even kernels make PyTorch pad a copy of
    every input and shift the feature map by half a pixel)."""
    check_int_at_least(kernel_size, 1, "kernel_size")
    if kernel_size % 2 == 0:
        raise UserInputError(
            f"must be odd, so 'same' padding is symmetric (got {kernel_size})", field="kernel_size"
        )


@MODELS.register()
def cnn(
    input_shape: tuple[int, ...],
    num_outputs: int,
    depth: int = 4,
    width: int = 64,
    activation: Spec = "relu",
    init: Spec = "kaiming_normal",
    norm: Spec = "none",
    dropout: float = 0.0,
    residual: bool = False,
    kernel_size: int = 3,
) -> GradModel:
    """Conv net: `depth` convs (conv -> norm -> act -> dropout), global average pool, linear head.

    Convs are same-padded with `width` channels; Conv1d for (C, L) inputs, Conv2d for (C, H, W).

    With ``residual`` the first conv is a stem and each later one computes
    h + dropout(act(norm(conv(h)))).
    """
    check_input_shape(input_shape)
    shape = check_input_dims(input_shape)
    check_shape_options(depth, width, dropout)
    check_kernel_size(kernel_size)
    act, ini, nrm = resolve_parts(activation, init, norm)
    spatial_dims = len(shape) - 1
    conv = partial(_CONVS[spatial_dims], kernel_size=kernel_size, padding="same")
    blocks = build_hidden_blocks(
        conv,
        in_features=shape[0],
        spatial_dims=spatial_dims,
        depth=depth,
        width=width,
        activation=act,
        norm=nrm,
        dropout=dropout,
        residual=residual,
    )
    model = GradModel(
        prepare=nn.Identity(),
        blocks=blocks,
        pool=GlobalAvgPool(),
        head=nn.Linear(width, num_outputs),
        activation_name=act["name"],
    )
    initialize(model, ini)
    return model
