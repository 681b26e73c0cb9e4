"""OME-Zarr HCS plates (NGFF 0.4 / Zarr v2 and 0.5 / Zarr v3): import one as a plate record, or write one.

The plate's images are referenced in place: each channel of a field is
``<plate URI>/<row>/<column>/<field>#c=<index>`` (:func:`bioims.imaging.io.channel_ref`), read later chunk by
chunk from level 0 of the field's multiscale pyramid. Registering a plate reads its metadata only (the
plate's, each well's and each field's attributes), never pixels. ``labels`` groups are not read.

:func:`write_ome_zarr` writes a registered-style plate record (any importer's) as an OME-Zarr plate with
ngff-zarr (the ``ml`` extra), for converting a TIFF screen and for the tests.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import InvalidInput
from ..imaging.io import channel_ref, read_field
from ..imaging.ome import open_image, open_plate
from ..store.objects import ObjectStore, path_to_uri
from .folder import read_well_metadata
from .loaddata import BATCH_PATTERN, plate_records
from .records import METADATA_KEYS, FieldRecord, PlateRecord


def plate_uri(location: str | os.PathLike[str]) -> str:
    """``s3://...`` as given, a local folder as an absolute ``file://`` URI (no trailing ``/``)."""
    text = os.fspath(location)
    if text.startswith("s3://"):
        return text.rstrip("/")
    if "://" in text and not text.startswith("file://"):
        raise InvalidInput(f"OME-Zarr plate {text!r} must be a local folder or an s3:// URI")
    return path_to_uri(Path(text.removeprefix("file://")).absolute()).rstrip("/")


def read_ome_zarr(
    location: str | os.PathLike[str],
    objects: ObjectStore,
    *,
    metadata_csv: str | os.PathLike[str] | None = None,
    experiment: str = "default",
) -> PlateRecord:
    """The plate record of an OME-Zarr HCS plate.

    Parameters
    ----------
    location : str or path-like
        The plate's root group: a local folder (``plate.ome.zarr``) or ``s3://bucket/prefix/plate.zarr``.
    objects : ObjectStore
        Reads ``s3://`` plates.
    metadata_csv : str or path-like, optional
        Per-well metadata joined on (plate, well), as for :func:`bioims.datasets.folder.scan_folder`; the
        plate is the plate's ``name`` (else its folder name without ``.zarr``), wells are named ``B03``.
    experiment : str
        Passed through to the record.

    Returns
    -------
    PlateRecord
        Channels from the first field's ``omero`` labels (``C0``, ``C1``, ... without them); sites ``s1``,
        ``s2``, ... in the order of each well's ``images``.

    Raises
    ------
    InvalidInput
        Not an OME-Zarr plate, an NGFF version other than 0.4 / 0.5, a listed well absent, a well
        without fields, or a field whose channels differ from the first field's (count or names).

    Examples
    --------
    >>> record = read_ome_zarr("screens/P1.ome.zarr", ObjectStore(), metadata_csv="wells.csv")  # doctest: +SKIP
    >>> record.fields[0].channel_uris["DNA"]  # doctest: +SKIP
    'file:///screens/P1.ome.zarr/A/1/0#c=0'
    """
    uri = plate_uri(location)
    plate = open_plate(uri, objects)
    metadata = read_well_metadata(metadata_csv) if metadata_csv is not None else {}
    batch = BATCH_PATTERN.match(plate.name)
    channels: list[str] | None = None
    fields = []
    for well in plate.wells:
        meta = dict(metadata.get((plate.name, well.name), {}))
        if "batch" not in meta and batch:
            meta["batch"] = batch.group(1)
        for k, path in enumerate(well.fields, start=1):
            image_uri = f"{uri}/{well.path}/{path}"
            image = open_image(image_uri, objects)
            if channels is None:
                channels = image.channels
            elif image.channels != channels:
                raise InvalidInput(f"OME-Zarr plate {uri}: field {well.path}/{path} has {len(image.channels)} "
                                   f"channels {image.channels}, the first field has {len(channels)} {channels}")
            fields.append(FieldRecord(well=well.name, site=f"s{k}", metadata=meta,
                                      channel_uris={c: channel_ref(image_uri, i) for i, c in enumerate(channels)}))
    assert channels is not None  # open_plate refuses a plate without wells or fields
    (record,) = plate_records({plate.name: fields}, tuple(channels), experiment)
    return record


_WELL = re.compile(r"([A-Za-z]+)0*(\d+)")


def write_plate(path: Path, fields: Mapping[str, Sequence[np.ndarray]], channels: Sequence[str], *,
                version: str = "0.5", name: str | None = None, levels: int = 1) -> Path:
    """Write an OME-Zarr HCS plate with ngff-zarr, atomically (a temporary folder renamed to ``path``).

    Parameters
    ----------
    path : Path
        The plate's folder (``P1.ome.zarr``); an existing one is replaced once the new one is complete.
    fields : mapping of str to sequence of ndarray
        Well name (``"B03"``: letters, then the column number) -> its fields, each (C, Y, X) or (C, Z, Y, X).
    channels : sequence of str
        Channel names, written as ``omero`` labels.
    version : {"0.5", "0.4"}
        NGFF version: 0.5 on Zarr v3, 0.4 on Zarr v2.
    name : str, optional
        The plate's ``name``.
    levels : int
        Pyramid levels, each halving Y and X (1: level 0 only).

    Raises
    ------
    InvalidInput
        A well name that is not letters then digits, or ngff-zarr not installed.
    """
    try:
        import ngff_zarr as nz
    except ImportError:
        raise InvalidInput("writing OME-Zarr needs ngff-zarr: pip install 'bioims[ml]'") from None
    split = {}
    for well in fields:
        match = _WELL.fullmatch(well)
        if match is None:
            raise InvalidInput(f"well {well!r} is not a row (letters) and a column (digits), e.g. B03")
        split[well] = (match[1], str(int(match[2])))
    wells = sorted(fields, key=lambda w: (split[w][0], int(split[w][1])))
    rows = sorted({r for r, _ in split.values()})
    columns = sorted({c for _, c in split.values()}, key=int)
    plate = nz.Plate(
        rows=[nz.PlateRow(name=r) for r in rows], columns=[nz.PlateColumn(name=c) for c in columns],
        wells=[nz.PlateWell(path=f"{r}/{c}", rowIndex=rows.index(r), columnIndex=columns.index(c))
               for r, c in (split[w] for w in wells)],
        name=name, field_count=max(len(f) for f in fields.values()), version=version)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    nz.to_hcs_zarr(nz.HCSPlate(str(tmp), plate), str(tmp))
    for well in wells:
        row, column = split[well]
        for index, pixels in enumerate(fields[well]):
            image = nz.to_ngff_image(pixels, dims=["c", "z", "y", "x"] if pixels.ndim == 4 else ["c", "y", "x"])
            multiscales = nz.to_multiscales(image, scale_factors=[2**k for k in range(1, levels)])
            top = float(np.iinfo(pixels.dtype).max) if pixels.dtype.kind in "ui" else float(pixels.max())
            multiscales.metadata.omero = nz.Omero(channels=[
                nz.OmeroChannel(label=c, color="FFFFFF", window=nz.OmeroWindow(min=0, max=top, start=0, end=top))
                for c in channels])
            nz.write_hcs_well_image(str(tmp), multiscales, plate, row, column, field_index=index, version=version)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def write_ome_zarr(record: PlateRecord, objects: ObjectStore, out: Path, *, version: str = "0.5",
                   levels: int = 2) -> Path:
    """Convert one plate record (from any importer; its images are read) to ``out/<plate>.ome.zarr`` with
    ``levels`` pyramid levels (viewers such as napari read the coarse ones; bioims reads level 0); a plate
    already there is kept (rerunning a conversion only writes the plates still missing)."""
    path = out / f"{record.source_id}.ome.zarr"
    if path.exists():
        return path
    fields: dict[str, list[np.ndarray]] = {}
    for f in record.fields:
        fields.setdefault(f.well, []).append(read_field([f.channel_uris[c] for c in record.channels], objects))
    return write_plate(path, fields, record.channels, version=version, name=record.source_id, levels=levels)


def well_metadata_csv(records: Sequence[PlateRecord]) -> bytes:
    """The ``plate, well, compound, concentration, moa, batch, replicate`` table of plate records (one row
    per well, the first field's values): the ``--metadata`` CSV of :func:`read_ome_zarr`."""
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(["plate", "well", *METADATA_KEYS])
    for record in records:
        seen = set()
        for f in record.fields:
            if f.well not in seen:
                seen.add(f.well)
                writer.writerow([record.source_id, f.well, *("" if f.metadata.get(k) is None else f.metadata[k]
                                                             for k in METADATA_KEYS)])
    return sink.getvalue().encode()
