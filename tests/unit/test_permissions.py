"""Each principal's role grants what its code calls: a walkthrough on moto records every AWS call of
each principal and compares it with :data:`permissions.PERMISSIONS` (``infra/permissions.py``).

Every principal gets the container the composition root builds for it (:func:`bioims.runtime.aws` with
``service=``), its botocore clients instrumented by a ``provide-client-params`` hook that records
(IAM action, symbolic resource) per call, plus ``s3:ListBucket`` for a read answered 404 (without it S3
answers 403). The five Lambda services run every one of their operations
through their ``invoke`` handler; the Batch job role (``jobs``) runs every job step, as the state
machines would have it; the search task runs every method of the search service. The walkthrough goes
from raw images in the input bucket to a search over a (seeded, untrained) model's embeddings of the tiny
synthetic screen.

Checked: recorded calls ⊆ grants, for every principal whose code is Python. Grants the walkthrough does
not exercise must be listed in :data:`NOT_EXERCISED` with the reason (a soft list kept honest: a grant
that becomes exercised, or one that is neither used nor listed, fails the test).
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bioims import runtime
from tests.fakes import FakeLambda
from bioims.api.chalice_app import invoke_handler
from bioims.contract import SERVICES
from bioims.errors import BioimsError, Conflict, NotFound
from bioims.ids import new_id
from bioims.jobs.batch import array_element
from bioims.jobs.runner import run_unit
from bioims.jobs.steps import STEPS, embed_units
from bioims.settings import Settings
from bioims.store.objects import ObjectStore
from bioims.store.tables import Database

import permissions  # infra/permissions.py (pytest.ini puts infra/ on the path)

REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "perm-"
ARTIFACT_BUCKET, ARTIFACT_PREFIX, INPUT_BUCKET = "perm-artifacts", "bioims", "perm-input"
LAMBDA_SERVICES = ("artifact", "tags", "image-management", "training", "embedding")
PYTHON_PRINCIPALS = (*LAMBDA_SERVICES, "search", "jobs")
SPEC = {"name": "perm-spec",
        "input": {"width": 160, "height": 128, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
        "segmentation_channel": "DAPI", "roi_size": 32, "min_nucleus_voxels": 30, "embedding_length": 16,
        "flatfield": {"sigma": 20.0}, "training": {"epochs": 1, "batch_size": 32}}

Grant = tuple[str, str]  # (IAM action, symbolic resource)

NOT_EXERCISED: dict[str, dict[Grant, str]] = {}
"""principal -> granted (action, resource) the walkthrough does not use -> why. Kept exact by
:func:`test_every_grant_is_used_or_explained`."""

NOT_PYTHON: dict[str, str] = {
    "states": "the state machines run no bioims Python code (their role is checked against their "
              "definitions by the template tests)",
}


# ================================================================= recording
class Recorder:
    """Records the (IAM action, symbolic resource) of every AWS call, per principal, with the operation
    that made it (``recorder.operation`` is set by the walkthrough before each step)."""

    S3_ACTIONS = {"GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "PutObject": "s3:PutObject",
                  "DeleteObject": "s3:DeleteObject", "DeleteObjects": "s3:DeleteObject",
                  "ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket"}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.calls: dict[str, dict[Grant, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.operation = "setup"
        self.workflows = {arn.rpartition(":")[2]: workflow for workflow, arn in settings.state_machine_arns.items()
                          if workflow != "preprocess"}
        self.functions = {name: service for service, name in settings.functions.items()}
        self.targets: dict[str, runtime.Container] = {}
        """service -> the container its Lambda functions run (the callee of an invocation)."""
        self.invocations: set[tuple[str, str, str]] = set()
        """(caller principal, callee service, method) of every cross-service invocation."""

    def clients(self, principal: str) -> runtime.ClientFactory:
        """The composition root's client factory, each client recording as ``principal``; its Lambda
        client invokes the callee's handler in this process (as Lambda would run it: the callee's own
        container, recording as the callee)."""
        make = runtime.aws_clients(self.settings)
        instrumented: set[int] = set()

        def client(name: str) -> Any:
            if name == "lambda":
                return self._lambda(principal)
            made = make(name)
            if id(made) not in instrumented:
                made.meta.events.register("provide-client-params.*.*", partial(self._record, principal))
                made.meta.events.register("after-call.s3.*", partial(self._missing_object, principal))
                instrumented.add(id(made))
            return made

        return client

    def _lambda(self, principal: str) -> FakeLambda:
        """A Lambda client running the callee's ``invoke`` handler over the callee's container, recording
        ``lambda:InvokeFunction`` for ``principal``."""
        def record(function: str, event: Any) -> None:
            callee = self.functions[function]
            self.calls[principal]["lambda:InvokeFunction", callee].add(self.operation)
            self.invocations.add((principal, callee, event["method"]))

        handlers = {function: invoke_handler(service, lambda s=service: self.targets[s])
                    for function, service in self.functions.items()}
        return FakeLambda(handlers, on_invoke=record)

    def _record(self, principal: str, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        for grant in self.grants(service, model.name, params):
            self.calls[principal][grant].add(self.operation)

    def _missing_object(self, principal: str, http_response: Any, model: Any, context: Any, **_: Any) -> None:
        """A read of a missing object needs ``s3:ListBucket`` too: without it S3 answers 403, not 404."""
        if model.name in ("GetObject", "HeadObject") and http_response.status_code == 404:
            params = context["input_params"]
            self.calls[principal]["s3:ListBucket", self._bucket(params["Bucket"], params.get("Key", ""))].add(
                f"{self.operation} (404)")

    def grants(self, service: str, operation: str, params: dict[str, Any]) -> list[Grant]:
        """The IAM (action, symbolic resource) pairs a botocore call needs (HeadObject is s3:GetObject,
        ListObjectsV2 s3:ListBucket, Invoke lambda:InvokeFunction; tables without the prefix)."""
        if service == "dynamodb":
            return [(f"dynamodb:{operation}", table) for table in self._tables(params)]
        if service == "s3":
            action = self.S3_ACTIONS.get(operation, f"s3:{operation}")
            return [(action, self._bucket(params["Bucket"], params.get("Key", params.get("Prefix", ""))))]
        if service == "stepfunctions":
            arn = params.get("stateMachineArn") or params["executionArn"]
            machine = arn.split(":")[6]
            return [(f"states:{operation}", self.workflows.get(machine, f"unknown state machine {machine}"))]
        if service == "cloudformation" and operation == "DescribeStacks" and "StackName" not in params:
            return [("cloudformation:DescribeStacks", "*")]
        if service == "lambda":
            name = params["FunctionName"]
            return [("lambda:InvokeFunction", self.functions.get(name, f"unknown function {name}"))]
        return [(f"{service}:{operation}", "?")]  # unexpected: fails the comparison with a clear name

    def _tables(self, params: dict[str, Any]) -> list[str]:
        names = list(params.get("RequestItems", {}))
        for item in params.get("TransactItems", []):
            names += [part["TableName"] for part in item.values()]
        if "TableName" in params:
            name = params["TableName"]
            names.append(f"{name}/index/{params['IndexName']}" if params.get("IndexName") else name)
        return [n.removeprefix(PREFIX) if n.startswith(PREFIX) else f"unprefixed table {n}" for n in names]

    @staticmethod
    def _bucket(bucket: str, key: str) -> str:
        if bucket == INPUT_BUCKET:
            return "input"
        if bucket == ARTIFACT_BUCKET:
            return "artifacts" if key.startswith(ARTIFACT_PREFIX + "/") else f"artifacts outside {ARTIFACT_PREFIX}/"
        return f"bucket {bucket}"


# ================================================================= the walkthrough
class Walk:
    """Calls of the principals: Lambda services through their invoke handler, the others directly."""

    def __init__(self, recorder: Recorder, containers: dict[str, runtime.Container]) -> None:
        self.recorder = recorder
        self.c = containers
        self.called: dict[str, set[str]] = defaultdict(set)

    def __call__(self, service: str, function: str, expect: type[BioimsError] | None = None, **args: Any) -> Any:
        """Operation ``function`` of a Lambda service, as its invoke function receives it."""
        self.called[service].add(function)
        self.recorder.operation = f"{service}.{function}"
        handler = invoke_handler(service, lambda: self.c[service])
        try:
            result = handler({"method": function, **args}, None)
        except BioimsError as e:
            if expect is not None and isinstance(e, expect):
                return e
            raise
        assert expect is None, f"{service}.{function} should raise {expect.__name__}"
        return result

    def job(self, step: str, params: dict[str, Any], *, fails: bool = False) -> dict[str, Any]:
        """A Batch array child: its parameter set read from S3 (written by the state machine), then the
        step, as ``python -m bioims.jobs STEP --array-params URI`` runs it."""
        self.called["jobs"].add(step)
        jobs = self.c[f"jobs:{runtime.STEP_SERVICE[step]}"]
        uri = jobs.keys.job_params(new_id())
        self.c["setup"].objects.put_json(uri, [params])
        self.recorder.operation = f"jobs.{step}"
        result = run_unit(jobs, step, array_element(jobs.objects.get_json(uri), 0))
        assert ("failure" in result) == fails, result
        return result

    def search(self, method: str, *args: Any, expect: type[BioimsError] | None = None, **kwargs: Any) -> Any:
        """A method of the search service, as the search server calls it."""
        self.called["search"].add(method)
        self.recorder.operation = f"search.{method}"
        try:
            return getattr(self.c["search"].search, method)(*args, **kwargs)
        except BioimsError as e:
            if expect is not None and isinstance(e, expect):
                return e
            raise


def manifests(folder: Path, plates: int, bucket: str = INPUT_BUCKET) -> list[dict[str, Any]]:
    """The first ``plates`` plates of the tiny synthetic screen (10 fields of 3 channels, 160 x 128, each)
    uploaded to the input ``bucket``, as the seed's plate manifests."""
    from bioims.datasets.loaddata import read_loaddata
    from bioims.datasets.synth import IMAGE_CSV, MOA_CSV, synthesize
    from bioims.store.objects import uri_to_path

    synthesize(folder, "tiny", seed=3)
    s3 = boto3.client("s3", region_name=REGION)
    documents = []
    for plate in read_loaddata(folder / IMAGE_CSV, moa_csv=folder / MOA_CSV)[:plates]:
        images = []
        for field in plate.fields:
            keys = []
            for channel, uri in field.channel_uris.items():
                key = f"screens/{plate.source_id}/{field.well}_{field.site}_{channel}.tif"
                s3.put_object(Bucket=bucket, Key=key, Body=uri_to_path(uri).read_bytes())
                keys.append({"name": channel, "keysuffix": key})
            metadata = {k: v for k, v in field.metadata.items() if k != "moa" and v is not None}
            images.append({"wellId": field.well, "imageSourceId": field.site, "channelKeys": keys,
                           "imageBucket": bucket, "trainLabel": field.metadata["moa"], **metadata})
        documents.append({"plateSourceId": plate.source_id, "images": images})
    return documents


def walkthrough(walk: Walk, setup: runtime.Container, folder: Path) -> None:
    call = walk
    # ------------------------------------------------------------ configuration, message logs, artifacts
    call("artifact", "set_parameter", parameter="thumbnail-widths", value=[32])
    call("artifact", "get_parameter", parameter="thumbnail-widths")
    call("artifact", "get_history", parameter="thumbnail-widths")
    call("artifact", "set_parameter", parameter="scratch", value={"a": 1})
    call("artifact", "delete_parameter", parameter="scratch")
    call("artifact", "get_all")
    call("artifact", "get_default_train_id", expect=NotFound)
    call("artifact", "set_default_train_id", train_id="run-0")
    call("artifact", "get_default_train_id")
    message_id = call("artifact", "create_message", message="hello")
    call("artifact", "add_message", message_id=message_id, message="again")
    call("artifact", "get_message", message_id=message_id)
    call("artifact", "list_messages", message_id=message_id)
    call("artifact", "delete_message", message_id=message_id)
    uri = f"s3://{ARTIFACT_BUCKET}/{ARTIFACT_PREFIX}/notes/x.json"
    call("artifact", "create_artifact", context_id="ctx", uri=uri, train_id="run-0", type="note", size=2)
    call("artifact", "get_artifacts", context_id="ctx")
    call("artifact", "add_annotation", context_id="ctx", uri=uri, annotation="checked", train_id="run-0")
    call("artifact", "get_train_artifacts", train_id="run-0")
    call("artifact", "create_describe_stacks_artifact", context_id="ctx", train_id="run-0")
    call("artifact", "delete_artifacts", context_id="ctx", train_id="run-0")

    # ------------------------------------------------------------ tags and labels
    tag = call("tags", "create_tag", value="note:first")
    call("tags", "get_all_tags")
    call("tags", "get_all_tags", type="note")
    call("tags", "get_tag_by_value", value="note:first")
    call("tags", "get_tag_by_id", tag_id=tag["tag_id"])
    call("tags", "ensure_tags", values=["note:second", "note:first"])
    call("tags", "tag_images", assignments={"img-1": ["note:first"]}, plate_id="plate-x")
    call("tags", "get_images_by_tag", value="note:first")
    call("tags", "get_image_tags", image_id="img-1")
    call("tags", "add_image_tags", image_id="img-1", tags=["note:third"])
    call("tags", "set_image_tags", image_id="img-1", tags=["note:second"])
    call("tags", "remove_image_tags", image_id="img-1", tags=["note:second"])
    call("tags", "create_category", category="week", description="imaging week")
    call("tags", "list_categories")
    call("tags", "update_category_description", category="week", description="batch")
    call("tags", "create_label", category="week", label="Week1")
    call("tags", "list_labels", category="week")
    call("tags", "update_label_description", category="week", label="Week1", description="first")
    call("tags", "update_label", category="week", old_label="Week1", new_label="Week01")
    call("tags", "get_index", category="week", label="Week01")
    call("tags", "ensure_labels", category="week", labels=["Week1", "Week2"])
    call("tags", "delete_category", category="week")

    # ------------------------------------------------------------ plates: registration and processing
    documents = manifests(folder / "tiny", plates=2)
    broken = {"plateSourceId": "Broken_1", "images": [{  # an input image that is not there
        "wellId": "A01", "imageSourceId": "s1", "imageBucket": INPUT_BUCKET, "trainLabel": "DMSO",
        "channelKeys": [{"name": ch, "keysuffix": f"screens/Broken_1/A01_s1_{ch}.tif"} for ch in ("DAPI", "Actin")]}]}
    broken_id = call("image-management", "populate_source_plate", manifest=broken)["plate_id"]
    broken_image = call("image-management", "get_image_ids_by_plate_id", plate_id=broken_id)[0]
    walk.job("inspect-image", {"image_id": broken_image})
    call("image-management", "inspect_image", image_id=broken_image, force=True)
    manifest_uri = f"s3://{INPUT_BUCKET}/manifests/{documents[-1]['plateSourceId']}.json"
    setup.objects.put_json(manifest_uri, documents[-1])
    plate_ids = [call("image-management", "populate_source_plate", manifest=d)["plate_id"] for d in documents[:-1]]
    uploaded = call("image-management", "upload_source_plate", manifest=manifest_uri)
    plate_ids.append(uploaded["plate_id"])
    execution = call("image-management", "inspect_plate", plate_id=plate_ids[0])
    call("image-management", "describe_execution", execution_id=execution)
    # the process-plate state machine: planning through the function, units as Batch jobs
    for plate_id in plate_ids:
        image_ids = call("image-management", "get_image_ids_by_plate_id", plate_id=plate_id)
        for image_id in image_ids:
            walk.job("inspect-image", {"image_id": image_id})
        walk.job("validate-plate", {"plate_id": plate_id})
        for image_id in image_ids[:2]:
            walk.job("thumbnails", {"image_id": image_id})
    walk.job("validate-plate", {"plate_id": "deleted-plate"}, fails=True)  # looked up by source id, then NotFound
    plate_id, source_id = plate_ids[0], documents[0]["plateSourceId"]
    image_id = call("image-management", "get_image_ids_by_plate_id", plate_id=plate_id)[0]
    info = call("image-management", "get_image_info", image_id=image_id)
    call("image-management", "list_plates")
    call("image-management", "get_plate", plate=source_id)
    call("image-management", "get_plate_image_status", plate_id=plate_id)
    call("image-management", "create_plate_message_id", plate_id=plate_id)
    call("image-management", "get_plate_message_id", plate_id=plate_id)
    call("image-management", "get_images_by_plate_id", plate_id=plate_id)
    call("image-management", "get_wells_by_plate_id", plate_id=plate_id)
    call("image-management", "get_images_by_plate_and_well_id", plate_id=plate_id, well_id=info["well_id"])
    tags = [t["value"] for t in call("image-management", "get_image_tags", image_id=image_id)]
    call("image-management", "update_image_tags", image_id=image_id, tags=tags)
    call("image-management", "inspect_image", image_id=image_id, force=True)
    call("image-management", "validate_plate", plate_id=plate_id)
    call("image-management", "make_thumbnails", image_id=image_id, widths=[16])
    call("image-management", "make_thumbnails", image_id=image_id)  # the configured widths
    call("image-management", "list_compatible_plates", width=160, height=128, depth=1, channels=3)

    # ------------------------------------------------------------ spec, preprocessing
    spec = SPEC["name"]
    call("training", "create_embedding", spec=SPEC)
    call("training", "list_embeddings")
    call("training", "get_embedding_info", name=spec)
    call("training", "get_compatible_plates", name=spec)
    preprocessing = call("image-management", "start_preprocess", spec=spec, plate_ids=plate_ids)
    call("image-management", "describe_execution", execution_id=preprocessing)
    call("image-management", "process_plate", plate_id=plate_ids[0], spec=spec)  # the seed's, for one plate
    for p in plate_ids:  # the preprocess half of the train state machine
        for channel in SPEC["input"]["channels"]:
            walk.job("flatfield", {"spec": spec, "plate_id": p, "channel": channel})
        for i in setup.preprocessing.valid_image_ids(p):
            walk.job("preprocess-image", {"spec": spec, "image_id": i})
    call("image-management", "compute_flatfield", spec=spec, plate_id=plate_id, channel="DAPI", force=True)
    call("image-management", "preprocess_image", spec=spec, image_id=image_id, force=True)
    suggested = call("image-management", "suggest_spec", plate_id=plate_id, fields=2)  # bioims spec suggest
    assert suggested["spec"]["input"]["channels"] == SPEC["input"]["channels"] and suggested["nuclei"] > 0
    view = call("image-management", "get_image_view", image_id=image_id, width=64, spec=spec, crops=2)  # the web viewer
    assert len(view["channels"]) == len(SPEC["input"]["channels"]) and view["cells"] is not None

    # ------------------------------------------------------------ training
    train_id = call("training", "create_trainings", spec=spec, holdout="none", epochs=0, seed=5)[0]["train_id"]
    call("training", "get_embedding_trainings", name=spec)
    call("training", "get_training", train_id=train_id)
    call("training", "get_training_filter", train_id=train_id)
    filter_uri = f"s3://{INPUT_BUCKET}/filters/{spec}.txt"  # the seed's filterBucket/filterKey: an input object
    setup.objects.put_bytes(filter_uri, f"{image_id}\n".encode())
    filtered = call("training", "create_trainings", spec=spec, epochs=0, seed=6, filter_uri=filter_uri)[0]
    call("training", "update_training", train_id=filtered["train_id"], attribute="filter", value=[])
    call("image-management", "delete_image_train_results", train_id=filtered["train_id"])  # none yet
    call("training", "delete_training", train_id=filtered["train_id"])
    call("training", "train", spec=spec, holdout="none", epochs=0, seed=5)
    walk.job("train-model", {"train_id": train_id, "threads": 1})
    call("training", "get_training_job_info", train_id=train_id)

    # ------------------------------------------------------------ embedding
    embedding_execution = call("embedding", "start_compute_embedding", train_id=train_id)
    call("image-management", "describe_execution", execution_id=embedding_execution)
    call("embedding", "list_plate_embeddings", train_id=train_id)  # progress: none done yet
    for unit in embed_units(train_id, plate_ids):
        walk.job("embed-plate", unit)
    call("embedding", "start_compute_plate_embedding", train_id=train_id, plate_id=plate_id, force=True)
    call("embedding", "execute_image_embedding_compute", train_id=train_id, image_id=image_id)
    walk.job("embed-plate", embed_units(train_id, [plate_id], image_ids=[image_id])[0])  # the seed's per image
    call("embedding", "list_plate_embeddings", train_id=train_id)
    embedding = call("embedding", "get_image_embedding", image_id=image_id, train_id=train_id)
    evaluated = call("embedding", "evaluate_embeddings", train_id=train_id, level="field")  # the web's evaluation
    assert evaluated["points"] and all(p["image_id"] for p in evaluated["points"])
    call("image-management", "create_image_train_result", image_id=image_id, train_id="manual-run",
         embedding=[0.5, -1.0], cell_count=2)
    call("image-management", "create_image_train_results", train_id="manual-run", results=[
        {"image_id": image_id, "status": "embedded", "cell_count": 2, "embedding": [0.5, -1.0]}])
    call("image-management", "get_images_by_plate_id_and_train_id", plate_id=plate_id, train_id="manual-run")
    call("image-management", "list_spec_fields", spec=spec, plate_id=plate_id)
    call("tags", "list_plate_image_tags", plate_id=plate_id)

    # ------------------------------------------------------------ search
    walk.search("build_index", train_id, "field")
    walk.job("build-index", {"train_id": train_id, "level": "field"})  # the embed workflow's: a new version
    walk.job("build-index", {"train_id": train_id, "level": "well"})
    walk.search("list_indexes")
    walk.search("loaded_indexes")
    walk.search("indexes", stored=True)
    walk.search("refresh")
    walk.search("load_index", train_id, "field")
    walk.search("reload_index", train_id)
    walk.search("load_all")
    walk.search("load_tag_label_map", train_id)
    walk.search("start_tag_load", spec)
    found = walk.search("search", train_id, image_id=image_id, k=3, include_tags=tags[:1])
    walk.search("search", train_id, vector=embedding["embedding"], k=2, require_moa=True)
    walk.search("search", train_id, image_id=image_id, k=2, level="well")  # the field's stored embedding
    channels = {ch: base64.b64encode(setup.objects.get_bytes(uri)).decode()
                for ch, uri in info["channel_uris"].items()}
    walk.search("search", train_id, images=channels, k=2, flatfield_plate=plate_id)
    walk.search("flush")
    walk.search("get_search", found["search_id"])
    walk.search("get_search", "no-such-search", expect=NotFound)
    walk.search("list_searches", train_id)
    walk.search("embed_upload", train_id, channels)
    walk.search("delete_index", train_id)

    # ------------------------------------------------------------ clean up
    call("training", "delete_embedding", expect=Conflict, name=spec)
    call("training", "delete_training", train_id=train_id)
    call("training", "delete_embedding", name=spec)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Recorder, Walk]]:
    folder = tmp_path_factory.mktemp("permissions")
    with pytest.MonkeyPatch.context() as env, mock_aws():
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.setenv(key, "testing")
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
        s3.create_bucket(Bucket=INPUT_BUCKET)
        setup_database = Database(PREFIX, region=REGION, client=boto3.client("dynamodb", region_name=REGION))
        for table_set in runtime.table_sets().values():
            table_set(setup_database)
        setup_database.create()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machines = {workflow: sfn.create_state_machine(
            name=f"perm-{workflow}", roleArn=f"arn:aws:iam::{ACCOUNT}:role/states",
            definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
            for workflow in ("process-plate", "train", "embed")}
        settings = Settings.from_env({
            "BIOIMS_RUNTIME": "aws", "BIOIMS_TABLE_PREFIX": PREFIX, "AWS_DEFAULT_REGION": REGION,
            "BIOIMS_ARTIFACT_URI": f"s3://{ARTIFACT_BUCKET}/{ARTIFACT_PREFIX}", "BIOIMS_INPUT_BUCKET": INPUT_BUCKET,
            "BIOIMS_SFN_PROCESS_PLATE_ARN": machines["process-plate"], "BIOIMS_SFN_TRAIN_ARN": machines["train"],
            "BIOIMS_SFN_EMBED_ARN": machines["embed"],
            **{f"BIOIMS_FUNCTION_{s.upper().replace('-', '_')}": f"perm-{s}-invoke" for s in LAMBDA_SERVICES}})
        recorder = Recorder(settings)
        containers = {p: runtime.aws(settings, service=p, clients=recorder.clients(p)) for p in PYTHON_PRINCIPALS
                      if p != "jobs"}
        containers |= {f"jobs:{s}": runtime.aws(settings, service=s, clients=recorder.clients("jobs"))
                       for s in set(runtime.STEP_SERVICE.values())}  # a Batch job runs as its step's service
        recorder.targets = {s: containers[s] for s in LAMBDA_SERVICES}
        # not recorded: the test's own hands, every service in-process over the same tables and bucket
        containers["setup"] = runtime.build(settings, setup_database, ObjectStore(boto3.client("s3", region_name=REGION)))
        walk = Walk(recorder, containers)
        walkthrough(walk, containers["setup"], folder)
        yield recorder, walk


# ================================================================= checks
def granted(principal: str) -> set[Grant]:
    return {(action, resource) for action, resources in permissions.PERMISSIONS[principal].items()
            for resource in resources}


def test_the_walkthrough_exercises_every_operation(recorded: tuple[Recorder, Walk]) -> None:
    _, walk = recorded
    for service in LAMBDA_SERVICES:
        assert walk.called[service] == {op.function for op in SERVICES[service].operations}, service
    assert walk.called["jobs"] == set(STEPS)
    search_methods = {name for name in vars(type(walk.c["search"].search))
                      if not name.startswith("_") and callable(getattr(walk.c["search"].search, name))}
    assert walk.called["search"] == search_methods


@pytest.mark.parametrize("principal", PYTHON_PRINCIPALS)
def test_every_call_is_granted(recorded: tuple[Recorder, Walk], principal: str) -> None:
    recorder, _ = recorded
    calls = recorder.calls[principal]
    assert calls, f"{principal} made no AWS call"
    missing = {grant: sorted(calls[grant]) for grant in calls if grant not in granted(principal)}
    assert not missing, f"{principal} calls what its role does not grant: " + "; ".join(
        f"{action} on {resource} (by {', '.join(ops)})" for (action, resource), ops in sorted(missing.items()))


def test_every_principal_is_checked() -> None:
    assert set(permissions.PERMISSIONS) == {*PYTHON_PRINCIPALS, *NOT_PYTHON}


@pytest.mark.parametrize("principal", PYTHON_PRINCIPALS)
def test_every_grant_is_used_or_explained(recorded: tuple[Recorder, Walk], principal: str) -> None:
    """The soft list: a grant the walkthrough does not use is listed in NOT_EXERCISED with why (a listed
    grant that becomes used, or that is no longer granted, must leave the list)."""
    recorder, _ = recorded
    unused = {grant for grant in granted(principal) if grant not in recorder.calls[principal]}
    listed = set(NOT_EXERCISED.get(principal, {}))
    assert unused == listed, (f"{principal}: grants neither used nor listed: {sorted(unused - listed)}; "
                              f"listed but used or not granted: {sorted(listed - unused)}")
