"""Similarity search latency of ``bioims.index`` on clustered synthetic embeddings, in-process.

Data: 1000 Gaussian clusters in d=128 (the demo embeddings' size), centres N(0, 1), within-cluster noise
N(0, 1.5^2) per dimension, L2-normalised, cosine metric (nearest-neighbour cosine ~0.5: neighbours are
hard to tell apart, a harsher test of approximate recall than well-separated clusters). Queries are fresh
draws from the same clusters, not indexed vectors. Tags: each vector gets, at random, one of 1000
``a:`` tags, one of 10 ``c:`` tags and one of 2 ``d:`` tags, so filters are uncorrelated with the geometry
(the hard case for approximate filtering): 0.1% = include ``a:0``, 1% = include ``a:0`` .. ``a:9`` (an OR
of 10 tags, like 10 compounds), 10% = include ``c:0``, 50% = exclude ``d:0``.

Latency is one query at a time with one FAISS/OpenMP thread, as the search server answers (k=10),
p50/p99 over the queries after a warm-up. Figures (ratio = baseline / value for latencies, i.e. the
speed-up; value / baseline for recall):

- 13k vectors (BBBC021's field count), flat: p50, p99 vs numpy brute force on the same queries (one
  BLAS thread: with two, on a busy 2-core machine, numpy's p50 went from 0.25 to 8-12 ms);
- 1M vectors: IVF p50, p99 vs the exact flat index; IVF recall@10 vs the exact results; build seconds;
- HNSW at 100k vectors (its build is ~25 s per 100k on 2 cores: minutes at 1M) vs flat at 100k;
- filtered queries at 0.1%, 1%, 10% and 50% selectivity on each index: p50 vs unfiltered p50 (every
  query must return k hits), and for IVF/HNSW recall@10 vs the exact filtered results.

Over HTTP (``http_server``): the same kind of 13k vectors, with field-like ids, ``plate:``, ``well:``,
``compound:``, ``concentration:`` and ``moa:`` tags and row payloads, written to a temporary BIOIMS_HOME
exactly as the search service's build writes an index (a version's parts, then ``current.json``); a real
dynalite (the local stack) and ``python -m bioims.api.search_server --workers SEARCH_WORKERS`` (one per
core) as a subprocess on a loopback port (one BLAS/OpenMP thread each), ready once ``GET /ready``
answers 200. Figures:

- one keep-alive client (``http.client``: a ``requests`` session adds ~0.5 ms per request here), one
  ``POST /searches`` at a time (``vector`` queries; ``id`` queries): p50, p99
  vs the in-process flat search of the same queries (every answer must have k hits, the vector queries
  the in-process hit ids);
- a bounded load test: LOAD_CLIENTS threads, each with its own keep-alive connection, for LOAD_SECONDS, while a new
  version of the index is written and ``POST /indexes/{source}/reload`` swaps it in: queries/s vs the
  sequential client's rate (1 / its mean latency), p50 and p99 vs the sequential client's, and the
  errors (non-200, non-JSON, not k hits, exceptions) vs the number of requests (ratio = error fraction;
  the target is 0). The server and dynalite are stopped and the temporary home removed in any case.

The whole module takes about 3 minutes on 2 cores (most of it the 1M IVF build; the HTTP part ~25 s).
Progress goes to stderr. ``threadpoolctl`` comes with scikit-learn (the ``ml`` extra); ``requests``,
``waitress``, Node.js and dynalite (``npm ci``) for the HTTP part.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
from threadpoolctl import threadpool_limits

from bioims.api.http import WATCH_SECONDS
from bioims.errors import NotFound
from bioims.ids import new_id
from bioims.index import VectorIndex, set_search_threads
from bioims.local_stack import LocalStack, free_port
from bioims.services.search import ROWS
from bioims.settings import Settings
from bioims.store.keys import Keys
from bioims.store.objects import ObjectStore

DIMS, CLUSTERS, SPREAD = 128, 1000, 1.5
SMALL, LARGE, HNSW_SIZE = 13_000, 1_000_000, 100_000
K = 10
QUERIES, SLOW_QUERIES, WARMUP = 200, 60, 5  # SLOW: exact 1M searches (~20-40 ms each)
TAG_VALUES = {"a": 1000, "c": 10, "d": 2}  # tag prefix -> number of values, drawn uniformly per vector
FILTERS: dict[str, dict[str, list[str]]] = {
    "0.1%": {"include": ["a:0"]},
    "1%": {"include": [f"a:{v}" for v in range(10)]},
    "10%": {"include": ["c:0"]},
    "50%": {"exclude": ["d:0"]},
}


def log(message: str) -> None:
    print(f"[bench_search] {message}", file=sys.stderr, flush=True)


def clustered(n: int, seed: int) -> np.ndarray:
    """(n, DIMS) float32 unit vectors from the fixed CLUSTERS Gaussian clusters."""
    centres = np.random.default_rng(0).standard_normal((CLUSTERS, DIMS), dtype=np.float32)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, CLUSTERS, n)]
    x += SPREAD * rng.standard_normal((n, DIMS), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def random_tags(n: int, seed: int) -> list[list[str]]:
    """Per vector one random value of each TAG_VALUES prefix, e.g. ``["a:417", "c:3", "d:0"]``."""
    rng = np.random.default_rng(seed)
    columns = [np.array([f"{prefix}:{v}" for v in range(values)], dtype=object)[rng.integers(0, values, n)]
               for prefix, values in TAG_VALUES.items()]
    return [list(row) for row in zip(*columns)]


def timed(search: Callable[[np.ndarray], object], queries: np.ndarray) -> tuple[np.ndarray, list]:
    """Seconds per query (after WARMUP untimed ones) and the results."""
    for q in queries[:WARMUP]:
        search(q)
    seconds, results = [], []
    for q in queries:
        start = time.perf_counter()
        results.append(search(q))
        seconds.append(time.perf_counter() - start)
    return np.asarray(seconds), results


def ms(seconds: np.ndarray, q: float) -> float:
    return float(np.percentile(seconds, q) * 1e3)


def recall(found: list[list[tuple[int, float]]], exact: list[list[tuple[int, float]]]) -> float:
    hits = sum(len({p for p, _ in f} & {p for p, _ in e}) for f, e in zip(found, exact))
    return hits / sum(len(e) for e in exact)


def row(figure: str, value: float, unit: str, baseline: float, *, higher_is_better: bool = False) -> dict:
    ratio = value / baseline if higher_is_better else baseline / value
    log(f"{figure}: {value:.3f} {unit} (baseline {baseline:.3f}, ratio {ratio:.2f})")
    return {"benchmark": "search", "figure": figure, "value": value, "unit": unit, "baseline": baseline,
            "ratio": ratio}


def latency_rows(name: str, index: VectorIndex, queries: np.ndarray, baseline: np.ndarray,
                 baseline_name: str) -> tuple[list[dict], np.ndarray, list]:
    """p50 and p99 of unfiltered k=10 searches vs the baseline's per-query seconds; also returns the
    per-query seconds and the results."""
    seconds, results = timed(lambda q: index.search(q, K), queries)
    if any(len(r) != K for r in results):
        raise AssertionError(f"{name}: a search returned fewer than {K} hits")
    return [row(f"{name} p50 (vs {baseline_name})", ms(seconds, 50), "ms", ms(baseline, 50)),
            row(f"{name} p99 (vs {baseline_name})", ms(seconds, 99), "ms", ms(baseline, 99))], seconds, results


def filtered_rows(name: str, index: VectorIndex, queries: np.ndarray, unfiltered: np.ndarray,
                  exact: VectorIndex | None = None) -> list[dict]:
    """Per selectivity: p50 vs the unfiltered p50; every query must return K hits. With ``exact`` (a
    flat index of the same vectors and tags), also recall@10 against its filtered results."""
    rows = []
    for label, flt in FILTERS.items():
        seconds, results = timed(lambda q, flt=flt: index.search(q, K, **flt), queries)
        if any(len(r) != K for r in results):
            raise AssertionError(f"{name} filtered {label}: a search returned fewer than {K} hits")
        rows.append(row(f"{name} filtered {label} p50 (vs unfiltered)", ms(seconds, 50), "ms", ms(unfiltered, 50)))
        if exact is not None:
            truth = [exact.search(q, K, **flt) for q in queries]
            rows.append(row(f"{name} filtered {label} recall@10 (vs exact)", recall(results, truth), "recall", 1.0,
                            higher_is_better=True))
    return rows


def numpy_search(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The baseline: brute-force cosine in numpy, one query at a time (x: (N, D) unit vectors)."""
    def search(q: np.ndarray) -> np.ndarray:
        scores = x @ (q / np.linalg.norm(q))
        top = np.argpartition(-scores, K)[:K]
        return top[np.argsort(-scores[top])]
    return search


# sections: each builds its data and returns its rows --------------------------------------------------


def small_index() -> list[dict]:
    """13k vectors: flat vs numpy brute force; filtered flat."""
    x, queries = clustered(SMALL, seed=1), clustered(QUERIES, seed=2)
    index = VectorIndex.build(x, [f"v{i}" for i in range(SMALL)], random_tags(SMALL, seed=3), kind="flat")
    previous = set_search_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):  # one thread per query for both, as in a server
            brute, _ = timed(numpy_search(x), queries)
        rows, unfiltered, _ = latency_rows("flat 13k", index, queries, brute, "numpy brute force")
        rows += filtered_rows("flat 13k", index, queries, unfiltered)
    finally:
        set_search_threads(previous)
    return rows


def large_index() -> list[dict]:
    """1M vectors: exact flat vs IVF (latency, recall, build time, filters); HNSW at 100k."""
    queries = clustered(QUERIES, seed=5)
    return million(queries) + hnsw_index(queries)


def million(queries: np.ndarray) -> list[dict]:
    """Flat and IVF over the same 1M vectors and tags (freed on return)."""
    started = time.perf_counter()
    x, ids, tags = clustered(LARGE, seed=4), [f"v{i}" for i in range(LARGE)], random_tags(LARGE, seed=6)
    log(f"1M data and tags: {time.perf_counter() - started:.1f} s")
    flat = VectorIndex.build(x, ids, tags, kind="flat")
    ivf = VectorIndex.build(x, ids, tags, kind="ivf")
    log(f"ivf 1M built: {ivf.info['build_seconds']:.1f} s, params {ivf.info['params']}")
    rows = [row("ivf 1M build (vs flat build)", ivf.info["build_seconds"], "s", flat.info["build_seconds"])]
    previous = set_search_threads(1)
    try:
        slow = queries[:SLOW_QUERIES]
        exact_seconds, exact = timed(lambda q: flat.search(q, K), slow)
        found_rows, ivf_seconds, found = latency_rows("ivf 1M", ivf, queries, exact_seconds, "exact flat 1M")
        rows += found_rows
        rows.append(row("ivf 1M recall@10 (vs exact)", recall(found[:SLOW_QUERIES], exact), "recall", 1.0,
                        higher_is_better=True))
        rows += filtered_rows("flat 1M", flat, slow, exact_seconds)
        rows += filtered_rows("ivf 1M", ivf, slow, ivf_seconds, exact=flat)
    finally:
        set_search_threads(previous)
    return rows


def hnsw_index(queries: np.ndarray) -> list[dict]:
    """HNSW at HNSW_SIZE (its 1M build takes minutes) vs flat at the same size."""
    x, ids, tags = clustered(HNSW_SIZE, seed=7), [f"v{i}" for i in range(HNSW_SIZE)], random_tags(HNSW_SIZE, seed=8)
    flat = VectorIndex.build(x, ids, tags, kind="flat")
    hnsw = VectorIndex.build(x, ids, tags, kind="hnsw")
    log(f"hnsw 100k built: {hnsw.info['build_seconds']:.1f} s, params {hnsw.info['params']}")
    rows = [row("hnsw 100k build (vs flat build)", hnsw.info["build_seconds"], "s", flat.info["build_seconds"])]
    previous = set_search_threads(1)
    try:
        exact_seconds, exact = timed(lambda q: flat.search(q, K), queries)
        found_rows, hnsw_seconds, found = latency_rows("hnsw 100k", hnsw, queries, exact_seconds, "exact flat 100k")
        rows += found_rows
        rows.append(row("hnsw 100k recall@10 (vs exact)", recall(found, exact), "recall", 1.0, higher_is_better=True))
        rows += filtered_rows("hnsw 100k", hnsw, queries[:SLOW_QUERIES * 2], hnsw_seconds, exact=flat)
    finally:
        set_search_threads(previous)
    return rows


# over HTTP: the search server as a subprocess, one client, then a bounded load test across a reload -----

HTTP_SOURCE = "bench-search-http"
HTTP_QUERIES = 500  # sequential single-client queries (vector), and as many id queries
LOAD_CLIENTS, LOAD_SECONDS, RELOAD_AT = 8, 15.0, 5.0
SEARCH_WORKERS = os.cpu_count() or 1  # server processes (one query per core at a time)  # the reload starts RELOAD_AT s into the load
READY_TIMEOUT = 120.0
JSON_HEADERS = {"Content-Type": "application/json"}


def field_table(n: int, seed: int) -> tuple[list[str], list[list[str]], list[dict]]:
    """Ids (16 hex digits, like image ids), tags and row payloads of n synthetic fields: 30 plates, 96
    wells, 3 concentrations, 100 compounds of which 80 have one of 12 MoAs."""
    rng = np.random.default_rng(seed)
    plates, compounds = rng.integers(0, 30, n), rng.integers(0, 100, n)
    ids, tags, payload = [], [], []
    for i in range(n):
        image_id, plate, compound = f"{i:016x}", f"P{plates[i]:02d}", int(compounds[i])
        row_tags = [f"plate:{plate}", f"well:{'ABCDEFGH'[i % 8]}{(i // 8) % 12 + 1:02d}",
                    f"compound:C{compound:03d}", f"concentration:{(0.1, 1.0, 10.0)[i % 3]:g}"]
        if compound < 80:
            row_tags.append(f"moa:M{compound % 12}")
        ids.append(image_id)
        tags.append(sorted(row_tags))
        payload.append({"image_id": image_id, "plate_id": plate, "thumbnail": None})
    return ids, tags, payload


def persist(objects: ObjectStore, base: str, index: VectorIndex, payload: list[dict]) -> str:
    """Write ``index`` as the search service's build does: a new version's parts (``to_parts()`` and the
    rows payload), then the ``current.json`` pointer, then the previous version is deleted. Returns the
    version."""
    version = new_id()
    for name, data in {**index.to_parts(), ROWS: json.dumps(payload, separators=(",", ":")).encode()}.items():
        objects.put_bytes(f"{base}/{version}/{name}", data)
    try:
        previous = str(objects.get_json(f"{base}/current.json")["version"])
    except NotFound:
        previous = None
    objects.put_json(f"{base}/current.json", {"version": version, **index.info})
    if previous and previous != version:
        for uri in list(objects.list(f"{base}/{previous}/")):
            objects.delete(uri)
    return version


def log_tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


def start_server(settings: Settings, dynamodb_url: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``python -m bioims.api.search_server`` on a free loopback port (one FAISS/BLAS thread per query)."""
    port = free_port()
    env = {**os.environ, **settings.to_env(), "BIOIMS_DYNAMODB_URL": dynamodb_url, "BIOIMS_RUNTIME": "local",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bioims.api.search_server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(SEARCH_WORKERS)],
            env=env, cwd=settings.home, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str, log_path: Path) -> dict:
    """Poll ``GET /ready`` until 200 (the stored index loaded); the server's log on failure."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"search server exited ({proc.returncode}) before ready:\n{log_tail(log_path)}")
        try:
            answer = requests.get(f"{url}/ready", timeout=5)
            if answer.status_code == 200:
                ready = answer.json()
                if ready.get("indexes") != 1 or ready.get("load_error"):
                    raise RuntimeError(f"search server ready without the index: {ready}\n{log_tail(log_path)}")
                return ready
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"search server not ready after {READY_TIMEOUT:.0f} s:\n{log_tail(log_path)}")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process and its live children so far (Linux ``/proc``; NaN elsewhere)."""
    def stat(path: Path) -> list[str]:
        return path.read_text().rsplit(")", 1)[1].split()

    try:
        fields = stat(Path(f"/proc/{pid}/stat"))
        ticks = int(fields[11]) + int(fields[12])
        for child in Path("/proc").glob("[0-9]*/stat"):
            try:
                other = stat(child)
            except OSError:
                continue
            if other[1] == str(pid):  # its parent
                ticks += int(other[11]) + int(other[12])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return float("nan")


class Answer:
    """A response read by :class:`KeepAlive`: status, text and JSON."""

    def __init__(self, status_code: int, text: str) -> None:
        self.status_code, self.text = status_code, text

    def json(self) -> Any:
        return json.loads(self.text)


class KeepAlive:
    """One keep-alive HTTP/1.1 connection (``http.client``): the client costs ~0.25 ms per request here,
    against ~0.8 ms for a ``requests.Session``, so that the figures measure the server."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = parts.path.rstrip("/")
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def post(self, path: str, body: bytes) -> Answer:
        self.connection.request("POST", self.path + path, body=body, headers=JSON_HEADERS)
        response = self.connection.getresponse()
        return Answer(response.status, response.read().decode("utf-8", "replace"))

    def close(self) -> None:
        self.connection.close()


def problem(answer: Answer, expect: set[str] | None = None, own: str | None = None) -> str | None:
    """What is wrong with a ``POST /searches`` answer (None: 200, JSON, exactly K hits; the in-process
    hit ids if ``expect``; never the query's own item ``own``)."""
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}: {answer.text[:500]}"
    try:
        hits = [h["id"] for h in answer.json()["hits"]]
    except (ValueError, KeyError, TypeError) as e:
        return f"not a search answer ({type(e).__name__}: {e}): {answer.text[:500]}"
    if len(hits) != K:
        return f"{len(hits)} hits, not {K}"
    if own is not None and own in hits:
        return f"the query's own item {own} is a hit"
    if expect is not None and set(hits) != expect:
        return f"hits differ from in-process: {sorted(set(hits) ^ expect)[:4]}"
    return None


def sequential(url: str, bodies: list[bytes], checks: list[Callable[[Answer], str | None]],
               ) -> tuple[np.ndarray, list[float]]:
    """One keep-alive client, one query at a time: seconds per query (after WARMUP untimed ones) and the
    server-side ``ms`` of each answer; raises on the first bad answer."""
    client = KeepAlive(url)
    try:
        seconds, answers = timed(lambda body: client.post("/searches", body), bodies)  # type: ignore[arg-type, return-value]
    finally:
        client.close()
    for i, (answer, check) in enumerate(zip(answers, checks)):
        bad = check(answer)
        if bad:
            raise AssertionError(f"sequential query {i}: {bad}")
    return seconds, [float(a.json()["ms"]) for a in answers]


def load_test(url: str, bodies: list[bytes], reload: Callable[[], None],
              ) -> tuple[list[tuple[float, float, str | None]], float, float]:
    """LOAD_CLIENTS threads, each with its own keep-alive connection, post ``bodies`` (cycled) for LOAD_SECONDS;
    ``reload()`` runs in this thread RELOAD_AT s in. Returns ``(start, seconds, problem)`` per request, the
    load's start and end (perf_counter)."""
    barrier = threading.Barrier(LOAD_CLIENTS + 1)
    results: list[list[tuple[float, float, str | None]]] = [[] for _ in range(LOAD_CLIENTS)]

    def client(i: int) -> None:
        out, j = results[i], i
        conn = KeepAlive(url)
        barrier.wait()
        deadline = time.perf_counter() + LOAD_SECONDS
        while (started := time.perf_counter()) < deadline:
            try:
                answer = conn.post("/searches", bodies[j % len(bodies)])
                seconds = time.perf_counter() - started
                out.append((started, seconds, problem(answer)))
            except Exception as e:
                out.append((started, time.perf_counter() - started, f"{type(e).__name__}: {e}"))
                conn.close()
                conn = KeepAlive(url)
            j += LOAD_CLIENTS
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), name=f"load-{i}") for i in range(LOAD_CLIENTS)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(RELOAD_AT)
    try:
        reload()
    finally:
        for t in threads:
            t.join()
    flat = [r for out in results for r in out]
    return flat, started, max(s + d for s, d, _ in flat)


def http_server() -> list[dict]:
    """13k field vectors served by the search server (subprocess) over loopback HTTP: single-client latency
    vs in-process, then LOAD_CLIENTS concurrent clients for LOAD_SECONDS across an index reload."""
    x, queries = clustered(SMALL, seed=1), clustered(HTTP_QUERIES, seed=9)
    ids, tags, payload = field_table(SMALL, seed=3)
    info = {"source": HTTP_SOURCE, "source_type": "run", "level": "field"}
    index = VectorIndex.build(x, ids, tags, metric="cosine", kind="flat", info=info)
    own = np.random.default_rng(10).choice(SMALL, HTTP_QUERIES, replace=False)
    previous = set_search_threads(1)
    try:
        local, expected = timed(lambda q: index.search(q, K), queries)
        local_id, _ = timed(lambda p: index.search(index.vector(int(p)), K, exclude_positions=[int(p)]), own)
    finally:
        set_search_threads(previous)
    vector_bodies = [json.dumps({"train_id": HTTP_SOURCE, "vector": q.tolist(), "k": K}).encode() for q in queries]
    id_bodies = [json.dumps({"train_id": HTTP_SOURCE, "id": ids[p], "k": K}).encode() for p in own]

    home = Path(tempfile.mkdtemp(prefix="bioims-bench-search-"))
    settings = Settings(home=home)
    stack, log_path, proc = LocalStack(settings), home / "search-server.log", None
    objects, base = ObjectStore(), Keys(settings.artifact_uri).index(HTTP_SOURCE, "field", "cosine")
    try:
        first = persist(objects, base, index, payload)
        started = time.perf_counter()
        dynamodb = stack.up()
        proc, url = start_server(settings, dynamodb, log_path)
        ready = wait_ready(proc, url, log_path)
        log(f"search server pid {proc.pid} ready in {time.perf_counter() - started:.1f} s (dynalite {dynamodb}): "
            f"{ready}")

        hit_ids = [{ids[p] for p, _ in r} for r in expected]
        http, server_ms = sequential(url, vector_bodies, [lambda a, e=e: problem(a, e) for e in hit_ids])
        http_id, _ = sequential(url, id_bodies, [lambda a, o=ids[p]: problem(a, own=o) for p in own])
        log(f"sequential: server-side ms p50 {np.percentile(server_ms, 50):.3f}, p99 "
            f"{np.percentile(server_ms, 99):.3f} (the service's own timing of the search)")
        rows = [row("http 13k p50 (vs in-process)", ms(http, 50), "ms", ms(local, 50)),
                row("http 13k p99 (vs in-process)", ms(http, 99), "ms", ms(local, 99)),
                row("http 13k id query p50 (vs in-process)", ms(http_id, 50), "ms", ms(local_id, 50))]

        reload_times: dict[str, float] = {}

        def reload() -> None:
            """A new build of the same vectors, written as a new version, then swapped in by a reload."""
            t0 = time.perf_counter()
            version = persist(objects, base, VectorIndex.build(x, ids, tags, metric="cosine", kind="flat",
                                                               info=info), payload)
            t1 = time.perf_counter()
            answer = requests.post(f"{url}/indexes/{HTTP_SOURCE}/reload", timeout=60)
            t2 = time.perf_counter()
            reload_times.update(write=t1 - t0, call=t2 - t1, start=t1, end=t2)
            if answer.status_code != 200:
                raise AssertionError(f"reload: HTTP {answer.status_code}: {answer.text[:1000]}")
            loaded = [i["version"] for i in answer.json()]
            # the worker that answered swapped it in; the others follow the store within WATCH_SECONDS
            deadline, listed, agreed = time.perf_counter() + WATCH_SECONDS + 5, [], 0
            while agreed < 4 * SEARCH_WORKERS and time.perf_counter() < deadline:
                listed = [i["version"] for i in requests.get(f"{url}/indexes", timeout=10).json()]
                agreed = agreed + 1 if listed == [version] else 0
                time.sleep(0.05)
            if loaded != [version] or listed != [version] or version == first:
                raise AssertionError(f"reload: loaded {loaded}, listed {listed}, wanted the new version {version} "
                                     f"(first {first})")

        pids = {"server": proc.pid, "dynalite": stack.status()["pid"]}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own_before = sum(os.times()[:2])
        results, load_start, load_end = load_test(url, vector_bodies, reload)
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        cpu["bench clients"] = sum(os.times()[:2]) - own_before
        elapsed = load_end - load_start
        seconds = np.array([d for _, d, _ in results])
        errors = [p for _, _, p in results if p is not None]
        t1, t2 = reload_times["start"], reload_times["end"]
        across = sum(1 for s, d, _ in results if s < t2 and s + d > t1)
        after = sum(1 for s, _, p in results if s >= t2 and p is None)
        log(f"load: {len(results)} requests in {elapsed:.1f} s by {LOAD_CLIENTS} clients; new version written in "
            f"{reload_times['write']:.3f} s, reload call {reload_times['call'] * 1e3:.0f} ms ({across} requests "
            f"overlapped it, {after} good "
            f"answers after it); CPU s during the load: "
            + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()) + f" (of {elapsed * (os.cpu_count() or 1):.0f})")
        for p in errors[:5]:
            log(f"load error: {p}")
        rps = 1.0 / float(np.mean(http))
        rows += [row(f"load {LOAD_CLIENTS} clients qps (vs 1 sequential client)", len(results) / elapsed, "queries/s",
                     rps, higher_is_better=True),
                 row(f"load {LOAD_CLIENTS} clients p50 (vs 1 sequential client)", ms(seconds, 50), "ms", ms(http, 50)),
                 row(f"load {LOAD_CLIENTS} clients p99 (vs 1 sequential client)", ms(seconds, 99), "ms", ms(http, 99)),
                 # ratio = the error fraction (value / baseline); the target is 0 errors across the reload
                 row(f"load {LOAD_CLIENTS} clients errors (of requests)", float(len(errors)), "requests",
                     float(len(results)), higher_is_better=True)]
        return rows
    except BaseException:
        log(f"search server log (tail):\n{log_tail(log_path)}")
        raise
    finally:
        try:
            if proc is not None:
                stop_server(proc)
            stack.down()
            trouble = [line for line in log_tail(log_path, 10**7).splitlines()
                       if "Traceback" in line or " ERROR " in line or " WARNING " in line]
            if trouble:
                log(f"search server log: {len(trouble)} warning/error lines, e.g. {trouble[:5]}")
        finally:
            shutil.rmtree(home, ignore_errors=True)


SECTIONS: list[Callable[[], list[dict]]] = [small_index, large_index, http_server]


def run() -> list[dict]:
    rows: list[dict] = []
    for section in SECTIONS:
        started = time.perf_counter()
        log(f"{section.__name__} ...")
        rows.extend(section())
        log(f"{section.__name__}: {time.perf_counter() - started:.1f} s")
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
