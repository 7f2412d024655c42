"""The trial's Lightning callbacks, each on its own, in real tiny fits.

A real model, module and ``GradientInstrument`` train under a real Trainer on digits; each test
adds the one callback it checks (after the instrument, as ``run_trials`` does): pruning stops at
the eval step its rule names, live flushing sends every evaluation but the last, a stop request
ends the fit at a batch boundary whether another thread or a real SIGTERM makes it, and our
SIGTERM handler stays in force while Lightning trains.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from gradatlas.models import build_model
from gradatlas.runners.callbacks import (
    KeepSignalHandlers,
    LiveFlushCallback,
    PruningCallback,
    StopRequestCallback,
    fit,
)
from gradatlas.runners.instrument import GradientInstrument
from gradatlas.runners.live import POINTS, START, LiveSink
from gradatlas.runners.loader import TensorBatches, trial_data
from gradatlas.runners.module import TrialModule
from gradatlas.runners.trial import quiet_lightning, set_threads
from gradatlas.suites import expand_suite

# Lightning 2.6's own _pytree helper uses a torch API deprecated in torch 2.14 (run_trials
# filters it around its fit for the same reason): nothing here calls it.
pytestmark = pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\).*")

SUITE = {
    "name": "callbacks",
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "width": 8, "depth": 2},
    "train": {"steps": 20, "batch_size": 32, "lr": 0.05, "eval_every": 5},
    "instrument": {"every": 5, "max_points": 50, "probe_batch": 32},
}
MANY_STEPS = 20_000  # a fit that a missed stop request would let run for many seconds


@dataclass
class Parts:
    trial: Any
    module: TrialModule
    instrument: GradientInstrument
    loader: TensorBatches
    steps: int


def parts(steps: int = 20) -> Parts:
    """A real trial's module and instrument, wired as ``run_trials`` wires them."""
    set_threads(1)
    quiet_lightning()
    trial = expand_suite(SUITE, source="callbacks.yaml").trials[0]
    spec = trial.spec
    data = trial_data(spec)
    pl.seed_everything(spec.seed, workers=False, verbose=False)
    model = build_model(spec.model, data.input_shape, data.num_outputs)
    module = TrialModule(model, spec.optim, spec.train, steps, data.task)

    def evaluate() -> dict[str, Any]:
        return {f"val_{k}": v for k, v in module.evaluate(data.x_val, data.y_val).items()}

    instrument = GradientInstrument(
        model,
        max_steps=steps,
        every=spec.instrument.every,
        eval_every=spec.train.eval_every,
        evaluate=evaluate,
        explode_grad_norm=spec.outcomes.explode_grad_norm,
    )
    loader = TensorBatches(data.x_train, data.y_train, spec.train.batch_size, seed=spec.seed)
    return Parts(trial, module, instrument, loader, steps)


def trainer(p: Parts, *callbacks: pl.Callback) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=p.steps,
        max_epochs=-1,
        logger=False,
        callbacks=[p.instrument, *callbacks],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )


@contextlib.contextmanager
def sigterm_sets(event: threading.Event) -> Iterator[Any]:
    """This process's own SIGTERM handler, as the sweep's: it sets ``event``."""

    def handler(signum: int, frame: Any) -> None:
        event.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- pruning -----------------------------------------------------------------------------------
def test_pruning_stops_at_the_eval_step_the_rule_names():
    p = parts()
    asked: list[tuple[int, float]] = []

    def rule(step: int, values: list[dict[str, float] | None]) -> bool:
        (member,) = values
        assert member is not None
        asked.append((step, member["val_loss"]))
        return step == 10

    pruning = PruningCallback(p.instrument, rule)
    fit(trainer(p, pruning), p.module, p.loader, None)
    assert pruning.stopped_at == 10 and p.instrument.steps_run == [10]
    # Asked at each evaluation during training, never at step 0, with the instrument's values.
    recorded = {s: float(m["val_loss"][0]) for s, m, _ in p.instrument.evals}
    assert [s for s, _ in asked] == [5, 10]
    assert all(recorded[s] == v for s, v in asked)


def test_pruning_that_never_fires_leaves_the_fit_alone():
    p = parts()
    pruning = PruningCallback(p.instrument, lambda step, values: False)
    fit(trainer(p, pruning), p.module, p.loader, None)
    assert pruning.stopped_at is None and p.instrument.steps_run == [20]


# -- live flushing -----------------------------------------------------------------------------
def test_live_flush_sends_each_evaluation_but_the_last():
    p = parts()
    sent: list[dict[str, Any]] = []
    live = LiveSink(sent.extend, every_s=0.0)
    live.started([p.trial], started_at=time.time(), device="cpu", threads=1)
    fit(trainer(p, LiveFlushCallback(p.instrument, live, 50)), p.module, p.loader, None)
    assert [m["t"] for m in sent] == [START, POINTS, POINTS, POINTS]  # evaluations 5, 10, 15
    val_steps = [s for m in sent[1:] for key, _, s in m["points"] if key == "val_loss"]
    assert val_steps == [0, 5, 10, 15]  # step 20's comes with the record
    assert live.flushes == 3


# -- stop requests -----------------------------------------------------------------------------
def test_a_stop_request_from_another_thread_ends_the_fit_at_a_batch_boundary():
    p = parts(MANY_STEPS)
    stop = StopRequestCallback(threading.Event())
    threading.Timer(0.3, stop.event.set).start()
    fit(trainer(p, stop), p.module, p.loader, stop)
    (ran,) = p.instrument.steps_run
    assert stop.stopped and 0 < ran < MANY_STEPS
    # The record ends at a whole step: its loss is there, the next step's is not.
    assert p.instrument.step_loss[0, ran - 1].isfinite() and p.instrument.step_loss[0, ran].isnan()


def test_a_stop_request_set_before_the_fit_ends_it_after_one_step():
    p = parts()
    stop = StopRequestCallback(threading.Event())
    stop.event.set()
    fit(trainer(p, stop), p.module, p.loader, stop)
    assert stop.stopped and p.instrument.steps_run == [1]


def test_a_real_sigterm_stops_the_fit_through_our_handler():
    """SIGTERM from another thread mid-fit: our handler sets the event, the fit ends at a batch
    boundary and returns (no SystemExit), and the handler is ours again afterwards."""
    p = parts(MANY_STEPS)
    stop = StopRequestCallback(threading.Event())
    with sigterm_sets(stop.event) as ours:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        fit(trainer(p, KeepSignalHandlers(), stop), p.module, p.loader, stop)
        assert signal.getsignal(signal.SIGTERM) is ours
    assert stop.stopped and 0 < p.instrument.steps_run[0] < MANY_STEPS


class SeeHandler(pl.Callback):
    """Which SIGTERM handler is in force while the fit trains."""

    seen: Any = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.seen = signal.getsignal(signal.SIGTERM)


@pytest.mark.parametrize("keep", [True, False])
def test_our_sigterm_handler_stays_in_force_while_lightning_trains(keep):
    """With ``KeepSignalHandlers`` our handler is the one in force during training; without it
    Lightning's is (so the guard is needed while this Lightning installs its own)."""
    p = parts()
    see = SeeHandler()
    extra = [KeepSignalHandlers()] if keep else []
    with sigterm_sets(threading.Event()) as ours:
        fit(trainer(p, *extra, see), p.module, p.loader, None)
        assert signal.getsignal(signal.SIGTERM) is ours  # Lightning restores it either way
    assert (see.seen is ours) == keep


class SigtermAtTrainStart(pl.Callback):
    """A SIGTERM in the moment after Lightning installed its handler and before
    ``KeepSignalHandlers`` (after this callback) puts ours back."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        signal.raise_signal(signal.SIGTERM)


def test_a_sigterm_lightning_caught_is_still_a_stop_request():
    p = parts()
    stop = StopRequestCallback(threading.Event())
    with sigterm_sets(stop.event):
        fit(trainer(p, SigtermAtTrainStart(), KeepSignalHandlers(), stop), p.module, p.loader, stop)
    assert stop.stopped and p.instrument.steps_run == [1]
    # Without ``fit``, Lightning's handler ends the same fit with a SystemExit of status 0.
    p = parts()
    stop = StopRequestCallback(threading.Event())
    with sigterm_sets(stop.event), pytest.raises(SIGTERMException):
        trainer(p, SigtermAtTrainStart(), KeepSignalHandlers(), stop).fit(p.module, p.loader)


class Abort(KeyboardInterrupt):
    """What the sweep's handler raises on a second signal (``runners.sweep.Interrupted``)."""


def test_an_abort_during_the_fit_leaves_it_as_raised_and_sigint_ours():
    """A handler that aborts mid-fit: the interrupt leaves ``fit`` as raised (Lightning alone
    would turn it into ``sys.exit(1)``, losing the exit status), and SIGINT is not left ignored
    (Lightning ignores it on a KeyboardInterrupt, then restores what it found)."""

    def abort(signum: int, frame: Any) -> None:
        raise Abort

    p = parts(MANY_STEPS)
    sigint = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, abort)
    try:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        with pytest.raises(Abort):
            fit(trainer(p, KeepSignalHandlers()), p.module, p.loader, None)
        assert signal.getsignal(signal.SIGINT) is sigint
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, sigint)
    assert 0 < p.instrument.steps_run[0] < MANY_STEPS
