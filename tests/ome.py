"""Write OME-TIFF fields for the tests with tifffile (OME-Zarr plates: :func:`bioims.datasets.omezarr.write_plate`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile


def write_ome_tiff(path: Path, series: Sequence[np.ndarray], channels: Sequence[str]) -> Path:
    """An OME-TIFF at ``path`` with one series per array ((C, Y, X) or (C, Z, Y, X)), channels named."""
    with tifffile.TiffWriter(path, ome=True) as tif:
        for pixels in series:
            tif.write(pixels, photometric="minisblack",
                      metadata={"axes": "CZYX" if pixels.ndim == 4 else "CYX", "Channel": {"Name": list(channels)}})
    return path
