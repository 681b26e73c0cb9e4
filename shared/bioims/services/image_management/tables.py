"""The image-management service's tables: plates, wells and images (one row per field, and one per
(field, spec or train run) holding that run's results for it)."""

from __future__ import annotations

from pynamodb.attributes import BinaryAttribute, ListAttribute, MapAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.indexes import AllProjection
from pynamodb.models import Model

from ...contract.enums import ImageStatus, PlateStatus
from ...store.tables import Index, TableSet


# ----------------------------------------------------------------------------------------------- images
class ImagesByPlate(Index):
    class Meta:
        index_name = "by_plate"
        projection = AllProjection()

    plate_id = UnicodeAttribute(hash_key=True)
    train_id = UnicodeAttribute(range_key=True)


class ImagesByPlateWell(Index):
    class Meta:
        index_name = "by_plate_well"
        projection = AllProjection()

    plate_id = UnicodeAttribute(hash_key=True)
    well_id = UnicodeAttribute(range_key=True)


class Image(Model):
    """One field of view (``train_id == "origin"``) or one train run's result for it.

    Origin rows carry the plate, well, source ids, ``channel_uris`` (channel name -> URI, in channel
    order ``channels``), metadata (compound, concentration, moa, batch, replicate, ...), inspection
    results (``width``, ``height``, ``depth``, ``dtype``), ``status`` (``registered`` -> ``valid`` |
    ``invalid``) and ``error`` (the exact problem). Train rows carry ``embedding`` (float32 bytes),
    ``cell_count`` and result URIs; they have no ``well_id`` so ``by_plate_well`` stays origin-only.
    """

    image_id = UnicodeAttribute(hash_key=True)
    train_id = UnicodeAttribute(range_key=True)
    plate_id = UnicodeAttribute()
    well_id = UnicodeAttribute(null=True)
    plate_source_id = UnicodeAttribute(null=True)
    well_source_id = UnicodeAttribute(null=True)
    field_source_id = UnicodeAttribute(null=True)
    channels = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    channel_uris = MapAttribute(null=True)  # type: ignore[var-annotated]
    metadata = MapAttribute(null=True)  # type: ignore[var-annotated]
    width = NumberAttribute(null=True)
    height = NumberAttribute(null=True)
    depth = NumberAttribute(null=True)
    dtype = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default=ImageStatus.REGISTERED)
    error = UnicodeAttribute(null=True)
    cell_count = NumberAttribute(null=True)
    embedding = BinaryAttribute(null=True, legacy_encoding=False)
    results = MapAttribute(null=True)  # type: ignore[var-annotated]
    created_at = UTCDateTimeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)

    by_plate = ImagesByPlate()
    by_plate_well = ImagesByPlateWell()


# ----------------------------------------------------------------------------------------------- plates
class PlatesBySource(Index):
    class Meta:
        index_name = "by_source"
        projection = AllProjection()

    source_id = UnicodeAttribute(hash_key=True)


class PlatesByShape(Index):
    class Meta:
        index_name = "by_shape"
        projection = AllProjection()

    shape_key = UnicodeAttribute(hash_key=True)


class Plate(Model):
    """A plate. ``shape_key`` (``"{width}x{height}x{depth}x{channel_count}"``) is set only once the plate
    is validated, so ``by_shape`` lists exactly the searchable plates of one image shape."""

    plate_id = UnicodeAttribute(hash_key=True)
    source_id = UnicodeAttribute()
    experiment = UnicodeAttribute(null=True)
    batch = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default=PlateStatus.REGISTERED)
    image_count = NumberAttribute(default=0)
    well_count = NumberAttribute(default=0)
    channels = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    width = NumberAttribute(null=True)
    height = NumberAttribute(null=True)
    depth = NumberAttribute(null=True)
    shape_key = UnicodeAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    problems = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    created_at = UTCDateTimeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)

    by_source = PlatesBySource()
    by_shape = PlatesByShape()


class Well(Model):
    plate_id = UnicodeAttribute(hash_key=True)
    well_id = UnicodeAttribute(range_key=True)
    source_id = UnicodeAttribute()
    image_count = NumberAttribute(default=0)
    metadata = MapAttribute(null=True)  # type: ignore[var-annotated]


class ImageTables(TableSet):
    """The tables this owner alone reads and writes."""

    MODELS = {"images": Image, "plates": Plate, "wells": Well}
    images: type[Image]
    plates: type[Plate]
    wells: type[Well]
