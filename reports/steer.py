"""What the user asked the report to show: ``gradatlas report --by --facet --where --cell --limit``.

``Steering`` is the request as given; ``steer_experiment`` checks it against the experiment (an
unknown factor, level or cell is a ``UserInputError`` naming the flag, the value and what is
allowed, raised before anything is written) and returns the experiment restricted to the trials
asked for. Everything else the request changes (heatmap axes, curve colours, panels, named cells)
is decided once, in ``context.make_context``, from the same ``Steering``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from gradatlas.errors import UserInputError
from gradatlas.reports.fmt import join_and
from gradatlas.reports.load import Experiment

MAX_NAMED_CELLS = 12  # small multiples beyond this are unreadable
CELLS_LISTED = 8  # cells quoted in an error about an unknown one


@dataclass(frozen=True)
class Steering:
    """The report's steering flags, as given (``where`` as (factor, level) pairs: levels of one
    factor are alternatives, different factors must all match)."""

    by: str | None = None
    facet: str | None = None
    where: tuple[tuple[str, str], ...] = ()
    cells: tuple[str, ...] = ()
    limit: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.by or self.facet or self.where or self.cells or self.limit)

    @property
    def filters(self) -> bool:
        """Whether the report shows only part of the experiment."""
        return bool(self.where or self.limit)

    def where_levels(self) -> dict[str, set[str]]:
        """factor -> the levels ``--where`` admits."""
        out: dict[str, set[str]] = {}
        for factor, level in self.where:
            out.setdefault(factor, set()).add(level)
        return out

    def command_line(self) -> str:
        """The flags as they would be typed (what the report prints as its steering)."""
        parts = []
        if self.by:
            parts.append(f"--by {self.by}")
        if self.facet:
            parts.append(f"--facet {self.facet}")
        parts += [f"--where {f}={lv}" for f, lv in self.where]
        parts += [f"--cell {c}" for c in self.cells]
        if self.limit:
            parts.append(f"--limit {self.limit}")
        return " ".join(parts)


def parse_where(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``["depth=d20", "init=normal(std=1)"]`` -> pairs; split at the first ``=`` (level labels
    may hold one)."""
    pairs = []
    for item in items:
        factor, sep, level = item.partition("=")
        if not sep or not factor.strip() or not level.strip():
            raise UserInputError(f"--where {item!r}: expected FACTOR=LEVEL, e.g. depth=d20")
        pairs.append((factor.strip(), level.strip()))
    return tuple(pairs)


def _hint(value: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_factor(flag: str, name: str, exp: Experiment) -> None:
    if name not in exp.factors:
        allowed = ", ".join(exp.factors) or "none (a single cell)"
        raise UserInputError(
            f"{flag} {name}: experiment {exp.name!r} has no factor {name!r} "
            f"(factors: {allowed}){_hint(name, exp.factors)}"
        )


def steer_experiment(exp: Experiment, steering: Steering) -> tuple[Experiment, list[str]]:
    """The experiment restricted to what ``steering`` selects, and the cell ids it names.

    Checks every flag against the experiment first; an unknown factor, level or cell, a
    ``--by``/``--facet`` factor with one level left, or a selection with no trial is a
    ``UserInputError`` (exit 2, nothing written).
    """
    for flag, name in (("--by", steering.by), ("--facet", steering.facet)):
        if name:
            _check_factor(flag, name, exp)
    if steering.by and steering.by == steering.facet:
        raise UserInputError(
            f"--facet {steering.facet}: the same factor as --by; facet by another one"
        )
    for factor, level in steering.where:
        _check_factor("--where", factor, exp)
        levels = exp.levels[factor]
        if level not in levels:
            raise UserInputError(
                f"--where {factor}={level}: {factor} has no level {level!r} in experiment "
                f"{exp.name!r} (levels: {', '.join(levels)}){_hint(level, levels)}"
            )
    if steering.limit is not None and steering.limit < 1:
        raise UserInputError(f"--limit {steering.limit}: expected a positive number of cells")
    out = _select(exp, steering.where_levels())
    for flag, name in (("--by", steering.by), ("--facet", steering.facet)):
        if name and len(out.levels[name]) < 2:
            others = [f for f in out.factors if len(out.levels[f]) >= 2]
            raise UserInputError(
                f"{flag} {name}: {name} has one level ({', '.join(out.levels[name])}) in the "
                "trials selected, so there is nothing to compare"
                + (f"; factors that vary: {', '.join(others)}" if others else "")
            )
    named = [_find_cell(out, ref) for ref in dict.fromkeys(steering.cells)]
    if len(named) > MAX_NAMED_CELLS:
        raise UserInputError(
            f"--cell: {len(named)} cells named; at most {MAX_NAMED_CELLS} fit as small multiples"
        )
    if steering.limit is not None:
        out = _spread_cells(out, steering.limit, keep=named)
    return out, named


def _select(exp: Experiment, where: dict[str, set[str]]) -> Experiment:
    if not where:
        return exp
    t = exp.trials
    mask = t["run_id"].notna()
    for factor, levels in where.items():
        mask &= t[exp.fcol(factor)].isin(levels)
    return _restrict(exp, mask)


def _restrict(exp: Experiment, mask) -> Experiment:
    trials = exp.trials[mask].reset_index(drop=True)
    if trials.empty:  # only reachable through --where combining levels of several factors
        raise UserInputError("--where: no finished trial matches every --where given")
    keep = set(trials["run_id"])
    levels = {
        f: [lv for lv in labels if lv in set(trials[exp.fcol(f)])]
        for f, labels in exp.levels.items()
    }
    records = {rid: rec for rid, rec in exp.records.items() if rid in keep}
    return replace(exp, trials=trials, records=records, levels=levels)


def _find_cell(exp: Experiment, ref: str) -> str:
    """The cell id that ``ref`` names: a cell label (``d20-sigmoid-xavier_normal``) or a cell
    id or its first characters (at least 6)."""
    cells = exp.trials.drop_duplicates("cell_id")[["cell_id", "cell"]]
    by_label = cells[cells["cell"] == ref]
    if len(by_label) == 1:
        return str(by_label["cell_id"].iat[0])
    if len(ref) >= 6:
        by_id = cells[cells["cell_id"].astype(str).str.startswith(ref)]
        if len(by_id) == 1:
            return str(by_id["cell_id"].iat[0])
    labels = [str(c) for c in cells["cell"]]
    shown = ", ".join(labels[:CELLS_LISTED])
    more = f", and {len(labels) - CELLS_LISTED} more" if len(labels) > CELLS_LISTED else ""
    why = (
        f"{len(by_label)} cells are labelled {ref!r}; name one by its cell id"
        if len(by_label) > 1
        else f"no cell {ref!r} among the trials selected (cells: {shown}{more})"
    )
    raise UserInputError(f"--cell {ref}: {why}{_hint(ref, labels)}")


def _spread_cells(exp: Experiment, n: int, keep: list[str]) -> Experiment:
    """Only ``n`` cells spread over the grid (``suites.spread``), plus any named with --cell."""
    from gradatlas.suites.spread import spread

    cells = exp.trials.drop_duplicates("cell_id")
    if n >= len(cells):
        return exp
    rows = [
        {"cell_id": r["cell_id"], "factors": {f: r[exp.fcol(f)] for f in exp.factors}}
        for r in cells.to_dict("records")
    ]
    rank = {f: {lv: i for i, lv in enumerate(exp.levels[f])} for f in exp.factors}
    rows.sort(key=lambda r: tuple(rank[f][r["factors"][f]] for f in exp.factors))  # grid order
    chosen = {r["cell_id"] for r in spread(rows, n)} | set(keep)
    return _restrict(exp, exp.trials["cell_id"].isin(chosen))


def steering_text(steering: Steering, full: Experiment, shown: Experiment) -> str:
    """One sentence for the report saying what it was steered by and what it leaves out."""
    parts = []
    if steering.where:
        by_factor = steering.where_levels()
        parts.append(
            "only trials with "
            + join_and(
                [
                    f"{f} = {' or '.join(sorted(lv, key=full.levels[f].index))}"
                    for f, lv in by_factor.items()
                ]
            )
        )
    if steering.limit:
        parts.append(f"a spread of {steering.limit} cells over the grid (`--limit`)")
    shown_cells, all_cells = shown.trials["cell_id"].nunique(), full.trials["cell_id"].nunique()
    scope = (
        f"; it shows {len(shown.trials)} of the {len(full.trials)} finished trials "
        f"({shown_cells} of {all_cells} cells)"
        if steering.filters
        else ""
    )
    return (
        f"Steered: `gradatlas report {full.name} {steering.command_line()}`"
        + (f", {join_and(parts)}" if parts else "")
        + scope
        + "."
    )
