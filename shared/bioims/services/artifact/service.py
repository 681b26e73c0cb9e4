"""Artifact service: the artifact registry, configuration parameters with history, message logs.

Seed parity: its ``configuration``, ``message`` and ``artifact`` services (see MISSION.md), merged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pynamodb.exceptions import PutError

from ...errors import InvalidInput, NotFound
from ...ids import iso, new_id, utcnow
from ...names import check_name
from ...store.objects import ObjectStore, join
from ...store.tables import ORIGIN, condition_failed, to_dict
from .tables import ArtifactTables

DEFAULT_TRAIN_ID = "default-train-id"
"""The configuration parameter behind get/setDefaultTrainId."""


def _require(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{name} must be a non-empty string")
    return value


class ArtifactService:
    """Use-cases of the artifact service.

    Parameters
    ----------
    tables : Tables
        The bound table models (only ``artifacts``, ``parameters`` and ``messages`` are used).
    root : str, optional
        The artifact store's root URI, under which a ``key`` given to :meth:`create_artifact` is resolved.
    objects, describe : optional
        The object store and what describes the deployment (CloudFormation DescribeStacks on AWS), for
        :meth:`create_describe_stacks_artifact`.
    """

    def __init__(self, tables: ArtifactTables, root: str | None = None, *, objects: ObjectStore | None = None,
                 describe: Callable[[], dict[str, Any]] | None = None) -> None:
        self._t = tables
        self._root = root
        self._objects = objects
        self._describe = describe

    # ================================================================= artifacts
    def create_artifact(
        self,
        context_id: str,
        uri: str | None = None,
        train_id: str = ORIGIN,
        type: str | None = None,
        size: int | None = None,
        annotations: list[str] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Record a stored object (idempotent: the same context, train id and URI is one artifact).

        ``context_id`` is what the object belongs to (a plate id, image id, train id, ...). The object is
        ``uri``, or ``key`` under the artifact store's root (the seed's ``s3key#KEY``; one that would leave
        the root is refused).
        """
        _require(context_id, "context_id")
        uri = self._object_uri(uri, key)
        _require(train_id, "train_id")
        if "://" not in uri:
            raise InvalidInput(f"artifact uri must be a URI (file://, s3://), got {uri!r}")
        row = self._t.artifacts(
            context_id,
            f"{train_id}#{uri}",
            train_id=train_id,
            uri=uri,
            type=type,
            size=size,
            annotations=list(annotations or []) or None,
            created_at=utcnow(),
        )
        row.save()
        return self._artifact_dict(row)

    def create_describe_stacks_artifact(self, context_id: str, train_id: str = ORIGIN) -> dict[str, Any]:
        """Store the deployment's description (CloudFormation DescribeStacks on AWS; the local runtime's
        settings on one machine) as ``describe-stacks/<context>/stacks-<id>.json`` and record it, so that
        a result can be traced to the stacks that made it. Returns ``{"context_id", "train_id", "key",
        "uri"}`` (``key``: under the artifact store's root)."""
        _require(context_id, "context_id")
        if self._objects is None or self._describe is None or self._root is None:
            raise InvalidInput("this artifact service has no object store to write a description to")
        key = f"describe-stacks/{check_name(context_id, 'context id')}/stacks-{new_id()}.json"
        uri = join(self._root, key)
        data = json.dumps(self._describe(), default=str, sort_keys=True).encode()
        self._objects.put_bytes(uri, data)
        self.create_artifact(context_id, uri, train_id=train_id, type="describe-stacks", size=len(data))
        return {"context_id": context_id, "train_id": train_id, "key": key, "uri": uri}

    def get_artifacts(self, context_id: str, train_id: str | None = None) -> list[dict[str, Any]]:
        """Artifacts of a context, optionally only those of one train id (empty list if none)."""
        _require(context_id, "context_id")
        cond = self._t.artifacts.artifact_key.startswith(f"{train_id}#") if train_id else None
        return [self._artifact_dict(r) for r in self._t.artifacts.query(context_id, cond)]

    def get_train_artifacts(self, train_id: str) -> list[dict[str, Any]]:
        """Every artifact recorded with ``train_id``, across contexts."""
        _require(train_id, "train_id")
        return [self._artifact_dict(r) for r in self._t.artifacts.by_train.query(train_id)]

    def delete_artifacts(self, context_id: str, train_id: str | None = None) -> dict[str, int]:
        """Delete the records (not the objects) of a context, or of one train id in it."""
        _require(context_id, "context_id")
        cond = self._t.artifacts.artifact_key.startswith(f"{train_id}#") if train_id else None
        rows = list(self._t.artifacts.query(context_id, cond))
        with self._t.artifacts.batch_write() as batch:
            for row in rows:
                batch.delete(row)
        return {"deleted": len(rows)}

    def add_annotation(self, context_id: str, annotation: str, uri: str | None = None, train_id: str = ORIGIN,
                       key: str | None = None) -> dict[str, Any]:
        """Append a free-text annotation to an artifact (its ``uri``, or its ``key`` under the store)."""
        _require(annotation, "annotation")
        row = self._get_artifact(context_id, train_id, self._object_uri(uri, key))
        row.update(actions=[self._t.artifacts.annotations.set(
            (self._t.artifacts.annotations | []).append([annotation]))])
        return self._artifact_dict(row)

    def _object_uri(self, uri: str | None, key: str | None) -> str:
        """A stored object's URI: ``uri``, or ``key`` resolved under the store's root (never leaving it)."""
        if key is not None:
            if uri is not None or self._root is None:
                raise InvalidInput("give the object as uri or as key (one of them)" if uri is not None
                                   else "this artifact service has no store root to resolve a key under")
            return join(self._root, _require(key, "key"))
        return _require(uri, "uri")

    def _get_artifact(self, context_id: str, train_id: str, uri: str) -> Any:
        try:
            return self._t.artifacts.get(context_id, f"{train_id}#{uri}")
        except self._t.artifacts.DoesNotExist:
            raise NotFound(f"no artifact {uri} for context {context_id} and train {train_id}") from None

    @staticmethod
    def _artifact_dict(row: Any) -> dict[str, Any]:
        return to_dict(row, exclude=("artifact_key",))

    # ================================================================= configuration
    def set_parameter(self, parameter: str, value: Any) -> dict[str, Any]:
        """Set a parameter to a JSON value; the previous values stay in its history."""
        _require(parameter, "parameter")
        if value is None:
            raise InvalidInput("value must not be null (use delete_parameter)")
        return self._put_version(parameter, value=value, deleted=False)

    def get_parameter(self, parameter: str) -> Any:
        """The current value; :class:`NotFound` if never set or deleted."""
        latest = self._latest(_require(parameter, "parameter"))
        if latest is None or latest.deleted:
            raise NotFound(f"configuration parameter {parameter!r} is not set")
        return latest.value

    def get_all(self) -> dict[str, Any]:
        """Every parameter that is currently set -> its value."""
        latest: dict[str, Any] = {}
        for row in self._t.parameters.scan():
            if row.parameter not in latest or row.version > latest[row.parameter].version:
                latest[row.parameter] = row
        return {k: r.value for k, r in sorted(latest.items()) if not r.deleted}

    def get_history(self, parameter: str) -> list[dict[str, Any]]:
        """Every version, oldest first: ``{"version", "value", "deleted", "created_at"}``."""
        rows = list(self._t.parameters.query(_require(parameter, "parameter")))
        if not rows:
            raise NotFound(f"configuration parameter {parameter!r} has no history")
        return [to_dict(r, exclude=("parameter",)) | {"value": r.value} for r in rows]

    def delete_parameter(self, parameter: str) -> dict[str, Any]:
        """Unset a parameter (recorded in its history)."""
        self.get_parameter(parameter)
        return self._put_version(parameter, value=None, deleted=True)

    def get_default_train_id(self) -> str:
        return str(self.get_parameter(DEFAULT_TRAIN_ID))

    def set_default_train_id(self, train_id: str) -> dict[str, Any]:
        return self.set_parameter(DEFAULT_TRAIN_ID, _require(train_id, "train_id"))

    def _latest(self, parameter: str) -> Any:
        rows = list(self._t.parameters.query(parameter, scan_index_forward=False, limit=1))
        return rows[0] if rows else None

    def _put_version(self, parameter: str, *, value: Any, deleted: bool) -> dict[str, Any]:
        # Optimistic concurrency: two writers racing for the same version -> the loser retries.
        for _ in range(20):
            latest = self._latest(parameter)
            version = (latest.version if latest else 0) + 1
            row = self._t.parameters(parameter, version, value=value, deleted=deleted, created_at=utcnow())
            try:
                row.save(condition=self._t.parameters.version.does_not_exist())
            except PutError as e:
                if not condition_failed(e):
                    raise
                continue
            return {"parameter": parameter, "version": version, "value": value, "deleted": deleted}
        raise RuntimeError(f"could not write parameter {parameter!r}: too much contention")

    # ================================================================= messages
    def create_message(self, message: str) -> str:
        """Start a new activity log with a first message; returns its ``message_id``."""
        message_id = new_id()
        self.add_message(message_id, message, _new=True)
        return message_id

    def add_message(self, message_id: str, message: str, *, _new: bool = False) -> dict[str, Any]:
        """Append a message to an existing log."""
        _require(message, "message")
        if not _new:
            self._require_log(message_id)
        now = utcnow()
        row = self._t.messages(_require(message_id, "message_id"), f"{iso(now)}#{new_id()[:6]}",
                               message=message, created_at=now)
        row.save()
        return self._message_dict(row)

    def get_message(self, message_id: str) -> dict[str, Any]:
        """The most recent message of a log."""
        rows = list(self._t.messages.query(_require(message_id, "message_id"), scan_index_forward=False, limit=1))
        if not rows:
            raise NotFound(f"no message log {message_id!r}")
        return self._message_dict(rows[0])

    def list_messages(self, message_id: str) -> list[dict[str, Any]]:
        """Every message of a log, oldest first."""
        rows = list(self._t.messages.query(_require(message_id, "message_id")))
        if not rows:
            raise NotFound(f"no message log {message_id!r}")
        return [self._message_dict(r) for r in rows]

    def delete_message(self, message_id: str) -> dict[str, int]:
        """Delete a whole log."""
        rows = list(self._t.messages.query(_require(message_id, "message_id")))
        if not rows:
            raise NotFound(f"no message log {message_id!r}")
        with self._t.messages.batch_write() as batch:
            for row in rows:
                batch.delete(row)
        return {"deleted": len(rows)}

    def _require_log(self, message_id: str) -> None:
        if not list(self._t.messages.query(_require(message_id, "message_id"), limit=1)):
            raise NotFound(f"no message log {message_id!r}")

    @staticmethod
    def _message_dict(row: Any) -> dict[str, Any]:
        return {"message_id": row.message_id, "message": row.message, "created_at": iso(row.created_at)}
