"""Read a CellProfiler LoadData CSV, or the BBBC021 image CSV, into plate records.

Two column dialects are understood; which one is used is decided by the file-name columns:

* BBBC021 (``Image_`` prefix): ``Image_FileName_<Ch>``, ``Image_PathName_<Ch>``,
  ``Image_Metadata_Plate_<Ch>``, ``Image_Metadata_Well_<Ch>``, ``Image_Metadata_Compound``,
  ``Image_Metadata_Concentration``, ``Replicate``.
* CellProfiler LoadData (no prefix): ``FileName_<Ch>``, ``PathName_<Ch>``, ``Metadata_Plate``,
  ``Metadata_Well``, ``Metadata_Site`` (or ``Metadata_Field``), ``Metadata_Compound``,
  ``Metadata_Concentration``, ``Metadata_MoA``, ``Metadata_Batch``, ``Metadata_Replicate``.

A metadata column may carry a channel suffix (``Image_Metadata_Plate_DAPI``); the first channel's column
is used. Every other ``Metadata_*`` column is kept as a string under its name without the prefix.

The helpers :func:`read_csv_table`, :func:`line_numbers`, :func:`typed_metadata`, :func:`metadata_rows`,
:func:`plate_records` and :func:`location_uri` are shared with the other importers (:mod:`.folder`,
:mod:`.manifest`).
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from ..errors import InvalidInput
from ..imaging.io import channel_ref
from ..names import check_name
from ..store.objects import uri_to_path
from .records import METADATA_KEYS, FieldRecord, PlateRecord, expand_ome_tiff

BATCH_PATTERN = re.compile(r"^(Week\d+)_")
"""The batch of a plate named like ``Week4_27481`` is its ``WeekN`` prefix."""

_SITE_IN_FILENAME = r"(?:^|_)(s\d+)(?=_|\.|w\d)"
"""``G10_s1_w1BEDC2073-....tif`` -> ``s1`` (ImageXpress / BBBC021 file names)."""

_KNOWN_KEYS = ("plate", "well", "site", "field", *METADATA_KEYS)
_CONCENTRATION_RTOL = 1e-6
_CONCENTRATION_ATOL = 1e-12


# ---------------------------------------------------------------------------------------- shared helpers
def read_csv_table(path: str | Path, what: str) -> pd.DataFrame:
    """Read a CSV file (compression inferred from the suffix) with every cell as a string.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        How error messages name the file, e.g. ``"LoadData CSV"``.

    Returns
    -------
    DataFrame
        Column names and cells stripped of surrounding whitespace; empty cells are ``""``. The index is
        the row's position, so a row's line number in the file is ``index + 2``.

    Raises
    ------
    InvalidInput
        The file does not exist, cannot be read, is empty or is not a CSV.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"{what} {path} does not exist")
    if not path.is_file():
        raise InvalidInput(f"{what} {path} is not a file")
    try:
        table = pd.read_csv(path, dtype=str, na_filter=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"{what} {path} is empty") from None
    except ValueError as e:  # ParserError, UnicodeDecodeError
        raise InvalidInput(f"{what} {path} is not a CSV file: {e}") from None
    except (OSError, EOFError, zlib.error) as e:  # permissions, corrupt gzip
        raise InvalidInput(f"{what} {path} cannot be read: {e}") from None
    if not isinstance(table.index, pd.RangeIndex):  # pandas made the surplus first column the index
        raise InvalidInput(f"{what} {path} is not a CSV file: its rows have more fields than its header")
    table.columns = [str(c).strip() for c in table.columns]
    return table.apply(lambda column: column.str.strip())


def line_numbers(table: pd.DataFrame, mask: pd.Series) -> list[int]:
    """File line numbers (header = line 1) of the rows of a :func:`read_csv_table` frame where ``mask``."""
    return [int(i) + 2 for i in table.index[mask.to_numpy()]]


def typed_metadata(table: pd.DataFrame, columns: dict[str, str], what: str) -> dict[str, list[Any]]:
    """Convert metadata columns to Python values: ``concentration`` float, ``replicate`` int, others str.

    Parameters
    ----------
    table : DataFrame
        A frame from :func:`read_csv_table`.
    columns : dict of str to str
        Metadata key -> column of ``table``.
    what : str
        How error messages name the file, e.g. ``"LoadData CSV data/x.csv"``.

    Returns
    -------
    dict of str to list
        Metadata key -> one value per row, ``None`` where the cell is empty.

    Raises
    ------
    InvalidInput
        A concentration is not a number or a replicate not an integer (message names the line).
    """
    values: dict[str, list[Any]] = {}
    for key, column in columns.items():
        raw = table[column]
        present = raw != ""
        if key in ("concentration", "replicate"):
            numbers = pd.to_numeric(raw.where(present), errors="coerce")
            bad = present & numbers.isna()
            if key == "replicate":
                bad |= numbers.notna() & (numbers % 1 != 0)
            if bad.any():
                line = line_numbers(table, bad)[0]
                kind = "a number" if key == "concentration" else "an integer"
                raise InvalidInput(f"{what}: line {line}: {column} {raw[bad].iloc[0]!r} is not {kind}")
            if key == "replicate":
                numbers = numbers.astype("Int64")
            values[key] = numbers.astype(object).where(numbers.notna(), None).tolist()
        else:
            values[key] = raw.astype(object).where(present, None).tolist()
    return values


def metadata_rows(values: dict[str, list[Any]], rows: int) -> list[dict[str, Any]]:
    """Per-row metadata dicts from :func:`typed_metadata` columns, leaving out the ``None`` values."""
    metadata: list[dict[str, Any]] = [{} for _ in range(rows)]
    for key, column in values.items():
        for row, value in zip(metadata, column):
            if value is not None:
                row[key] = value
    return metadata


def location_uri(location: str, root: str | Path) -> str:
    """URI of a file or folder given as a URI, an absolute path or a path relative to ``root``.

    Parameters
    ----------
    location : str
        ``s3://...`` or ``file://...`` (returned as-is), an absolute local path, or a relative path.
    root : str or Path
        What relative locations are under: a local folder (plain path or ``file://`` URI) or an
        ``s3://bucket/prefix`` URI. Local paths are made absolute and normalised, but symlinks are not
        resolved and nothing is checked for existence.

    Returns
    -------
    str
        ``file:///abs/path`` (percent-quoted) or ``s3://bucket/key``.

    Examples
    --------
    >>> location_uri("Week1/Week1_22123", "s3://bucket/bbbc021")
    's3://bucket/bbbc021/Week1/Week1_22123'
    >>> location_uri("../b c", "/data/a")
    'file:///data/b%20c'
    """
    if "://" in location:
        return location.rstrip("/")
    root = str(root)
    if root.startswith("s3://") and not os.path.isabs(location):
        key = posixpath.normpath(location) if location else "."
        if key == ".." or key.startswith("../"):
            raise InvalidInput(f"path {location!r} leaves the root {root}")
        return root.rstrip("/") if key == "." else f"{root.rstrip('/')}/{key}"
    if root.startswith("file://"):
        root = str(uri_to_path(root))
    return Path(os.path.abspath(os.path.join(root, location))).as_uri()


def plate_records(
    fields: dict[str, list[FieldRecord]], channels: tuple[str, ...], experiment: str
) -> list[PlateRecord]:
    """Plate records from plate name -> fields; a plate's batch is its fields' batch if they all agree."""
    records = []
    for plate, plate_fields in fields.items():
        batches = {f.metadata.get("batch") for f in plate_fields}
        records.append(
            PlateRecord(
                source_id=plate,
                channels=channels,
                fields=tuple(plate_fields),
                experiment=experiment,
                batch=batches.pop() if len(batches) == 1 else None,
            )
        )
    return records


# ---------------------------------------------------------------------------------------- MOA table
def read_moa_table(path: str | Path) -> dict[str, list[tuple[float, str]]]:
    """Read a ``compound, concentration, moa`` CSV (as ``BBBC021_v1_moa.csv``).

    Returns
    -------
    dict of str to list of (float, str)
        Compound -> its ``(concentration, moa)`` entries, each treatment once.

    Raises
    ------
    InvalidInput
        Unreadable file, missing column, empty or non-numeric cell, or two different MOAs for the same
        (compound, concentration).
    """
    what = f"MOA CSV {path}"
    table = read_csv_table(path, "MOA CSV")
    by_name = {c.lower(): c for c in table.columns}
    missing = [c for c in ("compound", "concentration", "moa") if c not in by_name]
    if missing:
        raise InvalidInput(f"{what} is missing required column(s): {', '.join(missing)}")
    columns = {key: by_name[key] for key in ("compound", "concentration", "moa")}
    for column in columns.values():
        empty = table[column] == ""
        if empty.any():
            raise InvalidInput(f"{what}: line {line_numbers(table, empty)[0]}: empty {column}")
    values = typed_metadata(table, columns, what)
    entries: dict[str, list[tuple[float, str]]] = {}
    for row, compound, concentration, moa in zip(
        table.index, values["compound"], values["concentration"], values["moa"]
    ):
        known = entries.setdefault(compound, [])
        other = _find_moa(known, concentration)
        if other is None:
            known.append((concentration, moa))
        elif other != moa:
            raise InvalidInput(
                f"{what}: line {row + 2}: conflicting MOA for compound {compound!r} at concentration "
                f"{concentration:g}: {other!r} and {moa!r}"
            )
    return entries


def _find_moa(entries: list[tuple[float, str]], concentration: float) -> str | None:
    for known, moa in entries:
        if math.isclose(known, concentration, rel_tol=_CONCENTRATION_RTOL, abs_tol=_CONCENTRATION_ATOL):
            return moa
    return None


# ---------------------------------------------------------------------------------------- LoadData
def read_loaddata(
    csv: str | Path,
    *,
    moa_csv: str | Path | None = None,
    root: str | Path | None = None,
    experiment: str = "default",
) -> list[PlateRecord]:
    """Parse and validate a LoadData-style CSV (one row per field of view) into plates.

    Parameters
    ----------
    csv : str or Path
        The image CSV; ``.gz`` / ``.zip`` / ``.bz2`` / ``.xz`` compression is inferred from the suffix.
    moa_csv : str or Path, optional
        A ``compound, concentration, moa`` table joined on (compound, concentration), concentrations
        matched numerically (relative tolerance 1e-6). Its MOA takes precedence over a MoA column of
        ``csv``; treatments it does not list keep the column's value, or get no ``moa`` key.
    root : str or Path, optional
        What relative ``PathName`` values are under: a local folder or an ``s3://bucket/prefix`` URI.
        Default: the CSV's folder. Absolute path names are used as-is; files are not checked.
    experiment : str
        Passed through to every :class:`PlateRecord`.

    Returns
    -------
    list of PlateRecord
        Plates in order of first appearance, fields in CSV order. Channels are the ``FileName`` columns
        in column order. A field's site is the ``Metadata_Site`` / ``Metadata_Field`` value, else the
        ``s<N>`` token of its first channel's file name (when every row has one), else ``f<N>``, its
        ordinal within the (plate, well). Field metadata: ``compound`` (str), ``concentration``
        (float), ``replicate`` (int), ``moa`` (str), ``batch`` (str: the Batch column, else the plate
        name's ``WeekN`` prefix) when known, plus every other metadata column (str). A plate's batch is
        its fields' batch when they all agree, else None.

    Raises
    ------
    InvalidInput
        Missing, unreadable or non-CSV file; no file-name columns; a channel with a ``PathName`` but no
        ``FileName`` column, or without the ``PathName`` column the other channels have; a channel that is
        not a name (:mod:`bioims.names`); missing plate or well column; an empty file name, plate or well
        cell; a bad concentration or replicate; a duplicate (plate, well,
        site); a bad MOA table, or an MOA table with no compound / concentration column to join on.

    Examples
    --------
    >>> plates = read_loaddata("BBBC021_v1_image.csv.gz", moa_csv="BBBC021_v1_moa.csv",
    ...                        root="s3://bucket/bbbc021")  # doctest: +SKIP
    >>> plates[0].source_id, plates[0].channels  # doctest: +SKIP
    ('Week4_27481', ('DAPI', 'Tubulin', 'Actin'))
    """
    what = f"LoadData CSV {csv}"
    table = read_csv_table(csv, "LoadData CSV")
    if table.empty:
        raise InvalidInput(f"{what} has no data rows")
    prefix, channels = _dialect(table, what)
    columns = _metadata_columns(list(table.columns), prefix, channels)
    missing = [f"{prefix}Metadata_{key.title()}" for key in ("plate", "well") if key not in columns]
    if missing:
        raise InvalidInput(f"{what} is missing required column(s): {', '.join(missing)}")
    file_columns = [f"{prefix}FileName_{ch}" for ch in channels]
    site_column, field_column = columns.pop("site", None), columns.pop("field", None)
    site_column = site_column or field_column
    required = [*file_columns, columns["plate"], columns["well"], *([site_column] if site_column else [])]
    for column in required:
        empty = table[column] == ""
        if empty.any():
            raise InvalidInput(f"{what}: line {line_numbers(table, empty)[0]}: empty {column}")

    plates = table[columns.pop("plate")]
    wells = table[columns.pop("well")]
    sites = table[site_column] if site_column else _sites(table[file_columns[0]], plates, wells)
    _check_unique(table, plates, wells, sites, what)

    base = root if root is not None else os.path.dirname(os.path.abspath(csv))
    uris = [_channel_uris(table, prefix, ch, base, what) for ch in channels]
    whole = len(channels) == 1 and f"{prefix}Frame_{channels[0]}" not in table.columns  # a file per field

    metadata = typed_metadata(table, columns, what)
    derived = plates.str.extract(BATCH_PATTERN, expand=False)
    if "batch" in metadata:
        derived = pd.Series(metadata["batch"], index=table.index, dtype=object).fillna(derived)
    metadata["batch"] = derived.astype(object).where(derived.notna(), None).tolist()
    if moa_csv is not None:
        metadata["moa"] = _join_moa(read_moa_table(moa_csv), metadata, len(table), what)
    known = {key: metadata.pop(key) for key in METADATA_KEYS if key in metadata}

    fields: dict[str, list[FieldRecord]] = {}
    found: tuple[str, ...] | None = None
    for line, plate, well, site, files, meta in zip(
        line_numbers(table, pd.Series(True, index=table.index)),
        plates.tolist(),
        wells.tolist(),
        sites.tolist(),
        zip(*(u.tolist() for u in uris)),
        metadata_rows(known | metadata, len(table)),
    ):
        channel_uris = dict(zip(channels, files))
        if whole:  # one multi-channel OME-TIFF per field: its OME-XML names the channels
            channel_uris = expand_ome_tiff(channel_uris, f"{what}: line {line}")
            found = found or tuple(channel_uris)
            if tuple(channel_uris) != found:
                raise InvalidInput(f"{what}: line {line}: the file has channels {list(channel_uris)}, the first "
                                   f"row's {list(found)}")
        fields.setdefault(plate, []).append(
            FieldRecord(well=well, site=site, channel_uris=channel_uris, metadata=meta)
        )
    return plate_records(fields, found or channels, experiment)


def _dialect(table: pd.DataFrame, what: str) -> tuple[str, tuple[str, ...]]:
    """Column prefix (``"Image_"`` or ``""``) and channel names, from the file-name columns.

    Every channel a ``FileName_`` or ``PathName_`` column names must have its ``FileName_`` column, and
    its ``PathName_`` column when other channels have one (a channel is never silently dropped or
    looked for in the wrong folder); every channel must be a name (:mod:`bioims.names`)."""
    for prefix in ("Image_", ""):
        names, paths = (_suffixes(table.columns, f"{prefix}{kind}_") for kind in ("FileName", "PathName"))
        if not names and not paths:
            continue
        lost = [c for c in paths if c not in names]
        if lost:
            raise InvalidInput(f"{what} has {prefix}PathName_{lost[0]} but no {prefix}FileName_{lost[0]} column: "
                               f"channel {lost[0]!r} has no files (file-name columns: "
                               f"{', '.join(f'{prefix}FileName_{c}' for c in names) or 'none'})")
        unplaced = [c for c in names if paths and c not in paths]
        if unplaced:
            raise InvalidInput(f"{what} has {prefix}FileName_{unplaced[0]} but no {prefix}PathName_{unplaced[0]} "
                               f"column, while channels {', '.join(paths)} have one")
        for channel in names:  # a channel names a file of the store (bioims.store.keys)
            check_name(channel, f"{what}: column {prefix}FileName_{channel}: channel")
        return prefix, names
    raise InvalidInput(f"{what} has no FileName_<channel> or Image_FileName_<channel> columns")


def _suffixes(columns: Any, head: str) -> tuple[str, ...]:
    """The ``<channel>`` of every column named ``<head><channel>``, in column order."""
    return tuple(c[len(head) :] for c in columns if c.startswith(head) and len(c) > len(head))


def _metadata_columns(columns: list[str], prefix: str, channels: tuple[str, ...]) -> dict[str, str]:
    """Metadata key -> column. Known keys are lower-cased (``Metadata_MoA`` -> ``moa``); a key with a
    channel suffix (``Image_Metadata_Plate_DAPI``) comes from the unsuffixed column, else the first
    channel's. A bare ``Replicate`` column (BBBC021) is the replicate when no metadata column is."""
    head = f"{prefix}Metadata_"
    found: dict[str, tuple[int, str]] = {}
    for column in columns:
        if not column.startswith(head) or len(column) == len(head):
            continue
        name, rank = column[len(head) :], 0
        for i, channel in enumerate(channels, start=1):
            if name.endswith(f"_{channel}"):
                name, rank = name[: -len(channel) - 1], i
                break
        key = name.lower() if name.lower() in _KNOWN_KEYS else name
        if key not in found or rank < found[key][0]:
            found[key] = (rank, column)
    metadata = {key: column for key, (_, column) in found.items()}
    bare = [c for c in columns if c.lower() == "replicate"]
    if "replicate" not in metadata and bare:
        metadata["replicate"] = bare[0]
    return metadata


def _sites(filenames: pd.Series, plates: pd.Series, wells: pd.Series) -> pd.Series:
    """``s<N>`` from the file names when every row has one, else ``f<N>`` (ordinal in its well)."""
    sites = filenames.str.extract(_SITE_IN_FILENAME, expand=False)
    if sites.notna().all():
        return sites
    ordinal = pd.DataFrame({"plate": plates, "well": wells}).groupby(["plate", "well"], sort=False).cumcount()
    return "f" + (ordinal + 1).astype(str)


def _check_unique(
    table: pd.DataFrame, plates: pd.Series, wells: pd.Series, sites: pd.Series, what: str
) -> None:
    keys = pd.DataFrame({"plate": plates, "well": wells, "site": sites})
    duplicated = keys.duplicated(keep=False)
    if duplicated.any():
        plate, well, site = keys[duplicated].iloc[0]
        same = (keys["plate"] == plate) & (keys["well"] == well) & (keys["site"] == site)
        first, second = line_numbers(table, same)[:2]
        raise InvalidInput(
            f"{what}: duplicate field plate {plate!r} well {well!r} site {site!r} "
            f"on lines {first} and {second}"
        )


def _channel_uris(table: pd.DataFrame, prefix: str, channel: str, base: str | Path, what: str) -> pd.Series:
    """URI of every row's image of one channel: ``base / PathName / FileName``, with CellProfiler's
    ``Series_`` and ``Frame_`` columns (a channel of a multi-channel file) as a fragment ``#s=M&c=N``."""
    names = table[f"{prefix}FileName_{channel}"]
    path_column = f"{prefix}PathName_{channel}"
    folders = table[path_column] if path_column in table.columns else pd.Series("", index=table.index)
    folder_uris = folders.map({folder: location_uri(folder, base) for folder in folders.unique()})
    is_file_uri = folder_uris.str.startswith("file://")
    if is_file_uri.any():
        names = names.where(~is_file_uri, names[is_file_uri].map(quote))
    uris = folder_uris + "/" + names
    frame, series = (f"{prefix}{kind}_{channel}" for kind in ("Frame", "Series"))
    if frame not in table.columns and series not in table.columns:
        return uris
    frames, series_ = (_indices(table, column, what) for column in (frame, series))
    return pd.Series([channel_ref(u, c, s) for u, c, s in zip(uris, frames, series_)], index=table.index)


def _indices(table: pd.DataFrame, column: str, what: str) -> list[int]:
    """A ``Frame_`` / ``Series_`` column as non-negative integers (0 where the column is absent)."""
    if column not in table.columns:
        return [0] * len(table)
    values = table[column]
    bad = ~values.str.fullmatch(r"\d{1,6}")
    if bad.any():
        raise InvalidInput(f"{what}: line {line_numbers(table, bad)[0]}: {column} must be a non-negative integer, "
                           f"not {values[bad].iloc[0]!r}")
    return [int(v) for v in values]


def _join_moa(
    moa_table: dict[str, list[tuple[float, str]]],
    metadata: dict[str, list[Any]],
    rows: int,
    what: str,
) -> list[str | None]:
    """Per-row MOA from the table on (compound, concentration), else the row's own MoA value."""
    if "compound" not in metadata or "concentration" not in metadata:
        raise InvalidInput(f"{what} has no compound and concentration columns to join the MOA table on")
    own = metadata.get("moa", [None] * rows)
    treatments = set(zip(metadata["compound"], metadata["concentration"]))
    found = {
        (compound, concentration): _find_moa(moa_table.get(compound, []), concentration)
        for compound, concentration in treatments
        if compound is not None and concentration is not None
    }
    return [
        found.get((compound, concentration)) or moa
        for compound, concentration, moa in zip(metadata["compound"], metadata["concentration"], own)
    ]
