"""The report as format-neutral blocks: what to say, not how it looks.

``sections`` builds the content once; ``html`` and ``pdf`` render the same blocks, which is how
the HTML and the PDF stay the same report. Charts are kept as drawing functions (not images) so
each renderer draws them natively: inline SVG in the HTML, vector pages in the PDF.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure as MplFigure


@dataclass
class Heading:
    text: str
    level: int = 3


@dataclass
class Para:
    """A paragraph. Spans in `backticks` are code. ``note`` marks a skipped part and its why."""

    text: str
    note: bool = False


@dataclass
class KeyValues:
    items: list[tuple[str, str]]


@dataclass
class Cell:
    """A table cell; ``attrs`` become ``data-*`` attributes in the HTML (so tests can read the
    exact numbers behind the text), ``tint`` an RGBA background both renderers draw."""

    text: str
    attrs: dict[str, Any] = field(default_factory=dict)
    tint: tuple[float, float, float, float] | None = None
    muted: bool = False  # set in grey: a zero that should not compete with the non-zeros


@dataclass
class Column:
    title: str
    align: str = "left"  # "left" or "right"
    weight: float = 1.0  # relative width in the PDF


@dataclass
class Table:
    columns: list[Column]
    rows: list[list[Cell]]
    caption: str = ""
    name: str = ""  # HTML id / data-table, for tests and deep links
    row_attrs: list[dict[str, Any]] = field(default_factory=list)  # data-* per row


@dataclass
class Figure:
    """A chart: ``draw`` fills a matplotlib figure of ``size`` inches (constrained layout)."""

    name: str
    draw: Callable[[MplFigure], None]
    size: tuple[float, float]
    caption: str = ""


@dataclass
class Pre:
    """Verbatim text (rules, YAML, commands): shown exactly, in a monospace font."""

    text: str


Block = Heading | Para | KeyValues | Table | Figure | Pre


@dataclass
class NumberedSection:
    """A section as the document holds it: its blocks, under the number its place in
    ``sections.SECTIONS`` gave it (no section knows its own number)."""

    number: int
    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"s{self.number}"

    @property
    def heading(self) -> str:
        """ "N. Title", as the contents, the HTML and the PDF all show it."""
        return f"{self.number}. {self.title}"


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[NumberedSection]
    footer: str = ""
