"""`gradatlas calibrate`: the simulator's worlds are what they claim to be, and the counting of
wrong verdicts can fail (a rule that always says supported gets familywise error 1)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from gradatlas.reports import calibrate as cal

REQUIRED = {
    "scenario",
    "rule",
    "description",
    "audits",
    "wrong_verdicts",
    "familywise_error",
    "ci_low",
    "ci_high",
}


def _always(verdict: str):
    def rule(claims, **_kw):
        return [verdict] * len(claims)

    return rule


def _naive(claims, **_kw):
    """Supported whenever A's mean beats B's in the predicted direction by 0.3 (no test):
    data-dependent, so reproducibility across workers means something."""
    out = []
    for c in claims:
        d = c.value[c.arm].mean() - c.value[~c.arm].mean()
        if c.predict == "equal":
            out.append("supported" if abs(d) < 0.05 else "inconclusive")
        else:
            out.append(
                "supported" if (d if c.predict == "greater" else -d) > 0.3 else "inconclusive"
            )
    return out


def _claims(name: str, audits: int, effect=None):
    sc = cal.scenario(name)
    out = []
    for i in range(audits):
        claims, truths, target = cal.simulate_audit(cal._audit_rng(7, 0, 0, i), sc, effect)
        out.append((claims, truths, target))
    return out


# -- the worlds ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["continuous-shared", "rates-shared", "mixed"])
def test_null_worlds_have_equal_arms(name):
    """Under the null, A - B averages to zero (a z-score over many claims' mean differences)."""
    diffs = []
    for claims, truths, _ in _claims(name, 150):
        for c, t in zip(claims, truths, strict=True):
            assert t.kind == "null"
            sd = 1.0 if c.kind == "rate" else float(np.std(c.value))
            diffs.append((c.value[c.arm].mean() - c.value[~c.arm].mean()) / max(sd, 1e-9))
    d = np.array(diffs)
    assert abs(d.mean()) / (d.std(ddof=1) / math.sqrt(d.size)) < 4


def _stratum_corr(name: str) -> float:
    """Correlation across strata of one seed's A - B differences (claims with >= 2 strata)."""
    xs, ys = [], []
    for claims, _, _ in _claims(name, 120):
        for c in claims:
            if c.control or c.stratum.max() < 1:
                continue
            a = c.arm
            for s in np.unique(c.seed):
                d = [
                    c.value[a & (c.seed == s) & (c.stratum == k)].mean()
                    - c.value[~a & (c.seed == s) & (c.stratum == k)].mean()
                    for k in (0, 1)
                ]
                xs.append(d[0])
                ys.append(d[1])
    return float(np.corrcoef(xs, ys)[0, 1])


def test_shared_seed_effect_correlates_within_seed():
    """sd_w = sd_e = 1: a seed's differences in two strata share 2 sd_w^2 of 2 sd_w^2 + 2, so
    their correlation is 0.5; with independent trials it is 0."""
    assert 0.4 < _stratum_corr("continuous-shared") < 0.6
    assert abs(_stratum_corr("continuous-independent")) < 0.06


def test_disjoint_claims_use_even_and_odd_seeds():
    sc = cal.scenario("mixed")
    c = cal.simulate_claim(
        np.random.default_rng(1), sc, 6, kind="rate", predict="less", disjoint=True, strata=3
    )
    assert set(c.seed[c.arm]) == {0, 2, 4} and set(c.seed[~c.arm]) == {1, 3, 5}
    assert c.value.size == 6 * 3 and c.control
    shared = cal.simulate_claim(np.random.default_rng(1), sc, 6, kind="rate", predict="less")
    assert set(shared.seed[shared.arm]) == set(shared.seed[~shared.arm]) == set(range(6))


@pytest.mark.parametrize(("kind", "delta"), [("rate", 0.1), ("rate", -0.25), ("continuous", 0.5)])
def test_effects_are_exact_on_the_marginal_scale(kind, delta):
    """A rate effect is a difference of marginal rates (over the seed effects); a continuous one
    is in SD of one trial about its cell mean."""
    sc = cal.scenario("mixed")
    rng = np.random.default_rng(3)
    diffs, sds = [], []
    for _ in range(1500):
        c = cal.simulate_claim(rng, sc, 32, kind=kind, predict="greater", strata=1, delta=delta)
        diffs.append(c.value[c.arm].mean() - c.value[~c.arm].mean())
    d = np.array(diffs)
    sd = 1.0 if kind == "rate" else math.sqrt(sc.sd_u**2 + sc.sd_w**2 + 1)
    sds = d.std(ddof=1) / math.sqrt(d.size)
    assert abs(d.mean() - delta * sd) < 4 * sds


def test_marginal_rate_inverse():
    for sd in (0.0, 1.0, 1.5):
        p = np.array([0.05, 0.3, 0.5, 0.95])
        assert np.allclose(cal.marginal_rate(cal._logit_of_marginal(p, sd), sd), p, atol=1e-4)


def test_boundary_claims_sit_at_the_margin():
    for claims, truths, _ in _claims("equivalence-boundary", 20):
        for c, t in zip(claims, truths, strict=True):
            assert c.predict == "equal" and t.kind == "boundary"
            assert abs(t.delta) == (cal.RATE_MARGIN if c.kind == "rate" else cal.SD_MARGIN)


def test_power_audits_have_one_true_effect():
    for claims, truths, target in _claims("mixed", 20, ("continuous", 1.0)):
        assert [t.kind for t in truths].count("effect") == 1
        assert truths[target].kind == "effect" and claims[target].predict == "greater"


def test_wrong_verdicts():
    sc = cal.scenario("mixed")
    rng = np.random.default_rng(0)
    d = cal.simulate_claim(rng, sc, 4, kind="rate", predict="greater")
    e = cal.simulate_claim(rng, sc, 4, kind="rate", predict="equal")
    null, edge = cal.Truth(), cal.Truth("boundary", 0.1)
    assert [cal.is_wrong(d, null, v) for v in ("supported", "refuted", "depends")] == [True] * 3
    assert not cal.is_wrong(d, null, "inconclusive")
    assert cal.is_wrong(e, null, "refuted") and not cal.is_wrong(e, null, "supported")
    assert cal.is_wrong(e, edge, "supported") and not cal.is_wrong(e, edge, "refuted")


# -- the counting -------------------------------------------------------------------------------
def test_clopper_pearson():
    lo, hi = cal.clopper_pearson(0, 2000)
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 2000))
    lo, hi = cal.clopper_pearson(100, 2000)
    assert lo < 0.05 < hi and hi - lo < 0.025


def test_broken_rule_is_caught():
    """Always 'supported': every null audit has a wrong verdict, and power is 1."""
    rows = cal.calibrate(
        audits=12,
        power_audits=4,
        scenarios=["rates-independent", "continuous-shared", "equivalence-boundary"],
        rules={"broken": _always("supported"), "silent": _always("inconclusive")},
        workers=1,
    )
    broken = [r for r in rows if r["rule"] == "broken"]
    silent = [r for r in rows if r["rule"] == "silent"]
    assert all(r["familywise_error"] == 1.0 and r["wrong_verdicts"] == 12 for r in broken)
    assert all(r["familywise_error"] == 0.0 and r["ci_high"] > 0 for r in silent)
    assert broken[0]["power_10pp"] == 1.0 and silent[0]["power_50pp"] == 0.0
    assert "power_1sd" in broken[1] and not any(k.startswith("power_") for k in broken[2])


def test_same_results_for_any_number_of_workers():
    kw = {"audits": 60, "power_audits": 0, "scenarios": ["mixed"], "rules": {"naive": _naive}}
    one = cal.calibrate(workers=1, **kw)
    two = cal.calibrate(workers=2, **kw)
    assert one == two
    assert 0 < one[0]["familywise_error"] < 1  # the naive rule is wrong often, not always


# -- the command and its files ------------------------------------------------------------------
def test_quick_run_writes_the_files(tmp_path, capsys):
    rows = cal.run(
        audits=10,
        power_audits=3,
        out=tmp_path,
        workers=1,
        scenarios=["few-seeds", "equivalence-boundary"],
        rules={"old": _always("supported"), "new": _always("inconclusive")},
        rule_text={"old": "always supported", "new": "never anything"},
    )
    data = json.loads((tmp_path / "calibration.json").read_text())
    assert data == rows and len(rows) == 4
    for row in rows:
        assert set(row) >= REQUIRED
    assert {"power_0.5sd", "power_10pp"} <= set(rows[0])
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert len(meta["claimstats_sha256"]) == 12 and meta["resamples"] == cal.RESAMPLES
    assert meta["wall_s"] >= 0 and meta["date"]
    md = (tmp_path / "calibration.md").read_text()
    assert "| few-seeds | old | 1.000" in md and "always supported" in md
    out = capsys.readouterr().out
    assert "FWER [95% CI]" in out and "few-seeds" in out
    assert cal.load_calibration(tmp_path) == rows
    assert cal.load_calibration(tmp_path / "missing.json") is None


def test_cli_runs_the_real_rules(tmp_path, capsys):
    from gradatlas.app.cli import main

    code = main(
        [
            "calibrate",
            "--quick",
            "--audits",
            "6",
            "--power-audits",
            "2",
            "--workers",
            "1",
            "--scenario",
            "few-seeds",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    rows = json.loads((tmp_path / "calibration.json").read_text())
    assert {r["rule"] for r in rows} == {"old", "new"}
    assert all(set(r) >= REQUIRED and r["audits"] == 6 for r in rows)
    assert json.loads((tmp_path / "meta.json").read_text())["rule_text"].keys() == {"old", "new"}


def test_chart_draws(tmp_path):
    rows = [
        {"scenario": s, "rule": r, "familywise_error": f, "ci_low": f / 2, "ci_high": f * 1.5}
        for s in ("a", "b")
        for r, f in (("old", 0.2), ("new", 0.03))
    ]
    fig = Figure(figsize=cal.calibration_size(rows))
    cal.calibration_chart(fig, rows)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert any(abs(line.get_xdata()[0] - 0.05) < 1e-12 for line in ax.get_lines())
    fig.savefig(tmp_path / "c.png")


# -- the real audit, relabelled -----------------------------------------------------------------
def test_relabel_keeps_seed_clusters_whole():
    sc = cal.scenario("mixed")
    rng = np.random.default_rng(5)
    paired = cal.simulate_claim(rng, sc, 8, kind="continuous", predict="greater", strata=3)
    apart = cal.simulate_claim(rng, sc, 8, kind="rate", predict="less", disjoint=True, strata=2)
    swaps = set()
    for _ in range(20):
        p = cal.relabel(paired, rng)
        for s in range(8):
            sel = p.seed == s
            same = np.array_equal(p.arm[sel], paired.arm[sel])
            assert same or np.array_equal(p.arm[sel], ~paired.arm[sel])
            swaps.add(same)
        q = cal.relabel(apart, rng)
        assert q.arm.sum() == apart.arm.sum()
        for s in range(8):  # a seed stays in one arm, in every stratum
            assert q.arm[q.seed == s].all() or not q.arm[q.seed == s].any()
    assert swaps == {True, False}


def test_relabel_audit():
    sc = cal.scenario("mixed")
    claims, _, _ = cal.simulate_audit(np.random.default_rng(2), sc)
    rules = {"old": _always("supported"), "new": _always("inconclusive")}
    out = cal.relabel_audit(claims, permutations=15, seed=1, rules=rules)
    assert out["rules"]["old"]["false_verdict_rate"] == 1.0
    assert out["rules"]["new"]["false_verdict_rate"] == 0.0
    assert out["rules"]["new"]["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 15))
    assert len(out["rules"]["old"]["per_claim"]) == len(claims)


def test_relabel_audit_with_the_real_rules():
    claims, _, _ = cal.simulate_audit(np.random.default_rng(4), cal.scenario("few-seeds"))
    out = cal.relabel_audit(claims, permutations=3, seed=0, resamples=200)
    assert set(out["rules"]) == {"new", "old"} and out["permutations"] == 3
    for r in out["rules"].values():
        assert 0 <= r["ci_low"] <= r["false_verdict_rate"] <= r["ci_high"] <= 1
