"""Composition roots: build every port and service once from validated settings.

- :func:`local` — one machine: dynalite of ``BIOIMS_HOME`` (started on demand), ``file://`` objects,
  the local process-pool runner. Used by the CLI, ``bioims serve`` and job worker processes.
- :func:`aws` — AWS: DynamoDB, S3 and the Step Functions runner, from the environment the template sets.
  The one root of every AWS process: each service's Lambda functions (``services/<name>/app.py``, with
  ``service=<name>``), the Batch jobs (``python -m bioims.jobs``) and the search container.
- :func:`build` — from ports made elsewhere (tests with moto tables, for example).

On AWS every process builds the whole container and serves one service of it: the services reach each
other in-process (a tags call made while ingesting is a DynamoDB write, not a Lambda invocation), so
each function's role grants the tables its service and the services it calls touch
(:data:`bioims.permissions.PERMISSIONS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInput
from .services.artifact import ArtifactService
from .services.embedding import EmbeddingService
from .services.image_management import ImageManagementService, RunnerPort
from .services.preprocessing import PreprocessingService
from .services.profiles import ProfileSets
from .services.search import SearchService
from .services.tags import TagsService
from .services.training import TrainingService
from .settings import Settings
from .store.keys import Keys
from .store.objects import ObjectStore
from .store.roots import IngestRoots
from .store.tables import Tables

LOCAL_CREDENTIALS = ("local", "local")

ClientFactory = Callable[[str], Any]
"""AWS service name (``"s3"``, ``"dynamodb"``, ``"stepfunctions"``, ``"lambda"``) -> a botocore client."""

AWS_NEEDS: dict[str, tuple[str, ...]] = {
    "image-management": ("sfn_process_plate_arn", "sfn_train_arn"),  # process_plate; start_preprocess (train)
    "training": ("sfn_train_arn",),
    "embedding": ("sfn_embed_arn",),
    "artifact": (),
    "tags": (),
    "search": (),
    "jobs": (),
}
"""The optional settings a process on AWS cannot work without, by the service it serves (``jobs``: a
Batch job). The state machines a service starts; describing executions of the others is optional."""


@dataclass(frozen=True)
class Container:
    """Every port and service of one runtime."""

    settings: Settings
    tables: Tables
    objects: ObjectStore
    keys: Keys
    artifacts: ArtifactService
    tags: TagsService
    images: ImageManagementService
    training: TrainingService
    preprocessing: PreprocessingService
    profiles: ProfileSets
    embedding: EmbeddingService
    search: SearchService
    runner: RunnerPort | None
    roots: IngestRoots = field(default_factory=IngestRoots)
    """Where input images and manifests may be read from."""

    def service(self, name: str) -> Any:
        """The service object behind an API name (``image-management``, ``artifact``, ``tags``, ``training``,
        ``embedding``)."""
        services = {"image-management": self.images, "artifact": self.artifacts, "tags": self.tags,
                    "training": self.training, "embedding": self.embedding, "search": self.search}
        try:
            return services[name]
        except KeyError:
            raise KeyError(f"unknown service {name!r}; known: {', '.join(services)}") from None


def build(settings: Settings, tables: Tables, objects: ObjectStore, runner: RunnerPort | None = None, *,
          roots: IngestRoots | None = None) -> Container:
    """Every service over the given ports. ``roots`` (default: the settings' :attr:`~Settings.input_roots`)
    are where input images and manifests may be read from."""
    roots = roots if roots is not None else IngestRoots(settings.input_roots)
    artifacts = ArtifactService(tables)
    tags = TagsService(tables)
    keys = Keys(settings.artifact_uri)
    training = TrainingService(tables, objects, keys, artifacts, runner)
    preprocessing = PreprocessingService(tables, objects, keys, training, tags, artifacts, roots=roots)
    images = ImageManagementService(tables, objects, keys, tags, artifacts, runner, preprocessing, roots=roots)
    profiles = ProfileSets(tables, objects, keys, artifacts, roots=roots)
    embedding = EmbeddingService(tables, objects, keys, artifacts, training, runner)
    search = SearchService(tables, objects, keys, artifacts, embedding, training, profiles)
    return Container(settings, tables, objects, keys, artifacts, tags, images, training, preprocessing, profiles,
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
        recover: Callable[[], str] = lambda: reachable(fixed)  # noqa: E731
    else:
        stack = LocalStack(settings)
        url, recover = stack.up(), stack.up
    tables = Tables(settings.table_prefix, host=url, region=settings.region, credentials=LOCAL_CREDENTIALS,
                    recover=recover)
    tables.create_all()
    return build(settings, tables, ObjectStore(_s3_client(settings)), LocalRunner(settings, tables),
                 roots=IngestRoots(settings.input_roots, home=settings.home))


def aws(settings: Settings | None = None, runner: RunnerPort | None = None, *, service: str | None = None,
        clients: ClientFactory | None = None) -> Container:
    """The AWS runtime: DynamoDB tables, the S3 object store and the Step Functions runner.

    Parameters
    ----------
    settings : Settings, optional
        Default: :meth:`Settings.from_env` (the function's or task's environment, read once).
    runner : RunnerPort, optional
        Default: a :class:`~bioims.jobs.stepfunctions.StepFunctionsRunner` over the state machines that
        are set (``BIOIMS_SFN_*_ARN``); None if none is.
    service : str, optional
        The service this process serves (a key of :data:`AWS_NEEDS`). On ``BIOIMS_RUNTIME=aws`` the
        settings it needs must be set.
    clients : ClientFactory, optional
        Makes the botocore clients (default :func:`aws_clients`; tests pass moto-backed, instrumented ones).

    Raises
    ------
    InvalidInput
        A setting ``service`` needs is missing (the message names its environment variable), or
        ``service`` is unknown.
    """
    settings = settings or Settings.from_env()
    if service is not None:
        if service not in AWS_NEEDS:
            raise InvalidInput(f"unknown AWS service {service!r}; known: {', '.join(AWS_NEEDS)}")
        if settings.runtime == "aws":
            for name in AWS_NEEDS[service]:
                settings.need(name, f"the {service} service on AWS")
    clients = clients or aws_clients(settings)
    tables = Tables(settings.table_prefix, host=settings.dynamodb_url, region=settings.region,
                    client=clients("dynamodb"))
    if runner is None and settings.state_machine_arns:
        from .jobs.stepfunctions import StepFunctionsRunner

        runner = StepFunctionsRunner(clients("stepfunctions"), settings.state_machine_arns)
    return build(settings, tables, ObjectStore(clients("s3")), runner)


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


def _s3_client(settings: Settings) -> Any:
    import boto3

    return boto3.client("s3", region_name=settings.region)
