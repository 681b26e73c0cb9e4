"""Single-cell crops (ROIs) around nucleus centres, with the seed's edge rules.

The ROI has ``roi_size`` R voxels in every spatial dimension. For a dimension of length L:

- the window size is ``min(R, L)``: a dimension shorter than R is taken whole ("shrink"), wherever
  the centre is (the usual case for the depth of a 2-D field, L = 1);
- the maximum shift is ``m = max(R - L / 4, 0)``, and a centre ``p`` is dropped if
  ``p + m < R / 2`` or ``p - m > (L - 1) - R / 2``. So when L >= 4R a crop that does not fit is
  dropped; when R <= L < 4R a centre near the edge is kept and its window is shifted inward;
- the window starts at ``clip(round(p - R / 2), 0, L - size)`` (round half up), so it always lies
  inside the image and has exactly ``min(R, L)`` voxels.

A centre is kept only if it is kept in every dimension. (The seed computed the same windows with
float truncation and aborted with "ROI dimension invalid" for some R < L < 4R; these windows are
always valid.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import InvalidInput
from .dtypes import is_integer

__all__ = ["RoiWindows", "extract_rois", "roi_windows"]


@dataclass(frozen=True, eq=False)
class RoiWindows:
    """Crop windows of the kept centres.

    Attributes
    ----------
    starts : (M, D) ndarray of int64
        First voxel of each window, per spatial dimension, in the same axis order as the centres.
    size : tuple of int
        Window size per dimension, ``min(roi_size, L)``.
    index : (M,) ndarray of int64
        Row of ``centres`` each window belongs to (increasing).
    """

    starts: np.ndarray
    size: tuple[int, ...]
    index: np.ndarray


def roi_windows(centres: np.ndarray, shape: Sequence[int], roi_size: int) -> RoiWindows:
    """Windows of ``roi_size`` voxels around centres, dropping or shifting those near the edges.

    Parameters
    ----------
    centres : (N, D) array_like of float
        Centre coordinates in pixels (e.g. nucleus centroids), axis order matching ``shape``.
    shape : sequence of D int
        Spatial shape of the image, e.g. (H, W) or (Z, H, W).
    roi_size : int
        ROI size R in every dimension, pixels, >= 1.

    Returns
    -------
    windows : RoiWindows
        One window per kept centre (see the module docstring for the rules).

    Raises
    ------
    InvalidInput
        If ``centres`` is not (N, D) with finite values, ``shape`` has non-positive entries, or
        ``roi_size`` is not a positive integer.

    Examples
    --------
    >>> w = roi_windows([[0.0, 10.0], [0.0, 100.0]], (1, 256), 64)
    >>> w.starts, w.size, w.index
    (array([[ 0, 68]]), (1, 64), array([1]))
    """
    dims = tuple(shape)
    if not dims or any(not is_integer(n) or n < 1 for n in dims):
        raise InvalidInput(f"shape must be a non-empty sequence of positive integers, got {shape!r}")
    if not is_integer(roi_size) or roi_size < 1:
        raise InvalidInput(f"roi_size must be a positive integer, got {roi_size!r}")
    points = np.asarray(centres, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != len(dims):
        raise InvalidInput(f"centres must have shape (N, {len(dims)}) for image shape {dims}, got {points.shape}")
    if not np.isfinite(points).all():
        raise InvalidInput("centres contain NaN or infinite values")
    length = np.asarray(dims, dtype=np.float64)
    half = roi_size / 2.0
    size = np.minimum(int(roi_size), np.asarray(dims, dtype=np.int64))
    shift = np.maximum(roi_size - length / 4.0, 0.0)
    dropped = ((points + shift < half) | (points - shift > (length - 1.0) - half)).any(axis=1)
    index = np.flatnonzero(~dropped).astype(np.int64)
    starts = np.clip(np.floor(points[index] - half + 0.5), 0, length - size).astype(np.int64)
    return RoiWindows(starts, tuple(int(s) for s in size), index)


def extract_rois(image: np.ndarray, windows: RoiWindows) -> np.ndarray:
    """Cut the windows out of every channel of an image.

    Parameters
    ----------
    image : (C, *shape) ndarray
        Channels first, then the D spatial dimensions the windows were computed for.
    windows : RoiWindows
        From :func:`roi_windows` on ``image.shape[1:]``.

    Returns
    -------
    crops : (M, C, *windows.size) ndarray
        Same dtype as ``image``; crop ``i`` is ``image[:, starts[i, 0]:starts[i, 0] + size[0], ...]``.

    Raises
    ------
    InvalidInput
        If the image does not have 1 + D dimensions or a window does not lie inside it.

    Examples
    --------
    >>> image = np.arange(2 * 6 * 8).reshape(2, 6, 8)
    >>> extract_rois(image, roi_windows([[3.0, 4.0]], (6, 8), 4)).shape
    (1, 2, 4, 4)
    """
    image = np.asarray(image)
    dims = len(windows.size)
    if image.ndim != dims + 1:
        raise InvalidInput(f"image must be (C, *shape) with {dims} spatial dimensions, got shape {image.shape}")
    spatial = np.asarray(image.shape[1:])
    starts = windows.starts.reshape(-1, dims)
    if (np.asarray(windows.size) > spatial).any() or (starts < 0).any() or (starts + windows.size > spatial).any():
        raise InvalidInput(f"ROI windows of size {windows.size} do not fit inside image shape {image.shape[1:]}")
    # views[c, i0, ..., k0, ...] = image[c, i0 + k0, ...]; channels moved after the window positions so
    # that indexing the positions gathers (M, C, *size) in one copy.
    views = sliding_window_view(image, windows.size, axis=tuple(range(1, dims + 1)))
    return np.moveaxis(views, 0, dims)[tuple(starts.T)]
