"""Reaching a deployed bioims stack: SigV4-signed HTTP, Lambda invoke, and stack discovery.

Everything here is botocore (no boto3): the credentials come from the usual AWS chain (environment,
``~/.aws`` profiles, SSO, instance roles), the region from the stack's ARN.

>>> stack = Stack.discover("bioims-dev")                     # doctest: +SKIP
>>> remote = stack.connect()                                 # doctest: +SKIP
>>> remote.tags.get_tag_by_value("compound:taxol")           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import requests

from ..errors import BioimsError, NotFound
from .clients import CLIENTS, ServiceClient
from .transports import HttpTransport, LambdaTransport, one_attempt

if TYPE_CHECKING:
    import botocore.session

# The output names of the root stack (template.yaml) and of a service stack deployed alone
# (services/<service>/template.yaml, stack ``<root>-<service>``).
OUTPUT_PREFIXES: Mapping[str, str] = MappingProxyType({
    "image-management": "ImageManagement", "artifact": "Artifact", "tags": "Tags", "training": "Training",
    "embedding": "Embedding"})
"""Service -> the prefix of its root-stack outputs ``<Prefix>ApiUrl`` and ``<Prefix>Function``."""


class SigV4(requests.auth.AuthBase):
    """Signs each request with AWS Signature Version 4 (botocore's signer), as API Gateway's IAM
    authorization requires.

    Parameters
    ----------
    credentials : botocore.credentials.Credentials
        Refreshed as botocore refreshes them (frozen once per request).
    region : str
        The API's region (``eu-west-1``).
    service : str
        The signing name: ``execute-api`` for API Gateway.
    """

    def __init__(self, credentials: Any, region: str, service: str = "execute-api") -> None:
        self.credentials = credentials
        self.region = region
        self.service = service

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = {k: v for k, v in r.headers.items() if k.lower() == "content-type"}
        request = AWSRequest(method=r.method, url=r.url, data=r.body or b"", headers=headers)
        SigV4Auth(self.credentials.get_frozen_credentials(), self.service, self.region).add_auth(request)
        r.headers.update({k: v for k, v in request.headers.items() if k.lower() != "content-type"})
        return r


def aws_session(profile: str | None = None, region: str | None = None) -> botocore.session.Session:
    """A botocore session of ``profile`` (default: the AWS chain's), its region ``region`` if given."""
    import botocore.exceptions
    import botocore.session

    try:
        session = botocore.session.Session(profile=profile)
        session.get_scoped_config()  # raises for an unknown profile
    except botocore.exceptions.ProfileNotFound as e:
        raise BioimsError(f"AWS profile {profile!r} not found ({e})") from None
    if region:
        session.set_config_variable("region", region)
    return session


def _credentials(session: botocore.session.Session) -> Any:
    credentials = session.get_credentials()
    if credentials is None:
        raise BioimsError("no AWS credentials found (environment, ~/.aws profiles, SSO or an instance role)")
    return credentials


@dataclass(frozen=True)
class Stack:
    """The endpoints of a deployed bioims environment, from its CloudFormation outputs.

    Attributes
    ----------
    name : str
        The root stack (``bioims-dev``).
    region : str
        Its region (from the stack's ARN).
    urls : Mapping[str, str]
        Service -> the base URL of its API (IAM-signed), ``search`` included.
    functions : Mapping[str, str]
        Service -> the name of its ``invoke`` Lambda function.
    outputs : Mapping[str, str]
        Every output of the root stack (bucket, state machines, queues).
    """

    name: str
    region: str
    urls: Mapping[str, str]
    functions: Mapping[str, str]
    outputs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def discover(cls, name: str, session: botocore.session.Session | None = None) -> Stack:
        """Read the root stack ``name`` and, for each service not nested in it (``NestServices=false``), the
        service's own stack ``<name>-<service>``; raises NotFound when ``name`` does not exist."""
        session = session or aws_session()
        cloudformation = session.create_client("cloudformation", config=one_attempt())
        root = _describe(cloudformation, name)
        if root is None:
            raise NotFound(f"no CloudFormation stack {name!r} in {session.get_config_variable('region')}")
        outputs = _outputs(root)
        urls: dict[str, str] = {}
        functions: dict[str, str] = {}
        for service, prefix in OUTPUT_PREFIXES.items():
            url, function = outputs.get(f"{prefix}ApiUrl"), outputs.get(f"{prefix}Function")
            if url is None and function is None:  # deployed alone (make deploy SERVICE=...)
                own = _describe(cloudformation, f"{name}-{service}")
                if own is None:
                    continue
                url, function = _outputs(own).get("EndpointURL"), _outputs(own).get("InvokeFunctionName")
            if url:
                urls[service] = url
            if function:
                functions[service] = function
        if outputs.get("SearchUrl"):
            urls["search"] = outputs["SearchUrl"]
        return cls(name=name, region=root["StackId"].split(":")[3], urls=MappingProxyType(urls),
                   functions=MappingProxyType(functions), outputs=MappingProxyType(outputs))

    def connect(self, session: botocore.session.Session | None = None,
                via: Literal["http", "lambda"] = "http", timeout: float = 30) -> Remote:
        """Clients of every service of the stack, over SigV4-signed HTTP (``via="http"``) or by invoking the
        services' functions (``via="lambda"``; search is HTTP either way)."""
        session = session or aws_session(region=self.region)
        if via == "lambda":
            lam = session.create_client("lambda", region_name=self.region, config=one_attempt())
            transports = {s: LambdaTransport.to(f, s, lambda name: lam) for s, f in self.functions.items()}
            if "search" in self.urls:
                transports["search"] = self._http(session, "search", timeout)
        else:
            transports = {s: self._http(session, s, timeout) for s in self.urls}
        return Remote({s: CLIENTS[s](t) for s, t in transports.items()}, where=f"stack {self.name}")

    def _http(self, session: botocore.session.Session, service: str, timeout: float) -> HttpTransport:
        http = requests.Session()
        http.auth = SigV4(_credentials(session), self.region)
        return HttpTransport(self.urls[service], session=http, timeout=timeout)


def _describe(cloudformation: Any, name: str) -> dict[str, Any] | None:
    import botocore.exceptions

    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except botocore.exceptions.ClientError as e:
        if "does not exist" in str(e):
            return None
        raise BioimsError(f"CloudFormation describe-stacks {name}: {e}") from e
    except botocore.exceptions.BotoCoreError as e:
        raise BioimsError(f"CloudFormation describe-stacks {name}: {e}") from e
    return stacks[0] if stacks else None


def _outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


class Remote:
    """The services of one bioims deployment as clients, by the container's attribute names
    (``images``, ``artifacts``, ``tags``, ``training``, ``embedding``, ``search``).

    Build one with :meth:`Stack.connect` (a deployed stack) or :meth:`at` (``bioims serve``)."""

    ATTRIBUTES: Mapping[str, str] = MappingProxyType({
        "images": "image-management", "artifacts": "artifact", "tags": "tags", "training": "training",
        "embedding": "embedding", "search": "search"})

    def __init__(self, clients: Mapping[str, ServiceClient], where: str) -> None:
        self.clients = dict(clients)
        self.where = where

    @classmethod
    def at(cls, url: str, timeout: float = 30) -> Remote:
        """The services of ``bioims serve`` at ``url`` (``http://127.0.0.1:8700``), one connection pool."""
        session = requests.Session()
        base = url.rstrip("/")
        return cls({s: CLIENTS[s](HttpTransport(f"{base}/{s}", session=session, timeout=timeout)) for s in CLIENTS},
                   where=base)

    def service(self, name: str) -> ServiceClient:
        """The client of service ``name``; a one-line error if this deployment has none."""
        try:
            return self.clients[name]
        except KeyError:
            raise BioimsError(f"{self.where} has no {name} service (found: {', '.join(self.clients) or 'none'})") \
                from None

    def __getattr__(self, name: str) -> ServiceClient:
        if name.startswith("_") or name not in self.ATTRIBUTES:
            raise AttributeError(name)
        return self.service(self.ATTRIBUTES[name])

    def __repr__(self) -> str:
        return f"Remote({self.where!r}, services={sorted(self.clients)})"


def deployment(url: str | None = None, stack: str | None = None, profile: str | None = None,
               region: str | None = None, via: Literal["http", "lambda"] = "http") -> Remote:
    """Every service of one deployment: a `bioims serve` at ``url``, or the CloudFormation ``stack`` (found
    with ``profile``'s credentials in ``region``, reached over ``via``). Exactly one of ``url`` and ``stack``
    (``stack`` defaults to ``$BIOIMS_STACK``). The one line the example scripts start with."""
    import os

    stack = stack or (None if url else os.environ.get("BIOIMS_STACK"))
    if (url is None) == (stack is None):
        raise BioimsError("give exactly one of url (a `bioims serve`) and stack (a deployed stack, or BIOIMS_STACK)")
    if url is not None:
        return Remote.at(url)
    session = aws_session(profile, region)
    return Stack.discover(stack, session).connect(session, via=via)
