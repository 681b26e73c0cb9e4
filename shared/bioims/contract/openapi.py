"""OpenAPI 3.1 documents of the services, generated from the contract (served at ``/openapi.json``).

Path variables become path parameters, the other fields of a GET or DELETE request query parameters,
those of a POST or PUT request a JSON body (``application/json`` only); every operation documents its
success response (the response model) and the errors it may answer (400, 404, 409, 413, 415, each
``{"error": {"code", "message"}}``).
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from .base import Operation, Service

ERROR_STATUSES = {"400": "invalid input", "404": "unknown id or route", "405": "method not allowed",
                  "409": "conflict with existing state", "413": "request too large",
                  "415": "the body must be application/json"}
_REF = "#/components/schemas/{model}"


def openapi(service: Service, *, extra_paths: dict[str, Any] | None = None, server_url: str | None = None,
            ) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one service's HTTP API (paths relative to the service's root)."""
    schemas: dict[str, Any] = {"Error": {
        "type": "object", "required": ["error"], "additionalProperties": False, "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}}
    paths: dict[str, Any] = {}
    for op in service.operations:
        paths.setdefault(op.path, {})[op.http_method.lower()] = _operation(op, schemas)
    for path, item in (extra_paths or {}).items():
        paths.setdefault(path, {}).update(item)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": service.title, "version": "1", "description": service.description},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def combined(services: dict[str, Service], *, extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    """One document for several services served under one address (``bioims serve``): each service's
    paths under ``/<service>``, operation ids prefixed with the service (``tags.getImageTags``)."""
    paths: dict[str, Any] = dict(extra_paths or {})
    schemas: dict[str, Any] = {}
    for name, service in services.items():
        doc = openapi(service)
        for path, item in doc["paths"].items():
            for operation in item.values():
                operation["operationId"] = f"{name}.{operation['operationId']}"
                operation["tags"] = [name]
            paths[f"/{name}{path}"] = item
        for model, schema in doc["components"]["schemas"].items():
            if model in schemas and schemas[model] != schema:
                raise ValueError(f"model {model!r} differs between services; give one of them another name")
            schemas[model] = schema
    return {"openapi": "3.1.0", "info": {"title": "bioims (every service)", "version": "1",
                                         "description": "Every bioims service on one address (`bioims serve`)."},
            "paths": paths, "components": {"schemas": dict(sorted(schemas.items()))}}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _schema(annotation: Any, schemas: dict[str, Any], mode: str) -> dict[str, Any]:
    """The JSON schema of a type, its named models hoisted into ``components/schemas``."""
    schema = TypeAdapter(annotation).json_schema(mode=mode, ref_template=_REF,  # type: ignore[arg-type]
                                                 schema_generator=_Generator)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    return schema


class _Generator(GenerateJsonSchema):
    """pydantic's generator, without the ``title`` of every property (noise in the documents)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    request = op.request.model_json_schema(by_alias=False, ref_template=_REF, schema_generator=_Generator)
    for name, definition in request.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    properties: dict[str, Any] = request.get("properties", {})
    required = set(request.get("required", []))
    in_path = {op.path_field(v): v for v in op.path_variables}
    parameters = [{"name": variable, "in": "path", "required": True, "schema": properties[name]}
                  for name, variable in in_path.items()]
    rest = {n: s for n, s in properties.items() if n not in in_path}
    doc: dict[str, Any] = {"operationId": op.method, "summary": op.summary,
                           "description": (op.request.__doc__ or "").strip()}
    if op.has_body:
        if rest:
            body = {"type": "object", "additionalProperties": False, "properties": rest,
                    "required": sorted(required & set(rest))}
            doc["requestBody"] = {"required": bool(body["required"]),
                                  "content": {"application/json": {"schema": body}}}
    else:
        parameters += [{"name": n, "in": "query", "required": n in required, "schema": s} for n, s in rest.items()]
    if parameters:
        doc["parameters"] = parameters
    responses = {str(op.status): json_response("success", _schema(op.http_response, schemas, "serialization"))}
    error = json_response("error", {"$ref": _REF.format(model="Error")})
    responses.update({status: {**error, "description": text} for status, text in ERROR_STATUSES.items()
                      if status != "415" or op.has_body})
    doc["responses"] = responses
    return doc
