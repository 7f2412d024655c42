"""Tuning before evaluation: one Optuna study per group of cells, run by the sweep's driver.

A suite's ``tune`` block says what to tune (``params``), per what (``per``: the factors whose
levels form the groups; ``[]`` is one group), how much (``trials`` per study, ``steps`` per
run) and how (sampler, pruner, tuning ``seeds``). The life of a tuned sweep:

1. ``plan.tuning_plan``: the plan's cells grouped by their ``per`` levels; one study per
   group, named ``<suite>/<group>``, in the Optuna storage the user names
   (``--optuna-storage``; ``storage``).
2. ``driver.run_tuning``: a study trial is every cell of its group, at the sampled values, on
   each tuning seed, for the tuning budget: real ``Trial`` objects (``suites.tune.tuned_spec``)
   with their own trial ids, run by the same executor and the same dispatch loop as the
   evaluation trials (in-process or Ray workers) and recorded in MLflow by the same recorder
   process, as ``gradatlas.kind=tuning`` runs nested under the study's run. Its value is the
   mean over those runs of the final validation metric (an exploded run, or one with no finite
   value, counts as the worst: accuracy 0, loss ``search.WORST_LOSS``). Up to one trial per
   worker is asked of each study at a time (``search``); each is told the moment its runs are
   recorded.
3. Pruning happens on the workers, which never read the study: when a trial is asked, its
   search turns the pruner into thresholds per run and eval step (``pruning``), and a run
   whose validation value at such a step is worse stops there (a real early stop). The study
   trial is then PRUNED, with its intermediate values (the mean over its runs at each eval
   step) reported.
4. ``Tuner.evaluation_trials``: the suite's own trials (its seeds, its budget) at their group's
   best values; the sweep then runs them as any other trials. Their config holds the tuned
   values, so their trial ids are hashes of what actually trained.
5. With ``tune.max_stable_lr``: per cell, the largest learning rate that does not explode
   (``search.StableLr``), on the first tuning seed with the tuning budget, at the cell's own
   settings.
6. With ``tune.second_best``: each tuned cell also runs the suite's seeds at its study's
   second-best values (``plan.second_best``: the best completed trial ``suites.tune.distinct``
   from the best), tagged ``gradatlas.tuning.rank`` 2 (the best's trials: 1). They are
   ordinary trials with their own ids, so resume and plan status treat them as any other.
7. With ``tune.horizon_check: N`` and ``tune.steps`` below the suite's budget: N groups (a
   seeded choice, ``TuningPlan.horizon_groups``) are tuned again at the suite's own budget in
   a second study, ``<suite>/<group>@full`` (same sampler seed, purpose ``horizon``), so the
   report can say whether the short budget picked the same values. Nothing is evaluated at
   them.

Only the driver writes the Optuna storage and (outside the recorder's life) the study runs
(``records``); a SQLite file has one writer. Resume after a kill: finished study trials stay;
trials a dead driver left RUNNING are failed and their values enqueued again, once each; and a
run whose tuning record already exists in MLflow (same trial id, FINISHED) is never trained
again: its recorded value is told instead. So a killed tuning run resumes where it stopped,
repeating nothing that finished.

The modules, each with one job: ``plan`` (groups, studies, evaluation trials; no Optuna),
``pruning`` (the pruner as thresholds; pure), ``storage`` (the Optuna storage), ``search``
(asking and telling studies), ``records`` (the tuner's reads and writes of the store), ``tuner``
(a suite's studies and their state) and ``driver`` (a tuning phase as dispatch work). Below: the
names imported from ``gradatlas.runners.tuning`` before it was split, so such imports keep
working; new code imports from the module that holds the name.
"""

from gradatlas.runners.tuning.plan import (
    evaluation_trials,
    fingerprint,
    ranked_trials,
    second_best,
    tuning_plan,
)
from gradatlas.runners.tuning.pruning import COMPLETE, PRUNED_STATE, Finished, thresholds
from gradatlas.runners.tuning.storage import default_storage
from gradatlas.runners.tuning.tuner import Tuner, TuningSummary

__all__ = [
    "COMPLETE",
    "PRUNED_STATE",
    "Finished",
    "Tuner",
    "TuningSummary",
    "default_storage",
    "evaluation_trials",
    "fingerprint",
    "ranked_trials",
    "second_best",
    "thresholds",
    "tuning_plan",
]
