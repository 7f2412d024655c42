"""Execution across workers and machines: real Ray, real MLflow, real signals and kills.

Each fault test checks the guarantee itself, from the store: every planned trial id ends with
exactly one FINISHED run and nothing is left RUNNING. No test depends on wall time: waits poll
the store (or the process table) for an event, with generous limits only against hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from gradatlas.runners.executor import (
    InProcessExecutor,
    RayExecutor,
    make_units,
    plan_workers,
    run_unit,
)
from gradatlas.runners.sweep import run_suite
from gradatlas.suites import load_suite
from tests.conftest import cli_env, new_store

TINY = """
name: {name}
dataset: {{name: digits}}
model: {{family: mlp, width: 16}}
grid: {{depth: [2, 3], activation: [relu, tanh]}}
seeds: 2
train: {{steps: {steps}, batch_size: 64, lr: 0.1, eval_every: 20}}
instrument: {{every: 5, max_points: 20, probe_batch: 64}}
"""

BROKEN = """
name: broken
dataset: {{name: mnist, options: {{data_dir: {data_dir}}}}}
model: {{family: mlp, width: 8}}
seeds: 1
train: {{steps: 5}}
"""


def _suite(tmp_path: Path, name: str = "tiny", steps: int = 40) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name, steps=steps))
    return path


def _runs(uri: str, name: str) -> list:
    from mlflow.tracking import MlflowClient

    from gradatlas.store import open_store

    # Open it as gradatlas does (under the store's lock): a bare MlflowClient on a fresh SQLite
    # file would race the driver's schema creation, as any second process would.
    open_store(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], max_results=5000) if exp else []


def _guarantee(uri: str, suite_path: Path) -> Counter:
    """Every planned id has exactly one FINISHED trial run; no run is left RUNNING."""
    suite = load_suite(str(suite_path))
    runs = _runs(uri, suite.name)
    finished = Counter(
        r.data.tags["gradatlas.trial_id"]
        for r in runs
        if r.data.tags.get("gradatlas.kind") == "trial" and r.info.status == "FINISHED"
    )
    assert {t.trial_id for t in suite.trials} == set(finished)
    assert set(finished.values()) == {1}, finished
    running = [r for r in runs if r.info.status == "RUNNING"]
    statuses = Counter(r.info.status for r in runs)
    print(  # the counts the guarantee is about, for `pytest -s` and the closing notes
        f"{suite.name}: {len(suite.trials)} planned ids, {sum(v == 1 for v in finished.values())} "
        f"with exactly one FINISHED run, {len(running)} RUNNING; run statuses {dict(statuses)}"
    )
    assert not running
    return statuses


def _wait_for(predicate, what: str, limit: float = 300.0, every: float = 0.2):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _finished_count(uri: str, name: str) -> int:
    try:
        return sum(
            r.data.tags.get("gradatlas.kind") == "trial" and r.info.status == "FINISHED"
            for r in _runs(uri, name)
        )
    except Exception:  # the store may be mid-creation
        return 0


class _Cli(subprocess.Popen):
    """A CLI process whose output goes to files, not pipes: a test that waits on the store
    never reads a pipe, and Ray's worker logs would fill one and stall the process."""

    def communicate(self, input=None, timeout=None):
        self.wait(timeout=timeout)
        return self.out_path.read_text(), self.err_path.read_text()

    def __exit__(self, *exc):
        """Leaving the block: a process (group) still running is killed, so a failed test
        leaves no driver, worker or recorder behind."""
        if self.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
        self.wait()


def _cli(*args: str, cwd: Path) -> _Cli:
    n = len(list(cwd.glob("cli-*.err")))
    out_path, err_path = cwd / f"cli-{n}.out", cwd / f"cli-{n}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = _Cli(
            [sys.executable, "-m", "gradatlas.app.cli", *args],
            cwd=cwd,
            env=cli_env(),
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    proc.out_path, proc.err_path = out_path, err_path
    return proc


# -- units and failures (no Ray) -----------------------------------------------------------------
def test_units_are_the_seeds_of_one_cell(tmp_path):
    suite = load_suite(str(_suite(tmp_path)))
    units = make_units(suite.trials)
    assert len(units) == 4 and all(len(u.trials) == 2 for u in units)
    assert all(len({t.cell_id for t in u.trials}) == 1 for u in units)


def test_a_raising_trial_is_recorded_failed_once_and_the_sweep_goes_on(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN.format(data_dir=tmp_path / "no-such-data"))
    suite = load_suite(str(path))
    unit = run_unit(make_units(suite.trials)[0], accelerator="cpu")
    assert not unit.results and len(unit.failures) == 1
    assert "MNIST not found" in unit.failures[0].error
    uri = new_store(tmp_path / "mlflow.db")
    summary = run_suite(suite, uri, executor=InProcessExecutor(accelerator="cpu", threads=1))
    assert len(summary.failures) == 1 and summary.ran == 0
    again = run_suite(suite, uri, executor=InProcessExecutor(accelerator="cpu", threads=1))
    assert again.ran == 0 and not again.failures  # not retried forever
    runs = [r for r in _runs(uri, "broken") if r.data.tags.get("gradatlas.kind") == "trial"]
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "MNIST not found" in runs[0].data.tags["gradatlas.error"]
    retried = run_suite(
        suite, uri, retry_failed=True, executor=InProcessExecutor(accelerator="cpu", threads=1)
    )
    assert len(retried.failures) == 1


# -- Ray: workers, a lost node -------------------------------------------------------------------
@pytest.mark.e2e
def test_ray_cluster_loses_a_node_mid_sweep_and_loses_nothing(tmp_path):
    """Two simulated nodes on this machine; the worker node is removed while its tasks run."""
    import ray
    from ray.cluster_utils import Cluster

    # Both nodes on this machine's own address (Ray's default; forcing 127.0.0.1 on a
    # simulated cluster leaves the driver dialling the host address, which then never answers).
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker = cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address)
        path = _suite(tmp_path, "lostnode", steps=200)
        suite = load_suite(str(path))
        uri = f"sqlite:///{tmp_path}/mlflow.db"
        executor = RayExecutor(
            plan_workers(2, accelerator="cpu", gpus_per_worker=None, threads=1),
            accelerator="cpu",
            address=cluster.address,
        )

        def remove_when_busy() -> None:
            _wait_for(lambda: _finished_count(uri, "lostnode") >= 1, "a first recorded trial")
            cluster.remove_node(worker, allow_graceful=False)

        killer = threading.Thread(target=remove_when_busy, daemon=True)
        killer.start()
        run_suite(suite, uri, executor=executor)
        killer.join(timeout=60)
        statuses = _guarantee(uri, path)
        assert statuses["FINISHED"] == len(suite.trials) + 1  # the trials and the sweep
        # A unit that never returned would have been reported as lost; rerun picks it up.
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.e2e
def test_two_workers_and_a_worker_killed_mid_trial(tmp_path):
    """`gradatlas run --workers 2`; one Ray worker process is SIGKILLed while it trains a
    trial: Ray retries the unit, the sweep completes, nothing is lost or duplicated."""
    path = _suite(tmp_path, "killworker", steps=300)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with _cli("run", str(path), "--workers", "2", "--tracking-uri", uri, cwd=tmp_path) as proc:

        def busy_worker() -> int | None:
            out = subprocess.run(["pgrep", "-f", "ray::_ray_run_unit"], capture_output=True)
            pids = [int(p) for p in out.stdout.split()]
            return pids[0] if pids else None

        pid = _wait_for(busy_worker, "a Ray worker running a unit", every=0.05)
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "2 Ray workers" in err
    _guarantee(uri, path)


# -- the driver: killed, terminated, doubled -----------------------------------------------------
@pytest.mark.e2e
def test_driver_sigkill_then_resume(tmp_path):
    path = _suite(tmp_path, "killdriver", steps=150)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with _cli("run", str(path), "--tracking-uri", uri, cwd=tmp_path) as proc:
        _wait_for(lambda: _finished_count(uri, "killdriver") >= 2, "two recorded trials")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    left = [r for r in _runs(uri, "killdriver") if r.info.status == "RUNNING"]
    assert left  # the dead driver's sweep run (and maybe a trial run) are still RUNNING
    again = _cli("run", str(path), "--tracking-uri", uri, "--threads", "1", cwd=tmp_path)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert "left RUNNING by a driver that died" in err
    statuses = _guarantee(uri, path)
    assert statuses["KILLED"] >= 1  # the dead driver's sweep, closed on resume


@pytest.mark.e2e
def test_sigterm_stops_like_ctrl_c_and_exits_143(tmp_path):
    path = _suite(tmp_path, "term", steps=150)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with _cli("run", str(path), "--tracking-uri", uri, cwd=tmp_path) as proc:
        _wait_for(lambda: _finished_count(uri, "term") >= 1, "a recorded trial")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert "SIGTERM: stopping" in err and "Traceback" not in err
    runs = _runs(uri, "term")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    sweep = [r for r in runs if r.data.tags.get("gradatlas.kind") == "sweep"]
    assert [r.info.status for r in sweep] == ["KILLED"]
    again = _cli("run", str(path), "--tracking-uri", uri, "--threads", "1", cwd=tmp_path)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    _guarantee(uri, path)


@pytest.mark.e2e
def test_a_second_driver_of_the_same_suite_is_refused(tmp_path):
    path = _suite(tmp_path, "twice", steps=300)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # --no-batch: seeds one at a time keep the first driver busy while the second starts
    with _cli("run", str(path), "--tracking-uri", uri, "--no-batch", cwd=tmp_path) as first:
        _wait_for(lambda: _finished_count(uri, "twice") >= 1, "the first driver's first trial")
        second = _cli("run", str(path), "--tracking-uri", uri, cwd=tmp_path)
        _, err2 = second.communicate(timeout=300)
        assert second.returncode == 2
        assert "another gradatlas run of 'twice' is driving this store" in err2
        assert str(first.pid) in err2
        _, err1 = first.communicate(timeout=600)
        assert first.returncode == 0, err1[-2000:]
    _guarantee(uri, path)


@pytest.mark.e2e
def test_two_drivers_of_different_suites_share_a_fresh_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    paths = [_suite(tmp_path, f"s{i}", steps=60) for i in range(2)]
    procs = [
        _cli("run", str(p), "--tracking-uri", uri, "--threads", "1", cwd=tmp_path) for p in paths
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    for path in paths:
        _guarantee(uri, path)


def test_unreachable_tracking_server_is_one_line_and_exit_2(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = _cli(
        "run", str(_suite(tmp_path)), "--tracking-uri", f"http://127.0.0.1:{port}", cwd=tmp_path
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.startswith("error:") and "Traceback" not in err
    assert f"127.0.0.1:{port}" in err


def test_missing_dataset_files_are_said_before_anything_is_written(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN.format(data_dir=tmp_path / "no-such-data"))
    proc = _cli("run", str(path), cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert f"error: {path}: dataset.options.data_dir: MNIST not found" in err
    assert not (tmp_path / "runs").exists()
