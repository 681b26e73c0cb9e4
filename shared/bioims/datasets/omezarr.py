"""Import an OME-Zarr HCS plate (NGFF 0.4 / Zarr v2 and 0.5 / Zarr v3) as a plate record.

The plate's images are referenced in place: each channel of a field is
``<plate URI>/<row>/<column>/<field>#c=<index>`` (:func:`bioims.imaging.io.channel_ref`), read later chunk by
chunk from level 0 of the field's multiscale pyramid. Registering a plate reads its metadata only (the
plate's, each well's and each field's attributes), never pixels. ``labels`` groups are not read.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidInput
from ..imaging.io import channel_ref
from ..imaging.ome import open_image, open_plate
from ..store.objects import ObjectStore, path_to_uri
from .folder import read_well_metadata
from .loaddata import BATCH_PATTERN, plate_records
from .records import FieldRecord, PlateRecord


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
