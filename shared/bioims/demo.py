"""The walkthrough in one command (``bioims demo``), as far as it exists today.

Steps: register a dataset (the real BBBC021 layout: 55 plates, 13,200 fields, compounds, MOAs) and
show the registry (plates per batch, image status, tags per type, MOA labels with their indices).
Every step is idempotent, so an interrupted demo is finished by running it again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InvalidInput, NotFound
from .runtime import Container

BBBC021_DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "data" / "bbbc021"
"""The BBBC021 metadata handed out beside the repository (``../shared/data/bbbc021``)."""


def _timed(steps: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = fn()
    steps[name] = round(time.perf_counter() - started, 2)
    return result


def registry_summary(c: Container) -> dict[str, Any]:
    """What is registered: plates per batch, image counts per status, tags per type, MOA labels."""
    plates = c.images.list_plates()
    status: Counter[str] = Counter()
    for p in plates:
        status.update(c.images.get_plate_image_status(p["plate_id"])["images"])
    tag_types = Counter(t["type"] for t in c.tags.get_all_tags())
    try:
        moa_labels = {label["label"]: label["index"] for label in c.tags.list_labels("moa")}
    except NotFound:  # nothing with an MOA registered yet
        moa_labels = {}
    return {
        "plates": len(plates),
        "plates_per_batch": dict(sorted(Counter(p.get("batch") or "-" for p in plates).items())),
        "images": sum(int(p["image_count"]) for p in plates),
        "image_status": dict(sorted(status.items())),
        "tags_per_type": dict(sorted(tag_types.items())),
        "moa_labels": moa_labels,
    }


def run_demo(c: Container, *, bbbc021: Path = BBBC021_DEFAULT, image_root: str | None = None) -> dict[str, Any]:
    """Run the walkthrough; returns ``{"steps": {step: seconds}, "seconds", "ingest", "registry"}``."""
    from .datasets.loaddata import read_loaddata

    image_csv, moa_csv = bbbc021 / "BBBC021_v1_image.csv.gz", bbbc021 / "BBBC021_v1_moa.csv"
    if not image_csv.is_file() or not moa_csv.is_file():
        raise InvalidInput(f"BBBC021 metadata not found in {bbbc021} (expected BBBC021_v1_image.csv.gz and "
                           "BBBC021_v1_moa.csv); pass --bbbc021 DIR")
    started = time.perf_counter()
    steps: dict[str, float] = {}
    root = image_root or str(bbbc021 / "images")
    records = _timed(steps, "parse", lambda: read_loaddata(image_csv, moa_csv=moa_csv, root=root,
                                                           experiment="BBBC021"))
    ingest = _timed(steps, "ingest", lambda: c.images.ingest(records).to_dict())
    registry = _timed(steps, "registry", lambda: registry_summary(c))
    return {"steps": steps, "seconds": round(time.perf_counter() - started, 2),
            "ingest": {k: v for k, v in ingest.items() if not isinstance(v, list)}
            | {"skipped_plates": len(ingest["skipped_plates"])},
            "registry": registry}
