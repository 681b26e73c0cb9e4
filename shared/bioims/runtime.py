"""Composition roots: build every port and service once from validated settings.

- :func:`local` — one machine: dynalite of ``BIOIMS_HOME`` (started on demand), ``file://`` objects,
  the local process-pool runner. Used by the CLI, ``bioims serve`` and job worker processes.
- :func:`aws` — Lambda / Batch / containers: DynamoDB, S3 (the runner is the caller's: Step Functions).
- :func:`build` — from ports made elsewhere (tests with moto tables, for example).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
from .store.tables import Tables

LOCAL_CREDENTIALS = ("local", "local")


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

    def service(self, name: str) -> Any:
        """The service object behind an API name (``image-management``, ``artifact``, ``tags``, ``training``,
        ``embedding``)."""
        services = {"image-management": self.images, "artifact": self.artifacts, "tags": self.tags,
                    "training": self.training, "embedding": self.embedding, "search": self.search}
        try:
            return services[name]
        except KeyError:
            raise KeyError(f"unknown service {name!r}; known: {', '.join(services)}") from None


def build(settings: Settings, tables: Tables, objects: ObjectStore, runner: RunnerPort | None = None) -> Container:
    artifacts = ArtifactService(tables)
    tags = TagsService(tables)
    keys = Keys(settings.artifact_uri)
    training = TrainingService(tables, objects, keys, artifacts, runner)
    preprocessing = PreprocessingService(tables, objects, keys, training, tags, artifacts)
    images = ImageManagementService(tables, objects, keys, tags, artifacts, runner, preprocessing)
    profiles = ProfileSets(tables, objects, keys, artifacts)
    embedding = EmbeddingService(tables, objects, keys, artifacts, training, runner)
    search = SearchService(tables, objects, keys, artifacts, embedding, training, profiles)
    return Container(settings, tables, objects, keys, artifacts, tags, images, training, preprocessing, profiles,
                     embedding, search, runner)


def local(settings: Settings | None = None) -> Container:
    """The one-machine runtime; starts the local stack if needed and creates missing tables."""
    from .jobs.runner import LocalRunner
    from .local_stack import LocalStack

    settings = settings or Settings.from_env()
    url = settings.dynamodb_url or LocalStack(settings).up()
    tables = Tables(settings.table_prefix, host=url, region=settings.region, credentials=LOCAL_CREDENTIALS)
    tables.create_all()
    return build(settings, tables, ObjectStore(_s3_client(settings)), LocalRunner(settings, tables))


def aws(settings: Settings | None = None, runner: RunnerPort | None = None) -> Container:
    """The AWS runtime (DynamoDB via the default endpoint, S3)."""
    settings = settings or Settings.from_env()
    tables = Tables(settings.table_prefix, host=settings.dynamodb_url, region=settings.region)
    return build(settings, tables, ObjectStore(_s3_client(settings)), runner)


def _s3_client(settings: Settings) -> Any:
    import boto3

    return boto3.client("s3", region_name=settings.region)
