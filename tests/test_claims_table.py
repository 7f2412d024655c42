"""The claims table as the PDF sets it: long texts wrap inside their cells and no number is ever
cut ("<0.0…"), the per-dataset verdicts appear only when a claim has them, and the verdict at the
second-best learning rate is one line of the details.

Everything is made in memory (``ClaimResult`` rows) and read back from the strings the PDF
renderer draws: no training, no MLflow.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gradatlas.reports import claimstats as cs
from gradatlas.reports import pdf
from gradatlas.reports.claimeval import ClaimResult
from gradatlas.reports.claims import claims_blocks, claims_table
from gradatlas.reports.document import Document, KeyValues, NumberedSection, Table

LONG = (
    "Under Xavier init the gradient of a deep ReLU net vanishes toward the input; under He it "
    "does not"
)


def result(claim_id: str, text: str, **kw: Any) -> ClaimResult:
    values: dict[str, Any] = {
        "id": claim_id,
        "text": text,
        "source": "seed article; He et al. 2015",
        "metric": "generalization_gap",
        "predict": "greater",
        "margin": None,
        "groups": "A: init = kaiming_normal; B: init = xavier_normal; within activation = relu",
        "a_text": "init = kaiming_normal",
        "b_text": "init = xavier_normal",
        "kind": "rate",
        "verdict": cs.SUPPORTED,
        "design": "paired",
        "effect": 0.66,
        "lo": 0.41,
        "hi": 0.875,
        "p": 2e-5,
        "p_adjusted": 4e-4,
        "mde": 0.24,
        "n_a": 36,
        "n_b": 36,
        "n_seeds": 12,
        "strata": 3,
    }
    return ClaimResult(**{**values, **kw})


RESULTS = [
    result(
        "C1", "He init (Var = 2/n_in) suits ReLU; Xavier does not keep deep ReLU nets trainable"
    ),
    result("C1b", LONG, p=1.2e-4, p_adjusted=0.00144),
    result(
        "C3",
        "Softmax is the typical example of exploding gradients (then the init scale would not "
        "matter)",
        predict="equal",
        margin=0.1,
        verdict=cs.REFUTED,
        p=0.9999,
        p_adjusted=1.0,
    ),
    result(
        "C8",
        "Adam adapts the learning rate by itself, so it needs no tuning",
        kind="continuous",
        verdict=cs.INCONCLUSIVE,
        underpowered=True,
        effect=-123456.7,
        lo=-234567.8,
        hi=-12345.6,
        p=0.2711,
        p_adjusted=0.81,
        mde=math.inf,
    ),
]


def drawn_strings(monkeypatch: pytest.MonkeyPatch, doc: Document, path: Path) -> list[str]:
    """Every string the PDF renderer places on a page, in order."""
    seen: list[str] = []
    add = pdf.TextRun.add

    def spy(self: pdf.TextRun, x: float, y: float, s: str, *args: Any) -> None:
        seen.append(s)
        add(self, x, y, s, *args)

    monkeypatch.setattr(pdf.TextRun, "add", spy)
    pdf.render_pdf(doc, path)
    assert path.stat().st_size > 3000
    return seen


def table_cells(table: Table) -> list[tuple[str, list[str]]]:
    """Each cell's text and the lines the PDF sets it on (the layout ``_table`` uses)."""
    size, widths = pdf.table_layout(table)
    assert abs(sum(widths) - pdf.WIDTH) < 1e-6
    out = []
    for row in table.rows:
        for cell, width, col in zip(row, widths, table.columns, strict=True):
            lines = pdf.cell_lines(cell.text, width, size, col.align)
            out.append((cell.text, [" ".join(seg.text for seg in line) for line in lines]))
    return out


def test_long_claims_and_small_p_wrap_in_their_cells_and_are_never_cut() -> None:
    table = claims_table(RESULTS)
    texts = [cell.text for row in table.rows for cell in row]
    assert " ".join(LONG.split()) in texts  # the claim in full, not its first 26 characters
    assert "<0.001 (<0.001)" in texts
    cells = table_cells(table)
    assert any(len(lines) > 1 for _, lines in cells)  # this table does not fit on one line
    for text, lines in cells:
        assert "…" not in "".join(lines)
        # wrapped at spaces only: the lines are the text, every word whole
        assert " ".join(lines).split() == text.split(), (text, lines)
        if text.startswith("<0.001"):
            assert lines[0].startswith("<0.001")


def test_the_pdf_draws_every_number_and_word_in_full(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    doc = Document("claims", "", [NumberedSection(1, "Claims", claims_blocks(RESULTS, "claims"))])
    drawn = drawn_strings(monkeypatch, doc, tmp_path / "claims.pdf")
    assert not [s for s in drawn if "…" in s]
    joined = " ".join(drawn)
    for expected in ("<0.001", "(<0.001)", "+66.0\u00a0pp", "[41.0, 87.5]", "−123457", "∞"):
        assert expected in joined, expected
    for word in LONG.split():
        assert word in drawn or any(word in s.split() for s in drawn), word
    assert "inconclusive (underpowered)" in joined or {"inconclusive", "(underpowered)"} <= set(
        joined.split()
    )


def test_a_table_too_wide_for_its_words_breaks_them_but_keeps_every_character() -> None:
    from gradatlas.reports.document import Cell, Column

    word = "0.000123456789" * 4
    table = Table([Column(f"c{i}", "right") for i in range(12)], [[Cell(word)] * 12])
    size, widths = pdf.table_layout(table)
    assert size == pdf.TABLE_SIZES[-1]
    lines = pdf.cell_lines(word, widths[0], size, "right")
    assert len(lines) > 1 and "".join(seg.text for line in lines for seg in line) == word


def test_a_table_that_fits_stays_on_one_line_per_row() -> None:
    from gradatlas.reports.document import Cell, Column

    table = Table([Column("a"), Column("b", "right")], [[Cell("x"), Cell("0.5 [0.1, 0.9]")]])
    size, widths = pdf.table_layout(table)
    assert size == pdf.TABLE, widths
    assert pdf.cell_lines("0.5 [0.1, 0.9]", widths[1], size, "right") == [
        [pdf.Segment("0.5"), pdf.Segment("[0.1, 0.9]", ci=True)]
    ]


def test_per_dataset_verdicts_get_a_column_only_when_there_are_some() -> None:
    plain = claims_table(RESULTS)
    assert [c.title for c in plain.columns][3:5] == ["verdict", "effect A − B [95%]"]
    assert len(plain.columns) == 8

    overall = replace(
        RESULTS[0],
        dataset="all",
        per_dataset={
            "mnist1d": replace(RESULTS[0], dataset="mnist1d"),
            "digits": replace(RESULTS[0], dataset="digits", verdict=cs.INCONCLUSIVE),
        },
    )
    table = claims_table([overall, *RESULTS[1:]])
    titles = [c.title for c in table.columns]
    assert titles[3:5] == ["verdict", "per dataset"] and len(titles) == 9
    first = table.rows[0][4]
    assert first.text == "mnist1d:\u00a0supported · digits:\u00a0inconclusive"
    assert first.attrs == {"verdicts": "mnist1d=supported;digits=inconclusive"}
    assert [row[4].text for row in table.rows[1:]] == ["–"] * 3
    assert "Per dataset:" in table.caption
    for text, lines in table_cells(table):
        assert " ".join(lines).split() == text.split()


def test_the_verdict_at_the_second_best_lr_is_one_line_of_the_details() -> None:
    def details(results: list[ClaimResult]) -> dict[str, str]:
        blocks = claims_blocks(results, "claims")
        return dict(next(b for b in blocks if isinstance(b, KeyValues)).items)

    assert not any("2nd-best" in v for v in details(RESULTS).values())
    robust = replace(RESULTS[0], robustness=replace(RESULTS[0], verdict=cs.INCONCLUSIVE))
    text = details([robust, *RESULTS[1:]])["C1"]
    assert "At 2nd-best lr: inconclusive (effect +66.0 pp [41.0, 87.5], p <0.001)." in text
