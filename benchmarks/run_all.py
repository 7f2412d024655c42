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
    ]
    if (HERE / "report_1000.py").exists():
        benches.append(("report_1000", []))
    failed = 0
    for name, extra in benches:
        print(f"== {name}", flush=True)
        out = OUT / f"{name}-{stamp}.json"
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out), *extra]
        failed += subprocess.run(cmd).returncode != 0
    print(f"\nresults: {OUT}/*-{stamp}.json")
    return 1 if failed else 0


if __name__ == "__main__":
    assert importlib.util.find_spec("gradatlas"), "install gradatlas first (make venv)"
    sys.exit(main())
