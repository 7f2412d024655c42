"""The research side of a trial as a LightningModule: model, loss, optimizer, schedule.

Devices, precision, loops and clipping belong to the Trainer; statistics belong to the
``GradientInstrument`` callback. Nothing here knows about MLflow or the suite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from gradatlas.models import GradModel
from gradatlas.optim import SCHEDULES, build_optimizer, natively_decoupled
from gradatlas.suites.spec import OptimSpec, TrainSpec


def loss_for(task: str, loss: str = "cross_entropy") -> Callable[..., torch.Tensor]:
    """The trial's loss on (outputs, targets), reduced like torch's losses (``reduction``):
    regression trains on mean squared error; classification on softmax + cross-entropy on the
    logits (``loss: cross_entropy``) or on ``one_hot_mse`` (``loss: mse``)."""
    if task != "classification":
        return F.mse_loss
    return one_hot_mse if loss == "mse" else F.cross_entropy


def one_hot_mse(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error between the raw logits (no softmax) and the one-hot target of the
    class labels ``y``, averaged over every element (examples x classes) as ``F.mse_loss`` is.
    Accuracy stays the logits' argmax."""
    target = F.one_hot(y, out.shape[-1]).to(out.dtype)
    return F.mse_loss(out, target, reduction=reduction)


class TrialModule(pl.LightningModule):
    """One model, one seed: today's trial. ``StackedTrialModule`` is the same for K seeds."""

    members = 1  # seeds trained by this module
    member_dims = 0  # leading seed dimensions of every parameter

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
        self.task = task
        self.loss_fn = loss_for(task, train.loss)
        # Elementwise losses (MSE: regression, or classification against one-hot targets) are
        # means over outputs too; cross-entropy is one number per example.
        self.per_output = self.loss_fn is not F.cross_entropy
        if train.loss != "cross_entropy" and (task != "classification" or train.label_smoothing):
            raise ValueError(  # validation says so first (suites.levels.check_loss)
                f"loss {train.loss} needs a classification task without label smoothing"
            )
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

    def member_lr(self, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """(members,) float64: the learning rate each member's next step uses (the instrument
        records it, and reads its records on the host once, after training: where the rates
        live on the device, as in the member optimizer, a read per record would be a sync)."""
        lr = float(optimizer.param_groups[0]["lr"])
        return torch.full((self.members,), lr, dtype=torch.float64)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.decoupled_wd:
            with torch.no_grad():
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        # weights only: biases and norm gains are not decayed
                        if p.dim() > 1 + self.member_dims:
                            p.mul_(1 - group["lr"] * self.decoupled_wd)

    # -- what the instrument reads, the same for one model and for K stacked ones ------------
    def member_losses(self, outputs: Any) -> torch.Tensor:
        """(members,) training losses of the step that just ran, detached."""
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        return loss.detach().reshape(1)

    def split(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """A parameter (or its gradient) as one tensor per member."""
        return [tensor]

    def freeze(self, members: torch.Tensor) -> None:
        """Stop updating the exploded ``members`` (a bool mask); one model simply stops."""

    @torch.no_grad()
    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096
    ) -> dict[str, torch.Tensor]:
        """Each member's mean loss (and accuracy) over a whole split, in eval mode, without
        leaving the device: (members,) tensors."""
        was_training = self.model.training
        self.model.eval()
        dtype = next(self.model.parameters()).dtype  # "64" precision trains in float64
        accumulate = torch.float64 if dtype == torch.float64 else torch.float32
        x = x.to(dtype)
        total = torch.zeros(self.members, device=x.device, dtype=torch.float64)
        correct = torch.zeros(self.members, device=x.device, dtype=torch.float64)
        for start in range(0, len(x), chunk):
            loss_sum, right = self._score(
                x[start : start + chunk], y[start : start + chunk], accumulate
            )
            total += loss_sum
            correct += right
        self.model.train(was_training)
        metrics = {"loss": total / len(x)}
        if y.dim() == 1:
            metrics["acc"] = correct / len(x)
        return metrics

    def _score(
        self, x: torch.Tensor, target: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, correct count) of one chunk, per member."""
        out = self.model(x).to(dtype)
        loss = self.loss_fn(out, target, reduction="sum") / (
            out.shape[-1] if self.per_output and out.dim() > 1 else 1
        )
        right = (
            (out.argmax(-1) == target).sum()
            if target.dim() == 1
            else torch.zeros((), device=x.device)
        )
        return loss.reshape(1), right.reshape(1)


def optimizer_setting(spec: Any) -> str:
    """A trial's optimizer setting (its optimizer and schedule) as one comparable key: members
    whose keys all agree train under torch's own optimizer, else under a ``MemberOptimizer``."""
    return repr((spec.optim.to_config(), spec.train.schedule))


def clip_bounds(specs: Sequence[Any]) -> float | list[float] | None:
    """The members' gradient-clipping bound: one number when they share it, else one per member
    (the clipping mode is part of the shape); None for no members."""
    bounds = [float(s.train.grad_clip.max) for s in specs]
    if not bounds:
        return None
    return bounds[0] if len(set(bounds)) == 1 else bounds


class StackedTrialModule(TrialModule):
    """K trials of one shape as one module over a stacked model (``models.stacked``): the seeds
    of one cell, or (fused) trials whose hyper-parameters differ too.

    Members never meet: the loss is the *sum* of each member's own mean loss (so each member's
    gradient is exactly its own), label smoothing and clipping bounds are per member
    (``configure_gradient_clipping``), and an exploded member is frozen (its parameters restored
    after every optimizer step) while the others go on. The optimizers are elementwise, so one
    optimizer over the stacked parameters gives every member its own trajectory: torch's own
    when the members share every optimizer setting (a cell's seeds), else a
    ``runners.member_optim.MemberOptimizer`` whose learning rates, schedules, options and
    weight decay are tensors over the members.
    """

    member_dims = 1

    def __init__(
        self,
        model: GradModel,
        *args: Any,
        member_specs: Sequence[Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(model, *args, **kwargs)
        self.members = model.members
        self.register_buffer("frozen", torch.zeros(self.members, dtype=torch.bool))
        self._frozen_values: list[torch.Tensor] | None = None
        specs = list(member_specs or [])
        if specs and len(specs) != self.members:
            raise ValueError(f"{len(specs)} member specs for a model of {self.members} members")
        # One optimizer setting for all (a cell's seeds): torch's optimizer, bit for bit as an
        # unbatched trial's. Otherwise each member's own (``member_optim``).
        settings = {optimizer_setting(s) for s in specs}
        self.member_optims = specs if len(settings) > 1 else None
        if self.member_optims is not None:
            self.decoupled_wd = 0.0  # the member optimizer applies each member's own
        smoothing = [float(s.train.label_smoothing) for s in specs] or [
            float(self.train_spec.label_smoothing)
        ]
        self.smoothing: float | torch.Tensor = (
            smoothing[0]
            if len(set(smoothing)) == 1
            else torch.tensor(smoothing, dtype=torch.float64)
        )
        bounds = clip_bounds(specs)
        self.clip_bounds = (
            torch.tensor(bounds, dtype=torch.float64) if isinstance(bounds, list) else None
        )

    def member_loss(
        self, out: torch.Tensor, y: torch.Tensor, smoothing: float | torch.Tensor = 0.0
    ) -> torch.Tensor:
        """(K,) mean loss of each member over its own batch: out (K, B, C), y (K, B[, T]).
        MSE (regression, or ``loss: mse`` against one-hot targets) is a mean over outputs too.
        ``smoothing``: one label smoothing for all members, or a (K,) tensor of each one's,
        computed as ``F.cross_entropy`` does (``(1 - e) * nll + e / C * sum of -log p``)."""
        k, b = out.shape[:2]
        if self.task == "classification" and not self.per_output:
            if isinstance(smoothing, torch.Tensor):
                logp = F.log_softmax(out, dim=-1)
                nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (K, B)
                eps = smoothing.to(out.device, out.dtype).view(k, 1)
                per = (1 - eps) * nll + (-logp.sum(dim=-1)) * (eps / out.shape[-1])
                return per.mean(dim=1)
            per = F.cross_entropy(
                out.reshape(k * b, -1),
                y.reshape(k * b),
                reduction="none",
                label_smoothing=smoothing,
            )
            return per.view(k, b).mean(dim=1)
        if self.task == "classification":
            y = F.one_hot(y, out.shape[-1]).to(out.dtype)
        return F.mse_loss(out, y, reduction="none").reshape(k, -1).mean(dim=1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        losses = self.member_loss(self.model(x), y, self.smoothing)
        return {"loss": losses.sum(), "member_loss": losses.detach()}

    def configure_optimizers(self) -> dict[str, Any]:
        if self.member_optims is None:
            return super().configure_optimizers()
        from gradatlas.runners.member_optim import build_member_optimizer

        optimizer = build_member_optimizer(
            self.model.parameters(),
            [s.optim for s in self.member_optims],
            [s.train.schedule for s in self.member_optims],
            self.total_steps,
        )
        return {"optimizer": optimizer}

    def member_lr(self, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        if self.member_optims is None:
            return super().member_lr(optimizer)
        return optimizer.member_lr()  # type: ignore[attr-defined]

    def member_losses(self, outputs: Any) -> torch.Tensor:
        return outputs["member_loss"]

    def split(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return list(tensor.unbind(0))

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Norm clipping per member: each member's gradient norm over all its parameters, the
        coefficient ``torch.nn.utils.clip_grad_norm_`` would give that member alone. Value
        clipping is elementwise, so Lightning's own is already per member."""
        if gradient_clip_val is None:
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        k = self.members
        bound: float | torch.Tensor = gradient_clip_val
        if self.clip_bounds is not None:  # fused members: each its own bound
            bound = self.clip_bounds.to(grads[0].device if grads else "cpu")
        if gradient_clip_algorithm != "norm":
            if not isinstance(bound, torch.Tensor):
                super().configure_gradient_clipping(optimizer, gradient_clip_val, "value")
                return
            for g in grads:
                b = bound.to(g.dtype).view(k, *([1] * (g.dim() - 1)))
                torch.clamp(g, min=-b, max=b, out=g)
            return
        if not grads:
            return
        squares = torch.stack(
            [torch.linalg.vector_norm(g.reshape(k, -1), dim=1) for g in grads], dim=1
        )
        total = torch.linalg.vector_norm(squares, dim=1)  # (K,)
        if isinstance(bound, torch.Tensor):
            bound = bound.to(total.dtype)
        coef = (bound / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(k, *([1] * (g.dim() - 1))).to(g.dtype))

    def freeze(self, members: torch.Tensor) -> None:
        self.frozen |= members.to(self.frozen.device)
        self._frozen_values = [p.detach().clone() for p in self.parameters()]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self._frozen_values is not None:  # frozen members: undo this step's update
            with torch.no_grad():
                for p, saved in zip(self.parameters(), self._frozen_values, strict=True):
                    p[self.frozen] = saved[self.frozen]

    def _score(
        self, x: torch.Tensor, target: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member on the same chunk: (K,) summed losses and correct counts."""
        k = self.members
        out = self.model(x.expand(k, *x.shape)).to(dtype)  # (K, n, C)
        target = target.expand(k, *target.shape)
        loss = self.member_loss(out, target) * out.shape[1]
        if target.dim() == 2:  # classification
            return loss, (out.argmax(-1) == target).sum(dim=1)
        return loss, torch.zeros(k, device=x.device)
