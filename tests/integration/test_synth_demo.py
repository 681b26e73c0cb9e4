"""The `demo` synthetic screen as a benchmark: hard for a naive profile, batch effects that make NSCB
harder than NSC, illumination that flat-field correction has to remove; and it ingests and validates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy.ndimage import uniform_filter

from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.synth import IMAGE_CSV, MOA_CSV, synthesize
from bioims.evaluation.knn import feature_columns, nsc, treatment_profiles
from bioims.profiles.naive import field_profiles
from bioims.store.objects import ObjectStore
from bioims.store.roots import remember_ingest_root


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "demo"
    synthesize(out, "demo", seed=0, workers=2)
    return out


def test_naive_profile_is_far_from_perfect_and_nscb_is_harder(demo):
    profiles = field_profiles(read_loaddata(demo / IMAGE_CSV, moa_csv=demo / MOA_CSV), ObjectStore())
    features = feature_columns(profiles)
    assert features == [f"Intensity_{s}_{c}" for s in ("Mean", "Std") for c in ("DAPI", "Tubulin", "Actin")]
    profiles[features] = (profiles[features] - profiles[features].mean()) / profiles[features].std()
    treatments = treatment_profiles(profiles)
    result, batch_result = nsc(treatments), nsc(treatments, exclude_batch=True)
    assert result.treatments == 81 and result.moas == 9 and result.compounds == 27
    assert batch_result.dropped_moas == ("Kinase inhibitors",) and batch_result.treatments == 72
    assert result.accuracy < 0.6, result.accuracy
    assert batch_result.accuracy < result.accuracy


def test_illumination_field_is_visible_in_the_dmso_mean_image(demo):
    images = pd.read_csv(demo / IMAGE_CSV)
    plate = images.Image_Metadata_Plate_DAPI.iloc[0]
    dmso = images[(images.Image_Metadata_Plate_DAPI == plate) & (images.Image_Metadata_Compound == "DMSO")]
    # the actin channel fills most of the field, so its mean over the plate's DMSO fields shows the light
    mean = np.mean([tifffile.imread(demo / r.Image_PathName_Actin / r.Image_FileName_Actin).astype(np.float64)
                    for r in dmso.itertuples()], axis=0)
    smooth = uniform_filter(mean, size=41, mode="nearest")
    h, w = smooth.shape
    centre = smooth[h // 3: 2 * h // 3, w // 3: 2 * w // 3].mean()
    corners = np.mean([smooth[:h // 6, :w // 6].mean(), smooth[:h // 6, -w // 6:].mean(),
                       smooth[-h // 6:, :w // 6].mean(), smooth[-h // 6:, -w // 6:].mean()])
    assert corners < 0.9 * centre, (corners, centre)


def test_demo_ingests_and_its_plates_validate(demo, container):
    remember_ingest_root(container.settings.home, demo)  # as `bioims ingest loaddata` does
    summary = container.images.ingest(read_loaddata(demo / IMAGE_CSV, moa_csv=demo / MOA_CSV))
    assert summary.plates == 12 and summary.invalid_images == 0
    plate_id = summary.plate_ids[0]
    container.artifacts.set_parameter("thumbnail-widths", [64])
    execution = container.runner.run(container, "process-plate", {"plate_id": plate_id}, workers=2)
    assert execution["status"] == "SUCCEEDED"
    validation = execution["output"]["validation"]
    assert validation["valid"], validation["problems"]
    assert [p["plate_id"] for p in container.images.list_compatible_plates(320, 256, 1, 3)] == [plate_id]
