"""Immutable points on S3 Object Lock, against the lab's moto.

Each test creates its own bucket with Object Lock enabled (it can only be turned on at creation)
and cleans up with the governance bypass the product itself never uses.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from seawall.blockstore.immutable import ObjectLock, point_objects
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.layout import point_key
from seawall.blockstore.manifest import RetentionPolicy
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.backend import ObjectLockedError, StoreError
from seawall.blockstore.stores.directory import DirectoryStore
from seawall.blockstore.stores.retrying import RetryingStore
from seawall.blockstore.stores.s3 import S3Store
from seawall.blockstore.tablecache import TableCache
from seawall.lab import LabInfo
from tests.datapath_scenario import BytesSource

pytestmark = pytest.mark.lab

MiB = 1024 * 1024
KEY = KeyMaterial(key_id="lock-test", key=bytes(range(32)))


def _client(lab: LabInfo) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=lab.s3.endpoint_url,
        region_name=lab.s3.region,
        aws_access_key_id=lab.s3.access_key_id,
        aws_secret_access_key=lab.s3.secret_access_key,
    )


@pytest.fixture
def lock_bucket(lab: LabInfo) -> Iterator[str]:
    client = _client(lab)
    name = f"seawall-lock-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    yield name
    resp = client.list_object_versions(Bucket=name)
    leftover = 0
    for v in [*resp.get("Versions", []), *resp.get("DeleteMarkers", [])]:
        try:
            client.delete_object(
                Bucket=name, Key=v["Key"], VersionId=v["VersionId"], BypassGovernanceRetention=True
            )
        except ClientError:
            leftover += 1  # compliance mode: not even the test can; the lab's moto goes with the lab
    if not leftover:
        client.delete_bucket(Bucket=name)


def _store(lab: LabInfo, bucket: str, *, object_lock: bool = True) -> S3Store:
    return S3Store(
        bucket,
        "replicas",
        endpoint_url=lab.s3.endpoint_url,
        region=lab.s3.region,
        access_key_id=lab.s3.access_key_id,
        secret_access_key=lab.s3.secret_access_key,
        object_lock=object_lock,
    )


def _repo(store: Any, period: timedelta, mode: str = "governance") -> Repository:
    return Repository(
        RetryingStore(store, attempts=2, base_delay=0.01),
        KEY,
        object_lock=ObjectLock(mode, period),  # type: ignore[arg-type]
        pack_target=256 * 1024,
        gc_grace=timedelta(0),
    )


def _ship(repo: Repository, data: bytes, point_id: str, parent: Any = None) -> Any:
    shipped = repo.ship(BytesSource(data), "vm-a", "disk0", parent=parent)
    return repo.commit_point("vm-a", point_id, [shipped], parent=parent)


def test_locked_point_survives_its_own_credentials_gc_and_retention(
    lab: LabInfo, lock_bucket: str, tmp_path: Path
) -> None:
    store = _store(lab, lock_bucket)
    period = timedelta(seconds=20)  # the checks made while it holds take seconds on a loaded machine
    repo = _repo(store, period)
    seed = os.urandom(2 * MiB)
    p0 = _ship(repo, seed, "p0")
    # p1 is a new full (other data), so once p0 goes its packs are garbage.
    changed = os.urandom(2 * MiB)
    p1 = _ship(repo, changed, "p1")
    assert repo.verify_point("vm-a", "p0").ok and repo.verify_point("vm-a", "p1").ok

    # Every object p0 needs carries a lock until created_at + period.
    m0 = repo.read_manifest("vm-a", "p0")
    assert m0.lock_until == m0.created_at + period
    tkeys, pkeys = point_objects(TableCache(store, repo.codec), m0)
    assert tkeys and pkeys
    for k in [point_key("vm-a", "p0"), *tkeys, *pkeys]:
        until = store.locked_until(k)
        assert until is not None and until >= m0.lock_until, k

    # The store's own credentials cannot delete a locked version, through the store or raw boto3.
    with pytest.raises(ObjectLockedError, match="object lock"):
        store.delete(point_key("vm-a", "p0"))
    raw = _client(lab)
    full = f"replicas/{sorted(pkeys)[0]}"
    version = raw.list_object_versions(Bucket=lock_bucket, Prefix=full)["Versions"][0]["VersionId"]
    with pytest.raises(ClientError) as denied:
        raw.delete_object(Bucket=lock_bucket, Key=full, VersionId=version)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    # An overwrite is a new version: the locked data stays readable under its version id.
    before = raw.get_object(Bucket=lock_bucket, Key=full)["Body"].read()
    raw.put_object(Bucket=lock_bucket, Key=full, Body=b"ransom")
    assert raw.get_object(Bucket=lock_bucket, Key=full, VersionId=version)["Body"].read() == before
    raw.delete_object(
        Bucket=lock_bucket, Key=full, VersionId=raw.head_object(Bucket=lock_bucket, Key=full)["VersionId"]
    )

    # Retention wants only the newest point, but p0's lock holds: kept and said so; GC deletes nothing.
    result = repo.apply_retention("vm-a", RetentionPolicy(keep_last=1))
    assert result.locked == ["p0"] and result.deleted == []
    assert [p.point_id for p in repo.list_points("vm-a")] == ["p0", "p1"]
    assert repo.list_points("vm-a")[0].locked_until == m0.lock_until
    gc = repo.gc()
    assert gc.packs_deleted == 0 and gc.tables_deleted == 0

    # After the lock expires, retention removes p0 and GC its data; p1 still restores.
    time.sleep(max(0.0, (m0.lock_until - repo.clock()).total_seconds()) + 1.5)
    result = repo.apply_retention("vm-a", RetentionPolicy(keep_last=1))
    assert result.deleted == ["p0"] and result.locked == []
    repo.gc()
    gc = repo.gc()
    assert gc.packs_deleted > 0 and gc.tables_deleted > 0 and gc.locked == 0, gc
    assert not raw.list_object_versions(Bucket=lock_bucket, Prefix=full).get("Versions")
    assert [p.point_id for p in repo.list_points("vm-a")] == ["p1"]
    out = tmp_path / "p1.raw"
    repo.restore_disk("vm-a", "p1", "disk0", out)
    assert out.read_bytes() == bytes(changed)
    assert p0.point_id == "p0" and p1.point_id == "p1"


def test_gc_keeps_locked_unreferenced_objects_and_says_so(lab: LabInfo, lock_bucket: str) -> None:
    """A manifest removed behind the product's back (governance bypass) leaves locked data: GC
    cannot delete it, keeps it condemned and counts it, and does not fail."""
    store = _store(lab, lock_bucket)
    repo = _repo(store, timedelta(minutes=10), mode="compliance")
    _ship(repo, os.urandom(MiB), "p0")
    raw = _client(lab)
    full = "replicas/" + point_key("vm-a", "p0")
    for v in raw.list_object_versions(Bucket=lock_bucket, Prefix=full)["Versions"]:
        with pytest.raises(ClientError):  # compliance: not even with the bypass
            raw.delete_object(
                Bucket=lock_bucket, Key=full, VersionId=v["VersionId"], BypassGovernanceRetention=True
            )
    # Hide the manifest with a delete marker (what a plain DELETE does in a versioned bucket).
    raw.delete_object(Bucket=lock_bucket, Key=full)
    assert repo.list_points("vm-a") == []
    repo.gc()
    gc = repo.gc()
    assert gc.locked > 0 and gc.packs_deleted == 0 and gc.tables_deleted == 0
    assert list(store.list("packs/"))


def test_lock_refused_where_the_store_cannot_lock(lab: LabInfo, tmp_path: Path) -> None:
    # The lab's ordinary bucket has no Object Lock: the first commit says so and writes no manifest.
    store = _store(lab, lab.s3.bucket)
    store.prefix = f"test-lock/{uuid.uuid4().hex[:8]}"
    repo = _repo(store, timedelta(hours=1))
    with pytest.raises(StoreError, match="does not have Object Lock enabled"):
        _ship(repo, os.urandom(256 * 1024), "p0")
    assert not list(store.list("points/"))
    for k in list(store.list()):
        store.delete(k)
    # A directory store cannot lock at all.
    drepo = Repository(
        DirectoryStore(tmp_path / "d"), KEY, object_lock=ObjectLock("governance", timedelta(hours=1))
    )
    with pytest.raises(StoreError, match="cannot lock objects"):
        _ship(drepo, os.urandom(256 * 1024), "p0")
    assert not list(DirectoryStore(tmp_path / "d").list("points/"))
