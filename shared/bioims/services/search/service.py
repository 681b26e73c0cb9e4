"""Search service: FAISS indexes of a train run's (or a profile set's) embeddings, and the searches.

An index covers one source (a train run, or an imported/computed profile set), one level (``cell``,
``field``, ``well``, ``treatment``) and one metric (``cosine``, ``euclidean``). Building it reads the
stored embeddings in bulk (the plates' Parquet tables, the cells' ``.npy``), tags every row with its
``plate:``, ``well:``, ``batch:``, ``compound:``, ``concentration:`` and ``moa:`` tags (fields and cells
also with the image tags of the tags service) and writes a new *version* of the index (FAISS bytes, the
JSON sidecar, ids, tag membership, per-row payload) under ``{root}/indexes/{source}/{level}-{metric}/
{version}/``; the ``current.json`` pointer beside the versions is written last, so a reader never sees a
mix of two builds, and the previous version is deleted after.

Loaded indexes live in an immutable mapping that is replaced, never mutated: a query takes the mapping
once, so a reload swaps the new index in atomically while queries run (no failed or mixed requests).

Searches are recorded (query, status, hits, ms) by a background writer so that a query's latency does not
include a database round trip; the record of a search is readable at once from memory, and from the
``searches`` table once written (within RECORD_DELAY_SECONDS). Records are stored by *page*: the searches
of one source share a table item of up to RECORDS_PER_PAGE records (a search id is ``PAGE-N``), so that a
server answering a thousand queries a second writes a few dozen items a second, not a thousand (which
cost a quarter of its throughput and its 99th-percentile latency).
"""

from __future__ import annotations

import atexit
import gc
import base64
import binascii
import io
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...contract.enums import IndexKind, Level, Metric, ProfileLevel, SearchStatus, TrainStatus, values
from ...errors import BioimsError, Conflict, InvalidInput, NotFound
from ...ids import iso, new_id
from ...names import check_name
from ...profiles.io import feature_columns, read_profiles
from ...profiles.pipeline import embedding_profiles
from ...specs import EmbeddingSpec
from ...store.keys import Keys
from ...store.objects import ObjectStore
from ..ports import ArtifactsPort, EmbeddingPort, TagsPort, TrainingPort
from .profiles import ProfileSets
from .tables import SearchTables

if TYPE_CHECKING:
    from ...index import VectorIndex  # imports faiss: loaded on first use, never by the Lambda services

LEVELS = values(Level)
METRICS = values(Metric)
KINDS = values(IndexKind)
MAX_K = 1000
"""Largest ``k`` of one search."""
RECENT_SEARCHES = 10_000
"""Search records kept in memory (readable before, and regardless of, their write to the table)."""
RECORD_DELAY_SECONDS = 1.0
"""Longest a search record waits in memory before its page is written."""
RECORDS_PER_PAGE = 25
"""Searches per page (a table item; pages over PAGE_PART_BYTES of JSON are split into parts). Small
enough that writing one never holds the interpreter for more than about a millisecond."""
PAGE_PART_BYTES = 300_000
"""Largest JSON of one part of a page (DynamoDB items are at most 400 KB)."""
ROWS = "rows.json"
"""Per-row payload stored beside the index parts: plate id, image id, thumbnail URI."""
TAG_COLUMNS = (("plate", "Metadata_Plate"), ("well", "Metadata_Well"), ("batch", "Metadata_Batch"),
               ("compound", "Metadata_Compound"), ("concentration", "Metadata_Concentration"),
               ("moa", "Metadata_MoA"))


def index_context(source: str, level: str, metric: str) -> str:
    """The artifact context of one index's records: ``index:{source}:{level}:{metric}``."""
    return f"index:{source}:{level}:{metric}"


def _tags(row: Mapping[str, Any]) -> list[str]:
    """``type:value`` tags of a profile row from its ``Metadata_*`` columns (the ingest's spelling)."""
    tags = []
    for kind, column in TAG_COLUMNS:
        value = row.get(column)
        if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
            continue
        tags.append(f"{kind}:{float(value):g}" if kind == "concentration" else f"{kind}:{value}")
    return tags


def _item_id(level: str, row: Mapping[str, Any]) -> str:
    if level == Level.FIELD:
        return str(row["Metadata_ImageId"])
    if level == Level.WELL:
        return f"{row['Metadata_Plate']}/{row['Metadata_Well']}"
    conc = row.get("Metadata_Concentration")
    return f"{row['Metadata_Compound']}@{float(conc):g}" if conc is not None and conc == conc else \
        str(row["Metadata_Compound"])


@dataclass(frozen=True)
class _Loaded:
    """An index in memory with its per-row payload, its build version and when it was loaded."""

    index: VectorIndex
    rows: list[dict[str, Any]]
    version: str
    loaded_at: str


class SearchService:
    """Index building, loading and hot reload, and filtered nearest-neighbour search.

    Parameters
    ----------
    tables : SearchTables
        This service's own table (the search records).
    objects, keys, artifacts
        The object store (embeddings, indexes), its key layout and the artifact registry.
    embedding, training, tags
        The services the embeddings, runs (specs, ONNX models) and image tags come from.
    profiles : ProfileSets
        The profile sets (objects only).
    """

    def __init__(self, tables: SearchTables, objects: ObjectStore, keys: Keys, artifacts: ArtifactsPort,
                 embedding: EmbeddingPort, training: TrainingPort, tags: TagsPort, profiles: ProfileSets) -> None:
        self._t = tables
        self._tags = tags
        self._objects = objects
        self._keys = keys
        self._artifacts = artifacts
        self._embedding = embedding
        self._training = training
        self._profiles = profiles
        self._loaded: Mapping[tuple[str, str, str], _Loaded] = {}
        self._swap = threading.Lock()  # serialises loads and swaps; queries never take it
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pages: dict[str, _Page] = {}  # source -> its open page
        self._dirty: dict[str, _Page] = {}  # page id -> page with records not written yet
        self._records = threading.Condition()  # guards the three above; notified when a page gets dirty
        self._writer: threading.Thread | None = None
        self._model_cache: dict[str, Any] = {}  # train id -> its EmbeddingModel (uploaded-field queries)

    # ------------------------------------------------------------------ building
    def build_index(self, train_id: str, level: str = "field", kind: str = "auto",
                    metric: str = "cosine") -> dict[str, Any]:
        """Build (or rebuild) the index of a train run's embeddings (or of a profile set named
        ``train_id``) at ``level``; persisted, recorded as artifacts, and swapped in if loaded here.
        Returns the sidecar: ``{"kind", "metric", "dims", "count", "built_at", "source", "level", ...}``."""
        _check(level, LEVELS, "level")
        _check(metric, METRICS, "metric")
        _check(kind, KINDS, "kind")
        from ...index import VectorIndex

        source = self._source(train_id)
        vectors, ids, tags, rows = self._table(train_id, source, level)
        if not ids:
            raise InvalidInput(f"{train_id} has no {level} embeddings to index")
        index = VectorIndex.build(vectors, ids, tags, metric=metric, kind=kind,
                                  info={"source": train_id, "source_type": source, "level": level})
        version = self._commit(train_id, level, metric, {**index.to_parts(), ROWS: _json_bytes(rows)}, index.info)
        if (train_id, level, metric) in self._loaded:
            self._install((train_id, level, metric), index, rows, version)
        return {**index.info, "version": version}

    def _source(self, name: str) -> str:
        """``"run"`` (a complete train run) or ``"profiles"`` (a profile set); NotFound otherwise."""
        try:
            run = self._training.get_training(name)
        except NotFound:
            try:
                self._profiles.info(name)
            except NotFound:
                raise NotFound(f"no train run or profile set {name!r}") from None
            return "profiles"
        if run["status"] != TrainStatus.COMPLETE:
            raise InvalidInput(f"train run {name} is {run['status']}; train and embed it first")
        return "run"

    def _table(self, name: str, source: str, level: str) -> tuple[np.ndarray, list[str], list[list[str]],
                                                                    list[dict[str, Any]]]:
        """(vectors (N, D) float32, ids, tags per row, payload per row) of a source at a level."""
        if source == "profiles":
            if level not in values(ProfileLevel):
                raise InvalidInput(f"profile set {name} has well and treatment levels only, not {level}")
            table = self._profiles.read(name, level)
        elif level in values(ProfileLevel):
            plates = self._embedding.list_plate_embeddings(name)
            if not plates:
                raise InvalidInput(f"train run {name} has no embeddings; run `bioims embed {name}`")
            fields = pd.concat([read_profiles(self._objects.get_bytes(p["uri"])) for p in plates], ignore_index=True)
            table = embedding_profiles(fields, level)
        else:
            return self._field_table(name, level)
        features = feature_columns(table)
        records = table.drop(columns=features).to_dict("records")
        return (table[features].to_numpy(np.float32), [_item_id(level, r) for r in records],
                [_tags(r) for r in records], [{} for _ in records])

    def _field_table(self, train_id: str, level: str) -> tuple[np.ndarray, list[str], list[list[str]],
                                                                 list[dict[str, Any]]]:
        """Field (or cell) rows of a run, plate by plate, with the image tags and thumbnails."""
        plates = self._embedding.list_plate_embeddings(train_id)
        if not plates:
            raise InvalidInput(f"train run {train_id} has no embeddings; run `bioims embed {train_id}`")
        tables = [(p["plate_id"], read_profiles(self._objects.get_bytes(p["uri"]))) for p in plates]
        image_tags = {image_id: set(values) for plate_id, _ in tables
                      for image_id, values in self._tags.list_plate_image_tags(plate_id).items()}
        thumbnail = self._thumbnails()
        vectors, ids, tags, rows = [], [], [], []
        for plate_id, table in tables:
            features = feature_columns(table)
            records = table.drop(columns=features).to_dict("records")
            field_vectors = table[features].to_numpy(np.float32)
            if level == Level.FIELD:
                vectors.append(field_vectors)
            for r in records:
                image_id = str(r["Metadata_ImageId"])
                row_tags = sorted(set(_tags(r)) | image_tags.get(image_id, set()))
                payload = {"image_id": image_id, "plate_id": plate_id, "thumbnail": thumbnail(plate_id, image_id)}
                if level == Level.FIELD:
                    ids.append(image_id)
                    tags.append(row_tags)
                    rows.append(payload)
                    continue
                cells = np.load(io.BytesIO(self._objects.get_bytes(
                    self._keys.cell_embeddings(train_id, plate_id, image_id))), allow_pickle=False)
                vectors.append(cells.astype(np.float32))
                ids.extend(f"{image_id}#{i}" for i in range(len(cells)))
                tags.extend(row_tags for _ in range(len(cells)))
                rows.extend({**payload, "cell": i} for i in range(len(cells)))
        return np.concatenate(vectors), ids, tags, rows

    def _thumbnails(self) -> Any:
        """``(plate_id, image_id) -> URI`` of the smallest configured thumbnail width."""
        try:
            widths = self._artifacts.get_parameter("thumbnail-widths")
        except NotFound:
            widths = None
        width = min(widths) if isinstance(widths, list) and widths else None
        return lambda plate_id, image_id: self._keys.thumbnail(plate_id, image_id, width) if width else None

    # ------------------------------------------------------------------ loading
    def list_indexes(self, train_id: str | None = None) -> list[dict[str, Any]]:
        """Stored indexes (of one source, or all): ``[{"train_id", "level", "metric", "kind", "dims", "count",
        "built_at", "version", "loaded", "loaded_at"}]``."""
        loaded = self._loaded
        out = []
        root = self._keys.source_indexes(train_id) if train_id is not None else self._keys.indexes_root()
        for uri in self._objects.list(root + "/"):
            if not uri.endswith("/current.json"):
                continue
            info = self._objects.get_json(uri)
            key = (info["source"], info["level"], info["metric"])
            entry = loaded.get(key)
            out.append({"train_id": info["source"], **{k: info.get(k) for k in (
                "level", "metric", "kind", "dims", "count", "built_at", "version")},
                "loaded": entry is not None and entry.version == info["version"],
                "loaded_at": entry.loaded_at if entry else None})
        return sorted(out, key=lambda r: (r["train_id"], LEVELS.index(r["level"]), r["metric"]))

    def loaded_indexes(self) -> list[dict[str, Any]]:
        """Indexes in memory: ``[{"train_id", "level", "kind", "metric", "dims", "count", "loaded_at", "version"}]``."""
        return [{"train_id": t, "level": lv, "kind": e.index.kind, "metric": m, "dims": e.index.dims,
                 "count": e.index.count, "loaded_at": e.loaded_at, "version": e.version}
                for (t, lv, m), e in sorted(self._loaded.items())]

    def indexes(self, stored: bool = False, train_id: str | None = None) -> list[dict[str, Any]]:
        """The loaded indexes, or (``stored``) every stored one (of ``train_id``, or all)."""
        return self.list_indexes(train_id) if stored else self.loaded_indexes()

    def load_all(self) -> list[dict[str, Any]]:
        """Load every stored index (a server's start); returns the loaded list."""
        for entry in self.list_indexes():
            self.load_index(entry["train_id"], entry["level"], entry["metric"])
        return self.loaded_indexes()

    def load_index(self, train_id: str, level: str = "field", metric: str = "cosine") -> dict[str, Any]:
        """Load (or reload, if a newer version is stored) one index; swapped in atomically."""
        _check(level, LEVELS, "level")
        _check(metric, METRICS, "metric")
        base = self._keys.index(train_id, level, metric)
        version = self._current_version(base)
        if version is None:
            raise NotFound(f"no {level} {metric} index of {train_id}; build it with "
                           f"`bioims index build {train_id} --level {level} --metric {metric}`")
        current = self._loaded.get((train_id, level, metric))
        if current is None or current.version != version:
            try:
                parts = {uri.rsplit("/", 1)[1]: self._objects.get_bytes(uri)
                         for uri in self._objects.list(self._keys.index_version(train_id, level, metric, version) + "/")}
            except NotFound:  # replaced by a newer build while listing: load that one
                return self.load_index(train_id, level, metric)
            from ...index import VectorIndex

            rows = _json_load(parts.pop(ROWS, b"[]"), ROWS)
            self._install((train_id, level, metric), VectorIndex.from_parts(parts), rows, version)
        return next(i for i in self.loaded_indexes() if (i["train_id"], i["level"], i["metric"]) ==
                    (train_id, level, metric))

    def refresh(self) -> list[dict[str, Any]]:
        """Follow the store: swap in the newer stored version of each loaded index and unload those deleted
        (by another process: a CLI build, another worker or task of the search service). Returns the
        indexes swapped in. One small read per loaded index."""
        swapped = []
        for (train_id, level, metric), entry in list(self._loaded.items()):
            version = self._current_version(self._keys.index(train_id, level, metric))
            if version is None:
                with self._swap:
                    self._loaded = {k: v for k, v in self._loaded.items() if k != (train_id, level, metric)}
            elif version != entry.version:
                swapped.append(self.load_index(train_id, level, metric))
        return swapped

    def reload_index(self, train_id: str) -> list[dict[str, Any]]:
        """Reload every stored index of a source (new versions swapped in); returns them."""
        stored = [i for i in self.list_indexes(train_id)]
        if not stored:
            raise NotFound(f"no index of {train_id}; build one with `bioims index build {train_id}`")
        return [self.load_index(i["train_id"], i["level"], i["metric"]) for i in stored]

    def load_tag_label_map(self, train_id: str | None = None) -> list[dict[str, Any]]:
        """Refresh the tags of every stored index of a source (of every source if None, as the seed's
        loadTagLabelMap) without rebuilding its vectors: the image tags and metadata are read again, each
        index is stored as a new version with the same vector parts and the new tag table, and loaded
        indexes are swapped to it. :class:`Conflict` if the source's rows changed since the build (a new
        plate embedded: rebuild)."""
        from ...index.tags import TagTable

        if train_id is None:
            sources = sorted({i["train_id"] for i in self.list_indexes()})
            return [i for source in sources for i in self.load_tag_label_map(source)]
        stored = self.list_indexes(train_id)
        if not stored:
            raise NotFound(f"no index of {train_id}; build one with `bioims index build {train_id}`")
        source = self._source(train_id)
        for entry in stored:
            level, metric = entry["level"], entry["metric"]
            base, version = self._keys.index(train_id, level, metric), entry["version"]
            parts = {uri.rsplit("/", 1)[1]: self._objects.get_bytes(uri)
                     for uri in self._objects.list(self._keys.index_version(train_id, level, metric, version) + "/")}
            ids = _json_load(parts["ids.json"], "ids.json")
            _, now_ids, now_tags, _ = self._table(train_id, source, level)
            tags = dict(zip(now_ids, now_tags))
            if set(tags) != set(ids):
                raise Conflict(f"the {level} rows of {train_id} changed since its index was built; rebuild it "
                               f"(`bioims index build {train_id} --level {level}`)")
            parts["tags.npz"] = TagTable.from_rows([tags[i] for i in ids], ids).to_bytes()
            info = {k: v for k, v in self._objects.get_json(f"{base}/current.json").items() if k != "version"}
            self._commit(train_id, level, metric, parts, {**info, "tags_loaded_at": iso()})
            if (train_id, level, metric) in self._loaded:
                self.load_index(train_id, level, metric)
        return self.list_indexes(train_id)

    def start_tag_load(self, spec: str) -> list[dict[str, Any]]:
        """The seed's startTagLoad: :meth:`load_tag_label_map` for every run of a spec that has an index;
        returns their indexes."""
        runs = [r["train_id"] for r in self._training.get_embedding_trainings(spec)]
        return [i for run in runs if self.list_indexes(run) for i in self.load_tag_label_map(run)]

    def delete_index(self, train_id: str, level: str | None = None) -> dict[str, Any]:
        """Unload and delete a source's indexes (one level, or all: the seed's deleteTraining).
        ``train_id`` is a name (:mod:`bioims.names`): nothing outside the source's index folder is touched."""
        check_name(train_id, "train id")
        if level is not None:
            _check(level, LEVELS, "level")
        stored = [i for i in self.list_indexes(train_id) if level is None or i["level"] == level]
        with self._swap:
            self._loaded = {k: v for k, v in self._loaded.items()
                            if not (k[0] == train_id and (level is None or k[1] == level))}
        deleted = 0
        for i in stored:
            base = self._keys.index(train_id, i["level"], i["metric"])
            self._objects.delete(f"{base}/current.json")  # first: readers stop finding it
            for uri in list(self._objects.list(f"{base}/")):
                self._objects.delete(uri)
                deleted += 1
            self._artifacts.delete_artifacts(index_context(train_id, i["level"], i["metric"]))
        if not stored:
            raise NotFound(f"no index of {train_id}" + (f" at level {level}" if level else ""))
        return {"train_id": train_id, "indexes": len(stored), "objects": deleted + len(stored)}

    def _commit(self, train_id: str, level: str, metric: str, parts: dict[str, bytes], info: dict[str, Any]) -> str:
        """Store an index's parts as a new version, point ``current.json`` (``info`` + the version) at it,
        delete the previous version and re-record the artifacts; returns the version. Readers see the old
        version or the new one, never a mix (the pointer is written after the parts)."""
        version = new_id()
        for name, data in parts.items():
            self._objects.put_bytes(self._keys.index_part(train_id, level, metric, version, name), data)
        previous = self._current_version(self._keys.index(train_id, level, metric))
        self._objects.put_json(self._keys.index_current(train_id, level, metric), {"version": version, **info})
        if previous and previous != version:
            for uri in list(self._objects.list(self._keys.index_version(train_id, level, metric, previous) + "/")):
                self._objects.delete(uri)
        self._record_parts(train_id, level, metric, version, parts)
        return version

    def _record_parts(self, train_id: str, level: str, metric: str, version: str, parts: dict[str, bytes]) -> None:
        """The artifact records of an index's current version (those of earlier versions removed): context
        :func:`index_context`, train id the source's (so that deleteTraining sees what still uses a run)."""
        context = index_context(train_id, level, metric)
        self._artifacts.delete_artifacts(context)
        for name, data in parts.items():
            self._artifacts.create_artifact(context, self._keys.index_part(train_id, level, metric, version, name),
                                            train_id=train_id, type=f"index-{name}", size=len(data))

    def _install(self, key: tuple[str, str, str], index: VectorIndex, rows: list[dict[str, Any]],
                 version: str) -> None:
        with self._swap:
            self._loaded = {**self._loaded, key: _Loaded(index, rows, version, iso())}
        # An index's ids, tags and rows are ~10 objects per vector that live until the next reload: keep them
        # out of the cyclic collector's full passes, which otherwise stall a query for milliseconds now and then.
        gc.collect()
        gc.freeze()

    def _current_version(self, base: str) -> str | None:
        try:
            return str(self._objects.get_json(f"{base}/current.json")["version"])
        except NotFound:
            return None

    def _index(self, train_id: str, level: str, metric: str) -> _Loaded:
        entry = self._loaded.get((train_id, level, metric))
        if entry is None:
            self.load_index(train_id, level, metric)
            entry = self._loaded[(train_id, level, metric)]
        return entry

    # ------------------------------------------------------------------ searching
    def search(self, train_id: str, image_id: str | None = None, vector: list[float] | None = None,
               id: str | None = None, images: dict[str, str] | None = None, k: int = 10,
               metric: str = "cosine", include_tags: list[str] | None = None,
               exclude_tags: list[str] | None = None, require_moa: bool = False, level: str = "field",
               flatfield_plate: str | None = None) -> dict[str, Any]:
        """Nearest neighbours of one query in the (train run, level, metric) index.

        The query is exactly one of: ``image_id`` (a field's stored embedding; at cell level its mean
        cell), ``id`` (an item of the index, e.g. a well ``PLATE/WELL`` or a treatment ``COMPOUND@CONC``),
        ``vector`` (D floats) or ``images`` (an uploaded field: ``{channel: base64 TIFF/PNG}``, preprocessed
        with the run's spec — normalised with ``flatfield_plate``'s flat-fields if given, else with the
        spec's flat-field of the uploaded field itself — and
        embedded with the run's ONNX model). Filters: a hit carries at least one ``include_tags`` (if any),
        none of ``exclude_tags``, and an ``moa:`` tag if ``require_moa``. The query's own item is never a
        hit. Returns ``{"search_id", "train_id", "level", "metric", "k", "hits": [{"rank", "id", "distance",
        "tags", "plate", "well", "compound", "concentration", "moa", "image_id", "thumbnail"}], "ms"}``."""
        started = time.perf_counter()
        query = {"train_id": train_id, "level": level, "metric": metric, "k": k,
                 "include_tags": list(include_tags or []), "exclude_tags": list(exclude_tags or []),
                 "require_moa": bool(require_moa)}
        search_id, page = self._new_search_id(str(train_id))
        try:
            result = self._search(train_id, image_id, vector, id, images, k, metric, include_tags or [],
                                  exclude_tags or [], require_moa, level, flatfield_plate, query)
        except BioimsError as e:
            self._record(page, {"search_id": search_id, "train_id": str(train_id), "created_at": iso(),
                                "status": SearchStatus.FAILED, "query": query, "hits": None, "error": e.message,
                                "ms": None})
            raise
        ms = round((time.perf_counter() - started) * 1000, 3)
        record = {"search_id": search_id, "train_id": train_id, "created_at": iso(), "status": SearchStatus.COMPLETE,
                  "query": query, "hits": result, "error": None, "ms": ms}
        self._record(page, record)
        return {"search_id": search_id, **query, "hits": result, "ms": ms}

    def _search(self, train_id: str, image_id: str | None, vector: Any, item: str | None, images: Any, k: Any,
                metric: str, include: Any, exclude: Any, require_moa: Any, level: str,
                flatfield_plate: str | None, query: dict[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(train_id, str) or not train_id:
            raise InvalidInput("train_id must be a non-empty string")
        _check(level, LEVELS, "level")
        _check(metric, METRICS, "metric")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be an integer in [1, {MAX_K}], got {k!r}")
        for name, tags in (("include_tags", include), ("exclude_tags", exclude)):
            if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
                raise InvalidInput(f"{name} must be a list of non-empty strings")
        if not isinstance(require_moa, bool):
            raise InvalidInput("require_moa must be true or false")
        given = [n for n, v in (("image_id", image_id), ("id", item), ("vector", vector), ("images", images))
                 if v is not None]
        if len(given) != 1:
            raise InvalidInput("give exactly one query: image_id, id, vector or images"
                               + (f" (got {', '.join(given)})" if given else ""))
        loaded = self._index(train_id, level, metric)
        index, rows = loaded.index, loaded.rows
        own: list[int] = []
        if image_id is not None:
            query["image_id"] = image_id
            q, own = self._image_query(index, train_id, level, image_id)
        elif item is not None:
            query["id"] = item
            position = index.position(str(item))
            q, own = index.vector(position), [position]
        elif vector is not None:
            q = _vector(vector, index.dims)
        else:
            query["images"] = sorted(images) if isinstance(images, dict) else None
            q = self.embed_upload(train_id, images, flatfield_plate)
        hits = index.search(q, k, include=include, exclude=exclude, require_moa=require_moa,
                            exclude_positions=own)
        return [_hit(rank, index, rows, position, distance) for rank, (position, distance) in enumerate(hits, 1)]

    def _image_query(self, index: VectorIndex, train_id: str, level: str,
                     image_id: str) -> tuple[np.ndarray, list[int]]:
        if level == Level.FIELD:
            position = index.position(image_id)
            return index.vector(position), [position]
        if level == Level.CELL:
            prefix = f"{image_id}#"
            own = [i for i, name in enumerate(index.ids) if name.startswith(prefix)]
            if not own:
                raise NotFound(f"image {image_id!r} has no cells in the cell index of {train_id}")
            return np.mean([index.vector(i) for i in own], axis=0).astype(np.float32), own
        stored = self._embedding.get_image_embedding(image_id, train_id)
        if stored["embedding"] is None:
            raise InvalidInput(f"image {image_id} has no embedding under {train_id} ({stored['status']})")
        return np.asarray(stored["embedding"], np.float32), []

    def _model(self, train_id: str) -> Any:
        """The run's ONNX model (one session, kept for the run's later uploads)."""
        if train_id not in self._model_cache:
            from ...training.inference import EmbeddingModel

            run = self._training.get_training(train_id)
            if run["status"] != TrainStatus.COMPLETE:
                raise InvalidInput(f"train run {train_id} is {run['status']}; train it first (bioims train)")
            self._model_cache.clear()
            self._model_cache[train_id] = EmbeddingModel(self._objects.get_bytes(run["model_uris"]["onnx"]))
        return self._model_cache[train_id]

    def embed_upload(self, train_id: str, images: Any, flatfield_plate: str | None = None) -> np.ndarray:
        """The field embedding (D,) of an uploaded field: ``{channel: base64 image}`` with the run's
        spec channels, checked against the spec's dims, preprocessed and embedded like stored fields
        (flat-fields: ``flatfield_plate``'s under the spec, else the spec's flat-field computed from the
        uploaded field alone)."""
        from ...imaging.dtypes import to_float01
        from ...imaging.flatfield import flatfield
        from ...imaging.io import decode_image
        from ...imaging.preprocess import preprocess_field

        run = self._training.get_training(train_id)
        spec = EmbeddingSpec.from_dict(self._training.get_embedding_info(run["spec_name"]))
        channels = list(spec.input.channels)
        if not isinstance(images, dict) or sorted(images) != sorted(channels):
            got = sorted(images) if isinstance(images, dict) else type(images).__name__
            raise InvalidInput(f"images must map each channel of spec {spec.name} ({', '.join(channels)}) to a "
                               f"base64 image file; got {got}")
        planes = []
        for channel in channels:
            try:
                data = base64.b64decode(images[channel], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise InvalidInput(f"images[{channel!r}] is not valid base64") from None
            planes.append(decode_image(data, f"uploaded channel {channel}"))
        shapes = {p.shape for p in planes}
        want = (spec.input.height, spec.input.width) if spec.input.depth == 1 else \
            (spec.input.depth, spec.input.height, spec.input.width)
        if shapes != {want}:
            raise InvalidInput(f"uploaded channels have shapes {sorted(shapes)}; spec {spec.name} wants {want}")
        field = np.stack(planes)
        if flatfield_plate:
            flat = np.stack([np.load(io.BytesIO(self._objects.get_bytes(
                self._keys.flatfield(spec.name, flatfield_plate, ch))), allow_pickle=False) for ch in channels])
        else:  # the spec's flat-field construction applied to the uploaded field alone
            flat = np.stack([flatfield(to_float01(plane), cutoff_percentile=spec.flatfield.cutoff_percentile,
                                       sigma=spec.flatfield.sigma) for plane in planes])
        crops = preprocess_field(field, flat, segmentation_channel=spec.segmentation_index, roi_size=spec.roi_size,
                                 min_nucleus_voxels=spec.min_nucleus_voxels,
                                 clip_percentile=spec.normalization.clip_percentile,
                                 log_cap=spec.normalization.log_cap, declump=spec.segmentation.declump).crops
        if len(crops) == 0:
            raise InvalidInput("no nuclei found in the uploaded field: nothing to embed")
        return self._model(train_id).embed(crops).mean(axis=0).astype(np.float32)

    # ------------------------------------------------------------------ search records
    def get_search(self, search_id: str) -> dict[str, Any]:
        """A search's record: ``{"search_id", "train_id", "created_at", "status", "query", "hits", "error", "ms"}``."""
        if not isinstance(search_id, str) or not search_id:
            raise InvalidInput("search id must be a non-empty string")
        with self._records:
            record = self._recent.get(search_id)
        if record is not None:
            return record
        page_id = search_id.rsplit("-", 1)[0]
        part, parts = 0, 1
        while part < parts:
            try:
                row = self._t.searches.get(page_id if part == 0 else f"{page_id}~{part}")
            except self._t.searches.DoesNotExist:
                break
            parts = int(row.parts or 1)
            found = next((r for r in json.loads(row.records or "[]") if r.get("search_id") == search_id), None)
            if found is not None:
                return found
            part += 1
        raise NotFound(f"no search {search_id[:80]!r}")

    def list_searches(self, train_id: str) -> list[str]:
        """Ids of a source's recorded searches, oldest first."""
        self.flush()
        records = [r for item in self._t.searches.by_train.query(train_id)
                   for r in json.loads(self._t.searches.get(item.search_id).records or "[]")]
        return [r["search_id"] for r in sorted(records, key=lambda r: (r["created_at"], r["search_id"]))]

    def _new_search_id(self, train_id: str) -> tuple[str, _Page]:
        """``PAGE-N``: the next search of the source's open page (a new page when it is full), and the page."""
        with self._records:
            page = self._pages.get(train_id)
            if page is None or page.assigned >= RECORDS_PER_PAGE:
                page = self._pages[train_id] = _Page(new_id()[:16], train_id, iso())
            page.assigned += 1
            return f"{page.page_id}-{page.assigned}", page

    def _record(self, page: _Page, record: dict[str, Any]) -> None:
        with self._records:
            self._recent[record["search_id"]] = record
            while len(self._recent) > RECENT_SEARCHES:
                self._recent.popitem(last=False)
            page.records.append(record)
            page.dirty_since = page.dirty_since or time.monotonic()
            self._dirty[page.page_id] = page
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_records, name="search-records", daemon=True)
                self._writer.start()
                atexit.register(self.flush)  # a CLI search exits right after answering
            self._records.notify_all()

    def _write_records(self) -> None:
        """The record writer: each dirty page at most RECORD_DELAY_SECONDS after its first unwritten record,
        at once when it is full or when :meth:`flush` asks."""
        while True:
            with self._records:
                while not self._due():
                    self._records.wait(timeout=self._wait())
                due = [p for p in self._dirty.values() if self._flushing or p.full or
                       time.monotonic() - p.dirty_since >= RECORD_DELAY_SECONDS]
                batch = [(p, list(p.records)) for p in due]
                for p in due:
                    del self._dirty[p.page_id]
                    p.dirty_since = None
                self._writing = len(batch)
            for page, records in batch:
                try:
                    self._write_page(page, records)
                except Exception:
                    pass
            with self._records:
                self._writing = 0
                self._records.notify_all()

    def _due(self) -> bool:
        now = time.monotonic()
        return any(self._flushing or p.full or now - p.dirty_since >= RECORD_DELAY_SECONDS
                   for p in self._dirty.values())

    def _wait(self) -> float | None:
        if not self._dirty:
            return None
        return max(0.0, RECORD_DELAY_SECONDS - (time.monotonic() - min(p.dirty_since for p in self._dirty.values())))

    def _write_page(self, page: _Page, records: list[dict[str, Any]]) -> None:
        """Write a page's records (JSON text, each record encoded once per page) as one item, or as parts."""
        while len(page.encoded) < len(records):
            page.encoded.append(json.dumps(records[len(page.encoded)], separators=(",", ":")))
        parts: list[list[str]] = [[]]
        size = 0
        for text in page.encoded[:len(records)]:
            if parts[-1] and size + len(text) > PAGE_PART_BYTES:
                parts.append([])
                size = 0
            parts[-1].append(text)
            size += len(text) + 1
        with self._t.searches.batch_write() as writer:
            for i, part in enumerate(parts):
                writer.save(self._t.searches(page.page_id if i == 0 else f"{page.page_id}~{i}", train_id=page.train_id,
                                             created_at=page.created_at if i == 0 else f"{page.created_at}~{i}",
                                             records="[" + ",".join(part) + "]", parts=len(parts)))

    _flushing = False  # flush() is waiting: write every dirty page now
    _writing = 0  # pages being written (taken off the dirty list, not in the table yet)

    def flush(self) -> None:
        """Write every recorded search to the table now (and wait until it is written)."""
        if self._writer is None or not self._writer.is_alive():
            return
        with self._records:
            self._flushing = True
            try:
                self._records.notify_all()
                while self._dirty or self._writing:
                    self._records.wait(timeout=1.0)
            finally:
                self._flushing = False


@dataclass
class _Page:
    """The open page of a source's search records."""

    page_id: str
    train_id: str
    created_at: str
    assigned: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    encoded: list[str] = field(default_factory=list)  # JSON of records[:len(encoded)] (the writer's)
    dirty_since: float | None = None

    @property
    def full(self) -> bool:
        return len(self.records) >= RECORDS_PER_PAGE


def _check(value: Any, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _vector(value: Any, dims: int) -> np.ndarray:
    try:
        q = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInput("vector must be a list of numbers") from None
    if q.shape != (dims,):
        raise InvalidInput(f"vector must have {dims} numbers (the index's dims), got shape {list(q.shape)}")
    if not np.isfinite(q).all():
        raise InvalidInput("vector has NaN or infinite values")
    return q


def _hit(rank: int, index: VectorIndex, rows: list[dict[str, Any]], position: int,
         distance: float) -> dict[str, Any]:
    tags = index.tags_of(position)
    by_type = {}
    for t in tags:
        kind, _, value = t.partition(":")
        by_type.setdefault(kind, value)
    payload = rows[position] if position < len(rows) else {}
    return {"rank": rank, "id": index.ids[position], "distance": float(distance), "tags": tags,
            "plate": by_type.get("plate"), "well": by_type.get("well"), "compound": by_type.get("compound"),
            "concentration": by_type.get("concentration"), "moa": by_type.get("moa"),
            "image_id": payload.get("image_id"), "thumbnail": payload.get("thumbnail")}


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _json_load(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidInput(f"index part {name} is corrupt: {e}") from None


