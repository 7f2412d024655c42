"""The store -> pandas: the reports' one read of the records.

Reports are built from what the store holds (docs/record.md is the contract), never from the
suite file on disk, so a report can be rebuilt for any past experiment, for runs written by many
workers on many machines, and for runs written by older versions of the runner. The read is
``RecordStore.load_trials`` (the finished trial runs, newest per trial id, with their records)
and the sweep runs' archived files; the garbage collector is paused while the records are
parsed: they are millions of small lists and dicts that hold no cycles, and re-scanning them as
they grow was a third of the read.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gradatlas.record import (
    ENVIRONMENT_ARTIFACT,
    FACTOR_LEVELS_ARTIFACT,
    FACTOR_PREFIX,
    OUTCOME,
    SUITE_RESOLVED_ARTIFACT,
    SUITE_YAML_ARTIFACT,
    TUNING_RANK,
    RunKind,
    TrialRecord,
)
from gradatlas.store import RecordStore, StoredRun, as_store

MAX_SWEEPS_READ = 20  # environments shown in the header; older sweeps are only counted


@dataclass
class Sweep:
    """One ``gradatlas run`` invocation: where and with what the trials were produced."""

    run_id: str
    start_time: pd.Timestamp | None
    status: str
    environment: dict[str, Any] | None = None
    suite_yaml: str | None = None
    resolved: dict[str, Any] | None = None
    factor_levels: dict[str, list[str]] | None = None  # the suite's own level order


@dataclass
class Experiment:
    """Everything a report shows, already deduplicated to one run per trial id.

    ``trials`` has one row per kept trial run: ``run_id``, ``trial_id``, ``cell_id``, ``cell``,
    ``seed``, ``outcome``, ``reason``, ``start_time``, ``tune_rank`` (a tuned cell's trial: 1 at
    its study's best values, 2 at the second-best, ``tune.second_best``; NA otherwise, and in
    runs recorded before the rank was), one ``factor.<name>`` column per grid factor (level
    labels, as in the ``factor.*`` params) and one column per summary metric.
    ``records`` maps run id -> its trial record as plain data (``TrialRecord.to_dict()``: every
    key present, whatever version wrote it; curves and profiles live there).
    """

    name: str
    experiment_id: str
    tracking_uri: str
    trials: pd.DataFrame
    records: dict[str, dict[str, Any]]
    factors: list[str]
    levels: dict[str, list[str]]
    set_aside: int = 0
    without_record: int = 0
    sweeps: list[Sweep] = field(default_factory=list)
    sweep_count: int = 0
    # The store it was read from (None: records made in memory); sections that read more
    # (tuning runs, the plan's unfinished runs) read it there.
    store: RecordStore | None = field(default=None, repr=False, compare=False)
    _rows: tuple[pd.DataFrame, list[dict[str, Any]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def fcol(self, factor: str) -> str:
        """The ``trials`` column holding a factor's level labels."""
        return FACTOR_PREFIX + factor

    def rows(self) -> list[dict[str, Any]]:
        """``trials.to_dict("records")``, made once per ``trials`` frame (sections walk the
        trials many times; converting a 10,000-row frame each time was seconds). Read-only."""
        if self._rows is None or self._rows[0] is not self.trials:
            self._rows = (self.trials, self.trials.to_dict("records"))
        return self._rows[1]


TUNE_RANK = "tune_rank"  # trials column: 1 at a study's best value, 2 at its second-best


def second_best(trials: pd.DataFrame) -> pd.Series:
    """Which trials ran at a tuning study's second-best value (``tune_rank`` 2); all False for a
    frame without the column (records from before it, or hand-made frames)."""
    if TUNE_RANK not in trials.columns:
        return pd.Series(False, index=trials.index)
    return pd.to_numeric(trials[TUNE_RANK], errors="coerce").fillna(0) == 2


# -- resolving what the user named ---------------------------------------------------------------
def experiment_name(target: str, store: RecordStore) -> str:
    """An experiment name as given, else the ``name`` of the suite ``target`` refers to.

    The experiment is tried first so a report never needs the suite file (or the model code that
    validating it imports) when the experiment already says which one is meant.
    """
    if store.get_experiment(name=target) is not None:
        return target
    from gradatlas.errors import UserInputError
    from gradatlas.suites import load_suite

    try:
        return load_suite(target).name
    except UserInputError as exc:
        raise UserInputError(
            f"no MLflow experiment named {target!r} in the store, and it is not a suite "
            f"({exc.render()})"
        ) from None


# -- reading -------------------------------------------------------------------------------------
def load_experiment(name: str, store: RecordStore | str) -> Experiment:
    """Read one experiment's finished trial runs and sweep runs (``store``: a store, or the URI
    of one to open for reading)."""
    from gradatlas.errors import UserInputError
    from gradatlas.store import redact

    store = as_store(store)
    exp = store.get_experiment(name=name)
    if exp is None:
        raise UserInputError(f"no MLflow experiment named {name!r} in {redact(store.uri)}")
    with gc_paused():
        loaded = store.load_trials(exp.experiment_id)
        if not loaded.trials:
            raise UserInputError(
                f"experiment {name!r} has no finished trial runs yet (run: gradatlas run {name})"
            )
        experiment = experiment_from_records(
            [(_run_meta(t.run), t.record) for t in loaded.trials],
            name=name,
            experiment_id=exp.experiment_id,
            tracking_uri=store.uri,
        )
    experiment.store = store
    experiment.set_aside = loaded.set_aside
    experiment.without_record = loaded.rebuilt
    experiment.sweeps, experiment.sweep_count = _read_sweeps(store, exp.experiment_id)
    # The newest sweep that recorded it knows the order the suite author wrote the levels in.
    suite_order = next((s.factor_levels for s in experiment.sweeps if s.factor_levels), None)
    if suite_order:
        experiment.levels = {
            f: in_suite_order(labels, suite_order.get(f)) for f, labels in experiment.levels.items()
        }
    return experiment


def in_suite_order(labels: list[str], suite_labels: list[str] | None) -> list[str]:
    """``labels`` in the suite's order; labels the suite does not list (older runs, a grid that
    changed) keep their place after those it does."""
    if not suite_labels or not isinstance(suite_labels, list):
        return labels
    rank = {label: i for i, label in enumerate(suite_labels)}
    known = sorted((lb for lb in labels if lb in rank), key=rank.__getitem__)
    return known + [lb for lb in labels if lb not in rank]


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a block that allocates much and frees nothing
    (reference counting still frees everything without cycles)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _read_sweeps(store: RecordStore, experiment_id: str) -> tuple[list[Sweep], int]:
    runs = store.find_runs(experiment_id, kind=RunKind.SWEEP)
    sweeps = []
    for run in runs[:MAX_SWEEPS_READ]:
        sweeps.append(
            Sweep(
                run_id=run.run_id,
                start_time=_timestamp(run.start_time),
                status=run.status,
                environment=_loads(store.artifact_text(run, ENVIRONMENT_ARTIFACT)),
                suite_yaml=store.artifact_text(run, SUITE_YAML_ARTIFACT),
                resolved=_loads(store.artifact_text(run, SUITE_RESOLVED_ARTIFACT)),
                factor_levels=_loads(store.artifact_text(run, FACTOR_LEVELS_ARTIFACT)),
            )
        )
    return sweeps, len(runs)


def _loads(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _timestamp(ms: int | None) -> pd.Timestamp | None:
    return pd.Timestamp(ms, unit="ms", tz="UTC") if ms else None


def _run_meta(run: StoredRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "tag_outcome": run.tags.get(OUTCOME),
        "tag_tune_rank": run.tags.get(TUNING_RANK),
    }


# -- frames --------------------------------------------------------------------------------------
_NUMBERED = re.compile(r"^(\D*?)(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(\D*)$")


def order_levels(labels: Iterable[str]) -> list[str]:
    """Level labels in the order a reader expects: by value when every label is the same word
    around one number (``d3 < d20``, ``normal(std=0.5) < normal(std=1)``), else in order of first
    appearance, which for trials sorted by start time is the suite's grid order."""
    unique = list(dict.fromkeys(labels))
    matches = [_NUMBERED.match(label) for label in unique]
    if len(unique) > 1 and all(matches):
        shapes = {(m.group(1), m.group(3)) for m in matches if m}
        if len(shapes) == 1:
            return sorted(unique, key=lambda s: float(_NUMBERED.match(s).group(2)))  # type: ignore[union-attr]
    return unique


def experiment_from_records(
    entries: Iterable[tuple[dict[str, Any], TrialRecord | dict[str, Any]]],
    *,
    name: str,
    experiment_id: str = "",
    tracking_uri: str = "",
) -> Experiment:
    """Build the frames from (run metadata, trial record) pairs, already one per trial id. A
    record may be a ``TrialRecord`` or parsed ``trial.json`` of any version (read through
    ``TrialRecord.from_json``).

    Kept apart from the store's read so the statistics and the section logic can be exercised on
    records made in memory.
    """
    rows: list[dict[str, Any]] = []
    records: dict[str, dict[str, Any]] = {}
    factors: list[str] = []
    for meta, given in entries:
        run_id = meta["run_id"]
        record = given if isinstance(given, TrialRecord) else TrialRecord.from_json(given)
        records[run_id] = record.to_dict()
        row = {
            "run_id": run_id,
            "trial_id": record.trial_id or run_id,
            "cell_id": record.cell_id,
            "cell": record.cell,
            "seed": record.seed,
            "outcome": record.outcome.label or meta.get("tag_outcome") or "",
            "reason": record.outcome.reason,
            "start_time": meta.get("start_time"),
            "end_time": meta.get("end_time"),
            "tune_rank": meta.get("tag_tune_rank"),
        }
        for key, level in record.factors.items():
            if key not in factors:
                factors.append(key)
            row[FACTOR_PREFIX + key] = level
        for key, value in record.summary.items():
            if key not in row:
                row[key] = value
        rows.append(row)
    trials = pd.DataFrame(rows)
    for key in ("steps_to_target", "final_val_acc", "final_val_loss", "steps_run"):
        if key not in trials:
            trials[key] = float("nan")
    summary_cols = [
        c
        for c in trials.columns
        if c not in ("run_id", "trial_id", "cell_id", "cell", "outcome", "reason", "seed")
        and not c.startswith(FACTOR_PREFIX)
    ]
    for col in summary_cols:
        trials[col] = pd.to_numeric(trials[col], errors="coerce")
    trials["seed"] = pd.to_numeric(trials["seed"], errors="coerce").astype("Int64")
    trials["tune_rank"] = pd.to_numeric(trials["tune_rank"], errors="coerce").astype("Int64")
    trials = trials.sort_values("start_time", kind="stable").reset_index(drop=True)
    levels = {}
    for f in factors:
        col = FACTOR_PREFIX + f
        trials[col] = trials[col].fillna("(unset)")  # a factor added after some runs were made
        levels[f] = order_levels(trials[col])
    return Experiment(
        name=name,
        experiment_id=experiment_id,
        tracking_uri=tracking_uri,
        trials=trials,
        records=records,
        factors=factors,
        levels=levels,
    )
