"""Read and write profile tables, and load CellProfiler feature tables in pycytominer's conventions.

Conventions (the contract between the profile verbs): every column prefixed ``Metadata_`` is metadata,
every other column a numeric feature. Well-level tables produced by :func:`load_feature_table` carry
``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Compound``, ``Metadata_Concentration``,
``Metadata_Batch`` and, with an MOA table, ``Metadata_MoA``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

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


def feature_columns(profiles: pd.DataFrame) -> list[str]:
    """Every column not prefixed ``Metadata_``, in table order."""
    return [c for c in profiles.columns if not str(c).startswith("Metadata_")]


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
        pycytominer-style (``Metadata_Plate``, ``Metadata_Well``; every non-``Metadata_`` column is a
        feature, other ``Metadata_*`` columns are ignored in favour of the metadata table).
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
