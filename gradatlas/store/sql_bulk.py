"""One unit of runs in one database transaction, for an MLflow tracking store that is a database
(``sqlite:///...``, ``postgresql://...``: MLflow's ``SqlAlchemyStore``) with local artifacts.

Why: written through ``MlflowClient``, a trial run costs about six round trips (create the run,
log its batch in chunks, attach ``trial.json``, log a metric, close it, log its dataset), each a
transaction of its own, and on SQLite each commit is a sync to disk: tens of ms a trial, so at
hundreds of trials a unit the recorder set the pace of the sweep. Here a unit's runs, tags,
params, metrics (history and latest values), dataset inputs and status are inserted with a few
multi-row statements in one session of the store's own ``ManagedSessionMaker``, committed once,
and ``trial.json`` is written straight into each run's artifact folder before that commit (a
file whose run was never committed is a harmless orphan). A unit is then in the store whole or
not at all.

What it writes is what MLflow's own calls would leave (``tests/test_store_bulk.py`` writes one
unit both ways and compares them through the client): the run row as ``create_run`` makes it
(its name, user, source, ``artifact_uri``, the ``mlflow.runName`` tag), params and log-time tags
through MLflow's own validation (truncation included), a metric's distinct points as
``log_batch`` keeps them and its latest value by (step, timestamp, value) as
``_update_latest_metrics_if_necessary`` picks it, a dataset row reused by (experiment, name,
digest) as ``log_inputs`` does. What this module cannot do the way MLflow would (a run that is not
active, a param written before with another value, an artifact location that is not a local
folder) raises ``Fallback`` before anything is committed, and the caller writes the unit through
the client, which says what is wrong in MLflow's own words.

The same writer takes a fused unit's live runs (``MlflowStore.start_live_many``: RUNNING runs
with their tags and params, as ``create_run`` and ``log_batch`` leave them) and a flush of their
points (``UnitWriter.append``: metric history and latest values, as ``log_batch`` leaves them),
each batch one transaction, where the client costs one to two transactions a trial: at a
thousand trials a unit those made the recorder the bottleneck of a live sweep.

This module knows MLflow's tables only; which runs a unit holds is ``mlflow_store``'s business.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlflow.entities import DatasetInput
from mlflow.exceptions import MlflowException
from sqlalchemy import and_, bindparam, insert, select, text, update
from sqlalchemy.orm import Session, aliased

ACTIVE = "active"  # MLflow's LifecycleStage.ACTIVE
RUN_NAME = "mlflow.runName"
USER = "mlflow.user"
IN_CHUNK = 500  # values per IN (...): within every database's limit on bound parameters
METRIC_COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")  # a metric row's
Row = tuple[Any, ...]
# SQLite's page cache while a unit is written (KiB): its default 2 MiB holds a small part of the
# metric indexes of a store with a few hundred thousand points, and a unit's inserts land all
# over them; 64 MiB took a point's insert from 7-11 to 6 us at 400,000 points.
PAGE_CACHE_KIB = 65536


class Fallback(Exception):
    """This unit cannot be written in bulk the way MLflow would write it; nothing of it is
    committed, and the caller writes it through MLflow's client instead."""


def sql_tracking_store(store: object) -> Any | None:
    """``store`` (an ``MlflowClient``'s tracking store) if it is MLflow's plain
    ``SqlAlchemyStore`` with the session helpers this module uses, else None. Subclasses (the
    workspace-aware store scopes every query to a workspace) and other backends (a tracking
    server, a file store) are left to the client."""
    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    cls = getattr(module, "SqlAlchemyStore", None)
    if cls is None or type(store) is not cls:  # not loaded: no store can be one
        return None
    helpers = ("ManagedSessionMaker", "sanitize_metric_value", "_get_run", "_mark_run_deleted")
    return store if all(hasattr(store, name) for name in helpers) else None


def local_path(artifact_uri: str) -> Path | None:
    """The folder of a local artifact location (``file:`` or a bare path), else None."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and artifact_uri[1:3] == ":\\"):
        return Path(artifact_uri)
    return None


@dataclass
class BulkRun:
    """One run of a unit as this module writes it.

    ``existing``: the run was made earlier (a live run, RUNNING with some points): its row is
    updated (status, end time), its tags merged (``tags`` overwrite), params added (one written
    before must carry the same value), metrics appended; else a new run is created with ``tags``
    as ``create_run`` would: ``tags`` are a new run's tags at creation (MLflow validates none
    there) and an existing run's tags written through ``log_batch`` (validated, a long value
    truncated). ``status`` and ``end_ms`` as ``set_terminated`` leaves them."""

    run_id: str
    name: str
    status: str
    start_ms: int
    end_ms: int | None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: Sequence[tuple[str, float, int]] = ()
    datasets: Sequence[DatasetInput] = ()
    existing: bool = False


def new_run_id() -> str:
    """A run id as MLflow makes one (``uuid4().hex``)."""
    return uuid.uuid4().hex


@contextlib.contextmanager
def unit_session(sql: Any, experiment_id: str | None) -> Iterator[UnitWriter]:
    """A ``UnitWriter`` on one write session of ``sql``: committed when the block ends
    (after the latest-metric rows are written), rolled back whole when it raises.
    ``experiment_id`` None: a writer that only appends points to existing runs (``append``: a
    live flush, whose runs may belong to any experiment), and creates none."""
    try:
        with sql.ManagedSessionMaker(read_only=False) as session:
            cache = _page_cache(session, PAGE_CACHE_KIB)
            writer = UnitWriter(sql, session, experiment_id)
            yield writer
            writer.close()
            if cache is not None:  # the pooled connection goes back as it came
                session.execute(text(f"PRAGMA cache_size = {cache}"))
    except MlflowException as exc:  # the session wraps whatever it rolled back for
        if isinstance(exc.__cause__, Fallback):
            raise exc.__cause__ from None
        raise


def _page_cache(session: Session, kib: int) -> int | None:
    """On SQLite: set this connection's page cache to ``kib`` KiB (a negative ``cache_size``
    means KiB, a positive one pages) where it is smaller, and return the setting it had, to be
    restored; None where nothing changed (another database, or a cache as large already)."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    before = int(session.execute(text("PRAGMA cache_size")).scalar() or 0)
    if before < 0 and -before >= kib:
        return None
    if before > 0:  # pages: compare in KiB
        page = int(session.execute(text("PRAGMA page_size")).scalar() or 4096)
        if before * page // 1024 >= kib:
            return None
    session.execute(text(f"PRAGMA cache_size = {-int(kib)}"))
    return before


def finished_with_tag(
    session: Session,
    experiment_id: str,
    *,
    key: str,
    values: Iterable[str],
    where: Mapping[str, str],
    status: str,
) -> set[str]:
    """Which of ``values`` of tag ``key`` an active run of the experiment in ``status`` carries,
    among runs with every tag of ``where``: one query (per ``IN_CHUNK`` values) where MLflow's
    filter language, without OR or IN on tags, needs one search per value."""
    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

    run = SqlRun.__table__
    wanted = sorted(set(values))
    found: set[str] = set()
    for i in range(0, len(wanted), IN_CHUNK):
        hit = aliased(SqlTag.__table__)
        query = (
            select(hit.c.value)
            .select_from(run)
            .join(hit, and_(hit.c.run_uuid == run.c.run_uuid, hit.c.key == key))
            .where(
                hit.c.value.in_(wanted[i : i + IN_CHUNK]),
                run.c.experiment_id == int(experiment_id),
                run.c.status == status,
                run.c.lifecycle_stage == ACTIVE,
            )
            .distinct()
        )
        for tag_key, tag_value in where.items():
            other = aliased(SqlTag.__table__)
            query = query.join(
                other,
                and_(
                    other.c.run_uuid == run.c.run_uuid,
                    other.c.key == tag_key,
                    other.c.value == tag_value,
                ),
            )
        found.update(row[0] for row in session.execute(query))
    return found


class UnitWriter:
    """The runs of one unit, inserted on one session (``unit_session``). ``write`` takes the
    runs; ``log_metrics`` appends points written later (a metric measured after ``write``);
    ``append`` appends points to runs made earlier (a live flush); ``attach`` writes an artifact
    file; ``close`` writes the latest-metric rows."""

    def __init__(self, sql: Any, session: Session, experiment_id: str | None):
        from mlflow.store.tracking.dbmodels import models

        self._sql, self.session, self._m = sql, session, models
        self.experiment_id = -1 if experiment_id is None else int(experiment_id)
        self._artifact_location: str | None = None
        if experiment_id is not None:
            exp = models.SqlExperiment.__table__
            row = session.execute(
                select(exp.c.artifact_location, exp.c.lifecycle_stage).where(
                    exp.c.experiment_id == self.experiment_id
                )
            ).first()
            if row is None or row.lifecycle_stage != ACTIVE:
                raise Fallback(f"experiment {experiment_id} is missing or not active")
            if local_path(row.artifact_location or "") is None:
                raise Fallback(f"artifact location {row.artifact_location!r} is not a local folder")
            self._artifact_location = row.artifact_location
        self._artifact_uri: dict[str, str] = {}
        # run id -> key -> latest row (``METRIC_COLUMNS``); ``_stored_latest``: the keys the
        # database holds already (updated at close rather than inserted).
        self._latest: dict[str, dict[str, Row]] = {}
        self._stored_latest: set[tuple[str, str]] = set()
        self._latest_read: set[str] = set()  # runs whose stored latest rows are in ``_latest``
        self._dirty_latest: set[tuple[str, str]] = set()
        self._seen: set[Row] = set()
        self._checked_keys: set[str] = set()
        self._param_keys: set[str] = set()

    # -- runs ------------------------------------------------------------------------------------
    def write(self, runs: Sequence[BulkRun], *, now_ms: int) -> None:
        """Insert every run of the unit (or, for ``existing`` runs, update them) with its tags,
        params, metrics (timestamped ``now_ms``) and dataset inputs."""
        from mlflow.utils.name_utils import _generate_random_name
        from mlflow.utils.uri import append_to_uri_path
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, _validate_param, _validate_tag

        m = self._m
        held = self._held([r.run_id for r in runs if r.existing])
        run_rows, tag_rows, tag_updates, renames, closes = [], [], [], [], []
        param_rows, metric_rows = [], []
        for run in runs:
            rid = run.run_id
            if run.existing:
                mine = held[rid]
                self._artifact_uri[rid] = mine.artifact_uri
                # log_batch: validated (a long value truncated as MLflow does); a run name tag
                # renames the run (set_tag -> update_run_info).
                for tag in (_validate_tag(k, v) for k, v in run.tags.items()):
                    row = {"b_run": rid, "b_key": tag.key, "b_value": tag.value}
                    if tag.key in mine.tags:
                        tag_updates.append(row)
                    else:
                        tag_rows.append({"run_uuid": rid, "key": tag.key, "value": tag.value})
                        mine.tags.add(tag.key)
                    if tag.key == RUN_NAME:
                        renames.append({"b_run": rid, "b_name": tag.value})
                closes.append({"b_run": rid, "b_status": run.status, "b_end": run.end_ms})
            else:
                if self._artifact_location is None:
                    raise Fallback("a writer without an experiment creates no run")
                # create_run: tags as given (MLflow validates none at creation), the run name
                # from the argument or the tag, a random one if neither, and its tag.
                tags = dict(run.tags)
                tagged = tags.get(RUN_NAME)
                if run.name and tagged and run.name != tagged:
                    raise Fallback(f"run name {run.name!r} and tag {tagged!r} differ")
                name = run.name or tagged or _generate_random_name()
                if not tagged:
                    tags[RUN_NAME] = name
                uri = append_to_uri_path(self._artifact_location, rid, "artifacts")
                self._artifact_uri[rid] = uri
                run_rows.append(
                    {
                        "run_uuid": rid,
                        "name": name,
                        "source_type": "UNKNOWN",
                        "source_name": "",
                        "entry_point_name": "",
                        "user_id": run.tags.get(USER, "unknown"),
                        "status": run.status,
                        "start_time": run.start_ms,
                        "end_time": run.end_ms,
                        "deleted_time": None,
                        "source_version": "",
                        "lifecycle_stage": ACTIVE,
                        "artifact_uri": uri,
                        "experiment_id": self.experiment_id,
                    }
                )
                tag_rows += [{"run_uuid": rid, "key": k, "value": v} for k, v in tags.items()]
            before = held[rid].params if run.existing else {}
            for key, value in run.params.items():
                # MLflow's check, once per key (the key's checks depend on the key alone; a
                # value is only measured: one too long is truncated, with MLflow's warning)
                if key not in self._param_keys or len(value) > MAX_PARAM_VAL_LENGTH:
                    param = _validate_param(key, value)
                    self._param_keys.add(key)
                    key, value = param.key, param.value
                if key in before:
                    if before[key] != value:
                        raise Fallback(f"param {key!r} of run {rid} has another value")
                    continue
                param_rows.append({"run_uuid": rid, "key": key, "value": value})
            metric_rows += self._metric_rows(rid, run.metrics, now_ms)

        self._insert(m.SqlRun, run_rows)
        self._insert(m.SqlTag, tag_rows)
        tags = m.SqlTag.__table__
        self._update(
            tags,
            (tags.c.run_uuid == bindparam("b_run"), tags.c.key == bindparam("b_key")),
            {"value": bindparam("b_value")},
            tag_updates,
        )
        self._insert(m.SqlParam, param_rows)
        self._insert(m.SqlMetric, metric_rows, METRIC_COLUMNS)
        table = m.SqlRun.__table__
        where = (table.c.run_uuid == bindparam("b_run"),)
        self._update(table, where, {"name": bindparam("b_name")}, renames)
        self._update(
            table, where, {"status": bindparam("b_status"), "end_time": bindparam("b_end")}, closes
        )
        self._inputs(runs, held)

    def log_metrics(
        self, points: Mapping[str, Sequence[tuple[str, float, int]]], now_ms: int
    ) -> None:
        """Append points (run id -> its points) to runs ``write`` took, in one statement: a
        metric measured after ``write`` (``logging_time_s``)."""
        rows = [row for rid, pts in points.items() for row in self._metric_rows(rid, pts, now_ms)]
        self._insert(self._m.SqlMetric, rows, METRIC_COLUMNS)

    def append(self, points: Mapping[str, Sequence[tuple[str, float, int]]], now_ms: int) -> None:
        """Append points (run id -> its points) to runs made earlier, as ``log_batch`` would: each
        run must exist and be active (``_check_run_is_active``), its latest values are read
        first so ``close`` updates them as ``_update_latest_metrics_if_necessary`` would. Reads
        only the runs' rows and latest metrics, not their tags and params: a live flush of a
        thousand runs pays for what it writes."""
        run_ids = list(points)
        self._active(run_ids)
        self._read_latest(run_ids)
        self.log_metrics(points, now_ms)

    def delete_runs(self, run_ids: Iterable[str]) -> None:
        """Delete runs the way ``delete_run`` does (MLflow's own helper, on this session)."""
        for run_id in run_ids:
            self._sql._mark_run_deleted(
                self.session, self._sql._get_run(run_uuid=run_id, session=self.session)
            )

    # -- artifacts -------------------------------------------------------------------------------
    def artifact_dir(self, run_id: str) -> Path:
        path = local_path(self._artifact_uri[run_id])
        if path is None:
            raise Fallback(f"run {run_id}'s artifacts are not in a local folder")
        return path

    def attach(self, run_id: str, name: str, text: str) -> None:
        """Write the text artifact ``name`` of a run ``write`` took, as ``log_text`` would (UTF-8,
        folders made), before the commit: if the commit fails the file is an orphan that no run
        names, and a later attempt writes a run of its own."""
        path = self.artifact_dir(run_id) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)

    # -- the end ---------------------------------------------------------------------------------
    def close(self) -> None:
        """The latest value of every metric written: inserted where the run had none, updated
        where it held an older one."""
        table = self._m.SqlLatestMetric.__table__
        fresh, changed = [], []
        for run_id, keys in self._latest.items():
            for key, row in keys.items():
                if (run_id, key) not in self._stored_latest:
                    fresh.append(row)
                elif (run_id, key) in self._dirty_latest:
                    changed.append({f"b_{c}": v for c, v in zip(METRIC_COLUMNS, row, strict=True)})
        self._insert(self._m.SqlLatestMetric, fresh, METRIC_COLUMNS)
        self._update(
            table,
            (table.c.run_uuid == bindparam("b_run_uuid"), table.c.key == bindparam("b_key")),
            {c: bindparam(f"b_{c}") for c in ("value", "timestamp", "step", "is_nan")},
            changed,
        )

    # -- helpers ---------------------------------------------------------------------------------
    def _metric_rows(
        self, run_id: str, points: Sequence[tuple[str, float, int]], now_ms: int
    ) -> list[Row]:
        """The metric rows (``METRIC_COLUMNS``) of these points as ``MlflowStore.log`` and
        ``log_batch`` would store them: values as floats and steps as ints, validated by MLflow
        (the name once per key: for a float value and an int step nothing else can fail, so any
        other point goes through the whole check), NaN stored as 0 with ``is_nan``, infinities
        as the largest floats, a point repeated exactly stored once; the run's latest value per
        key updated by (step, timestamp, value)."""
        from mlflow.utils.validation import _validate_metric

        seen, checked, dirty = self._seen, self._checked_keys, self._dirty_latest
        latest = self._latest.setdefault(run_id, {})
        sanitize = self._sql.sanitize_metric_value
        rows = []
        for key, value, step in points:
            if key not in checked or type(value) is not float or type(step) is not int:
                value, step = float(value), int(step)  # as ``MlflowStore.log`` gives them
                _validate_metric(key, value, now_ms, step)
                checked.add(key)
            if value - value == 0.0:  # finite (NaN and infinities give NaN)
                is_nan = False
            else:
                is_nan, value = sanitize(value)
            row = (key, value, now_ms, step, is_nan, run_id)
            if row in seen:
                continue
            seen.add(row)
            rows.append(row)
            best = latest.get(key)
            if best is None or (step, now_ms, value) > (best[3], best[2], best[1]):
                latest[key] = row
                dirty.add((run_id, key))
        return rows

    def _inputs(self, runs: Sequence[BulkRun], held: Mapping[str, _Held]) -> None:
        """Dataset inputs as ``log_inputs`` writes them: validated; per run, one input per
        (name, digest), the first; a dataset row per (experiment, name, digest), reused if the
        experiment has one; an input a run holds already is not written again."""
        from mlflow.utils.validation import _validate_dataset_inputs

        m = self._m
        wanted: dict[str, list[DatasetInput]] = {}
        for run in runs:
            if not run.datasets:
                continue
            _validate_dataset_inputs(list(run.datasets))
            firsts: dict[tuple[str, str], DatasetInput] = {}
            for item in run.datasets:
                firsts.setdefault((item.dataset.name, item.dataset.digest), item)
            wanted[run.run_id] = list(firsts.values())
        if not wanted:
            return
        items = [item for inputs in wanted.values() for item in inputs]
        names = sorted({i.dataset.name for i in items})
        digests = sorted({i.dataset.digest for i in items})
        table = m.SqlDataset.__table__
        uuids = {
            (row.name, row.digest): row.dataset_uuid
            for row in self.session.execute(
                select(table.c.name, table.c.digest, table.c.dataset_uuid).where(
                    table.c.experiment_id == self.experiment_id,
                    table.c.name.in_(names),
                    table.c.digest.in_(digests),
                )
            )
        }
        dataset_rows = []
        for item in items:
            ds = item.dataset
            if (ds.name, ds.digest) not in uuids:
                uuids[(ds.name, ds.digest)] = new_run_id()
                dataset_rows.append(
                    {
                        "dataset_uuid": uuids[(ds.name, ds.digest)],
                        "experiment_id": self.experiment_id,
                        "name": ds.name,
                        "digest": ds.digest,
                        "dataset_source_type": ds.source_type,
                        "dataset_source": ds.source,
                        "dataset_schema": ds.schema,
                        "dataset_profile": ds.profile,
                    }
                )
        have = {pair for run_id in wanted if run_id in held for pair in held[run_id].inputs}
        input_rows, input_tag_rows = [], []
        for run_id, inputs in wanted.items():
            for item in inputs:
                source = uuids[(item.dataset.name, item.dataset.digest)]
                if (source, run_id) in have:
                    continue
                input_uuid = new_run_id()
                input_rows.append(
                    {
                        "input_uuid": input_uuid,
                        "source_type": "DATASET",
                        "source_id": source,
                        "destination_type": "RUN",
                        "destination_id": run_id,
                    }
                )
                input_tag_rows += [
                    {"input_uuid": input_uuid, "name": tag.key, "value": tag.value}
                    for tag in item.tags
                ]
        self._insert(m.SqlDataset, dataset_rows)
        self._insert(m.SqlInput, input_rows)
        self._insert(m.SqlInputTag, input_tag_rows)

    def _held(self, run_ids: Sequence[str]) -> dict[str, _Held]:
        """What existing runs hold (their row, tag keys, params, latest metrics, dataset inputs),
        read in a few IN queries; a run that is missing or not active cannot take a write."""
        if not run_ids:
            return {}
        m = self._m
        out = {rid: _Held(uri) for rid, uri in self._active(run_ids).items()}
        tags = m.SqlTag.__table__
        for row in self._rows(tags, tags.c.run_uuid, run_ids):
            out[row.run_uuid].tags.add(row.key)
        params = m.SqlParam.__table__
        for row in self._rows(params, params.c.run_uuid, run_ids):
            out[row.run_uuid].params[row.key] = row.value
        self._read_latest(run_ids)
        inputs = m.SqlInput.__table__
        for row in self._rows(inputs, inputs.c.destination_id, run_ids):
            if row.source_type == "DATASET" and row.destination_type == "RUN":
                out[row.destination_id].inputs.add((row.source_id, row.destination_id))
        return out

    def _active(self, run_ids: Sequence[str]) -> dict[str, str]:
        """run id -> artifact URI of each of ``run_ids``, which must all exist and be active (a
        run that is missing or deleted cannot take a write)."""
        runs = self._m.SqlRun.__table__
        out: dict[str, str] = {}
        query = select(runs.c.run_uuid, runs.c.lifecycle_stage, runs.c.artifact_uri)
        for i in range(0, len(run_ids), IN_CHUNK):
            chunk = list(run_ids[i : i + IN_CHUNK])
            for row in self.session.execute(query.where(runs.c.run_uuid.in_(chunk))):
                if row.lifecycle_stage != ACTIVE:
                    raise Fallback(f"run {row.run_uuid} is not active")
                out[row.run_uuid] = row.artifact_uri or ""
        if set(run_ids) - set(out):
            raise Fallback(f"no run {sorted(set(run_ids) - set(out))}")
        return out

    def _read_latest(self, run_ids: Sequence[str]) -> None:
        """The runs' stored latest metric rows into ``_latest``, once per run and session (a
        second read would forget what this session has written since)."""
        todo = [rid for rid in dict.fromkeys(run_ids) if rid not in self._latest_read]
        self._latest_read.update(todo)
        latest = self._m.SqlLatestMetric.__table__
        for row in self._rows(latest, latest.c.run_uuid, todo):
            self._latest.setdefault(row.run_uuid, {})[row.key] = tuple(
                getattr(row, c) for c in METRIC_COLUMNS
            )
            self._stored_latest.add((row.run_uuid, row.key))

    def _rows(self, table: Any, column: Any, values: Sequence[str]) -> Iterator[Any]:
        for i in range(0, len(values), IN_CHUNK):
            yield from self.session.execute(
                select(table).where(column.in_(list(values[i : i + IN_CHUNK])))
            )

    def _insert(
        self, model: Any, rows: Sequence[Mapping[str, Any] | Row], columns: Sequence[str] = ()
    ) -> None:
        """One multi-row INSERT: the statement compiled once by SQLAlchemy for this database, the
        rows handed to the driver's ``executemany`` as they are (dicts, or tuples in
        ``columns``' order). No ORM objects, nor SQLAlchemy's per-row parameter processing: a
        trial's ~400 metric rows as ORM objects cost more than the whole write budget, and the
        per-row processing a third of the rest. A statement the rows cannot fill alone (a
        column with a default computed in Python) goes through SQLAlchemy's own executemany."""
        if not rows:
            return
        if not columns:
            columns = tuple(rows[0])
            rows = [tuple(r[c] for c in columns) for r in rows]  # type: ignore[index]
        conn = self.session.connection()
        table = model.__table__
        compiled = insert(table).compile(dialect=conn.dialect, column_keys=list(columns))
        names = list(compiled.positiontup or []) if compiled.positional else list(compiled.params)
        if set(names) != set(columns):
            self.session.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in rows])
        elif compiled.positional:
            order = [list(columns).index(name) for name in names]
            if order != list(range(len(columns))):
                rows = [tuple(r[i] for i in order) for r in rows]
            conn.exec_driver_sql(compiled.string, list(rows))
        else:
            conn.exec_driver_sql(
                compiled.string, [dict(zip(columns, r, strict=True)) for r in rows]
            )

    def _update(
        self, table: Any, where: tuple[Any, ...], values: dict[str, Any], rows: list[dict]
    ) -> None:
        if rows:
            self.session.execute(update(table).where(*where).values(values), rows)


@dataclass
class _Held:
    """What an existing run holds already (``UnitWriter._held``)."""

    artifact_uri: str
    tags: set[str] = field(default_factory=set)
    params: dict[str, str] = field(default_factory=dict)
    inputs: set[tuple[str, str]] = field(default_factory=set)
