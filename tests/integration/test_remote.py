"""The CLI and the SDK against a "deployed" stack, as a client-only install runs them: the stack is found in
CloudFormation (moto's server), its services are a real `bioims serve`, every request SigV4-signed, and the
client process cannot import numpy, pandas, pynamodb or boto3."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bioims.cli.base import SERVER_MODULES
from bioims.client import CLIENTS
from tests.integration.conftest import running_server

def blocker(allow: tuple[str, ...] = ()) -> str:
    """A ``sitecustomize.py`` making every module that `pip install "bioims[client]"` does not install
    (but those in ``allow``, which a script documents it also needs) fail to import."""
    blocked = tuple(sorted(SERVER_MODULES - set(allow)))
    return textwrap.dedent(f"""
        import importlib.abc, sys

        class ServerOnly(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ModuleNotFoundError(f"{{name}} is not part of bioims[client]", name=name)
                return None

        sys.meta_path.insert(0, ServerOnly())
    """)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cloudformation() -> str:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def deployed(container, cloudformation, tmp_path: Path):
    """A root stack ``bioims-it`` whose outputs are the services of a running `bioims serve`, and the
    environment of a client process: moto's CloudFormation, test credentials, the import blocker."""
    import boto3

    prefixes = {"image-management": "ImageManagement", "artifact": "Artifact", "tags": "Tags",
                "training": "Training", "embedding": "Embedding"}
    with running_server(container) as url:
        outputs = {f"{p}ApiUrl": f"{url}/{s}" for s, p in prefixes.items()} | {"SearchUrl": f"{url}/search"}
        cf = boto3.client("cloudformation", endpoint_url=cloudformation, region_name="eu-west-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        name = f"bioims-it-{tmp_path.name[-12:].replace('_', '-')}"
        cf.create_stack(StackName=name, TemplateBody=json.dumps({
            "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {k: {"Value": v} for k, v in outputs.items()}}))
        site = tmp_path / "client-site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(blocker())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BIOIMS_", "AWS_"))} | {
            "PYTHONPATH": f"{site}{os.pathsep}{Path(__file__).parents[2]}", "BIOIMS_HOME": str(tmp_path / "home"),
            "AWS_ENDPOINT_URL_CLOUDFORMATION": cloudformation, "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"}
        yield name, url, env


def _cli(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "bioims", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == expect, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def test_the_blocker_blocks(deployed) -> None:
    _, _, env = deployed
    proc = subprocess.run([sys.executable, "-c", "import numpy"], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "not part of bioims[client]" in proc.stderr


def test_cli_on_a_stack_gives_what_the_local_cli_gives(deployed, container) -> None:
    name, _, env = deployed
    container.tags.create_tag("compound:taxol")
    container.artifacts.set_parameter("thumbnail-widths", [32, 64])
    remote = {"BIOIMS_STACK": name} | env
    assert json.loads(_cli(remote, "config", "get", "thumbnail-widths", "--json").stdout) == [32, 64]
    set_remotely = json.loads(_cli(env, "--stack", name, "config", "set", "search-k", "7", "--json").stdout)
    assert set_remotely["value"] == 7 and container.artifacts.get_parameter("search-k") == 7
    tag = json.loads(_cli(remote, "call", "tags", "getTagByValue", '{"value": "compound:taxol"}', "--json").stdout)
    assert tag == container.tags.get_tag_by_value("compound:taxol")
    assert json.loads(_cli(remote, "plate", "list", "--json").stdout) == []
    missing = _cli(remote, "plate", "show", "no-such-plate", expect=1)
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: ") and "no-such-plate" in missing.stderr


def test_commands_about_this_machine_refuse_a_stack_in_one_line(deployed) -> None:
    name, _, env = deployed
    for args in (["up"], ["status"], ["demo", "--preset", "tiny"], ["serve"], ["profiles", "list"],
                 ["dataset", "synth", "out"], ["train", "spec-x"], ["ingest", "manifest", "plate.json"],
                 ["plate", "process", "--all"], ["embed", "t-1"], ["evaluate", "t-1"]):
        proc = _cli(env, "--stack", name, *args, expect=1)
        assert proc.stderr.count("\n") == 1, (args, proc.stderr)
        assert "not against" in proc.stderr or "not a deployed" in proc.stderr, (args, proc.stderr)
        assert f"bioims {args[0]}" in proc.stderr, (args, proc.stderr)
    local = _cli(env, "plate", "list", expect=1)  # no --stack: the local stack, which a client install lacks
    assert local.stderr.startswith("error: ") and local.stderr.count("\n") == 1
    assert "bioims plate list needs the server install (pip install 'bioims[server]'): no module" in local.stderr
    unknown = _cli(env, "--stack", "bioims-no-such-stack", "plate", "list", expect=1)
    assert unknown.stderr == "error: no CloudFormation stack 'bioims-no-such-stack' in eu-west-1\n"


def test_sdk_reaches_every_service_of_the_stack(deployed, container) -> None:
    name, url, env = deployed
    container.tags.create_tag("moa:Actin disruptors")
    script = textwrap.dedent(f"""
        import json
        from bioims.client import Stack, aws_session
        stack = Stack.discover({name!r}, aws_session())
        remote = stack.connect()
        print(json.dumps({{"urls": dict(stack.urls), "region": stack.region,
                          "tag": remote.tags.get_tag_by_value("moa:Actin disruptors"),
                          "plates": remote.images.list_plates(), "indexes": remote.search.indexes(stored=True)}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["urls"] == {s: f"{url}/{s}" for s in CLIENTS} and found["region"] == "eu-west-1"
    assert found["tag"] == container.tags.get_tag_by_value("moa:Actin disruptors")
    assert found["plates"] == [] and found["indexes"] == []
