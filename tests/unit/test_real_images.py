"""Real microscope fields through the pipeline (``../shared/data/real/``, read in place; see its README for
origin and licence):

- the five NF1 Cell Painting fields (904 x 1224 uint16, LZW-compressed TIFFs) are found by the folder
  importer, inspected, thumbnailed and preprocessed, and the nuclei bioims crops are CellProfiler's (its
  nuclei masks of the same fields, ``NF1_plate2_export_masks.cppipe``);
- CellProfiler's ExampleHuman and ExampleFly fields (uint8, 512 x 512 and 1000 x 1006) go through the
  same steps under specs sized for their nuclei;
- the flat-field of the 72 Transfluor fields of one plate row (ExampleIlluminationCorrection) makes
  every one of them flatter."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from bioims.datasets.folder import scan_folder
from bioims.errors import InvalidInput
from bioims.settings import Settings
from tests.conftest import REPO

REAL = REPO.parent / "shared" / "data" / "real"
NF1 = REAL / "nf1-cellpainting"
EXAMPLES = REAL / "cellprofiler-examples"
pytestmark = pytest.mark.skipif(not NF1.exists(), reason="the real images are not beside the repository")

PATTERN = r"(?P<plate>[^/]+)/(?P<well>[A-P]\d+)_01_(?P<channel>\d)_(?P<site>\d)_\w+_001\.tif"
"""The NF1 file names (``Plate_2_images/B7_01_1_3_DAPI_001.tif``: well, channel 1-3, site)."""
SPEC = {"name": "nf1", "input": {"width": 1224, "height": 904, "depth": 1, "channels": ["1", "2", "3"]},
        "segmentation_channel": "1", "roi_size": 64, "min_nucleus_voxels": 600, "embedding_length": 16}
"""Sized for these fields: CellProfiler's nuclei have a median area of 2,300-3,900 px (radius ~30 px), so
objects under 600 px are not nuclei; 64 px crops."""
MARGIN = 60
"""Only nuclei whose centre is at least this far from the border are compared (interior nuclei): the
CellProfiler pipeline discards every object touching the border, bioims keeps them."""


def match(centres: np.ndarray, mask: np.ndarray, margin: int = MARGIN) -> tuple[float, float, int]:
    """(recall, precision, CellProfiler nuclei compared) of nucleus centres (N, 2 (y, x)) against a binary
    nuclei mask's connected components, interior nuclei only (centres at least ``margin`` pixels from the
    border). A CellProfiler nucleus is found if a centre lies in it; a centre is right if it lies in a
    nucleus no earlier centre claimed."""
    labels, n = ndi.label(mask > 0)
    h, w = labels.shape

    def interior(c: Any) -> bool:
        return min(c[0], h - 1 - c[0], c[1], w - 1 - c[1]) >= margin

    theirs = {i + 1 for i, c in enumerate(ndi.center_of_mass(mask > 0, labels, range(1, n + 1))) if interior(c)}
    under = [int(labels[int(round(y)), int(round(x))]) for y, x in centres]
    ours = [label for label, c in zip(under, centres) if interior(c)]
    right = len({label for label in ours if label})  # a second centre in the same nucleus is wrong
    return len(theirs & set(under)) / len(theirs), right / max(1, len(ours)), len(theirs)


@pytest.fixture
def real(database: Any, tmp_path: Path) -> Any:
    """Services on moto tables whose ingest root is the real images' folder (read in place)."""
    from bioims.jobs.runner import LocalRunner
    from bioims.jobs.tables import RunnerTables
    from bioims.runtime import build
    from bioims.store.objects import ObjectStore

    settings = Settings(home=tmp_path / "home", table_prefix="real-", ingest_roots=(REAL,))
    c = build(settings, database, ObjectStore(), LocalRunner(settings, RunnerTables(database)))
    database.create()
    return c


def test_nf1_fields_through_the_pipeline_find_cellprofilers_nuclei(real: Any) -> None:
    c = real
    plates = scan_folder(NF1, PATTERN)
    assert [(p.source_id, p.channels, len(p.fields)) for p in plates] == [("Plate_2_images", ("1", "2", "3"), 5)]
    plate_id = c.images.ingest(plates).plate_ids[0]
    processed = c.runner.run(c, "process-plate", {"plate_id": plate_id})["output"]
    assert processed["valid_images"] == 5 and processed["thumbnails"] == 10 and processed["failed"] == []
    image = c.images.get_images_by_plate_id(plate_id)[0]
    assert (image["width"], image["height"], image["dtype"]) == (1224, 904, "uint16")
    c.training.create_embedding(SPEC)
    done = c.runner.run(c, "preprocess", {"spec": SPEC["name"]})["output"]
    assert done["fields"] == 5 and done["failed"] == 0
    figures = {}
    for field in c.images.list_spec_fields(SPEC["name"], plate_id):
        rois = c.objects.get_json(c.keys.rois(SPEC["name"], plate_id, field["image_id"]))
        half = np.array([rois["roi_size"]["y"] // 2, rois["roi_size"]["x"] // 2])
        centres = np.array([[r["y"], r["x"]] for r in rois["rois"]]) + half  # crops are centred on the nuclei
        dapi = next(NF1.glob(f"Plate_2_masks/{field['well']}_01_1_*_MaskNuclei.tiff"))
        figures[field["well"]] = match(centres, tifffile.imread(dapi))
    print({well: tuple(round(v, 3) for v in f) for well, f in figures.items()})
    assert sorted(figures) == ["B7", "D6", "D7", "F7", "H12"]
    for well, (recall, precision, compared) in figures.items():
        assert compared >= 20 and recall >= 0.9 and precision >= 0.9, (well, recall, precision)


@pytest.mark.parametrize("folder, pattern, spec, cells", [
    ("ExampleHuman", r"(?P<plate>images)/AS_09125_050116030001_(?P<well>D03)f(?P<site>\d\d)d(?P<channel>\d)\.tif$",
     {"name": "human", "input": {"width": 512, "height": 512, "depth": 1, "channels": ["0", "1", "2"]},
      "segmentation_channel": "0", "roi_size": 24, "min_nucleus_voxels": 30, "embedding_length": 16},
     (200, 350)),  # HT29 nuclei of about 115 px: 24 px crops
    ("ExampleFly", r"(?P<plate>images)/01_(?P<well>POS\d+)_(?P<channel>[DFR])\.TIF$",
     {"name": "fly", "input": {"width": 1000, "height": 1006, "depth": 1, "channels": ["D", "F", "R"]},
      "segmentation_channel": "D", "roi_size": 32, "min_nucleus_voxels": 80, "embedding_length": 16},
     (200, 700)),  # Kc167 nuclei of about 350 px, 3 fields: 32 px crops
], ids=["ExampleHuman", "ExampleFly"])
def test_cellprofiler_examples_are_ingested_and_preprocessed(real: Any, folder: str, pattern: str, spec: dict,
                                                            cells: tuple[int, int]) -> None:
    """uint8 fields of other sizes and channel names: valid, thumbnailed, and cropped around as many nuclei
    as the fields hold (each field within ``cells``), each crop (channels, roi, roi)."""
    c = real
    plate_id = c.images.ingest(scan_folder(EXAMPLES / folder, pattern)).plate_ids[0]
    processed = c.runner.run(c, "process-plate", {"plate_id": plate_id})["output"]
    assert processed["invalid_images"] == 0 and processed["failed"] == [] and processed["thumbnails"] > 0
    assert {i["dtype"] for i in c.images.get_images_by_plate_id(plate_id)} == {"uint8"}
    c.training.create_embedding(spec)
    done = c.runner.run(c, "preprocess", {"spec": spec["name"]})["output"]
    assert done["failed"] == 0 and done["fields"] == processed["valid_images"]
    for field in c.images.list_spec_fields(spec["name"], plate_id):
        assert cells[0] <= field["cells"] <= cells[1], field
        crops = np.load(io.BytesIO(c.objects.get_bytes(field["crops_uri"])), allow_pickle=False)
        assert crops.shape[1:] == (3, spec["roi_size"], spec["roi_size"]) and crops.shape[0] == field["cells"]


def test_the_transfluor_flatfield_flattens_every_field_of_its_plate_row(real: Any) -> None:
    """The flat-field bioims computes for the 72 GFP fields of ExampleIlluminationCorrection's plate row:
    every field divided by it has a lower coefficient of variation of its heavily smoothed background
    (Gaussian, sigma 50 px: the illumination, not the cells) than the raw field."""
    from bioims.imaging.dtypes import to_float01
    from bioims.imaging.io import read_field

    c = real
    pattern = r"(?P<plate>images)/AS_09047_050428030001_(?P<well>O\d\d)f(?P<site>\d\d)d(?P<channel>2)\.TIF$"
    plate_id = c.images.ingest(scan_folder(EXAMPLES / "ExampleIlluminationCorrection", pattern)).plate_ids[0]
    c.artifacts.set_parameter("thumbnail-widths", [32])  # not what is tested: the smallest thumbnails
    assert c.runner.run(c, "process-plate", {"plate_id": plate_id})["output"]["valid_images"] == 72
    c.training.create_embedding({"name": "transfluor", "input": {"width": 512, "height": 512, "depth": 1,
                                                                 "channels": ["2"]},
                                 "segmentation_channel": "2", "roi_size": 32, "min_nucleus_voxels": 50,
                                 "embedding_length": 16})
    c.images.compute_flatfield("transfluor", plate_id, "2")
    flat = np.load(io.BytesIO(c.objects.get_bytes(c.keys.flatfield("transfluor", plate_id, "2"))), allow_pickle=False)

    def variation(image: np.ndarray) -> float:
        background = ndi.gaussian_filter(image, 50, mode="nearest")
        return float(background.std() / background.mean())

    raw, corrected = [], []
    for image in c.images.get_images_by_plate_id(plate_id):
        field = to_float01(read_field([image["channel_uris"]["2"]], c.objects)[0])
        raw.append(variation(field))
        corrected.append(variation(field / flat))
    print(f"coefficient of variation of the smoothed background: raw {np.mean(raw):.3f}, "
          f"flat-field corrected {np.mean(corrected):.3f} (72 fields)")
    assert all(c < r for c, r in zip(corrected, raw)) and np.mean(corrected) < 0.8 * np.mean(raw)


def test_a_suggested_spec_for_the_nf1_plate_finds_cellprofilers_nuclei(real: Any) -> None:
    """suggestSpec on the NF1 plate (channels named by their stain): DAPI as the nuclei channel, sizes
    measured on its fields (CellProfiler's nuclei: median area 2,300-3,900 px, radius 27-35 px); the spec,
    registered as suggested, crops CellProfiler's interior nuclei."""
    c = real
    pattern = r"(?P<plate>[^/]+)/(?P<well>[A-P]\d+)_01_\d_(?P<site>\d)_(?P<channel>[A-Z]+)_001\.tif"
    plate_id = c.images.ingest(scan_folder(NF1, pattern)).plate_ids[0]
    with pytest.raises(InvalidInput, match="no inspected valid field yet"):
        c.images.suggest_spec(plate_id)
    c.artifacts.set_parameter("thumbnail-widths", [32])
    c.runner.run(c, "process-plate", {"plate_id": plate_id})
    suggested = c.images.suggest_spec(plate_id, fields=5)
    spec = suggested["spec"]
    print({k: suggested[k] for k in ("nucleus_radius", "nuclei", "fields")}, spec["roi_size"],
          spec["min_nucleus_voxels"])
    assert spec["input"] == {"width": 1224, "height": 904, "depth": 1, "channels": ["DAPI", "GFP", "RFP"]}
    assert spec["segmentation_channel"] == "DAPI" and spec["name"] == "Plate_2_images-spec"
    assert 25 <= suggested["nucleus_radius"] <= 36 and suggested["fields"] == 5 and suggested["nuclei"] >= 100
    assert spec["roi_size"] % 8 == 0 and 150 <= spec["roi_size"] <= 216
    c.training.create_embedding(spec)
    assert c.runner.run(c, "preprocess", {"spec": spec["name"]})["output"]["failed"] == 0
    for field in c.images.list_spec_fields(spec["name"], plate_id):
        rois = c.objects.get_json(c.keys.rois(spec["name"], plate_id, field["image_id"]))
        half = np.array([rois["roi_size"]["y"] // 2, rois["roi_size"]["x"] // 2])
        centres = np.array([[r["y"], r["x"]] for r in rois["rois"]]) + half
        mask = tifffile.imread(next(NF1.glob(f"Plate_2_masks/{field['well']}_01_1_*_MaskNuclei.tiff")))
        # crops nearer the border than half their size are shifted inwards: their centre is not the nucleus'
        recall, precision, _ = match(centres, mask, margin=max(MARGIN, spec["roi_size"] // 2))
        assert recall >= 0.9 and precision >= 0.9, (field["well"], recall, precision)
