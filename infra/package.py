"""Package every Lambda service for SAM (python3.12) and check the artifacts: ``make package``.

For each service of ``services/`` this writes ``build/package/<service>/``:

- ``deployment.zip``: the Chalice app (``app.py`` + Chalice's runtime, from ``chalice package``), the
  ``bioims`` package (from ``shared/bioims``) and its runtime dependencies (``[project].dependencies`` of
  ``shared/pyproject.toml``, as manylinux wheels for CPython 3.12; test suites and C headers of the
  big libraries pruned). The dependencies are installed once per requirement set
  (``build/package/.deps/<hash>/``) and shared by the five services.
- ``sam.json``: Chalice's SAM template, completed for nesting in ``template.yaml``: parameters for every
  resource the code uses (set as ``BIOIMS_*`` environment variables on both functions), the role made by
  ``infra/functions.yaml`` (``RoleArn``), fixed function names (``<Prefix>-<service>-api`` and
  ``-invoke``), a regional REST API whose every method requires IAM (SigV4) authorisation, and the
  outputs ``EndpointURL`` and ``InvokeFunctionName``.

Checks (a failure exits 1 and says what to fix):

- the unzipped size is under Lambda's limit (250 MB for the function code and its layers);
- the artifact contains its imports: the zip is extracted and, under the python3.12 interpreter with
  no site-packages, ``import app`` must give a Chalice app and the ``invoke`` handler, and the AWS
  composition root (``bioims.runtime.aws``) must build (no network: clients only).

A summary goes to ``build/package/report.json`` (read by ``tests/unit/test_package.py``).

Tools: ``.tools/py312`` (python3.12 with chalice and the runtime dependencies, so Chalice can import the
app), made by ``make package``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "package"
TOOLS = ROOT / ".tools" / "py312"
SERVICES = ("image-management", "artifact", "tags", "training", "embedding")
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
"""Lambda's limit on a function's unzipped code (with its layers): 250 MB (262,144,000 bytes)."""
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
EXCLUDED_REQUIREMENTS = {"chalice"}  # `chalice package` adds its own runtime (chalice/app.py)
PRUNED_PACKAGES = ("numpy", "scipy", "pandas", "pyarrow", "PIL", "pynamodb")
PRUNED_DIRS = ("tests", "test", "include")

# the parameters of a service's nested stack -> the environment variable each becomes
ENVIRONMENT: dict[str, str] = {
    "BIOIMS_TABLE_PREFIX": "TablePrefix",
    "BIOIMS_ARTIFACT_URI": "ArtifactUri",
    "BIOIMS_INPUT_BUCKET": "InputBucket",
    "BIOIMS_SFN_PROCESS_PLATE_ARN": "ProcessPlateStateMachine",
    "BIOIMS_SFN_TRAIN_ARN": "TrainStateMachine",
    "BIOIMS_SFN_EMBED_ARN": "EmbedStateMachine",
    "BIOIMS_BATCH_CPU_QUEUE": "CpuQueue",
    "BIOIMS_BATCH_GPU_QUEUE": "GpuQueue",
    "BIOIMS_BATCH_JOB_DEFINITION": "JobDefinition",
    "BIOIMS_SEARCH_URL": "SearchUrl",
}
FUNCTION_NAMES = {"APIHandler": "api", "Invoke": "invoke"}


class PackagingError(Exception):
    """A service that cannot be packaged (the reason is reported)."""


def function_env_name(service: str) -> str:
    return "BIOIMS_FUNCTION_" + service.upper().replace("-", "_")


# ------------------------------------------------------------------------------------------ dependencies
def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "shared" / "pyproject.toml").read_text())["project"]
    reqs = [r for r in project["dependencies"] if r.split("=")[0].split("<")[0].split(">")[0].strip().lower()
            not in EXCLUDED_REQUIREMENTS]
    return sorted(reqs)


def _pruned(name: str) -> bool:
    parts = name.split("/")
    return (len(parts) > 2 and parts[0] in PRUNED_PACKAGES and any(p in PRUNED_DIRS for p in parts[1:-1])) \
        or "__pycache__" in parts or name.endswith(".pyc")


def build_dependencies(reqs: list[str]) -> Path:
    """The zip of the dependencies for these requirements (built once, then reused)."""
    key = hashlib.sha256(("\n".join(reqs) + "\n" + " ".join(PLATFORMS)).encode()).hexdigest()[:16]
    target = BUILD / ".deps" / key
    deps_zip = target / "deps.zip"
    if deps_zip.exists():
        return deps_zip
    site = target / "site"
    shutil.rmtree(target, ignore_errors=True)
    site.mkdir(parents=True)
    (target / "requirements.txt").write_text("\n".join(reqs) + "\n")
    cmd = [str(TOOLS / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-compile", "--target", str(site), "--implementation", "cp", "--python-version", "3.12",
           "--abi", "cp312", "--only-binary=:all:", "-r", str(target / "requirements.txt")]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    print(f"installing the Lambda dependencies (python3.12 manylinux wheels): {' '.join(reqs)}", flush=True)
    subprocess.run(cmd, check=True)
    tmp = deps_zip.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(site.rglob("*")):
            name = path.relative_to(site).as_posix()
            if path.is_file() and not _pruned(name) and not name.startswith("bin/"):
                zf.write(path, name)
    tmp.replace(deps_zip)
    shutil.rmtree(site)
    return deps_zip


# --------------------------------------------------------------------------------------------- services
def chalice_package(service: str, work: Path) -> Path:
    """``chalice package`` of one app (no requirements: the dependencies are added afterwards)."""
    src = work / "src"
    shutil.rmtree(src, ignore_errors=True)
    (src / ".chalice").mkdir(parents=True)
    shutil.copy2(ROOT / "services" / service / "app.py", src / "app.py")
    shutil.copy2(ROOT / "services" / service / ".chalice" / "config.json", src / ".chalice" / "config.json")
    (src / "requirements.txt").write_text("")
    out = work / "chalice"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
           "PYTHONPATH": str(ROOT / "shared")}
    proc = subprocess.run([str(TOOLS / "bin" / "chalice"), "package", "--stage", "dev", str(out)], cwd=src,
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("WARNING: Location")]
        frames = [line.split('"')[1] for line in lines if line.strip().startswith('File "') and "/bioims/" in line]
        where = f" (imported by {Path(frames[-1]).relative_to(ROOT)})" if frames else ""
        raise PackagingError(f"chalice package failed: it imports the app with the runtime dependencies of "
                             f"shared/pyproject.toml only: {lines[-1] if lines else proc.returncode}{where}")
    return out


def assemble(deps_zip: Path, chalice_zip: Path, target: Path) -> None:
    """deployment.zip = the dependencies + Chalice's files (app.py, chalice/) + the bioims package."""
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(deps_zip, tmp)
    with zipfile.ZipFile(tmp, "a", zipfile.ZIP_DEFLATED, compresslevel=6) as out:
        present = set(out.namelist())
        with zipfile.ZipFile(chalice_zip) as app:
            for info in app.infolist():
                if info.filename not in present and not info.filename.startswith("bioims/"):
                    out.writestr(info, app.read(info))
        package = ROOT / "shared" / "bioims"
        for path in sorted(package.rglob("*")):
            name = "bioims/" + path.relative_to(package).as_posix()
            if path.is_file() and not _pruned(name):
                out.write(path, name)
    tmp.replace(target)


def complete_template(template: dict[str, Any], service: str) -> dict[str, Any]:
    """Chalice's ``sam.json`` made nestable (see the module docstring)."""
    t = copy.deepcopy(template)
    t["Description"] = f"bioims {service} service: REST API (IAM authorisation) and Lambda functions"
    params = {"Prefix": "Name prefix of the functions (bioims-<env>)",
              "RoleArn": f"The {service} role (infra/functions.yaml)"}
    params |= {name: f"{var} of the functions" for var, name in ENVIRONMENT.items()}
    t["Parameters"] = {name: {"Type": "String", "Description": text} for name, text in params.items()}
    resources = t["Resources"]
    resources.pop("DefaultRole", None)
    env: dict[str, Any] = {"BIOIMS_RUNTIME": "aws"}
    env |= {var: {"Ref": name} for var, name in ENVIRONMENT.items()}
    env |= {function_env_name(s): {"Fn::Sub": f"${{Prefix}}-{s}-invoke"} for s in SERVICES}
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        if logical not in FUNCTION_NAMES:
            raise SystemExit(f"{service}: unexpected function {logical} in Chalice's template")
        props = resource["Properties"]
        props["FunctionName"] = {"Fn::Sub": f"${{Prefix}}-{service}-{FUNCTION_NAMES[logical]}"}
        props["Role"] = {"Ref": "RoleArn"}
        props["Environment"] = {"Variables": dict(env)}
        if props.get("Runtime") != "python3.12":
            raise SystemExit(f"{service}: runtime {props.get('Runtime')}, not python3.12 (run chalice with 3.12)")
    api = resources.get("RestAPI")
    if api is None:
        raise SystemExit(f"{service}: Chalice's template has no RestAPI")
    api["Properties"]["EndpointConfiguration"] = "REGIONAL"
    body = api["Properties"]["DefinitionBody"]
    body.setdefault("securityDefinitions", {})["sigv4"] = {
        "type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4"}
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            if method != "options":
                operation["security"] = [{"sigv4": []}]
    t.setdefault("Outputs", {})["InvokeFunctionName"] = {"Value": {"Ref": "Invoke"}}
    return t


# ------------------------------------------------------------------------------------------------ checks
_IMPORT_CHECK = """
import importlib, os, sys, time
started = time.perf_counter()
import app
from chalice import Chalice
assert isinstance(app.app, Chalice), type(app.app)
for handler in HANDLERS:
    module, _, name = handler.rpartition(".")
    if not callable(getattr(importlib.import_module(module), name, None)):
        raise SystemExit(f"handler {handler} (Chalice's template) is not a callable of {module}.py")
os.environ.update(ENVIRONMENT)
from bioims import runtime
import inspect
runtime.aws(service=SERVICE) if "service" in inspect.signature(runtime.aws).parameters else runtime.aws()
print(f"{time.perf_counter() - started:.2f}")
"""


def check_environment(service: str) -> dict[str, str]:
    """Well-formed stand-ins for what the template sets on the functions (no AWS is called)."""
    region, account, prefix = "us-east-1", "123456789012", "bioims-check"
    values = {
        "TablePrefix": "bioims-check-", "ArtifactUri": "s3://bioims-check-artifacts/bioims",
        "InputBucket": "bioims-check-input",
        "ProcessPlateStateMachine": f"arn:aws:states:{region}:{account}:stateMachine:{prefix}-process-plate",
        "TrainStateMachine": f"arn:aws:states:{region}:{account}:stateMachine:{prefix}-train",
        "EmbedStateMachine": f"arn:aws:states:{region}:{account}:stateMachine:{prefix}-embed",
        "CpuQueue": f"arn:aws:batch:{region}:{account}:job-queue/{prefix}-cpu",
        "GpuQueue": f"arn:aws:batch:{region}:{account}:job-queue/{prefix}-gpu",
        "JobDefinition": f"arn:aws:batch:{region}:{account}:job-definition/{prefix}-jobs:1",
        "SearchUrl": f"https://abcdef1234.execute-api.{region}.amazonaws.com",
    }
    env = {var: values[name] for var, name in ENVIRONMENT.items()}
    env |= {function_env_name(s): f"{prefix}-{s}-invoke" for s in SERVICES}
    env |= {"BIOIMS_RUNTIME": "aws", "AWS_DEFAULT_REGION": region, "AWS_ACCESS_KEY_ID": "check",
            "AWS_SECRET_ACCESS_KEY": "check"}
    return env


def check_imports(deployment: Path, handlers: list[str], service: str) -> tuple[bool, str, float]:
    """Extract the zip and import the app under python3.12 without site-packages (Lambda's view)."""
    python = str(TOOLS / "bin" / "python")  # python3.12; -S: without its site-packages, as on Lambda
    with tempfile.TemporaryDirectory(prefix="bioims-lambda-") as task:
        with zipfile.ZipFile(deployment) as zf:
            zf.extractall(task)
        code = (f"import sys; sys.path[:0] = [{task!r}]\nHANDLERS = {handlers!r}\nSERVICE = {service!r}\n"
                f"ENVIRONMENT = {check_environment(service)!r}\n" + _IMPORT_CHECK)
        proc = subprocess.run([python, "-S", "-s", "-E", "-c", code], cwd=task, capture_output=True, text=True,
                              env={"PATH": os.environ.get("PATH", ""), "HOME": task, "LANG": "C.UTF-8"})
    if proc.returncode != 0:
        return False, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed", 0.0
    return True, "", float(proc.stdout.strip().splitlines()[-1])


def package(service: str, deps_zip: Path) -> dict[str, Any]:
    started = time.perf_counter()
    work = BUILD / service
    work.mkdir(parents=True, exist_ok=True)
    try:
        out = chalice_package(service, work)
    except PackagingError as e:
        return {"service": service, "problems": [str(e)], "zip_bytes": 0, "unzipped_bytes": 0, "files": 0,
                "limit_bytes": LAMBDA_UNZIPPED_LIMIT, "import_ok": False, "import_seconds": 0.0,
                "seconds": round(time.perf_counter() - started, 1)}
    assemble(deps_zip, out / "deployment.zip", work / "deployment.zip")
    template = complete_template(json.loads((out / "sam.json").read_text()), service)
    (work / "sam.json").write_text(json.dumps(template, indent=1) + "\n")
    with zipfile.ZipFile(work / "deployment.zip") as zf:
        infos = zf.infolist()
        names = {i.filename for i in infos}
    unzipped = sum(i.file_size for i in infos)
    handlers = sorted(r["Properties"]["Handler"] for r in template["Resources"].values()
                      if r["Type"] == "AWS::Serverless::Function")
    ok, error, import_seconds = check_imports(work / "deployment.zip", handlers, service)
    problems = []
    if unzipped >= LAMBDA_UNZIPPED_LIMIT:
        problems.append(f"unzipped size {unzipped / 1e6:.1f} MB is over Lambda's limit of "
                        f"{LAMBDA_UNZIPPED_LIMIT / 1e6:.1f} MB")
    if not ok:
        problems.append(f"import check failed: {error}")
    for required in ("app.py", "chalice/app.py", "bioims/__init__.py", "bioims/runtime.py"):
        if required not in names:
            problems.append(f"{required} is missing from the zip")
    return {"service": service, "zip": str((work / "deployment.zip").relative_to(ROOT)),
            "template": str((work / "sam.json").relative_to(ROOT)), "zip_bytes": (work / "deployment.zip").stat().st_size,
            "unzipped_bytes": unzipped, "files": len(infos), "limit_bytes": LAMBDA_UNZIPPED_LIMIT,
            "import_ok": ok, "import_seconds": import_seconds, "problems": problems,
            "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("services", nargs="*", default=list(SERVICES))
    args = parser.parse_args(argv)
    if not (TOOLS / "bin" / "chalice").exists():
        print(f"error: {TOOLS}/bin/chalice is missing (make package creates it)", file=sys.stderr)
        return 2
    BUILD.mkdir(parents=True, exist_ok=True)
    deps_zip = build_dependencies(requirements())
    results = []
    for service in args.services:
        result = package(service, deps_zip)
        results.append(result)
        status = "ok" if not result["problems"] else "FAILED: " + "; ".join(result["problems"])
        print(f"{service:17s} {result['zip_bytes'] / 1e6:6.1f} MB zip, {result['unzipped_bytes'] / 1e6:6.1f} MB "
              f"unzipped (limit {LAMBDA_UNZIPPED_LIMIT / 1e6:.0f}), import {result['import_seconds']:.1f} s, "
              f"{result['seconds']:.0f} s: {status}", flush=True)
    report = {"requirements": requirements(), "python": "3.12", "services": {r["service"]: r for r in results}}
    (BUILD / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
