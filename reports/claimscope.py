"""The scope of a claim's verdict: on which data, which model, what training budget and how the
learning rates were set, read from the resolved suite a sweep recorded (``suite.resolved.json``).

A verdict holds for the trials it was measured on: "momentum is faster than SGD" tested on
MNIST-1D with width-32 MLPs, 24 epochs and learning rates tuned per optimizer says nothing yet
about CIFAR-10 at a fixed rate. ``claim_scope`` says that scope in one line and as data;
``verdict_rows`` gives each evaluated claim as one JSON-ready row (what ``gradatlas verdicts``
prints and attaches to the sweep run as ``verdicts.json``).

Pure: no MLflow and no files. The claim's trials are the matched ones (where, then a or b with
their seed selection, then only strata with trials in both groups, as the audit compares them);
without ``trials`` they are the plan's, expanded again from the resolved suite.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from gradatlas.datasets import dataset_title, default_seed
from gradatlas.errors import UserInputError
from gradatlas.models import family_title
from gradatlas.record import FACTOR_PREFIX
from gradatlas.suites.claims import SEEDS, filter_labels, split_arm

VERDICT_FIELDS = (
    "id",
    "verdict",
    "metric",
    "effect",
    "ci_low",
    "ci_high",
    "p_adjusted",
    "n_seeds",
    "mde",
    "homogeneity_p",
    "scope",
    "control",
)
# The plan's trials as a frame: the config values a scope reads, beside the factor labels.
_CONFIG = {
    "dataset": ("dataset", "name"),
    "data_seed": ("dataset", "seed"),
    "family": ("model", "family"),
    "width": ("model", "width"),
    "depth": ("model", "depth"),
    "optimizer": ("optim", "name"),
    "lr": ("optim", "lr"),
    "epochs": ("train", "epochs"),
    "steps": ("train", "steps"),
    "batch_size": ("train", "batch_size"),
}


# -- the plan -------------------------------------------------------------------------------------
_PLANS: dict[str, pd.DataFrame | None] = {}  # the last plan expanded (claims share one suite)


def plan_frame(resolved_suite: Mapping[str, Any]) -> pd.DataFrame | None:
    """One row per planned trial of the resolved suite: ``seed``, ``factor.<name>`` labels and
    the config values of ``_CONFIG``; None when the suite no longer expands (an older version
    wrote it, a registry entry is gone). The last suite's plan is kept (read it, don't change
    it): every claim of an audit asks for the same one."""
    key = json.dumps(resolved_suite, sort_keys=True, default=str)
    if key not in _PLANS:
        _PLANS.clear()
        _PLANS[key] = _expand(resolved_suite)
    return _PLANS[key]


def _expand(resolved_suite: Mapping[str, Any]) -> pd.DataFrame | None:
    from gradatlas.suites import expand_suite

    try:
        suite = expand_suite(dict(resolved_suite), source="suite.resolved.json")
    except (UserInputError, TypeError, ValueError, KeyError):
        return None
    rows = []
    for t in suite.trials:
        row: dict[str, Any] = {"seed": t.seed}
        row.update({FACTOR_PREFIX + f: level for f, level in t.factors.items()})
        row.update({k: (t.config.get(a) or {}).get(b) for k, (a, b) in _CONFIG.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _factors(frame: pd.DataFrame) -> list[str]:
    return [c[len(FACTOR_PREFIX) :] for c in frame.columns if c.startswith(FACTOR_PREFIX)]


def matched_trials(frame: pd.DataFrame, claim: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of ``frame`` (trials or plan: ``seed`` and ``factor.*`` columns) that a claim
    compares: within ``where``, in ``a`` or ``b`` (factor levels and seeds), in a stratum (the
    other factors' levels) that has rows of both. A ``group`` column says ``a`` or ``b``. Empty
    when a filter names a factor or level the frame lacks, or a bad seed selection."""
    factors = _factors(frame)
    levels = {f: list(dict.fromkeys(frame[FACTOR_PREFIX + f].astype(str))) for f in factors}
    try:
        a_filters, a_seeds = split_arm(claim.get("a"))
        b_filters, b_seeds = split_arm(claim.get("b"))
    except UserInputError:
        return frame.iloc[:0].assign(group=pd.Series(dtype=str))
    where = {k: v for k, v in (claim.get("where") or {}).items() if k != SEEDS}
    masks = []
    for filters, selector in ((where, None), (a_filters, a_seeds), (b_filters, b_seeds)):
        if any(f not in levels for f in filters):
            return frame.iloc[:0].assign(group=pd.Series(dtype=str))
        labels, errors = filter_labels(filters, levels, in_plan=False)
        if errors:
            return frame.iloc[:0].assign(group=pd.Series(dtype=str))
        mask = pd.Series(True, index=frame.index)
        for f, allowed in labels.items():
            mask &= frame[FACTOR_PREFIX + f].astype(str).isin(allowed)
        if selector is not None:
            mask &= frame["seed"].map(selector).astype(bool)
        masks.append(mask)
    inside, in_a, in_b = masks
    in_a, in_b = inside & in_a, inside & in_b & ~in_a
    chosen = frame[in_a | in_b].assign(group=["a" if x else "b" for x in in_a[in_a | in_b]])
    other = [FACTOR_PREFIX + f for f in factors if f not in a_filters and f not in b_filters]
    if not other:
        key = pd.Series("all", index=chosen.index)
    else:
        key = chosen[other].astype(str).agg("|".join, axis=1)
    both = set(key[chosen["group"] == "a"]) & set(key[chosen["group"] == "b"])
    return chosen[key.isin(both)]


# -- the scope ------------------------------------------------------------------------------------
def claim_scope(
    resolved_suite: Mapping[str, Any],
    claim: Mapping[str, Any],
    trials: pd.DataFrame | None = None,
    *,
    plan: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The scope of one claim's verdict, as data and as one line (``text``)::

        {"dataset": {"name": "mnist1d", "title": "MNIST-1D", "seed": 42},
         "model": {"family": "mlp", "widths": [64], "depths": [10, 20, 30]},
         "budget": {"epochs": 24, "steps": None, "batch_sizes": [128]},
         "lr": {"setting": "fixed", "values": [{"optimizer": "momentum", "lr": 0.02}]},
         "cells": 6, "seeds": [0, 1, ...],
         "text": "MNIST-1D (seed 42), MLP width 64, 24 epochs x batch 128, lr fixed at 0.02
                  (momentum)"}

    ``lr.setting`` is ``fixed``, ``tuned per arm`` (every matched cell tuned, and the studies are
    per factor that tells a from b: each arm at its own best), ``tuned`` (one study shared by
    both arms) or ``partly tuned``; a tuned scope carries ``lr.tuning``: the tuned params and
    ranges, trials per study, steps per trial, objective, ``per`` and ``where``. ``trials``: the
    experiment's trials (``Experiment.trials``); without them the plan's. ``plan``: the result of
    ``plan_frame`` when the caller has it already (else it is expanded here)."""
    resolved = dict(resolved_suite)
    if plan is None:
        plan = plan_frame(resolved)
    frame = trials if trials is not None else plan
    matched = matched_trials(frame, claim) if frame is not None and len(frame) else None
    configs = _configs(matched, plan)
    dataset = _dataset(resolved, configs)
    model = _model(resolved, configs, matched)
    budget = _budget(resolved, configs)
    lr = _lr(resolved, claim, configs, matched)
    scope: dict[str, Any] = {
        "dataset": dataset,
        "model": model,
        "budget": budget,
        "lr": lr,
        "cells": _count_cells(matched),
        "seeds": _seeds(matched),
    }
    scope["text"] = scope_text(scope)
    return scope


def _configs(matched: pd.DataFrame | None, plan: pd.DataFrame | None) -> pd.DataFrame | None:
    """The plan's config values of the matched cells (one row per matched trial's cell)."""
    if matched is None or plan is None or not len(matched):
        return None
    if all(c in matched.columns for c in _CONFIG):  # the plan itself
        return matched
    on = [c for c in matched.columns if c.startswith(FACTOR_PREFIX) and c in plan.columns]
    if not on:
        return None
    cells = plan.drop(columns=["seed"]).drop_duplicates(subset=on)
    keys = matched[on].astype(str).drop_duplicates()
    joined = keys.merge(cells.astype({c: str for c in on}), on=on, how="inner")
    return joined if len(joined) else None


def _unique(configs: pd.DataFrame | None, column: str) -> list[Any]:
    if configs is None or column not in configs:
        return []
    values = [_plain(v) for v in configs[column].dropna().tolist()]
    out = list(dict.fromkeys(values))
    try:
        return sorted(out)
    except TypeError:
        return out


def _dataset(resolved: Mapping[str, Any], configs: pd.DataFrame | None) -> dict[str, Any]:
    """The matched trials' dataset with its data seed, read from each trial's own config (a
    grid may vary the dataset). Trials on several datasets give ``name`` as a list, ``seed``
    None, ``datasets`` one entry each, and a ``title`` that names each with its seed."""
    ds = resolved.get("dataset") or {}
    names = _unique(configs, "dataset") or [ds.get("name", "?")]
    per = []
    for name in names:
        mine = configs if len(names) == 1 else configs[configs["dataset"] == name]  # type: ignore[index]
        seeds = _unique(mine, "data_seed")
        seed = seeds[0] if len(seeds) == 1 else (seeds or ds.get("seed"))
        if seed == "default":
            with contextlib.suppress(KeyError, UserInputError, ValueError):
                seed = default_seed(str(name))
        per.append({"name": name, "title": dataset_title(str(name)), "seed": seed})
    if len(per) == 1:
        return per[0]
    title = " + ".join(f"{d['title']} (seed {d['seed']})" for d in per)
    return {"name": names, "title": title, "seed": None, "datasets": per}


def _model(
    resolved: Mapping[str, Any], configs: pd.DataFrame | None, matched: pd.DataFrame | None
) -> dict[str, Any]:
    written = resolved.get("model") or {}
    family = (_unique(configs, "family") or [written.get("family", "?")])[0]
    widths = _unique(configs, "width")
    if not widths and matched is not None and FACTOR_PREFIX + "width" in matched:
        widths = sorted({_label_number(x) for x in matched[FACTOR_PREFIX + "width"]}, key=str)
    if not widths and written.get("width") is not None:
        widths = [written["width"]]
    return {
        "family": family,
        "title": family_title(str(family)),
        "widths": widths,
        "depths": _unique(configs, "depth"),
    }


def _label_number(label: Any) -> Any:
    """``w64`` -> 64 (a factor label back to its number), else the label."""
    text = str(label).lstrip("abcdefghijklmnopqrstuvwxyz")
    try:
        number = float(text)
    except ValueError:
        return label
    return int(number) if number.is_integer() else number


def _budget(resolved: Mapping[str, Any], configs: pd.DataFrame | None) -> dict[str, Any]:
    train = resolved.get("train") or {}
    epochs = _unique(configs, "epochs") or ([train["epochs"]] if train.get("epochs") else [])
    steps = _unique(configs, "steps") or ([train["steps"]] if train.get("steps") else [])
    batch = _unique(configs, "batch_size") or (
        [train["batch_size"]] if train.get("batch_size") else []
    )
    return {
        "epochs": epochs[0] if len(epochs) == 1 else (epochs or None),
        "steps": steps[0] if len(steps) == 1 else (steps or None),
        "batch_sizes": batch,
    }


def _lr(
    resolved: Mapping[str, Any],
    claim: Mapping[str, Any],
    configs: pd.DataFrame | None,
    matched: pd.DataFrame | None,
) -> dict[str, Any]:
    fixed = []
    if configs is not None and {"optimizer", "lr"} <= set(configs.columns):
        pairs = configs[["optimizer", "lr"]].drop_duplicates()
        fixed = [
            {"optimizer": str(o), "lr": _plain(v)}
            for o, v in sorted(pairs.itertuples(index=False), key=lambda p: (str(p[0]), p[1]))
        ]
    elif (resolved.get("train") or {}).get("lr") is not None:
        train = resolved["train"]
        fixed = [{"optimizer": str(train.get("optimizer", "?")), "lr": train["lr"]}]
    tune = resolved.get("tune")
    if not tune or matched is None or not len(matched):
        return {"setting": "fixed", "values": fixed}
    tuned = _tuned(tune, matched)
    if not tuned.any():
        return {"setting": "fixed", "values": fixed}
    arm_factors = set(split_arm(claim.get("a"))[0]) | set(split_arm(claim.get("b"))[0])
    per = list(tune.get("per") or [])
    if not tuned.all():
        setting = "partly tuned"
    elif arm_factors and arm_factors <= set(per):
        setting = "tuned per arm"
    else:
        setting = "tuned"  # both arms share a study (an A/A control, or per misses a factor)
    return {
        "setting": setting,
        "values": fixed,  # the planned values, before tuning replaced them
        "tuning": {
            "params": dict(tune.get("params") or {}),
            "trials_per_study": tune.get("trials"),
            "steps_per_trial": tune.get("steps"),
            "objective": tune.get("objective"),
            "per": per,
            "where": dict(tune.get("where") or {}),
            "seeds": list(tune.get("seeds") or []),
            "cells_tuned": int(_cells_of(matched[tuned.to_numpy()])),
        },
    }


def _tuned(tune: Mapping[str, Any], matched: pd.DataFrame) -> pd.Series:
    """Which matched rows are in a tuned cell (``tune.where``; {} tunes every cell)."""
    where = tune.get("where") or {}
    factors = _factors(matched)
    if any(f not in factors for f in where):
        return pd.Series(False, index=matched.index)
    levels = {f: list(dict.fromkeys(matched[FACTOR_PREFIX + f].astype(str))) for f in factors}
    labels, errors = filter_labels(where, levels, in_plan=False)
    if errors:
        return pd.Series(False, index=matched.index)
    mask = pd.Series(True, index=matched.index)
    for f, allowed in labels.items():
        mask &= matched[FACTOR_PREFIX + f].astype(str).isin(allowed)
    return mask


def _cells_of(frame: pd.DataFrame) -> int:
    cols = [c for c in frame.columns if c.startswith(FACTOR_PREFIX)]
    return len(frame[cols].drop_duplicates()) if cols else int(bool(len(frame)))


def _count_cells(matched: pd.DataFrame | None) -> int:
    return 0 if matched is None else _cells_of(matched)


def _seeds(matched: pd.DataFrame | None) -> list[int]:
    if matched is None or "seed" not in matched:
        return []
    return sorted({int(s) for s in matched["seed"].dropna()})


# -- the line -------------------------------------------------------------------------------------
def _g(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def scope_text(scope: Mapping[str, Any]) -> str:
    """``MNIST-1D (seed 42), MLP width 64, 24 epochs x batch 128, lr fixed at 0.02
    (momentum)``."""
    ds, model, budget, lr = scope["dataset"], scope["model"], scope["budget"], scope["lr"]
    seed = ds.get("seed")
    data = ds["title"] + (f" (seed {seed})" if seed is not None and seed != [] else "")
    widths = model.get("widths") or []
    net = model["title"] + (
        f" width{'s' if len(widths) > 1 else ''} {', '.join(map(_g, widths))}" if widths else ""
    )
    if budget.get("epochs"):
        length = f"{_joined(budget['epochs'])} epochs"
    elif budget.get("steps"):
        length = f"{_joined(budget['steps'])} steps"
    else:
        length = "default budget"
    if budget.get("batch_sizes"):
        length += f" x batch {'/'.join(map(_g, budget['batch_sizes']))}"
    return f"{data}, {net}, {length}, {lr_text(lr)}"


def _joined(x: Any) -> str:
    return "/".join(map(_g, x)) if isinstance(x, list) else _g(x)


def lr_text(lr: Mapping[str, Any]) -> str:
    """``lr fixed at 0.02 (momentum)``, ``lr tuned per arm (10 trials x 300 steps per study on
    val_acc, per optimizer, activation, depth)``."""
    by_optimizer: dict[str, list[str]] = {}
    for v in lr.get("values") or []:
        by_optimizer.setdefault(v["optimizer"], []).append(_g(v["lr"]))
    fixed = "; ".join(f"{', '.join(lrs)} ({o})" for o, lrs in by_optimizer.items())
    if lr.get("setting") == "fixed":
        return f"lr fixed at {fixed}" if fixed else "lr fixed"
    t = lr.get("tuning") or {}
    params = t.get("params") or {"lr": {}}
    label = ", ".join(params)
    ranges = [
        f"{name} in [{_g(r['low'])}, {_g(r['high'])}]"
        for name, r in params.items()
        if isinstance(r, Mapping) and "low" in r and "high" in r
    ]
    steps = (
        f" x {t['steps_per_trial']} steps"
        if t.get("steps_per_trial")
        else " at the claims' own budget"
    )
    per = f", per {', '.join(t['per'])}" if t.get("per") else ""
    budget = f"{t.get('trials_per_study')} trials{steps} per study on {t.get('objective')}{per}"
    text = f"{label} {lr['setting']} ({'; '.join([*ranges, budget])})"
    if lr.get("setting") == "partly tuned" and fixed:
        text += f"; else fixed at {fixed}"
    return text


# -- verdict rows ---------------------------------------------------------------------------------
def _plain(x: Any) -> Any:
    """A JSON-ready value: NaN and infinities -> None, numpy scalars -> Python ones."""
    if hasattr(x, "item") and not isinstance(x, (list, dict, str)):
        with contextlib.suppress(TypeError, ValueError):
            x = x.item()
    if x is pd.NA or x is None:
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def json_ready(x: Any) -> Any:
    """``x`` with every NaN as None and numpy values as Python ones, recursively."""
    if isinstance(x, Mapping):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [json_ready(v) for v in x]
    return _plain(x)


def _newest_resolved(exp: Any) -> dict[str, Any]:
    for sweep in getattr(exp, "sweeps", None) or []:
        if getattr(sweep, "resolved", None) is not None:
            return dict(sweep.resolved)
    return {}


def verdict_rows(results: Sequence[Any], exp: Any) -> list[dict[str, Any]]:
    """One JSON-ready dict per evaluated claim (a ``ClaimResult``; attributes read with
    defaults, so older and newer results both work): ``VERDICT_FIELDS`` (``ci_low``/``ci_high``
    from ``lo``/``hi``; ``n_seeds`` falls back to ``pairs``; ``control`` to the claim's own
    flag; ``scope`` the scope's one line) and ``scope_detail``, the scope as data. NaN is
    None."""
    resolved = _newest_resolved(exp)
    claims = {str(c.get("id")): c for c in resolved.get("claims") or [] if isinstance(c, Mapping)}
    plan = (
        plan_frame(resolved)
        if resolved and not all(getattr(r, "scope", "") for r in results)
        else None
    )
    trials = getattr(exp, "trials", None)
    rows = []
    for r in results:
        cid = str(getattr(r, "id", "?"))
        claim = claims.get(cid, {})
        if getattr(r, "scope", None):  # the evaluation measured it already
            scope = {**dict(getattr(r, "scope_detail", None) or {}), "text": str(r.scope)}
        elif resolved and claim:
            scope = claim_scope(resolved, claim, trials, plan=plan)
        else:
            scope = {"text": ""}
        n_seeds = getattr(r, "n_seeds", None)
        if n_seeds is None:
            n_seeds = getattr(r, "pairs", None)
        robust = getattr(r, "robustness", None)
        row = {
            "id": cid,
            "dataset": str(getattr(r, "dataset", "") or "all"),
            "verdict": str(getattr(r, "verdict", "no data")),
            "metric": str(getattr(r, "metric", claim.get("metric", ""))),
            "effect": getattr(r, "effect", math.nan),
            "ci_low": getattr(r, "lo", math.nan),
            "ci_high": getattr(r, "hi", math.nan),
            "p_adjusted": getattr(r, "p_adjusted", math.nan),
            "n_seeds": n_seeds,
            "mde": getattr(r, "mde", math.nan),
            "homogeneity_p": getattr(r, "homogeneity_p", math.nan),
            "scope": scope.get("text", ""),
            "control": bool(getattr(r, "control", claim.get("control", False))),
            # beyond the contract's fields: what a reader needs to check a verdict
            "p": getattr(r, "p", math.nan),
            "homogeneity_p_adjusted": getattr(r, "homogeneity_p_adjusted", math.nan),
            "underpowered": bool(getattr(r, "underpowered", False)),
            "design": str(getattr(r, "design", "")),
            "strata": getattr(r, "strata", None),
            "holds_in": list(getattr(r, "holds_in", []) or []),
            "reversed_in": list(getattr(r, "reversed_in", []) or []),
            "failed_trials": getattr(r, "missing", 0),
            "complete_case": getattr(r, "complete_case", None),
            "reason": str(getattr(r, "reason", "")),
            "seeds_needed": getattr(r, "seeds_needed", math.nan),
            # the claim re-judged at each tuned arm's second-best value (None: not tuned)
            "robustness": None
            if robust is None
            else {
                "verdict": robust.verdict,
                "effect": robust.effect,
                "ci_low": robust.lo,
                "ci_high": robust.hi,
                "p_adjusted": robust.p_adjusted,
                "n_seeds": robust.n_seeds,
            },
            "scope_detail": {k: v for k, v in scope.items() if k != "text"},
        }
        rows.append(json_ready(row))
    return rows


__all__ = [
    "VERDICT_FIELDS",
    "claim_scope",
    "json_ready",
    "lr_text",
    "matched_trials",
    "plan_frame",
    "scope_text",
    "verdict_rows",
]
