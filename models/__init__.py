"""gradatlas.models: what is trained. Models, activations, inits and norms, each a named registry.

A suite names them (``activation: tanh``, ``init: {name: normal, std: 1.0}``); this package turns
those names into a built, initialized ``GradModel`` whose layers instrumentation can inspect.
"""

from gradatlas.models.activations import ACTIVATIONS, is_relu_family, is_saturating, output_bounds
from gradatlas.models.base import MODELS, GradModel
from gradatlas.models.build import build_model, check_input_shape, check_model_config
from gradatlas.models.inits import INITS, expected_std
from gradatlas.models.norms import NORMS

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MODELS",
    "NORMS",
    "GradModel",
    "build_model",
    "check_input_shape",
    "check_model_config",
    "expected_std",
    "is_relu_family",
    "is_saturating",
    "output_bounds",
]
