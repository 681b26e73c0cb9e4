"""Embedding throughput of the default network (``resnet``) on CPU: ONNX Runtime vs torch eager.

(a) Inference, crops/s at batch 256 (the embedding job's batch) of 3 x 48 x 48 crops (the demo's ROI) and
    3 x 128 x 128 crops (BBBC021's): the exported, verified ONNX model run by the embedding service's
    ``EmbeddingModel`` (ORT_ENABLE_ALL, intra-op threads = cores, inter-op 1) vs the same network in
    torch eager (``no_grad``, eval mode, ``torch.set_num_threads`` = cores). Both get the same random uint16
    crops, converted as the job converts them (float32 x ``INPUT_SCALE``). Ratio = ORT / torch.
(b) The whole ``embed`` workflow, fields/s and cells/s: the ``tiny`` synthetic screen (4 plates, with the
    demo preset's 256 x 320 fields and cell density, and SITES sites per well) is ingested into a throw-away
    BIOIMS_HOME on dynalite, processed and preprocessed under the demo's spec (ROI 48, 128-d embeddings),
    and an untrained run (``epochs=0``, seeded weights) is exported; then ``embed`` with ``force`` on a pool of
    one process per core, as ``bioims embed`` runs it (per field: read the crops, ONNX Runtime, write the
    cell embeddings and the field's row and artifact; one Parquet per plate). Baseline: the same fields'
    crops read the same way and forwarded by the same network in torch eager in this process (all cores),
    field means kept in memory, nothing written. Ratio = job / torch loop. The job's field embeddings are
    checked against the torch loop's.

Untrained weights: throughput does not depend on them. Warm-up calls are not timed (for (a), as many as
``bench_train``'s steps; for (b), one whole ``embed`` run on the same pool, so process start-up and model
loading are left out, and one torch loop); each figure is the median of the timed calls.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.synth import IMAGE_CSV, MOA_CSV, PRESETS, synthesize
from bioims.demo import ensure_spec
from bioims.jobs.runner import LocalPool
from bioims.local_stack import LocalStack
from bioims.runtime import Container, local
from bioims.services.embedding import BATCH, EmbeddingModel
from bioims.services.preprocessing import spec_fields
from bioims.settings import Settings
from bioims.training.data import INPUT_SCALE, crop_shape, to_input
from bioims.training.export import export_onnx, verify
from bioims.training.networks import build_network

# the training benchmark's crop sides, spec and timing (benchmarks/ is on sys.path under `make bench`)
from bench_train import CORES, SIDES, STEPS, WARMUP, make_spec, step_seconds

SITES = 2  # 4 plates x 10 wells x 2 sites = 80 fields (a few may have no cells), ~1,900 cells
JOB_RUNS = 3  # timed embed runs (and torch loops) after one untimed one


def inference_throughput(side: int, rng: np.random.Generator) -> tuple[float, float]:
    """(ORT, torch eager) crops/s of the default network at batch 256 (see the module docstring)."""
    spec = make_spec("resnet", "proxy", side)
    shape = crop_shape(spec)
    torch.manual_seed(0)
    model = build_network(spec).eval()
    crops = rng.integers(0, 65535, size=(BATCH, *shape), dtype=np.uint16)
    onnx_bytes = export_onnx(model, crops, {"input_shape": list(shape), "input_scale": repr(INPUT_SCALE),
                                            "embedding_length": spec.embedding_length})
    verify(model, onnx_bytes, crops[:8])
    session = EmbeddingModel(onnx_bytes, threads=CORES)

    def run_torch(_: int) -> None:
        with torch.no_grad():
            model(to_input(crops))

    return (BATCH / step_seconds(lambda _: session.embed(crops), WARMUP[side], STEPS[side]),
            BATCH / step_seconds(run_torch, WARMUP[side], STEPS[side]))


def build_screen(c: Container, out: Path, pool: LocalPool) -> tuple[str, str]:
    """The synthetic screen ingested, processed and preprocessed, and an untrained run exported:
    (spec name, train id)."""
    options = {k: getattr(PRESETS["demo"], k) for k in ("height", "width", "nucleus_radius", "cells_per_field")}
    options["sites"] = SITES
    synthesize(out, "tiny", 0, workers=CORES, **options)
    summary = c.images.ingest(read_loaddata(out / IMAGE_CSV, moa_csv=out / MOA_CSV))
    c.artifacts.set_parameter("thumbnail-widths", [32])  # the smallest thumbnails: not what is measured
    spec = ensure_spec(c, PRESETS["tiny"].with_options(**options))  # the demo's spec for these fields
    for plate_id in summary.plate_ids:
        c.runner.run(c, "process-plate", {"plate_id": plate_id}, pool=pool)
    c.runner.run(c, "preprocess", {"spec": spec}, pool=pool)
    train_id = c.training.create_trainings(spec, "none", epochs=0, seed=0)[0]["train_id"]
    output = c.runner.run(c, "train", {"train_ids": [train_id]})["output"]
    assert output["failed"] == 0, output["failures"]
    return spec, train_id


def torch_loop(c: Container, model: torch.nn.Module, fields: list[Any]) -> dict[str, np.ndarray]:
    """Field embeddings (mean of the cells) with torch eager: crops read as the job reads them."""
    out = {}
    with torch.no_grad():
        for f in fields:
            crops = np.load(io.BytesIO(c.objects.get_bytes(f.crops_uri)), allow_pickle=False)
            z = torch.cat([model(to_input(crops[i:i + BATCH])) for i in range(0, len(crops), BATCH)])
            out[f.image_id] = z.mean(dim=0).numpy()
    return out


def job_throughput() -> tuple[dict[str, Any], tuple[int, ...], float, float]:
    """(the last ``embed`` output, the crop shape, job seconds, torch loop seconds), see the module
    docstring."""
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), table_prefix="bench-")
        try:
            c = local(settings)
            with LocalPool(c, workers=CORES) as pool:
                spec, train_id = build_screen(c, Path(home) / "tiny", pool)
                params = {"train_id": train_id, "force": True}
                outputs = []
                job = step_seconds(lambda _: outputs.append(c.runner.run(c, "embed", params, pool=pool)["output"]),
                                   1, JOB_RUNS)
            output = outputs[-1]
            assert output["failed"] == 0 and output["fields"] > 0, output
            fields = [f for f in spec_fields(c.tables, spec, c.embedding.plates(train_id)) if f.cells]
            spec_obj = c.training.spec(spec)
            shape = crop_shape(spec_obj)
            torch.set_num_threads(CORES)  # the train workflow ran in this process and set its own
            torch.manual_seed(0)  # the untrained run's weights (see bioims.training.trainer.train)
            model = build_network(spec_obj).eval()
            vectors: dict[str, np.ndarray] = {}
            loop = step_seconds(lambda _: vectors.update(torch_loop(c, model, fields)), 1, JOB_RUNS)
            table = c.embedding.profiles(train_id, "field").set_index("Metadata_ImageId")
            names = [n for n in table.columns if n.startswith("emb_")]
            expected = np.stack([vectors[i] for i in table.index])
            assert len(table) == len(fields) == output["fields"]
            assert np.abs(table[names].to_numpy() - expected).max() < 1e-4  # same model, same fields
        finally:
            LocalStack(settings).down()
    return output, shape, job, loop


def run() -> list[dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(CORES)
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    try:
        for side in SIDES:
            onnx_rate, torch_rate = inference_throughput(side, rng)
            rows.append({"benchmark": "embed",
                         "figure": f"3x{side}x{side} crops, resnet b{BATCH}, ONNX Runtime, {CORES} threads "
                                   f"(vs torch eager)",
                         "value": onnx_rate, "unit": "crops/s", "baseline": torch_rate,
                         "ratio": onnx_rate / torch_rate})
        output, shape, job, loop = job_throughput()
        figure = (f"embed job, {output['fields']} fields, {'x'.join(map(str, shape))} crops, {CORES} workers, "
                  f"dynalite (vs torch loop, no writes)")
        for unit, n in (("fields/s", output["fields"]), ("cells/s", output["cells"])):
            rows.append({"benchmark": "embed", "figure": figure, "value": n / job, "unit": unit,
                         "baseline": n / loop, "ratio": loop / job})
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
