"""Where results live: MLflow, written through one small interface (see docs/record.md).

A tracking backend is a URL, not a code path: the default is an embedded SQLite store under
``./runs``; ``MLFLOW_TRACKING_URI`` or ``--tracking-uri`` point anywhere else. Writes use
``MlflowClient`` and ``log_batch`` (never the fluent API's global active run, and never one call
per metric: on SQLite that costs seconds per trial).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from gradatlas.record import CELL_ID as CELL_ID
from gradatlas.record import (
    DEVICE,
    ENVIRONMENT_ARTIFACT,
    ERROR,
    ERROR_ARTIFACT,
    FACTOR_LEVELS_ARTIFACT,
    FAILED_OUTCOME,
    FAILED_TRIALS,
    FINISHED_TRIALS,
    KILLED,
    KILLED_STATUS,
    KIND_TRIAL,
    MAX_REASON_TAG,
    OUTCOME_REASON,
    OVERRIDES,
    OVERRIDES_ARTIFACT,
    SUITE_RESOLVED_ARTIFACT,
    SUITE_YAML_ARTIFACT,
    SWEEP_RUN,
    TRIAL_ARTIFACT,
    TRIAL_ID,
    RecordedOutcome,
    SweepRecord,
    TrialRecord,
    experiment_tags,
    factor_levels,
    final_label,
    quiet_mlflow,
    search_all,
    trial_metrics,
    trial_params,
    trial_tags,
    utc_now,
)
from gradatlas.record import KIND as KIND
from gradatlas.record import OUTCOME as OUTCOME

# CELL_ID, KIND, OUTCOME, FINISHED_TRIALS and search_all are re-exported for callers written
# before gradatlas.record existed; new code imports the record's names from there.
DEFAULT_DIR = Path("runs")


def default_tracking_uri(root: Path | None = None) -> str:
    root = (root or Path.cwd()) / DEFAULT_DIR
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file behind a ``sqlite:///`` URI (None for any other store)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def resolve_tracking_uri(cli_uri: str | None = None) -> str:
    """``--tracking-uri`` beats ``MLFLOW_TRACKING_URI`` beats the local SQLite default."""
    return cli_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def package_versions(packages: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each package (None: not installed)."""
    versions: dict[str, str | None] = {}
    for pkg in packages:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def environment() -> dict[str, Any]:
    """What produced the numbers: archived with every sweep and printed in reports."""
    versions = package_versions(
        ("torch", "pytorch-lightning", "mlflow", "optuna", "numpy", "mnist1d", "gradatlas")
    )
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
    # The driver of a Ray sweep never trains: it must not pay torch's import (seconds) just to
    # describe itself. Trials record their own device and threads.
    torch = sys.modules.get("torch")
    cuda = bool(torch) and torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads() if torch else None,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": torch.version.cuda if cuda and torch else None,
        "packages": versions,
        "git_commit": commit,
    }


class Tracker:
    """The four things a sweep needs from MLflow: an experiment, a sweep run, the set of trials
    already done, and a way to record one trial."""

    def __init__(self, tracking_uri: str):
        quiet_mlflow()
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
            name, artifact_location=artifacts, tags=experiment_tags(name, "", {})
        )

    def finished_trials(self, experiment_id: str) -> dict[str, dict[str, str]]:
        """trial id -> tags of its newest FINISHED trial run: what resume skips."""
        done: dict[str, dict[str, str]] = {}
        for run in search_all(self.client, experiment_id, FINISHED_TRIALS):
            done.setdefault(run.data.tags.get(TRIAL_ID, ""), run.data.tags)
        return done

    def failed_trials(self, experiment_id: str) -> set[str]:
        """Trial ids with a FAILED run and no FINISHED one: resume skips them unless asked to
        retry (a trial that raises would raise again; it is reported, not retried forever)."""
        failed = {
            run.data.tags.get(TRIAL_ID, "")
            for run in search_all(self.client, experiment_id, FAILED_TRIALS)
        }
        return failed - set(self.finished_trials(experiment_id))

    def record_failure(
        self, experiment_id: str, sweep_id: str | None, failure: Any, live: LiveRun | None = None
    ) -> str:
        """A trial that raised: a FAILED trial run with its config as params, the error as a
        tag and the traceback as ``error.txt``, so it is listed, findable and not lost (in its
        live run when it has one)."""
        trial = failure.trial
        record = TrialRecord(
            **trial_identity(trial),
            outcome=RecordedOutcome(FAILED_OUTCOME, failure.error, trial.config["outcomes"]),
            finished_at=utc_now(),
        )
        tags = {**trial_tags(record, sweep_run=sweep_id), ERROR: failure.error[:MAX_REASON_TAG]}
        tags[DEVICE] = failure.worker
        from mlflow.entities import Param, RunTag

        if live is None:
            rid = self.client.create_run(experiment_id, run_name=trial.run_name, tags=tags)
            rid = rid.info.run_id
        else:
            rid = live.run_id
        # MlflowClient.log_batch splits into the store's per-call limits itself.
        self.client.log_batch(
            rid,
            params=[Param(k, v) for k, v in trial_params(record).items()],
            tags=[RunTag(k, v) for k, v in tags.items()] if live is not None else [],
        )
        self.client.log_text(rid, failure.traceback, ERROR_ARTIFACT)
        self.client.set_terminated(rid, status="FAILED")
        return rid

    # -- live runs (runners.live): created RUNNING, fed while they train, closed by the record --
    def start_live(self, experiment_id: str, sweep_id: str | None, message: dict) -> LiveRun:
        """The RUNNING run of a trial that started training (tags and params as the finished
        run will have them, outcome ``running``), from the trial's own start time."""
        from mlflow.entities import Param

        tags = dict(message["tags"]) | ({SWEEP_RUN: sweep_id} if sweep_id else {})
        run = self.client.create_run(
            experiment_id, run_name=message["run_name"], tags=tags, start_time=message["start_ms"]
        )
        params = [Param(k, v) for k, v in message["params"].items()]
        self.client.log_batch(run.info.run_id, params=params)
        return LiveRun(run.info.run_id)

    def live_points(self, live: LiveRun, points: Sequence[tuple[str, float, int]]) -> int:
        """Append a flush's points (those past what the run holds) in one ``log_batch``."""
        from mlflow.entities import Metric

        new = live.after(points)
        if new:
            now = int(time.time() * 1000)
            self.client.log_batch(live.run_id, metrics=[Metric(k, v, now, s) for k, v, s in new])
        return len(new)

    def kill_live(self, live: LiveRun, reason: str) -> None:
        """A live run whose trial will not report (its unit was cancelled, lost, or the driver
        is gone): KILLED with outcome ``killed``, so it is rerun on resume and its points stay."""
        from mlflow.entities import RunTag

        tags = [RunTag(OUTCOME, KILLED), RunTag(OUTCOME_REASON, reason[:MAX_REASON_TAG])]
        self.client.log_batch(live.run_id, tags=tags)
        self.client.set_terminated(live.run_id, status=KILLED_STATUS)

    def start_sweep(self, experiment_id: str, suite: Any, planned: int, todo: int) -> str:
        # Every invocation (re)sets the experiment's tags, so stores made before they existed
        # open in the UI's training view too, with the suite as it is now.
        levels = factor_levels(trial.factors for trial in suite.trials)
        # The deepest net's last weight layer (depth hidden layers + the head): the saved
        # curve view's "last layer" chart.
        deepest = max((t.spec.model.depth for t in suite.trials), default=None)
        tags = experiment_tags(suite.name, suite.spec.description, levels, deepest)
        for key, value in tags.items():
            self.client.set_experiment_tag(experiment_id, key, value)
        return log_sweep(
            self.client,
            experiment_id,
            SweepRecord(suite.name, planned=planned, todo=todo),
            suite_yaml=suite.text,
            resolved=suite.spec.model_dump(mode="json"),
            environment=environment(),
            levels=levels,
            overrides=getattr(suite, "overrides", ()),
        )

    def end_sweep(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def record_trial(self, experiment_id: str, sweep_id: str | None, result: Any) -> str:
        """One trial run: tags, params, summary and curves in few ``log_batch`` calls, the whole
        record as ``trial.json``. The run spans the trial's own time (its start is the trial's
        wall time before now), so the MLflow UI's Duration is the trial's. Returns the run id."""
        return self.write_trial(experiment_id, sweep_id, TrialWrite.of(result))

    def write_trial(
        self,
        experiment_id: str,
        sweep_id: str | None,
        write: TrialWrite,
        live: LiveRun | None = None,
    ) -> str:
        """``record_trial`` for a result already reduced to its record (what crosses to the
        recorder process: plain data, no torch needed to read it); into its live run if any.
        A trial run also gets its picture and its dataset (what the UI shows without clicks)."""
        rid = log_trial(
            self.client,
            experiment_id,
            write.record,
            run_name=write.run_name,
            parent_run=write.parent or sweep_id,
            start_ms=write.start_ms,
            end_ms=write.end_ms,
            t0=time.perf_counter(),
            extra_tags=write.tags,
            live=live,
        )
        if write.kind == KIND_TRIAL:
            log_dataset(self.client, rid, write.record)
            log_picture(self.client, rid, write.record)
        return rid

    def recorded(self, experiment_id: str, write: TrialWrite) -> bool:
        """Whether a FINISHED run of this write's kind and trial id exists (a tuning run and a
        trial run of one id are different records)."""
        from gradatlas.runners import store

        if write.kind == KIND_TRIAL:
            return store.already_recorded(self.client, experiment_id, write.trial_id)
        if "'" in write.trial_id or "\\" in write.trial_id or "'" in write.kind:
            raise ValueError(f"not a trial id: {write.trial_id!r}")
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{KIND}` = '{write.kind}' and attributes.status = 'FINISHED' "
            f"and tags.`{TRIAL_ID}` = '{write.trial_id}'",
            max_results=1,
        )
        return bool(runs)


@dataclass(frozen=True)
class TrialWrite:
    """A finished (or interrupted) trial as the writer needs it: its record, run name and the
    trial's own clock times (a worker's, possibly minutes before it is written)."""

    record: TrialRecord
    run_name: str
    start_ms: int
    end_ms: int | None
    interrupted: bool
    # A run other than a sweep's trial (tuning): its own parent run and the tags that say what
    # it is (``gradatlas.kind`` among them), over the trial run's tags.
    parent: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.tags.get(KIND, KIND_TRIAL)

    @property
    def trial_id(self) -> str:
        return self.record.trial_id

    @property
    def label(self) -> str:
        return self.record.outcome.label

    @classmethod
    def of(cls, result: Any) -> TrialWrite:
        end_ms = round(1000 * result.ended_at) if getattr(result, "ended_at", 0) else None
        start_ms = (
            round(1000 * result.started_at)
            if getattr(result, "started_at", 0)
            else int(time.time() * 1000) - round(1000 * result.timing.get("wall_time_s", 0.0))
        )
        return cls(
            trial_record(result), result.trial.run_name, start_ms, end_ms, result.interrupted
        )


@dataclass
class LiveRun:
    """A trial's RUNNING run as the recorder made it (``runners.live``): its id and, per metric
    key, the last step it holds, so later points (a flush, the record) never repeat a step."""

    run_id: str
    last_step: dict[str, int] = field(default_factory=dict)

    def after(self, points: Sequence[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
        """The points past what the run holds; the run then holds them too."""
        new = [(k, v, s) for k, v, s in points if s > self.last_step.get(k, -1)]
        for k, _, s in new:
            self.last_step[k] = max(s, self.last_step.get(k, -1))
        return new


def trial_identity(trial: Any) -> dict[str, Any]:
    """The record fields that come from the trial itself (finished, interrupted or failed)."""
    return {
        "trial_id": trial.trial_id,
        "cell_id": trial.cell_id,
        "cell": trial.cell,
        "seed": trial.seed,
        "suite": trial.suite,
        "config": trial.config,
        "factors": trial.factors,
    }


def trial_record(result: Any) -> TrialRecord:
    """The record of a finished (or interrupted) ``runners.trial.TrialResult``."""
    trial = result.trial
    return TrialRecord(
        **trial_identity(trial),
        outcome=RecordedOutcome(
            label=final_label(result.outcome.label, result.interrupted),
            reason=result.outcome.reason,
            thresholds=trial.config["outcomes"],
        ),
        summary=dict(result.summary),
        task=result.task,
        num_classes=result.num_classes,
        device=result.device,
        curves=result.curves,
        profiles=result.profiles,
        timing=dict(result.timing),
        finished_at=utc_now(),
        environment=dict(getattr(result, "environment", None) or {}),
        batch_members=list(getattr(result, "batch_members", None) or []),
        trace=dict(getattr(result, "trace", None) or {}),
    )


# -- the writers: the one place the record's layout meets MLflow ---------------------------------
def log_sweep(
    client: Any,
    experiment_id: str,
    sweep: SweepRecord,
    *,
    suite_yaml: str,
    resolved: dict[str, Any],
    environment: dict[str, Any],
    levels: dict[str, list[str]],
    run_name: str | None = None,
    overrides: Sequence[str] = (),
) -> str:
    """Create the sweep run with its tags and its artifacts; returns its run id (the run
    stays RUNNING until ``set_terminated``). Command-line ``--set`` overrides, when there are
    any, are archived too (``overrides.json`` and the ``gradatlas.overrides`` tag): the suite
    file alone would not reproduce the sweep."""
    tags = sweep.tags()
    if overrides:
        tags[OVERRIDES] = " ".join(f"--set {o}" for o in overrides)[:MAX_REASON_TAG]
    run = client.create_run(
        experiment_id,
        run_name=run_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
        tags=tags,
    )
    rid = run.info.run_id
    client.log_text(rid, suite_yaml, SUITE_YAML_ARTIFACT)
    client.log_dict(rid, resolved, SUITE_RESOLVED_ARTIFACT)
    client.log_dict(rid, environment, ENVIRONMENT_ARTIFACT)
    client.log_dict(rid, levels, FACTOR_LEVELS_ARTIFACT)
    if overrides:
        client.log_dict(rid, {"overrides": list(overrides)}, OVERRIDES_ARTIFACT)
    return rid


def log_trial(
    client: Any,
    experiment_id: str,
    record: TrialRecord,
    *,
    run_name: str,
    parent_run: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    t0: float | None = None,
    last_points_only: bool = False,
    extra_tags: dict[str, str] | None = None,
    live: LiveRun | None = None,
) -> str:
    """Write one trial run from its record: tags at creation, params and metrics in one
    ``log_batch`` (MLflow splits it into its own batch limits), ``trial.json``, then the run's
    status (FINISHED, or KILLED for a ``killed`` record). ``timing.logging_time_s`` and the
    ``logging_time_s`` metric are the time spent here (from ``t0`` when given). With
    ``last_points_only`` each curve metric is logged at its last step only (the synthetic
    benchmark store: reports read ``trial.json``, never metric history). ``extra_tags`` go over
    the trial run's tags (a tuning run's kind and study). ``live``: the trial's RUNNING run
    that already holds its first points (``runners.live``): the record goes into it, with the
    points after those. Returns the run id."""
    from mlflow.entities import Metric, Param, RunTag

    t0 = time.perf_counter() if t0 is None else t0
    # A trial run stands flat and names its sweep; a tuning run nests under its study run.
    nested = (extra_tags or {}).get(KIND, KIND_TRIAL) != KIND_TRIAL
    tags = (
        trial_tags(record, parent_run=parent_run)
        if nested
        else trial_tags(record, sweep_run=parent_run)
    ) | (extra_tags or {})
    if live is None:
        rid = client.create_run(
            experiment_id, run_name=run_name, tags=tags, start_time=start_ms
        ).info.run_id
    else:
        rid = live.run_id
    now = int(time.time() * 1000)
    points = trial_metrics(record)
    if last_points_only:  # the summary (step 0) and each curve's last point
        points = list({key: (key, v, s) for key, v, s in points}.values())
    if live is not None:
        points = live.after(points)
    client.log_batch(
        rid,
        metrics=[Metric(key, v, now, s) for key, v, s in points],
        params=[Param(k, v) for k, v in trial_params(record).items()],
        tags=[RunTag(k, v) for k, v in tags.items()] if live is not None else [],
    )
    timing = record.timing | {"logging_time_s": time.perf_counter() - t0}
    client.log_text(rid, replace(record, timing=timing).to_json(), TRIAL_ARTIFACT)
    client.log_metric(rid, "logging_time_s", time.perf_counter() - t0, now, 0)
    client.set_terminated(rid, status=record.status, end_time=end_ms)
    return rid


def log_dataset(client: Any, run_id: str, record: TrialRecord) -> None:
    """The trial's dataset as an MLflow input: the runs table's Dataset column (shown without
    clicks) then reads e.g. ``mnist1d (3f2a9c1e)`` with a Train badge. The digest is the hash of
    the dataset's resolved config (name, seed, options), so two suites on the same data match."""
    import hashlib
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    config = record.config.get("dataset") or {}
    source = json.dumps(config, sort_keys=True, default=str)
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    dataset = Dataset(
        name=str(config.get("name") or "dataset"),
        digest=digest,
        source_type="gradatlas",
        source=source,
    )
    context = [InputTag("mlflow.data.context", "train")]
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=context)])


def log_picture(client: Any, run_id: str, record: TrialRecord) -> None:
    """``trial.png`` (``runners.trial_image``: the per-layer gradient norm at init and the loss
    curves, log axes) at the run's artifact root. A picture that cannot be drawn is left out,
    never the record (it is written already)."""
    import tempfile

    from gradatlas.runners.trial_image import ARTIFACT, trial_png

    try:
        png = trial_png(record)
    except Exception:  # a figure is a view of the record; the record itself is what counts
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ARTIFACT
        path.write_bytes(png)
        client.log_artifact(run_id, str(path))
