"""Packing: the measured memory line a worker sizes its stacked models by, and the split that
keeps fused units from leaving workers idle."""

from __future__ import annotations

import pytest
import torch

from gradatlas.runners import batching, packing
from gradatlas.runners.executor import make_units, run_unit
from gradatlas.suites import load_suite

CPU = torch.device("cpu")
MIXED = """
name: pack
dataset: {name: digits}
model: {family: mlp, width: 16, activation: relu}
grid:
  depth: [2, 6]
  dropout: [0.0, 0.2]
  lr: [0.01, 0.05]
seeds: 2
train: {steps: 4, batch_size: 32, optimizer: momentum}
"""


@pytest.fixture
def units(write):
    """Two fused units (depth 2 and 6) of 8 trials whose dropout and learning rates differ."""
    trials = load_suite(str(write(MIXED))).trials
    found = make_units(trials, batch_seeds="auto", fuse=True)
    assert [len(u.trials) for u in found] == [8, 8]
    return found


def test_the_measured_line_predicts_a_larger_stack_exactly(units):
    """Two probe sizes fix the line; a third size, measured, lies on it (every tensor of a
    stacked model carries the member dimension)."""
    for unit in units:
        cost = packing.measure(unit.trials, CPU)
        assert cost.how == "cpu tensors" and cost.per_member_bytes > 0
        assert packing._probe_once(unit.trials, 6, CPU) == cost.bytes_for(6)


@pytest.mark.parametrize(
    ("family", "norm", "optimizer", "precision"),
    [
        ("cnn", "batchnorm", "momentum", "32"),
        ("mlp", "layernorm", "adam", "64"),
        ("mlp", "batchnorm", "rmsprop", "bf16-mixed"),
    ],
)
def test_every_stacked_form_measures_on_its_line(family, norm, optimizer, precision, write):
    body = (
        MIXED.replace("family: mlp, width: 16", f"family: {family}, width: 8")
        .replace("activation: relu}", f"activation: relu, norm: {norm}}}")
        .replace("optimizer: momentum", f"optimizer: {optimizer}, precision: '{precision}'")
        .replace("depth: [2, 6]", "depth: [2]")
    )
    unit = make_units(load_suite(str(write(body, "forms.yaml"))).trials, fuse=True)[0]
    assert unit.trials[0].spec.model.family == family and len(unit.trials) == 8
    cost = packing.measure(unit.trials, CPU)
    assert packing._probe_once(unit.trials, 6, CPU) == cost.bytes_for(6)


def test_the_line_counts_parameters_state_masks_and_depth(units, write):
    shallow, deep = (packing.measure(u.trials, CPU) for u in units)
    assert deep.per_member_bytes > shallow.per_member_bytes
    # At least parameters, gradients and one momentum buffer per member (float32).
    first = units[0].trials[0].spec
    from gradatlas.datasets import describe
    from gradatlas.models import estimate_parameters

    _, shape, outputs = describe(first.dataset.name, first.dataset.options)
    assert shallow.per_member_bytes >= 3 * 4 * estimate_parameters(first.model, shape, outputs)
    # The same shape without dropout keeps no masks: it measures less per member.
    plain = load_suite(str(write(MIXED.replace("[0.0, 0.2]", "[0.0]"), "plain.yaml"))).trials
    no_dropout = make_units(plain, fuse=True)[0]
    assert packing.measure(no_dropout.trials, CPU).per_member_bytes < shallow.per_member_bytes


def test_the_probe_leaves_the_random_streams_as_it_found_them(units):
    packing._CACHE.clear()
    before = torch.random.get_rng_state()
    packing.measure(units[1].trials, CPU)
    assert torch.equal(before, torch.random.get_rng_state())


def test_group_size_follows_the_budget(units, monkeypatch):
    unit = units[1]
    cost = packing.measure(unit.trials, CPU)
    assert packing.members_per_group(unit.trials, CPU, 256) == 8  # plenty of memory
    assert packing.members_per_group(unit.trials, CPU, 3) == 3  # the cap
    room = cost.fixed_bytes + 5 * cost.per_member_bytes + cost.per_member_bytes // 2
    monkeypatch.setattr(packing, "budget", lambda device: room)
    assert packing.members_per_group(unit.trials, CPU, 256) == 5
    assert [len(g) for g in batching.seed_groups(unit.trials, "auto", CPU)] == [5, 3]
    monkeypatch.setattr(packing, "budget", lambda device: 0)  # nothing fits: one at a time
    assert packing.members_per_group(unit.trials, CPU, 256) == 1


def test_a_unit_packed_by_its_measure_trains_every_trial(units, monkeypatch):
    """Squeezed to 3 members per model, a fused unit still returns each trial once, in order."""
    unit = units[0]
    cost = packing.measure(unit.trials, CPU)
    monkeypatch.setattr(packing, "budget", lambda d: cost.bytes_for(3))
    out = run_unit(unit, accelerator="cpu")
    assert not out.failures
    assert [r.trial.trial_id for r in out.results] == [t.trial_id for t in unit.trials]
    assert sorted({int(r.timing["batch_seeds"]) for r in out.results}) == [2, 3]


def test_cpu_budget_is_a_share_of_available_memory():
    assert packing.budget(CPU) == int(packing.SAFETY["cpu"] * batching.free_memory(CPU))
    assert packing.gpu_share() == 1.0  # not a Ray worker: the whole device


def test_balanced_splits_only_units_that_would_leave_workers_idle(units):
    deep = units[1]
    assert batching.balanced(units, 1) == units  # one worker: nothing to balance
    pieces = batching.balanced(units, 2)
    work = [sum(batching.trial_work(t) for t in u.trials) for u in pieces]
    total = sum(work)
    assert (
        max(work) <= batching.SPLIT_GRAIN * total / 2 + 1e-9
        or min(len(u.trials) for u in pieces) == 1
    )
    # every trial exactly once, in plan order, keys unique
    flat = [t.trial_id for u in pieces for t in u.trials]
    assert flat == [t.trial_id for u in units for t in u.trials]
    assert len({u.key for u in pieces}) == len(pieces)
    assert any(u.key.startswith(deep.key + "#") for u in pieces)
    # many small units (a cell's seeds each): nothing is split
    cells = make_units([t for u in units for t in u.trials], fuse=False)
    assert batching.balanced(cells, 2) == cells


@pytest.mark.e2e
def test_a_ray_worker_on_a_quarter_gpu_budgets_a_quarter():
    """Ray's fractional GPUs: a unit given 0.25 GPU may use a quarter of the GPU's memory.
    (Declared GPUs on this CPU machine: Ray schedules by the resource, nothing touches CUDA.)"""
    import ray

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        share = ray.remote(packing.gpu_share).options(num_gpus=0.25, num_cpus=0.5)
        assert ray.get([share.remote() for _ in range(4)]) == [0.25] * 4
        assert ray.get(ray.remote(packing.gpu_share).options(num_gpus=0).remote()) == 1.0
    finally:
        ray.shutdown()


def test_a_shape_the_probe_cannot_step_trains_one_trial_at_a_time(units, monkeypatch, capsys):
    def broken(trials, members, device):
        raise RuntimeError("CUDA out of memory (injected)")

    packing._CACHE.clear()
    monkeypatch.setattr(packing, "_probe_once", broken)
    assert packing.members_per_group(units[0].trials, CPU, 256) == 1
    assert "CUDA out of memory (injected)); they train one at a time" in capsys.readouterr().err


def test_plan_measure_prints_each_units_measured_packing(units, capsys, write):
    """`gradatlas plan --measure cpu`: per listed unit, the measured line and the group size
    a CPU worker would choose, which is what ``packing`` itself says."""
    from gradatlas.app.cli import main

    path = write(MIXED, "plan.yaml")
    assert main(["plan", str(path), "--measure", "cpu"]) == 0
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines() if "measured on cpu" in line]
    assert len(lines) == 2
    cost = packing.measure(units[1].trials, CPU)
    assert f"{cost.per_member_bytes / 2**20:.2f} MiB per member" in lines[1]
    assert "8 per stacked model" in lines[1] and "at most 256" in lines[1]
    assert main(["plan", str(path)]) == 0  # without --measure: nothing measured
    assert "measured on cpu" not in capsys.readouterr().out
