"""Shared fixtures: moto-backed tables (unit tests), a settings object per test, a seeded RNG."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bioims.runtime import Container
from bioims.settings import Settings
from bioims.store.objects import ObjectStore
from bioims.store.tables import Database

REPO = Path(__file__).resolve().parents[1]
BBBC021 = REPO.parent / "shared" / "data" / "bbbc021"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", table_prefix="test-", ingest_roots=(tmp_path,))


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3(aws_env: None) -> Iterator[tuple[ObjectStore, object]]:
    """An ObjectStore on a moto S3 with bucket ``plates``, and the raw client to put objects."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="plates")
        yield ObjectStore(client), client


@pytest.fixture
def database(aws_env: None) -> Iterator[Database]:
    """A table endpoint in moto (in-process DynamoDB), its client made now (with the test credentials);
    tables bound to it are created by the fixtures."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield Database("test-", region="us-east-1", client=boto3.client("dynamodb", region_name="us-east-1"))


@pytest.fixture
def container(settings: Settings, database: Database) -> Container:
    """Services on moto tables (each service's own, all created), objects under tmp_path, a runner
    recording executions in moto."""
    from bioims.jobs.runner import LocalRunner
    from bioims.jobs.tables import RunnerTables
    from bioims.runtime import build
    from bioims.store.objects import ObjectStore

    c = build(settings, database, ObjectStore(), LocalRunner(settings, RunnerTables(database)))
    database.create()
    return c
