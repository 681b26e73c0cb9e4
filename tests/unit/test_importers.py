"""The three importers: LoadData / BBBC021 CSV, the seed's sourcePlateInfo JSON, and a folder scan."""

from __future__ import annotations

import gzip
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from bioims.datasets.folder import scan_folder
from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.manifest import read_manifest
from bioims.errors import InvalidInput

BBBC021 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bbbc021"

LOADDATA = """\
FileName_DNA,PathName_DNA,FileName_Actin,PathName_Actin,Metadata_Plate,Metadata_Well,Metadata_Site,\
Metadata_Compound,Metadata_Concentration,Metadata_MoA,Metadata_Batch,Metadata_Replicate,Metadata_CellLine
a_d.tif,images/P1,a_a.tif,images/P1,P1,A01,1,taxol,0.3,Microtubule stabilizers,B1,1,MCF7
b_d.tif,images/P1,b_a.tif,images/P1,P1,A01,2,taxol,0.3,Microtubule stabilizers,B1,1,MCF7
c_d.tif,images/P2,c_a.tif,images/P2,P2,B02,1,DMSO,0,,B2,2,
"""

BBBC021_COLUMNS = (
    "TableNumber,ImageNumber,Image_FileName_DAPI,Image_PathName_DAPI,Image_FileName_Tubulin,"
    "Image_PathName_Tubulin,Image_FileName_Actin,Image_PathName_Actin,Image_Metadata_Plate_Actin,"
    "Image_Metadata_Plate_DAPI,Image_Metadata_Well_DAPI,Replicate,Image_Metadata_Compound,"
    "Image_Metadata_Concentration"
)
BBBC021_STYLE = "".join(
    [f"{BBBC021_COLUMNS}\n"]
    + [
        f"4,{n},{w}_{s}_w1AB.tif,Week4/Week4_27481,{w}_{s}_w2CD.tif,Week4/Week4_27481,{w}_{s}_w4EF.tif,"
        f"Week4/Week4_27481,X,Week4_27481,{w},1,{compound},{concentration}\n"
        for n, (w, s, compound, concentration) in enumerate(
            [("G10", "s1", "taxol", "0.003"), ("G10", "s2", "taxol", "0.003"), ("B02", "s1", "DMSO", "0.0"),
             ("C03", "s1", "AZ-U", "1.0")],
            start=1,
        )
    ]
)

MOA = """\
"compound",concentration,"moa"
"taxol",0.003000,"Microtubule stabilizers"
"taxol",0.300000,"Microtubule stabilizers"
"DMSO",0.000000,"DMSO"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def all_fields(plates: list[Any]) -> list[Any]:
    return [f for p in plates for f in p.fields]


# ============================================================================================ read_loaddata
def test_loaddata_dialect(tmp_path: Path) -> None:
    csv = write(tmp_path / "load.csv", LOADDATA)
    plates = read_loaddata(csv, experiment="exp1")

    assert [p.source_id for p in plates] == ["P1", "P2"]
    assert [p.batch for p in plates] == ["B1", "B2"]
    assert {p.experiment for p in plates} == {"exp1"}
    assert plates[0].channels == ("DNA", "Actin")
    first = plates[0].fields[0]
    assert (first.well, first.site) == ("A01", "1")
    assert first.channel_uris == {
        "DNA": (tmp_path / "images/P1/a_d.tif").as_uri(),
        "Actin": (tmp_path / "images/P1/a_a.tif").as_uri(),
    }
    assert first.metadata == {
        "compound": "taxol",
        "concentration": 0.3,
        "moa": "Microtubule stabilizers",
        "batch": "B1",
        "replicate": 1,
        "CellLine": "MCF7",
    }
    assert type(first.metadata["replicate"]) is int
    # empty cells give no key
    assert plates[1].fields[0].metadata == {
        "compound": "DMSO",
        "concentration": 0.0,
        "batch": "B2",
        "replicate": 2,
    }


def test_bbbc021_dialect(tmp_path: Path) -> None:
    csv = write(tmp_path / "image.csv", BBBC021_STYLE)
    (plate,) = read_loaddata(csv, root="s3://bucket/bbbc021")

    assert plate.source_id == "Week4_27481"  # from the first channel's plate column, not Actin's
    assert plate.channels == ("DAPI", "Tubulin", "Actin")
    assert plate.batch == "Week4"
    sites = [(f.well, f.site) for f in plate.fields]
    assert sites == [("G10", "s1"), ("G10", "s2"), ("B02", "s1"), ("C03", "s1")]
    assert plate.fields[0].channel_uris["Actin"] == "s3://bucket/bbbc021/Week4/Week4_27481/G10_s1_w4EF.tif"
    assert plate.fields[0].metadata == {
        "compound": "taxol",
        "concentration": 0.003,
        "batch": "Week4",
        "replicate": 1,
    }


def test_gzipped_csv(tmp_path: Path) -> None:
    csv = tmp_path / "image.csv.gz"
    csv.write_bytes(gzip.compress(BBBC021_STYLE.encode()))
    (plate,) = read_loaddata(csv)
    assert len(plate.fields) == 4
    assert plate.fields[0].channel_uris["DAPI"] == (tmp_path / "Week4/Week4_27481/G10_s1_w1AB.tif").as_uri()


def test_local_root_keeps_symlinks_and_quotes(tmp_path: Path) -> None:
    target = tmp_path / "real data"
    target.mkdir()
    link = tmp_path / "link dir"
    link.symlink_to(target)
    csv = write(tmp_path / "csvs" / "load.csv", LOADDATA)
    plates = read_loaddata(csv, root=link)
    uri = plates[0].fields[0].channel_uris["DNA"]
    assert uri == f"file://{tmp_path}/link%20dir/images/P1/a_d.tif"
    assert read_loaddata(csv, root=link.as_uri())[0].fields[0].channel_uris["DNA"] == uri


def test_absolute_pathname_used_as_is(tmp_path: Path) -> None:
    text = "FileName_DNA,PathName_DNA,Metadata_Plate,Metadata_Well\nx.tif,/abs/dir,P1,A01\nx.tif,,P1,A02\n"
    csv = write(tmp_path / "load.csv", text)
    (plate,) = read_loaddata(csv, root="s3://b/prefix/")
    assert [f.channel_uris["DNA"] for f in plate.fields] == ["file:///abs/dir/x.tif", "s3://b/prefix/x.tif"]


def test_site_falls_back_to_ordinal(tmp_path: Path) -> None:
    text = (
        "FileName_DNA,Metadata_Plate,Metadata_Well\n"
        "a.tif,P1,A01\nb.tif,P1,A01\nc.tif,P1,A02\nB02_s3_w1.tif,P1,B02\n"  # one name has a site: not enough
    )
    (plate,) = read_loaddata(write(tmp_path / "load.csv", text))
    sites = [(f.well, f.site) for f in plate.fields]
    assert sites == [("A01", "f1"), ("A01", "f2"), ("A02", "f1"), ("B02", "f1")]
    assert plate.batch is None
    assert plate.fields[0].metadata == {}


def test_moa_join(tmp_path: Path) -> None:
    text = (
        "FileName_DNA,Metadata_Plate,Metadata_Well,Metadata_Compound,Metadata_Concentration,Metadata_MoA\n"
        "a.tif,P1,A01,taxol,3e-3,\n"  # same number, other formatting
        "b.tif,P1,A02,taxol,0.30000000001,\n"  # float noise
        "c.tif,P1,A03,taxol,10,\n"  # not in the table: no moa
        "d.tif,P1,A04,DMSO,0.0,\n"
        "e.tif,P1,A05,other,1,Own MOA\n"  # not in the table: keeps its column's MOA
        "f.tif,P1,A06,taxol,0.003,Wrong\n"  # the table takes precedence
    )
    csv = write(tmp_path / "load.csv", text)
    moa = write(tmp_path / "moa.csv", MOA)
    (plate,) = read_loaddata(csv, moa_csv=moa)
    assert [f.metadata.get("moa") for f in plate.fields] == [
        "Microtubule stabilizers",
        "Microtubule stabilizers",
        None,
        "DMSO",
        "Own MOA",
        "Microtubule stabilizers",
    ]
    assert "moa" not in plate.fields[2].metadata


def test_batch_column_wins_over_plate_name(tmp_path: Path) -> None:
    text = (
        "FileName_DNA,Metadata_Plate,Metadata_Well,Metadata_Batch\n"
        "a.tif,Week1_1,A01,b7\nb.tif,Week1_1,A02,\n"
    )
    (plate,) = read_loaddata(write(tmp_path / "load.csv", text))
    assert [f.metadata["batch"] for f in plate.fields] == ["b7", "Week1"]
    assert plate.batch is None  # the fields disagree


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "LoadData CSV {csv} does not exist"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "LoadData CSV {csv} is not a CSV file"),
        (b"a,b\n1,2,3\n", "is not a CSV file: its rows have more fields than its header"),
        (b"", "LoadData CSV {csv} is empty"),
        (b"FileName_DNA,Metadata_Plate,Metadata_Well\n", "LoadData CSV {csv} has no data rows"),
        (b"a,b\n1,2\n", "LoadData CSV {csv} has no FileName_<channel> or Image_FileName_<channel> columns"),
        (
            b"FileName_DNA,Metadata_Plate\nx.tif,P1\n",
            "LoadData CSV {csv} is missing required column(s): Metadata_Well",
        ),
        (
            b"Image_FileName_DAPI,Other\nx.tif,P1\n",
            "missing required column(s): Image_Metadata_Plate, Image_Metadata_Well",
        ),
        (b"FileName_DNA,Metadata_Plate,Metadata_Well\nx.tif,P1,A01\n,P1,A02\n", "line 3: empty FileName_DNA"),
        (b"FileName_DNA,Metadata_Plate,Metadata_Well\nx.tif,P1,\n", "line 2: empty Metadata_Well"),
        (
            b"FileName_DNA,Metadata_Plate,Metadata_Well,Metadata_Concentration\nx.tif,P1,A01,high\n",
            "line 2: Metadata_Concentration 'high' is not a number",
        ),
        (
            b"FileName_DNA,Metadata_Plate,Metadata_Well,Metadata_Replicate\nx.tif,P1,A01,1.5\n",
            "line 2: Metadata_Replicate '1.5' is not an integer",
        ),
        (
            b"FileName_DNA,Metadata_Plate,Metadata_Well,Metadata_Site\na.tif,P1,A01,1\nb.tif,P1,A02,1\n"
            b"c.tif,P1,A01,1\n",
            "duplicate field plate 'P1' well 'A01' site '1' on lines 2 and 4",
        ),
        (
            b"FileName_DNA,Metadata_Plate,Metadata_Well\nA01_s1_w1.tif,P1,A01\nA01_s1_w1.tif,P1,A01\n",
            "duplicate field plate 'P1' well 'A01' site 's1' on lines 2 and 3",
        ),
    ],
)
def test_loaddata_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    csv = tmp_path / "load.csv"
    if content is not None:
        csv.write_bytes(content)
    with pytest.raises(InvalidInput) as error:
        read_loaddata(csv)
    assert message.format(csv=csv) in error.value.message


def test_not_a_gzip_file(tmp_path: Path) -> None:
    csv = tmp_path / "load.csv.gz"
    csv.write_bytes(b"plain text")
    with pytest.raises(InvalidInput, match="cannot be read: Not a gzipped file"):
        read_loaddata(csv)


@pytest.mark.parametrize(
    ("moa", "message"),
    [
        (None, "MOA CSV {moa} does not exist"),
        ("compound,dose,moa\ntaxol,1,x\n", "MOA CSV {moa} is missing required column(s): concentration"),
        ("compound,concentration\ntaxol,1\n", "MOA CSV {moa} is missing required column(s): moa"),
        (
            "compound,concentration,moa\ntaxol,0.3,A\nDMSO,0,DMSO\ntaxol,0.300000,B\n",
            "MOA CSV {moa}: line 4: conflicting MOA for compound 'taxol' at concentration 0.3: 'A' and 'B'",
        ),
        ("compound,concentration,moa\ntaxol,0.3,\n", "MOA CSV {moa}: line 2: empty moa"),
        ("compound,concentration,moa\ntaxol,lots,A\n", "line 2: concentration 'lots' is not a number"),
    ],
)
def test_moa_csv_errors(tmp_path: Path, moa: str | None, message: str) -> None:
    csv = write(tmp_path / "load.csv", LOADDATA)
    moa_csv = tmp_path / "moa.csv"
    if moa is not None:
        write(moa_csv, moa)
    with pytest.raises(InvalidInput) as error:
        read_loaddata(csv, moa_csv=moa_csv)
    assert message.format(moa=moa_csv) in error.value.message


def test_moa_table_with_duplicate_rows_is_fine(tmp_path: Path) -> None:
    moa = write(tmp_path / "moa.csv", MOA + '"taxol",0.3,"Microtubule stabilizers"\n')
    plates = read_loaddata(write(tmp_path / "load.csv", LOADDATA), moa_csv=moa)
    assert plates[1].fields[0].metadata["moa"] == "DMSO"


def test_moa_join_needs_treatment_columns(tmp_path: Path) -> None:
    csv = write(tmp_path / "load.csv", "FileName_DNA,Metadata_Plate,Metadata_Well\na.tif,P1,A01\n")
    with pytest.raises(InvalidInput, match="has no compound and concentration columns to join the MOA table"):
        read_loaddata(csv, moa_csv=write(tmp_path / "moa.csv", MOA))


def test_bbbc021_real_metadata() -> None:
    image_csv, moa_csv = BBBC021 / "BBBC021_v1_image.csv.gz", BBBC021 / "BBBC021_v1_moa.csv"
    if not (image_csv.is_file() and moa_csv.is_file()):
        pytest.skip(f"BBBC021 metadata not found in {BBBC021}")
    start = time.perf_counter()
    plates = read_loaddata(image_csv, moa_csv=moa_csv, root="/nonexistent")
    assert time.perf_counter() - start < 2.0

    fields = all_fields(plates)
    assert len(plates) == 55
    assert len(fields) == 13_200
    assert {p.channels for p in plates} == {("DAPI", "Tubulin", "Actin")}
    assert len({p.batch for p in plates}) == 10
    assert all(p.batch and p.source_id.startswith(p.batch + "_") for p in plates)
    moas = {f.metadata["moa"] for f in fields if "moa" in f.metadata}
    assert "DMSO" in moas and len(moas - {"DMSO"}) == 12
    annotated = [f.metadata for f in fields if f.metadata.get("moa", "DMSO") != "DMSO"]
    assert len({m["compound"] for m in annotated}) == 38
    assert len({(m["compound"], m["concentration"]) for m in annotated}) == 103
    assert all(uri.startswith("file:///nonexistent/Week") for f in fields for uri in f.channel_uris.values())
    assert all(len({(f.well, f.site) for f in p.fields}) == len(p.fields) for p in plates)


# ============================================================================================ read_manifest
def seed_image(well: str = "B02", site: str = "B02_s1", **extra: Any) -> dict[str, Any]:
    image = {
        "wellId": well,
        "imageSourceId": site,
        "sourcePlateId": "Week1_22123",
        "sourceWellId": well,
        "channelKeys": [
            {"name": "DAPI", "keysuffix": f"Week1/Week1_22123/{site}_w1.tif"},
            {"name": "Tubulin", "keysuffix": f"Week1/Week1_22123/{site}_w2.tif"},
            {"name": "Actin", "keysuffix": f"Week1/Week1_22123/{site}_w4.tif"},
        ],
        "experiment": "BBBC021",
        "imageBucket": "my-bucket",
        "imageKeyPrefix": "raw/",
        "trainCategory": "moa",
        "trainLabel": "Actin disruptors",
        "compound": "cytochalasin B",
        "concentration": 10,
        "batch": "Week1",
        "replicate": 1,
    }
    image.update(extra)
    return image


def seed(*images: dict[str, Any]) -> dict[str, Any]:
    return {"plateSourceId": "Week1_22123", "images": list(images)}


def test_manifest_seed_format() -> None:
    document = seed(
        seed_image(), seed_image(site="B02_s2"), seed_image(well="C05", site="C05_s1", trainLabel="DMSO")
    )
    plate = read_manifest(json.dumps(document).encode(), source="seed.json")

    assert plate.source_id == "Week1_22123"
    assert plate.channels == ("DAPI", "Tubulin", "Actin")
    assert plate.experiment == "BBBC021"
    assert plate.batch == "Week1"
    sites = [(f.well, f.site) for f in plate.fields]
    assert sites == [("B02", "B02_s1"), ("B02", "B02_s2"), ("C05", "C05_s1")]
    first = plate.fields[0]
    assert first.channel_uris["Tubulin"] == "s3://my-bucket/raw/Week1/Week1_22123/B02_s1_w2.tif"
    assert first.metadata == {
        "compound": "cytochalasin B",
        "concentration": 10.0,
        "batch": "Week1",
        "replicate": 1,
        "moa": "Actin disruptors",
    }
    assert type(first.metadata["concentration"]) is float
    assert plate.fields[2].metadata["moa"] == "DMSO"
    assert read_manifest(json.dumps(document)) == plate == read_manifest(document)


def test_manifest_minimal_image_and_other_category() -> None:
    image = {
        "wellId": "A01",
        "imageSourceId": "A01_s1",
        "channelKeys": [{"name": "DNA", "keysuffix": "/data/A01_s1.tif"}],
        "trainCategory": "phenotype",
        "trainLabel": "round",
        "cellLine": "MCF7",
    }
    plate = read_manifest({"plateSourceId": "Week3_1", "images": [image]})
    assert plate.experiment == "default"
    assert plate.fields[0].channel_uris == {"DNA": "file:///data/A01_s1.tif"}
    assert plate.fields[0].metadata == {"cellLine": "MCF7", "phenotype": "round", "batch": "Week3"}


def test_manifest_without_bucket(tmp_path: Path) -> None:
    keys = [{"name": "DNA", "keysuffix": "p1/a.tif"}, {"name": "Actin", "keysuffix": "file:///x/b.tif"}]
    image = {"wellId": "A01", "imageSourceId": "s1", "channelKeys": keys}
    document = {"plateSourceId": "P1", "images": [image]}
    plate = read_manifest(document, root=tmp_path)
    assert plate.fields[0].channel_uris == {
        "DNA": (tmp_path / "p1/a.tif").as_uri(),
        "Actin": "file:///x/b.tif",
    }
    assert read_manifest(document, root="s3://b/pre").fields[0].channel_uris["DNA"] == "s3://b/pre/p1/a.tif"
    with pytest.raises(InvalidInput, match=r"images\[0\].channelKeys\[0\]: relative keysuffix 'p1/a.tif'"):
        read_manifest(document)


def without(image: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in image.items() if k != key}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"plateSourceId": "P1", "images": [}', "manifest seed.json is not valid JSON: line 1 column 36"),
        (b"\xff\xfe\x00{", "manifest seed.json is not valid JSON"),
        ("[1, 2]", "manifest seed.json must be a JSON object, not list"),
        ({"images": [seed_image()]}, "manifest seed.json: missing key 'plateSourceId'"),
        ({"plateSourceId": "", "images": [seed_image()]}, "'plateSourceId' must be a non-empty string"),
        ({"plateSourceId": "P1", "images": []}, "manifest seed.json: 'images' must be a non-empty list"),
        (seed(seed_image(), "B03"), r"manifest seed.json: images[1] must be an object"),
        (seed(seed_image(), without(seed_image(), "wellId")), "images[1]: missing key 'wellId'"),
        (seed(without(seed_image(), "imageSourceId")), "images[0]: missing key 'imageSourceId'"),
        (seed(without(seed_image(), "channelKeys")), "images[0]: missing key 'channelKeys'"),
        (seed(seed_image(channelKeys=[])), "images[0]: 'channelKeys' must be a non-empty list"),
        (seed(seed_image(channelKeys=[{"name": "D"}])), "images[0].channelKeys[0]: missing key 'keysuffix'"),
        (seed(seed_image(channelKeys=[{"keysuffix": "a"}])), "images[0].channelKeys[0]: missing key 'name'"),
        (
            seed(seed_image(channelKeys=[{"name": "D", "keysuffix": "a"}, {"name": "D", "keysuffix": "b"}])),
            "images[0].channelKeys[1]: channel 'D' appears twice",
        ),
        (
            seed(seed_image(), seed_image(site="B02_s2", channelKeys=seed_image()["channelKeys"][::-1])),
            "images[1]: channels ['Actin', 'Tubulin', 'DAPI'] differ from images[0]'s "
            "['DAPI', 'Tubulin', 'Actin']",
        ),
        (
            seed(seed_image(), seed_image(site="B02_s2", channelKeys=seed_image()["channelKeys"][:2])),
            "images[1]: channels ['DAPI', 'Tubulin'] differ",
        ),
        (
            seed(seed_image(), seed_image(well="C03"), seed_image()),
            "images[2]: duplicate well 'B02' imageSourceId 'B02_s1' (also images[0])",
        ),
        (
            seed(seed_image(sourcePlateId="Week2_1")),
            "images[0]: sourcePlateId 'Week2_1' is not plate 'Week1_22123'",
        ),
        (
            seed(seed_image(), seed_image(site="B02_s2", experiment="other")),
            "images belong to several experiments: ['BBBC021', 'other']",
        ),
        (seed(seed_image(concentration="lots")), "images[0]: 'concentration' must be a number, not 'lots'"),
        (seed(seed_image(replicate=1.5)), "images[0]: 'replicate' must be an integer, not 1.5"),
        (seed(seed_image(compound=7)), "images[0]: 'compound' must be a string, not 7"),
        (seed(seed_image(moa="Other")), "images[0]: trainLabel 'Actin disruptors' contradicts moa 'Other'"),
    ],
)
def test_manifest_errors(data: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        read_manifest(data, source="seed.json")
    assert message in error.value.message


# ============================================================================================ scan_folder
PATTERN = r"^(?P<plate>[^/]+)/(?P<well>[A-P]\d\d)_(?P<site>s\d+)_w(?P<channel>\d+)\.(?i:tiff?)$"


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not really an image")


def test_scan_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "images"
    for well_site in ("B02_s1", "B02_s2", "C03_s1"):
        touch(root, *(f"Week2_1/{well_site}_w{c}.tif" for c in (1, 2, 10)))
    touch(root, "Week2_2/D04_s1_w1.TIF", "Week2_2/D04_s1_w2.tiff", "Week2_2/D04_s1_w10.tif")
    touch(root, "Week2_1/thumb.png", "Week2_1/notes.txt")
    metadata = write(
        tmp_path / "wells.csv",
        "Metadata_Plate,Metadata_Well,Metadata_Compound,Metadata_Concentration,Metadata_MoA,Replicate,Notes\n"
        "Week2_1,B02,taxol,0.3,Microtubule stabilizers,2,first\n"
        "Week2_1,C03,DMSO,0,DMSO,1,\n"
        "Week9_9,A01,unused,1,,,\n",
    )
    with caplog.at_level(logging.DEBUG, logger="bioims.datasets.folder"):
        plates = scan_folder(root, PATTERN, metadata_csv=metadata, experiment="exp")

    assert "1 image files under" in caplog.text  # thumb.png; notes.txt is not an image
    assert [p.source_id for p in plates] == ["Week2_1", "Week2_2"]
    assert {p.channels for p in plates} == {("1", "2", "10")}
    assert {p.experiment for p in plates} == {"exp"}
    assert [p.batch for p in plates] == ["Week2", "Week2"]
    assert [(f.well, f.site) for f in plates[0].fields] == [("B02", "s1"), ("B02", "s2"), ("C03", "s1")]
    first = plates[0].fields[0]
    assert first.channel_uris["10"] == (root / "Week2_1/B02_s1_w10.tif").as_uri()
    assert first.metadata == {
        "compound": "taxol",
        "concentration": 0.3,
        "moa": "Microtubule stabilizers",
        "replicate": 2,
        "Notes": "first",
        "batch": "Week2",
    }
    assert plates[1].fields[0].channel_uris["1"].endswith("/Week2_2/D04_s1_w1.TIF")
    assert plates[1].fields[0].metadata == {"batch": "Week2"}


def test_scan_folder_named_channels_and_default_site(tmp_path: Path) -> None:
    touch(tmp_path, "P1/A01-DAPI.png", "P1/A01-Actin.png", "P1/A02-DAPI.png", "P1/A02-Actin.png")
    link = tmp_path.parent / f"{tmp_path.name}-link"
    link.symlink_to(tmp_path)
    (plate,) = scan_folder(link, r"(?P<plate>\w+)/(?P<well>\w+)-(?P<channel>\w+)")
    assert plate.channels == ("Actin", "DAPI")
    assert plate.batch is None
    assert [(f.well, f.site) for f in plate.fields] == [("A01", "s1"), ("A02", "s1")]
    assert plate.fields[0].channel_uris["DAPI"] == f"file://{link}/P1/A01-DAPI.png"  # symlink kept


def test_scan_folder_incomplete_fields(tmp_path: Path) -> None:
    touch(tmp_path, "P1/A01_s1_w1.tif", "P1/A01_s1_w2.tif", "P1/A02_s1_w1.tif", "P1/A03_s2_w2.tif")
    with pytest.raises(InvalidInput) as error:
        scan_folder(tmp_path, PATTERN)
    assert error.value.message == (
        f"2 field(s) under {tmp_path} lack channels of ['1', '2']: "
        "P1/A02/s1 (missing 2); P1/A03/s2 (missing 1)"
    )


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(?P<plate>[^/]+/(?P<well>\w+)", "is not a valid regular expression: missing ), unterminated"),
        (r"(?P<plate>[^/]+)/(?P<well>\w+)", "P1/A01_s1_w1.tif: not a multi-channel OME-TIFF"),
        (r"(?P<plate>[^/]+)/(?P<well>\w+)", "so each file must be a multi-channel OME-TIFF"),
        (r"(?P<plate>x)(?P<chan>y)", r"lacks the named group(s) (?P<well>...)"),
        (r"(?P<plate>Z+)/(?P<well>\w+)_(?P<channel>\w+)", "no image file under {root} matches the pattern"),
        (  # the site is not captured, so both files are site s1
            r"(?P<plate>[^/]+)/(?P<well>[A-P]\d\d)_.*_w(?P<channel>\d)",
            "P1/A01_s1_w1.tif and P1/A01_s2_w1.tif are both plate 'P1' well 'A01' site 's1' channel '1'",
        ),
    ],
)
def test_scan_folder_pattern_errors(tmp_path: Path, pattern: str, message: str) -> None:
    touch(tmp_path, "P1/A01_s1_w1.tif", "P1/A01_s2_w1.tif")
    with pytest.raises(InvalidInput) as error:
        scan_folder(tmp_path, pattern)
    assert message.format(root=tmp_path) in error.value.message


def test_scan_folder_missing_root(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="image folder .*nope does not exist or is not a folder"):
        scan_folder(tmp_path / "nope", PATTERN)


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("plate,compound\nP1,x\n", "metadata CSV {csv} is missing required column(s): well"),
        ("plate,well,Metadata_Plate\nP1,A01,P1\n", "has two columns for 'plate': plate and Metadata_Plate"),
        ("plate,well\nP1,A01\n,A02\n", "metadata CSV {csv}: line 3: empty plate"),
        ("plate,well\nP1,A01\nP1,A02\nP1,A02\n", "plate 'P1' well 'A02' appears twice (lines 3 and 4)"),
        ("plate,well,replicate\nP1,A01,first\n", "line 2: replicate 'first' is not an integer"),
    ],
)
def test_scan_folder_metadata_errors(tmp_path: Path, csv: str, message: str) -> None:
    touch(tmp_path / "images", "P1/A01_s1_w1.tif")
    path = write(tmp_path / "wells.csv", csv)
    with pytest.raises(InvalidInput) as error:
        scan_folder(tmp_path / "images", PATTERN, metadata_csv=path)
    assert message.format(csv=path) in error.value.message
