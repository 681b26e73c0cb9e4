"""The training service's tables: embedding specs and train runs."""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, ListAttribute, MapAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.indexes import AllProjection
from pynamodb.models import Model

from ...contract.enums import TrainStatus
from ...store.tables import Index, TableSet


# ------------------------------------------------------------------------------------------- training
class EmbeddingSpec(Model):
    name = UnicodeAttribute(hash_key=True)
    spec = JSONAttribute()
    created_at = UTCDateTimeAttribute(null=True)


class TrainRunsBySpec(Index):
    class Meta:
        index_name = "by_spec"
        projection = AllProjection()

    spec_name = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class TrainRun(Model):
    """A training run. The filter (image ids excluded from training) can hold thousands of ids, so it is
    stored as an object (``filter_uri``) and only counted here."""

    train_id = UnicodeAttribute(hash_key=True)
    spec_name = UnicodeAttribute()
    created_at = UnicodeAttribute()  # ISO-8601 UTC, sortable (range key of by_spec)
    status = UnicodeAttribute(default=TrainStatus.CREATED)
    holdout = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    filter_uri = UnicodeAttribute(null=True)
    filter_count = NumberAttribute(default=0)
    model_uris = MapAttribute(null=True)  # type: ignore[var-annotated]
    metrics = JSONAttribute(null=True)
    settings = JSONAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)
    started_at = UTCDateTimeAttribute(null=True)
    finished_at = UTCDateTimeAttribute(null=True)

    by_spec = TrainRunsBySpec()


class TrainingTables(TableSet):
    """The tables this owner alone reads and writes."""

    MODELS = {"embedding_specs": EmbeddingSpec, "train_runs": TrainRun}
    embedding_specs: type[EmbeddingSpec]
    train_runs: type[TrainRun]
