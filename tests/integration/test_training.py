"""Training end to end on the tiny synthetic screen against a real dynalite: hold-out plans and their
filters, training jobs producing verified ONNX models, kill-and-resume, idempotence, bad crops."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bioims.errors import Conflict, InvalidInput, NotFound
from bioims.ids import new_id
from bioims.jobs.runner import LocalPool
from bioims.store.objects import uri_to_path
from bioims.training import metadata, trainer
from bioims.training.data import FieldRef, crop_shape, load_crops
from tests.integration.conftest import preprocessed_screen

SPEC = {"name": "tiny-train", "input": {"width": 160, "height": 128, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
        "segmentation_channel": "DAPI", "roi_size": 32, "min_nucleus_voxels": 30, "embedding_length": 16,
        "flatfield": {"sigma": 20.0},
        "training": {"epochs": 2, "batch_size": 32, "folds": 2, "patience": 50, "validation_fraction": 0.25}}


def images_of(c):
    """The image-management service's images table (the test reads and changes rows directly)."""
    return c.tables["image-management"].images


@pytest.fixture(scope="module")
def screen(stack_settings, tmp_path_factory):
    """The tiny screen ingested, processed and preprocessed under SPEC (shared by the module's tests)."""
    return preprocessed_screen(stack_settings, tmp_path_factory.mktemp("train"), SPEC)


def compounds_of(c, image_ids):
    return {c.images.get_image_info(i)["metadata"]["compound"] for i in image_ids}


def test_fold_runs_filters_and_verified_models(screen):
    c = screen
    runs = c.training.create_trainings(SPEC["name"], "folds")
    fields = c.training._fields(c.training.spec(SPEC["name"]), preprocessed=False)
    moa = {f.compound: f.metadata["moa"] for f in fields}
    annotated = sorted(k for k, v in moa.items() if v != "DMSO")
    assert len(annotated) == 8 and len(runs) == 2
    assert sorted(x for r in runs for x in r["holdout"]) == annotated
    for r in runs:
        assert len({moa[x] for x in r["holdout"]}) == len(r["holdout"])  # at most one compound per MOA
        excluded = c.training.get_training_filter(r["train_id"])
        assert r["filter_count"] == len(excluded) > 0
        assert sorted(excluded) == sorted(f.image_id for f in fields if f.compound in r["holdout"])
        assert compounds_of(c, excluded) == set(r["holdout"])
        assert r["status"] == "created" and r["spec_name"] == SPEC["name"]
    assert [r["train_id"] for r in c.training.create_trainings(SPEC["name"], "folds")] == [r["train_id"] for r in runs]

    first = runs[0]["train_id"]
    output = c.runner.run(c, "train", {"train_ids": [first]})["output"]
    assert output["failed"] == 0 and output["models"][0]["status"] == "complete"
    run = c.training.get_training(first)
    assert run["status"] == "complete" and run["finished_at"] and run["metrics"]["best_epoch"] in (1, 2)
    assert run["metrics"]["verification"]["max_abs_diff"] <= 1e-4
    assert len(run["metrics"]["history"]) == 2
    session = ort.InferenceSession(str(uri_to_path(run["model_uris"]["onnx"])), providers=["CPUExecutionProvider"])
    meta = metadata.decode(session.get_modelmeta().custom_metadata_map)
    assert meta["train_id"] == first and meta["holdout"] == runs[0]["holdout"]
    assert meta["input_shape"] == [3, 32, 32] and meta["embedding_length"] == 16
    assert sorted(meta["label_map"].values()) == sorted(set(moa.values()))
    assert meta["spec"]["name"] == SPEC["name"]
    spec = c.training.spec(SPEC["name"])
    some = next(f for f in c.training._fields(spec) if f.cells)
    crops = load_crops(c.objects, some.crops_uri, crop_shape(spec))
    z = session.run(None, {"crops": crops.astype(np.float32) * np.float32(meta["input_scale"])})[0]
    assert z.shape == (len(crops), 16) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    card = c.objects.get_json(run["model_uris"]["card"])
    assert card["holdout"] == runs[0]["holdout"] and card["data"]["train_fields"] > card["data"]["validation_fields"] > 0
    kinds = {a["type"] for a in c.artifacts.get_artifacts(first, first)}
    assert {"onnx", "model-card", "checkpoint", "weights", "train-filter"} <= kinds
    info = c.training.get_training_job_info(first)
    assert info["epochs_done"] == 2 and any("complete" in m["message"] for m in info["messages"])
    again = c.training.run_training(first)
    assert again["skipped"] and again["onnx_uri"] == run["model_uris"]["onnx"]
    assert [r["train_id"] for r in c.training.get_embedding_trainings(SPEC["name"])] == [r["train_id"] for r in runs] \
        or {r["train_id"] for r in c.training.get_embedding_trainings(SPEC["name"])} >= {r["train_id"] for r in runs}


def test_a_custom_filter_named_run_and_seed_log(screen, tmp_path):
    """The seed's per-compound filter files: ids given as a list or as a file in the store, filtered
    besides the hold-out's, part of the run's identity; the seed's trainId and messageId; updateTraining."""
    c = screen
    fields = c.training._fields(c.training.spec(SPEC["name"]), preprocessed=False)
    dmso = sorted(f.image_id for f in fields if f.metadata.get("moa") == "DMSO")[:3]
    plain = c.training.create_trainings(SPEC["name"], "none", epochs=1, seed=3)[0]
    listed = c.training.create_trainings(SPEC["name"], "none", epochs=1, seed=3, filter=dmso)[0]
    assert listed["train_id"] != plain["train_id"] and listed["filter_count"] == 3
    assert c.training.get_training_filter(listed["train_id"]) == dmso
    uri = f"{c.keys.root}/filters/dmso.txt"  # one id per line, as the seed's filter files
    c.objects.put_bytes(uri, ("\n".join(dmso) + "\n").encode())
    assert c.training.create_trainings(SPEC["name"], "none", epochs=1, seed=3, filter_uri=uri)[0] == listed
    outside = tmp_path / "filter.json"
    outside.write_text(json.dumps(dmso))
    with pytest.raises(InvalidInput, match="training filter .* is outside"):
        c.training.create_trainings(SPEC["name"], "none", filter_uri=outside.as_uri())
    with pytest.raises(InvalidInput, match="training filter .* is outside"):  # dot segments do not leave it
        c.training.create_trainings(SPEC["name"], "none", filter_uri=f"{c.keys.root}/../{outside.name}")
    folds = c.training.create_trainings(SPEC["name"], "folds", filter=dmso[:1])
    for run in folds:
        assert set(c.training.get_training_filter(run["train_id"])) >= set(dmso[:1])
        assert run["filter_count"] == len({f.image_id for f in fields if f.compound in run["holdout"]} | {dmso[0]})

    log = c.artifacts.create_message("seed client: training requested")
    named = c.training.create_trainings(SPEC["name"], "none", epochs=1, train_id="bbbc021-run-1", message_id=log)[0]
    assert named["train_id"] == "bbbc021-run-1" and named["message_id"] == log
    assert [m["message"] for m in c.artifacts.list_messages(log)][0] == "seed client: training requested"
    assert c.training.create_trainings(SPEC["name"], "none", epochs=1, train_id="bbbc021-run-1") == [named]
    with pytest.raises(Conflict, match="exists with another spec"):
        c.training.create_trainings(SPEC["name"], "none", epochs=2, train_id="bbbc021-run-1")
    with pytest.raises(InvalidInput, match="a train id names one run; holdout folds makes 2"):
        c.training.create_trainings(SPEC["name"], "folds", train_id="bbbc021-run-2")

    updated = c.training.update_training("bbbc021-run-1", "filter", dmso)
    assert updated["filter_count"] == 3 and c.training.get_training_filter("bbbc021-run-1") == dmso
    assert c.training.update_training("bbbc021-run-1", "messageId", log)["message_id"] == log
    with pytest.raises(InvalidInput, match="runs train as AWS Batch jobs"):
        c.training.update_training("bbbc021-run-1", "sagemakerJobName", "job")
    with pytest.raises(InvalidInput, match="filter_uri = s3://BUCKET/KEY"):
        c.training.update_training("bbbc021-run-1", "filterKey", "k")
    for bad in ("img-1", ["x" * 3000], [["nested"]]):  # a string where a list belongs, too long, not a string
        with pytest.raises(InvalidInput, match="filter must be a list of at most"):
            c.training.update_training("bbbc021-run-1", "filter", bad)
    with pytest.raises(InvalidInput, match="outside"):
        c.training.update_training("bbbc021-run-1", "filter_uri", f"{c.keys.root}/../../etc/passwd")
    with pytest.raises(NotFound, match="no message log"):
        c.training.update_training("bbbc021-run-1", "message_id", "nope")
    c.training.run_training("bbbc021-run-1")
    with pytest.raises(Conflict, match="only a created run can be changed"):
        c.training.update_training("bbbc021-run-1", "filter", [])


def test_holdout_modes_and_bad_requests(screen):
    c = screen
    none = c.training.create_trainings(SPEC["name"], "none", epochs=1)
    assert len(none) == 1 and none[0]["holdout"] == [] and none[0]["filter_count"] == 0
    untrained = c.training.create_trainings(SPEC["name"], "none", epochs=0)[0]
    assert untrained["train_id"] != none[0]["train_id"]
    done = c.training.run_training(untrained["train_id"])  # the untrained baseline: seeded weights, exported
    assert (done["status"], done["epochs_done"]) == ("complete", 0) and done["onnx_uri"].endswith("model.onnx")
    assert set(c.training.get_training(untrained["train_id"])["model_uris"]) == {"onnx", "card"}  # nothing else exists
    assert {a["type"] for a in c.artifacts.get_artifacts(untrained["train_id"], untrained["train_id"])} == \
        {"train-filter", "onnx", "model-card"}
    seed_run = c.training.create_trainings(SPEC["name"], "none", epochs=1, network="seed", loss="seed",
                                           temperature=0.2)[0]
    assert seed_run["train_id"] != none[0]["train_id"]
    assert (seed_run["settings"]["network"], seed_run["settings"]["loss"]) == ("seed", "seed")
    assert seed_run["settings"]["temperature"] == 0.2 and none[0]["settings"]["network"] == "resnet"
    c.training.run_training(seed_run["train_id"])
    card = c.objects.get_json(c.training.get_training(seed_run["train_id"])["model_uris"]["card"])
    assert (card["network"], card["loss"], card["spec"]["training"]["temperature"]) == ("seed", "seed", 0.2)
    with pytest.raises(InvalidInput, match="loss must be one of"):
        c.training.create_trainings(SPEC["name"], "none", loss="triplet")
    with pytest.raises(InvalidInput, match="temperature must be > 0"):
        c.training.create_trainings(SPEC["name"], "none", temperature=0.0)
    with pytest.raises(InvalidInput, match="learning_rate must be > 0"):
        c.training.create_trainings(SPEC["name"], "none", learning_rate=-1.0)
    faster = c.training.create_trainings(SPEC["name"], "none", epochs=1, learning_rate=0.01)[0]
    assert faster["settings"]["learning_rate"] == 0.01 and faster["train_id"] != none[0]["train_id"]
    per_compound = c.training.create_trainings(SPEC["name"], "compound", epochs=1)
    assert len(per_compound) == 8 and all(len(r["holdout"]) == 1 for r in per_compound)
    with pytest.raises(InvalidInput, match="holdout must be one of"):
        c.training.create_trainings(SPEC["name"], "random")
    with pytest.raises(InvalidInput, match="epochs must be an integer >= 0"):
        c.training.create_trainings(SPEC["name"], "none", epochs=-1)
    with pytest.raises(NotFound, match="no embedding spec"):
        c.training.create_trainings("nope", "none")
    with pytest.raises(NotFound, match="no train run"):
        c.training.get_training("nope")
    with pytest.raises(InvalidInput, match="too small for the seed network"):
        c.training.create_embedding({**SPEC, "name": "tiny-seed", "network": "seed", "roi_size": 24})
    with pytest.raises(InvalidInput, match="network must be one of"):
        c.training.create_embedding({**SPEC, "name": "tiny-vit", "network": "vit"})
    deleted = c.training.delete_training(per_compound[0]["train_id"])
    assert deleted["objects"] == 1  # its filter
    with pytest.raises(NotFound):
        c.training.get_training(per_compound[0]["train_id"])


def test_killed_training_resumes_from_its_checkpoint(screen):
    c = screen
    run = c.training.create_trainings(SPEC["name"], "none", epochs=12)[0]
    train_id = run["train_id"]
    checkpoint = uri_to_path(c.keys.model(train_id, "checkpoint.pt"))
    env = {**os.environ, **c.settings.to_env(), "BIOIMS_DYNAMODB_URL": c.database.host}
    proc = subprocess.Popen([sys.executable, "-m", "bioims.jobs", "train-model", "--params",
                             json.dumps({"train_id": train_id})], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists()
    assert c.training.get_training(train_id)["status"] == "running"  # killed: never marked complete
    done = c.training.run_training(train_id)
    run = c.training.get_training(train_id)
    assert done["status"] == "complete" and run["metrics"]["resumed_from"]
    assert 1 <= run["metrics"]["resumed_from"][0] < 12
    assert [h["epoch"] for h in run["metrics"]["history"]] == list(range(1, 13))


def test_resumed_training_equals_uninterrupted(screen, tmp_path, monkeypatch):
    """Interrupt a run inside its second epoch; the resumed run ends with bit-identical weights."""
    c = screen
    spec = c.training.spec(SPEC["name"])
    settings = replace(spec.training, epochs=3)
    fields = [f for f in c.training._fields(spec) if f.cells]
    classes = sorted({f.metadata["moa"] for f in fields})
    compounds = sorted({f.compound for f in fields})
    refs = [FieldRef(f.image_id, f.crops_uri, f.cells, classes.index(f.metadata["moa"]), compounds.index(f.compound),
                     f.well) for f in fields]
    train_refs, val_refs = refs[::2], refs[1::2]

    def fit(name):
        run = trainer.Run((tmp_path / f"{name}.pt").as_uri(), (tmp_path / f"{name}-best.pt").as_uri())
        return trainer.train(spec, settings, train_refs, val_refs, c.objects, run, threads=1)

    original = trainer.augment
    calls = {"n": 0, "die": -1}

    def counting(x, generator):
        calls["n"] += 1
        if calls["n"] == calls["die"]:
            raise KeyboardInterrupt
        return original(x, generator)

    monkeypatch.setattr(trainer, "augment", counting)
    straight, state, _ = fit("a")
    first_epoch = state.history[0]["batches"]
    assert state.history[1]["batches"] >= 2
    calls.update(n=0, die=first_epoch + 2)  # the second batch of epoch 2

    with pytest.raises(KeyboardInterrupt):
        fit("b")
    resumed, state_b, _ = fit("b")
    assert state_b.resumed_from and state_b.history == [
        {**h, "seconds": g["seconds"], "crops_per_second": g["crops_per_second"]}
        for h, g in zip(state.history, state_b.history)]
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


def test_bad_crops_are_skipped_and_reported(screen):
    c = screen
    spec = c.training.spec(SPEC["name"])
    victim = next(f for f in c.training._fields(spec) if f.cells)
    good = c.objects.get_bytes(victim.crops_uri)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 3, 20, 20), np.uint16))  # an ROI size the spec does not have
    c.objects.put_bytes(victim.crops_uri, buffer.getvalue())
    try:
        run = c.training.create_trainings(SPEC["name"], "none", epochs=1, seed=7)[0]
        done = c.training.run_training(run["train_id"])
        assert done["status"] == "complete"
        card = c.objects.get_json(c.training.get_training(run["train_id"])["model_uris"]["card"])
        assert card["data"]["skipped_fields"] == 1
        messages = " ".join(m["message"] for m in c.training.get_training_job_info(run["train_id"])["messages"])
        assert victim.image_id in messages and "(3, 20, 20)" in messages and "(3, 32, 32)" in messages
    finally:
        c.objects.put_bytes(victim.crops_uri, good)


def test_embedding_job_outputs_resume_and_flags(screen, tmp_path):
    """Embed with an (untrained, exported) model: field rows and Parquet per plate, identical outputs after
    losing part of a plate, empty fields flagged, a plate without crops reported, levels and export."""
    from bioims.profiles.io import read_profiles

    c = screen
    run = c.training.create_trainings(SPEC["name"], "none", epochs=0, seed=11)[0]
    c.training.run_training(run["train_id"])
    train_id = run["train_id"]
    spec = c.training.spec(SPEC["name"])
    fields = c.training._fields(spec)
    empty = next((f for f in fields if f.cells == 0), None)
    with LocalPool(c, workers=2) as pool:
        first = c.runner.run(c, "embed", {"train_id": train_id}, pool=pool)["output"]
    assert first["plates"] == 4 and first["failed"] == 0 and first["skipped"] == 0
    assert first["fields"] + first["empty"] == len(fields) and first["cells"] == sum(f.cells for f in fields)
    plates = c.embedding.list_plate_embeddings(train_id)
    digests = {p["plate_id"]: c.objects.get_bytes(p["uri"]) for p in plates}
    table = read_profiles(digests[plates[0]["plate_id"]])
    assert [n for n in table.columns if n.startswith("emb_")] == [f"emb_{i:03d}" for i in range(16)]
    some = table.iloc[0]
    stored = c.embedding.get_image_embedding(some["Metadata_ImageId"], train_id)
    assert stored["status"] == "embedded" and stored["cells"] == some["Metadata_Cells"]
    assert np.allclose(stored["embedding"], some[[f"emb_{i:03d}" for i in range(16)]].to_numpy(float))
    if empty is not None:
        flagged = c.embedding.get_image_embedding(empty.image_id, train_id)
        assert flagged["status"] == "empty" and flagged["embedding"] is None

    # lose a plate's table and half its cell embeddings (a kill mid-plate), rerun: identical outputs
    victim = plates[0]
    uri_to_path(victim["uri"]).unlink()
    cells = sorted(uri_to_path(victim["uri"]).parent.glob("*-cells.npy"))
    for path in cells[: len(cells) // 2]:
        path.unlink()
    again = c.runner.run(c, "embed", {"train_id": train_id})["output"]
    assert again["skipped"] == 3 and again["failed"] == 0
    assert {p["plate_id"]: c.objects.get_bytes(p["uri"]) for p in c.embedding.list_plate_embeddings(train_id)} == digests

    wells = c.embedding.profiles(train_id, "well")
    treatments = c.embedding.profiles(train_id, "treatment")
    assert len(treatments) == 16 and "DMSO" not in set(treatments["Metadata_Compound"])
    everything = c.embedding.profiles(train_id, "field")
    assert len(everything) == first["fields"]
    assert len(wells) == everything.groupby(["Metadata_Plate", "Metadata_Well"]).ngroups
    result, _ = c.embedding.evaluate([train_id])
    assert result.to_document()["treatments"] == 16
    with pytest.raises(InvalidInput, match="is created; train it first"):
        c.embedding.plates(c.training.create_trainings(SPEC["name"], "none", epochs=0, seed=12)[0]["train_id"])

    # a plate whose crops are gone is reported, the others are not affected
    missing = victim["plate_id"]
    crops_dir = uri_to_path(c.keys.crops(SPEC["name"], missing, "x")).parent
    moved = tmp_path / "moved"
    crops_dir.rename(moved)
    try:
        for row in images_of(c).by_plate.query(missing, images_of(c).train_id == f"spec#{SPEC['name']}"):
            row.update(actions=[images_of(c).status.set("failed")])
        out = c.runner.run(c, "embed", {"train_id": train_id, "plate_ids": [missing], "force": True})["output"]
        assert out["failed"] == 1 and "no preprocessed crops" in out["failures"][0]["failure"]
    finally:
        for row in images_of(c).by_plate.query(missing, images_of(c).train_id == f"spec#{SPEC['name']}"):
            row.update(actions=[images_of(c).status.set("preprocessed")])
        moved.rename(crops_dir)


def test_killed_embedding_array_child_resumes_with_identical_outputs(screen):
    """A real ``python -m bioims.jobs embed-plate --array-params URI`` (the AWS Batch array child) is
    SIGKILLed as soon as its first field is written; rerunning the plate gives the same bytes and rows."""
    from bioims.jobs.steps import embed_units

    c = screen
    train_id = c.training.create_trainings(SPEC["name"], "none", epochs=0, seed=13)[0]["train_id"]
    c.training.run_training(train_id)
    plate_id = c.embedding.plates(train_id)[1]
    reference = c.embedding.compute_plate_embedding(train_id, plate_id)
    table_uri = reference["uri"]
    expected = c.objects.get_bytes(table_uri)
    rows = {r.image_id: r.embedding for r in images_of(c).by_plate.query(plate_id, images_of(c).train_id == train_id)}
    plate_dir = uri_to_path(table_uri).parent
    for path in plate_dir.iterdir():
        path.unlink()

    params_uri = c.keys.job_params(new_id())
    c.objects.put_json(params_uri, embed_units(train_id, ["other-plate", plate_id]))
    env = {**os.environ, **c.settings.to_env(), "BIOIMS_DYNAMODB_URL": c.database.host, "AWS_BATCH_JOB_ARRAY_INDEX": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bioims.jobs", "embed-plate", "--array-params", params_uri],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(plate_dir.glob("*-cells.npy")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(plate_dir.glob("*-cells.npy"))  # it had started on the plate

    again = c.embedding.compute_plate_embedding(train_id, plate_id)
    assert again["fields"] == reference["fields"] and again["cells"] == reference["cells"]
    assert c.objects.get_bytes(table_uri) == expected
    assert {r.image_id: r.embedding for r in
            images_of(c).by_plate.query(plate_id, images_of(c).train_id == train_id)} == rows


def test_killing_a_pooled_job_stops_its_workers(screen):
    """SIGKILL of a `train` workflow running on a pool of 2 worker processes: the kernel stops the workers
    too (none keeps training an orphaned run), and the runs resume when trained again."""
    c = screen
    ids = [r["train_id"] for r in c.training.create_trainings(SPEC["name"], "folds", epochs=40, seed=21)]
    env = {**os.environ, **c.settings.to_env(), "BIOIMS_DYNAMODB_URL": c.database.host}
    proc = subprocess.Popen([sys.executable, "-m", "bioims.jobs", "train", "--params", json.dumps({"train_ids": ids}),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = [uri_to_path(c.keys.model(i, "checkpoint.pt")) for i in ids]
    deadline = time.monotonic() + 120
    while not any(p.exists() for p in checkpoints) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    children = [int(p) for p in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()]
    assert len(children) >= 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    def alive(pid: int) -> bool:
        try:
            return "\nState:\tZ" not in open(f"/proc/{pid}/status").read()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 30
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in children)
    assert {c.training.get_training(i)["status"] for i in ids} <= {"running", "created"}


def test_train_right_after_creating_the_spec_preprocesses_first(stack_settings, tmp_path):
    """docs/deployment.md's path: ``train`` right after ``createEmbedding``, nothing preprocessed yet. The
    runs are created at once and the ``train`` workflow preprocesses before it trains (as the state
    machine does); before, ``train`` refused with "no preprocessed fields"."""
    from bioims.datasets.loaddata import read_loaddata
    from bioims.datasets.synth import IMAGE_CSV, MOA_CSV, synthesize
    from bioims.runtime import local

    settings = stack_settings.with_(table_prefix=f"tr{new_id()[:8]}-", artifact_uri=(tmp_path / "artifacts").as_uri(),
                                    ingest_roots=(tmp_path,))
    c = local(settings)
    synthesize(tmp_path / "tiny", "tiny", seed=3)
    plates = c.images.ingest(read_loaddata(tmp_path / "tiny" / IMAGE_CSV, moa_csv=tmp_path / "tiny" / MOA_CSV)).plate_ids
    with LocalPool(c, workers=2) as pool:
        for plate_id in plates:
            c.runner.run(c, "process-plate", {"plate_id": plate_id}, pool=pool)
    spec = {**SPEC, "name": "train-at-once"}
    c.training.create_embedding(spec)
    with pytest.raises(InvalidInput, match="no preprocessed fields"):  # the direct operation still needs them
        c.training.create_trainings(spec["name"], epochs=0)

    started = c.training.train(spec["name"], epochs=0, seed=1)
    (train_id,) = started["train_ids"]
    deadline = time.monotonic() + 600
    while (execution := c.runner.describe(started["execution_id"]))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the train workflow did not finish"
        time.sleep(1)
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["output"]["preprocessed"]["fields"] == execution["output"]["preprocessed"]["plates"] * 10
    assert c.training.get_training(train_id)["status"] == "complete"
    assert sum(f["cells"] or 0 for p in plates for f in c.images.list_spec_fields(spec["name"], p)) > 0
