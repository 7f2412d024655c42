"""Where the records live, as a URI: the one place that resolves it, finds a SQLite store's file,
and takes a password out of it before it is printed.

A store is a URI, not a code path (Optuna's storages are URLs too): the default is a SQLite file
under ``./runs``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` point anywhere else (another
file, an MLflow tracking server). No MLflow here: validating a suite or printing a plan must not
pay its import.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

DEFAULT_DIR = Path("runs")  # the local store's folder, under the working directory
DEFAULT_DB = "mlflow.db"


def default_tracking_uri(root: Path | None = None) -> str:
    """``sqlite:///<root>/runs/mlflow.db`` (``root``: the working directory), absolute, so a
    command run from elsewhere later still names the same file."""
    root = (root or Path.cwd()) / DEFAULT_DIR
    return f"sqlite:///{(root / DEFAULT_DB).resolve()}"


def resolve_tracking_uri(cli_uri: str | None = None) -> str:
    """``--tracking-uri`` beats ``MLFLOW_TRACKING_URI`` beats the local SQLite default."""
    return cli_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def scheme(uri: str) -> str:
    """``sqlite``, ``http``, ``https``, ``postgresql``... lower-cased; "" for a bare path."""
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH[?query]`` URI (a relative path as SQLAlchemy reads
    it: from the working directory; SQLite's own ``sqlite:///file:PATH?mode=...&uri=true`` form
    too); None for an in-memory database and for every store that is not a SQLite file."""
    if scheme(uri) != "sqlite":
        return None
    path = uri.split("://", 1)[1].removeprefix("/").split("?", 1)[0]
    if path.startswith("file:"):
        path = urllib.parse.unquote(path.removeprefix("file:").removeprefix("//"))
    return None if path in ("", ":memory:") or "mode=memory" in uri else Path(path)


def without_userinfo(uri: str) -> str:
    """``uri`` with no ``user:password@`` (what a health probe fetches: credentials are
    MLflow's to send, in its own headers)."""
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def redact(uri: str) -> str:
    """``uri`` with its password as ``***`` (the user name kept: it says which account), for
    anything printed or written as a tag; a URI without a password is returned as it is."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    user = parts.netloc.rpartition("@")[0].split(":", 1)[0]
    netloc = f"{user}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
