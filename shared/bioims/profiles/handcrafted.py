"""The handcrafted baseline embedding: classic CellProfiler-style features of single-cell crops.

Every learned embedding must beat these. :func:`cell_features` measures each crop written by
preprocessing (:func:`bioims.imaging.preprocess.preprocess_field`: a nucleus centred in every crop,
intensities normalised to [0, 1]); :func:`handcrafted_field_profiles` averages them per field.

Everything is vectorised over the batch of crops; the only Python loops run over channels and
compartments. Per crop:

Masks
    *Nucleus*: DNA-channel pixels above the crop's own Otsu threshold (64-bin histogram over the
    crop's range, computed for all crops at once), holes filled; of its connected components
    (connectivity 1, never across crops) the one nearest to the crop centre, if it comes within
    ``min(H, W) / 4`` pixels of it (it normally contains the centre, as crops are centred on nuclei). A crop
    with a constant DNA channel, or no component near the centre, has no nucleus: its nucleus,
    cytoplasm and cell features are NaN and only the whole-crop intensities are measured.
    *Cell*: pixels above the Otsu threshold of the sum of the other channels (tubulin +
    actin), plus the nucleus; restricted to the pixels whose nearest DNA-foreground pixel belongs to
    the centre nucleus (chessboard distance: a Voronoi split between touching cells, in the spirit of
    CellProfiler's propagation from nuclei); then the connected component containing the nucleus.
    *Cytoplasm*: cell minus nucleus.

Features (``C`` channels named by ``channels``; ``<ch>`` is a channel name)
    ``Nuclei_AreaShape_{Area, Perimeter, FormFactor, Eccentricity, Elongation, Solidity}`` and
    ``Cells_AreaShape_{Area, Perimeter, Eccentricity, Elongation, Solidity}``: area in pixels;
    perimeter = pixels of the mask with a 4-neighbour outside it; form factor = 4 pi area /
    perimeter^2; from the second moments (eigenvalues l1 >= l2 of the pixel-coordinate covariance):
    eccentricity sqrt(1 - l2 / l1), elongation sqrt(l1 / l2) (major / minor axis), solidity proxy =
    area / area of the ellipse with the same second moments (4 pi sqrt(l1 l2); 1 for a filled
    ellipse, less for ragged or hollow shapes). ``Cells_AreaShape_NucleusAreaRatio``: nucleus area /
    cell area.

    ``{Nuclei, Cytoplasm, Crop}_Intensity_{MeanIntensity, StdIntensity, IntegratedIntensity,
    MaxIntensity, LowerQuartile10, MedianIntensity, UpperQuartile90}_<ch>``: intensity in [0, 1]
    units within each compartment (``Crop``: the whole crop); quantiles interpolate linearly between
    order statistics, as :func:`numpy.percentile`; NaN for an empty compartment (integrated: 0).

    ``Cells_Texture_{Gradient, LocalVariance, Contrast}_<ch>``, within the cell: mean gradient
    magnitude (central differences, per pixel); mean 3x3 local variance; Haralick contrast at
    distance 1, i.e. the mean squared difference of the grey levels (intensities quantised to
    :data:`TEXTURE_LEVELS` levels over [0, 1]) of horizontally and vertically adjacent pixel pairs
    inside the cell.

With the three BBBC021 channels that is 12 shape, 63 intensity and 9 texture features: 84.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ..errors import InvalidInput
from ..imaging.dtypes import to_float01

__all__ = ["OTSU_BINS", "TEXTURE_LEVELS", "cell_features", "handcrafted_field_profiles"]

log = logging.getLogger(__name__)

OTSU_BINS = 64
"""Histogram bins of the per-crop Otsu thresholds."""
TEXTURE_LEVELS = 8
"""Grey levels of the Haralick contrast (intensities in [0, 1] quantised to ``0 .. TEXTURE_LEVELS - 1``)."""
_QUANTILES = (("LowerQuartile10", 0.1), ("MedianIntensity", 0.5), ("UpperQuartile90", 0.9))
_NUCLEUS_CHANNEL = 0
# 2-D connectivity-1 cross inside a 3-D structure: connected components never join two crops.
_CROSS = np.zeros((3, 3, 3), dtype=bool)
_CROSS[1] = ndi.generate_binary_structure(2, 1)
_SQUARE = np.zeros((3, 3, 3), dtype=bool)
_SQUARE[1] = True


def cell_features(crops: np.ndarray, channels: Sequence[str]) -> pd.DataFrame:
    """Handcrafted features of single-cell crops (see the module docstring for masks and features).

    Parameters
    ----------
    crops : (N, C, H, W) ndarray of uint16 or float
        Crops centred on a nucleus, channel 0 the DNA stain; uint16 is read as normalised
        intensities times 65535 (:data:`~bioims.imaging.preprocess.CROP_SCALE`), floats as [0, 1]
        intensities. N may be 0.
    channels : sequence of str
        The C channel names, used in the feature names (``Nuclei_Intensity_MeanIntensity_DAPI``).

    Returns
    -------
    features : DataFrame
        One row per crop, in order; float64 feature columns (NaN where a mask is empty), no
        ``Metadata_`` column.

    Raises
    ------
    InvalidInput
        If ``crops`` is not 4-D with C == ``len(channels)`` >= 1 and H, W >= 3, or has an unsupported
        dtype, non-finite values, or channel names are not unique.

    Examples
    --------
    >>> crops = np.zeros((1, 3, 32, 32), np.uint16)
    >>> crops[0, 0, 12:20, 12:20] = 40000
    >>> crops[0, 1:, 8:24, 8:24] = 20000
    >>> f = cell_features(crops, ["DAPI", "Tubulin", "Actin"])
    >>> f[["Nuclei_AreaShape_Area", "Cells_AreaShape_Area"]].iloc[0].tolist()
    [64.0, 256.0]
    """
    crops = np.asarray(crops)
    channels = list(channels)
    if crops.ndim != 4 or crops.shape[1] != len(channels) or not channels or min(crops.shape[2:]) < 3:
        raise InvalidInput(f"crops must be (N, C, H, W) with C = {len(channels)} channel(s) and H, W >= 3, "
                           f"got shape {crops.shape}")
    if len(set(channels)) != len(channels):
        raise InvalidInput(f"channel names must be unique, got {channels}")
    images = to_float01(crops)
    if not np.isfinite(images).all():
        raise InvalidInput("crops contain NaN or infinite values")
    if len(images) == 0:  # the columns of one blank crop, no rows
        return cell_features(np.zeros((1, *images.shape[1:]), np.float32), channels).iloc[:0]
    nucleus, cell = _masks(images)
    cytoplasm = cell & ~nucleus
    has_nucleus = nucleus.any(axis=(1, 2))
    columns: dict[str, np.ndarray] = {}
    nuclear = _shape(nucleus)
    for name, values in nuclear.items():
        columns[f"Nuclei_AreaShape_{name}"] = values
    columns["Nuclei_AreaShape_FormFactor"] = _divide(4 * np.pi * nuclear["Area"], nuclear["Perimeter"] ** 2)
    for name, values in _shape(cell).items():
        columns[f"Cells_AreaShape_{name}"] = values
    columns["Cells_AreaShape_NucleusAreaRatio"] = _divide(nuclear["Area"], columns["Cells_AreaShape_Area"])
    whole = np.ones_like(nucleus[:1])  # broadcasts over crops
    for compartment, mask in (("Nuclei", nucleus), ("Cytoplasm", cytoplasm), ("Crop", whole)):
        for c, channel in enumerate(channels):
            for name, values in _intensity(images[:, c], mask).items():
                columns[f"{compartment}_Intensity_{name}_{channel}"] = values
    for c, channel in enumerate(channels):
        for name, values in _texture(images[:, c], cell).items():
            columns[f"Cells_Texture_{name}_{channel}"] = values
    frame = pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in columns.items()})
    cell_columns = [k for k in frame.columns if not k.startswith("Crop_")]
    frame.loc[~has_nucleus, cell_columns] = np.nan
    return frame


def handcrafted_field_profiles(fields: Iterable[tuple[Mapping[str, Any], np.ndarray]],
                               channels: Sequence[str]) -> pd.DataFrame:
    """Per-field mean of :func:`cell_features`.

    Parameters
    ----------
    fields : iterable of (metadata, crops)
        ``metadata``: the field's ``Metadata_*`` columns (e.g. ``Metadata_Plate``, ``Metadata_Well``,
        ``Metadata_Site``, ``Metadata_Compound``, ``Metadata_Concentration``, ``Metadata_MoA``,
        ``Metadata_Batch``), copied as they are; ``crops``: its (N, C, H, W) crops. Consumed lazily,
        one field at a time.
    channels : sequence of str
        The C channel names.

    Returns
    -------
    profiles : DataFrame
        One row per field with at least one crop: the metadata columns, ``Metadata_Cells`` (N) and
        the mean of every feature over the field's crops (NaN values skipped: a feature is NaN only if
        no crop of the field has it). Fields without crops carry no information and are dropped;
        their metadata dicts are listed in ``profiles.attrs["empty_fields"]`` and their count logged.

    Raises
    ------
    InvalidInput
        If a metadata key does not start with ``Metadata_`` or is ``Metadata_Cells``, or crops are
        invalid (:func:`cell_features`).
    """
    rows: list[dict[str, Any]] = []
    empty: list[dict[str, Any]] = []
    for metadata, crops in fields:
        bad = [k for k in metadata if not str(k).startswith("Metadata_") or k == "Metadata_Cells"]
        if bad:
            raise InvalidInput(f"metadata keys must be Metadata_* columns other than Metadata_Cells, got {bad}")
        features = cell_features(crops, channels)
        if len(features) == 0:
            empty.append(dict(metadata))
            continue
        rows.append(dict(metadata) | {"Metadata_Cells": len(features)} | features.mean(axis=0).to_dict())
    if empty:
        log.info("handcrafted profiles: dropped %d field(s) without cells", len(empty))
    profiles = pd.DataFrame(rows)
    profiles.attrs["empty_fields"] = empty
    return profiles


# ------------------------------------------------------------------------------------------------ masks
def _masks(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nucleus and cell masks, each (N, H, W) bool, of crops (N, C, H, W) in [0, 1]."""
    n, c, h, w = images.shape
    dna = images[:, _NUCLEUS_CHANNEL]
    foreground = _above_otsu(dna)
    foreground = ndi.binary_fill_holes(foreground, structure=_CROSS)
    labels, count = ndi.label(foreground, structure=_CROSS)
    nucleus = np.zeros((n, h, w), dtype=bool)
    if count == 0:
        return nucleus, nucleus.copy()
    chosen = _central_labels(labels, max_distance=min(h, w) / 4)
    nucleus = (labels == chosen[:, None, None]) & (chosen[:, None, None] > 0)
    if c == 1:
        return nucleus, nucleus.copy()
    others = [i for i in range(c) if i != _NUCLEUS_CHANNEL]
    cell = _above_otsu(images[:, others].sum(axis=1)) | nucleus
    # Voronoi split: keep pixels whose nearest DNA-foreground pixel (chessboard distance, within the crop:
    # the chamfer structure has no extent along the crop axis) lies in the centre nucleus.
    nearest = ndi.distance_transform_cdt(~foreground, metric=_SQUARE, return_distances=False, return_indices=True)
    cell &= nucleus[tuple(nearest)]
    cell_labels, _ = ndi.label(cell, structure=_CROSS)
    # The nucleus lies inside one component of the cell mask; take that component.
    owner = np.zeros(n, dtype=cell_labels.dtype)
    crop_index, rows, cols = np.nonzero(nucleus)
    owner[crop_index] = cell_labels[crop_index, rows, cols]
    cell = (cell_labels == owner[:, None, None]) & (owner[:, None, None] > 0)
    return nucleus, cell


def _above_otsu(images: np.ndarray) -> np.ndarray:
    """Otsu foreground of each (H, W) image of (N, H, W): the pixels in the bins above the split that
    maximises the between-class variance of the image's own :data:`OTSU_BINS`-bin histogram over its
    range (as :func:`bioims.imaging.segment.otsu_threshold`, but without the pixels of the split bin
    above its centre); constant images give an empty mask."""
    n = images.shape[0]
    flat = images.reshape(n, -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    span = high - low
    scale = np.where(span > 0, OTSU_BINS / np.where(span > 0, span, 1), 0)
    bins = np.minimum(((flat - low[:, None]) * scale[:, None]).astype(np.int64), OTSU_BINS - 1)
    counts = np.bincount((bins + OTSU_BINS * np.arange(n)[:, None]).ravel(), minlength=n * OTSU_BINS)
    counts = counts.reshape(n, OTSU_BINS).astype(np.float64)
    centres = np.arange(OTSU_BINS) + 0.5  # in bin units: the split does not depend on the scale
    weight_low = np.cumsum(counts, axis=1)
    weight_high = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    moment = counts * centres
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_low = np.cumsum(moment, axis=1) / weight_low
        mean_high = np.cumsum(moment[:, ::-1], axis=1)[:, ::-1] / weight_high
        between = weight_low[:, :-1] * weight_high[:, 1:] * (mean_low[:, :-1] - mean_high[:, 1:]) ** 2
    split = np.nan_to_num(between, nan=-1.0).argmax(axis=1)
    return ((bins > split[:, None]) & (span > 0)[:, None]).reshape(images.shape)


def _central_labels(labels: np.ndarray, *, max_distance: float) -> np.ndarray:
    """Per crop of ``labels`` (N, H, W), the label of the component nearest to the crop centre (0 if
    none is within ``max_distance`` pixels)."""
    n, h, w = labels.shape
    rows, cols = np.ogrid[:h, :w]
    distance = np.hypot(rows - (h - 1) / 2, cols - (w - 1) / 2).ravel()
    flat = labels.reshape(n, -1)
    nearest = np.where(flat > 0, distance, np.inf).argmin(axis=1)
    chosen = flat[np.arange(n), nearest]
    return np.where(distance[nearest] <= max_distance, chosen, 0)


# --------------------------------------------------------------------------------------------- features
def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _shape(mask: np.ndarray) -> dict[str, np.ndarray]:
    """Area, perimeter and second-moment shape of masks (N, H, W); NaN moments for empty masks."""
    _, h, w = mask.shape
    m = mask.astype(np.float64)
    area = m.sum(axis=(1, 2))
    interior = mask.copy()  # pixels whose four neighbours are all in the mask (outside counts as out)
    interior[:, 0, :] = interior[:, -1, :] = interior[:, :, 0] = interior[:, :, -1] = False
    interior[:, 1:-1, 1:-1] &= mask[:, :-2, 1:-1] & mask[:, 2:, 1:-1] & mask[:, 1:-1, :-2] & mask[:, 1:-1, 2:]
    perimeter = area - interior.sum(axis=(1, 2))
    y, x = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    my, mx = m.sum(axis=2), m.sum(axis=1)  # (N, H), (N, W) marginals
    with np.errstate(invalid="ignore", divide="ignore"):
        cy, cx = my @ y / area, mx @ x / area
        vy = my @ (y * y) / area - cy ** 2 + 1 / 12  # + 1/12: each pixel is a unit square, not a point
        vx = mx @ (x * x) / area - cx ** 2 + 1 / 12
        vxy = np.einsum("nhw,h,w->n", m, y, x) / area - cy * cx
        half_sum, root = (vy + vx) / 2, np.sqrt(((vy - vx) / 2) ** 2 + vxy ** 2)
        major, minor = half_sum + root, np.maximum(half_sum - root, 0.0)
        return {"Area": area, "Perimeter": perimeter,
                "Eccentricity": np.sqrt(1 - minor / major),
                "Elongation": np.sqrt(major / minor),
                "Solidity": area / (4 * np.pi * np.sqrt(major * minor))}


def _intensity(image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Intensity statistics of ``image`` (N, H, W) within ``mask`` (N, H, W) or (1, H, W)."""
    n = image.shape[0]
    flat = image.reshape(n, -1)
    inside = np.broadcast_to(mask, image.shape).reshape(n, -1)
    count = inside.sum(axis=1)
    masked = np.where(inside, flat, np.float32(0))
    total = masked.sum(axis=1, dtype=np.float64)
    mean = _divide(total, count)
    square = np.einsum("np,np->n", masked, masked, dtype=np.float64)
    variance = np.maximum(_divide(square, count) - mean ** 2, 0.0)
    ordered = np.sort(np.where(inside, flat, np.float32(np.inf)), axis=1)  # masked values first, ascending
    stats = {"MeanIntensity": mean, "StdIntensity": np.sqrt(variance), "IntegratedIntensity": total,
             "MaxIntensity": _order_statistic(ordered, count, 1.0)}
    for name, q in _QUANTILES:
        stats[name] = _order_statistic(ordered, count, q)
    return stats


def _order_statistic(ordered: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile (linear interpolation) of the first ``count[i]`` values of each sorted row."""
    position = q * np.maximum(count - 1, 0)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(count - 1, 0))
    low = np.take_along_axis(ordered, below[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, above[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        value = low + (high - low) * (position - below)
    return np.where(count > 0, value, np.nan)


def _texture(image: np.ndarray, cell: np.ndarray) -> dict[str, np.ndarray]:
    """Gradient, 3x3 local variance and Haralick contrast of ``image`` (N, H, W) within ``cell``."""
    image = image.astype(np.float32, copy=False)
    count = cell.sum(axis=(1, 2))
    gy, gx = np.gradient(image, axis=(1, 2))
    gradient = np.hypot(gy, gx)
    local_mean = ndi.uniform_filter(image, size=(1, 3, 3), mode="reflect")
    local_variance = np.maximum(ndi.uniform_filter(image * image, size=(1, 3, 3), mode="reflect")
                                - local_mean ** 2, 0.0)
    levels = np.minimum(np.clip(image, 0.0, 1.0) * TEXTURE_LEVELS, TEXTURE_LEVELS - 1).astype(np.int8)
    squared, pairs = np.zeros(image.shape[0]), np.zeros(image.shape[0])
    for a, b in ((np.s_[:, :, :-1], np.s_[:, :, 1:]), (np.s_[:, :-1, :], np.s_[:, 1:, :])):
        both = cell[a] & cell[b]
        difference = levels[a] - levels[b]
        squared += np.einsum("nhw,nhw->n", difference * both, difference, dtype=np.float64)
        pairs += both.sum(axis=(1, 2))
    return {"Gradient": _masked_mean(gradient, cell, count),
            "LocalVariance": _masked_mean(local_variance, cell, count),
            "Contrast": _divide(squared, pairs)}


def _masked_mean(values: np.ndarray, mask: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (N, H, W) over ``mask`` (N, H, W) with ``count`` (N,) pixels; NaN if empty."""
    return _divide(np.einsum("nhw,nhw->n", values, mask.astype(values.dtype), dtype=np.float64), count)
