"""The suite language: expansion, identity, and the errors a user sees (exit 2, field paths)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gradatlas.app.cli import main
from gradatlas.errors import UserInputError
from gradatlas.identity import cell_id, config_hash
from gradatlas.suites import load_suite


def test_quickstart_expands_to_a_full_cross_with_stable_ids():
    suite = load_suite("quickstart")
    assert len(suite.trials) == 2 * 3 * 3 * 3
    assert len({t.trial_id for t in suite.trials}) == len(suite.trials)
    assert len({t.cell_id for t in suite.trials}) == 18
    again = load_suite("quickstart")
    assert [t.trial_id for t in again.trials] == [t.trial_id for t in suite.trials]
    t = suite.trials[0]
    assert t.trial_id == config_hash(t.config) and t.cell_id == cell_id(t.config)
    assert t.run_name == "d3-relu-kaiming_normal-s0"
    # Resolved config is explicit: defaults are filled in, so the id says everything.
    assert t.config["model"]["init"] == {"name": "kaiming_normal", "gain": 1.0, "mode": "fan_in"}
    assert t.config["optim"] == {
        "name": "momentum",
        "momentum": 0.9,
        "lr": 0.02,
        "weight_decay": 0.0,
        "wd_mode": "coupled",
    }


def test_mapping_levels_and_lr_precedence(write):
    path = write(
        """
        name: opt
        grid:
          optimizer: [sgd, {name: adam, lr: 1.0e-3}, {name: momentum, momentum: 0.5}]
        train: {lr: 0.05, steps: 10}
        """
    )
    trials = load_suite(str(path)).trials
    optims = [t.config["optim"] for t in trials]
    assert [o["name"] for o in optims] == ["sgd", "adam", "momentum"]
    assert [o["lr"] for o in optims] == [0.05, 1e-3, 0.05]
    assert optims[2]["momentum"] == 0.5
    assert [t.factors["optimizer"] for t in trials] == [
        "sgd",
        "adam(lr=0.001)",
        "momentum(momentum=0.5)",
    ]


def test_default_lr_comes_from_the_optimizer(write):
    path = write("name: d\ngrid: {optimizer: [sgd, adam]}\n")
    assert [t.config["optim"]["lr"] for t in load_suite(str(path)).trials] == [0.1, 1e-3]


def test_exclude_and_include(write):
    path = write(
        """
        name: ei
        grid:
          depth: [2, 8]
          activation: [relu, sigmoid]
        exclude:
          - {depth: 8, activation: sigmoid}
        include:
          - {depth: 30, activation: relu}
          - {depth: 2, activation: relu}   # repeats a grid cell: run once
        """
    )
    cells = [t.cell for t in load_suite(str(path)).trials]
    assert cells == ["d2-relu", "d2-sigmoid", "d8-relu", "d30-relu"]


def test_seed_list_and_weight_decay_and_clip_levels(write):
    path = write(
        """
        name: reg
        seeds: [3, 7]
        grid:
          weight_decay: [0, 1.0e-4, {value: 1.0e-2, mode: decoupled}]
          grad_clip: [null, 1.0, {value: 0.5}]
        """
    )
    trials = load_suite(str(path)).trials
    assert len(trials) == 3 * 3 * 2
    assert {t.seed for t in trials} == {3, 7}
    labels = {t.factors["weight_decay"] for t in trials} | {t.factors["grad_clip"] for t in trials}
    assert labels == {"wd0", "wd0.0001", "wd0.01-dec", "noclip", "clip1", "clipval0.5"}
    t = next(t for t in trials if t.factors["weight_decay"] == "wd0.01-dec")
    assert (t.config["optim"]["weight_decay"], t.config["optim"]["wd_mode"]) == (0.01, "decoupled")


# -- errors: the exact messages a user sees -----------------------------------------------------
def _error(path: Path) -> str:
    with pytest.raises(UserInputError) as info:
        load_suite(str(path))
    return info.value.render()


def test_misspelled_level_names_file_field_and_known_values(write):
    path = write("name: x\ngrid:\n  activation: [relu, tanh, rellu]\n")
    msg = _error(path)
    assert msg.startswith(f"{path}: grid.activation[2]: unknown activation 'rellu' ")
    assert "did you mean 'relu'?" in msg and "known: sigmoid, tanh, relu" in msg


def test_wrong_type_and_unknown_fields_are_all_reported(write):
    path = write(
        """
        name: x
        grid:
          depth: [2, deep]
          init: [{name: normal, std: big}]
        train: {epochs: 0, batch_sise: 3}
        """
    )
    lines = _error(path).splitlines()
    assert f"{path}: train.epochs: Input should be greater than 0 (got 0)" in lines
    assert any(
        ln.startswith(
            f"{path}: train.batch_sise: unknown field (not allowed in train; "
            "did you mean 'batch_size'?"
        )
        for ln in lines
    )
    assert any(
        line.startswith(f"{path}: grid.depth[1]: expected a positive integer") for line in lines
    )
    assert any(line.startswith(f"{path}: grid.init[0].std: ") for line in lines)


def test_unknown_dataset_and_dataset_option(write):
    msg = _error(write("name: x\ndataset: {name: mnist2d}\n"))
    assert "dataset.name: unknown dataset 'mnist2d' (did you mean 'mnist1d'?" in msg
    msg = _error(write("name: x\ndataset: {name: mnist1d, options: {num_sample: 10}}\n"))
    assert "dataset.options.num_sample: unknown option 'num_sample'" in msg


def test_impossible_combination_points_at_the_level(write):
    msg = _error(write("name: x\ngrid:\n  norm: [none, groupnorm]\n"))
    assert "grid.norm[1]: groupnorm applies to convolutional models only" in msg


def test_unknown_factor_exclude_typo_and_lr_conflict(write):
    assert "grid.activaton: unknown factor 'activaton'" in _error(
        write("name: x\ngrid: {activaton: [relu]}\n")
    )
    msg = _error(
        write("name: x\ngrid: {activation: [relu, tanh]}\nexclude: [{activation: rellu}]\n")
    )
    assert "exclude[0].activation: 'rellu' matches no level of grid.activation" in msg
    msg = _error(write("name: x\ngrid: {lr: [0.1], optimizer: [{name: adam, lr: 0.01}]}\n"))
    assert "grid.optimizer[0].lr: this level sets its own lr" in msg


def test_yaml_is_loaded_safely(write, tmp_path):
    marker = tmp_path / "pwned"
    path = write(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    assert "name: YAML tag '!!python/object/apply:os.system' is not allowed" in _error(path)
    assert not marker.exists()
    assert ": line 3, column 1: not valid YAML" in _error(write("name: x\ngrid: [unclosed\n"))


def test_cli_exits_2_and_writes_nothing(write, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write("name: x\ngrid:\n  activation: [relu, rellu]\n")
    for command in (["validate", str(path)], ["plan", str(path)], ["run", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "grid.activation[1]: unknown activation 'rellu'" in err
    assert main(["run", "no-such-suite"]) == 2
    err = capsys.readouterr().err
    assert "no-such-suite: no such suite file (built-in suites: " in err and "quickstart" in err
    assert not (tmp_path / "runs").exists()


def test_plan_json_prints_one_line_per_trial(capsys):
    assert main(["plan", "quickstart", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 54
    rows = [json.loads(line) for line in lines]
    assert rows[0]["trial_id"] == config_hash(rows[0]["config"])
    assert {r["name"] for r in rows} >= {"d20-sigmoid-xavier_normal-s1"}


def test_plan_table_and_ls(capsys):
    assert main(["plan", "quickstart"]) == 0
    out = capsys.readouterr().out
    assert "54 trials = 18 cells x 3 seeds" in out and "activation      3 levels" in out
    assert main(["ls", "activations"]) == 0
    assert "leaky_relu" in capsys.readouterr().out
    assert main(["ls", "suites"]) == 0
    assert "quickstart" in capsys.readouterr().out


def test_builtin_suites_all_validate():
    from gradatlas.suites import builtin_suites

    for name in builtin_suites():
        assert load_suite(name).trials, name


def test_run_without_env_uses_local_sqlite(monkeypatch, tmp_path):
    from gradatlas.store import resolve_tracking_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri() == "http://127.0.0.1:5999"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert os.environ["MLFLOW_TRACKING_URI"]
