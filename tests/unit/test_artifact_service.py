from __future__ import annotations

import json

import pytest

from bioims.errors import InvalidInput, NotFound
from bioims.services.artifact import ArtifactService
from bioims.services.artifact.tables import ArtifactTables


@pytest.fixture
def artifact_svc(database):
    tables = ArtifactTables(database)
    tables.create()
    return ArtifactService(tables)


def test_artifacts_are_recorded_per_context_and_train(artifact_svc):
    artifact_svc.create_artifact("plate1", "file:///a/thumb.png", type="thumbnail-100", size=10)
    artifact_svc.create_artifact("plate1", "file:///a/model.onnx", train_id="t1", type="model")
    artifact_svc.create_artifact("plate1", "file:///a/thumb.png", type="thumbnail-100", size=10)  # idempotent
    assert {a["uri"] for a in artifact_svc.get_artifacts("plate1")} == {"file:///a/thumb.png", "file:///a/model.onnx"}
    assert [a["uri"] for a in artifact_svc.get_artifacts("plate1", "t1")] == ["file:///a/model.onnx"]
    assert [a["context_id"] for a in artifact_svc.get_train_artifacts("t1")] == ["plate1"]
    assert artifact_svc.get_artifacts("other") == []


def test_annotation_and_delete(artifact_svc):
    artifact_svc.create_artifact("c", "s3://b/k", train_id="t")
    artifact_svc.add_annotation("c", "first", "s3://b/k", train_id="t")
    out = artifact_svc.add_annotation("c", "second", "s3://b/k", train_id="t")
    assert out["annotations"] == ["first", "second"]
    with pytest.raises(NotFound):
        artifact_svc.add_annotation("c", "x", "s3://b/missing", train_id="t")
    assert artifact_svc.delete_artifacts("c", "t") == {"deleted": 1}
    assert artifact_svc.get_artifacts("c") == []


def test_artifact_input_is_validated(artifact_svc):
    with pytest.raises(InvalidInput, match="must be a URI"):
        artifact_svc.create_artifact("c", "relative/path")
    with pytest.raises(InvalidInput, match="context_id"):
        artifact_svc.create_artifact("", "s3://b/k")


def test_parameters_keep_history(artifact_svc):
    with pytest.raises(NotFound):
        artifact_svc.get_parameter("thumbnail-widths")
    artifact_svc.set_parameter("thumbnail-widths", [100, 1000])
    artifact_svc.set_parameter("thumbnail-widths", [64])
    artifact_svc.set_parameter("region", "eu-west-1")
    assert artifact_svc.get_parameter("thumbnail-widths") == [64]
    assert artifact_svc.get_all() == {"region": "eu-west-1", "thumbnail-widths": [64]}
    artifact_svc.delete_parameter("region")
    assert artifact_svc.get_all() == {"thumbnail-widths": [64]}
    with pytest.raises(NotFound):
        artifact_svc.get_parameter("region")
    history = artifact_svc.get_history("region")
    assert [(h["version"], h["value"], h["deleted"]) for h in history] == [(1, "eu-west-1", False), (2, None, True)]
    with pytest.raises(NotFound):
        artifact_svc.delete_parameter("region")
    with pytest.raises(InvalidInput):
        artifact_svc.set_parameter("x", None)


def test_default_train_id(artifact_svc):
    with pytest.raises(NotFound):
        artifact_svc.get_default_train_id()
    artifact_svc.set_default_train_id("train-7")
    assert artifact_svc.get_default_train_id() == "train-7"


def test_message_logs(artifact_svc):
    mid = artifact_svc.create_message("plate registered")
    artifact_svc.add_message(mid, "inspected")
    artifact_svc.add_message(mid, "validated")
    assert [m["message"] for m in artifact_svc.list_messages(mid)] == ["plate registered", "inspected", "validated"]
    assert artifact_svc.get_message(mid)["message"] == "validated"
    with pytest.raises(NotFound):
        artifact_svc.add_message("nope", "x")
    assert artifact_svc.delete_message(mid) == {"deleted": 3}
    with pytest.raises(NotFound):
        artifact_svc.get_message(mid)


def test_a_key_is_resolved_under_the_store_root_and_never_leaves_it(database, tmp_path):
    tables = ArtifactTables(database)
    tables.create()
    root = tmp_path.as_uri()
    svc = ArtifactService(tables, root)
    out = svc.create_artifact("p", key="plate/p/thumb.png", annotations=["thumbnail"])
    assert out["uri"] == f"{root}/plate/p/thumb.png" and out["annotations"] == ["thumbnail"]
    for key in ("../outside.png", "a/../../b"):
        with pytest.raises(InvalidInput, match="would leave the root"):
            svc.create_artifact("p", key=key)
    with pytest.raises(InvalidInput, match="no store root"):
        ArtifactService(tables).create_artifact("p", key="k")
    assert [a["uri"] for a in svc.get_artifacts("p")] == [f"{root}/plate/p/thumb.png"]
    assert svc.add_annotation("p", "checked", key="plate/p/thumb.png")["annotations"] == ["thumbnail", "checked"]


def test_the_deployment_description_is_stored_and_recorded(database, tmp_path):
    """createDescribeStacksArtifact: CloudFormation DescribeStacks on AWS (here moto's, every page), the
    local runtime's settings on one machine; stored under describe-stacks/<context>/, recorded."""
    import boto3
    from moto import mock_aws

    from bioims import runtime
    from bioims.settings import Settings
    from bioims.store.objects import ObjectStore

    tables = ArtifactTables(database)
    tables.create()
    root = tmp_path.as_uri()
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        for name in ("bioims-dev", "bioims-dev-TrainingService-1"):
            cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(
                {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {"Out": {"Value": name}}}))
        svc = ArtifactService(tables, root, objects=ObjectStore(),
                              describe=lambda: runtime.describe_stacks(cloudformation))
        out = svc.create_describe_stacks_artifact("run-1", train_id="run-1")
    assert out["key"].startswith("describe-stacks/run-1/stacks-") and out["uri"] == f"{root}/{out['key']}"
    stored = json.loads((tmp_path / out["key"]).read_text())
    assert sorted(s["StackName"] for s in stored["Stacks"]) == ["bioims-dev", "bioims-dev-TrainingService-1"]
    assert [(a["uri"], a["type"]) for a in svc.get_artifacts("run-1", "run-1")] == [(out["uri"], "describe-stacks")]

    settings = Settings(home=tmp_path / "home", artifact_uri=root)
    local = ArtifactService(tables, root, objects=ObjectStore(), describe=lambda: runtime.local_description(settings))
    described = json.loads((tmp_path / local.create_describe_stacks_artifact("plate-1")["key"]).read_text())
    assert described["Runtime"] == "local" and described["ArtifactUri"] == root and "search" in described["Services"]
    with pytest.raises(InvalidInput):
        local.create_describe_stacks_artifact("..")
    with pytest.raises(InvalidInput, match="no object store"):
        ArtifactService(tables, root).create_describe_stacks_artifact("c")
