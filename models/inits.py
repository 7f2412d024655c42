"""Weight initializations, by name, each with its theoretical standard deviation.

Every builder initializes one weight tensor in place: ``fn(weight, gain=1.0, **options)``.
``gain`` multiplies the standard deviation on top of the scheme's own scale, so a suite can sweep
init scale (e.g. xavier_normal at gain 0.5, 1, 2) without a new entry per scale.

Kaiming here is He et al. (2015) exactly: Var = 2 / fan whatever the activation, because the
point of the benchmark is to compare He against Xavier on the same activation, not to pick the
"right" gain per activation. Fans of convolution weights include the receptive field, as in
PyTorch (``fan_in = in_channels * kernel elements``).

``expected_std`` states each scheme's std as a formula, so tests compare the tensors against
the papers rather than against PyTorch's implementation.

Every init also takes ``bias_var`` (sigma_b^2, default 0): the variance of the Gaussian the
layer's biases are drawn from (``init_bias``). Mean-field theory (Poole et al. 2016; Schoenholz
et al. 2017) is written for weights ~ N(0, sigma_w^2 / fan_in) *and* biases ~ N(0, sigma_b^2),
and where its order-to-chaos boundary lies depends on both, so a suite reproducing it must be
able to set sigma_b^2: ``{name: lecun_normal, gain: 1.5, bias_var: 0.05}``. It is declared once
(``init_bias``'s signature) and joins every entry's options, so ``gradatlas ls inits``, option
checking and labels know it. At its default it is left out of the resolved init (the trial
config), so every trial id recorded before the option existed stays valid, and biases start at
zero exactly as they always did.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from gradatlas.bounds import NonNegative
from gradatlas.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor

F = TypeVar("F", bound=Callable[..., Any])
FanMode = Literal["fan_in", "fan_out"]


def _no_grad() -> Any:
    """torch.no_grad(), with torch imported on first use (validation never needs it)."""
    import torch

    return torch.no_grad()


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or Conv (out, in, *kernel) weight shape."""
    if len(shape) < 2:
        raise ValueError(f"fans need a weight of at least 2 dimensions, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _uniform_with_std(weight: Tensor, std: float) -> None:
    """U[-a, a] has std a / sqrt(3)."""
    bound = math.sqrt(3.0) * std
    weight.uniform_(-bound, bound)


# -- biases: the option every init shares ---------------------------------------------------
BIAS_VAR = "bias_var"


def init_bias(bias: Tensor, bias_var: NonNegative = 0.0) -> None:
    """Biases ~ N(0, bias_var); exactly zero at bias_var = 0 (drawing nothing from the RNG, so
    the weights that follow are the ones a trial without the option got)."""
    with _no_grad():
        if bias_var > 0:
            bias.normal_(0.0, math.sqrt(bias_var))
        else:
            bias.zero_()


_BIAS_OPTIONS = dict(list(inspect.signature(init_bias).parameters.items())[1:])


class InitRegistry(Registry[F]):
    """The init registry: each entry initializes a weight; ``bias_var`` (``init_bias``'s
    options) is added to every entry's options, checked like them, dropped from the resolved
    options while at its default (the trial id of a config without it must not change), and
    kept away from the weight builder by ``build``."""

    def register(self, name: str | None = None, **meta: Any) -> Callable[[F], F]:
        add = super().register(name, **meta)

        def add_with_bias(fn: F) -> F:
            add(fn)
            self.entry(name or fn.__name__).options.update(_BIAS_OPTIONS)
            return fn

        return add_with_bias

    def check_options(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        resolved = super().check_options(name, options)
        for key, param in _BIAS_OPTIONS.items():
            if resolved[key] == param.default:
                del resolved[key]
        return resolved

    def build(self, name: str, *fixed_args: Any, **options: Any) -> Any:
        """Initialize the weight (the bias options are ``init_bias``'s, see ``bias_options``)."""
        weight_options = {k: v for k, v in options.items() if k not in _BIAS_OPTIONS}
        return super().build(name, *fixed_args, **weight_options)


def bias_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``init_bias`` options of a resolved init's options, defaults filled in."""
    return {k: options.get(k, p.default) for k, p in _BIAS_OPTIONS.items()}


INITS: InitRegistry = InitRegistry("init", fixed=1)


# -- the schemes ---------------------------------------------------------------------------
# Each std formula lives in one `_std_*` function used both to initialize and by expected_std,
# so the two cannot disagree.


def _xavier_std(shape: tuple[int, ...], gain: float) -> float:
    fan_in, fan_out = fans(shape)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def _kaiming_std(shape: tuple[int, ...], gain: float, mode: FanMode) -> float:
    fan_in, fan_out = fans(shape)
    return gain * math.sqrt(2.0 / (fan_in if mode == "fan_in" else fan_out))


def _lecun_std(shape: tuple[int, ...], gain: float) -> float:
    return gain * math.sqrt(1.0 / fans(shape)[0])


def _glorot_standard_std(shape: tuple[int, ...], gain: float) -> float:
    # U[-1/sqrt(fan_in), 1/sqrt(fan_in)] has variance 1 / (3 fan_in).
    return gain / math.sqrt(3.0 * fans(shape)[0])


def _orthogonal_std(shape: tuple[int, ...], gain: float) -> float:
    # The weight flattened to (rows, cols) has orthonormal rows (rows <= cols) or orthonormal
    # columns (rows > cols): unit-norm vectors of max(rows, cols) entries.
    rows, cols = shape[0], math.prod(shape[1:])
    return gain / math.sqrt(max(rows, cols))


@INITS.register()
def xavier_uniform(weight: Tensor, gain: NonNegative = 1.0) -> None:
    """Glorot & Bengio (2010) normalized init: uniform with Var = 2 / (fan_in + fan_out)."""
    with _no_grad():
        _uniform_with_std(weight, _xavier_std(weight.shape, gain))


@INITS.register()
def xavier_normal(weight: Tensor, gain: NonNegative = 1.0) -> None:
    """Glorot & Bengio (2010) normalized init, Gaussian: Var = 2 / (fan_in + fan_out)."""
    with _no_grad():
        weight.normal_(0.0, _xavier_std(weight.shape, gain))


@INITS.register()
def kaiming_uniform(weight: Tensor, gain: NonNegative = 1.0, mode: FanMode = "fan_in") -> None:
    """He et al. (2015) init, uniform: Var = 2 / fan (fan_in or fan_out), for any activation."""
    with _no_grad():
        _uniform_with_std(weight, _kaiming_std(weight.shape, gain, mode))


@INITS.register()
def kaiming_normal(weight: Tensor, gain: NonNegative = 1.0, mode: FanMode = "fan_in") -> None:
    """He et al. (2015) init, Gaussian: Var = 2 / fan (fan_in or fan_out), for any activation."""
    with _no_grad():
        weight.normal_(0.0, _kaiming_std(weight.shape, gain, mode))


@INITS.register()
def lecun_normal(weight: Tensor, gain: NonNegative = 1.0) -> None:
    """LeCun et al. (1998) init, Gaussian (not truncated): Var = 1 / fan_in; SELU's partner."""
    with _no_grad():
        weight.normal_(0.0, _lecun_std(weight.shape, gain))


@INITS.register()
def orthogonal(weight: Tensor, gain: NonNegative = 1.0) -> None:
    """Saxe et al. (2014) orthogonal init: (scaled) orthonormal rows or columns."""
    with _no_grad():
        from torch.nn import init

        init.orthogonal_(weight, gain=gain)


@INITS.register()
def glorot_standard(weight: Tensor, gain: NonNegative = 1.0) -> None:
    """The 'standard' init of Glorot & Bengio (2010): U[-1/sqrt(fan_in), 1/sqrt(fan_in)]."""
    with _no_grad():
        _uniform_with_std(weight, _glorot_standard_std(weight.shape, gain))


@INITS.register()
def normal(
    weight: Tensor, gain: NonNegative = 1.0, std: NonNegative = 0.01, mean: float = 0.0
) -> None:
    """Fixed-scale Gaussian N(mean, (gain·std)²), blind to layer width (the naive baseline)."""
    with _no_grad():
        weight.normal_(mean, gain * std)


@INITS.register()
def torch_default(weight: Tensor, gain: NonNegative = 1.0) -> None:
    """Whatever PyTorch's layer constructor did (kaiming_uniform with a=√5), times gain."""
    with _no_grad():
        weight.mul_(gain)


def expected_std(name: str, weight_shape: tuple[int, ...], **options: float | str) -> float | None:
    """The theoretical std of init ``name`` on a weight of ``weight_shape`` (None when the scheme
    has no closed form here: torch_default)."""
    opts = INITS.check_options(name, options)
    gain = float(opts["gain"])
    shape = tuple(weight_shape)
    match name:
        case "xavier_uniform" | "xavier_normal":
            return _xavier_std(shape, gain)
        case "kaiming_uniform" | "kaiming_normal":
            return _kaiming_std(shape, gain, opts["mode"])
        case "lecun_normal":
            return _lecun_std(shape, gain)
        case "orthogonal":
            return _orthogonal_std(shape, gain)
        case "glorot_standard":
            return _glorot_standard_std(shape, gain)
        case "normal":
            return gain * float(opts["std"])
        case _:
            return None
