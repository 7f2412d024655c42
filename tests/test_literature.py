"""The literature suites and their report section.

Each built-in literature suite validates and expands, is small enough for a 2-core machine,
declares claims whose levels are levels of its trials, and documents GPU profiles whose
``--set`` overrides validate too. The "Published claim vs measured" section is checked on
records made in memory (the phase diagram with its mean-field curve, the growth fit on known
ratios, the claims' pooled values recomputed here) and on a real probe-only mini-run of
yang2019 read back from MLflow.
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
from gradatlas.reports import meanfield
from gradatlas.reports.context import make_context
from gradatlas.reports.document import Figure, Para, Table
from gradatlas.reports.html import render_html
from gradatlas.reports.load import Sweep, experiment_from_records
from gradatlas.reports.sections import document_for
from gradatlas.suites import load_suite
from gradatlas.suites.claims import filter_labels
from gradatlas.suites.expand import builtin_suites

SUITES = ["glorot-bengio", "he2015", "ioffe-szegedy", "yang2019", "schoenholz2017"]
MAX_TRIALS = 100  # a literature suite runs in minutes on 2 CPU cores


# -- the suites ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SUITES)
def test_every_literature_suite_validates_small_and_names_its_paper(name: str) -> None:
    suite = load_suite(name)
    spec = suite.spec
    assert spec.dataset.name == "mnist1d" and spec.dataset.seed == "default"
    assert 0 < len(suite.trials) <= MAX_TRIALS
    assert spec.claims and spec.description
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


def test_the_schoenholz_grid_spans_both_phases_as_its_header_says() -> None:
    suite = load_suite("schoenholz2017")
    variances = sorted(
        {
            lit.weight_variance(t.spec.model.init.to_config(), t.spec.model.width)
            for t in suite.trials
        }
    )
    assert variances == pytest.approx([0.25, 0.5625, 1.0, 2.25, 4.0, 9.0])
    phases = [meanfield.mean_field(v).phase for v in variances]
    assert phases == ["ordered"] * 2 + ["critical"] + ["chaotic"] * 3
    predicted = meanfield.trainable_depth_curve(variances)
    stated = [4.3, 10.4, math.inf, 102, 48, 28]  # the numbers in the suite's header comment
    assert predicted == pytest.approx(stated, rel=0.02)
    depths = sorted({t.spec.model.depth for t in suite.trials})
    finite = [p for p in predicted if math.isfinite(p)]
    assert depths[0] < min(finite) and depths[-1] > sorted(finite)[-2], "wedge inside the grid"


def test_weight_variance_of_the_inits() -> None:
    assert lit.weight_variance({"name": "kaiming_normal", "gain": 1.0}, 64) == 2.0
    assert lit.weight_variance({"name": "xavier_normal", "gain": 2.0}, 64) == 4.0
    assert lit.weight_variance({"name": "normal", "gain": 1.0, "std": 0.125}, 64) == 1.0
    assert lit.weight_variance({"name": "glorot_standard"}, 64) == pytest.approx(1 / 3)
    assert lit.weight_variance({"name": "mystery"}, 64) is None


# -- the section on records made in memory -------------------------------------------------------
GAINS = {"lecun_normal(gain=0.5)": 0.5, "lecun_normal": 1.0, "lecun_normal(gain=3)": 3.0}


def phase_entries(seeds: int = 2) -> list[tuple[dict, dict]]:
    """A Schoenholz-shaped experiment: trained (converged) exactly where 6 xi_c says so."""
    entries = []
    for label, gain in GAINS.items():
        for depth in (4, 32, 64):
            trains = depth < meanfield.mean_field(gain**2).trainable_depth
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
                            "init": {"name": "lecun_normal", "gain": gain},
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


def test_the_schoenholz_section_overlays_the_mean_field_curve() -> None:
    exp = with_suite(experiment_from_records(phase_entries(), name="anything"), "schoenholz2017")
    blocks = section_blocks(exp)
    assert "Schoenholz" in blocks[0].text and "6 xi_c" in blocks[0].text
    figure = next(b for b in blocks if isinstance(b, Figure) and b.name == "literature-phase")
    fig = MplFigure(figsize=figure.size)
    figure.draw(fig)
    ax = fig.axes[0]
    curve = next(line for line in ax.lines if "6 ξ_c" in str(line.get_label()))
    x, y = curve.get_data()
    expected = meanfield.trainable_depth_curve(np.asarray(x), 0.0, "tanh")
    expected = np.where(np.isfinite(expected), expected, 1e9)
    assert np.allclose(y, expected)
    assert x.min() < 0.25 and x.max() > 9  # spans every measured sigma_w^2
    boundary = [line for line in ax.lines if "order-to-chaos" in str(line.get_label())]
    assert boundary and boundary[0].get_xdata()[0] == pytest.approx(1.0, abs=1e-6)
    table = next(b for b in blocks if isinstance(b, Table) and b.name == "literature-meanfield")
    assert len(table.rows) == 9
    agree = next(b for b in blocks if isinstance(b, Para) and "agree in" in b.text)
    assert "agree in 9 of 9 cells" in agree.text
    html = render_html(document_for(make_context(exp), [lit.Literature()]))
    assert "<svg" in html and "literature-claims" in html


def test_the_claims_table_shows_each_groups_measured_value() -> None:
    exp = with_suite(experiment_from_records(phase_entries(), name="x"), "schoenholz2017")
    table = next(
        b for b in section_blocks(exp) if isinstance(b, Table) and b.name == "literature-claims"
    )
    rows = {attrs["claim"]: row for attrs, row in zip(table.row_attrs, table.rows, strict=True)}
    assert set(rows) == {c.id for c in load_suite("schoenholz2017").spec.claims}
    # SC-ordered: gain 1 vs gain 0.5 at depths 16-64 (here 32 and 64): 4/4 vs 0/4 converged
    assert rows["SC-ordered"][3].text.endswith("100% (4/4)")
    assert rows["SC-ordered"][4].text.endswith("0% (0/4)")
    # SC-chaotic at depths 32-64: sigma_w^2 = 9 has 6 xi_c = 28, so it does not train
    assert rows["SC-chaotic"][4].text.endswith("0% (0/4)")
    assert rows["SC-depth-bound"][3].text.endswith("100% (2/2)")  # depth 4 (of 4, 8, 16)


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

    set_threads(1)
    # The claims name depths 16, 32 and 64: an override must keep them (or drop the claims).
    overrides = ["grid.depth=[16,32,64]", "grid.activation=[relu]", "seeds=1", "model.width=64"]
    suite = load_suite("yang2019", overrides)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
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
