"""The data layer: every table as a PynamoDB model.

The models below are unbound templates. :class:`Tables` binds each one to a table name (the configured
prefix + the table's name), an endpoint (DynamoDB on AWS, dynalite locally, moto in unit tests) and a
region, so several stacks (for example two test prefixes) can live in one process.

Key design (hash key / range key; secondary indexes in brackets):

======================  ==================================  =============================================
table                   keys                                indexes (the walkthrough's queries)
======================  ==================================  =============================================
images                  image_id / train_id ("origin" row   by_plate (plate_id / train_id): images of a
                        per field, one row per train run)   plate, and of a plate x train run;
                                                            by_plate_well (plate_id / well_id, origin only)
plates                  plate_id                            by_source (source_id); by_shape (shape_key,
                                                            validated plates only): compatible plates
wells                   plate_id / well_id
tags                    value                               by_id (tag_id); by_type (type / value)
image_tags              image_id / tag_id                   by_tag (tag_id / image_id)
label_categories        category
labels                  category / label
embedding_specs         name
train_runs              train_id                            by_spec (spec_name / created_at)
artifacts               context_id / artifact_key           by_train (train_id / artifact_key)
parameters              parameter / version                 (history = the versions of one parameter)
messages                message_id / sort_key
searches                search_id (a page of records)       by_train (train_id / created_at)
executions              execution_id
counters                name                                (atomic id allocation)
======================  ==================================  =============================================
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import botocore.exceptions
from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import TableError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from ..contract.enums import ExecutionStatus, ImageStatus, PlateStatus, TrainStatus
from ..errors import BioimsError, Unavailable, one_line

ORIGIN = "origin"
"""``train_id`` of an image's own row (as in the seed); other rows hold one train run's results."""


class _Index(GlobalSecondaryIndex):  # type: ignore[type-arg]
    pass


# ----------------------------------------------------------------------------------------------- images
class ImagesByPlate(_Index):
    class Meta:
        index_name = "by_plate"
        projection = AllProjection()

    plate_id = UnicodeAttribute(hash_key=True)
    train_id = UnicodeAttribute(range_key=True)


class ImagesByPlateWell(_Index):
    class Meta:
        index_name = "by_plate_well"
        projection = AllProjection()

    plate_id = UnicodeAttribute(hash_key=True)
    well_id = UnicodeAttribute(range_key=True)


class Image(Model):
    """One field of view (``train_id == "origin"``) or one train run's result for it.

    Origin rows carry the plate, well, source ids, ``channel_uris`` (channel name -> URI, in channel
    order ``channels``), metadata (compound, concentration, moa, batch, replicate, ...), inspection
    results (``width``, ``height``, ``depth``, ``dtype``), ``status`` (``registered`` -> ``valid`` |
    ``invalid``) and ``error`` (the exact problem). Train rows carry ``embedding`` (float32 bytes),
    ``cell_count`` and result URIs; they have no ``well_id`` so ``by_plate_well`` stays origin-only.
    """

    image_id = UnicodeAttribute(hash_key=True)
    train_id = UnicodeAttribute(range_key=True)
    plate_id = UnicodeAttribute()
    well_id = UnicodeAttribute(null=True)
    plate_source_id = UnicodeAttribute(null=True)
    well_source_id = UnicodeAttribute(null=True)
    field_source_id = UnicodeAttribute(null=True)
    channels = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    channel_uris = MapAttribute(null=True)  # type: ignore[var-annotated]
    metadata = MapAttribute(null=True)  # type: ignore[var-annotated]
    width = NumberAttribute(null=True)
    height = NumberAttribute(null=True)
    depth = NumberAttribute(null=True)
    dtype = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default=ImageStatus.REGISTERED)
    error = UnicodeAttribute(null=True)
    cell_count = NumberAttribute(null=True)
    embedding = BinaryAttribute(null=True, legacy_encoding=False)
    results = MapAttribute(null=True)  # type: ignore[var-annotated]
    created_at = UTCDateTimeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)

    by_plate = ImagesByPlate()
    by_plate_well = ImagesByPlateWell()


# ----------------------------------------------------------------------------------------------- plates
class PlatesBySource(_Index):
    class Meta:
        index_name = "by_source"
        projection = AllProjection()

    source_id = UnicodeAttribute(hash_key=True)


class PlatesByShape(_Index):
    class Meta:
        index_name = "by_shape"
        projection = AllProjection()

    shape_key = UnicodeAttribute(hash_key=True)


class Plate(Model):
    """A plate. ``shape_key`` (``"{width}x{height}x{depth}x{channel_count}"``) is set only once the plate
    is validated, so ``by_shape`` lists exactly the searchable plates of one image shape."""

    plate_id = UnicodeAttribute(hash_key=True)
    source_id = UnicodeAttribute()
    experiment = UnicodeAttribute(null=True)
    batch = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default=PlateStatus.REGISTERED)
    image_count = NumberAttribute(default=0)
    well_count = NumberAttribute(default=0)
    channels = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    width = NumberAttribute(null=True)
    height = NumberAttribute(null=True)
    depth = NumberAttribute(null=True)
    shape_key = UnicodeAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    problems = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    created_at = UTCDateTimeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)

    by_source = PlatesBySource()
    by_shape = PlatesByShape()


class Well(Model):
    plate_id = UnicodeAttribute(hash_key=True)
    well_id = UnicodeAttribute(range_key=True)
    source_id = UnicodeAttribute()
    image_count = NumberAttribute(default=0)
    metadata = MapAttribute(null=True)  # type: ignore[var-annotated]


# ------------------------------------------------------------------------------------------------- tags
class TagsById(_Index):
    class Meta:
        index_name = "by_id"
        projection = AllProjection()

    tag_id = NumberAttribute(hash_key=True)


class TagsByType(_Index):
    class Meta:
        index_name = "by_type"
        projection = AllProjection()

    type = UnicodeAttribute(hash_key=True)
    value = UnicodeAttribute(range_key=True)


class Tag(Model):
    """A tag such as ``compound:ALLN``; ``type`` is the part before the first ``:`` (or ``""``)."""

    value = UnicodeAttribute(hash_key=True)
    tag_id = NumberAttribute()
    type = UnicodeAttribute(null=True)  # None for a tag without "type:" (kept out of by_type)
    created_at = UTCDateTimeAttribute(null=True)

    by_id = TagsById()
    by_type = TagsByType()


class ImageTagsByTag(_Index):
    class Meta:
        index_name = "by_tag"
        projection = AllProjection()

    tag_id = NumberAttribute(hash_key=True)
    image_id = UnicodeAttribute(range_key=True)


class ImageTag(Model):
    image_id = UnicodeAttribute(hash_key=True)
    tag_id = NumberAttribute(range_key=True)
    value = UnicodeAttribute()
    plate_id = UnicodeAttribute(null=True)

    by_tag = ImageTagsByTag()


class LabelCategory(Model):
    category = UnicodeAttribute(hash_key=True)
    description = UnicodeAttribute(null=True)
    next_index = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute(null=True)


class Label(Model):
    """A label of a category with a stable integer ``index`` (0, 1, ... in creation order)."""

    category = UnicodeAttribute(hash_key=True)
    label = UnicodeAttribute(range_key=True)
    index = NumberAttribute()
    description = UnicodeAttribute(null=True)


# ------------------------------------------------------------------------------------------- training
class EmbeddingSpec(Model):
    name = UnicodeAttribute(hash_key=True)
    spec = JSONAttribute()
    created_at = UTCDateTimeAttribute(null=True)


class TrainRunsBySpec(_Index):
    class Meta:
        index_name = "by_spec"
        projection = AllProjection()

    spec_name = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class TrainRun(Model):
    """A training run. The filter (image ids excluded from training) can hold thousands of ids, so it is
    stored as an object (``filter_uri``) and only counted here."""

    train_id = UnicodeAttribute(hash_key=True)
    spec_name = UnicodeAttribute()
    created_at = UnicodeAttribute()  # ISO-8601 UTC, sortable (range key of by_spec)
    status = UnicodeAttribute(default=TrainStatus.CREATED)
    holdout = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    filter_uri = UnicodeAttribute(null=True)
    filter_count = NumberAttribute(default=0)
    model_uris = MapAttribute(null=True)  # type: ignore[var-annotated]
    metrics = JSONAttribute(null=True)
    settings = JSONAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)
    started_at = UTCDateTimeAttribute(null=True)
    finished_at = UTCDateTimeAttribute(null=True)

    by_spec = TrainRunsBySpec()


# ------------------------------------------------------------------------------------------- artifacts
class ArtifactsByTrain(_Index):
    class Meta:
        index_name = "by_train"
        projection = AllProjection()

    train_id = UnicodeAttribute(hash_key=True)
    artifact_key = UnicodeAttribute(range_key=True)


class Artifact(Model):
    """A stored object: ``artifact_key`` is ``"{train_id}#{uri}"`` so recording it twice is idempotent."""

    context_id = UnicodeAttribute(hash_key=True)
    artifact_key = UnicodeAttribute(range_key=True)
    train_id = UnicodeAttribute()
    uri = UnicodeAttribute()
    type = UnicodeAttribute(null=True)
    size = NumberAttribute(null=True)
    annotations = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    created_at = UTCDateTimeAttribute(null=True)

    by_train = ArtifactsByTrain()


class Parameter(Model):
    """One version of a configuration parameter; a deletion is recorded as a version with ``deleted``."""

    parameter = UnicodeAttribute(hash_key=True)
    version = NumberAttribute(range_key=True)
    value = JSONAttribute(null=True)
    deleted = BooleanAttribute(default=False)
    created_at = UTCDateTimeAttribute(null=True)


class Message(Model):
    """One entry of an activity log; ``sort_key`` is ``"{ISO time}#{sequence}"`` (chronological)."""

    message_id = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)
    message = UnicodeAttribute()
    created_at = UTCDateTimeAttribute(null=True)


class SearchesByTrain(_Index):
    class Meta:
        index_name = "by_train"
        projection = KeysOnlyProjection()

    train_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Search(Model):
    """A page of a source's search records (see :mod:`bioims.services.search`): ``search_id`` is the page
    id (``PAGE``, or ``PAGE~i`` for the i-th part of a page too large for one item)."""

    search_id = UnicodeAttribute(hash_key=True)
    train_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    records = UnicodeAttribute(null=True)  # JSON: [{"search_id", "train_id", "created_at", "status", "query", "hits", ...}]
    parts = NumberAttribute(null=True)

    by_train = SearchesByTrain()


class Execution(Model):
    """A workflow execution (local runner; on AWS the Step Functions execution ARN is the id)."""

    execution_id = UnicodeAttribute(hash_key=True)
    workflow = UnicodeAttribute()
    params = JSONAttribute(null=True)
    status = UnicodeAttribute(default=ExecutionStatus.RUNNING)
    output = JSONAttribute(null=True)
    error = UnicodeAttribute(null=True)
    started_at = UTCDateTimeAttribute(null=True)
    finished_at = UTCDateTimeAttribute(null=True)


class Counter(Model):
    name = UnicodeAttribute(hash_key=True)
    value = NumberAttribute(default=0)


MODELS: dict[str, type[Model]] = {
    "images": Image,
    "plates": Plate,
    "wells": Well,
    "tags": Tag,
    "image_tags": ImageTag,
    "label_categories": LabelCategory,
    "labels": Label,
    "embedding_specs": EmbeddingSpec,
    "train_runs": TrainRun,
    "artifacts": Artifact,
    "parameters": Parameter,
    "messages": Message,
    "searches": Search,
    "executions": Execution,
    "counters": Counter,
}


class Tables:
    """Every table model bound to one prefix and endpoint.

    Parameters
    ----------
    prefix : str
        Prepended to every table name (``"bioims-"`` gives ``bioims-images``, ...).
    host : str or None
        Endpoint URL (dynalite or a DynamoDB-compatible server); None means AWS DynamoDB.
    region : str
        AWS region.
    credentials : (key id, secret) or None
        Static credentials for local servers, which accept any.
    client : botocore DynamoDB client or None
        The client every table uses (made by a composition root, e.g. with recording hooks in tests);
        None: PynamoDB's own, made from ``host``, ``region`` and ``credentials``.
    recover : callable () -> str, or None
        Makes the table server reachable again and returns its URL (the local runtime passes
        :meth:`bioims.local_stack.LocalStack.up`, which restarts a dead dynalite, possibly on a new
        port). With it, a call that cannot connect (server down, killed mid-request, restarted
        elsewhere) calls ``recover``, re-points every table at the URL returned, and is retried once at
        once; if ``recover`` fails or the retry cannot connect either, the call raises
        :class:`~bioims.errors.Unavailable` (503) instead of retrying with back-off for a minute.
        Only with ``client=None``.
    """

    images: type[Image]
    plates: type[Plate]
    wells: type[Well]
    tags: type[Tag]
    image_tags: type[ImageTag]
    label_categories: type[LabelCategory]
    labels: type[Label]
    embedding_specs: type[EmbeddingSpec]
    train_runs: type[TrainRun]
    artifacts: type[Artifact]
    parameters: type[Parameter]
    messages: type[Message]
    searches: type[Search]
    executions: type[Execution]
    counters: type[Counter]

    def __init__(
        self,
        prefix: str,
        *,
        host: str | None = None,
        region: str = "us-east-1",
        credentials: tuple[str, str] | None = None,
        client: Any | None = None,
        recover: Callable[[], str] | None = None,
    ) -> None:
        if recover is not None and client is not None:
            raise ValueError("recover needs the tables' own client (client=None)")
        self.prefix = prefix
        self.host = host
        self._recover = recover
        self._rebind = threading.Lock()
        for attr, template in MODELS.items():
            meta: dict[str, Any] = {
                "table_name": f"{prefix}{attr.replace('_', '-')}",
                "region": region,
                "host": host,
                "billing_mode": "PAY_PER_REQUEST",
                "max_retry_attempts": 8,
            }
            if credentials is not None:
                meta["aws_access_key_id"], meta["aws_secret_access_key"] = credentials
            bound = type(template.__name__, (template,), {"Meta": type("Meta", (), meta)})
            setattr(self, attr, bound)
        # One botocore client for all tables: PynamoDB makes one per model, and each costs ~0.1 s to
        # create (service model loading), which would dominate the start-up of every command.
        self._share(client if client is not None else self.models()[0]._get_connection().connection.client)

    def _share(self, client: Any) -> None:
        """Make ``client`` the one botocore client of every table."""
        for model in self.models():
            model._get_connection().connection._client = client
        self._client = client
        if self._recover is not None:
            client.meta.events.register_first("needs-retry.dynamodb", self._on_retry)

    def _on_retry(self, caught_exception: Exception | None = None, request_dict: dict[str, Any] | None = None,
                  **_: Any) -> int | None:
        """botocore's retry hook (see ``recover``), run before its own retry policy.

        On a connection failure: ``recover()``; if it names the server that failed, that server is up
        again (a transient failure) and botocore's policy retries with back-off (None); if it names
        another, every table is re-pointed there and the call retried at once (0), at most once per call.
        :class:`Unavailable` if ``recover`` fails or the server moves again during the same call.
        Anything but a connection failure is left to botocore (None)."""
        if not isinstance(caught_exception, botocore.exceptions.ConnectionError) or request_dict is None:
            return None
        assert self._recover is not None
        parts = urlsplit(request_dict["url"])
        failed = f"{parts.scheme}://{parts.netloc}"
        try:
            url = self._recover().rstrip("/")
        except BioimsError as e:
            raise Unavailable(f"the table server at {failed} is unreachable and could not be restarted: "
                              f"{one_line(e)}") from caught_exception
        if url == failed:
            return None
        context = request_dict.setdefault("context", {})
        if context.get("bioims_recovered"):
            raise Unavailable(f"the table server moved twice during one call (now at {url}); try again")
        context["bioims_recovered"] = True
        self.reconnect(url)
        request_dict["url"] = url + urlunsplit(("", "", parts.path, parts.query, parts.fragment))
        return 0

    def reconnect(self, host: str) -> str:
        """Point every table at ``host`` (a new client for it, shared as in the constructor); a no-op
        when it is the current host. Thread-safe; returns ``host``."""
        with self._rebind:
            if host != self.host:
                for model in self.models():
                    model.Meta.host = host
                connection = self.models()[0]._get_connection().connection
                connection.host, connection._client = host, None
                self.host = host
                self._share(connection.client)
        return host

    def models(self) -> list[type[Model]]:
        return [getattr(self, attr) for attr in MODELS]

    def create_all(self) -> list[str]:
        """Create the missing tables (idempotent); returns the names created."""
        existing: set[str] = set()
        for page in self._client.get_paginator("list_tables").paginate():
            existing.update(page["TableNames"])
        created = []
        for model in self.models():
            if model.Meta.table_name not in existing:
                try:
                    model.create_table(billing_mode="PAY_PER_REQUEST", wait=False)
                except TableError as e:  # another process (a search worker, a CLI) created it meanwhile
                    if "ResourceInUseException" not in str(e) and "ResourceInUse" not in repr(e.cause):
                        raise
                    _wait_active(model)
                    continue
                created.append(model.Meta.table_name)
        for model in self.models():
            if model.Meta.table_name in created:
                _wait_active(model)
        return created

    def delete_all(self) -> None:
        for model in self.models():
            if model.exists():
                model.delete_table()


def _wait_active(model: type[Model], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    conn = model._get_connection().connection
    while time.monotonic() < deadline:
        status = conn.client.describe_table(TableName=model.Meta.table_name)["Table"]["TableStatus"]
        if status == "ACTIVE":
            return
        time.sleep(0.05)
    raise TimeoutError(f"table {model.Meta.table_name} not ACTIVE after {timeout:.0f} s")


def condition_failed(error: Exception) -> bool:
    """Whether a PynamoDB write error is a failed condition (a lost race), not a real failure."""
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def to_dict(row: Model, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """A row as plain JSON-ready values: datetimes -> ISO strings, maps -> dicts, unset attributes and
    binary vectors left out (vectors are returned by the calls that need them)."""
    out: dict[str, Any] = {}
    for name in row.get_attributes():
        if name in exclude:
            continue
        value = getattr(row, name)
        if value is None or isinstance(value, bytes):
            continue
        if isinstance(value, MapAttribute):
            value = value.as_dict()
        elif hasattr(value, "isoformat"):
            value = value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out[name] = value
    return out
