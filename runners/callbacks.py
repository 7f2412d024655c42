"""What a trial's Trainer does besides measuring: Lightning callbacks with one job each.

The ``GradientInstrument`` measures (on the device, no host sync per step) and says, through
``step_eval``, which evaluation the step that just ended made. The callbacks here act on that,
after it in the Trainer's ``callbacks`` list (Lightning calls them in list order):

- ``PruningCallback``: ends the fit at an evaluation where a tuning pruner's rule says so;
- ``LiveFlushCallback``: sends new curve points to a live run (``runners.live``);
- ``StopRequestCallback``: ends the fit at the next batch boundary once a stop is requested
  (the sweep's first Ctrl-C or SIGTERM sets the event, ``runners.sweep.StopOnSignals``);
- ``KeepSignalHandlers``: keeps this process's own SIGTERM handling in force while Lightning
  trains (why: its docstring).

``fit`` is ``trainer.fit`` with what Lightning's own signal handling would still do undone.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from gradatlas.runners.instrument import GradientInstrument

# (eval step, each member's validation metrics or None for a member no longer training) -> stop?
EarlyStopRule = Callable[[int, list[dict[str, float] | None]], bool]


class PruningCallback(pl.Callback):
    """Asks ``rule`` after each evaluation during training whether to end the fit there (a
    pruned tuning trial: the compute it would still take is saved). ``stopped_at``: the eval
    step at which it did, or None. The step-0 evaluation is never asked (nothing trained)."""

    def __init__(self, instrument: GradientInstrument, rule: EarlyStopRule):
        self.instrument, self.rule = instrument, rule
        self.stopped_at: int | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        evaluated = self.instrument.step_eval
        if evaluated is None or self.stopped_at is not None:
            return
        step, metrics, alive = evaluated
        values = [
            {k: float(v[i]) for k, v in metrics.items()} if member_alive else None
            for i, member_alive in enumerate(alive)
        ]
        if self.rule(step, values):
            self.stopped_at = step
            trainer.should_stop = True


class LiveFlushCallback(pl.Callback):
    """After each evaluation during training but the last (whose points come with the record),
    lets ``live`` (a ``runners.live.LiveSink``) send what is new, at most every ``every_s``."""

    def __init__(self, instrument: GradientInstrument, live: Any, max_points: int):
        self.instrument, self.live, self.max_points = instrument, live, max_points

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        evaluated = self.instrument.step_eval
        if evaluated is not None and evaluated[0] < self.instrument.max_steps:
            self.live.tick(self.instrument, self.max_points)


class StopRequestCallback(pl.Callback):
    """Ends the fit at the next batch boundary once ``event`` is set (by a signal handler or any
    thread); ``stopped`` says it did, so the trial is recorded as interrupted."""

    def __init__(self, event: threading.Event):
        self.event = event
        self.stopped = False

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if self.event.is_set():
            self.stopped = True
            trainer.should_stop = True


class KeepSignalHandlers(pl.Callback):
    """Puts back, once training starts, the signal handlers this process had when the fit began.

    Why: Lightning 2.x installs its own SIGTERM handler for every ``fit`` (its signal connector;
    no Trainer argument, plugin or cluster environment turns it off: the environment only
    decides the SLURM requeue handler on SIGUSR1). It chains the handler it finds, so ours still
    runs, but it also makes the loop raise ``SIGTERMException`` at the next batch end, a
    ``SystemExit`` with status 0: a scheduler would take a stopped sweep for a finished one,
    and the trial would end before the sweep can record it. The sweep owns SIGINT/SIGTERM
    (first: stop at the next step and record; second: abort), so its handler must be the one in
    force. Lightning installs its handler after ``on_fit_start`` and before ``on_train_start``
    and restores what it found when the fit ends, so taking the handlers at the first hook and
    putting them back at the second leaves the process as it was for the whole of training.

    Only the main thread may set signal handlers (Python's rule, which Lightning follows too):
    a fit in another thread has nothing to put back.
    """

    def __init__(self) -> None:
        self._handlers: dict[signal.Signals, Any] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            self._handlers = {}
            return
        settable = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
        # None: a handler not installed from Python, which Python cannot put back.
        found = {s: signal.getsignal(s) for s in settable}
        self._handlers = {s: h for s, h in found.items() if h is not None}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for signum, handler in self._handlers.items():
            if signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)


def fit(
    trainer: pl.Trainer, module: pl.LightningModule, loader: Any, stop: StopRequestCallback | None
) -> None:
    """``trainer.fit``, with the two ways Lightning's own signal handling ends a fit turned
    back into ours.

    - A SIGTERM that reached Lightning's handler is the stop request it also was. That happens
      only in the moment between Lightning installing its handler and ``KeepSignalHandlers``
      putting ours back: Lightning's handler chains ours, so the stop event is set, and the fit
      ends at the first batch end by ``SIGTERMException`` instead of by ``StopRequestCallback``;
      everything the instrument recorded up to there stands. Without a stop event of ours the
      exception goes on, as Lightning meant it.
    - A ``KeyboardInterrupt`` raised during the fit (the sweep's abort on a second signal, with
      the exit status the shell expects) is what Lightning turns into ``sys.exit(1)``: the
      interrupt goes on instead, as it was raised.
    """
    try:
        trainer.fit(module, train_dataloaders=loader)
    except SIGTERMException:
        if stop is None or not stop.event.is_set():
            raise
        stop.stopped = True
    except SystemExit as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise exc.__context__ from None
        raise
