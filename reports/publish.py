"""The report, attached to the sweep run it reports on: researchers who live in MLflow's UI find
it there (the sweep run's Artifacts tab previews ``report/index.html`` and ``report/report.pdf``)
without knowing where ``gradatlas report`` wrote it on disk.

Why the newest sweep run: a report is built from everything the experiment holds, so it belongs
to the latest invocation that added to it; a rebuild replaces the files there (same paths).
"""

from __future__ import annotations

from pathlib import Path

from gradatlas.record import RunKind
from gradatlas.store import RecordStore, as_store

REPORT_ARTIFACTS = "report"  # the sweep run's artifact folder holding the report


def attach_report(store: RecordStore | str, target: str, report_dir: Path) -> str | None:
    """Attach ``report_dir`` (index.html, report.pdf and its figures) under ``report/`` of the
    newest sweep run of ``target`` (an experiment or suite name, as ``gradatlas report`` takes
    it); returns that run's id (None: no sweep run to attach to)."""
    from gradatlas.reports.load import experiment_name

    store = as_store(store)
    exp = store.get_experiment(name=experiment_name(target, store))
    if exp is None:
        return None
    sweeps = store.find_runs(exp.experiment_id, kind=RunKind.SWEEP)
    if not sweeps:
        return None
    run_id = max(sweeps, key=lambda run: run.start_time or 0).run_id
    for path in sorted(Path(report_dir).iterdir()):
        if path.is_file() and not path.name.endswith(".tmp"):
            store.attach_files(run_id, path, REPORT_ARTIFACTS)
        elif path.is_dir():
            store.attach_files(run_id, path, f"{REPORT_ARTIFACTS}/{path.name}")
    return run_id
