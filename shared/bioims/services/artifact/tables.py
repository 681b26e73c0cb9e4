"""The artifact service's tables: the artifact registry, configuration parameters with history, messages."""

from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, JSONAttribute, ListAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.indexes import AllProjection
from pynamodb.models import Model

from ...store.tables import Index, TableSet


# ------------------------------------------------------------------------------------------- artifacts
class ArtifactsByTrain(Index):
    class Meta:
        index_name = "by_train"
        projection = AllProjection()

    train_id = UnicodeAttribute(hash_key=True)
    artifact_key = UnicodeAttribute(range_key=True)


class Artifact(Model):
    """A stored object: ``artifact_key`` is ``"{train_id}#{uri}"`` so recording it twice is idempotent."""

    context_id = UnicodeAttribute(hash_key=True)
    artifact_key = UnicodeAttribute(range_key=True)
    train_id = UnicodeAttribute()
    uri = UnicodeAttribute()
    type = UnicodeAttribute(null=True)
    size = NumberAttribute(null=True)
    annotations = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    created_at = UTCDateTimeAttribute(null=True)

    by_train = ArtifactsByTrain()


class Parameter(Model):
    """One version of a configuration parameter; a deletion is recorded as a version with ``deleted``."""

    parameter = UnicodeAttribute(hash_key=True)
    version = NumberAttribute(range_key=True)
    value = JSONAttribute(null=True)
    deleted = BooleanAttribute(default=False)
    created_at = UTCDateTimeAttribute(null=True)


class Message(Model):
    """One entry of an activity log; ``sort_key`` is ``"{ISO time}#{sequence}"`` (chronological)."""

    message_id = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)
    message = UnicodeAttribute()
    created_at = UTCDateTimeAttribute(null=True)


class ArtifactTables(TableSet):
    """The tables this owner alone reads and writes."""

    MODELS = {"artifacts": Artifact, "parameters": Parameter, "messages": Message}
    artifacts: type[Artifact]
    parameters: type[Parameter]
    messages: type[Message]
