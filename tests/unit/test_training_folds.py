"""Hold-out plans: compound folds (at most one compound per MOA, balanced, seeded) and the three modes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from bioims.errors import InvalidInput
from bioims.training.folds import annotated_compounds, compound_folds, holdout_plan, min_folds


def structure(moas: int, per_moa: int | list[int]) -> dict[str, str]:
    """compound -> MOA with ``per_moa`` compounds in each MOA (one count, or one per MOA)."""
    counts = [per_moa] * moas if isinstance(per_moa, int) else per_moa
    return {f"cpd{m}_{i}": f"moa{m}" for m, n in enumerate(counts) for i in range(n)}


def check_plan(plan: list[list[str]], compound_moa: dict[str, str], folds: int) -> None:
    """Every compound in exactly one fold, no MOA twice in a fold, sizes within one, folds sorted."""
    assert len(plan) == folds
    placed = Counter(c for fold in plan for c in fold)
    assert set(placed) == set(compound_moa) and set(placed.values()) == {1}
    for fold in plan:
        moas = [compound_moa[c] for c in fold]
        assert len(moas) == len(set(moas)), fold
        assert fold == sorted(fold)
    sizes = [len(f) for f in plan]
    assert max(sizes) - min(sizes) <= 1, sizes


@pytest.mark.parametrize("folds", [3, 5, 27])
def test_nine_moas_of_three_compounds_are_partitioned_evenly(folds):
    compound_moa = structure(9, 3)
    check_plan(compound_folds(compound_moa, folds, seed=0), compound_moa, folds)


def test_folds_are_deterministic_for_a_seed_and_differ_between_seeds():
    compound_moa = structure(9, 3)
    assert compound_folds(compound_moa, 3, seed=4) == compound_folds(compound_moa, 3, seed=4)
    plans = {tuple(map(tuple, compound_folds(compound_moa, 3, seed=s))) for s in range(6)}
    assert len(plans) > 1


@pytest.mark.parametrize("seed", range(8))
def test_random_moa_structures_give_valid_balanced_plans(seed):
    """Property test: any MOA structure and any K from the largest MOA to the compound count."""
    rng = np.random.default_rng(seed)
    counts = [int(c) for c in rng.integers(1, 7, size=int(rng.integers(1, 14)))]
    compound_moa = structure(len(counts), counts)
    assert min_folds(compound_moa) == max(counts)
    for folds in sorted({max(counts), int(rng.integers(max(counts), len(compound_moa) + 1)), len(compound_moa)}):
        plan = compound_folds(compound_moa, folds, seed=int(rng.integers(1000)))
        check_plan(plan, compound_moa, folds)


def test_invalid_fold_counts_are_refused():
    compound_moa = structure(3, [4, 2, 1])  # 7 compounds, largest MOA 4
    for folds in (3, 8, 0):
        with pytest.raises(InvalidInput, match="folds must be between 4"):
            compound_folds(compound_moa, folds)
    with pytest.raises(InvalidInput, match="no annotated compounds"):
        compound_folds({}, 3)
    check_plan(compound_folds(compound_moa, 4), compound_moa, 4)
    check_plan(compound_folds(compound_moa, 7), compound_moa, 7)


MIXED = {"taxol": "Microtubule stabilizers", "docetaxel": "Microtubule stabilizers",
         "nocodazole": "Microtubule destabilizers", "DMSO": "DMSO", "vehicle": "DMSO",
         "DMSO_alias": None, "unlabelled": None, "blank": ""}


def test_holdout_none_is_one_run_seeing_everything():
    assert holdout_plan("none", MIXED) == [[]]


def test_holdout_compound_leaves_out_each_annotated_compound_never_the_control():
    assert annotated_compounds(MIXED) == {"taxol": "Microtubule stabilizers",
                                          "docetaxel": "Microtubule stabilizers",
                                          "nocodazole": "Microtubule destabilizers"}
    assert holdout_plan("compound", MIXED) == [["docetaxel"], ["nocodazole"], ["taxol"]]
    for controls_only in ({"DMSO": "Actin disruptors", "c": "DMSO"}, {"DMSO": "DMSO", "c": None}):
        with pytest.raises(InvalidInput, match="no annotated compounds"):
            holdout_plan("compound", controls_only)


def test_holdout_folds_raises_k_to_the_largest_moa_and_skips_controls():
    compound_moa = {**structure(4, [6, 2, 2, 1]), "DMSO": "DMSO", "ctrl": "DMSO", "x": None}
    plan = holdout_plan("folds", compound_moa, folds=5, seed=1)
    annotated = annotated_compounds(compound_moa)
    assert len(annotated) == 11
    check_plan(plan, annotated, 6)
    assert holdout_plan("folds", compound_moa, folds=5, seed=1) == plan
    check_plan(holdout_plan("folds", compound_moa, folds=8), annotated, 8)
    check_plan(holdout_plan("folds", compound_moa, folds=50), annotated, 11)  # capped at the compounds


def test_unknown_holdout_mode_is_refused():
    with pytest.raises(InvalidInput, match="holdout must be one of none, compound, folds"):
        holdout_plan("leave-one-out", MIXED)


def test_holdout_folds_without_annotated_compounds_is_refused():
    with pytest.raises(InvalidInput, match="no annotated compounds"):
        holdout_plan("folds", {"DMSO": "DMSO", "c": None})
