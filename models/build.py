"""From a resolved ``ModelSpec`` to a built, initialized model (the expensive half).

Validation (``gradatlas.suites``) has already resolved and checked the spec against the dataset
and the size limits; this only builds, once per trial (seed torch first for reproducibility).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradatlas.models.base import GradModel
from gradatlas.models.families import MODELS, check_model_input


def build_model(spec: Any, input_shape: Sequence[int], num_outputs: int) -> GradModel:
    """Build the model a resolved ``ModelSpec`` describes.

    ``input_shape`` is one example's shape as the dataset gives it, e.g. (40,), (1, 40) or
    (1, 8, 8); ``num_outputs`` the head's size (classes, or targets for regression).
    """
    check_model_input(spec, input_shape)  # cheap; a spec built by hand may not have been crossed
    model = MODELS.build(spec.family, spec, tuple(input_shape), num_outputs, **spec.options)
    # The output's scale is the head's business, not a family's: set once here for every family.
    model.logit_scale = float(spec.logit_scale)
    model.family = spec.family  # how its seeds stack (``models.stacked``) is the family's trait
    return model
