"""gradatlas: which combinations of depth, activation, init, norm, regularization and optimizer
train, and which vanish or explode, measured rather than asserted.

The folders are the architecture: ``gradatlas.suites`` (what to run) -> ``gradatlas.runners``
(how it runs and where it is recorded) -> ``gradatlas.models`` (what is trained) ->
``gradatlas.reports`` (how results are shown).
"""

__version__ = "0.1.0"
