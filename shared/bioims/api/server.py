"""``bioims serve``: every service's HTTP API on one address, one path prefix per service.

``/artifact/...``, ``/image-management/...`` and ``/tags/...`` are each handed, without their prefix, to
that service's Chalice app through :class:`chalice.local.LocalGateway` (what ``chalice local`` uses;
Chalice has no WSGI adapter), so the routes, status codes and bodies are exactly those deployed behind
API Gateway. ``GET /health`` answers ``{"status": "ok", "services": [...]}``. Unknown prefixes and routes
answer 404, every error in the ``{"error": {"code", "message"}}`` shape.

A Chalice app keeps the request being handled on the app object, so one app must not serve two
requests at once: each server thread builds its own apps (cheap) over the one shared container.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import waitress
from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException
from waitress import wasyncore

from ..errors import BioimsError, NotFound, PayloadTooLarge
from .chalice_app import MAX_BODY_BYTES, ContainerFactory, create_app
from .search_server import MAX_BODY_BYTES as SEARCH_MAX_BODY_BYTES
from .search_server import SearchApp, read_body
from .operations import OPERATIONS

if TYPE_CHECKING:
    from ..runtime import Container

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
THREADS = 8
_log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class ApiServer:
    """WSGI application dispatching by path prefix to the Chalice app of every service of the operation
    table.

    Parameters
    ----------
    get_container : callable
        Returns the container whose services answer (called per request; make it cheap).
    """

    def __init__(self, get_container: ContainerFactory, search: SearchApp | None = None) -> None:
        self._get_container = get_container
        self._search = search
        self.services = tuple(sorted([*OPERATIONS, *(["search"] if search else [])]))
        self._per_thread = threading.local()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path, query = _raw_target(environ)
        try:
            if path == "/health" and method == "GET":
                status, headers, body = 200, [], _json({"status": "ok", "services": list(self.services)})
            else:
                status, headers, body = self._forward(environ, method, path, query)
        except BioimsError as e:
            status, headers, body = e.status, [], _json({"error": e.to_dict()})
        except Exception:  # noqa: BLE001 - logged; the client gets a 500 without internals
            _log.exception("%s %s failed", method, path)
            internal = BioimsError("internal error (see the server log)")
            status, headers, body = internal.status, [], _json({"error": internal.to_dict()})
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", "application/json"))
        headers = [(n, v) for n, v in headers if n.lower() != "content-length"] + [("Content-Length", str(len(body)))]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    def _forward(self, environ: dict[str, Any], method: str, path: str,
                 query: str) -> tuple[int, list[tuple[str, str]], bytes]:
        prefix, _, rest = path[1:].partition("/")
        if prefix == "search" and self._search is not None:
            status, document = self._search.handle(method, f"/{rest}", query, read_body(environ))
            return status, [], _json(document)
        if prefix not in self.services:
            raise NotFound(f"no service at /{prefix}; services: "
                           + ", ".join(f"/{s}" for s in self.services) + ", /health")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {MAX_BODY_BYTES} bytes")
        body = environ["wsgi.input"].read(length) if length else b""
        target = f"/{rest}" + (f"?{query}" if query else "")
        try:
            response = self._gateway(prefix).handle_request(method, target, _headers(environ), body)
        except LocalGatewayException:  # without authorizers, only "Missing Authentication Token": no route
            raise NotFound(f"no route {method} {path}") from None
        headers = list(response.get("headers", {}).items()) + [
            (name, value) for name, values in (response.get("multiValueHeaders") or {}).items() for value in values]
        data = response.get("body") or b""
        if response.get("isBase64Encoded"):
            data = base64.b64decode(data)
        elif isinstance(data, str):
            data = data.encode("utf-8")
        return int(response["statusCode"]), headers, data

    def _gateway(self, service: str) -> LocalGateway:
        gateways: dict[str, LocalGateway] | None = getattr(self._per_thread, "gateways", None)
        if gateways is None:
            gateways = self._per_thread.gateways = {}
        if service not in gateways:
            gateways[service] = LocalGateway(create_app(service, self._get_container), Config())
        return gateways[service]


class LocalServer:
    """Every service's API served by waitress (``threads`` worker threads) on ``host:port``.

    The socket is bound at construction (``port=0`` picks a free port: see :attr:`url`); :meth:`run`
    serves until :meth:`stop` is called from another thread (or until Ctrl-C).
    """

    def __init__(self, container: Container, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 *, threads: int = THREADS) -> None:
        self._sockets: dict[int, Any] = {}
        self._server = waitress.create_server(
            ApiServer(lambda: container, SearchApp(container.search)), map=self._sockets, host=host, port=port, threads=threads,
            max_request_body_size=2 * max(8 * MAX_BODY_BYTES, SEARCH_MAX_BODY_BYTES), ident="bioims")

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket."""
        return f"http://{self._server.effective_host}:{self._server.effective_port}"

    def run(self) -> None:
        """Serve in this thread until :meth:`stop` (or Ctrl-C)."""
        try:
            self._server.run()
        finally:
            self._server.task_dispatcher.shutdown()

    def stop(self) -> None:
        """Make :meth:`run` return: close the listening socket and every open connection (keep-alive
        clients included) from inside the server's loop."""
        self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._sockets))


def serve(container: Container, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve every service's API in the foreground until interrupted."""
    from ..index import set_search_threads

    server = LocalServer(container, host, port)
    set_search_threads(1)  # single queries: one thread each is fastest (see ENVIRONMENT.md)
    _log.info("serving %s and search at %s", ", ".join(OPERATIONS), server.url)
    server.run()


def _raw_target(environ: dict[str, Any]) -> tuple[str, str]:
    """The request's path, still percent-encoded (so that ``%2F`` inside a path variable survives),
    and its query string."""
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if uri:
        parts = urlsplit(uri)
        return parts.path or "/", parts.query
    path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/")  # WSGI strings are latin-1
    return path or "/", environ.get("QUERY_STRING", "")


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
               if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def _json(document: Any) -> bytes:
    return json.dumps(document).encode("utf-8")
