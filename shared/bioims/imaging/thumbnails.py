"""Colour composites and PNG thumbnails of multi-channel fields.

A *colour max-projection* shows every channel at once: each channel is contrast-stretched between
two of its own percentiles, tinted with its colour, and the RGB composite takes, per pixel and per
RGB component, the maximum over channels (so overlapping signals do not saturate to white the way
additive blending does).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..errors import InvalidInput
from .dtypes import check_real_dtype

__all__ = ["DEFAULT_COLORS", "channel_pngs", "color_max_projection", "png_bytes", "thumbnail_png"]

Color = tuple[float, float, float]

DEFAULT_COLORS: tuple[Color, ...] = (
    (0.0, 0.0, 1.0),  # blue: channel 0, DNA (DAPI / Hoechst)
    (0.0, 1.0, 0.0),  # green
    (1.0, 0.0, 0.0),  # red
    (1.0, 0.0, 1.0),  # magenta
    (0.0, 1.0, 1.0),  # cyan
    (1.0, 1.0, 0.0),  # yellow
    (0.5, 0.5, 0.5),  # grey
)
"""Channel colours (RGB in [0, 1]) used when none are given; they repeat after the seventh channel."""


def color_max_projection(
    field: np.ndarray,
    *,
    colors: Sequence[Color] | None = None,
    low: float = 1.0,
    high: float = 99.8,
) -> np.ndarray:
    """Render a multi-channel field as one RGB image.

    Parameters
    ----------
    field : (C, H, W) or (C, Z, H, W) ndarray of any real dtype
        Channels first. A z-stack is maximum-projected along Z first.
    colors : sequence of (r, g, b) tuples, optional
        One colour per channel, components in [0, 1]; at least C of them (extra ones are ignored).
        Default :data:`DEFAULT_COLORS`, cycled: blue, green, red, magenta, cyan, yellow, grey.
    low, high : float, optional
        Percentiles (0 <= low < high <= 100) of each channel mapped to 0 and 1; values outside are
        clipped. A channel whose two percentiles are equal (e.g. constant, or a few bright pixels
        on a dark background) is shown as 0 where it is <= that value and 1 where it is above.
        Non-finite values (NaN, inf) are ignored for the percentiles and shown as 0.

    Returns
    -------
    rgb : (H, W, 3) ndarray of uint8
        The composite: per pixel, the maximum over channels of ``colour * rescaled intensity``.

    Raises
    ------
    InvalidInput
        If ``field`` is not 3-D or 4-D, is empty or not real-valued, if fewer colours than channels
        are given or a colour is not three components in [0, 1], or if the percentiles are invalid.

    Examples
    --------
    >>> field = np.zeros((2, 4, 4), dtype=np.uint16)
    >>> field[0, 1, 1] = 1000  # DNA: blue
    >>> field[1, 2, 2] = 500  # second channel: green
    >>> rgb = color_max_projection(field)
    >>> rgb.shape, rgb.dtype
    ((4, 4, 3), dtype('uint8'))
    >>> rgb[1, 1].tolist(), rgb[2, 2].tolist(), rgb[0, 0].tolist()
    ([0, 0, 255], [0, 255, 0], [0, 0, 0])
    """
    field = np.asarray(field)
    if field.ndim not in (3, 4):
        raise InvalidInput(f"field must be (C, H, W) or (C, Z, H, W), got shape {field.shape}")
    if field.size == 0:
        raise InvalidInput(f"field is empty (shape {field.shape})")
    check_real_dtype(field, name="field")
    if not (0.0 <= low < high <= 100.0):
        raise InvalidInput(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}")
    n_channels = field.shape[0]
    palette = _palette(colors, n_channels)

    if field.ndim == 4:
        field = field.max(axis=1)
    rgb = np.zeros((*field.shape[1:], 3), dtype=np.float32)
    for channel, color in zip(field, palette):
        intensity = _rescale(channel, low, high)
        np.maximum(rgb, intensity[..., np.newaxis] * color, out=rgb)
    return np.rint(rgb * 255.0).astype(np.uint8)


def thumbnail_png(
    field: np.ndarray,
    width: int,
    *,
    colors: Sequence[Color] | None = None,
    low: float = 1.0,
    high: float = 99.8,
) -> bytes:
    """Encode a colour max-projection of a field as a PNG of the given width.

    Parameters
    ----------
    field : (C, H, W) or (C, Z, H, W) ndarray of any real dtype
        Channels first (see :func:`color_max_projection`).
    width : int
        Width of the thumbnail in pixels (> 0). The height keeps the field's aspect ratio,
        ``max(1, round(H * width / W))``.
    colors, low, high
        As :func:`color_max_projection`.

    Returns
    -------
    png : bytes
        An 8-bit RGB PNG of size ``width`` x height, resampled with a Lanczos filter.

    Raises
    ------
    InvalidInput
        If ``width`` is not a positive integer, or as :func:`color_max_projection`.

    Examples
    --------
    >>> png = thumbnail_png(np.zeros((3, 1024, 1280), np.uint16), 160)
    >>> Image.open(io.BytesIO(png)).size
    (160, 128)
    """
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width <= 0:
        raise InvalidInput(f"thumbnail width must be a positive integer, got {width!r}")
    rgb = color_max_projection(field, colors=colors, low=low, high=high)
    h, w = rgb.shape[:2]
    height = max(1, round(h * int(width) / w))
    image = Image.fromarray(rgb)
    if (int(width), height) != (w, h):
        image = image.resize((int(width), height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return png_bytes(image)


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """An 8-bit image ((H, W) grey or (H, W, 3) RGB uint8, or a PIL image) encoded as PNG.

    >>> png_bytes(np.zeros((2, 3), np.uint8))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def channel_pngs(field: np.ndarray, width: int, *, low: float = 0.5, high: float = 99.9) -> list[bytes]:
    """Each channel of a field alone, as an 8-bit greyscale PNG: what the web viewer tints, windows and
    composites in the browser (its per-channel colours, toggles and contrast).

    Parameters
    ----------
    field : (C, H, W) or (C, Z, H, W) ndarray of any real dtype
        Channels first; a z-stack is maximum-projected along Z.
    width : int
        Width of each PNG in pixels (> 0), never more than the field's (no upscaling); the height keeps
        the aspect ratio.
    low, high : float, optional
        Percentiles of each channel mapped to 0 and 255 (as :func:`color_max_projection`).

    Returns
    -------
    pngs : list of bytes
        One 8-bit greyscale PNG per channel, in channel order, all of the same size.

    Examples
    --------
    >>> pngs = channel_pngs(np.random.default_rng(0).random((3, 64, 80)), 40)
    >>> len(pngs), Image.open(io.BytesIO(pngs[0])).size, Image.open(io.BytesIO(pngs[0])).mode
    (3, (40, 32), 'L')
    """
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width <= 0:
        raise InvalidInput(f"width must be a positive integer, got {width!r}")
    field = np.asarray(field)
    if field.ndim not in (3, 4) or field.size == 0:
        raise InvalidInput(f"field must be a non-empty (C, H, W) or (C, Z, H, W), got shape {field.shape}")
    check_real_dtype(field, name="field")
    if field.ndim == 4:
        field = field.max(axis=1)
    h, w = field.shape[1:]
    size = (min(int(width), w), max(1, round(h * min(int(width), w) / w)))
    out = []
    for channel in field:
        image = Image.fromarray(np.rint(_rescale(channel, low, high) * 255.0).astype(np.uint8))
        if size != (w, h):
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        out.append(png_bytes(image))
    return out


def _palette(colors: Sequence[Color] | None, n_channels: int) -> np.ndarray:
    """(C, 3) float32 colours for ``n_channels`` channels, validated."""
    if colors is None:
        return np.array([DEFAULT_COLORS[c % len(DEFAULT_COLORS)] for c in range(n_channels)], dtype=np.float32)
    if len(colors) < n_channels:
        raise InvalidInput(f"{len(colors)} colours given for {n_channels} channels")
    try:
        palette = np.array(colors[:n_channels], dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInput(f"colours must be (r, g, b) tuples of numbers, got {list(colors)!r}") from None
    if palette.shape != (n_channels, 3):
        raise InvalidInput(f"colours must be (r, g, b) tuples, got {list(colors)!r}")
    if not (np.isfinite(palette).all() and (palette >= 0).all() and (palette <= 1).all()):
        raise InvalidInput(f"colour components must be in [0, 1], got {list(colors)!r}")
    return palette


def _rescale(channel: np.ndarray, low: float, high: float) -> np.ndarray:
    """(H, W) channel -> (H, W) float32 in [0, 1], stretched between its ``low``/``high`` percentiles."""
    channel = channel.astype(np.float32, copy=False)
    finite = np.isfinite(channel)
    all_finite = bool(finite.all())
    values = channel if all_finite else channel[finite]
    if values.size == 0:
        return np.zeros(channel.shape, dtype=np.float32)
    lo, hi = np.percentile(values, [low, high])
    if hi > lo:
        out = (channel - np.float32(lo)) * np.float32(1.0 / (hi - lo))
        np.clip(out, 0.0, 1.0, out=out)
    else:  # degenerate range: show what is above the (single) level
        out = (channel > lo).astype(np.float32)
    if not all_finite:
        out[~finite] = 0.0
    return out
