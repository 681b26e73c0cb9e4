"""Tags of the vectors of an index, and the set of positions a filtered search may return.

A tag is a string such as ``"compound:taxol"``, ``"moa:Microtubule stabilizers"``, ``"plate:Week1_22123"``
or ``"well:B02"``. The table keeps, for every tag, the sorted int64 positions carrying it (one CSR
layout: ``names``, ``offsets``, ``positions``) and the reverse map position -> tags. Everything is built
once and read-only afterwards, so any number of threads may filter at once.

Filter semantics (the seed's): with a non-empty ``include``, a candidate must carry at least one include
tag; a candidate carrying any ``exclude`` tag is dropped; ``require_moa`` keeps candidates with a tag
starting ``"moa:"``; ``exclude_positions`` are never returned. An unknown include tag matches nothing,
an unknown exclude tag excludes nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInput

MOA_PREFIX = "moa:"
# An include union whose arrays hold at most count / SMALL_UNION positions is merged with a sort
# (O(m log m)); larger ones through a boolean mask over all positions (O(count)).
SMALL_UNION = 16
MANY_TAGS = 8  # beyond this many tags, scatter their concatenated positions at once


@dataclass(frozen=True)
class Allowed:
    """The positions a filtered search may return: ``count`` of the index's ``total``.

    Exactly one of ``sorted_positions`` (sorted, unique int64) and ``bool_mask`` ((total,) bool) is set;
    the other forms are derived on demand (nothing is cached: instances are per query).
    """

    count: int
    total: int
    sorted_positions: np.ndarray | None = None
    bool_mask: np.ndarray | None = None

    @property
    def fraction(self) -> float:
        """Selectivity: the fraction of the index that passes, in [0, 1]."""
        return self.count / self.total if self.total else 0.0

    def positions(self) -> np.ndarray:
        """(count,) sorted int64 positions."""
        if self.sorted_positions is not None:
            return self.sorted_positions
        return np.flatnonzero(self.bool_mask).astype(np.int64, copy=False)

    def mask(self) -> np.ndarray:
        """(total,) bool, True where allowed."""
        if self.bool_mask is not None:
            return self.bool_mask
        mask = np.zeros(self.total, dtype=bool)
        mask[self.sorted_positions] = True
        return mask

    def bitmap(self) -> np.ndarray:
        """(ceil(total / 8),) uint8: the mask packed little-endian, as ``faiss.IDSelectorBitmap`` reads it."""
        return np.packbits(self.mask(), bitorder="little")

    def contains(self, candidates: np.ndarray) -> np.ndarray:
        """Bool array, for each candidate position (>= 0), whether it is allowed."""
        if self.bool_mask is not None:
            return self.bool_mask[candidates]
        return _members(self.sorted_positions, candidates)


class TagTable:
    """Tag -> sorted positions (and position -> tags) for ``count`` vectors.

    Parameters
    ----------
    count : int
        Number of vectors (positions ``0 .. count - 1``).
    names : list of str
        The distinct tags, sorted.
    offsets : (len(names) + 1,) ndarray of int64
        ``positions[offsets[i]:offsets[i + 1]]`` are the positions carrying ``names[i]``, sorted.
    positions : (offsets[-1],) ndarray of int64
    """

    def __init__(self, count: int, names: list[str], offsets: np.ndarray, positions: np.ndarray):
        self.count = count
        self.names = names
        self._offsets = _frozen(offsets)
        self._positions = _frozen(positions)
        self._by_name = {n: self._positions[offsets[i]:offsets[i + 1]] for i, n in enumerate(names)}
        # reverse map: position -> codes of its tags (ascending, i.e. tags sorted by name)
        codes = np.repeat(np.arange(len(names), dtype=np.int32), np.diff(offsets))
        order = np.argsort(positions, kind="stable")
        self._row_codes = _frozen(codes[order])
        self._row_offsets = _frozen(np.concatenate(([0], np.cumsum(np.bincount(positions, minlength=count)))))
        moa = [self._by_name[n] for n in names if n.startswith(MOA_PREFIX)]
        has_moa = np.zeros(count, dtype=bool)
        for positions_of_tag in moa:
            has_moa[positions_of_tag] = True
        self._has_moa = _frozen(has_moa)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[str]] | None, ids: Sequence[str]) -> TagTable:
        """Build from one sequence of tags per vector (``None``: no tags). ``ids`` name rows in errors."""
        count = len(ids)
        if rows is None:
            return cls(count, [], np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64))
        if isinstance(rows, (str, bytes)) or not hasattr(rows, "__len__") or len(rows) != count:
            raise InvalidInput(f"tags must hold one list of tags per vector ({count}), "
                               f"not {_describe_length(rows)}")
        codes: dict[str, int] = {}
        flat: list[int] = []
        lengths = np.zeros(count, dtype=np.int64)
        for row, row_tags in enumerate(rows):
            if isinstance(row_tags, (str, bytes)) or not isinstance(row_tags, Iterable):
                raise InvalidInput(f"tags of {ids[row]!r} must be a list of strings, not {row_tags!r}")
            unique = set()
            for tag in row_tags:
                if not isinstance(tag, str) or not tag:
                    raise InvalidInput(f"tags of {ids[row]!r} must be non-empty strings, not {tag!r}")
                unique.add(codes.setdefault(tag, len(codes)))
            flat.extend(unique)
            lengths[row] = len(unique)
        names = sorted(codes)
        rank = np.empty(len(names), dtype=np.int64)
        rank[[codes[n] for n in names]] = np.arange(len(names))
        tag_codes = rank[np.asarray(flat, dtype=np.int64)]
        rows_of = np.repeat(np.arange(count, dtype=np.int64), lengths)
        order = np.lexsort((rows_of, tag_codes))
        offsets = np.concatenate(([0], np.cumsum(np.bincount(tag_codes, minlength=len(names))))).astype(np.int64)
        return cls(count, names, offsets, rows_of[order])

    def tags_of(self, position: int) -> list[str]:
        """The tags of one position, sorted."""
        codes = self._row_codes[self._row_offsets[position]:self._row_offsets[position + 1]]
        return [self.names[c] for c in codes]

    def counts(self) -> dict[str, int]:
        """Tag -> number of vectors carrying it, sorted by tag."""
        return {n: int(self._offsets[i + 1] - self._offsets[i]) for i, n in enumerate(self.names)}

    def allowed(self, include: Sequence[str] = (), exclude: Sequence[str] = (), *, require_moa: bool = False,
                exclude_positions: Sequence[int] | np.ndarray = ()) -> Allowed | None:
        """The positions passing a filter (see the module docstring), or ``None`` when there is no filter.

        Cost: O(m log m) in the sizes m of the tags involved when the include union is small, else
        O(count) (a boolean mask), plus O(n log n) for ``n`` exclude positions.
        """
        include = _tag_list(include, "include")
        exclude = _tag_list(exclude, "exclude")
        dropped = _position_array(exclude_positions, self.count)
        if not include and not exclude and not require_moa and not len(dropped):
            return None
        excluded = [self._by_name[t] for t in exclude if t in self._by_name] + ([dropped] if len(dropped) else [])
        if include:
            chosen = [self._by_name[t] for t in dict.fromkeys(include) if t in self._by_name]
            if not chosen:
                return Allowed(0, self.count, sorted_positions=np.zeros(0, dtype=np.int64))
            if sum(len(a) for a in chosen) * SMALL_UNION <= self.count:
                positions = chosen[0] if len(chosen) == 1 else _union(chosen)
                if require_moa:
                    positions = positions[self._has_moa[positions]]
                for removed in excluded:
                    positions = positions[~_members(removed, positions)]
                return Allowed(len(positions), self.count, sorted_positions=positions)
            mask = np.zeros(self.count, dtype=bool)
            for positions in _batched(chosen):
                mask[positions] = True
            if require_moa:
                mask &= self._has_moa
        else:
            mask = self._has_moa.copy() if require_moa else np.ones(self.count, dtype=bool)
        for removed in _batched(excluded):
            mask[removed] = False
        return Allowed(int(np.count_nonzero(mask)), self.count, bool_mask=mask)

    # persistence -------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """An ``.npz``: ``names`` (UTF-8 JSON list as uint8), ``offsets`` and ``positions`` (int64)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, names=np.frombuffer(json.dumps(self.names).encode(), dtype=np.uint8),
                            offsets=self._offsets, positions=self._positions)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, count: int) -> TagTable:
        """Inverse of :meth:`to_bytes`; raises ``ValueError`` describing what is inconsistent."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = json.loads(npz["names"].tobytes().decode())
            offsets = npz["offsets"].astype(np.int64, copy=False)
            positions = npz["positions"].astype(np.int64, copy=False)
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ValueError("names must be a list of non-empty strings")
        if names != sorted(set(names)):
            raise ValueError("names must be sorted and unique")
        if offsets.shape != (len(names) + 1,) or offsets[0] != 0 or offsets[-1] != len(positions) \
                or np.any(np.diff(offsets) < 0):
            raise ValueError("offsets do not match names and positions")
        if len(positions) and (positions.min() < 0 or positions.max() >= count):
            raise ValueError(f"positions must lie in 0..{count - 1}")
        steps = np.diff(positions)
        starts = offsets[1:-1]
        steps[starts[(starts > 0) & (starts < len(positions))] - 1] = 1  # a new tag may restart low
        if np.any(steps <= 0):
            raise ValueError("positions of a tag must be sorted and unique")
        return cls(count, names, offsets, positions)


def _union(sorted_arrays: list[np.ndarray]) -> np.ndarray:
    """Sorted unique union of sorted int64 arrays (a stable sort merges the sorted runs: 30x faster
    than ``np.unique`` on 10 runs of 1000)."""
    merged = np.sort(np.concatenate(sorted_arrays), kind="stable")
    if len(merged) < 2:
        return merged
    keep = np.empty(len(merged), dtype=bool)
    keep[0] = True
    np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged[keep]


def _batched(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Many position arrays as one (one scatter instead of a Python loop of small ones)."""
    return [np.concatenate(arrays)] if len(arrays) > MANY_TAGS else arrays


def _members(sorted_set: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Bool array: which ``candidates`` occur in ``sorted_set`` (sorted int64), by binary search."""
    if not len(sorted_set):
        return np.zeros(len(candidates), dtype=bool)
    where = np.searchsorted(sorted_set, candidates)
    return sorted_set[np.minimum(where, len(sorted_set) - 1)] == candidates


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def _tag_list(tags: Sequence[str], name: str) -> list[str]:
    if isinstance(tags, (str, bytes)):
        raise InvalidInput(f"{name} must be a list of tags, not the string {tags!r}")
    tags = list(tags)
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidInput(f"{name} tags must be strings, not {tag!r}")
    return tags


def _position_array(positions: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    """Sorted unique int64 positions, validated against ``0 .. count - 1``."""
    array = np.asarray(positions)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise InvalidInput(f"exclude_positions must be a list of integers, not {positions!r}")
    array = _union([np.sort(array.astype(np.int64))])
    if array[0] < 0 or array[-1] >= count:
        bad = array[0] if array[0] < 0 else array[-1]
        raise InvalidInput(f"exclude_positions: position {bad} is outside 0..{count - 1}")
    return array


def _describe_length(value: object) -> str:
    if isinstance(value, (str, bytes)):
        return "a string"
    try:
        return f"{len(value)} lists"  # type: ignore[arg-type]
    except TypeError:
        return type(value).__name__
