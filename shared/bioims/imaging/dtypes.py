"""The one dtype policy for image arithmetic.

Images are kept in their native dtype when read (:mod:`bioims.imaging.io`); numeric code converts
them here, and only here:

- ``bool`` maps to 0.0 / 1.0.
- Unsigned integers map to [0, 1] by the dtype's maximum: ``uint8`` / 255, ``uint16`` / 65535. The
  division is done in float32 for up to 16 bits (exact enough: every uint16 is a float32) and in
  float64 for wider integers, and the result is float32.
- Floating-point images are passed through as float32, unscaled and unclipped (a float TIFF already
  holds intensities on its own scale).
- Signed integers have no agreed mapping (int16 cameras store 0..4095 or 0..32767 or offsets) and
  are rejected rather than guessed; complex, object and string arrays are rejected too.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInput

__all__ = ["check_real_dtype", "to_float01"]


def check_real_dtype(image: np.ndarray, *, name: str = "image") -> None:
    """Raise :class:`~bioims.errors.InvalidInput` unless ``image`` holds real numbers.

    Parameters
    ----------
    image : ndarray
        Any array.
    name : str, optional
        What to call the array in the error message.

    Raises
    ------
    InvalidInput
        If the dtype is not bool, integer or floating point (complex, object, strings, ...).
    """
    kind = np.asarray(image).dtype.kind
    if kind not in "buif":
        raise InvalidInput(f"{name} has dtype {np.asarray(image).dtype}, expected a real numeric dtype")


def to_float01(image: np.ndarray) -> np.ndarray:
    """Convert an image to float32, mapping unsigned integer ranges to [0, 1].

    Parameters
    ----------
    image : (...) ndarray of bool, unsigned int or float
        Image of any shape.

    Returns
    -------
    out : (...) ndarray of float32
        Same shape as ``image``. Unsigned integers are divided by their dtype's maximum (``uint16``
        65535 -> 1.0); floats are cast to float32 without rescaling. A float32 input is returned as
        is (no copy), so do not modify the result in place if the input must be kept.

    Raises
    ------
    InvalidInput
        For signed integer, complex or non-numeric dtypes.

    Examples
    --------
    >>> to_float01(np.array([0, 32768, 65535], dtype=np.uint16))
    array([0.       , 0.5000076, 1.       ], dtype=float32)
    >>> to_float01(np.array([0.5, 2.0])).dtype
    dtype('float32')
    """
    image = np.asarray(image)
    check_real_dtype(image)
    kind = image.dtype.kind
    if kind == "f":
        return image.astype(np.float32, copy=False)
    if kind == "b":
        return image.astype(np.float32)
    if kind == "i":
        raise InvalidInput(
            f"image has signed integer dtype {image.dtype}, which has no agreed [0, 1] mapping; "
            "convert it to an unsigned or float dtype first"
        )
    # Unsigned: float32 is exact for <= 16 bits; wider integers need float64 for the division.
    maximum = np.iinfo(image.dtype).max
    if image.dtype.itemsize <= 2:
        return image.astype(np.float32) / np.float32(maximum)
    return (image.astype(np.float64) / maximum).astype(np.float32)


def is_integer(value: object) -> bool:
    """Whether ``value`` is a Python or numpy integer (``bool`` is not), for option checks."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
