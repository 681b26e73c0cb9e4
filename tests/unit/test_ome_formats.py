"""OME-TIFF and OME-Zarr HCS inputs: channel references, the importers, bad plates, S3, and the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from bioims.datasets.folder import scan_folder
from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.manifest import read_manifest
from bioims.datasets.omezarr import read_ome_zarr, write_plate
from bioims.errors import InvalidInput
from bioims.imaging.io import channel_ref, inspect_field, read_field, read_image, split_ref
from bioims.settings import Settings
from bioims.store.objects import ObjectStore, path_to_uri
from tests.ome import write_ome_tiff

CHANNELS = ("DNA", "Actin", "Tubulin")


def pixels(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, top: int | None = None) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return rng.random(shape, dtype=np.float32) * 1000
    return rng.integers(0, top or np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


@pytest.fixture
def objects() -> ObjectStore:
    return ObjectStore()


# --------------------------------------------------------------------------------------- OME-TIFF reads


@pytest.mark.parametrize(("dtype", "top"), [(np.uint8, None), (np.uint16, None), (np.uint16, 4095), (np.float32, None)],
                         ids=["uint8", "uint16", "12-bit-in-16", "float32"])
def test_each_channel_of_an_ome_tiff_is_read_alone(tmp_path, rng, objects, dtype, top) -> None:
    field = pixels(rng, (3, 40, 56), dtype, top)
    uri = path_to_uri(write_ome_tiff(tmp_path / "f.ome.tif", [field], CHANNELS))
    for c in range(3):
        image = read_image(channel_ref(uri, c), objects)
        assert image.dtype == field.dtype and np.array_equal(image, field[c])
    stacked = read_field([channel_ref(uri, c) for c in (2, 0)], objects)
    assert np.array_equal(stacked, field[[2, 0]])
    assert inspect_field([channel_ref(uri, c) for c in range(3)], objects).channels == 3


def test_z_stacks_and_series_of_an_ome_tiff(tmp_path, rng, objects) -> None:
    first, second = pixels(rng, (2, 4, 24, 32), np.uint16), pixels(rng, (2, 4, 24, 32), np.uint16)
    uri = path_to_uri(write_ome_tiff(tmp_path / "z.ome.tif", [first, second], ("DNA", "Actin")))
    assert read_image(channel_ref(uri, 1), objects).shape == (4, 24, 32)
    assert np.array_equal(read_image(channel_ref(uri, 1), objects), first[1])
    assert np.array_equal(read_image(channel_ref(uri, 0, series=1), objects), second[0])
    with pytest.raises(InvalidInput, match=r"z.ome.tif#c=2: no channel 2: the image has 2"):
        read_image(channel_ref(uri, 2), objects)
    with pytest.raises(InvalidInput, match=r"no series 2: the file has 2"):
        read_image(channel_ref(uri, 0, series=2), objects)
    with pytest.raises(InvalidInput, match=r"holds 2 channels .*name one \(URI#c=N\)"):
        read_image(uri, objects)


@pytest.mark.parametrize("fragment", ["c=-1", "c=01", "x=1", "c=1&s=0", "c=1#c=2", ""])
def test_a_bad_channel_fragment_is_refused(tmp_path, objects, fragment) -> None:
    with pytest.raises(InvalidInput, match="is not a channel reference"):
        split_ref(f"file:///data/a.ome.tif#{fragment}")


def test_a_plain_image_has_only_channel_zero(tmp_path, rng, objects) -> None:
    path = tmp_path / "a.tif"
    image = pixels(rng, (16, 16), np.uint16)
    tifffile.imwrite(path, image)
    assert np.array_equal(read_image(channel_ref(path_to_uri(path), 0), objects), image)
    with pytest.raises(InvalidInput, match="no channel 1: the image has 1"):
        read_image(channel_ref(path_to_uri(path), 1), objects)


# ------------------------------------------------------------------------------------ OME-TIFF importers


def test_the_folder_importer_takes_channels_from_the_ome_xml(tmp_path, rng) -> None:
    (tmp_path / "P1").mkdir()
    for well in ("A01", "B02"):
        write_ome_tiff(tmp_path / "P1" / f"{well}.ome.tif",
                       [pixels(rng, (3, 16, 16), np.uint16), pixels(rng, (3, 16, 16), np.uint16)], CHANNELS)
    (plate,) = scan_folder(tmp_path, r"(?P<plate>P\d)/(?P<well>[A-P]\d\d)\.ome\.tif$")
    assert plate.channels == CHANNELS
    assert [(f.well, f.site) for f in plate.fields] == [("A01", "s1"), ("A01", "s2"), ("B02", "s1"), ("B02", "s2")]
    uri = path_to_uri(tmp_path / "P1" / "A01.ome.tif")
    assert plate.fields[1].channel_uris == {"DNA": f"{uri}#s=1&c=0", "Actin": f"{uri}#s=1&c=1",
                                            "Tubulin": f"{uri}#s=1&c=2"}
    write_ome_tiff(tmp_path / "P1" / "C03.ome.tif", [pixels(rng, (2, 16, 16), np.uint16)], ("DNA", "Actin"))
    with pytest.raises(InvalidInput, match=r"P1/C03.ome.tif has channels \['DNA', 'Actin'\], P1/A01.ome.tif has "):
        scan_folder(tmp_path, r"(?P<plate>P\d)/(?P<well>[A-P]\d\d)\.ome\.tif$")
    (tmp_path / "P1" / "C03.ome.tif").unlink()
    with pytest.raises(InvalidInput, match=r"A01.ome.tif holds 2 series .*drop the pattern's \(\?P<site>"):
        scan_folder(tmp_path, r"(?P<plate>P\d)/(?P<well>[A-P]\d\d)(?P<site>)\.ome\.tif$")


def test_loaddata_and_manifest_read_ome_tiff_fields(tmp_path, rng, objects) -> None:
    field = pixels(rng, (3, 16, 16), np.uint16)
    write_ome_tiff(tmp_path / "A01.ome.tif", [field], CHANNELS)
    (tmp_path / "whole.csv").write_text("Metadata_Plate,Metadata_Well,FileName_Field\nP1,A01,A01.ome.tif\n")
    (whole,) = read_loaddata(tmp_path / "whole.csv")
    uri = path_to_uri(tmp_path / "A01.ome.tif")
    assert whole.channels == CHANNELS and whole.fields[0].channel_uris["Tubulin"] == f"{uri}#c=2"
    # CellProfiler's convention: a Frame_ (and Series_) column per channel names its plane, and its name
    (tmp_path / "frames.csv").write_text("Metadata_Plate,Metadata_Well,FileName_DNA,Frame_DNA,FileName_Tub,Frame_Tub\n"
                                         "P1,A01,A01.ome.tif,0,A01.ome.tif,2\n")
    (frames,) = read_loaddata(tmp_path / "frames.csv")
    assert frames.channels == ("DNA", "Tub")
    assert np.array_equal(read_field(list(frames.fields[0].channel_uris.values()), objects), field[[0, 2]])
    (tmp_path / "bad.csv").write_text("Metadata_Plate,Metadata_Well,FileName_DNA,Frame_DNA\nP1,A01,A01.ome.tif,x\n")
    with pytest.raises(InvalidInput, match=r"bad.csv: line 2: Frame_DNA must be a non-negative integer, not 'x'"):
        read_loaddata(tmp_path / "bad.csv")
    manifest = {"plateSourceId": "P1", "images": [{"wellId": "A01", "imageSourceId": "s1",
                                                   "channelKeys": [{"name": "all", "keysuffix": "A01.ome.tif"}]}]}
    plate = read_manifest(json.dumps(manifest), root=tmp_path)
    assert plate.channels == CHANNELS
    manifest["images"][0]["channelKeys"] = [{"name": "DNA", "keysuffix": "A01.ome.tif", "frame": 0},
                                            {"name": "Actin", "keysuffix": "A01.ome.tif", "frame": 1}]
    plate = read_manifest(json.dumps(manifest), root=tmp_path)
    assert np.array_equal(read_field(list(plate.fields[0].channel_uris.values()), objects), field[:2])
    manifest["images"][0]["channelKeys"][1]["frame"] = -1
    with pytest.raises(InvalidInput, match=r"channelKeys\[1\]: 'frame' must be a non-negative integer, not -1"):
        read_manifest(json.dumps(manifest), root=tmp_path)


# -------------------------------------------------------------------------------------------- OME-Zarr


@pytest.fixture(scope="module")
def plates(tmp_path_factory) -> dict[str, tuple[Path, dict[str, list[np.ndarray]]]]:
    """The same 3-well plate (2 fields a well, 3 channels, uint16, 2 pyramid levels) as NGFF 0.4 and 0.5."""
    rng = np.random.default_rng(7)
    fields = {w: [pixels(rng, (3, 48, 64), np.uint16, 4095) for _ in range(2)] for w in ("A01", "A02", "B12")}
    root = tmp_path_factory.mktemp("ome-zarr")
    return {v: (write_plate(root / f"P{v}.ome.zarr", fields, CHANNELS, version=v, name="P1", levels=2), fields)
            for v in ("0.4", "0.5")}


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_an_ome_zarr_plate_is_read_in_place(plates, objects, tmp_path, version) -> None:
    path, fields = plates[version]
    (tmp_path / "wells.csv").write_text("plate,well,compound,concentration\nP1,A02,taxol,0.3\n")
    record = read_ome_zarr(path, objects, metadata_csv=tmp_path / "wells.csv")
    assert (record.source_id, record.channels) == ("P1", CHANNELS)
    assert [(f.well, f.site) for f in record.fields] == [(w, s) for w in ("A01", "A02", "B12") for s in ("s1", "s2")]
    assert record.fields[2].metadata == {"compound": "taxol", "concentration": 0.3}
    b12 = record.fields[5]
    assert b12.channel_uris["Actin"] == f"{path_to_uri(path)}/B/12/1#c=1"
    field = read_field([b12.channel_uris[c] for c in CHANNELS], objects)
    assert field.dtype == np.uint16 and np.array_equal(field, fields["B12"][1])  # level 0, not the pyramid's top


def test_bad_ome_zarr_plates_get_precise_errors(plates, objects, tmp_path) -> None:
    source, fields = plates["0.5"]
    missing = shutil.copytree(source, tmp_path / "missing.zarr")
    shutil.rmtree(missing / "A" / "2")
    with pytest.raises(InvalidInput, match=r"missing.zarr lists well A/2 but has no group A/2"):
        read_ome_zarr(missing, objects)
    old = shutil.copytree(plates["0.4"][0], tmp_path / "old.zarr")
    attrs = json.loads((old / ".zattrs").read_text())
    attrs["plate"]["version"] = "0.3"
    (old / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(InvalidInput, match=r"old.zarr has NGFF version 0.3; bioims reads 0.4 and 0.5"):
        read_ome_zarr(old, objects)
    with pytest.raises(InvalidInput, match=r"is an OME-Zarr group without plate metadata"):
        read_ome_zarr(source / "A" / "1" / "0", objects)
    with pytest.raises(InvalidInput, match=r"nowhere.zarr is not a folder"):
        read_ome_zarr(tmp_path / "nowhere.zarr", objects)
    odd = write_plate(tmp_path / "odd.zarr", {"A01": fields["A01"], "A02": [fields["A02"][0][:2]]},
                      CHANNELS, name="P2")
    # ngff-zarr labels the 2-channel field with the plate's 3 names: the array is checked against them
    with pytest.raises(InvalidInput, match=r"names 3 omero channels, its array has 2"):
        read_ome_zarr(odd, objects)
    image = json.loads((odd / "A" / "2" / "0" / "zarr.json").read_text())
    image["attributes"]["ome"]["omero"]["channels"] = image["attributes"]["ome"]["omero"]["channels"][:2]
    (odd / "A" / "2" / "0" / "zarr.json").write_text(json.dumps(image))
    with pytest.raises(InvalidInput, match=r"field A/2/0 has 2 channels \['DNA', 'Actin'\], the first field has 3"):
        read_ome_zarr(odd, objects)


def test_an_ome_zarr_plate_and_an_ome_tiff_on_s3(plates, s3, tmp_path, rng) -> None:
    objects, client = s3
    path, fields = plates["0.5"]
    for file in path.rglob("*"):
        if file.is_file():
            client.put_object(Bucket="plates", Key=f"p1.zarr/{file.relative_to(path).as_posix()}", Body=file.read_bytes())
    record = read_ome_zarr("s3://plates/p1.zarr/", objects)
    assert record.fields[0].channel_uris["DNA"] == "s3://plates/p1.zarr/A/1/0#c=0"
    uris = [record.fields[3].channel_uris[c] for c in CHANNELS]
    assert np.array_equal(read_field(uris, objects), fields["A02"][1])
    field = pixels(rng, (3, 16, 16), np.uint8)
    client.put_object(Bucket="plates", Key="f.ome.tif",
                      Body=write_ome_tiff(tmp_path / "f.ome.tif", [field], CHANNELS).read_bytes())
    assert np.array_equal(read_image("s3://plates/f.ome.tif#c=2", objects), field[2])


# ------------------------------------------------------------------------------------------ the pipeline


def test_ome_zarr_and_ome_tiff_plates_through_the_pipeline(plates, database, tmp_path) -> None:
    """Ingest, inspection, thumbnails and preprocessing of the same fields as OME-Zarr, as OME-TIFFs and as
    one TIFF per channel give the same cells."""
    from bioims.jobs.runner import LocalRunner
    from bioims.jobs.tables import RunnerTables
    from bioims.runtime import build

    path, fields = plates["0.5"]
    tiffs, ome = tmp_path / "tiffs", tmp_path / "ome"
    (tiffs / "P2").mkdir(parents=True)
    (ome / "P3").mkdir(parents=True)
    rows = ["Metadata_Plate,Metadata_Well,Metadata_Site," + ",".join(f"FileName_{c}" for c in CHANNELS)]
    for well, images in fields.items():
        for s, field in enumerate(images, start=1):
            write_ome_tiff(ome / "P3" / f"{well}_s{s}.ome.tif", [field], CHANNELS)
            for name, plane in zip(CHANNELS, field):
                tifffile.imwrite(tiffs / "P2" / f"{well}_s{s}_{name}.tif", plane)
            rows.append(f"P2,{well},s{s}," + ",".join(f"P2/{well}_s{s}_{c}.tif" for c in CHANNELS))
    (tiffs / "load.csv").write_text("\n".join(rows) + "\n")
    settings = Settings(home=tmp_path / "home", table_prefix="ome-", ingest_roots=(path, tiffs, ome))
    c = build(settings, database, ObjectStore(), LocalRunner(settings, RunnerTables(database)))
    database.create()
    records = [read_ome_zarr(path, c.objects),
               *read_loaddata(tiffs / "load.csv"),
               *scan_folder(ome, r"(?P<plate>P3)/(?P<well>[A-P]\d\d)_(?P<site>s\d)\.ome\.tif")]
    assert [r.channels for r in records] == [CHANNELS] * 3
    plate_ids = c.images.ingest(records).plate_ids
    spec = {"name": "ome", "input": {"width": 64, "height": 48, "depth": 1, "channels": list(CHANNELS)},
            "segmentation_channel": "DNA", "roi_size": 16, "min_nucleus_voxels": 4, "embedding_length": 8}
    for plate_id in plate_ids:
        processed = c.runner.run(c, "process-plate", {"plate_id": plate_id})["output"]
        assert processed["valid_images"] == 6 and processed["failed"] == []
    c.training.create_embedding(spec)
    done = c.runner.run(c, "preprocess", {"spec": "ome"})["output"]
    assert done["fields"] == 18 and done["failed"] == 0
    cells = [sorted(json.dumps(c.objects.get_json(c.keys.rois("ome", plate_id, f["image_id"]))["rois"])
                    for f in c.images.list_spec_fields("ome", plate_id)) for plate_id in plate_ids]
    assert sum(len(json.loads(rois)) for rois in cells[0]) > 20
    assert cells[0] == cells[1] == cells[2]


def test_a_tiff_plate_converted_to_ome_zarr_reads_back_the_same(tmp_path, rng, objects) -> None:
    from bioims.datasets.omezarr import well_metadata_csv, write_ome_zarr

    rows = ["Metadata_Plate,Metadata_Well,Metadata_Site,Metadata_Compound,Metadata_Concentration,"
            + ",".join(f"FileName_{c}" for c in CHANNELS)]
    planes = {}
    for well, compound in (("B03", "taxol"), ("C10", "DMSO")):
        for site in ("s1", "s2"):
            for c in CHANNELS:
                planes[well, site, c] = pixels(rng, (32, 40), np.uint16)
                tifffile.imwrite(tmp_path / f"{well}_{site}_{c}.tif", planes[well, site, c])
            rows.append(f"P9,{well},{site},{compound},0.5," + ",".join(f"{well}_{site}_{c}.tif" for c in CHANNELS))
    (tmp_path / "load.csv").write_text("\n".join(rows) + "\n")
    (record,) = read_loaddata(tmp_path / "load.csv")
    path = write_ome_zarr(record, objects, tmp_path / "zarr")
    assert path == tmp_path / "zarr" / "P9.ome.zarr" and not list((tmp_path / "zarr").glob(".*"))
    stamp = (path / "zarr.json").stat().st_mtime_ns
    assert write_ome_zarr(record, objects, tmp_path / "zarr") == path and (path / "zarr.json").stat().st_mtime_ns == stamp
    (tmp_path / "wells.csv").write_bytes(well_metadata_csv([record]))
    back = read_ome_zarr(path, objects, metadata_csv=tmp_path / "wells.csv")
    assert [(f.well, f.site) for f in back.fields] == [(f.well, f.site) for f in record.fields]
    assert [f.metadata for f in back.fields] == [{k: v for k, v in f.metadata.items()} for f in record.fields]
    for f in back.fields:
        field = read_field([f.channel_uris[c] for c in CHANNELS], objects)
        assert np.array_equal(field, np.stack([planes[f.well, f.site, c] for c in CHANNELS]))


def test_z_stacks_and_channel_order_of_an_ome_zarr_field(tmp_path, rng, objects) -> None:
    stack = pixels(rng, (2, 3, 16, 24), np.float32)
    path = write_plate(tmp_path / "z.zarr", {"C05": [stack]}, ("DNA", "Actin"), version="0.4", name="Z")
    record = read_ome_zarr(path, objects)
    uris = record.fields[0].channel_uris
    assert np.array_equal(read_field([uris["Actin"], uris["DNA"]], objects), stack[[1, 0]])
    assert np.array_equal(read_image(uris["Actin"], objects), stack[1])
    assert inspect_field(list(uris.values()), objects).depth == 3
    with pytest.raises(InvalidInput, match=r"z.zarr/C/5/0: no channel 2: the image has 2"):
        read_field([uris["DNA"], channel_ref(uris["DNA"].partition("#")[0], 2)], objects)


def test_paths_in_ome_zarr_metadata_never_leave_the_plate(plates, objects, tmp_path) -> None:
    plate = shutil.copytree(plates["0.5"][0], tmp_path / "evil.zarr")
    image = json.loads((plate / "A" / "1" / "0" / "zarr.json").read_text())
    image["attributes"]["ome"]["multiscales"][0]["datasets"][0]["path"] = "../../../../other.zarr/A/1/0/0"
    (plate / "A" / "1" / "0" / "zarr.json").write_text(json.dumps(image))
    with pytest.raises(InvalidInput, match=r"lacks its level-0 array '\.\./\.\./"):
        read_ome_zarr(plate, objects)
    well = json.loads((plate / "A" / "2" / "zarr.json").read_text())
    well["attributes"]["ome"]["well"]["images"][0]["path"] = "../../B/12/0"
    (plate / "A" / "2" / "zarr.json").write_text(json.dumps(well))
    with pytest.raises(InvalidInput, match=r"well A/2 field '\.\./\.\./B/12/0' is not a path segment"):
        read_ome_zarr(plate, objects)
    root = json.loads((plate / "zarr.json").read_text())
    root["attributes"]["ome"]["plate"]["rows"].append({"name": ".."})
    root["attributes"]["ome"]["plate"]["columns"].append({"name": ".."})
    root["attributes"]["ome"]["plate"]["wells"].insert(0, {"path": "../..", "rowIndex": 0, "columnIndex": 0})
    (plate / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(InvalidInput, match=r"well row '\.\.' is not a path segment"):
        read_ome_zarr(plate, objects)


def test_an_api_manifest_never_has_a_file_outside_the_roots_opened(tmp_path, rng, monkeypatch) -> None:
    from bioims.imaging import ome
    from bioims.store.roots import IngestRoots

    write_ome_tiff(tmp_path / "A01.ome.tif", [pixels(rng, (3, 8, 8), np.uint16)], CHANNELS)
    manifest = {"plateSourceId": "P1", "images": [{"wellId": "A01", "imageSourceId": "s1", "channelKeys": [
        {"name": "all", "keysuffix": str(tmp_path / "A01.ome.tif")}]}]}
    opened, real = [], tifffile.TiffFile
    monkeypatch.setattr(ome.tifffile, "TiffFile", lambda path: opened.append(path) or real(path))
    roots = IngestRoots([tmp_path / "elsewhere"])
    with pytest.raises(InvalidInput, match=r"images\[0\]: image file://.*A01.ome.tif is outside the ingest roots"):
        read_manifest(json.dumps(manifest), check=roots.check)
    assert opened == []
    assert read_manifest(json.dumps(manifest), check=IngestRoots([tmp_path]).check).channels == CHANNELS
    assert len(opened) == 1


def test_a_request_with_a_bad_channel_fragment_is_refused_at_registration(database, tmp_path) -> None:
    from bioims.jobs.runner import LocalRunner
    from bioims.jobs.tables import RunnerTables
    from bioims.runtime import build

    settings = Settings(home=tmp_path / "home", table_prefix="frag-", input_bucket="plates")
    c = build(settings, database, ObjectStore(), LocalRunner(settings, RunnerTables(database)))
    database.create()
    for fragment in ("c=../../etc", "c=" + "9" * 3000, "s=1"):
        manifest = {"plateSourceId": "P1", "images": [{"wellId": "A01", "imageSourceId": "s1", "imageBucket": "plates",
                                                       "channelKeys": [{"name": "DNA", "keysuffix": f"a.tif#{fragment}"}]}]}
        with pytest.raises(InvalidInput, match="is not a channel reference"):
            c.images.populate_source_plate(manifest)
    assert c.images.list_plates() == []
