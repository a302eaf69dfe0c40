"""KvmAdapter's source verbs against the lab's libvirtd one by one: a stale job of ours is ended and
its checkpoint pruned, another tool's job is refused and left alone, a vanished job fails the point,
fencing shuts a domain off (idempotently), and failback writes a point onto the domain's own disks."""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu
import pytest
import yaml

from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.manifest import DiskManifest, PointRef
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.directory import DirectoryStore
from seawall.contract.messages import ChosenPoint
from seawall.lab import LabInfo
from seawall.model import KvmSite
from seawall.plans import check
from seawall.sites.base import SiteError
from seawall.sites.kvm.adapter import KvmAdapter
from tests.integration.kvm_env import (
    backup_job_xml,
    checkpoint_names,
    clear_checkpoints,
    domain,
    write_kvm_inventory,
)

MiB = 1024 * 1024


def adapter_for(lab: LabInfo, **extra: Any) -> KvmAdapter:
    info = lab.kvm["kvm-a"]
    return KvmAdapter(KvmSite(name="kvm-a", uri=info.uri, pool=info.pool, **extra))


def begin_foreign_job(dom: Any, tmp_path: Path) -> str:
    """Start another tool's pull-mode backup of vda (its socket outside Seawall's directory)."""
    sock = f"/tmp/sw-foreign-{uuid.uuid4().hex[:6]}.sock"
    dom.backupBegin(
        f"<domainbackup mode='pull'><server transport='unix' socket='{sock}'/><disks>"
        f"<disk name='vda' backup='yes' type='file'><scratch file='{tmp_path}/a.s'/></disk>"
        "<disk name='vdb' backup='no'/></disks></domainbackup>",
        None,
    )
    return sock


@pytest.fixture
def kdb(lab: LabInfo) -> Iterator[Any]:
    dom = domain(lab, "kdb-01")
    clear_checkpoints(dom)
    yield dom
    clear_checkpoints(dom)


def test_a_stale_job_of_ours_is_ended_and_its_checkpoint_pruned_once_the_next_point_is_kept(
    lab: LabInfo, kdb: Any
) -> None:
    a = adapter_for(lab)
    a.create_snapshot("kdb-01", "seawall-stale", quiesce=False, only=None)  # its cycle never released
    taken = a.create_snapshot("kdb-01", "seawall-next", quiesce=False, only=None)
    assert [d.name for d in taken.disks] == ["disk0", "disk1"] and taken.cbt
    job = backup_job_xml(kdb)
    assert job is not None and "<incremental>seawall-stale</incremental>" in job  # the new job is its own
    assert a.release_snapshot("kdb-01", "seawall-next") == 1
    assert a.release_snapshot("kdb-01", "seawall-next") == 0  # idempotent
    assert backup_job_xml(kdb) is None
    assert a.settle_snapshot("kdb-01", "seawall-next", True) == ["seawall-stale"]
    assert checkpoint_names(kdb) == ["seawall-next"]
    assert a.settle_snapshot("kdb-01", "seawall-next", True) == []


def test_unprotects_sweep_ends_a_job_of_ours_whatever_point_it_was_for_and_leaves_anothers(
    lab: LabInfo, kdb: Any, tmp_path: Path
) -> None:
    a = adapter_for(lab)
    a.create_snapshot("kdb-01", "seawall-orphan", quiesce=False, only=None)  # its cycle was terminated
    assert backup_job_xml(kdb) is not None
    [ended] = a.release_orphan_snapshots("kdb-01")
    assert ended.startswith("backup job sw-")
    assert backup_job_xml(kdb) is None
    assert a.release_orphan_snapshots("kdb-01") == []  # nothing left: idempotent
    assert checkpoint_names(kdb) == ["seawall-orphan"]  # change tracking stays for a later protection
    sock = begin_foreign_job(kdb, tmp_path)
    try:
        assert a.release_orphan_snapshots("kdb-01") == []  # another tool's job is not Seawall's
        assert sock in (backup_job_xml(kdb) or "")
    finally:
        clear_checkpoints(kdb)
    assert a.release_orphan_snapshots("no-such-vm") == []


def test_another_tools_job_is_refused_and_left_running(lab: LabInfo, kdb: Any, tmp_path: Path) -> None:
    sock = begin_foreign_job(kdb, tmp_path)
    try:
        with pytest.raises(SiteError, match="another backup job") as err:
            adapter_for(lab).create_snapshot("kdb-01", "seawall-x", quiesce=False, only=None)
        assert err.value.retryable
        assert sock in (backup_job_xml(kdb) or "")
        assert checkpoint_names(kdb) == []
    finally:
        clear_checkpoints(kdb)


def test_a_point_whose_job_vanished_fails_instead_of_reading_another_instant(lab: LabInfo, kdb: Any) -> None:
    a = adapter_for(lab)
    a.create_snapshot("kdb-01", "seawall-lost", quiesce=False, only=None)
    kdb.abortJob()  # someone else ended it (or libvirtd restarted)
    deadline = time.monotonic() + 30
    while backup_job_xml(kdb) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(SiteError, match="is gone") as err, a.open_disks("kdb-01", "seawall-lost"):
        pass
    assert err.value.type == "SnapshotLost" and not err.value.retryable
    a.release_snapshot("kdb-01", "seawall-lost")
    assert a.settle_snapshot("kdb-01", "seawall-lost", False) == ["seawall-lost"]


def test_unknown_disks_and_domains_are_named(lab: LabInfo, kdb: Any) -> None:
    a = adapter_for(lab)
    with pytest.raises(SiteError, match="has no disk vdz") as err:
        a.create_snapshot("kdb-01", "seawall-y", quiesce=False, only=["vdz"])
    assert err.value.type == "PlanInvalid"
    with pytest.raises(SiteError, match="not found") as gone:
        a.create_snapshot("no-such-vm", "seawall-y", quiesce=False, only=None)
    assert gone.value.type == "VMGone"
    assert a.release_snapshot("no-such-vm", "seawall-y") == 0
    assert "not defined" in a.fence("no-such-vm")


class RepoReader:
    """A PointReader over a repository (what the failback activity hands the adapter)."""

    def __init__(self, repo: Repository, vm: str, point: str) -> None:
        self.repo, self.vm, self._point = repo, vm, point

    @property
    def point_id(self) -> str:
        return self._point

    def disks(self) -> list[DiskManifest]:
        return list(self.repo.read_manifest(self.vm, self._point).disks)

    def restorer(self, disk: str) -> Callable[[Callable[[int, bytes], None]], object]:
        return lambda writer: self.repo.restore_disk(self.vm, self._point, disk, writer)

    def source_config(self) -> None:
        return None

    def progress(self, disk: str) -> Callable[[int], None]:
        return lambda offset: None


def image_sha256(path: Path, tmp: Path) -> str:
    raw = tmp / "flat.raw"
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(path), str(raw)], check=True)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    raw.unlink()
    return digest


def test_fence_then_failback_writes_the_point_onto_the_domains_own_disk(lab: LabInfo, tmp_path: Path) -> None:
    disk = tmp_path / "d.qcow2"
    raw = tmp_path / "d.raw"
    raw.write_bytes(b"".join(bytes([i]) * MiB for i in range(1, 17)))
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(disk)], check=True)
    name = f"swtest-{uuid.uuid4().hex[:8]}"
    conn = libvirt.open(lab.kvm["kvm-a"].uri)
    dom = conn.defineXML(
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><bios rebootTimeout='-1'/></os><devices>"
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>"
    )
    try:
        dom.create()
        a = adapter_for(lab, shutdown_grace="2s", backup_dir=str(tmp_path / "b"))
        repo = Repository(DirectoryStore(tmp_path / "store"), KeyMaterial.generate("t"))
        taken = a.create_snapshot(name, "seawall-p1", quiesce=False, only=None)
        with a.open_disks(name, "seawall-p1") as open_disk:
            src = open_disk(taken.disks[0])
            shipped = repo.ship(src, name, "disk0")
            src.close()
        repo.commit_point(name, "p1", [shipped])
        config = a.describe_vm(name, "seawall-p1")
        assert (
            config is not None
            and config.kind == "kvm"
            and f"<name>{name}</name>" in config.document["domain_xml"]
        )
        a.release_snapshot(name, "seawall-p1")
        a.settle_snapshot(name, "seawall-p1", True)
        at_point = image_sha256(disk, tmp_path)
        # The original changes after the point (the failover's target ran on; the source was stale).
        libvirt_qemu.qemuMonitorCommand(
            dom,
            'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "write -P 0xee 4M 1M"',
            libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP,
        )
        # No OS answers ACPI in a BIOS: the bounded wait ends in destroy; again, nothing more happens.
        assert "destroyed" in a.fence(name)
        assert not dom.isActive()
        assert "already shut off" in a.fence(name)
        assert image_sha256(disk, tmp_path) != at_point
        dom.create()  # failback finds the original running: it shuts it off itself
        point = ChosenPoint(point_id="p1", created_at="2026-12-01T00:00:00+00:00", disks=["disk0"])
        vm = a.restore_in_place(name, point, RepoReader(repo, name, "p1"), lambda details: None)
        assert vm.name == name and dom.isActive()
        assert checkpoint_names(dom) == []  # written outside a backup job: the chain is gone
        dom.destroy()
        assert image_sha256(disk, tmp_path) == at_point
        info = subprocess.run(["qemu-img", "info", "-U", str(disk)], capture_output=True, text=True).stdout
        assert "seawall-p1" not in info, "the forgotten checkpoint's bitmap is still in the image"
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        conn.close()


def test_plan_check_names_a_pool_and_a_network_the_reachable_site_lacks(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    path = write_kvm_inventory(tmp_path, lab, lab_state_dir)
    assert check([path], live=True).ok, check([path], live=True).errors
    data = yaml.safe_load(path.read_text())
    data["sites"][1]["pool"] = "kvm-b-pol"
    data["sites"][0]["networks"][1]["backing"] = "kvm-a-dril"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    errors = {e.field: e.message for e in check([path], live=True).errors}
    assert check([path]).ok  # offline: the sites are not asked
    assert set(errors) == {"sites[1].pool", "sites[0].networks[1].backing"}, errors
    assert "storage pool 'kvm-b-pol' not found" in errors["sites[1].pool"]
    assert "(pools there: kvm-b-pool)" in errors["sites[1].pool"]
    assert "libvirt network 'kvm-a-dril' not found" in errors["sites[0].networks[1].backing"]


def ship_point(a: KvmAdapter, repo: Repository, vm: str, point: str, parent: str | None) -> dict[str, str]:
    """One cycle by hand (what the workflow's activities do): its disks' change paths."""
    snap = f"seawall-{point}"
    taken = a.create_snapshot(vm, snap, quiesce=False, only=None)
    shipped = []
    with a.open_disks(vm, snap) as open_disk:
        for ref in taken.disks:
            src = open_disk(ref)
            try:
                parent_ref = PointRef(vm=vm, point_id=parent) if parent else None
                shipped.append(repo.ship(src, vm, ref.replica_name, parent=parent_ref))
            finally:
                src.close()
    repo.commit_point(vm, point, shipped, parent=parent)
    a.release_snapshot(vm, snap)
    a.settle_snapshot(vm, snap, True)
    return {d.disk: str(d.change_path) for d in shipped}


def test_a_lost_or_remade_checkpoint_falls_back_to_a_hash_compare_recorded_on_the_point(
    lab: LabInfo, kdb: Any, tmp_path: Path
) -> None:
    a = adapter_for(lab)
    repo = Repository(DirectoryStore(tmp_path / "store"), KeyMaterial.generate("t"))
    assert set(ship_point(a, repo, "kdb-01", "p1", None).values()) == {"full"}
    assert set(ship_point(a, repo, "kdb-01", "p2", "p1").values()) == {"cbt"}
    # Lost: someone deleted the parent's checkpoint.
    kdb.checkpointLookupByName("seawall-p2").delete()
    assert set(ship_point(a, repo, "kdb-01", "p3", "p2").values()) == {"hash-compare"}
    assert set(ship_point(a, repo, "kdb-01", "p4", "p3").values()) == {"cbt"}
    # Re-made under the same name (another instant): not the parent's checkpoint either.
    kdb.checkpointLookupByName("seawall-p4").delete()
    time.sleep(1.1)  # creation times are in seconds
    kdb.checkpointCreateXML(
        "<domaincheckpoint><name>seawall-p4</name><description>seawall recovery point</description>"
        "<disks><disk name='vda' checkpoint='bitmap'/><disk name='vdb' checkpoint='bitmap'/></disks>"
        "</domaincheckpoint>"
    )
    assert set(ship_point(a, repo, "kdb-01", "p5", "p4").values()) == {"hash-compare"}
    assert all(repo.verify_point("kdb-01", p).ok for p in ("p3", "p5"))


def test_a_shut_off_domain_is_read_through_qemu_nbd_with_its_bitmap(lab: LabInfo, tmp_path: Path) -> None:
    """A planned failover's final cycle: the source was just shut off; its point still reads only what
    changed since the last online point, and nothing of the read-only export outlives the release."""
    disk = tmp_path / "d.qcow2"
    raw = tmp_path / "d.raw"
    raw.write_bytes(b"".join(bytes([i]) * MiB for i in range(1, 17)))
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(disk)], check=True)
    name = f"swtest-{uuid.uuid4().hex[:8]}"
    conn = libvirt.open(lab.kvm["kvm-a"].uri)
    dom = conn.defineXML(
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><bios rebootTimeout='-1'/></os><devices>"
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>"
    )
    backup_dir = tmp_path / "b"
    try:
        dom.create()
        a = adapter_for(lab, shutdown_grace="1s", backup_dir=str(backup_dir))
        repo = Repository(DirectoryStore(tmp_path / "store"), KeyMaterial.generate("t"))
        assert ship_point(a, repo, name, "p1", None) == {"disk0": "full"}
        libvirt_qemu.qemuMonitorCommand(
            dom,
            'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "write -P 0xee 4M 128k"',
            libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP,
        )
        assert "destroyed" in a.fence(name)
        taken = a.create_snapshot(name, "seawall-p2", quiesce=False, only=None)
        assert a.create_snapshot(name, "seawall-p2", quiesce=False, only=None) == taken  # found again
        with a.open_disks(name, "seawall-p2") as open_disk:
            src = open_disk(taken.disks[0])
            areas = src.changed_areas(repo.read_manifest(name, "p1").disks[0].change_id or "")
            assert areas is not None and sum(x.length for x in areas) == 128 * 1024, areas
            shipped = repo.ship(src, name, "disk0", parent=PointRef(vm=name, point_id="p1"))
            src.close()
        assert shipped.change_path == "cbt" and shipped.bytes_read == 128 * 1024
        repo.commit_point(name, "p2", [shipped], parent="p1")
        assert a.release_snapshot(name, "seawall-p2") == 1
        assert a.settle_snapshot(name, "seawall-p2", True) == []  # a shut-off domain keeps its chain
        assert not list(backup_dir.glob("sw-*")), "a socket, pid or state file of the export was left"
        assert image_sha256(disk, tmp_path) == restored_image_sha256(repo, name, "p2", tmp_path)
        dom.create()  # nothing holds the image any more
        # Running again: the offline point made no checkpoint, so one hash compare, then CBT again.
        assert ship_point(a, repo, name, "p3", "p2") == {"disk0": "hash-compare"}
        assert ship_point(a, repo, name, "p4", "p3") == {"disk0": "cbt"}
        assert checkpoint_names(dom) == ["seawall-p4"]
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        conn.close()


def restored_image_sha256(repo: Repository, vm: str, point: str, tmp: Path) -> str:
    out = tmp / "restored.img"
    repo.restore_disk(vm, point, "disk0", out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.unlink()
    return digest
