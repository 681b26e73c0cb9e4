"""Scan a local folder of image files into plate records, naming files with a regular expression.

Each image file's path relative to the folder (with ``/`` separators) is searched with a pattern whose
named groups say which plate, well, channel and (optionally) site the file is, e.g.
``(?P<plate>[^/]+)/(?P<well>[A-P]\\d{2})_(?P<site>s\\d+)_w(?P<channel>\\d)``. A pattern without a
``channel`` group matches multi-channel OME-TIFF files, one field per file (per series, for a multi-series
file), with the channels its OME-XML names.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..imaging.io import channel_ref
from ..imaging.ome import tiff_channels
from ..names import check_name
from .loaddata import (
    BATCH_PATTERN,
    line_numbers,
    location_uri,
    metadata_rows,
    plate_records,
    read_csv_table,
    typed_metadata,
)
from .records import METADATA_KEYS, FieldRecord, PlateRecord

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".tif", ".tiff", ".png"})
"""File suffixes (case-insensitive) the scanner considers; other files are skipped silently."""

_REQUIRED_GROUPS = ("plate", "well")
_DEFAULT_SITE = "s1"
_SHOWN = 5
"""How many offending fields or files an error message lists."""

_FieldKey = tuple[str, str, str]
"""(plate, well, site)"""
_Slot = tuple[str, int | None, int]
"""(relative path, channel index in a multi-channel file or None, series)"""


def scan_folder(
    root: str | Path,
    pattern: str,
    *,
    metadata_csv: str | Path | None = None,
    experiment: str = "default",
) -> list[PlateRecord]:
    """Group the image files under ``root`` into plates, wells, sites and channels.

    Parameters
    ----------
    root : str or Path
        A local folder, walked recursively (``.tif``, ``.tiff`` and ``.png`` files, any case).
    pattern : str
        Regular expression searched (:func:`re.search`; anchor it with ``^`` / ``$`` to match whole
        paths) in each file's path relative to ``root``, with named groups ``plate``, ``well``,
        ``channel`` and optionally ``site`` (default ``"s1"``). Files that do not match are skipped
        (their number is logged at debug level). Without a ``channel`` group, each file is a multi-channel
        OME-TIFF holding a whole field; a file of several series holds one field per series, sites
        ``s1``, ``s2``, ... (the pattern then has no ``site`` group).
    metadata_csv : str or Path, optional
        Per-well metadata joined on (plate, well): columns ``plate`` and ``well`` and any of
        ``compound``, ``concentration`` (float), ``moa``, ``batch``, ``replicate`` (int), each optionally
        ``Metadata_``-prefixed and in any case; other columns are kept as strings. Rows for wells without
        images are ignored.
    experiment : str
        Passed through to every :class:`PlateRecord`.

    Returns
    -------
    list of PlateRecord
        Plates sorted by name, fields by (well, site). Channels are the sorted channel names, in numeric
        order when all of them are digits. A field's ``batch`` defaults to the plate name's ``WeekN``
        prefix; a plate's batch is its fields' common batch, if any.

    Raises
    ------
    InvalidInput
        ``root`` is not a folder; the pattern is not a valid regex or lacks a required group; no file
        matches; a channel that is not a name (:mod:`bioims.names`); two files claim the same (plate,
        well, site, channel); a field lacks a channel; a bad
        metadata CSV (missing plate / well column, empty key cell, duplicate (plate, well), bad number).

    Examples
    --------
    >>> pattern = r"^(?P<plate>[^/]+)/(?P<well>[A-P]\\d\\d)_(?P<site>s\\d)_w(?P<channel>\\d)\\.tif$"
    >>> plates = scan_folder("images", pattern, metadata_csv="wells.csv")  # doctest: +SKIP
    """
    folder = Path(root)
    if not folder.is_dir():
        raise InvalidInput(f"image folder {root} does not exist or is not a folder")
    regex = _compile(pattern)
    files, unmatched = _match_files(folder, regex)
    if not files:
        raise InvalidInput(
            f"no image file under {root} matches the pattern {pattern!r} ({unmatched} did not)"
        )
    if unmatched:
        logger.debug("%d image files under %s do not match the pattern %r", unmatched, root, pattern)
    channels = (tuple(next(iter(files.values()))) if "channel" not in regex.groupindex  # the OME-XML's order
                else _channel_order({channel for slots in files.values() for channel in slots}))
    odd = next((slots for slots in files.values() if "channel" not in regex.groupindex and tuple(slots) != channels),
               None)
    if odd is not None:
        raise InvalidInput(f"{next(iter(odd.values()))[0]} has channels {list(odd)}, "
                           f"{next(iter(next(iter(files.values())).values()))[0]} has {list(channels)}")
    _check_complete(files, channels, root)

    metadata = read_well_metadata(metadata_csv) if metadata_csv is not None else {}
    base = os.path.abspath(folder)
    fields: dict[str, list[FieldRecord]] = {}
    for plate, well, site in sorted(files):
        slots = files[plate, well, site]
        field_metadata = dict(metadata.get((plate, well), {}))
        batch = BATCH_PATTERN.match(plate)
        if "batch" not in field_metadata and batch:
            field_metadata["batch"] = batch.group(1)
        fields.setdefault(plate, []).append(
            FieldRecord(
                well=well,
                site=site,
                channel_uris={channel: _uri(slots[channel], base) for channel in channels},
                metadata=field_metadata,
            )
        )
    return plate_records(fields, channels, experiment)


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise InvalidInput(f"pattern {pattern!r} is not a valid regular expression: {e}") from None
    missing = [group for group in _REQUIRED_GROUPS if group not in regex.groupindex]
    if missing:
        groups = ", ".join(f"(?P<{group}>...)" for group in missing)
        raise InvalidInput(f"pattern {pattern!r} lacks the named group(s) {groups}")
    return regex


def _match_files(folder: Path, regex: re.Pattern[str]) -> tuple[dict[_FieldKey, dict[str, _Slot]], int]:
    """(plate, well, site) -> channel -> slot, and the number of image files not matched."""
    files: dict[_FieldKey, dict[str, _Slot]] = {}
    unmatched = 0
    multichannel = "channel" not in regex.groupindex
    for directory, subdirectories, names in os.walk(folder):
        subdirectories.sort()
        for name in sorted(names):
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            relative = Path(directory, name).relative_to(folder).as_posix()
            match = regex.search(relative)
            groups = match.groupdict() if match else {}
            if not all(groups.get(group) for group in _REQUIRED_GROUPS) or not (multichannel or groups.get("channel")):
                unmatched += 1
                continue
            key = (groups["plate"], groups["well"], groups.get("site") or _DEFAULT_SITE)
            if multichannel:
                _add_ome_tiff(files, folder, relative, key, has_site="site" in regex.groupindex)
                continue
            slots = files.setdefault(key, {})
            channel = check_name(groups["channel"], f"{relative}: plate {key[0]!r}: channel")
            if channel in slots:
                raise InvalidInput(
                    f"{slots[channel][0]} and {relative} are both plate {key[0]!r} well {key[1]!r} "
                    f"site {key[2]!r} channel {channel!r}"
                )
            slots[channel] = (relative, None, 0)
    return files, unmatched


def _add_ome_tiff(files: dict[_FieldKey, dict[str, _Slot]], folder: Path, relative: str, key: _FieldKey,
                  has_site: bool) -> None:
    """The fields of one multi-channel OME-TIFF (one per series), its channels named by its OME-XML."""
    try:
        series, reason = tiff_channels(folder / relative), "not a multi-channel OME-TIFF"
    except InvalidInput as exc:
        series, reason = None, exc.message
    if series is None:
        raise InvalidInput(f"{relative}: {reason}; the pattern has no (?P<channel>...) group, so each file must be a "
                           "multi-channel OME-TIFF")
    if len(series) > 1 and has_site:
        raise InvalidInput(f"{relative} holds {len(series)} series (one field each, sites s1..s{len(series)}); "
                           "drop the pattern's (?P<site>...) group")
    for s, channels in enumerate(series):
        field = key if len(series) == 1 else (key[0], key[1], f"s{s + 1}")
        if field in files:
            raise InvalidInput(f"{relative} and {next(iter(files[field].values()))[0]} are both plate {field[0]!r} "
                               f"well {field[1]!r} site {field[2]!r}")
        files[field] = {check_name(c, f"{relative}: plate {key[0]!r}: channel"): (relative, i, s)
                        for i, c in enumerate(channels)}


def _uri(slot: _Slot, base: str) -> str:
    relative, channel, series = slot
    uri = location_uri(relative, base)
    return uri if channel is None else channel_ref(uri, channel, series)


def _channel_order(channels: set[str]) -> tuple[str, ...]:
    """Sorted channel names; numerically when they are all digits (``"2"`` before ``"10"``)."""
    if all(channel.isdigit() for channel in channels):
        return tuple(sorted(channels, key=int))
    return tuple(sorted(channels))


def _check_complete(
    files: dict[_FieldKey, dict[str, _Slot]], channels: tuple[str, ...], root: str | Path
) -> None:
    incomplete = [
        f"{plate}/{well}/{site} (missing {', '.join(c for c in channels if c not in slots)})"
        for (plate, well, site), slots in sorted(files.items())
        if len(slots) < len(channels)
    ]
    if incomplete:
        shown = "; ".join(incomplete[:_SHOWN]) + ("; ..." if len(incomplete) > _SHOWN else "")
        raise InvalidInput(
            f"{len(incomplete)} field(s) under {root} lack channels of {list(channels)}: {shown}"
        )


def read_well_metadata(path: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(plate, well) -> metadata of a per-well metadata CSV (see :func:`scan_folder`)."""
    what = f"metadata CSV {path}"
    table = read_csv_table(path, "metadata CSV")
    columns: dict[str, str] = {}
    for column in table.columns:
        name = column[len("Metadata_") :] if column.lower().startswith("metadata_") else column
        key = name.lower() if name.lower() in ("plate", "well", *METADATA_KEYS) else name
        if key in columns:
            raise InvalidInput(f"{what} has two columns for {key!r}: {columns[key]} and {column}")
        columns[key] = column
    missing = [key for key in ("plate", "well") if key not in columns]
    if missing:
        raise InvalidInput(f"{what} is missing required column(s): {', '.join(missing)}")
    plate_column, well_column = columns.pop("plate"), columns.pop("well")
    for column in (plate_column, well_column):
        empty = table[column] == ""
        if empty.any():
            raise InvalidInput(f"{what}: line {line_numbers(table, empty)[0]}: empty {column}")
    plates, wells = table[plate_column], table[well_column]
    duplicated = table.duplicated([plate_column, well_column], keep=False)
    if duplicated.any():
        plate, well = plates[duplicated].iloc[0], wells[duplicated].iloc[0]
        first, second = line_numbers(table, (plates == plate) & (wells == well))[:2]
        raise InvalidInput(
            f"{what}: plate {plate!r} well {well!r} appears twice (lines {first} and {second})"
        )
    rows = metadata_rows(typed_metadata(table, columns, what), len(table))
    return dict(zip(zip(plates.tolist(), wells.tolist()), rows))
