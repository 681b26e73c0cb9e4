"""Spec sizes from the images themselves: which channel holds the nuclei, and how big the nuclei are.

A new dataset's spec needs a segmentation channel, a crop size and a minimum nucleus size; rather than
guess them, :func:`nucleus_radius` measures the nuclei of a few sample fields the way preprocessing will
find them (a flat-field of the samples, :func:`~bioims.imaging.normalize.normalize_channel`,
:func:`~bioims.imaging.segment.find_nuclei`) and :func:`sizes_for_radius` turns the median radius into the
demo's rule: crops of about six radii, nuclei of at least a quarter of the median area.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidInput
from .dtypes import to_float01
from .flatfield import flatfield
from .normalize import normalize_channel
from .segment import find_nuclei

__all__ = ["MIN_OBJECT_VOXELS", "nuclei_channel", "nucleus_radius", "sizes_for_radius"]

MIN_OBJECT_VOXELS = 16
"""Objects smaller than this are noise, not nuclei, while the nucleus size is being measured."""
_NUCLEI_NAMES = re.compile(r"dapi|hoechst|dna|nucle|h3334|draq|sytox|^hst|^dp$|^d$", re.IGNORECASE)


def nuclei_channel(channels: Sequence[str]) -> str:
    """The channel that most likely holds the nuclei stain, by name (DAPI, Hoechst, DNA, nuclei, DRAQ5,
    SYTOX, ...), else the first one.

    >>> nuclei_channel(["GFP", "Hoechst33342", "RFP"]), nuclei_channel(["w1", "w2"])
    ('Hoechst33342', 'w1')
    """
    if not channels:
        raise InvalidInput("no channels to choose the nuclei channel from")
    return next((c for c in channels if _NUCLEI_NAMES.search(c)), channels[0])


def sizes_for_radius(radius: float) -> tuple[int, int]:
    """``(roi_size, min_nucleus_voxels)`` for nuclei of median radius ``radius`` pixels: about six radii
    (a multiple of 8, at least 8), and a quarter of the median nucleus area (at least 1).

    >>> sizes_for_radius(8.0)
    (48, 50)
    """
    if not radius > 0:
        raise InvalidInput(f"nucleus radius must be positive, got {radius!r}")
    return max(8, int(8 * round(6 * radius / 8))), max(1, int(0.25 * math.pi * radius * radius))


def nucleus_radius(planes: Sequence[np.ndarray]) -> tuple[float, int]:
    """Median equivalent radius (pixels, ``sqrt(area / pi)``) of the nuclei found in sample fields' nuclei
    channel, and how many were found.

    Parameters
    ----------
    planes : sequence of (H, W) or (Z, H, W) ndarray
        The nuclei channel of each sample field, raw, all of one shape (a plate's).

    Raises
    ------
    InvalidInput
        No plane, planes of different shapes, or no nucleus in any of them.
    """
    if not planes:
        raise InvalidInput("no sample field to measure nuclei in")
    if len({np.shape(p) for p in planes}) != 1:
        raise InvalidInput("the sample fields differ in shape")
    flat = flatfield(np.mean([to_float01(np.asarray(p)) for p in planes], axis=0))
    sizes = np.concatenate([find_nuclei(normalize_channel(p, flat), min_size=MIN_OBJECT_VOXELS).sizes
                            for p in planes])
    if not len(sizes):
        raise InvalidInput(f"no nucleus found in the {len(planes)} sample fields")
    area = float(np.median(sizes))
    if np.ndim(planes[0]) == 3:  # a z-stack: the radius of the sphere of that volume
        return (3 * area / (4 * math.pi)) ** (1 / 3), len(sizes)
    return math.sqrt(area / math.pi), len(sizes)
