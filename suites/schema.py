"""The suite language's fixed shape: sections, field names, types and ranges, checked by pydantic.

The ``model`` and ``train`` blocks are mostly grid-factor settings (``model.depth``,
``train.lr``), which the factors' own resolvers check (``gradatlas.suites.spec.FACTORS``), so a
fixed setting and a grid level of the same name are checked by the same code; the few settings
that are not factors (``model.family``, the training budget) are typed here.

Numbers are lax about strings (PyYAML reads ``1e-3`` as a string) but never take booleans, and
floats must be finite. ``limits`` guards against a typo that would run for years or fill the
disk: a plan beyond them is refused at validation, naming the limit to raise.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MAX_SEED = 2**32 - 1  # numpy, Lightning and CUDA generators all take 32-bit seeds


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r} (a boolean is not a number)")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
PositiveInt = Annotated[Int, Field(gt=0)]
NonNegInt = Annotated[Int, Field(ge=0)]
Seed = Annotated[Int, Field(ge=0, le=MAX_SEED)]
Finite = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
PositiveFloat = Annotated[Finite, Field(gt=0.0)]
NonNegFloat = Annotated[Finite, Field(ge=0.0)]
Fraction = Annotated[Finite, Field(ge=0.0, le=1.0)]


class Section(BaseModel):
    # Unknown keys are errors: a misspelled field must not be silently ignored.
    model_config = ConfigDict(extra="forbid", strict=False)


class DatasetSection(Section):
    """``seed`` fixes the data and its train/validation/test split; ``default`` is the
    dataset's own default seed (mnist1d's generator: 42, the seed of its reference numbers).

    ``name`` is the suite's dataset unless ``grid.dataset`` varies it (levels: a name or
    ``{name, options}``); the seed then applies to every level (``default``: each dataset's
    own), and ``options`` to the level of this ``name`` only (``spec.DatasetDefaults``)."""

    name: str = "mnist1d"
    seed: Seed | Literal["default"] = 0
    options: dict[str, Any] = Field(default_factory=dict)


class Budget(Section):
    """The training budget and numerics: the ``train`` settings that are not grid factors."""

    epochs: PositiveInt | None = None
    steps: NonNegInt | None = None  # 0: probe-only (init profiles, no training, no outcome)
    precision: Literal["32", "64", "16-mixed", "bf16-mixed"] = "32"
    eval_every: NonNegInt = 0

    @model_validator(mode="after")
    def _one_budget(self) -> Budget:
        if self.epochs is not None and self.steps is not None:
            raise ValueError("set either train.epochs or train.steps, not both")
        if self.epochs is None and self.steps is None:
            self.epochs = 10
        return self


class InstrumentSection(Section):
    """What the runner records. Per-step scalars (loss, global grad norm) are always kept on the
    device; per-layer statistics are taken every ``every`` steps; curves sent to MLflow are
    thinned to at most ``max_points`` points each."""

    every: PositiveInt = 10
    max_points: Annotated[Int, Field(ge=10)] = 200
    probe_batch: PositiveInt = 256


class OutcomeSection(Section):
    """Thresholds of the outcome rules (see ``gradatlas.runners.outcome``); printed in reports."""

    target_accuracy: Annotated[Finite, Field(gt=0.0, le=1.0)] = 0.5
    target_loss: PositiveFloat = 0.2
    explode_grad_norm: PositiveFloat = 1e5  # global gradient norm as applied (after clipping)
    explode_init_loss_factor: PositiveFloat = 50.0  # step-0 loss above this x chance
    explode_loss_factor: PositiveFloat = 100.0  # a loss above this x its start scale
    diverge_rise: PositiveFloat = 0.5  # diverged: final loss above (1 + this) x start scale
    vanish_grad_norm: PositiveFloat = 1e-7
    vanish_ratio: PositiveFloat = 1e-4
    vanish_update_ratio: PositiveFloat = 1e-4  # |dw| / |w| per step, per unit learning rate
    loss_progress: Fraction = 0.05
    chance_margin: Fraction = 0.05


def _switch(value: Any) -> Any:
    """YAML 1.1 reads a bare ``off`` (and ``no``, ``false``) as False and ``on``/``yes`` as True,
    so ``fuse: off`` in a suite or ``--set execution.fuse=off`` arrives as a boolean: read it
    as the word the user wrote (False: ``off``, True: ``auto``)."""
    if isinstance(value, bool):
        return "auto" if value else "off"
    return value


class ExecutionSection(Section):
    """How the trials run, not what they are: nothing here enters a trial's config or id, so
    the same trial batched or not, on one worker or many, is the same trial.

    ``fuse``: ``auto`` trains every pending trial that shares a shape (network, data, optimizer
    family, budget, precision) in one work unit, as members of stacked models whose seeds,
    inits, learning rates, schedules, optimizer options, weight decay, dropout, clipping bounds
    and label smoothing may differ (``runners.batching``); ``off``: one unit per cell.

    ``batch_seeds``: how many of a unit's trials train together as one stacked model. ``auto``
    takes every pending one that fits the device's memory (16-mixed always trains one at a
    time: its loss scale would couple the members); ``1`` trains each trial on its own.

    ``live_every_s``: a trial's MLflow run exists (RUNNING) from its start and receives its
    curves at an evaluation step at most this often (seconds), so the UI shows a long trial's
    progress; ``0`` writes each run once, when its trial ends (``runners.live``).
    """

    fuse: Annotated[Literal["auto", "off"], BeforeValidator(_switch)] = "auto"
    batch_seeds: Literal["auto"] | PositiveInt = "auto"
    live_every_s: NonNegFloat = 10.0


class Limits(Section):
    """Sizes beyond which a plan is refused before anything runs; raise them here, deliberately."""

    max_trials: PositiveInt = 100_000
    max_depth: PositiveInt = 10_000
    max_parameters: PositiveInt = 1_000_000_000
    max_steps: PositiveInt = 100_000_000


class TuneParam(Section):
    """One tuned hyper-parameter's range (``log``: sampled on a log scale)."""

    low: Finite
    high: Finite
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> TuneParam:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g}")
        return self


class TuneSampler(Section):
    name: Literal["tpe", "random"] = "tpe"
    seed: Seed = 0


class TunePruner(Section):
    """Stops tuning trials whose intermediate validation value lags (median: below the median
    of earlier trials at the same step; successive_halving: outside the top 1/eta at a rung)."""

    name: Literal["median", "successive_halving", "none"] = "median"
    startup_trials: NonNegInt = 5  # median: trials that finish before any is pruned
    warmup_steps: NonNegInt = 0  # median: steps before pruning starts
    eta: Annotated[Int, Field(ge=2)] = 3  # successive_halving: keep the top 1/eta per rung
    min_steps: PositiveInt = 50  # successive_halving: the first rung


class MaxStableLr(Section):
    """Bracketing of the largest learning rate that does not explode, per cell."""

    low: PositiveFloat = 1e-4
    high: PositiveFloat = 10.0
    steps: PositiveInt = 6  # bisection steps on a log scale after the bracket is found


class TuneSection(Section):
    """Tuning before evaluation: one Optuna study per group of cells (``per``), each trial of a
    study trained at sampled values on the tuning seeds; the suite's own seeds then run at
    each group's best values (``gradatlas.runners.tuning``)."""

    params: Annotated[dict[str, TuneParam], Field(min_length=1)]
    per: list[str] = Field(default_factory=list)  # factors; [] = one study for the whole suite
    # Only the cells matching every filter (factor -> level or list of levels) are tuned; the
    # others run as written. {} = every cell.
    where: dict[str, Any] = Field(default_factory=dict)
    trials: PositiveInt = 20  # per study
    steps: PositiveInt | None = None  # per tuning trial (default: the suite's own budget)
    objective: Literal["val_acc", "val_loss"] = "val_acc"
    sampler: TuneSampler = Field(default_factory=TuneSampler)
    pruner: TunePruner = Field(default_factory=TunePruner)
    seeds: Annotated[list[Seed], Field(min_length=1)] = Field(default_factory=lambda: [10_000])
    max_stable_lr: MaxStableLr | None = None
    # Robustness: each tuned cell also runs the suite's seeds at its study's second-best values
    # (the best completed trial distinct from the best: ``suites.tune.distinct``), so a claim can
    # be judged again there; a verdict that holds only at the argmax was picked by accident.
    second_best: bool = False
    # Distinct: a log param at least this factor from the best; a linear one at least 10% of
    # its range away.
    second_best_ratio: Annotated[Finite, Field(gt=1.0)] = 2.0
    # Short-horizon bias: this many groups (seeded choice) are tuned again at the suite's own
    # budget, in a second study ``<suite>/<group>@full``; the report compares the two bests.
    # Only when ``steps`` is below the suite's budget.
    horizon_check: NonNegInt = 0


class ClaimSection(Section):
    """One claim put to the test (``gradatlas.reports.claims``): the trials of group ``a`` and
    group ``b`` (factor -> level or list of levels, within ``where``) are matched cell by cell
    on every other factor, and ``metric`` is compared in the ``predict``ed direction; ``equal``
    claims need a ``margin`` (no difference larger than it). ``a`` and ``b`` may also select
    ``seeds`` (``even``, ``odd`` or a list). A ``control`` checks the machinery rather than a
    finding (an A/A comparison, ``a: {seeds: even}, b: {seeds: odd}``): its verdict must come
    out inconclusive, and the report shows controls apart from the findings."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=40)]
    text: Annotated[str, Field(min_length=1)]
    source: str = ""
    metric: str
    a: Annotated[dict[str, Any], Field(min_length=1)]
    b: Annotated[dict[str, Any], Field(min_length=1)]
    where: dict[str, Any] = Field(default_factory=dict)
    predict: Literal["greater", "less", "equal"]
    margin: PositiveFloat | None = None
    control: bool = False
    # An interaction claim: the A-B effect at ``by``'s first level minus the A-B effect at its
    # second (one factor, two levels): "weight decay helps more with dropout than without".
    by: dict[str, Annotated[list[Any], Field(min_length=2, max_length=2)]] | None = None
    # A curve claim: for each arm and seed, the width (in decades) of the range of the numeric
    # factor ``over`` (e.g. lr) whose ``metric`` lies within ``within`` of that curve's best.
    over: str | None = None
    within: PositiveFloat | None = None

    @model_validator(mode="after")
    def _margin(self) -> ClaimSection:
        if self.predict == "equal" and self.margin is None:
            raise ValueError(
                "predict: equal needs a margin (the largest difference that is 'no difference')"
            )
        if (self.over is None) != (self.within is None):
            raise ValueError(
                "over and within go together: over names the numeric factor a curve runs over "
                "(lr), within how close to the curve's best a level must be to count"
            )
        if self.by is not None and len(self.by) != 1:
            raise ValueError(f"by names one factor with two levels, got {len(self.by)} factors")
        return self


class SuiteSpec(Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)]
    description: str = ""
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    model: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    # More grids, each crossed on its own; the plan is their union with ``grid`` (a factor a
    # sub-grid does not name keeps its fixed setting). One suite can hold several designs.
    grids: list[dict[str, Annotated[list[Any], Field(min_length=1)]]] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    include: list[dict[str, Any]] = Field(default_factory=list)
    seeds: PositiveInt | Annotated[list[Seed], Field(min_length=1)] = 1
    train: dict[str, Any] = Field(default_factory=dict)
    instrument: InstrumentSection = Field(default_factory=InstrumentSection)
    outcomes: OutcomeSection = Field(default_factory=OutcomeSection)
    limits: Limits = Field(default_factory=Limits)
    execution: ExecutionSection = Field(default_factory=ExecutionSection)
    tune: TuneSection | None = None
    claims: list[ClaimSection] = Field(default_factory=list)

    @property
    def seed_count(self) -> int:
        return self.seeds if isinstance(self.seeds, int) else len(self.seeds)

    def seed_list(self) -> list[int]:
        """The seeds; call only after the plan size was checked (``seeds: 10**9`` is valid
        YAML)."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


def loc_to_path(loc: tuple[Any, ...]) -> str:
    """pydantic's ('grid', 'activation', 2) -> 'grid.activation[2]'."""
    from gradatlas.errors import field_key

    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(
            ("function-", "constrained-", "list[", "dict[", "int", "float", "str", "bool", "none")
        ) or str(part).startswith(("lax-", "strict-", "json-")):
            continue  # union-branch names pydantic adds to loc; not fields the user wrote
        else:
            key = field_key(part)
            path += f".{key}" if path else key
    return path
