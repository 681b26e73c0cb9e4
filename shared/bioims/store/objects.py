"""Object store addressed by URI: ``file:///abs/path`` and ``s3://bucket/key``.

Writes are atomic: a local write goes to a temporary file in the same directory and is renamed over the
target (readers never see a partial object); an S3 write is a single PUT. Objects are bytes; helpers
for JSON live here too. Which keys are used is decided by :mod:`bioims.store.keys` only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from collections.abc import Iterator
from urllib.parse import quote, unquote, urlparse

from ..errors import InvalidInput, NotFound


def path_to_uri(path: str | os.PathLike[str]) -> str:
    """``/a/b c.tif`` -> ``file:///a/b%20c.tif`` (absolute)."""
    return Path(path).resolve().as_uri()


def uri_to_path(uri: str) -> Path:
    """``file://`` URI (or a plain path) -> local path."""
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    if "://" in uri:
        raise InvalidInput(f"not a local file URI: {uri!r}")
    return Path(uri)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``:
    readers see the old file or the new one, never a partial one (parent folders are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make artifacts unreadable to other local users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def join(root: str, *parts: str) -> str:
    """Join a root URI and key parts with ``/`` (parts are percent-quoted for ``file://``).

    The result never leaves ``root``: a ``.`` or ``..`` segment or a NUL in the key is refused, and for a
    ``file://`` root the joined path, with its dot segments resolved, must lie under the root's (the
    comparison is lexical, as the key's meaning: symlinks the operator put inside the store are followed).

    Raises
    ------
    InvalidInput
        The key would leave the root.
    """
    key = "/".join(p.strip("/") for p in parts if p)
    if "\x00" in key or any(segment in (".", "..") for segment in key.split("/")):
        raise InvalidInput(f"key {key[:200]!r} would leave the root {root}")
    if root.startswith("file://"):
        base = os.path.normpath(uri_to_path(root))
        target = os.path.normpath(os.path.join(base, key))
        if os.path.commonpath([base, target]) != base:
            raise InvalidInput(f"key {key[:200]!r} would leave the root {root}")
        key = quote(key)
    return f"{root.rstrip('/')}/{key}"


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise InvalidInput(f"S3 URI without a bucket: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


class ObjectStore:
    """Read and write objects by URI.

    Parameters
    ----------
    s3_client : botocore S3 client or None
        Used for ``s3://`` URIs; None means S3 URIs are rejected with a clear error.
    """

    def __init__(self, s3_client: Any | None = None) -> None:
        self._s3 = s3_client

    # ------------------------------------------------------------------ dispatch helpers
    def _s3_client(self, uri: str) -> Any:
        if self._s3 is None:
            raise InvalidInput(f"no S3 client configured for {uri}")
        return self._s3

    @staticmethod
    def _check_scheme(uri: str) -> str:
        if uri.startswith("file://"):
            return "file"
        if uri.startswith("s3://"):
            return "s3"
        raise InvalidInput(f"unsupported URI {uri!r}: use file:// or s3://")

    # ------------------------------------------------------------------ operations
    def put_bytes(self, uri: str, data: bytes) -> None:
        """Write ``data`` to ``uri`` atomically (creating parent folders)."""
        if self._check_scheme(uri) == "s3":
            bucket, key = _split_s3(uri)
            self._s3_client(uri).put_object(Bucket=bucket, Key=key, Body=data)
            return
        write_file_atomic(uri_to_path(uri), data)

    def get_bytes(self, uri: str) -> bytes:
        """Read a whole object; :class:`NotFound` if it does not exist."""
        if self._check_scheme(uri) == "s3":
            bucket, key = _split_s3(uri)
            client = self._s3_client(uri)
            try:
                return client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except client.exceptions.NoSuchKey:
                raise NotFound(f"no object at {uri}") from None
        try:
            return uri_to_path(uri).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no object at {uri}") from None

    def exists(self, uri: str) -> bool:
        if self._check_scheme(uri) == "s3":
            bucket, key = _split_s3(uri)
            client = self._s3_client(uri)
            try:
                client.head_object(Bucket=bucket, Key=key)
                return True
            except client.exceptions.ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return uri_to_path(uri).is_file()

    def size(self, uri: str) -> int:
        if self._check_scheme(uri) == "s3":
            bucket, key = _split_s3(uri)
            client = self._s3_client(uri)
            try:
                return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
            except client.exceptions.ClientError:
                raise NotFound(f"no object at {uri}") from None
        try:
            return uri_to_path(uri).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no object at {uri}") from None

    def delete(self, uri: str) -> None:
        """Delete an object (no error if it is already gone)."""
        if self._check_scheme(uri) == "s3":
            bucket, key = _split_s3(uri)
            self._s3_client(uri).delete_object(Bucket=bucket, Key=key)
            return
        uri_to_path(uri).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        """URIs of the objects under ``prefix``, sorted. ``prefix`` is a folder, with or without its final
        ``/``, in both stores: ``.../models/run-1`` lists ``.../models/run-1/...``, not ``.../models/run-10/...``."""
        if self._check_scheme(prefix) == "s3":
            bucket, key = _split_s3(prefix)
            if key and not key.endswith("/"):
                key += "/"
            paginator = self._s3_client(prefix).get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=key):
                for obj in page.get("Contents", []):
                    yield f"s3://{bucket}/{obj['Key']}"
            return
        root = uri_to_path(prefix)
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
                yield path.as_uri()

    def put_json(self, uri: str, value: Any) -> None:
        self.put_bytes(uri, json.dumps(value, indent=1, sort_keys=True).encode())

    def get_json(self, uri: str) -> Any:
        data = self.get_bytes(uri)
        try:
            return json.loads(data)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"{uri} is not valid JSON: {e}") from None
