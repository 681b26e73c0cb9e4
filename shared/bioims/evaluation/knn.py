"""Nearest-neighbour MOA prediction at treatment level: NSC and NSCB accuracy.

For each treatment (compound x concentration, DMSO excluded), predict its MOA from the most similar
other treatment, never one of the same compound (NSC: "not same compound"); NSCB also never one of the
same batch ("not same compound or batch"), and drops the MOAs present in one batch only, which could
never be matched (Ljosa et al. 2013; Ando et al. 2017).

Profiles follow pycytominer's conventions: ``Metadata_*`` columns, everything else a feature. The
columns used are ``Metadata_Compound``, ``Metadata_Concentration``, ``Metadata_MoA`` and, for NSCB,
``Metadata_Batch``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import InvalidInput

Metric = Literal["cosine", "pearson", "euclidean"]
COMPOUND, CONCENTRATION, MOA, BATCH = ("Metadata_Compound", "Metadata_Concentration", "Metadata_MoA",
                                       "Metadata_Batch")
CONTROL = "DMSO"


def feature_columns(profiles: pd.DataFrame) -> list[str]:
    """Every column not prefixed ``Metadata_``."""
    return [c for c in profiles.columns if not str(c).startswith("Metadata_")]


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
    _require(profiles, [COMPOUND, CONCENTRATION, MOA])
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
        matched treatment's compound and MOA, and ``correct``.
    """
    _require(treatments, [COMPOUND, MOA] + ([BATCH] if exclude_batch else []))
    data = treatments[treatments[MOA] != CONTROL].reset_index(drop=True)
    dropped: tuple[str, ...] = ()
    if exclude_batch:
        batches = data[BATCH].astype(str).str.split(";").apply(frozenset)
        per_moa = {moa: frozenset().union(*batches[data[MOA] == moa]) for moa in data[MOA].unique()}
        dropped = tuple(sorted(m for m, b in per_moa.items() if len(b) < 2))
        keep = ~data[MOA].isin(dropped)
        data, batches = data[keep].reset_index(drop=True), batches[keep].reset_index(drop=True)
    features = feature_columns(data)
    if len(data) < 2 or not features:
        return KnnResult(None, len(data), data[MOA].nunique(), data[COMPOUND].nunique(), dropped)
    sim = similarity(data[features].to_numpy(), metric)
    compounds = data[COMPOUND].to_numpy()
    excluded = compounds[:, None] == compounds[None, :]
    if exclude_batch:
        excluded |= np.array([[bool(a & b) for b in batches] for a in batches])
    sim = np.where(excluded, -np.inf, sim)
    has_candidate = np.isfinite(sim).any(axis=1)
    best = np.argmax(sim, axis=1)
    moas = data[MOA].to_numpy()
    predictions = pd.DataFrame({
        COMPOUND: compounds, CONCENTRATION: data.get(CONCENTRATION), MOA: moas,
        "match_compound": np.where(has_candidate, compounds[best], None),
        "match_moa": np.where(has_candidate, moas[best], None),
    })[has_candidate]
    predictions["correct"] = predictions[MOA] == predictions["match_moa"]
    accuracy = float(predictions["correct"].mean()) if len(predictions) else None
    return KnnResult(accuracy, len(predictions), predictions[MOA].nunique(), predictions[COMPOUND].nunique(),
                     dropped, predictions.reset_index(drop=True))


def _require(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInput(f"profiles lack column(s) {', '.join(missing)}")
