"""Gradient instrumentation as a Lightning callback, cheap enough to leave on.

Why it looks like this: calling ``self.log`` per step for per-layer norms tripled a small run's
time, and MLflow costs seconds when fed metric by metric. So every statistic goes into tensors
preallocated on the training device, the per-step work is one fused ``_foreach_norm`` over the
gradients, and nothing leaves the device until the trial ends (except the explosion check: every
step on CPU, where it is free, every ``every`` steps on an accelerator, where it syncs).

The step the optimizer applied, ``||theta_{t+1} - theta_t||`` over every trainable parameter, is
recorded every step the same way: the parameters are copied in place into one preallocated
buffer before the optimizer step and subtracted in place after it (``_foreach_copy_``,
``_foreach_sub_``), then one norm over the concatenated differences, per member. It is the
optimizer's own output (momentum, adaptive scaling, clipping and weight decay included), which
the gradient norm is not. (On one CPU thread it costs about as much as the gradient norm: the
ops are few, but on a CPU each is a dispatch per tensor.)

One instrument serves one model and K stacked seeds alike: every statistic carries a leading
member dimension (1 for a plain trial), the module says how to split a parameter into its
members (``split``) and which losses the step had (``member_losses``). A member that explodes
is frozen by the module and its record ends at that step, exactly where its unbatched trial
would have stopped; the trainer stops when every member has exploded.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from gradatlas.models import GradModel
from gradatlas.runners.outcome import explosion_mask, explosion_rule


class GradientInstrument(pl.Callback):
    """Records loss, global grad norm and global update norm every step, per-layer grad norms and
    update/weight ratios every ``every`` steps, validation metrics every ``eval_every`` steps,
    per member; freezes a member on explosion and stops the trainer when none is left.

    What acts on an evaluation (pruning, live flushing: ``runners.callbacks``) is another
    callback, after this one in the Trainer's list, reading ``step_eval``.

    The global gradient norm is recorded twice where the trial clips: raw (before clipping,
    ``step_grad_norm_raw``) and as applied (``step_grad_norm``, what each member's clipping
    leaves: the norm the explosion rule reads). Without clipping they are one tensor.
    """

    # The loss tests of the explosion rule (runners/outcome.py): off unless given.
    thresholds: dict[str, Any] | None = None
    chance_loss: float | None = None

    def __init__(
        self,
        model: GradModel,
        max_steps: int,
        every: int,
        eval_every: int,
        evaluate: Any,
        explode_grad_norm: float,
        grad_overflow_skipped: bool = False,
        *,
        clip_mode: str = "none",
        clip_max: float | list[float] | None = None,
        thresholds: dict[str, Any] | None = None,
        chance_loss: float | None = None,
    ):
        self.model = model
        self.max_steps = max_steps
        self.every = every
        self.eval_every = eval_every
        self.evaluate = evaluate  # () -> dict of (members,) tensors (val_loss, val_acc, ...)
        self.explode_grad_norm = explode_grad_norm
        self.grad_overflow_skipped = grad_overflow_skipped  # 16-mixed: see runners/outcome.py
        # How the Trainer (or the batched module, per member) clips after this callback has
        # read the gradient: "none", "norm" or "value", and the bound (one, or each member's).
        self.clip_mode = clip_mode if clip_max is not None else "none"
        self.clip_max = clip_max
        self.thresholds = dict(thresholds or {})  # the suite's outcomes block
        self.chance_loss = chance_loss  # chance level (runners/outcome.py), None: unknown
        self.layers = [m for _, m in model.weight_layers()]
        self.members = int(getattr(model, "members", 1))
        self.seconds = 0.0  # time spent inside this callback: instrumentation's cost
        self.alive = [True] * self.members  # not exploded
        self.steps_run = [0] * self.members
        # Layer weights' (members, layers) norms before the step of a layer record, until the
        # update ratio is taken after it; None between records.
        self._weight_norm_before: torch.Tensor | None = None
        self._before_taken = False  # ``_before`` holds this step's parameters, not yet subtracted
        self._checked_upto = 0
        # The evaluation the training step that just ended made, as appended to ``evals``
        # (step, metrics, alive), or None: what the callbacks after this one act on.
        self.step_eval: tuple[int, dict[str, torch.Tensor], list[bool]] | None = None
        self._host: dict[str, Any] | None = None  # the record in host memory, once trained

    @property
    def exploded(self) -> bool:
        """Every member has exploded (for one model: it has)."""
        return not any(self.alive)

    # -- set-up --------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        t0 = time.perf_counter()
        device = pl_module.device
        k = self.members
        n_records = self.max_steps // self.every + 2
        self.check_every_step = device.type == "cpu"
        self.split = pl_module.split
        # float64 training is recorded in float64 (its point is precision); else float32.
        self.dtype = (
            torch.float64
            if any(p.dtype == torch.float64 for p in pl_module.parameters())
            else torch.float32
        )
        full = {"device": device, "dtype": self.dtype}
        self.step_loss = torch.full((k, self.max_steps), float("nan"), **full)
        self.step_grad_norm = torch.full((k, self.max_steps), float("nan"), **full)
        self.step_grad_norm_raw = (
            torch.full((k, self.max_steps), float("nan"), **full)
            if self.clip_mode != "none"
            else self.step_grad_norm
        )
        self.step_update_norm = torch.full((k, self.max_steps), float("nan"), **full)
        self.layer_grad = torch.zeros((n_records, k, len(self.layers)), device=device)
        self.update_ratio = torch.zeros((n_records, k, len(self.layers)), device=device)
        self.layer_steps: list[int] = []
        # (step, each member's learning rate as a (members,) tensor, read after training)
        self.lr: list[tuple[int, torch.Tensor]] = []
        if isinstance(self.clip_max, list):  # fused members' own bounds, as a (K,) tensor
            self._bounds = torch.tensor(self.clip_max, device=device, dtype=self.dtype)
        # (step, metrics, which members were alive to be evaluated)
        self.evals: list[tuple[int, dict[str, torch.Tensor], list[bool]]] = [
            (0, self.evaluate(), list(self.alive))
        ]
        params = [p for p in pl_module.parameters() if p.requires_grad]
        weight_ids = {id(m.weight): i for i, m in enumerate(self.layers)}
        self.params = params
        self.weight_index = torch.tensor(
            [i for i, p in enumerate(params) if id(p) in weight_ids], device=device
        )
        position = {id(p): i for i, p in enumerate(params)}
        self.layer_positions = [position[id(m.weight)] for m in self.layers]  # layers' order
        # theta_t, copied in before each optimizer step; theta_t - theta_{t+1} after it
        self._before = [p.detach().clone() for p in params]
        self.seconds += time.perf_counter() - t0

    def _member_norms(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """(members, len(tensors)) 2-norms of each tensor's member slices: one fused call."""
        parts = [piece for t in tensors for piece in self.split(t)]
        norms = torch.stack(torch._foreach_norm(parts)).to(self.dtype)
        return norms.view(len(tensors), self.members).T

    # -- every step ----------------------------------------------------------------------------
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        """Gradients are complete here and not yet clipped: the honest (raw) gradient norm, and
        the norm the clipping that follows will leave (computed, on the device)."""
        t0 = time.perf_counter()
        step = trainer.global_step
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        norms = self._member_norms(grads)
        if step < self.max_steps:
            raw = norms.norm(dim=1)
            self.step_grad_norm_raw[:, step] = raw
            if self.clip_mode != "none":
                self.step_grad_norm[:, step] = self._applied_norm(raw, grads)
        with torch.no_grad():
            torch._foreach_copy_(self._before, self.params)
        self._before_taken = True
        if step % self.every == 0:
            rec = len(self.layer_steps)
            self.layer_steps.append(step)
            self.layer_grad[rec] = norms[:, self.weight_index]
            self._weight_norm_before = self._member_norms(
                [self._before[i] for i in self.layer_positions]
            )
            self.lr.append((step, pl_module.member_lr(optimizer)))
        self.seconds += time.perf_counter() - t0

    def _applied_norm(self, raw: torch.Tensor, grads: list[torch.Tensor]) -> torch.Tensor:
        """(members,) global gradient norms after clipping. Norm clipping scales each member's
        gradient by ``min(1, max / (raw + 1e-6))`` (``clip_grad_norm_``'s coefficient, and the
        batched module's per member); value clipping clamps each element to ``[-max, max]``,
        whose norm is measured on the clamped copy."""
        if isinstance(self.clip_max, list):
            bounds = self._bounds
            if self.clip_mode == "norm":
                return raw * (bounds / (raw + 1e-6)).clamp(max=1.0)
            shaped = [bounds.to(g.dtype).view(-1, *([1] * (g.dim() - 1))) for g in grads]
            clamped = [g.clamp(min=-b, max=b) for g, b in zip(grads, shaped, strict=True)]
            return self._member_norms(clamped).norm(dim=1)
        bound = float(self.clip_max)  # type: ignore[arg-type]
        if self.clip_mode == "norm":
            return raw * (bound / (raw + 1e-6)).clamp(max=1.0)
        clamped = torch._foreach_clamp_max(torch._foreach_clamp_min(grads, -bound), bound)
        return self._member_norms(clamped).norm(dim=1)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        t0 = time.perf_counter()
        step = trainer.global_step - 1  # the step that just ran
        for k, alive in enumerate(self.alive):
            if alive:
                self.steps_run[k] = step + 1
        if 0 <= step < self.max_steps:
            self.step_loss[:, step] = pl_module.member_losses(outputs).to(self.dtype)
        if self._before_taken:
            self._record_update(step)
        if self._weight_norm_before is not None:
            rec = len(self.layer_steps) - 1
            # ``_before`` now holds theta_t - theta_{t+1}: its layer weights' norms are |dw|
            delta = self._member_norms([self._before[i] for i in self.layer_positions])
            self.update_ratio[rec] = delta / self._weight_norm_before.clamp_min(1e-30)
            self._weight_norm_before = None
            if not self.check_every_step:
                self._check_explosion(trainer, pl_module, step)
        if self.check_every_step:
            self._check_explosion(trainer, pl_module, step)
        last = step + 1 >= self.max_steps
        evaluated = not self.exploded and ((step + 1) % self.eval_every == 0 or last)
        self.step_eval = None
        if evaluated:
            self.step_eval = (step + 1, self.evaluate(), list(self.alive))
            self.evals.append(self.step_eval)
        self.seconds += time.perf_counter() - t0

    def _record_update(self, step: int) -> None:
        """The global norm of the update just applied, per member, over every trainable
        parameter. In place: ``_before`` becomes theta_t - theta_{t+1}."""
        k = self.members
        with torch.no_grad():
            torch._foreach_sub_(self._before, self.params)
            if 0 <= step < self.max_steps:
                flat = torch.cat([d.reshape(k, -1) for d in self._before], dim=1)
                self.step_update_norm[:, step] = torch.linalg.vector_norm(flat, dim=1)
        self._before_taken = False

    def _check_explosion(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int
    ) -> None:
        window = slice(self._checked_upto, step + 1)  # steps not yet checked
        self._checked_upto = step + 1
        loss, gn = self.step_loss[:, window], self.step_grad_norm[:, window]
        bad = explosion_mask(
            loss,
            gn,
            self.explode_grad_norm,
            self.grad_overflow_skipped,
            start=self.step_loss[:, :1],
            first_step=window.start,
            **explosion_rule(self.thresholds or {}, self.chance_loss),
        )
        rows = bad.any(dim=1).tolist()  # the one host sync of the check
        newly = [bool(r) and a for r, a in zip(rows, self.alive, strict=True)]
        if any(newly):
            for k, new in enumerate(newly):
                if new:
                    self.alive[k] = False
            pl_module.freeze(torch.tensor(newly))
            if self.exploded:
                trainer.should_stop = True

    # -- results -------------------------------------------------------------------------------
    def arrays(self, member: int = 0) -> dict[str, Any]:
        """Everything recorded for one member, in host memory, trimmed to the steps that member
        ran (an exploded member's record ends where its unbatched trial would stop)."""
        host = self._host_record()
        n = self.steps_run[member]
        r = sum(1 for s in self.layer_steps if s < n)
        alive = [i for i, (_, _, was) in enumerate(self.evals) if was[member]]
        return {
            "step_loss": host["step_loss"][member, :n],
            "step_grad_norm": host["step_grad_norm"][member, :n],
            "step_grad_norm_raw": host["step_grad_norm_raw"][member, :n],
            "step_update_norm": host["step_update_norm"][member, :n],
            "layer_steps": np.asarray(self.layer_steps[:r], dtype=np.int64),
            "layer_grad_norm": host["layer_grad"][:r, member],
            "update_ratio": host["update_ratio"][:r, member],
            "lr": [
                (s, row[member]) for (s, _), row in zip(self.lr, host["lr"], strict=True) if s < n
            ],
            "eval_steps": np.asarray([self.evals[i][0] for i in alive], dtype=np.int64),
            "eval": {key: values[alive, member] for key, values in host["eval"].items()},
        }

    def _host_record(self) -> dict[str, Any]:
        """The whole record of every member moved to host memory once (after training), as
        float64 arrays.

        Why once: on a GPU each move is a sync, and member by member it was about 18 per
        member (6 buffers and a scalar per evaluation and metric), 2,000 for a fused unit of
        108 members; whole tensors are one move per buffer for the group."""
        if self._host is None:

            def host(t: torch.Tensor) -> np.ndarray:
                return t.double().cpu().numpy()

            buffers = ("step_loss", "step_grad_norm", "step_update_norm")
            self._host = {name: host(getattr(self, name)) for name in buffers}
            self._host["step_grad_norm_raw"] = (  # one tensor where nothing clips
                self._host["step_grad_norm"]
                if self.step_grad_norm_raw is self.step_grad_norm
                else host(self.step_grad_norm_raw)
            )
            rows = len(self.layer_steps)
            self._host["layer_grad"] = host(self.layer_grad[:rows])
            self._host["update_ratio"] = host(self.update_ratio[:rows])
            # (records, members) learning rates as floats: one read, whatever their device
            self._host["lr"] = torch.stack([v for _, v in self.lr]).tolist() if self.lr else []
            keys = self.evals[0][1].keys()
            self._host["eval"] = {  # (evaluations, members) per metric
                key: host(torch.stack([m[key].reshape(self.members) for _, m, _ in self.evals]))
                for key in keys
            }
        return self._host
