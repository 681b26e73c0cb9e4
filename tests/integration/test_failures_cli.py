"""Failures are recorded and reported, against the real local stack (issue 15, part 4): jobs that failed
something exit 1 with a one-line summary, CLI failures are one line, and the local runtime (under `bioims
serve` or a CLI command) survives a restart of its dynalite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bioims.local_stack import LocalStack, _alive, free_port
from bioims.settings import Settings
from tests.integration.conftest import running_server
from tests.integration.test_cli import bioims, write_loaddata  # noqa: F401 - the `bioims` fixture
from tests.unit.test_failures import SECRET
from tests.unit.test_image_management import make_plate


@pytest.fixture
def own_stack(tmp_path):
    """A dynalite of this test's own (the session's must not be killed), stopped at the end."""
    settings = Settings(home=tmp_path / "home", table_prefix="rc-", ingest_roots=(tmp_path,))
    stack = LocalStack(settings)
    stack.up()
    try:
        yield settings
    finally:
        stack.down()


def kill_dynalite(settings: Settings) -> int:
    """SIGKILL the stack's dynalite (as a crash would); returns its pid."""
    pid = int(json.loads(LocalStack(settings).state_file.read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pid


def test_serve_survives_a_restart_of_its_dynalite(own_stack, tmp_path, monkeypatch):
    from bioims.runtime import local

    c = local(own_stack)
    c.artifacts.set_parameter("colour", "green")
    with running_server(c) as url:
        def get() -> requests.Response:
            return requests.get(f"{url}/artifact/parameters/colour", timeout=60)

        deadline = time.monotonic() + 20  # the socket is bound at once, listened on once uvicorn runs
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/health", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        assert get().status_code == 200
        killed = kill_dynalite(own_stack)
        answer = get()  # restarted on demand (a new port), the tables re-pointed, the call retried
        assert answer.status_code == 200 and "green" in answer.text
        status = LocalStack(own_stack).status()
        assert status["running"] and status["pid"] != killed and status["url"] == c.database.host

        kill_dynalite(own_stack)
        path = os.environ["PATH"]
        monkeypatch.setenv("PATH", str(tmp_path / "no-node-here"))  # now dynalite cannot be restarted
        started = time.perf_counter()
        answer = get()
        assert answer.status_code == 503 and time.perf_counter() - started < 10
        error = answer.json()["error"]
        assert error["code"] == "Unavailable" and "Node.js" in error["message"]
        monkeypatch.setenv("PATH", path)
        assert get().status_code == 200  # and once it can be restarted, the server heals


def test_ingest_goes_on_when_dynalite_is_killed_mid_way(own_stack, tmp_path, rng):
    from bioims.runtime import local

    c = local(own_stack)
    records = [make_plate(tmp_path, rng, source=f"Week1_{i}") for i in range(3)]
    done: list[str] = []

    def on_plate(source_id: str) -> None:
        done.append(source_id)
        if len(done) == 1:
            kill_dynalite(own_stack)

    summary = c.images.ingest(records, on_plate=on_plate)
    assert (summary.plates, summary.images) == (3, 12)
    assert sorted(p["source_id"] for p in c.images.list_plates()) == ["Week1_0", "Week1_1", "Week1_2"]


def test_an_unreachable_table_server_is_one_line_at_once(bioims):  # noqa: F811
    env = {**bioims.env, "BIOIMS_DYNAMODB_URL": f"http://127.0.0.1:{free_port()}"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bioims", "plate", "list"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == "" and time.perf_counter() - started < 30
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: the table server at http://127.0.0.1:") and "unreachable" in proc.stderr


def test_image_show_of_a_3000_character_id_is_one_line(bioims):  # noqa: F811
    proc = bioims("image", "show", "x" * 3000, expect=1)
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr) < 700
    if "(details: " in proc.stderr:
        log = Path(proc.stderr.rsplit("(details: ", 1)[1].rstrip(")\n"))
        assert "Traceback" in log.read_text()


def test_jobs_that_failed_something_exit_1_with_a_summary(bioims, tmp_path, rng):  # noqa: F811
    csv = write_loaddata(tmp_path, rng)
    plate_id = bioims.json("ingest", "loaddata", str(csv))["plate_ids"][0]
    images = sorted(bioims.json("image", "list", "--plate", plate_id), key=lambda r: r["image_id"])
    not_an_image = Path(images[0]["channel_uris"]["DAPI"][len("file://"):])
    not_an_image.write_text(SECRET)

    proc = bioims("plate", "process", plate_id, "--json", expect=1)
    output = json.loads(proc.stdout)["executions"][0]["output"]  # the document is printed all the same
    assert (output["images"], output["valid_images"], output["invalid_images"]) == (4, 3, 1)
    assert proc.stderr.count("\n") == 1 and "hunter2" not in proc.stderr
    assert proc.stderr.startswith(f"error: plate process: 1 of 4 images invalid (first: {images[0]['image_id']}: "
                                  f"cannot read image ")
    assert proc.stderr.rstrip().endswith("unsupported image format: not a TIFF, PNG or JPEG file (unrecognised header))")

    spec = {"name": "small", "input": {"width": 40, "height": 32, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
            "segmentation_channel": "DAPI", "roi_size": 16, "min_nucleus_voxels": 10, "embedding_length": 16,
            "flatfield": {"sigma": 5.0}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    bioims.json("spec", "create", str(tmp_path / "spec.json"))
    truncated = Path(images[1]["channel_uris"]["Tubulin"][len("file://"):])
    truncated.write_bytes(truncated.read_bytes()[:300])
    proc = bioims("preprocess", "small", "--plate", plate_id, "--json", "--workers", "1", expect=1)
    result = json.loads(proc.stdout)
    assert (result["fields"], result["failed"], result["failed_fields"], result["flatfield_exclusions"]) == (2, 1, 1, 1)
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: preprocess: 1 of 3 fields failed (first: {images[1]['image_id']}: "
                                  f"cannot read image ")
    assert "truncated or corrupt image" in proc.stderr
    human = bioims("preprocess", "small", "--plate", plate_id, expect=1)
    assert "1 failed" in human.stdout and human.stderr.startswith("error: preprocess: 1 of 3 fields failed")
