"""Schemathesis against every service under a real ``bioims serve`` (uvicorn on 127.0.0.1, real dynalite).

The OpenAPI document is the contract's (the test checks that the server serves exactly it); every
operation gets ``EXAMPLES`` generated requests, valid and invalid (schemathesis' positive and negative
modes), each checked for: no 5xx, a documented status, ``application/json``, and a body that matches the
operation's response schema. The examples are derandomised, so a failure reproduces. A sentinel tree
outside the server's home must be untouched afterwards.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from bioims.contract import LAMBDA_SERVICES, SERVICES, service
from bioims.contract.openapi import combined
from bioims.ids import new_id
from tests.integration.conftest import running_server

pytestmark = pytest.mark.xdist_group("fuzz")  # one worker runs the module: one server for all of it

EXAMPLES = 12
"""Generated requests per operation (each mode), bounded so that the whole run takes about a minute."""

DOCUMENT = combined({name: service(name) for name in sorted(SERVICES)})
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` -> a digest of its content (folders: '')."""
    out = {}
    for path in sorted(root.rglob("*")):
        out[str(path.relative_to(root))] = "" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("sentinel")
    (root / "tmp" / "x").mkdir(parents=True)
    (root / "tmp" / "x" / "keep.json").write_text('{"secret": 1}')
    (root / "trap").mkdir()
    (root / "trap" / "file.npy").write_bytes(b"\x93NUMPY")
    before = snapshot(root)
    yield root
    assert snapshot(root) == before, "the fuzz changed files outside the server's home"


@pytest.fixture(scope="module")
def server(stack_settings, tmp_path_factory, sentinel) -> Iterator[str]:
    from bioims.runtime import local

    home = tmp_path_factory.mktemp("fuzz-home")
    settings = stack_settings.with_(table_prefix=f"fz{new_id()[:8]}-", artifact_uri=(home / "artifacts").as_uri(),
                                    ingest_roots=(home / "inputs",))
    container = local(settings)
    cwd = os.getcwd()
    os.chdir(home)  # relative paths a request might smuggle in resolve here, not in the checkout
    try:
        with running_server(container) as url:
            yield url
    finally:
        os.chdir(cwd)


def test_the_server_serves_the_contract(server: str) -> None:
    served = requests.get(f"{server}/openapi.json", timeout=10).json()
    assert {p: v for p, v in served["paths"].items() if p != "/health"} == DOCUMENT["paths"]
    for name in LAMBDA_SERVICES:
        assert requests.get(f"{server}/{name}/openapi.json", timeout=10).json()["paths"]


@pytest.mark.xdist_group("fuzz")  # schemathesis' items do not inherit the module's mark
@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          database=None)
def test_no_5xx_and_every_response_matches_its_schema(case, server: str) -> None:
    response = case.call_and_validate(base_url=server, timeout=30, excluded_checks=[positive_data_acceptance])
    assert response.status_code < 500  # (and, by the checks above, documented, JSON, matching its schema)


def test_every_path_answers_405_with_allow_for_other_methods(server: str) -> None:
    """A method that a path does not have: 405 with ``Allow`` naming the ones it has."""
    for path, item in DOCUMENT["paths"].items():
        concrete = path.replace("{", "x").replace("}", "")
        allowed = {m.upper() for m in item}
        for method in {"GET", "POST", "PUT", "DELETE", "PATCH"} - allowed:
            answer = requests.request(method, server + concrete, json={} if method in ("POST", "PUT", "PATCH")
                                      else None, timeout=10)
            if answer.status_code == 404:  # another route's template matched first (its own id is unknown)
                continue
            assert answer.status_code == 405, (method, path, answer.status_code, answer.text[:200])
            assert set(answer.headers["Allow"].replace(" ", "").split(",")) >= allowed, (method, path)
            assert answer.json()["error"]["code"] in ("MethodNotAllowed", "MethodNotAllowedError")
