"""AWS Batch submission of job steps, against moto (no containers are run)."""

from __future__ import annotations

import time

import boto3
import pytest
from moto import mock_aws

from bioims.errors import InvalidInput, NotFound
from bioims.jobs.batch import BatchSubmitter, array_element
from bioims.store.keys import Keys
from bioims.store.objects import ObjectStore


@pytest.fixture
def batch(aws_env):
    with mock_aws(config={"batch": {"use_docker": False}}):
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client("batch", region_name="us-east-1")
        env = client.create_compute_environment(computeEnvironmentName="cpu", type="UNMANAGED", serviceRole=role)
        client.create_job_queue(jobQueueName="bioims-cpu", priority=1, state="ENABLED",
                                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}])
        client.register_job_definition(jobDefinitionName="bioims-job", type="container",
                                       containerProperties={"image": "bioims-job:latest", "vcpus": 1, "memory": 2048,
                                                            "command": ["python", "-m", "bioims.jobs"]})
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        objects = ObjectStore(s3)
        yield BatchSubmitter(client, "bioims-cpu", "bioims-job", objects, Keys("s3://artifacts/bioims")), objects


def test_array_job_carries_its_parameter_list(batch):
    submitter, objects = batch
    params = [{"spec": "demo", "image_id": f"img{i}"} for i in range(5)]
    job_id = submitter.submit("preprocess-image", params)
    described = submitter.describe(job_id)
    assert described["size"] == 5
    job = submitter._batch.describe_jobs(jobs=[job_id])["jobs"][0]
    command = job["container"]["command"]
    assert command[:4] == ["python", "-m", "bioims.jobs", "preprocess-image"] and command[4] == "--array-params"
    assert objects.get_json(command[5]) == params
    assert array_element(objects.get_json(command[5]), 3) == {"spec": "demo", "image_id": "img3"}


def test_single_jobs_and_dependencies(batch):
    submitter, _ = batch
    first = submitter.submit("flatfield", [{"spec": "demo", "plate_id": "p", "channel": "DAPI"}])
    second = submitter.submit("preprocess-image", [{"spec": "demo", "image_id": "a"}, {"spec": "demo", "image_id": "b"}],
                              depends_on=[first])
    job = submitter._batch.describe_jobs(jobs=[second])["jobs"][0]
    assert job["dependsOn"] == [{"jobId": first}]
    assert submitter.describe(first)["size"] == 1


def test_bad_submissions(batch):
    submitter, _ = batch
    with pytest.raises(InvalidInput, match="unknown job step"):
        submitter.submit("train-everything", [{}])
    with pytest.raises(InvalidInput, match="empty"):
        submitter.submit("flatfield", [])
    with pytest.raises(InvalidInput, match="outside the 2 parameter sets"):
        array_element([{}, {}], 2)


def test_embedding_job_as_an_array_on_the_cpu_queue(batch):
    """The embed workflow's units, one per plate, become one array job whose children each pick their plate."""
    from bioims.jobs.steps import embed_units

    submitter, objects = batch
    units = embed_units("demo-folds-0-abc", ["plate-a", "plate-b", "plate-c"], threads=4)
    job_id = submitter.submit("embed-plate", units, name="embed-demo")
    job = submitter._batch.describe_jobs(jobs=[job_id])["jobs"][0]
    assert job["jobName"] == "embed-demo" and job["jobQueue"].endswith("bioims-cpu")
    assert submitter.describe(job_id)["size"] == 3
    command = job["container"]["command"]
    assert command[3] == "embed-plate"
    stored = objects.get_json(command[5])
    assert [array_element(stored, i)["plate_id"] for i in range(3)] == ["plate-a", "plate-b", "plate-c"]
    assert all(u == {"train_id": "demo-folds-0-abc", "plate_id": u["plate_id"], "force": False, "threads": 4}
               for u in stored)


def test_status_follows_the_job_to_its_end(batch):
    """moto (without Docker) moves a job through the queue to SUCCEEDED within about a second; ``describe``
    reports each child's state of an array job in ``status_summary``."""
    submitter, _ = batch
    job_id = submitter.submit("thumbnails", [{"image_id": "a"}, {"image_id": "b"}, {"image_id": "c"}])
    states = [submitter.describe(job_id)["status"]]
    deadline = time.monotonic() + 20
    while states[-1] not in ("SUCCEEDED", "FAILED") and time.monotonic() < deadline:
        time.sleep(0.1)
        states.append(submitter.describe(job_id)["status"])
    assert states[0] in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED")
    final = submitter.describe(job_id)
    assert final["status"] == "SUCCEEDED" and final["size"] == 3
    assert final["status_summary"]["SUCCEEDED"] == 3


def test_describing_an_unknown_job_is_not_found(batch):
    submitter, _ = batch
    with pytest.raises(NotFound, match="no Batch job 'nope'"):
        submitter.describe("nope")
