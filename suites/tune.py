"""A suite's ``tune`` block: what may be tuned, where each value lands, and its validation.

A tuned hyper-parameter is a spec field like a grid factor, but its value comes from a study
(``gradatlas.runners.tuning``) instead of the suite. ``lr`` lands in ``optim.lr``,
``weight_decay`` in ``optim.weight_decay`` (its mode kept), ``dropout`` in ``model.dropout``;
any other name is an optimizer option (``momentum``, ``beta1``, ``beta2``, ``eps``, ``alpha``)
and lands only in the cells whose optimizer takes it (an ``sgd`` cell has no momentum to tune).
The allowed names and ranges are read from the optimizer registry, so they cannot drift from it.

No torch here: this is the suites layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from gradatlas.errors import UserInputError, field_key, short_repr
from gradatlas.optim import OPTIMIZERS
from gradatlas.suites import levels as lv
from gradatlas.suites.schema import TuneSection

# name -> the spec field it sets (the optimizer's options are the rest)
SPEC_PARAMS = {"lr": "optim.lr", "weight_decay": "optim.weight_decay", "dropout": "model.dropout"}
LINEAR_SHARE = 0.1  # ``distinct``: a linear param this share of its range apart
_RESOLVERS = {"lr": lv.learning_rate, "weight_decay": lv.weight_decay, "dropout": lv.dropout}


def optimizer_options() -> dict[str, list[str]]:
    """Optimizer option -> the optimizers that take it (what a tuned option may be)."""
    out: dict[str, list[str]] = {}
    for name in OPTIMIZERS.names():
        for option in OPTIMIZERS.options(name):
            out.setdefault(option, []).append(name)
    return out


def tunable() -> list[str]:
    """Every name a ``tune.params`` entry may have, in the order errors list them."""
    return [*SPEC_PARAMS, *sorted(set(optimizer_options()) - set(SPEC_PARAMS))]


def applies(name: str, optimizer: str) -> bool:
    """Whether a tuned ``name`` lands in a cell trained with ``optimizer``."""
    return name in SPEC_PARAMS or name in OPTIMIZERS.options(optimizer)


def tuned_spec(spec: Any, values: Mapping[str, float], steps: int | None = None) -> Any:
    """``spec`` (a ``TrialSpec``) with the tuned ``values`` in their fields, and the training
    budget replaced by ``steps`` when given. Options the cell's optimizer does not take are
    skipped (see the module docstring). The result is a new spec with its own trial id."""
    model, optim, train = spec.model, spec.optim, spec.train
    if "lr" in values:
        optim = dataclasses.replace(optim, lr=float(values["lr"]))
    if "weight_decay" in values:
        wd = dataclasses.replace(optim.weight_decay, value=float(values["weight_decay"]))
        optim = dataclasses.replace(optim, weight_decay=wd)
    if "dropout" in values:
        model = dataclasses.replace(model, dropout=float(values["dropout"]))
    name = optim.optimizer.name
    own = {k: float(v) for k, v in values.items() if k not in SPEC_PARAMS and applies(k, name)}
    if own:
        options = OPTIMIZERS.check_options(name, {**optim.optimizer.options, **own})
        optim = dataclasses.replace(optim, optimizer=lv.Named(name, options))
    if steps is not None:
        train = dataclasses.replace(train, steps=int(steps), epochs=None)
    return dataclasses.replace(spec, model=model, optim=optim, train=train)


def distinct(
    a: Mapping[str, float],
    b: Mapping[str, float],
    params: Mapping[str, Mapping[str, Any]],
    ratio: float = 2.0,
) -> bool:
    """Whether two tuned points are far enough apart to count as different choices: some param
    (``params``: name -> its range as plain data, ``low``, ``high``, ``log``) differs by at least
    a factor ``ratio`` (a log param, whose scale is multiplicative) or by at least
    ``LINEAR_SHARE`` of its range (a linear one). A second-best within a factor 2 of the best
    is the same choice measured twice, not a test of robustness."""
    for name, p in params.items():
        if name not in a or name not in b:
            continue
        x, y = float(a[name]), float(b[name])
        if p.get("log"):
            if x > 0 and y > 0 and max(x, y) >= ratio * min(x, y) * (1 - 1e-9):
                return True
        elif abs(x - y) >= LINEAR_SHARE * (float(p["high"]) - float(p["low"])) * (1 - 1e-9):
            return True
    return False


def budget_steps(spec: Any) -> int | None:
    """The training steps of a ``TrialSpec``'s own budget (``train.steps``, else epochs x
    steps per epoch), or None where the dataset's size is unknown."""
    train = spec.train
    if train.steps is not None:
        return int(train.steps)
    from gradatlas.datasets import split_sizes

    try:
        n_train, _ = split_sizes(spec.dataset.name, spec.dataset.options)
    except ValueError:
        return None
    n_train = spec.train.train_subset or n_train  # a training subset (0: the whole split)
    per_epoch = -(-n_train // max(1, min(train.batch_size, n_train)))
    return int((train.epochs or 0) * per_epoch)


def check_tune(
    tune: TuneSection, levels: Mapping[str, list[str]], trials: Sequence[Any] = ()
) -> list[UserInputError]:
    """Problems of ``tune`` given the plan's factor -> level labels (every varied factor) and,
    when given, the plan's trials (``suites.Trial``: what each cell's optimizer takes, the
    dataset's task, the plan's size). Fields are relative to the suite (``tune.per[0]``)."""
    errors: list[UserInputError] = []
    err = lambda msg, field: errors.append(UserInputError(msg, field=field))  # noqa: E731
    varied = list(levels)
    from gradatlas.suites.spec import FACTORS

    seen: set[str] = set()
    for i, factor in enumerate(tune.per):
        if factor not in FACTORS:
            err(
                f"unknown factor {short_repr(factor)} (factors: {', '.join(FACTORS)})",
                f"tune.per[{i}]",
            )
        elif factor not in levels:
            err(
                f"{factor!r} is not a factor this suite varies, so it makes no groups (varied: "
                f"{', '.join(varied) or 'none'}); drop it from tune.per",
                f"tune.per[{i}]",
            )
        elif factor in seen:
            err(f"{factor!r} is named twice", f"tune.per[{i}]")
        elif factor in tune.params:
            err(
                f"{factor!r} is tuned (tune.params), so it cannot also group the studies",
                f"tune.per[{i}]",
            )
        seen.add(factor)

    where = tuned_where(tune, levels, errors)
    # What the tuned cells vary and which optimizers they use: known exactly from the trials;
    # from the levels alone only when every cell is tuned.
    tuned_cells = [t for t in trials if selected(t, where)]
    if tuned_cells:
        from gradatlas.record import factor_levels

        varied_there = {
            f for f, v in factor_levels(t.factors for t in tuned_cells).items() if len(v) > 1
        }
        optimizer_labels = [t.factors.get("optimizer", "") for t in tuned_cells]
    elif where is None:
        varied_there, optimizer_labels = set(levels), list(levels.get("optimizer", []))
    else:
        varied_there, optimizer_labels = set(), []
    options = optimizer_options()
    plan_optimizers = sorted({t.spec.optim.optimizer.name for t in tuned_cells})
    for name, param in tune.params.items():
        at = f"tune.params.{field_key(name)}"
        if name not in SPEC_PARAMS and name not in options:
            err(f"unknown tuned parameter {short_repr(name)} ({_hint(name)})", at)
            continue
        if name in varied_there:
            err(
                f"{name!r} is a grid factor of the tuned cells; a tuned value is chosen by the "
                f"study, so vary it in one place (drop grid.{name} or tune.params.{name})",
                at,
            )
        if name == "lr" and any("lr=" in label for label in optimizer_labels):
            err(
                "an optimizer level of the tuned cells sets its own lr, which tuning would "
                "override; set the learning rate in one place (drop that lr or tune.params.lr)",
                at,
            )
        for bound in ("low", "high"):
            problem = _range_problem(name, getattr(param, bound), options)
            if problem:
                err(problem, f"{at}.{bound}")
        if name not in SPEC_PARAMS and plan_optimizers:
            takers = [o for o in plan_optimizers if applies(name, o)]
            if not takers:
                err(
                    f"no optimizer of the tuned cells takes {name!r} (their optimizers: "
                    f"{', '.join(plan_optimizers)}; {name} is an option of: "
                    f"{', '.join(options[name])})",
                    at,
                )

    msl = tune.max_stable_lr
    if msl is not None and not msl.low < msl.high:
        err(f"low ({msl.low:g}) must be below high ({msl.high:g})", "tune.max_stable_lr.low")
    if trials:
        _check_plan(tune, trials, err)
        if where is not None and not any(selected(t, where) for t in trials):
            err("these filters select no cell of the plan, so nothing would be tuned", "tune.where")
    return errors


def tuned_where(
    tune: TuneSection, levels: Mapping[str, list[str]], errors: list[UserInputError] | None = None
) -> dict[str, list[str]] | None:
    """``tune.where`` as factor -> level labels (None: every cell is tuned); its problems are
    appended to ``errors`` with fields under ``tune.where``."""
    from gradatlas.suites.claims import filter_labels

    if not tune.where:
        return None
    problems: list[UserInputError] = []
    known = {}
    for factor, value in tune.where.items():
        if factor not in levels:
            problems.append(
                UserInputError(
                    f"{short_repr(factor)} is not a factor this suite varies (varied: "
                    f"{', '.join(levels) or 'none'}), so it cannot select the tuned cells",
                    field=field_key(factor),
                )
            )
        else:
            known[factor] = value
    labels, found = filter_labels(known, levels)
    problems += found
    if errors is not None:
        errors += [e.located(prefix="tune.where") for e in problems]
    return labels


def selected(trial: Any, where: Mapping[str, list[str]] | None) -> bool:
    """Whether ``tune.where`` (as labels) selects ``trial``'s cell for tuning."""
    return where is None or all(trial.factors.get(f) in labels for f, labels in where.items())


def _range_problem(name: str, value: float, options: dict[str, list[str]]) -> str | None:
    """Why ``value`` is not a valid ``name`` (checked by the factor's or the optimizer's own
    validation), or None."""
    try:
        if name in _RESOLVERS:
            _RESOLVERS[name](value)
        else:
            OPTIMIZERS.check_options(options[name][0], {name: value})
    except UserInputError as exc:
        return exc.message
    return None


def _check_plan(tune: TuneSection, trials: Sequence[Any], err: Any) -> None:
    from gradatlas.datasets import describe

    if tune.objective == "val_acc":
        # Every dataset of the plan (``grid.dataset`` may vary it), each named once.
        for name, options in {t.spec.dataset.name: t.spec.dataset.options for t in trials}.items():
            task, _, _ = describe(name, options)
            if task != "classification":
                err(
                    f"val_acc needs a classification dataset ({name} is {task}); use val_loss",
                    "tune.objective",
                )
                break


def _hint(name: str) -> str:
    import difflib

    allowed = tunable()
    close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.6)
    return (f"did you mean {close[0]!r}? " if close else "") + f"allowed: {', '.join(allowed)}"
