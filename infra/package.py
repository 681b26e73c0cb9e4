"""Package every Lambda service for SAM (python3.12) and check the artifacts: ``make package``.

For each service of ``services/`` this writes ``build/package/<service>/``:

- ``deployment.zip``: the Chalice app (``app.py`` + Chalice's runtime, from ``chalice package``), the
  modules of the ``bioims`` package that the app reaches (:func:`service_modules`: the app's imports and
  the service's own package, followed through every import; never another service's package) and the
  distributions of the service's own ``services/<service>/requirements.txt`` (manylinux wheels for
  CPython 3.12; test suites and C headers of the big libraries pruned). Entries are sorted and dated
  1980-01-01, so the zip is a function of its inputs: rebuilding after a change to one service changes
  only that service's zip. Dependencies are installed once per requirement set
  (``build/package/.deps/<hash>/``).
- ``sam.json``: Chalice's SAM template, completed for nesting in ``template.yaml``: a parameter for each
  resource the service uses, set as a ``BIOIMS_*`` environment variable on both functions (only what
  the service needs: :func:`environment`), the role of ``services/<service>/template.yaml`` (``RoleArn``), fixed
  function names (``<Prefix>-<service>-api`` and ``-invoke``), a regional REST API whose every method
  requires IAM (SigV4) authorisation, and the outputs ``EndpointURL`` and ``InvokeFunctionName``.

Checks (a failure exits 1 and says what to fix):

- the service's requirements cover what its modules import when they load (:func:`missing_requirements`);
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

import modules  # infra/modules.py: the import graph of the bioims package

from bioims.runtime import AWS_NEEDS, CALLS, SERVICE_CLASSES
from bioims.settings import ENV_NAMES, function_variable

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "package"
TOOLS = ROOT / ".tools" / "py312"
SERVICES = ("image-management", "artifact", "tags", "training", "embedding")
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
"""Lambda's limit on a function's unzipped code (with its layers): 250 MB (262,144,000 bytes)."""
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
PRUNED_PACKAGES = ("numpy", "scipy", "pandas", "pyarrow", "PIL", "pynamodb")
PRUNED_DIRS = ("tests", "test", "include")

# a resource the functions use: its environment variable -> the nested stack's parameter that sets it
PARAMETERS: dict[str, str] = {
    "BIOIMS_TABLE_PREFIX": "TablePrefix",
    "BIOIMS_ARTIFACT_URI": "ArtifactUri",
    "BIOIMS_INPUT_BUCKET": "InputBucket",
    "BIOIMS_SFN_PROCESS_PLATE_ARN": "ProcessPlateStateMachine",
    "BIOIMS_SFN_TRAIN_ARN": "TrainStateMachine",
    "BIOIMS_SFN_EMBED_ARN": "EmbedStateMachine",
}
READS_INPUT = {"image-management", "training"}
"""The services that read the input bucket: images and manifests; custom training filters."""
FUNCTION_NAMES = {"APIHandler": "api", "Invoke": "invoke"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
"""The date of every zip entry (the zip's bytes depend only on what it holds)."""


class PackagingError(Exception):
    """A service that cannot be packaged (the reason is reported)."""


def function_parameter(service: str) -> str:
    """``"image-management"`` -> ``"ImageManagementFunction"`` (the parameter naming its invoke function)."""
    return "".join(part.title() for part in service.split("-")) + "Function"


def environment(service: str) -> dict[str, str]:
    """What the service's functions are given: environment variable -> the parameter that sets it. Its
    tables and stored objects, the input bucket if it reads input, the state machines it starts
    (:data:`bioims.runtime.AWS_NEEDS`) and the invoke functions of the services it calls
    (:data:`bioims.runtime.CALLS`)."""
    env = {var: PARAMETERS[var] for var in ("BIOIMS_TABLE_PREFIX", "BIOIMS_ARTIFACT_URI")}
    if service in READS_INPUT:
        env["BIOIMS_INPUT_BUCKET"] = PARAMETERS["BIOIMS_INPUT_BUCKET"]
    env |= {ENV_NAMES[need]: PARAMETERS[ENV_NAMES[need]] for need in AWS_NEEDS[service]}
    env |= {function_variable(callee): function_parameter(callee) for callee in CALLS[service]}
    return env


# ------------------------------------------------------------------------------------------------ contents
def _roots(service: str) -> set[str]:
    """The modules a service's functions start from: the imports of ``services/<service>/app.py`` and the
    service's package (which :func:`bioims.runtime.build` imports when it builds the service)."""
    app = ROOT / "services" / service / "app.py"
    start = {name for name in modules.imports(app, "app") if name.startswith("bioims")}
    return start | {SERVICE_CLASSES[service].partition(":")[0]}


def service_modules(service: str, package: Path = modules.PACKAGE) -> set[str]:
    """The ``bioims`` modules the service's artifact holds: its roots (:func:`_roots`) with every module
    they import, at load or in a function."""
    return modules.closure(_roots(service), package)[0]


def _distribution(requirement: str) -> str:
    return requirement.split("==")[0].strip().lower()


IMPORT_NAMES = {"pillow": "PIL"}
"""Distribution -> the top-level module it installs, where the two differ."""


def missing_requirements(service: str, package: Path = modules.PACKAGE) -> set[str]:
    """Modules the service's code imports when it loads (module level, through every module it reaches
    that way) that its requirements do not install (Chalice adds its own runtime). Imports inside
    functions that only a Batch job runs (torch in training, onnxruntime in embedding) need not be there;
    what the functions run is exercised under the Lambda emulator (``tests/integration/test_lambda_emulator.py``)."""
    loaded = modules.third_party(modules.closure(_roots(service), package, nested=False)[1])
    installed = {IMPORT_NAMES.get(d, d) for d in map(_distribution, requirements(service))} | {"chalice"}
    return loaded - installed


# ------------------------------------------------------------------------------------------ dependencies
def runtime_pins() -> dict[str, str]:
    """Distribution -> pin of what the services run: ``bioims[server]`` of ``shared/pyproject.toml`` (the
    base install, the ``client`` extra and the ``server`` extra)."""
    project = tomllib.loads((ROOT / "shared" / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pins = [*project["dependencies"], *extras["client"], *extras["server"]]
    return {_distribution(r): r for r in pins if not r.startswith("bioims")}


def requirements(service: str) -> list[str]:
    """The pinned distributions of ``services/<service>/requirements.txt`` (comments and blanks dropped);
    each pin must be the one of ``shared/pyproject.toml`` (the versions tested together)."""
    path = ROOT / "services" / service / "requirements.txt"
    reqs = sorted(line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip())
    pins = runtime_pins()
    for req in reqs:
        if pins.get(_distribution(req)) != req:
            raise PackagingError(f"{path.relative_to(ROOT)}: {req!r} is not a runtime dependency pinned in "
                                 f"shared/pyproject.toml ({pins.get(_distribution(req), 'absent')})")
    return reqs


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
                _write(zf, name, path.read_bytes(), path.stat().st_mode)
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


def _write(zf: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = ((mode & 0o777) | 0o100000) << 16  # a regular file with its permissions
    zf.writestr(info, data, compresslevel=6)


def assemble(deps_zip: Path, chalice_zip: Path, target: Path, service: str, package: Path = modules.PACKAGE) -> int:
    """deployment.zip = the dependencies + Chalice's files (app.py, chalice/) + the service's bioims
    modules (:func:`service_modules`), entries in name order; returns how many bioims modules it holds."""
    entries: dict[str, tuple[bytes, int]] = {}
    with zipfile.ZipFile(deps_zip) as deps:
        for info in deps.infolist():
            entries[info.filename] = (deps.read(info), info.external_attr >> 16)
    with zipfile.ZipFile(chalice_zip) as app:
        for info in app.infolist():
            if info.filename not in entries and not info.filename.startswith("bioims/") and not info.is_dir():
                entries[info.filename] = (app.read(info), 0o644)
    files = modules.files(package)
    shipped = service_modules(service, package)
    for name in shipped:
        path = files[name]
        entries["bioims/" + path.relative_to(package).as_posix()] = (path.read_bytes(), 0o644)
    entries["bioims/py.typed"] = (b"", 0o644)
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as out:
        for name in sorted(entries):
            _write(out, name, *entries[name])
    tmp.replace(target)
    return len(shipped)


def digest(path: Path) -> str:
    """The SHA-256 of a file (hex)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def complete_template(template: dict[str, Any], service: str) -> dict[str, Any]:
    """Chalice's ``sam.json`` made nestable (see the module docstring)."""
    t = copy.deepcopy(template)
    t["Description"] = f"bioims {service} service: REST API (IAM authorisation) and Lambda functions"
    env = environment(service)
    params = {"Prefix": "Name prefix of the functions (bioims-<env>)",
              "RoleArn": f"The {service} role (its services/{service}/template.yaml)"}
    params |= {name: f"{var} of the functions" for var, name in env.items()}
    t["Parameters"] = {name: {"Type": "String", "Description": text} for name, text in params.items()}
    resources = t["Resources"]
    resources.pop("DefaultRole", None)
    variables: dict[str, Any] = {"BIOIMS_RUNTIME": "aws"} | {var: {"Ref": name} for var, name in env.items()}
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        if logical not in FUNCTION_NAMES:
            raise SystemExit(f"{service}: unexpected function {logical} in Chalice's template")
        props = resource["Properties"]
        props["FunctionName"] = {"Fn::Sub": f"${{Prefix}}-{service}-{FUNCTION_NAMES[logical]}"}
        props["Role"] = {"Ref": "RoleArn"}
        props["Environment"] = {"Variables": dict(variables)}
        if props.get("Runtime") != "python3.12":
            raise SystemExit(f"{service}: runtime {props.get('Runtime')}, not python3.12 (run chalice with 3.12)")
    api = resources.get("RestAPI")
    if api is None:
        raise SystemExit(f"{service}: Chalice's template has no RestAPI")
    api["Properties"]["EndpointConfiguration"] = "REGIONAL"
    body = api["Properties"]["DefinitionBody"]
    body.setdefault("securityDefinitions", {})["sigv4"] = {
        "type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4"}
    for methods in body["paths"].values():
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
runtime.aws(service=SERVICE)
loaded = sorted(m for m in sys.modules if m.startswith("bioims.services."))
print(" ".join(loaded))
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
        **{function_parameter(s): f"{prefix}-{s}-invoke" for s in SERVICES},
    }
    env = {var: values[name] for var, name in environment(service).items()}
    env |= {"BIOIMS_RUNTIME": "aws", "AWS_DEFAULT_REGION": region, "AWS_ACCESS_KEY_ID": "check",
            "AWS_SECRET_ACCESS_KEY": "check"}
    return env


def check_imports(deployment: Path, handlers: list[str], service: str) -> tuple[bool, str, float, list[str]]:
    """Extract the zip and import the app under python3.12 without site-packages (Lambda's view); the
    service modules loaded are returned (only the service's own package should be)."""
    python = str(TOOLS / "bin" / "python")  # python3.12; -S: without its site-packages, as on Lambda
    with tempfile.TemporaryDirectory(prefix="bioims-lambda-") as task:
        with zipfile.ZipFile(deployment) as zf:
            zf.extractall(task)
        code = (f"import sys; sys.path[:0] = [{task!r}]\nHANDLERS = {handlers!r}\nSERVICE = {service!r}\n"
                f"ENVIRONMENT = {check_environment(service)!r}\n" + _IMPORT_CHECK)
        proc = subprocess.run([python, "-S", "-s", "-E", "-c", code], cwd=task, capture_output=True, text=True,
                              env={"PATH": os.environ.get("PATH", ""), "HOME": task, "LANG": "C.UTF-8"})
    if proc.returncode != 0:
        return False, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed", 0.0, []
    *_, loaded, seconds = proc.stdout.strip().splitlines()
    return True, "", float(seconds), loaded.split()


def package(service: str) -> dict[str, Any]:
    started = time.perf_counter()
    work = BUILD / service
    work.mkdir(parents=True, exist_ok=True)
    failed = {"service": service, "zip_bytes": 0, "unzipped_bytes": 0, "files": 0, "limit_bytes": LAMBDA_UNZIPPED_LIMIT,
              "import_ok": False, "import_seconds": 0.0}
    try:
        reqs = requirements(service)
        missing = missing_requirements(service)
        if missing:
            raise PackagingError(f"services/{service}/requirements.txt does not install what its modules import "
                                 f"when they load: {', '.join(sorted(missing))}")
        out = chalice_package(service, work)
    except PackagingError as e:
        return failed | {"problems": [str(e)], "seconds": round(time.perf_counter() - started, 1)}
    modules_count = assemble(build_dependencies(reqs), out / "deployment.zip", work / "deployment.zip", service)
    template = complete_template(json.loads((out / "sam.json").read_text()), service)
    (work / "sam.json").write_text(json.dumps(template, indent=1) + "\n")
    with zipfile.ZipFile(work / "deployment.zip") as zf:
        infos = zf.infolist()
        names = {i.filename for i in infos}
    unzipped = sum(i.file_size for i in infos)
    handlers = sorted(r["Properties"]["Handler"] for r in template["Resources"].values()
                      if r["Type"] == "AWS::Serverless::Function")
    ok, error, import_seconds, loaded = check_imports(work / "deployment.zip", handlers, service)
    problems = []
    if unzipped >= LAMBDA_UNZIPPED_LIMIT:
        problems.append(f"unzipped size {unzipped / 1e6:.1f} MB is over Lambda's limit of "
                        f"{LAMBDA_UNZIPPED_LIMIT / 1e6:.1f} MB")
    if not ok:
        problems.append(f"import check failed: {error}")
    own = SERVICE_CLASSES[service].partition(":")[0]
    foreign = sorted({m for m in loaded if not (m == own or m.startswith(own + ".")) and m != "bioims.services.ports"})
    if foreign:
        problems.append(f"the {service} functions load other services' modules: {', '.join(foreign)}")
    for required in ("app.py", "chalice/app.py", "bioims/__init__.py", "bioims/runtime.py"):
        if required not in names:
            problems.append(f"{required} is missing from the zip")
    return {"service": service, "zip": str((work / "deployment.zip").relative_to(ROOT)),
            "template": str((work / "sam.json").relative_to(ROOT)), "zip_bytes": (work / "deployment.zip").stat().st_size,
            "sha256": digest(work / "deployment.zip"), "requirements": reqs, "bioims_modules": modules_count,
            "unzipped_bytes": unzipped, "files": len(infos), "limit_bytes": LAMBDA_UNZIPPED_LIMIT,
            "import_ok": ok, "import_seconds": import_seconds, "problems": problems,
            "seconds": round(time.perf_counter() - started, 1)}


def sources() -> list[Path]:
    """The files the artifacts are built from."""
    services = ROOT / "services"
    return [*(ROOT / "shared" / "bioims").rglob("*.py"), ROOT / "shared" / "pyproject.toml", ROOT / "infra" / "package.py",
            ROOT / "infra" / "modules.py", *services.glob("*/app.py"), *services.glob("*/requirements.txt"),
            *services.glob("*/.chalice/config.json")]


def stale() -> str | None:
    """Why the artifacts of ``build/package/`` cannot be used now (None: they are built from the current
    sources)."""
    report = BUILD / "report.json"
    if not report.exists():
        return "no Lambda artifacts: run `make package`"
    if max(p.stat().st_mtime for p in sources()) > report.stat().st_mtime:
        return "the Lambda artifacts are older than the sources: run `make package`"
    if set(json.loads(report.read_text())["services"]) != set(SERVICES):
        return "not every service is packaged: run `make package`"
    return None


def deploy_parameters(service: str, env: str, root_outputs: list[dict[str, str]], overrides: str) -> str:
    """The ``--parameter-overrides`` of ``services/<service>/template.yaml`` deployed alone in ``env``
    (``make deploy SERVICE=... ENV=...``): the shared infrastructure's names from the root stack's outputs
    (deployed with ``NestServices=false``), the table and artifact prefixes and input bucket from the
    environment's ``samconfig.toml`` overrides, the callees' functions by their fixed names."""
    given = dict(item.split("=", 1) for item in overrides.split())
    outputs = {o["OutputKey"]: o["OutputValue"] for o in root_outputs}
    values = {"Env": env, "Prefix": f"bioims-{env}", "TablePrefix": given.get("TablePrefix", f"bioims-{env}-"),
              "ArtifactPrefix": given.get("ArtifactPrefix", "bioims"), "InputBucket": given.get("InputBucketName"),
              "ArtifactBucket": outputs.get("ArtifactBucketName"), "LogRetentionDays": given.get("LogRetentionDays", "30"),
              **{name: outputs.get(name) for name in ("ProcessPlateStateMachine", "TrainStateMachine", "EmbedStateMachine")},
              **{function_parameter(s): f"bioims-{env}-{s}-invoke" for s in SERVICES}}
    import yaml  # the dev venv's (this runs there)

    declared = yaml.safe_load((ROOT / "services" / service / "template.yaml").read_text())["Parameters"]
    missing = [name for name in declared if values.get(name) is None]
    if missing:
        raise SystemExit(f"deploy {service}: no value for {', '.join(missing)} (is the root stack bioims-{env} "
                         f"deployed, and InputBucketName set in samconfig.toml?)")
    return " ".join(f"{name}={values[name]}" for name in declared)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("services", nargs="*", default=list(SERVICES))
    parser.add_argument("--runtime-pins", action="store_true", help="print the services' runtime pins and exit")
    parser.add_argument("--deploy-parameters", nargs=3, metavar=("ENV", "ROOT_OUTPUTS_JSON", "OVERRIDES"),
                        help="print the parameter overrides of one service deployed alone (make deploy SERVICE=)")
    args = parser.parse_args(argv)
    if args.runtime_pins:
        print(" ".join(sorted(runtime_pins().values())))
        return 0
    if args.deploy_parameters:
        env, outputs, overrides = args.deploy_parameters
        (service,) = args.services
        print(deploy_parameters(service, env, json.loads(Path(outputs).read_text()) or [], overrides))
        return 0
    if not (TOOLS / "bin" / "chalice").exists():
        print(f"error: {TOOLS}/bin/chalice is missing (make package creates it)", file=sys.stderr)
        return 2
    BUILD.mkdir(parents=True, exist_ok=True)
    results = []
    for service in args.services:
        result = package(service)
        results.append(result)
        status = "ok" if not result["problems"] else "FAILED: " + "; ".join(result["problems"])
        print(f"{service:17s} {result['zip_bytes'] / 1e6:6.1f} MB zip, {result['unzipped_bytes'] / 1e6:6.1f} MB "
              f"unzipped (limit {LAMBDA_UNZIPPED_LIMIT / 1e6:.0f}), import {result['import_seconds']:.1f} s, "
              f"{result['seconds']:.0f} s: {status}", flush=True)
    report = {"python": "3.12", "services": {r["service"]: r for r in results}}
    (BUILD / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
