"""Flat-field (illumination) estimation per plate x channel, streamed one image at a time.

The seed's recipe: the mean of a plate's images of one channel (each converted to [0, 1] by
:func:`~bioims.imaging.dtypes.to_float01`), with values above the mean image's 30th percentile
clipped down to it (this removes the cells and keeps the background), smoothed by a Gaussian of
sigma 50 px. The mean is accumulated image by image (:class:`FlatFieldAccumulator`), so memory does
not grow with the number of images on a plate.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import InvalidInput
from .dtypes import to_float01

__all__ = ["FLATFIELD_FLOOR", "FlatFieldAccumulator", "flatfield"]

FLATFIELD_FLOOR = 1e-6
"""Smallest value of a flat-field (in [0, 1] intensity units): dividing by it is always safe."""


class FlatFieldAccumulator:
    """Streaming mean of same-shape images, in [0, 1] intensity units.

    Holds one float64 running sum the size of one image; :meth:`add` converts each image with
    :func:`~bioims.imaging.dtypes.to_float01` and adds it in place.

    Examples
    --------
    >>> acc = FlatFieldAccumulator()
    >>> acc.add(np.full((2, 3), 65535, np.uint16))
    >>> acc.add(np.zeros((2, 3), np.uint16))
    >>> acc.count, acc.mean()[0, 0]
    (2, np.float32(0.5))
    """

    def __init__(self) -> None:
        self._sum: np.ndarray | None = None
        self._count = 0

    @property
    def count(self) -> int:
        """Number of images added so far."""
        return self._count

    def add(self, image: np.ndarray) -> None:
        """Add one image to the running sum.

        Parameters
        ----------
        image : (H, W) or (Z, H, W) ndarray of bool, unsigned int or float
            One channel of one field. Integer images are mapped to [0, 1] by their dtype's maximum.

        Raises
        ------
        InvalidInput
            If ``image`` is not 2-D or 3-D, is empty, has a dtype :func:`to_float01` rejects, has
            a different shape from the first image added, or holds NaN or infinite values. A refused
            image leaves the sum unchanged, so a caller can skip it and go on.
        """
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.size == 0:
            raise InvalidInput(f"image must be a non-empty (H, W) or (Z, H, W) array, got shape {image.shape}")
        if self._sum is not None and image.shape != self._sum.shape:
            raise InvalidInput(
                f"image shape {image.shape} does not match the shape {self._sum.shape} of the images added before"
            )
        values = to_float01(image)
        if not np.isfinite(values).all():
            nan, inf = int(np.count_nonzero(np.isnan(values))), int(np.count_nonzero(np.isinf(values)))
            raise InvalidInput(f"non-finite pixel values ({nan} NaN, {inf} inf)")
        if self._sum is None:
            self._sum = np.zeros(image.shape, dtype=np.float64)
        np.add(self._sum, values, out=self._sum)
        self._count += 1

    def mean(self) -> np.ndarray:
        """The mean of the images added.

        Returns
        -------
        mean : (H, W) or (Z, H, W) ndarray of float32
            Per-pixel mean in [0, 1] intensity units (for unsigned integer images).

        Raises
        ------
        InvalidInput
            If no image was added.
        """
        if self._sum is None:
            raise InvalidInput("cannot compute a flat-field mean: no image was added")
        return (self._sum / self._count).astype(np.float32)


def flatfield(mean: np.ndarray, *, cutoff_percentile: float = 30.0, sigma: float = 50.0) -> np.ndarray:
    """Flat-field image from the mean of a plate's images of one channel.

    Values above the ``cutoff_percentile``-th percentile of ``mean`` (over all its pixels) are set to
    that percentile, then every 2-D plane is smoothed by a Gaussian (``mode="nearest"`` at the
    borders, truncated at 4 sigma, as ``skimage.filters.gaussian`` that the seed used).

    Parameters
    ----------
    mean : (H, W) or (Z, H, W) ndarray of float
        Mean image, e.g. :meth:`FlatFieldAccumulator.mean`, in [0, 1] intensity units.
    cutoff_percentile : float, optional
        Percentile in [0, 100] above which values are clipped (linear interpolation between order
        statistics, as :func:`numpy.percentile`).
    sigma : float, optional
        Standard deviation of the Gaussian, pixels, >= 0 (0: no smoothing).

    Returns
    -------
    flat : ndarray of float32, same shape as ``mean``
        The flat-field, floored at :data:`FLATFIELD_FLOOR` so that images can be divided by it.

    Raises
    ------
    InvalidInput
        If ``mean`` is not a non-empty, finite 2-D or 3-D real array, or an option is out of range.

    Examples
    --------
    >>> flat = flatfield(np.full((64, 80), 0.01, np.float32))
    >>> flat.shape, bool(np.allclose(flat, 0.01))
    ((64, 80), True)
    """
    mean = np.asarray(mean)
    if mean.ndim not in (2, 3) or mean.size == 0:
        raise InvalidInput(f"mean must be a non-empty (H, W) or (Z, H, W) array, got shape {mean.shape}")
    if not 0.0 <= cutoff_percentile <= 100.0:
        raise InvalidInput(f"cutoff_percentile must be in [0, 100], got {cutoff_percentile}")
    if not sigma >= 0.0:
        raise InvalidInput(f"sigma must be >= 0 pixels, got {sigma}")
    values = to_float01(mean)
    if not np.isfinite(values).all():
        raise InvalidInput("mean image contains NaN or infinite values")
    cutoff = np.percentile(values, cutoff_percentile)
    clipped = np.minimum(values, values.dtype.type(cutoff))
    sigmas = (0.0, sigma, sigma) if clipped.ndim == 3 else sigma
    smooth = gaussian_filter(clipped, sigmas, mode="nearest", truncate=4.0)
    return np.maximum(smooth, np.float32(FLATFIELD_FLOOR), dtype=np.float32)
