"""The AWS code paths against moto (in-process, no network, no Docker): settings from the template's
environment variables, the composition root of the Lambda functions and Batch jobs, DynamoDB tables
through an injected client, the Step Functions runner and the Lambda-invoke transport.

The S3 object store is covered in ``test_objects.py`` and Batch submission in ``test_batch.py``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import numpy as np
import pytest
import tifffile
from botocore.response import StreamingBody
from botocore.stub import Stubber
from chalice.test import Client
from moto import mock_aws

from bioims import runtime
from bioims.client import LambdaTransport, TagsClient, connect
from bioims.errors import BioimsError, InvalidInput, NotFound
from bioims.jobs.stepfunctions import MAX_INPUT_BYTES, StepFunctionsRunner
from bioims.services.tags import TagsService
from bioims.services.tags.tables import TagsTables
from tests.fakes import FakeLambda
from bioims.settings import FUNCTION_SERVICES, Settings, function_variable
from bioims.store.tables import Database
from tests.conftest import REPO

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
PREFIX = "bioims-test-"
ARTIFACTS, INPUT = "bioims-test-artifacts", "bioims-test-input"
CHANNELS = ("DAPI", "Tubulin")
MOTO_CONFIG: Any = {"lambda": {"use_docker": False}, "batch": {"use_docker": False}}

PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
"""A state machine that does nothing (moto does not run state machines unless asked to)."""


def create_state_machine(sfn: Any, name: str, definition: dict[str, Any] = PASS) -> str:
    return str(sfn.create_state_machine(name=name, definition=json.dumps(definition),
                                        roleArn=f"arn:aws:iam::{ACCOUNT}:role/bioims-states")["stateMachineArn"])


def template_environment(state_machines: dict[str, str]) -> dict[str, str]:
    """The variables the template gives a function (:mod:`bioims.settings`)."""
    return {
        "BIOIMS_RUNTIME": "aws",
        "BIOIMS_TABLE_PREFIX": PREFIX,
        "BIOIMS_ARTIFACT_URI": f"s3://{ARTIFACTS}/bioims",
        "BIOIMS_INPUT_BUCKET": INPUT,
        "BIOIMS_SFN_PROCESS_PLATE_ARN": state_machines["process-plate"],
        "BIOIMS_SFN_TRAIN_ARN": state_machines["train"],
        "BIOIMS_SFN_EMBED_ARN": state_machines["embed"],
        "BIOIMS_BATCH_CPU_QUEUE": "bioims-test-cpu",
        "BIOIMS_BATCH_GPU_QUEUE": "bioims-test-gpu",
        "BIOIMS_BATCH_JOB_DEFINITION": "bioims-test-job",
        **{function_variable(s): f"bioims-test-{s}-invoke" for s in FUNCTION_SERVICES},
        "BIOIMS_SEARCH_URL": "https://search.example.org",
    }


@pytest.fixture
def account(aws_env: None) -> Iterator[dict[str, str]]:
    """A moto account with what the template deploys: the tables, the artifact and input buckets and the
    three state machines. Yields the template's environment variables."""
    with mock_aws(config=MOTO_CONFIG):
        deploy_data()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machines = {w: create_state_machine(sfn, f"bioims-test-{w}") for w in ("process-plate", "train", "embed")}
        yield template_environment(machines)


@pytest.fixture
def environment(account: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The template's variables set in this process, as in a Lambda function or a Batch job; invoking a
    service's function runs its ``services/<name>/app.py`` here (each app its own container, as Lambda
    would; the functions themselves run under the Lambda emulator in tests/integration/test_emulated_aws.py)."""
    for name, value in account.items():
        monkeypatch.setenv(name, value)
    install_functions(monkeypatch)
    return account


def deploy_data() -> Any:
    """The template's data in the moto account: the artifact and input buckets and every table. Returns
    an S3 client."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=ARTIFACTS)
    s3.create_bucket(Bucket=INPUT)
    database = Database(PREFIX, region=REGION, client=boto3.client("dynamodb", region_name=REGION))
    for table_set in runtime.table_sets().values():
        table_set(database)
    database.create()
    return s3


def install_functions(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeLambda, Callable[[str], Any]]:
    """Every service's invoke function in this process (``services/<name>/app.py``, loaded on its first
    event), reached by the runtime's Lambda client. Returns that client and ``service -> handler``."""
    apps: dict[str, Any] = {}

    def handler(service: str) -> Any:
        if service not in apps:
            apps[service] = load_app(service).app.handler_map["invoke"]
        return apps[service]

    functions = FakeLambda({f"bioims-test-{s}-invoke": (lambda event, context, s=s: handler(s)(event, context))
                            for s in FUNCTION_SERVICES})
    monkeypatch.setattr(runtime, "aws_clients", _with_lambda(runtime.aws_clients, functions))
    return functions, handler


def _with_lambda(make: Any, lambda_client: Any) -> Any:
    """``runtime.aws_clients`` whose Lambda client is ``lambda_client``."""
    def clients(settings: Settings) -> Any:
        made = make(settings)
        return lambda name: lambda_client if name == "lambda" else made(name)
    return clients


def put_plate(s3: Any, rng: np.random.Generator, source_id: str = "Week1_22123") -> dict[str, Any]:
    """Two fields of two 16 x 20 uint16 TIFF channels in the input bucket; returns their seed manifest."""
    images = []
    for well, compound, moa in (("B02", "ALLN", "Protein degradation"), ("C03", "DMSO", "DMSO")):
        keys = []
        for channel in CHANNELS:
            buffer = io.BytesIO()
            tifffile.imwrite(buffer, rng.integers(0, 4000, (16, 20), dtype=np.uint16))
            key = f"Week1/{source_id}/{well}_s1_{channel}.tif"
            s3.put_object(Bucket=INPUT, Key=key, Body=buffer.getvalue())
            keys.append({"name": channel, "keysuffix": key})
        images.append({"wellId": well, "imageSourceId": f"{well}_s1", "channelKeys": keys, "imageBucket": INPUT,
                       "trainLabel": moa, "compound": compound})
    return {"plateSourceId": source_id, "images": images}


def load_app(service: str) -> ModuleType:
    """``services/<service>/app.py`` as Lambda loads it."""
    spec = importlib.util.spec_from_file_location(f"lambda_app_{service.replace('-', '_')}",
                                                  REPO / "services" / service / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ================================================================= settings from the environment
def test_settings_read_every_variable_of_the_template() -> None:
    machines = {w: f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:bioims-test-{w}"
                for w in ("process-plate", "train", "embed")}
    env = template_environment(machines)
    settings = Settings.from_env(env)
    assert (settings.runtime, settings.table_prefix, settings.artifact_uri) == ("aws", PREFIX, f"s3://{ARTIFACTS}/bioims")
    assert settings.input_bucket == INPUT and settings.search_url == "https://search.example.org"
    assert (settings.batch_cpu_queue, settings.batch_gpu_queue, settings.batch_job_definition) \
        == ("bioims-test-cpu", "bioims-test-gpu", "bioims-test-job")
    assert settings.functions == {s: f"bioims-test-{s}-invoke" for s in FUNCTION_SERVICES}
    # preprocess is the first half of the train state machine
    assert settings.state_machine_arns == {**machines, "preprocess": machines["train"]}
    assert {k: v for k, v in settings.to_env().items() if k in env} == env
    assert Settings.from_env(settings.to_env()) == settings
    local = Settings.from_env({})  # all optional on one machine
    assert local.state_machine_arns == {} and local.functions == {} and local.input_bucket is None
    assert local.need("table_prefix", "x") == "bioims-"
    with pytest.raises(InvalidInput, match="^BIOIMS_SFN_TRAIN_ARN is not set; the trainer needs it$"):
        local.need("sfn_train_arn", "the trainer")
    with pytest.raises(InvalidInput, match="^BIOIMS_FUNCTION_IMAGE_MANAGEMENT is not set"):
        local.need("function:image-management", "the state machine")


@pytest.mark.parametrize(("change", "message"), [
    ({"BIOIMS_SFN_TRAIN_ARN": "bioims-train"}, "BIOIMS_SFN_TRAIN_ARN must be a state machine ARN"),
    ({"BIOIMS_SFN_EMBED_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:x"}, "BIOIMS_SFN_EMBED_ARN must be"),
    ({"BIOIMS_INPUT_BUCKET": "s3://bucket"}, "BIOIMS_INPUT_BUCKET must be a bucket name"),
    ({"BIOIMS_FUNCTION_SEARCH": "f"}, "BIOIMS_FUNCTION_SEARCH: no such service function"),
    ({"BIOIMS_FUNCTION_TAGS": "two words"}, "BIOIMS_FUNCTION_TAGS must be a Lambda function name"),
    ({"BIOIMS_SEARCH_URL": "search:8080"}, "BIOIMS_SEARCH_URL must be an http"),
    ({"BIOIMS_BATCH_CPU_QUEUE": "a queue"}, "BIOIMS_BATCH_CPU_QUEUE must be a name or an ARN"),
    ({"BIOIMS_ARTIFACT_URI": "file:///tmp/artifacts"}, "must be an s3:// URI on AWS"),
    ({"BIOIMS_ARTIFACT_URI": ""}, "BIOIMS_ARTIFACT_URI .* is required on AWS"),
    ({"BIOIMS_TABLE_PREFIX": None}, "BIOIMS_TABLE_PREFIX is required on AWS"),
])
def test_settings_reject_what_the_template_cannot_mean(change: dict[str, str | None], message: str) -> None:
    machines = {w: f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{w}" for w in ("process-plate", "train", "embed")}
    env = template_environment(machines) | change
    with pytest.raises(InvalidInput, match=message):
        Settings.from_env({k: v for k, v in env.items() if v is not None})


def test_each_service_needs_its_state_machines(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """On AWS a service's container is not built without the state machines it starts; the error names
    the variable. Services that start none (and Batch jobs) do without them."""
    for name in ("BIOIMS_SFN_PROCESS_PLATE_ARN", "BIOIMS_SFN_TRAIN_ARN", "BIOIMS_SFN_EMBED_ARN"):
        monkeypatch.delenv(name)
    for service, variable in (("image-management", "BIOIMS_SFN_PROCESS_PLATE_ARN"),
                              ("training", "BIOIMS_SFN_TRAIN_ARN"), ("embedding", "BIOIMS_SFN_EMBED_ARN")):
        with pytest.raises(InvalidInput, match=f"^{variable} is not set; the {service} service on AWS needs it$"):
            runtime.aws(service=service)
    for service in ("artifact", "tags", "search"):
        assert runtime.aws(service=service).runner is None
    with pytest.raises(InvalidInput, match="unknown AWS service 'tag'"):
        runtime.aws(service="tag")


# ================================================================= the composition root, end to end
def test_lambda_functions_work_from_the_environment(environment: dict[str, str], rng: np.random.Generator) -> None:
    """``services/<name>/app.py`` as deployed: the container is built from the environment on the first
    event (DynamoDB tables, S3 objects, Step Functions runner) and serves real calls."""
    s3 = boto3.client("s3", region_name=REGION)
    manifest = put_plate(s3, rng)
    images = load_app("image-management")
    tags = load_app("tags")
    invoke_images, invoke_tags = images.app.handler_map["invoke"], tags.app.handler_map["invoke"]

    populated = invoke_images({"method": "populateSourcePlate", "manifest": manifest}, None)
    assert populated["images"] == 2 and populated["invalid_images"] == 0
    plate_id = populated["plate_id"]
    image_ids = invoke_images({"method": "getImageIdsByPlateId", "plateId": plate_id}, None)
    inspected = invoke_images({"method": "inspectImage", "imageId": image_ids[0]}, None)  # reads the input bucket
    assert inspected["status"] == "valid" and (inspected["height"], inspected["width"]) == (16, 20)
    made = invoke_images({"method": "makeThumbnails", "imageId": image_ids[0], "widths": [8]}, None)
    uri = made["thumbnails"]["8"]
    assert uri.startswith(f"s3://{ARTIFACTS}/bioims/")
    assert s3.get_object(Bucket=ARTIFACTS, Key=uri.removeprefix(f"s3://{ARTIFACTS}/"))["Body"].read()[:4] == b"\x89PNG"

    # workflows start on Step Functions and are described like local executions
    execution_id = invoke_images({"method": "inspectPlate", "plateId": plate_id}, None)
    assert execution_id.startswith(f"arn:aws:states:{REGION}:{ACCOUNT}:execution:bioims-test-process-plate:")
    described = invoke_images({"method": "describeExecution", "executionId": execution_id}, None)
    assert described["workflow"] == "process-plate" and described["status"] == "RUNNING"
    assert described["params"] == {"plate_id": plate_id}
    preprocess = invoke_images({"method": "startPreprocess", "spec": "none-yet", "plateIds": [plate_id]}, None)
    assert ":execution:bioims-test-train:preprocess-" in preprocess
    assert invoke_images({"method": "describeExecution", "executionId": preprocess}, None)["workflow"] == "preprocess"

    # the tags the ingest wrote (by invoking the tags function) are the tags service's
    assert invoke_tags({"method": "getTagByValue", "value": "compound:ALLN"}, None)["type"] == "compound"
    with Client(images.app) as client:
        response = client.http.get(f"/plates/{plate_id}/image-status")
    assert response.status_code == 200 and json.loads(response.body)["images"] == {"registered": 1, "valid": 1}


def test_a_missing_variable_fails_the_first_event_clearly(environment: dict[str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIOIMS_SFN_PROCESS_PLATE_ARN")
    images = load_app("image-management")  # importing reads nothing
    with pytest.raises(InvalidInput, match="BIOIMS_SFN_PROCESS_PLATE_ARN is not set"):
        images.app.handler_map["invoke"]({"method": "listPlates"}, None)
    with Client(images.app) as client:
        response = client.http.get("/plates")
    message = json.loads(response.body)["error"]["message"]
    assert response.status_code == 400 and "BIOIMS_SFN_PROCESS_PLATE_ARN" in message


def test_batch_array_child_runs_from_the_environment(environment: dict[str, str], rng: np.random.Generator,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A job submitted to the queue of ``BIOIMS_BATCH_CPU_QUEUE``, then its child 1 run as Batch would run
    it (its command, ``AWS_BATCH_JOB_ARRAY_INDEX``): the container from the environment, the parameter
    set read from S3, the step run on the S3 input."""
    from bioims.jobs.__main__ import main
    from bioims.jobs.batch import BatchSubmitter

    settings = Settings.from_env()
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = boto3.client("batch", region_name=REGION)
    compute = batch.create_compute_environment(computeEnvironmentName="cpu", type="UNMANAGED", serviceRole=role)
    batch.create_job_queue(jobQueueName=settings.batch_cpu_queue, priority=1, state="ENABLED", computeEnvironmentOrder=[
        {"order": 1, "computeEnvironment": compute["computeEnvironmentArn"]}])
    batch.register_job_definition(jobDefinitionName=settings.batch_job_definition, type="container",
                                  containerProperties={"image": "bioims-job", "vcpus": 1, "memory": 2048})

    c = runtime.aws(service="image-management")
    plate_id = c.images.populate_source_plate(put_plate(boto3.client("s3", region_name=REGION), rng))["plate_id"]
    image_ids = c.images.get_image_ids_by_plate_id(plate_id)
    submitter = BatchSubmitter(batch, settings.batch_cpu_queue, settings.batch_job_definition, c.objects, c.keys)
    job_id = submitter.submit("inspect-image", [{"image_id": i} for i in image_ids])
    command = batch.describe_jobs(jobs=[job_id])["jobs"][0]["container"]["command"]
    assert command[:3] == ["python", "-m", "bioims.jobs"] and command[5].startswith(f"s3://{ARTIFACTS}/bioims/")

    with pytest.MonkeyPatch.context() as child:
        child.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "1")
        assert main(command[3:]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["image_id"] == image_ids[1] and result["status"] == "valid"
    assert c.images.get_image_info(image_ids[1])["status"] == "valid"
    assert main(["process-plate", "--params", json.dumps({"plate_id": plate_id})]) == 1  # workflows are SFN's
    assert "Step Functions state machine" in capsys.readouterr().err


# ================================================================= DynamoDB tables
def test_tables_use_the_client_they_are_given(account: dict[str, str]) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    tables = TagsTables(Database("other-", region=REGION, client=client))
    assert all(m._get_connection().connection.client is client for m in tables.models())
    created = tables.create()
    assert sorted(created) == sorted(f"other-{name}" for name in TagsTables.table_names())
    assert tables.create() == []
    assert set(created) <= set(client.list_tables()["TableNames"])

    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    tags = TagsService(tables)
    ids = tags.ensure_tags(["compound:ALLN", "moa:DMSO", "compound:DMSO"])  # put
    assert tags.get_tag_by_value("moa:DMSO")["tag_id"] == ids["moa:DMSO"]  # get
    assert [t["value"] for t in tags.get_all_tags(type="compound")] == ["compound:ALLN", "compound:DMSO"]  # query
    assert {"BatchGetItem", "PutItem", "GetItem", "Query"} <= set(calls)


# ================================================================= Step Functions
@pytest.fixture
def sfn(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("stepfunctions", region_name=REGION)


def test_runner_starts_executions_with_their_parameters(sfn: Any) -> None:
    machines = {w: create_state_machine(sfn, f"m-{w}") for w in ("process-plate", "train")}
    runner = StepFunctionsRunner(sfn, machines | {"preprocess": machines["train"]})
    params = {"plate_id": "p1", "nested": {"ids": ["a", "b"], "force": True, "k": 2.5}, "name": "Wöche 1"}
    first, second = runner.start("process-plate", params), runner.start("process-plate", params)
    assert first != second  # a rerun is a new execution
    execution = sfn.describe_execution(executionArn=first)
    assert execution["stateMachineArn"] == machines["process-plate"] and json.loads(execution["input"]) == params
    assert execution["name"].startswith("process-plate-")
    described = runner.describe(first)
    assert described.keys() == {"execution_id", "workflow", "params", "status", "started_at"}
    assert (described["execution_id"], described["workflow"], described["params"], described["status"]) \
        == (first, "process-plate", params, "RUNNING")  # moto runs nothing by default
    assert described["started_at"].endswith("Z") and described["started_at"][:2] == "20"
    preprocess = runner.start("preprocess", {"spec": "s", "plate_ids": None})
    assert sfn.describe_execution(executionArn=preprocess)["stateMachineArn"] == machines["train"]
    assert runner.describe(preprocess)["workflow"] == "preprocess"
    assert runner.describe(runner.start("train", {"train_ids": ["t"]}))["workflow"] == "train"


def test_runner_errors(sfn: Any) -> None:
    machine = create_state_machine(sfn, "m-process-plate")
    other = create_state_machine(sfn, "someone-elses")
    runner = StepFunctionsRunner(sfn, {"process-plate": machine})
    with pytest.raises(InvalidInput, match="workflow 'embed' has no state machine in this runtime; known: process-pl"):
        runner.start("embed", {})
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        runner.start("process-plate", ["p1"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not JSON"):
        runner.start("process-plate", {"x": float("nan")})
    with pytest.raises(InvalidInput, match=f"exceed Step Functions' input limit of {MAX_INPUT_BYTES} bytes"):
        runner.start("process-plate", {"ids": ["x" * 1000] * 300})
    missing = machine.replace(":stateMachine:", ":execution:") + ":process-plate-nope"
    foreign = sfn.start_execution(stateMachineArn=other, input="{}")["executionArn"]
    for execution_id in (missing, foreign, "nope", f"arn:aws:states:{REGION}:{ACCOUNT}:execution:m-process-plate"):
        with pytest.raises(NotFound, match="no execution"):
            runner.describe(execution_id)
    with pytest.raises(InvalidInput, match="non-empty string"):
        runner.describe("")
    with pytest.raises(InvalidInput, match="is not one"):
        StepFunctionsRunner(sfn, {"train": "train"})


def test_runner_reports_how_executions_end(aws_env: None) -> None:
    """With moto running the state machines (Pass and Fail states), a finished execution has its output,
    a failed one its error and cause, both their end time."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        done = create_state_machine(sfn, "done", {"StartAt": "Plan", "States": {"Plan": {
            "Type": "Pass", "Parameters": {"plate_id.$": "$.plate_id", "images": 2}, "End": True}}})
        fail = create_state_machine(sfn, "fail", {"StartAt": "Stop", "States": {"Stop": {
            "Type": "Fail", "Error": "JobsFailed", "Cause": "2 of 5 jobs failed"}}})
        runner = StepFunctionsRunner(sfn, {"process-plate": done, "train": fail})
        ok, failed = runner.start("process-plate", {"plate_id": "p1"}), runner.start("train", {"train_ids": ["t"]})
        ended = {}
        deadline = time.monotonic() + 20
        while len(ended) < 2 and time.monotonic() < deadline:
            for arn in (ok, failed):
                described = runner.describe(arn)
                if described["status"] != "RUNNING":
                    ended[arn] = described
            time.sleep(0.05)
    assert ended[ok]["status"] == "SUCCEEDED" and ended[ok]["output"] == {"plate_id": "p1", "images": 2}
    assert "error" not in ended[ok] and ended[ok]["finished_at"] >= ended[ok]["started_at"]
    assert ended[failed]["status"] == "FAILED" and ended[failed]["error"] == "JobsFailed: 2 of 5 jobs failed"
    assert "output" not in ended[failed] and ended[failed]["params"] == {"train_ids": ["t"]}


# ================================================================= Lambda invocation
def test_lambda_transport_sends_the_seed_event_to_moto(aws_env: None) -> None:
    """moto's Lambda without Docker answers an invocation with its own event (or a queued answer): what
    the service's ``invoke`` function would receive, and how its answer is decoded."""
    import zipfile

    from moto.awslambda_simple.models import lambda_simple_backends

    with mock_aws(config=MOTO_CONFIG):
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="bioims-tags", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client("lambda", region_name=REGION)
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("app.py", "")
        client.create_function(FunctionName="bioims-test-tags-invoke", Runtime="python3.12", Role=role,
                               Handler="app.app", Code={"ZipFile": code.getvalue()})
        tags = connect("tags", function_name="bioims-test-tags-invoke", lambda_client=client)
        assert tags.get_tag_by_value("moa:Protein degradation") \
            == {"method": "getTagByValue", "value": "moa:Protein degradation"}
        assert tags.tag_images({"i1": ["plate:P1"]}, plate_id="p1") \
            == {"method": "tagImages", "assignments": {"i1": ["plate:P1"]}, "plateId": "p1"}
        answer = {"tag_id": 3, "value": "moa:Protein degradation", "type": "moa"}
        lambda_simple_backends[ACCOUNT][REGION].lambda_simple_results_queue.append(json.dumps(answer))
        assert tags.get_tag_by_value("moa:Protein degradation") == answer


def payload(document: Any) -> StreamingBody:
    data = json.dumps(document).encode()
    return StreamingBody(io.BytesIO(data), len(data))


def test_lambda_transport_request_and_error_handling() -> None:
    """The exact Invoke request and the decoding of answers and function errors, on a real boto3 client
    with botocore's Stubber (moto cannot report a function error without Docker)."""
    client = boto3.client("lambda", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    tags = TagsClient(LambdaTransport("bioims-test-tags-invoke", client))
    request = {"FunctionName": "bioims-test-tags-invoke", "InvocationType": "RequestResponse"}
    with Stubber(client) as stub:
        stub.add_response("invoke", {"StatusCode": 200, "Payload": payload({"compound:x": 7})},
                          request | {"Payload": b'{"method": "ensureTags", "values": ["compound:x"]}'})
        assert tags.ensure_tags({"compound:x"}) == {"compound:x": 7}  # a set is sent as a list
        stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled",
                                     "Payload": payload({"errorType": "NotFound", "errorMessage": "no tag 'x:y'"})},
                          request | {"Payload": b'{"method": "getTagByValue", "value": "x:y"}'})
        with pytest.raises(NotFound, match="^no tag 'x:y'$"):
            tags.get_tag_by_value("x:y")
        stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": payload(
            {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 30.00 seconds"})})
        with pytest.raises(BioimsError, match="^the tags service's function .* failed: Sandbox.Timedout: Task timed out") as raised:
            tags.get_all_tags()
        assert type(raised.value) is BioimsError and raised.value.status == 500
        stub.add_response("invoke", {"StatusCode": 200, "Payload": payload(None)})
        assert tags.get_all_tags() is None
        stub.assert_no_pending_responses()
