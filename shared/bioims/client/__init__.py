"""The bioims SDK: one client per service over three transports.

>>> from bioims.client import connect
>>> tags = connect("tags", url="http://127.0.0.1:8700/tags")        # bioims serve
>>> tags = connect("tags", function_name="bioims-tags-dev-invoke")   # AWS, cross-service protocol
>>> tags = connect("tags", container=bioims.runtime.local())         # in this process
>>> search = SearchClient("http://127.0.0.1:8700/search")              # the search service (HTTP only)
>>> remote = Remote.at("http://127.0.0.1:8700")                       # every service of bioims serve
>>> remote = Stack.discover("bioims-dev").connect()                  # a deployed stack (SigV4-signed HTTP)
>>> remote.tags.get_tag_by_value("compound:taxol")

Installs on its own: ``pip install "bioims[client]"`` (pydantic, requests, botocore, click; no numpy,
pandas or pynamodb).

Clients have the methods (names, parameters, results, errors) of the services in :mod:`bioims.services`.
"""

from .clients import (CLIENTS, ArtifactClient, EmbeddingClient, ImageManagementClient, SearchClient, ServiceClient,
                      TagsClient, TrainingClient, Validated, connect, validated)
from .aws import Remote, SigV4, Stack, aws_session, deployment
from .transports import HttpTransport, InProcessTransport, LambdaTransport, Transport

__all__ = [
    "CLIENTS",
    "ArtifactClient",
    "EmbeddingClient",
    "HttpTransport",
    "ImageManagementClient",
    "InProcessTransport",
    "LambdaTransport",
    "Remote",
    "SearchClient",
    "ServiceClient",
    "SigV4",
    "Stack",
    "TagsClient",
    "TrainingClient",
    "Transport",
    "Validated",
    "aws_session",
    "connect",
    "deployment",
    "validated",
]
