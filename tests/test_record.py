"""The record contract in code (gradatlas/record.py): one writer, readers of every version."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

from gradatlas import record as R
from gradatlas.record import RecordedOutcome, SweepRecord, TrialRecord
from gradatlas.runners.instrument import GradientInstrument
from gradatlas.runners.outcome import Trace, classify


def full_record(**over) -> TrialRecord:
    fields = {
        "trial_id": "0123456789abcdef",
        "cell_id": "fedcba9876543210",
        "cell": "d2-relu",
        "seed": 1,
        "suite": "tiny",
        "config": {"model": {"depth": 2, "activation": {"name": "relu"}}, "seed": 1},
        "factors": {"depth": "d2", "activation": "relu"},
        "outcome": RecordedOutcome("exploded", "gradient norm inf at step 1", {"a": 1.0}),
        "summary": {"initial_loss": 2.3, "final_val_loss": float("nan"), "steps_run": 2.0},
        "task": "classification",
        "num_classes": 10,
        "device": "cpu",
        "curves": {
            "train": {
                "step": [0, 1],
                "loss": [2.3, None],
                "grad_norm": [1.0, 2.0],
                "lr": [0.1] * 2,
            },
            "eval": {"step": [0], "val_loss": [2.2], "val_acc": [0.1]},
            "layers": {"step": [0], "grad_norm": [[1.0, 0.5]], "update_ratio": [[1e-3, None]]},
        },
        "profiles": {"layers": ["00", "01"], "loss": float("inf"), "init": {"dead": [None]}},
        "timing": {"wall_time_s": 1.5, "fit_time_s": 1.0, "instrument_time_s": 0.1},
        "finished_at": "2026-11-28T06:00:00+00:00",
    }
    return TrialRecord(**(fields | over))


def test_to_json_is_strict_and_round_trips() -> None:
    rec = full_record()
    text = rec.to_json()
    data = json.loads(text)  # strict JSON: no NaN / Infinity tokens
    assert "NaN" not in text and "Infinity" not in text
    assert list(data) == [
        "schema", "trial_id", "cell_id", "cell", "seed", "suite", "config", "factors", "outcome",
        "summary", "task", "num_classes", "device", "curves", "profiles", "timing", "finished_at",
        "environment", "batch_members", "trace",
    ]  # fmt: skip
    assert data["schema"] == R.SCHEMA == 1
    assert data["summary"]["final_val_loss"] is None and data["profiles"]["loss"] is None
    assert list(data["outcome"]) == ["label", "reason", "thresholds"]
    back = TrialRecord.from_json(data)
    assert back.to_json() == text
    assert TrialRecord.from_json(text) == back  # the text itself is accepted too


def test_from_json_of_a_minimal_old_dict_and_of_garbage_never_raises() -> None:
    old = {"trial_id": "t1", "outcome": {"label": "converged"}, "summary": {"steps_run": 3.0}}
    rec = TrialRecord.from_json(old)
    assert (rec.schema, rec.trial_id, rec.outcome.label, rec.outcome.reason) == (
        0,
        "t1",
        "converged",
        "",
    )
    assert rec.config == {} and rec.curves == {} and rec.outcome.thresholds == {}
    assert rec.seed is None and rec.task is None and rec.finished_at is None
    assert rec.status == R.FINISHED
    for junk in (None, [], "not json", b"{", 3, {"outcome": 7, "config": [1], "seed": "x"}):
        r = TrialRecord.from_json(junk)
        assert isinstance(r, TrialRecord) and r.outcome.label == ""
    assert TrialRecord.from_json({"outcome": "killed"}).status == R.KILLED_STATUS


def test_record_rebuilt_from_run_data_is_schema_0_and_reads_back() -> None:
    tags = {
        R.KIND: R.KIND_TRIAL,
        R.TRIAL_ID: "t9",
        R.CELL_ID: "c9",
        R.CELL: "d2-relu",
        R.SUITE: "tiny",
        R.SEED: "3",
        R.OUTCOME: "vanished",
        R.OUTCOME_REASON: "tiny grads",
        R.DEVICE: "cuda",
    }
    params = {"model.depth": "2", "factor.depth": "d2", "factor.activation": "relu"}
    rec = R.record_from_run_data(tags, params, {"final_val_acc": 0.2}, "run-1")
    assert rec.schema == 0 and rec.seed == 3 and rec.device == "cuda"
    assert rec.factors == {"depth": "d2", "activation": "relu"}
    assert (rec.outcome.label, rec.outcome.reason) == ("vanished", "tiny grads")
    assert rec.summary == {"final_val_acc": 0.2} and rec.config == {}
    assert TrialRecord.from_json(json.loads(rec.to_json())) == rec
    # Without tags the run id names the trial.
    assert R.record_from_run_data({}, {}, {}, "run-2").trial_id == "run-2"


def test_final_label_is_the_only_killed_rule() -> None:
    assert R.final_label("converged", False) == "converged"
    assert R.final_label("exploded", True) == R.KILLED == "killed"
    assert (*R.OUTCOMES, R.PROBE, "killed") == R.OUTCOME_ORDER


def test_tags_params_and_metrics_follow_the_record() -> None:
    rec = full_record(outcome=RecordedOutcome("stalled", "x" * 9000))
    tags = R.trial_tags(rec, parent_run="sweep-1")
    assert tags[R.KIND] == "trial" and tags[R.SEED] == "1" and tags[R.PARENT_RUN] == "sweep-1"
    assert len(tags[R.OUTCOME_REASON]) == R.MAX_REASON_TAG
    assert R.PARENT_RUN not in R.trial_tags(rec)
    flat = R.trial_tags(rec, sweep_run="sweep-1")  # a trial run: flat, naming its sweep
    assert flat[R.SWEEP_RUN] == "sweep-1" and R.PARENT_RUN not in flat
    assert R.sweep_of(flat) == "sweep-1" and R.sweep_of(tags) == "sweep-1"
    params = R.trial_params(rec)
    assert params["model.activation.name"] == "relu" and params["factor.depth"] == "d2"
    metrics = R.trial_metrics(rec)
    assert ("initial_loss", 2.3, 0) in metrics
    assert not any(k == "final_val_loss" for k, _, _ in metrics)  # NaN is not logged
    assert [(k, s) for k, _, s in metrics if k == "train_loss"] == [("train_loss", 0)]
    assert ("update_ratio/00", 1e-3, 0) in metrics and ("layer_grad_norm/01", 0.5, 0) in metrics
    sweep = SweepRecord("tiny", planned=8, todo=3)
    assert SweepRecord.from_tags(sweep.tags()) == sweep
    assert R.factor_levels([{"d": "d2"}, {"d": "d12"}, {"d": "d2"}]) == {"d": ["d2", "d12"]}


def test_synthetic_records_are_trial_records(synth) -> None:
    rng = np.random.default_rng(0)
    for cell in synth.cells()[::17]:
        rec = synth.record(cell, 0, "synthetic", rng)
        text = rec.to_json()
        back = TrialRecord.from_json(json.loads(text))
        assert back.to_json() == text and back.schema == R.SCHEMA
        assert back.outcome.label in R.OUTCOMES and back.trial_id and back.finished_at


def test_a_small_synthetic_store_loads_as_written(synth, tmp_path: Path) -> None:
    from gradatlas.reports.load import load_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    info = synth.write_store(uri, name="syn", limit=6, reruns=2, killed=1)
    assert (info["trials"], info["set_aside"], info["killed"]) == (6, 2, 1)
    exp = load_experiment("syn", uri)
    assert len(exp.trials) == 6 and exp.set_aside == 2 and exp.without_record == 0
    assert set(exp.trials["outcome"]) <= set(R.OUTCOMES)
    assert exp.sweeps and exp.sweeps[0].factor_levels == R.factor_levels(
        c.factors for c in synth.cells()
    )
    rec = next(iter(exp.records.values()))
    assert rec["schema"] == R.SCHEMA and rec["timing"]["logging_time_s"] > 0


# -- the explosion rule: the instrument's early stop and classify are one test ------------------
def _instrument(loss, grad, threshold, skipped=False) -> GradientInstrument:
    inst = object.__new__(GradientInstrument)  # only what _check_explosion reads
    inst.step_loss = torch.tensor([loss], dtype=torch.float32)  # (members, steps)
    inst.step_grad_norm = torch.tensor([grad], dtype=torch.float32)
    inst.explode_grad_norm, inst.grad_overflow_skipped = threshold, skipped
    inst._checked_upto, inst.members, inst.alive = 0, 1, [True]
    return inst


def _stop_step(loss, grad, threshold, skipped=False, every=1) -> int | None:
    """The step after which the instrument stops the trainer, checking every ``every`` steps."""
    inst, trainer = _instrument(loss, grad, threshold, skipped), NS(should_stop=False)
    for step in range(len(loss)):
        if (step + 1) % every == 0 or step == len(loss) - 1:
            inst._check_explosion(trainer, NS(freeze=lambda members: None), step)
            if inst.exploded:
                assert trainer.should_stop
                return step
    return None


def _classify(loss, grad, threshold, skipped=False):
    n = len(loss)
    trace = Trace(
        task="classification",
        num_classes=10,
        step_loss=np.asarray(loss, float),
        step_grad_norm=np.asarray(grad, float),
        eval_steps=np.asarray([0, n]),
        val_loss=np.asarray([2.3, 2.3]),
        val_acc=np.asarray([0.1, 0.1]),
        layer_steps=np.asarray([0]),
        layer_grad_norm=np.asarray([[1.0, 1.0]]),
        grad_overflow_skipped=skipped,
    )
    return classify(trace, {**T, "explode_grad_norm": threshold})


T = {"target_accuracy": 0.9, "target_loss": 0.1, "vanish_grad_norm": 1e-7, "vanish_ratio": 1e-4}
T |= {"loss_progress": 0.05, "chance_margin": 0.05}
TRACES = [
    ([2.3, 2.2, 2.1, 2.0, 1.9], [1.0, 1.0, 1.0, 1.0, 1.0], False),  # healthy
    ([2.3, 2.2, math.nan, math.nan, math.nan], [1.0, 1.0, 1.0, 1.0, 1.0], False),  # nan loss
    ([2.3, 2.2, 2.1, 2.0, 1.9], [1.0, 5.0, 2e3, 1.0, 1.0], False),  # norm over the threshold
    ([2.3, 2.2, 2.1, 2.0, 1.9], [1.0, 1.0, 1.0, math.inf, 1.0], False),  # inf norm
    ([2.3, 2.2, 2.1, 2.0, 1.9], [math.inf, math.nan, 1.0, 1.0, 1.0], True),  # fp16 overflow skips
    ([2.3, 2.2, 2.1, math.inf, 1.9], [math.inf, 1.0, 1.0, 1.0, 1.0], True),  # ... but inf loss
]


@pytest.mark.parametrize(("loss", "grad", "skipped"), TRACES)
def test_instrument_stop_and_classify_agree(loss, grad, skipped) -> None:
    out = _classify(loss, grad, 1e3, skipped)
    first = out.explode_step if out.label == "exploded" else None
    assert _stop_step(loss, grad, 1e3, skipped) == first  # CPU: every step
    # An accelerator checks every few steps: it stops at the first check after the explosion.
    every = 2
    stop = _stop_step(loss, grad, 1e3, skipped, every=every)
    if first is None:
        assert stop is None
    else:
        assert stop is not None and first <= stop < first + every


def test_metric_history_is_a_thinned_view_of_the_curves():
    """MLflow's history holds at most HISTORY_POINTS per training/layer curve (first and last
    kept) and a constant lr as two points; the validation curve stays whole; trial.json keeps
    everything."""
    steps = list(range(600))
    rec = TrialRecord(
        summary={"initial_loss": 2.3},
        curves={
            "train": {"step": steps, "loss": [1.0 / (s + 1) for s in steps], "lr": [0.1] * 600},
            "eval": {"step": list(range(0, 600, 10)), "val_loss": [1.0] * 60},
            "layers": {"step": steps, "grad_norm": [[1.0, 2.0, 3.0]] * 600},
        },
    )
    metrics = R.trial_metrics(rec)
    loss = [(v, s) for k, v, s in metrics if k == "train_loss"]
    assert len(loss) == R.HISTORY_POINTS and loss[0] == (1.0, 0) and loss[-1] == (1 / 600, 599)
    assert [(v, s) for k, v, s in metrics if k == "lr"] == [(0.1, 0), (0.1, 599)]
    assert len([m for m in metrics if m[0] == "val_loss"]) == 60
    assert len([m for m in metrics if m[0] == "layer_grad_norm/02"]) == R.HISTORY_POINTS
    assert not [m for m in metrics if m[0] == "layer_grad_norm/01"]
    assert len(rec.curves["train"]["loss"]) == 600  # the record itself is untouched
