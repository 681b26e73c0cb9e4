"""What every importer produces: plates of fields, each field a set of channel files plus metadata.

Importers (:mod:`.loaddata`, :mod:`.manifest`, :mod:`.folder`, :mod:`.omezarr`) only parse and validate
their input into these records; :class:`bioims.services.image_management.ImageManagementService` registers
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput
from ..names import check_name

METADATA_KEYS = ("compound", "concentration", "moa", "batch", "replicate")
"""Metadata keys with a meaning (tags ``compound:``, ``moa:``, ``batch:``, ``concentration:``); any
other key an importer finds is kept as well."""


@dataclass(frozen=True)
class FieldRecord:
    """One field of view (site) of a well.

    Attributes
    ----------
    well : str
        Source well name, e.g. ``"G10"``.
    site : str
        Source field / site identifier within the well, e.g. ``"s1"`` (unique per well).
    channel_uris : dict[str, str]
        Channel name -> image URI (``file:///...`` or ``s3://...``), in the plate's channel order.
    metadata : dict[str, Any]
        ``compound`` (str), ``concentration`` (float), ``moa`` (str), ``batch`` (str), ``replicate``
        (int) when known, plus any other key of the source.
    """

    well: str
    site: str
    channel_uris: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlateRecord:
    """A source plate: its id in the source (e.g. ``"Week1_22123"``), channel names and fields.

    Channel names become parts of file names (a flat-field per channel, :mod:`bioims.store.keys`), so
    each must be a name (:mod:`bioims.names`): a record with another channel is never made.

    Raises
    ------
    InvalidInput
        A channel is not a valid name (the message names the plate and the channel).
    """

    source_id: str
    channels: tuple[str, ...]
    fields: tuple[FieldRecord, ...]
    experiment: str = "default"
    batch: str | None = None

    def __post_init__(self) -> None:
        for channel in self.channels:
            check_name(channel, f"plate {self.source_id!r}: channel")


def expand_ome_tiff(channel_uris: dict[str, str], where: str,
                    check: Callable[[str, str], object] | None = None) -> dict[str, str]:
    """A field given as one local multi-channel OME-TIFF, as its channels: ``{name: URI#c=N}`` with the names
    of its OME-XML (first series); any other field is returned as it is.

    This is how the LoadData (one ``FileName_`` column) and manifest (one ``channelKeys`` entry) importers
    take a whole field from one file; the folder importer does the same for patterns without a channel.

    ``check(uri, what)`` (an API request's :meth:`~bioims.store.roots.IngestRoots.check`) is called before the
    file is opened: a request never has a file outside the ingest roots read.

    Raises
    ------
    InvalidInput
        The file is an OME-TIFF whose OME-XML does not match its pixels (``where`` names the record), or
        ``check`` refuses it.
    """
    from ..imaging.io import channel_ref, split_ref
    from ..imaging.ome import tiff_channels
    from ..store.objects import uri_to_path

    if len(channel_uris) != 1:
        return channel_uris
    (uri,) = channel_uris.values()
    if not uri.startswith("file://") or split_ref(uri)[1] is not None:
        return channel_uris
    if check is not None:
        check(uri, f"{where}: image")
    path = uri_to_path(uri)
    if not path.is_file():
        return channel_uris  # registered as a missing file, as any other
    try:
        series = tiff_channels(path)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}") from None
    if series is None:
        return channel_uris
    return {name: channel_ref(uri, i) for i, name in enumerate(series[0])}
