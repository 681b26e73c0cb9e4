"""The operations of each service: one declarative table, the single source of every way to call them.

Each :class:`Operation` names a public method of a service class (:mod:`bioims.services`) three ways:

- ``method``: the seed's camelCase name of its ``{"method": ...}`` Lambda protocol (``getArtifacts``);
- ``function``: the Python method (``get_artifacts``), also the SDK client's method name;
- ``route``: the HTTP method and path under the service's prefix (``GET /artifacts/{context_id}``).

The Chalice routes and the Lambda handler (:mod:`bioims.api.chalice_app`), the SDK clients
(:mod:`bioims.client`) and the CLI's generic ``bioims call SERVICE METHOD`` are all generated from
:data:`OPERATIONS` and call the service through :func:`dispatch`.

Arguments
---------
Arguments are validated against the Python signature of the service method (private ``_``-prefixed
parameters are never reachable). Names may be given camelCase (``contextId``, as in Lambda events) or
snake_case (``context_id``, as in HTTP bodies and query strings); an operation's ``aliases`` add names
of the seed (``key`` for ``parameter``) or of a route's path variable. Strings given for ``int`` and
``bool`` parameters (query strings, path segments) are converted, with a 400 when they are not one.
Errors (all :class:`~bioims.errors.InvalidInput`, HTTP 400) name the Python parameter:
``unknown argument 'foo' for getParameter``, ``missing argument 'parameter' for getParameter``.

HTTP requests
-------------
An operation's arguments are its route's path variables (percent-decoded), the query string and, for
POST and PUT, the fields of a JSON object body, merged; an argument given in two places is rejected.

Results
-------
Every operation returns JSON-ready values (dicts, lists, strings, numbers). The Lambda handler and the
SDK return them unchanged. Over HTTP the response body is the result as JSON, except for operations
with a ``result_key`` (those returning a bare id, index, count or configuration value), which answer
``{result_key: result}`` (``POST /messages`` -> ``201 {"message_id": "..."}``); the HTTP client unwraps
it again, so every transport returns the same value.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import BioimsError, InvalidInput
from ..services.artifact import ArtifactService
from ..services.embedding import EmbeddingService
from ..services.image_management import ImageManagementService
from ..services.tags import TagsService
from ..services.training import TrainingService

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE")
BODY_METHODS = ("POST", "PUT")
"""HTTP methods whose arguments may come in a JSON body; the others take a query string."""

_PATH_VARIABLE = re.compile(r"\{(\w+)\}")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake_case(name: str) -> str:
    """``"contextId"`` -> ``"context_id"`` (snake_case names are returned unchanged)."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def camel_case(name: str) -> str:
    """``"context_id"`` -> ``"contextId"``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class Operation:
    """One operation of a service.

    Attributes
    ----------
    method : str
        The seed's Lambda method name, camelCase (``"getArtifacts"``).
    function : str
        The service method it calls (``"get_artifacts"``).
    route : str
        ``"<HTTP method> <path>"``; path variables are ``{name}`` (``"GET /artifacts/{context_id}"``).
    status : int
        HTTP status of a success (201 created, 202 accepted, else 200).
    result_key : str or None
        Over HTTP, answer ``{result_key: result}`` instead of the bare result.
    aliases : Mapping[str, str]
        Extra argument names (snake_case) -> the Python parameter they mean.
    """

    method: str
    function: str
    route: str
    status: int = 200
    result_key: str | None = None
    aliases: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        verb, _, path = self.route.partition(" ")
        if verb not in HTTP_METHODS or not path.startswith("/"):
            raise ValueError(f"route of {self.method} must be '<{'|'.join(HTTP_METHODS)}> /path', not {self.route!r}")

    @property
    def http_method(self) -> str:
        return self.route.partition(" ")[0]

    @property
    def path(self) -> str:
        return self.route.partition(" ")[2]

    @property
    def path_variables(self) -> tuple[str, ...]:
        """Names of the route's ``{variables}``, in order."""
        return tuple(_PATH_VARIABLE.findall(self.path))

    @property
    def has_body(self) -> bool:
        """Whether the HTTP request carries the non-path arguments as a JSON body (else a query string)."""
        return self.http_method in BODY_METHODS

    def parameter(self, name: str) -> str:
        """The Python parameter an argument name means (camelCase, snake_case or an alias)."""
        snake = snake_case(name)
        return self.aliases.get(snake, snake)

    def http_body(self, result: Any) -> Any:
        """The HTTP response document of a result (see the module docstring)."""
        return {self.result_key: result} if self.result_key else result

    def from_http_body(self, document: Any) -> Any:
        """The result of an HTTP response document (inverse of :meth:`http_body`)."""
        if not self.result_key:
            return document
        if not isinstance(document, dict) or self.result_key not in document:
            raise BioimsError(f"response of {self.method} has no {self.result_key!r}: {str(document)[:200]}")
        return document[self.result_key]


_Op = Operation
_CONFIGURATION_KEY = {"key": "parameter"}  # the seed's configuration service calls a parameter a key

ARTIFACT: tuple[Operation, ...] = (
    # artifact registry
    _Op("createArtifact", "create_artifact", "POST /artifacts", status=201),
    _Op("getArtifacts", "get_artifacts", "GET /artifacts/{context_id}"),
    _Op("deleteArtifacts", "delete_artifacts", "DELETE /artifacts/{context_id}"),
    _Op("addAnnotation", "add_annotation", "POST /artifacts/{context_id}/annotations"),
    _Op("getTrainArtifacts", "get_train_artifacts", "GET /trains/{train_id}/artifacts"),
    # configuration
    _Op("setParameter", "set_parameter", "PUT /parameters/{parameter}", aliases=_CONFIGURATION_KEY),
    _Op("getParameter", "get_parameter", "GET /parameters/{parameter}", result_key="value",
        aliases=_CONFIGURATION_KEY),
    _Op("getAll", "get_all", "GET /parameters"),
    _Op("getHistory", "get_history", "GET /parameters/{parameter}/history", aliases=_CONFIGURATION_KEY),
    _Op("deleteParameter", "delete_parameter", "DELETE /parameters/{parameter}", aliases=_CONFIGURATION_KEY),
    _Op("getDefaultTrainId", "get_default_train_id", "GET /default-train-id", result_key="train_id"),
    _Op("setDefaultTrainId", "set_default_train_id", "PUT /default-train-id"),
    # message logs
    _Op("createMessage", "create_message", "POST /messages", status=201, result_key="message_id"),
    _Op("addMessage", "add_message", "POST /messages/{message_id}", status=201),
    _Op("getMessage", "get_message", "GET /messages/{message_id}"),
    _Op("listMessage", "list_messages", "GET /messages/{message_id}/all"),
    _Op("deleteMessage", "delete_message", "DELETE /messages/{message_id}"),
)

TAGS: tuple[Operation, ...] = (
    # tags
    _Op("createTag", "create_tag", "POST /tags", status=201),
    _Op("getAllTags", "get_all_tags", "GET /tags"),
    _Op("getTagByValue", "get_tag_by_value", "GET /tags/by-value/{value}"),
    _Op("getTagById", "get_tag_by_id", "GET /tags/{tag_id}"),
    _Op("ensureTags", "ensure_tags", "POST /tags/ensure"),
    _Op("getImagesByTag", "get_images_by_tag", "GET /tags/by-value/{value}/images"),
    # image tags
    _Op("tagImages", "tag_images", "POST /image-tags", result_key="count"),
    _Op("getImageTags", "get_image_tags", "GET /images/{image_id}/tags"),
    _Op("addImageTags", "add_image_tags", "POST /images/{image_id}/tags"),
    _Op("setImageTags", "set_image_tags", "PUT /images/{image_id}/tags"),
    _Op("removeImageTags", "remove_image_tags", "POST /images/{image_id}/tags/remove"),
    # label categories and labels
    _Op("createCategory", "create_category", "POST /categories", status=201),
    _Op("listCategories", "list_categories", "GET /categories"),
    _Op("updateCategoryDescription", "update_category_description", "PUT /categories/{category}"),
    _Op("deleteCategory", "delete_category", "DELETE /categories/{category}"),
    _Op("createLabel", "create_label", "POST /categories/{category}/labels", status=201, result_key="index"),
    _Op("listLabels", "list_labels", "GET /categories/{category}/labels"),
    _Op("updateLabel", "update_label", "PUT /categories/{category}/labels/{label}"),
    _Op("getIndex", "get_index", "GET /categories/{category}/labels/{label}/index", result_key="index"),
    _Op("ensureLabels", "ensure_labels", "POST /categories/{category}/ensure-labels"),
)

IMAGE_MANAGEMENT: tuple[Operation, ...] = (
    # plates
    _Op("populateSourcePlate", "populate_source_plate", "POST /plates", status=201),
    _Op("uploadSourcePlate", "upload_source_plate", "POST /uploads", status=202),
    _Op("listPlates", "list_plates", "GET /plates"),
    _Op("getPlate", "get_plate", "GET /plates/{plate_id}", aliases={"plate_id": "plate"}),
    _Op("processPlate", "process_plate", "POST /plates/{plate_id}/process", status=202,
        result_key="execution_id"),
    _Op("describeExecution", "describe_execution", "GET /executions/{execution_id}"),
    _Op("validatePlate", "validate_plate", "POST /plates/{plate_id}/validate"),
    _Op("getPlateImageStatus", "get_plate_image_status", "GET /plates/{plate_id}/image-status"),
    _Op("createPlateMessageId", "create_plate_message_id", "POST /plates/{plate_id}/message-id", status=201,
        result_key="message_id"),
    _Op("getPlateMessageId", "get_plate_message_id", "GET /plates/{plate_id}/message-id",
        result_key="message_id"),
    _Op("listCompatiblePlates", "list_compatible_plates", "GET /compatible-plates"),
    # wells and images of a plate
    _Op("getImagesByPlateId", "get_images_by_plate_id", "GET /plates/{plate_id}/images"),
    _Op("getImagesByPlateIdAndTrainId", "get_images_by_plate_id_and_train_id",
        "GET /plates/{plate_id}/trains/{train_id}/images"),
    _Op("getImageIdsByPlateId", "get_image_ids_by_plate_id", "GET /plates/{plate_id}/image-ids"),
    _Op("getWellsByPlateId", "get_wells_by_plate_id", "GET /plates/{plate_id}/wells"),
    _Op("getImagesByPlateAndWellId", "get_images_by_plate_and_well_id",
        "GET /plates/{plate_id}/wells/{well_id}/images"),
    # images
    _Op("getImageInfo", "get_image_info", "GET /images/{image_id}"),
    _Op("createImageTrainResult", "create_image_train_result", "PUT /images/{image_id}/train-results/{train_id}"),
    _Op("getImageTags", "get_image_tags", "GET /images/{image_id}/tags"),
    _Op("updateImageTags", "update_image_tags", "PUT /images/{image_id}/tags"),
    _Op("inspectImage", "inspect_image", "POST /images/{image_id}/inspect"),
    _Op("makeThumbnails", "make_thumbnails", "POST /images/{image_id}/thumbnails"),
    # preprocessing under an embedding spec
    _Op("startPreprocess", "start_preprocess", "POST /preprocess/{spec}", status=202, result_key="execution_id"),
    _Op("computeFlatField", "compute_flatfield", "POST /plates/{plate_id}/flatfields/{spec}/{channel}"),
    _Op("preprocessImage", "preprocess_image", "POST /images/{image_id}/preprocess/{spec}"),
)

TRAINING: tuple[Operation, ...] = (
    # embedding specs (the seed's "embedding")
    _Op("createEmbedding", "create_embedding", "POST /embeddings", status=201),
    _Op("listEmbeddings", "list_embeddings", "GET /embeddings"),
    _Op("getEmbeddingInfo", "get_embedding_info", "GET /embeddings/{name}", aliases={"embedding_name": "name"}),
    _Op("deleteEmbedding", "delete_embedding", "DELETE /embeddings/{name}", aliases={"embedding_name": "name"}),
    _Op("getCompatiblePlates", "get_compatible_plates", "GET /embeddings/{name}/plates",
        aliases={"embedding_name": "name"}),
    # train runs and models
    _Op("createTraining", "create_trainings", "POST /trainings", status=201, aliases={"embedding_name": "spec"}),
    _Op("getEmbeddingTrainings", "get_embedding_trainings", "GET /embeddings/{name}/trainings",
        aliases={"embedding_name": "name"}),
    _Op("getTraining", "get_training", "GET /trainings/{train_id}"),
    _Op("getTrainingFilter", "get_training_filter", "GET /trainings/{train_id}/filter"),
    _Op("getTrainingJobInfo", "get_training_job_info", "GET /trainings/{train_id}/job"),
    _Op("deleteTraining", "delete_training", "DELETE /trainings/{train_id}"),
    _Op("train", "train", "POST /train", status=202, aliases={"embedding_name": "spec"}),
)

EMBEDDING: tuple[Operation, ...] = (
    _Op("startComputeEmbedding", "start_compute_embedding", "POST /trainings/{train_id}/embed", status=202,
        result_key="execution_id"),
    _Op("startComputePlateEmbedding", "compute_plate_embedding", "POST /trainings/{train_id}/plates/{plate_id}"),
    _Op("listPlateEmbeddings", "list_plate_embeddings", "GET /trainings/{train_id}/plates"),
    _Op("getImageEmbedding", "get_image_embedding", "GET /trainings/{train_id}/images/{image_id}"),
)

OPERATIONS: Mapping[str, tuple[Operation, ...]] = types.MappingProxyType({
    "artifact": ARTIFACT,
    "tags": TAGS,
    "image-management": IMAGE_MANAGEMENT,
    "training": TRAINING,
    "embedding": EMBEDDING,
})
"""Service name (its API prefix) -> its operations."""

SERVICE_CLASSES: Mapping[str, type] = types.MappingProxyType({
    "artifact": ArtifactService,
    "tags": TagsService,
    "image-management": ImageManagementService,
    "training": TrainingService,
    "embedding": EmbeddingService,
})
"""Service name -> the class whose methods the operations call (their signatures are the contract)."""


def operations(service: str) -> tuple[Operation, ...]:
    """The operations of a service; :class:`InvalidInput` for an unknown service name."""
    try:
        return OPERATIONS[service]
    except KeyError:
        raise InvalidInput(f"unknown service {service!r}; known: {', '.join(OPERATIONS)}") from None


def find_operation(service: str, method: str) -> Operation:
    """An operation by its seed name (``listMessage``), Python name (``list_messages``) or the camelCase
    of its Python name (``listMessages``)."""
    for op in operations(service):
        if method in (op.method, op.function, camel_case(op.function)):
            return op
    raise InvalidInput(f"unknown method {method!r} for service {service}; known: "
                       + ", ".join(op.method for op in operations(service)))


def public_signature(service: str, function: str) -> inspect.Signature:
    """The signature of a service method without ``self`` and private (``_``-prefixed) parameters."""
    signature = inspect.signature(getattr(SERVICE_CLASSES[service], function))
    return signature.replace(parameters=[p for name, p in signature.parameters.items()
                                         if name != "self" and not name.startswith("_")])


def bind_arguments(service: str, op: Operation, args: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and convert the arguments of a call into the service method's keyword arguments.

    Raises
    ------
    InvalidInput
        ``args`` is not a mapping; an unknown, repeated or missing argument; a string that is not an
        integer (or boolean) for an ``int`` (``bool``) parameter.
    """
    if not isinstance(args, Mapping):
        raise InvalidInput(f"the arguments of {op.method} must be a JSON object, got {type(args).__name__}")
    signature = public_signature(service, op.function)
    hints = typing.get_type_hints(getattr(SERVICE_CLASSES[service], op.function))
    kwargs: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in args.items():
        name = op.parameter(str(key))
        if name not in signature.parameters:
            raise InvalidInput(f"unknown argument {key!r} for {op.method}")
        if name in kwargs:
            raise InvalidInput(f"argument {name!r} given twice (as {given_as[name]!r} and {key!r}) for {op.method}")
        kwargs[name] = _convert(value, hints.get(name), name, op)
        given_as[name] = str(key)
    missing = [name for name, p in signature.parameters.items() if p.default is p.empty and name not in kwargs]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise InvalidInput(f"missing argument{'s' if len(missing) > 1 else ''} {names} for {op.method}")
    return kwargs


def dispatch(service_obj: Any, service_name: str, method: str, args: Mapping[str, Any]) -> Any:
    """Call one operation of a service object (or of an SDK client of that service).

    Parameters
    ----------
    service_obj : object
        The service (``container.service(service_name)``) or a client with the same methods.
    service_name : str
        ``"artifact"``, ``"tags"`` or ``"image-management"``.
    method : str
        Seed name (``"getParameter"``) or Python name (``"get_parameter"``).
    args : Mapping[str, Any]
        Arguments by camelCase or snake_case name (see the module docstring).

    Returns
    -------
    The service method's (JSON-ready) result.

    Examples
    --------
    >>> dispatch(container.artifacts, "artifact", "getParameter", {"parameter": "thumbnail-widths"})
    [100, 1000]
    """
    op = find_operation(service_name, method)
    return getattr(service_obj, op.function)(**bind_arguments(service_name, op, args))


def _convert(value: Any, hint: Any, name: str, op: Operation) -> Any:
    """A string given for an ``int`` or ``bool`` parameter, as that type; every other value unchanged."""
    if not isinstance(value, str) or hint is None:
        return value
    accepted = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
    if str in accepted or Any in accepted:
        return value
    if bool in accepted:
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise InvalidInput(f"argument {name!r} of {op.method} must be true or false, got {value!r}")
    if int in accepted:
        try:
            return int(value)
        except ValueError:
            raise InvalidInput(f"argument {name!r} of {op.method} must be an integer, got {value!r}") from None
    return value
