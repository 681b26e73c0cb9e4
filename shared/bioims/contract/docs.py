"""The operation tables of the service READMEs, generated from the contract.

Each ``services/<name>/README.md`` holds its table between ``<!-- operations:begin -->`` and
``<!-- operations:end -->``; ``python -m bioims.contract.docs`` rewrites them, and a test fails when a
README drifts from the contract.
"""

from __future__ import annotations

import argparse
import enum
import json
import re
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import LAMBDA_SERVICES, SERVICES
from .base import Operation, Service

BEGIN, END = "<!-- operations:begin -->", "<!-- operations:end -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)


def type_name(annotation: Any) -> str:
    """A short readable name of a type: ``list[Artifact]``, ``str | None``, ``Level``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, __import__("types").UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation)).replace("JsonValue", "JSON")


def _text(docstring: str) -> str:
    """Markdown of reStructuredText inline code (````x```` -> ```x```) on one line."""
    return re.sub(r"``(.+?)``", r"`\1`", " ".join(docstring.split()))


def _cell(text: str) -> str:
    """A table cell: ``|`` escaped (also inside code spans, as GitHub's tables need)."""
    return text.replace("|", "\\|")


def _summary(op: Operation) -> str:
    """The first paragraph of the request model's docstring (not only its first line, which may stop mid-sentence)."""
    doc = (op.request.__doc__ or op.function).strip()
    return _text(doc.split("\n\n", 1)[0])


def _default(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    return value if isinstance(value, str) else json.dumps(value)


def _arguments(op: Operation) -> str:
    in_path = {op.path_field(v) for v in op.path_variables}
    parts = []
    for name, field in op.request.model_fields.items():
        if name in in_path:
            continue
        text = f"`{name}`"
        if not field.is_required():
            default = field.get_default(call_default_factory=True)
            text += f" (default `{_default(default)}`)" if default is not None else " (optional)"
        parts.append(text)
    if not parts:
        return ""
    return ("body: " if op.has_body else "query: ") + ", ".join(parts)


def _success(op: Operation) -> str:
    result = type_name(op.response)
    return f"{op.status} `{{\"{op.result_key}\": {result}}}`" if op.result_key else f"{op.status} `{result}`"


def operation_table(service: Service) -> str:
    """The Markdown table of a service's operations, the models they answer and the values of their enumerations."""
    method = "Lambda method" if service.name in LAMBDA_SERVICES else "method (SDK, seed name)"
    lines = [BEGIN, "", f"| HTTP route | {method} | summary | arguments | success |", "|---|---|---|---|---|"]
    for op in service.operations:
        cells = (f"`{op.route}`", f"`{op.method}`", _summary(op), _arguments(op), _success(op))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "Path variables are part of the route; the other arguments travel in the query string (GET, "
              "DELETE) or a JSON object body (POST, PUT). Arguments without a default are required."]
    models: dict[str, type[BaseModel]] = {}
    for op in service.operations:
        for candidate in _models(op.response):
            models.setdefault(candidate.__name__, candidate)
    if models:
        lines += ["", "Response models (more keys may be present):", ""]
        for name, model in models.items():
            fields = ", ".join(f"`{n}` {type_name(f.annotation)}" for n, f in model.model_fields.items())
            lines.append(f"- `{name}`: {fields}")
    enums: dict[str, type[enum.Enum]] = {}
    for annotation in [f.annotation for op in service.operations for f in op.request.model_fields.values()] \
            + [f.annotation for model in models.values() for f in model.model_fields.values()]:
        for candidate in _enums(annotation):
            enums.setdefault(candidate.__name__, candidate)
    if enums:
        lines += ["", "Values of the enumerations (arguments and responses):", ""]
        for name, kind in sorted(enums.items()):
            lines.append(f"- `{name}`: " + ", ".join(f"`{m.value}`" for m in kind))
    lines += ["", "Generated from `bioims.contract` (`python -m bioims.contract.docs`); the full schemas are at "
              "`GET /openapi.json`.", "", END]
    return "\n".join(lines)


def _enums(annotation: Any) -> list[type[enum.Enum]]:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [annotation]
    return [e for a in typing.get_args(annotation) for e in _enums(a)]


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        nested = [m for f in annotation.model_fields.values() for m in _models(f.annotation)]
        return [annotation, *nested]
    return [m for a in typing.get_args(annotation) for m in _models(a)]


def readme(path: Path, service: Service) -> str:
    """The README's text with its operation table regenerated (appended if it has none)."""
    text = path.read_text() if path.exists() else f"# {service.title}\n"
    table = operation_table(service)
    if _BLOCK.search(text):
        return _BLOCK.sub(lambda _: table, text)
    return text.rstrip() + "\n\n## Operations\n\n" + table + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrite the operation tables of ``services/<name>/README.md`` under ``--root`` (default: here)."""
    parser = argparse.ArgumentParser(prog="python -m bioims.contract.docs", description=main.__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    for name, service in SERVICES.items():
        path = args.root / "services" / name / "README.md"
        text = readme(path, service)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
