"""Feature selection: drop near-constant, irreproducible and redundant features.

The three operations are those of the cytominergallery ``predict_moa`` reference (cytominer's
``variance_threshold``, ``replicate_correlation`` and ``correlation_threshold``, themselves caret's
``nearZeroVar`` and ``findCorrelation``), with thresholds in pycytominer's units.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .io import TREATMENT, feature_columns, require_columns

Operation = Literal["variance", "replicate_correlation", "correlation"]
OPERATIONS: tuple[Operation, ...] = ("variance", "replicate_correlation", "correlation")


def select_features(profiles: pd.DataFrame, *, operations: Sequence[Operation] = OPERATIONS,
                    freq_cut: float = 0.05, unique_cut: float = 0.01, replicate_threshold: float = 0.5,
                    replicate_by: Sequence[str] = TREATMENT, replicates: int = 3,
                    correlation_threshold: float = 0.95) -> pd.DataFrame:
    """Drop feature columns by the given operations, applied in order, each to the surviving features.

    Every operation is fitted on all rows of ``profiles`` (in the reference: every annotated well,
    DMSO included, before normalisation).

    Parameters
    ----------
    profiles : DataFrame
        ``Metadata_*`` columns + numeric features.
    operations : sequence of {"variance", "replicate_correlation", "correlation"}
        ``variance``: caret's near-zero variance. A feature is dropped if it has at most one distinct
        value, or if both the ratio of the second most to the most common value's count is
        ``< freq_cut`` *and* the fraction of distinct values (over all rows) is ``<= unique_cut`` (caret
        ``freqCut = 1 / freq_cut``, ``uniqueCut = 100 * unique_cut``; pycytominer drops on either
        condition alone). NaN values are ignored.

        ``replicate_correlation``: cytominer's ``replicate_correlation``. Only groups of
        ``replicate_by`` with exactly ``replicates`` rows enter (in BBBC021 the 3-well treatments, not
        DMSO); the i-th row of each group in table order is its replicate i. Per feature, the Pearson
        correlation across groups between replicate i and replicate j is taken for every pair
        i < j, and the feature is kept if the median of these correlations is ``>= replicate_threshold``.
        An undefined correlation (a feature constant across groups) drops the feature.

        ``correlation``: caret's ``findCorrelation(exact = FALSE)``, the variant the reference runs
        (caret switches to it for 100 features or more). With ``R`` the absolute Pearson correlation
        matrix of the features (pairwise-complete) and ``a`` the dense rank of each feature's mean
        absolute correlation (diagonal included), every pair with ``R > correlation_threshold`` flags
        the member with the larger ``a`` (the first of the pair on ties); all flagged features are
        dropped at once (one pass, not a sequential greedy search).
    freq_cut, unique_cut : float
        Near-zero-variance thresholds, in [0, 1].
    replicate_threshold : float
        Minimum median replicate correlation, in [-1, 1].
    replicate_by : sequence of str
        Columns defining a group of replicates (a treatment).
    replicates : int
        Number of replicates per group (>= 2); groups of another size are ignored.
    correlation_threshold : float
        Absolute Pearson correlation above which a pair is redundant, in [0, 1].

    Returns
    -------
    DataFrame
        ``profiles`` without the dropped feature columns (metadata and rows untouched).

    Raises
    ------
    InvalidInput
        Unknown operation, threshold out of range, missing ``replicate_by`` column, or fewer than 3
        complete replicate groups.
    """
    unknown = [op for op in operations if op not in OPERATIONS]
    if isinstance(operations, str) or unknown:
        raise InvalidInput(f"operations must be a sequence of {', '.join(OPERATIONS)}; got {operations!r}")
    for name, value, low in (("freq_cut", freq_cut, 0.0), ("unique_cut", unique_cut, 0.0),
                             ("replicate_threshold", replicate_threshold, -1.0),
                             ("correlation_threshold", correlation_threshold, 0.0)):
        if not low <= value <= 1.0:
            raise InvalidInput(f"{name} must be in [{low:g}, 1], got {value!r}")
    if not (isinstance(replicates, int) and replicates >= 2):
        raise InvalidInput(f"replicates must be an integer >= 2, got {replicates!r}")
    features = feature_columns(profiles)
    for op in operations:
        values = profiles[features]
        if op == "variance":
            keep = ~_near_zero_variance(values, freq_cut, unique_cut)
        elif op == "replicate_correlation":
            keep = _replicate_correlation(profiles, features, list(replicate_by), replicates) >= replicate_threshold
        else:
            keep = ~_correlated(values, correlation_threshold)
        features = [f for f, k in zip(features, keep) if k]
    dropped = set(feature_columns(profiles)).difference(features)
    return profiles[[c for c in profiles.columns if c not in dropped]]


def _near_zero_variance(values: pd.DataFrame, freq_cut: float, unique_cut: float) -> np.ndarray:
    """Boolean per column: caret's ``nzv`` (see :func:`select_features`)."""
    counts = [values[c].value_counts(dropna=True).to_numpy() for c in values.columns]
    distinct = np.array([len(c) for c in counts])
    second_to_first = np.array([c[1] / c[0] if len(c) > 1 else 0.0 for c in counts])
    rare = (second_to_first < freq_cut) & (distinct / max(len(values), 1) <= unique_cut)
    return (distinct <= 1) | rare


def _replicate_correlation(profiles: pd.DataFrame, features: list[str], by: list[str],
                           replicates: int) -> np.ndarray:
    """Median over replicate pairs of the across-group Pearson correlation, per feature."""
    if not by:
        raise InvalidInput("replicate_by needs at least one column")
    require_columns(profiles, by)
    size = profiles.groupby(by, dropna=True)[by[0]].transform("size")
    rows = profiles[size == replicates]
    replicate = rows.groupby(by).cumcount().to_numpy()
    ordered = rows.assign(_replicate=replicate).sort_values([*by, "_replicate"], kind="stable")
    stacked = ordered[features].to_numpy(dtype=np.float64).reshape(-1, replicates, len(features))
    if stacked.shape[0] < 3:
        raise InvalidInput(f"replicate correlation needs >= 3 groups of {replicates} rows by {by}, "
                           f"got {stacked.shape[0]}")
    pairs = np.stack([_columnwise_pearson(stacked[:, i], stacked[:, j])
                      for i, j in combinations(range(replicates), 2)])
    return np.median(pairs, axis=0)


def _columnwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``a`` with the same column of ``b`` (rows where either is
    NaN are skipped); NaN where undefined."""
    both = np.isfinite(a) & np.isfinite(b)
    n = both.sum(axis=0)
    a, b = np.where(both, a, 0.0), np.where(both, b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        da = np.where(both, a - a.sum(axis=0) / n, 0.0)
        db = np.where(both, b - b.sum(axis=0) / n, 0.0)
        return (da * db).sum(axis=0) / np.sqrt((da * da).sum(axis=0) * (db * db).sum(axis=0))


def _correlated(values: pd.DataFrame, threshold: float) -> np.ndarray:
    """Boolean per column: flagged by caret's ``findCorrelation_fast`` (see :func:`select_features`)."""
    corr = np.abs(values.corr(method="pearson").to_numpy())
    with np.errstate(invalid="ignore"):
        mean_abs = np.nanmean(corr, axis=0)
    rank = np.unique(mean_abs, return_inverse=True)[1]
    rows, cols = np.triu_indices(len(corr), k=1)
    above = corr[rows, cols] > threshold
    rows, cols = rows[above], cols[above]
    flagged = np.zeros(len(corr), dtype=bool)
    flagged[np.where(rank[cols] > rank[rows], cols, rows)] = True
    return flagged
