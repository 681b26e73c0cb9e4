"""Reading channel files by URI (bioims.imaging.io) and the dtype policy (bioims.imaging.dtypes)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bioims.errors import InvalidInput
from bioims.imaging.dtypes import to_float01
from bioims.imaging.io import FieldInfo, inspect_field, read_field, read_image, write_tiff
from bioims.store.objects import ObjectStore, path_to_uri

DTYPES = [np.uint8, np.uint16, np.float32]


def random_image(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Random pixels covering the dtype's range (floats: [0, 1000))."""
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)
    return (rng.random(shape) * 1000).astype(dtype)


def save_pillow(path: Path, image: np.ndarray, fmt: str, **kwargs: object) -> str:
    Image.fromarray(image).save(path, format=fmt, **kwargs)
    return path_to_uri(path)


def tiff_uri(path: Path, image: np.ndarray) -> str:
    write_tiff(path, image)
    return path_to_uri(path)


@pytest.fixture
def objects() -> ObjectStore:
    return ObjectStore()


# ------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiff_round_trip_keeps_pixels_and_dtype(tmp_path, rng, objects, dtype):
    image = random_image(rng, (17, 23), dtype)
    out = read_image(tiff_uri(tmp_path / "a.tif", image), objects)
    assert out.dtype == dtype
    assert out.shape == (17, 23)
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiff_z_stack_is_read_as_zyx(tmp_path, rng, objects, dtype):
    stack = random_image(rng, (5, 12, 9), dtype)
    out = read_image(tiff_uri(tmp_path / "z.tif", stack), objects)
    assert out.shape == (5, 12, 9)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, stack)


def test_plain_multipage_tiff_without_axes_metadata_is_a_z_stack(tmp_path, rng, objects):
    stack = random_image(rng, (3, 8, 8), np.uint16)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:
        for plane in stack:
            tw.write(plane, photometric="minisblack", metadata=None)
    out = read_image(path_to_uri(tmp_path / "pages.tif"), objects)
    np.testing.assert_array_equal(out, stack)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip(tmp_path, rng, objects, dtype):
    image = random_image(rng, (11, 14), dtype)
    out = read_image(save_pillow(tmp_path / "a.png", image, "PNG"), objects)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, image)


def test_jpeg_is_read_as_uint8_close_to_the_original(tmp_path, objects):
    ramp = np.tile(np.linspace(0, 255, 32), (16, 1)).astype(np.uint8)
    out = read_image(save_pillow(tmp_path / "a.jpg", ramp, "JPEG", quality=95), objects)
    assert out.dtype == np.uint8 and out.shape == (16, 32)
    assert np.abs(out.astype(int) - ramp).max() <= 8  # lossy


def test_format_comes_from_magic_bytes_not_extension(tmp_path, rng, objects):
    image = random_image(rng, (6, 7), np.uint16)
    png_named_tif = save_pillow(tmp_path / "really_a_png.tif", image, "PNG")
    tif_named_png = tiff_uri(tmp_path / "really_a_tif.png", image)
    np.testing.assert_array_equal(read_image(png_named_tif, objects), image)
    np.testing.assert_array_equal(read_image(tif_named_png, objects), image)


def test_single_channel_ome_tiff(tmp_path, rng, objects):
    image = random_image(rng, (1, 10, 12), np.uint16)  # C=1 is squeezed away
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, image, ome=True, photometric="minisblack", metadata={"axes": "CYX"})
    out = read_image(path_to_uri(path), objects)
    assert out.shape == (10, 12)
    np.testing.assert_array_equal(out, image[0])


def test_big_endian_tiff_is_returned_in_native_byte_order(tmp_path, rng, objects):
    image = random_image(rng, (8, 8), np.uint16)
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, image, byteorder=">", photometric="minisblack")
    out = read_image(path_to_uri(path), objects)
    assert out.dtype.isnative and out.dtype == np.uint16
    np.testing.assert_array_equal(out, image)


def test_greyscale_stored_as_rgb_is_one_channel(tmp_path, rng, objects):
    grey = random_image(rng, (9, 9), np.uint8)
    out = read_image(save_pillow(tmp_path / "grey.png", np.stack([grey] * 3, axis=-1), "PNG"), objects)
    np.testing.assert_array_equal(out, grey)


# ------------------------------------------------------------------------------------- fields


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_field_stacks_channels_in_order(tmp_path, rng, objects, dtype):
    channels = [random_image(rng, (16, 24), dtype) for _ in range(3)]
    uris = [tiff_uri(tmp_path / f"w{c}.tif", image) for c, image in enumerate(channels)]
    field = read_field(uris, objects)
    assert field.shape == (3, 16, 24)
    assert field.dtype == dtype
    for c, image in enumerate(channels):
        np.testing.assert_array_equal(field[c], image)


def test_read_field_of_z_stacks_is_czyx(tmp_path, rng, objects):
    channels = [random_image(rng, (4, 8, 6), np.uint16) for _ in range(2)]
    uris = [tiff_uri(tmp_path / f"w{c}.tif", image) for c, image in enumerate(channels)]
    field = read_field(uris, objects)
    assert field.shape == (2, 4, 8, 6)
    np.testing.assert_array_equal(field, np.stack(channels))


def test_read_field_mixes_formats_of_the_same_dtype(tmp_path, rng, objects):
    a, b = random_image(rng, (5, 5), np.uint8), random_image(rng, (5, 5), np.uint8)
    field = read_field([tiff_uri(tmp_path / "a.tif", a), save_pillow(tmp_path / "b.png", b, "PNG")], objects)
    np.testing.assert_array_equal(field, np.stack([a, b]))


def test_shape_mismatch_names_channel_uri_and_both_shapes(tmp_path, rng, objects):
    uris = [
        tiff_uri(tmp_path / "w0.tif", random_image(rng, (16, 24), np.uint16)),
        tiff_uri(tmp_path / "w1.tif", random_image(rng, (16, 24), np.uint16)),
        tiff_uri(tmp_path / "w2.tif", random_image(rng, (8, 8), np.uint16)),
    ]
    with pytest.raises(InvalidInput) as info:
        read_field(uris, objects)
    assert info.value.message == f"channel 2 ({uris[2]}) has shape (8, 8), channel 0 has (16, 24)"


def test_dtype_mismatch_is_rejected(tmp_path, rng, objects):
    uris = [
        tiff_uri(tmp_path / "w0.tif", random_image(rng, (8, 8), np.uint16)),
        tiff_uri(tmp_path / "w1.tif", random_image(rng, (8, 8), np.uint8)),
    ]
    with pytest.raises(InvalidInput, match=r"channel 1 \(.*w1\.tif\) has dtype uint8, channel 0 has uint16"):
        read_field(uris, objects)


def test_read_field_needs_a_list_of_uris(tmp_path, rng, objects):
    uri = tiff_uri(tmp_path / "w0.tif", random_image(rng, (8, 8), np.uint16))
    with pytest.raises(InvalidInput, match="at least one channel"):
        read_field([], objects)
    with pytest.raises(InvalidInput, match="single string"):
        read_field(uri, objects)


def test_inspect_field_2d_and_z_stack(tmp_path, rng, objects):
    flat = [tiff_uri(tmp_path / f"f{c}.tif", random_image(rng, (16, 24), np.uint16)) for c in range(2)]
    assert inspect_field(flat, objects) == FieldInfo(width=24, height=16, depth=1, channels=2, dtype="uint16")
    stack = [tiff_uri(tmp_path / f"z{c}.tif", random_image(rng, (3, 10, 7), np.float32)) for c in range(4)]
    assert inspect_field(stack, objects) == FieldInfo(width=7, height=10, depth=3, channels=4, dtype="float32")


# ------------------------------------------------------------------------------------- unreadable files


def read_error(uri: str, objects: ObjectStore) -> str:
    with pytest.raises(InvalidInput) as info:
        read_image(uri, objects)
    assert info.value.status == 400
    assert uri in info.value.message
    return info.value.message


def test_missing_file(tmp_path, objects):
    path = tmp_path / "nope.tif"
    message = read_error(path_to_uri(path), objects)
    assert f"missing file: {path}" in message


def test_zero_byte_file(tmp_path, objects):
    (tmp_path / "empty.tif").write_bytes(b"")
    assert "empty file (0 bytes)" in read_error(path_to_uri(tmp_path / "empty.tif"), objects)


def test_directory_is_not_an_image(tmp_path, objects):
    assert "is a directory" in read_error(path_to_uri(tmp_path), objects)


@pytest.mark.parametrize("shape", [(64, 80), (6, 32, 32)], ids=["2d", "z-stack"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_tiff(tmp_path, rng, objects, shape, fraction):
    path = tmp_path / "a.tif"
    write_tiff(path, random_image(rng, shape, np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    assert "truncated or corrupt image" in read_error(path_to_uri(path), objects)


@pytest.mark.parametrize(
    "options",
    [{"metadata": None}, {"ome": True, "metadata": {"axes": "ZYX"}}, {"imagej": True, "metadata": {"axes": "ZYX"}}],
    ids=["plain", "ome", "imagej"],
)
def test_truncated_z_stack_is_not_read_as_fewer_planes(tmp_path, rng, objects, options):
    # tifffile drops pages whose directory lies past the end of the file (logging a warning); the
    # reader must not return the first plane(s) as if they were the whole stack.
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, random_image(rng, (6, 32, 32), np.uint16), photometric="minisblack", **options)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt image" in read_error(path_to_uri(path), objects)


def test_truncated_compressed_tiff(tmp_path, rng, objects):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, random_image(rng, (64, 64), np.uint16), compression="zlib", photometric="minisblack")
    path.write_bytes(path.read_bytes()[:-200])
    assert "truncated or corrupt image" in read_error(path_to_uri(path), objects)


def test_tiff_header_only(tmp_path, objects):
    (tmp_path / "a.tif").write_bytes(b"II*")
    assert "truncated or corrupt image" in read_error(path_to_uri(tmp_path / "a.tif"), objects)


def test_truncated_png(tmp_path, rng, objects):
    path = tmp_path / "a.png"
    Image.fromarray(random_image(rng, (64, 64), np.uint16)).save(path, format="PNG")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "truncated or corrupt image" in read_error(path_to_uri(path), objects)


def test_unsupported_format(tmp_path, objects):
    (tmp_path / "a.tif").write_text("well,site\nA01,1\n")
    assert "unsupported image format" in read_error(path_to_uri(tmp_path / "a.tif"), objects)


def test_rgb_images_must_be_split_into_channel_files(tmp_path, rng, objects):
    rgb = random_image(rng, (8, 8, 3), np.uint8)
    png = save_pillow(tmp_path / "rgb.png", rgb, "PNG")
    tif = tmp_path / "rgb.tif"
    tifffile.imwrite(tif, rgb, photometric="rgb")
    for uri in (png, path_to_uri(tif)):
        message = read_error(uri, objects)
        assert "3 samples per pixel" in message
        assert "channels must be separate single-channel files" in message


def test_multichannel_ome_tiff_must_be_split(tmp_path, rng, objects):
    path = tmp_path / "two.ome.tif"
    tifffile.imwrite(
        path, random_image(rng, (2, 8, 8), np.uint16), ome=True, photometric="minisblack", metadata={"axes": "CYX"}
    )
    message = read_error(path_to_uri(path), objects)
    assert "holds 2 channels" in message and "name one (URI#c=N)" in message


def test_4d_tiff_has_unsupported_dimensions(tmp_path, rng, objects):
    path = tmp_path / "tz.tif"
    tifffile.imwrite(
        path, random_image(rng, (2, 3, 8, 8), np.uint16), imagej=True, metadata={"axes": "TZYX"}
    )
    message = read_error(path_to_uri(path), objects)
    assert "unsupported dimensions (expected 2-D or 3-D, got shape (2, 3, 8, 8)" in message


def test_field_error_names_the_bad_channel(tmp_path, rng, objects):
    good = tiff_uri(tmp_path / "w0.tif", random_image(rng, (8, 8), np.uint16))
    bad = path_to_uri(tmp_path / "w1.tif")
    with pytest.raises(InvalidInput, match=f"cannot read image {bad}: missing file"):
        read_field([good, bad], objects)


# ------------------------------------------------------------------------------------- S3


def put(client: object, key: str, data: bytes) -> str:
    client.put_object(Bucket="plates", Key=key, Body=data)  # type: ignore[attr-defined]
    return f"s3://plates/{key}"


def tiff_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image, photometric="minisblack")
    return buffer.getvalue()


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_from_s3(s3, rng, dtype):
    objects, client = s3
    image = random_image(rng, (10, 13), dtype)
    out = read_image(put(client, "p1/A01_w1.tif", tiff_bytes(image)), objects)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, image)


def test_read_field_from_s3_png_and_tiff(s3, rng):
    objects, client = s3
    a, b = random_image(rng, (6, 9), np.uint16), random_image(rng, (6, 9), np.uint16)
    png = io.BytesIO()
    Image.fromarray(b).save(png, format="PNG")
    uris = [put(client, "p1/w1.tif", tiff_bytes(a)), put(client, "p1/w2.png", png.getvalue())]
    np.testing.assert_array_equal(read_field(uris, objects), np.stack([a, b]))


def test_s3_missing_empty_and_truncated(s3, rng):
    objects, client = s3
    assert "missing file: s3://plates/nope.tif" in read_error("s3://plates/nope.tif", objects)
    assert "empty file" in read_error(put(client, "empty.tif", b""), objects)
    data = tiff_bytes(random_image(rng, (32, 32), np.uint16))
    assert "truncated or corrupt image" in read_error(put(client, "half.tif", data[: len(data) // 2]), objects)


# ------------------------------------------------------------------------------------- write_tiff


def test_write_tiff_is_atomic_and_overwrites(tmp_path, rng):
    path = tmp_path / "plate" / "A01" / "w1.tif"  # parent folders are created
    write_tiff(path, random_image(rng, (4, 4), np.uint16))
    second = random_image(rng, (6, 5), np.uint16)
    write_tiff(path, second)
    np.testing.assert_array_equal(tifffile.imread(path), second)
    assert sorted(p.name for p in path.parent.iterdir()) == ["w1.tif"]  # no temporary files left


def test_write_tiff_does_not_guess_rgb_for_three_planes(tmp_path, rng, objects):
    stack = random_image(rng, (3, 8, 3), np.uint16)  # last axis 3 must not be read as RGB samples
    np.testing.assert_array_equal(read_image(tiff_uri(tmp_path / "z.tif", stack), objects), stack)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((2, 2, 2, 2), np.uint16), "must be 2-D"),
        (np.zeros((0, 4), np.uint16), "empty"),
        (np.zeros((4, 4), np.complex64), "dtype complex64"),
    ],
)
def test_write_tiff_rejects_bad_arrays(tmp_path, array, match):
    with pytest.raises(ValueError, match=match):
        write_tiff(tmp_path / "x.tif", array)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------- dtype policy


def test_to_float01_maps_unsigned_by_dtype_max():
    np.testing.assert_array_equal(to_float01(np.array([0, 51, 255], np.uint8)), np.float32([0, 0.2, 1]))
    out = to_float01(np.array([0, 65535, 13107], np.uint16))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 1.0, 0.2], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(to_float01(np.array([True, False])), np.float32([1, 0]))


def test_to_float01_passes_floats_through_as_float32():
    values = np.array([-1.5, 0.25, 7.0])
    out = to_float01(values)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values.astype(np.float32))  # not rescaled, not clipped


@pytest.mark.parametrize("dtype", [np.int16, np.complex64, np.str_])
def test_to_float01_rejects_ambiguous_dtypes(dtype):
    with pytest.raises(InvalidInput):
        to_float01(np.zeros(3, dtype=dtype))
