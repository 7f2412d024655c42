"""``gradatlas ui``: the MLflow UI on the local store, on 127.0.0.1 (what ``make ui`` runs).

Why a command of its own: the UI is where researchers compare runs, and the exact ``mlflow ui``
line (the store's URI, the host, the port) is easy to get wrong; printing it made the user type
it. The command replaces itself with MLflow's server (``exec``), so its process id is the
server's, Ctrl-C stops it, and a test can stop it by that id.
"""

from __future__ import annotations

import errno
import os
import socket
import sys

from gradatlas.errors import UserInputError

HOST = "127.0.0.1"
PORT = 5000


def server_command(tracking_uri: str, host: str = HOST, port: int = PORT) -> list[str]:
    """The MLflow UI server on ``tracking_uri`` (this interpreter's MLflow, not a PATH one)."""
    return [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
        "--host", host, "--port", str(port),
    ]  # fmt: skip


def check_port(host: str, port: int) -> None:
    """A port already taken is said in one line (MLflow's own error is a page of gunicorn)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserInputError(
                    f"--port {port}: {host}:{port} is in use (another UI?); stop it or pass "
                    "another --port"
                ) from None
            raise UserInputError(
                f"--host {host} --port {port}: cannot listen there: {exc}"
            ) from None


def page_url(host: str, port: int, experiment_id: str | None) -> str:
    """The UI's address, on the experiment's runs page in the training view when one is named."""
    from gradatlas.record import ui_runs_path

    base = f"http://{host}:{port}/"
    return base + ui_runs_path(experiment_id) if experiment_id else base


def serve(tracking_uri: str, host: str, port: int, experiment_id: str | None) -> None:
    """Say where the UI will be, then become the MLflow server (never returns)."""
    check_port(host, port)
    print(f"MLflow UI on {page_url(host, port, experiment_id)}  (Ctrl-C stops it)", flush=True)
    print(f"  store: {tracking_uri}", flush=True)
    command = server_command(tracking_uri, host, port)
    os.execv(command[0], command)
