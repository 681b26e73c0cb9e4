from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from bioims.datasets.records import FieldRecord, PlateRecord
from bioims.errors import Conflict, InvalidInput, NotFound
from bioims.store.objects import path_to_uri

CHANNELS = ("DAPI", "Tubulin", "Actin")


def write_field(folder: Path, name: str, rng: np.random.Generator, shape=(32, 40)) -> dict[str, str]:
    uris = {}
    for i, ch in enumerate(CHANNELS):
        path = folder / f"{name}_w{i + 1}.tif"
        tifffile.imwrite(path, rng.integers(0, 4000, shape, dtype=np.uint16))
        uris[ch] = path_to_uri(path)
    return uris


def make_plate(tmp_path: Path, rng, source="Week1_100", *, broken: bool = False) -> PlateRecord:
    folder = tmp_path / source
    folder.mkdir(parents=True)
    fields = []
    for well, compound, moa in (("B02", "taxol", "Microtubule stabilizers"), ("B03", "DMSO", "DMSO")):
        for site in ("s1", "s2"):
            uris = write_field(folder, f"{well}_{site}", rng)
            fields.append(FieldRecord(well, site, uris, {"compound": compound, "concentration": 0.3,
                                                          "moa": moa, "batch": "Week1", "replicate": 1}))
    if broken:
        missing = {ch: path_to_uri(folder / f"gone_{ch}.tif") for ch in CHANNELS}
        fields.append(FieldRecord("B04", "s1", missing, {"compound": "x"}))
        odd = write_field(folder, "B05_s1", rng)
        tifffile.imwrite(Path(odd["Actin"][len("file://"):]), np.zeros((8, 8), np.uint16))
        fields.append(FieldRecord("B05", "s1", odd, {"compound": "y", "concentration": float("nan")}))
    return PlateRecord(source, CHANNELS, tuple(fields), batch="Week1")


def test_ingest_registers_everything_once(container, tmp_path, rng):
    images = container.images
    record = make_plate(tmp_path, rng, broken=True)
    summary = images.ingest([record])
    assert (summary.plates, summary.wells, summary.images, summary.invalid_images) == (1, 4, 6, 1)
    plate_id = summary.plate_ids[0]
    done: list[str] = []
    again = images.ingest([record], on_plate=done.append)
    assert again.plates == 0 and again.skipped_plates == [plate_id] and done == ["Week1_100"]
    assert len(images.get_image_ids_by_plate_id(plate_id)) == 6
    assert images.get_plate("Week1_100")["plate_id"] == plate_id  # lookup by source id
    assert [w["source_id"] for w in images.get_wells_by_plate_id(plate_id)] == ["B02", "B03", "B04", "B05"]
    b02 = images.get_images_by_plate_and_well_id(plate_id, "B02")
    assert sorted(i["field_source_id"] for i in b02) == ["s1", "s2"]
    missing = images.get_images_by_plate_and_well_id(plate_id, "B04")[0]
    assert missing["status"] == "invalid" and missing["error"].startswith("missing file: ")
    tags = {t["value"] for t in images.get_image_tags(b02[0]["image_id"])}
    assert tags == {"plate:Week1_100", "batch:Week1", "compound:taxol", "moa:Microtubule stabilizers",
                    "concentration:0.3"}
    assert container.tags.ensure_labels("moa", []) == {"DMSO": 0, "Microtubule stabilizers": 1}
    messages = container.artifacts.list_messages(images.get_plate_message_id(plate_id))
    assert "1 with missing files" in messages[0]["message"]
    with pytest.raises(Conflict):
        images.ingest([record], if_exists="error")
    with pytest.raises(InvalidInput, match="appears twice"):
        images.ingest([record, record])


def test_process_plate_inspects_validates_and_makes_thumbnails(container, tmp_path, rng):
    images = container.images
    good = images.ingest([make_plate(tmp_path, rng)]).plate_ids[0]
    bad = images.ingest([make_plate(tmp_path, rng, source="Week1_200", broken=True)]).plate_ids[0]
    out = container.runner.run(container, "process-plate", {"plate_id": good})
    assert out["status"] == "SUCCEEDED"
    assert out["output"]["valid_images"] == 4 and out["output"]["thumbnails"] == 8
    assert images.get_plate(good)["status"] == "validated"
    assert [p["plate_id"] for p in images.list_compatible_plates(40, 32, 1, 3)] == [good]
    assert images.list_compatible_plates(1280, 1024, 1, 3) == []
    image_id = images.get_image_ids_by_plate_id(good)[0]
    arts = container.artifacts.get_artifacts(image_id)
    assert sorted(a["type"] for a in arts) == ["thumbnail-100", "thumbnail-1000"]
    assert all(container.objects.size(a["uri"]) == a["size"] > 0 for a in arts)
    rerun = container.runner.run(container, "process-plate", {"plate_id": good})
    assert rerun["output"]["thumbnails"] == 0  # idempotent: nothing rewritten

    out = container.runner.run(container, "process-plate", {"plate_id": bad})["output"]
    assert out["invalid_images"] == 2 and out["valid_images"] == 4
    assert images.get_plate_image_status(bad)["images"] == {"invalid": 2, "valid": 4}
    validation = out["validation"]
    assert not validation["valid"] and "2 invalid images" in validation["problems"][0]
    odd = [i for i in images.get_images_by_plate_id(bad) if i["well_source_id"] == "B05"][0]
    assert "shape" in odd["error"]
    log = [m["message"] for m in container.artifacts.list_messages(images.get_plate_message_id(bad))]
    assert any("invalid" in m for m in log)


def test_image_train_results_and_queries(container, tmp_path, rng):
    images = container.images
    plate_id = images.ingest([make_plate(tmp_path, rng)]).plate_ids[0]
    image_id = images.get_image_ids_by_plate_id(plate_id)[0]
    row = images.create_image_train_result(image_id, "train1", embedding=[0.5, 0.25], cell_count=12)
    assert row["embedding"] == [0.5, 0.25] and row["cell_count"] == 12
    rows = images.get_images_by_plate_id_and_train_id(plate_id, "train1")
    assert [r["image_id"] for r in rows] == [image_id]
    assert len(images.get_images_by_plate_id(plate_id)) == 4
    with pytest.raises(InvalidInput):
        images.create_image_train_result(image_id, "train1", embedding=[float("nan")])
    with pytest.raises(NotFound):
        images.get_image_info(image_id, "train2")
    with pytest.raises(NotFound):
        images.get_image_info("nope")
    with pytest.raises(NotFound):
        images.get_plate("nope")
    with pytest.raises(InvalidInput):
        images.list_compatible_plates("a", 1, 1, 1)
    updated = images.update_image_tags(image_id, ["compound:taxol", "qc:ok"])
    assert {t["value"] for t in updated} == {"compound:taxol", "qc:ok"}
    new_log = images.create_plate_message_id(plate_id)
    assert images.get_plate_message_id(plate_id) == new_log



def test_the_web_view_of_a_field(container, tmp_path, rng):
    """getImageView: each channel as a greyscale PNG at most ``width`` wide (never upscaled), the field's
    status and problem when it cannot be shown, and a clear error for an unknown field."""
    import base64
    import io

    from PIL import Image

    images = container.images
    plate_id = images.ingest([make_plate(tmp_path, rng, broken=True)]).plate_ids[0]
    container.runner.run(container, "process-plate", {"plate_id": plate_id})
    fields = {i["well_source_id"]: i for i in images.get_images_by_plate_id(plate_id) if i["field_source_id"] == "s1"}
    view = images.get_image_view(fields["B02"]["image_id"], width=20)
    assert [c["name"] for c in view["channels"]] == list(CHANNELS)
    assert (view["width"], view["height"], view["field_width"], view["field_height"]) == (20, 16, 40, 32)
    for channel in view["channels"]:
        png = Image.open(io.BytesIO(base64.b64decode(channel["png"].removeprefix("data:image/png;base64,"))))
        assert png.mode == "L" and png.size == (20, 16)
    assert images.get_image_view(fields["B02"]["image_id"], width=2048)["width"] == 40  # never upscaled
    assert (view["plate"], view["well"], view["site"], view["metadata"]["moa"]) == \
        ("Week1_100", "B02", "s1", "Microtubule stabilizers")
    missing = images.get_image_view(fields["B04"]["image_id"])
    assert missing["status"] == "invalid" and "missing file: " in missing["error"] and missing["channels"] == []
    unprocessed = images.get_image_view(fields["B02"]["image_id"], spec="no-such-spec")
    assert unprocessed["cells"] is None and unprocessed["boxes"] is None
    with pytest.raises(NotFound, match="no image 'nope'"):
        images.get_image_view("nope")
    with pytest.raises(InvalidInput):
        images.get_image_view(fields["B02"]["image_id"], spec="../escape")
