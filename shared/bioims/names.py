"""The one character set of names that become part of a storage key or a file path.

Plate, image and well ids, channels, spec names, train ids, index and profile-set ids are used as path
segments under the artifact root (:mod:`bioims.store.keys`). Each must be a single safe segment:
letters, digits and ``. _ + -``, the first a letter or digit, at most :data:`MAX_NAME` characters — so
never ``.``, ``..``, a slash, a backslash, whitespace or a control character. The API contract
(:mod:`bioims.contract`) validates requests with the same pattern; the key layout checks it again.

Examples
--------
>>> check_name("DAPI", "channel")
'DAPI'
>>> check_name("../../etc", "channel")
Traceback (most recent call last):
...
bioims.errors.InvalidInput: channel '../../etc' is not a valid name: use letters, digits and . _ + - (first a letter or digit), at most 128 characters
"""

from __future__ import annotations

import re

from .errors import InvalidInput

MAX_NAME = 128
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$"
NAME_RULE = "letters, digits and . _ + - (first a letter or digit), at most 128 characters"
_NAME = re.compile(NAME_PATTERN)


def is_name(value: object) -> bool:
    """Whether ``value`` is a string in the name character set."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(value: object, what: str) -> str:
    """``value`` if it is a valid name, else :class:`~bioims.errors.InvalidInput` naming ``what``."""
    if not is_name(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80] + "...")
        raise InvalidInput(f"{what} {shown} is not a valid name: use {NAME_RULE}")
    return value  # type: ignore[return-value]
