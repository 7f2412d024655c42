"""``gradatlas ui``: starts MLflow's real UI server on 127.0.0.1, stopped here by its process id
(the command becomes the server), and says in one line what it cannot do."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gradatlas.store import open_store
from tests.conftest import cli_env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except OSError:
        return None


def _ui(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gradatlas", "ui", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the server's workers too are stopped with its group
    )


@pytest.mark.e2e
def test_ui_serves_the_store_on_localhost_until_stopped_by_pid(tmp_path):
    uri = f"sqlite:///{tmp_path}/runs/mlflow.db"
    exp_id = open_store(uri).open_experiment("shown")
    port = _free_port()
    proc = _ui("shown", "--port", str(port), "--tracking-uri", uri, cwd=tmp_path)
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/#/experiments/{exp_id}/runs?workflowType" in first
        api = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/get?experiment_id={exp_id}"
        deadline = time.monotonic() + 300  # against a hang only: the server's start-up time
        answer = None
        while answer is None and time.monotonic() < deadline and proc.poll() is None:
            answer = _get(api)
            time.sleep(0.5)
        assert answer is not None, proc.stderr.read()[-3000:] if proc.poll() is not None else ""
        status, body = answer
        assert status == 200 and json.loads(body)["experiment"]["name"] == "shown"
        page = _get(f"http://127.0.0.1:{port}/")
        assert page is not None and b"<html" in page[1].lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    assert _get(f"http://127.0.0.1:{port}/") is None  # stopped


def test_ui_without_a_store_says_so_and_creates_nothing(tmp_path):
    proc = _ui("--tracking-uri", f"sqlite:///{tmp_path}/none/mlflow.db", cwd=tmp_path)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "no MLflow store at" in err
    assert not (tmp_path / "none").exists()


def test_ui_on_a_taken_port_is_one_line_and_exit_2(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    open_store(uri).open_experiment("x")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = _ui("--port", str(port), "--tracking-uri", uri, cwd=tmp_path)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert f"--port {port}" in err and "in use" in err and "Traceback" not in err
