"""Ingest roots: the only places input images and plate manifests are read from.

An input URI (an image channel, a manifest) is accepted when it lies under one of the configured roots:
a local folder, or an ``s3://bucket/prefix/``. The roots are

- ``BIOIMS_INGEST_ROOTS`` (:attr:`bioims.settings.Settings.ingest_roots`) and, on AWS, the input bucket
  ``s3://$BIOIMS_INPUT_BUCKET/`` (:attr:`bioims.settings.Settings.input_roots`);
- on one machine, also the folders the user named to the ingest commands (``bioims ingest loaddata CSV
  [--root DIR]``, ``ingest manifest``, ``ingest folder DIR``, ``bioims demo``), remembered in
  ``$BIOIMS_HOME/ingest-roots.json`` by :func:`remember_ingest_root`. Only the CLI writes that file; no API
  operation can add a root.

Registration rejects a plate with an image outside the roots (:meth:`IngestRoots.check`), and every
read of an input image checks it again. Stored objects under the artifact root (crops, models, ...)
are read by their keys (:mod:`bioims.store.keys`), not through these roots.

The check is lexical: a URI is taken apart as the readers take it apart (:func:`~bioims.store.objects.uri_to_path`),
a ``.`` or ``..`` segment or a NUL rejects it, and the normalised path must start with a root (given as
written or with its symlinks resolved). Symlinks *inside* a root are followed by the readers: whoever can
create one there can read its target anyway, and symlink farms of image folders are common.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import InvalidInput
from .objects import write_file_atomic

INGEST_ROOTS_FILE = "ingest-roots.json"
"""The file under ``BIOIMS_HOME`` listing the folders the user named to the ingest commands."""
_SHOWN = 5
"""How many roots an error message lists."""


def normalise_root(root: str | os.PathLike[str]) -> str:
    """A root in its canonical form: ``s3://bucket/prefix/`` (ending with ``/``) or an absolute,
    normalised local folder (no trailing separator; ``file://`` URIs become paths).

    Raises
    ------
    InvalidInput
        A relative folder, an S3 URI without a bucket, another scheme, a NUL or a ``..`` segment.

    Examples
    --------
    >>> normalise_root("s3://input/bbbc021")
    's3://input/bbbc021/'
    >>> normalise_root("/data/screens/")
    '/data/screens'
    """
    text = os.fspath(root)
    if not isinstance(text, str) or not text or "\x00" in text:
        raise InvalidInput(f"ingest root {text!r} is not a folder or an s3:// prefix")
    if text.startswith("s3://"):
        parsed = urlparse(text)
        key = parsed.path.lstrip("/")
        if not parsed.netloc or ".." in key.split("/"):
            raise InvalidInput(f"ingest root {text!r} is not an s3://bucket/prefix")
        return f"s3://{parsed.netloc}/" + (key.rstrip("/") + "/" if key.strip("/") else "")
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    elif "://" in text:
        raise InvalidInput(f"ingest root {text!r} must be a local folder or an s3:// prefix")
    if not os.path.isabs(text):
        raise InvalidInput(f"ingest root {text!r} must be an absolute folder")
    return os.path.normpath(text)


def _input_location(uri: str) -> tuple[str, str] | None:
    """``("s3", "s3://bucket/key")`` or ``("file", "/normalised/path")`` of an input URI; None if it has
    another form or a ``.`` / ``..`` segment or a NUL (never a valid input)."""
    if not isinstance(uri, str) or "\x00" in uri:
        return None
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        key = parsed.path.lstrip("/")
        if not parsed.netloc or not key or any(s in (".", "..") for s in key.split("/")):
            return None
        return "s3", f"s3://{parsed.netloc}/{key}"
    if uri.startswith("file://"):
        path = unquote(urlparse(uri).path)
        if "\x00" in path or not posixpath.isabs(path) or any(s in (".", "..") for s in path.split("/")):
            return None
        return "file", os.path.normpath(path)
    return None


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


_Forms = tuple[tuple[str, ...], tuple[str, ...]]
"""(S3 prefixes, local folders as written and with their symlinks resolved)."""


def _forms(roots: tuple[str, ...]) -> _Forms:
    s3 = tuple(r for r in roots if r.startswith("s3://"))
    local = tuple(r for r in roots if not r.startswith("s3://"))
    return s3, tuple(dict.fromkeys(local + tuple(os.path.realpath(r) for r in local)))


def _allowed(uri: str, forms: _Forms) -> bool:
    location = _input_location(uri)
    if location is None:
        return False
    kind, target = location
    s3, local = forms
    if kind == "s3":
        return any(target.startswith(root) for root in s3)
    return any(_under(target, root) for root in local)


def _outside(uri: str, roots: tuple[str, ...], what: str) -> InvalidInput:
    shown = repr(uri) if not isinstance(uri, str) or len(uri) > 300 or "\x00" in uri else uri
    listed = ", ".join(roots[:_SHOWN]) + (f", ... ({len(roots)} in all)" if len(roots) > _SHOWN else "")
    return InvalidInput(f"{what} {shown} is outside the ingest roots ({listed or 'none configured'}); name its "
                        f"folder to the ingest command (bioims ingest ... / --root), to `bioims serve "
                        f"--ingest-root`, or in BIOIMS_INGEST_ROOTS")


def check_input_uri(uri: str, roots: Iterable[str], what: str = "input") -> str:
    """``uri`` if it lies under one of ``roots`` (canonical, see :func:`normalise_root`), else
    :class:`~bioims.errors.InvalidInput`: ``"<what> <uri> is outside the ingest roots (...); ..."``.

    Examples
    --------
    >>> check_input_uri("file:///data/p1/a.tif", ["/data"])
    'file:///data/p1/a.tif'
    >>> check_input_uri("file:///etc/shadow", ["/data"], "image")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bioims.errors.InvalidInput: image file:///etc/shadow is outside the ingest roots (/data); ...
    """
    roots = tuple(roots)
    if _allowed(uri, _forms(roots)):
        return uri
    raise _outside(uri, roots, what)


# ------------------------------------------------------------------------------ remembered roots
def read_ingest_roots(home: str | os.PathLike[str]) -> tuple[str, ...]:
    """The roots remembered in ``home`` (:data:`INGEST_ROOTS_FILE`); none if the file is absent.

    Raises
    ------
    InvalidInput
        The file is not a JSON list of roots.
    """
    path = Path(home) / INGEST_ROOTS_FILE
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as e:
        raise InvalidInput(f"{path} is not a JSON list of ingest roots: {e}") from None
    if not isinstance(document, list) or not all(isinstance(r, str) for r in document):
        raise InvalidInput(f"{path} is not a JSON list of ingest roots")
    return tuple(normalise_root(r) for r in document)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / f".{INGEST_ROOTS_FILE}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remember_ingest_root(home: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """Add ``root`` (a folder, made absolute, or an ``s3://`` prefix) to the roots remembered in ``home``;
    written atomically under a lock (concurrent ingests keep each other's roots). Returns the canonical
    root. Used by the CLI's ingest commands only."""
    text = os.fspath(root)
    canonical = normalise_root(text if "://" in text else os.path.abspath(text))
    home = Path(home)
    with _locked(home):
        known = read_ingest_roots(home)
        if canonical not in known:
            write_file_atomic(home / INGEST_ROOTS_FILE, json.dumps([*known, canonical], indent=1).encode())
    return canonical


class IngestRoots:
    """The roots of one runtime: fixed ones (settings) and, optionally, those remembered in a home
    (re-read whenever the file changes, so a running server sees a folder ingested since it started).

    Parameters
    ----------
    roots : iterable of str
        Folders and ``s3://`` prefixes (normalised here).
    home : str or Path, optional
        ``BIOIMS_HOME`` whose :data:`INGEST_ROOTS_FILE` is merged in (one machine only).
    """

    def __init__(self, roots: Iterable[str | os.PathLike[str]] = (), *, home: str | os.PathLike[str] | None = None):
        self._fixed = tuple(dict.fromkeys(normalise_root(r) for r in roots))
        self._file = None if home is None else Path(home) / INGEST_ROOTS_FILE
        self._stamp: tuple[int, int, int] | None = None
        self._roots = self._fixed
        self._matcher = _forms(self._fixed)

    def roots(self) -> tuple[str, ...]:
        """Every root, fixed ones first."""
        self._refresh()
        return self._roots

    def _refresh(self) -> None:
        if self._file is None:
            return
        try:
            st = self._file.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            remembered = read_ingest_roots(self._file.parent) if stamp is not None else ()
            self._roots = tuple(dict.fromkeys(self._fixed + remembered))
            self._matcher = _forms(self._roots)
            self._stamp = stamp

    def check(self, uri: str, what: str = "input") -> str:
        """``uri`` if it lies under a root, else :class:`~bioims.errors.InvalidInput` (see
        :func:`check_input_uri`)."""
        self._refresh()
        if _allowed(uri, self._matcher):
            return uri
        raise _outside(uri, self._roots, what)

    def field_uris(self, channel_uris: Mapping[str, str], channels: Iterable[str], what: str = "image") -> list[str]:
        """The URIs of a field's ``channels``, in order, each checked (:meth:`check`): what every read of
        an input image goes through."""
        return [self.check(channel_uris[channel], f"{what} channel {channel}:") for channel in channels]

    def check_all(self, uris: Iterable[str], what: str = "image") -> None:
        """:meth:`check` every URI (the roots are read once)."""
        self._refresh()
        for uri in uris:
            if not _allowed(uri, self._matcher):
                raise _outside(uri, self._roots, what)
