"""The two vcsim sites hold the contract inventory, and the primary disks hold the lab's bytes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import requests
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from seawall.lab import LabInfo, VSphereSiteInfo
from seawall.lab.config import DEFAULT_VMS
from seawall.lab.disks import REGION, disk_pattern, fill_disk, write_blocks
from seawall.lab.vsphere_api import collect

PROBE_SIZE = 1024 * 1024

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
    assert site.networks == ["prod-web", "prod-app", "prod-db"]

    assert site.vm_names[:5] == list(DEFAULT_VMS)
    # Other tests add VMs of their own here; the lab's are checked by name.
    rows = {r["name"]: r for r in collect(si, vim.VirtualMachine, ["name", "config.hardware.device"])}
    for name in site.vm_names:
        row = rows[name]
        disks = [d for d in row["config.hardware.device"] if isinstance(d, vim.vm.device.VirtualDisk)]
        assert len(disks) == (2 if name == "db-01" else 1), name
        for disk in disks:
            assert disk.capacityInBytes == lab.disk_size
            assert disk.backing.fileName.startswith("[ds-primary] ")
    # Power state is checked on the private lab (test_lab_lifecycle): here failover tests may have
    # shut VMs down on purpose, and vcsim's event history is too short to prove what happened at up.
    assert site.vm("db-01").disks[1].datastore_path == "[ds-primary] db-01/db-01_1.vmdk"


def test_dr_site_inventory(lab: LabInfo, connect: Connect) -> None:
    site = lab.dr
    si = connect(site)
    assert [r["name"] for r in collect(si, vim.Datacenter, ["name"])] == ["dc-dr"]
    # The lab makes one; the placement tests add `ds-alt-<id>` ones (vcsim cannot remove a datastore
    # again: HostDatastoreSystem.RemoveDatastore is not implemented), which a lab kept up still has.
    datastores = [r["name"] for r in collect(si, vim.Datastore, ["name"])]
    assert [d for d in datastores if not d.startswith("ds-alt-")] == ["ds-dr"], datastores
    nets = {r["name"] for r in collect(si, vim.Network, ["name"])}
    assert {"dr-web", "dr-app", "dr-db", "drill"} <= nets
    assert site.networks == ["dr-web", "dr-app", "dr-db", "drill"]
    assert site.isolated_networks == ["drill"]
    assert site.vms == []  # the lab protects nothing here; recoveries create what they need
    assert site.datastore_dir.is_dir()


@pytest.fixture
def probe_disk(lab: LabInfo) -> Iterator[str]:
    """A disk image of this test's own in the primary datastore: other tests change the VMs' disks
    (write_blocks between replication cycles), so exact comparisons use a file nobody else touches."""
    relative = f"seawall-tests/{uuid.uuid4().hex}-flat.vmdk"
    path = lab.primary.datastore_dir / relative
    path.parent.mkdir(exist_ok=True)
    path.touch()
    fill_disk(path, "probe", PROBE_SIZE)
    yield relative
    path.unlink()


def test_disk_bytes_over_datastore_http(lab: LabInfo, probe_disk: str) -> None:
    site = lab.primary
    resp = requests.get(site.datastore_url(probe_disk), timeout=30)
    assert resp.status_code == 200
    assert resp.content == disk_pattern("probe", PROBE_SIZE)

    # The VMs' disks: the lab's image, served whole. Other tests may have changed a few blocks.
    for vm in site.vms:
        for index, disk in enumerate(vm.disks):
            resp = requests.get(site.datastore_url(disk.flat_name), timeout=30)
            assert resp.status_code == 200, disk.flat_name
            assert len(resp.content) == disk.capacity_bytes == lab.disk_size
            expected = disk_pattern(vm.name, lab.disk_size, index)
            assert resp.content[:512] == expected[:512]
            regions = range(0, lab.disk_size, REGION)
            changed = [o for o in regions if resp.content[o : o + REGION] != expected[o : o + REGION]]
            assert len(changed) <= len(regions) // 4, f"{disk.flat_name}: {len(changed)} regions differ"


def test_range_reads(lab: LabInfo, probe_disk: str) -> None:
    # vcsim serves datastore files through Go's http.FileServer, so Range requests work (206).
    url = lab.primary.datastore_url(probe_disk)
    expected = disk_pattern("probe", PROBE_SIZE)
    for start, end in [(0, 511), (REGION + 100, REGION + 4195), (PROBE_SIZE - 4096, PROBE_SIZE - 1)]:
        resp = requests.get(url, headers={"Range": f"bytes={start}-{end}"}, timeout=10)
        assert resp.status_code == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{PROBE_SIZE}"
        assert resp.content == expected[start : end + 1]


def test_write_blocks_changes_only_those_bytes(lab: LabInfo) -> None:
    site = lab.primary
    disk = site.vm("app-02").disks[0]
    url = site.datastore_url(disk.flat_name)
    offset, data = lab.disk_size - 3 * 4096, b"\xa5" * 8192
    around = (offset - 4096, offset + len(data) + 4096 - 1)

    def read_range() -> bytes:
        resp = requests.get(url, headers={"Range": f"bytes={around[0]}-{around[1]}"}, timeout=10)
        assert resp.status_code == 206
        return resp.content

    before = read_range()
    try:
        write_blocks(lab, "primary", "app-02", offset, data)
        after = read_range()
        assert after[4096:-4096] == data
        assert after[:4096] == before[:4096] and after[-4096:] == before[-4096:]
        with pytest.raises(ValueError, match="outside"):
            write_blocks(lab, "primary", "app-02", lab.disk_size - 10, b"x" * 11)
    finally:
        # Only these bytes go back: restore_disk would also undo other tests' deliberate changes.
        write_blocks(lab, "primary", "app-02", offset, before[4096:-4096])
    assert read_range() == before
