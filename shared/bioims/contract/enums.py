"""The vocabularies of bioims, defined once: statuses, levels, metrics, index kinds, hold-out modes.

Each is a :class:`~enum.StrEnum`, so a member *is* its string (``Level.FIELD == "field"``), is stored
and sent as that string, and the CLI's choices and the API's validation are built from the same members
(``[m.value for m in Level]``). This module imports nothing heavy: domain code may use it.
"""

from __future__ import annotations

from enum import StrEnum


class ImageStatus(StrEnum):
    """Lifecycle of a field (image row)."""

    REGISTERED = "registered"  # rows written, not inspected yet
    VALID = "valid"            # inspected: readable, consistent channels, finite pixels
    INVALID = "invalid"        # inspection found a problem (the row's ``error`` says which)


class PlateStatus(StrEnum):
    """Lifecycle of a plate."""

    REGISTERED = "registered"
    VALID = "valid"
    INVALID = "invalid"
    VALIDATED = "validated"  # what validatePlate records for a valid plate (``by_shape`` lists these)


class ResultStatus(StrEnum):
    """Status of a field's result under a spec or a train run (crops, embeddings)."""

    PREPROCESSED = "preprocessed"
    EMBEDDED = "embedded"
    EMPTY = "empty"
    FAILED = "failed"
    COMPUTED = "computed"  # a train run's results written through createImageTrainResult


class ExecutionStatus(StrEnum):
    """Status of a workflow execution (the local runner's, or Step Functions' own)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    PENDING_REDRIVE = "PENDING_REDRIVE"


class TrainStatus(StrEnum):
    """Lifecycle of a train run."""

    CREATED = "created"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


class SearchStatus(StrEnum):
    """Lifecycle of a search record."""

    COMPLETE = "complete"
    FAILED = "failed"


class Level(StrEnum):
    """What one embedding describes: a single cell, a field (mean of its cells), a well, a treatment."""

    CELL = "cell"
    FIELD = "field"
    WELL = "well"
    TREATMENT = "treatment"


class ProfileLevel(StrEnum):
    """Levels a profile set is stored at."""

    WELL = "well"
    TREATMENT = "treatment"


class Metric(StrEnum):
    """Distance of nearest-neighbour search."""

    COSINE = "cosine"
    EUCLIDEAN = "euclidean"


class Similarity(StrEnum):
    """Similarity of profile evaluation (NSC, mAP) and of a profile set's processing."""

    PEARSON = "pearson"
    COSINE = "cosine"
    EUCLIDEAN = "euclidean"


class IndexKind(StrEnum):
    """FAISS index type (``auto``: chosen from the count)."""

    AUTO = "auto"
    FLAT = "flat"
    IVF = "ivf"
    HNSW = "hnsw"


class Holdout(StrEnum):
    """Compound hold-out of training: none (one baseline model), one model per left-out compound, or
    K folds that each hold out at most one compound per MOA."""

    NONE = "none"
    COMPOUND = "compound"
    FOLDS = "folds"


class Network(StrEnum):
    """Built-in embedding networks."""

    RESNET = "resnet"
    SEED = "seed"


class Loss(StrEnum):
    """Built-in training losses."""

    PROXY = "proxy"
    SUPCON = "supcon"
    SEED = "seed"


class Compute(StrEnum):
    """Where a spec's training runs."""

    CPU = "cpu"
    GPU = "gpu"


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The members' strings, in order (for CLI choices and messages)."""
    return tuple(m.value for m in enum)
