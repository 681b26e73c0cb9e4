"""The search service's HTTP API: a long-lived WSGI app over :class:`~bioims.services.search.SearchService`.

Served by waitress, alone (``python -m bioims.api.search_server``, the container's entry point) or under
``/search`` of ``bioims serve``. Routes (``GET /openapi.json`` documents them)::

    POST   /searches                     search (JSON body, see SEARCH_FIELDS) -> 200 {"search_id", "hits", "ms", ...}
    GET    /searches/{search_id}         the record of an earlier search (status, query, hits)
    GET    /indexes                      loaded indexes; ?stored=true: every stored index, loaded or not
    POST   /indexes                      build {"train_id", "level", "kind", "metric"} -> 201 sidecar
    POST   /indexes/{train_id}/reload    load the newest build of each of the source's indexes (atomic swap)
    DELETE /indexes/{train_id}           unload and delete (?level=field: one level)
    GET    /health                       liveness: {"status": "ok"}
    GET    /ready                        readiness: 200 once the stored indexes are loaded, else 503

Every error is ``{"error": {"code", "message"}}`` with 400 (malformed JSON, unknown or mistyped field,
k out of range...), 404, 405, 409, 413 (body over :data:`MAX_BODY_BYTES`) or 500.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from ..errors import BioimsError, InvalidInput, NotFound, PayloadTooLarge
from ..services.search import KINDS, LEVELS, MAX_K, METRICS

if TYPE_CHECKING:
    from ..services.search import SearchService

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body (an uploaded field's channel files, base64)."""
SEARCH_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "train_id": (str, "train run (or profile set) whose index is searched"),
    "image_id": (str, "query: a field's stored embedding"),
    "id": (str, "query: an item of the index (a well PLATE/WELL, a treatment COMPOUND@CONC, a cell IMAGE#N)"),
    "vector": (list, "query: the embedding itself (dims numbers)"),
    "images": (dict, "query: an uploaded field, {channel: base64 TIFF/PNG}, embedded with the run's model"),
    "flatfield_plate": (str, "uploads: use this plate's flat-fields (default: none)"),
    "k": (int, f"hits wanted, 1..{MAX_K}"),
    "metric": (str, f"one of {', '.join(METRICS)}"),
    "include_tags": (list, "a hit carries at least one of these tags (if any given)"),
    "exclude_tags": (list, "a hit carries none of these tags"),
    "require_moa": (bool, "a hit carries an moa: tag"),
    "level": (str, f"one of {', '.join(LEVELS)}"),
}
BUILD_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "train_id": (str, "train run or profile set"),
    "level": (str, f"one of {', '.join(LEVELS)}"),
    "kind": (str, f"one of {', '.join(KINDS)}"),
    "metric": (str, f"one of {', '.join(METRICS)}"),
}
_log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Response = tuple[int, Any]


class SearchApp:
    """WSGI application of the search API.

    Parameters
    ----------
    search : SearchService
        Answers the requests (thread-safe; one per process).
    load : bool
        Load every stored index in a background thread now; ``/ready`` answers 503 until done.
    """

    def __init__(self, search: SearchService, *, load: bool = True) -> None:
        self.search = search
        self.ready = threading.Event()
        self.load_error: str | None = None
        if load:
            threading.Thread(target=self._load, name="search-load", daemon=True).start()
        else:
            self.ready.set()

    def _load(self) -> None:
        try:
            loaded = self.search.load_all()
            _log.info("search: %d indexes loaded", len(loaded))
        except Exception as e:  # noqa: BLE001 - readiness reports it; queries load indexes on demand
            self.load_error = f"{type(e).__name__}: {e}"
            _log.exception("search: loading the stored indexes failed")
        finally:
            self.ready.set()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "") or "/"
        try:
            status, document = self.handle(method, path, environ.get("QUERY_STRING", ""), read_body(environ))
        except BioimsError as e:
            status, document = e.status, {"error": e.to_dict()}
        except Exception:  # noqa: BLE001 - logged; the client gets a 500 without internals
            _log.exception("%s %s failed", method, path)
            status, document = 500, {"error": BioimsError("internal error (see the server log)").to_dict()}
        body = json.dumps(document).encode("utf-8")
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def handle(self, method: str, path: str, query: str, body: bytes) -> Response:
        """Route one request: ``(status, JSON document)``; domain errors propagate."""
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        route = (method, *(parts[:1] if len(parts) < 2 else parts[:1] + ["{id}"] + parts[2:]))
        if route == ("GET", "health"):
            return 200, {"status": "ok"}
        if route == ("GET", "ready"):
            loaded = len(self.search.loaded_indexes())
            if not self.ready.is_set():
                return 503, {"ready": False, "indexes": loaded, "reason": "loading the stored indexes"}
            return 200, {"ready": True, "indexes": loaded, "load_error": self.load_error}
        if route == ("GET", "openapi.json"):
            return 200, openapi()
        if route == ("POST", "searches"):
            return 200, self.search.search(**_fields(_json_body(body), SEARCH_FIELDS, required=("train_id",)))
        if route == ("GET", "searches", "{id}"):
            return 200, self.search.get_search(parts[1])
        if route == ("GET", "indexes"):
            if params.get("stored") in ("1", "true"):
                return 200, self.search.list_indexes(params.get("train_id"))
            return 200, self.search.loaded_indexes()
        if route == ("POST", "indexes"):
            return 201, self.search.build_index(**_fields(_json_body(body), BUILD_FIELDS, required=("train_id",)))
        if route == ("POST", "indexes", "{id}", "reload"):
            return 200, self.search.reload_index(parts[1])
        if route == ("DELETE", "indexes", "{id}"):
            return 200, self.search.delete_index(parts[1], params.get("level"))
        known = {("GET", "health"), ("GET", "ready"), ("GET", "openapi.json"), ("POST", "searches"),
                 ("GET", "searches", "{id}"), ("GET", "indexes"), ("POST", "indexes"),
                 ("POST", "indexes", "{id}", "reload"), ("DELETE", "indexes", "{id}")}
        if any(r[1:] == route[1:] for r in known):
            raise MethodNotAllowed(f"{method} is not allowed on {path}")
        raise NotFound(f"no route {method} {path}")


class MethodNotAllowed(BioimsError):
    status = 405
    code = "MethodNotAllowed"


def read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidInput("Content-Length is not a number") from None
    if length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {MAX_BODY_BYTES} bytes")
    return environ["wsgi.input"].read(length) if length else b""


def _json_body(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidInput("the request needs a JSON object body")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput(f"the body is not valid JSON: {e}") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"the body must be a JSON object, got {type(document).__name__}")
    return document


def _fields(document: dict[str, Any], schema: dict[str, tuple[type | tuple[type, ...], str]],
            required: tuple[str, ...]) -> dict[str, Any]:
    """``document`` checked against ``schema`` (unknown keys, missing required ones, wrong JSON types)."""
    unknown = sorted(set(document) - set(schema))
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(schema)}")
    for name in required:
        if name not in document:
            raise InvalidInput(f"missing required field {name!r}")
    for name, value in document.items():
        kind = schema[name][0]
        if value is None or (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise InvalidInput(f"field {name!r} must be {_json_type(kind)}, got {json.dumps(value)[:80]}")
    return document


def _json_type(kind: type | tuple[type, ...]) -> str:
    return {str: "a string", int: "an integer", list: "an array", dict: "an object", bool: "true or false"}.get(
        kind, str(kind))  # type: ignore[call-overload]


def _schema(fields: dict[str, tuple[type | tuple[type, ...], str]], required: tuple[str, ...]) -> dict[str, Any]:
    names = {str: "string", int: "integer", list: "array", dict: "object", bool: "boolean"}
    return {"type": "object", "additionalProperties": False, "required": list(required),
            "properties": {n: {"type": names[k], "description": d} for n, (k, d) in fields.items()}}  # type: ignore[index]


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the routes."""
    error = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    errors = {str(s): error for s in (400, 404, 413, 500)}
    json_body = {"type": "object"}

    def op(summary: str, *, body: dict[str, Any] | None = None, ok: str = "200", params: list[Any] | None = None,
           ) -> dict[str, Any]:
        doc: dict[str, Any] = {"summary": summary, "responses": {
            ok: {"description": "success", "content": {"application/json": {"schema": json_body}}}, **errors}}
        if body is not None:
            doc["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        if params:
            doc["parameters"] = params
        return doc

    def path_param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "bioims search", "version": "1", "description": __doc__.split("\n\n")[0]},
        "paths": {
            "/searches": {"post": op("Nearest neighbours of one query, filtered by tags",
                                     body=_schema(SEARCH_FIELDS, ("train_id",)))},
            "/searches/{search_id}": {"get": op("The record of an earlier search",
                                                params=[path_param("search_id")])},
            "/indexes": {"get": op("Loaded (or, with stored=true, stored) indexes", params=[
                {"name": "stored", "in": "query", "schema": {"type": "boolean"}},
                {"name": "train_id", "in": "query", "schema": {"type": "string"}}]),
                "post": op("Build (or rebuild) an index", body=_schema(BUILD_FIELDS, ("train_id",)), ok="201")},
            "/indexes/{train_id}/reload": {"post": op("Swap in the newest build of each of the source's indexes",
                                                      params=[path_param("train_id")])},
            "/indexes/{train_id}": {"delete": op("Unload and delete a source's indexes", params=[
                path_param("train_id"), {"name": "level", "in": "query", "schema": {"enum": list(LEVELS)}}])},
            "/health": {"get": op("Liveness")},
            "/ready": {"get": op("Readiness: 503 until the stored indexes are loaded")},
        },
        "components": {"schemas": {"Error": {"type": "object", "properties": {"error": {
            "type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}}},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bioims.api.search_server [--host H] [--port P] [--threads N]``: the search container."""
    import argparse

    import waitress

    from ..index import set_search_threads
    from ..runtime import aws, local
    from ..settings import Settings

    parser = argparse.ArgumentParser(prog="python -m bioims.api.search_server", description=main.__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=8, help="request threads (each query uses one core)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    container = aws(settings, service="search") if settings.runtime == "aws" else local(settings)
    set_search_threads(1)
    waitress.serve(SearchApp(container.search), host=args.host, port=args.port, threads=args.threads,
                   max_request_body_size=2 * MAX_BODY_BYTES, ident="bioims-search")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
