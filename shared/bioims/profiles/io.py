"""Read and write profile tables, and load CellProfiler feature tables in pycytominer's conventions.

Conventions (the contract between the profile verbs): every column prefixed ``Metadata_`` (pycytominer's
metadata) or ``Image_`` (CytoTable's and CellProfiler's per-image columns, e.g. ``Image_FileName_<Channel>``
and ``Image_PathName_<Channel>``) is metadata, every other column a numeric feature. Well-level tables
produced by :func:`load_feature_table` carry ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Compound``, ``Metadata_Concentration``,
``Metadata_Batch`` and, with an MOA table, ``Metadata_MoA``.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from ..store.objects import uri_to_path

PLATE, WELL, COMPOUND, CONCENTRATION, MOA, BATCH = (
    "Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration", "Metadata_MoA",
    "Metadata_Batch")
TREATMENT = (COMPOUND, CONCENTRATION)
#: Feature prefixes of a BBBC021-style (CellProfiler per-object-table) features CSV.
CELLPROFILER_PREFIXES = ("Cells_", "Cytoplasm_", "Nuclei_")
#: BBBC021 column name -> pycytominer column name, per kind of table.
BBBC021_FEATURE_KEYS = {"Image_Metadata_Plate": PLATE, "Image_Metadata_Well": WELL}
BBBC021_IMAGE_KEYS = {"Image_Metadata_Plate_DAPI": PLATE, "Image_Metadata_Well_DAPI": WELL,
                      "Image_Metadata_Compound": COMPOUND, "Image_Metadata_Concentration": CONCENTRATION}
MOA_KEYS = {"compound": COMPOUND, "concentration": CONCENTRATION, "moa": MOA}
#: Prefixes of the metadata columns: pycytominer's ``Metadata_`` and CytoTable's ``Image_`` (the per-image
#: columns, such as ``Image_FileName_<Channel>`` / ``Image_PathName_<Channel>``). Every other column is a feature.
METADATA_PREFIXES = ("Metadata_", "Image_")


def feature_columns(profiles: pd.DataFrame) -> list[str]:
    """Every column not prefixed ``Metadata_`` or ``Image_`` (:data:`METADATA_PREFIXES`), in table order."""
    return [c for c in profiles.columns if not str(c).startswith(METADATA_PREFIXES)]


def metadata_columns(profiles: pd.DataFrame) -> list[str]:
    """Every column prefixed ``Metadata_`` or ``Image_`` (:data:`METADATA_PREFIXES`), in table order."""
    return [c for c in profiles.columns if str(c).startswith(METADATA_PREFIXES)]


def require_columns(profiles: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> None:
    """Raise :class:`InvalidInput` naming the ``columns`` absent from ``profiles``."""
    missing = [c for c in columns if c not in profiles.columns]
    if missing:
        raise InvalidInput(f"profiles lack column(s) {', '.join(missing)}")


def write_profiles(profiles: pd.DataFrame) -> bytes:
    """Serialise a profile table to Parquet bytes (pyarrow, index dropped, column order kept)."""
    import pyarrow as pa  # imported here: the Lambda services load this module without pyarrow
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(profiles, preserve_index=False), sink)
    return sink.getvalue()


def write_profiles_csv(profiles: pd.DataFrame) -> bytes:
    """Serialise a profile table to CSV bytes (UTF-8, a header row, index dropped, column order kept, floats
    written exactly: ``pandas.read_csv`` gives the same table back).

    >>> table = pd.DataFrame({"Metadata_Well": ["B02"], "emb_000": [0.1 + 0.2]})
    >>> pd.read_csv(io.BytesIO(write_profiles_csv(table))).equals(table)
    True
    """
    return profiles.to_csv(index=False, float_format="%.17g").encode("utf-8")


def require_anndata() -> Any:
    """The ``anndata`` module, imported here (the Lambda services load this module without it); raises
    :class:`InvalidInput` if it is not installed."""
    try:
        import anndata
    except ImportError:
        raise InvalidInput("AnnData export needs the anndata package: pip install 'bioims[ml]'") from None
    return anndata


def profiles_to_anndata(profiles: pd.DataFrame) -> Any:
    """A profile table as an :class:`anndata.AnnData` (pycytominer's and CytoTable's layout).

    Parameters
    ----------
    profiles : DataFrame
        (N, M + F): ``Metadata_*`` / ``Image_*`` columns and F numeric features.

    Returns
    -------
    anndata.AnnData
        ``X``: the features as float32 (N, F); ``var_names``: the F feature names; ``obs``: the M metadata
        columns in table order (numeric and boolean columns as they are, every other column as strings, a
        categorical where a value is missing or not a string); ``obs_names``: the row numbers ``"0"`` ...
        ``"N-1"`` (pycytominer's ``load_profiles`` turns them back into an integer index, so a stable id
        such as ``Metadata_ImageId`` stays a column of ``obs``).

    Raises
    ------
    InvalidInput
        anndata is not installed, or a feature is not numeric.
    """
    anndata = require_anndata()
    features = feature_columns(profiles)
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(profiles[c])]
    if non_numeric:
        raise InvalidInput(f"non-numeric feature column(s): {', '.join(map(str, non_numeric[:5]))}")
    x = profiles[features].to_numpy(dtype=np.float32)
    # anndata 0.12.6 (the last release that does not cap pandas < 3) has no writer for pandas 3's default
    # string dtype (IORegistryError: No method registered for writing ArrowStringArray): every string
    # column, categorical category and index goes in as ``object``, and the writers are told not to turn
    # strings into categoricals themselves (theirs would have str categories).
    names = pd.Index([str(i) for i in range(len(profiles))], dtype=object)
    obs = pd.DataFrame({c: _obs_column(profiles[c], names) for c in metadata_columns(profiles)}, index=names)
    var = pd.DataFrame(index=pd.Index([str(c) for c in features], dtype=object))
    return anndata.AnnData(X=x, obs=obs, var=var)


def _obs_column(values: pd.Series, index: pd.Index) -> pd.Series:
    """A metadata column on ``index`` as anndata 0.12.6 writes it under pandas 3: numbers and booleans
    unchanged (pandas' nullable arrays too); strings as ``object``, as a categorical (whose categories are
    ``object``) where a value repeats (anndata's own convention), is missing (it stays missing) or is not a
    string (its ``str``)."""
    if not isinstance(values.dtype, pd.CategoricalDtype) and (
            pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        array = values.array
        nullable = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)
        return pd.Series(array if isinstance(array, nullable) else values.to_numpy(), index=index)
    items = values.astype(object).to_numpy()
    missing = pd.isna(items)
    strings = np.array([None if m else v if isinstance(v, str) else str(v) for v, m in zip(items, missing)],
                       dtype=object)
    distinct = set(strings[~missing])
    if missing.any() or len(distinct) < len(strings) or any(not isinstance(v, str) for v in items[~missing]):
        return pd.Series(pd.Categorical(strings, categories=pd.Index(sorted(distinct), dtype=object)), index=index)
    return pd.Series(strings, index=index, dtype=object)  # dtype given: pandas 3 would infer its str dtype


def write_profiles_anndata(profiles: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a profile table as AnnData (:func:`profiles_to_anndata`): an ``.h5ad`` file, or a Zarr store (a
    directory) where ``path`` ends ``.zarr``.

    The output is written beside ``path`` (a hidden temporary folder in the same directory) and renamed
    over it once complete: readers see the old output or the new one, never a partial one; an existing
    Zarr directory is moved aside, replaced, then deleted.

    Parameters
    ----------
    profiles : DataFrame
        (N, M + F): ``Metadata_*`` / ``Image_*`` columns and F numeric features.
    path : path
        ``*.zarr``: a Zarr store (``AnnData.write_zarr``); anything else: HDF5 (``AnnData.write_h5ad``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InvalidInput
        anndata is not installed, a feature is not numeric, or ``path`` is a directory other than a Zarr
        store (which is never deleted).
    """
    path = Path(path)
    zarr = path.suffix.lower() == ".zarr"
    if path.is_dir() and not (zarr and _is_zarr_store(path)):
        raise InvalidInput(f"{path} is a directory but not a Zarr store: not replaced" if zarr
                           else f"{path} is a directory, not a file")
    adata = profiles_to_anndata(profiles)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        new = staging / path.name
        if zarr:
            adata.write_zarr(new, convert_strings_to_categoricals=False)  # done: profiles_to_anndata
        else:
            adata.write_h5ad(new, convert_strings_to_categoricals=False)
            with open(new, "rb+") as f:
                os.fsync(f.fileno())
        _replace(new, path, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _is_zarr_store(path: Path) -> bool:
    """Whether the directory ``path`` is the root of a Zarr store (v3 ``zarr.json``, v2 ``.zgroup``)."""
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


def _replace(new: Path, path: Path, staging: Path) -> None:
    """Rename ``new`` over ``path``; an existing directory (or a file where ``new`` is a directory), which
    ``os.replace`` cannot overwrite, is first moved into ``staging`` (and put back if the rename fails)."""
    if not (path.exists() or path.is_symlink()) or (new.is_file() and path.is_file()):
        os.replace(new, path)
        return
    old = staging / ".old"
    os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise


def read_profiles(source: bytes | str | os.PathLike[str]) -> pd.DataFrame:
    """Read a Parquet profile table from bytes, a local path or a ``file://`` URI.

    ``s3://`` objects are read as bytes through :class:`bioims.store.objects.ObjectStore` first.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = uri_to_path(os.fspath(source))
        if not path.is_file():
            raise InvalidInput(f"no profile file at {source}")
        data = path.read_bytes()
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(data)).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"not a Parquet profile table: {exc}") from None


def load_feature_table(features_csv: str | os.PathLike[str], metadata_csv: str | os.PathLike[str],
                       moa_csv: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Join well-level features with their plate map (and MOA annotations) into one profile table.

    Parameters
    ----------
    features_csv : path
        One row per well. Either BBBC021-style (``Image_Metadata_Plate``, ``Image_Metadata_Well`` and
        ``Cells_*`` / ``Cytoplasm_*`` / ``Nuclei_*`` features; other columns are ignored) or
        pycytominer-style (``Metadata_Plate``, ``Metadata_Well``; every column not prefixed ``Metadata_``
        or ``Image_`` is a feature, other metadata columns are ignored in favour of the metadata table).
    metadata_csv : path
        Either the BBBC021 image table (``Image_Metadata_Plate_DAPI``, ``Image_Metadata_Well_DAPI``,
        ``Image_Metadata_Compound``, ``Image_Metadata_Concentration``; one row per field) or a
        CellProfiler LoadData / platemap table (``Metadata_Plate``, ``Metadata_Well``,
        ``Metadata_Compound``, ``Metadata_Concentration``, optional ``Metadata_Batch``,
        ``Metadata_MoA``). Rows are reduced to one per (plate, well); a well listed with two different
        treatments is an error.
    moa_csv : path, optional
        ``compound, concentration, moa`` (BBBC021_v1_moa.csv). Joined on the compound and the
        concentration, equal within ``rtol=1e-6, atol=1e-9``; as in the cytominergallery reference,
        wells whose treatment has no MOA row are dropped (inner join).

    Returns
    -------
    DataFrame
        One row per well present in both tables (and annotated, with ``moa_csv``): ``Metadata_Plate``,
        ``Metadata_Well``, ``Metadata_Compound``, ``Metadata_Concentration`` (float),
        ``Metadata_Batch`` (the metadata's own column, else the plate name up to its first ``_``:
        ``Week4_27481`` -> ``Week4``), ``Metadata_MoA`` (with ``moa_csv`` or a metadata column), then
        the features in file order; rows in the features file's order.

    Raises
    ------
    InvalidInput
        A file is missing or unreadable, a required column is absent, a feature is not numeric, a well
        or treatment is ambiguous, or the tables have no well (or treatment) in common.
    """
    features = _features_table(_read_csv(features_csv, "features"))
    metadata = _metadata_table(_read_csv(metadata_csv, "metadata"))
    wells = features[[PLATE, WELL]].merge(metadata, on=[PLATE, WELL], how="inner")
    if wells.empty:
        raise InvalidInput(f"{features_csv} and {metadata_csv} have no (plate, well) in common")
    if moa_csv is not None:
        wells = _join_moa(wells.drop(columns=[MOA], errors="ignore"), _read_csv(moa_csv, "MOA"))
        if wells.empty:
            raise InvalidInput(f"no treatment of {metadata_csv} is annotated in {moa_csv}")
    if BATCH not in wells:
        wells[BATCH] = wells[PLATE].str.split("_", n=1).str[0]
    meta = [c for c in (PLATE, WELL, COMPOUND, CONCENTRATION, BATCH, MOA) if c in wells]
    return wells[meta].merge(features, on=[PLATE, WELL], how="left").copy()


def _read_csv(path: str | os.PathLike[str], what: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise InvalidInput(f"{what} file not found: {path}")
    try:
        return pd.read_csv(path, low_memory=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {what} file {path}: {exc}") from None


def _features_table(table: pd.DataFrame) -> pd.DataFrame:
    if set(BBBC021_FEATURE_KEYS) <= set(table.columns):
        table = table.rename(columns=BBBC021_FEATURE_KEYS)
        features = [c for c in table.columns if str(c).startswith(CELLPROFILER_PREFIXES)]
    else:
        require_columns(table, [PLATE, WELL])
        features = feature_columns(table)
    if not features:
        raise InvalidInput("the features file has no feature column")
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise InvalidInput(f"non-numeric feature column(s): {', '.join(map(str, non_numeric[:5]))}")
    table = table[[PLATE, WELL, *features]].astype({PLATE: str, WELL: str})
    if table.duplicated([PLATE, WELL]).any():
        raise InvalidInput("the features file lists a (plate, well) more than once")
    return table


def _metadata_table(table: pd.DataFrame) -> pd.DataFrame:
    if set(BBBC021_IMAGE_KEYS) <= set(table.columns):
        table = table.rename(columns=BBBC021_IMAGE_KEYS)
    require_columns(table, [PLATE, WELL, COMPOUND, CONCENTRATION])
    columns = [c for c in (PLATE, WELL, COMPOUND, CONCENTRATION, BATCH, MOA) if c in table]
    table = table[columns].drop_duplicates().astype({PLATE: str, WELL: str, COMPOUND: str})
    table[CONCENTRATION] = _numeric(table[CONCENTRATION], CONCENTRATION)
    if table.duplicated([PLATE, WELL]).any():
        raise InvalidInput("the metadata file gives a (plate, well) two different treatments")
    return table


def _join_moa(wells: pd.DataFrame, moa: pd.DataFrame) -> pd.DataFrame:
    require_columns(moa, list(MOA_KEYS))
    moa = moa.rename(columns=MOA_KEYS)[list(MOA_KEYS.values())].astype({COMPOUND: str, MOA: str})
    moa[CONCENTRATION] = _numeric(moa[CONCENTRATION], "MOA concentration")
    pairs = wells.reset_index(names="_row").merge(moa, on=COMPOUND, suffixes=("", "_moa"))
    pairs = pairs[np.isclose(pairs[CONCENTRATION], pairs[f"{CONCENTRATION}_moa"], rtol=1e-6, atol=1e-9)]
    if pairs["_row"].duplicated().any():
        raise InvalidInput("the MOA file annotates a treatment more than once")
    return pairs.sort_values("_row").drop(columns=["_row", f"{CONCENTRATION}_moa"]).reset_index(drop=True)


def _numeric(values: pd.Series, what: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any():
        raise InvalidInput(f"{what} must be numeric; got {values[numbers.isna()].iloc[0]!r}")
    return numbers.astype(np.float64)
