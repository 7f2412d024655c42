"""The Overview and Methods sections: what was run, where, with what, and by which rules it was
judged.

Everything here comes from the records (trial configs, ``environment.json`` and ``suite.yaml`` of
the sweep runs), so the provenance printed is the provenance of the numbers, even when the suite
file has since changed.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gradatlas.identity import canonical_json
from gradatlas.record import ui_runs_path
from gradatlas.reports.context import ReportContext
from gradatlas.reports.document import Block, Column, KeyValues, Para, Pre, Table
from gradatlas.reports.document import Cell as C
from gradatlas.reports.fmt import num, plural
from gradatlas.reports.load import Experiment

MISSING = object()
RULES_MODULE = "gradatlas.runners.outcome"  # its docstring states the outcome rules


def common(exp: Experiment, *path: str) -> Any:
    """The value at ``path`` in every trial's config if they all agree, else ``MISSING``."""
    seen = set()
    value: Any = MISSING
    for record in exp.records.values():
        node: Any = record.get("config")
        for key in path:
            node = node.get(key, MISSING) if isinstance(node, dict) else MISSING
        if node is MISSING:
            continue
        seen.add(canonical_json(node))
        if len(seen) > 1:
            return MISSING
        value = node
    return value


def describe(value: Any) -> str:
    """``{name: adam, lr: 0.001}`` -> ``adam(lr=0.001)``; scalars as they are."""
    if value is MISSING:
        return "varies"
    if isinstance(value, dict):
        name = value.get("name")
        rest = ", ".join(f"{k}={describe(v)}" for k, v in value.items() if k != "name")
        return f"{name}({rest})" if name and rest else (name or f"({rest})")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def seeds_text(ctx: ReportContext) -> str:
    """Seeds per cell: one number, or a range when cells differ (an unfinished sweep)."""
    per_cell = ctx.cells["seeds"]
    lo, hi = int(per_cell.min()), int(per_cell.max())
    return f"{lo}" if lo == hi else f"{lo}–{hi} (cells differ)"


class Overview:
    """What was run, on what data and budget, where, and how to open it."""

    title = "Overview"

    def build(self, ctx: ReportContext) -> list[Block]:
        exp = ctx.exp
        blocks: list[Block] = []
        description = _description(exp)
        if description:
            blocks.append(Para(description))
        blocks.append(KeyValues(_overview_items(ctx)))
        return blocks


def _overview_items(ctx: ReportContext) -> list[tuple[str, str]]:
    exp, t = ctx.exp, ctx.exp.trials
    items = [
        ("Suite / experiment", f"{exp.name}"),
        ("Report built", ctx.built_at.strftime("%Y-%m-%d %H:%M UTC")),
        (
            "Trials",
            f"{len(t)} finished trials in {plural(len(ctx.cells), 'cell')}; "
            f"seeds per cell: {seeds_text(ctx)}",
        ),
        *([("Plan", ctx.plan.banner())] if ctx.plan is not None else []),
        *([("Steering", ctx.steering_text)] if ctx.steering_text else []),
        ("Re-runs", _set_aside_text(exp)),
        ("Trials ran", _span(t)),
        ("Factors", _factors_text(exp)),
        ("Dataset", _dataset_text(exp)),
        ("Model", _model_text(exp)),
        ("Budget", _budget_text(exp)),
        ("Optimizer", describe(common(exp, "optim"))),
        ("Instrumentation", describe(common(exp, "instrument"))),
    ]
    items += _environment_items(exp)
    items += _mlflow_items(exp)
    if exp.without_record:
        items.append(
            (
                "Incomplete records",
                f"{plural(exp.without_record, 'run')} had no readable "
                "trial.json; their outcomes count, but they have no curves or profiles",
            )
        )
    return items


def _description(exp: Experiment) -> str:
    for sweep in exp.sweeps:
        if sweep.resolved and sweep.resolved.get("description"):
            return " ".join(str(sweep.resolved["description"]).split())
    return ""


def _set_aside_text(exp: Experiment) -> str:
    if not exp.set_aside:
        return "none: every trial id has exactly one finished run"
    return (
        f"{plural(exp.set_aside, 'older finished run')} of trial ids that were run again "
        "set aside; the newest run of each trial id is used"
    )


def _span(t: Any) -> str:
    start, end = t["start_time"].min(), t["end_time"].max()
    fmt = "%Y-%m-%d %H:%M"
    if not start or start != start:
        return "unknown"
    a = datetime.fromtimestamp(start / 1000, UTC).strftime(fmt)
    b = datetime.fromtimestamp(end / 1000, UTC).strftime(fmt) if end == end and end else "?"
    return f"{a} to {b} UTC"


def _factors_text(exp: Experiment) -> str:
    if not exp.factors:
        return "none (a single cell)"
    return "; ".join(f"{f} ({len(exp.levels[f])}: {', '.join(exp.levels[f])})" for f in exp.factors)


def _dataset_text(exp: Experiment) -> str:
    ds = common(exp, "dataset")
    if ds is MISSING:  # a grid varies it: each trial's own, once each
        seen: dict[str, Any] = {}
        for record in exp.records.values():
            own = (record.get("config") or {}).get("dataset")
            if isinstance(own, dict):
                seen.setdefault(canonical_json(own), own)
        return "varies: " + "; ".join(describe(d) for d in seen.values()) if seen else "varies"
    text = describe(ds)
    first = next(iter(exp.records.values()))
    task, classes = first.get("task"), first.get("num_classes")
    if task:
        text += f"; {task}" + (f", {classes} classes" if classes else "")
    return text


def _model_text(exp: Experiment) -> str:
    """Every key of the resolved ``config["model"]``, in the record's order, each with its value
    where all trials agree and "varies" where they do not (a factor, or a changed suite)."""
    keys: dict[str, None] = {}
    for record in exp.records.values():
        model = (record.get("config") or {}).get("model")
        if isinstance(model, dict):
            keys.update(dict.fromkeys(model))
    if not keys:
        return "not recorded"
    return ", ".join(f"{key}={describe(common(exp, 'model', key))}" for key in keys)


def _budget_text(exp: Experiment) -> str:
    train = common(exp, "train")
    epochs, steps = common(exp, "train", "epochs"), common(exp, "train", "steps")
    batch = common(exp, "train", "batch_size")
    parts = []
    if isinstance(epochs, int) and epochs:
        parts.append(f"{epochs} epochs")
    elif isinstance(steps, int) and steps:
        parts.append(f"{steps} steps")
    elif train is MISSING:
        parts.append("varies")
    run = exp.trials["steps_run"].dropna()
    if len(run):
        parts.append(f"up to {num(run.max())} optimizer steps")
    if batch is not MISSING:
        parts.append(f"batch {describe(batch)}")
    for key in ("schedule", "grad_clip", "precision"):
        value = common(exp, "train", key)
        if value is not MISSING:
            parts.append(f"{key} {describe(value)}")
    return ", ".join(parts)


def _commit(env: dict[str, Any]) -> str:
    commit = env.get("git_commit")
    if isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{7,40}", commit):
        return commit
    return f"not recorded (got {commit!r})" if commit else "not recorded"


def _device(record: dict[str, Any]) -> str:
    """A trial's device, with the CPU and the instruction set of torch's kernels where the
    record names them: the same build rounds differently on another, so two sweeps on
    different CPUs may differ in borderline trials."""
    device = record.get("device") or "?"
    env = record.get("environment") or {}
    cpu, isa = env.get("cpu"), env.get("cpu_capability")
    if device == "cpu" and (cpu or isa):
        device = " · ".join(x for x in (device, cpu, isa and f"kernels {isa}") if x)
    return device


def _environment_items(exp: Experiment) -> list[tuple[str, str]]:
    envs = [(s, s.environment) for s in exp.sweeps if s.environment]
    devices = Counter(_device(r) for r in exp.records.values())
    device_text = "; ".join(f"{d} ({plural(n, 'trial')})" for d, n in devices.most_common())
    if not envs:
        return [
            ("Environment", "no environment.json found in the sweep runs"),
            ("Device", device_text),
        ]
    _, env = envs[0]
    pk = env.get("packages") or {}
    versions = ", ".join(f"{k} {v}" for k, v in pk.items() if v)
    items = [
        ("Environment", f"python {env.get('python', '?')}, {versions}"),
        (
            "Machine",
            f"{env.get('platform', '?')}, host {env.get('hostname', '?')}, "
            f"{env.get('cpu_count', '?')} CPUs" + (f" ({env['cpu']})" if env.get("cpu") else ""),
        ),
        ("Device", device_text),
        ("Git commit", _commit(env)),
    ]
    distinct = {_env_key(e) for _, e in envs}
    if len(distinct) > 1:
        items.append(
            (
                "Sweeps",
                f"{exp.sweep_count} sweep runs in {len(distinct)} different "
                "environments (newest shown above; see Methods)",
            )
        )
    else:
        items.append(("Sweeps", f"{plural(exp.sweep_count, 'sweep run')}, one environment"))
    return items


def _env_key(env: dict[str, Any]) -> str:
    keep = {k: env.get(k) for k in ("python", "hostname", "device", "git_commit", "packages")}
    return json.dumps(keep, sort_keys=True, default=str)


def _mlflow_items(exp: Experiment) -> list[tuple[str, str]]:
    uri = exp.tracking_uri
    return [
        ("MLflow", f"experiment '{exp.name}' (id {exp.experiment_id}) in {uri}"),
        (
            "Open in the UI",
            f"`mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000`"
            f", then browse to http://127.0.0.1:5000/{ui_runs_path(exp.experiment_id)} "
            "(or `make ui`)",
        ),
    ]


# -- methods -------------------------------------------------------------------------------------
class Methods:
    """The rules and thresholds that labelled the trials, how the statistics are computed, and
    the commands that reproduce the experiment."""

    title = "Methods"

    def build(self, ctx: ReportContext) -> list[Block]:
        blocks: list[Block] = [Para(ctx.steering_text)] if ctx.steering_text else []
        return blocks + _methods_blocks(ctx.exp)


def _methods_blocks(exp: Experiment) -> list[Block]:
    blocks: list[Block] = [
        Para(f"Outcome rules, verbatim from {RULES_MODULE} (the code that labelled every trial):"),
        Pre(outcome_rules()),
    ]
    blocks += _threshold_blocks(exp)
    blocks.append(
        Para(
            "Statistics: a cell's rate is the share of its seeds with that outcome, with a "
            "Wilson score 95% interval. Factor effects pool every trial at a level (all seeds "
            "and all levels of the other factors). Accuracies are means over trials with a "
            "Student-t 95% interval. Curves are the median and interquartile range at each "
            "step across the trials of one level and one outcome (trials with different "
            "outcomes never share a band), over the steps those trials reached (exploded "
            "trials stop at the explosion). Only FINISHED trial runs are counted; for a trial "
            "id with several, the newest is used."
        )
    )
    blocks.append(Para("Reproduce the whole experiment, then this report:"))
    blocks.append(Pre(_reproduce(exp)))
    yaml_text = next((s.suite_yaml for s in exp.sweeps if s.suite_yaml), None)
    if yaml_text:
        blocks.append(
            Para("The suite file as given to the newest sweep (archived in MLflow as suite.yaml):")
        )
        blocks.append(Pre(yaml_text.rstrip("\n")))
    envs = [s for s in exp.sweeps if s.environment]
    if len({_env_key(s.environment) for s in envs}) > 1:  # type: ignore[arg-type]
        blocks.append(_env_table(envs))
    return blocks


def outcome_rules() -> str:
    """The docstring of the module whose rules labelled the trials, read from its source rather
    than imported: the report stays independent of the runners (and of torch), while the rules it
    prints are still the code's own words, not a copy that could drift."""
    package, _, module = RULES_MODULE.rpartition(".")
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / f"{module}.py"
        if path.is_file():
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
            return (doc or "").strip("\n")
    return f"(not available: {RULES_MODULE} is not installed beside this report's code)"


def _threshold_blocks(exp: Experiment) -> list[Any]:
    sets: Counter[str] = Counter()
    for record in exp.records.values():
        th = (record.get("outcome") or {}).get("thresholds")
        if th:
            sets[json.dumps(th, sort_keys=False)] += 1
    if not sets:
        return [
            Para(
                "No thresholds were recorded with these trials (records without trial.json).",
                note=True,
            )
        ]
    blocks: list[Any] = []
    intro = (
        "Thresholds, verbatim from the trials' records (outcome.thresholds):"
        if len(sets) == 1
        else f"The trials were judged with {len(sets)} different threshold sets:"
    )
    blocks.append(Para(intro))
    for text, count in sets.most_common():
        th = json.loads(text)
        rows = [[C(k), C(repr(v) if isinstance(v, str) else json.dumps(v))] for k, v in th.items()]
        caption = "" if len(sets) == 1 else f"used by {plural(count, 'trial')}"
        blocks.append(
            Table(
                [Column("threshold", weight=1.5), Column("value", weight=1.0)],
                rows,
                caption=caption,
                name="thresholds",
            )
        )
    return blocks


def _reproduce(exp: Experiment) -> str:
    ref = exp.name
    builtin = _builtin_suite(exp.name)
    archived = next((s.suite_yaml for s in exp.sweeps if s.suite_yaml), None)
    lines = []
    if builtin is None or (archived is not None and builtin != archived):
        ref = f"{exp.name}.yaml"
        lines.append(f"# save the suite file below as {ref}, then:")
    uri = exp.tracking_uri
    lines.append(f"gradatlas run {ref}" + ("" if _is_default(uri) else f" --tracking-uri {uri}"))
    lines.append(f"gradatlas report {ref}" + ("" if _is_default(uri) else f" --tracking-uri {uri}"))
    return "\n".join(lines)


def _is_default(uri: str) -> bool:
    return uri.startswith("sqlite:///") and uri.endswith("runs/mlflow.db")


def _builtin_suite(name: str) -> str | None:
    """The text of the built-in suite of this name, found without importing the suite package
    (which imports torch: seconds, for a report that needs none of it)."""
    spec = importlib.util.find_spec("gradatlas.suites")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / f"{name}.yaml"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def _env_table(sweeps: list[Any]) -> Table:
    rows = []
    for s in sweeps:
        env = s.environment
        pk = env.get("packages") or {}
        rows.append(
            [
                C(s.start_time.strftime("%Y-%m-%d %H:%M") if s.start_time else "?"),
                C(str(env.get("hostname"))),
                C(str(env.get("device"))),
                C(f"torch {pk.get('torch')}, mlflow {pk.get('mlflow')}"),
                C(_commit(env)),
            ]
        )
    cols = [
        Column("sweep started"),
        Column("host"),
        Column("device"),
        Column("versions", weight=2),
        Column("commit", weight=1.5),
    ]
    return Table(
        cols, rows, caption="Environments of the sweep runs (newest first)", name="environments"
    )
