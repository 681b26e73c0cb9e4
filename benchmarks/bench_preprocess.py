"""Preprocessing speed and memory on realistic 1024 x 1280 synthetic fields (BBBC021-like).

(a) One field, end to end: read the three channel TIFFs, normalise, segment, crop (ROI 128, nuclei
    >= 200 px), median of 10 runs; baseline: reading the three TIFFs plus one float32 conversion.
    Ratio = ours / baseline (how many bare reads the whole preprocessing costs).
(b) Flat-field of a 240-field plate (one channel): seconds beyond reading the 240 TIFFs, and peak
    traced memory (tracemalloc), for the streaming accumulator vs the seed's way (stack the plate,
    then mean). Ratio = seed / ours.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bioims.datasets.synth import IMAGE_CSV, synthesize
from bioims.imaging.dtypes import to_float01
from bioims.imaging.flatfield import FlatFieldAccumulator, flatfield
from bioims.imaging.io import read_field, read_image
from bioims.imaging.preprocess import preprocess_field
from bioims.store.objects import ObjectStore, path_to_uri

CHANNELS = ("DAPI", "Tubulin", "Actin")
RUNS = 10
PLATE_FIELDS = 240
ROI_SIZE, MIN_NUCLEUS_VOXELS = 128, 200


def render_fields(out: Path) -> list[list[str]]:
    """Two 1024 x 1280 fields (one treated well, one DMSO well, ~120 cells each): channel URIs."""
    synthesize(out, "tiny", 0, moas=(("Microtubule stabilizers", (1,)),), batches=1, replicates=1, moa_span=1,
               dmso_wells=1, height=1024, width=1280, nucleus_radius=12.0, cells_per_field=120)
    images = pd.read_csv(out / IMAGE_CSV)
    return [[path_to_uri(out / row[f"Image_PathName_{c}"] / row[f"Image_FileName_{c}"]) for c in CHANNELS]
            for _, row in images.iterrows()]


def median_seconds(fn: Callable[[int], Any], runs: int = RUNS) -> float:
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def traced_peak_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1e6


def run() -> list[dict]:
    objects = ObjectStore()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        fields = render_fields(Path(tmp) / "synth")
        flats = []
        for c in range(len(CHANNELS)):
            accumulator = FlatFieldAccumulator()
            for uris in fields:
                accumulator.add(read_image(uris[c], objects))
            flats.append(flatfield(accumulator.mean()))
        flatfields = np.stack(flats)

        # (a) one field end to end
        def preprocess(i: int, declump: bool = False) -> None:
            field = read_field(fields[i % len(fields)], objects)
            preprocess_field(field, flatfields, segmentation_channel=0, roi_size=ROI_SIZE,
                             min_nucleus_voxels=MIN_NUCLEUS_VOXELS, declump=declump)

        def read_and_convert(i: int) -> None:
            to_float01(read_field(fields[i % len(fields)], objects))

        read_and_convert(0)  # warm the page cache
        floor = median_seconds(read_and_convert)
        for declump, label in ((False, ""), (True, " + declump")):
            ours = median_seconds(partial(preprocess, declump=declump))
            rows.append({"benchmark": "preprocess",
                         "figure": f"1024x1280x3 field incl. reading{label} (vs read+float32)",
                         "value": ours * 1e3, "unit": "ms/field", "baseline": floor * 1e3, "ratio": ours / floor})

        # (b) flat-field of a 240-field plate, one channel
        plate = Path(tmp) / "plate"
        plate.mkdir()
        sources = [Path(uris[c].removeprefix("file://")) for uris in fields for c in range(len(CHANNELS))]
        uris = []
        for i in range(PLATE_FIELDS):
            target = plate / f"field{i:03d}_w1.tif"
            shutil.copyfile(sources[i % len(sources)], target)
            uris.append(path_to_uri(target))

        def read_all() -> None:
            for uri in uris:
                read_image(uri, objects)

        def streaming() -> np.ndarray:
            accumulator = FlatFieldAccumulator()
            for uri in uris:
                accumulator.add(read_image(uri, objects))
            return flatfield(accumulator.mean())

        def stacked() -> np.ndarray:  # the seed: the whole plate in memory, then the mean
            stack = np.stack([read_image(uri, objects) for uri in uris])
            return flatfield(to_float01(stack).mean(axis=0))

        read_all()  # warm the page cache
        reading = median_seconds(lambda _: read_all(), runs=3)
        ours = median_seconds(lambda _: streaming(), runs=3) - reading
        seed = median_seconds(lambda _: stacked(), runs=1) - reading
        ours_mb, seed_mb = traced_peak_mb(streaming), traced_peak_mb(stacked)
        plate_figure = f"plate flat-field, {PLATE_FIELDS} fields"
        rows.append({"benchmark": "preprocess", "figure": f"{plate_figure}, beyond reading (vs stack+mean)",
                     "value": ours, "unit": "s", "baseline": seed, "ratio": seed / ours})
        rows.append({"benchmark": "preprocess", "figure": f"{plate_figure}, peak memory (vs stack+mean)",
                     "value": ours_mb, "unit": "MB", "baseline": seed_mb, "ratio": seed_mb / ours_mb})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
