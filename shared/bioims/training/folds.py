"""Hold-out plans: the compounds each train run must not see.

- ``none``: one run that sees every compound (the baseline);
- ``compound``: one run per annotated compound (the seed's leave-one-compound-out, 38 runs on BBBC021);
- ``folds``: K runs whose held-out sets partition the annotated compounds, each holding out at most one
  compound per MOA, so every MOA keeps training examples from its other compounds in every run.

Annotated compounds are those with an MOA label other than the control (DMSO), which is never held out.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from ..contract.enums import Holdout, values
from ..errors import InvalidInput
from ..profiles.pipeline import CONTROL

HOLDOUT_MODES = values(Holdout)


def annotated_compounds(compound_moa: Mapping[str, str | None]) -> dict[str, str]:
    """The compounds that can be held out: an MOA label, not the control."""
    return {c: m for c, m in compound_moa.items() if m and m != CONTROL and c != CONTROL}


def min_folds(compound_moa: Mapping[str, str]) -> int:
    """The fewest folds that hold out at most one compound per MOA: the largest MOA's compound count."""
    per_moa: dict[str, int] = defaultdict(int)
    for moa in compound_moa.values():
        per_moa[moa] += 1
    return max(per_moa.values(), default=0)


def compound_folds(compound_moa: Mapping[str, str], folds: int, seed: int = 0) -> list[list[str]]:
    """Partition the compounds into ``folds`` held-out sets, at most one compound per MOA in each.

    MOAs with the most compounds are placed first; each compound goes to the emptiest fold (random
    tie-break) that does not yet hold its MOA, so fold sizes differ by at most one where the MOA
    structure allows. Deterministic for a seed.

    Parameters
    ----------
    compound_moa : mapping of compound -> MOA
        The annotated compounds (see :func:`annotated_compounds`).
    folds : int
        K; at least :func:`min_folds` and at most the number of compounds.

    Returns
    -------
    list of K sorted lists of compounds
    """
    n = len(compound_moa)
    if n == 0:
        raise InvalidInput("no annotated compounds (compounds with an MOA other than DMSO) to hold out")
    need = min_folds(compound_moa)
    if not need <= folds <= n:
        raise InvalidInput(f"folds must be between {need} (the most compounds of one MOA) and {n} (the "
                           f"annotated compounds), got {folds}")
    rng = np.random.default_rng(seed)
    by_moa: dict[str, list[str]] = defaultdict(list)
    for compound, moa in sorted(compound_moa.items()):
        by_moa[moa].append(compound)
    plan: list[list[str]] = [[] for _ in range(folds)]
    for moa in sorted(by_moa, key=lambda m: (-len(by_moa[m]), m)):
        compounds = [by_moa[moa][i] for i in rng.permutation(len(by_moa[moa]))]
        used: set[int] = set()
        for compound in compounds:
            free = [k for k in range(folds) if k not in used]
            smallest = min(len(plan[k]) for k in free)
            choices = [k for k in free if len(plan[k]) == smallest]
            k = choices[int(rng.integers(len(choices)))]
            plan[k].append(compound)
            used.add(k)
    return [sorted(fold) for fold in plan]


def holdout_plan(mode: str, compound_moa: Mapping[str, str | None], *, folds: int = 5,
                 seed: int = 0) -> list[list[str]]:
    """The held-out compound lists of the runs of one hold-out mode (see the module docstring).

    For ``folds``, K is raised to :func:`min_folds` when an MOA has more compounds than ``folds``."""
    if mode not in HOLDOUT_MODES:
        raise InvalidInput(f"holdout must be one of {', '.join(HOLDOUT_MODES)}, got {mode!r}")
    if mode == Holdout.NONE:
        return [[]]
    annotated = annotated_compounds(compound_moa)
    if mode == Holdout.COMPOUND:
        if not annotated:
            raise InvalidInput("no annotated compounds (compounds with an MOA other than DMSO) to hold out")
        return [[c] for c in sorted(annotated)]
    k = min(max(folds, min_folds(annotated)), len(annotated)) if annotated else folds
    return compound_folds(annotated, k, seed)


def parse_image_ids(data: bytes, source: str) -> list[str]:
    """The image ids of a training filter file: a JSON list of strings, or one id per line (the seed's
    filter files). :class:`InvalidInput` names ``source`` when it is neither.

    >>> parse_image_ids(b"a1\\nb2\\n", "f.txt"), parse_image_ids(b'["a1"]', "f.json")
    (['a1', 'b2'], ['a1'])
    """
    text = data.decode("utf-8", errors="replace")
    try:
        ids = json.loads(text) if text.lstrip().startswith("[") else text.split()
    except json.JSONDecodeError as e:
        raise InvalidInput(f"training filter {source} is not a JSON list: {e}") from None
    if not all(isinstance(i, str) and i for i in ids):
        raise InvalidInput(f"training filter {source} must list image ids (strings)")
    return ids
