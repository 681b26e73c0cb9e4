"""The API layer: the contract's operations, the Chalice routes of every operation (through
``chalice.test.Client``), the ``{"method": ...}`` Lambda handler, the error mapping, and the ASGI app of
``bioims serve`` (through Starlette's test client)."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import tifffile
from chalice.test import Client

from starlette.testclient import TestClient

from bioims.api.chalice_app import create_app, invoke_handler, lazy_container
from bioims.api.http import local_app
from bioims.contract import LAMBDA_SERVICES, MAX_BODY_BYTES, SERVICES, validate
from bioims.contract import service as contract_service
from bioims.contract import dispatch as dispatch_op
from bioims.services.artifact import ArtifactService
from bioims.services.embedding import EmbeddingService
from bioims.services.image_management import ImageManagementService
from bioims.services.tags import TagsService
from bioims.services.training import TrainingService
from bioims.datasets.records import FieldRecord, PlateRecord
from bioims.errors import ERRORS_BY_CODE, BioimsError, Conflict, InvalidInput, NotFound
from bioims.runtime import Container, build
from bioims.store.objects import path_to_uri
from tests.conftest import REPO

SEED_OPERATIONS = {
    "artifact": {
        "setParameter", "getParameter", "getAll", "getHistory", "deleteParameter", "getDefaultTrainId",
        "setDefaultTrainId", "createMessage", "addMessage", "getMessage", "listMessage", "deleteMessage",
        "createArtifact", "getArtifacts", "deleteArtifacts", "addAnnotation"},
    "tags": {
        "createCategory", "updateCategoryDescription", "deleteCategory", "listCategories", "createLabel",
        "updateLabelDescription", "updateLabel", "listLabels", "getIndex", "createTag", "getTagByValue", "getTagById", "getAllTags"},
    "image-management": {
        "populateSourcePlate", "uploadSourcePlate", "inspectPlate", "processPlate", "describeExecution", "getImageInfo",
        "getImagesByPlateId", "getImagesByPlateIdAndTrainId", "getImageIdsByPlateId", "getWellsByPlateId",
        "getImagesByPlateAndWellId", "getPlateImageStatus", "createPlateMessageId", "getPlateMessageId",
        "validatePlate", "listCompatiblePlates", "createImageTrainResult", "getImageTags", "updateImageTags"},
}
"""The seed's Lambda methods of these services (MISSION.md, last table)."""

INTERNAL_METHODS = {"image-management": {"ingest", "plate_id_for", "thumbnail_widths"},
                    "training": {"spec", "run_training"},
                    "embedding": {"model", "plates", "profiles", "evaluate", "compute_plate_embedding"}}
"""Public service methods that are deliberately not operations (Python objects in or out, or helpers)."""

OPERATIONS = {name: SERVICES[name].operations for name in LAMBDA_SERVICES}
SERVICE_CLASSES = {"artifact": ArtifactService, "tags": TagsService, "image-management": ImageManagementService,
                   "training": TrainingService, "embedding": EmbeddingService}
CHANNELS = ("DAPI", "Tubulin")


def dispatch(target: Any, service_name: str, method: str, args: Any) -> Any:
    """Call an operation by its service and method name, as the Lambda handler does."""
    return dispatch_op(target, contract_service(service_name).find(method), args)

SHAPE = (16, 20)  # (height, width)


class RecordingRunner:
    """RunnerPort double: records the workflows started (nothing runs)."""

    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}

    def start(self, workflow: str, params: dict[str, Any]) -> str:
        execution_id = f"execution-{len(self.executions) + 1}"
        self.executions[execution_id] = {"execution_id": execution_id, "workflow": workflow,
                                         "params": params, "status": "RUNNING"}
        return execution_id

    def describe(self, execution_id: str) -> dict[str, Any]:
        if execution_id not in self.executions:
            raise NotFound(f"no execution {execution_id!r}")
        return self.executions[execution_id]


@pytest.fixture
def services(container: Container) -> Container:
    """The moto-backed container, with a runner that records workflows instead of starting processes."""
    return build(container.settings, container.database, container.objects, RecordingRunner())


def write_field(folder: Path, name: str, rng: np.random.Generator) -> dict[str, str]:
    uris = {}
    for channel in CHANNELS:
        path = folder / f"{name}_{channel}.tif"
        tifffile.imwrite(path, rng.integers(0, 4000, SHAPE, dtype=np.uint16))
        uris[channel] = path_to_uri(path)
    return uris


def plate_record(folder: Path, rng: np.random.Generator, source_id: str = "Week1_22123") -> PlateRecord:
    """A plate of two wells (B02: ALLN, C03: DMSO), one field of two tiny TIFF channels each."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = (
        FieldRecord("B02", "s1", write_field(folder, f"{source_id}_B02_s1", rng),
                    {"compound": "ALLN", "moa": "Protein degradation", "concentration": 3.0}),
        FieldRecord("C03", "s1", write_field(folder, f"{source_id}_C03_s1", rng), {"compound": "DMSO", "moa": "DMSO"}),
    )
    return PlateRecord(source_id, CHANNELS, fields, batch="Week1")


def ingest_plate(container: Container, folder: Path, rng: np.random.Generator) -> dict[str, Any]:
    """Ingest :func:`plate_record`; returns ``{"plate_id", "images": {well: image_id}}``."""
    plate_id = container.images.ingest([plate_record(folder, rng)]).plate_ids[0]
    images = {row["well_source_id"]: row["image_id"] for row in container.images.get_images_by_plate_id(plate_id)}
    return {"plate_id": plate_id, "images": images}


@pytest.fixture
def plate(services: Container, tmp_path: Path, rng: np.random.Generator) -> dict[str, Any]:
    return ingest_plate(services, tmp_path / "plates", rng)


class Api:
    """Requests to one service's Chalice app: ``api("GET", "/tags")`` -> ``(status, JSON document)``."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __call__(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        response = self.client.http.request(method, path, headers={"Content-Type": "application/json"}, body=data)
        assert response.headers["Content-Type"] == "application/json"
        return response.status_code, json.loads(response.body)


@pytest.fixture
def api(services: Container) -> Iterator[Callable[[str], Api]]:
    with ExitStack() as stack:
        clients = {name: Api(stack.enter_context(Client(create_app(name, lambda: services))))
                   for name in OPERATIONS}
        yield clients.__getitem__


def error(code: str, message: str | None = None) -> Callable[[Any], bool]:
    """Check an error document: its code and (optionally) a fragment of its message."""
    def check(document: Any) -> bool:
        return document["error"]["code"] == code and (message is None or message in document["error"]["message"])
    return check


# ================================================================= the table
def test_table_covers_every_seed_operation() -> None:
    for service, seed in SEED_OPERATIONS.items():
        assert seed <= {op.method for op in OPERATIONS[service]}, service


def test_every_public_service_method_is_an_operation() -> None:
    for service, cls in SERVICE_CLASSES.items():
        public = {name for name in vars(cls) if not name.startswith("_") and callable(getattr(cls, name))}
        exposed = [op.function for op in OPERATIONS[service]]
        assert len(exposed) == len(set(exposed))
        assert set(exposed) <= public
        assert public - set(exposed) == INTERNAL_METHODS.get(service, set()), service


def test_routes_are_unique_and_valid_for_api_gateway() -> None:
    """One operation per (method, path); API Gateway allows one variable name per path level."""
    for service, ops in OPERATIONS.items():
        assert len({op.route for op in ops}) == len(ops), service
        variables: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for op in ops:
            segments = op.path.strip("/").split("/")
            for depth, segment in enumerate(segments):
                if segment.startswith("{"):
                    variables[tuple(segments[:depth])].add(segment)
            assert {op.path_field(v) for v in op.path_variables} <= set(op.request.model_fields)
        clashes = {parent: names for parent, names in variables.items() if len(names) > 1}
        assert not clashes, (service, clashes)


def test_error_class_names_are_their_codes() -> None:
    """Lambda reports a raised error by class name; clients map that name back to the class."""
    for code, cls in ERRORS_BY_CODE.items():
        if cls is not BioimsError:  # the base class (InternalError) is rebuilt by name as well
            assert cls.__name__ == code


def test_service_apps_are_assembled_without_building_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    """services/<name>/app.py: importing builds the routes and the invoke function, and reads no settings
    (a Lambda cold start without the environment still imports)."""
    monkeypatch.delenv("BIOIMS_ARTIFACT_URI", raising=False)
    monkeypatch.setenv("BIOIMS_RUNTIME", "aws")  # building the container now would fail: no artifact URI
    for service, ops in OPERATIONS.items():
        folder = REPO / "services" / service
        spec = importlib.util.spec_from_file_location(f"app_{service.replace('-', '_')}", folder / "app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        app = module.app
        assert app.app_name == f"bioims-{service}" and "invoke" in app.handler_map
        assert {(path, verb) for path, verbs in app.routes.items() for verb in verbs} \
            == {(op.path, op.http_method) for op in ops} | {("/openapi.json", "GET")}
        config = json.loads((folder / ".chalice" / "config.json").read_text())
        assert config["app_name"] == app.app_name and config["environment_variables"]["BIOIMS_RUNTIME"] == "aws"


def test_service_readmes_document_every_operation() -> None:
    for service, ops in OPERATIONS.items():
        text = (REPO / "services" / service / "README.md").read_text()
        for op in ops:
            assert f"`{op.route}`" in text and f"`{op.method}`" in text, (service, op.method)


# ================================================================= dispatch
def test_dispatch_accepts_camel_and_snake_names(services: Container) -> None:
    artifacts = services.artifacts
    assert dispatch(artifacts, "artifact", "setParameter", {"key": "k", "value": [1]})["version"] == 1
    assert dispatch(artifacts, "artifact", "set_parameter", {"parameter": "k", "value": [2]})["version"] == 2
    assert dispatch(artifacts, "artifact", "getParameter", {"parameter": "k"}) == [2]
    message_id = dispatch(artifacts, "artifact", "createMessage", {"message": "one"})
    dispatch(artifacts, "artifact", "addMessage", {"messageId": message_id, "message": "two"})
    # the seed's name, the Python name and its camelCase are the same operation
    for name in ("listMessage", "list_messages", "listMessages"):
        messages = dispatch(artifacts, "artifact", name, {"messageId": message_id})
        assert [m["message"] for m in messages] == ["one", "two"]
    assert dispatch(services.tags, "tags", "ensureTags", {"values": ["a:1"]}) == {"a:1": 1}
    assert dispatch(services.tags, "tags", "getTagById", {"tagId": "1"})["value"] == "a:1"  # str -> int


@pytest.mark.parametrize(("method", "args", "message"), [
    ("getParameter", {"parameter": "x", "foo": 1}, "invalid arguments for getParameter: foo: unknown argument"),
    ("getParameter", {}, "invalid arguments for getParameter: parameter: Field required"),
    ("addAnnotation", {"uri": "file:///x"}, "context_id: Field required; annotation: Field required"),
    ("getParameter", {"key": "x", "parameter": "x"}, "argument 'parameter' of getParameter given twice (as 'key' and 'parameter')"),
    ("getArtifacts", {"contextId": "c", "context_id": "c"}, "argument 'context_id' of getArtifacts given twice"),
    ("addMessage", {"messageId": "m", "message": "x", "_new": True}, "_new: unknown argument"),
    ("getParameter", ["x"], "arguments of getParameter must be a JSON object"),
    ("getThings", {}, "unknown method 'getThings' for service artifact; known: createArtifact, "),
])
def test_dispatch_rejects_bad_calls(services: Container, method: str, args: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        dispatch(services.artifacts, "artifact", method, args)


def test_dispatch_converts_query_strings_for_int_and_bool(services: Container) -> None:
    op = contract_service("image-management").find("listCompatiblePlates")
    assert validate(op, {"width": "20", "height": 16, "depth": "1", "channels": "2"}) \
        == {"width": 20, "height": 16, "depth": 1, "channels": 2}
    with pytest.raises(InvalidInput, match="width: Input should be a valid integer, unable to parse string"):
        validate(op, {"width": "wide", "height": 1, "depth": 1, "channels": 1})
    inspect = contract_service("image-management").find("inspectImage")
    assert validate(inspect, {"imageId": "i", "force": "true"})["force"] is True
    with pytest.raises(InvalidInput, match="force: Input should be a valid boolean"):
        validate(inspect, {"imageId": "i", "force": "maybe"})
    size = contract_service("artifact").find("createArtifact")  # int | None
    assert validate(size, {"contextId": "c", "uri": "s3://b/k", "size": "12"})["size"] == 12


# ================================================================= artifact routes
def test_artifact_routes(api: Callable[[str], Api]) -> None:
    call = api("artifact")
    uri = "s3://bucket/plates/p1/thumbnail-100.png"
    status, created = call("POST", "/artifacts", {"context_id": "p1", "uri": uri, "type": "thumbnail-100", "size": 9})
    assert status == 201 and created["uri"] == uri and created["train_id"] == "origin"
    call("POST", "/artifacts", {"context_id": "p1", "uri": "s3://bucket/m.onnx", "train_id": "t1"})
    assert len(call("GET", "/artifacts/p1")[1]) == 2
    status, only_t1 = call("GET", "/artifacts/p1?train_id=t1")
    assert status == 200 and [a["uri"] for a in only_t1] == ["s3://bucket/m.onnx"]
    assert [a["context_id"] for a in call("GET", "/trains/t1/artifacts")[1]] == ["p1"]
    status, annotated = call("POST", "/artifacts/p1/annotations", {"uri": uri, "annotation": "checked"})
    assert status == 200 and annotated["annotations"] == ["checked"]
    assert call("POST", "/artifacts/p1/annotations", {"uri": "s3://b/none", "annotation": "x"})[0] == 404
    assert call("DELETE", "/artifacts/p1?train_id=t1") == (200, {"deleted": 1})
    assert call("DELETE", "/artifacts/p1") == (200, {"deleted": 1})
    assert call("GET", "/artifacts/p1") == (200, [])

    # configuration
    assert call("PUT", "/parameters/thumbnail-widths", {"value": [100, 1000]})[1]["version"] == 1
    assert call("PUT", "/parameters/thumbnail-widths", {"value": [64]})[1]["version"] == 2
    assert call("GET", "/parameters/thumbnail-widths") == (200, {"value": [64]})
    assert call("GET", "/parameters") == (200, {"thumbnail-widths": [64]})
    history = call("GET", "/parameters/thumbnail-widths/history")[1]
    assert [(h["version"], h["value"]) for h in history] == [(1, [100, 1000]), (2, [64])]
    assert call("DELETE", "/parameters/thumbnail-widths")[1]["deleted"] is True
    status, document = call("GET", "/parameters/thumbnail-widths")
    assert status == 404 and error("NotFound", "'thumbnail-widths' is not set")(document)
    assert call("GET", "/default-train-id")[0] == 404
    assert call("PUT", "/default-train-id", {"train_id": "t1"})[0] == 200
    assert call("GET", "/default-train-id") == (200, {"train_id": "t1"})

    # message logs
    status, created = call("POST", "/messages", {"message": "plate registered"})
    assert status == 201 and set(created) == {"message_id"}
    message_id = created["message_id"]
    assert call("POST", f"/messages/{message_id}", {"message": "validated"})[0] == 201
    assert call("GET", f"/messages/{message_id}")[1]["message"] == "validated"
    assert [m["message"] for m in call("GET", f"/messages/{message_id}/all")[1]] == ["plate registered", "validated"]
    assert call("DELETE", f"/messages/{message_id}") == (200, {"deleted": 2})
    assert call("GET", f"/messages/{message_id}")[0] == 404
    assert call("POST", "/messages/nope", {"message": "x"})[0] == 404


# ================================================================= tags routes
def test_tag_routes(api: Callable[[str], Api]) -> None:
    call = api("tags")
    status, tag = call("POST", "/tags", {"value": "moa:Protein degradation"})
    assert status == 201 and tag == {"tag_id": 1, "value": "moa:Protein degradation", "type": "moa"}
    status, document = call("POST", "/tags", {"value": "moa:Protein degradation"})
    assert status == 409 and error("Conflict", "already exists")(document)
    assert call("POST", "/tags/ensure", {"values": ["compound:ALLN", "moa:Protein degradation", "odd/tag"]}) \
        == (200, {"compound:ALLN": 2, "moa:Protein degradation": 1, "odd/tag": 3})
    assert [t["value"] for t in call("GET", "/tags")[1]] == ["moa:Protein degradation", "compound:ALLN", "odd/tag"]
    assert [t["tag_id"] for t in call("GET", "/tags?type=compound")[1]] == [2]
    assert call("GET", "/tags/by-value/moa:Protein%20degradation")[1]["tag_id"] == 1
    assert call("GET", "/tags/by-value/" + quote("moa:Protein degradation", safe=""))[1]["tag_id"] == 1
    assert call("GET", "/tags/by-value/" + quote("odd/tag", safe=""))[1]["tag_id"] == 3  # %2F in a value
    assert call("GET", "/tags/2")[1]["value"] == "compound:ALLN"
    status, document = call("GET", "/tags/99")
    assert status == 404 and error("NotFound", "no tag with id 99")(document)
    status, document = call("GET", "/tags/two")
    assert status == 400 and error("InvalidInput", "getTagById: tag_id: Input should be a valid integer")(document)
    assert call("GET", "/tags/by-value/nope")[0] == 404

    # image tags
    assert call("POST", "/image-tags", {"assignments": {"i1": ["compound:ALLN", "plate:P1"], "i2": ["plate:P1"]},
                                        "plate_id": "p1"}) == (200, {"count": 3})
    assert [t["value"] for t in call("GET", "/images/i1/tags")[1]] == ["compound:ALLN", "plate:P1"]
    assert sorted(call("GET", "/tags/by-value/plate:P1/images")[1]) == ["i1", "i2"]
    assert [t["value"] for t in call("POST", "/images/i2/tags", {"tags": ["batch:Week1"]})[1]] \
        == ["plate:P1", "batch:Week1"]
    assert [t["value"] for t in call("POST", "/images/i2/tags/remove", {"tags": ["plate:P1"]})[1]] == ["batch:Week1"]
    assert [t["value"] for t in call("PUT", "/images/i2/tags", {"tags": ["odd/tag"]})[1]] == ["odd/tag"]
    status, document = call("PUT", "/images/i2/tags", {"tags": "odd/tag"})
    assert status == 400 and error("InvalidInput", "tags: Input should be a valid list")(document)


def test_label_routes(api: Callable[[str], Api]) -> None:
    call = api("tags")
    status, category = call("POST", "/categories", {"category": "moa", "description": "mechanism of action"})
    assert status == 201 and category["category"] == "moa"
    status, document = call("POST", "/categories", {"category": "moa"})
    assert status == 409 and error("Conflict", "label category 'moa' already exists")(document)
    assert call("PUT", "/categories/moa", {"description": "MoA"})[1]["description"] == "MoA"
    assert call("POST", "/categories/moa/labels", {"label": "Actin disruptors"}) == (201, {"index": 0})
    assert call("POST", "/categories/moa/labels", {"label": "Actin disruptors"})[0] == 409
    assert call("POST", "/categories/moa/ensure-labels", {"labels": ["DMSO", "Actin disruptors"]}) \
        == (200, {"Actin disruptors": 0, "DMSO": 1})
    assert [(row["label"], row["index"]) for row in call("GET", "/categories/moa/labels")[1]] \
        == [("Actin disruptors", 0), ("DMSO", 1)]
    label = quote("Actin disruptors")
    assert call("PUT", f"/categories/moa/labels/{label}", {"description": "e.g. cytochalasin"})[1]["description"] \
        == "e.g. cytochalasin"
    assert call("GET", f"/categories/moa/labels/{label}/index") == (200, {"index": 0})
    assert call("GET", "/categories/moa/labels/nope/index")[0] == 404
    assert [c["category"] for c in call("GET", "/categories")[1]] == ["moa"]
    assert call("DELETE", "/categories/moa") == (200, {"deleted_labels": 2})
    assert call("GET", "/categories/moa/labels")[0] == 404
    assert call("GET", "/categories") == (200, [])


# ================================================================= image-management routes
def test_plate_and_image_routes(api: Callable[[str], Api], plate: dict[str, Any]) -> None:
    call = api("image-management")
    plate_id, image_b02, image_c03 = plate["plate_id"], plate["images"]["B02"], plate["images"]["C03"]
    assert [p["plate_id"] for p in call("GET", "/plates")[1]] == [plate_id]
    assert call("GET", f"/plates/{plate_id}")[1]["source_id"] == "Week1_22123"
    assert call("GET", "/plates/Week1_22123")[1]["plate_id"] == plate_id  # by source id
    assert call("GET", "/plates/nope")[0] == 404
    assert sorted(call("GET", f"/plates/{plate_id}/image-ids")[1]) == sorted(plate["images"].values())
    assert len(call("GET", f"/plates/{plate_id}/images")[1]) == 2
    assert [w["source_id"] for w in call("GET", f"/plates/{plate_id}/wells")[1]] == ["B02", "C03"]
    assert [i["image_id"] for i in call("GET", f"/plates/{plate_id}/wells/B02/images")[1]] == [image_b02]
    assert call("GET", f"/plates/{plate_id}/wells/Z99/images")[0] == 404
    assert call("GET", f"/plates/{plate_id}/image-status")[1]["images"] == {"registered": 2}
    status, info = call("GET", f"/images/{image_b02}")
    assert status == 200 and info["metadata"]["compound"] == "ALLN" and info["channels"] == list(CHANNELS)

    # message log of the plate
    first = call("GET", f"/plates/{plate_id}/message-id")[1]["message_id"]
    status, created = call("POST", f"/plates/{plate_id}/message-id")
    assert status == 201 and created["message_id"] != first
    assert call("GET", f"/plates/{plate_id}/message-id") == (200, created)

    # inspect, validate, compatible plates, thumbnails
    inspected = call("POST", f"/images/{image_b02}/inspect")[1]
    assert inspected["status"] == "valid" and (inspected["height"], inspected["width"]) == SHAPE
    assert call("POST", f"/images/{image_b02}/inspect")[1]["skipped"] is True
    assert call("POST", f"/images/{image_b02}/inspect", {"force": True})[1].get("skipped") is None
    status, validation = call("POST", f"/plates/{plate_id}/validate")
    assert status == 200 and not validation["valid"] and "1 images not inspected yet" in validation["problems"]
    call("POST", f"/images/{image_c03}/inspect")
    assert call("POST", f"/plates/{plate_id}/validate")[1]["valid"] is True
    dims = f"width={SHAPE[1]}&height={SHAPE[0]}&depth=1&channels={len(CHANNELS)}"
    assert [p["plate_id"] for p in call("GET", f"/compatible-plates?{dims}")[1]] == [plate_id]
    assert call("GET", "/compatible-plates?width=1280&height=1024&depth=1&channels=3") == (200, [])
    status, document = call("GET", "/compatible-plates?width=wide&height=16&depth=1&channels=2")
    assert status == 400 and error("InvalidInput", "listCompatiblePlates: width: Input should be a valid integer")(
        document)
    status, document = call("GET", "/compatible-plates?width=20")
    assert status == 400 and error("InvalidInput", "height: Field required; depth: Field required; channels: Field required")(document)
    status, made = call("POST", f"/images/{image_b02}/thumbnails", {"widths": [8]})
    assert status == 200 and made["written"] == 1 and list(made["thumbnails"]) == ["8"]
    assert Path(made["thumbnails"]["8"].removeprefix("file://")).read_bytes().startswith(b"\x89PNG")

    # train results
    status, result = call("PUT", f"/images/{image_b02}/train-results/train-1",
                          {"embedding": [0.5, 0.25], "cell_count": 3})
    assert status == 200 and result["embedding"] == [0.5, 0.25] and result["cell_count"] == 3
    assert call("GET", f"/images/{image_b02}?train_id=train-1")[1]["embedding"] == [0.5, 0.25]
    assert call("GET", f"/images/{image_c03}?train_id=train-1")[0] == 404
    assert [i["image_id"] for i in call("GET", f"/plates/{plate_id}/trains/train-1/images")[1]] == [image_b02]

    # tags of an image
    values = {t["value"] for t in call("GET", f"/images/{image_b02}/tags")[1]}
    assert {"compound:ALLN", "moa:Protein degradation", "plate:Week1_22123"} <= values
    assert [t["value"] for t in call("PUT", f"/images/{image_b02}/tags", {"tags": ["compound:ALLN"]})[1]] \
        == ["compound:ALLN"]
    assert call("GET", "/images/nope/tags")[0] == 404


def test_populate_upload_and_process_routes(api: Callable[[str], Api], services: Container, tmp_path: Path,
                                            rng: np.random.Generator) -> None:
    call = api("image-management")

    def manifest(plate_source_id: str) -> dict[str, Any]:
        uris = write_field(tmp_path, plate_source_id, rng)
        return {"plateSourceId": plate_source_id, "images": [{
            "wellId": "B02", "imageSourceId": "B02_s1", "trainLabel": "DMSO", "compound": "DMSO",
            "channelKeys": [{"name": ch, "keysuffix": uri.removeprefix("file://")} for ch, uri in uris.items()]}]}

    status, populated = call("POST", "/plates", {"manifest": manifest("Week2_1")})
    assert status == 201 and populated["images"] == 1 and populated["invalid_images"] == 0
    status, document = call("POST", "/plates", {"manifest": manifest("Week2_1")})
    assert status == 409 and error("Conflict", "already registered")(document)
    status, document = call("POST", "/plates", {"manifest": {"plateSourceId": "x"}})
    assert status == 400 and error("InvalidInput", "'images' must be a non-empty list")(document)

    status, uploaded = call("POST", "/uploads", {"manifest": json.dumps(manifest("Week2_2"))})
    assert status == 202 and set(uploaded) == {"plate_id", "images", "invalid_images", "execution_id"}
    status, started = call("POST", f"/plates/{populated['plate_id']}/inspect")
    assert status == 202 and set(started) == {"execution_id"}
    status, execution = call("GET", f"/executions/{started['execution_id']}")
    assert status == 200 and execution["params"] == {"plate_id": populated["plate_id"]}
    assert execution["workflow"] == "process-plate"
    assert call("GET", "/executions/nope")[0] == 404
    assert call("POST", "/plates/nope/inspect")[0] == 404
    # the seed's processPlate: one plate's preprocessing under a spec (the seed's embeddingName)
    status, started = call("POST", f"/plates/{populated['plate_id']}/process", {"embeddingName": "tiny"})
    assert status == 202
    status, execution = call("GET", f"/executions/{started['execution_id']}")
    assert execution["workflow"] == "preprocess"
    assert execution["params"] == {"spec": "tiny", "plate_ids": [populated["plate_id"]]}
    assert call("POST", "/plates/nope/process", {"spec": "tiny"})[0] == 404
    assert call("POST", f"/plates/{populated['plate_id']}/process")[0] == 400


# ================================================================= request errors
def test_request_errors_are_json(api: Callable[[str], Api]) -> None:
    call = api("tags")
    status, document = call("POST", "/tags", raw=b'{"value": ')
    assert status == 400 and error("InvalidInput", "request body is not valid JSON: Expecting value")(document)
    status, document = call("POST", "/tags", raw=b"\xff\xfe")
    assert status == 400 and error("InvalidInput", "request body is not valid JSON")(document)
    status, document = call("POST", "/tags", ["compound:x"])
    assert status == 400 and error("InvalidInput", "request body must be a JSON object, got list")(document)
    status, document = call("POST", "/tags", {})
    assert status == 400 and error("InvalidInput", "invalid arguments for createTag: value: Field required")(document)
    status, document = call("POST", "/tags", {"value": "a:b", "colour": "red"})
    assert status == 400 and error("InvalidInput", "colour: unknown argument")(document)
    status, document = call("GET", "/tags?type=a&type=b")
    assert status == 400 and error("InvalidInput", "query parameter 'type' is given more than once")(document)
    status, document = call("POST", "/images/i1/tags", {"image_id": "i2", "tags": []})
    assert status == 400 and error("InvalidInput", "argument 'image_id' given twice (in the path and in the body)")(document)
    status, document = call("PUT", "/images/i1/tags", {"imageId": "i2", "tags": []})
    assert status == 400 and error("InvalidInput", "of setImageTags given twice (as 'image_id' and 'imageId')")(document)
    big = json.dumps({"value": "x" * MAX_BODY_BYTES}).encode()
    status, document = call("POST", "/tags", raw=big)
    assert status == 413 and error("PayloadTooLarge", f"exceeds the limit of {MAX_BODY_BYTES} bytes")(document)
    status, document = call("DELETE", "/tags")
    assert status == 405 and error("MethodNotAllowedError", "Unsupported method: DELETE")(document)
    response = api("tags").client.http.request("DELETE", "/tags", headers={}, body=b"")
    assert response.headers["Allow"] == "POST, GET"
    status, document = call("POST", "/tags", raw=b"[" * 100_000)
    assert status == 400 and error("InvalidInput", "nested deeper than 32 levels")(document)
    status, document = call("GET", "/tags/" + "9" * 3000)
    assert status == 400 and error("InvalidInput", "tag_id: ")(document)


def test_unexpected_errors_are_500_without_details() -> None:
    class Exploding:
        def get_all_tags(self, type: str | None = None) -> list[dict[str, Any]]:
            raise RuntimeError("secret: /var/task/credentials")

    class ExplodingContainer:
        def service(self, name: str) -> Any:
            return Exploding()

    with Client(create_app("tags", lambda: ExplodingContainer())) as client:  # type: ignore[arg-type, return-value]
        response = client.http.get("/tags")
    assert response.status_code == 500
    assert json.loads(response.body) == {"error": {"code": "InternalError",
                                                   "message": "internal error (see the service log)"}}


# ================================================================= the Lambda protocol
def test_invoke_handler_answers_seed_events(services: Container, plate: dict[str, Any]) -> None:
    artifact = invoke_handler("artifact", lambda: services)
    assert artifact({"method": "setParameter", "key": "batch-size", "value": 64}, None)["version"] == 1
    assert artifact({"method": "getParameter", "key": "batch-size"}, None) == 64
    assert artifact({"method": "getAll"}, None) == {"batch-size": 64}
    message_id = artifact({"method": "createMessage", "message": "hello"}, None)
    assert isinstance(message_id, str)
    artifact({"method": "addMessage", "messageId": message_id, "message": "again"}, None)
    assert [m["message"] for m in artifact({"method": "listMessage", "messageId": message_id}, None)] \
        == ["hello", "again"]
    artifact({"method": "createArtifact", "contextId": "p1", "uri": "s3://b/k", "trainId": "t1"}, None)
    assert [a["uri"] for a in artifact({"method": "getArtifacts", "contextId": "p1", "trainId": "t1"}, None)] \
        == ["s3://b/k"]

    tags = invoke_handler("tags", lambda: services)
    assert tags({"method": "createCategory", "category": "week", "description": "batch"}, None)["category"] == "week"
    assert tags({"method": "getIndex", "category": "moa", "label": "DMSO"}, None) == 0
    assert tags({"method": "getTagByValue", "value": "compound:ALLN"}, None)["type"] == "compound"

    images = invoke_handler("image-management", lambda: services)
    image_id = plate["images"]["B02"]
    assert images({"method": "getImageInfo", "imageId": image_id, "trainId": "origin"}, None)["image_id"] == image_id
    assert len(images({"method": "getImagesByPlateId", "plateId": plate["plate_id"]}, None)) == 2
    assert images({"method": "listCompatiblePlates", "width": "20", "height": 16, "depth": 1, "channels": 2},
                  None) == []
    assert images({"method": "getPlate", "plateId": "Week1_22123"}, None)["plate_id"] == plate["plate_id"]


@pytest.mark.parametrize(("event", "error_type", "message"), [
    ({"method": "getParameter", "parameter": "unset"}, NotFound, "configuration parameter 'unset' is not set"),
    ({"method": "getParameter"}, InvalidInput, "invalid arguments for getParameter: parameter: Field required"),
    ({"method": "getParameter", "parameter": "x", "foo": 1}, InvalidInput, "foo: unknown argument"),
    ({"method": "noSuchMethod"}, InvalidInput, "unknown method 'noSuchMethod'"),
    ({"parameter": "x"}, InvalidInput, 'the event needs a "method"'),
    (["getAll"], InvalidInput, "the event must be a JSON object"),
    ({"method": "deleteMessage", "messageId": "nope"}, NotFound, "no message log 'nope'"),
])
def test_invoke_handler_raises_domain_errors(services: Container, event: Any, error_type: type,
                                             message: str) -> None:
    with pytest.raises(error_type, match=message) as raised:
        invoke_handler("artifact", lambda: services)(event, None)
    assert type(raised.value) is error_type  # Lambda's errorType is the class name


def test_app_registers_the_invoke_lambda_function(services: Container) -> None:
    tags = create_app("tags", lambda: services)
    with Client(tags) as client:
        assert client.lambda_.invoke("invoke", {"method": "createTag", "value": "plate:P1"}).payload["tag_id"] == 1
        with pytest.raises(Conflict):
            client.lambda_.invoke("invoke", {"method": "createTag", "value": "plate:P1"})


def test_lazy_container_builds_once_on_first_use(services: Container) -> None:
    calls: list[int] = []

    def factory() -> Container:
        calls.append(1)
        return services

    get = lazy_container(factory)
    app = create_app("artifact", get)
    assert calls == []  # assembling the app builds nothing
    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with Client(app) as client:
        assert client.http.get("/parameters").status_code == 200
    assert calls == [1] and get() is services


# ================================================================= the ASGI app of `bioims serve`
def test_local_app_dispatches_by_prefix(services: Container) -> None:
    client = TestClient(local_app(services), base_url="http://127.0.0.1:8700")

    def request(method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, Any]:
        response = client.request(method, path, content=body,
                                  headers={"Content-Type": "application/json", **headers} if body else headers)
        assert response.headers["Content-Type"] == "application/json"
        return response.status_code, response.json()

    assert request("GET", "/health") == (200, {"status": "ok", "services": ["artifact", "embedding",
                                                                          "image-management", "search", "tags",
                                                                          "training"]})
    status, tag = request("POST", "/tags/tags", b'{"value": "moa:Protein degradation"}')
    assert status == 201 and tag["tag_id"] == 1
    assert request("GET", "/tags/tags/by-value/moa:Protein%20degradation") == (200, tag)
    assert request("GET", "/tags/tags?type=moa") == (200, [tag])
    status, document = request("GET", "/nosuch/specs")
    assert status == 404 and error("NotFound")(document)
    status, document = request("GET", "/artifact/nothing")
    assert status == 404 and error("NotFound", "no route GET /artifact/nothing")(document)
    status, document = request("POST", "/tags/tags", b"x", **{"Content-Length": str(64 * 1024 * 1024 + 1)})
    assert status == 413 and error("PayloadTooLarge")(document)
    for name in [*LAMBDA_SERVICES, "search"]:
        status, document = request("GET", f"/{name}/openapi.json")
        assert status == 200 and document["openapi"] == "3.1.0" and document["paths"], name


def test_local_app_is_local(services: Container) -> None:
    """DNS rebinding (a foreign Host), cross-site simple POSTs (text/plain, forms) and CORS are refused."""
    client = TestClient(local_app(services, allowed_hosts=["bioims.lab"]), base_url="http://127.0.0.1:8700")
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"Host": "localhost:8700"}).status_code == 200
    assert client.get("/health", headers={"Host": "bioims.lab"}).status_code == 200
    assert client.get("/health", headers={"Host": "evil.example:8700"}).status_code == 400
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        for path in ("/tags/tags", "/search/searches"):
            response = client.post(path, content=b'{"value": "a:b"}', headers={"Content-Type": content_type})
            assert response.status_code == 415 and error("UnsupportedMediaType")(response.json()), (path, content_type)
    response = client.options("/search/searches", headers={"Origin": "http://evil.example",
                                                          "Access-Control-Request-Method": "POST"})
    assert response.status_code == 405 and "access-control-allow-origin" not in response.headers
    response = client.get("/tags/tags", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers
