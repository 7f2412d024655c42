"""What a fused trial asks of a GPU, checked on any machine: no host read inside a training
step, and no kernel per member in a step that has no dropout (``benchmarks/step_anatomy.py``
counts both at torch's dispatcher; the table is ``docs/perf/step_anatomy_cpu.md``).

Why these are tests and not only a benchmark: a GPU runs a small network's step at the rate
it is launched, and a host read waits for the queue to drain. One ``.item()`` in a hook or a
Python loop over members in the optimizer costs nothing visible on a CPU and most of a GPU's
throughput; without a GPU in CI this is where such a change is caught.
"""

from __future__ import annotations

import pytest

from tests.conftest import load_benchmark

anatomy = load_benchmark("step_anatomy")

MIXED = anatomy.CASES["mixed lr x clip"]  # per-member learning rates and clipping bounds
STEPS = 20


@pytest.fixture(scope="module")
def mixed() -> dict[int, dict]:
    """The mixed case's counts for 4 and 8 members of a depth-3 MLP."""
    return {k: anatomy.anatomy(anatomy.trials_of(MIXED, 3, k, steps=STEPS)) for k in (4, 8)}


def test_a_training_step_reads_nothing_on_the_host(mixed: dict[int, dict]) -> None:
    for counts in mixed.values():
        assert counts["steps"] == STEPS
        assert counts["step_host_reads"] == 0, counts["read_sites"]
        # the one deliberate read while training: the explosion check, once a step on a CPU
        assert counts["check_host_reads"] == STEPS


def test_set_up_and_record_read_once_per_member_and_once_per_group(
    mixed: dict[int, dict],
) -> None:
    # the init probe: one read per member (it was one per statistic: 4 per site, 1 per layer)
    assert mixed[4]["setup_host_reads_per_member"] == 1
    assert mixed[8]["setup_host_reads_per_member"] == 1
    # the record moves to the host buffer by buffer for the whole group, not member by member
    total = {k: c["record_host_reads"] for k, c in mixed.items()}
    assert total[4] == total[8], total


def test_a_step_without_dropout_launches_the_same_ops_for_any_number_of_members(
    mixed: dict[int, dict],
) -> None:
    assert mixed[4]["step_compute_ops"] == mixed[8]["step_compute_ops"]
    assert mixed[4]["step_views"] == mixed[8]["step_views"]


def test_dropout_costs_a_few_ops_per_member_and_layer_and_no_more() -> None:
    """Dropout is the one per-member cost in a fused step: each member draws its masks from
    its own random stream (``models.stacked.MemberDropout``), so its trial's masks are exact.
    On a CPU that is F.dropout's bernoulli_, div_ and mul per member and layer, and the mul of
    its backward (on CUDA, F.dropout is one fused kernel); this pins it so that more
    per-member work does not creep in."""
    grid = anatomy.CASES["dropout 0.1"]
    depth = 3
    ops = {k: anatomy.anatomy(anatomy.trials_of(grid, depth, k, steps=STEPS)) for k in (2, 6)}
    per_member_layer = (ops[6]["step_compute_ops"] - ops[2]["step_compute_ops"]) / (4 * depth)
    assert 0 < per_member_layer <= 4, per_member_layer
