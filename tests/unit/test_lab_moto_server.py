"""The lab moto's S3 mirror: what moto holds is written to disk and loaded back into a fresh moto.

In process, with moto's own in-memory backends; the lab's moto process (the mirror installed around
its S3 backend, then SIGKILLed and restarted) is tested in tests/integration/test_lab_lifecycle.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import S3Backend, s3_backends

from seawall.lab.moto_server import S3Mirror


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def _s3() -> Any:
    return boto3.client("s3", region_name="us-east-1")


def test_objects_written_through_and_loaded_back(tmp_path: Path) -> None:
    mirror = S3Mirror(tmp_path)
    odd_key = "points/a b/../" + "x" * 300  # '/', '..', spaces, longer than a file name may be
    with mock_aws():
        s3 = _s3()
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        s3.create_bucket(Bucket="replica")
        mirror.bucket_created(backend, "replica")
        for key, body in ((odd_key, b"\x01" * 5000), ("gone", b"2"), ("replaced", b"old")):
            s3.put_object(Bucket="replica", Key=key, Body=body)
            mirror.object_changed(backend, "replica", key)
        s3.put_object(Bucket="replica", Key="replaced", Body=b"new")
        mirror.object_changed(backend, "replica", "replaced")
        s3.delete_object(Bucket="replica", Key="gone")
        mirror.object_changed(backend, "replica", "gone")
        before = s3.head_object(Bucket="replica", Key=odd_key)
    assert len(list((tmp_path / "replica" / "objects").iterdir())) == 2
    # A write a SIGKILL cut short never reached os.replace: it was never acknowledged either.
    (tmp_path / "replica" / "objects" / ".cut.1.tmp").write_bytes(b"partial")

    with mock_aws():
        s3 = _s3()
        assert s3.list_buckets()["Buckets"] == [], "a fresh moto holds nothing"
        assert mirror.load(s3_backends, S3Backend.put_object, S3Backend.create_bucket) == (1, 2)
        listed = s3.list_objects_v2(Bucket="replica")["Contents"]
        assert sorted(o["Key"] for o in listed) == sorted([odd_key, "replaced"])
        after = s3.get_object(Bucket="replica", Key=odd_key)
        assert after["Body"].read() == b"\x01" * 5000
        assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
        assert s3.get_object(Bucket="replica", Key="replaced")["Body"].read() == b"new"
    assert not (tmp_path / "replica" / "objects" / ".cut.1.tmp").exists()


def test_a_deleted_bucket_leaves_nothing(tmp_path: Path) -> None:
    mirror = S3Mirror(tmp_path)
    with mock_aws():
        s3 = _s3()
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        s3.create_bucket(Bucket="scratch")
        mirror.bucket_created(backend, "scratch")
        s3.put_object(Bucket="scratch", Key="k", Body=b"v")
        mirror.object_changed(backend, "scratch", "k")
        s3.delete_object(Bucket="scratch", Key="k")
        mirror.object_changed(backend, "scratch", "k")
        s3.delete_bucket(Bucket="scratch")
        mirror.bucket_deleted(backend, "scratch")
    assert list(tmp_path.iterdir()) == []
