"""Test doubles shared by the test modules."""

from __future__ import annotations

import base64
import io
import json
import uuid
from types import SimpleNamespace
from collections.abc import Callable, Mapping
from typing import Any


class FakeLambda:
    """A boto3 Lambda client double: runs a function in this process the way Lambda does — the payload
    JSON-encoded both ways, an exception answered as ``FunctionError: Unhandled`` with its
    ``errorType`` (class name) and ``errorMessage``. ``on_invoke(function_name, event)`` is called
    before each invocation (recording)."""

    def __init__(self, functions: Mapping[str, Callable[[Any, Any], Any]],
                 on_invoke: Callable[[str, Any], None] | None = None) -> None:
        self.functions = functions
        self.events: list[Any] = []
        self.on_invoke = on_invoke

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes,
               ClientContext: str | None = None) -> dict[str, Any]:
        assert InvocationType == "RequestResponse"
        event = json.loads(Payload)
        self.events.append(event)
        if self.on_invoke is not None:
            self.on_invoke(FunctionName, event)
        try:
            result = self.functions[FunctionName](event, self._context(FunctionName, ClientContext))
        except Exception as e:
            error = {"errorMessage": str(e), "errorType": type(e).__name__, "requestId": "r-1", "stackTrace": []}
            return {"StatusCode": 200, "FunctionError": "Unhandled", "ExecutedVersion": "$LATEST",
                    "Payload": io.BytesIO(json.dumps(error).encode())}
        return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": io.BytesIO(json.dumps(result).encode())}

    @staticmethod
    def _context(function: str, client_context: str | None) -> SimpleNamespace:
        """The handler's context as Lambda makes it: a request id, the decoded client context."""
        custom = json.loads(base64.b64decode(client_context))["custom"] if client_context else None
        return SimpleNamespace(aws_request_id=str(uuid.uuid4()), function_name=function,
                               client_context=SimpleNamespace(custom=custom) if custom is not None else None)
