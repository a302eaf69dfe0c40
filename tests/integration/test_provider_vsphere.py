"""The vSphere provider against the lab's primary vcsim: lookup, disks, snapshots, CBT, tasks, power."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from seawall.lab import LabInfo
from seawall.model import VSphereSite
from seawall.sites.vsphere import shared as shared_module
from seawall.sites.vsphere.adapter import VSphereAdapter
from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.session import VSphereError, VSphereNotFound, VSphereTaskError

pytestmark = pytest.mark.lab


@pytest.fixture
def conn(lab: LabInfo) -> Iterator[VSphereConnection]:
    site = lab.primary
    connection = VSphereConnection(
        site.host, site.user, site.password, port=site.port, protocol=site.protocol
    )
    yield connection
    connection.disconnect()


@pytest.fixture
def snapshot_name(conn: VSphereConnection, lab: LabInfo) -> Iterator[str]:
    name = f"seawall-test-{uuid.uuid4().hex[:10]}"
    yield name
    left = [vm.name for vm in lab.primary.vms if name in conn.snapshot_names(conn.find_vm(vm.name))]
    assert left == [], f"snapshot {name!r} left behind on {left}"


def test_connects_and_reuses_one_session(conn: VSphereConnection) -> None:
    si = conn.connect()
    assert conn.connect() is si
    # The ServiceContent is read once per connection, not per property read (a round trip each).
    assert conn.content is conn.content
    cookie = conn.session_cookie()
    assert cookie
    conn.ensure_session()
    assert conn.session_cookie() == cookie, "a live session is kept, not replaced"
    assert "pass" not in repr(conn)


def test_rejected_login_is_a_clear_error(lab: LabInfo) -> None:
    site = lab.primary
    # vcsim accepts any non-empty user/password pair, so an empty password is what it rejects.
    bad = VSphereConnection(site.host, site.user, "", port=site.port, protocol=site.protocol)
    with pytest.raises(VSphereError, match="rejected the user name or password"):
        bad.connect()


def test_unreachable_server_is_a_clear_error(lab: LabInfo) -> None:
    down = VSphereConnection("127.0.0.1", "user", "pass", port=9, protocol="http", timeout=2)
    with pytest.raises(VSphereError, match=r"cannot connect to vSphere http://127\.0\.0\.1:9"):
        down.connect()


def test_finds_vm_and_its_disks(conn: VSphereConnection, lab: LabInfo) -> None:
    site = lab.primary
    for lab_vm in site.vms:
        vm = conn.find_vm(lab_vm.name)
        assert conn.vm_name(vm) == lab_vm.name
        disks = conn.vm_disks(vm)
        assert [(d.file_name, d.capacity_bytes) for d in disks] == [
            (d.datastore_path, d.capacity_bytes) for d in lab_vm.disks
        ]
        for disk, lab_disk in zip(disks, lab_vm.disks, strict=True):
            assert disk.datastore == site.datastore
            assert not disk.is_delta
            assert conn.datastore_url(disk.file_name) == site.datastore_url(lab_disk.flat_name)
    with pytest.raises(VSphereNotFound, match="no VM named 'no-such-vm'"):
        conn.find_vm("no-such-vm")


def test_datacenter_path_and_url(conn: VSphereConnection, lab: LabInfo) -> None:
    site = lab.primary
    vm = conn.find_vm("web-01")
    assert conn.datacenter_path(vm) == site.datacenter
    assert conn.datastore_datacenter(site.datastore) == site.datacenter
    url = conn.datastore_url(f"[{site.datastore}] web-01/web-01.vmdk")
    assert url == (
        f"http://{site.host}:{site.port}/folder/web-01/web-01-flat.vmdk"
        f"?dcPath={site.datacenter}&dsName={site.datastore}"
    )
    with pytest.raises(VSphereNotFound):
        conn.datastore_url("[no-such-ds] web-01/web-01.vmdk")


def test_snapshots_are_idempotent_by_name(conn: VSphereConnection, lab: LabInfo, snapshot_name: str) -> None:
    vm = conn.find_vm("web-01")
    try:
        first = conn.create_snapshot(vm, snapshot_name, quiesce=False)
        second = conn.create_snapshot(vm, snapshot_name, quiesce=False)
        assert first._moId == second._moId
        assert [s._moId for s in conn.find_snapshots(vm, snapshot_name)] == [first._moId]
        found = conn.find_snapshot(vm, snapshot_name)
        assert found is not None and found._moId == first._moId
        assert conn.find_snapshot(vm, f"{snapshot_name}-other") is None
    finally:
        removed = conn.remove_snapshot(vm, snapshot_name)
    assert removed == 1
    assert conn.remove_snapshot(vm, snapshot_name) == 0, "removing a gone snapshot succeeds"
    assert conn.find_snapshot(vm, snapshot_name) is None


def test_remove_snapshot_clears_duplicates_left_by_a_race(
    conn: VSphereConnection, snapshot_name: str
) -> None:
    vm = conn.find_vm("web-01")
    try:
        # Two activity attempts that both missed each other's snapshot.
        for _ in range(2):
            conn.wait_for_task(
                vm.CreateSnapshot_Task(name=snapshot_name, description="", memory=False, quiesce=False)
            )
        assert len(conn.find_snapshots(vm, snapshot_name)) == 2
    finally:
        assert conn.remove_snapshot(vm, snapshot_name) == 2
    assert conn.find_snapshots(vm, snapshot_name) == []


def test_what_a_snapshot_does_to_the_disk_backing(
    conn: VSphereConnection, lab: LabInfo, snapshot_name: str
) -> None:
    """Readers take the backing from the snapshot's config. On vcsim the VM stays on its base disk
    (no delta is made, the base -flat.vmdk stays live); on ESXi the VM moves to a delta and the base
    becomes stable. Either way the snapshot names the flat base disk."""
    vm = conn.find_vm("web-01")
    lab_disk = lab.primary.vm("web-01").disks[0]
    before = conn.vm_disks(vm)[0]
    files_before = {p.name for p in lab_disk.file.parent.iterdir()}
    try:
        snap = conn.create_snapshot(vm, snapshot_name)
        at_snapshot = conn.snapshot_disks(snap)[0]
        after = conn.vm_disks(vm)[0]
        new_files = {p.name for p in lab_disk.file.parent.iterdir()} - files_before
        assert at_snapshot.file_name == before.file_name == lab_disk.datastore_path
        assert not at_snapshot.is_delta
        if after.file_name == before.file_name:
            # vcsim: only a memory-state file appears; the bytes stay in the base -flat.vmdk.
            assert not after.is_delta
            assert not any(name.endswith(".vmdk") for name in new_files), new_files
            assert any(name.endswith(".vmsn") for name in new_files), new_files
        else:
            assert after.is_delta
    finally:
        conn.remove_snapshot(vm, snapshot_name)


def test_cbt_is_accepted_but_not_implemented_on_vcsim(
    conn: VSphereConnection, snapshot_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    vm = conn.find_vm("web-01")
    status = conn.enable_cbt(vm)
    assert status.enabled
    assert conn.enable_cbt(vm) == status
    try:
        snap = conn.create_snapshot(vm, snapshot_name)
        disk = conn.snapshot_disks(snap)[0]
        with caplog.at_level(logging.INFO, logger="seawall.sites.vsphere.client"):
            areas = conn.query_changed_disk_areas(vm, snap, disk.key, 0, "*")
        assert areas is None
        assert "does not implement QueryChangedDiskAreas" in caplog.text
    finally:
        conn.remove_snapshot(vm, snapshot_name)


def test_properties_read_only_what_is_named(conn: VSphereConnection) -> None:
    vm = conn.find_vm("web-01")
    props = conn.properties(vm, ["name", "runtime.powerState", "config.changeTrackingEnabled"])
    assert set(props) <= {"name", "runtime.powerState", "config.changeTrackingEnabled"}
    assert props["name"] == "web-01"
    names = {props["name"] for _, props in conn.list_objects(vim.VirtualMachine)}
    assert "web-01" in names


def _scratch_vm(conn: VSphereConnection, lab: LabInfo, name: str) -> Any:
    """A throwaway VM, so power tests do not disturb the protected VMs other tests replicate."""
    site = lab.primary
    web = conn.find_vm("web-01")
    props = conn.properties(web, ["parent", "resourcePool"])
    spec = vim.vm.ConfigSpec(
        name=name,
        numCPUs=1,
        memoryMB=64,
        guestId="otherGuest64",
        files=vim.vm.FileInfo(vmPathName=f"[{site.datastore}]"),
    )
    return conn.wait_for_task(props["parent"].CreateVM_Task(config=spec, pool=props["resourcePool"]))


def test_power_operations_are_idempotent(conn: VSphereConnection, lab: LabInfo) -> None:
    vm = _scratch_vm(conn, lab, f"seawall-test-power-{uuid.uuid4().hex[:8]}")
    try:
        conn.power_on(vm)
        assert conn.power_state(vm) == "poweredOn"
        conn.power_on(vm)
        conn.power_off(vm)
        assert conn.power_state(vm) == "poweredOff"
        conn.power_off(vm)
        assert conn.power_state(vm) == "poweredOff"
        # A task that fails reports the fault, named.
        with pytest.raises(VSphereTaskError, match="InvalidPowerState"):
            conn.wait_for_task(vm.PowerOffVM_Task(), what="power off again")
    finally:
        conn.wait_for_task(vm.Destroy_Task())
    with pytest.raises(VSphereNotFound):
        conn.power_state(vm)


def test_adapter_verbs_share_one_session_and_log_in_again_when_it_is_gone(
    lab: LabInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recovered VM's verbs (materialize, create, health) share the adapter's session instead of a
    login each; a session the server ended is dropped, the next verb logs in anew; new credentials
    (a rotated password) log in anew; a probe always logs in on its own."""
    site = lab.dr
    creds = tmp_path / "dr.json"
    creds.write_text(json.dumps({"user": site.user, "password": site.password}))
    adapter = VSphereAdapter(
        VSphereSite(
            name="dr",
            host=site.host,
            port=site.port,
            protocol=site.protocol,
            datacenter=site.datacenter,
            datastore=site.datastore,
            credentials=f"file:{creds}",
        )
    )
    with adapter.connect() as first:
        cookie = first.session_cookie()
    with adapter.connect() as second:
        assert second is first and second.session_cookie() == cookie
    assert adapter.probe()
    with adapter.connect() as after_probe:
        assert after_probe is first, "a probe's own login does not replace the shared session"

    # A fault about an object leaves the session as it is.
    with pytest.raises(VSphereNotFound), adapter.connect() as conn:
        conn.find_vm(f"no-such-vm-{uuid.uuid4().hex[:8]}")
    with adapter.connect() as same:
        assert same is first
    # A broken connection (a restarted vCenter, a reset socket): the verb that met it fails, and the
    # next one logs in again instead of failing for ever on the dead session.
    with pytest.raises(VSphereError), adapter.connect():
        raise VSphereError("list VMs failed") from ConnectionResetError(104, "Connection reset by peer")
    with adapter.connect() as fresh:
        assert fresh is not first
        assert fresh.session_cookie() != cookie
        fresh.list_objects(vim.VirtualMachine, ["name"])

    # Idle for longer than IDLE_CHECK_S, a session the server ended is found so before it is used.
    fresh.content.sessionManager.Logout()
    monkeypatch.setattr(shared_module, "IDLE_CHECK_S", 0.0)
    with adapter.connect() as checked:
        assert checked.content.sessionManager.currentSession is not None

    creds.write_text(json.dumps({"user": site.user, "password": site.password + "-rotated"}))
    with adapter.connect() as rotated:
        assert rotated is not checked
