"""The training service's contract: embedding specs (the seed's "embedding"), train runs and their models.

The spec document of ``createEmbedding`` is typed here (:class:`EmbeddingSpec`) with the keys, types and
ranges of :mod:`bioims.specs`, so that a bad spec is refused at the boundary with the offending key named
(``spec.input.channels.0: String should match pattern ...``); the rules that relate several keys (distinct
channels, a segmentation channel among them, an ROI large enough for the network) stay with
:meth:`bioims.specs.EmbeddingSpec.from_dict`, which also fills in the defaults: the contract passes on
only the keys a client gave.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from .artifact import LogMessage
from .base import (MAX_ITEMS, MAX_TEXT, Id, Model, Name, Operation, Pixels, Request, Service, SpecName, Uri, alias,
                   s3_location, unwrap)
from .enums import Compute, Holdout, Loss, Network, PlateStatus, TrainStatus

MAX_CHANNELS = 64
"""Most channels of a spec's input."""
MAX_EPOCHS = 10_000
"""Most epochs of a train run."""
MAX_SEED = 2**32 - 1
"""Largest random seed (seeds are 32-bit)."""
MAX_BATCH = 65_536
"""Largest training batch (crops)."""
MAX_FOLDS = 1000
"""Most folds of ``--holdout folds``."""
MAX_TEMPERATURE = 100.0
"""Largest loss temperature."""
MAX_LEARNING_RATE = 10.0
"""Largest learning rate."""

Epochs = Annotated[int, Field(ge=0, le=MAX_EPOCHS)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Temperature = Annotated[float, Field(gt=0, le=MAX_TEMPERATURE)]
LearningRate = Annotated[float, Field(gt=0, le=MAX_LEARNING_RATE)]
LabelCategory = Id
"""A label category (``moa``): the metadata key whose values are the classes of training."""


# ------------------------------------------------------------------------------------------- spec document
class _Document(BaseModel):
    """Base of the spec document's sections: exactly the keys of :mod:`bioims.specs` (no camelCase, no
    unknown keys), JSON types as they are (``"128"`` is not an integer), finite numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_enum_values=True, frozen=True,
                              str_max_length=MAX_TEXT)


SpecInt = Annotated[int, Field(strict=True)]
"""A JSON integer (never a float such as 128.0, a bool or a string, as :mod:`bioims.specs`)."""
SpecFloat = Annotated[float, Field(strict=True)]
"""A JSON number (an integer or not; never a bool or a string)."""


class InputShape(_Document):
    """Image dims in pixels and the channel names, in channel order."""

    width: Annotated[Pixels, Field(strict=True)]
    height: Annotated[Pixels, Field(strict=True)]
    depth: Annotated[int, Field(strict=True, ge=1, le=4096, description="z-planes")]
    channels: list[Name] = Field(min_length=1, max_length=MAX_CHANNELS,
                                 description="distinct channel names, in channel order")


class FlatFieldSettings(_Document):
    """The flat-field of a plate's channel: its mean image clipped at a percentile, Gaussian-smoothed."""

    cutoff_percentile: Annotated[SpecFloat, Field(gt=0, le=100)] = 30.0
    sigma: Annotated[SpecFloat, Field(ge=0, le=65536, description="pixels")] = 50.0


class NormalizationSettings(_Document):
    """Per-channel normalisation: clip at a percentile, divide by the flat-field, log, cap, rescale."""

    clip_percentile: Annotated[SpecFloat, Field(gt=0, le=100)] = 99.0
    log_cap: Annotated[SpecFloat, Field(gt=0, le=1e6)] = 5.0


class SegmentationSettings(_Document):
    """Nucleus segmentation."""

    declump: Annotated[bool, Field(strict=True, description="also split touching nuclei")] = False


class TrainingSettings(_Document):
    """How a spec's models are trained (AdamW, cosine decay, early stopping on a validation NSC)."""

    epochs: Annotated[SpecInt, Field(ge=1, le=MAX_EPOCHS)] = 30
    batch_size: Annotated[SpecInt, Field(ge=2, le=MAX_BATCH)] = 128
    learning_rate: Annotated[SpecFloat, Field(gt=0, le=MAX_LEARNING_RATE)] = 2e-3
    weight_decay: Annotated[SpecFloat, Field(ge=0, le=1e6)] = 1e-4
    temperature: Annotated[SpecFloat, Field(gt=0, le=MAX_TEMPERATURE)] = 0.1
    patience: Annotated[SpecInt, Field(ge=1, le=MAX_EPOCHS, description="epochs without a better score")] = 5
    seed: Annotated[SpecInt, Field(ge=0, le=MAX_SEED)] = 0
    folds: Annotated[SpecInt, Field(ge=2, le=MAX_FOLDS, description="K of --holdout folds")] = 5
    label_category: Annotated[LabelCategory, Field(strict=True)] = "moa"
    compute: Compute = Compute.CPU
    validation_fraction: Annotated[SpecFloat, Field(ge=0, lt=1, description="of each compound's wells")] = 0.2


class EmbeddingSpec(_Document):
    """An embedding spec document (``bioims spec create FILE.json``): what images a model takes and how it
    is built and trained. Omitted sections and keys get their documented defaults."""

    name: Annotated[SpecName, Field(strict=True)]
    input: InputShape
    segmentation_channel: Name = Field(description="the nucleus channel (one of the input channels)")
    roi_size: Annotated[SpecInt, Field(ge=16, le=4096, description="crop side in pixels")]
    min_nucleus_voxels: Annotated[SpecInt, Field(ge=1, le=10**7)]
    embedding_length: Annotated[SpecInt, Field(ge=2, le=65536)]
    flatfield: FlatFieldSettings = FlatFieldSettings()
    normalization: NormalizationSettings = NormalizationSettings()
    segmentation: SegmentationSettings = SegmentationSettings()
    network: Network = Field(Network.RESNET, description="resnet (default) or the seed's convolutions")
    loss: Loss = Field(Loss.PROXY, description="proxy (default), supcon, or the seed's pair loss")
    training: TrainingSettings = TrainingSettings()


# ------------------------------------------------------------------------------------------------ responses
class InputShapeInfo(Model):
    """A spec's image dims and channel names."""

    width: int
    height: int
    depth: int
    channels: list[str]


class FlatFieldInfo(Model):
    """A spec's flat-field settings."""

    cutoff_percentile: float
    sigma: float


class NormalizationInfo(Model):
    """A spec's normalisation settings."""

    clip_percentile: float
    log_cap: float


class SegmentationInfo(Model):
    """A spec's segmentation settings."""

    declump: bool


class TrainingSettingsInfo(Model):
    """A spec's training settings."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    temperature: float
    patience: int
    seed: int
    folds: int
    label_category: str
    compute: Compute
    validation_fraction: float


class SpecInfo(Model):
    """An embedding spec with every default filled in."""

    name: str
    input: InputShapeInfo
    segmentation_channel: str
    roi_size: int
    min_nucleus_voxels: int
    embedding_length: int
    flatfield: FlatFieldInfo
    normalization: NormalizationInfo
    segmentation: SegmentationInfo
    network: Network
    loss: Loss
    training: TrainingSettingsInfo


class DeletedSpec(Model):
    """The name of the deleted spec."""

    deleted: str


class CompatiblePlate(Model):
    """A validated plate whose images have a spec's dims and channels."""

    plate_id: str
    source_id: str
    experiment: str | None = None
    batch: str | None = None
    status: PlateStatus
    image_count: int
    well_count: int
    channels: list[str]
    width: int
    height: int
    depth: int
    shape_key: str = Field(description="'{width}x{height}x{depth}x{channel count}'")
    message_id: str | None = Field(None, description="the plate's activity log")
    problems: list[str] | None = None
    created_at: str | None = Field(None, description="ISO-8601 UTC")
    updated_at: str | None = Field(None, description="ISO-8601 UTC")


class RunSettings(TrainingSettingsInfo):
    """A train run's effective settings: the spec's training settings with the run's overrides."""

    holdout_mode: Holdout
    network: Network
    loss: Loss


class EpochMetrics(Model):
    """One epoch of a train run."""

    epoch: int = Field(description="1, 2, ...")
    loss: float = Field(description="mean training loss")
    validation_nsc: float | None = Field(description="field-level NSC of the validation wells (None if none)")
    batches: int
    crops: int
    seconds: float
    crops_per_second: float


class Verification(Model):
    """The ONNX export checked against torch."""

    crops: int
    max_abs_diff: float
    tolerance: float
    opset: int


class RunMetrics(Model):
    """A train run's metrics (while it trains: ``history`` and ``best_epoch`` only)."""

    history: list[EpochMetrics]
    best_epoch: int = Field(description="the epoch exported (-1 for an untrained run)")
    best_validation_nsc: float | None = None
    stopped_early: bool | None = None
    resumed_from: list[int] | None = Field(None, description="epochs a killed training resumed from")
    verification: Verification | None = None


class ModelUris(Model):
    """The stored objects of a complete run."""

    onnx: str = Field(description="the ONNX model")
    card: str = Field(description="the model card (JSON)")
    checkpoint: str | None = Field(None, description="last epoch's state (none for an untrained run)")
    weights: str | None = Field(None, description="best epoch's weights (none for an untrained run)")


class TrainRun(Model):
    """A train run: spec, hold-out, filter, status, timestamps, settings, metrics, model URIs."""

    train_id: str = Field(description="'{spec}-{holdout mode}-{index}-{hash}'")
    spec_name: str
    created_at: str = Field(description="ISO-8601 UTC")
    status: TrainStatus
    holdout: list[str] = Field(description="the compounds it never trains on")
    filter_uri: str = Field(description="JSON list of the image ids it does not train on")
    filter_count: int
    settings: RunSettings
    message_id: str = Field(description="the run's activity log")
    model_uris: ModelUris | None = None
    metrics: RunMetrics | None = None
    error: str | None = Field(None, description="why it failed")
    started_at: str | None = Field(None, description="ISO-8601 UTC")
    finished_at: str | None = Field(None, description="ISO-8601 UTC")


class JobInfo(Model):
    """Progress of a run's training job."""

    train_id: str
    status: TrainStatus
    error: str | None
    epochs: int | None = Field(description="epochs planned")
    epochs_done: int
    best_epoch: int | None
    history: list[EpochMetrics]
    started_at: str | None = Field(description="ISO-8601 UTC")
    finished_at: str | None = Field(description="ISO-8601 UTC")
    messages: list[LogMessage]


class DeletedTraining(Model):
    """The deleted run and how many of its stored objects, fields' result rows and artifact records went."""

    deleted: str
    objects: int
    image_results: int
    artifacts: int


class TrainStarted(Model):
    """The ``train`` workflow started over a hold-out mode's runs."""

    execution_id: str
    train_ids: list[str]


# ------------------------------------------------------------------------------------------------ requests
SEED_HYPERPARAMETERS = {"epochs": "epochs", "batch_size": "batch_size", "batch-size": "batch_size",
                        "learning_rate": "learning_rate", "learning-rate": "learning_rate", "lr": "learning_rate",
                        "weight_decay": "weight_decay", "seed": "seed", "temperature": "temperature"}
"""The seed's ``trainingHyperparameters`` that bioims understands, and the training setting each sets."""
SEED_IGNORED = ("imageMethodArn", "imagePostMethodArn", "plateMethodArn", "wellMethodArn", "comments")
"""Keys of the seed's embedding that name its per-image Lambda functions or carry a comment: bioims's
preprocessing is built in, so they are accepted and not used."""


def seed_embedding(doc: Any) -> Any:
    """The seed's ``embedding`` document as a bioims spec (the seed's network and pair loss).

    ``inputChannels`` must name the channels (a count cannot be matched to plates); a square ROI
    (``roiWidth == roiHeight``) becomes ``roi_size``; the nucleus channel is ``segmentationChannel`` or
    the first channel; an ``ml.p*``/``ml.g*`` instance type asks for a GPU. A custom training script
    (``modelTrainingScriptBucket``/``Key``) is refused: bioims trains its built-in networks."""
    if not isinstance(doc, dict):
        raise ValueError("embedding must be an object")
    doc = {k: v for k, v in doc.items() if k not in SEED_IGNORED}
    if "modelTrainingScriptBucket" in doc or "modelTrainingScriptKey" in doc:
        raise ValueError("custom training scripts are not supported: bioims trains its built-in networks "
                         "(choose network and loss)")
    channels = doc.pop("inputChannels", None)
    if not isinstance(channels, list):
        raise ValueError("inputChannels must list the channel names (e.g. [\"DAPI\", \"Tubulin\", \"Actin\"]): "
                         "a count cannot be matched to the plates' channels")
    width, height = doc.pop("roiWidth", None), doc.pop("roiHeight", None)
    if width != height:
        raise ValueError(f"roiWidth and roiHeight must be equal (square crops), got {width} and {height}")
    depth = doc.get("inputDepth", 1)
    if doc.pop("roiDepth", depth) not in (1, depth):
        raise ValueError("roiDepth must be 1 or inputDepth (crops take every z-plane)")
    training: dict[str, Any] = {}
    for key, value in (doc.pop("trainingHyperparameters", None) or {}).items():
        if key not in SEED_HYPERPARAMETERS:
            raise ValueError(f"unknown training hyperparameter {key!r} (known: {', '.join(SEED_HYPERPARAMETERS)})")
        training[SEED_HYPERPARAMETERS[key]] = value
    instance = doc.pop("trainingInstanceType", None)
    if isinstance(instance, str):
        training["compute"] = "gpu" if instance.startswith(("ml.p", "ml.g")) else "cpu"
    spec = {"name": doc.pop("embeddingName", None),
            "input": {"width": doc.pop("inputWidth", None), "height": doc.pop("inputHeight", None),
                      "depth": doc.pop("inputDepth", 1), "channels": channels},
            "segmentation_channel": doc.pop("segmentationChannel", channels[0] if channels else None),
            "roi_size": width, "min_nucleus_voxels": doc.pop("minNucleusVoxels", 200),
            "embedding_length": doc.pop("embeddingVectorLength", None),
            "network": "seed", "loss": "seed", **({"training": training} if training else {})}
    if doc:
        raise ValueError(f"unknown key {sorted(doc)[0]!r} in the seed's embedding")
    return spec


class CreateEmbedding(Request):
    """Validate and register an embedding spec (409 if its name is taken); returns it with every default.

    Required keys: name, input (width, height, depth, channels), segmentation_channel, roi_size,
    min_nucleus_voxels, embedding_length; every other setting is optional, unknown keys are refused.
    The seed's ``{"embedding": {"embeddingName", "inputWidth", ...}}`` is accepted (see
    :func:`seed_embedding`)."""

    spec: EmbeddingSpec

    @model_validator(mode="before")
    @classmethod
    def _seed_event(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "embedding" not in data:
            return data
        if "spec" in data:
            raise ValueError("give spec or the seed's embedding, not both")
        data = dict(data)
        data["spec"] = seed_embedding(data.pop("embedding"))
        return data


class GetEmbeddingInfo(Request):
    """An embedding spec with every default filled in (404 if none)."""

    name: SpecName = Field(validation_alias=alias("name", "embedding_name"))


class ListEmbeddings(Request):
    """Every embedding spec, by name."""


class DeleteEmbedding(Request):
    """Delete an embedding spec (409 while it has train runs)."""

    name: SpecName = Field(validation_alias=alias("name", "embedding_name"))


class GetCompatiblePlates(Request):
    """Validated plates whose images have the spec's dims, channel count and channel names."""

    name: SpecName = Field(validation_alias=alias("name", "embedding_name"))


class CreateTrainings(Request):
    """The train runs of one hold-out mode (none, compound or folds), created with their filters, or found.

    ``epochs``, ``seed``, ``network``, ``loss``, ``temperature`` and ``learning_rate`` override the spec's;
    ``epochs=0`` makes runs whose models keep their seeded initial weights (an untrained baseline)."""

    spec: SpecName = Field(validation_alias=alias("spec", "embedding_name"))
    holdout: Holdout = Holdout.NONE
    epochs: Epochs | None = None
    seed: Seed | None = None
    network: Network | None = None
    loss: Loss | None = None
    temperature: Temperature | None = None
    learning_rate: LearningRate | None = None
    filter: list[Id] | None = Field(None, max_length=MAX_ITEMS,
                                    description="image ids never trained on, besides the held-out compounds'")
    filter_uri: Uri | None = Field(None, description="a file of such ids (one per line or a JSON list) in the "
                                                     "artifact store or an ingest root")
    train_id: Name | None = Field(None, description="the run's id (the seed's trainId; a plan of one run only)")
    message_id: Id | None = Field(None, description="an existing log the run writes to (the seed's messageId)")

    @model_validator(mode="before")
    @classmethod
    def _seed_event(cls, data: Any) -> Any:
        """The seed's ``{"training": {...}}`` envelope and ``filterBucket``/``filterKey``."""
        return s3_location(unwrap(data, "training"), "filterBucket", "filterKey", "filter_uri")


class GetEmbeddingTrainings(Request):
    """The train runs of a spec, oldest first."""

    name: SpecName = Field(validation_alias=alias("name", "embedding_name"))


class GetTraining(Request):
    """A train run: spec, holdout, filter count and URI, status, timestamps, metrics, model URIs."""

    train_id: Name


class GetTrainingFilter(Request):
    """The image ids a run does not train on (its held-out compounds' fields)."""

    train_id: Name


class GetTrainingJobInfo(Request):
    """Progress of a run's job: status, epochs done, per-epoch history, best epoch, message log."""

    train_id: Name = Field(validation_alias=alias("train_id", "training_job_name"))


class DeleteTraining(Request):
    """Delete a run and what it produced: models, embeddings, its fields' result rows, its artifact records
    (409 while it runs, or while a search index is built from it: the message names the indexes)."""

    train_id: Name


class UpdateTraining(Request):
    """Change a created run's ``message_id``, ``filter`` or ``filter_uri`` (409 once it has started)."""

    train_id: Name
    attribute: Name
    value: JsonValue


class Train(CreateTrainings):
    """Create (or find) the runs of a hold-out mode and start the ``train`` workflow over those not complete.

    Returns ``{"execution_id", "train_ids"}`` at once; the arguments are those of createTraining. The
    seed's ``executeProcessPlate`` and ``useSpot`` (booleans, or their strings) are accepted: the workflow
    always preprocesses what is not yet, and the queue (spot or on-demand) follows the spec's compute."""

    @model_validator(mode="before")
    @classmethod
    def _seed_switches(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not {"executeProcessPlate", "useSpot"} & set(data):
            return data
        data = dict(data)
        for name in ("executeProcessPlate", "useSpot"):
            value = data.pop(name, True)
            if value not in (True, False, "true", "false", "True", "False"):
                raise ValueError(f"{name} must be a boolean, got {value!r}")
        return data


_Op = Operation
SERVICE = Service("training", "bioims training service",
                  "Embedding specs (the seed's \"embedding\": input shape, crops, network, loss, training "
                  "settings), train runs with compound hold-out and their training filters, and the "
                  "`train` workflow producing verified ONNX models.", (
    _Op("createEmbedding", "create_embedding", "POST /embeddings", CreateEmbedding, SpecInfo, status=201),
    _Op("listEmbeddings", "list_embeddings", "GET /embeddings", ListEmbeddings, list[SpecInfo]),
    _Op("getEmbeddingInfo", "get_embedding_info", "GET /embeddings/{name}", GetEmbeddingInfo, SpecInfo),
    _Op("deleteEmbedding", "delete_embedding", "DELETE /embeddings/{name}", DeleteEmbedding, DeletedSpec),
    _Op("getCompatiblePlates", "get_compatible_plates", "GET /embeddings/{name}/plates", GetCompatiblePlates,
        list[CompatiblePlate]),
    _Op("createTraining", "create_trainings", "POST /trainings", CreateTrainings, list[TrainRun], status=201),
    _Op("getEmbeddingTrainings", "get_embedding_trainings", "GET /embeddings/{name}/trainings",
        GetEmbeddingTrainings, list[TrainRun]),
    _Op("getTraining", "get_training", "GET /trainings/{train_id}", GetTraining, TrainRun),
    _Op("getTrainingFilter", "get_training_filter", "GET /trainings/{train_id}/filter", GetTrainingFilter,
        list[str]),
    _Op("getTrainingJobInfo", "get_training_job_info", "GET /trainings/{train_id}/job", GetTrainingJobInfo,
        JobInfo),
    _Op("updateTraining", "update_training", "PUT /trainings/{train_id}", UpdateTraining, TrainRun),
    _Op("deleteTraining", "delete_training", "DELETE /trainings/{train_id}", DeleteTraining, DeletedTraining),
    _Op("train", "train", "POST /train", Train, TrainStarted, status=202),
))
