"""Threshold sensitivity: every trial judged again from its recorded trace, no rerun."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradatlas.record import OUTCOMES, TrialRecord
from gradatlas.reports.load import experiment_from_records
from gradatlas.reports.sensitivity import (
    BASELINE,
    CENSORED,
    reclassify,
    threshold_sensitivity,
)

SUITE = """
name: sens
dataset: {name: digits}
model: {family: mlp, width: 16}
grid:
  depth: [2, 8]
  activation: [relu, sigmoid]
  init: [kaiming_normal, {name: normal, std: 1.0}]
  grad_clip: [null, 1.0]
train: {steps: 40, batch_size: 64, optimizer: momentum, lr: 0.05, eval_every: 20}
instrument: {every: 5, max_points: 10, probe_batch: 64}
outcomes: {target_accuracy: 0.5, explode_grad_norm: 1000.0, vanish_ratio: 0.01}
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[dict]:
    """16 real trials, written to trial.json text and read back as a report reads them."""
    from gradatlas.runners.tracking import trial_record
    from gradatlas.runners.trial import run_trial, set_threads
    from gradatlas.suites import load_suite

    set_threads(1)
    path = tmp_path_factory.mktemp("sens") / "sens.yaml"
    path.write_text(SUITE, encoding="utf-8")
    out = []
    for trial in load_suite(str(path)).trials:
        text = trial_record(run_trial(trial, accelerator="cpu")).to_json()
        out.append(TrialRecord.from_json(json.loads(text)).to_dict())
    return out


def test_the_record_keeps_the_trace_at_full_resolution(records) -> None:
    for rec in records:
        trace = rec["trace"]
        steps = int(rec["summary"]["steps_run"])
        assert len(trace["step_loss"]) == steps  # not thinned to max_points (10)
        assert len(trace["step_grad_norm"]) == steps
        clipped = rec["config"]["train"]["grad_clip"]["mode"] != "none"
        assert (trace["step_grad_norm_raw"] is not None) == clipped
        assert trace["max_steps"] == 40


def test_reclassifying_at_scale_1_reproduces_every_stored_label(records) -> None:
    labels = reclassify(records)
    assert labels == [r["outcome"]["label"] for r in records]
    assert len(set(labels)) >= 3  # the grid spans several outcomes
    # Scaling a threshold by 1 is the baseline too.
    assert reclassify(records, "explode_grad_norm", 1.0) == labels


def test_threshold_sensitivity_table(records) -> None:
    df = threshold_sensitivity(records)
    base = df.iloc[0]
    assert base["threshold"] == BASELINE and base["n"] == len(records)
    assert df.attrs == {"without_trace": 0, "mismatched": 0}
    thresholds = list(records[0]["outcome"]["thresholds"])
    assert list(df["threshold"][1:]) == [t for t in thresholds for _ in (0.1, 10.0)]
    rates = df[[*OUTCOMES, CENSORED]].to_numpy()
    np.testing.assert_allclose(rates.sum(axis=1), 1.0)
    stored = [r["outcome"]["label"] for r in records]
    for label in OUTCOMES:
        assert base[label] == pytest.approx(stored.count(label) / len(records))
    row = df[(df["threshold"] == "explode_grad_norm") & (df["scale"] == 0.1)].iloc[0]
    assert row["value"] == pytest.approx(100.0) and row["exploded"] >= base["exploded"]
    capped = df[(df["threshold"] == "target_accuracy") & (df["scale"] == 10.0)].iloc[0]
    assert capped["value"] == 1.0 and capped["converged"] == 0.0


def test_an_exploded_trial_loosened_past_its_stop_is_censored(records) -> None:
    stopped = [
        r
        for r in records
        if r["outcome"]["label"] == "exploded" and len(r["trace"]["step_loss"]) < 40
    ]
    assert stopped  # the d8 ReLU nets under N(0, 1): the forward signal exploded at step 0
    loose = ["explode_grad_norm", "explode_init_loss_factor", "explode_loss_factor"]
    assert set(reclassify(stopped, loose, 1e12)) == {CENSORED}
    assert set(reclassify(stopped, loose, 1.0)) == {"exploded"}


def test_records_without_a_trace_are_left_out_and_counted(records) -> None:
    old = dict(records[0]) | {"trace": {}}
    assert reclassify([old]) == [None]
    df = threshold_sensitivity([*records, old])
    assert df.attrs["without_trace"] == 1 and df["n"].iloc[0] == len(records)


def test_the_report_section_shows_the_table(records) -> None:
    from gradatlas.reports.html import render_html
    from gradatlas.reports.sections import build_document

    entries = [({"run_id": f"r{i}", "start_time": i}, r) for i, r in enumerate(records)]
    doc = build_document(experiment_from_records(entries, name="sens"))
    (section,) = [s for s in doc.sections if s.title == "Threshold sensitivity"]
    (table,) = [b for b in section.blocks if getattr(b, "name", "") == "threshold-sensitivity"]
    assert table.rows[0][0].text == BASELINE
    assert len(table.rows) == 1 + 2 * len(records[0]["outcome"]["thresholds"])
    assert "threshold-sensitivity" in render_html(doc)
    # Without traces the section says why it is empty.
    bare = [(m, dict(r) | {"trace": {}}) for m, r in entries]
    doc = build_document(experiment_from_records(bare, name="sens"))
    (section,) = [s for s in doc.sections if s.title == "Threshold sensitivity"]
    assert section.blocks[0].note
