"""The design of a synthetic screen: presets, compounds, batches, plates and well layout.

The layout follows BBBC021: plates in weekly batches; a treatment (compound x concentration) is imaged
in one batch, its replicates on different plates of that batch; a compound's concentrations are spread
over the batches of its MOA; an MOA's compounds share a few "home" batches (so a batch effect helps a
naive nearest-neighbour search to same-batch treatments of the same MOA, and NSCB < NSC), except a few
MOAs present in one batch only; DMSO control wells on every plate. 96-well plates, treatments in the
inner 60 wells (rows B-G, columns 2-11).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ...errors import InvalidInput
from .phenotypes import DMSO, MOA_BY_NAME, Compound, make_compound

ROWS = "BCDEFG"
COLUMNS = range(2, 12)
INNER_WELLS = tuple(f"{r}{c:02d}" for r in ROWS for c in COLUMNS)
CHANNELS = ("DAPI", "Tubulin", "Actin")
CHANNEL_CODES = ("w1", "w2", "w4")
"""BBBC021's file-name codes of the DNA, tubulin and actin channels."""


@dataclass(frozen=True)
class Preset:
    """Size and structure of a synthetic screen.

    Attributes
    ----------
    moas : tuple of (MOA name, concentrations per compound)
        One entry per MOA; its tuple has one number of doses per compound.
    batches : int
        Weekly batches.
    replicates : int
        Replicate wells per treatment (= plates per batch: one replicate per plate).
    single_batch_moas : tuple of str
        MOAs whose treatments all sit in one batch (dropped by NSCB, as in BBBC021).
    moa_span : int
        Batches an MOA's treatments are spread over.
    dmso_wells : int
        DMSO control wells per plate.
    sites : int
        Fields (sites) per well.
    height, width : int
        Field size in pixels.
    nucleus_radius : float
        Median nucleus radius of an untreated cell, pixels.
    cells_per_field : float
        Mean number of untreated cells per field.
    """

    name: str
    moas: tuple[tuple[str, tuple[int, ...]], ...]
    batches: int
    replicates: int
    single_batch_moas: tuple[str, ...]
    moa_span: int
    dmso_wells: int
    sites: int
    height: int
    width: int
    nucleus_radius: float
    cells_per_field: float

    def with_options(self, **options: Any) -> Preset:
        """A copy with some fields changed (``sites=4``, ``batches=12``, ...), validated."""
        unknown = set(options) - set(self.__dataclass_fields__)
        if unknown:
            raise InvalidInput(f"unknown synth option(s): {', '.join(sorted(unknown))}")
        preset = replace(self, **options)
        preset.validate()
        return preset

    def validate(self) -> None:
        for name in ("batches", "replicates", "moa_span", "dmso_wells", "sites", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "dmso_wells" else 1):
                raise InvalidInput(f"synth option {name} must be an integer >= {0 if name == 'dmso_wells' else 1}, "
                                   f"got {value!r}")
        for name in ("nucleus_radius", "cells_per_field"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise InvalidInput(f"synth option {name} must be a positive number, got {value!r}")
        if self.moa_span > self.batches:
            raise InvalidInput(f"moa_span ({self.moa_span}) cannot exceed batches ({self.batches})")
        unknown = [m for m, _ in self.moas if m not in MOA_BY_NAME]
        if unknown:
            raise InvalidInput(f"unknown MOA(s) {unknown}; known: {sorted(MOA_BY_NAME)}")


# BBBC021's annotated treatment structure: 12 MOAs, 38 compounds, 103 treatments.
_BBBC021_STRUCTURE: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Actin disruptors", (2, 1, 2)),
    ("Aurora kinase inhibitors", (6, 3, 3)),
    ("Cholesterol-lowering", (3, 3)),
    ("DNA damage", (1, 1, 3, 4)),
    ("DNA replication", (3, 2, 1, 2)),
    ("Eg5 inhibitors", (7, 5)),
    ("Epithelial", (3, 3, 2)),
    ("Kinase inhibitors", (2, 2, 1)),
    ("Microtubule destabilizers", (1, 4, 2, 7)),
    ("Microtubule stabilizers", (3, 3, 3)),
    ("Protein degradation", (2, 2, 1, 2)),
    ("Protein synthesis", (2, 3, 3)),
)

PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", (("Microtubule stabilizers", (2, 2)), ("Microtubule destabilizers", (2, 2)),
                            ("Actin disruptors", (2, 2)), ("Protein synthesis", (2, 2))),
                   batches=2, replicates=2, single_batch_moas=(), moa_span=2, dmso_wells=2, sites=1,
                   height=128, width=160, nucleus_radius=7.0, cells_per_field=14),
    "demo": Preset("demo", tuple((m, (3, 3, 3)) for m in (
        "Microtubule stabilizers", "Microtubule destabilizers", "Eg5 inhibitors", "Actin disruptors",
        "DNA damage", "Aurora kinase inhibitors", "Protein synthesis", "Epithelial", "Kinase inhibitors")),
        batches=4, replicates=3, single_batch_moas=("Kinase inhibitors",), moa_span=2, dmso_wells=4, sites=2,
        height=256, width=320, nucleus_radius=8.0, cells_per_field=34),
    "full": Preset("full", _BBBC021_STRUCTURE, batches=10, replicates=3,
                   single_batch_moas=("Cholesterol-lowering", "Kinase inhibitors"), moa_span=2, dmso_wells=3,
                   sites=3, height=1024, width=1280, nucleus_radius=12.0, cells_per_field=120),
}


@dataclass(frozen=True)
class WellPlan:
    plate: str
    batch: str
    well: str
    compound: str
    concentration: float
    moa: str
    replicate: int


@dataclass(frozen=True)
class Design:
    preset: Preset
    seed: int
    compounds: tuple[Compound, ...]
    plates: tuple[tuple[str, str], ...]  # (plate name, batch)
    wells: tuple[WellPlan, ...]

    def compound(self, name: str) -> Compound:
        return next(c for c in self.compounds if c.name == name)


def _abbreviation(moa: str) -> str:
    return "".join(word[0] for word in moa.replace("-", " ").split()).upper()


def design_screen(preset: Preset, seed: int) -> Design:
    """Compounds, plates and the well layout of a screen (deterministic for ``seed``)."""
    preset.validate()
    rng = np.random.default_rng([seed, 1])
    batches = [f"Week{b + 1}" for b in range(preset.batches)]
    plate_numbers = rng.choice(np.arange(10000, 99999), size=preset.batches * preset.replicates, replace=False)
    plates = [(f"{batch}_{plate_numbers[b * preset.replicates + r]}", batch)
              for b, batch in enumerate(batches) for r in range(preset.replicates)]
    compounds: list[Compound] = []
    treatments: dict[str, list[tuple[str, float]]] = {b: [] for b in batches}  # batch -> (compound, conc)
    multi = [m for m, _ in preset.moas if m not in preset.single_batch_moas]
    for moa_name, doses in preset.moas:
        moa = MOA_BY_NAME[moa_name]
        if moa_name in preset.single_batch_moas:
            home = [batches[int(rng.integers(preset.batches))]]
        else:
            start = (multi.index(moa_name) * max(1, preset.batches // max(1, len(multi)) + 1)) % preset.batches
            home = [batches[(start + j) % preset.batches] for j in range(preset.moa_span)]
        for ci, n_doses in enumerate(doses):
            compound = make_compound(f"{_abbreviation(moa_name)}-{ci + 1}", moa, n_doses, rng)
            compounds.append(compound)
            for k, conc in enumerate(compound.concentrations):
                treatments[home[(ci + k) % len(home)]].append((compound.name, conc))
    by_name = {c.name: c for c in compounds}
    wells: list[WellPlan] = []
    for plate_index, (plate, batch) in enumerate(plates):
        replicate = plate_index % preset.replicates
        content = [(DMSO, 0.0)] * preset.dmso_wells + treatments[batch]
        if len(content) > len(INNER_WELLS):
            raise InvalidInput(f"batch {batch} needs {len(content)} wells per plate, a plate has "
                               f"{len(INNER_WELLS)}: add batches or reduce the design")
        positions = rng.permutation(len(INNER_WELLS))[:len(content)]
        for (compound_name, conc), pos in zip(content, positions):
            moa = DMSO if compound_name == DMSO else by_name[compound_name].moa
            wells.append(WellPlan(plate, batch, INNER_WELLS[pos], compound_name, conc, moa, replicate + 1))
    wells.sort(key=lambda w: (w.plate, w.well))
    return Design(preset, seed, tuple(compounds), tuple(plates), tuple(wells))
