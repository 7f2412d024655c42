"""Benchmark: the 1,000-trial report build, by phase (``report_scale.py --trials 1000``).

    python benchmarks/report_1000.py [--repeats 3] [--store DIR] [--regenerate] [--json OUT]

Kept under its old name for scripts that call it; ``report_scale.py`` also builds the
10,000-trial report (``--trials 10000``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_scale import main

if __name__ == "__main__":
    sys.argv[1:1] = ["--trials", "1000"]
    raise SystemExit(main())
