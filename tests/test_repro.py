"""``gradatlas repro``: a recorded trial rerun from its record alone matches it bit for bit on
CPU; a changed environment is named and judged within the tolerance; a tampered record fails at
the first value that was changed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from gradatlas.app.cli import main
from gradatlas.app.repro import compare, load_recorded, rel_diff, reproduce
from gradatlas.record import TRIAL_ARTIFACT, TrialRecord
from tests.conftest import new_store, write_suite

SUITE = """
name: {name}
description: Two seeds of one small net on digits, for gradatlas repro.
dataset: {{name: digits}}
model: {{family: mlp, width: 16, depth: 3}}
seeds: 2
train: {{steps: 30, batch_size: 64, optimizer: momentum, lr: 0.05, eval_every: 10}}
instrument: {{every: 5, max_points: 50, probe_batch: 64}}
outcomes: {{target_accuracy: 0.3}}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A real store: the suite run once alone (``repro-alone``) and once with its two seeds
    batched (``repro-batched``), through the sweep's own writers, at one torch thread."""
    from mlflow import MlflowClient

    from gradatlas.runners.executor import InProcessExecutor
    from gradatlas.runners.sweep import run_suite
    from gradatlas.suites import load_suite

    root = tmp_path_factory.mktemp("repro")
    uri = new_store(root / "mlflow.db")
    out: dict = {"uri": uri}
    for name, batch in (("repro-alone", 1), ("repro-batched", 2)):
        suite = load_suite(str(write_suite(root, SUITE.format(name=name), f"{name}.yaml")))
        executor = InProcessExecutor(accelerator="cpu", threads=1)
        summary = run_suite(suite, uri, executor=executor, batch_seeds=batch)
        assert summary.ran == 2 and not summary.failures
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(name)
        finished = "tags.`gradatlas.kind` = 'trial' and attributes.status = 'FINISHED'"
        runs = client.search_runs([exp.experiment_id], finished, max_results=10)
        out[name] = sorted(runs, key=lambda r: r.data.tags["gradatlas.seed"])
    return out


def _artifact(run) -> Path:
    return Path(run.info.artifact_uri.removeprefix("file://")) / TRIAL_ARTIFACT


def test_a_rerun_by_trial_id_is_bitwise_identical(store, capsys):
    run = store["repro-alone"][0]
    trial_id = run.data.tags["gradatlas.trial_id"]
    threads = torch.get_num_threads()
    # Both experiments hold this trial id (same config): --experiment picks the unbatched one.
    code = main(["repro", trial_id, "--experiment", "repro-alone", "--tracking-uri", store["uri"]])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"run {run.info.run_id}, repro-alone / s0" in out
    assert "PASS: bitwise identical to the record (same environment" in out
    assert f"trial id recomputed from the recorded config: {trial_id} (matches)" in out
    assert torch.get_num_threads() == threads  # the rerun's thread count is not left behind


def test_a_batched_record_reruns_with_the_seeds_it_trained_with(store):
    run = store["repro-batched"][1]
    rec = load_recorded(store["uri"], run.info.run_id)
    assert [r.seed for r in rec.group] == [0, 1]
    verdict = reproduce(store["uri"], run.info.run_id)
    assert verdict.passed and verdict.identical and verdict.mode == "bitwise"
    alone = reproduce(store["uri"], run.info.run_id, alone=True, tolerance=1e-3)
    assert alone.mode == "tolerance" and "batched seeds" in alone.env_differs
    assert any("--alone" in n for n in alone.notes)


def test_another_thread_count_is_named_and_judged_within_the_tolerance(store, capsys):
    run = store["repro-alone"][1]
    code = main(["repro", run.info.run_id, "--threads", "2", "--tolerance", "1e-3", "--json",
                 "--tracking-uri", store["uri"]])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["result"] == "PASS" and data["mode"] == "tolerance"
    assert data["tolerance"] == 1e-3 and data["environment_differences"] == ["torch threads"]
    row = next(r for r in data["environment"] if r["name"] == "torch threads")
    assert (row["recorded"], row["rerun"]) == (1, 2)


def test_a_tampered_curve_fails_at_the_changed_step(store, capsys):
    run = store["repro-alone"][0]
    path = _artifact(run)
    original = path.read_text()
    data = json.loads(original)
    step, value = data["curves"]["train"]["step"][7], data["curves"]["train"]["loss"][7]
    data["curves"]["train"]["loss"][7] = value * (1 + 1e-3)
    data["curves"]["eval"]["val_loss"][-1] *= 2  # a later change: not the first divergence
    try:
        path.write_text(json.dumps(data))
        code = main(["repro", run.info.run_id, "--tracking-uri", store["uri"]])
        out = capsys.readouterr().out
        verdict = reproduce(store["uri"], run.info.run_id)
    finally:
        path.write_text(original)
    assert code == 1, out
    assert "FAIL: not bitwise identical although the environment matches" in out
    assert f"first divergence: train/loss at step {step}: recorded {value * (1 + 1e-3)!r}" in out
    first = verdict.first_divergence()
    assert (first.metric, first.step, first.rerun) == ("train/loss", step, value)
    assert first.rel == pytest.approx(1e-3, rel=1e-3)
    assert {p.metric for p in verdict.comparison.differing} == {"train/loss", "eval/val_loss"}


def test_the_cpu_kernels_are_recorded_and_another_set_is_judged_within_tolerance(store):
    """The same torch build rounds differently on a CPU with other vector instructions, so a
    record names them (``cpu_capability``) and a rerun on other kernels is not held to bitwise."""
    import torch

    run = store["repro-alone"][0]
    path = _artifact(run)
    original = path.read_text()
    data = json.loads(original)
    assert data["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert data["environment"]["cpu"]
    data["environment"]["cpu_capability"] = "SOME_OTHER_ISA"
    data["environment"]["cpu"] = "another CPU"
    try:
        path.write_text(json.dumps(data))
        verdict = reproduce(store["uri"], run.info.run_id, tolerance=1e-3)
    finally:
        path.write_text(original)
    assert verdict.mode == "tolerance" and verdict.passed
    assert "cpu kernels" in verdict.env_differs and "cpu" not in verdict.env_differs


def test_a_tampered_config_fails_its_identity_without_a_rerun(store, capsys):
    run = store["repro-alone"][0]
    path = _artifact(run)
    original = path.read_text()
    data = json.loads(original)
    data["config"]["optim"]["lr"] = 0.5
    try:
        path.write_text(json.dumps(data))
        code = main(["repro", run.info.run_id, "--tracking-uri", store["uri"]])
    finally:
        path.write_text(original)
    out = capsys.readouterr().out
    assert code == 1 and "FAIL: the trial's identity does not hold" in out
    assert "not to the recorded trial id" in out


@pytest.mark.parametrize(
    "target, message",
    [
        ("0123456789abcdef", "no run or trial with this id in any experiment"),
        ("f" * 32, "no run or trial with this id"),
        ("not-an-id", "not a run id (32 hex digits) or a trial id (16 hex digits)"),
    ],
)
def test_unknown_ids_exit_2_with_a_clear_message(store, capsys, target, message):
    assert main(["repro", target, "--tracking-uri", store["uri"]]) == 2
    assert message in capsys.readouterr().err


def test_unknown_experiment_exits_2(store, capsys):
    run = store["repro-alone"][0]
    args = ["repro", run.data.tags["gradatlas.trial_id"], "--experiment", "nope"]
    assert main([*args, "--tracking-uri", store["uri"]]) == 2
    assert "nope: no such MLflow experiment" in capsys.readouterr().err


# -- the comparison alone ------------------------------------------------------------------------
def test_relative_difference():
    assert rel_diff(1.0, 1.0) == 0.0 and rel_diff(None, None) == 0.0
    assert rel_diff(2.0, 1.0) == 0.5 and rel_diff(0.0, 1e-30) == 1.0
    assert math.isinf(rel_diff(None, 1.0)) and math.isinf(rel_diff("a", 1.0))


def test_a_curve_that_stops_early_diverges_where_it_stops():
    def record(losses, label):
        return TrialRecord.from_json(
            {
                "outcome": {"label": label},
                "curves": {"train": {"step": list(range(len(losses))), "loss": losses}},
                "summary": {"steps_run": float(len(losses)), "wall_time_s": len(losses)},
            }
        )

    c = compare(record([3.0, 2.0, 1.0, 0.5], "converged"), record([3.0, 2.0, None], "exploded"))
    first = c.first_over(0.0)  # went non-finite at step 2, then stopped
    assert (first.metric, first.step, first.recorded, first.rerun) == ("train/loss", 2, 1.0, None)
    assert math.isinf(first.rel)
    stop = [(p.metric, p.recorded, p.rerun) for p in c.differing if p.step == 3]
    assert stop == [("train/step", 3, "(absent)"), ("train/loss", 0.5, "(absent)")]
    assert (c.outcome_recorded, c.outcome_rerun) == ("converged", "exploded")
    assert "summary/wall_time_s" not in c.worst  # timings are not results
    assert c.worst["summary/steps_run"].rel == pytest.approx(0.25)
