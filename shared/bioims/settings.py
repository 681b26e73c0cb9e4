"""Settings: read from the environment once into a frozen, validated object.

Every composition root (local CLI, ``bioims serve``, Lambda, containers, tests) calls
:meth:`Settings.from_env` (or builds a ``Settings`` directly) and passes the result down; nothing else
reads the environment.

Variables
---------
BIOIMS_HOME            local state directory (default ``./.bioims``): dynalite data, artifacts, logs
BIOIMS_RUNTIME         ``local`` (default) or ``aws``
BIOIMS_TABLE_PREFIX    prefix of every table name (default ``bioims-``)
BIOIMS_DYNAMODB_URL    DynamoDB endpoint; unset locally means "the dynalite of BIOIMS_HOME"
BIOIMS_ARTIFACT_URI    root URI of stored objects (default ``file://$BIOIMS_HOME/artifacts``;
                       ``s3://bucket/prefix`` on AWS)
BIOIMS_DYNALITE        path to dynalite's ``cli.js`` (default: the repository's ``node_modules``)
AWS_REGION / AWS_DEFAULT_REGION   region (default ``us-east-1``)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Mapping

from .errors import InvalidInput

Runtime = Literal["local", "aws"]
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{0,200}$")


def _default_dynalite() -> Path:
    # shared/bioims/settings.py -> repository root -> node_modules (installed by `npm ci`)
    return Path(__file__).resolve().parents[2] / "node_modules" / "dynalite" / "cli.js"


@dataclass(frozen=True)
class Settings:
    """Validated runtime settings (see the module docstring for the environment variables)."""

    home: Path = field(default_factory=lambda: Path(".bioims").resolve())
    runtime: Runtime = "local"
    table_prefix: str = "bioims-"
    dynamodb_url: str | None = None
    artifact_uri: str = ""
    region: str = "us-east-1"
    dynalite_cli: Path = field(default_factory=_default_dynalite)

    def __post_init__(self) -> None:
        if self.runtime not in ("local", "aws"):
            raise InvalidInput(f"BIOIMS_RUNTIME must be 'local' or 'aws', not {self.runtime!r}")
        if not _PREFIX_RE.match(self.table_prefix):
            raise InvalidInput(
                f"BIOIMS_TABLE_PREFIX {self.table_prefix!r} may only contain letters, digits, '_', '-', '.'"
            )
        object.__setattr__(self, "home", Path(self.home).resolve())
        if not self.artifact_uri:
            if self.runtime == "aws":
                raise InvalidInput("BIOIMS_ARTIFACT_URI (s3://bucket/prefix) is required on AWS")
            object.__setattr__(self, "artifact_uri", (self.home / "artifacts").as_uri())
        if not self.artifact_uri.startswith(("file://", "s3://")):
            raise InvalidInput(f"BIOIMS_ARTIFACT_URI must be a file:// or s3:// URI, not {self.artifact_uri!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "home": Path(env.get("BIOIMS_HOME", ".bioims")),
            "runtime": env.get("BIOIMS_RUNTIME", "local"),
            "table_prefix": env.get("BIOIMS_TABLE_PREFIX", "bioims-"),
            "dynamodb_url": env.get("BIOIMS_DYNAMODB_URL") or None,
            "artifact_uri": env.get("BIOIMS_ARTIFACT_URI", ""),
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        }
        if env.get("BIOIMS_DYNALITE"):
            values["dynalite_cli"] = Path(env["BIOIMS_DYNALITE"])
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> "Settings":
        """A copy with some fields changed (e.g. the endpoint of a dynalite just started)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        env = {
            "BIOIMS_HOME": str(self.home),
            "BIOIMS_RUNTIME": self.runtime,
            "BIOIMS_TABLE_PREFIX": self.table_prefix,
            "BIOIMS_ARTIFACT_URI": self.artifact_uri,
            "BIOIMS_DYNALITE": str(self.dynalite_cli),
            "AWS_DEFAULT_REGION": self.region,
        }
        if self.dynamodb_url:
            env["BIOIMS_DYNAMODB_URL"] = self.dynamodb_url
        return env

    @property
    def state_dir(self) -> Path:
        """Where the local stack keeps dynalite's data, its pid/port file and its log."""
        return self.home / "stack"
