"""Integration fixtures: one real dynalite per test session (started by our own LocalStack), and a
fresh table prefix per test so tests stay independent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bioims.ids import new_id
from bioims.local_stack import LocalStack
from bioims.settings import Settings


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(home=tmp_path_factory.mktemp("bioims-home"))
    stack = LocalStack(settings)
    stack.up()
    yield settings
    stack.down()


@pytest.fixture
def settings(stack_settings: Settings, tmp_path) -> Settings:
    """Settings of the session's dynalite with a prefix (and artifact folder) of this test's own."""
    return stack_settings.with_(table_prefix=f"it{new_id()[:8]}-", artifact_uri=(tmp_path / "artifacts").as_uri())


@pytest.fixture
def container(settings: Settings):
    from bioims.runtime import local

    return local(settings)


@pytest.fixture
def tables(container):
    return container.tables
