"""The tuner's reads and writes of records, all in one place: the tuning runs already recorded
(what need not train again), the study runs (one per study, kept across invocations), a
recorded run's validation curve, and the runs a dead driver left RUNNING.

Separate so the rest of the package never sees a store: plan, pruning, storage and search know
nothing of records, and the driver reads and writes them only through ``TuningRecords``, which
speaks to the ``RecordStore`` interface (never to MLflow). (The tuning runs themselves are
written by the sweep's recorder process, as every trial run is.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradatlas.record import (
    OUTCOME,
    PARENT_RUN,
    STUDY,
    TRIAL_ID,
    TUNING_ARTIFACT,
    TUNING_BEST,
    TUNING_COMPLETE,
    TUNING_SECOND,
    TUNING_STOPPED,
    RunKind,
    RunStatus,
)
from gradatlas.runners.tuning.search import RunValue
from gradatlas.store import RecordStore


@dataclass(frozen=True)
class StudyRun:
    """A study's run as the driver needs it: whether it says the study is done."""

    run_id: str
    status: str  # "RUNNING" | "FINISHED" | "KILLED"
    tags: Mapping[str, str]


def second_tag(values: Mapping[str, float] | None) -> str:
    """A study run's ``TUNING_SECOND`` tag: the second-best values as JSON, or ``null``."""
    return json.dumps(None if values is None else dict(values), sort_keys=True)


class TuningRecords:
    """The tuning records of one experiment."""

    def __init__(self, store: RecordStore, experiment_id: str):
        self.store, self.experiment_id = store, experiment_id

    def finished(self) -> dict[str, RunValue]:
        """Trial id -> the value of its FINISHED tuning run (the newest, if several): what
        need not be trained again. Curves are read when first needed (``curve``)."""
        out: dict[str, RunValue] = {}
        runs = self.store.find_runs(
            self.experiment_id, kind=RunKind.TUNING, status=RunStatus.FINISHED
        )
        for run in runs:
            tid = run.tags.get(TRIAL_ID, "")
            if tid in out:
                continue  # newest first: keep the newest
            stopped = run.tags.get(TUNING_STOPPED)
            out[tid] = RunValue(
                trial_id=tid,
                outcome=run.tags.get(OUTCOME, ""),
                metrics=dict(run.metrics or {}),
                stopped_at=int(stopped) if stopped else None,
                run_id=run.run_id,
            )
        return out

    def study_runs(self) -> dict[str, StudyRun]:
        """Study name -> its run (the newest, if several)."""
        out: dict[str, StudyRun] = {}
        for run in self.store.find_runs(self.experiment_id, kind=RunKind.STUDY):
            name = run.tags.get(STUDY, "")
            if name not in out:
                out[name] = StudyRun(run.run_id, run.status, dict(run.tags))
        return out

    def curve(self, run_id: str, metric: str) -> dict[int, float]:
        """A recorded run's curve of ``metric``: eval step -> value."""
        return {
            int(step): float(value) for step, value in self.store.metric_history(run_id, metric)
        }

    def reopen_study_run(self, run_id: str, sweep_id: str) -> None:
        """A study run found from an earlier invocation: RUNNING again, under this sweep."""
        self.store.set_status(run_id, RunStatus.RUNNING)
        self.store.log(run_id, tags={PARENT_RUN: sweep_id})

    def create_study_run(self, run_name: str, tags: Mapping[str, str]) -> str:
        """A new study run (RUNNING) with ``tags``; returns its id."""
        return self.store.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))

    def close_study_run(self, run_id: str, info: Mapping[str, Any]) -> None:
        """The study's summary ``info`` (``Tuner.study_info``) on its run: ``tuning.json``,
        the best (and second-best) values as tags and metrics; then FINISHED when the study is
        complete, KILLED when not."""
        best, second = info["best"], info["second"]
        metrics = [(f"trials_{k}", v, 0) for k, v in info["trials"].items() if k != "target"]
        tags = {TUNING_COMPLETE: "true" if info["complete"] else "false"}
        if best is not None:
            metrics.append(("best_objective", best["objective"], 0))
            metrics += [(f"best.{k}", v, 0) for k, v in best["values"].items()]
            tags[TUNING_BEST] = json.dumps(best["values"], sort_keys=True)
            tags[TUNING_SECOND] = second_tag(second and second["values"])
        if second is not None:
            metrics.append(("second_objective", second["objective"], 0))
        self.store.log(run_id, metrics=metrics, tags=tags)
        self.store.attach(run_id, TUNING_ARTIFACT, dict(info))
        status = RunStatus.FINISHED if info["complete"] else RunStatus.KILLED
        self.store.set_status(run_id, status)
