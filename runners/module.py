"""The research side of a trial as a LightningModule: model, loss, optimizer, schedule.

Devices, precision, loops and clipping belong to the Trainer; statistics belong to the
``GradientInstrument`` callback. Nothing here knows about MLflow or the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from gradatlas.models import GradModel
from gradatlas.optim import SCHEDULES, build_optimizer, natively_decoupled
from gradatlas.suites.spec import OptimSpec, TrainSpec


def loss_for(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy on logits for classification, mean squared error for regression."""
    return F.cross_entropy if task == "classification" else F.mse_loss


class TrialModule(pl.LightningModule):
    def __init__(
        self,
        model: GradModel,
        optim: OptimSpec,
        train: TrainSpec,
        total_steps: int,
        task: str,
    ):
        super().__init__()
        self.model = model
        self.optim = optim
        self.train_spec = train
        self.schedule = train.schedule
        self.total_steps = total_steps
        self.loss_fn = loss_for(task)
        # Decoupled (AdamW-style) decay for optimizers that only know the coupled kind.
        wd = optim.weight_decay
        self.decoupled_wd = (
            wd.value
            if wd.mode == "decoupled" and not natively_decoupled(optim.optimizer.name)
            else 0.0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        smoothing = self.train_spec.label_smoothing
        if smoothing and y.dim() == 1:  # the training loss only: evaluation stays plain CE
            return F.cross_entropy(self.model(x), y, label_smoothing=smoothing)
        return self.loss_fn(self.model(x), y)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model.parameters(), self.optim)
        multiplier = SCHEDULES.build(self.schedule.name, self.total_steps, **self.schedule.options)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.decoupled_wd:
            with torch.no_grad():
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        if p.dim() > 1:  # weights only: biases and norm gains are not decayed
                            p.mul_(1 - group["lr"] * self.decoupled_wd)

    @torch.no_grad()
    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096
    ) -> dict[str, torch.Tensor]:
        """Mean loss (and accuracy) over a whole split, in eval mode, without leaving the device."""
        was_training = self.model.training
        self.model.eval()
        dtype = next(self.model.parameters()).dtype  # "64" precision trains in float64
        x = x.to(dtype)
        total = torch.zeros((), device=x.device, dtype=torch.float64)
        correct = torch.zeros((), device=x.device, dtype=torch.float64)
        for start in range(0, len(x), chunk):
            out = self.model(x[start : start + chunk]).float()
            target = y[start : start + chunk]
            total += self.loss_fn(out, target, reduction="sum") / (
                1 if out.dim() == 1 or target.dim() == 1 else out.shape[-1]
            )
            if target.dim() == 1:
                correct += (out.argmax(-1) == target).sum()
        self.model.train(was_training)
        metrics = {"loss": total / len(x)}
        if y.dim() == 1:
            metrics["acc"] = correct / len(x)
        return metrics
