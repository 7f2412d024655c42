"""The network at initialization, before any update: the Glorot & Bengio / He et al. picture.

On one fixed probe batch: per-layer weight-gradient norms, and per hidden activation site the
output mean and std, the saturated fraction (bounded activations: outputs within 5% of the output
range from either bound, where the derivative is small) and the dead fraction (ReLU family: units
whose output is <= 0 on every probe example, so they pass no gradient for this data).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gradatlas.models import GradModel, is_relu_family, output_bounds

SATURATION_MARGIN = 0.05


def _nan_to_none(values: list[float]) -> list[float | None]:
    return [v if v == v and abs(v) != float("inf") else None for v in values]


def probe_init(
    model: GradModel,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> dict[str, Any]:
    """Statistics of ``model`` as built. Leaves it as it was: its BatchNorm running statistics
    are restored and its gradients cleared afterwards (cheaper than probing a deep copy, which
    cost ~15 ms per depth-20 model: a tenth of a batched seed's training)."""
    probe = model
    was_training = model.training
    buffers = [b.detach().clone() for b in model.buffers()]
    probe.train()
    name = probe.activation_name
    bounds = output_bounds(name)
    relu_like = is_relu_family(name)
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=x.device)
    # Every statistic stays a 0-d tensor on the model's device until one read at the end: on a
    # GPU each ``.item()`` is a sync, and there were 4 per activation site and 1 per layer
    # (82 with the loss for a depth-20 MLP), per member of a fused unit.
    sites: list[list[torch.Tensor]] = []  # per site: mean, std, saturated, dead

    def record(_module: torch.nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        out = out.detach().float()
        saturated = dead = nan
        if bounds is not None:
            lo, hi = bounds
            margin = SATURATION_MARGIN * (hi - lo)
            saturated = ((out <= lo + margin) | (out >= hi - margin)).float().mean()
        if relu_like:
            per_unit = (out <= 0).flatten(2).all(-1) if out.dim() > 2 else (out <= 0)
            dead = per_unit.all(0).float().mean()
        sites.append([out.mean(), out.std(), saturated, dead])

    hooks = [m.register_forward_hook(record) for _, m in probe.activation_sites()]
    try:
        loss = loss_fn(probe(x), y)
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    layers = probe.weight_layers()
    norms = [m.weight.grad.norm() if m.weight.grad is not None else nan for _, m in layers]
    stats = [loss.detach(), *norms, *(v for site in sites for v in site)]
    # one op and one host read; stack promotes every statistic to float64, which holds each
    # float32 value exactly (as ``.item()`` did)
    values = torch.stack(stats).tolist()
    loss_value, grad_norm = values[0], values[1 : 1 + len(norms)]
    rest = values[1 + len(norms) :]
    per_site = [rest[i : i + 4] for i in range(0, len(rest), 4)]
    act_mean, act_std, saturation, dead = ([site[j] for site in per_site] for j in range(4))
    with torch.no_grad():
        for buffer, saved in zip(model.buffers(), buffers, strict=True):
            buffer.copy_(saved)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {
        "layers": [n for n, _ in layers],
        "sites": [n for n, _ in probe.activation_sites()],
        "loss": loss_value,
        "init": {
            "grad_norm": _nan_to_none(grad_norm),
            "act_mean": _nan_to_none(act_mean),
            "act_std": _nan_to_none(act_std),
            "saturation": _nan_to_none(saturation),
            "dead": _nan_to_none(dead),
        },
    }
