"""MLflow -> pandas: the only module that reads the store.

Reports are built from what MLflow holds (docs/record.md is the contract), never from the suite
file on disk, so a report can be rebuilt for any past experiment, for runs written by many workers
on many machines, and for runs written by older versions of the runner. The read is one query
for the finished trial runs plus one ``trial.json`` per kept run (read straight from disk when the
artifact store is local).

At atlas scale (10,000 trials) MLflow's own ``search_runs`` is most of the read: it builds an ORM
object for every param, metric and tag of every run (over a million objects), while a report
needs only each run's id, times, artifact location and tags; the records carry the rest. So for
a local SQLite store the finished trial runs are read with one read-only SQL query of MLflow's
``runs`` and ``tags`` tables (the filter ``search_runs`` would apply, in its order), and anything
else, or any surprise in that schema, goes through ``search_runs`` as before. The garbage
collector is paused while the records are parsed: they are millions of small lists and dicts
that hold no cycles, and re-scanning them as they grow was a third of the read.
"""

from __future__ import annotations

import gc
import json
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd

from gradatlas.record import (
    ENVIRONMENT_ARTIFACT,
    FACTOR_LEVELS_ARTIFACT,
    FACTOR_PREFIX,
    FINISHED,
    FINISHED_TRIALS,
    KIND,
    KIND_TRIAL,
    OUTCOME,
    SUITE_RESOLVED_ARTIFACT,
    SUITE_YAML_ARTIFACT,
    SWEEPS,
    TRIAL_ARTIFACT,
    TRIAL_ID,
    TUNING_RANK,
    TrialRecord,
    quiet_mlflow,
    record_from_run_data,
    search_all,
)

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
def experiment_name(target: str, client: Any) -> str:
    """An MLflow experiment name as given, else the ``name`` of the suite ``target`` refers to.

    The experiment is tried first so a report never needs the suite file (or the model code that
    validating it imports) when the experiment already says which one is meant.
    """
    if client.get_experiment_by_name(target) is not None:
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
def load_experiment(name: str, tracking_uri: str) -> Experiment:
    """Read one experiment's finished trial runs and sweep runs from MLflow."""
    from mlflow.tracking import MlflowClient

    from gradatlas.errors import UserInputError

    quiet_mlflow()
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise UserInputError(f"no MLflow experiment named {name!r} in {tracking_uri}")
    with gc_paused():
        runs = finished_trial_runs(client, exp.experiment_id, tracking_uri)
        if not runs:
            raise UserInputError(
                f"experiment {name!r} has no finished trial runs yet (run: gradatlas run {name})"
            )
        kept, set_aside = newest_per_trial(runs)
        records = _read_records(client, kept, TRIAL_ARTIFACT)
        entries = []
        for run in kept:
            raw = records.get(run.info.run_id)
            if raw is None:  # trial.json missing: its outcome still counts
                data = _run_data(client, run)
                record = record_from_run_data(data.tags, data.params, data.metrics, run.info.run_id)
            else:
                record = TrialRecord.from_json(raw)
            entries.append((_run_meta(run), record))
        experiment = experiment_from_records(
            entries, name=name, experiment_id=exp.experiment_id, tracking_uri=tracking_uri
        )
    experiment.set_aside = set_aside
    experiment.without_record = sum(r is None for r in records.values())
    experiment.sweeps, experiment.sweep_count = _read_sweeps(client, exp.experiment_id)
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


@dataclass
class _RunInfo:
    run_id: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str
    status: str


@dataclass
class _RunData:
    tags: dict[str, str]
    params: dict[str, str] | None = None  # None: not read (only tags come with the SQL read)
    metrics: dict[str, float] | None = None


@dataclass
class _Run:
    """The part of an ``mlflow.entities.Run`` the report reads (``info`` and ``data.tags``)."""

    info: _RunInfo
    data: _RunData


def finished_trial_runs(client: Any, experiment_id: str, tracking_uri: str) -> list[Any]:
    """The experiment's active FINISHED trial runs, newest first: what ``search_all(...,
    FINISHED_TRIALS)`` returns, read with one SQL query when the store is a local SQLite file
    (see the module docstring), else (or when that read fails) through MLflow."""
    db = _sqlite_file(tracking_uri)
    if db is not None:
        try:
            return _sqlite_finished_trials(db, experiment_id)
        except (sqlite3.Error, ValueError, TypeError):
            pass  # an MLflow schema this version does not know: ask MLflow itself
    return search_all(client, experiment_id, FINISHED_TRIALS)


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store that exists (its URI's query left off)."""
    from gradatlas.runners.tracking import sqlite_path

    path = sqlite_path(tracking_uri.split("?", 1)[0])
    return path if path is not None and path.is_file() else None


# FINISHED_TRIALS, as SQL on MLflow's tables (``runs``, ``tags``).
_FINISHED_TRIALS_FROM = """
FROM runs AS r JOIN tags AS k ON k.run_uuid = r.run_uuid AND k.key = ? AND k.value = ?
WHERE r.experiment_id = ? AND r.status = ? AND r.lifecycle_stage = 'active'
"""
_RUNS_SQL = (
    "SELECT r.run_uuid, r.start_time, r.end_time, r.artifact_uri, r.status"
    + _FINISHED_TRIALS_FROM
    + "ORDER BY r.start_time IS NULL, r.start_time DESC, r.run_uuid"  # search_runs' order
)
_TAGS_SQL = (
    "SELECT t.run_uuid, t.key, t.value FROM tags AS t WHERE t.run_uuid IN "
    f"(SELECT r.run_uuid {_FINISHED_TRIALS_FROM})"
)


def _sqlite_finished_trials(db: Path, experiment_id: str) -> list[_Run]:
    """The finished trial runs of a local SQLite store, with their tags, in two queries on a
    read-only connection."""
    args = (KIND, KIND_TRIAL, int(experiment_id), FINISHED)
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = con.execute(_RUNS_SQL, args).fetchall()
        tags: dict[str, dict[str, str]] = {row[0]: {} for row in rows}
        for run_id, key, value in con.execute(_TAGS_SQL, args):
            tags[run_id][key] = value
    finally:
        con.close()
    return [
        _Run(_RunInfo(rid, start, end, str(uri or ""), status), _RunData(tags[rid]))
        for rid, start, end, uri, status in rows
    ]


def _run_data(client: Any, run: Any) -> Any:
    """A run's tags, params and metrics (fetched when the SQL read left them out)."""
    if getattr(run.data, "params", None) is None:
        return client.get_run(run.info.run_id).data
    return run.data


def newest_per_trial(runs: Iterable[Any]) -> tuple[list[Any], int]:
    """Keep the newest finished run of each trial id (re-runs, ``--force``); count the rest."""
    by_trial: dict[str, Any] = {}
    total = 0
    for run in runs:
        total += 1
        key = run.data.tags.get(TRIAL_ID) or run.info.run_id
        best = by_trial.get(key)
        if best is None or (run.info.start_time or 0) > (best.info.start_time or 0):
            by_trial[key] = run
    kept = sorted(by_trial.values(), key=lambda r: r.info.start_time or 0)
    return kept, total - len(kept)


def _local_path(artifact_uri: str) -> Path | None:
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and artifact_uri[1:3] == ":\\"):
        return Path(artifact_uri)
    return None


def _read_records(client: Any, runs: list[Any], name: str) -> dict[str, dict[str, Any] | None]:
    """``name`` (a JSON artifact) of each run, or None where missing or unreadable.

    A local artifact store is read straight from disk (one ``open`` per run); anything else goes
    through ``mlflow.artifacts.download_artifacts`` on a few threads, since those are round trips.
    """
    out: dict[str, dict[str, Any] | None] = {}
    remote = []
    for run in runs:
        path = _local_path(run.info.artifact_uri)
        if path is None:
            remote.append(run)
            continue
        out[run.info.run_id] = _read_json(path / name)
    if remote:
        with ThreadPoolExecutor(max_workers=8) as pool:
            for run_id, record in pool.map(lambda r: _download_json(client, r, name), remote):
                out[run_id] = record
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _download_json(client: Any, run: Any, name: str) -> tuple[str, dict[str, Any] | None]:
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="gradatlas-report-") as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id,
                artifact_path=name,
                dst_path=tmp,
                tracking_uri=client.tracking_uri,
            )
        except Exception:  # a missing artifact: the run falls back to its tags and metrics
            return run.info.run_id, None
        return run.info.run_id, _read_json(Path(path))


def _read_text(run: Any, client: Any, name: str) -> str | None:
    path = _local_path(run.info.artifact_uri)
    if path is not None:
        try:
            return (path / name).read_text(encoding="utf-8")
        except OSError:
            return None
    import mlflow.artifacts

    try:
        return mlflow.artifacts.load_text(f"{run.info.artifact_uri.rstrip('/')}/{name}")
    except Exception:
        return None


def _read_sweeps(client: Any, experiment_id: str) -> tuple[list[Sweep], int]:
    runs = search_all(client, experiment_id, SWEEPS)
    sweeps = []
    for run in runs[:MAX_SWEEPS_READ]:
        env = _read_text(run, client, ENVIRONMENT_ARTIFACT)
        resolved = _read_text(run, client, SUITE_RESOLVED_ARTIFACT)
        sweeps.append(
            Sweep(
                run_id=run.info.run_id,
                start_time=_timestamp(run.info.start_time),
                status=run.info.status,
                environment=_loads(env),
                suite_yaml=_read_text(run, client, SUITE_YAML_ARTIFACT),
                resolved=_loads(resolved),
                factor_levels=_loads(_read_text(run, client, FACTOR_LEVELS_ARTIFACT)),
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


def _run_meta(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "tag_outcome": run.data.tags.get(OUTCOME),
        "tag_tune_rank": run.data.tags.get(TUNING_RANK),
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

    Kept apart from the MLflow read so the statistics and the section logic can be exercised on
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
