"""The synthetic screen (tiny preset): structure, naming, ground truth, determinism, resumability."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.synth import IMAGE_CSV, MOA_CSV, PRESETS, design_screen, synthesize
from bioims.errors import InvalidInput

BBBC021_FILE = re.compile(r"^[B-G](0[2-9]|1[01])_s\d+_w[124][0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\.tif$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return out, synthesize(out, "tiny", seed=3)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_structure_counts_and_naming(tiny):
    out, summary = tiny
    preset = PRESETS["tiny"]
    assert summary["plates"] == preset.batches * preset.replicates == 4
    assert summary["treatments"] == 16 and summary["compounds"] == 8 and summary["moas"] == 4
    assert summary["fields"] == summary["wells"] * preset.sites == summary["rendered"]
    images = pd.read_csv(out / IMAGE_CSV)
    assert list(images.columns) == [
        "TableNumber", "ImageNumber", "Image_FileName_DAPI", "Image_PathName_DAPI", "Image_FileName_Tubulin",
        "Image_PathName_Tubulin", "Image_FileName_Actin", "Image_PathName_Actin", "Image_Metadata_Plate_DAPI",
        "Image_Metadata_Well_DAPI", "Replicate", "Image_Metadata_Compound", "Image_Metadata_Concentration"]
    assert len(images) == summary["fields"]
    for _, row in images.iterrows():
        assert re.fullmatch(r"Week\d+/Week\d+_\d{5}", row["Image_PathName_DAPI"])
        assert row["Image_PathName_DAPI"].endswith(row["Image_Metadata_Plate_DAPI"])
        for ch, code in (("DAPI", "w1"), ("Tubulin", "w2"), ("Actin", "w4")):
            name = row[f"Image_FileName_{ch}"]
            assert BBBC021_FILE.match(name) and f"_{code}" in name and name.startswith(row["Image_Metadata_Well_DAPI"])
    # DMSO on every plate; each treatment in one batch, its replicates on different plates
    assert set(images[images.Image_Metadata_Compound == "DMSO"].Image_Metadata_Plate_DAPI) == \
        set(images.Image_Metadata_Plate_DAPI)
    treated = images[images.Image_Metadata_Compound != "DMSO"]
    batches = treated.Image_PathName_DAPI.str.split("/").str[0]
    per_treatment = treated.assign(batch=batches).groupby(["Image_Metadata_Compound", "Image_Metadata_Concentration"])
    assert (per_treatment.batch.nunique() == 1).all()
    assert (per_treatment.Image_Metadata_Plate_DAPI.nunique() == PRESETS["tiny"].replicates).all()
    moa = pd.read_csv(out / MOA_CSV)
    assert list(moa.columns) == ["compound", "concentration", "moa"]
    assert (moa[moa.compound == "DMSO"].moa == "DMSO").all() and moa.moa.nunique() == 5


def test_images_are_16_bit_fields_and_match_the_ground_truth(tiny):
    out, _ = tiny
    images = pd.read_csv(out / IMAGE_CSV)
    fields = pd.read_csv(out / "ground_truth" / "fields.csv")
    cells = pd.read_csv(out / "ground_truth" / "cells.csv.gz")
    assert len(fields) == len(images) and fields.cells.sum() == len(cells)
    assert (cells.groupby("ImageNumber").size().reindex(fields.ImageNumber, fill_value=0).to_numpy()
            == fields.cells.to_numpy()).all()
    contrast = []
    for _, f in fields[(fields.kind == "normal") & (fields.defocus == 0) & (fields.cells > 0)].iterrows():
        row = images[images.ImageNumber == f.ImageNumber].iloc[0]
        dna = tifffile.imread(out / row.Image_PathName_DAPI / row.Image_FileName_DAPI)
        assert dna.dtype == np.uint16 and dna.shape == (PRESETS["tiny"].height, PRESETS["tiny"].width)
        mine = cells[cells.ImageNumber == f.ImageNumber]
        at_nuclei = dna[mine.y.astype(int), mine.x.astype(int)]
        contrast.append(np.median(at_nuclei) / np.median(dna))
    # nuclei are where the ground truth says: DNA at their centres is far above the field's median
    assert len(contrast) > 20 and np.median(contrast) > 3


def test_ground_truth_phenotypes_follow_the_treatments(tiny):
    out, _ = tiny
    fields = pd.read_csv(out / "ground_truth" / "fields.csv")
    cells = pd.read_csv(out / "ground_truth" / "cells.csv.gz").merge(fields, on="ImageNumber")
    dmso = cells[cells.compound == "DMSO"]
    assert set(dmso.phenotype) == {"DMSO"} and not dmso.responding.any()
    treated = cells[cells.compound != "DMSO"]
    assert (treated[treated.responding].phenotype == treated[treated.responding].moa).all()
    # dose response: the higher dose of each compound has at least as many responding cells
    frac = treated.groupby(["compound", "concentration"]).responding.mean().reset_index()
    by_compound = frac.sort_values("concentration").groupby("compound").responding
    assert (by_compound.last() >= by_compound.first() - 0.1).all()
    stabilised = treated[(treated.moa == "Microtubule stabilizers") & treated.responding]
    assert (stabilised.mitotic == "metaphase").mean() > 5 * (dmso.mitotic == "metaphase").mean()


def test_deterministic_and_resumable(tiny, tmp_path):
    out, summary = tiny
    again = tmp_path / "again"
    assert synthesize(again, "tiny", seed=3, workers=2)["cells"] == summary["cells"]
    for rel in ("synth_image.csv", "synth_moa.csv", "ground_truth/cells.csv.gz", "ground_truth/fields.csv"):
        assert digest(out / rel) == digest(again / rel), rel
    tiffs = sorted(p.relative_to(again) for p in again.rglob("*.tif"))
    assert tiffs == sorted(p.relative_to(out) for p in out.rglob("*.tif"))
    assert digest(out / tiffs[5]) == digest(again / tiffs[5])
    (again / tiffs[5]).unlink()
    resumed = synthesize(again, "tiny", seed=3)
    assert resumed["rendered"] == 1 and resumed["skipped"] == summary["fields"] - 1
    assert digest(out / tiffs[5]) == digest(again / tiffs[5])
    other = synthesize(tmp_path / "other", "tiny", seed=4)
    assert digest(tmp_path / "other" / "synth_moa.csv") != digest(out / "synth_moa.csv")
    assert other["fields"] == summary["fields"]


def test_output_reads_with_the_loaddata_importer(tiny):
    out, summary = tiny
    plates = read_loaddata(out / IMAGE_CSV, moa_csv=out / MOA_CSV)
    assert len(plates) == summary["plates"] and sum(len(p.fields) for p in plates) == summary["fields"]
    assert all(Path(u[len("file://"):]).is_file() for p in plates for f in p.fields for u in f.channel_uris.values())
    assert {f.metadata["moa"] for p in plates for f in p.fields} >= {"DMSO", "Microtubule stabilizers"}
    assert {p.batch for p in plates} == {"Week1", "Week2"}


def test_presets_mirror_the_benchmark_structure():
    demo = design_screen(PRESETS["demo"], 0)
    per_moa = pd.DataFrame([(c.moa, c.name, len(c.concentrations)) for c in demo.compounds],
                           columns=["moa", "compound", "doses"])
    assert per_moa.moa.nunique() >= 8 and (per_moa.groupby("moa").size() >= 3).all() and (per_moa.doses >= 3).all()
    full = design_screen(PRESETS["full"], 0)
    assert len({c.moa for c in full.compounds}) == 12 and len(full.compounds) == 38
    assert sum(len(c.concentrations) for c in full.compounds) == 103
    wells = pd.DataFrame([w.__dict__ for w in full.wells])
    moa_batches = wells[wells.moa != "DMSO"].groupby("moa").batch.nunique()
    assert set(moa_batches[moa_batches == 1].index) == {"Cholesterol-lowering", "Kinase inhibitors"}
    preset = PRESETS["full"]
    size = len(full.wells) * preset.sites * 3 * preset.height * preset.width * 2
    assert size < 10e9 and (preset.height, preset.width) == (1024, 1280)


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(InvalidInput, match="unknown preset"):
        synthesize(tmp_path, "huge")
    with pytest.raises(InvalidInput, match="unknown synth option"):
        synthesize(tmp_path, "tiny", colour="blue")
    with pytest.raises(InvalidInput, match="sites must be an integer"):
        synthesize(tmp_path, "tiny", sites=0)
    with pytest.raises(InvalidInput, match="needs 62 wells per plate"):
        synthesize(tmp_path, "tiny", dmso_wells=54)
