"""Names are not paths (issue 15, part 2, at the storage and ingest layers): the key layout refuses any
name that would leave its root, search index ids, profile-set names, spec channels and the channels of
every importer are names, input URIs are read only under the ingest roots, and a LoadData CSV that loses a
channel is rejected."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from bioims.datasets.folder import scan_folder
from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.manifest import read_manifest
from bioims.datasets.records import FieldRecord, PlateRecord
from bioims.errors import InvalidInput, NotFound
from bioims.names import NAME_PATTERN, check_name
from bioims.runtime import build
from bioims.settings import Settings
from bioims.specs import EmbeddingSpec
from bioims.store.keys import Keys
from bioims.store.objects import ObjectStore, join, path_to_uri
from bioims.store.roots import (INGEST_ROOTS_FILE, IngestRoots, check_input_uri, read_ingest_roots,
                                remember_ingest_root)
from tests.unit.test_image_management import CHANNELS, make_plate

TRAVERSAL = ["../" * 12 + "tmp/x/pwned", "..", ".", "a/../../b", "..%2F..", "/etc", "a\\b", "x\x00y", "x" * 5000,
             "", " DAPI", "DA PI", "-rf", ".hidden", "a/b", "tab\there", "new\nline"]
"""Values that must never become a path segment."""

SPEC = {"name": "small", "input": {"width": 40, "height": 32, "depth": 1, "channels": list(CHANNELS)},
        "segmentation_channel": "DAPI", "roi_size": 16, "min_nucleus_voxels": 10, "embedding_length": 16,
        "flatfield": {"sigma": 5.0}}

KEY_METHODS: dict[str, tuple[object, ...]] = {
    "thumbnail": ("plate1", "image1", 100),
    "flatfield": ("spec1", "plate1", "DAPI"),
    "crops": ("spec1", "plate1", "image1"),
    "rois": ("spec1", "plate1", "image1"),
    "model": ("run-1", "model.onnx"),
    "models_root": ("run-1",),
    "cell_embeddings": ("run-1", "plate1", "image1"),
    "plate_embeddings": ("run-1", "plate1"),
    "job_params": ("job1",),
    "profiles": ("cp-profiles", "well"),
    "profiles_info": ("cp-profiles",),
    "index": ("run-1", "field", "cosine"),
    "index_current": ("run-1", "field", "cosine"),
    "index_version": ("run-1", "field", "cosine", "v1"),
    "index_part": ("run-1", "field", "cosine", "v1", "index.faiss"),
    "source_indexes": ("run-1",),
}
"""Every method of the key layout that takes names, with valid arguments."""


@pytest.fixture(params=["file", "s3"])
def keys(request, tmp_path: Path) -> Keys:
    return Keys((tmp_path / "store").as_uri() if request.param == "file" else "s3://bucket/prefix")


# ============================================================================================ names
def test_the_name_pattern_is_the_documented_one():
    assert NAME_PATTERN == r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$"
    for good in ("DAPI", "1", "Alexa488", "run-1.b+c_d", "x" * 128):
        assert check_name(good, "channel") == good
    with pytest.raises(InvalidInput) as caught:
        check_name("../../x", "channel")
    assert caught.value.message == ("channel '../../x' is not a valid name: use letters, digits and . _ + - "
                                    "(first a letter or digit), at most 128 characters")
    for bad in [*TRAVERSAL, "x" * 129, None, 5, ["a"]]:
        with pytest.raises(InvalidInput, match="is not a valid name"):
            check_name(bad, "channel")


# ============================================================================================ key layout
@pytest.mark.parametrize("method", sorted(KEY_METHODS))
def test_every_key_method_refuses_every_traversal_string(keys: Keys, method: str):
    valid = KEY_METHODS[method]
    uri = getattr(keys, method)(*valid)
    assert uri.startswith(keys.root + "/")
    for position, argument in enumerate(valid):
        bad_values = TRAVERSAL if isinstance(argument, str) else [0, -1, True, "100", "../1", 1.5]
        for bad in bad_values:
            arguments = list(valid)
            arguments[position] = bad
            with pytest.raises(InvalidInput, match="not a valid"):
                getattr(keys, method)(*arguments)


def test_join_never_leaves_its_root(tmp_path: Path):
    root = (tmp_path / "store").as_uri()
    assert join(root, "plates", "p 1", "a.png") == root + "/plates/p%201/a.png"
    for parts in (("..", "x"), ("a/../../b",), ("plates", "..", "..", "etc"), ("x\x00y",), (".", "a")):
        for r in (root, "s3://bucket/prefix"):
            with pytest.raises(InvalidInput, match="would leave the root"):
                join(r, *parts)


# ============================================================================================ services
def test_search_index_ids_are_names(container, tmp_path: Path):
    """``DELETE /search/indexes/..%2F..%2F..%2Ftrap`` deleted a folder outside BIOIMS_HOME; listing with
    ``train_id=../../../usr/share`` walked any tree."""
    trap = tmp_path / "trap" / "field-cosine"
    trap.mkdir(parents=True)
    (trap / "current.json").write_text(json.dumps({"source": "trap", "level": "field", "metric": "cosine",
                                                   "version": "v1"}))
    (trap / "precious.txt").write_text("keep me")
    escape = os.path.relpath(tmp_path / "trap", Path(container.settings.artifact_uri[len("file://"):]) / "indexes")
    search = container.search
    for bad in (escape, "..%2F..%2F..%2Ftrap", "../../../usr/share", "x\x00y", "x" * 5000):
        for call in (lambda bad=bad: search.delete_index(bad), lambda bad=bad: search.list_indexes(train_id=bad),
                     lambda bad=bad: search.load_index(bad), lambda bad=bad: search.reload_index(bad),
                     lambda bad=bad: search.delete_index(bad, "field")):
            with pytest.raises(InvalidInput, match="is not a valid name"):
                call()
    assert (trap / "precious.txt").read_text() == "keep me" and (trap / "current.json").exists()
    assert search.list_indexes() == []
    with pytest.raises(NotFound):
        search.delete_index("run-1")


def test_profile_set_names_are_names(container):
    for bad in ("../../x", "..", "a/b", "x" * 200):
        for call in (lambda bad=bad: container.profiles.info(bad), lambda bad=bad: container.profiles.read(bad, "well")):
            with pytest.raises(InvalidInput, match="profile set name .* is not a valid name"):
                call()
    assert container.profiles.list() == []


def test_spec_channels_are_names():
    for bad in ("../" * 12 + "tmp/x/pwned", "a/b", "..", "x\x00y"):
        doc = json.loads(json.dumps(SPEC))
        doc["input"]["channels"] = ["DAPI", bad]
        with pytest.raises(InvalidInput, match="input channel .* is not a valid name"):
            EmbeddingSpec.from_dict(doc)


# ============================================================================================ importers
BAD_CHANNEL = "../" * 12 + "tmp/x/pwned"


def test_a_manifest_channel_that_is_not_a_name_is_rejected_naming_the_plate():
    document = {"plateSourceId": "P1", "images": [{"wellId": "B02", "imageSourceId": "s1", "imageBucket": "b",
                                                    "channelKeys": [{"name": BAD_CHANNEL, "keysuffix": "a.tif"}]}]}
    with pytest.raises(InvalidInput) as caught:
        read_manifest(document, source="m.json")
    assert caught.value.message.startswith(f"manifest m.json: plate 'P1': channel {BAD_CHANNEL!r} is not a valid name")


def test_a_loaddata_channel_that_is_not_a_name_is_rejected_naming_its_column(tmp_path: Path):
    csv = tmp_path / "load.csv"
    csv.write_text(f"Metadata_Plate,Metadata_Well,FileName_{BAD_CHANNEL},FileName_DNA\nP1,A01,a.tif,b.tif\n")
    with pytest.raises(InvalidInput) as caught:
        read_loaddata(csv)
    assert f"column FileName_{BAD_CHANNEL}: channel {BAD_CHANNEL!r} is not a valid name" in caught.value.message


def test_a_folder_channel_that_is_not_a_name_is_rejected_naming_the_file(tmp_path: Path):
    (tmp_path / "P1").mkdir()
    for name in ("B02_s1_w1.tif", "B02_s1_w 2.tif"):
        tifffile.imwrite(tmp_path / "P1" / name, np.zeros((4, 4), np.uint16))
    with pytest.raises(InvalidInput) as caught:
        scan_folder(tmp_path, r"^(?P<plate>[^/]+)/(?P<well>[A-P]\d\d)_(?P<site>s\d)_(?P<channel>[^.]+)\.tif$")
    assert caught.value.message.startswith("P1/B02_s1_w 2.tif: plate 'P1': channel 'w 2' is not a valid name")


def test_a_plate_record_with_a_bad_channel_is_never_made():
    with pytest.raises(InvalidInput, match=r"^plate 'P1': channel '\.\./x' is not a valid name"):
        PlateRecord("P1", ("DAPI", "../x"), ())


def test_ingest_checks_every_plate_before_registering_any(container, tmp_path: Path, rng):
    good = make_plate(tmp_path, rng, source="Week1_1")
    partial = make_plate(tmp_path, rng, source="Week1_2")
    first = partial.fields[0]
    lacking = FieldRecord(first.well, first.site, {c: u for c, u in first.channel_uris.items() if c != "Actin"})
    broken = PlateRecord(partial.source_id, partial.channels, (lacking, *partial.fields[1:]))
    with pytest.raises(InvalidInput, match=r"plate 'Week1_2' well 'B02' site 's1' has channels \['DAPI', "
                                           r"'Tubulin'\], the plate \['DAPI', 'Tubulin', 'Actin'\]"):
        container.images.ingest([good, broken])
    assert container.images.list_plates() == []


# ============================================================================================ ingest roots
def test_settings_read_the_ingest_roots(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    settings = Settings.from_env({"BIOIMS_HOME": str(tmp_path / "home"),
                                  "BIOIMS_INGEST_ROOTS": f"{a}{os.pathsep}{b}/{os.pathsep}"})
    assert settings.ingest_roots == (str(a), str(b)) and settings.input_roots == (str(a), str(b))
    assert Settings.from_env(settings.to_env()) == settings
    aws = Settings.from_env({"BIOIMS_INPUT_BUCKET": "my-input", "BIOIMS_INGEST_ROOTS": str(a)})
    assert aws.input_roots == (str(a), "s3://my-input/")
    for bad, message in (("relative/dir", "must be absolute folders"), ("s3://bucket/x", "holds local folders")):
        with pytest.raises(InvalidInput, match=message):
            Settings.from_env({"BIOIMS_INGEST_ROOTS": bad})


def test_check_input_uri(tmp_path: Path):
    data = tmp_path / "data"
    (data / "p1").mkdir(parents=True)
    roots = [str(data), "s3://input/screens/"]
    for uri in ((data / "p1" / "a.tif").as_uri(), (data / "p 1.tif").as_uri(), "s3://input/screens/p1/a.tif"):
        assert check_input_uri(uri, roots) == uri
    link = tmp_path / "link"
    link.symlink_to(data)
    assert check_input_uri((data / "a.tif").as_uri(), [str(link)])  # a root given through a symlink
    for uri in ("file:///etc/shadow", f"file://{data}/../secret", f"file://{data}/p1/%2e%2e/%2e%2e/secret",
                f"file://{data}x/a.tif", f"file://{data}/a\x00b", "s3://input/screensaver/a.tif",
                "s3://input/screens/../x", "s3://other/screens/a.tif", "/etc/shadow", "http://x/a.tif",
                f"file://{data}/./a.tif"):
        with pytest.raises(InvalidInput, match="is outside the ingest roots"):
            check_input_uri(uri, roots, "image")
    with pytest.raises(InvalidInput, match=r"outside the ingest roots \(none configured\)"):
        check_input_uri((data / "a.tif").as_uri(), [])


def test_remembered_roots_are_written_atomically_and_seen_at_once(tmp_path: Path):
    home = tmp_path / "home"
    roots = IngestRoots([tmp_path / "fixed"], home=home)
    assert roots.roots() == (str(tmp_path / "fixed"),)
    assert remember_ingest_root(home, tmp_path / "screens" / ".." / "screens") == str(tmp_path / "screens")
    remember_ingest_root(home, tmp_path / "screens")
    remember_ingest_root(home, "s3://bucket/bbbc021")
    assert read_ingest_roots(home) == (str(tmp_path / "screens"), "s3://bucket/bbbc021/")
    assert json.loads((home / INGEST_ROOTS_FILE).read_text()) == [str(tmp_path / "screens"), "s3://bucket/bbbc021/"]
    assert roots.roots() == (str(tmp_path / "fixed"), str(tmp_path / "screens"), "s3://bucket/bbbc021/")
    assert roots.check((tmp_path / "screens" / "a.tif").as_uri())
    assert not [p for p in home.iterdir() if p.name.endswith(".tmp")]


def restricted(container, *roots: Path):
    """The same tables and artifacts, with other ingest roots."""
    settings = container.settings.with_(ingest_roots=tuple(roots))
    return build(settings, container.database, ObjectStore(), container.runner)


def test_images_outside_the_roots_are_not_registered(container, tmp_path: Path, rng):
    inside = tmp_path / "inside"
    inside.mkdir()
    c = restricted(container, inside)
    record, allowed = make_plate(tmp_path / "outside", rng), make_plate(inside, rng, source="Week1_9")
    with pytest.raises(InvalidInput) as caught:
        c.images.ingest([allowed, record])
    first = record.fields[0]
    assert caught.value.message.startswith(
        f"plate 'Week1_100' well 'B02' site 's1' channel DAPI: image {first.channel_uris['DAPI']} is outside "
        f"the ingest roots ({inside})")
    assert c.images.list_plates() == []
    assert c.images.ingest([allowed]).plates == 1


def test_manifest_uris_are_read_only_under_the_roots(container, tmp_path: Path, rng):
    inside = tmp_path / "inside"
    c = restricted(container, inside)
    record = make_plate(inside, rng)
    document = {"plateSourceId": record.source_id, "images": [
        {"wellId": f.well, "imageSourceId": f.site,
         "channelKeys": [{"name": ch, "keysuffix": u[len("file://"):]} for ch, u in f.channel_uris.items()]}
        for f in record.fields]}
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(document))
    for uri in ("file:///etc/passwd", path_to_uri(outside), f"{inside.as_uri()}/../outside.json"):
        for call in (c.images.populate_source_plate, c.images.upload_source_plate):
            with pytest.raises(InvalidInput, match=f"^manifest {uri} is outside the ingest roots"):
                call(uri)
    assert c.images.list_plates() == []
    (inside / "m.json").write_text(json.dumps(document))
    assert c.images.populate_source_plate((inside / "m.json").as_uri())["images"] == 4


def test_every_read_of_an_input_image_checks_the_roots_again(container, tmp_path: Path, rng):
    """A plate registered under a root that is no longer one: inspection, thumbnails, flat-fields and
    crops refuse its files (recorded as the failure of each image), stored objects stay readable."""
    plate_id = container.images.ingest([make_plate(tmp_path, rng)]).plate_ids[0]
    image_ids = sorted(container.images.get_image_ids_by_plate_id(plate_id))
    assert container.images.inspect_image(image_ids[0])["status"] == "valid"
    container.training.create_embedding(SPEC)
    c = restricted(container, tmp_path / "elsewhere")

    inspected = c.images.inspect_image(image_ids[1])
    assert inspected["status"] == "invalid" and "is outside the ingest roots" in inspected["error"]
    assert c.images.get_image_info(image_ids[1])["error"] == inspected["error"]
    with pytest.raises(InvalidInput, match=f"image {image_ids[0]} channel DAPI: file://.* is outside the ingest roots"):
        c.images.make_thumbnails(image_ids[0], widths=[16])
    with pytest.raises(InvalidInput, match=r"no readable DAPI images \(first: .*is outside the ingest roots"):
        c.images.compute_flatfield("small", plate_id, "DAPI")
    for channel in CHANNELS:  # flat-fields made where the images are allowed: only the crops' read is refused
        container.images.compute_flatfield("small", plate_id, channel)
    with pytest.raises(InvalidInput, match="is outside the ingest roots"):
        c.images.preprocess_image("small", image_ids[0])
    spec_row = c.images.get_image_info(image_ids[0], "spec#small")
    assert spec_row["status"] == "failed" and "is outside the ingest roots" in spec_row["error"]
    assert container.images.preprocess_image("small", image_ids[0])["skipped"] is False  # allowed again


# ============================================================================================ LoadData
def test_a_loaddata_csv_losing_a_channel_is_rejected(tmp_path: Path):
    header = "Metadata_Plate,Metadata_Well,FileName_DNA,PathName_DNA,{actin}"
    cases = {
        "PathName_Actin": ("PathName_Actin but no FileName_Actin column: channel 'Actin' has no files",
                           "P1,A01,a.tif,img,img"),
        "FileName_Actin": ("FileName_Actin but no PathName_Actin column, while channels DNA have one",
                           "P1,A01,a.tif,img,b.tif"),
    }
    for actin, (message, row) in cases.items():
        csv = tmp_path / f"{actin}.csv"
        csv.write_text(header.format(actin=actin) + "\n" + row + "\n")
        with pytest.raises(InvalidInput, match=message):
            read_loaddata(csv)
    bbbc = tmp_path / "bbbc.csv"
    bbbc.write_text("Image_Metadata_Plate_DAPI,Image_Metadata_Well_DAPI,Image_FileName_DAPI,Image_PathName_DAPI,"
                    "Image_PathName_Actin\nP1,A01,a.tif,Week1,Week1\n")
    with pytest.raises(InvalidInput, match="has Image_PathName_Actin but no Image_FileName_Actin column"):
        read_loaddata(bbbc)
    empty = tmp_path / "empty.csv"
    empty.write_text("Metadata_Plate,Metadata_Well,FileName_DNA,FileName_Actin\nP1,A01,a.tif,b.tif\nP1,A02,c.tif,\n")
    with pytest.raises(InvalidInput, match="line 3: empty FileName_Actin"):
        read_loaddata(empty)
