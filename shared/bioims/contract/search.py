"""The search service's contract: filtered nearest-neighbour search, search records, index management.

Search is a long-lived process (a container on AWS, a part of ``bioims serve`` locally), reached over
HTTP only; its operations still have the seed's method names so that the SDK and the documentation treat
it like every other service.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, JsonValue, StringConstraints, model_validator

from .base import MAX_ID, Id, Model, Name, Operation, Request, Service, SpecName, TagValue, alias, unwrap
from .enums import IndexKind, Level, Metric

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""An item of an index (``PLATE/WELL``, ``COMPOUND@CONC``, ``IMAGE#N``): printable, with the ``/`` of a well's
id; only ever looked up in the index, never part of a path."""

MAX_K = 1000
"""Largest ``k`` of one search."""
MAX_DIMS = 65536
"""Largest embedding length of a vector query."""
MAX_TAGS = 1000
"""Most tags of one include or exclude filter."""
MAX_UPLOAD_CHARS = 48 * 1024 * 1024
"""Largest base64 text of one uploaded channel (the search API accepts bodies up to 64 MB)."""


# ------------------------------------------------------------------------------------------------ responses
class Hit(Model):
    """One nearest neighbour."""

    rank: int = Field(description="1 = nearest")
    id: str = Field(description="the item: an image id (field level), IMAGE#N (cell), PLATE/WELL, COMPOUND@CONC")
    distance: float = Field(description="cosine distance (1 - cosine similarity) or Euclidean distance")
    tags: list[str]
    plate: str | None = None
    well: str | None = None
    compound: str | None = None
    concentration: str | None = None
    moa: str | None = None
    image_id: str | None = None
    thumbnail: str | None = Field(None, description="URI of the field's smallest thumbnail")


class SearchQuery(Model):
    """What was searched."""

    train_id: str
    level: Level
    metric: Metric
    k: int
    include_tags: list[str]
    exclude_tags: list[str]
    require_moa: bool


class SearchResult(SearchQuery):
    """The hits of one search, nearest first, and its id and server-side time."""

    search_id: str
    hits: list[Hit]
    ms: float = Field(description="milliseconds spent by the service")


class SearchRecord(Model):
    """A recorded search (complete or failed)."""

    search_id: str
    train_id: str
    created_at: str = Field(description="ISO-8601 UTC")
    status: str
    query: dict[str, JsonValue] | None = None
    hits: list[Hit] | None = None
    error: str | None = None
    ms: float | None = None


class IndexInfo(Model):
    """An index (loaded in memory, or stored)."""

    train_id: str
    level: Level
    metric: Metric
    kind: str | None = None
    dims: int | None = None
    count: int | None = None
    version: str | None = None
    built_at: str | None = None
    loaded: bool | None = Field(None, description="stored listings: whether this version is in memory")
    loaded_at: str | None = None


class BuiltIndex(Model):
    """The sidecar of a new index build."""

    kind: str
    metric: Metric
    dims: int
    count: int
    version: str
    source: str
    level: Level


class DeletedIndexes(Model):
    """What a delete removed."""

    train_id: str
    indexes: int
    objects: int


# ------------------------------------------------------------------------------------------------ requests
class Search(Request):
    """Nearest neighbours of one query (exactly one of image_id, id, vector, images), filtered by tags."""

    train_id: Name = Field(description="train run (or profile set) whose index is searched")
    image_id: Id | None = Field(None, description="query: a field's stored embedding")
    vector: list[float] | None = Field(None, min_length=1, max_length=MAX_DIMS,
                                       description="query: the embedding itself (dims numbers)")
    id: ItemId | None = Field(None, description="query: an item of the index (PLATE/WELL, COMPOUND@CONC, IMAGE#N)")
    images: dict[Name, Annotated[str, StringConstraints(max_length=MAX_UPLOAD_CHARS)]] | None = Field(None, max_length=64, description=(
        "query: an uploaded field, {channel: base64 TIFF/PNG}, embedded with the run's model"))
    k: int = Field(10, ge=1, le=MAX_K, description="hits wanted")
    metric: Metric = Metric.COSINE
    include_tags: list[TagValue] | None = Field(None, max_length=MAX_TAGS,
                                                description="a hit carries at least one of these (if any)")
    exclude_tags: list[TagValue] | None = Field(None, max_length=MAX_TAGS, description="a hit carries none of these")
    require_moa: bool = Field(False, description="a hit carries an moa: tag")
    level: Level = Level.FIELD
    flatfield_plate: Id | None = Field(None, description="uploads: use this plate's flat-fields (default: none)")

    @model_validator(mode="before")
    @classmethod
    def _seed_event(cls, data: Any) -> Any:
        """The seed's ``{"search": {trainId, queryImageId, metric, maxHits, requireMoa, inclusionTags,
        exclusionTags}}`` (``metric`` ``Cosine``/``Euclidean``, ``requireMoa`` a string)."""
        data = unwrap(data, "search")
        if not isinstance(data, dict) or not SEED_SEARCH.keys() & data.keys():
            return data
        data = {SEED_SEARCH.get(k, k): v for k, v in data.items()}
        if isinstance(data.get("metric"), str):
            data["metric"] = data["metric"].lower()
        if isinstance(data.get("require_moa"), str):
            data["require_moa"] = data["require_moa"].lower() == "true"
        return data


SEED_SEARCH = {"queryImageId": "image_id", "imageId": "image_id", "maxHits": "k", "requireMoa": "require_moa",
               "inclusionTags": "include_tags", "exclusionTags": "exclude_tags", "searchMetric": "metric"}
"""The seed's names of a search's arguments (submitSearch, searchByImageId) and the field each fills."""


class GetSearch(Request):
    """The record of an earlier search: status, query, hits."""

    search_id: Id


class ListIndexes(Request):
    """Indexes loaded in memory, or (stored=true) every stored index of one source or all."""

    stored: bool = False
    train_id: Name | None = None


class BuildIndex(Request):
    """Build (or rebuild) the index of a train run's (or profile set's) embeddings at one level."""

    train_id: Name
    level: Level = Level.FIELD
    kind: IndexKind = IndexKind.AUTO
    metric: Metric = Metric.COSINE


class ReloadIndex(Request):
    """Swap in the newest stored build of each of a source's indexes (atomic; queries never wait)."""

    train_id: Name


class LoadTagLabelMap(Request):
    """Refresh the tag filters of a source's indexes (of every stored index without ``train_id``, as the
    seed's) from the current image tags, without rebuilding vectors (409 if its rows changed since the
    build: rebuild instead)."""

    train_id: Name | None = None


class StartTagLoad(Request):
    """Refresh the tag filters of the indexes of every run of a spec (the seed's startTagLoad)."""

    spec: SpecName = Field(validation_alias=alias("spec", "embedding_name"))


class DeleteIndex(Request):
    """Unload and delete a source's indexes (one level, or all)."""

    train_id: Name
    level: Level | None = None


_Op = Operation
SERVICE = Service("search", "bioims search service",
                  "FAISS indexes of a train run's (or profile set's) embeddings, searched from memory with tag "
                  "filters; rebuilt indexes are swapped in while serving.", (
    _Op("submitSearch", "search", "POST /searches", Search, SearchResult),
    _Op("searchByImageId", "search", "POST /searches/by-image", Search, SearchResult),
    _Op("getSearchResults", "get_search", "GET /searches/{search_id}", GetSearch, SearchRecord),
    _Op("getSearchStatus", "get_search", "GET /searches/{search_id}/status", GetSearch, SearchRecord),
    _Op("listIndexes", "indexes", "GET /indexes", ListIndexes, list[IndexInfo]),
    _Op("startTrainingLoad", "build_index", "POST /indexes", BuildIndex, BuiltIndex, status=201),
    _Op("reloadIndex", "reload_index", "POST /indexes/{train_id}/reload", ReloadIndex, list[IndexInfo]),
    _Op("loadTagLabelMap", "load_tag_label_map", "POST /indexes/{train_id}/tags", LoadTagLabelMap, list[IndexInfo]),
    _Op("startTagLoad", "start_tag_load", "POST /tag-loads", StartTagLoad, list[IndexInfo]),
    _Op("deleteTraining", "delete_index", "DELETE /indexes/{train_id}", DeleteIndex, DeletedIndexes),
))
