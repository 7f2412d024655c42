"""The runner on a CUDA device (skipped where there is none; run on a lent GPU machine).

On an accelerator the instrument checks for explosions every ``instrument.every`` steps rather
than every step (each check is a device sync); the verdicts must not change because of it.
"""

from __future__ import annotations

import pytest
import torch

from gradatlas.runners.trial import run_trial
from gradatlas.suites import load_suite
from tests.conftest import load_benchmark

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

BODY = """
dataset: {name: digits}
model: {family: mlp, width: 64}
train: {steps: 60, batch_size: 64, lr: 0.1, eval_every: 20}
instrument: {every: 10, max_points: 30, probe_batch: 64}
"""


def test_gpu_verdicts_match_cpu(write):
    path = write(
        "name: gpu\n"
        + BODY
        + "grid:\n  depth: [3, 20]\n  activation: [relu, sigmoid]\n"
        + "  init: [xavier_normal, {name: normal, std: 1.0}]\n"
    )
    for trial in load_suite(str(path)).trials:
        gpu = run_trial(trial, accelerator="gpu")
        cpu = run_trial(trial, accelerator="cpu")
        assert gpu.device.startswith("cuda")
        assert gpu.outcome.label == cpu.outcome.label, trial.run_name
        if cpu.outcome.label == "exploded":
            # Detected at the first check after the explosion, but the step is exact.
            assert gpu.outcome.explode_step == cpu.outcome.explode_step
        else:
            assert gpu.summary["steps_run"] == 60


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_on_gpu(write, precision):
    (trial,) = load_suite(
        str(
            write(
                "name: amp\n"
                + BODY.replace("eval_every: 20", f"eval_every: 20, precision: '{precision}'")
            )
        )
    ).trials
    r = run_trial(trial, accelerator="gpu")
    assert r.summary["steps_run"] == 60 and r.outcome.label != "exploded"


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.norm=batchnorm", "train.precision='64'", "model.activation=relu"],
        ["model.family=cnn", "model.width=8", "model.norm=layernorm", "train.precision='64'"],
        ["train.optimizer=sgd", "train.lr=4.0", "seeds=6", "train.precision='64'"],
    ],
)
def test_batched_seeds_match_alone_on_gpu(tmp_path, overrides):
    """float64 (no TF32 in cuDNN or cuBLAS), so the comparison is about batching alone."""
    from gradatlas.runners.parity import compare

    cases = load_benchmark("batched_parity")
    p = compare(cases.trials_for(overrides, tmp_path), accelerator="gpu")
    assert p.init_identical and p.same_outcomes
    assert p.worst_loss_rel <= 1e-9, p


@pytest.mark.parametrize(
    "case", ["mlp adam mixed float64", "mlp momentum mixed float64", "mlp sgd mixed float64"]
)
def test_fused_members_match_alone_on_gpu(tmp_path, case):
    """Fused cells (lr, schedule, options, weight decay, dropout, clipping, label smoothing)
    on the GPU, float64: dropout draws from each member's CUDA stream as its trial alone."""
    from gradatlas.runners.parity import compare

    cases = load_benchmark("fused_parity")
    p = compare(cases.trials_for(case, tmp_path), accelerator="gpu")
    assert p.init_identical and p.same_outcomes
    assert p.worst_loss_rel <= 1e-9, p
