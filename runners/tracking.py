"""What the runner records, in the store's terms: a trial's result as a ``TrialWrite`` (or a
``FailureWrite``), the environment that produced the numbers, the suite's experiment and sweep
run, and one unit's writes with their pictures.

Where they go is the store's business (``gradatlas.store``: a URI, opened once per process);
this module only turns the runner's objects (``runners.trial.TrialResult``,
``runners.executor.TrialFailure``, a ``Suite``) into the record contract's (docs/record.md).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from gradatlas import store as st
from gradatlas.record import (
    FAILED_OUTCOME,
    KIND_TRIAL,
    RecordedOutcome,
    SweepRecord,
    TrialRecord,
    experiment_tags,
    factor_levels,
    final_label,
    overrides_tags,
    sweep_artifacts,
    utc_now,
)
from gradatlas.store import RecordStore, UnitReport
from gradatlas.store.checks import classified_writes


def package_versions(packages: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each package (None: not installed)."""
    versions: dict[str, str | None] = {}
    for pkg in packages:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


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
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads() if torch else None,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": torch.version.cuda if cuda and torch else None,
        "packages": versions,
        "git_commit": commit,
    }


# -- the suite's experiment and sweep run ----------------------------------------------------------
def suite_experiment(store: RecordStore, name: str) -> str:
    """The suite's experiment, created (in the UI's training view) if it is new."""
    return store.open_experiment(name, tags=experiment_tags(name, "", {}))


def start_sweep(
    store: RecordStore, experiment_id: str, suite: Any, planned: int, todo: int | None
) -> str:
    """The sweep run of this invocation (RUNNING until the driver ends it), archiving the suite,
    its resolved form, the environment and the factor levels; returns its id."""
    # Every invocation (re)sets the experiment's tags, so an older store opens in the UI's
    # training view too, and the saved views follow the suite file as it reads today.
    levels = factor_levels(trial.factors for trial in suite.trials)
    # The deepest net's last weight layer (depth hidden layers + the head): the saved
    # curve view's "last layer" chart.
    deepest = max((t.spec.model.depth for t in suite.trials), default=None)
    store.set_experiment_tags(
        experiment_id, experiment_tags(suite.name, suite.spec.description, levels, deepest)
    )
    overrides = list(getattr(suite, "overrides", ()))
    return store.start_sweep(
        experiment_id,
        SweepRecord(suite.name, planned=planned, todo=todo),
        run_name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
        artifacts=sweep_artifacts(
            suite_yaml=suite.text,
            resolved=suite.spec.model_dump(mode="json"),
            environment=environment(),
            levels=levels,
            overrides=overrides,
        ),
        tags=overrides_tags(overrides),
    )


# -- trials ----------------------------------------------------------------------------------------
class TrialWrite(st.TrialWrite):
    """The store's ``TrialWrite``, with its constructor from a runner's result (the store does
    not know the runner's types)."""

    @classmethod
    def of(cls, result: Any) -> TrialWrite:
        """The write of a finished (or interrupted) ``runners.trial.TrialResult``: its record and
        its own start and end times (its run spans the trial, so the MLflow UI's Duration is
        the trial's)."""
        end_ms = round(1000 * result.ended_at) if getattr(result, "ended_at", 0) else None
        start_ms = (
            round(1000 * result.started_at)
            if getattr(result, "started_at", 0)
            else int(time.time() * 1000) - round(1000 * result.timing.get("wall_time_s", 0.0))
        )
        return cls(
            trial_record(result), result.trial.run_name, start_ms, end_ms, result.interrupted
        )


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


def failure_write(failure: Any) -> st.FailureWrite:
    """The write of a trial that raised (``runners.executor.TrialFailure``)."""
    trial = failure.trial
    record = TrialRecord(
        **trial_identity(trial),
        outcome=RecordedOutcome(FAILED_OUTCOME, failure.error, trial.config["outcomes"]),
        finished_at=utc_now(),
    )
    return st.FailureWrite(record, trial.run_name, failure.error, failure.traceback, failure.worker)


def write_unit(
    store: RecordStore,
    experiment_id: str,
    sweep_id: str | None,
    writes: Sequence[st.TrialWrite],
    failures: Sequence[Any] = (),
    *,
    live: Mapping[str, st.LiveRun] | None = None,
    force: bool = False,
    pictures: list[tuple[str, TrialRecord]] | None = None,
) -> UnitReport:
    """One unit's records (``RecordStore.record_unit``; ``failures``: its
    ``TrialFailure``s), then each new trial run's picture (``trial.png``: what the run page
    shows without clicks). ``seconds`` counts both. With ``pictures`` (a list), the pictures
    are not drawn here but appended to it as (run id, record), for the caller to draw when
    nothing else waits (the recorder: a picture costs ~60 ms, ten times a bulk-written record,
    so drawing it inline would let pictures set the pace of a fused sweep)."""
    t0 = time.perf_counter()
    report = store.record_unit(
        experiment_id,
        sweep_id,
        writes,
        [failure_write(f) for f in failures],
        live=live,
        force=force,
    )
    with classified_writes():
        for write in writes:
            run_id = report.run_ids.get(write.trial_id)
            if run_id is not None and write.kind == KIND_TRIAL:
                if pictures is not None:
                    pictures.append((run_id, write.record))
                else:
                    attach_picture(store, run_id, write.record)
    report.seconds = time.perf_counter() - t0
    return report


def attach_picture(store: RecordStore, run_id: str, record: TrialRecord) -> None:
    """``trial.png`` (``runners.trial_image``: the per-layer gradient norm at init and the loss
    curves, log axes) at the run's artifact root. A picture that cannot be drawn is left out,
    never the record (it is written already)."""
    from gradatlas.runners.trial_image import ARTIFACT, trial_png

    try:
        png = trial_png(record)
    except Exception:  # a figure is a view of the record; the record itself is what counts
        return
    store.attach(run_id, ARTIFACT, png)
