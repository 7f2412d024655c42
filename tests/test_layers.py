"""The import graph runs one way (docs/architecture.md): no module imports from a layer above
its own.

Read from the source files, not from ``sys.modules``: every ``import`` and ``from ... import``
statement counts, wherever it sits (top of the module, inside a function, under
``TYPE_CHECKING``), because a lazy import is still an arrow, and one that only bites when that
function runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Layers, bottom first. A module may import its own layer and any layer below it.
LAYERS = ("core", "models", "suites", "runners", "reports", "app")

# Source folder -> the import name it installs as (pyproject's package-dir).
PACKAGES = {
    "gradatlas": "gradatlas",
    "models": "gradatlas.models",
    "suites": "gradatlas.suites",
    "runners": "gradatlas.runners",
    "reports": "gradatlas.reports",
}


def layer_of(module: str) -> str | None:
    """The layer of a gradatlas module name; None for anything outside the package."""
    if module != "gradatlas" and not module.startswith("gradatlas."):
        return None
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("app", "__main__"):
        # The package's own __init__ is its public face (``gradatlas.results``): an app.
        return "app"
    if parts[1] in ("models", "suites", "runners", "reports"):
        return parts[1]
    return "core"


def source_modules() -> dict[str, Path]:
    """Every module of the package, by import name."""
    out: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if folder == "gradatlas" and parts and parts[0] in PACKAGES.values():
                continue
            out[name] = path
    return out


def imported_modules(
    module: str, path: Path, known: set[str] | frozenset[str] = frozenset()
) -> list[tuple[int, str]]:
    """(line, module name) of every import in the file, relative ones resolved. ``from P import
    n`` counts as importing ``P.n`` where that is a module (``known``), else ``P``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if sub in known else target))
    return found


def upward_imports() -> list[str]:
    bad: list[str] = []
    modules = source_modules()
    for module, path in modules.items():
        own = layer_of(module)
        assert own is not None
        for line, target in imported_modules(module, path, set(modules)):
            their = layer_of(target)
            if their is None:
                continue  # outside the package
            if LAYERS.index(their) > LAYERS.index(own):
                rel = path.relative_to(ROOT)
                bad.append(f"{rel}:{line}: {own} imports {target} ({their})")
    return sorted(set(bad))


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    bad = upward_imports()
    assert not bad, "imports against the layer order " + " < ".join(LAYERS) + ":\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("gradatlas.record", "core"),
        ("gradatlas.store.base", "core"),
        ("gradatlas.models.mlp", "models"),
        ("gradatlas.suites.spec", "suites"),
        ("gradatlas.runners.sweep", "runners"),
        ("gradatlas.reports.build", "reports"),
        ("gradatlas.app.cli", "app"),
        ("gradatlas", "app"),
        ("torch", None),
    ],
)
def test_layer_of(module: str, layer: str | None) -> None:
    assert layer_of(module) == layer


def test_the_check_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    # A test that cannot fail is no test: the reader must find an import inside a function.
    path = tmp_path / "m.py"
    path.write_text(
        "def f():\n    from gradatlas.reports.build import x\n    from . import y\n"
        "from gradatlas import store as st\n"
    )
    found = imported_modules("gradatlas.runners.m", path, {"gradatlas.store"})
    assert (2, "gradatlas.reports.build") in found
    assert (3, "gradatlas.runners") in found
    assert (4, "gradatlas.store") in found  # a module named in ``from gradatlas import``
