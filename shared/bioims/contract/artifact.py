"""The artifact service's contract: artifact registry, configuration parameters with history, message logs."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, JsonValue, StringConstraints, field_validator, model_validator

from .base import MAX_URI, Count, Id, Message, Model, Name, Operation, Request, Service, Text, Uri, alias, unwrap

ORIGIN = "origin"
"""The train id of objects that belong to no train run (thumbnails, source images)."""
ParameterKey = Id


# ------------------------------------------------------------------------------------------------ responses
class Artifact(Model):
    """A recorded stored object."""

    context_id: str = Field(description="what it belongs to: a plate, image or train id")
    train_id: str = Field(description=f"the train run it belongs to ({ORIGIN!r} for none)")
    uri: str = Field(description="file:// or s3:// URI of the object")
    type: str | None = Field(None, description="kind of object (thumbnail, flatfield, model, ...)")
    size: int | None = Field(None, description="bytes")
    annotations: list[str] | None = None
    created_at: str | None = Field(None, description="ISO-8601 UTC")


class Deleted(Model):
    """How many records were deleted."""

    deleted: int


class ParameterVersion(Model):
    """One version of a configuration parameter."""

    parameter: str | None = None
    version: int
    value: JsonValue = None
    deleted: bool
    created_at: str | None = Field(None, description="ISO-8601 UTC")


class LogMessage(Model):
    """One message of an activity log."""

    message_id: str
    message: str
    created_at: str = Field(description="ISO-8601 UTC")


# ------------------------------------------------------------------------------------------------ requests
ArtifactTrainId = Id
"""The train id an artifact is recorded with: a train run, ``spec#<spec>`` (a spec's preprocessing
results) or ``origin`` (none)."""


SEED_KEY = "s3key#"
"""How the seed names a stored object in an artifact: ``s3key#<key in the artifact bucket>``."""
ObjectKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URI, pattern=r"^[\x20-\x7e]+$")]
"""A key under the artifact store's root (printable ASCII; the service refuses one that would leave it)."""


class CreateArtifact(Request):
    """Record a stored object (idempotent: the same context, train id and URI is one artifact).

    The object is its ``uri``, or its ``key`` under the artifact store. The seed's event
    ``{"artifact": {"contextId", "trainId", "artifact": "s3key#KEY", "description", "annotation"}}`` is
    accepted as it is: the key becomes ``key``, the description and annotation the first annotations."""

    context_id: Id
    uri: Uri | None = None
    train_id: ArtifactTrainId = ORIGIN
    type: Name | None = None
    size: Count | None = None
    annotations: list[Text] | None = Field(None, max_length=1000)
    key: ObjectKey | None = None

    @model_validator(mode="before")
    @classmethod
    def _seed_event(cls, data: Any) -> Any:
        data = _seed_object(unwrap(data, "artifact"))
        if isinstance(data, dict) and ("description" in data or "annotation" in data):
            data = dict(data)
            notes = [n for n in (data.pop("description", None), data.pop("annotation", None)) if n]
            if notes:
                data["annotations"] = [*notes, *(data.get("annotations") or [])]
        return data

    @model_validator(mode="after")
    def _one_object(self) -> CreateArtifact:
        return _one_of_uri_or_key(self)


def _seed_object(data: Any) -> Any:
    """The seed's ``artifact`` argument, ``s3key#KEY`` or a URI, as ``key`` or ``uri``."""
    if not isinstance(data, dict) or "artifact" not in data:
        return data
    data = dict(data)
    stored = data.pop("artifact")
    if not isinstance(stored, str):
        raise ValueError("artifact must be a string ('s3key#KEY' or a URI)")
    data["key" if stored.startswith(SEED_KEY) else "uri"] = stored.removeprefix(SEED_KEY)
    return data


def _one_of_uri_or_key(request: Any) -> Any:
    if (request.uri is None) == (request.key is None):
        raise ValueError("give the object as uri or as key (one of them)")
    return request


class CreateDescribeStacksArtifact(Request):
    """Store the deployment's description (CloudFormation DescribeStacks on AWS, the local runtime's
    settings on one machine) as an artifact of a context (the seed's createDescribeStacksArtifact)."""

    context_id: Id
    train_id: ArtifactTrainId = ORIGIN


class DescribedStacks(Model):
    """Where the deployment's description was stored."""

    context_id: str
    train_id: str
    key: str = Field(description="under the artifact store's root (the seed's key)")
    uri: str


class GetArtifacts(Request):
    """Artifacts of a context, optionally only those of one train id (empty list if none)."""

    context_id: Id
    train_id: ArtifactTrainId | None = None


class GetTrainArtifacts(Request):
    """Every artifact recorded with a train id, across contexts."""

    train_id: ArtifactTrainId


class DeleteArtifacts(Request):
    """Delete the records (not the objects) of a context, or of one train id in it."""

    context_id: Id
    train_id: ArtifactTrainId | None = None


class AddAnnotation(Request):
    """Append a free-text annotation to an artifact (given by its ``uri``, or its ``key`` under the store:
    the seed's ``artifact: "s3key#KEY"``)."""

    context_id: Id
    annotation: Text = Field(min_length=1)
    uri: Uri | None = None
    train_id: ArtifactTrainId = ORIGIN
    key: ObjectKey | None = None

    @model_validator(mode="before")
    @classmethod
    def _seed_event(cls, data: Any) -> Any:
        return _seed_object(data)

    @model_validator(mode="after")
    def _one_object(self) -> AddAnnotation:
        return _one_of_uri_or_key(self)


class SetParameter(Request):
    """Set a configuration parameter to a JSON value (not null); earlier values stay in its history."""

    parameter: ParameterKey = Field(validation_alias=alias("parameter", "key"))
    value: JsonValue = Field(json_schema_extra={"not": {"type": "null"}})

    @field_validator("value")
    @classmethod
    def _not_null(cls, value: JsonValue) -> JsonValue:
        if value is None:
            raise ValueError("must not be null (delete the parameter instead)")
        return value


class GetParameter(Request):
    """The current value of a configuration parameter (404 if never set or deleted)."""

    parameter: ParameterKey = Field(validation_alias=alias("parameter", "key"))


class GetAll(Request):
    """Every configuration parameter currently set -> its value."""


class GetHistory(Request):
    """Every version of a configuration parameter, oldest first."""

    parameter: ParameterKey = Field(validation_alias=alias("parameter", "key"))


class DeleteParameter(Request):
    """Unset a configuration parameter (recorded in its history)."""

    parameter: ParameterKey = Field(validation_alias=alias("parameter", "key"))


class GetDefaultTrainId(Request):
    """The default train run (the ``default-train-id`` parameter)."""


class SetDefaultTrainId(Request):
    """Set the default train run."""

    train_id: Name = Field(validation_alias=alias("train_id", "value"))


class CreateMessage(Request):
    """Start a new activity log with a first message; returns its ``message_id``."""

    message: Message


class AddMessage(Request):
    """Append a message to an existing activity log."""

    message_id: Id
    message: Message


class GetMessage(Request):
    """The most recent message of an activity log."""

    message_id: Id


class ListMessages(Request):
    """Every message of an activity log, oldest first."""

    message_id: Id


class DeleteMessage(Request):
    """Delete a whole activity log."""

    message_id: Id


_Op = Operation
SERVICE = Service("artifact", "bioims artifact service",
                  "The artifact registry (every stored object with its context and train id), configuration "
                  "parameters with history, and activity logs (messages).", (
    _Op("createArtifact", "create_artifact", "POST /artifacts", CreateArtifact, Artifact, status=201),
    _Op("getArtifacts", "get_artifacts", "GET /artifacts/{context_id}", GetArtifacts, list[Artifact]),
    _Op("deleteArtifacts", "delete_artifacts", "DELETE /artifacts/{context_id}", DeleteArtifacts, Deleted),
    _Op("addAnnotation", "add_annotation", "POST /artifacts/{context_id}/annotations", AddAnnotation, Artifact),
    _Op("createDescribeStacksArtifact", "create_describe_stacks_artifact", "POST /artifacts/{context_id}/describe-stacks",
        CreateDescribeStacksArtifact, DescribedStacks, status=201),
    _Op("getTrainArtifacts", "get_train_artifacts", "GET /trains/{train_id}/artifacts", GetTrainArtifacts,
        list[Artifact]),
    _Op("setParameter", "set_parameter", "PUT /parameters/{parameter}", SetParameter, ParameterVersion),
    _Op("getParameter", "get_parameter", "GET /parameters/{parameter}", GetParameter, JsonValue, result_key="value"),
    _Op("getAll", "get_all", "GET /parameters", GetAll, dict[str, Any]),
    _Op("getHistory", "get_history", "GET /parameters/{parameter}/history", GetHistory, list[ParameterVersion]),
    _Op("deleteParameter", "delete_parameter", "DELETE /parameters/{parameter}", DeleteParameter,
        ParameterVersion),
    _Op("getDefaultTrainId", "get_default_train_id", "GET /default-train-id", GetDefaultTrainId, str,
        result_key="train_id"),
    _Op("setDefaultTrainId", "set_default_train_id", "PUT /default-train-id", SetDefaultTrainId, ParameterVersion),
    _Op("createMessage", "create_message", "POST /messages", CreateMessage, str, status=201,
        result_key="message_id"),
    _Op("addMessage", "add_message", "POST /messages/{message_id}", AddMessage, LogMessage, status=201),
    _Op("getMessage", "get_message", "GET /messages/{message_id}", GetMessage, LogMessage),
    _Op("listMessage", "list_messages", "GET /messages/{message_id}/all", ListMessages, list[LogMessage]),
    _Op("deleteMessage", "delete_message", "DELETE /messages/{message_id}", DeleteMessage, Deleted),
))
