"""Reports: self-contained HTML and PDF built from what MLflow holds.

``build_report(target, tracking_uri=..., out_dir=...)`` -> ``(html_path, pdf_path)``. The modules,
one job each: ``load`` (MLflow -> frames), ``stats`` (rates, intervals, bands), ``figures``
(charts), ``document`` (format-neutral blocks), ``context`` (what every section shares, computed
once), ``overview``/``outcomes``/``dynamics`` (the sections' content), ``sections`` (their
order), ``html`` and ``pdf`` (rendering), ``worker`` (the PDF drawn in a child process),
``build`` (the entry point).
"""

from gradatlas.reports.build import build_report

__all__ = ["build_report"]
