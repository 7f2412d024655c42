"""``MemberOptimizer`` against K plain optimizers, each set up as the unfused trial sets it up.

The reference for member k is ``TrialModule``'s own code run on member k's slice of the
parameters: ``configure_optimizers`` (``build_optimizer`` + ``LambdaLR``) and
``on_before_optimizer_step`` (the decoupled decay), called on a stand-in for the module, then
``optimizer.step()`` and ``scheduler.step()`` as Lightning calls them. Both sides get the same
seeded gradients. ``parity_table()`` gives the worst relative difference per optimizer kind and
dtype (for a benchmark's table); the tests hold it to float round-off.
"""

from __future__ import annotations

import copy as copy_module
import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from gradatlas.optim import OPTIMIZERS, default_lr, natively_decoupled
from gradatlas.runners.member_optim import (
    KIND_OPTIONS,
    build_member_optimizer,
    multiplier_table,
)
from gradatlas.runners.module import TrialModule
from gradatlas.suites.spec import Named, OptimSpec, WeightDecay

K = 4
STEPS = 60
SHAPES = ((8, 5), (8,), (3, 2, 3, 3))  # a weight, a bias, a conv weight (per member)
GRAD_SCALE = (1.0, 1.0, 1.0, 1e3)  # member 3's gradients are large
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}

# Each member its own options (member 1 has zero momentum where the kind has momentum).
OPTIONS: dict[str, list[dict[str, float]]] = {
    "sgd": [{}] * K,
    "momentum": [{"momentum": m} for m in (0.9, 0.0, 0.5, 0.99)],
    "nesterov": [{"momentum": m} for m in (0.9, 0.3, 0.5, 0.99)],
    "rmsprop": [
        {"alpha": a, "eps": e, "momentum": m}
        for a, e, m in ((0.99, 1e-8, 0.0), (0.9, 1e-6, 0.9), (0.5, 1e-3, 0.5), (0.999, 1e-8, 0.0))
    ],
    "rmsprop/no-momentum": [{"alpha": a} for a in (0.99, 0.9, 0.5, 0.999)],
    "rmsprop/all-momentum": [{"momentum": m} for m in (0.9, 0.1, 0.5, 0.99)],
    "adagrad": [{"eps": e} for e in (1e-10, 1e-6, 1e-3, 1e-8)],
}
OPTIONS["adam"] = OPTIONS["adamw"] = [
    {"beta1": b1, "beta2": b2, "eps": e}
    for b1, b2, e in ((0.9, 0.999, 1e-8), (0.0, 0.9, 1e-6), (0.5, 0.99, 1e-3), (0.95, 0.5, 1e-10))
]
LR_SCALE = (1.0, 0.3, 2.0, 0.05)
DECAY = (
    WeightDecay(0.0),
    WeightDecay(1e-2, "coupled"),
    WeightDecay(5e-2, "decoupled"),
    WeightDecay(1e-3, "decoupled"),
)
SCHEDULES = (
    Named("constant"),
    Named("cosine", {"min_ratio": 0.1, "warmup_steps": 5}),
    Named("step", {"step_size": 20, "gamma": 0.5}),
    Named("linear_warmup", {"warmup_steps": 10}),
)


def member_specs(case: str) -> list[OptimSpec]:
    kind = case.split("/")[0]
    return [
        OptimSpec(Named(kind, OPTIONS[case][k]), default_lr(kind) * LR_SCALE[k], DECAY[k])
        for k in range(K)
    ]


def _stacked(dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(K, *shape, generator=gen, dtype=dtype) for shape in SHAPES]


def _grads(step: int, dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    scale = torch.tensor(GRAD_SCALE, dtype=dtype)
    return [
        torch.randn(K, *shape, generator=gen, dtype=dtype) * scale.view(K, *[1] * len(shape))
        for shape in SHAPES
    ]


def _unfused(spec: OptimSpec, schedule: Named, params: list[torch.Tensor]) -> SimpleNamespace:
    """Member k alone, through TrialModule's own configure_optimizers / decoupled decay."""
    wd = spec.weight_decay
    stand_in = SimpleNamespace(
        model=SimpleNamespace(parameters=lambda: iter(params)),
        optim=spec,
        schedule=schedule,
        total_steps=STEPS,
        member_dims=0,
        decoupled_wd=wd.value
        if wd.mode == "decoupled" and not natively_decoupled(spec.optimizer.name)
        else 0.0,
    )
    configured = TrialModule.configure_optimizers(stand_in)
    return SimpleNamespace(
        stand_in=stand_in,
        optimizer=configured["optimizer"],
        scheduler=configured["lr_scheduler"]["scheduler"],
    )


@dataclass(frozen=True)
class ParityRow:
    case: str  # optimizer kind (and variant)
    dtype: str
    worst_param_rel: float  # worst over members, parameters and steps of |fused - alone|_inf
    #                         / |alone|_inf (a member's slice of one parameter)
    lr_equal: bool  # member_lr() equal, bit for bit, to the scheduler's lr at every step
    bitwise: bool  # every parameter equal bit for bit at every step


def run_parity(case: str, dtype: torch.dtype) -> ParityRow:
    specs = member_specs(case)
    fused_params = [p.clone() for p in _stacked(dtype)]
    fused = build_member_optimizer(fused_params, specs, SCHEDULES, STEPS)
    alone_params = [[p[k].clone() for p in _stacked(dtype)] for k in range(K)]
    alone = [_unfused(specs[k], SCHEDULES[k], alone_params[k]) for k in range(K)]
    worst, lr_equal, bitwise = 0.0, True, True
    for step in range(STEPS):
        grads = _grads(step, dtype)
        lrs = fused.member_lr()
        for p, g in zip(fused_params, grads, strict=True):
            p.grad = g.clone()
        fused.step()
        for k, member in enumerate(alone):
            lr_equal &= float(lrs[k]) == member.optimizer.param_groups[0]["lr"]
            for p, g in zip(alone_params[k], grads, strict=True):
                p.grad = g[k].clone()
            TrialModule.on_before_optimizer_step(member.stand_in, member.optimizer)
            member.optimizer.step()
            member.scheduler.step()
            for p, q in zip(fused_params, alone_params[k], strict=True):
                diff = (p[k] - q).abs().max().item()
                scale = q.abs().max().item()
                bitwise &= diff == 0.0
                if not (math.isfinite(diff) and math.isfinite(scale)):
                    worst = math.inf  # a non-finite member is no parity, whatever max() says
                else:
                    worst = max(worst, diff / max(scale, 1e-300))
    return ParityRow(case, str(dtype).removeprefix("torch."), worst, lr_equal, bitwise)


def parity_table(
    cases: tuple[str, ...] = tuple(OPTIONS), dtypes=(torch.float32, torch.float64)
) -> list[ParityRow]:
    """One row per optimizer case and dtype: the fused optimizer against K unfused ones."""
    return [run_parity(case, dtype) for case in cases for dtype in dtypes]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(OPTIONS))
def test_member_optimizer_matches_unfused_trials(case, dtype):
    row = run_parity(case, dtype)
    print(row)
    assert row.lr_equal
    assert row.worst_param_rel <= TOL[dtype], row


def test_mixed_kinds_raise():
    specs = member_specs("adam")[:2] + member_specs("sgd")[2:]
    with pytest.raises(ValueError, match="share a kind"):
        build_member_optimizer(_stacked(torch.float32), specs, SCHEDULES, STEPS)


def test_nesterov_needs_momentum_like_torch():
    specs = member_specs("momentum")  # member 1 has momentum 0
    specs = [OptimSpec(Named("nesterov", s.optimizer.options), s.lr, s.weight_decay) for s in specs]
    with pytest.raises(ValueError, match="Nesterov"):
        build_member_optimizer(_stacked(torch.float32), specs, SCHEDULES, STEPS)
    with pytest.raises(ValueError, match="Nesterov"):
        torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, momentum=0, nesterov=True)


def test_step_runs_the_closure_first_and_returns_its_loss():
    params = _stacked(torch.float32)
    before = params[0].clone()
    opt = build_member_optimizer(params, member_specs("momentum"), SCHEDULES, STEPS)
    seen = []

    def closure():
        seen.append(params[0].clone())  # forward sees the parameters before decay and update
        for p in params:
            p.grad = torch.ones_like(p)
        return torch.tensor(3.5)

    loss = opt.step(closure)
    assert float(loss) == 3.5
    assert torch.equal(seen[0], before)
    assert not torch.equal(params[0], before)
    assert opt.step() is None


def test_distinct_schedules_are_evaluated_once(monkeypatch):
    import gradatlas.runners.member_optim as mo

    calls = []
    real = mo.SCHEDULES.build

    def counting(name, *args, **options):
        calls.append(name)
        return real(name, *args, **options)

    monkeypatch.setattr(mo.SCHEDULES, "build", counting)
    same = Named("cosine", {"min_ratio": 0.1, "warmup_steps": 5})
    table = multiplier_table([SCHEDULES[0], same, SCHEDULES[1], SCHEDULES[0]], STEPS)
    assert sorted(calls) == ["constant", "cosine"]
    assert table.shape == (K, STEPS) and table.dtype == torch.float64
    assert torch.equal(table[1], table[2]) and torch.equal(table[0], table[3])


def test_lr_holds_the_last_multiplier_past_total_steps():
    params = _stacked(torch.float64)
    opt = build_member_optimizer(params, member_specs("sgd"), SCHEDULES, total_steps=3)
    table = multiplier_table(SCHEDULES, 3)
    for _ in range(5):
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
    base = torch.tensor([s.lr for s in member_specs("sgd")], dtype=torch.float64)
    assert torch.equal(opt.member_lr(), base * table[:, 2])


def test_step_reads_no_tensor_on_the_host(monkeypatch):
    """No .item(), float(), bool() of a tensor inside step(): a CUDA graph could capture it
    (after a first step has created the state)."""
    params = [p.requires_grad_() for p in _stacked(torch.float32)]
    for case in ("momentum", "rmsprop", "adagrad", "adam", "adamw"):
        opt = build_member_optimizer(params, member_specs(case), SCHEDULES, STEPS)
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()

        def refuse(*args, **kwargs):
            raise AssertionError("host sync in step()")

        with monkeypatch.context() as m:
            for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
                m.setattr(torch.Tensor, name, refuse)
            opt.step()
            opt.member_lr()


def test_state_dict_round_trip():
    params = _stacked(torch.float32)
    opt = build_member_optimizer(params, member_specs("adam"), SCHEDULES, STEPS)
    for _ in range(3):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    copy = [p.clone() for p in params]
    other = build_member_optimizer(copy, member_specs("adam"), SCHEDULES, STEPS)
    # as from a checkpoint: load_state_dict keeps (shares) tensors it need not cast, torch's too
    other.load_state_dict(copy_module.deepcopy(opt.state_dict()))
    assert torch.equal(other.member_lr(), opt.member_lr())
    for p, q in zip(params, copy, strict=True):
        p.grad = torch.full_like(p, 0.5)
        q.grad = torch.full_like(q, 0.5)
    opt.step()
    other.step()
    for p, q in zip(params, copy, strict=True):
        assert torch.equal(p, q)


def test_parameters_need_the_member_dimension():
    params = [torch.zeros(K + 1, 3)]
    with pytest.raises(ValueError, match="member dimension"):
        build_member_optimizer(params, member_specs("sgd"), SCHEDULES, STEPS)


def test_every_registered_optimizer_is_implemented_with_its_options():
    """A new optimizer, or a new option of one, needs its update here (and a case above)."""
    assert set(KIND_OPTIONS) == set(OPTIMIZERS)
    for kind in OPTIMIZERS:
        assert set(KIND_OPTIONS[kind]) == set(OPTIMIZERS.options(kind)), kind
        assert kind in {case.split("/")[0] for case in OPTIONS}
