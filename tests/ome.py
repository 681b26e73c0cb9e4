"""Write OME-Zarr HCS plates and OME-TIFF fields for the tests and benchmarks, with maintained writers:
ngff-zarr (NGFF 0.4 on Zarr v2, 0.5 on Zarr v3) and tifffile (OME-TIFF)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tifffile


def write_plate(path: Path, fields: Mapping[str, Sequence[np.ndarray]], channels: Sequence[str], *,
                version: str = "0.5", name: str | None = None, levels: int = 1) -> Path:
    """An OME-Zarr plate at ``path``: ``fields`` maps a well (``"B03"``) to its fields, each a (C, Y, X) or
    (C, Z, Y, X) array; channels are ``omero`` labels; ``levels`` pyramid levels (each halving Y and X)."""
    import ngff_zarr as nz

    wells = sorted(fields)
    split = {w: re.fullmatch(r"([A-Z]+)(\d+)", w).groups() for w in wells}  # type: ignore[union-attr]
    rows = sorted({r for r, _ in split.values()})
    columns = sorted({str(int(c)) for _, c in split.values()}, key=int)
    plate = nz.Plate(
        rows=[nz.PlateRow(name=r) for r in rows], columns=[nz.PlateColumn(name=c) for c in columns],
        wells=[nz.PlateWell(path=f"{r}/{int(c)}", rowIndex=rows.index(r), columnIndex=columns.index(str(int(c))))
               for r, c in (split[w] for w in wells)],
        name=name, field_count=max(len(f) for f in fields.values()), version=version)
    nz.to_hcs_zarr(nz.HCSPlate(str(path), plate), str(path))
    for well in wells:
        row, column = split[well]
        for index, pixels in enumerate(fields[well]):
            dims = ["c", "z", "y", "x"][-pixels.ndim:] if pixels.ndim == 4 else ["c", "y", "x"]
            image = nz.to_ngff_image(pixels, dims=dims)
            multiscales = nz.to_multiscales(image, scale_factors=[2**k for k in range(1, levels)])
            top = float(np.iinfo(pixels.dtype).max) if pixels.dtype.kind in "ui" else float(pixels.max())
            multiscales.metadata.omero = nz.Omero(channels=[
                nz.OmeroChannel(label=c, color="FFFFFF", window=nz.OmeroWindow(min=0, max=top, start=0, end=top))
                for c in channels])
            nz.write_hcs_well_image(str(path), multiscales, plate, row, str(int(column)), field_index=index,
                                    version=version)
    return path


def write_ome_tiff(path: Path, series: Sequence[np.ndarray], channels: Sequence[str]) -> Path:
    """An OME-TIFF at ``path`` with one series per array ((C, Y, X) or (C, Z, Y, X)), channels named."""
    with tifffile.TiffWriter(path, ome=True) as tif:
        for pixels in series:
            tif.write(pixels, photometric="minisblack",
                      metadata={"axes": "CZYX" if pixels.ndim == 4 else "CYX", "Channel": {"Name": list(channels)}})
    return path
