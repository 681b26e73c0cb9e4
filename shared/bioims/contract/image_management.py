"""The image-management service's contract: plates, wells and images (fields), ingestion of the seed's plate
manifests, inspection, validation, thumbnails, and the preprocessing units of an embedding spec."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, JsonValue, StrictFloat, StringConstraints, Tag as Case, model_validator

from .artifact import Deleted
from .base import MAX_BODY_BYTES, Count, Id, Model, Name, Operation, Pixels, Request, Service, SpecName, Uri, alias, s3_location
from .enums import ExecutionStatus, ImageStatus, PlateStatus, ResultStatus
from .tags import Tag, TagList

ORIGIN = "origin"
"""The train id of an image's own row (other rows hold one train run's or one spec's results for it)."""
MAX_PLATES = 10_000
"""Plates of one request."""
MAX_DIMENSIONS = 16_384
"""Components of an embedding vector (64 KB of float32, far below DynamoDB's 400 KB items)."""
ChannelCount = Annotated[int, Field(ge=1, le=1024)]
"""A number of channels."""


def _manifest_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "document"
    if isinstance(value, str):
        return "uri" if value.startswith(("file://", "s3://")) else "text"
    return None


Manifest = Annotated[
    Annotated[dict[str, JsonValue], Case("document")] | Annotated[Uri, Case("uri")]
    | Annotated[str, StringConstraints(min_length=2, max_length=MAX_BODY_BYTES), Case("text")],
    Discriminator(_manifest_kind, custom_error_type="manifest_type",
                  custom_error_message="Input should be a sourcePlateInfo object, its JSON text or its URI"),
    Field(description="the seed's sourcePlateInfo document, its JSON text, or the file:// or s3:// URI of it "
                      "(under the ingest roots)")]
"""A plate manifest: the document itself, or where to read it."""


# ------------------------------------------------------------------------------------------------ responses
class Plate(Model):
    """A registered plate; the dims and ``shape_key`` are set once it is validated."""

    plate_id: str
    source_id: str = Field(description="the plate's name in its source (``Week1_22123``)")
    experiment: str | None = None
    batch: str | None = None
    status: PlateStatus
    image_count: int
    well_count: int
    channels: list[str] | None = Field(None, description="channel names, in order")
    width: int | None = None
    height: int | None = None
    depth: int | None = None
    shape_key: str | None = Field(None, description="``{width}x{height}x{depth}x{channels}`` of a validated plate")
    message_id: str | None = Field(None, description="the plate's activity log")
    problems: list[str] | None = Field(None, description="why the last validation failed")
    created_at: str | None = Field(None, description="ISO-8601 UTC")
    updated_at: str | None = Field(None, description="ISO-8601 UTC")


class Well(Model):
    """A well of a plate."""

    plate_id: str
    well_id: str
    source_id: str = Field(description="the well's name (``B02``)")
    image_count: int
    metadata: dict[str, JsonValue] | None = Field(None, description="compound, concentration, moa, replicate")


class Image(Model):
    """A field of view (``train_id`` ``origin``) or one train run's (or spec's) results for it."""

    image_id: str
    train_id: str = Field(description=f"{ORIGIN!r} for the field itself, else the train run or ``spec#<name>``")
    plate_id: str
    well_id: str | None = None
    plate_source_id: str | None = None
    well_source_id: str | None = None
    field_source_id: str | None = None
    channels: list[str] | None = Field(None, description="channel names, in order")
    channel_uris: dict[str, str] | None = Field(None, description="channel name -> URI of its image; a channel of a "
                                                   "multi-channel OME-TIFF or an OME-Zarr image ends ``#c=N`` "
                                                   "(``#s=M&c=N``: of series M)")
    metadata: dict[str, JsonValue] | None = Field(None, description="compound, concentration, moa, batch, ...")
    width: int | None = None
    height: int | None = None
    depth: int | None = None
    dtype: str | None = None
    status: ImageStatus | ResultStatus
    error: str | None = Field(None, description="the exact problem of an invalid or failed field")
    cell_count: int | None = None
    results: dict[str, JsonValue] | None = Field(None, description="URIs of the results (crops, rois, cells)")
    embedding: list[float] | None = Field(None, description="the field's embedding (getImageInfo only)")
    created_at: str | None = Field(None, description="ISO-8601 UTC")
    updated_at: str | None = Field(None, description="ISO-8601 UTC")


class Registered(Model):
    """A plate registered from a manifest."""

    plate_id: str
    images: int
    invalid_images: int = Field(description="images whose files are missing")


class Uploaded(Registered):
    """A plate registered from a manifest, and the processing it started."""

    execution_id: str = Field(description="the process-plate workflow's execution")


class Execution(Model):
    """A workflow execution."""

    execution_id: str
    workflow: str = Field(description="process-plate, preprocess, train, embed, ...")
    params: JsonValue = None
    status: ExecutionStatus
    output: JsonValue = None
    error: str | None = None
    started_at: str | None = Field(None, description="ISO-8601 UTC")
    finished_at: str | None = Field(None, description="ISO-8601 UTC")


class Validation(Model):
    """The outcome of validating a plate."""

    plate_id: str
    valid: bool
    problems: list[str]
    status: PlateStatus


class PlateImageStatus(Model):
    """Counts of a plate's images per status."""

    plate_id: str
    status: PlateStatus
    images: dict[ImageStatus, int] = Field(description="status -> images, e.g. ``{\"valid\": 1190, \"invalid\": 10}``")


class Inspection(Model):
    """The outcome of inspecting a field: its dims (``valid``), the problem (``invalid``), or ``skipped``."""

    image_id: str
    status: ImageStatus
    skipped: bool | None = Field(None, description="already inspected (nothing read)")
    error: str | None = None
    width: int | None = None
    height: int | None = None
    depth: int | None = None
    channels: int | None = Field(None, description="number of channel files")
    dtype: str | None = None


class Thumbnails(Model):
    """The thumbnails of a field (or why there are none)."""

    image_id: str
    thumbnails: dict[str, str] | None = Field(None, description="width -> URI of the PNG")
    written: int | None = Field(None, description="thumbnails written now (the others existed)")
    skipped: bool | None = None
    reason: str | None = Field(None, description="why it was skipped")


class FlatField(Model):
    """The flat-field of one plate x channel under a spec."""

    plate_id: str
    channel: str
    uri: str
    skipped: bool = Field(description="it existed (nothing computed)")
    images: int | None = Field(None, description="fields averaged")
    unreadable: list[str] | None = Field(None, description="ids of the fields left out")
    reasons: dict[str, str] | None = Field(None, description="id of a field left out -> why")


class Preprocessed(Model):
    """The single-cell crops of one field under a spec."""

    image_id: str
    cells: int
    skipped: bool = Field(description="they existed (nothing computed)")


# ------------------------------------------------------------------------------------------------ requests
class _SeedManifest(Request):
    """The manifest is a document, a URI or its text; the seed's ``{"inputBucket", "inputKey"}`` names it
    as an S3 object (``s3://inputBucket/inputKey``)."""

    manifest: Manifest

    @model_validator(mode="before")
    @classmethod
    def _seed_location(cls, data: Any) -> Any:
        return s3_location(data, "inputBucket", "inputKey", "manifest")


class PopulateSourcePlate(_SeedManifest):
    """Register one plate from the seed's sourcePlateInfo document (409 if it is already registered)."""


class UploadSourcePlate(_SeedManifest):
    """Register one plate from a sourcePlateInfo document, then start its processing (inspect, validate,
    thumbnails)."""


class ListPlates(Request):
    """Every registered plate, sorted by source id."""


class GetPlate(Request):
    """A plate by id or by source id."""

    plate: Id = Field(validation_alias=alias("plate", "plate_id"))


class InspectPlate(Request):
    """Start the process-plate workflow (inspect, validate, thumbnails); returns the execution id."""

    plate_id: Id


class ProcessPlate(Request):
    """Start the preprocess workflow (flat-fields, then every field's crops) for one plate under a spec, as
    the seed's processPlate does; returns the execution id (see startPreprocess for many plates)."""

    plate_id: Id
    spec: SpecName = Field(validation_alias=alias("spec", "embedding_name"))


class DescribeExecution(Request):
    """A workflow execution: its status, parameters and output."""

    execution_id: Id = Field(validation_alias=alias("execution_id", "execution_arn", "ExecutionArn"))


class ValidatePlate(Request):
    """Validate a plate: valid when every image was inspected valid and all share dims, channels and dtype."""

    plate_id: Id


class GetPlateImageStatus(Request):
    """Counts of a plate's images per status."""

    plate_id: Id


class CreatePlateMessageId(Request):
    """Start a new activity log for a plate (replacing the reference to the previous one)."""

    plate_id: Id


class GetPlateMessageId(Request):
    """The id of a plate's activity log."""

    plate_id: Id


class ListCompatiblePlates(Request):
    """Validated plates whose images have exactly these dims (pixels) and channel count."""

    width: Pixels
    height: Pixels
    depth: Pixels
    channels: ChannelCount


class GetImagesByPlateId(Request):
    """The fields of a plate (their own rows)."""

    plate_id: Id


class GetImagesByPlateIdAndTrainId(Request):
    """The rows of a plate's fields under one train run."""

    plate_id: Id
    train_id: Name


class GetImageIdsByPlateId(Request):
    """Ids of the fields of a plate."""

    plate_id: Id


class GetWellsByPlateId(Request):
    """The wells of a plate, sorted by source id."""

    plate_id: Id


class GetImagesByPlateAndWellId(Request):
    """The fields of a well, by the well's id or its source name (``G10``)."""

    plate_id: Id
    well_id: Id


class GetImageInfo(Request):
    """A field (or one train run's results for it, with its embedding)."""

    image_id: Id
    train_id: Name = ORIGIN


class GetImageView(Request):
    """A field as the web viewer shows it: each channel as an 8-bit greyscale PNG (its own 0.5-99.9
    percentile stretch, at most ``width`` pixels wide, never upscaled) for the browser to tint, window and
    composite, and, with ``spec``, the boxes of the cells cropped under that spec and up to ``crops`` of
    the crops (colour composites). 404 if there is no such field; a field that cannot be read is returned
    with its status and problem and no channels."""

    image_id: Id
    width: Annotated[int, Field(ge=16, le=2048)] = 512
    spec: SpecName | None = None
    crops: Annotated[int, Field(ge=0, le=200)] = 48


class SuggestSpec(Request):
    """An embedding spec for a registered plate's images, measured on them: its dims and channels, the
    nuclei channel guessed from the channel names (DAPI, Hoechst, DNA, ...; else the first), and a crop
    size and minimum nucleus size from the nuclei found in up to ``fields`` valid fields spread over the
    plate (crops of about six median radii, nuclei of at least a quarter of the median area). Nothing is
    registered: create the spec (createEmbedding) as it is or edited."""

    plate_id: Id
    fields: Annotated[int, Field(ge=1, le=64)] = 8
    name: SpecName | None = Field(None, description="the spec's name (default: from the plate's source id)")


class SuggestedSpec(Model):
    spec: dict[str, JsonValue] = Field(description="a spec for createEmbedding")
    nucleus_radius: float = Field(description="median equivalent radius of the nuclei found, pixels")
    nuclei: int = Field(description="nuclei found in the sample fields")
    fields: int = Field(description="sample fields measured")


class ViewChannel(Model):
    name: str
    png: str = Field(description="data:image/png;base64,... (8-bit greyscale)")


class CellBox(Model):
    x: int = Field(description="left edge, in the view's pixels")
    y: int = Field(description="top edge, in the view's pixels")
    width: int
    height: int


class ImageView(Model):
    image_id: str
    plate_id: str
    plate: str | None = Field(None, description="the plate's source id")
    well: str | None = Field(None, description="the well's source id")
    site: str | None = Field(None, description="the field's source id")
    status: ImageStatus | ResultStatus
    error: str | None = Field(None, description="the exact problem of an invalid field, or why it cannot be shown")
    metadata: dict[str, JsonValue] | None = None
    field_width: int | None = Field(None, description="the field's own size in pixels")
    field_height: int | None = None
    width: int | None = Field(None, description="the size of the channel PNGs (and the boxes' space)")
    height: int | None = None
    channels: list[ViewChannel] = Field(description="one per channel, in order (empty if the field cannot be read)")
    spec: str | None = None
    cells: int | None = Field(None, description="cells found under the spec (None: not preprocessed)")
    boxes: list[CellBox] | None = Field(None, description="the cells' crop boxes under the spec")
    crops: list[str] | None = Field(None, description="data:image/png;base64,... colour composites of the first crops")


class CreateImageTrainResult(Request):
    """Create or replace the row holding one train run's results for a field."""

    image_id: Id
    train_id: Name
    embedding: list[StrictFloat] | None = Field(None, max_length=MAX_DIMENSIONS,
                                                validation_alias=alias("embedding", "embedding_vector"))
    cell_count: Count | None = None
    results: dict[str, JsonValue] | None = Field(None, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _seed_roi_key(cls, data: Any) -> Any:
        """The seed's ``roiEmbeddingKey`` (its per-cell embeddings' object) is kept in ``results``."""
        if not isinstance(data, dict) or "roiEmbeddingKey" not in data:
            return data
        data = dict(data)
        results = data.get("results")
        if results is not None and not isinstance(results, dict):
            return data
        data["results"] = {**(results or {}), "roi_embedding_key": data.pop("roiEmbeddingKey")}
        return data


MAX_RESULTS = 500
"""Most field results of one createImageTrainResults call."""


class SpecField(Model):
    """A valid field of a plate as a spec's consumers see it (source ids, metadata, crops under the spec)."""

    image_id: str
    plate_id: str
    plate: str = Field(description="the plate's source id")
    well: str | None = Field(description="the well's source id")
    site: str | None = Field(description="the field's source id")
    batch: str | None
    metadata: dict[str, JsonValue]
    cells: int | None = Field(description="cells found under the spec (None: not preprocessed)")
    crops_uri: str | None = Field(description="the field's crops under the spec (None: not preprocessed)")
    channels: list[str] | None = Field(None, description="the field's channel names, in order")
    channel_uris: dict[str, str] | None = Field(None, description="channel name -> URI of its image")


class Written(Model):
    written: int


class ImageTrainResult(Model):
    """One field's result under a train run (createImageTrainResults)."""

    image_id: Id
    status: ResultStatus
    cell_count: Count | None = None
    embedding: list[StrictFloat] | None = Field(None, max_length=MAX_DIMENSIONS)
    results: dict[str, JsonValue] | None = Field(None, max_length=1000)
    error: Annotated[str, StringConstraints(max_length=4096)] | None = None


class CreateImageTrainResults(Request):
    """Create or replace the (image, train run) rows of many fields at once (an embedding job's results
    for a plate); every image must exist, else nothing is written (404)."""

    train_id: Name
    results: list[ImageTrainResult] = Field(max_length=MAX_RESULTS)


class DeleteImageTrainResults(Request):
    """Delete every field's row of one train run (deleteTraining's cleanup)."""

    train_id: Name


class ListSpecFields(Request):
    """A plate's valid fields with their metadata and, where preprocessed under the spec, their cell
    count and crops (``preprocessed``: only those), sorted by image id."""

    spec: SpecName
    plate_id: Id
    preprocessed: bool = True


class GetImageTags(Request):
    """Tags of a field (404 if there is no such field)."""

    image_id: Id


class UpdateImageTags(Request):
    """Replace the tags of a field; returns them."""

    image_id: Id
    tags: TagList = Field(validation_alias=alias("tags", "tag_list"))


class InspectImage(Request):
    """Read every channel of a field; record its dims and dtype (valid) or the exact problem (invalid).
    Already inspected fields are skipped unless ``force``."""

    image_id: Id
    force: bool = False


class MakeThumbnails(Request):
    """Colour max-projection PNGs of a valid field at each width (default: the configured ones), recorded as
    artifacts of the field; existing thumbnails are skipped."""

    image_id: Id
    widths: list[Pixels] | None = Field(None, max_length=16)


class StartPreprocess(Request):
    """Start the preprocess workflow (flat-fields, then every field's crops) for a spec's compatible plates
    (or the given ones); returns the execution id."""

    spec: SpecName
    plate_ids: list[Id] | None = Field(None, max_length=MAX_PLATES)


class ComputeFlatField(Request):
    """Compute the flat-field of one plate x channel under a spec (a unit of the preprocess workflow)."""

    spec: SpecName
    plate_id: Id
    channel: Name
    force: bool = False


class PreprocessImage(Request):
    """Compute the single-cell crops of one field under a spec (a unit of the preprocess workflow)."""

    spec: SpecName
    image_id: Id
    force: bool = False


_Op = Operation
SERVICE = Service("image-management", "bioims image-management service",
                  "Plates, wells and fields (images) with their source ids: registration from the seed's plate "
                  "manifests, inspection, plate validation, thumbnails, the tags of a field, and the preprocessing "
                  "(flat-fields, single-cell crops) of an embedding spec.", (
    _Op("populateSourcePlate", "populate_source_plate", "POST /plates", PopulateSourcePlate, Registered,
        status=201),
    _Op("uploadSourcePlate", "upload_source_plate", "POST /uploads", UploadSourcePlate, Uploaded, status=202),
    _Op("listPlates", "list_plates", "GET /plates", ListPlates, list[Plate]),
    _Op("getPlate", "get_plate", "GET /plates/{plate_id}", GetPlate, Plate),
    _Op("inspectPlate", "inspect_plate", "POST /plates/{plate_id}/inspect", InspectPlate, str, status=202,
        result_key="execution_id"),
    _Op("processPlate", "process_plate", "POST /plates/{plate_id}/process", ProcessPlate, str, status=202,
        result_key="execution_id"),
    _Op("describeExecution", "describe_execution", "GET /executions/{execution_id}", DescribeExecution, Execution),
    _Op("validatePlate", "validate_plate", "POST /plates/{plate_id}/validate", ValidatePlate, Validation),
    _Op("getPlateImageStatus", "get_plate_image_status", "GET /plates/{plate_id}/image-status",
        GetPlateImageStatus, PlateImageStatus),
    _Op("createPlateMessageId", "create_plate_message_id", "POST /plates/{plate_id}/message-id",
        CreatePlateMessageId, str, status=201, result_key="message_id"),
    _Op("getPlateMessageId", "get_plate_message_id", "GET /plates/{plate_id}/message-id", GetPlateMessageId, str,
        result_key="message_id"),
    _Op("listCompatiblePlates", "list_compatible_plates", "GET /compatible-plates", ListCompatiblePlates,
        list[Plate]),
    _Op("getImagesByPlateId", "get_images_by_plate_id", "GET /plates/{plate_id}/images", GetImagesByPlateId,
        list[Image]),
    _Op("getImagesByPlateIdAndTrainId", "get_images_by_plate_id_and_train_id",
        "GET /plates/{plate_id}/trains/{train_id}/images", GetImagesByPlateIdAndTrainId, list[Image]),
    _Op("getImageIdsByPlateId", "get_image_ids_by_plate_id", "GET /plates/{plate_id}/image-ids",
        GetImageIdsByPlateId, list[str]),
    _Op("getWellsByPlateId", "get_wells_by_plate_id", "GET /plates/{plate_id}/wells", GetWellsByPlateId,
        list[Well]),
    _Op("getImagesByPlateAndWellId", "get_images_by_plate_and_well_id",
        "GET /plates/{plate_id}/wells/{well_id}/images", GetImagesByPlateAndWellId, list[Image]),
    _Op("getImageInfo", "get_image_info", "GET /images/{image_id}", GetImageInfo, Image),
    _Op("createImageTrainResult", "create_image_train_result", "PUT /images/{image_id}/train-results/{train_id}",
        CreateImageTrainResult, Image),
    _Op("createImageTrainResults", "create_image_train_results", "POST /train-results/{train_id}",
        CreateImageTrainResults, Written),
    _Op("deleteImageTrainResults", "delete_image_train_results", "DELETE /train-results/{train_id}",
        DeleteImageTrainResults, Deleted),
    _Op("listSpecFields", "list_spec_fields", "GET /plates/{plate_id}/spec-fields/{spec}", ListSpecFields,
        list[SpecField]),
    _Op("getImageTags", "get_image_tags", "GET /images/{image_id}/tags", GetImageTags, list[Tag]),
    _Op("getImageView", "get_image_view", "GET /images/{image_id}/view", GetImageView, ImageView),
    _Op("suggestSpec", "suggest_spec", "GET /plates/{plate_id}/suggested-spec", SuggestSpec, SuggestedSpec),
    _Op("updateImageTags", "update_image_tags", "PUT /images/{image_id}/tags", UpdateImageTags, list[Tag]),
    _Op("inspectImage", "inspect_image", "POST /images/{image_id}/inspect", InspectImage, Inspection),
    _Op("makeThumbnails", "make_thumbnails", "POST /images/{image_id}/thumbnails", MakeThumbnails, Thumbnails),
    _Op("startPreprocess", "start_preprocess", "POST /preprocess/{spec}", StartPreprocess, str, status=202,
        result_key="execution_id"),
    _Op("computeFlatField", "compute_flatfield", "POST /plates/{plate_id}/flatfields/{spec}/{channel}",
        ComputeFlatField, FlatField),
    _Op("preprocessImage", "preprocess_image", "POST /images/{image_id}/preprocess/{spec}", PreprocessImage,
        Preprocessed),
))
