"""Report sections as a protocol: numbered by their place in one list, built from one context.

Fast tests on records made in memory (no MLflow, no training): the numbers follow ``SECTIONS``
and nothing else, a section added to the list is built and numbered like the others, the shared
numbers are computed once, and what the sections show comes from the records, not from factor
names written into the report code.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gradatlas.reports import dynamics, sections, stats
from gradatlas.reports.context import ReportContext, make_context
from gradatlas.reports.document import Block, Document, KeyValues, Para, Pre
from gradatlas.reports.html import render_html
from gradatlas.reports.load import experiment_from_records
from gradatlas.reports.sections import SECTIONS, build_document
from tests.test_reports import fake_entries, fake_experiment, parse

ROOT = Path(__file__).resolve().parents[1]
FACTORS = {"depth": ["d2", "d8"], "activation": ["relu", "tanh"]}


def numbered(titles: list[str]) -> list[str]:
    return [f"{number}. {title}" for number, title in enumerate(titles, start=1)]


def section(doc: Document, title: str) -> Any:
    return next(s for s in doc.sections if s.title == title)


class Appendix:
    """A section added by a plugin: one class, one list entry."""

    title = "Appendix"

    def build(self, ctx: ReportContext) -> list[Block]:
        return [Para(f"{len(ctx.cells)} cells, built {ctx.built_at:%Y}")]


# The sections every report has; claims, tuning and a paper's claim appear only where they apply
# (a suite with a claims or tune block, a literature suite), and the fake experiment has none.
EVERY_REPORT = [s for s in SECTIONS if not hasattr(s, "applies")]


def test_sections_are_numbered_by_their_place_in_the_list() -> None:
    doc = build_document(fake_experiment(FACTORS))
    titles = [s.title for s in EVERY_REPORT]
    assert [s.number for s in doc.sections] == list(range(1, len(EVERY_REPORT) + 1))
    assert [s.title for s in doc.sections] == titles
    html_text = render_html(doc)
    assert parse(html_text).headings == numbered(titles)
    for s in doc.sections:  # the contents link to the same numbers
        assert f'<a href="#{s.anchor}">{s.heading}</a>' in html_text
    pickle.dumps(doc)  # the PDF worker receives the document pickled


def test_a_section_appended_to_the_list_is_built_and_numbered_last(monkeypatch) -> None:
    monkeypatch.setattr(sections, "SECTIONS", [*SECTIONS, Appendix()])
    doc = build_document(fake_experiment(FACTORS), built_at=datetime(2031, 1, 2, tzinfo=UTC))
    last = doc.sections[-1]
    assert (last.number, last.title) == (len(EVERY_REPORT) + 1, "Appendix")
    assert [b.text for b in last.blocks] == ["4 cells, built 2031"]  # it read the shared context
    page = parse(render_html(doc))
    assert page.headings == numbered([*(s.title for s in EVERY_REPORT), "Appendix"])


def test_a_section_that_does_not_apply_is_left_out_and_not_numbered(monkeypatch) -> None:
    class Absent(Appendix):
        title = "Absent"

        def applies(self, ctx: ReportContext) -> bool:
            return False

    monkeypatch.setattr(sections, "SECTIONS", [Absent(), *EVERY_REPORT, Appendix()])
    doc = build_document(fake_experiment(FACTORS))
    assert [s.title for s in doc.sections] == [*(s.title for s in EVERY_REPORT), "Appendix"]
    assert doc.sections[0].number == 1


def test_reordering_the_list_renumbers_every_section(monkeypatch) -> None:
    monkeypatch.setattr(sections, "SECTIONS", list(reversed(SECTIONS)))
    doc = build_document(fake_experiment(FACTORS))
    assert [s.heading for s in doc.sections] == numbered([s.title for s in reversed(EVERY_REPORT)])


def test_the_cell_table_is_computed_once_per_report(monkeypatch) -> None:
    calls = []
    real = stats.cell_table

    def counting(exp: Any) -> Any:
        calls.append(exp)
        return real(exp)

    monkeypatch.setattr(stats, "cell_table", counting)
    build_document(fake_experiment(FACTORS))
    assert len(calls) == 1


def test_every_section_reads_one_context(monkeypatch) -> None:
    seen: list[ReportContext] = []

    class Spy:
        def __init__(self, inner: Any) -> None:
            self.inner, self.title = inner, inner.title

        def build(self, ctx: ReportContext) -> list[Block]:
            seen.append(ctx)
            return self.inner.build(ctx)

    monkeypatch.setattr(sections, "SECTIONS", [Spy(s) for s in SECTIONS])
    build_document(fake_experiment(FACTORS), heatmap_factors=("activation", "depth"))
    assert len(seen) == len(SECTIONS) and all(ctx is seen[0] for ctx in seen)
    assert (seen[0].heat.rows, seen[0].heat.cols) == ("activation", "depth")
    assert seen[0].curves.factor == "depth"  # the curves follow the heatmaps' columns


# -- what the data says, not factor names ------------------------------------------------------
def modelled_entries(factors: dict[str, list[str]]) -> list[tuple[dict, dict]]:
    """Fake entries whose records say which model they built (as the runner's do): depth and
    activation land in ``config["model"]``, any other factor elsewhere; profiles are as long as
    the net is deep."""
    entries = fake_entries(factors)
    for _, record in entries:
        levels = record["factors"]
        depth = int(levels.get("depth", "d2")[1:])
        model: dict[str, Any] = {"family": "mlp", "depth": depth, "width": 16}
        if "activation" in levels:
            model["activation"] = {"name": levels["activation"]}
        model["init"] = {"name": "normal", "std": 1.0}
        record["config"]["model"] = model
        record["profiles"]["init"] = {
            "grad_norm": [10.0**-j for j in range(depth + 1)],
            "saturation": [0.1] * depth,
            "dead": [None] * depth,
        }
    return entries


def test_profiles_are_grouped_by_layer_count_and_drawn_per_model_factor() -> None:
    entries = modelled_entries({**FACTORS, "optimizer": ["sgd", "adam"]})
    exp = experiment_from_records(entries, name="fake")
    layout = dynamics.profile_layout(make_context(exp))
    assert sorted(layout.groups) == [3, 9]
    assert layout.panel_factors == ["depth"]
    assert layout.lines == ["activation"]  # the optimizer builds the same model
    doc = build_document(exp)
    fig = next(
        b
        for b in section(doc, "Gradient profiles").blocks
        if getattr(b, "name", "") == "init-grad-profile"
    )
    panels = fig.draw.keywords["panels"]
    assert [p.title for p in panels] == ["depth d2 · 3 weight layers", "depth d8 · 9 weight layers"]
    assert [line.label for line in panels[0].lines] == ["relu", "tanh"]
    assert "one line per activation;" in fig.caption


def test_a_setting_changed_between_sweeps_does_not_make_a_factor_a_model_factor() -> None:
    entries = modelled_entries({"activation": ["relu", "tanh"], "optimizer": ["sgd", "adam"]})
    older = copy.deepcopy(entries)  # the same grid, run before the width was changed
    for meta, record in older:
        meta["run_id"] += "-old"
        record["trial_id"] += "-old"
        record["cell_id"] += "-old"
        record["config"]["model"]["width"] = 32
    exp = experiment_from_records(entries + older, name="fake")
    assert dynamics.profile_layout(make_context(exp)).lines == ["activation"]


def test_the_model_is_described_from_every_key_of_its_config() -> None:
    doc = build_document(experiment_from_records(modelled_entries(FACTORS), name="fake"))
    kv = next(b for b in section(doc, "Overview").blocks if isinstance(b, KeyValues))
    assert dict(kv.items)["Model"] == (
        "family=mlp, depth=varies, width=16, activation=varies, init=normal(std=1)"
    )
    bare = build_document(fake_experiment(FACTORS))  # records that do not say
    kv = next(b for b in section(bare, "Overview").blocks if isinstance(b, KeyValues))
    assert dict(kv.items)["Model"] == "not recorded"


def test_the_content_is_built_without_the_runners_and_prints_their_rules() -> None:
    """The rules are the outcome module's own docstring, read from its source: the report's
    code never imports the runners (nor torch)."""
    code = (
        "import sys\n"
        "from tests.test_reports import fake_experiment\n"
        "from gradatlas.reports.html import render_html\n"
        "from gradatlas.reports.sections import build_document\n"
        "render_html(build_document(fake_experiment({'depth': ['d2', 'd8']})))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('gradatlas.runners', 'torch'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # The one runners module allowed: the outcome rules themselves (numpy only), which the
    # threshold-sensitivity section re-applies to the stored traces. The store/layers issue moves
    # them into the core layer; torch and the rest of the runners stay out.
    assert (
        out.stdout.strip().splitlines()[-1] == "['gradatlas.runners', 'gradatlas.runners.outcome']"
    )
    from gradatlas.runners import outcome

    doc = build_document(fake_experiment(FACTORS))
    rules = next(b.text for b in section(doc, "Methods").blocks if isinstance(b, Pre))
    assert rules == outcome.__doc__.strip("\n")


@pytest.mark.parametrize("factors", [{}, {"depth": ["d2", "d8"]}, FACTORS])
def test_every_section_builds_blocks_for_any_suite_shape(factors: dict[str, list[str]]) -> None:
    ctx = make_context(fake_experiment(factors))
    for s in SECTIONS:
        blocks = s.build(ctx)
        assert blocks and all(isinstance(b, Block) for b in blocks), s.title


def test_the_overview_names_the_cpu_and_its_kernels_where_recorded():
    """Two sweeps on CPUs with other vector instructions may differ in borderline trials: the
    Device row says which CPU and kernels each trial ran on (older records: the device only)."""
    from gradatlas.reports.overview import _device

    env = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512"}
    assert _device({"device": "cpu", "environment": env}) == (
        "cpu · Intel(R) Xeon(R) Processor · kernels AVX512"
    )
    assert _device({"device": "cpu"}) == "cpu"
    assert _device({"device": "cuda", "environment": env}) == "cuda"
