"""How many members of one shape a worker stacks into one model: measured on its own device.

``execution.batch_seeds: auto`` used to divide a share of free memory by a formula's guess of
one member's bytes (parameters x 4 plus a multiple of the activations), which was wrong by
whatever the formula forgot (optimizer state, dropout masks, the evaluation chunk, allocator
workspace) and could only be checked on the device that trained. Now the worker that trains a
unit measures the unit's shape before it packs it (``measure``): it builds the shape as stacked
models of ``PROBE_MEMBERS`` = 2 and 4 members, runs one real training step (forward, the
per-member loss, backward, the optimizer step) and one evaluation chunk on each, and takes the
bytes each needed. A stacked model's tensors all carry the member dimension, so its memory is
``fixed + members x per_member``; two sizes fix the line (both sizes use the same optimizer
path, so the per-member optimizer's own state is in the slope).

- CUDA: the caching allocator's peak above what was allocated before the probe, so every
  temporary the step allocates counts.
- CPU: the allocator keeps no statistics, so the probe counts the tensors that must coexist at
  the step's peak: parameters, gradients and optimizer state (the tensors themselves, unique
  storages), what autograd saved for backward (``saved_tensors_hooks``), the evaluation
  chunk's input and twice the largest output of a module in its evaluation (a layer's input
  and output are alive together).

The unit's members may differ in dropout and optimizer settings; the probe trains copies of its
most demanding member (the largest dropout p: each dropout layer then saves a mask) and, when
their optimizer settings differ, of a second member whose settings differ, so the probe takes
the per-member optimizer path the unit will take.

``members_per_group`` turns the line into a group size: as many members as fit in this
worker's share of the device (``budget``), at most ``MAX_AUTO``. A worker holding a fraction
of a GPU (Ray's ``num_gpus < 1``: several units share a GPU) gets that fraction of the GPU's
memory, not the whole of whatever is free at the moment.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradatlas.suites import Trial

PROBE_MEMBERS = (2, 4)
# Of the memory this worker may use, the share a stacked model's measured peak may take:
# a margin for what the probe cannot see (the allocator's fragmentation over a long run, the
# instrument's per-step buffers, a larger last evaluation chunk).
SAFETY = {"cuda": 0.8, "cpu": 0.25}
_CACHE: dict[tuple[str, str, str], MemberCost] = {}


@dataclass(frozen=True)
class MemberCost:
    """Measured memory of one shape on one device: bytes = fixed + members x per_member."""

    fixed_bytes: int
    per_member_bytes: int
    how: str  # "cuda peak" | "cpu tensors"
    points: tuple[tuple[int, int], ...]  # (members, bytes) as measured

    def bytes_for(self, members: int) -> int:
        return self.fixed_bytes + members * self.per_member_bytes


def _probe_specs(trials: Sequence[Trial]) -> list[Any]:
    """Two specs the probe alternates between: the member with the most dropout, and one whose
    optimizer settings differ from it (if any), so the probe runs the unit's optimizer path."""
    from gradatlas.runners.module import optimizer_setting

    specs = [t.spec for t in trials]
    worst = max(specs, key=lambda s: s.model.dropout)
    mine = optimizer_setting(worst)
    other = next((s for s in specs if optimizer_setting(s) != mine), worst)
    return [worst, other]


def _state_bytes(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of parameters, gradients and optimizer state, each storage once."""
    seen: dict[int, int] = {}

    def add(t: Any) -> None:
        if isinstance(t, torch.Tensor) and t.numel():
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()

    for p in module.parameters():
        add(p)
        add(p.grad)
    for state in optimizer.state.values():
        for value in state.values():
            add(value)
    for value in vars(optimizer).values():  # a member optimizer keeps its tensors as attributes
        if isinstance(value, torch.Tensor):
            add(value)
        elif isinstance(value, list | tuple):
            for item in value:
                add(item)
    return sum(seen.values())


def stacked_module(specs: Sequence[Any], data: Any, device: torch.device, total_steps: int):
    """``specs`` (one shape) as the stacked module and optimizer ``run_trials`` would train,
    without a Trainer: each member seeded and built as its own trial, then stacked. For
    measuring a step (this module's probe, ``benchmarks/gpu_step.py``), not for training."""
    import pytorch_lightning as pl

    from gradatlas.models import build_model
    from gradatlas.models.stacked import rng_state, stack_models
    from gradatlas.runners.module import StackedTrialModule

    models, streams = [], []
    for s in specs:
        pl.seed_everything(s.seed, workers=False, verbose=False)
        models.append(build_model(s.model, data.input_shape, data.num_outputs))
        streams.append(rng_state(device))
    model = stack_models(models, rng_states=streams, device=device)
    spec = specs[0]
    module = StackedTrialModule(
        model, spec.optim, spec.train, total_steps, data.task, member_specs=list(specs)
    ).to(device)
    if spec.train.precision == "64":  # Lightning's 64-true: the whole module in float64
        module = module.double()
    return module, module.configure_optimizers()["optimizer"]


def _probe_once(trials: Sequence[Trial], members: int, device: torch.device) -> int:
    """Bytes one stacked model of ``members`` copies of the unit's probe specs needs for one
    training step and one evaluation chunk on ``device``."""
    from gradatlas.runners.loader import StackedBatches, trial_data

    pair = _probe_specs(trials)
    specs = [pair[i % 2] for i in range(members)]
    spec = specs[0]
    data = trial_data(spec).to(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    module, optimizer = stacked_module(specs, data, device, total_steps=10)
    x, y = next(iter(StackedBatches(data.x_train, data.y_train, spec.train.batch_size, [0])))
    # One member's batch for every member: the same bytes as K gathered batches.
    x = x.expand(members, *x.shape[1:]).contiguous()
    y = y.expand(members, *y.shape[1:]).contiguous()
    dtype = next(module.parameters()).dtype
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=spec.train.precision == "bf16-mixed"
    )
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        loss = module.training_step((x.to(dtype), y), 0)["loss"]
    loss.backward()
    optimizer.step()
    trained = _state_bytes(module, optimizer) + sum(saved.values())
    del loss
    chunk = min(len(data.x_val), 4096)
    x_eval = data.x_val[:chunk].to(dtype)
    largest = [0]

    def watch(_m: Any, _i: Any, out: Any) -> None:
        # The members' outputs (each K x chunk x ...); the shared input chunk is counted once.
        if isinstance(out, torch.Tensor) and out.data_ptr() != x_eval.data_ptr():
            largest[0] = max(largest[0], out.untyped_storage().nbytes())

    hooks = [m.register_forward_hook(watch) for m in module.model.modules()]
    module.evaluate(x_eval, data.y_val[:chunk])
    for h in hooks:
        h.remove()
    if cuda:
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    return trained + x_eval.untyped_storage().nbytes() + 2 * largest[0]


def measure(trials: Sequence[Trial], device: torch.device) -> MemberCost:
    """The memory line of the trials' shape on ``device`` (cached per process: the workers of
    one sweep see the same shapes again and again)."""
    from gradatlas.runners.batching import shape_key
    from gradatlas.runners.module import optimizer_setting

    # The shape, and what of the members changes the bytes: the probe's pair of specs.
    pair = _probe_specs(trials)
    probe = repr([(s.model.dropout, optimizer_setting(s)) for s in pair])
    key = (shape_key(trials[0]), str(device), probe)
    if key not in _CACHE:
        # The probe draws from the global generators (seeding, dropout): leave them as found.
        state = torch.random.get_rng_state()
        cuda_state = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
        try:
            points = tuple((k, _probe_once(trials, k, device)) for k in PROBE_MEMBERS)
        finally:
            torch.random.set_rng_state(state)
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)
        (k1, b1), (k2, b2) = points
        per = max(1, (b2 - b1) // (k2 - k1))
        how = "cuda peak" if device.type == "cuda" else "cpu tensors"
        _CACHE[key] = MemberCost(max(0, b1 - k1 * per), per, how, points)
    return _CACHE[key]


def gpu_share() -> float:
    """The fraction of a GPU this process was given: Ray's assigned ``GPU`` resource inside a
    Ray worker (``--gpus-per-worker 0.25``: four units share a GPU), else the whole GPU."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return 1.0
    try:
        share = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    except Exception:  # the driver, or a Ray without a runtime context: the whole GPU
        return 1.0
    return min(1.0, share) if share > 0 else 1.0


def budget(device: torch.device) -> int:
    """Bytes a stacked model on ``device`` may take: on a GPU, this worker's share of the GPU
    (never more than is free now), with ``SAFETY``'s margin; on a CPU a quarter of the memory
    available (other workers and the driver share it)."""
    from gradatlas.runners.batching import free_memory

    if device.type == "cuda":
        _free, total = torch.cuda.mem_get_info(device)
        mine = min(free_memory(device), int(total * gpu_share()))
        return int(SAFETY["cuda"] * mine)
    return int(SAFETY["cpu"] * free_memory(device))


def members_per_group(trials: Sequence[Trial], device: torch.device, cap: int) -> int:
    """How many of ``trials`` (one shape) train together on ``device``: as many as the
    measured line fits in ``budget``, between 1 and ``cap``."""
    if len(trials) <= 1:
        return 1
    try:
        cost = measure(trials, device)
    except Exception as exc:  # a shape that cannot take one step (out of memory, a
        # bad config): its trials train one at a time, so each failure is recorded as its own.
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(
            f"gradatlas: measuring {len(trials)} trials' shape on {device} failed "
            f"({type(exc).__name__}: {str(exc)[:200]}); they train one at a time",
            file=sys.stderr,
        )
        return 1
    room = budget(device) - cost.fixed_bytes
    return int(max(1, min(cap, len(trials), room // cost.per_member_bytes)))
