"""The walkthrough in one command (``bioims demo``).

Steps: generate the synthetic screen (:mod:`bioims.datasets.synth`), register it, process every plate
(inspect each image, validate the plate, make thumbnails), create the preset's embedding spec,
preprocess (flat-fields, single-cell crops), summarise the registry (plates per batch, image status,
tags per type, MOA labels with their indices), train the models (bioims' default network and loss with
fold hold-out and on every compound, the seed's network and pair loss with the same folds, the default
network untrained), embed every field with each, build the search index of the baseline model, compute
the handcrafted and naive profiles of the same fields, evaluate the five methods on MOA retrieval (NSC,
NSCB, mAP; each fold model answers only for the compounds it held out) with the HTML report of the
learned embedding, and run a few example searches. Every step is idempotent, so an interrupted demo is
finished by running it again, and a finished one reruns in seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .contract.enums import PlateStatus
from .datasets.synth import IMAGE_CSV, MOA_CSV, PRESETS, Preset, synthesize
from .datasets.synth.design import CHANNELS
from .errors import BioimsError, NotFound
from .imaging.suggest import sizes_for_radius
from .jobs.runner import LocalPool
from .profiles.pipeline import CONTROL
from .runtime import Container


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
        "validated_plates": sum(p["status"] == PlateStatus.VALIDATED for p in plates),
        "plates_per_batch": dict(sorted(Counter(p.get("batch") or "-" for p in plates).items())),
        "images": sum(int(p["image_count"]) for p in plates),
        "image_status": dict(sorted(status.items())),
        "tags_per_type": dict(sorted(tag_types.items())),
        "moa_labels": moa_labels,
    }


def run_demo(c: Container, *, preset: str = "demo", out: Path | None = None, seed: int = 0, workers: int = 1,
             progress: bool = False) -> dict[str, Any]:
    """Run the walkthrough; returns ``{"steps": {step: seconds}, "seconds", "dataset", "ingest",
    "processed", "preprocess", "registry", "models": {method: [train ids]}, "embedded", "index",
    "methods": {method: evaluate document}, "report", "searches", "spec"}``. The dataset goes to ``out``
    (default ``$BIOIMS_HOME/datasets/<preset>``), which becomes an ingest root (:mod:`bioims.store.roots`)."""
    from .datasets.loaddata import read_loaddata
    from .store.roots import remember_ingest_root

    out = out or c.settings.home / "datasets" / preset
    remember_ingest_root(c.settings.home, out)
    started = time.perf_counter()
    steps: dict[str, float] = {}
    dataset = _timed(steps, "synth", lambda: synthesize(out, preset, seed, workers=workers, progress=progress))
    records = read_loaddata(out / IMAGE_CSV, moa_csv=out / MOA_CSV, experiment=f"synth-{preset}-{seed}")
    ingest = _timed(steps, "ingest", lambda: c.images.ingest(records).to_dict())
    plate_ids = [c.images.plate_id_for(r) for r in records]

    def process() -> dict[str, int]:
        todo = [p for p in plate_ids if c.images.get_plate(p)["status"] != PlateStatus.VALIDATED]
        with LocalPool(c, workers=workers, progress=progress) as pool:
            for plate_id in todo:
                c.runner.run(c, "process-plate", {"plate_id": plate_id}, pool=pool)
        return {"plates": len(todo), "already_validated": len(plate_ids) - len(todo)}

    processed = _timed(steps, "process_plates", process)
    spec = _timed(steps, "spec", lambda: ensure_spec(c, PRESETS[preset]))

    def run_preprocess() -> dict[str, Any]:
        with LocalPool(c, workers=workers, progress=progress) as pool:
            output = c.runner.run(c, "preprocess", {"spec": spec, "plate_ids": plate_ids}, pool=pool)["output"]
        return {k: v for k, v in output.items() if k != "failures"}

    preprocessed = _timed(steps, "preprocess", run_preprocess)
    registry = _timed(steps, "registry", lambda: registry_summary(c))
    models = {method: [r["train_id"] for r in c.training.create_trainings(spec, holdout, **overrides)]
              for method, (holdout, overrides) in MODELS.items()}
    with LocalPool(c, workers=workers, progress=progress) as pool:
        _timed(steps, "train", lambda: train_runs(c, pool, [i for ids in models.values() for i in ids]))
        embedded = _timed(steps, "embed", lambda: [
            c.runner.run(c, "embed", {"train_id": i}, pool=pool)["output"] for ids in models.values() for i in ids])
    baseline = models["baseline"][0]
    index = _timed(steps, "index", lambda: ensure_index(c, baseline))
    methods: dict[str, dict[str, Any]] = {}
    for kind in PROFILE_METHODS:
        name = _timed(steps, f"profiles_{kind}", lambda kind=kind: ensure_profiles(c, spec, kind, plate_ids))
        methods[kind] = _timed(steps, f"evaluate_{kind}", lambda name=name: evaluate_profiles(c, name))
    report_path = c.settings.home / "reports" / f"{spec}-learned.html"
    for method in EVALUATED:
        methods[method] = _timed(steps, f"evaluate_{method}", lambda method=method: evaluate_runs(
            c, models[method], report_path if method == "learned" else None))
    searches = _timed(steps, "searches", lambda: example_searches(c, baseline))
    return {"steps": steps, "seconds": round(time.perf_counter() - started, 2),
            "dataset": {k: v for k, v in dataset.items() if k != "seconds"},
            "ingest": {k: v for k, v in ingest.items() if not isinstance(v, list)}
            | {"skipped_plates": len(ingest["skipped_plates"])},
            "processed": processed, "preprocess": preprocessed, "registry": registry, "models": models,
            "embedded": {"fields": sum(e["fields"] for e in embedded), "cells": sum(e["cells"] for e in embedded),
                         "runs": len(embedded)},
            "index": index, "methods": {m: methods[m] for m in METHOD_ORDER}, "report": str(report_path),
            "searches": searches, "spec": spec}


MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "learned": ("folds", {}),
    "baseline": ("none", {}),
    "seed_network": ("folds", {"network": "seed", "loss": "seed", "temperature": 0.2}),
    "untrained": ("none", {"epochs": 0}),
}
"""The demo's train runs: (hold-out mode, overrides of the spec's training), longest first (they share
one pool). ``learned`` is bioims' default network and loss with fold hold-out; ``baseline`` the same on
every compound (the model the search index is built from); ``seed_network`` the seed's network and pair
loss (its temperature 0.2) through the same pipeline and folds; ``untrained`` the default network with its
seeded initial weights, which sees no labels, so one run answers for every compound."""
EVALUATED = ("learned", "seed_network", "untrained")
PROFILE_METHODS = ("handcrafted", "naive")
METHOD_ORDER = ("learned", "seed_network", "untrained", "handcrafted", "naive")
EXAMPLE_QUERIES = 3


def train_runs(c: Container, pool: LocalPool, train_ids: list[str]) -> None:
    """Train (or resume, or find complete) runs on the pool; a failed run fails the demo with its reason."""
    output = c.runner.run(c, "train", {"train_ids": train_ids}, pool=pool)["output"]
    if output["failed"]:
        raise BioimsError("training failed: " + "; ".join(f"{f['train_id']}: {f['failure']}"
                                                         for f in output["failures"]))


def ensure_index(c: Container, train_id: str) -> dict[str, Any]:
    """The field index of ``train_id`` (built on first use)."""
    def stored() -> list[dict[str, Any]]:
        return [i for i in c.search.list_indexes(train_id) if (i["level"], i["metric"]) == ("field", "cosine")]

    if not stored():
        c.search.build_index(train_id, "field")
    return stored()[0]


def example_searches(c: Container, train_id: str) -> list[dict[str, Any]]:
    """A few searches in the baseline's field index: for a field of one compound per MOA (the first
    :data:`EXAMPLE_QUERIES` MOAs), its nearest fields of *other* compounds with an MOA."""
    table = c.embedding.profiles(train_id, "field").sort_values("Metadata_ImageId")
    treated = table[table["Metadata_Compound"] != CONTROL]
    out = []
    for moa in sorted(treated["Metadata_MoA"].dropna().unique())[:EXAMPLE_QUERIES]:
        row = treated[treated["Metadata_MoA"] == moa].iloc[0]
        found = c.search.search(train_id, image_id=row["Metadata_ImageId"], k=5, require_moa=True,
                                exclude_tags=[f"compound:{row['Metadata_Compound']}", f"compound:{CONTROL}"])
        out.append({"image_id": row["Metadata_ImageId"], "compound": row["Metadata_Compound"], "moa": moa,
                    "search_id": found["search_id"], "ms": found["ms"],
                    "hits": [{k: h[k] for k in ("rank", "id", "compound", "moa", "distance")} for h in found["hits"]]})
    return out


def ensure_profiles(c: Container, spec: str, kind: str, plate_ids: list[str]) -> str:
    """The ``handcrafted`` or ``naive`` profile set of the demo's fields (computed on first use)."""
    name = f"{spec}-{kind}"
    try:
        c.profiles.info(name)
    except NotFound:
        c.profiles.compute(name, c.training.spec(spec), kind, plate_ids)
    return name


def evaluate_profiles(c: Container, name: str) -> dict[str, Any]:
    from .evaluation.evaluate import evaluate

    metric = c.profiles.info(name)["processing"]["metric"]
    return evaluate(c.profiles.read(name, "treatment"), metric=metric).to_document()


def evaluate_runs(c: Container, train_ids: list[str], report: Path | None) -> dict[str, Any]:
    """NSC / NSCB / mAP of runs' embeddings (hold-out runs answer for their held-out compounds);
    with ``report``, also the HTML report."""
    from .evaluation.report import write_report

    result, treatments = c.embedding.evaluate(train_ids)
    if report is not None:
        write_report(result, treatments, report, title=f"{train_ids[0].rsplit('-', 2)[0]} (cosine)", metric="cosine")
    return result.to_document(report=report)


def ensure_spec(c: Container, preset: Preset) -> str:
    """The demo's embedding spec for a synthetic preset (created on first use): crops of about six
    nucleus radii, nuclei of at least a quarter of the median nucleus area, 12 epochs, 3 folds (each
    MOA's three compounds are held out once, one per model)."""
    name = f"synth-{preset.name}"
    try:
        c.training.get_embedding_info(name)
    except NotFound:
        roi_size, min_nucleus_voxels = sizes_for_radius(preset.nucleus_radius)
        c.training.create_embedding({
            "name": name, "input": {"width": preset.width, "height": preset.height, "depth": 1,
                                    "channels": list(CHANNELS)},
            "segmentation_channel": CHANNELS[0], "roi_size": roi_size,
            "min_nucleus_voxels": min_nucleus_voxels, "embedding_length": 128,
            "training": {"epochs": 12, "folds": 3}})
    return name
