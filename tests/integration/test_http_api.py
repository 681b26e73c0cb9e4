"""The local HTTP API (`bioims serve`): a real waitress server on 127.0.0.1 over the session's dynalite,
reached with the SDK's HTTP transport and with plain requests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from bioims.contract import LAMBDA_SERVICES, MAX_BODY_BYTES
from bioims.client import ImageManagementClient, connect
from bioims.runtime import Container
from tests.unit.test_api import SHAPE, ingest_plate
from tests.integration.conftest import running_server
from tests.unit.test_client import assert_same_as_services


@pytest.fixture
def server(container: Container) -> Iterator[str]:
    """Every service's API on a free port of 127.0.0.1, in a background thread; yields the root URL."""
    with running_server(container) as url:
        yield url


def test_http_clients_give_the_services_results(server: str, container: Container, tmp_path: Path,
                                                rng: np.random.Generator) -> None:
    plate = ingest_plate(container, tmp_path / "plates", rng)
    clients = {name: connect(name, url=f"{server}/{name}") for name in LAMBDA_SERVICES}
    assert_same_as_services(clients, container, plate, "http")
    tags = clients["tags"]
    tags.create_tag("odd/tag: 50% & more")  # '/', '%' and '&' travel percent-encoded in the path
    assert tags.get_tag_by_value("odd/tag: 50% & more") == container.tags.get_tag_by_value("odd/tag: 50% & more")


def test_one_address_one_prefix_per_service(server: str) -> None:
    assert requests.get(f"{server}/health", timeout=5).json() == {
        "status": "ok", "services": ["artifact", "embedding", "image-management", "search", "tags", "training"]}
    for method, path, status, code, message in [
        ("GET", "/nowhere/searches/1", 404, "NotFound", "no service at /nowhere; services: /artifact, "),
        ("GET", "/search/searches/1", 404, "NotFound", "no search '1'"),
        ("GET", "/tags/no/such/route", 404, "NotFound", "no route GET /tags/no/such/route"),
        ("GET", "/tags", 404, "NotFound", "no route GET /tags"),
        ("DELETE", "/tags/tags", 405, "MethodNotAllowedError", "Unsupported method: DELETE"),
        ("GET", "/artifact/parameters/nope", 404, "NotFound", "configuration parameter 'nope' is not set"),
        ("GET", "/tags/tags/x", 400, "InvalidInput", "invalid arguments for getTagById: tag_id: Input should be a valid integer"),
    ]:
        response = requests.request(method, server + path, timeout=5)
        assert response.status_code == status, path
        assert response.headers["Content-Type"] == "application/json"
        document = response.json()["error"]
        assert document["code"] == code and document["message"].startswith(message), (path, document)


def test_request_bodies_are_checked(server: str) -> None:
    url = f"{server}/tags/tags"
    response = requests.post(url, data=b'{"value": "a:', headers={"Content-Type": "application/json"}, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("request body is not valid JSON: ")
    response = requests.post(url, data=b"x" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"},
                             timeout=30)
    assert response.status_code == 413 and response.json()["error"]["code"] == "PayloadTooLarge"
    response = requests.post(url, json={"value": "a:b"}, timeout=5)
    assert response.status_code == 201 and response.json() == {"tag_id": 1, "value": "a:b", "type": "a"}


def test_concurrent_requests_do_not_mix(server: str) -> None:
    """Server worker threads each answer with their own Chalice apps: no request sees another's
    arguments (a Chalice app keeps the request it handles on itself), over many overlapping reads."""
    tags = connect("tags", url=f"{server}/tags")
    values = [f"compound:c{i}" for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(tags.create_tag, values))
        found = list(pool.map(tags.get_tag_by_value, values * 10))
    assert [t["value"] for t in created] == values and found == created * 10
    assert sorted(t["tag_id"] for t in created) == list(range(1, 25))


def test_process_plate_runs_the_workflow(server: str, container: Container, tmp_path: Path,
                                         rng: np.random.Generator) -> None:
    """POST .../inspect starts the local runner's detached execution; GET /executions/{id} follows it."""
    plate = ingest_plate(container, tmp_path / "plates", rng)
    images = connect("image-management", url=f"{server}/image-management")
    assert isinstance(images, ImageManagementClient)
    response = requests.post(f"{server}/image-management/plates/{plate['plate_id']}/inspect", timeout=5)
    assert response.status_code == 202
    execution_id = response.json()["execution_id"]
    deadline = time.monotonic() + 120
    while (execution := images.describe_execution(execution_id))["status"] == "RUNNING":
        assert time.monotonic() < deadline, execution
        time.sleep(0.25)
    assert execution["status"] == "SUCCEEDED", json.dumps(execution)
    assert execution["output"]["valid_images"] == 2 and execution["output"]["thumbnails"] == 4
    height, width = SHAPE
    compatible = images.list_compatible_plates(width, height, 1, 2)
    assert [p["plate_id"] for p in compatible] == [plate["plate_id"]]
