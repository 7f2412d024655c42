"""Wall time of one 24-trial suite on 1 worker vs N workers, in one run (same machine, same load).

Each configuration runs the same suite into its own fresh SQLite store through the CLI, so the
times include everything a user waits for: Ray's start-up, worker imports, training, the driver's
MLflow writes. The Ray start-up (``ray.init`` alone) is measured separately. GPU machines: pass
``--accelerator gpu --gpus-per-worker 0.25 --workers 4``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """
name: speedup
description: 24 trials (12 cells x 2 seeds) of the quickstart's kind, for the workers benchmark.
dataset: {name: mnist1d}
model: {family: mlp, width: 64}
grid:
  depth: [3, 10]
  activation: [relu, tanh, sigmoid]
  init: [kaiming_normal, xavier_normal]
seeds: 2
train: {epochs: EPOCHS, batch_size: 128, optimizer: momentum, lr: 0.02}
outcomes: {target_accuracy: 0.99}   # no early stop: every trial runs its whole budget
"""


def _run(suite: Path, store: Path, args: list[str]) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "gradatlas.app.cli", "run", str(suite)]
    cmd += ["--tracking-uri", f"sqlite:///{store}", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    on = re.search(r"^  on (.*)$", proc.stderr, re.M)
    return wall, on.group(1) if on else ""


def ray_startup_s(workers: int) -> float:
    code = (
        "import time, ray; t=time.perf_counter(); "
        f"ray.init(address='local', num_cpus={workers}, include_dashboard=False, "
        "_node_ip_address='127.0.0.1'); print(time.perf_counter()-t); ray.shutdown()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="the parallel configuration")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--gpus-per-worker", type=float)
    parser.add_argument("--epochs", type=int, default=24, help="per trial (24: the quickstart's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    extra = ["--accelerator", args.accelerator]
    parallel = [*extra, "--workers", str(args.workers)]
    if args.gpus_per_worker:
        parallel += ["--gpus-per-worker", str(args.gpus_per_worker)]
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "speedup.yaml"
        suite.write_text(SUITE.replace("EPOCHS", str(args.epochs)))
        # Warm the mnist1d cache and the imports once, outside both timings.
        _run(suite, Path(tmp) / "warm.db", [*extra, "--limit", "1"])
        one, one_on = _run(suite, Path(tmp) / "one.db", [*extra])
        one_t1, _ = _run(suite, Path(tmp) / "one-t1.db", [*extra, "--threads", "1"])
        many, many_on = _run(suite, Path(tmp) / "many.db", parallel)
    startup = ray_startup_s(args.workers)
    out = {
        "trials": 24,
        "epochs_per_trial": args.epochs,
        "one_worker_s": round(one, 2),
        "one_worker": one_on,
        "parallel_s": round(many, 2),
        "parallel": many_on,
        "one_worker_1_thread_s": round(one_t1, 2),
        "speedup": round(one / many, 2),
        "speedup_vs_1_thread": round(one_t1 / many, 2),
        "ray_init_s": round(startup, 2),
        "ray_init_share_of_parallel": round(startup / many, 3),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
