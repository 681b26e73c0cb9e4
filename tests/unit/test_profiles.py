"""Profile verbs (aggregate, normalize, sphere, select_features), Parquet I/O, loading, `bioims export`
(Parquet, CSV, AnnData .h5ad and .zarr, read back by pycytominer), and the BBBC021 reference lock
(84/103 NSC, 70/92 NSCB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bioims.errors import InvalidInput
from bioims.evaluation.knn import nsc
from bioims.profiles.aggregate import aggregate
from bioims.profiles.feature_select import select_features
from bioims.profiles.io import (
    feature_columns, load_feature_table, metadata_columns, profiles_to_anndata, read_profiles, write_profiles,
    write_profiles_anndata, write_profiles_csv)
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


# ------------------------------------------------------------------ export: Parquet, CSV, AnnData
@pytest.fixture
def fields(rng: np.random.Generator) -> pd.DataFrame:
    """A field-level embedding table as the embedding job stores it (read back from its Parquet), with
    CytoTable's per-image file columns, a missing batch, MOA and concentration, and float32 features."""
    table = pd.DataFrame({
        "Metadata_Plate": ["Week1_1", "Week1_1", "Week1_1", "Week2_9"],
        "Metadata_Well": ["B02", "B02", "C05", "B02"], "Metadata_Site": ["1", "2", "1", "1"],
        "Metadata_Batch": ["Week1", "Week1", None, "Week2"], "Metadata_Compound": ["DMSO", "DMSO", "taxol", "taxol"],
        "Metadata_Concentration": [0.0, 0.0, np.nan, 3.0],
        "Metadata_MoA": [None, None, "Microtubule stabilizers", "Microtubule stabilizers"],
        "Metadata_ImageId": ["01J0A", "01J0B", "01J0C", "01J0D"], "Metadata_Cells": [12, 7, 30, 1],
        "Image_FileName_DAPI": ["a_d.tif", "b_d.tif", "c_d.tif", "d_d.tif"],
        "Image_PathName_DAPI": ["/data/Week1_1", "/data/Week1_1", "/data/Week1_1", "/data/Week2_9"]})
    features = pd.DataFrame(rng.normal(size=(4, 5)).astype(np.float32), columns=[f"emb_{i:03d}" for i in range(5)])
    return read_profiles(write_profiles(pd.concat([table, features], axis=1)))


METADATA = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Batch", "Metadata_Compound",
            "Metadata_Concentration", "Metadata_MoA", "Metadata_ImageId", "Metadata_Cells", "Image_FileName_DAPI",
            "Image_PathName_DAPI"]


def _plain(frame: pd.DataFrame) -> list[list[object]]:
    """A table's values row by row as plain Python values, every missing value None (categoricals, str and
    object columns, NaN and None compare alike)."""
    return [[None if pd.isna(v) else v for v in row] for row in frame.astype(object).itertuples(index=False)]


def _read_anndata(path: Path):
    import anndata

    return anndata.read_zarr(path) if path.suffix == ".zarr" else anndata.read_h5ad(path)


def test_image_columns_are_metadata_not_features(fields: pd.DataFrame) -> None:
    assert metadata_columns(fields) == METADATA
    assert feature_columns(fields) == [f"emb_{i:03d}" for i in range(5)]
    wells = aggregate(fields.drop(columns=["Metadata_Site", "Metadata_ImageId", "Metadata_Cells"]),
                      ["Metadata_Plate", "Metadata_Well"])
    assert wells["Image_FileName_DAPI"].tolist() == ["a_d.tif;b_d.tif", "c_d.tif", "d_d.tif"]
    assert feature_columns(wells) == feature_columns(fields)


def test_parquet_and_csv_exports_read_back_equal(tmp_path: Path, fields: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(read_profiles(write_profiles(fields)), fields)
    (tmp_path / "f.csv").write_bytes(write_profiles_csv(fields))
    back = pd.read_csv(tmp_path / "f.csv", dtype={"Metadata_Site": str, "Metadata_ImageId": str})
    assert back.columns.tolist() == fields.columns.tolist()
    assert _plain(back[METADATA]) == _plain(fields[METADATA])
    features = feature_columns(fields)
    assert np.array_equal(back[features].to_numpy(np.float32), fields[features].to_numpy())  # exact: %.17g


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_anndata_export_reads_back_equal(tmp_path: Path, fields: pd.DataFrame, suffix: str) -> None:
    path = write_profiles_anndata(fields, tmp_path / f"fields{suffix}")
    assert path.is_dir() == (suffix == ".zarr") and path.exists()
    adata = _read_anndata(path)
    features = feature_columns(fields)
    assert adata.X.dtype == np.float32 and adata.X.shape == (4, 5)
    assert np.allclose(adata.X, fields[features].to_numpy(np.float64), rtol=0, atol=1e-6)
    assert adata.var_names.tolist() == features
    assert adata.obs.columns.tolist() == METADATA and adata.obs_names.tolist() == ["0", "1", "2", "3"]
    assert _plain(adata.obs) == _plain(fields[METADATA])
    assert adata.obs["Metadata_Cells"].dtype == np.int64 and adata.obs["Metadata_Concentration"].dtype == np.float64
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"fields{suffix}"]  # no staging folder left behind


def test_anndata_export_strings_are_written_as_object(fields: pd.DataFrame) -> None:
    """anndata 0.12.6 cannot write pandas 3's str arrays; every string column, category and index goes in
    as object (categorical where a value repeats or is missing, as anndata's writers would make it)."""
    assert fields["Metadata_ImageId"].dtype != object  # pandas 3 reads strings as its str dtype
    adata = profiles_to_anndata(fields)
    obs = adata.obs
    assert obs.index.dtype == object and adata.var.index.dtype == object
    assert obs["Metadata_ImageId"].dtype == object and obs["Image_FileName_DAPI"].dtype == object  # all distinct
    assert obs["Metadata_Plate"].cat.categories.tolist() == ["Week1_1", "Week2_9"]
    assert all(obs[c].cat.categories.dtype == object for c in ("Metadata_Plate", "Metadata_Batch", "Metadata_MoA"))
    assert obs["Metadata_MoA"].isna().tolist() == [True, True, False, False]
    assert obs["Metadata_Cells"].tolist() == [12, 7, 30, 1]


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_anndata_export_replaces_an_output_only_once_the_new_one_is_complete(
        tmp_path: Path, fields: pd.DataFrame, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import anndata

    path = tmp_path / f"out{suffix}"
    write_profiles_anndata(fields.head(2), path)
    write_profiles_anndata(fields, path)  # an existing output (a Zarr directory too) is replaced
    assert _read_anndata(path).n_obs == 4

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(anndata.AnnData, "write_zarr" if suffix == ".zarr" else "write_h5ad", broken)
    with pytest.raises(OSError, match="disk full"):
        write_profiles_anndata(fields.head(1), path)
    assert _read_anndata(path).n_obs == 4 and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_anndata_export_refuses_what_it_cannot_write(tmp_path: Path, fields: pd.DataFrame,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plain.zarr").mkdir()
    (tmp_path / "plain.zarr" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="is a directory but not a Zarr store"):
        write_profiles_anndata(fields, tmp_path / "plain.zarr")
    assert (tmp_path / "plain.zarr" / "keep.txt").read_text() == "mine"
    with pytest.raises(InvalidInput, match="is a directory, not a file"):
        write_profiles_anndata(fields, tmp_path / "plain.zarr" / "..")
    with pytest.raises(InvalidInput, match="non-numeric feature column"):
        write_profiles_anndata(fields.assign(label=["x"] * 4), tmp_path / "bad.h5ad")
    monkeypatch.setitem(__import__("sys").modules, "anndata", None)  # not installed
    with pytest.raises(InvalidInput, match=r"needs the anndata package: pip install 'bioims\[ml\]'"):
        write_profiles_anndata(fields, tmp_path / "f.h5ad")


@pytest.mark.parametrize("suffix", [".parquet", ".h5ad", ".zarr"])
def test_pycytominer_reads_our_exports(tmp_path: Path, fields: pd.DataFrame, suffix: str) -> None:
    from pycytominer.cyto_utils.load import load_profiles

    path = tmp_path / f"fields{suffix}"
    if suffix == ".parquet":
        path.write_bytes(write_profiles(fields))
    else:
        write_profiles_anndata(fields, path)
    loaded = load_profiles(path)
    features = feature_columns(fields)
    assert loaded.columns.tolist() == fields.columns.tolist()
    assert [c for c in loaded.columns if c.startswith("Metadata_")] == METADATA[:-2]
    assert _plain(loaded[METADATA]) == _plain(fields[METADATA])
    assert np.allclose(loaded[features].to_numpy(np.float64), fields[features].to_numpy(np.float64), rtol=0, atol=1e-6)
    assert loaded.index.tolist() == [0, 1, 2, 3]


# ------------------------------------------------------------------ `bioims export`'s outputs
@pytest.fixture
def export(tmp_path: Path, fields: pd.DataFrame, monkeypatch: pytest.MonkeyPatch):
    """Run `bioims export RUN ARGS --json` in-process on a container whose run has ``fields`` as its
    field-level embeddings; returns (exit code, JSON or None, stderr)."""
    import json
    from types import SimpleNamespace

    from click.testing import CliRunner

    from bioims.cli import main
    from bioims.cli.base import Ctx
    from bioims.errors import NotFound

    def info(name: str) -> dict:
        raise NotFound(f"no profile set {name!r}")

    calls: list[tuple] = []

    def profiles(name: str, level: str, normalize: bool = True) -> pd.DataFrame:
        calls.append((name, level, normalize))
        return fields

    stub = SimpleNamespace(profiles=SimpleNamespace(info=info), embedding=SimpleNamespace(profiles=profiles))
    monkeypatch.setattr(Ctx, "container", property(lambda self: stub))
    monkeypatch.setenv("BIOIMS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)

    def run(*args: str):
        result = CliRunner().invoke(main, ["export", "RUN", *args, "--json"])
        return result.exit_code, json.loads(result.stdout) if result.exit_code == 0 else None, result.stderr

    run.calls = calls  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize("args, path, kind", [
    (["--out", "p.parquet"], "p.parquet", "parquet"), (["--out", "P.PQ"], "P.PQ", "parquet"),
    (["--out", "c.csv"], "c.csv", "csv"), (["--out", "a.h5ad"], "a.h5ad", "anndata"),
    (["--out", "z.zarr"], "z.zarr", "anndata"), (["--out", "x.bin", "--format", "anndata"], "x.bin", "anndata"),
    (["--out", "t.txt", "--format", "csv"], "t.txt", "csv"), (["--parquet", "s.parquet"], "s.parquet", "parquet"),
    (["--csv", "s.csv", "--format", "csv"], "s.csv", "csv")])
def test_export_writes_the_format_of_its_output(tmp_path: Path, fields: pd.DataFrame, export, args, path, kind):
    code, result, stderr = export(*args, "--level", "field")
    assert (code, stderr) == (0, "")
    assert result == {"path": path, "format": kind, "level": "field", "rows": 4, "features": 5}
    assert export.calls == [("RUN", "field", True)]
    features = feature_columns(fields)
    if kind == "parquet":
        pd.testing.assert_frame_equal(read_profiles(tmp_path / path), fields)
    elif kind == "csv":
        back = pd.read_csv(tmp_path / path)
        assert back.columns.tolist() == fields.columns.tolist()
        assert np.array_equal(back[features].to_numpy(np.float32), fields[features].to_numpy())
    else:
        import anndata

        adata = anndata.read_zarr(tmp_path / path) if path.endswith(".zarr") else anndata.read_h5ad(tmp_path / path)
        assert adata.var_names.tolist() == features and _plain(adata.obs) == _plain(fields[METADATA])


@pytest.mark.parametrize("args, message", [
    ([], "give one output: --out PATH (.parquet, .csv, .h5ad, .zarr), --parquet OUT.parquet or --csv OUT.csv"),
    (["--parquet", "a.parquet", "--csv", "a.csv"], "give one output, not both --parquet and --csv"),
    (["--out", "a.h5ad", "--parquet", "a.parquet"], "give one output, not both --out and --parquet"),
    (["--out", "profiles.txt"], "cannot tell the format of profiles.txt from its suffix .txt: name it .parquet, "
                                ".pq, .csv, .h5ad, .zarr or give --format parquet|anndata|csv"),
    (["--out", "profiles"], "cannot tell the format of profiles from its suffix (none)"),
    (["--parquet", "a.parquet", "--format", "csv"],
     "--parquet writes parquet, not --format csv; use --out a.parquet --format csv"),
    (["--out", ".", "--format", "parquet"], ". is a directory, not a file")])
def test_export_refuses_a_missing_double_or_unknown_output_in_one_line(export, args, message):
    code, _, stderr = export(*args)
    assert code == 1 and stderr.startswith(f"error: {message}") and stderr.count("\n") == 1, stderr
    assert export.calls == []  # refused before reading any profile


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
