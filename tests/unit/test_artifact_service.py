from __future__ import annotations

import pytest

from bioims.errors import InvalidInput, NotFound
from bioims.services.artifact import ArtifactService


@pytest.fixture
def svc(tables):
    return ArtifactService(tables)


def test_artifacts_are_recorded_per_context_and_train(svc):
    svc.create_artifact("plate1", "file:///a/thumb.png", type="thumbnail-100", size=10)
    svc.create_artifact("plate1", "file:///a/model.onnx", train_id="t1", type="model")
    svc.create_artifact("plate1", "file:///a/thumb.png", type="thumbnail-100", size=10)  # idempotent
    assert {a["uri"] for a in svc.get_artifacts("plate1")} == {"file:///a/thumb.png", "file:///a/model.onnx"}
    assert [a["uri"] for a in svc.get_artifacts("plate1", "t1")] == ["file:///a/model.onnx"]
    assert [a["context_id"] for a in svc.get_train_artifacts("t1")] == ["plate1"]
    assert svc.get_artifacts("other") == []


def test_annotation_and_delete(svc):
    svc.create_artifact("c", "s3://b/k", train_id="t")
    svc.add_annotation("c", "s3://b/k", "first", train_id="t")
    out = svc.add_annotation("c", "s3://b/k", "second", train_id="t")
    assert out["annotations"] == ["first", "second"]
    with pytest.raises(NotFound):
        svc.add_annotation("c", "s3://b/missing", "x", train_id="t")
    assert svc.delete_artifacts("c", "t") == {"deleted": 1}
    assert svc.get_artifacts("c") == []


def test_artifact_input_is_validated(svc):
    with pytest.raises(InvalidInput, match="must be a URI"):
        svc.create_artifact("c", "relative/path")
    with pytest.raises(InvalidInput, match="context_id"):
        svc.create_artifact("", "s3://b/k")


def test_parameters_keep_history(svc):
    with pytest.raises(NotFound):
        svc.get_parameter("thumbnail-widths")
    svc.set_parameter("thumbnail-widths", [100, 1000])
    svc.set_parameter("thumbnail-widths", [64])
    svc.set_parameter("region", "eu-west-1")
    assert svc.get_parameter("thumbnail-widths") == [64]
    assert svc.get_all() == {"region": "eu-west-1", "thumbnail-widths": [64]}
    svc.delete_parameter("region")
    assert svc.get_all() == {"thumbnail-widths": [64]}
    with pytest.raises(NotFound):
        svc.get_parameter("region")
    history = svc.get_history("region")
    assert [(h["version"], h["value"], h["deleted"]) for h in history] == [(1, "eu-west-1", False), (2, None, True)]
    with pytest.raises(NotFound):
        svc.delete_parameter("region")
    with pytest.raises(InvalidInput):
        svc.set_parameter("x", None)


def test_default_train_id(svc):
    with pytest.raises(NotFound):
        svc.get_default_train_id()
    svc.set_default_train_id("train-7")
    assert svc.get_default_train_id() == "train-7"


def test_message_logs(svc):
    mid = svc.create_message("plate registered")
    svc.add_message(mid, "inspected")
    svc.add_message(mid, "validated")
    assert [m["message"] for m in svc.list_messages(mid)] == ["plate registered", "inspected", "validated"]
    assert svc.get_message(mid)["message"] == "validated"
    with pytest.raises(NotFound):
        svc.add_message("nope", "x")
    assert svc.delete_message(mid) == {"deleted": 3}
    with pytest.raises(NotFound):
        svc.get_message(mid)
