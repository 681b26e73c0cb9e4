"""One client per service, generated from the contract (:mod:`bioims.contract`).

A client's methods have the names and parameters of the service's methods and the summaries of the
contract (``TagsClient.get_tag_by_value(value)`` is ``TagsService.get_tag_by_value(value)``), so a client
can stand in for the service wherever one is expected — e.g. as the ``TagsPort`` and ``ArtifactsPort`` of
:class:`~bioims.services.image_management.ImageManagementService`. Arguments are validated by the
contract before they leave the process (:class:`~bioims.errors.InvalidInput`, as the service would answer).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from ..contract import Operation, service as contract_service
from ..errors import InvalidInput
from .transports import HttpTransport, InProcessTransport, LambdaTransport, Transport

if TYPE_CHECKING:
    import requests

    from ..runtime import Container


class ServiceClient:
    """Base of the clients: each operation of ``service`` as a method forwarded to a transport.

    Subclasses name their service: ``class TagsClient(ServiceClient, service="tags")``.
    """

    service: ClassVar[str]

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def __init_subclass__(cls, *, service: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.service = service
        for op in contract_service(service).operations:
            setattr(cls, op.function, _client_method(cls, service, op))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transport!r})"


def _client_method(cls: type, service: str, op: Operation) -> Callable[..., Any]:
    signature = request_signature(op)

    def method(self: ServiceClient, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{op.function}(): {e}") from None
        return self.transport.call(service, op, bound.arguments)

    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__name__ = op.function
    method.__qualname__ = f"{cls.__name__}.{op.function}"
    method.__doc__ = (op.request.__doc__ or "").strip() + f"\n\n{op.route} (Lambda method {op.method})."
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_parameter, *signature.parameters.values()])
    return method


def request_signature(op: Operation) -> inspect.Signature:
    """The Python signature of an operation: its request fields, in order, with their defaults."""
    parameters = []
    for name, field in op.request.model_fields.items():
        default = inspect.Parameter.empty if field.is_required() else field.default
        parameters.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                            annotation=field.annotation))
    return inspect.Signature(parameters)


class ArtifactClient(ServiceClient, service="artifact"):
    """The artifact service: artifact registry, configuration parameters, message logs."""


class TagsClient(ServiceClient, service="tags"):
    """The tags service: tags, label categories, image-tag assignment."""


class ImageManagementClient(ServiceClient, service="image-management"):
    """The image-management service: plates, wells, images, inspection, validation, thumbnails."""


class TrainingClient(ServiceClient, service="training"):
    """The training service: embedding specs, train runs, models."""


class EmbeddingClient(ServiceClient, service="embedding"):
    """The embedding service: a train run's ONNX model over every field, embeddings by image and plate."""


class SearchClient(ServiceClient, service="search"):
    """The search service (HTTP only: ``http://127.0.0.1:8700/search`` under ``bioims serve``, the search
    container's load balancer on AWS): filtered nearest-neighbour search, search records, indexes."""

    def __init__(self, transport: Transport | str, session: requests.Session | None = None, timeout: float = 30) -> None:
        super().__init__(HttpTransport(transport, session=session, timeout=timeout) if isinstance(transport, str)
                         else transport)

    def ready(self) -> dict[str, Any]:
        """``GET /ready``: whether the stored indexes are loaded (HTTP only)."""
        if not isinstance(self.transport, HttpTransport):
            raise InvalidInput("ready() needs the search service's HTTP API")
        return self.transport.request("GET", "/ready")


CLIENTS: Mapping[str, type[ServiceClient]] = MappingProxyType({
    client.service: client
    for client in (ArtifactClient, TagsClient, ImageManagementClient, TrainingClient, EmbeddingClient, SearchClient)})
"""Service name -> its client class."""


def connect(service: str, url: str | None = None, function_name: str | None = None,
            container: Container | None = None, *, lambda_client: Any | None = None,
            session: requests.Session | None = None, timeout: float = 30) -> ServiceClient:
    """A client of ``service`` over exactly one of: HTTP (``url``), Lambda (``function_name``) or
    in-process (``container``).

    Parameters
    ----------
    service : str
        One of :data:`CLIENTS` (``"tags"``, ``"image-management"``, ...).
    url : str, optional
        The service's API: ``http://127.0.0.1:8700/<service>`` under ``bioims serve``.
    function_name : str, optional
        The service's ``invoke`` Lambda function (or the ``http://`` endpoint of a Lambda emulator);
        ``lambda_client`` defaults to botocore's Lambda client of the AWS chain's credentials and region.
    container : Container, optional
        Call the services of this container directly.

    Examples
    --------
    >>> tags = connect("tags", url="http://127.0.0.1:8700/tags")
    >>> tags.get_tag_by_value("compound:ALLN")
    {'tag_id': 3, 'value': 'compound:ALLN', 'type': 'compound'}
    """
    if service not in CLIENTS:
        raise InvalidInput(f"unknown service {service!r}; known: {', '.join(CLIENTS)}")
    if sum(x is not None for x in (url, function_name, container)) != 1:
        raise InvalidInput("connect() needs exactly one of url, function_name or container")
    transport: Transport
    if url is not None:
        transport = HttpTransport(url, session=session, timeout=timeout)
    elif function_name is not None:
        transport = LambdaTransport(function_name, lambda_client) if lambda_client is not None \
            else LambdaTransport.to(function_name, service)
    else:
        assert container is not None
        transport = InProcessTransport(container)
    return CLIENTS[service](transport)


class Validated:
    """A service object whose contract operations are called through the contract (their arguments
    validated exactly as an API request's: the CLI's boundary), its other methods (ingest, training
    jobs, evaluation) passed through unchanged."""

    def __init__(self, service: str, container: Container) -> None:
        self._client = CLIENTS[service](InProcessTransport(container))
        self._target = container.service(service)
        self._operations = {op.function for op in contract_service(service).operations}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_client", "_target", "_operations"):
            raise AttributeError(name)  # not set yet (copy, pickle): never forward
        return getattr(self._client if name in self._operations else self._target, name)


def validated(container: Container) -> Container:
    """``container`` with each service replaced by a :class:`Validated` view of it (the services
    themselves keep calling each other directly)."""
    import dataclasses

    views = {field: Validated(service, container) for field, service in (
        ("images", "image-management"), ("artifacts", "artifact"), ("tags", "tags"), ("training", "training"),
        ("embedding", "embedding"), ("search", "search"))}
    return dataclasses.replace(container, **views)  # type: ignore[type-var]
