"""``MlflowStore``: the ``RecordStore`` on MLflow (a SQLite file or a tracking server), and the one
module of the project that talks to MLflow's tracking API (the UI launcher aside).

How it writes: ``MlflowClient`` and ``log_batch``, never the fluent API's global active run, and
never one call per metric (on SQLite that costs seconds per trial). ``log`` splits a batch into
MLflow's per-call caps itself (1,000 metrics, 100 params, 100 tags, 1,000 entities), so the
contract holds whatever the client version does. A unit of trials (``record_unit``) on a store
that is a database (SQLite, PostgreSQL...) with a local artifact folder skips the client: its
runs go into MLflow's tables in one transaction (``gradatlas.store.sql_bulk``), a few ms a trial
where the client's six round trips a trial cost over 100 ms on SQLite; so do a unit's live runs
as they start (``start_live_many``) and each flush of their points (``live_points_many``).

How it reads the reports' trials fast: at atlas scale (10,000 trials) MLflow's own
``search_runs`` is most of the read (it builds an ORM object for every param, metric and tag of
every run, over a million objects), while a report needs only each run's id, times, artifact
location and tags; the records carry the rest. So for a local SQLite store the finished trial
runs are read with one read-only SQL query of MLflow's ``runs`` and ``tags`` tables (the filter
``search_runs`` would apply, in its order), and anything else, or any surprise in that schema,
goes through ``search_runs``. ``trial.json`` is read straight from disk when the artifact store
is local, else downloaded on a few threads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    Metric,
    Param,
    RunTag,
    ViewType,
)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
)
from sqlalchemy.exc import SQLAlchemyError

from gradatlas.record import (
    DEVICE,
    ERROR,
    ERROR_ARTIFACT,
    FINISHED,
    KIND,
    KIND_TRIAL,
    MAX_REASON_TAG,
    SWEEP_RUN,
    TRIAL_ARTIFACT,
    TRIAL_ID,
    RunKind,
    RunStatus,
    TrialRecord,
    record_from_run_data,
    trial_metrics,
    trial_params,
    trial_tags,
)
from gradatlas.store import sql_bulk
from gradatlas.store.base import (
    ArtifactContent,
    FailureWrite,
    LiveRun,
    LiveStart,
    LoadedTrial,
    Point,
    RecordStore,
    StoredExperiment,
    StoredRun,
    TrialLoad,
    TrialWrite,
    UnitReport,
    newest_per_trial,
)
from gradatlas.store.checks import StoreWriteError, classified_writes, classify_write_error
from gradatlas.store.sql_bulk import local_path as _local_path
from gradatlas.store.uri import sqlite_file

PAGE = 1000  # runs per search page
MAX_FALLBACKS_KEPT = 100  # reasons kept in ``MlflowStore.bulk_fallbacks``
DOWNLOAD_THREADS = 8  # artifact reads from a remote store are round trips: a few at once
T = TypeVar("T")


def quiet_mlflow() -> None:
    """Alembic announces every migration of a new SQLite store at INFO; users need none of it.
    Nor a progress bar per artifact read from a server."""
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class MlflowStore(RecordStore):
    """The ``RecordStore`` on an MLflow tracking URI (see the module docstring)."""

    #: Write units in one transaction where the store is a database with local artifacts
    #: (``record_unit``); False writes every run through the client (what tests compare against).
    bulk: bool = True

    def __init__(self, uri: str):
        quiet_mlflow()
        self.uri = uri
        self._db = sqlite_file(uri)
        # Private: nothing outside this module talks to MLflow (the import-direction test).
        self._client = MlflowClient(tracking_uri=uri)
        #: Why units that tried the bulk path were written through the client instead (the
        #: first ``MAX_FALLBACKS_KEPT``).
        self.bulk_fallbacks: list[str] = []

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its URI (a client holds connections): what reaches another process (the
        report's PDF worker, a Ray task) opens the same store again."""
        return (MlflowStore, (self.uri,))

    @property
    def local_dir(self) -> Path | None:
        return self._db.parent if self._db is not None else None

    @classmethod
    def created(cls, uri: str) -> MlflowStore:
        """The store with MLflow's tables created (or checked): the first query of a fresh store
        migrates it, and so may building the client; ``open_store`` calls this under its lock."""
        store = cls(uri)
        store._client.search_experiments(max_results=1)
        return store

    # -- experiments -------------------------------------------------------------------------------
    def open_experiment(self, name: str, tags: Mapping[str, str] | None = None) -> str:
        exp = self._client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self._client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        artifacts = None
        if self._db is not None:  # artifacts beside the local store, not in the cwd
            artifacts = (self._db.parent / "artifacts").resolve().as_uri()
        return self._client.create_experiment(
            name, artifact_location=artifacts, tags={k: str(v) for k, v in (tags or {}).items()}
        )

    def get_experiment(
        self, *, name: str | None = None, experiment_id: str | None = None
    ) -> StoredExperiment | None:
        if name is not None:
            exp = self._client.get_experiment_by_name(name)
        else:
            try:
                exp = self._client.get_experiment(str(experiment_id))
            except MlflowException:
                exp = None
        return None if exp is None else _experiment(exp)

    def experiments(self) -> list[StoredExperiment]:
        out, token = [], None
        while True:
            page = self._client.search_experiments(
                view_type=ViewType.ACTIVE_ONLY, max_results=PAGE, page_token=token
            )
            out += [_experiment(e) for e in page]
            token = page.token
            if not token:
                return out

    def set_experiment_tags(self, experiment_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._client.set_experiment_tag(experiment_id, key, str(value))

    # -- runs --------------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        *,
        run_name: str,
        tags: Mapping[str, str],
        start_ms: int | None = None,
    ) -> str:
        run = self._client.create_run(
            experiment_id,
            run_name=run_name,
            tags={k: str(v) for k, v in tags.items()},
            start_time=start_ms,
        )
        return run.info.run_id

    def log(
        self,
        run_id: str,
        *,
        metrics: Sequence[Point] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        now = int(time.time() * 1000)
        for m, p, t in _batches(
            [Metric(k, float(v), now, int(s)) for k, v, s in metrics],
            [Param(k, str(v)) for k, v in (params or {}).items()],
            [RunTag(k, str(v)) for k, v in (tags or {}).items()],
        ):
            self._client.log_batch(run_id, metrics=m, params=p, tags=t)

    def set_status(self, run_id: str, status: RunStatus, *, end_ms: int | None = None) -> None:
        if status == RunStatus.RUNNING:
            self._client.update_run(run_id, status=str(status))
        else:
            self._client.set_terminated(run_id, status=str(status), end_time=end_ms)

    def delete_run(self, run_id: str) -> None:
        self._client.delete_run(run_id)

    def get_run(self, run_id: str) -> StoredRun | None:
        try:
            return _stored(self._client.get_run(run_id))
        except MlflowException:  # no such run (MLflow says RESOURCE_DOES_NOT_EXIST)
            return None

    def find_runs(
        self,
        experiment_ids: str | Sequence[str],
        *,
        kind: RunKind | str | None = None,
        status: RunStatus | str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> list[StoredRun]:
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        where = {KIND: kind} if kind is not None else {}
        where |= dict(tags or {})
        parts = [f"tags.`{_key(k)}` = '{_value(v)}'" for k, v in where.items()]
        if status is not None:
            parts.append(f"attributes.status = '{_value(status)}'")
        return [_stored(r) for r in self._search(ids, " and ".join(parts), limit)]

    def _search(self, ids: list[str], filter_string: str, limit: int | None) -> Iterator[Any]:
        token, left = None, limit
        while left is None or left > 0:
            page = self._client.search_runs(
                ids,
                filter_string=filter_string,
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=PAGE if left is None else min(PAGE, left),
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            yield from page
            left = None if left is None else left - len(page)
            token = page.token
            if not token:
                return

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        points = self._client.get_metric_history(run_id, key)
        return sorted((int(m.step), float(m.value)) for m in points)

    # -- artifacts ---------------------------------------------------------------------------------
    def attach(self, run_id: str, name: str, content: ArtifactContent) -> None:
        if isinstance(content, str):
            self._client.log_text(run_id, content, name)
        elif isinstance(content, bytes):
            folder, _, filename = name.rpartition("/")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / filename
                path.write_bytes(content)
                self._client.log_artifact(run_id, str(path), folder or None)
        else:
            self._client.log_dict(run_id, content, name)

    def attach_files(self, run_id: str, path: Path, folder: str | None = None) -> None:
        if Path(path).is_dir():
            self._client.log_artifacts(run_id, str(path), folder)
        else:
            self._client.log_artifact(run_id, str(path), folder)

    def artifact_text(self, run: StoredRun | str, name: str) -> str | None:
        found = self.get_run(run) if isinstance(run, str) else run
        if found is None:
            return None
        path = _local_path(found.artifact_uri)
        if path is not None:
            try:
                return (path / name).read_text(encoding="utf-8")
            except OSError:
                return None
        import mlflow.artifacts

        try:
            return mlflow.artifacts.load_text(f"{found.artifact_uri.rstrip('/')}/{name}")
        except Exception:  # missing or unreadable: the caller says what that means
            return None

    def list_artifacts(self, run_id: str, folder: str | None = None) -> list[str]:
        return sorted(a.path for a in self._client.list_artifacts(run_id, folder))

    # -- trials ------------------------------------------------------------------------------------
    def recorded(
        self, experiment_id: str, trial_ids: Iterable[str], kind: RunKind | str = RunKind.TRIAL
    ) -> set[str]:
        """As ``RecordStore.recorded``; on a database store (``bulk``), one query for all the
        ids rather than one search per id."""
        ids = [_value(tid) for tid in trial_ids]  # a quote is refused, whatever the backend
        sql = self._sql_store()
        if sql is None or not ids:
            return super().recorded(experiment_id, ids, kind)
        with sql.ManagedSessionMaker() as session:
            return sql_bulk.finished_with_tag(
                session,
                experiment_id,
                key=TRIAL_ID,
                values=ids,
                where={KIND: str(kind)},
                status=str(RunStatus.FINISHED),
            )

    def record_unit(
        self,
        experiment_id: str,
        sweep_run_id: str | None,
        writes: Sequence[TrialWrite],
        failures: Sequence[FailureWrite] = (),
        *,
        live: Mapping[str, LiveRun] | None = None,
        force: bool = False,
    ) -> UnitReport:
        """As ``RecordStore.record_unit``. On a database store with a local artifact folder the
        unit is one transaction (``_record_bulk``): every run of it, live runs and failures
        included, is in the store after the call or none is. Anything else (a tracking server,
        remote artifacts, ``bulk`` False), or a unit the bulk path cannot write the way MLflow
        would, is written run by run through the client (``_record_each``)."""
        t0 = time.perf_counter()
        live = live or {}
        with classified_writes():
            report = self._record_bulk(experiment_id, sweep_run_id, writes, failures, live, force)
            if report is None:
                report = self._record_each(
                    experiment_id, sweep_run_id, writes, failures, live, force
                )
        report.seconds = time.perf_counter() - t0
        return report

    def _record_each(
        self,
        experiment_id: str,
        sweep_run_id: str | None,
        writes: Sequence[TrialWrite],
        failures: Sequence[FailureWrite],
        live: Mapping[str, LiveRun],
        force: bool,
    ) -> UnitReport:
        """The unit run by run through ``MlflowClient``: about six round trips a trial."""
        report = UnitReport()
        kinds = _checked_ids(writes, force)
        done = {
            (kind, tid)
            for kind, ids in kinds.items()
            for tid in RecordStore.recorded(self, experiment_id, ids, kind)
        }
        todo, duplicates = _plan(writes, done, force, live)
        for label, run in duplicates:
            report.duplicates.append(label)
            if run is not None:  # another attempt's run: the record exists once already
                self._client.delete_run(run.run_id)
        for write, run in todo:
            rid = self._write_trial(experiment_id, sweep_run_id, write, run)
            report.run_ids[write.trial_id] = rid
        for failure in failures:
            rid = self._write_failure(
                experiment_id, sweep_run_id, failure, live.get(failure.record.trial_id)
            )
            report.failed_run_ids[failure.record.trial_id] = rid
        return report

    def _record_bulk(
        self,
        experiment_id: str,
        sweep_run_id: str | None,
        writes: Sequence[TrialWrite],
        failures: Sequence[FailureWrite],
        live: Mapping[str, LiveRun],
        force: bool,
    ) -> UnitReport | None:
        """The unit in one transaction (``sql_bulk``): one query for the duplicates, the runs'
        rows in a few multi-row statements, ``trial.json`` and ``error.txt`` written into the
        runs' artifact folders before the commit. The same runs as ``_record_each`` writes
        (``tests/test_store_bulk.py`` compares them), except that every run of the unit shares
        one clock reading where the trial gives none (start, end, metric timestamps), and
        ``logging_time_s`` (metric and ``trial.json``) is the unit's time up to its artifact
        writes (the duplicate check and every row written, not yet committed) divided by its
        runs: an amortized share, not one trial's own.

        None, with nothing written and the reason in ``bulk_fallbacks``, where the store is not
        a database with local artifacts, or the unit cannot be written the way MLflow would
        (``sql_bulk.Fallback``: a live run deleted meanwhile, a param written before with
        another value; an ``MlflowException`` from MLflow's validation; any database error):
        the transaction is rolled back whole and the caller writes the unit through the client,
        which raises what MLflow would. Live runs' step marks are restored, so that second
        attempt writes the same points. A failure the user must fix (disk full, read-only,
        locked) raises ``StoreWriteError`` at once: the client's path would fail the same way,
        after writing half the unit."""
        sql = self._sql_store()
        if sql is None:
            return None
        t0 = time.perf_counter()
        return self._try_bulk(
            "unit",
            lambda: self._write_bulk(
                sql, experiment_id, sweep_run_id, writes, failures, live, force, t0
            ),
            live.values(),
        )

    def _try_bulk(
        self, what: str, write: Callable[[], T], lives: Iterable[LiveRun] = ()
    ) -> T | None:
        """``write()`` (one bulk transaction), or None when it raised what the client's path
        can still write (``sql_bulk.Fallback``, an ``MlflowException``, a database error): the
        transaction rolled back, the reason noted (``_fell_back``) and ``lives``' step marks
        put back as they were before ``write`` ran, so the caller's second attempt writes the
        same points."""
        marks = [(live, dict(live.last_step)) for live in lives]
        try:
            return write()
        except (sql_bulk.Fallback, MlflowException, SQLAlchemyError) as exc:
            self._fell_back(exc, what)
            for live, steps in marks:
                live.last_step = steps
            return None

    def _fell_back(self, exc: Exception, what: str) -> None:
        """A bulk write that raised ``exc`` and was rolled back: ``StoreWriteError`` where the
        user must fix something (disk full, read-only, locked: the client's path would fail the
        same way, half-way through), else the reason noted in ``bulk_fallbacks`` and logged,
        and the caller writes ``what`` through the client."""
        why = classify_write_error(exc, store=None)
        if why is not None:
            raise StoreWriteError(why) from exc
        why = f"{type(exc).__name__}: {exc}"
        # Said once per store at WARNING (a sweep of slow units should know why), then DEBUG.
        level = logging.DEBUG if self.bulk_fallbacks else logging.WARNING
        logging.getLogger(__name__).log(level, "%s written run by run instead: %s", what, why)
        if len(self.bulk_fallbacks) < MAX_FALLBACKS_KEPT:
            self.bulk_fallbacks.append(why)

    def _write_bulk(
        self,
        sql: Any,
        experiment_id: str,
        sweep_run_id: str | None,
        writes: Sequence[TrialWrite],
        failures: Sequence[FailureWrite],
        live: Mapping[str, LiveRun],
        force: bool,
        t0: float,
    ) -> UnitReport:
        report = UnitReport()
        now = int(time.time() * 1000)
        with sql_bulk.unit_session(sql, experiment_id) as unit:
            done = {
                (kind, tid)
                for kind, ids in _checked_ids(writes, force).items()
                for tid in sql_bulk.finished_with_tag(
                    unit.session,
                    experiment_id,
                    key=TRIAL_ID,
                    values=ids,
                    where={KIND: kind},
                    status=str(RunStatus.FINISHED),
                )
            }
            todo, duplicates = _plan(writes, done, force, live)
            report.duplicates = [label for label, _ in duplicates]
            unit.delete_runs(run.run_id for _, run in duplicates if run is not None)
            runs, texts, errors = [], [], []
            for write, run in todo:
                bulk, record = self._trial_run(sweep_run_id, write, run, now)
                runs.append(bulk)
                texts.append((bulk.run_id, record))
                report.run_ids[write.trial_id] = bulk.run_id
            for failure in failures:
                bulk = self._failure_run(
                    sweep_run_id, failure, live.get(failure.record.trial_id), now
                )
                runs.append(bulk)
                errors.append((bulk.run_id, failure.traceback))
                report.failed_run_ids[failure.record.trial_id] = bulk.run_id
            unit.write(runs, now_ms=now)
            share = (time.perf_counter() - t0) / max(len(runs), 1)
            stamp = int(time.time() * 1000)
            unit.log_metrics({rid: [("logging_time_s", share, 0)] for rid, _ in texts}, stamp)
            for rid, record in texts:
                timing = record.timing | {"logging_time_s": share}
                unit.attach(rid, TRIAL_ARTIFACT, replace(record, timing=timing).to_json())
            for rid, traceback in errors:
                unit.attach(rid, ERROR_ARTIFACT, traceback)
        return report

    # -- live runs -------------------------------------------------------------------------------
    def start_live_many(
        self, experiment_id: str, sweep_run_id: str | None, starts: Sequence[LiveStart]
    ) -> list[LiveRun]:
        """As ``RecordStore.start_live_many``. On a database store (``bulk``) the batch is one
        transaction (``sql_bulk``): the rows ``create_run`` and ``log_batch`` of the params
        would leave (the run row with its name, user, ``artifact_uri`` and ``mlflow.runName``
        tag; the tags as given; the params validated and truncated as MLflow does), a few
        multi-row statements and one commit for the whole batch where ``start_live`` costs two
        transactions a trial. Runs started without ``start_ms`` share one clock reading. A
        batch the bulk path cannot write the way MLflow would (``_fell_back``) is rolled back
        whole and started run by run through the client."""
        starts = list(starts)
        sql = self._sql_store()
        if sql is None or not starts:
            return super().start_live_many(experiment_id, sweep_run_id, starts)
        with classified_writes():
            now = int(time.time() * 1000)
            sweep = {SWEEP_RUN: sweep_run_id} if sweep_run_id else {}
            runs = [
                sql_bulk.BulkRun(
                    run_id=sql_bulk.new_run_id(),
                    name=start.run_name,
                    status=str(RunStatus.RUNNING),
                    start_ms=start.start_ms or now,  # the client's ``start_time or now``
                    end_ms=None,
                    tags={k: str(v) for k, v in start.tags.items()} | sweep,
                    params={k: str(v) for k, v in start.params.items()},
                )
                for start in starts
            ]
            if self._try_bulk("live runs", lambda: self._write_runs(sql, experiment_id, runs, now)):
                return [LiveRun(run.run_id) for run in runs]
            return super().start_live_many(experiment_id, sweep_run_id, starts)

    @staticmethod
    def _write_runs(sql: Any, experiment_id: str, runs: list[Any], now: int) -> bool:
        with sql_bulk.unit_session(sql, experiment_id) as unit:
            unit.write(runs, now_ms=now)
        return True

    def live_points_many(self, batch: Sequence[tuple[LiveRun, Sequence[Point]]]) -> int:
        """As ``RecordStore.live_points_many``. On a database store (``bulk``) the flush is one
        transaction (``sql_bulk.UnitWriter.append``): metric history and latest values as
        ``log_batch`` leaves them, one clock reading for every point of the flush, one commit
        where ``live_points`` costs one transaction a run. A flush the bulk path cannot write
        (a run deleted meanwhile, a database error) is rolled back whole, the runs' step marks
        restored, and written run by run through the client, which raises what MLflow would
        for a run that cannot take points."""
        batch = list(batch)
        sql = self._sql_store()
        if sql is None or not batch:
            return super().live_points_many(batch)
        with classified_writes():
            lives = {id(live): live for live, _ in batch}.values()
            written = self._try_bulk("live points", lambda: self._append(sql, batch), lives)
            return super().live_points_many(batch) if written is None else written

    @staticmethod
    def _append(sql: Any, batch: Sequence[tuple[LiveRun, Sequence[Point]]]) -> int:
        """The points of ``batch`` past what each run holds (``LiveRun.after``, which moves its
        marks), in one transaction; how many."""
        news: dict[str, list[Point]] = {}
        for live, points in batch:
            new = live.after(points)
            if new:
                news.setdefault(live.run_id, []).extend(new)
        if news:
            with sql_bulk.unit_session(sql, None) as unit:
                unit.append(news, int(time.time() * 1000))
        return sum(len(points) for points in news.values())

    def _sql_store(self) -> Any | None:
        """MLflow's ``SqlAlchemyStore`` behind the client, when ``bulk`` is on and it is one."""
        if not self.bulk:
            return None
        return sql_bulk.sql_tracking_store(self._client._tracking_client.store)

    def _trial_parts(
        self, sweep_run_id: str | None, write: TrialWrite, live: LiveRun | None
    ) -> tuple[dict[str, str], list[Point]]:
        """A trial run's tags and the metric points it takes (``live``: those past what its
        live run holds; the run then holds them)."""
        record = write.record
        parent = write.parent or sweep_run_id
        # A trial run stands flat and names its sweep; a tuning run nests under its study run.
        if write.kind != KIND_TRIAL:
            tags = trial_tags(record, parent_run=parent) | write.tags
        else:
            tags = trial_tags(record, sweep_run=parent) | write.tags
        points = trial_metrics(record)
        if write.last_points_only:  # the summary (step 0) and each curve's last point
            points = list({key: (key, v, s) for key, v, s in points}.values())
        if live is not None:
            points = live.after(points)
        return tags, points

    def _trial_run(
        self, sweep_run_id: str | None, write: TrialWrite, live: LiveRun | None, now: int
    ) -> tuple[sql_bulk.BulkRun, TrialRecord]:
        """A trial write as ``sql_bulk`` takes it: what ``_write_trial`` writes, as rows."""
        tags, points = self._trial_parts(sweep_run_id, write, live)
        record = write.record
        run = sql_bulk.BulkRun(
            run_id=live.run_id if live is not None else sql_bulk.new_run_id(),
            name=write.run_name,
            status=str(RunStatus(record.status)),
            start_ms=write.start_ms or now,
            end_ms=write.end_ms or now,
            tags={k: str(v) for k, v in tags.items()},
            params={k: str(v) for k, v in trial_params(record).items()},
            metrics=points,
            datasets=[_dataset_input(record)] if write.kind == KIND_TRIAL else [],
            existing=live is not None,
        )
        return run, record

    def _failure_run(
        self, sweep_run_id: str | None, failure: FailureWrite, live: LiveRun | None, now: int
    ) -> sql_bulk.BulkRun:
        """A failure as ``sql_bulk`` takes it: what ``_write_failure`` writes, as rows."""
        return sql_bulk.BulkRun(
            run_id=live.run_id if live is not None else sql_bulk.new_run_id(),
            name=failure.run_name,
            status=str(RunStatus.FAILED),
            start_ms=now,
            end_ms=now,
            tags={k: str(v) for k, v in _failure_tags(failure, sweep_run_id).items()},
            params={k: str(v) for k, v in trial_params(failure.record).items()},
            existing=live is not None,
        )

    def _write_trial(
        self, experiment_id: str, sweep_run_id: str | None, write: TrialWrite, live: LiveRun | None
    ) -> str:
        """One trial run from its record: tags at creation, params and metrics in one batch,
        ``trial.json``, the ``logging_time_s`` metric (the time spent here), then the status
        and the trial's end time."""
        t0 = time.perf_counter()
        record = write.record
        tags, points = self._trial_parts(sweep_run_id, write, live)
        if live is None:
            rid = self.create_run(
                experiment_id, run_name=write.run_name, tags=tags, start_ms=write.start_ms
            )
        else:
            rid = live.run_id
        self.log(
            rid,
            metrics=points,
            params=trial_params(record),
            tags=tags if live is not None else None,
        )
        timing = record.timing | {"logging_time_s": time.perf_counter() - t0}
        self._client.log_text(rid, replace(record, timing=timing).to_json(), TRIAL_ARTIFACT)
        now = int(time.time() * 1000)
        self._client.log_metric(rid, "logging_time_s", time.perf_counter() - t0, now, 0)
        self.set_status(rid, RunStatus(record.status), end_ms=write.end_ms)
        if write.kind == KIND_TRIAL:
            self._client.log_inputs(rid, datasets=[_dataset_input(record)])
        return rid

    def _write_failure(
        self,
        experiment_id: str,
        sweep_run_id: str | None,
        failure: FailureWrite,
        live: LiveRun | None,
    ) -> str:
        """A FAILED trial run with its config as params, the error as a tag and the traceback as
        ``error.txt``, so it is listed, findable and not lost (in its live run if it has one)."""
        tags = _failure_tags(failure, sweep_run_id)
        if live is None:
            rid = self.create_run(experiment_id, run_name=failure.run_name, tags=tags)
        else:
            rid = live.run_id
        self.log(rid, params=trial_params(failure.record), tags=tags if live is not None else None)
        self._client.log_text(rid, failure.traceback, ERROR_ARTIFACT)
        self.set_status(rid, RunStatus.FAILED)
        return rid

    def load_trials(self, experiment_id: str) -> TrialLoad:
        kept, set_aside = newest_per_trial(self.finished_trial_runs(experiment_id))
        records = self._read_json(kept, TRIAL_ARTIFACT)
        trials = []
        for run in kept:
            raw = records.get(run.run_id)
            if raw is not None:
                trials.append(LoadedTrial(run, TrialRecord.from_json(raw)))
                continue
            full = run if run.params is not None else (self.get_run(run.run_id) or run)
            record = record_from_run_data(
                full.tags, full.params or {}, full.metrics or {}, run.run_id
            )
            trials.append(LoadedTrial(run, record, rebuilt=True))
        return TrialLoad(trials, set_aside)

    def finished_trial_runs(self, experiment_id: str) -> list[StoredRun]:
        """The experiment's active FINISHED trial runs, newest first, as ``find_runs`` returns
        them, read with one SQL query when the store is a local SQLite file (tags only: params
        and metrics None), else (or when that read fails) through MLflow."""
        if self._db is not None and self._db.is_file():
            try:
                return _sqlite_finished_trials(self._db, experiment_id)
            except (sqlite3.Error, ValueError, TypeError):
                pass  # an MLflow schema this version does not know: ask MLflow itself
        return self.find_runs(experiment_id, kind=RunKind.TRIAL, status=RunStatus.FINISHED)

    def _read_json(self, runs: list[StoredRun], name: str) -> dict[str, dict[str, Any] | None]:
        """``name`` (a JSON artifact) of each run, or None where missing or unreadable: read from
        disk for a local artifact store (one ``open`` per run), else downloaded on a few
        threads, since those are round trips."""
        out: dict[str, dict[str, Any] | None] = {}
        remote = []
        for run in runs:
            path = _local_path(run.artifact_uri)
            if path is None:
                remote.append(run)
            else:
                out[run.run_id] = _json_file(path / name)
        if remote:
            with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS) as pool:
                for run_id, data in pool.map(lambda r: self._download_json(r, name), remote):
                    out[run_id] = data
        return out

    def _download_json(self, run: StoredRun, name: str) -> tuple[str, dict[str, Any] | None]:
        import mlflow.artifacts

        with tempfile.TemporaryDirectory(prefix="gradatlas-read-") as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run.run_id, artifact_path=name, dst_path=tmp, tracking_uri=self.uri
                )
            except Exception:  # a missing artifact: the run falls back to its tags and metrics
                return run.run_id, None
            return run.run_id, _json_file(Path(path))


# -- helpers ---------------------------------------------------------------------------------------
def _batches(
    metrics: list[Metric], params: list[Param], tags: list[RunTag]
) -> Iterator[tuple[list[Metric], list[Param], list[RunTag]]]:
    """The entities in ``log_batch`` calls within MLflow's caps: up to 100 params and 100 tags
    per call, metrics filling the rest of 1,000 entities."""
    while metrics or params or tags:
        p, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
        t, tags = tags[:MAX_PARAMS_TAGS_PER_BATCH], tags[MAX_PARAMS_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(p) - len(t))
        m, metrics = metrics[:room], metrics[room:]
        yield m, p, t


def _checked_ids(writes: Sequence[TrialWrite], force: bool) -> dict[str, list[str]]:
    """kind -> the trial ids whose writes are checked for an existing record (not ``force``d,
    not interrupted)."""
    kinds: dict[str, list[str]] = {}
    for w in writes:
        if not (force or w.interrupted):
            kinds.setdefault(str(w.kind), []).append(w.trial_id)
    return kinds


def _plan(
    writes: Sequence[TrialWrite],
    done: set[tuple[str, str]],
    force: bool,
    live: Mapping[str, LiveRun],
) -> tuple[list[tuple[TrialWrite, LiveRun | None]], list[tuple[str, LiveRun | None]]]:
    """Which writes of a unit become runs (each with its live run, if any) and which are
    duplicates of a recorded trial (their labels, and the live runs to delete), given the
    (kind, trial id) pairs recorded already; a FINISHED checked write counts as recorded for the
    writes after it."""
    done = set(done)
    todo, duplicates = [], []
    for write in writes:
        run = live.get(write.trial_id) if write.kind == KIND_TRIAL else None
        checked = not (force or write.interrupted)
        key = (str(write.kind), write.trial_id)
        if checked and key in done:
            duplicates.append((write.label, run))
            continue
        todo.append((write, run))
        if checked and write.record.status == FINISHED:
            done.add(key)
    return todo, duplicates


def _failure_tags(failure: FailureWrite, sweep_run_id: str | None) -> dict[str, str]:
    tags = trial_tags(failure.record, sweep_run=sweep_run_id)
    return tags | {ERROR: failure.error[:MAX_REASON_TAG], DEVICE: failure.worker}


def _dataset_input(record: TrialRecord) -> DatasetInput:
    """The trial's dataset as an MLflow input: the runs table's Dataset column (shown without
    clicks) then reads e.g. ``mnist1d (3f2a9c1e)`` with a Train badge. The digest is the hash
    of the dataset's resolved config (name, seed, options), so two suites on the same data
    match."""
    config = record.config.get("dataset") or {}
    source = json.dumps(config, sort_keys=True, default=str)
    dataset = Dataset(
        name=str(config.get("name") or "dataset"),
        digest=hashlib.sha256(source.encode()).hexdigest()[:8],
        source_type="gradatlas",
        source=source,
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "train")])


def _key(key: str) -> str:
    if "`" in key:
        raise ValueError(f"not a tag key a filter can carry: {key!r}")
    return key


def _value(value: str) -> str:
    value = str(value)
    if "'" in value or "\\" in value:  # trial ids are hex; never splice a quote into a query
        raise ValueError(f"not a value a filter can carry: {value!r}")
    return value


def _stored(run: Any) -> StoredRun:
    info, data = run.info, run.data
    return StoredRun(
        run_id=info.run_id,
        experiment_id=str(info.experiment_id),
        run_name=info.run_name or "",
        status=info.status,
        start_time=info.start_time,
        end_time=info.end_time,
        artifact_uri=info.artifact_uri or "",
        tags=dict(data.tags),
        params=dict(data.params),
        metrics=dict(data.metrics),
    )


def _experiment(exp: Any) -> StoredExperiment:
    return StoredExperiment(
        experiment_id=exp.experiment_id,
        name=exp.name,
        tags=dict(exp.tags),
        active=exp.lifecycle_stage != "deleted",
    )


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# FINISHED trial runs, as SQL on MLflow's tables (``runs``, ``tags``).
_FINISHED_TRIALS_FROM = """
FROM runs AS r JOIN tags AS k ON k.run_uuid = r.run_uuid AND k.key = ? AND k.value = ?
WHERE r.experiment_id = ? AND r.status = ? AND r.lifecycle_stage = 'active'
"""
_RUNS_SQL = (
    "SELECT r.run_uuid, r.name, r.start_time, r.end_time, r.artifact_uri, r.status"
    + _FINISHED_TRIALS_FROM
    + "ORDER BY r.start_time IS NULL, r.start_time DESC, r.run_uuid"  # search_runs' order
)
_TAGS_SQL = (
    "SELECT t.run_uuid, t.key, t.value FROM tags AS t WHERE t.run_uuid IN "
    f"(SELECT r.run_uuid {_FINISHED_TRIALS_FROM})"
)


def _sqlite_finished_trials(db: Path, experiment_id: str) -> list[StoredRun]:
    """The finished trial runs of a local SQLite store, with their tags, in two queries on a
    read-only connection."""
    args = (KIND, str(RunKind.TRIAL), int(experiment_id), str(RunStatus.FINISHED))
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = con.execute(_RUNS_SQL, args).fetchall()
        tags: dict[str, dict[str, str]] = {row[0]: {} for row in rows}
        for run_id, key, value in con.execute(_TAGS_SQL, args):
            tags[run_id][key] = value
    finally:
        con.close()
    return [
        StoredRun(rid, experiment_id, name or "", status, start, end, str(uri or ""), tags[rid])
        for rid, name, start, end, uri, status in rows
    ]
