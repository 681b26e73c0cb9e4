from __future__ import annotations

import os

import boto3
import pytest
from moto import mock_aws

from bioims.errors import InvalidInput, NotFound
from bioims.settings import Settings
from bioims.store.keys import Keys
from bioims.store.objects import ObjectStore, join, path_to_uri, uri_to_path


@pytest.fixture
def s3(aws_env):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bucket")
        yield client


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path, s3):
    return (tmp_path / "store").as_uri() if request.param == "file" else "s3://bucket/prefix"


def test_round_trip_list_size_delete(root, s3):
    store = ObjectStore(s3)
    a, b = join(root, "plates", "p 1", "a.png"), join(root, "plates", "p 1", "b.json")
    assert not store.exists(a)
    store.put_bytes(a, b"\x89PNG")
    store.put_json(b, {"x": [1, 2]})
    assert store.get_bytes(a) == b"\x89PNG" and store.size(a) == 4
    assert store.get_json(b) == {"x": [1, 2]}
    assert list(store.list(join(root, "plates"))) == [a, b]
    store.put_bytes(a, b"new")  # overwrite
    assert store.get_bytes(a) == b"new"
    store.delete(a)
    store.delete(a)  # idempotent
    assert not store.exists(a)
    with pytest.raises(NotFound, match="no object"):
        store.get_bytes(a)
    with pytest.raises(NotFound):
        store.size(a)
    store.put_bytes(b, b"{oops")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        store.get_json(b)


def test_list_is_by_folder_in_both_stores(root, s3):
    """A prefix is a folder: ``models/run-1`` never lists ``models/run-10`` (S3 keys are plain prefixes)."""
    store = ObjectStore(s3)
    mine, other = join(root, "models", "run-1", "model.onnx"), join(root, "models", "run-10", "model.onnx")
    store.put_bytes(mine, b"1")
    store.put_bytes(other, b"10")
    assert list(store.list(join(root, "models", "run-1"))) == [mine]
    assert list(store.list(join(root, "models", "run-1") + "/")) == [mine]
    assert list(store.list(join(root, "models"))) == [mine, other]
    assert list(store.list(join(root, "models", "run"))) == []


def test_s3_store_pages_writes_once_and_reports_missing_keys(s3):
    """Listing follows S3's pages (1000 keys each); a write is one PUT (no temporary key is ever visible)."""
    store = ObjectStore(s3)
    for i in range(1001):
        s3.put_object(Bucket="bucket", Key=f"many/{i:04d}", Body=b"")
    listed = list(store.list("s3://bucket/many"))
    assert len(listed) == 1001 and listed[0] == "s3://bucket/many/0000" and listed[-1] == "s3://bucket/many/1000"

    calls: list[str] = []
    s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    store.put_bytes("s3://bucket/one/x.bin", b"data")
    assert calls == ["PutObject"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bucket", Prefix="one/")["Contents"]] == ["one/x.bin"]

    with pytest.raises(NotFound):
        store.get_bytes("s3://bucket/one/missing")
    with pytest.raises(InvalidInput, match="without a bucket"):
        store.get_bytes("s3:///key")


def test_local_writes_are_atomic(tmp_path, monkeypatch):
    store = ObjectStore()
    uri = (tmp_path / "x.bin").as_uri()
    store.put_bytes(uri, b"old")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.put_bytes(uri, b"new and longer")
    assert store.get_bytes(uri) == b"old"  # the old object is intact
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]  # and no temporary file is left


def test_uri_helpers_and_errors(tmp_path):
    path = tmp_path / "a b.tif"
    assert uri_to_path(path_to_uri(path)) == path
    with pytest.raises(InvalidInput, match="unsupported URI"):
        ObjectStore().get_bytes("http://example.org/x")
    with pytest.raises(InvalidInput, match="no S3 client"):
        ObjectStore().get_bytes("s3://bucket/key")
    assert Keys("s3://b/root/").thumbnail("p", "i", 100) == "s3://b/root/plates/p/thumbnails/i-100.png"


def test_settings_are_validated(tmp_path):
    s = Settings.from_env({"BIOIMS_HOME": str(tmp_path), "BIOIMS_TABLE_PREFIX": "x-"})
    assert s.artifact_uri == (tmp_path / "artifacts").as_uri() and s.table_prefix == "x-"
    assert Settings.from_env(s.to_env()) == s
    with pytest.raises(InvalidInput, match="BIOIMS_RUNTIME"):
        Settings.from_env({"BIOIMS_RUNTIME": "cloud"})
    with pytest.raises(InvalidInput, match="BIOIMS_ARTIFACT_URI"):
        Settings.from_env({"BIOIMS_RUNTIME": "aws"})
    with pytest.raises(InvalidInput, match="PREFIX"):
        Settings.from_env({"BIOIMS_TABLE_PREFIX": "bad prefix"})
