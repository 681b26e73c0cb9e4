"""What each service's Lambda artifact holds (``infra/package.py``), decided from the sources: only its own
service package and what it reaches, requirements that cover what it loads, and bytes that depend only on
the inputs, so that a change to one service changes only that service's artifact."""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))
import modules
import package

from bioims import runtime

PACKAGES = {name: path.partition(":")[0] for name, path in runtime.SERVICE_CLASSES.items()}


@pytest.mark.parametrize("service", package.SERVICES)
def test_an_artifact_holds_its_own_service_package_and_no_other(service):
    shipped = package.service_modules(service)
    assert PACKAGES[service] in shipped and "bioims.runtime" in shipped and "bioims.api.chalice_app" in shipped
    for other, module in PACKAGES.items():
        if other != service:
            assert not any(m == module or m.startswith(module + ".") for m in shipped), (service, other)
    assert not shipped & {"bioims.cli", "bioims.demo", "bioims.api.server", "bioims.api.search_server"}


@pytest.mark.parametrize("service", package.SERVICES)
def test_requirements_cover_what_the_service_loads_and_ship_no_ml_stack(service):
    assert package.missing_requirements(service) == set()
    names = {package._distribution(r) for r in package.requirements(service)}
    assert not names & {"torch", "onnx", "onnxruntime", "faiss-cpu", "pyarrow", "scikit-learn", "matplotlib"}
    image_math = {"scipy", "pillow", "tifffile"}
    assert names >= image_math if service == "image-management" else not names & image_math


def test_a_missing_requirement_is_found(tmp_path):
    """The check fails when a module the service loads imports a distribution it does not install."""
    copy = tmp_path / "bioims"
    shutil.copytree(modules.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    service_py = copy / "services" / "tags" / "service.py"
    service_py.write_text("import scipy.ndimage\n" + service_py.read_text())
    assert package.missing_requirements("tags", copy) == {"scipy"}
    assert package.missing_requirements("tags") == set()


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _build_all(deps: Path, app: Path, package_dir: Path, out: Path) -> dict[str, str]:
    out.mkdir(exist_ok=True)
    digests = {}
    for service in package.SERVICES:
        target = out / f"{service}.zip"
        package.assemble(deps, app, target, service, package_dir)
        digests[service] = package.digest(target)
    return digests


def test_a_change_to_one_service_changes_only_its_artifact(tmp_path):
    copy = tmp_path / "bioims"
    shutil.copytree(modules.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    deps = _zip(tmp_path / "deps.zip", {"pynamodb/__init__.py": b"# pynamodb\n"})
    app = _zip(tmp_path / "chalice.zip", {"app.py": b"app = None\n", "chalice/app.py": b"# chalice\n"})
    before = _build_all(deps, app, copy, tmp_path / "a")
    assert _build_all(deps, app, copy, tmp_path / "b") == before  # the same inputs, the same bytes
    assert len(set(before.values())) == len(before)

    tags = copy / "services" / "tags" / "service.py"
    tags.write_text(tags.read_text() + "\n# touched\n")
    after = _build_all(deps, app, copy, tmp_path / "c")
    assert {s for s in package.SERVICES if after[s] != before[s]} == {"tags"}

    shared = copy / "contract" / "base.py"  # the contract is in every artifact
    shared.write_text(shared.read_text() + "\n# touched\n")
    assert all(v != after[s] for s, v in _build_all(deps, app, copy, tmp_path / "d").items())
    with zipfile.ZipFile(tmp_path / "d" / "tags.zip") as zf:
        assert "bioims/services/tags/service.py" in zf.namelist()
        assert not any(n.startswith("bioims/services/image_management/") for n in zf.namelist())
        assert {i.date_time for i in zf.infolist()} == {package.ZIP_DATE}


@pytest.mark.parametrize("service", package.SERVICES)
def test_each_service_has_sam_local_events_valid_under_the_contract(service):
    """``services/<service>/events/<method>.json``: the ``{"method": ...}`` event of an operation, its
    arguments valid for that operation's request model (``sam local invoke -e``, ``make emulate``)."""
    import json

    from bioims.contract import SERVICES
    from bioims.contract.base import validate

    events = sorted((ROOT / "services" / service / "events").glob("*.json"))
    assert len(events) >= 2
    for path in events:
        event = json.loads(path.read_text())
        assert event.pop("method") == path.stem
        validate(SERVICES[service].find(path.stem), event)


@pytest.mark.parametrize("service", package.SERVICES)
def test_env_files_are_rendered_and_name_what_the_template_gives(service):
    import json

    import emulate  # infra/emulate.py
    import render  # infra/render.py

    path = ROOT / "services" / service / "env.json"
    assert path.read_text() == render.env_file_text(service), "stale: run .venv/bin/python infra/render.py"
    variables = json.loads(path.read_text())["Invoke"]
    assert {"BIOIMS_RUNTIME", *package.environment(service)} <= set(variables)
    assert variables["BIOIMS_DYNAMODB_URL"] == emulate.LOCAL_ENDPOINTS["dynamodb"]
