"""Reports: self-contained HTML and PDF built from what MLflow holds.

``build_report(target, tracking_uri=..., out_dir=...)`` -> ``(html_path, pdf_path)``. The modules,
one job each: ``load`` (MLflow -> frames), ``stats`` (rates, intervals, bands), ``figures``
(charts), ``document`` (format-neutral blocks), ``context`` (what every section shares, computed
once), ``overview``/``outcomes``/``dynamics`` (the sections' content), ``sections`` (their
order), ``html`` and ``pdf`` (rendering), ``worker`` (the PDF drawn in a child process),
``build`` (the entry point).
"""

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    """``build_report`` imported on first use: the PDF worker (``python -m
    gradatlas.reports.worker``) needs only the renderer, not every section's module."""
    if name == "build_report":
        from gradatlas.reports.build import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
