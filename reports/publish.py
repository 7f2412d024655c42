"""The report, attached to the sweep run it reports on: researchers who live in MLflow's UI find
it there (the sweep run's Artifacts tab previews ``report/index.html`` and ``report/report.pdf``)
without knowing where ``gradatlas report`` wrote it on disk.

Why the newest sweep run: a report is built from everything the experiment holds, so it belongs
to the latest invocation that added to it; a rebuild replaces the files there (same paths).
"""

from __future__ import annotations

from pathlib import Path

from gradatlas.record import SWEEPS, search_all

REPORT_ARTIFACTS = "report"  # the sweep run's artifact folder holding the report


def attach_report(tracking_uri: str, target: str, report_dir: Path) -> str | None:
    """Log ``report_dir`` (index.html, report.pdf and its figures) under ``report/`` of the
    newest sweep run of ``target`` (an experiment or suite name, as ``gradatlas report`` takes
    it); returns that run's id (None: no sweep run to attach to)."""
    from mlflow.tracking import MlflowClient

    from gradatlas.reports.load import experiment_name

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment_name(target, client))
    if exp is None:
        return None
    sweeps = sorted(
        search_all(client, exp.experiment_id, SWEEPS),
        key=lambda run: run.info.start_time or 0,
        reverse=True,
    )
    if not sweeps:
        return None
    run_id = sweeps[0].info.run_id
    for path in sorted(Path(report_dir).iterdir()):
        if path.is_file() and not path.name.endswith(".tmp"):
            client.log_artifact(run_id, str(path), REPORT_ARTIFACTS)
        elif path.is_dir():
            client.log_artifacts(run_id, str(path), f"{REPORT_ARTIFACTS}/{path.name}")
    return run_id
