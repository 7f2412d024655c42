"""Reports: numbers recomputed from MLflow, self-contained HTML, a real PDF, graceful skips.

The end-to-end tests build a report from a store made by a real (tiny) sweep, then check it the
way a reader would: the rates in the HTML table against rates recomputed straight from the runs
with ``MlflowClient`` (not through the report's loader), the HTML in headless Chromium (no console
errors, no request leaving the file), and the PDF with poppler (renders, text extracts).
The fast tests cover the statistics and the section logic on records made in memory.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import select
import shutil
import subprocess
import time
import warnings
from collections import Counter, defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradatlas.reports import build_report
from gradatlas.reports.html import render_html
from gradatlas.reports.load import (
    experiment_from_records,
    in_suite_order,
    order_levels,
)
from gradatlas.reports.pdf import render_pdf
from gradatlas.reports.sections import SECTIONS, build_document
from gradatlas.reports.stats import band, mean_ci, wilson

OUTCOMES = ("converged", "unconverged", "stalled", "vanished", "dead", "diverged", "exploded")
# The report's sections in order; their numbers are their places (1-based), as a reader sees them.
SECTION_TITLES = [
    "Overview",
    "Outcome rates",
    "Convergence",
    "Gradient profiles",
    "Factor effects",
    "Leaderboard",
    "Threshold sensitivity",
    "Methods",
]
HEADINGS = [f"{number}. {title}" for number, title in enumerate(SECTION_TITLES, start=1)]
SUITE = """\
name: report-test
description: Two depths x two activations x two inits on digits, a tiny budget, thresholds set
  so that every outcome occurs.
dataset: {name: digits}
model: {family: mlp, width: 16}
grid:
  depth: [2, 8]
  activation: [relu, sigmoid]
  init: [kaiming_normal, {name: normal, std: 1.0}]
seeds: 2
train: {steps: 60, batch_size: 64, optimizer: momentum, lr: 0.05, eval_every: 20}
instrument: {every: 5, max_points: 60, probe_batch: 64}
outcomes: {target_accuracy: 0.5, explode_grad_norm: 1000.0, vanish_ratio: 0.01}
"""


# -- a real store, made once ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """16 real trials (8 cells x 2 seeds, ~0.2 s each), then one trial run again with --force
    so the store holds an older finished run the report must set aside."""
    from gradatlas.runners.sweep import run_suite
    from gradatlas.suites import load_suite
    from tests.conftest import new_store

    root = tmp_path_factory.mktemp("report-store")
    suite_path = root / "report-test.yaml"
    suite_path.write_text(SUITE)
    uri = new_store(root / "mlflow.db")
    suite = load_suite(str(suite_path))
    run_suite(suite, uri, stream=io.StringIO())
    time.sleep(0.01)  # the re-run must start in a later millisecond than the original
    run_suite(suite, uri, force=True, limit=1, stream=io.StringIO())
    return {"uri": uri, "suite": str(suite_path), "name": suite.name, "root": root}


@pytest.fixture(scope="session")
def report(store: dict[str, Any]) -> dict[str, Path]:
    """The report, built from the suite *path* (resolved to its experiment by name)."""
    out = store["root"] / "report"
    html_path, pdf_path = build_report(store["suite"], tracking_uri=store["uri"], out_dir=out)
    return {"html": html_path, "pdf": pdf_path}


def mlflow_rates(uri: str, name: str) -> tuple[dict[str, Counter], int]:
    """Outcome counts per cell straight from MLflow: finished trial runs, newest per trial id.
    Written against the record contract (docs/record.md), independently of the report's code."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    runs, token = [], None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            "tags.`gradatlas.kind` = 'trial'",
            max_results=500,
            page_token=token,
        )
        runs += page
        token = page.token
        if not token:
            break
    newest: dict[str, Any] = {}
    finished = [r for r in runs if r.info.status == "FINISHED"]
    for r in finished:
        tid = r.data.tags["gradatlas.trial_id"]
        if tid not in newest or r.info.start_time > newest[tid].info.start_time:
            newest[tid] = r
    per_cell: dict[str, Counter] = defaultdict(Counter)
    for r in newest.values():
        per_cell[r.data.tags["gradatlas.cell_id"]][r.data.tags["gradatlas.outcome"]] += 1
    return per_cell, len(finished) - len(newest)


class _Tables(HTMLParser):
    """Collects every <table data-table=...>: rows of (row attrs, [(cell attrs, text)])."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[dict[str, str], list[tuple[dict[str, str], str]]]]] = {}
        self._table: str | None = None
        self._row: tuple[dict[str, str], list] | None = None
        self._cell: dict[str, str] | None = None
        self._text: list[str] = []
        self.tags: Counter = Counter()
        self.urls: list[str] = []
        self.headings: list[str] = []
        self._h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags[tag] += 1
        for key in ("src", "href", "xlink:href", "action", "poster", "data"):
            if key in a and tag != "td":
                self.urls.append(a[key])
        if tag == "h2":
            self._h2, self._text = True, []
        if tag == "table":
            self._table = a.get("data-table", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = (a, [])
        elif tag == "td" and self._row is not None:
            self._cell, self._text = a, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._h2:
            self.headings.append("".join(self._text).strip())
            self._h2 = False
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row[1].append((self._cell, " ".join("".join(self._text).split())))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._row[1]:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def parse(html_text: str) -> _Tables:
    p = _Tables()
    p.feed(html_text)
    return p


def wilson_ref(k: int, n: int) -> tuple[float, float]:
    """Wilson score interval, written out again here so the test does not trust stats.py."""
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# -- end to end ----------------------------------------------------------------------------------
@pytest.mark.e2e
def test_table_rates_equal_rates_recomputed_from_mlflow(store, report) -> None:
    expected, set_aside = mlflow_rates(store["uri"], store["name"])
    page = parse(report["html"].read_text(encoding="utf-8"))
    rows = page.tables["cell-rates"]
    assert {r[0]["data-cell-id"] for r in rows} == set(expected)
    checked = 0
    for row_attrs, cells in rows:
        counts = expected[row_attrs["data-cell-id"]]
        n = sum(counts.values())
        rate_cells = {c["data-outcome"]: (c, text) for c, text in cells if "data-outcome" in c}
        assert set(rate_cells) == set(OUTCOMES)
        for outcome, (attrs, text) in rate_cells.items():
            k = counts.get(outcome, 0)
            assert (int(attrs["data-k"]), int(attrs["data-n"])) == (k, n), (outcome, row_attrs)
            assert float(attrs["data-rate"]) == pytest.approx(k / n)
            lo, hi = wilson_ref(k, n)
            shown = re.fullmatch(r"(\d+)% \[(\d+)–(\d+)\]", text)
            assert shown, text
            assert int(shown.group(1)) == round(100 * k / n)
            assert int(shown.group(2)) == pytest.approx(100 * lo, abs=0.51)
            assert int(shown.group(3)) == pytest.approx(100 * hi, abs=0.51)
            checked += 1
    assert checked == len(OUTCOMES) * len(expected)
    # Every outcome the runner can produce is in this store, so every column was exercised.
    # (All but diverged: a finite loss that ends well above its start is not in this tiny grid;
    # tests/test_outcome.py covers it.)
    assert {o for c in expected.values() for o in c} == set(OUTCOMES) - {"diverged"}
    assert set_aside == 1


@pytest.mark.e2e
def test_report_says_how_many_runs_it_set_aside(report) -> None:
    text = report["html"].read_text(encoding="utf-8")
    assert "1 older finished run of trial ids that were run again set aside" in text


@pytest.mark.e2e
def test_html_is_self_contained_and_has_every_section(report) -> None:
    text = report["html"].read_text(encoding="utf-8")
    page = parse(text)
    assert page.headings == HEADINGS
    assert page.tags["script"] == page.tags["link"] == page.tags["img"] == 0
    assert page.tags["svg"] >= 7  # heatmaps, curves, steps, profiles, norms, effects
    assert all(u.startswith("#") for u in page.urls), page.urls  # in-page anchors only
    assert "default-src 'none'" in text  # and a CSP that would block any fetch anyway
    assert "@import" not in text and "url(http" not in text
    # The rules are printed verbatim from the code that applied them, with the thresholds.
    from gradatlas.runners import outcome

    first_rule = outcome.__doc__.strip().splitlines()[0]
    assert first_rule in text
    assert 'data-table="thresholds"' in text and "explode_grad_norm" in text
    assert "gradatlas run report-test.yaml" in text  # not built in: the archived file is shown


def _chromium() -> str | None:
    return next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )


def _high_fd(fd: int) -> int:
    """Move a pipe end above the fds the child will use (3 and 4)."""
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


def visit_in_chromium(url: str, profile: Path, timeout: float = 60.0) -> dict[str, list]:
    """Open ``url`` in headless Chromium, driven over the DevTools pipe (stdlib only), and
    return every request it made and every console error, exception or error log entry."""
    exe = _chromium()
    assert exe
    cmd_r, cmd_w = (_high_fd(fd) for fd in os.pipe())  # we write commands, Chromium reads fd 3
    evt_r, evt_w = (_high_fd(fd) for fd in os.pipe())  # Chromium writes fd 4, we read events

    def child_fds() -> None:
        os.dup2(cmd_r, 3)
        os.dup2(evt_w, 4)

    proc = subprocess.Popen(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ],
        pass_fds=(3, 4),
        preexec_fn=child_fds,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(cmd_r)
    os.close(evt_w)
    buf, ids = b"", iter(range(1, 10_000))
    seen: dict[str, list] = {"requests": [], "errors": []}
    deadline = time.monotonic() + timeout

    def send(method: str, params: dict | None = None, session: str | None = None) -> int:
        msg_id = next(ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(cmd_w, json.dumps(msg).encode() + b"\0")
        return msg_id

    def pump(until: Any, stop_at: float) -> dict | None:
        """Read messages (recording events) until one satisfies ``until`` or time is up."""
        nonlocal buf
        while True:
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                _record(msg, seen)
                if until(msg):
                    return msg
            left = stop_at - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([evt_r], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(evt_r, 1 << 16)
                if not chunk:
                    return None
                buf += chunk

    def call(method: str, params: dict | None = None, session: str | None = None) -> dict:
        msg_id = send(method, params, session)
        reply = pump(lambda m: m.get("id") == msg_id, deadline)
        if reply is None:
            raise TimeoutError(f"Chromium did not answer {method}")
        return reply.get("result", {})

    try:
        tid = call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = call("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        for domain in ("Network", "Runtime", "Log", "Page"):
            call(f"{domain}.enable", session=session)
        call("Page.navigate", {"url": url}, session=session)
        if pump(lambda m: m.get("method") == "Page.loadEventFired", deadline) is None:
            raise TimeoutError("the page did not finish loading")
        pump(lambda m: False, min(deadline, time.monotonic() + 1.5))  # late messages
        send("Browser.close")
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(cmd_w)
        os.close(evt_r)
    return seen


def _record(msg: dict, seen: dict[str, list]) -> None:
    method, params = msg.get("method"), msg.get("params", {})
    if method == "Network.requestWillBeSent":
        seen["requests"].append(params["request"]["url"])
    elif method == "Runtime.exceptionThrown":
        seen["errors"].append(params["exceptionDetails"].get("text"))
    elif method == "Runtime.consoleAPICalled" and params.get("type") in (
        "error",
        "assert",
        "warning",
    ):
        seen["errors"].append([a.get("value") for a in params.get("args", [])])
    elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
        seen["errors"].append(params["entry"].get("text"))


@pytest.mark.e2e
@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (.ci/run installs it)")
def test_html_opens_in_chromium_without_errors_or_requests(report, tmp_path: Path) -> None:
    url = report["html"].as_uri()
    seen = visit_in_chromium(url, tmp_path / "profile")
    assert url in seen["requests"]  # the instrumentation works: the page load itself was seen
    leaving = [u for u in seen["requests"] if u != url and not u.startswith("data:")]
    assert leaving == []
    assert seen["errors"] == []


@pytest.mark.e2e
@pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftoppm, pdftotext) is not installed",
)
def test_pdf_renders_to_pages_and_its_text_extracts(report, store, tmp_path: Path) -> None:
    subprocess.run(
        ["pdftoppm", "-png", "-r", "30", str(report["pdf"]), str(tmp_path / "p")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pages = sorted(tmp_path.glob("p-*.png"))
    assert len(pages) >= 4
    assert all(p.stat().st_size > 1000 for p in pages)
    text = subprocess.run(
        ["pdftotext", "-layout", str(report["pdf"]), "-"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for heading in HEADINGS:
        assert heading in text
    assert f"gradatlas report: {store['name']}" in text
    assert "explode_grad_norm" in text and "Wilson" in text
    # The same table as the HTML: the first cell's converged rate appears in the PDF's text.
    page = parse(report["html"].read_text(encoding="utf-8"))
    first = page.tables["cell-rates"][0][1]
    rate_text = next(t for c, t in first if c.get("data-outcome") == "converged")
    assert rate_text.replace(" ", "") in text.replace(" ", "")
    assert "Figure 1." in text


@pytest.mark.e2e
def test_cli_report_writes_to_the_default_folder(store, tmp_path, monkeypatch, capsys) -> None:
    from gradatlas.app.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["report", store["name"], "--tracking-uri", store["uri"]]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "runs" / "reports" / store["name"]
    assert f"HTML report: {folder / 'index.html'}" in out
    assert f"PDF report:  {folder / 'report.pdf'}" in out
    assert (folder / "report.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.e2e
def test_unknown_target_is_a_clean_usage_error(store, capsys) -> None:
    from gradatlas.app.cli import main

    assert main(["report", "no-such-suite", "--tracking-uri", store["uri"]]) == 2
    assert "no MLflow experiment named 'no-such-suite'" in capsys.readouterr().err


def test_missing_store_is_a_usage_error_and_is_not_created(tmp_path, monkeypatch, capsys) -> None:
    from gradatlas.app.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["report", "quickstart"]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.e2e
def test_a_failing_pdf_worker_falls_back_to_drawing_here(store, tmp_path, monkeypatch) -> None:
    import gradatlas.reports.build as build

    crash = "import sys; sys.stdin.read(); sys.stderr.write('worker died'); sys.exit(3)"
    monkeypatch.setattr(build, "WORKER_ARGS", ["-c", crash])
    html_path, pdf_path = build_report(store["name"], tracking_uri=store["uri"], out_dir=tmp_path)
    assert pdf_path.read_bytes().startswith(b"%PDF") and html_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "report.pdf"]


@pytest.mark.e2e
def test_rendering_emits_no_warnings(store, tmp_path: Path) -> None:
    """Charts drawn in this process (the CLI draws the PDF in a worker, out of pytest's view)."""
    from gradatlas.reports.load import load_experiment

    exp = load_experiment(store["name"], store["uri"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc = build_document(exp, heatmap_factors=("init", "depth"), curve_factor="init")
        render_html(doc)
        render_pdf(doc, tmp_path / "r.pdf")
    assert exp.set_aside == 1 and len(exp.trials) == 16


# -- fast: statistics ----------------------------------------------------------------------------
def test_wilson_matches_the_formula_and_handles_the_edges() -> None:
    for k, n in [(0, 2), (1, 2), (2, 2), (5, 10), (1, 1000), (999, 1000)]:
        lo, hi = wilson(k, n)
        assert (float(lo), float(hi)) == pytest.approx(wilson_ref(k, n), abs=1e-12)
    lo, hi = wilson(0, 5)
    assert float(lo) == 0.0 and 0 < float(hi) < 1
    lo, hi = wilson(5, 5)
    assert float(hi) == 1.0 and 0 < float(lo) < 1
    assert np.isnan(wilson(0, 0)[0])
    lows = wilson([1, 2], [2, 4])[0]  # vectorised: each pair its own interval
    assert lows == pytest.approx([wilson_ref(1, 2)[0], wilson_ref(2, 4)[0]])


def test_mean_interval_and_curve_band() -> None:
    mean, lo, hi, n = mean_ci([0.5, 0.7, float("nan")], bounds=(0, 1))
    assert (mean, n) == (pytest.approx(0.6), 2) and 0 <= lo < 0.6 < hi <= 1
    assert np.isnan(mean_ci([0.4])[1])
    # A curve that stops early (an explosion) is not extended past its last step.
    b = band([([0, 10, 20], [1.0, 2.0, 3.0]), ([0, 10], [3.0, None])])
    assert b is not None
    assert b["count"].tolist() == [2, 1, 1]
    assert b["median"].tolist() == [2.0, 2.0, 3.0]


def test_level_order_is_numeric_when_levels_are_numbered() -> None:
    assert order_levels(["d20", "d3", "d20", "d100"]) == ["d3", "d20", "d100"]
    assert order_levels(["normal(std=1)", "normal(std=0.5)"]) == [
        "normal(std=0.5)",
        "normal(std=1)",
    ]
    assert order_levels(["relu", "tanh", "gelu"]) == ["relu", "tanh", "gelu"]
    assert order_levels(["wd0", "wd1e-4-dec"]) == ["wd0", "wd1e-4-dec"]


def test_newest_finished_run_per_trial_is_kept() -> None:
    from gradatlas.store import StoredRun
    from gradatlas.store.base import newest_per_trial

    def run(rid: str, tid: str, start: int) -> StoredRun:
        return StoredRun(rid, start_time=start, tags={"gradatlas.trial_id": tid})

    kept, aside = newest_per_trial(
        [run("a", "t1", 5), run("b", "t1", 9), run("c", "t2", 1), run("d", "t1", 7)]
    )
    assert [r.run_id for r in kept] == ["c", "b"] and aside == 2


# -- fast: sections on records made in memory ----------------------------------------------------
def fake_experiment(factors: dict[str, list[str]], seeds: int = 2, name: str = "fake"):
    """An experiment of records of the trial.json shape (small curves and profiles)."""
    return experiment_from_records(fake_entries(factors, seeds), name=name)


def fake_entries(factors: dict[str, list[str]], seeds: int = 2) -> list[tuple[dict, dict]]:
    """(run metadata, trial record) pairs, one cell per level combination, outcomes by a rule."""
    import itertools

    rng = np.random.default_rng(0)
    entries = []
    names = list(factors)
    for i, combo in enumerate(itertools.product(*factors.values())):
        for seed in range(seeds):
            outcome = OUTCOMES[(i + seed) % len(OUTCOMES)]
            steps = list(range(0, 100, 10)) if outcome != "exploded" else [0]
            depth = 3 + i % 2
            record = {
                "trial_id": f"t{i}-{seed}",
                "cell_id": f"c{i}",
                "cell": "-".join(combo) or "all",
                "seed": seed,
                "factors": dict(zip(names, combo, strict=True)),
                "outcome": {
                    "label": outcome,
                    "reason": "rule",
                    "thresholds": {
                        "target_accuracy": 0.5,
                        "explode_grad_norm": 1e5,
                        "vanish_grad_norm": 1e-7,
                    },
                },
                "summary": {
                    "final_val_acc": float(rng.uniform(0.1, 0.9)),
                    "steps_to_target": 40.0 if outcome == "converged" else None,
                    "steps_run": float(steps[-1] + 1),
                },
                "task": "classification",
                "num_classes": 10,
                "config": {"dataset": {"name": "digits"}, "seed": seed},
                "curves": {
                    "train": {
                        "step": steps,
                        "loss": [2.3 / (1 + s / 50) for s in steps],
                        "grad_norm": [1.0] * len(steps),
                        "lr": [0.1] * len(steps),
                    },
                    "eval": {"step": steps, "val_acc": [0.1 + s / 200 for s in steps]},
                    "layers": {"step": steps, "grad_norm": [[1.0] * depth for _ in steps]},
                },
                "profiles": {
                    "init": {
                        "grad_norm": [10.0**-j for j in range(depth)],
                        "saturation": [0.1] * (depth - 1),
                        "dead": [None] * (depth - 1),
                    }
                },
            }
            entries.append(({"run_id": f"r{i}-{seed}", "start_time": len(entries)}, record))
    return entries


def notes(doc) -> str:
    from gradatlas.reports.document import Para

    return " | ".join(
        b.text for s in doc.sections for b in s.blocks if isinstance(b, Para) and b.note
    )


def test_one_seed_and_one_factor_are_said_not_hidden() -> None:
    doc = build_document(fake_experiment({"depth": ["d2", "d8"]}, seeds=1))
    text = notes(doc)
    assert "Each cell has one seed" in text
    assert "Only depth varies" in text
    assert "One seed per cell: accuracies have no interval" in text
    assert "The heatmaps were asked for depth x activation, but activation is not" in text
    render_html(doc)  # every block still renders


def test_single_cell_suite_skips_what_needs_factors() -> None:
    doc = build_document(fake_experiment({}, seeds=3))
    text = notes(doc)
    assert "No heatmaps: this suite varies no factor" in text
    assert "Skipped: this suite varies no factor" in text
    # Claims, tuning and a paper's claim apply only to suites that have them; this one has none.
    every_report = [s.title for s in SECTIONS if not hasattr(s, "applies")]
    assert [s.title for s in doc.sections] == every_report == SECTION_TITLES


def test_heatmaps_fall_back_to_the_factors_the_suite_has() -> None:
    exp = fake_experiment(
        {"width": ["w8", "w32"], "optimizer": ["sgd", "adam"], "lr": ["0.1", "0.01"]}
    )
    doc = build_document(exp, heatmap_factors=("depth", "activation"))
    assert "they use width and optimizer instead" in notes(doc)
    rates = next(s for s in doc.sections if s.title == "Outcome rates")
    heat = [b for b in rates.blocks if getattr(b, "name", "") == "heat-exploded"]
    assert heat and heat[0].draw.keywords["spec"].facets == ["lr = 0.01", "lr = 0.1"]
    html_text = render_html(doc)
    assert html_text.count("<svg") >= 5


def test_cells_that_share_levels_are_listed_apart_and_said() -> None:
    """Runs of an older version of the suite (another fixed setting, so other cell ids) with the
    same factor levels: the table must not merge them silently."""
    import copy

    entries = fake_entries({"depth": ["d2", "d8"], "activation": ["relu", "tanh"]})
    older = copy.deepcopy(entries[:2])  # cell c0, both seeds, as if run with another lr
    for meta, record in older:
        meta["run_id"] += "-old"
        record["cell_id"], record["trial_id"] = "c0-old", record["trial_id"] + "-old"
    exp = experiment_from_records(entries + older, name="fake")
    doc = build_document(exp)
    assert "2 cells share all their factor levels with another cell" in notes(doc)
    page = parse(render_html(doc))
    ids = [r[0]["data-cell-id"] for r in page.tables["cell-rates"]]
    assert sorted(ids) == ["c0", "c0-old", "c1", "c2", "c3"]


def test_suite_level_order_wins_and_unknown_levels_follow() -> None:
    labels = ["relu", "sigmoid", "tanh", "gelu"]
    assert in_suite_order(labels, ["tanh", "relu", "sigmoid"]) == [
        "tanh",
        "relu",
        "sigmoid",
        "gelu",
    ]
    assert in_suite_order(labels, None) == labels
