"""Chalice apps generated from the contract: HTTP routes, ``GET /openapi.json`` and the ``{"method": ...}`` Lambda handler.

Routes are thin: they collect the arguments of a request (path, query string, JSON body), call
:func:`bioims.contract.dispatch` on the service (validation by the operation's request model), and answer JSON. Domain errors become their
HTTP status with ``{"error": {"code", "message"}}``; anything unexpected is logged and answered with a
500 that does not leak its details. Chalice's own error answers (405 method not allowed, 415
unsupported media type) are rewritten into the same shape.

A service's ``app.py`` is one line (see ``services/<name>/app.py``)::

    app = create_app("artifact", lazy_container(partial(bioims.runtime.aws, service="artifact")))
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from chalice import Blueprint, Chalice, Response
from chalice.app import Request

from ..contract import MAX_BODY_BYTES, Operation, dispatch, service
from ..contract.base import http_arguments
from ..contract.openapi import openapi
from ..errors import BioimsError, InvalidInput, PayloadTooLarge
from ..ids import new_id
from ..logs import emit, request

if TYPE_CHECKING:
    from ..runtime import Container

ContainerFactory = Callable[[], "Container"]
LambdaHandler = Callable[[Any, Any], Any]


def lazy_container(factory: ContainerFactory) -> ContainerFactory:
    """Wrap a composition root so that it runs once, on first use, in this process (thread-safe).

    Nothing happens at import: settings are read and clients created by the first request that a Lambda
    execution environment (or a server) handles, then reused by every later one.
    """
    lock = threading.Lock()
    built: list[Container] = []

    def get() -> Container:
        if not built:
            with lock:
                if not built:
                    built.append(factory())
        return built[0]

    return get


def json_response(document: Any, status: int = 200) -> Response:
    """A JSON response (strings too are JSON-encoded, unlike Chalice's default)."""
    return Response(body=json.dumps(document), status_code=status, headers={"Content-Type": "application/json"})


def error_response(error: BioimsError) -> Response:
    """``{"error": {"code", "message"}}`` with the error's HTTP status."""
    return json_response({"error": error.to_dict()}, error.status)


def request_arguments(request: Request, path_variables: Mapping[str, str]) -> dict[str, Any]:
    """The arguments of a request (see :func:`bioims.contract.base.http_arguments`); path variables are
    percent-decoded here (API Gateway passes them encoded).

    Raises
    ------
    PayloadTooLarge
        The body exceeds :data:`~bioims.contract.MAX_BODY_BYTES`.
    InvalidInput
        The body is not a JSON object; a query parameter is repeated; a name is given twice.
    """
    raw = request.raw_body or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body of {len(raw)} bytes exceeds the limit of {MAX_BODY_BYTES} bytes")
    query = [(name, value) for name in (request.query_params or {})
             for value in request.query_params.getlist(name)]
    return http_arguments({k: unquote(v) for k, v in path_variables.items()}, query, raw)


def routes(service_name: str, get_container: ContainerFactory) -> Blueprint:
    """A blueprint with one route per operation of ``service_name`` (see :mod:`bioims.contract`) and
    ``GET /openapi.json``, the service's generated OpenAPI document."""
    blueprint = Blueprint(f"bioims.api.{service_name}")
    for op in service(service_name).operations:
        blueprint.route(op.path, methods=[op.http_method], name=op.function)(
            _view(blueprint, service_name, op, get_container))
    document = openapi(service(service_name))
    blueprint.route("/openapi.json", methods=["GET"], name="openapi")(lambda: json_response(document))
    allowed: dict[str, list[str]] = {"/openapi.json": ["GET"]}
    for op in service(service_name).operations:
        allowed.setdefault(op.path, []).append(op.http_method)

    def chalice_errors_as_json(request: Request, get_response: Callable[[Request], Response]) -> Response:
        """Rewrite the errors Chalice answers itself (``{"Code", "Message"}``: 405, 415) into our error shape;
        a 405 names the allowed methods in ``Allow``."""
        response = get_response(request)
        body = response.body
        if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
            response.body = json.dumps({"error": {"code": body["Code"], "message": body.get("Message", "")}})
            response.headers["Content-Type"] = "application/json"
        if response.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed.get(request.context.get("resourcePath", ""), []))
        return response

    blueprint.register_middleware(chalice_errors_as_json, "http")
    return blueprint


def invoke_handler(service_name: str, get_container: ContainerFactory) -> LambdaHandler:
    """The handler of the seed's cross-service protocol: ``{"method": "getParameter", "parameter": "x"}``.

    Returns the operation's result unchanged. Failures are raised, so that Lambda reports them as
    ``{"errorType", "errorMessage"}`` with the domain error's class name as ``errorType``
    (``NotFound``, ``InvalidInput``, ``Conflict``), which :mod:`bioims.client` maps back to the class.

    Each invocation logs one ``invoke`` event (:mod:`bioims.logs`) with Lambda's request id, the method,
    its duration and outcome, and the caller's service and request id when the caller sent them.
    """
    contract = service(service_name)  # fail at assembly for an unknown service

    def invoke(event: Any, context: Any) -> Any:
        started = time.perf_counter()
        method = event.get("method") if isinstance(event, dict) else None
        with request(getattr(context, "aws_request_id", None) or new_id(), service=service_name, **_caller(context)):
            outcome = "ok"
            try:
                if not isinstance(event, dict):
                    raise InvalidInput(f"the event must be a JSON object, got {type(event).__name__}")
                args = dict(event)
                args.pop("method", None)
                if not isinstance(method, str) or not method:
                    raise InvalidInput('the event needs a "method", e.g. {"method": "getParameter", "parameter": "x"}')
                return dispatch(get_container().service(service_name), contract.find(method), args)
            except BioimsError as e:
                outcome = type(e).__name__
                raise
            except Exception as e:
                outcome = f"unexpected {type(e).__name__}"
                raise
            finally:
                emit("invoke", method=method if isinstance(method, str) else None,
                     ms=round((time.perf_counter() - started) * 1000, 1), outcome=outcome)

    return invoke


def _caller(context: Any) -> dict[str, str]:
    """The caller's service and request id, from the invocation's client context (sent by
    :class:`bioims.client.LambdaTransport`)."""
    custom = getattr(getattr(context, "client_context", None), "custom", None)
    if not isinstance(custom, dict):
        return {}
    fields = {"caller": custom.get("bioims_caller"), "caller_request_id": custom.get("bioims_request_id")}
    return {k: str(v)[:128] for k, v in fields.items() if v}


def create_app(service_name: str, get_container: ContainerFactory) -> Chalice:
    """The Chalice app of a service: its routes at the root and the Lambda function ``invoke`` (also
    ``app.invoke``, which each ``services/<name>/app.py`` exposes as the module-level ``invoke`` that
    the packaged template's handler ``app.invoke`` names)."""
    app = Chalice(app_name=f"bioims-{service_name}")
    app.register_blueprint(routes(service_name, get_container))
    app.invoke = app.lambda_function(name="invoke")(invoke_handler(service_name, get_container))  # type: ignore[attr-defined]
    return app


def _view(blueprint: Blueprint, service_name: str, op: Operation,
          get_container: ContainerFactory) -> Callable[..., Response]:
    def view(**path_variables: str) -> Response:
        started = time.perf_counter()
        context = blueprint.current_request.context or {}
        with request(str(context.get("requestId") or new_id()), service=service_name):
            response = _answer(blueprint, service_name, op, get_container, path_variables)
            emit("request", method=op.method, route=op.route, status=response.status_code,
                 ms=round((time.perf_counter() - started) * 1000, 1))
            return response

    view.__name__ = view.__qualname__ = op.function
    view.__doc__ = f"{op.route} -> {service_name} {op.function} (Lambda method {op.method})."
    return view


def _answer(blueprint: Blueprint, service_name: str, op: Operation, get_container: ContainerFactory,
            path_variables: Mapping[str, str]) -> Response:
    try:
        args = request_arguments(blueprint.current_request, path_variables)
        result = dispatch(get_container().service(service_name), op, args)
        return json_response(op.http_body(result), op.status)
    except BioimsError as e:
        return error_response(e)
    except Exception:
        blueprint.log.exception("%s %s (%s) failed", op.http_method, op.path, op.method)
        return error_response(BioimsError("internal error (see the service log)"))
