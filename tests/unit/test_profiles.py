"""Profile verbs (aggregate, normalize, sphere, select_features), Parquet I/O, loading, and the BBBC021
reference lock (84/103 NSC, 70/92 NSCB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bioims.errors import InvalidInput
from bioims.evaluation.knn import nsc
from bioims.profiles.aggregate import aggregate
from bioims.profiles.feature_select import select_features
from bioims.profiles.io import load_feature_table, read_profiles, write_profiles
from bioims.profiles.normalize import normalize, sphere
from bioims.profiles.pipeline import ProfileProcessing, process_profiles

BBBC021 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bbbc021"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def wells() -> pd.DataFrame:
    return pd.DataFrame({
        "Metadata_Plate": ["p1", "p1", "p1", "p2", "p2", "p2"],
        "Metadata_Compound": ["DMSO", "DMSO", "a", "DMSO", "DMSO", "a"],
        "Metadata_Batch": ["W1", "W1", "W1", "W2", "W2", "W2"],
        "f": [1.0, 3.0, 4.0, 10.0, 14.0, 16.0],
        "g": [5.0, 5.0, 7.0, 0.0, 2.0, 3.0],
    })


# ------------------------------------------------------------------ aggregate
@pytest.mark.parametrize("method, expected", [("mean", [2.0, 6.0]), ("median", [2.0, 5.0])])
def test_aggregate(method: str, expected: list[float]) -> None:
    frame = pd.DataFrame({"Metadata_Compound": ["a", "a", "b", "b", "b"], "Metadata_MoA": ["m", "m", "n", "n", "n"],
                          "Metadata_Batch": ["W1", "W1", "W1", "W2", "W1"], "x": [1.0, 3.0, 5.0, 5.0, 8.0]})
    out = aggregate(frame, ["Metadata_Compound"], method=method)
    assert out.columns.tolist() == ["Metadata_Compound", "Metadata_MoA", "Metadata_Batch", "x"]
    assert out["x"].tolist() == expected
    assert out["Metadata_MoA"].tolist() == ["m", "n"]
    assert out["Metadata_Batch"].tolist() == ["W1", "W1;W2"]


def test_aggregate_invalid(wells: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput):
        aggregate(wells, ["Metadata_Compound"], method="sum")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        aggregate(wells, ["Metadata_Nope"])
    with pytest.raises(InvalidInput):
        aggregate(wells, [])


# ------------------------------------------------------------------ normalize
def test_standardize_per_plate_to_dmso(wells: pd.DataFrame) -> None:
    out = normalize(wells)
    # p1 DMSO f: mean 2, sd (ddof=1) sqrt(2); p2: mean 12, sd sqrt(8)
    np.testing.assert_allclose(out["f"], [-1 / np.sqrt(2), 1 / np.sqrt(2), 2 / np.sqrt(2),
                                          -2 / np.sqrt(8), 2 / np.sqrt(8), 4 / np.sqrt(8)])
    # g on p1: DMSO constant (zero scale) -> only centred
    np.testing.assert_allclose(out["g"][:3], [0.0, 0.0, 2.0])
    assert out.columns.tolist() == wells.columns.tolist()
    assert out["Metadata_Compound"].tolist() == wells["Metadata_Compound"].tolist()


def test_mad_robustize_and_zero_scale() -> None:
    frame = pd.DataFrame({"Metadata_Plate": ["p"] * 4, "Metadata_Compound": ["DMSO", "DMSO", "DMSO", "a"],
                          "f": [1.0, 2.0, 4.0, 8.0], "g": [3.0, 3.0, 3.0, 5.0]})
    out = normalize(frame, method="mad_robustize")
    # median 2, MAD median(|-1|, 0, 2) = 1
    np.testing.assert_allclose(out["f"], np.array([-1.0, 0.0, 2.0, 6.0]) / 1.4826)
    np.testing.assert_allclose(out["g"], [0.0, 0.0, 0.0, 2.0])
    assert np.isfinite(out[["f", "g"]].to_numpy()).all()


def test_normalize_all_rows_one_group(wells: pd.DataFrame) -> None:
    out = normalize(wells, by=None, control=None)
    np.testing.assert_allclose(out["f"].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(out["f"].std(ddof=1), 1.0)


def test_normalize_invalid(wells: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput):
        normalize(wells, method="zscore")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        normalize(wells, by="Metadata_Nope")
    with pytest.raises(InvalidInput, match="no control rows"):
        normalize(wells, control=("Metadata_Compound", "PBS"))


def test_sphere_whitens_controls(rng: np.random.Generator) -> None:
    mixing = np.array([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [0.3, -1.0, 3.0]])
    values = rng.normal(size=(400, 3)) @ mixing + 5.0
    frame = pd.DataFrame(values, columns=["a", "b", "c"]).assign(
        Metadata_Compound=np.where(np.arange(400) < 300, "DMSO", "x"))
    out = sphere(frame)
    controls = out.loc[out["Metadata_Compound"] == "DMSO", ["a", "b", "c"]].to_numpy()
    np.testing.assert_allclose(np.cov(controls, rowvar=False), np.eye(3), atol=1e-5)
    np.testing.assert_allclose(controls.mean(axis=0), 0.0, atol=1e-10)
    assert out.columns.tolist() == frame.columns.tolist()


def test_sphere_invalid(wells: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput):
        sphere(wells, regularization=0.0)
    with pytest.raises(InvalidInput):
        sphere(wells, control=("Metadata_Compound", "PBS"))


# ------------------------------------------------------------------ select_features
def test_variance_drops_constant_and_near_constant(rng: np.random.Generator) -> None:
    n = 300
    frame = pd.DataFrame({"Metadata_Compound": ["a"] * n, "constant": 1.0,
                          "rare": np.r_[np.zeros(n - 2), [1.0, 2.0]],   # 298:1 counts, 3 / 300 distinct
                          "binary": np.r_[np.zeros(150), np.ones(150)],  # balanced: kept
                          "continuous": rng.normal(size=n)})
    out = select_features(frame, operations=["variance"])
    assert out.columns.tolist() == ["Metadata_Compound", "binary", "continuous"]
    # caret semantics: a rare value alone is not enough while values are diverse (4 / 300 > 0.01)
    diverse = frame.assign(rare=np.r_[np.zeros(n - 3), [1.0, 2.0, 3.0]])
    assert "rare" in select_features(diverse, operations=["variance"]).columns


def _replicated(rng: np.random.Generator) -> pd.DataFrame:
    treatments = np.repeat(np.arange(10), 3)
    signal = rng.normal(size=10)[treatments]
    return pd.DataFrame({"Metadata_Compound": treatments.astype(str), "Metadata_Concentration": 1.0,
                         "reproducible": signal + 0.05 * rng.normal(size=30),
                         "noise": rng.normal(size=30)})


def test_replicate_correlation(rng: np.random.Generator) -> None:
    frame = _replicated(rng)
    control = pd.DataFrame({"Metadata_Compound": "DMSO", "Metadata_Concentration": 0.0,
                            "reproducible": rng.normal(size=4), "noise": rng.normal(size=4)})
    out = select_features(pd.concat([frame, control]), operations=["replicate_correlation"])
    assert [c for c in out.columns if not c.startswith("Metadata_")] == ["reproducible"]
    assert len(out) == 34


def test_correlation_filter_drops_redundant(rng: np.random.Generator) -> None:
    base = rng.normal(size=50)
    frame = pd.DataFrame({"Metadata_Well": np.arange(50), "a": base, "b": base + 0.01 * rng.normal(size=50),
                          "c": rng.normal(size=50)})
    out = select_features(frame, operations=["correlation"], correlation_threshold=0.95)
    kept = [c for c in out.columns if not c.startswith("Metadata_")]
    assert "c" in kept and len(kept) == 2


def test_select_features_invalid(rng: np.random.Generator) -> None:
    frame = _replicated(rng)
    for kwargs in ({"operations": ["pca"]}, {"operations": "variance"}, {"freq_cut": 1.5},
                   {"unique_cut": -0.1}, {"replicate_threshold": 2.0}, {"correlation_threshold": -1.0},
                   {"replicates": 1}, {"replicate_by": ("Metadata_Nope",)}):
        with pytest.raises(InvalidInput):
            select_features(frame, **kwargs)
    with pytest.raises(InvalidInput, match=">= 3 groups"):
        select_features(frame.head(6), operations=["replicate_correlation"])


# ------------------------------------------------------------------ io
def test_parquet_round_trip(tmp_path: Path, wells: pd.DataFrame) -> None:
    data = write_profiles(wells)
    pd.testing.assert_frame_equal(read_profiles(data), wells)
    path = tmp_path / "p.parquet"
    path.write_bytes(data)
    pd.testing.assert_frame_equal(read_profiles(path), wells)
    pd.testing.assert_frame_equal(read_profiles(path.as_uri()), wells)
    with pytest.raises(InvalidInput):
        read_profiles(tmp_path / "missing.parquet")
    with pytest.raises(InvalidInput):
        read_profiles(b"not parquet")


def test_load_feature_table_platemap_style(tmp_path: Path) -> None:
    pd.DataFrame({"Metadata_Plate": ["Week1_1", "Week1_1", "Week2_9"], "Metadata_Well": ["A01", "A02", "A01"],
                  "x": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "f.csv", index=False)
    pd.DataFrame({"Metadata_Plate": ["Week1_1", "Week1_1", "Week1_1", "Week2_9"],
                  "Metadata_Well": ["A01", "A01", "A02", "A01"], "Metadata_Site": [1, 2, 1, 1],
                  "Metadata_Compound": ["c", "c", "DMSO", "c"],
                  "Metadata_Concentration": [0.1, 0.1, 0.0, 0.1]}).to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame({"compound": ["c", "DMSO"], "concentration": [0.1000000001, 0.0],
                  "moa": ["M", "DMSO"]}).to_csv(tmp_path / "moa.csv", index=False)
    out = load_feature_table(tmp_path / "f.csv", tmp_path / "m.csv", tmp_path / "moa.csv")
    assert out.columns.tolist() == ["Metadata_Plate", "Metadata_Well", "Metadata_Compound",
                                    "Metadata_Concentration", "Metadata_Batch", "Metadata_MoA", "x"]
    assert out["Metadata_Batch"].tolist() == ["Week1", "Week1", "Week2"]
    assert out["Metadata_MoA"].tolist() == ["M", "DMSO", "M"]
    assert out["x"].tolist() == [1.0, 2.0, 3.0]


def test_load_feature_table_errors(tmp_path: Path) -> None:
    pd.DataFrame({"Metadata_Plate": ["p"], "Metadata_Well": ["A01"], "x": [1.0]}).to_csv(tmp_path / "f.csv",
                                                                                         index=False)
    pd.DataFrame({"Metadata_Plate": ["q"], "Metadata_Well": ["A01"], "Metadata_Compound": ["c"],
                  "Metadata_Concentration": [1.0]}).to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame({"Metadata_Plate": ["p"], "Metadata_Well": ["A01"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InvalidInput, match="not found"):
        load_feature_table(tmp_path / "nope.csv", tmp_path / "m.csv")
    with pytest.raises(InvalidInput, match="no \\(plate, well\\) in common"):
        load_feature_table(tmp_path / "f.csv", tmp_path / "m.csv")
    with pytest.raises(InvalidInput, match="Metadata_Compound"):
        load_feature_table(tmp_path / "f.csv", tmp_path / "bad.csv")


def test_pipeline_invalid_metric(wells: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput):
        process_profiles(wells.assign(Metadata_Concentration=1.0),
                         ProfileProcessing(metric="manhattan"))  # type: ignore[arg-type]


# ------------------------------------------------------------------ the BBBC021 reference lock
@pytest.mark.skipif(not (BBBC021 / "ljosa_jbiomolscreen_2013_per_well_mean.csv.gz").is_file(),
                    reason="BBBC021 profiles not available")
def test_bbbc021_reference_pipeline() -> None:
    wells = load_feature_table(BBBC021 / "ljosa_jbiomolscreen_2013_per_well_mean.csv.gz",
                               BBBC021 / "BBBC021_v1_image.csv.gz", BBBC021 / "BBBC021_v1_moa.csv")
    assert wells.shape[0] == 632
    treatments = process_profiles(wells)
    assert len(treatments) == 103 and "DMSO" not in set(treatments["Metadata_Compound"])
    result = nsc(treatments, metric="pearson")
    assert (int(result.predictions["correct"].sum()), result.treatments) == (84, 103)
    assert (result.moas, result.compounds) == (12, 38)
    batch = nsc(treatments, metric="pearson", exclude_batch=True)
    assert (int(batch.predictions["correct"].sum()), batch.treatments) == (70, 92)
    assert batch.moas == 10
    assert batch.dropped_moas == ("Cholesterol-lowering", "Kinase inhibitors")
