"""Load a suite file, validate all of it, and expand it into trials.

Validation collects every problem it can find and reports them together, each as
``file: field.path: message``; nothing runs and nothing is written before it passes. Expansion is
a pure function of the suite: the same file gives the same trials with the same ids anywhere.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gradatlas.errors import SuiteErrors, UserInputError
from gradatlas.identity import cell_id, trial_id
from gradatlas.suites.factors import FACTORS, resolve_lr
from gradatlas.suites.schema import SuiteSpec, loc_to_path

BUILTIN_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Trial:
    """One trial: its resolved config is its identity (``trial_id``); everything else here is
    derived from it or from the suite, for display and grouping."""

    config: dict[str, Any]
    factors: dict[str, str]  # factor name -> level label, for the factors this suite varies
    cell: str  # readable cell label, e.g. "d20-sigmoid-xavier_normal"
    suite: str
    trial_id: str = field(init=False)
    cell_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trial_id", trial_id(self.config))
        object.__setattr__(self, "cell_id", cell_id(self.config))

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def run_name(self) -> str:
        return f"{self.cell}-s{self.seed}" if self.cell else f"s{self.seed}"


@dataclass(frozen=True)
class Suite:
    spec: SuiteSpec
    source: str  # path as the user gave it, or "builtin:<name>"
    text: str  # the YAML as read, archived with every sweep
    trials: tuple[Trial, ...]

    @property
    def name(self) -> str:
        return self.spec.name


# -- locating and reading ------------------------------------------------------------------------
def builtin_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}


def find_suite(ref: str) -> Path:
    """A path, or the name of a built-in suite (``quickstart``)."""
    path = Path(ref)
    if path.exists():
        return path
    builtins = builtin_suites()
    if ref in builtins:
        return builtins[ref]
    if path.suffix in (".yaml", ".yml") and path.stem in builtins and not path.parent.exists():
        return builtins[path.stem]
    raise UserInputError(
        f"no such suite file (built-in suites: {', '.join(builtins) or 'none'})", source=ref
    )


def read_yaml(path: Path) -> tuple[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        return text, yaml.safe_load(text)  # safe loader: a suite can never execute code
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserInputError(f"not valid YAML: {problem}", source=str(path), field=where) from None


def load_suite(ref: str) -> Suite:
    """Read, validate and expand; raises ``UserInputError``/``SuiteErrors`` naming the file."""
    path = find_suite(ref)
    source = str(path)
    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserInputError("a suite must be a YAML mapping with at least 'name'", source=source)
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        errors = _pydantic_errors(exc, source)
        # Report bad grid levels in the same pass, so one edit fixes everything.
        grid = data.get("grid")
        if isinstance(grid, dict) and all(isinstance(v, list) for v in grid.values()):
            level_errors: list[UserInputError] = []
            _resolve_levels(SuiteSpec.model_construct(grid=grid), level_errors)
            errors += [e.located(source=source) for e in level_errors]
        raise SuiteErrors(_dedupe(errors)) from None
    errors: list[UserInputError] = []
    trials = _expand(spec, errors)
    if errors:
        raise SuiteErrors([e.located(source=source) for e in _dedupe(errors)])
    return Suite(spec=spec, source=source, text=text, trials=tuple(trials))


def _pydantic_errors(exc: ValidationError, source: str) -> list[UserInputError]:
    out = []
    for err in exc.errors():
        path = loc_to_path(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = path.rsplit(".", 1)[0] if "." in path else "top level"
            msg = f"unknown field (not allowed in {parent})"
        elif "input" in err and not isinstance(err["input"], dict | list):
            msg = f"{msg} (got {err['input']!r})"
        out.append(UserInputError(msg, source=source, field=path or None))
    return _dedupe(out)


def _dedupe(errors: list[UserInputError]) -> list[UserInputError]:
    seen: dict[str | None, UserInputError] = {}
    for e in errors:
        seen.setdefault(e.field, e)
    return list(seen.values())


# -- expansion -----------------------------------------------------------------------------------
def _resolve_levels(spec: SuiteSpec, errors: list[UserInputError]) -> dict[str, list[Any]]:
    levels: dict[str, list[Any]] = {}
    for name, raw_levels in spec.grid.items():
        if name not in FACTORS:
            errors.append(
                UserInputError(
                    f"unknown factor {name!r} (factors: {', '.join(FACTORS)})", field=f"grid.{name}"
                )
            )
            continue
        resolved = []
        for i, level in enumerate(raw_levels):
            try:
                resolved.append(FACTORS[name].resolve(level))
            except UserInputError as exc:
                errors.append(exc.located(prefix=f"grid.{name}[{i}]"))
        levels[name] = resolved
    return levels


def _matches(rule_value: Any, factor: str, resolved_level: Any) -> bool:
    """An exclude rule's value matches a level by name, by label, or by equal value."""
    candidates = rule_value if isinstance(rule_value, list) else [rule_value]
    label = FACTORS[factor].label(resolved_level)
    for cand in candidates:
        if cand == resolved_level or str(cand) == label:
            return True
        if isinstance(resolved_level, dict) and cand == resolved_level.get("name"):
            return True
        try:
            if FACTORS[factor].resolve(cand) == resolved_level:
                return True
        except UserInputError:
            continue
    return False


def _expand(spec: SuiteSpec, errors: list[UserInputError]) -> list[Trial]:
    base_model, base_train = _base_sections(spec, errors)
    levels = _resolve_levels(spec, errors)
    _check_lr_conflict(spec, errors)
    dataset_options = _dataset_options(spec, errors)
    if errors:
        return []

    # The full cross of the grid, minus excluded cells, plus included ones. Each cell keeps
    # where each of its levels was written, so a combination error can point at it.
    cells: list[tuple[dict[str, Any], dict[str, str]]] = []  # (factor -> level, factor -> path)
    names = list(levels)
    for combo in itertools.product(*(range(len(levels[n])) for n in names)):
        cell = {n: levels[n][i] for n, i in zip(names, combo, strict=True)}
        origin = {n: f"grid.{n}[{i}]" for n, i in zip(names, combo, strict=True)}
        cells.append((cell, origin))
    cells = [c for c in cells if not _excluded(spec, levels, c[0], errors)]
    for i, rule in enumerate(spec.include):
        extra = _resolve_include(spec, levels, rule, i, errors)
        if extra is not None:
            origin = {n: f"include[{i}].{n}" if n in rule else f"grid.{n}[0]" for n in extra}
            cells.append((extra, origin))
    if errors:
        return []

    trials: list[Trial] = []
    seen: set[str] = set()
    for cell, origin in cells:
        config = _cell_config(spec, base_model, base_train, dataset_options, cell, origin, errors)
        if config is None:
            continue
        factors = {n: FACTORS[n].label(v) for n, v in cell.items()}
        label = "-".join(factors.values())
        for seed in spec.seed_list():
            trial = Trial({**config, "seed": seed}, factors, label, spec.name)
            if trial.trial_id not in seen:  # an include may repeat a grid cell: run it once
                seen.add(trial.trial_id)
                trials.append(trial)
    return trials


def _excluded(
    spec: SuiteSpec, levels: dict[str, list[Any]], cell: dict[str, Any], errors: list
) -> bool:
    for i, rule in enumerate(spec.exclude):
        ok = True
        for factor, value in rule.items():
            if factor not in levels:
                errors.append(
                    UserInputError(
                        f"{factor!r} is not a factor of this grid (grid factors: "
                        f"{', '.join(levels) or 'none'})",
                        field=f"exclude[{i}].{factor}",
                    )
                )
                return False
            if not any(_matches(value, factor, lv) for lv in levels[factor]):
                labels = ", ".join(FACTORS[factor].label(lv) for lv in levels[factor])
                errors.append(
                    UserInputError(
                        f"{value!r} matches no level of grid.{factor} (levels: {labels})",
                        field=f"exclude[{i}].{factor}",
                    )
                )
                return False
            ok = ok and _matches(value, factor, cell[factor])
        if ok and rule:
            return True
    return False


def _resolve_include(
    spec: SuiteSpec, levels: dict[str, list[Any]], rule: dict[str, Any], i: int, errors: list
) -> dict[str, Any] | None:
    """An include entry adds one cell; factors it does not name take the grid's first level."""
    cell = {n: lv[0] for n, lv in levels.items()}
    for factor, value in rule.items():
        if factor not in FACTORS:
            errors.append(
                UserInputError(
                    f"unknown factor {factor!r} (factors: {', '.join(FACTORS)})",
                    field=f"include[{i}].{factor}",
                )
            )
            return None
        try:
            cell[factor] = FACTORS[factor].resolve(value)
        except UserInputError as exc:
            errors.append(exc.located(prefix=f"include[{i}].{factor}"))
            return None
    return cell


def _base_sections(spec: SuiteSpec, errors: list) -> tuple[dict[str, Any], dict[str, Any]]:
    """The suite's fixed model and train settings, resolved like grid levels."""
    model = dict(spec.model)
    model.setdefault("family", "mlp")
    train = spec.train.model_dump()
    for name in ("optimizer", "weight_decay", "grad_clip", "schedule"):
        try:
            train[name] = FACTORS[name].resolve(train[name])
        except UserInputError as exc:
            errors.append(exc.located(prefix=f"train.{name}"))
    return model, train


def _check_lr_conflict(spec: SuiteSpec, errors: list) -> None:
    """An lr factor and an optimizer level with its own lr would silently override each other."""
    if "lr" not in spec.grid:
        return
    for i, level in enumerate(spec.grid.get("optimizer", [])):
        if isinstance(level, dict) and "lr" in level:
            errors.append(
                UserInputError(
                    "this level sets its own lr, which would override grid.lr; set the learning "
                    "rate in one place (drop grid.lr or this level's lr)",
                    field=f"grid.optimizer[{i}].lr",
                )
            )


def _dataset_options(spec: SuiteSpec, errors: list) -> dict[str, Any]:
    """The dataset's options resolved once (defaults filled in, as the trial id needs them)."""
    from gradatlas.datasets import DATASETS

    try:
        return DATASETS.check_options(spec.dataset.name, spec.dataset.options)
    except UserInputError as exc:
        prefix = "dataset.name" if exc.field is None else "dataset.options"
        errors.append(exc.located(prefix=prefix))
        return {}


def _cell_config(
    spec: SuiteSpec,
    base_model: dict[str, Any],
    base_train: dict[str, Any],
    dataset_options: dict[str, Any],
    cell: dict[str, Any],
    origin: dict[str, str],
    errors: list,
) -> dict[str, Any] | None:
    """Merge one cell's levels over the fixed sections and resolve the whole trial config.
    A combination that cannot be built is reported at the grid level that caused it."""
    from gradatlas.models import check_model_config

    model = {**base_model, **{k: v for k, v in cell.items() if FACTORS[k].section == "model"}}
    train = {**base_train, **{k: v for k, v in cell.items() if FACTORS[k].section == "train"}}
    try:
        model = check_model_config(model)
    except UserInputError as exc:
        top = (exc.field or "").split(".")[0].split("[")[0]
        if top in origin:
            prefix = origin[top]
            rest = (exc.field or "")[len(top) :].lstrip(".")
            located = UserInputError(exc.message, field=f"{prefix}.{rest}" if rest else prefix)
        else:
            located = exc.located(prefix="model")
        errors.append(located)
        return None

    optimizer = train["optimizer"]
    optim = {
        **{k: v for k, v in optimizer.items() if k != "lr"},
        "lr": resolve_lr(optimizer, cell.get("lr"), spec.train.lr),
        "weight_decay": train["weight_decay"]["value"],
        "wd_mode": train["weight_decay"]["mode"],
    }
    return {
        "dataset": {
            "name": spec.dataset.name,
            "seed": spec.dataset.seed,
            "options": dataset_options,
        },
        "model": model,
        "optim": optim,
        "train": {
            "epochs": train["epochs"],
            "steps": train["steps"],
            "batch_size": train["batch_size"],
            "schedule": train["schedule"],
            "precision": train["precision"],
            "eval_every": train["eval_every"],
            "grad_clip": train["grad_clip"],
        },
        "instrument": spec.instrument.model_dump(),
        "outcomes": spec.outcomes.model_dump(),
    }
