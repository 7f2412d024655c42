"""The PDF, drawn in a child process: ``python -m gradatlas.reports.worker``.

Drawing dominates a report's build and every chart is drawn twice (SVG for the HTML, vector PDF
pages), so ``build_report`` draws the PDF here while it draws the HTML. A plain child interpreter
(rather than ``multiprocessing``) never re-imports the caller's ``__main__`` script, so calling
``build_report`` from an unguarded script cannot re-run that script in the child.

Protocol: the worker imports the renderer at once (overlapping the parent's MLflow read), then
reads one line from stdin, ``<pickled Document path>\\t<PDF path>``, writes the PDF and exits 0.
An empty stdin means the parent no longer needs it.
"""

from __future__ import annotations

import gc
import pickle
import sys
from pathlib import Path

DRAWING_GC_GEN0 = 20_000  # allocations between young collections while drawing (default 700)


def drawing_gc() -> tuple[int, int, int]:
    """Set the collector up for drawing; returns the thresholds to restore (then unfreeze).

    What is alive now (the records, the document) stays alive until the report is written:
    ``gc.freeze`` moves it out of the collector's sight, or every full collection while drawing
    re-scans millions of objects that cannot be garbage. Matplotlib allocates artists by the
    hundred thousand and frees most of them by reference counting, so young collections are
    made rarer too. Together about a tenth of the drawing time.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(DRAWING_GC_GEN0, *before[1:])
    return before


def main() -> int:
    from gradatlas.reports.pdf import render_pdf

    line = sys.stdin.readline().rstrip("\n")
    if not line:
        return 0
    source, target = line.split("\t")
    with open(source, "rb") as fh:
        doc = pickle.load(fh)  # written by our parent into its private temporary folder
    drawing_gc()  # this process ends when the PDF is written: nothing to restore
    render_pdf(doc, Path(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
