"""The store side of a sweep on real parts: SQLite files, MLflow stores, processes, HTTP servers,
and (e2e) an MLflow server on a private PostgreSQL cluster. (The contract every backend keeps,
clause by clause, is tests/test_store_conformance.py.)"""

from __future__ import annotations

import contextlib
import errno
import http.server
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gradatlas import record as R
from gradatlas.errors import UserInputError
from gradatlas.record import TrialRecord
from gradatlas.store import (
    RecordStore,
    StoreWriteError,
    TrialWrite,
    classify_write_error,
    open_store,
)
from tests.conftest import cli_env, free_port


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    """One real MLflow SQLite store, created once (MLflow's migrations take seconds)."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    open_store(f"sqlite:///{db}")
    return db


@pytest.fixture
def store_exp(tmp_path: Path, template_db: Path) -> tuple[RecordStore, str]:
    """The store on a private copy of the template store, and a fresh experiment in it."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(template_db, db)
    store = open_store(f"sqlite:///{db}")
    return store, store.open_experiment("s")


def _status(store: RecordStore, run_id: str) -> str:
    return store.get_run(run_id).status


# -- open_store ----------------------------------------------------------------------------------
RACE_CHILD = """
import pathlib, sys, time
from mlflow.tracking import MlflowClient
from gradatlas.store import open_store
uri, go, i = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
(go.parent / f"ready-{i}").touch()
while not go.exists():  # everything imported: all four open the fresh store at once
    time.sleep(0.005)
open_store(uri)
client = MlflowClient(uri)
exp = client.create_experiment(f"race-{i}", artifact_location=(go.parent / "art").as_uri())
client.create_run(exp, tags={"i": i})
"""


@pytest.mark.e2e  # four interpreters that import MLflow
def test_fresh_store_race_four_processes(tmp_path: Path):
    """Four processes open one fresh SQLite store at the same moment, then write: none crashes
    (without the lock, MLflow's concurrent first migrations fail: duplicate column name)."""
    uri = f"sqlite:///{tmp_path / 'x' / 'mlflow.db'}"
    go = tmp_path / "go"
    env = cli_env()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_CHILD, uri, str(go), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    try:
        while len(list(tmp_path.glob("ready-*"))) < 4 and all(p.poll() is None for p in procs):
            time.sleep(0.01)
        go.touch()
        errors = [(p.returncode, err[-2000:]) for p in procs for _, err in [p.communicate(300)]]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(rc == 0 for rc, _ in errors), errors
    client = MlflowClient(uri)
    exps = [e for e in client.search_experiments() if e.name.startswith("race-")]
    assert len(exps) == 4
    assert len(client.search_runs([e.experiment_id for e in exps])) == 4


def test_unreachable_server_is_one_user_error():
    port = free_port()  # bound and released: nobody listens there now
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(UserInputError) as err:
        open_store(uri, probe_timeout=2)
    assert uri in str(err.value) and "/health" in str(err.value)
    with pytest.raises(UserInputError) as err:  # a password in the URI is never echoed
        open_store(f"http://me:s3cret@127.0.0.1:{port}", probe_timeout=2)
    assert "s3cret" not in str(err.value) and "me:***@127.0.0.1" in str(err.value)


def test_any_http_answer_counts_as_reachable():
    """A server that answers /health with 404 is there: MLflow takes it from there."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        open_store(f"http://127.0.0.1:{server.server_address[1]}/", probe_timeout=2)
    finally:
        server.shutdown()
        server.server_close()


def test_store_under_a_regular_file_cannot_be_created(tmp_path: Path):
    """A path whose 'directory' is a file: the honest cannot-write case even as root."""
    (tmp_path / "afile").write_text("not a directory")
    db = tmp_path / "afile" / "sub" / "mlflow.db"
    with pytest.raises(UserInputError) as err:
        open_store(f"sqlite:///{db}")
    assert str(db) in str(err.value) and "not a directory" in str(err.value)


@pytest.mark.parametrize("what", ["file", "directory"])
def test_read_only_store(tmp_path: Path, template_db: Path, what: str):
    directory = tmp_path / "ro"
    directory.mkdir()
    db = directory / "mlflow.db"
    target = db if what == "file" else directory
    if what == "file":
        shutil.copy(template_db, db)
    target.chmod(0o444 if what == "file" else 0o555)
    try:
        if os.access(target, os.W_OK):
            pytest.skip(f"running as root: a read-only {what} is still writable, nothing to test")
        with pytest.raises(UserInputError) as err:
            open_store(f"sqlite:///{db}")
        assert str(db) in str(err.value)
        assert ("read-only" if what == "file" else "not writable") in str(err.value)
    finally:
        target.chmod(0o755)


def test_random_bytes_are_not_a_store(tmp_path: Path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(random.Random(0).randbytes(64 * 1024))
    with pytest.raises(UserInputError) as err:
        open_store(f"sqlite:///{db}")
    assert str(db) in str(err.value) and "not an MLflow store or corrupted" in str(err.value)


def test_a_damaged_mlflow_store_is_corrupted(tmp_path: Path, template_db: Path):
    """A real store whose pages after the first two are overwritten: the header still reads as
    SQLite, ``PRAGMA quick_check`` does not."""
    data = bytearray(template_db.read_bytes())
    noise = random.Random(1).randbytes(len(data) - 8192)
    data[8192:] = noise
    db = tmp_path / "mlflow.db"
    db.write_bytes(bytes(data))
    with pytest.raises(UserInputError) as err:
        open_store(f"sqlite:///{db}")
    assert str(db) in str(err.value) and "corrupted" in str(err.value)


def test_a_sqlite_file_of_something_else_is_not_a_store(tmp_path: Path):
    db = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE notes (text TEXT)")
        con.commit()
    with pytest.raises(UserInputError) as err:
        open_store(f"sqlite:///{db}")
    assert str(db) in str(err.value) and "not an MLflow store" in str(err.value)


# -- driver ownership ----------------------------------------------------------------------------
def _sweep(store, exp, host=None, pid=None, beat=None, start_ms=None) -> str:
    tags = {R.KIND: R.KIND_SWEEP}
    for key, value in ((R.DRIVER_HOST, host), (R.DRIVER_PID, pid), (R.DRIVER_HEARTBEAT, beat)):
        if value is not None:
            tags[key] = str(value)
    return store.create_run(exp, run_name="sweep", tags=tags, start_ms=start_ms)


def _trial(store, exp, sweep_id: str, trial_id: str = "t0") -> str:
    tags = {R.KIND: R.KIND_TRIAL, R.PARENT_RUN: sweep_id, R.TRIAL_ID: trial_id}
    return store.create_run(exp, run_name=trial_id, tags=tags)


def test_same_host_drivers_are_judged_by_pid(store_exp):
    store, exp = store_exp
    host, now = socket.gethostname(), time.time()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_sweep = _sweep(store, exp, host, live.pid, now)
        dead_sweep = _sweep(store, exp, host, dead.pid, now)  # a fresh heartbeat, but dead
        live_trial = _trial(store, exp, live_sweep)
        dead_trial = _trial(store, exp, dead_sweep)
        done_trial = _trial(store, exp, dead_sweep, "t1")
        store.set_status(done_trial, R.RunStatus.FINISHED)

        drivers = store.live_drivers(exp)
        assert [(d.sweep_run_id, d.pid) for d in drivers] == [(live_sweep, live.pid)]
        assert f"pid {live.pid} on {host}" in drivers[0].describe()
        assert store.close_dead_runs(exp) == (1, 1)
        assert _status(store, live_sweep) == _status(store, live_trial) == "RUNNING"
        assert _status(store, dead_sweep) == _status(store, dead_trial) == "KILLED"
        assert store.get_run(dead_trial).tags[R.OUTCOME] == R.KILLED
        assert _status(store, done_trial) == "FINISHED"
        assert store.close_dead_runs(exp) == (0, 0)
    finally:
        live.kill()
        live.wait()


def test_other_host_drivers_are_judged_by_heartbeat(store_exp):
    store, exp = store_exp
    now = time.time()
    fresh = _sweep(store, exp, "elsewhere.invalid", 7, now - 5)
    stale = _sweep(store, exp, "elsewhere.invalid", 7, now - 1000)
    unclaimed_new = _sweep(store, exp)  # created an instant ago, not yet claimed
    unclaimed_old = _sweep(store, exp, start_ms=int((now - 1000) * 1000))  # an older version's
    orphan = _trial(store, exp, stale)
    assert {d.sweep_run_id for d in store.live_drivers(exp)} == {fresh, unclaimed_new}
    assert store.close_dead_runs(exp) == (2, 1)
    assert {_status(store, r) for r in (stale, unclaimed_old, orphan)} == {"KILLED"}
    assert _status(store, fresh) == _status(store, unclaimed_new) == "RUNNING"


def test_our_own_pid_counts_only_for_the_sweep_we_claimed(store_exp):
    """A run tagged with this host and pid that this process did not claim was written by an
    earlier process with our pid (a container's pid 1): dead."""
    store, exp = store_exp
    earlier = _sweep(store, exp, socket.gethostname(), os.getpid(), time.time())
    ours = _sweep(store, exp)
    info = store.claim_sweep(ours)
    assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
    tags = store.get_run(ours).tags
    assert tags[R.DRIVER_PID] == str(os.getpid()) and float(tags[R.DRIVER_HEARTBEAT]) > 0
    assert [d.sweep_run_id for d in store.live_drivers(exp)] == [ours]
    assert store.heartbeat(ours) >= info.heartbeat
    assert store.close_dead_runs(exp) == (1, 0)
    assert _status(store, earlier) == "KILLED" and _status(store, ours) == "RUNNING"


def test_recorded(store_exp):
    store, exp = store_exp
    sweep = _sweep(store, exp)
    store.set_status(_trial(store, exp, sweep, "aaaa"), R.RunStatus.FINISHED)
    store.set_status(_trial(store, exp, sweep, "bbbb"), R.RunStatus.KILLED)
    # killed: rerun, not recorded; cccc: no run at all
    assert store.recorded(exp, ["aaaa", "bbbb", "cccc"]) == {"aaaa"}
    with pytest.raises(ValueError):
        store.recorded(exp, ["x' or '1'='1"])


# -- failed writes -------------------------------------------------------------------------------
def _raised(fn) -> BaseException:
    try:
        fn()
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


def _sqlite_full(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t (b BLOB)")
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full": SQLITE_FULL
        con.execute("INSERT INTO t VALUES (?)", (b"x" * 1_000_000,))


def _sqlite_read_only(db: Path) -> None:
    sqlite3.connect(db).close()
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as con:
        con.execute("CREATE TABLE t (x)")


def _sqlite_locked(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        with contextlib.closing(sqlite3.connect(db, timeout=0)) as con:
            con.execute("CREATE TABLE t (x)")


def _dev_full(_: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as f:
        f.write("x")
        f.flush()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_sqlite_full, "is full"),
        (_dev_full, "is full"),
        (_sqlite_read_only, "read-only"),
        (_sqlite_locked, "locked"),
    ],
)
def test_classify_real_write_failures(tmp_path: Path, make, expected: str):
    line = classify_write_error(_raised(lambda: make(tmp_path / "x.db")), store="x.db")
    assert line is not None and expected in line and "(x.db)" in line and "\n" not in line


def test_classify_mlflow_wrapped_failure(tmp_path: Path, template_db: Path, monkeypatch):
    """A real MLflow write on a store opened read-only: MlflowException over SQLAlchemy over
    sqlite3, classified through the chain."""
    # MLflow makes the "directory" of a sqlite:///file:... URI relative to the working
    # directory (a "file:" tree): let it do so in tmp_path, not in the checkout.
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "mlflow.db"
    shutil.copy(template_db, db)
    exp = MlflowClient(f"sqlite:///{db}").create_experiment(
        "e", artifact_location=tmp_path.as_uri()
    )
    client = MlflowClient(f"sqlite:///file:{db}?mode=ro&uri=true")
    exc = _raised(lambda: client.create_run(exp))
    assert type(exc).__name__ == "MlflowException"
    assert "read-only" in (classify_write_error(exc) or "")


def test_a_unit_the_store_cannot_take_is_one_line(tmp_path: Path, template_db: Path, monkeypatch):
    """record_unit on a store that became read-only: ``StoreWriteError`` (exit 2) with one line
    that says what to do, not MLflow's traceback."""
    monkeypatch.chdir(tmp_path)  # the "file:" tree MLflow makes (see above) lands in tmp_path
    db = tmp_path / "mlflow.db"
    shutil.copy(template_db, db)
    exp = open_store(f"sqlite:///{db}").open_experiment("e")
    read_only = open_store(f"sqlite:///file:{db}?mode=ro&uri=true", create=False)
    unit = [TrialWrite(TrialRecord(trial_id="ab" * 8, config={"seed": 0}), "r")]
    with pytest.raises(StoreWriteError) as err:
        read_only.record_unit(exp, None, unit)
    line = str(err.value)
    assert "read-only" in line and "rerun the same command" in line and "\n" not in line


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (sqlite3.OperationalError("database or disk is full"), "is full"),
        (OSError(errno.ENOSPC, "No space left on device"), "is full"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only"),
        (sqlite3.DatabaseError("database disk image is malformed"), "corrupted"),
        (ValueError("a bug, not the store"), None),
        (KeyError("x"), None),
    ],
)
def test_classify_constructed_exceptions(exc: BaseException, expected: str | None):
    line = classify_write_error(exc)
    assert line is None if expected is None else (line is not None and expected in line)


# -- e2e: an MLflow server on PostgreSQL (tests/conftest.py: postgres_mlflow_server) ----------
@pytest.mark.e2e
def test_postgres_server_two_writers_lose_nothing(postgres_mlflow_server: str):
    uri = postgres_mlflow_server
    open_store(uri)
    client = MlflowClient(uri)
    exp = client.create_experiment("pg")
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            own = MlflowClient(uri)
            for n in range(20):
                run = own.create_run(exp, tags={"writer": str(w), "n": str(n)})
                own.set_terminated(run.info.run_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    runs = client.search_runs([exp], max_results=1000)
    assert len(runs) == 40
    assert {(r.data.tags["writer"], r.data.tags["n"]) for r in runs} == {
        (str(w), str(n)) for w in range(2) for n in range(20)
    }


@pytest.mark.e2e
def test_two_gradatlas_drivers_of_different_suites_on_a_postgres_server(
    postgres_mlflow_server: str, tmp_path: Path
):
    """The team setup: two `gradatlas run` of different suites at once against one tracking
    server with a PostgreSQL backend; every planned trial id gets exactly one FINISHED run."""
    from gradatlas.suites import load_suite

    uri = postgres_mlflow_server
    body = (
        "dataset: {name: digits}\nmodel: {family: mlp, width: 8}\ngrid: {depth: [2, 3]}\n"
        "seeds: 2\ntrain: {steps: 30, batch_size: 64, lr: 0.1, eval_every: 10}\n"
        "instrument: {every: 5, max_points: 20, probe_batch: 64}\n"
    )
    paths = []
    for name in ("pg-a", "pg-b"):
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(f"name: {name}\n{body}")
    options = ("--tracking-uri", uri, "--threads", "1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gradatlas.app.cli", "run", str(p), *options],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in paths
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    client = MlflowClient(uri)
    for path in paths:
        suite = load_suite(str(path))
        exp = client.get_experiment_by_name(suite.name)
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        finished = Counter(
            r.data.tags["gradatlas.trial_id"]
            for r in runs
            if r.data.tags.get("gradatlas.kind") == "trial" and r.info.status == "FINISHED"
        )
        assert set(finished) == {t.trial_id for t in suite.trials}
        assert set(finished.values()) == {1}
        assert not [r for r in runs if r.info.status == "RUNNING"]
