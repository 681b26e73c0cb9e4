"""Nearest-neighbour MOA prediction at treatment level: NSC and NSCB accuracy.

For each treatment (compound x concentration, DMSO excluded), predict its MOA from the most similar
other treatment, never one of the same compound (NSC: "not same compound"); NSCB also never one of the
same batch ("not same compound or batch"), and drops the MOAs present in one batch only, which could
never be matched (Ljosa et al. 2013; Ando et al. 2017).

Profiles follow pycytominer's conventions: ``Metadata_*`` (and CytoTable's ``Image_*``) columns, everything
else a feature (:func:`bioims.profiles.io.feature_columns`). The columns used are ``Metadata_Compound``,
``Metadata_Concentration``, ``Metadata_MoA`` and, for NSCB, ``Metadata_Batch``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from ..profiles.io import feature_columns, require_columns

Metric = Literal["cosine", "pearson", "euclidean"]
COMPOUND, CONCENTRATION, MOA, BATCH = ("Metadata_Compound", "Metadata_Concentration", "Metadata_MoA",
                                       "Metadata_Batch")
CONTROL = "DMSO"


def similarity(x: np.ndarray, metric: Metric = "cosine") -> np.ndarray:
    """Pairwise similarity (n, n) of the rows of ``x`` (n, d); Euclidean is returned negated, so that
    larger is more similar for every metric."""
    x = np.asarray(x, dtype=np.float64)
    if metric == "pearson":
        x = x - x.mean(axis=1, keepdims=True)
    if metric in ("cosine", "pearson"):
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        unit = x / np.where(norms == 0, 1.0, norms)
        return unit @ unit.T
    if metric == "euclidean":
        sq = (x * x).sum(axis=1)
        return -np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    raise InvalidInput(f"metric must be cosine, pearson or euclidean, not {metric!r}")


def treatment_profiles(profiles: pd.DataFrame) -> pd.DataFrame:
    """Mean profile per treatment (compound, concentration); the MOA and batch are carried along (a
    treatment seen in several batches keeps them joined by ``;``)."""
    require_columns(profiles, [COMPOUND, CONCENTRATION, MOA])
    features = feature_columns(profiles)
    keys = [COMPOUND, CONCENTRATION]
    means = profiles.groupby(keys, sort=True)[features].mean()
    meta = profiles.groupby(keys, sort=True).agg(
        **{MOA: (MOA, "first")},
        **({BATCH: (BATCH, lambda b: ";".join(sorted(set(map(str, b)))))} if BATCH in profiles else {}))
    return meta.join(means).reset_index()


@dataclass(frozen=True)
class KnnResult:
    """Accuracy of 1-NN MOA prediction and what it was computed on."""

    accuracy: float | None
    treatments: int
    moas: int
    compounds: int
    dropped_moas: tuple[str, ...] = ()
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)


def nsc(treatments: pd.DataFrame, *, metric: Metric = "cosine", exclude_batch: bool = False) -> KnnResult:
    """NSC (or, with ``exclude_batch``, NSCB) accuracy of treatment-level profiles.

    Parameters
    ----------
    treatments : DataFrame
        One row per treatment (see :func:`treatment_profiles`); DMSO rows are ignored.
    metric : {"cosine", "pearson", "euclidean"}
    exclude_batch : bool
        NSCB: also exclude treatments sharing a batch with the query, and drop MOAs found in one batch.

    Returns
    -------
    KnnResult
        ``predictions`` has one row per evaluated treatment: its compound, concentration, MOA, the
        matched treatment's compound, MOA and similarity, and ``correct``.
    """
    require_columns(treatments, [COMPOUND, MOA] + ([BATCH] if exclude_batch else []))
    data = without_controls(treatments)
    dropped: tuple[str, ...] = ()
    if exclude_batch:
        dropped = single_batch_moas(data)
        data = data[~data[MOA].isin(dropped)].reset_index(drop=True)
    features = feature_columns(data)
    if len(data) < 2 or not features:
        return KnnResult(None, len(data), data[MOA].nunique(), data[COMPOUND].nunique(), dropped)
    sim = similarity(data[features].to_numpy(), metric)
    predictions = nearest(data, sim, excluded_pairs(data, exclude_batch=exclude_batch))
    return knn_result(predictions, dropped)


def without_controls(treatments: pd.DataFrame) -> pd.DataFrame:
    """The non-DMSO rows, re-indexed from 0 (row ``i`` is row/column ``i`` of their similarity matrix)."""
    return treatments[treatments[MOA] != CONTROL].reset_index(drop=True)


def single_batch_moas(data: pd.DataFrame) -> tuple[str, ...]:
    """MOAs whose treatments all lie in one batch (NSCB can never match them), sorted."""
    batches = _batch_sets(data)
    per_moa = {moa: frozenset().union(*batches[(data[MOA] == moa).to_numpy()]) for moa in data[MOA].unique()}
    return tuple(sorted(str(m) for m, b in per_moa.items() if len(b) < 2))


def excluded_pairs(data: pd.DataFrame, *, exclude_batch: bool = False) -> np.ndarray:
    """Boolean (n, n) mask of the pairs a query may not be matched with: same compound (hence itself)
    and, with ``exclude_batch``, treatments sharing a batch (``;``-joined batch lists overlap)."""
    codes = pd.factorize(data[COMPOUND])[0]
    excluded = codes[:, None] == codes[None, :]
    if exclude_batch:
        batches = _batch_sets(data)
        vocabulary = {b: i for i, b in enumerate(sorted(frozenset().union(*batches)))}
        membership = np.zeros((len(data), len(vocabulary)), dtype=np.float32)
        for row, names in enumerate(batches):
            membership[row, [vocabulary[b] for b in names]] = 1.0
        excluded |= (membership @ membership.T) > 0
    return excluded


def nearest(data: pd.DataFrame, sim: np.ndarray, excluded: np.ndarray,
            queries: np.ndarray | None = None) -> pd.DataFrame:
    """1-NN MOA predictions of the ``queries`` rows of ``data``.

    Parameters
    ----------
    data : DataFrame
        n treatments, DMSO removed, index 0..n-1.
    sim : (n, n) ndarray of float
        Similarity of the treatments, larger is more similar.
    excluded : (n, n) ndarray of bool
        Pairs that may not be matched (see :func:`excluded_pairs`).
    queries : (n,) ndarray of bool, optional
        Rows to predict; all by default. Candidates are always every non-excluded row.

    Returns
    -------
    DataFrame
        One row per query that has a candidate: compound, concentration, MOA, ``match_compound``,
        ``match_moa``, ``match_similarity``, ``correct``.
    """
    all_rows = queries is None or bool(np.all(queries))
    rows = np.arange(len(data)) if all_rows else np.flatnonzero(queries)
    scores = np.where(excluded, -np.inf, sim) if all_rows else np.where(excluded[rows], -np.inf, sim[rows])
    if scores.size == 0:  # no query, or nothing to match (NSCB when every MOA is in one batch)
        return pd.DataFrame(columns=[COMPOUND, CONCENTRATION, MOA, "match_compound", "match_moa", "match_similarity",
                                     "correct"])
    has_candidate = np.isfinite(scores).any(axis=1)
    best = np.argmax(scores, axis=1)
    compounds, moas = data[COMPOUND].to_numpy(), data[MOA].to_numpy()
    concentrations = data[CONCENTRATION].to_numpy()[rows] if CONCENTRATION in data else None
    predictions = pd.DataFrame({
        COMPOUND: compounds[rows], CONCENTRATION: concentrations, MOA: moas[rows],
        "match_compound": np.where(has_candidate, compounds[best], None),
        "match_moa": np.where(has_candidate, moas[best], None),
        "match_similarity": scores[np.arange(len(rows)), best],
    })[has_candidate].reset_index(drop=True)
    predictions["correct"] = predictions[MOA] == predictions["match_moa"]
    return predictions


def knn_result(predictions: pd.DataFrame, dropped_moas: tuple[str, ...] = ()) -> KnnResult:
    """Summarise :func:`nearest` predictions (possibly concatenated from several models)."""
    accuracy = float(predictions["correct"].mean()) if len(predictions) else None
    return KnnResult(accuracy, len(predictions), predictions[MOA].nunique(), predictions[COMPOUND].nunique(),
                     dropped_moas, predictions)


def _batch_sets(data: pd.DataFrame) -> pd.Series:
    return data[BATCH].astype(str).str.split(";").apply(frozenset)

