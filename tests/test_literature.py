"""The literature suites and their report section.

Each built-in literature suite validates and expands, is small enough for a 2-core machine,
calls itself a scaled-down analogue of its paper, declares claims whose levels are levels of its
trials, and documents GPU profiles whose ``--set`` overrides validate too. The "Published claim
vs measured" section is checked on records made in memory (the phase diagram with its mean-field
curve at the trials' sigma_b^2, the fitted deepest trainable net against 6 xi_c, the paper vs
ours table and its agreement rule, the growth fit on known ratios, the claims' pooled values
recomputed here) and on a real probe-only mini-run of yang2019 read back from MLflow. The
statistics behind the tables (``litstats``) are checked on synthetic data with known answers.
"""

from __future__ import annotations

import io
import math
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure as MplFigure

from gradatlas.reports import literature as lit
from gradatlas.reports import litstats, meanfield
from gradatlas.reports.context import make_context
from gradatlas.reports.document import Figure, Para, Table
from gradatlas.reports.html import render_html
from gradatlas.reports.load import Sweep, experiment_from_records
from gradatlas.reports.sections import document_for
from gradatlas.suites import load_suite
from gradatlas.suites.claims import filter_labels
from gradatlas.suites.expand import builtin_suites

SUITES = ["glorot-bengio", "he2015", "ioffe-szegedy", "yang2019", "schoenholz2017"]
# A literature suite runs in minutes on 2 CPU cores: its trials' hidden layers (depth x trials,
# the cost that grows) stay under this; schoenholz2017, the largest, has 7 x 209 x 4 = 5852.
MAX_LAYERS = 6000


# -- the suites ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SUITES)
def test_every_literature_suite_validates_small_and_names_its_paper(name: str) -> None:
    suite = load_suite(name)
    spec = suite.spec
    assert spec.dataset.name == "mnist1d" and spec.dataset.seed == "default"
    assert 0 < sum(t.spec.model.depth for t in suite.trials) <= MAX_LAYERS
    assert spec.claims and spec.description
    # Named for what it is, in its description (which the report prints) and its header.
    assert spec.description.startswith("Scaled-down analogue of ")
    assert "not a reproduction" in spec.description
    assert "scaled-down analogue, not a reproduction" in builtin_suites()[name].read_text()
    assert lit.paper_for(name) is lit.PAPERS[name]
    text = builtin_suites()[name].read_text()
    assert text.startswith("# "), "the header comment cites the paper"
    year = re.search(r"\d{4}", name.replace("-", "") + lit.PAPERS[name].citation)
    assert year and year.group(0) in text


@pytest.mark.parametrize("name", SUITES)
def test_claims_name_levels_the_trials_carry(name: str) -> None:
    suite = load_suite(name)
    levels: dict[str, list[str]] = {}
    for trial in suite.trials:
        for factor, label in trial.factors.items():
            levels.setdefault(factor, [])
            if label not in levels[factor]:
                levels[factor].append(label)
    for claim in suite.spec.claims:
        groups = {}
        for block in ("a", "b", "where"):
            labels, problems = filter_labels(getattr(claim, block), levels)
            assert not problems, (claim.id, block, [p.render() for p in problems])
            groups[block] = labels
        selected = [
            t
            for t in suite.trials
            if all(t.factors[f] in ls for f, ls in {**groups["where"], **groups["a"]}.items())
        ]
        assert selected, f"{claim.id}: group A selects no trial"


def gpu_profiles(name: str) -> list[list[str]]:
    """The `--set` overrides of each `gradatlas run` command in the suite's header comment."""
    lines = builtin_suites()[name].read_text().splitlines()
    commands, current = [], ""
    for line in lines:
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if body.startswith("gradatlas run") or current:
            current += " " + body.rstrip("\\").split("  #")[0]
            if not body.endswith("\\"):
                commands.append(current)
                current = ""
    out = []
    for command in commands:
        words = shlex.split(command)
        assert words[2] == name, command
        out.append([words[i + 1] for i, w in enumerate(words) if w == "--set"])
    return out


@pytest.mark.parametrize("name", SUITES)
def test_the_documented_gpu_profiles_validate(name: str) -> None:
    profiles = gpu_profiles(name)
    assert profiles, "each literature suite documents a profile for the standard datasets"
    for overrides in profiles:
        suite = load_suite(name, overrides)  # data files are checked when trials run
        assert suite.spec.dataset.name in ("mnist", "cifar10")
        assert suite.name.startswith(name + "-")  # its own experiment...
        assert lit.paper_for(suite.name) is lit.PAPERS[name]  # ...still read as this paper


def test_the_schoenholz_grid_spans_both_phases_at_the_papers_bias() -> None:
    suite = load_suite("schoenholz2017")
    inits = [t.spec.model.init.to_config() for t in suite.trials]
    assert {lit.bias_variance(i) for i in inits} == {meanfield.PAPER_SIGMA_B2}  # 0.05
    assert suite.spec.seeds >= 4
    variances = sorted({lit.weight_variance(i, suite.trials[0].spec.model.width) for i in inits})
    assert variances == pytest.approx([0.49, 1.0, 1.44, 1.7689, 2.56, 4.0, 9.0])
    theory = [meanfield.mean_field(v, 0.05) for v in variances]
    assert [m.phase for m in theory] == ["ordered"] * 3 + ["chaotic"] * 4
    assert theory[3].chi_1 == pytest.approx(1.0, abs=0.005)  # 1.7689: at the boundary
    predicted = meanfield.trainable_depth_curve(variances, 0.05)
    stated = [7.0, 21.8, 74.3, 3600, 67.8, 41.9, 26.9]  # the numbers in the suite's header
    assert predicted == pytest.approx(stated, rel=0.01)
    depths = sorted({t.spec.model.depth for t in suite.trials})
    inside = [p for p in predicted if depths[0] < p < depths[-1]]
    assert len(inside) >= 4, "6 xi_c falls inside the depth grid on both sides of the boundary"
    ratios = np.diff(np.log(depths))
    assert np.allclose(ratios, ratios.mean(), rtol=0.2), "log-spaced, for the fit in log depth"


def test_weight_and_bias_variance_of_the_inits() -> None:
    assert lit.weight_variance({"name": "kaiming_normal", "gain": 1.0}, 64) == pytest.approx(2.0)
    assert lit.weight_variance({"name": "xavier_normal", "gain": 2.0}, 64) == pytest.approx(4.0)
    assert lit.weight_variance({"name": "normal", "gain": 1.0, "std": 0.125}, 64) == 1.0
    assert lit.weight_variance({"name": "glorot_standard"}, 64) == pytest.approx(1 / 3)
    assert lit.weight_variance({"name": "torch_default"}, 64) == pytest.approx(1 / 3)
    assert lit.weight_variance({"name": "mystery"}, 64) is None
    with_bias = {"name": "lecun_normal", "gain": 1.5, "bias_var": 0.05}
    assert lit.weight_variance(with_bias, 64) == pytest.approx(2.25)
    assert lit.bias_variance(with_bias) == 0.05
    assert lit.bias_variance({"name": "lecun_normal", "gain": 1.5}) == 0.0  # biases start at 0


# -- the section on records made in memory -------------------------------------------------------
GAINS = {"lecun_normal(gain=0.5)": 0.5, "lecun_normal": 1.0, "lecun_normal(gain=3)": 3.0}
PAPER_GAINS = {  # sigma_w^2 = 0.49, 1.7689, 9 at sigma_b^2 = 0.05, labelled as the plan labels them
    "lecun_normal(bias_var=0.05,gain=0.7)": 0.7,
    "lecun_normal(bias_var=0.05,gain=1.33)": 1.33,
    "lecun_normal(bias_var=0.05,gain=3)": 3.0,
}


def phase_entries(
    seeds: int = 2,
    sb2: float = 0.0,
    gains: dict[str, float] = GAINS,
    depths: tuple[int, ...] = (4, 32, 64),
) -> list[tuple[dict, dict]]:
    """A Schoenholz-shaped experiment: trained (converged) exactly where 6 xi_c says so."""
    entries = []
    for label, gain in gains.items():
        init = {"name": "lecun_normal", "gain": gain} | ({"bias_var": sb2} if sb2 else {})
        for depth in depths:
            trains = depth < meanfield.mean_field(gain**2, sb2).trainable_depth
            for seed in range(seeds):
                record = {
                    "trial_id": f"{label}-{depth}-{seed}",
                    "cell_id": f"{label}-{depth}",
                    "cell": f"{label}-d{depth}",
                    "seed": seed,
                    "factors": {"init": label, "depth": f"d{depth}"},
                    "outcome": {"label": "converged" if trains else "vanished", "reason": "r"},
                    "summary": {
                        "test_acc": 0.6 if trains else 0.1,
                        "final_train_acc": 0.9 if trains else 0.1,
                        "init_grad_ratio": gain**depth,
                        "steps_to_target": 100.0 if trains else None,
                    },
                    "task": "classification",
                    "num_classes": 10,
                    "config": {
                        "model": {
                            "family": "mlp",
                            "depth": depth,
                            "width": 64,
                            "activation": {"name": "tanh"},
                            "init": init,
                        },
                        "seed": seed,
                    },
                }
                entries.append(({"run_id": f"r{len(entries)}", "start_time": len(entries)}, record))
    return entries


def with_suite(exp: Any, name: str) -> Any:
    resolved = load_suite(name).spec.model_dump()
    exp.sweeps = [Sweep("sweep", None, "FINISHED", resolved=resolved)]
    return exp


def section_blocks(exp: Any) -> list[Any]:
    return lit.Literature().build(make_context(exp))


def draw(blocks: list[Any], name: str = "literature-phase") -> Any:
    figure = next(b for b in blocks if isinstance(b, Figure) and b.name == name)
    fig = MplFigure(figsize=figure.size)
    figure.draw(fig)
    return fig.axes[0]


def test_the_schoenholz_section_overlays_mean_field_at_the_trials_bias() -> None:
    """sigma_b^2 = 0.05, as the suite runs: the curve is 6 xi_c at 0.05, the boundary at 1.76,
    the fitted L_max per sigma_w^2 is drawn and tabled against 6 xi_c."""
    depths = (4, 6, 8, 11, 16, 23, 32, 45, 64)
    entries = phase_entries(seeds=4, sb2=0.05, gains=PAPER_GAINS, depths=depths)
    exp = with_suite(experiment_from_records(entries, name="anything"), "schoenholz2017")
    blocks = section_blocks(exp)
    assert blocks[0].text.startswith("A scaled-down analogue of Schoenholz et al. (2017)")
    assert "6 xi_c" in blocks[0].text
    ax = draw(blocks)
    curve = next(line for line in ax.lines if "6 ξ_c (σ_b² = 0.05)" in str(line.get_label()))
    x, y = curve.get_data()
    expected = meanfield.trainable_depth_curve(np.asarray(x), 0.05, "tanh")
    assert np.allclose(y, np.where(np.isfinite(expected), expected, 1e9))
    assert x.min() < 0.49 and x.max() > 9  # spans every measured sigma_w^2
    assert not [line for line in ax.lines if "ξ_∇" in str(line.get_label())]  # q* > 0 here
    boundary = next(line for line in ax.lines if "order-to-chaos" in str(line.get_label()))
    assert boundary.get_xdata()[0] == pytest.approx(1.761, abs=0.001)
    texts = {t.get_text() for t in ax.texts}
    assert {"← ordered", "chaotic →"} <= texts
    assert "fitted L_max (95% CI)" in [t.get_text() for t in ax.get_legend().get_texts()]
    table = next(b for b in blocks if isinstance(b, Table) and b.name == "literature-meanfield")
    rows = {attrs["sigma-w2"]: row for attrs, row in zip(table.row_attrs, table.rows, strict=True)}
    assert sorted(rows) == pytest.approx([0.49, 1.7689, 9.0])
    # sigma_w^2 = 9: 6 xi_c = 26.9, the records train at 4-23 and not at 32-64: the fit puts
    # L_max between 23 and 32 (a step: the interval is the grid's gap) and calls it consistent.
    nine = rows[9.0]
    assert float(nine[4].text) == pytest.approx(26.9, abs=0.1)
    assert 23 < float(nine[5].text) < 32 and nine[8].text == "yes"
    lo, hi = (float(v) for v in nine[6].text.strip("[]").split(","))
    assert 22 < lo < 24 and 31 < hi < 33
    assert rows[1.7689][5].text == "> 64" and rows[1.7689][8].text == "yes"  # no fall-off
    assert all(a["consistent"] for a in table.row_attrs)
    summary = next(b for b in blocks if isinstance(b, Para) and "agree in" in b.text)
    assert "within its 95% interval at 3 of 3" in summary.text
    assert "agree in 27 of 27 cells" in summary.text
    html = render_html(document_for(make_context(exp), [lit.Literature()]))
    assert "<svg" in html and "literature-claims" in html and "literature-meanfield" in html


def test_without_bias_the_overlay_names_the_q0_side_for_what_it_is() -> None:
    """sigma_b^2 = 0 (biases at zero): left of sigma_w^2 = 1 the length fixed point is q* = 0,
    correlations freeze and xi_c is infinite; the curve there is 6 xi_grad, dashed and labelled
    so, the side is named 'q* = 0', and the table's phase says 'vanishing', not 'ordered'."""
    exp = with_suite(experiment_from_records(phase_entries(), name="anything"), "schoenholz2017")
    blocks = section_blocks(exp)
    ax = draw(blocks)
    dashed = next(line for line in ax.lines if "6 ξ_∇ where q* = 0" in str(line.get_label()))
    x, y = dashed.get_data()
    assert x.max() < 1.0 and dashed.get_linestyle() == "--"
    assert np.allclose(y, -6 / np.log(x))  # 6 xi_grad = -6 / ln chi_1, chi_1 = sigma_w^2
    solid = next(line for line in ax.lines if "6 ξ_c (σ_b² = 0)" in str(line.get_label()))
    xs, ys = solid.get_data()
    assert np.all(np.isnan(ys[xs < 1.0]) | np.isnan(xs[xs < 1.0]))  # not drawn where q* = 0
    boundary = next(line for line in ax.lines if "order-to-chaos" in str(line.get_label()))
    assert boundary.get_xdata()[0] == pytest.approx(1.0, abs=1e-6)
    texts = {t.get_text() for t in ax.texts}
    assert "← q* = 0 (signal vanishes)" in texts and "← ordered" not in texts
    table = next(b for b in blocks if isinstance(b, Table) and b.name == "literature-meanfield")
    phases = {
        a["sigma-w2"]: row[1].text for a, row in zip(table.row_attrs, table.rows, strict=True)
    }
    assert phases == {0.25: "vanishing", 1.0: "critical", 9.0: "chaotic"}
    scales = {
        a["sigma-w2"]: row[3].text for a, row in zip(table.row_attrs, table.rows, strict=True)
    }
    assert scales[0.25].startswith("ξ_∇ = ") and scales[9.0].startswith("ξ_c = ")


def test_the_claims_table_shows_each_groups_measured_value() -> None:
    depths = (4, 8, 16, 32, 45, 64)
    entries = phase_entries(seeds=4, sb2=0.05, gains=PAPER_GAINS, depths=depths)
    exp = with_suite(experiment_from_records(entries, name="x"), "schoenholz2017")
    table = next(
        b for b in section_blocks(exp) if isinstance(b, Table) and b.name == "literature-claims"
    )
    rows = {attrs["claim"]: row for attrs, row in zip(table.row_attrs, table.rows, strict=True)}
    assert set(rows) == {c.id for c in load_suite("schoenholz2017").spec.claims}
    # SC-ordered: critical vs sigma_w^2 = 0.49 at depths 32-64 (here 32, 45, 64): 12/12 vs 0/12
    assert rows["SC-ordered"][3].text.endswith("100% (12/12)")
    assert rows["SC-ordered"][4].text.endswith("0% (0/12)")
    # SC-chaotic at depths 45-64: sigma_w^2 = 9 has 6 xi_c = 26.9, so it does not train
    assert rows["SC-chaotic"][4].text.endswith("0% (0/8)")
    assert rows["SC-depth-bound"][3].text.endswith("100% (12/12)")  # depths 4, 8, 16


def test_the_yang_section_fits_the_growth_per_layer() -> None:
    entries = []
    for norm, g in (("none", 1.0), ("batchnorm", 1.2)):
        for depth in (2, 8, 32):
            for seed in range(2):
                record = {
                    "trial_id": f"{norm}{depth}{seed}",
                    "cell_id": f"{norm}{depth}",
                    "cell": f"d{depth}-{norm}",
                    "seed": seed,
                    "factors": {"depth": f"d{depth}", "norm": norm},
                    "outcome": {"label": "probe", "reason": "probe-only"},
                    "summary": {"init_grad_ratio": 0.5 * g**depth},
                    "config": {"model": {"depth": depth}},
                }
                entries.append(({"run_id": f"r{len(entries)}", "start_time": len(entries)}, record))
    exp = with_suite(experiment_from_records(entries, name="x"), "yang2019")
    blocks = section_blocks(exp)
    growth = next(b for b in blocks if isinstance(b, Table) and b.name == "literature-growth")
    fitted = {row[0].text: float(row[1].text) for row in growth.rows}
    assert fitted == pytest.approx({"none": 1.0, "batchnorm": 1.2}, rel=1e-3)
    assert not any(isinstance(b, Figure) for b in blocks)  # no phase diagram for Yang


def test_a_suite_is_found_by_its_experiment_name_without_a_sweep() -> None:
    exp = experiment_from_records(phase_entries(1), name="schoenholz2017-mnist")
    blocks = section_blocks(exp)
    assert any(isinstance(b, Figure) for b in blocks)
    assert any(isinstance(b, Para) and b.note and "declares no claims" in b.text for b in blocks)


def test_a_suite_that_is_no_literature_suite_has_no_such_section() -> None:
    from gradatlas.reports.sections import build_document

    exp = experiment_from_records(phase_entries(1), name="quickstart")
    assert not lit.Literature().applies(make_context(exp))
    assert lit.Literature.title not in [s.title for s in build_document(exp).sections]
    blocks = section_blocks(exp)  # built anyway, it says why it has nothing
    assert len(blocks) == 1 and blocks[0].note and "not a literature suite" in blocks[0].text
    exp = with_suite(experiment_from_records(phase_entries(1), name="x"), "he2015")
    assert lit.Literature.title in [s.title for s in build_document(exp).sections]


def test_no_phase_diagram_without_model_configs() -> None:
    entries = phase_entries(1)
    for _, record in entries:
        record["config"] = {}
    exp = experiment_from_records(entries, name="schoenholz2017")
    notes = [b.text for b in section_blocks(exp) if isinstance(b, Para) and b.note]
    assert any(text.startswith("No phase diagram") for text in notes)


# -- a real mini-run -----------------------------------------------------------------------------
def test_a_real_probe_only_run_of_yang2019(tmp_path: Path) -> None:
    """Probe-only trials (no training): BN's gradient ratio at init grows with depth, as the
    paper says, and the section reads the claims from the sweep MLflow recorded."""
    from gradatlas.reports.load import load_experiment
    from gradatlas.runners.sweep import run_suite
    from gradatlas.runners.trial import set_threads
    from tests.conftest import new_store

    set_threads(1)
    # The claims name depths 16, 32 and 64: an override must keep them (or drop the claims).
    overrides = ["grid.depth=[16,32,64]", "grid.activation=[relu]", "seeds=1", "model.width=64"]
    suite = load_suite("yang2019", overrides)
    uri = new_store(tmp_path / "mlflow.db")
    run_suite(suite, uri, accelerator="cpu", stream=io.StringIO())
    exp = load_experiment("yang2019", uri)
    assert set(exp.trials["outcome"]) == {"probe"} and len(exp.trials) == 6
    blocks = section_blocks(exp)
    claims = next(b for b in blocks if isinstance(b, Table) and b.name == "literature-claims")
    assert [a["claim"] for a in claims.row_attrs] == ["YA-bn-explodes", "YA-grows-with-depth"]
    growth = next(b for b in blocks if isinstance(b, Table) and b.name == "literature-growth")
    fitted = {row[1].text: float(row[2].text) for row in growth.rows}  # activation, norm, g
    # He init keeps the plain ReLU net's ratio flat; with BN it grows by ~1.2 per layer.
    assert fitted["batchnorm"] > 1.1 and 0.9 < fitted["none"] < 1.05


def test_a_net_that_learned_without_reaching_the_target_counts_as_trained() -> None:
    """Deep in the chaotic phase nets fit the training set but generalize badly (unconverged):
    the phase diagram is about trainability, so they count as trained."""
    entries = phase_entries(1)
    for _, record in entries:
        if record["outcome"]["label"] == "converged":
            record["outcome"]["label"] = "unconverged"
    points, activation, _ = lit.phase_points(experiment_from_records(entries, name="x"))
    assert activation == "tanh"
    by_cell = {(p.sigma_w2, p.depth): p for p in points}
    assert by_cell[(1.0, 64)].trained == 1 and by_cell[(1.0, 64)].converged == 0
    assert by_cell[(9.0, 64)].trained == 0  # 6 xi_c = 28 < 64: vanished in these records


def test_trials_that_mix_bias_variances_get_no_phase_diagram() -> None:
    entries = phase_entries(1) + phase_entries(1, sb2=0.05)
    for i, (meta, record) in enumerate(entries):
        meta["run_id"] = f"m{i}"
        record["trial_id"] = f"m{i}"
    exp = experiment_from_records(entries, name="schoenholz2017")
    notes = [b.text for b in section_blocks(exp) if isinstance(b, Para) and b.note]
    assert any("mix bias variances" in text for text in notes)


def test_group_values_read_as_the_metric_says() -> None:
    import pandas as pd

    t = pd.DataFrame(
        {
            "outcome": ["converged", "unconverged", "stalled", "exploded"],
            "test_acc": [0.5, 0.3, 0.1, float("nan")],
            "init_grad_ratio": [1.0, 100.0, 10.0, 0.0],
            "steps_to_target": [100.0, None, None, None],
        }
    )
    assert lit.group_value(t, "converged_rate") == "25% (1/4)"
    assert lit.group_value(t, "trainable_rate", detail=False) == "50%"
    assert lit.group_value(t, "test_acc") == "0.3 (n=3)"
    assert lit.group_value(t, "init_grad_ratio") == "10 (geo. mean, n=3)"  # the 0 is left out
    assert lit.group_value(t, "steps_to_target") == "100 (1/4 reached)"
    assert lit.group_value(t, "max_stable_lr") == "not recorded"
    assert lit.group_value(t.iloc[:0], "test_acc") == "no trials"


# -- the statistics: the depth fit, the estimates and the agreement rule ------------------------
DEPTHS = (4, 6, 8, 11, 16, 23, 32, 45, 64)


def test_the_depth_fit_of_a_step_is_bracketed_by_the_grid() -> None:
    """Trained below 16, never from 23 on, 4 seeds: L_max between the two, and its interval
    the gap (no finer than the grid and the seeds allow)."""
    d = np.repeat(DEPTHS, 4)
    fit = litstats.fit_trainable_depth(d, d <= 16)
    assert fit is not None and fit.censored == ""
    assert 16 < fit.l_max < 23 and fit.l_max == pytest.approx(math.sqrt(16 * 23), rel=0.02)
    assert 15 < fit.lo < 16.5 and 22.5 < fit.hi < 24
    assert fit.text == f"{fit.l_max:.3g}" and fit.interval.startswith("[")


def test_the_depth_fit_recovers_a_known_fall_off() -> None:
    """Draws from a logistic in log depth with L_max = 20: the estimate is near 20 and its 95%
    interval covers it (fixed seed; 40 seeds per depth)."""
    rng = np.random.default_rng(3)
    d = np.repeat(DEPTHS, 40)
    p = 1 / (1 + np.exp(4.0 * (np.log(d) - np.log(20.0))))
    fit = litstats.fit_trainable_depth(d, rng.random(d.size) < p)
    assert fit is not None and fit.lo < 20 < fit.hi
    assert fit.l_max == pytest.approx(20, rel=0.15) and fit.hi / fit.lo < 1.6


def test_the_depth_fit_says_when_the_fall_off_is_outside_the_grid() -> None:
    d = np.repeat(DEPTHS, 4)
    above = litstats.fit_trainable_depth(d, np.ones(d.size, bool))
    assert above.censored == "above" and above.text == "> 64" and math.isinf(above.hi)
    assert 60 < above.lo < 65  # at least the deepest net tried
    below = litstats.fit_trainable_depth(d, np.zeros(d.size, bool))
    assert below.censored == "below" and below.text == "< 4" and below.lo == 0.0
    assert litstats.fit_trainable_depth([8, 8], [True, False]) is None  # one depth: no fit
    one_miss = litstats.fit_trainable_depth(d, d < 64 + 0 * d)  # fails only at the deepest
    assert one_miss.censored == "" and 45 < one_miss.l_max < 64


def test_the_estimates_and_their_intervals() -> None:
    rate = litstats.rate_estimate([True] * 6)
    assert (rate.value, rate.hi, rate.basis) == (1.0, 1.0, "6/6 trials")
    assert rate.lo == pytest.approx(0.61, abs=0.01)  # Wilson: 6/6 is not certainty
    ratio = litstats.ratio_estimate([2.0, 2.2, 1.8, 2.0], [1.0, 1.1, 0.9, 1.0])
    assert ratio.value == pytest.approx(2.0) and ratio.lo < 2.0 < ratio.hi and ratio.lo > 1.5
    assert litstats.ratio_estimate([1.0], [1.0, 2.0]).has_interval is False
    depth = np.repeat([8, 16, 32, 64], 3)
    noise = np.exp(np.random.default_rng(0).normal(0, 0.05, depth.size))
    growth = litstats.growth_estimate(depth, 3.0 * 1.2**depth * noise, power=2.0)
    assert growth.value == pytest.approx(1.44, rel=0.01) and growth.lo < 1.44 < growth.hi


def test_the_agreement_rules() -> None:
    ours = litstats.Estimate(1.3, 1.1, 1.5, "n")
    assert litstats.INSIDE.agrees(1.26, ours) and not litstats.INSIDE.agrees(1.6, ours)
    one = litstats.side(1.0)
    assert one.agrees(1.26, ours) and one.agrees(5.0, ours)  # same side of 1: the direction
    assert one.judge(0.93, ours) == (False, "other side of 1")
    straddles = litstats.Estimate(1.3, 0.9, 1.7, "n")
    assert one.judge(1.26, straddles) == (False, "our CI straddles 1")  # not beyond chance
    no_ci = litstats.Estimate(1.3, math.nan, math.nan, "n")
    assert one.judge(1.26, no_ci) == (False, "no interval")
    assert litstats.INSIDE.judge(1.6, ours) == (False, "outside our CI")
    half = litstats.side(0.5)
    assert half.agrees(0.0, litstats.rate_estimate([False] * 6))
    assert not half.agrees(0.0, litstats.rate_estimate([False] * 5 + [True]))  # CI crosses 50%
    assert "inside" in litstats.INSIDE.text and "side of 1" in one.text


def he_entries(trained: dict[tuple[int, str], int], seeds: int = 6) -> list[tuple[dict, dict]]:
    """he2015-shaped records: ``trained[(depth, init)]`` of the ``seeds`` seeds converged."""
    entries = []
    for (depth, init), k in trained.items():
        for seed in range(seeds):
            ok = seed < k
            record = {
                "trial_id": f"{init}{depth}{seed}",
                "cell_id": f"{init}{depth}",
                "cell": f"d{depth}-{init}",
                "seed": seed,
                "factors": {"depth": f"d{depth}", "init": init},
                "outcome": {"label": "converged" if ok else "stalled", "reason": "r"},
                "summary": {
                    "test_acc": 0.5 if ok else 0.1,
                    "steps_run": 720.0,
                    "steps_to_target": 300.0 if ok else None,
                },
                "config": {"model": {"depth": depth}},
            }
            entries.append(({"run_id": f"r{len(entries)}", "start_time": len(entries)}, record))
    return entries


def headline_rows(exp: Any) -> dict[str, list[Any]]:
    blocks = section_blocks(exp)
    table = next(b for b in blocks if isinstance(b, Table) and b.name == "literature-headlines")
    rows = {row[0].text: row for row in table.rows}
    summary = next(b for b in blocks if isinstance(b, Para) and b.text.startswith("Paper vs ours"))
    agree = sum(row[5].text == "yes" for row in rows.values())
    assert f"agrees with {agree} of the paper's {len(rows)} headline number" in summary.text
    return rows


def test_the_paper_vs_ours_table_of_he2015() -> None:
    as_paper = {(30, "kaiming_normal"): 6, (30, "xavier_normal"): 0, (22, "xavier_normal"): 6,
                (22, "kaiming_normal"): 6}  # fmt: skip
    rows = headline_rows(with_suite(experiment_from_records(he_entries(as_paper), name="x"),
                                    "he2015"))  # fmt: skip
    assert len(rows) == len(lit.PAPERS["he2015"].headlines) == 3
    he30 = rows["trained rate, 30 layers, He init"]
    assert he30[1].text == "converges (Fig. 3)"
    assert he30[2].text == "100% [61%, 100%]" and he30[3].text == "6/6 trials"
    assert he30[4].text == "our 95% CI on the paper's side of 0.5"
    assert [row[5].text for row in rows.values()] == ["yes", "yes", "yes"]
    # Xavier at 30 layers trains in 2 of 6 seeds: the interval crosses 50%, so no agreement
    mixed = as_paper | {(30, "xavier_normal"): 2}
    rows = headline_rows(with_suite(experiment_from_records(he_entries(mixed), name="x"),
                                    "he2015"))  # fmt: skip
    assert rows["trained rate, 30 layers, Xavier init"][5].text == "no: our CI straddles 0.5"


def test_the_paper_vs_ours_ratios_read_the_claims_metrics() -> None:
    """Ioffe & Szegedy: steps to target, BN / no BN, where a net that never reached the target
    counts as one step more than the longest run (the claims' restricted steps)."""
    entries = []
    for norm, lr, steps in (("batchnorm", 0.05, 100.0), ("none", 0.05, None),
                            ("batchnorm", 0.5, 50.0)):  # fmt: skip
        for seed in range(4):
            record = {
                "trial_id": f"{norm}{lr}{seed}",
                "cell_id": f"{norm}{lr}",
                "cell": f"{norm}-lr{lr}",
                "seed": seed,
                "factors": {"norm": norm, "lr": f"lr{lr}"},
                "outcome": {"label": "converged" if steps else "unconverged", "reason": "r"},
                "summary": {"steps_to_target": steps, "steps_run": 400.0, "test_acc": 0.4},
                "config": {"model": {"depth": 3}},
            }
            entries.append(({"run_id": f"r{len(entries)}", "start_time": len(entries)}, record))
    rows = headline_rows(with_suite(experiment_from_records(entries, name="x"), "ioffe-szegedy"))
    same = rows["steps to target, BN / no BN at lr 0.05"]
    assert float(same[2].attrs["value"]) == pytest.approx(100 / 401)  # missed: 400 + 1 steps
    assert same[5].text == "yes"
    assert same[3].text.endswith("reached the target: 4/4 vs 0/4 (a miss counted as the budget "
                                 "+ 1: the ratio is an upper bound)")  # fmt: skip
    faster = rows["steps to target, BN at lr 0.5 / no BN at lr 0.05"]
    assert float(faster[2].attrs["value"]) == pytest.approx(50 / 401)


def test_the_paper_vs_ours_growth_of_yang2019() -> None:
    """ReLU + BN growing by sqrt(pi / (pi - 1)) per layer in norm agrees with the paper's
    pi / (pi - 1) for the squared norm; without BN, flat, agrees with 1."""
    g = math.sqrt(math.pi / (math.pi - 1))
    entries = []
    for norm, growth in (("batchnorm", g), ("none", 1.0)):
        for depth in (2, 8, 16, 32, 64):
            for seed in range(3):
                wobble = 1 + 0.02 * (seed - 1)
                record = {
                    "trial_id": f"{norm}{depth}{seed}",
                    "cell_id": f"{norm}{depth}",
                    "cell": f"d{depth}-relu-{norm}",
                    "seed": seed,
                    "factors": {"depth": f"d{depth}", "activation": "relu", "norm": norm},
                    "outcome": {"label": "probe", "reason": "probe-only"},
                    "summary": {"init_grad_ratio": 0.3 * growth**depth * wobble},
                    "config": {"model": {"depth": depth}},
                }
                entries.append(({"run_id": f"r{len(entries)}", "start_time": len(entries)}, record))
    rows = headline_rows(with_suite(experiment_from_records(entries, name="x"), "yang2019"))
    bn = rows["growth of the squared gradient norm per layer, ReLU + BN"]
    assert float(bn[2].attrs["value"]) == pytest.approx(math.pi / (math.pi - 1), rel=1e-3)
    assert bn[5].text == "yes" and bn[3].text.startswith("12 trials, depths 8-64")
    assert rows["growth of the squared gradient norm per layer, ReLU, no BN"][5].text == "yes"


def test_every_paper_but_schoenholz_has_headline_numbers_with_a_source() -> None:
    for name, paper in lit.PAPERS.items():
        assert paper.analogue, name
        if paper.phase_diagram:
            continue  # its numbers are the depth fit against 6 xi_c
        assert paper.headlines, name
        for h in paper.headlines:
            assert h.source and h.paper_text and math.isfinite(h.paper)
