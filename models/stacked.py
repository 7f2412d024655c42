"""K seeded models of one cell as one model whose parameters carry a leading seed dimension.

Why: the networks gradatlas studies are small, so one trial leaves a GPU (and much of a CPU's
vector units) idle and pays the Trainer's fixed cost alone. Training the seeds of a cell
together fills the hardware and shares that cost.

How it stays honest: ``stack_models`` takes K models *already built and initialized* the
unbatched way (one seed each) and copies their tensors into stacked parameters, so member k
starts bitwise identical to the unbatched trial with seed k. Nothing here calls an init helper
on a 3-D weight (torch's fan computation would be wrong for it). Every layer computes each
member from that member's slice only:

- linear layers are one batched matmul (``baddbmm``) over (K, B, features) activations;
- convolutions are one grouped convolution (``groups=K``) over (B, K*C, *spatial) maps;
- BatchNorm keeps per-member batch statistics and running buffers, LayerNorm/GroupNorm
  per-member affine parameters (GroupNorm with K*g groups is exactly g groups per member);
- dropout runs per member, with that member's probability, drawing from that member's own
  random stream: the masks its unbatched trial draws (``MemberDropout``);
- the logit scale (``GradModel.logit_scale``) multiplies each member's outputs as it does the
  unbatched model's (one number: the members of a cell share it).

Inputs are (K, B, *example_shape): member k's own minibatch. Outputs are (K, B, outputs).
The result is a ``GradModel`` (same blocks, ``weight_layers()`` names and forward order), so
the instrument and the training module see the same interface as for one model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradatlas.models.base import GlobalAvgPool, GradModel, HiddenBlock
from gradatlas.models.families import MODELS


def _stack(tensors: Sequence[Tensor | None]) -> nn.Parameter | None:
    if tensors[0] is None:
        return None
    return nn.Parameter(torch.stack([t.detach() for t in tensors]).clone())


class StackedLinear(nn.Module):
    """K linear layers: (K, B, in) -> (K, B, out) as ``bias + x @ W^T`` per member."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.members = len(layers)
        self.in_features, self.out_features = layers[0].in_features, layers[0].out_features
        self.weight = _stack([m.weight for m in layers])  # (K, out, in)
        self.bias = _stack([m.bias for m in layers])  # (K, out) or None

    def forward(self, x: Tensor) -> Tensor:
        w_t = self.weight.transpose(1, 2)
        if self.bias is None:
            return torch.bmm(x, w_t)
        return torch.baddbmm(self.bias.unsqueeze(1), x, w_t)

    def describe(self) -> str:
        return f"linear {self.in_features}->{self.out_features}"


class StackedConv(nn.Module):
    """K same-padded convolutions as one grouped convolution on (B, K*C_in, *spatial) maps."""

    def __init__(self, layers: Sequence[nn.Conv1d | nn.Conv2d]):
        super().__init__()
        first = layers[0]
        self.members = len(layers)
        self.kind = type(first).__name__.lower()
        self.in_channels, self.out_channels = first.in_channels, first.out_channels
        self.padding = first.padding
        self.conv = F.conv1d if isinstance(first, nn.Conv1d) else F.conv2d
        self.weight = _stack([m.weight for m in layers])  # (K, out, in, *kernel)
        self.bias = _stack([m.bias for m in layers])  # (K, out) or None

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.reshape(-1, *self.weight.shape[2:])  # (K*out, in, *kernel)
        b = None if self.bias is None else self.bias.reshape(-1)
        return self.conv(x, w, b, padding=self.padding, groups=self.members)

    def describe(self) -> str:
        return f"{self.kind} {self.in_channels}->{self.out_channels}"


class StackedBatchNorm(nn.Module):
    """K BatchNorms, each with its own batch statistics, running buffers and affine parameters.

    Features (K, B, F) are normalized over B per member and feature; conv maps (B, K*C, ...)
    go through ``F.batch_norm`` with K*C channels, which is the same thing per member.
    """

    def __init__(self, norms: Sequence[nn.BatchNorm1d | nn.BatchNorm2d], channels_first: bool):
        super().__init__()
        first = norms[0]
        self.members, self.channels_first = len(norms), channels_first
        self.eps, self.momentum = first.eps, first.momentum
        self.weight = _stack([m.weight for m in norms])  # (K, C)
        self.bias = _stack([m.bias for m in norms])
        self.register_buffer("running_mean", torch.stack([m.running_mean for m in norms]).clone())
        self.register_buffer("running_var", torch.stack([m.running_var for m in norms]).clone())

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_first:  # (B, K*C, *spatial): the views share the buffers' storage
            return F.batch_norm(
                x,
                self.running_mean.view(-1),
                self.running_var.view(-1),
                self.weight.reshape(-1),
                self.bias.reshape(-1),
                self.training,
                self.momentum,
                self.eps,
            )
        if self.training:  # (K, B, F)
            mean = x.mean(dim=1)
            var = x.var(dim=1, unbiased=False)
            n = x.shape[1]
            with torch.no_grad():
                unbiased = var * (n / max(n - 1, 1))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = torch.rsqrt(var + self.eps) * self.weight
        return (x - mean.unsqueeze(1)) * scale.unsqueeze(1) + self.bias.unsqueeze(1)


class StackedLayerNorm(nn.Module):
    """K LayerNorms over the last dimension of (K, B, F), each with its own gain and bias."""

    def __init__(self, norms: Sequence[nn.LayerNorm]):
        super().__init__()
        self.shape, self.eps = norms[0].normalized_shape, norms[0].eps
        self.weight = _stack([m.weight for m in norms])  # (K, F)
        self.bias = _stack([m.bias for m in norms])

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x, self.shape, None, None, self.eps)
        return y * self.weight.unsqueeze(1) + self.bias.unsqueeze(1)


class StackedGroupNorm(nn.Module):
    """K GroupNorms of g groups as one GroupNorm of K*g groups on (B, K*C, *spatial) maps."""

    def __init__(self, norms: Sequence[nn.GroupNorm]):
        super().__init__()
        self.groups, self.eps, self.members = norms[0].num_groups, norms[0].eps, len(norms)
        self.weight = _stack([m.weight for m in norms])  # (K, C)
        self.bias = _stack([m.bias for m in norms])

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(
            x, self.members * self.groups, self.weight.reshape(-1), self.bias.reshape(-1), self.eps
        )


class FlattenMembers(nn.Module):
    """MLP input: (K, B, *example) -> (K, B, features)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(start_dim=2)


class MembersToChannels(nn.Module):
    """CNN input: (K, B, C, *spatial) -> (B, K*C, *spatial), the grouped convolution's layout."""

    def forward(self, x: Tensor) -> Tensor:
        k, b = x.shape[:2]
        return x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:])


class ChannelsToMembers(nn.Module):
    """CNN read-out: global average pool of (B, K*C, *spatial), then (K, B, C) for the head."""

    def __init__(self, members: int):
        super().__init__()
        self.members = members
        self.pool = GlobalAvgPool()

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x)  # (B, K*C)
        return pooled.view(pooled.shape[0], self.members, -1).transpose(0, 1)


class MemberStreams:
    """Each member's own random stream for dropout: the state the global generator of the
    training device had when that member's trial would have started training alone (after its
    seeded build and init probe), advanced by its own draws only.

    Why not one mask tensor for all members: masks drawn together come from one stream, so a
    member's masks would differ from its unbatched trial's and so would its whole trajectory.
    Swapping the generator's state per member costs a host-side copy per member and dropout
    layer; what it buys is that member k draws exactly the masks trial k draws alone.
    """

    def __init__(self, states: Sequence[Tensor], device: torch.device):
        self.states = list(states)
        self.device = device

    def draw(self, calls: Sequence[tuple[int, Callable[[], Tensor]]]) -> list[Tensor]:
        """Each ``fn()`` of ``calls`` drawing from member k's stream, in order; the global stream
        is left as it was. Its state is saved and put back once for all of them (each member
        still costs one set and one get of the generator's state: on a GPU these are host
        work, per member and dropout layer, so they are kept to two)."""
        get, put = _rng_accessors(self.device)
        outer = get()
        out = []
        try:
            for k, fn in calls:
                put(self.states[k])
                try:
                    out.append(fn())
                finally:
                    self.states[k] = get()
        finally:
            put(outer)
        return out


def _rng_accessors(device: torch.device) -> tuple[Callable[[], Tensor], Callable[[Tensor], None]]:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return (
            lambda: torch.cuda.get_rng_state(index),
            lambda s: torch.cuda.set_rng_state(s, index),
        )
    return torch.get_rng_state, torch.set_rng_state


def rng_state(device: torch.device) -> Tensor:
    """The global generator's state on ``device`` (CPU or a CUDA device): a member's stream."""
    return _rng_accessors(device)[0]()


class MemberDropout(nn.Module):
    """Dropout with each member's own probability (0: that member has no dropout here) and its
    own random stream (``MemberStreams``), on (K, B, features) or channel-first (B, K*C, ...)
    maps. Member k's output is what ``nn.Dropout(p_k)`` gives its unbatched trial, bit for bit:
    the same call on the same shape, drawing from the same generator state."""

    def __init__(self, ps: Sequence[float], streams: MemberStreams, channels_first: bool):
        super().__init__()
        self.ps = [float(p) for p in ps]
        self.streams = streams
        self.channels_first = channels_first

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not any(self.ps):
            return x
        k = len(self.ps)
        out = list(x.chunk(k, dim=1) if self.channels_first else x.unbind(0))
        dropping = [i for i, p in enumerate(self.ps) if p > 0]
        dropped = self.streams.draw(
            [(i, lambda part=out[i], p=self.ps[i]: F.dropout(part, p, True)) for i in dropping]
        )
        for i, part in zip(dropping, dropped, strict=True):
            out[i] = part
        return torch.cat(out, dim=1) if self.channels_first else torch.stack(out)

    def extra_repr(self) -> str:
        return f"p={self.ps}"


def _stack_dropout(
    dropouts: Sequence[nn.Module], streams: MemberStreams | None, channels_first: bool
) -> nn.Module:
    ps = [m.p if isinstance(m, nn.Dropout) else 0.0 for m in dropouts]
    if not any(ps):
        return nn.Identity()
    if streams is None:
        raise ValueError("stacking dropout needs each member's random stream (rng_states)")
    return MemberDropout(ps, streams, channels_first)


def _stack_norm(norms: Sequence[nn.Module], channels_first: bool) -> nn.Module:
    first = norms[0]
    if isinstance(first, nn.Identity):
        return nn.Identity()
    if isinstance(first, nn.BatchNorm1d | nn.BatchNorm2d):
        return StackedBatchNorm(norms, channels_first)  # type: ignore[arg-type]
    if isinstance(first, nn.LayerNorm) and not channels_first:
        return StackedLayerNorm(norms)  # type: ignore[arg-type]
    if isinstance(first, nn.GroupNorm) and channels_first:
        return StackedGroupNorm(norms)  # type: ignore[arg-type]
    raise NotImplementedError(f"no stacked form of {type(first).__name__}")


def _stack_layer(layers: Sequence[nn.Module]) -> nn.Module:
    if isinstance(layers[0], nn.Linear):
        return StackedLinear(layers)  # type: ignore[arg-type]
    if isinstance(layers[0], nn.Conv1d | nn.Conv2d):
        return StackedConv(layers)  # type: ignore[arg-type]
    raise NotImplementedError(f"no stacked form of {type(layers[0]).__name__}")


@dataclass(frozen=True)
class StackedForm:
    """How the K members of one family share a forward pass: the input layout (``prepare``),
    the read-out before the head (``pool(K)``), and whether the norms see channel-first maps
    (B, K*C, *spatial) rather than (K, B, features)."""

    prepare: Callable[[], nn.Module]
    pool: Callable[[int], nn.Module]
    channels_first: bool


# A family's registration names its form (``batched``, ``models.families``).
STACKED_FORMS = {
    # members lead: (K, B, features) through batched matmuls
    "dense": StackedForm(FlattenMembers, lambda k: nn.Identity(), channels_first=False),
    # members folded into the channels: one grouped convolution per layer
    "grouped_conv": StackedForm(MembersToChannels, ChannelsToMembers, channels_first=True),
}


def stacked_form(family: str) -> StackedForm:
    """The stacked form the family's registration names (``ValueError`` for a family without
    one: its seeds train one at a time, ``runners.batching.unbatchable``)."""
    name = MODELS.meta(family, "batched")
    if name is None:
        raise ValueError(f"model family {family!r} has no stacked form: train its seeds one by one")
    return STACKED_FORMS[name]


def stack_models(
    models: Sequence[GradModel],
    rng_states: Sequence[Tensor] | None = None,
    device: torch.device | None = None,
) -> GradModel:
    """One ``GradModel`` computing all of ``models`` at once; member k is ``models[k]``.

    The models must share one architecture (the seeds of one cell do, and so do the cells of
    one fused unit: built by ``build_model``, which records their family); their inits and
    dropout probabilities may differ. Their tensors are copied, so the originals can be probed
    or dropped independently. ``rng_states``: each member's dropout stream (``rng_state`` of
    ``device`` where its trial would start training), needed when any member has dropout.
    """
    if not models:
        raise ValueError("stack_models needs at least one model")
    first = models[0]
    k = len(models)
    form = stacked_form(first.family)
    streams = (
        MemberStreams(rng_states, device or torch.device("cpu")) if rng_states is not None else None
    )
    blocks = []
    for i, block in enumerate(first.blocks):
        column = [m.blocks[i] for m in models]
        blocks.append(
            HiddenBlock(
                layer=_stack_layer([b.layer for b in column]),
                norm=_stack_norm([b.norm for b in column], channels_first=form.channels_first),
                act=block.act,  # stateless: one module serves every member
                dropout=_stack_dropout([b.dropout for b in column], streams, form.channels_first),
                residual=block.residual,
            )
        )
    stacked = GradModel(
        prepare=form.prepare(),
        blocks=blocks,
        pool=form.pool(k),
        head=StackedLinear([m.head for m in models]),  # type: ignore[arg-type]
        activation_name=first.activation_name,
    )
    stacked.members = k
    stacked.family = first.family
    # One scale multiplies every member's (K, B, outputs) slice: the members' own scales, which
    # are one number because the members share one architecture (a cell's seeds do).
    scales = {float(m.logit_scale) for m in models}
    if len(scales) != 1:
        raise ValueError(f"stack_models needs one logit_scale for all members, got {scales}")
    stacked.logit_scale = scales.pop()
    stacked.train(first.training)
    return stacked


def unstack_weights(stacked: GradModel) -> list[list[Tensor]]:
    """Member k's weight tensors (views), in ``weight_layers()`` order: for tests and probes."""
    k = stacked.members
    layers = [m.weight for _, m in stacked.weight_layers()]
    return [[w[i] for w in layers] for i in range(k)]
