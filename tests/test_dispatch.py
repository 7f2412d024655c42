"""One dispatch path: ``runners.executor.dispatch`` drives any phase's work on any executor.

Real training (tiny digits MLPs), the real in-process executor and real Ray workers. What is
checked: units handed out one at a time as results come back (as a study asks its next trial
once the last is told) all run and come back whole, on either executor; ``wait`` is asked only
when nothing is in flight, and may hand out more; live messages reach the driver before their
unit's result; a stop while a unit trains ends the loop after that unit (its trial comes back
interrupted) and starts nothing more.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from gradatlas.runners.executor import (
    InProcessExecutor,
    RayExecutor,
    UnitResult,
    WorkUnit,
    dispatch,
    make_units,
    plan_workers,
)
from gradatlas.runners.live import START
from gradatlas.runners.trial import set_threads
from gradatlas.suites import load_suite

TINY = """
name: dispatch
dataset: {name: digits}
model: {family: mlp, width: 8}
grid: {depth: [2, 3, 4]}
seeds: 2
train: {steps: 6, batch_size: 32, lr: 0.1, eval_every: 3}
instrument: {every: 3, max_points: 10, probe_batch: 32}
"""


def _units(tmp_path: Path, live_every_s: float = 0.0) -> list[WorkUnit]:
    path = tmp_path / "dispatch.yaml"
    path.write_text(TINY)
    units = make_units(load_suite(str(path)).trials)  # 3 cells x 2 seeds
    return [dataclasses.replace(u, live_every_s=live_every_s) for u in units]


class OneAtATime:
    """Work that hands out its next unit only once the previous one is back; when it has none
    left it is asked to ``wait``, which releases ``later`` once, then ends the phase."""

    def __init__(self, units: list[WorkUnit], later: list[WorkUnit]):
        self.todo, self.later = deque(units), list(later)
        self.out: list[UnitResult] = []
        self.outstanding = False
        self.waits = 0

    def next_unit(self) -> WorkUnit | None:
        if self.outstanding or not self.todo:
            return None
        self.outstanding = True
        return self.todo.popleft()

    def take(self, result: UnitResult) -> bool:
        assert self.outstanding
        self.outstanding = False
        self.out.append(result)
        return True

    def wait(self) -> bool:
        assert not self.outstanding  # asked only when nothing is in flight
        self.waits += 1
        self.todo.extend(self.later)
        released, self.later = bool(self.later), []
        return released


def _check_all_back(work: OneAtATime, units: list[WorkUnit]) -> None:
    assert [r.unit.key for r in work.out] == [u.key for u in units]
    for result, unit in zip(work.out, units, strict=True):
        assert not result.lost and not result.failures
        assert [r.trial.trial_id for r in result.results] == [t.trial_id for t in unit.trials]
        assert not any(r.interrupted for r in result.results)
    assert work.waits == 2  # once to release the later unit, once to end


def test_in_process_units_handed_one_at_a_time_all_come_back(tmp_path: Path) -> None:
    set_threads(1)
    units = _units(tmp_path)
    work = OneAtATime(units[:2], later=units[2:])
    dispatch(InProcessExecutor(accelerator="cpu", threads=1), work, threading.Event())
    _check_all_back(work, units)


class AllAtOnce(OneAtATime):
    def next_unit(self) -> WorkUnit | None:
        return self.todo.popleft() if self.todo else None

    def take(self, result: UnitResult) -> bool:
        self.out.append(result)
        return True


def test_a_stop_while_a_unit_trains_ends_the_loop_after_that_unit(tmp_path: Path) -> None:
    set_threads(1)
    stop = threading.Event()
    started: list[str] = []

    def live(messages: list[dict[str, Any]]) -> None:  # a trial started: stop the phase
        started.extend(m["trial_id"] for m in messages if m["t"] == START)
        stop.set()

    units = _units(tmp_path, live_every_s=60.0)
    work = AllAtOnce(units, later=[])
    dispatch(InProcessExecutor(accelerator="cpu", threads=1), work, stop, live=live)
    (result,) = work.out  # the unit in training came back; no other started
    first = units[0].trials[0]
    assert started == [first.trial_id]
    assert [(r.trial.trial_id, r.interrupted) for r in result.results] == [(first.trial_id, True)]
    assert work.waits == 0  # a stop ends the phase: it is not asked for more


@pytest.mark.e2e
def test_ray_units_handed_one_at_a_time_all_come_back_with_their_live_messages(
    tmp_path: Path,
) -> None:
    units = _units(tmp_path, live_every_s=60.0)
    started: list[str] = []
    late: list[str] = []  # starts that arrived after their unit's result

    def live(messages: list[dict[str, Any]]) -> None:
        back = {t.trial_id for r in work.out for t in r.unit.trials}
        for tid in (m["trial_id"] for m in messages if m["t"] == START):
            started.append(tid)
            if tid in back:
                late.append(tid)

    work = OneAtATime(units[:2], later=units[2:])
    executor = RayExecutor(
        plan_workers(2, accelerator="cpu", gpus_per_worker=None, threads=1), accelerator="cpu"
    )
    try:
        dispatch(executor, work, threading.Event(), live=live)
    finally:
        executor.close()
    _check_all_back(work, units)
    assert sorted(started) == sorted(t.trial_id for u in units for t in u.trials)
    assert not late  # each start reached the driver before its unit's result
