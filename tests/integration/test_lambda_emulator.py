"""The five Lambda services as AWS runs them: each its own Lambda Runtime Interface Emulator process, from its
own built artifact, calling the others by Lambda invocation.

Each service's ``build/package/<service>/deployment.zip`` (``make package``) is extracted into a task folder
and served by ``aws-lambda-rie`` (the emulator inside the aws-sam-cli wheel) running ``python3.12 -S -m
awslambdaric app.invoke`` (the Lambda runtime client, ``.tools/lambda-runtime``; ``-S``: nothing but the
artifact and the runtime client on the path, as on Lambda). Its environment is what its packaged template
gives the function (``sam.json``: its table prefix, its artifact URI, the state machines it starts, the
function of each service it calls) with the parameters filled in for this machine, as ``sam local invoke
--env-vars`` would: DynamoDB is dynalite, S3 and Step Functions are moto's standalone server, and a
callee's function is its emulator's ``http://127.0.0.1:PORT``.

Every process reaches dynalite and the moto server through a recording proxy of its own, so each AWS call
is attributed to its principal and checked against that principal's grants (``infra/permissions.py``,
with the IAM mapping of ``tests/unit/test_permissions.py``); the cross-service invocations are read from
the structured logs (:mod:`bioims.logs`: ``call`` events of the caller, ``invoke`` events of the callee
with the caller's request id). The Batch job steps and the search service run in this process as their
principals (their own proxies, the emulated functions for the services they call).

The same walkthrough (register plates from manifests in the bucket, inspect / validate / thumbnails,
a spec, preprocessing, a train run, embeddings, a search index and a search) then runs again with every
service in this process (:func:`bioims.runtime.build`) over tables and a bucket of its own; the results must
be equal.
"""

from __future__ import annotations

import http.client
import http.server
import io
import json
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import numpy as np
import pytest
from botocore.config import Config

import permissions
from bioims import logs, runtime
from bioims.contract import SERVICES
from bioims.contract.base import dispatch
from bioims.ids import new_id
from bioims.jobs.runner import run_unit
from bioims.jobs.stepfunctions import StepFunctionsRunner
from bioims.jobs.steps import embed_units
from bioims.local_stack import LocalStack, free_port, reachable
from bioims.profiles.io import read_profiles
from bioims.settings import Settings, function_variable
from bioims.store.objects import ObjectStore
from bioims.store.tables import Database
from tests.unit.test_permissions import (ACCOUNT, ARTIFACT_BUCKET, ARTIFACT_PREFIX, INPUT_BUCKET, PREFIX, REGION, SPEC,
                                         Recorder, granted, manifests)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))
import emulate
import package

LAMBDA_SERVICES = package.SERVICES
LOCAL_PREFIX, LOCAL_BUCKET = "inproc-", "inproc-artifacts"

_missing = package.stale() or next((f"{what} is missing (make test installs it)" for what, path in (
    ("the Lambda emulator (aws-sam-cli in .tools)", emulate.rie()), ("python3.12 (.tools/py312)", emulate.PYTHON312),
    ("awslambdaric (.tools/lambda-runtime)", emulate.RUNTIME_CLIENT / "awslambdaric"))
    if path is None or not path.exists()), None)
pytestmark = [pytest.mark.skipif(_missing is not None, reason=_missing or ""), pytest.mark.xdist_group("emulator")]


# ================================================================= recording proxies
class Proxy(http.server.ThreadingHTTPServer):
    """A principal's endpoint for DynamoDB (to dynalite), S3 and Step Functions (to the moto server):
    forwards every request and records the botocore operation it is, with its parameters."""

    daemon_threads = True

    def __init__(self, principal: str, dynamodb: str, moto: str, record: Callable[..., None]) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.principal, self.record = principal, record
        self.upstreams = {"dynamodb": urlsplit(dynamodb).netloc, "moto": urlsplit(moto).netloc}
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Forward(http.server.BaseHTTPRequestHandler):
    server: Proxy

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        upstream = "dynamodb" if target.startswith("DynamoDB_") else "moto"
        conn = http.client.HTTPConnection(self.server.upstreams[upstream], timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        self.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()
        self.server.record(self.server.principal, target, self.command, self.path, body, response.status)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class Calls:
    """Every AWS call by principal as (IAM action, symbolic resource) -> the operations that made it, with
    :class:`tests.unit.test_permissions.Recorder`'s mapping of botocore operations to IAM."""

    def __init__(self, settings: Settings) -> None:
        self.iam = Recorder(settings)
        self.operation = "setup"
        self.calls: dict[str, dict[tuple[str, str], set[str]]] = defaultdict(lambda: defaultdict(set))
        self.lock = threading.Lock()

    def record(self, principal: str, target: str, method: str, path: str, body: bytes, status: int) -> None:
        for service, operation, params in self._operations(target, method, path, body):
            grants = self.iam.grants(service, operation, params)
            if service == "s3" and operation in ("GetObject", "HeadObject") and status == 404:
                grants.append(("s3:ListBucket", self.iam._bucket(params["Bucket"], params["Key"])))
            with self.lock:
                for grant in grants:
                    self.calls[principal][grant].add(self.operation)

    @staticmethod
    def _operations(target: str, method: str, path: str, body: bytes) -> Iterator[tuple[str, str, dict[str, Any]]]:
        if target:  # JSON protocols: DynamoDB_20120810.Query, AWSStepFunctions.StartExecution
            prefix, _, operation = target.partition(".")
            yield ("dynamodb" if prefix.startswith("DynamoDB_") else "stepfunctions"), operation, json.loads(body or b"{}")
            return
        url = urlsplit(path)
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        query = parse_qs(url.query, keep_blank_values=True)
        if not key:
            if method == "POST" and "delete" in query:
                for element in ET.fromstring(body).iter():
                    if element.tag.endswith("Key"):
                        yield "s3", "DeleteObject", {"Bucket": bucket, "Key": element.text or ""}
            elif method == "GET":
                yield "s3", "ListObjectsV2", {"Bucket": bucket, "Prefix": query.get("prefix", [""])[0]}
            else:
                yield "s3", f"{method} bucket", {"Bucket": bucket}
            return
        operation = {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject", "POST": "PutObject",
                     "DELETE": "DeleteObject"}[method]
        yield "s3", operation, {"Bucket": bucket, "Key": key}


# ================================================================= the emulated functions
def clients_for(proxy: Proxy) -> runtime.ClientFactory:
    """botocore clients of one principal: DynamoDB, S3 and Step Functions through its proxy."""
    made: dict[str, Any] = {}

    def client(name: str) -> Any:
        if name not in made:
            config = Config(parameter_validation=False, retries={"mode": "standard", "total_max_attempts": 3})
            made[name] = boto3.client(name, region_name=REGION, endpoint_url=proxy.url, config=config)
        return made[name]

    return client


def lambda_client(url: str) -> Any:
    return boto3.client("lambda", region_name=REGION, endpoint_url=url,
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=300))


# ================================================================= the walkthrough, on either topology
class Topology:
    """How the walkthrough reaches the services: ``call`` (a Lambda service's operation), ``job`` (a Batch
    job step), ``search`` (the search service), ``setup`` (the test's own hands)."""

    def __init__(self, call: Callable[..., Any], job: Callable[[str, dict[str, Any]], dict[str, Any]],
                 search: Any, setup: runtime.Container, artifact_uri: str) -> None:
        self.call, self.job, self.search, self.setup, self.artifact_uri = call, job, search, setup, artifact_uri


def walkthrough(t: Topology, documents: list[dict[str, Any]], timings: dict[str, float]) -> dict[str, Any]:
    """The walkthrough's service calls on a tiny screen; returns what they computed, free of generated ids."""
    started = time.perf_counter()
    call = t.call
    call("artifact", "set_parameter", parameter="thumbnail-widths", value=[16])
    manifest_uri = f"s3://{INPUT_BUCKET}/manifests/{documents[-1]['plateSourceId']}.json"
    t.setup.objects.put_json(manifest_uri, documents[-1])
    plate_ids = [call("image-management", "populate_source_plate", manifest=d)["plate_id"] for d in documents[:-1]]
    plate_ids.append(call("image-management", "upload_source_plate", manifest=manifest_uri)["plate_id"])
    for plate_id in plate_ids:  # the process-plate state machine's units
        image_ids = call("image-management", "get_image_ids_by_plate_id", plate_id=plate_id)
        for image_id in image_ids:
            t.job("inspect-image", {"image_id": image_id})
        t.job("validate-plate", {"plate_id": plate_id})
        t.job("thumbnails", {"image_id": image_ids[0]})
    first = call("image-management", "get_image_ids_by_plate_id", plate_id=plate_ids[0])[0]
    call("image-management", "make_thumbnails", image_id=first)
    call("image-management", "validate_plate", plate_id=plate_ids[0])
    timings["plates"] = time.perf_counter() - started

    spec = SPEC["name"]
    call("training", "create_embedding", spec=SPEC)
    compatible = call("training", "get_compatible_plates", name=spec)
    call("image-management", "start_preprocess", spec=spec, plate_ids=plate_ids)
    for plate_id in plate_ids:  # the preprocess half of the train state machine
        for channel in SPEC["input"]["channels"]:
            t.job("flatfield", {"spec": spec, "plate_id": plate_id, "channel": channel})
        for image_id in t.setup.preprocessing.valid_image_ids(plate_id):
            t.job("preprocess-image", {"spec": spec, "image_id": image_id})
    timings["preprocess"] = time.perf_counter() - started - timings["plates"]

    train_id = call("training", "create_trainings", spec=spec, holdout="none", epochs=0, seed=5)[0]["train_id"]
    t.job("train-model", {"train_id": train_id, "threads": 1})
    run = call("training", "get_training", train_id=train_id)
    call("embedding", "start_compute_embedding", train_id=train_id)
    for unit in embed_units(train_id, plate_ids):
        t.job("embed-plate", unit)
    progress = call("embedding", "list_plate_embeddings", train_id=train_id)

    t.search.build_index(train_id, "field")
    fields = [f for p in plate_ids for f in call("image-management", "list_spec_fields", spec=spec, plate_id=p)]
    key = {f["image_id"]: (f["plate"], f["well"], f["site"]) for f in fields}
    embeddings = {key[f["image_id"]]: [round(x, 4) for x in call("embedding", "get_image_embedding",
                                                                  image_id=f["image_id"], train_id=train_id)["embedding"]]
                  for f in fields if f["cells"]}
    found = t.search.search(train_id, image_id=first, k=5)
    images = {}
    for plate_id in plate_ids:
        for image in call("image-management", "get_images_by_plate_id", plate_id=plate_id):
            images[(image["plate_source_id"], image["well_source_id"], image["field_source_id"])] = (
                image["status"], image["width"], image["height"], image["depth"], image["dtype"], image.get("error"))
    timings["walkthrough"] = time.perf_counter() - started
    return {
        "plates": sorted((p["source_id"], p["status"]) for p in call("image-management", "list_plates")
                         if p["plate_id"] in plate_ids),
        "images": images,
        "compatible": sorted(p["source_id"] for p in compatible),
        "cells": {key[f["image_id"]]: f["cells"] for f in fields},
        "run": {k: run[k] for k in ("spec_name", "status", "holdout", "filter_count", "metrics")},
        "embedded": sorted((p["plate_id"] in plate_ids, p.get("status")) for p in progress),
        "embeddings": embeddings,
        "hits": [(key.get(h["image_id"], h["id"]), round(h["distance"], 4)) for h in found["hits"]],
    }


# ================================================================= fixtures
@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """dynalite and moto's standalone server (S3, Step Functions) on free ports of 127.0.0.1."""
    home = tmp_path_factory.mktemp("emulator-home")
    stack = LocalStack(Settings(home=home))
    dynamodb = stack.up()
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=(home / "moto.log").open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            reachable(url)
            break
        except Exception:
            if time.monotonic() > deadline or moto.poll() is not None:
                raise RuntimeError(f"moto server did not start: {(home / 'moto.log').read_text()[-2000:]}") from None
            time.sleep(0.2)
    try:
        yield {"dynamodb": dynamodb, "moto": url}
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        stack.down()


@pytest.fixture(scope="module")
def emulated(servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("emulator")
    with pytest.MonkeyPatch.context() as env:
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
            env.setenv(k, v)
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.setenv("AWS_ENDPOINT_URL_S3", servers["moto"])  # the test's own S3 calls (manifests, setup)
        moto_client = lambda name: boto3.client(name, region_name=REGION, endpoint_url=servers["moto"])
        for bucket in (ARTIFACT_BUCKET, INPUT_BUCKET, LOCAL_BUCKET):
            moto_client("s3").create_bucket(Bucket=bucket)
        machines = {workflow: moto_client("stepfunctions").create_state_machine(
            name=f"perm-{workflow}", roleArn=f"arn:aws:iam::{ACCOUNT}:role/states",
            definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
            for workflow in ("process-plate", "train", "embed")}
        ports = {service: free_port() for service in LAMBDA_SERVICES}
        values = {"TablePrefix": PREFIX, "ArtifactUri": f"s3://{ARTIFACT_BUCKET}/{ARTIFACT_PREFIX}",
                  "InputBucket": INPUT_BUCKET, "ProcessPlateStateMachine": machines["process-plate"],
                  "TrainStateMachine": machines["train"], "EmbedStateMachine": machines["embed"],
                  **{package.function_parameter(s): f"http://127.0.0.1:{ports[s]}" for s in LAMBDA_SERVICES}}
        settings = Settings.from_env({
            "BIOIMS_RUNTIME": "aws", "BIOIMS_TABLE_PREFIX": PREFIX, "AWS_DEFAULT_REGION": REGION,
            "BIOIMS_ARTIFACT_URI": values["ArtifactUri"], "BIOIMS_INPUT_BUCKET": INPUT_BUCKET,
            "BIOIMS_SFN_PROCESS_PLATE_ARN": machines["process-plate"], "BIOIMS_SFN_TRAIN_ARN": machines["train"],
            "BIOIMS_SFN_EMBED_ARN": machines["embed"],
            **{function_variable(s): f"http://127.0.0.1:{ports[s]}" for s in LAMBDA_SERVICES}})
        calls = Calls(settings)
        proxies = {p: Proxy(p, servers["dynamodb"], servers["moto"], calls.record)
                   for p in (*LAMBDA_SERVICES, "search", "jobs")}

        setup_database = Database(PREFIX, host=servers["dynamodb"], region=REGION, credentials=("local", "local"))
        for table_set in runtime.table_sets().values():
            table_set(setup_database)
        setup_database.create()
        setup = runtime.build(settings, setup_database, ObjectStore(moto_client("s3")))

        started = time.perf_counter()
        emulators = {}
        for service in LAMBDA_SERVICES:
            endpoints = {"dynamodb": proxies[service].url, "s3": proxies[service].url}
            environment = emulate.template_environment(service, values)  # what its template gives it
            environment |= emulate.local_environment(service, values, endpoints)  # + where the local servers are
            assert set(environment) == set(emulate.local_environment(service, values, endpoints))
            emulators[service] = emulate.Emulator(service, tmp / "task" / service, ports[service], environment,
                                                  tmp / f"{service}.log")
        try:
            for emulator in emulators.values():
                emulator.wait()
            yield {"servers": servers, "settings": settings, "calls": calls, "proxies": proxies, "setup": setup,
                   "emulators": emulators, "tmp": tmp, "started": started}
        finally:
            for emulator in emulators.values():
                emulator.stop()


@pytest.fixture(scope="module")
def runs(emulated: dict[str, Any]) -> dict[str, Any]:
    """The walkthrough through the emulated functions, then in one process; their results and timings."""
    settings, calls, proxies, setup = emulated["settings"], emulated["calls"], emulated["proxies"], emulated["setup"]
    documents = manifests(emulated["tmp"] / "screen", plates=2)

    functions = {s: lambda_client(e.url) for s, e in emulated["emulators"].items()}
    invoked: dict[str, set[str]] = defaultdict(set)

    def invoke(service: str, function: str, **args: Any) -> Any:
        op = next(op for op in SERVICES[service].operations if op.function == function)
        invoked[service].add(op.method)
        calls.operation = f"{service}.{function}"
        response = functions[service].invoke(FunctionName="function", Payload=json.dumps({"method": op.method, **args}))
        payload = json.loads(response["Payload"].read())
        assert "FunctionError" not in response, f"{service}.{function}: {payload}"
        return payload

    jobs = {s: runtime.aws(settings, service=s, clients=clients_for(proxies["jobs"]))
            for s in set(runtime.STEP_SERVICE.values())}

    def job(step: str, params: dict[str, Any]) -> dict[str, Any]:
        calls.operation = f"jobs.{step}"
        with logs.request(new_id(), service="jobs", step=step):
            result = run_unit(jobs[runtime.STEP_SERVICE[step]], step, params)
        assert "failure" not in result, result
        return result

    class Search:  # the search task: its calls logged as the search principal's
        service = runtime.aws(settings, service="search", clients=clients_for(proxies["search"])).search

        def __getattr__(self, name: str) -> Any:
            def method(*args: Any, **kwargs: Any) -> Any:
                calls.operation = f"search.{name}"
                with logs.request(new_id(), service="search"):
                    return getattr(self.service, name)(*args, **kwargs)
            return method

    stream = io.StringIO()  # the call events of the jobs and the search task (this process)
    logs.configure(stream)
    timings: dict[str, float] = {}
    try:
        emulated_result = walkthrough(Topology(invoke, job, Search(), setup, settings.artifact_uri), documents, timings)
    finally:
        logs.configure()
    wall = time.perf_counter() - emulated["started"]
    here = [json.loads(line) for line in stream.getvalue().splitlines()]

    local_settings = settings.with_(table_prefix=LOCAL_PREFIX, artifact_uri=f"s3://{LOCAL_BUCKET}/{ARTIFACT_PREFIX}",
                                    runtime="local")
    local_database = Database(LOCAL_PREFIX, host=emulated["servers"]["dynamodb"], region=REGION,
                              credentials=("local", "local"))
    sfn = boto3.client("stepfunctions", region_name=REGION, endpoint_url=emulated["servers"]["moto"])
    local = runtime.build(local_settings, local_database, ObjectStore(boto3.client("s3", region_name=REGION)),
                          StepFunctionsRunner(sfn, local_settings.state_machine_arns))
    local_database.create()

    def in_process(service: str, function: str, **args: Any) -> Any:
        op = next(op for op in SERVICES[service].operations if op.function == function)
        return json.loads(json.dumps(dispatch(local.service(service), op, args), default=str))

    def local_job(step: str, params: dict[str, Any]) -> dict[str, Any]:
        result = run_unit(local, step, params)
        assert "failure" not in result, result
        return result

    local_result = walkthrough(Topology(in_process, local_job, local.search, local, local_settings.artifact_uri),
                               documents, {})
    return {"emulated": emulated_result, "local": local_result, "invoked": invoked, "timings": timings,
            "wall": wall, "events": here}


# ================================================================= checks
def _cross_calls(emulated: dict[str, Any], runs: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(caller, callee, method) of every invocation made, from the callers' ``call`` events: the functions'
    (their emulators' logs) and the jobs' and search task's (this process)."""
    found = {(service, e["callee"], e["method"]) for service, emulator in emulated["emulators"].items()
             for e in emulator.events() if e["event"] == "call"}
    return found | {(e["service"], e["callee"], e["method"]) for e in runs["events"] if e["event"] == "call"}


def test_the_emulated_topology_computes_what_one_process_computes(runs):
    emulated, local = runs["emulated"], runs["local"]
    assert len(emulated["images"]) == 20 and {s for s, *_ in emulated["images"].values()} == {"valid"}
    assert emulated["plates"] and all(status for _, status in emulated["plates"])
    assert sum(emulated["cells"].values()) > 0 and len(emulated["embeddings"]) > 10
    assert emulated["run"]["status"] == "complete" and len(emulated["hits"]) == 5
    assert len(emulated["compatible"]) == 2
    for part in emulated:
        assert emulated[part] == local[part], part
    print(f"\nemulated walkthrough: {runs['timings']}; {runs['wall']:.1f} s with the emulators' start")


def test_services_call_each_other_by_lambda_invocation(emulated, runs):
    cross = _cross_calls(emulated, runs)
    pairs = {(caller, callee) for caller, callee, _ in cross}
    assert {("image-management", "tags"), ("training", "image-management"),
            ("embedding", "image-management"), ("embedding", "training"), ("jobs", "image-management"),
            ("search", "embedding")} <= pairs
    allowed = runtime.CALLS | {"jobs": tuple(c for s in set(runtime.STEP_SERVICE.values()) for c in (s, *runtime.CALLS[s]))}
    assert all(callee in allowed[caller] for caller, callee in pairs), pairs
    # every call a caller logged was served by the callee's emulator, with the caller's request id
    served = {(e.get("caller"), service, e["method"], e.get("caller_request_id"))
              for service, emulator in emulated["emulators"].items() for e in emulator.events() if e["event"] == "invoke"}
    logged = {(service, e["callee"], e["method"], e["request_id"])
              for service, emulator in emulated["emulators"].items() for e in emulator.events() if e["event"] == "call"}
    logged |= {(e["service"], e["callee"], e["method"], e["request_id"]) for e in runs["events"] if e["event"] == "call"}
    assert logged and logged <= served, sorted(logged - served)[:5]
    print("\ncross-service calls observed:\n" + "\n".join(f"  {a} -> {b}: {m}" for a, b, m in sorted(cross)))


@pytest.mark.parametrize("principal", (*LAMBDA_SERVICES, "search", "jobs"))
def test_every_aws_call_of_every_process_is_granted(emulated, runs, principal):
    calls = emulated["calls"].calls[principal]
    if principal in ("image-management", "training", "embedding", "search", "jobs"):
        assert calls, f"{principal} made no AWS call"
    lambda_calls = {("lambda:InvokeFunction", callee) for caller, callee, _ in _cross_calls(emulated, runs)
                    if caller == principal}
    made = set(calls) | lambda_calls
    missing = sorted(grant for grant in made if grant not in granted(principal))
    assert not missing, f"{principal} calls what its role does not grant: {missing}"
    assert principal in permissions.PERMISSIONS


def test_an_example_script_reaches_the_emulated_functions_by_lambda_invoke(emulated, runs, tmp_path):
    """examples/export_embeddings.py --stack --via lambda, in a client-only process: the stack is found in
    CloudFormation (the moto server), whose outputs name each service's function (here its emulator), and
    every call is a Lambda invocation of the emulated functions. It exports what the walkthrough embedded."""
    from bioims.client.aws import OUTPUT_PREFIXES
    from tests.integration.test_examples import run_example

    setup, moto = emulated["setup"], emulated["servers"]["moto"]
    train_id, = (r["train_id"] for r in setup.training.get_embedding_trainings(SPEC["name"]) if r["status"] == "complete")
    boto3.client("cloudformation", region_name=REGION, endpoint_url=moto).create_stack(
        StackName="bioims-emulated", TemplateBody=json.dumps({
            "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {f"{OUTPUT_PREFIXES[s]}Function": {"Value": e.url} for s, e in emulated["emulators"].items()}}))
    before = {s: len(e.events()) for s, e in emulated["emulators"].items()}
    out = run_example("export_embeddings.py", "--stack", "bioims-emulated", "--via", "lambda", train_id,
                      str(tmp_path / "fields.parquet"), tmp_path=tmp_path, allow=("pyarrow", "numpy", "pandas"),
                      env={"AWS_ENDPOINT_URL_CLOUDFORMATION": moto}).stdout
    exported = read_profiles(tmp_path / "fields.parquet").sort_values("Metadata_ImageId", ignore_index=True)
    stored = setup.embedding.profiles(train_id, "field").sort_values("Metadata_ImageId", ignore_index=True)
    dims = [n for n in stored.columns if n.startswith("emb_")]
    assert list(exported["Metadata_ImageId"]) == list(stored["Metadata_ImageId"]) and len(stored) > 0
    assert np.allclose(exported[dims].to_numpy(), stored[dims].to_numpy(), atol=1e-6)
    assert f"{len(stored)} fields x {len(dims)} dims" in out
    invoked = {s: [e["method"] for e in emulator.events()[before[s]:] if e["event"] == "invoke"]
               for s, emulator in emulated["emulators"].items()}
    assert set(invoked["embedding"]) == {"listPlateEmbeddings", "getImageEmbedding"}
    assert invoked["embedding"].count("getImageEmbedding") >= len(stored)
    assert "getImagesByPlateId" in invoked["image-management"]  # the rest: the embedding function's own calls


@pytest.mark.parametrize("service", LAMBDA_SERVICES)
def test_the_sam_local_events_run_on_the_emulated_function(emulated, runs, service):
    """``services/<service>/events/*.json`` (``sam local invoke -e``), in name order, after the walkthrough:
    each gets its result, or a domain answer about the data it names (NotFound, Conflict), never a
    rejected event. The events name the dev input bucket, here the test's."""
    client = lambda_client(emulated["emulators"][service].url)
    answers = {}
    for path in sorted((ROOT / "services" / service / "events").glob("*.json")):
        payload = path.read_text().replace(emulate.LOCAL_VALUES["InputBucket"], INPUT_BUCKET)
        response = client.invoke(FunctionName="function", Payload=payload)
        document = json.loads(response["Payload"].read())
        answers[path.stem] = document.get("errorType", "ok") if response.get("FunctionError") else "ok"
    assert answers and set(answers.values()) <= {"ok", "NotFound", "Conflict"}, answers
    assert list(answers.values()).count("ok") >= len(answers) / 2, answers
