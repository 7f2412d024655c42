"""Where trials train: in this process, or on Ray workers across GPUs and machines.

A work unit is the list of pending trials of one cell (its seeds), or with fusion of one shape
(every cell that can share a stacked model), so a worker builds the data once per unit and
trains the unit as stacked models. Executors only
*run*: results come back to the driver, which alone writes MLflow (one writer keeps the default
SQLite store safe with any number of workers).

One way to run units, whatever they are (a sweep's evaluation trials, a tuning phase's study
trials): an executor opens a ``Pool`` of units in flight, and ``dispatch`` is the one loop that
feeds it from a phase's ``Work`` and hands each result back, with the same stop handling for
every phase. ``InProcessExecutor`` runs one unit at a time in the driver (no Ray start-up;
Ctrl-C stops the trial in progress at its next step). ``RayExecutor`` submits units as Ray
tasks (one CPU, or a fraction of a GPU, each), retries a unit whose worker process or node died
(``max_retries``; a trial that raises is a result, not a retry), and hands results back the
moment each unit returns.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gradatlas.suites import Trial


@dataclass(frozen=True)
class EarlyStop:
    """A pruner's verdict, decided in advance by the driver (``runners.tuning.pruning``), so a
    worker never reads the study: the run stops at an eval step where its ``metric`` is worse
    than the threshold given for that step (a NaN is worse than anything)."""

    metric: str  # "val_acc" | "val_loss"
    maximize: bool
    thresholds: Mapping[int, float]  # eval step -> the value the run must reach there

    def worse(self, step: int, metrics: Mapping[str, float] | None) -> bool:
        threshold = self.thresholds.get(step)
        if threshold is None or metrics is None or self.metric not in metrics:
            return False
        value = metrics[self.metric]
        if not math.isfinite(value):
            return True
        return value < threshold if self.maximize else value > threshold


@dataclass(frozen=True)
class MemberRules:
    """The early-stop rules of the members of one group (None: that member has none). One
    member worse than its threshold stops the group: its tuning trial is pruned either way."""

    rules: tuple[EarlyStop | None, ...]

    def __call__(self, step: int, values: list[dict[str, float] | None]) -> bool:
        return any(
            rule is not None and rule.worse(step, v)
            for rule, v in zip(self.rules, values, strict=True)
        )


@dataclass(frozen=True)
class WorkUnit:
    """The pending trials of one cell (or, fused, of one shape: ``runners.batching``), run by
    one worker: together as stacked models where ``batch_seeds`` allows, else one after
    another. ``early_stop``: trial id -> the rule that may stop it early (tuning trials under
    a pruner)."""

    key: str  # the cell id, or "shape:<hash>" for a fused unit
    trials: tuple[Trial, ...]
    batch_seeds: int | str = 1  # "auto" or K; decided on the worker, which knows its device
    early_stop: Mapping[str, EarlyStop] = field(default_factory=dict)
    # Live runs (runners.live): where the worker sends its trials' start and curve points
    # (set by the executor), and how often it may (seconds; 0: the record at the end only).
    live: Any = None
    live_every_s: float = 0.0


@dataclass(frozen=True)
class TrialFailure:
    """A trial that raised: recorded FAILED with its error, once; the sweep goes on."""

    trial: Trial
    error: str  # "ValueError: ..." (one line)
    traceback: str
    worker: str


@dataclass
class UnitResult:
    unit: WorkUnit
    results: list[Any] = field(default_factory=list)  # TrialResult, in trial order
    failures: list[TrialFailure] = field(default_factory=list)
    worker: str = ""
    seconds: float = 0.0
    lost: str = ""  # why the unit never returned (retries exhausted); its trials stay pending


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_unit(
    unit: WorkUnit,
    *,
    accelerator: str = "auto",
    threads: int | None = None,
    stop: threading.Event | None = None,
) -> UnitResult:
    """Run every trial of a unit, in seed groups that train together (``batch_seeds``). A
    trial that raises becomes a ``TrialFailure`` and the next one still runs; a group that
    raises is retried one trial at a time, so each failure is its own trial's.
    ``threads`` sets torch's intra-op threads for this process first."""
    from gradatlas.runners.batching import seed_groups
    from gradatlas.runners.live import LiveSink
    from gradatlas.runners.trial import pick_device, run_trials, set_threads

    if threads:
        set_threads(threads)
    t0 = time.perf_counter()
    out = UnitResult(unit, worker=worker_name())
    queue = seed_groups(unit.trials, unit.batch_seeds, pick_device(accelerator))
    while queue:
        group = queue.pop(0)
        if stop is not None and stop.is_set():
            break
        rules = [unit.early_stop.get(t.trial_id) for t in group]
        extra: dict[str, Any] = {"early_stop": MemberRules(tuple(rules))} if any(rules) else {}
        if unit.live is not None and unit.live_every_s > 0:
            extra["live"] = LiveSink(unit.live, unit.live_every_s)
        try:
            results = run_trials(group, accelerator=accelerator, stop=stop, **extra)
        except Exception as exc:  # a trial that blows up is a result, not a crash
            if len(group) > 1:  # find out which member it was: each on its own
                queue[:0] = [[t] for t in group]
                continue
            out.failures.append(
                TrialFailure(
                    group[0],
                    f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
                    traceback.format_exc()[-20000:],
                    out.worker,
                )
            )
            continue
        out.results.extend(results)
        if any(r.interrupted for r in results):
            break
    out.seconds = time.perf_counter() - t0
    return out


# The driver's end of live runs: takes the messages workers sent (``runners.live``).
Deliver = Callable[[list[dict[str, Any]]], None]


class Executor(Protocol):
    """Where units run. ``pool`` opens one phase's units in flight (a sweep's evaluation, a
    tuning phase); ``close`` releases the workers at the end of the sweep."""

    description: str  # what it runs on, for the user: "2 Ray workers (1 CPU, 1 thread each)"
    workers: int

    def pool(self, stop: threading.Event, live: Deliver | None = None) -> Pool: ...

    def close(self) -> None: ...


class Pool(Protocol):
    """Units submitted one at a time, results taken one at a time (any order), so a driver
    whose next units depend on the results so far (tuning asks its sampler after each result)
    and one that knows them all in advance (evaluation) drive it alike (``dispatch``).

    ``capacity``: units worth keeping in flight; ``busy``: units submitted and not yet taken.
    ``next_done`` blocks until a unit returns. Once ``stop`` is set, units not yet started are
    dropped and those running are cancelled: each still comes back, finished if it finished
    first, else ``lost``; None once nothing is in flight. ``live``: where the messages of units
    with ``live_every_s`` go, each delivered before its unit's result is returned. ``close``
    drops what is still in flight.
    """

    capacity: int

    @property
    def busy(self) -> int: ...

    def submit(self, unit: WorkUnit) -> None: ...

    def next_done(self) -> UnitResult | None: ...

    def close(self) -> None: ...


class Work(Protocol):
    """One phase of a sweep as ``dispatch`` drives it: the units it wants run, and what it
    does with each result (record it, count it, tell a study)."""

    def next_unit(self) -> WorkUnit | None:
        """The next unit to run, or None when there is none to hand out now."""
        ...

    def take(self, result: UnitResult) -> bool:
        """A returned unit; False ends the phase (the sweep stopped)."""
        ...

    def wait(self) -> bool:
        """Nothing is in flight and ``next_unit`` had none: wait for what may bring more (a
        study waits for its runs' records before it is told, then asks again); False when
        the phase is done."""
        ...


def dispatch(
    executor: Executor, work: Work, stop: threading.Event, live: Deliver | None = None
) -> None:
    """The one loop between a phase's work and the executor: keep up to the pool's capacity
    of units in flight, hand each result to ``work`` as it returns, until the work is done or
    ``stop`` is set. After a stop nothing new starts; what finished before the cancel is still
    taken, and the first unit that did not return ends the loop (it was cancelled, not lost:
    its trials stay pending, as do those of the units still in flight)."""
    pool = executor.pool(stop, live)
    try:
        while True:
            while not stop.is_set() and pool.busy < pool.capacity:
                unit = work.next_unit()
                if unit is None:
                    break
                pool.submit(unit)
            if pool.busy == 0:
                if stop.is_set() or not work.wait():
                    return
                continue
            result = pool.next_done()
            if result is None or (result.lost and stop.is_set()):
                return
            if not work.take(result):
                return
    finally:
        pool.close()


class InProcessExecutor:
    """One worker: this process, one unit after another (no Ray start-up)."""

    workers = 1

    def __init__(self, *, accelerator: str = "auto", threads: int | None = None):
        self.accelerator, self.threads = accelerator, threads
        self.description = "this process" + (
            f" ({threads} torch thread{'s' if threads > 1 else ''})" if threads else ""
        )

    def pool(self, stop: threading.Event, live: Deliver | None = None) -> InProcessPool:
        return InProcessPool(self, stop, live)

    def close(self) -> None:
        pass


class InProcessPool:
    """One unit at a time, run when its result is asked for; Ctrl-C stops it at its next
    step (its results come back ``interrupted``)."""

    capacity = 1

    def __init__(
        self, executor: InProcessExecutor, stop: threading.Event, live: Deliver | None = None
    ):
        self.executor, self.stop, self.live = executor, stop, live
        self._queue: deque[WorkUnit] = deque()

    @property
    def busy(self) -> int:
        return len(self._queue)

    def submit(self, unit: WorkUnit) -> None:
        if self.live is not None:  # the trial trains in this process: deliver directly
            unit = dataclasses.replace(unit, live=self.live)
        self._queue.append(unit)

    def next_done(self) -> UnitResult | None:
        if self.stop.is_set():
            self._queue.clear()  # not started: nothing to cancel
            return None
        if not self._queue:
            return None
        unit = self._queue.popleft()
        ex = self.executor
        return run_unit(unit, accelerator=ex.accelerator, threads=ex.threads, stop=self.stop)

    def close(self) -> None:
        self._queue.clear()


def physical_cores() -> int:
    """Physical cores (hyper-threads share a core's floating-point units, so one torch worker
    per logical CPU only adds contention)."""
    try:
        cores = set()
        with open("/proc/cpuinfo") as fh:
            phys = core = None
            for line in fh:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                elif not line.strip() and core is not None:
                    cores.add((phys, core))
                    phys = core = None
        if cores:
            return min(len(cores), len(os.sched_getaffinity(0)))
    except (OSError, AttributeError):
        pass
    return os.cpu_count() or 1


def gpu_count() -> int:
    """Visible NVIDIA GPUs, read from the driver's /proc entries and CUDA_VISIBLE_DEVICES, so
    the driver of a sweep never imports torch (or initializes CUDA) just to count them."""
    import glob
    import shutil
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    found = len(glob.glob("/proc/driver/nvidia/gpus/*"))
    if not found and shutil.which("nvidia-smi"):  # containers may hide /proc/driver/nvidia
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
            found = sum(line.startswith("GPU ") for line in out.stdout.splitlines())
        except (OSError, subprocess.SubprocessError):
            found = 0
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip() not in ("", "-1")]
        return min(len(ids), found) if found else 0
    return found


@dataclass(frozen=True)
class RayPlan:
    """How many Ray workers and what each one takes."""

    workers: int
    num_cpus: float
    num_gpus: float
    threads: int


def plan_workers(
    workers: str | int, *, accelerator: str, gpus_per_worker: float | None, threads: int | None
) -> RayPlan:
    """``auto``: one worker per GPU (or ``1 / gpus_per_worker`` per GPU), else one per physical
    core with one torch thread each. An explicit count is taken as given."""
    gpus = gpu_count() if accelerator in ("auto", "gpu") else 0
    if gpus and gpus_per_worker is None:
        gpus_per_worker = 1.0
    on_gpu = bool(gpus) and bool(gpus_per_worker)
    if workers == "auto":
        count = int(gpus / gpus_per_worker) if on_gpu else physical_cores()  # type: ignore[operator]
    else:
        count = int(workers)
    return RayPlan(
        workers=max(1, count),
        num_cpus=1.0,
        num_gpus=float(gpus_per_worker) if on_gpu else 0.0,
        threads=threads or 1,
    )


class RayExecutor:
    """Units as Ray tasks on a local instance (``address=None``: started here, on 127.0.0.1) or
    an existing cluster (``address="auto"`` or ``"HOST:PORT"``).

    At most ``2 x workers`` units are in flight, so a stop leaves little to cancel and a late
    joining node still gets work. A unit whose worker died is resubmitted by Ray itself
    (``max_retries``); the driver checks each trial id against the store before recording, so a
    retried unit that had already finished is never recorded twice.
    """

    def __init__(
        self,
        plan: RayPlan,
        *,
        accelerator: str = "auto",
        address: str | None = None,
        max_retries: int = 3,
        ray_init: dict[str, Any] | None = None,
    ):
        import ray

        self.plan, self.accelerator, self.max_retries = plan, accelerator, max_retries
        t0 = time.perf_counter()
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": True,
                "configure_logging": False,
                # Workers need no copy of the working directory: gradatlas is installed.
                "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(plan.threads)}},
            }
            if address:
                kwargs["address"] = address
            else:  # a private local instance, never a stale cluster found by "auto"
                kwargs.update(address="local", num_cpus=plan.workers * int(plan.num_cpus or 1))
                kwargs["_node_ip_address"] = "127.0.0.1"
            kwargs.update(ray_init or {})
            ray.init(**kwargs)
        self.startup_s = time.perf_counter() - t0
        self.workers = plan.workers
        where = "GPU" if plan.num_gpus else "CPU"
        share = f"{plan.num_gpus:g} GPU" if plan.num_gpus else f"{plan.num_cpus:g} CPU"
        self.description = (
            f"{plan.workers} Ray workers ({share}, {plan.threads} torch thread"
            f"{'s' if plan.threads > 1 else ''} each; {where}; "
            f"{'cluster ' + address if address else 'local instance'}; "
            f"started in {self.startup_s:.1f}s)"
        )
        self._remote = ray.remote(_ray_run_unit).options(
            num_cpus=plan.num_cpus,
            num_gpus=plan.num_gpus,
            max_retries=max_retries,
            retry_exceptions=False,
        )
        # Warm every worker now: each imports torch and Lightning (seconds) while the driver
        # checks the store and writes the sweep run, instead of after the first units arrive.
        warm = ray.remote(_warm_worker).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus)
        self._warming = [warm.remote() for _ in range(plan.workers)]

    def pool(self, stop: threading.Event, live: Deliver | None = None) -> RayPool:
        return RayPool(self, stop, live)

    def submit(self, unit: WorkUnit) -> Any:
        return self._remote.remote(unit, self.accelerator, self.plan.threads)

    def close(self) -> None:
        import ray

        if self._owns and ray.is_initialized():
            ray.shutdown()


class RayPool:
    """Units as Ray tasks, at most ``2 x workers`` of them worth keeping in flight. Live
    messages travel through a Ray queue (``runners.live.RayFeed``), opened at the first unit
    that sends any and drained after every wait."""

    def __init__(self, executor: RayExecutor, stop: threading.Event, live: Deliver | None = None):
        self.executor, self.stop, self.live = executor, stop, live
        self.capacity = max(1, 2 * executor.workers)
        self._in_flight: dict[Any, WorkUnit] = {}
        self._feed: Any = None
        self._cancelled = False

    @property
    def busy(self) -> int:
        return len(self._in_flight)

    def submit(self, unit: WorkUnit) -> None:
        if self.live is not None and unit.live_every_s > 0:
            from gradatlas.runners.live import QueueSender, RayFeed

            self._feed = self._feed or RayFeed()
            unit = dataclasses.replace(unit, live=QueueSender(self._feed.queue))
        self._in_flight[self.executor.submit(unit)] = unit

    def next_done(self) -> UnitResult | None:
        import ray

        while self._in_flight:
            if self.stop.is_set() and not self._cancelled:
                self._cancel()  # each still comes back: finished first, or lost
            done, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=0.5)
            # After the wait: a unit that returned put its messages before it did.
            if self._feed is not None and self.live is not None and (msgs := self._feed.drain()):
                self.live(msgs)
            if done:
                return _ray_result(done[0], self._in_flight.pop(done[0]))
        return None

    def _cancel(self) -> None:
        import ray

        self._cancelled = True
        for ref in self._in_flight:
            ray.cancel(ref, force=True)

    def close(self) -> None:
        self._cancel()
        self._in_flight.clear()
        if self._feed is not None:
            self._feed.close()
            self._feed = None


def _ray_result(ref: Any, unit: WorkUnit) -> UnitResult:
    """A returned unit's result, or a lost unit: retries exhausted (or cancelled), its trials
    stay pending and a rerun resumes them; the error is reported, never swallowed."""
    import ray

    try:
        return ray.get(ref)
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.RayTaskError, ray.exceptions.TaskCancelledError,
            ray.exceptions.ObjectLostError) as exc:  # fmt: skip
        return UnitResult(unit, lost=f"{type(exc).__name__}: {exc}"[:300])


def _warm_worker() -> str:
    """Import what a unit needs (a no-op once imported); returns the worker's name."""
    import gradatlas.runners.trial  # noqa: F401

    return worker_name()


def _ray_run_unit(unit: WorkUnit, accelerator: str, threads: int) -> UnitResult:
    """The Ray task: quiet logs, the thread count, then ``run_unit``."""
    return run_unit(unit, accelerator=accelerator, threads=threads)


def make_units(
    trials: Iterable[Trial], batch_seeds: int | str = 1, fuse: bool = False
) -> list[WorkUnit]:
    """Pending trials grouped by cell, or with ``fuse`` by shape (``runners.batching.unit_key``:
    the cells that can train as members of one stacked model), in plan order. Only pending
    trials are grouped, so resuming trains only what is missing."""
    from gradatlas.runners.batching import unit_key

    units: dict[str, list[Trial]] = {}
    for trial in trials:
        units.setdefault(unit_key(trial, fuse), []).append(trial)
    return [WorkUnit(key, tuple(ts), batch_seeds) for key, ts in units.items()]
