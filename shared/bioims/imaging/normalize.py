"""Per-channel intensity normalisation: percentile cutoff, flat-field correction, log scale, [0, 1].

The seed's recipe, per channel of a field: ``x = to_float01(channel)``; clip ``x`` at its 99th
percentile; ``n = max(x / flatfield, 1)``; ``l = min(log(n), 5)``; rescale ``l`` min-max to [0, 1]
(a constant channel becomes all zeros). Computed in place in one float32 buffer per channel.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInput
from .dtypes import check_real_dtype, to_float01

__all__ = ["normalize_channel", "normalize_field"]


def normalize_channel(
    channel: np.ndarray, flatfield: np.ndarray, *, clip_percentile: float = 99.0, log_cap: float = 5.0
) -> np.ndarray:
    """Normalise one channel of a field to [0, 1].

    Parameters
    ----------
    channel : (H, W) or (Z, H, W) ndarray of bool, unsigned int or float
        Raw intensities; mapped to [0, 1] by :func:`~bioims.imaging.dtypes.to_float01`.
    flatfield : ndarray of float, same shape as ``channel``
        The plate's flat-field of this channel (:func:`~bioims.imaging.flatfield.flatfield`), in
        [0, 1] intensity units, strictly positive.
    clip_percentile : float, optional
        Intensities above this percentile of the channel (in [0, 100], linear interpolation as
        :func:`numpy.percentile`) are set to it.
    log_cap : float, optional
        Upper limit of ``log(x / flatfield)`` (natural log), > 0.

    Returns
    -------
    out : ndarray of float32, same shape as ``channel``
        Values in [0, 1]; all zeros for a channel that is constant after the log step.

    Raises
    ------
    InvalidInput
        If the shapes differ, the channel is not 2-D or 3-D, holds NaN, the flat-field is not
        strictly positive, or an option is out of range.

    Examples
    --------
    >>> channel = np.array([[100, 200], [400, 65535]], np.uint16)
    >>> normalize_channel(channel, np.full((2, 2), 100 / 65535, np.float32), clip_percentile=100.0)
    array([[0.        , 0.13862944],
           [0.27725887, 1.        ]], dtype=float32)
    """
    channel, flatfield = np.asarray(channel), np.asarray(flatfield)
    _check_pair(channel, flatfield, "channel", "flatfield", channel_axis=False)
    _check_options(clip_percentile, log_cap)
    out = np.empty(channel.shape, dtype=np.float32)
    _normalize_into(channel, flatfield, out, clip_percentile, log_cap)
    return out


def normalize_field(
    field: np.ndarray, flatfields: np.ndarray, *, clip_percentile: float = 99.0, log_cap: float = 5.0
) -> np.ndarray:
    """Normalise every channel of a field (see :func:`normalize_channel`).

    Parameters
    ----------
    field : (C, H, W) or (C, Z, H, W) ndarray of bool, unsigned int or float
        Raw channels of one field.
    flatfields : ndarray of float, same shape as ``field``
        One flat-field per channel, strictly positive.
    clip_percentile, log_cap : float, optional
        As :func:`normalize_channel`, applied to each channel independently.

    Returns
    -------
    out : ndarray of float32, same shape as ``field``
        Every channel scaled to [0, 1].

    Raises
    ------
    InvalidInput
        As :func:`normalize_channel`, naming the shapes of ``field`` and ``flatfields``.

    Examples
    --------
    >>> field = np.random.default_rng(0).integers(100, 5000, (3, 32, 32)).astype(np.uint16)
    >>> out = normalize_field(field, np.full((3, 32, 32), 0.002, np.float32))
    >>> out.shape, float(out.min()), float(out.max())
    ((3, 32, 32), 0.0, 1.0)
    """
    field, flatfields = np.asarray(field), np.asarray(flatfields)
    _check_pair(field, flatfields, "field", "flatfields", channel_axis=True)
    _check_options(clip_percentile, log_cap)
    out = np.empty(field.shape, dtype=np.float32)
    for c in range(field.shape[0]):
        _normalize_into(field[c], flatfields[c], out[c], clip_percentile, log_cap)
    return out


def _check_pair(image: np.ndarray, flat: np.ndarray, name: str, flat_name: str, *, channel_axis: bool) -> None:
    """Validate an image and its flat-field(s): real dtypes, 2-D or 3-D (after a channel axis), same shape."""
    lead = "C, " if channel_axis else ""
    if image.ndim - channel_axis not in (2, 3) or image.size == 0:
        raise InvalidInput(f"{name} must be a non-empty ({lead}H, W) or ({lead}Z, H, W) array, got shape {image.shape}")
    check_real_dtype(image, name=name)
    check_real_dtype(flat, name=flat_name)
    if image.shape != flat.shape:
        raise InvalidInput(f"{flat_name} shape {flat.shape} does not match {name} shape {image.shape}")


def _check_options(clip_percentile: float, log_cap: float) -> None:
    if not 0.0 <= clip_percentile <= 100.0:
        raise InvalidInput(f"clip_percentile must be in [0, 100], got {clip_percentile}")
    if not log_cap > 0.0:
        raise InvalidInput(f"log_cap must be > 0, got {log_cap}")


def _normalize_into(channel: np.ndarray, flatfield: np.ndarray, out: np.ndarray, clip_percentile: float,
                    log_cap: float) -> None:
    """Kernel of :func:`normalize_channel`: write the normalised ``channel`` into ``out`` (float32)."""
    flat = to_float01(flatfield)
    if not flat.min() > 0.0:  # also catches NaN
        raise InvalidInput("flat-field must be strictly positive (and not NaN) everywhere")
    values = to_float01(channel)
    cutoff = np.float32(_percentile01(channel, values, clip_percentile))
    np.minimum(values, cutoff, out=out)
    np.divide(out, flat, out=out)
    np.maximum(out, np.float32(1.0), out=out)
    np.log(out, out=out)
    np.minimum(out, np.float32(log_cap), out=out)
    low, high = out.min(), out.max()
    if np.isnan(low) or np.isnan(high):
        raise InvalidInput("channel contains NaN values")
    if high > low:
        np.subtract(out, low, out=out)
        np.divide(out, high - low, out=out)
    else:
        out.fill(0.0)


def _percentile01(channel: np.ndarray, values: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ``values = to_float01(channel)`` (linear interpolation, as numpy).

    For 8- and 16-bit unsigned images it is read exactly from a histogram of the integer values
    (one :func:`numpy.bincount` instead of a partial sort), then mapped by the dtype's maximum.
    """
    if channel.dtype.kind == "u" and channel.dtype.itemsize <= 2:
        counts = np.bincount(channel.ravel(), minlength=1)
        cumulative = np.cumsum(counts)
        position = (channel.size - 1) * (q / 100.0)
        below = int(np.floor(position))
        above = min(below + 1, channel.size - 1)
        # The k-th smallest value (0-based) is the first value whose cumulative count exceeds k.
        v_below, v_above = np.searchsorted(cumulative, [below, above], side="right")
        value = v_below + (position - below) * (float(v_above) - float(v_below))
        return value / np.iinfo(channel.dtype).max
    return float(np.percentile(values, q))
