"""The record store: one interface (``RecordStore``, its docstrings the contract) for everything
gradatlas persists and reads, and ``open_store(uri)`` to get one.

A store is a URI: ``sqlite:///PATH`` (the default, ``sqlite:///./runs/mlflow.db``) or an MLflow
tracking server (``http(s)://...``); both are ``MlflowStore``. Open it once per process and pass
the object around: a SQLite file takes one writer at a time, and the driver (then its recorder)
is that writer. Importing this package does not import MLflow; opening a store does.
"""

from __future__ import annotations

from gradatlas.store.base import (
    FailureWrite,
    LiveRun,
    LoadedTrial,
    RecordStore,
    StoredExperiment,
    StoredRun,
    TrialLoad,
    TrialWrite,
    UnitReport,
)
from gradatlas.store.checks import StoreWriteError, classify_write_error
from gradatlas.store.drivers import STALE_AFTER_S, DriverInfo
from gradatlas.store.uri import (
    default_tracking_uri,
    redact,
    resolve_tracking_uri,
    sqlite_file,
)

__all__ = [
    "STALE_AFTER_S",
    "DriverInfo",
    "FailureWrite",
    "LiveRun",
    "LoadedTrial",
    "RecordStore",
    "StoreWriteError",
    "StoredExperiment",
    "StoredRun",
    "TrialLoad",
    "TrialWrite",
    "UnitReport",
    "as_store",
    "classify_write_error",
    "default_tracking_uri",
    "open_store",
    "redact",
    "resolve_tracking_uri",
    "sqlite_file",
]


def open_store(
    uri: str | None = None, *, create: bool = True, probe_timeout: float = 5.0
) -> RecordStore:
    """The store at ``uri`` (default: ``resolve_tracking_uri()``), checked before anything is
    written or read, so a bad store is one ``UserInputError`` (exit 2) naming it:

    - ``http(s)://``: ``GET /health`` must get an HTTP answer within ``probe_timeout`` seconds;
    - ``sqlite:///PATH`` with ``create`` (a writer: ``gradatlas run``): the directory is made if
      missing and must be writable; the file, if there is one, must be a writable, uncorrupted
      MLflow store; a fresh store is created under a file lock (concurrent first opens migrate
      it once);
    - ``sqlite:///PATH`` without ``create`` (a reader: reports, exports, the UI, repro, and the
      recorder process of a driver that opened it already): the file must exist; nothing is
      created;
    - anything else (``postgresql://``, ``file:``, ``databricks``) is left to MLflow.
    """
    from gradatlas.store import checks
    from gradatlas.store.mlflow_store import MlflowStore
    from gradatlas.store.uri import scheme

    uri = resolve_tracking_uri(uri)
    db = sqlite_file(uri)
    if scheme(uri) in ("http", "https"):
        checks.probe_server(uri, probe_timeout)
    elif db is not None and not create:
        checks.require_sqlite(db)
    if db is not None and create:
        return checks.open_sqlite(db, lambda: MlflowStore.created(uri))
    return MlflowStore(uri)


def as_store(store: RecordStore | str | None) -> RecordStore:
    """``store`` itself, or the store at that URI opened for reading (``open_store(uri,
    create=False)``): what the readers' public functions take, so a caller holding a store
    passes it and a script passes a URI."""
    return store if isinstance(store, RecordStore) else open_store(store, create=False)
