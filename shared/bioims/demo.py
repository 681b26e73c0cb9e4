"""The walkthrough in one command (``bioims demo``).

Steps: generate the synthetic screen (:mod:`bioims.datasets.synth`), register it, process every plate
(inspect each image, validate the plate, make thumbnails), create the preset's embedding spec,
preprocess (flat-fields, single-cell crops), summarise the registry (plates per batch, image status,
tags per type, MOA labels with their indices), train the embedding methods (bioims' default network and
loss with fold hold-out, the seed's network and pair loss with the same folds, the default network
untrained), embed every field with each, compute the handcrafted and naive profiles of the same fields,
and evaluate all five on MOA retrieval (NSC, NSCB, mAP; each fold model answers only for the compounds
it held out), with the HTML report of the learned embedding. Every step is idempotent, so an
interrupted demo is finished by running it again, and a finished one reruns in seconds.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .datasets.synth import IMAGE_CSV, MOA_CSV, PRESETS, Preset, synthesize
from .datasets.synth.design import CHANNELS
from .errors import BioimsError, NotFound
from .jobs.runner import LocalPool
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
        "validated_plates": sum(p["status"] == "validated" for p in plates),
        "plates_per_batch": dict(sorted(Counter(p.get("batch") or "-" for p in plates).items())),
        "images": sum(int(p["image_count"]) for p in plates),
        "image_status": dict(sorted(status.items())),
        "tags_per_type": dict(sorted(tag_types.items())),
        "moa_labels": moa_labels,
    }


def run_demo(c: Container, *, preset: str = "demo", out: Path | None = None, seed: int = 0, workers: int = 1,
             progress: bool = False) -> dict[str, Any]:
    """Run the walkthrough; returns ``{"steps": {step: seconds}, "seconds", "dataset", "ingest",
    "processed", "registry"}``. The dataset goes to ``out`` (default ``$BIOIMS_HOME/datasets/<preset>``)."""
    from .datasets.loaddata import read_loaddata

    out = out or c.settings.home / "datasets" / preset
    started = time.perf_counter()
    steps: dict[str, float] = {}
    dataset = _timed(steps, "synth", lambda: synthesize(out, preset, seed, workers=workers, progress=progress))
    records = read_loaddata(out / IMAGE_CSV, moa_csv=out / MOA_CSV, experiment=f"synth-{preset}-{seed}")
    ingest = _timed(steps, "ingest", lambda: c.images.ingest(records).to_dict())
    plate_ids = [c.images.plate_id_for(r) for r in records]

    def process() -> dict[str, int]:
        todo = [p for p in plate_ids if c.images.get_plate(p)["status"] != "validated"]
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
    models: dict[str, list[str]] = {}
    with LocalPool(c, workers=workers, progress=progress) as pool:
        for method, (holdout, overrides) in LEARNED_METHODS.items():
            models[method] = _timed(steps, f"train_{method}",
                                    lambda: train_runs(c, pool, spec, holdout, overrides))
        for method, ids in models.items():
            _timed(steps, f"embed_{method}", lambda: [c.runner.run(c, "embed", {"train_id": i}, pool=pool)
                                                     for i in ids])
    methods: dict[str, dict[str, Any]] = {}
    for kind in PROFILE_METHODS:
        name = _timed(steps, f"profiles_{kind}", lambda: ensure_profiles(c, spec, kind, plate_ids))
        methods[kind] = _timed(steps, f"evaluate_{kind}", lambda: evaluate_profiles(c, name))
    report_path = c.settings.home / "reports" / f"{spec}-learned.html"
    for method, ids in models.items():
        methods[method] = _timed(steps, f"evaluate_{method}", lambda: evaluate_runs(
            c, ids, report_path if method == "learned" else None))
    return {"steps": steps, "seconds": round(time.perf_counter() - started, 2),
            "dataset": {k: v for k, v in dataset.items() if k != "seconds"},
            "ingest": {k: v for k, v in ingest.items() if not isinstance(v, list)}
            | {"skipped_plates": len(ingest["skipped_plates"])},
            "processed": processed, "preprocess": preprocessed, "registry": registry,
            "models": models, "methods": {m: methods[m] for m in METHOD_ORDER}, "report": str(report_path)}


LEARNED_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "learned": ("folds", {}),
    "seed_network": ("folds", {"network": "seed", "loss": "seed", "temperature": 0.2}),
    "untrained": ("none", {"epochs": 0}),
}
"""Embedding methods trained on the demo's crops: (hold-out mode, overrides of the spec's training).
``learned`` is bioims' default network and loss; ``seed_network`` the seed's network and pair loss (its
temperature 0.2) through the same pipeline; ``untrained`` the default network with its seeded initial
weights, which sees no labels, so one run answers for every compound."""
PROFILE_METHODS = ("handcrafted", "naive")
METHOD_ORDER = ("learned", "seed_network", "untrained", "handcrafted", "naive")


def train_runs(c: Container, pool: LocalPool, spec: str, holdout: str, overrides: dict[str, Any]) -> list[str]:
    """Train (or resume, or find complete) the runs of one method; returns their train ids."""
    ids = [r["train_id"] for r in c.training.create_trainings(spec, holdout, **overrides)]
    output = c.runner.run(c, "train", {"train_ids": ids}, pool=pool)["output"]
    if output["failed"]:
        raise BioimsError("training failed: " + "; ".join(f"{f['train_id']}: {f['failure']}"
                                                         for f in output["failures"]))
    return ids


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
    nucleus radii, nuclei of at least a quarter of the median nucleus area, 10 epochs, 3 folds (each
    MOA's three compounds are held out once, one per model)."""
    name = f"synth-{preset.name}"
    try:
        c.training.get_embedding_info(name)
    except NotFound:
        r = preset.nucleus_radius
        c.training.create_embedding({
            "name": name, "input": {"width": preset.width, "height": preset.height, "depth": 1,
                                    "channels": list(CHANNELS)},
            "segmentation_channel": CHANNELS[0], "roi_size": int(8 * round(6 * r / 8)),
            "min_nucleus_voxels": int(0.25 * math.pi * r * r), "embedding_length": 128,
            "training": {"epochs": 10, "folds": 3}})
    return name
