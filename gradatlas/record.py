"""The record contract: what gradatlas writes to MLflow and what every reader expects.

One neutral module (no torch, no MLflow import at module level) that the tracker writes through
and the reports, the synthetic benchmark store and any future worker read through. The prose
version of the same contract is ``docs/record.md``; change both together, and only additively:
readers must keep loading records written by older versions (``schema`` says which).
"""

from __future__ import annotations

# Version of the trial.json layout written now. 1: the first release; readers accept <= SCHEMA.
SCHEMA = 1

# -- run tags ------------------------------------------------------------------------------------
KIND = "gradatlas.kind"  # "trial" | "sweep"
TRIAL_ID = "gradatlas.trial_id"
CELL_ID = "gradatlas.cell_id"
OUTCOME = "gradatlas.outcome"
OUTCOME_REASON = "gradatlas.outcome_reason"
CELL = "gradatlas.cell"
SUITE = "gradatlas.suite"
SEED = "gradatlas.seed"
DEVICE = "gradatlas.device"
PARENT_RUN = "mlflow.parentRunId"
KIND_TRIAL, KIND_SWEEP = "trial", "sweep"

# -- outcomes ------------------------------------------------------------------------------------
# The verdicts of the outcome rules (gradatlas.runners.outcome), in the order reports show them.
OUTCOMES = ("converged", "unconverged", "stalled", "vanished", "exploded")
KILLED = "killed"  # not a verdict: the trial was interrupted and is rerun on resume
OUTCOME_ORDER = (*OUTCOMES, KILLED)
