"""Document -> a paginated A4 PDF, drawn entirely with matplotlib.

Building the PDF with matplotlib (rather than printing the HTML with a browser) needs nothing
beyond the report's own dependencies, keeps charts as vector graphics, and keeps text as real
text (TrueType, extractable). Text flows top to bottom on a page; charts are drawn into subfigures
placed in the flow, so a page holds text and charts together and a chart is never rasterized.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from matplotlib.artist import Artist
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure as MplFigure
from matplotlib.font_manager import FontProperties, findfont, get_font
from matplotlib.patches import Rectangle

from gradatlas.reports import figures
from gradatlas.reports.document import (
    Document,
    Figure,
    Heading,
    KeyValues,
    NumberedSection,
    Para,
    Pre,
    Table,
)

PAGE_W, PAGE_H = 8.27, 11.69  # A4, inches
LEFT, RIGHT, TOP, BOTTOM = 0.62, 0.62, 0.7, 0.75
WIDTH = PAGE_W - LEFT - RIGHT
INK, MUTED, RULE, PANEL = "#1d2330", "#5b6272", "#c9ced8", "#f3f4f7"
SANS, MONO = "DejaVu Sans", "DejaVu Sans Mono"
PT = 1 / 72  # inch per point


# -- text measurement ----------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _font(family: str, bold: bool) -> Any:
    return get_font(findfont(FontProperties(family=family, weight="bold" if bold else "normal")))


@lru_cache(maxsize=4096)
def _advance(ch: str, family: str, bold: bool) -> float:
    font = _font(family, bold)
    font.set_size(100, 72)
    try:
        glyph = font.load_char(ord(ch))
    except (RuntimeError, ValueError):
        return 0.6
    return glyph.linearHoriAdvance / 65536 / 100


def text_width(text: str, size: float, family: str = SANS, bold: bool = False) -> float:
    """Width in inches of ``text`` set at ``size`` points (advance widths; no kerning)."""
    return sum(_advance(c, family, bold) for c in text) * size * PT


def wrap(text: str, width: float, size: float, family: str = SANS, bold: bool = False) -> list[str]:
    """Greedy word wrap to ``width`` inches; a word longer than a line is broken."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            cand = f"{line} {word}" if line else word
            if text_width(cand, size, family, bold) <= width:
                line = cand
                continue
            if line:
                lines.append(line)
            while text_width(word, size, family, bold) > width:
                cut = max(1, _fit(word, width, size, family, bold))
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _fit(text: str, width: float, size: float, family: str, bold: bool) -> int:
    total = 0.0
    for i, c in enumerate(text):
        total += _advance(c, family, bold) * size * PT
        if total > width:
            return i
    return len(text)


# -- text on pages -------------------------------------------------------------------------------
ASCENT = 0.80  # baseline below a line's top, in ems (DejaVu: caps and ascenders ~0.73-0.76)


@lru_cache(maxsize=64)
def _prop(family: str, bold: bool, size: float) -> FontProperties:
    return FontProperties(family=family, weight="bold" if bold else "normal", size=size)


class LayoutMemo:
    """Glyph layouts of the report's own strings, computed once per (string, font, size).

    Matplotlib's PDF backend shapes every string it draws (``_text_helpers.layout``: FreeType
    and libraqm), which was two thirds of the time of a table page; a report's tables repeat a
    few hundred distinct strings ("0/5", "0% [0–43]", level labels) tens of thousands of times
    at atlas scale. While a ``TextRun`` draws, that function is wrapped to reuse the layout of a
    string it has already shaped at that size. The PDF is byte for byte the same; where the
    function is not there (another matplotlib), strings are shaped as before.
    """

    def __init__(self) -> None:
        self.layouts: dict[tuple[Any, ...], list[Any]] = {}
        self.size = 0.0  # the size of the string being drawn (the font object has no getter)

    @contextmanager
    def active(self) -> Iterator[None]:
        try:
            from matplotlib import _text_helpers
        except ImportError:  # pragma: no cover - a matplotlib without it: shape as it does
            yield
            return
        shape = getattr(_text_helpers, "layout", None)
        if shape is None:  # pragma: no cover
            yield
            return

        def layout(string: str, font: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            key = (string, font, self.size, args, tuple(sorted(kwargs.items())))
            items = self.layouts.get(key)
            if items is None:
                items = self.layouts[key] = list(shape(string, font, *args, **kwargs))
            return iter(items)

        _text_helpers.layout = layout
        try:
            yield
        finally:
            _text_helpers.layout = shape


class TextRun(Artist):
    """Every string of a page, drawn straight through the renderer.

    The report positions its own text (it measures and wraps it), so the per-string layout that
    ``Figure.text`` does again was most of the time spent on text pages; this draws the same PDF
    text operators (so the text stays extractable) without it, reusing glyph layouts through
    ``memo`` (shared by the pages of one PDF).
    """

    def __init__(self, memo: LayoutMemo | None = None) -> None:
        super().__init__()
        self.items: list[tuple[float, float, str, float, str, bool, str, str]] = []
        self.memo = memo or LayoutMemo()
        self.set_zorder(3)

    def add(
        self, x: float, y: float, s: str, size: float, family: str, bold: bool, color: str, ha: str
    ) -> None:
        if s.strip():
            self.items.append((x, y, s, size, family, bold, color, ha))

    def draw(self, renderer: Any) -> None:
        if not self.get_visible():
            return
        dpi = self.get_figure(root=True).dpi
        with self.memo.active():
            for x, y, s, size, family, bold, color, ha in self.items:
                width = text_width(s, size, family, bold) if ha != "left" else 0.0
                x0 = x - width if ha == "right" else x - width / 2 if ha == "center" else x
                gc = renderer.new_gc()
                gc.set_foreground(color)
                self.memo.size = size
                renderer.draw_text(
                    gc,
                    x0 * dpi,
                    (PAGE_H - y - ASCENT * size * PT) * dpi,
                    s,
                    _prop(family, bold, size),
                    0.0,
                )
                gc.restore()


# -- pages ---------------------------------------------------------------------------------------
@dataclass
class _Chart:
    top: float  # inches from the page top
    height: float
    block: Figure


class Pager:
    """A cursor on the current page; ``ensure`` starts a new page when a block does not fit."""

    def __init__(self, pdf: PdfPages, title: str) -> None:
        self.pdf, self.title = pdf, title
        self.fig: MplFigure | None = None
        self.memo = LayoutMemo()  # glyph layouts, shared by every page of this PDF
        self.run = TextRun(self.memo)
        self.y = TOP
        self.page = 0
        self.charts: list[_Chart] = []

    @property
    def room(self) -> float:
        return PAGE_H - BOTTOM - self.y

    def new_page(self) -> None:
        self.flush()
        self.page += 1
        self.fig = MplFigure(figsize=(PAGE_W, PAGE_H), layout="constrained")
        self.run = TextRun(self.memo)
        self.fig.add_artist(self.run)
        self.y = TOP
        self.text(LEFT, PAGE_H - BOTTOM + 0.32, f"{self.title}", 7, color=MUTED)
        self.text(
            PAGE_W - RIGHT, PAGE_H - BOTTOM + 0.32, f"page {self.page}", 7, color=MUTED, ha="right"
        )

    def ensure(self, height: float) -> None:
        if self.fig is None or self.room < height:
            self.new_page()

    def text(
        self,
        x: float,
        y: float | None,
        s: str,
        size: float,
        *,
        bold: bool = False,
        family: str = SANS,
        color: str = INK,
        ha: str = "left",
    ) -> None:
        """Place text with its top at ``y`` inches from the page top (default: the cursor)."""
        self.run.add(x, self.y if y is None else y, s, size, family, bold, color, ha)

    def rect(self, x: float, y: float, w: float, h: float, color: Any, **kw: Any) -> None:
        assert self.fig is not None
        self.fig.patches.append(
            Rectangle(
                (x / PAGE_W, 1 - (y + h) / PAGE_H),
                w / PAGE_W,
                h / PAGE_H,
                transform=self.fig.transFigure,
                facecolor=color,
                edgecolor="none",
                **kw,
            )
        )

    def hline(self, y: float, color: str = RULE, lw: float = 0.6) -> None:
        assert self.fig is not None
        self.fig.add_artist(_line(self.fig, LEFT, PAGE_W - RIGHT, y, color, lw))

    def chart(self, block: Figure, height: float) -> None:
        self.charts.append(_Chart(self.y, height, block))
        self.y += height

    def flush(self) -> None:
        if self.fig is None:
            return
        if self.charts:
            self._draw_charts()
        self.pdf.savefig(self.fig)
        self.fig = None
        self.charts = []

    def _draw_charts(self) -> None:
        """Subfigures at the charts' places in the flow; the rows between them stay empty."""
        assert self.fig is not None
        ratios, edges = [], 0.0
        for c in self.charts:
            ratios += [max(c.top - edges, 1e-3), c.height]
            edges = c.top + c.height
        ratios.append(max(PAGE_H - edges, 1e-3))
        gs = self.fig.add_gridspec(
            len(ratios),
            3,
            height_ratios=ratios,
            hspace=0,
            wspace=0,
            width_ratios=[LEFT, WIDTH, RIGHT],
        )
        for i, c in enumerate(self.charts):
            sub = self.fig.add_subfigure(gs[2 * i + 1, 1])
            c.block.draw(sub)
        engine = self.fig.get_layout_engine()
        if engine is not None:
            engine.set(w_pad=0, h_pad=0, hspace=0.02, wspace=0.02)


def _line(fig: MplFigure, x0: float, x1: float, y: float, color: str, lw: float) -> Any:
    from matplotlib.lines import Line2D

    yy = 1 - y / PAGE_H
    return Line2D(
        [x0 / PAGE_W, x1 / PAGE_W], [yy, yy], transform=fig.transFigure, color=color, linewidth=lw
    )


# -- blocks --------------------------------------------------------------------------------------
BODY, SMALL, TABLE, CODE = 9.0, 8.0, 7.3, 7.0


def _lines(
    p: Pager,
    lines: list[str],
    size: float,
    lead: float,
    *,
    x: float = LEFT,
    family: str = SANS,
    color: str = INK,
    bold: bool = False,
    panel: str | None = None,
    bar: str | None = None,
) -> None:
    """Set lines at the cursor, continuing on new pages; optional panel/bar behind each run."""
    step = size * lead * PT
    i = 0
    while i < len(lines):
        p.ensure(step * min(2, len(lines) - i))
        n = max(1, min(len(lines) - i, int(p.room // step)))
        top = p.y
        if panel:
            p.rect(LEFT, top - 0.04, WIDTH, n * step + 0.08, panel)
        if bar:
            p.rect(LEFT, top - 0.04, 0.045, n * step + 0.08, bar)
        for line in lines[i : i + n]:
            p.text(x, None, line, size, family=family, color=color, bold=bold)
            p.y += step
        i += n
        if panel or bar:
            p.y += 0.08


def _para(p: Pager, block: Para) -> None:
    text = block.text.replace("`", "")
    if block.note:
        lines = wrap(text, WIDTH - 0.25, SMALL)
        p.y += 0.05
        _lines(p, lines, SMALL, 1.4, x=LEFT + 0.14, color="#4a3b0c", panel="#fff7e0", bar="#e0a526")
        p.y += 0.1
    else:
        _lines(p, wrap(text, WIDTH, BODY), BODY, 1.42)
        p.y += 0.1


def _keyvalues(p: Pager, block: KeyValues) -> None:
    key_w = 1.45
    for key, value in block.items:
        lines = wrap(value.replace("`", ""), WIDTH - key_w, SMALL)
        step = SMALL * 1.4 * PT
        p.ensure(step * min(len(lines), 3))
        p.text(LEFT, None, key, SMALL, bold=True, color=MUTED)
        _lines(p, lines, SMALL, 1.4, x=LEFT + key_w)
        p.y += 0.03
    p.y += 0.1


def _pre(p: Pager, block: Pre) -> None:
    limit = int(WIDTH / (text_width("M", CODE, MONO)) - 2)
    lines = []
    for raw in block.text.split("\n"):
        indent = len(raw) - len(raw.lstrip(" "))
        while len(raw) > limit:
            lines.append(raw[:limit])
            raw = " " * min(indent + 2, limit // 2) + raw[limit:]
        lines.append(raw)
    p.y += 0.06
    _lines(p, [" " + ln for ln in lines], CODE, 1.38, family=MONO, panel=PANEL)
    p.y += 0.12


_CI = re.compile(r"^(.*?)\s*(\[[^\]]*\])$")
TABLE_SIZES = (TABLE, 6.8, 6.2)  # points: the largest at which the table fits is used
CELL_PAD = 0.05  # inches of space left and right of a cell's text
CI_SCALE = 0.92  # an interval after a right-aligned value is set this much smaller
CELL_LEAD = 1.2  # line spacing inside a wrapped cell, in ems


@dataclass(frozen=True)
class Segment:
    """Text set in one piece on a line of a cell: ``ci`` is an interval's smaller grey."""

    text: str
    ci: bool = False


def _natural(t: Table) -> list[float]:
    """Per column, its widest text on one line, at 1 pt (widths grow linearly with the size)."""
    return [
        max([text_width(col.title, 1, bold=True), *(text_width(row[j].text, 1) for row in t.rows)])
        for j, col in enumerate(t.columns)
    ]


def _widest_words(t: Table) -> list[float]:
    """Per column, its widest word at 1 pt: the narrowest it can be without breaking one."""
    out = []
    for j, col in enumerate(t.columns):
        words = {w for row in t.rows for w in _words(row[j].text)}
        widths = [text_width(w, 1) for w in words]
        out.append(max(widths + [text_width(w, 1, bold=True) for w in _words(col.title)]))
    return out


def _words(text: str) -> list[str]:
    """What ``wrap`` keeps together: split at spaces and newlines only (a no-break space
    joins)."""
    return text.replace("\n", " ").split(" ")


def table_layout(t: Table) -> tuple[float, list[float]]:
    """The font size and the column widths (inches) of ``t`` on the page.

    Every cell on one line at the largest size (down to 6.2 pt) at which that fits. A table
    wider than the page even then is set at 6.2 pt and wraps, each column at least as wide as
    its widest word, the width beyond that shared out in whichever of three ways makes the
    table shortest (fewest lines over its rows): in proportion to what each column lacks of
    its one-line width times its ``weight``, as a browser lays out an automatic table; or
    after giving first the numbers' columns (right-aligned), or any columns, their one-line
    width while the page leaves room (those that lack least per unit of weight first). Text is
    never cut: only in a table too wide for its words even at 6.2 pt is a word broken across
    lines."""
    natural = _natural(t)

    def at(widths: list[float], size: float) -> list[float]:
        return [w * size + 2 * CELL_PAD for w in widths]

    for size in TABLE_SIZES:
        one_line = at(natural, size)
        total = sum(one_line)
        if total <= WIDTH:
            return size, [w * WIDTH / total for w in one_line] if total > 0.6 * WIDTH else one_line
    size = TABLE_SIZES[-1]
    lo, hi = at(_widest_words(t), size), at(natural, size)  # (only a table that wraps)
    if sum(lo) > WIDTH:
        return size, [w * WIDTH / sum(lo) for w in lo]
    weights = [max(col.weight, 1e-6) for col in t.columns]
    numbers = [j for j, col in enumerate(t.columns) if col.align == "right"]
    candidates = [
        _share(lo, hi, weights),
        _share(_first(lo, hi, weights, numbers), hi, weights),
        _share(_first(lo, hi, weights, range(len(lo))), hi, weights),
    ]

    def lines(widths: list[float]) -> int:
        return sum(
            max(
                len(cell_lines(c.text, w, size, col.align))
                for c, w, col in zip(row, widths, t.columns, strict=True)
            )
            for row in t.rows
        )

    return size, min(candidates, key=lines)


def _first(lo: list[float], hi: list[float], weights: list[float], columns: Any) -> list[float]:
    """``lo`` with ``columns`` at their ``hi`` while the page leaves room, those that lack
    least per unit of weight first."""
    widths, spare = list(lo), WIDTH - sum(lo)
    for j in sorted(columns, key=lambda j: (hi[j] - lo[j]) / weights[j]):
        if hi[j] - lo[j] <= spare:
            widths[j], spare = hi[j], spare - (hi[j] - lo[j])
    return widths


def _share(lo: list[float], hi: list[float], weights: list[float]) -> list[float]:
    """Widths from ``lo`` up to at most ``hi`` that add up to ``WIDTH`` (``sum(lo) <= WIDTH <
    sum(hi)``): the spare width goes in proportion to (hi - lo) x weight, a column that reaches
    its ``hi`` passing the rest of its share to the others."""
    widths = list(lo)
    open_ = {j for j in range(len(lo)) if hi[j] > lo[j]}
    while open_:
        spare = WIDTH - sum(widths)
        claim = {j: (hi[j] - widths[j]) * weights[j] for j in open_}
        total = sum(claim.values())
        full = {j for j in open_ if widths[j] + spare * claim[j] / total >= hi[j]}
        if not full:
            for j in open_:
                widths[j] += spare * claim[j] / total
            break
        for j in full:
            widths[j] = hi[j]
        open_ -= full
    return widths


def cell_lines(text: str, width: float, size: float, align: str = "left") -> list[list[Segment]]:
    """A cell's text as set in a column ``width`` inches wide: one line when it fits, else
    wrapped at spaces, never cut. A right-aligned "value [lo, hi]" sets its interval smaller
    and grey: beside the value when both fit, else on a line of its own."""
    room = width - 2 * CELL_PAD
    m = _CI.match(text) if align == "right" else None
    if m and m.group(1):
        value, ci = m.group(1), m.group(2)
        if text_width(f"{value} ", size) + text_width(ci, size * CI_SCALE) <= room:
            return [[Segment(value), Segment(ci, ci=True)]]
        return [[Segment(s)] for s in wrap(value, room, size)] + [
            [Segment(s, ci=True)] for s in wrap(ci, room, size * CI_SCALE)
        ]
    if text_width(text, size) <= room:
        return [[Segment(text)]]
    return [[Segment(s)] for s in wrap(text, room, size)]


def _table(p: Pager, t: Table) -> None:
    size, widths = table_layout(t)
    xs = [LEFT]
    for w in widths[:-1]:
        xs.append(xs[-1] + w)
    table_w = sum(widths)
    step = size * CELL_LEAD * PT

    def height(lines: int) -> float:
        return size * 1.75 * PT + (lines - 1) * step

    titles = [
        wrap(col.title, w - 2 * CELL_PAD, size, bold=True)
        for col, w in zip(t.columns, widths, strict=True)
    ]
    head_h = height(max(len(lines) for lines in titles))

    def header() -> None:
        p.rect(LEFT, p.y, table_w, head_h, "#e8ebf0")
        for x, w, col, lines in zip(xs, widths, t.columns, titles, strict=True):
            tx = x + w - CELL_PAD if col.align == "right" else x + CELL_PAD
            for k, line in enumerate(lines):
                p.text(tx, p.y + 0.035 + k * step, line, size, bold=True, ha=col.align)
        p.y += head_h

    if t.caption:
        cap = wrap(t.caption.replace("`", ""), WIDTH, SMALL)
        p.ensure(len(cap) * SMALL * 1.4 * PT + head_h + 2 * height(1))
        _lines(p, cap, SMALL, 1.4, color=MUTED)
        p.y += 0.04
    p.ensure(head_h + 2 * height(1))
    header()
    for i, row in enumerate(t.rows):
        cells = [
            cell_lines(cell.text, w, size, col.align)
            for cell, w, col in zip(row, widths, t.columns, strict=True)
        ]
        row_h = height(max(len(lines) for lines in cells))
        if p.room < row_h:
            p.new_page()
            header()
        if i % 2:
            p.rect(LEFT, p.y, table_w, row_h, "#f7f8fa")
        for x, w, col, cell, lines in zip(xs, widths, t.columns, row, cells, strict=True):
            if cell.tint:
                p.rect(x, p.y, w, row_h, cell.tint)
            for k, line in enumerate(lines):
                _cell_line(p, x, w, p.y + 0.035 + k * step, size, col.align, line, cell.muted)
        p.y += row_h
    p.hline(p.y, RULE)
    p.y += 0.16


def _cell_line(
    p: Pager,
    x: float,
    w: float,
    y: float,
    size: float,
    align: str,
    line: list[Segment],
    muted: bool = False,
) -> None:
    """One line of a cell; right-aligned segments are set from the right edge leftwards."""
    ink = "#9aa0ab" if muted else INK
    grey = "#b4b9c2" if muted else MUTED
    if align != "right":
        p.text(x + CELL_PAD, y, " ".join(s.text for s in line), size, color=ink)
        return
    right = x + w - CELL_PAD
    for seg in reversed(line):
        seg_size = size * CI_SCALE if seg.ci else size
        p.text(right, y, seg.text, seg_size, color=grey if seg.ci else ink, ha="right")
        right -= text_width(f"{seg.text} ", seg_size)


def _figure(p: Pager, block: Figure, number: int) -> None:
    caption = wrap(f"Figure {number}. {block.caption}".replace("`", ""), WIDTH, SMALL)
    cap_h = len(caption) * SMALL * 1.4 * PT
    usable = PAGE_H - TOP - BOTTOM
    extra = cap_h + 0.25
    # A chart taller than a page is shrunk to one page with its caption (a chart capped any
    # higher would not fit a fresh page either, and ``ensure`` would leave that page blank).
    height = min(block.size[1], usable - extra)
    if p.fig is not None and p.room < height + extra:
        # Squeeze a tall chart a little rather than leave a heading alone above white space.
        if p.room - extra >= max(0.8 * height, 3.0):
            height = p.room - extra
        else:
            p.new_page()
    p.ensure(height + extra)
    p.y += 0.05
    p.chart(block, height)
    p.y += 0.05
    _lines(p, caption, SMALL, 1.4, color=MUTED)
    p.y += 0.15


def _min_height(block: Any) -> float:
    """The least of a block that must follow a heading on the same page (keep-with-next)."""
    if isinstance(block, Figure):
        return 0.8 * min(block.size[1], PAGE_H - TOP - BOTTOM - 1.2) + 0.4
    if isinstance(block, Table):
        return 0.9
    return 0.5


def _section(p: Pager, s: NumberedSection, counter: list[int]) -> None:
    # A section title never ends a page, nor sits (with its opening lines) above white space
    # left by a chart that did not fit: keep it with the leading paragraphs and the next block.
    keep = 0.75
    for block in s.blocks:
        keep += _min_height(block)
        if not isinstance(block, Para):
            break
    p.ensure(keep)
    if p.y > TOP + 0.01:
        p.y += 0.18
    p.text(LEFT, None, s.heading, 14, bold=True)
    p.y += 0.3
    p.hline(p.y, INK, 1.0)
    p.y += 0.14
    for block in s.blocks:
        if isinstance(block, Heading):
            p.ensure(0.9)
            p.text(LEFT, None, block.text, 10.5, bold=True)
            p.y += 0.25
        elif isinstance(block, Para):
            _para(p, block)
        elif isinstance(block, KeyValues):
            _keyvalues(p, block)
        elif isinstance(block, Table):
            _table(p, block)
        elif isinstance(block, Pre):
            _pre(p, block)
        elif isinstance(block, Figure):
            counter[0] += 1
            _figure(p, block, counter[0])


def render_pdf(doc: Document, path: Path) -> None:
    """Write the report as an A4 PDF to ``path``."""
    with (
        figures.style(),
        PdfPages(
            path, metadata={"Title": doc.title, "Creator": "gradatlas", "CreationDate": None}
        ) as pdf,
    ):
        p = Pager(pdf, doc.title)
        p.new_page()
        p.text(LEFT, None, doc.title, 18, bold=True)
        p.y += 0.38
        _lines(p, wrap(doc.subtitle, WIDTH, SMALL), SMALL, 1.4, color=MUTED)
        p.y += 0.1
        counter = [0]
        for s in doc.sections:
            _section(p, s, counter)
        if doc.footer:  # in the last page's bottom margin if the page is full: no orphan page
            p.y = min(p.y + 0.2, PAGE_H - BOTTOM + 0.05)
            for line in wrap(doc.footer, WIDTH, 7):
                p.text(LEFT, None, line, 7, color=MUTED)
                p.y += 7 * 1.4 * PT
        p.flush()
