"""How numbers read in the report: one place, so tables, captions and both formats agree."""

from __future__ import annotations

import math
from typing import Any

from matplotlib.colors import to_rgb

from gradatlas.reports.document import Cell
from gradatlas.reports.stats import wilson


def pct(x: float) -> str:
    """A rate as a percentage that never rounds a non-zero rate to "0%" or a shortfall to 100%."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0%"
    if x == 1:
        return "100%"
    v = 100 * x
    if v < 0.1:
        return "<0.1%"
    if v < 1 or v > 99:
        text = f"{v:.1f}%"
        return "99.9%" if text == "100.0%" else text
    return f"{v:.0f}%"


def num(x: Any, digits: int = 3) -> str:
    """A general number: significant digits, no trailing noise; "–" when missing."""
    if x is None:
        return "–"
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(x):
        return "–"
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.{digits}g}"


def interval(lo: float, hi: float, scale: float = 100.0, digits: int = 0) -> str:
    """ "[lo–hi]" in the same units as the value it follows (percent points by default)."""
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    a, b = lo * scale, hi * scale
    if digits == 0 and scale == 100.0:
        return f"[{_pp(a)}–{_pp(b)}]"
    return f"[{a:.{digits}f}–{b:.{digits}f}]"


def _pp(v: float) -> str:
    return f"{v:.1f}" if 0 < v < 1 or 99 < v < 100 else f"{v:.0f}"


def rate_cell(k: int, n: int, outcome: str, colour: str) -> Cell:
    """A rate with its Wilson 95% interval, tinted by the rate; exact k and n as attributes."""
    if n == 0:
        return Cell("–", {"outcome": outcome, "k": 0, "n": 0})
    lo, hi = wilson(k, n)
    rate = k / n
    tint = (*to_rgb(colour), 0.10 + 0.55 * rate) if k else None
    return Cell(
        f"{pct(rate)} {interval(float(lo), float(hi))}",
        {"outcome": outcome, "k": k, "n": n, "rate": f"{rate:.6g}"},
        tint,
        muted=k == 0,
    )


def plural(n: int, word: str, many: str | None = None) -> str:
    """ "1 trial", "2 trials"."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def join_and(items: list[str]) -> str:
    """ "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
