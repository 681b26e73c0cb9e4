"""MOA metrics beyond treatment-level NSC: compound-level votes, same-MOA retrieval mAP, per-MOA and
per-compound accuracy tables and the confusion matrix.

Every table is computed from the ``predictions`` frame of a :class:`~bioims.evaluation.knn.KnnResult`
(one row per query treatment, with ``match_moa``, ``match_similarity`` and ``correct``), so the same
functions serve plain and hold-out evaluations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .knn import COMPOUND, MOA

_BLOCK = 512  # query rows ranked at once by average_precision: bounds memory to a few (512, n) arrays


def average_precision(sim: np.ndarray, query_labels: np.ndarray, labels: np.ndarray,
                      excluded: np.ndarray) -> np.ndarray:
    """Average precision of retrieving same-label candidates, one value per query (as in copairs).

    Each query ranks its non-excluded candidates by decreasing similarity (ties by column order); the AP
    is the mean, over the positives (same label), of the precision at the rank of each positive.

    Parameters
    ----------
    sim : (q, n) ndarray of float
        Similarity of each query to each candidate, larger is more similar.
    query_labels : (q,) ndarray of int
        Label of each query.
    labels : (n,) ndarray of int
        Label of each candidate.
    excluded : (q, n) ndarray of bool
        Candidates a query may not retrieve (itself, its own compound, ...).

    Returns
    -------
    (q,) ndarray of float
        AP per query; NaN for a query without any positive candidate.

    Examples
    --------
    >>> sim = np.array([[0.0, 0.9, 0.5, 0.1]])
    >>> average_precision(sim, np.array([0]), np.array([0, 1, 0, 0]), np.array([[True, False, False, False]]))
    array([0.58333333])
    """
    sim, excluded = np.asarray(sim, dtype=np.float64), np.asarray(excluded, dtype=bool)
    n = sim.shape[1]
    precision_at = 1.0 / np.arange(1, n + 1)
    out = np.empty(sim.shape[0])
    for start in range(0, sim.shape[0], _BLOCK):
        block = slice(start, start + _BLOCK)
        scores = np.where(excluded[block], -np.inf, sim[block])
        order = np.argsort(-scores, axis=1, kind="stable")  # excluded candidates sort last
        relevant = (labels[order] == query_labels[block, None]) & ~np.take_along_axis(excluded[block], order, 1)
        positives = relevant.sum(axis=1)
        hits = np.cumsum(relevant, axis=1)
        total = (relevant * hits * precision_at).sum(axis=1)
        out[block] = np.where(positives > 0, total / np.maximum(positives, 1), np.nan)
    return out


def mean_average_precision(ap: np.ndarray) -> float | None:
    """Mean AP over the queries that have a positive (non-NaN); None when no query has one."""
    ap = np.asarray(ap, dtype=np.float64)
    valid = ap[~np.isnan(ap)]
    return float(valid.mean()) if len(valid) else None


def compound_votes(predictions: pd.DataFrame) -> pd.DataFrame:
    """Compound-level prediction: the majority of its treatments' predicted MOAs.

    Ties are broken by the vote of the most similar match (the tied MOA with the highest
    ``match_similarity``), then by MOA name, so the result is deterministic.

    Parameters
    ----------
    predictions : DataFrame
        :func:`~bioims.evaluation.knn.nearest` output.

    Returns
    -------
    DataFrame
        One row per compound, sorted: ``Metadata_Compound``, ``Metadata_MoA``, ``treatments``,
        ``accuracy`` (fraction of its treatments predicted right), ``predicted_moa``, ``votes``,
        ``correct`` (the vote is its MOA).
    """
    columns = [COMPOUND, MOA, "treatments", "accuracy", "predicted_moa", "votes", "correct"]
    if predictions.empty:
        return pd.DataFrame(columns=columns)
    tally = (predictions.groupby([COMPOUND, "match_moa"], sort=False)
             .agg(votes=("match_moa", "size"), best=("match_similarity", "max")).reset_index()
             .sort_values([COMPOUND, "votes", "best", "match_moa"], ascending=[True, False, False, True])
             .drop_duplicates(COMPOUND).set_index(COMPOUND))
    table = predictions.groupby(COMPOUND, sort=True).agg(
        **{MOA: (MOA, "first")}, treatments=(MOA, "size"), accuracy=("correct", "mean"))
    table["predicted_moa"] = tally["match_moa"]
    table["votes"] = tally["votes"]
    table["correct"] = table[MOA] == table["predicted_moa"]
    return table.reset_index()[columns]


def per_moa_accuracy(predictions: pd.DataFrame) -> pd.DataFrame:
    """Treatment-level accuracy per true MOA: columns ``Metadata_MoA``, ``treatments``, ``correct``,
    ``accuracy``, sorted by MOA."""
    table = predictions.groupby(MOA, sort=True).agg(treatments=("correct", "size"), correct=("correct", "sum"))
    table["accuracy"] = table["correct"] / table["treatments"]
    return table.reset_index()


def confusion_matrix(predictions: pd.DataFrame) -> pd.DataFrame:
    """Counts of true MOA (rows) x predicted MOA (columns), both over the sorted union of the MOAs."""
    moas = sorted(set(predictions[MOA]) | set(predictions["match_moa"]))
    counts = pd.crosstab(predictions[MOA], predictions["match_moa"])
    return counts.reindex(index=moas, columns=moas, fill_value=0).rename_axis(index="true", columns="predicted")
