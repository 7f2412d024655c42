"""Normalization layers, by name: ``fn(num_features, spatial_dims, **options) -> nn.Module``.

``spatial_dims`` is 0 for MLP features (N, C), 1 for Conv1d maps (N, C, L) and 2 for Conv2d maps
(N, C, H, W), so one suite factor ``norm: [none, batchnorm, layernorm]`` means the natural layer
for whichever model family it is crossed with. A norm that only makes sense with channels says
so on its registration (``conv_only=True``), which validation reads before anything is built.

torch is imported inside the builders, so validating a suite never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradatlas.bounds import PositiveInt
from gradatlas.errors import UserInputError
from gradatlas.registry import Registry

if TYPE_CHECKING:
    from torch import nn

NORMS: Registry = Registry("norm", fixed=2)


def check_norm_family(name: str, spatial_dims: int) -> None:
    """Reject a conv-only norm on an MLP, with the message config validation also gives."""
    if NORMS.meta(name, "conv_only", False) and spatial_dims == 0:
        raise UserInputError(
            f"{name} applies to convolutional models only (family cnn); "
            "for an MLP use layernorm or batchnorm"
        )


def _check_spatial(spatial_dims: int) -> None:
    if spatial_dims not in (0, 1, 2):
        raise ValueError(f"spatial_dims must be 0, 1 or 2, got {spatial_dims}")


@NORMS.register()
def none(num_features: int, spatial_dims: int) -> nn.Module:
    """No normalization."""
    from torch import nn

    _check_spatial(spatial_dims)
    return nn.Identity()


@NORMS.register()
def batchnorm(num_features: int, spatial_dims: int) -> nn.Module:
    """Batch normalization (Ioffe & Szegedy 2015): per-feature statistics over the batch."""
    from torch import nn

    _check_spatial(spatial_dims)
    if spatial_dims == 2:
        return nn.BatchNorm2d(num_features)
    return nn.BatchNorm1d(num_features)


@NORMS.register()
def layernorm(num_features: int, spatial_dims: int) -> nn.Module:
    """Layer normalization (Ba et al. 2016): per-example statistics over all features.

    For conv maps the statistics span channels and positions together (GroupNorm, one group).
    """
    from torch import nn

    _check_spatial(spatial_dims)
    if spatial_dims == 0:
        return nn.LayerNorm(num_features)
    return nn.GroupNorm(1, num_features)


@NORMS.register(conv_only=True)
def groupnorm(num_features: int, spatial_dims: int, groups: PositiveInt = 8) -> nn.Module:
    """Group normalization (Wu & He 2018), conv only; groups shrink to a divisor of the channels."""
    from torch import nn

    _check_spatial(spatial_dims)
    check_norm_family("groupnorm", spatial_dims)
    return nn.GroupNorm(fit_groups(groups, num_features), num_features)


def fit_groups(groups: int, channels: int) -> int:
    """The largest divisor of ``channels`` not above ``groups``, so any width is accepted
    (GroupNorm needs groups | channels) and the trial still records the groups asked for."""
    if groups < 1:
        raise ValueError(f"groups must be >= 1 (got {groups}); validation should have said so")
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g
