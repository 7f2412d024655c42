"""Claim designs beyond a plain A-B difference: interactions (``by``), curves (``over``), claims
replicated over datasets (per-dataset families, an overall verdict) and the robustness family at
the tuned arms' second-best learning rates. Records are made in memory; no training, no MLflow.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from gradatlas.reports import claimstats as cs
from gradatlas.reports.claimeval import evaluate_claims, verdict_rows
from gradatlas.reports.load import Sweep, experiment_from_records
from gradatlas.suites.claims import check_claims, level_number
from gradatlas.suites.schema import ClaimSection

SEEDS = range(12)


def noise(*key: Any, sd: float = 0.01) -> float:
    """A stable per-trial noise draw (str hashes change per process)."""
    return float(np.random.default_rng(zlib.crc32(repr(key).encode())).normal(0, sd))


def experiment(
    factors: dict[str, list[str]],
    summary: Callable[[dict[str, str], int], dict[str, float]],
    claims: list[dict[str, Any]],
    seeds: Any = SEEDS,
    outcome: Callable[[dict[str, str], int], str] | None = None,
):
    """Every combination of ``factors`` (factor -> level labels) over ``seeds``."""
    entries = []
    names = list(factors)
    for levels in itertools.product(*factors.values()):
        cell = dict(zip(names, levels, strict=True))
        for seed in seeds:
            label = "-".join(levels)
            record = {
                "trial_id": f"{label}-{seed}",
                "cell_id": label,
                "cell": label,
                "seed": seed,
                "factors": cell,
                "outcome": {"label": (outcome or (lambda c, s: "converged"))(cell, seed)},
                "summary": {"steps_run": 100.0, **summary(cell, seed)},
            }
            entries.append(({"run_id": f"r{len(entries)}", "start_time": len(entries)}, record))
    exp = experiment_from_records(entries, name="designs-test")
    exp.sweeps = [Sweep("sweep", None, "FINISHED", resolved={"claims": claims})]
    return exp


def claim(cid: str, metric: str, a: dict, b: dict, predict: str = "greater", **kw: Any) -> dict:
    return {"id": cid, "text": cid, "source": "test", "metric": metric, "a": a, "b": b,
            "where": {}, "predict": predict, "margin": None, **kw}  # fmt: skip


# -- interactions ---------------------------------------------------------------------------------
WD = {"weight_decay": ["wd0", "wd0.01"], "dropout": ["drop0", "drop0.3"], "depth": ["d2", "d4"]}


def gap(wd_effect_with: float, wd_effect_without: float) -> Callable:
    def summary(cell: dict[str, str], seed: int) -> dict[str, float]:
        with_dropout = cell["dropout"] == "drop0.3"
        effect = wd_effect_with if with_dropout else wd_effect_without
        value = 0.3 + 0.02 * seed / 12 + (effect if cell["weight_decay"] == "wd0.01" else 0.0)
        return {"generalization_gap": value + noise(cell, seed)}

    return summary


INTERACTION = claim(
    "X", "generalization_gap", {"weight_decay": "wd0.01"}, {"weight_decay": "wd0"}, "less",
    by={"dropout": ["drop0.3", "drop0"]},
)  # fmt: skip


def test_an_interaction_compares_the_effect_at_two_levels_of_by() -> None:
    # weight decay narrows the gap by 0.1 with dropout and not at all without: interaction -0.1
    exp = experiment(WD, gap(-0.1, 0.0), [INTERACTION])
    (r,) = evaluate_claims(exp, [INTERACTION])
    assert r.verdict == cs.SUPPORTED and r.kind == "continuous"
    assert r.effect == pytest.approx(-0.1, abs=0.01) and r.hi < 0
    assert r.strata == 2 and r.n_seeds == 12 and r.design == "paired"
    assert "minus at dropout = drop0" in r.groups


def test_a_main_effect_without_interaction_is_no_interaction() -> None:
    # the same large effect at both levels: the corner claim would pass, the interaction must not
    exp = experiment(WD, gap(-0.1, -0.1), [INTERACTION])
    (r,) = evaluate_claims(exp, [INTERACTION])
    assert r.verdict == cs.INCONCLUSIVE and abs(r.effect) < 0.02


# -- curves ---------------------------------------------------------------------------------------
LRS = ["lr1e-05", "lr3e-05", "lr0.0001", "lr0.0003", "lr0.001", "lr0.003", "lr0.01", "lr0.03"]


def curves(cell: dict[str, str], seed: int) -> dict[str, float]:
    """Adam: flat near its best over 6 of the 8 half-decade levels; SGD: good over 2."""
    i = LRS.index(cell["lr"])
    good = range(1, 7) if cell["optimizer"] == "adam" else range(5, 7)
    acc = 0.8 if i in good else 0.5
    return {"test_acc": acc + noise(cell, seed, sd=0.005)}


CURVE = claim("W", "test_acc", {"optimizer": "adam"}, {"optimizer": "sgd"}, over="lr", within=0.05)


def test_a_curve_claim_compares_the_width_of_the_good_range_in_decades() -> None:
    exp = experiment({"optimizer": ["adam", "sgd"], "lr": LRS}, curves, [CURVE])
    (r,) = evaluate_claims(exp, [CURVE])
    # 6 levels against 2, each the grid's mean spacing (3.48 decades over 7 steps): about two
    # decades wider, every seed
    step = math.log10(0.03 / 1e-5) / 7
    assert r.effect == pytest.approx(4 * step) and r.verdict == cs.SUPPORTED
    assert r.unit == "decades of lr" and r.evidence[0].a == pytest.approx(6 * step)


def test_level_numbers_and_the_shape_fields_are_validated() -> None:
    assert level_number("lr1e-05") == 1e-05 and level_number("relu") is None
    levels = {"optimizer": ["adam", "sgd"], "lr": LRS, "depth": ["d2", "d4"]}
    ok = ClaimSection(**{k: v for k, v in CURVE.items() if v is not None})
    assert check_claims([ok], levels) == []
    bad = [
        {**CURVE, "over": "optimizer"},  # named in a and b
        {**CURVE, "id": "B0", "over": "depth"},  # two levels: no curve
        {**CURVE, "id": "B1", "over": None, "within": None, "by": {"depth": ["d2", "d2"]}},
        {**CURVE, "id": "B2", "over": None, "within": None, "by": {"optimizer": ["adam", "sgd"]}},
    ]
    fields = [e.field for e in check_claims(bad, levels)]
    assert fields == ["claims[0].over", "claims[1].over", "claims[2].by.depth",
                      "claims[3].by.optimizer"]  # fmt: skip
    with pytest.raises(ValueError, match="over and within go together"):
        ClaimSection(**{**CURVE, "within": None})


# -- datasets and the overall verdict -------------------------------------------------------------
def init_effect(on: dict[str, float]) -> Callable:
    def summary(cell: dict[str, str], seed: int) -> dict[str, float]:
        he = cell["init"] == "kaiming_normal"
        return {"test_acc": 0.6 + (on[cell["dataset"]] if he else 0.0) + noise(cell, seed)}

    return summary


HE = claim("H", "test_acc", {"init": "kaiming_normal"}, {"init": "xavier_normal"})
DS = {"dataset": ["mnist1d", "digits"], "init": ["kaiming_normal", "xavier_normal"],
      "depth": ["d10", "d20"]}  # fmt: skip


def test_datasets_are_judged_apart_and_agree_into_one_verdict() -> None:
    exp = experiment(DS, init_effect({"mnist1d": 0.1, "digits": 0.08}), [HE])
    (r,) = evaluate_claims(exp, [HE])
    assert r.dataset == "all" and r.verdict == cs.SUPPORTED
    assert set(r.per_dataset) == {"mnist1d", "digits"}
    assert all(x.verdict == cs.SUPPORTED and x.dataset == d for d, x in r.per_dataset.items())
    assert r.strata == 4  # pooled: dataset x depth
    # intersection-union: the overall p is the larger of the datasets'
    assert r.p_adjusted == max(x.p_adjusted for x in r.per_dataset.values())


def test_datasets_that_disagree_give_depends_on_dataset_and_json_rows_per_dataset() -> None:
    exp = experiment(DS, init_effect({"mnist1d": 0.1, "digits": -0.1}), [HE])
    (r,) = evaluate_claims(exp, [HE])
    assert r.verdict == cs.DEPENDS_ON_DATASET
    assert r.per_dataset["mnist1d"].verdict == cs.SUPPORTED
    assert r.per_dataset["digits"].verdict == cs.REFUTED
    rows = verdict_rows([r], exp)
    assert [(x["id"], x["dataset"], x["verdict"]) for x in rows] == [
        ("H", "mnist1d", cs.SUPPORTED),
        ("H", "digits", cs.REFUTED),
        ("H", "all", cs.DEPENDS_ON_DATASET),
    ]


def test_one_dataset_still_gives_an_overall_row() -> None:
    exp = experiment({k: v for k, v in DS.items() if k != "dataset"}, init_effect_one, [HE])
    (r,) = evaluate_claims(exp, [HE])
    assert r.verdict == cs.SUPPORTED and not r.per_dataset
    assert [x["dataset"] for x in verdict_rows([r], exp)] == ["all"]
    assert math.isfinite(r.seeds_needed) or math.isnan(r.seeds_needed)


def init_effect_one(cell: dict[str, str], seed: int) -> dict[str, float]:
    return init_effect({"x": 0.1})({**cell, "dataset": "x"}, seed)


# -- robustness: the second-best learning rate ----------------------------------------------------
def test_second_best_trials_are_judged_apart_and_leave_the_verdict_alone() -> None:
    factors = {"init": ["kaiming_normal", "xavier_normal"], "depth": ["d10", "d20"],
               "rank": ["1", "2"]}  # fmt: skip

    def summary(cell: dict[str, str], seed: int) -> dict[str, float]:
        he = cell["init"] == "kaiming_normal" and cell["rank"] == "1"  # gone at the 2nd best
        return {"test_acc": 0.6 + (0.1 if he else 0.0) + noise(cell, seed)}

    exp = experiment(factors, summary, [HE])
    exp.trials["tune_rank"] = exp.trials["factor.rank"].astype(int)
    exp.trials["cell"] = exp.trials["cell"].str.rsplit("-", n=1).str[0]  # twins share the label
    exp.trials = exp.trials.drop(columns="factor.rank")
    exp.factors.remove("rank")
    (r,) = evaluate_claims(exp, [HE])
    assert r.verdict == cs.SUPPORTED and r.effect == pytest.approx(0.1, abs=0.01)
    assert r.robustness is not None and r.robustness.verdict == cs.INCONCLUSIVE
    (row,) = verdict_rows([r], exp)
    assert row["robustness"]["verdict"] == cs.INCONCLUSIVE


def test_the_section_draws_a_claim_that_depends_on_the_dataset() -> None:
    from matplotlib.figure import Figure

    from gradatlas.reports.claims import claims_blocks, evidence_panels

    exp = experiment(DS, init_effect({"mnist1d": 0.1, "digits": -0.1}), [HE])
    results = evaluate_claims(exp, [HE])
    assert results[0].verdict == cs.DEPENDS_ON_DATASET
    evidence_panels(Figure(), results)  # a verdict without a colour of its own failed here
    assert claims_blocks(results, "designs-test")
