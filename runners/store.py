"""The store side of a sweep: open the MLflow store safely, own its sweep run, and explain a
failed write.

The driver is the one process that writes MLflow; this module is what it asks of the store:

- ``open_store`` before anything is written or trained: an unreachable tracking server, a SQLite
  store that cannot be written, is not a store or is corrupted, is one ``UserInputError`` (exit
  2) instead of minutes of retries and a traceback; a fresh SQLite store is created under a file
  lock, because MLflow's own first migration is not safe against a second process doing it too.
- driver ownership: the sweep run carries its driver's host, pid and heartbeat, so a later run
  can tell a live driver of the same suite (``live_drivers``: do not redo its work) from a dead
  one (``close_dead_runs``: close what it left RUNNING as KILLED, so those trials run again), and
  ``already_recorded`` keeps a retried or doubled result from being recorded twice;
- ``classify_write_error``: a write that failed because the disk is full, the store became
  read-only or locked or corrupted, as one line that says what to do.

No torch, and MLflow is imported only inside the functions that talk to it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sqlite3
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradatlas.errors import UserInputError
from gradatlas.record import (
    DRIVER_HEARTBEAT,
    DRIVER_HOST,
    DRIVER_PID,
    FINISHED_TRIALS,
    KILLED,
    KILLED_STATUS,
    OUTCOME,
    OUTCOME_REASON,
    RUNNING_SWEEPS,
    RUNNING_TRIALS,
    TRIAL_ID,
    quiet_mlflow,
    search_all,
    sweep_of,
)

STALE_AFTER_S = 120.0  # a driver on another host with no heartbeat for this long is dead
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
SQLITE_BUSY_S = 30.0  # how long the store check waits for another process's write lock


class StoreWriteError(UserInputError):
    """A record write that failed for a reason the user must fix (``classify_write_error``'s
    line). A ``UserInputError`` so that, wherever it ends up, the CLI prints one line, exit 2."""


# -- opening the store ---------------------------------------------------------------------------
def open_store(tracking_uri: str, *, probe_timeout: float = 5.0) -> None:
    """Check that ``tracking_uri`` can take this sweep's records, and create it if it is a fresh
    SQLite store; call it once on the driver before any run is written or any trial trains.

    - ``http(s)://``: ``GET /health`` must get an HTTP answer within ``probe_timeout`` seconds
      (any status counts: the server is there; a TLS failure too, MLflow has its own TLS settings).
    - ``sqlite:///PATH``: the directory is created if missing and must be writable, the file (if
      any) writable, a SQLite database that passes ``PRAGMA quick_check`` (about a second per GB)
      and holds MLflow's tables or none. Then MLflow opens it (creating or checking its schema)
      under an exclusive ``flock`` on ``PATH.lock``, so concurrent first opens run the migration
      once; the engine MLflow builds is cached for this process's later clients.
    - anything else (``postgresql://``, ``file:``, ``databricks``) is left to MLflow.

    Raises ``UserInputError`` naming the URI or file, the problem, and what to do.
    """
    scheme = tracking_uri.split("://", 1)[0].lower() if "://" in tracking_uri else ""
    if scheme in ("http", "https"):
        _probe_server(tracking_uri, probe_timeout)
    elif scheme == "sqlite":
        db = _sqlite_file(tracking_uri)
        if db is not None:
            _open_sqlite(tracking_uri, db)


def _probe_server(uri: str, timeout: float) -> None:
    shown = _without_password(uri)
    url = _without_userinfo(uri).rstrip("/") + "/health"
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


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH[?query]`` URI (relative paths as SQLAlchemy
    reads them: from the working directory); None for an in-memory database."""
    path = uri.split("://", 1)[1].removeprefix("/").split("?", 1)[0]
    if path.startswith("file:"):  # SQLite's own URI form, sqlite:///file:PATH?mode=...&uri=true
        path = urllib.parse.unquote(path.removeprefix("file:").removeprefix("//"))
    return None if path in ("", ":memory:") or "mode=memory" in uri else Path(path)


def _open_sqlite(uri: str, db: Path) -> None:
    _check_directory(db.parent, db)
    with _file_lock(db.with_name(db.name + ".lock"), db):
        if db.exists():
            _check_sqlite_file(db)
        try:
            quiet_mlflow()
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
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


# -- driver ownership ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DriverInfo:
    """The driver of one sweep run, as its tags say: host, pid, last heartbeat (unix s)."""

    sweep_run_id: str
    host: str
    pid: int | None
    heartbeat: float | None

    def describe(self, now: float | None = None) -> str:
        """``pid 4242 on host-a, heartbeat 12 s ago (sweep run 0123abcd)``."""
        who = f"pid {self.pid} on {self.host}" if self.host else "a driver without driver tags"
        beat = ""
        if self.heartbeat is not None:
            beat = f", heartbeat {max(0.0, (now or time.time()) - self.heartbeat):.0f} s ago"
        return f"{who}{beat} (sweep run {self.sweep_run_id[:8]})"


# Sweep runs claimed by this process: a run tagged with our own host and pid that is not one of
# these was written by an earlier process that had our pid (a container's pid 1, a reused pid).
_CLAIMED: set[str] = set()


def claim_sweep(client: Any, sweep_run_id: str) -> DriverInfo:
    """Tag the sweep run with this process as its driver (host, pid, heartbeat now); call it
    right after creating the sweep run. Returns what was written."""
    _CLAIMED.add(sweep_run_id)
    beat = heartbeat(client, sweep_run_id)
    return DriverInfo(sweep_run_id, socket.gethostname(), os.getpid(), beat)


def heartbeat(client: Any, sweep_run_id: str, pid: int | None = None) -> float:
    """Refresh the sweep run's driver tags (all three, so a heartbeat also claims an unclaimed
    run); call it every ~30 s, well inside ``STALE_AFTER_S``. ``pid``: the driver's, when the
    caller is not the driver itself (its recorder process). Returns the heartbeat written."""
    from mlflow.entities import RunTag

    now = time.time()
    tags = {DRIVER_HOST: socket.gethostname(), DRIVER_PID: str(pid or os.getpid())}
    tags[DRIVER_HEARTBEAT] = f"{now:.0f}"
    client.log_batch(sweep_run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    return now


def live_drivers(
    client: Any, experiment_id: str, *, stale_after: float = STALE_AFTER_S
) -> list[DriverInfo]:
    """The drivers of this experiment's RUNNING sweep runs that are alive (see ``_is_alive``)."""
    now = time.time()
    return [
        info
        for run in search_all(client, experiment_id, RUNNING_SWEEPS)
        if _is_alive(run, info := _driver(run), stale_after, now)
    ]


def close_dead_runs(
    client: Any, experiment_id: str, *, stale_after: float = STALE_AFTER_S
) -> tuple[int, int]:
    """Close as KILLED what dead drivers left RUNNING: their sweep runs, and every RUNNING trial
    run whose sweep (``gradatlas.sweep_run``, or the parent of an older run) is not a live
    driver's. A closed trial run also
    gets outcome ``killed``, as an interrupted one does, so it is rerun on resume. Returns
    (sweep runs closed, trial runs closed)."""
    from mlflow.entities import RunTag

    now = time.time()
    live, dead = set(), []
    for run in search_all(client, experiment_id, RUNNING_SWEEPS):
        info = _driver(run)
        if _is_alive(run, info, stale_after, now):
            live.add(run.info.run_id)
        else:
            dead.append(info)
    for info in dead:
        client.set_terminated(info.sweep_run_id, status=KILLED_STATUS)
    orphans = [
        run
        for run in search_all(client, experiment_id, RUNNING_TRIALS)
        if sweep_of(run.data.tags) not in live
    ]
    for run in orphans:
        reason = "left RUNNING by a driver that is gone; closed by a later gradatlas run"
        tags = [RunTag(OUTCOME, KILLED), RunTag(OUTCOME_REASON, reason)]
        client.log_batch(run.info.run_id, tags=tags)
        client.set_terminated(run.info.run_id, status=KILLED_STATUS)
    return len(dead), len(orphans)


def already_recorded(client: Any, experiment_id: str, trial_id: str) -> bool:
    """Whether a FINISHED run of this trial exists (one indexed search, at most one row)."""
    from mlflow.entities import ViewType

    if "'" in trial_id or "\\" in trial_id:  # trial ids are hex; never splice a quote into SQL
        raise ValueError(f"not a trial id: {trial_id!r}")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"{FINISHED_TRIALS} and tags.`{TRIAL_ID}` = '{trial_id}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=1,
    )
    return bool(runs)


def _driver(run: Any) -> DriverInfo:
    tags = run.data.tags
    return DriverInfo(
        run.info.run_id, tags.get(DRIVER_HOST, ""), _int(tags.get(DRIVER_PID)),
        _float(tags.get(DRIVER_HEARTBEAT)),
    )  # fmt: skip


def _is_alive(run: Any, info: DriverInfo, stale_after: float, now: float) -> bool:
    """A RUNNING sweep run's driver is alive when: on this host, its pid is a live process (our
    own pid only for a run this process claimed); on another host, its heartbeat is younger
    than ``stale_after``; with no driver tags (a run created an instant ago and not yet claimed,
    or written before driver tags existed), the run started less than ``stale_after`` ago."""
    if info.host == socket.gethostname() and info.pid is not None:
        if info.pid == os.getpid():
            return info.sweep_run_id in _CLAIMED
        return _pid_alive(info.pid)
    if info.heartbeat is not None:
        return now - info.heartbeat < stale_after
    return now - (run.info.start_time or 0) / 1000 < stale_after


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process on this host (a zombie is not)."""
    if pid <= 0:  # 0 and negative pids name process groups: never "a driver"
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    except OSError:
        return False
    try:  # Linux: "pid (name) STATE ..."; a killed driver nobody reaped yet is "Z"
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# -- failed writes -------------------------------------------------------------------------------
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


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


# -- helpers -------------------------------------------------------------------------------------
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


def _without_userinfo(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _without_password(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    user, host = parts.netloc.rpartition("@")[0].split(":", 1)[0], parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
