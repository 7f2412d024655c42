"""Command-line overrides, as Hydra users expect: ``--set train.epochs=2 --set grid.depth=[3,5]``.

Each override sets one path of the suite's data before validation, so an override is checked
exactly like the file (a wrong path or value gets the same ``file: field.path`` error and exit
2). Values are YAML (``[3,5]``, ``{name: adam, lr: 1e-3}``, ``null``). ``[*]`` sets a field in
every element of a list (``grids[*].dataset=[cifar10]``: every design on CIFAR-10). Setting
``train.steps`` drops the file's ``train.epochs`` and vice versa: the budget is one choice, and
the command line is the later word. The overrides are archived with the sweep that ran them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from gradatlas.errors import SuiteErrors, UserInputError, short_repr

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")
_BUDGET_TWIN = {"train.steps": "epochs", "train.epochs": "steps"}


def parse_path(path: str) -> list[str | int]:
    """``grid.init[2].std`` -> ``['grid', 'init', 2, 'std']``."""
    keys: list[str | int] = []
    for part in path.split("."):
        m = _PART.fullmatch(part)
        if not m:
            raise UserInputError(
                f"not a field path: {short_repr(path)} (write e.g. train.epochs or grid.init[0])"
            )
        keys.append(m.group(1))
        keys += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return keys


def _parse_value(text: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise UserInputError(f"value {short_repr(text)} is not valid YAML ({exc})") from None


def apply_overrides(data: Any, overrides: Sequence[str], source: str) -> Any:
    """``data`` with every ``PATH=VALUE`` applied in order (a new object; ``data`` is kept)."""
    if not overrides:
        return data
    if not isinstance(data, dict):
        return data  # validation reports the shape; overrides have nothing to land in
    out = copy.deepcopy(data)
    errors: list[UserInputError] = []
    for item in overrides:
        try:
            _apply_one(out, item)
        except UserInputError as exc:
            errors.append(UserInputError(exc.message, source=f"--set {item}"))
    if errors:
        raise SuiteErrors(errors)
    return out


def _apply_one(data: dict[str, Any], item: str) -> None:
    path, sep, raw = item.partition("=")
    if not sep or not path.strip():
        raise UserInputError("expected PATH=VALUE, e.g. train.epochs=2")
    path = path.strip()
    if "[*]" in path:  # every element of a list: grids[*].dataset=[cifar10]
        head, _, tail = path.partition("[*]")
        node: Any = data
        for key in parse_path(head):
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, list) or not node:
            raise UserInputError(f"{path}: {head} is not a non-empty list, so [*] selects nothing")
        for i in range(len(node)):
            _apply_one(data, f"{head}[{i}]{tail}={raw}")
        return
    keys = parse_path(path)
    value = _parse_value(raw)
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        nxt = keys[i + 1]
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                raise UserInputError(f"{path}: index [{key}] is out of range")
            node = node[key]
            continue
        if not isinstance(node, dict):
            raise UserInputError(f"{path}: {key!r} is not inside a mapping")
        if key not in node or node[key] is None:
            node[key] = [] if isinstance(nxt, int) else {}
        node = node[key]
    last = keys[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise UserInputError(f"{path}: index [{last}] is out of range")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise UserInputError(f"{path}: the parent of {last!r} is not a mapping")
        node[last] = value
        twin = _BUDGET_TWIN.get(path)
        if twin and isinstance(data.get("train"), dict) and value is not None:
            data["train"].pop(twin, None)
