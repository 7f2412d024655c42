"""``build_report``: experiment in the store -> ``index.html`` + ``report.pdf``.

The only function the CLI needs. It resolves what the user named, reads the store once, builds
the report's content once, and renders it twice, so the two files always say the same thing.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gradatlas.reports.load import experiment_name, load_experiment
from gradatlas.reports.plan_status import PlanStatus, read_plan_status
from gradatlas.reports.sections import DEFAULT_HEATMAP_FACTORS, build_document
from gradatlas.reports.steer import Steering
from gradatlas.reports.worker import drawing_gc
from gradatlas.store import RecordStore

log = logging.getLogger(__name__)
WORKER_ARGS = ["-m", "gradatlas.reports.worker"]  # after the interpreter


def build_report(
    target: str,
    *,
    store: RecordStore | None = None,
    tracking_uri: str | None = None,
    out_dir: str | Path | None = None,
    heatmap_factors: Sequence[str] = DEFAULT_HEATMAP_FACTORS,
    curve_factor: str | None = None,
    parallel: bool = True,
    steering: Steering | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[Path, Path]:
    """Build the report for ``target`` (an MLflow experiment name, or a suite name/path whose
    ``name`` is the experiment) and return ``(html_path, pdf_path)``.

    ``out_dir`` defaults to ``runs/reports/<experiment>/`` under the current directory. The
    store is ``store``, else the one at ``tracking_uri`` (default ``$MLFLOW_TRACKING_URI`` or the
    local ``runs/mlflow.db``), opened for reading: a missing store is an error, never created.
    ``heatmap_factors`` are the (rows, columns) of the outcome heatmaps; ``curve_factor`` the
    factor drawn as one line per level in the convergence curves. With ``parallel`` the PDF is
    drawn by a child process (``PdfWorker``) while this one draws the HTML. ``steering`` is
    what ``gradatlas report --by --facet --where --cell --limit`` asked for (checked against the
    experiment before anything is written). ``timings``, when given, receives the seconds
    spent per phase: ``load`` (the store, the plan), ``content`` (the document), ``html`` and
    ``pdf`` (with the worker: the wait for it after the HTML).
    """
    from gradatlas.reports.html import render_html
    from gradatlas.reports.pdf import render_pdf
    from gradatlas.store import open_store

    clock = PhaseClock(timings)
    # Start the PDF worker first: its imports then overlap with reading the store.
    worker = PdfWorker.start() if parallel else None
    frozen = None
    try:
        with clock("load"):
            if store is None:
                store = open_store(tracking_uri, create=False)
            name = experiment_name(target, store)
            exp = load_experiment(name, store)
            plan = _plan_status(exp, steering)
        frozen = drawing_gc()
        with clock("content"):
            doc = build_document(
                exp,
                heatmap_factors=heatmap_factors,
                curve_factor=curve_factor,
                steering=steering,
                plan=plan,
            )
            out = (
                Path(out_dir)
                if out_dir is not None
                else Path.cwd() / "runs" / "reports" / safe_name(name)
            )
            out.mkdir(parents=True, exist_ok=True)
            html_path, pdf_path = out / "index.html", out / "report.pdf"
            tmp_pdf = pdf_path.with_name(pdf_path.name + ".tmp")
            handed = worker is not None and worker.submit(doc, tmp_pdf)
        with clock("html"):
            _write_atomic(html_path, render_html(doc).encode("utf-8"))
        with clock("pdf"):
            if not (handed and worker is not None and worker.finish()):
                # No worker, or it failed: draw here (a real error then surfaces with its
                # traceback).
                render_pdf(doc, tmp_pdf)
            tmp_pdf.replace(pdf_path)
    except BaseException:
        if worker is not None:  # a bad flag or store: the user waits for nothing (not 5 s)
            worker.kill()
        raise
    finally:
        if worker is not None:
            worker.close()
        if frozen is not None:
            gc.unfreeze()
            gc.set_threshold(*frozen)
    log.info("report %s: %s", name, clock)
    return html_path.resolve(), pdf_path.resolve()


class PhaseClock:
    """Seconds per named phase, into ``into`` when given."""

    def __init__(self, into: dict[str, float] | None = None) -> None:
        self.times = into if into is not None else {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.times[phase] = self.times.get(phase, 0.0) + time.perf_counter() - t

    def __str__(self) -> str:
        return ", ".join(f"{k} {v:.2f}s" for k, v in self.times.items())


def _plan_status(exp: Any, steering: Steering | None) -> PlanStatus | None:
    """The plan's state for the banner; a store that cannot say costs the banner, not the
    report."""
    try:
        return read_plan_status(exp.store, exp, steering.where_levels() if steering else None)
    except Exception as exc:
        log.warning("could not count the plan's unfinished trials: %s", exc)
        return None


class PdfWorker:
    """A child interpreter (``gradatlas.reports.worker``) that draws the PDF while this process
    draws the HTML: each chart is drawn once per format and drawing dominates the build, so on
    two cores this nearly halves it. Any failure just means the PDF is drawn here instead."""

    def __init__(self, proc: subprocess.Popen, tmp: Path, stderr: Any) -> None:
        self.proc, self.tmp, self.stderr = proc, tmp, stderr

    @classmethod
    def start(cls) -> PdfWorker | None:
        if (os.cpu_count() or 1) < 2:
            return None  # nothing to overlap with
        tmp = Path(tempfile.mkdtemp(prefix="gradatlas-report-"))
        stderr = open(tmp / "worker.log", "w+b")  # noqa: SIM115 - closed in close()
        try:
            proc = subprocess.Popen(
                [sys.executable, *WORKER_ARGS],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        except OSError:
            stderr.close()
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        return cls(proc, tmp, stderr)

    def submit(self, doc: Any, pdf_path: Path) -> bool:
        """Hand the document over; False if it cannot be (then the caller draws the PDF)."""
        try:
            payload = self.tmp / "document.pickle"
            payload.write_bytes(pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL))
            assert self.proc.stdin is not None
            self.proc.stdin.write(f"{payload}\t{pdf_path}\n".encode())
            self.proc.stdin.close()
            return True
        except (OSError, pickle.PicklingError, AttributeError, TypeError) as exc:
            log.info("PDF worker not used: %s", exc)
            return False

    def finish(self) -> bool:
        """Wait for the PDF; True when it was written."""
        if self.proc.wait() == 0:
            return True
        self.stderr.seek(0)
        log.info(
            "PDF worker failed; drawing the PDF in this process:\n%s",
            self.stderr.read().decode(errors="replace")[-4000:],
        )
        return False

    def kill(self) -> None:
        """Stop it now (the report failed: no PDF will be asked for)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()  # an empty stdin tells an idle worker to exit
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def safe_name(name: str) -> str:
    """An experiment name as a folder name (names may hold slashes or spaces)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "report"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write then rename, so a reader never sees half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
