"""The Lambda artifacts of ``make package`` (``build/package/<service>/``), read back.

Building them takes minutes the first time (python3.12 wheels, five zips, an import check each), so the
build is ``make package``'s (``infra/package.py``), which runs this file with ``BIOIMS_PACKAGE_BUILT=1``
right after; ``make test`` packages first, so they run there too. Run alone, they are skipped when no
package built from the current sources exists (never built, or sources changed since: run ``make package``).

Checked per service: the zip exists and holds the app, Chalice's runtime, its requirements and its bioims
modules; its unzipped size is under Lambda's 250 MB; its imports passed (``import app`` and the AWS
composition root under python3.12 without site-packages, done by ``infra/package.py``); its SAM template
runs python3.12 with the role and the environment its service template passes and an API that requires
IAM authorisation.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "package"
REPORT = BUILD / "report.json"
sys.path.insert(0, str(ROOT / "infra"))
import package

import permissions

BUILT = os.environ.get("BIOIMS_PACKAGE_BUILT") == "1"
_reason = package.stale()
if _reason is not None and BUILT:
    raise RuntimeError(f"make package: {_reason}")
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(REPORT.read_text())


@pytest.mark.parametrize("service", permissions.SERVICES)
def test_artifact_is_complete_and_under_the_size_limit(report, service):
    result = report["services"][service]
    assert result["problems"] == [], f"{service}: " + "; ".join(result["problems"])
    zip_path = ROOT / result["zip"]
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
    names = {i.filename for i in infos}
    assert {"app.py", "chalice/app.py", "chalice/__init__.py", "bioims/__init__.py", "bioims/runtime.py",
            "bioims/api/chalice_app.py"} <= names
    for requirement in result["requirements"]:
        top = package.IMPORT_NAMES.get(package._distribution(requirement), package._distribution(requirement))
        assert any(n.startswith(f"{top}/") for n in names), f"{service}: {requirement} is not in the zip"
    assert not any(n.startswith(("torch/", "onnxruntime/", "faiss/", "pyarrow/")) for n in names)
    assert result["sha256"] == package.digest(zip_path)
    unzipped = sum(i.file_size for i in infos)
    assert unzipped == result["unzipped_bytes"] < package.LAMBDA_UNZIPPED_LIMIT


@pytest.mark.parametrize("service", permissions.SERVICES)
def test_artifact_imports_under_python312(report, service):
    result = report["services"][service]
    assert report["python"] == "3.12"
    assert result["import_ok"], result["problems"]


@pytest.mark.parametrize("service", permissions.SERVICES)
def test_sam_template_is_ready_to_nest(service):
    template = json.loads((BUILD / service / "sam.json").read_text())
    functions = {k: v["Properties"] for k, v in template["Resources"].items()
                 if v["Type"] == "AWS::Serverless::Function"}
    assert set(functions) == {"APIHandler", "Invoke"}
    expected_variables = {"BIOIMS_RUNTIME", *package.environment(service)}
    for logical, props in functions.items():
        assert props["Runtime"] == "python3.12"
        assert props["Role"] == {"Ref": "RoleArn"}
        assert props["CodeUri"] == "./deployment.zip"
        assert set(props["Environment"]["Variables"]) == expected_variables
        suffix = package.FUNCTION_NAMES[logical]
        assert props["FunctionName"] == {"Fn::Sub": f"${{Prefix}}-{service}-{suffix}"}
    assert "DefaultRole" not in template["Resources"]
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    for methods in body["paths"].values():
        for method, operation in methods.items():
            assert operation["security"] == [{"sigv4": []}], method
    assert set(template["Outputs"]) >= {"EndpointURL", "InvokeFunctionName"}


@pytest.mark.parametrize("service", permissions.SERVICES)
def test_each_service_template_passes_the_parameters_its_functions_declare(service):
    from cloudformation import load_template

    declared = set(json.loads((BUILD / service / "sam.json").read_text())["Parameters"])
    api = load_template(ROOT / "services" / service / "template.yaml")["Resources"]["Api"]["Properties"]
    assert api["Location"] == f"../../build/package/{service}/sam.json"
    assert set(api["Parameters"]) == declared
