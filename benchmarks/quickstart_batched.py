"""The quickstart batched (the default) and with ``--no-batch``: wall time and labels per trial id.

Each configuration runs ``gradatlas run quickstart`` through the CLI into its own fresh SQLite
store, as ``make bench`` does; then every trial id's outcome label is compared across them.

    python benchmarks/quickstart_batched.py --json docs/perf/quickstart_batched_cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "in-process, 1 thread, batched": ["--threads", "1"],
    "in-process, 1 thread, --no-batch": ["--threads", "1", "--no-batch"],
    "--workers auto, batched": ["--workers", "auto"],
    "--workers auto, --no-batch": ["--workers", "auto", "--no-batch"],
}


def labels(uri: str) -> dict[str, tuple[str, str]]:
    """trial id -> (outcome, batch_seeds tag) of every finished trial run."""
    from gradatlas.record import BATCH_SEEDS, OUTCOME, TRIAL_ID, RunKind, RunStatus
    from gradatlas.store import open_store

    store = open_store(uri, create=False)
    exp = store.get_experiment(name="quickstart")
    runs = store.find_runs(exp.experiment_id, kind=RunKind.TRIAL, status=RunStatus.FINISHED)
    return {r.tags[TRIAL_ID]: (r.tags[OUTCOME], r.tags[BATCH_SEEDS]) for r in runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--config", action="append", choices=list(CONFIGS))
    args = ap.parse_args()
    rows, per_config = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(args.config or CONFIGS):
            uri = f"sqlite:///{tmp}/q{i}.db"
            cmd = [sys.executable, "-m", "gradatlas.app.cli", "run", "quickstart", "--tracking-uri"]
            t0 = time.perf_counter()
            proc = subprocess.run([*cmd, uri, *CONFIGS[name]], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode:
                sys.exit(f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
            per_config[name] = labels(uri)
            rows.append({"config": name, "wall_s": round(wall, 1), "trials": len(per_config[name])})
            print(rows[-1], flush=True)
    reference = next(iter(per_config.values()))
    differ = {
        name: sorted(t for t in reference if got.get(t, ("?",))[0] != reference[t][0])
        for name, got in per_config.items()
    }
    out = {"rows": rows, "label_differences_vs_first": differ}
    print(json.dumps(out["label_differences_vs_first"]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
