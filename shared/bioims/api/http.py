"""ASGI (Starlette) apps generated from the contract, served by uvicorn.

- :func:`service_app`: the HTTP API of one service (a route per operation, ``GET /openapi.json``), its
  arguments validated by the contract; used for the search service (alone in its container, or under
  ``/search`` of ``bioims serve``).
- :func:`local_app`: ``bioims serve``: every service on one address, one prefix per service. The five
  Lambda services are answered by their Chalice apps (through :class:`chalice.local.LocalGateway`, what
  ``chalice local`` uses), so routes, statuses and bodies are exactly those deployed behind API Gateway.
- :func:`guarded`: what keeps a local server local: a Host-header allow-list (:class:`AllowedHosts`:
  localhost names and the bound address; a web page cannot reach the API by DNS rebinding), JSON-only request bodies (415
  otherwise: no cross-site "simple" POSTs without a preflight), a body-size limit (413), and no CORS
  headers at all (browsers refuse cross-origin reads).

Every error is ``{"error": {"code", "message"}}`` from one handler (:func:`error_response`); a 405 names
the allowed methods in ``Allow``; anything unexpected is logged and answered with a 500 without internals.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..contract import LAMBDA_SERVICES, MAX_BODY_BYTES, Operation, Service, dispatch, service
from ..contract.base import http_arguments
from ..contract.openapi import combined, json_response, openapi
from ..errors import BioimsError, InvalidInput, NotFound, PayloadTooLarge

if TYPE_CHECKING:
    from ..runtime import Container
    from ..services.search import SearchService

SEARCH_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request of the search API (an uploaded field's channel files, base64)."""
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
WATCH_SECONDS = 1.0
"""How often a search server compares its loaded indexes with the stored versions."""
_log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ errors
class MethodNotAllowed(BioimsError):
    status = 405
    code = "MethodNotAllowed"


class UnsupportedMediaType(BioimsError):
    status = 415
    code = "UnsupportedMediaType"


def error_response(exc: Exception, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape: ``{"error": {"code", "message"}}`` with the error's status."""
    if isinstance(exc, HTTPException):  # Starlette's own: no route (404), wrong method (405)
        error: BioimsError = MethodNotAllowed(f"method not allowed; allowed: {(exc.headers or {}).get('Allow', '')}") \
            if exc.status_code == 405 else NotFound(f"no route: {exc.detail}")
        headers = {**(exc.headers or {}), **(headers or {})}
    elif isinstance(exc, BioimsError):
        error = exc
    else:
        _log.error("request failed", exc_info=exc)
        error = BioimsError("internal error (see the server log)")
    return JSONResponse({"error": error.to_dict()}, status_code=error.status, headers=headers)


async def _handle(request: Request, exc: Exception) -> Response:
    return error_response(exc)


EXCEPTION_HANDLERS: dict[Any, Callable[..., Any]] = {HTTPException: _handle, BioimsError: _handle, Exception: _handle}


# ------------------------------------------------------------------------------------------------ service apps
Inline = Callable[[Operation, dict[str, Any]], bool]
"""Whether a call is cheap enough (well under a millisecond) to run on the event loop itself."""


def operation_endpoint(op: Operation, get_target: Callable[[], Any], max_body: int,
                       inline: Inline | None = None) -> Callable[..., Any]:
    """The Starlette endpoint of one operation: arguments from the path, query string and JSON body,
    validated by the contract; the call runs in a worker thread, or on the event loop when ``inline``
    says it is cheap (the hand-off to a thread costs about as much as a search of 13k vectors)."""

    async def endpoint(request: Request) -> Response:
        body = await read_body(request, max_body) if op.has_body else b""
        args = http_arguments(request.path_params, request.query_params.multi_items(), body)
        if inline is not None and inline(op, args):
            result = dispatch(get_target(), op, args)
        else:
            result = await run_in_threadpool(dispatch, get_target(), op, args)
        return JSONResponse(op.http_body(result), status_code=op.status)

    endpoint.__name__ = op.function
    return endpoint


def _by_method(endpoints: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    """One endpoint for a path with several operations (one Route per path, so that a 405 names them all)."""
    if len(endpoints) == 1:
        return next(iter(endpoints.values()))

    async def endpoint(request: Request) -> Response:
        return await endpoints[request.method](request)

    return endpoint


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def service_app(contract: Service, get_target: Callable[[], Any], *, max_body: int = MAX_BODY_BYTES,
                extra: Sequence[tuple[Route, dict[str, Any]]] = (), inline: Inline | None = None) -> Starlette:
    """The HTTP API of one service: a route per operation and ``GET /openapi.json``.

    ``extra`` adds routes that are not operations (health, readiness) with their OpenAPI path items;
    ``inline`` picks the calls run on the event loop (see :func:`operation_endpoint`).
    """
    by_path: dict[str, dict[str, Callable[..., Any]]] = {}
    for op in contract.operations:
        by_path.setdefault(op.path, {})[op.http_method] = operation_endpoint(op, get_target, max_body, inline)
    routes: list[BaseRoute] = [Route(path, _by_method(endpoints), methods=list(endpoints))
                               for path, endpoints in by_path.items()]
    document = openapi(contract, extra_paths={route.path: item for route, item in extra})
    routes += [route for route, _ in extra]
    routes.append(Route("/openapi.json", lambda request: JSONResponse(document), methods=["GET"]))
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)


def search_app(search: SearchService, *, load: bool = True, watch: float = WATCH_SECONDS) -> Starlette:
    """The search API over a :class:`~bioims.services.search.SearchService`, with ``GET /health``
    (liveness) and ``GET /ready`` (200 once the stored indexes are loaded, 503 before).

    ``load`` loads every stored index in a background thread now (queries load indexes on demand anyway);
    then, every ``watch`` seconds (0: never), the loaded indexes follow the store
    (:meth:`~bioims.services.search.SearchService.refresh`), so that a build, reload or delete made by
    another process (the CLI, another worker, another task behind the load balancer) reaches this one.
    """
    ready = threading.Event()
    state: dict[str, str | None] = {"load_error": None}

    def load_and_follow() -> None:
        try:
            _log.info("search: %d indexes loaded", len(search.load_all()))
        except Exception as e:
            state["load_error"] = f"{type(e).__name__}: {e}"
            _log.exception("search: loading the stored indexes failed")
        finally:
            ready.set()
        while watch > 0:
            time.sleep(watch)
            try:
                for swapped in search.refresh():
                    _log.info("search: %s %s %s version %s swapped in", swapped["train_id"], swapped["level"],
                              swapped["metric"], swapped["version"])
            except Exception:
                _log.exception("search: following the stored indexes failed")

    if load:
        threading.Thread(target=load_and_follow, name="search-indexes", daemon=True).start()
    else:
        ready.set()

    def readiness(request: Request) -> Response:
        loaded = len(search.loaded_indexes())
        if not ready.is_set():
            return JSONResponse({"ready": False, "indexes": loaded, "reason": "loading the stored indexes"}, 503)
        return JSONResponse({"ready": True, "indexes": loaded, "load_error": state["load_error"]})

    return service_app(service("search"), lambda: search, max_body=SEARCH_MAX_BODY_BYTES, inline=_cheap_search, extra=[
        (Route("/health", lambda request: JSONResponse({"status": "ok"}), methods=["GET"]),
         {"get": {"operationId": "health", "summary": "Liveness",
                  "responses": {"200": json_response("alive", {"type": "object"})}}}),
        (Route("/ready", readiness, methods=["GET"]),
         {"get": {"operationId": "ready", "summary": "Readiness: 503 until the stored indexes are loaded",
                  "responses": {"200": json_response("ready", {"type": "object"}),
                                "503": json_response("loading", {"type": "object"})}}}),
    ])


def _cheap_search(op: Operation, args: dict[str, Any]) -> bool:
    """Searches of a loaded index and record lookups run on the event loop; uploads (an ONNX model
    over a field), index builds and reloads (seconds) in a worker thread."""
    if op.function == "search":
        return args.get("images") is None
    return op.function in ("get_search", "indexes")


class ChaliceGateway:
    """ASGI app answering one Lambda service's requests with its Chalice app (mounted under its prefix).

    A Chalice app keeps the request it handles on the app object, so each worker thread builds its own
    gateway (cheap) over the one shared container.
    """

    def __init__(self, service_name: str, get_container: Callable[[], Container]) -> None:
        from .chalice_app import create_app

        self._create = lambda: _local_gateway(create_app(service_name, get_container))
        self._per_thread = threading.local()
        self.prefix = f"/{service_name}"

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        """Answer one request with this worker thread's gateway (run in the worker thread: looking the
        gateway up on the event loop would hand every thread the loop's one app)."""
        gateway = getattr(self._per_thread, "gateway", None)
        if gateway is None:
            gateway = self._per_thread.gateway = self._create()
        return gateway.handle_request(method, target, headers, body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from chalice.local import LocalGatewayException

        request = Request(scope, receive)
        raw = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1").split("?", 1)[0][len(scope.get("root_path", "")):] or "/"
        target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
        try:
            body = await read_body(request, MAX_BODY_BYTES)
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                answer = await run_in_threadpool(self._handle, request.method, target, headers, body)
            except LocalGatewayException:  # without authorizers, only "Missing Authentication Token": no route
                raise NotFound(f"no route {request.method} {self.prefix}{path}") from None
            data = answer.get("body") or b""
            if answer.get("isBase64Encoded"):
                data = base64.b64decode(data)
            elif isinstance(data, str):
                data = data.encode("utf-8")
            response = Response(data, status_code=int(answer["statusCode"]), headers={
                k: v for k, v in (answer.get("headers") or {}).items() if k.lower() != "content-length"})
        except Exception as e:
            response = error_response(e)
        await response(scope, receive, send)


def _local_gateway(app: Any) -> Any:
    from chalice.config import Config
    from chalice.local import LocalGateway

    return LocalGateway(app, Config())


WEB = Path(__file__).with_name("web")
"""The web interface's static files (``index.html``, ``app.js``, ``style.css``): no build step."""


def local_app(container: Container, *, allowed_hosts: Iterable[str] = ()) -> ASGIApp:
    """``bioims serve``: the web interface at ``/`` (its files under ``/ui/``), every service under its
    prefix, ``GET /health``, ``GET /openapi.json`` (every service's operations in one document), guarded
    (see :func:`guarded`)."""
    services = sorted([*LAMBDA_SERVICES, "search"])

    def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "services": services})

    document = combined({name: service(name) for name in services}, extra_paths={"/health": {"get": {
        "operationId": "health", "summary": "Liveness and the services served",
        "responses": {"200": json_response("alive", {"type": "object"})}}}})
    routes: list[BaseRoute] = [Route("/", lambda request: FileResponse(WEB / "index.html"), methods=["GET"]),
                               Mount("/ui", app=StaticFiles(directory=WEB), name="ui"),
                               Route("/health", health, methods=["GET"]),
                               Route("/openapi.json", lambda request: JSONResponse(document), methods=["GET"]),
                               Mount("/search", app=search_app(container.search))]
    routes += [Mount(f"/{name}", app=ChaliceGateway(name, lambda: container)) for name in LAMBDA_SERVICES]

    def no_service(request: Request) -> Response:
        prefix = request.url.path.lstrip("/").split("/", 1)[0]
        if prefix in services:
            raise NotFound(f"no route {request.method} {request.url.path[:200]}")
        raise NotFound(f"no service at /{prefix[:80]}; services: " + ", ".join(f"/{s}" for s in services)
                       + ", /health, /openapi.json; the web interface is at /")

    routes.append(Route("/{path:path}", no_service, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]))
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    return guarded(app, allowed_hosts=allowed_hosts, max_body=SEARCH_MAX_BODY_BYTES)


# ------------------------------------------------------------------------------------------------ guards
def guarded(app: ASGIApp, *, allowed_hosts: Iterable[str] = (), max_body: int = SEARCH_MAX_BODY_BYTES) -> ASGIApp:
    """``app`` behind the Host allow-list (``LOCAL_HOSTS`` plus ``allowed_hosts``; ``"*"`` allows any,
    for a container behind a load balancer) and the JSON-only body check."""
    return AllowedHosts(JsonBodies(app, max_body), [*LOCAL_HOSTS, *allowed_hosts])


class AllowedHosts:
    """Refuse (400, our error shape) a request whose ``Host`` is not allowed: a web page that rebinds
    its own DNS name to 127.0.0.1 sends its name, not ours.

    Written here rather than Starlette's ``TrustedHostMiddleware`` because that one answers plain text
    and splits ``[::1]:8700`` at the first colon.
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = {h.strip("[]").lower() for h in hosts}
        self.any = "*" in self.hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.any:
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            host = header[1:].split("]", 1)[0] if header.startswith("[") else header.rsplit(":", 1)[0] \
                if header.count(":") == 1 else header
            if host not in self.hosts:
                await error_response(InvalidInput(
                    f"host {header[:80]!r} is not served here; use http://127.0.0.1 or localhost "
                    "(or start the server with --allow-host)"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


class JsonBodies:
    """Refuse (415) a request body that is not ``application/json`` and (413) one declared larger than
    ``max_body``: browsers send ``text/plain`` and form posts across sites without a preflight."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"")
            has_body = (length.isdigit() and int(length) > 0) or b"transfer-encoding" in headers
            problem: BioimsError | None = None
            if length.isdigit() and int(length) > self.max_body:
                problem = PayloadTooLarge(f"request body of {int(length)} bytes exceeds the limit of "
                                          f"{self.max_body} bytes")
            elif has_body:
                media = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
                if media != b"application/json":
                    problem = UnsupportedMediaType(
                        f"request bodies must be application/json, not {media.decode('latin-1')[:80] or 'untyped'}")
            if problem is not None:
                await error_response(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
