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

from tests.integration.conftest import preprocessed_screen, running_server
from tests.integration.test_remote import blocker
from tests.unit.test_api import plate_record
from tests.unit.test_contract_tags_images import manifest_of

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str, *args: str, tmp_path: Path, allow: tuple[str, ...] = (),
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python examples/NAME ARGS`` in a client-only process (server-only imports fail, but ``allow``'s),
    with ``env`` added to its environment."""
    site = tmp_path / "client-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(blocker(allow))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BIOIMS_")} | {
        "PYTHONPATH": f"{site}{os.pathsep}{Path(__file__).parents[2]}",
        "BIOIMS_HOME": str(tmp_path / "client-home")} | (env or {})
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=environment, capture_output=True,
                          text=True, timeout=600)
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


def test_train_holdout_registers_the_spec_and_trains_every_fold(stack_settings, tmp_path: Path):
    """On processed plates only: the example registers the spec, the train workflow preprocesses and
    trains both folds, and what the example prints is what the training service recorded."""
    from tests.integration.test_contract_training_embedding import SPEC

    c = preprocessed_screen(stack_settings, tmp_path / "screen", None)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    with running_server(c) as url:
        out = run_example("train_holdout.py", "--url", url, str(spec), "--holdout", "folds",
                          tmp_path=tmp_path).stdout.splitlines()
        again = run_example("train_holdout.py", "--url", url, str(spec), "--holdout", "folds",
                            tmp_path=tmp_path).stdout.splitlines()
    runs = c.training.get_embedding_trainings(SPEC["name"])
    assert len(runs) == 2 and all(r["status"] == "complete" and r["holdout"] for r in runs)
    assert out[0] == f"spec {SPEC['name']} registered" and out[1].startswith("4 compatible plates: ")
    assert "workflow SUCCEEDED" in out and again[0] == f"spec {SPEC['name']} exists"
    for run in runs:
        nsc = run["metrics"]["best_validation_nsc"]
        line = (f"{run['train_id']}: complete, holds out {', '.join(run['holdout'])}; best epoch "
                f"{run['metrics']['best_epoch']}, validation NSC {'n/a' if nsc is None else f'{nsc:.3f}'}; "
                f"model {run['model_uris']['onnx']}")
        assert line in out and line in again
    assert again[2].endswith(": 2 runs") and "workflow SUCCEEDED" in again  # found again, nothing retrained
