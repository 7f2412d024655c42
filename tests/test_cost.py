"""The GPU cost estimate `plan` prints: it grows with what a trial does, never with the clock."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gradatlas.app.cost import CostEstimate, estimate_cost, format_cost, trial_cost
from gradatlas.suites import load_suite

SMOKE = [
    "name=atlas-smoke",
    "dataset.name=mnist1d",
    "seeds=2",
    "train.epochs=8",
    "grid.depth=[2, 20]",
    "grid.activation=[relu, sigmoid]",
    "grid.init=[kaiming_normal, {name: normal, std: 1.0}]",
    "grid.norm=[none, batchnorm]",
    "grid.residual=[false]",
    "grid.weight_decay=[0]",
    "grid.dropout=[0.0]",
    "grid.optimizer=[{name: sgd, lr: 0.1}, {name: adam, lr: 1.0e-3}]",
]


def cost(*overrides: str) -> CostEstimate:
    """The quickstart suite (18 cells x 3 seeds on MNIST-1D) with overrides, costed."""
    return estimate_cost(load_suite("quickstart", overrides).trials)


def one_trial(*overrides: str):
    """A single-cell, single-seed suite's one trial spec."""
    base = ("grid.depth=[3]", "grid.activation=[relu]", "grid.init=[kaiming_normal]", "seeds=1")
    return load_suite("quickstart", [*base, *overrides]).trials[0].spec


def test_the_estimate_adds_up_over_the_trials():
    suite = load_suite("quickstart")
    est = estimate_cost(suite.trials)
    assert est.trials == len(suite.trials) == 54
    assert est.steps == 54 * 16 * 25  # 3,200 MNIST-1D training examples in batches of 128
    assert est.gpu_seconds == pytest.approx(sum(trial_cost(t.spec)[2] for t in suite.trials))
    assert est.gpu_hours == pytest.approx(est.gpu_seconds / 3600)
    assert est.mean_seconds == pytest.approx(est.gpu_seconds / 54)
    assert est.wall_hours(4) == pytest.approx(est.gpu_hours / 4)
    assert estimate_cost([]).gpu_seconds == 0 and estimate_cost([]).mean_seconds == 0


def test_more_steps_cost_more():
    assert cost("train.epochs=48").gpu_seconds > cost().gpu_seconds
    short = trial_cost(one_trial("train.steps=100"))
    long = trial_cost(one_trial("train.steps=1000"))
    assert (short[0], long[0]) == (100, 1000)
    assert long[1] > short[1] and long[2] > short[2]
    # Fewer examples per epoch make fewer steps (and an epoch is ceil(train / batch) steps).
    small = one_trial("dataset.options={num_samples: 1000}")
    assert trial_cost(small)[0] == 16 * 5  # 640 training examples in batches of 128


def test_deeper_and_wider_nets_cost_more():
    assert cost("grid.depth=[3, 40]").gpu_seconds > cost().gpu_seconds
    assert cost("model.width=256").flops > cost().flops
    assert cost("model.width=256").gpu_seconds > cost().gpu_seconds


def test_seeds_multiply_the_cost():
    assert cost("seeds=6").gpu_seconds == pytest.approx(2 * cost().gpu_seconds)
    assert cost("seeds=6").trials == 2 * cost().trials


def test_a_conv_net_costs_more_than_an_mlp_of_the_same_width():
    mlp = trial_cost(one_trial("model.family=mlp"))
    cnn = trial_cost(one_trial("model.family=cnn"))
    assert mlp[0] == cnn[0]  # same steps: only the arithmetic per step differs
    assert cnn[1] > mlp[1] and cnn[2] > mlp[2]
    # On 32x32 images every conv weight is applied at 1,024 positions.
    cifar = ["dataset.name=cifar10", "seeds=1", "grid.depth=[20]"]
    mlp_c = load_suite("atlas", cifar).trials[0].spec
    cnn_c = load_suite("atlas", [*cifar, "model.family=cnn"]).trials[0].spec
    assert (mlp_c.model.width, mlp_c.model.depth) == (cnn_c.model.width, cnn_c.model.depth)
    assert trial_cost(cnn_c)[1] > 100 * trial_cost(mlp_c)[1]


def test_the_atlas_smoke_slice_is_small_and_the_full_atlas_is_a_cluster_job():
    smoke = estimate_cost(load_suite("atlas", SMOKE).trials)
    assert smoke.trials == 64
    assert smoke.gpu_hours < 0.1
    full = load_suite("atlas", ["dataset.name=cifar10", "model.family=cnn"])
    est = estimate_cost(full.trials)
    assert est.trials == 86_400 and est.gpu_hours > 100 * smoke.gpu_hours
    assert est.gpu_hours > 100  # sized for a cluster, not a workstation


def test_the_line_plan_prints_states_its_assumptions():
    est = cost()
    line = format_cost(est, gpus=4)
    assert line.startswith("estimated cost: ")
    assert "GPU-hours" in line and "per trial" in line and "on 4 GPUs" in line
    assert est.assumptions in line and "TFLOP/s" in est.assumptions and "\n" not in line


def test_the_cost_module_imports_no_torch():
    code = (
        "import sys; from gradatlas.app.cost import estimate_cost; "
        "from gradatlas.suites import load_suite; estimate_cost(load_suite('quickstart').trials); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_workers_auto_weighs_the_work_against_rays_start_up():
    """The issue's measurement: a 24-trial, 200-step suite (depths 3 and 10) ran faster in one
    process than on 2 Ray workers. The quickstart fused (the default) is about as much work as
    Ray's start-up on 2 workers saves (measured: 38.2 s in one process, 37.9 s on 2 workers),
    so it stays in this process there; one cell at a time, or on 4 workers, it is worth Ray."""
    from gradatlas.app.cost import RAY_STARTUP_S, cpu_seconds, worth_ray

    small = load_suite(
        "quickstart",
        ["train.epochs=8", "grid.depth=[3, 10]", "grid.init=[kaiming_normal, xavier_normal]",
         "seeds=2"],
    ).trials  # fmt: skip
    assert len(small) == 24
    quick = load_suite("quickstart").trials
    assert cpu_seconds(small) < cpu_seconds(quick)
    assert not worth_ray(cpu_seconds(small), 2)
    assert not worth_ray(cpu_seconds(small, fuse=False, batch_seeds=1), 2)
    assert not worth_ray(cpu_seconds(quick), 2)
    assert worth_ray(cpu_seconds(quick), 4)
    assert worth_ray(cpu_seconds(quick, fuse=False), 2)
    assert worth_ray(cpu_seconds(load_suite("quickstart", ["train.epochs=64"]).trials), 2)
    assert not worth_ray(10 * RAY_STARTUP_S, 1)  # one worker never pays for Ray


def test_workers_auto_runs_a_small_suite_in_this_process(tiny_suite, tmp_path):
    from tests.conftest import run_cli

    uri = f"sqlite:///{tmp_path}/w.db"
    proc = run_cli("run", str(tiny_suite), "--workers", "auto", "--tracking-uri", uri,
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "running in this process" in proc.stderr
    assert "on this process" in proc.stderr and "Ray workers" not in proc.stderr
    # one torch thread, as the estimate priced it (many threads on a busy machine wait on
    # each other), unless --threads says otherwise
    assert "(1 torch thread)" in proc.stderr


# -- the CPU estimate of fused and unfused runs ----------------------------------------------
def slice_trials():
    """benchmarks/fused.py's atlas slice: 2 shapes of 108 members (init x weight decay x
    dropout x 4 seeds), 54 cells."""
    import yaml

    from tests.conftest import load_benchmark

    bench = load_benchmark("fused")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slice.yaml"
        path.write_text(yaml.safe_dump(bench.SLICE, sort_keys=False))
        return load_suite(str(path)).trials


def test_the_cpu_estimate_prices_stacked_groups():
    from gradatlas.app.cost import cpu_groups, estimate_units_cpu, group_cpu_seconds

    quick = load_suite("quickstart").trials
    fused = cpu_groups(quick, fuse=True)
    assert sorted(len(g.trials) for g in fused) == [9] * 6  # 6 shapes of 3 inits x 3 seeds
    assert sorted(len(g.trials) for g in cpu_groups(quick, fuse=False)) == [3] * 18
    assert len(cpu_groups(quick, fuse=True, batch_seeds=1)) == 54  # --no-batch: alone
    by_four = sorted(len(g.trials) for g in cpu_groups(quick, fuse=True, batch_seeds=4))
    assert by_four == sorted([4, 4, 1] * 6)  # --batch-seeds 4: each shape's 9 as 4 + 4 + 1
    assert estimate_units_cpu(quick, fuse=True) == pytest.approx(
        sum(group_cpu_seconds(g.steps, g.depth, len(g.trials)) for g in fused)
    )
    sliced = cpu_groups(slice_trials(), fuse=True)
    assert [(len(g.trials), g.dropout_members) for g in sliced] == [(108, 72)] * 2
    assert estimate_units_cpu([], fuse=True) == 0


def test_fused_trials_cost_less_cpu_than_cells_and_cells_less_than_trials_alone():
    from gradatlas.app.cost import estimate_units_cpu

    for trials in (load_suite("quickstart").trials, slice_trials()):
        fused = estimate_units_cpu(trials, fuse=True)
        cells = estimate_units_cpu(trials, fuse=False)
        alone = estimate_units_cpu(trials, fuse=False, batch_seeds=1)
        assert 0 < fused < cells < alone
        assert estimate_units_cpu(trials, fuse=True, batch_seeds=1) == pytest.approx(alone)


def test_a_groups_cpu_cost_grows_with_steps_depth_members_and_dropout():
    from gradatlas.app.cost import CPU_TERMS, cpu_terms, group_cpu_seconds

    base = group_cpu_seconds(100, 10, 16)
    assert group_cpu_seconds(200, 10, 16) > base
    assert group_cpu_seconds(100, 20, 16) > base
    assert group_cpu_seconds(100, 10, 64) > base
    assert group_cpu_seconds(100, 10, 16, dropout_members=8) > base
    # ... but a member of a group costs less than a trial alone, per step
    assert group_cpu_seconds(100, 10, 16) < 16 * group_cpu_seconds(100, 10, 1)
    # the formula is the benchmark's: the constants times their terms
    import gradatlas.app.cost as cost

    terms = cpu_terms(80, 20, 64, 32)
    assert sum(getattr(cost, n) * t for n, t in zip(CPU_TERMS, terms, strict=True)) == (
        pytest.approx(group_cpu_seconds(80, 20, 64, 32))
    )
    # and for whole suites: more epochs, deeper nets, more seeds (more members per shape)
    from gradatlas.app.cost import estimate_units_cpu

    def fused(*overrides: str) -> float:
        return estimate_units_cpu(load_suite("quickstart", list(overrides)).trials, fuse=True)

    assert fused("train.epochs=32") > fused()
    assert fused("grid.depth=[3, 40]") > fused()
    assert fused("seeds=6") > fused()
    assert fused("seeds=6") < 2 * fused()  # twice the members, less than twice the cost


def test_heavier_nets_cost_their_flops_on_the_cpu():
    """A member's arithmetic is the larger of the per-layer terms (fitted on width-64 MLPs) and
    its FLOPs at CPU_EFFECTIVE_FLOPS: wider and conv nets cost more than width-64 MLPs."""
    from gradatlas.app.cost import CPU_EFFECTIVE_FLOPS, estimate_units_cpu, group_cpu_seconds

    assert group_cpu_seconds(100, 10, 16, flops_per_step=1.0) == group_cpu_seconds(100, 10, 16)
    heavy = group_cpu_seconds(100, 10, 16, flops_per_step=CPU_EFFECTIVE_FLOPS * 0.01)
    assert heavy > group_cpu_seconds(100, 10, 16) + 16 * 100 * 0.009

    def fused(*overrides: str) -> float:
        return estimate_units_cpu(load_suite("quickstart", list(overrides)).trials, fuse=True)

    assert fused("model.width=256") > 2 * fused()
    assert fused("model.family=cnn") > fused()
    # A CPU core is no match for an H200 on conv nets over 32x32 images.
    cifar = load_suite("atlas", ["dataset.name=cifar10", "model.family=cnn", "grid.depth=[20]",
                                 "seeds=1"]).trials  # fmt: skip
    assert estimate_units_cpu(cifar, fuse=True) > 100 * estimate_cost(cifar).gpu_seconds


def test_plan_prints_the_cpu_estimate_fused_and_not(capsys):
    from gradatlas.app.cli import main
    from gradatlas.app.cost import _cpu_time, estimate_units_cpu

    assert main(["plan", "quickstart"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("on this CPU"))
    quick = load_suite("quickstart").trials
    fused = _cpu_time(estimate_units_cpu(quick, fuse=True))
    cells = _cpu_time(estimate_units_cpu(quick, fuse=False))
    assert f"≈ {fused} fused, {cells} one cell at a time" in line
    assert "execution.fuse: auto" in line
    gpu = next(x for x in out.splitlines() if x.startswith("estimated cost: "))
    assert "upper bound" in gpu and "fused" in gpu


def test_plan_imports_no_torch():
    code = (
        "import sys; from gradatlas.app.cli import main; main(['plan', 'quickstart']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "on this CPU" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_workers_auto_prices_the_suite_as_it_will_be_grouped(monkeypatch):
    """``--workers auto`` weighs the fused estimate when the suite fuses, the cells' when it
    does not (``--no-fuse``, ``execution.fuse: off``), with the seeds setting it will run with."""
    import argparse

    import gradatlas.app.cost as cost
    from gradatlas.app.cli import _make_executor

    seen = []

    def spy(trials, fuse=True, batch_seeds="auto"):
        seen.append((fuse, batch_seeds))
        return 0.0  # too little for Ray: stays in this process

    monkeypatch.setattr(cost, "cpu_seconds", spy)

    def decide(suite_overrides=(), **flags):
        args = argparse.Namespace(workers="auto", ray_address=None, accelerator="cpu",
                                  gpus_per_worker=None, threads=1, no_fuse=False,
                                  batch_seeds=None, no_batch=False)  # fmt: skip
        vars(args).update(flags)
        executor = _make_executor(args, load_suite("quickstart", list(suite_overrides)))
        assert type(executor).__name__ == "InProcessExecutor"
        return seen.pop()

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert decide() == (True, "auto")
    assert decide(no_fuse=True) == (False, "auto")
    assert decide(["execution.fuse=off"]) == (False, "auto")
    assert decide(no_batch=True) == (True, 1)
    assert decide(batch_seeds="4") == (True, 4)
    assert decide(["execution.batch_seeds=2"]) == (True, 2)
