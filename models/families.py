"""Model families by name, with what the rest of the project needs to know about each before
building one: its traits, on the registration (as timm keeps a model's metadata).

Every family declares (``MODELS.required``):

- ``spatial_input``: it takes inputs with positions, (C, L) or (C, H, W), and applies each
  weight at every position (a conv net), rather than flattening them (an MLP);
- ``parameters(spec, input_shape, num_outputs)``: how many parameters a spec would have;
- ``batched``: the name of its stacked form in ``models.stacked`` (how the seeds of a cell
  train as one model), or None for a family that trains one seed at a time;
- ``title``: the name a report prints ("MLP").

So a suite is checked against its dataset (a ``cnn`` on flat features) and against size limits,
a plan is costed and seeds are grouped, without importing torch or allocating a tensor, and
nothing outside this package tests a family's name. Builders take the resolved ``ModelSpec``
(``gradatlas.suites.spec``) plus the dataset's input shape and output count, and trust it; a
family's own options (cnn: ``kernel_size``) follow as keywords.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from gradatlas.errors import UserInputError
from gradatlas.registry import Registry

DEFAULT_FAMILY = "mlp"  # what a suite's model block means when it names no family
MODELS: Registry = Registry(  # builders take (spec, input_shape, num_outputs)
    "model", fixed=3, required=("spatial_input", "parameters", "batched", "title")
)


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
    if not MODELS.meta(spec.family, "spatial_input"):
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


def weight_positions(family: str, input_shape: Sequence[int]) -> int:
    """At how many positions each weight is applied for one example: every spatial position
    of the input for a spatial family (same padding, no pooling before the head), else 1."""
    if not MODELS.meta(family, "spatial_input"):
        return 1
    return math.prod(input_shape[1:])


def check_family_norm(family: str, norm: str) -> None:
    """Whether ``family`` takes ``norm``: a conv-only norm needs a spatial family
    (``UserInputError`` otherwise, with the message the builder would give)."""
    from gradatlas.models.norms import check_norm_family

    check_norm_family(norm, 1 if MODELS.meta(family, "spatial_input") else 0)


def family_title(family: str) -> str:
    """The name a report prints for model family ``family`` ("CNN"); an unknown name as is."""
    return str(MODELS.meta(family, "title")) if family in MODELS else family


def dense_parameters(fan_in: int, width: int, depth: int, num_outputs: int, per_weight: int) -> int:
    """A stack of ``depth`` layers of ``width`` (each weight spanning ``per_weight`` positions,
    1 for dense and the kernel size for convs) and a dense head, with biases and norm gains."""
    first = fan_in * width * per_weight + 3 * width
    rest = (depth - 1) * (width * width * per_weight + 3 * width)
    return first + rest + width * num_outputs + num_outputs


def flat_size(input_shape: Sequence[int]) -> int:
    return math.prod(input_shape)
