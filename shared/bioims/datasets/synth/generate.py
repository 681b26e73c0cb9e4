"""Write a synthetic screen to disk: BBBC021 folder and file naming, image and MOA CSVs, ground truth.

Layout of ``OUT``::

    synth_image.csv                 BBBC021-style image CSV (read by `bioims ingest loaddata` unchanged)
    synth_moa.csv                   compound, concentration, moa (DMSO included, as BBBC021_v1_moa.csv)
    Week1/Week1_12345/B02_s1_w1<UUID>.tif ...   16-bit TIFF per channel (w1 DAPI, w2 Tubulin, w4 Actin)
    ground_truth/cells.csv.gz       per cell: field, nucleus centre (y, x px), nucleus radius, phenotype, states
    ground_truth/fields.csv         per field: treatment, cell count, kind (normal|empty|saturated), defocus
    ground_truth/treatments.csv     per treatment: MOA, batch, EC50, Hill slope, responding fraction
    ground_truth/plates.csv         per plate: batch, channel gains and offsets (the nuisance)
    dataset.json                    preset, seed, counts

Deterministic for a seed: every field draws from its own generator seeded by (seed, plate, well, site),
so the result does not depend on the number of workers or the order of work. Resumable: fields whose
three files exist are not rendered again (their ground truth is re-derived, it costs nothing), and every
file is written atomically, so a killed run is finished by running it again.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ...errors import InvalidInput
from ...imaging.io import write_tiff
from ...store.objects import write_file_atomic
from .design import CHANNEL_CODES, CHANNELS, INNER_WELLS, PRESETS, Design, WellPlan, design_screen
from .phenotypes import CONTROL, DMSO, MOA_BY_NAME, sample_cell
from .render import CAMERA_OFFSET, Optics, draw_cell, draw_debris, draw_saturated_artifact, \
    illumination_field, microscope, smooth_noise

IMAGE_CSV = "synth_image.csv"
MOA_CSV = "synth_moa.csv"
EMPTY_RATE, SATURATED_RATE, DEFOCUS_RATE = 0.01, 0.01, 0.05


@dataclass(frozen=True)
class FieldJob:
    number: int  # ImageNumber, 1-based
    plate_index: int
    well_index: int
    site: int
    well: WellPlan
    files: tuple[str, str, str]  # relative paths, channel order of CHANNELS


def plan_fields(design: Design) -> list[FieldJob]:
    plate_index = {name: i for i, (name, _) in enumerate(design.plates)}
    jobs = []
    for w in design.wells:
        p, wi = plate_index[w.plate], INNER_WELLS.index(w.well)
        for site in range(1, design.preset.sites + 1):
            tags = np.random.default_rng([design.seed, 8, p, wi, site]).bytes(16 * len(CHANNEL_CODES))
            files = tuple(f"{w.batch}/{w.plate}/{w.well}_s{site}_{code}"
                          f"{str(uuid.UUID(bytes=tags[16 * i:16 * i + 16])).upper()}.tif"
                          for i, code in enumerate(CHANNEL_CODES))
            jobs.append(FieldJob(len(jobs) + 1, p, wi, site, w, files))  # type: ignore[arg-type]
    return jobs


@lru_cache(maxsize=8)
def plate_optics(seed: int, plate_index: int, batch_index: int, height: int, width: int) -> tuple[np.ndarray, ...]:
    """(illumination (3, H, W), gain (3,), offset (3,)) of a plate: batch gain x plate gain per channel."""
    batch_gain = np.random.default_rng([seed, 5, batch_index]).lognormal(0.0, 0.15, 3)
    rng = np.random.default_rng([seed, 6, plate_index])
    gain = (batch_gain * rng.lognormal(0.0, 0.06, 3)).astype(np.float32)
    offset = (CAMERA_OFFSET + rng.normal(0.0, 10.0, 3)).astype(np.float32)
    illumination = illumination_field(height, width, np.random.default_rng([seed, 7, plate_index]))
    return illumination, gain, offset


def _place(n: int, clustering: float, height: int, width: int, min_dist: float,
           rng: np.random.Generator) -> np.ndarray:
    """Nucleus centres (k, 2) (y, x): uniform, or next to an earlier cell with probability
    ``clustering`` (colonies); centres closer than ``min_dist`` are rejected (cells may still touch)."""
    points: list[tuple[float, float]] = []
    for _ in range(n):
        for _attempt in range(30):
            if points and rng.random() < clustering:
                py, px = points[int(rng.integers(len(points)))]
                ang, rad = rng.uniform(0, 2 * np.pi), min_dist * rng.uniform(1.05, 1.6)
                y, x = py + rad * np.sin(ang), px + rad * np.cos(ang)
            else:
                y, x = rng.uniform(0, height), rng.uniform(0, width)
            if not (0 <= y < height and 0 <= x < width):
                continue
            if not points or np.min(np.hypot(*(np.asarray(points) - (y, x)).T)) >= min_dist:
                points.append((y, x))
                break
    return np.asarray(points, dtype=np.float32).reshape(-1, 2)


def make_field(design: Design, job: FieldJob, out: Path, render: bool) -> dict[str, Any]:
    """Plan one field (cells and their phenotypes) and, if ``render``, write its three TIFFs.
    Returns its ground truth: ``{"field": {...}, "cells": [{...}, ...]}``."""
    preset, w = design.preset, job.well
    rng = np.random.default_rng([design.seed, 2, job.plate_index, job.well_index, job.site])
    density = np.random.default_rng([design.seed, 3, job.plate_index, job.well_index]).lognormal(0.0, 0.2)
    compound = None if w.compound == DMSO else design.compound(w.compound)
    moa = CONTROL if compound is None else MOA_BY_NAME[compound.moa]
    fraction = 0.0 if compound is None else compound.response(w.concentration)
    u = rng.random()
    kind = "empty" if u < EMPTY_RATE else "saturated" if u < EMPTY_RATE + SATURATED_RATE else "normal"
    defocus = float(rng.uniform(1.5, 3.0) * preset.nucleus_radius / 8) if rng.random() < DEFOCUS_RATE else 0.0
    n = 0 if kind == "empty" else int(rng.poisson(preset.cells_per_field * density * (1 - moa.toxicity * fraction)))
    states = [sample_cell(moa, compound, fraction, rng) for _ in range(n)]
    centres = _place(n, moa.clustering * fraction, preset.height, preset.width, 2.4 * preset.nucleus_radius, rng)
    states = states[:len(centres)]

    cells = []
    if render:
        draw_rng = np.random.default_rng([design.seed, 4, job.plate_index, job.well_index, job.site])
        canvas = np.zeros((3, preset.height, preset.width), dtype=np.float32)
        textures = np.stack([smooth_noise(canvas.shape[1:], 1.2, draw_rng) for _ in range(2)])
    for i, (state, (y, x)) in enumerate(zip(states, centres)):
        radius = preset.nucleus_radius * float(np.exp(state.traits[0]))
        if render:
            radius = draw_cell(canvas, textures, float(y), float(x), state, preset.nucleus_radius, draw_rng)
        cells.append({"ImageNumber": job.number, "cell": i, "y": round(float(y), 2), "x": round(float(x), 2),
                      "nucleus_radius": round(radius, 2), "phenotype": state.phenotype,
                      "responding": state.responding, "mitotic": state.mitotic, "micronuclei": state.micronuclei,
                      "nuclei": state.nuclei})
    if render:
        draw_debris(canvas, draw_rng, preset.nucleus_radius)
        if kind == "saturated":
            draw_saturated_artifact(canvas, draw_rng)
        batch_index = int(w.batch.removeprefix("Week")) - 1
        illumination, gain, offset = plate_optics(design.seed, job.plate_index, batch_index,
                                                  preset.height, preset.width)
        image = microscope(canvas, Optics(illumination, gain, offset, defocus), draw_rng)
        for c, rel in enumerate(job.files):
            write_tiff(out / rel, image[c])
    field = {"ImageNumber": job.number, "plate": w.plate, "batch": w.batch, "well": w.well, "site": job.site,
             "compound": w.compound, "concentration": w.concentration, "moa": w.moa, "replicate": w.replicate,
             "cells": len(cells), "kind": kind, "defocus": round(defocus, 3),
             "responding_fraction": round(fraction, 4)}
    return {"field": field, "cells": cells}


_DESIGN: Design | None = None
_OUT: Path | None = None


def _init_worker(design: Design, out: Path) -> None:
    global _DESIGN, _OUT
    _DESIGN, _OUT = design, out


def _work(job: FieldJob) -> tuple[dict[str, Any], bool]:
    assert _DESIGN is not None and _OUT is not None
    render = not all((_OUT / rel).is_file() for rel in job.files)
    return make_field(_DESIGN, job, _OUT, render), render


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    data = frame.to_csv(index=False).encode()
    write_file_atomic(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def synthesize(out: str | Path, preset: str = "demo", seed: int = 0, *, workers: int = 1,
               progress: bool = False, **options: Any) -> dict[str, Any]:
    """Generate a synthetic HCS screen into ``out`` (see the module docstring).

    Parameters
    ----------
    out : path
        Output folder (created; an earlier run into it is resumed).
    preset : {"tiny", "demo", "full"}
        ``tiny``: seconds, for unit tests; ``demo``: 9 MOAs x 3 compounds x 3 doses, 256x320 fields;
        ``full``: BBBC021's structure (12 MOAs, 38 compounds, 103 treatments, 1024x1280 fields, ~9 GB).
    seed : int
        Everything is a deterministic function of the seed.
    workers : int
        Processes rendering fields.
    **options
        Any :class:`~bioims.datasets.synth.design.Preset` field to override (``sites=4``, ...).

    Returns
    -------
    dict
        Counts (plates, wells, fields, cells, treatments, compounds, moas), ``rendered`` and ``skipped``
        fields, ``bytes`` on disk, ``seconds``.
    """
    if preset not in PRESETS:
        raise InvalidInput(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if workers < 1:
        raise InvalidInput(f"workers must be >= 1, got {workers}")
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    design = design_screen(PRESETS[preset].with_options(**options) if options else PRESETS[preset], int(seed))
    jobs = plan_fields(design)
    results: list[tuple[dict[str, Any], bool]] = []
    with tqdm(total=len(jobs), desc="synth", unit="field", disable=not progress) as bar:
        if workers == 1:
            _init_worker(design, out)
            for job in jobs:
                results.append(_work(job))
                bar.update()
        else:
            with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(design, out)) as pool:
                for result in pool.map(_work, jobs, chunksize=4):
                    results.append(result)
                    bar.update()
    _write_tables(out, design, jobs, [r for r, _ in results])
    rendered = sum(r for _, r in results)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    fields = [r["field"] for r, _ in results]
    return {"out": str(out), "preset": preset, "seed": int(seed), "plates": len(design.plates),
            "wells": len(design.wells), "fields": len(jobs), "cells": sum(f["cells"] for f in fields),
            "treatments": len({(w.compound, w.concentration) for w in design.wells if w.compound != DMSO}),
            "compounds": len(design.compounds), "moas": len({c.moa for c in design.compounds}),
            "rendered": rendered, "skipped": len(jobs) - rendered, "bytes": size,
            "seconds": round(time.perf_counter() - started, 2)}


def _write_tables(out: Path, design: Design, jobs: list[FieldJob], truth: list[dict[str, Any]]) -> None:
    rows = []
    for job in jobs:
        w = job.well
        row: dict[str, Any] = {"TableNumber": 1, "ImageNumber": job.number}
        for channel, rel in zip(CHANNELS, job.files):
            folder, name = rel.rsplit("/", 1)
            row[f"Image_FileName_{channel}"] = name
            row[f"Image_PathName_{channel}"] = folder
        row |= {"Image_Metadata_Plate_DAPI": w.plate, "Image_Metadata_Well_DAPI": w.well,
                "Replicate": w.replicate, "Image_Metadata_Compound": w.compound,
                "Image_Metadata_Concentration": w.concentration}
        rows.append(row)
    _write_csv(out / IMAGE_CSV, pd.DataFrame(rows))
    treatments = sorted({(w.compound, w.concentration, w.moa, w.batch) for w in design.wells})
    moa_rows = [{"compound": c, "concentration": conc, "moa": m} for c, conc, m, _ in treatments]
    _write_csv(out / MOA_CSV, pd.DataFrame(moa_rows).drop_duplicates())
    gt = out / "ground_truth"
    _write_csv(gt / "fields.csv", pd.DataFrame([t["field"] for t in truth]))
    _write_csv(gt / "cells.csv.gz", pd.DataFrame([c for t in truth for c in t["cells"]],
                                                 columns=["ImageNumber", "cell", "y", "x", "nucleus_radius",
                                                          "phenotype", "responding", "mitotic", "micronuclei",
                                                          "nuclei"]))
    treatment_rows = []
    for compound, conc, moa, batch in treatments:
        c = None if compound == DMSO else design.compound(compound)
        treatment_rows.append({"compound": compound, "concentration": conc, "moa": moa, "batch": batch,
                               "ec50": c.ec50 if c else None, "hill": c.hill if c else None,
                               "efficacy": c.efficacy if c else None,
                               "responding_fraction": c.response(conc) if c else 0.0})
    _write_csv(gt / "treatments.csv", pd.DataFrame(treatment_rows))
    plate_rows = []
    for p, (plate, batch) in enumerate(design.plates):
        _, gain, offset = plate_optics(design.seed, p, int(batch.removeprefix("Week")) - 1,
                                       design.preset.height, design.preset.width)
        plate_rows.append({"plate": plate, "batch": batch}
                          | {f"gain_{ch}": round(float(g), 4) for ch, g in zip(CHANNELS, gain)}
                          | {f"offset_{ch}": round(float(o), 2) for ch, o in zip(CHANNELS, offset)})
    _write_csv(gt / "plates.csv", pd.DataFrame(plate_rows))
    meta = {"generator": "bioims.datasets.synth", "seed": design.seed, "preset": asdict(design.preset),
            "channels": list(CHANNELS), "image_csv": IMAGE_CSV, "moa_csv": MOA_CSV}
    write_file_atomic(out / "dataset.json", json.dumps(meta, indent=1).encode())
