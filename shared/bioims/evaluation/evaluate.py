"""Full MOA evaluation of treatment profiles: NSC, NSCB, compound-level accuracy, same-MOA retrieval mAP
and the tables behind them, from one similarity matrix per set of profiles.

:func:`evaluate` scores one set of profiles. :func:`evaluate_holdout` scores models trained with
held-out compounds (as in the seed's MOA notebook): each compound is queried only in the profiles of the
model that never saw it, and all the queries are pooled into one :class:`Evaluation`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .knn import (BATCH, COMPOUND, MOA, KnnResult, Metric, require_columns, excluded_pairs, feature_columns,
                  knn_result, nearest, similarity, single_batch_moas, without_controls)
from .metrics import (average_precision, compound_votes, confusion_matrix, mean_average_precision,
                      per_moa_accuracy)


@dataclass(frozen=True)
class Evaluation:
    """Every MOA figure of one evaluation.

    Attributes
    ----------
    nsc, nscb : KnnResult
        Treatment-level 1-NN accuracy, not same compound (NSC) and also not same batch (NSCB); ``nscb`` is
        None when it was not asked for or the profiles have no ``Metadata_Batch``.
    compound_level : float or None
        Fraction of compounds whose majority-vote NSC prediction is right (see
        :func:`~bioims.evaluation.metrics.compound_votes`).
    map : float or None
        Mean average precision of retrieving same-MOA treatments, other compounds only.
    per_moa, per_compound, confusion : DataFrame
        NSC tables: accuracy per MOA, votes per compound, true x predicted MOA counts.
    metric : str
        Similarity used.
    not_evaluated : tuple of str
        Hold-out only: compounds no model held out, hence never queried.
    """

    nsc: KnnResult
    nscb: KnnResult | None
    compound_level: float | None
    map: float | None
    per_moa: pd.DataFrame = field(repr=False, compare=False)
    per_compound: pd.DataFrame = field(repr=False, compare=False)
    confusion: pd.DataFrame = field(repr=False, compare=False)
    metric: Metric = "cosine"
    not_evaluated: tuple[str, ...] = ()

    def to_document(self, report: str | Path | None = None) -> dict[str, Any]:
        """The ``evaluate --json`` document: ``nsc``, ``nscb``, ``treatments``, ``moas``, ``compounds``,
        ``compound_level``, ``map``, ``report``, plus ``metric``, ``dropped_moas_nscb``, ``per_moa``
        ({MOA: NSC accuracy}) and ``not_evaluated``. JSON-safe: NaN becomes None."""
        return {
            "nsc": _number(self.nsc.accuracy),
            "nscb": _number(self.nscb.accuracy) if self.nscb is not None else None,
            "treatments": self.nsc.treatments,
            "moas": self.nsc.moas,
            "compounds": self.nsc.compounds,
            "compound_level": _number(self.compound_level),
            "map": _number(self.map),
            "report": str(report) if report is not None else None,
            "metric": self.metric,
            "dropped_moas_nscb": list(self.nscb.dropped_moas) if self.nscb is not None else [],
            "per_moa": {str(r[MOA]): _number(r["accuracy"]) for _, r in self.per_moa.iterrows()},
            "not_evaluated": list(self.not_evaluated),
        }


def evaluate(treatments: pd.DataFrame, *, metric: Metric = "cosine", batch: bool = True) -> Evaluation:
    """Evaluate treatment-level profiles (DMSO rows are ignored).

    Parameters
    ----------
    treatments : DataFrame
        One row per treatment: ``Metadata_Compound``, ``Metadata_MoA``, optionally
        ``Metadata_Concentration`` and ``Metadata_Batch``, and feature columns.
    metric : {"cosine", "pearson", "euclidean"}
    batch : bool
        Also compute NSCB (when the profiles have ``Metadata_Batch``).

    Returns
    -------
    Evaluation

    Examples
    --------
    >>> frame = pd.DataFrame({"Metadata_Compound": ["a", "b", "c", "d"], "Metadata_MoA": ["x", "x", "y", "y"],
    ...                       "f1": [1.0, 0.9, 0.0, 0.1], "f2": [0.0, 0.1, 1.0, 0.9]})
    >>> evaluate(frame).to_document()["nsc"]
    1.0
    """
    return evaluate_holdout([(treatments, _compounds(treatments))], metric=metric, batch=batch)


def evaluate_holdout(models: Sequence[tuple[pd.DataFrame, Collection[str]]], *, metric: Metric = "cosine",
                     batch: bool = True) -> Evaluation:
    """Evaluate models that each held out some compounds, querying each compound in its own model only.

    Parameters
    ----------
    models : sequence of (DataFrame, collection of str)
        Per model: treatment profiles embedded by that model, and the compounds it held out. A held-out
        compound's treatments are matched against that model's other treatments (never the same compound,
        nor, for NSCB, a treatment sharing a batch); MOAs found in one batch are dropped from NSCB.
    metric : {"cosine", "pearson", "euclidean"}
    batch : bool
        Also compute NSCB (when every model's profiles have ``Metadata_Batch``).

    Returns
    -------
    Evaluation
        All queries pooled; ``not_evaluated`` lists the compounds that no model held out.

    Raises
    ------
    InvalidInput
        A required column is missing, no model is given, or a compound is held out by two models.
    """
    if not models:
        raise InvalidInput("evaluate_holdout needs at least one model")
    owner: dict[str, int] = {}
    for index, (frame, held_out) in enumerate(models):
        require_columns(frame, [COMPOUND, MOA])
        for compound in held_out:
            if compound in owner and owner[compound] != index:
                raise InvalidInput(f"compound {compound!r} is held out by models {owner[compound]} and {index}")
            owner[compound] = index
    with_batch = batch and all(BATCH in frame.columns for frame, _ in models)
    nsc_parts, nscb_parts, ap_parts, dropped = [], [], [], set()
    for frame, held_out in models:
        data = without_controls(frame)
        features = feature_columns(data)
        queries = data[COMPOUND].isin(set(held_out)).to_numpy()
        if not queries.any() or not features:
            continue
        sim = similarity(data[features].to_numpy(), metric)
        excluded = excluded_pairs(data)
        nsc_parts.append(nearest(data, sim, excluded, queries))
        labels = pd.factorize(data[MOA])[0]
        ap_parts.append(average_precision(sim[queries], labels[queries], labels, excluded[queries]))
        if with_batch:
            moas_dropped = single_batch_moas(data)
            dropped.update(moas_dropped)
            kept = ~data[MOA].isin(moas_dropped).to_numpy()
            kept_data = data[kept].reset_index(drop=True)
            nscb_parts.append(nearest(kept_data, sim[np.ix_(kept, kept)],
                                      excluded_pairs(kept_data, exclude_batch=True), queries[kept]))
    predictions = _concat(nsc_parts)
    nsc = knn_result(predictions)
    votes = compound_votes(predictions)
    seen = set().union(*(_compounds(frame) for frame, _ in models))
    return Evaluation(
        nsc=nsc,
        nscb=knn_result(_concat(nscb_parts), tuple(sorted(dropped))) if with_batch else None,
        compound_level=float(votes["correct"].mean()) if len(votes) else None,
        map=mean_average_precision(np.concatenate(ap_parts)) if ap_parts else None,
        per_moa=per_moa_accuracy(predictions),
        per_compound=votes,
        confusion=confusion_matrix(predictions),
        metric=metric,
        not_evaluated=tuple(sorted(seen - owner.keys())),
    )


def _compounds(treatments: pd.DataFrame) -> set[str]:
    require_columns(treatments, [COMPOUND, MOA])
    return set(without_controls(treatments)[COMPOUND])


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    columns = [COMPOUND, "Metadata_Concentration", MOA, "match_compound", "match_moa", "match_similarity",
               "correct"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
