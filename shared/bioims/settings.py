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
BIOIMS_INGEST_ROOTS    absolute folders (``os.pathsep``-separated) that input images and manifests may be
                       read from, besides the input bucket and, on one machine, the folders named to the
                       ingest commands (:mod:`bioims.store.roots`)
AWS_REGION / AWS_DEFAULT_REGION   region (default ``us-east-1``)

On AWS the template sets these as well (each optional here; a composition root that needs one raises
:class:`~bioims.errors.InvalidInput` naming it, see :meth:`Settings.need`):

BIOIMS_INPUT_BUCKET              the read-only bucket of input images (name only)
BIOIMS_SFN_PROCESS_PLATE_ARN     state machine of the ``process-plate`` workflow
BIOIMS_SFN_TRAIN_ARN             state machine of the ``train`` workflow
BIOIMS_SFN_EMBED_ARN             state machine of the ``embed`` workflow
BIOIMS_BATCH_CPU_QUEUE           AWS Batch job queue for CPU steps (name or ARN)
BIOIMS_BATCH_GPU_QUEUE           AWS Batch job queue for training (name or ARN)
BIOIMS_BATCH_JOB_DEFINITION      the job definition running ``python -m bioims.jobs`` (name or ARN)
BIOIMS_FUNCTION_<SERVICE>        the ``invoke`` Lambda function of another service (``BIOIMS_FUNCTION_TAGS``,
                                 ``BIOIMS_FUNCTION_IMAGE_MANAGEMENT``, ...): how a service reaches it; a
                                 name or ARN, or the ``http://HOST:PORT`` of a Lambda emulator serving it
BIOIMS_SEARCH_URL                the search service's HTTP API (``http(s)://...``)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from collections.abc import Mapping

from .errors import InvalidInput
from .store.roots import normalise_root

Runtime = Literal["local", "aws"]
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{0,200}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_STATE_MACHINE_RE = re.compile(r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$")
_FUNCTION_RE = re.compile(r"^[A-Za-z0-9_:.-]{1,170}$")
_EMULATOR_RE = re.compile(r"^http://[A-Za-z0-9.-]{1,253}:[0-9]{1,5}$")

FUNCTION_SERVICES = ("artifact", "tags", "image-management", "training", "embedding")
"""Services with an ``invoke`` Lambda function that others may reach (``BIOIMS_FUNCTION_<SERVICE>``)."""
FUNCTION_PREFIX = "BIOIMS_FUNCTION_"

ENV_NAMES: dict[str, str] = {
    "home": "BIOIMS_HOME",
    "runtime": "BIOIMS_RUNTIME",
    "table_prefix": "BIOIMS_TABLE_PREFIX",
    "dynamodb_url": "BIOIMS_DYNAMODB_URL",
    "artifact_uri": "BIOIMS_ARTIFACT_URI",
    "dynalite_cli": "BIOIMS_DYNALITE",
    "ingest_roots": "BIOIMS_INGEST_ROOTS",
    "input_bucket": "BIOIMS_INPUT_BUCKET",
    "sfn_process_plate_arn": "BIOIMS_SFN_PROCESS_PLATE_ARN",
    "sfn_train_arn": "BIOIMS_SFN_TRAIN_ARN",
    "sfn_embed_arn": "BIOIMS_SFN_EMBED_ARN",
    "batch_cpu_queue": "BIOIMS_BATCH_CPU_QUEUE",
    "batch_gpu_queue": "BIOIMS_BATCH_GPU_QUEUE",
    "batch_job_definition": "BIOIMS_BATCH_JOB_DEFINITION",
    "search_url": "BIOIMS_SEARCH_URL",
}
"""Settings field -> its environment variable (the optional AWS resources among them are read as given,
an empty value meaning unset)."""
_AWS_RESOURCES = ("input_bucket", "sfn_process_plate_arn", "sfn_train_arn", "sfn_embed_arn", "batch_cpu_queue",
                  "batch_gpu_queue", "batch_job_definition", "search_url")
_WORKFLOW_ARNS = {"process-plate": "sfn_process_plate_arn", "train": "sfn_train_arn", "embed": "sfn_embed_arn"}


def function_variable(service: str) -> str:
    """``"image-management"`` -> ``"BIOIMS_FUNCTION_IMAGE_MANAGEMENT"``."""
    return FUNCTION_PREFIX + service.upper().replace("-", "_")


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
    input_bucket: str | None = None
    sfn_process_plate_arn: str | None = None
    sfn_train_arn: str | None = None
    sfn_embed_arn: str | None = None
    batch_cpu_queue: str | None = None
    batch_gpu_queue: str | None = None
    batch_job_definition: str | None = None
    functions: dict[str, str] = field(default_factory=dict, hash=False)
    """Service name (``"tags"``) -> the name or ARN of its ``invoke`` Lambda function."""
    search_url: str | None = None
    ingest_roots: tuple[str, ...] = ()
    """Local folders input images and manifests may be read from (absolute, normalised here); see
    :attr:`input_roots` for every root of the runtime."""

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
        if self.runtime == "aws" and not self.artifact_uri.startswith("s3://"):
            raise InvalidInput(f"BIOIMS_ARTIFACT_URI must be an s3:// URI on AWS, not {self.artifact_uri!r}")
        self._validate_aws_resources()
        self._validate_ingest_roots()

    def _validate_ingest_roots(self) -> None:
        roots = self.ingest_roots
        if isinstance(roots, (str, os.PathLike)):
            roots = tuple(r for r in os.fspath(roots).split(os.pathsep) if r)
        folders = []
        for root in roots:
            text = os.fspath(root)
            if not isinstance(text, str) or text.startswith("s3://") or ("://" in text and not text.startswith("file://")):
                raise InvalidInput(f"BIOIMS_INGEST_ROOTS holds local folders, not {text!r} (on AWS the input "
                                   f"bucket, BIOIMS_INPUT_BUCKET, is the S3 root)")
            try:
                folders.append(normalise_root(text))
            except InvalidInput:
                raise InvalidInput(f"BIOIMS_INGEST_ROOTS entries must be absolute folders, not {text!r}") from None
        object.__setattr__(self, "ingest_roots", tuple(dict.fromkeys(folders)))

    @property
    def input_roots(self) -> tuple[str, ...]:
        """Every configured root of input images and manifests: :attr:`ingest_roots` and, when it is
        set, the input bucket ``s3://<input_bucket>/``. On one machine the local composition root adds
        the folders named to the ingest commands (:class:`bioims.store.roots.IngestRoots`)."""
        return self.ingest_roots + ((f"s3://{self.input_bucket}/",) if self.input_bucket else ())

    def _validate_aws_resources(self) -> None:
        if self.input_bucket is not None and not _BUCKET_RE.match(self.input_bucket):
            raise InvalidInput(f"BIOIMS_INPUT_BUCKET must be a bucket name (no s3://), not {self.input_bucket!r}")
        for name in _WORKFLOW_ARNS.values():
            arn = getattr(self, name)
            if arn is not None and not _STATE_MACHINE_RE.match(arn):
                raise InvalidInput(f"{ENV_NAMES[name]} must be a state machine ARN "
                                   f"(arn:aws:states:REGION:ACCOUNT:stateMachine:NAME), not {arn!r}")
        for name in ("batch_cpu_queue", "batch_gpu_queue", "batch_job_definition"):
            value = getattr(self, name)
            if value is not None and (not value or any(c.isspace() for c in value)):
                raise InvalidInput(f"{ENV_NAMES[name]} must be a name or an ARN, not {value!r}")
        functions = dict(self.functions)
        for service, function in functions.items():
            if service not in FUNCTION_SERVICES:
                raise InvalidInput(f"{function_variable(service)}: no service {service!r} has an invoke function; "
                                   f"known: {', '.join(function_variable(s) for s in FUNCTION_SERVICES)}")
            if not isinstance(function, str) or not (_FUNCTION_RE.match(function) or _EMULATOR_RE.match(function)):
                raise InvalidInput(f"{function_variable(service)} must be a Lambda function name or ARN, "
                                   f"or an emulator's http://HOST:PORT, not {function!r}")
        object.__setattr__(self, "functions", functions)  # a private copy: the caller's dict may change
        if self.search_url is not None and not self.search_url.startswith(("http://", "https://")):
            raise InvalidInput(f"BIOIMS_SEARCH_URL must be an http:// or https:// URL, not {self.search_url!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``environ`` (default ``os.environ``; see the module docstring), ``overrides``
        taking precedence. An empty variable counts as unset.

        Raises
        ------
        InvalidInput
            A value is malformed (named by its variable), a ``BIOIMS_FUNCTION_<SERVICE>`` names no
            service, or on ``BIOIMS_RUNTIME=aws`` ``BIOIMS_TABLE_PREFIX`` or an ``s3://``
            ``BIOIMS_ARTIFACT_URI`` is missing.
        """
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
        if env.get("BIOIMS_INGEST_ROOTS"):
            if "://" in env["BIOIMS_INGEST_ROOTS"]:  # s3:// would be split at its ':' (os.pathsep)
                raise InvalidInput("BIOIMS_INGEST_ROOTS holds local folders, not URIs (on AWS the input bucket, "
                                   "BIOIMS_INPUT_BUCKET, is the S3 root)")
            values["ingest_roots"] = tuple(r for r in env["BIOIMS_INGEST_ROOTS"].split(os.pathsep) if r)
        for name in _AWS_RESOURCES:
            values[name] = env.get(ENV_NAMES[name]) or None
        by_variable = {function_variable(s): s for s in FUNCTION_SERVICES}
        functions: dict[str, str] = {}
        for variable, value in env.items():
            if variable.startswith(FUNCTION_PREFIX) and value:
                if variable not in by_variable:
                    raise InvalidInput(f"{variable}: no such service function; known: {', '.join(by_variable)}")
                functions[by_variable[variable]] = value
        values["functions"] = functions
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.runtime == "aws" and "table_prefix" not in overrides and "BIOIMS_TABLE_PREFIX" not in env:
            raise InvalidInput("BIOIMS_TABLE_PREFIX is required on AWS (the tables the template made)")
        return settings

    def with_(self, **changes: object) -> Settings:
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
        if self.ingest_roots:
            env["BIOIMS_INGEST_ROOTS"] = os.pathsep.join(self.ingest_roots)
        for name in _AWS_RESOURCES:
            if getattr(self, name) is not None:
                env[ENV_NAMES[name]] = getattr(self, name)
        for service, function in self.functions.items():
            env[function_variable(service)] = function
        return env

    def need(self, name: str, purpose: str) -> str:
        """The value of an optional setting that ``purpose`` requires.

        Parameters
        ----------
        name : str
            A field (``"sfn_train_arn"``) or ``"function:<service>"`` (``"function:tags"``).
        purpose : str
            Who needs it, for the error (``"the training service on AWS"``).

        Raises
        ------
        InvalidInput
            The setting is unset; the message names its environment variable.
        """
        if name.startswith("function:"):
            service = name.partition(":")[2]
            value: Any = self.functions.get(service)
            variable = function_variable(service)
        else:
            value = getattr(self, name)
            variable = ENV_NAMES[name]
        if not value:
            raise InvalidInput(f"{variable} is not set; {purpose} needs it")
        return str(value)

    @property
    def state_machine_arns(self) -> dict[str, str]:
        """Workflow name -> the ARN of the state machine that runs it, for the state machines that are set.

        ``preprocess`` has no state machine of its own: it is the first half of ``train`` (the ``train``
        state machine given ``{"spec", "plate_ids"}`` and no ``train_ids`` stops after preprocessing).
        """
        arns = {workflow: getattr(self, name) for workflow, name in _WORKFLOW_ARNS.items()
                if getattr(self, name) is not None}
        if "train" in arns:
            arns["preprocess"] = arns["train"]
        return arns

    @property
    def state_dir(self) -> Path:
        """Where the local stack keeps dynalite's data, its pid/port file and its log."""
        return self.home / "stack"
