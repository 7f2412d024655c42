"""The ``dataset`` and ``train_subset`` grid factors: levels, per-cell shapes and splits, the data
a trial trains on, unchanged ids for suites that vary neither, and a real sweep over both."""

from __future__ import annotations

import copy
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from gradatlas.errors import UserInputError
from gradatlas.suites import expand_suite, load_suite

BASE: dict[str, Any] = {
    "name": "t",
    "model": {"family": "mlp", "width": 8, "depth": 2},
    "train": {"steps": 5, "batch_size": 32},
}


def expand(**sections: Any) -> Any:
    return expand_suite(copy.deepcopy({**BASE, **sections}), source="t.yaml")


def errors(**sections: Any) -> str:
    with pytest.raises(UserInputError) as err:
        expand(**sections)
    return err.value.render()


# -- a suite that varies neither keeps its trial ids ---------------------------------------------
# The designs of suites/quickstart.yaml and suites/claims.yaml as they were when the two factors
# were added (frozen here, so editing a built-in suite does not move the pin; their comments,
# description, tune and claims blocks left out: none of them enters a trial's config). PINNED is
# (trials, sha256 of their newline-joined ids in plan order), computed from the built-in files
# by the code before the factors existed.
FROZEN = {
    "quickstart": """
name: quickstart
dataset: {name: mnist1d, seed: 0}
model: {family: mlp, width: 64}
grid:
  depth: [3, 20]
  activation: [relu, tanh, sigmoid]
  init: [kaiming_normal, xavier_normal, {name: normal, std: 1.0}]
seeds: 2
train: {epochs: 24, batch_size: 128, optimizer: momentum, lr: 0.02}
instrument: {every: 10, max_points: 200}
outcomes:
  target_accuracy: 0.5
  explode_grad_norm: 1.0e+5
  vanish_grad_norm: 1.0e-7
  vanish_ratio: 1.0e-4
  vanish_update_ratio: 1.0e-4
  loss_progress: 0.05
  chance_margin: 0.05
""",
    "claims": """
name: claims
dataset: {name: mnist1d, seed: default}
model: {family: mlp, width: 64, init: kaiming_normal}
grids:
  - activation: [relu]
    depth: [10, 20, 30]
    init: [kaiming_normal, xavier_normal, {name: normal, std: 1.0}]
  - activation: [relu, tanh, sigmoid]
    depth: [3, 10, 20]
    init: [xavier_normal]
    norm: [none, batchnorm]
  - depth: [2, 4]
    width: [256]
    weight_decay: [0, 1.0e-3]
    dropout: [0, 0.3]
  - optimizer: [sgd, momentum, nesterov, rmsprop, adam]
    activation: [relu, sigmoid]
    depth: [3, 10]
    width: [32]
  - optimizer:
      - {name: adam, lr: 1.0e-4}
      - {name: adam, lr: 1.0e-3}
      - {name: adam, lr: 1.0e-2}
    depth: [3, 10]
seeds: 12
train: {epochs: 24, batch_size: 128, optimizer: momentum, lr: 0.02}
outcomes: {target_accuracy: 0.5}
""",
}
PINNED = {
    "quickstart": (36, "dcd15091afb305d7769a47e9ce6b1b44b0f853544889cdbbcf9b547cbf342cb7"),
    "claims": (708, "6812e87befcb066718e091a8a8d304322eb2d7aed106a4d9502546487b9b19d0"),
}


def frozen(name: str) -> dict[str, Any]:
    return yaml.safe_load(FROZEN[name])


@pytest.mark.parametrize("name", list(PINNED))
def test_a_suite_that_varies_neither_factor_keeps_its_trial_ids(name):
    ids = [t.trial_id for t in expand_suite(frozen(name), source=name).trials]
    assert (len(ids), hashlib.sha256("\n".join(ids).encode()).hexdigest()) == PINNED[name]


@pytest.mark.parametrize("name", list(FROZEN))
def test_varying_the_dataset_keeps_the_section_datasets_trials(name):
    """``dataset: [<the section's dataset>, digits]`` in every grid adds digits' trials and
    leaves the section's own exactly as they were (same configs, same ids: results reused)."""
    data = frozen(name)
    before = expand_suite(copy.deepcopy(data), source=name)
    varied = copy.deepcopy(data)
    own = (data.get("dataset") or {}).get("name", "mnist1d")
    # The main grid adds cells of its own only when it names a factor or stands alone.
    main, subs = varied.setdefault("grid", {}), varied.get("grids") or []
    for grid in ([main] if main or not subs else []) + subs:
        grid["dataset"] = [own, "digits"]
    after = expand_suite(varied, source=name)
    mine = [t for t in after.trials if t.factors["dataset"] == own]
    assert [t.trial_id for t in mine] == [t.trial_id for t in before.trials]
    assert [t.config for t in mine] == [t.config for t in before.trials]
    digits = [t for t in after.trials if t.factors["dataset"] == "digits"]
    assert len(digits) == len(before.trials)
    assert {t.spec.dataset.name for t in digits} == {"digits"}


def test_train_subset_zero_is_the_old_config_and_a_subset_is_written():
    plain = expand()
    zero = expand(train={**BASE["train"], "train_subset": 0})
    assert [t.trial_id for t in zero.trials] == [t.trial_id for t in plain.trials]
    assert "train_subset" not in plain.trials[0].config["train"]
    some = expand(train={**BASE["train"], "train_subset": 64})
    assert some.trials[0].config["train"]["train_subset"] == 64
    assert some.trials[0].trial_id != plain.trials[0].trial_id


# -- levels --------------------------------------------------------------------------------------
def test_a_level_is_a_name_or_a_mapping_and_takes_the_sections_seed():
    suite = expand(
        dataset={"name": "mnist1d", "seed": 7, "options": {"num_samples": 1000}},
        grid={
            "dataset": [
                "mnist1d",
                "digits",
                {"name": "mnist1d", "options": {"val_fraction": 0.1}},
                {"name": "digits", "options": {"test_fraction": 0.1}},
            ]
        },
    )
    got = {t.factors["dataset"]: t.config["dataset"] for t in suite.trials}
    assert list(got) == [
        "mnist1d",
        "digits",
        "mnist1d(val_fraction=0.1)",
        "digits(test_fraction=0.1)",
    ]
    assert {d["seed"] for d in got.values()} == {7}
    # The section's options reach its own dataset only, under the level's own.
    assert got["mnist1d"]["options"]["num_samples"] == 1000
    assert got["mnist1d(val_fraction=0.1)"]["options"] == {
        "num_samples": 1000,
        "train_split": 0.8,
        "val_fraction": 0.1,
    }
    assert got["digits"]["options"] == {"val_fraction": 0.2, "test_fraction": 0.2}
    assert got["digits(test_fraction=0.1)"]["options"]["test_fraction"] == 0.1


def test_seed_default_is_each_datasets_own():
    from gradatlas.datasets import default_seed

    suite = expand(dataset={"seed": "default"}, grid={"dataset": ["mnist1d", "digits"]})
    seeds = {t.spec.dataset.name: t.spec.dataset.seed for t in suite.trials}
    assert seeds == {"mnist1d": default_seed("mnist1d"), "digits": default_seed("digits")}
    assert seeds["mnist1d"] == 42


def test_sub_grids_include_and_exclude_take_dataset_levels():
    suite = expand(
        grid={"dataset": ["mnist1d", "digits"], "depth": [2, 3]},
        exclude=[{"dataset": "digits", "depth": 2}],
        include=[{"dataset": {"name": "digits", "options": {"test_fraction": 0.1}}}],
        grids=[{"dataset": ["teacher"]}],
    )
    cells = [(t.factors["dataset"], t.factors["depth"]) for t in suite.trials]
    assert cells == [
        ("mnist1d", "d2"),
        ("mnist1d", "d3"),
        ("digits", "d3"),
        ("digits(test_fraction=0.1)", "d2"),
        ("teacher", "d2"),
    ]


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        (
            {"grid": {"dataset": ["mnist1d", "mnist2d"]}},
            "t.yaml: grid.dataset[1]: unknown dataset 'mnist2d' (did you mean 'mnist1d'? known: "
            "mnist1d, digits, teacher",
        ),
        ({"grid": {"dataset": [3]}}, "grid.dataset[0]: expected the name of a dataset"),
        (
            {"grid": {"dataset": [{"name": "digits", "seed": 3}]}},
            "grid.dataset[0].seed: unknown key 'seed' (a dataset level takes: name, options; the "
            "data seed is the suite's dataset.seed)",
        ),
        ({"grid": {"dataset": [{"options": {}}]}}, "grid.dataset[0]: a dataset given as a"),
        (
            {"grid": {"dataset": [{"name": "digits", "options": {"bogus": 1}}]}},
            "grid.dataset[0].options.bogus: unknown option 'bogus' for dataset 'digits'",
        ),
        (
            {"grids": [{"dataset": [{"name": "digits", "options": {"val_fraction": 0.9}}]}]},
            "grids[0].dataset[0].options.val_fraction:",
        ),
        ({"include": [{"dataset": "cifar"}]}, "include[0].dataset: unknown dataset 'cifar'"),
        (
            {"grid": {"dataset": ["mnist1d", "digits"]}, "exclude": [{"dataset": "cifar10"}]},
            "exclude[0].dataset: 'cifar10' matches no level of grid.dataset (levels: mnist1d, "
            "digits)",
        ),
        ({"grid": {"dataset": ["digits", "digits"]}}, "grid.dataset[1]: repeats"),
        ({"grid": {"train_subset": [-1]}}, "grid.train_subset[0]: expected a non-negative"),
        ({"train": {"steps": 5, "train_subset": "all"}}, "train.train_subset: expected a non-neg"),
    ],
)
def test_bad_levels_name_the_field(sections, needle):
    assert needle in errors(**sections)


# -- per cell: shapes, outputs and the training split --------------------------------------------
def test_the_model_is_checked_against_each_cells_dataset():
    text = errors(model={"family": "cnn", "width": 8}, grid={"dataset": ["digits", "teacher"]})
    assert "grid.dataset[1]: cnn needs a dataset with spatial inputs" in text
    # Without the flat dataset the same model is fine on both image-like ones.
    suite = expand(model={"family": "cnn", "width": 8}, grid={"dataset": ["digits", "mnist1d"]})
    assert [t.spec.dataset.name for t in suite.trials] == ["digits", "mnist1d"]
    # Parameters are estimated with each cell's own input shape: MNIST-1D's 40 inputs fit, the
    # 64 of 8x8 digits do not.
    limit = {"max_parameters": 1000}
    suite = expand(limits=limit, grid={"dataset": ["mnist1d"]}, model={"width": 16, "depth": 1})
    text = errors(limits=limit, grid={"dataset": ["mnist1d", "digits"]},
                  model={"width": 16, "depth": 1})  # fmt: skip
    assert "above limits.max_parameters = 1,000" in text and "model.width" in text


def test_a_subset_larger_than_a_cells_training_split_is_refused():
    # digits trains on 1,079 examples, MNIST-1D (default options) on 3,200.
    ok = expand(grid={"dataset": ["mnist1d", "digits"]}, train={"steps": 5, "train_subset": 1000})
    assert {t.spec.train.train_subset for t in ok.trials} == {1000}
    text = errors(grid={"dataset": ["mnist1d", "digits"]}, train={"steps": 5, "train_subset": 2000})
    assert "train.train_subset: train_subset 2,000 exceeds the 1,079 training examples" in text
    text = errors(dataset={"name": "digits"}, grid={"train_subset": [64, 5000]})
    assert "grid.train_subset[1]: train_subset 5,000 exceeds the 1,079" in text


def test_the_cost_estimate_reads_each_trials_dataset_and_subset():
    from gradatlas.app.cost import estimate_cost

    suite = expand(
        grid={"dataset": ["mnist1d", "digits"], "train_subset": [0, 64]},
        train={"epochs": 1, "batch_size": 32},
    )
    # ceil(3200 / 32) + ceil(64 / 32) + ceil(1079 / 32) + ceil(64 / 32)
    assert estimate_cost(suite.trials).steps == 100 + 2 + 34 + 2


# -- the data a trial trains on ------------------------------------------------------------------
def test_the_training_subset_is_fixed_by_the_data_seed(monkeypatch, tmp_path):
    import torch

    from gradatlas.datasets import split_sizes
    from gradatlas.runners.loader import trial_data

    monkeypatch.setenv("GRADATLAS_CACHE", str(tmp_path / "cache"))
    suite = expand(
        dataset={"name": "digits", "seed": 3},
        grid={"train_subset": [0, 64, 256]},
        seeds=2,
    )
    by = {(t.factors["train_subset"], t.seed): trial_data(t.spec) for t in suite.trials}
    full, n64, n256 = by["nall", 0], by["n64", 0], by["n256", 0]
    # The validation check's split sizes are the loaded ones.
    assert len(full.x_train) == split_sizes("digits", suite.trials[0].spec.dataset.options)[0]
    assert len(n64.x_train) == len(n64.y_train) == 64 and len(n256.x_train) == 256
    # Every trial seed trains on the same examples; validation and test are untouched.
    assert torch.equal(n64.x_train, by["n64", 1].x_train)
    for part in ("x_val", "y_val", "x_test", "y_test"):
        assert getattr(n64, part) is getattr(full, part)

    def rows(x: torch.Tensor) -> set[bytes]:
        return {r.numpy().tobytes() for r in x}

    # The subsets of one data seed are nested and come from the training split.
    assert rows(n64.x_train) <= rows(n256.x_train) <= rows(full.x_train)
    # Another data seed, other examples; the whole split as a "subset" is the split itself.
    other = full.with_train_subset(64, 4)
    assert not torch.equal(other.x_train, n64.x_train)
    assert torch.equal(full.with_train_subset(len(full.x_train), 3).x_train, full.x_train)
    with pytest.raises(UserInputError) as err:
        full.with_train_subset(len(full.x_train) + 1, 3)
    assert err.value.field == "train.train_subset" and "exceeds" in err.value.message


def test_stacked_seeds_train_on_the_same_subset_as_alone():
    """Two seeds of a subset cell trained as one stacked model are the trials each seed is
    alone (every step's loss): each member trains on the cell's subset, not the whole split."""
    import torch

    from gradatlas.runners.parity import compare

    suite = expand(
        dataset={"name": "digits"},
        train={"epochs": 3, "batch_size": 16, "train_subset": 48, "eval_every": 3},
        instrument={"every": 3, "max_points": 50, "probe_batch": 16},
        seeds=2,
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        p = compare(list(suite.trials))
    finally:
        torch.set_num_threads(before)
    assert p.init_identical and p.steps == 9  # 3 epochs of ceil(48 / 16) steps
    assert p.worst_loss_rel <= 1e-5 and p.same_outcomes


def test_mnist1d_split_sizes_match_the_loaded_data(monkeypatch, tmp_path):
    from gradatlas.datasets import split_sizes
    from gradatlas.runners.loader import trial_data

    monkeypatch.setenv("GRADATLAS_CACHE", str(tmp_path / "cache"))
    trial = expand(dataset={"options": {"num_samples": 1000}}).trials[0]
    data = trial_data(trial.spec)
    assert (len(data.x_train), len(data.x_val)) == split_sizes(
        "mnist1d", trial.spec.dataset.options
    )


# -- claims, tuning and scopes name the dataset like any factor ----------------------------------
def _claim(**fields: Any) -> dict[str, Any]:
    return {"id": "c", "text": "t", "metric": "test_acc", "predict": "greater"} | fields


def test_claims_and_tuning_select_by_dataset():
    grid = {"dataset": ["mnist1d", "digits"], "train_subset": [0, 64]}
    claim = _claim(a={"train_subset": 0}, b={"train_subset": 64}, where={"dataset": "digits"})
    tune = {"params": {"lr": {"low": 0.01, "high": 1.0, "log": True}}, "per": ["dataset"]}
    suite = expand(grid=grid, claims=[claim], tune=tune)
    assert len(suite.trials) == 4
    bad = _claim(a={"train_subset": 0}, b={"train_subset": 64}, where={"dataset": "cifar10"})
    assert "claims[0].where.dataset: level 'cifar10' is not one of the plan's levels: mnist1d, " \
        "digits" in errors(grid=grid, claims=[bad])  # fmt: skip
    text = errors(grid={"depth": [2, 3]}, claims=[_claim(a={"depth": 2}, b={"depth": 3},
                  where={"dataset": "digits"})])  # fmt: skip
    assert "dataset is not varied by this suite's plan" in text


def test_a_claims_scope_names_its_datasets():
    from gradatlas.reports.claimscope import claim_scope

    data = {
        **copy.deepcopy(BASE),
        "dataset": {"name": "mnist1d", "seed": "default"},
        "grid": {"dataset": ["mnist1d", "digits"], "train_subset": [0, 64]},
    }
    on_digits = _claim(a={"train_subset": 0}, b={"train_subset": 64}, where={"dataset": "digits"})
    scope = claim_scope(data, on_digits)
    assert scope["dataset"] == {"name": "digits", "title": "digits", "seed": 0}
    assert scope["text"].startswith("digits (seed 0), MLP width 8, 5 steps")
    both = claim_scope(data, _claim(a={"train_subset": 0}, b={"train_subset": 64}))
    assert both["dataset"]["name"] == ["digits", "mnist1d"]
    assert both["text"].startswith("digits (seed 0) + MNIST-1D (seed 42), MLP")


# -- a real sweep over both factors --------------------------------------------------------------
SWEEP = """\
name: dataset-factor
dataset: {name: mnist1d, seed: default, options: {num_samples: 1000}}
model: {family: mlp, width: 8, depth: 2}
grid:
  dataset: [mnist1d, digits]
  train_subset: [0, 64]
seeds: 2
train: {epochs: 1, batch_size: 32, optimizer: sgd, lr: 0.1}
instrument: {every: 5, max_points: 50, probe_batch: 32}
claims:
  - id: subset
    text: More training data, better test accuracy on digits.
    metric: test_acc
    a: {train_subset: 0}
    b: {train_subset: 64}
    where: {dataset: digits}
    predict: greater
"""


@pytest.mark.e2e
def test_a_sweep_over_datasets_and_subsets_records_both(tmp_path, monkeypatch):
    """Two datasets x two subsets x two seeds (stacked), one epoch each: a cell's steps say how
    many examples it trained on, and the report's frame has both factors as columns."""
    from gradatlas.reports.claimscope import claim_scope
    from gradatlas.reports.load import load_experiment
    from gradatlas.reports.overview import _dataset_text
    from gradatlas.runners.sweep import run_suite
    from gradatlas.suites.claims import check_claims
    from tests.conftest import new_store

    monkeypatch.setenv("GRADATLAS_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "suite.yaml"
    path.write_text(SWEEP)
    suite = load_suite(str(path))
    uri = new_store(tmp_path / "runs" / "mlflow.db")
    summary = run_suite(suite, uri, accelerator="cpu", stream=io.StringIO())
    assert summary.ran == 8

    exp = load_experiment("dataset-factor", uri)
    assert exp.factors == ["dataset", "train_subset"]
    assert exp.levels == {"dataset": ["mnist1d", "digits"], "train_subset": ["nall", "n64"]}
    t = exp.trials
    assert len(t) == 8 and set(t["outcome"]) - {""}
    steps = t.groupby(["factor.dataset", "factor.train_subset"])["steps_run"].agg(set).to_dict()
    # One epoch: MNIST-1D (1,000 samples) trains on 640, digits on 1,079, a subset on 64.
    assert steps == {
        ("mnist1d", "nall"): {20.0},
        ("mnist1d", "n64"): {2.0},
        ("digits", "nall"): {34.0},
        ("digits", "n64"): {2.0},
    }
    for run_id, row in t.set_index("run_id").iterrows():
        config = exp.records[run_id]["config"]
        assert config["dataset"]["name"] == row["factor.dataset"]
        assert config["dataset"]["seed"] == (42 if row["factor.dataset"] == "mnist1d" else 0)
        label = row["factor.train_subset"]
        assert config["train"].get("train_subset", 0) == (0 if label == "nall" else int(label[1:]))
    # The claim validates against what was recorded, and its scope is digits.
    claim = yaml.safe_load(SWEEP)["claims"][0]
    assert check_claims([claim], exp.levels, [0, 1]) == []
    resolved = next(s.resolved for s in exp.sweeps if s.resolved)
    assert claim_scope(resolved, claim, t)["dataset"]["name"] == "digits"
    # The report's header names each dataset the trials ran on.
    header = _dataset_text(exp)
    assert header.startswith("varies: mnist1d(seed=42, ") and "; digits(seed=0, " in header


def test_cli_refuses_an_unknown_dataset_level_and_writes_nothing(tmp_path: Path):
    from tests.conftest import run_cli

    bad = tmp_path / "bad.yaml"
    bad.write_text(SWEEP.replace("dataset: [mnist1d, digits]", "dataset: [mnist1d, digitz]"))
    proc = run_cli("run", str(bad), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}: grid.dataset[1]: unknown dataset 'digitz' (did you mean 'digits'?" in (
        proc.stderr
    )
    assert not (tmp_path / "runs").exists()
