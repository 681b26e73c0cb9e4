"""Read the seed's ``sourcePlateInfo`` JSON (one plate per document) into a plate record.

The document::

    {"plateSourceId": "Week1_22123",
     "images": [{"wellId": "B02", "imageSourceId": "B02_s1",
                 "channelKeys": [{"name": "DAPI", "keysuffix": "Week1/Week1_22123/B02_s1_w1.tif"}, ...],
                 "imageBucket": "my-bucket", "imageKeyPrefix": "", "experiment": "BBBC021",
                 "trainCategory": "moa", "trainLabel": "Actin disruptors",
                 "compound": "cytochalasin B", "concentration": 10.0, "batch": "Week1", "replicate": 1},
                ...]}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..imaging.io import channel_ref
from ..names import check_name
from .loaddata import BATCH_PATTERN, location_uri, plate_records
from .records import FieldRecord, PlateRecord, expand_ome_tiff

_STRUCTURAL_KEYS = frozenset(
    {
        "wellId",
        "imageSourceId",
        "sourcePlateId",
        "sourceWellId",
        "channelKeys",
        "experiment",
        "imageBucket",
        "imageKeyPrefix",
        "trainCategory",
        "trainLabel",
    }
)
"""Image keys that describe where the image is, not the treatment; every other key is metadata."""


def read_manifest(
    data: bytes | str | dict[str, Any],
    *,
    source: str = "<manifest>",
    root: str | Path | None = None,
    check: Callable[[str, str], object] | None = None,
) -> PlateRecord:
    """Parse and validate one plate's ``sourcePlateInfo`` document.

    Parameters
    ----------
    data : bytes, str or dict
        The JSON text, or the already decoded document.
    source : str
        How error messages name the document (e.g. its file path).
    root : str or Path, optional
        What relative keys are under (a local folder or ``s3://bucket/prefix``) for images without an
        ``imageBucket``.
    check : callable, optional
        ``check(uri, what)`` raises for an image outside the ingest roots; called before a single-channel-key
        image's file is opened to read its OME-XML (the API passes its roots' check; the CLI reads the user's
        own files).

    Returns
    -------
    PlateRecord
        ``source_id`` = ``plateSourceId``; one field per image, in document order, with ``well`` =
        ``wellId`` and ``site`` = ``imageSourceId``. A channel's URI is
        ``s3://{imageBucket}/{imageKeyPrefix}{keysuffix}`` when the image has a bucket, else
        ``imageKeyPrefix + keysuffix`` taken as a URI, an absolute path or a path under ``root``. A
        channel key's ``frame`` and ``series`` (integers) name one channel of a multi-channel file; an image
        with a single channel key whose file is a local multi-channel OME-TIFF has the channels its OME-XML
        names.
        Metadata: ``trainLabel`` is the ``moa`` when ``trainCategory`` is absent or ``"moa"`` (else it is
        kept under the category's name); ``compound`` (str), ``concentration`` (float), ``replicate``
        (int), ``batch`` (str, default the plate name's ``WeekN`` prefix) and any other non-null image key
        are kept. The plate's experiment is the images' ``experiment`` (default ``"default"``) and its
        batch their common batch, if any.

    Raises
    ------
    InvalidInput
        Not JSON; not an object; a missing or mistyped key (named with the image index); a channel
        that is not a name (:mod:`bioims.names`, named with the plate); images that
        disagree on channels (names and order), plate or experiment; a duplicate (well, imageSourceId);
        a relative key with no bucket and no ``root``.

    Examples
    --------
    >>> plate = read_manifest('{"plateSourceId": "P1", "images": [{"wellId": "B02", '
    ...     '"imageSourceId": "B02_s1", "imageBucket": "b", "channelKeys": '
    ...     '[{"name": "DAPI", "keysuffix": "P1/B02_s1_w1.tif"}]}]}')
    >>> plate.fields[0].channel_uris
    {'DAPI': 's3://b/P1/B02_s1_w1.tif'}
    """
    document = _decode(data, source)
    plate = _string(document, "plateSourceId", f"manifest {source}")
    images = document.get("images")
    if not isinstance(images, list) or not images:
        raise InvalidInput(f"manifest {source}: 'images' must be a non-empty list")

    plate_batch = BATCH_PATTERN.match(plate)
    channels: tuple[str, ...] | None = None
    experiments: set[str] = set()
    seen: dict[tuple[str, str], int] = {}
    fields = []
    for index, image in enumerate(images):
        where = f"manifest {source}: images[{index}]"
        if not isinstance(image, dict):
            raise InvalidInput(f"{where} must be an object")
        well = _string(image, "wellId", where)
        site = _string(image, "imageSourceId", where)
        if image.get("sourcePlateId", plate) != plate:
            raise InvalidInput(f"{where}: sourcePlateId {image['sourcePlateId']!r} is not plate {plate!r}")
        if (well, site) in seen:
            raise InvalidInput(
                f"{where}: duplicate well {well!r} imageSourceId {site!r} (also images[{seen[well, site]}])"
            )
        seen[well, site] = index
        uris = _channel_uris(image, where, root, check)
        if channels is None:
            for name in uris:  # a channel names a file of the store (bioims.store.keys)
                check_name(name, f"manifest {source}: plate {plate!r}: channel")
            channels = tuple(uris)
        elif tuple(uris) != channels:
            raise InvalidInput(f"{where}: channels {list(uris)} differ from images[0]'s {list(channels)}")
        experiments.add(_string(image, "experiment", where) if "experiment" in image else "default")
        metadata = _metadata(image, where)
        if "batch" not in metadata and plate_batch:
            metadata["batch"] = plate_batch.group(1)
        fields.append(FieldRecord(well=well, site=site, channel_uris=uris, metadata=metadata))

    if len(experiments) > 1:
        raise InvalidInput(f"manifest {source}: images belong to several experiments: {sorted(experiments)}")
    (record,) = plate_records({plate: fields}, channels or (), experiments.pop())
    return record


def _decode(data: bytes | str | dict[str, Any], source: str) -> dict[str, Any]:
    if isinstance(data, dict):
        document: Any = data
    else:
        try:
            document = json.loads(data)
        except json.JSONDecodeError as e:
            raise InvalidInput(
                f"manifest {source} is not valid JSON: line {e.lineno} column {e.colno}: {e.msg}"
            ) from None
        except UnicodeDecodeError as e:
            raise InvalidInput(f"manifest {source} is not valid JSON: not UTF-8 text ({e.reason})") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"manifest {source} must be a JSON object, not {type(document).__name__}")
    return document


def _string(obj: dict[str, Any], key: str, where: str) -> str:
    """``obj[key]`` as a non-empty string; InvalidInput naming the key otherwise."""
    if key not in obj:
        raise InvalidInput(f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}: {key!r} must be a non-empty string, not {value!r}")
    return value.strip()


def _channel_uris(image: dict[str, Any], where: str, root: str | Path | None,
                  check: Callable[[str, str], object] | None) -> dict[str, str]:
    keys = image.get("channelKeys")
    if keys is None:
        raise InvalidInput(f"{where}: missing key 'channelKeys'")
    if not isinstance(keys, list) or not keys:
        raise InvalidInput(f"{where}: 'channelKeys' must be a non-empty list")
    bucket = image.get("imageBucket") or ""
    prefix = image.get("imageKeyPrefix") or ""
    if not isinstance(bucket, str) or not isinstance(prefix, str):
        raise InvalidInput(f"{where}: 'imageBucket' and 'imageKeyPrefix' must be strings")
    uris: dict[str, str] = {}
    for number, channel in enumerate(keys):
        at = f"{where}.channelKeys[{number}]"
        if not isinstance(channel, dict):
            raise InvalidInput(f"{at} must be an object")
        name = _string(channel, "name", at)
        key = prefix + _string(channel, "keysuffix", at)
        if name in uris:
            raise InvalidInput(f"{at}: channel {name!r} appears twice")
        if bucket:
            uris[name] = f"s3://{bucket}/{key.lstrip('/')}"
        elif "://" in key or Path(key).is_absolute():
            uris[name] = location_uri(key, "/")
        elif root is None:
            raise InvalidInput(f"{at}: relative keysuffix {key!r} needs an imageBucket or a root")
        else:
            uris[name] = location_uri(key, root)
        if "frame" in channel or "series" in channel:  # one channel of a multi-channel file
            frame, series = (_index(channel, k, at) for k in ("frame", "series"))
            uris[name] = channel_ref(uris[name], frame, series)
    return expand_ome_tiff(uris, where, check)


def _index(channel: dict[str, Any], key: str, at: str) -> int:
    value = channel.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**6:
        raise InvalidInput(f"{at}: {key!r} must be a non-negative integer, not {value!r}")
    return value


def _metadata(image: dict[str, Any], where: str) -> dict[str, Any]:
    """Treatment metadata of an image: every non-structural, non-null key, known keys typed."""
    metadata: dict[str, Any] = {k: v for k, v in image.items() if k not in _STRUCTURAL_KEYS and v is not None}
    label = image.get("trainLabel")
    if label is not None:
        category = image.get("trainCategory") or "moa"
        if category in metadata and metadata[category] != label:
            raise InvalidInput(f"{where}: trainLabel {label!r} contradicts {category} {metadata[category]!r}")
        metadata[category] = label
    for key, kind in (("compound", str), ("moa", str), ("batch", str), ("concentration", float)):
        if key in metadata:
            metadata[key] = _typed(metadata[key], kind, key, where)
    if "replicate" in metadata:
        replicate = _typed(metadata["replicate"], float, "replicate", where)
        if not replicate.is_integer():
            raise InvalidInput(f"{where}: 'replicate' must be an integer, not {metadata['replicate']!r}")
        metadata["replicate"] = int(replicate)
    return metadata


def _typed(value: Any, kind: type[str] | type[float], key: str, where: str) -> Any:
    if kind is str:
        if not isinstance(value, str):
            raise InvalidInput(f"{where}: {key!r} must be a string, not {value!r}")
        return value
    if isinstance(value, bool):
        raise InvalidInput(f"{where}: {key!r} must be a number, not {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: {key!r} must be a number, not {value!r}") from None
