"""Real microscope fields through the pipeline (``../shared/data/real/``, read in place; see its README for
origin and licence): the five NF1 Cell Painting fields (904 x 1224 uint16, LZW-compressed TIFFs) are found
by the folder importer, inspected, thumbnailed and preprocessed, and the nuclei bioims crops are
CellProfiler's (its nuclei masks of the same fields, ``NF1_plate2_export_masks.cppipe``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from bioims.datasets.folder import scan_folder
from bioims.settings import Settings
from tests.conftest import REPO

NF1 = REPO.parent / "shared" / "data" / "real" / "nf1-cellpainting"
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


def match(centres: np.ndarray, mask: np.ndarray) -> tuple[float, float, int]:
    """(recall, precision, CellProfiler nuclei compared) of nucleus centres (N, 2 (y, x)) against a binary
    nuclei mask's connected components, interior nuclei only. A CellProfiler nucleus is found if a centre
    lies in it; a centre is right if it lies in a nucleus no earlier centre claimed."""
    labels, n = ndi.label(mask > 0)
    h, w = labels.shape

    def interior(c: Any) -> bool:
        return min(c[0], h - 1 - c[0], c[1], w - 1 - c[1]) >= MARGIN

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

    settings = Settings(home=tmp_path / "home", table_prefix="real-", ingest_roots=(NF1,))
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
