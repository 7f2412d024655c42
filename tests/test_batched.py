"""Batched seeds: the seeds of a cell trained as one stacked model are the same trials.

Parity cases live in benchmarks/batched_parity.py (their table is docs/perf/batched_parity.md):
every member's per-step losses against the same seed trained alone, within 1e-5 relative in
float32 and 1e-9 in float64, init bit for bit, same outcome and explode step.
"""

from __future__ import annotations

import pytest
import torch

from gradatlas.runners import batching
from gradatlas.runners.executor import InProcessExecutor, make_units, run_unit
from gradatlas.runners.parity import compare
from gradatlas.runners.sweep import run_suite
from gradatlas.suites import load_suite
from tests.conftest import load_benchmark, new_store, run_cli

parity_cases = load_benchmark("batched_parity")


@pytest.mark.parametrize("case", list(parity_cases.CASES))
def test_members_match_their_unbatched_trials(case, tmp_path):
    overrides, tol = parity_cases.CASES[case]
    trials = parity_cases.trials_for(overrides, tmp_path)
    p = compare(trials)
    assert p.init_identical
    assert p.steps >= 2 if "explode" in case else p.steps >= 50
    assert p.worst_loss_rel <= tol, f"{case}: worst relative loss difference {p.worst_loss_rel}"
    assert p.same_outcomes, (p.labels_alone, p.labels_batched)
    if "explode" in case:  # some members exploded early, the others ran their whole budget
        steps = p.explode_steps_batched
        assert any(s is not None for s in steps) and any(s is None for s in steps)


@pytest.mark.parametrize(("loss", "scale"), [("cross_entropy", 3.0), ("mse", 0.5)])
def test_members_match_their_unbatched_trials_under_loss_and_logit_scale(loss, scale, tmp_path):
    """The output factors of claim C3: every member is scaled and scored like its unbatched
    trial (float64, ReLU: 1e-9), and so are its update norms (claim C7's measure). (MSE and its
    gradient grow with the scale squared: at 3 some seeds explode within a few steps.)"""
    from gradatlas.runners.parity import worst_rel
    from gradatlas.runners.trial import run_trial, run_trials

    overrides = [f"model.logit_scale={scale}", f"train.loss={loss}", "train.steps=20",
                 "train.precision='64'", "model.activation=relu"]  # fmt: skip
    trials = parity_cases.trials_for(overrides, tmp_path)
    assert trials[0].spec.model.logit_scale == scale and trials[0].spec.train.loss == loss
    p = compare(trials)
    assert p.init_identical and p.steps == 20 and p.same_outcomes
    assert p.worst_loss_rel <= 1e-9 and p.worst_eval_rel <= 1e-9, p
    batched = run_trials(trials, accelerator="cpu")
    for trial, member in zip(trials, batched, strict=True):
        alone = run_trial(trial, accelerator="cpu").curves["train"]["update_norm"]
        assert worst_rel(alone, member.curves["train"]["update_norm"]) <= 1e-9


def test_parity_detects_a_different_trial(tmp_path):
    """The comparison can fail: members set against other seeds' unbatched runs differ."""
    from gradatlas.runners.parity import worst_rel
    from gradatlas.runners.trial import run_trial, run_trials

    trials = parity_cases.trials_for([], tmp_path)
    batched = run_trials(trials, accelerator="cpu")
    other = run_trial(trials[1], accelerator="cpu")
    assert worst_rel(other.curves["train"]["loss"], batched[0].curves["train"]["loss"]) > 1e-3


@pytest.mark.e2e  # 108 trainings: the whole quickstart twice
def test_quickstart_labels_are_the_same_batched_and_alone():
    """Every quickstart cell (budget cut to 2 epochs): the same label per trial id."""
    suite = load_suite("quickstart", ["train.epochs=2"])
    units = make_units(suite.trials, batch_seeds="auto")
    alone = {}
    batched = {}
    for unit in units:
        solo = run_unit(make_units(unit.trials, batch_seeds=1)[0], accelerator="cpu", threads=1)
        together = run_unit(unit, accelerator="cpu", threads=1)
        assert not solo.failures and not together.failures
        alone |= {r.trial.trial_id: r.outcome.label for r in solo.results}
        batched |= {r.trial.trial_id: r.outcome.label for r in together.results}
        assert {r.timing["batch_seeds"] for r in together.results} == {len(unit.trials)}
    assert len(alone) == len(suite.trials) == 54
    assert alone == batched
    assert set(alone.values()) >= {"exploded", "vanished"}  # the regimes that matter are there


# -- the choice: an execution setting, outside every trial's identity ---------------------------
def test_execution_block_is_not_part_of_the_trial_id(write):
    base = "name: e\ndataset: {name: digits}\nseeds: 3\ntrain: {steps: 5}\n"
    plain = load_suite(str(write(base, "a.yaml")))
    one = load_suite(str(write(base + "execution: {batch_seeds: 1}\n", "b.yaml")))
    assert [t.trial_id for t in plain.trials] == [t.trial_id for t in one.trials]
    assert plain.spec.execution.batch_seeds == "auto" and one.spec.execution.batch_seeds == 1


def test_seed_groups(write):
    body = "name: g\ndataset: {name: digits}\nseeds: 5\ntrain: {steps: 5}\n"
    trials = load_suite(str(write(body))).trials
    cpu = torch.device("cpu")
    assert [len(g) for g in batching.seed_groups(trials, "auto", cpu)] == [5]
    assert [len(g) for g in batching.seed_groups(trials, 2, cpu)] == [2, 2, 1]
    assert [len(g) for g in batching.seed_groups(trials, 1, cpu)] == [1] * 5
    mixed = load_suite(
        str(write(body + "execution: {batch_seeds: 4}\n", "m.yaml")), ["train.precision=16-mixed"]
    ).trials
    assert [len(g) for g in batching.seed_groups(mixed, 4, cpu)] == [1] * 5


def test_a_group_that_raises_is_retried_one_trial_at_a_time(write, monkeypatch):
    """Fault injection: the stacked run raises; each seed then runs alone and is a result."""
    from gradatlas.runners import trial as trial_module

    real = trial_module.run_trials

    def stacked_fails(trials, **kw):
        if len(trials) > 1:
            raise RuntimeError("out of memory (injected)")
        return real(trials, **kw)

    monkeypatch.setattr(trial_module, "run_trials", stacked_fails)
    body = "name: f\ndataset: {name: digits}\nseeds: 3\ntrain: {steps: 5}\n"
    (unit,) = make_units(load_suite(str(write(body))).trials, batch_seeds="auto")
    out = run_unit(unit, accelerator="cpu")
    assert not out.failures and len(out.results) == 3
    assert [r.timing["batch_seeds"] for r in out.results] == [1.0, 1.0, 1.0]


def test_sweep_records_each_member_as_its_own_trial_and_resumes_missing_seeds(tiny_suite, tmp_path):
    from mlflow import MlflowClient

    from gradatlas.record import BATCH_SEEDS, TRIAL_ID
    from gradatlas.store import open_store

    suite = load_suite(str(tiny_suite))
    uri = new_store(tmp_path / "mlflow.db")
    executor = InProcessExecutor(accelerator="cpu", threads=1)
    first = run_suite(suite, uri, limit=1, executor=executor)  # half of the first cell
    assert first.ran == 1
    rest = run_suite(suite, uri, executor=InProcessExecutor(accelerator="cpu", threads=1))
    assert rest.ran == len(suite.trials) - 1 and not rest.failures
    open_store(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    finished = "tags.`gradatlas.kind` = 'trial' and attributes.status = 'FINISHED'"
    runs = client.search_runs([exp.experiment_id], finished, max_results=100)
    ids = [r.data.tags[TRIAL_ID] for r in runs]
    assert sorted(ids) == sorted(t.trial_id for t in suite.trials)  # once each, same ids
    batch = {r.data.tags[TRIAL_ID]: r.data.tags[BATCH_SEEDS] for r in runs}
    first_cell = [t.trial_id for t in suite.trials if t.cell_id == suite.trials[0].cell_id]
    assert [batch[i] for i in first_cell] == ["1", "1"]  # the missing seed trained alone
    others = [t.trial_id for t in suite.trials if t.trial_id not in first_cell]
    assert {batch[i] for i in others} == {"2"}


def test_bad_batch_settings_exit_2_naming_the_field(write, tmp_path):
    good = write("name: c\ndataset: {name: digits}\ntrain: {steps: 5}\n", "good.yaml")
    bad = write(
        "name: c\ndataset: {name: digits}\ntrain: {steps: 5}\nexecution: {batch_seeds: 0}\n",
        "bad.yaml",
    )
    proc = run_cli("validate", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "execution.batch_seeds" in proc.stderr
    proc = run_cli("run", str(good), "--batch-seeds", "many", "--tracking-uri",
                f"sqlite:///{tmp_path}/x.db", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "--batch-seeds" in proc.stderr
    assert not (tmp_path / "x.db").exists()  # nothing written
    proc = run_cli("run", str(good), "--no-batch", "--batch-seeds", "2", cwd=tmp_path)
    assert proc.returncode == 2


def test_a_killed_recorder_ends_the_sweep_with_a_write_error(tiny_suite, tmp_path, monkeypatch):
    """The recorder process dies mid-sweep: one clear error (exit 2 in the CLI), no traceback,
    what it wrote stays, a rerun resumes."""
    import signal

    from gradatlas.runners import recorder as recorder_module

    real_put = recorder_module.Recorder.put

    def put_then_kill(self, unit, writes=None):
        real_put(self, unit, writes)
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait()

    monkeypatch.setattr(recorder_module.Recorder, "put", put_then_kill)
    suite = load_suite(str(tiny_suite))
    uri = new_store(tmp_path / "mlflow.db")
    summary = run_suite(suite, uri, executor=InProcessExecutor(accelerator="cpu", threads=1))
    assert summary.write_error and "recorder" in summary.write_error
    monkeypatch.undo()
    rest = run_suite(suite, uri, executor=InProcessExecutor(accelerator="cpu", threads=1))
    assert not rest.write_error
    assert rest.skipped + rest.ran == len(suite.trials)
