"""Results as a pandas DataFrame: ``gradatlas.results`` and ``gradatlas.rates``.

The public way into what a sweep recorded, read the way the reports read it
(``gradatlas.reports.load``: one row per trial id, the newest finished run, ``--force`` reruns set
aside), so a number computed here is the number the report prints. ``gradatlas export`` writes
the same table as CSV or Parquet.

The module is ``dataframe``, not ``results``, so that the submodule never shadows the function:
importing ``gradatlas.results`` as a module would rebind the package attribute
``gradatlas.results`` and turn ``gradatlas.results("quickstart")`` into a call of a module.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gradatlas.errors import UserInputError
from gradatlas.record import OUTCOME_ORDER as _ORDER
from gradatlas.record import OUTCOMES as _VERDICTS

# The labels as plain strings: the frames a user gets hold ``str`` categories and columns, as
# the stored labels are (the record's enum members compare equal to them).
OUTCOME_ORDER = tuple(str(label) for label in _ORDER)
OUTCOMES = tuple(str(label) for label in _VERDICTS)

if TYPE_CHECKING:
    import pandas as pd

    from gradatlas.reports.load import Experiment

# The columns every table has besides its factors and summary metrics, by where they go.
LEAD = ("outcome", "reason", "seed", "cell")
TAIL = ("trial_id", "cell_id", "run_id", "start_time", "end_time")
FORMATS = {"csv": ".csv", "parquet": ".parquet"}
PARQUET_ENGINES = ("pyarrow", "fastparquet")  # what pandas.to_parquet can write with


def results(suite_or_experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per trial of an experiment: the newest finished run of each trial id.

    ``suite_or_experiment`` is an MLflow experiment name, a built-in suite's name or a suite
    file's path (its ``name`` is the experiment). ``tracking_uri`` defaults to
    ``$MLFLOW_TRACKING_URI``, else the CLI's local store ``sqlite:///./runs/mlflow.db``.
    Raises ``UserInputError`` when there is no such store, experiment or suite, or no finished
    trial yet.

    Columns, in this order:

    - one per grid factor, named by the factor (``depth``, ``activation``, ``init``, ...): the
      level labels as an ordered ``Categorical`` in the suite's own level order (``d3 < d20``),
      so ``sort_values`` and ``groupby`` follow the suite, not the alphabet;
    - ``outcome``: ordered ``Categorical`` over ``gradatlas.record.OUTCOME_ORDER`` (converged,
      unconverged, stalled, vanished, dead, diverged, exploded, probe, killed), every category
      present even where no trial has it, so counts show zeros; ``reason``: the outcome rule's
      explanation;
    - ``seed`` (``Int64``), ``cell`` (the cell's label, e.g. ``d20-sigmoid-xavier_normal``);
    - the summary metrics as floats (NaN where a trial has none), in the order the record keeps
      them: ``initial_loss``, ``final_train_loss``, ``final_val_loss``, ``best_val_loss``,
      ``steps_run``, the init-profile summaries, ``final_val_acc``, ``best_val_acc``,
      ``final_train_acc``, ``generalization_gap``, ``steps_to_target`` (converged trials),
      ``explode_step`` (exploded ones), ``test_acc`` and the other ``test_*`` scores, the timing
      (``wall_time_s``, ``fit_time_s``, ...); which exist depends on the task and the version
      that wrote the runs (docs/record.md);
    - ``trial_id`` (hash of the resolved config), ``cell_id``, ``run_id`` (the MLflow run),
      ``start_time`` and ``end_time`` (the run's, UTC timestamps).

    Rows are in grid order (factor levels, then seed). ``df.attrs`` holds ``experiment``,
    ``tracking_uri`` and ``set_aside`` (older finished runs of the same trials, not shown).
    """
    return results_frame(_load(suite_or_experiment, tracking_uri))


def results_frame(exp: Experiment) -> pd.DataFrame:
    """``results``' table from an already loaded ``Experiment`` (records made in memory too)."""
    import pandas as pd

    t = exp.trials
    factor_cols = {exp.fcol(f): f for f in exp.factors}
    taken = set(LEAD) | set(TAIL) | set(exp.factors)
    metrics = [c for c in t.columns if c not in taken and c not in factor_cols]
    out = pd.DataFrame(index=t.index)
    for col, factor in factor_cols.items():
        out[factor] = pd.Categorical(t[col], categories=exp.levels[factor], ordered=True)
    labels = t["outcome"].fillna("").astype(str)
    extra = [lb for lb in dict.fromkeys(labels) if lb not in OUTCOME_ORDER]  # older or odd labels
    out["outcome"] = pd.Categorical(labels, categories=[*OUTCOME_ORDER, *extra], ordered=True)
    out["reason"] = t["reason"]
    out["seed"] = t["seed"]
    out["cell"] = t["cell"]
    for col in metrics:
        out[col] = t[col]
    for col in TAIL[:3]:
        out[col] = t[col]
    for col in TAIL[3:]:
        out[col] = pd.to_datetime(t[col], unit="ms", utc=True)
    out = out.sort_values([*exp.factors, "seed"], kind="stable").reset_index(drop=True)
    out.attrs = {
        "experiment": exp.name,
        "tracking_uri": exp.tracking_uri,
        "set_aside": exp.set_aside,
    }
    return out


def rates(
    df: pd.DataFrame, by: str | Sequence[str], outcomes: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """Outcome rates with Wilson 95% intervals per group of ``by`` (columns of ``df``).

    One row per observed group, indexed by ``by`` the way ``groupby`` is, in categorical order
    (the suite's levels) for factor columns. Columns: ``n`` (trials in the group), then for each
    outcome ``<outcome>`` (its rate, k/n), ``<outcome>_lo`` and ``<outcome>_hi`` (the Wilson
    score interval, the one the report prints). ``outcomes`` defaults to the seven verdicts plus
    any other label ``df`` holds (``probe``), so the rates of a row sum to 1. An empty ``by``
    gives one row over all trials.

        rates(results("quickstart"), by=["depth", "init"])[["n", "exploded", "exploded_lo",
        "exploded_hi"]]
    """
    import pandas as pd

    from gradatlas.reports.stats import wilson

    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*keys, "outcome"] if c not in df.columns]
    if missing:
        raise KeyError(f"rates: no column {missing[0]!r}; the table has {list(df.columns)}")
    col = df["outcome"]
    observed = list(dict.fromkeys(col.dropna().astype(str)))
    categories = list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype) else []
    known = list(dict.fromkeys([*OUTCOME_ORDER, *categories, *observed]))
    if outcomes is None:
        labels = [*OUTCOMES, *(lb for lb in known if lb in observed and lb not in OUTCOMES)]
    else:
        labels = [outcomes] if isinstance(outcomes, str) else list(outcomes)
        unknown = [lb for lb in labels if lb not in known]
        if unknown:
            raise ValueError(f"rates: unknown outcome {unknown[0]!r}; outcomes are {known}")
    label_of = col.astype(object)
    hits = pd.DataFrame(
        {f"k{i}": (label_of == lb).to_numpy(int) for i, lb in enumerate(labels)}, index=df.index
    )
    if keys:
        grouped = pd.concat([df[keys], hits], axis=1).groupby(keys, observed=True, sort=True)
        counts, n = grouped[list(hits.columns)].sum(), grouped.size()
    else:
        counts, n = hits.sum().to_frame().T, pd.Series([len(df)])
    out = pd.DataFrame({"n": n.to_numpy()}, index=counts.index)
    total = out["n"].to_numpy(float)
    for i, label in enumerate(labels):
        k = counts[f"k{i}"].to_numpy(float)
        lo, hi = wilson(k, total)
        out[label] = k / total
        out[f"{label}_lo"] = lo
        out[f"{label}_hi"] = hi
    return out


def sensitivity(
    suite_or_experiment: str,
    tracking_uri: str | None = None,
    scales: Sequence[float] = (0.1, 10.0),
) -> pd.DataFrame:
    """How the outcome rates move when each outcome threshold moves: every trial judged again
    from its recorded trace (no rerun) with one threshold at a time scaled by each of
    ``scales``. One row for the baseline, then one per (threshold, scale); columns
    ``threshold``, ``scale``, ``value``, ``n``, one rate per outcome and ``censored``, and
    ``changed`` (share of trials whose label moved). The report's Threshold sensitivity section
    shows the same table (``gradatlas.reports.sensitivity.threshold_sensitivity``).

        sensitivity("quickstart")[["threshold", "scale", "exploded", "vanished", "changed"]]
    """
    from gradatlas.reports.sensitivity import threshold_sensitivity

    return threshold_sensitivity(_load(suite_or_experiment, tracking_uri), scales)


def export(
    suite_or_experiment: str,
    fmt: str = "csv",
    out: str | Path | None = None,
    tracking_uri: str | None = None,
) -> tuple[Path, int]:
    """Write ``results``' table as CSV or Parquet; return (path, rows).

    ``out`` defaults to ``runs/exports/<experiment>.<csv|parquet>`` under the current directory.
    Everything is checked before anything is written (a missing Parquet engine, an unknown
    name: ``UserInputError``), and the file is written whole then renamed into place.
    """
    from gradatlas.reports.build import safe_name

    if fmt not in FORMATS:
        raise UserInputError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet" and not any(importlib.util.find_spec(e) for e in PARQUET_ENGINES):
        raise UserInputError(
            "--format parquet needs the pyarrow package (pip install pyarrow), which is not "
            "installed; --format csv needs nothing"
        )
    exp = _load(suite_or_experiment, tracking_uri)
    df = results_frame(exp)
    path = (
        Path(out)
        if out is not None
        else Path.cwd() / "runs" / "exports" / f"{safe_name(exp.name)}{FORMATS[fmt]}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)  # categoricals stay categoricals, in their order
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.resolve(), len(df)


def _load(target: str, tracking_uri: str | None) -> Experiment:
    """The experiment ``target`` names, read as the report reads it (never creating a store)."""
    from gradatlas.reports.load import experiment_name, load_experiment
    from gradatlas.store import open_store

    store = open_store(tracking_uri, create=False)
    return load_experiment(experiment_name(target, store), store)
