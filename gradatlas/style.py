"""The look the report and each trial's picture share: outcome colours and base text sizes.

Pure data, no imports, in the core layer because two layers draw: the recorder draws a trial's
picture (``runners/trial_image.py``) and must not import the report stack above it (seaborn,
pandas); the report's charts (``reports/figures.py``) add their own settings on top.
"""

from __future__ import annotations

# The verdicts' colours, in every chart, table and picture.
OUTCOME_COLORS = {
    "converged": "#2a9d8f",
    "unconverged": "#e0a526",
    "stalled": "#8d99ae",
    "vanished": "#3a6ea5",
    "dead": "#6a4c93",
    "diverged": "#e76f51",
    "exploded": "#c8324a",
}

# matplotlib rcParams every gradatlas figure starts from.
BASE_RC = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "Liberation Sans"],
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
