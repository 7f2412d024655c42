"""Suites: declarative YAML saying what to run, resolved once into typed trial specs.

``schema`` (the language's fixed shape), ``levels`` (what a factor level may be), ``spec`` (the
resolved, frozen ``TrialSpec`` and the grid ``FACTORS``), ``expand`` (validation and the trial
list), ``overrides`` (``--set``), ``yamlsafe`` (the hardened reader). Nothing here imports torch.
"""

from gradatlas.suites.expand import (
    Suite,
    Trial,
    builtin_suites,
    expand_suite,
    find_suite,
    load_suite,
)
from gradatlas.suites.spec import FACTORS, TrialSpec

__all__ = [
    "FACTORS",
    "Suite",
    "Trial",
    "TrialSpec",
    "builtin_suites",
    "expand_suite",
    "find_suite",
    "load_suite",
]
