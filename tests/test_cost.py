"""The GPU cost estimate `plan` prints: it grows with what a trial does, never with the clock."""

from __future__ import annotations

import subprocess
import sys

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
    process than on 2 Ray workers; the quickstart (54 trials, 400 steps) is worth Ray."""
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
    assert worth_ray(cpu_seconds(quick), 2)
    assert not worth_ray(10 * RAY_STARTUP_S, 1)  # one worker never pays for Ray


def test_workers_auto_runs_a_small_suite_in_this_process(tiny_suite, tmp_path):
    from tests.conftest import run_cli

    uri = f"sqlite:///{tmp_path}/w.db"
    proc = run_cli("run", str(tiny_suite), "--workers", "auto", "--tracking-uri", uri,
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "running in this process" in proc.stderr
    assert "on this process" in proc.stderr and "Ray workers" not in proc.stderr
