"""Grid factors: how each one is validated, resolved into the trial config, and labelled.

A factor is one small entry here. ``resolve`` turns a level as written in YAML (``relu``,
``{name: normal, std: 0.5}``, ``1e-4``) into its canonical resolved form (defaults filled in, so
the trial id is explicit), raising ``UserInputError`` with a field relative to the level.
``label`` gives the short text used in run names, report axes and the ``factor.*`` params.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gradatlas.errors import UserInputError
from gradatlas.models import ACTIVATIONS, INITS, NORMS
from gradatlas.registry import Registry
from gradatlas.runners.optim import DEFAULT_LR, OPTIMIZERS, SCHEDULES


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _typed(annotation: Any, what: str) -> Callable[[Any], Any]:
    adapter = TypeAdapter(annotation)

    def resolve(level: Any) -> Any:
        if isinstance(level, bool) and annotation is not bool:
            raise UserInputError(f"expected {what}, got {level!r}")
        try:
            return adapter.validate_python(level)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise UserInputError(f"expected {what}, got {level!r} ({msg})") from None

    return resolve


def resolve_named(registry: Registry, level: Any) -> dict[str, Any]:
    """``'relu'`` or ``{name: leaky_relu, negative_slope: 0.2}`` -> full dict with defaults."""
    if isinstance(level, dict):
        if "name" not in level:
            raise UserInputError(
                f"a {registry.kind} given as a mapping needs a 'name' "
                f"(known: {', '.join(registry)})"
            )
        name, options = level["name"], {k: v for k, v in level.items() if k != "name"}
    else:
        name, options = level, {}
    try:
        registry.check_name(name)
    except UserInputError as exc:
        raise exc.located(prefix="name" if isinstance(level, dict) else None) from None
    return {"name": name, **registry.check_options(name, options)}


def label_named(resolved: dict[str, Any], registry: Registry) -> str:
    """Name alone when every option is at its default; else ``name(opt=value)``."""
    name = resolved["name"]
    defaults = {k: p.default for k, p in registry.options(name).items()}
    changed = {k: v for k, v in resolved.items() if k != "name" and defaults.get(k) != v}
    if not changed:
        return name
    return f"{name}({','.join(f'{k}={_fmt(v)}' for k, v in sorted(changed.items()))})"


def resolve_optimizer(level: Any) -> dict[str, Any]:
    """An optimizer level may carry its own ``lr``; it is kept apart from the options."""
    lr = None
    if isinstance(level, dict) and "lr" in level:
        try:
            lr = _lr(level["lr"])
        except UserInputError as exc:
            raise exc.located(prefix="lr") from None
        level = {k: v for k, v in level.items() if k != "lr"}
    resolved = resolve_named(OPTIMIZERS, level)
    if lr is not None:
        resolved["lr"] = lr
    return resolved


def label_optimizer(resolved: dict[str, Any]) -> str:
    base = label_named({k: v for k, v in resolved.items() if k != "lr"}, OPTIMIZERS)
    if "lr" not in resolved:
        return base
    if base.endswith(")"):
        return f"{base[:-1]},lr={_fmt(resolved['lr'])})"
    return f"{base}(lr={_fmt(resolved['lr'])})"


def resolve_weight_decay(level: Any) -> dict[str, Any]:
    """``1e-4`` (coupled L2) or ``{value: 1e-4, mode: decoupled}``."""
    if isinstance(level, dict):
        unknown = set(level) - {"value", "mode"}
        if unknown:
            raise UserInputError(
                f"unknown key {sorted(unknown)[0]!r} (weight_decay takes: value, mode)"
            )
        mode = level.get("mode", "coupled")
        if mode not in ("coupled", "decoupled"):
            raise UserInputError(
                f"unknown mode {mode!r} (allowed: coupled, decoupled)", field="mode"
            )
        value = level.get("value", 0.0)
    else:
        mode, value = "coupled", level
    value = _typed(float, "a non-negative number")(value)
    if value < 0:
        raise UserInputError(f"weight decay must be >= 0, got {value!r}")
    return {"value": value, "mode": mode}


def label_weight_decay(resolved: dict[str, Any]) -> str:
    if resolved["value"] == 0:
        return "wd0"
    suffix = "-dec" if resolved["mode"] == "decoupled" else ""
    return f"wd{_fmt(resolved['value'])}{suffix}"


def resolve_grad_clip(level: Any) -> dict[str, Any]:
    """``null``/``0`` (off), ``1.0`` (clip by norm), ``{norm: 1.0}`` or ``{value: 0.5}``."""
    if level is None or (not isinstance(level, (dict, bool)) and level == 0):
        return {"mode": "none", "max": 0.0}
    if isinstance(level, dict):
        if len(level) != 1 or next(iter(level)) not in ("norm", "value"):
            raise UserInputError(
                f"expected {{norm: X}} or {{value: X}}, got {level!r} (allowed keys: norm, value)"
            )
        mode, raw = next(iter(level.items()))
    else:
        mode, raw = "norm", level
    value = _typed(float, "a positive number")(raw)
    if value <= 0:
        raise UserInputError(f"clipping threshold must be > 0, got {value!r}")
    return {"mode": mode, "max": value}


def label_grad_clip(resolved: dict[str, Any]) -> str:
    if resolved["mode"] == "none":
        return "noclip"
    return f"clip{'' if resolved['mode'] == 'norm' else 'val'}{_fmt(resolved['max'])}"


@dataclass(frozen=True)
class Factor:
    """One grid factor: where it lands (``section`` of the config), how to resolve and label it."""

    name: str
    section: str  # "model" or "train"
    resolve: Callable[[Any], Any]
    label: Callable[[Any], str]
    help: str


def _named_factor(name: str, registry: Registry, help: str) -> Factor:
    return Factor(
        name,
        "model",
        lambda level: resolve_named(registry, level),
        lambda resolved: label_named(resolved, registry),
        help,
    )


_positive_int = _typed(int, "a positive integer")


def _positive(level: Any) -> int:
    value = _positive_int(level)
    if value < 1:
        raise UserInputError(f"expected a positive integer, got {level!r}")
    return value


def _dropout(level: Any) -> float:
    value = _typed(float, "a dropout probability in [0, 1)")(level)
    if not 0.0 <= value < 1.0:
        raise UserInputError(f"dropout must be in [0, 1), got {level!r}")
    return value


def _lr(level: Any) -> float:
    value = _typed(float, "a positive learning rate")(level)
    if value <= 0:
        raise UserInputError(f"learning rate must be > 0, got {level!r}")
    return value


FACTORS: dict[str, Factor] = {
    f.name: f
    for f in [
        Factor("depth", "model", _positive, lambda v: f"d{v}", "hidden layers"),
        Factor("width", "model", _positive, lambda v: f"w{v}", "units (MLP) or channels (CNN)"),
        _named_factor("activation", ACTIVATIONS, "hidden-layer nonlinearity"),
        _named_factor("init", INITS, "weight initialization (gain multiplies the std)"),
        _named_factor("norm", NORMS, "normalization after each hidden layer"),
        Factor("dropout", "model", _dropout, lambda v: f"drop{_fmt(v)}", "dropout probability"),
        Factor(
            "residual",
            "model",
            _typed(bool, "true or false"),
            lambda v: "res" if v else "plain",
            "skip connections around hidden layers",
        ),
        Factor(
            "optimizer",
            "train",
            resolve_optimizer,
            label_optimizer,
            "a name, or a mapping with lr and hyper-parameters",
        ),
        Factor("lr", "train", _lr, lambda v: f"lr{_fmt(v)}", "learning rate"),
        Factor(
            "weight_decay",
            "train",
            resolve_weight_decay,
            label_weight_decay,
            "L2: a number (coupled) or {value, mode: coupled|decoupled}",
        ),
        Factor(
            "grad_clip",
            "train",
            resolve_grad_clip,
            label_grad_clip,
            "gradient clipping: a max norm, {norm: X} or {value: X}",
        ),
        Factor("batch_size", "train", _positive, lambda v: f"bs{v}", "minibatch size"),
        Factor(
            "schedule",
            "train",
            lambda level: resolve_named(SCHEDULES, level),
            lambda resolved: label_named(resolved, SCHEDULES),
            "learning-rate schedule",
        ),
    ]
}


def resolve_lr(optimizer: dict[str, Any], grid_lr: float | None, train_lr: float | None) -> float:
    """Precedence: the optimizer level's own lr, then the lr factor, then train.lr, then the
    optimizer's customary default (``DEFAULT_LR``)."""
    for candidate in (optimizer.get("lr"), grid_lr, train_lr):
        if candidate is not None:
            return float(candidate)
    return DEFAULT_LR[optimizer["name"]]
