"""A suite's ``claims`` block: the metrics a claim may compare, and its validation against the plan.

A claim compares ``metric`` between group ``a`` and group ``b`` (factor -> level, or a list of
levels) among the trials that pass ``where``, matched on every other factor
(``gradatlas.reports.claims`` does the matching and the statistics). Validation here is complete
and fast (no torch, no pandas), and runs with the rest of the suite's: every factor a claim
names is varied by the plan, every level it names is one of the plan's, ``a`` and ``b`` name the
same factors with levels that tell the groups apart, ``metric`` is in ``METRICS`` and ids are
unique. Levels are written as in the grid (``20``, ``kaiming_normal``, ``0.001``) or as the
label the trials carry (``d20``, ``lr0.001``).

Besides factor levels, ``a`` and ``b`` may select seeds: the key ``seeds`` (not a factor) with
``even``, ``odd`` or a list of seed numbers. ``a: {seeds: even}, b: {seeds: odd}`` over the same
cells is an A/A control: the two groups differ by chance alone. ``split_arm`` takes an arm apart
into its factor filters and its ``SeedSelector`` (a predicate on a trial's seed).

``METRICS`` is the registry of what a claim can measure: adding one is one entry here, plus, for
a metric that is not a summary column, its computation in ``reports/claims.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gradatlas.errors import UserInputError, field_key, short_repr

OUTCOME = "outcome"  # a rate metric's ``reads``: the trial's outcome label
LOSS_CURVE = "curves.train.loss"  # loss_roughness reads the recorded training loss curve


@dataclass(frozen=True)
class Metric:
    """One quantity a claim can compare.

    ``kind`` says which test applies: ``rate`` (a yes/no per trial, the exact stratified test)
    or ``continuous`` (a number per trial, paired differences). ``reads`` is the trial column
    (a summary metric), ``outcome`` for rates (``outcomes`` lists the labels that count as a
    yes), or the record field it is computed from. ``log10``: compared on a log scale (ratios,
    learning rates), so the effect is a log10 ratio. ``unit`` labels the effect in the report.
    """

    name: str
    kind: Literal["rate", "continuous"]
    reads: str
    description: str
    unit: str
    outcomes: tuple[str, ...] = ()
    log10: bool = False


def _rate(name: str, outcomes: tuple[str, ...], description: str) -> Metric:
    return Metric(name, "rate", OUTCOME, description, "rate difference", outcomes)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        _rate("converged_rate", ("converged",), "share of trials labelled converged"),
        _rate("vanished_rate", ("vanished",), "share of trials labelled vanished"),
        _rate("exploded_rate", ("exploded",), "share of trials labelled exploded"),
        _rate("stalled_rate", ("stalled",), "share of trials labelled stalled"),
        _rate("dead_rate", ("dead",), "share of trials labelled dead (their units died)"),
        _rate(
            "diverged_rate",
            ("diverged",),
            "share of trials labelled diverged (finite, but the loss ended above its start)",
        ),
        _rate(
            "trainable_rate",
            ("converged", "unconverged"),
            "share of trials that trained (converged or unconverged: neither stalled, vanished, "
            "dead, diverged nor exploded)",
        ),
        Metric("test_acc", "continuous", "test_acc", "accuracy on the test split", "accuracy"),
        Metric("test_loss", "continuous", "test_loss", "loss on the test split", "loss"),
        Metric(
            "final_train_loss",
            "continuous",
            "final_train_loss",
            "training loss at the end",
            "loss",
        ),
        Metric(
            "steps_to_target",
            "continuous",
            "steps_to_target",
            "optimizer steps until the target was reached; a trial that never reached it (any "
            "outcome but converged) counts as one step more than the longest run among the "
            "claim's trials: a restricted mean, where never getting there is slowest",
            "steps",
        ),
        Metric(
            "generalization_gap",
            "continuous",
            "generalization_gap",
            "final training accuracy minus test accuracy",
            "accuracy",
        ),
        Metric(
            "init_grad_ratio",
            "continuous",
            "init_grad_ratio",
            "first-layer over last-layer gradient norm at initialization, compared as log10",
            "log10 ratio",
            log10=True,
        ),
        Metric(
            "loss_roughness",
            "continuous",
            LOSS_CURVE,
            "median absolute second difference of log training loss along the recorded curve "
            "(0 for a smooth geometric decay; large for a jagged one)",
            "log loss",
        ),
        Metric(
            "max_stable_lr",
            "continuous",
            "max_stable_lr",
            "largest learning rate that did not explode (bracketed per cell), compared as log10",
            "log10 lr",
            log10=True,
        ),
        Metric(
            "update_cv",
            "continuous",
            "update_cv",
            "coefficient of variation (std / mean) of the per-step update norm "
            "||theta_{t+1} - theta_t|| over the run: how much the step the optimizer applied "
            "varies (0: a constant step size)",
            "CV",
        ),
        Metric(
            "max_grad_norm",
            "continuous",
            "max_grad_norm",
            "largest raw (pre-clip) global gradient norm seen in training, compared as log10",
            "log10 norm",
            log10=True,
        ),
    ]
}


def metric(name: str) -> Metric:
    """The metric of this name; ``UserInputError`` naming the known ones otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise UserInputError(
            f"unknown metric {short_repr(name)} (metrics: {', '.join(METRICS)})"
        ) from None


# -- seeds in an arm ------------------------------------------------------------------------------
SEEDS = "seeds"  # the arm key that selects seeds (not a factor)
SEED_WORDS = ("even", "odd")
SEEDS_ALLOWED = "even, odd, or a list of non-negative seed numbers such as [0, 1, 2]"


@dataclass(frozen=True)
class SeedSelector:
    """Which seeds an arm's ``seeds`` selects: ``kind`` ``even``, ``odd`` or ``list`` (then
    ``listed`` holds them). Called on a seed it says whether the seed is selected; a value that
    is no whole number (a missing seed, ``pd.NA``) is not."""

    kind: Literal["even", "odd", "list"]
    listed: frozenset[int] = frozenset()

    def __call__(self, seed: Any) -> bool:
        try:
            n = int(seed)
        except (TypeError, ValueError):
            return False
        if n != seed:  # 2.5
            return False
        if self.kind == "list":
            return n in self.listed
        return n % 2 == (0 if self.kind == "even" else 1)

    def overlaps(self, other: SeedSelector) -> bool:
        """Whether some seed is selected by both."""
        if self.kind == "list" and other.kind == "list":
            return bool(self.listed & other.listed)
        if self.kind == "list":
            return any(other(s) for s in self.listed)
        if other.kind == "list":
            return any(self(s) for s in other.listed)
        return self.kind == other.kind

    def select(self, seeds: Sequence[int]) -> list[int]:
        """The seeds of ``seeds`` this selects, in their order."""
        return [s for s in seeds if self(s)]

    @property
    def text(self) -> str:
        """``even``, ``odd`` or ``0, 2, 5`` (as a report names the group: ``seeds = even``)."""
        return self.kind if self.kind != "list" else ", ".join(map(str, sorted(self.listed)))


def seed_problems(value: Any) -> list[UserInputError]:
    """What is wrong with an arm's ``seeds`` value (fields relative to it: ``""`` or ``[j]``)."""
    if isinstance(value, str):
        if value in SEED_WORDS:
            return []
        return [UserInputError(f"unknown seed selection {short_repr(value)}: use {SEEDS_ALLOWED}")]
    if not isinstance(value, list):
        return [
            UserInputError(
                f"seeds must be {SEEDS_ALLOWED}; got {short_repr(value)} ({type(value).__name__})"
            )
        ]
    if not value:
        return [UserInputError(f"an empty list selects no seed: use {SEEDS_ALLOWED}")]
    return [
        UserInputError(
            f"seed {short_repr(s)} is not a non-negative whole number (seeds: {SEEDS_ALLOWED})",
            field=f"[{j}]",
        )
        for j, s in enumerate(value)
        if isinstance(s, bool) or not isinstance(s, int) or s < 0
    ]


def seed_filter(value: Any) -> SeedSelector:
    """The selector an arm's ``seeds: even | odd | [0, 3, ...]`` means; a ``SeedSelector`` is a
    ``Callable[[int], bool]``. ``UserInputError`` (field ``seeds`` or ``seeds[j]``) naming the
    allowed values for anything else."""
    problems = seed_problems(value)
    if problems:
        raise problems[0].located(prefix=SEEDS)
    if isinstance(value, str):
        return SeedSelector(value)  # type: ignore[arg-type]
    return SeedSelector("list", frozenset(int(s) for s in value))


def split_arm(block: Mapping[str, Any] | None) -> tuple[dict[str, Any], SeedSelector | None]:
    """An arm (``a``, ``b``) taken apart: its factor filters (for ``filter_labels``), and its
    ``SeedSelector`` (None: every seed). A trial is in the arm when its factor levels pass the
    filters and ``selector(trial seed)`` holds, e.g. with pandas::

        factors, selector = split_arm(claim["a"])
        labels, errors = filter_labels(factors, exp.levels, in_plan=False)
        mask = factor_mask(labels) & (True if selector is None else t["seed"].map(selector))

    ``UserInputError`` (field ``seeds`` or ``seeds[j]``) for a bad ``seeds`` value."""
    factors = {k: v for k, v in (block or {}).items() if k != SEEDS}
    if block is None or SEEDS not in block:
        return factors, None
    return factors, seed_filter(block[SEEDS])


# -- levels as the trials label them -------------------------------------------------------------
def level_label(factor: str, written: Any) -> str:
    """The label the trials carry for one level written as in the grid (``20`` -> ``d20``,
    ``0.001`` for lr -> ``lr0.001``); ``UserInputError`` when it is no level of the factor."""
    from gradatlas.suites.spec import FACTORS

    spec = FACTORS[factor]
    return spec.label(spec.resolve(written))


def filter_labels(
    filters: Mapping[str, Any], levels: Mapping[str, Sequence[str]], *, in_plan: bool = True
) -> tuple[dict[str, list[str]], list[UserInputError]]:
    """A claim's ``a``, ``b`` or ``where`` as factor -> level labels, and the problems found
    (fields relative to the block: ``init``, ``depth[1]``). A written string that is one of
    ``levels`` is taken as that label; anything else is resolved and labelled. ``in_plan``:
    a label that is not in ``levels`` is a problem (the report, which says itself what has no
    trial, turns this off). A factor with a problem is left out of the result."""
    out: dict[str, list[str]] = {}
    errors: list[UserInputError] = []
    for factor, written in filters.items():
        key = field_key(factor)
        if factor not in levels:
            errors.append(UserInputError(_unknown_factor(factor, levels), field=key))
            continue
        allowed = list(levels[factor])
        values = written if isinstance(written, list) else [written]
        labels: list[str] = []
        before = len(errors)
        for j, value in enumerate(values):
            at = f"{key}[{j}]" if isinstance(written, list) else key
            if isinstance(value, str) and value in allowed:
                labels.append(value)
                continue
            try:
                label = level_label(factor, value)
            except UserInputError as exc:
                errors.append(UserInputError(f"{exc.message}; {_levels_text(allowed)}", field=at))
                continue
            if in_plan and label not in allowed:
                shown = short_repr(value) + ("" if label == value else f" (label {label!r})")
                errors.append(
                    UserInputError(f"level {shown} is not one of {_levels_text(allowed)}", field=at)
                )
                continue
            labels.append(label)
        if not values:
            errors.append(UserInputError("an empty list of levels selects no trial", field=key))
        if len(errors) == before:
            out[factor] = list(dict.fromkeys(labels))
    return out, errors


def _levels_text(allowed: Sequence[str]) -> str:
    return f"the plan's levels: {', '.join(allowed)}"


def _unknown_factor(factor: Any, levels: Mapping[str, Sequence[str]]) -> str:
    from gradatlas.suites.spec import FACTORS

    varied = ", ".join(levels) or "none"
    if factor in FACTORS:
        return (
            f"{factor} is not varied by this suite's plan, so no claim can compare its levels "
            f"(varied factors: {varied})"
        )
    return f"unknown factor {short_repr(factor)} (varied factors: {varied})"


# -- the check the suite's validation runs -------------------------------------------------------
def _get(claim: Any, name: str, default: Any = None) -> Any:
    """A field of a ``ClaimSection`` or of its dumped dict (reports read the dumped form)."""
    if isinstance(claim, Mapping):
        return claim.get(name, default)
    return getattr(claim, name, default)


def check_claims(
    claims: Sequence[Any],
    levels: Mapping[str, list[str]],
    seeds: Sequence[int] | None = None,
) -> list[UserInputError]:
    """Problems of ``claims`` (``ClaimSection``s or their dicts) given the plan's factor ->
    level labels (every varied factor) and, when known, its ``seeds`` (then a seed selection
    that names a seed the plan lacks, or selects none of its seeds, is a problem too). Fields
    are ``claims[i].a.init``, ``claims[i].a.seeds`` and the like."""
    errors: list[UserInputError] = []
    seen: dict[str, int] = {}
    for i, claim in enumerate(claims):
        at = f"claims[{i}]"
        cid = str(_get(claim, "id", ""))
        if cid in seen:
            errors.append(
                UserInputError(
                    f"repeats the id of claims[{seen[cid]}] ({cid!r}): each claim needs its own",
                    field=f"{at}.id",
                )
            )
        seen.setdefault(cid, i)
        name = _get(claim, "metric", "")
        known = METRICS.get(name) if isinstance(name, str) else None
        if known is None:
            errors.append(
                UserInputError(
                    f"unknown metric {short_repr(name)} (metrics: {', '.join(METRICS)})",
                    field=f"{at}.metric",
                )
            )
        margin = _get(claim, "margin")
        if known is not None and known.kind == "rate" and margin is not None and margin >= 1:
            errors.append(
                UserInputError(
                    f"{name} is a rate: its margin is a difference of rates (0.1 = 10 "
                    f"percentage points) and must be below 1, got {margin!r}",
                    field=f"{at}.margin",
                )
            )
        groups = {}
        selectors: dict[str, SeedSelector | None] = {}
        for block in ("a", "b", "where"):
            filters = dict(_get(claim, block) or {})
            if SEEDS in filters:
                value = filters.pop(SEEDS)
                if block == "where":
                    errors.append(
                        UserInputError(
                            "seeds selects the seeds of a and b (a: {seeds: even}, b: {seeds: "
                            "odd} is an A/A control); where filters factor levels only, so name "
                            "seeds in both a and b instead",
                            field=f"{at}.where.{SEEDS}",
                        )
                    )
                else:
                    found = seed_problems(value)
                    if not found and seeds is not None:
                        found = _seeds_in_plan(seed_filter(value), value, seeds)
                    errors += [e.located(prefix=f"{at}.{block}.{SEEDS}") for e in found]
                    selectors[block] = None if found else seed_filter(value)
            labels, problems = filter_labels(filters, levels)
            errors += [e.located(prefix=f"{at}.{block}") for e in problems]
            groups[block] = labels
        errors += _check_groups(
            at, _get(claim, "a") or {}, _get(claim, "b") or {}, groups, selectors
        )
        errors += _check_shape(at, claim, levels, groups)
        for factor in groups["where"]:
            if factor in groups["a"] or factor in groups["b"]:
                errors.append(
                    UserInputError(
                        f"{factor} is compared in a and b, so it cannot also filter the trials "
                        "(drop it from where)",
                        field=f"{at}.where.{field_key(factor)}",
                    )
                )
    return errors


def _check_shape(
    at: str, claim: Any, levels: Mapping[str, list[str]], groups: dict[str, dict[str, list[str]]]
) -> list[UserInputError]:
    """An interaction's ``by`` (one varied factor, two levels of the plan's) and a curve's
    ``over`` (a varied factor with numeric levels, three or more): neither may be a factor the
    claim already names in ``a``, ``b`` or ``where``."""
    errors: list[UserInputError] = []
    named = set(groups["a"]) | set(groups["b"]) | set(groups["where"])
    by = _get(claim, "by") or {}
    if by:
        labels, problems = filter_labels(dict(by), levels)
        errors += [e.located(prefix=f"{at}.by") for e in problems]
        for factor, values in labels.items():
            if factor in named:
                errors.append(
                    UserInputError(
                        f"{factor} is already named in a, b or where; by needs another factor",
                        field=f"{at}.by.{field_key(factor)}",
                    )
                )
            elif len(values) != 2:
                errors.append(
                    UserInputError(
                        "by needs two different levels (the effect at the first minus the "
                        f"effect at the second), got {', '.join(values)}",
                        field=f"{at}.by.{field_key(factor)}",
                    )
                )
    over = _get(claim, "over")
    if over is not None:
        if over not in levels:
            errors.append(UserInputError(_unknown_factor(over, levels), field=f"{at}.over"))
        elif over in named or over in by:
            errors.append(
                UserInputError(
                    f"{over} is already named in a, b, where or by; over needs another factor",
                    field=f"{at}.over",
                )
            )
        elif len([x for x in map(level_number, levels[over]) if x is not None and x > 0]) < 3:
            errors.append(
                UserInputError(
                    f"over needs a factor with three or more positive numeric levels (a curve "
                    f"over a log scale); {over} has {', '.join(levels[over])}",
                    field=f"{at}.over",
                )
            )
    return errors


_NUMBER_AT_END = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?$")


def level_number(label: str) -> float | None:
    """The number a numeric level's label ends in (``lr0.001`` -> 0.001, ``d20`` -> 20); None
    for a label that names no number (``relu``, ``adam(lr=...)``)."""
    found = _NUMBER_AT_END.search(str(label))
    return float(found.group(0)) if found else None


def _seeds_in_plan(
    selector: SeedSelector, value: Any, seeds: Sequence[int]
) -> list[UserInputError]:
    """A seed selection against the plan's seeds: every listed seed is one, and some is chosen."""
    plan = ", ".join(map(str, seeds))
    if selector.kind == "list":
        return [
            UserInputError(f"seed {s} is not one of the plan's seeds ({plan})", field=f"[{j}]")
            for j, s in enumerate(value)
            if s not in seeds
        ]
    if not selector.select(seeds):
        return [UserInputError(f"none of the plan's seeds ({plan}) is {selector.kind}")]
    return []


def _check_groups(
    at: str,
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    groups: dict[str, dict[str, list[str]]],
    selectors: Mapping[str, SeedSelector | None] | None = None,
) -> list[UserInputError]:
    """``a`` and ``b`` name the same factors (and both select seeds, or neither), and some
    factor's levels, or their seeds, tell them apart."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        parts = [f"a names {', '.join(only_a)}" if only_a else ""]
        parts.append(f"b names {', '.join(only_b)}" if only_b else "")
        return [
            UserInputError(
                f"a and b must name the same factors ({'; '.join(p for p in parts if p)} and "
                "the other does not): the groups differ only in those factors, matched on the "
                "rest",
                field=f"{at}.b",
            )
        ]
    ga, gb = groups["a"], groups["b"]
    factors = [f for f in a if f != SEEDS]
    if set(ga) != set(factors) or set(gb) != set(factors):
        return []  # a level or factor is already reported; overlap cannot be judged
    sa, sb = (selectors or {}).get("a"), (selectors or {}).get("b")
    if SEEDS in a and (sa is None or sb is None):
        return []  # a bad seed selection is already reported
    if all(set(ga[f]) & set(gb[f]) for f in ga) and (sa is None or sa.overlaps(sb)):  # type: ignore[arg-type]
        shared = [f"{f} = {', '.join(sorted(set(ga[f]) & set(gb[f])))}" for f in ga]
        if sa is not None and sb is not None:
            shared.append(f"seeds {sa.text} and {sb.text}")
        return [
            UserInputError(
                "a and b select the same trials (they share "
                f"{'; '.join(shared)}): give b levels that a does not have in at least one "
                "factor, or seeds that a does not select",
                field=f"{at}.b",
            )
        ]
    return []
