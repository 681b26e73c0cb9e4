"""Domain errors. Every layer raises these; the API maps them to HTTP statuses and the CLI to exit 1."""

from __future__ import annotations


class BioimsError(Exception):
    """Base class of every expected failure. ``status`` is the HTTP status the API answers with."""

    status = 500
    code = "InternalError"

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InvalidInput(BioimsError):
    """The request or a file is malformed: wrong type, missing field, unreadable image, bad CSV."""

    status = 400
    code = "InvalidInput"


class NotFound(BioimsError):
    """An id (plate, image, tag, parameter, message, ...) does not exist."""

    status = 404
    code = "NotFound"


class Conflict(BioimsError):
    """The operation clashes with existing state (duplicate plate, existing tag or label, ...)."""

    status = 409
    code = "Conflict"


class PayloadTooLarge(BioimsError):
    """The request body exceeds the configured limit."""

    status = 413
    code = "PayloadTooLarge"


class Unavailable(BioimsError):
    """A server the runtime depends on (the local table server) is unreachable and could not be
    restarted; the same request may succeed later."""

    status = 503
    code = "Unavailable"


ERRORS_BY_CODE: dict[str, type[BioimsError]] = {
    cls.code: cls for cls in (BioimsError, InvalidInput, NotFound, Conflict, PayloadTooLarge, Unavailable)
}

MAX_REASON = 500
"""Longest reason :func:`one_line` returns (characters)."""


def one_line(error: BaseException, *, limit: int = MAX_REASON) -> str:
    """The reason of a failure as one line, for a row's ``error``, a job summary or the CLI.

    Parameters
    ----------
    error : BaseException
        A domain error (its message) or any other exception (``Type: message``).
    limit : int, optional
        Longer reasons are cut and end with ``...``.

    Returns
    -------
    reason : str
        Whitespace runs (newlines included) collapsed to single spaces.

    Examples
    --------
    >>> one_line(InvalidInput("bad\\nvalue"))
    'bad value'
    >>> one_line(OSError(28, "No space left on device"))
    'OSError: [Errno 28] No space left on device'
    """
    text = error.message if isinstance(error, BioimsError) else str(error)
    text = " ".join(text.split())
    if not isinstance(error, BioimsError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_from_dict(error: dict[str, str]) -> BioimsError:
    """Rebuild a domain error from its ``{"code", "message"}`` form (HTTP and Lambda transports)."""
    cls = ERRORS_BY_CODE.get(error.get("code", ""), BioimsError)
    return cls(error.get("message", ""))
