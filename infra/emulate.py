"""Run one packaged Lambda service under the AWS Lambda Runtime Interface Emulator, without Docker.

``make emulate SERVICE=tags`` (or ``.venv/bin/python infra/emulate.py tags --port 9100``) extracts
``build/package/<service>/deployment.zip`` (``make package``) into ``build/emulate/<service>/`` and runs

    aws-lambda-rie --runtime-interface-emulator-address 127.0.0.1:PORT python3.12 -S -m awslambdaric app.invoke

(the emulator ships inside the aws-sam-cli wheel of ``.tools``; the runtime client ``awslambdaric`` is in
``.tools/lambda-runtime``; ``-S``: only the artifact and the runtime client on the path, as on Lambda) with
the environment of ``services/<service>/env.json``: what the service's template gives its ``Invoke``
function, pointed at local servers (the file ``sam local invoke --env-vars`` reads). Invoke it with any
Lambda client at ``http://127.0.0.1:PORT`` (function name ``function``)::

    aws lambda invoke --endpoint-url http://127.0.0.1:9100 --function-name function \\
        --payload fileb://services/tags/events/createTag.json /dev/stdout

``tests/integration/test_lambda_emulator.py`` runs all five this way, calling each other.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import package  # infra/package.py
from bioims.local_stack import free_port

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools"
PYTHON312 = TOOLS / "py312" / "bin" / "python"
RUNTIME_CLIENT = TOOLS / "lambda-runtime"
LOCAL_ENDPOINTS = {"dynamodb": "http://127.0.0.1:4567", "s3": "http://127.0.0.1:5000"}
"""Where ``services/<name>/env.json`` points a function: dynalite (``npx dynalite --port 4567``) and moto's
server for S3 and Step Functions (``.venv/bin/moto_server -p 5000``); from ``sam local invoke``'s container,
use ``host.docker.internal`` instead of 127.0.0.1."""
LOCAL_PORTS = {service: 9100 + i for i, service in enumerate(package.SERVICES)}
"""The port ``make emulate SERVICE=`` serves each service on (its callers' env.json name these)."""
LOCAL_VALUES = {"TablePrefix": "bioims-dev-", "ArtifactUri": "s3://bioims-dev-artifacts/bioims",
                "InputBucket": "bioims-dev-input",
                **{f"{w}StateMachine": f"arn:aws:states:us-east-1:123456789012:stateMachine:bioims-dev-{n}"
                   for w, n in (("ProcessPlate", "process-plate"), ("Train", "train"), ("Embed", "embed"))}}


def rie() -> Path | None:
    """The emulator binary inside the aws-sam-cli wheel (None before ``make tools``)."""
    return next(iter(sorted(TOOLS.glob("lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64"))), None)


def template_environment(service: str, values: dict[str, str]) -> dict[str, str]:
    """The ``Invoke`` function's environment in ``build/package/<service>/sam.json``, its parameters
    (``{"Ref": name}``) set from ``values``."""
    template = json.loads((package.BUILD / service / "sam.json").read_text())
    variables = template["Resources"]["Invoke"]["Properties"]["Environment"]["Variables"]
    return {var: value if isinstance(value, str) else values[value["Ref"]] for var, value in variables.items()}


def local_environment(service: str, values: dict[str, str], endpoints: dict[str, str]) -> dict[str, str]:
    """What a function of ``service`` runs with on this machine: its template's environment (parameters
    from ``values``, a callee's function as its emulator's URL) and the local servers' endpoints."""
    environment = {var: values[name] for var, name in package.environment(service).items()}
    return {"BIOIMS_RUNTIME": "aws", **environment, "BIOIMS_DYNAMODB_URL": endpoints["dynamodb"],
            "AWS_ENDPOINT_URL_S3": endpoints["s3"], "AWS_ENDPOINT_URL_SFN": endpoints["s3"],
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def env_file(service: str) -> dict[str, dict[str, str]]:
    """``services/<service>/env.json`` (``sam local invoke --env-vars``): both functions, local servers."""
    values = LOCAL_VALUES | {package.function_parameter(s): f"http://127.0.0.1:{port}" for s, port in LOCAL_PORTS.items()}
    environment = local_environment(service, values, LOCAL_ENDPOINTS)
    return {"Invoke": environment, "APIHandler": environment}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Emulator:
    """One service's ``invoke`` function under ``aws-lambda-rie``, from its extracted artifact; its output
    (the emulator's and the function's log lines) goes to ``log``."""

    def __init__(self, service: str, task: Path, port: int, environment: dict[str, str], log: Path) -> None:
        binary = rie()
        if binary is None or not PYTHON312.exists() or not (RUNTIME_CLIENT / "awslambdaric").exists():
            raise SystemExit("the Lambda emulator, python3.12 or awslambdaric is missing: make tools package "
                             ".tools/lambda-runtime/.installed")
        self.service, self.port, self.log = service, port, log
        shutil.rmtree(task, ignore_errors=True)
        with zipfile.ZipFile(package.BUILD / service / "deployment.zip") as zf:
            zf.extractall(task)
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(task), "LAMBDA_TASK_ROOT": str(task),
               "PYTHONPATH": f"{task}:{RUNTIME_CLIENT}", "AWS_LAMBDA_FUNCTION_NAME": f"bioims-{service}-invoke",
               **environment}
        self.process = subprocess.Popen(
            [str(binary), "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
             "--runtime-api-address", f"127.0.0.1:{free_port()}",  # its default, :9001, would clash between emulators
             str(PYTHON312), "-S", "-m", "awslambdaric", "app.invoke"],
            cwd=task, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"

    def wait(self, timeout: float = 30.0) -> Emulator:
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.service} emulator exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.service} emulator does not listen on {self.url}")
            time.sleep(0.1)
        return self

    def events(self) -> list[dict[str, Any]]:
        """The structured log lines (:mod:`bioims.logs`) the function wrote."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"event"')]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("service", choices=package.SERVICES)
    parser.add_argument("--port", type=int, help="default: the service's port in the env.json files (9100-9104)")
    args = parser.parse_args(argv)
    if package.stale():
        print(f"error: {package.stale()}", file=sys.stderr)
        return 2
    port = args.port or LOCAL_PORTS[args.service]
    environment = json.loads((ROOT / "services" / args.service / "env.json").read_text())["Invoke"]
    work = ROOT / "build" / "emulate"
    work.mkdir(parents=True, exist_ok=True)
    emulator = Emulator(args.service, work / args.service, port, environment, work / f"{args.service}.log").wait()
    print(f"{args.service}: http://127.0.0.1:{port} (function name 'function'); log {emulator.log}; Ctrl-C stops")
    try:
        emulator.process.wait()
    except KeyboardInterrupt:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
