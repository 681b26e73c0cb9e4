"""A synthetic high-content screen that behaves like BBBC021 (``bioims dataset synth``).

:func:`synthesize` writes it; :mod:`.design` holds the presets and the plate layout, :mod:`.phenotypes`
the MOAs and compounds, :mod:`.render` the cells and the microscope.
"""

from .design import PRESETS, Preset, design_screen
from .generate import IMAGE_CSV, MOA_CSV, synthesize

__all__ = ["IMAGE_CSV", "MOA_CSV", "PRESETS", "Preset", "design_screen", "synthesize"]
