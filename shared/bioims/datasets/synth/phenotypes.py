"""Phenotypes of the synthetic screen: cell traits, mechanisms of action (MOAs), compounds, dose response.

A cell is described by continuous *traits* (log-multipliers of sizes and intensities, or contrasts of
structures) plus discrete states (mitotic arrest and its mode, micronuclei, extra nuclei). A DMSO cell
has every trait at 0 plus natural variation. An MOA is a characteristic shift of traits and states;
each compound of an MOA adds its own off-target shift and has its own potency, so that learning
compound identity instead of MOA does not transfer to held-out compounds. Dose response: the fraction
of responding cells and their response strength rise with concentration (Hill curve), so the lowest
doses of weak compounds look almost like DMSO.

Some MOAs resemble each other on purpose, as in BBBC021: microtubule stabilisers, destabilisers and
Eg5 inhibitors all arrest mitosis but differ in tubulin structure (bundles / diffuse / monoastral
spindles); DNA damage, DNA replication and Aurora kinase inhibitors all enlarge nuclei.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRAITS: tuple[str, ...] = (
    "nuc_size",     # log multiplier of the nucleus radius
    "nuc_elong",    # log multiplier of the nucleus axis ratio
    "nuc_int",      # log multiplier of DNA intensity
    "nuc_texture",  # chromatin texture contrast (additive)
    "cell_size",    # log multiplier of the cell radius
    "cell_elong",   # log multiplier of the cell axis ratio
    "tub_int",      # log multiplier of tubulin intensity
    "tub_fil",      # microtubule filament contrast (additive)
    "tub_bundle",   # peripheral microtubule bundles (additive)
    "tub_peri",     # perinuclear tubulin accumulation (additive; aggresomes)
    "act_int",      # log multiplier of actin intensity
    "act_fib",      # stress-fibre contrast (additive)
    "act_cort",     # cortical actin ring (additive)
    "act_punct",    # actin aggregates / puncta (additive)
)
TRAIT_INDEX = {name: i for i, name in enumerate(TRAITS)}

NATURAL_SD = np.array([0.10, 0.10, 0.12, 0.05, 0.12, 0.15, 0.12, 0.08, 0.04, 0.06, 0.12, 0.08, 0.05, 0.03],
                      dtype=np.float32)
"""Cell-to-cell standard deviation of each trait in an untreated population."""

MITOTIC_MODES = ("metaphase", "monoastral", "scattered")
DMSO_MITOTIC = 0.03
"""Fraction of untreated cells caught in mitosis (metaphase)."""


@dataclass(frozen=True)
class Moa:
    """A mechanism of action: trait shifts at full response, and discrete states.

    ``mitotic`` is the probability that a fully responding cell is arrested in mitosis (in
    ``mitotic_mode``); ``micronuclei`` and ``multinucleate`` probabilities of those states;
    ``toxicity`` the fraction of cells lost at full response; ``clustering`` how strongly cells
    gather into colonies.
    """

    name: str
    delta: dict[str, float]
    mitotic: float = 0.0
    mitotic_mode: str = "metaphase"
    micronuclei: float = 0.0
    multinucleate: float = 0.0
    toxicity: float = 0.0
    clustering: float = 0.0

    def delta_vector(self) -> np.ndarray:
        vec = np.zeros(len(TRAITS), dtype=np.float32)
        for trait, value in self.delta.items():
            vec[TRAIT_INDEX[trait]] = value
        return vec


MOAS: tuple[Moa, ...] = (
    Moa("Actin disruptors", {"act_fib": -0.45, "act_punct": 0.7, "act_int": 0.2, "cell_size": -0.15},
        multinucleate=0.2),
    Moa("Aurora kinase inhibitors", {"nuc_size": 0.45, "cell_size": 0.35, "nuc_int": 0.1, "nuc_elong": 0.2},
        multinucleate=0.35),
    Moa("Cholesterol-lowering", {"cell_size": 0.15, "act_fib": -0.2, "tub_peri": 0.25, "nuc_texture": 0.08}),
    Moa("DNA damage", {"nuc_size": 0.3, "nuc_texture": 0.25, "cell_size": 0.3, "cell_elong": 0.1},
        micronuclei=0.3, toxicity=0.25),
    Moa("DNA replication", {"nuc_size": 0.2, "nuc_int": 0.3, "nuc_texture": -0.05, "cell_size": 0.1},
        toxicity=0.15),
    Moa("Eg5 inhibitors", {"tub_peri": 0.15, "cell_size": -0.1}, mitotic=0.6, mitotic_mode="monoastral"),
    Moa("Epithelial", {"act_cort": 0.5, "act_fib": -0.3, "cell_size": -0.15, "cell_elong": -0.25},
        clustering=0.75),
    Moa("Kinase inhibitors", {"cell_elong": 0.5, "act_fib": -0.2, "tub_fil": 0.15, "cell_size": 0.1}),
    Moa("Microtubule destabilizers", {"tub_fil": -0.55, "tub_int": -0.1, "cell_size": -0.2},
        mitotic=0.5, mitotic_mode="scattered", toxicity=0.1),
    Moa("Microtubule stabilizers", {"tub_bundle": 0.7, "tub_fil": -0.1, "tub_int": 0.2},
        mitotic=0.5, mitotic_mode="metaphase", micronuclei=0.3),
    Moa("Protein degradation", {"tub_peri": 0.7, "nuc_size": -0.1, "act_int": -0.1}, micronuclei=0.1,
        toxicity=0.2),
    Moa("Protein synthesis", {"tub_int": -0.35, "act_int": -0.35, "nuc_texture": -0.05, "cell_size": -0.2,
                              "nuc_int": -0.1}),
)
MOA_BY_NAME = {m.name: m for m in MOAS}
DMSO = "DMSO"
CONTROL = Moa(DMSO, {})


@dataclass(frozen=True)
class Compound:
    """A compound of an MOA: its own potency (EC50, same unit as concentrations), Hill slope, maximal
    responding fraction and off-target trait shift."""

    name: str
    moa: str
    concentrations: tuple[float, ...]
    ec50: float
    hill: float
    efficacy: float
    off_target: np.ndarray = field(repr=False, compare=False)

    def response(self, concentration: float) -> float:
        """Fraction of responding cells at a concentration, in [0, efficacy]."""
        if concentration <= 0:
            return 0.0
        x = (concentration / self.ec50) ** self.hill
        return float(self.efficacy * x / (1.0 + x))


def make_compound(name: str, moa: Moa, n_concentrations: int, rng: np.random.Generator) -> Compound:
    """A compound with a 3-fold dilution series of ``n_concentrations`` doses (top dose 1-30 uM) whose
    EC50 lies between the second-lowest (lowest, for fewer than three doses) and the top dose, so
    low doses can look like DMSO,, and an
    off-target shift of about 40 % of the MOA's own."""
    top = float(10 ** rng.uniform(0.0, 1.5))
    concentrations = tuple(round(top / 3.0 ** k, 6) for k in reversed(range(n_concentrations)))
    low, high = np.log(concentrations[1 if n_concentrations > 2 else 0]), np.log(concentrations[-1])
    ec50 = float(np.exp(rng.uniform(low, max(low, high))))
    delta = moa.delta_vector()
    scale = 0.4 * max(float(np.linalg.norm(delta)), 0.3)
    direction = rng.standard_normal(len(TRAITS)).astype(np.float32)
    off_target = (scale * direction / np.linalg.norm(direction)).astype(np.float32)
    return Compound(name, moa.name, concentrations, ec50, float(rng.uniform(1.0, 2.0)),
                    float(rng.uniform(0.8, 1.0)), off_target)


@dataclass(frozen=True)
class CellState:
    """One cell's phenotype. ``traits`` is a float32 vector over :data:`TRAITS`."""

    traits: np.ndarray
    responding: bool
    mitotic: str  # "" or one of MITOTIC_MODES
    micronuclei: int
    nuclei: int
    phenotype: str  # the MOA whose response the cell shows, or "DMSO"


def sample_cell(moa: Moa, compound: Compound | None, fraction: float, rng: np.random.Generator) -> CellState:
    """Draw one cell of a well treated with ``compound`` (None for DMSO) at a responding ``fraction``."""
    traits = rng.standard_normal(len(TRAITS)).astype(np.float32) * NATURAL_SD
    responding = compound is not None and rng.random() < fraction
    mitotic, micronuclei, nuclei, phenotype = "", 0, 1, DMSO
    if responding:
        assert compound is not None
        strength = 0.5 + 0.5 * fraction + 0.15 * rng.standard_normal()
        traits += strength * (moa.delta_vector() + compound.off_target)
        phenotype = moa.name
        if rng.random() < moa.mitotic * strength:
            mitotic = moa.mitotic_mode
        if rng.random() < moa.micronuclei * strength:
            micronuclei = int(rng.integers(1, 5))
        if rng.random() < moa.multinucleate * strength:
            nuclei = 2
    if not mitotic and rng.random() < DMSO_MITOTIC:
        mitotic = "metaphase"
    return CellState(traits, responding, mitotic, micronuclei, nuclei, phenotype)
