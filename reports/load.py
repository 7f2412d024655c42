"""MLflow -> pandas: the only module that reads the store.

Reports are built from what MLflow holds (docs/record.md is the contract), never from the suite
file on disk, so a report can be rebuilt for any past experiment, for runs written by many workers
on many machines, and for runs written by older versions of the runner. The read is one paginated
``search_runs`` for finished trial runs plus one ``trial.json`` per kept run (read straight from
disk when the artifact store is local), which keeps a 1,000-trial report well under a minute.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
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
    FINISHED_TRIALS,
    OUTCOME,
    SUITE_RESOLVED_ARTIFACT,
    SUITE_YAML_ARTIFACT,
    SWEEPS,
    TRIAL_ARTIFACT,
    TRIAL_ID,
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
    ``seed``, ``outcome``, ``reason``, ``start_time``, one ``factor.<name>`` column per grid factor
    (level labels, as in the ``factor.*`` params) and one column per summary metric.
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

    def fcol(self, factor: str) -> str:
        """The ``trials`` column holding a factor's level labels."""
        return FACTOR_PREFIX + factor


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
    runs = search_all(client, exp.experiment_id, FINISHED_TRIALS)
    if not runs:
        raise UserInputError(
            f"experiment {name!r} has no finished trial runs yet (run: gradatlas run {name})"
        )
    kept, set_aside = newest_per_trial(runs)
    records = _read_records(client, kept, TRIAL_ARTIFACT)
    entries = []
    for run in kept:
        raw = records.get(run.info.run_id)
        record = (
            TrialRecord.from_json(raw)
            if raw is not None
            else record_from_run_data(  # trial.json missing: its outcome still counts
                run.data.tags, run.data.params, run.data.metrics, run.info.run_id
            )
        )
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
