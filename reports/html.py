"""Document -> one self-contained HTML file.

Charts are inline SVG, the stylesheet is inline, there is no script, and a Content-Security-Policy
forbids every fetch: the file can be mailed, archived or opened offline years later and shows the
same thing, and it can never phone home.
"""

from __future__ import annotations

import html
import io
import re
from importlib import resources
from typing import Any

from matplotlib.figure import Figure as MplFigure

from gradatlas.reports import figures
from gradatlas.reports.document import (
    Block,
    Document,
    Figure,
    Heading,
    KeyValues,
    Para,
    Pre,
    Table,
)

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
TALL_TABLE_ROWS = 24  # longer tables scroll inside a box with a sticky header


def stylesheet() -> str:
    """``report.css``, shipped as package data so the page needs no file beside it."""
    return resources.files("gradatlas.reports").joinpath("report.css").read_text("utf-8")


def inline(text: str) -> str:
    """Escape, then turn `backtick` spans into <code>."""
    parts = re.split(r"`([^`]+)`", text)
    return "".join(
        html.escape(p) if i % 2 == 0 else f"<code>{html.escape(p)}</code>"
        for i, p in enumerate(parts)
    )


def _attrs(data: dict[str, Any]) -> str:
    return "".join(f' data-{k}="{html.escape(str(v), quote=True)}"' for k, v in data.items())


def svg(fig: Figure, number: int) -> str:
    """Draw the chart at its natural size and return inline SVG with ids made unique."""
    with figures.style():
        mfig = MplFigure(figsize=fig.size, layout="constrained")
        fig.draw(mfig)
        buf = io.StringIO()
        mfig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    prefix = f"f{number}-"
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}\1)", text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}\1"', text)
    # Scale with the page: drop the fixed size, keep the viewBox.
    text = re.sub(r'<svg([^>]*?)\swidth="[^"]+"\sheight="[^"]+"', r"<svg\1", text, count=1)
    return text.replace("<svg", f'<svg role="img" aria-label="Figure {number}"', 1)


def _table(t: Table) -> str:
    tall = " tall" if len(t.rows) > TALL_TABLE_ROWS else ""
    tall += " narrow" if len(t.columns) <= 2 else ""
    out = [f'<div class="table-wrap{tall}"><table data-table="{html.escape(t.name)}">']
    if t.caption:
        out.append(f"<caption>{inline(t.caption)}</caption>")
    out.append("<thead><tr>")
    out += [f'<th class="{c.align}">{html.escape(c.title)}</th>' for c in t.columns]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(t.rows):
        attrs = _attrs(t.row_attrs[i]) if i < len(t.row_attrs) else ""
        out.append(f"<tr{attrs}>")
        for col, cell in zip(t.columns, row, strict=True):
            style = ""
            if cell.tint:
                r, g, b, a = cell.tint
                style = (
                    f' style="background:rgba({r * 255:.0f},{g * 255:.0f},{b * 255:.0f},{a:.2f})"'
                )
            cls = f"{col.align} zero" if cell.muted else col.align
            out.append(f'<td class="{cls}"{_attrs(cell.attrs)}{style}>{_cell_text(cell.text)}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _cell_text(text: str) -> str:
    """A trailing "[lo–hi]" interval is set smaller and grey, so the rate itself reads first."""
    m = re.match(r"^(.*?)\s*(\[[^\]]*\])$", text)
    if m and m.group(1):
        return f'{html.escape(m.group(1))} <span class="ci">{html.escape(m.group(2))}</span>'
    return html.escape(text)


def _block(block: Block, counter: list[int]) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{inline(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        cls = ' class="note"' if block.note else ""
        return f"<p{cls}>{inline(block.text)}</p>"
    if isinstance(block, KeyValues):
        rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{inline(v)}</dd>" for k, v in block.items)
        return f'<dl class="kv">{rows}</dl>'
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Pre):
        return f"<pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Figure):
        counter[0] += 1
        n = counter[0]
        return (
            f'<figure id="{html.escape(block.name)}">{svg(block, n)}'
            f"<figcaption><b>Figure {n}.</b> {inline(block.caption)}</figcaption></figure>"
        )
    raise TypeError(f"unknown block {type(block).__name__}")


def render_html(doc: Document) -> str:
    """The whole report as one HTML string (write it with UTF-8)."""
    counter = [0]
    toc = "".join(
        f'<li><a href="#{s.anchor}">{html.escape(s.heading)}</a></li>' for s in doc.sections
    )
    body = []
    for s in doc.sections:
        inner = "".join(_block(b, counter) for b in s.blocks)
        body.append(f'<section id="{s.anchor}"><h2>{html.escape(s.heading)}</h2>{inner}</section>')
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="gradatlas">'
        f"<title>{html.escape(doc.title)}</title>"
        f"<style>{stylesheet()}</style></head><body>"
        f"<header><h1>{html.escape(doc.title)}</h1>"
        f'<p class="subtitle">{html.escape(doc.subtitle)}</p>'
        f'<nav aria-label="Contents"><ol>{toc}</ol></nav></header>'
        f"<main>{''.join(body)}</main>"
        f"<footer>{inline(doc.footer)}</footer></body></html>\n"
    )
