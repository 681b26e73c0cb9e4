"""Well-level profiles -> treatment-level profiles, the cytominergallery ``predict_moa`` way by default.

Steps, in order (the README of the BBBC021 data and the vignette):

1. feature selection on all (annotated, DMSO included) wells, raw features: near-zero variance,
   median replicate Pearson correlation >= 0.5, caret correlation filter at 0.95
   (:func:`~bioims.profiles.feature_select.select_features`);
2. per-plate normalisation to the plate's DMSO wells, ``(x - mean) / sd`` with ``ddof=1``
   (:func:`~bioims.profiles.normalize.normalize`);
3. optional ZCA sphering on the DMSO wells (:func:`~bioims.profiles.normalize.sphere`);
4. treatment profile = mean over the wells of a (compound, concentration)
   (:func:`~bioims.profiles.aggregate.aggregate`); DMSO dropped.

On the BBBC021 files, ``nsc(process_profiles(load_feature_table(...)), metric="pearson")`` gives
84/103 = 0.816 NSC and 70/92 = 0.761 NSCB (10 MOAs), the reference numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from ..contract.enums import Similarity, values
from ..errors import InvalidInput
from .aggregate import AggregateMethod, aggregate
from .feature_select import OPERATIONS, Operation, select_features
from .io import COMPOUND, TREATMENT, feature_columns, require_columns
from .normalize import NormalizeMethod, normalize, sphere

CONTROL = "DMSO"


@dataclass(frozen=True)
class ProfileProcessing:
    """Switches of :func:`process_profiles`; the defaults reproduce the reference pipeline.

    Attributes
    ----------
    feature_selection : tuple of {"variance", "replicate_correlation", "correlation"}
        Operations of :func:`~bioims.profiles.feature_select.select_features` (empty: keep all).
    normalization : {"standardize", "mad_robustize"} or None
        Per-group normalisation to the DMSO wells; None: raw features.
    normalize_by : str or None
        Group column of the normalisation (None: all wells together).
    sphering : bool
        ZCA-whiten on the DMSO wells after normalisation.
    aggregation : {"mean", "median"}
        Treatment profile from its wells.
    metric : {"pearson", "cosine", "euclidean"}
        Similarity the profiles are meant for (recorded with them; used by the evaluation).
    """

    feature_selection: tuple[Operation, ...] = OPERATIONS
    normalization: NormalizeMethod | None = "standardize"
    normalize_by: str | None = "Metadata_Plate"
    sphering: bool = False
    aggregation: AggregateMethod = "mean"
    metric: Literal["pearson", "cosine", "euclidean"] = "pearson"


def process_profiles(wells: pd.DataFrame, options: ProfileProcessing | None = None) -> pd.DataFrame:
    """Treatment-level profiles (DMSO dropped) from well-level ones, ready for
    :func:`bioims.evaluation.knn.nsc`.

    Parameters
    ----------
    wells : DataFrame
        One row per well (see :func:`~bioims.profiles.io.load_feature_table`): at least
        ``Metadata_Compound``, ``Metadata_Concentration`` and the ``normalize_by`` column, DMSO wells
        included; ``Metadata_MoA`` and ``Metadata_Batch`` are carried along.
    options : ProfileProcessing, optional
        Default: ``ProfileProcessing()``.

    Returns
    -------
    DataFrame
        One row per non-DMSO (compound, concentration), sorted: those two columns, the other metadata
        (joined with ``";"`` where it varies within a treatment, e.g. plates, wells, batches), the
        selected features.
    """
    options = options or ProfileProcessing()
    if options.metric not in values(Similarity):
        raise InvalidInput(f"metric must be pearson, cosine or euclidean, not {options.metric!r}")
    require_columns(wells, list(TREATMENT))
    if not feature_columns(wells):
        raise InvalidInput("the well profiles have no feature column")
    profiles = select_features(wells, operations=options.feature_selection) if options.feature_selection \
        else wells
    if options.normalization is not None:
        profiles = normalize(profiles, method=options.normalization, by=options.normalize_by,
                             control=(COMPOUND, CONTROL))
    if options.sphering:
        profiles = sphere(profiles, control=(COMPOUND, CONTROL))
    treatments = aggregate(profiles, TREATMENT, method=options.aggregation)
    return treatments[treatments[COMPOUND] != CONTROL].reset_index(drop=True)


def embedding_profiles(fields: pd.DataFrame, level: str, normalize: bool = True) -> pd.DataFrame:
    """A run's field embeddings (the embedding job's Parquet tables, concatenated) at ``level``:
    ``field`` (as stored), ``well`` (mean of its fields) or ``treatment`` (mean of its wells after, with
    ``normalize``, per-plate standardisation to the DMSO wells; DMSO dropped)."""
    if level == "field":
        return fields
    per_field = ["Metadata_Site", "Metadata_ImageId", "Metadata_Cells",
                 *(c for c in fields.columns if str(c).startswith("Image_"))]  # the field's own images
    wells = aggregate(fields.drop(columns=per_field, errors="ignore"), by=["Metadata_Plate", "Metadata_Well"])
    if level == "well":
        return wells
    options = ProfileProcessing(feature_selection=(), normalization="standardize" if normalize else None,
                                metric="cosine")
    return process_profiles(wells, options)
