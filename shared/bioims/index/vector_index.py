"""FAISS vector index: build, tune, filtered search and persistence of one set of embeddings.

A :class:`VectorIndex` maps FAISS row numbers ("positions", ``0 .. count - 1``, the rows of the built
array) to external ids (image or well ids) and to tags, and answers k-nearest-neighbour queries with tag
filters. Three kinds:

``flat``  exact (``IndexFlatIP`` / ``IndexFlatL2``); ``kind="auto"`` up to :data:`FLAT_MAX` vectors.
``ivf``   ``IVF{nlist},Flat``, nlist = 4 sqrt(N) (bounded), k-means on a deterministic sample; ``nprobe``
          tuned at build time to recall@10 >= :data:`RECALL_TARGET` (+ margin) on 200 vectors held out
          of the index while tuning (new queries). ``kind="auto"`` above :data:`FLAT_MAX`.
``hnsw``  ``HNSW32,Flat``, efConstruction 40, ``efSearch`` tuned the same way. Slow to build (17 s per
          100k vectors of 128 dims on 2 cores, minutes at 1M): on request only.

Metrics: ``cosine`` (inner product of L2-normalised vectors; distance ``1 - cos``) and ``euclidean``
(distance = L2, not squared). Search-time parameters are passed per query (``SearchParameters``), never
set on the shared index, so one index serves any number of threads.

Filtered search picks a strategy per query from the number ``m`` of allowed vectors out of ``N`` with a
cost model in units of "one distance in a sequential flat scan" (~20 ns at d=128; measured on 2 cores,
one thread per query, see ``benchmarks/bench_search.py``); the cheapest applies:

==============================================  ===============  =========================================
strategy                                        cost             used by
==============================================  ===============  =========================================
unfiltered search for k' > k, then post-filter  N                flat when 4 m > N; ivf/hnsw when at most
                                                                 64 vectors are excluded (the query itself)
``IDSelectorArray`` over the allowed positions  4 m              flat when 4 m <= N; hnsw (its flat
                                                                 storage) when cheaper than the graph
reconstruct + numpy over the allowed positions  25 m             ivf when cheaper than the Bitmap search
``IDSelectorBitmap``, nprobe' = 2 nprobe N / m  nprobe' N/nlist  ivf
``IDSelectorBitmap``, ef' = 2 efSearch N / m    128 ef'          hnsw
==============================================  ===============  =========================================

An approximate or post-filtered search that comes back with fewer than ``min(k, m)`` allowed hits is
completed by an exhaustive one (flat: Bitmap; ivf: Bitmap with nprobe = nlist; hnsw: Array on its
storage), so every search returns exactly ``min(k, m)`` hits; small allowed sets are searched exactly
on every kind.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import faiss
import numpy as np

from ..contract import enums
from ..errors import InvalidInput, NotFound
from ..ids import iso
from .tags import Allowed, TagTable

Kind = Literal["flat", "ivf", "hnsw"]  # for type checkers: enums.IndexKind but auto
Metric = Literal["cosine", "euclidean"]  # for type checkers: enums.Metric
KINDS: tuple[str, ...] = tuple(k.value for k in enums.IndexKind if k is not enums.IndexKind.AUTO)
"""Index types that are built and stored (``auto`` chooses one of them)."""
METRICS: tuple[str, ...] = enums.values(enums.Metric)
FORMAT = 1
PARTS: tuple[str, ...] = ("index.faiss", "index.json", "ids.json", "tags.npz")

# kind="auto": exact search up to FLAT_MAX vectors. One-thread flat p50 at d=128 measured ~2 ms at 100k,
# ~5 ms at 200k, ~20 ms at 1M (2 cores, busy machine); above 200k an IVF answers in < 1 ms.
FLAT_MAX = 200_000
RECALL_TARGET = 0.95  # recall@10 of unfiltered approximate search on new queries
TUNE_MARGIN = 0.01  # tuned to RECALL_TARGET + margin: the sampling error of 200 tuning queries is ~0.01
TUNE_K = 10
TUNE_QUERIES = 200  # vectors held out of the index while tuning, used as new queries

# IVF: nlist = 4 sqrt(N) bounded by [1, NLIST_MAX] and by N / 39 (k-means needs >= 39 points per list)
NLIST_PER_SQRT = 4
NLIST_MAX = 8192
TRAIN_POINTS_PER_LIST = 40
KMEANS_ITERATIONS = 10  # not faiss' 25: keeps the 1M build near a minute on 2 cores; tuning absorbs it
NPROBE_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# HNSW: M=32; efConstruction 40 (faiss' default) builds 2.3x faster than 80 for ~0.01 lower recall at
# equal efSearch, which the tuning makes up for.
HNSW_M = 32
EF_CONSTRUCTION = 40
EF_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)

# Cost model of the filter strategies (module docstring), in sequential-flat-distance units.
COST_BY_ID = 4  # IDSelectorArray on a flat store: 40-140 ns per listed vector vs ~20 ns sequential
COST_RECONSTRUCT = 25  # IVF reconstruct via the direct map: 0.1 (cached) to 0.8 us per vector
COST_HNSW_EF = 128  # one unit of efSearch: ~2.7 us (M=32)
FILTER_WIDEN = 2  # filtered ivf/hnsw: nprobe / efSearch x WIDEN x N / m (1% of 1M: recall 0.91 -> 0.95)
POSTFILTER_SLACK = 2  # unfiltered post-filter pass asks for k * SLACK * N / m + k candidates
POSTFILTER_MAX_EXCLUDED = 64  # ivf/hnsw: up to this many excluded vectors, post-filter k + excluded hits


class _Threads:
    """OpenMP threads for searches. libgomp keeps the setting per OS thread, so it is applied in whichever
    thread runs a search (see :func:`set_search_threads`)."""

    value: int | None = None  # None: OpenMP's default when this module was imported
    default: int = faiss.omp_get_max_threads()
    lock = threading.Lock()


def set_search_threads(n: int | None) -> int | None:
    """Use ``n`` OpenMP threads for every search of this module, in every thread (``None``: back to
    OpenMP's default, all cores unless ``OMP_NUM_THREADS`` says otherwise); returns the previous setting.

    Servers answering single queries should use 1: two threads made single flat queries 2.4-4x slower.
    ``faiss.omp_set_num_threads`` alone only affects the calling thread (libgomp keeps the value per OS
    thread; measured: the worker threads of a pool still used 2), hence this process-wide setting, which
    each search applies to its own thread.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise InvalidInput(f"search threads must be a positive integer or None, not {n!r}")
    with _Threads.lock:
        previous, _Threads.value = _Threads.value, None if n is None else int(n)
    _apply_threads()
    return previous


def _apply_threads() -> None:
    n = _Threads.value or _Threads.default
    if faiss.omp_get_max_threads() != n:
        faiss.omp_set_num_threads(n)


class VectorIndex:
    """A FAISS index of ``count`` vectors of ``dims`` float32 values, with ids and tags.

    Build with :meth:`build` or load with :meth:`from_parts`; the object is read-only afterwards and
    safe to search from many threads at once.

    Attributes
    ----------
    kind : {"flat", "ivf", "hnsw"}
    metric : {"cosine", "euclidean"}
    dims, count : int
    ids : list of str
        ``ids[position]``; do not modify.
    info : dict
        The JSON sidecar (a copy): ``format``, ``kind``, ``metric``, ``dims``, ``count``, ``built_at``
        (ISO UTC), ``build_seconds``, ``params`` (factory string and tuned search parameters) and the
        extra fields given at build time.
    """

    def __init__(self, index: faiss.Index, ids: list[str], tags: TagTable, info: dict[str, Any]):
        self._index = index
        self._tags = tags
        self._info = info
        self.kind: str = info["kind"]
        self.metric: str = info["metric"]
        self.dims: int = info["dims"]
        self.count: int = info["count"]
        self.ids = ids
        self._positions = {id_: p for p, id_ in enumerate(ids)}
        params = info["params"]
        self._nlist = int(params.get("nlist", 0))
        self._nprobe = int(params.get("nprobe", 0))
        self._ef = int(params.get("efSearch", 0))
        # exact search over listed positions: the flat index itself, or HNSW's flat storage
        self._flat = index if self.kind == "flat" else (
            faiss.downcast_index(index.storage) if self.kind == "hnsw" else None)

    # building ------------------------------------------------------------------------------------

    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[str], tags: Sequence[Sequence[str]] | None = None, *,
              metric: str = "cosine", kind: str = "auto", info: Mapping[str, Any] | None = None) -> VectorIndex:
        """Index ``vectors`` under ``ids``.

        Parameters
        ----------
        vectors : (N, D) array_like of float
            Cast to float32; finite; for ``cosine`` non-zero (they are stored L2-normalised).
        ids : sequence of N unique str
        tags : sequence of N sequences of str, optional
            Per vector, e.g. ``["compound:taxol", "moa:Microtubule stabilizers", "plate:Week1_22123"]``.
        metric : {"cosine", "euclidean"}
        kind : {"auto", "flat", "ivf", "hnsw"}
            ``auto``: ``flat`` up to :data:`FLAT_MAX` vectors, else ``ivf``.
        info : mapping, optional
            Extra JSON fields for the sidecar (e.g. ``train_id``, ``level``, ``source``).

        Returns
        -------
        VectorIndex

        Examples
        --------
        >>> index = VectorIndex.build(np.eye(3), ["a", "b", "c"], [["moa:x"], ["moa:y"], []])
        >>> index.search(np.array([1.0, 0.1, 0.0]), 2, require_moa=True)[0][0]
        0
        """
        started = time.perf_counter()
        if metric not in METRICS:
            raise InvalidInput(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        if kind != enums.IndexKind.AUTO and kind not in KINDS:
            raise InvalidInput(f"kind must be auto or one of {', '.join(KINDS)}, not {kind!r}")
        ids = _id_list(ids)
        x = _vectors(vectors, ids, metric)
        extra = _extra_info(info)
        table = TagTable.from_rows(tags, ids)
        n, d = x.shape
        kind = ("flat" if n <= FLAT_MAX else "ivf") if kind == enums.IndexKind.AUTO else kind
        faiss_metric = _faiss_metric(metric)
        if kind == "flat":
            index = faiss.index_factory(d, "Flat", faiss_metric)
            index.add(x)
            params: dict[str, Any] = {"factory": "Flat"}
        elif kind == "ivf":
            index, params = _build_ivf(x, faiss_metric)
        else:
            index, params = _build_hnsw(x, faiss_metric)
        sidecar = {"format": FORMAT, "kind": kind, "metric": metric, "dims": d, "count": n, "built_at": iso(),
                   "build_seconds": round(time.perf_counter() - started, 3), "params": params, **extra}
        return cls(index, ids, table, sidecar)

    # lookups -------------------------------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        return copy.deepcopy(self._info)

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, metric={self.metric!r}, dims={self.dims}, count={self.count})"

    def position(self, id: str) -> int:
        """Position of ``id``; ``NotFound`` if it is not indexed."""
        try:
            return self._positions[id]
        except (KeyError, TypeError):
            raise NotFound(f"id {id!r} is not in the index") from None

    def vector(self, position: int) -> np.ndarray:
        """(dims,) float32 vector at ``position`` as stored (L2-normalised for cosine)."""
        return self._index.reconstruct(self._check_position(position))

    def tags_of(self, position: int) -> list[str]:
        """Tags of the vector at ``position``, sorted."""
        return self._tags.tags_of(self._check_position(position))

    def tag_counts(self) -> dict[str, int]:
        """Tag -> number of vectors carrying it, sorted by tag."""
        return self._tags.counts()

    # search --------------------------------------------------------------------------------------

    def search(self, query: np.ndarray, k: int, *, include: Sequence[str] = (), exclude: Sequence[str] = (),
               require_moa: bool = False, exclude_positions: Sequence[int] = ()) -> list[tuple[int, float]]:
        """The ``k`` nearest allowed vectors to ``query``.

        Parameters
        ----------
        query : (dims,) array_like of float
        k : int >= 1
        include : sequence of str
            If non-empty, a hit carries at least one of these tags (an unknown tag matches nothing).
        exclude : sequence of str
            A hit carries none of these tags (an unknown tag excludes nothing).
        require_moa : bool
            A hit carries a tag starting ``"moa:"``.
        exclude_positions : sequence of int
            Positions never returned (e.g. the query's own field).

        Returns
        -------
        list of (position, distance)
            Exactly ``min(k, number of allowed vectors)`` hits, by ascending distance: ``1 - cos`` for
            cosine (in [0, 2]), the L2 distance for euclidean.
        """
        q = self._queries(query, single=True)
        k = _check_k(k)
        allowed = self._tags.allowed(include, exclude, require_moa=require_moa, exclude_positions=exclude_positions)
        _apply_threads()
        if allowed is None:
            want = min(k, self.count)
            scores, labels = self._plain(q, want)
            if (labels[0] < 0).any():
                return self._hits(*self._exhaustive(q, want, None))
            return self._hits(scores[0], labels[0])
        if allowed.count == 0:
            return []
        return self._hits(*self._filtered(q, min(k, allowed.count), allowed))

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered search of many queries at once (uses the OpenMP threads of
        :func:`set_search_threads`, all cores by default).

        Parameters
        ----------
        queries : (Q, dims) array_like of float
        k : int >= 1

        Returns
        -------
        distances : (Q, min(k, count)) ndarray of float32
            Ascending per row (see :meth:`search`).
        positions : (Q, min(k, count)) ndarray of int64
        """
        q = self._queries(queries, single=False)
        want = min(_check_k(k), self.count)
        _apply_threads()
        scores, labels = self._plain(q, want)
        for row in np.flatnonzero((labels < 0).any(axis=1)):
            scores[row], labels[row] = self._exhaustive(q[row:row + 1], want, None)
        return self._distances(scores), labels

    # search strategies: faiss-style scores (inner products / squared L2) and labels, (want,) each -----

    def _filtered(self, q: np.ndarray, want: int, allowed: Allowed) -> tuple[np.ndarray, np.ndarray]:
        n, m = self.count, allowed.count
        if m == n:
            scores, labels = self._plain(q, want)
            return (scores[0], labels[0]) if (labels[0] >= 0).all() else self._exhaustive(q, want, None)
        if self.kind == "flat":
            if m * COST_BY_ID <= n:
                return self._by_id(q, want, allowed.positions())
            found = self._post_filtered(q, want, allowed)
            return found if found is not None else self._exhaustive(q, want, allowed)
        if n - m <= max(want, POSTFILTER_MAX_EXCLUDED):  # a few excluded (e.g. the query): ask for more
            found = self._post_filtered(q, want, allowed)
            if found is not None:
                return found
        widen = FILTER_WIDEN * n / m
        if self.kind == "ivf":
            nprobe = min(self._nlist, math.ceil(self._nprobe * widen))
            if m * COST_RECONSTRUCT <= nprobe * n / self._nlist:
                return self._by_id(q, want, allowed.positions())
            params = faiss.SearchParametersIVF(nprobe=nprobe, sel=faiss.IDSelectorBitmap(allowed.bitmap()))
        else:
            ef = min(max(want, math.ceil(self._ef * widen)), n)
            if m * COST_BY_ID <= ef * COST_HNSW_EF:
                return self._by_id(q, want, allowed.positions())
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=faiss.IDSelectorBitmap(allowed.bitmap()))
        scores, labels = self._index.search(q, want, params=params)
        if (labels[0] < 0).any():
            return self._exhaustive(q, want, allowed)
        return scores[0], labels[0]

    def _plain(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered search with the tuned parameters; (Q, k), -1 labels where an ANN found too few."""
        if self.kind == "ivf":
            return self._index.search(q, k, params=faiss.SearchParametersIVF(nprobe=self._nprobe))
        if self.kind == "hnsw":
            return self._index.search(q, k, params=faiss.SearchParametersHNSW(efSearch=max(self._ef, k)))
        return self._index.search(q, k)

    def _post_filtered(self, q: np.ndarray, want: int, allowed: Allowed) -> tuple[np.ndarray, np.ndarray] | None:
        """One unfiltered pass for enough candidates that ``want`` of them are likely allowed; ``None``
        if too few were."""
        n, m = self.count, allowed.count
        asked = min(n, want + (n - m), math.ceil(want * POSTFILTER_SLACK * n / m) + want)
        scores, labels = self._plain(q, asked)
        scores, labels = scores[0], labels[0]
        valid = labels >= 0
        keep = np.zeros(len(labels), dtype=bool)
        keep[valid] = allowed.contains(labels[valid])
        if keep.sum() < want:
            return None
        return scores[keep][:want], labels[keep][:want]

    def _by_id(self, q: np.ndarray, want: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the listed (sorted) positions."""
        if self._flat is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorArray(positions))
            scores, labels = self._flat.search(q, want, params=params)
            return scores[0], labels[0]
        x = self._index.reconstruct_batch(positions)
        if self.metric == "cosine":
            scores = x @ q[0]
            best = np.argpartition(-scores, want - 1)[:want] if want < len(scores) else np.arange(len(scores))
            best = best[np.argsort(-scores[best], kind="stable")]
        else:
            scores = np.einsum("ij,ij->i", x - q, x - q)
            best = np.argpartition(scores, want - 1)[:want] if want < len(scores) else np.arange(len(scores))
            best = best[np.argsort(scores[best], kind="stable")]
        return scores[best], positions[best]

    def _exhaustive(self, q: np.ndarray, want: int, allowed: Allowed | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact and complete: every allowed vector is considered (the fallback of approximate paths)."""
        if self.kind == "ivf":
            sel = None if allowed is None else faiss.IDSelectorBitmap(allowed.bitmap())
            scores, labels = self._index.search(q, want, params=faiss.SearchParametersIVF(nprobe=self._nlist, sel=sel))
        elif allowed is None:
            scores, labels = self._flat.search(q, want)
        elif self.kind == "flat":
            params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(allowed.bitmap()))
            scores, labels = self._flat.search(q, want, params=params)
        else:
            return self._by_id(q, want, allowed.positions())
        return scores[0], labels[0]

    def _distances(self, scores: np.ndarray) -> np.ndarray:
        """FAISS scores (inner products / squared L2) -> distances (``1 - cos`` / L2)."""
        if self.metric == "cosine":
            return np.clip(1.0 - scores, 0.0, 2.0).astype(np.float32, copy=False)
        return np.sqrt(np.maximum(scores, 0.0)).astype(np.float32, copy=False)

    def _hits(self, scores: np.ndarray, labels: np.ndarray) -> list[tuple[int, float]]:
        valid = labels >= 0
        return list(zip(labels[valid].tolist(), self._distances(scores[valid]).tolist()))

    # validation ----------------------------------------------------------------------------------

    def _queries(self, query: np.ndarray, *, single: bool) -> np.ndarray:
        """(Q, dims) float32 C-contiguous, normalised for cosine."""
        try:
            q = np.array(query, dtype=np.float32, ndmin=2)
        except (TypeError, ValueError):
            raise InvalidInput(f"query must be an array of numbers, not {type(query).__name__}") from None
        expected = f"({self.dims},)" if single else f"(Q, {self.dims})"
        if q.ndim != 2 or q.shape[1] != self.dims or (single and q.shape[0] != 1) or q.shape[0] == 0:
            shape = np.shape(query)
            raise InvalidInput(f"query shape {shape} does not match the index: expected {expected}")
        if not np.isfinite(q).all():
            raise InvalidInput("query contains NaN or infinite values")
        if self.metric == "cosine":
            norms = np.linalg.norm(q, axis=1, keepdims=True)
            if (norms == 0).any():
                raise InvalidInput("query vector is zero: cosine distance needs a non-zero vector")
            q /= norms
        return np.ascontiguousarray(q)

    def _check_position(self, position: int) -> int:
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
            raise InvalidInput(f"position must be an integer, not {position!r}")
        if not 0 <= position < self.count:
            raise NotFound(f"position {position} is not in the index (0..{self.count - 1})")
        return int(position)

    # persistence ---------------------------------------------------------------------------------

    def to_parts(self) -> dict[str, bytes]:
        """The index as named byte strings (see :data:`PARTS`).

        Returns
        -------
        dict
            ``index.faiss`` (``faiss.serialize_index``), ``index.json`` (the sidecar, :attr:`info`),
            ``ids.json`` (JSON list, position -> id), ``tags.npz`` (tag -> sorted positions).
        """
        return {
            "index.faiss": faiss.serialize_index(self._index).tobytes(),
            "index.json": json.dumps(self._info, indent=1).encode(),
            "ids.json": json.dumps(self.ids).encode(),
            "tags.npz": self._tags.to_bytes(),
        }

    @classmethod
    def from_parts(cls, parts: Mapping[str, bytes]) -> VectorIndex:
        """Inverse of :meth:`to_parts` (exact round trip); a missing or corrupt part raises
        ``InvalidInput`` naming it."""
        for name in PARTS:
            if name not in parts:
                raise InvalidInput(f"index part {name!r} is missing")
            if not isinstance(parts[name], (bytes, bytearray, memoryview)):
                raise InvalidInput(f"index part {name!r} must be bytes, not {type(parts[name]).__name__}")
        with _part("index.json"):
            info = json.loads(bytes(parts["index.json"]).decode())
            _check_info(info)
        with _part("ids.json"):
            ids = json.loads(bytes(parts["ids.json"]).decode())
            if not isinstance(ids, list) or len(ids) != info["count"]:
                raise ValueError(f"expected a list of {info['count']} ids")
            ids = _id_list(ids)
        with _part("tags.npz"):
            tags = TagTable.from_bytes(bytes(parts["tags.npz"]), info["count"])
        with _part("index.faiss"):
            index = faiss.deserialize_index(np.frombuffer(bytes(parts["index.faiss"]), dtype=np.uint8))
            _check_faiss(index, info)
        return cls(index, ids, tags, info)


# building helpers ------------------------------------------------------------------------------------


def _build_ivf(x: np.ndarray, metric: int) -> tuple[faiss.Index, dict[str, Any]]:
    """IVF{nlist},Flat: k-means on a deterministic sample, then ``nprobe`` tuned on held-out vectors."""
    n, d = x.shape
    nlist = max(1, min(round(NLIST_PER_SQRT * math.sqrt(n)), NLIST_MAX, n // 39))
    factory = f"IVF{nlist},Flat"
    index = faiss.index_factory(d, factory, metric)
    index.cp.niter = KMEANS_ITERATIONS
    train = min(n, TRAIN_POINTS_PER_LIST * nlist)
    index.train(x if train == n else x[np.sort(np.random.default_rng(0).choice(n, train, replace=False))])
    held = _tune_sample(n, last=False)
    bounds = np.concatenate(([-1], held, [n]))
    for start, stop in zip(bounds[:-1] + 1, bounds[1:]):  # the runs between held-out rows (views, no copy)
        if stop > start:
            index.add_with_ids(x[start:stop], np.arange(start, stop, dtype=np.int64))
    candidates = [c for c in NPROBE_CANDIDATES if c < nlist] + [nlist]
    nprobe, recall = _tune(index, x, held, candidates, lambda c: faiss.SearchParametersIVF(nprobe=c))
    index.add_with_ids(x[held], held)  # the held-out tuning queries, added after tuning
    index.make_direct_map(True)  # vector(), and exact search over small allowed sets
    index.nprobe = nprobe
    return index, {"factory": factory, "nlist": nlist, "nprobe": nprobe, "train_points": train,
                   "kmeans_iterations": KMEANS_ITERATIONS, "tune_queries": len(held), "tune_recall@10": recall}


def _build_hnsw(x: np.ndarray, metric: int) -> tuple[faiss.Index, dict[str, Any]]:
    """HNSW32,Flat; ``efSearch`` tuned on the last vectors before they are added (HNSW ids are
    sequential, so the held-out queries have to be the last rows)."""
    n, d = x.shape
    factory = f"HNSW{HNSW_M},Flat"
    index = faiss.index_factory(d, factory, metric)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    held = _tune_sample(n, last=True)
    index.add(x[:n - len(held)])
    ef, recall = _tune(index, x, held, list(EF_CANDIDATES), lambda c: faiss.SearchParametersHNSW(efSearch=c))
    index.add(x[n - len(held):])
    index.hnsw.efSearch = ef
    return index, {"factory": factory, "M": HNSW_M, "efConstruction": EF_CONSTRUCTION, "efSearch": ef,
                   "tune_queries": len(held), "tune_recall@10": recall}


def _tune_sample(n: int, *, last: bool) -> np.ndarray:
    """Sorted positions held out of the index while tuning: TUNE_QUERIES (at most a tenth of ``n``),
    a deterministic uniform sample or the last rows; none for tiny indexes."""
    size = min(TUNE_QUERIES, n // 10) if n > 10 * (TUNE_K + 1) else 0
    if last:
        return np.arange(n - size, n, dtype=np.int64)
    return np.sort(np.random.default_rng(1).choice(n, size, replace=False)).astype(np.int64)


def _tune(index: faiss.Index, x: np.ndarray, held: np.ndarray, candidates: list[int],
          params: Callable[[int], faiss.SearchParameters]) -> tuple[int, float]:
    """Smallest candidate search parameter whose recall@10 reaches RECALL_TARGET + TUNE_MARGIN (else
    the largest candidate), and that recall.

    Parameters
    ----------
    index : faiss.Index
        Holding every vector of ``x`` except the ``held`` rows, under their positions.
    x : (N, D) ndarray of float32
        All vectors (normalised for cosine).
    held : (T,) ndarray of int64
        The tuning queries: rows of ``x`` not (yet) in the index, i.e. new queries, which are harder
        than indexed ones (measured: HNSW tuned on indexed vectors reached 0.96 on them but 0.89 on new
        queries).
    """
    if not len(held):
        return candidates[-1], 1.0
    q = np.ascontiguousarray(x[held])
    # exact neighbours among the indexed rows: a few extra, then drop the held-out ones
    _, exact = faiss.knn(q, x, TUNE_K + 8, metric=index.metric_type)
    truth = [set(row[~np.isin(row, held)][:TUNE_K].tolist()) for row in exact]
    total = sum(len(t) for t in truth)
    recall = 0.0
    for candidate in candidates:
        _, found = index.search(q, TUNE_K, params=params(candidate))
        recall = sum(len(t & set(row.tolist())) for row, t in zip(found, truth)) / total
        if recall >= RECALL_TARGET + TUNE_MARGIN:
            break
    return candidate, round(recall, 4)


# validation helpers ----------------------------------------------------------------------------------


def _faiss_metric(metric: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInput(f"k must be a positive integer, not {k!r}")
    return int(k)


def _id_list(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, (str, bytes)):
        raise InvalidInput("ids must be a list of strings, not a string")
    ids = list(ids)
    for id_ in ids:
        if not isinstance(id_, str) or not id_:
            raise InvalidInput(f"ids must be non-empty strings, not {id_!r}")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicates = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        shown = ", ".join(map(repr, duplicates[:5])) + (" ..." if len(duplicates) > 5 else "")
        raise InvalidInput(f"ids must be unique; {len(duplicates)} duplicated: {shown}")
    return ids


def _vectors(vectors: np.ndarray, ids: list[str], metric: str) -> np.ndarray:
    """(N, D) float32 C-contiguous copy, validated; L2-normalised for cosine."""
    try:
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported below
            x = np.array(vectors, dtype=np.float32, order="C")
    except (TypeError, ValueError):
        raise InvalidInput(f"vectors must be an (N, D) array of numbers, not {type(vectors).__name__}") from None
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidInput(f"vectors must be a non-empty (N, D) array, not shape {x.shape}")
    if x.shape[0] != len(ids):
        raise InvalidInput(f"{x.shape[0]} vectors but {len(ids)} ids")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidInput(f"vectors contain NaN or infinite values (float32): {_named(bad, ids)}")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1)
        zero = norms == 0
        if zero.any():
            raise InvalidInput(f"zero vectors cannot be compared by cosine: {_named(np.flatnonzero(zero), ids)}")
        x /= norms[:, None]
    return x


def _named(rows: np.ndarray, ids: list[str]) -> str:
    shown = ", ".join(repr(ids[r]) for r in rows[:5])
    return f"{len(rows)} row(s), ids {shown}" + (" ..." if len(rows) > 5 else "")


_RESERVED = ("format", "kind", "metric", "dims", "count", "built_at", "build_seconds", "params")


def _extra_info(info: Mapping[str, Any] | None) -> dict[str, Any]:
    extra = dict(info or {})
    clash = [key for key in extra if key in _RESERVED]
    if clash:
        raise InvalidInput(f"info may not set the sidecar's own fields: {', '.join(clash)}")
    try:
        return json.loads(json.dumps(extra))
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"info must be JSON-serialisable: {error}") from None


def _check_info(info: Any) -> None:
    if not isinstance(info, dict):
        raise ValueError("expected a JSON object")
    if info.get("format") != FORMAT:
        raise ValueError(f"format must be {FORMAT}, not {info.get('format')!r}")
    if info.get("kind") not in KINDS or info.get("metric") not in METRICS:
        raise ValueError(f"unknown kind {info.get('kind')!r} or metric {info.get('metric')!r}")
    for key in ("dims", "count"):
        if not isinstance(info.get(key), int) or info[key] < 1:
            raise ValueError(f"{key} must be a positive integer")
    params = info.get("params")
    if not isinstance(params, dict):
        raise ValueError("params must be an object")
    needed = {"ivf": ("nlist", "nprobe"), "hnsw": ("efSearch",), "flat": ()}[info["kind"]]
    for key in needed:
        if not isinstance(params.get(key), int) or params[key] < 1:
            raise ValueError(f"params.{key} must be a positive integer")


def _check_faiss(index: faiss.Index, info: dict[str, Any]) -> None:
    expected = {"flat": faiss.IndexFlat, "ivf": faiss.IndexIVFFlat, "hnsw": faiss.IndexHNSWFlat}[info["kind"]]
    if not isinstance(index, expected):
        raise ValueError(f"a {type(index).__name__}, but the sidecar says {info['kind']}")
    if index.d != info["dims"] or index.ntotal != info["count"]:
        raise ValueError(f"{index.ntotal} vectors of {index.d} dims, but the sidecar says "
                         f"{info['count']} of {info['dims']}")
    if index.metric_type != _faiss_metric(info["metric"]):
        raise ValueError(f"metric type {index.metric_type} does not match {info['metric']}")
    if info["kind"] == "ivf":
        if index.nlist != info["params"]["nlist"]:
            raise ValueError(f"nlist {index.nlist} does not match the sidecar's {info['params']['nlist']}")
        if index.direct_map.type != faiss.DirectMap.Array:
            raise ValueError("the IVF index has no direct map")


class _part:
    """Context manager turning any error while reading part ``name`` into ``InvalidInput`` naming it."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if not isinstance(error, Exception):
            return False
        reason = error.message if isinstance(error, InvalidInput) else " ".join(str(error).split())[:300]
        raise InvalidInput(f"index part {self.name!r} is corrupt: {reason or type(error).__name__}") from error
