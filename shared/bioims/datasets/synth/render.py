"""Rendering of synthetic fields: cells drawn channel by channel, then the microscope.

Each cell is drawn inside its own bounding box with vectorised numpy (no loops over pixels): a soft
elliptical cell and nucleus; DNA with chromatin texture, micronuclei, second nuclei, or a mitotic
figure (metaphase plate, monoastral ring, scattered chromosomes); tubulin as radial filaments,
peripheral bundles, diffuse cytoplasm, perinuclear accumulation, spindle poles or an aster; actin as
stress fibres, a cortical ring and puncta. Then the microscope: per-plate illumination (vignetting),
per-batch and per-plate gain and offset per channel, optional defocus, Poisson shot noise and Gaussian
read noise, 16-bit clipping. Debris, empty and saturated fields are added at low rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .phenotypes import TRAIT_INDEX, CellState

T = TRAIT_INDEX
BRIGHTNESS = np.array([1800.0, 700.0, 900.0], dtype=np.float32)
"""Peak photo-electrons of DNA, tubulin and actin in an untreated cell under flat illumination."""
CAMERA_OFFSET = 150.0
READ_NOISE = 6.0
SATURATION = 65535


@dataclass(frozen=True)
class Optics:
    """What the microscope adds to a field: illumination (3, H, W) in (0, 1], gains (3,), offsets (3,),
    defocus blur sigma (pixels, 0 = in focus)."""

    illumination: np.ndarray
    gain: np.ndarray
    offset: np.ndarray
    defocus: float = 0.0


def illumination_field(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A plate's illumination per channel, (3, H, W) float32 with maximum 1: radial vignetting around an
    off-centre optical axis (25-40 % loss in the corners) plus a gentle linear gradient."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = (0.5 + 0.08 * rng.standard_normal(2)) * (height, width)
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (0.25 * (height**2 + width**2))
    angle = rng.uniform(0, 2 * np.pi)
    gradient = ((yy / height - 0.5) * np.sin(angle) + (xx / width - 0.5) * np.cos(angle)).astype(np.float32)
    strength = rng.uniform(0.25, 0.4)
    fields = []
    for _ in range(3):
        f = 1.0 - strength * rng.uniform(0.9, 1.1) * r2 + 0.05 * rng.standard_normal() * gradient
        fields.append(f / f.max())
    return np.clip(np.stack(fields), 0.05, 1.0).astype(np.float32)


def smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise, unit standard deviation (textures)."""
    noise = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _soft(rho: np.ndarray, sharpness: float) -> np.ndarray:
    """Soft inside-mask of a normalised radius (1 at the centre, 0.5 on the boundary rho = 1)."""
    return 0.5 * (1.0 - np.tanh((rho - 1.0) * sharpness))


def _blob(dy: np.ndarray, dx: np.ndarray, y: float, x: float, sigma: float) -> np.ndarray:
    return np.exp(-((dy - y) ** 2 + (dx - x) ** 2) / (2.0 * sigma * sigma))


def draw_cell(canvas: np.ndarray, textures: np.ndarray, cy: float, cx: float, cell: CellState,
              nucleus_radius: float, rng: np.random.Generator) -> float:
    """Add one cell to ``canvas`` (3, H, W) float32 (relative brightness); returns its nucleus radius.

    ``textures`` (2, H, W) are smooth noise fields for chromatin and filament irregularity.
    """
    t = cell.traits
    r_n = nucleus_radius * float(np.exp(t[T["nuc_size"]]))
    r_c = 2.3 * nucleus_radius * float(np.exp(t[T["cell_size"]]))
    ratio_c = 1.35 * float(np.exp(t[T["cell_elong"]]))
    ratio_n = 1.15 * float(np.exp(t[T["nuc_elong"]]))
    if cell.mitotic:
        r_c, ratio_c = 0.65 * r_c, 1.05
    ratio_c, ratio_n = max(ratio_c, 1.0), max(ratio_n, 1.0)
    a_c, b_c = r_c * np.sqrt(ratio_c), r_c / np.sqrt(ratio_c)
    half = int(np.ceil(a_c + 3))
    _, height, width = canvas.shape
    y0, y1 = max(int(cy) - half, 0), min(int(cy) + half + 1, height)
    x0, x1 = max(int(cx) - half, 0), min(int(cx) + half + 1, width)
    if y0 >= y1 or x0 >= x1:
        return r_n
    dy = (np.arange(y0, y1, dtype=np.float32) - cy)[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) - cx)[None, :]
    theta = rng.uniform(0, np.pi)
    cos, sin = np.cos(theta), np.sin(theta)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    rho = np.sqrt((u / a_c) ** 2 + (v / b_c) ** 2)
    cell_mask = _soft(rho, r_c / 1.5)
    phi = np.arctan2(v, u)
    tex_dna, tex_fil = textures[0, y0:y1, x0:x1], textures[1, y0:y1, x0:x1]

    # ------------------------------------------------------------------ nucleus / DNA
    a_n, b_n = r_n * np.sqrt(ratio_n), r_n / np.sqrt(ratio_n)
    texture = float(np.clip(0.15 + t[T["nuc_texture"]], 0.0, 0.8))
    dna_int = float(np.exp(t[T["nuc_int"]]))
    dist = np.sqrt(u * u + v * v)
    if cell.mitotic == "metaphase":  # a bright bar: the metaphase plate
        rho_n = np.sqrt((u / (1.1 * r_n)) ** 2 + (v / (0.3 * r_n)) ** 2)
        dna = 2.2 * dna_int * _soft(rho_n, 4.0)
    elif cell.mitotic == "monoastral":  # Eg5: chromosomes in a ring around one aster
        dna = 2.0 * dna_int * np.exp(-((dist / r_n - 0.75) ** 2) / (2 * 0.15**2))
    elif cell.mitotic == "scattered":  # no spindle: condensed chromosomes scattered
        dna = np.zeros_like(dist)
        for _ in range(int(rng.integers(5, 9))):
            ang, rad = rng.uniform(0, 2 * np.pi), r_n * 0.9 * np.sqrt(rng.random())
            dna += 2.0 * dna_int * _blob(v, u, rad * np.sin(ang), rad * np.cos(ang), 0.3 * r_n)
    else:
        centres = [(0.0, 0.0)] if cell.nuclei == 1 else [(0.0, -0.9 * r_n), (0.0, 0.9 * r_n)]
        scale = 1.0 if cell.nuclei == 1 else 0.8
        dna = np.zeros_like(dist)
        for (oy, ox) in centres:
            rho_n = np.sqrt(((u - ox) / (scale * a_n)) ** 2 + ((v - oy) / (scale * b_n)) ** 2)
            dome = 0.85 + 0.15 * np.clip(1.0 - rho_n**2, 0.0, 1.0)
            dna += dna_int * _soft(rho_n, scale * r_n / 1.2) * dome * (1.0 + texture * tex_dna)
    for _ in range(cell.micronuclei):
        ang = rng.uniform(0, 2 * np.pi)
        dna += 1.3 * dna_int * _blob(v, u, 1.4 * r_n * np.sin(ang), 1.4 * r_n * np.cos(ang), 0.22 * r_n)

    # ------------------------------------------------------------------ tubulin
    fil = float(np.clip(0.55 + t[T["tub_fil"]], 0.0, 1.0))
    bundle = float(np.clip(t[T["tub_bundle"]], 0.0, 1.0))
    peri = float(np.clip(0.15 + t[T["tub_peri"]], 0.0, 1.0))
    k = int(rng.integers(10, 18))
    filaments = (0.5 + 0.5 * np.cos(k * phi + rng.uniform(0, 2 * np.pi) + 1.5 * tex_fil)) ** 3
    tub = 0.4 * (0.35 + 0.65 * np.clip(1.0 - rho, 0.0, 1.0)) + 0.8 * fil * filaments
    tub += 1.5 * bundle * np.exp(-((rho - 0.8) ** 2) / (2 * 0.06**2)) * (0.6 + 0.4 * np.cos(3 * phi))
    tub += 1.2 * peri * np.exp(-((dist / r_n - 1.3) ** 2) / (2 * 0.35**2))
    if peri > 0.45:  # an aggresome beside the nucleus
        ang = rng.uniform(0, 2 * np.pi)
        tub += 2.0 * peri * _blob(v, u, 1.3 * r_n * np.sin(ang), 1.3 * r_n * np.cos(ang), 0.35 * r_n)
    if cell.mitotic == "metaphase":  # two spindle poles across the plate
        tub = 0.5 * tub + 2.5 * (_blob(v, u, 1.1 * r_n, 0, 0.35 * r_n) + _blob(v, u, -1.1 * r_n, 0, 0.35 * r_n))
    elif cell.mitotic == "monoastral":  # one central aster
        tub = 0.5 * tub + 3.0 * _blob(v, u, 0, 0, 0.4 * r_n)
    elif cell.mitotic == "scattered":  # depolymerised: diffuse
        tub = 0.9 * (0.35 + 0.65 * np.clip(1.0 - rho, 0.0, 1.0))
    tub *= float(np.exp(t[T["tub_int"]])) * cell_mask

    # ------------------------------------------------------------------ actin
    fib = float(np.clip(0.5 + t[T["act_fib"]], 0.0, 1.0))
    cort = float(np.clip(0.1 + t[T["act_cort"]], 0.0, 1.0))
    punct = float(np.clip(t[T["act_punct"]], 0.0, 1.0))
    spacing = max(2.5, 0.35 * nucleus_radius)
    fibres = (0.5 + 0.5 * np.cos(2 * np.pi * v / spacing + rng.uniform(0, 2 * np.pi) + 0.8 * tex_fil)) ** 6
    act = cell_mask * (0.4 + 0.9 * fib * fibres) + 1.2 * cort * np.exp(-((rho - 0.95) ** 2) / (2 * 0.05**2))
    for _ in range(int(round(punct * 12))):
        ang, rad = rng.uniform(0, 2 * np.pi), 0.85 * np.sqrt(rng.random())
        act += 2.5 * _blob(v, u, rad * b_c * np.sin(ang), rad * a_c * np.cos(ang), 0.15 * r_n)
    act *= float(np.exp(t[T["act_int"]]))

    canvas[0, y0:y1, x0:x1] += dna
    canvas[1, y0:y1, x0:x1] += tub
    canvas[2, y0:y1, x0:x1] += act
    return r_n


def draw_debris(canvas: np.ndarray, rng: np.random.Generator, nucleus_radius: float) -> None:
    """A few bright specks that are not cells (dust, dead-cell fragments)."""
    _, height, width = canvas.shape
    for _ in range(int(rng.poisson(1.5))):
        y, x = rng.uniform(0, height), rng.uniform(0, width)
        sigma = rng.uniform(0.1, 0.2) * nucleus_radius
        half = int(3 * sigma) + 1
        y0, y1, x0, x1 = max(int(y) - half, 0), min(int(y) + half + 1, height), max(int(x) - half, 0), \
            min(int(x) + half + 1, width)
        dy = (np.arange(y0, y1, dtype=np.float32) - y)[:, None]
        dx = (np.arange(x0, x1, dtype=np.float32) - x)[None, :]
        blob = _blob(dy, dx, 0.0, 0.0, sigma)
        channels = [0] if rng.random() < 0.6 else [0, 1, 2]
        for c in channels:
            canvas[c, y0:y1, x0:x1] += 3.0 * blob


def draw_saturated_artifact(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """A large very bright object (fluorescent fibre or bubble) that saturates the detector."""
    _, height, width = canvas.shape
    dy = (np.arange(height, dtype=np.float32) - rng.uniform(0, height))[:, None]
    dx = (np.arange(width, dtype=np.float32) - rng.uniform(0, width))[None, :]
    canvas += 60.0 * _blob(dy, dx, 0.0, 0.0, 0.12 * width)[None]


def microscope(canvas: np.ndarray, optics: Optics, rng: np.random.Generator) -> np.ndarray:
    """Relative brightness (3, H, W) -> camera counts, uint16 (3, H, W)."""
    signal = canvas * (BRIGHTNESS * optics.gain)[:, None, None] * optics.illumination
    if optics.defocus > 0:
        signal = gaussian_filter(signal, (0, optics.defocus, optics.defocus))
    expected = np.maximum(signal + optics.offset[:, None, None], 0.0)
    counts = rng.poisson(expected).astype(np.float32) + rng.normal(0.0, READ_NOISE, expected.shape).astype(np.float32)
    return np.clip(np.rint(counts), 0, SATURATION).astype(np.uint16)
