"""The data-path scenario (seed + 3 incrementals, verify, restore, retention + GC) on the real
remote backends of the lab — S3 on moto and Azure Blob on Azurite — and from a vcsim VM's disk read
over the datastore HTTP service into the directory backend."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.manifest import RetentionPolicy
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.azure import AzureBlobStore
from seawall.blockstore.stores.backend import ObjectStore
from seawall.blockstore.stores.directory import DirectoryStore
from seawall.blockstore.stores.faults import FaultInjectingStore, fail_randomly
from seawall.blockstore.stores.retrying import RetryingStore
from seawall.blockstore.stores.s3 import S3Store
from seawall.lab import LabInfo
from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.source import VSphereDiskSource
from tests.datapath_scenario import FakeClock, make_image, run_datapath_scenario, scatter_writes

pytestmark = pytest.mark.lab

MiB = 1024 * 1024


def check_report_shape(report: Any) -> None:
    assert report.change_paths == ["full", "hash-compare", "hash-compare", "hash-compare"]
    for changed, shipped in zip(report.bytes_changed[1:], report.bytes_shipped[1:], strict=True):
        assert shipped <= 1.25 * changed + 64 * 1024, (changed, shipped)
    assert report.deleted == ["p0", "p1"]
    assert report.kept == ["p2", "p3"]


def drain(store: ObjectStore) -> None:
    for key in list(store.list()):
        store.delete(key)


@pytest.fixture
def s3_store(lab: LabInfo) -> Iterator[S3Store]:
    store = S3Store(
        lab.s3.bucket,
        f"test-datapath/{uuid.uuid4().hex[:12]}",
        endpoint_url=lab.s3.endpoint_url,
        region=lab.s3.region,
        access_key_id=lab.s3.access_key_id,
        secret_access_key=lab.s3.secret_access_key,
    )
    yield store
    drain(store)
    store.close()


@pytest.fixture
def azure_store(lab: LabInfo) -> Iterator[AzureBlobStore]:
    store = AzureBlobStore(
        lab.azure.container,
        f"test-datapath/{uuid.uuid4().hex[:12]}",
        connection_string=lab.azure.connection_string,
    )
    yield store
    drain(store)
    store.close()


def test_scenario_on_s3(s3_store: S3Store, tmp_path: Path) -> None:
    report = run_datapath_scenario(RetryingStore(s3_store, attempts=5, base_delay=0.05), tmp_path)
    check_report_shape(report)
    assert not list(s3_store.list("sessions/"))


def test_scenario_on_azure(azure_store: AzureBlobStore, tmp_path: Path) -> None:
    report = run_datapath_scenario(RetryingStore(azure_store, attempts=5, base_delay=0.05), tmp_path)
    check_report_shape(report)
    assert not list(azure_store.list("sessions/"))


def test_scenario_on_s3_survives_injected_faults(s3_store: S3Store, tmp_path: Path) -> None:
    """One store call in twenty fails, half of them after the store did the work (a lost answer):
    retries over idempotent operations must give the same recovery points."""
    faulty = FaultInjectingStore(s3_store, fail_randomly(0.05, seed=11))
    store = RetryingStore(faulty, attempts=12, base_delay=0.0, max_delay=0.0, seed=11)
    report = run_datapath_scenario(store, tmp_path)
    check_report_shape(report)
    assert sum(faulty.faults.values()) > 10, faulty.faults


# -- from a vcsim VM over HTTP into the directory backend ---------------------------------------------


def create_vm_over(conn: VSphereConnection, lab: LabInfo, name: str, size: int) -> Any:
    """A VM of our own whose disk is the flat file we wrote, so no other test writes into it."""
    site = lab.primary
    template = conn.find_vm("web-01")
    props = conn.properties(template, ["parent", "resourcePool"])
    controller = vim.vm.device.ParaVirtualSCSIController(
        key=-10, busNumber=0, sharedBus=vim.vm.device.VirtualSCSIController.Sharing.noSharing
    )
    disk = vim.vm.device.VirtualDisk(
        key=-100,
        controllerKey=controller.key,
        unitNumber=0,
        capacityInKB=size // 1024,
        capacityInBytes=size,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            fileName=f"[{site.datastore}] {name}/{name}.vmdk", diskMode="persistent", thinProvisioned=True
        ),
    )
    config = vim.vm.ConfigSpec(
        name=name,
        guestId="otherLinux64Guest",
        numCPUs=1,
        memoryMB=256,
        files=vim.vm.FileInfo(vmPathName=f"[{site.datastore}] {name}/{name}.vmx"),
        deviceChange=[
            vim.vm.device.VirtualDeviceSpec(operation="add", device=controller),
            vim.vm.device.VirtualDeviceSpec(operation="add", device=disk),
        ],
    )
    return conn.wait_for_task(props["parent"].CreateVM_Task(config=config, pool=props["resourcePool"]))


@pytest.fixture
def conn(lab: LabInfo) -> Iterator[VSphereConnection]:
    site = lab.primary
    connection = VSphereConnection(
        site.host, site.user, site.password, port=site.port, protocol=site.protocol
    )
    yield connection
    connection.disconnect()


def test_scenario_from_a_vcsim_disk_over_http(conn: VSphereConnection, lab: LabInfo, tmp_path: Path) -> None:
    size = 6 * MiB
    name = f"seawall-dp-{uuid.uuid4().hex[:8]}"
    vm_dir = lab.primary.datastore_dir / name
    vm_dir.mkdir()
    flat = vm_dir / f"{name}-flat.vmdk"
    rng = random.Random(5)
    make_image(flat, size, rng)
    vm = create_vm_over(conn, lab, name, size)
    store = DirectoryStore(tmp_path / "store")
    clock = FakeClock()
    # A chain of two layers makes cycle 2 write a fresh full table, so retention of p0/p1 leaves
    # tables that only they referenced and GC has something to collect.
    repo = Repository(
        store,
        KeyMaterial(key_id="vsphere", key=bytes(range(32))),
        clock=clock,
        pack_target=256 * 1024,
        max_chain=2,
    )
    expected: dict[str, bytes] = {}
    paths: list[str] = []
    try:
        conn.enable_cbt(vm)  # vcsim accepts it but cannot answer CBT queries: hash-compare it is
        disk_key = conn.vm_disks(vm)[0].key
        parent = None
        for cycle in range(4):
            if cycle:
                scatter_writes(flat, rng, 40)
            snap = f"seawall-{name}-{cycle}"
            conn.create_snapshot(vm, snap)
            # vcsim keeps the base disk live, and nothing else writes into this VM's disk.
            expected[f"p{cycle}"] = flat.read_bytes()
            with VSphereDiskSource(conn, vm, snap, disk_key) as source:
                assert source.size == size
                shipped = repo.ship(source, name, "disk0", parent=parent)
            conn.remove_snapshot(vm, snap)
            assert conn.snapshot_names(vm) == []
            parent = repo.commit_point(name, f"p{cycle}", [shipped], parent=parent)
            paths.append(shipped.change_path)
            clock.advance(minutes=15)
        assert paths == ["full", "hash-compare", "hash-compare", "hash-compare"]

        for point, data in expected.items():
            assert repo.verify_point(name, point).ok
            out = tmp_path / f"{point}.raw"
            repo.restore_disk(name, point, "disk0", out)
            assert out.read_bytes() == data, f"restore of {point} differs from the VM disk"

        retention = repo.apply_retention(name, RetentionPolicy(keep_last=2))
        assert retention.deleted == ["p0", "p1"]
        repo.gc(now=clock.advance(minutes=1))
        second = repo.gc(now=clock.advance(hours=2))
        assert second.tables_deleted > 0
        for point in ("p2", "p3"):
            out = tmp_path / f"{point}-after-gc.raw"
            repo.restore_disk(name, point, "disk0", out)
            assert out.read_bytes() == expected[point]
    finally:
        for snap in conn.snapshot_names(vm):
            conn.remove_snapshot(vm, snap)
        conn.wait_for_task(vm.Destroy_Task())
        if flat.exists():
            flat.unlink()
        for leftover in vm_dir.glob("*") if vm_dir.exists() else ():
            leftover.unlink()
        if vm_dir.exists():
            vm_dir.rmdir()
