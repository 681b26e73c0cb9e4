"""Job steps (units of work) and workflows (sequences of steps over a pool)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..contract.enums import ImageStatus
from ..errors import InvalidInput
from ..specs import EmbeddingSpec

if TYPE_CHECKING:
    from ..runtime import Container


class Pool(Protocol):
    def map(self, step: str, params: list[dict[str, Any]], *, desc: str) -> list[dict[str, Any]]: ...


def inspect_image(c: Container, image_id: str, force: bool = False) -> dict[str, Any]:
    """Read a field's channels; record its dims/dtype or the exact problem on its row."""
    return c.images.inspect_image(image_id, force=force)


def validate_plate(c: Container, plate_id: str) -> dict[str, Any]:
    return c.images.validate_plate(plate_id)


def thumbnails(c: Container, image_id: str, widths: list[int] | None = None) -> dict[str, Any]:
    """Colour max-projection thumbnails of one field, recorded as artifacts."""
    return c.images.make_thumbnails(image_id, widths)


def flatfield(c: Container, spec: str, plate_id: str, channel: str, force: bool = False) -> dict[str, Any]:
    """One plate x channel flat-field under an embedding spec."""
    return c.images.compute_flatfield(spec, plate_id, channel, force)


def preprocess_image(c: Container, spec: str, image_id: str, force: bool = False) -> dict[str, Any]:
    """One field's single-cell crops under an embedding spec."""
    return c.images.preprocess_image(spec, image_id, force)


def train_model(c: Container, train_id: str, threads: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Train one run (resuming from its checkpoint), export and verify its ONNX model."""
    return c.training.run_training(train_id, threads=threads, progress=progress)


def embed_plate(c: Container, train_id: str, plate_id: str, force: bool = False, threads: int = 1,
                image_ids: list[str] | None = None) -> dict[str, Any]:
    """One plate's cell and field embeddings under a train run's ONNX model (``image_ids``: fields to
    embed again even if stored)."""
    return c.embedding.compute_plate_embedding(train_id, plate_id, force, threads, image_ids)


def build_index(c: Container, train_id: str, level: str, kind: str = "auto", metric: str = "cosine") -> dict[str, Any]:
    """One level's search index of a run, built and stored (the search service swaps it in when it reloads
    the run's indexes): the index's sidecar (``{"kind", "metric", "dims", "count", "version", ...}``). On
    AWS a Batch job on the CPU queue (the embed workflow's), not a request to the search API: a build at
    BBBC021 scale can take longer than API Gateway's 30 s (``benchmarks/bench_index_build.py``)."""
    return c.search.build_index(train_id, level, kind, metric)


STEPS: dict[str, Callable[..., dict[str, Any]]] = {
    "inspect-image": inspect_image,
    "validate-plate": validate_plate,
    "thumbnails": thumbnails,
    "flatfield": flatfield,
    "preprocess-image": preprocess_image,
    "train-model": train_model,
    "embed-plate": embed_plate,
    "build-index": build_index,
}


def process_plate(c: Container, pool: Pool, plate_id: str) -> dict[str, Any]:
    """Inspect every image of a plate, validate the plate, make thumbnails of its valid images."""
    image_ids = c.images.get_image_ids_by_plate_id(plate_id)
    inspected = pool.map("inspect-image", [{"image_id": i} for i in image_ids], desc=f"inspect {plate_id}")
    validation = c.images.validate_plate(plate_id)
    valid = [r["image_id"] for r in inspected if r.get("status") == ImageStatus.VALID]
    made = pool.map("thumbnails", [{"image_id": i} for i in valid], desc=f"thumbnails {plate_id}")
    return {
        "plate_id": plate_id,
        "images": len(image_ids),
        "valid_images": len(valid),
        "invalid_images": sum(r.get("status") == ImageStatus.INVALID for r in inspected),
        "invalid": [{"image_id": r["image_id"], "error": r.get("error")} for r in inspected
                    if r.get("status") == ImageStatus.INVALID][:20],
        "failed": [{k: v for k, v in r.items() if k != "traceback"} for r in inspected + made if "failure" in r],
        "thumbnails": sum(r.get("written", 0) for r in made),
        "validation": validation,
    }


def preprocess(c: Container, pool: Pool, spec: str, plate_ids: list[str] | None = None,
               force: bool = False) -> dict[str, Any]:
    """Flat-fields of every plate x channel, then every valid field's crops, for a spec's compatible
    plates (or ``plate_ids``). Returns ``{"plates", "fields", "skipped", "failed", "cells", "seconds",
    "failures", "flatfields", "failed_flatfields", "failed_fields", "flatfield_exclusions"}``: ``fields``
    counts the fields with crops after the run (``skipped`` of them were done before), ``failed`` the
    units (flat-fields and fields) that could not be processed (reasons in ``failures``; a plate whose
    flat-field failed is not preprocessed), ``flatfield_exclusions`` the bad fields left out of the
    flat-fields that were computed."""
    started = time.perf_counter()
    spec_obj = EmbeddingSpec.from_dict(c.training.get_embedding_info(spec))
    plates = plate_ids if plate_ids is not None else [p["plate_id"] for p in c.training.get_compatible_plates(spec)]
    flat = pool.map("flatfield", [{"spec": spec, "plate_id": p, "channel": ch, "force": force}
                                  for p in plates for ch in spec_obj.input.channels], desc="flat-fields")
    broken = {r["plate_id"] for r in flat if "failure" in r}
    image_ids = [i for p in plates if p not in broken for i in c.preprocessing.valid_image_ids(p)]
    done = pool.map("preprocess-image", [{"spec": spec, "image_id": i, "force": force} for i in image_ids],
                    desc="fields")
    failures = [r for r in flat + done if "failure" in r]
    ok = [r for r in done if "failure" not in r]
    return {"spec": spec, "plates": len(plates), "fields": len(ok), "skipped": sum(r["skipped"] for r in ok),
            "failed": len(failures), "cells": sum(r["cells"] for r in ok),
            "flatfields": len(flat), "failed_flatfields": sum("failure" in r for r in flat),
            "failed_fields": len(done) - len(ok),
            "flatfield_exclusions": sum(len(r.get("unreadable", ())) for r in flat if "failure" not in r),
            "seconds": round(time.perf_counter() - started, 2),
            "failures": [{k: v for k, v in r.items() if k != "traceback"} for r in failures[:50]]}


def train(c: Container, pool: Pool, train_ids: list[str], progress: bool = False) -> dict[str, Any]:
    """Preprocess the runs' spec (the fields not yet done; as the ``train`` state machine does), then train
    the runs (in parallel on a pool of several workers, the cores shared among them); a run that fails is
    reported and the others go on. Returns ``{"preprocessed": {...}, "models": [...], "failed", "failures",
    "seconds"}`` (``preprocessed``: :func:`preprocess`'s summary)."""
    from .runner import default_workers

    started = time.perf_counter()
    specs = {c.training.get_training(i)["spec_name"] for i in train_ids}
    if len(specs) != 1:
        raise InvalidInput(f"the runs of one train workflow share a spec, got {sorted(specs) or 'none'}")
    preprocessed = preprocess(c, pool, specs.pop())
    workers = max(1, min(getattr(pool, "workers", 1), len(train_ids)))
    threads = max(1, default_workers() // workers)
    done = pool.map("train-model", [{"train_id": i, "threads": threads, "progress": progress and workers == 1}
                                    for i in train_ids], desc="train runs")
    failures = [{k: v for k, v in r.items() if k != "traceback"} for r in done if "failure" in r]
    return {"preprocessed": preprocessed, "models": [r for r in done if "failure" not in r], "failed": len(failures),
            "failures": failures, "seconds": round(time.perf_counter() - started, 2)}


def embed_units(train_id: str, plate_ids: list[str], force: bool = False, threads: int = 1,
                image_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The ``embed-plate`` parameter sets of an embedding job: one per plate (a local pool's units, or the
    children of an AWS Batch array job on the CPU queue, each with ``threads`` ONNX Runtime threads)."""
    return [{"train_id": train_id, "plate_id": p, "force": force, "threads": threads}
            | ({"image_ids": image_ids} if image_ids else {}) for p in plate_ids]


def embed(c: Container, pool: Pool, train_id: str, plate_ids: list[str] | None = None,
          force: bool = False, image_ids: list[str] | None = None) -> dict[str, Any]:
    """Embed the run's compatible plates (or ``plate_ids``), one job per plate. Returns ``{"train_id",
    "plates", "fields", "empty", "failed", "failed_plates", "failed_fields", "cells", "skipped", "seconds",
    "failures"}``: ``failed`` = ``failed_plates`` (plates that could not be embedded) + ``failed_fields``
    (fields of the other plates flagged ``failed``); ``failures`` lists the first reasons."""
    from .runner import default_workers

    started = time.perf_counter()
    plates = plate_ids if plate_ids is not None else c.embedding.plates(train_id)
    threads = max(1, default_workers() // max(1, min(getattr(pool, "workers", 1), len(plates))))
    done = pool.map("embed-plate", embed_units(train_id, plates, force, threads, image_ids), desc="plates")
    ok = [r for r in done if "failure" not in r]
    failures = [{k: v for k, v in r.items() if k != "traceback"} for r in done if "failure" in r]
    failures += [f | {"plate_id": r["plate_id"]} for r in ok for f in r.get("failures", [])]
    failed_fields = sum(r.get("failed", 0) for r in ok)
    return {"train_id": train_id, "plates": len(plates), "fields": sum(r["fields"] for r in ok),
            "empty": sum(r.get("empty", 0) for r in ok), "failed": len(done) - len(ok) + failed_fields,
            "failed_plates": len(done) - len(ok), "failed_fields": failed_fields,
            "cells": sum(r["cells"] for r in ok), "skipped": sum(r["skipped"] for r in ok),
            "seconds": round(time.perf_counter() - started, 2), "failures": failures[:50]}


WORKFLOWS: dict[str, Callable[..., dict[str, Any]]] = {
    "process-plate": process_plate,
    "preprocess": preprocess,
    "train": train,
    "embed": embed,
}
