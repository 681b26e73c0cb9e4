"""The layering of the package (ARCHITECTURE.md rules 1, 2 and 5), read from every import statement of
``shared/bioims`` — including the imports inside functions, which are the lazy ones.

A hand-written check rather than import-linter: the rules need the *owner* of a module (the service
package it lies in) and one exception per rule (the composition root), which is a dozen lines here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra"))
from modules import PACKAGE, files, imports, module_name

SERVICES = sorted(p.name for p in (PACKAGE / "services").iterdir() if (p / "__init__.py").exists())
DOMAIN = ("imaging", "datasets", "profiles", "training", "index", "evaluation")
COMPOSITION_ROOTS = {"bioims.runtime"}
"""Modules that may build any service's tables (they assemble every owner's pieces)."""


MODULES = {module_name(p): imports(p, module_name(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def owner(module: str) -> str | None:
    """The service package a module belongs to (``bioims.services.tags.service`` -> ``tags``)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "services" and parts[2] in SERVICES else None


def test_the_check_sees_the_package():
    assert {"tags", "image_management", "training", "embedding", "artifact", "search"} <= set(SERVICES)
    assert "bioims.services.ports" in MODULES["bioims.services.embedding.service"]
    assert "bioims.store.tables" in MODULES["bioims.services.tags.tables"]


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_another(service):
    for module, imported in MODULES.items():
        if owner(module) != service:
            continue
        others = {i for i in imported if owner(i) not in (None, service)}
        assert not others, f"{module} imports another service: {sorted(others)} (use a port of bioims.services.ports)"


def test_only_the_owner_and_the_composition_roots_touch_a_services_tables():
    for module, imported in MODULES.items():
        for name in imported:
            if ".tables" in name and owner(name) is not None and owner(name) != owner(module):
                assert module in COMPOSITION_ROOTS, f"{module} touches {name}, another service's tables"


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_code_never_imports_aws_or_the_services(package):
    forbidden = ("boto3", "botocore", "pynamodb", "chalice", "bioims.services", "bioims.store.tables",
                 "bioims.runtime", "bioims.api")
    for module, imported in MODULES.items():
        if module.startswith(f"bioims.{package}"):
            bad = {i for i in imported if i.startswith(forbidden)}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_ports_and_the_table_base_import_no_service():
    for module in ("bioims.services.ports", "bioims.store.tables"):
        assert not {i for i in MODULES[module] if owner(i)}, module


def test_the_job_runner_does_not_import_the_composition_root():
    """runtime -> jobs.runner -> jobs.steps must not lead back to runtime: the runner gets the composition
    root passed in (``Container.rebuild``); only the ``python -m bioims.jobs`` entry point builds one."""
    for name, path in files().items():
        if name.startswith("bioims.jobs") and name != "bioims.jobs.__main__":
            assert "bioims.runtime" not in imports(path, name, type_checking=False), name
