"""The tuner's MLflow reads and writes, all in one place: the tuning runs already recorded
(what need not train again), the study runs (one per study, kept across invocations), a
recorded run's validation curve, and the runs a dead driver left RUNNING.

Separate so the rest of the package never sees a tracking client: plan, pruning, storage and
search know nothing of MLflow, and the driver reads and writes records only through
``TuningRecords``. (The tuning runs themselves are written by the sweep's recorder process,
as every trial run is.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradatlas.record import (
    FINISHED_TUNING,
    OUTCOME,
    PARENT_RUN,
    RUNNING_STUDIES,
    RUNNING_TUNING,
    STUDIES,
    STUDY,
    TRIAL_ID,
    TUNING_ARTIFACT,
    TUNING_BEST,
    TUNING_COMPLETE,
    TUNING_SECOND,
    TUNING_STOPPED,
    search_all,
)
from gradatlas.runners.tuning.search import RunValue


@dataclass(frozen=True)
class StudyRun:
    """A study's MLflow run as the driver needs it: whether it says the study is done."""

    run_id: str
    status: str  # "RUNNING" | "FINISHED" | "KILLED"
    tags: Mapping[str, str]


def second_tag(values: Mapping[str, float] | None) -> str:
    """A study run's ``TUNING_SECOND`` tag: the second-best values as JSON, or ``null``."""
    return json.dumps(None if values is None else dict(values), sort_keys=True)


class TuningRecords:
    """The tuning records of one experiment."""

    def __init__(self, client: Any, experiment_id: str):
        self.client, self.experiment_id = client, experiment_id

    def finished(self) -> dict[str, RunValue]:
        """Trial id -> the value of its FINISHED tuning run (the newest, if several): what
        need not be trained again. Curves are read when first needed (``curve``)."""
        out: dict[str, RunValue] = {}
        for run in search_all(self.client, self.experiment_id, FINISHED_TUNING):
            tags = run.data.tags
            tid = tags.get(TRIAL_ID, "")
            if tid in out:
                continue  # newest first: keep the newest
            stopped = tags.get(TUNING_STOPPED)
            out[tid] = RunValue(
                trial_id=tid,
                outcome=tags.get(OUTCOME, ""),
                metrics=dict(run.data.metrics),
                stopped_at=int(stopped) if stopped else None,
                run_id=run.info.run_id,
            )
        return out

    def study_runs(self) -> dict[str, StudyRun]:
        """Study name -> its run (the newest, if several)."""
        out: dict[str, StudyRun] = {}
        for run in search_all(self.client, self.experiment_id, STUDIES):
            name = run.data.tags.get(STUDY, "")
            if name not in out:
                out[name] = StudyRun(run.info.run_id, run.info.status, dict(run.data.tags))
        return out

    def curve(self, run_id: str, metric: str) -> dict[int, float]:
        """A recorded run's curve of ``metric``: eval step -> value."""
        history = self.client.get_metric_history(run_id, metric)
        return {int(m.step): float(m.value) for m in history}

    def reopen_study_run(self, run_id: str, sweep_id: str) -> None:
        """A study run found from an earlier invocation: RUNNING again, under this sweep."""
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, PARENT_RUN, sweep_id)

    def create_study_run(self, run_name: str, tags: Mapping[str, str]) -> str:
        """A new study run (RUNNING) with ``tags``; returns its id."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        return run.info.run_id

    def close_study_run(self, run_id: str, info: Mapping[str, Any]) -> None:
        """The study's summary ``info`` (``Tuner.study_info``) on its run: ``tuning.json``,
        the best (and second-best) values as tags and metrics; then FINISHED when the study is
        complete, KILLED when not."""
        from mlflow.entities import Metric, RunTag

        now, best, second = int(time.time() * 1000), info["best"], info["second"]
        metrics = [
            Metric(f"trials_{k}", v, now, 0) for k, v in info["trials"].items() if k != "target"
        ]
        tags = [RunTag(TUNING_COMPLETE, "true" if info["complete"] else "false")]
        if best is not None:
            metrics.append(Metric("best_objective", best["objective"], now, 0))
            metrics += [Metric(f"best.{k}", v, now, 0) for k, v in best["values"].items()]
            tags.append(RunTag(TUNING_BEST, json.dumps(best["values"], sort_keys=True)))
            tags.append(RunTag(TUNING_SECOND, second_tag(second and second["values"])))
        if second is not None:
            metrics.append(Metric("second_objective", second["objective"], now, 0))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.log_dict(run_id, dict(info), TUNING_ARTIFACT)
        self.client.set_terminated(run_id, status="FINISHED" if info["complete"] else "KILLED")


def close_dead_tuning_runs(client: Any, experiment_id: str) -> int:
    """Study and tuning runs left RUNNING by a driver that died, closed as KILLED (call after
    ``store.live_drivers`` found no other driver of this suite alive). Returns how many."""
    runs = [
        *search_all(client, experiment_id, RUNNING_TUNING),
        *search_all(client, experiment_id, RUNNING_STUDIES),
    ]
    for run in runs:
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)
