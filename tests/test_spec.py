"""The typed spine: factors land where they say, specs round-trip, validation is complete."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml

from gradatlas.errors import UserInputError
from gradatlas.suites import FACTORS, TrialSpec, expand_suite, load_suite
from gradatlas.suites.spec import Factor, _check_factor_paths

BASE = {"name": "t", "train": {"steps": 10}}


def _suite(**sections):
    return expand_suite({**BASE, **sections}, source="t.yaml")


def _errors(data: dict) -> str:
    with pytest.raises(UserInputError) as err:
        expand_suite(data, source="t.yaml")
    return err.value.render()


def _get(spec: TrialSpec, path: str):
    section, _, name = path.partition(".")
    return getattr(getattr(spec, section), name) if name else getattr(spec, section)


@pytest.mark.parametrize("name", list(FACTORS))
def test_every_factor_reaches_its_field(name):
    """Two levels of one factor give two trials, differing at the factor's declared field: a
    factor whose value were dropped on the way to the config would collapse them into one id."""
    factor = FACTORS[name]
    suite = _suite(grid={name: list(factor.examples)})
    a, b = (t.spec for t in suite.trials)
    assert a.trial_id != b.trial_id and a.cell_id != b.cell_id
    assert _get(a, factor.path) != _get(b, factor.path)
    assert a.to_config() != b.to_config()
    # Everything else is equal: the factor changes its own field only (lr precedence aside).
    for other in FACTORS.values():
        if other.path != factor.path:
            assert _get(a, other.path) == _get(b, other.path), (name, other.name)


def test_a_factor_without_a_field_fails_at_import(monkeypatch):
    ghost = dataclasses.replace(FACTORS["depth"], name="ghost", path="train.ghost")
    monkeypatch.setitem(FACTORS, "ghost", ghost)
    with pytest.raises(AssertionError, match="no such field"):
        _check_factor_paths()


def test_factor_entries_are_complete():
    for name, factor in FACTORS.items():
        assert isinstance(factor, Factor) and factor.name == name
        assert factor.title and factor.help and len(factor.examples) == 2
        prefix = factor.path.partition(".")[0]
        assert factor.section == (prefix if prefix in ("model", "dataset") else "train")


def test_spec_round_trips_through_its_config():
    for trial in load_suite("optimizers").trials[:6] + load_suite("regularization").trials[:4]:
        again = TrialSpec.from_config(trial.config)
        assert again == trial.spec and again.trial_id == trial.trial_id


def test_specs_are_frozen():
    spec = load_suite("quickstart").trials[0].spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.model.depth = 5  # type: ignore[misc]


def test_lr_precedence_level_then_factor_then_train_then_default():
    lr = lambda **kw: _suite(**kw).trials[0].spec.optim.lr  # noqa: E731
    assert lr(train={"steps": 1, "optimizer": "adam"}) == 1e-3  # adam's default_lr
    assert lr(train={"steps": 1, "optimizer": "adam", "lr": 0.5}) == 0.5
    assert lr(train={"steps": 1, "optimizer": {"name": "adam", "lr": 0.2}}) == 0.2
    assert (
        lr(train={"steps": 1, "lr": 0.5}, grid={"optimizer": [{"name": "adam", "lr": 0.3}]}) == 0.3
    )
    assert lr(train={"steps": 1, "lr": 0.5}, grid={"lr": [0.7]}) == 0.7


def test_validate_and_plan_import_no_torch():
    code = (
        "import sys; from gradatlas.app.cli import main; main(['validate', 'quickstart']); "
        "main(['plan', 'quickstart']); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


# -- validation is complete: every problem in one pass, before anything runs ---------------------
@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        ({"dataset": {"name": "teacher"}, "model": {"family": "cnn"}}, "model.family: cnn needs"),
        ({"grid": {"depth": [10**6]}}, "grid.depth[0]: depth 1,000,000 exceeds limits.max_depth"),
        ({"model": {"width": 10**7}}, "model.width: depth 4 x width 10,000,000 makes about"),
        ({"seeds": 10**9}, "seeds: the plan has 1 cells x 1,000,000,000 seeds"),
        (
            {
                "grid": {n: list(range(1, 11)) for n in ("depth", "width", "batch_size")}
                | {
                    "lr": [10.0**-i for i in range(1, 11)],
                    "dropout": [i / 20 for i in range(10)],
                    "weight_decay": [10.0**-i for i in range(1, 11)],
                    "grad_clip": [float(i) for i in range(1, 11)],
                }
            },
            "grid: the plan has 10,000,000 cells",
        ),
        ({"train": {"steps": 10**12}}, "train.steps: 1000000000000 exceeds limits.max_steps"),
        ({"train": {"steps": 10, "lr": float("nan")}}, "train.lr: expected a positive learning"),
        ({"grid": {"lr": [float("inf")]}}, "grid.lr[0]: expected a positive learning rate"),
        ({"seeds": True}, "seeds:"),
        ({"train": {"epochs": True}}, "train.epochs:"),
        ({"grid": {"depth": [3]}, "model": {"depth": "abc"}}, "model.depth: expected a positive"),
        ({"grid": {"optimizer": [{"name": "momentum", "momentum": -1}]}}, "momentum"),
        ({"grid": {"optimizer": [{"name": "adam", "beta1": 1.5}]}}, "beta1"),
        ({"dataset": {"options": {"num_samples": 0}}}, "dataset.options.num_samples"),
        ({"grid": {"schedule": [{"name": "linear_warmup", "warmup_steps": -5}]}}, "warmup_steps"),
        ({"grid": {"depth": [2, 3]}, "exclude": [{"depth": [2, 3]}]}, "exclude: these rules"),
        ({"seeds": [4294967296]}, "seeds"),
        ({"dataset": {"seed": 2**64}}, "dataset.seed"),
        ({"grid": {"depth": [3, 3]}}, "grid.depth[1]: repeats grid.depth[0]"),
        (
            {
                "train": {"steps": 1, "optimizer": {"name": "adam", "lr": 0.1}},
                "grid": {"lr": [1.0]},
            },
            "train.optimizer.lr: this optimizer sets its own lr",
        ),
        ({"grid": {"norm": ["none", "groupnorm"]}}, "grid.norm[1]: groupnorm applies to conv"),
    ],
)
def test_validation_refuses(sections, needle):
    data = {**BASE, **sections}
    if (
        "train" in sections
        and "steps" not in sections["train"]
        and "epochs" not in sections["train"]
    ):
        data["train"] = {**sections["train"], "steps": 10}
    assert needle in _errors(data)


def test_all_problems_in_one_pass():
    msg = _errors(
        {**BASE, "model": {"depth": 0, "widht": 3},
         "grid": {"activation": ["rellu"], "lr": [-1]}, "outcomes": {"target_accuracy": 2}}
    )  # fmt: skip
    for needle in ("model.depth", "model.widht", "grid.activation[0]", "grid.lr[0]",
                   "outcomes.target_accuracy"):  # fmt: skip
        assert needle in msg, needle


def test_limits_can_be_raised():
    data = {**BASE, "grid": {"depth": [20_000]}, "model": {"width": 2}}
    assert "limits.max_depth" in _errors(data)
    suite = expand_suite({**data, "limits": {"max_depth": 50_000}}, source="t.yaml")
    assert suite.trials[0].spec.model.depth == 20_000


def test_cli_refuses_cnn_on_teacher_and_writes_nothing(tmp_path):
    from tests.conftest import run_cli

    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump({**BASE, "dataset": {"name": "teacher"}, "model": {"family": "cnn"}})
    )
    for command in ("validate", "run"):
        proc = run_cli(command, str(path), cwd=tmp_path)
        assert proc.returncode == 2
        assert (
            f"error: {path}: model.family: cnn needs a dataset with spatial inputs" in proc.stderr
        )
    assert not (tmp_path / "runs").exists()
