"""``bioims`` commands: configuration parameters, message logs, artifacts."""

from __future__ import annotations

import json
from typing import Any

import click

from .base import Ctx, _json_value, _kv, _table, command, main

# ----------------------------------------------------------------------------------- configuration etc.


@main.group()
def config() -> None:
    """Configuration parameters (values are JSON; every change is kept in the history)."""


@command(config, "get", human=lambda v: click.echo(json.dumps(v)))
@click.argument("key")
def config_get(obj: Ctx, key: str) -> Any:
    """The current value of a parameter."""
    return obj.container.artifacts.get_parameter(key)


@command(config, "set", human=_kv)
@click.argument("key")
@click.argument("value")
def config_set(obj: Ctx, key: str, value: str) -> dict[str, Any]:
    """Set a parameter (VALUE is JSON, or a bare string)."""
    return obj.container.artifacts.set_parameter(key, _json_value(value))


@command(config, "history", human=lambda rows: _table(rows, ["version", "created_at", "deleted", "value"]))
@click.argument("key")
def config_history(obj: Ctx, key: str) -> list[dict[str, Any]]:
    """Every version of a parameter."""
    return obj.container.artifacts.get_history(key)


@command(config, "list", human=_kv)
def config_list(obj: Ctx) -> dict[str, Any]:
    """Every parameter currently set."""
    return obj.container.artifacts.get_all()


@command(config, "delete", human=_kv)
@click.argument("key")
def config_delete(obj: Ctx, key: str) -> dict[str, Any]:
    """Unset a parameter (kept in its history)."""
    return obj.container.artifacts.delete_parameter(key)


@main.group()
def message() -> None:
    """Message (activity) logs."""


@command(message, "list", human=lambda rows: _table(rows, ["created_at", "message"]))
@click.argument("message_id")
def message_list(obj: Ctx, message_id: str) -> list[dict[str, Any]]:
    """Every message of a log (a plate's log id is in `bioims plate show`)."""
    return obj.container.artifacts.list_messages(message_id)


@main.group()
def artifact() -> None:
    """The artifact registry: every stored object with its context and train id."""


@command(artifact, "list", human=lambda rows: _table(rows, ["train_id", "type", "size", "uri"]))
@click.argument("context_id")
@click.option("--train", "train_id")
def artifact_list(obj: Ctx, context_id: str, train_id: str | None) -> list[dict[str, Any]]:
    """Artifacts of a context (plate, image, train run ...)."""
    return obj.container.artifacts.get_artifacts(context_id, train_id)
