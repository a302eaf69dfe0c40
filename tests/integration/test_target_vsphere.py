"""Recover a real recovery point of a primary lab VM into the DR vcsim: disk, VM, drill NIC, IP, cleanup."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import requests
from pyVmomi import vim

from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.directory import DirectoryStore
from seawall.lab import LabInfo
from seawall.model import Network, NicMapping, RecoveryMode, SubnetTranslation, VSphereSite
from seawall.model.ipplan import plan_nic
from seawall.sites.vsphere import datastorewrite, target
from seawall.sites.vsphere import disks as vsphere_disks
from seawall.sites.vsphere import placement as vsphere_placement
from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.session import VSphereError, VSphereNotFound
from seawall.sites.vsphere.source import VSphereDiskSource

pytestmark = pytest.mark.lab


@dataclass(frozen=True)
class ShippedPoint:
    repo: Repository
    vm: str
    point_id: str
    disk: str
    size: int
    digest: str
    source: bytes  # the source disk's bytes the point was taken from


def ship_lab_disk(lab: LabInfo, vm_name: str, store_dir: Path, attempts: int = 3) -> ShippedPoint:
    """A committed, verified recovery point of ``vm_name``'s first disk, in a fresh repository.

    vcsim's snapshot does not freeze the base disk and other tests may write into lab disks, so the
    source bytes are read before and after the ship; the point counts only when they agree.
    """
    site = lab.primary
    lab_disk = site.vm(vm_name).disks[0]
    conn = VSphereConnection(site.host, site.user, site.password, port=site.port, protocol=site.protocol)
    repo = Repository(DirectoryStore(store_dir), KeyMaterial(key_id="target-test", key=bytes(range(32))))
    try:
        vm = conn.find_vm(vm_name)
        disk_key = conn.vm_disks(vm)[0].key
        for attempt in range(attempts):
            before = lab_disk.file.read_bytes()
            snap = f"seawall-target-{uuid.uuid4().hex[:8]}"
            conn.create_snapshot(vm, snap)
            try:
                with VSphereDiskSource(conn, vm, snap, disk_key) as source:
                    shipped = repo.ship(source, vm_name, "disk0")
            finally:
                conn.remove_snapshot(vm, snap)
            after = lab_disk.file.read_bytes()
            if before != after:
                continue
            point_id = f"p{attempt}"
            repo.commit_point(vm_name, point_id, [shipped])
            assert repo.verify_point(vm_name, point_id).ok
            dm = repo.read_manifest(vm_name, point_id).disks[0]
            return ShippedPoint(repo, vm_name, point_id, "disk0", dm.size, dm.digest, before)
        raise AssertionError(f"{vm_name}'s disk kept changing while it was shipped")
    finally:
        conn.disconnect()


@pytest.fixture
def dr(lab: LabInfo) -> Iterator[VSphereConnection]:
    site = lab.dr
    conn = VSphereConnection(site.host, site.user, site.password, port=site.port, protocol=site.protocol)
    yield conn
    conn.disconnect()


def _dr_site(lab: LabInfo) -> VSphereSite:
    return VSphereSite(
        name="dr",
        host=lab.dr.host,
        port=lab.dr.port,
        protocol="http",
        datacenter=lab.dr.datacenter,
        datastore=lab.dr.datastore,
        networks=[
            Network(name="dr-web", cidr=IPv4Network("10.2.1.0/24"), dns_servers=[IPv4Address("10.2.3.53")]),
            Network(name="drill", cidr=IPv4Network("192.168.100.0/24"), isolated=True),
        ],
    )


def _nic_networks(conn: VSphereConnection, vm: Any) -> list[str]:
    keys = {
        str(props["key"]): str(props["name"])
        for _, props in conn.list_objects(vim.dvs.DistributedVirtualPortgroup, ["name", "key"])
    }
    devices = conn.properties(vm, ["config.hardware.device"])["config.hardware.device"]
    backings: list[Any] = [d.backing for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    return [keys[b.port.portgroupKey] for b in backings]


def test_recover_a_point_into_the_dr_site(lab: LabInfo, dr: VSphereConnection, tmp_path: Path) -> None:
    source_vm = "web-01"
    point = ship_lab_disk(lab, source_vm, tmp_path / "store")
    run = uuid.uuid4().hex[:8]
    name = f"{source_vm}-{run}"
    site = lab.dr
    tag = target.RunTag(plan="erp", run=run, source_vm=source_vm)
    primary = VSphereConnection(
        lab.primary.host, lab.primary.user, lab.primary.password, port=lab.primary.port, protocol="http"
    )
    primary_state = primary.power_state(primary.find_vm(source_vm))

    def restore(writer: datastorewrite.Writer) -> object:
        return point.repo.restore_disk(point.vm, point.point_id, point.disk, writer)

    def materialize(fn: datastorewrite.RestoreFn = restore) -> vsphere_disks.UploadedDisk:
        return vsphere_disks.materialize_disk(
            dr,
            datastore=site.datastore,
            datacenter=site.datacenter,
            vm_dir=name,
            disk_name=name,
            size=point.size,
            source_digest=point.digest,
            restore=fn,
            readback=True,
        )

    def failing(writer: datastorewrite.Writer) -> object:
        writer(0, point.source[: 64 * 1024])
        raise RuntimeError("block 1 does not verify")

    try:
        # A restore that fails half-way commits nothing: the retry uploads everything again.
        with pytest.raises(RuntimeError, match="does not verify"):
            materialize(failing)
        marker = requests.get(site.datastore_url(f"{name}/{name}.seawall.json"), timeout=10).json()
        assert marker == {"state": "uploading"}

        disk = materialize()
        assert disk.uploaded and disk.size == point.size == len(point.source)
        assert disk.sha256 == hashlib.sha256(point.source).hexdigest()
        uploaded = requests.get(site.datastore_url(disk.flat), timeout=30)
        assert uploaded.status_code == 200
        assert uploaded.content == point.source, "the DR datastore holds other bytes than the source disk"
        assert (site.datastore_dir / disk.flat).read_bytes() == point.source

        nic = plan_nic(
            NicMapping(
                source_network="prod-web",
                target_network="dr-web",
                test_network="drill",
                ip=SubnetTranslation(
                    from_cidr=IPv4Network("10.1.1.0/24"), to_cidr=IPv4Network("10.2.1.0/24")
                ),
            ),
            _dr_site(lab),
            RecoveryMode.TEST,
            "10.1.1.21",
        )
        assert (nic.backing, str(nic.ip), nic.prefix, str(nic.gateway)) == (
            "drill",
            "10.2.1.21",
            24,
            "10.2.1.1",
        )
        placement = vsphere_placement.resolve_placement(
            dr, site.datacenter, site.datastore, cluster=site.cluster
        )
        vm = target.create_vm(
            dr, name, placement=placement, cpus=2, memory_mib=2048, disks=[disk], nics=[nic], tag=tag
        )
        props = dr.properties(vm, ["config.hardware.numCPU", "config.hardware.memoryMB", "config.annotation"])
        assert (props["config.hardware.numCPU"], props["config.hardware.memoryMB"]) == (2, 2048)
        assert target.RunTag.parse(props["config.annotation"]) == tag
        assert _nic_networks(dr, vm) == ["drill"]
        backing = dr.vm_disks(vm)[0]
        assert (backing.file_name, backing.capacity_bytes) == (disk.datastore_path, point.size)

        assert target.customize_ip(dr, vm, [nic], f"{source_vm}.corp.example.com")
        target.power_on(dr, vm)
        guest = target.wait_guest_ip(dr, vm, "10.2.1.21", timeout=30)
        assert guest.host_name == source_vm
        assert "10.2.1.21" in guest.ips

        # A retried activity: nothing is uploaded again, no second VM, no second customization.
        again = materialize()
        assert not again.uploaded and again.sha256 == disk.sha256
        same = target.create_vm(
            dr, name, placement=placement, cpus=2, memory_mib=2048, disks=[again], nics=[nic], tag=tag
        )
        assert same._moId == vm._moId
        assert not target.customize_ip(dr, vm, [nic], f"{source_vm}.corp.example.com")
        assert [n for _, n, _ in target.find_run_vms(dr, run)] == [name]
        # An operator rewrites the note: the run still finds its VM (extraConfig carries the tag).
        dr.run_task(
            "edit note",
            lambda: vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(annotation="DR drill, do not touch")),
        )
        assert [(n, t) for _, n, t in target.find_run_vms(dr, run)] == [(name, tag)]
        other = target.RunTag(plan="erp", run="someone-else", source_vm=source_vm)
        with pytest.raises(VSphereError, match="not made by run"):
            target.create_vm(
                dr, name, placement=placement, cpus=2, memory_mib=2048, disks=[disk], nics=[nic], tag=other
            )
        with pytest.raises(VSphereError, match="not made by run"):
            target.destroy_vm(dr, name, run_id="someone-else")

        # Production is untouched by the drill.
        assert primary.power_state(primary.find_vm(source_vm)) == primary_state
        assert primary.snapshot_names(primary.find_vm(source_vm)) == []
    finally:
        destroyed = target.destroy_vm(dr, name, run_id=run)
        vsphere_placement.delete_datastore_path(dr, site.datastore, site.datacenter, name)
        primary.disconnect()
    assert destroyed
    assert not target.destroy_vm(dr, name, run_id=run), "a second destroy finds nothing"
    assert target.find_run_vms(dr, run) == []
    assert not (site.datastore_dir / name).exists()


def test_drill_network_is_made_once_and_removed(lab: LabInfo, dr: VSphereConnection) -> None:
    net = f"drill-{uuid.uuid4().hex[:8]}"
    try:
        key = vsphere_placement.ensure_network(dr, net, switch=lab.dr.switch)
        assert vsphere_placement.ensure_network(dr, net, switch=lab.dr.switch) == key
        names = [p["name"] for _, p in dr.list_objects(vim.dvs.DistributedVirtualPortgroup, ["name"])]
        assert names.count(net) == 1
    finally:
        removed = vsphere_placement.remove_network(dr, net)
    assert removed
    assert not vsphere_placement.remove_network(dr, net)
    names = [p["name"] for _, p in dr.list_objects(vim.dvs.DistributedVirtualPortgroup, ["name"])]
    assert net not in names
    with pytest.raises(VSphereNotFound, match="no network or port group named 'no-such-network'"):
        target.create_vm(
            dr,
            f"never-made-{uuid.uuid4().hex[:8]}",
            placement=vsphere_placement.resolve_placement(dr, lab.dr.datacenter, lab.dr.datastore),
            cpus=1,
            memory_mib=128,
            disks=[],
            nics=["no-such-network"],
            tag=target.RunTag("p", "r", "v"),
        )


def test_create_vm_needs_the_uploaded_disk(lab: LabInfo, dr: VSphereConnection) -> None:
    name = f"missing-disk-{uuid.uuid4().hex[:8]}"
    ghost = vsphere_disks.UploadedDisk(
        datastore=lab.dr.datastore,
        descriptor=f"{name}/{name}.vmdk",
        flat=f"{name}/{name}-flat.vmdk",
        size=1024 * 1024,
        source_size=1024 * 1024,
        sha256="0" * 64,
        source_digest="x:" + "0" * 16,
        uploaded=True,
    )
    placement = vsphere_placement.resolve_placement(dr, lab.dr.datacenter, lab.dr.datastore)
    try:
        with pytest.raises(VSphereError, match="FileNotFound"):
            target.create_vm(
                dr,
                name,
                placement=placement,
                cpus=1,
                memory_mib=512,
                disks=[ghost],
                nics=["drill"],
                tag=target.RunTag("p", "r", "v"),
            )
        assert target.find_vm_or_none(dr, name) is None
    finally:
        target.destroy_vm(dr, name)
        vsphere_placement.delete_datastore_path(dr, lab.dr.datastore, lab.dr.datacenter, name)


def test_a_half_made_vm_and_two_disks(
    lab: LabInfo, dr: VSphereConnection, caplog: pytest.LogCaptureFixture
) -> None:
    """A create that died after writing the .vmx is cleared on retry; every disk is attached in order."""
    site = lab.dr
    run = uuid.uuid4().hex[:8]
    name = f"two-disks-{run}"
    images = [bytes([i + 1]) * (1024 * 1024) + bytes(512 * 1024) for i in range(2)]

    def writer_of(data: bytes) -> datastorewrite.RestoreFn:
        def restore(writer: datastorewrite.Writer) -> object:
            writer(0, data[: 1024 * 1024])  # the zero tail is left to the pipe
            return None

        return restore

    tag = target.RunTag(plan="p", run=run, source_vm="db-01")
    try:
        disks = [
            vsphere_disks.materialize_disk(
                dr,
                datastore=site.datastore,
                datacenter=site.datacenter,
                vm_dir=name,
                disk_name=f"disk{i}",
                size=len(data),
                source_digest=f"sha256:{hashlib.sha256(data).hexdigest()}",
                restore=writer_of(data),
            )
            for i, data in enumerate(images)
        ]
        with pytest.raises(VSphereError, match="already holds another recovery point"):
            vsphere_disks.materialize_disk(
                dr,
                datastore=site.datastore,
                datacenter=site.datacenter,
                vm_dir=name,
                disk_name="disk0",
                size=len(images[1]),
                source_digest="sha256:" + "0" * 64,
                restore=writer_of(images[1]),
            )
        stale = requests.put(site.datastore_url(f"{name}/{name}.vmx"), data=b"half-made", timeout=10)
        assert stale.status_code == 200
        placement = vsphere_placement.resolve_placement(dr, site.datacenter, site.datastore)
        with caplog.at_level("WARNING", logger="seawall.sites.vsphere.target"):
            vm = target.create_vm(
                dr, name, placement=placement, cpus=1, memory_mib=512, disks=disks, nics=["drill"], tag=tag
            )
        assert "left by an earlier create" in caplog.text
        attached = dr.vm_disks(vm)
        assert [d.file_name for d in attached] == [d.datastore_path for d in disks]
        for disk, data in zip(disks, images, strict=True):
            assert (site.datastore_dir / disk.flat).read_bytes() == data
    finally:
        target.destroy_vm(dr, name, run_id=run)
        vsphere_placement.delete_datastore_path(dr, site.datastore, site.datacenter, name)
    assert not (site.datastore_dir / name).exists()
