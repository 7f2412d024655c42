"""A spread of a grid: which ``n`` trials (or cells) to take when not all of them.

``gradatlas run --limit N`` and ``gradatlas report --limit N`` take a handful of a grid to see it
quickly. The first ``N`` in grid order are all the same corner (one depth, one activation, the
first inits), which says nothing about the rest; this takes cells spread over every factor:

1. **balanced**: each pick is a cell whose levels were picked least so far (summed over the
   factors), so every level of every factor appears before any appears twice, as in a Latin
   hypercube;
2. **far apart**: among those, the one farthest from the cells already picked, by the number of
   factors where they differ (Hamming), then by the distance along each factor's level order
   (normalized to 0..1, so ``d3`` and ``d40`` are farther apart than ``d3`` and ``d6``);
3. **stable**: ties go to the earlier cell in grid order, so the same grid always gives the same
   spread.

Cells get one trial each (their first, e.g. seed 0) before any gets a second. Pure and
deterministic; nothing here knows about MLflow, torch or the runners.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def _factors_of(item: Any) -> Mapping[str, str]:
    return item["factors"] if isinstance(item, Mapping) else item.factors


def _cell_of(item: Any) -> Hashable:
    if isinstance(item, Mapping):
        return item.get("cell_id") or tuple(sorted(item["factors"].items()))
    return getattr(item, "cell_id", None) or tuple(sorted(item.factors.items()))


def spread_order(cells: Sequence[Mapping[str, str]], count: int | None = None) -> list[int]:
    """Indices of ``cells`` (each a factor -> level mapping, in grid order) in the order they
    are picked, most informative first (see the module docstring): the first ``count`` of them
    (default: every cell)."""
    count = len(cells) if count is None else max(0, min(count, len(cells)))
    if not cells:
        return []
    factors = list(dict.fromkeys(f for c in cells for f in c))
    if not factors:
        return list(range(count))
    levels = [list(dict.fromkeys(c.get(f, "") for c in cells)) for f in factors]
    index = np.array(
        [[levels[j].index(c.get(f, "")) for j, f in enumerate(factors)] for c in cells],
        dtype=np.int64,
    )
    scale = np.array([max(len(lv) - 1, 1) for lv in levels], dtype=float)
    position = index / scale  # 0..1 along each factor's level order
    used = [np.zeros(len(lv), dtype=np.int64) for lv in levels]
    nearest_hamming = np.full(len(cells), len(factors) + 1, dtype=np.int64)
    nearest_ordinal = np.full(len(cells), float(len(factors) + 1))
    free = np.ones(len(cells), dtype=bool)
    order: list[int] = []
    for _ in range(count):
        usage = sum(used[j][index[:, j]] for j in range(len(factors)))
        # Lexicographic (least used, farthest by Hamming, farthest by level order, earliest):
        # the keys are combined into one sortable tuple per cell by np.lexsort (last key first).
        keys = (
            np.arange(len(cells)),
            -nearest_ordinal,
            -nearest_hamming,
            np.where(free, usage, np.iinfo(np.int64).max),
        )
        pick = int(np.lexsort(keys)[0])
        order.append(pick)
        free[pick] = False
        for j in range(len(factors)):
            used[j][index[pick, j]] += 1
        nearest_hamming = np.minimum(nearest_hamming, (index != index[pick]).sum(axis=1))
        nearest_ordinal = np.minimum(nearest_ordinal, np.abs(position - position[pick]).sum(axis=1))
    return order


def spread(
    trials: Sequence[T],
    n: int,
    *,
    factors: Callable[[T], Mapping[str, str]] = _factors_of,
    cell: Callable[[T], Hashable] = _cell_of,
) -> list[T]:
    """``n`` of ``trials`` spread over the grid, in their original (grid) order.

    ``trials`` are in grid order; by default each has ``factors`` (factor -> level label) and
    ``cell_id`` as attributes (``gradatlas.suites.Trial``) or keys (a dict). Trials of one cell
    are taken in the order given (seed 0 first), one per cell per round: with ``n`` at least the
    number of cells every cell is covered. ``n`` of zero or less gives none; more than there are
    gives them all.
    """
    if n <= 0:
        return []
    if n >= len(trials):
        return list(trials)
    by_cell: dict[Hashable, list[int]] = {}
    for i, t in enumerate(trials):
        by_cell.setdefault(cell(t), []).append(i)
    members = list(by_cell.values())
    # Only a second round (more trials than cells) needs the order of every cell.
    order = spread_order([factors(trials[m[0]]) for m in members], min(n, len(members)))
    if n > len(members):
        order = spread_order([factors(trials[m[0]]) for m in members])
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for c in order:
            if depth < len(members[c]):
                chosen.append(members[c][depth])
                if len(chosen) == n:
                    break
        depth += 1
    return [trials[i] for i in sorted(chosen)]
