"""The SDK: clients mirror the services, and every transport returns the same results and raises the same
domain errors as calling the service itself. HTTP against a real server: tests/integration/test_http_api.py.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bioims.api.chalice_app import create_app
from bioims.contract import LAMBDA_SERVICES, SERVICES
from bioims.client import (
    CLIENTS,
    SearchClient,
    ArtifactClient,
    HttpTransport,
    InProcessTransport,
    LambdaTransport,
    ServiceClient,
    TagsClient,
    connect,
)
from bioims.errors import BioimsError, Conflict, InvalidInput, NotFound
from bioims.runtime import Container
from bioims.services.image_management import ImageManagementService
from tests.fakes import FakeLambda
from tests.unit.test_api import plate, plate_record, services  # noqa: F401 - fixtures

Call = tuple[str, str, dict[str, Any]]


def lambda_clients(services: Container) -> tuple[dict[str, ServiceClient], FakeLambda]:  # noqa: F811 - pytest fixtures (imported above)
    """Clients over Lambda invocations of each service app's ``invoke`` function."""
    fake = FakeLambda({f"bioims-{name}-dev-invoke": create_app(name, lambda: services).handler_map["invoke"]
                       for name in LAMBDA_SERVICES})
    return {name: connect(name, function_name=f"bioims-{name}-dev-invoke", lambda_client=fake)
            for name in LAMBDA_SERVICES}, fake


def read_calls(plate: dict[str, Any]) -> list[Call]:  # noqa: F811 - pytest fixtures (imported above)
    """Reads over every service whose results depend only on the stored state."""
    plate_id, image_id = plate["plate_id"], plate["images"]["B02"]
    return [
        ("artifact", "get_all", {}),
        ("artifact", "get_parameter", {"parameter": "thumbnail-widths"}),
        ("artifact", "get_history", {"parameter": "thumbnail-widths"}),
        ("artifact", "get_artifacts", {"context_id": image_id}),
        ("artifact", "get_artifacts", {"context_id": image_id, "train_id": "origin"}),
        ("artifact", "get_train_artifacts", {"train_id": "origin"}),
        ("tags", "get_all_tags", {}),
        ("tags", "get_all_tags", {"type": "compound"}),
        ("tags", "get_tag_by_value", {"value": "moa:Protein degradation"}),
        ("tags", "get_tag_by_id", {"tag_id": 1}),
        ("tags", "list_categories", {}),
        ("tags", "list_labels", {"category": "moa"}),
        ("tags", "get_index", {"category": "moa", "label": "DMSO"}),
        ("tags", "get_images_by_tag", {"value": "plate:Week1_22123"}),
        ("tags", "get_image_tags", {"image_id": image_id}),
        ("image-management", "list_plates", {}),
        ("image-management", "get_plate", {"plate": "Week1_22123"}),
        ("image-management", "get_images_by_plate_id", {"plate_id": plate_id}),
        ("image-management", "get_image_ids_by_plate_id", {"plate_id": plate_id}),
        ("image-management", "get_wells_by_plate_id", {"plate_id": plate_id}),
        ("image-management", "get_images_by_plate_and_well_id", {"plate_id": plate_id, "well_id": "C03"}),
        ("image-management", "get_plate_image_status", {"plate_id": plate_id}),
        ("image-management", "get_plate_message_id", {"plate_id": plate_id}),
        ("image-management", "get_image_info", {"image_id": image_id}),
        ("image-management", "get_image_tags", {"image_id": image_id}),
        ("image-management", "list_compatible_plates", {"width": 20, "height": 16, "depth": 1, "channels": 2}),
    ]


def assert_same_as_services(clients: Mapping[str, ServiceClient], services: Container, plate: dict[str, Any],  # noqa: F811 - pytest fixtures (imported above)
                            name: str) -> None:
    """Reads, writes and errors through ``clients`` equal those of the services themselves; ``name``
    keeps this run's writes apart from other runs on the same state."""
    services.artifacts.set_parameter("thumbnail-widths", [100, 1000])
    services.artifacts.create_artifact(plate["images"]["B02"], "s3://bucket/thumb.png", type="thumbnail-100")
    for service, function, kwargs in read_calls(plate):
        expected = getattr(services.service(service), function)(**kwargs)
        assert getattr(clients[service], function)(**kwargs) == expected, (service, function)

    artifact, tags, images = clients["artifact"], clients["tags"], clients["image-management"]
    image_id = plate["images"]["B02"]
    # writes: results as the service returns them
    assert artifact.set_parameter(f"p-{name}", {"a": [1, 2.5, None, "x"]}) \
        == {"parameter": f"p-{name}", "version": 1, "value": {"a": [1, 2.5, None, "x"]}, "deleted": False}
    message_id = artifact.create_message("one")
    assert artifact.add_message(message_id, "two")["message_id"] == message_id
    assert [m["message"] for m in artifact.list_messages(message_id)] == ["one", "two"]
    assert artifact.delete_message(message_id) == {"deleted": 2}
    created = tags.create_tag(f"note:{name}")
    assert created == services.tags.get_tag_by_value(f"note:{name}") and created["type"] == "note"
    assert tags.tag_images({image_id: [f"note:{name}"]}, plate_id=plate["plate_id"]) == 1
    assert tags.ensure_labels("moa", ["DMSO", "Protein degradation"]) == {"DMSO": 0, "Protein degradation": 1}
    assert tags.create_label("moa", f"new-{name}") == services.tags.get_index("moa", f"new-{name}")
    result = images.create_image_train_result(image_id, f"train-{name}", embedding=[0.5, -1.0], cell_count=2)
    assert result == services.images.get_image_info(image_id, f"train-{name}")
    assert result["embedding"] == [0.5, -1.0]
    assert images.inspect_image(image_id, force=True) == services.images.inspect_image(image_id, force=True)
    assert images.validate_plate(plate["plate_id"]) == services.images.validate_plate(plate["plate_id"])

    # errors: the same class and message as the service raises
    for call, error in [
        (lambda: tags.get_tag_by_value("nope"), NotFound("no tag 'nope'")),
        (lambda: tags.create_category("moa"), Conflict("label category 'moa' already exists")),
        (lambda: artifact.set_parameter("x", None), InvalidInput("invalid arguments for setParameter: value: Value error, must not be null (delete the parameter instead)")),
        (lambda: tags.get_tag_by_id("two"),
         InvalidInput("invalid arguments for getTagById: tag_id: Input should be a valid integer, unable to parse string as an integer")),
        (lambda: images.get_image_info(image_id, "no-such-train"),
         NotFound(f"no image {image_id!r} for train 'no-such-train'")),
    ]:
        with pytest.raises(BioimsError) as raised:
            call()
        assert (type(raised.value), raised.value.message) == (type(error), error.message)


@pytest.mark.parametrize("transport", ["in-process", "lambda"])
def test_transports_give_the_services_results(services: Container, plate: dict[str, Any],  # noqa: F811
                                              transport: str) -> None:
    clients = ({name: connect(name, container=services) for name in LAMBDA_SERVICES} if transport == "in-process"
               else lambda_clients(services)[0])
    assert_same_as_services(clients, services, plate, transport)


def test_lambda_events_use_the_seed_protocol(services: Container, plate: dict[str, Any]) -> None:  # noqa: F811
    clients, fake = lambda_clients(services)
    clients["image-management"].get_image_info(plate["images"]["B02"], train_id="origin")
    clients["artifact"].get_artifacts("ctx", train_id="t1")
    assert fake.events == [
        {"method": "getImageInfo", "imageId": plate["images"]["B02"], "trainId": "origin"},
        {"method": "getArtifacts", "contextId": "ctx", "trainId": "t1"},
    ]


def test_lambda_failures_map_to_domain_errors() -> None:
    failures = {"invalid": InvalidInput("bad"), "base": BioimsError("odd"), "missing": KeyError("table")}

    def failing(event: Any, context: Any) -> Any:
        raise failures[event["parameter"]]

    client = ArtifactClient(LambdaTransport("f", FakeLambda({"f": failing})))
    with pytest.raises(InvalidInput, match="^bad$"):
        client.get_parameter("invalid")
    for parameter, message in (("base", "odd"),
                               ("missing", "the artifact service's function f failed: KeyError: 'table'")):
        with pytest.raises(BioimsError) as raised:
            client.get_parameter(parameter)
        assert (type(raised.value), raised.value.message, raised.value.status) == (BioimsError, message, 500)


def test_clients_mirror_the_contract() -> None:
    """A client method per operation, with the request's fields as parameters (the service method's
    parameters: tests/unit/test_contract.py) and the operation's summary as its docstring."""
    assert set(CLIENTS) == set(SERVICES)
    for service, client_class in CLIENTS.items():
        assert client_class.service == service
        for op in SERVICES[service].operations:
            method = getattr(client_class, op.function)
            assert method.__doc__.startswith(op.summary) and op.route in method.__doc__
            assert list(inspect.signature(method).parameters)[1:] == list(op.request.model_fields)
    assert "_new" not in inspect.signature(ArtifactClient.add_message).parameters


def test_client_calls_are_checked_like_python_calls(services: Container) -> None:  # noqa: F811
    tags = TagsClient(InProcessTransport(services))
    with pytest.raises(TypeError, match="get_tag_by_value\\(\\): missing a required argument: 'value'"):
        tags.get_tag_by_value()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="too many positional arguments"):
        tags.tag_images({}, "p1", "p2")


def test_clients_stand_in_for_the_ports(services: Container, tmp_path: Path,  # noqa: F811
                                        rng: np.random.Generator) -> None:
    """ImageManagementService works with the tags and artifact services reached by Lambda."""
    clients, fake = lambda_clients(services)
    remote = ImageManagementService(services.tables["image-management"], services.objects, services.keys,
                                    clients["tags"], clients["artifact"], services.training, services.runner,
                                    roots=services.roots)
    summary = remote.ingest([plate_record(tmp_path / "plates", rng)])
    plate_id = summary.plate_ids[0]
    assert {e["method"] for e in fake.events} == {"tagImages", "ensureLabels", "createMessage"}
    image_id = remote.get_image_ids_by_plate_id(plate_id)[0]
    assert "plate:Week1_22123" in {t["value"] for t in services.tags.get_image_tags(image_id)}
    assert services.tags.list_labels("moa")[0]["label"] == "DMSO"
    assert "registered plate Week1_22123" in services.artifacts.get_message(remote.get_plate_message_id(plate_id))[
        "message"]
    assert [t["value"] for t in remote.update_image_tags(image_id, ["compound:x"])] == ["compound:x"]


def test_connect_needs_exactly_one_way(services: Container) -> None:  # noqa: F811
    assert isinstance(connect("tags", container=services).transport, InProcessTransport)
    http = connect("artifact", url="http://127.0.0.1:8700/artifact/", timeout=5)
    assert isinstance(http, ArtifactClient) and isinstance(http.transport, HttpTransport)
    assert http.transport.base_url == "http://127.0.0.1:8700/artifact" and http.transport.timeout == 5
    with pytest.raises(InvalidInput, match="exactly one of url, function_name or container"):
        connect("tags")
    with pytest.raises(InvalidInput, match="exactly one of"):
        connect("tags", url="http://x", container=services)
    assert isinstance(connect("search", url="http://x/search"), SearchClient)
    with pytest.raises(InvalidInput, match="unknown service 'nope'"):
        connect("nope", url="http://x")


class StubResponse:
    def __init__(self, status_code: int, text: str) -> None:
        self.status_code, self.text = status_code, text

    def __enter__(self) -> StubResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class StubSession:
    """Answers every request with one response; records the requests."""

    def __init__(self, response: StubResponse) -> None:
        self.response = response
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, url: str, **options: Any) -> StubResponse:
        self.requests.append((method, url, options))
        return self.response


def test_http_transport_builds_requests_and_maps_errors() -> None:
    session = StubSession(StubResponse(200, '{"index": 4}'))
    tags = TagsClient(HttpTransport("http://api/tags/", session=session, timeout=3))  # type: ignore[arg-type]
    assert tags.get_index("moa", "Actin disruptors/x") == 4
    assert tags.create_label("moa", "DMSO", description=None) == 4
    assert session.requests == [
        ("GET", "http://api/tags/categories/moa/labels/Actin%20disruptors%2Fx/index", {"params": {}, "timeout": 3}),
        ("POST", "http://api/tags/categories/moa/labels", {"data": b'{"label": "DMSO", "description": null}',
                                                           "headers": {"Content-Type": "application/json"},
                                                           "timeout": 3}),
    ]
    session.response = StubResponse(404, '{"error": {"code": "NotFound", "message": "no tag \'x\'"}}')
    with pytest.raises(NotFound, match="no tag 'x'"):
        tags.get_tag_by_value("x")
    session.response = StubResponse(502, "<html>Bad gateway</html>")
    with pytest.raises(BioimsError, match="GET http://api/tags/tags answered 502: <html>Bad gateway"):
        tags.get_all_tags(type="moa")
    assert session.requests[-1][2]["params"] == {"type": "moa"}
