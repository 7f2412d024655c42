"""Model families by name, with what validation needs to know about each before building one.

A family's registration says what inputs it takes (``spatial_input``) and how many parameters a
spec would have (``parameters``), so a suite is checked against its dataset (a ``cnn`` on flat
features) and against size limits without importing torch or allocating a tensor. Builders take
the resolved ``ModelSpec`` (``gradatlas.suites.spec``) plus the dataset's input shape and output
count, and trust it; a family's own options (cnn: ``kernel_size``) follow as keywords.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from gradatlas.errors import UserInputError
from gradatlas.registry import Registry

MODELS: Registry = Registry("model", fixed=3)  # (spec, input_shape, num_outputs)


def check_input_dims(input_shape: Sequence[int]) -> tuple[int, ...]:
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


def check_model_input(spec: Any, input_shape: Sequence[int]) -> None:
    """Whether the spec's family takes this dataset's inputs; the error's field is
    ``model.family``. Cheap, so validation crosses every model with its dataset first."""
    shape = check_input_dims(input_shape)
    if not MODELS.meta(spec.family, "spatial_input", False):
        return
    if len(shape) == 1:
        raise UserInputError(
            f"{spec.family} needs a dataset with spatial inputs, shaped (C, L) or (C, H, W); "
            f"this dataset's inputs are flat, shape {shape}: use family mlp for it",
            field="model.family",
        )
    if len(shape) > 3:
        raise UserInputError(
            f"{spec.family} supports inputs shaped (C, L) or (C, H, W), not shape {shape}",
            field="model.family",
        )


def estimate_parameters(spec: Any, input_shape: Sequence[int], num_outputs: int) -> int:
    """Trainable parameters the spec would have (the family's formula; norms and biases
    included roughly), for size limits checked before anything is allocated."""
    return int(MODELS.meta(spec.family, "parameters")(spec, tuple(input_shape), num_outputs))


def dense_parameters(fan_in: int, width: int, depth: int, num_outputs: int, per_weight: int) -> int:
    """A stack of ``depth`` layers of ``width`` (each weight spanning ``per_weight`` positions,
    1 for dense and the kernel size for convs) and a dense head, with biases and norm gains."""
    first = fan_in * width * per_weight + 3 * width
    rest = (depth - 1) * (width * width * per_weight + 3 * width)
    return first + rest + width * num_outputs + num_outputs


def flat_size(input_shape: Sequence[int]) -> int:
    return math.prod(input_shape)
