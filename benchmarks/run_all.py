"""`make perf`: every benchmark, numbers printed and saved under runs/perf/.

Benchmarks measure; they never assert a timing (timed assertions belong nowhere near unit tests).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path("runs") / "perf"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    benches = [
        ("runner_overhead", ["--repeats", "3"]),
        ("workers_speedup", ["--workers", "2"]),
        ("batched_seeds", ["--repeats", "3"]),
        ("batched_parity", []),
        ("fused_parity", []),
        ("step_anatomy", []),
        ("fused", []),
        ("fused_cost", []),
        ("fused_balance", ["--repeats", "1", "--epochs", "6"]),
        ("live_flush", ["--repeats", "3"]),
        ("record_bulk", ["--repeats", "3"]),
    ]
    # The report at 1,000 and 10,000 trials (the first 10,000-trial run writes its synthetic
    # store, about half an hour on two cores; later runs reuse it).
    reports = [("report_scale", ["--trials", n], f"report_{n}") for n in ("1000", "10000")]
    failed = 0
    for name, extra, label in [(n, e, n) for n, e in benches] + reports:
        print(f"== {label}", flush=True)
        out = OUT / f"{label}-{stamp}.json"
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out), *extra]
        failed += subprocess.run(cmd).returncode != 0
    print(f"\nresults: {OUT}/*-{stamp}.json")
    return 1 if failed else 0


if __name__ == "__main__":
    assert importlib.util.find_spec("gradatlas"), "install gradatlas first (make venv)"
    sys.exit(main())
