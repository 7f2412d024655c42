"""Suites: declarative YAML saying what to run. See ``schema`` (the language), ``factors``
(what each grid factor means) and ``expand`` (validation and the trial list)."""

from gradatlas.suites.expand import Suite, Trial, builtin_suites, find_suite, load_suite
from gradatlas.suites.factors import FACTORS

__all__ = ["FACTORS", "Suite", "Trial", "builtin_suites", "find_suite", "load_suite"]
