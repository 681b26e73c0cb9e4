"""Handcrafted per-cell features: shapes and intensities of drawn crops, empty crops, speed, and the
phenotypes of the synthetic ``tiny`` screen."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.synth import IMAGE_CSV, MOA_CSV, synthesize
from bioims.errors import InvalidInput
from bioims.imaging.flatfield import FlatFieldAccumulator, flatfield
from bioims.imaging.io import read_field
from bioims.imaging.preprocess import CROP_SCALE, preprocess_field
from bioims.profiles.handcrafted import cell_features, handcrafted_field_profiles
from bioims.store.objects import ObjectStore

CHANNELS = ("DAPI", "Tubulin", "Actin")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def ellipse(size: int, a: float, b: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    """(size, size) bool: pixels inside the ellipse with semi-axes a (x) and b (y)."""
    cy, cx = centre if centre is not None else ((size - 1) / 2, (size - 1) / 2)
    y, x = np.mgrid[:size, :size]
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


def draw(nucleus: np.ndarray, cell: np.ndarray, rng: np.random.Generator, *, dna: float = 0.8,
         tubulin: float = 0.5, actin: float = 0.4, noise: float = 0.01) -> np.ndarray:
    """(3, H, W) uint16 crop: constant intensities in the masks over a dim noisy background."""
    crop = rng.normal(0.05, noise, (3, *nucleus.shape))
    crop[0][nucleus] = dna + rng.normal(0, noise, nucleus.sum())
    crop[1][cell] = tubulin + rng.normal(0, noise, cell.sum())
    crop[2][cell] = actin + rng.normal(0, noise, cell.sum())
    return np.rint(np.clip(crop, 0, 1) * CROP_SCALE).astype(np.uint16)


def test_areas_and_intensities_of_discs(rng):
    crops, truth = [], []
    for r_nucleus, r_cell in ((5, 12), (7, 15), (9, 20)):
        nucleus, cell = ellipse(48, r_nucleus, r_nucleus), ellipse(48, r_cell, r_cell)
        crops.append(draw(nucleus, cell, rng))
        truth.append((nucleus.sum(), cell.sum()))
    f = cell_features(np.stack(crops), CHANNELS)
    assert f.shape[0] == 3 and not f.isna().any().any()
    nuclei, cells = np.array(truth, dtype=float).T
    np.testing.assert_allclose(f["Nuclei_AreaShape_Area"], nuclei, rtol=0.03)
    np.testing.assert_allclose(f["Cells_AreaShape_Area"], cells, rtol=0.03)
    np.testing.assert_allclose(f["Cells_AreaShape_NucleusAreaRatio"], nuclei / cells, rtol=0.05)
    np.testing.assert_allclose(f["Nuclei_Intensity_MeanIntensity_DAPI"], 0.8, rtol=0.01)
    np.testing.assert_allclose(f["Nuclei_Intensity_MedianIntensity_DAPI"], 0.8, rtol=0.01)
    np.testing.assert_allclose(f["Cytoplasm_Intensity_MeanIntensity_Tubulin"], 0.5, rtol=0.01)
    np.testing.assert_allclose(f["Cytoplasm_Intensity_MeanIntensity_Actin"], 0.4, rtol=0.01)
    np.testing.assert_allclose(f["Nuclei_Intensity_IntegratedIntensity_DAPI"], 0.8 * nuclei, rtol=0.04)
    np.testing.assert_allclose(f["Nuclei_AreaShape_Eccentricity"], 0.0, atol=0.1)
    np.testing.assert_allclose(f["Nuclei_AreaShape_Solidity"], 1.0, atol=0.05)


def test_intensity_statistics_match_numpy_on_the_known_mask(rng):
    nucleus = ellipse(40, 8, 6)
    crop = draw(nucleus, ellipse(40, 16, 14), rng, noise=0.05)
    f = cell_features(crop[None], CHANNELS).iloc[0]
    values = crop[0][nucleus] / CROP_SCALE
    for name, expected in (("MeanIntensity", values.mean()), ("StdIntensity", values.std()),
                           ("MaxIntensity", values.max()), ("LowerQuartile10", np.percentile(values, 10)),
                           ("MedianIntensity", np.median(values)), ("UpperQuartile90", np.percentile(values, 90))):
        assert f[f"Nuclei_Intensity_{name}_DAPI"] == pytest.approx(expected, rel=1e-5), name
    whole = crop[1] / CROP_SCALE
    assert f["Crop_Intensity_MeanIntensity_Tubulin"] == pytest.approx(whole.mean(), rel=1e-5)
    assert f["Crop_Intensity_UpperQuartile90_Tubulin"] == pytest.approx(np.percentile(whole, 90), rel=1e-5)


def test_elongation_orders_ellipses(rng):
    ratios = (1.0, 1.5, 2.5)
    crops = [draw(ellipse(64, 8 * np.sqrt(q), 8 / np.sqrt(q)), ellipse(64, 16 * np.sqrt(q), 16 / np.sqrt(q)), rng)
             for q in ratios]
    f = cell_features(np.stack(crops), CHANNELS)
    for compartment in ("Nuclei", "Cells"):
        elongation = f[f"{compartment}_AreaShape_Elongation"].to_numpy()
        np.testing.assert_allclose(elongation, ratios, rtol=0.1)
        assert np.all(np.diff(f[f"{compartment}_AreaShape_Eccentricity"]) > 0)


def test_touching_cells_are_split_between_their_nuclei(rng):
    size = 48
    centre, neighbour = (23.5, 23.5), (23.5, 41.5)
    nucleus = ellipse(size, 5, 5, centre)
    other = ellipse(size, 5, 5, neighbour)
    cells = ellipse(size, 12, 12, centre) | ellipse(size, 12, 12, neighbour)
    crop = draw(nucleus | other, cells, rng)
    f = cell_features(crop[None], CHANNELS).iloc[0]
    own = cells & (np.mgrid[:size, :size][1] <= 32)  # left of the midline between the nuclei (x = 32.5)
    assert f["Nuclei_AreaShape_Area"] == nucleus.sum()
    assert f["Cells_AreaShape_Area"] == pytest.approx(own.sum(), rel=0.05)


def test_crops_without_a_central_nucleus(rng):
    blank = np.zeros((3, 32, 32), np.uint16)
    off_centre = draw(ellipse(32, 4, 4, (3, 3)), ellipse(32, 6, 6, (3, 3)), rng)  # 18 px from the centre
    good = draw(ellipse(32, 6, 6), ellipse(32, 12, 12), rng)
    batch = cell_features(np.stack([blank, good, off_centre]), CHANNELS)
    crop_columns = [c for c in batch.columns if c.startswith("Crop_")]
    cell_columns = [c for c in batch.columns if not c.startswith("Crop_")]
    assert batch.loc[[0, 2], cell_columns].isna().all().all()
    assert not batch[crop_columns].isna().any().any()
    assert not batch.loc[1].isna().any()
    # A crop's features do not depend on the other crops of the batch.
    pd.testing.assert_series_equal(batch.loc[1], cell_features(good[None], CHANNELS).loc[0], check_names=False)
    empty = cell_features(np.zeros((0, 3, 32, 32), np.uint16), CHANNELS)
    assert len(empty) == 0 and list(empty.columns) == list(batch.columns)


def test_feature_names_and_float_input(rng):
    crop = draw(ellipse(32, 6, 6), ellipse(32, 12, 12), rng)
    f = cell_features(crop[None], CHANNELS)
    assert f.shape[1] == 84 and all(np.issubdtype(t, np.floating) for t in f.dtypes)
    for name in ("Nuclei_AreaShape_Area", "Nuclei_AreaShape_Perimeter", "Cells_AreaShape_Elongation",
                 "Cytoplasm_Intensity_MeanIntensity_Tubulin", "Cells_Texture_Contrast_Actin",
                 "Cells_Texture_LocalVariance_DAPI", "Cells_Texture_Gradient_Tubulin"):
        assert name in f.columns
    as_float = cell_features(crop[None].astype(np.float32) / CROP_SCALE, CHANNELS)
    pd.testing.assert_frame_equal(f, as_float, rtol=1e-5)


def test_texture_increases_with_structure(rng):
    nucleus, cell = ellipse(48, 6, 6), ellipse(48, 18, 18)
    flat = draw(nucleus, cell, rng)
    striped = flat.copy()
    stripes = (np.arange(48) // 2) % 2 == 0  # 2-px tubulin filaments (period 2 would vanish in central differences)
    striped[1][:, stripes] = (striped[1][:, stripes] * 0.5).astype(np.uint16)
    f = cell_features(np.stack([flat, striped]), CHANNELS)
    assert f["Cells_AreaShape_Area"].iloc[1] == pytest.approx(cell.sum(), rel=0.03)
    for name in ("Gradient", "LocalVariance", "Contrast"):
        assert f[f"Cells_Texture_{name}_Tubulin"].iloc[1] > 3 * f[f"Cells_Texture_{name}_Tubulin"].iloc[0]


@pytest.mark.parametrize("shape, channels", [((3, 32, 32), CHANNELS), ((1, 2, 32, 32), CHANNELS),
                                             ((1, 3, 2, 32), CHANNELS), ((1, 3, 8, 8), ("a", "a", "b"))])
def test_invalid_input_raises(shape, channels):
    with pytest.raises(InvalidInput):
        cell_features(np.zeros(shape, np.uint16), channels)


def test_field_profiles_average_cells_and_drop_empty_fields(rng):
    a = np.stack([draw(ellipse(32, r, r), ellipse(32, 2 * r, 2 * r), rng) for r in (4, 6)])
    b = a[:1]
    meta = [{"Metadata_Plate": "P", "Metadata_Well": w, "Metadata_Site": "s1"} for w in ("A01", "A02", "A03")]
    profiles = handcrafted_field_profiles(
        [(meta[0], a), (meta[1], np.zeros((0, 3, 32, 32), np.uint16)), (meta[2], b)], CHANNELS)
    assert profiles["Metadata_Well"].tolist() == ["A01", "A03"]
    assert profiles["Metadata_Cells"].tolist() == [2, 1]
    assert profiles.attrs["empty_fields"] == [meta[1]]
    expected = cell_features(a, CHANNELS).mean()
    np.testing.assert_allclose(profiles.loc[0, expected.index].to_numpy(float), expected.to_numpy(), rtol=1e-12)
    with pytest.raises(InvalidInput):
        handcrafted_field_profiles([({"plate": "P"}, a)], CHANNELS)


def test_batch_of_2000_crops_is_fast(rng):
    nucleus, cell = ellipse(48, 7, 6), ellipse(48, 16, 14)
    one = draw(nucleus, cell, rng, noise=0.03)
    crops = np.repeat(one[None], 2000, axis=0)
    crops = np.clip(crops + rng.integers(0, 2000, crops.shape), 0, CROP_SCALE).astype(np.uint16)
    started = time.perf_counter()
    features = cell_features(crops, CHANNELS)
    elapsed = time.perf_counter() - started
    print(f"cell_features: 2000 crops 3x48x48 -> {features.shape[1]} features in {elapsed:.2f} s")
    assert len(features) == 2000 and not features.isna().any().any()


# ------------------------------------------------------------------------------------------ synthetic screen
@pytest.fixture(scope="module")
def tiny_cells(tmp_path_factory) -> pd.DataFrame:
    """Cell features of the tiny screen's top doses and DMSO, z-scored per plate against DMSO cells."""
    out = Path(tmp_path_factory.mktemp("synth")) / "tiny"
    synthesize(out, "tiny", seed=0)
    objects, frames = ObjectStore(), []
    for plate in read_loaddata(out / IMAGE_CSV, moa_csv=out / MOA_CSV):
        images = [read_field([f.channel_uris[c] for c in plate.channels], objects) for f in plate.fields]
        accumulators = [FlatFieldAccumulator() for _ in plate.channels]
        for image in images:
            for accumulator, channel in zip(accumulators, image):
                accumulator.add(channel)
        flats = np.stack([flatfield(a.mean()) for a in accumulators])
        for record, image in zip(plate.fields, images):
            crops = preprocess_field(image, flats, segmentation_channel=0, roi_size=32, min_nucleus_voxels=30).crops
            frame = cell_features(crops, plate.channels)
            frame["Metadata_Plate"] = plate.source_id
            frame["Metadata_Compound"] = record.metadata["compound"]
            frame["Metadata_Concentration"] = record.metadata["concentration"]
            frame["Metadata_MoA"] = record.metadata["moa"]
            frames.append(frame)
    cells = pd.concat(frames, ignore_index=True)
    top = cells.groupby("Metadata_Compound")["Metadata_Concentration"].transform("max")
    cells = cells[(cells["Metadata_Concentration"] == top) | (cells["Metadata_MoA"] == "DMSO")].copy()
    features = [c for c in cells.columns if not c.startswith("Metadata_")]
    for index in cells.groupby("Metadata_Plate").groups.values():
        dmso = cells.loc[index][cells.loc[index, "Metadata_MoA"] == "DMSO"][features]
        cells.loc[index, features] = (cells.loc[index, features] - dmso.median()) / dmso.std()
    return cells


def test_microtubule_stabilizers_condense_nuclei(tiny_cells):
    by_moa = tiny_cells.groupby("Metadata_MoA")
    condensed = ((tiny_cells["Nuclei_AreaShape_Area"] < -1)
                 & (tiny_cells["Nuclei_Intensity_MeanIntensity_DAPI"] > 0)).groupby(tiny_cells["Metadata_MoA"]).mean()
    assert condensed["Microtubule stabilizers"] > 2 * condensed["DMSO"] + 0.05
    elongation = by_moa["Nuclei_AreaShape_Elongation"].mean()  # metaphase plates
    assert elongation["Microtubule stabilizers"] > elongation["DMSO"] + 1.0


def test_protein_synthesis_inhibitors_dim_the_cytoplasm(tiny_cells):
    means = tiny_cells.groupby("Metadata_MoA")[["Cytoplasm_Intensity_MeanIntensity_Tubulin",
                                                "Cytoplasm_Intensity_MeanIntensity_Actin",
                                                "Cells_AreaShape_Area"]].mean()
    dimming = means.iloc[:, :2].mean(axis=1)
    assert dimming["Protein synthesis"] < dimming["DMSO"] - 0.2
    assert means.loc["Protein synthesis", "Cells_AreaShape_Area"] < means.loc["DMSO", "Cells_AreaShape_Area"] - 0.5
