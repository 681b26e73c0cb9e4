"""The operation tables of the service READMEs, generated from the contract.

Each ``services/<name>/README.md`` holds its table between ``<!-- operations:begin -->`` and
``<!-- operations:end -->``; ``python -m bioims.contract.docs`` rewrites them, and a test fails when a
README drifts from the contract.
"""

from __future__ import annotations

import argparse
import re
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import SERVICES
from .base import Operation, Service

BEGIN, END = "<!-- operations:begin -->", "<!-- operations:end -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)


def type_name(annotation: Any) -> str:
    """A short readable name of a type: ``list[Artifact]``, ``str | None``, ``Level``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation)).replace("JsonValue", "JSON")


def _arguments(op: Operation) -> str:
    in_path = {op.path_field(v) for v in op.path_variables}
    parts = []
    for name, field in op.request.model_fields.items():
        if name in in_path:
            continue
        text = f"`{name}`"
        if not field.is_required():
            default = field.default.value if hasattr(field.default, "value") else field.default
            text += f" (default `{default}`)" if default is not None else " (optional)"
        parts.append(text)
    if not parts:
        return ""
    return ("body: " if op.has_body else "query: ") + ", ".join(parts)


def _success(op: Operation) -> str:
    result = type_name(op.response)
    return f"{op.status} `{{\"{op.result_key}\": {result}}}`" if op.result_key else f"{op.status} `{result}`"


def operation_table(service: Service) -> str:
    """The Markdown table of a service's operations and the models they answer."""
    lines = [BEGIN, "", "| HTTP route | Lambda method | summary | arguments | success |", "|---|---|---|---|---|"]
    for op in service.operations:
        lines.append(f"| `{op.route}` | `{op.method}` | {op.summary} | {_arguments(op)} | {_success(op)} |")
    models: dict[str, type[BaseModel]] = {}
    for op in service.operations:
        for candidate in _models(op.response):
            models.setdefault(candidate.__name__, candidate)
    if models:
        lines += ["", "Response models (more keys may be present):", ""]
        for name, model in models.items():
            fields = ", ".join(f"`{n}` {type_name(f.annotation)}" for n, f in model.model_fields.items())
            lines.append(f"- `{name}`: {fields}")
    lines += ["", "Generated from `bioims.contract` (`python -m bioims.contract.docs`); the full schemas are at "
              "`GET /openapi.json`.", "", END]
    return "\n".join(lines)


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
