"""The suite language: what a YAML suite may say, with defaults, checked by pydantic.

Only the *shape* is checked here (sections, field names, types, ranges). What a factor level means
(an activation name, an optimizer's options) is checked against the registries in
``gradatlas.suites.factors``, so the two can never disagree about what exists.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Section(BaseModel):
    # Unknown keys are errors: a misspelled field must not be silently ignored.
    model_config = ConfigDict(extra="forbid", strict=False)


class DatasetSpec(Section):
    name: str = "mnist1d"
    seed: NonNegInt = 0
    options: dict[str, Any] = Field(default_factory=dict)


class TrainSpec(Section):
    """How each trial trains. ``optimizer``, ``lr``, ``weight_decay`` and ``grad_clip`` are the
    defaults that grid factors of the same name override."""

    epochs: PositiveInt | None = None
    steps: PositiveInt | None = None
    batch_size: PositiveInt = 128
    optimizer: str | dict[str, Any] = "sgd"
    lr: Annotated[float, Field(gt=0)] | None = None
    weight_decay: Annotated[float, Field(ge=0)] | dict[str, Any] = 0.0
    grad_clip: Annotated[float, Field(ge=0)] | dict[str, Any] | None = None
    schedule: str | dict[str, Any] = "constant"
    precision: Literal["32", "64", "16-mixed", "bf16-mixed"] = "32"
    eval_every: NonNegInt = 0

    @model_validator(mode="after")
    def _one_budget(self) -> TrainSpec:
        if self.epochs is not None and self.steps is not None:
            raise ValueError("set either train.epochs or train.steps, not both")
        if self.epochs is None and self.steps is None:
            self.epochs = 10
        return self


class InstrumentSpec(Section):
    """What the runner records. Per-step scalars (loss, global grad norm) are always kept on the
    device; per-layer statistics are taken every ``every`` steps; curves sent to MLflow are
    thinned to at most ``max_points`` points each."""

    every: PositiveInt = 10
    max_points: Annotated[int, Field(ge=10)] = 200
    probe_batch: PositiveInt = 256


class OutcomeSpec(Section):
    """Thresholds of the outcome rules (see ``gradatlas.runners.outcome``); printed in reports."""

    target_accuracy: Annotated[float, Field(gt=0.0, le=1.0)] = 0.6
    target_loss: Annotated[float, Field(gt=0.0)] = 0.2
    explode_grad_norm: Annotated[float, Field(gt=0.0)] = 1e5
    vanish_grad_norm: Annotated[float, Field(gt=0.0)] = 1e-7
    vanish_ratio: Annotated[float, Field(gt=0.0)] = 1e-5
    loss_progress: Fraction = 0.05
    chance_margin: Fraction = 0.05


class SuiteSpec(Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)]
    description: str = ""
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: dict[str, Any] = Field(default_factory=lambda: {"family": "mlp"})
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    include: list[dict[str, Any]] = Field(default_factory=list)
    seeds: PositiveInt | Annotated[list[NonNegInt], Field(min_length=1)] = 1
    train: TrainSpec = Field(default_factory=TrainSpec)
    instrument: InstrumentSpec = Field(default_factory=InstrumentSpec)
    outcomes: OutcomeSpec = Field(default_factory=OutcomeSpec)

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


def loc_to_path(loc: tuple[Any, ...]) -> str:
    """pydantic's ('grid', 'activation', 2) -> 'grid.activation[2]'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(
            ("constrained-", "list[", "dict[", "int", "float", "str", "bool", "none")
        ):
            continue  # union-branch names pydantic adds to loc; not fields the user wrote
        else:
            path += f".{part}" if path else str(part)
    return path
