"""Real responses of the training and embedding operations, called through the contract on the tiny
preprocessed screen (dynalite), match the contract's response models: spec, compatible plates, train runs
(created, trained, untrained), job info, filter, deletion, the train and embed workflows' starts, a plate's
embedding (computed, then skipped), embedded plates and field embeddings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from bioims.contract import dispatch, service
from bioims.errors import InvalidInput
from bioims.profiles.io import read_profiles
from tests.integration.conftest import preprocessed_screen

SPEC = {"name": "tiny-contract", "input": {"width": 160, "height": 128, "depth": 1,
                                           "channels": ["DAPI", "Tubulin", "Actin"]},
        "segmentation_channel": "DAPI", "roi_size": 32, "min_nucleus_voxels": 30, "embedding_length": 8,
        "flatfield": {"sigma": 20.0},
        "training": {"epochs": 1, "batch_size": 32, "folds": 2, "patience": 50, "validation_fraction": 0.25}}


class StubRunner:
    """Records the workflows it is asked to start instead of starting a detached process."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, Any]]] = []

    def start(self, workflow: str, params: dict[str, Any]) -> str:
        self.started.append((workflow, params))
        return f"stub-{len(self.started)}"


@pytest.fixture(scope="module")
def screen(stack_settings, tmp_path_factory):
    return preprocessed_screen(stack_settings, tmp_path_factory.mktemp("contract"), SPEC)


def call(target: Any, name: str, method: str, args: dict[str, Any]) -> Any:
    """One operation through the contract; its result must be JSON and match the response model."""
    op = service(name).find(method)
    result = dispatch(target, op, args)
    json.dumps(result)
    TypeAdapter(op.response).validate_python(result)
    TypeAdapter(op.http_response).validate_python(op.http_body(result))
    return result


def test_training_responses_match_the_contract(screen, monkeypatch):
    c = screen
    t = c.training
    assert call(t, "training", "getEmbeddingInfo", {"embedding_name": SPEC["name"]})["training"]["epochs"] == 1
    assert SPEC["name"] in [s["name"] for s in call(t, "training", "listEmbeddings", {})]
    plates = call(t, "training", "getCompatiblePlates", {"name": SPEC["name"]})
    assert len(plates) == 4 and all(p["status"] == "validated" for p in plates)

    folds = call(t, "training", "createTraining", {"embedding_name": SPEC["name"], "holdout": "folds"})
    assert len(folds) == 2 and all(r["holdout"] and r["status"] == "created" for r in folds)
    created = call(t, "training", "getTraining", {"trainId": folds[0]["train_id"]})
    assert created["filter_count"] == len(call(t, "training", "getTrainingFilter", {"train_id": created["train_id"]}))
    waiting = call(t, "training", "getTrainingJobInfo", {"train_id": created["train_id"]})
    assert waiting["epochs_done"] == 0 and waiting["started_at"] is None and waiting["messages"]

    baseline, = call(t, "training", "createTraining", {"spec": SPEC["name"], "epochs": 0, "seed": 4})
    trained, = call(t, "training", "createTraining", {"spec": SPEC["name"], "holdout": "none", "seed": 5,
                                                      "network": "seed", "loss": "seed", "temperature": 0.2,
                                                      "learningRate": 0.01})
    assert trained["settings"]["network"] == "seed" and trained["holdout"] == []
    for run in (baseline, trained):
        t.run_training(run["train_id"], threads=1)
    done = call(t, "training", "getTraining", {"train_id": trained["train_id"]})
    assert done["status"] == "complete" and len(done["metrics"]["history"]) == 1
    assert set(done["model_uris"]) == {"onnx", "card", "checkpoint", "weights"}
    untrained = call(t, "training", "getTraining", {"train_id": baseline["train_id"]})
    assert untrained["metrics"]["history"] == [] and set(untrained["model_uris"]) == {"onnx", "card"}
    job = call(t, "training", "getTrainingJobInfo", {"train_id": trained["train_id"]})
    assert job["epochs_done"] == 1 and job["finished_at"] and any("complete" in m["message"] for m in job["messages"])
    runs = call(t, "training", "getEmbeddingTrainings", {"name": SPEC["name"]})
    assert {r["train_id"] for r in runs} >= {baseline["train_id"], trained["train_id"], *(r["train_id"] for r in folds)}

    runner = StubRunner()
    monkeypatch.setattr(t, "_runner", runner)
    started = call(t, "training", "train", {"embeddingName": SPEC["name"], "holdout": "folds"})
    assert started["train_ids"] == [r["train_id"] for r in folds] and runner.started == [
        ("train", {"train_ids": started["train_ids"]})]
    assert call(t, "training", "deleteTraining", {"train_id": folds[1]["train_id"]}) == {
        "deleted": folds[1]["train_id"], "objects": 1, "image_results": 0, "artifacts": 1}
    with pytest.raises(InvalidInput, match="holdout"):
        call(t, "training", "createTraining", {"spec": SPEC["name"], "holdout": "xyz"})
    with pytest.raises(InvalidInput, match="epochs"):
        call(t, "training", "train", {"spec": SPEC["name"], "epochs": -1})


def test_embedding_responses_match_the_contract(screen, monkeypatch):
    c = screen
    e = c.embedding
    run, = c.training.create_trainings(SPEC["name"], "none", epochs=0, seed=8)
    train_id = run["train_id"]
    c.training.run_training(train_id, threads=1)
    plate_id = e.plates(train_id)[0]

    runner = StubRunner()
    monkeypatch.setattr(e, "_runner", runner)
    assert call(e, "embedding", "startComputeEmbedding", {"trainId": train_id, "plateIds": [plate_id]}) == "stub-1"
    assert runner.started == [("embed", {"train_id": train_id, "plate_ids": [plate_id]})]

    assert call(e, "embedding", "listPlateEmbeddings", {"train_id": train_id}) == []
    assert call(e, "embedding", "startComputePlateEmbedding", {"train_id": train_id, "plate_id": plate_id,
                                                               "force": True}) == "stub-2"
    assert runner.started[-1] == ("embed", {"train_id": train_id, "plate_ids": [plate_id], "force": True})
    computed = e.compute_plate_embedding(train_id, plate_id)  # the embed-plate job
    assert not computed["skipped"] and computed["failed"] == 0 and computed["fields"] > 0
    listed = call(e, "embedding", "listPlateEmbeddings", {"train_id": train_id})
    assert listed == [{"plate_id": plate_id, "uri": computed["uri"]}]
    table = read_profiles(c.objects.get_bytes(computed["uri"]))
    field = call(e, "embedding", "getImageEmbedding", {"imageId": table["Metadata_ImageId"].iloc[0],
                                                       "trainId": train_id})
    assert field["status"] == "embedded" and len(field["embedding"]) == SPEC["embedding_length"]
    images = c.tables["image-management"].images
    rows = images.by_plate.query(plate_id, images.train_id == train_id)
    for row in rows:
        if row.status != "embedded":  # empty (or failed) fields: no embedding, a reason
            other = call(e, "embedding", "getImageEmbedding", {"image_id": row.image_id, "train_id": train_id})
            assert other["embedding"] is None and other["error"]
    with pytest.raises(InvalidInput, match="threads"):
        call(e, "embedding", "startComputePlateEmbedding", {"train_id": train_id, "plate_id": plate_id,
                                                            "threads": 1})
