"""The bad-input corpus of issue 15: every case a hostile-but-ordinary user tried, and traversal strings
against every route and every CLI command that takes a name, on a real ``bioims serve`` (uvicorn, real
dynalite) and the real CLI.

Each case must get a clean 4xx with the ``{"error": {"code", "message"}}`` shape (or, in the CLI, exit 1
with one line on stderr), and afterwards no file outside the server's home and its ingest root may have
been created, changed or deleted: the test's folder is a sentinel tree (a ``trap`` folder, a
``tmp/x`` folder, a fake ``etc/shadow``) around the home, so that every traversal from the artifact root
lands in it; ``/tmp/x`` (where the reported exploit wrote) is checked too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from bioims.contract import SERVICES
from bioims.ids import new_id
from bioims.names import NAME_PATTERN
from tests.integration.conftest import running_server
from tests.unit.test_failures import SECRET
from tests.unit.test_image_management import make_plate

pytestmark = pytest.mark.xdist_group("corpus")  # one worker runs the module: one server, one sentinel check

TRAVERSALS = ["../" * 12 + "tmp/x/pwned", "..", ".", "../trap", "../../../trap", "a/../../b", "/etc/shadow",
              "..\\..\\trap", "x\x00y", "%2e%2e%2ftrap", "~", "a" * 5000]
"""Names that must never become paths (the reported exploit first)."""
CLI_TRAVERSALS = ["../" * 12 + "tmp/x/pwned", "../../../trap", "/etc/shadow", "x\x00y", "a" * 3000]
CASES: list[str] = []
"""The cases run by this process (a record for debugging; the count is test_the_corpus_size's)."""


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        out[str(path.relative_to(root))] = "" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(stack_settings, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """An artifact store (``home/artifacts``) with one registered plate inside a sentinel tree, on the
session's dynalite; a server over it; afterwards, the files around it are checked."""
    from bioims.runtime import local

    root = tmp_path_factory.mktemp("corpus")
    home, inputs = root / "home", root / "inputs"
    for folder in ("trap", "tmp/x", "etc", "usr/share/doc"):
        (root / folder).mkdir(parents=True)
    (root / "trap" / "keep.npy").write_bytes(b"\x93NUMPY keep")
    (root / "etc" / "shadow").write_text(SECRET + "\n")
    (root / "usr" / "share" / "doc" / "README").write_text("docs")
    record = make_plate(inputs, np.random.default_rng(5), source="Week1_77")
    (inputs / "not-an-image.tif").write_text(SECRET)
    home.mkdir()
    settings = stack_settings.with_(table_prefix=f"cp{new_id()[:8]}-", artifact_uri=(home / "artifacts").as_uri(),
                                    ingest_roots=(str(inputs),))
    container = local(settings)
    plate_id = container.images.ingest([record]).plate_ids[0]
    image_id = container.images.get_image_ids_by_plate_id(plate_id)[0]
    skip = (home, inputs)
    before = snapshot(root, skip)
    pwned_before = sorted(Path("/tmp").glob("x/pwned*"))
    cwd = os.getcwd()
    os.chdir(home)
    try:
        with running_server(container) as url:
            yield {"url": url, "container": container, "plate_id": plate_id, "image_id": image_id, "root": root,
                   "inputs": inputs, "env": settings.to_env()}
    finally:
        os.chdir(cwd)
    assert snapshot(root, skip) == before, "files outside the home and the ingest root changed"
    assert sorted(Path("/tmp").glob("x/pwned*")) == pwned_before


def clean_4xx(response: requests.Response, case: str) -> dict[str, Any]:
    CASES.append(case)
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), case
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and SECRET not in error["message"], case
    return error


def concrete(path: str, world: dict[str, Any], variable: str | None = None, value: str = "") -> str:
    """A route's path with real ids (plate, image) or ``x``, and ``value`` (percent-encoded) in ``variable``."""
    known = {"plate_id": world["plate_id"], "plate": world["plate_id"], "image_id": world["image_id"]}
    for name in [v.strip("{}") for v in path.split("/") if v.startswith("{")]:
        filler = value if name == variable else known.get(name, "x")
        encoded = quote(filler, safe="")
        if set(filler) <= {"."}:  # clients drop "." and ".." segments: send them encoded
            encoded = encoded.replace(".", "%2E")
        path = path.replace(f"{{{name}}}", encoded)
    return path


ROUTES = [(name, op) for name, s in SERVICES.items() for op in s.operations]


@pytest.mark.parametrize(("name", "op"), ROUTES, ids=[f"{n}.{op.method}" for n, op in ROUTES])
def test_traversal_strings_in_every_path_variable_and_name_field(world, name, op):
    url = f"{world['url']}/{name}"
    for variable in op.path_variables:
        for value in TRAVERSALS:
            response = requests.request(op.http_method, url + concrete(op.path, world, variable, value),
                                        json={} if op.has_body else None, timeout=30)
            clean_4xx(response, f"{op.method} {variable}={value[:20]!r}")
    if not op.has_body:
        return
    schema = op.request.model_json_schema()["properties"]
    for field, field_schema in schema.items():
        if field in op.path_variables or NAME_PATTERN not in json.dumps(field_schema):
            continue
        for value in TRAVERSALS:
            response = requests.request(op.http_method, url + concrete(op.path, world), json={field: value}, timeout=30)
            clean_4xx(response, f"{op.method} body {field}={value[:20]!r}")


def test_json_nested_100000_deep_on_every_body_route(world):
    body = b"[" * 100_000 + b"]" * 100_000
    for name, op in ROUTES:
        if op.has_body:
            response = requests.request(op.http_method, f"{world['url']}/{name}{concrete(op.path, world)}",
                                        data=body, headers={"Content-Type": "application/json"}, timeout=30)
            assert "nested deeper than 32" in clean_4xx(response, f"{op.method} deep JSON")["message"]


def test_ids_over_2048_bytes_on_every_route(world):
    long_id = "é" * 1100  # 2,200 bytes of UTF-8
    for name, op in ROUTES:
        for variable in op.path_variables:
            response = requests.request(op.http_method, f"{world['url']}/{name}"
                                        + concrete(op.path, world, variable, long_id),
                                        json={} if op.has_body else None, timeout=30)
            clean_4xx(response, f"{op.method} {variable} of 2,200 bytes")


def post(world, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    return requests.post(world["url"] + path, json=body, timeout=60, **kwargs)


REPORTED = [
    # wrong input stored as if right
    ("POST", "/tags/image-tags", {"assignments": {"IMG": "qc:blurry"}}, 400, "assignments.IMG: Input should be a valid list"),
    ("POST", "/tags/categories/moa/ensure-labels", {"labels": "xyz"}, 400, "labels: Input should be a valid list"),
    ("POST", "/tags/tags/ensure", {"values": "abc"}, 400, "values: Input should be a valid list"),
    # wrong JSON types
    ("POST", "/image-management/plates", {"manifest": 5}, 400, "manifest"),
    ("POST", "/image-management/uploads", {"manifest": 5}, 400, "manifest"),
    ("POST", "/tags/categories", {"category": "week", "description": 5}, 400, "description: Input should be a valid string"),
    ("PUT", "/image-management/images/{image_id}/train-results/run1", {"embedding": "x"}, 400, "embedding"),
    ("PUT", "/image-management/images/{image_id}/train-results/run1", {"results": "x"}, 400,
     "results: Input should be a valid dictionary"),
    ("POST", "/search/searches", {"train_id": "r", "vector": [10**400, 1.0]}, 400, "vector.0"),
    ("POST", "/search/searches", {"train_id": "x\x00y", "vector": [1.0]}, 400, "train_id"),
    ("POST", "/search/searches", {"train_id": "a" * 5000, "vector": [1.0]}, 400, "train_id"),
    ("POST", "/artifact/messages", {"message": "x" * 400_001}, 400, "message: String should have at most"),
    # files outside the store
    ("POST", "/image-management/plates", {"manifest": "file:///etc/passwd"}, 400, "outside the ingest roots"),
    ("POST", "/image-management/plates/{plate_id}/flatfields/spec1/" + quote("../" * 12 + "tmp/x/pwned", safe=""),
     {}, 400, "channel"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), REPORTED,
                         ids=[f"{m} {p[:40]} {str(b)[:30]}" for m, p, b, _, _ in REPORTED])
def test_reported_cases(world, method, path, body, status, message):
    path = path.replace("{plate_id}", world["plate_id"]).replace("{image_id}", world["image_id"])
    response = requests.request(method, world["url"] + path, json=body, timeout=60)
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert message in clean_4xx(response, f"{method} {path[:40]}")["message"], response.text[:300]


def test_reported_search_index_traversals_leave_the_trap(world):
    url = world["url"]
    clean_4xx(requests.delete(f"{url}/search/indexes/..%2F..%2F..%2Ftrap", timeout=30), "DELETE index ../../../trap")
    clean_4xx(requests.delete(f"{url}/search/indexes/" + quote("../../../trap", safe=""), timeout=30),
              "DELETE index (encoded)")
    clean_4xx(requests.get(f"{url}/search/indexes", params={"stored": "true", "train_id": "../../../usr/share"},
                           timeout=30), "GET stored indexes of ../../../usr/share")
    assert (world["root"] / "trap" / "keep.npy").exists()


def test_local_server_is_local(world):
    url = world["url"]
    clean_4xx(requests.get(f"{url}/health", headers={"Host": "attacker.example"}, timeout=10), "DNS rebinding Host")
    error = clean_4xx(requests.post(f"{url}/search/searches", data='{"train_id": "r", "vector": [1]}',
                                    headers={"Content-Type": "text/plain"}, timeout=10), "text/plain search body")
    assert error["code"] == "UnsupportedMediaType"
    error = clean_4xx(requests.post(f"{url}/tags/tags", data="value=a:b", timeout=10,
                                    headers={"Content-Type": "application/x-www-form-urlencoded"}), "form body")
    assert error["code"] == "UnsupportedMediaType"
    response = requests.options(f"{url}/search/searches", headers={"Origin": "http://attacker.example",
                                                                   "Access-Control-Request-Method": "POST"}, timeout=10)
    assert "access-control-allow-origin" not in response.headers
    from bioims.api.search_server import main

    with pytest.raises(SystemExit):  # --help: the defaults are printed, nothing is served
        main(["--help"])


def test_inspection_errors_never_echo_file_contents(world):
    c = world["container"]
    secret_file = str(world["inputs"] / "not-an-image.tif")
    manifest = {"plateSourceId": "Secrets_1", "images": [{"wellId": "A01", "imageSourceId": "A01_s1", "channelKeys": [
        {"name": ch, "keysuffix": secret_file} for ch in ("DAPI", "Tubulin", "Actin")]}]}
    registered = post(world, "/image-management/plates", {"manifest": manifest})
    assert registered.status_code == 201, registered.text
    image_id = c.images.get_image_ids_by_plate_id(registered.json()["plate_id"])[0]
    inspected = post(world, f"/image-management/images/{image_id}/inspect", {})
    assert inspected.status_code == 200 and inspected.json()["status"] == "invalid"
    assert SECRET not in inspected.text and "hunter2" not in inspected.text
    CASES.append("inspection of a non-image file")


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def cli(world):
    from bioims.cli import main

    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(main, list(args), env=world["env"], catch_exceptions=False)
        return result

    return run


CLI_COMMANDS = [
    ["plate", "show", "{}"], ["plate", "validate", "{}"], ["plate", "status", "{}"], ["plate", "wells", "{}"],
    ["image", "show", "{}"], ["image", "list", "--plate", "{}"], ["spec", "show", "{}"], ["preprocess", "{}"],
    ["train", "{}"], ["training", "list", "{}"], ["training", "show", "{}"], ["training", "delete", "{}"],
    ["embed", "{}"], ["index", "build", "{}"], ["index", "delete", "{}"], ["index", "list", "{}"],
    ["search", "{}", "--image", "x"], ["search-result", "{}"], ["evaluate", "{}"], ["label", "list", "{}"],
    ["config", "get", "{}"], ["message", "list", "{}"], ["artifact", "list", "{}"],
    ["profiles", "compute", "naive", "--spec", "{}", "--name", "{}"], ["tag", "show", "{}"],
]


@pytest.mark.parametrize("command", CLI_COMMANDS, ids=[" ".join(c[:2]) for c in CLI_COMMANDS])
def test_cli_commands_that_take_a_name(cli, command):
    for value in CLI_TRAVERSALS:
        args = [value if a == "{}" else a for a in command]
        result = cli(*args)
        CASES.append(f"bioims {' '.join(command)} {value[:20]!r}")
        assert result.exit_code == 1, (args[:3], result.exit_code, result.output[-500:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args[:3], result.stderr[-800:])
        assert "Traceback" not in result.output and SECRET not in result.stderr


def test_cli_reported_cases(cli, world, tmp_path):
    inputs = world["inputs"]
    manifest = inputs / "evil.json"
    image = str(next((inputs / "Week1_77").iterdir()))
    manifest.write_text(json.dumps({"plateSourceId": "Evil_1", "images": [{"wellId": "A01", "imageSourceId": "A01_s1",
                                    "channelKeys": [{"name": "../" * 12 + "tmp/x/pwned", "keysuffix": image}]}]}))
    csv = inputs / "missing-column.csv"
    csv.write_text("Metadata_Plate,Metadata_Well,Metadata_Site,FileName_DAPI,PathName_DAPI,PathName_Actin\n"
                   f"P1,A01,s1,x.tif,{inputs},{inputs}\n")
    for args, fragment in [
        (["ingest", "manifest", str(manifest)], "not a valid name"),
        (["ingest", "loaddata", str(csv)], "Actin"),
        (["image", "show", "i" * 3000], "image_id"),
        (["call", "tags", "tagImages", '{"assignments": {"IMG": "qc:blurry"}}'], "Input should be a valid list"),
        (["call", "tags", "ensureLabels", '{"category": "moa", "labels": "xyz"}'], "Input should be a valid list"),
        (["call", "artifact", "setParameter", "[" * 100_000], "nested deeper"),
    ]:
        result = cli(*args)
        CASES.append(f"bioims {' '.join(args)[:40]}")
        assert result.exit_code == 1, (args[:3], result.output[-500:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (args[:3], result.stderr[-800:])
    assert world["container"].tags.list_labels("moa") == [] or all(len(x["label"]) > 1 for x in
                                                                     world["container"].tags.list_labels("moa"))


def test_the_corpus_size():
    """How many cases the tests above run (computed from their definitions, so that it holds however the
    tests are spread over pytest-xdist workers); printed with ``-s`` for the closing note."""
    name_fields = sum(1 for _, op in ROUTES if op.has_body
                      for f, schema in op.request.model_json_schema()["properties"].items()
                      if f not in op.path_variables and NAME_PATTERN in json.dumps(schema))
    variables = sum(len(op.path_variables) for _, op in ROUTES)
    cases = (len(TRAVERSALS) * (variables + name_fields) + sum(op.has_body for _, op in ROUTES) + variables
             + len(REPORTED) + 3 + 3 + 1 + len(CLI_TRAVERSALS) * len(CLI_COMMANDS) + 6)
    print(f"corpus: {cases} cases")
    assert cases > 1000
