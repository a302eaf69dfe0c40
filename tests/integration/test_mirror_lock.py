"""A mirror on S3 with Object Lock (moto), its primary on Azure (Azurite) without: the mirror locks
every object a copied point needs, so neither its own credentials nor a point removed from the
primary by retention take it out of the mirror before its lock expires; then the mirror prunes it
and its GC removes the data. Own bucket and prefixes: runs beside the other lab tests."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from seawall.blockstore.immutable import ObjectLock, point_objects
from seawall.blockstore.layout import point_key
from seawall.blockstore.manifest import RetentionPolicy
from seawall.blockstore.mirror import mirror_vm, prune_mirror
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.azure import AzureBlobStore
from seawall.blockstore.stores.backend import ObjectLockedError
from seawall.blockstore.tablecache import TableCache
from seawall.lab import LabInfo
from tests.datapath_scenario import BytesSource
from tests.integration.test_object_lock import KEY, _client, _store, lock_bucket

pytestmark = pytest.mark.lab
_ = lock_bucket  # the fixture: a bucket created with Object Lock enabled, emptied after

# Long enough that a loaded machine gets through the checks made while it holds (6 s did not, at load 20).
PERIOD = timedelta(seconds=20)


@pytest.fixture
def primary_store(lab: LabInfo) -> Iterator[AzureBlobStore]:
    az = AzureBlobStore(
        lab.azure.container,
        f"test-mlock/{uuid.uuid4().hex[:12]}",
        connection_string=lab.azure.connection_string,
    )
    yield az
    for k in list(az.list()):
        az.delete(k)


def test_the_mirror_locks_its_copies_and_prunes_them_only_after_the_lock(
    lab: LabInfo, lock_bucket: str, primary_store: AzureBlobStore, tmp_path: Path
) -> None:
    primary = Repository(primary_store, KEY, pack_target=256 * 1024)
    s3 = _store(lab, lock_bucket)
    mirror = Repository(s3, KEY, object_lock=ObjectLock("governance", PERIOD), gc_grace=timedelta(0))
    data = {pid: os.urandom(1024 * 1024) for pid in ("p0", "p1")}
    for pid, disk in data.items():
        primary.commit_point("vm-a", pid, [primary.ship(BytesSource(disk), "vm-a", "disk0")])
        assert primary.verify_point("vm-a", pid).ok
    done = mirror_vm(primary, mirror, "vm-a")
    assert [r.point_id for r in done.results if r.verified] == ["p0", "p1"] and done.lag == 0

    # Every object p0 needs is locked in the mirror, manifest included, for the mirror's period.
    m0 = primary.read_manifest("vm-a", "p0")
    assert m0.lock_until is None  # the primary does not lock: the mirror's own lock does
    tkeys, pkeys = point_objects(TableCache(s3, mirror.codec), m0)
    for k in [point_key("vm-a", "p0"), *tkeys, *pkeys]:
        until = s3.locked_until(k)
        assert until is not None and until >= m0.created_at + PERIOD, k
    # Not with the mirror's own credentials, through the store or raw S3.
    with pytest.raises(ObjectLockedError):
        s3.delete(point_key("vm-a", "p0"))
    raw = _client(lab)
    full = f"replicas/{sorted(pkeys)[0]}"
    version = raw.list_object_versions(Bucket=lock_bucket, Prefix=full)["Versions"][0]["VersionId"]
    with pytest.raises(ClientError) as denied:
        raw.delete_object(Bucket=lock_bucket, Key=full, VersionId=version)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"

    # The primary's retention removes p0: the mirror keeps it while locked, and says so.
    assert primary.apply_retention("vm-a", RetentionPolicy(keep_last=1)).deleted == ["p0"]
    assert prune_mirror(primary, mirror, "vm-a") == ([], ["p0"])
    gc = mirror.gc()
    assert gc.packs_deleted == 0 and gc.tables_deleted == 0
    assert [p.point_id for p in mirror.list_points("vm-a") if p.verified] == ["p0", "p1"]

    # Once the lock expired, the next pass prunes it and GC removes its data; p1 still restores.
    time.sleep(max(0.0, (m0.created_at + PERIOD - mirror.clock()).total_seconds()) + 1.5)
    assert mirror_vm(primary, mirror, "vm-a").pruned == ["p0"]
    mirror.gc()
    gc = mirror.gc()
    assert gc.packs_deleted > 0 and gc.locked == 0, gc
    assert [p.point_id for p in mirror.list_points("vm-a")] == ["p1"]
    out = tmp_path / "p1.raw"
    mirror.restore_disk("vm-a", "p1", "disk0", out)
    assert out.read_bytes() == data["p1"]
