"""The Optuna storage: where the studies live, how one is opened and checked, and what a dead
driver left in it.

Separate from the search because these are the rules of the store, not of the sampler: the
default ``optuna.db`` beside a SQLite MLflow store (a tracking server needs a storage every
driver reaches, named by the user), a study refused when it was made for another tune block
(its fingerprint), and the repair of trials a killed driver left RUNNING. Only the driver
writes here (one writer for a SQLite file; ``enqueue_trial`` is not idempotent under
concurrency), and ``store.live_drivers`` has made sure no other driver of the suite is alive
before ``recover`` runs, so a RUNNING trial is a dead driver's, never a live one's.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradatlas.errors import UserInputError
from gradatlas.store.uri import redact

FINGERPRINT = "gradatlas.fingerprint"  # study user attr: what the study was made for
GROUP = "gradatlas.group"  # study user attr: its group's per-factor levels
REQUEUED_FROM = "requeued_from"  # trial user attr: the failed trial whose values it asks again


def default_storage(store_dir: Path | None) -> str | None:
    """``sqlite:///<store_dir>/optuna.db`` beside a store kept in a local file
    (``RecordStore.local_dir``); None for a tracking server, where the studies must live where
    every driver finds them (the user names it: ``--optuna-storage``)."""
    return f"sqlite:///{store_dir / 'optuna.db'}" if store_dir is not None else None


def open_storage(url: str) -> Any:
    """The Optuna storage at ``url`` (the folder of a SQLite file is created)."""
    import optuna

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # a bad URL, a server that does not answer, a missing driver
        raise UserInputError(
            f"cannot open the Optuna storage: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            source=redact(url),
        ) from None


def load_study(storage: Any, name: str, maximize: bool) -> Any:
    """The study ``name``, loaded or created. Its own pruner never prunes: the driver does,
    with thresholds decided before a trial is dispatched (``tuning.pruning``)."""
    optuna = quiet_optuna()
    return optuna.create_study(
        study_name=name,
        storage=storage,
        pruner=optuna.pruners.NopPruner(),
        direction="maximize" if maximize else "minimize",
        load_if_exists=True,
    )


def check_fingerprint(
    study: Any, fingerprint: str, levels: Mapping[str, str], url: str, source: str
) -> None:
    """Mark a new study with what it was made for; refuse a stored one made for something
    else (another tune block or other cells: its trials would not compare)."""
    stored = study.user_attrs.get(FINGERPRINT)
    if stored is None:
        study.set_user_attr(FINGERPRINT, fingerprint)
        study.set_user_attr(GROUP, dict(levels))
    elif stored != fingerprint:
        name = study.study_name
        raise UserInputError(
            f"the study {name!r} in {redact(url)} was made for another "
            "tune block or other cells (its trials would not compare with this suite's); "
            "delete it (optuna delete-study --study-name "
            f"'{name}' --storage URL) or give another --optuna-storage",
            source=source,
        )


def requeue(study: Any, number: int, params: Mapping[str, Any]) -> None:
    """Fail study trial ``number`` and enqueue its values again, once: a trial that enqueued
    them already (``requeued_from``) is not enqueued twice, even across kills between the two
    writes (enqueue first, then fail)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if params and not any(t.user_attrs.get(REQUEUED_FROM) == number for t in trials):
        study.enqueue_trial(dict(params), user_attrs={REQUEUED_FROM: number})
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def recover(study: Any) -> int:
    """Trials a dead driver left RUNNING: failed, their values enqueued again (``requeue``).
    Returns how many."""
    from optuna.trial import TrialState

    running = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in running:
        requeue(study, t.number, t.params)
    return len(running)


def quiet_optuna() -> Any:
    """Optuna, announcing nothing per trial (a sweep tells thousands)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # ``enqueue_trial(user_attrs=...)`` (how a dead driver's trial is requeued once) is marked
    # experimental by Optuna; the warning is about that API's stability, not about the study.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna
