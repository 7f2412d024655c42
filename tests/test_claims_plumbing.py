"""The claims' plumbing: seed selections in a claim's arms (A/A controls), the ``control`` flag,
the scope of a claim (``reports.claimscope``), the JSON-ready verdict rows and
``gradatlas verdicts`` on a tiny real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gradatlas.app.cli import main
from gradatlas.errors import SuiteErrors, UserInputError
from gradatlas.reports.claimscope import (
    VERDICT_FIELDS,
    claim_scope,
    matched_trials,
    plan_frame,
    verdict_rows,
)
from gradatlas.reports.load import Sweep
from gradatlas.suites import expand_suite, load_suite
from gradatlas.suites.claims import SeedSelector, check_claims, seed_filter, split_arm
from gradatlas.suites.schema import ClaimSection

PLAN = {"depth": ["d20", "d30"], "init": ["kaiming_normal", "xavier_normal"]}


def section(**kw: Any) -> ClaimSection:
    base = {
        "id": "AA",
        "text": "even and odd seeds alike",
        "metric": "converged_rate",
        "a": {"seeds": "even"},
        "b": {"seeds": "odd"},
        "predict": "greater",
    }
    return ClaimSection(**{**base, **kw})


# -- seed selections ------------------------------------------------------------------------------
def test_seed_filters_select_even_odd_and_listed_seeds() -> None:
    even, odd, listed = seed_filter("even"), seed_filter("odd"), seed_filter([0, 3, 3])
    assert [s for s in range(6) if even(s)] == [0, 2, 4]
    assert odd.select([0, 1, 2, 3]) == [1, 3]
    assert listed == SeedSelector("list", frozenset({0, 3})) and listed(np.int64(3))
    assert not even(pd.NA) and not even(None) and not even(2.5) and even(4.0)
    assert not even.overlaps(odd) and even.overlaps(listed) and not odd.overlaps(seed_filter([0]))
    factors, selector = split_arm({"init": "xavier_normal", "seeds": "odd"})
    assert factors == {"init": "xavier_normal"} and selector == odd
    assert split_arm({"init": "xavier_normal"}) == ({"init": "xavier_normal"}, None)
    frame = pd.DataFrame({"seed": pd.array([0, 1, None, 3], dtype="Int64")})
    assert frame["seed"].map(odd).astype(bool).tolist() == [False, True, False, True]
    with pytest.raises(UserInputError) as err:
        split_arm({"seeds": "evn"})
    assert err.value.field == "seeds" and "even, odd" in err.value.message


@pytest.mark.parametrize(
    "kw, field, words",
    [
        ({"a": {"seeds": "evn"}}, "claims[0].a.seeds", "even, odd, or a list of non-negative"),
        ({"a": {"seeds": [0, -1]}}, "claims[0].a.seeds[1]", "non-negative"),
        ({"a": {"seeds": []}}, "claims[0].a.seeds", "selects no seed"),
        ({"a": {"seeds": 3}}, "claims[0].a.seeds", "even, odd"),
        ({"a": {"seeds": [True]}}, "claims[0].a.seeds[0]", "whole number"),
        ({"b": {"seeds": [2, 5]}}, "claims[0].b", "same trials"),
        ({"b": {"init": "xavier_normal"}}, "claims[0].b", "same factors"),
        ({"where": {"seeds": "even"}}, "claims[0].where.seeds", "name seeds in both a and b"),
        ({"a": {"init": "kaiming_normal", "seeds": "even"},
          "b": {"init": "kaiming_normal", "seeds": [1, 2]}}, "claims[0].b", "same trials"),
    ],
)  # fmt: skip
def test_bad_seed_selections_name_the_field_and_what_is_allowed(
    kw: dict, field: str, words: str
) -> None:
    errors = check_claims([section(**kw)], PLAN)
    assert errors and errors[0].field == field, [e.render() for e in errors]
    assert words in errors[0].message, errors[0].message


def test_an_aa_control_validates_and_arms_may_differ_by_seeds_alone() -> None:
    assert check_claims([section()], PLAN) == []
    assert check_claims([section(where={"init": "xavier_normal", "depth": 20})], PLAN) == []
    same_levels = section(
        a={"init": "kaiming_normal", "seeds": [0, 1]}, b={"init": "kaiming_normal", "seeds": [2]}
    )
    assert check_claims([same_levels], PLAN) == []
    differ = section(a={"init": "kaiming_normal", "seeds": "even"},
                     b={"init": "xavier_normal", "seeds": "even"})  # fmt: skip
    assert check_claims([differ.model_dump()], PLAN) == []
    # Against the plan's seeds: a listed seed the plan lacks, a parity it does not have.
    errors = check_claims([section(a={"seeds": [0, 9]})], PLAN, seeds=[0, 1, 2, 3])
    assert [e.field for e in errors] == ["claims[0].a.seeds[1]"]
    assert "not one of the plan's seeds (0, 1, 2, 3)" in errors[0].message
    errors = check_claims([section()], PLAN, seeds=[0, 2])
    assert [e.field for e in errors] == ["claims[0].b.seeds"] and "odd" in errors[0].message


def test_control_parses_and_defaults_to_a_finding() -> None:
    assert section(control=True).control is True
    assert section().control is False
    assert section(control=True).model_dump()["control"] is True
    suite = {
        "name": "aa-check",
        "dataset": {"name": "digits"},
        "model": {"family": "mlp", "width": 8},
        "grid": {"depth": [2, 3]},
        "seeds": 4,
        "train": {"steps": 5},
        "claims": [section(control=True).model_dump()],
    }
    assert len(expand_suite(suite, source="s.yaml").trials) == 8
    suite["claims"] = [section(a={"seeds": "evn"}).model_dump()]
    with pytest.raises(SuiteErrors) as err:
        expand_suite(suite, source="s.yaml")
    assert "s.yaml: claims[0].a.seeds: unknown seed selection 'evn'" in str(err.value)


# -- the scope of a claim -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def claims_suite() -> dict[str, Any]:
    return load_suite("claims").spec.model_dump(mode="json")


def by_id(resolved: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in resolved["claims"] if c["id"] == cid)


def test_the_claims_suite_has_two_controls_and_twelve_seeds(claims_suite) -> None:
    controls = [c for c in claims_suite["claims"] if c["control"]]
    assert [c["metric"] for c in controls] == ["converged_rate", "test_acc"]
    assert all(c["a"] == {"seeds": "even"} and c["b"] == {"seeds": "odd"} for c in controls)
    assert claims_suite["seeds"] == 12


def test_scope_of_a_tuned_claim(claims_suite) -> None:
    scope = claim_scope(claims_suite, by_id(claims_suite, "C5"))
    assert scope["dataset"]["datasets"] == [
        {"name": "digits", "seed": 0, "title": "digits"},
        {"name": "mnist1d", "seed": 42, "title": "MNIST-1D"},
    ]
    assert scope["model"]["family"] == "mlp" and scope["model"]["widths"] == [32]
    assert scope["budget"] == {"epochs": None, "steps": 600, "batch_sizes": [128]}
    lr = scope["lr"]
    assert lr["setting"] == "tuned per arm"
    assert lr["tuning"]["trials_per_study"] == 6 and lr["tuning"]["steps_per_trial"] == 300
    assert lr["tuning"]["objective"] == "val_acc"
    assert lr["tuning"]["where"] == {"width": [32, 48, 256]}
    assert lr["tuning"]["per"][:3] == ["dataset", "width", "optimizer"]
    assert scope["cells"] == 8 and scope["seeds"] == list(range(12))
    assert scope["text"].startswith("digits (seed 0) + MNIST-1D (seed 42), MLP width 32, 600 ")
    assert "6 trials x 300 steps per study on val_acc" in scope["text"]
    json.dumps(scope)


def test_scope_of_a_fixed_claim_and_of_given_trials(claims_suite) -> None:
    c1 = by_id(claims_suite, "C1")
    scope = claim_scope(claims_suite, c1)
    assert scope["model"]["widths"] == [64] and scope["model"]["depths"] == [10, 20, 30]
    assert scope["lr"] == {"setting": "fixed", "values": [{"optimizer": "momentum", "lr": 0.02}]}
    assert scope["text"].endswith(
        "MLP width 64, 600 steps x batch 128, lr fixed at 0.02 (momentum)"
    )
    # The experiment's trials narrow it: only the seeds and cells that ran.
    plan = plan_frame(claims_suite)
    ran = plan[(plan["seed"] < 3) & (plan["factor.depth"] != "d30")].drop(columns=["lr", "width"])
    scope = claim_scope(claims_suite, c1, ran, plan=plan)
    assert scope["seeds"] == [0, 1, 2] and scope["model"]["depths"] == [10, 20]
    assert scope["cells"] == 8 and scope["lr"]["values"][0]["lr"] == 0.02
    c8b = claim_scope(claims_suite, by_id(claims_suite, "C8b"), plan=plan)
    assert c8b["text"].endswith("0.1, 0.3, 1 (sgd)")


def test_an_aa_control_matches_the_same_cells_split_by_seed(claims_suite) -> None:
    plan = plan_frame(claims_suite)
    matched = matched_trials(plan, by_id(claims_suite, "AA1"))
    a, b = matched[matched["group"] == "a"], matched[matched["group"] == "b"]
    assert sorted(set(a["seed"])) == [0, 2, 4, 6, 8, 10] and sorted(set(b["seed"])) == [
        1, 3, 5, 7, 9, 11
    ]  # fmt: skip
    assert set(matched["factor.init"]) == {"xavier_normal"}
    cells = matched.drop_duplicates(subset=[c for c in plan if c.startswith("factor.")])
    assert len(cells) == 28
    scope = claim_scope(claims_suite, by_id(claims_suite, "AA2"), plan=plan)
    assert scope["lr"]["setting"] == "fixed" and scope["cells"] == 34


# -- verdict rows ---------------------------------------------------------------------------------
def test_verdict_rows_have_every_field_and_are_json(claims_suite) -> None:
    results = [
        SimpleNamespace(
            id="C5", verdict="supported", metric="steps_to_target", effect=np.float64(-12.5),
            lo=-20.0, hi=-5.0, p_adjusted=0.001, pairs=np.int64(12), mde=np.nan,
        ),
        SimpleNamespace(
            id="AA1", verdict="inconclusive", metric="converged_rate", effect=0.01, lo=-0.1,
            hi=0.12, p_adjusted=1.0, n_seeds=12, mde=0.2, homogeneity_p=0.7, control=True,
        ),
        SimpleNamespace(id="ZZ", verdict="no data", metric="test_acc"),
    ]  # fmt: skip
    exp = SimpleNamespace(sweeps=[Sweep("s", None, "FINISHED", resolved=claims_suite)])
    rows = verdict_rows(results, exp)
    for row in rows:
        assert set(VERDICT_FIELDS) <= set(row)
        json.loads(json.dumps(row, allow_nan=False))
    c5, aa1, zz = rows
    assert c5["effect"] == -12.5 and c5["ci_low"] == -20.0 and c5["n_seeds"] == 12
    assert c5["mde"] is None and c5["homogeneity_p"] is None and c5["control"] is False
    assert c5["scope"].startswith("digits (seed 0) + MNIST-1D (seed 42), MLP width 32")
    assert c5["scope_detail"]["lr"]["setting"] == "tuned per arm"
    assert aa1["control"] is True and aa1["homogeneity_p"] == 0.7 and aa1["mde"] == 0.2
    assert zz["effect"] is None and zz["n_seeds"] is None and zz["scope"] == ""
    assert zz["control"] is False
    # The control flag comes from the claim when the result does not carry it.
    (aa2,) = verdict_rows([SimpleNamespace(id="AA2", verdict="inconclusive")], exp)
    assert aa2["control"] is True
    # A scope the evaluation measured already is taken as it is.
    given = SimpleNamespace(id="C1", scope="somewhere", scope_detail={"text": "x", "cells": 2})
    (c1,) = verdict_rows([given], exp)
    assert c1["scope"] == "somewhere" and c1["scope_detail"] == {"cells": 2}


# -- gradatlas verdicts on a tiny real store ------------------------------------------------------
TINY_CLAIMS = """
name: verdicts-tiny
dataset: {name: digits}
model: {family: mlp, width: 16}
grid:
  depth: [2, 3]
  init: [kaiming_normal, xavier_normal]
seeds: 2
train: {steps: 20, batch_size: 64, optimizer: sgd, lr: 0.1}
instrument: {every: 5, max_points: 20, probe_batch: 32}
outcomes: {target_accuracy: 0.3}
claims:
  - id: K1
    text: He init trains at least as well as Xavier
    metric: test_acc
    a: {init: kaiming_normal}
    b: {init: xavier_normal}
    predict: greater
  - id: AA
    text: even and odd seeds alike
    metric: test_acc
    a: {seeds: even}
    b: {seeds: odd}
    predict: greater
    control: true
"""


def test_verdicts_command_prints_rows_and_attaches_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 trials on digits (about 20 s), then the command on them."""
    from mlflow.tracking import MlflowClient

    from tests.conftest import new_store

    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY_CLAIMS)
    uri = new_store(tmp_path / "mlflow.db")
    assert main(["run", str(suite), "--tracking-uri", uri, "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["verdicts", str(suite), "--tracking-uri", uri, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(r["id"], r["dataset"]) for r in rows] == [("K1", "all"), ("AA", "all")]
    for row in rows:
        assert set(VERDICT_FIELDS) <= set(row)
        assert row["verdict"] in {"supported", "refuted", "inconclusive", "depends", "no data"}
    assert rows[1]["control"] is True and rows[0]["control"] is False
    assert rows[0]["scope"].startswith("digits (seed 0), MLP width 16, 20 steps x batch 64")
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("verdicts-tiny")
    (sweep,) = client.search_runs([exp.experiment_id], "tags.`gradatlas.kind` = 'sweep'")
    path = client.download_artifacts(sweep.info.run_id, "verdicts.json", str(tmp_path))
    assert json.loads(Path(path).read_text()) == rows
    assert main(["verdicts", str(suite), "--tracking-uri", uri]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["id", "dataset", "verdict", "metric"]
    assert "AA" in table and "verdicts.json" in table
    # The recorded audit, relabelled (calibrate --audit): one file, both rules, per family.
    out = tmp_path / "cal"
    argv = ["calibrate", "--audit", str(suite), "--tracking-uri", uri, "--out", str(out)]
    assert main([*argv, "--permutations", "20"]) == 0
    relabelled = json.loads((out / "relabel-verdicts-tiny.json").read_text())
    assert relabelled["findings"]["permutations"] == 20
    assert set(relabelled["findings"]["rules"]) == {"new", "old"}
    assert relabelled["controls"]["claims"] == 1
    capsys.readouterr()
    # Unknown suites and suites without claims exit 2, saying why.
    assert main(["verdicts", "no-such-suite", "--tracking-uri", uri]) == 2
    assert "no MLflow experiment named 'no-such-suite'" in capsys.readouterr().err
    # (A store of its own for a suite without claims would cost another run: its claims are
    # taken away instead.)
    import gradatlas.reports.claims as first

    monkeypatch.setattr(first, "declared_claims", lambda exp: [])
    try:
        import gradatlas.reports.claimeval as evaluation

        monkeypatch.setattr(evaluation, "declared_claims", lambda exp: [])
    except ImportError:
        pass
    assert main(["verdicts", str(suite), "--tracking-uri", uri]) == 2
    assert "declares no claims" in capsys.readouterr().err
