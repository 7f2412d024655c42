"""What every gradatlas model shares: the hidden block, the model skeleton and its introspection.

A model is ``prepare -> blocks -> pool -> head``. MLP and CNN differ only in the layer type, how
the input is prepared (flattened or not) and how features are pooled before the head, so one
class serves both and instrumentation sees the same ``weight_layers()`` / ``activation_sites()``
interface whatever the family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from gradatlas.models.activations import ACTIVATIONS
from gradatlas.models.inits import BIAS_VAR, INITS, bias_options, init_bias
from gradatlas.models.norms import NORMS, check_norm_family


# -- the model ---------------------------------------------------------------------------
class HiddenBlock(nn.Module):
    """layer -> norm -> activation -> dropout, optionally added to its input (residual)."""

    def __init__(
        self,
        layer: nn.Module,
        norm: nn.Module,
        act: nn.Module,
        dropout: nn.Module,
        residual: bool,
    ):
        super().__init__()
        self.layer = layer
        self.norm = norm
        self.act = act
        self.dropout = dropout
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.dropout(self.act(self.norm(self.layer(x))))
        return x + y if self.residual else y


class GlobalAvgPool(nn.Module):
    """Mean over every spatial position: (N, C, *spatial) -> (N, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2).mean(dim=2)


class GradModel(nn.Module):
    """A stack of hidden blocks and a linear head, with the introspection instrumentation needs.

    ``weight_layers()`` lists every weighted layer (head included) in forward order, named like
    ``"00 linear 40->64"`` ... ``"20 head 64->10"``: these names label the per-layer profiles and
    curves of the trial record. ``activation_sites()`` lists each hidden layer's own activation
    module, so a forward hook per layer sees that layer's outputs.

    ``members`` is how many seeds the model computes at once: 1 for a plain model, K for one
    built by ``models.stacked.stack_models`` (inputs and outputs then carry a leading K).

    ``logit_scale`` multiplies the head's output (``ModelSpec.logit_scale``, set by
    ``build_model``): a softmax temperature of 1/scale, so a study can provoke large logits at a
    fixed, sane init. At 1 no multiplication runs, so the default model computes what it always
    did, bit for bit.
    """

    members = 1
    logit_scale = 1.0
    family = ""  # the registered family it was built as (``build_model`` sets it)

    def __init__(
        self,
        prepare: nn.Module,
        blocks: list[HiddenBlock],
        pool: nn.Module,
        head: nn.Linear,
        activation_name: str,
    ):
        super().__init__()
        self.prepare = prepare
        self.blocks = nn.ModuleList(blocks)
        self.pool = pool
        self.head = head
        self.activation_name = activation_name

    def forward(self, x: Tensor) -> Tensor:
        h = self.prepare(x)
        for block in self.blocks:
            h = block(h)
        out = self.head(self.pool(h))
        return out if self.logit_scale == 1.0 else out * self.logit_scale

    def _index(self, i: int) -> str:
        width = max(2, len(str(len(self.blocks))))
        return f"{i:0{width}d}"

    def weight_layers(self) -> list[tuple[str, nn.Module]]:
        layers: list[tuple[str, nn.Module]] = [
            (f"{self._index(i)} {_describe(b.layer)}", b.layer) for i, b in enumerate(self.blocks)
        ]
        n = len(self.blocks)
        head = self.head
        layers.append((f"{self._index(n)} head {head.in_features}->{head.out_features}", head))
        return layers

    def activation_sites(self) -> list[tuple[str, nn.Module]]:
        return [
            (f"{self._index(i)} {self.activation_name}", b.act) for i, b in enumerate(self.blocks)
        ]


def _describe(layer: nn.Module) -> str:
    if hasattr(layer, "describe"):  # stacked layers describe themselves like the plain ones
        return layer.describe()
    if isinstance(layer, nn.Linear):
        return f"linear {layer.in_features}->{layer.out_features}"
    if isinstance(layer, nn.Conv1d | nn.Conv2d):
        kind = type(layer).__name__.lower()
        return f"{kind} {layer.in_channels}->{layer.out_channels}"
    return type(layer).__name__.lower()


# -- assembling a model --------------------------------------------------------------------
def build_hidden_blocks(
    make_layer: Callable[..., nn.Module], in_features: int, spatial_dims: int, spec: Any
) -> list[HiddenBlock]:
    """``spec.depth`` hidden blocks of ``spec.width`` units (``spec`` is a resolved ModelSpec);
    with ``residual`` the first is a plain stem (linear/conv -> norm -> act, changing the
    width) and the rest add their output to their input."""
    check_norm_family(spec.norm.name, spatial_dims)
    blocks = []
    for i in range(spec.depth):
        is_stem = spec.residual and i == 0
        blocks.append(
            HiddenBlock(
                layer=make_layer(in_features if i == 0 else spec.width, spec.width, bias=spec.bias),
                norm=NORMS.build(spec.norm.name, spec.width, spatial_dims, **spec.norm.options),
                act=ACTIVATIONS.build(spec.activation.name, **spec.activation.options),
                dropout=nn.Dropout(spec.dropout)
                if spec.dropout > 0 and not is_stem
                else nn.Identity(),
                residual=spec.residual and i > 0,
            )
        )
    return blocks


def initialize(model: GradModel, init: Any) -> None:
    """Apply the configured init (a resolved ``Named``) to every weight layer (head included)
    and set the biases: zero, or ~ N(0, sigma_b^2) when the init sets ``bias_var``
    (``inits.init_bias``; mean-field theory's sigma_b^2 is every layer's, the head's too).

    torch_default without ``bias_var`` keeps PyTorch's biases too: it stands for "what you get
    out of the box". Norm layers keep their constructor state (weight 1, bias 0).
    """
    biases = bias_options(init.options)
    for _, layer in model.weight_layers():
        INITS.build(init.name, layer.weight, **init.options)
        bias = getattr(layer, "bias", None)
        if bias is not None and (init.name != "torch_default" or biases[BIAS_VAR] > 0):
            init_bias(bias, **biases)
