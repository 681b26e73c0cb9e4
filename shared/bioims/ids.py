"""Identifiers and timestamps, in one place.

Ids of registered things (plates, wells, images) are *stable*: derived from their source identity, so
re-ingesting the same input (or resuming a killed ingest) writes the same rows instead of duplicates.
Ids of events (messages, searches, executions) are random.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, UTC


def stable_id(*parts: object, length: int = 16) -> str:
    """Hex digest of the parts (joined with a separator that cannot occur in them), ``length`` chars."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=16).hexdigest()
    return digest[:length]


def new_id() -> str:
    """A random 22-character id (uuid4, hex, shortened; collision odds negligible for our volumes)."""
    return uuid.uuid4().hex[:22]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None = None) -> str:
    """ISO-8601 UTC with microseconds: sortable as text (range keys)."""
    return (ts or utcnow()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
