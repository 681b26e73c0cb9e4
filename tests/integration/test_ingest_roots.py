"""Ingest roots as users meet them (issue 15, part 2): the folders named to `bioims ingest` (and to
`bioims serve --ingest-root`) are the only places images are read from, on the real local stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bioims.store.roots import INGEST_ROOTS_FILE
from tests.integration.test_cli import bioims  # noqa: F401 - the fixture
from tests.unit.test_image_management import make_plate


def manifest_of(record, path: Path) -> Path:
    """The seed's manifest of a plate record, images by absolute path."""
    path.write_text(json.dumps({"plateSourceId": record.source_id, "images": [
        {"wellId": f.well, "imageSourceId": f.site,
         "channelKeys": [{"name": ch, "keysuffix": u[len("file://"):]} for ch, u in f.channel_uris.items()]}
        for f in record.fields]}))
    return path


def test_ingest_commands_name_their_folders_as_roots(bioims, stack_settings, tmp_path, rng):  # noqa: F811
    images, manifests = tmp_path / "images", tmp_path / "manifests"
    manifests.mkdir()
    manifest = manifest_of(make_plate(images, rng, source="Week3_1"), manifests / "plate.json")
    proc = bioims("ingest", "manifest", str(manifest), expect=1)  # images outside the manifest's folder
    assert proc.stderr.count("\n") == 1 and "is outside the ingest roots" in proc.stderr
    assert f"plate 'Week3_1' well 'B02' site 's1' channel DAPI: image file://{images}" in proc.stderr
    assert bioims.json("plate", "list") == []
    done = bioims.json("ingest", "manifest", str(manifest), "--root", str(images))
    assert (done["plates"], done["images"], done["invalid_images"]) == (1, 4, 0)
    remembered = json.loads((stack_settings.home / INGEST_ROOTS_FILE).read_text())
    assert str(manifests) in remembered and str(images) in remembered
    processed = bioims.json("plate", "process", done["plate_ids"][0], "--workers", "2")  # read by job workers
    assert processed["executions"][0]["output"]["valid_images"] == 4


def test_serve_takes_ingest_roots(stack_settings, tmp_path, monkeypatch):
    import bioims.api.server
    from bioims.cli import main

    for key, value in stack_settings.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BIOIMS_TABLE_PREFIX", "roots-")
    served = {}
    monkeypatch.setattr(bioims.api.server, "serve", lambda container, **_: served.update(container=container))
    extra = tmp_path / "plates"
    result = CliRunner().invoke(main, ["serve", "--ingest-root", str(extra), "--ingest-root", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    container = served["container"]
    assert container.roots.roots()[:2] == (str(extra), str(tmp_path / "b"))
    assert container.settings.to_env()["BIOIMS_INGEST_ROOTS"].startswith(str(extra))  # detached jobs get them
    assert container.roots.check((extra / "p1" / "a.tif").as_uri())
    with pytest.raises(Exception, match="is outside the ingest roots"):
        container.roots.check((tmp_path / "c" / "a.tif").as_uri())
