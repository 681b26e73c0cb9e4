"""OME containers: the channels of an OME-TIFF, and OME-Zarr (NGFF 0.4 and 0.5) plates and images.

An OME-TIFF holds every channel of a field (and, multi-series, several fields); its OME-XML names the
channels. An OME-Zarr HCS plate is a Zarr hierarchy ``plate.zarr/ROW/COLUMN/FIELD/LEVEL`` whose group
attributes (``plate``, ``well``, ``multiscales``, ``omero``; under ``ome`` in 0.5) describe it. Both are
read through maintained libraries (tifffile, zarr-python 3, which reads Zarr v2 and v3); this module only
interprets their metadata. Arrays are opened lazily: a read takes the chunks of one channel.

Every malformed input raises :class:`~bioims.errors.InvalidInput` with a one-line message.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..errors import InvalidInput, NotFound
from ..names import is_name
from ..store.objects import ObjectStore, uri_to_path

NGFF_VERSIONS = ("0.4", "0.5")
"""The OME-Zarr (NGFF) versions read: 0.4 (Zarr v2) and 0.5 (Zarr v3)."""


# ------------------------------------------------------------------------------------------- OME-TIFF


def tiff_channels(path: str | os.PathLike[str]) -> list[list[str]] | None:
    """The channel names of each series of an OME-TIFF, or None if the file is not a multi-channel OME-TIFF.

    Names are the OME-XML ``Channel/@Name``; a channel without one (or with a name that is not a valid
    bioims name) is called ``C<index>``.

    Returns
    -------
    list of list of str
        One list per series (a multi-series file holds several fields), in channel order.

    Raises
    ------
    InvalidInput
        Its OME-XML does not match its pixels.

    Examples
    --------
    >>> tiff_channels("A01_s1.ome.tif")  # doctest: +SKIP
    [['DNA', 'Actin', 'Tubulin']]
    """
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.is_ome or not tif.series:
                return None
            xml = tifffile.xml2dict(tif.ome_metadata or "<OME/>")
            series = [(s.axes, s.shape) for s in tif.series]
    except (OSError, ValueError, tifffile.TiffFileError):
        return None  # not a TIFF (or unreadable): read as a plain image later, which names the problem
    images = (xml.get("OME") or {}).get("Image") or []
    images = images if isinstance(images, list) else [images]
    fields = []
    for i, (axes, shape) in enumerate(series):
        count = shape[axes.index("C")] if "C" in axes else 1
        described = ((images[i] if i < len(images) else {}).get("Pixels") or {}).get("Channel") or []
        described = described if isinstance(described, list) else [described]
        if described and len(described) != count:
            raise InvalidInput(f"OME-TIFF {path} series {i}: its OME-XML names {len(described)} channels, its "
                               f"pixels have {count} (axes {axes})")
        names = [str(c.get("Name")) if is_name(c.get("Name")) else f"C{k}" for k, c in enumerate(described)] \
            or [f"C{k}" for k in range(count)]
        if len(set(names)) != len(names):
            names = [f"C{k}" for k in range(count)]
        fields.append(names)
    if all(len(names) == 1 for names in fields):
        return None
    return fields


# -------------------------------------------------------------------------------------------- OME-Zarr


def _zarr_store(uri: str, objects: ObjectStore) -> Any:
    import zarr.storage

    if uri.startswith("file://") or "://" not in uri:
        path = uri_to_path(uri)
        if not path.is_dir():
            raise InvalidInput(f"{uri} is not a folder")
        return zarr.storage.LocalStore(path, read_only=True)
    return _s3_store_class()(uri, objects)


_S3_STORE: type | None = None


def _s3_store_class() -> type:
    """A read-only Zarr store class over :class:`~bioims.store.objects.ObjectStore` for ``s3://`` prefixes
    (defined on first use: zarr is imported only for OME-Zarr inputs)."""
    global _S3_STORE
    if _S3_STORE is not None:
        return _S3_STORE
    from zarr.abc.store import OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest

    class ObjectStoreZarr(Store):  # type: ignore[misc]
        """Zarr keys as objects under one S3 prefix, read with the credentials, endpoint and errors of every
        other S3 read. Written here because zarr's own S3 store needs s3fs, whose aiobotocore pins another
        botocore than ours; the image readers only need ``get`` and ``exists``."""

        supports_writes = False
        supports_deletes = False
        supports_listing = False

        def __init__(self, uri: str, objects: ObjectStore) -> None:
            super().__init__(read_only=True)
            self.uri, self.objects = uri.rstrip("/"), objects

        def __eq__(self, other: object) -> bool:
            return isinstance(other, ObjectStoreZarr) and other.uri == self.uri

        def __hash__(self) -> int:
            return hash(self.uri)

        async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
            from zarr.core.buffer import default_buffer_prototype

            try:
                data = self.objects.get_bytes(f"{self.uri}/{key}")
            except NotFound:
                return None
            if isinstance(byte_range, RangeByteRequest):
                data = data[byte_range.start:byte_range.end]
            elif isinstance(byte_range, OffsetByteRequest):
                data = data[byte_range.offset:]
            elif isinstance(byte_range, SuffixByteRequest):
                data = data[-byte_range.suffix:]
            return (prototype or default_buffer_prototype()).buffer.from_bytes(data)

        async def get_partial_values(self, prototype: Any, key_ranges: Iterable[tuple[str, Any]]) -> list[Any]:
            return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

        async def exists(self, key: str) -> bool:
            return self.objects.exists(f"{self.uri}/{key}")

        async def set(self, key: str, value: Any) -> None:
            raise PermissionError("read-only store")

        async def delete(self, key: str) -> None:
            raise PermissionError("read-only store")

        async def list(self) -> AsyncIterator[str]:
            raise NotImplementedError("an S3 OME-Zarr is read through its metadata, never listed")
            yield ""  # pragma: no cover (makes this an async generator)

        async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
            raise NotImplementedError("an S3 OME-Zarr is read through its metadata, never listed")
            yield ""  # pragma: no cover

        async def list_dir(self, prefix: str) -> AsyncIterator[str]:
            raise NotImplementedError("an S3 OME-Zarr is read through its metadata, never listed")
            yield ""  # pragma: no cover

    _S3_STORE = ObjectStoreZarr
    return ObjectStoreZarr


def _open_group(uri: str, objects: ObjectStore, what: str) -> Any:
    import zarr

    try:
        return zarr.open_group(_zarr_store(uri, objects), mode="r")
    except InvalidInput:
        raise
    except Exception as exc:  # zarr raises FileNotFoundError, GroupNotFoundError, ValueError, JSON errors
        raise InvalidInput(f"{what} {uri} is not a Zarr group ({type(exc).__name__}: {exc})") from None


def _ome_attributes(group: Any, uri: str) -> tuple[dict[str, Any], str]:
    """The NGFF attributes of a group (0.5 nests them under ``ome``) and their version."""
    attrs = dict(group.attrs)
    if "ome" in attrs and isinstance(attrs["ome"], dict):
        attrs = attrs["ome"]
        version = str(attrs.get("version", ""))
    else:
        version = ""
        for key in ("plate", "well", "multiscales"):
            value = attrs.get(key)
            value = value[0] if isinstance(value, list) and value else value
            if isinstance(value, dict) and value.get("version"):
                version = str(value["version"])
                break
    if version not in NGFF_VERSIONS:
        raise InvalidInput(f"OME-Zarr {uri} has NGFF version {version or 'none'}; bioims reads "
                           f"{' and '.join(NGFF_VERSIONS)}")
    return attrs, version


@dataclass(frozen=True)
class ZarrImage:
    """Level 0 of an OME-Zarr image (one field).

    Attributes
    ----------
    array : zarr.Array
        Lazily read pixels, axes ``axes``.
    axes : str
        Upper-case axis names in array order, e.g. ``"CZYX"`` or ``"TCZYX"``.
    channels : list of str
        Channel names (``omero`` labels, else ``C<index>``); one entry if there is no C axis.
    version : str
        NGFF version.
    """

    array: Any
    axes: str
    channels: list[str]
    version: str


def open_image(uri: str, objects: ObjectStore) -> ZarrImage:
    """Open an OME-Zarr image group (``.../plate.zarr/B/3/0``) at level 0 of its multiscale pyramid.

    Raises
    ------
    InvalidInput
        Not a Zarr group, an NGFF version other than 0.4 / 0.5, no ``multiscales``, axes that are not
        t / c / z / y / x, or ``omero`` channels that do not match the C axis.
    """
    group = _open_group(uri, objects, "OME-Zarr image")
    attrs, version = _ome_attributes(group, uri)
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales or not multiscales[0].get("datasets"):
        raise InvalidInput(f"OME-Zarr image {uri} has no multiscales datasets")
    scale = multiscales[0]
    path = str(scale["datasets"][0].get("path", ""))
    try:
        array = group[path]
    except (KeyError, ValueError):  # zarr refuses '.' and '..' segments with ValueError
        raise InvalidInput(f"OME-Zarr image {uri} lacks its level-0 array {path[:80]!r}") from None
    names = [a.get("name") if isinstance(a, dict) else a for a in scale.get("axes", [])] or list("tczyx")[-array.ndim:]
    axes = "".join(str(n).upper() for n in names)
    if len(axes) != array.ndim or not set(axes) <= set("TCZYX") or not axes.endswith("YX") or len(set(axes)) != len(axes):
        raise InvalidInput(f"OME-Zarr image {uri} has axes {names} for an array of shape {array.shape}; "
                           "bioims reads t, c, z, y, x")
    count = array.shape[axes.index("C")] if "C" in axes else 1
    labels = [c.get("label") for c in (attrs.get("omero") or {}).get("channels", []) if isinstance(c, dict)]
    if labels and len(labels) != count:
        raise InvalidInput(f"OME-Zarr image {uri} names {len(labels)} omero channels, its array has {count}")
    names_ = [str(label) if is_name(label) else f"C{k}" for k, label in enumerate(labels)] or [f"C{k}" for k in range(count)]
    if len(set(names_)) != len(names_):
        names_ = [f"C{k}" for k in range(count)]
    return ZarrImage(array=array, axes=axes, channels=names_, version=version)


def read_channels(image: ZarrImage, channels: list[int]) -> tuple[np.ndarray, str]:
    """``channels`` of the first time point in one read (each chunk decoded once): ``(pixels, axes)``, pixels
    (len(channels), ...) and axes of one plane, ``"YX"`` or ``"ZYX"`` (plus any singleton left for the caller
    to squeeze)."""
    count = len(image.channels)
    bad = [c for c in channels if c >= count]
    if bad:
        raise InvalidInput(f"no channel {bad[0]}: the image has {count}")
    if "C" not in image.axes:
        index: tuple[Any, ...] = tuple(0 if ax == "T" else slice(None) for ax in image.axes)
        plane = np.asarray(image.array[index])
        return np.stack([plane] * len(channels)), image.axes.replace("T", "")
    wanted = sorted(set(channels))
    index = tuple(slice(wanted[0], wanted[-1] + 1) if ax == "C" else 0 if ax == "T" else slice(None)
                  for ax in image.axes)
    block = np.asarray(image.array[index])  # the span of channels asked for, C first once T is dropped
    block = np.moveaxis(block, image.axes.replace("T", "").index("C"), 0)
    return block[[c - wanted[0] for c in channels]], image.axes.replace("C", "").replace("T", "")


@dataclass(frozen=True)
class ZarrWell:
    """One well of an OME-Zarr plate: its name (``B03``), its group path (``B/3``) and its fields' paths."""

    name: str
    path: str
    fields: list[str]


@dataclass(frozen=True)
class ZarrPlate:
    """An OME-Zarr HCS plate: its name, NGFF version and wells (each with its fields)."""

    name: str
    version: str
    wells: list[ZarrWell]


_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


def _segment(value: object, what: str, uri: str) -> str:
    """A row, column or field path of a plate: one plain path segment (never ``..``, ``/`` or empty)."""
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
        raise InvalidInput(f"OME-Zarr plate {uri}: {what} {str(value)[:80]!r} is not a path segment "
                           "(letters, digits, _ - .)")
    return value


def well_name(row: str, column: str) -> str:
    """bioims' well name of an NGFF row and column: ``("B", "3") -> "B03"`` (digits padded to two).

    >>> well_name("B", "3"), well_name("AF", "48"), well_name("r1", "c2")
    ('B03', 'AF48', 'r1c2')
    """
    return f"{row}{int(column):02d}" if column.isdigit() else f"{row}{column}"


def open_plate(uri: str, objects: ObjectStore) -> ZarrPlate:
    """Read an OME-Zarr plate's metadata (``plate`` attributes, then each well's ``well`` attributes).

    Raises
    ------
    InvalidInput
        Not a plate (no ``plate`` attributes), an unsupported version, a well listed by the plate but
        absent, a well without fields, or a well path that is not ``ROW/COLUMN`` of the plate's rows and
        columns.
    """
    group = _open_group(uri, objects, "OME-Zarr plate")
    attrs, version = _ome_attributes(group, uri)
    plate = attrs.get("plate")
    if not isinstance(plate, dict):
        raise InvalidInput(f"{uri} is an OME-Zarr group without plate metadata (an image or a well, not an HCS plate)")
    rows = [r.get("name") for r in plate.get("rows", []) if isinstance(r, dict)]
    columns = [c.get("name") for c in plate.get("columns", []) if isinstance(c, dict)]
    listed = [w for w in plate.get("wells", []) if isinstance(w, dict)]
    if not listed:
        raise InvalidInput(f"OME-Zarr plate {uri} lists no wells")
    wells = []
    for w in listed:
        path = str(w.get("path", ""))
        row, _, column = path.partition("/")
        _segment(row, "well row", uri), _segment(column, "well column", uri)
        if row not in rows or column not in columns or path.count("/") != 1:
            raise InvalidInput(f"OME-Zarr plate {uri}: well path {path!r} is not ROW/COLUMN of its rows and columns")
        try:
            well = group[path]
        except KeyError:
            raise InvalidInput(f"OME-Zarr plate {uri} lists well {path} but has no group {path}") from None
        images = (_ome_attributes(well, f"{uri}/{path}")[0].get("well") or {}).get("images") or []
        fields = [_segment(i["path"], f"well {path} field", uri) for i in images if isinstance(i, dict) and "path" in i]
        if not fields:
            raise InvalidInput(f"OME-Zarr plate {uri}: well {path} lists no fields")
        wells.append(ZarrWell(name=well_name(row, column), path=path, fields=fields))
    name = plate.get("name") or Path(uri.rstrip("/")).name.removesuffix(".zarr").removesuffix(".ome")
    return ZarrPlate(name=str(name), version=version, wells=wells)
