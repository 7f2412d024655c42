"""Shared fixtures: tiny real suites that train in well under a second per trial, fresh MLflow
stores without MLflow's migrations, and one torch thread per test process."""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

# One torch thread unless a test asks for more: the tests' nets are tiny, and torch's default (a
# thread per core) spins against the recorder, CLI and Ray processes the tests start beside it
# (on a loaded 2-core machine, CLI sweeps at 2 threads cost 3-4x the CPU time of 1 thread). Set
# before any test module imports torch; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY_SUITE = """
name: {name}
description: A tiny real suite for tests on digits with a shallow and a deep net, two activations.
dataset: {{name: digits}}
model: {{family: mlp, width: 16}}
grid:
  depth: [2, 12]
  activation: [relu, sigmoid]
seeds: 2
train: {{steps: 40, batch_size: 64, optimizer: sgd, lr: 0.1, eval_every: 20}}
instrument: {{every: 5, max_points: 50, probe_batch: 64}}
outcomes: {{target_accuracy: 0.3}}
"""


def write_suite(directory: Path, text: str, filename: str = "suite.yaml") -> Path:
    path = directory / filename
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    """8 trials (2 depths x 2 activations x 2 seeds) on sklearn digits, ~0.3 s each."""
    return write_suite(tmp_path, TINY_SUITE.format(name="tiny"))


@pytest.fixture
def write(tmp_path: Path):
    """Write a suite file from YAML text and return its path."""

    def _write(text: str, filename: str = "suite.yaml") -> Path:
        return write_suite(tmp_path, text, filename)

    return _write


BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> Any:
    """``benchmarks/<name>.py`` as a module: the parity tests check the cases whose table the
    benchmark writes into docs/perf/, so the two cannot drift apart."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synth() -> Any:
    """``benchmarks/synth_store.py``: realistic trial records and stores without training."""
    sys.path.insert(0, str(BENCH))
    try:
        import synth_store
    finally:
        sys.path.remove(str(BENCH))
    return synth_store


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    """Back to one torch thread before each test: an in-process `gradatlas run` (``cli.main``)
    sets the process's count for its sweep and would leave it to every later test."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@functools.cache
def _empty_store() -> Path:
    """An empty MLflow SQLite store, migrated once per test process (in a temporary folder
    removed at exit): MLflow's schema migrations cost about 1.5 s of CPU per fresh store, a copy
    of the migrated file a few milliseconds."""
    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="gradatlas-empty-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    db = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments(max_results=1)
    return db


def new_store(db: Path) -> str:
    """A fresh, empty MLflow store at ``db`` (parents created), copied from one migrated store;
    returns its ``sqlite:///`` URI. For tests whose subject is not how a store is created (those
    give gradatlas a file that does not exist yet)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_empty_store(), db)
    return f"sqlite:///{db}"


def cli_env() -> dict[str, str]:
    """The environment without MLFLOW_TRACKING_URI, so the CLI uses ./runs as a user's would."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`gradatlas ARGS` in a subprocess, exactly as typed at a shell in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "gradatlas", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- an MLflow tracking server on a private PostgreSQL cluster -------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: p.split("/")[3])
    return Path(found[-1]).parent if found else None


def _pg_driver() -> str | None:
    """The SQLAlchemy dialect+driver MLflow can use here (SQLAlchemy 2.1's plain
    ``postgresql://`` means psycopg 3)."""
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        with contextlib.suppress(ImportError):
            __import__(module)
            return dialect
    return None


def _as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop a process we started in its own session, with whatever it forked."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def postgres_mlflow_server():
    """A private PostgreSQL cluster on 127.0.0.1 and an MLflow server on it: yields its URI.
    One per test module (initdb and the server's start take seconds); tests share it through
    experiments of their own names. Skips where PostgreSQL is not installed
    (``.ci/postgres.sh`` installs it)."""
    pg, dialect = _pg_bin(), _pg_driver()
    if pg is None:
        pytest.skip("PostgreSQL binaries missing (/usr/lib/postgresql/*/bin; .ci/postgres.sh)")
    if dialect is None:
        pytest.skip("no PostgreSQL driver for SQLAlchemy: pip install 'psycopg[binary]'")
    if os.geteuid() == 0 and (shutil.which("runuser") is None or _no_user("postgres")):
        pytest.skip("running as root without a 'postgres' user to run the cluster as")
    root = Path(tempfile.mkdtemp(prefix="gapg-"))  # short path: it holds the unix socket
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, pg_port, port = root / "data", free_port(), free_port()
    server, log = None, None
    try:
        run = dict(check=True, capture_output=True, timeout=120)
        subprocess.run(
            _as_postgres(str(pg / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"),
            **run,
        )
        options = f"-k {root} -p {pg_port} -c listen_addresses=127.0.0.1"
        subprocess.run(
            _as_postgres(
                str(pg / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "pg.log"),
                "-w",
                "start",
            ),
            **run,
        )
        subprocess.run(
            _as_postgres(
                str(pg / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(pg_port),
                "-U",
                "postgres",
                "mlflow",
            ),
            **run,
        )
        log = open(root / "mlflow.log", "wb")  # noqa: SIM115 - closed with the server below
        env = cli_env()
        server = subprocess.Popen(
            [
                sys.executable,  # this interpreter's MLflow, as ``gradatlas ui`` starts it
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"{dialect}://postgres@127.0.0.1:{pg_port}/mlflow",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
                "--default-artifact-root",
                (root / "artifacts").as_uri(),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180  # a bound against hanging, not a timing assertion
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{uri}/health", timeout=2) as r,
            ):
                if r.status == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                tail = (root / "mlflow.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not come up:\n{tail}")
            time.sleep(0.5)
        yield uri
    finally:
        if server is not None:
            _stop_group(server)
        if log is not None:
            log.close()
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres(str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def _no_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return True
    return False
