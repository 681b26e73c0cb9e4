"""MOA evaluation: NSC/NSCB, compound votes, mAP, tables, hold-out evaluation and the HTML report."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bioims.errors import InvalidInput
from bioims.evaluation.evaluate import evaluate, evaluate_holdout
from bioims.evaluation.knn import excluded_pairs, nsc, similarity
from bioims.evaluation.metrics import average_precision, compound_votes
from bioims.evaluation.report import write_report

CPD, CONC, MOA, BATCH = "Metadata_Compound", "Metadata_Concentration", "Metadata_MoA", "Metadata_Batch"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _at(degrees: float) -> list[float]:
    return [np.cos(np.radians(degrees)), np.sin(np.radians(degrees))]


def frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows (compound, MOA, batch, [features...]) -> treatment profiles, one concentration each."""
    return pd.DataFrame([{CPD: c, CONC: 1.0, MOA: m, BATCH: b, **{f"f{i}": v for i, v in enumerate(x)}}
                         for c, m, b, x in rows])


@pytest.fixture
def tiny() -> pd.DataFrame:
    # angles: a 0, c 9.5, b 14 (X X Y); d 90 (Y); e 180, f 174 (Z, batch B1 only); DMSO ignored
    return frame([("a", "X", "B1", [1.0, 0.0]), ("b", "X", "B2", [0.8, 0.2]), ("c", "Y", "B1", [0.9, 0.15]),
                  ("d", "Y", "B2", [0.0, 1.0]), ("e", "Z", "B1", [-1.0, 0.0]), ("f", "Z", "B1", [-1.0, 0.1]),
                  ("DMSO", "DMSO", "B1", [1.0, 0.0])])


def synthetic(rng: np.random.Generator, *, moas: int = 4, compounds: int = 3, concentrations: int = 3,
              dims: int = 8, noise: float = 1.0) -> pd.DataFrame:
    rows = []
    for m in range(moas):
        centre = rng.normal(size=dims) * 2
        for c in range(compounds):
            for k in range(concentrations):
                rows.append((f"m{m}c{c}", f"moa{m}", f"B{(c + k) % 2}", centre + rng.normal(size=dims) * noise))
    out = frame(rows)
    out[CONC] = np.tile(np.arange(concentrations, dtype=float), moas * compounds)
    return out


def test_nsc_and_nscb_of_a_hand_built_example(tiny):
    result = evaluate(tiny)
    assert result.nsc.accuracy == pytest.approx(2 / 6)  # a->c, b->c, c->b, d->b wrong; e<->f right
    assert (result.nsc.treatments, result.nsc.moas, result.nsc.compounds) == (6, 3, 6)
    assert result.nscb.dropped_moas == ("Z",)  # Z is only in batch B1: NSCB can never match it
    assert result.nscb.accuracy == pytest.approx(2 / 4)  # a->b right, b->c wrong, c->b wrong, d->c right
    assert list(result.nscb.predictions["match_compound"]) == ["b", "c", "b", "c"]
    assert nsc(tiny).accuracy == result.nsc.accuracy
    assert nsc(tiny, exclude_batch=True).accuracy == result.nscb.accuracy


def test_confusion_matrix_and_per_moa_tables(tiny):
    result = evaluate(tiny)
    expected = pd.DataFrame([[0, 2, 0], [2, 0, 0], [0, 0, 2]], index=list("XYZ"), columns=list("XYZ"))
    np.testing.assert_array_equal(result.confusion.to_numpy(), expected.to_numpy())
    assert list(result.confusion.index) == list("XYZ") and list(result.confusion.columns) == list("XYZ")
    assert result.per_moa.set_index(MOA)["accuracy"].to_dict() == {"X": 0.0, "Y": 0.0, "Z": 1.0}
    assert result.compound_level == pytest.approx(2 / 6)  # one treatment per compound: votes = NSC


def test_compound_vote_majority_then_most_similar_then_name():
    predictions = pd.DataFrame({
        CPD: ["p", "p", "p", "q", "q", "r", "r"], MOA: ["X", "X", "X", "Y", "Y", "Y", "Y"],
        "match_moa": ["X", "X", "Y", "X", "Y", "Z", "Y"],
        "match_similarity": [0.1, 0.2, 0.9, 0.5, 0.9, 0.7, 0.7]})
    predictions["correct"] = predictions[MOA] == predictions["match_moa"]
    votes = compound_votes(predictions).set_index(CPD)
    assert votes["predicted_moa"].to_dict() == {"p": "X", "q": "Y", "r": "Y"}
    assert votes["votes"].to_dict() == {"p": 2, "q": 1, "r": 1}
    assert votes["correct"].all()
    assert votes["accuracy"].to_dict() == pytest.approx({"p": 2 / 3, "q": 0.5, "r": 0.5})


def test_compound_level_votes_through_evaluate(rng):
    data = synthetic(rng, noise=2.0)
    result = evaluate(data)
    preds = result.nsc.predictions
    for row in result.per_compound.itertuples():
        counts = preds[preds[CPD] == getattr(row, CPD)]["match_moa"].value_counts()
        assert row.votes == counts.max() and counts[row.predicted_moa] == counts.max()
    assert result.compound_level == pytest.approx(result.per_compound["correct"].mean())


def reference_ap(sim: np.ndarray, moas: np.ndarray, compounds: np.ndarray) -> list[float]:
    """Brute force: for each query, loop over its candidates in rank order."""
    out = []
    for i in range(len(sim)):
        candidates = sorted((j for j in range(len(sim)) if compounds[j] != compounds[i]), key=lambda j: -sim[i, j])
        hits, precisions = 0, []
        for rank, j in enumerate(candidates, start=1):
            if moas[j] == moas[i]:
                hits += 1
                precisions.append(hits / rank)
        if precisions:
            out.append(float(np.mean(precisions)))
    return out


@pytest.mark.parametrize("metric", ["cosine", "pearson", "euclidean"])
def test_map_matches_a_brute_force_reference(rng, metric):
    data = synthetic(rng, moas=5, compounds=3, concentrations=2, noise=3.0)
    data.loc[0, MOA] = "singleton"  # a query without positives is left out of the mean
    result = evaluate(data, metric=metric)
    sim = similarity(data[[c for c in data if c.startswith("f")]].to_numpy(), metric)
    expected = reference_ap(sim, data[MOA].to_numpy(), data[CPD].to_numpy())
    assert len(expected) == len(data) - 1
    assert result.map == pytest.approx(np.mean(expected))
    assert 0.0 < result.map < 1.0


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_average_precision_equals_copairs(rng, metric):
    """Per-query AP and mAP against copairs (the field's reference implementation) with the same pairs:
    positives share the query's MOA but not its compound, negatives differ in MOA (same-compound pairs are
    neither, as bioims excludes them); equal within 1e-9."""
    from copairs.map import average_precision as copairs_average_precision

    from bioims.evaluation.metrics import average_precision

    data = synthetic(rng, moas=5, compounds=3, concentrations=2, noise=3.0)
    features = [c for c in data if c.startswith("f")]
    theirs = copairs_average_precision(data.drop(columns=features), data[features].to_numpy(),
                                       pos_sameby=[MOA], pos_diffby=[CPD], neg_sameby=[], neg_diffby=[MOA],
                                       distance=metric, progress_bar=False)["average_precision"].to_numpy()
    labels = pd.factorize(data[MOA])[0]
    ours = average_precision(similarity(data[features].to_numpy(), metric), labels, labels, excluded_pairs(data))
    assert len(ours) == len(theirs) == len(data) and np.abs(ours - theirs).max() < 1e-9
    assert abs(evaluate(data, metric=metric).map - float(np.mean(theirs))) < 1e-9


def test_average_precision_kernel_matches_the_docstring_and_skips_queries_without_positives():
    sim = np.array([[0.0, 0.9, 0.5, 0.1], [0.0, 0.9, 0.5, 0.1]])
    excluded = np.array([[True, False, False, False]] * 2)
    ap = average_precision(sim, np.array([0, 2]), np.array([0, 1, 0, 0]), excluded)
    assert ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2) and np.isnan(ap[1])


def test_perfect_separation_gives_map_and_accuracies_of_one(rng):
    data = synthetic(rng, noise=0.01)
    result = evaluate(data)
    assert result.map == pytest.approx(1.0)
    assert result.nsc.accuracy == result.nscb.accuracy == result.compound_level == 1.0


def test_document_has_the_cli_keys_and_is_json(tiny):
    doc = evaluate(tiny, metric="pearson").to_document(report="out.html")
    assert {"nsc", "nscb", "treatments", "moas", "compounds", "compound_level", "map", "report", "metric",
            "dropped_moas_nscb", "per_moa"} <= doc.keys()
    assert doc["report"] == "out.html" and doc["metric"] == "pearson" and doc["dropped_moas_nscb"] == ["Z"]
    json.dumps(doc, allow_nan=False)


def test_no_batch_column_means_no_nscb(tiny):
    result = evaluate(tiny.drop(columns=BATCH))
    assert result.nscb is None and result.to_document()["nscb"] is None
    assert evaluate(tiny, batch=False).nscb is None


def test_one_batch_only_gives_no_nscb_instead_of_an_error(tiny):
    """Every MOA in a single batch: NSCB drops them all and has nothing to score (it used to raise)."""
    result = evaluate(tiny.assign(**{BATCH: "B1"}))
    assert result.nsc.accuracy == pytest.approx(2 / 6)
    assert result.nscb.accuracy is None and result.nscb.treatments == 0 and result.nscb.dropped_moas == ("X", "Y", "Z")


def test_joined_batches_overlap():
    data = frame([("a", "X", "B1;B2", [1.0]), ("b", "X", "B2", [1.0]), ("c", "Y", "B3", [1.0])])
    np.testing.assert_array_equal(excluded_pairs(data, exclude_batch=True),
                                  [[True, True, False], [True, True, False], [False, False, True]])


def holdout_models() -> tuple[pd.DataFrame, pd.DataFrame]:
    # model A: a->b right, b->d wrong, d->b wrong, c->d right; model B mirrors it (a<->b, c<->d)
    a = frame([("a", "X", "B1", _at(0)), ("b", "X", "B2", _at(10)), ("d", "Y", "B1", _at(19)),
               ("c", "Y", "B2", _at(29))])
    b = frame([("b", "X", "B1", _at(0)), ("a", "X", "B2", _at(10)), ("c", "Y", "B1", _at(19)),
               ("d", "Y", "B2", _at(29))])
    return a, b


def test_holdout_queries_each_compound_in_the_model_that_did_not_see_it():
    model_a, model_b = holdout_models()
    assert evaluate(model_a).nsc.accuracy == evaluate(model_b).nsc.accuracy == 0.5
    result = evaluate_holdout([(model_a, {"a", "c"}), (model_b, {"b", "d"})], batch=False)
    assert result.nsc.accuracy == 1.0 and result.nsc.treatments == 4 and result.nscb is None
    assert result.compound_level == 1.0 and result.not_evaluated == ()
    wrong = evaluate_holdout([(model_a, {"b", "d"}), (model_b, {"a", "c"})], batch=False)
    assert wrong.nsc.accuracy == 0.0


def test_holdout_lists_compounds_held_out_by_no_model():
    model_a, model_b = holdout_models()
    result = evaluate_holdout([(model_a, {"a"}), (model_b, {"b", "d"})])
    assert result.not_evaluated == ("c",)
    assert sorted(result.nsc.predictions[CPD]) == ["a", "b", "d"]
    assert result.nscb is not None


def test_errors():
    model_a, model_b = holdout_models()
    with pytest.raises(InvalidInput, match="held out by models 0 and 1"):
        evaluate_holdout([(model_a, {"a", "c"}), (model_b, {"a", "d"})])
    with pytest.raises(InvalidInput, match="Metadata_MoA"):
        evaluate(model_a.drop(columns=MOA))
    with pytest.raises(InvalidInput, match="metric"):
        evaluate(model_a, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        evaluate_holdout([])


def test_report_is_self_contained_and_escaped(rng, tmp_path):
    data = synthetic(rng, moas=3, compounds=4, concentrations=2, noise=1.5)
    data[MOA] = data[MOA].replace({"moa0": "<script>alert(1)</script>", "moa1": "Tubulin & co"})
    result = evaluate(data)
    path = write_report(result, data, tmp_path / "sub" / "report.html", title="Test <b>report</b>",
                        metric="cosine")
    text = path.read_text(encoding="utf-8")
    for heading in ("Summary", "Confusion matrix", "Per-MOA accuracy", "Treatment similarity", "t-SNE"):
        assert heading in text
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Test &lt;b&gt;report&lt;/b&gt;" in text and "Tubulin &amp; co" in text and "moa2" in text
    assert f"{result.nsc.accuracy:.3f}" in text and f"{result.map:.3f}" in text
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    assert len(images) >= 4
    for encoded in images:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
            assert image.format == "PNG" and image.size[0] > 100
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind
