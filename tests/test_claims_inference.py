"""The seed-clustered verdict rule (issue 17): one Holm family, seeds as the unit, homogeneity
and 'depends', Tarone's trimming, power, A/A controls and failed trials by intention to treat.

Records made in memory (``tests.test_claims.experiment``) and ``ClaimData`` built by hand: no
training, no MLflow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradatlas.reports import claimstats as cs
from gradatlas.reports.claimeval import evaluate_claims
from tests.test_claims import accuracy, claim, experiment


def data(values_a, values_b, kind="continuous", predict="greater", margin=None) -> cs.ClaimData:
    """(seeds, strata) arrays of A and B, the same seeds in both arms."""
    a, b = np.asarray(values_a, float), np.asarray(values_b, float)
    s, k = a.shape
    seed = np.repeat(np.arange(s), k)
    stratum = np.tile(np.arange(k), s)
    return cs.ClaimData(
        kind,
        predict,
        margin,
        np.concatenate([a.ravel(), b.ravel()]),
        np.concatenate([np.ones(a.size, bool), np.zeros(b.size, bool)]),
        np.concatenate([stratum, stratum]),
        np.concatenate([seed, seed]),
    )


def test_a_seed_shared_across_strata_is_one_unit_not_many() -> None:
    """Pseudo-replication: 6 seeds x 4 strata where each seed's A - B is the same in every
    stratum. The old rule counts 24 agreeing pairs (p ~ 2^-24 one-sided); the seed is one unit,
    and 6 seeds with mixed signs cannot be significant."""
    rng = np.random.default_rng(0)
    shift = np.array([1.0, 0.8, 0.9, -0.2, 0.7, 0.5])[:, None] * np.ones((1, 4))
    b = rng.normal(0, 0.01, (6, 4))
    claims = [data(b + shift, b)]
    assert cs.old_rule(claims) == [cs.SUPPORTED]
    assert cs.new_rule(claims) == [cs.INCONCLUSIVE]
    (a,) = cs.analyse_family(claims)
    assert a.n_seeds == 6 and a.p_two_sided > 0.05


def test_one_family_two_sided_with_the_direction_after_rejection() -> None:
    up = data(np.ones((12, 1)) + np.arange(12)[:, None] * 0.01, np.zeros((12, 1)))
    down = data(np.zeros((12, 1)), np.ones((12, 1)) + np.arange(12)[:, None] * 0.01)
    assert cs.new_rule([up, down]) == [cs.SUPPORTED, cs.REFUTED]
    (a, _) = cs.analyse_family([up, down])
    assert a.p_two_sided == pytest.approx(2 / 2**12)
    d = cs.decide([up, down], cs.analyse_family([up, down]))
    assert d[0].p_adjusted == pytest.approx(2 * 2 / 2**12)  # Holm over the two claims


def test_an_effect_that_reverses_across_strata_depends() -> None:
    rng = np.random.default_rng(1)
    b = rng.normal(0, 0.1, (12, 2))
    a = b + np.array([[1.0, -1.0]]) + rng.normal(0, 0.1, (12, 2))
    d = data(a, b)
    (dec,) = cs.decide([d], cs.analyse_family([d]))
    assert dec.verdict == cs.DEPENDS
    assert dec.holds_in == (0,) and dec.reversed_in == (1,)
    assert dec.homogeneity_p_adjusted < 0.05


def test_tarone_leaves_out_tests_that_cannot_reach_alpha() -> None:
    assert cs.tarone([0.001, 0.001, 1.0, 1.0]) == [True, True, False, False]
    assert cs.tarone([0.001] * 3) == [True] * 3
    assert cs.tarone([0.03, 0.001]) == [False, True]  # k = 1: only 0.001 can reach 0.05 / 1


def test_power_and_underpowered() -> None:
    rng = np.random.default_rng(2)
    few = data(rng.normal(0, 1, (4, 2)), rng.normal(0, 1, (4, 2)))
    many = data(rng.normal(0, 1, (32, 2)), rng.normal(0, 1, (32, 2)))
    a_few, a_many = cs.analyse_family([few, many])
    # 4 seeds: the smallest two-sided sign-flip p is 2/16 > 0.05 / m: nothing is detectable
    assert a_few.min_p == pytest.approx(2 / 16) and math.isinf(a_few.mde)
    assert math.isfinite(a_many.mde) and 0.3 < a_many.mde < 1.5
    decisions = cs.decide([few, many], [a_few, a_many])
    assert decisions[0].underpowered


def test_an_aa_control_over_the_same_cells_is_inconclusive() -> None:
    def coin(init: str, depth: str, seed: int) -> str:
        return "converged" if (seed * 7 + len(depth) + len(init)) % 3 else "stalled"

    claims = [
        claim("AA1", "converged_rate", a={"seeds": "even"}, b={"seeds": "odd"}, control=True),
        claim("AA2", "test_acc", a={"seeds": "even"}, b={"seeds": "odd"}, control=True),
    ]
    exp = experiment(coin, accuracy(0.0, noise=0.05), claims, seeds=range(12))
    res = evaluate_claims(exp, claims)
    assert [r.verdict for r in res] == [cs.INCONCLUSIVE, cs.INCONCLUSIVE]
    assert all(r.control and r.design == "unpaired" and r.n_seeds == 12 for r in res)
    assert res[0].strata == 4  # init x depth: every factor is held equal


def test_failed_trials_enter_by_intention_to_treat() -> None:
    """He trials all converge with accuracy ~0.7; Xavier trials explode (no test accuracy) at
    every seed but reach 0.95 where they survive: dropping the failures would flip the verdict."""

    def outcome(init: str, depth: str, seed: int) -> str:
        return "exploded" if init == "xavier_normal" and seed % 4 else "converged"

    def summary(init: str, depth: str, seed: int) -> dict[str, float]:
        if init == "xavier_normal":
            return {} if seed % 4 else {"test_acc": 0.95 + 0.001 * seed}
        return {"test_acc": 0.7 + 0.001 * seed}

    claims = [claim("I1", "test_acc", predict="greater")]
    exp = experiment(outcome, summary, claims, seeds=range(12))
    for r in exp.records.values():
        r["num_classes"] = 10
    (r,) = evaluate_claims(exp, claims)
    assert r.missing == 18 and "intention to treat" in r.itt and "0.1" in r.itt
    assert r.verdict == cs.SUPPORTED  # failures at chance: He is better
    assert r.complete_case is not None and r.complete_case["verdict"] != cs.SUPPORTED


def test_the_rule_text_is_the_one_the_code_applies() -> None:
    text = cs.VERDICT_RULE_SEED
    for words in ("one holm family", "two-sided", "depends", "tost", "underpowered", "tarone"):
        assert words in text.lower()
    assert f"alpha = {cs.ALPHA}" in text


@pytest.mark.parametrize("sd_w", [0.0, 1.0])
def test_null_worlds_give_few_wrong_verdicts(sd_w: float) -> None:
    """A small calibration (the full one is ``gradatlas calibrate``): 100 null audits of 8
    continuous claims, 12 seeds x 3 strata, a seed-by-arm effect shared across strata. The new
    rule's familywise error stays near 5%; the old rule's soars when seeds share an effect."""
    rng = np.random.default_rng(3)
    wrong = {"old": 0, "new": 0}
    audits = 100
    for _ in range(audits):
        claims = []
        for _ in range(8):
            w = rng.normal(0, sd_w, (12, 2))
            a = w[:, :1] + rng.normal(0, 1, (12, 3))
            b = w[:, 1:] + rng.normal(0, 1, (12, 3))
            claims.append(data(a, b))
        for rule in ("old", "new"):
            verdicts = cs.RULES[rule](claims, resamples=200)
            wrong[rule] += any(v in (cs.SUPPORTED, cs.REFUTED, cs.DEPENDS) for v in verdicts)
    assert wrong["new"] / audits <= 0.10
    if sd_w:
        assert wrong["old"] / audits >= 0.25
