"""How a client reaches a service: in this process, over HTTP, or by Lambda invocation.

Every transport takes the same call — a service name, an :class:`~bioims.contract.Operation` and
the arguments by Python name — validates the arguments with the contract (so a bad call fails here, with
the message the service would give), returns the operation's result unchanged, and raises the same
domain error (:class:`~bioims.errors.NotFound`, :class:`~bioims.errors.Conflict`, ...) as the service would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import requests

from pydantic.alias_generators import to_camel

from ..contract import Operation, dispatch, validate
from ..errors import ERRORS_BY_CODE, BioimsError, InvalidInput, error_from_dict

if TYPE_CHECKING:
    from ..runtime import Container

_ERRORS_BY_CLASS_NAME = {cls.__name__: cls for cls in ERRORS_BY_CODE.values()}


class Transport(Protocol):
    """Performs one operation call (arguments by Python parameter name)."""

    def call(self, service: str, operation: Operation, args: Mapping[str, Any]) -> Any: ...


class InProcessTransport:
    """Calls the service objects of a container directly (the CLI on one machine, tests)."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def call(self, service: str, operation: Operation, args: Mapping[str, Any]) -> Any:
        return dispatch(self.container.service(service), operation, args)


class HttpTransport:
    """Calls a service's HTTP API.

    Parameters
    ----------
    base_url : str
        The API of one service: ``http://127.0.0.1:8700/tags`` under ``bioims serve``, the stage URL
        of the service's API Gateway on AWS.
    session : requests.Session, optional
        Reused connections (default: a new session).
    timeout : float
        Seconds to wait for a response.
    """

    def __init__(self, base_url: str, session: requests.Session | None = None, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout

    def call(self, service: str, operation: Operation, args: Mapping[str, Any]) -> Any:
        rest = validate(operation, _plain(args))
        path = operation.path
        for variable in operation.path_variables:
            path = path.replace(f"{{{variable}}}", quote(str(rest.pop(operation.path_field(variable))), safe=""))
        if operation.has_body:
            document = self.request(operation.http_method, path, body=rest)
        else:
            document = self.request(operation.http_method, path, params={
                name: _query_value(name, value, operation) for name, value in rest.items() if value is not None})
        return operation.from_http_body(document)

    def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """``method`` ``base_url + path`` with a JSON ``body`` (or none) and query ``params``; the decoded
        JSON answer, or the domain error of an error answer."""
        url = self.base_url + path
        if body is not None:
            options: dict[str, Any] = {"data": _to_json(body), "headers": {"Content-Type": "application/json"}}
            options |= {"params": dict(params)} if params else {}
        else:
            options = {"params": dict(params or {})}
        status, text = self._send(method, url, options)
        try:
            document = json.loads(text) if text else None
        except ValueError:
            document = None
        if status >= 400:
            if isinstance(document, dict) and isinstance(document.get("error"), dict):
                raise error_from_dict(document["error"])
            raise BioimsError(f"{method} {url} answered {status}: {text[:200]}")
        return document

    def _send(self, method: str, url: str, options: dict[str, Any]) -> tuple[int, str]:
        """Status and text of a response. The response is closed here, so that an error raised from
        it (and kept with its traceback) does not keep the connection's socket open."""
        try:
            with self.session.request(method, url, timeout=self.timeout, **options) as response:
                return response.status_code, response.text
        except requests.RequestException as e:
            raise BioimsError(f"{method} {url} failed: {e}") from e


class LambdaTransport:
    """Invokes a service's ``invoke`` Lambda function with the seed's ``{"method": ...}`` protocol.

    Parameters
    ----------
    function_name : str
        Name or ARN of the function (``bioims-tags-dev-invoke``).
    lambda_client : botocore Lambda client
        ``boto3.client("lambda")`` or anything with its ``invoke``.
    """

    def __init__(self, function_name: str, lambda_client: Any) -> None:
        self.function_name = function_name
        self.lambda_client = lambda_client

    def call(self, service: str, operation: Operation, args: Mapping[str, Any]) -> Any:
        event = {"method": operation.method, **{to_camel(name): value
                                                for name, value in validate(operation, _plain(args)).items()}}
        response = self.lambda_client.invoke(FunctionName=self.function_name, InvocationType="RequestResponse",
                                             Payload=_to_json(event))
        payload = response["Payload"].read()
        document = json.loads(payload) if payload else None
        if response.get("FunctionError"):
            raise _lambda_error(document)
        return document


def _plain(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as JSON would carry them (sets, tuples, generators given for lists become lists)."""
    return json.loads(_to_json(dict(args)))


def _to_json(document: Any) -> bytes:
    """JSON of a call's arguments; other iterables (sets, generators: ``Iterable[str]`` parameters) as lists."""
    return json.dumps(document, default=_iterable_as_list).encode("utf-8")


def _iterable_as_list(value: Any) -> list[Any]:
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _lambda_error(document: Any) -> BioimsError:
    """The domain error of a failed invocation's ``{"errorType", "errorMessage"}``."""
    if not isinstance(document, dict):
        return BioimsError(f"Lambda function failed: {document!r}")
    error_type = str(document.get("errorType", ""))
    message = str(document.get("errorMessage", ""))
    cls = _ERRORS_BY_CLASS_NAME.get(error_type)
    if cls is None:  # an unexpected failure (KeyError, Sandbox.Timedout, ...): keep its type in the message
        return BioimsError(f"{error_type}: {message}")
    return cls(message)


def _query_value(name: str, value: Any, operation: Operation) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidInput(f"argument {name!r} of {operation.method} must be a string or a number over HTTP")
