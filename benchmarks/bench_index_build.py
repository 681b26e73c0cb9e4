"""The search service's index builds at BBBC021 scale, against API Gateway's 30 s integration limit.

The embed workflow asks the search service to build each level's index (``POST /indexes``, through API
Gateway, whose integration timeout is 30 s). This measures :meth:`SearchService.build_index` itself, the
code the service runs for that request, on BBBC021's real layout: the 13,200 fields of
``../shared/data/bbbc021/BBBC021_v1_image.csv.gz`` (55 plates, their wells, compounds, concentrations and
MOAs), each with 76 cells (1,003,200 cell vectors), 128-d embeddings (the demo's), clustered by MOA.

Written first, as the embed jobs write them: one field-embedding Parquet table per plate and one ``.npy``
of cell embeddings per field, under a temporary BIOIMS_HOME (local files). The build then runs the real
service over the real object store, artifact registry and tags service (dynalite); the run's status and
its list of embedded plates, which come from the training and embedding services, are given from what was
written (on AWS they are two Lambda calls). Each level is built twice and the faster time reported;
``kind=auto`` (flat under 50k vectors, IVF above).

Figures: seconds per level (field, well, treatment: what the workflow builds; cell), baseline the FAISS
build alone on the same vectors (``VectorIndex.build``), so ratio = the service's overhead (reading the
tables and cell files, tags, payloads, writing the parts). On AWS every object read is an S3 GET instead of
a file read: the cell level reads 13,200 objects, at tens of milliseconds each minutes more.
About 4 minutes on 2 cores, most of it the cell level.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bioims.datasets.loaddata import read_loaddata
from bioims.index import VectorIndex
from bioims.local_stack import LocalStack
from bioims.profiles.io import write_profiles
from bioims.runtime import local
from bioims.services.search.service import SearchService
from bioims.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbbc021"
DIMS, CELLS_PER_FIELD, TRAIN_ID = 128, 76, "bench-run"
LIMIT_SECONDS = 30.0
"""API Gateway's integration timeout (REST and HTTP APIs)."""


class _Run:
    """The training service's answer for the run: complete (what build_index checks)."""

    def get_training(self, train_id: str) -> dict[str, Any]:
        return {"train_id": train_id, "status": "complete"}


class _Embedded:
    """The embedding service's answer for the run: the plates whose tables were written."""

    def __init__(self, plates: list[dict[str, str]]) -> None:
        self.plates = plates

    def list_plate_embeddings(self, train_id: str) -> list[dict[str, str]]:
        return self.plates


def write_embeddings(c: Any, rng: np.random.Generator) -> tuple[list[dict[str, str]], int]:
    """BBBC021's fields with clustered embeddings written as the embed jobs write them: (plates, cells)."""
    plates = read_loaddata(DATA / "BBBC021_v1_image.csv.gz", moa_csv=DATA / "BBBC021_v1_moa.csv")
    moas = sorted({str(f.metadata.get("moa")) for p in plates for f in p.fields})
    centres = rng.normal(size=(len(moas), DIMS)).astype(np.float32)
    names = [f"emb_{i:03d}" for i in range(DIMS)]
    written, cells = [], 0
    for plate in plates:
        rows = []
        for n, f in enumerate(plate.fields):
            image_id = f"{plate.source_id}-{n:04d}"
            centre = centres[moas.index(str(f.metadata.get("moa")))]
            vectors = (centre + rng.normal(scale=2.0, size=(CELLS_PER_FIELD, DIMS))).astype(np.float32)
            buffer = io.BytesIO()
            np.save(buffer, vectors)
            c.objects.put_bytes(c.keys.cell_embeddings(TRAIN_ID, plate.source_id, image_id), buffer.getvalue())
            cells += len(vectors)
            rows.append({"Metadata_Plate": plate.source_id, "Metadata_Well": f.well, "Metadata_Site": f.site,
                         "Metadata_Batch": plate.batch or f.metadata.get("batch"),
                         "Metadata_Compound": f.metadata.get("compound"),
                         "Metadata_Concentration": f.metadata.get("concentration"),
                         "Metadata_MoA": f.metadata.get("moa"),
                         "Metadata_ImageId": image_id, "Metadata_Cells": len(vectors),
                         **dict(zip(names, vectors.mean(axis=0).tolist()))})
        table = pd.DataFrame(rows)
        table[names] = table[names].astype(np.float32)
        uri = c.keys.plate_embeddings(TRAIN_ID, plate.source_id)
        c.objects.put_bytes(uri, write_profiles(table))
        written.append({"plate_id": plate.source_id, "uri": uri})
    return written, cells


def best_of(fn: Callable[[], Any], runs: int = 2) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), out


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), table_prefix="bench-")
        try:
            c = local(settings)
            print("writing BBBC021-scale embeddings ...", file=sys.stderr, flush=True)
            plates, cells = write_embeddings(c, np.random.default_rng(0))
            search = SearchService(c.tables["search"], c.objects, c.keys, c.artifacts, _Embedded(plates), _Run(),
                                   c.tags, c.profiles)
            for level in ("field", "well", "treatment", "cell"):
                print(f"building the {level} index ...", file=sys.stderr, flush=True)
                seconds, info = best_of(lambda level=level: search.build_index(TRAIN_ID, level))
                vectors, ids, tags, _ = search._table(TRAIN_ID, "run", level)
                faiss_seconds, _ = best_of(lambda v=vectors, i=ids, t=tags: VectorIndex.build(v, i, t, kind="auto"))
                rows.append({"benchmark": "index", "figure": f"{level} build, {info['count']} vectors "
                             f"({info['kind']}; {LIMIT_SECONDS:.0f} s limit)", "value": seconds, "unit": "s",
                             "baseline": faiss_seconds, "ratio": seconds / faiss_seconds})
            rows.append({"benchmark": "index", "figure": "cells written", "value": cells / 1e6, "unit": "M",
                         "baseline": 1.0, "ratio": cells / 1e6})
        finally:
            LocalStack(settings).down()
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
