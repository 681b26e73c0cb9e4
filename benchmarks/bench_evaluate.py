"""MOA evaluation speed: bioims's one-similarity-matrix evaluation (NSC + NSCB + mAP, vectorised masks)
vs the seed's way, one search per query (that query's similarities to all, a full sort, then a Python walk
down the ranking for the first eligible match and the retrieval AP), same data, same run.

The baseline is timed on a subset of the queries and extrapolated linearly to all of them (its cost is
the same for every query); the figure name says so.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bioims.evaluation.evaluate import evaluate

MOAS, COMPOUNDS, CONCENTRATIONS, BATCHES, DIMS = 12, 25, 10, 3, 256  # 3000 treatments
BASELINE_QUERIES = 300


def treatments(seed: int = 0) -> pd.DataFrame:
    """Clustered synthetic treatment embeddings: MOA centre + compound offset + noise."""
    rng = np.random.default_rng(seed)
    moa = np.repeat(np.arange(MOAS), COMPOUNDS * CONCENTRATIONS)
    compound = np.repeat(np.arange(MOAS * COMPOUNDS), CONCENTRATIONS)
    x = (rng.normal(size=(MOAS, DIMS))[moa] + 0.7 * rng.normal(size=(MOAS * COMPOUNDS, DIMS))[compound]
         + 0.8 * rng.normal(size=(len(moa), DIMS)))
    meta = pd.DataFrame({"Metadata_Compound": [f"cpd{c}" for c in compound],
                         "Metadata_Concentration": np.tile(np.arange(CONCENTRATIONS, dtype=float), MOAS * COMPOUNDS),
                         "Metadata_MoA": [f"moa{m}" for m in moa],
                         "Metadata_Batch": [f"Week{(c + k) % BATCHES}" for c, k in
                                            zip(compound, np.tile(np.arange(CONCENTRATIONS), MOAS * COMPOUNDS))]})
    return pd.concat([meta, pd.DataFrame(x, columns=[f"f{i}" for i in range(DIMS)])], axis=1)


def per_query(data: pd.DataFrame, queries: int) -> tuple[float, float, float]:
    """The seed's approach on the first ``queries`` treatments: NSC, NSCB (batch-disjoint) and AP sums."""
    x = data[[c for c in data.columns if not c.startswith("Metadata_")]].to_numpy()
    norms = np.linalg.norm(x, axis=1)
    compounds, moas, batches = (data[c].to_numpy() for c in ("Metadata_Compound", "Metadata_MoA", "Metadata_Batch"))
    nsc_hits = nscb_hits = 0
    ap_sum = 0.0
    for i in range(queries):
        sims = x @ x[i] / (norms * norms[i])
        order = np.argsort(-sims)
        nsc_match = nscb_match = None
        hits, precision_sum, rank = 0, 0.0, 0
        for j in order:
            if compounds[j] == compounds[i]:
                continue
            nsc_match = j if nsc_match is None else nsc_match
            if nscb_match is None and batches[j] != batches[i]:
                nscb_match = j
            rank += 1
            if moas[j] == moas[i]:
                hits += 1
                precision_sum += hits / rank
        nsc_hits += moas[nsc_match] == moas[i]
        nscb_hits += moas[nscb_match] == moas[i]
        ap_sum += precision_sum / max(hits, 1)
    return nsc_hits / queries, nscb_hits / queries, ap_sum / queries


def run() -> list[dict]:
    data = treatments()
    n = len(data)
    evaluate(data.head(200))  # warm imports and BLAS
    t0 = time.perf_counter()
    result = evaluate(data)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    nsc, nscb, _ = per_query(data, BASELINE_QUERIES)
    naive = (time.perf_counter() - t0) * n / BASELINE_QUERIES
    assert result.nscb is not None and not result.nscb.dropped_moas  # same query order in both results
    assert nsc == result.nsc.predictions["correct"].head(BASELINE_QUERIES).mean()
    assert nscb == result.nscb.predictions["correct"].head(BASELINE_QUERIES).mean()
    return [{"benchmark": "evaluate",
             "figure": f"s NSC+NSCB+mAP ({n} treatments x {DIMS}-d; baseline extrapolated from "
                       f"{BASELINE_QUERIES} queries)",
             "value": ours, "unit": "s", "baseline": naive, "ratio": naive / ours}]
