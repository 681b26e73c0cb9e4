"""The contracts of the tags and image-management services against the real services: every response of a
small realistic scenario (a synthetic plate ingested, processed, tagged, labelled, preprocessed) matches its
documented type, and the bad inputs of issue 15 are refused before any service code runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

from bioims.contract import service, validate
from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.records import PlateRecord
from bioims.datasets.synth import IMAGE_CSV, MOA_CSV, synthesize
from bioims.errors import InvalidInput, NotFound
from bioims.services.image_management.preprocessing import spec_row_id

SPEC = {"name": "tiny32", "input": {"width": 160, "height": 128, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
        "segmentation_channel": "DAPI", "roi_size": 32, "min_nucleus_voxels": 30, "embedding_length": 64,
        "flatfield": {"sigma": 20.0}}


def _check(op: Any, result: Any) -> None:
    """``result`` is of the operation's documented type (as a Python value and as the JSON sent), and every
    key of a documented object is a field of its model (the documentation is complete, not just permissive)."""
    checked = TypeAdapter(op.response).validate_python(result)
    TypeAdapter(op.response).validate_json(json.dumps(result))
    TypeAdapter(op.http_response).validate_json(json.dumps(op.http_body(result)))
    for item in checked if isinstance(checked, list) else [checked]:
        if isinstance(item, BaseModel):
            assert not item.model_extra, f"{op.method}: undocumented keys {sorted(item.model_extra)}"


def call(obj: Any, service_name: str, method: str, **args: Any) -> Any:
    """One operation as every transport makes it: the contract validates, the service method runs."""
    op = service(service_name).find(method)
    result = getattr(obj, op.function)(**validate(op, args))
    _check(op, result)
    return result


def manifest_of(record: PlateRecord, *, missing: int | None = None) -> dict[str, Any]:
    """The seed's sourcePlateInfo document of a plate (image ``missing`` pointing at a file that is gone)."""
    images = []
    for i, f in enumerate(record.fields):
        keys = [{"name": ch, "keysuffix": uri + ("-gone" if i == missing else "")}
                for ch, uri in f.channel_uris.items()]
        metadata = {k: v for k, v in f.metadata.items() if k != "moa" and v is not None}
        images.append({"wellId": f.well, "imageSourceId": f.site, "channelKeys": keys,
                       "trainLabel": f.metadata["moa"], **metadata})
    return {"plateSourceId": record.source_id, "images": images}


@pytest.fixture
def plates(tmp_path: Path) -> list[PlateRecord]:
    out = tmp_path / "screen"
    synthesize(out, "tiny", seed=3)
    return read_loaddata(out / IMAGE_CSV, moa_csv=out / MOA_CSV)[:2]


@pytest.fixture
def started(container, monkeypatch) -> list[str]:
    """Workflows are recorded (RUNNING) instead of run in a detached process (moto is in-process)."""
    ids: list[str] = []

    def start(workflow: str, params: dict[str, Any]) -> str:
        ids.append(container.runner._create(workflow, params))
        return ids[-1]

    monkeypatch.setattr(container.runner, "start", start)
    return ids


# ------------------------------------------------------------------------------------------------ scenario
def test_image_management_responses_match_the_contract(container, plates, started):
    images = container.images
    container.artifacts.set_parameter("thumbnail-widths", [32])
    im = lambda method, **args: call(images, "image-management", method, **args)

    good = im("populateSourcePlate", manifest=manifest_of(plates[0]))
    assert good["images"] == 10 and good["invalid_images"] == 0
    plate_id = good["plate_id"]
    uploaded = im("uploadSourcePlate", manifest=manifest_of(plates[1], missing=0))
    bad_plate = uploaded["plate_id"]
    assert uploaded["invalid_images"] == 1 and uploaded["execution_id"] == started[-1]
    assert im("describeExecution", executionId=uploaded["execution_id"])["status"] == "RUNNING"

    processed = container.runner.run(container, "process-plate", {"plate_id": plate_id})
    described = im("describeExecution", execution_id=processed["execution_id"])
    assert described["status"] == "SUCCEEDED" and described["output"]["valid_images"] == 10
    assert im("inspectPlate", plate_id=plate_id) == started[-1]

    assert [p["plate_id"] for p in im("listPlates")] == sorted([plate_id, bad_plate],
                                                               key=lambda p: images.get_plate(p)["source_id"])
    assert im("getPlate", plate_id=plate_id) == im("getPlate", plate=plates[0].source_id)
    assert im("getPlate", plateId=plate_id)["status"] == "validated"
    assert im("getPlateImageStatus", plate_id=plate_id)["images"] == {"valid": 10}
    assert im("validatePlate", plate_id=plate_id)["valid"]
    assert [p["plate_id"] for p in im("listCompatiblePlates", width="160", height=128, depth=1, channels=3)] \
        == [plate_id]
    assert im("listCompatiblePlates", width=1280, height=1024, depth=1, channels=3) == []

    log = im("createPlateMessageId", plate_id=plate_id)
    assert im("getPlateMessageId", plate_id=plate_id) == log

    fields = im("getImagesByPlateId", plate_id=plate_id)
    ids = im("getImageIdsByPlateId", plate_id=plate_id)
    assert sorted(ids) == sorted(f["image_id"] for f in fields) and len(ids) == 10
    wells = im("getWellsByPlateId", plate_id=plate_id)
    in_well = im("getImagesByPlateAndWellId", plate_id=plate_id, well_id=wells[0]["source_id"])
    assert in_well == im("getImagesByPlateAndWellId", plate_id=plate_id, well_id=wells[0]["well_id"])
    image_id = in_well[0]["image_id"]
    info = im("getImageInfo", image_id=image_id)
    assert info["status"] == "valid" and info["width"] == 160 and info["metadata"]["moa"]

    assert im("inspectImage", image_id=image_id)["skipped"]
    assert im("inspectImage", image_id=image_id, force="true")["status"] == "valid"
    thumbs = im("makeThumbnails", image_id=image_id, widths=[16])
    assert list(thumbs["thumbnails"]) == ["16"] and thumbs["written"] == 1
    assert im("makeThumbnails", image_id=image_id)["written"] == 0  # the configured widths, already made

    tags = im("getImageTags", image_id=image_id)
    assert {t["type"] for t in tags} >= {"plate", "compound", "moa"}
    updated = im("updateImageTags", image_id=image_id, tags=[t["value"] for t in tags] + ["qc:ok"])
    assert "qc:ok" in {t["value"] for t in updated}

    row = im("createImageTrainResult", image_id=image_id, train_id="train1", embedding=[0.5, 0.25, 1],
             cell_count="12", results={"cells": "file:///cells.npy"})
    assert row["embedding"] == [0.5, 0.25, 1.0] and row["status"] == "computed"
    assert im("getImageInfo", image_id=image_id, train_id="train1")["cell_count"] == 12
    assert [r["image_id"] for r in im("getImagesByPlateIdAndTrainId", plate_id=plate_id, train_id="train1")] \
        == [image_id]

    # the plate with a missing file: invalid fields, failed validation, no thumbnails
    assert im("getPlateImageStatus", plate_id=bad_plate)["images"] == {"invalid": 1, "registered": 9}
    validation = im("validatePlate", plate_id=bad_plate)
    assert not validation["valid"] and validation["status"] == "invalid" and len(validation["problems"]) == 2
    assert im("getPlate", plate=bad_plate)["problems"] == validation["problems"]
    broken = next(i for i in im("getImagesByPlateId", plate_id=bad_plate) if i["status"] == "invalid")
    assert broken["error"].startswith("missing file")
    inspected = im("inspectImage", image_id=broken["image_id"], force=True)
    assert inspected["status"] == "invalid" and inspected["error"]
    assert im("makeThumbnails", image_id=broken["image_id"])["skipped"]

    # preprocessing under a spec
    container.training.create_embedding(SPEC)
    assert im("startPreprocess", spec="tiny32", plate_ids=[plate_id]) == started[-1]
    flat = im("computeFlatField", spec="tiny32", plate_id=plate_id, channel="DAPI")
    assert not flat["skipped"] and flat["images"] == 10
    assert im("computeFlatField", spec="tiny32", plate_id=plate_id, channel="DAPI")["skipped"]
    for channel in ("Tubulin", "Actin"):
        im("computeFlatField", spec="tiny32", plate_id=plate_id, channel=channel)
    crops = im("preprocessImage", spec="tiny32", image_id=image_id)
    assert not crops["skipped"] and crops["cells"] >= 0
    assert im("preprocessImage", spec="tiny32", image_id=image_id) == crops | {"skipped": True}
    # the spec's row of a field (reachable in Python only: ``spec#tiny32`` is not a train id)
    _check(service("image-management").find("getImageInfo"), images.get_image_info(image_id, spec_row_id("tiny32")))
    with pytest.raises(NotFound):
        im("getImageInfo", image_id=image_id, train_id="train2")


def test_tags_responses_match_the_contract(container):
    tags = container.tags
    tg = lambda method, **args: call(tags, "tags", method, **args)

    created = tg("createTag", value="compound:ALLN")
    assert tg("getTagById", tag_id=str(created["tag_id"])) == created == tg("getTagByValue", value="compound:ALLN")
    ids = tg("ensureTags", values=["moa:DMSO", "compound:ALLN", "plain"])
    assert ids["compound:ALLN"] == created["tag_id"]
    assert [t["value"] for t in tg("getAllTags", type="compound")] == ["compound:ALLN"]
    assert {t["type"] for t in tg("getAllTags")} == {"compound", "moa", ""}

    assert tg("tagImages", assignments={"img1": ["compound:A", "moa:M"], "img2": ["compound:A"]}, plate_id="p") == 3
    assert [t["value"] for t in tg("getImageTags", image_id="img1")] == ["compound:A", "moa:M"]
    assert sorted(tg("getImagesByTag", value="compound:A")) == ["img1", "img2"]
    assert {t["value"] for t in tg("addImageTags", image_id="img1", tags=["qc:blurry"])} == \
        {"compound:A", "moa:M", "qc:blurry"}
    assert {t["value"] for t in tg("setImageTags", imageId="img1", tags=["moa:M", "batch:W1"])} == {"moa:M", "batch:W1"}
    assert tg("removeImageTags", image_id="img2", tags=["compound:A", "never:there"]) == []
    assert tg("getImagesByTag", value="compound:A") == []

    assert tg("createCategory", category="moa", description="mechanism of action")["category"] == "moa"
    tg("createCategory", category="compound")
    assert tg("createLabel", category="moa", label="DMSO") == 0
    assert tg("createLabel", category="moa", label="Actin disruptors", description="cytochalasins") == 1
    assert tg("ensureLabels", category="moa", labels=["Eg5 inhibitors", "DMSO"]) == \
        {"DMSO": 0, "Actin disruptors": 1, "Eg5 inhibitors": 2}
    assert tg("getIndex", category="moa", label="Eg5 inhibitors") == 2
    assert tg("updateLabelDescription", category="moa", label="DMSO", description="control")["description"] == "control"
    assert "description" not in tg("updateLabelDescription", category="moa", label="DMSO", description=None)
    assert [label["index"] for label in tg("listLabels", category="moa")] == [0, 1, 2]
    assert tg("updateCategoryDescription", category="moa", description="MOA")["description"] == "MOA"
    assert [c["category"] for c in tg("listCategories")] == ["compound", "moa"]
    assert tg("deleteCategory", category="moa") == {"deleted_labels": 3}


# ------------------------------------------------------------------------------------------------ bad inputs
TRAVERSALS = ["../../etc/x", "..", ".", "a/b", "a\\b", "/abs", "", " x", "a b", "x" * 129, "..%2F..%2Fx", "a\x00b"]


def _refused(service_name: str, method: str, args: dict[str, Any], field: str, message: str = "") -> str:
    op = service(service_name).find(method)
    with pytest.raises(InvalidInput, match=f"invalid arguments for {op.method}") as e:
        validate(op, args)
    text = str(e.value)
    assert f"{field}:" in text, text
    assert message in text, text
    assert len(text) < 600
    return text


@pytest.mark.parametrize(("service_name", "method", "args", "field"), [
    ("tags", "tagImages", {"assignments": {"IMG": "qc:blurry"}}, "assignments.IMG"),
    ("tags", "addImageTags", {"image_id": "IMG", "tags": "qc:blurry"}, "tags"),
    ("tags", "setImageTags", {"image_id": "IMG", "tags": "qc:blurry"}, "tags"),
    ("tags", "removeImageTags", {"image_id": "IMG", "tags": "qc:blurry"}, "tags"),
    ("tags", "ensureTags", {"values": "abc"}, "values"),
    ("tags", "ensureLabels", {"category": "moa", "labels": "xyz"}, "labels"),
    ("image-management", "updateImageTags", {"image_id": "IMG", "tags": "qc:blurry"}, "tags"),
    ("image-management", "startPreprocess", {"spec": "s", "plate_ids": "p1"}, "plate_ids"),
    ("image-management", "makeThumbnails", {"image_id": "IMG", "widths": "100"}, "widths"),
    ("image-management", "createImageTrainResult", {"image_id": "i", "train_id": "t", "embedding": "0.5"},
     "embedding"),
])
def test_a_string_is_never_a_list(service_name, method, args, field):
    _refused(service_name, method, args, field, "Input should be a valid list")


@pytest.mark.parametrize(("service_name", "method", "args", "field"), [
    ("tags", "getImageTags", {"image_id": "x" * 3000}, "image_id"),
    ("tags", "getTagByValue", {"value": "x" * 3000}, "value"),
    ("tags", "createLabel", {"category": "moa", "label": "x" * 3000}, "label"),
    ("tags", "tagImages", {"assignments": {"IMG": ["x" * 3000]}}, "assignments.IMG.0"),
    ("image-management", "getImageInfo", {"image_id": "x" * 3000}, "image_id"),
    ("image-management", "getPlate", {"plate_id": "x" * 3000}, "plate"),
    ("image-management", "getImagesByPlateAndWellId", {"plate_id": "p", "well_id": "x" * 3000}, "well_id"),
    ("image-management", "describeExecution", {"execution_id": "x" * 3000}, "execution_id"),
])
def test_a_huge_id_is_refused(service_name, method, args, field):
    text = _refused(service_name, method, args, field, "String should have at most")
    assert "x" * 100 not in text  # never echoed


@pytest.mark.parametrize(("service_name", "method", "args", "field"), [
    ("tags", "createTag", {"value": "moa:a\x00b"}, "value"),
    ("tags", "getImageTags", {"image_id": "a\x00b"}, "image_id"),
    ("tags", "createCategory", {"category": "moa\x00"}, "category"),
    ("tags", "createCategory", {"category": "moa", "description": "a\x00b"}, "description"),
    ("image-management", "getPlate", {"plate": "a\x00b"}, "plate"),
    ("image-management", "getImagesByPlateId", {"plate_id": "a\x00b"}, "plate_id"),
    ("image-management", "inspectImage", {"image_id": "a\x00b"}, "image_id"),
])
def test_a_nul_byte_is_refused(service_name, method, args, field):
    _refused(service_name, method, args, field, "String should match pattern")


@pytest.mark.parametrize("name", TRAVERSALS)
def test_names_that_are_not_single_path_segments_are_refused(name):
    flat = {"spec": "tiny32", "plate_id": "p", "channel": "DAPI"}
    _refused("image-management", "computeFlatField", flat | {"channel": name}, "channel")
    _refused("image-management", "computeFlatField", flat | {"spec": name}, "spec")
    _refused("image-management", "preprocessImage", {"spec": name, "image_id": "i"}, "spec")
    _refused("image-management", "startPreprocess", {"spec": name}, "spec")
    _refused("image-management", "getImagesByPlateIdAndTrainId", {"plate_id": "p", "train_id": name}, "train_id")
    _refused("image-management", "getImageInfo", {"image_id": "i", "train_id": name}, "train_id")
    _refused("image-management", "createImageTrainResult", {"image_id": "i", "train_id": name}, "train_id")


def test_names_that_are_path_segments_are_accepted():
    op = service("image-management").find("computeFlatField")
    assert validate(op, {"spec": "tiny32", "plateId": "p", "channel": "Ch_1.a+b-c", "force": "true"}) == \
        {"spec": "tiny32", "plate_id": "p", "channel": "Ch_1.a+b-c", "force": True}
    assert op.path_variables == ("plate_id", "spec", "channel")


@pytest.mark.parametrize(("service_name", "method", "args", "field"), [
    ("image-management", "populateSourcePlate", {"manifest": 5}, "manifest"),
    ("image-management", "populateSourcePlate", {"manifest": ""}, "manifest.text"),
    ("image-management", "uploadSourcePlate", {"manifest": ["file:///x.json"]}, "manifest"),
    ("image-management", "createImageTrainResult", {"image_id": "i", "train_id": "t", "results": "x"}, "results"),
    ("image-management", "createImageTrainResult", {"image_id": "i", "train_id": "t", "embedding": ["0.5"]},
     "embedding.0"),
    ("image-management", "createImageTrainResult", {"image_id": "i", "train_id": "t", "embedding": [float("nan")]},
     "embedding.0"),
    ("image-management", "createImageTrainResult", {"image_id": "i", "train_id": "t", "cell_count": -1},
     "cell_count"),
    ("image-management", "listCompatiblePlates", {"width": "a", "height": 1, "depth": 1, "channels": 3}, "width"),
    ("image-management", "listCompatiblePlates", {"width": 0, "height": 1, "depth": 1, "channels": 3}, "width"),
    ("image-management", "listCompatiblePlates", {"width": 1, "height": 10**400, "depth": 1, "channels": 3}, "height"),
    ("image-management", "makeThumbnails", {"image_id": "i", "widths": [100, 0]}, "widths.1"),
    ("image-management", "inspectImage", {"image_id": "i", "force": "maybe"}, "force"),
    ("image-management", "getPlate", {}, "plate"),
    ("image-management", "getPlate", {"plate": "p", "extra": 1}, "extra"),
    ("tags", "createCategory", {"category": "moa", "description": 5}, "description"),
    ("tags", "getTagById", {"tag_id": "abc"}, "tag_id"),
    ("tags", "tagImages", {"assignments": {"IMG": [5]}}, "assignments.IMG.0"),
    ("tags", "tagImages", {"assignments": ["IMG", "qc:blurry"]}, "assignments"),
    ("tags", "createTag", {"value": ""}, "value"),
    ("tags", "updateLabelDescription", {"category": "moa", "label": "DMSO"}, "description"),
])
def test_wrong_types_and_bounds_name_the_field(service_name, method, args, field):
    _refused(service_name, method, args, field)


def test_seed_and_camel_case_names():
    get_plate = service("image-management").find("getPlate")
    assert validate(get_plate, {"plate_id": "P"}) == validate(get_plate, {"plateId": "P"}) == \
        validate(get_plate, {"plate": "P"}) == {"plate": "P"}
    assert get_plate.route == "GET /plates/{plate_id}"
    tag_images = service("tags").find("tagImages")
    assert validate(tag_images, {"assignments": {"IMG": ["qc:ok"]}, "plateId": "p"}) == \
        {"assignments": {"IMG": ["qc:ok"]}, "plate_id": "p"}
    assert validate(service("tags").find("getTagById"), {"tagId": "7"}) == {"tag_id": 7}
    manifest = service("image-management").find("populateSourcePlate")
    assert validate(manifest, {"manifest": "s3://bucket/plate.json"}) == {"manifest": "s3://bucket/plate.json"}
    assert validate(manifest, {"manifest": {"plateSourceId": "P", "images": []}})["manifest"]["plateSourceId"] == "P"

