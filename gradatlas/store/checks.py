"""Is this store usable, and why did a write fail: the checks ``open_store`` runs before anything
is written or trained, and the one line a failed write becomes.

- an unreachable tracking server, a SQLite store that cannot be written, is not a store or is
  corrupted, is one ``UserInputError`` (exit 2) instead of minutes of retries and a traceback;
- a fresh SQLite store is created under a file lock, because MLflow's own first migration is not
  safe against a second process doing it too;
- ``classify_write_error``: a write that failed because the disk is full, the store became
  read-only or locked or corrupted, or the server went away, as one line that says what to do.

No MLflow here: the backend's own first open is handed in (``create``), so these checks serve
any backend whose store is a SQLite file or an HTTP server.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from gradatlas.errors import UserInputError
from gradatlas.store.uri import redact, without_userinfo

SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
SQLITE_BUSY_S = 30.0  # how long the store check waits for another process's write lock
T = TypeVar("T")


class StoreWriteError(UserInputError):
    """A record write that failed for a reason the user must fix (``classify_write_error``'s
    line). A ``UserInputError`` so that, wherever it ends up, the CLI prints one line, exit 2."""


# -- a tracking server -----------------------------------------------------------------------------
def probe_server(uri: str, timeout: float) -> None:
    """``GET /health`` must get an HTTP answer within ``timeout`` seconds (any status counts:
    the server is there; a TLS failure too, MLflow has its own TLS settings)."""
    shown = redact(uri)
    url = without_userinfo(uri).rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # an HTTP answer (401, 404, 500...): something is listening; MLflow takes over
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            return  # it answered; certificates are MLflow's business (MLFLOW_TRACKING_INSECURE_TLS)
        reason: object = exc.reason
    except Exception as exc:  # a timeout, a reset, a non-HTTP answer, a malformed URI
        reason = exc
    raise UserInputError(
        f"the MLflow tracking server does not answer: {_reason(reason)} (probe timeout "
        f"{timeout:g} s). Check it with `curl {shown.rstrip('/')}/health` (an MLflow server "
        "answers OK), start it with `mlflow server --host HOST --port PORT`, or pass "
        "--tracking-uri sqlite:///runs/mlflow.db (and unset MLFLOW_TRACKING_URI) for a local store",
        source=shown,
    )


# -- a SQLite file ---------------------------------------------------------------------------------
def require_sqlite(db: Path) -> None:
    """A reader's check: the store must exist (a report asked of a store that is not there
    must not create an empty one)."""
    if not db.exists():
        raise UserInputError(
            f"no MLflow store at {db}; run `gradatlas run SUITE` first, or pass "
            "--tracking-uri / set MLFLOW_TRACKING_URI to the store that holds the runs"
        )


def open_sqlite(db: Path, create: Callable[[], T]) -> T:
    """A writer's check: the directory is created if missing and must be writable, the file (if
    any) writable, a SQLite database that passes ``PRAGMA quick_check`` (about a second per GB)
    and holds MLflow's tables or none. Then ``create`` (the backend's first open: its client,
    creating or checking the schema) runs under an exclusive ``flock`` on ``PATH.lock``, so
    concurrent first opens run the migration once; returns what ``create`` returns."""
    _check_directory(db.parent, db)
    with _file_lock(db.with_name(db.name + ".lock"), db):
        if db.exists():
            _check_sqlite_file(db)
        try:
            return create()
        except Exception as exc:  # anything MLflow or SQLAlchemy raise here: the store is unusable
            why = classify_write_error(exc)
            raise UserInputError(
                why or f"MLflow cannot open this store: {_one_line(exc)}", source=str(db)
            ) from exc


def _check_directory(directory: Path, db: Path) -> None:
    for parent in (directory, *directory.parents):  # the nearest existing ancestor must be a dir
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UserInputError(
                    f"cannot create the MLflow store: {parent} is not a directory; "
                    "choose another --tracking-uri",
                    source=str(db),
                )
            break
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(
            f"cannot create the store's directory {directory}: {exc.strerror or exc}; "
            "create it yourself or choose another --tracking-uri",
            source=str(db),
        ) from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserInputError(
            f"the store's directory {directory} is not writable by this user "
            f"(mode {_mode(directory)}); SQLite writes its journal beside the database. "
            "Fix its permissions or choose another --tracking-uri",
            source=str(db),
        )


def _check_sqlite_file(db: Path) -> None:
    if db.is_dir():
        raise UserInputError(
            "is a directory, not an MLflow store; point --tracking-uri at a file inside it",
            source=str(db),
        )
    if not os.access(db, os.R_OK | os.W_OK):
        raise UserInputError(
            f"the MLflow store is read-only for this user (mode {_mode(db)}); fix its "
            "permissions (chmod u+rw) or choose another --tracking-uri",
            source=str(db),
        )
    with db.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        raise UserInputError(_NOT_A_STORE, source=str(db))
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=rw", uri=True, timeout=SQLITE_BUSY_S)
        try:
            check = [row[0] for row in con.execute("PRAGMA quick_check")]
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
            if tables and "alembic_version" not in tables:
                raise UserInputError(
                    "is a SQLite database but not an MLflow store (it has tables, none of "
                    "them MLflow's); choose another --tracking-uri",
                    source=str(db),
                )
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc):
            raise UserInputError(
                f"another process held the store's write lock for over {SQLITE_BUSY_S:g} s "
                f"({exc}); wait for it or stop it, then rerun",
                source=str(db),
            ) from exc
        raise UserInputError(f"{_NOT_A_STORE} ({exc})", source=str(db)) from exc
    if check != ["ok"]:
        raise UserInputError(
            f"the MLflow store is corrupted (PRAGMA quick_check: {'; '.join(check[:3])}); "
            "restore it from a backup or move it aside and start a new store",
            source=str(db),
        )


_NOT_A_STORE = (
    "not an MLflow store or corrupted: the file is not a readable SQLite database; restore it "
    "from a backup, move it aside, or choose another --tracking-uri"
)


@contextlib.contextmanager
def _file_lock(path: Path, db: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), held for the block; released
    by the kernel if this process dies. Local filesystems only: NFS may not honour it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UserInputError(
            f"cannot create the store's lock file {path}: {exc.strerror or exc}",
            source=str(db),
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# -- failed writes ---------------------------------------------------------------------------------
# (what it is, message fragments, errnos, what to do), first match wins.
_WRITE_FAILURES: tuple[tuple[str, tuple[str, ...], frozenset[int], str], ...] = (
    (
        "the disk holding the MLflow store is full",
        ("database or disk is full", "no space left on device", "disk quota exceeded"),
        frozenset({errno.ENOSPC, errno.EDQUOT}),
        "free some space",
    ),
    (
        "the MLflow store is read-only",
        ("readonly database", "read-only file system", "permission denied"),
        frozenset({errno.EROFS, errno.EACCES, errno.EPERM}),
        "make it writable again",
    ),
    (
        "the MLflow store is locked by another process",
        ("database is locked", "database table is locked"),
        frozenset(),
        "stop the other writer (another gradatlas run or a script on the same store)",
    ),
    (
        "the MLflow store is corrupted",
        ("database disk image is malformed", "file is not a database"),
        frozenset(),
        "restore it from a backup or move it aside",
    ),
    (
        "the MLflow tracking server stopped answering",
        ("max retries exceeded", "connection refused", "failed to establish a new connection"),
        frozenset({errno.ECONNREFUSED}),
        "check the server (curl URI/health)",
    ),
)


def classify_write_error(exc: BaseException, *, store: str | None = None) -> str | None:
    """One line for a store write that failed for a reason the user must fix (disk full,
    read-only, locked, corrupted, server gone), else None (a bug: let it raise). Looks at the
    whole exception chain (MLflow wraps SQLAlchemy, which wraps sqlite3/psycopg2/OSError), by
    errno and by message. ``store``, when given, is named in the line."""
    chain = list(_chain(exc))
    lines = [line.strip() for e in chain for line in str(e).splitlines() if line.strip()]
    codes = {e.errno for e in chain if isinstance(e, OSError) and e.errno is not None}
    for what, fragments, errnos, todo in _WRITE_FAILURES:
        hit = next((ln for ln in lines if any(f in ln.lower() for f in fragments)), None)
        if hit is not None or codes & errnos:
            where = f" ({store})" if store else ""
            detail = hit or os.strerror(min(codes & errnos))
            return (
                f"{what}{where}: {_one_line(detail)}. The sweep stopped; trials recorded so far "
                f"are kept: {todo}, then rerun the same command to run the rest"
            )
    return None


@contextlib.contextmanager
def classified_writes(store: str | None = None) -> Iterator[None]:
    """Writes in this block that fail for a reason the user must fix raise ``StoreWriteError``
    with ``classify_write_error``'s line; any other failure (a bug) raises as it is."""
    try:
        yield
    except StoreWriteError:
        raise
    except Exception as exc:
        why = classify_write_error(exc, store=store)
        if why is None:
            raise
        raise StoreWriteError(why) from exc


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


# -- helpers ---------------------------------------------------------------------------------------
def _one_line(obj: object) -> str:
    text = str(getattr(obj, "message", None) or obj).strip()
    line = text.splitlines()[0] if text else type(obj).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _reason(obj: object) -> str:
    """``Connection refused`` rather than ``[Errno 111] Connection refused``."""
    return obj.strerror if isinstance(obj, OSError) and obj.strerror else _one_line(obj)


def _mode(path: Path) -> str:
    try:
        return oct(path.stat().st_mode & 0o777)
    except OSError:
        return "unknown"
