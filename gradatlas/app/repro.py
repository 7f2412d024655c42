"""``gradatlas repro``: rerun one recorded trial from its record and compare the two.

A trial's life again, from its record alone (no suite file): find the run -> read its
``trial.json`` and the environment it ran in -> rebuild the spec from the recorded config and
check that it hashes to the recorded trial id -> rerun it the way it ran (device, torch threads,
and the seeds it was batched with) -> compare every curve point, summary metric, the outcome and
the init profiles with the record -> PASS or FAIL.

What counts as a pass depends on the environment. Where device (CPU), torch thread count,
batching, versions and the CPU's kernels (the instruction set torch dispatches to: AVX512,
AVX2, ...) match the record's, a rerun is bitwise identical today, so nothing less passes.
Where anything differs (another thread count, device, torch version, CPU kernels; a CUDA run,
whose kernels are not guaranteed deterministic), each value must agree within a relative tolerance,
stated in the output, and the outcome label must be the same. The relative difference of two
values is ``|rerun - recorded| / max(|recorded|, |rerun|)`` (0 when both are equal, infinite
when only one is finite or a curve ends at another step).

Batched seeds (``gradatlas.batch_seeds`` > 1): a member of a stacked model agrees with the same
seed trained alone only to float round-off, which training amplifies (about 1e-2 relative after
600 steps of a converging net), so a batched record is rerun batched with the seeds it trained
with: its sibling runs (same sweep, same cell, same start time). ``alone=True`` (``--alone``)
reruns it by itself, which makes batching one of the environment differences.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradatlas.errors import UserInputError
from gradatlas.identity import config_hash as hash_config
from gradatlas.record import (
    BATCH_SEEDS,
    CELL_ID,
    ENVIRONMENT_ARTIFACT,
    FINISHED,
    KIND,
    KIND_TRIAL,
    KIND_TUNING,
    PARENT_RUN,
    SWEEP_RUN,
    TORCH_THREADS,
    TRIAL_ARTIFACT,
    TRIAL_ID,
    TUNING_STOPPED,
    RunKind,
    RunStatus,
    TrialRecord,
    as_int,
    sweep_of,
)
from gradatlas.store import RecordStore, StoredRun, as_store

DEFAULT_TOLERANCE = 1e-5  # relative; float32 round-off is ~6e-8, thread counts move curves ~2e-7
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
TRIAL_ID_FORM = re.compile(r"^[0-9a-f]{16}$")
# Summary entries that say how long or how the trial ran, not what it computed (so are any in
# the record's ``timing`` and any ``*_time_s``).
TIMING_KEYS = frozenset(
    {
        "wall_time_s",
        "fit_time_s",
        "instrument_time_s",
        "logging_time_s",
        "batch_seeds",
        "torch_threads",
    }
)
# Environment rows: (label, key); every row but the informational ones decides whether the
# rerun must be bitwise identical.
ENV_ROWS = (
    ("device", "device"),
    ("torch threads", "torch_threads"),
    ("batched seeds", "batch_seeds"),
    ("python", "python"),
    ("platform", "platform"),
    ("cpu kernels", "cpu_capability"),
    ("cpu", "cpu"),
    ("torch", "torch"),
    ("pytorch-lightning", "pytorch-lightning"),
    ("numpy", "numpy"),
    ("gradatlas", "gradatlas"),
    ("git commit", "git_commit"),
    ("host", "hostname"),
    ("mlflow", "mlflow"),
)
# The CPU's name is informational: what decides its rounding is the kernels' instruction set.
INFORMATIONAL = frozenset({"hostname", "mlflow", "cpu"})
PACKAGES = ("torch", "pytorch-lightning", "numpy", "gradatlas", "mlflow")
INIT, END = -1, math.inf  # where profiles at init and the summary sit among the steps


# -- 1. the record -------------------------------------------------------------------------------
@dataclass
class Recorded:
    """One recorded trial run, with what is needed to rerun it the way it ran."""

    run_id: str
    experiment: str
    run_name: str
    record: TrialRecord
    tags: dict[str, str]
    environment: dict[str, Any]  # the sweep's environment.json ({} when not found)
    group: list[TrialRecord] = field(default_factory=list)  # the seeds batched with it, in order
    group_note: str = ""  # why it is rerun alone although the record was batched


def find_run(store: RecordStore, target: str, experiment: str | None = None) -> StoredRun:
    """The run ``target`` names: a run id, or a trial id (the newest FINISHED trial run of that
    id, in ``experiment`` or in every experiment). Raises ``UserInputError``."""
    target = target.strip()
    exp_ids = _experiment_ids(store, experiment)
    if RUN_ID.match(target):
        run = store.get_run(target)
        if run is not None:
            return run  # else not a run id after all: try it as a trial id, then say neither
    if not TRIAL_ID_FORM.match(target) and not RUN_ID.match(target):
        raise UserInputError(
            "not a run id (32 hex digits) or a trial id (16 hex digits); find one with "
            "`gradatlas export SUITE` or in the MLflow UI (tag gradatlas.trial_id)",
            source=target,
        )
    where = f"experiment {experiment!r}" if experiment else "any experiment"
    runs = store.find_runs(
        exp_ids, kind=RunKind.TRIAL, status=RunStatus.FINISHED, tags={TRIAL_ID: target}, limit=1
    )
    if runs:
        return runs[0]
    others = store.find_runs(exp_ids, tags={TRIAL_ID: target}, limit=20)
    if others:
        seen = sorted({f"{r.tags.get(KIND, '?')} {r.status}" for r in others})
        raise UserInputError(
            f"no FINISHED trial run of this trial id in {where} (its runs: {', '.join(seen)}); "
            "pass a run id to rerun one of them",
            source=target,
        )
    raise UserInputError(f"no run or trial with this id in {where}", source=target)


def _experiment_ids(store: RecordStore, name: str | None) -> list[str]:
    if name:
        exp = store.get_experiment(name=name)
        if exp is None:
            raise UserInputError("no such MLflow experiment", source=name)
        return [exp.experiment_id]
    return [e.experiment_id for e in store.experiments()] or ["0"]


def load_recorded(
    store: RecordStore | str, target: str, experiment: str | None = None, alone: bool = False
) -> Recorded:
    """Find ``target``'s run and read what a rerun needs (``store``: a store, or the URI of one
    to open for reading). Raises ``UserInputError`` for a run that is no finished trial or has no
    ``trial.json`` to rerun from."""
    store = as_store(store)
    run = find_run(store, target, experiment)
    tags = dict(run.tags)
    rid = run.run_id
    kind = tags.get(KIND)
    if kind not in (KIND_TRIAL, KIND_TUNING):
        raise UserInputError(f"run {rid} is a {kind or 'non-gradatlas'} run, not a trial run")
    if run.status != FINISHED:
        raise UserInputError(
            f"run {rid} is {run.status}: only a FINISHED trial has a complete record to "
            "compare with (a killed trial is rerun by resuming its sweep)"
        )
    if tags.get(TUNING_STOPPED):
        raise UserInputError(f"run {rid} was stopped early by a tuning pruner: no full record")
    text = store.artifact_text(run, TRIAL_ARTIFACT)
    record = TrialRecord.from_json(text) if text is not None else None
    if record is None or not record.config:
        raise UserInputError(
            f"run {rid} has no readable {TRIAL_ARTIFACT} with a config: nothing to rerun from"
        )
    exp = store.get_experiment(experiment_id=run.experiment_id)
    out = Recorded(
        run_id=rid,
        experiment=exp.name if exp else run.experiment_id,
        run_name=run.run_name,
        record=record,
        tags=tags,
        environment=_with_worker(_sweep_environment(store, tags), record),
    )
    batched = as_int(tags.get(BATCH_SEEDS)) or int(record.timing.get("batch_seeds") or 1)
    if batched > 1:
        if alone:
            out.group_note = f"rerun alone (--alone); it trained batched with {batched} seeds"
        else:
            out.group, out.group_note = _batch_group(store, run, record, batched)
    return out


def _batch_group(
    store: RecordStore, run: StoredRun, record: TrialRecord, size: int
) -> tuple[list[TrialRecord], str]:
    """The records of the seeds ``run`` trained with (itself included), in seed order: the runs
    of its sweep and cell that started with it (one stacked model shares one start time)."""
    tags = run.tags
    parent = sweep_of(tags)
    if not parent:
        return [], f"rerun alone: it trained batched with {size} seeds, but has no sweep run"
    key = SWEEP_RUN if tags.get(SWEEP_RUN) else PARENT_RUN  # older trial runs nest instead

    def find(**by: str) -> list[StoredRun]:
        found = store.find_runs(
            run.experiment_id,
            kind=tags.get(KIND, KIND_TRIAL),
            status=RunStatus.FINISHED,
            tags={key: parent, **by},
            limit=1000,
        )
        return [r for r in found if r.tags.get(BATCH_SEEDS) == str(size)]

    if record.batch_members:  # the record names its members (a fused unit spans cells)
        runs = [r for tid in dict.fromkeys(record.batch_members) for r in find(**{TRIAL_ID: tid})]
        same = [r for r in runs if r.start_time == run.start_time] or runs
    else:  # older records: the cell's runs that started with it
        runs = find(**{CELL_ID: tags.get(CELL_ID, "")})
        same = [r for r in runs if r.start_time == run.start_time]
    if len({r.tags.get(TRIAL_ID) for r in same}) != size:
        # Start times that differ by the writer's clock: the cell's batched runs in this sweep,
        # if they are exactly one group (the newest run of each trial id).
        newest = {r.tags.get(TRIAL_ID): r for r in reversed(runs)}
        if len(newest) == size and run.run_id in {r.run_id for r in newest.values()}:
            same = list(newest.values())
    records = []
    for r in same:
        if r.run_id == run.run_id:
            records.append(record)
            continue
        text = store.artifact_text(r, TRIAL_ARTIFACT)
        sib = TrialRecord.from_json(text) if text is not None else None
        if sib is not None and sib.config:
            records.append(sib)
    by_id = {r.trial_id: r for r in records}  # a --force rerun started at the same ms: once
    if record.batch_members:  # in the order they trained
        order = {tid: i for i, tid in enumerate(record.batch_members)}
        records = sorted(by_id.values(), key=lambda r: order.get(r.trial_id, len(order)))
    else:
        records = sorted(by_id.values(), key=lambda r: r.seed if r.seed is not None else 0)
    if len(records) != size:
        return [], (
            f"rerun alone: it trained batched with {size} seeds, and {len(records)} of their "
            "records were found"
        )
    return records, ""


def _with_worker(sweep_env: dict[str, Any], record: TrialRecord) -> dict[str, Any]:
    """The sweep's ``environment.json`` (the driver's) overlaid with the trial's own worker
    environment where the record has one: a Ray worker on another host may differ."""
    env, worker = dict(sweep_env), record.environment
    for key in ("python", "platform", "cpu", "cpu_capability"):
        if worker.get(key):
            env[key] = worker[key]
    if worker.get("host"):
        env["hostname"] = worker["host"]
    if isinstance(worker.get("packages"), dict):
        env["packages"] = (env.get("packages") or {}) | worker["packages"]
    return env


def _sweep_environment(store: RecordStore, tags: Mapping[str, str]) -> dict[str, Any]:
    """``environment.json`` of the sweep the run nests under (a tuning run's study nests under
    the sweep: up to three parents are tried)."""
    parent = sweep_of(tags)
    for _ in range(3):
        if not parent:
            return {}
        try:
            run = store.get_run(parent)
        except Exception:
            return {}
        if run is None:
            return {}
        text = store.artifact_text(run, ENVIRONMENT_ARTIFACT)
        if text is not None:
            try:
                env = json.loads(text)
            except ValueError:
                return {}
            return env if isinstance(env, dict) else {}
        parent = run.tags.get(PARENT_RUN)
    return {}


# -- 2. the rerun --------------------------------------------------------------------------------
@dataclass
class Rerun:
    record: TrialRecord  # the rerun's record, through the same writer as the original's
    environment: dict[str, Any]
    recomputed_id: str  # the trial id of the spec rebuilt from the recorded config


def recorded_environment(rec: Recorded) -> dict[str, Any]:
    """The rows of the environment table as recorded: the trial's own device, threads and
    batching, the sweep's versions and platform (None where not recorded)."""
    threads = rec.record.timing.get("torch_threads")
    if threads is None:
        threads = as_int(rec.tags.get(TORCH_THREADS))
    batch = as_int(rec.tags.get(BATCH_SEEDS)) or rec.record.timing.get("batch_seeds")
    return _env_rows(
        rec.environment,
        device=_device_type(rec.record.device),
        threads=None if threads is None else int(threads),
        batch=None if batch is None else int(batch),
    )


def _env_rows(
    env: Mapping[str, Any], *, device: str | None, threads: int | None, batch: int | None
) -> dict[str, Any]:
    """The environment table's values (``ENV_ROWS``' keys), the recorded and the rerun's alike:
    how the trial ran (device, threads, batching) and an ``environment.json``-shaped ``env``
    (None where it has no value)."""
    packages = env.get("packages") or {}
    return {
        "device": device,
        "torch_threads": threads,
        "batch_seeds": batch,
        "python": env.get("python"),
        "platform": env.get("platform"),
        "cpu_capability": env.get("cpu_capability"),
        "cpu": env.get("cpu"),
        **{p: packages.get(p) for p in PACKAGES},
        "git_commit": env.get("git_commit"),
        "hostname": env.get("hostname"),
    }


def rerun(rec: Recorded, *, device: str | None = None, threads: int | None = None) -> Rerun:
    """Rerun the recorded trial (batched with its recorded seeds, if found) on ``device`` (default:
    the recorded one) with ``threads`` torch threads (default: the recorded count), and return its
    record. torch's thread count is restored afterwards."""
    import torch

    from gradatlas.runners.tracking import environment, trial_record
    from gradatlas.runners.trial import (
        default_threads,
        pick_device,
        run_trials,
        set_threads,
        worker_environment,
    )
    from gradatlas.suites import Trial
    from gradatlas.suites.spec import TrialSpec

    recorded = recorded_environment(rec)
    want = device or recorded["device"] or "cpu"
    if want not in ("cpu", "cuda"):
        want = "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        if device:
            raise UserInputError("--device cuda: no CUDA device is available here")
        want = "cpu"  # recorded on a GPU, rerun where we are: the table shows the difference
    n_threads = threads or recorded["torch_threads"] or default_threads()
    members = rec.group or [rec.record]
    trials, ids = [], []
    for r in members:
        spec = TrialSpec.from_config(r.config)
        ids.append(spec.trial_id)
        trials.append(Trial(spec, dict(r.factors), r.cell, r.suite))
    me = next(i for i, r in enumerate(members) if r.trial_id == rec.record.trial_id)
    before = torch.get_num_threads()
    try:
        set_threads(n_threads)
        results = run_trials(trials, accelerator=want)
        actual_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    result = results[me]
    # Through the writer's own path, and through JSON as trial.json is: like for like.
    record = TrialRecord.from_json(trial_record(result).to_json())
    worker = worker_environment()
    env = environment() | {key: worker[key] for key in ("cpu", "cpu_capability")}
    here = _env_rows(env, device=pick_device(want).type, threads=actual_threads, batch=len(trials))
    return Rerun(record=record, environment=here, recomputed_id=ids[me])


# -- 3. the comparison ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One compared value: which series, where (a step; -1 is init, inf the summary)."""

    metric: str
    step: float
    recorded: Any
    rerun: Any
    rel: float

    def where(self) -> str:
        if self.step == INIT:
            return "at init"
        if self.step == END:
            return "in the summary"
        return f"at step {int(self.step)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "step": "init" if self.step == INIT else "summary" if self.step == END else self.step,
            "recorded": self.recorded,
            "rerun": self.rerun,
            "relative_difference": _json_float(self.rel),
        }


@dataclass
class Comparison:
    points: int = 0  # values compared
    series: int = 0
    worst: dict[str, Point] = field(default_factory=dict)  # metric family -> its worst point
    differing: list[Point] = field(default_factory=list)  # every point that is not identical
    outcome_recorded: str = ""
    outcome_rerun: str = ""
    reason_recorded: str = ""
    reason_rerun: str = ""

    @property
    def identical(self) -> bool:
        return not self.differing and self.outcome_recorded == self.outcome_rerun

    def first_over(self, tolerance: float) -> Point | None:
        """The earliest point (by step, then the order compared) beyond ``tolerance``."""
        over = [p for p in self.differing if p.rel > tolerance]
        return min(over, key=lambda p: p.step) if over else None

    def max_rel(self) -> float:
        return max((p.rel for p in self.worst.values()), default=0.0)


def rel_diff(a: Any, b: Any) -> float:
    """Relative difference of two recorded values (None: not finite, as trial.json writes it)."""
    if a == b:
        return 0.0
    if not (_number(a) and _number(b)):
        return math.inf
    a, b = float(a), float(b)
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def compare(recorded: TrialRecord, rerun: TrialRecord) -> Comparison:
    """Every value of the record against the rerun's: curves point by point, the init profiles,
    the summary (timings left out) and the outcome."""
    out = Comparison(
        outcome_recorded=recorded.outcome.label,
        outcome_rerun=rerun.outcome.label,
        reason_recorded=recorded.outcome.reason,
        reason_rerun=rerun.outcome.reason,
    )
    for family, _name, points in _series_pairs(recorded, rerun):
        out.series += 1
        for p in points:
            out.points += 1
            if p.rel > 0 or p.recorded != p.rerun:
                out.differing.append(p)
            worst = out.worst.get(family)
            if worst is None or p.rel > worst.rel:
                out.worst[family] = p
    return out


def _series_pairs(a: TrialRecord, b: TrialRecord) -> Iterator[tuple[str, str, list[Point]]]:
    """(family, series name, its points) in the order a reader meets them: init, the training
    curves, evaluation, per-layer curves, summary."""
    pa, pb = a.profiles or {}, b.profiles or {}
    yield "init/loss", "init/loss", [_point("init/loss", INIT, pa.get("loss"), pb.get("loss"))]
    for label in ("layers", "sites"):
        yield (
            f"init/{label}",
            f"init/{label}",
            [_point(f"init/{label}", INIT, pa.get(label), pb.get(label))],
        )
    ia, ib = pa.get("init") or {}, pb.get("init") or {}
    for key in _keys(ia, ib):
        name = f"init/{key}"
        yield name, name, _pointwise(name, [INIT] * _width(ia.get(key), ib.get(key)),
                                     ia.get(key), ib.get(key))  # fmt: skip
    ca, cb = a.curves or {}, b.curves or {}
    for block in ("train", "eval"):
        xa, xb = ca.get(block) or {}, cb.get(block) or {}
        steps = _steps(xa.get("step"), xb.get("step"))
        yield (
            f"{block}/step",
            f"{block}/step",
            _pointwise(f"{block}/step", steps, xa.get("step"), xb.get("step")),
        )
        for key in _keys(xa, xb):
            if key != "step":
                name = f"{block}/{key}"
                yield name, name, _pointwise(name, steps, xa.get(key), xb.get(key))
    la, lb = ca.get("layers") or {}, cb.get("layers") or {}
    steps = _steps(la.get("step"), lb.get("step"))
    yield (
        "layers/step",
        "layers/step",
        _pointwise("layers/step", steps, la.get("step"), lb.get("step")),
    )
    for key in _keys(la, lb):
        if key == "step":
            continue
        rows_a, rows_b = _list(la.get(key)), _list(lb.get(key))
        layers = max((len(_list(r)) for r in [*rows_a, *rows_b]), default=0)
        for i in range(layers):
            col_a = [_at(_list(r), i) for r in rows_a]
            col_b = [_at(_list(r), i) for r in rows_b]
            yield (
                f"layers/{key}",
                f"layers/{key}/{i:02d}",
                _pointwise(f"layers/{key}/{i:02d}", steps, col_a, col_b),
            )
    sa, sb = a.summary or {}, b.summary or {}
    timing = TIMING_KEYS | set(a.timing or {}) | set(b.timing or {})
    for key in _keys(sa, sb):
        if key not in timing and not key.endswith("_time_s"):
            name = f"summary/{key}"
            yield name, name, [_point(name, END, sa.get(key), sb.get(key))]


_MISSING = object()
ABSENT = "(absent)"  # a point one side has and the other not (a curve that ends elsewhere)


def _pointwise(name: str, steps: Sequence[float], a: Any, b: Any) -> list[Point]:
    """Two curves value by value; a point one has and the other not is infinitely different."""
    xa, xb = _list(a), _list(b)
    n = max(len(xa), len(xb))
    return [
        _point(name, steps[i] if i < len(steps) else END, _at(xa, i), _at(xb, i)) for i in range(n)
    ]


def _point(name: str, step: float, a: Any, b: Any) -> Point:
    if a is _MISSING or b is _MISSING:
        a, b = (ABSENT if a is _MISSING else a), (ABSENT if b is _MISSING else b)
        return Point(name, step, a, b, math.inf)
    return Point(name, step, a, b, rel_diff(a, b))


def _steps(a: Any, b: Any) -> list[float]:
    """The steps of a block: the recorded ones, then the rerun's beyond them."""
    xa, xb = _list(a), _list(b)
    longer = xa if len(xa) >= len(xb) else xb
    return [float(s) if _number(s) else END for s in longer]


def _keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return [*a, *(k for k in b if k not in a)]


def _width(a: Any, b: Any) -> int:
    return max(len(_list(a)), len(_list(b)))


def _list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else []


def _at(values: list[Any], i: int) -> Any:
    return values[i] if i < len(values) else _MISSING


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# -- 4. the verdict ------------------------------------------------------------------------------
@dataclass
class Verdict:
    passed: bool
    mode: str  # "bitwise" | "tolerance": what the environments call for
    tolerance: float
    identical: bool
    id_ok: bool
    trial_id: str
    recomputed_id: str
    config_id: str
    run_id: str
    experiment: str
    run_name: str
    env_rows: list[tuple[str, str, Any, Any, bool]]  # label, key, recorded, rerun, differs
    comparison: Comparison
    notes: list[str]

    @property
    def env_differs(self) -> list[str]:
        return [label for label, key, _a, _b, d in self.env_rows if d and key not in INFORMATIONAL]

    def first_divergence(self) -> Point | None:
        return self.comparison.first_over(0.0 if self.mode == "bitwise" else self.tolerance)

    def to_dict(self) -> dict[str, Any]:
        c = self.comparison
        first = self.first_divergence()
        first_diff = c.first_over(0.0)
        return {
            "result": "PASS" if self.passed else "FAIL",
            "mode": self.mode,
            "tolerance": self.tolerance,
            "bitwise_identical": self.identical,
            "run_id": self.run_id,
            "experiment": self.experiment,
            "run_name": self.run_name,
            "trial_id": self.trial_id,
            "recomputed_trial_id": self.recomputed_id,
            "config_hash": self.config_id,
            "outcome": {"recorded": c.outcome_recorded, "rerun": c.outcome_rerun},
            "values_compared": c.points,
            "series_compared": c.series,
            "values_differing": len(c.differing),
            "first_divergence": first.to_dict() if first else None,
            "first_difference": first_diff.to_dict() if first_diff else None,
            "max_relative_difference": {
                k: {"value": _json_float(p.rel), "where": p.to_dict()["step"]}
                for k, p in c.worst.items()
            },
            "environment": [
                {"name": label, "recorded": a, "rerun": b, "differs": d}
                for label, _key, a, b, d in self.env_rows
            ],
            "environment_differences": self.env_differs,
            "notes": self.notes,
        }


def judge(rec: Recorded, again: Rerun | None, tolerance: float = DEFAULT_TOLERANCE) -> Verdict:
    """PASS or FAIL. Bitwise identity is required where every non-informational environment row
    is known and equal and the device is a CPU; otherwise every value within ``tolerance``
    (relative). Either way the outcome label must be the same and the trial id must hold."""
    recorded_env = recorded_environment(rec)
    config_id = hash_config(rec.record.config)
    recomputed = again.recomputed_id if again else ""
    here = again.environment if again else {}
    rows = []
    for label, key in ENV_ROWS:
        a, b = recorded_env.get(key), here.get(key)
        rows.append((label, key, a, b, a is None or a != b))
    notes = []
    if rec.group_note:
        notes.append(rec.group_note)
    elif rec.group and len({r.cell_id for r in rec.group}) > 1:
        cells = len({r.cell_id for r in rec.group})
        notes.append(
            f"rerun fused with the {len(rec.group)} trials of {cells} cells it trained with, "
            "as recorded"
        )
    elif rec.group:
        seeds = ", ".join(str(r.seed) for r in rec.group)
        notes.append(f"rerun batched with the seeds it trained with (seeds {seeds}), as recorded")
    unknown = [label for label, key, a, _b, _d in rows if a is None and key not in INFORMATIONAL]
    if unknown:
        notes.append(f"not recorded: {', '.join(unknown)} (so a bitwise match is not required)")
    same_env = not any(d for _l, key, _a, _b, d in rows if key not in INFORMATIONAL)
    mode = "bitwise" if same_env and here.get("device") == "cpu" else "tolerance"
    if same_env and here.get("device") == "cuda":
        notes.append("CUDA kernels are not guaranteed deterministic: compared within tolerance")
    id_ok = config_id == rec.record.trial_id and (again is None or recomputed == config_id)
    if config_id != rec.record.trial_id:
        notes.append(
            f"the recorded config hashes to {config_id}, not to the recorded trial id "
            f"{rec.record.trial_id}: the record was altered or is not this trial's"
        )
    elif again is not None and recomputed != config_id:
        notes.append(
            f"the spec rebuilt from the recorded config has trial id {recomputed}, not "
            f"{config_id}: this gradatlas resolves the recorded config differently"
        )
    c = compare(rec.record, again.record) if again is not None else Comparison()
    identical = again is not None and c.identical
    within = (
        again is not None
        and c.outcome_recorded == c.outcome_rerun
        and c.first_over(0.0 if mode == "bitwise" else tolerance) is None
    )
    return Verdict(
        passed=id_ok and within,
        mode=mode,
        tolerance=tolerance,
        identical=identical,
        id_ok=id_ok,
        trial_id=rec.record.trial_id,
        recomputed_id=recomputed,
        config_id=config_id,
        run_id=rec.run_id,
        experiment=rec.experiment,
        run_name=rec.run_name,
        env_rows=rows,
        comparison=c,
        notes=notes,
    )


def reproduce(
    store: RecordStore | str,
    target: str,
    *,
    experiment: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    alone: bool = False,
) -> Verdict:
    """The whole of ``gradatlas repro``: find, rerun, compare, judge."""
    rec = load_recorded(store, target, experiment, alone=alone)
    if hash_config(rec.record.config) != rec.record.trial_id:
        return judge(rec, None, tolerance)  # not this trial's config: nothing to rerun
    return judge(rec, rerun(rec, device=device, threads=threads), tolerance)


# -- 5. what is printed --------------------------------------------------------------------------
def render(v: Verdict) -> str:
    c = v.comparison
    lines = [
        f"repro {v.trial_id} (run {v.run_id}, {v.experiment} / {v.run_name}): "
        f"recorded outcome {c.outcome_recorded or '?'}"
    ]
    if v.recomputed_id:
        same = "matches" if v.recomputed_id == v.trial_id else "DIFFERS"
        lines.append(
            f"trial id recomputed from the recorded config: {v.recomputed_id} ({same}); "
            f"rerun outcome {c.outcome_rerun}"
        )
    tol = f"{v.tolerance:g} relative"
    if not v.id_ok:
        lines.append("FAIL: the trial's identity does not hold (see notes); nothing compared")
    elif v.passed and v.identical:
        why = (
            "same environment, bitwise required"
            if v.mode == "bitwise"
            else f"environment differs: {', '.join(v.env_differs)}; tolerance {tol}"
        )
        lines.append(f"PASS: bitwise identical to the record ({why})")
    elif v.passed:
        lines.append(
            f"PASS: within tolerance {tol}, not bitwise (environment differs: "
            f"{', '.join(v.env_differs)}); max relative difference {c.max_rel():.3g}"
        )
    elif c.outcome_recorded != c.outcome_rerun:
        lines.append(
            f"FAIL: outcome {c.outcome_rerun!r} where the record says {c.outcome_recorded!r}"
        )
    elif v.mode == "bitwise":
        lines.append(
            "FAIL: not bitwise identical although the environment matches the record "
            f"(max relative difference {c.max_rel():.3g})"
        )
    else:
        lines.append(
            f"FAIL: beyond tolerance {tol} (environment differs: {', '.join(v.env_differs)}); "
            f"max relative difference {c.max_rel():.3g}"
        )
    if v.id_ok:
        lines.append(
            f"  compared {c.points} values in {c.series} series (curves, init profiles, "
            f"summary, outcome); {len(c.differing)} differ"
        )
        first = v.first_divergence()
        if first is not None:
            lines.append(f"  first divergence: {_describe(first)}")
        first_diff = c.first_over(0.0)
        if first_diff is not None and first_diff != first:
            lines.append(f"  first difference: {_describe(first_diff)}")
        if c.outcome_recorded == c.outcome_rerun and c.reason_recorded != c.reason_rerun:
            lines.append(
                f"  outcome reason: recorded {c.reason_recorded!r}, rerun {c.reason_rerun!r}"
            )
        if c.differing:
            lines.append("  max relative difference per metric (the ones that differ):")
            width = max(len(k) for k in c.worst)
            for key, p in c.worst.items():
                if p.rel > 0:
                    lines.append(f"    {key:<{width}}  {p.rel:.3g} {p.where()}")
    lines.append("  environment          recorded (-> rerun, where it differs)")
    for label, key, a, b, differs in v.env_rows:
        mark = "  " if not differs else "* " if key not in INFORMATIONAL else "~ "
        shown = f"{_fmt(a)}" if not differs else f"{_fmt(a)} -> {_fmt(b)}"
        lines.append(f"  {mark}{label:<18} {shown}")
    if any(d for *_rest, d in v.env_rows):
        lines.append("  (* differs, so bitwise is not required; ~ differs, no bearing on numbers)")
    lines += [f"  note: {n}" for n in v.notes]
    return "\n".join(lines)


def _describe(p: Point) -> str:
    return (
        f"{p.metric} {p.where()}: recorded {_value(p.recorded)}, rerun {_value(p.rerun)}, "
        f"relative difference {p.rel:.3g}"
    )


def _value(v: Any) -> str:
    """A compared value as trial.json holds it (null: not finite)."""
    return "null (not finite)" if v is None else _fmt(v)


def _fmt(v: Any) -> str:
    if v is None:
        return "(not recorded)"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return json.dumps(v)[:60]
    return str(v)


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else "inf"


def _device_type(device: str | None) -> str | None:
    if not device or device == "None":
        return None
    return device.split(":")[0]
