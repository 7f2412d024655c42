"""The trial's identity: a hash of its resolved config, and nothing else.

The same hash names the trial in MLflow, decides what a resumed sweep skips, and groups seeds in
reports. Keeping it a pure function of the resolved config means many workers on many machines
agree on it without talking to each other.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ID_LENGTH = 16


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, floats as Python writes them: stable across runs and hosts."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(config: dict[str, Any]) -> str:
    """A trial's id, when ``config`` is its resolved config: the first ``ID_LENGTH`` hex digits
    of the SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:ID_LENGTH]


def cell_id(config: dict[str, Any]) -> str:
    """The seeds of one cell share this: the config with the seed left out."""
    return config_hash({k: v for k, v in config.items() if k != "seed"})


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> dotted keys, for MLflow params (so the UI's compare view lines them up)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat
