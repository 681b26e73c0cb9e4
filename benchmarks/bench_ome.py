"""One plate as OME-Zarr (NGFF 0.5, level 0 of a 2-level pyramid, read by chunk) vs the same plate as one
TIFF per channel: register, inspect + thumbnail (process-plate) and preprocess (flat-fields, segmentation,
crops), on a real dynalite, same fields, same run. Ratio = OME-Zarr / TIFFs (1 = no cost for the format)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.omezarr import read_ome_zarr, write_ome_zarr
from bioims.datasets.synth import IMAGE_CSV, synthesize
from bioims.local_stack import LocalStack
from bioims.runtime import local
from bioims.settings import Settings
from bioims.store.objects import ObjectStore

SIZE = {"height": 1024, "width": 1280, "nucleus_radius": 12.0, "cells_per_field": 120}  # BBBC021's fields
SPEC = {"input": {"width": 1280, "height": 1024, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
        "segmentation_channel": "DAPI", "roi_size": 128, "min_nucleus_voxels": 200, "embedding_length": 16}


def steps(c: Any, record: Any, spec: str) -> dict[str, float]:
    """Seconds of each step for one plate record."""
    times = {}
    t0 = time.perf_counter()
    (plate_id,) = c.images.ingest([record]).plate_ids
    times["register"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    c.runner.run(c, "process-plate", {"plate_id": plate_id})
    times["inspect + thumbnails"] = time.perf_counter() - t0
    c.training.create_embedding({"name": spec, **SPEC})
    t0 = time.perf_counter()
    done = c.runner.run(c, "preprocess", {"spec": spec, "plate_ids": [plate_id]})["output"]
    times["preprocess"] = time.perf_counter() - t0
    assert done["failed"] == 0 and done["fields"] == len(record.fields), done
    return times


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "screen"
        synthesize(out, "tiny", 0, batches=1, replicates=1, moa_span=1, **SIZE)
        tiffs = read_loaddata(out / IMAGE_CSV)[0]
        t0 = time.perf_counter()
        zarr_path = write_ome_zarr(tiffs, ObjectStore(), Path(tmp) / "zarr")
        converted = time.perf_counter() - t0
        settings = Settings(home=Path(tmp) / "home", table_prefix="bench-ome-", ingest_roots=(out, zarr_path))
        try:
            c = local(settings)
            ome = read_ome_zarr(zarr_path, c.objects, experiment="ome-zarr")
            baseline = steps(c, tiffs, "tiff")
            ours = steps(c, ome, "ome")
        finally:
            LocalStack(settings).down()
    n = len(tiffs.fields)
    rows = [{"benchmark": "ome-zarr", "figure": f"{step}, {n} fields of 1024x1280x3 (OME-Zarr vs TIFFs)",
             "value": ours[step], "unit": "s", "baseline": baseline[step], "ratio": ours[step] / baseline[step]}
            for step in ours]
    total, total_tiff = sum(ours.values()), sum(baseline.values())
    rows.append({"benchmark": "ome-zarr", "figure": f"ingest + inspect + preprocess, {n} fields (OME-Zarr vs TIFFs)",
                 "value": total, "unit": "s", "baseline": total_tiff, "ratio": total / total_tiff})
    rows.append({"benchmark": "ome-zarr", "figure": f"converting the {n} fields to OME-Zarr (ngff-zarr)",
                 "value": converted, "unit": "s", "baseline": None, "ratio": None})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
