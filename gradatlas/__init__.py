"""gradatlas: which combinations of depth, activation, init, norm, regularization and optimizer
train, and which vanish or explode, measured rather than asserted.

The folders are the architecture, one layer each (docs/architecture.md): the core vocabulary
(``gradatlas/``: record, registry, identity, errors, store) <- ``gradatlas.models`` (what is
trained) <- ``gradatlas.suites`` (what to run) <- ``gradatlas.runners`` (how it runs and is
recorded) <- ``gradatlas.reports`` (how results are shown) <- ``gradatlas.app`` (the command
line, results, repro, the UI). A module imports only its own layer and those below it; this
package's ``__init__`` is the public face, an app.

The results in pandas: ``gradatlas.results(suite_or_experiment)`` (one row per trial) and
``gradatlas.rates(df, by=[...])`` (outcome rates with Wilson intervals), and
``gradatlas.sensitivity(suite_or_experiment)`` (how the rates move when each outcome threshold
is scaled x0.1 and x10), from ``gradatlas.app.results``. They are loaded on first use, so
``import gradatlas`` stays light (no pandas, no MLflow): the command line's quick answers
(``validate``, ``plan``, ``ls``) import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "rates", "results", "sensitivity"]

_LAZY = {
    "results": "gradatlas.app.results",
    "rates": "gradatlas.app.results",
    "sensitivity": "gradatlas.app.results",
}

if TYPE_CHECKING:
    from gradatlas.app.results import rates, results, sensitivity


def __getattr__(name: str) -> Any:
    """``gradatlas.results``, ``gradatlas.rates`` and ``gradatlas.sensitivity``, imported when
    first asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # asked for once
        return value
    raise AttributeError(f"module 'gradatlas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
