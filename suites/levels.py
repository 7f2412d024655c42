"""Factor levels: from what a suite writes (``relu``, ``{name: normal, std: 0.5}``, ``1e-4``) to
the resolved value a spec field holds, and back to a short label.

Each ``resolve`` fills every default in (so the resolved form, hashed into the trial id, is
explicit), checks types and ranges (booleans are never numbers, numbers are finite), and raises
``UserInputError`` with a field relative to the level. The same resolver serves a grid level and
the suite's fixed setting of the same name, so both are checked alike.

No torch here: the registries are read for names, options and metadata only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gradatlas.errors import UserInputError, short_repr
from gradatlas.models.activations import ACTIVATIONS
from gradatlas.models.inits import INITS
from gradatlas.models.norms import NORMS
from gradatlas.optim import OPTIMIZERS, SCHEDULES
from gradatlas.registry import Registry


# -- resolved value types (re-exported by gradatlas.suites.spec) ---------------------------------
@dataclass(frozen=True)
class Named:
    """A registry entry with its options resolved: ``relu``, ``normal(gain=1, std=1, mean=0)``."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> Named:
        return cls(str(data["name"]), {k: v for k, v in data.items() if k != "name"})


@dataclass(frozen=True)
class WeightDecay:
    value: float = 0.0
    mode: str = "coupled"  # "coupled" (L2 in the gradient) | "decoupled" (AdamW-style)


@dataclass(frozen=True)
class Clip:
    mode: str = "none"  # "none" | "norm" | "value"
    max: float = 0.0

    def to_config(self) -> dict[str, Any]:
        return {"mode": self.mode, "max": self.max}


# -- numbers -------------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def integer(level: Any, what: str = "an integer") -> int:
    """An int, or a string/float that is exactly one ("3", 3.0); never a boolean."""
    if isinstance(level, bool):
        raise UserInputError(f"expected {what}, got {level!r} (a boolean is not a number)")
    if isinstance(level, int):
        return level
    if isinstance(level, float) and math.isfinite(level) and level.is_integer():
        return int(level)
    if isinstance(level, str):
        text = level.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return integer(float(text), what)
            except (ValueError, UserInputError):
                pass
    raise UserInputError(f"expected {what}, got {short_repr(level)}")


def number(level: Any, what: str = "a number") -> float:
    """A finite float from a number or a numeric string ("1e-3": YAML 1.1 reads it as a string);
    never a boolean, never NaN or infinity."""
    if isinstance(level, bool):
        raise UserInputError(f"expected {what}, got {level!r} (a boolean is not a number)")
    value: float | None = None
    if isinstance(level, int | float):
        value = float(level) if abs(level) < 1e309 else math.inf
    elif isinstance(level, str):
        try:
            value = float(level.strip())
        except ValueError:
            value = None
    if value is None:
        raise UserInputError(f"expected {what}, got {short_repr(level)}")
    if not math.isfinite(value):
        raise UserInputError(f"expected {what}, got {short_repr(level)} (must be finite)")
    return value


def positive_int(level: Any) -> int:
    value = integer(level, "a positive integer")
    if value < 1:
        raise UserInputError(f"expected a positive integer, got {short_repr(level)}")
    return value


def non_negative_int(level: Any) -> int:
    value = integer(level, "a non-negative integer")
    if value < 0:
        raise UserInputError(f"expected a non-negative integer, got {short_repr(level)}")
    return value


def in_unit_interval(what: str) -> Callable[[Any], float]:
    """A resolver for a probability-like setting in [0, 1) (dropout, label smoothing)."""

    def resolve(level: Any) -> float:
        value = number(level, f"a {what} in [0, 1)")
        if not 0.0 <= value < 1.0:
            raise UserInputError(f"{what} must be in [0, 1), got {short_repr(level)}")
        return value

    return resolve


dropout = in_unit_interval("dropout probability")


def learning_rate(level: Any) -> float:
    value = number(level, "a positive learning rate")
    if value <= 0:
        raise UserInputError(f"learning rate must be > 0, got {short_repr(level)}")
    return value


def boolean(level: Any) -> bool:
    """true/false (YAML's own booleans, or the strings 'true'/'false')."""
    if isinstance(level, bool):
        return level
    if isinstance(level, str) and level.strip().lower() in ("true", "false"):
        return level.strip().lower() == "true"
    raise UserInputError(f"expected true or false, got {short_repr(level)}")


# -- named levels --------------------------------------------------------------------------------
def resolve_named(registry: Registry, level: Any) -> Named:
    """``'relu'`` or ``{name: leaky_relu, negative_slope: 0.2}`` -> ``Named`` with every option."""
    if isinstance(level, Mapping):
        if "name" not in level:
            raise UserInputError(
                f"a {registry.kind} given as a mapping needs a 'name' "
                f"(known: {', '.join(registry)})",
                field="name",
            )
        name, options = level["name"], {k: v for k, v in level.items() if k != "name"}
        try:
            registry.check_name(name)
        except UserInputError as exc:
            raise exc.located(prefix="name") from None
    elif isinstance(level, str):
        name, options = level, {}
        registry.check_name(name)
    else:
        raise UserInputError(
            f"expected {registry.kind} name or a mapping {{name: ..., option: value}}, "
            f"got {type(level).__name__} {short_repr(level)}"
        )
    return Named(name, registry.check_options(name, options))


def activation(level: Any) -> Named:
    return resolve_named(ACTIVATIONS, level)


def init(level: Any) -> Named:
    return resolve_named(INITS, level)


def norm(level: Any) -> Named:
    return resolve_named(NORMS, level)


def schedule(level: Any) -> Named:
    return resolve_named(SCHEDULES, level)


def optimizer(level: Any) -> Named:
    """An optimizer level may carry its own ``lr`` (kept under ``options["lr"]`` until the
    trial is resolved, where it takes precedence over grid.lr and train.lr)."""
    lr = None
    if isinstance(level, Mapping) and "lr" in level:
        try:
            lr = learning_rate(level["lr"])
        except UserInputError as exc:
            raise exc.located(prefix="lr") from None
        level = {k: v for k, v in level.items() if k != "lr"}
    resolved = resolve_named(OPTIMIZERS, level)
    if lr is None:
        return resolved
    return Named(resolved.name, {**resolved.options, "lr": lr})


def _labeller(registry: Registry) -> Callable[[Named], str]:
    def label(resolved: Named) -> str:
        """Name alone when every option is at its default; else ``name(opt=value)``."""
        defaults = registry.defaults(resolved.name)
        changed = {k: v for k, v in resolved.options.items() if defaults.get(k, object()) != v}
        if not changed:
            return resolved.name
        return f"{resolved.name}({','.join(f'{k}={fmt(v)}' for k, v in sorted(changed.items()))})"

    return label


label_activation = _labeller(ACTIVATIONS)
label_init = _labeller(INITS)
label_norm = _labeller(NORMS)
label_schedule = _labeller(SCHEDULES)
_label_optimizer_options = _labeller(OPTIMIZERS)


def label_optimizer(resolved: Named) -> str:
    """``adam``, ``adam(beta2=0.99)``; a level's own lr comes last: ``adam(beta2=0.99,lr=0.01)``."""
    options = {k: v for k, v in resolved.options.items() if k != "lr"}
    base = _label_optimizer_options(Named(resolved.name, options))
    if "lr" not in resolved.options:
        return base
    lr = fmt(resolved.options["lr"])
    return f"{base[:-1]},lr={lr})" if base.endswith(")") else f"{base}(lr={lr})"


# -- regularization ------------------------------------------------------------------------------
def weight_decay(level: Any) -> WeightDecay:
    """``1e-4`` (coupled L2) or ``{value: 1e-4, mode: decoupled}``."""
    if isinstance(level, Mapping):
        unknown = set(level) - {"value", "mode"}
        if unknown:
            raise UserInputError(
                f"unknown key {short_repr(sorted(map(str, unknown))[0])} "
                "(weight_decay takes: value, mode)"
            )
        mode = level.get("mode", "coupled")
        if mode not in ("coupled", "decoupled"):
            raise UserInputError(
                f"unknown mode {short_repr(mode)} (allowed: coupled, decoupled)", field="mode"
            )
        raw = level.get("value", 0.0)
    else:
        mode, raw = "coupled", level
    value = number(raw, "a non-negative number")
    if value < 0:
        raise UserInputError(f"weight decay must be >= 0, got {short_repr(raw)}")
    return WeightDecay(value, mode)


def label_weight_decay(resolved: WeightDecay) -> str:
    if resolved.value == 0:
        return "wd0"
    suffix = "-dec" if resolved.mode == "decoupled" else ""
    return f"wd{fmt(resolved.value)}{suffix}"


def grad_clip(level: Any) -> Clip:
    """``null``/``0`` (off), ``1.0`` (clip by norm), ``{norm: 1.0}`` or ``{value: 0.5}``."""
    if level is None or (
        isinstance(level, int | float) and not isinstance(level, bool) and level == 0
    ):
        return Clip()
    if isinstance(level, Mapping):
        if len(level) != 1 or next(iter(level)) not in ("norm", "value"):
            raise UserInputError(
                f"expected {{norm: X}} or {{value: X}}, got {short_repr(level)} "
                "(allowed keys: norm, value)"
            )
        mode, raw = next(iter(level.items()))
    else:
        mode, raw = "norm", level
    if isinstance(raw, float) and math.isinf(raw) and raw > 0:
        raise UserInputError("an infinite clipping threshold clips nothing: use null (off)")
    value = number(raw, "a positive number")
    if value <= 0:
        raise UserInputError(f"clipping threshold must be > 0, got {short_repr(raw)}")
    return Clip(mode, value)


def label_grad_clip(resolved: Clip) -> str:
    if resolved.mode == "none":
        return "noclip"
    return f"clip{'' if resolved.mode == 'norm' else 'val'}{fmt(resolved.max)}"


# -- the output and its loss ---------------------------------------------------------------------
# Classification losses by name -> short label. ``cross_entropy``: softmax + cross-entropy on the
# logits (the behaviour before the factor existed); ``mse``: mean squared error between the raw
# logits and the one-hot target, no softmax anywhere. Regression always trains on MSE.
LOSSES = {"cross_entropy": "ce", "mse": "mse"}


def loss(level: Any) -> str:
    """A classification loss by name (``LOSSES``), with a suggestion for a near miss."""
    if isinstance(level, str) and level.strip() in LOSSES:
        return level.strip()
    import difflib

    near = difflib.get_close_matches(str(level), list(LOSSES), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise UserInputError(f"unknown loss {short_repr(level)} (losses: {', '.join(LOSSES)}){hint}")


def label_loss(resolved: str) -> str:
    return LOSSES[resolved]


def logit_scale(level: Any) -> float:
    """A positive finite multiplier of the network's output (a softmax temperature 1/scale)."""
    value = number(level, "a positive logit scale")
    if value <= 0:
        raise UserInputError(f"logit scale must be > 0, got {short_repr(level)}")
    return value


def check_loss(trial: Any, origin: Mapping[str, str]) -> list[UserInputError]:
    """A resolved trial's loss against its dataset and its label smoothing, located at the grid
    level that set it (``origin``), else the fixed ``train.loss``: a classification loss other
    than cross-entropy needs a classification dataset (regression always trains on MSE), and
    label smoothing smooths cross-entropy's target, so it has no meaning under ``mse``."""
    from gradatlas.datasets import describe

    train = trial.train
    if train.loss == "cross_entropy":
        return []
    where = origin.get("loss", "train.loss")
    task = describe(trial.dataset.name, trial.dataset.options)[0]
    if task != "classification":
        return [
            UserInputError(
                f"loss {train.loss} is a classification loss; {trial.dataset.name} is a {task} "
                "dataset, which always trains on mean squared error (drop train.loss)",
                field=where,
            )
        ]
    if train.label_smoothing:
        return [
            UserInputError(
                f"label smoothing {fmt(train.label_smoothing)} smooths the cross-entropy target "
                f"and has no meaning with loss {train.loss}: set label_smoothing 0 for it",
                field=origin.get("label_smoothing", where),
            )
        ]
    return []


# -- data ----------------------------------------------------------------------------------------
def dataset(level: Any) -> Named:
    """``digits`` or ``{name: digits, options: {val_fraction: 0.1}}`` -> ``Named`` holding the
    options the level itself writes (checked, not filled in). The rest comes from the suite's
    ``dataset`` section when the trial is resolved (``spec.DatasetDefaults``): its seed for
    every level, its options for its own dataset only, then the dataset's defaults; so a level
    is labelled by what it says, and the section's own dataset keeps the config it always had."""
    from gradatlas.datasets import DATASETS

    if isinstance(level, Mapping):
        unknown = sorted(map(str, set(level) - {"name", "options"}))
        if unknown:
            seed = "; the data seed is the suite's dataset.seed" if unknown[0] == "seed" else ""
            raise UserInputError(
                f"unknown key {short_repr(unknown[0])} (a dataset level takes: name, options"
                f"{seed})",
                field=unknown[0],
            )
        if "name" not in level:
            raise UserInputError(
                f"a dataset given as a mapping needs a 'name' (known: {', '.join(DATASETS)})"
            )
        name, given = level["name"], level.get("options") or {}
        try:
            DATASETS.check_name(name)
        except UserInputError as exc:
            raise exc.located(prefix="name") from None
        if not isinstance(given, Mapping):
            raise UserInputError(
                f"expected a mapping of options, got {short_repr(given)}", field="options"
            )
        try:
            checked = DATASETS.check_options(name, given)
        except UserInputError as exc:
            raise exc.located(prefix="options") from None
        return Named(name, {k: checked[k] for k in given})
    DATASETS.check_name(level)
    return Named(level, {})


def label_dataset(resolved: Named) -> str:
    """``mnist1d``; a level that writes options: ``mnist1d(num_samples=1000)``."""
    if not resolved.options:
        return resolved.name
    options = ",".join(f"{k}={fmt(v)}" for k, v in sorted(resolved.options.items()))
    return f"{resolved.name}({options})"
