"""Search end to end on the tiny synthetic screen against a real dynalite: index build and persistence,
filters, queries by image / item / vector / upload, search records, the HTTP API and its errors, and a
rebuild swapped in while clients query."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import requests

from bioims.client import SearchClient
from bioims.errors import Conflict, InvalidInput, NotFound
from bioims.imaging.io import read_image
from bioims.profiles.io import read_profiles
from bioims.services.search import SearchService
from tests.integration.conftest import preprocessed_screen, running_server

SPEC = {"name": "tiny-search", "input": {"width": 160, "height": 128, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
        "segmentation_channel": "DAPI", "roi_size": 32, "min_nucleus_voxels": 30, "embedding_length": 16,
        "flatfield": {"sigma": 20.0}, "training": {"epochs": 1, "batch_size": 32}}


@pytest.fixture(scope="module")
def indexed(stack_settings, tmp_path_factory):
    """The tiny screen embedded by an untrained (seeded) model, with a field index built."""
    c = preprocessed_screen(stack_settings, tmp_path_factory.mktemp("search"), SPEC)
    train_id = c.training.create_trainings(SPEC["name"], "none", epochs=0, seed=5)[0]["train_id"]
    c.training.run_training(train_id)
    c.runner.run(c, "embed", {"train_id": train_id})
    c.search.build_index(train_id, "field")
    return c, train_id


@pytest.fixture
def server(indexed) -> Iterator[str]:
    with running_server(indexed[0]) as url:
        yield url


def fields(c, train_id):
    return c.embedding.profiles(train_id, "field")


def test_field_search_is_exact_and_filters_follow_the_seed(indexed):
    c, train_id = indexed
    table = fields(c, train_id)
    vectors = table[[n for n in table.columns if n.startswith("emb_")]].to_numpy(np.float64)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    query = 7
    image_id = table["Metadata_ImageId"].iloc[query]
    result = c.search.search(train_id, image_id=image_id, k=5)
    expected = [i for i in np.argsort(1 - vectors @ vectors[query], kind="stable") if i != query][:5]
    assert [h["id"] for h in result["hits"]] == list(table["Metadata_ImageId"].iloc[expected])
    assert [h["rank"] for h in result["hits"]] == [1, 2, 3, 4, 5]
    assert np.allclose([h["distance"] for h in result["hits"]], 1 - vectors[expected] @ vectors[query], atol=1e-5)
    hit = result["hits"][0]
    row = table[table["Metadata_ImageId"] == hit["id"]].iloc[0]
    assert (hit["plate"], hit["well"], hit["compound"]) == (row["Metadata_Plate"], row["Metadata_Well"],
                                                             row["Metadata_Compound"])
    assert hit["thumbnail"].endswith(f"{hit['id']}-32.png") and f"compound:{row['Metadata_Compound']}" in hit["tags"]

    compounds = sorted(set(table["Metadata_Compound"]) - {"DMSO"})
    include = [f"compound:{compounds[0]}", f"compound:{compounds[1]}"]
    included = c.search.search(train_id, image_id=image_id, k=1000, include_tags=include)["hits"]
    assert {h["compound"] for h in included} == set(compounds[:2])
    assert len(included) == table["Metadata_Compound"].isin(compounds[:2]).sum() - (
        table["Metadata_Compound"].iloc[query] in compounds[:2])
    excluded = c.search.search(train_id, image_id=image_id, k=1000, include_tags=include,
                               exclude_tags=[f"compound:{compounds[0]}"])["hits"]
    assert {h["compound"] for h in excluded} == {compounds[1]}
    with_moa = c.search.search(train_id, image_id=image_id, k=1000, require_moa=True)["hits"]
    assert len(with_moa) == table["Metadata_MoA"].notna().sum() - 1 and all(h["moa"] for h in with_moa)
    assert c.search.search(train_id, image_id=image_id, k=3, include_tags=["compound:nothing"])["hits"] == []
    one_well = table[(table["Metadata_Compound"] == compounds[2])]["Metadata_Plate"].iloc[0]
    selective = c.search.search(train_id, image_id=image_id, k=4,
                                include_tags=[f"plate:{one_well}"], exclude_tags=["compound:DMSO"])["hits"]
    assert len(selective) == 4 and {h["plate"] for h in selective} == {one_well}


def test_queries_by_item_vector_upload_and_levels(indexed):
    c, train_id = indexed
    table = fields(c, train_id)
    image_id = table["Metadata_ImageId"].iloc[3]
    stored = c.embedding.get_image_embedding(image_id, train_id)["embedding"]
    by_vector = c.search.search(train_id, vector=stored, k=3)["hits"]
    assert by_vector[0]["id"] == image_id and by_vector[0]["distance"] < 1e-5  # the vector finds its field
    assert [h["id"] for h in c.search.search(train_id, id=image_id, k=2)["hits"]] == \
        [h["id"] for h in by_vector[1:3]]

    # upload the field's own channel files: same preprocessing (without flat-field) and model
    row = c.images.get_image_info(image_id)
    files = {ch: base64.b64encode(open(uri[7:], "rb").read()).decode() for ch, uri in row["channel_uris"].items()}
    plate_id = row["plate_id"]
    uploaded = c.search.search(train_id, images=files, k=1, flatfield_plate=plate_id)["hits"]
    assert uploaded[0]["id"] == image_id and uploaded[0]["distance"] < 1e-3
    assert len(c.search.search(train_id, images=files, k=2)["hits"]) == 2  # its own flat-field: still a query
    with pytest.raises(InvalidInput, match="must map each channel"):
        c.search.search(train_id, images={"DAPI": files["DAPI"]}, k=1)
    with pytest.raises(InvalidInput, match="not valid base64"):
        c.search.search(train_id, images={**files, "Actin": "%%%"}, k=1)
    with pytest.raises(InvalidInput, match="cannot read uploaded channel Tubulin"):
        c.search.search(train_id, images={**files, "Tubulin": base64.b64encode(b"II*\x00junk").decode()}, k=1)
    small = np.zeros((16, 16), np.uint16)
    assert read_image(row["channel_uris"]["DAPI"], c.objects).shape == (128, 160)
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(small).save(buffer, format="PNG")
    with pytest.raises(InvalidInput, match="wants \\(128, 160\\)"):
        c.search.search(train_id, images={ch: base64.b64encode(buffer.getvalue()).decode() for ch in files}, k=1)

    wells = c.search.build_index(train_id, "well", metric="euclidean")
    assert wells["count"] == table.groupby(["Metadata_Plate", "Metadata_Well"]).ngroups
    a_well = f"{table['Metadata_Plate'].iloc[0]}/{table['Metadata_Well'].iloc[0]}"
    well_hits = c.search.search(train_id, id=a_well, k=2, level="well", metric="euclidean")["hits"]
    assert len(well_hits) == 2 and all(h["id"] != a_well for h in well_hits)
    cells = c.search.build_index(train_id, "cell")
    assert cells["count"] == int(table["Metadata_Cells"].sum())
    cell_hits = c.search.search(train_id, image_id=image_id, k=5, level="cell")["hits"]
    assert len(cell_hits) == 5 and not any(h["id"].startswith(f"{image_id}#") for h in cell_hits)
    treatments = c.search.build_index(train_id, "treatment")
    assert treatments["count"] == 16
    with pytest.raises(NotFound, match="no field euclidean index"):
        c.search.search(train_id, image_id=image_id, metric="euclidean")


def test_bad_requests_and_records(indexed):
    c, train_id = indexed
    image_id = fields(c, train_id)["Metadata_ImageId"].iloc[0]
    for kwargs, message in [({"k": 0}, "k must be an integer"), ({"k": 5000}, "k must be an integer"),
                            ({"level": "plate"}, "level must be one of"), ({"metric": "manhattan"}, "metric must be"),
                            ({"include_tags": "moa:x"}, "include_tags must be a list"),
                            ({"vector": [1.0, 2.0]}, "vector must have 16 numbers"),
                            ({"vector": [float("nan")] * 16}, "NaN")]:
        query = {"image_id": image_id} if "vector" not in kwargs else {}
        with pytest.raises(InvalidInput, match=message):
            c.search.search(train_id, **query, **kwargs)
    with pytest.raises(InvalidInput, match="exactly one query"):
        c.search.search(train_id, image_id=image_id, vector=[0.0] * 16)
    with pytest.raises(NotFound):
        c.search.search(train_id, image_id="no-such-image")
    with pytest.raises(NotFound, match="no train run or profile set"):
        c.search.build_index("no-such-run")
    done = c.search.search(train_id, image_id=image_id, k=2)
    record = c.search.get_search(done["search_id"])
    assert record["status"] == "complete" and record["hits"] == done["hits"] and record["query"]["k"] == 2
    c.search.flush()
    fresh = SearchService(c.tables["search"], c.objects, c.keys, c.artifacts, c.embedding, c.training, c.tags, c.profiles)
    assert fresh.get_search(done["search_id"])["hits"] == done["hits"]  # from the table
    assert done["search_id"] in fresh.list_searches(train_id)
    with pytest.raises(NotFound, match="no search"):
        fresh.get_search("nope")


def test_persistence_round_trip_and_delete(indexed):
    c, train_id = indexed
    image_id = fields(c, train_id)["Metadata_ImageId"].iloc[5]
    before = c.search.search(train_id, image_id=image_id, k=6, require_moa=True)["hits"]
    fresh = SearchService(c.tables["search"], c.objects, c.keys, c.artifacts, c.embedding, c.training, c.tags, c.profiles)
    assert [(h["id"], h["tags"]) for h in fresh.search(train_id, image_id=image_id, k=6, require_moa=True)["hits"]] \
        == [(h["id"], h["tags"]) for h in before]
    stored = {(i["level"], i["metric"]) for i in fresh.list_indexes(train_id)}
    assert ("field", "cosine") in stored
    built = c.search.build_index(train_id, "treatment", metric="euclidean")
    assert fresh.delete_index(train_id, "treatment")["indexes"] >= 1
    assert not any(i["level"] == "treatment" for i in fresh.list_indexes(train_id))
    with pytest.raises(NotFound):
        fresh.search(train_id, id="x", level="treatment", metric="euclidean")
    assert built["count"] == 16


def test_http_api_errors_openapi_and_reload_under_load(indexed, server):
    c, train_id = indexed
    url = f"{server}/search"
    client = SearchClient(url)
    table = fields(c, train_id)
    image_ids = list(table["Metadata_ImageId"])
    assert requests.get(f"{url}/health").json() == {"status": "ok"}
    assert client.ready()["ready"] is True
    spec = requests.get(f"{url}/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/searches" in spec["paths"]
    found = client.search(train_id, image_id=image_ids[0], k=3)
    assert len(found["hits"]) == 3 and client.get_search(found["search_id"])["hits"] == found["hits"]
    assert any(i["train_id"] == train_id and i["level"] == "field" for i in client.indexes())

    def post(body: bytes | str) -> requests.Response:
        return requests.post(f"{url}/searches", data=body, headers={"Content-Type": "application/json"})

    cases = [(post(b"{nope"), 400, "not valid JSON"), (post("[1, 2]"), 400, "must be a JSON object"),
             (post(json.dumps({"train_id": train_id, "image_id": image_ids[0], "kk": 3})), 400, "kk: unknown argument"),
             (post(json.dumps({"train_id": train_id, "image_id": image_ids[0], "k": 3.5})), 400,
              "k: Input should be a valid integer"),
             (post(json.dumps({"train_id": train_id, "image_id": image_ids[0], "k": True})), 400, "not a boolean"),
             (post(json.dumps({"train_id": train_id, "image_id": image_ids[0], "k": 10**6})), 400,
              "k: Input should be less than or equal to 1000"),
             (post(json.dumps({"train_id": train_id, "vector": [10**400] * 16})), 400, "vector.0: Input should be"),
             (post(json.dumps({"image_id": image_ids[0]})), 400, "train_id: Field required"),
             (post(json.dumps({"train_id": "nope", "image_id": image_ids[0]})), 404, "no field cosine index"),
             (requests.get(f"{url}/searches/unknown"), 404, "no search"),
             (requests.delete(f"{url}/searches/x"), 405, "not allowed"),
             (requests.get(f"{url}/nowhere"), 404, "no route"),
             (post(b"x" * (64 * 1024 * 1024 + 1)), 413, "exceeds the limit")]
    for response, status, message in cases:
        assert response.status_code == status, (status, response.text[:200])
        assert message in response.json()["error"]["message"], (status, response.text[:200])

    # rebuild and reload while 4 clients query: no failed request, every answer from one whole index
    expected = {i: [h["id"] for h in c.search.search(train_id, image_id=i, k=5)["hits"]] for i in image_ids[:8]}
    failures: list[str] = []
    stop = threading.Event()
    counts = [0] * 4

    def query(worker: int) -> None:
        session = SearchClient(url, session=requests.Session())
        while not stop.is_set():
            image_id = image_ids[(worker + counts[worker]) % 8]
            try:
                hits = [h["id"] for h in session.search(train_id, image_id=image_id, k=5)["hits"]]
                if hits != expected[image_id]:
                    failures.append(f"{image_id}: {hits}")
            except Exception as e:
                failures.append(repr(e))
            counts[worker] += 1

    threads = [threading.Thread(target=query, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    version = c.search.loaded_indexes()
    for _ in range(2):
        c.search.build_index(train_id, "field")  # new version stored (and swapped into this process)
        reloaded = client.reload_index(train_id)
    stop.set()
    for t in threads:
        t.join()
    assert failures == [] and sum(counts) > 20
    assert {i["version"] for i in reloaded if i["level"] == "field"} != \
        {i["version"] for i in version if i["level"] == "field" and i["train_id"] == train_id}


def test_a_second_process_follows_builds_and_deletes(indexed):
    """Another search service over the same store (another worker, another task) swaps in a version built
    elsewhere and unloads what was deleted elsewhere (SearchService.refresh, run every second by servers)."""
    c, train_id = indexed
    other = SearchService(c.tables["search"], c.objects, c.keys, c.artifacts, c.embedding, c.training, c.tags, c.profiles)
    c.search.build_index(train_id, "well")
    loaded = other.load_index(train_id, "well")["version"]
    assert other.refresh() == []  # nothing changed since
    rebuilt = c.search.build_index(train_id, "well")["version"]
    assert rebuilt != loaded
    assert [(i["level"], i["version"]) for i in other.refresh()] == [("well", rebuilt)]
    c.search.delete_index(train_id, "well")
    other.refresh()
    assert ("well" not in {i["level"] for i in other.loaded_indexes() if i["train_id"] == train_id})


def test_search_server_workers_share_the_port_and_follow_reloads(indexed, tmp_path):
    """`python -m bioims.api.search_server --workers 2`: both processes answer on one port; a rebuild
    reloaded through one of them reaches the other within about a second."""
    import os
    import subprocess
    import sys
    import time

    from bioims.local_stack import free_port

    c, train_id = indexed
    port = free_port()
    env = {**os.environ, **c.settings.to_env()}
    log = (tmp_path / "search.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "bioims.api.search_server", "--port", str(port), "--workers", "2"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        pids: set[int] = set()
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        image_id = fields(c, train_id)["Metadata_ImageId"].iloc[0]
        for _ in range(20):  # new connections: the kernel spreads them over the workers
            with requests.Session() as session:
                answer = session.post(f"{url}/searches", json={"train_id": train_id, "image_id": image_id, "k": 3},
                                      timeout=30)
                assert answer.status_code == 200 and len(answer.json()["hits"]) == 3, answer.text
        version = c.search.build_index(train_id, "field")["version"]
        assert requests.post(f"{url}/indexes/{train_id}/reload", timeout=30).status_code == 200
        deadline, agreed = time.monotonic() + 10, 0
        while agreed < 10 and time.monotonic() < deadline:
            with requests.Session() as session:  # a new connection each time: either worker
                listed = {i["version"] for i in session.get(f"{url}/indexes", timeout=10).json()
                          if i["train_id"] == train_id and i["level"] == "field"}
            agreed = agreed + 1 if listed == {version} else 0
            time.sleep(0.05)
        assert agreed == 10, f"the workers did not all swap in {version}: {listed}"
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        pids.update(int(p) for p in children)
        assert len(pids) >= 2  # the supervisor's workers (spawn may add its resource tracker)
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        log.close()


def test_the_search_example_prints_hits_with_compound_and_moa(indexed, server, tmp_path):
    from tests.integration.test_examples import run_example

    c, train_id = indexed
    image_id = fields(c, train_id)["Metadata_ImageId"].iloc[3]
    expected = c.search.search(train_id, image_id=image_id, k=4, require_moa=True)["hits"]
    out = run_example("search_by_image.py", "--url", server, train_id, image_id, "-k", "4",
                      tmp_path=tmp_path).stdout.splitlines()
    assert out[0].split() == ["rank", "distance", "plate", "well", "compound", "moa"]
    rows = [line.split(None, 5) for line in out[1:-1]]
    assert [(int(r[0]), r[2], r[3], r[4], r[5]) for r in rows] == [
        (h["rank"], h["plate"], h["well"], h["compound"], h["moa"]) for h in expected]
    assert np.allclose([float(r[1]) for r in rows], [h["distance"] for h in expected], atol=1e-4)
    assert out[-1].startswith("search ") and out[-1].endswith(" ms") and " 4 hits " in out[-1]


def test_the_upload_example_finds_the_uploaded_field_first(indexed, server, tmp_path):
    from tests.integration.test_examples import run_example

    c, train_id = indexed
    image_id = fields(c, train_id)["Metadata_ImageId"].iloc[3]
    row = c.images.get_image_info(image_id)
    channels = [f"{ch}={uri[len('file://'):]}" for ch, uri in row["channel_uris"].items()]
    out = run_example("upload_and_search.py", "--url", server, train_id, *channels, "-k", "3",
                      "--flatfield-plate", row["plate_id"], tmp_path=tmp_path).stdout.splitlines()
    hits = [line.split() for line in out[1:-1]]
    assert len(hits) == 3 and hits[0][2] == image_id and float(hits[0][1]) < 1e-3
    assert " 3 hits " in out[-1]


def test_the_export_example_writes_every_embedded_field_to_parquet(indexed, server, tmp_path):
    from tests.integration.test_examples import run_example

    c, train_id = indexed
    out = run_example("export_embeddings.py", "--url", server, train_id, str(tmp_path / "fields.parquet"),
                      tmp_path=tmp_path, allow=("pyarrow", "numpy", "pandas")).stdout
    exported = read_profiles(tmp_path / "fields.parquet").sort_values("Metadata_ImageId", ignore_index=True)
    stored = fields(c, train_id).sort_values("Metadata_ImageId", ignore_index=True)
    dims = [n for n in stored.columns if n.startswith("emb_")]
    assert list(exported["Metadata_ImageId"]) == list(stored["Metadata_ImageId"])
    for name in ("Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_MoA"):
        assert exported[name].fillna("").tolist() == stored[name].fillna("").tolist(), name
    assert [n for n in exported.columns if n.startswith("emb_")] == dims
    assert np.allclose(exported[dims].to_numpy(), stored[dims].to_numpy(), atol=1e-6)
    assert f"{len(stored)} fields x {len(dims)} dims from 4 plates" in out


def test_the_evaluation_example_reports_the_nsc_accuracy_of_the_search(indexed, server, tmp_path):
    """The example's accuracy, through the search service, equals 1-NN among other compounds' fields
    with an MOA computed here from the stored embeddings."""
    from tests.integration.test_examples import run_example

    c, train_id = indexed
    table = fields(c, train_id)
    table = table[table["Metadata_MoA"].notna()].reset_index(drop=True)
    vectors = table[[n for n in table.columns if n.startswith("emb_")]].to_numpy(np.float64)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    distance = 1 - vectors @ vectors.T
    compound, moa = table["Metadata_Compound"].to_numpy(), table["Metadata_MoA"].to_numpy()
    distance[compound[:, None] == compound[None, :]] = np.inf
    nearest = np.argmin(distance, axis=1)
    right = int((moa[nearest] == moa).sum())
    out = run_example("evaluate_moa.py", "--url", server, train_id, tmp_path=tmp_path).stdout.splitlines()
    assert out[-1].startswith(f"NSC 1-NN accuracy (fields of run {train_id}): {right}/{len(table)} = ")
    per_moa = {line.rsplit(None, 2)[0]: line.rsplit(None, 2)[1] for line in out[:-1]}
    assert per_moa == {m: f"{int((moa[nearest] == moa)[moa == m].sum())}/{int((moa == m).sum())}"
                       for m in sorted(set(moa))}


def test_delete_training_refuses_while_indexed_then_removes_everything_the_run_made(indexed):
    """deleteTraining names the indexes still built from a run; once they are deleted (their artifact
    records with them: a rebuild keeps only the current version's) it removes the run's models,
    embeddings, fields' result rows and artifact records."""
    c, _ = indexed
    train_id = c.training.create_trainings(SPEC["name"], "none", epochs=0, seed=77)[0]["train_id"]
    c.training.run_training(train_id)
    c.runner.run(c, "embed", {"train_id": train_id})
    first = c.search.build_index(train_id, "field")
    c.search.build_index(train_id, "field")  # a rebuild: the first version's records go with its objects
    c.search.build_index(train_id, "well")
    records = c.artifacts.get_train_artifacts(train_id)
    index_records = [a for a in records if a["type"].startswith("index-")]
    assert {a["context_id"] for a in index_records} == {f"index:{train_id}:field:cosine", f"index:{train_id}:well:cosine"}
    assert not any(f"/{first['version']}/" in a["uri"] for a in index_records)
    assert all(c.objects.exists(a["uri"]) for a in index_records)
    with pytest.raises(Conflict, match=f"used by 2 search index\\(es\\): index:{train_id}:field:cosine"):
        c.training.delete_training(train_id)

    c.search.delete_index(train_id)
    assert not [a for a in c.artifacts.get_train_artifacts(train_id) if a["type"].startswith("index-")]
    image_id = c.embedding.profiles(train_id, "field")["Metadata_ImageId"].iloc[0]
    assert c.images.get_image_info(image_id, train_id)["train_id"] == train_id
    made = [u for root in (c.keys.models_root(train_id), c.keys.embeddings_root(train_id))
            for u in c.objects.list(root + "/")]
    assert any(u.endswith("model.onnx") for u in made) and any(u.endswith("fields.parquet") for u in made)

    deleted = c.training.delete_training(train_id)
    assert deleted["objects"] == len(made) and deleted["image_results"] > 0 and deleted["artifacts"] > 0
    assert not [u for root in (c.keys.models_root(train_id), c.keys.embeddings_root(train_id))
                for u in c.objects.list(root + "/")]
    assert c.artifacts.get_train_artifacts(train_id) == []
    with pytest.raises(NotFound):
        c.images.get_image_info(image_id, train_id)
    with pytest.raises(NotFound):
        c.training.get_training(train_id)


def test_changed_image_tags_reach_the_loaded_index_without_a_rebuild(indexed):
    """loadTagLabelMap (and the seed's startTagLoad over a spec's runs): a tag added to two fields filters
    the loaded index at once; the vectors are the build's (same FAISS part), the old version is gone."""
    c, _ = indexed
    train_id = c.training.create_trainings(SPEC["name"], "none", epochs=0, seed=78)[0]["train_id"]
    c.training.run_training(train_id)
    c.runner.run(c, "embed", {"train_id": train_id})
    built = c.search.build_index(train_id, "field")
    c.search.load_index(train_id, "field")
    ids = list(c.embedding.profiles(train_id, "field")["Metadata_ImageId"])
    marked = ids[:2]
    c.tags.ensure_tags(["review:flagged"])
    for image_id in marked:
        c.tags.add_image_tags(image_id, ["review:flagged"])
    try:
        query = dict(image_id=ids[5], k=50, include_tags=["review:flagged"])
        assert c.search.search(train_id, **query)["hits"] == []  # the build's tags: not yet
        before = c.objects.get_bytes(c.keys.index_part(train_id, "field", "cosine", built["version"], "index.faiss"))
        reloaded, = c.search.load_tag_label_map(train_id)
        assert reloaded["version"] != built["version"] and reloaded["loaded"]
        assert sorted(h["id"] for h in c.search.search(train_id, **query)["hits"]) == sorted(marked)
        assert c.objects.get_bytes(c.keys.index_part(train_id, "field", "cosine", reloaded["version"],
                                                     "index.faiss")) == before
        assert not list(c.objects.list(c.keys.index_version(train_id, "field", "cosine", built["version"]) + "/"))
        records = [a["uri"] for a in c.artifacts.get_artifacts(f"index:{train_id}:field:cosine")]
        assert records and all(f"/{reloaded['version']}/" in u for u in records)

        c.tags.remove_image_tags(marked[0], ["review:flagged"])
        again = [i for i in c.search.start_tag_load(SPEC["name"]) if i["train_id"] == train_id]
        assert len(again) == 1 and again[0]["version"] != reloaded["version"]
        assert [h["id"] for h in c.search.search(train_id, **query)["hits"]] == [marked[1]]
    finally:
        for image_id in marked:
            c.tags.remove_image_tags(image_id, ["review:flagged"])
    c.search.delete_index(train_id)


def test_one_field_is_embedded_again_by_execute_image_embedding_compute(indexed):
    """The seed's executeImageEmbeddingCompute: a field whose cell embeddings were lost is embedded again
    by the embed workflow (same model, same crops: the same vector), its plate's table rewritten."""
    import time

    c, train_id = indexed
    table = fields(c, train_id)
    image_id = table["Metadata_ImageId"].iloc[3]
    plate_id = c.images.get_image_info(image_id)["plate_id"]
    cells = c.keys.cell_embeddings(train_id, plate_id, image_id)
    stored = c.objects.get_bytes(cells)
    c.objects.delete(cells)
    execution_id = c.embedding.execute_image_embedding_compute(train_id, image_id)
    deadline = time.monotonic() + 120
    while (execution := c.images.describe_execution(execution_id))["status"] == "RUNNING":
        assert time.monotonic() < deadline, execution
        time.sleep(0.25)
    assert execution["status"] == "SUCCEEDED", json.dumps(execution)
    assert execution["params"] == {"train_id": train_id, "plate_ids": [plate_id], "image_ids": [image_id]}
    assert execution["output"]["failed"] == 0 and execution["output"]["skipped"] == 0
    assert np.allclose(np.load(io.BytesIO(c.objects.get_bytes(cells))), np.load(io.BytesIO(stored)), atol=1e-6)
    again = fields(c, train_id)
    assert list(again["Metadata_ImageId"]) == list(table["Metadata_ImageId"])
    assert np.allclose(again.filter(like="emb_").to_numpy(), table.filter(like="emb_").to_numpy(), atol=1e-6)
    with pytest.raises(NotFound):
        c.embedding.execute_image_embedding_compute(train_id, "no-such-image")
