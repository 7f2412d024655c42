"""How trials run and are recorded: the layer between what a suite asks (``gradatlas.suites``)
and what the reports read (``gradatlas.reports``).

Read it top down: ``sweep`` runs a suite (skip what is recorded, hand the rest to an
``executor``, record each unit through the ``recorder`` process); ``trial`` is one trial's life
(data from ``loader``, the LightningModule in ``module``, the ``instrument`` and ``callbacks``
on its Trainer, its ``outcome`` by the suite's declared rules); ``batching`` decides how many
seeds train stacked; ``tracking`` turns results into the store's records; ``tuning`` is the
Optuna search, its own package. Nothing here imports the reports or the apps
(docs/architecture.md).
"""
