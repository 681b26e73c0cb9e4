"""Read fluorescence images referenced by URI, one URI per channel.

A *field* (one site of one well) is a list of channel images of identical shape and dtype. A channel URI
names a single-channel file, or one channel of a multi-channel container with a fragment (see
:func:`channel_ref`): ``file:///d/A01.ome.tif#c=2`` (channel 2 of the first series of an OME-TIFF),
``...#s=1&c=0`` (of its second series), ``file:///d/plate.zarr/B/3/0#c=1`` (channel 1 of level 0 of an
OME-Zarr image, NGFF 0.4 or 0.5). Files are TIFF (plain, multi-page z-stacks, OME-TIFF, BigTIFF; read
with tifffile) or PNG / JPEG (read with Pillow); the format is decided by the file's magic bytes, never by
its extension. A channel of a container is read alone, chunk by chunk (tifffile's and zarr's lazy
arrays), never the whole file. Pixels are returned in the file's native dtype; conversion to float is
:func:`bioims.imaging.dtypes.to_float01`.

Every unreadable image raises :class:`bioims.errors.InvalidInput` whose message starts with
``cannot read image <uri>:`` followed by one of ``missing file``, ``empty file``, ``truncated or
corrupt image``, ``unsupported image format``, ``unsupported dimensions``, ``image too large`` or a
message saying that channels must be stored as separate files. Messages are one line and never quote
the file's bytes (a path pointing at a text or secret file must not leak its contents).

Size limit: a file whose header declares more than :data:`MAX_PIXELS` pixels is refused before any
pixel buffer is allocated (a damaged or hostile header declaring 100000 x 100000 pixels must not
exhaust memory).
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import tifffile
from PIL import Image

from ..errors import InvalidInput, NotFound
from ..store.objects import ObjectStore, uri_to_path, write_file_atomic

__all__ = ["MAX_PIXELS", "FieldInfo", "channel_ref", "inspect_field", "non_finite", "read_field", "read_image",
           "split_ref", "write_tiff"]

MAX_PIXELS = 2**29
"""Largest number of pixels (width x height x planes x samples) one image file may declare: 536,870,912,
e.g. 128 planes of 2048 x 2048 (1 GiB as uint16). Larger files are refused as ``image too large``."""

_Format = Literal["tiff", "png", "jpeg"]

_MAGIC: tuple[tuple[bytes, _Format], ...] = (
    (b"II*\x00", "tiff"),  # classic TIFF, little-endian
    (b"MM\x00*", "tiff"),  # classic TIFF, big-endian
    (b"II+\x00", "tiff"),  # BigTIFF, little-endian
    (b"MM\x00+", "tiff"),  # BigTIFF, big-endian
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
)
_HEADER_SIZE = 8

# TIFF axes (tifffile's codes) that may hold the depth of a z-stack: Z, or generic pages (Q, I).
_DEPTH_AXES = "ZQI"

# Pillow modes read as a single channel as is.
_GREY_MODES = frozenset({"L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


class _Unreadable(Exception):
    """Internal: the reason an image cannot be read, turned into InvalidInput naming the URI."""


@dataclass(frozen=True)
class FieldInfo:
    """Dimensions of a field (the channel files of one site).

    Attributes
    ----------
    width, height : int
        Image size in pixels (X and Y).
    depth : int
        Number of z-planes; 1 for 2-D images.
    channels : int
        Number of channel files.
    dtype : str
        NumPy dtype name shared by all channels, e.g. ``"uint16"``.
    """

    width: int
    height: int
    depth: int
    channels: int
    dtype: str


# ---------------------------------------------------------------------------------------------- public


def channel_ref(uri: str, channel: int, series: int = 0) -> str:
    """The URI of one channel of a multi-channel container (OME-TIFF file, OME-Zarr image group).

    >>> channel_ref("file:///d/A01.ome.tif", 2)
    'file:///d/A01.ome.tif#c=2'
    >>> channel_ref("file:///d/A01.ome.tif", 0, series=1)
    'file:///d/A01.ome.tif#s=1&c=0'
    """
    return f"{uri}#{f's={series}&' if series else ''}c={channel}"


_REF = re.compile(r"(?:s=(?P<s>0|[1-9]\d{0,5})&)?c=(?P<c>0|[1-9]\d{0,5})")


def split_ref(uri: str) -> tuple[str, int | None, int]:
    """``(container URI, channel or None, series)`` of a channel URI (:func:`channel_ref`'s inverse).

    Raises
    ------
    InvalidInput
        A fragment other than ``c=N`` or ``s=M&c=N``.

    >>> split_ref("file:///d/A01.ome.tif#s=1&c=2")
    ('file:///d/A01.ome.tif', 2, 1)
    >>> split_ref("s3://in/A01_w1.tif")
    ('s3://in/A01_w1.tif', None, 0)
    """
    base, sep, fragment = uri.partition("#")
    if not sep:
        return uri, None, 0
    match = _REF.fullmatch(fragment)
    if match is None:
        raise InvalidInput(f"cannot read image {uri}: the fragment #{fragment[:40]} is not a channel reference "
                           "(#c=N or #s=M&c=N)")
    return base, int(match["c"]), int(match["s"] or 0)


def read_image(uri: str, objects: ObjectStore) -> np.ndarray:
    """Read one channel image: a single-channel file, or one channel of an OME-TIFF or OME-Zarr image.

    Parameters
    ----------
    uri : str
        ``file:///abs/path.tif`` (read directly from disk) or ``s3://bucket/key`` (read through
        ``objects``), optionally with a channel fragment (:func:`channel_ref`).
    objects : ObjectStore
        Store used for non-local URIs.

    Returns
    -------
    image : (H, W) or (Z, H, W) ndarray
        Pixels in the file's native dtype (uint8, uint16, float32, ...), native byte order. Z is
        present only for multi-page TIFF z-stacks.

    Raises
    ------
    InvalidInput
        If the file is missing, empty, truncated or corrupt, not a TIFF / PNG / JPEG / OME-Zarr image,
        not 2-D or 3-D, holds several channels and the URI names none (RGB, multi-sample or multi-channel
        OME-TIFF), or lacks the series or channel named. An RGB file whose three samples are identical is
        a greyscale image and is read as one channel.

    Examples
    --------
    >>> image = read_image("file:///data/plate1/A01_s1_w1.tif", ObjectStore())  # doctest: +SKIP
    >>> image.shape, image.dtype  # doctest: +SKIP
    ((1080, 1080), dtype('uint16'))
    """
    base, channel, series = split_ref(uri)
    try:
        if channel is not None and _is_zarr(base, objects):
            image = _read_zarr_channel(base, channel, objects)
        elif base.startswith("file://"):
            image = _read_local(uri_to_path(base), series, channel)
        else:
            image = _read_remote(base, objects, series, channel)
        return _check_dimensions(image)
    except _Unreadable as exc:
        raise InvalidInput(f"cannot read image {uri}: {exc}") from exc.__cause__


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode one single-channel image file held in memory (an upload): like :func:`read_image`,
    with ``name`` in the error messages."""
    try:
        return _check_dimensions(_decode(io.BytesIO(data)))
    except _Unreadable as exc:
        raise InvalidInput(f"cannot read {name}: {exc}") from exc.__cause__


def read_field(channel_uris: Sequence[str], objects: ObjectStore) -> np.ndarray:
    """Read the channel files of one field and stack them.

    Parameters
    ----------
    channel_uris : sequence of str
        One URI per channel, in channel order (see :func:`read_image`).
    objects : ObjectStore
        Store used for non-local URIs.

    Returns
    -------
    field : (C, H, W) or (C, Z, H, W) ndarray
        Channels stacked along the first axis, in the files' common native dtype.

    Raises
    ------
    InvalidInput
        If ``channel_uris`` is empty or a single string, if any channel cannot be read
        (:func:`read_image`), or if a channel's shape or dtype differs from channel 0's.

    Examples
    --------
    >>> field = read_field([dna_uri, actin_uri, tubulin_uri], ObjectStore())  # doctest: +SKIP
    >>> field.shape  # doctest: +SKIP
    (3, 1080, 1080)
    """
    if isinstance(channel_uris, (str, bytes)):
        raise InvalidInput(f"channel_uris must be a sequence of URIs, got a single string {channel_uris!r}")
    if len(channel_uris) == 0:
        raise InvalidInput("a field needs at least one channel URI, got none")
    refs = [split_ref(uri) for uri in channel_uris]
    base = refs[0][0]
    if all(r[0] == base and r[1] is not None for r in refs) and _is_zarr(base, objects):
        # channels of one OME-Zarr image: one read, so a chunk holding several channels is decoded once
        try:
            return _read_zarr_channels(base, [r[1] for r in refs], objects)  # type: ignore[misc]
        except _Unreadable as exc:
            raise InvalidInput(f"cannot read image {base}: {exc}") from exc.__cause__
    first = read_image(channel_uris[0], objects)
    field = np.empty((len(channel_uris), *first.shape), dtype=first.dtype)
    field[0] = first
    for c, uri in enumerate(channel_uris[1:], start=1):
        image = read_image(uri, objects)
        if image.shape != first.shape:
            raise InvalidInput(f"channel {c} ({uri}) has shape {image.shape}, channel 0 has {first.shape}")
        if image.dtype != first.dtype:
            raise InvalidInput(f"channel {c} ({uri}) has dtype {image.dtype}, channel 0 has {first.dtype}")
        field[c] = image
    return field


def inspect_field(channel_uris: Sequence[str], objects: ObjectStore) -> FieldInfo:
    """Read a field and return its dimensions (validating that its channels agree and that its pixels
    are finite).

    Parameters
    ----------
    channel_uris : sequence of str
        One URI per channel, in channel order.
    objects : ObjectStore
        Store used for non-local URIs.

    Returns
    -------
    info : FieldInfo
        Width, height, depth (1 for 2-D images), number of channels and dtype name.

    Raises
    ------
    InvalidInput
        As :func:`read_field`; also if a floating-point field holds NaN or infinite pixels (message
        ``non-finite pixel values (N NaN, M inf in channel ...)``): flat-fields, normalisation and
        segmentation are undefined on them.

    Examples
    --------
    >>> inspect_field([dna_uri, actin_uri], ObjectStore())  # doctest: +SKIP
    FieldInfo(width=1280, height=1024, depth=1, channels=2, dtype='uint16')
    """
    field = read_field(channel_uris, objects)
    problem = non_finite(field)
    if problem:
        raise InvalidInput(problem)
    depth = field.shape[1] if field.ndim == 4 else 1
    return FieldInfo(
        width=int(field.shape[-1]),
        height=int(field.shape[-2]),
        depth=int(depth),
        channels=int(field.shape[0]),
        dtype=field.dtype.name,
    )


def non_finite(field: np.ndarray) -> str | None:
    """Describe the NaN and infinite pixels of a field, or None if every pixel is finite.

    Parameters
    ----------
    field : (C, ...) ndarray
        Channels along the first axis. Integer and boolean fields are always finite.

    Returns
    -------
    problem : str or None
        ``"non-finite pixel values (N NaN, M inf in channel 0, 2)"``, or None.

    Examples
    --------
    >>> non_finite(np.array([[[0.0, np.nan]], [[np.inf, 1.0]]], np.float32))
    'non-finite pixel values (1 NaN, 1 inf in channels 0, 1)'
    >>> non_finite(np.zeros((2, 4, 4), np.uint16)) is None
    True
    """
    if field.dtype.kind not in "fc" or np.isfinite(field).all():
        return None
    nan = int(np.count_nonzero(np.isnan(field)))
    inf = int(np.count_nonzero(np.isinf(field)))
    bad = [c for c in range(field.shape[0]) if not np.isfinite(field[c]).all()]
    where = f"channel{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))}"
    return f"non-finite pixel values ({nan} NaN, {inf} inf in {where})"


def write_tiff(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write one channel as an uncompressed greyscale TIFF, atomically.

    The data go to a temporary file in the target folder, which is then renamed over ``path``:
    readers never see a partial file. Parent folders are created.

    Parameters
    ----------
    path : str or path-like
        Destination file.
    array : (H, W) or (Z, H, W) ndarray of uint8, uint16 or float32
        One channel; a 3-D array is written as a multi-page z-stack (axes ``ZYX``). Written in its
        own dtype (synthetic plates use uint16).

    Raises
    ------
    ValueError
        If ``array`` is not 2-D or 3-D, is empty, or has an unsupported dtype.

    Examples
    --------
    >>> write_tiff(tmp_path / "A01_w1.tif", np.zeros((64, 64), np.uint16))  # doctest: +SKIP
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"array must be 2-D (H, W) or 3-D (Z, H, W), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"array is empty (shape {array.shape})")
    if array.dtype.kind not in "uif" or array.dtype.itemsize > 8:
        raise ValueError(f"array has dtype {array.dtype}; expected an integer or float dtype")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack", metadata={"axes": "ZYX" if array.ndim == 3 else "YX"})
    write_file_atomic(Path(path), buffer.getvalue())


# --------------------------------------------------------------------------------------------- private


def _read_local(path: Path, series: int = 0, channel: int | None = None) -> np.ndarray:
    try:
        with open(path, "rb") as fh:
            return _decode(fh, series, channel)
    except FileNotFoundError:
        raise _Unreadable(f"missing file: {path}") from None
    except IsADirectoryError:
        raise _Unreadable(f"not a file: {path} is a directory") from None
    except OSError as exc:
        raise _Unreadable(f"cannot open file {path}: {exc.strerror or exc}") from None


def _read_remote(uri: str, objects: ObjectStore, series: int = 0, channel: int | None = None) -> np.ndarray:
    try:
        data = objects.get_bytes(uri)
    except NotFound:
        raise _Unreadable(f"missing file: {uri}") from None
    return _decode(io.BytesIO(data), series, channel)


def _is_zarr(uri: str, objects: ObjectStore) -> bool:
    """Whether ``uri`` is a folder / prefix holding Zarr metadata (an OME-Zarr image group)."""
    if uri.startswith("file://"):
        return uri_to_path(uri).is_dir()
    base = uri.rstrip("/")
    return objects.exists(f"{base}/zarr.json") or objects.exists(f"{base}/.zattrs")


def _read_zarr_channels(uri: str, channels: list[int], objects: ObjectStore) -> np.ndarray:
    """``channels`` of level 0 of an OME-Zarr image (NGFF 0.4 / 0.5), read by chunk: (C, [Z,] Y, X)."""
    from .ome import open_image, read_channels  # zarr is imported only for OME-Zarr inputs

    try:
        image = open_image(uri, objects)
        _check_size(image.array.shape, "OME-Zarr array")
        planes, axes = read_channels(image, channels)
    except InvalidInput as exc:
        raise _Unreadable(exc.message) from None
    return np.stack([_check_dimensions(_squeeze_tiff_axes(plane, axes)) for plane in planes])


def _read_zarr_channel(uri: str, channel: int, objects: ObjectStore) -> np.ndarray:
    return _read_zarr_channels(uri, [channel], objects)[0]


def _sniff(header: bytes) -> _Format | None:
    for magic, fmt in _MAGIC:
        if header.startswith(magic):
            return fmt
    return None


def _decode(fh: BinaryIO, series: int = 0, channel: int | None = None) -> np.ndarray:
    """Decode an open binary file positioned at its start (``series`` and ``channel``: TIFF only)."""
    header = fh.read(_HEADER_SIZE)
    if not header:
        raise _Unreadable("empty file (0 bytes)")
    fmt = _sniff(header)
    if fmt is None and any(magic.startswith(header) for magic, _ in _MAGIC):
        raise _Unreadable(f"truncated or corrupt image (only {len(header)} bytes)")
    if fmt is None:
        raise _Unreadable("unsupported image format: not a TIFF, PNG or JPEG file (unrecognised header)")
    fh.seek(0)
    try:
        if fmt == "tiff":
            return _decode_tiff(fh, series, channel)
        if series or channel:
            raise _Unreadable(f"no series {series} channel {channel}: a {fmt.upper()} file has one channel")
        return _decode_pillow(fh, fmt)
    except (_Unreadable, MemoryError):
        raise
    except Image.DecompressionBombError as exc:
        raise _Unreadable(f"image too large to decode safely ({exc})") from exc
    # Decoders fail on damaged input with anything from struct.error to zlib.error or SyntaxError:
    # every failure while decoding bytes that passed the magic check means a damaged file.
    except Exception as exc:
        raise _Unreadable(f"truncated or corrupt image ({_describe(exc)})") from exc


_BYTES_LITERAL = re.compile(r"""b(['"]).*?(?<!\\)\1""")
_MAX_REASON = 200


def _describe(exc: BaseException) -> str:
    """A decoder's exception as one short line without file contents: byte literals that decoders put
    in their messages (``broken PNG file (chunk b'...')``) are replaced by ``<bytes>``."""
    text = " ".join(_BYTES_LITERAL.sub("<bytes>", str(exc)).split())
    if len(text) > _MAX_REASON:
        text = text[:_MAX_REASON - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_size(shape: Sequence[int], what: str) -> None:
    """Refuse an image whose declared size exceeds :data:`MAX_PIXELS` (before reading its pixels)."""
    pixels = 1
    for n in shape:
        pixels *= int(n)
    if pixels > MAX_PIXELS:
        dims = " x ".join(str(int(n)) for n in shape)
        raise _Unreadable(f"image too large ({what} declares {dims} = {pixels:,} pixels; "
                          f"the limit is {MAX_PIXELS:,})")


def _decode_tiff(fh: BinaryIO, index: int = 0, channel: int | None = None) -> np.ndarray:
    with tifffile.TiffFile(fh) as tif:
        _check_ifd_chain(tif)
        if not tif.series:
            raise _Unreadable("truncated or corrupt image (TIFF without image data)")
        if index >= len(tif.series):
            raise _Unreadable(f"no series {index}: the file has {len(tif.series)}")
        series = tif.series[index]
        if any(page is None for page in series.pages):
            raise _Unreadable("truncated or corrupt image (TIFF series with missing pages)")
        _check_size(series.shape, "TIFF header")
        axes = series.axes
        if channel is None:
            image = np.asarray(series.asarray())
        elif "C" not in axes:
            if channel:
                raise _Unreadable(f"no channel {channel}: the image has 1 (axes {axes!r})")
            image = np.asarray(series.asarray())
        else:
            image, axes = _tiff_channel(series, axes, channel)
    return _squeeze_tiff_axes(image, axes)


def _tiff_channel(series: tifffile.TiffPageSeries, axes: str, channel: int) -> tuple[np.ndarray, str]:
    """Channel ``channel`` of a TIFF series with a C axis, reading only its pages (tifffile's zarr view)."""
    import zarr  # only for multi-channel files

    count = series.shape[axes.index("C")]
    if channel >= count:
        raise _Unreadable(f"no channel {channel}: the image has {count} (axes {axes!r})")
    with series.aszarr(level=0) as store:
        # tifffile's store over an in-memory file (an S3 object) is not marked read-only, and zarr refuses
        # mode "r" on such a store; nothing here writes to it either way
        array = zarr.open_array(store, mode="r" if store.read_only else "a")
        plane = array[tuple(channel if ax == "C" else slice(None) for ax in axes)]
    return np.asarray(plane), axes.replace("C", "")


def _check_ifd_chain(tif: tifffile.TiffFile) -> None:
    """Fail if the chain of image file directories stops before its end-of-chain marker.

    tifffile logs and drops pages whose directory lies beyond the end of the file, so a z-stack cut
    in half would otherwise be read as its first planes without an error.
    """
    if tif.is_scanimage or tif.is_lsm:  # their pages are indexed by other means
        return
    pages = tif.pages
    count = len(pages)  # reads every directory offset
    if count == 0:
        raise _Unreadable("truncated or corrupt image (TIFF without pages)")
    position = pages.next_page_offset
    if position is None:
        return
    size = tif.tiff.offsetsize
    fh = tif.filehandle
    fh.seek(position)
    raw = fh.read(size)
    if len(raw) < size:
        raise _Unreadable(f"truncated or corrupt image (TIFF directory {count} cut off)")
    (next_offset,) = struct.unpack(tif.tiff.offsetformat, raw)
    if next_offset != 0:
        raise _Unreadable(
            f"truncated or corrupt image (TIFF directory after page {count} at offset {next_offset} "
            f"is unreadable; file size {fh.size})"
        )


def _squeeze_tiff_axes(image: np.ndarray, axes: str) -> np.ndarray:
    """Reduce a TIFF series to (H, W) or (Z, H, W) using tifffile's axes codes."""
    if len(axes) != image.ndim:  # should not happen; do not guess
        raise _Unreadable(f"unsupported dimensions (shape {image.shape} does not match axes {axes!r})")
    keep = [i for i, ax in enumerate(axes) if image.shape[i] > 1 or ax in "YX"]
    image = image.reshape([image.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "S" in axes:
        image, axes = _single_sample(image, axes)
    if "C" in axes:
        n = image.shape[axes.index("C")]
        raise _Unreadable(
            f"file holds {n} channels (axes {axes!r}); name one (URI#c=N) or import the file as a multi-channel "
            "OME-TIFF"
        )
    extra = axes.replace("Y", "").replace("X", "")
    if not axes.endswith("YX") or len(extra) > 1 or (extra and extra not in _DEPTH_AXES):
        raise _Unreadable(
            f"unsupported dimensions (expected 2-D or 3-D, got shape {image.shape} with axes {axes!r})"
        )
    return image


def _single_sample(image: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Drop the samples axis of an RGB / multi-sample image whose samples are all equal."""
    s = axes.index("S")
    samples = np.moveaxis(image, s, 0)
    if not (samples == samples[:1]).all():
        raise _Unreadable(
            f"image has {samples.shape[0]} samples per pixel (RGB or multi-sample, shape {image.shape}); "
            "channels must be separate single-channel files"
        )
    return np.ascontiguousarray(samples[0]), axes.replace("S", "")


def _decode_pillow(fh: BinaryIO, fmt: _Format) -> np.ndarray:
    with Image.open(fh, formats=[fmt.upper()]) as img:
        _check_size((img.height, img.width, len(img.getbands())), f"{fmt.upper()} header")
        img.load()
        if img.mode in _GREY_MODES:
            return np.array(img)
        if img.mode == "1":
            return np.array(img.convert("L"))
        if img.mode == "P" and "transparency" not in img.info:
            img = img.convert("RGB")
        if img.mode == "RGB":
            image, _ = _single_sample(np.array(img), "YXS")
            return image
        bands = img.getbands()
        raise _Unreadable(
            f"image has {len(bands)} bands (Pillow mode {img.mode!r}); "
            "channels must be separate single-channel files"
        )


def _check_dimensions(image: np.ndarray) -> np.ndarray:
    if image.ndim not in (2, 3) or image.size == 0:
        raise _Unreadable(f"unsupported dimensions (expected 2-D or 3-D, got shape {image.shape})")
    if not image.dtype.isnative:
        image = image.astype(image.dtype.newbyteorder("="))
    return image
