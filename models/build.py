"""From a suite's ``model`` block to a built, initialized model.

``check_model_config`` is the cheap half (no tensors): suite validation calls it for every cell
before anything runs, and its resolved output is what gets hashed into the trial id.
``build_model`` is the expensive half, called once per trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gradatlas.errors import UserInputError
from gradatlas.models import cnn as _cnn
from gradatlas.models import mlp as _mlp
from gradatlas.models.base import (
    MODELS,
    GradModel,
    check_int_at_least,
    check_shape_options,
    resolve_parts,
)
from gradatlas.models.norms import check_norm_family

_SPATIAL_DIMS_FOR_NORM_CHECK = {"mlp": 0, "cnn": 1}  # any conv dims will do for the check

_INPUT_CHECKS: dict[str, Callable[[tuple[int, ...]], None]] = {
    "mlp": _mlp.check_input_shape,
    "cnn": _cnn.check_input_shape,
}


def check_model_config(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a model config without building anything and return it resolved: every option
    explicit (defaults filled), activation/init/norm as ``{"name": ..., **options}``.

    The result is deterministic, JSON-serializable and a fixed point (checking it again returns
    it unchanged), since it is hashed into the trial id. Error fields are relative to the model
    block (``depth``, ``init.std``); the suite layer prefixes ``model.``.
    """
    if not isinstance(model_cfg, Mapping):
        raise UserInputError(
            f"expected a mapping with a 'family' ({', '.join(MODELS)}), got {model_cfg!r}"
        )
    if "family" not in model_cfg:
        raise UserInputError(f"missing (one of: {', '.join(MODELS)})", field="family")
    family = model_cfg["family"]
    try:
        MODELS.check_name(family)
    except UserInputError as exc:
        raise exc.located(prefix="family") from None
    options = {k: v for k, v in model_cfg.items() if k != "family"}
    resolved = MODELS.check_options(family, options)
    # Integer fields are checked on the raw values: pydantic's lax mode would turn true into 1.
    for key in ("depth", "width", "kernel_size"):
        if key in resolved:
            check_int_at_least(options.get(key, resolved[key]), 1, key)
    check_shape_options(resolved["depth"], resolved["width"], resolved["dropout"])
    if "kernel_size" in resolved:
        _cnn.check_kernel_size(resolved["kernel_size"])
    act, ini, nrm = resolve_parts(resolved["activation"], resolved["init"], resolved["norm"])
    try:
        check_norm_family(nrm["name"], _SPATIAL_DIMS_FOR_NORM_CHECK[family])
    except UserInputError as exc:
        raise exc.located(prefix="norm") from None
    resolved.update(activation=act, init=ini, norm=nrm, dropout=float(resolved["dropout"]))
    return {"family": family, **{key: resolved[key] for key in MODELS.options(family)}}


def check_input_shape(model_cfg: Mapping[str, Any], input_shape: tuple[int, ...]) -> None:
    """Whether the model family can take a dataset's inputs (cnn needs spatial ones); cheap, so
    suite validation can cross each model with each dataset before running anything."""
    family = check_model_config(model_cfg)["family"]
    _INPUT_CHECKS[family](tuple(input_shape))


def build_model(
    model_cfg: Mapping[str, Any], input_shape: tuple[int, ...], num_outputs: int
) -> GradModel:
    """Build and initialize the model a config describes (seed torch first for reproducibility).

    ``input_shape`` is one example's shape as the dataset gives it, e.g. (40,), (1, 40) or
    (1, 8, 8); ``num_outputs`` the head's size (classes, or targets for regression).
    """
    resolved = check_model_config(model_cfg)
    family = resolved.pop("family")
    _INPUT_CHECKS[family](tuple(input_shape))
    return MODELS.build(family, tuple(input_shape), num_outputs, **resolved)
