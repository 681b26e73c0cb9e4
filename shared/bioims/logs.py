"""Structured logs: one JSON object per line, per event, carrying the id of the request or job it serves.

Every Lambda invocation, HTTP request of a service and job step logs a line when it ends (``event``:
``invoke``, ``request``, ``job``), and every call to another service's function logs ``call`` with the
same ``request_id``; the callee logs the caller's id as ``caller_request_id`` (passed in the invocation's
client context), so one call can be followed across functions::

    {"event": "call", "service": "image-management", "request_id": "3f1c...", "callee": "tags", "method": "ensureTags", "ms": 41.2, "outcome": "ok"}
    {"event": "invoke", "service": "tags", "request_id": "9a0b...", "caller_request_id": "3f1c...", "caller": "image-management", "method": "ensureTags", "ms": 12.7, "outcome": "ok"}

Lines go to standard output (CloudWatch Logs on AWS) through the ``bioims.events`` logger, which does not
propagate (the Lambda runtime's own prefix would make them non-JSON). The standard library's logging and
:mod:`contextvars` do all the work; nothing here is a dependency.

>>> import io
>>> stream = io.StringIO()
>>> configure(stream)
>>> with request("r-1", service="tags"):
...     emit("invoke", method="getTagByValue", outcome="ok")
>>> json.loads(stream.getvalue())
{'event': 'invoke', 'service': 'tags', 'request_id': 'r-1', 'method': 'getTagByValue', 'outcome': 'ok'}
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

_LOGGER = logging.getLogger("bioims.events")
_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("bioims_log_context", default=None)


def configure(stream: IO[str] | None = None) -> None:
    """Send the event lines to ``stream`` (default: standard output), replacing an earlier stream."""
    for handler in list(_LOGGER.handlers):
        _LOGGER.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(logging.INFO)
    _LOGGER.propagate = False


@contextmanager
def request(request_id: str, **fields: Any) -> Iterator[None]:
    """Every event emitted inside carries ``request_id`` and ``fields`` (the service, the caller's id)."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields, "request_id": request_id})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current() -> dict[str, Any]:
    """The fields of the request being served (``{}`` outside one)."""
    return dict(_CONTEXT.get() or {})


def emit(event: str, **fields: Any) -> None:
    """Log one event line: ``{"event": ..., <the request's fields>, <fields>}`` (non-JSON values as text)."""
    if not _LOGGER.handlers:
        configure()
    context = _CONTEXT.get() or {}
    ordered = {"event": event, **({"service": context["service"]} if "service" in context else {}),
               **{k: v for k, v in context.items() if k != "service"}, **fields}
    _LOGGER.info(json.dumps(ordered, default=str))
