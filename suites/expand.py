"""Load a suite file, validate all of it, and expand it into resolved trials.

Validation runs once, here, and is complete: the schema, every setting and grid level (types,
ranges, registry names and options), every combination (model x dataset, norm x family), the
plan's size against ``limits``, and the cells that would collapse into one trial. All problems
are collected in one pass and reported together as ``file: field.path: message``; nothing runs
and nothing is written before it passes. Expansion is a pure function of the suite: the same
file gives the same trials with the same ids anywhere. No torch is imported.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gradatlas.errors import SuiteErrors, UserInputError, field_key, short_repr
from gradatlas.record import factor_levels
from gradatlas.suites.levels import check_loss
from gradatlas.suites.schema import Budget, SuiteSpec, loc_to_path
from gradatlas.suites.spec import (
    FACTORS,
    DatasetDefaults,
    DatasetSpec,
    InstrumentSpec,
    ModelSpec,
    Named,
    OutcomeThresholds,
    TrialSpec,
    resolve_trial,
)

BUILTIN_DIR = Path(__file__).resolve().parent
BUDGET_FIELDS = tuple(Budget.model_fields)


@dataclass(frozen=True)
class Trial:
    """One trial: its resolved spec is its identity (``trial_id``); everything else here is
    derived from it or from the suite, for display and grouping."""

    spec: TrialSpec
    factors: dict[str, str]  # factor name -> level label, for the factors this suite varies
    cell: str  # readable cell label, e.g. "d20-sigmoid-xavier_normal"
    suite: str

    @cached_property
    def config(self) -> dict[str, Any]:
        """The canonical nested dict of the spec (what MLflow records and workers receive)."""
        return self.spec.to_config()

    @property
    def trial_id(self) -> str:
        return self.spec.trial_id

    @property
    def cell_id(self) -> str:
        return self.spec.cell_id

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def run_name(self) -> str:
        return f"{self.cell}-s{self.seed}" if self.cell else f"s{self.seed}"


@dataclass(frozen=True)
class Suite:
    spec: SuiteSpec
    source: str  # path as the user gave it, or "builtin:<name>"
    text: str  # the YAML as read, archived with every sweep
    trials: tuple[Trial, ...]
    overrides: tuple[str, ...] = ()  # --set / --seeds, as given; archived with the sweep

    @property
    def name(self) -> str:
        return self.spec.name


# -- locating and reading ------------------------------------------------------------------------
def builtin_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}


def find_suite(ref: str) -> Path:
    """A path, or the name of a built-in suite (``quickstart``)."""
    path = Path(ref)
    if path.is_file():
        return path
    builtins = builtin_suites()
    if ref in builtins:
        return builtins[ref]
    if path.suffix in (".yaml", ".yml") and path.stem in builtins and not path.parent.exists():
        return builtins[path.stem]
    if path.exists():
        raise UserInputError("not a file (a suite is a YAML file)", source=ref)
    raise UserInputError(
        f"no such suite file (built-in suites: {', '.join(builtins) or 'none'})", source=ref
    )


def read_yaml(path: Path) -> tuple[str, Any]:
    """(text, data) of a suite file, through the hardened reader (bounded size, depth and alias
    expansion; no tags; duplicate keys are errors)."""
    from gradatlas.suites.yamlsafe import read_suite_yaml

    return read_suite_yaml(path)


def load_suite(ref: str, overrides: Sequence[str] = ()) -> Suite:
    """Read, apply ``--set`` overrides, validate and expand; raises ``UserInputError`` /
    ``SuiteErrors`` naming the file (and the override) of every problem."""
    from gradatlas.suites.overrides import apply_overrides

    path = find_suite(ref)
    source = str(path)
    text, data = read_yaml(path)
    data = apply_overrides(data, overrides, source)
    return expand_suite(data, source=source, text=text, overrides=tuple(overrides))


def expand_suite(
    data: Any, *, source: str, text: str = "", overrides: tuple[str, ...] = ()
) -> Suite:
    """Validate a suite given as data and expand it (see the module docstring)."""
    if not isinstance(data, dict):
        raise UserInputError("a suite must be a YAML mapping with at least 'name'", source=source)
    errors: list[UserInputError] = []
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        errors += _pydantic_errors(exc)
        # Check what can still be checked, so one pass reports every problem.
        spec = SuiteSpec.model_construct(
            **{k: v for k, v in data.items() if k in ("model", "train", "grid") and _ok(k, v)}
        )
        _Expander(spec, errors, partial=True).run()
        raise SuiteErrors([e.located(source=source) for e in _dedupe(errors)]) from None
    trials = _Expander(spec, errors).run()
    if errors:
        raise SuiteErrors([e.located(source=source) for e in _dedupe(errors)])
    return Suite(spec, source, text, tuple(trials), overrides)


def _block(origin: str) -> str:
    """The block a cell's origin names: ``grid``, ``grids[2]``, ``include`` or ``the suite``."""
    block = origin.split(".", 1)[0]
    return "include" if block.startswith("include[") else block


def _ok(key: str, value: Any) -> bool:
    if key == "grid":
        return isinstance(value, dict) and all(isinstance(v, list) for v in value.values())
    return isinstance(value, dict)


def _pydantic_errors(exc: ValidationError) -> list[UserInputError]:
    out = []
    for err in exc.errors():
        path = loc_to_path(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = path.rsplit(".", 1)[0] if "." in path else "top level"
            msg = f"unknown field (not allowed in {parent})"
        elif "input" in err and not isinstance(err["input"], dict | list):
            msg = f"{msg} (got {short_repr(err['input'])})"
        out.append(UserInputError(msg, field=path or None))
    return out


def _dedupe(errors: list[UserInputError]) -> list[UserInputError]:
    """One problem per field is enough to fix it (a bad level is also a bad cell)."""
    seen: dict[str | None, UserInputError] = {}
    for e in errors:
        seen.setdefault(e.field, e)
    return list(seen.values())


# -- expansion -----------------------------------------------------------------------------------
class _Expander:
    """One pass over a validated ``SuiteSpec``: settings, levels, plan size, cells, trials.

    Every problem is appended to ``errors`` (fields relative to the suite) and the pass goes on
    where it still can; ``partial`` marks a spec whose top-level shape already failed, so only
    the per-field checks run.
    """

    def __init__(self, spec: SuiteSpec, errors: list[UserInputError], partial: bool = False):
        self.spec, self.errors, self.partial = spec, errors, partial
        self._described: dict[Any, tuple[tuple[int, ...], int, int]] = {}

    def error(self, message: str, field: str | None) -> None:
        self.errors.append(UserInputError(message, field=field))

    def run(self) -> list[Trial]:
        spec = self.spec
        fixed, family, family_options, budget = self._fixed_settings()
        levels = self._grid_levels(self.spec.grid or {}, "grid")
        sub_levels = [
            self._grid_levels(grid, f"grids[{i}]") for i, grid in enumerate(self.spec.grids)
        ]
        self._check_lr_sources(fixed)
        if self.partial:
            return []
        dataset = self._dataset(fixed)
        if self.errors:
            return []
        if not self._plan_fits([levels, *sub_levels]):
            return []
        cells = self._cells(levels) + self._sub_grid_cells(sub_levels)
        if self.errors:
            return []
        if not cells:
            self.error(
                "these rules exclude every cell of the grid, so the suite has no trial",
                "exclude",
            )
            return []
        instrument = InstrumentSpec(**spec.instrument.model_dump())
        outcomes = OutcomeThresholds(**spec.outcomes.model_dump())
        trials: list[Trial] = []
        first_origin: dict[str, str] = {}
        seeds = spec.seed_list()
        # Every trial is labelled on every factor the plan varies anywhere (a factor its own
        # grid does not name shows its fixed setting), so cells of different sub-grids compare.
        varied = list(dict.fromkeys(name for cell, _ in cells for name in cell))
        for cell, origin in cells:
            base = resolve_trial(
                {**fixed, **cell},
                family=family,
                family_options=family_options,
                budget=budget,
                dataset=dataset,
                instrument=instrument,
                outcomes=outcomes,
                seed=seeds[0],
            )
            if not self._check_cell(base, origin):
                continue
            where = ", ".join(origin.values()) or "the suite"
            if base.cell_id in first_origin:
                # Sub-grids and includes may share cells (a common baseline): run them once.
                # Within one grid, two levels that give one trial are a mistake.
                first = first_origin[base.cell_id]
                if first != where and _block(first) == _block(where) and _block(where) != "include":
                    self.error(
                        f"gives the same trials as {first_origin[base.cell_id]}: a level that "
                        "changes nothing in the resolved config (remove one of them)",
                        next(iter(origin.values()), None),
                    )
                continue  # an include may repeat a grid cell: run it once
            first_origin[base.cell_id] = where
            factor_labels = {n: FACTORS[n].label(cell.get(n, fixed[n])) for n in varied}
            label = "-".join(factor_labels.values())
            for seed in seeds:
                trial_spec = base if seed == base.seed else replace(base, seed=seed)
                trials.append(Trial(trial_spec, factor_labels, label, spec.name))
        self._check_blocks(trials)
        return trials

    def _check_blocks(self, trials: list[Trial]) -> None:
        """The ``claims`` and ``tune`` blocks name factors and levels of this plan."""
        from gradatlas.suites.claims import check_claims
        from gradatlas.suites.tune import check_tune

        plan_levels = factor_levels(t.factors for t in trials)
        self.errors += check_claims(self.spec.claims, plan_levels, self.spec.seed_list())
        if self.spec.tune is not None:
            self.errors += check_tune(self.spec.tune, plan_levels, trials)

    # -- the fixed blocks --------------------------------------------------------------------
    def _fixed_settings(self) -> tuple[dict[str, Any], str, dict[str, Any], dict[str, Any]]:
        """Every factor's fixed value (the suite's setting, else the factor's default), the
        model family and its own options, and the training budget."""
        model_errors: list[UserInputError] = []
        fixed, family, family_options = fixed_model_settings(self.spec.model or {}, model_errors)
        self.errors += [e.located(prefix="model") for e in model_errors]
        train = dict(self.spec.train or {})
        for name, factor in FACTORS.items():
            if factor.section == "train":
                raw = train.pop(name, _UNSET)
                fixed[name] = _resolve_setting(factor, raw, self.errors, "train.")
        budget_raw = {k: train.pop(k) for k in list(train) if k in BUDGET_FIELDS}
        for key in train:
            allowed = [*BUDGET_FIELDS, *(f for f, x in FACTORS.items() if x.section == "train")]
            self.error(
                f"unknown field (not allowed in train; {_hint(key, allowed)})",
                f"train.{field_key(key)}",
            )
        budget: dict[str, Any] = Budget().model_dump()
        try:
            budget = Budget.model_validate(budget_raw).model_dump()
        except ValidationError as exc:
            self.errors += [e.located(prefix="train") for e in _pydantic_errors(exc)]
        steps = budget.get("steps") or budget.get("epochs") or 0
        limit = self.spec.limits.max_steps
        if not self.partial and steps > limit:
            key = "steps" if budget.get("steps") else "epochs"
            self.error(
                f"{steps} exceeds limits.max_steps = {limit} (raise it in the suite's limits "
                "block if you mean it)",
                f"train.{key}",
            )
        return fixed, family, family_options, budget

    def _resolve(self, resolve: Any, level: Any, field: str) -> Any:
        try:
            return resolve(level)
        except UserInputError as exc:
            self.errors.append(exc.located(prefix=field))
            return None

    def _check_lr_sources(self, fixed: dict[str, Any]) -> None:
        """An lr factor and an optimizer level with its own lr would silently override each
        other (the level's lr wins): the learning rate must be set in one place."""
        if "lr" not in (self.spec.grid or {}):
            return
        opt = fixed.get("optimizer")
        if opt is not None and "lr" in opt.options and "optimizer" not in self.spec.grid:
            self.error(
                "this optimizer sets its own lr, which would override grid.lr; set the "
                "learning rate in one place (drop grid.lr or this lr)",
                "train.optimizer.lr",
            )
        for i, level in enumerate(self.spec.grid.get("optimizer", [])):
            if isinstance(level, dict) and "lr" in level:
                self.error(
                    "this level sets its own lr, which would override grid.lr; set the learning "
                    "rate in one place (drop grid.lr or this level's lr)",
                    f"grid.optimizer[{i}].lr",
                )

    # -- the grid ----------------------------------------------------------------------------
    def _grid_levels(self, grid: dict[str, list[Any]], where: str) -> dict[str, list[Any]]:
        """Each factor of one grid block (``grid`` or ``grids[i]``) -> its resolved levels."""
        levels: dict[str, list[Any]] = {}
        for name, raw_levels in grid.items():
            if name not in FACTORS:
                self.error(
                    f"unknown factor {short_repr(name)} (factors: {', '.join(FACTORS)})",
                    f"{where}.{field_key(name)}",
                )
                continue
            factor = FACTORS[name]
            resolved, seen = [], {}
            for i, level in enumerate(raw_levels):
                before = len(self.errors)
                value = self._resolve(factor.resolve, level, f"{where}.{name}[{i}]")
                if len(self.errors) > before:
                    continue
                label = factor.label(value)
                if label in seen:
                    self.error(
                        f"repeats {where}.{name}[{seen[label]}] ({label}): each level once",
                        f"{where}.{name}[{i}]",
                    )
                    continue
                seen[label] = i
                resolved.append(value)
            levels[name] = resolved
        return levels

    def _plan_fits(self, grids: list[dict[str, list[Any]]]) -> bool:
        """The plan's size from the level counts alone, before anything is expanded (a
        ``seeds: 10**9`` or a 10^7-cell grid must be refused in microseconds, not built)."""
        # An empty ``grid`` is one cell (every factor fixed) unless sub-grids replace it.
        main, subs = grids[0], grids[1:]
        cells = (math.prod(len(v) for v in main.values()) if main or not subs else 0) + sum(
            math.prod(len(v) for v in g.values()) for g in subs
        )
        cells += len(self.spec.include)
        trials = cells * self.spec.seed_count
        limit = self.spec.limits.max_trials
        if trials > limit:
            self.error(
                f"the plan has {cells:,} cells x {self.spec.seed_count:,} seeds = {trials:,} "
                f"trials (before exclude rules), above limits.max_trials = {limit:,}; shrink the "
                "grid or seeds, or raise limits.max_trials in the suite if you mean it",
                "seeds" if self.spec.seed_count > cells else "grid",
            )
            return False
        return True

    def _sub_grid_cells(
        self, grids: list[dict[str, list[Any]]]
    ) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """The full cross of each of ``grids`` (no exclude rules: a sub-grid is written to be
        run whole); factors a sub-grid does not name keep their fixed setting."""
        cells = []
        for g, levels in enumerate(grids):
            names = list(levels)
            for combo in itertools.product(*(range(len(levels[n])) for n in names)):
                cell = {n: levels[n][i] for n, i in zip(names, combo, strict=True)}
                origin = {n: f"grids[{g}].{n}[{i}]" for n, i in zip(names, combo, strict=True)}
                cells.append((cell, origin))
        return cells

    def _cells(self, levels: dict[str, list[Any]]) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """The full cross of the grid, minus excluded cells, plus included ones. Each cell keeps
        where each of its levels was written, so a combination error can point at it. With
        sub-grids (``grids``) and an empty ``grid``, the grid adds no cell of its own."""
        names = list(levels)
        rules = [self._exclude_rule(i, rule, levels) for i, rule in enumerate(self.spec.exclude)]
        if self.errors:
            return []
        cells = []
        crossed = itertools.product(*(range(len(levels[n])) for n in names))
        for combo in crossed if levels or not self.spec.grids else ():
            if any(rule and all(combo[names.index(f)] in hit for f, hit in rule.items())
                   for rule in rules):  # fmt: skip
                continue
            cell = {n: levels[n][i] for n, i in zip(names, combo, strict=True)}
            origin = {n: f"grid.{n}[{i}]" for n, i in zip(names, combo, strict=True)}
            cells.append((cell, origin))
        for i, rule in enumerate(self.spec.include):
            extra = self._include(i, rule, levels)
            if extra is not None:
                origin = {n: f"include[{i}].{n}" if n in rule else f"grid.{n}[0]" for n in extra}
                cells.append((extra, origin))
        return cells

    def _exclude_rule(
        self, i: int, rule: dict[str, Any], levels: dict[str, list[Any]]
    ) -> dict[str, set[int]]:
        """factor -> indices of the levels the rule's value matches (by name, label or value)."""
        hits: dict[str, set[int]] = {}
        for factor, value in rule.items():
            if factor not in levels:
                self.error(
                    f"{short_repr(factor)} is not a factor of this grid (grid factors: "
                    f"{', '.join(levels) or 'none'})",
                    f"exclude[{i}].{field_key(factor)}",
                )
                continue
            matched = {j for j, lv in enumerate(levels[factor]) if _matches(value, factor, lv)}
            if not matched:
                labels = ", ".join(FACTORS[factor].label(lv) for lv in levels[factor])
                self.error(
                    f"{short_repr(value)} matches no level of grid.{factor} (levels: {labels})",
                    f"exclude[{i}].{factor}",
                )
            hits[factor] = matched
        return hits

    def _include(self, i: int, rule: dict[str, Any], levels: dict[str, list[Any]]) -> dict | None:
        """An include entry adds one cell; factors it does not name take the grid's first level."""
        cell = {n: lv[0] for n, lv in levels.items()}
        for factor, value in rule.items():
            if factor not in FACTORS:
                self.error(
                    f"unknown factor {short_repr(factor)} (factors: {', '.join(FACTORS)})",
                    f"include[{i}].{field_key(factor)}",
                )
                return None
            before = len(self.errors)
            resolved = self._resolve(FACTORS[factor].resolve, value, f"include[{i}].{factor}")
            if len(self.errors) > before:
                return None
            cell[factor] = resolved
        return cell

    # -- one cell against its dataset and the limits -----------------------------------------
    def _dataset(self, fixed: dict[str, Any]) -> DatasetDefaults:
        """The suite's ``dataset`` section, checked: what every level of the ``dataset`` factor
        is completed from (the data seed; the options, for the section's own dataset), and the
        factor's fixed value (the section's dataset) where the plan does not vary it."""
        from gradatlas.datasets import DATASETS

        ds = self.spec.dataset
        fixed["dataset"] = Named(ds.name, {})
        try:
            options = DATASETS.check_options(ds.name, ds.options)
        except UserInputError as exc:
            prefix = "dataset.name" if ds.name not in DATASETS else "dataset.options"
            self.errors.append(exc.located(prefix=prefix))
            return DatasetDefaults(ds.name, 0, {})
        # ``default`` stays a word here: each level resolves it to its own dataset's default
        # seed, so the trial config (the identity) holds the number that was used.
        return DatasetDefaults(ds.name, ds.seed, options)

    def _describe(self, ds: DatasetSpec) -> tuple[tuple[int, ...], int, int]:
        """(input shape, outputs, training examples) of one cell's dataset, from its
        registration alone; the plan's few datasets are described once."""
        from gradatlas.datasets import describe, split_sizes

        key = (ds.name, tuple(sorted((k, repr(v)) for k, v in ds.options.items())))
        if key not in self._described:
            _, shape, outputs = describe(ds.name, ds.options)
            self._described[key] = (shape, outputs, split_sizes(ds.name, ds.options)[0])
        return self._described[key]

    def _check_cell(self, trial: TrialSpec, origin: dict[str, str]) -> bool:
        """Model x dataset, norm x family, the training subset against the training split, and
        the size limits, each against the cell's own dataset and located at the level that
        caused the problem (or the fixed setting when no grid level did)."""
        from gradatlas.models import check_family_norm, check_model_input, estimate_parameters

        model, limits = trial.model, self.spec.limits
        where = {f: origin.get(f, f"model.{f}") for f in ("depth", "width", "norm", "family")}
        shape, outputs, n_train = self._describe(trial.dataset)
        problems: list[UserInputError] = []
        problems += check_loss(trial, origin)  # loss x dataset task, x label smoothing
        try:
            check_model_input(model, shape)
        except UserInputError as exc:
            blame = origin.get("dataset", "model.family")
            problems.append(UserInputError(exc.message, field=blame))
        subset = trial.train.train_subset
        if subset > n_train:
            problems.append(
                UserInputError(
                    f"train_subset {subset:,} exceeds the {n_train:,} training examples of "
                    f"{trial.dataset.name} (0 trains on all of them)",
                    field=origin.get("train_subset", "train.train_subset"),
                )
            )
        try:
            check_family_norm(model.family, model.norm.name)
        except UserInputError as exc:
            problems.append(UserInputError(exc.message, field=where["norm"]))
        if model.depth > limits.max_depth:
            problems.append(
                UserInputError(
                    f"depth {model.depth:,} exceeds limits.max_depth = {limits.max_depth:,} "
                    "(raise it in the suite's limits block if you mean it)",
                    field=where["depth"],
                )
            )
        elif not problems:
            params = estimate_parameters(model, shape, outputs)
            if params > limits.max_parameters:
                blame = (
                    where["width"] if "width" in origin or "depth" not in origin else where["depth"]
                )
                problems.append(
                    UserInputError(
                        f"depth {model.depth:,} x width {model.width:,} makes about {params:,} "
                        f"parameters, above limits.max_parameters = {limits.max_parameters:,} "
                        "(raise it in the suite's limits block if you mean it)",
                        field=blame,
                    )
                )
        self.errors += problems
        return not problems


_UNSET = object()


def _resolve_setting(factor: Any, raw: Any, errors: list[UserInputError], prefix: str) -> Any:
    """A fixed setting (``model.depth``, ``train.lr``) through its factor's resolver; an absent
    one takes the factor's default. Null is a value like any other (``grad_clip: null`` is
    "off"), except for a factor whose default is None (``lr``: "unset", so the optimizer's own
    default_lr applies when the trial is resolved)."""
    raw = factor.default if raw is _UNSET else raw
    if raw is None and factor.default is None:
        return None
    try:
        return factor.resolve(raw)
    except UserInputError as exc:
        errors.append(exc.located(prefix=f"{prefix}{factor.name}"))
        return None


def fixed_model_settings(
    block: Any, errors: list[UserInputError]
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A suite's ``model`` block -> (model factor values, family, the family's own options).
    Error fields are relative to the block (``depth``, ``init.std``)."""
    from gradatlas.models import DEFAULT_FAMILY, MODELS

    model = dict(block) if isinstance(block, dict) else {}
    fixed = {
        name: _resolve_setting(factor, model.pop(name, _UNSET), errors, "")
        for name, factor in FACTORS.items()
        if factor.section == "model"
    }
    family = model.pop("family", DEFAULT_FAMILY)
    try:
        MODELS.check_name(family)
    except UserInputError as exc:
        errors.append(exc.located(prefix="family"))
        return fixed, DEFAULT_FAMILY, {}
    try:
        family_options = MODELS.check_options(family, model)
    except UserInputError as exc:
        if exc.message.startswith("unknown option"):
            allowed = ["family", *(f for f, x in FACTORS.items() if x.section == "model")]
            allowed += list(MODELS.options(family))
            exc = UserInputError(
                f"unknown field (not allowed in model for family {family!r}; "
                f"{_hint(exc.field or '', allowed)})",
                field=exc.field,
            )
        errors.append(exc)
        family_options = {}
    return fixed, family, family_options


def resolve_model(block: dict[str, Any]) -> ModelSpec:
    """A model block as a suite writes it -> the resolved ``ModelSpec``, by the same resolvers
    validation uses (for scripts, notebooks and tests). Raises ``SuiteErrors`` with fields
    relative to the block; the norm is checked against the family."""
    from gradatlas.models import check_family_norm

    errors: list[UserInputError] = []
    fixed, family, options = fixed_model_settings(block, errors)
    if not errors:
        try:
            check_family_norm(family, fixed["norm"].name)
        except UserInputError as exc:
            errors.append(exc.located(prefix="norm"))
    if errors:
        errors = _dedupe(errors)
        raise errors[0] if len(errors) == 1 else SuiteErrors(errors)
    return ModelSpec(family=family, options=options, **fixed)


def _hint(key: Any, allowed: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    return (f"did you mean {close[0]!r}? " if close else "") + f"allowed: {', '.join(allowed)}"


def _matches(rule_value: Any, factor: str, resolved_level: Any) -> bool:
    """An exclude rule's value matches a level by name, by label, or by equal value."""
    candidates = rule_value if isinstance(rule_value, list) else [rule_value]
    label = FACTORS[factor].label(resolved_level)
    for cand in candidates:
        if isinstance(cand, str) and cand == label:
            return True
        if isinstance(cand, str) and getattr(resolved_level, "name", None) == cand:
            return True
        try:
            if FACTORS[factor].resolve(cand) == resolved_level:
                return True
        except UserInputError:
            continue
    return False
