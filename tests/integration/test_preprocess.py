"""Preprocessing end to end on the tiny synthetic screen, against a real dynalite and a real process pool:
outputs, idempotence, kill-and-resume, and per-field failures."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.synth import IMAGE_CSV, MOA_CSV, synthesize
from bioims.jobs.runner import LocalPool
from bioims.services.image_management.preprocessing import spec_row_id
from bioims.store.objects import uri_to_path


def spec_doc(name: str) -> dict:
    return {"name": name, "input": {"width": 160, "height": 128, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
            "segmentation_channel": "DAPI", "roi_size": 32, "min_nucleus_voxels": 30, "embedding_length": 64,
            "flatfield": {"sigma": 20.0}}


@pytest.fixture
def screen(container, tmp_path):
    out = tmp_path / "tiny"
    synthesize(out, "tiny", seed=5)
    summary = container.images.ingest(read_loaddata(out / IMAGE_CSV, moa_csv=out / MOA_CSV))
    container.artifacts.set_parameter("thumbnail-widths", [32])
    for plate_id in summary.plate_ids:
        container.runner.run(container, "process-plate", {"plate_id": plate_id})
    return summary.plate_ids


def preprocess(container, spec: str, workers: int = 2, **params) -> dict:
    with LocalPool(container, workers=workers) as pool:
        return container.runner.run(container, "preprocess", {"spec": spec, **params}, pool=pool)["output"]


def crops_digests(container, spec: str, plate_ids: list[str]) -> dict[str, str]:
    out = {}
    for plate_id in plate_ids:
        for image_id in container.preprocessing.valid_image_ids(plate_id):
            uri = container.keys.crops(spec, plate_id, image_id)
            out[image_id] = hashlib.sha256(container.objects.get_bytes(uri)).hexdigest()
    return out


def test_preprocess_writes_crops_labels_and_rows(container, screen):
    container.training.create_embedding(spec_doc("tiny32"))
    assert len(container.training.get_compatible_plates("tiny32")) == 4
    result = preprocess(container, "tiny32")
    assert (result["plates"], result["fields"], result["skipped"], result["failed"]) == (4, 40, 0, 0)
    assert result["cells"] > 200
    moa_index = {label["label"]: label["index"] for label in container.tags.list_labels("moa")}
    plate_id = screen[0]
    image_id = container.preprocessing.valid_image_ids(plate_id)[0]
    info = container.images.get_image_info(image_id)
    rois = container.objects.get_json(container.keys.rois("tiny32", plate_id, image_id))
    crops = np.load(io.BytesIO(container.objects.get_bytes(rois["crops"])))
    assert crops.dtype == np.uint16 and crops.shape == (rois["cells"], 3, 32, 32)
    assert rois["roi_size"] == {"z": 1, "y": 32, "x": 32} and len(rois["rois"]) == rois["cells"]
    assert set(rois["labels"]) <= {moa_index[info["metadata"]["moa"]]}
    assert all(0 <= r["y"] <= 128 - 32 and 0 <= r["x"] <= 160 - 32 and r["z"] == 0 for r in rois["rois"])
    row = container.images.get_image_info(image_id, spec_row_id("tiny32"))
    assert row["cell_count"] == rois["cells"] and row["status"] == "preprocessed"
    kinds = {a["type"] for a in container.artifacts.get_artifacts(image_id, spec_row_id("tiny32"))}
    assert kinds == {"crops", "rois"}
    assert {a["type"] for a in container.artifacts.get_artifacts(plate_id, spec_row_id("tiny32"))} == \
        {"flatfield-DAPI", "flatfield-Tubulin", "flatfield-Actin"}
    again = preprocess(container, "tiny32")
    assert (again["fields"], again["skipped"], again["cells"]) == (40, 40, result["cells"])


def test_killed_run_resumes_to_identical_outputs(container, screen, settings):
    container.training.create_embedding(spec_doc("reference"))
    container.training.create_embedding(spec_doc("killed"))
    preprocess(container, "reference")
    env = {**os.environ, **settings.to_env(), "BIOIMS_DYNAMODB_URL": container.database.host}
    proc = subprocess.Popen([sys.executable, "-m", "bioims.jobs", "preprocess", "--workers", "1",
                             "--params", json.dumps({"spec": "killed"})], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fields_dir = uri_to_path(container.keys.root) / "specs" / "killed"
    deadline = time.monotonic() + 120
    while len(list(fields_dir.rglob("*-rois.json"))) < 8:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(list(fields_dir.rglob("*-rois.json")))
    assert 8 <= partial < 40
    resumed = preprocess(container, "killed")
    assert resumed["fields"] == 40 and resumed["skipped"] >= partial and resumed["failed"] == 0
    assert crops_digests(container, "killed", screen) == crops_digests(container, "reference", screen)


def test_corrupt_and_mismatched_fields_fail_alone(container, screen):
    container.training.create_embedding(spec_doc("broken"))
    plate_id = screen[0]
    first, second = container.preprocessing.valid_image_ids(plate_id)[:2]
    truncated = uri_to_path(container.images.get_image_info(first)["channel_uris"]["Tubulin"])
    truncated.write_bytes(truncated.read_bytes()[:500])
    odd = uri_to_path(container.images.get_image_info(second)["channel_uris"]["Actin"])
    import tifffile

    tifffile.imwrite(odd, np.zeros((64, 64), np.uint16))
    result = preprocess(container, "broken")
    failures = {f["image_id"]: f["failure"] for f in result["failures"]}
    assert (result["fields"], result["failed"]) == (38, 2) and set(failures) == {first, second}
    assert "truncated or corrupt" in failures[first]
    assert "has shape (64, 64)" in failures[second]
    rows = {i: container.images.get_image_info(i, spec_row_id("broken")) for i in (first, second)}
    assert all(r["status"] == "failed" for r in rows.values()) and "truncated" in rows[first]["error"]
    flat = [a for a in container.artifacts.get_artifacts(plate_id, spec_row_id("broken"))]
    assert len(flat) == 3  # the plate's flat-fields were made from its readable fields
    log = container.artifacts.list_messages(container.images.get_plate_message_id(plate_id))
    assert sum("failed" in m["message"] or "skipped" in m["message"] for m in log) >= 2
