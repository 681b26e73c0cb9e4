"""The `bioims` command as users run it: a real process against a real dynalite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bioims.ids import new_id
from tests.conftest import BBBC021
from tests.unit.test_image_management import make_plate


@pytest.fixture
def bioims(stack_settings, tmp_path):
    """Run `python -m bioims ARGS` on the session's dynalite with a table prefix of this test's own."""
    env = {**os.environ, **stack_settings.to_env(), "BIOIMS_TABLE_PREFIX": f"cli{new_id()[:8]}-",
           "BIOIMS_ARTIFACT_URI": (tmp_path / "artifacts").as_uri()}

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "bioims", *args], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == expect, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        return proc

    def run_json(*args: str) -> object:
        return json.loads(run(*args, "--json").stdout)

    run.json = run_json  # type: ignore[attr-defined]
    run.env = env  # type: ignore[attr-defined]
    return run


def write_loaddata(tmp_path: Path, rng) -> Path:
    record = make_plate(tmp_path, rng, source="Week2_7")
    lines = ["Metadata_Plate,Metadata_Well,Metadata_Site,FileName_DAPI,PathName_DAPI,FileName_Tubulin,"
             "PathName_Tubulin,FileName_Actin,PathName_Actin,Metadata_Compound,Metadata_Concentration"]
    for f in record.fields:
        paths = [Path(u[len("file://"):]) for u in f.channel_uris.values()]
        lines.append(",".join([record.source_id, f.well, f.site] + [x for p in paths for x in (p.name, str(p.parent))]
                              + [f.metadata["compound"], str(f.metadata["concentration"])]))
    csv = tmp_path / "loaddata.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def test_ingest_process_and_browse(bioims, tmp_path, rng):
    csv = write_loaddata(tmp_path, rng)
    first = bioims.json("ingest", "loaddata", str(csv))
    assert (first["plates"], first["wells"], first["images"], first["invalid_images"]) == (1, 2, 4, 0)
    assert bioims.json("ingest", "loaddata", str(csv))["plates"] == 0
    plate_id = first["plate_ids"][0]
    shown = bioims.json("plate", "show", "Week2_7")
    assert shown["plate_id"] == plate_id and shown["images"] == 4 and shown["status"] == "registered"
    processed = bioims.json("plate", "process", plate_id, "--workers", "2")
    assert processed["executions"][0]["output"]["thumbnails"] == 8
    assert bioims.json("plate", "validate", plate_id)["valid"] is True
    assert [p["plate_id"] for p in bioims.json("plate", "compatible", "--width", "40", "--height", "32",
                                               "--channels", "3")] == [plate_id]
    images = bioims.json("image", "list", "--plate", plate_id)
    shown = bioims.json("image", "show", images[0]["image_id"])
    assert {"plate:Week2_7", "batch:Week2", "concentration:0.3"} < set(shown["tags"])
    assert {"compound:taxol", "compound:DMSO"} & set(shown["tags"]) and len(shown["artifacts"]) == 2
    assert {t["value"] for t in bioims.json("tag", "list", "--type", "compound")} == {"compound:taxol", "compound:DMSO"}
    assert bioims.json("config", "set", "thumbnail-widths", "[64]")["version"] == 1
    assert bioims.json("config", "get", "thumbnail-widths") == [64]
    assert len(bioims.json("config", "history", "thumbnail-widths")) == 1
    log = bioims.json("message", "list", shown_plate_log(bioims, plate_id))
    assert any("validated" in m["message"] for m in log)
    human = bioims("plate", "list").stdout
    assert "Week2_7" in human and "validated" in human


def shown_plate_log(bioims, plate_id: str) -> str:
    return bioims.json("plate", "show", plate_id)["message_id"]


def test_errors_are_one_line_with_exit_1(bioims, tmp_path):
    proc = bioims("plate", "show", "nope", expect=1)
    assert proc.stderr.strip() == "error: no plate 'nope'" and proc.stdout == ""
    proc = bioims("ingest", "loaddata", str(tmp_path / "missing.csv"), expect=1)
    assert proc.stderr.startswith("error: ") and "missing.csv" in proc.stderr and proc.stderr.count("\n") == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in bioims("ingest", "manifest", str(bad), expect=1).stderr
    header_only = tmp_path / "cols.csv"
    header_only.write_text("FileName_DAPI,PathName_DAPI\na.tif,.\n")
    assert "missing required column" in bioims("ingest", "loaddata", str(header_only), expect=1).stderr
    assert bioims("config", "get", "never-set", expect=1).stderr.startswith("error: ")
    bioims("plate", "frobnicate", expect=2)
    bioims("ingest", "loaddata", expect=2)


@pytest.mark.skipif(not BBBC021.is_dir(), reason="BBBC021 metadata not beside the repository")
def test_bbbc021_layout_registers_once(bioims):
    args = ("ingest", "loaddata", str(BBBC021 / "BBBC021_v1_image.csv.gz"), "--moa",
            str(BBBC021 / "BBBC021_v1_moa.csv"), "--root", "/nonexistent")
    first = bioims.json(*args)
    assert (first["plates"], first["images"], first["invalid_images"]) == (55, 13200, 13200)
    second = bioims.json(*args)
    assert (second["plates"], second["images"], len(second["skipped_plates"])) == (0, 0, 55)
    assert len(bioims.json("tag", "list", "--type", "moa")) == 13  # 12 MOAs + DMSO
    assert len(bioims.json("tag", "list", "--type", "plate")) == 55
    image = bioims.json("image", "list", "--plate", "Week4_27481")[0]
    assert image["status"] == "invalid" and image["error"].startswith("missing file: /nonexistent/Week4/")


def test_job_entry_point_runs_one_unit(bioims, tmp_path, rng):
    """`python -m bioims.jobs STEP --params JSON`: the contract AWS Batch and the local runner share."""
    csv = write_loaddata(tmp_path, rng)
    plate_id = bioims.json("ingest", "loaddata", str(csv))["plate_ids"][0]
    image_id = bioims.json("image", "list", "--plate", plate_id)[0]["image_id"]

    def job(*args: str, expect: int = 0):
        proc = subprocess.run([sys.executable, "-m", "bioims.jobs", *args], capture_output=True, text=True,
                              env=bioims.env, timeout=120)
        assert proc.returncode == expect, proc.stderr
        return proc
    out = json.loads(job("inspect-image", "--params", json.dumps({"image_id": image_id})).stdout)
    assert out == {"image_id": image_id, "status": "valid", "width": 40, "height": 32, "depth": 1,
                   "channels": 3, "dtype": "uint16"}
    again = json.loads(job("inspect-image", "--params", json.dumps({"image_id": image_id})).stdout)
    assert again["skipped"] is True
    failed = json.loads(job("inspect-image", "--params", '{"image_id": "nope"}', expect=1).stdout)
    assert failed["failure"] == "no image 'nope'"
    job("inspect-image", "--params", "{not json", expect=2)


def test_call_reaches_every_operation_by_its_seed_name(bioims):
    assert bioims.json("call", "artifact", "setParameter", '{"parameter": "k", "value": "v"}')["version"] == 1
    assert bioims.json("call", "artifact", "getParameter", '{"parameter": "k"}') == "v"
    message_id = bioims.json("call", "artifact", "createMessage", '{"message": "hello"}')
    assert bioims.json("call", "artifact", "listMessage", json.dumps({"messageId": message_id}))[0]["message"] == "hello"
    assert bioims.json("call", "tags", "createTag", '{"value": "moa:x"}')["tag_id"] == 1
    assert "already exists" in bioims("call", "tags", "createTag", '{"value": "moa:x"}', expect=1).stderr
    assert "not valid JSON" in bioims("call", "tags", "getAllTags", "{oops", expect=1).stderr
    assert "unknown method" in bioims("call", "tags", "frobnicate", expect=1).stderr
    bioims("call", "nosuchservice", "getAllTags", expect=2)


def test_dataset_synth_then_ingest_unchanged(bioims, tmp_path):
    out = tmp_path / "tiny"
    made = bioims.json("dataset", "synth", str(out), "--preset", "tiny", "--seed", "2", "--workers", "2")
    assert (made["plates"], made["fields"], made["rendered"]) == (4, 40, 40)
    assert bioims.json("dataset", "synth", str(out), "--preset", "tiny", "--seed", "2")["skipped"] == 40
    ingested = bioims.json("ingest", "loaddata", str(out / "synth_image.csv"), "--moa", str(out / "synth_moa.csv"))
    assert (ingested["plates"], ingested["images"], ingested["invalid_images"]) == (4, 40, 0)
    assert "sites must be an integer" in bioims("dataset", "synth", str(out), "--option", "sites=0", expect=1).stderr
    assert "KEY=VALUE" in bioims("dataset", "synth", str(out), "--option", "sites", expect=1).stderr


def test_spec_and_preprocess_commands(bioims, tmp_path):
    out = tmp_path / "tiny"
    bioims.json("dataset", "synth", str(out), "--preset", "tiny", "--seed", "1")
    bioims.json("ingest", "loaddata", str(out / "synth_image.csv"), "--moa", str(out / "synth_moa.csv"))
    bioims.json("config", "set", "thumbnail-widths", "[32]")
    bioims.json("plate", "process", "--all", "--workers", "2")
    spec = {"name": "tiny", "input": {"width": 160, "height": 128, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
            "segmentation_channel": "DAPI", "roi_size": 32, "min_nucleus_voxels": 30, "embedding_length": 64}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert bioims.json("spec", "create", str(tmp_path / "spec.json"))["training"]["epochs"] == 30
    assert "already exists" in bioims("spec", "create", str(tmp_path / "spec.json"), expect=1).stderr
    (tmp_path / "bad.json").write_text(json.dumps(spec | {"name": "bad", "colour": 1}))
    assert "unknown key(s) in spec: colour" in bioims("spec", "create", str(tmp_path / "bad.json"), expect=1).stderr
    assert [s["name"] for s in bioims.json("spec", "list")] == ["tiny"]
    assert len(bioims.json("spec", "show", "tiny")["compatible_plates"]) == 4
    done = bioims.json("preprocess", "tiny", "--workers", "2")
    assert (done["fields"], done["skipped"], done["failed"]) == (40, 0, 0) and done["cells"] > 100
    again = bioims.json("preprocess", "tiny")
    assert (again["fields"], again["skipped"], again["cells"]) == (40, 40, done["cells"])
    assert "no embedding spec 'nope'" in bioims("preprocess", "nope", expect=1).stderr
    for kind in ("handcrafted", "naive"):
        made = bioims.json("profiles", "compute", kind, "--spec", "tiny", "--name", f"tiny-{kind}")
        assert made["rows"]["treatment"] == 16 and made["source"]["fields"] == 40
        scored = bioims.json("evaluate", "--profiles", f"tiny-{kind}")
        assert scored["treatments"] == 16 and scored["metric"] == "cosine" and scored["nsc"] is not None
    assert {p["name"] for p in bioims.json("profiles", "list")} == {"tiny-handcrafted", "tiny-naive"}
    trained = bioims.json("train", "tiny", "--holdout", "none", "--epochs", "1")
    (train_id,) = trained["train_ids"]
    assert trained["models"][0]["onnx_uri"].endswith("/model.onnx") and trained["models"][0]["status"] == "complete"
    assert [r["train_id"] for r in bioims.json("training", "list", "tiny")] == [train_id]
    assert bioims.json("training", "show", train_id)["job"]["epochs_done"] == 1
    assert "holdout" in bioims("train", "tiny", "--holdout", "random", expect=2).stderr
    (tmp_path / "exclude.txt").write_text("not-an-image-1\nnot-an-image-2\n")  # the seed's filter file
    filtered = bioims.json("train", "tiny", "--epochs", "0", "--exclude-images", str(tmp_path / "exclude.txt"))
    assert bioims.json("training", "show", filtered["train_ids"][0])["filter_count"] == 2
    missing = bioims("train", "tiny", "--exclude-images", str(tmp_path / "missing.txt"), expect=1).stderr
    assert "--exclude-images" in missing and "No such file" in missing
    embedded = bioims.json("embed", train_id, "--workers", "2")
    assert embedded["plates"] == 4 and embedded["fields"] + embedded["empty"] == 40
    assert bioims.json("evaluate", train_id)["treatments"] == 16
    exported = bioims.json("export", train_id, "--parquet", str(tmp_path / "wells.parquet"))
    assert exported["features"] == 64 and (tmp_path / "wells.parquet").stat().st_size > 0
    as_csv = bioims.json("export", train_id, "--csv", str(tmp_path / "wells.csv"))
    assert (as_csv["format"], as_csv["rows"]) == ("csv", exported["rows"])
    from bioims.profiles.io import read_profiles

    parquet_table = read_profiles(tmp_path / "wells.parquet")
    csv_table = pd.read_csv(tmp_path / "wells.csv")
    assert list(csv_table.columns) == list(parquet_table.columns)
    features = [c for c in parquet_table.columns if c.startswith("emb_")]
    assert np.array_equal(csv_table[features].to_numpy(np.float32), parquet_table[features].to_numpy(np.float32))
    import anndata

    as_h5ad = bioims.json("export", train_id, "--out", str(tmp_path / "wells.h5ad"))  # the format from the suffix
    assert (as_h5ad["format"], as_h5ad["rows"], as_h5ad["features"]) == ("anndata", exported["rows"], 64)
    adata = anndata.read_h5ad(tmp_path / "wells.h5ad")
    assert adata.X.dtype == np.float32 and adata.var_names.tolist() == features
    assert np.allclose(adata.X, parquet_table[features].to_numpy(np.float32), rtol=0, atol=1e-6)
    assert adata.obs.columns.tolist() == [c for c in parquet_table.columns if c.startswith("Metadata_")]
    assert adata.obs["Metadata_Well"].astype(str).tolist() == parquet_table["Metadata_Well"].tolist()
    bioims.json("export", train_id, "--out", str(tmp_path / "wells.zarr"), "--format", "anndata")
    assert np.array_equal(anndata.read_zarr(tmp_path / "wells.zarr").X, adata.X)
    assert "give one output" in bioims("export", train_id, expect=1).stderr
    assert "not both --parquet and --csv" in bioims("export", train_id, "--parquet", str(tmp_path / "a.parquet"),
                                                   "--csv", str(tmp_path / "a.csv"), expect=1).stderr
    unknown = bioims("export", train_id, "--out", str(tmp_path / "wells.txt"), expect=1).stderr
    assert unknown.startswith("error: cannot tell the format of") and unknown.count("\n") == 1
    assert "give TRAIN_ID... or --profiles" in bioims("evaluate", expect=2).stderr

    built = bioims.json("index", "build", train_id)
    assert (built["kind"], built["metric"], built["count"]) == ("flat", "cosine", embedded["fields"])
    assert [(i["level"], i["count"]) for i in bioims.json("index", "list", train_id)] == [("field", built["count"])]
    bioims.json("export", train_id, "--parquet", str(tmp_path / "fields.parquet"), "--level", "field")
    some_field = pd.read_parquet(tmp_path / "fields.parquet")["Metadata_ImageId"].iloc[0]
    found = bioims.json("search", train_id, "--image", some_field, "-k", "3", "--require-moa",
                        "--exclude-tag", "compound:DMSO")
    assert len(found["hits"]) == 3 and all(h["moa"] and h["compound"] != "DMSO" for h in found["hits"])
    assert found["hits"][0]["id"] != some_field and found["search_id"]
    recorded = bioims.json("search-result", found["search_id"])  # written before the searching process exited
    assert recorded["status"] == "complete" and recorded["hits"] == found["hits"]
    np.save(tmp_path / "q.npy", np.ones(64, np.float32))
    assert len(bioims.json("search", train_id, "--vector", str(tmp_path / "q.npy"), "-k", "2")["hits"]) == 2
    assert "k: Input should be greater than or equal to 1" in bioims("search", train_id, "--image", some_field, "-k", "0",
                                                       expect=1).stderr
    assert bioims.json("index", "delete", train_id)["indexes"] == 1


@pytest.mark.skipif(not BBBC021.is_dir(), reason="BBBC021 metadata not beside the repository")
def test_bbbc021_cellprofiler_profiles_reproduce_the_reference(bioims, tmp_path):
    imported = bioims.json("profiles", "import", str(BBBC021 / "ljosa_jbiomolscreen_2013_per_well_mean.csv.gz"),
                           "--metadata", str(BBBC021 / "BBBC021_v1_image.csv.gz"),
                           "--moa", str(BBBC021 / "BBBC021_v1_moa.csv"), "--name", "bbbc021-cp")
    assert imported["rows"] == {"well": 632, "treatment": 103}
    report = tmp_path / "report.html"
    result = bioims.json("evaluate", "--profiles", "bbbc021-cp", "--report", str(report))
    assert (result["nsc"], result["treatments"], result["moas"], result["compounds"]) == (84 / 103, 103, 12, 38)
    assert result["nscb"] == 70 / 92 and result["metric"] == "pearson"
    assert 0 < result["map"] < 1 and 0 < result["compound_level"] <= 1
    html = report.read_text()
    assert "Microtubule stabilizers" in html and html.count("data:image/png;base64,") >= 4
    assert "already exists" in bioims("profiles", "import", str(BBBC021 / "ljosa_jbiomolscreen_2013_per_well_mean.csv.gz"),
                                      "--metadata", str(BBBC021 / "BBBC021_v1_image.csv.gz"), "--name", "bbbc021-cp",
                                      expect=1).stderr
    assert "no profile set 'nope'" in bioims("evaluate", "--profiles", "nope", expect=1).stderr
    exported = bioims.json("export", "bbbc021-cp", "--csv", str(tmp_path / "treatments.csv"), "--level", "treatment")
    assert exported["rows"] == 103 and pd.read_csv(tmp_path / "treatments.csv").shape[0] == 103
    assert "well and treatment levels only" in bioims("export", "bbbc021-cp", "--csv", str(tmp_path / "f.csv"),
                                                      "--level", "field", expect=1).stderr
