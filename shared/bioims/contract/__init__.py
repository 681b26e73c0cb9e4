"""The API of every bioims service, defined once: request and response models, operations, vocabularies.

A light module (pydantic and the standard library only) shared by the servers (Chalice apps, the Lambda
``invoke`` handlers, the search server, ``bioims serve``), the SDK (:mod:`bioims.client`), the CLI and the
generated documentation. See :mod:`bioims.contract.base` for the rules every operation follows.

Examples
--------
>>> op = service("tags").find("getTagByValue")
>>> op.route
'GET /tags/by-value/{value}'
"""

from __future__ import annotations

from types import MappingProxyType

from . import artifact, embedding, image_management, search, tags, training
from .base import MAX_BODY_BYTES, MAX_DEPTH, Operation, Request, Service, check_depth, dispatch, parse_json, validate

SERVICES: MappingProxyType[str, Service] = MappingProxyType({
    m.SERVICE.name: m.SERVICE for m in (image_management, artifact, tags, training, embedding, search)})
"""Service name (its API prefix under ``bioims serve``) -> its contract."""
LAMBDA_SERVICES = ("image-management", "artifact", "tags", "training", "embedding")
"""The services deployed as Lambda functions (search is a long-lived container)."""


def service(name: str) -> Service:
    """A service's contract; :class:`~bioims.errors.InvalidInput` for an unknown name."""
    from ..errors import InvalidInput

    try:
        return SERVICES[name]
    except KeyError:
        raise InvalidInput(f"unknown service {str(name)[:80]!r}; known: {', '.join(SERVICES)}") from None


__all__ = ["LAMBDA_SERVICES", "MAX_BODY_BYTES", "MAX_DEPTH", "SERVICES", "Operation", "Request", "Service",
           "check_depth", "dispatch", "parse_json", "service", "validate"]
