"""gradatlas.models: what is trained. Models, activations, inits and norms, each a named registry.

A suite names them (``activation: tanh``, ``init: {name: normal, std: 1.0}``); this package turns
a resolved ``ModelSpec`` into a built, initialized ``GradModel`` whose layers instrumentation can
inspect. Importing the package registers everything without importing torch (validation reads
only names, options and metadata); ``GradModel`` and ``build_model`` load torch on first use.
"""

from typing import Any

from gradatlas.models import cnn as _cnn  # noqa: F401 - registers the family
from gradatlas.models import mlp as _mlp  # noqa: F401 - registers the family
from gradatlas.models.activations import ACTIVATIONS, is_relu_family, is_saturating, output_bounds
from gradatlas.models.families import (
    DEFAULT_FAMILY,
    MODELS,
    check_family_norm,
    check_model_input,
    estimate_parameters,
    family_title,
    weight_positions,
)
from gradatlas.models.inits import INITS, expected_std
from gradatlas.models.norms import NORMS

_LAZY = {"GradModel": "gradatlas.models.base", "build_model": "gradatlas.models.build"}


def __getattr__(name: str) -> Any:
    """``GradModel`` and ``build_model`` import torch: load them when first asked for."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACTIVATIONS",
    "DEFAULT_FAMILY",
    "INITS",
    "MODELS",
    "NORMS",
    "GradModel",
    "build_model",
    "check_family_norm",
    "check_model_input",
    "estimate_parameters",
    "expected_std",
    "family_title",
    "is_relu_family",
    "is_saturating",
    "output_bounds",
    "weight_positions",
]
