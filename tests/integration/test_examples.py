"""The client scripts of examples/ as a user runs them: a separate process with only what
`bioims[client]` installs, against a real `bioims serve`. (examples/search_by_image.py runs in
tests/integration/test_search.py, over its indexed screen.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.integration.conftest import running_server
from tests.integration.test_remote import BLOCKER
from tests.unit.test_api import plate_record
from tests.unit.test_contract_tags_images import manifest_of

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python examples/NAME ARGS`` in a client-only process (server-only imports fail)."""
    site = tmp_path / "client-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOIMS_")} | {
        "PYTHONPATH": f"{site}{os.pathsep}{Path(__file__).parents[2]}", "BIOIMS_HOME": str(tmp_path / "client-home")}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def test_ingest_manifests_registers_processes_and_waits(container, tmp_path: Path, rng: np.random.Generator):
    paths = []
    for source_id in ("Week1_1001", "Week1_1002"):
        path = tmp_path / f"{source_id}.json"
        path.write_text(json.dumps(manifest_of(plate_record(tmp_path / "plates", rng, source_id))))
        paths.append(str(path))
    with running_server(container) as url:
        out = run_example("ingest_manifests.py", "--url", url, *paths, tmp_path=tmp_path).stdout
        again = run_example("ingest_manifests.py", "--url", url, paths[0], tmp_path=tmp_path).stdout
    plates = {p["source_id"]: p for p in container.images.list_plates()}
    assert sorted(plates) == ["Week1_1001", "Week1_1002"]
    for plate in plates.values():
        assert plate["status"] == "validated", plate
        assert f"plate {plate['plate_id']}: workflow SUCCEEDED, plate validated" in out
    assert out.count(", 2 images (0 missing)") == 2
    assert "already registered" in again and "workflow" not in again
