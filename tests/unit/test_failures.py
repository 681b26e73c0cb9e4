"""Failures are recorded and reported (issue 15, part 4): inspection never leaves an image ``registered``,
non-finite pixels are an inspection problem, one bad field never fails a plate's flat-field, checkpoints
load without unpickling code, table calls fail fast when the server is gone, and every CLI failure is one
line on stderr."""

from __future__ import annotations

import errno
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from bioims.errors import InvalidInput, Unavailable, one_line
from bioims.imaging.flatfield import FlatFieldAccumulator
from bioims.imaging.io import MAX_PIXELS, read_image
from bioims.store.objects import ObjectStore, path_to_uri, uri_to_path
from tests.unit.test_image_management import CHANNELS, make_plate

SECRET = "root:$6$hunter2secret:19000:0:99999:7:::"


def ingest_one(container, tmp_path, rng) -> tuple[str, list[str]]:
    """A registered plate of 4 fields (40 x 32 uint16, 3 channels): its id and its image ids."""
    summary = container.images.ingest([make_plate(tmp_path, rng)])
    plate_id = summary.plate_ids[0]
    return plate_id, sorted(container.images.get_image_ids_by_plate_id(plate_id))


def channel_path(container, image_id: str, channel: str) -> Path:
    return uri_to_path(container.images.get_image_info(image_id)["channel_uris"][channel])


def huge_tiff(path: Path) -> Path:
    """A valid 8 x 8 TIFF whose header is patched to declare 100000 x 100000 pixels (20 GB as uint16)."""
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16))
    with tifffile.TiffFile(path) as tif:
        offsets = [tif.pages[0].tags[name].valueoffset for name in ("ImageWidth", "ImageLength")]
    data = bytearray(path.read_bytes())
    for offset in offsets:
        struct.pack_into("<I", data, offset, 100_000)
    path.write_bytes(bytes(data))
    return path


def inspected(container, image_id: str) -> dict:
    container.images.inspect_image(image_id)
    return container.images.get_image_info(image_id)


# ------------------------------------------------------------------------------------------ inspection


def test_a_tiff_declaring_100000_x_100000_pixels_is_refused_before_allocating(container, tmp_path, rng):
    path = huge_tiff(tmp_path / "huge.tif")
    started = time.perf_counter()
    with pytest.raises(InvalidInput) as caught:
        read_image(path_to_uri(path), ObjectStore())
    assert time.perf_counter() - started < 2
    assert "image too large" in caught.value.message and "100000 x 100000" in caught.value.message
    assert f"{MAX_PIXELS:,}" in caught.value.message
    _, image_ids = ingest_one(container, tmp_path, rng)
    huge_tiff(channel_path(container, image_ids[0], "Tubulin"))
    row = inspected(container, image_ids[0])
    assert row["status"] == "invalid" and "image too large" in row["error"]


def test_a_non_image_file_is_named_without_echoing_its_contents(container, tmp_path, rng):
    secret = tmp_path / "shadow"
    secret.write_text(SECRET + "\n")
    with pytest.raises(InvalidInput) as caught:
        read_image(path_to_uri(secret), ObjectStore())
    assert "not a TIFF, PNG or JPEG file (unrecognised header)" in caught.value.message
    assert "root" not in caught.value.message.replace(str(tmp_path), "")
    _, image_ids = ingest_one(container, tmp_path, rng)
    channel_path(container, image_ids[0], "DAPI").write_text(SECRET)
    row = inspected(container, image_ids[0])
    assert row["status"] == "invalid" and "unrecognised header" in row["error"]
    assert "hunter2" not in row["error"] and "root:" not in row["error"] and "\n" not in row["error"]
    log = container.artifacts.list_messages(container.images.get_plate_message_id(row["plate_id"]))
    assert not any("hunter2" in m["message"] for m in log)


def test_decoder_messages_lose_their_byte_literals():
    from bioims.imaging.io import _describe

    assert _describe(SyntaxError(f"broken PNG file (chunk b'{SECRET}')")) == "SyntaxError: broken PNG file (chunk <bytes>)"


@pytest.mark.parametrize("error, expected", [
    (MemoryError(), "inspection failed: MemoryError"),
    (RuntimeError("decoder\nexploded"), "inspection failed: RuntimeError: decoder exploded"),
    (KeyError("ImageWidth"), "inspection failed: KeyError: 'ImageWidth'"),
])
def test_unexpected_reader_errors_end_invalid_with_a_one_line_reason(container, tmp_path, rng, monkeypatch,
                                                                      error, expected):
    import bioims.services.image_management.service as image_management

    _, image_ids = ingest_one(container, tmp_path, rng)

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(image_management, "inspect_field", failing)
    result = container.images.inspect_image(image_ids[0])
    row = container.images.get_image_info(image_ids[0])
    assert result["status"] == row["status"] == "invalid" and row["error"] == expected == result["error"]
    log = container.artifacts.list_messages(container.images.get_plate_message_id(row["plate_id"]))
    assert any(expected in m["message"] for m in log)


def test_an_s3_image_without_credentials_ends_invalid(settings, database, tmp_path, rng, monkeypatch):
    """NoCredentialsError from a real botocore S3 client (no credentials anywhere) is recorded."""
    import boto3

    from bioims.jobs.runner import LocalRunner
    from bioims.jobs.tables import RunnerTables
    from bioims.runtime import build

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = settings.with_(input_bucket="plates")  # the S3 ingest root
    c = build(settings, database, ObjectStore(boto3.session.Session().client("s3", region_name="us-east-1")),
              LocalRunner(settings, RunnerTables(database)))
    database.create()
    record = make_plate(tmp_path, rng)
    fields = [f.__class__(f.well, f.site, {ch: f"s3://plates/{f.well}_{f.site}_{ch}.tif" for ch in CHANNELS},
                          f.metadata) for f in record.fields]
    plate_id = c.images.ingest([record.__class__(record.source_id, CHANNELS, tuple(fields))]).plate_ids[0]
    image_id = c.images.get_image_ids_by_plate_id(plate_id)[0]
    result = c.images.inspect_image(image_id)
    row = c.images.get_image_info(image_id)
    assert result["status"] == row["status"] == "invalid"
    assert row["error"] == "inspection failed: NoCredentialsError: Unable to locate credentials"
    assert c.images.validate_plate(plate_id)["valid"] is False


def test_non_finite_pixels_make_an_image_invalid(container, tmp_path, rng):
    plate_id, image_ids = ingest_one(container, tmp_path, rng)
    for image_id in image_ids:
        for ch in CHANNELS:
            tifffile.imwrite(channel_path(container, image_id, ch), rng.random((32, 40), dtype=np.float32))
    bad = rng.random((32, 40), dtype=np.float32)
    bad[0, :2], bad[5, 5] = np.nan, np.inf
    tifffile.imwrite(channel_path(container, image_ids[0], "Tubulin"), bad)
    rows = {i: inspected(container, i) for i in image_ids}
    assert rows[image_ids[0]]["status"] == "invalid"
    assert rows[image_ids[0]]["error"] == "non-finite pixel values (2 NaN, 1 inf in channel 1)"
    assert all(rows[i]["status"] == "valid" for i in image_ids[1:])
    assert container.preprocessing.valid_image_ids(plate_id) == image_ids[1:]  # never enters preprocessing
    validation = container.images.validate_plate(plate_id)
    assert validation["valid"] is False and "non-finite pixel values" in validation["problems"][0]


# ------------------------------------------------------------------------------------------ flat-fields


def test_the_flatfield_accumulator_refuses_non_finite_images_and_keeps_its_sum():
    acc = FlatFieldAccumulator()
    acc.add(np.full((4, 4), 0.5, np.float32))
    bad = np.full((4, 4), 0.5, np.float32)
    bad[0, 0], bad[1, 1], bad[2, 2] = np.nan, np.inf, -np.inf
    with pytest.raises(InvalidInput, match=r"non-finite pixel values \(1 NaN, 2 inf\)"):
        acc.add(bad)
    assert acc.count == 1 and np.allclose(acc.mean(), 0.5)


SPEC = {"name": "small", "input": {"width": 40, "height": 32, "depth": 1, "channels": list(CHANNELS)},
        "segmentation_channel": "DAPI", "roi_size": 16, "min_nucleus_voxels": 10, "embedding_length": 16,
        "flatfield": {"sigma": 5.0}}


def test_one_bad_field_never_fails_the_flatfield_of_its_plate(container, tmp_path, rng):
    plate_id, image_ids = ingest_one(container, tmp_path, rng)
    for image_id in image_ids:
        assert container.images.inspect_image(image_id)["status"] == "valid"
    container.training.create_embedding(SPEC)
    nan_field, missing_field = image_ids[0], image_ids[1]
    tifffile.imwrite(channel_path(container, nan_field, "DAPI"), np.full((32, 40), np.nan, np.float32))
    channel_path(container, missing_field, "DAPI").unlink()
    result = container.images.compute_flatfield("small", plate_id, "DAPI")
    assert result["images"] == 2 and result["unreadable"] == sorted([nan_field, missing_field])
    assert result["reasons"][nan_field] == "non-finite pixel values (1280 NaN, 0 inf)"
    assert "missing file" in result["reasons"][missing_field]
    flat = np.load(uri_to_path(result["uri"]))
    assert flat.shape == (32, 40) and np.isfinite(flat).all()
    log = [m["message"] for m in container.artifacts.list_messages(container.images.get_plate_message_id(plate_id))]
    assert any(f"skipped image {nan_field}: non-finite" in m for m in log)
    assert any(f"skipped image {missing_field}: cannot read image" in m for m in log)


def test_a_plate_without_any_usable_field_names_the_first_reason(container, tmp_path, rng):
    plate_id, image_ids = ingest_one(container, tmp_path, rng)
    for image_id in image_ids:
        container.images.inspect_image(image_id)
    container.training.create_embedding(SPEC)
    for image_id in image_ids:
        tifffile.imwrite(channel_path(container, image_id, "Actin"), np.full((32, 40), np.inf, np.float32))
    with pytest.raises(InvalidInput, match=r"no readable Actin images \(first: .*: non-finite pixel values"):
        container.images.compute_flatfield("small", plate_id, "Actin")


# ------------------------------------------------------------------------------------------ checkpoints


class _Payload:
    """Unpickling this runs code: it touches a sentinel file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_checkpoints_hold_plain_data_and_pickled_objects_are_refused(tmp_path):
    import torch

    from bioims.training.trainer import TrainState, _load, _save

    objects = ObjectStore()
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = TrainState(epoch=1, history=[{"epoch": 1, "loss": 0.5, "validation_nsc": None}])
    plain = path_to_uri(tmp_path / "checkpoint.pt")
    _save(objects, plain, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state.__dict__})
    loaded = _load(objects, plain)
    assert TrainState(**loaded["state"]) == state and torch.equal(loaded["model"]["weight"], model.weight)

    sentinel = tmp_path / "pwned"
    hostile = path_to_uri(tmp_path / "hostile.pt")
    _save(objects, hostile, {"model": model.state_dict(), "state": _Payload(sentinel)})
    with pytest.raises(InvalidInput, match=r"checkpoint .*hostile.pt is refused: not a plain tensor checkpoint"):
        _load(objects, hostile)
    assert not sentinel.exists()
    assert _load(objects, path_to_uri(tmp_path / "none.pt")) is None


# ------------------------------------------------------------------------------------------ tables


def test_table_calls_fail_fast_when_the_server_cannot_be_restarted():
    from bioims.local_stack import StackError, free_port
    from bioims.services.image_management.tables import ImageTables
    from bioims.store.tables import Database

    def cannot_restart() -> str:
        raise StackError("Node.js (node) is not installed")

    dead = f"http://127.0.0.1:{free_port()}"
    tables = ImageTables(Database("t-", host=dead, credentials=("local", "local"), recover=cannot_restart))
    started = time.perf_counter()
    with pytest.raises(Unavailable, match=r"table server at http://127.0.0.1:\d+ is unreachable and could not "
                                          r"be restarted: Node.js \(node\) is not installed"):
        tables.plates.get("p")
    assert time.perf_counter() - started < 3 and Unavailable.status == 503


def test_one_line_collapses_and_bounds_reasons():
    assert one_line(InvalidInput("a\n  b")) == "a b"
    assert one_line(OSError(errno.ENOSPC, "No space left on device")) == "OSError: [Errno 28] No space left on device"
    assert len(one_line(ValueError("x" * 5000))) == 500


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run the real `bioims` group in-process on `dataset synth`, whose work raises ``error``."""
    from click.testing import CliRunner

    import bioims.datasets.synth as synth
    from bioims.cli import main

    monkeypatch.setenv("BIOIMS_HOME", str(tmp_path / "home"))

    def run(error: BaseException, *options: str):
        def failing(*args, **kwargs):
            raise error

        monkeypatch.setattr(synth, "synthesize", failing)
        return CliRunner().invoke(main, [*options, "dataset", "synth", str(tmp_path / "out"), "--json"])

    return run


def _validation_error() -> Exception:
    import pydantic

    class Request(pydantic.BaseModel):
        k: int
        labels: list[str]

    try:
        Request.model_validate({"k": "many", "labels": "xyz"})
    except pydantic.ValidationError as e:
        return e
    raise AssertionError("no validation error")


@pytest.mark.parametrize("error, start", [
    (OSError(errno.ENOSPC, "No space left on device"), "error: OSError: [Errno 28] No space left on device ("),
    (ValueError("bad\nvalue"), "error: ValueError: bad value ("),
    (_validation_error(), "error: ValidationError: 2 validation errors for Request k Input should be"),
    (__import__("botocore.exceptions").exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1/"),
     "error: EndpointConnectionError: Could not connect to the endpoint URL"),
])
def test_unexpected_cli_errors_are_one_line_naming_a_log(cli, tmp_path, error, start):
    result = cli(error)
    assert result.exit_code == 1 and result.stdout == ""
    line = result.stderr
    assert line.count("\n") == 1 and line.startswith(start) and "Traceback" not in line, line
    log = Path(line.rsplit("(details: ", 1)[1].rstrip(")\n"))
    assert log.parent == tmp_path / "home" / "logs" and log.name.startswith("cli-")
    assert "Traceback (most recent call last)" in log.read_text() and type(error).__name__ in log.read_text()


def test_debug_prints_the_traceback_on_stderr(cli, tmp_path):
    result = cli(OSError(errno.ENOSPC, "No space left on device"), "--debug")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1] == "error: OSError: [Errno 28] No space left on device (traceback above)"
    assert not (tmp_path / "home" / "logs").exists()


def test_a_log_that_cannot_be_written_still_gives_one_line(cli, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("BIOIMS_HOME", str(tmp_path / "file" / "home"))  # not a folder: no log can be written
    result = cli(OSError(errno.ENOSPC, "No space left on device"))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "(no log written: " in result.stderr and "run with --debug" in result.stderr


def test_domain_and_usage_errors_keep_their_form(cli):
    result = cli(InvalidInput("sites must be an integer >= 1"))
    assert (result.exit_code, result.stderr) == (1, "error: sites must be an integer >= 1\n")
    from click.testing import CliRunner

    from bioims.cli import main

    assert CliRunner().invoke(main, ["dataset", "synth"]).exit_code == 2


def test_job_summaries_name_counts_and_the_first_failure():
    from bioims.cli.base import _embed_failures, _preprocess_failures, _process_failures, _train_failures

    pre = {"fields": 38, "failed": 3, "flatfields": 12, "failed_flatfields": 1, "failed_fields": 2,
           "failures": [{"spec": "s", "plate_id": "P1", "channel": "DAPI", "failure": "no readable DAPI images"},
                        {"image_id": "I2", "failure": "truncated"}]}
    assert _preprocess_failures(pre) == ("preprocess: 1 of 12 flat-fields and 2 of 40 fields failed "
                                         "(first: P1/DAPI: no readable DAPI images)")
    assert _preprocess_failures(pre | {"failed": 0, "failed_flatfields": 0, "failed_fields": 0}) is None
    emb = {"plates": 4, "fields": 30, "empty": 2, "failed": 2, "failed_plates": 1, "failed_fields": 1,
           "failures": [{"plate_id": "P9", "failure": "no crops"}, {"plate_id": "P1", "image_id": "I1",
                                                                    "failure": "crops missing"}]}
    assert _embed_failures(emb) == "embed: 1 of 4 plates and 1 of 33 fields failed (first: P9: no crops)"
    out = {"images": 4, "valid_images": 3, "invalid_images": 1, "failed": [],
           "invalid": [{"image_id": "I3", "error": "missing file: /x.tif"}]}
    assert _process_failures({"executions": [{"output": out}]}) == \
        "plate process: 1 of 4 images invalid (first: I3: missing file: /x.tif)"
    assert _process_failures({"executions": [{"output": out | {"invalid_images": 0, "invalid": []}}]}) is None
    assert _train_failures({"train_ids": ["a", "b"], "failed": 1, "failures": [{"train_id": "b", "failure": "x"}]}) \
        == "train: 1 of 2 train runs failed (first: b: x)"
