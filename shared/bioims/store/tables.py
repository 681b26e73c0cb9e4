"""The table base: one DynamoDB connection shared by the tables of every service (connection only).

Each service declares its own PynamoDB models in its package (``bioims.services.<name>.tables``) as unbound
templates and groups them in a :class:`TableSet` subclass; only that service's code touches them. A
:class:`Database` is one endpoint (DynamoDB on AWS, dynalite locally, moto in unit tests), a name prefix and
one botocore client; binding a table set to it names each table ``<prefix><table>`` (``bioims-image-tags``),
so several stacks (two test prefixes, say) can live in one process. The local runtime binds every
service's set to one database (one dynalite); a Lambda function binds only its own service's set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import botocore.exceptions
from pynamodb.attributes import MapAttribute
from pynamodb.exceptions import TableError
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from ..errors import BioimsError, Unavailable, one_line

ORIGIN = "origin"
"""``train_id`` of an image's own row (as in the seed); other rows hold one train run's results."""


class Index(GlobalSecondaryIndex):  # type: ignore[type-arg]
    """Base of the secondary indexes of the services' models."""


def table_name(attr: str) -> str:
    """The unprefixed table name of a table set attribute: ``image_tags`` -> ``image-tags``."""
    return attr.replace("_", "-")


class Database:
    """One table endpoint, a name prefix and the one botocore client that every table bound to it uses.

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
        None: PynamoDB's own, made from ``host``, ``region`` and ``credentials`` on the first bind.
    recover : callable () -> str, or None
        Makes the table server reachable again and returns its URL (the local runtime passes
        :meth:`bioims.local_stack.LocalStack.up`, which restarts a dead dynalite, possibly on a new
        port). With it, a call that cannot connect (server down, killed mid-request, restarted
        elsewhere) calls ``recover``, re-points every bound table at the URL returned, and is retried once
        at once; if ``recover`` fails or the retry cannot connect either, the call raises
        :class:`~bioims.errors.Unavailable` (503) instead of retrying with back-off for a minute.
        Only with ``client=None``.
    """

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
        self.region = region
        self._credentials = credentials
        self._recover = recover
        self._rebind = threading.Lock()
        self._models: list[type[Model]] = []
        self._client: Any | None = None
        if client is not None:
            self._share(client)

    def bind(self, template: type[Model], attr: str) -> type[Model]:
        """``template`` bound to the table ``<prefix><table_name(attr)>`` of this database."""
        meta: dict[str, Any] = {
            "table_name": f"{self.prefix}{table_name(attr)}",
            "region": self.region,
            "host": self.host,
            "billing_mode": "PAY_PER_REQUEST",
            "max_retry_attempts": 8,
        }
        if self._credentials is not None:
            meta["aws_access_key_id"], meta["aws_secret_access_key"] = self._credentials
        bound: type[Model] = type(template.__name__, (template,), {"Meta": type("Meta", (), meta)})
        with self._rebind:
            self._models.append(bound)
            # One botocore client for all tables: PynamoDB makes one per model, and each costs ~0.1 s to
            # create (service model loading), which would dominate the start-up of every command.
            if self._client is None:
                self._share(bound._get_connection().connection.client)
            else:
                bound._get_connection().connection._client = self._client
        return bound

    @property
    def client(self) -> Any:
        """The botocore DynamoDB client of every bound table (None before the first bind)."""
        return self._client

    def _share(self, client: Any) -> None:
        """Make ``client`` the one botocore client of every bound table."""
        for model in self._models:
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
        """Point every bound table at ``host`` (a new client for it, shared as in the constructor); a
        no-op when it is the current host. Thread-safe; returns ``host``."""
        with self._rebind:
            if host != self.host and self._models:
                for model in self._models:
                    model.Meta.host = host
                connection = self._models[0]._get_connection().connection
                connection.host, connection._client = host, None
                self.host = host
                self._share(connection.client)
        return host

    def models(self) -> list[type[Model]]:
        """Every table bound to this database, in binding order."""
        return list(self._models)

    def create(self, models: Iterable[type[Model]] | None = None) -> list[str]:
        """Create the missing tables among ``models`` (default: every bound table); idempotent, and safe
        when another process creates the same tables at once. Returns the names created."""
        models = self.models() if models is None else list(models)
        assert self._client is not None, "bind a table set first"
        existing: set[str] = set()
        for page in self._client.get_paginator("list_tables").paginate():
            existing.update(page["TableNames"])
        created = []
        for model in models:
            if model.Meta.table_name not in existing:
                try:
                    model.create_table(billing_mode="PAY_PER_REQUEST", wait=False)
                except TableError as e:  # another process (a search worker, a CLI) created it meanwhile
                    if "ResourceInUseException" not in str(e) and "ResourceInUse" not in repr(e.cause):
                        raise
                    _wait_active(model)
                    continue
                created.append(model.Meta.table_name)
        for model in models:
            if model.Meta.table_name in created:
                _wait_active(model)
        return created

    def delete_all(self) -> None:
        """Delete every bound table that exists."""
        for model in self._models:
            if model.exists():
                model.delete_table()


class TableSet:
    """The tables of one owner (a service, or the local job runner), bound to a :class:`Database`.

    A subclass lists its unbound models in :attr:`MODELS` (attribute name -> model; the table is
    ``<prefix><name with "-" for "_">``) and annotates each attribute; an instance has each model bound::

        class TagsTables(TableSet):
            MODELS = {"tags": Tag, "image_tags": ImageTag}
            tags: type[Tag]
            image_tags: type[ImageTag]

        tables = TagsTables(Database("bioims-", host=url))
        tables.tags.get("compound:ALLN")
    """

    MODELS: ClassVar[dict[str, type[Model]]] = {}

    def __init__(self, database: Database) -> None:
        self.database = database
        self._bound = [database.bind(template, attr) for attr, template in self.MODELS.items()]
        for attr, bound in zip(self.MODELS, self._bound):
            setattr(self, attr, bound)

    def models(self) -> list[type[Model]]:
        return list(self._bound)

    def create(self) -> list[str]:
        """Create this set's missing tables (:meth:`Database.create`)."""
        return self.database.create(self._bound)

    @classmethod
    def table_names(cls) -> list[str]:
        """The unprefixed names of this set's tables (``image-tags``)."""
        return [table_name(attr) for attr in cls.MODELS]


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
