"""The embedding service's contract: a train run's ONNX model over every preprocessed field of its plates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from .base import Id, Model, Name, Operation, Request, Service
from .enums import Metric

MAX_PLATES = 10_000
"""Most plates of one ``embed`` workflow."""


# ------------------------------------------------------------------------------------------------ responses
class PlateEmbeddingEntry(Model):
    """An embedded plate of a run."""

    plate_id: str
    uri: str = Field(description="the plate's Parquet table")


class ImageEmbedding(Model):
    """A field's embedding under a run."""

    image_id: str
    train_id: str
    status: str = Field(description="embedded, empty or failed (or the status of another kind of row)")
    error: str | None = Field(description="why the field has no embedding")
    cells: int | None = Field(description="cells averaged")
    embedding: list[float] | None = Field(description="the field embedding (mean of its cells); None if none")


# ------------------------------------------------------------------------------------------------ requests
class StartComputeEmbedding(Request):
    """Start the ``embed`` workflow over the run's compatible plates (or ``plate_ids``); returns its execution id."""

    train_id: Name
    plate_ids: list[Id] | None = Field(None, max_length=MAX_PLATES)


class StartComputePlateEmbedding(Request):
    """Start the ``embed`` workflow for one plate (a job: field embeddings go to the (image, run) rows and
    the plate's Parquet table; a plate already embedded is skipped unless ``force``); returns its
    execution id."""

    train_id: Name
    plate_id: Id
    force: bool = False


class ExecuteImageEmbeddingCompute(Request):
    """Start the ``embed`` workflow for one field: its embeddings computed again, its plate's table
    rewritten with it (the seed's per-image embedding); returns the execution id."""

    train_id: Name
    image_id: Id


class ListPlateEmbeddings(Request):
    """The run's embedded plates (those whose Parquet table exists)."""

    train_id: Name


class GetImageEmbedding(Request):
    """A field's embedding under a run (``embedding`` None for empty or failed fields)."""

    image_id: Id
    train_id: Name


class EvaluateEmbeddings(Request):
    """How well a complete run's treatment embeddings recover MOAs (NSC, NSCB, mAP, per-MOA accuracy, the
    confusion matrix, as ``bioims evaluate``) and a 2-D map of its treatments or fields (t-SNE where
    scikit-learn is installed, else PCA), each point with a field to open."""

    train_id: Name
    metric: Metric = Metric.COSINE
    normalize: bool = Field(True, description="standardise each plate to its DMSO wells before averaging")
    level: Literal["treatment", "field"] = Field("treatment", description="what the map shows")


class ConfusionMatrix(Model):
    true: list[str] = Field(description="the rows: true MOAs")
    predicted: list[str] = Field(description="the columns: predicted MOAs")
    counts: list[list[int]] = Field(description="treatments, rows x columns")


class MapPoint(Model):
    x: float
    y: float
    moa: str | None = None
    compound: str | None = None
    concentration: float | None = None
    plate: str | None = None
    well: str | None = None
    image_id: str | None = Field(None, description="the field (field map) or a field of the treatment")


class EmbeddingEvaluation(Model):
    train_id: str
    metric: Metric
    nsc: float | None = Field(description="treatment 1-NN MOA accuracy, other compounds only")
    nscb: float | None = Field(description="... and other batches only")
    map: float | None = Field(description="mean average precision of same-MOA retrieval")
    compound_level: float | None
    treatments: int
    moas: int
    compounds: int
    per_moa: dict[str, float | None]
    dropped_moas_nscb: list[str]
    not_evaluated: list[str]
    report: JsonValue = None
    confusion: ConfusionMatrix
    level: str = Field(description="what the map shows: treatment or field")
    map_method: str = Field(description="t-SNE or PCA")
    points: list[MapPoint]


_Op = Operation
SERVICE = Service("embedding", "bioims embedding service",
                  "A train run's ONNX model over every preprocessed field of its compatible plates (ONNX "
                  "Runtime): cell and field embeddings, one Parquet table per plate.", (
    _Op("startComputeEmbedding", "start_compute_embedding", "POST /trainings/{train_id}/embed",
        StartComputeEmbedding, str, status=202, result_key="execution_id"),
    _Op("startComputePlateEmbedding", "start_compute_plate_embedding", "POST /trainings/{train_id}/plates/{plate_id}",
        StartComputePlateEmbedding, str, status=202, result_key="execution_id"),
    _Op("executeImageEmbeddingCompute", "execute_image_embedding_compute",
        "POST /trainings/{train_id}/images/{image_id}/embed", ExecuteImageEmbeddingCompute, str, status=202,
        result_key="execution_id"),
    _Op("listPlateEmbeddings", "list_plate_embeddings", "GET /trainings/{train_id}/plates", ListPlateEmbeddings,
        list[PlateEmbeddingEntry]),
    _Op("getImageEmbedding", "get_image_embedding", "GET /trainings/{train_id}/images/{image_id}",
        GetImageEmbedding, ImageEmbedding),
    _Op("evaluateEmbeddings", "evaluate_embeddings", "GET /trainings/{train_id}/evaluation", EvaluateEmbeddings,
        EmbeddingEvaluation),
))
