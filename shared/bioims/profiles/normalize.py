"""Normalise features to control wells: per-group standardisation or robust scaling, and ZCA sphering."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .io import feature_columns, require_columns

NormalizeMethod = Literal["standardize", "mad_robustize"]
METHODS: tuple[NormalizeMethod, ...] = ("standardize", "mad_robustize")
#: Consistency constant of the MAD: 1.4826 * MAD estimates the standard deviation of a normal sample.
MAD_SCALE = 1.4826
DEFAULT_CONTROL = ("Metadata_Compound", "DMSO")


def normalize(profiles: pd.DataFrame, *, method: NormalizeMethod = "standardize",
              by: str | None = "Metadata_Plate",
              control: tuple[str, str] | None = DEFAULT_CONTROL) -> pd.DataFrame:
    """Centre and scale every feature per group, with parameters fitted on the group's control rows.

    Parameters
    ----------
    profiles : DataFrame
        ``Metadata_*`` columns + numeric features.
    method : {"standardize", "mad_robustize"}
        ``standardize``: ``(x - mean) / std`` with the sample standard deviation (``ddof=1``, R's
        ``sd`` as in cytominer's ``normalize``); ``mad_robustize``: ``(x - median) / (1.4826 * MAD)``.
        NaN values are skipped when fitting.
    by : str or None
        Metadata column whose groups are normalised separately (per plate by default); None: one group.
    control : (column, value) or None
        Rows with ``profiles[column] == value`` fit the centre and scale (the plate's DMSO wells by
        default); None fits on all rows of the group.

    Returns
    -------
    DataFrame
        Same rows, columns and metadata; features as float64. A feature whose control scale is zero
        (or undefined, e.g. a single control) is only centred, so the output has no new inf or NaN.

    Raises
    ------
    InvalidInput
        Unknown method, missing column, or a group without any control row.

    Examples
    --------
    >>> wells = pd.DataFrame({"Metadata_Plate": ["p"] * 3, "Metadata_Compound": ["DMSO", "DMSO", "x"],
    ...                       "f": [1.0, 3.0, 6.0]})
    >>> normalize(wells)["f"].round(3).tolist()
    [-0.707, 0.707, 2.828]
    """
    if method not in METHODS:
        raise InvalidInput(f"normalization method must be one of {', '.join(METHODS)}, not {method!r}")
    require_columns(profiles, ([by] if by is not None else []) + ([control[0]] if control is not None else []))
    features = feature_columns(profiles)
    values = profiles[features].astype(np.float64)
    groups = profiles[by].to_numpy() if by is not None else np.zeros(len(profiles))
    mask = np.ones(len(profiles), bool) if control is None else (profiles[control[0]] == control[1]).to_numpy()
    fit, fit_groups = values[mask], groups[mask]
    fitted = fit.groupby(fit_groups, dropna=False)
    if method == "standardize":
        center, scale = fitted.mean(), fitted.std(ddof=1)
    else:
        center = fitted.median()
        deviations = (fit - center.reindex(fit_groups).to_numpy()).abs()
        scale = MAD_SCALE * deviations.groupby(fit_groups, dropna=False).median()
    missing = pd.Index(pd.unique(groups)).difference(center.index)
    if len(missing):
        raise InvalidInput(f"no control rows ({control}) in group(s) {', '.join(map(str, missing[:5]))} of {by}")
    center_rows = center.reindex(groups).to_numpy()
    scale_rows = scale.reindex(groups).to_numpy()
    scale_rows = np.where(np.isfinite(scale_rows) & (scale_rows > 0), scale_rows, 1.0)
    return _with_features(profiles, features, (values.to_numpy() - center_rows) / scale_rows)


def sphere(profiles: pd.DataFrame, *, control: tuple[str, str] | None = DEFAULT_CONTROL,
           regularization: float = 1e-6) -> pd.DataFrame:
    """ZCA-whiten the features with the mean and covariance of the control rows.

    ``x -> (x - mean_c) @ W`` with ``W = U diag(1 / sqrt(s + regularization)) U^T``, where ``U, s`` are
    the eigenvectors and eigenvalues of the control covariance (``ddof=1``); the controls are mapped to
    (nearly, for a positive regulariser) identity covariance while staying as close as possible to the
    original feature axes, which keep their names.

    Parameters
    ----------
    profiles : DataFrame
        ``Metadata_*`` columns + numeric features, without NaN.
    control : (column, value) or None
        Rows fitting the transform (DMSO by default); None: all rows.
    regularization : float
        Added to the eigenvalues (> 0; guards against singular covariance, e.g. fewer controls than
        features).

    Returns
    -------
    DataFrame
        Same rows, columns and metadata, features whitened (float64).
    """
    if not regularization > 0:
        raise InvalidInput(f"regularization must be > 0, got {regularization!r}")
    if control is not None:
        require_columns(profiles, [control[0]])
    features = feature_columns(profiles)
    values = profiles[features].to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise InvalidInput("sphere needs features without NaN")
    fit = values if control is None else values[(profiles[control[0]] == control[1]).to_numpy()]
    if len(fit) < 2:
        raise InvalidInput(f"sphere needs at least 2 control rows, got {len(fit)}")
    mean = fit.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(fit, rowvar=False, ddof=1).reshape(len(features), -1))
    whitening = (eigenvectors / np.sqrt(np.maximum(eigenvalues, 0.0) + regularization)) @ eigenvectors.T
    return _with_features(profiles, features, (values - mean) @ whitening)


def _with_features(profiles: pd.DataFrame, features: list[str], values: np.ndarray) -> pd.DataFrame:
    """``profiles`` with its feature columns replaced by ``values`` (one consolidated block)."""
    replaced = pd.DataFrame(values, index=profiles.index, columns=features)
    return pd.concat([profiles.drop(columns=features), replaced], axis=1)[list(profiles.columns)]
