"""The two vcsim sites hold the contract inventory, and the primary disks hold the lab's bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from seawall.lab import LabInfo, VSphereSiteInfo
from seawall.lab.config import DEFAULT_VMS
from seawall.lab.disks import disk_pattern, restore_disk, write_blocks
from seawall.lab.vsphere import collect

Connect = Callable[[VSphereSiteInfo], vim.ServiceInstance]


@pytest.fixture
def connect(lab: LabInfo) -> Iterator[Connect]:
    opened: list[vim.ServiceInstance] = []

    def _connect(site: VSphereSiteInfo) -> vim.ServiceInstance:
        si = SmartConnect(host=site.host, port=site.port, user=site.user, pwd=site.password, protocol="http")
        opened.append(si)
        return si

    yield _connect
    for si in opened:
        Disconnect(si)


def test_primary_site_inventory(lab: LabInfo, connect: Connect) -> None:
    site = lab.primary
    si = connect(site)
    assert [r["name"] for r in collect(si, vim.Datacenter, ["name"])] == ["dc-primary"]
    assert [r["name"] for r in collect(si, vim.Datastore, ["name"])] == ["ds-primary"]
    assert len(collect(si, vim.ClusterComputeResource, ["name"])) == 1
    assert len(collect(si, vim.HostSystem, ["name"])) >= 1
    nets = {r["name"] for r in collect(si, vim.Network, ["name"])}
    assert {"prod-web", "prod-app", "prod-db"} <= nets

    vms = {
        r["name"]: r
        for r in collect(si, vim.VirtualMachine, ["name", "runtime.powerState", "config.hardware.device"])
    }
    assert set(DEFAULT_VMS) <= set(vms)
    assert set(vms) == set(site.vm_names)
    for name, row in vms.items():
        assert row["runtime.powerState"] == "poweredOn", name
        disks = [d for d in row["config.hardware.device"] if isinstance(d, vim.vm.device.VirtualDisk)]
        assert len(disks) == (2 if name == "db-01" else 1), name
        for disk in disks:
            assert disk.capacityInBytes == lab.disk_size
            assert disk.backing.fileName.startswith("[ds-primary] ")
    assert site.vm("db-01").disks[1].datastore_path == "[ds-primary] db-01/db-01_1.vmdk"


def test_dr_site_inventory(lab: LabInfo, connect: Connect) -> None:
    site = lab.dr
    si = connect(site)
    assert [r["name"] for r in collect(si, vim.Datacenter, ["name"])] == ["dc-dr"]
    assert [r["name"] for r in collect(si, vim.Datastore, ["name"])] == ["ds-dr"]
    nets = {r["name"] for r in collect(si, vim.Network, ["name"])}
    assert {"dr-web", "dr-app", "dr-db", "drill"} <= nets
    assert site.isolated_networks == ["drill"]
    protected = set(lab.primary.vm_names)
    assert not protected & {r["name"] for r in collect(si, vim.VirtualMachine, ["name"])}
    assert site.datastore_dir.is_dir()


def test_disk_bytes_over_datastore_http(lab: LabInfo) -> None:
    site = lab.primary
    for vm in site.vms:
        for index, disk in enumerate(vm.disks):
            resp = requests.get(site.datastore_url(disk.flat_name), timeout=30)
            assert resp.status_code == 200, disk.flat_name
            expected = disk_pattern(vm.name, lab.disk_size, index)
            assert len(resp.content) == lab.disk_size
            assert resp.content == expected, (
                f"{disk.flat_name} differs from the lab's image: a test changed it with write_blocks "
                "and did not put it back with restore_disk"
            )
            assert disk.file.read_bytes() == expected
    # The image is not trivial: zero, text and random-looking regions are all there.
    image = disk_pattern("web-01", lab.disk_size)
    assert image.count(bytes(64 * 1024)) >= 1
    assert b"SEAWALL LAB DISK vm=web-01" in image[:512]


def test_range_reads(lab: LabInfo) -> None:
    # vcsim serves datastore files through Go's http.FileServer, so Range requests work (206).
    site = lab.primary
    disk = site.vm("app-01").disks[0]
    expected = disk_pattern("app-01", lab.disk_size)
    for start, end in [(0, 511), (65536 + 100, 65536 + 4195), (lab.disk_size - 4096, lab.disk_size - 1)]:
        headers = {"Range": f"bytes={start}-{end}"}
        resp = requests.get(site.datastore_url(disk.flat_name), headers=headers, timeout=10)
        assert resp.status_code == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{lab.disk_size}"
        assert resp.content == expected[start : end + 1]


def test_write_blocks_changes_only_those_bytes(lab: LabInfo) -> None:
    site = lab.primary
    disk = site.vm("app-02").disks[0]
    offset, data = 1024 * 1024 + 4096, b"\xa5" * 8192
    try:
        write_blocks(lab, "primary", "app-02", offset, data)
        resp = requests.get(site.datastore_url(disk.flat_name), timeout=30)
        expected = bytearray(disk_pattern("app-02", lab.disk_size))
        expected[offset : offset + len(data)] = data
        assert resp.content == bytes(expected)
        with pytest.raises(ValueError, match="outside"):
            write_blocks(lab, "primary", "app-02", lab.disk_size - 10, b"x" * 11)
    finally:
        restore_disk(lab, "primary", "app-02")
    assert disk.file.read_bytes() == disk_pattern("app-02", lab.disk_size)
