"""The ``gradatlas`` command line.

    gradatlas run SUITE          train every trial not yet recorded, log to MLflow
    gradatlas validate SUITE     check a suite without running anything
    gradatlas plan SUITE         list the trials a suite expands to (--json: one per line)
    gradatlas ls [KIND]          list registered factors, datasets, models and built-in suites
    gradatlas report SUITE       build the HTML + PDF report from MLflow
    gradatlas export SUITE       write the results table (one row per trial) as CSV or Parquet
    gradatlas repro ID           rerun one recorded trial and compare it with its record
    gradatlas verdicts SUITE     the claims' verdicts from MLflow (--json: one per line)
    gradatlas calibrate          simulate null audits through the verdict rules: error and power

Bad input exits with status 2 and a message naming the file, the field and the allowed values.
Heavy imports (Lightning, MLflow) happen only in the commands that need them, so ``validate``,
``plan`` and ``ls`` answer quickly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from gradatlas import __version__
from gradatlas.errors import EXIT_USAGE, UserInputError

PLAN_CELLS_SHOWN = 200  # beyond this the cell list is cut (an atlas has thousands)

LS_KINDS = (
    "activations",
    "inits",
    "norms",
    "optimizers",
    "schedules",
    "datasets",
    "models",
    "factors",
    "suites",
)


def _add_tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./runs/mlflow.db)",
    )


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override one field of the suite, e.g. --set train.epochs=2 --set "
        "grid.depth=[3,5] (YAML values; validated like the file; repeatable)",
    )
    p.add_argument(
        "--seeds", metavar="N|LIST", help="shorthand for --set seeds=N (a count or [0,7,42])"
    )


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = [f"seeds={args.seeds}"] if getattr(args, "seeds", None) is not None else []
    return [*args.overrides, *extra]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradatlas",
        description="Which combinations of depth, activation, init, normalization, regularization "
        "and optimizer train, and which vanish or explode: measured, tracked in MLflow, reported.",
        epilog="SUITE is a path to a YAML suite or the name of a built-in one "
        "(see `gradatlas ls suites`). Start with: gradatlas run quickstart",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gradatlas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run a suite's trials and record them in MLflow",
        description="Run every trial of SUITE that has no finished run in the "
        "suite's MLflow experiment yet (so a killed sweep resumes where it "
        "stopped). Ctrl-C stops the current trial and marks it killed.",
    )
    run.add_argument("suite", metavar="SUITE")
    _add_overrides(run)
    _add_tracking(run)
    run.add_argument("--force", action="store_true", help="rerun trials already recorded")
    run.add_argument(
        "--accelerator",
        default="auto",
        choices=["auto", "cpu", "gpu"],
        help="where to train (default: auto, a GPU if one is visible)",
    )
    run.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="run N of the pending trials, spread over the grid (every factor's levels early, "
        "one seed per cell before a second), not the first N in grid order",
    )
    run.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="torch threads per worker (default: 1 per Ray worker on CPU, and in this process "
        "when --workers auto chose it; with --workers 1, the cores this process may use, at "
        "most 4)",
    )
    run.add_argument(
        "--workers",
        default="1",
        metavar="N|auto",
        help="parallel workers (default 1: this process, no Ray). N > 1 or auto starts a local "
        "Ray instance: auto = one per GPU, else one per physical core",
    )
    run.add_argument(
        "--gpus-per-worker",
        type=float,
        metavar="F",
        help="GPU share of each Ray worker, e.g. 0.25 packs 4 small trials on one GPU",
    )
    run.add_argument(
        "--ray-address",
        metavar="ADDR|auto",
        help="join an existing Ray cluster (started with `ray start --head`) instead of a "
        "local instance; $RAY_ADDRESS works too",
    )
    batch = run.add_mutually_exclusive_group()
    batch.add_argument(
        "--batch-seeds",
        metavar="K|auto",
        help="seeds of a cell trained together as one stacked model (default: the suite's "
        "execution.batch_seeds, auto = every pending seed that fits the device's memory)",
    )
    batch.add_argument(
        "--no-batch",
        action="store_true",
        help="train every seed on its own (same as --batch-seeds 1); the trial ids and "
        "records are the same either way",
    )
    run.add_argument(
        "--no-fuse",
        action="store_true",
        help="one work unit per cell (its seeds) instead of one per shape: cells that differ "
        "only in seed, init, lr, schedule, optimizer options, weight decay, dropout, clipping "
        "bound or label smoothing otherwise train as members of one stacked model "
        "(execution.fuse); the trial ids and records are the same either way",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the trials recorded as failed (they are skipped otherwise)",
    )
    run.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="where a suite's tune block keeps its Optuna studies, so tuning resumes after a "
        "kill (default: optuna.db beside a SQLite MLflow store, e.g. "
        "sqlite:///./runs/optuna.db; with an MLflow server it must be given, e.g. "
        "postgresql://HOST/optuna). Only this driver writes it",
    )

    val = sub.add_parser(
        "validate",
        help="check a suite file; run nothing",
        description="Validate SUITE: schema, registry names, options and "
        "combinations. Exit 0 if valid, 2 with every problem listed if not.",
    )
    val.add_argument("suite", metavar="SUITE")
    _add_overrides(val)

    plan = sub.add_parser(
        "plan",
        help="show the trials a suite expands to",
        description="Expand SUITE and print the trial count and factor table; "
        "--json prints one JSON object per trial (id, cell, resolved config).",
    )
    plan.add_argument("suite", metavar="SUITE")
    _add_overrides(plan)
    plan.add_argument("--json", action="store_true", help="one JSON line per trial")
    plan.add_argument(
        "--measure",
        nargs="?",
        const="auto",
        choices=["auto", "cpu", "gpu"],
        metavar="DEVICE",
        help="measure each listed unit's memory per stacked member on DEVICE (auto|cpu|gpu; "
        "default auto) as a worker there would, and how many members it would stack together "
        "(imports torch and builds the data: seconds, not the plan's usual instant)",
    )

    ls = sub.add_parser(
        "ls",
        help="list what can be named in a suite",
        description="List registered names (read from the same registries that validation uses).",
    )
    ls.add_argument(
        "kind",
        nargs="?",
        choices=LS_KINDS,
        metavar="KIND",
        help=f"one of: {', '.join(LS_KINDS)} (default: all)",
    )

    rep = sub.add_parser(
        "report",
        help="build the HTML and PDF report from MLflow",
        description="Build DIR/index.html and DIR/report.pdf for a suite (or "
        "an MLflow experiment name) from what MLflow holds.",
    )
    rep.add_argument("target", metavar="SUITE_OR_EXPERIMENT")
    rep.add_argument("--out", metavar="DIR", help="output folder (default: runs/reports/NAME)")
    rep.add_argument(
        "--by",
        metavar="FACTOR",
        help="the factor to compare: the heatmaps' columns and the curves' colours "
        "(default: depth x activation heatmaps, curves per activation)",
    )
    rep.add_argument(
        "--facet",
        metavar="FACTOR",
        help="small multiples: one heatmap panel and one row of curves per level of FACTOR",
    )
    rep.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="FACTOR=LEVEL",
        help="only trials at this level, e.g. --where depth=d20 (repeatable: levels of one "
        "factor are alternatives, different factors must all match)",
    )
    rep.add_argument(
        "--cell",
        dest="cells",
        action="append",
        default=[],
        metavar="CELL",
        help="also draw this cell's curves, one line per seed (a cell label such as "
        "d20-sigmoid-xavier_normal, or a cell id; repeatable)",
    )
    rep.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="only N cells, spread over every factor's levels (a quick look at a big store)",
    )
    _add_tracking(rep)

    export = sub.add_parser(
        "export",
        help="write the results table (one row per trial) as CSV or Parquet",
        description="Write the table gradatlas.results() returns for a suite (or an MLflow "
        "experiment name): one row per trial, the newest finished run of each, with its factor "
        "levels, outcome, seed, summary metrics and ids.",
    )
    export.add_argument("target", metavar="SUITE_OR_EXPERIMENT")
    export.add_argument(
        "--format",
        dest="fmt",
        choices=["csv", "parquet"],
        help="file format (default: the --out suffix if it is .csv or .parquet, else csv; "
        "parquet needs pyarrow and keeps the level order)",
    )
    export.add_argument(
        "--out", metavar="PATH", help="output file (default: runs/exports/NAME.csv|.parquet)"
    )
    _add_tracking(export)

    repro = sub.add_parser(
        "repro",
        help="rerun one recorded trial from its record and compare (PASS/FAIL)",
        description="Rerun one recorded trial from the resolved config in its trial.json (no "
        "suite file needed), the way it ran (device, torch threads, batched seeds), and compare "
        "every curve point, summary metric, the outcome and the init profiles with the record: "
        "bitwise where device, thread count and versions match, else within --tolerance. Exit "
        "0 on PASS, 1 on FAIL, 2 for an unknown id.",
    )
    repro.add_argument(
        "target",
        metavar="RUN_OR_TRIAL_ID",
        help="an MLflow run id, or a trial id (its newest FINISHED trial run)",
    )
    repro.add_argument(
        "--experiment", metavar="NAME", help="look for a trial id in this experiment only"
    )
    repro.add_argument(
        "--threads", type=_positive_int, metavar="N", help="torch threads (default: as recorded)"
    )
    repro.add_argument(
        "--device", choices=["cpu", "cuda"], help="where to rerun (default: as recorded)"
    )
    repro.add_argument(
        "--tolerance",
        type=float,
        default=None,
        metavar="REL",
        help="relative tolerance used when the environment differs (default: 1e-5)",
    )
    repro.add_argument(
        "--alone",
        action="store_true",
        help="rerun a batched-seeds trial by itself instead of with the seeds it trained with",
    )
    repro.add_argument("--json", action="store_true", help="print the comparison as JSON")
    _add_tracking(repro)

    ui = sub.add_parser(
        "ui",
        help="start the MLflow UI on the store, on 127.0.0.1 (what `make ui` runs)",
        description="Start MLflow's UI on the local store (or --tracking-uri) at "
        "http://127.0.0.1:PORT; with a suite or experiment name, print the link to its runs "
        "in the training view. A tracking server needs no UI started: its own URL is the UI.",
    )
    ui.add_argument("target", nargs="?", metavar="SUITE_OR_EXPERIMENT")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    _add_tracking(ui)

    verdicts = sub.add_parser(
        "verdicts",
        help="print the claims' verdicts from MLflow (--json: one JSON object per claim)",
        description="Evaluate the claims a suite declares on what MLflow holds and print one row "
        "per claim: verdict, metric, effect with its interval, Holm-adjusted p, seeds, minimum "
        "detectable effect, homogeneity p and whether it is a control. The same rows are "
        "attached to the suite's newest sweep run as verdicts.json.",
    )
    verdicts.add_argument("target", metavar="SUITE_OR_EXPERIMENT")
    verdicts.add_argument(
        "--json", action="store_true", help="one JSON object per claim (NaN as null)"
    )
    _add_tracking(verdicts)

    cal = sub.add_parser(
        "calibrate",
        help="simulate null audits through the verdict rules: familywise error and power",
        description="Simulate audits shaped like ours (5-20 claims, 4-32 seeds, 1-4 strata, "
        "rates and continuous metrics, shared seed effects) in which no claim is true, run the "
        "old and the new verdict rule on each, and report how often an audit gets a wrong "
        "verdict (with its 95% interval) and the power to support a real effect. Writes "
        "calibration.json, meta.json and calibration.md to --out.",
    )
    cal.add_argument(
        "--audits", type=_positive_int, metavar="N", help="null audits per scenario (default 2000)"
    )
    cal.add_argument(
        "--power-audits",
        type=int,
        metavar="N",
        help="audits per effect size for power (default 300; 0: no power)",
    )
    cal.add_argument(
        "--quick", action="store_true", help="200 null audits, 50 per effect size (a look, tests)"
    )
    cal.add_argument(
        "--out", metavar="DIR", help="default: runs/calibration (calibrate.DEFAULT_OUT)"
    )
    cal.add_argument(
        "--workers", type=_positive_int, default=2, metavar="N", help="processes (default 2)"
    )
    cal.add_argument(
        "--audit",
        metavar="SUITE",
        help="instead of simulating: relabel the arms of this suite's recorded audit at random "
        "and count false verdicts (writes relabel-<experiment>.json to --out)",
    )
    cal.add_argument(
        "--permutations",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="relabellings of the recorded audit (--audit; default 1000)",
    )
    cal.add_argument("--tracking-uri", metavar="URI", help="the store of --audit")
    cal.add_argument(
        "--resamples",
        type=_positive_int,
        metavar="N",
        help="bootstrap resamples passed to the rules (default 1000)",
    )
    cal.add_argument(
        "--scenario",
        dest="scenarios",
        action="append",
        metavar="NAME",
        help="only this scenario (repeatable; default: all)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        # `gradatlas plan x --json | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UserInputError as exc:
        for line in exc.render().splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # Ctrl-C while starting up: one line, not a traceback
        print("\ninterrupted; nothing was left half-written", file=sys.stderr)
        return getattr(exc, "exit_code", 130)


def entry_point() -> None:
    """The console script: Ctrl-C during imports (before ``main`` runs) is one line too."""
    try:
        code = main()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


# -- commands ------------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from gradatlas.suites import load_suite

    suite = load_suite(args.suite, _overrides(args))
    cells = len({t.cell_id for t in suite.trials})
    print(
        f"{suite.source}: valid: {len(suite.trials)} trials ({cells} cells x "
        f"{len(suite.spec.seed_list())} seeds)"
    )
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from gradatlas.suites import load_suite

    suite = load_suite(args.suite, _overrides(args))
    if args.json:
        for t in suite.trials:
            print(
                json.dumps(
                    {
                        "trial_id": t.trial_id,
                        "cell_id": t.cell_id,
                        "name": t.run_name,
                        "factors": t.factors,
                        "config": t.config,
                    },
                    sort_keys=True,
                )
            )
        return 0
    seeds = suite.spec.seed_list()
    cells = {t.cell_id: t for t in suite.trials}
    print(
        f"suite {suite.name} ({suite.source}): {len(suite.trials)} trials = {len(cells)} cells "
        f"x {len(seeds)} seeds {seeds}"
    )
    print(
        f"dataset {', '.join(dict.fromkeys(t.spec.dataset.name for t in suite.trials))}, "
        f"model {suite.trials[0].spec.model.family}, "
        f"budget {_budget(suite)}"
    )
    if suite.spec.grid:
        print("\nfactors:")
        first = next(iter(cells.values()))
        for name in first.factors:
            levels = list(dict.fromkeys(t.factors.get(name, "-") for t in cells.values()))
            print(f"  {name:<13} {len(levels):>3} levels: {', '.join(levels)}")
    if suite.spec.tune is not None:
        from gradatlas.runners.tuning.plan import tuning_plan

        print("")
        for line in tuning_plan(suite).describe():
            print(line)
    from gradatlas.app.cost import estimate_cost, format_cost, format_cpu
    from gradatlas.runners.executor import make_units, physical_cores

    print(f"\n{format_cost(estimate_cost(suite.trials))}")
    execution = suite.spec.execution
    fuse = execution.fuse == "auto"
    by_shape = make_units(suite.trials, fuse=True)  # made once: seconds at atlas scale
    print(format_cpu(suite.trials, physical_cores(), fuse, execution.batch_seeds, by_shape))
    for line in _describe_units(suite, by_shape if fuse else None, measure=args.measure):
        print(line)
    shown = list(cells.values())
    print(f"\ncells ({len(shown)}):")
    for t in shown[:PLAN_CELLS_SHOWN]:
        print(f"  {t.cell_id}  {t.cell or '(single cell)'}")
    if len(shown) > PLAN_CELLS_SHOWN:
        print(f"  ... and {len(shown) - PLAN_CELLS_SHOWN} more (--json lists every trial)")
    return 0


def _describe_units(
    suite: Any, units: list[Any] | None = None, measure: str | None = None
) -> list[str]:
    """How the trials would be packed into work units (``execution.fuse``): one per shape when
    fused, one per cell otherwise, with what varies inside each fused unit. How many members
    train together at once is decided on the worker from its device's memory
    (``runners.packing``); ``measure`` (an accelerator) runs that measurement here for each
    listed unit. ``units``: the units already made with the suite's ``execution.fuse``."""
    from gradatlas.runners.executor import make_units

    fuse = suite.spec.execution.fuse == "auto"
    units = units if units is not None else make_units(suite.trials, fuse=fuse)
    sizes = sorted(len(u.trials) for u in units)
    cells = len({t.cell_id for t in suite.trials})
    how = "one per shape (execution.fuse: auto)" if fuse else "one per cell (execution.fuse: off)"
    lines = [
        f"\nwork units: {len(units)}, {how}; {cells} cells; trials per unit: "
        f"{sizes[0]}-{sizes[-1]} (median {sizes[len(sizes) // 2]})"
    ]
    for unit in units[:PLAN_CELLS_SHOWN]:
        first = unit.trials[0]
        varies = [
            name for name in first.factors if len({t.factors.get(name) for t in unit.trials}) > 1
        ]
        if len({t.spec.seed for t in unit.trials}) > 1:
            varies.append("seed")
        shared = {k: v for k, v in first.factors.items() if k not in varies}
        label = " ".join(f"{k}={v}" for k, v in shared.items()) or "(single cell)"
        lines.append(
            f"  {len(unit.trials):>4} trials  {label}"
            + (f"  [varies: {', '.join(varies)}]" if varies else "")
        )
        if measure is not None:
            lines.append(f"{'':>8}{_measured_packing(unit, suite, measure)}")
    if len(units) > PLAN_CELLS_SHOWN:
        lines.append(f"  ... and {len(units) - PLAN_CELLS_SHOWN} more units")
    return lines


def _measured_packing(unit: Any, suite: Any, accelerator: str) -> str:
    """One line: the unit's measured memory line and the members per stacked model a worker
    on ``accelerator`` (this machine's device, this process's whole share) would choose."""
    from gradatlas.runners import packing
    from gradatlas.runners.batching import MAX_AUTO, unbatchable
    from gradatlas.runners.trial import pick_device

    why = unbatchable(unit.trials[0])
    if why is not None:
        return f"trains one trial at a time: {why}"
    device = pick_device(accelerator)
    setting = suite.spec.execution.batch_seeds
    cap = MAX_AUTO if setting == "auto" else int(setting)
    cost = packing.measure(unit.trials, device)
    k = packing.members_per_group(unit.trials, device, cap)
    mib = 2**20
    return (
        f"measured on {device.type} ({cost.how}): {cost.per_member_bytes / mib:.2f} MiB per "
        f"member + {cost.fixed_bytes / mib:.2f} MiB; {k} per stacked model "
        f"(budget {packing.budget(device) / mib:,.0f} MiB, at most {cap})"
    )


def _budget(suite) -> str:
    tr = suite.trials[0].spec.train
    return f"{tr.epochs} epochs" if tr.epochs else f"{tr.steps} steps"


def cmd_ls(args: argparse.Namespace) -> int:
    from gradatlas.datasets import DATASETS
    from gradatlas.models import ACTIVATIONS, INITS, MODELS, NORMS
    from gradatlas.optim import OPTIMIZERS, SCHEDULES
    from gradatlas.suites import FACTORS, builtin_suites
    from gradatlas.suites.expand import read_yaml

    registries = {
        "activations": ACTIVATIONS,
        "inits": INITS,
        "norms": NORMS,
        "optimizers": OPTIMIZERS,
        "schedules": SCHEDULES,
        "datasets": DATASETS,
        "models": MODELS,
    }
    kinds = [args.kind] if args.kind else list(LS_KINDS)
    for kind in kinds:
        print(f"{kind}:")
        if kind in registries:
            reg = registries[kind]
            for name in reg.names():
                opts = ", ".join(
                    f"{k}={p.default!r}" if p.default is not p.empty else k
                    for k, p in reg.options(name).items()
                )
                print(f"  {name:<16} {reg.doc(name)}" + (f"  [{opts}]" if opts else ""))
        elif kind == "factors":
            for name, f in FACTORS.items():
                fixed = "dataset.name" if f.section == "dataset" else f"{f.section}.{name}"
                print(f"  {name:<16} ({fixed} -> {f.path}) {f.help}")
        else:
            for name, path in builtin_suites().items():
                _, data = read_yaml(path)
                desc = (data or {}).get("description", "").strip().splitlines()
                print(f"  {name:<16} {desc[0] if desc else ''}")
        if len(kinds) > 1:
            print()
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _count_or_auto(value: str, flag: str) -> int | str:
    """A command-line ``N|auto``: a positive integer or ``"auto"``, else exit 2 naming the flag."""
    if value == "auto":
        return "auto"
    try:
        return _positive_int(value)
    except (ValueError, argparse.ArgumentTypeError):
        raise UserInputError(
            f"{flag}: expected a positive integer or auto, got {value!r}"
        ) from None


def _make_executor(args: argparse.Namespace, suite: Any = None) -> Any:
    """In-process for one local worker (no Ray start-up), or for ``--workers auto`` when the
    suite's estimated work is too small to pay for Ray's start-up; else Ray."""
    from gradatlas.runners.executor import InProcessExecutor, RayExecutor, plan_workers

    address = args.ray_address or os.environ.get("RAY_ADDRESS") or None
    workers = _count_or_auto(str(args.workers), "--workers")
    if workers == 1 and not address:
        from gradatlas.runners.trial import default_threads

        threads = args.threads or default_threads()
        return InProcessExecutor(accelerator=args.accelerator, threads=threads)
    plan = plan_workers(
        workers,
        accelerator=args.accelerator,
        gpus_per_worker=args.gpus_per_worker,
        threads=args.threads,
    )
    if workers == "auto" and not address and plan.num_gpus == 0 and suite is not None:
        from gradatlas.app.cost import RAY_STARTUP_S, cpu_seconds, worth_ray

        # Priced as the sweep will group the trials (fused shapes, or a cell's seeds, stacked).
        fuse = not getattr(args, "no_fuse", False) and suite.spec.execution.fuse == "auto"
        batch = _batch_seeds(args) or suite.spec.execution.batch_seeds
        work = cpu_seconds(suite.trials, fuse=fuse, batch_seeds=batch)
        if not worth_ray(work, plan.workers):
            # One torch thread, as the estimate priced it and as a Ray worker would train: on
            # this 2-core machine the fused quickstart took 34.3 s at 1 thread and 33.8 s at 2
            # when idle, but 50 s vs 204 s with another process busy on one core (threads
            # that wait on a preempted sibling); --threads overrides.
            threads = args.threads or 1
            print(
                f"--workers auto: about {work:.0f} s of training, too little to pay for Ray's "
                f"start-up (~{RAY_STARTUP_S:.0f} s) on {plan.workers} workers: running in this "
                "process",
                file=sys.stderr,
            )
            return InProcessExecutor(accelerator=args.accelerator, threads=threads)
    return RayExecutor(plan, accelerator=args.accelerator, address=address)


def _batch_seeds(args: argparse.Namespace) -> int | str | None:
    """--no-batch / --batch-seeds K|auto, or None for the suite's own setting."""
    if args.no_batch:
        return 1
    if args.batch_seeds is None:
        return None
    return _count_or_auto(args.batch_seeds, "--batch-seeds")


def _check_dataset_files(suite: Any) -> None:
    """Missing dataset files are the suite's problem: said before anything is written (for
    every dataset the plan trains on: ``grid.dataset`` may vary it)."""
    from gradatlas.datasets import check_files

    datasets = {repr(t.spec.dataset.to_config()): t.spec.dataset for t in suite.trials}
    try:
        for ds in datasets.values():
            check_files(ds.name, ds.options)
    except UserInputError as exc:
        raise exc.located(source=suite.source) from None


def cmd_run(args: argparse.Namespace) -> int:
    import signal

    from gradatlas.record import ui_runs_path
    from gradatlas.runners.sweep import outcome_table, raise_interrupted, run_suite
    from gradatlas.store import open_store, resolve_tracking_uri
    from gradatlas.suites import load_suite

    # Everything is validated before anything is written.
    suite = load_suite(args.suite, _overrides(args))
    batch_seeds = _batch_seeds(args)
    _check_dataset_files(suite)
    uri = resolve_tracking_uri(args.tracking_uri)
    executor = None
    try:
        store = open_store(uri)  # a store that cannot be used is said before Ray starts
        # SIGTERM during start-up (Ray, imports) ends like Ctrl-C: one line, exit 143.
        signal.signal(signal.SIGTERM, raise_interrupted)
        executor = _make_executor(args, suite)
        summary = run_suite(
            suite,
            store,
            force=args.force,
            retry_failed=args.retry_failed,
            accelerator=args.accelerator,
            limit=args.limit,
            executor=executor,
            batch_seeds=batch_seeds,
            optuna_storage=args.optuna_storage,
            fuse=False if args.no_fuse else None,
        )
    except KeyboardInterrupt as exc:
        if executor is not None:
            executor.close()
        print(
            "\naborted; finished trials are recorded, rerun the same command to resume",
            file=sys.stderr,
        )
        return getattr(exc, "exit_code", 130)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if summary.tuning is not None:
        _print_tuning(summary.tuning)
    if summary.tuning is None or summary.tuning.complete:
        columns, rows = outcome_table(store, summary.suite or suite)
        _print_table(suite.name, columns, rows)
    print(f"\nMLflow store: {uri}  (experiment '{suite.name}', id {summary.experiment_id})")
    where = "" if args.tracking_uri is None else f" --tracking-uri {uri}"
    print(f"The report:   gradatlas report {suite.name}{where}   (HTML and PDF)")
    print(
        f"Open the UI:  gradatlas ui {suite.name}{where}   (or make ui; then "
        f"http://127.0.0.1:5000/{ui_runs_path(summary.experiment_id)})"
    )
    if summary.tuning is not None and (summary.tuning.trained or summary.tuning.reused):
        t = summary.tuning
        print(
            f"Tuning: {t.trained} tuning runs trained"
            + (f", {t.reused} told from their MLflow records (not retrained)" if t.reused else "")
            + f"; studies in {t.storage}"
        )
    if summary.ran:
        print(
            f"This run: {summary.ran} trials in {summary.wall_s:.1f}s on {summary.executor}; "
            f"in the trials, instrumentation {summary.instrument_s:.1f}s "
            f"({100 * summary.instrument_s / max(summary.trial_s, 1e-9):.1f}% of trial time), "
            f"MLflow logging {summary.logging_s:.1f}s (in the recorder process, alongside "
            "training)"
        )
    if summary.failures:
        print(f"\nFailed: {len(summary.failures)} trials raised (recorded FAILED, with traceback):")
        for failure in summary.failures[:20]:
            print(f"  {failure.trial.run_name}  [{failure.trial.trial_id}]  {failure.error}")
        if len(summary.failures) > 20:
            print(f"  ... and {len(summary.failures) - 20} more (MLflow: status FAILED)")
    if summary.lost_units:
        print(f"Lost: {summary.lost_units} units never returned; their trials stay pending.")
    if summary.duplicates:
        print(f"Skipped {summary.duplicates} results already recorded (a retried unit).")
    if summary.write_error:
        print(f"\nerror: {uri}: {summary.write_error}", file=sys.stderr)
        print("Finished trials are recorded; fix the store and rerun to resume.", file=sys.stderr)
        return 2
    if summary.interrupted:
        print(
            "Interrupted: trials in progress are not recorded as done; run the same command "
            "to resume."
        )
        return 143 if summary.signal_name == "SIGTERM" else 130
    if summary.tuning is not None and not summary.tuning.complete:
        for problem in summary.tuning.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("Tuning is not complete, so no trial ran at tuned values.", file=sys.stderr)
        return 1
    return 0


def _print_tuning(tuning: Any) -> None:
    """Each study's chosen values and objective, and the max-stable-lr answers."""
    print(f"\nTuning ({'complete' if tuning.complete else 'not complete: rerun to resume'}):")
    # A horizon check's re-tune at the full budget: the study's own suffix (``<group>@full``).
    names = [s["study"].split("/", 1)[-1] for s in tuning.studies]
    width = max([len(n) for n in names] + [5])
    for name, s in zip(names, tuning.studies, strict=True):
        t, best = s["trials"], s["best"]
        counts = f"{t['complete']} complete, {t['pruned']} pruned" + (
            f", {t['failed']} failed" if t["failed"] else ""
        )
        chosen = (
            ", ".join(f"{k}={v:.4g}" for k, v in best["values"].items())
            + f"  ->  {s['objective']} {best['objective']:.4g}"
            if best
            else "no completed trial yet"
        )
        print(f"  {name:<{width}}  {chosen}  ({counts} of {t['target']})")
    for r in tuning.stable:
        value = f"{r['value']:.3g}" if r["value"] is not None else "none"
        print(
            f"  max stable lr  {r['cell'] or '(the cell)'}: {value} ({r['status']}, "
            f"{r['probes']} probes)"
        )


def _print_table(name: str, columns: list[str], rows: list) -> None:
    width = max([len(c) for c, _ in rows] + [4])
    print(f"\nOutcomes per cell ({name}):")
    print(f"  {'cell':<{width}}  " + "  ".join(f"{c:>11}" for c in columns))
    for cell, counts in rows:
        print(f"  {cell:<{width}}  " + "  ".join(f"{counts[c] or '.':>11}" for c in columns))
    totals = {c: sum(counts[c] for _, counts in rows) for c in columns}
    print(f"  {'total':<{width}}  " + "  ".join(f"{totals[c]:>11}" for c in columns))


def cmd_report(args: argparse.Namespace) -> int:
    from gradatlas.reports import build_report
    from gradatlas.reports.steer import Steering, parse_where
    from gradatlas.store import open_store

    steering = Steering(
        by=args.by,
        facet=args.facet,
        where=parse_where(args.where),
        cells=tuple(args.cells),
        limit=args.limit,
    )
    store = open_store(args.tracking_uri, create=False)  # a report never creates a store
    html, pdf = build_report(args.target, store=store, out_dir=args.out, steering=steering)
    print(f"HTML report: {html}")
    print(f"PDF report:  {pdf}")
    if not steering.active:  # the suite's own report goes where MLflow users look: its sweep
        from gradatlas.reports.publish import attach_report

        attached = attach_report(store, args.target, html.parent)
        if attached:
            print(f"In MLflow:   the sweep run {attached[:8]}'s artifacts, report/index.html")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gradatlas.app.results import export

    fmt = args.fmt
    if fmt is None:
        suffix = os.path.splitext(args.out or "")[1].lower()
        fmt = "parquet" if suffix == ".parquet" else "csv"
    path, rows = export(args.target, fmt, out=args.out, tracking_uri=args.tracking_uri)
    print(f"{rows} trials -> {path}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from gradatlas.app.ui import serve
    from gradatlas.record import ui_runs_path
    from gradatlas.store import open_store

    store = open_store(args.tracking_uri, create=False)  # a missing local store is said
    uri = store.uri
    experiment_id = _experiment_id(store, args.target) if args.target else None
    if uri.startswith(("http://", "https://")):  # a tracking server serves its own UI
        page = ui_runs_path(experiment_id) if experiment_id else ""
        print(f"The store is a tracking server: its UI is {uri.rstrip('/')}/{page}")
        return 0
    serve(uri, args.host, args.port, experiment_id)
    return 0  # not reached: serve replaces this process with the server


def _experiment_id(store: Any, target: str) -> str:
    """The experiment of a suite (or experiment) name in an existing store, else exit 2."""
    from gradatlas.reports.load import experiment_name
    from gradatlas.store import redact

    name = experiment_name(target, store)
    exp = store.get_experiment(name=name)
    if exp is None:
        raise UserInputError(
            f"no experiment '{name}' in {redact(store.uri)} yet: run `gradatlas run {target}`"
        )
    return exp.experiment_id


def cmd_repro(args: argparse.Namespace) -> int:
    from gradatlas.app.repro import DEFAULT_TOLERANCE, render, reproduce
    from gradatlas.store import open_store

    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance >= 0:
        raise UserInputError("--tolerance must be a relative difference >= 0")
    verdict = reproduce(
        open_store(args.tracking_uri, create=False),
        args.target,
        experiment=args.experiment,
        device=args.device,
        threads=args.threads,
        tolerance=tolerance,
        alone=args.alone,
    )
    print(json.dumps(verdict.to_dict(), indent=2) if args.json else render(verdict))
    return 0 if verdict.passed else 1


VERDICTS_ARTIFACT = "verdicts.json"  # on the newest sweep run: the rows `verdicts --json` prints


def _claims_experiment(target: str, tracking_uri: str | None) -> tuple[Any, list[Any]]:
    """The experiment of a suite (or experiment name) and its declared claims; exit 2 when the
    store, the experiment or its claims are missing."""
    from gradatlas.reports.claimeval import declared_claims
    from gradatlas.reports.load import experiment_name, load_experiment
    from gradatlas.store import open_store

    store = open_store(tracking_uri, create=False)
    name = experiment_name(target, store)
    exp = load_experiment(name, store)
    claims = declared_claims(exp)
    if not claims:
        raise UserInputError(
            f"experiment {name!r} declares no claims (its newest sweep's suite has no claims: "
            "block), so there is nothing to judge"
        )
    return exp, claims


def cmd_verdicts(args: argparse.Namespace) -> int:
    from gradatlas.reports.claimeval import evaluate_claims, verdict_rows

    exp, claims = _claims_experiment(args.target, args.tracking_uri)
    rows = verdict_rows(evaluate_claims(exp, claims), exp)
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=False))
    else:
        _print_verdicts(rows)
    sweeps = [s for s in exp.sweeps if s.run_id]
    if sweeps:
        newest = max(sweeps, key=lambda s: s.start_time.value if s.start_time is not None else 0)
        exp.store.attach(newest.run_id, VERDICTS_ARTIFACT, rows)
        if not args.json:
            print(
                f"\nIn MLflow: the sweep run {newest.run_id[:8]}'s artifacts, {VERDICTS_ARTIFACT}"
            )
    return 0


def _print_verdicts(rows: list[dict[str, Any]]) -> None:
    """The claims table in plain text columns; controls after the findings."""

    def num(x: Any, fmt: str = ".3g") -> str:
        return "-" if x is None else format(x, fmt)

    header = ["id", "dataset", "verdict", "metric", "effect [ci]", "p_adj", "n_seeds", "mde",
              "seeds_80%", "homog_p", "at 2nd-best lr", "control"]  # fmt: skip
    table = [header]
    for row in sorted(rows, key=lambda r: bool(r.get("control"))):
        effect = num(row.get("effect"), "+.3g")
        if row.get("ci_low") is not None and row.get("ci_high") is not None:
            effect += f" [{num(row['ci_low'])}, {num(row['ci_high'])}]"
        robust = row.get("robustness") or {}
        table.append(
            [
                str(row.get("id", "")),
                str(row.get("dataset", "")),
                str(row.get("verdict", "")),
                str(row.get("metric", "")),
                effect,
                num(row.get("p_adjusted")),
                num(row.get("n_seeds"), "d") if isinstance(row.get("n_seeds"), int) else "-",
                num(row.get("mde")),
                num(row.get("seeds_needed"), ".0f"),
                num(row.get("homogeneity_p")),
                str(robust.get("verdict", "")),
                "yes" if row.get("control") else "",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if any(r.get("scope") for r in rows):
        print("\nscope (the trials each verdict holds for):")
        for row in rows:
            if row.get("scope") and row.get("dataset") == "all":
                print(f"  {row['id']}: {row['scope']}")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from gradatlas.reports import calibrate as cal

    audits = args.audits or (cal.QUICK_AUDITS if args.quick else cal.AUDITS)
    power = args.power_audits
    if power is None:
        power = cal.QUICK_POWER_AUDITS if args.quick else cal.POWER_AUDITS
    if power < 0:
        raise UserInputError("--power-audits must be >= 0")
    if args.audit:
        return _relabel_audit(args)
    try:
        cal.run(
            audits=audits,
            power_audits=power,
            out=args.out or cal.DEFAULT_OUT,
            workers=args.workers,
            resamples=args.resamples or cal.RESAMPLES,
            scenarios=args.scenarios,
        )
    except KeyError as exc:
        raise UserInputError(f"--scenario: {exc.args[0]}") from None
    return 0


def _relabel_audit(args: argparse.Namespace) -> int:
    """``calibrate --audit SUITE``: the recorded audit with its arms relabelled at random."""
    from pathlib import Path

    from gradatlas.reports import calibrate as cal
    from gradatlas.reports.claimeval import claim_data

    exp, claims = _claims_experiment(args.audit, args.tracking_uri)
    data = claim_data(exp, claims)
    print(
        f"The recorded audit of {exp.name!r} ({len(data)} claims with data), its arms relabelled "
        f"at random {args.permutations:,} times (seeds kept whole): share of relabelled audits "
        "with at least one false verdict, per Holm family"
    )
    result: dict[str, Any] = {"experiment": exp.name}
    for family, control in (("findings", False), ("controls", True)):
        members = [d for d in data if d.control == control]
        if not members:
            continue
        result[family] = cal.relabel_audit(members, permutations=args.permutations)
        for rule, r in result[family]["rules"].items():
            print(
                f"  {family:8s} ({len(members):2d} claims), {rule} rule: "
                f"{r['false_verdict_rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] "
                f"({r['wrong_verdicts']} of {args.permutations})"
            )
    out = Path(args.out or cal.DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"relabel-{exp.name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "validate": cmd_validate,
    "plan": cmd_plan,
    "ls": cmd_ls,
    "report": cmd_report,
    "export": cmd_export,
    "repro": cmd_repro,
    "ui": cmd_ui,
    "verdicts": cmd_verdicts,
    "calibrate": cmd_calibrate,
}


if __name__ == "__main__":
    entry_point()
