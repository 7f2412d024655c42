"""Calibration of the claims audit's verdict rules by simulation: how often they are wrong.

A verdict rule (``claimstats.RULES``) turns one audit's claims into supported / refuted /
inconclusive / depends / no data. Whether it keeps its promise (at most ``ALPHA`` = 5% chance of
any wrong verdict in an audit) depends on the design it is applied to, so the honest proof is a
simulation of null worlds shaped like our audits, pushed through the real code, counting wrong
verdicts (SCIENCE.md, "Calibration by simulation"). This module does that for the per-stratum
rule the verdicts once used ("old", kept to show why it was replaced) and the seed-clustered rule
they use ("new"), and measures their power.

**A world is one audit**: a family of m claims (m drawn from 5..20, or fixed by the scenario),
every cell run at seeds 0..n-1 (n drawn per audit from 4..32, or fixed). Each claim has a kind
(a rate, value 0/1, or a continuous metric), 1-4 strata (matched cells) and a prediction:
directional (greater / less, drawn at random) or equivalence (equal, with margin 0.1 = 10
percentage points for rates, 0.5 SD for continuous metrics). Most claims compare arms that run
the *same* seeds (the seed's data order and init stream shared by both arms and every stratum);
some are A/A-style controls whose arms run *disjoint* seeds (A the even seeds, B the odd ones,
same cells). A claim's trials (arm g, seed s, stratum k) are drawn as

- continuous: ``value = mu_k + delta * SD * [g = A] + u_s + w_{s,g} + e_{g,s,k}``, with
  ``mu_k ~ N(0, 2^2)`` the cell's level, ``u_s ~ N(0, sd_u^2)`` the seed's effect (shared by
  strata and arms), ``w_{s,g} ~ N(0, sd_w^2)`` a seed-by-arm effect shared by the strata, and
  ``e ~ N(0, 1)``; SD = sqrt(sd_u^2 + sd_w^2 + 1) is the spread of one trial about its cell mean;
- rates: ``P(value = 1) = expit(b_k + shift_k [g = A] + u_s + w_{s,g})``, with the base rate
  drawn per stratum from U(0.05, 0.95) and ``b_k`` solved so that it is the *marginal* rate
  (averaged over the seed effects) of arm B; an effect delta (in probability) makes arm A's
  marginal rate exactly base + delta.

``w`` is what makes the pairs of one seed correlated across strata: pseudo-replication if the
(stratum, seed) pairs are treated as independent, which the old rule does. Under the null
(delta = 0) the two arms have the same distribution. Claims of one audit are independent of each
other (Holm's procedure holds under any dependence, so this is not what it is tested on).

**Wrong verdict** in a null world: a directional claim given supported, refuted or depends (a
direction, or an effect that differs by stratum, that is not there); an equivalence claim given
refuted. In the *equivalence-boundary* scenario every claim predicts equal and its true
difference is exactly +-margin; there a wrong verdict is supported (Schuirmann 1987: the two
one-sided tests at alpha, i.e. the 90% interval inside the margin, are wrong at most alpha of the
time at the boundary, per claim; with several claims and no adjustment the family's error grows).
The **familywise error** of a scenario x rule is the share of audits with at least one wrong
verdict (Holm 1979 controls it for the rejections of true nulls; Shaffer 1980 for the directional
decisions that follow a two-sided rejection); its 95% interval is Clopper-Pearson. The per-claim
error ``claim_error`` is the share of claims given a wrong verdict.

**Power**: the same worlds, except that one claim (at a random position, directional, shared
seeds, predicting the true direction) has a true effect: 0.5, 1 or 2 SD for a continuous metric
(SD as above), 10, 25 or 50 percentage points for a rate (arm B's base rate then drawn so both
stay within 0.05..0.95). Power is the share of audits in which that claim is supported.

Every audit is drawn from its own generator (seeded from ``seed``, the scenario, the mode and
the audit's index), so results do not depend on the number of workers or the chunking, and the
old and new rules judge the very same audits. ``relabel_audit`` is the same check on the real
recorded audit: arms relabelled at random (seed clusters kept whole), so every directional claim
becomes null by construction.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import expit, logit

ALPHA = 0.05
AUDITS = 2_000  # null audits per scenario (the FWER's interval is +-1 pp around 5%)
POWER_AUDITS = 300  # audits per effect size (a power's standard error <= 2.9 pp)
QUICK_AUDITS = 200  # --quick, for a look and the tests
QUICK_POWER_AUDITS = 50
RESAMPLES = 1_000  # bootstrap resamples passed to the rules (theirs default to more)
SEED = 20_250_317
CHUNK = 50  # audits per task sent to a worker
DEFAULT_OUT = Path("runs/calibration")

RATE_MARGIN = 0.10  # equivalence margin for rates: 10 percentage points
SD_MARGIN = 0.5  # equivalence margin for continuous metrics, in SD
RATE_EFFECTS = (0.10, 0.25, 0.50)
SD_EFFECTS = (0.5, 1.0, 2.0)
BASE_RATES = (0.05, 0.95)
CELL_SPREAD = 2.0  # SD of the cells' levels mu_k

WRONG_DIRECTIONAL = frozenset({"supported", "refuted", "depends"})

Rule = Callable[..., list[str]]


# -- scenarios ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """One shape of audit. Ranges are inclusive; a claim's kind is drawn from ``kinds``."""

    name: str
    description: str
    kinds: tuple[str, ...] = ("rate",)
    claims: tuple[int, int] = (5, 20)
    seeds: tuple[int, int] = (4, 32)
    strata: tuple[int, int] = (1, 4)
    equal_share: float = 0.25  # claims that predict equal
    disjoint_share: float = 0.2  # A/A-style claims whose arms run disjoint seeds
    sd_u: float = 0.0  # seed effect, shared by strata and arms
    sd_w: float = 0.0  # seed-by-arm effect, shared by strata
    boundary: bool = False  # every claim predicts equal, true difference at +-margin

    def shape(self) -> dict[str, Any]:
        return {
            "kinds": list(self.kinds),
            "claims": list(self.claims),
            "seeds": list(self.seeds),
            "strata": list(self.strata),
            "equal_share": self.equal_share,
            "disjoint_share": self.disjoint_share,
            "sd_u": self.sd_u,
            "sd_w": self.sd_w,
        }


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "rates-independent",
        "rates, independent trials (sd_u = sd_w = 0), 5-20 claims, 4-32 seeds, 1-4 strata",
    ),
    Scenario(
        "rates-shared",
        "rates with a seed effect shared across strata (sd_u = 0.5, sd_w = 1 on the logit)",
        sd_u=0.5,
        sd_w=1.0,
    ),
    Scenario(
        "continuous-independent",
        "continuous, independent trials (sd_u = sd_w = 0, sd_e = 1)",
        kinds=("continuous",),
    ),
    Scenario(
        "continuous-shared",
        "continuous with a seed effect shared across strata (sd_u = 1, sd_w = 1 x sd_e)",
        kinds=("continuous",),
        sd_u=1.0,
        sd_w=1.0,
    ),
    Scenario(
        "mixed",
        "rates and continuous, directional and equivalence, shared seed effects (sd_u = 0.5, "
        "sd_w = 1)",
        kinds=("rate", "continuous"),
        sd_u=0.5,
        sd_w=1.0,
    ),
    Scenario(
        "few-seeds",
        "the mixed family at 4 seeds",
        kinds=("rate", "continuous"),
        seeds=(4, 4),
        sd_u=0.5,
        sd_w=1.0,
    ),
    Scenario(
        "many-seeds",
        "the mixed family at 32 seeds",
        kinds=("rate", "continuous"),
        seeds=(32, 32),
        sd_u=0.5,
        sd_w=1.0,
    ),
    Scenario(
        "equivalence-boundary",
        "only equivalence claims (rates and continuous), true difference exactly at +-margin, "
        "shared seed effects; wrong = supported",
        kinds=("rate", "continuous"),
        equal_share=1.0,
        sd_u=0.5,
        sd_w=1.0,
        boundary=True,
    ),
)


def scenario(name: str) -> Scenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(f"no scenario {name!r}; known: {', '.join(s.name for s in SCENARIOS)}")


# -- the simulator ------------------------------------------------------------------------------
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(48)
_GH_W = _GH_W / _GH_W.sum()
_GRID = np.linspace(-14.0, 14.0, 5601)
_MARGINAL_CACHE: dict[float, np.ndarray] = {}


def marginal_rate(b: np.ndarray | float, sd: float) -> np.ndarray:
    """E[expit(b + z)] for z ~ N(0, sd^2): the rate averaged over the seed effects."""
    b = np.asarray(b, dtype=float)
    if sd == 0:
        return expit(b)
    return expit(b[..., None] + sd * _GH_X).dot(_GH_W)


def _logit_of_marginal(p: np.ndarray, sd: float) -> np.ndarray:
    """The b with marginal_rate(b, sd) = p (monotone, inverted on a fine grid)."""
    p = np.asarray(p, dtype=float)
    if sd == 0:
        return logit(p)
    table = _MARGINAL_CACHE.get(sd)
    if table is None:
        table = _MARGINAL_CACHE[sd] = marginal_rate(_GRID, sd)
    return np.interp(p, table, _GRID)


@dataclass(frozen=True)
class Truth:
    """What is true of a simulated claim: ``null`` (no difference), ``boundary`` (an equal claim
    whose difference is exactly at its margin) or ``effect`` (a real directional effect)."""

    kind: str = "null"
    delta: float = 0.0


def simulate_claim(
    rng: np.random.Generator,
    sc: Scenario,
    n_seeds: int,
    *,
    kind: str,
    predict: str,
    disjoint: bool = False,
    strata: int = 1,
    delta: float = 0.0,
    cid: str = "",
) -> Any:
    """One claim's trials as a ``ClaimData``; ``delta`` is the true A - B difference (a rate
    difference, or in SD for continuous metrics)."""
    from gradatlas.reports.claimstats import ClaimData

    k_idx = np.arange(strata)
    seeds = np.arange(n_seeds)
    u = rng.normal(0.0, sc.sd_u, n_seeds) if sc.sd_u else np.zeros(n_seeds)
    w = rng.normal(0.0, sc.sd_w, (n_seeds, 2)) if sc.sd_w else np.zeros((n_seeds, 2))
    if disjoint:  # A/A-style: A runs the even seeds, B the odd ones, in every stratum
        s_grid, k_grid = np.meshgrid(seeds, k_idx, indexing="ij")
        arm = (s_grid % 2 == 0).ravel()
        seed, stratum = s_grid.ravel(), k_grid.ravel()
    else:
        g_grid, s_grid, k_grid = np.meshgrid([True, False], seeds, k_idx, indexing="ij")
        arm, seed, stratum = g_grid.ravel(), s_grid.ravel(), k_grid.ravel()
    shared = u[seed] + w[seed, np.where(arm, 0, 1)]
    if kind == "continuous":
        sd = math.sqrt(sc.sd_u**2 + sc.sd_w**2 + 1.0)
        mu = rng.normal(0.0, CELL_SPREAD, strata)
        value = mu[stratum] + delta * sd * arm + shared + rng.normal(0.0, 1.0, arm.size)
        margin = SD_MARGIN * sd if predict == "equal" else None
    elif kind == "rate":
        lo, hi = BASE_RATES
        base = rng.uniform(lo + max(0.0, -delta), hi - max(0.0, delta), strata)
        spread = math.hypot(sc.sd_u, sc.sd_w)
        b_b = _logit_of_marginal(base, spread)
        b_a = _logit_of_marginal(base + delta, spread) if delta else b_b
        eta = np.where(arm, b_a[stratum], b_b[stratum]) + shared
        value = (rng.random(arm.size) < expit(eta)).astype(float)
        margin = RATE_MARGIN if predict == "equal" else None
    else:
        raise ValueError(f"kind must be rate or continuous, not {kind!r}")
    return ClaimData(
        kind=kind,
        predict=predict,
        margin=margin,
        value=value.astype(float),
        arm=arm.astype(bool),
        stratum=stratum.astype(np.int64),
        seed=seed.astype(np.int64),
        id=cid,
        control=disjoint,
    )


def _audit_rng(seed: int, sc_index: int, mode: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, sc_index, mode, index])


def simulate_audit(
    rng: np.random.Generator, sc: Scenario, effect: tuple[str, float] | None = None
) -> tuple[list[Any], list[Truth], int | None]:
    """One audit of the scenario: its claims, what is true of each, and the index of the claim
    with a true effect (``effect`` = (kind, delta); None: a null world)."""
    m = int(rng.integers(sc.claims[0], sc.claims[1] + 1))
    n = int(rng.integers(sc.seeds[0], sc.seeds[1] + 1))
    target = int(rng.integers(m)) if effect is not None else None
    claims, truths = [], []
    for i in range(m):
        strata = int(rng.integers(sc.strata[0], sc.strata[1] + 1))
        if i == target:
            kind, delta = effect
            predict, disjoint, truth = "greater", False, Truth("effect", delta)
        else:
            kind = sc.kinds[int(rng.integers(len(sc.kinds)))]
            equal = rng.random() < sc.equal_share
            predict = "equal" if equal else ("greater", "less")[int(rng.integers(2))]
            disjoint = bool(rng.random() < sc.disjoint_share)
            delta, truth = 0.0, Truth()
            if sc.boundary and equal:  # at +-margin, in the unit the margin is stated in
                delta = (RATE_MARGIN if kind == "rate" else SD_MARGIN) * (1, -1)[rng.integers(2)]
                truth = Truth("boundary", delta)
        claims.append(
            simulate_claim(
                rng,
                sc,
                n,
                kind=kind,
                predict=predict,
                disjoint=disjoint,
                strata=strata,
                delta=delta,
                cid=f"c{i}",
            )
        )
        truths.append(truth)
    return claims, truths, target


def is_wrong(claim: Any, truth: Truth, verdict: str) -> bool:
    """Whether a verdict is wrong for what is true (see the module docstring)."""
    if truth.kind == "effect":
        return verdict in ("refuted", "depends")
    if truth.kind == "boundary":
        return verdict == "supported"
    if claim.predict == "equal":
        return verdict == "refuted"
    return verdict in WRONG_DIRECTIONAL


# -- running the rules --------------------------------------------------------------------------
_ACTIVE_RULES: dict[str, Rule] | None = None  # set before forking workers


def real_rules() -> dict[str, Rule]:
    """``claimstats.RULES`` (old and new), or a UserInputError-like message if missing."""
    from gradatlas.reports import claimstats

    rules = getattr(claimstats, "RULES", None)
    if not rules:
        raise RuntimeError(
            "gradatlas.reports.claimstats has no RULES (the verdict rules to calibrate)"
        )
    return dict(rules)


def _accepts(rule: Rule, name: str) -> bool:
    try:
        params = inspect.signature(rule).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


CALIBRATION_PERMUTATIONS = 2_000


def apply_rule(rule: Rule, claims: list[Any], resamples: int | None) -> list[str]:
    """The rule's verdicts; ``resamples`` goes to a rule that takes it (None: its default)."""
    kw = {"resamples": resamples} if resamples is not None and _accepts(rule, "resamples") else {}
    if _accepts(rule, "permutations"):  # Monte Carlo tests above 16 seeds: 1/2001 resolution
        kw["permutations"] = CALIBRATION_PERMUTATIONS
    verdicts = list(rule(claims, **kw))
    if len(verdicts) != len(claims):
        raise ValueError(f"a rule returned {len(verdicts)} verdicts for {len(claims)} claims")
    return verdicts


@dataclass(frozen=True)
class Task:
    scenario: int  # index into SCENARIOS
    mode: int  # 0: null; 1 + j: the j-th effect of _effects(scenario)
    start: int
    count: int
    seed: int
    resamples: int | None
    rules: tuple[str, ...]


def _effects(sc: Scenario) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    if "continuous" in sc.kinds:
        out += [("continuous", d) for d in SD_EFFECTS]
    if "rate" in sc.kinds:
        out += [("rate", d) for d in RATE_EFFECTS]
    return out


def power_field(kind: str, delta: float) -> str:
    if kind == "rate":
        return f"power_{round(100 * delta)}pp"
    return f"power_{delta:g}sd"


def run_task(task: Task) -> dict[str, Any]:
    """Simulate ``count`` audits and judge each with every rule; counts per rule."""
    rules = _ACTIVE_RULES if _ACTIVE_RULES is not None else real_rules()
    sc = SCENARIOS[task.scenario]
    effect = None if task.mode == 0 else _effects(sc)[task.mode - 1]
    out = {
        name: {"audits": 0, "wrong": 0, "claims": 0, "wrong_claims": 0, "supported": 0}
        for name in task.rules
    }
    for i in range(task.start, task.start + task.count):
        rng = _audit_rng(task.seed, task.scenario, task.mode, i)
        claims, truths, target = simulate_audit(rng, sc, effect)
        for name in task.rules:
            verdicts = apply_rule(rules[name], claims, task.resamples)
            wrong = [is_wrong(c, t, v) for c, t, v in zip(claims, truths, verdicts, strict=True)]
            tally = out[name]
            tally["audits"] += 1
            tally["wrong"] += any(wrong)
            tally["claims"] += len(claims)
            tally["wrong_claims"] += sum(wrong)
            if target is not None:
                tally["supported"] += verdicts[target] == "supported"
    return {"scenario": task.scenario, "mode": task.mode, "counts": out}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of the proportion k/n."""
    if n == 0:
        return math.nan, math.nan
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def _tasks(
    scenarios: Sequence[int], audits: int, power_audits: int, seed: int, resamples, rules
) -> list[Task]:
    tasks = []
    for si in scenarios:
        sc = SCENARIOS[si]
        plan = [(0, audits)]
        if not sc.boundary and power_audits > 0:
            plan += [(1 + j, power_audits) for j in range(len(_effects(sc)))]
        for mode, total in plan:
            for start in range(0, total, CHUNK):
                count = min(CHUNK, total - start)
                tasks.append(Task(si, mode, start, count, seed, resamples, tuple(rules)))
    return tasks


def _map(tasks: list[Task], workers: int) -> Iterable[dict[str, Any]]:
    if workers <= 1 or len(tasks) <= 1:
        return map(run_task, tasks)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    ctx = multiprocessing.get_context(method)
    pool = ctx.Pool(min(workers, len(tasks)))
    try:
        return list(pool.imap_unordered(run_task, tasks, chunksize=1))
    finally:
        pool.close()
        pool.join()


def calibrate(
    *,
    audits: int = AUDITS,
    power_audits: int = POWER_AUDITS,
    scenarios: Sequence[str] | None = None,
    rules: dict[str, Rule] | None = None,
    workers: int = 2,
    resamples: int | None = RESAMPLES,
    seed: int = SEED,
) -> list[dict[str, Any]]:
    """Every scenario x rule: familywise error with its 95% interval, per-claim error, power.

    ``rules`` defaults to ``claimstats.RULES``; with workers > 1 the rules reach the worker
    processes by fork (so they may be any callables, closures included)."""
    global _ACTIVE_RULES
    rules = dict(rules) if rules is not None else real_rules()
    names = [n for n in ("old", "new") if n in rules] + sorted(set(rules) - {"old", "new"})
    picked = [i for i, s in enumerate(SCENARIOS) if scenarios is None or s.name in set(scenarios)]
    if scenarios is not None and len(picked) != len(set(scenarios)):
        known = {s.name for s in SCENARIOS}
        raise KeyError(f"unknown scenarios: {sorted(set(scenarios) - known)}")
    tasks = _tasks(picked, audits, power_audits, seed, resamples, names)
    tasks.sort(key=lambda t: -t.count)
    _ACTIVE_RULES = rules
    try:
        results = list(_map(tasks, workers))
    finally:
        _ACTIVE_RULES = None
    totals: dict[tuple[int, int, str], dict[str, int]] = {}
    for res in results:
        for name, tally in res["counts"].items():
            acc = totals.setdefault((res["scenario"], res["mode"], name), dict.fromkeys(tally, 0))
            for key, value in tally.items():
                acc[key] += value
    rows = []
    for si in picked:
        sc = SCENARIOS[si]
        for name in names:
            null = totals[(si, 0, name)]
            lo, hi = clopper_pearson(null["wrong"], null["audits"])
            row: dict[str, Any] = {
                "scenario": sc.name,
                "rule": name,
                "description": sc.description,
                "audits": null["audits"],
                "wrong_verdicts": null["wrong"],
                "familywise_error": null["wrong"] / null["audits"],
                "ci_low": lo,
                "ci_high": hi,
                "claims": null["claims"],
                "wrong_claims": null["wrong_claims"],
                "claim_error": null["wrong_claims"] / max(null["claims"], 1),
                "wrong_means": "equal supported"
                if sc.boundary
                else "directional supported, refuted or depends; equal refuted",
                **sc.shape(),
            }
            for j, (kind, delta) in enumerate(_effects(sc)):
                tally = totals.get((si, 1 + j, name))
                if tally:
                    row[power_field(kind, delta)] = tally["supported"] / tally["audits"]
                    row["power_audits"] = tally["audits"]
            rows.append(row)
    return rows


# -- output -------------------------------------------------------------------------------------
def claimstats_hash() -> str:
    """sha256 of the text of reports/claimstats.py, first 12 hex digits."""
    from gradatlas.reports import claimstats

    text = Path(claimstats.__file__).read_text(encoding="utf-8")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


POWER_COLUMNS = [power_field("continuous", d) for d in SD_EFFECTS] + [
    power_field("rate", d) for d in RATE_EFFECTS
]


def table(rows: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """The results as a readable table (plain text, or Markdown)."""
    powers = [c for c in POWER_COLUMNS if any(c in r for r in rows)]
    head = ["scenario", "rule", "FWER [95% CI]", "audits", "claim err", *powers]
    body = []
    for r in rows:
        fwer = f"{r['familywise_error']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        flag = " !" if r["ci_high"] > ALPHA and not markdown else ""
        body.append(
            [
                r["scenario"],
                r["rule"],
                fwer + flag,
                str(r["audits"]),
                f"{r['claim_error']:.4f}",
                *[f"{r[c]:.2f}" if c in r else "-" for c in powers],
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [head, *body])


def write_outputs(
    rows: list[dict[str, Any]], out: Path, meta: dict[str, Any]
) -> tuple[Path, Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    data, side, md = out / "calibration.json", out / "meta.json", out / "calibration.md"
    data.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    side.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    lines = [
        "# Calibration of the verdict rules",
        "",
        f"Null audits per scenario: {meta['audits']}; power: {meta['power_audits']} audits per "
        f"effect size; bootstrap resamples passed to the rules: {meta['resamples']}; "
        f"claimstats.py {meta['claimstats_sha256']}; {meta['date']}; "
        f"wall time {meta['wall_s']:.0f} s on {meta['workers']} workers.",
        "",
        "FWER = share of null audits with at least one wrong verdict (directional claim "
        "supported, refuted or depends; equivalence claim refuted; in equivalence-boundary: "
        "equivalence supported), 95% Clopper-Pearson interval. Power = share of audits in which "
        "the one claim with a true effect is supported.",
        "",
        table(rows, markdown=True),
        "",
        "Scenarios:",
        "",
        *[
            f"- **{s.name}**: {s.description}"
            for s in SCENARIOS
            if any(r["scenario"] == s.name for r in rows)
        ],
        "",
        "Rules:",
        "",
        *[f"- **{k}**: {v}" for k, v in meta.get("rule_text", {}).items()],
        "",
    ]
    md.write_text("\n".join(lines), encoding="utf-8")
    return data, side, md


def run(
    *,
    audits: int = AUDITS,
    power_audits: int = POWER_AUDITS,
    out: Path | str = DEFAULT_OUT,
    workers: int = 2,
    resamples: int | None = RESAMPLES,
    seed: int = SEED,
    scenarios: Sequence[str] | None = None,
    rules: dict[str, Rule] | None = None,
    rule_text: dict[str, str] | None = None,
    echo: Callable[[str], Any] | None = print,
) -> list[dict[str, Any]]:
    """``gradatlas calibrate``: simulate, write calibration.json, meta.json, calibration.md."""
    if rules is None:
        from gradatlas.reports import claimstats

        rules = real_rules()
        rule_text = rule_text or dict(getattr(claimstats, "RULE_TEXT", {}) or {})
    start = time.perf_counter()
    rows = calibrate(
        audits=audits,
        power_audits=power_audits,
        scenarios=scenarios,
        rules=rules,
        workers=workers,
        resamples=resamples,
        seed=seed,
    )
    wall = time.perf_counter() - start
    meta = {
        "claimstats_sha256": claimstats_hash(),
        "resamples": resamples,
        "audits": audits,
        "power_audits": power_audits,
        "seed": seed,
        "workers": workers,
        "scenarios": [r["scenario"] for r in rows if r["rule"] == rows[0]["rule"]],
        "rules": sorted({r["rule"] for r in rows}),
        "rule_text": rule_text or {},
        "alpha": ALPHA,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_s": round(wall, 1),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }
    paths = write_outputs(rows, Path(out), meta)
    if echo is not None:
        echo(table(rows))
        echo(
            f"\n{audits} null audits per scenario, {power_audits} per effect size for power, "
            f"resamples={resamples}; {wall:.0f} s on {workers} workers"
        )
        echo("wrote " + ", ".join(str(p) for p in paths))
    return rows


def load_calibration(path: Path | str) -> list[dict[str, Any]] | None:
    """The rows of a calibration.json (a file or its folder), or None if absent or unreadable."""
    p = Path(path)
    if p.is_dir():
        p = p / "calibration.json"
    try:
        rows = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return None
    need = {"scenario", "rule", "familywise_error", "ci_low", "ci_high"}
    return [r for r in rows if need <= set(r)] or None


# -- the chart ----------------------------------------------------------------------------------
def calibration_size(rows: Sequence[dict[str, Any]]) -> tuple[float, float]:
    n = len(dict.fromkeys(r["scenario"] for r in rows))
    return 7.0, 0.9 + 0.32 * max(n, 1)


def calibration_chart(fig: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Per scenario (one row each), the familywise error of each rule with its 95% interval,
    against a dashed line at alpha = 0.05."""
    from gradatlas.reports.figures import palette, style

    scen = list(dict.fromkeys(r["scenario"] for r in rows))
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    colors = palette(max(len(rules), 2))
    with style():
        ax = fig.add_subplot(1, 1, 1)
        offsets = np.linspace(-0.18, 0.18, len(rules)) if len(rules) > 1 else [0.0]
        top = ALPHA
        for j, rule in enumerate(rules):
            ys, xs, lo, hi = [], [], [], []
            for i, s in enumerate(scen):
                r = next((r for r in rows if r["scenario"] == s and r["rule"] == rule), None)
                if r is None:
                    continue
                ys.append(i + offsets[j])
                xs.append(r["familywise_error"])
                lo.append(r["familywise_error"] - r["ci_low"])
                hi.append(r["ci_high"] - r["familywise_error"])
                top = max(top, r["ci_high"])
            ax.errorbar(
                xs,
                ys,
                xerr=[lo, hi],
                fmt="os"[j % 2],
                color=colors[j],
                ms=4,
                capsize=2,
                lw=1.1,
                label=f"{rule} rule",
            )
        ax.axvline(ALPHA, color="#444444", ls="--", lw=1.0, label="alpha = 0.05")
        ax.set_yticks(range(len(scen)), scen)
        ax.invert_yaxis()
        ax.set_xlim(0, min(1.0, max(0.1, top * 1.1)))
        ax.set_xlabel("familywise error: share of null audits with a wrong verdict (95% CI)")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)


# -- the real audit, relabelled -----------------------------------------------------------------
def relabel(claim: Any, rng: np.random.Generator) -> Any:
    """The claim with its arm labels redrawn at random, seed clusters kept whole: a seed that
    ran in both arms has its A and B swapped (all strata together) with probability 1/2 (a sign
    flip of the seed's cluster); the seeds that ran in one arm only have their arms permuted among
    themselves (as many A seeds as before). Every arm difference then is chance."""
    seed, arm = np.asarray(claim.seed), np.asarray(claim.arm, dtype=bool)
    in_a, in_b = set(seed[arm].tolist()), set(seed[~arm].tolist())
    both = np.array(sorted(in_a & in_b), dtype=seed.dtype)
    new = arm.copy()
    if both.size:
        flipped = both[rng.random(both.size) < 0.5]
        mask = np.isin(seed, flipped)
        new[mask] = ~arm[mask]
    one = np.array(sorted(in_a ^ in_b), dtype=seed.dtype)
    if one.size:
        labels = np.isin(one, list(in_a))
        drawn = dict(zip(one.tolist(), rng.permutation(labels).tolist(), strict=True))
        mask = np.isin(seed, one)
        new[mask] = [drawn[s] for s in seed[mask].tolist()]
    return replace(claim, arm=new)


def _null_truths(claims: Sequence[Any]) -> list[Truth]:
    return [Truth() for _ in claims]


def relabel_audit(
    claims: list[Any],
    permutations: int = 1000,
    seed: int = 0,
    *,
    rules: dict[str, Rule] | None = None,
    resamples: int | None = None,
) -> dict[str, Any]:
    """The real audit's claims, arms relabelled ``permutations`` times (``relabel``), each
    relabelled audit judged by every rule (new and old). A directional claim given supported,
    refuted or depends, or an equivalence claim given refuted, is a false verdict; per rule the
    share of relabelled audits with any false verdict, its 95% Clopper-Pearson interval, and
    each claim's own false-verdict rate."""
    rules = dict(rules) if rules is not None else real_rules()
    names = [n for n in ("new", "old") if n in rules] + sorted(set(rules) - {"old", "new"})
    rng = np.random.default_rng(seed)
    wrong = {n: 0 for n in names}
    per_claim = {n: np.zeros(len(claims), dtype=int) for n in names}
    truths = _null_truths(claims)
    start = time.perf_counter()
    for _ in range(permutations):
        shuffled = [relabel(c, rng) for c in claims]
        for n in names:
            verdicts = apply_rule(rules[n], shuffled, resamples)
            bad = [is_wrong(c, t, v) for c, t, v in zip(shuffled, truths, verdicts, strict=True)]
            wrong[n] += any(bad)
            per_claim[n] += np.array(bad, dtype=int)
    out: dict[str, Any] = {
        "permutations": permutations,
        "seed": seed,
        "resamples": resamples,
        "claims": len(claims),
        "wall_s": round(time.perf_counter() - start, 1),
        "rules": {},
    }
    for n in names:
        lo, hi = clopper_pearson(wrong[n], permutations)
        out["rules"][n] = {
            "wrong_verdicts": wrong[n],
            "false_verdict_rate": wrong[n] / permutations if permutations else math.nan,
            "ci_low": lo,
            "ci_high": hi,
            "per_claim": {
                (c.id or str(i)): int(k) / permutations if permutations else math.nan
                for i, (c, k) in enumerate(zip(claims, per_claim[n], strict=True))
            },
        }
    return out
