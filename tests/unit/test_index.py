"""bioims.index: exact and approximate search vs numpy brute force, tag filters, persistence, bad inputs,
threads. Small clustered synthetic data (the whole file runs in a few seconds)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import bioims.index.vector_index as vector_index
from bioims.errors import InvalidInput, NotFound
from bioims.index import KINDS, PARTS, TagTable, VectorIndex, set_search_threads

N, D, CLUSTERS, K = 3000, 32, 30, 10
MOAS = 10  # cluster c belongs to moa c % MOAS; clusters >= 27 carry no moa tag (controls)
RARE = (5, 77, 901, 1402, 1999, 2500, 2750, 2998)  # positions tagged "rare:yes"


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float = 0.45):
    labels = rng.integers(0, len(centres), n)
    return (centres[labels] + spread * rng.standard_normal((n, centres.shape[1]))).astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CLUSTERS, D))
    x, labels = clustered(rng, centres, N)
    queries, _ = clustered(rng, centres, 40)
    ids = [f"img{i:05d}" for i in range(N)]
    tags = []
    for i, c in enumerate(labels):
        row = [f"compound:c{c}_{i % 3}", f"plate:P{i % 6}", f"well:{'ABCDEFGH'[i % 8]}{i % 12 + 1:02d}"]
        if c < 27:
            row.append(f"moa:m{c % MOAS}")
        if i in RARE:
            row.append("rare:yes")
        tags.append(row)
    return {"x": x, "labels": labels, "queries": queries, "ids": ids, "tags": tags}


@pytest.fixture(scope="module")
def indexes(data):
    """One index per (kind, metric) actually used, built once."""
    built = {}
    for kind in KINDS:
        for metric in ("cosine", "euclidean"):
            built[kind, metric] = VectorIndex.build(data["x"], data["ids"], data["tags"], metric=metric, kind=kind,
                                                    info={"train_id": "t1", "level": "field"})
    return built


def brute(data, query, k, metric, allowed=None):
    """Exact (positions, distances) in float64 over the allowed positions (all by default)."""
    x = data["x"].astype(np.float64)
    q = np.asarray(query, dtype=np.float64)
    if metric == "cosine":
        dist = 1.0 - (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    else:
        dist = np.sqrt(((x - q) ** 2).sum(axis=1))
    candidates = np.arange(len(x)) if allowed is None else np.asarray(sorted(allowed), dtype=np.int64)
    order = candidates[np.argsort(dist[candidates], kind="stable")][:k]
    return order.tolist(), dist[order]


def allowed_set(data, include=(), exclude=(), require_moa=False, exclude_positions=()):
    """Reference filter semantics with Python sets."""
    out = set()
    for i, row in enumerate(data["tags"]):
        if include and not set(include) & set(row):
            continue
        if set(exclude) & set(row) or (require_moa and not any(t.startswith("moa:") for t in row)):
            continue
        if i not in exclude_positions:
            out.add(i)
    return out


# exact search ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_flat_is_exact(data, indexes, metric):
    index = indexes["flat", metric]
    for q in data["queries"]:
        hits = index.search(q, K)
        positions, distances = brute(data, q, K, metric)
        assert [p for p, _ in hits] == positions
        np.testing.assert_allclose([d for _, d in hits], distances, rtol=1e-4, atol=1e-5)


def test_auto_kind_follows_flat_max(data, monkeypatch):
    assert VectorIndex.build(data["x"][:100], data["ids"][:100]).kind == "flat"
    monkeypatch.setattr(vector_index, "FLAT_MAX", 99)
    assert VectorIndex.build(data["x"][:400], data["ids"][:400]).kind == "ivf"


def test_sidecar_and_lookups(data, indexes):
    index = indexes["ivf", "cosine"]
    info = index.info
    assert {k: info[k] for k in ("format", "kind", "metric", "dims", "count", "train_id", "level")} == {
        "format": 1, "kind": "ivf", "metric": "cosine", "dims": D, "count": N, "train_id": "t1", "level": "field"}
    assert info["built_at"].endswith("Z") and info["build_seconds"] >= 0
    assert info["params"]["nlist"] == min(round(4 * np.sqrt(N)), N // 39) and info["params"]["tune_recall@10"] >= 0.95
    assert indexes["hnsw", "cosine"].info["params"]["M"] == 32
    info["kind"] = "changed"
    assert index.info["kind"] == "ivf"  # info is a copy
    assert index.position("img00042") == 42 and index.ids[42] == "img00042"
    assert index.tags_of(5) == sorted(data["tags"][5])
    expected = data["x"][7] / np.linalg.norm(data["x"][7])
    for kind in KINDS:
        np.testing.assert_allclose(indexes[kind, "cosine"].vector(7), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(indexes[kind, "euclidean"].vector(7), data["x"][7])
    counts = index.tag_counts()
    assert counts["rare:yes"] == len(RARE) and sum(v for t, v in counts.items() if t.startswith("plate:")) == N


# approximate search ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,metric", [("ivf", "cosine"), ("ivf", "euclidean"), ("hnsw", "cosine"),
                                         ("hnsw", "euclidean")])
def test_approximate_recall_on_clustered_data(data, indexes, kind, metric):
    index = indexes[kind, metric]
    found = 0
    for q in data["queries"]:
        hits = index.search(q, K)
        assert len(hits) == K
        assert [d for _, d in hits] == sorted(d for _, d in hits)
        found += len({p for p, _ in hits} & set(brute(data, q, K, metric)[0]))
    assert found / (K * len(data["queries"])) >= 0.9


def test_search_batch_matches_single_searches(data, indexes):
    for kind in KINDS:
        index = indexes[kind, "cosine"]
        distances, positions = index.search_batch(data["queries"], K)
        assert distances.shape == positions.shape == (len(data["queries"]), K)
        assert positions.dtype == np.int64 and distances.dtype == np.float32
        for q, row_d, row_p in zip(data["queries"], distances, positions):
            hits = index.search(q, K)
            assert row_p.tolist() == [p for p, _ in hits]
            np.testing.assert_allclose(row_d, [d for _, d in hits], rtol=1e-5, atol=1e-6)
    small = VectorIndex.build(data["x"][:5], data["ids"][:5])
    assert small.search_batch(data["queries"][:2], 10)[1].shape == (2, 5)
    assert len(small.search(data["queries"][0], 10)) == 5


# filters ---------------------------------------------------------------------------------------------

FILTERS = [
    {"include": ["moa:m3"]},
    {"include": ["moa:m3", "moa:m4", "plate:P1"]},  # OR
    {"include": ["compound:c4_0", "compound:c4_1", "compound:c4_2"], "exclude": ["plate:P2"]},
    {"exclude": ["moa:m1", "moa:m2", "well:A01"]},
    {"require_moa": True},
    {"require_moa": True, "exclude": ["plate:P0"], "include": ["plate:P0", "plate:P3"]},
    {"include": ["moa:m3", "no-such-tag"], "exclude": ["no-such-tag-either"]},
    {"exclude_positions": [0, 1, 2, 2999]},
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: "-".join(f"{k}" for k in f))
def test_filters(data, indexes, kind, flt):
    index = indexes[kind, "cosine"]
    allowed = allowed_set(data, **flt)
    assert 0 < len(allowed) < N
    for q in data["queries"][:10]:
        hits = index.search(q, K, **flt)
        assert len(hits) == K
        assert {p for p, _ in hits} <= allowed
        if kind == "flat":
            assert [p for p, _ in hits] == brute(data, q, K, "cosine", allowed)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_filters_matching_nothing(data, indexes, kind):
    index = indexes[kind, "euclidean"]
    q = data["queries"][0]
    assert index.search(q, K, include=["no-such-tag"]) == []
    assert index.search(q, K, include=["rare:yes"], exclude=["rare:yes"]) == []
    assert index.search(q, K, include=["rare:yes"], exclude_positions=list(RARE)) == []
    assert index.search(q, K, exclude=["no-such-tag"]) == index.search(q, K)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_very_selective_filter_returns_the_true_nearest_allowed(data, indexes, kind, metric):
    index = indexes[kind, metric]
    for q in data["queries"][:10]:
        hits = index.search(q, 5, include=["rare:yes"])
        positions, distances = brute(data, q, 5, metric, set(RARE))
        assert [p for p, _ in hits] == positions
        np.testing.assert_allclose([d for _, d in hits], distances, rtol=1e-4, atol=1e-5)
        # fewer allowed than k: all of them
        assert sorted(p for p, _ in index.search(q, 50, include=["rare:yes"])) == sorted(RARE)
        one_compound = allowed_set(data, include=["compound:c11_1"])
        assert [p for p, _ in index.search(q, K, include=["compound:c11_1"])] == \
            brute(data, q, K, metric, one_compound)[0]


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_filters_far_from_the_query_still_return_k(data, indexes, kind):
    """The query sits in one cluster; the allowed vectors are all in other clusters (the approximate
    search around the query finds none of them, so the exact fallback has to)."""
    index = indexes[kind, "cosine"]
    q = data["x"][0]
    own = {f"moa:m{data['labels'][0] % MOAS}"}
    elsewhere = sorted({t for row in data["tags"] for t in row if t.startswith("moa:")} - own)[:1]
    hits = index.search(q, K, include=elsewhere)
    assert len(hits) == K
    assert {p for p, _ in hits} <= allowed_set(data, include=elsewhere)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_short_approximate_results_are_completed_exactly(data, indexes, kind, monkeypatch):
    """Force the Bitmap path (exact search made 'expensive', no widening, nprobe / efSearch 1) for the 8
    scattered rare vectors: the approximate search sees too few of them, and the exhaustive fallback
    must return exactly the true nearest allowed ones."""
    monkeypatch.setattr(vector_index, "FILTER_WIDEN", 1e-9)
    monkeypatch.setattr(vector_index, "COST_BY_ID", 10**12)
    monkeypatch.setattr(vector_index, "COST_RECONSTRUCT", 10**12)
    parts = indexes[kind, "cosine"].to_parts()
    info = json.loads(parts["index.json"])
    info["params"].update({"nprobe": 1} if kind == "ivf" else {"efSearch": 1})
    index = VectorIndex.from_parts({**parts, "index.json": json.dumps(info).encode()})
    for q in data["queries"][:5]:
        assert [p for p, _ in index.search(q, 5, include=["rare:yes"])] == brute(data, q, 5, "cosine", set(RARE))[0]
        assert sorted(p for p, _ in index.search(q, 50, include=["rare:yes"])) == sorted(RARE)


def test_short_unfiltered_ivf_results_are_completed(data, indexes):
    """nprobe 1 visits one list (~40 vectors); asking for 200 neighbours needs the exhaustive fallback."""
    parts = indexes["ivf", "euclidean"].to_parts()
    info = json.loads(parts["index.json"])
    info["params"]["nprobe"] = 1
    index = VectorIndex.from_parts({**parts, "index.json": json.dumps(info).encode()})
    distances, positions = index.search_batch(data["queries"][:3], 200)
    for q, row_d, row_p in zip(data["queries"][:3], distances, positions):
        exact, exact_d = brute(data, q, 200, "euclidean")
        assert row_p.tolist() == exact and [p for p, _ in index.search(q, 200)] == exact
        np.testing.assert_allclose(row_d, exact_d, rtol=1e-4, atol=1e-4)


def test_flat_post_filter_falls_back_when_the_neighbours_are_excluded(data, indexes):
    """Most vectors pass, but every near neighbour of the query is excluded (its own cluster)."""
    index = indexes["flat", "cosine"]
    c = data["labels"][0]
    q = data["x"][0]
    exclude = sorted({t for i in np.flatnonzero(data["labels"] == c) for t in data["tags"][i]
                      if t.startswith("compound:")})
    allowed = allowed_set(data, exclude=exclude)
    assert len(allowed) > 0.9 * N
    assert [p for p, _ in index.search(q, K, exclude=exclude)] == brute(data, q, K, "cosine", allowed)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_exclude_positions_drops_the_query_itself(data, indexes, kind):
    index = indexes[kind, "cosine"]
    for position in (0, 17, 2999):
        hits = index.search(data["x"][position], K)
        assert hits[0][0] == position and hits[0][1] == pytest.approx(0.0, abs=1e-5)
        without = index.search(data["x"][position], K, exclude_positions=[position])
        assert len(without) == K and position not in {p for p, _ in without}
        assert [p for p, _ in without][:K - 1] == [p for p, _ in hits][1:]


def test_tag_table_matches_set_semantics(data):
    """Both allowed-set paths (sorted merge for small unions, boolean mask for large) against sets."""
    table = TagTable.from_rows(data["tags"], data["ids"])
    rng = np.random.default_rng(1)
    names = table.names
    for _ in range(60):
        include = list(rng.choice(names, rng.integers(0, 40))) if rng.random() < 0.7 else []
        exclude = list(rng.choice(names, rng.integers(0, 4)))
        require_moa = bool(rng.random() < 0.3)
        dropped = rng.integers(0, N, rng.integers(0, 5)).tolist()
        allowed = table.allowed(include, exclude, require_moa=require_moa, exclude_positions=dropped)
        expected = allowed_set(data, include, exclude, require_moa, dropped)
        if allowed is None:
            assert expected == set(range(N))
            continue
        assert allowed.count == len(expected)
        assert allowed.positions().tolist() == sorted(expected)
        assert np.flatnonzero(allowed.mask()).tolist() == sorted(expected)
        bits = np.unpackbits(allowed.bitmap(), bitorder="little")[:N]
        assert np.flatnonzero(bits).tolist() == sorted(expected)
    assert table.allowed() is None


# persistence -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(data, indexes, kind):
    index = indexes[kind, "cosine"]
    parts = index.to_parts()
    assert set(parts) == set(PARTS) and all(isinstance(v, bytes) for v in parts.values())
    loaded = VectorIndex.from_parts(parts)
    assert loaded.info == index.info and loaded.ids == index.ids
    assert (loaded.kind, loaded.metric, loaded.dims, loaded.count) == (kind, "cosine", D, N)
    assert loaded.tag_counts() == index.tag_counts()
    assert all(loaded.tags_of(p) == index.tags_of(p) for p in (0, 5, 1234, N - 1))
    np.testing.assert_array_equal(loaded.vector(11), index.vector(11))
    for flt in [{}] + FILTERS + [{"include": ["rare:yes"]}]:
        for q in data["queries"][:5]:
            assert loaded.search(q, K, **flt) == index.search(q, K, **flt)
    for a, b in zip(loaded.search_batch(data["queries"], K), index.search_batch(data["queries"], K)):
        np.testing.assert_array_equal(a, b)
    assert VectorIndex.from_parts(loaded.to_parts()).to_parts() == loaded.to_parts()


def test_corrupt_or_missing_parts(indexes):
    parts = indexes["ivf", "cosine"].to_parts()
    for name in PARTS:
        with pytest.raises(InvalidInput, match=f"'{name}' is missing"):
            VectorIndex.from_parts({k: v for k, v in parts.items() if k != name})
    broken = {
        "index.faiss": [parts["index.faiss"][:1000], b"garbage" * 10, indexes["flat", "cosine"].to_parts()["index.faiss"]],
        "index.json": [b"{not json", b"[]", parts["index.json"].replace(b'"format": 1', b'"format": 2')],
        "ids.json": [b'["a", "b"]', b"{}", parts["ids.json"][:-20] + b'"img00000"]'],
        "tags.npz": [b"PK\x03\x04 not a zip", parts["tags.npz"][:100]],
    }
    for name, variants in broken.items():
        for variant in variants:
            with pytest.raises(InvalidInput, match=f"index part '{name}' is corrupt"):
                VectorIndex.from_parts({**parts, name: variant})
    mismatched = indexes["flat", "cosine"].to_parts()
    with pytest.raises(InvalidInput, match="'index.faiss' is corrupt.*IndexIVFFlat.*flat"):
        VectorIndex.from_parts({**mismatched, "index.faiss": parts["index.faiss"]})


# bad inputs ------------------------------------------------------------------------------------------


def test_bad_build_inputs(data):
    x, ids = data["x"][:50].copy(), data["ids"][:50]
    with pytest.raises(InvalidInput, match="unique.*'img00003'"):
        VectorIndex.build(x, ids[:49] + ["img00003"])
    nan = x.copy()
    nan[7, 3] = np.nan
    with pytest.raises(InvalidInput, match="NaN or infinite.*'img00007'"):
        VectorIndex.build(nan, ids)
    inf = x.astype(np.float64)
    inf[8, 0] = 1e300  # overflows float32
    with pytest.raises(InvalidInput, match="'img00008'"):
        VectorIndex.build(inf, ids, metric="euclidean")
    zero = x.copy()
    zero[9] = 0
    with pytest.raises(InvalidInput, match="zero vectors.*'img00009'"):
        VectorIndex.build(zero, ids)
    assert VectorIndex.build(zero, ids, metric="euclidean").count == 50  # fine for L2
    for bad, match in [({"vectors": x[:, 0]}, "shape"), ({"ids": ids[:10]}, "50 vectors but 10 ids"),
                       ({"metric": "dot"}, "metric"), ({"kind": "pq"}, "kind"),
                       ({"tags": [["a"]] * 3}, "one list of tags per vector"), ({"tags": ["moa:x"] * 50}, "list of strings"),
                       ({"info": {"count": 3}}, "own fields: count"), ({"info": {"x": object()}}, "JSON")]:
        args = {"vectors": x, "ids": ids, **bad}
        with pytest.raises(InvalidInput, match=match):
            VectorIndex.build(args.pop("vectors"), args.pop("ids"), **args)


def test_bad_search_inputs(data, indexes):
    index = indexes["flat", "cosine"]
    q = data["queries"][0]
    with pytest.raises(InvalidInput, match=r"query shape \(31,\).*\(32,\)"):
        index.search(q[:31], K)
    with pytest.raises(InvalidInput, match="query shape"):
        index.search(np.stack([q, q]), K)
    with pytest.raises(InvalidInput, match="NaN"):
        index.search(np.full(D, np.nan), K)
    with pytest.raises(InvalidInput, match="zero"):
        index.search(np.zeros(D), K)
    for k in (0, -1, 1.5, True, "3"):
        with pytest.raises(InvalidInput, match="k must be a positive integer"):
            index.search(q, k)
    with pytest.raises(InvalidInput, match="k must be"):
        index.search_batch(data["queries"], 0)
    with pytest.raises(InvalidInput, match="query shape"):
        index.search_batch(data["queries"][:, :5], K)
    with pytest.raises(InvalidInput, match="list of tags"):
        index.search(q, K, include="moa:m1")
    with pytest.raises(InvalidInput, match="position 3000 is outside"):
        index.search(q, K, exclude_positions=[3000])
    with pytest.raises(NotFound, match="'nope'"):
        index.position("nope")
    with pytest.raises(NotFound, match="position 3000"):
        index.vector(N)
    with pytest.raises(NotFound):
        index.tags_of(-1)
    with pytest.raises(InvalidInput):
        set_search_threads(0)


# threads ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_searches_match_serial(data, indexes, kind):
    index = indexes[kind, "cosine"]
    jobs = [(q, flt) for q in data["queries"][:12] for flt in [{}] + FILTERS + [{"include": ["rare:yes"]}]]
    serial = [index.search(q, K, **flt) for q, flt in jobs]
    previous = set_search_threads(1)
    try:
        with ThreadPoolExecutor(8) as pool:
            concurrent = list(pool.map(lambda job: index.search(job[0], K, **job[1]), jobs * 3))
    finally:
        set_search_threads(previous)
    assert concurrent == serial * 3
