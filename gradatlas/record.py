"""The record contract: what gradatlas writes to its store and what every reader expects.

One neutral module (no torch, no MLflow import) that the store (``gradatlas.store``) writes
through and the reports, the synthetic benchmark store and any future worker read through. The
prose version of the same contract is ``docs/record.md``; change both together, and only
additively: readers must keep loading records written by older versions (``schema`` says which).

What lives here: the run kinds, statuses and outcome labels (string enums); the tag keys and
artifact names; the one rule that turns an interrupted trial's verdict into ``killed``;
``TrialRecord`` (the ``trial.json`` artifact, with a reader that accepts every older variant) and
the tags, params and metrics derived from it; ``SweepRecord`` (the sweep run's tags).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from gradatlas.identity import flatten

# Version of the trial.json layout this code writes. 1: the first release; readers accept any value
# (0 marks a record rebuilt from tags and metrics because its trial.json was missing).
SCHEMA = 1


# -- what a run is, how it stands, and what became of its trial ----------------------------------
# String enums: their values are the strings stored since the first release (tags, statuses,
# labels in trial.json), so a member compares equal to what a reader finds in any store.
class RunKind(StrEnum):
    """A run's ``gradatlas.kind`` tag."""

    TRIAL = "trial"  # one trial of a suite's plan (what the reports count)
    SWEEP = "sweep"  # one ``gradatlas run`` invocation: the suite, environment, driver tags
    TUNING = "tuning"  # one training run of a tuning study (never in the outcome statistics)
    STUDY = "study"  # one Optuna study of a tuned suite: its summary and best values


class RunStatus(StrEnum):
    """A run's status, as MLflow names them."""

    RUNNING = "RUNNING"  # being written, or left so by a driver that died
    FINISHED = "FINISHED"  # a trial with a verdict; a sweep that ran to its end
    FAILED = "FAILED"  # a trial that raised (its error is recorded)
    KILLED = "KILLED"  # interrupted or closed after its driver died: rerun on resume


class OutcomeLabel(StrEnum):
    """A trial's ``gradatlas.outcome``: the verdicts of the outcome rules
    (``gradatlas.runners.outcome``), in the order reports show them (what trained, what did
    not learn, the gradient's failures, then the loss's), then the labels that are no verdict."""

    CONVERGED = "converged"
    UNCONVERGED = "unconverged"
    STALLED = "stalled"
    VANISHED = "vanished"
    DEAD = "dead"
    DIVERGED = "diverged"
    EXPLODED = "exploded"
    PROBE = "probe"  # a probe-only trial (train.steps 0): init profiles, no training
    RUNNING = "running"  # a live trial run still training (runners/live.py)
    KILLED = "killed"  # interrupted: rerun on resume
    FAILED = "failed"  # raised: run status FAILED, error recorded
    PRUNED = "pruned"  # tuning runs only: stopped early by the pruner
    PENDING = "pending"  # tables of a plan only: a planned trial with no run yet


# -- run tags ------------------------------------------------------------------------------------
KIND = "gradatlas.kind"  # a RunKind
TRIAL_ID = "gradatlas.trial_id"
CELL_ID = "gradatlas.cell_id"
OUTCOME = "gradatlas.outcome"
OUTCOME_REASON = "gradatlas.outcome_reason"
CELL = "gradatlas.cell"
SUITE = "gradatlas.suite"  # also the experiment's tag
SEED = "gradatlas.seed"
DEVICE = "gradatlas.device"
BATCH_SEEDS = "gradatlas.batch_seeds"  # trial runs: seeds trained together with it (1: alone)
PLANNED_TRIALS = "gradatlas.planned_trials"  # sweep runs: trials in the suite's plan
TODO_TRIALS = "gradatlas.todo_trials"  # sweep runs: trials this invocation set out to run
OVERRIDES = "gradatlas.overrides"  # sweep runs: the --set overrides, as a command line
DRIVER_HOST = "gradatlas.driver.host"  # sweep runs: host of the driver process writing the sweep
DRIVER_PID = "gradatlas.driver.pid"  # sweep runs: that process's id on its host
DRIVER_HEARTBEAT = "gradatlas.driver.heartbeat"  # sweep runs: its last sign of life, unix seconds
TORCH_THREADS = "gradatlas.torch_threads"  # trial runs: torch intra-op threads it trained with
PARENT_RUN = "mlflow.parentRunId"
# Trial runs: the sweep run that wrote them. Not ``mlflow.parentRunId``: MLflow's UI collapses
# child runs under their parent (no link can expand them) and a resume would split a suite's
# trials over two parents, so trial runs stand flat and name their sweep here. (Trial runs
# written before this tag nest under their sweep; readers take either.)
SWEEP_RUN = "gradatlas.sweep_run"
RUN_NOTE = "mlflow.note.content"  # trial runs: "outcome: reason", the run page's Description
# Experiment tags MLflow's UI reads: the kind opens the experiment in the training (runs) view,
# not the GenAI one (MLflow 3 guesses GenAI for an experiment without it); the note is the
# experiment's description page.
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
EXPERIMENT_NOTE = "mlflow.note.content"


def ui_runs_path(experiment_id: str, view: str | None = "gradatlas-trials") -> str:
    """The MLflow UI's page for an experiment's runs, in its training view (MLflow 3.17 picks
    the view from the ``workflowType`` query, else the browser's last choice, GenAI by default),
    opened on one of gradatlas's saved views (``gradatlas.ui_views``; None: the UI's own)."""
    shared = f"&viewStateShareKey={view}" if view else ""
    return f"#/experiments/{experiment_id}/runs?workflowType=machine_learning{shared}"


def sweep_of(tags: Mapping[str, str]) -> str | None:
    """The sweep run a trial run belongs to (its tag, or the parent of an older record)."""
    return tags.get(SWEEP_RUN) or tags.get(PARENT_RUN) or None


KIND_TRIAL, KIND_SWEEP = RunKind.TRIAL, RunKind.SWEEP
MAX_REASON_TAG = 5000  # characters of the outcome reason kept in its tag (trial.json has it all)

# -- params --------------------------------------------------------------------------------------
FACTOR_PREFIX = "factor."  # one ``factor.<name>`` param per grid factor: that trial's level label

# -- artifacts -----------------------------------------------------------------------------------
TRIAL_ARTIFACT = "trial.json"
SUITE_YAML_ARTIFACT = "suite.yaml"
SUITE_RESOLVED_ARTIFACT = "suite.resolved.json"
ENVIRONMENT_ARTIFACT = "environment.json"
FACTOR_LEVELS_ARTIFACT = "factor_levels.json"
OVERRIDES_ARTIFACT = "overrides.json"  # sweep runs started with --set: {"overrides": [...]}

# -- run statuses ---------------------------------------------------------------------------------
FINISHED, KILLED_STATUS, RUNNING_STATUS = RunStatus.FINISHED, RunStatus.KILLED, RunStatus.RUNNING

# -- outcomes ------------------------------------------------------------------------------------
# The verdicts of the outcome rules (gradatlas.runners.outcome), in the order reports show them;
# the rest of OutcomeLabel is no verdict.
OUTCOMES = (
    OutcomeLabel.CONVERGED,
    OutcomeLabel.UNCONVERGED,
    OutcomeLabel.STALLED,
    OutcomeLabel.VANISHED,
    OutcomeLabel.DEAD,
    OutcomeLabel.DIVERGED,
    OutcomeLabel.EXPLODED,
)
PROBE = OutcomeLabel.PROBE
RUNNING_OUTCOME = OutcomeLabel.RUNNING
KILLED = OutcomeLabel.KILLED
FAILED_OUTCOME = OutcomeLabel.FAILED
ERROR = "gradatlas.error"  # trial runs that raised: "ValueError: ..." (one line)
ERROR_ARTIFACT = "error.txt"  # trial runs that raised: the traceback
OUTCOME_ORDER = (*OUTCOMES, PROBE, KILLED)

# -- tuning (gradatlas.runners.tuning) -----------------------------------------------------------
# Tuning runs are trial runs of kind ``tuning``: the same tags, params, metrics and trial.json as
# a trial run, plus the tags below, nested under their study's run (kind ``study``, one per group
# of cells), which nests under the sweep run. Every trial reader filters kind ``trial``, so
# tuning runs never enter the outcome statistics.
KIND_TUNING, KIND_STUDY = RunKind.TUNING, RunKind.STUDY
STUDY = "gradatlas.study"  # study and tuning runs: the Optuna study name, "<suite>/<group>"
TUNING_GROUP = "gradatlas.tuning.group"  # study and tuning runs: the group label ("all": one)
TUNING_GROUP_LEVELS = "gradatlas.tuning.group_levels"  # JSON: per-factor -> level label
TUNING_PARAMS = "gradatlas.tuning.params"  # tuning runs: JSON of the values it trained at
TUNING_NUMBER = "gradatlas.tuning.number"  # tuning runs: the Optuna trial number
TUNING_PURPOSE = "gradatlas.tuning.purpose"  # tuning runs: "study" | "max_stable_lr"
TUNING_STOPPED = "gradatlas.tuning.stopped_at"  # tuning runs a pruner stopped: the eval step
TUNING_BEST = "gradatlas.tuning.best"  # study runs: JSON of the best values found
TUNING_COMPLETE = "gradatlas.tuning.complete"  # study runs: "true" once the study is done
TUNING_STORAGE = "gradatlas.tuning.storage"  # study runs: the Optuna storage (no password)
PURPOSE_STUDY, PURPOSE_MAX_STABLE_LR = "study", "max_stable_lr"
# Study and tuning runs of a re-tune at the suite's own budget (``tune.horizon_check``): study
# ``<suite>/<group>@full``, its study run tagged with this purpose too.
PURPOSE_HORIZON = "horizon"
TUNING_SECOND = "gradatlas.tuning.second"  # study runs: JSON of the second-best values, or null
# Trial runs of a tuned cell: "1" at its study's best values, "2" at the second-best
# (``tune.second_best``); untuned cells have none. Reports: the ``tune_rank`` column.
TUNING_RANK = "gradatlas.tuning.rank"
PRUNED = OutcomeLabel.PRUNED
TUNING_ARTIFACT = "tuning.json"  # study runs: the study's summary (docs/record.md)


def final_label(outcome_label: str, interrupted: bool) -> str:
    """The outcome a trial is recorded with: its verdict, or ``killed`` when the user interrupted
    it (a verdict on a partial run would count as a result; ``killed`` is rerun on resume)."""
    return KILLED if interrupted else outcome_label


# -- the trial record ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordedOutcome:
    """``trial.json``'s ``outcome``: the label (a verdict or ``killed``), the rule's reason, and
    the thresholds it was judged by (the suite's resolved ``outcomes`` block)."""

    label: str = ""
    reason: str = ""
    thresholds: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "reason": self.reason, "thresholds": self.thresholds}

    @classmethod
    def from_json(cls, data: Any) -> RecordedOutcome:
        if isinstance(data, str):  # a bare label
            return cls(label=data)
        if not isinstance(data, Mapping):
            return cls()
        return cls(
            label=_str(data.get("label")),
            reason=_str(data.get("reason")),
            thresholds=_dict(data.get("thresholds")),
        )


@dataclass(frozen=True)
class TrialRecord:
    """The ``trial.json`` artifact: everything reports need about one trial, in one file.

    Fields in the order they are written (docs/record.md). ``config`` is the resolved nested
    config (the trial's identity), ``factors`` factor -> level label, ``summary`` the summary
    metrics (None where not finite), ``curves`` and ``profiles`` the nested dicts documented in
    docs/record.md, kept as plain data. Frozen at the top level; the dicts are the writer's.
    """

    schema: int = SCHEMA
    trial_id: str = ""
    cell_id: str = ""
    cell: str = ""
    seed: int | None = None
    suite: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    factors: dict[str, str] = field(default_factory=dict)
    outcome: RecordedOutcome = field(default_factory=RecordedOutcome)
    summary: dict[str, float | None] = field(default_factory=dict)
    task: str | None = None
    num_classes: int | None = None
    device: str | None = None
    curves: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    finished_at: str | None = None
    # Where it trained, as the worker saw it (host, python, platform, package versions, device
    # name): ``gradatlas repro`` compares it; records before it have none.
    environment: dict[str, Any] = field(default_factory=dict)
    # The trial ids trained together with this one as one stacked model (itself included, in
    # member order); empty when it trained alone or the record predates it.
    batch_members: list[str] = field(default_factory=list)
    # What the outcome rules read, at full resolution (``runners.outcome.trace_to_json``: per-step
    # loss and gradient norms raw and as applied, evaluations, layer records), so a report can
    # judge the trial again under other thresholds; empty in records written before it.
    trace: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The MLflow run status that goes with the label: only a verdict is FINISHED."""
        return KILLED_STATUS if self.outcome.label == KILLED else FINISHED

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data, keys in the written order (the dicts are not copied)."""
        return {
            "schema": self.schema,
            "trial_id": self.trial_id,
            "cell_id": self.cell_id,
            "cell": self.cell,
            "seed": self.seed,
            "suite": self.suite,
            "config": self.config,
            "factors": self.factors,
            "outcome": self.outcome.to_dict(),
            "summary": self.summary,
            "task": self.task,
            "num_classes": self.num_classes,
            "device": self.device,
            "curves": self.curves,
            "profiles": self.profiles,
            "timing": self.timing,
            "finished_at": self.finished_at,
            "environment": self.environment,
            "batch_members": self.batch_members,
            "trace": self.trace,
        }

    def to_json(self) -> str:
        """The ``trial.json`` text: strict JSON, non-finite numbers written as ``null``. Most
        records hold none, and copying the whole record to replace them was a third of this
        call's cost (it runs once per trial on the recorder's critical path): dump first, copy
        only when the strict dump refuses a NaN or an infinity."""
        data = self.to_dict()
        try:
            return json.dumps(data, allow_nan=False)
        except ValueError:
            return json.dumps(_finite_or_null(data), allow_nan=False)

    @classmethod
    def from_json(cls, data: Any) -> TrialRecord:
        """A record from parsed ``trial.json`` of any version (or any dict of its shape).

        Never raises: a missing key or a value of the wrong type takes the field's default, so a
        schema-0 record (rebuilt from tags), a hand-made dict or a truncated upload still loads.
        A record without ``schema`` reads as schema 0. Keys this version does not know are
        dropped.
        """
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError:
                data = None
        if not isinstance(data, Mapping):
            return cls(schema=0)
        return cls(
            schema=as_int(data.get("schema")) or 0,
            trial_id=_str(data.get("trial_id")),
            cell_id=_str(data.get("cell_id")),
            cell=_str(data.get("cell")),
            seed=as_int(data.get("seed")),
            suite=_str(data.get("suite")),
            config=_dict(data.get("config")),
            factors={str(k): _str(v) for k, v in _dict(data.get("factors")).items()},
            outcome=RecordedOutcome.from_json(data.get("outcome")),
            summary=_dict(data.get("summary")),
            task=_opt_str(data.get("task")),
            num_classes=as_int(data.get("num_classes")),
            device=_opt_str(data.get("device")),
            curves=_dict(data.get("curves")),
            profiles=_dict(data.get("profiles")),
            timing=_dict(data.get("timing")),
            finished_at=_opt_str(data.get("finished_at")),
            environment=_dict(data.get("environment")),
            batch_members=[_str(m) for m in data.get("batch_members") or [] if isinstance(m, str)]
            if isinstance(data.get("batch_members"), list)
            else [],
            trace=_dict(data.get("trace")),
        )


def utc_now() -> str:
    """``finished_at``'s format: UTC, to the second, with its offset."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_from_run_data(
    tags: Mapping[str, str],
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    run_id: str,
) -> TrialRecord:
    """A record rebuilt from a run's tags, ``factor.*`` params and latest metric values, for a run
    whose ``trial.json`` is missing (an interrupted upload, a hand-made run): its outcome still
    counts, it just has no config, curves or profiles. Marked ``schema`` 0."""
    return TrialRecord(
        schema=0,
        trial_id=tags.get(TRIAL_ID) or run_id,
        cell_id=tags.get(CELL_ID, ""),
        cell=tags.get(CELL, ""),
        seed=as_int(tags.get(SEED)),
        suite=tags.get(SUITE, ""),
        factors={
            k[len(FACTOR_PREFIX) :]: v for k, v in params.items() if k.startswith(FACTOR_PREFIX)
        },
        outcome=RecordedOutcome(label=tags.get(OUTCOME, ""), reason=tags.get(OUTCOME_REASON, "")),
        summary=dict(metrics),
        device=tags.get(DEVICE),
    )


# -- what a trial run holds besides trial.json ---------------------------------------------------
def trial_tags(
    record: TrialRecord, parent_run: str | None = None, sweep_run: str | None = None
) -> dict[str, str]:
    """The trial run's tags (``parent_run``: the run it nests under, a tuning run's study;
    ``sweep_run``: the sweep that wrote a trial run, which stands flat)."""
    tags = {
        KIND: KIND_TRIAL,
        TRIAL_ID: record.trial_id,
        CELL_ID: record.cell_id,
        OUTCOME: record.outcome.label,
        OUTCOME_REASON: record.outcome.reason[:MAX_REASON_TAG],
        CELL: record.cell,
        SUITE: record.suite,
        SEED: str(record.seed),
        DEVICE: str(record.device),
        BATCH_SEEDS: str(int(record.timing.get("batch_seeds", 1))),
    }
    if "torch_threads" in record.timing:
        tags[TORCH_THREADS] = str(int(record.timing["torch_threads"]))
    if record.outcome.label:
        tags[RUN_NOTE] = f"**{record.outcome.label}**: {record.outcome.reason}"[:MAX_REASON_TAG]
    if parent_run:
        tags[PARENT_RUN] = parent_run
    if sweep_run:
        tags[SWEEP_RUN] = sweep_run
    return tags


def experiment_tags(
    suite: str,
    description: str,
    levels: Mapping[str, list[str]],
    last_layer: int | None = None,
) -> dict[str, str]:
    """The experiment's tags: its suite, the training view, a note (the UI's description page)
    with the suite's description and its factor table, and gradatlas's saved views of its runs
    (``gradatlas.ui_views``; ``last_layer``: the deepest weight layer index among its trials)."""
    from gradatlas.ui_views import saved_views

    rows = "\n".join(f"| {factor} | {', '.join(labels)} |" for factor, labels in levels.items())
    table = f"\n\n| factor | levels |\n|---|---|\n{rows}" if levels else ""
    note = f"**gradatlas suite `{suite}`**\n\n{' '.join(description.split())}{table}"
    tags = {SUITE: suite, EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING, EXPERIMENT_NOTE: note}
    return tags | saved_views(levels, last_layer)


def trial_params(record: TrialRecord) -> dict[str, str]:
    """The resolved config flattened with dots (lists and dicts as JSON), then one
    ``factor.<name>`` param per grid factor."""
    params = {k: _param(v) for k, v in flatten(record.config).items()}
    params |= {f"{FACTOR_PREFIX}{k}": v for k, v in record.factors.items()}
    return params


# train-curve key in trial.json -> metric key; eval-curve keys are metric keys as they are.
# (``grad_norm`` is the raw norm, before clipping; ``grad_norm_applied``, only in clipped trials,
# the norm as applied; ``update_norm`` the step the optimizer applied, ||theta_{t+1} - theta_t||,
# absent from records made before it.)
TRAIN_CURVE_METRICS = {
    "loss": "train_loss",
    "grad_norm": "grad_norm",
    "grad_norm_applied": "grad_norm_applied",
    "update_norm": "update_norm",
    "lr": "lr",
}
LAYER_CURVE_METRICS = {"grad_norm": "layer_grad_norm", "update_ratio": "update_ratio"}
# Points per training or per-layer curve in MLflow's metric history (``trial_metrics``).
HISTORY_POINTS = 50


def trial_metrics(record: TrialRecord) -> list[tuple[str, float, int]]:
    """(key, value, step) of every metric of a trial run: the finite summary values at step 0,
    then the curves, and the first and last weight layer's curves (``layer_grad_norm/NN``,
    ``update_ratio/NN``).

    The metric history is a view for MLflow's charts, not the record: ``trial.json`` holds every
    curve point of every layer, and the reports read that. So the training and per-layer curves
    are thinned to at most ``HISTORY_POINTS`` evenly spaced points each (first and last kept; a
    chart 600 px wide shows no more), and ``lr`` to the points where it changes. Writing a
    metric point costs the SQLite store about 0.15 ms of ORM work in the recorder, and at 1,100
    points a trial the recorder, not training, set the pace of a 2-core sweep. The validation
    curves stay whole: they are short (one point per evaluation), and a resumed tuning study
    reads them back as its intermediate values. As metrics, only the first and last layer: 40
    per-layer charts of a deep net pushed the loss curves off the MLflow run page."""
    out = [(k, float(v), 0) for k, v in record.summary.items() if _finite(v)]
    curves = record.curves
    train = curves.get("train") or {}
    for src, key in TRAIN_CURVE_METRICS.items():
        if src in train:
            points = _series(key, train.get("step") or [], train.get(src) or [])
            out += _thinned(_changes(points) if key == "lr" else points)
    ev = curves.get("eval") or {}
    for key, values in ev.items():
        if key != "step":
            out += _series(key, ev.get("step") or [], values or [])
    layers = curves.get("layers") or {}
    for src, prefix in LAYER_CURVE_METRICS.items():
        if src not in layers:
            continue
        rows = list(zip(layers.get("step") or [], layers.get(src) or [], strict=True))
        width = max((len(row) for _, row in rows), default=0)
        for i in sorted({0, width - 1} - {-1}):
            points = [
                (f"{prefix}/{i:02d}", float(row[i]), int(s))
                for s, row in rows
                if i < len(row) and _finite(row[i])
            ]
            out += _thinned(points)
    return out


def _series(key: str, steps: list, values: list) -> list[tuple[str, float, int]]:
    return [(key, float(v), int(s)) for s, v in zip(steps, values, strict=True) if _finite(v)]


def _thinned(points: list[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
    """At most ``HISTORY_POINTS`` of a curve's points, evenly spaced by index, first and last
    always kept."""
    n = len(points)
    if n <= HISTORY_POINTS:
        return points
    keep = sorted({round(j * (n - 1) / (HISTORY_POINTS - 1)) for j in range(HISTORY_POINTS)})
    return [points[j] for j in keep]


def _changes(points: list[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
    """The points where the value changes (and the last): a constant learning rate is two
    points, not one per step."""
    return [
        p for j, p in enumerate(points) if j in (0, len(points) - 1) or p[1] != points[j - 1][1]
    ]


# -- the sweep run -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepRecord:
    """The sweep run (one per ``gradatlas run``): its tags, and the artifacts it archives."""

    suite: str
    planned: int | None = None
    todo: int | None = None

    ARTIFACTS = (
        SUITE_YAML_ARTIFACT,  # the suite file as given
        SUITE_RESOLVED_ARTIFACT,  # validated, defaults filled
        ENVIRONMENT_ARTIFACT,  # python, platform, package versions, device, git commit, host
        FACTOR_LEVELS_ARTIFACT,  # factor -> level labels in the suite's own order
    )

    def tags(self) -> dict[str, str]:
        tags = {KIND: KIND_SWEEP, SUITE: self.suite}
        if self.planned is not None:
            tags[PLANNED_TRIALS] = str(self.planned)
        if self.todo is not None:
            tags[TODO_TRIALS] = str(self.todo)
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> SweepRecord:
        return cls(
            suite=tags.get(SUITE, ""),
            planned=as_int(tags.get(PLANNED_TRIALS)),
            todo=as_int(tags.get(TODO_TRIALS)),
        )


def sweep_artifacts(
    *,
    suite_yaml: str,
    resolved: dict[str, Any],
    environment: dict[str, Any],
    levels: dict[str, list[str]],
    overrides: Iterable[str] = (),
) -> dict[str, Any]:
    """The sweep run's artifacts, name -> content (``SweepRecord.ARTIFACTS``, and
    ``overrides.json`` when the command had ``--set`` overrides: the suite file alone would not
    reproduce the sweep)."""
    artifacts: dict[str, Any] = {
        SUITE_YAML_ARTIFACT: suite_yaml,
        SUITE_RESOLVED_ARTIFACT: resolved,
        ENVIRONMENT_ARTIFACT: environment,
        FACTOR_LEVELS_ARTIFACT: levels,
    }
    if overrides := list(overrides):
        artifacts[OVERRIDES_ARTIFACT] = {"overrides": overrides}
    return artifacts


def overrides_tags(overrides: Iterable[str]) -> dict[str, str]:
    """The sweep run's ``gradatlas.overrides`` tag: its ``--set`` overrides as a command line
    (none without overrides)."""
    line = " ".join(f"--set {o}" for o in overrides)
    return {OVERRIDES: line[:MAX_REASON_TAG]} if line else {}


def factor_levels(factors: Iterable[Mapping[str, str]]) -> dict[str, list[str]]:
    """``factor_levels.json``: factor -> its level labels in order of first appearance, which
    for a suite's trial list is the order the suite author wrote them in."""
    levels: dict[str, list[str]] = {}
    for trial_factors in factors:
        for factor, label in trial_factors.items():
            if label not in levels.setdefault(factor, []):
                levels[factor].append(label)
    return levels


# -- helpers -------------------------------------------------------------------------------------
def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _finite_or_null(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (tuples become lists, as in JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_null(v) for v in obj]
    return obj


def _param(v: Any) -> str:
    return json.dumps(v) if isinstance(v, list | dict) else str(v)


def as_int(value: Any) -> int | None:
    """``value`` as an int (a tag, a JSON field), or None where it is none or not a number."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def as_float(value: Any) -> float | None:
    """``value`` as a float (a tag, a JSON field), or None where it is none or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}
