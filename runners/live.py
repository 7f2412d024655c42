"""Live trial runs: a trial's MLflow run exists from its start and receives its curves while it
trains, so the UI shows progress on a long trial (and a stopped sweep leaves KILLED runs with
what they had, not nothing).

Why it looks like this: the driver's recorder is the store's one writer (SQLite cannot take
concurrent writers), so workers never write MLflow themselves. A worker's ``LiveSink`` sends
small messages (a trial started; some new curve points) to the driver: directly through a
callback when trials train in the driver's process, through a Ray queue actor when they train
on Ray workers (``RayFeed``). The driver forwards them to the recorder, in order with the
finished units, and the recorder creates the RUNNING run at the first message, appends the
points with one ``log_batch`` per flush, and finally writes the trial's record into that same
run (``runners.recorder``).

Bounded cost: a flush happens at an evaluation step only, and only when ``every_s`` seconds
(``execution.live_every_s``, default 10) have passed since the last one, so a trial of ``T``
seconds costs at most ``T / every_s`` flushes (and a 2-second quickstart trial only its start
message). A flush carries the evaluation points since the last flush and the training curve at
the record's own stride (``instrument.max_points`` points over the whole run), never the
per-layer curves, which come with the record at the end. ``benchmarks/live_flush.py`` measures
the share of trial time it takes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from gradatlas.record import RUNNING_OUTCOME, RecordedOutcome, TrialRecord, trial_params, trial_tags

START, POINTS = "start", "points"
Message = dict[str, Any]
Send = Callable[[list[Message]], None]


def start_message(
    trial: Any, *, started_at: float, device: str, threads: int, members: int
) -> Message:
    """The message that creates a trial's RUNNING run: its tags and params as the finished run
    will have them, with outcome ``running`` (replaced by the verdict when the record comes)."""
    from gradatlas.runners.tracking import trial_identity

    record = TrialRecord(
        **trial_identity(trial),
        outcome=RecordedOutcome(
            RUNNING_OUTCOME, "training: this run receives its curves while it trains",
            trial.config["outcomes"],
        ),
        device=device,
        timing={"batch_seeds": float(members), "torch_threads": float(threads)},
    )  # fmt: skip
    return {
        "t": START,
        "trial_id": trial.trial_id,
        "run_name": trial.run_name,
        "start_ms": round(1000 * started_at),
        "tags": trial_tags(record),
        "params": trial_params(record),
    }


class LiveSink:
    """Worker side: what one unit's trials send while they train. ``send`` takes a list of
    messages (a callback, or ``RayFeed.sender``); a failing send is dropped, never raised: live
    points are a view of progress, the record at the end has everything."""

    def __init__(self, send: Send, every_s: float):
        self.send, self.every_s = send, every_s
        self.trials: Sequence[Any] = ()
        self._last = 0.0
        self._evals_sent = 0
        self._train_sent = 0
        self.flushes = 0
        self.seconds = 0.0  # the worker's time spent here: the cost of being live

    def started(
        self, trials: Sequence[Any], *, started_at: float, device: str, threads: int
    ) -> None:
        t0 = time.perf_counter()
        self.trials = trials
        self._evals_sent, self._train_sent = 0, 0
        self._last = time.monotonic()
        members = len(trials)
        self._send(
            [
                start_message(
                    t, started_at=started_at, device=device, threads=threads, members=members
                )
                for t in trials
            ]
        )
        self.seconds += time.perf_counter() - t0

    def tick(self, instrument: Any, max_points: int) -> None:
        """Called after each evaluation during training: flush if ``every_s`` has passed."""
        if time.monotonic() - self._last < self.every_s:
            return
        self.flush(instrument, max_points)

    def flush(self, instrument: Any, max_points: int) -> None:
        t0 = time.perf_counter()
        self._last = time.monotonic()
        messages = [
            {"t": POINTS, "trial_id": trial.trial_id, "points": points}
            for trial, points in zip(
                self.trials, self._new_points(instrument, max_points), strict=True
            )
            if points
        ]
        if messages:
            self._send(messages)
            self.flushes += 1
        self.seconds += time.perf_counter() - t0

    def _new_points(self, instrument: Any, max_points: int) -> list[list[tuple[str, float, int]]]:
        """Per member, the (key, value, step) points recorded since the last flush: evaluation
        metrics, and the training loss and gradient norm at the record's stride."""
        members = len(self.trials)
        out: list[list[tuple[str, float, int]]] = [[] for _ in range(members)]
        for step, metrics, alive in instrument.evals[self._evals_sent :]:
            values = {k: v.detach().double().cpu().tolist() for k, v in metrics.items()}
            for k in range(members):
                if alive[k]:
                    out[k] += [(key, vs[k], step) for key, vs in values.items()]
        self._evals_sent = len(instrument.evals)
        done = max(instrument.steps_run, default=0)
        stride = max(1, math.ceil(instrument.max_steps / max(1, max_points)))
        first = -(-self._train_sent // stride) * stride  # the next multiple of the stride
        if done > first:
            loss = instrument.step_loss[:, first:done:stride].double().cpu().tolist()
            # raw (pre-clip), as the record's grad_norm curve
            norm = instrument.step_grad_norm_raw[:, first:done:stride].double().cpu().tolist()
            steps = range(first, done, stride)
            for k in range(members):
                ran = instrument.steps_run[k]  # an exploded member's record ends where it did
                for s, lv, nv in zip(steps, loss[k], norm[k], strict=True):
                    if s < ran:
                        out[k] += [("train_loss", lv, s), ("grad_norm", nv, s)]
            self._train_sent = done
        return [[(key, v, s) for key, v, s in pts if math.isfinite(v)] for pts in out]

    def _send(self, messages: list[Message]) -> None:
        with contextlib.suppress(Exception):
            self.send(messages)


class RayFeed:
    """Driver side of live runs on Ray: one queue actor (no CPU of its own) that workers put
    messages into and the driver drains between ``ray.wait`` calls. A full queue drops the
    flush (``put_nowait``): the trial never waits for the driver."""

    MAX_MESSAGES = 10_000

    def __init__(self) -> None:
        from ray.util.queue import Queue

        self.queue = Queue(maxsize=self.MAX_MESSAGES, actor_options={"num_cpus": 0})

    def drain(self) -> list[Message]:
        out: list[Message] = []
        with contextlib.suppress(Exception):
            size = self.queue.qsize()
            if size:
                for batch in self.queue.get_nowait_batch(size):
                    out.extend(batch)
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.queue.shutdown()


class QueueSender:
    """A picklable ``send`` for Ray workers: puts one list of messages per call."""

    def __init__(self, queue: Any):
        self.queue = queue

    def __call__(self, messages: list[Message]) -> None:
        self.queue.put_nowait(messages)
