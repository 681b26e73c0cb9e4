"""Preprocess one field: normalise every channel, segment nuclei, crop one ROI per nucleus.

Coordinates are always 3-D (z, y, x), as the seed's ROI JSON ``{"z", "y", "x"}``: a 2-D field
(C, H, W) is treated as a depth-1 stack (C, 1, H, W), so its windows start at z = 0 with depth 1.
Its crops drop that singleton depth: (N, C, h, w) for a 2-D field, (N, C, d, h, w) for a 3-D one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInput
from .dtypes import is_integer
from .normalize import normalize_field
from .roi import extract_rois, roi_windows
from .segment import find_nuclei

__all__ = ["CROP_SCALE", "FieldCrops", "preprocess_field"]

CROP_SCALE = 65535
"""Crops store normalised [0, 1] intensities as ``round(value * CROP_SCALE)`` in uint16 (the seed's scheme)."""


@dataclass(frozen=True, eq=False)
class FieldCrops:
    """The single-cell crops of one field.

    Attributes
    ----------
    crops : (N, C, h, w) or (N, C, d, h, w) ndarray of uint16
        Normalised intensities times :data:`CROP_SCALE`, rounded; 4-D for a 2-D field, 5-D for a
        3-D one. ``(h, w)`` = ``size[1:]``, ``d`` = ``size[0]``.
    starts : (N, 3) ndarray of int64
        First voxel (z, y, x) of each crop in the field; z = 0 for a 2-D field.
    size : tuple of 3 int
        Crop size (z, y, x): ``min(roi_size, L)`` per dimension; depth 1 for a 2-D field.
    centroids : (N, 3) ndarray of float64
        Centroid (z, y, x), pixels, of the nucleus each crop is centred on.
    nucleus_sizes : (N,) ndarray of int64
        Voxels of each of those nuclei.
    """

    crops: np.ndarray
    starts: np.ndarray
    size: tuple[int, int, int]
    centroids: np.ndarray
    nucleus_sizes: np.ndarray


def preprocess_field(
    field: np.ndarray,
    flatfields: np.ndarray,
    *,
    segmentation_channel: int,
    roi_size: int,
    min_nucleus_voxels: int,
    clip_percentile: float = 99.0,
    log_cap: float = 5.0,
    declump: bool = False,
) -> FieldCrops:
    """Normalise a field, find its nuclei and crop one ROI around each.

    Steps: :func:`~bioims.imaging.normalize.normalize_field` (percentile cutoff, flat-field, log,
    [0, 1]); :func:`~bioims.imaging.segment.find_nuclei` on ``segmentation_channel`` (in 3-D);
    :func:`~bioims.imaging.roi.roi_windows` with the seed's edge rules;
    :func:`~bioims.imaging.roi.extract_rois` from every normalised channel.

    Parameters
    ----------
    field : (C, H, W) or (C, Z, H, W) ndarray of bool, unsigned int or float
        Raw channels of one field.
    flatfields : ndarray of float, same shape as ``field``
        The plate's flat-field of each channel, strictly positive.
    segmentation_channel : int
        Index of the nuclei channel in ``field``.
    roi_size : int
        Crop size in pixels in every dimension (dimensions shorter than it are taken whole).
    min_nucleus_voxels : int
        Smaller segmented objects are not nuclei, >= 1.
    clip_percentile, log_cap : float, optional
        Normalisation options (:func:`~bioims.imaging.normalize.normalize_channel`).
    declump : bool, optional
        Split touching nuclei (:func:`~bioims.imaging.segment.find_nuclei`); off by default, as in
        the seed.

    Returns
    -------
    crops : FieldCrops
        N >= 0 crops; a field without nuclei gives N = 0 arrays with the right trailing shapes.

    Raises
    ------
    InvalidInput
        If ``field`` is not (C, H, W) or (C, Z, H, W), ``flatfields`` has another shape (naming
        both), ``segmentation_channel`` is out of range, or an option is out of range.

    Examples
    --------
    >>> field = np.full((3, 256, 256), 200, np.uint16)
    >>> field[:, 90:120, 60:90] = 4000
    >>> out = preprocess_field(field, np.full(field.shape, 0.003, np.float32), segmentation_channel=0,
    ...                        roi_size=128, min_nucleus_voxels=50)
    >>> out.crops.shape, out.starts.tolist(), out.size
    ((1, 3, 128, 128), [[0, 41, 11]], (1, 128, 128))
    """
    field, flatfields = np.asarray(field), np.asarray(flatfields)
    if field.ndim not in (3, 4) or field.size == 0:
        raise InvalidInput(f"field must be a non-empty (C, H, W) or (C, Z, H, W) array, got shape {field.shape}")
    if flatfields.shape != field.shape:
        raise InvalidInput(f"flatfields shape {flatfields.shape} does not match field shape {field.shape}")
    channels = field.shape[0]
    if not is_integer(segmentation_channel) or not 0 <= segmentation_channel < channels:
        raise InvalidInput(f"segmentation_channel must be an integer in [0, {channels}), got {segmentation_channel!r}")
    if not is_integer(min_nucleus_voxels) or min_nucleus_voxels < 1:
        raise InvalidInput(f"min_nucleus_voxels must be an integer >= 1, got {min_nucleus_voxels!r}")
    normalized = normalize_field(field, flatfields, clip_percentile=clip_percentile, log_cap=log_cap)
    volume = normalized.reshape(channels, -1, *field.shape[-2:])  # (C, Z, H, W), Z = 1 for a 2-D field
    nuclei = find_nuclei(volume[segmentation_channel], min_size=min_nucleus_voxels, declump=declump)
    windows = roi_windows(nuclei.centroids, volume.shape[1:], roi_size)
    crops = extract_rois(volume, windows)
    np.multiply(crops, np.float32(CROP_SCALE), out=crops)
    np.rint(crops, out=crops)
    crops16 = crops.astype(np.uint16)
    if field.ndim == 3:
        crops16 = crops16.reshape(crops16.shape[:2] + crops16.shape[3:])
    size = (windows.size[0], windows.size[1], windows.size[2])
    return FieldCrops(crops16, windows.starts, size, nuclei.centroids[windows.index], nuclei.sizes[windows.index])


