"""The resolved trial: frozen, typed specs, built once by the suites layer and trusted below it.

A suite is validated and expanded once (``gradatlas.suites.expand``); each trial comes out as a
``TrialSpec``: dataset, model, optimizer, training, instruments, outcome thresholds and seed,
every default filled in. Builders and runners read its typed fields and re-check nothing.

Its canonical JSON (``to_config``) is the trial's identity: ``trial_id`` hashes it, MLflow
records it, workers receive it, and ``TrialSpec.from_config`` rebuilds the spec from a record.
The JSON layout is the one gradatlas has always written (schema 1), so trial ids are unchanged.

Grid factors are declared here, beside the field each one sets (``FACTORS``): a factor *is* a
spec field, so it cannot reach no field; adding one is one field plus one ``Factor`` entry in
this file, and the code that uses the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from gradatlas.identity import cell_id, config_hash
from gradatlas.suites import levels as lv
from gradatlas.suites.levels import Clip, Named, WeightDecay
from gradatlas.suites.schema import OutcomeSection

__all__ = ["FACTORS", "Clip", "Factor", "Named", "TrialSpec", "WeightDecay"]


# -- the sections of a trial ---------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    name: str
    seed: int
    options: Mapping[str, Any]

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "options": dict(self.options)}


@dataclass(frozen=True)
class DatasetDefaults:
    """The suite's ``dataset`` section, as every level of the ``dataset`` factor sees it.

    ``seed`` (a number, or ``default``: each dataset's own) is every level's data seed, so the
    datasets of one suite are drawn alike; ``options`` are written for the section's own
    dataset (``name``), so they reach a level of that name only (under the level's own). A
    suite that does not vary the dataset resolves the section exactly as it always did, so its
    configs and trial ids are unchanged.
    """

    name: str
    seed: int | str
    options: Mapping[str, Any]
    # level -> its DatasetSpec: a plan has a few datasets and many cells
    _resolved: dict[Any, DatasetSpec] = field(default_factory=dict, compare=False, repr=False)

    def resolve(self, level: Named) -> DatasetSpec:
        from gradatlas.datasets import DATASETS, default_seed

        key = (level.name, repr(sorted(level.options.items())))
        if key not in self._resolved:
            own = self.options if level.name == self.name else {}
            options = DATASETS.check_options(level.name, {**own, **level.options})
            seed = default_seed(level.name) if self.seed == "default" else int(self.seed)
            self._resolved[key] = DatasetSpec(level.name, seed, options)
        return self._resolved[key]


def late(default: Any) -> Any:
    """A field added after schema 1: it carries the behaviour from before it existed as its
    default, and is written to the config only when it differs, so every trial id recorded
    before the field existed stays valid (and old records load with the default)."""
    return field(default=default, metadata={"late": True})


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "Named": Named.from_config,
    "Clip": lambda d: Clip(str(d["mode"]), float(d["max"])),
}


def section_config(section: Any) -> dict[str, Any]:
    """A section's fields as config JSON: nested values by their own ``to_config``, late fields
    only when not at their default, a family's ``options`` flattened in (the schema-1 layout)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.name == "options":
            out.update(value)
        elif not (f.metadata.get("late") and value == f.default):
            out[f.name] = value.to_config() if hasattr(value, "to_config") else value
    return out


def section_from_config(cls: type, data: Mapping[str, Any]) -> Any:
    """The inverse of ``section_config``: keys that are no field go to ``options``."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data and f.name != "options":
            kwargs[f.name] = _DECODERS.get(str(f.type), lambda v: v)(data[f.name])
    if "options" in names:
        kwargs["options"] = {k: v for k, v in data.items() if k not in names}
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelSpec:
    """What is trained. ``options`` holds the family's own options (cnn: ``kernel_size``)."""

    family: str
    depth: int
    width: int
    activation: Named
    init: Named
    norm: Named
    dropout: float
    residual: bool
    bias: bool = late(True)
    # The network's output is multiplied by this (a softmax temperature 1/scale): large logits
    # without touching the init (``GradModel.forward``).
    logit_scale: float = late(1.0)
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_config(self) -> dict[str, Any]:
        return section_config(self)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> ModelSpec:
        return section_from_config(cls, data)


@dataclass(frozen=True)
class OptimSpec:
    """The optimizer with its effective learning rate (the precedence already applied)."""

    optimizer: Named
    lr: float
    weight_decay: WeightDecay

    def to_config(self) -> dict[str, Any]:
        return {
            **self.optimizer.to_config(),
            "lr": self.lr,
            "weight_decay": self.weight_decay.value,
            "wd_mode": self.weight_decay.mode,
        }

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> OptimSpec:
        own = {k: v for k, v in data.items() if k not in ("lr", "weight_decay", "wd_mode")}
        return cls(
            Named.from_config(own),
            float(data["lr"]),
            WeightDecay(float(data["weight_decay"]), str(data["wd_mode"])),
        )


@dataclass(frozen=True)
class TrainSpec:
    epochs: int | None
    steps: int | None
    precision: str
    eval_every: int
    batch_size: int
    schedule: Named
    grad_clip: Clip
    label_smoothing: float = late(0.0)
    # Classification loss (``levels.LOSSES``): softmax + cross-entropy, or MSE on the raw logits
    # against the one-hot target; regression trains on MSE whatever this says.
    loss: str = late("cross_entropy")
    # Training examples the trial trains on (0: all): a subset fixed by the data seed
    # (``runners.loader.trial_data``), the same for every trial seed.
    train_subset: int = late(0)

    def to_config(self) -> dict[str, Any]:
        return section_config(self)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> TrainSpec:
        return section_from_config(cls, data)


@dataclass(frozen=True)
class InstrumentSpec:
    """What the runner records (defaults and ranges: ``schema.InstrumentSection``)."""

    every: int
    max_points: int
    probe_batch: int


@dataclass(frozen=True)
class OutcomeThresholds:
    """Thresholds of the outcome rules (``gradatlas.runners.outcome``), printed in reports;
    their defaults and ranges live in one place, ``schema.OutcomeSection``."""

    target_accuracy: float
    target_loss: float
    explode_grad_norm: float
    explode_init_loss_factor: float
    explode_loss_factor: float
    diverge_rise: float
    vanish_grad_norm: float
    vanish_ratio: float
    vanish_update_ratio: float
    loss_progress: float
    chance_margin: float

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> OutcomeThresholds:
        """A record written before a threshold existed (``vanish_update_ratio``,
        ``explode_init_loss_factor``, ``explode_loss_factor``, ``diverge_rise``) loads with
        that threshold's default: a missing key takes ``OutcomeSection``'s value."""
        return cls(**(OutcomeSection().model_dump() | dict(data)))


@dataclass(frozen=True)
class TrialSpec:
    """One trial, resolved. Its identity is its config: ``trial_id`` and ``cell_id``."""

    dataset: DatasetSpec
    model: ModelSpec
    optim: OptimSpec
    train: TrainSpec
    instrument: InstrumentSpec
    outcomes: OutcomeThresholds
    seed: int

    def to_config(self) -> dict[str, Any]:
        """The canonical nested dict (what is hashed, recorded and sent to workers)."""
        return {
            "dataset": self.dataset.to_config(),
            "model": self.model.to_config(),
            "optim": self.optim.to_config(),
            "train": self.train.to_config(),
            "instrument": dataclasses.asdict(self.instrument),
            "outcomes": dataclasses.asdict(self.outcomes),
            "seed": self.seed,
        }

    @cached_property
    def trial_id(self) -> str:
        return config_hash(self.to_config())

    @cached_property
    def cell_id(self) -> str:
        return cell_id(self.to_config())

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> TrialSpec:
        """Rebuild a spec from a recorded config (``trial.json``'s ``config``)."""
        ds = data["dataset"]
        return cls(
            dataset=DatasetSpec(str(ds["name"]), int(ds["seed"]), dict(ds.get("options") or {})),
            model=ModelSpec.from_config(data["model"]),
            optim=OptimSpec.from_config(data["optim"]),
            train=TrainSpec.from_config(data["train"]),
            instrument=InstrumentSpec(**data["instrument"]),
            outcomes=OutcomeThresholds.from_config(data["outcomes"]),
            seed=int(data["seed"]),
        )


# -- grid factors ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Factor:
    """One grid factor: the spec field it sets, its default, how a level is resolved and labelled.

    ``path`` is the field in ``TrialSpec`` (``"model.depth"``, ``"optim.lr"``); the suite writes
    the same setting as ``<section>.<name>`` in its fixed blocks (``model.depth``,
    ``train.lr``) and as ``grid.<name>`` to vary it, and both go through ``resolve``.
    ``default`` is the level used when the suite sets neither (None for ``lr``: the optimizer's
    own ``default_lr``). ``title`` is the report's axis label. ``examples`` are two levels
    that must give different trials (a test checks every factor with them).

    ``dataset`` is the one factor whose path is a whole section of the trial: its fixed value
    is the suite's ``dataset`` section, and a level is completed from that section
    (``DatasetDefaults``) when the trial is resolved.
    """

    name: str
    path: str
    section: str  # where the suite sets it as a fixed value: "model", "train" or "dataset"
    default: Any
    resolve: Callable[[Any], Any]
    label: Callable[[Any], str]
    help: str
    title: str
    examples: tuple[Any, Any]


def _factor(name: str, path: str, default: Any, resolve: Callable[[Any], Any],
            label: Callable[[Any], str], help: str, title: str,
            examples: tuple[Any, Any]) -> Factor:  # fmt: skip
    section = {"model": "model", "dataset": "dataset"}.get(path.partition(".")[0], "train")
    return Factor(name, path, section, default, resolve, label, help, title, examples)


FACTORS: dict[str, Factor] = {
    f.name: f
    for f in [
        _factor("dataset", "dataset", "mnist1d", lv.dataset, lv.label_dataset,
                "a registered dataset, or {name, options}; the data seed is dataset.seed",
                "Dataset", ("mnist1d", "digits")),
        _factor("depth", "model.depth", 4, lv.positive_int, lambda v: f"d{v}",
                "hidden layers", "Depth", (3, 5)),
        _factor("width", "model.width", 64, lv.positive_int, lambda v: f"w{v}",
                "units (MLP) or channels (CNN)", "Width", (16, 32)),
        _factor("activation", "model.activation", "relu", lv.activation, lv.label_activation,
                "hidden-layer nonlinearity", "Activation", ("relu", "tanh")),
        _factor("init", "model.init", "kaiming_normal", lv.init, lv.label_init,
                "weight initialization (gain multiplies the std)", "Initialization",
                ("kaiming_normal", "xavier_normal")),
        _factor("norm", "model.norm", "none", lv.norm, lv.label_norm,
                "normalization after each hidden layer", "Normalization", ("none", "batchnorm")),
        _factor("dropout", "model.dropout", 0.0, lv.dropout, lambda v: f"drop{lv.fmt(v)}",
                "dropout probability", "Dropout", (0.0, 0.1)),
        _factor("residual", "model.residual", False, lv.boolean,
                lambda v: "res" if v else "plain", "skip connections around hidden layers",
                "Residual", (False, True)),
        _factor("bias", "model.bias", True, lv.boolean, lambda v: "bias" if v else "nobias",
                "learned biases in the hidden layers (false: weights only)", "Hidden biases",
                (True, False)),
        _factor("logit_scale", "model.logit_scale", 1.0, lv.logit_scale,
                lambda v: f"logit{lv.fmt(v)}",
                "multiplies the network's output (softmax temperature 1/scale); init untouched",
                "Logit scale", (1.0, 10.0)),
        _factor("optimizer", "optim.optimizer", "sgd", lv.optimizer, lv.label_optimizer,
                "a name, or a mapping with lr and hyper-parameters", "Optimizer",
                ("momentum", "nesterov")),
        _factor("lr", "optim.lr", None, lv.learning_rate, lambda v: f"lr{lv.fmt(v)}",
                "learning rate", "Learning rate", (0.01, 0.1)),
        _factor("weight_decay", "optim.weight_decay", 0.0, lv.weight_decay,
                lv.label_weight_decay, "L2: a number (coupled) or {value, mode: coupled|decoupled}",
                "Weight decay", (0.0, 1e-4)),
        _factor("grad_clip", "train.grad_clip", 0, lv.grad_clip, lv.label_grad_clip,
                "gradient clipping: a max norm, {norm: X} or {value: X}", "Gradient clipping",
                (None, 1.0)),
        _factor("batch_size", "train.batch_size", 128, lv.positive_int, lambda v: f"bs{v}",
                "minibatch size", "Batch size", (64, 128)),
        _factor("train_subset", "train.train_subset", 0, lv.non_negative_int,
                lambda v: f"n{v}" if v else "nall",
                "training examples trained on (0: all), fixed by the data seed",
                "Training examples", (0, 64)),
        _factor("label_smoothing", "train.label_smoothing", 0.0,
                lv.in_unit_interval("label smoothing"), lambda v: f"ls{lv.fmt(v)}",
                "label smoothing of the training loss (classification)", "Label smoothing",
                (0.0, 0.1)),
        _factor("loss", "train.loss", "cross_entropy", lv.loss, lv.label_loss,
                "classification loss: cross_entropy (softmax) or mse (raw logits vs one-hot)",
                "Loss", ("cross_entropy", "mse")),
        _factor("schedule", "train.schedule", "constant", lv.schedule, lv.label_schedule,
                "learning-rate schedule", "LR schedule", ("constant", "cosine")),
    ]
}  # fmt: skip


def resolve_trial(
    settings: Mapping[str, Any],
    *,
    family: str,
    family_options: Mapping[str, Any],
    budget: Mapping[str, Any],
    dataset: DatasetDefaults,
    instrument: InstrumentSpec,
    outcomes: OutcomeThresholds,
    seed: int,
) -> TrialSpec:
    """Land every factor's resolved value (``settings``: factor name -> value, all factors) at
    its path and apply the learning-rate precedence: the optimizer level's own lr, then the lr
    factor / ``train.lr``, then the optimizer's ``default_lr``; the dataset level is completed
    from the suite's section (``dataset``). Nothing here knows a factor by name except those
    two, so a new factor needs no line here."""
    from gradatlas.optim import default_lr

    fields: dict[str, dict[str, Any]] = {"model": {}, "optim": {}, "train": {}}
    for name, factor in FACTORS.items():
        section, _, key = factor.path.partition(".")
        if key:  # "dataset" sets a whole section, below
            fields[section][key] = settings[name]
    optimizer: Named = fields["optim"]["optimizer"]
    own_lr = optimizer.options.get("lr")
    lr = own_lr if own_lr is not None else fields["optim"]["lr"]
    fields["optim"]["optimizer"] = Named(
        optimizer.name, {k: v for k, v in optimizer.options.items() if k != "lr"}
    )
    fields["optim"]["lr"] = float(lr if lr is not None else default_lr(optimizer.name))
    return TrialSpec(
        dataset=dataset.resolve(settings["dataset"]),
        model=ModelSpec(family=family, options=dict(family_options), **fields["model"]),
        optim=OptimSpec(**fields["optim"]),
        train=TrainSpec(**budget, **fields["train"]),
        instrument=instrument,
        outcomes=outcomes,
        seed=seed,
    )


_SECTION_TYPES = {"model": ModelSpec, "optim": OptimSpec, "train": TrainSpec}


def _check_factor_paths() -> None:
    """Every factor names a real spec field: import fails otherwise, so a factor that reaches
    no field is caught by any test, never by a silent collapse of cells into one trial id."""
    for factor in FACTORS.values():
        section, _, name = factor.path.partition(".")
        if factor.path == "dataset":  # the one factor that sets a whole section
            continue
        cls = _SECTION_TYPES.get(section)
        if cls is None or name not in {f.name for f in dataclasses.fields(cls)}:
            raise AssertionError(f"factor {factor.name!r} sets {factor.path!r}: no such field")


_check_factor_paths()
