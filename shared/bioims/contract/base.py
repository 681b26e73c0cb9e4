"""The building blocks of the contract: bounded types, request/response bases, operations, validation.

Every operation of every service is one :class:`Operation`: its seed name (the ``{"method": ...}``
Lambda protocol), its Python name (the service method and the SDK method), its HTTP route, and a
pydantic **request model** whose fields are the method's parameters. From these come, with no second
definition anywhere: validation with precise messages (:func:`validate`), the Lambda protocol, the HTTP
routes of every server, the OpenAPI documents (:mod:`bioims.contract.openapi`), the SDK clients and the
operation tables of the service READMEs.

Arguments may be named in snake_case (HTTP bodies, query strings, Python) or camelCase (Lambda events, as
the seed); a field may accept more names of the seed (``key`` for ``parameter``, see :func:`alias`).
Strings are converted to the integers and booleans a field needs (query strings and path segments are
strings); nothing else is converted: a string is never a list, a number never a string.

Bounds
------
Every string, list and number of a request is bounded (ids at most :data:`MAX_ID` characters, names
:data:`~bioims.names.MAX_NAME`, free text :data:`MAX_TEXT`, messages :data:`MAX_MESSAGE`, JSON nesting
:data:`MAX_DEPTH` levels), so that nothing a client sends can exceed what DynamoDB stores (2,048-byte
keys, 400 KB items, 32 nesting levels) or what a server should hold in memory.
"""

from __future__ import annotations

import functools
import json
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from ..errors import InvalidInput
from ..names import MAX_NAME, NAME_PATTERN

MAX_ID = 256
"""Characters of an id or a lookup value (plate source id, image id, well): far below DynamoDB's 2,048-byte keys."""
MAX_TEXT = 4096
"""Characters of a description, a URI, a configuration key."""
MAX_MESSAGE = 64 * 1024
"""Characters of a log message (DynamoDB items are at most 400 KB)."""
MAX_ITEMS = 100_000
"""Items of a list argument (tags of an assignment, image ids, labels)."""
MAX_DEPTH = 32
"""Nesting levels of a JSON document (DynamoDB's own limit for stored maps and lists)."""
MAX_BODY_BYTES = 6 * 1024 * 1024
"""Largest request of a Lambda service: Lambda's synchronous payload limit (6 MB)."""

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # printable, newlines and tabs allowed

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=MAX_NAME)]
"""A name that becomes a path segment (channel, spec, train id, index id, profile set): see :mod:`bioims.names`."""
SpecName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=64)]
"""An embedding spec's name (at most 64 characters: train ids are built from it)."""
_ID = r"^[^\x00-\x1f\x7f/\\%.~][^\x00-\x1f\x7f/\\%]*$"  # printable, no slash or %, not starting with . or ~
Id = Annotated[str, StringConstraints(max_length=MAX_ID, pattern=_ID)]
"""An id or lookup value (plate, image, well, message, context, execution): 1..256 printable characters
without ``/``, ``\\`` or ``%``, not starting with ``.`` or ``~`` (so never a path, nor one decoded twice, even
where it is only looked up)."""
TagValue = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=_PRINTABLE)]
"""A tag (``moa:Protein degradation``): 1..256 printable characters, ``type:value`` by convention."""
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=_TEXT)]
"""Free text (a description): at most 4,096 characters, no control characters but newline and tab."""
Message = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE, pattern=_TEXT)]
"""A log message: 1..65,536 characters."""
MAX_URI = 880
"""Characters of a URI: with a train id it must fit DynamoDB's 1,024-byte range keys."""
Uri = Annotated[str, StringConstraints(max_length=MAX_URI, pattern=r"^(file|s3)://[\x20-\x7e]+$")]
"""A ``file://`` or ``s3://`` URI, printable ASCII (file URIs are percent-encoded); whether it may be read
is decided by the service (ingest roots)."""
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
"""A non-negative count or index."""
Pixels = Annotated[int, Field(ge=1, le=65536)]
"""An image dimension in pixels."""

_ALIAS_TO_CAMEL = re.compile(r"_([a-z0-9])")


def alias(name: str, *seed_names: str) -> Any:
    """A field accepted as ``name``, the seed's other names (``alias("parameter", "key")``) and their camelCase."""
    return AliasChoices(*dict.fromkeys(n for each in (name, *seed_names) for n in (each, to_camel(each))))


def unwrap(data: Any, envelope: str) -> Any:
    """The seed's nested event shape made flat: ``{"artifact": {"contextId": ...}}`` -> ``{"contextId": ...}``
    (for a ``mode="before"`` model validator). Keys outside the envelope stay; one given both inside and
    outside is refused."""
    if not isinstance(data, Mapping) or not isinstance(data.get(envelope), Mapping):
        return data
    inner = data[envelope]
    rest = {k: v for k, v in data.items() if k != envelope}
    clash = sorted(set(rest) & set(inner))
    if clash:
        raise ValueError(f"{clash[0]!r} is given both inside and outside {envelope!r}")
    return {**inner, **rest}


def s3_location(data: Any, bucket: str, key: str, field: str) -> Any:
    """The seed's object location made a URI: ``{"inputBucket": "b", "inputKey": "k"}`` ->
    ``{field: "s3://b/k"}`` (for a ``mode="before"`` model validator). Both halves are needed, and the
    field must not also be given."""
    if not isinstance(data, Mapping) or (bucket not in data and key not in data):
        return data
    data = dict(data)
    b, k = data.pop(bucket, None), data.pop(key, None)
    if not isinstance(b, str) or not isinstance(k, str) or not b or not k:
        raise ValueError(f"{bucket} and {key} must both be non-empty strings")
    if field in data or to_camel(field) in data:
        raise ValueError(f"give {field} or {bucket}/{key}, not both")
    data[field] = f"s3://{b}/{k.lstrip('/')}"
    return data


class Request(BaseModel):
    """Base of every request model: unknown arguments are refused, snake_case or camelCase names accepted,
    floats must be finite, enums become their strings."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=True,
                              validate_by_alias=True, allow_inf_nan=False, use_enum_values=True,
                              frozen=True, loc_by_alias=False)


class Model(BaseModel):
    """Base of response models (documented shapes; extra keys are allowed so that services may add
    information without breaking clients)."""

    model_config = ConfigDict(extra="allow", use_enum_values=True)


@dataclass(frozen=True)
class Operation:
    """One operation of a service.

    Attributes
    ----------
    method : str
        The seed's Lambda method name, camelCase (``"getArtifacts"``).
    function : str
        The service method it calls, also the SDK method (``"get_artifacts"``).
    route : str
        ``"<HTTP method> <path>"``; path variables are ``{field}`` of the request (``"GET /artifacts/{context_id}"``).
    request : type[Request]
        The arguments: one field per parameter of the service method.
    response : type
        The result's type (a model, ``list[...]``, ``dict[...]``, ``str``...), for documentation and tests.
    status : int
        HTTP status of a success (201 created, 202 accepted, else 200).
    result_key : str or None
        Over HTTP, answer ``{result_key: result}`` instead of a bare id, index, count or value.
    """

    method: str
    function: str
    route: str
    request: type[Request]
    response: Any = Any
    status: int = 200
    result_key: str | None = None

    def __post_init__(self) -> None:
        verb, _, path = self.route.partition(" ")
        if verb not in HTTP_METHODS or not path.startswith("/"):
            raise ValueError(f"route of {self.method} must be '<{'|'.join(HTTP_METHODS)}> /path', not {self.route!r}")
        for variable in self.path_variables:
            self.path_field(variable)

    @property
    def http_method(self) -> str:
        return self.route.partition(" ")[0]

    @property
    def path(self) -> str:
        return self.route.partition(" ")[2]

    @property
    def path_variables(self) -> tuple[str, ...]:
        """Names of the route's ``{variables}``, in order."""
        return tuple(_PATH_VARIABLE.findall(self.path))

    def path_field(self, variable: str) -> str:
        """The request field a path variable fills: the field of that name, or the one accepting it as an
        alias (``{plate_id}`` fills ``plate``: API Gateway wants one variable name per path level)."""
        fields = self.request.model_fields
        if variable in fields:
            return variable
        for name, info in fields.items():
            choices = info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else []
            if variable in choices:
                return name
        raise ValueError(f"path variable {variable!r} of {self.method} is no field of {self.request.__name__}")

    @property
    def has_body(self) -> bool:
        """Whether the non-path arguments travel as a JSON body (POST, PUT) rather than a query string."""
        return self.http_method in BODY_METHODS

    @property
    def summary(self) -> str:
        """First line of the request model's docstring."""
        return (self.request.__doc__ or self.function).strip().splitlines()[0]

    @property
    def http_response(self) -> Any:
        """The type of the HTTP response document (the result, or ``{result_key: result}``)."""
        if not self.result_key:
            return self.response
        from pydantic import create_model

        return create_model(f"{self.request.__name__.removesuffix('Request')}Response",
                            **{self.result_key: (self.response, ...)})

    def http_body(self, result: Any) -> Any:
        """The HTTP response document of a result."""
        return {self.result_key: result} if self.result_key else result

    def from_http_body(self, document: Any) -> Any:
        """The result of an HTTP response document (inverse of :meth:`http_body`)."""
        from ..errors import BioimsError

        if not self.result_key:
            return document
        if not isinstance(document, dict) or self.result_key not in document:
            raise BioimsError(f"response of {self.method} has no {self.result_key!r}: {str(document)[:200]}")
        return document[self.result_key]


HTTP_METHODS = ("GET", "POST", "PUT", "DELETE")
BODY_METHODS = ("POST", "PUT")
_PATH_VARIABLE = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Service:
    """A service's operations and how its API is documented."""

    name: str
    title: str
    description: str
    operations: tuple[Operation, ...]

    def find(self, method: str) -> Operation:
        """An operation by its seed name (``listMessage``), Python name (``list_messages``) or the camelCase
        of its Python name (``listMessages``); :class:`InvalidInput` otherwise."""
        for op in self.operations:
            if method in (op.method, op.function, to_camel(op.function)):
                return op
        raise InvalidInput(f"unknown method {str(method)[:80]!r} for service {self.name}; known: "
                           + ", ".join(op.method for op in self.operations))


def validate(op: Operation, args: Any) -> dict[str, Any]:
    """The keyword arguments of the service method for one call, validated by the operation's request model.

    A string is never a list, a number never a string, a boolean never a number; a string holding an
    integer or a boolean is converted for an integer or boolean field (path segments and query strings
    are text; the seed's events send numbers as strings). Only the arguments given are returned (the
    method's defaults apply to the others); nested models become plain dicts, enum members their strings.

    Raises
    ------
    InvalidInput
        ``args`` is not a mapping, is nested deeper than :data:`MAX_DEPTH`, or breaks the request model;
        the message names each offending field (at most five), never echoing large inputs.

    Examples
    --------
    >>> from bioims.contract import service
    >>> validate(service("artifact").find("getParameter"), {"key": "thumbnail-widths"})
    {'parameter': 'thumbnail-widths'}
    """
    if not isinstance(args, Mapping):
        raise InvalidInput(f"the arguments of {op.method} must be a JSON object, got {type(args).__name__}")
    check_depth(args)
    names = _accepted_names(op.request)
    numeric = _numeric_fields(op.request)
    given: dict[str, str] = {}
    for key, value in args.items():
        field = names.get(key)
        if field is None:
            continue
        if field in given:
            raise InvalidInput(f"argument {field!r} of {op.method} given twice (as {given[field]!r} and {key!r})")
        given[field] = key
        if isinstance(value, bool) and field in numeric:
            raise InvalidInput(f"invalid arguments for {op.method}: {field}: Input should be a number, not a boolean")
    try:
        request = op.request.model_validate(dict(args))
    except ValidationError as e:
        raise InvalidInput(f"invalid arguments for {op.method}: {describe(e)}") from None
    return request.model_dump(exclude_unset=True)


@functools.cache
def _numeric_fields(model: type[Request]) -> frozenset[str]:
    """Fields whose type is a number (or an optional one), where lax validation would take true as 1."""
    def numeric(annotation: Any) -> bool:
        if annotation in (int, float):
            return True
        return any(numeric(a) for a in typing.get_args(annotation) if a is not type(None))

    return frozenset(n for n, info in model.model_fields.items()
                     if numeric(info.annotation) and not _allows(info.annotation, bool))


def _allows(annotation: Any, kind: type) -> bool:
    return annotation is kind or any(_allows(a, kind) for a in typing.get_args(annotation))


@functools.cache
def _accepted_names(model: type[Request]) -> dict[str, str]:
    """Every name a request model accepts (field names, camelCase, the seed's aliases) -> its field."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        choices = info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else []
        for accepted in (name, info.alias or to_camel(name), *(c for c in choices if isinstance(c, str))):
            names[accepted] = name
    return names


def describe(error: ValidationError, *, limit: int = 5) -> str:
    """``"assignments.IMG: Input should be a valid list; k: Input should be less than or equal to 1000"``."""
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p)[:80] for p in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}" if item["type"] != "extra_forbidden" else f"{where}: unknown argument")
    more = error.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def check_depth(document: Any, limit: int = MAX_DEPTH) -> None:
    """:class:`InvalidInput` if ``document`` nests lists and objects deeper than ``limit`` levels.

    Iterative (a stack, not recursion), so a hostile document cannot exhaust the interpreter's stack.
    """
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth > limit:
            raise InvalidInput(f"JSON nested deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)


def parse_json(raw: bytes | str, what: str = "request body") -> Any:
    """A JSON document, with :class:`InvalidInput` for malformed, non-UTF-8, too deeply nested or
    non-standard (NaN, Infinity) input."""
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidInput(f"{what}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{what} is not valid JSON: {str(e)[:200]}") from None
    opened = raw.count(b"[" if isinstance(raw, bytes) else "[") + raw.count(b"{" if isinstance(raw, bytes) else "{")
    if opened > MAX_DEPTH:  # else it cannot nest deeper (brackets inside strings only over-count)
        check_depth(document)
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def dispatch(target: Any, op: Operation, args: Any) -> Any:
    """Call one operation on ``target`` (a service object, or anything with the same methods) with
    arguments validated by the contract (see :func:`validate`); returns the method's (JSON-ready) result."""
    return getattr(target, op.function)(**validate(op, args))


def http_arguments(path: Mapping[str, str], query: Iterable[tuple[str, str]], body: bytes) -> dict[str, Any]:
    """The arguments of an HTTP request: its path variables (already percent-decoded), its query string
    and the fields of its JSON object body, merged.

    Raises
    ------
    InvalidInput
        The body is not a JSON object (or nests too deeply); a query parameter is repeated; a name is
        given in two places.
    """
    args: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def add(name: str, value: Any, where: str) -> None:
        if name in args:
            raise InvalidInput(f"argument {name[:80]!r} given twice (in the {sources[name]} and in the {where})")
        args[name], sources[name] = value, where

    for name, value in path.items():
        add(name, value, "path")
    for name, value in query:
        if name in sources and sources[name] == "query string":
            raise InvalidInput(f"query parameter {name[:80]!r} is given more than once")
        add(name, value, "query string")
    if body.strip():
        document = parse_json(body)
        if not isinstance(document, dict):
            raise InvalidInput(f"request body must be a JSON object, got {type(document).__name__}")
        for name, value in document.items():
            add(name, value, "body")
    return args
