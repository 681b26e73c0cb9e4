"""Colour max-projections and PNG thumbnails (bioims.imaging.thumbnails)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bioims.errors import InvalidInput
from bioims.imaging.thumbnails import DEFAULT_COLORS, color_max_projection, thumbnail_png

DTYPES = [np.uint8, np.uint16, np.float32]
BRIGHT = {np.uint8: 200, np.uint16: 40000, np.float32: 3.5}

BLUE, GREEN, RED, BLACK = [0, 0, 255], [0, 255, 0], [255, 0, 0], [0, 0, 0]


def spots(dtype: type, shape: tuple[int, int] = (10, 12)) -> np.ndarray:
    """(3, H, W) field, dark except one bright pixel per channel and one shared by channels 0 and 1."""
    field = np.zeros((3, *shape), dtype=dtype)
    field[0, 2, 3] = BRIGHT[dtype]
    field[1, 5, 5] = BRIGHT[dtype]
    field[2, 7, 1] = BRIGHT[dtype]
    field[0, 8, 8] = field[1, 8, 8] = BRIGHT[dtype]
    return field


def decode(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    return image


# ------------------------------------------------------------------------------------- projection


@pytest.mark.parametrize("dtype", DTYPES)
def test_bright_pixel_takes_its_channel_colour(dtype):
    rgb = color_max_projection(spots(dtype))
    assert rgb.shape == (10, 12, 3) and rgb.dtype == np.uint8
    assert rgb[2, 3].tolist() == BLUE  # channel 0: DNA
    assert rgb[5, 5].tolist() == GREEN  # channel 1
    assert rgb[7, 1].tolist() == RED  # channel 2
    assert rgb[8, 8].tolist() == [0, 255, 255]  # max of blue and green, not their sum
    assert rgb[0, 0].tolist() == BLACK


@pytest.mark.parametrize("dtype", DTYPES)
def test_rescaling_matches_a_reference(rng, dtype):
    scale = 1000.0 if dtype == np.float32 else np.iinfo(dtype).max
    channel = (rng.random((20, 30)) * scale).astype(dtype)
    rgb = color_max_projection(channel[np.newaxis], colors=[(1.0, 1.0, 1.0)], low=2.0, high=98.0)
    # Independent reference in float64: linear percentiles, clip, scale to 255.
    values = np.sort(channel.astype(np.float64).ravel())
    lo, hi = (np.interp(q / 100 * (values.size - 1), np.arange(values.size), values) for q in (2.0, 98.0))
    expected = np.clip((channel - lo) / (hi - lo), 0, 1) * 255
    for k in range(3):
        assert np.abs(rgb[..., k].astype(float) - expected).max() <= 0.51


def test_colours_scale_intensity():
    field = np.zeros((1, 2, 101), np.uint16)
    field[0, :, :] = np.arange(101)
    rgb = color_max_projection(field, colors=[(1.0, 0.5, 0.0)], low=0.0, high=100.0)
    assert rgb[0, 50].tolist() == [128, 64, 0]  # 0.5 * (255, 127.5, 0), rounded
    assert rgb[0, 100].tolist() == [255, 128, 0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.filterwarnings("error")
def test_constant_channels_give_black_without_nan(dtype):
    field = np.full((3, 6, 7), BRIGHT[dtype], dtype=dtype)
    rgb = color_max_projection(field)
    assert rgb.dtype == np.uint8
    assert (rgb == 0).all()


@pytest.mark.filterwarnings("error")
def test_non_finite_pixels_are_ignored():
    field = np.zeros((2, 5, 5), np.float32)
    field[0, 1, 1] = np.nan
    field[0, 2, 2] = 1.0
    field[1] = np.inf  # an all-inf channel contributes nothing
    rgb = color_max_projection(field)
    assert rgb[1, 1].tolist() == BLACK
    assert rgb[2, 2].tolist() == BLUE


def test_z_stack_is_max_projected_first(rng):
    field = rng.integers(0, 4096, size=(2, 4, 8, 9), dtype=np.uint16)
    np.testing.assert_array_equal(color_max_projection(field), color_max_projection(field.max(axis=1)))
    spot = np.zeros((1, 3, 5, 5), np.uint8)
    spot[0, 2, 1, 1] = 255  # bright only in the last plane
    assert color_max_projection(spot)[1, 1].tolist() == BLUE


def test_default_colours_cycle():
    field = np.zeros((8, 4, 4), np.uint8)
    field[6, 0, 0] = 100  # grey
    field[7, 1, 1] = 100  # wraps round to blue
    field[3, 2, 2] = 100  # magenta
    rgb = color_max_projection(field)
    assert rgb[0, 0].tolist() == [128, 128, 128]
    assert rgb[1, 1].tolist() == BLUE
    assert rgb[2, 2].tolist() == [255, 0, 255]
    assert DEFAULT_COLORS[:3] == ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({}, np.zeros((4, 4), np.uint8), r"\(C, H, W\) or \(C, Z, H, W\), got shape \(4, 4\)"),
        ({}, np.zeros((1, 0, 4), np.uint8), "empty"),
        ({}, np.zeros((1, 4, 4), np.complex64), "dtype complex64"),
        ({"colors": [(0, 0, 1)]}, np.zeros((2, 4, 4), np.uint8), "1 colours given for 2 channels"),
        ({"colors": [(0, 0, 2)]}, np.zeros((1, 4, 4), np.uint8), r"in \[0, 1\]"),
        ({"colors": [(0, 1)]}, np.zeros((1, 4, 4), np.uint8), r"\(r, g, b\)"),
        ({"low": 50, "high": 50}, np.zeros((1, 4, 4), np.uint8), "low < high"),
        ({"low": -1}, np.zeros((1, 4, 4), np.uint8), "0 <= low"),
    ],
)
def test_invalid_arguments(kwargs, field, match):
    with pytest.raises(InvalidInput, match=match):
        color_max_projection(field, **kwargs)


# ------------------------------------------------------------------------------------- thumbnails


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "width", "size"), [((30, 60), 20, (20, 10)), ((48, 36), 9, (9, 12))])
def test_thumbnail_size_keeps_aspect(rng, dtype, shape, width, size):
    field = (rng.random((3, *shape)) * BRIGHT[dtype]).astype(dtype)
    image = decode(thumbnail_png(field, width))
    assert image.mode == "RGB"
    assert image.size == size  # (width, height)


def test_thumbnail_height_is_at_least_one():
    image = decode(thumbnail_png(np.zeros((1, 2, 400), np.uint16), 10))
    assert image.size == (10, 1)


def test_thumbnail_at_full_size_is_the_projection(rng):
    field = rng.integers(0, 65535, size=(2, 7, 5), dtype=np.uint16)
    decoded = np.asarray(decode(thumbnail_png(field, 5)))
    np.testing.assert_array_equal(decoded, color_max_projection(field))


def test_thumbnail_keeps_colours_where_they_are():
    field = np.zeros((2, 40, 80), np.uint16)
    field[1, :, :40] = 1000  # left half green
    field[0, :, 40:] = 30000  # right half blue
    field[1, 0, 0] = 999  # so channel 1 is not constant
    pixels = np.asarray(decode(thumbnail_png(field, 16, low=0.0, high=100.0)))
    assert pixels.shape == (8, 16, 3)
    assert pixels[4, 2].tolist() == GREEN
    assert pixels[4, 13].tolist() == BLUE


def test_thumbnail_passes_options_to_the_projection():
    field = np.zeros((1, 4, 4), np.uint8)
    field[0, 1, 1] = 100
    pixels = np.asarray(decode(thumbnail_png(field, 4, colors=[(1.0, 0.0, 0.0)])))
    assert pixels[1, 1].tolist() == RED


@pytest.mark.parametrize("width", [0, -5, 2.5, True, "100"])
def test_thumbnail_width_must_be_a_positive_integer(width):
    with pytest.raises(InvalidInput, match="positive integer"):
        thumbnail_png(np.zeros((1, 4, 4), np.uint8), width)
