"""How a client reaches a service: in this process, over HTTP, or by Lambda invocation.

Every transport takes the same call — a service name, an :class:`~bioims.contract.Operation` and
the arguments by Python name — validates the arguments with the contract (so a bad call fails here, with
the message the service would give), returns the operation's result unchanged, and raises the same
domain error (:class:`~bioims.errors.NotFound`, :class:`~bioims.errors.Conflict`, ...) as the service would.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import requests

from pydantic.alias_generators import to_camel

from .. import logs
from ..contract import Operation, dispatch, validate
from ..errors import ERRORS_BY_CODE, BioimsError, InvalidInput, Unavailable, error_from_dict

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
        Name or ARN of the function (``bioims-tags-dev-invoke``); ``"function"`` for a Lambda emulator.
    lambda_client : botocore Lambda client
        ``boto3.client("lambda")`` or anything with its ``invoke``.
    service : str, optional
        The callee's name, for the errors of failed invocations.

    A domain error raised by the callee comes back as the same error with its message (a NotFound stays
    a NotFound); any other failure of the function, or an invocation that cannot be made, raises
    :class:`~bioims.errors.BioimsError` (:class:`~bioims.errors.Unavailable`) naming the callee. Nothing
    is retried here: the clients of :meth:`to` make one attempt.
    """

    def __init__(self, function_name: str, lambda_client: Any, service: str | None = None) -> None:
        self.function_name = function_name
        self.lambda_client = lambda_client
        self.service = service

    @classmethod
    def to(cls, function: str, service: str, clients: Callable[[str], Any] | None = None) -> LambdaTransport:
        """The transport to ``service``'s function: a name or ARN (the runtime's Lambda client, from
        ``clients("lambda")``), or the ``http://HOST:PORT`` of a Lambda emulator serving it (a client of
        that endpoint). Either client makes one attempt per call and waits up to 15 minutes (Lambda's
        longest run)."""
        if function.startswith("http://"):
            return cls("function", lambda_endpoint_client(function), service)
        return cls(function, (clients or _default_clients)("lambda"), service)

    def __repr__(self) -> str:
        return f"LambdaTransport({self.function_name!r}, service={self.service!r})"

    def call(self, service: str, operation: Operation, args: Mapping[str, Any]) -> Any:
        event = {"method": operation.method, **{to_camel(name): value
                                                for name, value in validate(operation, _plain(args)).items()}}
        started = time.perf_counter()
        outcome = "ok"
        try:
            return self._invoke(service, operation, event)
        except BioimsError as e:
            outcome = type(e).__name__
            raise
        finally:
            logs.emit("call", callee=self.service or service, function=self.function_name, method=operation.method,
                      ms=round((time.perf_counter() - started) * 1000, 1), outcome=outcome)

    def _invoke(self, service: str, operation: Operation, event: dict[str, Any]) -> Any:
        callee = f"the {self.service or service} service's function {self.function_name}"
        try:
            response = self.lambda_client.invoke(FunctionName=self.function_name, InvocationType="RequestResponse",
                                                 Payload=_to_json(event), **_client_context())
            payload = response["Payload"].read()
        except BioimsError:
            raise
        except Exception as e:  # botocore: connection refused, throttled, access denied, ...
            raise Unavailable(f"{callee} could not be invoked ({operation.method}): {e}") from e
        try:
            document = json.loads(payload) if payload else None
        except ValueError:
            raise BioimsError(f"{callee} answered {operation.method} with non-JSON: {payload[:200]!r}") from None
        if response.get("FunctionError"):
            raise _lambda_error(document, callee)
        return document


def _client_context() -> dict[str, str]:
    """``ClientContext`` of an invocation made while serving a request: the caller's service and request
    id, which the callee logs (:mod:`bioims.logs`)."""
    current = logs.current()
    if "request_id" not in current:
        return {}
    custom = {"bioims_request_id": current["request_id"], "bioims_caller": current.get("service", "")}
    return {"ClientContext": base64.b64encode(json.dumps({"custom": custom}).encode()).decode()}


class Unreachable:
    """The transport of a service that ``caller`` does not call (on AWS it has no function name to invoke,
    and its role may not invoke it): every call fails, saying so."""

    def __init__(self, service: str, caller: str) -> None:
        self.service = service
        self.caller = caller

    def __repr__(self) -> str:
        return f"Unreachable({self.service!r}, caller={self.caller!r})"

    def call(self, service: str, operation: Operation, args: Mapping[str, Any]) -> Any:
        raise BioimsError(f"the {self.caller} service does not call the {self.service} service "
                          f"({operation.method}); see bioims.runtime.CALLS")


def lambda_endpoint_client(endpoint: str) -> Any:
    """A botocore Lambda client of one endpoint (a Lambda emulator), one attempt per call."""
    import botocore.session

    return botocore.session.get_session().create_client(
        "lambda", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
        aws_secret_access_key="local", config=one_attempt())


def _default_clients(name: str) -> Any:
    import botocore.session

    return botocore.session.get_session().create_client(name, config=one_attempt())


def one_attempt() -> Any:
    """botocore client settings: one attempt per call, up to 15 minutes (Lambda's longest run) to answer."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=900, connect_timeout=5)


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


def _lambda_error(document: Any, callee: str = "the Lambda function") -> BioimsError:
    """The domain error of a failed invocation's ``{"errorType", "errorMessage"}``; any other failure
    names the callee (``callee``)."""
    if not isinstance(document, dict):
        return BioimsError(f"{callee} failed: {document!r}")
    error_type = str(document.get("errorType", ""))
    message = str(document.get("errorMessage", ""))
    cls = _ERRORS_BY_CLASS_NAME.get(error_type)
    if cls is None:  # an unexpected failure (KeyError, Sandbox.Timedout, ...): keep its type in the message
        return BioimsError(f"{callee} failed: {error_type}: {message}")
    return cls(message)


def _query_value(name: str, value: Any, operation: Operation) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidInput(f"argument {name!r} of {operation.method} must be a string or a number over HTTP")
