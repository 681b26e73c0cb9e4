"""Shared fixtures: moto-backed tables (unit tests), a settings object per test, a seeded RNG."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bioims.runtime import Container
from bioims.settings import Settings
from bioims.store.tables import Tables

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
def tables(aws_env: None) -> Iterator[Tables]:
    """Every table, created in moto (in-process DynamoDB)."""
    from moto import mock_aws

    with mock_aws():
        t = Tables("test-", region="us-east-1")
        t.create_all()
        yield t


@pytest.fixture
def container(settings: Settings, tables: Tables) -> Container:
    """Services on moto tables, objects under tmp_path, a runner recording executions in moto."""
    from bioims.jobs.runner import LocalRunner
    from bioims.runtime import build
    from bioims.store.objects import ObjectStore

    return build(settings, tables, ObjectStore(), LocalRunner(settings, tables))
