"""The import graph of the ``bioims`` package, read from its sources (no module is imported).

Used by ``infra/package.py`` (what a service's Lambda artifact must contain: the modules its app reaches
and the distributions they import) and by ``tests/unit/test_layering.py`` (the layering rules).
Written here because the packaging needs one special case a generic tool (import-linter, modulegraph)
does not give: the composition root :mod:`bioims.runtime` imports a service's package only when it builds
that service, so its function-level imports are not followed (see :data:`bioims.runtime.SERVICE_CLASSES`).
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "shared" / "bioims"
MODULE_LEVEL_ONLY = frozenset({"bioims.runtime"})
"""Modules whose function-level imports :func:`closure` does not follow (they import what they build)."""


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``shared/bioims/services/tags/service.py`` -> ``bioims.services.tags.service``."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def files(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package -> its file."""
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, name: str, *, nested: bool = True, type_checking: bool = True) -> set[str]:
    """Absolute names of the modules (and ``module.attribute`` names) that ``path`` (module ``name``)
    imports: relative imports resolved; ``nested``: also the imports inside functions (the lazy ones);
    ``type_checking``: also those under ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if not type_checking and _type_checking(child):
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import) and (nested or not in_function):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and (nested or not in_function):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")
                    parent = parent[:len(parent) - child.level + 1]
                    base = ".".join(parent + ([child.module] if child.module else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in child.names)
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return found


@cache
def _imports_of(path: Path, name: str, nested: bool) -> frozenset[str]:
    return frozenset(imports(path, name, nested=nested, type_checking=False))


def closure(start: set[str], package: Path = PACKAGE, *, nested: bool = True) -> tuple[set[str], set[str]]:
    """The ``bioims`` modules reachable from ``start`` (module names; a module brings its parent
    packages) and the top-level names of the other modules they import (stdlib included), following
    what runs at import and (``nested``) in functions, except in :data:`MODULE_LEVEL_ONLY`; imports
    under ``if TYPE_CHECKING:`` are not followed."""
    known = files(package)
    seen: set[str] = set()
    external: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name.split(".")[0] != "bioims":
            external.add(name.split(".")[0])
            continue
        if name not in known:  # ``module.attribute``
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_imports_of(known[name], name, nested and name not in MODULE_LEVEL_ONLY))
    return seen, external


def third_party(names: set[str]) -> set[str]:
    """The names that are neither the standard library nor ``__future__``."""
    return {n for n in names if n not in sys.stdlib_module_names and n != "__future__"}
