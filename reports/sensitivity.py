"""Threshold sensitivity: how the outcome rates move when each threshold moves.

Every outcome label comes from declared thresholds (the suite's ``outcomes`` block, rules in
``runners/outcome.py``). A rate that flips when a threshold moves by a factor of ten is a
statement about the threshold, not about the nets; one that holds is a finding. Each trial
record keeps the series the rules read at full resolution (``trace`` in ``trial.json``,
docs/record.md), so every trial is judged again here, from its record, under each threshold
scaled x0.1 and x10 (the others at their recorded values): nothing is rerun.

What cannot be judged again is said so, not guessed: a trial that exploded stopped training
there, so under a threshold loose enough that it would not have exploded its record ends
early and its label is ``censored`` (counted apart). Records written before traces were kept
(and probe-only, killed or failed trials) are left out and counted.

Pure: no torch, no MLflow; records as plain data (``TrialRecord.to_dict()``) or
``TrialRecord``s, or an ``Experiment``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gradatlas.record import OUTCOMES, OutcomeLabel, TrialRecord
from gradatlas.reports.document import Block, Cell, Column, Para, Table
from gradatlas.reports.fmt import pct, plural

if TYPE_CHECKING:
    import pandas as pd

    from gradatlas.reports.context import ReportContext

SCALES = (0.1, 10.0)
CENSORED = "censored"  # an exploded trial's record ends there: not judged again past it
BASELINE = "(baseline)"
# Thresholds that are fractions by definition: a scaled value is capped here.
CAPS = {"target_accuracy": 1.0, "loss_progress": 1.0, "chance_margin": 1.0}
LABELS = (*OUTCOMES, CENSORED)


def _as_dicts(exp_or_records: Any) -> list[dict[str, Any]]:
    records = getattr(exp_or_records, "records", exp_or_records)
    if isinstance(records, Mapping):
        records = records.values()
    return [r.to_dict() if isinstance(r, TrialRecord) else dict(r) for r in records]


class _Judged:
    """One record ready to be judged again: its trace parsed once, its thresholds."""

    def __init__(self, record: Mapping[str, Any]):
        from gradatlas.runners.outcome import trace_from_json

        outcome = record.get("outcome") or {}
        self.label = str(outcome.get("label") or "")
        self.thresholds = dict(outcome.get("thresholds") or {})
        raw = record.get("trace") or {}
        self.trace = trace_from_json(raw)
        budget = raw.get("max_steps") if isinstance(raw, Mapping) else None
        self.stopped_early = (
            self.trace is not None
            and isinstance(budget, int | float)
            and self.trace.step_loss.size < budget
        )

    @property
    def usable(self) -> bool:
        return self.trace is not None and self.label in OUTCOMES and bool(self.thresholds)

    def judge(self, scaled: Iterable[str] = (), scale: float = 1.0) -> str:
        from gradatlas.runners.outcome import classify

        thresholds = dict(self.thresholds)
        for name in scaled:
            if isinstance(thresholds.get(name), int | float):
                thresholds[name] = scaled_value(name, thresholds[name], scale)
        label = classify(self.trace, thresholds).label  # type: ignore[arg-type]
        stopped = self.stopped_early and self.label == OutcomeLabel.EXPLODED
        if stopped and label != OutcomeLabel.EXPLODED:  # judged past where the trial stopped
            return CENSORED
        return label


def scaled_value(name: str, value: float, scale: float) -> float:
    """``value`` x ``scale``, capped where the threshold is a fraction (``CAPS``)."""
    out = float(value) * scale
    return min(out, CAPS[name]) if name in CAPS else out


def reclassify(
    records: Any, thresholds: str | Iterable[str] | None = None, scale: float = 1.0
) -> list[str | None]:
    """Each record's label when judged again from its trace with the named ``thresholds``
    scaled by ``scale`` (the others as recorded); None for a record that cannot be judged (no
    trace, no thresholds, or not a verdict). ``scale`` 1 gives the recorded labels back."""
    names = [thresholds] if isinstance(thresholds, str) else list(thresholds or [])
    out: list[str | None] = []
    for record in _as_dicts(records):
        j = _Judged(record)
        out.append(j.judge(names, scale) if j.usable else None)
    return out


def threshold_names(judged: Sequence[_Judged]) -> list[str]:
    """The numeric thresholds the records were judged by, in their recorded order."""
    names: list[str] = []
    for j in judged:
        for k, v in j.thresholds.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in names:
                names.append(k)
    return names


def threshold_sensitivity(exp_or_records: Any, scales: Sequence[float] = SCALES) -> pd.DataFrame:
    """The outcome rates with every threshold scaled by each of ``scales`` in turn.

    One row for the baseline (``threshold`` ``(baseline)``, ``scale`` 1: the records' own
    thresholds, which must give the recorded labels), then one per (threshold, scale).
    Columns: ``threshold``, ``scale``, ``value`` (the threshold's value used, where the records
    share one; NaN otherwise), ``n`` (trials judged), one rate per label (``OUTCOMES``, then
    ``censored``), ``changed`` (share of trials whose label differs from the baseline's).
    ``df.attrs``: ``without_trace`` (records left out: no trace, or not a verdict) and
    ``mismatched`` (trials whose baseline label differs from the recorded one: 0 unless the
    rules changed since they were written).
    """
    import pandas as pd

    all_judged = [_Judged(r) for r in _as_dicts(exp_or_records)]
    judged = [j for j in all_judged if j.usable]
    base = [j.judge() for j in judged]
    n = len(judged)

    def row(threshold: str, scale: float, labels: list[str]) -> dict[str, Any]:
        values = {
            scaled_value(threshold, j.thresholds[threshold], scale)
            for j in judged
            if isinstance(j.thresholds.get(threshold), int | float)
        }
        out: dict[str, Any] = {
            "threshold": threshold,
            "scale": scale,
            "value": values.pop() if len(values) == 1 else math.nan,
            "n": n,
        }
        for label in LABELS:
            out[label] = sum(lb == label for lb in labels) / n if n else math.nan
        changed = sum(a != b for a, b in zip(labels, base, strict=True))
        out["changed"] = changed / n if n else math.nan
        return out

    rows = [row(BASELINE, 1.0, base) | {"value": math.nan}]
    for name in threshold_names(judged):
        for scale in scales:
            rows.append(row(name, scale, [j.judge([name], scale) for j in judged]))
    df = pd.DataFrame(rows, columns=["threshold", "scale", "value", "n", *LABELS, "changed"])
    df.attrs = {
        "without_trace": len(all_judged) - n,
        "mismatched": sum(j.label != b for j, b in zip(judged, base, strict=True)),
    }
    return df


# -- the report section ----------------------------------------------------------------------------
class ThresholdSensitivity:
    """How each outcome rate moves when each threshold is scaled x0.1 and x10."""

    title = "Threshold sensitivity"

    def build(self, ctx: ReportContext) -> list[Block]:
        df = threshold_sensitivity(ctx.exp)
        missing = df.attrs["without_trace"]
        if not df["n"].iloc[0]:
            return [
                Para(
                    "Skipped: no trial record keeps the series its label was judged from "
                    "(`trace`, written since the sensitivity analysis exists), so no label can "
                    "be judged again under other thresholds.",
                    note=True,
                )
            ]
        blocks: list[Block] = [
            Para(
                f"Every one of {plural(int(df['n'].iloc[0]), 'trial')} judged again from its "
                "record with one threshold at a time scaled x0.1 and x10 (the others as "
                "recorded; fractions capped at 1); no trial was rerun. Each cell is the rate, "
                "with its change from the baseline in percentage points. A rate that moves a "
                "lot with its threshold is about the threshold; one that holds is about the "
                "nets. `censored`: an exploded trial stopped at its explosion, so under a looser "
                "threshold its record ends too early to be judged."
            )
        ]
        if missing:
            blocks.append(
                Para(
                    f"{plural(missing, 'trial')} left out: no trace in the record (written "
                    "before traces were kept), or no verdict (probe-only, killed).",
                    note=True,
                )
            )
        if df.attrs["mismatched"]:
            blocks.append(
                Para(
                    f"{plural(df.attrs['mismatched'], 'trial')} judged at the recorded "
                    "thresholds get a label other than the recorded one: the rules changed "
                    "since they were written.",
                    note=True,
                )
            )
        blocks.append(sensitivity_table(df))
        return blocks


def sensitivity_table(df: pd.DataFrame) -> Table:
    """The rates per (threshold, scale), with their change from the baseline."""
    shown = [lb for lb in LABELS if (df[lb] > 0).any()]
    base = df.iloc[0]
    cols = [Column("threshold", weight=2.0), Column("value", "right", 1.0)]
    cols += [Column(lb, "right", 1.1) for lb in shown] + [Column("changed", "right", 0.9)]
    rows, attrs = [], []
    for _, r in df.iterrows():
        is_base = r["threshold"] == BASELINE
        name = BASELINE if is_base else f"{r['threshold']} x{r['scale']:g}"
        value = "" if math.isnan(r["value"]) else f"{r['value']:.4g}"
        cells = [Cell(name), Cell(value)]
        for lb in shown:
            delta = 100 * (r[lb] - base[lb])
            text = pct(r[lb]) if is_base or round(delta) == 0 else f"{pct(r[lb])} ({delta:+.0f})"
            cells.append(
                Cell(
                    text,
                    attrs={"outcome": lb, "rate": float(r[lb])},
                    muted=not is_base and round(delta) == 0,
                )
            )
        cells.append(Cell("" if is_base else pct(r["changed"]), attrs={"changed": r["changed"]}))
        rows.append(cells)
        attrs.append({"threshold": str(r["threshold"]), "scale": float(r["scale"])})
    return Table(
        cols,
        rows,
        name="threshold-sensitivity",
        row_attrs=attrs,
        caption=(
            "Outcome rates with one threshold scaled (x0.1, x10); in brackets the change from "
            "the baseline in percentage points; `changed`: share of trials whose label moved."
        ),
    )
