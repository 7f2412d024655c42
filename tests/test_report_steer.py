"""Steerable reports: ``gradatlas report --by --facet --where --cell --limit``, outcome-split
curves, the converged-rate heatmap, the unfinished-plan banner, and ``suites.spread``.

Most tests run on records made in memory (``tests.test_reports.fake_experiment``). The store
tests write a real MLflow SQLite store through ``MlflowClient`` and the record contract
(``gradatlas.record``), no training: a sweep run with its resolved suite, some FINISHED trial
runs, and a RUNNING, a FAILED and a KILLED one, as a killed sweep leaves them.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gradatlas.errors import EXIT_USAGE, UserInputError
from gradatlas.reports.context import make_context
from gradatlas.reports.sections import build_document
from gradatlas.reports.steer import Steering, parse_where, steer_experiment
from gradatlas.suites.spread import spread, spread_order
from tests.conftest import TINY_SUITE
from tests.test_reports import fake_experiment

FACTORS = {
    "depth": ["d2", "d8"],
    "activation": ["relu", "tanh", "sigmoid"],
    "init": ["kaiming_normal", "xavier_normal", "normal(std=1)"],
}


def figure(doc: Any, name: str) -> Any:
    return next(b for s in doc.sections for b in s.blocks if getattr(b, "name", "") == name)


def content(section: Any) -> list[Any]:
    """What a section says, without drawing its charts: every text, table cell and figure."""
    out: list[Any] = [section.heading]
    for b in section.blocks:
        if hasattr(b, "draw"):
            out.append((b.name, b.caption, b.size, sorted(b.draw.keywords)))
        elif hasattr(b, "rows"):
            out.append([[c.text for c in row] for row in b.rows])
        else:
            out.append(repr(b))
    return out


def figure_names(doc: Any) -> list[str]:
    return [b.name for s in doc.sections for b in s.blocks if hasattr(b, "draw")]


# -- suites.spread -------------------------------------------------------------------------------
def grid_trials(factors: dict[str, list[str]], seeds: int = 2) -> list[dict[str, Any]]:
    trials = []
    for i, combo in enumerate(itertools.product(*factors.values())):
        for seed in range(seeds):
            trials.append(
                {
                    "cell_id": f"c{i}",
                    "seed": seed,
                    "factors": dict(zip(factors, combo, strict=True)),
                }
            )
    return trials


def test_spread_covers_every_level_before_repeating_one() -> None:
    trials = grid_trials(FACTORS)
    picked = spread(trials, 4)
    assert len(picked) == 4 and len({t["cell_id"] for t in picked}) == 4  # 4 cells, seed 0
    assert all(t["seed"] == 0 for t in picked)
    for factor, levels in FACTORS.items():
        assert {t["factors"][factor] for t in picked} == set(levels)
    assert picked == [t for t in trials if t in picked]  # in grid order
    assert spread(trials, 4) == picked  # deterministic
    # The first N in grid order would all be depth d2, activation relu:
    assert {t["factors"]["activation"] for t in trials[:4]} == {"relu"}


def test_spread_takes_far_levels_of_an_ordered_factor_first() -> None:
    cells = [{"depth": d} for d in ("d3", "d6", "d10", "d20", "d40")]
    assert [cells[i]["depth"] for i in spread_order(cells, 3)] == ["d3", "d40", "d10"]


def test_spread_gives_every_cell_a_trial_before_a_second_seed() -> None:
    trials = grid_trials(FACTORS)  # 18 cells x 2 seeds
    picked = spread(trials, 20)
    assert len({t["cell_id"] for t in picked}) == 18
    assert sum(t["seed"] == 1 for t in picked) == 2
    assert spread(trials, 0) == [] and spread(trials, -3) == []
    assert spread(trials, 100) == trials


def test_spread_reads_suite_trials() -> None:
    from gradatlas.suites import load_suite

    trials = load_suite("quickstart").trials
    picked = spread(trials, 4)
    for factor in ("depth", "activation", "init"):
        assert len({t.factors[factor] for t in picked}) == len({t.factors[factor] for t in trials})


# -- steering on records in memory ---------------------------------------------------------------
def steer_error(exp: Any, **kw: Any) -> str:
    with pytest.raises(UserInputError) as info:
        steer_experiment(exp, Steering(**kw))
    return info.value.render()


def test_unknown_factor_level_or_cell_names_the_flag_the_value_and_the_choices() -> None:
    exp = fake_experiment(FACTORS)
    msg = steer_error(exp, by="initt")
    assert msg.startswith("--by initt:") and "factors: depth, activation, init" in msg
    assert "did you mean 'init'" in msg
    msg = steer_error(exp, facet="width")
    assert msg.startswith("--facet width:") and "factors: depth, activation, init" in msg
    msg = steer_error(exp, where=(("depth", "d20"),))
    assert msg.startswith("--where depth=d20:") and "levels: d2, d8" in msg
    msg = steer_error(exp, where=(("depth", "d2"),), by="depth")
    assert msg.startswith("--by depth:") and "one level (d2)" in msg
    msg = steer_error(exp, by="init", facet="init")
    assert msg.startswith("--facet init:")
    msg = steer_error(exp, cells=("d2-relu-nope",))
    assert msg.startswith("--cell d2-relu-nope:") and "d2-relu-kaiming_normal" in msg
    assert steer_error(exp, limit=0).startswith("--limit 0:")
    with pytest.raises(UserInputError, match="expected FACTOR=LEVEL"):
        parse_where(["depth"])
    assert parse_where(["init=normal(std=1)"]) == (("init", "normal(std=1)"),)


def test_where_restricts_trials_and_levels_and_the_report_says_so() -> None:
    exp = fake_experiment(FACTORS)
    where = parse_where(["depth=d8", "init=kaiming_normal", "init=normal(std=1)"])
    doc = build_document(exp, steering=Steering(where=where))
    shown, _ = steer_experiment(exp, Steering(where=where))
    assert len(shown.trials) == 3 * 2 * 2 and set(shown.trials["factor.depth"]) == {"d8"}
    assert shown.levels["init"] == ["kaiming_normal", "normal(std=1)"]  # suite order kept
    assert "steered: --where depth=d8" in doc.subtitle
    text = " ".join(str(c) for section in doc.sections for c in content(section))
    assert "only trials with depth = d8 and init = kaiming_normal or normal(std=1)" in text
    assert "12 of the 36 finished trials (6 of 18 cells)" in text


def test_by_and_facet_set_the_heatmap_axes_and_the_curve_panels() -> None:
    exp = fake_experiment(FACTORS)
    ctx = make_context(exp, steering=Steering(by="init", facet="depth"))
    assert (ctx.heat.rows, ctx.heat.cols, ctx.heat.facets) == ("activation", "init", ["depth"])
    assert (ctx.curves.factor, ctx.curves.facet) == ("init", "depth")
    ctx = make_context(exp, steering=Steering(by="depth", facet="activation"))
    assert (ctx.heat.rows, ctx.heat.cols, ctx.heat.facets) == ("init", "depth", ["activation"])
    # No flags: exactly the choices of an unsteered report.
    plain, empty = make_context(exp), make_context(exp, steering=Steering())
    assert (plain.heat, plain.curves) == (empty.heat, empty.curves)
    assert empty.steering is None and empty.steering_text == ""


def test_no_flags_build_the_same_document_as_before() -> None:
    from datetime import UTC, datetime

    exp, when = fake_experiment(FACTORS), datetime(2030, 1, 1, tzinfo=UTC)
    a = build_document(exp, built_at=when)
    b = build_document(exp, built_at=when, steering=Steering())
    assert (a.title, a.subtitle) == (b.title, b.subtitle)
    assert [content(s) for s in a.sections] == [content(s) for s in b.sections]


def test_curves_never_pool_trials_with_different_outcomes() -> None:
    exp = fake_experiment(FACTORS, seeds=3)
    doc = build_document(exp, steering=Steering(by="activation", facet="depth"))
    fig = figure(doc, "convergence")
    panels = fig.draw.keywords["panels"]
    assert len(panels) == 2  # one row per depth
    t = exp.trials
    for depth, row in zip(FACTORS["depth"], panels, strict=True):
        for label, _, band in row[0].lines:  # training loss
            level, outcome = label.split(" · ")
            members = t[
                (t["factor.depth"] == depth)
                & (t["factor.activation"] == level)
                & (t["outcome"] == outcome)
            ]
            assert len(members) > 0 and int(band["count"].max()) == len(members)
        labels = [label for label, _, _ in row[0].lines]
        assert len(labels) == len(set(labels))
    assert "never share a band" in fig.caption


def test_converged_rate_heatmap_is_beside_the_explosion_and_vanishing_ones() -> None:
    names = figure_names(build_document(fake_experiment(FACTORS)))
    heat = [n for n in names if n.startswith("heat-")]
    # in HEATMAP_OUTCOMES's order, one per outcome label that names a mechanism
    assert heat == [
        "heat-converged",
        "heat-exploded",
        "heat-vanished",
        "heat-dead",
        "heat-diverged",
    ]


def test_named_cells_get_small_multiples_with_one_line_per_seed() -> None:
    exp = fake_experiment(FACTORS, seeds=3)
    cells = ("d8-sigmoid-xavier_normal", "c0")  # a label, and a cell id (too short: an error)
    with pytest.raises(UserInputError, match="--cell c0"):
        build_document(exp, steering=Steering(cells=cells))
    cid = exp.trials.loc[exp.trials["cell"] == "d2-relu-kaiming_normal", "cell_id"].iat[0]
    exp.trials["cell_id"] = exp.trials["cell_id"] + "-abcdef"  # long enough to name by prefix
    doc = build_document(exp, steering=Steering(cells=(cells[0], f"{cid}-abc")))
    fig = figure(doc, "named-cells")
    panels = fig.draw.keywords["panels"]
    assert [row[0].title.split(" (")[0] for row in panels] == [
        "d8-sigmoid-xavier_normal",
        "d2-relu-kaiming_normal",
    ]
    assert all(len(row[0].lines) == 3 for row in panels)  # three seeds, three lines
    assert "named-cells" not in figure_names(build_document(exp))  # none unless asked


def test_limit_keeps_a_spread_of_cells() -> None:
    exp = fake_experiment(FACTORS)
    shown, _ = steer_experiment(exp, Steering(limit=4))
    assert shown.trials["cell_id"].nunique() == 4
    for factor, levels in FACTORS.items():
        assert set(shown.trials[f"factor.{factor}"]) == set(levels)


# -- a real store: the unfinished-plan banner and the CLI ----------------------------------------
@pytest.fixture(scope="module")
def partial_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny suite's 8 trials planned; 4 FINISHED, 1 RUNNING (left by a killed sweep),
    1 FAILED, 1 KILLED, 1 never started."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    from gradatlas.record import (
        ERROR,
        FACTOR_LEVELS_ARTIFACT,
        SUITE_RESOLVED_ARTIFACT,
        SUITE_YAML_ARTIFACT,
        TRIAL_ARTIFACT,
        RecordedOutcome,
        SweepRecord,
        TrialRecord,
        factor_levels,
        trial_params,
        trial_tags,
    )
    from gradatlas.suites import load_suite

    root = tmp_path_factory.mktemp("steer-store")
    path = root / "tiny.yaml"
    path.write_text(TINY_SUITE.format(name="tiny"))
    suite = load_suite(str(path))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    eid = client.create_experiment("tiny", artifact_location=(root / "artifacts").as_uri())
    sweep = client.create_run(eid, tags=SweepRecord("tiny", planned=8, todo=8).tags()).info.run_id
    client.log_text(sweep, suite.text, SUITE_YAML_ARTIFACT)
    client.log_dict(sweep, suite.spec.model_dump(mode="json"), SUITE_RESOLVED_ARTIFACT)
    client.log_dict(sweep, factor_levels(t.factors for t in suite.trials), FACTOR_LEVELS_ARTIFACT)
    states = ["FINISHED"] * 4 + ["RUNNING", "FAILED", "KILLED"]  # the 8th: never started
    outcomes = ["converged", "vanished", "converged", "exploded"]
    steps = list(range(0, 40, 5))
    for i, (trial, state) in enumerate(zip(suite.trials, states, strict=False)):
        record = TrialRecord(
            trial_id=trial.trial_id,
            cell_id=trial.cell_id,
            cell=trial.cell,
            seed=trial.seed,
            suite="tiny",
            config=trial.config,
            factors=trial.factors,
            outcome=RecordedOutcome(outcomes[i] if i < 4 else "", "rule", {"target_accuracy": 0.3}),
            summary={"final_val_acc": 0.5, "steps_run": 40.0},
            task="classification",
            num_classes=10,
            curves={
                "train": {"step": steps, "loss": [2.0 / (1 + s) for s in steps]},
                "eval": {"step": steps, "val_acc": [0.1 + s / 100 for s in steps]},
            },
        )
        tags = trial_tags(record, sweep)
        if state == "FAILED":
            tags[ERROR] = "RuntimeError: simulated"
        rid = client.create_run(eid, run_name=trial.run_name, tags=tags).info.run_id
        params = [Param(k, v) for k, v in trial_params(record).items()]
        client.log_batch(rid, params=params)
        if state == "FINISHED":
            client.log_text(rid, record.to_json(), TRIAL_ARTIFACT)
        if state != "RUNNING":
            client.set_terminated(rid, status=state)
    return {"uri": uri, "root": root, "suite": str(path), "trials": suite.trials}


def test_banner_counts_finished_pending_failed_and_running(partial_store) -> None:
    from gradatlas.reports.load import load_experiment
    from gradatlas.reports.plan_status import read_plan_status

    exp = load_experiment("tiny", partial_store["uri"])
    plan = read_plan_status(exp.store, exp)
    assert (plan.planned, plan.finished, plan.pending, plan.failed, plan.running) == (8, 4, 2, 1, 1)
    assert plan.killed == 1 and not plan.complete
    assert re.match(
        r"4 of 8 planned trials finished; 2 pending \(1 of them killed, to run again\), 1 failed "
        r"and 1 still RUNNING \(started \d{4}-\d\d-\d\d \d\d:\d\d UTC\)$",
        plan.banner(),
    )
    # Where the counted part of the plan is all finished there is nothing to say.
    first = partial_store["trials"][0].factors  # 4 finished = the first two cells
    done = read_plan_status(
        exp.store, exp, {"depth": {first["depth"]}, "activation": {first["activation"]}}
    )
    assert done.complete and (done.planned, done.finished) == (2, 2)


def test_report_of_a_partly_run_plan_opens_with_the_banner(partial_store) -> None:
    from gradatlas.reports import build_report

    out = partial_store["root"] / "report"
    html_path, pdf_path = build_report(
        "tiny", tracking_uri=partial_store["uri"], out_dir=out, parallel=False
    )
    page = html_path.read_text(encoding="utf-8")
    banner = "4 of 8 planned trials finished; 2 pending (1 of them killed, to run again), 1 failed"
    assert page.index(banner) < page.index("1. Unfinished plan") < page.index("2. Overview")
    assert 'data-table="unfinished"' in page and "RuntimeError: simulated" in page
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", "-l", "1", str(pdf_path), "-"], capture_output=True, text=True
        ).stdout
        assert "4 of 8 planned trials finished" in " ".join(text.split())


def test_cli_steering_errors_exit_2_and_write_nothing(partial_store, capsys, monkeypatch) -> None:
    from gradatlas.app.cli import main
    from gradatlas.reports import build

    monkeypatch.setattr(build.PdfWorker, "start", classmethod(lambda cls: None))  # no child

    out: Path = partial_store["root"] / "never"
    base = ["report", "tiny", "--tracking-uri", partial_store["uri"], "--out", str(out)]
    for flags, expected in [
        (["--by", "inti"], "error: --by inti: experiment 'tiny' has no factor 'inti'"),
        (["--where", "depth=d3"], "error: --where depth=d3: depth has no level 'd3'"),
    ]:
        assert main([*base, *flags]) == EXIT_USAGE
        assert expected in capsys.readouterr().err
        assert not out.exists()


def test_cli_steered_report_says_what_it_was_steered_by(partial_store, monkeypatch) -> None:
    from gradatlas.app.cli import main
    from gradatlas.reports import build, pdf

    monkeypatch.setattr(build.PdfWorker, "start", classmethod(lambda cls: None))
    monkeypatch.setattr(pdf, "render_pdf", lambda doc, path: Path(path).write_bytes(b"%PDF"))
    out: Path = partial_store["root"] / "steered"
    args = ["report", "tiny", "--tracking-uri", partial_store["uri"], "--out", str(out)]
    assert main([*args, "--by", "activation", "--where", "depth=d2"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "steered: --by activation --where depth=d2" in page
    assert "Steered: <code>gradatlas report tiny --by activation --where depth=d2</code>" in page
    assert "(counting only the trials with depth = d2)" in page
