"""The training and embedding contracts: spec documents accepted as bioims.specs accepts them (and passed on
unchanged), bad arguments refused naming the field, and real responses matching the response models.

Train runs and embeddings need a preprocessed screen: their responses are checked in
tests/integration/test_contract_training_embedding.py."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from pydantic import TypeAdapter

from bioims.contract import dispatch, service, validate
from bioims.errors import InvalidInput, NotFound
from bioims.specs import EmbeddingSpec
from tests.unit.test_specs import SPEC, with_

TRAINING = service("training")
EMBEDDING = service("embedding")
CREATE = TRAINING.find("createEmbedding")

README_SPEC = {"name": "screen", "input": {"width": 160, "height": 128, "depth": 1,
                                           "channels": ["DAPI", "Tubulin", "Actin"]},
               "segmentation_channel": "DAPI", "roi_size": 32, "min_nucleus_voxels": 30, "embedding_length": 64,
               "training": {"epochs": 4, "folds": 2}}
SERVICE_README_SPEC = {"name": "demo", "input": {"width": 320, "height": 256, "depth": 1,
                                                 "channels": ["DAPI", "Tubulin", "Actin"]},
                       "segmentation_channel": "DAPI", "roi_size": 48, "min_nucleus_voxels": 60,
                       "embedding_length": 128}
TINY_TRAIN_SPEC = {"name": "tiny-train", "input": {"width": 160, "height": 128, "depth": 1,
                                                   "channels": ["DAPI", "Tubulin", "Actin"]},
                   "segmentation_channel": "DAPI", "roi_size": 32, "min_nucleus_voxels": 30, "embedding_length": 16,
                   "flatfield": {"sigma": 20.0},
                   "training": {"epochs": 2, "batch_size": 32, "folds": 2, "patience": 50,
                                "validation_fraction": 0.25}}
EVERY_KEY = {**EmbeddingSpec.from_dict(SPEC).to_dict(), "name": "every-key", "network": "seed", "loss": "supcon",
             "segmentation": {"declump": True}, "training": {**EmbeddingSpec.from_dict(SPEC).to_dict()["training"],
                                                             "compute": "gpu", "seed": 2**32 - 1}}
ACCEPTED = {
    "documented": SPEC,
    "tuned": with_(network="seed", loss="seed", training__epochs=3, flatfield__sigma=20),
    "readme": README_SPEC,
    "service-readme": SERVICE_README_SPEC,
    "tiny-train": TINY_TRAIN_SPEC,
    "every-key": EVERY_KEY,
    "round-trip": {**EmbeddingSpec.from_dict(TINY_TRAIN_SPEC).to_dict(), "name": "round-trip"},
    "empty-sections": {**SPEC, "name": "empty", "flatfield": {}, "normalization": {}, "segmentation": {},
                       "training": {}},
    "z-stack": {**SPEC, "name": "z", "input": {"width": 64, "height": 64, "depth": 8, "channels": ["Hoechst"]},
                "segmentation_channel": "Hoechst", "roi_size": 16, "min_nucleus_voxels": 1, "embedding_length": 2,
                "training": {"validation_fraction": 0, "learning_rate": 1, "temperature": 2}},
}


def check(op, result):
    """``result`` matches the operation's response type (and is JSON)."""
    json.dumps(result)
    TypeAdapter(op.response).validate_python(result)
    return result


def refused(op, args, *fields):
    """The contract refuses ``args`` with a short message naming each of ``fields``."""
    with pytest.raises(InvalidInput, match=f"invalid arguments for {op.method}") as e:
        validate(op, args)
    message = str(e.value)
    assert len(message) < 600
    for field in fields:
        assert f"{field}: " in message, message
    return message


# ------------------------------------------------------------------------------------------------ specs
@pytest.mark.parametrize("spec", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_every_spec_bioims_specs_accepts_is_passed_on_unchanged(container, spec):
    EmbeddingSpec.from_dict(spec)  # bioims.specs accepts it today
    before = copy.deepcopy(spec)
    args = validate(CREATE, {"spec": spec})
    assert args == {"spec": spec}  # the same keys and values (an integer given for a float is its float)
    assert spec == before  # not modified; and no default injected (bioims.specs fills them in)
    created = check(CREATE, dispatch(container.training, CREATE, {"spec": spec}))
    assert created == EmbeddingSpec.from_dict(spec).to_dict()
    info = check(TRAINING.find("getEmbeddingInfo"), dispatch(container.training, TRAINING.find("getEmbeddingInfo"),
                                                             {"embedding_name": spec["name"]}))
    assert info == created


def test_spec_lifecycle_through_the_contract(container):
    t = container.training

    def call(method, args):
        op = TRAINING.find(method)
        return check(op, dispatch(t, op, args))

    call("createEmbedding", {"spec": SPEC})
    call("createEmbedding", {"spec": README_SPEC})
    assert [s["name"] for s in call("listEmbeddings", {})] == ["bbbc021-demo", "screen"]
    assert call("getCompatiblePlates", {"embeddingName": "screen"}) == []
    assert call("getEmbeddingTrainings", {"name": "screen"}) == []
    assert call("deleteEmbedding", {"embedding_name": "screen"}) == {"deleted": "screen"}
    with pytest.raises(NotFound):
        call("getEmbeddingInfo", {"name": "screen"})
    with pytest.raises(NotFound):
        call("getTraining", {"trainId": "nope"})
    with pytest.raises(NotFound):
        call("createTraining", {"embedding_name": "nope", "holdout": "folds"})
    with pytest.raises(InvalidInput, match="no preprocessed fields"):  # validated, then refused by the service
        call("createTraining", {"spec": "bbbc021-demo", "holdout": "folds", "epochs": 0})


BAD_SPECS = [  # each refused naming the key (bioims.specs refuses them too, but for 65+ character names, inf, -1 seeds)
    ({"input__channels": ["../../../../tmp/x/pwned"]}, "spec.input.channels.0"),
    ({"input__channels": ["DAPI", "a/b"]}, "spec.input.channels.1"),
    ({"input__channels": ["DAPI", "a\x00b"]}, "spec.input.channels.1"),
    ({"input__channels": ["x" * 5000]}, "spec.input.channels.0"),
    ({"input__channels": "DAPI"}, "spec.input.channels"),
    ({"input__channels": []}, "spec.input.channels"),
    ({"input__channels": [f"c{i}" for i in range(65)]}, "spec.input.channels"),
    ({"segmentation_channel": "../DAPI"}, "spec.segmentation_channel"),
    ({"name": "../../etc"}, "spec.name"),
    ({"name": "has space"}, "spec.name"),
    ({"name": "x" * 65}, "spec.name"),
    ({"colour": "red"}, "spec.colour"),
    ({"input__extra": 1}, "spec.input.extra"),
    ({"training__nope": 1}, "spec.training.nope"),
    ({"roi_size": ...}, "spec.roi_size"),
    ({"input": ...}, "spec.input"),
    ({"input__width": "1280"}, "spec.input.width"),
    ({"input__width": 0}, "spec.input.width"),
    ({"input__depth": 10**400}, "spec.input.depth"),
    ({"roi_size": 128.0}, "spec.roi_size"),
    ({"roi_size": 4}, "spec.roi_size"),
    ({"roi_size": True}, "spec.roi_size"),
    ({"min_nucleus_voxels": 0}, "spec.min_nucleus_voxels"),
    ({"embedding_length": 1}, "spec.embedding_length"),
    ({"network": "vit"}, "spec.network"),
    ({"loss": "triplet"}, "spec.loss"),
    ({"flatfield": "none"}, "spec.flatfield"),
    ({"flatfield__cutoff_percentile": 0}, "spec.flatfield.cutoff_percentile"),
    ({"flatfield__sigma": -1}, "spec.flatfield.sigma"),
    ({"normalization__log_cap": 0}, "spec.normalization.log_cap"),
    ({"segmentation__declump": 1}, "spec.segmentation.declump"),
    ({"training__epochs": 0}, "spec.training.epochs"),
    ({"training__epochs": -1}, "spec.training.epochs"),
    ({"training__epochs": "abc"}, "spec.training.epochs"),
    ({"training__batch_size": 1}, "spec.training.batch_size"),
    ({"training__learning_rate": "fast"}, "spec.training.learning_rate"),
    ({"training__learning_rate": 0}, "spec.training.learning_rate"),
    ({"training__temperature": 0}, "spec.training.temperature"),
    ({"training__temperature": float("inf")}, "spec.training.temperature"),
    ({"training__seed": -1}, "spec.training.seed"),
    ({"training__folds": 1}, "spec.training.folds"),
    ({"training__compute": "tpu"}, "spec.training.compute"),
    ({"training__label_category": 5}, "spec.training.label_category"),
    ({"training__validation_fraction": 1}, "spec.training.validation_fraction"),
]


@pytest.mark.parametrize("changes, field", BAD_SPECS)
def test_bad_specs_are_refused_naming_the_key(changes, field):
    refused(CREATE, {"spec": with_(**changes)}, field)


def test_bad_specs_never_reach_the_service(container):
    for changes, _ in BAD_SPECS:
        with pytest.raises(InvalidInput):
            dispatch(container.training, CREATE, {"spec": with_(**changes)})
    assert container.training.list_embeddings() == []


@pytest.mark.parametrize("changes, message", [
    ({"input__channels": ["A", "A"], "segmentation_channel": "A"}, "distinct"),
    ({"segmentation_channel": "GFP"}, "not one of the input channels"),
    ({"network": "seed", "roi_size": 24}, "too small for the seed network"),
])
def test_rules_across_keys_are_left_to_bioims_specs(container, changes, message):
    spec = with_(**changes)
    assert validate(CREATE, {"spec": spec}) == {"spec": spec}
    with pytest.raises(InvalidInput, match=message):
        dispatch(container.training, CREATE, {"spec": spec})


def test_spec_must_be_an_object():
    refused(CREATE, {"spec": "bbbc021-demo"}, "spec")
    refused(CREATE, {"spec": [SPEC]}, "spec")
    refused(CREATE, {}, "spec")
    refused(CREATE, {"spec": SPEC, "name": "x"}, "name")


# ------------------------------------------------------------------------------------------------ train runs
@pytest.mark.parametrize("method", ["createTraining", "train"])
def test_training_arguments_are_typed_and_bounded(method):
    op = TRAINING.find(method)
    assert validate(op, {"embedding_name": "s"}) == validate(op, {"embeddingName": "s"}) == {"spec": "s"}
    assert validate(op, {"spec": "s", "holdout": "folds", "epochs": 0, "seed": 2**32 - 1, "network": "seed",
                         "loss": "supcon", "temperature": 0.2, "learningRate": 0.01}) == {
        "spec": "s", "holdout": "folds", "epochs": 0, "seed": 2**32 - 1, "network": "seed", "loss": "supcon",
        "temperature": 0.2, "learning_rate": 0.01}
    assert validate(op, {"spec": "s", "epochs": "3"}) == {"spec": "s", "epochs": 3}  # query-string form
    for args, field in [
        ({"spec": "s", "epochs": -1}, "epochs"),
        ({"spec": "s", "epochs": 10**400}, "epochs"),
        ({"spec": "s", "epochs": 10_001}, "epochs"),
        ({"spec": "s", "epochs": "abc"}, "epochs"),
        ({"spec": "s", "epochs": 1.5}, "epochs"),
        ({"spec": "s", "holdout": "xyz"}, "holdout"),
        ({"spec": "s", "holdout": ["folds"]}, "holdout"),
        ({"spec": "s", "seed": -1}, "seed"),
        ({"spec": "s", "seed": 2**32}, "seed"),
        ({"spec": "s", "network": "vit"}, "network"),
        ({"spec": "s", "loss": "triplet"}, "loss"),
        ({"spec": "s", "temperature": 0}, "temperature"),
        ({"spec": "s", "temperature": 10**400}, "temperature"),
        ({"spec": "s", "temperature": float("nan")}, "temperature"),
        ({"spec": "s", "learning_rate": -1.0}, "learning_rate"),
        ({"spec": "../../etc"}, "spec"),
        ({"spec": "x" * 5000}, "spec"),
        ({"spec": "s", "folds": 3}, "folds"),
        ({}, "spec"),
    ]:
        refused(op, args, field)


@pytest.mark.parametrize("method", ["getTraining", "getTrainingFilter", "getTrainingJobInfo", "deleteTraining"])
@pytest.mark.parametrize("train_id", ["a\x00b", "x" * 5000, "../../etc/passwd", "", 5, ["t"]],
                         ids=["nul", "5000-chars", "traversal", "empty", "int", "list"])
def test_train_ids_are_names(method, train_id):
    op = TRAINING.find(method)
    refused(op, {"train_id": train_id}, "train_id")
    refused(op, {"trainId": train_id}, "train_id")


@pytest.mark.parametrize("method", ["getEmbeddingInfo", "deleteEmbedding", "getCompatiblePlates",
                                    "getEmbeddingTrainings"])
def test_spec_names_are_bounded_names(method):
    op = TRAINING.find(method)
    assert validate(op, {"embedding_name": "s"}) == validate(op, {"name": "s"}) == {"name": "s"}
    refused(op, {"name": "../x"}, "name")
    refused(op, {"name": "x" * 65}, "name")
    refused(op, {}, "name")


# ------------------------------------------------------------------------------------------------ embedding
def test_embedding_arguments_are_typed_and_bounded():
    start = EMBEDDING.find("startComputeEmbedding")
    assert validate(start, {"trainId": "t", "plateIds": ["P1", "P 2"]}) == {"train_id": "t", "plate_ids": ["P1", "P 2"]}
    refused(start, {"train_id": "t", "plate_ids": "P1"}, "plate_ids")
    refused(start, {"train_id": "t", "plate_ids": ["P"] * 10_001}, "plate_ids")
    refused(start, {"train_id": "t", "plate_ids": ["x" * 5000]}, "plate_ids.0")
    refused(start, {"train_id": "t\x00"}, "train_id")
    plate = EMBEDDING.find("startComputePlateEmbedding")
    assert validate(plate, {"train_id": "t", "plate_id": "P", "force": "true"}) == {
        "train_id": "t", "plate_id": "P", "force": True}
    refused(plate, {"train_id": "t", "plate_id": "P", "threads": 2}, "threads")
    refused(plate, {"train_id": "t", "plate_id": "P", "force": "maybe"}, "force")
    refused(plate, {"train_id": "t"}, "plate_id")
    image = EMBEDDING.find("getImageEmbedding")
    refused(image, {"train_id": "t", "image_id": "x" * 5000}, "image_id")
    refused(image, {"train_id": "x" * 5000, "image_id": "i"}, "train_id")
    refused(EMBEDDING.find("listPlateEmbeddings"), {"train_id": "../t"}, "train_id")


def test_image_embedding_responses(container):
    op = EMBEDDING.find("getImageEmbedding")
    vector = np.linspace(-1, 1, 8, dtype=np.float32)
    container.tables["image-management"].images("IMG-1", "run-1", plate_id="P1", status="embedded", cell_count=3,
                            embedding=vector.tobytes()).save()
    container.tables["image-management"].images("IMG-2", "run-1", plate_id="P1", status="empty", error="no cells: no embedding").save()
    container.tables["image-management"].images("IMG-3", "origin", plate_id="P1", status="valid").save()
    embedded = check(op, dispatch(container.embedding, op, {"imageId": "IMG-1", "trainId": "run-1"}))
    assert embedded["cells"] == 3 and np.allclose(embedded["embedding"], vector)
    empty = check(op, dispatch(container.embedding, op, {"image_id": "IMG-2", "train_id": "run-1"}))
    assert empty["embedding"] is None and empty["cells"] is None and empty["error"]
    check(op, dispatch(container.embedding, op, {"image_id": "IMG-3", "train_id": "origin"}))
    with pytest.raises(NotFound):
        dispatch(container.embedding, op, {"image_id": "IMG-1", "train_id": "run-2"})
    with pytest.raises(NotFound):  # validated, then the service answers: no such run
        dispatch(container.embedding, EMBEDDING.find("listPlateEmbeddings"), {"train_id": "run-1"})
