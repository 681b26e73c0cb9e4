"""Ingest throughput on a real dynalite: bioims's one-pass batched registration vs the seed's way
(one PutItem per image, per well and per image-tag row), same rows, same server, same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bioims.datasets.records import FieldRecord, PlateRecord
from bioims.ids import stable_id
from bioims.local_stack import LocalStack
from bioims.runtime import local
from bioims.services.image_management import field_tags, plate_tags
from bioims.settings import Settings
from bioims.store.tables import ORIGIN

PLATES, WELLS, SITES = 4, 60, 4  # 960 fields, like 4 BBBC021 plates


def plates(tag: str) -> list[PlateRecord]:
    out = []
    for p in range(PLATES):
        fields = tuple(
            FieldRecord(f"{chr(66 + w // 10)}{w % 10 + 2:02d}", f"s{s + 1}",
                        {c: f"file:///nonexistent/{tag}/{p}/{w}_{s}_{c}.tif" for c in ("DAPI", "Tubulin", "Actin")},
                        {"compound": f"cpd{w % 12}", "concentration": 0.1 * (w % 4 + 1), "moa": f"moa{w % 6}",
                         "batch": "Week1", "replicate": 1})
            for w in range(WELLS) for s in range(SITES))
        out.append(PlateRecord(f"Week1_{tag}{p}", ("DAPI", "Tubulin", "Actin"), fields, batch="Week1"))
    return out


def naive_ingest(c, records: list[PlateRecord]) -> None:
    """The seed's pattern: every row its own request."""
    for record in records:
        plate_id = stable_id("plate", record.experiment, record.source_id)
        for f in record.fields:
            image_id = stable_id("image", plate_id, f.well, f.site)
            c.tables.images(image_id, ORIGIN, plate_id=plate_id, well_id=f.well, channels=list(record.channels),
                            channel_uris=dict(f.channel_uris), metadata=dict(f.metadata), status="registered").save()
            for tag in plate_tags(record) + field_tags(f.metadata):
                tag_id = c.tags.ensure_tags([tag])[tag]
                c.tables.image_tags(image_id, tag_id, value=tag, plate_id=plate_id).save()
        for well in dict.fromkeys(f.well for f in record.fields):
            c.tables.wells(plate_id, stable_id("well", plate_id, well), source_id=well).save()
        c.tables.plates(plate_id, source_id=record.source_id, status="registered",
                        image_count=len(record.fields)).save()


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), table_prefix="bench-")
        try:
            c = local(settings)
            n = PLATES * WELLS * SITES
            t0 = time.perf_counter()
            c.images.ingest(plates("a"))
            ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            naive_ingest(c, plates("b"))
            naive = time.perf_counter() - t0
        finally:
            LocalStack(settings).down()
    return [{"benchmark": "ingest", "figure": f"fields/s ({n} fields, dynalite)", "value": n / ours,
             "unit": "fields/s", "baseline": n / naive, "ratio": naive / ours}]
