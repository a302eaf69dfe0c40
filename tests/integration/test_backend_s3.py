"""S3Store against the lab's moto server: naming, prefix isolation, multipart uploads, error mapping.

The ObjectStore contract itself runs for every backend in test_store_conformance.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from seawall.blockstore.stores.backend import StoreError, TransientStoreError
from seawall.blockstore.stores.retrying import RetryingStore
from seawall.blockstore.stores.s3 import MIN_PART_SIZE, S3Store
from seawall.lab import LabInfo

pytestmark = pytest.mark.lab


def make_store(lab: LabInfo, prefix: str, **kwargs: Any) -> S3Store:
    s3 = lab.s3
    return S3Store(
        kwargs.pop("bucket", s3.bucket),
        prefix,
        endpoint_url=kwargs.pop("endpoint_url", s3.endpoint_url),
        region=s3.region,
        access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
        **kwargs,
    )


@pytest.fixture
def prefix() -> str:
    return f"test-backend-s3/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(lab: LabInfo, prefix: str) -> Iterator[S3Store]:
    store = make_store(lab, prefix)
    yield store
    for key in list(store.list()):
        store.delete(key)
    store.close()


def test_describe_check_and_prefix_isolation(store: S3Store, prefix: str, lab: LabInfo) -> None:
    assert store.describe() == f"s3://{lab.s3.bucket}/{prefix}"
    store.check()

    store.put("chunks/aa/aa01", b"first")
    store.put_overwrite("heads/web-01", b"p2")
    store.put("chunks/bb/bb01", b"")
    store.delete("chunks/aa/aa01")

    # The prefix isolates: the raw bucket holds our keys under it, and nothing leaks outside.
    raw = store.client.list_objects_v2(Bucket=lab.s3.bucket, Prefix=prefix + "/")
    assert sorted(o["Key"] for o in raw.get("Contents", [])) == [
        f"{prefix}/chunks/bb/bb01",
        f"{prefix}/heads/web-01",
    ]


def test_large_objects_go_multipart(lab: LabInfo, prefix: str) -> None:
    store = make_store(lab, prefix, multipart_threshold=MIN_PART_SIZE, multipart_part_size=MIN_PART_SIZE)
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    data = os.urandom(2 * MIN_PART_SIZE + 12345)
    try:
        assert store.put("packs/big", data) is True
        assert calls.count("UploadPart") == 3
        assert "CompleteMultipartUpload" in calls and "PutObject" not in calls
        assert store.get("packs/big") == data
        calls.clear()
        assert store.put("packs/big", data) is False
        assert calls == ["HeadObject"]
        small = os.urandom(1000)
        store.put_overwrite("packs/small", small)
        assert "PutObject" in calls
        assert store.get("packs/small") == small
    finally:
        for key in list(store.list()):
            store.delete(key)
        store.close()


def test_failed_multipart_upload_is_aborted_and_invisible(lab: LabInfo, prefix: str) -> None:
    store = make_store(lab, prefix, multipart_threshold=MIN_PART_SIZE, multipart_part_size=MIN_PART_SIZE)
    parts = 0

    def break_second_part(**_: Any) -> None:
        nonlocal parts
        parts += 1
        if parts == 2:
            raise EndpointConnectionError(endpoint_url=lab.s3.endpoint_url)

    store.client.meta.events.register("before-call.s3.UploadPart", break_second_part)
    try:
        with pytest.raises(TransientStoreError):
            store.put("packs/broken", os.urandom(2 * MIN_PART_SIZE + 1))
        assert store.exists("packs/broken") is False
        pending = store.client.list_multipart_uploads(Bucket=lab.s3.bucket, Prefix=prefix)
        assert pending.get("Uploads", []) == [], "the failed upload must be aborted, not left to accrue parts"
    finally:
        store.close()


def test_missing_bucket_is_a_clear_permanent_error(lab: LabInfo, prefix: str) -> None:
    store = make_store(lab, prefix, bucket=f"no-such-bucket-{uuid.uuid4().hex[:8]}")
    for call in (
        store.check,
        lambda: store.get("k"),
        lambda: store.put("k", b"v"),
        lambda: list(store.list()),
    ):
        with pytest.raises(StoreError) as info:
            call()
        assert not isinstance(info.value, TransientStoreError)
        assert f"bucket {store.bucket!r} does not exist" in str(info.value)
        assert lab.s3.secret_access_key not in str(info.value)
    # Retrying would not help, so the wrapper does not.
    sleeps: list[float] = []
    with pytest.raises(StoreError):
        RetryingStore(store, attempts=5, sleep=sleeps.append).get("k")
    assert sleeps == []
    store.close()


def test_unreachable_endpoint_is_transient_and_retried(lab: LabInfo, prefix: str) -> None:
    store = make_store(lab, prefix, endpoint_url="http://127.0.0.1:9", connect_timeout=1.0)
    sleeps: list[float] = []
    retrying = RetryingStore(store, attempts=3, base_delay=0.01, max_delay=0.02, sleep=sleeps.append)
    with pytest.raises(TransientStoreError, match="gave up after 3 attempts"):
        retrying.put("k", b"v")
    assert len(sleeps) == 2
    store.close()
