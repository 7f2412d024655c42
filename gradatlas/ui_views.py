"""Saved views of MLflow's UI, written as experiment tags, so a suite's runs open as a researcher
wants them: trials flat (no sweep rows), in cell order, with outcome, cell, seed, the factor
levels and the headline metrics as columns; grouped by cell; curves on log axes.

Why saved views: MLflow 3.17's runs page takes no URL parameter for columns, grouping or chart
axes (only ``searchFilter``, ``orderByKey``/``orderByAsc`` and a few filters), and keeps them in
the browser's localStorage. A view is an experiment tag ``mlflow.sharedViewState.<key>`` that the
link ``...runs?workflowType=machine_learning&viewStateShareKey=<key>`` opens (and the "Views"
menu lists by name). The format below was verified in headless Chromium against MLflow 3.17.2
(notes: docs/record.md, "Experiment"); a tag value holds at most 20,000 characters, so the curve
view names few per-layer charts. Pure data: no MLflow import.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

VIEW_TAG = "mlflow.sharedViewState."
TRIALS_VIEW, BY_CELL_VIEW, CURVES_VIEW = "gradatlas-trials", "gradatlas-by-cell", "gradatlas-curves"
MAX_TAG_CHARS = 20_000
# The headline summary metrics shown as columns (those a run lacks show "-").
SUMMARY_COLUMNS = ("test_acc", "final_val_acc", "final_train_loss", "init_grad_ratio", "steps_run")
TRIALS_ONLY = "tags.`gradatlas.kind` = 'trial'"


def _tag(key: str) -> str:
    return f"tags.`{key}`"


def _param(key: str) -> str:
    return f"params.`{key}`"


def _metric(key: str) -> str:
    return f"metrics.`{key}`"


def _columns(factors: Iterable[str]) -> dict[str, Any]:
    """The table's columns: outcome, cell, seed and Duration first, then factor levels and the
    headline metrics; the run name and cell wide enough not to be cut."""
    lead = [_tag("gradatlas.outcome"), _tag("gradatlas.cell"), _tag("gradatlas.seed")]
    factor_cols = [_param(f"factor.{f}") for f in factors]
    metric_cols = [_metric(m) for m in SUMMARY_COLUMNS]
    return {
        "selectedColumns": [*lead, *factor_cols, *metric_cols, "attributes.`Description`"],
        "columnOrder": [
            "attributes.`Run Name`",
            *lead,
            "duration",
            *factor_cols,
            *metric_cols,
            "attributes.`Description`",
        ],
        "columnWidths": {
            "attributes.`Run Name`": 260,
            _tag("gradatlas.outcome"): 120,
            _tag("gradatlas.cell"): 240,
            _tag("gradatlas.seed"): 70,
        },
    }


def _line(key: str, section: str, *, log: bool, name: str) -> dict[str, Any]:
    return {
        "uuid": f"ga-{key.replace('/', '-')}",
        "type": "LINE",
        "runsCountToCompare": 100,
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
        "displayName": name,
        "metricKey": key,
        "selectedMetricKeys": [key],
        "lineSmoothness": 0,
        "xAxisScaleType": "linear",
        "scaleType": "log" if log else "linear",
        "range": {},
        "xAxisKey": "step",
        "selectedXAxisMetricKey": "",
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalXaxisKey": True,
        "useGlobalLineSmoothing": True,
    }


def _charts(last_layer: int | None) -> dict[str, Any]:
    """Loss and accuracy first (loss and gradient norm on log y), then the first and last
    layer's gradient norm (collapsed): what the run page's alphabetical sections do not do."""
    curves = [
        _line("train_loss", "ga-curves", log=True, name="train_loss (log y)"),
        _line("val_loss", "ga-curves", log=True, name="val_loss (log y)"),
        _line("val_acc", "ga-curves", log=False, name="val_acc"),
        _line("grad_norm", "ga-curves", log=True, name="global grad norm (log y)"),
    ]
    layers = [0] if not last_layer else [0, last_layer]
    curves += [
        _line(f"layer_grad_norm/{i:02d}", "ga-layers", log=True, name=f"layer {i:02d} grad norm")
        for i in layers
    ]
    sections = [
        {"uuid": "ga-curves", "name": "Loss and accuracy", "display": True, "isReordered": True},
        {
            "uuid": "ga-layers",
            "name": "First and last layer",
            "display": False,
            "isReordered": True,
        },
    ]
    return {
        "compareRunCharts": curves,
        "compareRunSections": sections,
        "isAccordionReordered": True,
        "hideEmptyCharts": True,
    }


def saved_views(levels: Mapping[str, list[str]], last_layer: int | None = None) -> dict[str, str]:
    """The experiment tags holding gradatlas's three views for a suite with these factors
    (``levels``: factor -> level labels; ``last_layer``: the deepest weight layer's index)."""
    base = {"searchFilter": TRIALS_ONLY, "orderByKey": _tag("gradatlas.cell"), "orderByAsc": True}
    columns = _columns(levels)
    states = {
        TRIALS_VIEW: ("gradatlas: trials", base | columns),
        BY_CELL_VIEW: (
            "gradatlas: trials by cell",
            base
            | columns
            | {
                "groupBy": {
                    "aggregateFunction": "average",
                    "groupByKeys": [{"mode": "tag", "groupByData": "gradatlas.cell"}],
                }
            },
        ),
        CURVES_VIEW: ("gradatlas: curves", base | _charts(last_layer)),
    }
    now = int(time.time() * 1000)
    tags = {}
    for key, (name, state) in states.items():
        value = json.dumps(
            {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
        )
        if len(value) <= MAX_TAG_CHARS:  # a suite with hundreds of factors: no view, no error
            tags[VIEW_TAG + key] = value
    return tags
