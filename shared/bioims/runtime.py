"""Composition roots: build every port and service once from validated settings.

- :func:`local` — one machine: dynalite of ``BIOIMS_HOME`` (started on demand), ``file://`` objects,
  the local process-pool runner; every service in this process, calling the others in-process. Used by
  the CLI, ``bioims serve`` and job worker processes.
- :func:`aws` — one service on AWS: ITS tables (DynamoDB), S3 and the Step Functions runner; the services
  it calls are clients invoking their ``invoke`` Lambda functions (``BIOIMS_FUNCTION_<SERVICE>``). The
  root of each service's Lambda functions (``services/<name>/app.py``), of the Batch jobs (as the service
  of their step) and of the search container.
- :func:`build` — from ports made elsewhere (tests with moto tables, for example); ``remote`` replaces
  services by clients of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .client.clients import CLIENTS
from .client.transports import LambdaTransport, Unreachable
from .errors import InvalidInput
from .jobs.stepfunctions import StepFunctionsRunner
from .jobs.tables import RunnerTables
from .services.ports import RunnerPort
from .settings import FUNCTION_SERVICES, Settings
from .store.keys import Keys
from .store.objects import ObjectStore
from .store.roots import IngestRoots
from .store.tables import Database, TableSet

if TYPE_CHECKING:
    from .services.image_management import PreprocessingService
    from .services.search import ProfileSets

LOCAL_CREDENTIALS = ("local", "local")

ClientFactory = Callable[[str], Any]
"""AWS service name (``"s3"``, ``"dynamodb"``, ``"stepfunctions"``, ``"lambda"``) -> a botocore client."""

OWNED_TABLES: dict[str, str | None] = {
    "artifact": "bioims.services.artifact.tables:ArtifactTables",
    "tags": "bioims.services.tags.tables:TagsTables",
    "image-management": "bioims.services.image_management.tables:ImageTables",
    "training": "bioims.services.training.tables:TrainingTables",
    "embedding": None,  # an embedding is an (image, run) row of image-management
    "search": "bioims.services.search.tables:SearchTables",
}
"""The table set each service owns (only its code reads or writes it), as ``module:class``."""

SERVICE_CLASSES: dict[str, str] = {
    "artifact": "bioims.services.artifact:ArtifactService",
    "tags": "bioims.services.tags:TagsService",
    "image-management": "bioims.services.image_management:ImageManagementService",
    "training": "bioims.services.training:TrainingService",
    "embedding": "bioims.services.embedding:EmbeddingService",
    "search": "bioims.services.search:SearchService",
}
"""Each service's class, as ``module:class``.

A service's package is imported when that service is built here, never at this module's import: a
service's Lambda artifact carries only its own service package and what it imports (``infra/package.py``
follows this module's module-level imports, then the served service's package)."""


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def table_sets() -> dict[str, type[TableSet]]:
    """Every table set by owner (``runner``: the local job runner's executions; on AWS, Step Functions).
    Imports every service's tables."""
    return {**{name: _load(path) for name, path in OWNED_TABLES.items() if path is not None}, "runner": RunnerTables}


CALLS: dict[str, tuple[str, ...]] = {
    "artifact": (),
    "tags": (),
    "image-management": ("artifact", "tags", "training"),
    "training": ("artifact", "image-management"),
    "embedding": ("artifact", "image-management", "training"),
    "search": ("artifact", "embedding", "tags", "training"),
}
"""The services each service calls (through its ports); on AWS, the functions its role may invoke."""

STEP_SERVICE: dict[str, str] = {
    "inspect-image": "image-management", "validate-plate": "image-management", "thumbnails": "image-management",
    "flatfield": "image-management", "preprocess-image": "image-management", "train-model": "training",
    "embed-plate": "embedding", "build-index": "search",
}
"""The service a Batch job step runs as on AWS (its tables; the others by Lambda invocation)."""

AWS_NEEDS: dict[str, tuple[str, ...]] = {
    "image-management": ("sfn_process_plate_arn", "sfn_train_arn"),  # inspect_plate; start_preprocess (train)
    "training": ("sfn_train_arn",),
    "embedding": ("sfn_embed_arn",),
    "artifact": (),
    "tags": (),
    "search": (),
}
"""The optional settings a process on AWS cannot work without, by the service it serves. The state
machines a service starts; describing executions of the others is optional. (The functions of the services
it calls are needed too: see :data:`CALLS`.)"""


@dataclass(frozen=True)
class Container:
    """Every port and service of one runtime: on one machine all are service objects; on AWS the one
    served is, and the others are clients of their Lambda functions."""

    settings: Settings
    database: Database
    tables: Mapping[str, TableSet]
    """The table sets built here, by owner (tests and tools; services use only their own)."""
    objects: ObjectStore
    keys: Keys
    artifacts: Any
    tags: Any
    images: Any
    training: Any
    profiles: ProfileSets | None
    """The profile sets (where search runs in this process)."""
    embedding: Any
    search: Any
    runner: RunnerPort | None
    roots: IngestRoots = field(default_factory=IngestRoots)
    """Where input images and manifests may be read from."""
    rebuild: Callable[[Settings], Container] | None = None
    """The composition root that made this container (:func:`local`), which a local pool's worker
    processes call to build their own; None where there are no worker processes."""

    @property
    def preprocessing(self) -> PreprocessingService:
        """Image-management's preprocessing (where image-management runs in this process)."""
        return self.images.preprocessing  # type: ignore[no-any-return]

    def service(self, name: str) -> Any:
        """The service object behind an API name (``image-management``, ``artifact``, ``tags``, ``training``,
        ``embedding``, ``search``)."""
        services = {"image-management": self.images, "artifact": self.artifacts, "tags": self.tags,
                    "training": self.training, "embedding": self.embedding, "search": self.search}
        try:
            return services[name]
        except KeyError:
            raise KeyError(f"unknown service {name!r}; known: {', '.join(services)}") from None


class _Later:
    """A port whose target is made after the object that holds it (image-management and training each
    hold the other); it forwards every attribute to the target once :meth:`set`."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._target: Any = None

    def set(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        if self._target is None:
            raise RuntimeError(f"{self._what} is not built yet")
        return getattr(self._target, name)


def build(settings: Settings, database: Database, objects: ObjectStore, runner: RunnerPort | None = None, *,
          roots: IngestRoots | None = None, remote: Mapping[str, Any] | None = None,
          describe: Callable[[], dict[str, Any]] | None = None) -> Container:
    """Every service over the given ports, each over its own tables of ``database``; a service named in
    ``remote`` is that client instead (a transport to it elsewhere) and gets no tables here. ``roots``
    (default: the settings' :attr:`~Settings.input_roots`) are where input images and manifests may be
    read from."""
    roots = roots if roots is not None else IngestRoots(settings.input_roots)
    remote = dict(remote or {})
    tables = {name: _load(path)(database) for name, path in OWNED_TABLES.items()
              if path is not None and name not in remote}
    service = {name: _load(path) for name, path in SERVICE_CLASSES.items() if name not in remote}
    keys = Keys(settings.artifact_uri)
    artifacts = remote.get("artifact") or service["artifact"](
        tables["artifact"], keys.root, objects=objects, describe=describe or (lambda: local_description(settings)))
    tags = remote.get("tags") or service["tags"](tables["tags"])
    training_port = remote.get("training") or _Later("the training service")
    images = remote.get("image-management") or service["image-management"](
        tables["image-management"], objects, keys, tags, artifacts, training_port, runner, roots=roots)
    training = remote.get("training") or service["training"](tables["training"], objects, keys, artifacts, images,
                                                             runner, roots=roots)
    if isinstance(training_port, _Later):
        training_port.set(training)
    embedding = remote.get("embedding") or service["embedding"](objects, keys, artifacts, images, training, runner)
    profiles = search = None
    if "search" not in remote:
        profiles = _load("bioims.services.search:ProfileSets")(objects, keys, artifacts, images, roots=roots)
        search = service["search"](tables["search"], objects, keys, artifacts, embedding, training, tags, profiles)
    return Container(settings, database, tables, objects, keys, artifacts, tags, images, training, profiles,
                     embedding, search, runner, roots)


def local(settings: Settings | None = None) -> Container:
    """The one-machine runtime; starts the local stack if needed and creates missing tables.

    The tables survive a restart of the stack's dynalite (killed, or restarted by ``bioims down``/``up``
    on another port): a call that cannot connect restarts it if it is down (:meth:`LocalStack.up`),
    re-points the tables and is retried once; if it cannot be restarted, the call raises
    :class:`~bioims.errors.Unavailable` (HTTP 503) at once. A server named by ``BIOIMS_DYNAMODB_URL``
    (job worker processes get the stack's) is not restarted: calls to it fail fast the same way when
    nothing listens there (:func:`~bioims.local_stack.reachable`).

    Input images and manifests are read from the settings' roots and the folders named to the ingest
    commands (remembered in ``$BIOIMS_HOME``, :func:`bioims.store.roots.remember_ingest_root`).
    """
    from .jobs.runner import LocalRunner
    from .local_stack import LocalStack, reachable

    settings = settings or Settings.from_env()
    if settings.dynamodb_url:
        url = fixed = settings.dynamodb_url
        recover: Callable[[], str] = lambda: reachable(fixed)
    else:
        stack = LocalStack(settings)
        url, recover = stack.up(), stack.up
    database = Database(settings.table_prefix, host=url, region=settings.region, credentials=LOCAL_CREDENTIALS,
                        recover=recover)
    runner = LocalRunner(settings, RunnerTables(database))
    container = build(settings, database, ObjectStore(_s3_client(settings)), runner,
                      roots=IngestRoots(settings.input_roots, home=settings.home))
    database.create()
    return replace(container, rebuild=local)


def aws(settings: Settings | None = None, runner: RunnerPort | None = None, *, service: str,
        clients: ClientFactory | None = None, job: bool = False) -> Container:
    """One service on AWS: its own DynamoDB tables, the S3 object store and the Step Functions runner; the
    services it calls are clients of their ``invoke`` Lambda functions (``BIOIMS_FUNCTION_<SERVICE>``, a
    function name or ARN, or the ``http://HOST:PORT`` of a Lambda emulator).

    Parameters
    ----------
    settings : Settings, optional
        Default: :meth:`Settings.from_env` (the function's or task's environment, read once).
    runner : RunnerPort, optional
        Default: a :class:`~bioims.jobs.stepfunctions.StepFunctionsRunner` over the state machines that
        are set (``BIOIMS_SFN_*_ARN``); None if none is.
    service : str
        The service this process serves (a key of :data:`CALLS`; a Batch job serves its step's service,
        :data:`STEP_SERVICE`). On ``BIOIMS_RUNTIME=aws`` the settings it needs must be set.
    clients : ClientFactory, optional
        Makes the botocore clients (default :func:`aws_clients`; tests pass moto-backed, instrumented ones).
    job : bool
        A Batch job step serving ``service``: it needs the functions of the services it calls, not the
        settings of the service's API (:data:`AWS_NEEDS`: a job starts no workflow).

    Raises
    ------
    InvalidInput
        A setting ``service`` needs is missing (the message names its environment variable), or
        ``service`` is unknown.
    """
    settings = settings or Settings.from_env()
    if service not in CALLS:
        raise InvalidInput(f"unknown AWS service {service!r}; known: {', '.join(CALLS)}")
    if settings.runtime == "aws":
        for name in () if job else AWS_NEEDS[service]:
            settings.need(name, f"the {service} service on AWS")
        for callee in CALLS[service]:
            if callee in FUNCTION_SERVICES:
                settings.need(f"function:{callee}", f"the {service} service on AWS")
    clients = clients or aws_clients(settings)
    database = Database(settings.table_prefix, host=settings.dynamodb_url, region=settings.region,
                        client=clients("dynamodb"))
    if runner is None and settings.state_machine_arns:
        runner = StepFunctionsRunner(clients("stepfunctions"), settings.state_machine_arns)
    remote = {name: _remote(name, service, settings, clients) for name in CALLS if name != service}
    return build(settings, database, ObjectStore(clients("s3")), runner, remote=remote,
                 describe=lambda: describe_stacks(clients("cloudformation")))


def _remote(name: str, caller: str, settings: Settings, clients: ClientFactory) -> Any:
    """The client of service ``name`` as ``caller`` reaches it on AWS: its Lambda function, or (a service
    it does not call) one whose every call fails with a message saying so."""
    function = settings.functions.get(name)
    if name not in CALLS[caller] or name not in FUNCTION_SERVICES or function is None:
        return CLIENTS[name](Unreachable(name, caller))
    return CLIENTS[name](LambdaTransport.to(function, name, clients))


def aws_clients(settings: Settings) -> ClientFactory:
    """A factory of the runtime's botocore clients, one per AWS service (made on first use, then reused),
    in the settings' region; DynamoDB at ``BIOIMS_DYNAMODB_URL`` when it is set, configured like
    PynamoDB's own client (no client-side validation, standard retries)."""
    import boto3
    from botocore.config import Config

    options: dict[str, dict[str, Any]] = {
        "dynamodb": {"endpoint_url": settings.dynamodb_url,
                     "config": Config(parameter_validation=False,
                                      retries={"mode": "standard", "total_max_attempts": 9})},
    }
    made: dict[str, Any] = {}

    def client(name: str) -> Any:
        if name not in made:
            made[name] = boto3.client(name, region_name=settings.region, **options.get(name, {}))
        return made[name]

    return client


def local_description(settings: Settings) -> dict[str, Any]:
    """What a one-machine deployment is (createDescribeStacksArtifact's record where no CloudFormation
    stack exists): its runtime, region, table prefix, store and services."""
    return {"Runtime": settings.runtime, "Region": settings.region, "TablePrefix": settings.table_prefix,
            "ArtifactUri": settings.artifact_uri, "Services": sorted(SERVICE_CLASSES)}


def describe_stacks(cloudformation: Any) -> dict[str, Any]:
    """CloudFormation DescribeStacks of the account and region, every page (the seed's
    createDescribeStacksArtifact): ``{"Stacks": [...]}``."""
    stacks = [s for page in cloudformation.get_paginator("describe_stacks").paginate() for s in page["Stacks"]]
    return {"Stacks": stacks}


def _s3_client(settings: Settings) -> Any:
    import boto3

    return boto3.client("s3", region_name=settings.region)
