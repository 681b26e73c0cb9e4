"""The naive profile: per-channel intensity mean and standard deviation of each field.

It sees intensity and coarse texture but no morphology, which makes it the floor every real embedding
must beat (and a probe of how much plate and batch intensity effects alone can explain).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..datasets.records import PlateRecord
from ..imaging.io import read_field
from ..store.objects import ObjectStore


def intensity_features(field: np.ndarray, channels: Sequence[str]) -> dict[str, float]:
    """``Intensity_Mean_<channel>`` and ``Intensity_Std_<channel>`` of a field (C, H, W) (or
    (C, Z, H, W)), in the image's own units."""
    flat = np.asarray(field).reshape(len(channels), -1).astype(np.float64)
    features = {f"Intensity_Mean_{ch}": float(v) for ch, v in zip(channels, flat.mean(axis=1))}
    features |= {f"Intensity_Std_{ch}": float(v) for ch, v in zip(channels, flat.std(axis=1))}
    return features


def field_profiles(plates: Sequence[PlateRecord], objects: ObjectStore) -> pd.DataFrame:
    """One row per field: ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``, ``Metadata_Batch``,
    ``Metadata_Compound``, ``Metadata_Concentration``, ``Metadata_MoA`` + the intensity features."""
    rows = []
    for plate in plates:
        for f in plate.fields:
            image = read_field([f.channel_uris[c] for c in plate.channels], objects)
            rows.append({"Metadata_Plate": plate.source_id, "Metadata_Well": f.well, "Metadata_Site": f.site,
                         "Metadata_Batch": f.metadata.get("batch", plate.batch),
                         "Metadata_Compound": f.metadata.get("compound"),
                         "Metadata_Concentration": f.metadata.get("concentration"),
                         "Metadata_MoA": f.metadata.get("moa")} | intensity_features(image, plate.channels))
    return pd.DataFrame(rows)
