"""The state machines executed, offline, by moto's Step Functions interpreter (see :mod:`tests.sfn`):
their JSONata by jsonata-python, their Lambda tasks by the services' real ``invoke`` handlers (each
``services/<name>/app.py``, as Lambda loads it), their Batch jobs by the job command ``python -m
bioims.jobs ...`` with each array child's ``AWS_BATCH_JOB_ARRAY_INDEX``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from bioims import runtime
from bioims.api.http import search_app
from bioims.settings import FUNCTION_SERVICES
from tests.conftest import REPO
from asl import resolve, substitute
from cloudformation import load_template
from tests.sfn import LOST_HOST, HostTerminated, LocalBatch, SearchGateway, in_process_job, offline_interpreter
from tests.unit.test_aws import (ACCOUNT, ARTIFACTS, INPUT, MOTO_CONFIG, PREFIX, REGION, create_state_machine,
                                 deploy_data, install_functions, put_plate, template_environment)
from tests.unit.test_permissions import SPEC, manifests

MACHINES = REPO / "infra" / "statemachines"
WORKFLOWS = ("process-plate", "train", "embed")


def substitutions() -> dict[str, str]:
    """infra/statemachines.yaml's DefinitionSubstitutions for the test account."""
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:bioims-test-{{}}-invoke"
    return {"ImageManagementFunction": function.format("image-management"),
            "TrainingFunction": function.format("training"), "ArtifactBucket": ARTIFACTS,
            "ArtifactPrefix": "bioims", "CpuQueue": "bioims-test-cpu", "GpuQueue": "bioims-test-gpu",
            "JobDefinition": "bioims-test-job", "GpuJobDefinition": "bioims-test-gpu-job",
            "SearchApiEndpoint": "search.example.org", "EmbedThreads": "1"}


def job_definitions() -> dict[str, dict[str, str]]:
    """The environment of infra/batch.yaml's job definitions in the test account, by the names the state
    machines are given (:func:`substitutions`)."""
    resources = load_template(REPO / "infra" / "batch.yaml")["Resources"]
    values = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "Prefix": "bioims-test",
              "TablePrefix": PREFIX, "ArtifactBucket": ARTIFACTS, "ArtifactPrefix": "bioims", "InputBucket": INPUT}
    return {name: {e["Name"]: str(resolve(e["Value"], values))
                   for e in resources[logical]["Properties"]["ContainerProperties"]["Environment"]}
            for name, logical in (("bioims-test-job", "JobDefinition"), ("bioims-test-gpu-job", "GpuJobDefinition"))}


@pytest.fixture
def executed(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A moto account that executes state machines: the tables, the buckets, the three state machines
    from infra/statemachines/, the services' functions and the template's environment in this process."""
    with mock_aws(config={**MOTO_CONFIG, "stepfunctions": {"execute_state_machine": True}}):
        s3 = deploy_data()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machines = {w: create_state_machine(sfn, f"bioims-test-{w}", json.loads(
            substitute((MACHINES / f"{w}.asl.json").read_text(), substitutions()))) for w in WORKFLOWS}
        for name, value in template_environment(machines).items():
            monkeypatch.setenv(name, value)
        functions, handler = install_functions(monkeypatch)
        apps = {s: handler(s) for s in FUNCTION_SERVICES}
        batch = LocalBatch(in_process_job(monkeypatch), job_definitions())
        search = runtime.aws(service="search").search
        waits = offline_interpreter(monkeypatch, functions, batch,
                                    SearchGateway(search_app(search, load=False, watch=0)))
        yield {"s3": s3, "sfn": sfn, "apps": apps, "batch": batch, "search": search, "waits": waits}


def finished(sfn: Any, execution_arn: str, timeout: float = 120) -> dict[str, Any]:
    """The execution once it has ended, with ``events``: its history (the failed states' details)."""
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, described
        time.sleep(0.1)
    history = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return {**described, "events": [{k: v for k, v in e.items() if k.endswith("Details") or k == "type"}
                                    for e in history]}


def processed_plates(executed: dict[str, Any], folder: Any) -> list[str]:
    """The first two plates of the tiny screen registered and run through process-plate; their ids."""
    images = executed["apps"]["image-management"]
    plate_ids = []
    for document in manifests(folder / "tiny", plates=2, bucket=INPUT):
        plate_id = images({"method": "populateSourcePlate", "manifest": document}, None)["plate_id"]
        processed = finished(executed["sfn"], images({"method": "inspectPlate", "plateId": plate_id}, None))
        assert processed["status"] == "SUCCEEDED", json.dumps(processed["events"], default=str)
        plate_ids.append(plate_id)
    return plate_ids


def test_process_plate_runs_to_completion(executed: dict[str, Any], rng: np.random.Generator) -> None:
    """inspectPlate starts process-plate on Step Functions: the image list from the function, an inspect
    array job (one child per field), validation by the function, a thumbnails array job. The plate ends
    validated with every thumbnail in the artifact bucket."""
    images = executed["apps"]["image-management"]
    plate_id = images({"method": "populateSourcePlate", "manifest": put_plate(executed["s3"], rng)}, None)["plate_id"]
    execution = finished(executed["sfn"], images({"method": "inspectPlate", "plateId": plate_id}, None))
    assert execution["status"] == "SUCCEEDED", json.dumps(execution["events"], default=str)
    jobs = executed["batch"].submitted
    assert [(j["command"][3], j["arraySize"]) for j in jobs] == [("inspect-image", 2), ("thumbnails", 2)]
    assert images({"method": "getPlate", "plate": plate_id}, None)["status"] == "validated"
    for image_id in images({"method": "getImageIdsByPlateId", "plateId": plate_id}, None):
        info = images({"method": "getImageInfo", "imageId": image_id}, None)
        assert info["status"] == "valid" and (info["height"], info["width"]) == (16, 20)
    thumbnails = executed["s3"].list_objects_v2(Bucket=ARTIFACTS, Prefix=f"bioims/plates/{plate_id}/thumbnails/")
    assert sum(o["Key"].endswith(".png") for o in thumbnails["Contents"]) == 4  # 2 fields x widths 100, 1000
    assert json.loads(execution["output"])["plate_id"] == plate_id


def local_composition(folder: Any) -> Any:
    """The one-machine composition (every service in this process, the local runner) in the same moto
    account under its own table prefix, its objects as files under ``folder``: what ``bioims`` runs on one
    machine, for the same screen."""
    from bioims.jobs.runner import LocalRunner
    from bioims.jobs.tables import RunnerTables
    from bioims.settings import Settings
    from bioims.store.objects import ObjectStore
    from bioims.store.tables import Database

    settings = Settings(home=folder, table_prefix="bioims-local-", input_bucket=INPUT, region=REGION)
    database = Database(settings.table_prefix, region=REGION, client=boto3.client("dynamodb", region_name=REGION))
    c = runtime.build(settings, database, ObjectStore(boto3.client("s3", region_name=REGION)),
                      LocalRunner(settings, RunnerTables(database)))
    database.create()
    return c


def field_outputs(fields: list[dict[str, Any]], info: Any, vector: Any, thumbnail: Any) -> dict[tuple, dict]:
    """What the workflows made of each field, by its source names (plate, well, site): its inspection,
    its thumbnail's bytes, its cells under the spec and its embedding."""
    return {(f["plate"], f["well"], f["site"]): {
        **{k: v for k, v in info(f["image_id"]).items() if k in ("status", "width", "height", "channels", "dtype")},
        "thumbnail": thumbnail(f["plate_id"], f["image_id"]), "cells": f["cells"],
        "embedding": vector(f["image_id"]) if f["cells"] else None} for f in fields}


def test_train_then_embed_run_to_completion(executed: dict[str, Any], tmp_path: Any) -> None:
    """On two plates of the tiny screen: train (preprocess each plate: flat-field and crop arrays; the
    run's train-model job on the GPU queue; every export checked), then embed (an embed-plate array, a
    build-index job per level, the new indexes reloaded through the search API). The run is complete with
    a verified model, every preprocessed field has an embedding, and the index answers a query; the
    treatment level, whose job is lost twice, is skipped without stopping the others. The local runner,
    run on the same screen, makes the same inspections, thumbnails, cells, model and embeddings."""
    images, training, embedding = (executed["apps"][s] for s in ("image-management", "training", "embedding"))
    plate_ids = processed_plates(executed, tmp_path)
    training({"method": "createEmbedding", "spec": SPEC}, None)
    started = training({"method": "train", "spec": SPEC["name"], "epochs": 1, "seed": 4}, None)
    trained = finished(executed["sfn"], started["execution_id"], timeout=600)
    assert trained["status"] == "SUCCEEDED", json.dumps(trained["events"], default=str)
    (train_id,) = started["train_ids"]
    run = training({"method": "getTraining", "trainId": train_id}, None)
    assert run["status"] == "complete" and run["metrics"]["verification"]["max_abs_diff"] <= \
        run["metrics"]["verification"]["tolerance"]
    queues = {j["command"][3]: j["jobQueue"] for j in executed["batch"].submitted}
    assert queues["train-model"] == "bioims-test-gpu" and queues["preprocess-image"] == "bioims-test-cpu"

    executed["batch"].fail("-treatment", attempts=2)
    embedded = finished(executed["sfn"], embedding({"method": "startComputeEmbedding", "trainId": train_id}, None),
                        timeout=600)
    assert embedded["status"] == "SUCCEEDED", json.dumps(embedded["events"], default=str)
    output = json.loads(embedded["output"])
    indexes = {i["level"]: i for i in output["indexes"]}
    assert output["plates"] == 2 and indexes["field"]["built"] and indexes["well"]["built"]
    assert not indexes["treatment"]["built"] and indexes["treatment"]["error"] == "States.TaskFailed"
    assert sorted(i["level"] for i in output["loaded"]) == ["field", "well"]
    builds = [j for j in executed["batch"].submitted if j["command"][3] == "build-index"]
    assert sorted(json.loads(j["command"][5])["level"] for j in builds) == ["field", "treatment", "treatment", "well"]
    assert {j["jobQueue"] for j in builds} == {"bioims-test-cpu"}
    every = [f for p in plate_ids for f in images({"method": "listSpecFields", "spec": SPEC["name"], "plateId": p,
                                                   "preprocessed": False}, None)]
    assert len(every) == 20 and all(f["cells"] is not None for f in every)  # every field preprocessed
    fields = [f for f in every if f["cells"]]
    vectors = [embedding({"method": "getImageEmbedding", "imageId": f["image_id"], "trainId": train_id}, None)
               for f in fields]
    assert fields and all(v["status"] == "embedded" and len(v["embedding"]) == SPEC["embedding_length"]
                          for v in vectors)
    hits = executed["search"].search(train_id, image_id=fields[0]["image_id"], k=3)["hits"]
    assert len(hits) == 3 and fields[0]["image_id"] not in {h["id"] for h in hits}

    s3 = executed["s3"]
    aws = field_outputs(
        every, lambda i: images({"method": "getImageInfo", "imageId": i}, None),
        lambda i: embedding({"method": "getImageEmbedding", "imageId": i, "trainId": train_id}, None)["embedding"],
        lambda p, i: s3.get_object(Bucket=ARTIFACTS, Key=f"bioims/plates/{p}/thumbnails/{i}-100.png")["Body"].read())
    c = local_composition(tmp_path / "local")
    for document in manifests(tmp_path / "tiny", plates=2, bucket=INPUT):
        c.runner.run(c, "process-plate", {"plate_id": c.images.populate_source_plate(document)["plate_id"]})
    c.training.create_embedding(SPEC)
    c.runner.run(c, "preprocess", {"spec": SPEC["name"]})
    (local_run,) = c.training.create_trainings(SPEC["name"], "none", epochs=1, seed=4)
    c.runner.run(c, "train", {"train_ids": [local_run["train_id"]]})
    c.runner.run(c, "embed", {"train_id": local_run["train_id"]})
    local = field_outputs(
        [f for p in c.images.list_plates() for f in c.images.list_spec_fields(SPEC["name"], p["plate_id"], False)],
        c.images.get_image_info, lambda i: c.embedding.get_image_embedding(i, local_run["train_id"])["embedding"],
        lambda p, i: c.objects.get_bytes(c.keys.thumbnail(p, i, 100)))
    assert sorted(local) == sorted(aws) and len(aws) == 20
    for name, made in aws.items():
        expected = local[name]
        assert {k: v for k, v in made.items() if k != "embedding"} == \
            {k: v for k, v in expected.items() if k != "embedding"}, name
        assert (made["embedding"] is None) == (expected["embedding"] is None), name
        if made["embedding"] is not None:
            np.testing.assert_allclose(made["embedding"], expected["embedding"], rtol=0, atol=1e-5, err_msg=str(name))
    assert c.training.get_training(local_run["train_id"])["metrics"]["best_epoch"] == run["metrics"]["best_epoch"]


def test_a_failed_array_job_fails_the_execution_with_its_reason(executed: dict[str, Any],
                                                                rng: np.random.Generator) -> None:
    """The inspect array job fails twice (its try and its one retry): the execution fails with the
    job's reason and the plate is left as it was (not validated, no thumbnails)."""
    images = executed["apps"]["image-management"]
    plate_id = images({"method": "populateSourcePlate", "manifest": put_plate(executed["s3"], rng)}, None)["plate_id"]
    executed["batch"].fail("inspect-", attempts=2)
    execution = finished(executed["sfn"], images({"method": "inspectPlate", "plateId": plate_id}, None))
    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.TaskFailed" and "terminated" in execution["cause"]
    failed = [e["taskFailedEventDetails"] for e in execution["events"] if e["type"] == "TaskFailed"]
    assert [f["error"] for f in failed] == ["States.TaskFailed"] * 2 and "terminated" in failed[-1]["cause"]
    assert executed["waits"] == [30]  # the Inspect state's retry of a failed job
    assert [j["command"][3] for j in executed["batch"].submitted] == ["inspect-image", "inspect-image"]
    assert images({"method": "getPlate", "plate": plate_id}, None)["status"] == "registered"
    stored = executed["s3"].list_objects_v2(Bucket=ARTIFACTS, Prefix=f"bioims/plates/{plate_id}/").get("Contents", [])
    assert not [o["Key"] for o in stored if o["Key"].endswith(".png")]



def test_a_retried_array_job_that_then_succeeds_completes_the_plate(executed: dict[str, Any],
                                                                    rng: np.random.Generator) -> None:
    """The inspect array job is lost once (its host terminated) and succeeds on the Inspect state's retry:
    the execution succeeds and the plate is validated as if the first try had never happened."""
    images = executed["apps"]["image-management"]
    plate_id = images({"method": "populateSourcePlate", "manifest": put_plate(executed["s3"], rng)}, None)["plate_id"]
    executed["batch"].fail("inspect-", attempts=1)
    execution = finished(executed["sfn"], images({"method": "inspectPlate", "plateId": plate_id}, None))
    assert execution["status"] == "SUCCEEDED", json.dumps(execution["events"], default=str)
    failed = [e["taskFailedEventDetails"] for e in execution["events"] if e["type"] == "TaskFailed"]
    assert len(failed) == 1 and "terminated" in failed[0]["cause"] and executed["waits"] == [30]
    assert [j["command"][3] for j in executed["batch"].submitted] == ["inspect-image", "inspect-image", "thumbnails"]
    assert images({"method": "getPlate", "plate": plate_id}, None)["status"] == "validated"


def test_a_spot_interruption_during_training_resumes_to_the_same_model(executed: dict[str, Any], tmp_path: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of the same spec and seed, on two processed plates: one uninterrupted; one whose Spot host
    is reclaimed in the second batch of its second epoch. The Train state retries the lost job, train-model
    resumes from the epoch-1 checkpoint, and the run ends with the uninterrupted run's weights and history."""
    import io

    import torch

    from bioims.training import trainer

    training = executed["apps"]["training"]
    processed_plates(executed, tmp_path)
    training({"method": "createEmbedding", "spec": SPEC}, None)

    def trained(**settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        started = training({"method": "train", "spec": SPEC["name"], "epochs": 2, "seed": 4, **settings}, None)
        execution = finished(executed["sfn"], started["execution_id"], timeout=600)
        assert execution["status"] == "SUCCEEDED", json.dumps(execution["events"], default=str)
        (train_id,) = started["train_ids"]
        return execution, training({"method": "getTraining", "trainId": train_id}, None)

    _, straight = trained()
    augment, calls = trainer.augment, {"n": 0, "die": straight["metrics"]["history"][0]["batches"] + 2}

    def reclaimed(x: Any, generator: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == calls["die"]:
            raise HostTerminated
        return augment(x, generator)

    monkeypatch.setattr(trainer, "augment", reclaimed)
    execution, resumed = trained(trainId="spot-interrupted")
    lost = [e["taskFailedEventDetails"] for e in execution["events"] if e["type"] == "TaskFailed"]
    assert len(lost) == 1 and LOST_HOST in lost[0]["cause"] and executed["waits"] == [60]  # the Train retry
    assert [j["command"][3] for j in executed["batch"].submitted].count("train-model") == 3  # A, B lost, B again
    assert resumed["status"] == "complete" and resumed["metrics"]["resumed_from"] == [1]
    timings = ("seconds", "crops_per_second")
    assert [{k: v for k, v in h.items() if k not in timings} for h in resumed["metrics"]["history"]] == \
        [{k: v for k, v in h.items() if k not in timings} for h in straight["metrics"]["history"]]

    def weights(run: dict[str, Any]) -> dict[str, Any]:
        key = f"bioims/models/{run['train_id']}/best.pt"
        body = executed["s3"].get_object(Bucket=ARTIFACTS, Key=key)["Body"].read()
        return torch.load(io.BytesIO(body), weights_only=True)["model"]

    expected, actual = weights(straight), weights(resumed)
    assert list(expected) == list(actual) and all(torch.equal(expected[k], actual[k]) for k in expected)
