"""Gradient instrumentation as a Lightning callback, cheap enough to leave on.

Why it looks like this: calling ``self.log`` per step for per-layer norms tripled a small run's
time, and MLflow costs seconds when fed metric by metric. So every statistic goes into tensors
preallocated on the training device, the per-step work is one fused ``_foreach_norm`` over the
gradients, and nothing leaves the device until the trial ends (except the explosion check: every
step on CPU, where it is free, every ``every`` steps on an accelerator, where it syncs).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from gradatlas.models import GradModel
from gradatlas.runners.outcome import explosion_mask


class GradientInstrument(pl.Callback):
    """Records loss and global grad norm every step, per-layer grad norms and update/weight
    ratios every ``every`` steps, validation metrics every ``eval_every`` steps, and stops the
    trainer on explosion or when ``stop`` is set (Ctrl-C)."""

    def __init__(
        self,
        model: GradModel,
        max_steps: int,
        every: int,
        eval_every: int,
        evaluate: Any,
        explode_grad_norm: float,
        stop: threading.Event | None = None,
        grad_overflow_skipped: bool = False,
    ):
        self.model = model
        self.max_steps = max_steps
        self.every = every
        self.eval_every = eval_every
        self.evaluate = evaluate  # () -> dict of 0-d tensors (val_loss, val_acc, ...)
        self.explode_grad_norm = explode_grad_norm
        self.stop = stop
        self.grad_overflow_skipped = grad_overflow_skipped  # 16-mixed: see runners/outcome.py
        self.layers = [m for _, m in model.weight_layers()]
        self.seconds = 0.0  # time spent inside this callback: instrumentation's cost
        self.exploded = False
        self.interrupted = False
        self.steps_run = 0
        self._snapshot: list[torch.Tensor] | None = None
        self._checked_upto = 0

    # -- set-up --------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        t0 = time.perf_counter()
        device = pl_module.device
        n_records = self.max_steps // self.every + 2
        self.check_every_step = device.type == "cpu"
        self.step_loss = torch.full((self.max_steps,), float("nan"), device=device)
        self.step_grad_norm = torch.full((self.max_steps,), float("nan"), device=device)
        self.layer_grad = torch.zeros((n_records, len(self.layers)), device=device)
        self.update_ratio = torch.zeros((n_records, len(self.layers)), device=device)
        self.layer_steps: list[int] = []
        self.lr: list[tuple[int, float]] = []
        self.evals: list[tuple[int, dict[str, torch.Tensor]]] = [(0, self.evaluate())]
        params = [p for p in pl_module.parameters() if p.requires_grad]
        weight_ids = {id(m.weight): i for i, m in enumerate(self.layers)}
        self.params = params
        self.weight_index = torch.tensor(
            [i for i, p in enumerate(params) if id(p) in weight_ids], device=device
        )
        self.seconds += time.perf_counter() - t0

    # -- every step ----------------------------------------------------------------------------
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        """Gradients are complete here and not yet clipped: the honest gradient norm."""
        t0 = time.perf_counter()
        step = trainer.global_step
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        norms = torch.stack(torch._foreach_norm(grads)).float()
        if step < self.max_steps:
            self.step_grad_norm[step] = norms.norm()
        if step % self.every == 0:
            rec = len(self.layer_steps)
            self.layer_steps.append(step)
            self.layer_grad[rec] = norms[self.weight_index]
            self._snapshot = [m.weight.detach().clone() for m in self.layers]
            self.lr.append((step, float(optimizer.param_groups[0]["lr"])))
        self.seconds += time.perf_counter() - t0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        t0 = time.perf_counter()
        step = trainer.global_step - 1  # the step that just ran
        self.steps_run = step + 1
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if 0 <= step < self.max_steps:
            self.step_loss[step] = loss.detach().float()
        if self._snapshot is not None:
            rec = len(self.layer_steps) - 1
            before = self._snapshot
            after = [m.weight.detach() for m in self.layers]
            delta = torch.stack(torch._foreach_norm(torch._foreach_sub(after, before)))
            base = torch.stack(torch._foreach_norm(before)).clamp_min(1e-30)
            self.update_ratio[rec] = (delta / base).float()
            self._snapshot = None
            if not self.check_every_step:
                self._check_explosion(trainer, step)
        if self.check_every_step:
            self._check_explosion(trainer, step)
        last = step + 1 >= self.max_steps
        if not self.exploded and ((step + 1) % self.eval_every == 0 or last):
            self.evals.append((step + 1, self.evaluate()))
        if self.stop is not None and self.stop.is_set():
            self.interrupted = True
            trainer.should_stop = True
        self.seconds += time.perf_counter() - t0

    def _check_explosion(self, trainer: pl.Trainer, step: int) -> None:
        window = slice(self._checked_upto, step + 1)  # steps not yet checked
        self._checked_upto = step + 1
        loss, gn = self.step_loss[window], self.step_grad_norm[window]
        bad = explosion_mask(loss, gn, self.explode_grad_norm, self.grad_overflow_skipped)
        if bool(bad.any()):  # the one host sync of the check
            self.exploded = True
            trainer.should_stop = True

    # -- results -------------------------------------------------------------------------------
    def arrays(self) -> dict[str, Any]:
        """Everything recorded, moved to host memory once, trimmed to the steps that ran."""
        n, r = self.steps_run, len(self.layer_steps)
        eval_keys = self.evals[0][1].keys()
        return {
            "step_loss": self.step_loss[:n].double().cpu().numpy(),
            "step_grad_norm": self.step_grad_norm[:n].double().cpu().numpy(),
            "layer_steps": np.asarray(self.layer_steps[:r], dtype=np.int64),
            "layer_grad_norm": self.layer_grad[:r].double().cpu().numpy(),
            "update_ratio": self.update_ratio[:r].double().cpu().numpy(),
            "lr": self.lr,
            "eval_steps": np.asarray([s for s, _ in self.evals], dtype=np.int64),
            "eval": {
                k: np.asarray([float(m[k]) for _, m in self.evals], dtype=np.float64)
                for k in eval_keys
            },
        }
