"""Aggregate profiles (e.g. wells into treatments) by metadata columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd

from ..errors import InvalidInput
from .io import feature_columns, require_columns

AggregateMethod = Literal["mean", "median"]
METHODS: tuple[AggregateMethod, ...] = ("mean", "median")


def aggregate(profiles: pd.DataFrame, by: Sequence[str], *, method: AggregateMethod = "mean") -> pd.DataFrame:
    """One row per group of ``by``: the mean or median of every feature.

    Parameters
    ----------
    profiles : DataFrame
        ``Metadata_*`` columns + numeric feature columns.
    by : sequence of str
        Grouping columns (e.g. ``("Metadata_Compound", "Metadata_Concentration")``); missing values form
        their own group.
    method : {"mean", "median"}
        Feature aggregate; NaN values are skipped.

    Returns
    -------
    DataFrame
        The ``by`` columns, then every other ``Metadata_*`` column, then the features, groups sorted by
        ``by``. A metadata column constant within a group keeps its value; where it varies within a
        group the group's distinct values are joined, sorted as strings, with ``";"`` (e.g.
        ``Metadata_Batch = "Week1;Week2"``, the convention of :func:`bioims.evaluation.knn.nsc`), so
        no metadata is silently dropped.

    Examples
    --------
    >>> wells = pd.DataFrame({"Metadata_Compound": ["a", "a", "b"], "Metadata_Plate": ["p1", "p2", "p1"],
    ...                       "x": [1.0, 3.0, 5.0]})
    >>> aggregate(wells, ["Metadata_Compound"]).to_dict("list")
    {'Metadata_Compound': ['a', 'b'], 'Metadata_Plate': ['p1;p2', 'p1'], 'x': [2.0, 5.0]}
    """
    if method not in METHODS:
        raise InvalidInput(f"aggregation method must be one of {', '.join(METHODS)}, not {method!r}")
    by = list(by)
    if not by:
        raise InvalidInput("aggregate needs at least one grouping column")
    require_columns(profiles, by)
    features = feature_columns(profiles)
    grouped = profiles.groupby(by, sort=True, dropna=False)
    values = grouped[features].agg(method)
    others = [c for c in profiles.columns if c not in features and c not in by]
    meta = grouped[others].agg(_constant_or_joined) if others else pd.DataFrame(index=values.index)
    return pd.concat([meta, values], axis=1).reset_index()


def _constant_or_joined(values: pd.Series) -> object:
    distinct = values.drop_duplicates()
    if len(distinct) == 1:
        return distinct.iloc[0]
    return ";".join(sorted(set(distinct.astype(str))))
