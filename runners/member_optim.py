"""One optimizer step for K stacked members that each have their own hyper-parameters.

Why it exists: a fused unit trains several *cells* of the same shape as one stacked model (every
parameter has a leading member dimension K, ``models/stacked.py``). Seeds of one cell can share
a plain ``torch.optim`` optimizer, because the optimizers of ``gradatlas.optim`` are elementwise;
different cells cannot, since their learning rate, schedule, momentum, betas, eps and weight
decay differ. ``MemberOptimizer`` keeps those as (K,) tensors on the parameters' device and
applies them by broadcasting, so one ``step()`` updates every member with no Python loop over
members and no host synchronisation (nothing in ``step()`` reads a tensor's value on the host).

What it promises: member k follows the trajectory its own unfused trial would follow, i.e.
``gradatlas.optim.build_optimizer`` + a ``LambdaLR`` stepped once per optimizer step + the
training module's decoupled decay before each step. The arithmetic is torch's *single-tensor*
implementation (the one torch runs on CPU) op for op, with each Python scalar replaced by the
same value as a broadcast tensor: derived scalars (``1 - beta2``, ``lr / bias_correction1``,
``1 - lr * wd``) are computed in float64, as Python computes them, and then cast to the
parameter dtype, as torch's kernels cast a Python scalar. On CPU the result matches torch's
bit for bit in the cases the tests cover (float32 and float64); on CUDA torch defaults to its
``foreach`` implementation, which orders a few operations differently, so there the match is
to rounding, not to the bit.

The learning rate of member k at optimizer step t is ``lr[k] * multipliers[k, min(t, T - 1)]``
(``T = multipliers.shape[1]``, the trial's total steps): what ``LambdaLR`` gives at step t of a
run of T steps. ``step(closure)`` calls the closure first, as torch does (Lightning's closure
runs forward, backward and ``on_before_optimizer_step``), then applies the decoupled decay,
then the update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from gradatlas.optim import OPTIMIZERS, SCHEDULES, natively_decoupled

__all__ = ["KIND_OPTIONS", "MemberOptimizer", "build_member_optimizer"]

# The kinds implemented here, with the options each update reads: the registry builder's own
# options (``OPTIMIZERS.options(kind)``), checked against it, so an option added to a builder
# fails here loudly instead of being ignored.
KIND_OPTIONS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("momentum",),
    "nesterov": ("momentum",),
    "rmsprop": ("alpha", "eps", "momentum"),
    "adagrad": ("eps",),
    "adam": ("beta1", "beta2", "eps"),
    "adamw": ("beta1", "beta2", "eps"),
}
_HYPER = ("lr", "weight_decay", "decoupled_decay")


class MemberOptimizer(torch.optim.Optimizer):
    """``kind``'s update for stacked parameters, hyper-parameters per member.

    ``lr``: (K,) base learning rates; ``multipliers``: (K, total_steps) schedule multipliers;
    ``weight_decay``: (K,) torch's own ``weight_decay=`` for the kind (coupled L2, or AdamW's
    decoupled decay on every parameter); ``decoupled_decay``: (K,) the training module's decay
    for the kinds torch does not decouple itself, ``p *= 1 - lr_t * wd`` on weights only
    (parameters with more than two dimensions: (K, out, in...)); ``options``: the kind's own
    hyper-parameters (``KIND_OPTIONS``), each (K,) or a number, defaults from the registry.
    Values are float64 on the parameters' device; every parameter's dim 0 is the member.
    ``param_groups[i]["lr"]`` is the (K,) *base* rate; the rate a step uses is ``member_lr()``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        kind: str,
        lr: Tensor,
        multipliers: Tensor,
        weight_decay: Tensor | float = 0.0,
        decoupled_decay: Tensor | float = 0.0,
        **options: Tensor | float,
    ):
        if kind not in KIND_OPTIONS:
            raise ValueError(f"unknown optimizer kind {kind!r} (known: {', '.join(KIND_OPTIONS)})")
        params = list(params)
        if not params:
            raise ValueError("MemberOptimizer got an empty parameter list")
        first = params[0]["params"][0] if isinstance(params[0], dict) else params[0]
        device = first.device
        lr = torch.as_tensor(lr, dtype=torch.float64, device=device)
        if lr.dim() != 1:
            raise ValueError(f"lr must be a (K,) tensor, got shape {tuple(lr.shape)}")
        members = lr.shape[0]
        if set(OPTIMIZERS.options(kind)) != set(KIND_OPTIONS[kind]):
            raise NotImplementedError(
                f"the registry's {kind} takes {', '.join(OPTIMIZERS.options(kind)) or 'no options'}"
                f"; MemberOptimizer implements {', '.join(KIND_OPTIONS[kind]) or 'none'}"
            )
        unknown = set(options) - set(KIND_OPTIONS[kind])
        if unknown:
            raise ValueError(f"{kind} has no option {', '.join(sorted(unknown))}")
        registry_defaults = OPTIMIZERS.defaults(kind)
        values = {"lr": lr, "weight_decay": weight_decay, "decoupled_decay": decoupled_decay}
        for name in KIND_OPTIONS[kind]:
            values[name] = options.get(name, registry_defaults[name])
        hyper: dict[str, Tensor] = {}
        for name, value in values.items():
            tensor = torch.as_tensor(value, dtype=torch.float64, device=device)
            hyper[name] = tensor.expand(members).clone() if tensor.dim() == 0 else tensor
            if hyper[name].shape != (members,):
                raise ValueError(f"{name} must have shape ({members},), got {tuple(tensor.shape)}")
        multipliers = torch.as_tensor(multipliers, dtype=torch.float64, device=device)
        if multipliers.dim() != 2 or multipliers.shape[0] != members or multipliers.shape[1] < 1:
            raise ValueError(
                f"multipliers must be (K={members}, total_steps), got {tuple(multipliers.shape)}"
            )
        _check_ranges(kind, {k: v.cpu() for k, v in hyper.items()})
        if natively_decoupled(kind) and bool((hyper["decoupled_decay"] != 0).any()):
            raise ValueError(f"{kind} decouples its weight_decay itself: decoupled_decay must be 0")

        self.kind = kind
        self.members = members
        # Decided once, on the host, so that step() branches on nothing a tensor holds.
        self._any_wd = bool((hyper["weight_decay"] != 0).any())
        self._any_decoupled = bool((hyper["decoupled_decay"] != 0).any())
        self._momentum_mode = "none"
        if kind in ("momentum", "nesterov", "rmsprop"):
            nonzero = hyper["momentum"] > 0
            self._momentum_mode = (
                "all" if bool(nonzero.all()) else "mixed" if bool(nonzero.any()) else "none"
            )
            if kind == "nesterov" and self._momentum_mode != "all":
                raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self._cache: dict[Any, Any] = {}
        defaults = {**hyper, "multipliers": multipliers}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() < 1 or p.shape[0] != members:
                    raise ValueError(
                        f"every parameter needs the member dimension {members} first, "
                        f"got shape {tuple(p.shape)}"
                    )

    @classmethod
    def from_specs(
        cls,
        params: Iterable[Any],
        optims: Sequence[Any],
        schedules: Sequence[Any],
        total_steps: int,
    ) -> MemberOptimizer:
        """From the members' resolved ``OptimSpec``s and schedules (``TrainSpec.schedule``).

        All members must use one optimizer kind (``ValueError`` otherwise). Weight decay is
        split as ``build_optimizer`` and ``TrialModule`` split it; options missing from a spec
        take the registry builder's defaults; each distinct schedule is evaluated once.
        """
        if len(optims) != len(schedules) or not optims:
            raise ValueError(
                f"one optimizer and one schedule per member (got {len(optims)} and "
                f"{len(schedules)})"
            )
        kinds = sorted({o.optimizer.name for o in optims})
        if len(kinds) != 1:
            raise ValueError(f"members of one MemberOptimizer share a kind, got {kinds}")
        kind = kinds[0]
        native = natively_decoupled(kind)
        coupled, decoupled = [], []
        for o in optims:
            value = float(o.weight_decay.value)
            is_coupled = o.weight_decay.mode == "coupled" or native
            coupled.append(value if is_coupled else 0.0)
            decoupled.append(0.0 if is_coupled else value)
        defaults = OPTIMIZERS.defaults(kind)
        options = {
            name: [float(o.optimizer.options.get(name, defaults[name])) for o in optims]
            for name in KIND_OPTIONS[kind]
        }
        for o in optims:
            extra = set(o.optimizer.options) - set(KIND_OPTIONS[kind])
            if extra:
                raise ValueError(f"{kind} has no option {', '.join(sorted(extra))}")
        return cls(
            params,
            kind,
            lr=torch.tensor([float(o.lr) for o in optims], dtype=torch.float64),
            multipliers=multiplier_table(schedules, total_steps),
            weight_decay=torch.tensor(coupled, dtype=torch.float64),
            decoupled_decay=torch.tensor(decoupled, dtype=torch.float64),
            **{k: torch.tensor(v, dtype=torch.float64) for k, v in options.items()},
        )

    # -- state -----------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if "step" not in group:  # its own counter: steps done (all members step together)
            group["step"] = torch.zeros((), dtype=torch.float64, device=group["lr"].device)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._cache.clear()

    def member_lr(self) -> Tensor:
        """(K,) float64: the learning rates the next ``step()`` uses (read it before the step)."""
        return self._lr_now(self.param_groups[0])

    @staticmethod
    def _lr_now(group: dict[str, Any]) -> Tensor:
        table = group["multipliers"]
        index = group["step"].clamp(max=table.shape[1] - 1).long().reshape(1)
        return group["lr"] * table.index_select(1, index).squeeze(1)

    def _constants(self, group: dict[str, Any], dtype: torch.dtype) -> dict[str, Tensor]:
        """The group's step-independent factors in ``dtype``, computed once."""
        key = (id(group), dtype)
        if key not in self._cache:
            h = {k: group[k] for k in (*_HYPER, *KIND_OPTIONS[self.kind])}
            c = {"weight_decay": h["weight_decay"]}
            if "momentum" in h:
                c["momentum"] = h["momentum"]
            if self.kind == "rmsprop":
                c |= {"alpha": h["alpha"], "one_minus_alpha": 1 - h["alpha"], "eps": h["eps"]}
                c["has_momentum"] = h["momentum"] > 0
            elif self.kind == "adagrad":
                c["eps"] = h["eps"]
            elif self.kind in ("adam", "adamw"):
                c |= {"one_minus_beta1": 1 - h["beta1"], "beta2": h["beta2"]}
                c |= {"one_minus_beta2": 1 - h["beta2"], "eps": h["eps"]}
            self._cache[key] = {
                k: v if v.dtype == torch.bool else v.to(dtype) for k, v in c.items()
            }
        return self._cache[key]

    # -- the step --------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        lr_t = self._lr_now(group)  # (K,) float64, the schedule applied
        group["step"] += 1
        step = group["step"]
        per_dtype: dict[torch.dtype, dict[str, Tensor]] = {}

        def scalars(dtype: torch.dtype) -> dict[str, Tensor]:
            # This step's factors, computed in float64 as Python computes torch's scalars.
            if dtype not in per_dtype:
                s = {"neg_lr": -lr_t}
                if self._any_decoupled:  # TrialModule: p.mul_(1 - group["lr"] * wd)
                    s["decay"] = 1 - lr_t * group["decoupled_decay"]
                if self.kind == "adamw" and self._any_wd:  # torch: param.mul_(1 - lr * wd)
                    s["decay"] = 1 - lr_t * group["weight_decay"]
                if self.kind in ("adam", "adamw"):
                    bias_correction1 = 1 - group["beta1"] ** step
                    bias_correction2 = 1 - group["beta2"] ** step
                    s["neg_step_size"] = -(lr_t / bias_correction1)
                    s["bias_correction2_sqrt"] = bias_correction2.sqrt()
                per_dtype[dtype] = {k: v.to(dtype) for k, v in s.items()} | self._constants(
                    group, dtype
                )
            return per_dtype[dtype]

        for p in group["params"]:
            if self._any_decoupled and p.dim() > 2:  # weights only, grad or not, as the module
                p.mul_(_col(scalars(p.dtype)["decay"], p))
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("MemberOptimizer does not support sparse gradients")
            s = scalars(p.dtype)
            state = self.state[p]
            if self.kind in ("sgd", "momentum", "nesterov"):
                self._sgd(p, state, s)
            elif self.kind == "rmsprop":
                self._rmsprop(p, state, s)
            elif self.kind == "adagrad":
                self._adagrad(p, state, s)
            else:
                self._adam(p, state, s)

    # Each mirrors torch/optim/<kind>.py ``_single_tensor_<kind>``; the torch line is quoted.
    def _coupled(self, p: Tensor, grad: Tensor, s: dict[str, Tensor]) -> Tensor:
        if self._any_wd and self.kind != "adamw":
            return grad.addcmul(p, _col(s["weight_decay"], p))  # grad.add(param, alpha=wd)
        return grad

    def _sgd(self, p: Tensor, state: dict[str, Any], s: dict[str, Tensor]) -> None:
        grad = self._coupled(p, p.grad, s)
        if self.kind != "sgd":
            momentum = _col(s["momentum"], p)
            buf = state.get("momentum_buffer")
            if buf is None:  # buf = grad.detach().clone()
                buf = state["momentum_buffer"] = grad.detach().clone()
            else:  # buf.mul_(momentum).add_(grad, alpha=1 - dampening); a zero momentum
                buf.mul_(momentum).add_(grad)  # leaves buf == grad, torch's plain SGD
            # nesterov: grad.add(buf, alpha=momentum); heavy ball: grad = buf
            grad = grad.addcmul(buf, momentum) if self.kind == "nesterov" else buf
        p.addcmul_(grad, _col(s["neg_lr"], p))  # param.add_(grad, alpha=-lr)

    def _rmsprop(self, p: Tensor, state: dict[str, Any], s: dict[str, Tensor]) -> None:
        grad = self._coupled(p, p.grad, s)
        if not state:
            state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if self._momentum_mode != "none":
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        square_avg = state["square_avg"]
        # square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        square_avg.mul_(_col(s["alpha"], p)).addcmul_(grad * _col(s["one_minus_alpha"], p), grad)
        avg = square_avg.sqrt().add_(_col(s["eps"], p))  # square_avg.sqrt().add_(eps)
        neg_lr = _col(s["neg_lr"], p)
        if self._momentum_mode == "none":
            p.addcdiv_(grad * neg_lr, avg)  # param.addcdiv_(grad, avg, value=-lr)
            return
        buf = state["momentum_buffer"]
        buf.mul_(_col(s["momentum"], p)).addcdiv_(grad, avg)  # buf.mul_(momentum).addcdiv_(...)
        if self._momentum_mode == "all":
            p.addcmul_(buf, neg_lr)  # param.add_(buf, alpha=-lr)
        else:  # torch takes the momentum-free line for a member whose momentum is 0
            moved = p.addcmul(buf, neg_lr)
            plain = p.addcdiv(grad * neg_lr, avg)
            p.copy_(torch.where(_col(s["has_momentum"], p), moved, plain))

    def _adagrad(self, p: Tensor, state: dict[str, Any], s: dict[str, Tensor]) -> None:
        grad = self._coupled(p, p.grad, s)
        if not state:  # initial_accumulator_value=0
            state["sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state_sum = state["sum"]
        state_sum.addcmul_(grad, grad, value=1)
        std = state_sum.sqrt().add_(_col(s["eps"], p))
        # clr = lr / (1 + (step - 1) * lr_decay) is lr with lr_decay=0
        p.addcdiv_(grad * _col(s["neg_lr"], p), std)  # param.addcdiv_(grad, std, value=-clr)

    def _adam(self, p: Tensor, state: dict[str, Any], s: dict[str, Tensor]) -> None:
        if self.kind == "adamw" and self._any_wd:
            p.mul_(_col(s["decay"], p))  # param.mul_(1 - lr * weight_decay)
        grad = self._coupled(p, p.grad, s)
        if not state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, _col(s["one_minus_beta1"], p))  # exp_avg.lerp_(grad, 1 - beta1)
        # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        exp_avg_sq.mul_(_col(s["beta2"], p)).addcmul_(grad * _col(s["one_minus_beta2"], p), grad)
        # denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        denom = (exp_avg_sq.sqrt() / _col(s["bias_correction2_sqrt"], p)).add_(_col(s["eps"], p))
        # param.addcdiv_(exp_avg, denom, value=-step_size)
        p.addcdiv_(exp_avg * _col(s["neg_step_size"], p), denom)


def _col(values: Tensor, like: Tensor) -> Tensor:
    """A (K,) tensor as (K, 1, ..., 1), broadcasting over one member's slice of ``like``."""
    return values.view(values.shape[0], *([1] * (like.dim() - 1)))


def _check_ranges(kind: str, hyper: Mapping[str, Tensor]) -> None:
    """torch's own constructor checks, per member, so a bad value fails as the unfused would."""
    checks = {
        "lr": (0.0, None),
        "weight_decay": (0.0, None),
        "decoupled_decay": (0.0, None),
        "momentum": (0.0, None),
        "alpha": (0.0, None),
        "eps": (0.0, None),
        "beta1": (0.0, 1.0),
        "beta2": (0.0, 1.0),
    }
    for name, values in hyper.items():
        low, high = checks[name]
        bad = (values < low) | ~torch.isfinite(values)
        if high is not None:
            bad |= values >= high
        if bool(bad.any()):
            raise ValueError(f"{kind}: invalid {name} {values.tolist()}")


def multiplier_table(schedules: Sequence[Any], total_steps: int) -> Tensor:
    """(K, total_steps) float64: each member's schedule multiplier per step (``Named``
    schedules, built as ``TrialModule`` builds them); each distinct schedule evaluated once."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    rows: dict[tuple[str, str], list[float]] = {}
    table = []
    for schedule in schedules:
        key = (schedule.name, repr(sorted(schedule.options.items())))
        if key not in rows:
            fn = SCHEDULES.build(schedule.name, total_steps, **schedule.options)
            rows[key] = [float(fn(t)) for t in range(total_steps)]
        table.append(rows[key])
    return torch.tensor(table, dtype=torch.float64)


def build_member_optimizer(
    params: Iterable[Any],
    optims: Sequence[Any],
    schedules: Sequence[Any],
    total_steps: int,
) -> MemberOptimizer:
    """``MemberOptimizer.from_specs``, named as ``gradatlas.optim.build_optimizer`` is."""
    return MemberOptimizer.from_specs(params, optims, schedules, total_steps)
