"""What the report does to stay fast at atlas scale must not change what it says.

The SQL read of a local store returns exactly what ``search_runs`` does, the reused glyph layouts
give the same PDF bytes, the heatmap counts equal the pivot tables they replace, and the
benchmark's 10,000-trial store is made of records on the contract. No timing is asserted here
(benchmarks/report_scale.py measures).
"""

from __future__ import annotations

import contextlib
import gc
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradatlas import record as R
from gradatlas.record import RunKind, RunStatus, TrialRecord
from gradatlas.reports import figures, load, pdf
from gradatlas.reports.document import Cell, Column, Document, NumberedSection, Para, Table
from gradatlas.store import open_store


@pytest.fixture(scope="module")
def store(synth, tmp_path_factory) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    synth.write_store(uri, name="syn", limit=8, reruns=3, killed=2)
    return uri, "syn"


def test_the_sql_read_returns_what_search_runs_returns(store) -> None:
    uri, name = store
    mlflow = open_store(uri, create=False)
    exp_id = mlflow.get_experiment(name=name).experiment_id
    fast = mlflow.finished_trial_runs(exp_id)
    slow = mlflow.find_runs(exp_id, kind=RunKind.TRIAL, status=RunStatus.FINISHED)
    assert fast and all(r.params is None for r in fast)  # the SQL path was taken (tags only)
    assert [r.run_id for r in fast] == [r.run_id for r in slow]
    for a, b in zip(fast, slow, strict=True):
        for key in ("tags", "run_name", "start_time", "end_time", "artifact_uri", "status"):
            assert getattr(a, key) == getattr(b, key)


def test_a_store_the_sql_read_cannot_parse_goes_through_mlflow(store, tmp_path: Path) -> None:
    uri, name = store
    mlflow = open_store(uri, create=False)
    exp_id = mlflow.get_experiment(name=name).experiment_id
    not_a_db = tmp_path / "mlflow.db"
    not_a_db.write_text("not sqlite")
    mlflow._db = not_a_db  # the SQL read meets a file it cannot parse
    runs = mlflow.finished_trial_runs(exp_id)
    assert runs and runs[0].params is not None  # read through MLflow's search instead


def test_loading_leaves_the_collector_as_it_was(store) -> None:
    uri, name = store
    assert gc.isenabled()
    exp = load.load_experiment(name, uri)
    assert gc.isenabled() and len(exp.trials) == 8 and exp.set_aside == 3


def test_trial_rows_are_made_once_per_frame(store) -> None:
    uri, name = store
    exp = load.load_experiment(name, uri)
    rows = exp.rows()
    assert exp.rows() is rows
    assert repr(rows) == repr(exp.trials.to_dict("records"))  # repr: NaN != NaN
    exp.trials = exp.trials.iloc[:3]
    assert repr(exp.rows()) == repr(exp.trials.to_dict("records")) and len(exp.rows()) == 3


def _table_doc() -> Document:
    rows = [
        [Cell(f"d{i % 7}"), Cell("0/5", muted=True), Cell(f"{20 * (i % 6)}% [4–62]")]
        for i in range(300)
    ]
    table = Table([Column("depth"), Column("k/n", "right"), Column("rate", "right")], rows)
    return Document("t", "s", [NumberedSection(1, "Table", [Para("x " * 80), table])], "f")


def test_reused_glyph_layouts_give_the_same_pdf(tmp_path: Path, monkeypatch) -> None:
    doc = _table_doc()
    pdf.render_pdf(doc, tmp_path / "memo.pdf")
    monkeypatch.setattr(pdf.LayoutMemo, "active", lambda self: contextlib.nullcontext())
    pdf.render_pdf(doc, tmp_path / "plain.pdf")
    assert (tmp_path / "memo.pdf").read_bytes() == (tmp_path / "plain.pdf").read_bytes()


def test_heat_counts_equal_the_pivot_tables() -> None:
    rng = np.random.default_rng(0)
    rows, cols, facets = ["a", "b", "c"], ["x", "y", "z", "w"], ["f1", "f2"]
    data = pd.DataFrame(
        [
            (f, r, c, int(rng.integers(0, 4)), 4)
            for f in facets
            for r in rows
            for c in cols
            for _ in range(int(rng.integers(0, 3)))  # some squares twice, some never
        ],
        columns=["facet", "row", "col", "k", "n"],
    )
    spec = figures.HeatSpec(data, "exploded", "r", "c", rows, cols, facets)
    counts = figures._heat_counts(spec)
    for f in facets:
        d = data[data["facet"] == f]
        for key, got in zip(("k", "n"), counts.get(f, counts[None]), strict=True):
            want = d.pivot_table(index="row", columns="col", values=key, aggfunc="sum")
            want = want.reindex(index=rows, columns=cols).to_numpy(dtype=float)
            np.testing.assert_array_equal(got, want)


def test_the_atlas_scale_store_is_made_of_contract_records(synth) -> None:
    cells = synth.cells(synth.GRID_10K)
    assert len(cells) * synth.SEEDS == 10_000
    assert len({c.label for c in cells}) == len(cells)
    assert [c.label for c in synth.cells()] == [c.label for c in synth.cells(synth.GRID)]
    rng = np.random.default_rng(0)
    ids = set()
    for cell in cells[::97]:
        rec = synth.record(cell, 0, "synthetic-10000", rng)
        text = rec.to_json()
        back = TrialRecord.from_json(json.loads(text))
        assert back.to_json() == text and back.schema == R.SCHEMA
        assert set(back.factors) == set(synth.GRID_10K)
        assert back.config["model"]["width"] == cell.width
        ids.add(back.trial_id)
    assert len(ids) == len(cells[::97])
    yaml_text = synth.suite_yaml("synthetic-10000", 5, synth.GRID_10K)
    assert "width: [32, 64, 128, 256, 512]" in yaml_text and "norm: [none, layernorm]" in yaml_text
