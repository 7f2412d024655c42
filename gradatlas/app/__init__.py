"""The user-facing layer: the ``gradatlas`` command line (``cli``), results as DataFrames
(``results``, exposed as ``gradatlas.results``), ``gradatlas repro`` (``repro``), the MLflow UI
launcher (``ui``) and ``gradatlas plan``'s cost estimate (``cost``).

Top of the import graph (docs/architecture.md): these modules may import every layer below
them, and nothing below imports them.
"""
