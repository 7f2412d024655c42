"""Fused trials: cells of one shape trained as members of one stacked model are the same trials.

Parity cases live in benchmarks/fused_parity.py (their table is docs/perf/fused_parity.md):
members that differ in seed, init, lr, schedule, optimizer options, weight decay, dropout p,
clipping bound and label smoothing, each against the same trial alone: per-step losses within
1e-5 relative in float32 and 1e-9 in float64, init bit for bit, same outcome and explode step.
"""

from __future__ import annotations

import pytest

from gradatlas.runners import batching
from gradatlas.runners.executor import InProcessExecutor, make_units, run_unit
from gradatlas.runners.parity import compare
from gradatlas.runners.sweep import run_suite
from gradatlas.suites import load_suite
from tests.conftest import load_benchmark, new_store, run_cli

parity_cases = load_benchmark("fused_parity")

MIXED = """
name: mixed
dataset: {name: digits}
model: {family: mlp, width: 16, depth: 3, activation: tanh}
grid:
  lr: [0.05, 0.1]
  init: [kaiming_normal, xavier_normal]
  dropout: [0, 0.2]
  weight_decay: [0, 1.0e-3]
seeds: 2
train: {steps: 30, batch_size: 64, optimizer: momentum, eval_every: 10, grad_clip: {norm: 1.0}}
instrument: {every: 5, max_points: 1000, probe_batch: 64}
"""


@pytest.mark.parametrize("case", list(parity_cases.CASES))
def test_fused_members_match_their_trials_alone(case, tmp_path):
    _, tol = parity_cases.CASES[case]
    trials = parity_cases.trials_for(case, tmp_path)
    assert len({t.cell_id for t in trials}) == 3 and len(trials) == 6
    assert len({batching.shape_key(t) for t in trials}) == 1
    p = compare(trials)
    assert p.init_identical
    assert p.steps >= 50
    assert p.worst_loss_rel <= tol, f"{case}: worst relative loss difference {p.worst_loss_rel}"
    assert p.worst_eval_rel <= tol, f"{case}: worst relative val-loss difference {p.worst_eval_rel}"
    assert p.same_outcomes, (p.labels_alone, p.labels_batched)


def test_fused_parity_can_fail(tmp_path):
    """The comparison sees a member set against another cell's trial alone."""
    from gradatlas.runners.parity import worst_rel
    from gradatlas.runners.trial import run_trial, run_trials

    trials = parity_cases.trials_for("mlp momentum mixed", tmp_path)
    fused = run_trials(trials, accelerator="cpu")
    other = run_trial(trials[2], accelerator="cpu")  # another cell (lr, init, wd, dropout ...)
    assert worst_rel(other.curves["train"]["loss"], fused[0].curves["train"]["loss"]) > 1e-3


def test_fused_members_record_their_own_learning_rate_schedule(tmp_path):
    from gradatlas.runners.trial import run_trial, run_trials

    trials = parity_cases.trials_for("mlp adam mixed", tmp_path)
    fused = run_trials(trials, accelerator="cpu")
    for trial, member in zip(trials, fused, strict=True):
        alone = run_trial(trial, accelerator="cpu")
        assert member.curves["train"]["lr"] == alone.curves["train"]["lr"]
    schedules = {tuple(m.curves["train"]["lr"]) for m in fused}
    assert len(schedules) == 3  # constant, cosine, warm-up: each member its own


def test_shape_key_separates_what_must_not_share_a_model(write):
    trials = load_suite(str(write(MIXED))).trials
    assert len(trials) == 32 and len({t.cell_id for t in trials}) == 16
    assert len({batching.shape_key(t) for t in trials}) == 1
    deeper = load_suite(str(write(MIXED, "d.yaml")), ["model.depth=4"]).trials
    adam = load_suite(str(write(MIXED, "a.yaml")), ["train.optimizer=adam"]).trials
    value = load_suite(str(write(MIXED, "v.yaml")), ["train.grad_clip={value: 1.0}"]).trials
    keys = {batching.shape_key(t[0]) for t in (trials, deeper, adam, value)}
    assert len(keys) == 4  # depth, optimizer family and clipping mode are the shape


def test_make_units_fuses_by_shape_or_keeps_cells(write):
    trials = load_suite(str(write(MIXED))).trials
    assert [len(u.trials) for u in make_units(trials, fuse=True)] == [32]
    assert [len(u.trials) for u in make_units(trials, fuse=False)] == [2] * 16
    mixed = load_suite(str(write(MIXED, "m.yaml")), ["train.precision=16-mixed"]).trials
    assert len(make_units(mixed, fuse=True)) == 16  # 16-mixed never stacks: cells as before


def test_quickstart_plan_shows_fused_units(tmp_path):
    proc = run_cli("plan", "quickstart", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "work units: 6, one per shape (execution.fuse: auto); 18 cells" in proc.stdout
    assert "[varies: init, seed]" in proc.stdout


def test_fuse_off_unquoted_reads_as_the_word(write):
    """YAML 1.1 turns a bare ``off`` into False: ``fuse: off`` in a file and
    ``--set execution.fuse=off`` must still mean off (and ``on`` auto), not a type error."""
    text = "name: c\ndataset: {name: digits}\ntrain: {steps: 5}\nexecution: {fuse: %s}\n"
    for word, meant in (("off", "off"), ("no", "off"), ("on", "auto"), ("'off'", "off")):
        suite = load_suite(str(write(text % word, "switch.yaml")))
        assert suite.spec.execution.fuse == meant, word
    over = load_suite(str(write(text % "auto", "over.yaml")), ["execution.fuse=off"])
    assert over.spec.execution.fuse == "off"


def test_fused_sweep_records_the_same_trials_and_labels_as_cells(write, tmp_path):
    """The record does not change with fusion: same trial ids, same labels, each member its
    own run, tagged with how many trained together."""
    from gradatlas.record import BATCH_SEEDS, OUTCOME, TRIAL_ID
    from gradatlas.store import open_store

    suite = load_suite(str(write(MIXED)), ["train.steps=20"])
    labels, batches = {}, {}
    for fuse in (True, False):
        uri = new_store(tmp_path / f"fuse{fuse}.db")
        summary = run_suite(
            suite, uri, executor=InProcessExecutor(accelerator="cpu", threads=1), fuse=fuse
        )
        assert summary.ran == 32 and not summary.failures
        store = open_store(uri)
        exp = store.get_experiment(name="mixed").experiment_id
        runs = store.find_runs(exp, kind="trial", status="FINISHED", limit=1000)
        labels[fuse] = {r.tags[TRIAL_ID]: r.tags[OUTCOME] for r in runs}
        batches[fuse] = {r.tags[BATCH_SEEDS] for r in runs}
    assert labels[True] == labels[False] and len(labels[True]) == 32
    assert batches == {True: {"32"}, False: {"2"}}


def test_no_fuse_flag_and_bad_fuse_setting(write, tmp_path):
    bad = write(
        "name: c\ndataset: {name: digits}\ntrain: {steps: 5}\nexecution: {fuse: maybe}\n",
        "bad.yaml",
    )
    proc = run_cli("validate", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "execution.fuse" in proc.stderr
    good = write(MIXED, "good.yaml")
    uri = f"sqlite:///{tmp_path}/nf.db"
    proc = run_cli("run", str(good), "--no-fuse", "--set", "train.steps=3", "--limit", "4",
                   "--tracking-uri", uri, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_a_fused_group_that_raises_is_retried_one_trial_at_a_time(write, monkeypatch):
    from gradatlas.runners import trial as trial_module

    real = trial_module.run_trials

    def stacked_fails(trials, **kw):
        if len(trials) > 1:
            raise RuntimeError("out of memory (injected)")
        return real(trials, **kw)

    monkeypatch.setattr(trial_module, "run_trials", stacked_fails)
    trials = load_suite(str(write(MIXED)), ["train.steps=3"]).trials[:6]
    (unit,) = make_units(trials, batch_seeds="auto", fuse=True)
    out = run_unit(unit, accelerator="cpu")
    assert not out.failures and len(out.results) == 6
    assert {r.timing["batch_seeds"] for r in out.results} == {1.0}


def test_a_fused_record_reruns_with_the_trials_it_trained_with(write, tmp_path):
    """``gradatlas repro`` of a fused member: its group is found by the record's
    ``batch_members`` (several cells), rerun fused, and matches bit for bit."""
    from gradatlas.app.repro import load_recorded, reproduce
    from gradatlas.record import BATCH_SEEDS
    from gradatlas.store import open_store

    suite = load_suite(
        str(write(MIXED)), ["train.steps=5", "grid.lr=[0.05]", "grid.init=[xavier_normal]"]
    )
    assert len({t.cell_id for t in suite.trials}) == 4 and len(suite.trials) == 8
    uri = new_store(tmp_path / "repro.db")
    run_suite(suite, uri, executor=InProcessExecutor(accelerator="cpu", threads=1))
    store = open_store(uri)
    exp = store.get_experiment(name="mixed").experiment_id
    run = store.find_runs(exp, kind="trial", status="FINISHED", limit=1)[0]
    assert run.tags[BATCH_SEEDS] == "8"
    rec = load_recorded(uri, run.run_id)
    assert len(rec.group) == 8 and len({r.cell_id for r in rec.group}) == 4
    verdict = reproduce(uri, run.run_id)
    assert verdict.passed and verdict.identical and verdict.mode == "bitwise"
    assert any("rerun fused with the 8 trials of 4 cells" in n for n in verdict.notes)
