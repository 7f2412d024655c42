"""Command-line overrides (--set, --seeds): applied before validation, checked like the file."""

from __future__ import annotations

import pytest

from gradatlas.errors import UserInputError
from gradatlas.suites import load_suite
from gradatlas.suites.overrides import apply_overrides, parse_path
from tests.conftest import run_cli


def test_parse_path():
    assert parse_path("grid.init[2].std") == ["grid", "init", 2, "std"]
    with pytest.raises(UserInputError, match="not a field path"):
        parse_path("grid..depth")


def test_overrides_set_values_and_lists():
    suite = load_suite("quickstart", ["train.steps=5", "grid.depth=[3, 5]", "seeds=3"])
    specs = [t.spec for t in suite.trials]
    assert {s.model.depth for s in specs} == {3, 5} and {s.seed for s in specs} == {0, 1, 2}
    assert all(
        s.train.steps == 5 and s.train.epochs is None for s in specs
    )  # steps replaced epochs
    assert suite.overrides == ("train.steps=5", "grid.depth=[3, 5]", "seeds=3")
    one = load_suite("quickstart", ["grid.init[2]={name: normal, std: 0.5}"])
    assert {t.factors["init"] for t in one.trials} >= {"normal(std=0.5)"}


def test_overrides_leave_the_data_alone():
    data = {"name": "x", "train": {"epochs": 2}}
    out = apply_overrides(data, ["train.lr=0.1"], "x.yaml")
    assert data == {"name": "x", "train": {"epochs": 2}} and out["train"]["lr"] == 0.1


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        (
            "train.epoch=2",
            "train.epoch: unknown field (not allowed in train; did you mean 'epochs'?",
        ),
        ("grid.depth=[3, deep]", "grid.depth[1]: expected a positive integer, got 'deep'"),
        ("train.lr=-1", "train.lr: learning rate must be > 0"),
        ("seeds=0", "seeds:"),
    ],
)
def test_bad_overrides_get_the_files_field_errors(override, needle):
    with pytest.raises(UserInputError) as err:
        load_suite("quickstart", [override])
    assert needle in err.value.render()
    assert err.value.render().splitlines()[0].startswith(str(load_suite("quickstart").source))


def test_malformed_override_names_itself():
    with pytest.raises(UserInputError) as err:
        load_suite("quickstart", ["train.epochs"])
    assert err.value.render() == "--set train.epochs: expected PATH=VALUE, e.g. train.epochs=2"


def test_cli_overrides(tmp_path):
    proc = run_cli("plan", "quickstart", "--set", "grid.depth=[3]", "--seeds", "1", cwd=tmp_path)
    assert proc.returncode == 0 and "9 trials = 9 cells x 1 seeds" in proc.stdout
    bad = run_cli("validate", "quickstart", "--set", "train.epochs=abc", cwd=tmp_path)
    assert bad.returncode == 2 and "train.epochs: Input should be a valid integer" in bad.stderr
    assert not (tmp_path / "runs").exists()


def test_a_star_index_sets_the_field_in_every_element():
    data = {"grids": [{"depth": [3]}, {"depth": [5], "dataset": ["mnist1d"]}]}
    out = apply_overrides(data, ["grids[*].dataset=[digits]"], "s.yaml")
    assert [g["dataset"] for g in out["grids"]] == [["digits"], ["digits"]]
    assert "dataset" not in data["grids"][0]  # the data itself is left alone
    with pytest.raises(Exception, match=r"grid\[\*\]\.depth: grid is not a non-empty list"):
        apply_overrides({"grid": {"depth": [3]}}, ["grid[*].depth=[2]"], "s.yaml")
