"""Mirroring points from S3 (moto) to Azure Blob (Azurite): only missing objects, verified there,
restorable from the mirror alone, and a crash mid-copy finished by running it again."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.layout import point_key
from seawall.blockstore.mirror import mirror_point, mirrored
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.azure import AzureBlobStore
from seawall.blockstore.stores.backend import ObjectStore
from seawall.blockstore.stores.s3 import S3Store
from seawall.lab import LabInfo
from tests.datapath_scenario import BytesSource

pytestmark = pytest.mark.lab

MiB = 1024 * 1024
KEY = KeyMaterial(key_id="mirror-test", key=bytes(range(32)))


@pytest.fixture
def stores(lab: LabInfo) -> Iterator[tuple[S3Store, AzureBlobStore]]:
    tag = uuid.uuid4().hex[:12]
    s3 = S3Store(
        lab.s3.bucket,
        f"test-mirror/{tag}",
        endpoint_url=lab.s3.endpoint_url,
        region=lab.s3.region,
        access_key_id=lab.s3.access_key_id,
        secret_access_key=lab.s3.secret_access_key,
    )
    az = AzureBlobStore(
        lab.azure.container, f"test-mirror/{tag}", connection_string=lab.azure.connection_string
    )
    yield s3, az
    for s in (s3, az):
        store: ObjectStore = s
        for k in list(store.list()):
            store.delete(k)


class CrashAfter:
    """An ObjectStore wrapper whose put fails after ``n`` successful puts (a worker dying mid-copy)."""

    def __init__(self, inner: ObjectStore, n: int) -> None:
        self.inner, self.n = inner, n

    def put(self, key: str, data: bytes) -> bool:
        if self.n <= 0:
            raise RuntimeError("crash")
        self.n -= 1
        return self.inner.put(key, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_points_mirror_from_s3_to_azure_and_restore_from_the_mirror(
    stores: tuple[S3Store, AzureBlobStore], tmp_path: Path
) -> None:
    s3, az = stores
    primary = Repository(s3, KEY, pack_target=256 * 1024)
    mirror = Repository(az, KEY, pack_target=256 * 1024)
    seed = os.urandom(2 * MiB)
    p0 = primary.commit_point("vm-a", "p0", [primary.ship(BytesSource(seed), "vm-a", "disk0")])
    changed = bytearray(seed)
    changed[4096:8192] = os.urandom(4096)
    p1 = primary.commit_point(
        "vm-a", "p1", [primary.ship(BytesSource(bytes(changed)), "vm-a", "disk0", parent=p0)], parent=p0
    )

    # A crash part-way: the mirror lists no point yet (the manifest goes last)...
    crashing = Repository(CrashAfter(az, 3), KEY)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="crash"):
        mirror_point(primary, crashing, "vm-a", "p0")
    assert not az.exists(point_key("vm-a", "p0")) and mirror.list_points("vm-a") == []
    # ...and running it again sends only what is missing, then verifies in the mirror.
    r0 = mirror_point(primary, mirror, "vm-a", "p0")
    assert r0.verified and r0.errors == [], r0
    held = [k for k in az.list() if not k.startswith("verified/")]
    assert r0.copied == len(held) - 3  # the three the crashed run had written were not sent again
    assert mirrored(mirror, "vm-a", "p0")
    # The incremental shares the seed's data: only its delta goes over.
    r1 = mirror_point(primary, mirror, "vm-a", "p1")
    assert r1.verified and r1.bytes_copied < 256 * 1024, r1
    again = mirror_point(primary, mirror, "vm-a", "p1")
    assert again.copied == 0 and again.verified

    # The mirror alone restores both points byte for byte.
    alone = Repository(az, KEY)
    assert [p.point_id for p in alone.list_points("vm-a") if p.verified] == ["p0", "p1"]
    for point, data in (("p0", seed), ("p1", bytes(changed))):
        out = tmp_path / f"{point}.raw"
        alone.restore_disk("vm-a", point, "disk0", out)
        assert out.read_bytes() == data
    assert p1.point_id == "p1"


def test_mirror_refuses_another_key(stores: tuple[S3Store, AzureBlobStore]) -> None:
    s3, az = stores
    primary = Repository(s3, KEY)
    primary.commit_point("vm-a", "p0", [primary.ship(BytesSource(os.urandom(64 * 1024)), "vm-a", "disk0")])
    other = Repository(az, KeyMaterial.generate())
    with pytest.raises(ValueError, match="same key"):
        mirror_point(primary, other, "vm-a", "p0")
    assert list(az.list()) == []


def test_the_mirror_activity_catches_up_and_retention_applies_to_both(lab: LabInfo, tmp_path: Path) -> None:
    """The real activities (ActivityEnvironment) on the lab inventory: s3 mirrored to azure."""
    import yaml
    from temporalio.testing import ActivityEnvironment

    from activities.context import SiteContext
    from activities.mirror import MirrorActivities
    from activities.replica import RetentionActivities
    from seawall.contract.messages import VMRef
    from seawall.plans import load_inventory
    from seawall.sites.replica import open_mirror, open_repository
    from tests.integration.replication_env import write_inventory

    path = write_inventory(
        tmp_path, Path(lab.state_dir), s3_prefix=f"mirror-{uuid.uuid4().hex[:8]}/", lab=lab
    )
    data = yaml.safe_load(path.read_text())
    for store in data["replica_stores"]:
        if store["name"] == "s3":
            store["mirror"] = "azure"
    for vm in data["protected_vms"]:
        vm["replica_store"] = "s3"
    for pol in data["policies"]:
        pol["retention_count"], pol["retention_hours"] = 1, None
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    inv = load_inventory(path)
    vm = inv.protected_vms[0]
    policy = inv.policy(vm.policy)
    primary = open_repository(inv, "s3", policy)
    opened = open_mirror(inv, primary, "s3")
    assert opened is not None and opened[0] == "azure"
    far = opened[1]
    try:
        disks = [os.urandom(512 * 1024) for _ in range(3)]
        for i, d in enumerate(disks):
            ref = primary.commit_point(vm.name, f"p{i}", [primary.ship(BytesSource(d), vm.name, "disk0")])
            assert primary.verify_point(vm.name, ref.point_id).ok
        ctx = SiteContext(inv, vm.source_site)
        out = ActivityEnvironment().run(MirrorActivities(ctx).mirror_points, VMRef(vm=vm.name))
        assert (out.mirror, out.mirrored, out.lag) == ("azure", ["p0", "p1", "p2"], 0)
        assert out.bytes_copied > 3 * 512 * 1024  # random data: everything went over
        again = ActivityEnvironment().run(MirrorActivities(ctx).mirror_points, VMRef(vm=vm.name))
        assert again.mirrored == [] and again.bytes_copied == 0
        # Retention of the policy runs on both stores.
        ActivityEnvironment().run(RetentionActivities(ctx).apply_retention, VMRef(vm=vm.name))
        assert [p.point_id for p in primary.list_points(vm.name)] == ["p2"]
        assert [p.point_id for p in far.list_points(vm.name)] == ["p2"]
    finally:
        for repo in (primary, far):
            for k in list(repo.store.list()):
                repo.store.delete(k)


def test_recovery_reads_the_mirror_when_the_store_is_unreachable(lab: LabInfo, tmp_path: Path) -> None:
    """choose_point (the real activity) finds the newest verified point in the mirror when the
    VM's S3 store cannot be reached, names the mirror, and the point restores from it."""
    import socket

    import yaml
    from temporalio.testing import ActivityEnvironment

    from activities.context import SiteContext
    from activities.mirror import MirrorActivities
    from activities.target import RecoveryActivities
    from seawall.contract.messages import RecoverVMInput, VMRef
    from seawall.plans import load_inventory
    from seawall.runtime.config import Settings
    from seawall.sites.replica import open_mirror, open_repository
    from tests.integration.replication_env import write_inventory

    path = write_inventory(
        tmp_path, Path(lab.state_dir), s3_prefix=f"mirror-{uuid.uuid4().hex[:8]}/", lab=lab
    )
    data = yaml.safe_load(path.read_text())
    for store in data["replica_stores"]:
        if store["name"] == "s3":
            store["mirror"] = "azure"
    for vm in data["protected_vms"]:
        vm["replica_store"] = "s3"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    inv = load_inventory(path)
    pvm = inv.protected_vms[0]
    primary = open_repository(inv, "s3", inv.policy(pvm.policy))
    opened = open_mirror(inv, primary, "s3")
    assert opened is not None
    far = opened[1]
    disk = os.urandom(512 * 1024)
    try:
        primary.commit_point(pvm.name, "p0", [primary.ship(BytesSource(disk), pvm.name, "disk0")])
        assert primary.verify_point(pvm.name, "p0").ok
        ActivityEnvironment().run(
            MirrorActivities(SiteContext(inv, pvm.source_site)).mirror_points, VMRef(vm=pvm.name)
        )

        # The S3 endpoint goes away (a port nothing listens on): the region is gone.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        for store in data["replica_stores"]:
            if store["name"] == "s3":
                store["endpoint_url"] = f"http://127.0.0.1:{dead}"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        down = load_inventory(path)
        target = pvm.target_sites[0]
        acts = RecoveryActivities(SiteContext(down, target), Settings(inventory=path))
        inp = RecoverVMInput(plan="p", run="r", mode="test", vm=pvm.name, target_site=target)
        chosen = ActivityEnvironment().run(acts.choose_point, inp)
        assert (chosen.point_id, chosen.store, chosen.disks) == ("p0", "azure", ["disk0"])
        out = tmp_path / "p0.raw"
        acts._repository(pvm.name, chosen.store).restore_disk(pvm.name, "p0", "disk0", out)
        assert out.read_bytes() == disk
    finally:
        for repo in (primary, far):
            for k in list(repo.store.list()):
                repo.store.delete(k)
