"""Integration fixtures: one real dynalite per test session (started by our own LocalStack), and a
fresh table prefix per test so tests stay independent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
    return stack_settings.with_(table_prefix=f"it{new_id()[:8]}-", artifact_uri=(tmp_path / "artifacts").as_uri(),
                                ingest_roots=(tmp_path,))


@pytest.fixture
def container(settings: Settings):
    from bioims.runtime import local

    return local(settings)


@pytest.fixture
def tables(container):
    return container.tables


def preprocessed_screen(stack_settings: Settings, tmp, spec: dict | None):
    """A container over the tiny synthetic screen (seed 3) ingested, processed and preprocessed under
    ``spec`` (none: no spec registered, nothing preprocessed), with tables and artifacts of its own
    (module-scoped fixtures build it once)."""
    from bioims.datasets.loaddata import read_loaddata
    from bioims.datasets.synth import IMAGE_CSV, MOA_CSV, synthesize
    from bioims.jobs.runner import LocalPool
    from bioims.runtime import local

    settings = stack_settings.with_(table_prefix=f"sc{new_id()[:8]}-", artifact_uri=(tmp / "artifacts").as_uri(),
                                    ingest_roots=(tmp,))
    c = local(settings)
    synthesize(tmp / "tiny", "tiny", seed=3)
    summary = c.images.ingest(read_loaddata(tmp / "tiny" / IMAGE_CSV, moa_csv=tmp / "tiny" / MOA_CSV))
    c.artifacts.set_parameter("thumbnail-widths", [32])
    if spec is not None:
        c.training.create_embedding(spec)
    with LocalPool(c, workers=2) as pool:
        for plate_id in summary.plate_ids:
            c.runner.run(c, "process-plate", {"plate_id": plate_id}, pool=pool)
        if spec is not None:
            c.runner.run(c, "preprocess", {"spec": spec["name"]}, pool=pool)
    return c


@contextmanager
def running_server(container) -> Iterator[str]:
    """Every service's API (``bioims serve``) on a free port of 127.0.0.1 in a background thread; yields
    the root URL and stops the server on exit."""
    import threading

    from bioims.api.server import LocalServer

    httpd = LocalServer(container, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.run, daemon=True)
    thread.start()
    try:
        yield httpd.url
    finally:
        httpd.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the server did not stop"
