"""The tuner: every study of one suite in one Optuna storage, with its searches, its MLflow
study runs, and what the suite is evaluated at once they are done.

Separate from the driver because this is state, not a loop: ``Tuner.open`` (before the sweep
run exists) loads or creates the studies, checks each was made for this tune block, recovers
what a dead driver left and reads what is already recorded; its properties say whether tuning
is done and at which values the suite's trials run. ``run`` hands the searches to the driver
(``tuning.driver``), which trains what is missing on the sweep's executor.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from gradatlas.errors import UserInputError
from gradatlas.identity import config_hash
from gradatlas.record import (
    KIND,
    KIND_STUDY,
    PARENT_RUN,
    STUDY,
    SUITE,
    TUNING_BEST,
    TUNING_COMPLETE,
    TUNING_GROUP,
    TUNING_GROUP_LEVELS,
    TUNING_PURPOSE,
    TUNING_RANK,
    TUNING_SECOND,
    TUNING_STORAGE,
)
from gradatlas.runners.tuning import storage
from gradatlas.runners.tuning.plan import (
    FULL,
    Group,
    TuningPlan,
    fingerprint,
    ranked_trials,
    tuning_plan,
)
from gradatlas.runners.tuning.records import StudyRun, TuningRecords, second_tag
from gradatlas.runners.tuning.search import (
    STABLE_ATTR,
    RunValue,
    StableLr,
    StudySearch,
    make_sampler,
    sampler_seed,
)
from gradatlas.store import RecordStore
from gradatlas.suites import Suite, Trial


@dataclass
class TuningSummary:
    """What a tuning phase did, for the command's closing lines."""

    storage: str
    studies: list[dict[str, Any]] = field(default_factory=list)  # name, best, objective, counts
    stable: list[dict[str, Any]] = field(default_factory=list)  # max-stable-lr results
    trained: int = 0  # tuning runs trained in this invocation
    duplicates: int = 0  # of those, found recorded already when written (another driver)
    reused: int = 0  # runs whose record existed, told without training
    recovered: int = 0  # study trials a dead driver left RUNNING, enqueued again
    complete: bool = False
    problems: list[str] = field(default_factory=list)


class Tuner:
    """Every study of one suite in one storage, with their MLflow runs and records.

    ``open`` (before the sweep run exists) loads or creates the studies, checks each was made
    for this tune block, and recovers what a dead driver left; ``run`` trains what is missing;
    ``evaluation_trials`` are the suite's trials at the studies' best values."""

    def __init__(
        self,
        suite: Suite,
        plan: TuningPlan,
        storage_url: str,
        records: TuningRecords,
        stream: TextIO = sys.stderr,
    ):
        self.suite, self.plan, self.storage_url = suite, plan, storage_url
        self.records, self.stream = records, stream
        self.parallel = 1  # study trials in flight per study: the executor's workers
        self.searches: list[StudySearch] = []
        self.stable: dict[str, list[StableLr]] = {}  # group label -> pending cell searches
        self.stable_done: dict[str, dict[str, dict[str, Any]]] = {}  # label -> cell id -> result
        self.recorded: dict[str, RunValue] = {}  # trial id -> its FINISHED tuning run
        self.study_runs: dict[str, StudyRun] = {}
        self.summary = TuningSummary(storage.redact(storage_url))

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        suite: Suite,
        storage_url: str,
        store: RecordStore,
        experiment_id: str,
        stream: TextIO = sys.stderr,
    ) -> Tuner:
        records = TuningRecords(store, experiment_id)
        tuner = cls(suite, tuning_plan(suite), storage_url, records, stream)
        tuner._open_studies()
        tuner.recorded = records.finished()
        tuner.study_runs = records.study_runs()
        return tuner

    def _open_studies(self) -> None:
        rdb = storage.open_storage(self.storage_url)
        for group in self.plan.groups:
            study = self._open_study(rdb, group)
            self.searches.append(StudySearch(self, group, study))
            self._open_stable(group, study)
        for group in self.plan.horizon_groups:  # the same sampler seed: comparable first asks
            study = self._open_study(rdb, group, horizon=True)
            self.searches.append(StudySearch(self, group, study, horizon=True))

    def _open_study(self, rdb: Any, group: Group, horizon: bool = False) -> Any:
        """``group``'s study (``horizon``: its re-tune at the full budget), loaded or created,
        checked against its fingerprint, with what a dead driver left recovered."""
        tune = self.plan.tune
        name = self.plan.study_name(group, horizon)
        study = storage.load_study(rdb, name, maximize=tune.objective == "val_acc")
        # Seeded with the trials held before recovery adds any: the same seed on every resume.
        study.sampler = make_sampler(tune, sampler_seed(self.plan, group), len(study.trials))
        mine = fingerprint(self.plan, group, full=horizon)
        storage.check_fingerprint(study, mine, group.levels, self.storage_url, self.suite.source)
        self.summary.recovered += storage.recover(study)
        return study

    def _open_stable(self, group: Group, study: Any) -> None:
        settings = self.plan.tune.max_stable_lr
        if settings is None:
            return
        key = config_hash(
            {
                "msl": settings.model_dump(mode="json"),
                "steps": self.plan.tune.steps,
                "seed": self.plan.tune.seeds[0],
            }
        )
        stored = study.user_attrs.get(STABLE_ATTR) or {}
        done = dict(stored.get("cells", {})) if stored.get("settings") == key else {}
        self.stable_done[group.label] = done
        self._stable_key = key
        self.stable[group.label] = [
            StableLr(self, group, cell) for cell in group.cells if cell.cell_id not in done
        ]

    def save_stable(self, group: Group, result: dict[str, Any]) -> None:
        """A max-stable-lr answer, kept on its group's study (a rerun does not search again)."""
        done = self.stable_done.setdefault(group.label, {})
        done[result["cell_id"]] = result
        study = self.search_of(group).study
        study.set_user_attr(STABLE_ATTR, {"settings": self._stable_key, "cells": done})

    def search_of(self, group: Group) -> StudySearch:
        """``group``'s own study (not its horizon re-tune)."""
        return next(s for s in self.searches if s.group.label == group.label and not s.horizon)

    @property
    def studies(self) -> list[StudySearch]:
        """The studies whose best values the suite is evaluated at (no horizon re-tune)."""
        return [s for s in self.searches if not s.horizon]

    def sources(self) -> list[StudySearch | StableLr]:
        """Every search that may ask for work: the studies, then the max-stable-lr cells."""
        return [*self.searches, *(c for cells in self.stable.values() for c in cells)]

    def curve(self, value: RunValue, metric: str) -> dict[int, float]:
        """A run's validation curve (read from MLflow for a recorded run, once)."""
        if metric not in value.curves and value.run_id is not None:
            value.curves[metric] = self.records.curve(value.run_id, metric)
        return value.curves.get(metric, {})

    # -- state -----------------------------------------------------------------------------
    @property
    def tuned(self) -> bool:
        """Every study has its trials and every max-stable-lr search its answer."""
        return all(s.complete for s in self.searches) and all(
            c.complete for cells in self.stable.values() for c in cells
        )

    @property
    def complete(self) -> bool:
        """Tuned, and every study run says so: nothing is left for a tuning phase to do."""
        return self.tuned and all(
            (run := self.study_runs.get(s.name)) is not None
            and run.status == "FINISHED"
            and run.tags.get(TUNING_COMPLETE) == "true"
            and run.tags.get(TUNING_BEST) == json.dumps((s.best() or ({},))[0], sort_keys=True)
            and (
                not self.plan.tune.second_best
                or run.tags.get(TUNING_SECOND) == second_tag((s.second() or (None,))[0])
            )
            for s in self.searches
        )

    def best_values(self) -> dict[str, dict[str, float]]:
        out = {}
        for s in self.studies:
            best = s.best()
            if best is None:
                raise UserInputError(
                    f"the study {s.name!r} has no completed trial, so there are no values to "
                    "evaluate at; rerun to tune it further",
                    source=self.suite.source,
                )
            out[s.group.label] = best[0]
        return out

    def second_values(self) -> dict[str, dict[str, float] | None] | None:
        """Group label -> its study's second-best values (None: no distinct one), or None
        when the suite does not ask for them (``tune.second_best``)."""
        if not self.plan.tune.second_best:
            return None
        return {s.group.label: (s.second() or (None,))[0] for s in self.studies}

    def ranked_trials(self) -> list[tuple[Trial, int | None]]:
        return ranked_trials(self.suite, self.plan, self.best_values(), self.second_values())

    def evaluation_trials(self) -> tuple[Trial, ...]:
        return tuple(t for t, _ in self.ranked_trials())

    def evaluation_tags(self) -> dict[str, dict[str, str]]:
        """Trial id -> the tags its trial run gets besides a trial's own: the tune rank of each
        tuned trial (``gradatlas.tuning.rank``, the reports' ``tune_rank``)."""
        return {t.trial_id: {TUNING_RANK: str(r)} for t, r in self.ranked_trials() if r}

    # -- the study runs (written by the driver while no recorder is alive) ------------------
    def open_study_runs(self, sweep_id: str) -> None:
        """One MLflow run per study, kept across invocations: reopened (RUNNING, under this
        sweep) if it exists, else created."""
        for s in self.searches:
            run = self.study_runs.get(s.name)
            if run is not None:
                self.records.reopen_study_run(run.run_id, sweep_id)
                s.run_id = run.run_id
                continue
            tags = {
                KIND: KIND_STUDY,
                STUDY: s.name,
                SUITE: self.suite.name,
                TUNING_GROUP: s.group.label,
                TUNING_GROUP_LEVELS: json.dumps(s.group.levels, sort_keys=True),
                TUNING_STORAGE: storage.redact(self.storage_url),
                TUNING_PURPOSE: s.purpose,
                PARENT_RUN: sweep_id,
            }
            name = f"study-{s.group.label}{FULL if s.horizon else ''}"
            s.run_id = self.records.create_study_run(name, tags)

    def study_info(self, s: StudySearch) -> dict[str, Any]:
        """A study's summary: ``tuning.json`` on its run, and the command's closing table."""
        tune = self.plan.tune
        best, second = s.best(), s.second()
        budget = self.plan.budget(s.group)
        stable = [] if s.horizon else self.stable.get(s.group.label, [])
        return {
            "study": s.name,
            "group": s.group.label,
            "purpose": s.purpose,
            "levels": s.group.levels,
            "storage": storage.redact(self.storage_url),
            "objective": tune.objective,
            "direction": "maximize" if s.maximize else "minimize",
            "params": {n: tune.params[n].model_dump() for n in s.group.params},
            "trials": {
                "target": tune.trials,
                "complete": s.counts["complete"],
                "pruned": s.counts["pruned"],
                "failed": s.counts["fail"],
            },
            "steps": budget if s.horizon else (tune.steps or budget),  # per tuning run
            "budget_steps": budget,  # the cells' own (None: not known)
            "best": None
            if best is None
            else {"values": best[0], "objective": best[1], "number": best[2]},
            # The best trial distinct from the best (``second_best``); its trials ran only
            # with ``second_best_runs``.
            "second": None
            if second is None
            else {"values": second[0], "objective": second[1], "number": second[2]},
            "second_best_ratio": tune.second_best_ratio,
            "second_best_runs": tune.second_best and not s.horizon,
            "tried": s.tried(),
            "max_stable_lr": []
            if s.horizon
            else list(self.stable_done.get(s.group.label, {}).values()),
            "complete": s.complete and all(c.complete for c in stable),
        }

    def summarize(self) -> TuningSummary:
        """The summary of the studies as they stand (nothing is written)."""
        self.summary.studies = [self.study_info(s) for s in self.searches]
        self.summary.stable = [r for info in self.summary.studies for r in info["max_stable_lr"]]
        self.summary.complete = self.tuned
        return self.summary

    def close_study_runs(self) -> None:
        """Each study run gets the study's summary (``tuning.json``, the best values as a tag
        and metrics) and ends FINISHED when its study is done, KILLED when not."""
        self.summarize()
        for s, info in zip(self.searches, self.summary.studies, strict=True):
            if s.run_id is not None:
                self.records.close_study_run(s.run_id, info)

    def abandon(self) -> None:
        """What is still in flight when the phase ends (a stop): failed and asked again."""
        for source in self.sources():
            source.abandon()

    def problems(self) -> list[str]:
        """What the closing lines must say went wrong: studies that stopped asking, failed
        max-stable-lr searches."""
        return [
            f"study {s.name}: {s.failures} tuning trials failed, so it stopped asking (first "
            f"error: {s.first_error}); fix the cause and rerun to resume"
            for s in self.searches
            if s.gave_up
        ] + [
            f"max stable lr of {c.cell.cell or c.cell.run_name}: {c.result.get('error')}"
            for cells in self.stable.values()
            for c in cells
            if c.result and c.result.get("status") == "failed"
        ]
