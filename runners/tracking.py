"""Where results live: MLflow, written through one small interface (see docs/record.md).

A tracking backend is a URL, not a code path: the default is an embedded SQLite store under
``./runs``; ``MLFLOW_TRACKING_URI`` or ``--tracking-uri`` point anywhere else. Writes use
``MlflowClient`` and ``log_batch`` (never the fluent API's global active run, and never one call
per metric: on SQLite that costs seconds per trial).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import socket
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from gradatlas.identity import flatten

KIND, TRIAL_ID, CELL_ID, OUTCOME = (
    "gradatlas.kind",
    "gradatlas.trial_id",
    "gradatlas.cell_id",
    "gradatlas.outcome",
)
FINISHED_TRIALS = f"tags.`{KIND}` = 'trial' and attributes.status = 'FINISHED'"
DEFAULT_DIR = Path("runs")
CURVE_KEYS = {"loss": "train_loss", "grad_norm": "grad_norm", "lr": "lr"}


def default_tracking_uri(root: Path | None = None) -> str:
    root = (root or Path.cwd()) / DEFAULT_DIR
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file behind a ``sqlite:///`` URI (None for any other store)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def search_all(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    """Every active run matching ``filter_string``, newest first, across result pages."""
    from mlflow.entities import ViewType

    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def resolve_tracking_uri(cli_uri: str | None = None) -> str:
    """``--tracking-uri`` beats ``MLFLOW_TRACKING_URI`` beats the local SQLite default."""
    return cli_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _quiet_mlflow() -> None:
    # Alembic announces every migration of a new SQLite store at INFO; users need none of it.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)


def environment() -> dict[str, Any]:
    """What produced the numbers: archived with every sweep and printed in reports."""
    import torch

    versions = {}
    for pkg in ("torch", "pytorch-lightning", "mlflow", "optuna", "numpy", "mnist1d", "gradatlas"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    commit = None
    try:
        git = subprocess.run(
            ["git", "rev-parse", "--verify", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        if git.returncode == 0:  # a checkout with no commits prints "HEAD" and fails
            commit = git.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": torch.version.cuda if cuda else None,
        "packages": versions,
        "git_commit": commit,
    }


class Tracker:
    """The four things a sweep needs from MLflow: an experiment, a sweep run, the set of trials
    already done, and a way to record one trial."""

    def __init__(self, tracking_uri: str):
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.db = sqlite_path(tracking_uri)
        if self.db is not None:
            self.db.parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=tracking_uri)

    def ensure_experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        artifacts = None
        if self.db is not None:  # artifacts beside the local store, not in the cwd
            artifacts = (self.db.parent / "artifacts").resolve().as_uri()
        return self.client.create_experiment(
            name, artifact_location=artifacts, tags={"gradatlas.suite": name}
        )

    def finished_trials(self, experiment_id: str) -> dict[str, dict[str, str]]:
        """trial id -> tags of its newest FINISHED trial run: what resume skips."""
        done: dict[str, dict[str, str]] = {}
        for run in search_all(self.client, experiment_id, FINISHED_TRIALS):
            done.setdefault(run.data.tags.get(TRIAL_ID, ""), run.data.tags)
        return done

    def start_sweep(self, experiment_id: str, suite: Any, planned: int, todo: int) -> str:
        run = self.client.create_run(
            experiment_id,
            run_name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={
                KIND: "sweep",
                "gradatlas.suite": suite.name,
                "gradatlas.planned_trials": str(planned),
                "gradatlas.todo_trials": str(todo),
            },
        )
        rid = run.info.run_id
        self.client.log_text(rid, suite.text, "suite.yaml")
        self.client.log_dict(rid, suite.spec.model_dump(mode="json"), "suite.resolved.json")
        self.client.log_dict(rid, environment(), "environment.json")
        # The suite's own level order per factor (reports sort axes by it).
        levels: dict[str, list[str]] = {}
        for trial in suite.trials:
            for factor, label in trial.factors.items():
                if label not in levels.setdefault(factor, []):
                    levels[factor].append(label)
        self.client.log_dict(rid, levels, "factor_levels.json")
        return rid

    def end_sweep(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def record_trial(self, experiment_id: str, sweep_id: str | None, result: Any) -> str:
        """One trial run: tags, params, summary and curves in few ``log_batch`` calls, the whole
        record as ``trial.json``. Returns the run id."""
        from mlflow.entities import Metric, Param, RunTag

        t0 = time.perf_counter()
        trial = result.trial
        outcome = "killed" if result.interrupted else result.outcome.label
        tags = {
            KIND: "trial",
            TRIAL_ID: trial.trial_id,
            CELL_ID: trial.cell_id,
            OUTCOME: outcome,
            "gradatlas.cell": trial.cell,
            "gradatlas.suite": trial.suite,
            "gradatlas.seed": str(trial.seed),
            "gradatlas.device": result.device,
        }
        if sweep_id:
            tags["mlflow.parentRunId"] = sweep_id
        run = self.client.create_run(experiment_id, run_name=trial.run_name, tags=tags)
        rid = run.info.run_id
        now = int(time.time() * 1000)
        params = {k: _param(v) for k, v in flatten(trial.config).items()}
        params |= {f"factor.{k}": v for k, v in trial.factors.items()}
        metrics = [Metric(k, float(v), now, 0) for k, v in result.summary.items() if _finite(v)]
        metrics += _curve_metrics(result.curves, now)
        self.client.log_batch(
            rid,
            metrics=metrics,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag("gradatlas.outcome_reason", result.outcome.reason[:5000])],
        )
        record = trial_record(result)
        logging_s = time.perf_counter() - t0
        record["timing"]["logging_time_s"] = logging_s
        self.client.log_text(rid, json.dumps(record, allow_nan=False), "trial.json")
        self.client.log_metric(rid, "logging_time_s", time.perf_counter() - t0, now, 0)
        self.client.set_terminated(rid, status="KILLED" if result.interrupted else "FINISHED")
        return rid


def trial_record(result: Any) -> dict[str, Any]:
    """The ``trial.json`` artifact: everything reports need, in one file (docs/record.md)."""
    trial = result.trial
    return {
        "schema": 1,
        "trial_id": trial.trial_id,
        "cell_id": trial.cell_id,
        "cell": trial.cell,
        "seed": trial.seed,
        "suite": trial.suite,
        "config": trial.config,
        "factors": trial.factors,
        "outcome": {
            "label": "killed" if result.interrupted else result.outcome.label,
            "reason": result.outcome.reason,
            "thresholds": trial.config["outcomes"],
        },
        "summary": {k: (v if _finite(v) else None) for k, v in result.summary.items()},
        "task": result.task,
        "num_classes": result.num_classes,
        "device": result.device,
        "curves": result.curves,
        "profiles": result.profiles,
        "timing": dict(result.timing),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _param(v: Any) -> str:
    return json.dumps(v) if isinstance(v, list | dict) else str(v)


def _curve_metrics(curves: dict[str, Any], now: int) -> list:
    from mlflow.entities import Metric

    out = []
    train = curves["train"]
    for src, key in CURVE_KEYS.items():
        out += [
            Metric(key, v, now, s)
            for s, v in zip(train["step"], train[src], strict=True)
            if v is not None
        ]
    ev = curves["eval"]
    for key, values in ev.items():
        if key != "step":
            out += [
                Metric(key, v, now, s)
                for s, v in zip(ev["step"], values, strict=True)
                if v is not None
            ]
    layers = curves["layers"]
    for name in ("grad_norm", "update_ratio"):
        prefix = "layer_grad_norm" if name == "grad_norm" else "update_ratio"
        for s, row in zip(layers["step"], layers[name], strict=True):
            out += [
                Metric(f"{prefix}/{i:02d}", v, now, s) for i, v in enumerate(row) if v is not None
            ]
    return out
