from __future__ import annotations

import time

import pytest

from bioims.local_stack import LocalStack
from bioims.runtime import local
from bioims.settings import Settings
from tests.unit.test_image_management import make_plate


def test_up_is_idempotent_and_data_survives_a_restart(tmp_path):
    settings = Settings(home=tmp_path / "home", table_prefix="persist-")
    stack = LocalStack(settings)
    assert stack.status()["running"] is False
    url = stack.up()
    pid = stack.status()["pid"]
    assert stack.up() == url and stack.status()["pid"] == pid
    try:
        c = local(settings)
        c.artifacts.set_parameter("answer", 42)
        c.tags.create_tag("compound:ALLN")
        assert stack.down() is True
        assert stack.status()["running"] is False
        assert stack.down() is False
        c2 = local(settings)  # started again on demand, on a new port, same data directory
        assert c2.artifacts.get_parameter("answer") == 42
        assert c2.tags.get_tag_by_value("compound:ALLN")["tag_id"] == 1
    finally:
        stack.down()


def test_missing_dynalite_is_a_clear_error(tmp_path):
    settings = Settings(home=tmp_path / "home", dynalite_cli=tmp_path / "nowhere" / "cli.js")
    with pytest.raises(Exception, match="dynalite is not installed"):
        LocalStack(settings).up()


def test_process_plate_runs_detached_and_is_described(container, tmp_path, rng):
    images = container.images
    plate_id = images.ingest([make_plate(tmp_path, rng)]).plate_ids[0]
    execution_id = images.inspect_plate(plate_id)
    deadline = time.monotonic() + 120
    while (described := images.describe_execution(execution_id))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "process-plate did not finish"
        time.sleep(0.2)
    assert described["status"] == "SUCCEEDED", described
    assert described["output"]["valid_images"] == 4
    assert images.get_plate(plate_id)["status"] == "validated"
    image_id = images.get_image_ids_by_plate_id(plate_id)[0]
    assert len(container.artifacts.get_artifacts(image_id)) == 2


def test_processes_creating_the_tables_at_once_all_succeed(stack_settings):
    """Search workers start together on a fresh home: each creates the missing tables; none may fail."""
    import threading

    from bioims.ids import new_id
    from bioims.runtime import local

    settings = stack_settings.with_(table_prefix=f"race{new_id()[:6]}-")
    errors: list[BaseException] = []

    def start() -> None:
        try:
            local(settings)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
